//! `predict`: applies a model port (any catalogue model, from `fit` or
//! `train`) to a table: batch scoring of new rows. Adds one `prob_<class>`
//! column per class and `predicted` (the most probable class, as text), all
//! with role `added`; every input row and column is kept.
//!
//! The table must have the columns the model was fitted on, of the same
//! kind (numeric / categorical); a table that lacks one, has one of another
//! type, or declares feature columns (role `feature`) the model never saw is
//! refused with the columns named. Missing values are imputed as at fit time.

mod report;
#[cfg(test)]
mod tests;

use gigo_ml::Catalogue;
use gigo_pipeline::Metrics;
use gigo_pipeline::{
    Inputs, PortKind, PortSpec, Registry, Role, Stage, StageContext, StageError, StageOutput,
    Table, with_predictions,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::from_model;
use crate::models;

/// The stage type name.
pub const STAGE_TYPE: &str = "predict";

/// Parameters of `predict` (none yet).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictParams {}

/// The `predict` stage.
pub struct Predict {
    catalogue: Catalogue,
}

/// Registers `predict`, reading the models of `catalogue`.
pub fn register(registry: &mut Registry, catalogue: &Catalogue) {
    let catalogue = catalogue.clone();
    registry.register::<PredictParams, _>(
        STAGE_TYPE,
        "Scores a table with a model port (any catalogue model, from `fit` or `train`): adds \
         prob_<class> per class and `predicted`. Refuses a table whose feature columns do not \
         match the model's (missing, extra or mistyped columns named).",
        move |_: PredictParams| {
            Ok(Box::new(Predict {
                catalogue: catalogue.clone(),
            }))
        },
    );
}

impl Stage for Predict {
    fn metrics(&self) -> Metrics {
        Metrics::names(["predicted_fraction"])
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec {
                kind: PortKind::Model,
                ..PortSpec::table("model", "the model to apply")
            },
            PortSpec::table("table", "the rows to score"),
        ]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table(
            "table",
            "the input rows with prob_<class> and predicted",
        )]
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let port = match inputs.models("model").as_slice() {
            [one] => one.clone(),
            [] => return Err(StageError::internal("input port `model` has no model")),
            _ => {
                return Err(StageError::data(
                    "several models on `model`; predict applies one (use several stages)",
                ));
            }
        };
        let source = inputs.sources("model").first().cloned().unwrap_or_default();
        let model = models::load(&self.catalogue, &port).map_err(from_model(&source))?;
        let table = inputs.table("table")?;
        check_columns(&model.features, &table, &source)?;
        ctx.progress
            .message(&format!("scoring with {}", model.name()));
        let batch = table.to_batch()?;
        let x = model
            .encode(std::slice::from_ref(&batch))
            .map_err(from_model(&source))?;
        let probs = model.predict_proba(&x).map_err(from_model(&source))?;
        let out = with_predictions(&table, &probs.data, &model.classes)?;
        let mut counts = vec![0u64; model.classes.len()];
        for c in crate::evaluate::metrics::argmax_rows(&probs.data, probs.cols) {
            counts[c as usize] += 1;
        }
        let summary = report::summary(&ctx.stage_id, &model, &source, &counts);
        Ok(StageOutput::new().with("table", out).with_summary(summary))
    }
}

/// Refuses `table` when its columns do not match what `features` was fitted
/// on: missing or mistyped input columns, or feature columns (role
/// `feature`) the model never saw.
fn check_columns(
    features: &gigo_ml::FeatureEncoder,
    table: &Table,
    source: &str,
) -> Result<(), StageError> {
    let m = features.mismatches(table.schema());
    let extra: Vec<String> = table
        .columns_with_role(Role::Feature)
        .into_iter()
        .filter(|c| !features.columns().contains(c))
        .collect();
    if m.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let list = |v: &[String]| {
        v.iter()
            .map(|c| format!("`{c}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut parts = Vec::new();
    if !m.missing.is_empty() {
        parts.push(format!("missing columns {}", list(&m.missing)));
    }
    for (c, expected, found) in &m.mistyped {
        parts.push(format!(
            "column `{c}` is {found}, but the model was fitted on it as {expected}"
        ));
    }
    if !extra.is_empty() {
        parts.push(format!(
            "feature columns the model was not fitted on: {} (drop them or clear their role)",
            list(&extra)
        ));
    }
    Err(StageError::data(format!(
        "the table does not match the columns the model from `{source}` was fitted on ({}): {}",
        list(features.columns()),
        parts.join("; ")
    )))
}
