//! `train`'s and `pretrain`'s reading of their table in batches: one pass
//! that learns what the whole table holds (the feature encoder, the classes
//! and their counts, valid weights), the rows read a shuffle buffer at a
//! time from the store when their encoded matrix does not fit the memory
//! budget (see [`crate::fit::TrainRows`]), and the output table written to
//! the store as it is computed.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use arrow::array::RecordBatch;
use gigo_ml::{Classes, EncoderFitter, EncoderOptions, FeatureEncoder, Matrix};
use gigo_pipeline::{Artifact, Source, StageContext, Table, rechunk};

use crate::data;
use crate::error::NeuralError;
use crate::fit::{CHUNK_ROWS, EvalRows, Scorer, TrainRows, Window};

/// What one pass over the training table learnt.
pub(crate) struct Scan {
    /// The encoder fitted on the rows (`None` when it was given).
    pub fitted: Option<FeatureEncoder>,
    /// The classes, in [`Classes`] order.
    pub classes: Vec<String>,
    /// Labelled rows per class.
    pub counts: Vec<usize>,
    /// Rows, labelled or not.
    pub rows: usize,
    /// Steps of a sequence with no finite value in any channel (masked).
    pub missing_steps: usize,
}

impl Scan {
    /// Labelled rows.
    pub fn labelled(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Logs how many steps are masked, if any.
    pub fn log_missing_steps(&self, ctx: &StageContext) {
        if self.missing_steps > 0 {
            ctx.log(format!(
                "{} step(s) of the series have no value in any channel: the encoder masks them",
                self.missing_steps
            ));
        }
    }
}

/// Reads `source` once, in chunks of [`CHUNK_ROWS`] rows (the encoder's
/// statistics merge per chunk, so they do not depend on how the table was
/// batched): fits an encoder of `columns` unless `fit` is false, counts the
/// labels of `label` (if any), and checks the weights of `weights`. The
/// columns of each range in `pool` share their standardisation (a
/// sequence's channels: [`EncoderFitter::pool`]).
pub(crate) fn scan(
    source: &Source,
    columns: &[String],
    pool: &[Range<usize>],
    fit: bool,
    label: Option<&str>,
    weights: Option<&str>,
    batch_rows: usize,
) -> Result<Scan, NeuralError> {
    let mut fitter = fit.then(|| EncoderFitter::new(columns, &EncoderOptions::default()));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rows = 0;
    let mut missing_steps = 0;
    let batches = source.batches(batch_rows).map_err(from_stage)?;
    for chunk in rechunk(source.schema().clone(), batches, CHUNK_ROWS) {
        let chunk = chunk.map_err(from_stage)?;
        if let Some(f) = &mut fitter {
            f.push(&chunk)?;
        }
        missing_steps += check_channels(&chunk, columns, pool, rows)?;
        if let Some(label) = label {
            for key in data::label_keys(&chunk, label)?.into_iter().flatten() {
                match seen.get_mut(&key) {
                    Some(c) => *c += 1,
                    None => {
                        seen.insert(key, 1);
                    }
                }
            }
        }
        if let Some(w) = weights {
            data::read_weights_at(&chunk, w, rows)?;
        }
        rows += chunk.num_rows();
    }
    let classes = Classes::from_keys(seen.keys().map(String::as_str))
        .names()
        .to_vec();
    let counts = classes.iter().map(|c| seen[c]).collect();
    if let Some(f) = &mut fitter {
        f.pool(pool);
    }
    Ok(Scan {
        fitted: fitter.map(EncoderFitter::finish).transpose()?,
        classes,
        counts,
        rows,
        missing_steps,
    })
}

/// A sequence's channel (a range of `columns` in `pool`) with no finite
/// value in a row is an error naming the row: there is no series to read.
/// Otherwise the number of missing steps (no channel has a finite value
/// there), which the encoders mask. `at` is the chunk's first row.
fn check_channels(
    chunk: &RecordBatch,
    columns: &[String],
    pool: &[Range<usize>],
    at: usize,
) -> Result<usize, NeuralError> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Float64Type};
    let Some(length) = pool.first().map(|r| r.len()) else {
        return Ok(0);
    };
    let rows = chunk.num_rows();
    let mut step_seen = vec![false; rows * length];
    for (c, range) in pool.iter().enumerate() {
        let mut seen = vec![false; rows];
        for (t, name) in columns[range.clone()].iter().enumerate() {
            let Some(col) = chunk.column_by_name(name) else {
                continue;
            };
            let Ok(v) = arrow::compute::cast(col, &DataType::Float64) else {
                continue;
            };
            let v = v.as_primitive::<Float64Type>();
            for (i, s) in seen.iter_mut().enumerate() {
                let here = v.is_valid(i) && v.value(i).is_finite();
                *s |= here;
                step_seen[i * length + t] |= here;
            }
        }
        if let Some(i) = seen.iter().position(|s| !s) {
            return Err(NeuralError::data(format!(
                "row {}: channel {c} of the sequence (columns `{}` .. `{}`) has no finite \
                 value; drop the row or fill it upstream",
                at + i,
                columns[range.start],
                columns[range.end - 1]
            )));
        }
    }
    Ok(step_seen.iter().filter(|s| !**s).count())
}

