//! The format readers of `ingest`: CSV and TSV (structure checked by the
//! `csv` crate, then read by polars), JSON lines (polars), Parquet and Arrow
//! IPC (arrow-rs), each behind a guard that turns a reader's panic into an
//! error naming the file.

use std::collections::HashSet;
use std::io::Cursor;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use polars::prelude::{
    CsvReadOptions, DataFrame, JsonFormat, JsonReader, ParquetReader, PolarsResult, SerReader,
};

use gigo_pipeline::StageError;

use super::bad_lines::{BadLine, split_csv, split_jsonl, without};
use super::{Format, OnBadLine};
use crate::error::{BoxedSource, DatasetError};
use crate::polars_bridge::{dataframe_to_record_batch, plain_batch};

/// Reads one file into a record batch with plain Arrow types. A panic inside
/// a reader becomes an error naming the file (a last line of defence: the
/// readers are meant to return errors).
pub(super) fn read_file(
    path: &Path,
    shown: &str,
    format: Format,
    string_columns: &[String],
    on_bad: OnBadLine,
) -> Result<(RecordBatch, Vec<BadLine>), StageError> {
    guarded(shown, format.reader(), || {
        read_file_unguarded(path, shown, format, string_columns, on_bad)
    })?
}

fn read_file_unguarded(
    path: &Path,
    shown: &str,
    format: Format,
    string_columns: &[String],
    on_bad: OnBadLine,
) -> Result<(RecordBatch, Vec<BadLine>), StageError> {
    if matches!(format, Format::Parquet | Format::Ipc) {
        let len = std::fs::metadata(path)
            .map_err(|e| StageError::io(path, e))?
            .len();
        if len == 0 {
            return Err(DatasetError::Empty {
                file: shown.to_string(),
                what: "the file is empty",
            }
            .into());
        }
    }
    let (df, bad) = match format {
        Format::Csv => read_csv(path, shown, b',', string_columns, on_bad)?,
        Format::Tsv => read_csv(path, shown, b'\t', string_columns, on_bad)?,
        Format::Jsonl => read_jsonl(path, shown, on_bad)?,
        Format::Parquet => return Ok((read_parquet(path, shown)?, Vec::new())),
        Format::Ipc => return Ok((read_ipc(path, shown)?, Vec::new())),
    };
    Ok((to_batch(&df, shown)?, bad))
}

/// A frame read by polars as a record batch; a problem with the data (a
/// column name Arrow cannot carry) names the file.
pub(super) fn to_batch(df: &DataFrame, shown: &str) -> Result<RecordBatch, DatasetError> {
    dataframe_to_record_batch(df).map_err(|e| {
        if e.is_internal() {
            return e;
        }
        DatasetError::Malformed {
            file: shown.to_string(),
            line: None,
            column: None,
            problem: e.to_string(),
            source: Some(Box::new(e)),
        }
    })
}

/// Parquet through arrow-rs, which reads every type a Parquet file holds
/// (polars, as built here, panics on decimals and lacks structs and times).
/// A compression codec this build of arrow-rs lacks (gzip, lz4, brotli) is
/// read by polars instead.
fn read_parquet(path: &Path, shown: &str) -> Result<RecordBatch, StageError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let open = || std::fs::File::open(path).map_err(|e| StageError::io(path, e));
    let bad = |e| unreadable(shown, "Parquet", e);
    let builder = ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(bad)?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(bad)?;
    let mut batches = Vec::new();
    for batch in reader {
        match batch {
            Ok(b) => batches.push(b),
            Err(e) if e.to_string().contains("Disabled feature at compile time") => {
                let file = open()?;
                let df = polars_read(shown, "Parquet", || ParquetReader::new(file).finish())?
                    .map_err(|e| unreadable(shown, "Parquet", e))?;
                return Ok(to_batch(&df, shown)?);
            }
            Err(e) => return Err(unreadable(shown, "Parquet", e).into()),
        }
    }
    Ok(plain_batch(&concat_batches(&schema, &batches)?)?)
}

