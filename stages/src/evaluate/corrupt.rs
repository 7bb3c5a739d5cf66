//! The corruption suite: each corruption at severities 1–5 (0 is the
//! identity), deterministic per seed, applied to the feature (and, for label
//! noise, label) columns of a test table. Severity scales follow ImageNet-C's
//! protocol of five graded levels; the amounts are listed per corruption in
//! [`Corruption::amount`].

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use gigo_pipeline::StageError;
use gigo_pipeline::stage::derive_seed;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Highest severity.
pub const MAX_SEVERITY: u8 = 5;

/// A kind of data corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Corruption {
    /// Gaussian noise on numeric features, scaled by each column's std.
    GaussianNoise,
    /// Cells missing completely at random.
    MissingMcar,
    /// Cells missing at random: more likely where another feature is high.
    MissingMar,
    /// Cells missing not at random: more likely where the value itself is high.
    MissingMnar,
    /// Values swapped between two numeric features within a row.
    Swap,
    /// Unit errors: cells multiplied by 10, 100 or 1000.
    Scaling,
    /// Categorical cells replaced by another category of the column.
    CategoricalShift,
    /// Rows moved 6–10 standard deviations away from the mean.
    Outliers,
    /// Test labels flipped to another class.
    LabelNoise,
}

impl Corruption {
    /// Every corruption, in report order.
    pub const ALL: [Corruption; 9] = [
        Corruption::GaussianNoise,
        Corruption::MissingMcar,
        Corruption::MissingMar,
        Corruption::MissingMnar,
        Corruption::Swap,
        Corruption::Scaling,
        Corruption::CategoricalShift,
        Corruption::Outliers,
        Corruption::LabelNoise,
    ];

    /// The snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Corruption::GaussianNoise => "gaussian_noise",
            Corruption::MissingMcar => "missing_mcar",
            Corruption::MissingMar => "missing_mar",
            Corruption::MissingMnar => "missing_mnar",
            Corruption::Swap => "swap",
            Corruption::Scaling => "scaling",
            Corruption::CategoricalShift => "categorical_shift",
            Corruption::Outliers => "outliers",
            Corruption::LabelNoise => "label_noise",
        }
    }

    /// The amount at `severity` (0 for severity 0): the noise std in column
    /// stds for Gaussian noise, the scale factor's log10 for scaling (on 5%,
    /// 10%, 10%, 20%, 20% of cells), otherwise the fraction of cells (rows,
    /// labels) affected.
    pub fn amount(self, severity: u8) -> f64 {
        let s = severity.min(MAX_SEVERITY) as usize;
        let table: [f64; 6] = match self {
            Corruption::GaussianNoise => [0.0, 0.1, 0.2, 0.4, 0.7, 1.0],
            Corruption::Scaling => [0.0, 1.0, 1.0, 2.0, 2.0, 3.0],
            Corruption::Outliers => [0.0, 0.01, 0.02, 0.05, 0.1, 0.2],
            Corruption::LabelNoise => [0.0, 0.05, 0.1, 0.2, 0.3, 0.4],
            _ => [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
        };
        table[s]
    }
}

/// Which columns a corruption may touch.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    /// Numeric feature columns (indices into the batch).
    pub numeric: Vec<usize>,
    /// Categorical feature columns.
    pub categorical: Vec<usize>,
    /// The label column.
    pub label: Option<usize>,
}

