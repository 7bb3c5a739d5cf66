//! Robustness figures from accuracy-versus-severity curves (area under the
//! curve, ImageNet-C's corruption error and relative corruption error), and
//! the adversarial perturbations of differentiable models (FGSM, PGD).

use gigo_ml::FittedModel;
use gigo_ml::Matrix;
use gigo_ml::MlError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// L-infinity budget of the adversarial perturbation at severities 0–5, in
/// the model's standardised input units (standard deviations of each numeric
/// feature at training time).
pub const EPSILONS: [f64; 6] = [0.0, 0.05, 0.1, 0.2, 0.3, 0.5];

/// How adversarial inputs are made for differentiable models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// Projected gradient descent (Madry et al. 2018): `pgd_steps` signed
    /// gradient steps of 2.5 eps / steps, projected back into the eps-ball;
    /// starts at the clean row (no random start, so runs are reproducible).
    #[default]
    Pgd,
    /// The fast gradient sign method (Goodfellow et al. 2015): one step of eps.
    Fgsm,
    /// No adversarial evaluation.
    None,
}

impl Attack {
    /// The name used in reports (`adversarial_pgd`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Attack::Pgd => "adversarial_pgd",
            Attack::Fgsm => "adversarial_fgsm",
            Attack::None => "none",
        }
    }
}

/// `x` moved within an L-infinity ball of radius `eps` (numeric columns only:
/// `movable[j]`) to raise the model's loss on labels `y`. `None` when the
/// model is not differentiable.
pub fn attack(
    model: &dyn FittedModel,
    x: &Matrix,
    y: &[u32],
    movable: &[bool],
    eps: f64,
    how: Attack,
    steps: usize,
) -> Option<Result<Matrix, MlError>> {
    let (n_steps, step) = match how {
        Attack::None => return None,
        Attack::Fgsm => (1, eps),
        Attack::Pgd => (steps.max(1), 2.5 * eps / steps.max(1) as f64),
    };
    let mut adv = x.clone();
    for _ in 0..n_steps {
        let g = match model.loss_gradient(&adv, y)? {
            Ok(g) => g,
            Err(e) => return Some(Err(e)),
        };
        for i in 0..x.rows {
            let (clean, grad) = (x.row(i), g.row(i));
            let row = adv.row_mut(i);
            for j in 0..x.cols {
                if !movable.get(j).copied().unwrap_or(false) {
                    continue;
                }
                let s = if grad[j] > 0.0 {
                    1.0
                } else if grad[j] < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                let lo = clean[j] as f64 - eps;
                let hi = clean[j] as f64 + eps;
                row[j] = (row[j] as f64 + step * s).clamp(lo, hi) as f32;
            }
        }
    }
    Some(Ok(adv))
}

/// Area under a curve of `values` (accuracy) over `severities` (the clean
/// point at severity 0 included), by trapezoids, divided by the severity
/// range: a model whose accuracy never drops gets its clean accuracy.
pub fn curve_auc(severities: &[f64], values: &[f64]) -> f64 {
    let n = severities.len().min(values.len());
    if n == 0 {
        return f64::NAN;
    }
    if n == 1 {
        return values[0];
    }
    let mut area = 0.0;
    for i in 1..n {
        area += (severities[i] - severities[i - 1]) * (values[i] + values[i - 1]) / 2.0;
    }
    let range = severities[n - 1] - severities[0];
    if range > 0.0 { area / range } else { values[0] }
}

/// ImageNet-C's corruption error of one corruption: the model's error summed
/// over severities, over the reference model's. `None` when the reference
/// makes no error at all.
pub fn corruption_error(errors: &[f64], reference: &[f64]) -> Option<f64> {
    let r: f64 = reference.iter().sum();
    (r > 0.0).then(|| errors.iter().sum::<f64>() / r)
}

