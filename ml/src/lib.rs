//! gigo's numeric engine, shared by the stages: dense feature matrices built
//! from Arrow tables, an exact multi-core kNN engine, confident learning, and
//! classic classifiers. Knows no pipeline; builds without polars or burn.
#![warn(missing_docs)]

pub mod boosting;
pub mod catalogue;
pub mod classes;
pub mod confident;
pub mod cv;
pub mod error;
pub mod features;
pub mod forest;
pub mod knn;
pub mod knn_classifier;
pub mod logistic;
pub mod matrix;
pub mod metrics;
pub mod numpy_compat;
pub mod trained;

pub use catalogue::{Catalogue, Estimator, Fit, FittedModel, TrainSet};
pub use classes::Classes;
pub use error::MlError;
pub use features::{EncoderFitter, EncoderOptions, FeatureEncoder};
pub use knn::{Neighbors, knn, knn_self};
pub use matrix::Matrix;
pub use trained::TrainedModel;
