//! Supervised training of the classifier network on dense matrices: the
//! engine behind the `train` stage and [`crate::NeuralClassifier`].
//!
//! Each epoch shuffles the rows (seeded), takes one gradient step per batch
//! (the objective: the weighted mean loss, plus `l1 * sum |w|` and
//! `l2 / 2 * sum w^2` over weight matrices), records the epoch (losses,
//! accuracies, gradient norms, learning rate), evaluates the validation rows
//! in inference mode, and applies early stopping.

use std::borrow::Cow;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData, activation};
use gigo_ml::Matrix;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::backend::training_device;
use crate::config::{BatchSize, EarlyStopping, EncoderSpec, Norm, OptimParams, StopMetric};
use crate::diagnose::{EpochRecord, History};
use crate::error::NeuralError;
use crate::loss::LossSpec;
use crate::net::{ClassifierNet, Encoder, device_of, linear};
use crate::stepper::Stepper;
use crate::weights::Weights;

/// The supervised levers (what the `train` stage's parameters resolve to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitSettings {
    /// Optimizer, learning rate, schedule, clipping.
    pub optim: OptimParams,
    /// Passes over the training rows.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: BatchSize,
    /// L1 penalty on weight matrices.
    pub l1: f64,
    /// L2 penalty on weight matrices.
    pub l2: f64,
    /// The loss.
    pub loss: LossSpec,
    /// Early stopping on the validation rows.
    pub early_stopping: Option<EarlyStopping>,
    /// Keep a pretrained encoder fixed (train the head only).
    pub freeze_encoder: bool,
    /// Learning rate of a pretrained encoder (default: `optim.lr`).
    pub encoder_lr: Option<f64>,
    /// Rows the shuffle holds at once (see [`TrainRows`]).
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
}

fn default_shuffle_buffer() -> usize {
    SHUFFLE_BUFFER_ROWS
}

/// Rows per chunk of the grid that a shuffle buffer is filled from (the
/// store's write chunk): fixed, so the order of the rows depends on the
/// table's size and the seed only, never on how it was read.
pub const CHUNK_ROWS: usize = 65_536;

/// Rows a shuffle buffer holds by default (16 chunks).
pub const SHUFFLE_BUFFER_ROWS: usize = 16 * CHUNK_ROWS;

/// Where the encoder's weights come from.
#[derive(Clone)]
pub enum EncoderInit<'a> {
    /// Freshly initialised.
    Fresh(EncoderSpec),
    /// A pretrained encoder's weights.
    Pretrained {
        /// Its architecture.
        spec: EncoderSpec,
        /// Its weights.
        weights: &'a Weights,
    },
}

impl EncoderInit<'_> {
    fn spec(&self) -> &EncoderSpec {
        match self {
            EncoderInit::Fresh(s) | EncoderInit::Pretrained { spec: s, .. } => s,
        }
    }
}

/// The training rows, read a shuffle buffer at a time, so that a table too
/// large to hold trains in epochs read from the store.
///
/// Each epoch's order: when the table has at most a buffer of rows, every
/// labelled row shuffled (seeded); otherwise the table's chunks of
/// [`CHUNK_ROWS`] rows are shuffled, taken a buffer's worth at a time, and the
/// labelled rows of each buffer shuffled. Batches run on across buffers. The
/// order depends on the rows, the buffer and the seed only: a table held in
/// memory and the same table read from the store train identically.
pub trait TrainRows {
    /// Rows of the table, labelled or not (the chunk grid is over these).
    fn table_rows(&self) -> usize;
    /// Labelled rows: the ones trained on.
    fn labelled_rows(&self) -> usize;
    /// Encoded features per row.
    fn cols(&self) -> usize;
    /// The labelled rows of chunks `chunks` (ascending), in table order.
    fn window(&mut self, chunks: &[usize]) -> Result<Window<'_>, NeuralError>;
}

