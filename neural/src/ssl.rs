//! Self-supervised pretraining of the encoder on unlabelled rows: the engine
//! behind the `pretrain` stage.
//!
//! - `dae`, a denoising autoencoder: corrupt the row (Gaussian noise, or swap
//!   noise: each feature replaced with probability `corruption` by the same
//!   feature of a random row), encode, reconstruct the clean row (MSE).
//! - `vime` (Yoon et al. 2020): corrupt with a random mask and values from
//!   the empirical marginals (swap), encode, then reconstruct the clean row
//!   (MSE) and estimate the mask (binary cross-entropy, weight `mask_weight`).
//! - `scarf` (Bahri et al. 2022): a corrupted view of each row (swap), both
//!   views through the encoder and a two-layer projection head, InfoNCE
//!   between them over the batch (temperature `temperature`, symmetric).
//!
//! Noise, masks and the rows swapped in are drawn on the host from the seeded
//! generator, so pretraining is reproducible.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData, activation};
use gigo_ml::Matrix;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::backend::training_device;
use crate::config::{BatchSize, EncoderSpec, Norm, OptimParams};
use crate::diagnose::{EpochRecord, History};
use crate::error::NeuralError;
use crate::fit::{SHUFFLE_BUFFER_ROWS, Shuffled, TrainRows, TrainSet, rows_tensor};
use crate::net::{Encoder, PretrainNet, device_of, linear};
use crate::sequence::per_step_map;
use crate::stepper::Stepper;
use crate::weights::Weights;

/// The self-supervised objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Denoising autoencoder.
    #[default]
    Dae,
    /// Masked-feature reconstruction with mask estimation.
    Vime,
    /// Contrastive learning with random feature corruption (InfoNCE).
    Scarf,
    /// Sequences, causal and autoregressive: a decoder network predicts
    /// each step `x_{t+1}` from the encoder's state at `t`, which has seen
    /// `x_<=t` only (`tcn`, a one-way `rnn`, or a `transformer` with
    /// `causal: true`).
    NextStep,
    /// Sequences, non-causal: steps are masked (set to their channel's
    /// mean, 0) with probability `corruption`, and a decoder network
    /// rebuilds them from the encoder's state there, which sees both sides
    /// when the encoder does (a bidirectional `rnn`, a `transformer`).
    Masked,
}

impl Method {
    /// Whether the method reads sequences (and needs a sequence encoder).
    pub fn is_sequence(self) -> bool {
        matches!(self, Method::NextStep | Method::Masked)
    }
}

/// The denoising autoencoder's corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Noise {
    /// Add `N(0, noise_std^2)` to every (standardised) feature.
    Gaussian,
    /// Replace each feature with probability `corruption` by the same feature
    /// of a random row.
    #[default]
    Swap,
}

/// The pretraining levers (what the `pretrain` stage's parameters resolve to).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainSettings {
    /// The objective.
    pub method: Method,
    /// DAE's corruption.
    pub noise: Noise,
    /// Gaussian noise's standard deviation.
    pub noise_std: f64,
    /// Probability that a feature is corrupted (swap, VIME, SCARF).
    pub corruption: f64,
    /// VIME: weight of the mask-estimation loss.
    pub mask_weight: f64,
    /// SCARF: InfoNCE temperature.
    pub temperature: f64,
    /// SCARF: output width of the projection head.
    pub projection_dim: usize,
    /// Optimizer, learning rate, schedule, clipping.
    pub optim: OptimParams,
    /// Passes over the rows.
    pub epochs: usize,
    /// Rows per step.
    pub batch_size: BatchSize,
    /// Rows the shuffle holds at once (see [`TrainRows`]).
    #[serde(default = "default_shuffle_buffer")]
    pub shuffle_buffer: usize,
}

fn default_shuffle_buffer() -> usize {
    SHUFFLE_BUFFER_ROWS
}

/// How pretraining went.
#[derive(Debug, Clone)]
pub struct PretrainReport {
    /// Every epoch (components: `reconstruction`, `mask`, `contrastive`).
    pub history: History,
    /// Gradient steps taken.
    pub updates: usize,
    /// Whether training stopped on a NaN / infinite loss or gradient.
    pub diverged: bool,
    /// Wall time.
    pub seconds: f64,
    /// Trainable scalars (encoder and heads).
    pub parameters: usize,
}

