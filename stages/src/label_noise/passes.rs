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
//! Cross-validation with such a filter runs here too when the table whole
//! would not fit the run's budget: a pass gathers a stratified sample (each
//! class in proportion, at least `folds` rows of each, drawn with the
//! stage's seed) sized to half the budget, the model is cross-validated on
//! it and fitted on all of it, and the passes above take each sample row's
//! out-of-fold probabilities and every other row's probabilities from the
//! fitted model (which did not see it either), scored in fixed chunks. The
//! report says how many rows were cross-validated and why.
//!
//! The other filters rank all rows against each other (which rows are "the
//! n lowest" depends on every row, and on how NumPy orders ties). From
//! `pred_probs` columns they hold what the ranking needs, not the table: a
//! pass gathers every row's class and probabilities ([`RANKED_BYTES`] a row
//! with the ranking's own), confident learning runs on them as on a table
//! in memory, and a last pass writes each row with its verdict. kNN
//! consensus holds the table whole.

use std::collections::HashMap;

use arrow::compute::concat;
use gigo_ml::confident::TwoPass;
use gigo_pipeline::Bytes;
use gigo_pipeline::budget::Need;
use gigo_pipeline::stage::derive_seed;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

/// Bytes a ranking filter holds per row beside the probabilities (8 per
/// class): the class, the verdict (flag, quality, suggestion) and the
/// ranking's own index and margin vectors.
pub(super) const RANKED_BYTES: f64 = 64.0;

/// The rows written with their verdicts, batch by batch, and counted for
/// the report.
struct Emitter {
    tally: Tally,
    writers: Option<(TableWriter, TableWriter)>,
}

impl Emitter {
    fn new(schema: &SchemaRef, k: usize, top: usize) -> Emitter {
        Emitter {
            tally: Tally::new(schema, k, top),
            writers: None,
        }
    }

