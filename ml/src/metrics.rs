//! Classification metrics for imbalanced data: per-class sensitivity and
//! specificity, balanced accuracy, the geometric mean of recalls, and an
//! imbalanced classification report (precision, recall, specificity, F1,
//! geometric mean, index balanced accuracy, support per class), with the
//! definitions of scikit-learn and imbalanced-learn so that figures agree
//! with what users compute there.
//!
//! Everything starts from a [`Confusion`] matrix of (optionally weighted)
//! counts: rows are true classes, columns predicted classes.
//!
//! # Example
//! ```
//! use gigo_ml::metrics::{Confusion, balanced_accuracy, geometric_mean};
//! let cm = Confusion::from_labels(&[0, 1, 2, 2, 2], &[0, 0, 2, 2, 1], 3, None).unwrap();
//! // recalls 1, 0, 2/3
//! assert!((balanced_accuracy(&cm) - 5.0 / 9.0).abs() < 1e-12);
//! assert_eq!(geometric_mean(&cm, None), 0.0);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::MlError;

/// A confusion matrix: `count(t, p)` rows (or total weight) of true class
/// `t` predicted as `p`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// Number of classes.
    pub classes: usize,
    /// Counts, row-major: `counts[t * classes + p]`.
    pub counts: Vec<f64>,
}

impl Confusion {
    /// Counts `truth` against `predicted` (class indices below `classes`),
    /// each row weighing `weights[i]` (or 1).
    pub fn from_labels(
        truth: &[u32],
        predicted: &[u32],
        classes: usize,
        weights: Option<&[f64]>,
    ) -> Result<Confusion, MlError> {
        if truth.len() != predicted.len() {
            return Err(MlError::data(format!(
                "{} true labels but {} predictions",
                truth.len(),
                predicted.len()
            )));
        }
        if let Some(w) = weights
            && w.len() != truth.len()
        {
            return Err(MlError::data(format!(
                "{} weights for {} rows",
                w.len(),
                truth.len()
            )));
        }
        let mut counts = vec![0.0; classes * classes];
        for (i, (&t, &p)) in truth.iter().zip(predicted).enumerate() {
            let (t, p) = (t as usize, p as usize);
            if t >= classes || p >= classes {
                return Err(MlError::data(format!(
                    "row {i}: class index {} is not below the {classes} classes",
                    t.max(p)
                )));
            }
            counts[t * classes + p] += weights.map_or(1.0, |w| w[i]);
        }
        Ok(Confusion { classes, counts })
    }

    /// Rows of true class `t` predicted as `p`.
    pub fn get(&self, t: usize, p: usize) -> f64 {
        self.counts[t * self.classes + p]
    }

