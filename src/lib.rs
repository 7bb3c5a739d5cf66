//! gigo — "garbage in, garbage out": data-quality and training pipelines
//! declared in YAML, a DAG of stages passing Apache Arrow tables.
//!
//! This facade re-exports the public API of the core ([`gigo_pipeline`]) and
//! knows every built-in stage ([`builtin_registry`]). A program of your own can
//! register its own stages and reuse the whole command line with
//! [`cli::main_with`]; see `examples/custom_stage.rs`.
//!
//! # Example
//! ```
//! let registry = gigo::builtin_registry();
//! assert!(registry.get("split").is_some());
//! assert!(registry.get("generate").is_some());
//! ```
#![warn(missing_docs)]

pub mod cli;
pub mod graph;
pub mod schema;

/// The model catalogue and the numeric engine, for a program's own models.
pub use gigo_ml as ml;
pub use gigo_pipeline::*;
pub use gigo_pipeline::{config, diag, executor, plan, registry, stage, store, table, yaml};

/// Every model of this build: gigo-ml's classic ones, and the network when
/// the `neural` feature is on. A program of its own registers more.
pub fn catalogue() -> gigo_ml::Catalogue {
    #[allow(unused_mut)]
    let mut c = gigo_ml::Catalogue::classic();
    #[cfg(feature = "neural")]
    gigo_neural::network::register(&mut c);
    c
}

/// Every built-in stage type, registered explicitly, with the models of
/// [`catalogue`].
pub fn builtin_registry() -> Registry {
    registry_with(&catalogue())
}

/// Every built-in stage type; the stages that fit or score models (`fit`,
/// `predict`, `label_noise`, `evaluate`) use `catalogue`, so a program that
/// registers its own model there can use it in every one of them.
pub fn registry_with(catalogue: &gigo_ml::Catalogue) -> Registry {
    let mut r = Registry::new();
    gigo_datasets::generate::register(&mut r);
    #[cfg(feature = "polars")]
    gigo_datasets::ingest::register(&mut r);
    gigo_stages::register_all(&mut r, catalogue);
    #[cfg(feature = "neural")]
    gigo_neural::register(&mut r);
    r
}
