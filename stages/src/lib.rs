//! gigo's built-in stages that work on Arrow tables: `profile`,
//! `label_noise`, `rebalance`, `split`, `evaluate`, `report`, `export`, `exec`. Each stage type is one module holding its parameters, its
//! implementation, its registration and its unit tests.
#![warn(missing_docs)]

pub mod evaluate;
pub mod exec;
pub mod export;
pub mod label_noise;
pub mod labels;
pub mod profile;
pub mod rebalance;
pub mod report;
pub mod split;

#[cfg(test)]
mod testing;

pub use gigo_ml::classifier::ClassifierMakers;
pub use gigo_ml::scorer::ScorerLoaders;
use gigo_pipeline::Registry;

/// Registers every stage of this crate; `evaluate` scores the model kinds
/// that `scorers` can load, and `label_noise` can cross-validate the models
/// `classifiers` make (besides gigo-ml's own).
pub fn register_all(
    registry: &mut Registry,
    scorers: ScorerLoaders,
    classifiers: ClassifierMakers,
) {
    split::register(registry);
    label_noise::register(registry, classifiers);
    export::register(registry);
    exec::register(registry);
    profile::register(registry);
    rebalance::register(registry);
    report::register(registry);
    evaluate::register(registry, scorers);
}