/// `batch` with `corruption` applied at `severity`; the same seed gives the
/// same result. Columns keep their types (numbers are cast back).
pub fn corrupt(
    batch: &RecordBatch,
    columns: &Columns,
    corruption: Corruption,
    severity: u8,
    seed: u64,
) -> Result<RecordBatch, StageError> {
    if severity == 0 || batch.num_rows() == 0 {
        return Ok(batch.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
        seed,
        &format!("{}-{severity}", corruption.name()),
    ));
    let amount = corruption.amount(severity);
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    let n = batch.num_rows();
    let mut numeric: Vec<Vec<Option<f64>>> = columns
        .numeric
        .iter()
        .map(|&c| as_f64(&arrays[c]))
        .collect::<Result<_, _>>()?;
    let stats: Vec<(f64, f64)> = numeric.iter().map(|v| mean_std(v)).collect();
    let mut touched_numeric = false;
    match corruption {
        Corruption::GaussianNoise => {
            for (col, &(_, std)) in numeric.iter_mut().zip(&stats) {
                for v in col.iter_mut().flatten() {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    *v += amount * std * z;
                }
            }
            touched_numeric = true;
        }
        Corruption::MissingMcar | Corruption::MissingMar | Corruption::MissingMnar => {
            for j in 0..numeric.len() {
                let pick = missing_rows(corruption, amount, &numeric, j, &mut rng);
                for i in pick {
                    numeric[j][i] = None;
                }
            }
            touched_numeric = true;
            for &c in &columns.categorical {
                let mut values = as_strings(&arrays[c])?;
                let count = (amount * n as f64).round() as usize;
                for i in rand::seq::index::sample(&mut rng, n, count.min(n)) {
                    values[i] = None;
                }
                arrays[c] = strings_as(values, arrays[c].data_type())?;
            }
        }
        Corruption::Swap => {
            if numeric.len() >= 2 {
                let rows = (amount * n as f64).round() as usize;
                for i in rand::seq::index::sample(&mut rng, n, rows.min(n)) {
                    let a = rng.random_range(0..numeric.len());
                    let mut b = rng.random_range(0..numeric.len() - 1);
                    if b >= a {
                        b += 1;
                    }
                    let tmp = numeric[a][i];
                    numeric[a][i] = numeric[b][i];
                    numeric[b][i] = tmp;
                }
                touched_numeric = true;
            }
        }
        Corruption::Scaling => {
            let fraction = [0.0, 0.05, 0.1, 0.1, 0.2, 0.2][severity.min(MAX_SEVERITY) as usize];
            let factor = 10f64.powf(amount);
            let cells = numeric.len() * n;
            let count = (fraction * cells as f64).round() as usize;
            for cell in rand::seq::index::sample(&mut rng, cells, count.min(cells)) {
                if let Some(v) = numeric[cell / n][cell % n].as_mut() {
                    *v *= factor;
                }
            }
            touched_numeric = true;
        }
        Corruption::CategoricalShift => {
            for &c in &columns.categorical {
                let mut values = as_strings(&arrays[c])?;
                let mut categories: Vec<String> = values.iter().flatten().cloned().collect();
                categories.sort();
                categories.dedup();
                if categories.len() < 2 {
                    continue;
                }
                let count = (amount * n as f64).round() as usize;
                for i in rand::seq::index::sample(&mut rng, n, count.min(n)) {
                    let others: Vec<&String> = categories
                        .iter()
                        .filter(|k| Some(*k) != values[i].as_ref())
                        .collect();
                    values[i] = others.choose(&mut rng).map(|s| (*s).clone());
                }
                arrays[c] = strings_as(values, arrays[c].data_type())?;
            }
        }
        Corruption::Outliers => {
            let rows = (amount * n as f64).round() as usize;
            let d = numeric.len().max(1) as f64;
            for i in rand::seq::index::sample(&mut rng, n, rows.min(n)) {
                // A random direction, at 6–10 standard deviations (RMS over
                // the columns), as the generator injects outliers.
                let u: Vec<f64> = (0..numeric.len())
                    .map(|_| StandardNormal.sample(&mut rng))
                    .collect();
                let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                let r: f64 = rng.random_range(6.0..=10.0);
                for (j, col) in numeric.iter_mut().enumerate() {
                    let (mean, std) = stats[j];
                    col[i] = Some(mean + r * d.sqrt() * std * u[j] / norm);
                }
            }
            touched_numeric = true;
        }
        Corruption::LabelNoise => {
            if let Some(l) = columns.label {
                arrays[l] = flip_labels(&arrays[l], amount, &mut rng)?;
            }
        }
    }
    if touched_numeric {
        for (&c, values) in columns.numeric.iter().zip(numeric) {
            let f: ArrayRef = Arc::new(Float64Array::from(values));
            arrays[c] = cast(&f, arrays[c].data_type())
                .map_err(|e| StageError::internal(format!("casting a corrupted column: {e}")))?;
        }
    }
    Ok(RecordBatch::try_new(batch.schema(), arrays)?)
}

