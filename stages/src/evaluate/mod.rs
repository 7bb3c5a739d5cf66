//! `evaluate`: how well models generalise and how robust they stay.
//!
//! Inputs: one or more models (each named by the stage that made it), the
//! `test` table, and optionally `train`, `valid` and an out-of-distribution
//! table `ood` (or `ood: {column, values}` to split the test rows). For every
//! model it reports clean metrics per split and the generalisation gap, then
//! applies the corruption suite ([`corrupt`]) to the test rows at each
//! severity (the same corrupted rows for every model) and, for
//! differentiable models, an adversarial attack ([`robust::attack`]). From
//! the accuracy-versus-severity curves: the area under each curve, ImageNet-C's
//! corruption error and relative corruption error against a reference model,
//! the prediction flip rate against the clean prediction, the worst-class
//! accuracy, and a verdict naming the corruptions each model is most fragile
//! to.
//!
//! Models are read with the model catalogue given at registration, so every
//! catalogue model (classic ones, the network, a program's own) is scored.
//! Attacks that need gradients apply to differentiable models; the report
//! names the models they skipped and why.
//! Missing values that corruptions inject are imputed by each model's own
//! feature encoder (numeric: the training mean; categorical: the "other"
//! indicator).
//!
//! Every input is read in batches: the rows are scored in blocks of
//! [`BLOCK_ROWS`] rows cut at fixed offsets, and the metrics add up block by
//! block (exactly the figures of all rows at once). Each block of test rows
//! is corrupted on its own: a corruption's counts, ranks and column
//! statistics are the block's, its random draws seeded by the stage's seed
//! and the block's index. A test table of one block (up to 65,536 rows) is
//! corrupted as a whole; a larger one gets the same corruption, block by
//! block, whatever batches it came in.

pub mod corrupt;
pub mod metrics;
pub mod robust;
mod section;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use gigo_ml::features::ColumnEncoding;
use gigo_ml::features::numeric_outputs;
use gigo_ml::{Catalogue, Matrix, TrainedModel};
use gigo_pipeline::stage::derive_seed;
use gigo_pipeline::table::{Role, Table, field_with_role};
use gigo_pipeline::{
    Batches, Inputs, Memory, ParamProblem, PortKind, PortSpec, Registry, Source, Stage,
    StageContext, StageError, StageOutput, rechunk,
};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use corrupt::{Columns, Corruption, MAX_SEVERITY, corrupt};
pub use metrics::{Metrics, Tally, expected_calibration_error, flip_rate, metrics};
pub use robust::Attack;

use crate::error::from_model as ml;
use crate::labels::label_keys;

/// Parameters of `evaluate`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// The corruptions applied to the test rows (default: all nine).
    #[serde(default = "all_corruptions")]
    pub corruptions: Vec<Corruption>,
    /// Severities, each in 1..=5 (default 1 to 5); severity 0 is the clean
    /// test table and is always included.
    #[serde(default = "all_severities")]
    pub severities: Vec<u8>,
    /// Adversarial attack on differentiable models: `pgd` (default), `fgsm`
    /// or `none`. Epsilon per severity: 0.05, 0.1, 0.2, 0.3, 0.5 standard
    /// deviations of each numeric feature (one-hot inputs are not moved).
    #[serde(default)]
    pub adversarial: Attack,
    /// Gradient steps of the PGD attack (default 10).
    #[serde(default = "default_pgd_steps")]
    pub pgd_steps: usize,
    /// The model corruption errors are relative to, by the id of the stage
    /// that made it (default: the first model).
    #[serde(default)]
    pub reference: Option<String>,
    /// Out-of-distribution rows taken from the test table: those whose
    /// `column` has one of `values` (they leave the test split). An `ood`
    /// input table is used instead when connected.
    #[serde(default)]
    pub ood: Option<OodSplit>,
    /// Score against this column instead of the label the models predict:
    /// e.g. a generator's `true_label`, to see how a model trained on noisy
    /// labels does against the clean truth (default: the models' label).
    #[serde(default)]
    pub truth_column: Option<String>,
    /// How many corruptions the verdict names per model (default 3).
    #[serde(default = "default_fragile")]
    pub fragile_top: usize,
}

/// Rows of the test table that form the out-of-distribution split.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OodSplit {
    /// The column that defines the split.
    pub column: String,
    /// Its values (as text) that mark a row out of distribution.
    pub values: Vec<String>,
}

