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

pub mod corrupt;
pub mod metrics;
pub mod robust;
mod section;

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::compute::{concat_batches, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_ml::features::ColumnEncoding;
use gigo_ml::features::numeric_outputs;
use gigo_ml::{Catalogue, Matrix, TrainedModel};
use gigo_pipeline::table::{Role, Table, field_with_role};
use gigo_pipeline::{
    Inputs, ParamProblem, PortKind, PortSpec, Registry, Stage, StageContext, StageError,
    StageOutput,
};
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use corrupt::{Columns, Corruption, MAX_SEVERITY, corrupt};
pub use metrics::{Metrics, expected_calibration_error, flip_rate, metrics};
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

/// The `evaluate` stage.
pub struct Evaluate {
    params: EvaluateParams,
    catalogue: Catalogue,
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
            }))
        },
    );
}

/// One model under evaluation.
struct Candidate {
    name: String,
    model: TrainedModel,
}

/// Scores of one model on one table: its encoded inputs, the probabilities
/// and predicted class of every row, and the true class of the rows whose
/// label the model knows.
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

    /// Metrics over the labelled rows.
    fn metrics(&self) -> Metrics {
        let (probs, truth) = labelled(&self.probs, &self.truth);
        metrics(&probs, &truth, self.probs.cols)
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

    /// The test rows and the out-of-distribution rows (if any).
    fn test_and_ood(
        &self,
        inputs: &Inputs,
    ) -> Result<(RecordBatch, Option<RecordBatch>), StageError> {
        let test = one_batch(inputs.table("test")?.as_ref())?;
        if let Some(t) = inputs.table_opt("ood") {
            return Ok((test, Some(one_batch(&t)?)));
        }
        let Some(o) = &self.params.ood else {
            return Ok((test, None));
        };
        let col = test.column_by_name(&o.column).ok_or_else(|| {
            StageError::data(format!(
                "ood.column `{}` is not a column of the test table",
                o.column
            ))
        })?;
        let keys = label_keys(col)?;
        let is_ood: arrow::array::BooleanArray = keys
            .iter()
            .map(|k| Some(k.as_ref().is_some_and(|k| o.values.contains(k))))
            .collect();
        let not_ood = arrow::compute::not(&is_ood)?;
        let ood = filter_record_batch(&test, &is_ood)?;
        if ood.num_rows() == 0 {
            return Err(StageError::data(format!(
                "no test row has `{}` in {:?}: the out-of-distribution split is empty",
                o.column, o.values
            )));
        }
        Ok((filter_record_batch(&test, &not_ood)?, Some(ood)))
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
        let (test, ood) = self.test_and_ood(inputs)?;
        if test.num_rows() == 0 {
            return Err(StageError::data("the test table has no rows"));
        }
        let label_index = test.schema().index_of(&label).map_err(|_| {
            StageError::data(format!("the test table has no column `{label}`, {what}"))
        })?;
        let columns = corruptible(&test, &models, label_index)?;

        // Clean metrics per split.
        let mut splits: Vec<(&str, RecordBatch)> = Vec::new();
        for name in ["train", "valid"] {
            if let Some(t) = inputs.table_opt(name)
                && t.num_rows() > 0
            {
                splits.push((name, one_batch(&t)?));
            }
        }
        splits.push(("test", test.clone()));
        if let Some(o) = &ood {
            splits.push(("ood", o.clone()));
        }
        let mut clean: Vec<Vec<(String, Metrics)>> = Vec::new();
        let mut clean_test: Vec<Scored> = Vec::new();
        for m in &models {
            let mut per_split = Vec::new();
            for (split, batch) in &splits {
                if batch.schema().index_of(&label).is_err() {
                    return Err(StageError::data(format!(
                        "the {split} table has no column `{label}`, {what}"
                    )));
                }
                let s = score(m, batch, &label)?;
                if s.truth.iter().all(Option::is_none) {
                    return Err(StageError::data(format!(
                        "no {split} row has a label that model `{}` knows (its classes: {})",
                        m.name,
                        m.model.classes.join(", ")
                    )));
                }
                per_split.push((split.to_string(), s.metrics()));
                if *split == "test" {
                    clean_test.push(s);
                }
            }
            clean.push(per_split);
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
        ctx.progress.set_total((grid.len() * models.len()) as u64);
        let cells: Vec<Vec<CurvePoint>> = grid
            .par_iter()
            .map(|&(c, s)| {
                let corrupted = corrupt(&test, &columns, c, s, ctx.seed)?;
                let mut points = Vec::with_capacity(models.len());
                for (m, base) in models.iter().zip(&clean_test) {
                    let scored = score(m, &corrupted, &label)?;
                    points.push(point(m, c.name(), s, &scored, base));
                    ctx.progress.advance(1);
                }
                Ok(points)
            })
            .collect::<Result<_, StageError>>()?;
        let mut points: Vec<CurvePoint> = Vec::new();
        for (m, base) in models.iter().zip(&clean_test) {
            points.push(point(m, "none", 0, base, base));
        }
        points.extend(cells.into_iter().flatten());

        // Adversarial inputs for the differentiable models.
        let mut attacked: Vec<String> = Vec::new();
        if self.params.adversarial != Attack::None {
            for (m, base) in models.iter().zip(&clean_test) {
                let adv = self.adversarial(m, base)?;
                if !adv.is_empty() {
                    attacked.push(m.name.clone());
                }
                points.extend(adv);
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
            attacked: &attacked,
            severities: &self.params.severities,
            fragile_top: self.params.fragile_top,
            test_rows: test.num_rows(),
        };
        let (summary, robustness) = report.build();
        let table = results_table(&names, &clean, &points)?;
        Ok(StageOutput::new()
            .with("metrics", table)
            .with_summary(summary.into_summary(robustness)))
    }

    /// Curve points of the adversarial attack on `m` (none when it is not
    /// differentiable).
    fn adversarial(&self, m: &Candidate, base: &Scored) -> Result<Vec<CurvePoint>, StageError> {
        // The attack raises the loss of the true label; a row without one
        // attacks the clean prediction.
        let y: Vec<u32> = base
            .truth
            .iter()
            .zip(&base.predicted)
            .map(|(t, p)| t.unwrap_or(*p))
            .collect();
        let movable = numeric_outputs(&m.model.features);
        let mut out = Vec::new();
        for &s in &self.params.severities {
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
                None => return Ok(Vec::new()),
                Some(r) => r.map_err(ml(&m.name))?,
            };
            let probs = m.model.predict_proba(&adv).map_err(ml(&m.name))?;
            let scored = Scored::new(adv, probs, base.truth.clone());
            out.push(point(m, self.params.adversarial.name(), s, &scored, base));
        }
        Ok(out)
    }
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

/// A curve point of `scored` (model `m`, `corruption` at `severity`) against
/// the clean scores `base`.
fn point(
    m: &Candidate,
    corruption: &str,
    severity: u8,
    scored: &Scored,
    base: &Scored,
) -> CurvePoint {
    let metrics = scored.metrics();
    CurvePoint {
        model: m.name.clone(),
        corruption: corruption.to_string(),
        severity,
        flip_rate: flip_rate(&scored.predicted, &base.predicted),
        worst_class_accuracy: worst_class_accuracy(&metrics),
        metrics,
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
    test: &RecordBatch,
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
            let i = test.schema().index_of(name).map_err(|_| {
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

fn one_batch(t: &Table) -> Result<RecordBatch, StageError> {
    Ok(concat_batches(t.schema(), t.batches())?)
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

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.run_inner(inputs, ctx)
    }
}

#[cfg(test)]
mod tests;
