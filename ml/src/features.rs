//! Arrow record batches -> a dense, standardised feature [`Matrix`].
//!
//! A [`FeatureEncoder`] is fitted once (on training data) and then applied
//! to any data with the same columns (train, test, a stream of batches), so
//! that train and test are encoded identically.
//!
//! - Numeric columns (integers, floats, decimals, booleans) are standardised
//!   by the mean and population standard deviation of their finite values
//!   (a standard deviation of 0 is replaced by 1). Nulls, NaN and infinities
//!   become 0 after standardising, i.e. the column mean.
//! - String and dictionary columns are one-hot encoded over their
//!   `max_categories` most frequent values (ties broken by the smaller
//!   value); nulls and every other value share one "other" indicator, so
//!   values unseen at fit time are encoded too.
//!
//! Statistics are gathered per batch and merged (Chan's parallel formula for
//! mean and variance, summed counts), so fitting is one pass and the result
//! does not depend on how the rows are split into batches (up to float
//! rounding of the merge).

use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::record_batch::RecordBatch;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::matrix::Matrix;

/// How a [`FeatureEncoder`] is fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderOptions {
    /// The number of most frequent values of a categorical column that get
    /// their own indicator column; the others (and nulls) share one. Default 32.
    pub max_categories: usize,
    /// Standardise numeric columns (default true). When false they keep
    /// their values (missing ones become the column mean): for features
    /// that share one scale, such as pixel intensities, where dividing by a
    /// tiny standard deviation would blow up noise.
    #[serde(default = "yes")]
    pub standardize: bool,
}

fn yes() -> bool {
    true
}

impl Default for EncoderOptions {
    fn default() -> Self {
        EncoderOptions {
            max_categories: 32,
            standardize: true,
        }
    }
}

/// A number saved as itself, NaN as `null` (JSON has no NaN).
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        match v.is_nan() {
            true => s.serialize_none(),
            false => s.serialize_some(v),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// How one input column is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnEncoding {
    /// `(x - mean) / std`; a missing value counts as `missing`.
    Numeric {
        /// Subtracted (the mean of the finite values seen at fit time, or
        /// 0 without standardisation).
        mean: f64,
        /// Divided by (their population standard deviation, 1 when it was
        /// 0 or without standardisation).
        std: f64,
        /// The value a missing cell (null, NaN, infinity) takes: the mean,
        /// or NaN for a sequence's steps, which the network masks
        /// ([`EncoderFitter::pool`]; saved as `null`).
        #[serde(default, with = "nan_as_null")]
        missing: f64,
    },
    /// One-hot over `categories`, then one "other" indicator.
    Categorical {
        /// The values that have their own indicator, most frequent first.
        categories: Vec<String>,
    },
}

impl ColumnEncoding {
    /// The output columns it fills: 1, or one per category plus "other".
    pub fn width(&self) -> usize {
        match self {
            ColumnEncoding::Numeric { .. } => 1,
            ColumnEncoding::Categorical { categories } => categories.len() + 1,
        }
    }
}

/// A fitted encoder from named Arrow columns to a dense standardised matrix.
///
/// # Example
/// ```
/// use std::sync::Arc;
/// use arrow::array::{Float64Array, StringArray};
/// use arrow::record_batch::RecordBatch;
/// use gigo_ml::features::{EncoderOptions, FeatureEncoder};
///
/// let batch = RecordBatch::try_from_iter([
///     ("x", Arc::new(Float64Array::from(vec![1.0, 3.0])) as _),
///     ("c", Arc::new(StringArray::from(vec!["a", "b"])) as _),
/// ])
/// .unwrap();
/// let columns = vec!["x".to_string(), "c".to_string()];
/// let enc = FeatureEncoder::fit(&[batch.clone()], &columns, &EncoderOptions::default()).unwrap();
/// assert_eq!(enc.output_names(), ["x", "c=a", "c=b", "c=<other>"]);
/// let m = enc.transform(&[batch]).unwrap();
/// assert_eq!(m.row(0), &[-1.0, 1.0, 0.0, 0.0]);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureEncoder {
    columns: Vec<String>,
    encodings: Vec<ColumnEncoding>,
}

