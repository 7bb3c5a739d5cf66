//! The errors of gigo's data sources, grouped by what is wrong: the files
//! `path:` names, a file's content, its columns against the parameters and
//! the contract, files that do not combine, and gigo's own bugs.
//!
//! A message names the file, and the line and column where they are known.
//! It also carries the text of its `source` (the arrow, Parquet, polars or
//! csv error), since a run record keeps only the message; the typed source
//! stays reachable through [`std::error::Error::source`].

use std::error::Error as StdError;
use std::path::PathBuf;

use arrow::datatypes::DataType;
use gigo_pipeline::diag::did_you_mean;
use gigo_pipeline::{Diagnostic, StageError};

use crate::contract::ColumnType;

/// A source error of any reader (arrow-rs, Parquet, polars, glob).
pub type BoxedSource = Box<dyn StdError + Send + Sync + 'static>;

/// Why a data source failed.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    // --- The files `path:` names
    /// A literal `path:` that names no file.
    #[error(
        "{pattern}: the file {} (looked for {})",
        if *.exists { "is not a file" } else { "does not exist" },
        .looked.display()
    )]
    MissingFile {
        /// The path as written in the parameters.
        pattern: String,
        /// The path looked at.
        looked: PathBuf,
        /// Whether something (a directory, ...) is there.
        exists: bool,
    },
    /// A glob that matches no file.
    #[error("no file matches `{pattern}` (in {})", .dir.display())]
    NoMatch {
        /// The glob as written in the parameters.
        pattern: String,
        /// The directory it is relative to.
        dir: PathBuf,
    },
    /// A glob that is invalid (`path` is `None`), or a directory that could
    /// not be read while matching it.
    #[error("{}", glob_message(.pattern, .path.as_ref(), .source.as_ref()))]
    Glob {
        /// The glob as written in the parameters.
        pattern: String,
        /// The directory that could not be read.
        path: Option<PathBuf>,
        /// The glob's or the OS's error.
        #[source]
        source: BoxedSource,
    },
    /// A file whose extension names no format, without `format:`.
    #[error("{file}: cannot tell the format from the extension (known: {known}); set `format:`")]
    UnknownFormat {
        /// The file.
        file: String,
        /// The extensions a format is inferred from.
        known: &'static str,
    },

    // --- A file's content
    /// A file whose size, times or Parquet footer changed while it was read:
    /// its rows would mix two versions.
    #[error(
        "{file}: the file changed while it was read (another program is writing it?); \
         run again once it is complete"
    )]
    ChangedWhileRead {
        /// The file.
        file: String,
    },
    /// Files read whole (not streamed: see `ingest::Plan`) that would not
    /// fit the run's memory budget.
    #[error(
        "ingest reads {files} file(s) of {} whole (files of mixed formats or differing \
         schemas, Parquet in gzip / lz4 / brotli, CSV whose column types differ between parts \
         or files, or JSON lines whose types polars cannot infer line by line), about {} in \
         memory, more than the run's budget of {}: raise it with `--memory`, or convert the \
         files to Parquet of one schema, which streams",
        gigo_pipeline::Bytes(*on_disk),
        gigo_pipeline::Bytes(*need),
        gigo_pipeline::Bytes(*budget)
    )]
    OverBudget {
        /// Files matched.
        files: usize,
        /// Their size on disk.
        on_disk: u64,
        /// About what reading them takes.
        need: u64,
        /// The budget.
        budget: u64,
    },
    /// A file with nothing to read.
    #[error("{file}: {what}")]
    Empty {
        /// The file.
        file: String,
        /// What is missing (`no header: the file is empty`, ...).
        what: &'static str,
    },
    /// A text file that is not well formed: a ragged record, an unclosed
    /// quote, invalid UTF-8 or JSON, a header that repeats a name.
    #[error("{file}{}: {problem}", place(*.line, *.column))]
    Malformed {
        /// The file.
        file: String,
        /// The line (from 1), when the problem is on one.
        line: Option<usize>,
        /// The column on the line (from 1), when known.
        column: Option<usize>,
        /// What is wrong.
        problem: String,
        /// The parser's error, where one found it.
        #[source]
        source: Option<BoxedSource>,
    },
    /// A file the reader of its format refused (a corrupt Parquet file, ...).
    #[error("{file}: cannot read it as {format}: {source}")]
    Unreadable {
        /// The file.
        file: String,
        /// The format it was read as (`Parquet`, `Arrow IPC`, `CSV`, `JSON lines`).
        format: &'static str,
        /// The reader's error.
        #[source]
        source: BoxedSource,
    },
    /// A reader that panicked on a file: a bug in the reader, most often on
    /// a corrupt file or a type it does not support.
    #[error(
        "{file}: the {reader} reader panicked while reading it (a bug in the reader; the file \
         may be corrupt or use a type it does not support): {message}"
    )]
    ReaderPanicked {
        /// The file.
        file: String,
        /// The reader (`Parquet`, `polars CSV`, ...).
        reader: String,
        /// The panic's message.
        message: String,
    },
    /// A column name that cannot be passed on (it holds a NUL byte).
    #[error("column name {name:?} contains a NUL byte")]
    BadColumnName {
        /// The name.
        name: String,
    },

    // --- Columns against the parameters and the contract
    /// Columns the parameters or the contract name that a file lacks.
    #[error("{}", missing_columns(.file, .wanted, .by, .columns))]
    MissingColumn {
        /// The file.
        file: String,
        /// The columns missing (at least one).
        wanted: Vec<String>,
        /// Who names them.
        by: WantedBy,
        /// The file's columns.
        columns: Vec<String>,
    },
    /// A column that the file, the parameters or the contract disagree on.
    #[error("{file}: column `{column}` {problem}")]
    ColumnConflict {
        /// The file.
        file: String,
        /// The column.
        column: String,
        /// How they disagree (`appears more than once`, ...).
        problem: String,
    },
    /// A contract file that does not parse: every problem, with its place.
    #[error("invalid dataset contract {file}:\n{}", render(.problems, .text))]
    InvalidContract {
        /// The contract, as the user named it.
        file: String,
        /// Each problem, with its line and column.
        problems: Vec<Diagnostic>,
        /// The contract's text (problems are shown with their line).
        text: String,
    },
    /// Columns a contract with `extra_columns: error` does not name.
    #[error(
        "{file}: column(s) {} are not in the contract {contract} (it says `extra_columns: error`)",
        quoted(.columns)
    )]
    ExtraColumns {
        /// The file.
        file: String,
        /// The contract.
        contract: String,
        /// The columns it does not name.
        columns: Vec<String>,
    },
    /// A column whose type cannot be cast to the contract's.
    #[error(
        "{file}: column `{column}` has type {found}, which cannot be cast to {expected} as the \
         contract {contract} asks"
    )]
    Uncastable {
        /// The file.
        file: String,
        /// The column.
        column: String,
        /// Its type in the file.
        found: DataType,
        /// The contract's type.
        expected: ColumnType,
        /// The contract.
        contract: String,
    },

    // --- Files that do not combine (a glob of several)
    /// A file whose columns are not the first file's.
    #[error("{file} does not have the same columns as {first}: {}", column_difference(.missing, .extra))]
    DifferentColumns {
        /// The file.
        file: String,
        /// The first file, whose columns the others must have.
        first: String,
        /// The first file's columns this one lacks.
        missing: Vec<String>,
        /// Its columns the first file lacks.
        extra: Vec<String>,
    },
    /// A column of types in two files that no type holds both of.
    #[error(
        "column `{column}` is {ty} in {file} but {other_ty} in {other}; these cannot be combined"
    )]
    IncompatibleTypes {
        /// The column.
        column: String,
        /// A file.
        file: String,
        /// The column's type there.
        ty: DataType,
        /// Another file.
        other: String,
        /// The column's type there.
        other_ty: DataType,
    },
    /// A column that failed to cast to the type the files combine as.
    #[error("{file}: column `{column}` cannot be combined with the other files as {ty}: {source}")]
    NotCombinable {
        /// The file.
        file: String,
        /// The column.
        column: String,
        /// The type of the column in the combined table.
        ty: DataType,
        /// arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },

    // --- gigo's bugs
    /// An invariant did not hold (a conversion that cannot fail did).
    #[error("{what}: {source}")]
    Internal {
        /// What was being done.
        what: String,
        /// arrow's error.
        #[source]
        source: arrow::error::ArrowError,
    },
}

