//! From the input table to what the samplers need (classes, feature values,
//! a kNN matrix), and from their decisions back to Arrow tables.
//!
//! Nothing here copies the input table: feature columns are read in place
//! (one `Float64` view per column, a copy only when the column has another
//! type or arrives in several batches), kept rows are Arrow slices of the
//! input, and synthetic rows are one new batch appended after them.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, PrimitiveArray, RecordBatch,
    UInt32Array, UInt64Array, new_null_array,
};
use arrow::buffer::{BooleanBuffer, NullBuffer, ScalarBuffer};
use arrow::compute::{FilterBuilder, cast, concat, interleave, take};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Float64Type, Int64Type, Schema, SchemaRef,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use gigo_ml::Matrix;
use gigo_pipeline::memory::F64Columns;
use gigo_pipeline::{REASON_COLUMN, Role, StageError, Table, field_with_role, role_of};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

/// Name of the column that marks synthetic rows.
pub const IS_SYNTHETIC: &str = "is_synthetic";

/// The input rows, addressed by a global index across batches.
pub struct Rows {
    /// The batches, in order.
    pub batches: Vec<RecordBatch>,
    /// The schema.
    pub schema: SchemaRef,
    starts: Vec<usize>,
    /// Total rows.
    pub n: usize,
}

impl Rows {
    /// About the bytes `rows` rows of this schema take (8 per value): the
    /// size of an output, for `release_before`.
    #[cfg(test)] // the whole-table reference only
    pub fn bytes(&self, rows: usize) -> usize {
        rows * self.schema.fields().len() * 8
    }

    /// The rows of `table`.
    pub fn of(table: &Table) -> Result<Rows, StageError> {
        let batches: Vec<RecordBatch> = table
            .batches()
            .iter()
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        let mut starts = Vec::with_capacity(batches.len());
        let mut n = 0usize;
        for b in &batches {
            starts.push(n);
            n += b.num_rows();
        }
        if n > u32::MAX as usize {
            return Err(StageError::data(format!(
                "rebalance handles up to {} rows, the input has {n}",
                u32::MAX
            )));
        }
        Ok(Rows {
            batches,
            schema: table.schema().clone(),
            starts,
            n,
        })
    }

    /// (batch, row within batch) of global row `g`.
    pub fn locate(&self, g: usize) -> (usize, usize) {
        let b = self.starts.partition_point(|&s| s <= g) - 1;
        (b, g - self.starts[b])
    }

    /// Column `field` of every batch.
    fn column(&self, field: usize) -> Vec<&dyn Array> {
        self.batches
            .iter()
            .map(|b| b.column(field).as_ref())
            .collect()
    }

    /// Column `field` over all rows as one `T` array, cast (a view when the
    /// column is one batch of that type).
    fn primitive<T: ArrowPrimitiveType>(
        &self,
        field: usize,
    ) -> Result<PrimitiveArray<T>, StageError> {
        let parts: Vec<ArrayRef> = self
            .batches
            .iter()
            .map(|b| cast(b.column(field), &T::DATA_TYPE))
            .collect::<Result<_, _>>()?;
        let one = match parts.as_slice() {
            [] => arrow::array::new_empty_array(&T::DATA_TYPE),
            [one] => one.clone(),
            many => {
                let refs: Vec<&dyn Array> = many.iter().map(|a| a.as_ref()).collect();
                concat(&refs)?
            }
        };
        Ok(one.as_primitive::<T>().clone())
    }

    /// Copies of the rows `rows` (global indices) of column `field`: a
    /// `take` when the input is one batch (no index pairs to build), an
    /// `interleave` across batches otherwise.
    fn take(&self, field: usize, rows: &[u32]) -> Result<ArrayRef, StageError> {
        if let [one] = self.batches.as_slice() {
            return Ok(take(
                one.column(field),
                &UInt32Array::from(rows.to_vec()),
                None,
            )?);
        }
        let at: Vec<(usize, usize)> = rows.iter().map(|&g| self.locate(g as usize)).collect();
        Ok(interleave(&self.column(field), &at)?)
    }
}

/// The classes of the label column.
pub struct Classes {
    /// The label column's position in the schema.
    pub field: usize,
    /// Class names (the label as text), in the order of
    /// [`gigo_ml::classes::Classes`]: numerically when every label is a
    /// number, else by text.
    pub names: Vec<String>,
    /// The class of every row.
    pub of_row: Vec<u32>,
    /// The rows of every class, ascending.
    pub members: Vec<Vec<u32>>,
}

/// Up to this many classes, an integer label is looked up by a scan.
const SCAN_CLASSES: usize = 16;

impl Classes {
    /// Reads the label column. Every row needs a label.
    #[cfg(test)] // the whole-table reference only
    pub fn load(rows: &Rows) -> Result<Classes, StageError> {
        let field = Classes::label_field(&rows.schema)?;
        Classes::read(
            &rows.schema,
            field,
            rows.n,
            rows.batches.iter().map(|b| Ok(b.column(field).clone())),
        )
    }

