//! The `fit` stage's summary and report section.

use gigo_pipeline::StageError;
use gigo_pipeline::summary::Section;
use serde_json::{Value, json};

use super::Fitted;

/// The summary: the model, its parameters and the rows it was fitted on,
/// with a report section (metric `train_accuracy`).
pub(crate) fn summary(stage: &str, f: &Fitted) -> Result<Value, StageError> {
    let m = &f.model;
    let mut s = Section::new(stage, super::STAGE_TYPE, "Model fit");
    s.figure("model", m.name(), "text");
    s.figure("training rows", f.rows as u64, "int");
    if f.unlabelled > 0 {
        s.figure(
            "rows without a label (not trained on)",
            f.unlabelled as u64,
            "int",
        );
    }
    s.figure("feature columns", m.features.columns().len() as u64, "int");
    s.figure("encoded features", m.features.width() as u64, "int");
    s.figure("classes", m.classes.len() as u64, "int");
    s.figure("training accuracy", f.train_accuracy, "pct");
    s.metric("train_accuracy", f.train_accuracy);
    Ok(s.into_summary(json!({
        "model": m.name(),
        "params": m.params,
        "label_column": m.label_column,
        "classes": m.classes,
        "feature_columns": m.features.columns(),
        "rows": f.rows,
        "unlabelled_rows": f.unlabelled,
        "train_accuracy": f.train_accuracy,
    })))
}
