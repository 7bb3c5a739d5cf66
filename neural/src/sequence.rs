//! The sequence encoders (`kind: rnn`, `kind: tcn`), as burn modules.
//!
//! A row's encoded features are `channels` series of `length` steps, channel
//! after channel ([`crate::config::SequenceShape`]); the encoder reshapes
//! them to `[rows, length, channels]` (recurrence) or `[rows, channels,
//! length]` (convolution). Normalisation, dropout and residual connections
//! apply between layers as in the MLP: normalisation per step over the
//! units, dropout on every unit of every step, and a layer after the first
//! adds its input to its output when `residual` is set.
//!
//! The recurrent cells are written here rather than taken from `burn::nn`:
//! their weights are drawn from the caller's seeded generator like every
//! other layer's (burn's cells draw from the backend's global generator),
//! and PyTorch's gate equations are followed exactly:
//!
//! - GRU: `r = σ(W_ir x + W_hr h)`, `z = σ(W_iz x + W_hz h)`,
//!   `n = tanh(W_in x + r ∘ (W_hn h))`, `h' = (1 - z) ∘ n + z ∘ h`
//!   (each product with its bias);
//! - LSTM: `i, f, g, o` from `W_i x + W_h h`, `c' = σ(f) ∘ c + σ(i) ∘ tanh(g)`,
//!   `h' = σ(o) ∘ tanh(c')`.