fn all_corruptions() -> Vec<Corruption> {
    Corruption::ALL.to_vec()
}
fn all_severities() -> Vec<u8> {
    (1..=MAX_SEVERITY).collect()
}
fn default_pgd_steps() -> usize {
    10
}
fn default_fragile() -> usize {
    3
}

impl EvaluateParams {
    fn check(mut self) -> Result<EvaluateParams, Vec<ParamProblem>> {
        let mut p = Vec::new();
        if self.severities.is_empty() {
            p.push(ParamProblem::new(
                "severities",
                "needs at least one severity",
            ));
        }
        if let Some(s) = self
            .severities
            .iter()
            .find(|&&s| s == 0 || s > MAX_SEVERITY)
        {
            p.push(ParamProblem::new(
                "severities",
                format!("severities run from 1 to {MAX_SEVERITY}, got {s} (0, the clean table, is always included)"),
            ));
        }
        if self.pgd_steps == 0 || self.pgd_steps > 1000 {
            p.push(ParamProblem::new(
                "pgd_steps",
                format!("must be in 1..=1000, got {}", self.pgd_steps),
            ));
        }
        let mut seen = BTreeSet::new();
        for c in &self.corruptions {
            if !seen.insert(c.name()) {
                p.push(ParamProblem::new(
                    "corruptions",
                    format!("`{}` is listed twice", c.name()),
                ));
            }
        }
        if let Some(o) = &self.ood
            && o.values.is_empty()
        {
            p.push(ParamProblem::new("ood.values", "needs at least one value"));
        }
        self.severities.sort_unstable();
        self.severities.dedup();
        if p.is_empty() { Ok(self) } else { Err(p) }
    }
}

/// Test rows are scored and corrupted in blocks of this many rows, cut at
/// fixed offsets of the test split (as `predict` scores): the figures do not
/// depend on the batches that came in, and memory does not grow with the
/// rows.
pub const BLOCK_ROWS: usize = crate::predict::SCORE_ROWS;

/// What `evaluate` holds whatever the rows: a block of test rows, its
/// corrupted copies in flight (one per thread) and every model's encoded
/// inputs and probabilities for them; about 100 MB at 20 numeric columns,
/// more for wide tables.
const WORKING_MEMORY: u64 = 4 * gigo_pipeline::budget::STREAM_FIXED;

/// The `evaluate` stage.
pub struct Evaluate {
    params: EvaluateParams,
    catalogue: Catalogue,
    /// [`BLOCK_ROWS`]; smaller in tests.
    block_rows: usize,
}

/// Registers `evaluate`, scoring the models of `catalogue`.
pub fn register(registry: &mut Registry, catalogue: &Catalogue) {
    let catalogue = catalogue.clone();
    registry.register::<EvaluateParams, _>(
        "evaluate",
        "Generalisation and robustness of one or more models: clean metrics per split \
         (accuracy, balanced accuracy, macro F1, per class, g-mean, confusion, log-loss, \
         Brier, ECE), the generalisation gap, and accuracy versus severity under a suite \
         of corruptions of the test rows (Gaussian noise, missing values MCAR/MAR/MNAR, \
         swapped values, unit errors, categorical shift, outliers, test label noise, and \
         an adversarial FGSM/PGD attack on differentiable models), with the area under \
         each curve, ImageNet-C's corruption errors against a reference model, flip rates, \
         worst-class accuracy and a verdict on what each model is most fragile to.",
        move |params: EvaluateParams| {
            let params = params.check()?;
            Ok(Box::new(Evaluate {
                params,
                catalogue: catalogue.clone(),
                block_rows: BLOCK_ROWS,
            }))
        },
    );
}

/// One model under evaluation.
struct Candidate {
    name: String,
    model: TrainedModel,
}

/// Scores of one model on one block of rows: its encoded inputs, the
/// probabilities and predicted class of every row, and the true class of the
/// rows whose label the model knows.
struct Scored {
    x: Matrix,
    probs: Matrix,
    predicted: Vec<u32>,
    truth: Vec<Option<u32>>,
}

impl Scored {
    fn new(x: Matrix, probs: Matrix, truth: Vec<Option<u32>>) -> Scored {
        let predicted = metrics::argmax_rows(&probs.data, probs.cols);
        Scored {
            x,
            probs,
            predicted,
            truth,
        }
    }

