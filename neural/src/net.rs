//! The networks, as burn modules: the encoder (MLP, a small CNN followed
//! by MLP layers, a sequence encoder: [`crate::sequence`], or a
//! Transformer: [`crate::attention`]), the classifier (encoder + linear head) and the
//! pretraining network (encoder + reconstruction / mask / projection heads).
//!
//! Weights are drawn from the caller's seeded generator (PyTorch's default
//! for linear and convolution layers: `U(-k, k)` with `k = 1/sqrt(fan_in)`),
//! and dropout masks likewise, so a network never touches the backend's
//! global RNG.

use burn::module::{Module, Param, ParamId};
use burn::nn::{
    BatchNorm, BatchNormConfig, GroupNorm, GroupNormConfig, LayerNorm, LayerNormConfig, Linear,
};
use burn::tensor::{Device, Int, Tensor, TensorData, activation};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::attention::Transformer;
use crate::config::{Activation, EncoderKind, EncoderSpec, Norm};
use crate::sequence::SequenceEncoder;

/// A linear layer with PyTorch's default initialisation from `rng`.
pub fn linear(d_in: usize, d_out: usize, device: &Device, rng: &mut ChaCha8Rng) -> Linear {
    linear_within(d_in, d_out, 1.0 / (d_in.max(1) as f32).sqrt(), device, rng)
}

/// `n` values drawn from `U(-k, k)`: every layer's initial weights.
pub(crate) fn uniform_values(n: usize, k: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-k..k)).collect()
}

/// A linear layer with weights and biases drawn from `U(-k, k)`.
pub fn linear_within(
    d_in: usize,
    d_out: usize,
    k: f32,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> Linear {
    let w = uniform_values(d_in * d_out, k, rng);
    let b = uniform_values(d_out, k, rng);
    Linear {
        weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [d_in, d_out]), device)),
        bias: Some(Param::from_tensor(Tensor::from_data(
            TensorData::new(b, [d_out]),
            device,
        ))),
    }
}

/// A 3x3 convolution (same padding) of a CNN, with its normalisation over
/// the output channels. The convolution is a product of each pixel's window
/// (see [`ConvLayer::convolve`]), not burn's `Conv2d`, whose CPU backward pass took
/// about 110 s an epoch of 8,000 MNIST images (16 and 32 channels); weights
/// `[9 x c_in, c_out]` drawn as PyTorch initialises a convolution.
#[derive(Module, Debug)]
pub struct ConvLayer {
    /// Window (3 x 3 x `c_in`, row after row) to output channels.
    pub map: Linear,
    /// The normalisation of its output channels (batch statistics over
    /// every pixel of every row, as a 2-D batch norm).
    pub norm: Normaliser,
}

impl ConvLayer {
    fn new(
        c_in: usize,
        c_out: usize,
        spec: &EncoderSpec,
        device: &Device,
        rng: &mut ChaCha8Rng,
    ) -> Self {
        let k = 1.0 / ((c_in * 9) as f32).sqrt();
        let p = &spec.params;
        ConvLayer {
            map: linear_within(9 * c_in, c_out, k, device, rng),
            norm: Normaliser::new(p.norm, c_out, p.groups(), device),
        }
    }

    /// The convolution of `x` (`[pixels, rows, channels]`, pixels of a
    /// `height x width` image row after row): `[pixels x rows, c_out]`. The
    /// windows are one selection of pixels (whose backward pass is one
    /// scatter) and the products one matrix product.
    fn convolve(&self, x: Tensor<3>, [height, width]: [usize; 2]) -> Tensor<2> {
        let [pixels, b, c] = x.dims();
        let device = x.device();
        let zero = Tensor::zeros([1, b, c], &device);
        let padded: Tensor<2> = Tensor::cat(vec![x, zero], 0).reshape([pixels + 1, b * c]);
        let taps = padded.select(0, indices(window_taps(height, width), &device));
        let taps: Tensor<4> = taps.reshape([pixels, 9, b, c]);
        let windows: Tensor<2> = taps.swap_dims(1, 2).reshape([pixels * b, 9 * c]);
        self.map.forward(windows)
    }
}

