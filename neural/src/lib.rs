//! gigo's neural networks, with burn: an encoder (MLP or small CNN) with
//! every lever of a deep-learning lecture as a parameter, self-supervised
//! pretraining (`pretrain`: denoising autoencoder, VIME, SCARF), supervised
//! training from scratch or fine-tuning (`train`), the per-epoch record of
//! training and the diagnoses read from it (vanishing / exploding gradients,
//! over- / underfitting), and the network as gigo-ml's catalogue model
//! `neural_network` ([`network`]).
//!
//! burn lives only in this crate, behind the root package's `neural`
//! feature, so gigo's core builds without it.
//!
//! # Example
//! ```
//! let mut registry = gigo_pipeline::Registry::new();
//! gigo_neural::register(&mut registry);
//! assert!(registry.get("pretrain").is_some() && registry.get("train").is_some());
//! ```
#![warn(missing_docs)]

pub mod attention;
pub mod backend;
pub mod config;
pub mod data;
pub mod diagnose;
pub mod error;
pub mod fit;
pub mod loss;
pub mod net;
pub mod network;
pub mod pretrain;
pub mod saved;
pub mod sequence;
pub mod ssl;
pub mod stepper;
pub mod train;
pub mod weights;

/// The burn this crate builds on, for custom networks and benchmarks.
pub use burn;
pub use error::NeuralError;
/// The dense matrix the engines take (gigo-ml's).
pub use gigo_ml::Matrix;
pub use network::Network;

/// Registers the `pretrain` and `train` stages.
pub fn register(registry: &mut gigo_pipeline::Registry) {
    pretrain::register(registry);
    train::register(registry);
}
