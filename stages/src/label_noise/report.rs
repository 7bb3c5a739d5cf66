//! The `label_noise` report section and summary: issues per class, the
//! estimated noise matrix, the top issues, and the flags scored against a
//! truth column when the table has one.

use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use gigo_ml::confident::Estimates;

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

/// One flagged row of the report's table of top issues.
struct TopIssue {
    row: usize,
    id: Option<String>,
    given: u32,
    suggested: u32,
    quality: f64,
}

/// What the summary says, gathered batch by batch: counts per class, the
/// flagged rows with the lowest quality (ties by row), and the flags scored
/// against a truth column when the table has one.
pub(super) struct Tally {
    rows: usize,
    counts: Vec<usize>,
    per_class: Vec<usize>,
    top: Vec<TopIssue>,
    keep: usize,
    id_column: Option<String>,
    /// true positives, false positives, false negatives against the truth
    truth: Option<[usize; 3]>,
}

impl Tally {
    /// For a table of `schema` with `k` classes, keeping `top` issues.
    pub(super) fn new(schema: &SchemaRef, k: usize, top: usize) -> Tally {
        let table = Table::empty(schema.clone());
        let truth = schema
            .field_with_name(TRUTH_COLUMN)
            .ok()
            .filter(|f| role_of(f) == Role::Truth && f.data_type() == &DataType::Boolean)
            .map(|_| [0; 3]);
        Tally {
            rows: 0,
            counts: vec![0; k],
            per_class: vec![0; k],
            top: Vec::new(),
            keep: top,
            id_column: table.columns_with_role(Role::Id).into_iter().next(),
            truth,
        }
    }

    /// The next batch: its labels (class indices) and verdicts.
    pub(super) fn add(
        &mut self,
        batch: &RecordBatch,
        labels: &[u32],
        v: &Verdicts,
    ) -> Result<(), StageError> {
        let at = self.rows;
        self.rows += labels.len();
        let ids = match &self.id_column {
            Some(c) => Some(ArrayFormatter::try_new(
                column(batch, c)?.as_ref(),
                &FormatOptions::default(),
            )?),
            None => None,
        };
        let truth = match self.truth {
            Some(_) => column(batch, TRUTH_COLUMN)?.as_boolean_opt().cloned(),
            None => None,
        };
        for (i, &l) in labels.iter().enumerate() {
            self.counts[l as usize] += 1;
            if let (Some(t), Some(col)) = (&mut self.truth, &truth) {
                let truly = col.is_valid(i) && col.value(i);
                match (v.is_issue[i], truly) {
                    (true, true) => t[0] += 1,
                    (true, false) => t[1] += 1,
                    (false, true) => t[2] += 1,
                    _ => {}
                }
            }
            if !v.is_issue[i] {
                continue;
            }
            self.per_class[l as usize] += 1;
            let q = v.quality[i];
            // rows come in order: a later row of equal quality ranks below
            if self.top.len() == self.keep
                && self
                    .top
                    .last()
                    .is_none_or(|w| w.quality.total_cmp(&q).is_le())
            {
                continue;
            }
            let pos = self
                .top
                .partition_point(|t| t.quality.total_cmp(&q).is_le());
            self.top.insert(
                pos,
                TopIssue {
                    row: at + i,
                    id: ids.as_ref().map(|f| f.value(i).to_string()),
                    given: l,
                    suggested: v.suggested[i],
                    quality: q,
                },
            );
            self.top.truncate(self.keep);
        }
        Ok(())
    }

    fn flagged(&self) -> usize {
        self.per_class.iter().sum()
    }

    /// Precision, recall and F1 of the flags against the truth column.
    fn truth_scores(&self) -> Option<Value> {
        let [tp, fp, fn_] = self.truth?;
        let ratio = |a: usize, b: usize| {
            if a + b > 0 {
                a as f64 / (a + b) as f64
            } else {
                0.0
            }
        };
        let (precision, recall) = (ratio(tp, fp), ratio(tp, fn_));
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
}

impl LabelNoise {
    /// The section and the summary's detail, from the run's `tally` and
    /// estimates.
    pub(super) fn summary(
        &self,
        ctx: &StageContext,
        labels: &LabelClasses,
        tally: &Tally,
        found: &Estimates,
        how: Value,
        seconds: f64,
    ) -> Result<Value, StageError> {
        let n = tally.rows;
        // timings go to the log, not the summary: reports stay byte-identical per seed
        ctx.log(format!("probabilities and flags took {seconds:.2} s"));
        let k = labels.names.len();
        let flagged = tally.flagged();
        let rate = flagged as f64 / n as f64;
        let counts = &tally.counts;
        let per_class = &tally.per_class;
        let truth = tally.truth_scores();
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
        if let Some(sample) = how.get("sample") {
            let rows = sample["rows"].as_u64().unwrap_or(0);
            s.figure("rows cross-validated", rows, "int");
            s.alert(
                Severity::Info,
                "sampled",
                Some(&labels.column),
                format!(
                    "the model was cross-validated on a stratified sample of {rows} of the {n} rows \
                     ({}); every other row was scored by the model fitted on the whole sample",
                    sample["why"].as_str().unwrap_or_default()
                ),
            )
            .with("rows", rows);
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
        let mut header = vec!["row"];
        if let Some(c) = &tally.id_column {
            header.push(c.as_str());
        }
        header.extend(["given label", "suggested label", "label quality"]);
        let rows: Vec<Vec<Value>> = tally
            .top
            .iter()
            .map(|t| {
                let mut r = vec![json!(t.row)];
                if let Some(id) = &t.id {
                    r.push(json!(id));
                }
                r.push(json!(labels.names[t.given as usize]));
                r.push(json!(labels.names[t.suggested as usize]));
                r.push(json!(t.quality));
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
            "issues_per_class": labels.names.iter().zip(per_class)
                .map(|(c, v)| (c.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "estimated_label_issues": found.estimated_issues,
            "confident_joint": found.confident_joint.counts.chunks(k).map(<[i64]>::to_vec).collect::<Vec<_>>(),
            "noise_matrix": matrix(&found.latent.noise_matrix),
            "inverse_noise_matrix": matrix(&found.latent.inverse_noise_matrix),
            "prior_true": found.latent.prior_true,
            "thresholds": found.thresholds,
            "truth": truth,
        });
        Ok(s.into_summary(detail))
    }
}