fn from_stage(e: gigo_pipeline::StageError) -> NeuralError {
    NeuralError::data(e.to_string())
}

/// Whether a table's encoded matrix (`matrix_bytes`) is held in memory: when
/// the table is in memory already, or when the matrix fits the budget with
/// room to spare; otherwise every epoch reads the table from the store.
pub(crate) fn holds(source: &Source, matrix_bytes: u64, budget: u64) -> bool {
    matches!(source, Source::Memory(_)) || 3 * matrix_bytes + source.memory_bytes() <= budget
}

/// Columns a text or category column is counted as in [`share`]: its
/// one-hot width is known only once the encoder has seen the rows.
const CATEGORY_WIDTH: u64 = 16;

/// What a stage that holds `source`'s encoded matrix when [`holds`] allows
/// (against `budget`) sets aside for it before it has seen the rows: the
/// matrix three times (the rule's room to spare) and, for a stored table,
/// the table loaded; nothing when the rows will stream. Each column counts
/// as one float, a text or category column as [`CATEGORY_WIDTH`].
pub(crate) fn share(source: &Source, budget: u64) -> u64 {
    use arrow::datatypes::DataType;
    let width: u64 = source
        .schema()
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            t if t.is_numeric() || *t == DataType::Boolean => 1,
            _ => CATEGORY_WIDTH,
        })
        .sum();
    let matrix = (source.num_rows() as u64).saturating_mul(width * 4);
    if !holds(source, matrix, budget) {
        return 0;
    }
    let loaded = match source {
        Source::Memory(_) => 0,
        _ => source.memory_bytes(),
    };
    matrix.saturating_mul(3).saturating_add(loaded)
}

/// Rows computed at once when an output is written as it is computed (those
/// of [`crate::fit::predict`] and [`crate::ssl::embed`], so that the figures
/// do not depend on the batches).
pub(crate) const OUTPUT_ROWS: usize = 4096;

/// Reads `source` in chunks of [`OUTPUT_ROWS`] rows, maps each through `f`
/// and writes the results to output `port` in the store as they come.
pub(crate) fn write_through(
    source: &Source,
    ctx: &StageContext,
    port: &str,
    f: &mut dyn FnMut(Table) -> Result<Table, NeuralError>,
) -> Result<Artifact, NeuralError> {
    let mut writer = None;
    let batches = source.batches(ctx.batch_rows).map_err(from_stage)?;
    for chunk in rechunk(source.schema().clone(), batches, OUTPUT_ROWS) {
        let out = f(Table::from_batch(chunk.map_err(from_stage)?))?
            .to_batch()
            .map_err(|e| NeuralError::internal(e.to_string()))?;
        let w = match &mut writer {
            Some(w) => w,
            None => writer.insert(
                ctx.table_writer(port, out.schema())
                    .map_err(|e| NeuralError::internal(e.to_string()))?,
            ),
        };
        w.write(&out).map_err(from_stage)?;
    }
    let w = writer.ok_or_else(|| NeuralError::internal(format!("no rows for `{port}`")))?;
    let stored = w.finish().map_err(from_stage)?;
    Ok(Artifact::Stored(std::sync::Arc::new(stored)))
}

