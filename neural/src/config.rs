//! The levers: parameter types shared by `pretrain` and `train`, with their
//! documented defaults and checks. Plain serde structs (`deny_unknown_fields`,
//! `JsonSchema`); nothing here touches burn.

use gigo_pipeline::ParamProblem;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The problem of a parameter the chosen options ignore: `needs` names the
/// option it depends on, `actual` what was chosen instead, e.g. "`gce_q` has
/// no effect unless `loss: gce` (loss is focal)".
pub fn no_effect(path: &str, needs: &str, actual: &str) -> ParamProblem {
    let name = path.rsplit('.').next().unwrap_or(path);
    let mut problem = ParamProblem::new(
        path,
        format!("`{name}` has no effect unless {needs} ({actual})"),
    );
    problem.help = Some(format!("remove `{name}`, or choose what it depends on"));
    problem
}

/// A range a number must lie in, and how a message says it.
#[derive(Debug, Clone, Copy)]
pub struct Range {
    /// Whether a value lies in it.
    pub ok: fn(f64) -> bool,
    /// The range in words, after "must be".
    pub says: &'static str,
}

impl Range {
    /// Finite and at least 0.
    pub const NON_NEGATIVE: Range = Range {
        ok: |v| v >= 0.0 && v.is_finite(),
        says: "a non-negative number",
    };

    /// Above 0, at most 1.
    pub const SHARE: Range = Range {
        ok: |v| v > 0.0 && v <= 1.0,
        says: "in (0, 1]",
    };

    /// Pushes a problem at `path` unless `v` lies in the range.
    pub fn check(self, path: &str, v: f64, p: &mut Vec<ParamProblem>) {
        if !(self.ok)(v) {
            p.push(ParamProblem::new(
                path,
                format!("must be {}, got {v}", self.says),
            ));
        }
    }
}

/// A unit variant as the YAML writes it (`snake_case`), for messages.
pub fn word<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        other => format!("{other:?}"),
    }
}

/// The non-linearity between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// `max(0.01 x, x)`.
    LeakyRelu,
    /// Gaussian error linear unit.
    Gelu,
    /// Hyperbolic tangent.
    Tanh,
    /// Logistic sigmoid (saturates: deep stacks of it show vanishing gradients).
    Sigmoid,
}

/// Normalisation after each hidden layer's linear map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Norm {
    /// No normalisation.
    #[default]
    None,
    /// Batch normalisation (batch statistics in training, running ones at inference).
    Batch,
    /// Layer normalisation (per row).
    Layer,
    /// Group normalisation (per row, over `groups` groups of units).
    Group,
}

/// The encoder's architecture family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncoderKind {
    /// A multi-layer perceptron over the encoded feature vector.
    #[default]
    Mlp,
    /// A small CNN for image-shaped inputs (features in row-major pixel
    /// order, one channel): 3x3 convolutions, each followed by the activation
    /// and 2x2 max pooling, then the MLP layers.
    Cnn,
    /// A recurrent network over a sequence (`sequence`): `depth` stacked GRU
    /// or LSTM layers (`cell`) of `width` units, optionally bidirectional;
    /// the embedding is the last step's state (both directions' when
    /// bidirectional).
    Rnn,
    /// A temporal convolutional network over a sequence: `depth` residual
    /// blocks of two dilated causal 1-D convolutions (`kernel` wide,
    /// dilation 1, 2, 4, ...) with `width` channels; the embedding is the
    /// mean over the steps of the last block's output.
    Tcn,
    /// A Transformer encoder: `depth` pre-norm layers of multi-head
    /// self-attention (`heads`) and a feed-forward map of `2 x width` units.
    /// Over a sequence, each step is a token with a sinusoidal positional
    /// encoding; over plain tabular rows, each feature is a token of its own
    /// learned embedding (the FT-Transformer design). A class token's final
    /// state is the embedding; with `causal: true` (sequences only) each
    /// step attends to itself and the steps before it, and the embedding is
    /// the last step's state.
    Transformer,
}

impl EncoderKind {
    /// Whether the kind always reads its features as a sequence.
    pub fn is_sequence(self) -> bool {
        matches!(self, EncoderKind::Rnn | EncoderKind::Tcn)
    }

    /// Whether the kind can read its features as a sequence (`sequence`, or
    /// columns named `t{j}` / `{channel}_t{j}`).
    pub fn reads_sequences(self) -> bool {
        self.is_sequence() || self == EncoderKind::Transformer
    }
}

/// The recurrent cell of `kind: rnn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Cell {
    /// Gated recurrent unit (PyTorch's gate equations).
    #[default]
    Gru,
    /// Long short-term memory.
    Lstm,
}

/// How a row's features form a sequence: `channels` series of `length`
/// steps, channel after channel (feature `c * length + t` is channel `c` at
/// step `t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SequenceShape {
    /// Series per row (1 for a univariate series).
    pub channels: usize,
    /// Steps per series.
    pub length: usize,
}