/// Columns a table lacks or has of another kind ([`FeatureEncoder::mismatches`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mismatches {
    /// Input columns not in the table.
    pub missing: Vec<String>,
    /// (column, kind at fit time, Arrow type now).
    pub mistyped: Vec<(String, &'static str, String)>,
}

impl Mismatches {
    /// Whether the table can be encoded.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.mistyped.is_empty()
    }
}

/// For each output column of `encoder`, whether it encodes a numeric input
/// (`false` for one-hot indicators, which an adversary must not move).
pub fn numeric_outputs(encoder: &FeatureEncoder) -> Vec<bool> {
    let mut out = Vec::with_capacity(encoder.width());
    for enc in encoder.encodings() {
        let numeric = matches!(enc, ColumnEncoding::Numeric { .. });
        out.extend(std::iter::repeat_n(numeric, enc.width()));
    }
    out
}

/// The kind of encoding an Arrow type gets, or `None` if unsupported.
fn kind_of(data_type: &DataType) -> Option<&'static str> {
    match data_type {
        DataType::Boolean => Some("numeric"),
        t if t.is_numeric() => Some("numeric"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _) => {
            Some("categorical")
        }
        _ => None,
    }
}

/// Whether a column of `data_type` can be encoded: numeric (decimals
/// included), boolean, string or dictionary columns can; dates, times,
/// durations, lists, structs and binary cannot.
pub fn can_encode(data_type: &DataType) -> bool {
    kind_of(data_type).is_some()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, MlError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| MlError::MissingColumn {
            column: name.to_string(),
        })
}

/// The column as `Float64` (nulls stay null).
fn as_f64(array: &ArrayRef) -> Result<ArrayRef, MlError> {
    Ok(cast(array, &DataType::Float64)?)
}

/// The column as `LargeUtf8` (nulls stay null).
fn as_strings(array: &ArrayRef) -> Result<ArrayRef, MlError> {
    Ok(cast(array, &DataType::LargeUtf8)?)
}

/// Count, mean and sum of squared deviations of finite values: a mergeable
/// partial aggregate.
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: f64,
    mean: f64,
    m2: f64,
}

impl Moments {
    /// Two passes over one batch (no division per value).
    fn of(values: &[Option<f64>]) -> Moments {
        let (mut n, mut sum) = (0.0, 0.0);
        for v in values.iter().flatten().filter(|v| v.is_finite()) {
            n += 1.0;
            sum += v;
        }
        if n == 0.0 {
            return Moments::default();
        }
        let mean = sum / n;
        let m2 = values
            .iter()
            .flatten()
            .filter(|v| v.is_finite())
            .map(|v| (v - mean) * (v - mean))
            .sum();
        Moments { n, mean, m2 }
    }

    fn merge(self, o: Moments) -> Moments {
        if o.n == 0.0 {
            return self;
        }
        if self.n == 0.0 {
            return o;
        }
        let n = self.n + o.n;
        let d = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + d * o.n / n,
            m2: self.m2 + o.m2 + d * d * self.n * o.n / n,
        }
    }
}

impl FeatureEncoder {
    /// Fits an encoder for `columns` on `batches` (see the module docs for
    /// the encoding). Errors name the column that is missing or has a type
    /// that cannot be encoded.
    pub fn fit(
        batches: &[RecordBatch],
        columns: &[String],
        opts: &EncoderOptions,
    ) -> Result<FeatureEncoder, MlError> {
        let mut fitter = EncoderFitter::new(columns, opts);
        for batch in batches {
            fitter.push(batch)?;
        }
        fitter.finish()
    }

