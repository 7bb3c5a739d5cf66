//! The report section of `evaluate`: clean metrics, the generalisation gap,
//! robustness curves and their summaries, the comparison with the reference
//! model, and the verdicts.

use std::collections::BTreeMap;

use gigo_pipeline::summary::{Block, Section, Series, Severity};
use serde::Serialize;
use serde_json::{Value, json};

use super::robust::{self, Attack};
use super::{Corruption, CurvePoint, Metrics};

/// Everything the section is built from.
pub(super) struct Report<'a> {
    pub stage: &'a str,
    pub models: &'a [String],
    pub classes: &'a [Vec<String>],
    pub reference: usize,
    /// Per model: (split, metrics).
    pub clean: &'a [Vec<(String, Metrics)>],
    pub points: &'a [CurvePoint],
    pub corruptions: &'a [Corruption],
    /// Corruptions left out: nothing in the table for them to act on.
    pub skipped: &'a [Corruption],
    pub attack: Attack,
    /// Models the attack applied to.
    pub attacked: &'a [String],
    pub severities: &'a [u8],
    pub fragile_top: usize,
    pub test_rows: usize,
}

/// One model under one corruption, summarised over severities.
#[derive(Debug, Clone, Serialize)]
pub struct Robustness {
    /// The model.
    pub model: String,
    /// The corruption.
    pub corruption: String,
    /// Area under accuracy versus severity (clean point included), over the
    /// severity range.
    pub auc: f64,
    /// Accuracy at the highest severity.
    pub accuracy_at_max: f64,
    /// Clean accuracy minus that.
    pub drop_at_max: f64,
    /// ImageNet-C corruption error against the reference model.
    pub ce: Option<f64>,
    /// ImageNet-C relative corruption error against the reference model.
    pub relative_ce: Option<f64>,
    /// Mean prediction flip rate over severities.
    pub mean_flip_rate: f64,
    /// Worst-class accuracy at the highest severity.
    pub worst_class_accuracy_at_max: f64,
}

/// Rounds for display (the `metrics` table keeps full precision).
/// Every metric [`Report::build`] may report, each an object by model.
pub(super) const METRICS: [&str; 14] = [
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "ece",
    "log_loss",
    "worst_class_accuracy",
    "generalisation_gap",
    "ood_gap",
    "robust_auc",
    "relative_robustness",
    "flip_rate",
    "mce",
    "relative_mce",
    "adversarial_accuracy",
];

fn r4(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1e4).round() / 1e4)
    } else {
        Value::Null
    }
}

fn opt4(v: Option<f64>) -> Value {
    v.map_or(Value::Null, r4)
}

/// The rows of `rob` about `model`.
fn by_model<'r>(rob: &'r [Robustness], model: &'r str) -> impl Iterator<Item = &'r Robustness> {
    rob.iter().filter(move |r| r.model == model)
}

/// Mean of the finite values (NaN when there are none).
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (s, n) = values
        .filter(|v| v.is_finite())
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { s / n as f64 }
}