/// A corrupted copy of the batch's rows `clean` (row-major, `pool.cols`
/// wide): each feature replaced with probability `p` by the same feature of
/// a uniformly drawn row of `pool` (the rows the shuffle holds: every row
/// when they fit one buffer). Returns the values and the mask (1 where
/// replaced).
fn swap_corrupt(
    clean: &[f32],
    pool: &Matrix,
    p: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<f32>, Vec<f32>) {
    let mut values = Vec::with_capacity(clean.len());
    let mut mask = Vec::with_capacity(clean.len());
    for row in clean.chunks(pool.cols) {
        for (j, &v) in row.iter().enumerate() {
            if rng.random::<f64>() < p {
                let r = rng.random_range(0..pool.rows);
                values.push(pool.get(r, j));
                mask.push(1.0);
            } else {
                values.push(v);
                mask.push(0.0);
            }
        }
    }
    (values, mask)
}

fn gaussian_corrupt(clean: &[f32], std: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    clean
        .iter()
        .map(|&v| {
            let z: f64 = StandardNormal.sample(rng);
            v + (std * z) as f32
        })
        .collect()
}

/// Rows scaled to unit L2 norm.
fn unit_rows(z: Tensor<2>) -> Tensor<2> {
    let norm = z.clone().square().sum_dim(1).add_scalar(1e-12).sqrt();
    z / norm
}

fn scalar(t: Tensor<1>) -> f64 {
    t.into_scalar::<f32>() as f64
}