/// Indices into a `height x width` image's pixels (row after row; index
/// `height x width` is an extra zero pixel): every pixel's 3 x 3 window,
/// pixel after pixel, its taps row after row.
fn window_taps(height: usize, width: usize) -> Vec<i64> {
    let outside = (height * width) as i64;
    (0..height * width)
        .flat_map(|p| {
            (0..9).map(move |t| {
                let (y, x) = (
                    (p / width + t / 3) as isize - 1,
                    (p % width + t % 3) as isize - 1,
                );
                if (0..height as isize).contains(&y) && (0..width as isize).contains(&x) {
                    y as i64 * width as i64 + x as i64
                } else {
                    outside
                }
            })
        })
        .collect()
}

/// Indices of the four pixels of every 2 x 2 pooling window of a `height x
/// width` image (an odd last row or column is dropped, as PyTorch's
/// `MaxPool2d(2)` does), member after member.
fn pool_members(height: usize, width: usize) -> Vec<i64> {
    let (h2, w2) = (height / 2, width / 2);
    (0..4)
        .flat_map(|m| {
            (0..h2 * w2)
                .map(move |q| ((2 * (q / w2) + m / 2) * width + 2 * (q % w2) + m % 2) as i64)
        })
        .collect()
}

fn indices(v: Vec<i64>, device: &Device) -> Tensor<1, Int> {
    let n = v.len();
    Tensor::from_data(TensorData::new(v, [n]), device)
}

/// 2 x 2 max pooling of `x` (`[pixels, rows, channels]` of a `height x
/// width` image): `[pixels / 4, rows, channels]`.
fn max_pool_2x2(x: Tensor<3>, [height, width]: [usize; 2]) -> Tensor<3> {
    let [_, b, c] = x.dims();
    let device = x.device();
    let out = (height / 2) * (width / 2);
    let flat: Tensor<2> = x.reshape([height * width, b * c]);
    let members = flat.select(0, indices(pool_members(height, width), &device));
    let m = |k: usize| members.clone().narrow(0, k * out, out);
    m(0).max_pair(m(1))
        .max_pair(m(2).max_pair(m(3)))
        .reshape([out, b, c])
}

/// Applies `a` to `x`.
pub fn activate<const D: usize>(a: Activation, x: Tensor<D>) -> Tensor<D> {
    match a {
        Activation::Relu => activation::relu(x),
        Activation::LeakyRelu => activation::leaky_relu(x, 0.01),
        Activation::Gelu => activation::gelu(x),
        Activation::Tanh => activation::tanh(x),
        Activation::Sigmoid => activation::sigmoid(x),
    }
}

/// Inverted dropout with a mask drawn from `rng`: kept units are scaled by
/// `1 / (1 - p)`, so inference needs no rescaling.
pub(crate) fn dropout(x: Tensor<2>, p: f64, rng: &mut ChaCha8Rng) -> Tensor<2> {
    let [rows, cols] = x.dims();
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..rows * cols)
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::<2>::from_data(TensorData::new(mask, [rows, cols]), &x.device());
    x * mask
}

/// The normalisation a layer's units get, if any.
#[derive(Module, Debug)]
pub struct Normaliser {
    /// Batch normalisation, if chosen.
    pub batch_norm: Option<BatchNorm>,
    /// Layer normalisation, if chosen.
    pub layer_norm: Option<LayerNorm>,
    /// Group normalisation, if chosen.
    pub group_norm: Option<GroupNorm>,
}

impl Normaliser {
    /// `norm` over `units` units (`groups` groups for group normalisation).
    pub fn new(norm: Norm, units: usize, groups: usize, device: &Device) -> Self {
        Normaliser {
            batch_norm: (norm == Norm::Batch).then(|| BatchNormConfig::new(units).init(device)),
            layer_norm: (norm == Norm::Layer).then(|| LayerNormConfig::new(units).init(device)),
            group_norm: (norm == Norm::Group)
                .then(|| GroupNormConfig::new(groups, units).init(device)),
        }
    }

    /// `z` (`[rows, units]`) normalised.
    pub fn normalise(&self, z: Tensor<2>) -> Tensor<2> {
        if let Some(bn) = &self.batch_norm {
            bn.forward(z)
        } else if let Some(ln) = &self.layer_norm {
            ln.forward(z)
        } else if let Some(gn) = &self.group_norm {
            // group norm wants [batch, channels, ...]: units are channels
            let [b, w] = z.dims();
            gn.forward(z.reshape([b, w, 1])).reshape([b, w])
        } else {
            z
        }
    }
}