/// Arrow IPC files through arrow-rs (every Arrow type, as written).
fn read_ipc(path: &Path, shown: &str) -> Result<RecordBatch, StageError> {
    let mut file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    let bad = |e: arrow::error::ArrowError| unreadable(shown, "Arrow IPC", e);
    // A forged footer would make the reader allocate what it claims.
    gigo_pipeline::store::check_ipc_blocks(&mut file)
        .map_err(|e| unreadable(shown, "Arrow IPC", e))?;
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
        .map_err(bad)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(bad)?;
    Ok(plain_batch(&concat_batches(&schema, &batches)?)?)
}

/// `shown` could not be read as `format`, for the reason `e`.
fn unreadable(shown: &str, format: &'static str, e: impl Into<BoxedSource>) -> DatasetError {
    DatasetError::Unreadable {
        file: shown.to_string(),
        format,
        source: e.into(),
    }
}

/// Runs `f`, turning a panic (inside polars or arrow-rs) into an error
/// naming the file and the reader.
pub(super) fn guarded<T>(
    shown: &str,
    what: &str,
    f: impl FnOnce() -> T,
) -> Result<T, DatasetError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = match gigo_pipeline::panic_message(panic.as_ref()) {
            m if m.is_empty() => "unknown failure".to_string(),
            m => m,
        };
        DatasetError::ReaderPanicked {
            file: shown.to_string(),
            reader: what.to_string(),
            message: msg,
        }
    })
}

/// Runs a polars reader, turning a panic inside polars into an error.
fn polars_read<T>(
    shown: &str,
    what: &str,
    f: impl FnOnce() -> PolarsResult<T>,
) -> Result<PolarsResult<T>, DatasetError> {
    guarded(shown, &format!("polars {what}"), f)
}

fn read_csv(
    path: &Path,
    shown: &str,
    separator: u8,
    string_columns: &[String],
    on_bad: OnBadLine,
) -> Result<(DataFrame, Vec<BadLine>), StageError> {
    let mut bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    if bytes.starts_with(BOM) {
        bytes.drain(..BOM.len());
    }
    Ok(parse_csv(
        bytes,
        shown,
        separator,
        &CsvTypes::Infer(string_columns),
        on_bad,
    )?)
}

/// The UTF-8 byte order mark some tools write at the start of a text file.
pub(super) const BOM: &[u8] = &[0xEF, 0xBB, 0xBF];

/// How a CSV parse gets its column types.
pub(super) enum CsvTypes<'a> {
    /// Inferred from every value, these columns read as text.
    Infer(&'a [String]),
    /// Given (every column, in the file's order).
    Fixed(polars::prelude::SchemaRef),
}

/// Parses CSV bytes (the header first): bad lines set aside with
/// `quarantine`, the structure checked, blank lines skipped, then polars.
pub(super) fn parse_csv(
    mut bytes: Vec<u8>,
    shown: &str,
    separator: u8,
    types: &CsvTypes<'_>,
    on_bad: OnBadLine,
) -> Result<(DataFrame, Vec<BadLine>), DatasetError> {
    let bad = match on_bad {
        OnBadLine::Error => Vec::new(),
        OnBadLine::Quarantine => {
            let (kept, bad) = split_csv(&bytes, shown, separator)?;
            bytes = kept;
            bad
        }
    };
    let (header, blank_lines) = check_csv_structure(&bytes, shown, separator)?;
    // Blank lines are no records (as for the `csv` crate and most tools);
    // polars would read them as rows of nulls.
    if !blank_lines.is_empty() {
        bytes = without(&bytes, blank_lines);
    }
    let options = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .with_raise_if_empty(false)
        .map_parse_options(|o| o.with_separator(separator));
    let options = match types {
        CsvTypes::Infer(string_columns) => {
            let overwrite: polars::prelude::Schema = header
                .iter()
                .filter(|h| string_columns.contains(h))
                .map(|h| {
                    polars::prelude::Field::new(
                        h.as_str().into(),
                        polars::prelude::DataType::String,
                    )
                })
                .collect();
            options.with_schema_overwrite((!overwrite.is_empty()).then(|| Arc::new(overwrite)))
        }
        CsvTypes::Fixed(schema) => options.with_schema(Some(schema.clone())),
    };
    let df = polars_read(shown, "CSV", || {
        options
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
    })?
    .map_err(|e| unreadable(shown, "CSV", e))?;
    Ok((df, bad))
}