/// Labelled rows of some chunks, encoded.
pub struct Window<'a> {
    /// Features, one row per labelled row.
    pub x: Cow<'a, Matrix>,
    /// Class indices.
    pub y: Cow<'a, [u32]>,
    /// Per-row weights (the table's weight column), if any.
    pub w: Option<Cow<'a, [f32]>>,
}

impl Window<'_> {
    fn rows(&self) -> usize {
        self.y.len()
    }
}

/// Training rows.
pub struct TrainSet<'a> {
    /// Encoded features.
    pub x: &'a Matrix,
    /// Class indices.
    pub y: &'a [u32],
    /// Per-row weights (the table's weight column), if any.
    pub w: Option<&'a [f32]>,
}

impl TrainRows for TrainSet<'_> {
    fn table_rows(&self) -> usize {
        self.x.rows
    }

    fn labelled_rows(&self) -> usize {
        self.x.rows
    }

    fn cols(&self) -> usize {
        self.x.cols
    }

    fn window(&mut self, chunks: &[usize]) -> Result<Window<'_>, NeuralError> {
        let n = self.x.rows;
        if chunks.len() == n.div_ceil(CHUNK_ROWS) {
            return Ok(Window {
                x: Cow::Borrowed(self.x),
                y: Cow::Borrowed(self.y),
                w: self.w.map(Cow::Borrowed),
            });
        }
        let idx: Vec<usize> = chunks
            .iter()
            .flat_map(|&c| c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(n))
            .collect();
        Ok(Window {
            x: Cow::Owned(self.x.select_rows(&idx)),
            y: Cow::Owned(idx.iter().map(|&i| self.y[i]).collect()),
            w: self
                .w
                .map(|w| Cow::Owned(idx.iter().map(|&i| w[i]).collect())),
        })
    }
}

/// A table's encoded rows held in memory, labelled or not.
pub struct TableRows<'a> {
    /// Encoded features of every row.
    pub x: &'a Matrix,
    /// Class indices (`None`: not trained on).
    pub y: &'a [Option<u32>],
    /// Per-row weights, if any.
    pub w: Option<&'a [f32]>,
}

impl TableRows<'_> {
    fn labelled(&self) -> usize {
        self.y.iter().filter(|y| y.is_some()).count()
    }
}

impl TrainRows for TableRows<'_> {
    fn table_rows(&self) -> usize {
        self.x.rows
    }

    fn labelled_rows(&self) -> usize {
        self.labelled()
    }

    fn cols(&self) -> usize {
        self.x.cols
    }

    fn window(&mut self, chunks: &[usize]) -> Result<Window<'_>, NeuralError> {
        let n = self.x.rows;
        let idx: Vec<usize> = chunks
            .iter()
            .flat_map(|&c| c * CHUNK_ROWS..((c + 1) * CHUNK_ROWS).min(n))
            .filter(|&i| self.y[i].is_some())
            .collect();
        Ok(Window {
            x: Cow::Owned(self.x.select_rows(&idx)),
            y: Cow::Owned(idx.iter().filter_map(|&i| self.y[i]).collect()),
            w: self
                .w
                .map(|w| Cow::Owned(idx.iter().map(|&i| w[i]).collect())),
        })
    }
}

/// One batch of training rows, copied out of the shuffle buffer.
pub(crate) struct Batch {
    /// Features, `rows x cols`, row-major.
    pub x: Vec<f32>,
    /// Class indices.
    pub y: Vec<u32>,
    /// Per-row weights (the table's weight column), if any.
    pub w: Vec<Option<f32>>,
}

