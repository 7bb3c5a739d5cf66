//! The `label_noise` report section and summary: issues per class, the
//! estimated noise matrix, the top issues, and the flags scored against a
//! truth column when the table has one.

use super::*;

/// Every metric the section may report (the precision, recall and F1 need a
/// generator's `is_flipped` column).
pub(super) const METRICS: [&str; 7] = [
    "label_issue_rate",
    "label_issues",
    "estimated_noise_rate",
    "estimated_label_issues",
    "label_issue_precision",
    "label_issue_recall",
    "label_issue_f1",
];

impl LabelNoise {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn summary(
        &self,
        ctx: &StageContext,
        table: &Table,
        batch: &RecordBatch,
        labels: &Labels,
        found: &LabelIssues,
        how: Value,
        truth: Option<Value>,
        seconds: f64,
    ) -> Result<Value, StageError> {
        let n = found.is_issue.len();
        let k = labels.names.len();
        let flagged = found.is_issue.iter().filter(|&&f| f).count();
        let rate = flagged as f64 / n as f64;
        let counts = confident::label_counts(&labels.index, k);
        let mut per_class = vec![0usize; k];
        for (i, &f) in found.is_issue.iter().enumerate() {
            if f {
                per_class[labels.index[i] as usize] += 1;
            }
        }
        let estimated_noise = 1.0 - (0..k).map(|c| found.latent.joint[c * k + c]).sum::<f64>();

        let mut s = Section::new(&ctx.stage_id, STAGE_TYPE, "Label noise");
        s.figure("rows", n, "int");
        s.figure("classes", k, "int");
        s.figure("label issues", flagged, "int");
        s.figure("label issue rate", rate, "pct");
        s.figure("estimated noise rate", estimated_noise, "pct");
        s.metric("label_issue_rate", rate);
        s.metric("label_issues", flagged);
        s.metric("estimated_noise_rate", estimated_noise);
        s.metric("estimated_label_issues", found.estimated_issues);
        if let Some(t) = &truth {
            for (m, label) in [
                ("precision", "precision vs is_flipped"),
                ("recall", "recall vs is_flipped"),
                ("f1", "F1 vs is_flipped"),
            ] {
                s.figure(label, t[m].clone(), "pct");
                s.metric(&format!("label_issue_{m}"), t[m].clone());
            }
        }
        match self.params.action {
            Action::Drop => s.figure("rows dropped", flagged, "int"),
            Action::Relabel => s.figure("labels changed", flagged, "int"),
            _ => {}
        }
        if flagged > 0 {
            let severity = if rate > 0.05 {
                Severity::Warning
            } else {
                Severity::Info
            };
            s.alert(
                severity,
                "label_issues",
                Some(&labels.column),
                format!(
                    "{flagged} rows ({:.1}%) look mislabelled ({})",
                    100.0 * rate,
                    self.params.action.name()
                ),
            )
            .with("rows", flagged)
            .with("rate", rate);
        }
        for (c, &count) in counts.iter().enumerate() {
            let off = 1.0 - found.latent.noise_matrix[c * k + c];
            if count > 0 && off > 0.2 {
                s.alert(
                    Severity::Warning,
                    "noisy_class",
                    Some(&labels.column),
                    format!(
                        "class {}: an estimated {:.0}% of its true members carry another label",
                        labels.names[c],
                        100.0 * off
                    ),
                )
                .with("class", labels.names[c].clone())
                .with("noise_rate", off);
            }
        }
        s.block(Block::Bars {
            title: "Label issues per class".into(),
            labels: labels.names.clone(),
            series: vec![
                gigo_pipeline::summary::Series {
                    name: "rows".into(),
                    values: counts.iter().map(|&c| Some(c as f64)).collect(),
                },
                gigo_pipeline::summary::Series {
                    name: "label issues".into(),
                    values: per_class.iter().map(|&c| Some(c as f64)).collect(),
                },
            ],
        });
        s.block(Block::Heatmap {
            title: "Estimated noise matrix P(given label | true label)".into(),
            rows: labels.names.iter().map(|n| format!("given {n}")).collect(),
            columns: labels.names.iter().map(|n| format!("true {n}")).collect(),
            values: (0..k)
                .map(|i| {
                    (0..k)
                        .map(|j| found.latent.noise_matrix[i * k + j])
                        .collect()
                })
                .collect(),
        });
        // the most suspicious flagged rows, lowest quality first
        let mut order: Vec<usize> = (0..n).filter(|&i| found.is_issue[i]).collect();
        order.sort_by(|&a, &b| {
            found.quality[a]
                .total_cmp(&found.quality[b])
                .then(a.cmp(&b))
        });
        order.truncate(self.params.top_issues);
        let id_col = table.columns_with_role(Role::Id).into_iter().next();
        let id_keys = match &id_col {
            Some(c) => Some(label_keys(column(batch, c)?)?),
            None => None,
        };
        let mut header = vec!["row"];
        if let Some(c) = &id_col {
            header.push(c.as_str());
        }
        header.extend(["given label", "suggested label", "label quality"]);
        let rows: Vec<Vec<Value>> = order
            .iter()
            .map(|&i| {
                let mut r = vec![json!(i)];
                if let Some(ids) = &id_keys {
                    r.push(json!(ids[i]));
                }
                r.push(json!(labels.names[labels.index[i] as usize]));
                r.push(json!(labels.names[found.suggested[i] as usize]));
                r.push(json!(found.quality[i]));
                r
            })
            .collect();
        if !rows.is_empty() {
            s.block(Block::table("Top label issues", &header, rows));
        }
        let matrix = |v: &[f64]| -> Vec<Vec<f64>> { v.chunks(k).map(<[f64]>::to_vec).collect() };
        let detail = json!({
            "rows": n,
            "classes": labels.names,
            "probabilities": how,
            "filter_by": self.params.filter_by.to_ml().name(),
            "score": self.params.score.to_ml().name(),
            "action": self.params.action.name(),
            "label_issues": flagged,
            "label_issue_rate": rate,
            "issues_per_class": labels.names.iter().zip(&per_class)
                .map(|(c, v)| (c.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "estimated_label_issues": found.estimated_issues,
            "confident_joint": found.confident_joint.counts.chunks(k).map(<[i64]>::to_vec).collect::<Vec<_>>(),
            "noise_matrix": matrix(&found.latent.noise_matrix),
            "inverse_noise_matrix": matrix(&found.latent.inverse_noise_matrix),
            "prior_true": found.latent.prior_true,
            "thresholds": found.thresholds,
            "truth": truth,
            "seconds_probabilities": seconds,
        });
        Ok(s.into_summary(detail))
    }
}

/// Precision, recall and F1 of `flags` against the boolean truth column, if
/// the table has one.
pub(super) fn truth_scores(table: &Table, batch: &RecordBatch, flags: &[bool]) -> Option<Value> {
    let field = table.schema().field_with_name(TRUTH_COLUMN).ok()?;
    if role_of(field) != Role::Truth || field.data_type() != &DataType::Boolean {
        return None;
    }
    let truth = batch.column_by_name(TRUTH_COLUMN)?.as_boolean().clone();
    let (mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize);
    for (i, &f) in flags.iter().enumerate() {
        let t = truth.is_valid(i) && truth.value(i);
        match (f, t) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    let precision = if tp + fp > 0 {
        tp as f64 / (tp + fp) as f64
    } else {
        0.0
    };
    let recall = if tp + fn_ > 0 {
        tp as f64 / (tp + fn_) as f64
    } else {
        0.0
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Some(json!({
        "column": TRUTH_COLUMN,
        "true_positives": tp, "false_positives": fp, "false_negatives": fn_,
        "precision": precision, "recall": recall, "f1": f1,
    }))
}
