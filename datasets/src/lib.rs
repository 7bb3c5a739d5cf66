//! gigo's data sources: synthetic classification data with known, injected
//! garbage (the `generate` stage), and, with the `polars` feature, file
//! loaders.
#![warn(missing_docs)]

pub mod contract;
pub mod error;
pub mod generate;
#[cfg(feature = "polars")]
pub mod ingest;
#[cfg(feature = "polars")]
pub mod polars_bridge;

pub use error::DatasetError;
