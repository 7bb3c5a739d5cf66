//! gigo's built-in stages that work on Arrow tables: `profile`,
//! `label_noise`, `rebalance`, `split`, `fit`, `predict`, `evaluate`,
//! `report`, `export`, `exec`. Each stage type is one module holding its
//! parameters, its implementation, its registration and its unit tests.
#![warn(missing_docs)]

pub mod error;
pub mod evaluate;
pub mod exec;
pub mod export;
pub mod fit;
pub mod label_noise;
pub mod labels;
pub mod models;
pub mod predict;
pub mod profile;
pub mod rebalance;
pub mod report;
pub mod split;

#[cfg(test)]
mod testing;

pub use gigo_ml::Catalogue;
use gigo_pipeline::Registry;

/// Registers every stage of this crate; the stages that fit or score models
/// (`fit`, `predict`, `label_noise`, `evaluate`) use the models of
/// `catalogue`.
pub fn register_all(registry: &mut Registry, catalogue: &Catalogue) {
    split::register(registry);
    fit::register(registry, catalogue);
    predict::register(registry, catalogue);
    label_noise::register(registry, catalogue);
    export::register(registry);
    exec::register(registry);
    profile::register(registry);
    rebalance::register(registry);
    report::register(registry);
    evaluate::register(registry, catalogue);
}