    /// Total count.
    pub fn total(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// Rows whose true class is `c` (its support).
    pub fn support(&self, c: usize) -> f64 {
        (0..self.classes).map(|p| self.get(c, p)).sum()
    }

    /// Rows predicted as `c`.
    pub fn predicted(&self, c: usize) -> f64 {
        (0..self.classes).map(|t| self.get(t, c)).sum()
    }

    /// Sensitivity (recall) of `c`: tp / (tp + fn); 0 when `c` has no rows.
    pub fn sensitivity(&self, c: usize) -> f64 {
        ratio(self.get(c, c), self.support(c))
    }

    /// Specificity of `c`: tn / (tn + fp), the recall of "not c"; 0 when
    /// every row is of class `c`.
    pub fn specificity(&self, c: usize) -> f64 {
        let negatives = self.total() - self.support(c);
        let fp = self.predicted(c) - self.get(c, c);
        ratio(negatives - fp, negatives)
    }

    /// Precision of `c`: tp / (tp + fp); 0 when nothing is predicted as `c`.
    pub fn precision(&self, c: usize) -> f64 {
        ratio(self.get(c, c), self.predicted(c))
    }

    /// F1 of `c`: the harmonic mean of precision and recall (0 when both are 0).
    pub fn f1(&self, c: usize) -> f64 {
        let (p, r) = (self.precision(c), self.sensitivity(c));
        ratio(2.0 * p * r, p + r)
    }

    /// Classes that occur in the truth or the predictions.
    fn present(&self) -> Vec<usize> {
        (0..self.classes)
            .filter(|&c| self.support(c) > 0.0 || self.predicted(c) > 0.0)
            .collect()
    }
}

/// `a / b`, 0 when `b` is 0 (scikit-learn's `zero_division=0`).
fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Balanced accuracy: the mean recall over the classes that have rows
/// (scikit-learn's `balanced_accuracy_score`). 0 for an empty matrix.
pub fn balanced_accuracy(cm: &Confusion) -> f64 {
    let with_rows: Vec<usize> = (0..cm.classes).filter(|&c| cm.support(c) > 0.0).collect();
    if with_rows.is_empty() {
        return 0.0;
    }
    with_rows.iter().map(|&c| cm.sensitivity(c)).sum::<f64>() / with_rows.len() as f64
}

/// Geometric mean of the per-class recalls over the classes present in the
/// truth or the predictions (imbalanced-learn's `geometric_mean_score`,
/// `average="multiclass"`): 0 as soon as one class is never recognised,
/// unless `correction` replaces the zero recalls.
pub fn geometric_mean(cm: &Confusion, correction: Option<f64>) -> f64 {
    let classes = cm.present();
    if classes.is_empty() {
        return 0.0;
    }
    let mut log_sum = 0.0;
    for &c in &classes {
        let mut r = cm.sensitivity(c);
        if r == 0.0 {
            match correction {
                Some(x) => r = x,
                None => return 0.0,
            }
        }
        log_sum += r.ln();
    }
    (log_sum / classes.len() as f64).exp()
}

/// Sensitivity, specificity and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SensitivitySpecificity {
    /// Recall of the class.
    pub sensitivity: f64,
    /// Recall of every other class taken together.
    pub specificity: f64,
    /// Rows (or weight) of the class.
    pub support: f64,
}

/// Sensitivity and specificity of every class (one-vs-rest).
pub fn sensitivity_specificity(cm: &Confusion) -> Vec<SensitivitySpecificity> {
    (0..cm.classes)
        .map(|c| SensitivitySpecificity {
            sensitivity: cm.sensitivity(c),
            specificity: cm.specificity(c),
            support: cm.support(c),
        })
        .collect()
}

/// One line of the imbalanced classification report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportLine {
    /// Class name (or `avg / total`).
    pub class: String,
    /// Precision.
    pub precision: f64,
    /// Recall (sensitivity).
    pub recall: f64,
    /// Specificity.
    pub specificity: f64,
    /// F1 score.
    pub f1: f64,
    /// Geometric mean of sensitivity and specificity (one-vs-rest).
    pub geometric_mean: f64,
    /// Index balanced accuracy of that geometric mean (García et al. 2009):
    /// `(1 + alpha * (sensitivity - specificity)) * geometric_mean²`.
    pub iba: f64,
    /// Rows of the class.
    pub support: f64,
}

/// imbalanced-learn's `classification_report_imbalanced`: a line per class
/// and a support-weighted average line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImbalancedReport {
    /// One line per class, in class order.
    pub classes: Vec<ReportLine>,
    /// Support-weighted averages (`avg / total`); its support is the total.
    pub average: ReportLine,
    /// The `alpha` of the index balanced accuracy.
    pub alpha: f64,
}

