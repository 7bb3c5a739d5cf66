//! Clean metrics of one model on one table, from predicted probabilities:
//! accuracy, balanced accuracy, macro F1, per-class precision / recall / F1,
//! geometric mean, confusion matrix (counting metrics from
//! `gigo_ml::metrics`), and the probabilistic ones: log-loss, Brier score and
//! expected calibration error.

use gigo_ml::metrics::{Confusion, balanced_accuracy, geometric_mean};
use serde::Serialize;

/// Bins of the expected calibration error (Guo et al. 2017 use 15).
pub const ECE_BINS: usize = 15;

/// Probabilities are clipped to [EPS, 1 - EPS] in the log-loss, as scikit-learn does.
const EPS: f64 = 1e-15;

/// Metrics of one model on one table.
#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    /// Rows scored.
    pub rows: usize,
    /// Fraction of rows predicted right.
    pub accuracy: f64,
    /// Mean recall over classes.
    pub balanced_accuracy: f64,
    /// Mean F1 over classes.
    pub macro_f1: f64,
    /// Geometric mean of the recalls.
    pub geometric_mean: f64,
    /// Mean negative log-likelihood of the true class.
    pub log_loss: f64,
    /// Mean squared distance between probabilities and the one-hot truth
    /// (summed over classes, as in the multi-class Brier score).
    pub brier: f64,
    /// Expected calibration error over [`ECE_BINS`] equal-width confidence bins.
    pub ece: f64,
    /// Per class: precision, recall, F1, support.
    pub per_class: Vec<ClassMetrics>,
    /// Rows by true class (rows) and predicted class (columns).
    pub confusion: Vec<Vec<f64>>,
}

/// Metrics of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    /// Precision.
    pub precision: f64,
    /// Recall (sensitivity).
    pub recall: f64,
    /// Specificity: the fraction of the other classes' rows not predicted
    /// as this class.
    pub specificity: f64,
    /// F1.
    pub f1: f64,
    /// True rows of the class.
    pub support: f64,
}

/// The class with the highest probability in each row (the first on ties).
pub fn argmax_rows(probs: &[f32], classes: usize) -> Vec<u32> {
    probs
        .chunks(classes)
        .map(|row| {
            let mut best = 0;
            for (j, &p) in row.iter().enumerate() {
                if p > row[best] {
                    best = j;
                }
            }
            best as u32
        })
        .collect()
}

/// Metrics from row-major probabilities (`rows x classes`) and true classes.
pub fn metrics(probs: &[f32], truth: &[u32], classes: usize) -> Metrics {
    let predicted = argmax_rows(probs, classes);
    let n = truth.len();
    let cm =
        Confusion::from_labels(truth, &predicted, classes, None).unwrap_or_else(|_| Confusion {
            classes,
            counts: vec![0.0; classes * classes],
        });
    let correct = truth.iter().zip(&predicted).filter(|(t, p)| t == p).count();
    let per_class: Vec<ClassMetrics> = (0..classes)
        .map(|c| ClassMetrics {
            precision: cm.precision(c),
            recall: cm.sensitivity(c),
            specificity: cm.specificity(c),
            f1: cm.f1(c),
            support: cm.support(c),
        })
        .collect();
    let macro_f1 = per_class.iter().map(|c| c.f1).sum::<f64>() / classes.max(1) as f64;
    let mut log_loss = 0.0;
    let mut brier = 0.0;
    for (row, &t) in probs.chunks(classes).zip(truth) {
        let p = f64::from(row[t as usize]).clamp(EPS, 1.0 - EPS);
        log_loss -= p.ln();
        for (j, &q) in row.iter().enumerate() {
            let y = if j == t as usize { 1.0 } else { 0.0 };
            brier += (f64::from(q) - y).powi(2);
        }
    }
    let confusion = (0..classes)
        .map(|t| (0..classes).map(|p| cm.get(t, p)).collect())
        .collect();
    Metrics {
        rows: n,
        accuracy: correct as f64 / n.max(1) as f64,
        balanced_accuracy: balanced_accuracy(&cm),
        macro_f1,
        geometric_mean: geometric_mean(&cm, None),
        log_loss: log_loss / n.max(1) as f64,
        brier: brier / n.max(1) as f64,
        ece: expected_calibration_error(probs, truth, classes, ECE_BINS),
        per_class,
        confusion,
    }
}