impl Batch {
    fn new() -> Self {
        Batch {
            x: Vec::new(),
            y: Vec::new(),
            w: Vec::new(),
        }
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    fn row(&self, i: usize, cols: usize) -> (&[f32], u32, Option<f32>) {
        (&self.x[i * cols..(i + 1) * cols], self.y[i], self.w[i])
    }

    fn push(&mut self, x: &[f32], y: u32, w: Option<f32>) {
        self.x.extend_from_slice(x);
        self.y.push(y);
        self.w.push(w);
    }
}

/// The epochs' batches of the rows of a [`TrainRows`], in the order its
/// documentation gives: the driver of supervised training and of
/// pretraining, so both read tables larger than memory the same way. Pull
/// batches with [`Shuffled::next_batch`] after [`Shuffled::begin_epoch`];
/// the generator is drawn from in the same order whether the rows are kept
/// or read a buffer at a time.
pub(crate) struct Shuffled<'a> {
    /// Where buffers are read from (`None`: the rows fit one and are kept).
    source: Option<&'a mut dyn TrainRows>,
    /// The kept rows, or the buffer read last.
    current: Window<'a>,
    cols: usize,
    bs: usize,
    per_buffer: usize,
    /// Skip a batch of one row (batch normalisation has no statistics).
    skip_single: bool,
    chunk_order: Vec<usize>,
    /// This epoch's buffers (chunk indices, ascending); one empty buffer
    /// when the rows are kept.
    buffers: Vec<Vec<usize>>,
    /// The next buffer to read.
    next_buffer: usize,
    /// The rows of the buffer (kept or read) in this epoch's order.
    order: Vec<usize>,
    /// Rows held over from the last buffer, short of a batch.
    carry: Batch,
    /// Position in carry-then-order, and the end of whole batches.
    pos: usize,
    full: usize,
    loaded: bool,
}

/// A window that owns its rows (a buffer read is owned already).
fn owned(w: Window<'_>) -> Window<'static> {
    Window {
        x: Cow::Owned(w.x.into_owned()),
        y: Cow::Owned(w.y.into_owned()),
        w: w.w.map(|w| Cow::Owned(w.into_owned())),
    }
}

impl<'a> Shuffled<'a> {
    /// Batches of `bs` rows of `train` through a shuffle buffer of
    /// `shuffle_buffer` rows; the rows are read once and kept when they fit
    /// one buffer.
    pub fn new(
        train: &'a mut dyn TrainRows,
        bs: usize,
        shuffle_buffer: usize,
        skip_single: bool,
    ) -> Result<Self, NeuralError> {
        let chunks = train.table_rows().div_ceil(CHUNK_ROWS);
        let per_buffer = (shuffle_buffer / CHUNK_ROWS).max(1);
        let whole = chunks <= per_buffer;
        if !whole && bs > per_buffer * CHUNK_ROWS {
            return Err(NeuralError::param(
                "batch_size",
                format!(
                    "a batch of {bs} rows is larger than the shuffle buffer ({} rows) that this \
                     table of {} rows is read through; use mini-batches, or a larger `shuffle_buffer`",
                    per_buffer * CHUNK_ROWS,
                    train.table_rows()
                ),
            ));
        }
        let cols = train.cols();
        let all: Vec<usize> = (0..chunks).collect();
        let (source, current) = if whole {
            (None, train.window(&all)?)
        } else {
            let empty = Window {
                x: Cow::Owned(Matrix::zeros(0, cols)),
                y: Cow::Owned(Vec::new()),
                w: None,
            };
            (Some(train), empty)
        };
        let order = match source {
            None => (0..current.rows()).collect(),
            Some(_) => Vec::new(),
        };
        Ok(Shuffled {
            source,
            current,
            cols,
            bs,
            per_buffer,
            skip_single,
            chunk_order: all,
            buffers: Vec::new(),
            next_buffer: 0,
            order,
            carry: Batch::new(),
            pos: 0,
            full: 0,
            loaded: false,
        })
    }

    /// The rows, when they fit one buffer and are kept.
    pub fn kept(&self) -> Option<&Window<'a>> {
        self.source.is_none().then_some(&self.current)
    }

    /// Starts an epoch: shuffles the kept rows, or the chunks into buffers.
    pub fn begin_epoch(&mut self, rng: &mut ChaCha8Rng) {
        self.buffers = match &self.source {
            None => {
                self.order.shuffle(rng);
                vec![Vec::new()]
            }
            Some(_) => {
                self.chunk_order.shuffle(rng);
                self.chunk_order
                    .chunks(self.per_buffer)
                    .map(|c| {
                        let mut c = c.to_vec();
                        c.sort_unstable();
                        c
                    })
                    .collect()
            }
        };
        self.next_buffer = 0;
        self.carry = Batch::new();
        self.loaded = false;
    }

    /// The rows of the buffer the last batch came from (kept or read): the
    /// pool that swap noise draws its values from.
    pub fn pool(&self) -> &Matrix {
        &self.current.x
    }

    /// Rows of the buffer with the carry.
    fn total(&self) -> usize {
        self.carry.rows() + self.order.len()
    }

    fn row(&self, i: usize) -> (&[f32], u32, Option<f32>) {
        if i < self.carry.rows() {
            self.carry.row(i, self.cols)
        } else {
            let win = &self.current;
            let j = self.order[i - self.carry.rows()];
            (win.x.row(j), win.y[j], win.w.as_ref().map(|w| w[j]))
        }
    }

    /// The epoch's next batch; `None` once every row was served. Batches
    /// run on across buffers; the epoch's last batch may be short.
    pub fn next_batch(&mut self, rng: &mut ChaCha8Rng) -> Result<Option<Batch>, NeuralError> {
        loop {
            if !self.loaded {
                if self.next_buffer == self.buffers.len() {
                    return Ok(None);
                }
                let b = self.next_buffer;
                if let Some(train) = &mut self.source {
                    self.current = owned(train.window(&self.buffers[b])?);
                    self.order = (0..self.current.rows()).collect();
                    self.order.shuffle(rng);
                }
                let total = self.total();
                self.full = if b + 1 == self.buffers.len() {
                    total
                } else {
                    total / self.bs * self.bs
                };
                self.pos = 0;
                self.loaded = true;
            }
            if self.pos < self.full {
                let (start, end) = (self.pos, (self.pos + self.bs).min(self.full));
                self.pos = end;
                if end - start < 2 && self.bs >= 2 && self.skip_single {
                    continue; // a last batch of one row has no batch statistics
                }
                let mut batch = Batch::new();
                for i in start..end {
                    let (x, y, w) = self.row(i);
                    batch.push(x, y, w);
                }
                return Ok(Some(batch));
            }
            // the buffer is spent: hold its rest over, short of a batch
            let mut carry = Batch::new();
            for i in self.full..self.total() {
                let (x, y, w) = self.row(i);
                carry.push(x, y, w);
            }
            self.carry = carry;
            self.next_buffer += 1;
            self.loaded = false;
        }
    }
}