    /// The position of the label column in `schema`.
    pub fn label_field(schema: &SchemaRef) -> Result<usize, StageError> {
        let label = Table::empty(schema.clone()).label_column()?;
        schema
            .index_of(&label)
            .map_err(|_| StageError::internal("the label column vanished"))
    }

    /// Reads the label column `field` of `schema` from its pieces in row
    /// order (the batches of a table in memory, or of a stored one read in
    /// batches: the classes do not depend on how the rows are cut).
    pub fn read(
        schema: &SchemaRef,
        field: usize,
        rows: usize,
        columns: impl Iterator<Item = Result<ArrayRef, StageError>>,
    ) -> Result<Classes, StageError> {
        let label = schema.field(field).name().clone();
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut names: Vec<String> = Vec::new();
        let mut raw = Vec::with_capacity(rows);
        let mut nulls = 0usize;
        let integer = schema.field(field).data_type().is_integer();
        for col in columns {
            let col = &col?;
            if integer {
                // Fast path: one hash lookup per row on the integer itself,
                // text only once per class (as the formatter prints it).
                let ints = cast(col, &DataType::Int64)?;
                let ints = ints.as_primitive::<arrow::datatypes::Int64Type>();
                // Classes seen so far: a short list scanned first (a few
                // classes is the common case; a hash per row cost more than
                // the scan), then a map once there are many.
                let mut seen: Vec<(i64, u32)> = Vec::new();
                let mut by_value: HashMap<i64, u32> = HashMap::new();
                for v in ints.iter() {
                    let Some(v) = v else {
                        nulls += 1;
                        raw.push(0);
                        continue;
                    };
                    let known = if seen.len() < SCAN_CLASSES {
                        seen.iter().find(|e| e.0 == v).map(|e| e.1)
                    } else {
                        by_value.get(&v).copied()
                    };
                    let c = match known {
                        Some(c) => c,
                        None => {
                            let key = v.to_string();
                            let next = index.len() as u32;
                            let c = *index.entry(key.clone()).or_insert_with(|| {
                                names.push(key);
                                next
                            });
                            if seen.len() < SCAN_CLASSES {
                                seen.push((v, c));
                            }
                            by_value.insert(v, c);
                            c
                        }
                    };
                    raw.push(c);
                }
                continue;
            }
            let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
            for i in 0..col.len() {
                if col.is_null(i) {
                    nulls += 1;
                    raw.push(0);
                    continue;
                }
                let key = fmt.value(i).to_string();
                let next = index.len() as u32;
                let c = *index.entry(key.clone()).or_insert_with(|| {
                    names.push(key);
                    next
                });
                raw.push(c);
            }
        }
        if nulls > 0 {
            return Err(StageError::data(format!(
                "the label column `{label}` is missing on {nulls} rows: rebalance needs a class \
                 on every row (drop or fill them upstream)"
            )));
        }
        // The one class order of every stage (`gigo_ml::classes`): numbers
        // numerically, else text, as imbalanced-learn's np.unique of the
        // labels, so "the first class" means what it means there.
        let ordered = gigo_ml::Classes::from_keys(names.iter().map(String::as_str));
        let rank: Vec<u32> = names
            .iter()
            .map(|n| ordered.index_of(n))
            .collect::<Option<_>>()
            .ok_or_else(|| StageError::internal("a label lost its class"))?;
        let of_row: Vec<u32> = raw.into_iter().map(|c| rank[c as usize]).collect();
        let names = ordered.names().to_vec();
        let mut members = vec![Vec::new(); names.len()];
        for (i, &c) in of_row.iter().enumerate() {
            members[c as usize].push(i as u32);
        }
        Ok(Classes {
            field,
            names,
            of_row,
            members,
        })
    }

    /// Rows per class.
    pub fn counts(&self) -> Vec<usize> {
        self.members.iter().map(Vec::len).collect()
    }
}

/// A numeric feature column (integers, floats, booleans).
pub struct Numeric {
    /// Position in the schema.
    pub field: usize,
    values: Values,
    /// Mean of the present values: stands in for missing ones in distances.
    pub mean: f64,
}

/// A numeric column's values: `Int64` as it is (casting it would copy
/// the column), every other type cast to `Float64` (a view for `Float64`).
enum Values {
    F64(Float64Array),
    I64(Int64Array),
}

impl Numeric {
    /// The value of row `i`; `None` when null, NaN or infinite.
    #[inline]
    pub fn get(&self, i: usize) -> Option<f64> {
        match &self.values {
            Values::F64(a) => {
                if a.is_null(i) {
                    return None;
                }
                let v = a.value(i);
                v.is_finite().then_some(v)
            }
            Values::I64(a) => (!a.is_null(i)).then(|| a.value(i) as f64),
        }
    }

    /// Folds the present values of rows `0..rows` into a running (sum,
    /// count), in row order: the mean of a table read whole, or batch by
    /// batch ([`FeatureMeans`]), is the same bits.
    fn fold_present(&self, rows: usize, acc: (f64, usize)) -> (f64, usize) {
        (0..rows)
            .filter_map(|r| self.get(r))
            .fold(acc, |(s, n), v| (s + v, n + 1))
    }