impl SequenceShape {
    /// One channel of `length` steps: a sequence kind's shape when none is given.
    pub fn one_channel(length: usize) -> Self {
        SequenceShape {
            channels: 1,
            length,
        }
    }
}

/// The encoder: everything between the input features and the embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EncoderParams {
    /// `mlp` (default) or `cnn`.
    #[serde(default)]
    pub kind: EncoderKind,
    /// Hidden layers (each: linear, normalisation, activation, dropout). Default 2.
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Units per hidden layer; the embedding has this width. Default 128.
    #[serde(default = "default_width")]
    pub width: usize,
    /// Activation of every hidden layer. Default `relu`.
    #[serde(default)]
    pub activation: Activation,
    /// Residual (skip) connections: each hidden layer after the first adds
    /// its input to its output. Default false.
    #[serde(default)]
    pub residual: bool,
    /// Normalisation: `none` (default), `batch`, `layer` or `group`.
    #[serde(default)]
    pub norm: Norm,
    /// `norm: group` only: groups of units; must divide `width`. Default 8.
    #[serde(default)]
    pub groups: Option<usize>,
    /// Dropout probability after each hidden layer (training only). Default 0.
    #[serde(default)]
    pub dropout: f64,
    /// `kind: cnn` only: image height and width; their product must equal the
    /// number of encoded features. Default `[28, 28]`.
    #[serde(default)]
    pub image: Option<[usize; 2]>,
    /// `kind: cnn` only: output channels of each convolution (3 x 3, same
    /// padding, then `norm` over its channels, the activation, `dropout`
    /// and 2 x 2 max pooling). Default `[16, 32]`.
    #[serde(default)]
    pub channels: Option<Vec<usize>>,
    /// `kind: rnn` only: `gru` (default) or `lstm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cell: Option<Cell>,
    /// `kind: rnn` only: also read each sequence backwards (the embedding
    /// is twice `width`). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bidirectional: bool,
    /// `kind: tcn` only: convolution width in steps. Default 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    /// `kind: transformer` only: attention heads; must divide `width`.
    /// Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<usize>,
    /// `kind: transformer` over a sequence only: each step attends to
    /// itself and the steps before it, never after. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub causal: bool,
    /// `kind: rnn` / `tcn` / `transformer` only: channels and steps of each
    /// row's sequence. The `train` and `pretrain` stages infer it from
    /// feature columns named `t{j}` (one channel) or `{channel}_t{j}` (such
    /// as `d{c}_t{j}`, or `x_t{j}` for a list column `x` that `ingest`
    /// widened: one channel per name, `d{c}` by number, then the others in
    /// the table's order); elsewhere
    /// the default is one channel of all the features (`rnn`, `tcn`) or one
    /// token per feature (`transformer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<SequenceShape>,
}

fn default_depth() -> usize {
    2
}
fn default_width() -> usize {
    128
}

impl Default for EncoderParams {
    fn default() -> Self {
        EncoderParams {
            kind: EncoderKind::Mlp,
            depth: default_depth(),
            width: default_width(),
            activation: Activation::Relu,
            residual: false,
            norm: Norm::None,
            groups: None,
            dropout: 0.0,
            image: None,
            channels: None,
            cell: None,
            bidirectional: false,
            kernel: None,
            heads: None,
            causal: false,
            sequence: None,
        }
    }
}

impl EncoderParams {
    /// Groups of `norm: group` (default 8).
    pub fn groups(&self) -> usize {
        self.groups.unwrap_or(8)
    }

    /// A CNN's image height and width (default 28 x 28).
    pub fn image(&self) -> [usize; 2] {
        self.image.unwrap_or([28, 28])
    }

    /// A CNN's channels per convolution (default 16, 32).
    pub fn channels(&self) -> Vec<usize> {
        self.channels.clone().unwrap_or_else(|| vec![16, 32])
    }

    /// A TCN's convolution width (default 3).
    pub fn kernel(&self) -> usize {
        self.kernel.unwrap_or(3)
    }

    /// A Transformer's attention heads (default 4).
    pub fn heads(&self) -> usize {
        self.heads.unwrap_or(4)
    }

    /// Whether the features are read as a sequence: always for `rnn` and
    /// `tcn`, for a `transformer` when it has a `sequence` (else each
    /// feature is a token).
    pub fn is_sequence(&self) -> bool {
        self.kind.is_sequence()
            || (self.kind == EncoderKind::Transformer && self.sequence.is_some())
    }

    /// An RNN's cell (default GRU).
    pub fn cell(&self) -> Cell {
        self.cell.unwrap_or_default()
    }