/// Rows to evaluate: labels may be missing or of a class unseen in training
/// (`None`): such rows count as wrong and do not enter the loss.
pub struct EvalSet<'a> {
    /// Encoded features.
    pub x: &'a Matrix,
    /// Class indices.
    pub y: &'a [Option<u32>],
    /// Per-row weights, if any.
    pub w: Option<&'a [f32]>,
}

/// Rows scored after every epoch (the validation rows): held, or read from
/// a table in batches each time.
pub trait EvalRows {
    /// Pushes every row, in order, into `scorer`.
    fn score_into(&mut self, scorer: &mut Scorer) -> Result<(), NeuralError>;
}

impl EvalRows for EvalSet<'_> {
    fn score_into(&mut self, scorer: &mut Scorer) -> Result<(), NeuralError> {
        for i in 0..self.x.rows {
            scorer.push(self.x.row(i), self.y[i], self.w.map(|w| w[i]))?;
        }
        Ok(())
    }
}

/// A trained classifier: architecture, classes and weights (inference mode).
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The encoder's architecture.
    pub spec: EncoderSpec,
    /// Output classes.
    pub n_classes: usize,
    /// Weights of [`ClassifierNet`], in visiting order.
    pub weights: Weights,
}

/// How training went.
#[derive(Debug, Clone)]
pub struct FitReport {
    /// Every epoch.
    pub history: History,
    /// Gradient steps taken.
    pub updates: usize,
    /// Epoch (1-based) whose weights were kept by early stopping.
    pub kept_epoch: Option<usize>,
    /// Whether early stopping ended training before `epochs`.
    pub stopped_early: bool,
    /// Whether training stopped on a NaN / infinite loss or gradient.
    pub diverged: bool,
    /// Wall time of training.
    pub seconds: f64,
    /// Trainable scalars in the network.
    pub parameters: usize,
}