/// ImageNet-C's relative corruption error: how much the error grows over the
/// clean error, summed over severities, over the same growth of the
/// reference. `None` when the reference's error does not grow.
pub fn relative_corruption_error(
    errors: &[f64],
    clean: f64,
    reference: &[f64],
    reference_clean: f64,
) -> Option<f64> {
    let r: f64 = reference.iter().map(|e| e - reference_clean).sum();
    (r > 0.0).then(|| errors.iter().map(|e| e - clean).sum::<f64>() / r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_flat_curve_is_its_value_and_a_drop_lowers_it() {
        let s = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        assert!((curve_auc(&s, &[0.8; 6]) - 0.8).abs() < 1e-12);
        // 1.0 falling linearly to 0.0: area 0.5
        let v: Vec<f64> = s.iter().map(|x| 1.0 - x / 5.0).collect();
        assert!((curve_auc(&s, &v) - 0.5).abs() < 1e-12);
        // uneven severities: 0, 1, 5 with values 1, 1, 0 → (1 + 2) / 5
        assert!((curve_auc(&[0.0, 1.0, 5.0], &[1.0, 1.0, 0.0]) - 0.6).abs() < 1e-12);
    }

    #[test]
    fn corruption_errors_follow_imagenet_c() {
        // errors 0.2, 0.4 against the reference's 0.4, 0.8: CE 0.5
        assert_eq!(corruption_error(&[0.2, 0.4], &[0.4, 0.8]), Some(0.5));
        assert_eq!(corruption_error(&[0.2], &[0.0]), None);
        // growth over clean: (0.1 + 0.3) / (0.2 + 0.6) = 0.5
        let rce = relative_corruption_error(&[0.2, 0.4], 0.1, &[0.4, 0.8], 0.2).unwrap();
        assert!((rce - 0.5).abs() < 1e-12);
        assert_eq!(relative_corruption_error(&[0.3], 0.1, &[0.2], 0.2), None);
    }

    /// A linear model whose loss gradient is known: logits = x * w (one
    /// feature, two classes), so the gradient of class 0's loss points along
    /// (p1 - 0) * (w1 - w0).
    struct Linear;

    impl FittedModel for Linear {
        fn name(&self) -> &'static str {
            "linear"
        }
        fn n_features(&self) -> usize {
            2
        }
        fn n_classes(&self) -> usize {
            2
        }
        fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
            let mut out = Vec::new();
            for r in x.iter_rows() {
                let p1 = 1.0 / (1.0 + (-(r[0] + r[1])).exp());
                out.extend([1.0 - p1, p1]);
            }
            Ok(Matrix::new(x.rows, 2, out))
        }
        fn loss_gradient(&self, x: &Matrix, y: &[u32]) -> Option<Result<Matrix, MlError>> {
            let p = self.predict_proba(x).ok()?;
            let mut g = Vec::new();
            for (i, &label) in y.iter().enumerate() {
                // d(-log p_y)/dz = p1 - [y == 1], dz/dx_j = 1
                let d = p.get(i, 1) - if label == 1 { 1.0 } else { 0.0 };
                g.extend([d, d]);
            }
            Some(Ok(Matrix::new(x.rows, 2, g)))
        }
        fn save(&self) -> Result<Vec<u8>, MlError> {
            Ok(Vec::new())
        }
        fn load(_: &[u8]) -> Result<Linear, MlError> {
            Ok(Linear)
        }
    }

    fn linear() -> Linear {
        Linear
    }

    #[test]
    fn attacks_stay_in_the_ball_move_only_numeric_columns_and_raise_the_loss() {
        let m = linear();
        let x = Matrix::new(3, 2, vec![0.5, 0.5, -1.0, 0.2, 2.0, -0.3]);
        let y = [1, 0, 1];
        let movable = [true, false];
        let loss = |x: &Matrix| {
            let p = m.predict_proba(x).unwrap();
            (0..3)
                .map(|i| -(p.get(i, y[i] as usize) as f64).ln())
                .sum::<f64>()
        };
        for how in [Attack::Fgsm, Attack::Pgd] {
            let adv = attack(&m, &x, &y, &movable, 0.3, how, 10).unwrap().unwrap();
            for i in 0..3 {
                assert!((adv.get(i, 0) - x.get(i, 0)).abs() <= 0.3 + 1e-6);
                assert_eq!(adv.get(i, 1), x.get(i, 1), "a one-hot column moved");
            }
            assert!(
                loss(&adv) > loss(&x) + 0.1,
                "{how:?} did not raise the loss"
            );
        }
        // eps 0 is the identity
        let same = attack(&m, &x, &y, &movable, 0.0, Attack::Pgd, 5)
            .unwrap()
            .unwrap();
        assert_eq!(same, x);
        assert!(attack(&m, &x, &y, &movable, 0.3, Attack::None, 5).is_none());
    }
}
