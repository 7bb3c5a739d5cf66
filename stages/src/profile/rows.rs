//! Table-level checks that look at whole rows: row hashes for exact
//! duplicates and conflicting labels (over every row), and a deterministic
//! sample of rows for the checks that need distances (near duplicates,
//! outliers) or pairs of columns (correlations).

use arrow::array::{Array, ArrayRef, AsArray, UInt32Array};
use arrow::compute::{cast, concat_batches, take};
use arrow::datatypes::{DataType, Float64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use gigo_pipeline::StageError;

use super::column::{ColumnKind, text_hashes};
use super::sketch::{hash_bytes, mix64};

const NULL_HASH: u64 = 0x6e75_6c6c_6e75_6c6c;

/// Combines the per-row hash of `array` into `out` (one entry per row).
pub fn hash_column(array: &ArrayRef, out: &mut [u64]) -> Result<(), StageError> {
    let err = |e: arrow::error::ArrowError| StageError::internal(format!("hashing rows: {e}"));
    let combine = |h: &mut u64, v: u64| *h = mix64(h.rotate_left(17) ^ v);
    match ColumnKind::of(array.data_type()) {
        ColumnKind::Numeric => {
            let f = match array.data_type() {
                DataType::Float64 => array.clone(),
                DataType::Float16 | DataType::Float32 => {
                    cast(array, &DataType::Float64).map_err(err)?
                }
                DataType::Decimal128(_, _) | DataType::Decimal256(_, _) => {
                    cast(array, &DataType::Float64).map_err(err)?
                }
                _ => cast(array, &DataType::Int64).map_err(err)?,
            };
            if let Some(ints) = f.as_primitive_opt::<arrow::datatypes::Int64Type>() {
                for (h, v) in out.iter_mut().zip(ints.iter()) {
                    combine(h, v.map_or(NULL_HASH, |x| mix64(x as u64)));
                }
            } else {
                let floats = f.as_primitive::<Float64Type>();
                for (h, v) in out.iter_mut().zip(floats.iter()) {
                    combine(h, v.map_or(NULL_HASH, |x| mix64(float_key(x))));
                }
            }
        }
        ColumnKind::Boolean => {
            for (h, v) in out.iter_mut().zip(array.as_boolean().iter()) {
                combine(h, v.map_or(NULL_HASH, |b| mix64(u64::from(b) + 1)));
            }
        }
        ColumnKind::Text => {
            let s = cast(array, &DataType::Utf8).map_err(err)?;
            for (h, v) in out.iter_mut().zip(s.as_string::<i32>().iter()) {
                combine(h, v.map_or(NULL_HASH, |t| hash_bytes(t.as_bytes())));
            }
        }
        ColumnKind::Other => {
            for (h, v) in out.iter_mut().zip(text_hashes(array)?) {
                combine(h, v.unwrap_or(NULL_HASH));
            }
        }
    }
    Ok(())
}

/// Bits of a float as a hash key: all NaNs one value, -0.0 equal to 0.0.
fn float_key(x: f64) -> u64 {
    if x.is_nan() {
        0x7ff8_0000_0000_0000
    } else if x == 0.0 {
        0
    } else {
        x.to_bits()
    }
}

/// Per-row hashes of the given columns of `batch`.
pub fn row_hashes(batch: &RecordBatch, columns: &[usize]) -> Result<Vec<u64>, StageError> {
    let mut out = vec![0u64; batch.num_rows()];
    for &c in columns {
        hash_column(batch.column(c), &mut out)?;
    }
    Ok(out)
}

/// Exact duplicates: for every row after the first of its group of equal
/// hashes, the index of that first row (the reference the partitioned
/// checks are tested against).
#[cfg(test)]
pub fn duplicate_of(hashes: &[u64]) -> Vec<Option<u32>> {
    let mut order: Vec<(u64, u32)> = hashes
        .iter()
        .enumerate()
        .map(|(i, &h)| (h, i as u32))
        .collect();
    order.sort_unstable();
    let mut out = vec![None; hashes.len()];
    for group in order.chunk_by(|a, b| a.0 == b.0) {
        let first = group[0].1;
        for &(_, i) in &group[1..] {
            out[i as usize] = Some(first);
        }
    }
    out
}

/// Rows whose features equal another row's while the labels differ. Returns
/// the flag per row and the number of such groups.
#[cfg(test)]
pub fn label_conflicts(feature_hashes: &[u64], label_hashes: &[u64]) -> (Vec<bool>, usize) {
    let mut order: Vec<(u64, u64, u32)> = feature_hashes
        .iter()
        .zip(label_hashes)
        .enumerate()
        .map(|(i, (&f, &l))| (f, l, i as u32))
        .collect();
    order.sort_unstable();
    let mut flag = vec![false; feature_hashes.len()];
    let mut groups = 0;
    for group in order.chunk_by(|a, b| a.0 == b.0) {
        if group.iter().any(|g| g.1 != group[0].1) {
            groups += 1;
            for g in group {
                flag[g.2 as usize] = true;
            }
        }
    }
    (flag, groups)
}

/// A deterministic sample of at most `capacity` rows: the rows with the
/// smallest priority `mix64(seed ^ mix64(row index))`. Streaming and
/// mergeable; the same rows whatever the batch boundaries.
pub struct RowSample {
    capacity: usize,
    seed: u64,
    schema: SchemaRef,
    priorities: Vec<(u64, u64)>,
    parts: Vec<RecordBatch>,
}

impl RowSample {
    /// An empty sample of rows of `schema`.
    pub fn new(capacity: usize, seed: u64, schema: SchemaRef) -> Self {
        RowSample {
            capacity,
            seed,
            schema,
            priorities: Vec::new(),
            parts: Vec::new(),
        }
    }

    fn priority(&self, row: u64) -> u64 {
        mix64(self.seed ^ mix64(row))
    }

    fn threshold(&self) -> u64 {
        if self.priorities.len() < self.capacity {
            u64::MAX
        } else {
            let mut p: Vec<u64> = self.priorities.iter().map(|p| p.0).collect();
            let (_, kth, _) = p.select_nth_unstable(self.capacity - 1);
            *kth
        }
    }

    /// Offers the rows of `batch` (already projected to the sample's schema),
    /// whose first row has global index `first_row`.
    pub fn offer(&mut self, batch: &RecordBatch, first_row: u64) -> Result<(), StageError> {
        let thr = self.threshold();
        let mut take_idx = Vec::new();
        for i in 0..batch.num_rows() {
            let row = first_row + i as u64;
            let p = self.priority(row);
            if p <= thr {
                take_idx.push(i as u32);
                self.priorities.push((p, row));
            }
        }
        if take_idx.is_empty() {
            return Ok(());
        }
        self.parts.push(take_rows(batch, &take_idx)?);
        if self.priorities.len() > 2 * self.capacity.max(1024) {
            self.compact()?;
        }
        Ok(())
    }

    fn compact(&mut self) -> Result<(), StageError> {
        let all = concat_batches(&self.schema, &self.parts)
            .map_err(|e| StageError::internal(format!("sampling rows: {e}")))?;
        let mut order: Vec<u32> = (0..self.priorities.len() as u32).collect();
        order.sort_unstable_by_key(|&i| self.priorities[i as usize]);
        order.truncate(self.capacity);
        // Keep the sample in row order.
        order.sort_unstable_by_key(|&i| self.priorities[i as usize].1);
        self.priorities = order.iter().map(|&i| self.priorities[i as usize]).collect();
        self.parts = vec![take_rows(&all, &order)?];
        Ok(())
    }

    /// The sampled rows, in row order, with their global row indices.
    pub fn finish(mut self) -> Result<(RecordBatch, Vec<u64>), StageError> {
        self.compact()?;
        let rows = self.priorities.iter().map(|p| p.1).collect();
        let batch = self
            .parts
            .pop()
            .unwrap_or_else(|| RecordBatch::new_empty(self.schema.clone()));
        Ok((batch, rows))
    }
}

fn take_rows(batch: &RecordBatch, idx: &[u32]) -> Result<RecordBatch, StageError> {
    let indices = UInt32Array::from(idx.to_vec());
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), &indices, None))
        .collect::<Result<_, _>>()
        .map_err(|e| StageError::internal(format!("sampling rows: {e}")))?;
    // The row count keeps a sample of no columns (no features, no label) valid.
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(idx.len()));
    RecordBatch::try_new_with_options(batch.schema(), columns, &options)
        .map_err(|e| StageError::internal(format!("sampling rows: {e}")))
}