    /// Steps of the input a TCN's last output sees: `1 + 2 (k - 1) (2^depth - 1)`
    /// (two convolutions per block, dilations doubling); an RNN sees every
    /// step (`None`).
    pub fn receptive_field(&self) -> Option<usize> {
        (self.kind == EncoderKind::Tcn).then(|| {
            let blocks = (1usize << self.depth.min(32)) - 1;
            1 + 2 * (self.kernel() - 1) * blocks
        })
    }

    /// Every problem, with paths under `prefix` (e.g. `encoder`).
    pub fn check(&self, prefix: &str, p: &mut Vec<ParamProblem>) {
        let at = |name: &str| format!("{prefix}.{name}");
        if self.groups.is_some() && self.norm != Norm::Group {
            p.push(no_effect(
                &at("groups"),
                "`norm: group`",
                &format!("norm is {}", word(&self.norm)),
            ));
        }
        if self.kind != EncoderKind::Cnn {
            for (name, set) in [
                ("image", self.image.is_some()),
                ("channels", self.channels.is_some()),
            ] {
                if set {
                    p.push(no_effect(
                        &at(name),
                        "`kind: cnn`",
                        &format!("kind is {}", word(&self.kind)),
                    ));
                }
            }
        }
        let kind = format!("kind is {}", word(&self.kind));
        let (rnn, tcn) = (self.kind == EncoderKind::Rnn, self.kind == EncoderKind::Tcn);
        let transformer = self.kind == EncoderKind::Transformer;
        for (name, set, needs, applies) in [
            ("cell", self.cell.is_some(), "`kind: rnn`", rnn),
            ("bidirectional", self.bidirectional, "`kind: rnn`", rnn),
            ("kernel", self.kernel.is_some(), "`kind: tcn`", tcn),
            (
                "heads",
                self.heads.is_some(),
                "`kind: transformer`",
                transformer,
            ),
            ("causal", self.causal, "`kind: transformer`", transformer),
        ] {
            if set && !applies {
                p.push(no_effect(&at(name), needs, &kind));
            }
        }
        if self.sequence.is_some() && !self.kind.reads_sequences() {
            p.push(no_effect(
                &at("sequence"),
                "`kind: rnn`, `tcn` or `transformer`",
                &kind,
            ));
        }
        let heads = self.heads();
        if transformer && (heads == 0 || !self.width.is_multiple_of(heads)) {
            p.push(ParamProblem::new(
                &at("heads"),
                format!(
                    "attention heads must divide `width` ({}), got {heads}",
                    self.width
                ),
            ));
        }
        if let Some(s) = self.sequence
            && (s.channels == 0 || s.length == 0)
        {
            p.push(ParamProblem::new(
                &at("sequence"),
                format!(
                    "needs at least one channel and one step, got {} x {}",
                    s.channels, s.length
                ),
            ));
        }
        if self.kind == EncoderKind::Tcn && !(1..=64).contains(&self.kernel()) {
            p.push(ParamProblem::new(
                &at("kernel"),
                format!("must be in 1..=64, got {}", self.kernel()),
            ));
        }
        if self.kind == EncoderKind::Tcn && self.depth > 16 {
            p.push(ParamProblem::new(
                &at("depth"),
                format!(
                    "a TCN's dilation doubles per block: at most 16 blocks, got {}",
                    self.depth
                ),
            ));
        }
        if self.residual && self.depth == 1 {
            p.push(no_effect(
                &at("residual"),
                "`depth` is at least 2 (the first hidden layer has no skip connection)",
                "depth is 1",
            ));
        }
        if self.depth == 0 || self.depth > 64 {
            p.push(ParamProblem::new(
                &at("depth"),
                format!("must be in 1..=64, got {}", self.depth),
            ));
        }
        if self.width == 0 || self.width > 16_384 {
            p.push(ParamProblem::new(
                &at("width"),
                format!("must be in 1..=16384, got {}", self.width),
            ));
        }
        let groups = self.groups();
        if self.norm == Norm::Group && (groups == 0 || !self.width.is_multiple_of(groups)) {
            p.push(ParamProblem::new(
                &at("groups"),
                format!(
                    "group normalisation needs `groups` to divide `width` ({}), got {groups}",
                    self.width
                ),
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            p.push(ParamProblem::new(
                &at("dropout"),
                format!("must be in [0, 1), got {}", self.dropout),
            ));
        }
        if self.kind == EncoderKind::Cnn {
            let (image, channels) = (self.image(), self.channels());
            if image[0] == 0 || image[1] == 0 {
                p.push(ParamProblem::new(
                    &at("image"),
                    format!("height and width must be positive, got {image:?}"),
                ));
            }
            if channels.is_empty() || channels.contains(&0) {
                p.push(ParamProblem::new(
                    &at("channels"),
                    format!("needs at least one positive channel count, got {channels:?}"),
                ));
            }
            if self.norm == Norm::Group
                && groups > 0
                && let Some(c) = channels.iter().find(|c| !c.is_multiple_of(groups))
            {
                p.push(ParamProblem::new(
                    &at("channels"),
                    format!(
                        "group normalisation of the convolutions needs `groups` ({groups}) to \
                         divide every channel count, not {c}"
                    ),
                ));
            }
            let pools = 1usize << channels.len().min(16);
            if image[0] < pools || image[1] < pools {
                p.push(ParamProblem::new(
                    &at("channels"),
                    format!(
                        "{} convolutions halve a {}x{} image {} times: too many for its size",
                        channels.len(),
                        image[0],
                        image[1],
                        channels.len()
                    ),
                ));
            }
        }
    }
}

/// The resolved encoder: its parameters and the input width they were built
/// for. Saved in every model so the network can be rebuilt exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncoderSpec {
    /// The architecture.
    pub params: EncoderParams,
    /// Encoded input features.
    pub input_dim: usize,
    /// A tabular Transformer's tokens: the encoded features of each, in
    /// order (a categorical column's indicators make one token, its
    /// embedding); absent, each feature is a token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<usize>>,
}

impl EncoderSpec {
    /// Checks that the architecture fits `input_dim` features.
    pub fn new(params: EncoderParams, input_dim: usize) -> Result<Self, crate::NeuralError> {
        if input_dim == 0 {
            return Err(crate::NeuralError::data("there are no encoded features"));
        }
        if params.is_sequence() {
            let shape = params
                .sequence
                .unwrap_or(SequenceShape::one_channel(input_dim));
            if shape.channels * shape.length != input_dim {
                return Err(crate::NeuralError::param(
                    "encoder.sequence",
                    format!(
                        "{} channels of {} steps are {} features but the table has {input_dim} \
                         encoded features",
                        shape.channels,
                        shape.length,
                        shape.channels * shape.length
                    ),
                ));
            }
            let mut params = params;
            params.sequence = Some(shape);
            return Ok(EncoderSpec {
                params,
                input_dim,
                tokens: None,
            });
        }
        if params.kind == EncoderKind::Transformer && params.causal {
            return Err(crate::NeuralError::param(
                "encoder.causal",
                "a causal transformer needs `encoder.sequence`: tabular features have no order \
                 to mask",
            ));
        }
        let [h, w] = params.image();
        if params.kind == EncoderKind::Cnn && h * w != input_dim {
            return Err(crate::NeuralError::param(
                "encoder.image",
                format!(
                    "a {h}x{w} image has {} pixels but the table has {input_dim} encoded features",
                    h * w
                ),
            ));
        }
        Ok(EncoderSpec {
            params,
            input_dim,
            tokens: None,
        })
    }

