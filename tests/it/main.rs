//! The integration tests, one binary (one link of gigo, polars and burn
//! instead of one per file): whole pipelines from YAML through the `gigo`
//! binary, and the stages on real data.

mod common;

mod cache;
#[cfg(feature = "neural")]
mod compliance;
mod corpus;
mod custom_model;
#[cfg(feature = "neural")]
mod evaluate;
mod ingest;
mod label_noise;
mod memory;
#[cfg(feature = "neural")]
mod neural;
mod pipeline;
mod profile;
mod rebalance;
mod report;
mod sequence;
mod validate;
