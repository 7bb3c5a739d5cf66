//! Weighting instead of resampling: one weight per class, written to every
//! row as a `sample_weight` column (role `weight`) that training honours.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use gigo_pipeline::{Role, StageError, Table, field_with_role, role_of};

use super::data::Rows;
use super::strategy::class_index;

/// `balanced`: `n / (K * n_c)` (scikit-learn's `class_weight="balanced"`).
/// Every class then carries the same total weight, `n / K`, and the weights
/// of all rows sum to `n`. Classes with no rows get 0.
pub fn balanced(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let k = counts.iter().filter(|&&c| c > 0).count();
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                n as f64 / (k as f64 * c as f64)
            }
        })
        .collect()
}

/// `effective_number` (Cui et al. 2019, "Class-balanced loss based on
/// effective number of samples"): `(1 - beta) / (1 - beta^n_c)`, normalised so
/// that the class weights sum to the number of classes K (as the paper).
/// `beta` = 0 gives every class weight 1; `beta` -> 1 approaches `balanced`'s
/// proportions (1 / n_c).
pub fn effective_number(counts: &[usize], beta: f64) -> Vec<f64> {
    let raw: Vec<f64> = counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                // 1 - beta^n, accurately for beta near 1
                let e = -(c as f64 * beta.ln()).exp_m1();
                (1.0 - beta) / e
            }
        })
        .collect();
    let k = counts.iter().filter(|&&c| c > 0).count() as f64;
    let sum: f64 = raw.iter().sum();
    raw.iter().map(|w| w * k / sum).collect()
}

/// User-given weights by class name; classes not listed weigh 1. Names that
/// are not classes of the data are an error naming them.
pub fn user(names: &[String], given: &BTreeMap<String, f64>) -> Result<Vec<f64>, StageError> {
    let mut w = vec![1.0; names.len()];
    for (name, &v) in given {
        w[class_index(names, name, "`class_weights`")?] = v;
    }
    Ok(w)
}

/// The table with `column` = the class weight of each row. When the input
/// already has a weight column (role `weight`), its values (nulls as 1)
/// multiply the class weights, so that earlier down-weighting (e.g. of likely
/// label errors) is kept; an old weight column with another name stays, as
/// role `other`.
pub fn apply(
    rows: &Rows,
    of_row: &[u32],
    weights: &[f64],
    column: &str,
) -> Result<(Table, Option<String>), StageError> {
    let schema = &rows.schema;
    let old = schema
        .fields()
        .iter()
        .position(|f| role_of(f) == Role::Weight)
        .or_else(|| schema.index_of(column).ok());
    let old_name = old.map(|i| schema.field(i).name().clone());
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let new_field = field_with_role(Field::new(column, DataType::Float64, false), Role::Weight);
    let target = match schema.index_of(column) {
        Ok(i) => {
            fields[i] = new_field;
            i
        }
        Err(_) => {
            fields.push(new_field);
            fields.len() - 1
        }
    };
    if let Some(i) = old
        && i != target
    {
        fields[i] = field_with_role(fields[i].clone(), Role::Other);
    }
    let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let mut batches = Vec::with_capacity(rows.batches.len());
    let mut start = 0usize;
    for b in &rows.batches {
        let n = b.num_rows();
        let prior = match old {
            Some(i) => {
                let t = b.column(i).data_type();
                if !(t.is_numeric() || t == &DataType::Boolean) {
                    return Err(StageError::data(format!(
                        "the existing weight column `{}` has type {t}, not numbers",
                        schema.field(i).name()
                    )));
                }
                Some(cast(b.column(i), &DataType::Float64)?)
            }
            None => None,
        };
        let prior = prior.as_ref().map(|a| a.as_primitive::<Float64Type>());
        let values: Vec<f64> = (0..n)
            .map(|r| {
                let w = weights[of_row[start + r] as usize];
                match prior {
                    Some(p) if p.is_valid(r) => w * p.value(r),
                    _ => w,
                }
            })
            .collect();
        start += n;
        let mut cols: Vec<ArrayRef> = b.columns().to_vec();
        let array: ArrayRef = Arc::new(Float64Array::from(values));
        if target < cols.len() {
            cols[target] = array;
        } else {
            cols.push(array);
        }
        batches.push(RecordBatch::try_new(out_schema.clone(), cols)?);
    }
    Ok((Table::new(out_schema, batches)?, old_name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn balanced_matches_hand_computed_values() {
        // n = 100, K = 2: 100 / (2 * 80) = 0.625, 100 / (2 * 20) = 2.5
        assert_eq!(balanced(&[80, 20]), vec![0.625, 2.5]);
    }

    #[test]
    fn effective_number_matches_the_paper_formula() {
        // beta = 0.9: E_1 = (1 - 0.9^1) / 0.1 = 1, E_2 = (1 - 0.81) / 0.1 = 1.9
        // weights 1/E normalised to sum 2: (1, 1/1.9) * 2 / (1 + 1/1.9)
        let w = effective_number(&[1, 2], 0.9);
        let s = 1.0 + 1.0 / 1.9;
        assert!((w[0] - 2.0 / s).abs() < 1e-12);
        assert!((w[1] - 2.0 / 1.9 / s).abs() < 1e-12);
        // beta = 0: no re-weighting
        assert_eq!(effective_number(&[10, 1000], 0.0), vec![1.0, 1.0]);
    }

    proptest! {
        // Documented sums: balanced row weights sum to n; effective-number
        // class weights sum to K.
        #[test]
        fn weights_sum_as_documented(counts in proptest::collection::vec(1usize..5000, 1..8), beta in 0.0f64..0.99999) {
            let n: usize = counts.iter().sum();
            let b = balanced(&counts);
            let rows: f64 = counts.iter().zip(&b).map(|(&c, w)| c as f64 * w).sum();
            prop_assert!((rows - n as f64).abs() < 1e-6 * n as f64);
            let e = effective_number(&counts, beta);
            let s: f64 = e.iter().sum();
            prop_assert!((s - counts.len() as f64).abs() < 1e-9 * counts.len() as f64);
            // rarer classes never weigh less
            for i in 0..counts.len() {
                for j in 0..counts.len() {
                    if counts[i] < counts[j] {
                        prop_assert!(e[i] >= e[j] - 1e-12);
                        prop_assert!(b[i] >= b[j]);
                    }
                }
            }
        }
    }
}
