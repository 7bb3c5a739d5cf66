//! `train`: a neural classifier, from scratch or fine-tuning a pretrained
//! encoder, with every lever as a parameter; records learning curves and
//! per-layer gradient norms and diagnoses them.

use gigo_ml::{FeatureEncoder, Matrix, TrainedModel};
use gigo_pipeline::Metrics;
use gigo_pipeline::budget::Need;
use gigo_pipeline::{
    Inputs, Memory, Model, ParamProblem, PortKind, PortSpec, Registry, Source, Stage, StageContext,
    StageError, StageOutput, Table,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::backend_name;
use crate::config::{
    BatchSize, ClassWeights, EarlyStopping, EncoderParams, EncoderSpec, LossKind, OptimParams,
    OptimizerKind, Range, Schedule, no_effect, word,
};
use crate::data;
use crate::diagnose::Thresholds;
use crate::error::NeuralError;
use crate::fit::{
    EncoderInit, EvalRows, EvalSet, FitSettings, SHUFFLE_BUFFER_ROWS, Scorer, TableRows, TrainRows,
    evaluate, fit, predict,
};
use crate::loss::LossSpec;
use crate::network::Network;
use crate::saved::EncoderModel;

/// Parameters of `train`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// Feature columns. Default: every column with role `feature` (when
    /// fine-tuning: the pretrained encoder's columns).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// The encoder when training from scratch (default: an MLP of 2 x 128
    /// relu units). Leave unset when a `pretrained` model is connected: its
    /// encoder is used.
    #[serde(default)]
    pub encoder: Option<EncoderParams>,
    /// Passes over the training rows. Default 20.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// `full` (batch gradient descent), N rows (mini-batch) or 1 (online). Default 128.
    #[serde(default)]
    pub batch_size: BatchSize,
    /// `sgd`, `adam` (default) or `adamw`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Learning rate. Default 0.001.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// `optimizer: sgd` only: momentum. Default 0.
    #[serde(default)]
    pub momentum: Option<f64>,
    /// `optimizer: sgd` only: Nesterov momentum (needs `momentum` > 0). Default false.
    #[serde(default)]
    pub nesterov: Option<bool>,
    /// Weight decay on every parameter: `sgd` and `adam` add `weight_decay *
    /// w` to the gradient (L2, as PyTorch), `adamw` decouples it. Default
    /// (PyTorch's): 0 for `sgd` and `adam`, 0.01 for `adamw`.
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule: `{kind: constant}` (default), `{kind: step,
    /// every: 10, gamma: 0.5}` (`every` below `epochs`), `{kind: cosine,
    /// min_factor: 0}`.
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs of linear warm-up (fractions allowed; at most `epochs`). Default 0.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Clip the gradient's global L2 norm to this. Default: none.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Clamp each gradient element to +-this. Default: none.
    #[serde(default)]
    pub clip_value: Option<f64>,
    /// L1 penalty on weight matrices (drives weights of useless inputs to 0). Default 0.
    #[serde(default)]
    pub l1: f64,
    /// L2 penalty on weight matrices (`l2/2 * sum w^2`). Default 0.
    #[serde(default)]
    pub l2: f64,
    /// `cross_entropy` (default), `focal`, `gce` or `sce`.
    #[serde(default)]
    pub loss: LossKind,
    /// Label smoothing in [0, 1). Default 0.
    #[serde(default)]
    pub label_smoothing: f64,
    /// `loss: focal` only: the exponent of `(1 - p)`. Default 2.
    #[serde(default)]
    pub focal_gamma: Option<f64>,
    /// `loss: gce` only: q in (0, 1]. Default 0.7.
    #[serde(default)]
    pub gce_q: Option<f64>,
    /// `loss: sce` only: the weight of cross-entropy. Default 0.1.
    #[serde(default)]
    pub sce_alpha: Option<f64>,
    /// `loss: sce` only: the weight of reverse cross-entropy. Default 1.
    #[serde(default)]
    pub sce_beta: Option<f64>,
    /// `none` (default), `balanced`, or a weight per class label.
    #[serde(default)]
    pub class_weights: ClassWeights,
    /// Weight rows by the table's weight column (role `weight`) if it has one. Default true.
    #[serde(default = "default_true")]
    pub sample_weights: bool,
    /// Rows the epoch's shuffle holds at once. A table of at most this many
    /// rows is shuffled whole; a larger one is read from the store in chunks
    /// of 65,536 rows taken in shuffled order, this many rows at a time
    /// (rounded down to whole chunks), and shuffled within them, so that
    /// memory does not grow with the table. Default 1,048,576.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_buffer: Option<usize>,
    /// Stop when the validation metric stalls (needs a `valid` input). Default: off.
    #[serde(default)]
    pub early_stopping: Option<EarlyStopping>,
    /// Fine-tuning: keep the pretrained encoder fixed and train the head only. Default false.
    #[serde(default)]
    pub freeze_encoder: bool,
    /// Fine-tuning: the encoder's learning rate (default: `lr`).
    #[serde(default)]
    pub encoder_lr: Option<f64>,
    /// Semi-supervised training: after training on the labelled rows, the
    /// rows of `table` whose label is null and whose most probable class
    /// has at least `threshold` probability take that class as their label,
    /// and the network is trained again, from the same start, on both;
    /// `rounds` times (stopping early when a round adds no row). Default:
    /// off; `{}` means `threshold: 0.95, rounds: 1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_label: Option<PseudoLabel>,
    /// Thresholds of the report's verdicts (`vanishing_ratio`,
    /// `exploding_growth`, `exploding_min_norm`, `overfit_rise`,
    /// `overfit_min_rise`, `underfit_fraction`, `underfit_accuracy_margin`).
    /// Default: 0.001, 1000, 100, 0.1, 0.01, 0.8, 0.02.
    #[serde(default)]
    pub diagnosis: Option<Thresholds>,
}