impl Report<'_> {
    fn clean_test(&self, m: usize) -> &Metrics {
        self.clean[m]
            .iter()
            .find(|(s, _)| s == "test")
            .map(|(_, x)| x)
            .unwrap_or(&self.clean[m][0].1)
    }

    fn split_accuracy(&self, m: usize, split: &str) -> Option<f64> {
        self.clean[m]
            .iter()
            .find(|(s, _)| s == split)
            .map(|(_, x)| x.accuracy)
    }

    /// The curve of model `m` under `corruption`: the clean point, then each
    /// severity in order.
    fn curve(&self, m: usize, corruption: &str) -> Vec<&CurvePoint> {
        let name = &self.models[m];
        let mut c: Vec<&CurvePoint> = self
            .points
            .iter()
            .filter(|p| &p.model == name && (p.corruption == corruption || p.corruption == "none"))
            .collect();
        c.sort_by_key(|p| p.severity);
        if c.len() == 1 { Vec::new() } else { c }
    }

    /// The models the attack did not apply to (not differentiable).
    fn attack_skipped(&self) -> Vec<&String> {
        if self.attack == Attack::None {
            return Vec::new();
        }
        self.models
            .iter()
            .filter(|m| !self.attacked.contains(m))
            .collect()
    }

    /// Names of the corruptions in report order: the table corruptions, then
    /// the attack if any model was attacked.
    fn corruption_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.corruptions.iter().map(|c| c.name()).collect();
        if !self.attacked.is_empty() {
            names.push(self.attack.name());
        }
        names
    }

    /// Whether a corruption counts in the aggregates (robust AUC, mCE, flip
    /// rate): the feature corruptions. Test label noise changes what is
    /// measured, not the model's input, and the attack applies to some
    /// models only; both are reported apart.
    fn aggregated(name: &str) -> bool {
        name != Corruption::LabelNoise.name() && !name.starts_with("adversarial")
    }

    fn robustness(&self) -> Vec<Robustness> {
        let mut out = Vec::new();
        for name in self.corruption_names() {
            let reference = self.curve(self.reference, name);
            for m in 0..self.models.len() {
                let c = self.curve(m, name);
                let (Some(first), Some(last)) = (c.first(), c.last()) else {
                    continue;
                };
                let sev: Vec<f64> = c.iter().map(|p| p.severity as f64).collect();
                let acc: Vec<f64> = c.iter().map(|p| p.metrics.accuracy).collect();
                let err: Vec<f64> = c[1..].iter().map(|p| 1.0 - p.metrics.accuracy).collect();
                let ref_err: Vec<f64> = reference
                    .iter()
                    .skip(1)
                    .map(|p| 1.0 - p.metrics.accuracy)
                    .collect();
                let comparable = ref_err.len() == err.len();
                let ref_clean = reference
                    .first()
                    .map_or(f64::NAN, |p| 1.0 - p.metrics.accuracy);
                out.push(Robustness {
                    model: self.models[m].clone(),
                    corruption: name.to_string(),
                    auc: robust::curve_auc(&sev, &acc),
                    accuracy_at_max: last.metrics.accuracy,
                    drop_at_max: first.metrics.accuracy - last.metrics.accuracy,
                    ce: comparable
                        .then(|| robust::corruption_error(&err, &ref_err))
                        .flatten(),
                    relative_ce: comparable
                        .then(|| {
                            robust::relative_corruption_error(
                                &err,
                                1.0 - first.metrics.accuracy,
                                &ref_err,
                                ref_clean,
                            )
                        })
                        .flatten(),
                    mean_flip_rate: mean(c[1..].iter().map(|p| p.flip_rate)),
                    worst_class_accuracy_at_max: last.worst_class_accuracy,
                });
            }
        }
        out
    }

    /// The section, and the detail that goes beside it in the summary.
    pub fn build(&self) -> (Section, Value) {
        let mut s = Section::new(self.stage, "evaluate", "Generalisation and robustness");
        let rob = self.robustness();
        let max_sev = self.severities.last().copied().unwrap_or(0);

        // Gateable metrics, by model.
        let mut per: BTreeMap<&str, BTreeMap<String, Value>> = BTreeMap::new();
        for (m, name) in self.models.iter().enumerate() {
            let t = self.clean_test(m);
            let mut put = |metric: &'static str, v: f64| {
                if v.is_finite() {
                    per.entry(metric)
                        .or_default()
                        .insert(name.clone(), json!(v));
                }
            };
            put("accuracy", t.accuracy);
            put("balanced_accuracy", t.balanced_accuracy);
            put("macro_f1", t.macro_f1);
            put("ece", t.ece);
            put("log_loss", t.log_loss);
            put("worst_class_accuracy", super::worst_class_accuracy(t));
            if let Some(train) = self.split_accuracy(m, "train") {
                put("generalisation_gap", train - t.accuracy);
            }
            if let Some(ood) = self.split_accuracy(m, "ood") {
                put("ood_gap", t.accuracy - ood);
            }
            let agg: Vec<&Robustness> = by_model(&rob, name)
                .filter(|r| Self::aggregated(&r.corruption))
                .collect();
            if !agg.is_empty() {
                let auc = mean(agg.iter().map(|r| r.auc));
                put("robust_auc", auc);
                put("relative_robustness", auc / t.accuracy);
                put("flip_rate", mean(agg.iter().map(|r| r.mean_flip_rate)));
                put("mce", mean(agg.iter().filter_map(|r| r.ce)));
                put(
                    "relative_mce",
                    mean(agg.iter().filter_map(|r| r.relative_ce)),
                );
            }
            if let Some(a) = by_model(&rob, name).find(|r| r.corruption.starts_with("adversarial"))
            {
                put("adversarial_accuracy", a.accuracy_at_max);
            }
        }
        for (metric, values) in &per {
            s.metric(metric, Value::Object(values.clone().into_iter().collect()));
        }

        s.figure("test rows", self.test_rows as u64, "int");
        s.figure("models", self.models.len() as u64, "int");
        for name in self.models {
            if let Some(v) = per.get("accuracy").and_then(|v| v.get(name)) {
                s.figure(&format!("{name}: test accuracy"), v.clone(), "pct");
            }
            if let Some(v) = per.get("robust_auc").and_then(|v| v.get(name)) {
                s.figure(&format!("{name}: robust AUC"), v.clone(), "float");
            }
        }

        self.verdicts(&mut s, &rob, max_sev);
        self.blocks(&mut s, &rob);
        let detail = json!({
            "skipped_corruptions": self.skipped.iter().map(|c| c.name()).collect::<Vec<_>>(),
            "attack_skipped": self.attack_skipped(),
            "models": self.models,
            "reference": self.models[self.reference],
            "severities": self.severities,
            "robustness": rob,
        });
        (s, detail)
    }

    fn verdicts(&self, s: &mut Section, rob: &[Robustness], max_sev: u8) {
        for (m, name) in self.models.iter().enumerate() {
            let t = self.clean_test(m);
            let mut fragile: Vec<&Robustness> = rob
                .iter()
                .filter(|r| &r.model == name && r.corruption != Corruption::LabelNoise.name())
                .filter(|r| r.drop_at_max > 0.01)
                .collect();
            fragile.sort_by(|a, b| b.drop_at_max.total_cmp(&a.drop_at_max));
            fragile.truncate(self.fragile_top);
            if fragile.is_empty() {
                s.alert(
                    Severity::Info,
                    "robust",
                    None,
                    format!(
                        "`{name}` keeps its accuracy ({:.3}) within 0.01 under every corruption up to severity {max_sev}",
                        t.accuracy
                    ),
                );
            } else {
                let worst = fragile[0].drop_at_max;
                let list: Vec<String> = fragile
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({:.3} → {:.3})",
                            r.corruption, t.accuracy, r.accuracy_at_max
                        )
                    })
                    .collect();
                let a = s.alert(
                    if worst >= 0.1 {
                        Severity::Warning
                    } else {
                        Severity::Info
                    },
                    "fragile",
                    None,
                    format!(
                        "`{name}` is most fragile to {} (test accuracy, clean → severity {max_sev})",
                        list.join(", ")
                    ),
                );
                a.evidence.insert("model".into(), json!(name));
                for r in &fragile {
                    a.evidence.insert(r.corruption.clone(), r4(r.drop_at_max));
                }
            }
            if let Some(train) = self.split_accuracy(m, "train") {
                let gap = train - t.accuracy;
                if gap > 0.05 {
                    let a = s.alert(
                        Severity::Warning,
                        "generalisation_gap",
                        None,
                        format!(
                            "`{name}` scores {train:.3} on its training rows but {:.3} on the test rows (gap {gap:.3}): it overfits",
                            t.accuracy
                        ),
                    );
                    a.evidence.insert("train_accuracy".into(), r4(train));
                    a.evidence.insert("test_accuracy".into(), r4(t.accuracy));
                }
            }
            if let Some(ood) = self.split_accuracy(m, "ood") {
                let gap = t.accuracy - ood;
                if gap > 0.05 {
                    let a = s.alert(
                        Severity::Warning,
                        "ood_gap",
                        None,
                        format!(
                            "`{name}` drops from {:.3} on the test rows to {ood:.3} out of distribution",
                            t.accuracy
                        ),
                    );
                    a.evidence.insert("ood_accuracy".into(), r4(ood));
                }
            }
            if t.ece > 0.1 {
                let a = s.alert(
                    Severity::Warning,
                    "miscalibrated",
                    None,
                    format!(
                        "`{name}`'s confidence is off by {:.3} on average (expected calibration error, 15 bins)",
                        t.ece
                    ),
                );
                a.evidence.insert("ece".into(), r4(t.ece));
            }
            let worst = super::worst_class_accuracy(t);
            if worst.is_finite() && worst < 0.5 * t.accuracy {
                let c = t
                    .per_class
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.support > 0.0)
                    .min_by(|a, b| a.1.recall.total_cmp(&b.1.recall))
                    .map(|(i, _)| self.classes[m].get(i).cloned().unwrap_or_default())
                    .unwrap_or_default();
                let a = s.alert(
                    Severity::Warning,
                    "worst_class",
                    None,
                    format!(
                        "`{name}` recognises class {c} in only {:.1}% of its test rows (overall accuracy {:.3})",
                        100.0 * worst,
                        t.accuracy
                    ),
                );
                a.evidence.insert("class".into(), json!(c));
                a.evidence.insert("recall".into(), r4(worst));
            }
        }
        self.versus_reference(s, rob);
    }

    /// Where each model beats the reference and where it does not.
    fn versus_reference(&self, s: &mut Section, rob: &[Robustness]) {
        let r = &self.models[self.reference];
        let find = |m: &str, c: &str| rob.iter().find(|x| x.model == m && x.corruption == c);
        for (m, name) in self.models.iter().enumerate() {
            if m == self.reference {
                continue;
            }
            let (t, rt) = (self.clean_test(m), self.clean_test(self.reference));
            let clean = t.accuracy - rt.accuracy;
            let balanced = t.balanced_accuracy - rt.balanced_accuracy;
            let worst = super::worst_class_accuracy(t) - super::worst_class_accuracy(rt);
            let (mut better, mut worse) = (Vec::new(), Vec::new());
            for c in self.corruption_names() {
                if let (Some(a), Some(b)) = (find(name, c), find(r, c)) {
                    let d = a.auc - b.auc;
                    if d > 0.005 {
                        better.push(format!("{c} ({d:+.3})"));
                    } else if d < -0.005 {
                        worse.push(format!("{c} ({d:+.3})"));
                    }
                }
            }
            let say = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            let a = s.alert(
                Severity::Info,
                "versus_reference",
                None,
                format!(
                    "`{name}` against `{r}`: clean test accuracy {clean:+.3}, balanced accuracy {balanced:+.3}, worst-class accuracy {worst:+.3}; robust AUC higher under {}; lower under {}",
                    say(&better),
                    say(&worse)
                ),
            );
            a.evidence.insert("accuracy_difference".into(), r4(clean));
            a.evidence
                .insert("balanced_accuracy_difference".into(), r4(balanced));
            a.evidence
                .insert("worst_class_accuracy_difference".into(), r4(worst));
        }
    }

    fn blocks(&self, s: &mut Section, rob: &[Robustness]) {
        s.block(Block::Text {
            text: format!(
                "Corruptions are applied to the test rows at severities {:?} (0 is the clean table), the same corrupted rows for every model. \
                 Robust AUC: the area under accuracy versus severity over the severity range, averaged over the feature corruptions \
                 (test label noise and the adversarial attack are shown apart). CE / relative CE: ImageNet-C's corruption errors against `{}` (1.0 = as robust as it; lower is better). \
                 Flip rate: the fraction of rows whose prediction changes from the clean one.",
                self.severities, self.models[self.reference]
            ),
        });
        let not_attacked = self.attack_skipped();
        if !not_attacked.is_empty() {
            s.block(Block::Text {
                text: format!(
                    "The {} attack needs the gradient of a model's loss with respect to its inputs; not applied to {} (not differentiable: trees, neighbour votes).",
                    self.attack.name(),
                    not_attacked.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        if !self.skipped.is_empty() {
            s.block(Block::Text {
                text: format!(
                    "Not applied, nothing in the test table for them to act on (no categorical feature, or fewer than two numeric ones to swap): {}.",
                    self.skipped.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        let mut rows = Vec::new();
        for (name, per_split) in self.models.iter().zip(self.clean) {
            for (split, x) in per_split {
                rows.push(vec![
                    json!(name),
                    json!(split),
                    json!(x.rows),
                    r4(x.accuracy),
                    r4(x.balanced_accuracy),
                    r4(x.macro_f1),
                    r4(x.geometric_mean),
                    r4(x.log_loss),
                    r4(x.brier),
                    r4(x.ece),
                ]);
            }
        }
        s.block(Block::table(
            "Clean metrics",
            &[
                "model",
                "split",
                "rows",
                "accuracy",
                "balanced acc.",
                "macro F1",
                "g-mean",
                "log-loss",
                "Brier",
                "ECE",
            ],
            rows,
        ));
        let splits: Vec<String> = self.clean[0].iter().map(|(s, _)| s.clone()).collect();
        if splits.len() > 1 {
            let mut cols: Vec<&str> = vec!["model"];
            cols.extend(splits.iter().map(String::as_str));
            let rows = (0..self.models.len())
                .map(|m| {
                    let mut row = vec![json!(self.models[m])];
                    row.extend(splits.iter().map(|sp| opt4(self.split_accuracy(m, sp))));
                    row
                })
                .collect();
            s.block(Block::table(
                "Accuracy by split (the generalisation gap)",
                &cols,
                rows,
            ));
        }
        let mut per_class = Vec::new();
        for (m, name) in self.models.iter().enumerate() {
            let t = self.clean_test(m);
            let classes = &self.classes[m];
            let rows = t
                .per_class
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    vec![
                        json!(classes.get(i).cloned().unwrap_or_default()),
                        r4(c.precision),
                        r4(c.recall),
                        r4(c.specificity),
                        r4(c.f1),
                        json!(c.support),
                    ]
                })
                .collect();
            per_class.push(Block::table(
                &format!("{name}: per class (test), the imbalanced classification report"),
                &[
                    "class",
                    "precision",
                    "recall (sensitivity)",
                    "specificity",
                    "F1",
                    "support",
                ],
                rows,
            ));
            per_class.push(Block::Heatmap {
                title: format!("{name}: confusion matrix (rows: true class, columns: predicted)"),
                rows: classes.clone(),
                columns: classes.clone(),
                values: t.confusion.clone(),
            });
        }
        s.block(Block::Group {
            title: "Per class".into(),
            blocks: per_class,
        });

        let mut curves = Vec::new();
        for c in self.corruption_names() {
            let mut x: Vec<f64> = Vec::new();
            let mut series = Vec::new();
            for m in 0..self.models.len() {
                let curve = self.curve(m, c);
                if curve.is_empty() {
                    continue;
                }
                if x.is_empty() {
                    x = curve.iter().map(|p| p.severity as f64).collect();
                }
                series.push(Series {
                    name: self.models[m].clone(),
                    values: curve.iter().map(|p| Some(p.metrics.accuracy)).collect(),
                });
                series.push(Series {
                    name: format!("{} (balanced)", self.models[m]),
                    values: curve
                        .iter()
                        .map(|p| Some(p.metrics.balanced_accuracy))
                        .collect(),
                });
            }
            if !series.is_empty() {
                curves.push(Block::Lines {
                    title: format!("Accuracy under {c}"),
                    x_label: "severity".into(),
                    y_label: "accuracy, balanced accuracy".into(),
                    x,
                    series,
                    log_y: false,
                });
            }
        }
        s.block(Block::Group {
            title: "Accuracy versus severity".into(),
            blocks: curves,
        });

        let names = self.corruption_names();
        s.block(Block::Bars {
            title: "Area under the accuracy curve, by corruption".into(),
            labels: names.iter().map(|c| c.to_string()).collect(),
            series: self
                .models
                .iter()
                .map(|m| Series {
                    name: m.clone(),
                    values: names
                        .iter()
                        .map(|c| {
                            rob.iter()
                                .find(|r| &r.model == m && r.corruption == *c)
                                .map(|r| r.auc)
                        })
                        .collect(),
                })
                .collect(),
        });
        let rows = rob
            .iter()
            .map(|r| {
                vec![
                    json!(r.model),
                    json!(r.corruption),
                    r4(r.auc),
                    r4(r.accuracy_at_max),
                    r4(r.drop_at_max),
                    opt4(r.ce),
                    opt4(r.relative_ce),
                    r4(r.mean_flip_rate),
                    r4(r.worst_class_accuracy_at_max),
                ]
            })
            .collect();
        s.block(Block::table(
            "Robustness",
            &[
                "model",
                "corruption",
                "AUC",
                "accuracy at max severity",
                "drop",
                "CE",
                "relative CE",
                "mean flip rate",
                "worst-class accuracy at max",
            ],
            rows,
        ));
    }
}