    /// Encodes `batches` (all rows, in order) into one matrix with
    /// [`FeatureEncoder::width`] columns.
    ///
    /// Each column is read (cast, categories looked up) on its own, in
    /// parallel; then blocks of output rows are filled in parallel, every
    /// column of a block while the block sits in the cache (the matrix is
    /// row-major: filling it column by column would stream all of it through
    /// the cache once per column).
    pub fn transform(&self, batches: &[RecordBatch]) -> Result<Matrix, MlError> {
        /// Output rows per parallel block (a few kB per block).
        const ROWS: usize = 64;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let width = self.width();
        let mut out = Matrix::zeros(rows, width);
        let mut col0 = Vec::with_capacity(self.columns.len());
        let mut next = 0;
        for enc in &self.encodings {
            col0.push(next);
            next += enc.width();
        }
        let mut row0 = 0;
        for batch in batches {
            let sources: Vec<Result<Source, MlError>> = self
                .columns
                .par_iter()
                .zip(&self.encodings)
                .map(|(name, enc)| Source::of(batch, name, enc))
                .collect();
            // the first failing column, in column order
            let sources = sources.into_iter().collect::<Result<Vec<_>, _>>()?;
            let m = batch.num_rows();
            out.data[row0 * width..(row0 + m) * width]
                .par_chunks_mut(width.max(1) * ROWS)
                .enumerate()
                .for_each(|(b, block)| {
                    let first = b * ROWS;
                    for (source, &c0) in sources.iter().zip(&col0) {
                        let rows = block.chunks_exact_mut(width).enumerate();
                        match source {
                            Source::Numeric {
                                values,
                                mean,
                                std,
                                fill,
                            } => {
                                for (i, row) in rows {
                                    let r = first + i;
                                    let z = values
                                        .is_valid(r)
                                        .then(|| (values.value(r) - mean) / std)
                                        .filter(|z| z.is_finite());
                                    row[c0] = z.unwrap_or(*fill) as f32;
                                }
                            }
                            Source::Slots(slots) => {
                                for (i, row) in rows {
                                    row[c0 + slots[first + i] as usize] = 1.0;
                                }
                            }
                        }
                    }
                });
            row0 += m;
        }
        Ok(out)
    }

    /// Names of the output columns: a numeric column keeps its name, a
    /// categorical column `c` gives `c=<value>` per kept value, then `c=<other>`.
    pub fn output_names(&self) -> Vec<String> {
        let mut names = Vec::with_capacity(self.width());
        for (name, enc) in self.columns.iter().zip(&self.encodings) {
            match enc {
                ColumnEncoding::Numeric { .. } => names.push(name.clone()),
                ColumnEncoding::Categorical { categories } => {
                    names.extend(categories.iter().map(|c| format!("{name}={c}")));
                    names.push(format!("{name}=<other>"));
                }
            }
        }
        names
    }

    /// The number of output columns.
    pub fn width(&self) -> usize {
        self.encodings.iter().map(ColumnEncoding::width).sum()
    }

    /// The output columns of each input column, in order (1 for a numeric
    /// column, its categories and "other" for a categorical one).
    pub fn column_widths(&self) -> Vec<usize> {
        self.encodings.iter().map(ColumnEncoding::width).collect()
    }

    /// The input columns, in order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// How each input column is encoded (same order as [`FeatureEncoder::columns`]).
    pub fn encodings(&self) -> &[ColumnEncoding] {
        &self.encodings
    }

    /// What keeps `schema` from being encoded as the fitted rows were: the
    /// input columns it lacks, and those whose type is of another kind
    /// (`numeric` / `categorical`) than at fit time, with the type found.
    pub fn mismatches(&self, schema: &arrow::datatypes::Schema) -> Mismatches {
        let mut out = Mismatches::default();
        for (name, enc) in self.columns.iter().zip(&self.encodings) {
            let expected = match enc {
                ColumnEncoding::Numeric { .. } => "numeric",
                ColumnEncoding::Categorical { .. } => "categorical",
            };
            match schema.field_with_name(name) {
                Err(_) => out.missing.push(name.clone()),
                Ok(f) if kind_of(f.data_type()) != Some(expected) => {
                    out.mistyped
                        .push((name.clone(), expected, f.data_type().to_string()))
                }
                Ok(_) => {}
            }
        }
        out
    }
}

