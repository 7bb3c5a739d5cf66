//! The crate's one error type, grouped by whose fault it is.

use gigo_ml::MlError;
use gigo_pipeline::StageError;

/// Why neural training or pretraining failed.
#[derive(Debug, thiserror::Error)]
pub enum NeuralError {
    // --- the caller's data ---
    /// The data cannot be used as given (no feature column, too few rows, ...).
    #[error("{0}")]
    Data(String),
    /// Encoding features or labels failed.
    #[error(transparent)]
    Ml(#[from] MlError),

    // --- the caller's parameters ---
    /// A parameter value does not fit the data (e.g. a CNN whose image shape
    /// does not match the feature count).
    #[error("invalid parameter `{param}`: {reason}")]
    Param {
        /// The parameter's name.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    // --- a saved model ---
    /// A model on a model port could not be read back.
    #[error("saved model: {0}")]
    Saved(String),

    // --- bugs ---
    /// An invariant did not hold.
    #[error("internal error in gigo-neural (this is a bug): {0}")]
    Internal(String),
}

impl NeuralError {
    /// A data problem.
    pub fn data(msg: impl Into<String>) -> Self {
        NeuralError::Data(msg.into())
    }

    /// An invalid parameter.
    pub fn param(param: &'static str, reason: impl Into<String>) -> Self {
        NeuralError::Param {
            param,
            reason: reason.into(),
        }
    }

    /// A broken invariant.
    pub fn internal(msg: impl Into<String>) -> Self {
        NeuralError::Internal(msg.into())
    }
}

impl From<NeuralError> for StageError {
    fn from(e: NeuralError) -> Self {
        match e {
            NeuralError::Internal(m) => StageError::internal(format!("gigo-neural: {m}")),
            NeuralError::Ml(m) if m.is_internal() => {
                StageError::internal(format!("gigo-ml, from gigo-neural: {m}"))
            }
            other => StageError::invalid(other),
        }
    }
}

impl From<NeuralError> for MlError {
    fn from(e: NeuralError) -> Self {
        match e {
            NeuralError::Ml(m) => m,
            NeuralError::Param { param, reason } => MlError::param(param, reason),
            NeuralError::Internal(m) => MlError::Internal(m),
            other => MlError::data(other.to_string()),
        }
    }
}
