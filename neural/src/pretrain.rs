//! `pretrain`: self-supervised pretraining of an encoder on every row
//! (labels unused): denoising autoencoder, VIME or SCARF (see
//! [`crate::ssl`]). Outputs the encoder on a model port (for `train` to
//! fine-tune) and the rows with their embeddings as features.

use std::sync::Arc;

use arrow::compute::concat_batches;
use gigo_pipeline::budget::Need;
use gigo_pipeline::summary::{Block, Section};
use gigo_pipeline::{
    Artifact, Inputs, Memory, Metrics, ParamProblem, PortKind, PortSpec, Registry, Source, Stage,
    StageContext, StageError, StageOutput, Table, TableWriter,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::backend::backend_name;
use crate::config::{
    BatchSize, EncoderParams, EncoderSpec, OptimParams, OptimizerKind, Schedule, no_effect, word,
};
use crate::data;
use crate::diagnose::{Thresholds, curve_blocks, diagnose};
use crate::error::NeuralError;
use crate::fit::{SHUFFLE_BUFFER_ROWS, TrainRows, TrainSet};
use crate::saved::{EncoderModel, FORMAT};
use crate::ssl::{Embedder, Method, Noise, PretrainSettings, pretrain_rows};
use crate::train::rows;

/// Parameters of `pretrain`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PretrainParams {
    /// Feature columns. Default: every column with role `feature`.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// `dae` (denoising autoencoder, default), `vime` (masked-feature
    /// reconstruction with mask estimation), `scarf` (contrastive); on
    /// sequences also `next_step` (causal: predict each next step) or
    /// `masked` (rebuild masked steps from both sides), each with a
    /// two-layer decoder.
    #[serde(default)]
    pub method: Method,
    /// The encoder to pretrain. Default: an MLP of 2 x 128 relu units.
    #[serde(default)]
    pub encoder: EncoderParams,
    /// Passes over the rows. Default 20.
    #[serde(default = "default_epochs")]
    pub epochs: usize,
    /// Rows per step (`full` or N). Default 128.
    #[serde(default)]
    pub batch_size: BatchSize,
    /// Rows the epoch's shuffle holds at once (as `train`'s): a table of at
    /// most this many rows is shuffled whole, and swap noise draws from all
    /// of its rows; a larger one is read in chunks of 65,536 rows taken in
    /// shuffled order, this many rows at a time, shuffled within them, and
    /// swap noise draws from the rows the buffer holds. Default 1,048,576.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shuffle_buffer: Option<usize>,
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
    /// Learning-rate schedule. Default `{kind: constant}`.
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs of linear warm-up. Default 0.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Clip the gradient's global L2 norm to this. Default: none.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Clamp each gradient element to +-this. Default: none.
    #[serde(default)]
    pub clip_value: Option<f64>,
    /// `method: dae` only: `swap` (default) or `gaussian` noise.
    #[serde(default)]
    pub noise: Option<Noise>,
    /// `method: dae` with `noise: gaussian` only: the noise's standard
    /// deviation (features are standardised). Default 0.5.
    #[serde(default)]
    pub noise_std: Option<f64>,
    /// Swap noise, `vime`, `scarf` and `masked` only (not `noise:
    /// gaussian`): the probability that a feature is corrupted (for
    /// `masked`: that a step is masked). Default 0.3 (`masked`: 0.15).
    #[serde(default)]
    pub corruption: Option<f64>,
    /// `method: vime` only: weight of the mask-estimation loss. Default 1.
    #[serde(default)]
    pub mask_weight: Option<f64>,
    /// `method: scarf` only: InfoNCE temperature. Default 0.5.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// `method: scarf` only: output width of the projection head. Default 64.
    #[serde(default)]
    pub projection_dim: Option<usize>,
}

fn default_epochs() -> usize {
    20
}
fn default_lr() -> f64 {
    1e-3
}

impl Default for PretrainParams {
    fn default() -> Self {
        serde_json::from_value(json!({}))
            .unwrap_or_else(|_| unreachable!("every field has a default"))
    }
}

