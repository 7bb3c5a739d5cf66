//! `on_bad_line: quarantine`: malformed lines of CSV / JSON lines files
//! (wrong field count, a quote that never closes, text that is not UTF-8,
//! invalid JSON) are taken out before parsing and go to the `quarantined`
//! port with their raw text, line number and reason.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, StringArray, new_null_array,
};
use arrow::datatypes::{DataType, Field, Schema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use gigo_pipeline::{REASON_COLUMN, StageError};

use crate::error::DatasetError;

/// What `ingest` does with a malformed line of a CSV, TSV or JSON lines file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnBadLine {
    /// Fail the stage with the file, line and problem (the default).
    #[default]
    Error,
    /// Send the line to `quarantined` (with `line_number`, `raw_line` and
    /// `removed_reason`) and read the rest.
    Quarantine,
}

/// The line number column of quarantined bad lines.
pub const LINE_COLUMN: &str = "line_number";
/// The raw text column of quarantined bad lines.
pub const RAW_COLUMN: &str = "raw_line";

/// A line taken out of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number in the file (of the record's first line).
    pub line: usize,
    /// The text as in the file (invalid UTF-8 replaced), without the newline.
    pub raw: String,
    /// What is wrong.
    pub reason: String,
}

fn raw_text(bytes: &[u8]) -> String {
    let mut end = bytes.len();
    while end > 0 && matches!(bytes[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The byte range of 1-based physical line `line` (newline included).
fn line_range(bytes: &[u8], line: usize) -> std::ops::Range<usize> {
    let mut start = 0;
    for _ in 1..line {
        match bytes[start..].iter().position(|&b| b == b'\n') {
            Some(p) => start += p + 1,
            None => return bytes.len()..bytes.len(),
        }
    }
    let end = bytes[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| start + p + 1);
    start..end
}

/// Maps a line number of the buffer left after removing `removed` (original,
/// sorted physical lines) back to the file's.
fn original_line(line: usize, removed: &[usize]) -> usize {
    let mut orig = line;
    for &r in removed {
        if r <= orig {
            orig += 1;
        }
    }
    orig
}

/// Splits CSV bytes into the bytes of the header and the good records, and
/// the bad records. A broken header is still an error.
pub fn split_csv(
    bytes: &[u8],
    shown: &str,
    separator: u8,
) -> Result<(Vec<u8>, Vec<BadLine>), DatasetError> {
    let mut buf = bytes.to_vec();
    let mut bad = Vec::new();
    // A quote that never closes swallows the rest of the file: take out the
    // line it opens on, and look again.
    let mut removed: Vec<usize> = Vec::new();
    while let Some(line) = super::readers::scan_csv(&buf, separator).unterminated_quote {
        if line == 1 {
            return Err(DatasetError::Malformed {
                file: shown.to_string(),
                line: Some(1),
                column: None,
                problem: "unterminated quote in the header".into(),
                source: None,
            });
        }
        let range = line_range(&buf, line);
        let orig = original_line(line, &removed);
        bad.push(BadLine {
            line: orig,
            raw: raw_text(&buf[range.clone()]),
            reason: "unterminated quote".into(),
        });
        removed.push(orig);
        removed.sort_unstable();
        buf.drain(range);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(separator)
        .from_reader(buf.as_slice());
    let mut record = csv::ByteRecord::new();
    let mut header_len = None;
    let mut drop: Vec<std::ops::Range<usize>> = Vec::new();
    let (mut newlines, mut counted) = (0, 0);
    loop {
        let start = reader.position().clone();
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| super::readers::csv_error(shown, &buf, e, None))?;
        if !more {
            break;
        }
        let end = reader.position().byte() as usize;
        let offset = record.position().map_or(start.byte(), |p| p.byte()) as usize;
        // Lines counted here, incrementally: the csv crate's skip blank lines.
        let begin = super::readers::skip_blank_lines(&buf, offset);
        newlines += buf[counted..begin].iter().filter(|&&b| b == b'\n').count();
        counted = begin;
        let line = original_line(newlines + 1, &removed);
        let Some(expected) = header_len else {
            header_len = Some(record.len());
            continue;
        };
        let reason = if record.len() != expected {
            Some(format!(
                "expected {expected} fields (as in the header), found {}",
                record.len()
            ))
        } else {
            record
                .iter()
                .position(|f| std::str::from_utf8(f).is_err())
                .map(|i| format!("field {} is not valid UTF-8", i + 1))
        };
        if let Some(reason) = reason {
            bad.push(BadLine {
                line,
                raw: raw_text(&buf[begin..end]),
                reason,
            });
            drop.push(begin..end);
        }
    }
    bad.sort_by_key(|b| b.line);
    Ok((without(&buf, drop), bad))
}

/// `buf` without the byte ranges `drop` (ascending, not overlapping).
pub(super) fn without(
    buf: &[u8],
    drop: impl IntoIterator<Item = std::ops::Range<usize>>,
) -> Vec<u8> {
    let mut kept = Vec::with_capacity(buf.len());
    let mut from = 0;
    for r in drop {
        kept.extend_from_slice(&buf[from..r.start]);
        from = r.end;
    }
    kept.extend_from_slice(&buf[from..]);
    kept
}

/// Splits JSON lines bytes into the good lines and the bad ones (not JSON,
/// or not an object).
pub fn split_jsonl(bytes: &[u8]) -> (Vec<u8>, Vec<BadLine>) {
    let mut kept = Vec::with_capacity(bytes.len());
    let mut bad = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match super::readers::json_line_problem(line) {
            Some((_, reason)) => bad.push(BadLine {
                line: i + 1,
                raw: raw_text(line),
                reason,
            }),
            None => {
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
    }
    (kept, bad)
}

/// Rows for `quarantined` in `schema` (the quarantine of contract violations,
/// with [`LINE_COLUMN`] and [`RAW_COLUMN`]): the file's columns null.
pub fn bad_line_rows(schema: &Schema, bad: &[BadLine]) -> Result<RecordBatch, StageError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                LINE_COLUMN => Arc::new(Int64Array::from_iter_values(
                    bad.iter().map(|b| b.line as i64),
                )),
                RAW_COLUMN => Arc::new(StringArray::from_iter_values(bad.iter().map(|b| &b.raw))),
                REASON_COLUMN => Arc::new(StringArray::from_iter_values(
                    bad.iter().map(|b| format!("bad line: {}", b.reason)),
                )),
                _ => new_null_array(f.data_type(), bad.len()),
            }
        })
        .collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(schema.clone()),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(bad.len())),
    )?)
}

