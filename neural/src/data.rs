//! Between Arrow tables and the dense matrices the networks eat: feature
//! columns, labels as class indices, sample weights, and the tables the
//! stages output (predictions, embeddings).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use gigo_ml::Matrix;
use gigo_pipeline::{Role, StageContext, Table, field_with_role, role_of};

use crate::config::{EncoderKind, EncoderParams, SequenceShape};
use crate::error::NeuralError;

/// The feature columns: `explicit` if given (each must exist), else every
/// column with role `feature`.
pub fn feature_columns(
    table: &Table,
    explicit: Option<&[String]>,
) -> Result<Vec<String>, NeuralError> {
    match explicit {
        Some(cols) => {
            let schema = table.schema();
            for c in cols {
                if schema.field_with_name(c).is_err() {
                    return Err(NeuralError::data(format!(
                        "feature column `{c}` (parameter `features`) is not in the table"
                    )));
                }
            }
            if cols.is_empty() {
                return Err(NeuralError::param("features", "lists no column"));
            }
            Ok(cols.to_vec())
        }
        None => {
            let cols = table.columns_with_role(Role::Feature);
            if cols.is_empty() {
                return Err(NeuralError::data(
                    "the table has no feature columns (role `feature`); tag them on the ingest \
                     stage or list them in `features`",
                ));
            }
            Ok(cols)
        }
    }
}

/// How a sequence encoder reads the feature columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SequenceLayout {
    /// The columns, channel after channel, step after step.
    pub columns: Vec<String>,
    /// The encoder's parameters with `sequence` set.
    pub params: EncoderParams,
    /// Feature columns that are not steps of the sequence (left out).
    pub left_out: Vec<String>,
}

impl SequenceLayout {
    /// `columns` read as they are, with `params`.
    pub fn as_given(columns: Vec<String>, params: EncoderParams) -> Self {
        SequenceLayout {
            columns,
            params,
            left_out: Vec::new(),
        }
    }

    /// Logs the feature columns left out, if any.
    pub fn log_left_out(&self, ctx: &StageContext) {
        if let Some(s) = self.params.sequence.filter(|_| !self.left_out.is_empty()) {
            ctx.log(format!(
                "the sequence is {} channel(s) x {} steps; {} feature column(s) not named as \
                 steps are not read: {}",
                s.channels,
                s.length,
                self.left_out.len(),
                self.left_out.join(", ")
            ));
        }
    }