fn default_epochs() -> usize {
    20
}
fn default_lr() -> f64 {
    1e-3
}
fn default_true() -> bool {
    true
}

impl Default for TrainParams {
    fn default() -> Self {
        serde_json::from_value(json!({}))
            .unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl TrainParams {
    /// Optimizer settings.
    pub fn optim(&self) -> OptimParams {
        OptimParams {
            optimizer: self.optimizer,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            schedule: self.schedule,
            warmup_epochs: self.warmup_epochs,
            clip_norm: self.clip_norm,
            clip_value: self.clip_value,
        }
    }

    /// The loss, unset constants at their defaults.
    pub fn loss_spec(&self) -> LossSpec {
        let d = LossSpec::cross_entropy();
        LossSpec {
            kind: self.loss,
            label_smoothing: self.label_smoothing,
            focal_gamma: self.focal_gamma.unwrap_or(d.focal_gamma),
            gce_q: self.gce_q.unwrap_or(d.gce_q),
            sce_alpha: self.sce_alpha.unwrap_or(d.sce_alpha),
            sce_beta: self.sce_beta.unwrap_or(d.sce_beta),
        }
    }

    /// The diagnosis thresholds (defaults where unset).
    pub fn thresholds(&self) -> Thresholds {
        self.diagnosis.unwrap_or_default()
    }

    /// The engine's settings.
    pub fn settings(&self) -> FitSettings {
        FitSettings {
            optim: self.optim(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            l1: self.l1,
            l2: self.l2,
            loss: self.loss_spec(),
            early_stopping: self.early_stopping,
            freeze_encoder: self.freeze_encoder,
            encoder_lr: self.encoder_lr,
            shuffle_buffer: self.shuffle_buffer.unwrap_or(SHUFFLE_BUFFER_ROWS),
        }
    }

    /// The loss constants: in range, and set only under their loss.
    fn check_loss(&self, p: &mut Vec<ParamProblem>) {
        let nn = Range::NON_NEGATIVE;
        for (name, v, needs, range) in [
            ("focal_gamma", self.focal_gamma, LossKind::Focal, nn),
            ("gce_q", self.gce_q, LossKind::Gce, Range::SHARE),
            ("sce_alpha", self.sce_alpha, LossKind::Sce, nn),
            ("sce_beta", self.sce_beta, LossKind::Sce, nn),
        ] {
            let Some(v) = v else { continue };
            range.check(name, v, p);
            if self.loss != needs {
                p.push(no_effect(
                    name,
                    &format!("`loss: {}`", word(&needs)),
                    &format!("loss is {}", word(&self.loss)),
                ));
            }
        }
        let spec = self.loss_spec();
        if self.loss == LossKind::Sce && spec.sce_alpha == 0.0 && spec.sce_beta == 0.0 {
            p.push(ParamProblem::new(
                "sce_beta",
                "`sce_alpha` and `sce_beta` are both 0: the loss would be 0",
            ));
        }
    }

    /// Every problem at once.
    pub fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let mut p = Vec::new();
        if let Some(e) = &self.encoder {
            e.check("encoder", &mut p);
        }
        self.optim().check("", self.epochs, &mut p);
        if self.epochs == 0 || self.epochs > 100_000 {
            p.push(ParamProblem::new(
                "epochs",
                format!("must be in 1..=100000, got {}", self.epochs),
            ));
        }
        if self.shuffle_buffer == Some(0) {
            p.push(ParamProblem::new("shuffle_buffer", "must be at least 1"));
        }
        if let Some(pl) = &self.pseudo_label {
            if !(pl.threshold > 0.0 && pl.threshold <= 1.0) {
                p.push(ParamProblem::new(
                    "pseudo_label.threshold",
                    format!("must be in (0, 1], got {}", pl.threshold),
                ));
            }
            if !(1..=100).contains(&pl.rounds) {
                p.push(ParamProblem::new(
                    "pseudo_label.rounds",
                    format!("must be in 1..=100, got {}", pl.rounds),
                ));
            }
        }
        if self.batch_size == BatchSize::Rows(0) {
            p.push(ParamProblem::new(
                "batch_size",
                "must be `full` or at least 1",
            ));
        }
        for (name, v) in [("l1", self.l1), ("l2", self.l2)] {
            if !(v >= 0.0 && v.is_finite()) {
                p.push(ParamProblem::new(
                    name,
                    format!("must be a non-negative number, got {v}"),
                ));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            p.push(ParamProblem::new(
                "label_smoothing",
                format!("must be in [0, 1), got {}", self.label_smoothing),
            ));
        }
        self.check_loss(&mut p);
        if let ClassWeights::Given(map) = &self.class_weights {
            for (class, w) in map {
                if !(*w >= 0.0 && w.is_finite()) {
                    p.push(ParamProblem::new(
                        &format!("class_weights.{class}"),
                        format!("must be a non-negative number, got {w}"),
                    ));
                }
            }
        }
        if let Some(es) = &self.early_stopping {
            if es.patience == 0 {
                p.push(ParamProblem::new(
                    "early_stopping.patience",
                    "must be at least 1",
                ));
            }
            if !(es.min_delta >= 0.0 && es.min_delta.is_finite()) {
                p.push(ParamProblem::new(
                    "early_stopping.min_delta",
                    format!("must be a non-negative number, got {}", es.min_delta),
                ));
            }
        }
        if let Some(lr) = self.encoder_lr
            && !(lr > 0.0 && lr.is_finite())
        {
            p.push(ParamProblem::new(
                "encoder_lr",
                format!("must be a positive number, got {lr}"),
            ));
        }
        if let Some(t) = &self.diagnosis {
            t.check("diagnosis", self.loss, &mut p);
        }
        if self.freeze_encoder && self.encoder_lr.is_some() {
            p.push(ParamProblem::new(
                "encoder_lr",
                "a frozen encoder (`freeze_encoder: true`) has no learning rate",
            ));
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// The validation rows again, for one more fit (a trait object's lifetime
/// is shortened by the coercion here, which `Option::as_deref_mut` cannot do).
fn reborrow<'s>(rows: &'s mut Option<&mut dyn EvalRows>) -> Option<&'s mut dyn EvalRows> {
    match rows {
        Some(r) => Some(&mut **r),
        None => None,
    }
}

/// `train`'s pseudo-labelling rounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PseudoLabel {
    /// The probability an unlabelled row's most probable class needs.
    /// Default 0.95.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Rounds of pseudo-labelling and training again. Default 1.
    #[serde(default = "default_rounds")]
    pub rounds: usize,
}

fn default_threshold() -> f64 {
    0.95
}
fn default_rounds() -> usize {
    1
}

/// The `train` stage.
pub struct Train {
    params: TrainParams,
}

impl Train {
    /// A stage from checked parameters.
    pub fn new(params: TrainParams) -> Result<Train, Vec<ParamProblem>> {
        params.check()?;
        Ok(Train { params })
    }
}

/// Registers `train`.
pub fn register(registry: &mut Registry) {
    registry.register::<TrainParams, _>(
        "train",
        "Trains a neural classifier (burn, CPU) on the feature columns, from scratch or by \
         fine-tuning a `pretrained` encoder. Every lever is a parameter: optimizer, batch size \
         (full / N / 1), learning-rate schedule and warm-up, gradient clipping, L1/L2, \
         activation, skip connections, normalisation, dropout, early stopping, class and sample \
         weights, noise-robust losses. Records learning curves and per-layer gradient norms, and \
         diagnoses vanishing/exploding gradients and over/underfitting. Outputs the model and \
         each table with class probabilities (`prob_<class>`) and the `predicted` class.",
        |params| Ok(Box::new(Train::new(params)?)),
    );
}

/// Features, labels and weights of one table, encoded.
struct Encoded {
    x: Matrix,
    y: Vec<Option<u32>>,
    w: Option<Vec<f32>>,
    /// Whether the table has the label column (a test table without one is
    /// predicted but not scored).
    labelled: bool,
    /// Rows labelled with a class the training rows lack.
    unknown: usize,
}

/// Logs that `port` was predicted without a label column to score it by.
fn log_not_scored(ctx: &StageContext, port: &str) {
    ctx.log(format!(
        "the `{port}` table has no label column: predicted, not scored"
    ));
}

/// Logs the rows of `port` whose class the training rows lack.
fn log_unknown(ctx: &StageContext, port: &str, unknown: usize) {
    if unknown > 0 {
        ctx.log(format!(
            "{unknown} `{port}` rows have a class the training rows lack: they count as wrong"
        ));
    }
}

fn encode(
    table: &Table,
    enc: &FeatureEncoder,
    label: &str,
    classes: &[String],
    use_weights: bool,
    port: &str,
) -> Result<Encoded, NeuralError> {
    let batch = table
        .to_batch()
        .map_err(|e| NeuralError::internal(e.to_string()))?;
    let x = enc
        .transform(std::slice::from_ref(&batch))
        .map_err(|e| NeuralError::data(format!("`{port}` table: {e}")))?;
    let labelled = batch.column_by_name(label).is_some();
    let keys = if labelled {
        data::label_keys(&batch, label)?
    } else if port == "test" {
        vec![None; batch.num_rows()]
    } else {
        return Err(NeuralError::data(format!(
            "the `{port}` table has no label column `{label}`"
        )));
    };
    let y = data::encode_labels(&keys, classes);
    let unknown = keys
        .iter()
        .zip(&y)
        .filter(|(k, y)| k.is_some() && y.is_none())
        .count();
    let w = match (use_weights, data::weight_column(table)?) {
        (true, Some(col)) => Some(data::read_weights(&batch, &col)?),
        _ => None,
    };
    Ok(Encoded {
        x,
        y,
        w,
        labelled,
        unknown,
    })
}

/// The optimizer in words, with its weight decay, for the report.
pub fn optimizer_words(o: &OptimParams) -> String {
    let name = match o.optimizer {
        OptimizerKind::Sgd if o.nesterov() => "SGD (Nesterov momentum)",
        OptimizerKind::Sgd if o.momentum() > 0.0 => "SGD with momentum",
        OptimizerKind::Sgd => "SGD",
        OptimizerKind::Adam => "Adam",
        OptimizerKind::Adamw => "AdamW",
    };
    let wd = o.weight_decay();
    if wd > 0.0 {
        format!("{name} (weight decay {wd})")
    } else {
        name.to_string()
    }
}

/// `mlp` or `cnn`, for messages.
pub fn kind_name(kind: crate::config::EncoderKind) -> &'static str {
    match kind {
        crate::config::EncoderKind::Mlp => "MLP",
        crate::config::EncoderKind::Cnn => "CNN",
        crate::config::EncoderKind::Rnn => "RNN",
        crate::config::EncoderKind::Tcn => "TCN",
        crate::config::EncoderKind::Transformer => "Transformer",
    }
}

/// Rows whose most probable class is their label.
fn correct_of(probs: &Matrix, y: &[Option<u32>]) -> usize {
    probs
        .iter_rows()
        .zip(y)
        .filter(|(p, y)| y.is_some_and(|y| data::argmax(p) == y as usize))
        .count()
}

impl Stage for Train {
    fn metrics(&self) -> Metrics {
        Metrics::names(report::METRICS)
    }

    /// Reads its training rows in batches and holds their encoded matrix
    /// only when it fits the budget (else one shuffle buffer at a time,
    /// counted here at 16 features a row); validation and test rows are
    /// held when they fit a quarter of it, else read in batches.
    fn memory(&self) -> Memory {
        let buffer = self.params.shuffle_buffer.unwrap_or(SHUFFLE_BUFFER_ROWS) as u64;
        Memory::Streams {
            per_row: 0.0,
            fixed: gigo_pipeline::budget::STREAM_FIXED + buffer * 64,
        }
    }

    /// The training rows' matrix when it will be held, and the validation
    /// and test rows' when they fit a quarter of the budget.
    fn reserve(&self, need: &Need, inputs: &Inputs, ctx: &StageContext) -> u64 {
        let budget = ctx.memory_budget;
        let held = |port: &str, budget: u64| {
            inputs
                .source_opt(port)
                .map_or(0, |s| rows::share(&s, budget))
        };
        need.bytes + held("table", budget) + held("valid", budget / 4) + held("test", budget / 4)
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table("table", "training rows (features and a label)"),
            PortSpec::table("valid", "validation rows: learning curves, early stopping").optional(),
            PortSpec::table("test", "test rows: predicted and scored once at the end").optional(),
            PortSpec::aside(
                "pretrained",
                PortKind::Model,
                "a pretrained encoder (from `pretrain`) to fine-tune",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::aside(
                "model",
                PortKind::Model,
                "the trained classifier (weights, resolved config, feature encoder)",
            ),
            PortSpec::table("train", "training rows with prob_<class> and predicted"),
            PortSpec::table(
                "valid",
                "validation rows with predictions (empty if not connected)",
            ),
            PortSpec::table(
                "test",
                "test rows with predictions (empty if not connected)",
            ),
        ]
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        Ok(self.run_inner(inputs, ctx)?)
    }
}

impl Train {
    fn run_inner(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, NeuralError> {
        let p = &self.params;
        let source = inputs
            .source("table")
            .map_err(|e| NeuralError::internal(e.to_string()))?;
        let valid_src = inputs.source_opt("valid");
        let test_src = inputs.source_opt("test");
        let pretrained = match inputs.models("pretrained").as_slice() {
            [] => None,
            [one] => Some(EncoderModel::from_model(one)?),
            _ => {
                return Err(NeuralError::data(
                    "several models on `pretrained`; connect one",
                ));
            }
        };
        if pretrained.is_some() && p.encoder.is_some() {
            return Err(NeuralError::param(
                "encoder",
                "the encoder comes from the `pretrained` input; remove `encoder` (or the input)",
            ));
        }
        if pretrained.is_none() {
            for (name, set) in [
                ("freeze_encoder", p.freeze_encoder),
                ("encoder_lr", p.encoder_lr.is_some()),
            ] {
                if set {
                    return Err(NeuralError::param(
                        name,
                        "has no effect without a `pretrained` input (connect a `pretrain` \
                         stage's model, or remove it)",
                    ));
                }
            }
        }

        // features, labels and weights: one pass over the rows
        let shape = Table::empty(source.schema().clone());
        let label = shape
            .label_column()
            .map_err(|e| NeuralError::data(e.to_string()))?;
        let columns = match &pretrained {
            Some((m, _)) => {
                if let Some(f) = &p.features
                    && f != &m.feature_columns
                {
                    return Err(NeuralError::param(
                        "features",
                        "differs from the pretrained encoder's feature columns; leave it unset",
                    ));
                }
                m.feature_columns.clone()
            }
            None => {
                let cols = data::feature_columns(&shape, p.features.as_deref())?;
                if cols.iter().any(|c| c == &label) {
                    return Err(NeuralError::param(
                        "features",
                        format!("lists the label column `{label}`"),
                    ));
                }
                cols
            }
        };
        if source.schema().field_with_name(&label).is_err() {
            return Err(NeuralError::data(format!(
                "the `table` table has no label column `{label}`"
            )));
        }
        // a pretrained encoder reads the columns it was pretrained on
        let layout = match &pretrained {
            Some(_) => data::SequenceLayout::as_given(columns, EncoderParams::default()),
            None => {
                let encoder = p.encoder.clone().unwrap_or_default();
                data::sequence_layout(&encoder, columns, p.features.is_some())?
            }
        };
        layout.log_left_out(ctx);
        let columns = layout.columns.clone();
        let weight_col = match p.sample_weights {
            true => data::weight_column(&shape)?,
            false => None,
        };
        ctx.progress.message("reading the training rows");
        let scan = rows::scan(
            &source,
            &columns,
            &layout.channels(),
            pretrained.is_none(),
            Some(&label),
            weight_col.as_deref(),
            ctx.batch_rows,
        )?;
        let enc = match (&pretrained, &scan.fitted) {
            (Some((m, _)), _) => m.features.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => return Err(NeuralError::internal("no feature encoder")),
        };
        let classes = scan.classes.clone();
        if classes.len() < 2 {
            return Err(NeuralError::data(format!(
                "label column `{label}` has {} class(es) in the training rows; a classifier needs 2",
                classes.len()
            )));
        }
        let k = classes.len();
        scan.log_missing_steps(ctx);
        let labelled = scan.labelled();
        if labelled < scan.rows {
            ctx.log(format!(
                "{} training rows without a label are {}",
                scan.rows - labelled,
                match p.pseudo_label {
                    Some(_) => "pseudo-labelled where the network is sure of them",
                    None => "not trained on",
                }
            ));
        }
        // the encoded matrix is held when it fits the budget with room to
        // spare; otherwise every epoch reads the table from the store
        let matrix_bytes = (scan.rows as u64) * (enc.width() as u64) * 4;
        let hold = rows::holds(&source, matrix_bytes, ctx.memory_budget);
        let table = if hold {
            Some(
                source
                    .load(ctx.batch_rows)
                    .map_err(|e| NeuralError::data(e.to_string()))?,
            )
        } else {
            ctx.log(format!(
                "the training rows' features take {} encoded: each epoch reads them from the \
                 store through a shuffle buffer of {} rows",
                gigo_pipeline::Bytes(matrix_bytes),
                p.shuffle_buffer.unwrap_or(SHUFFLE_BUFFER_ROWS)
            ));
            None
        };
        let tr = table
            .as_ref()
            .map(|t| encode(t, &enc, &label, &classes, p.sample_weights, "table"))
            .transpose()?;
        if p.pseudo_label.is_some() && tr.is_none() {
            return Err(NeuralError::param(
                "pseudo_label",
                "needs the training rows in memory, and their encoded features exceed the \
                 memory budget: raise `--memory` or train on fewer rows",
            ));
        }
        // validation and test rows are held when their encoded matrix fits a
        // quarter of the budget; otherwise they are read in batches (the
        // validation rows every epoch), with the figures of a held run
        let eval_bytes = |s: &Source| s.num_rows() as u64 * enc.width() as u64 * 4;
        let streams =
            |s: &Source| s.num_rows() > 0 && !rows::holds(s, eval_bytes(s), ctx.memory_budget / 4);
        let load = |s: &Option<Source>| -> Result<Option<std::sync::Arc<Table>>, NeuralError> {
            match s {
                Some(s) if !streams(s) => s
                    .load(ctx.batch_rows)
                    .map(Some)
                    .map_err(|e| NeuralError::data(e.to_string())),
                _ => Ok(None),
            }
        };
        let (valid_t, test_t) = (load(&valid_src)?, load(&test_src)?);
        let valid_read = valid_src.as_ref().filter(|s| streams(s));
        let test_read = test_src.as_ref().filter(|s| streams(s));
        for (port, s) in [("valid", valid_read), ("test", test_read)] {
            if let Some(s) = s {
                ctx.log(format!(
                    "the `{port}` rows' features take {} encoded: they are read in batches",
                    gigo_pipeline::Bytes(eval_bytes(s))
                ));
            }
        }
        let held = |t: &Option<std::sync::Arc<Table>>, port: &str| {
            t.as_ref()
                .filter(|t| t.num_rows() > 0)
                .map(|t| {
                    let e = encode(t, &enc, &label, &classes, p.sample_weights, port)?;
                    log_unknown(ctx, port, e.unknown);
                    Ok::<_, NeuralError>(e)
                })
                .transpose()
        };
        let va = held(&valid_t, "valid")?;
        let te = held(&test_t, "test")?;
        let valid_weights = match (valid_read, p.sample_weights) {
            (Some(s), true) => data::weight_column(&Table::empty(s.schema().clone()))?,
            _ => None,
        };
        if let Some(s) = valid_read
            && s.schema().field_with_name(&label).is_err()
        {
            return Err(NeuralError::data(format!(
                "the `valid` table has no label column `{label}`"
            )));
        }

        // the network
        let (init, pretrained_cfg) = match &pretrained {
            Some((m, w)) => (
                EncoderInit::Pretrained {
                    spec: m.encoder.clone(),
                    weights: w,
                },
                Some(m.pretrain.clone()),
            ),
            None => (
                EncoderInit::Fresh(
                    EncoderSpec::new(layout.params.clone(), enc.width())?
                        .with_tokens(enc.column_widths()),
                ),
                None,
            ),
        };
        let class_weights = p.class_weights.resolve_counts(&classes, &scan.counts);
        let settings = p.settings();
        let rounds = p.pseudo_label.as_ref().map_or(0, |pl| pl.rounds);
        ctx.progress.set_total((p.epochs * (1 + rounds)) as u64);
        let mut valid_held = va.as_ref().map(|v| EvalSet {
            x: &v.x,
            y: &v.y,
            w: v.w.as_deref(),
        });
        let mut valid_streamed = valid_read.map(|s| rows::StreamedEval {
            source: s,
            encoder: &enc,
            label: &label,
            classes: &classes,
            weights: valid_weights.as_deref(),
            batch_rows: ctx.batch_rows,
        });
        let mut valid_rows: Option<&mut dyn EvalRows> = match (&mut valid_held, &mut valid_streamed)
        {
            (Some(v), _) => Some(v),
            (None, Some(v)) => Some(v),
            (None, None) => None,
        };
        let mut streamed = rows::StreamedRows {
            source: &source,
            encoder: &enc,
            label: Some(&label),
            classes: &classes,
            weights: weight_col.as_deref(),
            rows: scan.rows,
            labelled,
            batch_rows: ctx.batch_rows,
        };
        let mut in_memory = tr.as_ref().map(|tr| TableRows {
            x: &tr.x,
            y: &tr.y,
            w: tr.w.as_deref(),
        });
        let train_rows: &mut dyn TrainRows = match &mut in_memory {
            Some(t) => t,
            None => &mut streamed,
        };
        let mut on_epoch = |e: &crate::diagnose::EpochRecord| {
            ctx.progress.advance(1);
            ctx.progress.message(&format!(
                "epoch {}: loss {:.4}{}",
                e.epoch,
                e.train_loss,
                e.valid_loss
                    .map(|v| format!(", valid {v:.4}"))
                    .unwrap_or_default()
            ));
        };
        let (mut fitted, mut report) = fit(
            &settings,
            init.clone(),
            k,
            &class_weights,
            train_rows,
            reborrow(&mut valid_rows),
            ctx.seed,
            &mut on_epoch,
        )?;
        // timings go to the log, not the summary: reports stay byte-identical per seed
        let log_fit = |report: &crate::fit::FitReport, rows: usize| {
            ctx.log(format!(
                "trained {} epochs ({} updates) on {} rows in {:.2} s on {}",
                report.history.epochs.len(),
                report.updates,
                rows,
                report.seconds,
                backend_name()
            ))
        };
        log_fit(&report, labelled);

        // pseudo-labelling rounds: train again from the same start on the
        // labelled rows and the unlabelled ones the network is sure of
        let mut pseudo_rounds = Vec::new();
        if let (Some(pl), Some(tr)) = (&p.pseudo_label, &tr) {
            let unlabelled: Vec<usize> = (0..tr.x.rows).filter(|&i| tr.y[i].is_none()).collect();
            let rounds = match unlabelled.is_empty() {
                true => {
                    ctx.log(
                        "pseudo_label: every training row has a label, so none is pseudo-labelled",
                    );
                    0
                }
                false => pl.rounds,
            };
            let mut previous = tr.y.clone();
            for round in 1..=rounds {
                let probs = predict(&fitted.net()?, &tr.x, k)?;
                let mut y = tr.y.clone();
                for &i in &unlabelled {
                    let best = data::argmax(probs.row(i));
                    if f64::from(probs.row(i)[best]) >= pl.threshold {
                        y[i] = Some(best as u32);
                    }
                }
                let added = unlabelled.iter().filter(|&&i| y[i].is_some()).count();
                pseudo_rounds.push(json!({
                    "round": round,
                    "pseudo_labelled": added,
                    "unlabelled": unlabelled.len(),
                }));
                ctx.log(format!(
                    "pseudo-labelling round {round}: {added} of {} unlabelled rows reach \
                     probability {}",
                    unlabelled.len(),
                    pl.threshold
                ));
                if y == previous {
                    // the same rows with the same labels would train the same network
                    break;
                }
                let mut rows = TableRows {
                    x: &tr.x,
                    y: &y,
                    w: tr.w.as_deref(),
                };
                (fitted, report) = fit(
                    &settings,
                    init.clone(),
                    k,
                    &class_weights,
                    &mut rows,
                    reborrow(&mut valid_rows),
                    ctx.seed,
                    &mut on_epoch,
                )?;
                log_fit(&report, labelled + added);
                previous = y;
            }
        }

        // predictions and scores with the kept weights
        let net = fitted.net()?;
        let loss = settings.loss;
        let mut train_scorer = Scorer::new(&net, k, &loss, &class_weights);
        let train_out: gigo_pipeline::Artifact = match (&table, &tr) {
            (Some(table), Some(tr)) => {
                for i in (0..tr.x.rows).filter(|&i| tr.y[i].is_some()) {
                    train_scorer.push(tr.x.row(i), tr.y[i], tr.w.as_ref().map(|w| w[i]))?;
                }
                let p_train = predict(&net, &tr.x, k)?;
                data::with_predictions(table, &p_train, &classes)?.into()
            }
            _ => {
                ctx.progress.message("predicting the training rows");
                rows::write_through(&source, ctx, "train", &mut |t| {
                    let e = encode(&t, &enc, &label, &classes, p.sample_weights, "table")?;
                    for i in (0..e.x.rows).filter(|&i| e.y[i].is_some()) {
                        train_scorer.push(e.x.row(i), e.y[i], e.w.as_ref().map(|w| w[i]))?;
                    }
                    data::with_predictions(&t, &predict(&net, &e.x, k)?, &classes)
                })?
            }
        };
        let train_eval = train_scorer.finish()?;
        let mut scored = vec![("train", train_eval, scan.rows)];
        let mut outputs = vec![("train", train_out)];
        let train_schema = match &outputs[0].1 {
            gigo_pipeline::Artifact::Table(t) => t.schema().clone(),
            gigo_pipeline::Artifact::Stored(s) => s.schema().clone(),
            _ => return Err(NeuralError::internal("the training rows are not a table")),
        };
        for (port, t, e, read) in [
            ("valid", &valid_t, &va, valid_read),
            ("test", &test_t, &te, test_read),
        ] {
            let out: gigo_pipeline::Artifact = match (t, e, read) {
                (_, _, Some(s)) => {
                    ctx.progress
                        .message(&format!("predicting the `{port}` rows"));
                    let mut scorer = Scorer::new(&net, k, &loss, &class_weights);
                    let labelled = s.schema().field_with_name(&label).is_ok();
                    let (mut correct, mut unknown) = (0, 0);
                    let out = rows::write_through(s, ctx, port, &mut |t| {
                        let e = encode(&t, &enc, &label, &classes, p.sample_weights, port)?;
                        let probs = predict(&net, &e.x, k)?;
                        if labelled {
                            for i in 0..e.x.rows {
                                scorer.push(e.x.row(i), e.y[i], e.w.as_ref().map(|w| w[i]))?;
                            }
                            correct += correct_of(&probs, &e.y);
                        }
                        unknown += e.unknown;
                        data::with_predictions(&t, &probs, &classes)
                    })?;
                    log_unknown(ctx, port, unknown);
                    let (l, _) = scorer.finish()?;
                    let n = s.num_rows();
                    if labelled {
                        scored.push((port, (l, correct as f64 / n as f64), n));
                    } else {
                        log_not_scored(ctx, port);
                    }
                    out
                }
                (Some(t), Some(e), None) if !e.labelled => {
                    log_not_scored(ctx, port);
                    data::with_predictions(t, &predict(&net, &e.x, k)?, &classes)?.into()
                }
                (Some(t), Some(e), None) => {
                    let probs = predict(&net, &e.x, k)?;
                    let (l, _) = evaluate(
                        &net,
                        &mut EvalSet {
                            x: &e.x,
                            y: &e.y,
                            w: e.w.as_deref(),
                        },
                        k,
                        &loss,
                        &class_weights,
                    )?;
                    let acc = correct_of(&probs, &e.y) as f64 / probs.rows.max(1) as f64;
                    scored.push((port, (l, acc), e.x.rows));
                    data::with_predictions(t, &probs, &classes)?.into()
                }
                (Some(t), None, None) => {
                    data::with_predictions(t, &Matrix::zeros(0, k), &classes)?.into()
                }
                (None, _, None) => Table::empty(train_schema.clone()).into(),
            };
            outputs.push((port, out));
        }

        // the model
        let train_json = serde_json::to_value(p)
            .map_err(|e| NeuralError::internal(format!("parameters as JSON: {e}")))?;
        let (kind, config, weights) = TrainedModel {
            label_column: label.clone(),
            classes: classes.clone(),
            features: enc.clone(),
            params: train_json.clone(),
            provenance: json!({"pretrained": pretrained_cfg, "backend": backend_name()}),
            fitted: Box::new(Network {
                fitted: fitted.clone(),
            }),
        }
        .to_parts()?;
        let model = Model {
            kind,
            config,
            weights,
        };

        let summary = report::summary(&report::Facts {
            stage: &ctx.stage_id,
            params: p,
            fine_tuned: pretrained.is_some(),
            fit: &report,
            scored: &scored,
            class_counts: &scan.counts,
            spec: &fitted.spec,
            settings: &settings,
            classes: &classes,
            feature_columns: columns.len(),
            missing_steps: scan.missing_steps,
            pseudo_rounds: &pseudo_rounds,
            train_json: &train_json,
            pretrained: &pretrained_cfg,
        });

        let mut out = StageOutput::new().with("model", model);
        for (port, t) in outputs {
            out = out.with(port, t);
        }
        Ok(out.with_summary(summary))
    }
}

mod report;
pub(crate) mod rows;

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use gigo_pipeline::{NoProgress, Role, field_with_role};

    use super::*;
    use crate::config::tests::{assert_refused, listed};
    use crate::fit::TrainSet;
    use serde_json::Value;

    fn params(v: Value) -> TrainParams {
        serde_json::from_value(v).unwrap()
    }

    fn found(p: &TrainParams) -> Vec<(String, String)> {
        listed(p.check())
    }

    #[test]
    fn defaults_and_parameters_under_their_own_option_validate() {
        for v in [
            json!({}),
            json!({"loss": "focal", "focal_gamma": 1.0}),
            json!({"loss": "gce", "gce_q": 0.5}),
            json!({"loss": "sce", "sce_alpha": 0.5, "sce_beta": 0.5}),
            json!({"optimizer": "sgd", "momentum": 0.9, "nesterov": true, "weight_decay": 1e-4}),
            json!({"optimizer": "adam", "weight_decay": 1e-4}),
            json!({"optimizer": "adamw", "weight_decay": 0.05}),
            json!({"encoder": {"norm": "group", "groups": 4}}),
            json!({"diagnosis": {"vanishing_ratio": 0.01, "underfit_fraction": 0.9}}),
        ] {
            assert_eq!(found(&params(v.clone())), vec![], "{v}");
        }
    }

    #[test]
    fn loss_constants_under_another_loss_are_refused_naming_the_loss() {
        let p =
            params(json!({"loss": "gce", "focal_gamma": 2.0, "sce_alpha": 0.1, "sce_beta": 1.0}));
        let f = found(&p);
        assert_refused(&f, "focal_gamma", "`loss: focal`", "loss is gce");
        assert_refused(&f, "sce_alpha", "`loss: sce`", "loss is gce");
        assert_refused(&f, "sce_beta", "`loss: sce`", "loss is gce");
        assert_eq!(f.len(), 3, "{f:?}");
        let f = found(&params(json!({"gce_q": 0.7})));
        assert_refused(&f, "gce_q", "`loss: gce`", "loss is cross_entropy");
        // a bad value under the wrong loss: both problems
        let f = found(&params(json!({"loss": "focal", "gce_q": 2.0})));
        assert_eq!(f.len(), 2, "{f:?}");
        let f = found(&params(
            json!({"loss": "sce", "sce_alpha": 0.0, "sce_beta": 0.0}),
        ));
        assert_eq!(f[0].0, "sce_beta");
    }

    #[test]
    fn optimizer_and_encoder_parameters_of_other_options_are_refused_by_train() {
        let f = found(&params(json!({
            "optimizer": "adamw", "momentum": 0.9, "nesterov": false,
            "encoder": {"groups": 4, "channels": [8]}
        })));
        assert_refused(&f, "momentum", "`optimizer: sgd`", "optimizer is adamw");
        assert_refused(&f, "nesterov", "`optimizer: sgd`", "optimizer is adamw");
        assert_refused(&f, "encoder.groups", "`norm: group`", "norm is none");
        assert_refused(&f, "encoder.channels", "`kind: cnn`", "kind is mlp");
        assert_eq!(f.len(), 4, "{f:?}");
    }

    #[test]
    fn the_diagnosis_block_is_range_checked_and_underfit_fraction_needs_cross_entropy() {
        let f = found(&params(json!({"diagnosis": {
            "vanishing_ratio": 0.0, "exploding_growth": 0.5, "exploding_min_norm": -1.0,
            "overfit_rise": -0.5, "overfit_min_rise": -0.1, "underfit_accuracy_margin": 1.0,
            "underfit_fraction": 1.5
        }})));
        let paths: Vec<&str> = f.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "diagnosis.vanishing_ratio",
                "diagnosis.exploding_growth",
                "diagnosis.exploding_min_norm",
                "diagnosis.overfit_rise",
                "diagnosis.overfit_min_rise",
                "diagnosis.underfit_accuracy_margin",
                "diagnosis.underfit_fraction",
            ]
        );
        let f = found(&params(
            json!({"loss": "focal", "diagnosis": {"underfit_fraction": 0.8}}),
        ));
        assert_refused(
            &f,
            "diagnosis.underfit_fraction",
            "`loss: cross_entropy`",
            "loss is focal",
        );
        assert!(
            serde_json::from_value::<TrainParams>(json!({"diagnosis": {"vanish": 1}})).is_err()
        );
    }

