//! Errors, grouped by whose fault they are.

use std::path::PathBuf;

use crate::diag::Diagnostic;

/// Why a stage failed.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The data is not what the stage needs (missing label column, malformed file, ...).
    #[error("{0}")]
    Data(String),
    /// The data is not what the stage needs, as the typed error of the crate
    /// that found it (a contract violation, a malformed file, a degenerate
    /// label column): its own sources stay reachable through `source()`, and
    /// a caller can `downcast_ref` it.
    #[error(transparent)]
    Invalid(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something outside gigo failed (a child process of `exec`, ...).
    #[error("{0}")]
    External(String),
    /// A bug in gigo or in a stage: an invariant did not hold.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl StageError {
    /// A problem with the user's data.
    pub fn data(msg: impl Into<String>) -> Self {
        StageError::Data(msg.into())
    }

    /// A broken invariant.
    pub fn internal(msg: impl Into<String>) -> Self {
        StageError::Internal(msg.into())
    }

    /// A problem with the user's data, found by a typed error of another crate.
    pub fn invalid(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        StageError::Invalid(Box::new(source))
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StageError::Io {
            path: path.into(),
            source,
        }
    }

    /// File `path` is not what it should be (`what`: "not a readable Parquet
    /// file"), as the library that read or wrote it says (`source`).
    pub fn file(
        path: impl Into<PathBuf>,
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        StageError::invalid(FileError {
            path: path.into(),
            what,
            source: Box::new(source),
        })
    }
}

/// A file that could not be read or written in its format, with the error of
/// the library that tried as source.
#[derive(Debug, thiserror::Error)]
#[error("{}: {what}: {source}", path.display())]
pub struct FileError {
    /// The file.
    pub path: PathBuf,
    /// What went wrong, in a few words.
    pub what: &'static str,
    /// The library's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl From<arrow::error::ArrowError> for StageError {
    fn from(e: arrow::error::ArrowError) -> Self {
        StageError::Internal(format!("arrow: {e}"))
    }
}

/// A parameter problem found while building a stage, before any work.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamProblem {
    /// Path of the parameter inside the stage (`["label_noise", "folds"]` → `folds`).
    pub path: Vec<String>,
    /// What is wrong.
    pub message: String,
    /// A hint.
    pub help: Option<String>,
}

impl ParamProblem {
    /// A problem with the parameter at `path` (dot-separated).
    pub fn new(path: &str, message: impl Into<String>) -> Self {
        ParamProblem {
            path: path
                .split('.')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            message: message.into(),
            help: None,
        }
    }
}

/// Everything that can go wrong in `gigo`, by how the CLI reports it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file is invalid: every problem, with locations.
    #[error("{} problem(s) in the pipeline", .0.len())]
    Config(Vec<Diagnostic>),
    /// One or more stages failed.
    #[error("{0}")]
    Run(String),
    /// An I/O problem outside any stage (run directory, cache).
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A broken invariant.
    #[error("internal error (this is a bug): {0}")]
    Internal(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The message of a caught panic (`catch_unwind`'s payload), or "" when the
/// payload is not a string.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}
