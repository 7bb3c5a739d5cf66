//! Classification losses per row, from logits and one-hot targets, plus the
//! weighted mean the training objective takes.
//!
//! - cross-entropy with label smoothing `eps`: targets `(1 - eps) * onehot + eps / k`;
//! - focal (Lin et al. 2017): `-sum_k q_k (1 - p_k)^gamma log p_k`;
//! - generalised cross-entropy (Zhang & Sabuncu 2018): `(1 - p_y^q) / q`,
//!   cross-entropy as `q -> 0`, MAE at `q = 1`;
//! - symmetric cross-entropy (Wang et al. 2019): `alpha * CE + beta * RCE`,
//!   `RCE = -sum_k p_k log(max(q_k, 1e-4))`.

use burn::tensor::{Tensor, activation};
use serde::{Deserialize, Serialize};

use crate::config::LossKind;

/// A loss with its constants.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossSpec {
    /// Which loss.
    pub kind: LossKind,
    /// Label smoothing (0: none).
    pub label_smoothing: f64,
    /// Focal loss exponent.
    pub focal_gamma: f64,
    /// GCE's `q`.
    pub gce_q: f64,
    /// SCE's weight of cross-entropy.
    pub sce_alpha: f64,
    /// SCE's weight of reverse cross-entropy.
    pub sce_beta: f64,
}

impl LossSpec {
    /// Plain cross-entropy.
    pub fn cross_entropy() -> LossSpec {
        LossSpec {
            kind: LossKind::CrossEntropy,
            label_smoothing: 0.0,
            focal_gamma: 2.0,
            gce_q: 0.7,
            sce_alpha: 0.1,
            sce_beta: 1.0,
        }
    }

    /// The loss of every row: `logits` and `onehot` are `[rows, k]`.
    pub fn per_row(&self, logits: Tensor<2>, onehot: Tensor<2>) -> Tensor<1> {
        let [rows, k] = logits.dims();
        let log_p = activation::log_softmax(logits, 1);
        let eps = self.label_smoothing;
        let q = if eps > 0.0 {
            onehot.mul_scalar(1.0 - eps).add_scalar(eps / k as f64)
        } else {
            onehot
        };
        let row = match self.kind {
            LossKind::CrossEntropy => (q * log_p).sum_dim(1).neg(),
            LossKind::Focal => {
                let p = log_p.clone().exp();
                let modulator = p
                    .neg()
                    .add_scalar(1.0)
                    .clamp_min(0.0)
                    .powf_scalar(self.focal_gamma);
                (q * modulator * log_p).sum_dim(1).neg()
            }
            LossKind::Gce => {
                let p = log_p.exp();
                let p_y = (q * p).sum_dim(1).clamp_min(1e-12);
                p_y.powf_scalar(self.gce_q)
                    .neg()
                    .add_scalar(1.0)
                    .div_scalar(self.gce_q)
            }
            LossKind::Sce => {
                let ce = (q.clone() * log_p.clone()).sum_dim(1).neg();
                let p = log_p.exp();
                let rce = (p * q.clamp(1e-4, 1.0).log()).sum_dim(1).neg();
                ce.mul_scalar(self.sce_alpha) + rce.mul_scalar(self.sce_beta)
            }
        };
        row.reshape([rows])
    }

    /// `sum_i w_i loss_i` for weights `w` that already sum to 1 over the rows.
    pub fn weighted(&self, logits: Tensor<2>, onehot: Tensor<2>, w: Tensor<1>) -> Tensor<1> {
        (self.per_row(logits, onehot) * w).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn eval(spec: LossSpec, logits: Vec<f32>, onehot: Vec<f32>, k: usize) -> Vec<f32> {
        let device = crate::backend::training_device().without_autodiff();
        let n = logits.len() / k;
        let l = Tensor::<2>::from_data(TensorData::new(logits, [n, k]), &device);
        let q = Tensor::<2>::from_data(TensorData::new(onehot, [n, k]), &device);
        spec.per_row(l, q).try_into_vec_as::<f32>().unwrap()
    }

    #[test]
    fn losses_match_their_formulas() {
        // p = softmax([ln 3, 0]) = [0.75, 0.25]; the label is class 0
        let logits = vec![3f32.ln(), 0.0];
        let onehot = vec![1.0, 0.0];
        let ce = LossSpec::cross_entropy();
        let v = eval(ce, logits.clone(), onehot.clone(), 2)[0];
        assert!((v - (-(0.75f32).ln())).abs() < 1e-5, "{v}");
        let smooth = LossSpec {
            label_smoothing: 0.2,
            ..ce
        };
        let v = eval(smooth, logits.clone(), onehot.clone(), 2)[0];
        let want = -(0.9 * 0.75f32.ln() + 0.1 * 0.25f32.ln());
        assert!((v - want).abs() < 1e-5, "{v} vs {want}");
        let focal = LossSpec {
            kind: LossKind::Focal,
            ..ce
        };
        let v = eval(focal, logits.clone(), onehot.clone(), 2)[0];
        assert!((v - 0.0625 * -(0.75f32).ln()).abs() < 1e-5, "{v}");
        let gce = LossSpec {
            kind: LossKind::Gce,
            gce_q: 0.5,
            ..ce
        };
        let v = eval(gce, logits.clone(), onehot.clone(), 2)[0];
        assert!((v - (1.0 - 0.75f32.sqrt()) / 0.5).abs() < 1e-5, "{v}");
        let sce = LossSpec {
            kind: LossKind::Sce,
            sce_alpha: 1.0,
            sce_beta: 1.0,
            ..ce
        };
        let v = eval(sce, logits, onehot, 2)[0];
        let want = -(0.75f32).ln() + 0.25 * -(1e-4f32).ln();
        assert!((v - want).abs() < 1e-4, "{v} vs {want}");
    }
}