/// One hidden layer: linear map, optional normalisation, activation, dropout.
#[derive(Module, Debug)]
pub struct Block {
    /// The linear map.
    pub linear: Linear,
    /// Its normalisation.
    pub norm: Normaliser,
}

impl Block {
    fn new(d_in: usize, spec: &EncoderSpec, device: &Device, rng: &mut ChaCha8Rng) -> Block {
        let p = &spec.params;
        Block {
            linear: linear(d_in, p.width, device, rng),
            norm: Normaliser::new(p.norm, p.width, p.groups(), device),
        }
    }
}

/// The encoder: optional convolutions, then `depth` hidden layers; or a
/// sequence encoder.
#[derive(Module, Debug)]
pub struct Encoder {
    /// Convolutions (CNN only).
    pub convs: Vec<ConvLayer>,
    /// Hidden layers (MLP and CNN).
    pub blocks: Vec<Block>,
    /// The recurrent layers or TCN blocks (`rnn`, `tcn`).
    pub sequence: Option<SequenceEncoder>,
    /// The attention layers (`transformer`).
    pub transformer: Option<Transformer>,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    residual: bool,
    #[module(skip)]
    dropout: f64,
    #[module(skip)]
    image: [usize; 2],
}

impl Encoder {
    /// A freshly initialised encoder for `spec`.
    pub fn new(spec: &EncoderSpec, device: &Device, rng: &mut ChaCha8Rng) -> Encoder {
        let p = &spec.params;
        let mut convs = Vec::new();
        let mut d_in = spec.input_dim;
        if p.kind == EncoderKind::Cnn {
            let [h0, w0] = p.image();
            let (mut c, mut h, mut w) = (1, h0, w0);
            for out in p.channels() {
                convs.push(ConvLayer::new(c, out, spec, device, rng));
                c = out;
                h /= 2;
                w /= 2;
            }
            d_in = c * h * w;
        }
        let mut blocks = Vec::with_capacity(p.depth);
        let sequence = p
            .kind
            .is_sequence()
            .then(|| SequenceEncoder::new(spec, device, rng));
        let transformer =
            (p.kind == EncoderKind::Transformer).then(|| Transformer::new(spec, device, rng));
        for _ in 0..p.depth {
            if sequence.is_some() || transformer.is_some() {
                break;
            }
            blocks.push(Block::new(d_in, spec, device, rng));
            d_in = p.width;
        }
        Encoder {
            convs,
            blocks,
            sequence,
            transformer,
            activation: p.activation,
            residual: p.residual,
            dropout: p.dropout,
            image: p.image(),
        }
    }

    /// The embedding of `x` (`[rows, input_dim]` -> `[rows, width]`). With
    /// `rng` (training) dropout is applied; without it (inference) it is not.
    pub fn forward(&self, x: Tensor<2>, mut rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        if let Some(s) = &self.sequence {
            return s.forward(x, rng);
        }
        if let Some(t) = &self.transformer {
            return t.forward(x, rng);
        }
        let mut h = x;
        if !self.convs.is_empty() {
            // pixel-major: [pixels, rows, channels], so that a window's
            // pixels and a pooling window's are rows of one selection
            let [b, _] = h.dims();
            let mut size = self.image;
            let mut img: Tensor<3> = h.swap_dims(0, 1).reshape([size[0] * size[1], b, 1]);
            for conv in &self.convs {
                let z = conv.norm.normalise(conv.convolve(img, size));
                let z = self.dropped(activate(self.activation, z), rng.as_deref_mut());
                let c_out = z.dims()[1];
                img = max_pool_2x2(z.reshape([size[0] * size[1], b, c_out]), size);
                size = [size[0] / 2, size[1] / 2];
            }
            let [pixels, _, c] = img.dims();
            h = img.swap_dims(0, 1).reshape([b, pixels * c]);
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let z = block.norm.normalise(block.linear.forward(h.clone()));
            let z = self.dropped(activate(self.activation, z), rng.as_deref_mut());
            h = if self.residual && i > 0 { h + z } else { z };
        }
        h
    }

