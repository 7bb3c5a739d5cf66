//! The Transformer encoder (`kind: transformer`), as a burn module.
//!
//! Tokens, then `depth` pre-norm layers, each `h + MHA(norm(h))` then
//! `h + FFN(norm(h))` (dropout on both branches), then a final
//! normalisation of the token that embeds the row:
//!
//! - over a sequence (`channels x length`, channel after channel) each step
//!   is a token: a linear map of its `channels` values plus a sinusoidal
//!   positional encoding (Vaswani et al.);
//! - over plain tabular rows each feature is a token, `x_j W_j + b_j`
//!   with its own learned `W_j`, `b_j` (the FT-Transformer's feature
//!   tokenizer, Gorishniy et al. 2021), so no positional encoding is needed;
//!   a categorical column's one-hot indicators make one token, `sum_j x_j
//!   W_j + b`, which is its category's learned embedding;
//! - a learned class token is prepended and its final state is the
//!   embedding; a `causal` encoder has none: step `t` attends to steps
//!   `0..=t` only (p(y | x_<=t)), and the last step's state is the
//!   embedding.
//!
//! The normalisation is the encoder's `norm`, layer normalisation when it
//! is `none` (the design needs one); the residual connections are always on.
//! Attention memory grows with the square of the tokens: `[rows, heads,
//! tokens, tokens]` scores per layer.