    /// The column ranges of each channel (standardised together).
    pub fn channels(&self) -> Vec<std::ops::Range<usize>> {
        match self.params.sequence {
            Some(s) if self.params.is_sequence() => (0..s.channels)
                .map(|c| c * s.length..(c + 1) * s.length)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// The step a column name stands for: `t{j}` is step `j` of the one
/// channel (no name), `{name}_t{j}` step `j` of channel `name` (`d{c}_t{j}`
/// in the archive files, `x_t{j}` for list column `x` as `ingest` widens it).
fn step_of(name: &str) -> Option<(Option<&str>, usize)> {
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<usize>().ok())
            .flatten()
    };
    if let Some((channel, t)) = name.rsplit_once("_t")
        && !channel.is_empty()
        && let Some(t) = number(t)
    {
        return Some((Some(channel), t));
    }
    Some((None, number(name.strip_prefix('t')?)?))
}

/// Where a channel sorts: `d{c}` by `c` as a number, before channels of
/// other names in the order the table has them (`first`, the channel's
/// place among them, which also tells `d1` from `d01`).
fn channel_order(channel: Option<&str>, first: usize) -> (usize, usize, usize) {
    match channel.and_then(|c| c.strip_prefix('d')?.parse::<usize>().ok()) {
        Some(c) => (0, c, first),
        None => (1, first, 0),
    }
}

/// The name of step `t` of `channel`.
fn step_name(channel: Option<&str>, t: usize) -> String {
    match channel {
        Some(c) => format!("{c}_t{t}"),
        None => format!("t{t}"),
    }
}

/// The feature columns a sequence kind reads (`params.kind` rnn / tcn /
/// transformer; any other kind takes `columns` as they are). With
/// `params.sequence` the columns are taken in their order; without, the
/// shape comes from the names `t{j}` / `{channel}_t{j}`, the columns are
/// ordered by channel and step, and feature columns of other names are left
/// out, unless `explicit` (the user listed them), where they are an error. A
/// transformer over columns none of which is named as a step reads them as
/// tabular rows, one token per feature.
pub fn sequence_layout(
    params: &EncoderParams,
    columns: Vec<String>,
    explicit: bool,
) -> Result<SequenceLayout, NeuralError> {
    let mut params = params.clone();
    if !params.kind.reads_sequences() {
        return Ok(SequenceLayout::as_given(columns, params));
    }
    if params.kind == EncoderKind::Transformer
        && params.sequence.is_none()
        && !columns.iter().any(|c| step_of(c).is_some())
    {
        if params.causal {
            return Err(NeuralError::param(
                "encoder.causal",
                "a causal transformer needs a sequence (columns named `t{j}` / `{channel}_t{j}`, \
                 list columns, or `encoder.sequence`); tabular features have no order to mask",
            ));
        }
        return Ok(SequenceLayout::as_given(columns, params));
    }
    if let Some(shape) = params.sequence {
        if shape.channels * shape.length != columns.len() {
            return Err(NeuralError::param(
                "encoder.sequence",
                format!(
                    "{} channels of {} steps need {} feature columns, the table has {}",
                    shape.channels,
                    shape.length,
                    shape.channels * shape.length,
                    columns.len()
                ),
            ));
        }
        return Ok(SequenceLayout::as_given(columns, params));
    }
    let mut steps: Vec<(Option<String>, usize, String)> = Vec::new();
    let mut left_out = Vec::new();
    for c in columns {
        match step_of(&c) {
            Some((channel, t)) => steps.push((channel.map(String::from), t, c)),
            None if explicit => {
                return Err(NeuralError::param(
                    "features",
                    format!(
                        "column `{c}` is not named `t{{j}}` or `{{channel}}_t{{j}}`, so its \
                         place in the sequence is unknown: give `encoder.sequence: {{channels, \
                         length}}` and list the columns channel after channel"
                    ),
                ));
            }
            None => left_out.push(c),
        }
    }
    if steps.is_empty() {
        return Err(NeuralError::param(
            "encoder.sequence",
            "no feature column is named `t{j}` or `{channel}_t{j}` (nor is a list column): give \
             `encoder.sequence: {channels, length}` and the columns in `features`",
        ));
    }
    if let Some((_, _, c)) = steps.iter().find(|s| s.0.is_some() != steps[0].0.is_some()) {
        return Err(NeuralError::data(format!(
            "column `{c}` mixes the `t{{j}}` and `{{channel}}_t{{j}}` namings of a sequence (`{}` \
             is the other)",
            steps[0].2
        )));
    }
    // each channel's place, then the steps in channel and step order
    let mut first: std::collections::HashMap<Option<String>, usize> = Default::default();
    for (c, _, _) in &steps {
        let n = first.len();
        first.entry(c.clone()).or_insert(n);
    }
    let mut channels: Vec<((usize, usize, usize), Option<String>)> = first
        .iter()
        .map(|(c, &i)| (channel_order(c.as_deref(), i), c.clone()))
        .collect();
    channels.sort();
    let mut steps: Vec<((usize, usize, usize), usize, String)> = steps
        .into_iter()
        .map(|(c, t, name)| (channel_order(c.as_deref(), first[&c]), t, name))
        .collect();
    steps.sort();
    let length = steps.iter().map(|(_, t, _)| t + 1).max().unwrap_or(1);
    let longest = steps.iter().max_by_key(|(_, t, _)| *t).map(|s| s.2.clone());
    for (c, (key, channel)) in channels.iter().enumerate() {
        for t in 0..length {
            if steps.get(c * length + t).map(|(k, st, _)| (k, *st)) != Some((key, t)) {
                return Err(NeuralError::data(format!(
                    "the sequence of {} channel(s) x {length} steps (`{}` is its last step) has \
                     no column `{}`: every channel needs every step once",
                    channels.len(),
                    longest.unwrap_or_default(),
                    step_name(channel.as_deref(), t)
                )));
            }
        }
    }
    let ordered = steps.into_iter().map(|(_, _, name)| name).collect();
    params.sequence = Some(SequenceShape {
        channels: channels.len(),
        length,
    });
    Ok(SequenceLayout {
        columns: ordered,
        params,
        left_out,
    })
}

/// The label of every row as text (`None` for a missing label).
pub fn label_keys(batch: &RecordBatch, column: &str) -> Result<Vec<Option<String>>, NeuralError> {
    let col = batch
        .column_by_name(column)
        .ok_or_else(|| NeuralError::data(format!("label column `{column}` is missing")))?;
    Ok(gigo_ml::classes::label_keys(col)?)
}

/// The distinct labels in [`gigo_ml::Classes`] order.
pub fn classes_of(keys: &[Option<String>]) -> Vec<String> {
    gigo_ml::Classes::from_keys(keys.iter().flatten().map(String::as_str))
        .names()
        .to_vec()
}

/// Each key's class index (`None` for a null label or a class not in `classes`).
pub fn encode_labels(keys: &[Option<String>], classes: &[String]) -> Vec<Option<u32>> {
    gigo_ml::Classes::from_names(classes.to_vec()).encode_keys(keys)
}

/// The column with role `weight`, if the table has exactly one.
pub fn weight_column(table: &Table) -> Result<Option<String>, NeuralError> {
    let cols = table.columns_with_role(Role::Weight);
    match cols.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one.clone())),
        many => Err(NeuralError::data(format!(
            "the table has several weight columns ({}); keep one or set `sample_weights: false`",
            many.join(", ")
        ))),
    }
}