/// The imbalanced classification report of `cm`, with `names[c]` naming
/// class `c` and `alpha` (imbalanced-learn's default: 0.1) weighting the
/// index balanced accuracy. Lists every class of the matrix.
///
/// # Example
/// ```
/// use gigo_ml::metrics::{Confusion, classification_report_imbalanced};
/// let cm = Confusion::from_labels(&[0, 1, 2, 2, 2], &[0, 0, 2, 2, 1], 3, None).unwrap();
/// let names = ["class 0", "class 1", "class 2"].map(String::from);
/// let r = classification_report_imbalanced(&cm, &names, 0.1);
/// assert!((r.average.precision - 0.7).abs() < 1e-12);
/// println!("{}", r.to_text(2));
/// ```
pub fn classification_report_imbalanced(
    cm: &Confusion,
    names: &[String],
    alpha: f64,
) -> ImbalancedReport {
    let classes: Vec<ReportLine> = (0..cm.classes)
        .map(|c| {
            let (sen, spe) = (cm.sensitivity(c), cm.specificity(c));
            let g = (sen * spe).sqrt();
            ReportLine {
                class: names.get(c).cloned().unwrap_or_else(|| c.to_string()),
                precision: cm.precision(c),
                recall: sen,
                specificity: spe,
                f1: cm.f1(c),
                geometric_mean: g,
                iba: (1.0 + alpha * (sen - spe)) * g * g,
                support: cm.support(c),
            }
        })
        .collect();
    let total: f64 = classes.iter().map(|l| l.support).sum();
    let avg = |f: fn(&ReportLine) -> f64| -> f64 {
        if total == 0.0 {
            0.0
        } else {
            classes.iter().map(|l| f(l) * l.support).sum::<f64>() / total
        }
    };
    let average = ReportLine {
        class: "avg / total".into(),
        precision: avg(|l| l.precision),
        recall: avg(|l| l.recall),
        specificity: avg(|l| l.specificity),
        f1: avg(|l| l.f1),
        geometric_mean: avg(|l| l.geometric_mean),
        iba: avg(|l| l.iba),
        support: total,
    };
    ImbalancedReport {
        classes,
        average,
        alpha,
    }
}