/// Rows of numeric column `j` to blank for a missingness corruption.
fn missing_rows(
    kind: Corruption,
    rate: f64,
    numeric: &[Vec<Option<f64>>],
    j: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<usize> {
    let n = numeric[j].len();
    let count = ((rate * n as f64).round() as usize).min(n);
    // MAR is driven by the next column, MNAR by the column itself; both pick
    // the `count` rows with the highest (driver value + noise) ranks.
    let driver = match kind {
        Corruption::MissingMcar => None,
        Corruption::MissingMar if numeric.len() > 1 => Some(&numeric[(j + 1) % numeric.len()]),
        Corruption::MissingMar => None,
        _ => Some(&numeric[j]),
    };
    match driver {
        None => rand::seq::index::sample(rng, n, count).into_vec(),
        Some(values) => {
            let (_, std) = mean_std(values);
            let mut keyed: Vec<(f64, usize)> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let z: f64 = StandardNormal.sample(rng);
                    (v.unwrap_or(f64::NEG_INFINITY) + 0.5 * std * z, i)
                })
                .collect();
            keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            keyed.into_iter().take(count).map(|k| k.1).collect()
        }
    }
}

fn flip_labels(array: &ArrayRef, rate: f64, rng: &mut ChaCha8Rng) -> Result<ArrayRef, StageError> {
    let keys = as_strings(array)?;
    let mut classes: Vec<String> = keys.iter().flatten().cloned().collect();
    classes.sort();
    classes.dedup();
    if classes.len() < 2 {
        return Ok(array.clone());
    }
    let n = keys.len();
    let count = ((rate * n as f64).round() as usize).min(n);
    let mut out = keys.clone();
    for i in rand::seq::index::sample(rng, n, count) {
        let others: Vec<&String> = classes
            .iter()
            .filter(|c| Some(*c) != keys[i].as_ref())
            .collect();
        out[i] = others.choose(rng).map(|s| (*s).clone());
    }
    let s: ArrayRef = Arc::new(StringArray::from(out));
    cast(&s, array.data_type())
        .map_err(|e| StageError::internal(format!("casting flipped labels: {e}")))
}

/// Text values back in the column's own type (a dictionary stays one).
fn strings_as(values: Vec<Option<String>>, t: &DataType) -> Result<ArrayRef, StageError> {
    let s: ArrayRef = Arc::new(StringArray::from(values));
    cast(&s, t).map_err(|e| StageError::internal(format!("casting a corrupted column: {e}")))
}

fn as_f64(array: &ArrayRef) -> Result<Vec<Option<f64>>, StageError> {
    let f = cast(array, &DataType::Float64)
        .map_err(|e| StageError::internal(format!("casting to numbers: {e}")))?;
    Ok(f.as_primitive::<Float64Type>().iter().collect())
}

