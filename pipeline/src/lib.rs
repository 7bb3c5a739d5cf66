//! gigo's core: pipeline YAML with precise errors, the DAG and its validation,
//! the [`Stage`] contract and the [`Registry`], the executor with its
//! content-addressed cache, and run records.
//!
//! This crate knows no concrete stage: built-in stages live in `gigo-stages`
//! and `gigo-datasets`, and a user's program registers its own the same way.
#![warn(missing_docs)]

pub mod budget;
pub mod cache;
pub mod config;
pub mod diag;
pub mod error;
pub mod executor;
pub mod memory;
pub mod plan;
pub mod registry;
pub mod samples;
pub mod stage;
pub mod store;
pub mod stream;
pub mod summary;
pub mod table;
pub mod wiring;
pub mod yaml;

pub use budget::{Bytes, Memory};
pub use config::{Override, PipelineSpec};
pub use diag::{Diagnostic, Location};
pub use error::{Error, ParamProblem, StageError, panic_message};
pub use executor::{Observer, RunOptions, RunRecord, RunResult, Silent, StageRecord, StageStatus};
pub use plan::{Plan, PlannedStage};
pub use registry::{Registry, StageType};
pub use stage::{Flow, Inputs, NoProgress, PortSpec, Progress, Stage, StageContext, StageOutput};
pub use stream::{Batches, Source, StoredTable, TableWriter, rechunk};
pub use table::{
    Artifact, Model, PREDICTED, PortKind, REASON_COLUMN, Role, Table, append_columns,
    field_with_role, prob_column, role_of, with_predictions,
};
pub use wiring::{Edge, Metrics, Wiring};

/// gigo's version: part of every cache key (with the build id, [`cache::build_id`]).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Loads a pipeline file, applies overrides (typed by each stage's parameter
/// schema) and validates it against `registry`. Returns the plan and the
/// file's source (for rendering diagnostics), or every problem found.
pub fn load_plan(
    path: &std::path::Path,
    overrides: &[String],
    registry: &Registry,
) -> Result<(Plan, String), (Vec<Diagnostic>, Option<String>)> {
    let mut parsed = Vec::new();
    let mut problems = Vec::new();
    for (i, o) in overrides.iter().enumerate() {
        match Override::parse(o, i) {
            Ok(o) => parsed.push(o),
            Err(d) => problems.push(d),
        }
    }
    let (mut spec, source) = match config::load_file(path, &parsed) {
        Ok(x) => x,
        Err(mut d) => {
            problems.append(&mut d);
            let source = std::fs::read_to_string(path).ok();
            return Err((problems, source));
        }
    };
    config::coerce_overrides(&mut spec, &parsed, |t| {
        registry.get(t).map(|st| st.params_schema().clone())
    });
    match plan::build_plan(&spec, registry) {
        Ok(plan) if problems.is_empty() => Ok((plan, source)),
        Ok(_) => Err((problems, Some(source))),
        Err(mut d) => {
            problems.append(&mut d);
            Err((problems, Some(source)))
        }
    }
}