/// The per-row weights in `column`: finite and non-negative, no nulls.
pub fn read_weights(batch: &RecordBatch, column: &str) -> Result<Vec<f32>, NeuralError> {
    read_weights_at(batch, column, 0)
}

/// [`read_weights`] of a batch whose first row is row `first` of its table
/// (errors name the table's row).
pub fn read_weights_at(
    batch: &RecordBatch,
    column: &str,
    first: usize,
) -> Result<Vec<f32>, NeuralError> {
    let col = batch
        .column_by_name(column)
        .ok_or_else(|| NeuralError::data(format!("weight column `{column}` is missing")))?;
    let values = cast(col, &DataType::Float64)
        .map_err(|e| NeuralError::data(format!("weight column `{column}` is not numeric: {e}")))?;
    let values = values
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| NeuralError::internal("cast to Float64 gave another type"))?;
    let mut out = Vec::with_capacity(values.len());
    for i in 0..values.len() {
        let v = values.value(i);
        if values.is_null(i) || !v.is_finite() || v < 0.0 {
            return Err(NeuralError::data(format!(
                "weight column `{column}`: row {} has {}, not a finite non-negative weight",
                first + i,
                if values.is_null(i) {
                    "null".to_string()
                } else {
                    v.to_string()
                }
            )));
        }
        out.push(v as f32);
    }
    Ok(out)
}

pub use gigo_pipeline::{PREDICTED, prob_column};

/// `batch` without the columns in `drop`, keeping schema metadata.
fn without(batch: &RecordBatch, drop: &dyn Fn(&Field) -> bool) -> Result<RecordBatch, NeuralError> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !drop(schema.field(i)))
        .collect();
    batch
        .project(&keep)
        .map_err(|e| NeuralError::internal(format!("projecting columns: {e}")))
}

/// `table` with `probs` as `prob_<class>` columns and the `predicted`
/// class (see [`gigo_pipeline::with_predictions`]).
pub fn with_predictions(
    table: &Table,
    probs: &Matrix,
    classes: &[String],
) -> Result<Table, NeuralError> {
    gigo_pipeline::with_predictions(table, &probs.data, classes)
        .map_err(|e| NeuralError::internal(e.to_string()))
}

/// `table` with its feature columns replaced by the embedding (`emb_0`, ...,
/// role `feature`); every other column is kept.
pub fn with_embeddings(
    table: &Table,
    emb: &Matrix,
    features: &[String],
) -> Result<Table, NeuralError> {
    let batch = table
        .to_batch()
        .map_err(|e| NeuralError::internal(e.to_string()))?;
    let batch = without(&batch, &|f| {
        role_of(f) == Role::Feature || features.iter().any(|c| c == f.name())
    })?;
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
    for j in 0..emb.cols {
        let name = format!("emb_{j}");
        if fields.iter().any(|f| f.name() == &name) {
            return Err(NeuralError::data(format!(
                "the table already has a column `{name}`, which the embedding would replace"
            )));
        }
        let col: Vec<f64> = (0..emb.rows).map(|i| emb.get(i, j) as f64).collect();
        fields.push(field_with_role(
            Field::new(&name, DataType::Float64, false),
            Role::Feature,
        ));
        arrays.push(Arc::new(Float64Array::from(col)));
    }
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        batch.schema().metadata().clone(),
    ));
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(emb.rows));
    let out = RecordBatch::try_new_with_options(schema, arrays, &options)
        .map_err(|e| NeuralError::internal(format!("embedding table: {e}")))?;
    Ok(Table::from_batch(out))
}

