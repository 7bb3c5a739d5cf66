//! What training recorded per epoch, and the verdicts read from it:
//! vanishing and exploding gradients, over- and underfitting, each with the
//! numbers behind it. Pure functions of the history: no burn here.

use std::collections::BTreeMap;

use gigo_pipeline::ParamProblem;
use gigo_pipeline::summary::{Block, Series, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{LossKind, Range, no_effect, word};

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// Learning rate at the epoch's first step.
    pub lr: f64,
    /// Gradient steps (updates) taken in the epoch.
    pub steps: usize,
    /// Mean training loss over the epoch's steps (the objective without
    /// L1/L2 penalties; dropout active).
    pub train_loss: f64,
    /// Accuracy on the training batches as they were trained on (supervised only).
    pub train_accuracy: Option<f64>,
    /// Loss on the validation rows after the epoch (inference mode).
    pub valid_loss: Option<f64>,
    /// Accuracy on the validation rows after the epoch.
    pub valid_accuracy: Option<f64>,
    /// Per layer (see [`History::layers`]): mean over steps of the L2 norm of
    /// the layer weight's gradient.
    pub grad_norms: Vec<f64>,
    /// Mean over steps of the total gradient norm, before clipping.
    pub grad_norm_mean: f64,
    /// Largest total gradient norm of a step, before clipping.
    pub grad_norm_max: f64,
    /// Largest total gradient norm of a step, after clipping.
    pub clipped_norm_max: f64,
    /// Parts of the loss (pretraining: reconstruction, mask, contrastive).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, f64>,
    /// Whether a loss or gradient was NaN or infinite (no update was made then).
    pub non_finite: bool,
}

/// Every epoch of one training run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Names of the layers whose gradient norms are recorded, input side first.
    pub layers: Vec<String>,
    /// The epochs, in order.
    pub epochs: Vec<EpochRecord>,
}

/// One verdict with its evidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    /// `vanishing_gradients`, `exploding_gradients`, `overfitting` or `underfitting`.
    pub kind: &'static str,
    /// How bad.
    pub severity: Severity,
    /// One sentence for people.
    pub message: String,
    /// The numbers behind it.
    pub evidence: BTreeMap<String, Value>,
}

/// What a model that learned nothing would score: the loss of predicting the
/// training class frequencies, and the majority class's share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Cross-entropy of the class prior (entropy of the labels, nats).
    pub prior_loss: f64,
    /// Accuracy of always predicting the majority class.
    pub majority_accuracy: f64,
    /// Whether the training loss is a cross-entropy comparable to `prior_loss`
    /// (not so for focal, GCE and SCE).
    pub loss_is_cross_entropy: bool,
}

impl Baseline {
    /// The baseline of labels `y` over `k` classes.
    pub fn of(y: &[u32], k: usize, loss_is_cross_entropy: bool) -> Baseline {
        let mut counts = vec![0usize; k];
        for &l in y {
            if (l as usize) < k {
                counts[l as usize] += 1;
            }
        }
        Baseline::of_counts(&counts, y.len(), loss_is_cross_entropy)
    }

    /// The baseline of `rows` labels, `counts[c]` of them of class `c`.
    pub fn of_counts(counts: &[usize], rows: usize, loss_is_cross_entropy: bool) -> Baseline {
        let n = rows.max(1) as f64;
        let prior_loss = counts
            .iter()
            .filter(|&&c| c > 0)
            .map(|&c| {
                let p = c as f64 / n;
                -p * p.ln()
            })
            .sum();
        let majority = counts.iter().copied().max().unwrap_or(0) as f64 / n;
        Baseline {
            prior_loss,
            majority_accuracy: majority,
            loss_is_cross_entropy,
        }
    }
}

