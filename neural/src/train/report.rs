//! The `train` stage's report section and summary: what was trained, the
//! scores per split, the learning curves and the diagnoses read from them.

use gigo_pipeline::summary::{Block, Section};
use serde_json::{Value, json};

use super::{TrainParams, kind_name, optimizer_words};
use crate::backend::backend_name;
use crate::config::{BatchSize, EncoderSpec, LossKind};
use crate::diagnose::{Baseline, curve_blocks, diagnose};
use crate::fit::{FitReport, FitSettings};

/// A scored split: (port, (loss, accuracy), rows).
pub(super) type Scored = (&'static str, (Option<f64>, f64), usize);

/// What the summary is made of.
pub(super) struct Facts<'a> {
    pub stage: &'a str,
    pub params: &'a TrainParams,
    pub fine_tuned: bool,
    pub fit: &'a FitReport,
    pub scored: &'a [Scored],
    /// Training rows per class.
    pub class_counts: &'a [usize],
    pub spec: &'a EncoderSpec,
    pub settings: &'a FitSettings,
    pub classes: &'a [String],
    pub feature_columns: usize,
    /// Training series' steps with no value in any channel (masked).
    pub missing_steps: usize,
    /// Pseudo-labelling rounds (`round`, `pseudo_labelled`, `unlabelled`).
    pub pseudo_rounds: &'a [Value],
    pub train_json: &'a Value,
    pub pretrained: &'a Option<Value>,
}

/// The summary, with the report section.
/// Every metric [`summary`] may report (`valid_*` and `test_*` need those
/// inputs).
pub(super) const METRICS: [&str; 11] = [
    "train_accuracy",
    "train_loss",
    "valid_accuracy",
    "valid_loss",
    "test_accuracy",
    "test_loss",
    "final_train_loss",
    "final_valid_loss",
    "best_valid_loss",
    "epochs",
    "updates",
];

pub(super) fn summary(f: &Facts) -> Value {
    let baseline = Baseline::of_counts(
        f.class_counts,
        f.class_counts.iter().sum(),
        f.params.loss == LossKind::CrossEntropy,
    );
    let diagnoses = diagnose(
        &f.fit.history,
        Some(baseline),
        f.fit.kept_epoch,
        &f.params.thresholds(),
    );
    let mut s = Section::new(f.stage, "train", "Neural training");
    let title = if f.fine_tuned {
        if f.params.freeze_encoder {
            "fine-tuned head on a frozen pretrained encoder"
        } else {
            "fine-tuned a pretrained encoder"
        }
    } else {
        "trained from scratch"
    };
    s.figure("model", title, "text");
    s.figure("epochs", f.fit.history.epochs.len(), "int");
    s.figure("updates", f.fit.updates, "int");
    s.figure("parameters", f.fit.parameters, "int");
    let sequence = f.spec.params.is_sequence().then(|| f.spec.sequence());
    if let Some(q) = sequence {
        s.figure(
            "sequence",
            format!("{} channel(s) x {} steps", q.channels, q.length),
            "text",
        );
        // what the embedding sees: a TCN's receptive field, an RNN every step
        let field = f.spec.params.receptive_field().unwrap_or(q.length);
        s.figure("receptive field (steps)", field, "int");
        s.figure("masked steps (no value)", f.missing_steps, "int");
    } else if f.spec.params.kind == crate::config::EncoderKind::Transformer {
        // one token per feature and the class token
        s.figure("tokens", f.spec.token_count() + 1, "int");
    }
    if let Some(last) = f.pseudo_rounds.last() {
        s.figure("pseudo-labelling rounds", f.pseudo_rounds.len(), "int");
        s.figure(
            "pseudo-labelled rows (last round)",
            last["pseudo_labelled"].clone(),
            "int",
        );
    }
    for (port, (l, a), _) in f.scored {
        s.figure(&format!("{port} accuracy"), *a, "pct");
        s.metric(&format!("{port}_accuracy"), *a);
        if let Some(l) = l {
            s.metric(&format!("{port}_loss"), *l);
        }
    }
    let last = f.fit.history.epochs.last();
    if let Some(e) = last {
        s.metric("final_train_loss", e.train_loss);
        if let Some(v) = e.valid_loss {
            s.metric("final_valid_loss", v);
        }
    }
    if let Some(best) = f
        .fit
        .history
        .epochs
        .iter()
        .filter_map(|e| e.valid_loss)
        .min_by(f64::total_cmp)
    {
        s.metric("best_valid_loss", best);
    }
    s.metric("epochs", f.fit.history.epochs.len());
    s.metric("updates", f.fit.updates);
    let mut verdicts = Vec::new();
    for d in &diagnoses {
        verdicts.push(json!({"kind": d.kind, "severity": d.severity.as_str(), "message": d.message, "evidence": d.evidence}));
        let a = s.alert(d.severity, d.kind, None, d.message.clone());
        for (key, v) in &d.evidence {
            a.with(key, v.clone());
        }
    }
    s.block(Block::Text {
        text: format!(
            "{title}: {} x {} {} encoder ({} features in, {} classes out), {} with lr {}, \
             batch {}, {} epochs run{}{}.",
            f.spec.params.depth,
            f.spec.params.width,
            kind_name(f.spec.params.kind),
            f.spec.input_dim,
            f.classes.len(),
            optimizer_words(&f.settings.optim),
            f.params.lr,
            match f.params.batch_size {
                BatchSize::Rows(n) => n.to_string(),
                BatchSize::Named(_) => "full".into(),
            },
            f.fit.history.epochs.len(),
            if f.fit.stopped_early {
                format!(
                    " (early stopping; weights of epoch {} kept)",
                    f.fit.kept_epoch.unwrap_or(0)
                )
            } else {
                String::new()
            },
            if f.fit.diverged {
                "; training diverged"
            } else {
                ""
            },
        ),
    });
    for b in curve_blocks(&f.fit.history) {
        s.block(b);
    }
    s.into_summary(json!({
        "classes": f.classes,
        "feature_columns": f.feature_columns,
        "encoded_features": f.spec.input_dim,
        "encoder": {
            "kind": crate::config::word(&f.spec.params.kind),
            "sequence": sequence.map(|q| json!({"channels": q.channels, "length": q.length})),
            "receptive_field": f.spec.params.receptive_field(),
            "causal": f.spec.params.causal,
            "masked_steps": f.missing_steps,
        },
        "backend": backend_name(),
        "pseudo_label": f.pseudo_rounds,
        "stopped_early": f.fit.stopped_early,
        "kept_epoch": f.fit.kept_epoch,
        "diverged": f.fit.diverged,
        "updates": f.fit.updates,
        "params": f.train_json,
        "pretrained": f.pretrained,
        "history": f.fit.history,
        "diagnoses": verdicts,
        "scores": f.scored.iter().map(|(port, (l, a), rows)| (port.to_string(), json!({"rows": rows, "loss": l, "accuracy": a}))).collect::<serde_json::Map<String, Value>>(),
    }))
}