/// Who names a column that a file lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WantedBy {
    /// `label:` or `roles` (the label column).
    Label,
    /// The dataset contract (as the user named it).
    Contract(String),
    /// A rule of `ignore`, `id` or `roles`, as shown (`` `true_*` in `ignore` ``).
    Rule(String),
}

impl DatasetError {
    /// Whether it is a bug in gigo rather than a problem with the data.
    pub fn is_internal(&self) -> bool {
        matches!(self, DatasetError::Internal { .. })
    }

    /// The error with its line number moved by `offset` when it is past
    /// line `after`: a line of a chunk of a file becomes the file's line.
    pub(crate) fn shift_line(self, after: usize, offset: usize) -> DatasetError {
        match self {
            DatasetError::Malformed {
                file,
                line: Some(l),
                column,
                problem,
                source,
            } if l > after => DatasetError::Malformed {
                file,
                line: Some(l + offset),
                column,
                problem,
                source,
            },
            e => e,
        }
    }
}

impl From<DatasetError> for StageError {
    fn from(e: DatasetError) -> Self {
        if e.is_internal() {
            StageError::internal(e.to_string())
        } else {
            StageError::invalid(e)
        }
    }
}

/// `:line` or `:line:column`, or nothing.
fn place(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn glob_message(
    pattern: &str,
    path: Option<&PathBuf>,
    source: &(dyn StdError + Send + Sync),
) -> String {
    match path {
        None => format!("`{pattern}` is not a valid glob pattern: {source}"),
        Some(p) => format!(
            "{}: cannot read while matching `{pattern}`: {source}",
            p.display()
        ),
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|m| format!("`{m}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing_columns(file: &str, wanted: &[String], by: &WantedBy, columns: &[String]) -> String {
    let first = wanted.first().map_or("", String::as_str);
    let mut msg = match by {
        WantedBy::Label => format!("label column `{first}` is not in {file}"),
        WantedBy::Contract(c) if wanted.len() == 1 => format!(
            "{file}: column {} required by the contract {c} is missing",
            quoted(wanted)
        ),
        WantedBy::Contract(c) => format!(
            "{file}: columns {} required by the contract {c} are missing",
            quoted(wanted)
        ),
        WantedBy::Rule(rule) => format!("{file}: {rule} matches no column"),
    };
    msg.push_str("; its columns are: ");
    if columns.is_empty() {
        msg.push_str("(none)");
    } else {
        msg.push_str(&columns.join(", "));
    }
    if let Some(s) = did_you_mean(first, columns.iter().map(String::as_str)) {
        msg.push_str(&format!(" (did you mean `{s}`?)"));
    }
    msg
}

fn render(problems: &[Diagnostic], text: &str) -> String {
    problems
        .iter()
        .map(|d| d.render(Some(text)))
        .collect::<Vec<_>>()
        .join("\n")
}

fn column_difference(missing: &[String], extra: &[String]) -> String {
    let mut what = Vec::new();
    if !missing.is_empty() {
        what.push(format!("it lacks {}", missing.join(", ")));
    }
    if !extra.is_empty() {
        what.push(format!("it has {} in addition", extra.join(", ")));
    }
    what.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_errors_keep_their_source_and_internal_ones_say_bug() {
        let e = DatasetError::Unreadable {
            file: "d.parquet".into(),
            format: "Parquet",
            source: Box::new(arrow::error::ArrowError::ParseError("bad magic".into())),
        };
        let stage = StageError::from(e);
        assert_eq!(
            stage.to_string(),
            "d.parquet: cannot read it as Parquet: Parser error: bad magic"
        );
        let StageError::Invalid(inner) = &stage else {
            panic!("{stage:?}")
        };
        let ours = inner.downcast_ref::<DatasetError>().unwrap();
        let source = StdError::source(ours).unwrap();
        assert!(source.downcast_ref::<arrow::error::ArrowError>().is_some());

        let e = DatasetError::Internal {
            what: "building a record batch".into(),
            source: arrow::error::ArrowError::ComputeError("lengths differ".into()),
        };
        assert!(matches!(StageError::from(e), StageError::Internal(_)));
    }

    #[test]
    fn places_and_column_lists_read_as_before() {
        let e = DatasetError::Malformed {
            file: "d.jsonl".into(),
            line: Some(2),
            column: Some(1),
            problem: "expected a JSON object, found an array".into(),
            source: None,
        };
        assert_eq!(
            e.to_string(),
            "d.jsonl:2:1: expected a JSON object, found an array"
        );
        let e = DatasetError::MissingColumn {
            file: "d.csv".into(),
            wanted: vec!["agee".into(), "zip".into()],
            by: WantedBy::Contract("c.yaml".into()),
            columns: vec!["age".into()],
        };
        assert_eq!(
            e.to_string(),
            "d.csv: columns `agee`, `zip` required by the contract c.yaml are missing; its \
             columns are: age (did you mean `age`?)"
        );
    }
}