    /// A tabular Transformer's tokens from the encoded width of each input
    /// column (`FeatureEncoder::column_widths`): each column is one token.
    /// Other kinds, sequences, and widths that are all 1 or do not add up
    /// to the input leave the spec as it is.
    pub fn with_tokens(mut self, widths: Vec<usize>) -> Self {
        let tabular = self.params.kind == EncoderKind::Transformer && !self.params.is_sequence();
        if tabular
            && widths.iter().any(|&w| w > 1)
            && widths.iter().sum::<usize>() == self.input_dim
        {
            self.tokens = Some(widths);
        }
        self
    }

    /// The tokens a tabular Transformer makes of a row.
    pub fn token_count(&self) -> usize {
        self.tokens.as_ref().map_or(self.input_dim, Vec::len)
    }

    /// Width of the embedding the encoder outputs.
    pub fn embedding_dim(&self) -> usize {
        let p = &self.params;
        match p.kind == EncoderKind::Rnn && p.bidirectional {
            true => 2 * p.width,
            false => p.width,
        }
    }

    /// The sequence shape of a sequence kind (set by [`EncoderSpec::new`]).
    pub fn sequence(&self) -> SequenceShape {
        self.params
            .sequence
            .unwrap_or(SequenceShape::one_channel(self.input_dim))
    }
}

/// The optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Stochastic gradient descent, with optional (Nesterov) momentum.
    Sgd,
    /// Adam.
    #[default]
    Adam,
    /// Adam with decoupled weight decay (`weight_decay`).
    Adamw,
}

/// Rows per gradient step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum BatchSize {
    /// `full`: every training row in one step per epoch (batch gradient descent).
    Named(FullBatch),
    /// N rows per step (mini-batch); 1 is online gradient descent.
    Rows(usize),
}

/// The word `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FullBatch {
    /// Every row in one batch.
    Full,
}

impl Default for BatchSize {
    fn default() -> Self {
        BatchSize::Rows(128)
    }
}

impl BatchSize {
    /// Rows per batch for `n` training rows.
    pub fn rows(self, n: usize) -> usize {
        match self {
            BatchSize::Named(FullBatch::Full) => n.max(1),
            BatchSize::Rows(b) => b.clamp(1, n.max(1)),
        }
    }
}