/// A batch's encoded features, its class indices (`None`: no label, or a
/// class the training rows lack; every row class 0 when `label` is
/// `None`) and the weights of column `weights`.
type Decoded = (Matrix, Vec<Option<u32>>, Option<Vec<f32>>);

fn decode(
    batch: &RecordBatch,
    encoder: &FeatureEncoder,
    label: Option<&str>,
    classes: &[String],
    weights: Option<&str>,
) -> Result<Decoded, NeuralError> {
    let m = encoder.transform(std::slice::from_ref(batch))?;
    let labels = match label {
        Some(label) => data::encode_labels(&data::label_keys(batch, label)?, classes),
        None => vec![Some(0); batch.num_rows()],
    };
    let weights = match weights {
        Some(col) => Some(data::read_weights(batch, col)?),
        None => None,
    };
    Ok((m, labels, weights))
}

/// Rows read from a table in batches, a shuffle buffer at a time: the
/// labelled rows, or every row (class 0) when there is no label.
pub(crate) struct StreamedRows<'a> {
    pub source: &'a Source,
    pub encoder: &'a FeatureEncoder,
    pub label: Option<&'a str>,
    pub classes: &'a [String],
    pub weights: Option<&'a str>,
    pub rows: usize,
    pub labelled: usize,
    pub batch_rows: usize,
}

impl TrainRows for StreamedRows<'_> {
    fn table_rows(&self) -> usize {
        self.rows
    }

    fn labelled_rows(&self) -> usize {
        self.labelled
    }

    fn cols(&self) -> usize {
        self.encoder.width()
    }

    fn window(&mut self, chunks: &[usize]) -> Result<Window<'_>, NeuralError> {
        // neighbouring chunks read as one range
        let mut ranges: Vec<Range<usize>> = Vec::new();
        for &c in chunks {
            let r = c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(self.rows);
            match ranges.last_mut() {
                Some(last) if last.end == r.start => last.end = r.end,
                _ => ranges.push(r),
            }
        }
        let cols = self.cols();
        let (mut x, mut y, mut w) = (Vec::new(), Vec::new(), Vec::new());
        let batches = self
            .source
            .rows_in(&ranges, self.batch_rows)
            .map_err(from_stage)?;
        for batch in batches {
            let batch = batch.map_err(from_stage)?;
            let (m, labels, weights) =
                decode(&batch, self.encoder, self.label, self.classes, self.weights)?;
            for (i, l) in labels.into_iter().enumerate() {
                let Some(l) = l else { continue };
                x.extend_from_slice(m.row(i));
                y.push(l);
                if let Some(ws) = &weights {
                    w.push(ws[i]);
                }
            }
        }
        let rows = y.len();
        Ok(Window {
            x: Cow::Owned(Matrix::new(rows, cols, x)),
            y: Cow::Owned(y),
            w: self.weights.map(|_| Cow::Owned(w)),
        })
    }
}

/// Rows scored from a table read in batches (validation rows too large to
/// hold), pushed to the scorer in table order: the figures of held rows.
pub(crate) struct StreamedEval<'a> {
    pub source: &'a Source,
    pub encoder: &'a FeatureEncoder,
    pub label: &'a str,
    pub classes: &'a [String],
    pub weights: Option<&'a str>,
    pub batch_rows: usize,
}

impl EvalRows for StreamedEval<'_> {
    fn score_into(&mut self, scorer: &mut Scorer) -> Result<(), NeuralError> {
        for batch in self.source.batches(self.batch_rows).map_err(from_stage)? {
            let batch = batch.map_err(from_stage)?;
            let (m, labels, weights) = decode(
                &batch,
                self.encoder,
                Some(self.label),
                self.classes,
                self.weights,
            )?;
            for (i, &y) in labels.iter().enumerate() {
                scorer.push(m.row(i), y, weights.as_ref().map(|w| w[i]))?;
            }
        }
        Ok(())
    }
}
