//! `label_noise` from `pred_probs` columns with a filter that decides each
//! row on its own (`confident_learning`, `predicted_neq_given`): three
//! passes over the table in batches, as cleanlab's
//! `find_label_issues_batched` reads its data, so that memory does not grow
//! with the rows. The first pass finds the classes and counts them, the
//! second sums each class's probabilities for the thresholds (in NumPy's
//! order, so they are bit for bit those of the whole table), the third
//! judges each row, writes it out and counts the confident joint. The
//! results are exactly those of the in-memory computation
//! ([`gigo_ml::confident::TwoPass`]).
//!
//! The other filters rank all rows against each other (which rows are "the
//! n lowest" depends on every row, and on how NumPy orders ties), so they
//! hold the table whole.

use std::collections::HashMap;

use arrow::compute::concat;
use gigo_ml::confident::TwoPass;

use super::*;

impl LabelNoise {
    /// The probability columns, when this stage runs in passes.
    pub(super) fn in_passes(&self) -> Option<&[String]> {
        match &self.source {
            Source::Columns(c) if TwoPass::streams(self.params.filter_by.to_ml()) => Some(c),
            _ => None,
        }
    }

    pub(super) fn run_in_passes(
        &self,
        source: &gigo_pipeline::Source,
        cols: &[String],
        ctx: &StageContext,
    ) -> Result<StageOutput, StageError> {
        let schema = source.schema().clone();
        let label = Table::empty(schema.clone()).label_column()?;
        let started = std::time::Instant::now();

        ctx.progress.message("labels");
        // each class: its rows, and its first value
        let mut seen: HashMap<String, (usize, ArrayRef)> = HashMap::new();
        let (mut rows, mut missing) = (0usize, 0usize);
        for batch in source.batches(ctx.batch_rows)? {
            let batch = batch?;
            let col = column(&batch, &label)?;
            rows += batch.num_rows();
            missing += col.null_count();
            for (i, key) in label_keys(col)?.into_iter().enumerate() {
                let Some(key) = key else { continue };
                match seen.get_mut(&key) {
                    Some(e) => e.0 += 1,
                    None => {
                        seen.insert(key, (1, col.slice(i, 1)));
                    }
                }
            }
        }
        if rows == 0 {
            return Err(StageError::data("label_noise got an empty table"));
        }
        if missing > 0 {
            return Err(missing_labels(&label, missing));
        }
        let classes = Classes::from_keys(seen.keys().map(String::as_str));
        let labels = LabelClasses {
            column: label,
            names: classes.names().to_vec(),
        };
        labels.check(cols)?;
        let k = labels.names.len();
        let counts: Vec<usize> = labels.names.iter().map(|n| seen[n].0).collect();
        let values: Vec<&dyn Array> = labels.names.iter().map(|n| seen[n].1.as_ref()).collect();
        let class_values = concat(&values)?;
        let mut two = TwoPass::new(
            counts,
            self.params.filter_by.to_ml(),
            self.params.score.to_ml(),
        )
        .map_err(from_ml)?;

        ctx.progress.message("confident thresholds");
        let mut at = 0;
        for batch in source.batches(ctx.batch_rows)? {
            let batch = batch?;
            let (index, probs) = batch_rows(&batch, &classes, &labels.column, cols, at)?;
            for (i, &l) in index.iter().enumerate() {
                two.first(l, &probs[i * k..(i + 1) * k]).map_err(from_ml)?;
            }
            at += batch.num_rows();
        }
        let seconds = started.elapsed().as_secs_f64();

        ctx.progress.message("confident learning");
        let mut tally = Tally::new(&schema, k, self.params.top_issues);
        let mut writers: Option<(TableWriter, TableWriter)> = None;
        let mut at = 0;
        for batch in source.batches(ctx.batch_rows)? {
            let batch = batch?;
            let (index, probs) = batch_rows(&batch, &classes, &labels.column, cols, at)?;
            let n = index.len();
            let mut v = Verdicts {
                is_issue: Vec::with_capacity(n),
                quality: Vec::with_capacity(n),
                suggested: Vec::with_capacity(n),
            };
            for (i, &l) in index.iter().enumerate() {
                let r = two.second(l, &probs[i * k..(i + 1) * k]).map_err(from_ml)?;
                v.is_issue.push(r.is_issue);
                v.quality.push(r.quality);
                v.suggested.push(r.suggested);
            }
            let (out, removed) = self.apply(&schema, &batch, &labels, &class_values, &v)?;
            tally.add(&batch, &index, &v)?;
            let (kept, gone) = match &mut writers {
                Some(w) => w,
                None => writers.insert((
                    ctx.table_writer("table", out.schema())?,
                    ctx.table_writer("removed", removed.schema())?,
                )),
            };
            kept.write(&out)?;
            gone.write(&removed)?;
            at += n;
        }
        let (kept, gone) =
            writers.ok_or_else(|| StageError::internal("label_noise read no batch"))?;
        let estimates = two.finish().map_err(from_ml)?;
        let how = json!({"source": "columns", "columns": cols, "read": "in 3 passes over batches"});
        let summary = self.summary(ctx, &labels, &tally, &estimates, how, seconds)?;
        Ok(StageOutput::new()
            .with(
                "table",
                gigo_pipeline::Source::Stored(Arc::new(kept.finish()?)),
            )
            .with(
                "removed",
                gigo_pipeline::Source::Stored(Arc::new(gone.finish()?)),
            )
            .with_summary(summary))
    }
}

/// A batch's labels (class indices) and its probability columns as
/// normalised rows (row-major); `at` is the batch's first row in the table.
fn batch_rows(
    batch: &RecordBatch,
    classes: &Classes,
    label: &str,
    cols: &[String],
    at: usize,
) -> Result<(Vec<u32>, Vec<f64>), StageError> {
    let index = classes
        .encode(column(batch, label)?)
        .map_err(from_ml)?
        .into_iter()
        .map(|c| c.ok_or_else(|| StageError::internal("a label without a class")))
        .collect::<Result<Vec<u32>, _>>()?;
    Ok((index, probability_rows(batch, cols, at)?))
}