    /// `batch` with its verdicts `v` to `table` (and its removed rows to
    /// `removed`), the writers opened on the first batch.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        stage: &LabelNoise,
        ctx: &StageContext,
        batch: &RecordBatch,
        index: &[u32],
        labels: &LabelClasses,
        class_values: &ArrayRef,
        v: &Verdicts,
    ) -> Result<(), StageError> {
        let (out, removed) = stage.apply(&batch.schema(), batch, labels, class_values, v)?;
        self.tally.add(batch, index, v)?;
        let (kept, gone) = match &mut self.writers {
            Some(w) => w,
            None => self.writers.insert((
                ctx.table_writer("table", out.schema())?,
                ctx.table_writer("removed", removed.schema())?,
            )),
        };
        kept.write(&out)?;
        gone.write(&removed)?;
        Ok(())
    }

    fn finish(self, summary: serde_json::Value) -> Result<StageOutput, StageError> {
        let (kept, gone) = self
            .writers
            .ok_or_else(|| StageError::internal("label_noise read no batch"))?;
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

/// Where the passes get each row's probabilities.
pub(super) enum RowProbs<'a> {
    /// The `pred_probs` columns.
    Columns(&'a [String]),
    /// Cross-validation of `model` on a stratified sample, because the
    /// table whole would need `need`, more than the budget.
    Sample(&'a dyn Estimator, Need),
}

/// Probabilities for the rows of a batch.
enum Scorer {
    Columns(Vec<String>),
    Model(Box<SampleModel>),
}

/// A model cross-validated on a stratified sample of the rows: the sample
/// rows keep their out-of-fold probabilities, every other row is scored by
/// the model fitted on the whole sample (which never saw it either).
struct SampleModel {
    /// Table positions of the sample rows, ascending.
    rows: Vec<usize>,
    /// Their out-of-fold probabilities, in the same order.
    out_of_fold: PredProbs,
    encoder: FeatureEncoder,
    fitted: Box<dyn gigo_ml::FittedModel>,
    name: String,
}

impl Scorer {
    /// `source` in batches for this scorer: a model scores fixed chunks, so
    /// every row gets the same probabilities whatever the batches that came
    /// in; columns are read row by row as the batches come.
    fn chunks(
        &self,
        source: &gigo_pipeline::Source,
        rows: usize,
    ) -> Result<gigo_pipeline::Batches, StageError> {
        let batches = source.batches(rows)?;
        Ok(match self {
            Scorer::Columns(_) => batches,
            Scorer::Model(_) => {
                gigo_pipeline::rechunk(source.schema().clone(), batches, crate::predict::SCORE_ROWS)
            }
        })
    }

    /// Row-major probabilities of `batch`, whose first row is row `at`.
    fn rows(&self, batch: &RecordBatch, at: usize) -> Result<Vec<f64>, StageError> {
        let m = match self {
            Scorer::Columns(cols) => return probability_rows(batch, cols, at),
            Scorer::Model(m) => m,
        };
        let x = m
            .encoder
            .transform(std::slice::from_ref(batch))
            .map_err(from_ml)?;
        let p = m.fitted.predict_proba(&x).map_err(from_model(&m.name))?;
        let p = PredProbs::from_matrix(&p).map_err(from_ml)?;
        let mut out = Vec::with_capacity(p.rows() * p.cols());
        let mut next = m.rows.partition_point(|&r| r < at);
        for i in 0..batch.num_rows() {
            if m.rows.get(next) == Some(&(at + i)) {
                out.extend_from_slice(m.out_of_fold.row(next));
                next += 1;
            } else {
                out.extend_from_slice(p.row(i));
            }
        }
        Ok(out)
    }
}

/// The label column's classes, read in one pass.
struct ClassCounts {
    labels: LabelClasses,
    classes: Classes,
    /// Rows per class.
    counts: Vec<usize>,
    /// One label value per class (for `suggested_label`).
    values: ArrayRef,
}

impl LabelNoise {
    /// The probability columns, when this stage runs in passes.
    pub(super) fn in_passes(&self) -> Option<&[String]> {
        match &self.source {
            Source::Columns(c) if TwoPass::streams(self.params.filter_by.to_ml()) => Some(c),
            _ => None,
        }
    }

    /// The model, when cross-validation may run on a sample in passes (the
    /// filter decides each row on its own).
    pub(super) fn may_sample(&self) -> Option<&dyn Estimator> {
        match &self.source {
            Source::CrossValidation(m) => Some(m.as_ref()),
            _ => None,
        }
    }

    /// The `pred_probs` columns, when the filter ranks every row.
    pub(super) fn ranks_columns(&self) -> Option<&[String]> {
        match &self.source {
            Source::Columns(c) if !TwoPass::streams(self.params.filter_by.to_ml()) => Some(c),
            _ => None,
        }
    }

    /// A ranking filter over `pred_probs` columns `cols`: every row's class
    /// and probabilities gathered in a pass, confident learning on them as
    /// on a table in memory, then each row written with its verdict.
    pub(super) fn run_ranked(
        &self,
        source: &gigo_pipeline::Source,
        probs: RowProbs,
        ctx: &StageContext,
    ) -> Result<StageOutput, StageError> {
        let schema = source.schema().clone();
        let ClassCounts {
            labels,
            classes,
            counts,
            values: class_values,
        } = self.read_classes(source, ctx)?;
        let k = labels.names.len();
        let n = source.num_rows();
        if let RowProbs::Sample(..) = probs {
            // the sample's cross-validation takes the other half
            let held = (n as f64 * (8.0 * k as f64 + RANKED_BYTES)) as u64;
            if held > ctx.memory_budget / 2 {
                return Err(StageError::data(format!(
                    "label_noise with `filter_by: {}` ranks every row: it holds the {n} rows' \
                     probabilities (about {}) beside the cross-validation of a sample, more \
                     than half the memory budget ({}): raise `--memory`, or use `filter_by: \
                     confident_learning`, which judges each row on its own",
                    self.params.filter_by.to_ml().name(),
                    Bytes(held),
                    Bytes(ctx.memory_budget)
                )));
            }
        }
        let started = std::time::Instant::now();
        let read = "in 3 passes over batches, every row's probabilities held for the ranking";
        let (scorer, how) = self.scorer(source, probs, &classes, &labels, &counts, read, ctx)?;
        ctx.progress.message("probabilities");
        let (mut index, mut data) = (Vec::with_capacity(n), Vec::with_capacity(n * k));
        for batch in scorer.chunks(source, ctx.batch_rows)? {
            let (i, p) = batch_rows(&batch?, &classes, &labels.column, &scorer, index.len())?;
            index.extend(i);
            data.extend(p);
        }
        let probs = PredProbs::new(index.len(), k, data).map_err(from_ml)?;
        ctx.progress.message("confident learning");
        let opts = FindOptions {
            filter_by: self.params.filter_by.to_ml(),
            ..FindOptions::default()
        };
        let found = confident::analyse(&index, &probs, &opts, self.params.score.to_ml())
            .map_err(from_ml)?;
        drop(probs);
        let seconds = started.elapsed().as_secs_f64();
        let mut out = Emitter::new(&schema, k, self.params.top_issues);
        let mut at = 0;
        for batch in scorer.chunks(source, ctx.batch_rows)? {
            let batch = batch?;
            let rows = at..at + batch.num_rows();
            let v = Verdicts {
                is_issue: found.is_issue[rows.clone()].to_vec(),
                quality: found.quality[rows.clone()].to_vec(),
                suggested: found.suggested[rows.clone()].to_vec(),
            };
            out.emit(self, ctx, &batch, &index[rows], &labels, &class_values, &v)?;
            at += batch.num_rows();
        }
        let summary = self.summary(ctx, &labels, &out.tally, &found.estimates, how, seconds)?;
        out.finish(summary)
    }

    /// Where the rows' probabilities come from, and what the report says of
    /// it (`read`: how the columns are read).
    #[allow(clippy::too_many_arguments)]
    fn scorer(
        &self,
        source: &gigo_pipeline::Source,
        probs: RowProbs,
        classes: &Classes,
        labels: &LabelClasses,
        counts: &[usize],
        read: &str,
        ctx: &StageContext,
    ) -> Result<(Scorer, Value), StageError> {
        Ok(match probs {
            RowProbs::Columns(cols) => {
                labels.check(cols)?;
                let how = json!({"source": "columns", "columns": cols, "read": read});
                (Scorer::Columns(cols.to_vec()), how)
            }
            RowProbs::Sample(model, need) => {
                let (m, how) =
                    self.fit_on_sample(source, classes, labels, counts, model, &need, ctx)?;
                (Scorer::Model(Box::new(m)), how)
            }
        })
    }

    /// The classes of the label column and their counts (at least two).
    fn read_classes(
        &self,
        source: &gigo_pipeline::Source,
        ctx: &StageContext,
    ) -> Result<ClassCounts, StageError> {
        let label = Table::empty(source.schema().clone()).label_column()?;
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
        if labels.names.len() < 2 {
            return Err(single_class(&labels));
        }
        let counts: Vec<usize> = labels.names.iter().map(|n| seen[n].0).collect();
        let values: Vec<&dyn Array> = labels.names.iter().map(|n| seen[n].1.as_ref()).collect();
        let values = concat(&values)?;
        Ok(ClassCounts {
            labels,
            classes,
            counts,
            values,
        })
    }

    pub(super) fn run_in_passes(
        &self,
        source: &gigo_pipeline::Source,
        probs: RowProbs,
        ctx: &StageContext,
    ) -> Result<StageOutput, StageError> {
        let schema = source.schema().clone();
        let started = std::time::Instant::now();
        let ClassCounts {
            labels,
            classes,
            counts,
            values: class_values,
        } = self.read_classes(source, ctx)?;
        let k = labels.names.len();
        let read = "in 3 passes over batches";
        let (scorer, how) = self.scorer(source, probs, &classes, &labels, &counts, read, ctx)?;
        let mut two = TwoPass::new(
            counts,
            self.params.filter_by.to_ml(),
            self.params.score.to_ml(),
        )
        .map_err(from_ml)?;
        let chunks = || scorer.chunks(source, ctx.batch_rows);

        ctx.progress.message("confident thresholds");
        let mut at = 0;
        for batch in chunks()? {
            let batch = batch?;
            let (index, probs) = batch_rows(&batch, &classes, &labels.column, &scorer, at)?;
            for (i, &l) in index.iter().enumerate() {
                two.first(l, &probs[i * k..(i + 1) * k]).map_err(from_ml)?;
            }
            at += batch.num_rows();
        }
        let seconds = started.elapsed().as_secs_f64();

        ctx.progress.message("confident learning");
        let mut out = Emitter::new(&schema, k, self.params.top_issues);
        let mut at = 0;
        for batch in chunks()? {
            let batch = batch?;
            let (index, probs) = batch_rows(&batch, &classes, &labels.column, &scorer, at)?;
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
            out.emit(self, ctx, &batch, &index, &labels, &class_values, &v)?;
            at += n;
        }
        let estimates = two.finish().map_err(from_ml)?;
        let summary = self.summary(ctx, &labels, &out.tally, &estimates, how, seconds)?;
        out.finish(summary)
    }

    /// Cross-validates `model` on a stratified sample of the rows (each
    /// class in proportion, at least `folds` rows of each), sized so that
    /// it needs at most half the budget, and fits it on the whole sample to
    /// score the other rows. One pass gathers the sample.
    #[allow(clippy::too_many_arguments)]
    fn fit_on_sample(
        &self,
        source: &gigo_pipeline::Source,
        classes: &Classes,
        labels: &LabelClasses,
        counts: &[usize],
        model: &dyn Estimator,
        need: &Need,
        ctx: &StageContext,
    ) -> Result<(SampleModel, Value), StageError> {
        let n: usize = counts.iter().sum();
        let budget = ctx.memory_budget;
        let folds = self.params.folds;
        let share = (budget / 2) as f64 / need.bytes.max(1) as f64;
        let room = ((n as f64 * share) as usize).min(n);
        let take: Vec<usize> = counts
            .iter()
            .map(|&c| {
                // rounded down, so that the shares never pass the room
                // unless `folds` rows of a class do
                ((c as f64 * room as f64 / n as f64).floor() as usize)
                    .max(folds)
                    .min(c)
            })
            .collect();
        let wanted: usize = take.iter().sum();
        if room < wanted.max(2 * folds) {
            return Err(StageError::data(format!(
                "label_noise cross-validates on a sample when the table does not fit the budget, \
                 but the run's budget of {} leaves room for {room} of the {n} rows, fewer than \
                 {folds} per class; raise it with `--memory`",
                Bytes(budget)
            )));
        }
        // Within each class, the positions of the rows drawn.
        let chosen: Vec<Vec<usize>> = take
            .iter()
            .zip(counts)
            .enumerate()
            .map(|(c, (&t, &count))| {
                let mut rng =
                    ChaCha8Rng::seed_from_u64(derive_seed(ctx.seed, &format!("sample-{c}")));
                let mut v = rand::seq::index::sample(&mut rng, count, t).into_vec();
                v.sort_unstable();
                v
            })
            .collect();
        ctx.progress
            .message(&format!("gathering a sample of {wanted} rows"));
        let (mut seen, mut next) = (vec![0usize; counts.len()], vec![0usize; counts.len()]);
        let mut rows = Vec::with_capacity(wanted);
        let mut parts = Vec::new();
        let mut at = 0;
        for batch in source.batches(ctx.batch_rows)? {
            let batch = batch?;
            let index = class_index(&batch, classes, &labels.column)?;
            let keep: BooleanArray = index
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    let c = c as usize;
                    let hit = chosen[c].get(next[c]) == Some(&seen[c]);
                    if hit {
                        next[c] += 1;
                        rows.push(at + i);
                    }
                    seen[c] += 1;
                    Some(hit)
                })
                .collect();
            parts.push(filter_record_batch(&batch, &keep)?);
            at += batch.num_rows();
        }
        let sample = arrow::compute::concat_batches(source.schema(), &parts)?;
        drop(parts);
        let y = class_index(&sample, classes, &labels.column)?;
        let k = labels.names.len();
        let table = Table::empty(source.schema().clone());
        let cv = self.cross_validate(model, &table, &sample, &y, k, ctx)?;
        ctx.progress.message("fitting on the sample");
        let fitted = model
            .fit_boxed(
                &TrainSet::new(&cv.x, &y, k).weighted(cv.weights.as_deref()),
                ctx.seed,
            )
            .map_err(from_model(model.name()))?;
        let how = json!({
            "source": "cross_validation",
            "model": crate::models::describe(model),
            "folds": cv.folds,
            "features": cv.encoder.output_names().len(),
            "sample": {
                "rows": wanted,
                "of": n,
                "why": format!(
                    "the whole table needs about {} ({}), more than the run's budget of {}",
                    Bytes(need.bytes), need.why, Bytes(budget)
                ),
            },
            "read": "in 4 passes over batches",
        });
        let sampled = SampleModel {
            rows,
            out_of_fold: PredProbs::from_matrix(&cv.probs).map_err(from_ml)?,
            encoder: cv.encoder,
            fitted,
            name: model.name().to_string(),
        };
        Ok((sampled, how))
    }
}

/// A batch's labels as class indices.
fn class_index(
    batch: &RecordBatch,
    classes: &Classes,
    label: &str,
) -> Result<Vec<u32>, StageError> {
    classes
        .encode(column(batch, label)?)
        .map_err(from_ml)?
        .into_iter()
        .map(|c| c.ok_or_else(|| StageError::internal("a label without a class")))
        .collect()
}

/// A batch's labels (class indices) and its probabilities as rows
/// (row-major); `at` is the batch's first row in the table.
fn batch_rows(
    batch: &RecordBatch,
    classes: &Classes,
    label: &str,
    scorer: &Scorer,
    at: usize,
) -> Result<(Vec<u32>, Vec<f64>), StageError> {
    Ok((class_index(batch, classes, label)?, scorer.rows(batch, at)?))
}
