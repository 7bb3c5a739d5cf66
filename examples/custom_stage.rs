//! A user's own binary with a custom stage: `clip` limits every feature
//! column to a range and counts the values it changed. It registers the stage
//! beside gigo's built-in ones and reuses gigo's whole command line, so
//!
//! ```text
//! cargo run --example custom_stage -- run examples/custom_stage.yaml
//! ```
//!
//! runs a pipeline that uses `type: clip` like any built-in stage.

use std::process::ExitCode;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch};
use gigo::{
    Inputs, ParamProblem, PortSpec, Role, Stage, StageContext, StageError, StageOutput, Table,
};
use schemars::JsonSchema;
use serde::Deserialize;

/// Parameters of `clip`: unknown keys are errors, like every built-in stage's.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct ClipParams {
    /// Smallest value kept; smaller values become this.
    min: f64,
    /// Largest value kept; larger values become this.
    max: f64,
}

struct Clip {
    min: f64,
    max: f64,
}

impl Stage for Clip {
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table("table", "rows to clip")]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table("table", "the same rows, features clipped")]
    }

    fn run(&self, inputs: &Inputs, _ctx: &StageContext) -> Result<StageOutput, StageError> {
        let table = inputs.table("table")?;
        let features = table.columns_with_role(Role::Feature);
        let mut changed = 0usize;
        let mut batches = Vec::new();
        for batch in table.batches() {
            let mut cols: Vec<ArrayRef> = Vec::new();
            for (field, col) in batch.schema().fields().iter().zip(batch.columns()) {
                match col.as_any().downcast_ref::<Float64Array>() {
                    Some(values) if features.contains(field.name()) => {
                        let clipped: Float64Array = values
                            .iter()
                            .map(|v| {
                                v.map(|x| {
                                    let c = x.clamp(self.min, self.max);
                                    if c != x {
                                        changed += 1;
                                    }
                                    c
                                })
                            })
                            .collect();
                        cols.push(Arc::new(clipped));
                    }
                    _ => cols.push(col.clone()),
                }
            }
            batches.push(RecordBatch::try_new(batch.schema(), cols)?);
        }
        let out = Table::new(table.schema().clone(), batches)?;
        Ok(StageOutput::new()
            .with("table", out)
            .with_summary(serde_json::json!({ "values_clipped": changed })))
    }
}

fn main() -> ExitCode {
    let mut registry = gigo::builtin_registry();
    registry.register::<ClipParams, _>(
        "clip",
        "Clips every feature column to [min, max] (an example of a user's own stage).",
        |p| {
            if p.min > p.max {
                return Err(vec![ParamProblem::new(
                    "min",
                    format!("min {} is above max {}", p.min, p.max),
                )]);
            }
            Ok(Box::new(Clip {
                min: p.min,
                max: p.max,
            }))
        },
    );
    gigo::cli::main_with(registry)
}