impl PretrainParams {
    /// The engine's settings, unset parameters at their defaults.
    pub fn settings(&self) -> PretrainSettings {
        PretrainSettings {
            method: self.method,
            noise: self.noise.unwrap_or_default(),
            noise_std: self.noise_std.unwrap_or(0.5),
            // BERT's share of masked tokens for masked steps
            corruption: self.corruption.unwrap_or(match self.method {
                Method::Masked => 0.15,
                _ => 0.3,
            }),
            mask_weight: self.mask_weight.unwrap_or(1.0),
            temperature: self.temperature.unwrap_or(0.5),
            projection_dim: self.projection_dim.unwrap_or(64),
            optim: OptimParams {
                optimizer: self.optimizer,
                lr: self.lr,
                momentum: self.momentum,
                nesterov: self.nesterov,
                weight_decay: self.weight_decay,
                schedule: self.schedule,
                warmup_epochs: self.warmup_epochs,
                clip_norm: self.clip_norm,
                clip_value: self.clip_value,
            },
            epochs: self.epochs,
            batch_size: self.batch_size,
            shuffle_buffer: self.shuffle_buffer.unwrap_or(SHUFFLE_BUFFER_ROWS),
        }
    }

    /// Every problem at once.
    pub fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let mut p = Vec::new();
        self.encoder.check("encoder", &mut p);
        let s = self.settings();
        s.optim.check("", self.epochs, &mut p);
        if self.epochs == 0 || self.epochs > 100_000 {
            p.push(ParamProblem::new(
                "epochs",
                format!("must be in 1..=100000, got {}", self.epochs),
            ));
        }
        if self.shuffle_buffer == Some(0) {
            p.push(ParamProblem::new("shuffle_buffer", "must be at least 1"));
        }
        if self.batch_size == BatchSize::Rows(0) {
            p.push(ParamProblem::new(
                "batch_size",
                "must be `full` or at least 1",
            ));
        }
        if !(s.noise_std > 0.0 && s.noise_std.is_finite()) {
            p.push(ParamProblem::new(
                "noise_std",
                format!("must be a positive number, got {}", s.noise_std),
            ));
        }
        if !(s.corruption > 0.0 && s.corruption < 1.0) {
            p.push(ParamProblem::new(
                "corruption",
                format!("must be in (0, 1), got {}", s.corruption),
            ));
        }
        if !(s.mask_weight >= 0.0 && s.mask_weight.is_finite()) {
            p.push(ParamProblem::new(
                "mask_weight",
                format!("must be a non-negative number, got {}", s.mask_weight),
            ));
        }
        if !(s.temperature > 0.0 && s.temperature.is_finite()) {
            p.push(ParamProblem::new(
                "temperature",
                format!("must be a positive number, got {}", s.temperature),
            ));
        }
        if s.projection_dim == 0 {
            p.push(ParamProblem::new("projection_dim", "must be at least 1"));
        }
        self.check_method(&s, &mut p);
        // whether the columns make a sequence is known when the stage runs
        if self.method.is_sequence()
            && let Some(why) =
                crate::ssl::sequence_encoder_problem(self.method, &self.encoder, false)
        {
            p.push(ParamProblem::new("method", why));
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    /// Parameters of one method set under another.
    fn check_method(&self, s: &PretrainSettings, p: &mut Vec<ParamProblem>) {
        let method = format!("method is {}", word(&self.method));
        let gaussian = self.method == Method::Dae && s.noise == Noise::Gaussian;
        let rules = [
            (
                "noise",
                self.noise.is_some() && self.method != Method::Dae,
                "`method: dae`",
                method.clone(),
            ),
            (
                "noise_std",
                self.noise_std.is_some() && !gaussian,
                "`method: dae` with `noise: gaussian`",
                format!("{method}, noise is {}", word(&s.noise)),
            ),
            (
                "corruption",
                self.corruption.is_some() && gaussian,
                "`noise: swap` or `method: vime` / `scarf` (Gaussian noise has `noise_std`)",
                "method is dae, noise is gaussian".to_string(),
            ),
            (
                "corruption",
                self.corruption.is_some() && self.method == Method::NextStep,
                "a method that corrupts or masks (`next_step` reads every step)",
                method.clone(),
            ),
            (
                "mask_weight",
                self.mask_weight.is_some() && self.method != Method::Vime,
                "`method: vime`",
                method.clone(),
            ),
            (
                "temperature",
                self.temperature.is_some() && self.method != Method::Scarf,
                "`method: scarf`",
                method.clone(),
            ),
            (
                "projection_dim",
                self.projection_dim.is_some() && self.method != Method::Scarf,
                "`method: scarf`",
                method.clone(),
            ),
        ];
        for (name, ignored, needs, actual) in rules {
            if ignored {
                p.push(no_effect(name, needs, &actual));
            }
        }
    }
}

/// The `pretrain` stage.
pub struct Pretrain {
    params: PretrainParams,
}

impl Pretrain {
    /// A stage from checked parameters.
    pub fn new(params: PretrainParams) -> Result<Pretrain, Vec<ParamProblem>> {
        params.check()?;
        Ok(Pretrain { params })
    }
}

/// Registers `pretrain`.
pub fn register(registry: &mut Registry) {
    registry.register::<PretrainParams, _>(
        "pretrain",
        "Pretrains a neural encoder without labels on every row of its input tables: denoising \
         autoencoder (Gaussian or swap noise), VIME (masked-feature reconstruction with mask \
         estimation) or SCARF (contrastive, InfoNCE, corruption from the empirical marginals). \
         Outputs the encoder (`model`, for `train` to fine-tune) and the rows with their \
         embeddings (`emb_0`, ...) as the feature columns (`embeddings`).",
        |params| Ok(Box::new(Pretrain::new(params)?)),
    );
}

impl Stage for Pretrain {
    fn metrics(&self) -> Metrics {
        Metrics::names([
            "final_pretrain_loss",
            "pretrain_loss_drop",
            "rows",
            "updates",
        ])
    }