/// Pearson correlation of two columns over the rows where both are finite.
pub fn pearson(a: &[Option<f64>], b: &[Option<f64>]) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if x.is_finite() && y.is_finite() => Some((*x, *y)),
            _ => None,
        })
        .collect();
    if pairs.len() < 3 {
        return None;
    }
    let n = pairs.len() as f64;
    let (mx, my) = pairs
        .iter()
        .fold((0.0, 0.0), |acc, p| (acc.0 + p.0 / n, acc.1 + p.1 / n));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in pairs {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
        syy += (y - my) * (y - my);
    }
    (sxx > 0.0 && syy > 0.0).then(|| sxy / (sxx * syy).sqrt())
}

/// A numeric column as optional floats (for correlations).
pub fn as_f64(array: &ArrayRef) -> Result<Vec<Option<f64>>, StageError> {
    let f = cast(array, &DataType::Float64)
        .map_err(|e| StageError::internal(format!("casting to numbers: {e}")))?;
    Ok(f.as_primitive::<Float64Type>().iter().collect())
}

/// A column as hashable label keys (for conflicts).
pub fn label_hashes(array: &ArrayRef) -> Result<Vec<u64>, StageError> {
    let mut out = vec![0u64; array.len()];
    hash_column(array, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch(x: Vec<i64>, s: Vec<&str>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(x)),
                Arc::new(StringArray::from(s)),
            ],
        )
        .unwrap()
    }

    #[test]
    fn duplicates_point_at_their_first_row() {
        let b = batch(vec![1, 2, 1, 1, 3], vec!["a", "a", "a", "b", "a"]);
        let h = row_hashes(&b, &[0, 1]).unwrap();
        assert_eq!(duplicate_of(&h), vec![None, None, Some(0), None, None]);
        // On x alone, rows 2 and 3 repeat row 0.
        let hx = row_hashes(&b, &[0]).unwrap();
        assert_eq!(duplicate_of(&hx), vec![None, None, Some(0), Some(0), None]);
    }

    #[test]
    fn conflicts_need_equal_features_and_different_labels() {
        let b = batch(vec![1, 2, 1, 2, 3], vec!["a", "a", "b", "a", "a"]);
        let f = row_hashes(&b, &[0]).unwrap();
        let l = label_hashes(b.column(1)).unwrap();
        let (flag, groups) = label_conflicts(&f, &l);
        assert_eq!(flag, vec![true, false, true, false, false]);
        assert_eq!(groups, 1);
    }

    #[test]
    fn the_sample_does_not_depend_on_batch_boundaries() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, false)]));
        let make = |lo: usize, hi: usize| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Float64Array::from(
                    (lo..hi).map(|i| i as f64).collect::<Vec<_>>(),
                ))],
            )
            .unwrap()
        };
        let run = |cuts: &[usize]| {
            let mut s = RowSample::new(300, 7, schema.clone());
            let mut lo = 0;
            for &hi in cuts {
                s.offer(&make(lo, hi), lo as u64).unwrap();
                lo = hi;
            }
            s.finish().unwrap().1
        };
        let a = run(&[10_000]);
        let b = run(&[17, 2000, 2001, 9000, 10_000]);
        assert_eq!(a.len(), 300);
        assert_eq!(a, b);
        assert!(a.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(run(&[100]).len(), 100);
    }

    #[test]
    fn pearson_matches_hand_values() {
        let a: Vec<Option<f64>> = vec![Some(1.0), Some(2.0), Some(3.0), None];
        let b: Vec<Option<f64>> = vec![Some(2.0), Some(4.0), Some(6.0), Some(1.0)];
        assert!((pearson(&a, &b).unwrap() - 1.0).abs() < 1e-12);
        let c: Vec<Option<f64>> = vec![Some(3.0), Some(2.0), Some(1.0), Some(0.0)];
        assert!((pearson(&a, &c).unwrap() + 1.0).abs() < 1e-12);
    }
}