/// Rows of `x` at `idx` as a `[rows, cols]` tensor on `device`.
pub fn rows_tensor(x: &Matrix, idx: &[usize], device: &Device) -> Tensor<2> {
    let mut data = Vec::with_capacity(idx.len() * x.cols);
    for &i in idx {
        data.extend_from_slice(x.row(i));
    }
    Tensor::from_data(TensorData::new(data, [idx.len(), x.cols]), device)
}

pub(crate) fn onehot(
    labels: impl Iterator<Item = Option<u32>>,
    k: usize,
    device: &Device,
) -> Tensor<2> {
    let mut data = Vec::new();
    let mut rows = 0;
    for l in labels {
        let start = data.len();
        data.resize(start + k, 0.0f32);
        if let Some(l) = l {
            data[start + l as usize] = 1.0;
        }
        rows += 1;
    }
    Tensor::from_data(TensorData::new(data, [rows, k]), device)
}

/// Weights summing to 1 over the rows (all zero stays zero).
fn normalised(w: Vec<f32>, device: &Device) -> Tensor<1> {
    let sum: f64 = w.iter().map(|&v| v as f64).sum();
    let n = w.len();
    let k = if sum > 0.0 { 1.0 / sum } else { 0.0 };
    let data: Vec<f32> = w.into_iter().map(|v| (v as f64 * k) as f32).collect();
    Tensor::from_data(TensorData::new(data, [n]), device)
}

fn read_argmax(logits: Tensor<2>) -> Result<Vec<i64>, NeuralError> {
    logits
        .argmax(1)
        .try_into_vec_as::<i64>()
        .map_err(|e| NeuralError::internal(format!("reading predictions: {e:?}")))
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

impl Fitted {
    /// The network in inference mode on the default device.
    pub fn net(&self) -> Result<ClassifierNet, NeuralError> {
        self.net_on(&training_device().without_autodiff())
    }

    /// The network on `device` (the training device when gradients are
    /// wanted, e.g. for adversarial inputs).
    pub fn net_on(&self, device: &Device) -> Result<ClassifierNet, NeuralError> {
        let device = device.clone();
        let mut rng = ChaCha8Rng::seed_from_u64(0); // overwritten by the weights
        let net = ClassifierNet {
            encoder: Encoder::new(&self.spec, &device, &mut rng),
            head: linear(self.spec.embedding_dim(), self.n_classes, &device, &mut rng),
        };
        self.weights.load_into(net)
    }

    /// Class probabilities of every row of `x`.
    pub fn predict_proba(&self, x: &Matrix) -> Result<Matrix, NeuralError> {
        if x.cols != self.spec.input_dim {
            return Err(NeuralError::data(format!(
                "the model was trained on {} encoded features, these rows have {}",
                self.spec.input_dim, x.cols
            )));
        }
        let net = self.net()?;
        predict(&net, x, self.n_classes)
    }
}

/// Probabilities from an inference-mode network, in chunks.
pub fn predict(net: &ClassifierNet, x: &Matrix, k: usize) -> Result<Matrix, NeuralError> {
    let device = device_of(net);
    let mut out = Vec::with_capacity(x.rows * k);
    let all: Vec<usize> = (0..x.rows).collect();
    for chunk in all.chunks(4096) {
        let p = activation::softmax(net.forward(rows_tensor(x, chunk, &device), None), 1);
        out.extend(
            p.try_into_vec_as::<f32>()
                .map_err(|e| NeuralError::internal(format!("reading probabilities: {e:?}")))?,
        );
    }
    Ok(Matrix::new(x.rows, k, out))
}

/// Loss and accuracy of an inference-mode network on `set`.
pub fn evaluate(
    net: &ClassifierNet,
    set: &mut dyn EvalRows,
    k: usize,
    loss: &LossSpec,
    class_weights: &[f32],
) -> Result<(Option<f64>, f64), NeuralError> {
    let mut scorer = Scorer::new(net, k, loss, class_weights);
    set.score_into(&mut scorer)?;
    scorer.finish()
}

/// Loss and accuracy of an inference-mode network, rows pushed one at a
/// time (a table read in batches) and scored in chunks of a fixed size, so
/// that the figures do not depend on how the rows arrived. A row without a
/// label (or of a class unseen in training) counts as wrong and does not
/// enter the loss, which is the weighted mean over the other rows.
pub struct Scorer<'a> {
    net: &'a ClassifierNet,
    k: usize,
    loss: &'a LossSpec,
    class_weights: &'a [f32],
    device: Device,
    x: Vec<f32>,
    y: Vec<Option<u32>>,
    w: Vec<f32>,
    rows: usize,
    correct: usize,
    loss_sum: f64,
    weight_sum: f64,
}