/// Checks a CSV file's structure with the `csv` crate (every record has as
/// many fields as the header, quotes are closed, text is UTF-8, header names
/// are unique), so that errors name the line instead of polars' byte
/// offsets. Returns the header and the byte ranges of blank lines.
fn check_csv_structure(
    bytes: &[u8],
    shown: &str,
    separator: u8,
) -> Result<(Vec<String>, Vec<Range<usize>>), DatasetError> {
    let empty = |what| DatasetError::Empty {
        file: shown.to_string(),
        what,
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(empty("no header: the file is empty"));
    }
    let malformed = |line, problem| DatasetError::Malformed {
        file: shown.to_string(),
        line: Some(line),
        column: None,
        problem,
        source: None,
    };
    let scan = scan_csv(bytes, separator);
    if let Some(line) = scan.unterminated_quote {
        return Err(malformed(
            line,
            "unterminated quote: the quoted field that starts on this line never ends".into(),
        ));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .delimiter(separator)
        .from_reader(bytes);
    let mut header: Option<Vec<String>> = None;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {
                if header.is_none() {
                    let names: Vec<String> = record.iter().map(String::from).collect();
                    let line = record.position().map_or(1, |p| p.line());
                    let mut seen = HashSet::new();
                    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                        return Err(malformed(
                            line as usize,
                            format!("column `{dup}` appears more than once in the header"),
                        ));
                    }
                    header = Some(names);
                }
            }
            Ok(false) => break,
            Err(e) => return Err(csv_error(shown, bytes, e, header.as_deref())),
        }
    }
    let header = header.ok_or_else(|| empty("no header: the file has no lines"))?;
    Ok((header, scan.blank_lines))
}

/// The first byte at or after `offset` that is not in a blank line.
pub(super) fn skip_blank_lines(bytes: &[u8], offset: usize) -> usize {
    let mut begin = offset.min(bytes.len());
    while begin < bytes.len() && matches!(bytes[begin], b'\n' | b'\r') {
        begin += 1;
    }
    begin
}

pub(super) fn csv_error(
    shown: &str,
    bytes: &[u8],
    e: csv::Error,
    header: Option<&[String]>,
) -> DatasetError {
    // The csv crate's own line numbers skip blank lines.
    let mut line = e.position().map(|p| {
        let begin = skip_blank_lines(bytes, p.byte() as usize);
        1 + bytes[..begin].iter().filter(|&&b| b == b'\n').count()
    });
    let problem = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            let of = if header.is_some() {
                " (as in the header)"
            } else {
                ""
            };
            format!("expected {expected_len} fields{of}, found {len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => {
            let field = err.field();
            let name = header
                .and_then(|h| h.get(field))
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            format!(
                "field {}{name} is not valid UTF-8 (after {} valid bytes)",
                field + 1,
                err.valid_up_to()
            )
        }
        csv::ErrorKind::Io(io) => {
            line = None;
            io.to_string()
        }
        _ => e.to_string(),
    };
    DatasetError::Malformed {
        file: shown.to_string(),
        line,
        column: None,
        problem,
        source: Some(Box::new(e)),
    }
}

/// What a quick pass over CSV bytes finds.
pub(super) struct CsvScan {
    /// The line on which a quoted field opens and never closes.
    pub(super) unterminated_quote: Option<usize>,
    /// Byte ranges of blank lines outside quotes, newline included.
    blank_lines: Vec<Range<usize>>,
}