/// Thresholds of the verdicts: `train`'s `diagnosis` block (every field
/// optional, today's values as defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Vanishing gradients: the first layer's gradient norm under this
    /// fraction of the largest layer's (median over epochs); in (0, 1).
    /// Default 0.001.
    #[serde(default = "default_vanishing_ratio")]
    pub vanishing_ratio: f64,
    /// Exploding gradients: a step's gradient norm above this multiple of the
    /// first epoch's mean norm (and above `exploding_min_norm`); above 1.
    /// Default 1000. (A NaN or infinite loss or gradient always is.)
    #[serde(default = "default_exploding_growth")]
    pub exploding_growth: f64,
    /// Exploding gradients: ...and above this absolute norm; non-negative.
    /// Default 100.
    #[serde(default = "default_exploding_min_norm")]
    pub exploding_min_norm: f64,
    /// Overfitting: the final validation loss above the best one by this
    /// fraction of it (and by `overfit_min_rise`), while the training loss
    /// fell; non-negative. Default 0.1.
    #[serde(default = "default_overfit_rise")]
    pub overfit_rise: f64,
    /// Overfitting: ...and by at least this much in absolute terms;
    /// non-negative. Default 0.01.
    #[serde(default = "default_overfit_min_rise")]
    pub overfit_min_rise: f64,
    /// `loss: cross_entropy` only: underfitting when the final training loss
    /// is above this fraction of the loss of predicting the class
    /// frequencies; in (0, 1]. Default 0.8.
    #[serde(default)]
    pub underfit_fraction: Option<f64>,
    /// Underfitting (any loss): the final training accuracy at most this many
    /// points above the majority class's share (skipped when that share is
    /// 0.98 or more); in [0, 1). Default 0.02.
    #[serde(default = "default_underfit_accuracy_margin")]
    pub underfit_accuracy_margin: f64,
}

fn default_vanishing_ratio() -> f64 {
    1e-3
}
fn default_exploding_growth() -> f64 {
    1e3
}
fn default_exploding_min_norm() -> f64 {
    1e2
}
fn default_overfit_rise() -> f64 {
    0.1
}
fn default_overfit_min_rise() -> f64 {
    0.01
}
fn default_underfit_accuracy_margin() -> f64 {
    0.02
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            vanishing_ratio: default_vanishing_ratio(),
            exploding_growth: default_exploding_growth(),
            exploding_min_norm: default_exploding_min_norm(),
            overfit_rise: default_overfit_rise(),
            overfit_min_rise: default_overfit_min_rise(),
            underfit_fraction: None,
            underfit_accuracy_margin: default_underfit_accuracy_margin(),
        }
    }
}

impl Thresholds {
    /// Underfitting's fraction of the prior's loss (default 0.8).
    pub fn underfit_fraction(&self) -> f64 {
        self.underfit_fraction.unwrap_or(0.8)
    }