/// Rows a [`Scorer`] scores at once.
const SCORE_ROWS: usize = 4096;

impl<'a> Scorer<'a> {
    /// A scorer of `net` for `k` classes.
    pub fn new(
        net: &'a ClassifierNet,
        k: usize,
        loss: &'a LossSpec,
        class_weights: &'a [f32],
    ) -> Self {
        Scorer {
            net,
            k,
            loss,
            class_weights,
            device: device_of(net),
            x: Vec::new(),
            y: Vec::new(),
            w: Vec::new(),
            rows: 0,
            correct: 0,
            loss_sum: 0.0,
            weight_sum: 0.0,
        }
    }

    /// Takes the next row: its features, label and sample weight.
    pub fn push(&mut self, x: &[f32], y: Option<u32>, w: Option<f32>) -> Result<(), NeuralError> {
        let weight = row_weight(y, w, self.class_weights);
        self.x.extend_from_slice(x);
        self.y.push(y);
        self.w.push(weight as f32);
        self.weight_sum += weight;
        if self.y.len() == SCORE_ROWS {
            self.score()?;
        }
        Ok(())
    }

    fn score(&mut self) -> Result<(), NeuralError> {
        let n = self.y.len();
        if n == 0 {
            return Ok(());
        }
        let cols = self.x.len() / n;
        let x = Tensor::from_data(
            TensorData::new(std::mem::take(&mut self.x), [n, cols]),
            &self.device,
        );
        let logits = self.net.forward(x, None);
        let pred = read_argmax(logits.clone())?;
        self.correct += self
            .y
            .iter()
            .zip(&pred)
            .filter(|(y, p)| y.is_some_and(|y| y as i64 == **p))
            .count();
        if self.w.iter().any(|&w| w > 0.0) {
            let wt = Tensor::from_data(
                TensorData::new(std::mem::take(&mut self.w), [n]),
                &self.device,
            );
            let q = onehot(self.y.iter().copied(), self.k, &self.device);
            self.loss_sum += scalar(self.loss.weighted(logits, q, wt));
        }
        self.rows += n;
        self.y.clear();
        self.w.clear();
        Ok(())
    }

    /// The loss (`None` when no row has weight) and the accuracy.
    pub fn finish(mut self) -> Result<(Option<f64>, f64), NeuralError> {
        self.score()?;
        let acc = self.correct as f64 / self.rows.max(1) as f64;
        let loss = (self.weight_sum > 0.0).then(|| self.loss_sum / self.weight_sum);
        Ok((loss, acc))
    }
}

fn row_weight(y: Option<u32>, w: Option<f32>, class_weights: &[f32]) -> f64 {
    match y {
        Some(y) => class_weights[y as usize] as f64 * w.map_or(1.0, |w| w as f64),
        None => 0.0,
    }
}