/// The two columns bad lines add to `quarantined`.
pub fn bad_line_fields() -> [Field; 2] {
    [
        Field::new(LINE_COLUMN, DataType::Int64, true),
        Field::new(RAW_COLUMN, DataType::Utf8, true),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_bad_records_are_taken_out_with_their_original_lines() {
        let text = b"a,b\n1,2\n3,\"x\n4,5\n\n6,7,8\n9,\xff\n10,11\n";
        let (kept, bad) = split_csv(text, "d.csv", b',').unwrap();
        assert_eq!(kept, b"a,b\n1,2\n4,5\n\n10,11\n");
        let got: Vec<(usize, &str, &str)> = bad
            .iter()
            .map(|b| (b.line, b.raw.as_str(), b.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (3, "3,\"x", "unterminated quote"),
                (6, "6,7,8", "expected 2 fields (as in the header), found 3"),
                (7, "9,\u{fffd}", "field 2 is not valid UTF-8"),
            ]
        );
        let e = split_csv(b"a,\"b\n1,2\n", "d.csv", b',').unwrap_err();
        assert!(
            e.to_string().starts_with("d.csv:1: unterminated quote"),
            "{e}"
        );
    }

    #[test]
    fn json_lines_that_are_not_objects_are_taken_out() {
        let (kept, bad) = split_jsonl(b"{\"a\": 1}\n\n{\"a\": 2,,}\n[1]\n{\"a\": 3}");
        assert_eq!(kept, b"{\"a\": 1}\n{\"a\": 3}\n");
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), vec![3, 4]);
        assert_eq!(bad[1].reason, "expected a JSON object, found an array");
    }
}
