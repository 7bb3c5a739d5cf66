//! The stage's summary: class counts before and after, rows added and
//! removed per class and why, as a report [`Section`] plus plain JSON.

use std::collections::BTreeMap;

use gigo_pipeline::summary::{Block, Section, Series, Severity};
use serde_json::{Value, json};

use super::Note;

/// Every metric [`summary`] may report.
pub(super) const METRICS: [&str; 5] = [
    "imbalance_ratio_before",
    "imbalance_ratio_after",
    "rows_added",
    "rows_removed",
    "synthetic_fraction",
];

/// One class's accounting.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassLine {
    /// The class (label as text).
    pub name: String,
    /// Rows before.
    pub before: usize,
    /// Synthetic rows created (the cleaning step of `smote_tomek` and
    /// `smote_enn` may remove some again: those count in `removed`).
    pub added: usize,
    /// Rows removed, by reason (original and synthetic rows alike).
    pub removed: BTreeMap<&'static str, usize>,
    /// Rows after.
    pub after: usize,
    /// The class weight (weighting methods).
    pub weight: Option<f64>,
}

/// Largest over smallest class size among classes with rows; `None` with
/// fewer than one class.
pub fn imbalance_ratio(counts: impl Iterator<Item = f64>) -> Option<f64> {
    let v: Vec<f64> = counts.filter(|&c| c > 0.0).collect();
    let max = v.iter().copied().fold(f64::NAN, f64::max);
    let min = v.iter().copied().fold(f64::NAN, f64::min);
    (!v.is_empty()).then(|| max / min)
}

/// The summary of a run of method `method` with `lines` per class.
pub fn summary(stage: &str, method: &str, lines: &[ClassLine], notes: &[Note]) -> Value {
    let before: usize = lines.iter().map(|l| l.before).sum();
    let after: usize = lines.iter().map(|l| l.after).sum();
    let added: usize = lines.iter().map(|l| l.added).sum();
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    for l in lines {
        for (r, n) in &l.removed {
            *reasons.entry(r).or_default() += n;
        }
    }
    let removed: usize = reasons.values().sum();
    let weighting = lines.iter().any(|l| l.weight.is_some());
    let ir_before = imbalance_ratio(lines.iter().map(|l| l.before as f64));
    let ir_after = if weighting {
        imbalance_ratio(
            lines
                .iter()
                .map(|l| l.after as f64 * l.weight.unwrap_or(1.0)),
        )
    } else {
        imbalance_ratio(lines.iter().map(|l| l.after as f64))
    };

    let mut s = Section::new(stage, "rebalance", &format!("Class rebalancing: {method}"));
    s.figure("rows before", before, "int");
    s.figure("rows after", after, "int");
    if weighting {
        s.figure("classes weighted", lines.len(), "int");
    } else {
        s.figure("rows added", added, "int");
        s.figure("rows removed", removed, "int");
    }
    if let Some(r) = ir_before {
        s.figure("imbalance ratio before", r, "float");
        s.metric("imbalance_ratio_before", r);
    }
    if let Some(r) = ir_after {
        s.figure(
            if weighting {
                "weighted imbalance ratio"
            } else {
                "imbalance ratio after"
            },
            r,
            "float",
        );
        s.metric("imbalance_ratio_after", r);
    }
    s.metric("rows_added", added);
    s.metric("rows_removed", removed);
    s.metric(
        "synthetic_fraction",
        if after > 0 {
            added as f64 / after as f64
        } else {
            0.0
        },
    );
    for n in notes {
        s.alert(n.severity, n.kind, None, n.message.clone());
    }
    if !weighting && added == 0 && removed == 0 && before > 0 {
        s.alert(
            Severity::Info,
            "unchanged",
            None,
            "no class needed resampling under this strategy: the table is unchanged",
        );
    }
    let names: Vec<String> = lines.iter().map(|l| l.name.clone()).collect();
    let series = |name: &str, v: Vec<f64>| Series {
        name: name.into(),
        values: v.into_iter().map(Some).collect(),
    };
    if weighting {
        s.block(Block::Bars {
            title: "Rows and total weight per class".into(),
            labels: names.clone(),
            series: vec![
                series("rows", lines.iter().map(|l| l.before as f64).collect()),
                series(
                    "total weight",
                    lines
                        .iter()
                        .map(|l| l.before as f64 * l.weight.unwrap_or(1.0))
                        .collect(),
                ),
            ],
        });
        s.block(Block::table(
            "Class weights",
            &["class", "rows", "weight", "total weight"],
            lines
                .iter()
                .map(|l| {
                    let w = l.weight.unwrap_or(1.0);
                    vec![
                        json!(l.name),
                        json!(l.before),
                        json!(w),
                        json!(w * l.before as f64),
                    ]
                })
                .collect(),
        ));
    } else {
        s.block(Block::Bars {
            title: "Rows per class, before and after".into(),
            labels: names,
            series: vec![
                series("before", lines.iter().map(|l| l.before as f64).collect()),
                series("after", lines.iter().map(|l| l.after as f64).collect()),
            ],
        });
        let mut columns = vec!["class".to_string(), "before".into(), "added".into()];
        columns.extend(reasons.keys().map(|r| format!("removed: {r}")));
        columns.push("after".into());
        let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
        s.block(Block::table(
            "Rows per class",
            &cols,
            lines
                .iter()
                .map(|l| {
                    let mut row = vec![json!(l.name), json!(l.before), json!(l.added)];
                    row.extend(
                        reasons
                            .keys()
                            .map(|r| json!(l.removed.get(r).copied().unwrap_or(0))),
                    );
                    row.push(json!(l.after));
                    row
                })
                .collect(),
        ));
    }
    let classes: Vec<Value> = lines
        .iter()
        .map(|l| {
            let mut v = json!({
                "class": l.name,
                "before": l.before,
                "added": l.added,
                "removed": l.removed,
                "after": l.after,
            });
            if let Some(w) = l.weight {
                v["weight"] = json!(w);
            }
            v
        })
        .collect();
    s.into_summary(json!({
        "method": method,
        "rows_before": before,
        "rows_after": after,
        "rows_added": added,
        "rows_removed": removed,
        "removed_by_reason": reasons,
        "imbalance_ratio_before": ir_before,
        "imbalance_ratio_after": ir_after,
        "classes": classes,
    }))
}
