//! `evaluate` (in progress): generalisation and robustness of models. So far
//! the corruption suite that the stage applies to a test table, and the clean
//! metrics it reports per model and split.

pub mod corrupt;
pub mod metrics;

pub use corrupt::{Columns, Corruption, MAX_SEVERITY, corrupt};
pub use metrics::{Metrics, expected_calibration_error, flip_rate, metrics};