    /// Reads its rows in batches and holds their encoded matrix only when it
    /// fits the budget (else one shuffle buffer at a time, counted here at 16
    /// features a row); several stored tables on `table` are concatenated
    /// into one in the store first.
    fn memory(&self) -> Memory {
        let buffer = self.params.shuffle_buffer.unwrap_or(SHUFFLE_BUFFER_ROWS) as u64;
        Memory::Streams {
            per_row: 0.0,
            fixed: gigo_pipeline::budget::STREAM_FIXED + buffer * 64,
        }
    }

    /// The rows' matrix when it will be held (several input tables are
    /// one table to it).
    fn reserve(&self, need: &Need, inputs: &Inputs, ctx: &StageContext) -> u64 {
        let sources: Vec<Source> = inputs
            .all("table")
            .iter()
            .filter_map(Artifact::source)
            .collect();
        need.bytes
            + sources
                .iter()
                .map(|s| rows::share(s, ctx.memory_budget))
                .sum::<u64>()
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table(
                "table",
                "the rows to learn from (labels unused); several tables are concatenated",
            )
            .many(),
        ]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::aside(
                "model",
                PortKind::Model,
                "the pretrained encoder (weights, resolved config, feature encoder)",
            ),
            PortSpec::table(
                "embeddings",
                "every row with its embedding as the feature columns",
            ),
        ]
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        Ok(self.run_inner(inputs, ctx)?)
    }
}

/// The rows on `table`: the one table connected, or several concatenated
/// (their columns must match): in memory when they all are, else copied
/// batch by batch into one table in the stage's scratch directory, so that
/// memory does not grow with them.
fn one_source(inputs: &Inputs, ctx: &StageContext) -> Result<Source, NeuralError> {
    let sources: Vec<Source> = inputs
        .all("table")
        .iter()
        .filter_map(Artifact::source)
        .collect();
    let first = match sources.as_slice() {
        [] => return Err(NeuralError::internal("no table on `table`")),
        [one] => return Ok(one.clone()),
        [first, ..] => first,
    };
    let schema = first.schema().clone();
    for (i, s) in sources.iter().enumerate() {
        if s.schema().fields() != schema.fields() {
            return Err(NeuralError::data(format!(
                "table {} on `table` has other columns (or types) than the first; \
                 pretraining concatenates them, so they must match",
                i + 1
            )));
        }
    }
    let data = |e: gigo_pipeline::StageError| NeuralError::data(e.to_string());
    if sources.iter().all(|s| matches!(s, Source::Memory(_))) {
        let mut batches = Vec::new();
        for s in &sources {
            batches.extend(
                s.load(ctx.batch_rows)
                    .map_err(data)?
                    .batches()
                    .iter()
                    .cloned(),
            );
        }
        let all = concat_batches(&schema, &batches)
            .map_err(|e| NeuralError::internal(format!("concatenating tables: {e}")))?;
        return Ok(Source::Memory(Arc::new(Table::from_batch(all))));
    }
    std::fs::create_dir_all(&ctx.scratch_dir)
        .map_err(|e| NeuralError::data(format!("{}: {e}", ctx.scratch_dir.display())))?;
    let mut w =
        TableWriter::create(&ctx.scratch_dir.join("concatenated.parquet"), schema).map_err(data)?;
    for s in &sources {
        for batch in s.batches(ctx.batch_rows).map_err(data)? {
            w.write(&batch.map_err(data)?).map_err(data)?;
        }
    }
    Ok(Source::Stored(Arc::new(w.finish().map_err(data)?)))
}