/// Index of the largest value (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncoderKind;
    use arrow::array::{Int64Array, StringArray};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn rnn() -> EncoderParams {
        EncoderParams {
            kind: EncoderKind::Rnn,
            ..EncoderParams::default()
        }
    }

    #[test]
    fn sequence_layouts_come_from_column_names() {
        let l = sequence_layout(&rnn(), names(&["t2", "split", "t0", "t1"]), false).unwrap();
        assert_eq!(l.columns, names(&["t0", "t1", "t2"]));
        assert_eq!(l.left_out, names(&["split"]));
        assert_eq!(
            l.params.sequence,
            Some(SequenceShape {
                channels: 1,
                length: 3
            })
        );
        let l = sequence_layout(
            &rnn(),
            names(&["d1_t0", "d0_t1", "d0_t0", "d1_t1", "d0_t10"])
                .into_iter()
                .take(4)
                .collect(),
            false,
        )
        .unwrap();
        assert_eq!(l.columns, names(&["d0_t0", "d0_t1", "d1_t0", "d1_t1"]));
        assert_eq!(l.channels(), vec![0..2, 2..4]);
        // 10 sorts after 2 as a number, not as text
        let many: Vec<String> = (0..12).rev().map(|j| format!("t{j}")).collect();
        let l = sequence_layout(&rnn(), many, false).unwrap();
        assert_eq!(l.columns[10], "t10");
        // named channels (list columns as `ingest` widens them) keep the
        // table's order, after any `d{c}`
        let l = sequence_layout(
            &rnn(),
            names(&["y_t1", "x_t0", "y_t0", "x_t1", "d0_t0", "d0_t1", "row"]),
            false,
        )
        .unwrap();
        assert_eq!(
            l.columns,
            names(&["d0_t0", "d0_t1", "y_t0", "y_t1", "x_t0", "x_t1"])
        );
        assert_eq!(l.left_out, names(&["row"]));
        assert_eq!(l.channels(), vec![0..2, 2..4, 4..6]);
        // other kinds take the columns as they are
        let mlp = EncoderParams::default();
        let l = sequence_layout(&mlp, names(&["b", "a"]), false).unwrap();
        assert_eq!((l.channels(), l.columns), (vec![], names(&["b", "a"])));
    }

    #[test]
    fn broken_sequence_layouts_are_errors_that_name_the_column() {
        let err = |cols: &[&str], explicit: bool| {
            sequence_layout(&rnn(), names(cols), explicit)
                .unwrap_err()
                .to_string()
        };
        let e = err(&["t0", "t2"], false);
        assert!(e.contains("`t1`") && e.contains("`t2`"), "{e}");
        let e = err(&["x_t0", "x_t1", "y_t0"], false);
        assert!(e.contains("`y_t1`") && e.contains("2 channel"), "{e}");
        let e = err(&["d0_t0", "d0_t1", "d1_t0"], false);
        assert!(e.contains("`d1_t1`") && e.contains("2 channel"), "{e}");
        let e = err(&["t0", "d0_t1"], false);
        assert!(e.contains("mixes"), "{e}");
        let e = err(&["t0", "x"], true);
        assert!(e.contains("`x`") && e.contains("encoder.sequence"), "{e}");
        let e = err(&["x", "y"], false);
        assert!(e.contains("no feature column is named"), "{e}");
        let mut p = rnn();
        p.sequence = Some(SequenceShape {
            channels: 2,
            length: 2,
        });
        let e = sequence_layout(&p, names(&["a", "b", "c"]), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("need 4 feature columns, the table has 3"), "{e}");
    }

    #[test]
    fn numeric_classes_sort_as_numbers() {
        let keys: Vec<Option<String>> = ["10", "9", "1", "9"]
            .iter()
            .map(|s| Some(s.to_string()))
            .chain([None])
            .collect();
        let classes = classes_of(&keys);
        assert_eq!(classes, vec!["1", "9", "10"]);
        assert_eq!(
            encode_labels(&keys, &classes),
            vec![Some(2), Some(1), Some(0), Some(1), None]
        );
    }

    #[test]
    fn predictions_replace_earlier_ones() {
        let schema = Arc::new(Schema::new(vec![field_with_role(
            Field::new("x", DataType::Int64, false),
            Role::Feature,
        )]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Int64Array::from(vec![1, 2]))]).unwrap();
        let t = Table::from_batch(b);
        let classes = vec!["a".to_string(), "b".to_string()];
        let p = Matrix::new(2, 2, vec![0.9, 0.1, 0.2, 0.8]);
        let once = with_predictions(&t, &p, &classes).unwrap();
        let twice = with_predictions(&once, &p, &classes).unwrap();
        assert_eq!(twice.schema().fields().len(), 4);
        let b = twice.to_batch().unwrap();
        let pred = b.column_by_name(PREDICTED).unwrap();
        let pred = pred.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((pred.value(0), pred.value(1)), ("a", "b"));
        assert_eq!(twice.columns_with_role(Role::Added).len(), 3);
    }
}