/// Scans CSV bytes with RFC 4180 quoting: `"` opens a quote only at the
/// start of a field, `""` inside quotes is a literal quote.
pub(super) fn scan_csv(bytes: &[u8], separator: u8) -> CsvScan {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut line = 1usize;
    let mut opened = 1usize;
    let mut line_begin = 0usize;
    let mut blank_lines = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        let in_quotes = state == State::Quoted;
        state = match (state, b) {
            (State::FieldStart, b'"') => {
                opened = line;
                State::Quoted
            }
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::Quoted, _) => State::Quoted,
            (_, b) if b == separator || b == b'\n' => State::FieldStart,
            (State::FieldStart | State::QuoteInQuoted, b'\r') => State::FieldStart,
            _ => State::Unquoted,
        };
        if b == b'\n' {
            line += 1;
            if !in_quotes {
                let content = &bytes[line_begin..i];
                if content.is_empty() || content == b"\r" {
                    blank_lines.push(line_begin..i + 1);
                }
                line_begin = i + 1;
            }
        }
    }
    CsvScan {
        unterminated_quote: (state == State::Quoted).then_some(opened),
        blank_lines,
    }
}

fn read_jsonl(
    path: &Path,
    shown: &str,
    on_bad: OnBadLine,
) -> Result<(DataFrame, Vec<BadLine>), StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DatasetError::Empty {
            file: shown.to_string(),
            what: "the file is empty: no rows, so no columns",
        }
        .into());
    }
    Ok(parse_jsonl(bytes, shown, on_bad, None)?)
}

/// Parses JSON lines `bytes` (a whole file, or consecutive lines of one as
/// `jsonl_stream` reads them) with the column types `schema`, else the types
/// polars infers from every line. Line numbers count from the first line of
/// `bytes`.
pub(super) fn parse_jsonl(
    bytes: Vec<u8>,
    shown: &str,
    on_bad: OnBadLine,
    schema: Option<polars::prelude::SchemaRef>,
) -> Result<(DataFrame, Vec<BadLine>), DatasetError> {
    let (mut bytes, bad) = match on_bad {
        OnBadLine::Error => (bytes, Vec::new()),
        OnBadLine::Quarantine => split_jsonl(&bytes),
    };
    // polars 0.55 panics (a slice out of range, in its line-length sample)
    // on bytes that end in `}\n` when the last line holds their last
    // quarter, as in many two-line files; the end of the bytes means
    // nothing to JSON lines, so it goes.
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    bytes.truncate(end);
    if bytes.is_empty() {
        // Every line was bad: no rows (and, without a schema, no columns).
        let df = match &schema {
            Some(s) => DataFrame::empty_with_schema(s),
            None => {
                DataFrame::new(0, Vec::new()).map_err(|e| unreadable(shown, "JSON lines", e))?
            }
        };
        return Ok((df, bad));
    }
    let result = polars_read(shown, "JSON lines", || {
        let reader = JsonReader::new(Cursor::new(bytes.as_slice()))
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(None);
        match schema {
            Some(s) => reader.with_schema(s).finish(),
            None => reader.finish(),
        }
    });
    match result {
        Ok(Ok(df)) => Ok((df, bad)),
        Ok(Err(e)) => Err(first_bad_json_line(&bytes, shown)
            .unwrap_or_else(|| unreadable(shown, "JSON lines", e))),
        Err(panic) => Err(first_bad_json_line(&bytes, shown).unwrap_or(panic)),
    }
}

/// The first line of a JSON lines file that is not a JSON object, as an error
/// naming file, line and column.
pub fn first_bad_json_line(bytes: &[u8], shown: &str) -> Option<DatasetError> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .find_map(|(i, line)| {
            let (col, msg) = json_line_problem(line)?;
            Some(DatasetError::Malformed {
                file: shown.to_string(),
                line: Some(i + 1),
                column: Some(col),
                problem: msg,
                source: None,
            })
        })
}

/// What is wrong with one line of a JSON lines file, if anything: the
/// column and the problem.
pub(super) fn json_line_problem(line: &[u8]) -> Option<(usize, String)> {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Err(e) => {
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(k) => msg[..k].to_string(),
                None => msg,
            };
            Some((e.column().max(1), msg))
        }
        Ok(serde_json::Value::Object(_)) => None,
        Ok(other) => {
            let what = match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            let col = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0)
                + 1;
            Some((col, format!("expected a JSON object, found {what}")))
        }
    }
}