/// How the learning rate changes over training (after any warm-up).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The same rate throughout.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` epochs.
    Step {
        /// Epochs between decays.
        every: usize,
        /// Factor per decay (0 < gamma <= 1).
        gamma: f64,
    },
    /// Cosine decay from `lr` to `min_factor * lr` over the training steps.
    Cosine {
        /// Final rate as a fraction of `lr`. Default 0.
        #[serde(default)]
        min_factor: f64,
    },
}

/// The learning-rate factor at `step` (0-based) of `total` steps, with
/// `per_epoch` steps per epoch and a linear warm-up over `warmup` steps.
pub fn lr_factor(
    schedule: Schedule,
    step: usize,
    total: usize,
    per_epoch: usize,
    warmup: usize,
) -> f64 {
    if step < warmup {
        return (step + 1) as f64 / warmup as f64;
    }
    match schedule {
        Schedule::Constant => 1.0,
        Schedule::Step { every, gamma } => {
            let epoch = step / per_epoch.max(1);
            gamma.powi((epoch / every.max(1)) as i32)
        }
        Schedule::Cosine { min_factor } => {
            let span = total.saturating_sub(warmup).max(1) as f64;
            let t = (step - warmup) as f64 / span;
            min_factor + (1.0 - min_factor) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos())
        }
    }
}

/// Optimizer, learning rate and its schedule, clipping: shared by both stages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OptimParams {
    /// `sgd`, `adam` (default) or `adamw`.
    #[serde(default)]
    pub optimizer: OptimizerKind,
    /// Learning rate. Default 0.001.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// `optimizer: sgd` only: momentum (0: plain SGD). Default 0.
    #[serde(default)]
    pub momentum: Option<f64>,
    /// `optimizer: sgd` only: Nesterov momentum (needs `momentum` > 0). Default false.
    #[serde(default)]
    pub nesterov: Option<bool>,
    /// Weight decay, as PyTorch's: `sgd` and `adam` add `weight_decay * w` to
    /// every parameter's gradient (L2), `adamw` decays the weights decoupled
    /// from the gradient. Default (PyTorch's): 0 for `sgd` and `adam`, 0.01
    /// for `adamw`.
    #[serde(default)]
    pub weight_decay: Option<f64>,
    /// Learning-rate schedule after warm-up. Default `{kind: constant}`.
    #[serde(default)]
    pub schedule: Schedule,
    /// Epochs of linear learning-rate warm-up from 0 (fractions allowed). Default 0.
    #[serde(default)]
    pub warmup_epochs: f64,
    /// Rescale the gradient (all parameters together) so that its L2 norm is
    /// at most this. Default: no clipping.
    #[serde(default)]
    pub clip_norm: Option<f64>,
    /// Clamp every gradient element to `[-clip_value, clip_value]`. Default: none.
    #[serde(default)]
    pub clip_value: Option<f64>,
}

fn default_lr() -> f64 {
    1e-3
}

impl Default for OptimParams {
    fn default() -> Self {
        OptimParams {
            optimizer: OptimizerKind::Adam,
            lr: default_lr(),
            momentum: None,
            nesterov: None,
            weight_decay: None,
            schedule: Schedule::Constant,
            warmup_epochs: 0.0,
            clip_norm: None,
            clip_value: None,
        }
    }
}

impl OptimParams {
    /// SGD's momentum (default 0).
    pub fn momentum(&self) -> f64 {
        self.momentum.unwrap_or(0.0)
    }

    /// SGD's Nesterov switch (default false).
    pub fn nesterov(&self) -> bool {
        self.nesterov.unwrap_or(false)
    }

    /// The weight decay, or the optimizer's default: 0 for SGD and Adam,
    /// 0.01 for AdamW (PyTorch's).
    pub fn weight_decay(&self) -> f64 {
        self.weight_decay.unwrap_or(match self.optimizer {
            OptimizerKind::Sgd | OptimizerKind::Adam => 0.0,
            OptimizerKind::Adamw => 0.01,
        })
    }