    /// Every problem, with paths under `prefix` (e.g. `diagnosis`); `loss`
    /// is the training loss (`underfit_fraction` needs cross-entropy).
    pub fn check(&self, prefix: &str, loss: LossKind, p: &mut Vec<ParamProblem>) {
        let at = |name: &str| format!("{prefix}.{name}");
        let unit_open = Range {
            ok: |v| v > 0.0 && v < 1.0,
            says: "in (0, 1)",
        };
        let above_one = Range {
            ok: |v| v > 1.0 && v.is_finite(),
            says: "a number above 1",
        };
        let fraction = Range {
            ok: |v| (0.0..1.0).contains(&v),
            says: "in [0, 1)",
        };
        for (name, v, range) in [
            ("vanishing_ratio", self.vanishing_ratio, unit_open),
            ("exploding_growth", self.exploding_growth, above_one),
            (
                "exploding_min_norm",
                self.exploding_min_norm,
                Range::NON_NEGATIVE,
            ),
            ("overfit_rise", self.overfit_rise, Range::NON_NEGATIVE),
            (
                "overfit_min_rise",
                self.overfit_min_rise,
                Range::NON_NEGATIVE,
            ),
            (
                "underfit_accuracy_margin",
                self.underfit_accuracy_margin,
                fraction,
            ),
        ] {
            range.check(&at(name), v, p);
        }
        if let Some(f) = self.underfit_fraction {
            Range::SHARE.check(&at("underfit_fraction"), f, p);
            if loss != LossKind::CrossEntropy {
                p.push(no_effect(
                    &at("underfit_fraction"),
                    "`loss: cross_entropy` (other losses are not comparable to the class \
                     frequencies' cross-entropy)",
                    &format!("loss is {}", word(&loss)),
                ));
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

/// Every verdict the history supports. `baseline` enables underfitting;
/// `early_stopped_at` (the epoch whose weights were kept) softens overfitting
/// to information, since the kept model predates it.
pub fn diagnose(
    h: &History,
    baseline: Option<Baseline>,
    early_stopped_at: Option<usize>,
    t: &Thresholds,
) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    if h.epochs.is_empty() {
        return out;
    }
    exploding(h, t, &mut out);
    vanishing(h, t, &mut out);
    overfitting(h, t, early_stopped_at, &mut out);
    if let Some(b) = baseline {
        underfitting(h, b, t, &mut out);
    }
    out
}

fn exploding(h: &History, t: &Thresholds, out: &mut Vec<Diagnosis>) {
    if let Some(e) = h.epochs.iter().find(|e| e.non_finite) {
        let mut ev = BTreeMap::new();
        ev.insert("epoch".into(), json!(e.epoch));
        ev.insert("grad_norm_max".into(), json!(e.grad_norm_max));
        ev.insert("train_loss".into(), json!(e.train_loss));
        out.push(Diagnosis {
            kind: "exploding_gradients",
            severity: Severity::Error,
            message: format!(
                "the loss or gradient became NaN or infinite in epoch {}; training stopped there \
                 (lower the learning rate, clip gradients, or normalise)",
                e.epoch
            ),
            evidence: ev,
        });
        return;
    }
    let first = h.epochs[0].grad_norm_mean;
    if first <= 0.0 || !first.is_finite() {
        return;
    }
    if let Some(e) = h
        .epochs
        .iter()
        .max_by(|a, b| a.grad_norm_max.total_cmp(&b.grad_norm_max))
        && e.grad_norm_max > t.exploding_growth * first
        && e.grad_norm_max > t.exploding_min_norm
    {
        let clipped = e.clipped_norm_max < e.grad_norm_max;
        let mut ev = BTreeMap::new();
        ev.insert("epoch".into(), json!(e.epoch));
        ev.insert("grad_norm_max".into(), json!(e.grad_norm_max));
        ev.insert("first_epoch_grad_norm".into(), json!(first));
        ev.insert("growth".into(), json!(e.grad_norm_max / first));
        ev.insert("clipped_to".into(), json!(e.clipped_norm_max));
        out.push(Diagnosis {
            kind: "exploding_gradients",
            severity: Severity::Warning,
            message: format!(
                "the gradient norm grew {:.0}x over the first epoch's (to {:.3e} in epoch {}){}",
                e.grad_norm_max / first,
                e.grad_norm_max,
                e.epoch,
                if clipped {
                    "; clipping held the steps down"
                } else {
                    ""
                }
            ),
            evidence: ev,
        });
    }
}

fn vanishing(h: &History, t: &Thresholds, out: &mut Vec<Diagnosis>) {
    if h.layers.len() < 3 {
        return; // a first layer and a head: nothing in between to vanish through
    }
    let ratios: Vec<f64> = h
        .epochs
        .iter()
        .filter_map(|e| {
            let first = *e.grad_norms.first()?;
            let max = e.grad_norms.iter().copied().fold(0.0, f64::max);
            (max > 0.0).then_some(first / max)
        })
        .collect();
    let Some(ratio) = median(ratios) else {
        return;
    };
    if ratio < t.vanishing_ratio {
        let e0 = &h.epochs[0];
        let (imax, max) =
            e0.grad_norms.iter().enumerate().fold(
                (0, 0.0),
                |(bi, b), (i, &v)| if v > b { (i, v) } else { (bi, b) },
            );
        let mut ev = BTreeMap::new();
        ev.insert("ratio_first_to_largest".into(), json!(ratio));
        ev.insert("threshold".into(), json!(t.vanishing_ratio));
        // in layer order (an object would be sorted by name: layer10 < layer2)
        ev.insert("layers".into(), json!(h.layers));
        ev.insert("first_epoch_norms".into(), json!(e0.grad_norms));
        out.push(Diagnosis {
            kind: "vanishing_gradients",
            severity: Severity::Warning,
            message: format!(
                "the first layer's gradient is {:.1e} of the largest layer's ({}: {:.2e}); \
                 early layers barely learn (try relu, skip connections, normalisation)",
                ratio, h.layers[imax], max
            ),
            evidence: ev,
        });
    }
}

fn overfitting(
    h: &History,
    t: &Thresholds,
    early_stopped_at: Option<usize>,
    out: &mut Vec<Diagnosis>,
) {
    let valid: Vec<(usize, f64)> = h
        .epochs
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.valid_loss.filter(|v| v.is_finite()).map(|v| (i, v)))
        .collect();
    if valid.len() < 3 {
        return;
    }
    let (best_i, best) = valid
        .iter()
        .copied()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or(valid[0]);
    let (last_i, last) = *valid.last().unwrap_or(&valid[0]);
    let train_best = h.epochs[best_i].train_loss;
    let train_last = h.epochs[last_i].train_loss;
    let rose = last > best * (1.0 + t.overfit_rise) && last - best > t.overfit_min_rise;
    if rose && train_last < train_best {
        let mut ev = BTreeMap::new();
        ev.insert("best_epoch".into(), json!(best_i + 1));
        ev.insert("best_valid_loss".into(), json!(best));
        ev.insert("final_valid_loss".into(), json!(last));
        ev.insert("train_loss_at_best".into(), json!(train_best));
        ev.insert("final_train_loss".into(), json!(train_last));
        let e = &h.epochs[last_i];
        if let (Some(ta), Some(va)) = (e.train_accuracy, e.valid_accuracy) {
            ev.insert("final_train_accuracy".into(), json!(ta));
            ev.insert("final_valid_accuracy".into(), json!(va));
        }
        let (severity, tail) = match early_stopped_at {
            Some(kept) => (
                Severity::Info,
                format!("; early stopping kept epoch {kept}'s weights"),
            ),
            None => (
                Severity::Warning,
                " (regularise: dropout, L2, early stopping, fewer parameters or more data)"
                    .to_string(),
            ),
        };
        out.push(Diagnosis {
            kind: "overfitting",
            severity,
            message: format!(
                "validation loss rose from {best:.4} (epoch {}) to {last:.4} while training loss \
                 fell from {train_best:.4} to {train_last:.4}{tail}",
                best_i + 1
            ),
            evidence: ev,
        });
    }
}

fn underfitting(h: &History, b: Baseline, t: &Thresholds, out: &mut Vec<Diagnosis>) {
    let Some(e) = h.epochs.last() else { return };
    let by_loss = b.loss_is_cross_entropy
        && b.prior_loss > 0.0
        && e.train_loss > t.underfit_fraction() * b.prior_loss;
    let by_acc = e.train_accuracy.is_some_and(|a| {
        a <= b.majority_accuracy + t.underfit_accuracy_margin && b.majority_accuracy < 0.98
    });
    if by_loss || by_acc {
        let mut ev = BTreeMap::new();
        ev.insert("final_train_loss".into(), json!(e.train_loss));
        ev.insert("prior_loss".into(), json!(b.prior_loss));
        ev.insert("majority_accuracy".into(), json!(b.majority_accuracy));
        if let Some(a) = e.train_accuracy {
            ev.insert("final_train_accuracy".into(), json!(a));
        }
        if let Some(v) = e.valid_loss {
            ev.insert("final_valid_loss".into(), json!(v));
        }
        out.push(Diagnosis {
            kind: "underfitting",
            severity: Severity::Warning,
            message: format!(
                "after {} epochs the training loss is {:.4}, against {:.4} for predicting the \
                 class frequencies{}; the model has learned little (train longer, raise the \
                 learning rate or the capacity, lower regularisation)",
                e.epoch,
                e.train_loss,
                b.prior_loss,
                e.train_accuracy
                    .map(|a| format!(
                        " (accuracy {:.3}, majority class {:.3})",
                        a, b.majority_accuracy
                    ))
                    .unwrap_or_default()
            ),
            evidence: ev,
        });
    }
}

fn series(name: &str, values: Vec<Option<f64>>) -> Series {
    Series {
        name: name.into(),
        values: values
            .into_iter()
            .map(|v| v.filter(|x| x.is_finite()))
            .collect(),
    }
}

/// Learning curves (loss, accuracy, components), per-layer gradient norms
/// (log scale) and the learning rate, as report blocks.
pub fn curve_blocks(h: &History) -> Vec<Block> {
    let x: Vec<f64> = h.epochs.iter().map(|e| e.epoch as f64).collect();
    let mut blocks = Vec::new();
    let mut loss = vec![series(
        "train",
        h.epochs.iter().map(|e| Some(e.train_loss)).collect(),
    )];
    if h.epochs.iter().any(|e| e.valid_loss.is_some()) {
        loss.push(series(
            "valid",
            h.epochs.iter().map(|e| e.valid_loss).collect(),
        ));
    }
    let names: std::collections::BTreeSet<&String> =
        h.epochs.iter().flat_map(|e| e.components.keys()).collect();
    for n in names {
        loss.push(series(
            n,
            h.epochs
                .iter()
                .map(|e| e.components.get(n).copied())
                .collect(),
        ));
    }
    blocks.push(Block::Lines {
        title: "Loss per epoch".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        x: x.clone(),
        series: loss,
        log_y: false,
    });
    if h.epochs.iter().any(|e| e.train_accuracy.is_some()) {
        let mut acc = vec![series(
            "train",
            h.epochs.iter().map(|e| e.train_accuracy).collect(),
        )];
        if h.epochs.iter().any(|e| e.valid_accuracy.is_some()) {
            acc.push(series(
                "valid",
                h.epochs.iter().map(|e| e.valid_accuracy).collect(),
            ));
        }
        blocks.push(Block::Lines {
            title: "Accuracy per epoch".into(),
            x_label: "epoch".into(),
            y_label: "accuracy".into(),
            x: x.clone(),
            series: acc,
            log_y: false,
        });
    }
    let mut norms: Vec<Series> = h
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            series(
                l,
                h.epochs
                    .iter()
                    .map(|e| e.grad_norms.get(i).copied().filter(|v| *v > 0.0))
                    .collect(),
            )
        })
        .collect();
    norms.push(series(
        "total",
        h.epochs
            .iter()
            .map(|e| Some(e.grad_norm_mean).filter(|v| *v > 0.0))
            .collect(),
    ));
    blocks.push(Block::Lines {
        title: "Gradient norm per layer (mean over steps)".into(),
        x_label: "epoch".into(),
        y_label: "L2 norm".into(),
        x: x.clone(),
        series: norms,
        log_y: true,
    });
    blocks.push(Block::Lines {
        title: "Learning rate".into(),
        x_label: "epoch".into(),
        y_label: "lr".into(),
        x,
        series: vec![series("lr", h.epochs.iter().map(|e| Some(e.lr)).collect())],
        log_y: false,
    });
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(i: usize, train: f64, valid: Option<f64>, norms: Vec<f64>) -> EpochRecord {
        EpochRecord {
            epoch: i,
            lr: 1e-3,
            steps: 1,
            train_loss: train,
            train_accuracy: Some(0.9),
            valid_loss: valid,
            valid_accuracy: valid.map(|_| 0.8),
            grad_norm_mean: norms.iter().sum(),
            grad_norm_max: norms.iter().sum(),
            clipped_norm_max: norms.iter().sum(),
            grad_norms: norms,
            components: BTreeMap::new(),
            non_finite: false,
        }
    }