    /// 40 rows, two features, separable by their sum.
    fn tiny() -> (Matrix, Vec<u32>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..40 {
            let a = (i as f32 / 40.0) * 2.0 - 1.0;
            let b = ((i * 7 % 40) as f32 / 40.0) * 2.0 - 1.0;
            x.extend([a, b]);
            y.push(u32::from(a + b > 0.0));
        }
        (Matrix::new(40, 2, x), y)
    }

    /// Sum of squares of every trained parameter.
    fn trained_sq_norm(p: &TrainParams) -> f64 {
        let (x, y) = tiny();
        let spec = EncoderSpec::new(p.encoder.clone().unwrap_or_default(), x.cols).unwrap();
        let (fitted, _) = fit(
            &p.settings(),
            EncoderInit::Fresh(spec),
            2,
            &[1.0, 1.0],
            &mut TrainSet {
                x: &x,
                y: &y,
                w: None,
            },
            None,
            3,
            &mut |_| {},
        )
        .unwrap();
        fitted
            .weights
            .tensors
            .iter()
            .flat_map(|(_, v)| v.iter())
            .map(|&v| (v as f64).powi(2))
            .sum()
    }

    #[test]
    fn weight_decay_shrinks_the_weights_under_sgd_and_adam() {
        for (optimizer, lr) in [("sgd", 0.1), ("adam", 0.01), ("adamw", 0.01)] {
            let run = |decay: Option<f64>| {
                let mut v = json!({
                    "optimizer": optimizer, "lr": lr, "epochs": 5, "batch_size": 8,
                    "encoder": {"depth": 1, "width": 8}
                });
                if let Some(d) = decay {
                    v["weight_decay"] = json!(d);
                }
                trained_sq_norm(&params(v))
            };
            let (none, some) = (run(Some(0.0)), run(Some(0.5)));
            assert!(
                some < 0.95 * none,
                "{optimizer}: |w|^2 {some} with decay 0.5, {none} without"
            );
            // the default is PyTorch's: 0 for sgd and adam, 0.01 for adamw
            let default = if optimizer == "adamw" { 0.01 } else { 0.0 };
            assert_eq!(run(None), run(Some(default)), "{optimizer}");
        }
    }