/// Checks that do not need data: levers that cannot work together.
pub fn check_settings(s: &FitSettings, spec: &EncoderSpec, rows: usize) -> Result<(), NeuralError> {
    if spec.params.norm == Norm::Batch && s.batch_size.rows(rows) < 2 {
        return Err(NeuralError::param(
            "batch_size",
            "batch normalisation needs at least 2 rows per batch (use `norm: layer` for online training)",
        ));
    }
    Ok(())
}

/// Trains a classifier. `on_epoch` sees every epoch as it ends (progress).
#[allow(clippy::too_many_arguments)]
pub fn fit(
    s: &FitSettings,
    init: EncoderInit,
    n_classes: usize,
    class_weights: &[f32],
    train: &mut dyn TrainRows,
    mut valid: Option<&mut dyn EvalRows>,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<(Fitted, FitReport), NeuralError> {
    let started = Instant::now();
    let n = train.labelled_rows();
    if n == 0 {
        return Err(NeuralError::data("there are no labelled training rows"));
    }
    if class_weights.len() != n_classes {
        return Err(NeuralError::internal("one class weight per class expected"));
    }
    let spec = init.spec().clone();
    let cols = train.cols();
    if cols != spec.input_dim {
        return Err(NeuralError::data(format!(
            "the encoder takes {} features, the training rows have {}",
            spec.input_dim, cols
        )));
    }
    check_settings(s, &spec, n)?;
    if s.early_stopping.is_some() && valid.is_none() {
        return Err(NeuralError::param(
            "early_stopping",
            "needs validation rows: connect a `valid` input",
        ));
    }
    let bs = s.batch_size.rows(n);
    // a table that fits one buffer is read once and kept
    let mut batches = Shuffled::new(train, bs, s.shuffle_buffer, spec.params.norm == Norm::Batch)?;
    let device = training_device();
    device.seed(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let encoder = Encoder::new(&spec, &device, &mut rng);
    let encoder = match &init {
        EncoderInit::Fresh(_) => encoder,
        EncoderInit::Pretrained { weights, .. } => weights.load_into(encoder)?,
    };
    let encoder = if s.freeze_encoder {
        encoder.freeze()
    } else {
        encoder
    };
    let mut net = ClassifierNet {
        encoder,
        head: linear(spec.embedding_dim(), n_classes, &device, &mut rng),
    };
    let parameters = net.num_params();

    let per_epoch = n.div_ceil(bs);
    let mut stepper = Stepper::new(&s.optim, &net, net.layer_weights(), per_epoch, s.epochs);
    let enc_mult = s.encoder_lr.map_or(1.0, |lr| lr / s.optim.lr);
    let row_weight = |y: u32, w: Option<f32>| class_weights[y as usize] * w.unwrap_or(1.0);

    let mut history = History {
        layers: stepper.layer_names(),
        epochs: Vec::new(),
    };
    if let Some(win) = batches.kept()
        && (0..win.rows()).all(|i| row_weight(win.y[i], win.w.as_ref().map(|w| w[i])) == 0.0)
    {
        return Err(NeuralError::data("every training row has weight 0"));
    }
    let mut best: Option<(f64, usize, Weights)> = None;
    let mut since_best = 0;
    let (mut stopped_early, mut diverged) = (false, false);
    for epoch in 1..=s.epochs {
        let lr = stepper.lr();
        let (mut loss_sum, mut w_sum, mut correct) = (0.0, 0.0, 0usize);
        batches.begin_epoch(&mut rng);
        while let Some(batch) = batches.next_batch(&mut rng)? {
            let rows = batch.rows();
            let bw: Vec<f32> = (0..rows)
                .map(|i| row_weight(batch.y[i], batch.w[i]))
                .collect();
            let x = Tensor::from_data(TensorData::new(batch.x, [rows, cols]), &device);
            let q = onehot(batch.y.iter().map(|&y| Some(y)), n_classes, &device);
            let batch_w: f64 = bw.iter().map(|&v| v as f64).sum();
            let wt = normalised(bw, &device);
            let logits = net.forward(x, Some(&mut rng));
            let data_loss = s.loss.weighted(logits.clone(), q, wt);
            let mut objective = data_loss.clone();
            if s.l1 > 0.0 || s.l2 > 0.0 {
                for w in net.penalised() {
                    if s.l1 > 0.0 {
                        objective = objective + w.clone().abs().sum().mul_scalar(s.l1);
                    }
                    if s.l2 > 0.0 {
                        objective = objective + w.square().sum().mul_scalar(s.l2 / 2.0);
                    }
                }
            }
            let mut grads = objective.backward();
            let g_enc = GradientsParams::from_module(&mut grads, &net.encoder);
            let g_head = GradientsParams::from_module(&mut grads, &net.head);
            let (next, stats) = stepper.step(net, vec![(g_enc, enc_mult), (g_head, 1.0)]);
            net = next;
            let value = scalar(data_loss);
            if !stats.finite || !value.is_finite() {
                diverged = true;
                break;
            }
            loss_sum += value * batch_w;
            w_sum += batch_w;
            let pred = read_argmax(logits)?;
            correct += batch
                .y
                .iter()
                .zip(&pred)
                .filter(|(y, p)| **y as i64 == **p)
                .count();
        }
        if epoch == 1 && !diverged && w_sum == 0.0 {
            return Err(NeuralError::data("every training row has weight 0"));
        }
        let grads = stepper.take_epoch();
        let steps = grads.steps;
        let mut rec = EpochRecord {
            epoch,
            lr,
            steps,
            train_loss: if diverged {
                f64::NAN
            } else {
                loss_sum / w_sum.max(f64::MIN_POSITIVE)
            },
            train_accuracy: Some(correct as f64 / n as f64),
            valid_loss: None,
            valid_accuracy: None,
            grad_norms: grads
                .layer_sums
                .iter()
                .map(|s| s / steps.max(1) as f64)
                .collect(),
            grad_norm_mean: grads.total_sum / steps.max(1) as f64,
            grad_norm_max: grads.total_max,
            clipped_norm_max: grads.clipped_max,
            components: Default::default(),
            non_finite: diverged || grads.non_finite,
        };
        if let Some(v) = valid.as_deref_mut()
            && !diverged
        {
            let (vl, va) = evaluate(&net.valid(), v, n_classes, &s.loss, class_weights)?;
            rec.valid_loss = vl;
            rec.valid_accuracy = Some(va);
        }
        on_epoch(&rec);
        let monitored = s.early_stopping.and_then(|es| {
            let v = match es.metric {
                StopMetric::ValidLoss => rec.valid_loss,
                StopMetric::ValidAccuracy => rec.valid_accuracy.map(|a| -a),
            }?;
            Some((es, v))
        });
        history.epochs.push(rec);
        if diverged {
            break;
        }
        if let Some((es, v)) = monitored {
            let improved = best.as_ref().is_none_or(|(b, _, _)| v < b - es.min_delta);
            if improved {
                let snapshot = if es.restore_best {
                    Weights::of(&net.valid())?
                } else {
                    Weights::default()
                };
                best = Some((v, epoch, snapshot));
                since_best = 0;
            } else {
                since_best += 1;
                if since_best >= es.patience {
                    stopped_early = epoch < s.epochs;
                    break;
                }
            }
        }
    }
    let final_net = net.valid();
    let mut kept_epoch = None;
    let weights = match (s.early_stopping, best) {
        (Some(es), Some((_, epoch, snapshot))) if es.restore_best => {
            kept_epoch = Some(epoch);
            snapshot
        }
        _ => Weights::of(&final_net)?,
    };
    Ok((
        Fitted {
            spec,
            n_classes,
            weights,
        },
        FitReport {
            history,
            updates: stepper.updates(),
            kept_epoch,
            stopped_early,
            diverged,
            seconds: started.elapsed().as_secs_f64(),
            parameters,
        },
    ))
}