/// One input column of one batch, ready for [`FeatureEncoder::transform`].
enum Source {
    /// Values as `f64` and how they are standardised.
    Numeric {
        values: Float64Array,
        mean: f64,
        std: f64,
        /// What a missing or non-finite value becomes.
        fill: f64,
    },
    /// Each row's indicator among the categories (the last is "other").
    Slots(Vec<u32>),
}

impl Source {
    fn of(batch: &RecordBatch, name: &str, enc: &ColumnEncoding) -> Result<Source, MlError> {
        let array = column(batch, name)?;
        let kind = kind_of(array.data_type());
        let expected = match enc {
            ColumnEncoding::Numeric { .. } => "numeric",
            ColumnEncoding::Categorical { .. } => "categorical",
        };
        if kind != Some(expected) {
            return Err(MlError::TypeChanged {
                column: name.to_string(),
                expected,
                found: array.data_type().to_string(),
            });
        }
        Ok(match enc {
            ColumnEncoding::Numeric { mean, std, missing } => Source::Numeric {
                values: as_f64(array)?.as_primitive::<Float64Type>().clone(),
                mean: *mean,
                std: *std,
                fill: (missing - mean) / std,
            },
            ColumnEncoding::Categorical { categories } => {
                let index: HashMap<&str, u32> = categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.as_str(), i as u32))
                    .collect();
                let other = categories.len() as u32;
                let values = as_strings(array)?;
                Source::Slots(
                    values
                        .as_string::<i64>()
                        .iter()
                        .map(|v| v.and_then(|v| index.get(v).copied()).unwrap_or(other))
                        .collect(),
                )
            }
        })
    }
}

/// Fits a [`FeatureEncoder`] one batch at a time, so that the rows need not
/// be held together: [`FeatureEncoder::fit`] on the same batches gives the
/// same encoder.
pub struct EncoderFitter {
    columns: Vec<String>,
    opts: EncoderOptions,
    states: Vec<ColumnState>,
    /// Columns whose missing cells stay NaN ([`EncoderFitter::pool`]).
    masked: std::collections::BTreeSet<usize>,
}

/// What one column has shown so far.
enum ColumnState {
    /// No batch yet.
    Empty,
    /// The moments of a numeric column's finite values.
    Numeric(Moments),
    /// The counts of a text column's values.
    Categorical(HashMap<String, u64>),
}

impl EncoderFitter {
    /// A fitter for `columns`.
    pub fn new(columns: &[String], opts: &EncoderOptions) -> Self {
        EncoderFitter {
            columns: columns.to_vec(),
            opts: opts.clone(),
            states: columns.iter().map(|_| ColumnState::Empty).collect(),
            masked: std::collections::BTreeSet::new(),
        }
    }

    /// Learns from `batch`. Errors name the column that is missing, has a
    /// type that cannot be encoded, or changed type since an earlier batch;
    /// the first such column in column order is the error.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<(), MlError> {
        // every column on its own, in parallel
        let results: Vec<Result<(), MlError>> = self
            .states
            .par_iter_mut()
            .zip(&self.columns)
            .map(|(state, name)| state.push(batch, name))
            .collect();
        results.into_iter().collect()
    }

    /// Makes the numeric columns of each of `groups` (ranges of column
    /// indices) share one mean and one standard deviation, those of all
    /// their values together: a sequence's steps standardised per channel,
    /// so that the shape of each series survives. A missing step stays
    /// missing (NaN in the matrix) for the sequence encoders to mask rather
    /// than taking the mean. Call before [`EncoderFitter::finish`]; text
    /// columns in a group keep their own encoding.
    pub fn pool(&mut self, groups: &[std::ops::Range<usize>]) {
        for g in groups {
            let states = &mut self.states[g.clone()];
            let pooled = states.iter().fold(Moments::default(), |acc, s| match s {
                ColumnState::Numeric(m) => acc.merge(*m),
                _ => acc,
            });
            for s in states.iter_mut() {
                if let ColumnState::Numeric(m) = s {
                    *m = pooled;
                }
            }
            self.masked.extend(g.clone());
        }
    }

    /// The encoder.
    pub fn finish(self) -> Result<FeatureEncoder, MlError> {
        let opts = self.opts;
        let masked = self.masked;
        let encodings = self
            .states
            .into_iter()
            .enumerate()
            .map(|(i, s)| match s.encoding(&opts) {
                ColumnEncoding::Numeric { mean, std, .. } if masked.contains(&i) => {
                    ColumnEncoding::Numeric {
                        mean,
                        std,
                        missing: f64::NAN,
                    }
                }
                e => e,
            })
            .collect();
        Ok(FeatureEncoder {
            columns: self.columns,
            encodings,
        })
    }
}