/// ECE: rows binned by confidence (max probability) into `bins` equal-width
/// bins of (0, 1]; the row-weighted mean of |accuracy - mean confidence|.
pub fn expected_calibration_error(
    probs: &[f32],
    truth: &[u32],
    classes: usize,
    bins: usize,
) -> f64 {
    let predicted = argmax_rows(probs, classes);
    let mut count = vec![0usize; bins];
    let mut conf = vec![0.0; bins];
    let mut hits = vec![0.0; bins];
    for ((row, &t), &p) in probs.chunks(classes).zip(truth).zip(&predicted) {
        let c = f64::from(row[p as usize]);
        // Bin b holds confidences in (b/bins, (b+1)/bins].
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        count[b] += 1;
        conf[b] += c;
        if p == t {
            hits[b] += 1.0;
        }
    }
    let n = truth.len().max(1) as f64;
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| {
            let m = count[b] as f64;
            (m / n) * (hits[b] / m - conf[b] / m).abs()
        })
        .sum()
}

/// Fraction of rows whose predicted class differs between two predictions.
pub fn flip_rate(a: &[u32], b: &[u32]) -> f64 {
    let flips = a.iter().zip(b).filter(|(x, y)| x != y).count();
    flips as f64 / a.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_hand_computed_values() {
        // 4 rows, 2 classes. Predictions: 0, 1, 1, 0; truth 0, 1, 0, 0.
        let probs = [0.9, 0.1, 0.2, 0.8, 0.4, 0.6, 0.7, 0.3];
        let truth = [0, 1, 0, 0];
        let m = metrics(&probs, &truth, 2);
        assert_eq!(m.accuracy, 0.75);
        // Recalls: class 0 2/3, class 1 1/1.
        assert!((m.balanced_accuracy - (2.0 / 3.0 + 1.0) / 2.0).abs() < 1e-12);
        // Precision: class 0 2/2, class 1 1/2; F1: 0.8 and 2/3.
        assert!((m.macro_f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
        assert!((m.geometric_mean - (2.0f64 / 3.0).sqrt()).abs() < 1e-9);
        let ll = -(0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln() + 0.7f64.ln()) / 4.0;
        assert!((m.log_loss - ll).abs() < 1e-6);
        let brier = (2.0 * 0.01 + 2.0 * 0.04 + 2.0 * 0.36 + 2.0 * 0.09) / 4.0;
        assert!((m.brier - brier).abs() < 1e-6);
        assert_eq!(m.confusion, vec![vec![2.0, 1.0], vec![0.0, 1.0]]);
        // Specificity: class 0 = 1 of 1 other-class rows not called 0;
        // class 1 = 2 of 3 class-0 rows not called 1.
        assert_eq!(m.per_class[0].specificity, 1.0);
        assert!((m.per_class[1].specificity - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn ece_matches_a_hand_computed_case() {
        // Confidences 0.9 (right), 0.9 (wrong), 0.6 (right): bins 13 and 8 of 15.
        let probs = [0.9, 0.1, 0.1, 0.9, 0.6, 0.4];
        let truth = [0, 0, 0];
        let ece = expected_calibration_error(&probs, &truth, 2, 15);
        // Bin of 0.9: 2 rows, accuracy 0.5, confidence 0.9 -> |0.4| x 2/3;
        // bin of 0.6: 1 row, accuracy 1, confidence 0.6 -> |0.4| x 1/3.
        assert!((ece - 0.4).abs() < 1e-6, "{ece}");
        // A perfectly calibrated, certain model has ECE 0.
        assert_eq!(
            expected_calibration_error(&[1.0, 0.0, 0.0, 1.0], &[0, 1], 2, 15),
            0.0
        );
    }

    #[test]
    fn a_constant_prediction_never_flips() {
        let clean = argmax_rows(&[0.2, 0.8, 0.3, 0.7], 2);
        let noisy = argmax_rows(&[0.4, 0.6, 0.1, 0.9], 2);
        assert_eq!(flip_rate(&clean, &noisy), 0.0);
        assert_eq!(flip_rate(&[0, 1], &[1, 1]), 0.5);
    }
}