    /// Every problem, with paths under `prefix` (empty for top level), for
    /// training over `epochs` epochs.
    pub fn check(&self, prefix: &str, epochs: usize, p: &mut Vec<ParamProblem>) {
        let at = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            p.push(ParamProblem::new(
                &at("lr"),
                format!("must be a positive number, got {}", self.lr),
            ));
        }
        if let Some(m) = self.momentum
            && !(0.0..1.0).contains(&m)
        {
            p.push(ParamProblem::new(
                &at("momentum"),
                format!("must be in [0, 1), got {m}"),
            ));
        }
        if self.optimizer != OptimizerKind::Sgd {
            let is = format!("optimizer is {}", word(&self.optimizer));
            for (name, set) in [
                ("momentum", self.momentum.is_some()),
                ("nesterov", self.nesterov.is_some()),
            ] {
                if set {
                    p.push(no_effect(&at(name), "`optimizer: sgd`", &is));
                }
            }
        } else if self.nesterov() && self.momentum() == 0.0 {
            p.push(ParamProblem::new(
                &at("nesterov"),
                "Nesterov momentum needs `momentum` > 0",
            ));
        }
        if let Some(wd) = self.weight_decay
            && !(wd >= 0.0 && wd.is_finite())
        {
            p.push(ParamProblem::new(
                &at("weight_decay"),
                format!("must be a non-negative number, got {wd}"),
            ));
        }
        match self.schedule {
            Schedule::Step { every, gamma } => {
                if every == 0 {
                    p.push(ParamProblem::new(
                        &at("schedule.every"),
                        "must be at least 1",
                    ));
                } else if every >= epochs {
                    p.push(ParamProblem::new(
                        &at("schedule.every"),
                        format!(
                            "the first decay comes after {every} epochs, but training has \
                             {epochs} (`epochs`): the rate would never decay"
                        ),
                    ));
                }
                if !(gamma > 0.0 && gamma <= 1.0) {
                    p.push(ParamProblem::new(
                        &at("schedule.gamma"),
                        format!("must be in (0, 1], got {gamma}"),
                    ));
                }
            }
            Schedule::Cosine { min_factor } if !(0.0..=1.0).contains(&min_factor) => {
                p.push(ParamProblem::new(
                    &at("schedule.min_factor"),
                    format!("must be in [0, 1], got {min_factor}"),
                ));
            }
            _ => {}
        }
        let warmup = self.warmup_epochs;
        if !(warmup >= 0.0 && warmup.is_finite()) {
            p.push(ParamProblem::new(
                &at("warmup_epochs"),
                format!("must be a non-negative number, got {warmup}"),
            ));
        } else if warmup > epochs as f64 {
            p.push(ParamProblem::new(
                &at("warmup_epochs"),
                format!(
                    "a warm-up of {warmup} epochs outlasts training ({epochs} `epochs`): the \
                     rate would never reach `lr`"
                ),
            ));
        } else if warmup >= epochs as f64 && self.schedule != Schedule::Constant {
            p.push(ParamProblem::new(
                &at("schedule"),
                format!(
                    "has no effect: the warm-up (`warmup_epochs`: {warmup}) lasts all {epochs} \
                     `epochs`"
                ),
            ));
        }
        for (name, v) in [
            ("clip_norm", self.clip_norm),
            ("clip_value", self.clip_value),
        ] {
            if let Some(v) = v
                && !(v > 0.0 && v.is_finite())
            {
                p.push(ParamProblem::new(
                    &at(name),
                    format!("must be a positive number, got {v}"),
                ));
            }
        }
        if self.clip_norm.is_some() && self.clip_value.is_some() {
            p.push(ParamProblem::new(
                &at("clip_value"),
                "set `clip_norm` or `clip_value`, not both",
            ));
        }
    }
}

/// The supervised loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LossKind {
    /// Cross-entropy (with `label_smoothing`).
    #[default]
    CrossEntropy,
    /// Focal loss: cross-entropy weighted by `(1 - p)^focal_gamma`.
    Focal,
    /// Generalised cross-entropy `(1 - p_y^q) / q` (robust to label noise).
    Gce,
    /// Symmetric cross-entropy `alpha * CE + beta * reverse CE` (robust to label noise).
    Sce,
}

/// How classes are weighted in the loss.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ClassWeights {
    /// `none` (every class 1) or `balanced` (`n / (k * n_class)`, as scikit-learn).
    Named(ClassWeighting),
    /// A weight per class label (as text); classes not listed get 1.
    Given(std::collections::BTreeMap<String, f64>),
}

/// Named class weightings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeighting {
    /// Every class weighs 1.
    None,
    /// Inverse class frequency.
    Balanced,
}

impl Default for ClassWeights {
    fn default() -> Self {
        ClassWeights::Named(ClassWeighting::None)
    }
}

impl ClassWeights {
    /// One weight per class (`classes` as text, `y` the training labels).
    pub fn resolve(&self, classes: &[String], y: &[u32]) -> Vec<f32> {
        let mut counts = vec![0usize; classes.len()];
        for &l in y {
            counts[l as usize] += 1;
        }
        self.resolve_counts(classes, &counts)
    }

    /// One weight per class, from the training rows' count per class.
    pub fn resolve_counts(&self, classes: &[String], counts: &[usize]) -> Vec<f32> {
        let k = classes.len();
        let rows: usize = counts.iter().sum();
        match self {
            ClassWeights::Named(ClassWeighting::None) => vec![1.0; k],
            ClassWeights::Named(ClassWeighting::Balanced) => {
                let present = counts.iter().filter(|&&c| c > 0).count().max(1);
                counts
                    .iter()
                    .map(|&c| {
                        if c == 0 {
                            1.0
                        } else {
                            (rows as f64 / (present as f64 * c as f64)) as f32
                        }
                    })
                    .collect()
            }
            ClassWeights::Given(map) => classes
                .iter()
                .map(|c| map.get(c).copied().unwrap_or(1.0) as f32)
                .collect(),
        }
    }
}