    fn history(epochs: Vec<EpochRecord>) -> History {
        History {
            layers: vec!["layer1".into(), "layer2".into(), "head".into()],
            epochs,
        }
    }

    /// Validation loss 0.5 at epoch 4, 2.3 at epoch 10; training loss falls.
    fn rising_validation_loss() -> History {
        history(
            (1..=10)
                .map(|i| {
                    let v = 0.5 + 0.05 * (i as f64 - 4.0).powi(2);
                    epoch(i, 1.0 / i as f64, Some(v), vec![0.5, 0.6, 0.7])
                })
                .collect(),
        )
    }

    fn kinds(d: &[Diagnosis]) -> Vec<&str> {
        d.iter().map(|d| d.kind).collect()
    }

    #[test]
    fn healthy_training_gets_no_verdict() {
        let h = history(
            (1..=10)
                .map(|i| epoch(i, 1.0 / i as f64, Some(1.2 / i as f64), vec![0.5, 0.6, 0.7]))
                .collect(),
        );
        let b = Baseline::of(&[0, 1, 0, 1], 2, true);
        assert!(diagnose(&h, Some(b), None, &Thresholds::default()).is_empty());
    }

    #[test]
    fn rising_validation_loss_is_overfitting_unless_early_stopped() {
        let h = rising_validation_loss();
        let d = diagnose(&h, None, None, &Thresholds::default());
        assert_eq!(kinds(&d), vec!["overfitting"]);
        assert_eq!(d[0].evidence["best_epoch"], json!(4));
        assert_eq!(d[0].severity, Severity::Warning);
        let d = diagnose(&h, None, Some(4), &Thresholds::default());
        assert_eq!(d[0].severity, Severity::Info);
    }