impl ImbalancedReport {
    /// The report as text, laid out as imbalanced-learn prints it
    /// (`digits` decimals).
    pub fn to_text(&self, digits: usize) -> String {
        let width = self
            .classes
            .iter()
            .map(|l| l.class.chars().count())
            .chain([self.average.class.len(), digits])
            .max()
            .unwrap_or(0);
        let headers = ["pre", "rec", "spe", "f1", "geo", "iba", "sup"];
        let mut out = format!("{:>width$}  ", "");
        out += &headers.map(|h| format!("{h:>9}")).join(" ");
        out += "\n\n";
        let line = |l: &ReportLine| -> String {
            let nums = [
                l.precision,
                l.recall,
                l.specificity,
                l.f1,
                l.geometric_mean,
                l.iba,
            ]
            .map(|v| format!("{:>9}", format!("{v:.digits$}")));
            let support = if l.support.fract() == 0.0 {
                format!("{}", l.support as u64)
            } else {
                format!("{}", l.support)
            };
            format!("{:>width$}  {} {support:>9}\n", l.class, nums.join(" "))
        };
        for l in &self.classes {
            out += &line(l);
        }
        out += "\n";
        out += &line(&self.average);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// imbalanced-learn's docstring example: y_true = [0, 1, 2, 2, 2],
    /// y_pred = [0, 0, 2, 2, 1]. By hand:
    /// class 0: tp 1, fp 1, fn 0, tn 3 -> pre 1/2, rec 1, spe 3/4, f1 2/3
    /// class 1: tp 0, fp 1, fn 1, tn 3 -> pre 0, rec 0, spe 3/4, f1 0
    /// class 2: tp 2, fp 0, fn 1, tn 2 -> pre 1, rec 2/3, spe 1, f1 4/5
    fn example() -> Confusion {
        Confusion::from_labels(&[0, 1, 2, 2, 2], &[0, 0, 2, 2, 1], 3, None).unwrap()
    }

    #[test]
    fn per_class_figures_match_hand_computed_values() {
        let cm = example();
        let ss = sensitivity_specificity(&cm);
        assert!(close(ss[0].sensitivity, 1.0) && close(ss[0].specificity, 0.75));
        assert!(close(ss[1].sensitivity, 0.0) && close(ss[1].specificity, 0.75));
        assert!(close(ss[2].sensitivity, 2.0 / 3.0) && close(ss[2].specificity, 1.0));
        assert_eq!(
            ss.iter().map(|s| s.support).collect::<Vec<_>>(),
            vec![1.0, 1.0, 3.0]
        );
        assert!(close(cm.precision(0), 0.5) && close(cm.f1(0), 2.0 / 3.0));
        assert!(close(cm.f1(2), 0.8));
    }

    #[test]
    fn balanced_accuracy_and_geometric_mean() {
        let cm = example();
        assert!(close(balanced_accuracy(&cm), (1.0 + 0.0 + 2.0 / 3.0) / 3.0));
        // one class never recognised: 0, unless corrected
        assert_eq!(geometric_mean(&cm, None), 0.0);
        let g = geometric_mean(&cm, Some(0.001));
        assert!(close(g, (1.0f64 * 0.001 * (2.0 / 3.0)).powf(1.0 / 3.0)));
        // binary: recalls 3/4 and 1/2 -> sqrt(3/8)
        let cm = Confusion::from_labels(&[0, 0, 0, 0, 1, 1], &[0, 0, 0, 1, 1, 0], 2, None).unwrap();
        assert!(close(geometric_mean(&cm, None), (0.375f64).sqrt()));
        assert!(close(balanced_accuracy(&cm), 0.625));
        // a class absent from the truth does not count in balanced accuracy
        let cm = Confusion::from_labels(&[0, 0, 1], &[0, 2, 1], 3, None).unwrap();
        assert!(close(balanced_accuracy(&cm), 0.75));
    }

    #[test]
    fn report_matches_imbalanced_learn_docstring() {
        let cm = example();
        let names = ["class 0", "class 1", "class 2"].map(String::from);
        let r = classification_report_imbalanced(&cm, &names, 0.1);
        // class 0: geo sqrt(0.75), iba (1 + 0.1 * 0.25) * 0.75 = 0.76875
        assert!(close(r.classes[0].geometric_mean, 0.75f64.sqrt()));
        assert!(close(r.classes[0].iba, 0.76875));
        // class 2: geo sqrt(2/3), iba (1 - 0.1/3) * 2/3
        assert!(close(r.classes[2].iba, (1.0 - 0.1 / 3.0) * 2.0 / 3.0));
        // averages weighted by support: pre (0.5 + 0 + 3) / 5 = 0.7
        assert!(close(r.average.precision, 0.7));
        assert!(close(r.average.recall, 0.6));
        assert!(close(r.average.specificity, (0.75 + 0.75 + 3.0) / 5.0));
        assert_eq!(r.average.support, 5.0);
        // the text, as imbalanced-learn prints it (2 digits)
        let text = r.to_text(2);
        let expected = "                   pre       rec       spe        f1       geo       iba       sup\n\
                        \n    class 0       0.50      1.00      0.75      0.67      0.87      0.77         1\
                        \n    class 1       0.00      0.00      0.75      0.00      0.00      0.00         1\
                        \n    class 2       1.00      0.67      1.00      0.80      0.82      0.64         3\
                        \n\
                        \navg / total       0.70      0.60      0.90      0.61      0.66      0.54         5\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn weights_count_and_bad_input_is_an_error() {
        let cm = Confusion::from_labels(&[0, 1], &[0, 0], 2, Some(&[2.0, 1.0])).unwrap();
        assert!(close(cm.precision(0), 2.0 / 3.0));
        assert!(Confusion::from_labels(&[0, 3], &[0, 0], 2, None).is_err());
        assert!(Confusion::from_labels(&[0], &[0, 0], 2, None).is_err());
        assert!(Confusion::from_labels(&[0], &[0], 2, Some(&[])).is_err());
    }
}