/// The metric early stopping watches on the `valid` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopMetric {
    /// Validation loss (lower is better).
    #[default]
    ValidLoss,
    /// Validation accuracy (higher is better).
    ValidAccuracy,
}

/// Stop when the validation metric has not improved for `patience` epochs,
/// and keep the best epoch's weights.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// What to watch. Default `valid_loss`.
    #[serde(default)]
    pub metric: StopMetric,
    /// Epochs without improvement before stopping. Default 5.
    #[serde(default = "default_patience")]
    pub patience: usize,
    /// Smallest change that counts as an improvement. Default 0.
    #[serde(default)]
    pub min_delta: f64,
    /// Restore the best epoch's weights at the end. Default true.
    #[serde(default = "default_true")]
    pub restore_best: bool,
}

fn default_patience() -> usize {
    5
}
fn default_true() -> bool {
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn batch_size_reads_full_or_a_number() {
        let full: BatchSize = serde_json::from_value(serde_json::json!("full")).unwrap();
        assert_eq!(full.rows(50), 50);
        let one: BatchSize = serde_json::from_value(serde_json::json!(1)).unwrap();
        assert_eq!(one.rows(50), 1);
        let big: BatchSize = serde_json::from_value(serde_json::json!(500)).unwrap();
        assert_eq!(big.rows(50), 50);
        assert!(serde_json::from_value::<BatchSize>(serde_json::json!("half")).is_err());
    }

    #[test]
    fn schedules_warm_up_then_decay() {
        // 10 epochs of 10 steps, 20 warm-up steps
        assert!((lr_factor(Schedule::Constant, 0, 100, 10, 20) - 0.05).abs() < 1e-12);
        assert_eq!(lr_factor(Schedule::Constant, 19, 100, 10, 20), 1.0);
        assert_eq!(lr_factor(Schedule::Constant, 50, 100, 10, 20), 1.0);
        let step = Schedule::Step {
            every: 2,
            gamma: 0.5,
        };
        assert_eq!(lr_factor(step, 0, 100, 10, 0), 1.0);
        assert_eq!(lr_factor(step, 25, 100, 10, 0), 0.5);
        assert_eq!(lr_factor(step, 45, 100, 10, 0), 0.25);
        let cos = Schedule::Cosine { min_factor: 0.1 };
        assert!((lr_factor(cos, 0, 100, 10, 0) - 1.0).abs() < 1e-12);
        assert!((lr_factor(cos, 50, 100, 10, 0) - 0.55).abs() < 1e-12);
        assert!(lr_factor(cos, 99, 100, 10, 0) < 0.11);
    }

    #[test]
    fn optimizer_problems_are_all_reported() {
        let o = OptimParams {
            lr: -1.0,
            nesterov: Some(true),
            clip_norm: Some(1.0),
            clip_value: Some(0.0),
            ..OptimParams::default()
        };
        let mut p = Vec::new();
        o.check("", 10, &mut p);
        let paths: Vec<String> = p.iter().map(|p| p.path.join(".")).collect();
        assert!(paths.contains(&"lr".to_string()));
        assert!(paths.contains(&"nesterov".to_string()));
        assert_eq!(paths.iter().filter(|p| *p == "clip_value").count(), 2);
    }

    #[test]
    fn encoder_problems_name_their_parameter() {
        let e = EncoderParams {
            width: 30,
            norm: Norm::Group,
            groups: Some(8),
            dropout: 1.0,
            ..EncoderParams::default()
        };
        let mut p = Vec::new();
        e.check("encoder", &mut p);
        let paths: Vec<String> = p.iter().map(|p| p.path.join(".")).collect();
        assert_eq!(paths, vec!["encoder.groups", "encoder.dropout"]);
    }

    /// The problems `check` reports, as (path, message).
    pub(crate) fn problems(check: impl FnOnce(&mut Vec<ParamProblem>)) -> Vec<(String, String)> {
        let mut p = Vec::new();
        check(&mut p);
        listed(Err(p))
    }

    /// A stage's check result as (path, message) pairs (none when it passed).
    pub(crate) fn listed(checked: Result<(), Vec<ParamProblem>>) -> Vec<(String, String)> {
        let p = checked.err().unwrap_or_default();
        p.into_iter()
            .map(|p| (p.path.join("."), p.message))
            .collect()
    }

    /// Asserts that `path` is refused with a message naming `needs` and `is`.
    pub(crate) fn assert_refused(found: &[(String, String)], path: &str, needs: &str, is: &str) {
        let Some((_, msg)) = found.iter().find(|(p, _)| p == path) else {
            panic!("{path} not refused: {found:?}");
        };
        let name = path.rsplit('.').next().unwrap_or(path);
        for want in [
            format!("`{name}` has no effect unless"),
            needs.into(),
            is.into(),
        ] {
            assert!(msg.contains(&want), "{path}: {msg:?} lacks {want:?}");
        }
    }

    #[test]
    fn encoder_parameters_of_another_architecture_are_refused() {
        let e: EncoderParams = serde_json::from_value(serde_json::json!({
            "norm": "layer", "groups": 8, "image": [8, 8], "channels": [4],
            "depth": 1, "residual": true
        }))
        .unwrap();
        let found = problems(|p| e.check("encoder", p));
        assert_refused(&found, "encoder.groups", "`norm: group`", "norm is layer");
        assert_refused(&found, "encoder.image", "`kind: cnn`", "kind is mlp");
        assert_refused(&found, "encoder.channels", "`kind: cnn`", "kind is mlp");
        assert_refused(
            &found,
            "encoder.residual",
            "`depth` is at least 2",
            "depth is 1",
        );
        assert_eq!(found.len(), 4, "{found:?}");
        // under the options they need, the same values are fine
        let ok: EncoderParams = serde_json::from_value(serde_json::json!({
            "kind": "cnn", "norm": "group", "groups": 8, "image": [8, 8], "channels": [8],
            "depth": 2, "residual": true
        }))
        .unwrap();
        assert!(problems(|p| ok.check("encoder", p)).is_empty());
        // the convolutions are normalised too
        let mut odd = ok.clone();
        odd.channels = Some(vec![8, 12]);
        let found = problems(|p| odd.check("encoder", p));
        assert!(
            found.len() == 1 && found[0].1.contains("not 12"),
            "{found:?}"
        );
        assert!(problems(|p| EncoderParams::default().check("encoder", p)).is_empty());
    }

    #[test]
    fn sgd_parameters_under_adam_are_refused_and_weight_decay_defaults_per_optimizer() {
        let o = OptimParams {
            momentum: Some(0.0),
            nesterov: Some(false),
            ..OptimParams::default()
        };
        let found = problems(|p| o.check("", 10, p));
        assert_refused(&found, "momentum", "`optimizer: sgd`", "optimizer is adam");
        assert_refused(&found, "nesterov", "`optimizer: sgd`", "optimizer is adam");
        let sgd = OptimParams {
            optimizer: OptimizerKind::Sgd,
            ..o.clone()
        };
        assert!(problems(|p| sgd.check("", 10, p)).is_empty());
        let decay = |optimizer| {
            OptimParams {
                optimizer,
                ..OptimParams::default()
            }
            .weight_decay()
        };
        assert_eq!(decay(OptimizerKind::Sgd), 0.0);
        assert_eq!(decay(OptimizerKind::Adam), 0.0);
        assert_eq!(decay(OptimizerKind::Adamw), 0.01);
        let given = OptimParams {
            weight_decay: Some(0.5),
            ..OptimParams::default()
        };
        assert_eq!(given.weight_decay(), 0.5);
        assert!(problems(|p| given.check("", 10, p)).is_empty());
    }

    #[test]
    fn schedules_and_warm_ups_that_training_never_reaches_are_refused() {
        let step = OptimParams {
            schedule: Schedule::Step {
                every: 10,
                gamma: 0.5,
            },
            ..OptimParams::default()
        };
        let found = problems(|p| step.check("", 10, p));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "schedule.every");
        assert!(found[0].1.contains("never decay"), "{found:?}");
        assert!(problems(|p| step.check("", 11, p)).is_empty());
        let long = OptimParams {
            warmup_epochs: 5.5,
            ..OptimParams::default()
        };
        let found = problems(|p| long.check("", 5, p));
        assert_eq!(found[0].0, "warmup_epochs");
        assert!(problems(|p| long.check("", 6, p)).is_empty());
        let cosine = OptimParams {
            warmup_epochs: 5.0,
            schedule: Schedule::Cosine { min_factor: 0.0 },
            ..OptimParams::default()
        };
        let found = problems(|p| cosine.check("", 5, p));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "schedule");
        assert!(found[0].1.contains("warmup_epochs"), "{found:?}");
    }

    #[test]
    fn balanced_class_weights_are_inverse_frequency() {
        let classes = vec!["a".to_string(), "b".to_string()];
        let w = ClassWeights::Named(ClassWeighting::Balanced).resolve(&classes, &[0, 0, 0, 1]);
        assert!((w[0] - 4.0 / 6.0).abs() < 1e-6 && (w[1] - 2.0).abs() < 1e-6);
        let given: ClassWeights = serde_json::from_value(serde_json::json!({"b": 3.0})).unwrap();
        assert_eq!(given.resolve(&classes, &[0, 1]), vec![1.0, 3.0]);
    }
}