    /// Adds the labelled rows to `tally`.
    fn tally_into(&self, tally: &mut Tally) {
        let (probs, truth) = labelled(&self.probs, &self.truth);
        tally.add(&probs, &truth);
    }
}

/// Probabilities (flat) and classes of the rows that have a known class.
fn labelled(probs: &Matrix, truth: &[Option<u32>]) -> (Vec<f32>, Vec<u32>) {
    let mut p = Vec::new();
    let mut t = Vec::new();
    for (row, y) in probs.iter_rows().zip(truth) {
        if let Some(y) = y {
            p.extend_from_slice(row);
            t.push(*y);
        }
    }
    (p, t)
}

/// The figures of one model on the test rows under one corruption at one
/// severity, block by block: metrics over the labelled rows and the rows
/// whose prediction differs from the clean one.
struct Running {
    tally: Tally,
    flips: usize,
    rows: usize,
}

impl Running {
    fn new(classes: usize) -> Running {
        Running {
            tally: Tally::new(classes),
            flips: 0,
            rows: 0,
        }
    }

    /// Adds a block scored after corruption, against its clean scores.
    fn add(&mut self, scored: &Scored, clean: &Scored) {
        scored.tally_into(&mut self.tally);
        self.flips += scored
            .predicted
            .iter()
            .zip(&clean.predicted)
            .filter(|(a, b)| a != b)
            .count();
        self.rows += scored.predicted.len();
    }

    /// The curve point of model `m`.
    fn point(&self, m: &Candidate, corruption: &str, severity: u8) -> CurvePoint {
        let metrics = self.tally.finish();
        CurvePoint {
            model: m.name.clone(),
            corruption: corruption.to_string(),
            severity,
            flip_rate: self.flips as f64 / self.rows.max(1) as f64,
            worst_class_accuracy: worst_class_accuracy(&metrics),
            metrics,
        }
    }
}

/// One point of a robustness curve.
#[derive(Debug, Clone, Serialize)]
pub struct CurvePoint {
    /// The model.
    pub model: String,
    /// The corruption (`none` for the clean table).
    pub corruption: String,
    /// 0 for the clean table.
    pub severity: u8,
    /// Accuracy, balanced accuracy, ... on the corrupted rows.
    pub metrics: Metrics,
    /// Fraction of rows whose prediction differs from the clean prediction.
    pub flip_rate: f64,
    /// The lowest recall over classes present in the rows.
    pub worst_class_accuracy: f64,
}

/// The lowest per-class recall over classes that have rows.
pub fn worst_class_accuracy(m: &Metrics) -> f64 {
    m.per_class
        .iter()
        .filter(|c| c.support > 0.0)
        .map(|c| c.recall)
        .fold(f64::NAN, f64::min)
}

impl Evaluate {
    fn candidates(&self, inputs: &Inputs) -> Result<Vec<Candidate>, StageError> {
        let models = inputs.models("models");
        let sources = inputs.sources("models");
        if models.is_empty() {
            return Err(StageError::data(
                "evaluate needs at least one model on its `models` input (e.g. `models: [train.model]`)",
            ));
        }
        let mut out = Vec::new();
        for (i, m) in models.iter().enumerate() {
            let source = sources.get(i).map(String::as_str).unwrap_or("model");
            let name = source.split('.').next().unwrap_or(source).to_string();
            let model = crate::models::load(&self.catalogue, m).map_err(ml(&name))?;
            if out.iter().any(|c: &Candidate| c.name == name) {
                return Err(StageError::data(format!(
                    "two models come from stage `{name}`: connect each model once"
                )));
            }
            out.push(Candidate { name, model });
        }
        let label = out[0].model.label_column.as_str().to_string();
        if let Some(c) = out.iter().find(|c| c.model.label_column.as_str() != label) {
            return Err(StageError::data(format!(
                "model `{}` predicts `{}` but model `{}` predicts `{label}`: evaluate compares models of one label",
                c.name,
                c.model.label_column.as_str(),
                out[0].name
            )));
        }
        Ok(out)
    }