impl ColumnState {
    fn push(&mut self, batch: &RecordBatch, name: &str) -> Result<(), MlError> {
        let numeric = column_kind(batch, name)? == "numeric";
        if let ColumnState::Empty = self {
            *self = if numeric {
                ColumnState::Numeric(Moments::default())
            } else {
                ColumnState::Categorical(HashMap::new())
            };
        }
        match self {
            ColumnState::Numeric(total) if numeric => {
                let values = as_f64(column(batch, name)?)?;
                let values: Vec<Option<f64>> =
                    values.as_primitive::<Float64Type>().iter().collect();
                *total = total.merge(Moments::of(&values));
            }
            ColumnState::Categorical(counts) if !numeric => {
                let values = as_strings(column(batch, name)?)?;
                for v in values.as_string::<i64>().iter().flatten() {
                    match counts.get_mut(v) {
                        Some(c) => *c += 1,
                        None => {
                            counts.insert(v.to_string(), 1);
                        }
                    }
                }
            }
            _ => {
                return Err(MlError::data(format!(
                    "column `{name}` changes type between batches"
                )));
            }
        }
        Ok(())
    }

    fn encoding(self, opts: &EncoderOptions) -> ColumnEncoding {
        match self {
            // No batches: nothing to learn; an identity encoding keeps the
            // output shape meaningful.
            ColumnState::Empty => ColumnEncoding::Numeric {
                mean: 0.0,
                std: 1.0,
                missing: 0.0,
            },
            ColumnState::Numeric(total) => numeric_encoding(total, opts.standardize),
            ColumnState::Categorical(counts) => {
                let mut ranked: Vec<(String, u64)> = counts.into_iter().collect();
                ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                ranked.truncate(opts.max_categories);
                ColumnEncoding::Categorical {
                    categories: ranked.into_iter().map(|(v, _)| v).collect(),
                }
            }
        }
    }
}

fn column_kind(batch: &RecordBatch, name: &str) -> Result<&'static str, MlError> {
    let array = column(batch, name)?;
    kind_of(array.data_type()).ok_or_else(|| MlError::UnsupportedType {
        column: name.to_string(),
        data_type: array.data_type().to_string(),
        what: "the feature encoder (numeric, boolean, string or dictionary columns only)",
    })
}