    #[test]
    fn collapsed_early_norms_are_vanishing_and_nan_is_exploding() {
        let h = history(
            (1..=5)
                .map(|i| epoch(i, 0.69, None, vec![1e-7, 1e-3, 0.5]))
                .collect(),
        );
        let b = Baseline::of(&[0, 1, 0, 1], 2, true);
        let d = diagnose(&h, Some(b), None, &Thresholds::default());
        assert_eq!(kinds(&d), vec!["vanishing_gradients", "underfitting"]);
        let mut e = epoch(2, f64::NAN, None, vec![0.5, 0.5, 0.5]);
        e.non_finite = true;
        let h = history(vec![epoch(1, 1.0, None, vec![0.5, 0.5, 0.5]), e]);
        let d = diagnose(&h, None, None, &Thresholds::default());
        assert_eq!(kinds(&d), vec!["exploding_gradients"]);
        assert_eq!(d[0].severity, Severity::Error);
    }

    #[test]
    fn growing_norms_are_exploding() {
        let h = history(vec![
            epoch(1, 1.0, None, vec![0.1, 0.1, 0.1]),
            epoch(2, 1.0, None, vec![100.0, 200.0, 300.0]),
        ]);
        let d = diagnose(&h, None, None, &Thresholds::default());
        assert_eq!(kinds(&d), vec!["exploding_gradients"]);
        assert_eq!(d[0].severity, Severity::Warning);
    }