    fn ctx(dir: &std::path::Path) -> StageContext {
        StageContext::new(
            "t",
            1,
            dir.join("scratch"),
            dir.to_path_buf(),
            dir.join("run"),
            Arc::new(NoProgress),
        )
    }

    /// The tiny rows as a table: features a, b and a label y.
    fn tiny_table() -> Table {
        let (x, y) = tiny();
        let col = |j: usize| -> Vec<f64> { x.iter_rows().map(|r| r[j] as f64).collect() };
        let labels: Vec<&str> = y.iter().map(|&l| ["no", "yes"][l as usize]).collect();
        let schema = Arc::new(Schema::new(vec![
            field_with_role(Field::new("a", DataType::Float64, false), Role::Feature),
            field_with_role(Field::new("b", DataType::Float64, false), Role::Feature),
            field_with_role(Field::new("y", DataType::Utf8, false), Role::Label),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Float64Array::from(col(0))),
                Arc::new(Float64Array::from(col(1))),
                Arc::new(StringArray::from(labels)),
            ],
        )
        .unwrap();
        Table::from_batch(batch)
    }

    fn run_train(v: Value) -> Result<StageOutput, String> {
        let dir = tempfile::tempdir().unwrap();
        let stage = Train::new(params(v)).map_err(|p| format!("{p:?}"))?;
        let mut inputs = Inputs::default();
        inputs.push("table", tiny_table().into());
        stage
            .run_inner(&inputs, &ctx(dir.path()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn fine_tuning_parameters_without_a_pretrained_input_are_refused() {
        for (v, name) in [
            (
                json!({"epochs": 1, "freeze_encoder": true}),
                "freeze_encoder",
            ),
            (json!({"epochs": 1, "encoder_lr": 0.01}), "encoder_lr"),
        ] {
            let err = run_train(v).err().unwrap();
            assert!(err.contains(name) && err.contains("`pretrained`"), "{err}");
        }
    }

    #[test]
    fn the_diagnosis_block_changes_the_verdicts_of_a_run() {
        let verdicts = |v: Value| -> Vec<String> {
            let out = run_train(v).unwrap();
            out.summary["diagnoses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["kind"].as_str().unwrap().to_string())
                .collect()
        };
        let base = json!({"epochs": 30, "lr": 0.05, "batch_size": 8,
                          "encoder": {"depth": 1, "width": 8}});
        assert!(!verdicts(base.clone()).contains(&"underfitting".to_string()));
        let mut strict = base.clone();
        strict["diagnosis"] = json!({"underfit_accuracy_margin": 0.9});
        assert!(verdicts(strict).contains(&"underfitting".to_string()));
    }
}
