//! `train`'s reading of its training table in batches: one pass that learns
//! what the whole table holds (the feature encoder, the classes and their
//! counts, valid weights), and the training rows read a shuffle buffer at a
//! time from the store when their encoded matrix does not fit the memory
//! budget (see [`crate::fit::TrainRows`]).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use gigo_ml::{Classes, EncoderFitter, EncoderOptions, FeatureEncoder, Matrix};
use gigo_pipeline::{Source, rechunk};

use crate::data;
use crate::error::NeuralError;
use crate::fit::{CHUNK_ROWS, TrainRows, Window};

/// What one pass over the training table learnt.
pub(super) struct Scan {
    /// The encoder fitted on the rows (`None` when it was given).
    pub fitted: Option<FeatureEncoder>,
    /// The classes, in [`Classes`] order.
    pub classes: Vec<String>,
    /// Labelled rows per class.
    pub counts: Vec<usize>,
    /// Rows, labelled or not.
    pub rows: usize,
}

impl Scan {
    /// Labelled rows.
    pub fn labelled(&self) -> usize {
        self.counts.iter().sum()
    }
}

/// Reads `source` once, in chunks of [`CHUNK_ROWS`] rows (the encoder's
/// statistics merge per chunk, so they do not depend on how the table was
/// batched): fits an encoder of `columns` unless `fit` is false, counts the
/// labels of `label`, and checks the weights of `weights`.
pub(super) fn scan(
    source: &Source,
    columns: &[String],
    fit: bool,
    label: &str,
    weights: Option<&str>,
    batch_rows: usize,
) -> Result<Scan, NeuralError> {
    let mut fitter = fit.then(|| EncoderFitter::new(columns, &EncoderOptions::default()));
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut rows = 0;
    let batches = source.batches(batch_rows).map_err(from_stage)?;
    for chunk in rechunk(source.schema().clone(), batches, CHUNK_ROWS) {
        let chunk = chunk.map_err(from_stage)?;
        if let Some(f) = &mut fitter {
            f.push(&chunk)?;
        }
        for key in data::label_keys(&chunk, label)?.into_iter().flatten() {
            match seen.get_mut(&key) {
                Some(c) => *c += 1,
                None => {
                    seen.insert(key, 1);
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
    Ok(Scan {
        fitted: fitter.map(EncoderFitter::finish).transpose()?,
        classes,
        counts,
        rows,
    })
}

fn from_stage(e: gigo_pipeline::StageError) -> NeuralError {
    NeuralError::data(e.to_string())
}

/// Training rows read from a table in batches, a shuffle buffer at a time.
pub(super) struct StreamedRows<'a> {
    pub source: &'a Source,
    pub encoder: &'a FeatureEncoder,
    pub label: &'a str,
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
            let m = self.encoder.transform(std::slice::from_ref(&batch))?;
            let keys = data::label_keys(&batch, self.label)?;
            let labels = data::encode_labels(&keys, self.classes);
            let weights = match self.weights {
                Some(col) => Some(data::read_weights(&batch, col)?),
                None => None,
            };
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