    /// `z` with dropout while training (`rng` given), when `dropout` > 0.
    fn dropped(&self, z: Tensor<2>, rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        match rng {
            Some(r) if self.dropout > 0.0 => dropout(z, self.dropout, r),
            _ => z,
        }
    }

    /// A sequence encoder's last-layer state at every step, `[rows, length,
    /// units]` (`units` the embedding width; an RNN's both directions side
    /// by side), with missing steps masked as in [`Encoder::forward`];
    /// `None` for a kind that does not read a sequence.
    pub fn states(&self, x: Tensor<2>, rng: Option<&mut ChaCha8Rng>) -> Option<Tensor<3>> {
        if let Some(s) = &self.sequence {
            return Some(s.states(x, rng).0);
        }
        match &self.transformer {
            Some(t) if t.shape().is_some() => Some(t.states(x, rng).0),
            _ => None,
        }
    }

    /// The `[channels, length]` of the sequence the encoder reads (`[1, 0]`
    /// for a kind that reads none).
    pub fn sequence_shape(&self) -> [usize; 2] {
        let transformer = self.transformer.as_ref().and_then(Transformer::shape);
        self.sequence
            .as_ref()
            .map(SequenceEncoder::shape)
            .or(transformer)
            .unwrap_or([1, 0])
    }

    /// The weight parameter of every layer, first to last, named
    /// (`conv1`, ..., `layer1`, ...): whose gradient norms are recorded.
    pub fn layer_weights(&self) -> Vec<(String, ParamId, usize)> {
        let mut out = Vec::new();
        for (i, c) in self.convs.iter().enumerate() {
            out.push((format!("conv{}", i + 1), c.map.weight.id, 2));
        }
        for (i, b) in self.blocks.iter().enumerate() {
            out.push((format!("layer{}", i + 1), b.linear.weight.id, 2));
        }
        if let Some(s) = &self.sequence {
            out.extend(s.layer_weights());
        }
        if let Some(t) = &self.transformer {
            out.extend(t.layer_weights());
        }
        out
    }

    /// Every weight matrix / kernel (not biases nor normalisation): what L1
    /// and L2 penalties apply to.
    pub fn penalised(&self) -> Vec<Tensor<1>> {
        let mut out: Vec<Tensor<1>> = self
            .convs
            .iter()
            .map(|c| c.map.weight.val().flatten(0, 1))
            .collect();
        out.extend(
            self.blocks
                .iter()
                .map(|b| b.linear.weight.val().flatten(0, 1)),
        );
        if let Some(s) = &self.sequence {
            out.extend(s.penalised());
        }
        if let Some(t) = &self.transformer {
            out.extend(t.penalised());
        }
        out
    }
}

/// A classifier: encoder, then a linear head giving one logit per class.
#[derive(Module, Debug)]
pub struct ClassifierNet {
    /// The encoder (fresh or pretrained).
    pub encoder: Encoder,
    /// The linear head.
    pub head: Linear,
}

impl ClassifierNet {
    /// Logits `[rows, classes]`; dropout only when `rng` is given.
    pub fn forward(&self, x: Tensor<2>, rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        self.head.forward(self.encoder.forward(x, rng))
    }

    /// Named layer weights, encoder first, head last.
    pub fn layer_weights(&self) -> Vec<(String, ParamId, usize)> {
        let mut out = self.encoder.layer_weights();
        out.push(("head".into(), self.head.weight.id, 2));
        out
    }

    /// Weights penalised by L1 / L2 (encoder's and head's weight matrices).
    pub fn penalised(&self) -> Vec<Tensor<1>> {
        let mut out = self.encoder.penalised();
        out.push(self.head.weight.val().flatten(0, 1));
        out
    }
}

/// The pretraining network: the encoder and the heads its objective needs.
#[derive(Module, Debug)]
pub struct PretrainNet {
    /// The encoder being pretrained.
    pub encoder: Encoder,
    /// Reconstructs the clean features from the embedding (DAE, VIME).
    pub reconstruct: Option<Linear>,
    /// Predicts which features were corrupted (VIME).
    pub mask: Option<Linear>,
    /// Projection head for the contrastive loss (SCARF): two layers.
    pub projection: Vec<Linear>,
    /// The per-step decoder of the sequence methods (`next_step`,
    /// `masked`): two layers, state to `width` units to the step's channels.
    pub decoder: Vec<Linear>,
}

