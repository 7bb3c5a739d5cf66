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
use gigo_pipeline::{
    Artifact, Inputs, Memory, Metrics, PortKind, PortSpec, Registry, Role, Stage, StageContext,
    StageError, StageOutput, Table, TableWriter, rechunk, with_predictions,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::from_model;
use crate::models;

/// The stage type name.
pub const STAGE_TYPE: &str = "predict";

/// Rows scored at once: fixed, so that a model whose kernels depend on the
/// matrix's size scores every row the same whatever the batches.
pub const SCORE_ROWS: usize = 65_536;

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

    fn memory(&self) -> Memory {
        Memory::STREAMS
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
        let table = inputs.source("table")?;
        let schema = Table::empty(table.schema().clone());
        check_columns(&model.features, &schema, &source)?;
        ctx.progress
            .message(&format!("scoring with {}", model.name()));
        ctx.progress.set_total(table.num_rows() as u64);
        // Fixed chunks: the scores do not depend on the batches that came in.
        let chunks = rechunk(
            table.schema().clone(),
            table.batches(ctx.batch_rows)?,
            SCORE_ROWS,
        );
        let mut writer: Option<TableWriter> = None;
        let mut counts = vec![0u64; model.classes.len()];
        for chunk in chunks {
            let chunk = chunk?;
            let x = model
                .encode(std::slice::from_ref(&chunk))
                .map_err(from_model(&source))?;
            let probs = model.predict_proba(&x).map_err(from_model(&source))?;
            for c in crate::evaluate::metrics::argmax_rows(&probs.data, probs.cols) {
                counts[c as usize] += 1;
            }
            let scored = with_predictions(&Table::from_batch(chunk), &probs.data, &model.classes)?
                .to_batch()?;
            if writer.is_none() {
                writer = Some(ctx.table_writer("table", scored.schema())?);
            }
            if let Some(w) = writer.as_mut() {
                w.write(&scored)?;
            }
            ctx.progress.advance(scored.num_rows() as u64);
        }
        let out: Artifact = match writer {
            Some(w) => w.finish()?.into(),
            // No rows: the empty table with the prediction columns.
            None => with_predictions(&schema, &[], &model.classes)?.into(),
        };
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
