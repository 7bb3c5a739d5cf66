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
    let mut t = Tally::new(classes);
    t.add(probs, truth);
    t.finish()
}

/// Metrics added up block by block: after every block's rows, in order,
/// [`Tally::finish`] gives exactly what [`metrics`] gives over all of them at
/// once (counts, and sums that run in row order).
#[derive(Debug, Clone)]
pub struct Tally {
    classes: usize,
    /// Row-major `[true * classes + predicted]`.
    confusion: Vec<f64>,
    correct: usize,
    rows: usize,
    log_loss: f64,
    brier: f64,
    calibration: Calibration,
}

impl Tally {
    /// Nothing counted yet, for `classes` classes.
    pub fn new(classes: usize) -> Tally {
        Tally {
            classes,
            confusion: vec![0.0; classes * classes],
            correct: 0,
            rows: 0,
            log_loss: 0.0,
            brier: 0.0,
            calibration: Calibration::new(ECE_BINS),
        }
    }

    /// Rows counted.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Adds rows: row-major probabilities (`rows x classes`) and their true
    /// classes (each below `classes`).
    pub fn add(&mut self, probs: &[f32], truth: &[u32]) {
        let k = self.classes;
        let predicted = argmax_rows(probs, k);
        for ((row, &t), &p) in probs.chunks(k).zip(truth).zip(&predicted) {
            let (t, p) = (t as usize, p as usize);
            if let Some(c) = self.confusion.get_mut(t * k + p) {
                *c += 1.0;
            }
            if t == p {
                self.correct += 1;
            }
            let q = f64::from(row[t]).clamp(EPS, 1.0 - EPS);
            self.log_loss -= q.ln();
            for (j, &q) in row.iter().enumerate() {
                let y = if j == t { 1.0 } else { 0.0 };
                self.brier += (f64::from(q) - y).powi(2);
            }
            self.calibration.add(f64::from(row[p]), t == p);
        }
        self.rows += truth.len();
    }

    /// The metrics of every row added.
    pub fn finish(&self) -> Metrics {
        let classes = self.classes;
        let n = self.rows.max(1) as f64;
        let cm = Confusion {
            classes,
            counts: self.confusion.clone(),
        };
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
        let confusion = (0..classes)
            .map(|t| (0..classes).map(|p| cm.get(t, p)).collect())
            .collect();
        Metrics {
            rows: self.rows,
            accuracy: self.correct as f64 / n,
            balanced_accuracy: balanced_accuracy(&cm),
            macro_f1,
            geometric_mean: geometric_mean(&cm, None),
            log_loss: self.log_loss / n,
            brier: self.brier / n,
            ece: self.calibration.error(self.rows),
            per_class,
            confusion,
        }
    }
}

/// Rows binned by confidence for the expected calibration error: bin `b` of
/// `bins` holds confidences in (b/bins, (b+1)/bins].
#[derive(Debug, Clone)]
struct Calibration {
    count: Vec<usize>,
    confidence: Vec<f64>,
    hits: Vec<f64>,
}

impl Calibration {
    fn new(bins: usize) -> Calibration {
        Calibration {
            count: vec![0; bins],
            confidence: vec![0.0; bins],
            hits: vec![0.0; bins],
        }
    }

    /// A row predicted with confidence `c`, rightly or not.
    fn add(&mut self, c: f64, hit: bool) {
        let bins = self.count.len();
        let b = ((c * bins as f64).ceil() as usize).clamp(1, bins) - 1;
        self.count[b] += 1;
        self.confidence[b] += c;
        if hit {
            self.hits[b] += 1.0;
        }
    }

    /// The row-weighted mean of |accuracy - mean confidence| over `rows` rows.
    fn error(&self, rows: usize) -> f64 {
        let n = rows.max(1) as f64;
        (0..self.count.len())
            .filter(|&b| self.count[b] > 0)
            .map(|b| {
                let m = self.count[b] as f64;
                (m / n) * (self.hits[b] / m - self.confidence[b] / m).abs()
            })
            .sum()
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
    let mut cal = Calibration::new(bins);
    for ((row, &t), p) in probs
        .chunks(classes)
        .zip(truth)
        .zip(argmax_rows(probs, classes))
    {
        cal.add(f64::from(row[p as usize]), p == t);
    }
    cal.error(truth.len())
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
    fn a_tally_over_blocks_gives_the_figures_of_all_rows_at_once() {
        // 3 classes, 7 rows, with ties and a confidence on a bin edge.
        let probs = [
            0.5, 0.3, 0.2, 0.1, 0.8, 0.1, 0.4, 0.4, 0.2, 0.2, 0.2, 0.6, 0.6, 0.2, 0.2, 0.0, 0.0,
            1.0, 0.3, 0.3, 0.4,
        ];
        let truth = [0, 1, 1, 2, 2, 0, 1];
        let whole = metrics(&probs, &truth, 3);
        for cut in 0..=truth.len() {
            let mut t = Tally::new(3);
            t.add(&probs[..cut * 3], &truth[..cut]);
            t.add(&probs[cut * 3..], &truth[cut..]);
            let m = t.finish();
            assert_eq!(format!("{m:?}"), format!("{whole:?}"), "cut at {cut}");
        }
        assert_eq!(whole.rows, 7);
        assert!(
            (whole.accuracy - 3.0 / 7.0).abs() < 1e-12,
            "{}",
            whole.accuracy
        );
        assert_eq!(
            whole.ece,
            expected_calibration_error(&probs, &truth, 3, ECE_BINS)
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