impl Pretrain {
    fn run_inner(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, NeuralError> {
        let p = &self.params;
        let source = one_source(inputs, ctx)?;
        let shape = Table::empty(source.schema().clone());
        let columns = data::feature_columns(&shape, p.features.as_deref())?;
        let layout = data::sequence_layout(&p.encoder, columns, p.features.is_some())?;
        layout.log_left_out(ctx);
        let columns = layout.columns.clone();
        ctx.progress.message("reading the rows");
        let scan = rows::scan(
            &source,
            &columns,
            &layout.channels(),
            true,
            None,
            None,
            ctx.batch_rows,
        )?;
        scan.log_missing_steps(ctx);
        let enc = scan
            .fitted
            .ok_or_else(|| NeuralError::internal("no feature encoder"))?;
        let n = scan.rows;
        let spec = EncoderSpec::new(layout.params, enc.width())?.with_tokens(enc.column_widths());
        let settings = p.settings();
        // the encoded matrix is held when it fits the budget with room to
        // spare; otherwise every epoch reads the rows from the store
        let matrix_bytes = (n as u64) * (enc.width() as u64) * 4;
        let load = || {
            source
                .load(ctx.batch_rows)
                .map_err(|e| NeuralError::data(e.to_string()))
        };
        let held = if rows::holds(&source, matrix_bytes, ctx.memory_budget) {
            Some(enc.transform(load()?.batches())?)
        } else {
            ctx.log(format!(
                "the rows' features take {} encoded: each epoch reads them from the store \
                 through a shuffle buffer of {} rows",
                gigo_pipeline::Bytes(matrix_bytes),
                settings.shuffle_buffer
            ));
            None
        };
        ctx.progress.set_total(p.epochs as u64);
        let zeros = held.as_ref().map(|x| vec![0; x.rows]);
        let mut in_memory =
            held.as_ref()
                .zip(zeros.as_ref())
                .map(|(x, y)| TrainSet { x, y, w: None });
        let mut streamed = rows::StreamedRows {
            source: &source,
            encoder: &enc,
            label: None,
            classes: &[],
            weights: None,
            rows: n,
            labelled: n,
            batch_rows: ctx.batch_rows,
        };
        let pretrain_rows_of: &mut dyn TrainRows = match &mut in_memory {
            Some(t) => t,
            None => &mut streamed,
        };
        let (weights, report) =
            pretrain_rows(&settings, &spec, pretrain_rows_of, ctx.seed, &mut |e| {
                ctx.progress.advance(1);
                ctx.progress
                    .message(&format!("epoch {}: loss {:.4}", e.epoch, e.train_loss));
            })?;
        ctx.log(format!(
            "pretrained {} epochs ({} updates) on {} rows in {:.2} s on {}",
            report.history.epochs.len(),
            report.updates,
            n,
            report.seconds,
            backend_name()
        ));
        let embedder = Embedder::new(&spec, &weights)?;
        // a stored table's embeddings are written as they are computed,
        // held or not: they are wider than its features
        let embeddings: Artifact = match (&held, &source) {
            (Some(x), Source::Memory(_)) => {
                data::with_embeddings(&*load()?, &embedder.embed(x)?, &columns)?.into()
            }
            _ => {
                ctx.progress.message("embedding the rows");
                rows::write_through(&source, ctx, "embeddings", &mut |t| {
                    let x = enc.transform(t.batches())?;
                    data::with_embeddings(&t, &embedder.embed(&x)?, &columns)
                })?
            }
        };
        let params_json = serde_json::to_value(p)
            .map_err(|e| NeuralError::internal(format!("parameters as JSON: {e}")))?;
        let model = EncoderModel {
            format: FORMAT,
            encoder: spec.clone(),
            feature_columns: columns.clone(),
            features: enc,
            pretrain: params_json.clone(),
            backend: backend_name().into(),
        }
        .into_model(&weights)?;

        let diagnoses = diagnose(&report.history, None, None, &Thresholds::default());
        let method = match p.method {
            Method::Dae => "denoising autoencoder",
            Method::Vime => "VIME",
            Method::Scarf => "SCARF",
            Method::NextStep => "next-step prediction (causal)",
            Method::Masked => "masked-step reconstruction",
        };
        let mut s = Section::new(&ctx.stage_id, "pretrain", "Self-supervised pretraining");
        s.figure("method", method, "text");
        s.figure("rows", n, "int");
        s.figure("embedding width", spec.embedding_dim(), "int");
        s.figure("epochs", report.history.epochs.len(), "int");
        let last = report.history.epochs.last().map(|e| e.train_loss);
        let first = report.history.epochs.first().map(|e| e.train_loss);
        if let Some(l) = last {
            s.figure("final loss", l, "float");
            s.metric("final_pretrain_loss", l);
        }
        if let (Some(f), Some(l)) = (first, last) {
            s.metric("pretrain_loss_drop", f - l);
        }
        s.metric("rows", n);
        s.metric("updates", report.updates);
        let mut verdicts = Vec::new();
        for d in &diagnoses {
            verdicts.push(json!({"kind": d.kind, "severity": d.severity.as_str(), "message": d.message, "evidence": d.evidence}));
            let a = s.alert(d.severity, d.kind, None, d.message.clone());
            for (key, v) in &d.evidence {
                a.with(key, v.clone());
            }
        }
        s.block(Block::Text {
            text: format!(
                "{method} on {} rows ({} encoded features), {} x {} {} encoder, {} epochs, {} \
                 updates; the embeddings replace the feature columns on `embeddings`.",
                n,
                spec.input_dim,
                spec.params.depth,
                spec.params.width,
                crate::train::kind_name(spec.params.kind),
                report.history.epochs.len(),
                report.updates
            ),
        });
        for b in curve_blocks(&report.history) {
            s.block(b);
        }
        let summary = s.into_summary(json!({
            "rows": n,
            "encoded_features": spec.input_dim,
            "embedding_dim": spec.embedding_dim(),
            "backend": backend_name(),
            "updates": report.updates,
            "parameters": report.parameters,
            "diverged": report.diverged,
            "params": params_json,
            "history": report.history,
            "diagnoses": verdicts,
        }));
        Ok(StageOutput::new()
            .with("model", model)
            .with("embeddings", embeddings)
            .with_summary(summary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{assert_refused, listed};

    fn found(v: serde_json::Value) -> Vec<(String, String)> {
        listed(serde_json::from_value::<PretrainParams>(v).unwrap().check())
    }

    #[test]
    fn defaults_and_each_methods_own_parameters_validate() {
        for v in [
            json!({}),
            json!({"method": "dae", "noise": "swap", "corruption": 0.2}),
            json!({"method": "dae", "noise": "gaussian", "noise_std": 0.1}),
            json!({"method": "vime", "corruption": 0.2, "mask_weight": 2.0}),
            json!({"method": "scarf", "corruption": 0.6, "temperature": 0.1, "projection_dim": 8}),
            json!({"optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.001}),
        ] {
            assert_eq!(found(v.clone()), vec![], "{v}");
        }
    }

    #[test]
    fn parameters_of_another_method_are_refused_naming_it() {
        let f = found(json!({
            "method": "vime", "noise": "swap", "noise_std": 0.5, "temperature": 0.5,
            "projection_dim": 64
        }));
        assert_refused(&f, "noise", "`method: dae`", "method is vime");
        assert_refused(&f, "noise_std", "`noise: gaussian`", "method is vime");
        assert_refused(&f, "temperature", "`method: scarf`", "method is vime");
        assert_refused(&f, "projection_dim", "`method: scarf`", "method is vime");
        assert_eq!(f.len(), 4, "{f:?}");
        let f = found(json!({"method": "scarf", "mask_weight": 1.0}));
        assert_refused(&f, "mask_weight", "`method: vime`", "method is scarf");
        let f = found(json!({"noise": "gaussian", "corruption": 0.3}));
        assert_refused(&f, "corruption", "`noise: swap`", "noise is gaussian");
        let f = found(json!({"noise_std": 0.5}));
        assert_refused(&f, "noise_std", "`noise: gaussian`", "noise is swap");
        let f = found(json!({"momentum": 0.5, "encoder": {"image": [2, 2]}}));
        assert_refused(&f, "momentum", "`optimizer: sgd`", "optimizer is adam");
        assert_refused(&f, "encoder.image", "`kind: cnn`", "kind is mlp");
    }
}