    /// Which model corruption errors are relative to.
    fn reference(&self, models: &[Candidate]) -> Result<usize, StageError> {
        match &self.params.reference {
            None => Ok(0),
            Some(r) => models.iter().position(|c| &c.name == r).ok_or_else(|| {
                StageError::data(format!(
                    "reference model `{r}` is not among the models: {}",
                    models
                        .iter()
                        .map(|c| format!("`{}`", c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            }),
        }
    }

    /// The rows of `source` in blocks of `block_rows` rows cut at fixed
    /// offsets, whatever its batches; with `ood`, only the rows on that side
    /// of the `ood` parameter's split.
    fn blocks(
        &self,
        source: &Source,
        ood: Option<bool>,
        ctx: &StageContext,
    ) -> Result<Batches, StageError> {
        let rows = source.batches(ctx.batch_rows)?;
        let rows: Batches = match (ood, self.params.ood.clone()) {
            (Some(side), Some(split)) => Box::new(rows.map(move |b| {
                let b = b?;
                let col = b.column_by_name(&split.column).ok_or_else(|| {
                    StageError::data(format!(
                        "ood.column `{}` is not a column of the test table",
                        split.column
                    ))
                })?;
                let keep: arrow::array::BooleanArray = label_keys(col)?
                    .iter()
                    .map(|k| Some(k.as_ref().is_some_and(|k| split.values.contains(k)) == side))
                    .collect();
                Ok(filter_record_batch(&b, &keep)?)
            })),
            _ => rows,
        };
        Ok(rechunk(source.schema().clone(), rows, self.block_rows))
    }

    /// Clean metrics of every model on the blocks of one split, and its rows.
    fn clean_split(
        &self,
        models: &[Candidate],
        split: &str,
        blocks: Batches,
        label: &str,
    ) -> Result<(Vec<Metrics>, usize), StageError> {
        let mut tallies: Vec<Tally> = models
            .iter()
            .map(|m| Tally::new(m.model.classes.len()))
            .collect();
        let mut rows = 0;
        for block in blocks {
            let block = block?;
            for (m, t) in models.iter().zip(&mut tallies) {
                score(m, &block, label)?.tally_into(t);
            }
            rows += block.num_rows();
        }
        let metrics = models
            .iter()
            .zip(&tallies)
            .map(|(m, t)| known_rows(m, split, rows, t))
            .collect::<Result<_, _>>()?;
        Ok((metrics, rows))
    }

    fn run_inner(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let models = self.candidates(inputs)?;
        let reference = self.reference(&models)?;
        let label = self
            .params
            .truth_column
            .clone()
            .unwrap_or_else(|| models[0].model.label_column.as_str().to_string());
        let what = if self.params.truth_column.is_some() {
            "the `truth_column`"
        } else {
            "the label the models predict"
        };
        let test = inputs.source("test")?;
        if test.num_rows() == 0 {
            return Err(StageError::data("the test table has no rows"));
        }
        let label_index = test.schema().index_of(&label).map_err(|_| {
            StageError::data(format!("the test table has no column `{label}`, {what}"))
        })?;
        let columns = corruptible(test.schema(), &models, label_index)?;
        let has_label = |split: &str, s: &Source| {
            if s.schema().index_of(&label).is_err() {
                return Err(StageError::data(format!(
                    "the {split} table has no column `{label}`, {what}"
                )));
            }
            Ok(())
        };

        // Clean metrics of the other splits; out-of-distribution rows taken
        // from the test table leave the test split.
        let mut others: Vec<(&str, Vec<Metrics>)> = Vec::new();
        for name in ["train", "valid"] {
            if let Some(s) = inputs.source_opt(name)
                && s.num_rows() > 0
            {
                has_label(name, &s)?;
                let (m, _) =
                    self.clean_split(&models, name, self.blocks(&s, None, ctx)?, &label)?;
                others.push((name, m));
            }
        }
        let mut ood = None;
        let mut test_rows = test.num_rows();
        if let Some(s) = inputs.source_opt("ood") {
            has_label("ood", &s)?;
            ood = Some(
                self.clean_split(&models, "ood", self.blocks(&s, None, ctx)?, &label)?
                    .0,
            );
        } else if let Some(o) = &self.params.ood {
            if test.schema().index_of(&o.column).is_err() {
                return Err(StageError::data(format!(
                    "ood.column `{}` is not a column of the test table",
                    o.column
                )));
            }
            let blocks = self.blocks(&test, Some(true), ctx)?;
            let (m, rows) = self.clean_split(&models, "ood", blocks, &label)?;
            if rows == 0 {
                return Err(StageError::data(format!(
                    "no test row has `{}` in {:?}: the out-of-distribution split is empty",
                    o.column, o.values
                )));
            }
            test_rows -= rows;
            if test_rows == 0 {
                return Err(StageError::data(format!(
                    "every test row has `{}` in {:?}: no test row is left once the \
                     out-of-distribution rows are split off",
                    o.column, o.values
                )));
            }
            ood = Some(m);
        }

        // The corruption grid: the same corrupted rows for every model.
        // A corruption with nothing to act on (no categorical feature, fewer
        // than two numeric ones to swap) is left out and said so.
        let (applicable, skipped): (Vec<Corruption>, Vec<Corruption>) = self
            .params
            .corruptions
            .iter()
            .partition(|c| applies(**c, &columns));
        let grid: Vec<(Corruption, u8)> = applicable
            .iter()
            .flat_map(|&c| self.params.severities.iter().map(move |&s| (c, s)))
            .collect();
        let classes = |m: &Candidate| m.model.classes.len();
        let mut clean_test: Vec<Running> =
            models.iter().map(|m| Running::new(classes(m))).collect();
        let mut cells: Vec<Vec<Running>> = grid
            .iter()
            .map(|_| models.iter().map(|m| Running::new(classes(m))).collect())
            .collect();
        let mut attacked: Vec<Option<Vec<Running>>> = models
            .iter()
            .map(|m| {
                (self.params.adversarial != Attack::None).then(|| {
                    self.params
                        .severities
                        .iter()
                        .map(|_| Running::new(classes(m)))
                        .collect()
                })
            })
            .collect();
        ctx.progress.set_total(test_rows as u64);
        let blocks = self.blocks(&test, self.params.ood.as_ref().map(|_| false), ctx)?;
        for (i, block) in blocks.enumerate() {
            let block = block?;
            // Block 0 is corrupted with the stage's seed: a test table of one
            // block is corrupted as a whole.
            let seed = match i {
                0 => ctx.seed,
                i => derive_seed(ctx.seed, &format!("block-{i}")),
            };
            let base: Vec<Scored> = models
                .iter()
                .map(|m| score(m, &block, &label))
                .collect::<Result<_, _>>()?;
            for (run, b) in clean_test.iter_mut().zip(&base) {
                run.add(b, b);
            }
            cells.par_iter_mut().zip(&grid).try_for_each(
                |(runs, &(c, s))| -> Result<(), StageError> {
                    let corrupted = corrupt(&block, &columns, c, s, seed)?;
                    for ((m, b), run) in models.iter().zip(&base).zip(runs.iter_mut()) {
                        run.add(&score(m, &corrupted, &label)?, b);
                    }
                    Ok(())
                },
            )?;
            for ((m, b), runs) in models.iter().zip(&base).zip(&mut attacked) {
                if let Some(r) = runs
                    && !self.adversarial(m, b, r)?
                {
                    *runs = None;
                }
            }
            ctx.progress.advance(block.num_rows() as u64);
        }

        // Clean metrics per model, in split order: train, valid, test, ood.
        let mut clean: Vec<Vec<(String, Metrics)>> = Vec::new();
        for (k, (m, run)) in models.iter().zip(&clean_test).enumerate() {
            let mut per_split: Vec<(String, Metrics)> = others
                .iter()
                .map(|(name, ms)| (name.to_string(), ms[k].clone()))
                .collect();
            per_split.push(("test".into(), known_rows(m, "test", test_rows, &run.tally)?));
            if let Some(o) = &ood {
                per_split.push(("ood".into(), o[k].clone()));
            }
            clean.push(per_split);
        }
        let mut points: Vec<CurvePoint> = models
            .iter()
            .zip(&clean_test)
            .map(|(m, run)| run.point(m, "none", 0))
            .collect();
        for (&(c, s), runs) in grid.iter().zip(&cells) {
            for (m, run) in models.iter().zip(runs) {
                points.push(run.point(m, c.name(), s));
            }
        }
        let mut names_attacked: Vec<String> = Vec::new();
        for (m, runs) in models.iter().zip(&attacked) {
            if let Some(runs) = runs {
                names_attacked.push(m.name.clone());
                for (&s, run) in self.params.severities.iter().zip(runs) {
                    points.push(run.point(m, self.params.adversarial.name(), s));
                }
            }
        }

        let names: Vec<String> = models.iter().map(|c| c.name.clone()).collect();
        let classes: Vec<Vec<String>> = models.iter().map(|c| c.model.classes.to_vec()).collect();
        let report = section::Report {
            stage: &ctx.stage_id,
            models: &names,
            classes: &classes,
            reference,
            clean: &clean,
            points: &points,
            corruptions: &applicable,
            skipped: &skipped,
            attack: self.params.adversarial,
            attacked: &names_attacked,
            severities: &self.params.severities,
            fragile_top: self.params.fragile_top,
            test_rows,
        };
        let (summary, robustness) = report.build();
        let table = results_table(&names, &clean, &points)?;
        Ok(StageOutput::new()
            .with("metrics", table)
            .with_summary(summary.into_summary(robustness)))
    }

    /// Adds the adversarial scores of `m` on a block (clean scores `base`)
    /// to `runs`, one per severity; false when `m` is not differentiable.
    fn adversarial(
        &self,
        m: &Candidate,
        base: &Scored,
        runs: &mut [Running],
    ) -> Result<bool, StageError> {
        // The attack raises the loss of the true label; a row without one
        // attacks the clean prediction.
        let y: Vec<u32> = base
            .truth
            .iter()
            .zip(&base.predicted)
            .map(|(t, p)| t.unwrap_or(*p))
            .collect();
        let movable = numeric_outputs(&m.model.features);
        for (&s, run) in self.params.severities.iter().zip(runs) {
            let eps = robust::EPSILONS[s as usize];
            let adv = match robust::attack(
                m.model.fitted.as_ref(),
                &base.x,
                &y,
                &movable,
                eps,
                self.params.adversarial,
                self.params.pgd_steps,
            ) {
                None => return Ok(false),
                Some(r) => r.map_err(ml(&m.name))?,
            };
            let probs = m.model.predict_proba(&adv).map_err(ml(&m.name))?;
            run.add(&Scored::new(adv, probs, base.truth.clone()), base);
        }
        Ok(true)
    }
}

/// The metrics in `tally`, refused when none of the split's `rows` rows has
/// a label model `m` knows.
fn known_rows(
    m: &Candidate,
    split: &str,
    rows: usize,
    tally: &Tally,
) -> Result<Metrics, StageError> {
    if tally.rows() == 0 && rows > 0 {
        return Err(StageError::data(format!(
            "no {split} row has a label that model `{}` knows (its classes: {})",
            m.name,
            m.model.classes.join(", ")
        )));
    }
    Ok(tally.finish())
}

/// Whether `c` changes anything in a table with these columns.
fn applies(c: Corruption, columns: &Columns) -> bool {
    match c {
        Corruption::CategoricalShift => !columns.categorical.is_empty(),
        Corruption::Swap => columns.numeric.len() >= 2,
        Corruption::LabelNoise => columns.label.is_some(),
        Corruption::MissingMcar | Corruption::MissingMar | Corruption::MissingMnar => {
            !columns.numeric.is_empty() || !columns.categorical.is_empty()
        }
        Corruption::GaussianNoise | Corruption::Scaling | Corruption::Outliers => {
            !columns.numeric.is_empty()
        }
    }
}

/// Probabilities of `m` on every row of `batch`, and each row's class.
fn score(m: &Candidate, batch: &RecordBatch, label: &str) -> Result<Scored, StageError> {
    let x = m
        .model
        .encode(std::slice::from_ref(batch))
        .map_err(ml(&m.name))?;
    let probs = m.model.predict_proba(&x).map_err(ml(&m.name))?;
    let classes = &m.model.classes;
    if probs.cols != classes.len() || probs.rows != batch.num_rows() {
        return Err(StageError::internal(format!(
            "model `{}` gave {}x{} probabilities for {} rows and {} classes",
            m.name,
            probs.rows,
            probs.cols,
            batch.num_rows(),
            classes.len()
        )));
    }
    let col = batch
        .column_by_name(label)
        .ok_or_else(|| StageError::data(format!("label column `{label}` is missing")))?;
    let keys = label_keys(col)?;
    let truth = keys
        .iter()
        .map(|k| {
            let k = k.as_ref()?;
            classes.iter().position(|c| c == k).map(|c| c as u32)
        })
        .collect();
    Ok(Scored::new(x, probs, truth))
}

/// The columns the corruptions may touch: every column some model reads
/// (numeric or categorical as that model encodes it), and the label.
fn corruptible(
    test: &SchemaRef,
    models: &[Candidate],
    label: usize,
) -> Result<Columns, StageError> {
    let mut cols = Columns {
        label: Some(label),
        ..Columns::default()
    };
    for m in models {
        let enc = &m.model.features;
        for (name, e) in enc.columns().iter().zip(enc.encodings()) {
            let i = test.index_of(name).map_err(|_| {
                StageError::data(format!(
                    "model `{}` reads column `{name}`, which the test table lacks",
                    m.name
                ))
            })?;
            if cols.numeric.contains(&i) || cols.categorical.contains(&i) {
                continue;
            }
            match e {
                ColumnEncoding::Numeric { .. } => cols.numeric.push(i),
                ColumnEncoding::Categorical { .. } => cols.categorical.push(i),
            }
        }
    }
    Ok(cols)
}

/// Every figure as a long table: one row per (model, split or corruption,
/// severity).
fn results_table(
    models: &[String],
    clean: &[Vec<(String, Metrics)>],
    points: &[CurvePoint],
) -> Result<Table, StageError> {
    let mut model = Vec::new();
    let mut split = Vec::new();
    let mut corruption = Vec::new();
    let mut severity = Vec::new();
    let mut rows = Vec::new();
    let mut cols: [Vec<Option<f64>>; 9] = Default::default();
    let mut push = |m: &str, sp: &str, c: &str, s: u8, x: &Metrics, flip: Option<f64>| {
        model.push(m.to_string());
        split.push(sp.to_string());
        corruption.push(c.to_string());
        severity.push(s as i64);
        rows.push(x.rows as i64);
        let values = [
            Some(x.accuracy),
            Some(x.balanced_accuracy),
            Some(x.macro_f1),
            Some(x.geometric_mean),
            Some(x.log_loss),
            Some(x.brier),
            Some(x.ece),
            Some(worst_class_accuracy(x)),
            flip,
        ];
        for (col, v) in cols.iter_mut().zip(values) {
            col.push(v.filter(|v| v.is_finite()));
        }
    };
    for (m, per_split) in models.iter().zip(clean) {
        for (sp, x) in per_split {
            push(m, sp, "none", 0, x, None);
        }
    }
    for p in points.iter().filter(|p| p.severity > 0) {
        push(
            &p.model,
            "test",
            &p.corruption,
            p.severity,
            &p.metrics,
            Some(p.flip_rate),
        );
    }
    let names = [
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "geometric_mean",
        "log_loss",
        "brier",
        "ece",
        "worst_class_accuracy",
        "flip_rate",
    ];
    let mut fields = vec![
        Field::new("model", DataType::Utf8, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("corruption", DataType::Utf8, false),
        Field::new("severity", DataType::Int64, false),
        Field::new("rows", DataType::Int64, false),
    ];
    fields.extend(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Float64, true)),
    );
    let fields: Vec<Field> = fields
        .into_iter()
        .map(|f| field_with_role(f, Role::Other))
        .collect();
    let mut arrays: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(model)),
        Arc::new(StringArray::from(split)),
        Arc::new(StringArray::from(corruption)),
        Arc::new(Int64Array::from(severity)),
        Arc::new(Int64Array::from(rows)),
    ];
    arrays.extend(
        cols.into_iter()
            .map(|c| Arc::new(Float64Array::from(c)) as ArrayRef),
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    Ok(Table::from_batch(batch))
}

impl Stage for Evaluate {
    fn metrics(&self) -> gigo_pipeline::Metrics {
        gigo_pipeline::Metrics::names(section::METRICS)
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::aside(
                "models",
                PortKind::Model,
                "the models to evaluate (e.g. a baseline and the model trained on cleaned data)",
            )
            .many(),
            PortSpec::aside(
                "test",
                PortKind::Table,
                "test rows: clean metrics and the corruption suite",
            ),
            PortSpec::aside(
                "train",
                PortKind::Table,
                "training rows: the generalisation gap",
            )
            .optional(),
            PortSpec::aside("valid", PortKind::Table, "validation rows").optional(),
            PortSpec::aside("ood", PortKind::Table, "out-of-distribution rows").optional(),
        ]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::aside(
            "metrics",
            PortKind::Table,
            "every figure: one row per model and split (clean) or corruption and severity",
        )]
    }

    fn memory(&self) -> Memory {
        Memory::Streams {
            per_row: 0.0,
            fixed: WORKING_MEMORY,
        }
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.run_inner(inputs, ctx)
    }
}

#[cfg(test)]
mod tests;