fn numeric_encoding(total: Moments, standardize: bool) -> ColumnEncoding {
    let std = if total.n > 0.0 {
        (total.m2 / total.n).sqrt()
    } else {
        0.0
    };
    if !standardize {
        // (x - 0) / 1 keeps the value; a missing one still becomes the mean
        return ColumnEncoding::Numeric {
            mean: 0.0,
            std: 1.0,
            missing: total.mean,
        };
    }
    ColumnEncoding::Numeric {
        mean: total.mean,
        std: if std > 0.0 && std.is_finite() {
            std
        } else {
            1.0
        },
        missing: total.mean,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, DictionaryArray, Float32Array, Int64Array, StringArray, TimestampSecondArray,
    };
    use arrow::datatypes::Int32Type;

    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    #[test]
    fn pooled_columns_share_moments_and_keep_a_missing_step_missing_through_a_save() {
        let b = batch(vec![
            ("t0", Arc::new(Float32Array::from(vec![1.0, f32::NAN]))),
            ("t1", Arc::new(Float32Array::from(vec![Some(3.0), None]))),
            ("t2", Arc::new(Float32Array::from(vec![5.0, 3.0]))),
            ("x", Arc::new(Float32Array::from(vec![f32::NAN, 2.0]))),
        ]);
        let mut f =
            EncoderFitter::new(&names(&["t0", "t1", "t2", "x"]), &EncoderOptions::default());
        f.push(&b).unwrap();
        f.pool(&[std::ops::Range { start: 0, end: 3 }]);
        let enc = f.finish().unwrap();
        // t0..t2 pooled: 1, 3, 5, 3 -> mean 3, std 1.4142...; x alone: mean 2
        let m = enc.transform(std::slice::from_ref(&b)).unwrap();
        let s = 2f32.sqrt();
        assert_eq!(m.row(0)[..3], [-2.0 / s, 0.0, 2.0 / s]);
        assert!(m.row(1)[0].is_nan() && m.row(1)[1].is_nan());
        assert_eq!(m.row(1)[2], 0.0);
        // a column outside the pool still takes its mean
        assert_eq!((m.row(0)[3], m.row(1)[3]), (0.0, 0.0));
        // NaN is saved as null and read back as NaN
        let json = serde_json::to_string(&enc).unwrap();
        assert!(json.contains("null"), "{json}");
        let back: FeatureEncoder = serde_json::from_str(&json).unwrap();
        let again = back.transform(&[b]).unwrap();
        assert_eq!(format!("{:?}", again.row(1)), format!("{:?}", m.row(1)));
    }

    #[test]
    fn numeric_columns_are_standardised_and_missing_values_become_the_mean() {
        let b = batch(vec![
            (
                "i",
                Arc::new(Int64Array::from(vec![Some(1), Some(3), None, Some(2)])),
            ),
            (
                "f",
                Arc::new(Float32Array::from(vec![f32::NAN, 5.0, 5.0, f32::INFINITY])),
            ),
            (
                "b",
                Arc::new(BooleanArray::from(vec![true, false, true, true])),
            ),
        ]);
        let enc = FeatureEncoder::fit(
            std::slice::from_ref(&b),
            &names(&["i", "f", "b"]),
            &EncoderOptions::default(),
        )
        .unwrap();
        assert_eq!(enc.output_names(), ["i", "f", "b"]);
        // i: mean 2, population std sqrt(2/3)
        let s = (2.0f64 / 3.0).sqrt();
        let m = enc.transform(&[b]).unwrap();
        assert_eq!((m.rows, m.cols), (4, 3));
        let col = |j: usize| (0..4).map(|i| m.get(i, j)).collect::<Vec<_>>();
        assert_eq!(col(0), vec![(-1.0 / s) as f32, (1.0 / s) as f32, 0.0, 0.0]);
        // f: constant over finite values -> std 1, all zero; NaN/inf -> 0
        assert_eq!(col(1), vec![0.0; 4]);
        // b: mean 0.75, std sqrt(0.1875)
        let sb = 0.1875f64.sqrt();
        assert_eq!(col(2)[1], (-0.75 / sb) as f32);
        assert_eq!(col(2)[0], (0.25 / sb) as f32);
    }

    #[test]
    fn categories_are_the_most_frequent_with_ties_by_value_and_the_rest_is_other() {
        let v = vec![
            Some("b"),
            Some("a"),
            Some("c"),
            Some("b"),
            None,
            Some("a"),
            Some("d"),
        ];
        let b = batch(vec![("c", Arc::new(StringArray::from(v)) as ArrayRef)]);
        let opts = EncoderOptions {
            max_categories: 2,
            ..EncoderOptions::default()
        };
        let enc = FeatureEncoder::fit(std::slice::from_ref(&b), &names(&["c"]), &opts).unwrap();
        assert_eq!(enc.output_names(), ["c=a", "c=b", "c=<other>"]);
        let m = enc.transform(&[b]).unwrap();
        let expect: Vec<f32> = vec![
            0., 1., 0., //
            1., 0., 0., //
            0., 0., 1., //
            0., 1., 0., //
            0., 0., 1., //
            1., 0., 0., //
            0., 0., 1.,
        ];
        assert_eq!(m.data, expect);
    }

    #[test]
    fn fitted_on_train_applies_to_test_with_unseen_values_and_dictionaries() {
        let train = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![0, 10])) as ArrayRef),
            ("c", Arc::new(StringArray::from(vec!["u", "v"]))),
        ]);
        let keys = arrow::array::Int32Array::from(vec![0, 1, 0]);
        let dict_values = Arc::new(StringArray::from(vec!["v", "w"]));
        let dict = DictionaryArray::<Int32Type>::try_new(keys, dict_values).unwrap();
        let test = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![5, 20, -5])) as ArrayRef),
            ("c", Arc::new(dict)),
        ]);
        let cols = names(&["x", "c"]);
        let enc = FeatureEncoder::fit(&[train], &cols, &EncoderOptions::default()).unwrap();
        let m = enc.transform(&[test]).unwrap();
        assert_eq!(enc.output_names(), ["x", "c=u", "c=v", "c=<other>"]);
        assert_eq!(m.row(0), &[0.0, 0.0, 1.0, 0.0]);
        assert_eq!(m.row(1), &[3.0, 0.0, 0.0, 1.0]);
        assert_eq!(m.row(2), &[-2.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn batches_are_concatenated_and_statistics_merged() {
        let b1 = batch(vec![(
            "x",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )]);
        let b2 = batch(vec![(
            "x",
            Arc::new(Int64Array::from(vec![3, 4, 5])) as ArrayRef,
        )]);
        let one = batch(vec![(
            "x",
            Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5])) as ArrayRef,
        )]);
        let cols = names(&["x"]);
        let split =
            FeatureEncoder::fit(&[b1.clone(), b2.clone()], &cols, &EncoderOptions::default())
                .unwrap();
        let whole = FeatureEncoder::fit(
            std::slice::from_ref(&one),
            &cols,
            &EncoderOptions::default(),
        )
        .unwrap();
        let (m1, m2) = (
            split.transform(&[b1, b2]).unwrap(),
            whole.transform(&[one]).unwrap(),
        );
        for (a, b) in m1.data.iter().zip(&m2.data) {
            assert!((a - b).abs() < 1e-6);
        }
        assert_eq!(m1.rows, 5);
    }

    #[test]
    fn errors_name_the_column() {
        let b = batch(vec![
            ("x", Arc::new(Int64Array::from(vec![1])) as ArrayRef),
            ("t", Arc::new(TimestampSecondArray::from(vec![1]))),
            ("s", Arc::new(StringArray::from(vec!["a"]))),
        ]);
        let opts = EncoderOptions::default();
        let e =
            FeatureEncoder::fit(std::slice::from_ref(&b), &names(&["nope"]), &opts).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
        let e = FeatureEncoder::fit(std::slice::from_ref(&b), &names(&["t"]), &opts).unwrap_err();
        assert!(e.to_string().contains("`t`"), "{e}");
        // fitted numeric, given a string column of the same name
        let enc = FeatureEncoder::fit(&[b], &names(&["x"]), &opts).unwrap();
        let other = batch(vec![(
            "x",
            Arc::new(StringArray::from(vec!["1"])) as ArrayRef,
        )]);
        let e = enc.transform(&[other]).unwrap_err();
        assert!(e.to_string().contains("`x`"), "{e}");
    }

    #[test]
    fn without_standardisation_values_pass_and_missing_become_the_mean() {
        let b = batch(vec![(
            "x",
            Arc::new(Float32Array::from(vec![Some(2.0), None, Some(4.0)])) as ArrayRef,
        )]);
        let opts = EncoderOptions {
            standardize: false,
            ..EncoderOptions::default()
        };
        let enc = FeatureEncoder::fit(std::slice::from_ref(&b), &names(&["x"]), &opts).unwrap();
        assert_eq!(enc.transform(&[b]).unwrap().data, vec![2.0, 3.0, 4.0]);
    }

    #[test]
    fn encoder_round_trips_through_json() {
        let b = batch(vec![(
            "c",
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
        )]);
        let enc = FeatureEncoder::fit(&[b], &names(&["c"]), &EncoderOptions::default()).unwrap();
        let back: FeatureEncoder =
            serde_json::from_str(&serde_json::to_string(&enc).unwrap()).unwrap();
        assert_eq!(back, enc);
    }
}