use burn::module::{Module, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand_chacha::ChaCha8Rng;

use crate::config::{Activation, EncoderSpec, Norm, SequenceShape};
use crate::net::{Normaliser, activate, linear, uniform_values};
use crate::sequence::{StepMask, drop3, per_step, per_step_map, split_missing};

/// One pre-norm Transformer layer.
#[derive(Module, Debug)]
pub struct AttentionLayer {
    /// Normalisation before attention.
    pub attend_norm: Normaliser,
    /// The query, key and value maps at once (`width -> 3 x width`).
    pub qkv: Linear,
    /// The attention's output map.
    pub out: Linear,
    /// Normalisation before the feed-forward map.
    pub feed_norm: Normaliser,
    /// The feed-forward map's two layers (`width -> 2 x width -> width`).
    pub feed: Vec<Linear>,
}

/// A parameter of `rows x cols` values drawn from `U(-k, k)`.
fn uniform(
    rows: usize,
    cols: usize,
    k: f32,
    device: &Device,
    rng: &mut ChaCha8Rng,
) -> Param<Tensor<2>> {
    let v = uniform_values(rows * cols, k, rng);
    Param::from_tensor(Tensor::from_data(TensorData::new(v, [rows, cols]), device))
}

/// The sinusoidal positional encoding of `length` steps, `[1, length, width]`.
fn positions(length: usize, width: usize, device: &Device) -> Tensor<3> {
    let mut pe = vec![0f32; length * width];
    for t in 0..length {
        for i in 0..width {
            let rate = 10_000f64.powf((i - i % 2) as f64 / width as f64);
            let angle = t as f64 / rate;
            pe[t * width + i] = if i % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
        }
    }
    Tensor::from_data(TensorData::new(pe, [1, length, width]), device)
}

/// The additive mask that hides the future: 0 where step `j <= i` may be
/// seen from step `i`, a large negative number elsewhere; `[1, 1, n, n]`.
fn causal_mask(n: usize, device: &Device) -> Tensor<4> {
    let m: Vec<f32> = (0..n * n)
        .map(|at| if at % n > at / n { -1e9 } else { 0.0 })
        .collect();
    Tensor::from_data(TensorData::new(m, [1, 1, n, n]), device)
}

/// The Transformer encoder.
#[derive(Module, Debug)]
pub struct Transformer {
    /// A step's token from its channels (sequences).
    pub step_map: Option<Linear>,
    /// Each feature's token weights, `[features, width]` (tabular rows).
    pub feature_weight: Option<Param<Tensor<2>>>,
    /// Each feature's token bias, `[features, width]` (tabular rows).
    pub feature_bias: Option<Param<Tensor<2>>>,
    /// The class token, `[1, width]` (not causal).
    pub class_token: Option<Param<Tensor<2>>>,
    /// The layers.
    pub layers: Vec<AttentionLayer>,
    /// The final normalisation of the embedding token.
    pub final_norm: Normaliser,
    #[module(skip)]
    shape: Option<[usize; 2]>,
    #[module(skip)]
    tokens: Option<Vec<usize>>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    width: usize,
    #[module(skip)]
    activation: Activation,
    #[module(skip)]
    dropout: f64,
}

impl Transformer {
    /// A freshly initialised encoder for `spec` (`kind: transformer`).
    pub fn new(spec: &EncoderSpec, device: &Device, rng: &mut ChaCha8Rng) -> Self {
        let p = &spec.params;
        let w = p.width;
        let norm_kind = match p.norm {
            Norm::None => Norm::Layer,
            n => n,
        };
        let norm = || Normaliser::new(norm_kind, w, p.groups(), device);
        let k = 1.0 / (w as f32).sqrt();
        let shape = p
            .sequence
            .map(|SequenceShape { channels, length }| [channels, length]);
        let (step_map, feature_weight, feature_bias) = match shape {
            Some([channels, _]) => (Some(linear(channels, w, device, rng)), None, None),
            None => (
                None,
                Some(uniform(spec.input_dim, w, k, device, rng)),
                Some(uniform(spec.token_count(), w, k, device, rng)),
            ),
        };
        let class_token = (!p.causal).then(|| uniform(1, w, k, device, rng));
        let layers = (0..p.depth)
            .map(|_| AttentionLayer {
                attend_norm: norm(),
                qkv: linear(w, 3 * w, device, rng),
                out: linear(w, w, device, rng),
                feed_norm: norm(),
                feed: vec![linear(w, 2 * w, device, rng), linear(2 * w, w, device, rng)],
            })
            .collect();
        Transformer {
            step_map,
            feature_weight,
            feature_bias,
            class_token,
            layers,
            final_norm: norm(),
            shape,
            tokens: spec.tokens.clone(),
            heads: p.heads(),
            width: w,
            activation: p.activation,
            dropout: p.dropout,
        }
    }

    /// The embedding of `x` (`[rows, features]`); dropout only with `rng`.
    /// A sequence's missing steps (NaN in every channel) are masked: no
    /// token attends to them, and a causal encoder's embedding is the state
    /// of each row's last step that holds a value.
    pub fn forward(&self, x: Tensor<2>, rng: Option<&mut ChaCha8Rng>) -> Tensor<2> {
        let [b, _] = x.dims();
        let w = self.width;
        let device = x.device();
        let (h, missing) = self.layers_out(x, rng);
        let n = h.dims()[1];
        // the class token, or the last step of a causal encoder
        let out: Tensor<2> = match (&self.class_token, &missing) {
            (None, Some(m)) => {
                let mut pick = vec![0f32; b * n];
                for (r, &t) in m.last.iter().enumerate() {
                    pick[r * n + t] = 1.0;
                }
                let pick: Tensor<3> = Tensor::from_data(TensorData::new(pick, [b, n, 1]), &device);
                (h * pick.expand([b, n, w])).sum_dim(1).reshape([b, w])
            }
            (None, None) => h.narrow(1, n - 1, 1).reshape([b, w]),
            (Some(_), _) => h.narrow(1, 0, 1).reshape([b, w]),
        };
        self.final_norm.normalise(out)
    }

    /// A sequence's state at every step after the final normalisation,
    /// `[rows, length, width]` (the class token left out), and the mask of
    /// its missing steps.
    pub fn states(
        &self,
        x: Tensor<2>,
        rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<3>, Option<StepMask>) {
        let (h, missing) = self.layers_out(x, rng);
        let h = match self.class_token {
            Some(_) => {
                let n = h.dims()[1];
                h.narrow(1, 1, n - 1)
            }
            None => h,
        };
        (per_step(&self.final_norm, h), missing)
    }

    /// Every token's output of the last layer, `[rows, tokens, width]`
    /// (the class token first when there is one).
    fn layers_out(
        &self,
        x: Tensor<2>,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> (Tensor<3>, Option<StepMask>) {
        let [b, d] = x.dims();
        let w = self.width;
        let device = x.device();
        let (x, missing) = match self.shape {
            Some(shape) => split_missing(x, shape),
            None => (x, None),
        };
        let tokens: Tensor<3> = match (self.shape, &self.step_map) {
            (Some([channels, length]), Some(map)) => {
                let steps = x.reshape([b, channels, length]).swap_dims(1, 2);
                per_step_map(map, steps) + positions(length, w, &device)
            }
            _ => {
                let weight = self.feature_weight.as_ref().map(|p| p.val());
                let bias = self.feature_bias.as_ref().map(|p| p.val());
                let (weight, bias) = (weight.expect("tabular"), bias.expect("tabular"));
                let per_feature = x.reshape([b, d, 1]) * weight.reshape([1, d, w]);
                let tokens = match &self.tokens {
                    // a token of several features (a categorical column's
                    // indicators) is their sum, its category's embedding:
                    // one product with the 0 / 1 map of features to tokens
                    Some(widths) => {
                        let t = widths.len();
                        let mut map = vec![0f32; d * t];
                        let mut feature = 0;
                        for (token, &n) in widths.iter().enumerate() {
                            for _ in 0..n {
                                map[feature * t + token] = 1.0;
                                feature += 1;
                            }
                        }
                        let map = Tensor::<2>::from_data(TensorData::new(map, [d, t]), &device);
                        per_feature
                            .swap_dims(1, 2)
                            .reshape([b * w, d])
                            .matmul(map)
                            .reshape([b, w, t])
                            .swap_dims(1, 2)
                    }
                    None => per_feature,
                };
                let t = tokens.dims()[1];
                tokens + bias.reshape([1, t, w])
            }
        };
        let mut h = match &self.class_token {
            Some(t) => {
                let cls: Tensor<3> = t.val().reshape([1, 1, w]).expand([b, 1, w]);
                Tensor::cat(vec![cls, tokens], 1)
            }
            None => tokens,
        };
        let n = h.dims()[1];
        let mut mask = self
            .class_token
            .is_none()
            .then(|| causal_mask(n, &device).expand([b, 1, n, n]));
        if let Some(m) = &missing {
            // -1e9 on the scores of every key that is a missing step
            let keys = m.valid.clone().neg().add_scalar(1.0).mul_scalar(-1e9);
            let keys = match self.class_token {
                Some(_) => Tensor::cat(vec![Tensor::zeros([b, 1], &device), keys], 1),
                None => keys,
            };
            let keys: Tensor<4> = keys.reshape([b, 1, 1, n]).expand([b, 1, n, n]);
            mask = Some(match mask {
                Some(c) => c + keys,
                None => keys,
            });
        }
        for layer in &self.layers {
            let a = self.attend(layer, per_step(&layer.attend_norm, h.clone()), mask.clone());
            h = h + drop3(a, self.dropout, rng.as_deref_mut());
            let f = per_step(&layer.feed_norm, h.clone());
            let f = activate(self.activation, per_step_map(&layer.feed[0], f));
            let f = per_step_map(&layer.feed[1], f);
            h = h + drop3(f, self.dropout, rng.as_deref_mut());
        }
        (h, missing)
    }

    /// Multi-head scaled dot-product self-attention of `x` (`[rows, tokens,
    /// width]`), `mask` added to the scores.
    fn attend(&self, layer: &AttentionLayer, x: Tensor<3>, mask: Option<Tensor<4>>) -> Tensor<3> {
        let [b, n, w] = x.dims();
        let (heads, dh) = (self.heads, w / self.heads);
        let qkv = per_step_map(&layer.qkv, x).chunk(3, 2);
        let split =
            |t: &Tensor<3>| -> Tensor<4> { t.clone().reshape([b, n, heads, dh]).swap_dims(1, 2) };
        let (q, k, v) = (split(&qkv[0]), split(&qkv[1]), split(&qkv[2]));
        let mut scores = q.matmul(k.swap_dims(2, 3)) * (1.0 / (dh as f64).sqrt());
        if let Some(m) = mask {
            scores = scores + m.expand([b, heads, n, n]);
        }
        let weights = activation::softmax(scores, 3);
        let o = weights.matmul(v).swap_dims(1, 2).reshape([b, n, w]);
        per_step_map(&layer.out, o)
    }

    /// The `[channels, length]` of the sequence it reads; `None` for
    /// tabular rows.
    pub fn shape(&self) -> Option<[usize; 2]> {
        self.shape
    }

    /// The weight of every layer, named (`tokens`, `attention1.qkv`, ...).
    pub fn layer_weights(&self) -> Vec<(String, ParamId, usize)> {
        let mut out = Vec::new();
        if let Some(m) = &self.step_map {
            out.push(("tokens".to_string(), m.weight.id, 2));
        }
        if let Some(wt) = &self.feature_weight {
            out.push(("tokens".to_string(), wt.id, 2));
        }
        for (i, l) in self.layers.iter().enumerate() {
            out.push((format!("attention{}.qkv", i + 1), l.qkv.weight.id, 2));
            out.push((format!("attention{}.feed", i + 1), l.feed[1].weight.id, 2));
        }
        out
    }

    /// Every weight matrix: what L1 and L2 penalties apply to.
    pub fn penalised(&self) -> Vec<Tensor<1>> {
        let mut out = Vec::new();
        if let Some(m) = &self.step_map {
            out.push(m.weight.val().flatten(0, 1));
        }
        if let Some(wt) = &self.feature_weight {
            out.push(wt.val().flatten(0, 1));
        }
        for l in &self.layers {
            for m in [&l.qkv, &l.out, &l.feed[0], &l.feed[1]] {
                out.push(m.weight.val().flatten(0, 1));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::training_device;
    use crate::config::{EncoderKind, EncoderParams};
    use crate::sequence::tests::rows;
    use rand::SeedableRng;

    fn spec(sequence: Option<SequenceShape>, causal: bool, input_dim: usize) -> EncoderSpec {
        let p = EncoderParams {
            kind: EncoderKind::Transformer,
            depth: 2,
            width: 8,
            heads: Some(2),
            causal,
            sequence,
            ..EncoderParams::default()
        };
        EncoderSpec::new(p, input_dim).unwrap()
    }

    fn run(enc: &Transformer, x: Vec<f32>, b: usize, d: usize) -> Vec<f32> {
        let t = Tensor::<2>::from_data(TensorData::new(x, [b, d]), &training_device());
        enc.forward(t, None).try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn tabular_and_sequence_rows_embed_in_the_width_and_a_seed_builds_the_same_network() {
        let device = training_device();
        for s in [
            spec(None, false, 6),
            spec(
                Some(SequenceShape {
                    channels: 2,
                    length: 3,
                }),
                false,
                6,
            ),
            spec(
                Some(SequenceShape {
                    channels: 2,
                    length: 3,
                }),
                true,
                6,
            ),
        ] {
            let enc = Transformer::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(1));
            let out = run(&enc, rows(4, 6, 2), 4, 6);
            assert_eq!(out.len(), 4 * 8);
            assert!(out.iter().all(|v| v.is_finite()));
            let again = Transformer::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(1));
            assert_eq!(run(&again, rows(4, 6, 2), 4, 6), out);
            // rows are embedded independently of each other
            let first = run(&enc, rows(4, 6, 2)[..6].to_vec(), 1, 6);
            for (a, b) in first.iter().zip(&out[..8]) {
                assert!((a - b).abs() < 1e-5, "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_categorical_columns_indicators_make_one_token() {
        let device = training_device();
        // a numeric column, then a categorical one of 3 indicators
        let s = spec(None, false, 4).with_tokens(vec![1, 3]);
        assert_eq!(s.token_count(), 2);
        let enc = Transformer::new(&s, &device, &mut ChaCha8Rng::seed_from_u64(9));
        // one bias per token; one weight per indicator
        assert_eq!(enc.feature_bias.as_ref().unwrap().val().dims(), [2, 8]);
        assert_eq!(enc.feature_weight.as_ref().unwrap().val().dims(), [4, 8]);
        let out = run(&enc, vec![0.5, 0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 1.0], 2, 4);
        assert_eq!(out.len(), 16);
        // the category moves the embedding
        assert!(
            out[..8]
                .iter()
                .zip(&out[8..])
                .any(|(a, b)| (a - b).abs() > 1e-4)
        );
        // sequences and all-numeric rows keep one token per feature
        assert_eq!(spec(None, false, 4).with_tokens(vec![1; 4]).tokens, None);
    }

    #[test]
    fn a_causal_transformer_sees_no_future_and_a_plain_one_sees_every_step() {
        let device = training_device();
        let length = 10;
        let shape = Some(SequenceShape {
            channels: 1,
            length,
        });
        let (causal, plain) = (spec(shape, true, length), spec(shape, false, length));
        let causal = Transformer::new(&causal, &device, &mut ChaCha8Rng::seed_from_u64(3));
        let plain = Transformer::new(&plain, &device, &mut ChaCha8Rng::seed_from_u64(3));
        // the causal encoder's state at every step, [1, length, width]
        let states = |x: Vec<f32>| -> Vec<f32> {
            let t = Tensor::<2>::from_data(TensorData::new(x, [1, length]), &device);
            let tokens = per_step_map(
                causal.step_map.as_ref().unwrap(),
                t.reshape([1, 1, length]).swap_dims(1, 2),
            ) + positions(length, 8, &device);
            let mut h = tokens;
            let mask = Some(causal_mask(length, &device));
            for layer in &causal.layers {
                let a = causal.attend(layer, per_step(&layer.attend_norm, h.clone()), mask.clone());
                h = h + a;
            }
            h.try_into_vec_as::<f32>().unwrap()
        };
        let x = rows(1, length, 4);
        let base = states(x.clone());
        let at = 6;
        let mut y = x.clone();
        y[at] += 1.0;
        let moved = states(y.clone());
        for t in 0..length {
            let changed = (0..8).any(|u| (moved[t * 8 + u] - base[t * 8 + u]).abs() > 1e-6);
            assert_eq!(changed, t >= at, "step {t} after changing step {at}");
        }
        // the plain encoder's embedding moves with any step
        let mut first = x.clone();
        first[0] += 1.0;
        assert_ne!(run(&plain, first, 1, length), run(&plain, x, 1, length));
    }
}