/// Pretrains an encoder of architecture `spec` on the rows of `x` (labels
/// unused). Returns the encoder's weights.
pub fn pretrain(
    s: &PretrainSettings,
    spec: &EncoderSpec,
    x: &Matrix,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<(Weights, PretrainReport), NeuralError> {
    let y = vec![0; x.rows];
    let mut rows = TrainSet { x, y: &y, w: None };
    pretrain_rows(s, spec, &mut rows, seed, on_epoch)
}

/// [`pretrain`] on rows read a shuffle buffer at a time (their labels and
/// weights unused): a table larger than memory pretrains in epochs read
/// from the store, and a table that fits one buffer exactly as [`pretrain`].
pub fn pretrain_rows(
    s: &PretrainSettings,
    spec: &EncoderSpec,
    rows: &mut dyn TrainRows,
    seed: u64,
    on_epoch: &mut dyn FnMut(&EpochRecord),
) -> Result<(Weights, PretrainReport), NeuralError> {
    let started = Instant::now();
    let n = rows.labelled_rows();
    if n < 2 {
        return Err(NeuralError::data(format!(
            "pretraining needs at least 2 rows, got {n}"
        )));
    }
    if rows.cols() != spec.input_dim {
        return Err(NeuralError::internal(
            "feature width differs from the encoder's",
        ));
    }
    let bs = s.batch_size.rows(n);
    if bs < 2 && (s.method == Method::Scarf || spec.params.norm == Norm::Batch) {
        return Err(NeuralError::param(
            "batch_size",
            "SCARF (negatives come from the batch) and batch normalisation need at least 2 rows per batch",
        ));
    }
    let mut batches = Shuffled::new(rows, bs, s.shuffle_buffer, spec.params.norm == Norm::Batch)?;
    let device = training_device();
    device.seed(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = spec.input_dim;
    let w = spec.embedding_dim();
    if s.method.is_sequence()
        && let Some(why) = sequence_encoder_problem(s.method, &spec.params, true)
    {
        return Err(NeuralError::param("method", why));
    }
    let encoder = Encoder::new(spec, &device, &mut rng);
    let channels = spec.sequence().channels;
    let mut net = PretrainNet {
        encoder,
        reconstruct: matches!(s.method, Method::Dae | Method::Vime)
            .then(|| linear(w, d, &device, &mut rng)),
        decoder: if s.method.is_sequence() {
            // a real network: width units, then the step's channels
            vec![
                linear(w, spec.params.width, &device, &mut rng),
                linear(spec.params.width, channels, &device, &mut rng),
            ]
        } else {
            Vec::new()
        },
        mask: (s.method == Method::Vime).then(|| linear(w, d, &device, &mut rng)),
        projection: if s.method == Method::Scarf {
            vec![
                linear(w, w, &device, &mut rng),
                linear(w, s.projection_dim, &device, &mut rng),
            ]
        } else {
            Vec::new()
        },
    };
    let parameters = net.num_params();
    let per_epoch = n.div_ceil(bs);
    let mut stepper = Stepper::new(&s.optim, &net, net.layer_weights(), per_epoch, s.epochs);
    let mut history = History {
        layers: stepper.layer_names(),
        epochs: Vec::new(),
    };
    let mut diverged = false;
    for epoch in 1..=s.epochs {
        batches.begin_epoch(&mut rng);
        let lr = stepper.lr();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        let mut total = 0.0;
        let mut rows = 0usize;
        while let Some(batch) = batches.next_batch(&mut rng)? {
            let b = batch.rows();
            let (loss, parts) = objective(s, &net, &batch.x, batches.pool(), &device, &mut rng);
            let mut grads = loss.backward();
            let g = GradientsParams::from_module(&mut grads, &net);
            let (next, stats) = stepper.step(net, vec![(g, 1.0)]);
            net = next;
            let value = scalar(loss);
            if !stats.finite || !value.is_finite() {
                diverged = true;
                break;
            }
            total += value * b as f64;
            for (name, t) in parts {
                *sums.entry(name.into()).or_default() += scalar(t) * b as f64;
            }
            rows += b;
        }
        let grads = stepper.take_epoch();
        let steps = grads.steps.max(1) as f64;
        let rows = rows.max(1) as f64;
        let rec = EpochRecord {
            epoch,
            lr,
            steps: grads.steps,
            train_loss: if diverged { f64::NAN } else { total / rows },
            train_accuracy: None,
            valid_loss: None,
            valid_accuracy: None,
            grad_norms: grads.layer_sums.iter().map(|v| v / steps).collect(),
            grad_norm_mean: grads.total_sum / steps,
            grad_norm_max: grads.total_max,
            clipped_norm_max: grads.clipped_max,
            components: if sums.len() > 1 {
                sums.into_iter().map(|(k, v)| (k, v / rows)).collect()
            } else {
                BTreeMap::new()
            },
            non_finite: diverged || grads.non_finite,
        };
        on_epoch(&rec);
        history.epochs.push(rec);
        if diverged {
            break;
        }
    }
    let weights = Weights::of(&net.encoder.valid())?;
    Ok((
        weights,
        PretrainReport {
            history,
            updates: stepper.updates(),
            diverged,
            seconds: started.elapsed().as_secs_f64(),
            parameters,
        },
    ))
}

/// Why `method` (a sequence method) cannot train an encoder of `p`, if it
/// cannot: one that does not read a sequence, or, for `next_step`, one that
/// sees the future. Before the layout is known (`layout_known` false: the
/// stage's parameters are checked before it sees its columns) a
/// Transformer may still read a sequence.
pub fn sequence_encoder_problem(
    method: Method,
    p: &crate::config::EncoderParams,
    layout_known: bool,
) -> Option<String> {
    use crate::config::{EncoderKind, word};
    let name = word(&method);
    let reads = match layout_known {
        true => p.is_sequence(),
        false => p.kind.reads_sequences(),
    };
    if !reads {
        return Some(format!(
            "`{name}` pretrains a sequence encoder: `encoder.kind` must be rnn, tcn or \
             transformer over a sequence (columns named `t{{j}}` / `d{{c}}_t{{j}}`, or \
             `encoder.sequence`), got {}",
            word(&p.kind)
        ));
    }
    let sees_future = (p.kind == EncoderKind::Rnn && p.bidirectional)
        || (p.kind == EncoderKind::Transformer && !p.causal);
    (method == Method::NextStep && sees_future).then(|| {
        "`next_step` predicts each step from the steps up to it, so the encoder must not see \
         the future: a tcn, an rnn without `bidirectional`, or a transformer with `causal: \
         true` (`masked` pretrains a non-causal encoder)"
            .to_string()
    })
}

/// A sequence method's loss: `net`'s decoder applied to the encoder's state
/// at every step of `input`, scored against `target` (`[rows, length,
/// channels]`, row-major) where `weight` is 1: the mean squared error over
/// those cells.
fn decoded_loss(
    net: &PretrainNet,
    input: Tensor<2>,
    target: Vec<f32>,
    weight: Vec<f32>,
    shape: [usize; 3],
    rng: &mut ChaCha8Rng,
) -> Tensor<1> {
    let device = input.device();
    let states = net
        .encoder
        .states(input, Some(rng))
        .expect("a sequence encoder (checked before training)");
    let [b, l, c] = shape;
    let states = states.narrow(1, 0, l);
    let hidden = activation::relu(per_step_map(&net.decoder[0], states));
    let pred = per_step_map(&net.decoder[1], hidden);
    let target = Tensor::<3>::from_data(TensorData::new(target, [b, l, c]), &device);
    let weight = Tensor::<3>::from_data(TensorData::new(weight, [b, l, c]), &device);
    weighted_mse(pred, target, weight)
}

/// The mean squared error of `pred` over the cells where `weight` is 1
/// (the others are 0).
fn weighted_mse<const D: usize>(
    pred: Tensor<D>,
    target: Tensor<D>,
    weight: Tensor<D>,
) -> Tensor<1> {
    let cells = weight.clone().sum().clamp_min(1.0);
    ((pred - target).square() * weight).sum() / cells
}

/// The next-step and masked-step objectives on `x` (`[rows, channels x
/// length]`, channel after channel): `(input, target, weight, [rows,
/// steps scored, channels])`. A missing target cell (NaN) has weight 0.
fn sequence_targets(
    method: Method,
    x: &[f32],
    [channels, length]: [usize; 2],
    corruption: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, [usize; 3]) {
    let d = channels * length;
    let b = x.len() / d;
    let at = |r: usize, c: usize, t: usize| x[r * d + c * length + t];
    let mut input = x.to_vec();
    // predict step t + 1 from the state at t; or rebuild the masked steps
    let steps = match method {
        Method::NextStep => length - 1,
        _ => length,
    };
    let mut target = vec![0f32; b * steps * channels];
    let mut weight = vec![0f32; b * steps * channels];
    for r in 0..b {
        for t in 0..steps {
            let (source, scored) = match method {
                Method::NextStep => (t + 1, true),
                _ => (t, rng.random::<f64>() < corruption),
            };
            if !scored {
                continue;
            }
            for c in 0..channels {
                let v = at(r, c, source);
                if v.is_nan() {
                    continue;
                }
                let cell = (r * steps + t) * channels + c;
                target[cell] = v;
                weight[cell] = 1.0;
                if method == Method::Masked {
                    input[r * d + c * length + t] = 0.0;
                }
            }
        }
    }
    (input, target, weight, [b, steps, channels])
}

/// The batch's loss and its named parts.
/// `x`: the batch's rows (row-major, `pool.cols` wide); `pool`: the rows
/// swap noise draws from.
fn objective(
    s: &PretrainSettings,
    net: &PretrainNet,
    x: &[f32],
    pool: &Matrix,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> (Tensor<1>, Vec<(&'static str, Tensor<1>)>) {
    let d = pool.cols;
    let b = x.len() / d;
    let upload = |v: Vec<f32>| Tensor::<2>::from_data(TensorData::new(v, [b, d]), device);
    let clean = || upload(x.to_vec());
    // a sequence's missing steps (NaN) are masked by the encoder and left
    // out of the reconstruction loss
    let present = || {
        x.iter()
            .any(|v| v.is_nan())
            .then(|| upload(x.iter().map(|v| f32::from(!v.is_nan())).collect()))
    };
    match s.method {
        Method::Dae => {
            let noisy = match s.noise {
                Noise::Gaussian => gaussian_corrupt(x, s.noise_std, rng),
                Noise::Swap => swap_corrupt(x, pool, s.corruption, rng).0,
            };
            let h = net.encoder.forward(upload(noisy), Some(rng));
            let rec = reconstruct(net, h, clean(), present());
            (rec.clone(), vec![("reconstruction", rec)])
        }
        Method::Vime => {
            let (noisy, mask) = swap_corrupt(x, pool, s.corruption, rng);
            let h = net.encoder.forward(upload(noisy), Some(rng));
            let rec = reconstruct(net, h.clone(), clean(), present());
            let m = upload(mask);
            let mask_loss = match &net.mask {
                Some(head) => {
                    let l = head.forward(h);
                    let pos = activation::log_sigmoid(l.clone());
                    let neg = activation::log_sigmoid(l.neg());
                    (m.clone() * pos + m.neg().add_scalar(1.0) * neg)
                        .mean()
                        .neg()
                }
                None => rec.clone().mul_scalar(0.0),
            };
            let loss = rec.clone() + mask_loss.clone().mul_scalar(s.mask_weight);
            (loss, vec![("reconstruction", rec), ("mask", mask_loss)])
        }
        Method::NextStep | Method::Masked => {
            let shape = net.encoder.sequence_shape();
            let (input, target, weight, dims) =
                sequence_targets(s.method, x, shape, s.corruption, rng);
            let loss = decoded_loss(net, upload(input), target, weight, dims, rng);
            let part = match s.method {
                Method::NextStep => "next_step",
                _ => "masked_steps",
            };
            (loss.clone(), vec![(part, loss)])
        }
        Method::Scarf => {
            let (noisy, _) = swap_corrupt(x, pool, s.corruption, rng);
            let z1 = unit_rows(project(net, net.encoder.forward(clean(), Some(rng))));
            let z2 = unit_rows(project(net, net.encoder.forward(upload(noisy), Some(rng))));
            let logits = z1.matmul(z2.transpose()).div_scalar(s.temperature);
            let eye = Tensor::<2>::eye(b, device);
            let a = (activation::log_softmax(logits.clone(), 1) * eye.clone())
                .sum()
                .div_scalar(b as f64)
                .neg();
            let c = (activation::log_softmax(logits.transpose(), 1) * eye)
                .sum()
                .div_scalar(b as f64)
                .neg();
            let loss = (a + c).div_scalar(2.0);
            (loss.clone(), vec![("contrastive", loss)])
        }
    }
}

/// The mean squared reconstruction error, over the cells `present` marks
/// (1 or 0) when given.
fn reconstruct(
    net: &PretrainNet,
    h: Tensor<2>,
    clean: Tensor<2>,
    present: Option<Tensor<2>>,
) -> Tensor<1> {
    let Some(head) = &net.reconstruct else {
        return h.sum().mul_scalar(0.0);
    };
    match present {
        Some(m) => {
            let target = clean.mask_fill(m.clone().equal_elem(0.0), 0.0);
            weighted_mse(head.forward(h), target, m)
        }
        None => (head.forward(h) - clean).square().mean(),
    }
}

fn project(net: &PretrainNet, h: Tensor<2>) -> Tensor<2> {
    let mut z = h;
    for (i, l) in net.projection.iter().enumerate() {
        z = l.forward(z);
        if i + 1 < net.projection.len() {
            z = activation::relu(z);
        }
    }
    z
}

/// The embeddings of the rows of `x` under a pretrained encoder (inference mode).
pub fn embed(spec: &EncoderSpec, weights: &Weights, x: &Matrix) -> Result<Matrix, NeuralError> {
    Embedder::new(spec, weights)?.embed(x)
}

/// A pretrained encoder loaded once, in inference mode, to embed rows
/// batch after batch.
pub struct Embedder {
    encoder: Encoder,
    input_dim: usize,
    width: usize,
}

impl Embedder {
    /// The encoder of architecture `spec` with `weights`.
    pub fn new(spec: &EncoderSpec, weights: &Weights) -> Result<Embedder, NeuralError> {
        let device = training_device().without_autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(0); // overwritten by the weights
        let encoder = weights.load_into(Encoder::new(spec, &device, &mut rng))?;
        Ok(Embedder {
            encoder,
            input_dim: spec.input_dim,
            width: spec.embedding_dim(),
        })
    }

    /// The embeddings of the rows of `x`, computed 4,096 rows at a time.
    pub fn embed(&self, x: &Matrix) -> Result<Matrix, NeuralError> {
        if x.cols != self.input_dim {
            return Err(NeuralError::data(format!(
                "the encoder takes {} encoded features, these rows have {}",
                self.input_dim, x.cols
            )));
        }
        let device = device_of(&self.encoder);
        let mut out = Vec::with_capacity(x.rows * self.width);
        let all: Vec<usize> = (0..x.rows).collect();
        for chunk in all.chunks(4096) {
            let h = self.encoder.forward(rows_tensor(x, chunk, &device), None);
            out.extend(
                h.try_into_vec_as::<f32>()
                    .map_err(|e| NeuralError::internal(format!("reading embeddings: {e:?}")))?,
            );
        }
        Ok(Matrix::new(x.rows, self.width, out))
    }
}