impl PretrainNet {
    /// Named layer weights: encoder, then heads.
    pub fn layer_weights(&self) -> Vec<(String, ParamId, usize)> {
        let mut out = self.encoder.layer_weights();
        if let Some(r) = &self.reconstruct {
            out.push(("reconstruct".into(), r.weight.id, 2));
        }
        if let Some(m) = &self.mask {
            out.push(("mask".into(), m.weight.id, 2));
        }
        for (i, p) in self.projection.iter().enumerate() {
            out.push((format!("projection{}", i + 1), p.weight.id, 2));
        }
        for (i, p) in self.decoder.iter().enumerate() {
            out.push((format!("decoder{}", i + 1), p.weight.id, 2));
        }
        out
    }
}

/// The first device a module's parameters live on.
pub fn device_of<M: Module>(m: &M) -> Device {
    m.devices()
        .into_iter()
        .next()
        .unwrap_or_else(crate::backend::training_device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::training_device;
    use crate::config::EncoderParams;
    use rand::SeedableRng;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.try_into_vec_as::<f32>().unwrap()
    }

    /// The window products are a 3 x 3 convolution with zero padding, and
    /// the pooling a 2 x 2 max, both checked against direct sums over an
    /// odd-sized image of two channels (the last row and column dropped by
    /// the pooling), and gradients reach every weight.
    #[test]
    fn window_products_are_a_same_padded_convolution_and_pooling_a_max() {
        let device = training_device();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (h, w, b, c, c_out) = (5, 7, 2, 2, 3);
        let spec = EncoderSpec::new(EncoderParams::default(), h * w).unwrap();
        let conv = ConvLayer::new(c, c_out, &spec, &device, &mut rng);
        let x: Vec<f32> = uniform_values(h * w * b * c, 1.0, &mut rng);
        let at = |p: usize, r: usize, ch: usize| x[(p * b + r) * c + ch];
        let input = Tensor::<3>::from_data(TensorData::new(x.clone(), [h * w, b, c]), &device);
        let out = conv.convolve(input, [h, w]);
        let weights = values(conv.map.weight.val());
        let bias: Vec<f32> = conv
            .map
            .bias
            .as_ref()
            .map(|b| b.val().try_into_vec_as().unwrap())
            .unwrap();
        let got = values(out.clone());
        for y in 0..h {
            for xx in 0..w {
                for r in 0..b {
                    for o in 0..c_out {
                        let mut want = bias[o];
                        for t in 0..9 {
                            let (yy, xi) = (y as isize + t / 3 - 1, xx as isize + t % 3 - 1);
                            if yy < 0 || xi < 0 || yy >= h as isize || xi >= w as isize {
                                continue;
                            }
                            let p = yy as usize * w + xi as usize;
                            for ch in 0..c {
                                want += at(p, r, ch) * weights[(t as usize * c + ch) * c_out + o];
                            }
                        }
                        let g = got[((y * w + xx) * b + r) * c_out + o];
                        assert!(
                            (g - want).abs() < 1e-5,
                            "pixel ({y}, {xx}) row {r}: {g} vs {want}"
                        );
                    }
                }
            }
        }
        let pooled = max_pool_2x2(out.clone().reshape([h * w, b, c_out]), [h, w]);
        assert_eq!(pooled.dims(), [(h / 2) * (w / 2), b, c_out]);
        let pooled = pooled.reshape([(h / 2) * (w / 2) * b, c_out]);
        for (q, v) in values(pooled).chunks(b * c_out).enumerate() {
            let (i, j) = (q / (w / 2), q % (w / 2));
            for (k, &v) in v.iter().enumerate() {
                let want = [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .iter()
                    .map(|(dy, dx)| got[((2 * i + dy) * w + 2 * j + dx) * b * c_out + k])
                    .fold(f32::MIN, f32::max);
                assert_eq!(v, want, "pooling window ({i}, {j})");
            }
        }
        let grads = out.sum().backward();
        let g = conv.map.weight.grad(&grads).unwrap();
        let g: Vec<f32> = g.try_into_vec_as().unwrap();
        assert!(g.iter().all(|v| *v != 0.0), "{g:?}");
    }
}
