//! The `predict` stage's summary and report section.

use gigo_ml::TrainedModel;
use gigo_pipeline::summary::Section;
use serde_json::{Map, Value, json};

/// The summary: which model scored how many rows, and the rows predicted
/// per class (metric `predicted_fraction`, by class).
pub(super) fn summary(stage: &str, model: &TrainedModel, source: &str, counts: &[u64]) -> Value {
    let rows: u64 = counts.iter().sum();
    let mut s = Section::new(stage, super::STAGE_TYPE, "Predictions");
    s.figure("model", format!("{} (from {source})", model.name()), "text");
    s.figure("rows scored", rows, "int");
    let mut predicted = Map::new();
    let mut fraction = Map::new();
    for (c, &n) in model.classes.iter().zip(counts) {
        s.figure(&format!("predicted {c}"), n, "int");
        predicted.insert(c.clone(), n.into());
        fraction.insert(c.clone(), json!(n as f64 / rows.max(1) as f64));
    }
    s.metric("predicted_fraction", Value::Object(fraction));
    s.into_summary(json!({
        "model": model.name(),
        "model_from": source,
        "rows": rows,
        "predicted": predicted,
    }))
}