fn as_strings(array: &ArrayRef) -> Result<Vec<Option<String>>, StageError> {
    let s = cast(array, &DataType::Utf8)
        .map_err(|e| StageError::internal(format!("casting to text: {e}")))?;
    Ok(s.as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

fn mean_std(values: &[Option<f64>]) -> (f64, f64) {
    let finite: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if finite.is_empty() {
        return (0.0, 1.0);
    }
    let n = finite.len() as f64;
    let mean = finite.iter().sum::<f64>() / n;
    let var = finite.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    let std = var.sqrt();
    (mean, if std > 0.0 { std } else { 1.0 })
}

/// How far a corrupted batch is from the clean one: the fraction of feature
/// and label cells that differ (a null where a value was counts).
pub fn changed_fraction(clean: &RecordBatch, corrupted: &RecordBatch, columns: &Columns) -> f64 {
    let mut changed = 0usize;
    let mut total = 0usize;
    let cols = columns
        .numeric
        .iter()
        .chain(&columns.categorical)
        .chain(columns.label.iter());
    for &c in cols {
        let (a, b) = (clean.column(c), corrupted.column(c));
        let (Ok(a), Ok(b)) = (as_strings(a), as_strings(b)) else {
            continue;
        };
        total += a.len();
        changed += a.iter().zip(&b).filter(|(x, y)| x != y).count();
    }
    if total == 0 {
        0.0
    } else {
        changed as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};

    fn batch(n: usize) -> (RecordBatch, Columns) {
        let x0: Vec<f64> = (0..n).map(|i| (i % 17) as f64 - 8.0).collect();
        let x1: Vec<i64> = (0..n).map(|i| (i * 7 % 23) as i64).collect();
        let cat: Vec<&str> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
        let label: Vec<i64> = (0..n).map(|i| (i % 2) as i64).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("x0", DataType::Float64, true),
            Field::new("x1", DataType::Int64, true),
            Field::new("c", DataType::Utf8, true),
            Field::new("label", DataType::Int64, true),
        ]));
        let b = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(x0)),
                Arc::new(Int64Array::from(x1)),
                Arc::new(StringArray::from(cat)),
                Arc::new(Int64Array::from(label)),
            ],
        )
        .unwrap();
        let cols = Columns {
            numeric: vec![0, 1],
            categorical: vec![2],
            label: Some(3),
        };
        (b, cols)
    }

    /// Mean absolute change of the numeric cells (nulls count as the column's
    /// std), plus the fraction of changed cells.
    fn strength(clean: &RecordBatch, bad: &RecordBatch, cols: &Columns) -> f64 {
        let mut s = changed_fraction(clean, bad, cols);
        for &c in &cols.numeric {
            let a = as_f64(clean.column(c)).unwrap();
            let b = as_f64(bad.column(c)).unwrap();
            let (_, std) = mean_std(&a);
            let diff: f64 = a
                .iter()
                .zip(&b)
                .map(|(x, y)| match (x, y) {
                    (Some(x), Some(y)) => (x - y).abs() / std,
                    _ => 1.0,
                })
                .sum();
            s += diff / a.len() as f64;
        }
        s
    }

    #[test]
    fn severity_zero_is_the_identity_and_strength_grows_with_severity() {
        let (b, cols) = batch(2000);
        for kind in Corruption::ALL {
            assert_eq!(corrupt(&b, &cols, kind, 0, 1).unwrap(), b, "{kind:?}");
            let strengths: Vec<f64> = (1..=MAX_SEVERITY)
                .map(|s| strength(&b, &corrupt(&b, &cols, kind, s, 1).unwrap(), &cols))
                .collect();
            assert!(strengths[0] > 0.0, "{kind:?} does nothing at severity 1");
            for w in strengths.windows(2) {
                assert!(w[1] >= w[0], "{kind:?}: {strengths:?}");
            }
            assert!(strengths[4] > strengths[0], "{kind:?}: {strengths:?}");
        }
    }

    #[test]
    fn same_seed_same_corruption_and_types_are_kept() {
        let (b, cols) = batch(500);
        for kind in Corruption::ALL {
            let a1 = corrupt(&b, &cols, kind, 3, 7).unwrap();
            let a2 = corrupt(&b, &cols, kind, 3, 7).unwrap();
            assert_eq!(a1, a2, "{kind:?}");
            assert_eq!(a1.schema(), b.schema());
            let other = corrupt(&b, &cols, kind, 3, 8).unwrap();
            assert_ne!(a1, other, "{kind:?}: the seed changes nothing");
        }
    }

    #[test]
    fn missingness_hits_the_documented_fraction_and_mnar_prefers_high_values() {
        let (b, cols) = batch(2000);
        let bad = corrupt(&b, &cols, Corruption::MissingMcar, 2, 3).unwrap();
        assert_eq!(bad.column(0).null_count(), 200);
        let mnar = corrupt(&b, &cols, Corruption::MissingMnar, 3, 3).unwrap();
        let clean = as_f64(b.column(0)).unwrap();
        let blank: Vec<f64> = mnar
            .column(0)
            .as_primitive::<Float64Type>()
            .iter()
            .zip(&clean)
            .filter(|(v, _)| v.is_none())
            .map(|(_, c)| c.unwrap())
            .collect();
        let mean_blank = blank.iter().sum::<f64>() / blank.len() as f64;
        assert!(mean_blank > 2.0, "MNAR blanks high values: {mean_blank}");
    }
}