    #[test]
    fn changed_thresholds_change_the_verdicts() {
        let t = Thresholds::default;
        // vanishing: a first layer at 2e-7 of the largest
        let h = history(
            (1..=5)
                .map(|i| epoch(i, 0.1, None, vec![1e-7, 1e-3, 0.5]))
                .collect(),
        );
        assert_eq!(
            kinds(&diagnose(&h, None, None, &t())),
            vec!["vanishing_gradients"]
        );
        let lax = Thresholds {
            vanishing_ratio: 1e-8,
            ..t()
        };
        assert!(diagnose(&h, None, None, &lax).is_empty());
        // exploding: 2000x growth to 600
        let h = history(vec![
            epoch(1, 1.0, None, vec![0.1, 0.1, 0.1]),
            epoch(2, 1.0, None, vec![100.0, 200.0, 300.0]),
        ]);
        let lax = Thresholds {
            exploding_growth: 5000.0,
            ..t()
        };
        assert!(diagnose(&h, None, None, &lax).is_empty());
        let lax = Thresholds {
            exploding_min_norm: 1000.0,
            ..t()
        };
        assert!(diagnose(&h, None, None, &lax).is_empty());
        // overfitting: validation loss 0.5 (epoch 4) -> 2.3
        let h = rising_validation_loss();
        assert_eq!(kinds(&diagnose(&h, None, None, &t())), vec!["overfitting"]);
        for lax in [
            Thresholds {
                overfit_rise: 4.0,
                ..t()
            },
            Thresholds {
                overfit_min_rise: 2.0,
                ..t()
            },
        ] {
            assert!(diagnose(&h, None, None, &lax).is_empty());
        }
        // underfitting: loss 0.6 against ln 2 = 0.693 (0.87 of it), accuracy 0.9
        let h = history(
            (1..=3)
                .map(|i| epoch(i, 0.6, None, vec![0.5, 0.6, 0.7]))
                .collect(),
        );
        let b = Baseline::of(&[0, 1, 0, 1], 2, true);
        assert_eq!(
            kinds(&diagnose(&h, Some(b), None, &t())),
            vec!["underfitting"]
        );
        let lax = Thresholds {
            underfit_fraction: Some(0.9),
            ..t()
        };
        assert!(diagnose(&h, Some(b), None, &lax).is_empty());
        let strict = Thresholds {
            underfit_fraction: Some(0.9),
            underfit_accuracy_margin: 0.5,
            ..t()
        };
        assert_eq!(
            kinds(&diagnose(&h, Some(b), None, &strict)),
            vec!["underfitting"]
        );
    }

    #[test]
    fn thresholds_read_from_a_partial_block_keep_the_other_defaults() {
        let t: Thresholds = serde_json::from_value(json!({"vanishing_ratio": 0.01})).unwrap();
        assert_eq!(
            t,
            Thresholds {
                vanishing_ratio: 0.01,
                ..Thresholds::default()
            }
        );
        assert_eq!(t.underfit_fraction(), 0.8);
        let mut p = Vec::new();
        Thresholds::default().check("diagnosis", LossKind::Focal, &mut p);
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn curves_have_loss_accuracy_norms_and_lr() {
        let h = history(vec![epoch(1, 1.0, Some(1.1), vec![0.1, 0.2, 0.3])]);
        let b = curve_blocks(&h);
        assert_eq!(b.len(), 4);
        match &b[2] {
            Block::Lines { series, log_y, .. } => {
                assert!(*log_y);
                assert_eq!(series.len(), 4);
            }
            other => panic!("{other:?}"),
        }
    }
}
