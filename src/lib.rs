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

pub use gigo_pipeline::*;
pub use gigo_pipeline::{config, diag, executor, plan, registry, stage, store, table, yaml};

/// Every built-in stage type, registered explicitly.
pub fn builtin_registry() -> Registry {
    let mut r = Registry::new();
    gigo_datasets::generate::register(&mut r);
    #[cfg(feature = "polars")]
    gigo_datasets::ingest::register(&mut r);
    #[allow(unused_mut)]
    let mut scorers = gigo_stages::ScorerLoaders::default();
    #[allow(unused_mut)]
    let mut classifiers = gigo_stages::ClassifierMakers::default();
    #[cfg(feature = "neural")]
    {
        gigo_neural::scorer::register_loaders(&mut scorers);
        gigo_neural::classifier::register_maker(&mut classifiers);
    }
    gigo_stages::register_all(&mut r, scorers, classifiers);
    #[cfg(feature = "neural")]
    gigo_neural::register(&mut r);
    r
}
