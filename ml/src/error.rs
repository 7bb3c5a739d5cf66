//! The crate's one error type, grouped by whose fault it is.

/// Why a computation in gigo-ml failed.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    // --- the caller's data ---
    /// A column the caller named is not in the data.
    #[error("column `{column}` is not in the data")]
    MissingColumn {
        /// The column.
        column: String,
    },
    /// A column has a type this computation cannot use.
    #[error("column `{column}` has type {data_type}, which {what} cannot use")]
    UnsupportedType {
        /// The column.
        column: String,
        /// Its Arrow type, as text.
        data_type: String,
        /// What tried to use it (e.g. "the feature encoder").
        what: &'static str,
    },
    /// A column's type differs between the data an encoder was fitted on and
    /// the data it is applied to.
    #[error("column `{column}` was {expected} when fitted but is {found} now")]
    TypeChanged {
        /// The column.
        column: String,
        /// The kind at fit time.
        expected: &'static str,
        /// The kind now.
        found: String,
    },
    /// The data cannot be used as given (too few rows, labels out of range, ...).
    #[error("{0}")]
    Data(String),

    // --- the caller's parameters ---
    /// A parameter value is out of its valid range.
    #[error("invalid parameter `{param}`: {reason}")]
    InvalidParam {
        /// The parameter's name.
        param: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// `model_params` do not fit the model's parameter type.
    #[error("{0}")]
    Params(String),
    /// A model name that is not in the catalogue.
    #[error("unknown model `{name}`; this build has: {known}")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The catalogue's names.
        known: String,
    },

    // --- outside gigo-ml ---
    /// Arrow failed (a cast, ...).
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A saved model could not be read or written.
    #[error("model serialisation: {0}")]
    Serde(#[from] serde_json::Error),

    // --- bugs ---
    /// An invariant did not hold.
    #[error("internal error in gigo-ml (this is a bug): {0}")]
    Internal(String),
}

impl MlError {
    /// Whether this is gigo's fault, not the caller's: a broken invariant, or
    /// an Arrow operation on data gigo-ml itself prepared.
    pub fn is_internal(&self) -> bool {
        matches!(self, MlError::Internal(_) | MlError::Arrow(_))
    }

    /// A data problem described by `msg`.
    pub fn data(msg: impl Into<String>) -> Self {
        MlError::Data(msg.into())
    }

    /// An invalid parameter.
    pub fn param(param: &'static str, reason: impl Into<String>) -> Self {
        MlError::InvalidParam {
            param,
            reason: reason.into(),
        }
    }
}