    /// The value of row `i`, the column mean when missing.
    #[inline]
    pub fn imputed(&self, i: usize) -> f64 {
        self.get(i).unwrap_or(self.mean)
    }
}

/// A categorical feature column (SMOTE-NC): one code per distinct value,
/// a missing value being a category of its own.
pub struct Categorical {
    /// Position in the schema.
    pub field: usize,
    /// Code of every row.
    pub codes: Vec<u32>,
    /// Number of distinct codes.
    pub n_codes: usize,
}

/// The feature columns a sampler measures and interpolates.
pub struct Features {
    /// Numeric features, schema order.
    pub numeric: Vec<Numeric>,
    /// Categorical features (SMOTE-NC only), schema order.
    pub categorical: Vec<Categorical>,
}

fn is_numeric_type(t: &DataType) -> bool {
    matches!(t, DataType::Boolean)
        || (t.is_numeric() && !matches!(t, DataType::Decimal128(..) | DataType::Decimal256(..)))
}

fn is_text_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(_, _)
    )
}

impl Features {
    /// Loads the columns with role `feature`. `categorical`: the columns to
    /// treat as categorical (SMOTE-NC); `None` when the method takes numeric
    /// features only, in which case a text column is an error naming it.
    pub fn load(
        rows: &Rows,
        method: &str,
        categorical: Option<&[String]>,
    ) -> Result<Features, StageError> {
        let schema = &rows.schema;
        let names: Vec<(usize, &Field)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| role_of(f) == Role::Feature)
            .map(|(i, f)| (i, f.as_ref()))
            .collect();
        if names.is_empty() {
            return Err(StageError::data(format!(
                "`{method}` measures distances between rows but the input has no feature \
                 columns (role `feature`)"
            )));
        }
        if let Some(cats) = categorical {
            for c in cats {
                if !names.iter().any(|(_, f)| f.name() == c) {
                    return Err(StageError::data(format!(
                        "`categorical` names `{c}`, which is not a feature column of the input \
                         (feature columns: {})",
                        names
                            .iter()
                            .map(|(_, f)| f.name().as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        let mut numeric = Vec::new();
        let mut cat = Vec::new();
        for (i, f) in names {
            let t = f.data_type();
            let listed = categorical.is_some_and(|c| c.iter().any(|c| c == f.name()));
            if listed || (categorical.is_some() && is_text_type(t)) {
                cat.push(load_categorical(rows, i)?);
            } else if is_numeric_type(t) {
                let values = if t == &DataType::Int64 {
                    Values::I64(rows.primitive::<Int64Type>(i)?)
                } else {
                    Values::F64(rows.primitive::<Float64Type>(i)?)
                };
                // The mean only stands in for missing values: skip it when
                // there are none (one vectorised scan).
                let complete = match &values {
                    Values::F64(v) => {
                        v.null_count() == 0 && all(v.values(), |v| v.abs() < f64::INFINITY)
                    }
                    Values::I64(v) => v.null_count() == 0,
                };
                let mut col = Numeric {
                    field: i,
                    values,
                    mean: 0.0,
                };
                if !complete {
                    let (sum, n) = col.fold_present(rows.n, (0.0, 0));
                    col.mean = if n > 0 { sum / n as f64 } else { 0.0 };
                }
                numeric.push(col);
            } else if is_text_type(t) {
                return Err(StageError::data(format!(
                    "feature column `{}` is text ({t}): `{method}` interpolates and measures \
                     numeric features only; use method `smote_nc` for mixed numeric and \
                     categorical features, or give the column another role upstream",
                    f.name()
                )));
            } else {
                return Err(StageError::data(format!(
                    "feature column `{}` has type {t}, which rebalance cannot use (numeric, \
                     boolean or text columns only)",
                    f.name()
                )));
            }
        }
        if categorical.is_some() && numeric.is_empty() {
            return Err(StageError::data(
                "`smote_nc` needs at least one numeric feature column besides the categorical \
                 ones (as imbalanced-learn's SMOTE-NC); for categorical features only, use \
                 random_over",
            ));
        }
        Ok(Features {
            numeric,
            categorical: cat,
        })
    }

    /// The numeric features of `rows` as an `f32` matrix for the kNN engine
    /// (missing values replaced by the column mean).
    pub fn matrix(&self, rows: &[u32]) -> Matrix {
        let data = gather(&self.numeric, rows, |f, r| f.imputed(r) as f32);
        Matrix::new(rows.len(), self.numeric.len(), data)
    }

    /// The numeric features of `rows`, row-major, in `f64`.
    pub fn rows_f64(&self, rows: &[u32]) -> Vec<f64> {
        gather(&self.numeric, rows, Numeric::imputed)
    }

    /// Exact squared euclidean distance of rows `a` and `b` in `f64`.
    #[inline]
    pub fn dist2(&self, a: usize, b: usize) -> f64 {
        self.numeric
            .iter()
            .map(|f| {
                let d = f.imputed(a) - f.imputed(b);
                d * d
            })
            .sum()
    }
}

/// The means [`Features::load`] gives its numeric feature columns, folded
/// batch by batch in row order (the same sums in the same order, so the same
/// bits): a neighbour search over some rows of a table read in batches then
/// imputes missing values as one over the whole table would.
pub struct FeatureMeans {
    /// (field, sum of the present values, how many).
    cols: Vec<(usize, f64, usize)>,
}

impl FeatureMeans {
    /// No rows yet, for the numeric feature columns of `schema`.
    pub fn new(schema: &SchemaRef) -> FeatureMeans {
        let cols = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| role_of(f) == Role::Feature && is_numeric_type(f.data_type()))
            .map(|(i, _)| (i, 0.0, 0))
            .collect();
        FeatureMeans { cols }
    }

    /// Folds in the rows of `b`.
    pub fn add(&mut self, b: &RecordBatch) -> Result<(), StageError> {
        for (field, sum, n) in &mut self.cols {
            let col = b.column(*field);
            // as `Features::load` reads the column: Int64 as it is, else Float64
            let values = if col.data_type() == &DataType::Int64 {
                Values::I64(col.as_primitive::<Int64Type>().clone())
            } else {
                Values::F64(
                    cast(col, &DataType::Float64)?
                        .as_primitive::<Float64Type>()
                        .clone(),
                )
            };
            let view = Numeric {
                field: *field,
                values,
                mean: 0.0,
            };
            (*sum, *n) = view.fold_present(b.num_rows(), (*sum, *n));
        }
        Ok(())
    }

    /// Gives `f`'s numeric columns the means over every row folded in.
    pub fn apply(&self, f: &mut Features) {
        for col in &mut f.numeric {
            if let Some(&(_, sum, n)) = self.cols.iter().find(|c| c.0 == col.field) {
                col.mean = if n > 0 { sum / n as f64 } else { 0.0 };
            }
        }
    }
}

/// `value(column, row)` for `rows` and `columns`, row-major. Read a column
/// at a time over a chunk of rows: ascending rows then walk each column
/// forwards, which the prefetcher follows (a row at a time touched every
/// column at once, a cache miss per value).
fn gather<T: Copy + Default + Send>(
    columns: &[Numeric],
    rows: &[u32],
    value: impl Fn(&Numeric, usize) -> T + Sync,
) -> Vec<T> {
    const CHUNK: usize = 2048;
    let d = columns.len();
    let mut data = vec![T::default(); rows.len() * d];
    if d > 0 {
        data.par_chunks_mut(CHUNK * d)
            .zip(rows.par_chunks(CHUNK))
            .for_each(|(out, rows)| {
                for (p, f) in columns.iter().enumerate() {
                    for (o, &r) in out[p..].iter_mut().step_by(d).zip(rows) {
                        *o = value(f, r as usize);
                    }
                }
            });
    }
    data
}

/// Whether `test` holds for every value: a branch-free test over fixed
/// chunks (vectorises), stopping at the first chunk that fails.
fn all(values: &[f64], test: fn(f64) -> bool) -> bool {
    values
        .chunks(256)
        .all(|c| c.iter().fold(true, |ok, &v| ok & test(v)))
}

/// Squared euclidean distance of two rows, four partial sums at a time (so
/// that the compiler can keep several additions in flight).
#[inline]
pub fn sq_dist(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..4 {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += (x - y) * (x - y);
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

fn load_categorical(rows: &Rows, field: usize) -> Result<Categorical, StageError> {
    let mut index: HashMap<Option<String>, u32> = HashMap::new();
    let mut codes = Vec::with_capacity(rows.n);
    for b in &rows.batches {
        let col = b.column(field);
        let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
        for i in 0..col.len() {
            let key = (!col.is_null(i)).then(|| fmt.value(i).to_string());
            let next = index.len() as u32;
            codes.push(*index.entry(key).or_insert(next));
        }
    }
    Ok(Categorical {
        field,
        codes,
        n_codes: index.len(),
    })
}

/// The label value of every class, for labelling new rows: all an
/// over-sampler's output needs of [`Classes`], so that the per-row class
/// index can be freed before the synthetic columns are built.
pub struct ClassLabels {
    /// The label column's position in the schema.
    pub field: usize,
    /// Class `c`'s label at position `c` (its first row's value).
    values: ArrayRef,
}

impl ClassLabels {
    /// Each class's label, as in its first row.
    pub fn of(rows: &Rows, classes: &Classes) -> Result<ClassLabels, StageError> {
        let firsts: Vec<u32> = classes
            .members
            .iter()
            .map(|m| m.first().copied().unwrap_or(0))
            .collect();
        Ok(ClassLabels {
            field: classes.field,
            values: rows.take(classes.field, &firsts)?,
        })
    }
}

/// Synthetic rows decided by an over-sampler, one entry per new row.
#[derive(Debug, Default, Clone)]
pub struct Synthetic {
    /// Class of each new row.
    pub class: Vec<u32>,
    /// The row it starts from (global index).
    pub base: Vec<u32>,
    /// The neighbour it moves towards (global index); empty for copies.
    pub neighbour: Vec<u32>,
    /// How far: `base + gap * (neighbour - base)`, `gap` in [0, 1]; empty
    /// for copies.
    pub gap: Vec<f64>,
    /// SMOTE-NC: for each categorical feature, the row whose value each new
    /// row takes.
    pub categorical: Vec<Vec<u32>>,
    /// Random over-sampling: new rows are whole copies of `base`.
    pub copies: bool,
}

impl Synthetic {
    /// Number of new rows.
    pub fn len(&self) -> usize {
        self.class.len()
    }

    /// Whether there are none.
    #[cfg(test)] // the whole-table reference only
    pub fn is_empty(&self) -> bool {
        self.class.is_empty()
    }

    /// The new rows `at..at + len`.
    pub fn chunk(&self, at: usize, len: usize) -> Synthetic {
        let end = (at + len).min(self.len());
        let part = |v: &[u32]| v.get(at..end).map(<[u32]>::to_vec).unwrap_or_default();
        Synthetic {
            class: part(&self.class),
            base: part(&self.base),
            neighbour: part(&self.neighbour),
            gap: self
                .gap
                .get(at..end)
                .map(<[f64]>::to_vec)
                .unwrap_or_default(),
            categorical: self.categorical.iter().map(|c| part(c)).collect(),
            copies: self.copies,
        }
    }
}

/// Numeric features interpolated per group: the group's values of the
/// rows involved are gathered into one row-major block first, so that each
/// new row reads two short rows instead of two scattered values per column
/// (the random reads dominated the time otherwise).
const INTERPOLATE_GROUP: usize = 8;
/// New rows per parallel task when interpolating.
const INTERPOLATE_CHUNK: usize = 4096;

/// Interpolates every numeric feature for every new row; missing when either
/// end is missing. Integer and boolean columns are rounded (half away from
/// zero) and keep their type; floats keep their type. Returns the arrays in
/// the order of `f.numeric`.
///
/// Consumes the start and neighbour rows of `s` (turned into positions among
/// the rows involved, in place, to save memory on large tables).
fn interpolate(
    f: &Features,
    schema: &SchemaRef,
    n_rows: usize,
    mut base: Vec<u32>,
    mut neighbour: Vec<u32>,
    gap: &[f64],
) -> Result<Vec<ArrayRef>, StageError> {
    let n = gap.len();
    // the rows involved, ascending, and each one's position among them
    let used: Vec<u32> = {
        let mut pos = vec![u32::MAX; n_rows];
        for &g in base.iter().chain(&neighbour) {
            pos[g as usize] = 0;
        }
        let mut used = Vec::new();
        for (g, p) in pos.iter_mut().enumerate() {
            if *p == 0 {
                *p = used.len() as u32;
                used.push(g as u32);
            }
        }
        base.par_iter_mut()
            .chain(neighbour.par_iter_mut())
            .for_each(|g| *g = pos[*g as usize]);
        used
    };
    // `Float64` columns are written in place into one shared allocation
    // (huge pages when large, see `F64Columns`); other types through a
    // `f64` column that is rounded or cast afterwards.
    let is_f64: Vec<bool> = f
        .numeric
        .iter()
        .map(|c| schema.field(c.field).data_type() == &DataType::Float64)
        .collect();
    let mut region = F64Columns::zeroed(is_f64.iter().filter(|&&k| k).count(), n);
    let mut region_cols = region.columns_mut();
    let mut f64_nulls: Vec<Option<NullBuffer>> = Vec::new();
    let mut others: Vec<Option<ArrayRef>> = vec![None; f.numeric.len()];
    let nan_nulls = |values: &[f64]| {
        (!all(values, |v| !v.is_nan()))
            .then(|| NullBuffer::from_iter(values.iter().map(|v| !v.is_nan())))
    };
    for (g, group) in f.numeric.chunks(INTERPOLATE_GROUP).enumerate() {
        let width = group.len();
        let first = g * INTERPOLATE_GROUP;
        let kinds = &is_f64[first..first + width];
        let in_region = kinds.iter().filter(|&&k| k).count();
        // NaN marks a missing value; `get` never returns NaN, so no real
        // value is mistaken for one, and NaN propagates to the result.
        let block = gather(group, &used, |col, g| col.get(g).unwrap_or(f64::NAN));
        let mut own: Vec<Vec<f64>> = (in_region..width).map(|_| vec![0f64; n]).collect();
        // one null mask per Float64 column done so far: the next one's index
        let region_from = f64_nulls.len();
        {
            let mut from_region = region_cols[region_from..region_from + in_region].iter_mut();
            let mut from_own = own.iter_mut();
            let mut tasks: Vec<Vec<&mut [f64]>> = (0..n.div_ceil(INTERPOLATE_CHUNK))
                .map(|_| Vec::with_capacity(width))
                .collect();
            for &k in kinds {
                let col: &mut [f64] = if k {
                    from_region
                        .next()
                        .expect("one region column per Float64 one")
                } else {
                    from_own.next().expect("one own column per other type")
                };
                for (task, part) in tasks.iter_mut().zip(col.chunks_mut(INTERPOLATE_CHUNK)) {
                    task.push(part);
                }
            }
            tasks
                .into_par_iter()
                .enumerate()
                .for_each(|(t, mut parts)| {
                    let i0 = t * INTERPOLATE_CHUNK;
                    let len = parts.first().map_or(0, |p| p.len());
                    for (r, i) in (i0..i0 + len).enumerate() {
                        let a = &block[base[i] as usize * width..][..width];
                        let b = &block[neighbour[i] as usize * width..][..width];
                        let g = gap[i];
                        for ((part, &a), &b) in parts.iter_mut().zip(a).zip(b) {
                            part[r] = a + g * (b - a);
                        }
                    }
                });
        }
        drop(block);
        let mut own = own.into_iter();
        for (i, (col, &k)) in group.iter().zip(kinds).enumerate() {
            if k {
                f64_nulls.push(nan_nulls(region_cols[f64_nulls.len()]));
                continue;
            }
            let mut values = own.next().expect("one own column per other type");
            let data_type = schema.field(col.field).data_type();
            let nulls = nan_nulls(&values);
            others[first + i] = Some(if data_type == &DataType::Int64 {
                // Rounded in place, each value's bits then those of the
                // i64 (same width), so the buffer becomes the column as is.
                values
                    .par_iter_mut()
                    .for_each(|v| *v = f64::from_bits(v.round() as i64 as u64));
                let bits = arrow::buffer::Buffer::from_vec(values);
                Arc::new(Int64Array::new(ScalarBuffer::new(bits, 0, n), nulls))
            } else {
                if !matches!(data_type, DataType::Float16 | DataType::Float32) {
                    values.par_iter_mut().for_each(|v| *v = v.round());
                }
                let array: ArrayRef = Arc::new(Float64Array::new(values.into(), nulls));
                cast(&array, data_type)?
            });
        }
    }
    drop(region_cols);
    let mut buffers = region.into_buffers().into_iter();
    let mut nulls = f64_nulls.into_iter();
    is_f64
        .iter()
        .zip(others)
        .map(|(&k, other)| match (k, other) {
            (false, Some(a)) => Ok(a),
            _ => match (buffers.next(), nulls.next()) {
                (Some(b), Some(nulls)) => Ok(Arc::new(Float64Array::new(b, nulls)) as ArrayRef),
                _ => Err(StageError::internal("interpolated columns out of step")),
            },
        })
        .collect()
}

/// The synthetic rows as a batch with the input's columns plus
/// `is_synthetic`; see the module docs of `rebalance` for what each kind of
/// column holds.
pub fn synthetic_batch(
    rows: &Rows,
    labels: &ClassLabels,
    features: Option<&Features>,
    s: Synthetic,
) -> Result<Vec<(Field, ArrayRef)>, StageError> {
    let n = s.len();
    let Synthetic {
        class,
        mut base,
        neighbour,
        gap,
        categorical,
        copies,
    } = s;
    let label = take(&labels.values, &UInt32Array::from(class), None)?;
    // Weight columns copy the start row's weight; interpolation consumes
    // `base`, so keep the start rows for them (only when there are any).
    let has_weight = rows
        .schema
        .fields()
        .iter()
        .any(|f| role_of(f) == Role::Weight);
    let weight_base = if has_weight && !copies {
        base.clone()
    } else {
        Vec::new()
    };
    // Numeric features, a group of columns at a time.
    let mut interpolated: HashMap<usize, ArrayRef> = HashMap::new();
    if let (false, Some(f)) = (copies, features) {
        let start = std::mem::take(&mut base);
        let arrays = interpolate(f, &rows.schema, rows.n, start, neighbour, &gap)?;
        for (col, a) in f.numeric.iter().zip(arrays) {
            interpolated.insert(col.field, a);
        }
    }
    let mut out = Vec::new();
    for (i, field) in rows.schema.fields().iter().enumerate() {
        let role = role_of(field);
        let t = field.data_type();
        let array: ArrayRef = if i == labels.field {
            label.clone()
        } else if field.name() == IS_SYNTHETIC {
            flag(n, true)
        } else if copies {
            if role == Role::Id {
                new_null_array(t, n)
            } else {
                rows.take(i, &base)?
            }
        } else if let Some(a) = interpolated.remove(&i) {
            a
        } else if let Some((j, _)) =
            features.and_then(|f| f.categorical.iter().enumerate().find(|(_, c)| c.field == i))
        {
            rows.take(i, &categorical[j])?
        } else if role == Role::Weight {
            rows.take(i, &weight_base)?
        } else {
            new_null_array(t, n)
        };
        out.push((field.as_ref().clone(), array));
    }
    Ok(out)
}

/// What a resampling step produced: the rows that stay (input rows first, in
/// order, then synthetic rows) and the removed rows with their reason.
#[cfg(test)] // the whole-table reference only
pub struct Outcome {
    /// The output table (`is_synthetic` included).
    pub table: Table,
    /// Removed rows with `removed_reason`.
    pub removed: Table,
}

/// What the `removed` port holds for each removed row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovedRows {
    /// Every column of the row, and `removed_reason`.
    Full,
    /// The row's position (`input_row`), its label, its `id` columns,
    /// `is_synthetic` and `removed_reason`: enough to count, audit and join
    /// back, without copying every removed row's features (random
    /// under-sampling of a 10% minority copies 80% of the table otherwise).
    Index,
}

/// The column of [`RemovedRows::Index`] that holds a removed row's position.
pub const INPUT_ROW: &str = "input_row";

/// The schema of removed rows: the output's columns (with `Index`, only the
/// label, `id` columns and `is_synthetic`, after `input_row`) and
/// `removed_reason`.
pub fn removed_schema(schema: &SchemaRef, mode: RemovedRows) -> SchemaRef {
    let mut fields: Vec<Field> = match mode {
        RemovedRows::Full => schema.fields().iter().map(|f| f.as_ref().clone()).collect(),
        RemovedRows::Index => std::iter::once(field_with_role(
            Field::new(INPUT_ROW, DataType::UInt64, false),
            Role::Added,
        ))
        .chain(
            index_columns(schema)
                .into_iter()
                .map(|i| schema.field(i).clone()),
        )
        .collect(),
    };
    fields.push(field_with_role(
        Field::new(REASON_COLUMN, DataType::Utf8, false),
        Role::Added,
    ));
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The columns [`RemovedRows::Index`] keeps: label, `id`, `is_synthetic`.
fn index_columns(schema: &SchemaRef) -> Vec<usize> {
    (0..schema.fields().len())
        .filter(|&i| {
            let f = schema.field(i);
            matches!(role_of(f), Role::Label | Role::Id) || f.name() == IS_SYNTHETIC
        })
        .collect()
}

/// An empty table of removed rows for output schema `schema`.
pub fn empty_removed(schema: &SchemaRef, mode: RemovedRows) -> Table {
    Table::empty(removed_schema(schema, mode))
}

/// Refuses [`RemovedRows::Index`] when the input already has `input_row`.
pub fn check_removed_rows(schema: &SchemaRef, mode: RemovedRows) -> Result<(), StageError> {
    if mode == RemovedRows::Index && schema.index_of(INPUT_ROW).is_ok() {
        return Err(StageError::data(format!(
            "`removed_rows: index` reports removed rows in a column `{INPUT_ROW}`, and the \
             input already has a column of that name: rename it upstream, or use \
             `removed_rows: full`"
        )));
    }
    Ok(())
}

/// A boolean column of `n` times `value`.
fn flag(n: usize, value: bool) -> ArrayRef {
    let bits = if value {
        BooleanBuffer::new_set(n)
    } else {
        BooleanBuffer::new_unset(n)
    };
    Arc::new(BooleanArray::new(bits, None))
}

/// The rows of `batch` where `keep` is true: one filter, prepared once and
/// applied to the columns in parallel (arrow's `filter_record_batch` runs
/// them one after another).
fn filter_columns(batch: &RecordBatch, keep: &BooleanArray) -> Result<RecordBatch, StageError> {
    let filter = FilterBuilder::new(keep).optimize().build();
    let columns: Vec<ArrayRef> = batch
        .columns()
        .par_iter()
        .map(|c| filter.filter(c))
        .collect::<Result<_, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(filter.count()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}

/// The output schema: the input's columns (nullable where `synthetic` has
/// nulls), and `is_synthetic` when the input lacks it (the flag is `true`
/// when it is added).
pub fn output_schema(schema: &SchemaRef, synthetic: Option<&[bool]>) -> (SchemaRef, bool) {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let has_flag = fields.iter().any(|f| f.name() == IS_SYNTHETIC);
    if !has_flag {
        fields.push(field_with_role(
            Field::new(IS_SYNTHETIC, DataType::Boolean, false),
            Role::Added,
        ));
    }
    if let Some(nulls) = synthetic {
        for (f, &has_nulls) in fields.iter_mut().zip(nulls) {
            if has_nulls && !f.is_nullable() {
                *f = f.clone().with_nullable(true);
            }
        }
    }
    let out = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    (out, !has_flag)
}

/// An input batch in the output schema: `is_synthetic` false added when
/// `add_flag`.
pub fn input_batch(
    b: &RecordBatch,
    schema: &SchemaRef,
    add_flag: bool,
) -> Result<RecordBatch, StageError> {
    let mut cols = b.columns().to_vec();
    if add_flag {
        cols.push(flag(b.num_rows(), false));
    }
    Ok(RecordBatch::try_new(schema.clone(), cols)?)
}

/// Which columns of synthetic rows hold nulls.
pub fn null_columns(cols: &[(Field, ArrayRef)]) -> Vec<bool> {
    cols.iter().map(|(_, a)| a.null_count() > 0).collect()
}

/// Synthetic rows (the input's columns) as a batch of the output schema.
pub fn synthetic_rows(
    mut arrays: Vec<ArrayRef>,
    schema: &SchemaRef,
    add_flag: bool,
) -> Result<RecordBatch, StageError> {
    if add_flag {
        let n = arrays.first().map_or(0, |a| a.len());
        arrays.push(flag(n, true));
    }
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

/// Removed rows by position: each row's reason as a code (0 kept, i + 1
/// for `reasons[i]`).
pub struct Removals {
    reasons: Vec<&'static str>,
    code: Vec<u8>,
}

impl Removals {
    /// The codes of `total` rows of which `removed` (global indices, with
    /// their reason) go.
    pub fn new(total: usize, removed: &[(u32, &'static str)]) -> Result<Removals, StageError> {
        let mut reasons: Vec<&'static str> = Vec::new();
        let mut code = vec![0u8; total];
        for &(g, r) in removed {
            let i = reasons.iter().position(|&n| n == r).unwrap_or_else(|| {
                reasons.push(r);
                reasons.len() - 1
            });
            code[g as usize] = u8::try_from(i + 1)
                .map_err(|_| StageError::internal("more than 255 removal reasons"))?;
        }
        Ok(Removals { reasons, code })
    }

    /// Cuts `b`, the rows from `start` on (in the output schema), into the
    /// rows kept and, when any go, the removed rows in `gone_schema` (see
    /// [`removed_schema`]).
    pub fn cut(
        &self,
        b: &RecordBatch,
        start: usize,
        mode: RemovedRows,
        gone_schema: &SchemaRef,
    ) -> Result<(RecordBatch, Option<RecordBatch>), StageError> {
        let part = &self.code[start..start + b.num_rows()];
        let keep = BooleanArray::from(part.iter().map(|&c| c == 0).collect::<Vec<_>>());
        let kept = filter_columns(b, &keep)?;
        let drop = arrow::compute::not(&keep)?;
        if drop.true_count() == 0 {
            return Ok((kept, None));
        }
        let mut cols = match mode {
            RemovedRows::Full => filter_columns(b, &drop)?.columns().to_vec(),
            RemovedRows::Index => {
                let rows: UInt64Array = (0..part.len())
                    .filter(|&i| part[i] != 0)
                    .map(|i| (start + i) as u64)
                    .collect();
                let picked = b.project(&index_columns(&b.schema()))?;
                let mut cols: Vec<ArrayRef> = vec![Arc::new(rows)];
                cols.extend(filter_columns(&picked, &drop)?.columns().iter().cloned());
                cols
            }
        };
        // sized exactly: at 1M rows, growing it by doubling would copy
        // and over-allocate the 800k reasons of random under-sampling
        let reasons = &self.reasons;
        let gone_codes = || part.iter().filter(|&&c| c != 0);
        let bytes = gone_codes().map(|&c| reasons[c as usize - 1].len()).sum();
        let mut text = arrow::array::StringBuilder::with_capacity(drop.true_count(), bytes);
        for &c in gone_codes() {
            text.append_value(reasons[c as usize - 1]);
        }
        cols.push(Arc::new(text.finish()));
        Ok((kept, Some(RecordBatch::try_new(gone_schema.clone(), cols)?)))
    }
}

/// Builds the output: every input row (with `is_synthetic` false, or as
/// it was when the input has that column), then `synthetic`, minus the
/// rows in `removed` (global indices over input rows then synthetic rows,
/// with their reason).
#[cfg(test)] // the whole-table reference only
pub fn assemble(
    rows: &Rows,
    synthetic: Option<Vec<(Field, ArrayRef)>>,
    removed: &[(u32, &'static str)],
    mode: RemovedRows,
) -> Result<Outcome, StageError> {
    let nulls = synthetic.as_deref().map(null_columns);
    let (schema, add_flag) = output_schema(&rows.schema, nulls.as_deref());
    let mut batches = Vec::with_capacity(rows.batches.len() + 1);
    for b in &rows.batches {
        batches.push(input_batch(b, &schema, add_flag)?);
    }
    if let Some(cols) = synthetic {
        let arrays = cols.into_iter().map(|(_, a)| a).collect();
        batches.push(synthetic_rows(arrays, &schema, add_flag)?);
    }
    let gone_schema = removed_schema(&schema, mode);
    if removed.is_empty() {
        return Ok(Outcome {
            table: Table::new(schema, batches)?,
            removed: Table::empty(gone_schema),
        });
    }
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let removals = Removals::new(total, removed)?;
    let (mut kept, mut gone) = (Vec::new(), Vec::new());
    let mut start = 0;
    for b in &batches {
        let (k, g) = removals.cut(b, start, mode, &gone_schema)?;
        kept.push(k);
        gone.extend(g);
        start += b.num_rows();
    }
    Ok(Outcome {
        table: Table::new(schema, kept)?,
        removed: Table::new(gone_schema, gone)?,
    })
}