use burn::module::{Module, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand_chacha::ChaCha8Rng;

use crate::config::{Activation, Cell, EncoderKind, EncoderSpec, SequenceShape};
use crate::net::{Normaliser, activate, dropout, linear_within};

/// One recurrent layer, one direction: the input and hidden maps of every
/// gate at once (`3 x width` outputs for a GRU, `4 x width` for an LSTM).
#[derive(Module, Debug)]
pub struct Recurrent {
    /// `W_i* x + b_i*`.
    pub input: Linear,
    /// `W_h* h + b_h*`.
    pub hidden: Linear,
    #[module(skip)]
    lstm: bool,
    #[module(skip)]
    width: usize,
}

impl Recurrent {
    fn new(cell: Cell, d_in: usize, width: usize, device: &Device, rng: &mut ChaCha8Rng) -> Self {
        let gates = if cell == Cell::Lstm { 4 } else { 3 };
        // PyTorch: every weight and bias U(-1/sqrt(width), 1/sqrt(width))
        let k = 1.0 / (width as f32).sqrt();
        Recurrent {
            input: linear_within(d_in, gates * width, k, device, rng),
            hidden: linear_within(width, gates * width, k, device, rng),
            lstm: cell == Cell::Lstm,
            width,
        }
    }

    /// The states of every step, `[rows, length, width]`, reading `x`
    /// (`[rows, length, d_in]`) forwards, or backwards when `reverse`. A
    /// step that `valid` (`[rows, length]`, 1 or 0) marks missing keeps the
    /// state of the step read before it.
    fn forward(&self, x: Tensor<3>, reverse: bool, valid: Option<&Tensor<2>>) -> Tensor<3> {
        let [b, l, d] = x.dims();
        let w = self.width;
        let device = x.device();
        // every step's input map in one product
        let gx: Tensor<3> =
            self.input
                .forward(x.reshape([b * l, d]))
                .reshape([b, l, self.input.weight.dims()[1]]);
        let mut h: Tensor<2> = Tensor::zeros([b, w], &device);
        let mut c: Tensor<2> = Tensor::zeros([b, w], &device);
        let mut states = Vec::with_capacity(l);
        for step in 0..l {
            let t = if reverse { l - 1 - step } else { step };
            let xt: Tensor<2> = gx.clone().narrow(1, t, 1).squeeze_dim(1);
            let ht = self.hidden.forward(h.clone());
            let (h_new, c_new) = if self.lstm {
                let z = xt + ht;
                let g = z.chunk(4, 1);
                let (i, f, gg, o) = (&g[0], &g[1], &g[2], &g[3]);
                let c_new = activation::sigmoid(f.clone()) * c.clone()
                    + activation::sigmoid(i.clone()) * activation::tanh(gg.clone());
                let h_new = activation::sigmoid(o.clone()) * activation::tanh(c_new.clone());
                (h_new, c_new)
            } else {
                let xs = xt.chunk(3, 1);
                let hs = ht.chunk(3, 1);
                let r = activation::sigmoid(xs[0].clone() + hs[0].clone());
                let z = activation::sigmoid(xs[1].clone() + hs[1].clone());
                let n = activation::tanh(xs[2].clone() + r * hs[2].clone());
                ((z.clone().neg() + 1.0) * n + z * h.clone(), c.clone())
            };
            match valid {
                // a missing step carries the state over: old + v (new - old)
                Some(v) => {
                    let vt = v.clone().narrow(1, t, 1).expand([b, w]);
                    h = h.clone() + vt.clone() * (h_new - h);
                    if self.lstm {
                        c = c.clone() + vt * (c_new - c);
                    }
                }
                None => (h, c) = (h_new, c_new),
            }
            states.push(h.clone());
        }
        if reverse {
            states.reverse();
        }
        Tensor::stack(states, 1)
    }
}

/// One residual block of a TCN: two dilated causal convolutions, each
/// followed by normalisation, the activation and dropout, plus a 1x1
/// convolution on the skip path when the channel count changes.
///
/// A convolution is a linear map of each step's window (the `kernel` steps
/// `dilation` apart that end at it, zeros before the first step) rather
/// than burn's `Conv1d`, whose CPU backward pass indexes element by element
/// (measured: 1.5 s per step of 16 GunPoint series; as a product of the
/// windows, milliseconds).
#[derive(Module, Debug)]
pub struct TcnBlock {
    /// The two convolutions: `[kernel x channels in, channels out]`.
    pub convs: Vec<Linear>,
    /// Their normalisations.
    pub norms: Vec<Normaliser>,
    /// The skip path's 1x1 convolution, when the channels change.
    pub skip: Option<Linear>,
    #[module(skip)]
    kernel: usize,
    #[module(skip)]
    dilation: usize,
}

/// A convolution's map with PyTorch's default initialisation
/// (`U(-b, b)`, `b = 1 / sqrt(channels in x kernel)`).
fn conv_map(c_in: usize, c_out: usize, k: usize, device: &Device, rng: &mut ChaCha8Rng) -> Linear {
    linear_within(
        c_in * k,
        c_out,
        1.0 / ((c_in * k) as f32).sqrt(),
        device,
        rng,
    )
}

/// Each step's causal window of `x` (`[rows, length, channels]`): the
/// `k` steps `d` apart ending at it, zeros before the first step, as
/// `[rows, length, k x channels]` (oldest step first).
fn windows(x: Tensor<3>, k: usize, d: usize) -> Tensor<3> {
    if k == 1 {
        return x;
    }
    let [b, l, c] = x.dims();
    let pad = (k - 1) * d;
    let zeros = Tensor::zeros([b, pad, c], &x.device());
    let padded = Tensor::cat(vec![zeros, x], 1);
    let taps = (0..k).map(|j| padded.clone().narrow(1, j * d, l)).collect();
    Tensor::cat(taps, 2)
}

/// `map` applied to every step of `x` (`[rows, length, units]`).
pub(crate) fn per_step_map(map: &Linear, x: Tensor<3>) -> Tensor<3> {
    let [b, l, w] = x.dims();
    let out = map.weight.dims()[1];
    map.forward(x.reshape([b * l, w])).reshape([b, l, out])
}

/// `norm` applied per step of `x` (`[rows, length, units]`).
pub(crate) fn per_step(norm: &Normaliser, x: Tensor<3>) -> Tensor<3> {
    let [b, l, w] = x.dims();
    norm.normalise(x.reshape([b * l, w])).reshape([b, l, w])
}

/// Dropout on every unit of every step.
pub(crate) fn drop3(x: Tensor<3>, p: f64, rng: Option<&mut ChaCha8Rng>) -> Tensor<3> {
    match rng {
        Some(r) if p > 0.0 => {
            let [b, l, w] = x.dims();
            dropout(x.reshape([b * l, w]), p, r).reshape([b, l, w])
        }
        _ => x,
    }
}

/// Which steps of each row of a batch hold a value: a step is missing
/// when every channel is missing (NaN) there; a missing cell among present
/// ones reads as 0, its channel's mean.
pub struct StepMask {
    /// `[rows, length]`: 1 where the step holds a value, else 0.
    pub valid: Tensor<2>,
    /// Each row's last step that holds a value.
    pub last: Vec<usize>,
}

impl StepMask {
    /// `valid` as `[rows, length, 1]`, to scale every unit of a step.
    fn per_step(&self) -> Tensor<3> {
        let [b, l] = self.valid.dims();
        self.valid.clone().reshape([b, l, 1])
    }
}

/// `x` (`[rows, channels x length]`, channel after channel) with its
/// missing cells (NaN) set to 0, and the mask of its steps; `None` when no
/// cell is missing, so complete data takes the unmasked path unchanged.
pub fn split_missing(
    x: Tensor<2>,
    [channels, length]: [usize; 2],
) -> (Tensor<2>, Option<StepMask>) {
    let [b, d] = x.dims();
    let Ok(mut v) = x.clone().try_into_vec_as::<f32>() else {
        return (x, None);
    };
    if !v.iter().any(|a| a.is_nan()) {
        return (x, None);
    }
    let mut valid = vec![0f32; b * length];
    for (r, row) in v.chunks_exact(d).enumerate() {
        for c in 0..channels {
            for t in 0..length {
                if !row[c * length + t].is_nan() {
                    valid[r * length + t] = 1.0;
                }
            }
        }
    }
    let last = valid
        .chunks_exact(length)
        .map(|s| s.iter().rposition(|&a| a > 0.0).unwrap_or(0))
        .collect();
    for a in &mut v {
        if a.is_nan() {
            *a = 0.0;
        }
    }
    let device = x.device();
    let filled = Tensor::from_data(TensorData::new(v, [b, d]), &device);
    let valid = Tensor::from_data(TensorData::new(valid, [b, length]), &device);
    (filled, Some(StepMask { valid, last }))
}

/// A sequence encoder: stacked recurrent layers or residual TCN blocks.
#[derive(Module, Debug)]
pub struct SequenceEncoder {
    /// Recurrent layers, forwards (RNN).
    pub forward: Vec<Recurrent>,
    /// Recurrent layers, backwards (bidirectional RNN).
    pub backward: Vec<Recurrent>,
    /// Normalisation after each recurrent layer (RNN).
    pub norms: Vec<Normaliser>,
    /// Residual blocks (TCN).
    pub blocks: Vec<TcnBlock>,
    #[module(skip)]
    shape: [usize; 2],
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    residual: bool,
    #[module(skip)]
    dropout: f64,
}

impl SequenceEncoder {
    /// A freshly initialised encoder for `spec` (a sequence kind).
    pub fn new(spec: &EncoderSpec, device: &Device, rng: &mut ChaCha8Rng) -> Self {
        let p = &spec.params;
        let SequenceShape { channels, length } = spec.sequence();
        let w = p.width;
        let mut enc = SequenceEncoder {
            forward: Vec::new(),
            backward: Vec::new(),
            norms: Vec::new(),
            blocks: Vec::new(),
            shape: [channels, length],
            activation: p.activation,
            residual: p.residual,
            dropout: p.dropout,
        };
        let norm = |units: usize| Normaliser::new(p.norm, units, p.groups(), device);
        match p.kind {
            EncoderKind::Rnn => {
                let out = spec.embedding_dim();
                let mut d_in = channels;
                for _ in 0..p.depth {
                    enc.forward
                        .push(Recurrent::new(p.cell(), d_in, w, device, rng));
                    if p.bidirectional {
                        enc.backward
                            .push(Recurrent::new(p.cell(), d_in, w, device, rng));
                    }
                    enc.norms.push(norm(out));
                    d_in = out;
                }
            }
            _ => {
                let k = p.kernel();
                let mut c_in = channels;
                for i in 0..p.depth {
                    enc.blocks.push(TcnBlock {
                        convs: vec![
                            conv_map(c_in, w, k, device, rng),
                            conv_map(w, w, k, device, rng),
                        ],
                        norms: vec![norm(w), norm(w)],
                        skip: (c_in != w).then(|| conv_map(c_in, w, 1, device, rng)),
                        kernel: k,
                        dilation: 1 << i,
                    });
                    c_in = w;
                }
            }
        }
        enc
    }

    /// The embedding of `x` (`[rows, channels x length]`); dropout only
    /// with `rng`. Missing steps (NaN in every channel) are masked: a
    /// recurrent layer carries its state over them, a TCN block outputs 0
    /// there (as the padding before the first step) and the mean leaves
    /// them out.
    pub fn forward(&self, x: Tensor<2>, rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        let [b, _] = x.dims();
        let (h, mask) = self.states(x, rng);
        let [_, l, units] = h.dims();
        if self.blocks.is_empty() {
            // the last step of the forward states; the first of the backward
            if self.backward.is_empty() {
                return h.narrow(1, l - 1, 1).reshape([b, units]);
            }
            let half = units / 2;
            let last: Tensor<2> = h.clone().narrow(1, l - 1, 1).reshape([b, units]);
            let first: Tensor<2> = h.narrow(1, 0, 1).reshape([b, units]);
            return Tensor::cat(
                vec![last.narrow(1, 0, half), first.narrow(1, half, half)],
                1,
            );
        }
        match &mask {
            // the mean over the steps that hold a value (masked ones are 0)
            Some(m) => {
                let counts = m.valid.clone().sum_dim(1).clamp_min(1.0);
                h.sum_dim(1).reshape([b, units]) / counts.expand([b, units])
            }
            None => h.mean_dim(1).reshape([b, units]),
        }
    }

    /// The `[channels, length]` it reads.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The last layer's state at every step, `[rows, length, units]`
    /// (an RNN's, both directions side by side when bidirectional; a TCN's
    /// last block's output), and the mask of the missing steps.
    pub fn states(
        &self,
        x: Tensor<2>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<3>, Option<StepMask>) {
        let [b, _] = x.dims();
        let [channels, length] = self.shape;
        let (x, mask) = split_missing(x, self.shape);
        let series: Tensor<3> = x.reshape([b, channels, length]).swap_dims(1, 2);
        if !self.blocks.is_empty() {
            let h = self.tcn_steps(series, mask.as_ref(), rng);
            return (h, mask);
        }
        let valid = mask.as_ref().map(|m| &m.valid);
        let mut h = series;
        for (i, fwd) in self.forward.iter().enumerate() {
            let mut z = fwd.forward(h.clone(), false, valid);
            if let Some(bwd) = self.backward.get(i) {
                z = Tensor::cat(vec![z, bwd.forward(h.clone(), true, valid)], 2);
            }
            let z = drop3(
                per_step(&self.norms[i], z),
                self.dropout,
                rng.as_deref_mut(),
            );
            h = if self.residual && i > 0 { h + z } else { z };
        }
        (h, mask)
    }

    /// The last TCN block's output at every step, `[rows, length, width]`,
    /// of `series` (`[rows, length, channels]`), 0 at the steps `mask`
    /// marks missing.
    fn tcn_steps(
        &self,
        series: Tensor<3>,
        mask: Option<&StepMask>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> Tensor<3> {
        let valid = mask.map(StepMask::per_step);
        let mut h = series;
        for block in &self.blocks {
            let mut z = h.clone();
            for (conv, norm) in block.convs.iter().zip(&block.norms) {
                let y = per_step_map(conv, windows(z, block.kernel, block.dilation));
                let y = activate(self.activation, per_step(norm, y));
                z = drop3(y, self.dropout, rng.as_deref_mut());
            }
            let skip = match &block.skip {
                Some(s) => per_step_map(s, h),
                None => h,
            };
            // the TCN's residual connection is part of its design: always on
            h = activate(self.activation, z + skip);
            if let Some(v) = &valid {
                let dims = h.dims();
                h = h * v.clone().expand(dims);
            }
        }
        h
    }

    /// The weight of every layer, named (`rnn1`, `tcn1.conv1`, ...).
    pub fn layer_weights(&self) -> Vec<(String, ParamId, usize)> {
        let mut out = Vec::new();
        for (i, r) in self.forward.iter().enumerate() {
            out.push((format!("rnn{}", i + 1), r.input.weight.id, 2));
        }
        for (i, r) in self.backward.iter().enumerate() {
            out.push((format!("rnn{}_backward", i + 1), r.input.weight.id, 2));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            for (j, c) in b.convs.iter().enumerate() {
                out.push((format!("tcn{}.conv{}", i + 1, j + 1), c.weight.id, 2));
            }
        }
        out
    }

    /// Every weight matrix / kernel: what L1 and L2 penalties apply to.
    pub fn penalised(&self) -> Vec<Tensor<1>> {
        let mut out = Vec::new();
        for r in self.forward.iter().chain(&self.backward) {
            out.push(r.input.weight.val().flatten(0, 1));
            out.push(r.hidden.weight.val().flatten(0, 1));
        }
        for b in &self.blocks {
            for c in b.convs.iter().chain(&b.skip) {
                out.push(c.weight.val().flatten(0, 1));
            }
        }
        out
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::backend::training_device;
    use crate::config::{EncoderParams, Norm};
    use rand::{Rng, SeedableRng};

    fn spec(
        kind: EncoderKind,
        channels: usize,
        length: usize,
        edit: impl Fn(&mut EncoderParams),
    ) -> EncoderSpec {
        let mut p = EncoderParams {
            kind,
            depth: 2,
            width: 8,
            sequence: Some(SequenceShape { channels, length }),
            ..EncoderParams::default()
        };
        edit(&mut p);
        EncoderSpec::new(p, channels * length).unwrap()
    }

    /// `b x d` values from `U(-1, 1)`, seeded.
    pub(crate) fn rows(b: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..b * d).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn run(enc: &SequenceEncoder, x: Vec<f32>, b: usize, d: usize) -> Vec<f32> {
        let t = Tensor::<2>::from_data(TensorData::new(x, [b, d]), &training_device());
        enc.forward(t, None).try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn every_kind_embeds_a_row_in_its_width() {
        let device = training_device();
        for (kind, edit, width) in [
            (
                EncoderKind::Rnn,
                (|_: &mut EncoderParams| {}) as fn(&mut EncoderParams),
                8,
            ),
            (EncoderKind::Rnn, |p| p.cell = Some(Cell::Lstm), 8),
            (EncoderKind::Rnn, |p| p.bidirectional = true, 16),
            (
                EncoderKind::Rnn,
                |p| {
                    p.residual = true;
                    p.norm = Norm::Layer;
                },
                8,
            ),
            (EncoderKind::Tcn, |_| {}, 8),
            (EncoderKind::Tcn, |p| p.norm = Norm::Batch, 8),
        ] {
            let s = spec(kind, 3, 10, edit);
            assert_eq!(s.embedding_dim(), width);
            let enc = SequenceEncoder::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(1));
            let out = run(&enc, rows(5, 30, 2), 5, 30);
            assert_eq!(out.len(), 5 * width, "{kind:?}");
            assert!(out.iter().all(|v| v.is_finite()));
            // the same seed builds the same network
            let again = SequenceEncoder::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(1));
            assert_eq!(run(&again, rows(5, 30, 2), 5, 30), out);
        }
    }

    #[test]
    fn missing_steps_are_masked_by_every_sequence_kind() {
        use crate::net::Encoder;
        let device = training_device();
        type Edit = fn(&mut EncoderParams);
        let edits: [(EncoderKind, Edit); 6] = [
            (EncoderKind::Rnn, |_| {}),
            (EncoderKind::Rnn, |p| p.cell = Some(Cell::Lstm)),
            (EncoderKind::Rnn, |p| p.bidirectional = true),
            (EncoderKind::Tcn, |_| {}),
            (EncoderKind::Transformer, |p| p.heads = Some(2)),
            (EncoderKind::Transformer, |p| {
                p.heads = Some(2);
                p.causal = true
            }),
        ];
        let embed = |kind, edit: Edit, length: usize, x: Vec<f32>| {
            let s = spec(kind, 2, length, edit);
            let enc = Encoder::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(7));
            let rows = x.len() / (2 * length);
            let t = Tensor::<2>::from_data(TensorData::new(x, [rows, 2 * length]), &device);
            enc.forward(t, None).try_into_vec_as::<f32>().unwrap()
        };
        // two channels of 6 steps, and the same with 2 missing steps after
        let short = rows(1, 12, 8);
        let mut padded = Vec::new();
        for c in 0..2 {
            padded.extend_from_slice(&short[c * 6..(c + 1) * 6]);
            padded.extend([f32::NAN; 2]);
        }
        for (kind, edit) in edits {
            // the weights do not depend on the length: the padded series
            // embeds as the short one
            let a = embed(kind, edit, 6, short.clone());
            let b = embed(kind, edit, 8, padded.clone());
            assert_eq!(a.len(), b.len());
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "{kind:?}: {a:?} vs {b:?}");
            }
        }
        // a recurrent layer skips a missing step in the middle
        let mut gap = short[..3].to_vec();
        gap.push(f32::NAN);
        gap.extend_from_slice(&short[3..6]);
        let one = |x: Vec<f32>, l| {
            let s = spec(EncoderKind::Rnn, 1, l, |_| {});
            let enc = Encoder::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(7));
            let t = Tensor::<2>::from_data(TensorData::new(x, [1, l]), &device);
            enc.forward(t, None).try_into_vec_as::<f32>().unwrap()
        };
        let (a, b) = (one(short[..6].to_vec(), 6), one(gap, 7));
        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    }

    #[test]
    fn a_forward_rnn_reads_the_whole_series_and_a_step_changes_the_state() {
        let device = training_device();
        let s = spec(EncoderKind::Rnn, 1, 12, |_| {});
        let enc = SequenceEncoder::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(3));
        let x = rows(1, 12, 4);
        let base = run(&enc, x.clone(), 1, 12);
        for step in [0, 11] {
            let mut y = x.clone();
            y[step] += 1.0;
            assert_ne!(run(&enc, y, 1, 12), base, "step {step}");
        }
    }

    #[test]
    fn a_tcn_sees_no_future_and_exactly_its_receptive_field() {
        let device = training_device();
        let (length, kernel) = (40, 3);
        let s = spec(EncoderKind::Tcn, 1, length, |p| {
            p.kernel = Some(kernel);
            p.activation = Activation::Tanh;
        });
        let rf = s.params.receptive_field().unwrap();
        assert_eq!(rf, 1 + 2 * (kernel - 1) * 3);
        let enc = SequenceEncoder::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(5));
        let steps = |x: Vec<f32>| -> Vec<f32> {
            let t = Tensor::<3>::from_data(TensorData::new(x, [1, length, 1]), &device);
            // [1, length, width]: per step, every unit
            enc.tcn_steps(t, None, None)
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        let x = rows(1, length, 6);
        let base = steps(x.clone());
        let at = 10;
        let mut y = x;
        y[at] += 1.0;
        let moved = steps(y);
        let w = s.params.width;
        let changed = |t: usize| (0..w).any(|u| moved[t * w + u] != base[t * w + u]);
        for t in 0..length {
            let sees = t >= at && t < at + rf;
            assert_eq!(
                changed(t),
                sees,
                "step {t} (input step {at}, receptive field {rf})"
            );
        }
    }
}
