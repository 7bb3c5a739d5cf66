//! Reading CSV / TSV files in chunks of records, so that a file larger than
//! memory streams through `ingest` as Parquet does.
//!
//! A chunk is the file's header followed by the next `rows` records, cut
//! only at a newline outside quotes, and is parsed exactly as a whole file
//! is ([`parse_csv`]): bad lines, structure, blank lines, then polars. Line
//! numbers in errors and in quarantined bad lines are the file's.
//!
//! Column types must be known before the first row is written, and polars
//! infers them from every value of the file. So streaming reads each file
//! twice: a first pass infers each chunk's types and merges them by polars'
//! own rule (a column with integers in one chunk and decimals in another is
//! `Float64`; a chunk where a column is empty says nothing of it); the
//! second pass parses every chunk with the merged types. Where the merge is
//! not certain to equal what polars would infer from the whole file (any
//! other mix of types), or the files disagree, [`infer`] says so and
//! `ingest` reads the files whole, as before. Bad lines of a file follow its
//! quarantined rows, as when it is read whole, so the outputs are the same
//! bytes either way.
//!
//! A quote that never closes runs to the end of the file: that chunk is the
//! rest of the file (it is quarantined or an error all the same).

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::{DataType, Schema, SchemaRef};

use gigo_pipeline::StageError;

use super::OnBadLine;
use super::bad_lines::BadLine;
use super::readers::{BOM, CsvTypes, guarded, parse_csv, to_batch};
use crate::polars_bridge::plain_batch;

/// Header and records of one chunk.
struct Chunk {
    bytes: Vec<u8>,
    /// Added to a line number of `bytes` past the header gives the file's.
    line_offset: usize,
}

/// Physical lines of the header (its leading blank lines included).
struct Header {
    bytes: Vec<u8>,
    lines: usize,
}

/// Where the scanner is within a record (RFC 4180 quoting, as `scan_csv`).
#[derive(Clone, Copy, PartialEq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

/// Cuts a CSV file into chunks of `rows` records.
struct Chunks {
    reader: BufReader<File>,
    path: PathBuf,
    separator: u8,
    rows: usize,
    header: Option<Arc<Header>>,
    /// Physical lines consumed so far.
    lines: usize,
    first: bool,
    eof: bool,
}

impl Chunks {
    fn open(path: &Path, separator: u8, rows: usize) -> Result<Chunks, StageError> {
        let file = File::open(path).map_err(|e| StageError::io(path, e))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let start = reader.fill_buf().map_err(|e| StageError::io(path, e))?;
        if start.starts_with(BOM) {
            reader.consume(BOM.len());
        }
        Ok(Chunks {
            reader,
            path: path.to_path_buf(),
            separator,
            rows: rows.max(1),
            header: None,
            lines: 0,
            first: true,
            eof: false,
        })
    }

    /// Appends up to `want` records to `out`; returns how many, and the
    /// physical lines they span.
    fn take(&mut self, want: usize, out: &mut Vec<u8>) -> Result<(usize, usize), StageError> {
        let (mut records, mut lines) = (0, 0);
        let mut state = State::FieldStart;
        // bytes of the current line outside quotes, and whether it is only "\r"
        let (mut line_len, mut only_cr) = (0usize, true);
        loop {
            let buf = self
                .reader
                .fill_buf()
                .map_err(|e| StageError::io(&self.path, e))?;
            if buf.is_empty() {
                self.eof = true;
                if state == State::Quoted || (line_len > 0 && !(line_len == 1 && only_cr)) {
                    records += 1;
                }
                return Ok((records, lines));
            }
            let mut used = buf.len();
            for (i, &b) in buf.iter().enumerate() {
                let in_quotes = state == State::Quoted;
                state = match (state, b) {
                    (State::FieldStart, b'"') => State::Quoted,
                    (State::Quoted, b'"') => State::QuoteInQuoted,
                    (State::QuoteInQuoted, b'"') => State::Quoted,
                    (State::Quoted, _) => State::Quoted,
                    (_, b) if b == self.separator || b == b'\n' => State::FieldStart,
                    (State::FieldStart | State::QuoteInQuoted, b'\r') => State::FieldStart,
                    _ => State::Unquoted,
                };
                if b == b'\n' {
                    lines += 1;
                    if !in_quotes {
                        if line_len > 0 && !(line_len == 1 && only_cr) {
                            records += 1;
                        }
                        (line_len, only_cr) = (0, true);
                        if records == want {
                            used = i + 1;
                            break;
                        }
                    }
                } else {
                    line_len += 1;
                    only_cr &= b == b'\r';
                }
            }
            out.extend_from_slice(&buf[..used]);
            self.reader.consume(used);
            if records == want {
                return Ok((records, lines));
            }
        }
    }

    fn next_chunk(&mut self) -> Result<Option<(Arc<Header>, Chunk)>, StageError> {
        let header = match &self.header {
            Some(h) => h.clone(),
            None => {
                let mut bytes = Vec::new();
                let (_, lines) = self.take(1, &mut bytes)?;
                let h = Arc::new(Header { bytes, lines });
                self.lines = lines;
                self.header = Some(h.clone());
                h
            }
        };
        if self.eof && !self.first {
            return Ok(None);
        }
        let mut bytes = header.bytes.clone();
        let line_offset = self.lines - header.lines;
        let (records, lines) = if self.eof {
            (0, 0)
        } else {
            self.take(self.rows, &mut bytes)?
        };
        self.lines += lines;
        let first = std::mem::replace(&mut self.first, false);
        if records == 0 && !first {
            return Ok(None);
        }
        Ok(Some((header, Chunk { bytes, line_offset })))
    }
}

/// Parses one chunk; errors and bad lines carry the file's line numbers.
fn parse_chunk(
    header: &Header,
    chunk: Chunk,
    shown: &str,
    separator: u8,
    types: &CsvTypes<'_>,
    on_bad: OnBadLine,
) -> Result<(polars::prelude::DataFrame, Vec<BadLine>), StageError> {
    let Chunk { bytes, line_offset } = chunk;
    let parsed = guarded(shown, "polars CSV", || {
        parse_csv(bytes, shown, separator, types, on_bad)
    })?;
    let (df, mut bad) = parsed.map_err(|e| e.shift_line(header.lines, line_offset))?;
    for b in &mut bad {
        b.line += line_offset;
    }
    Ok((df, bad))
}

/// One file's column types as polars infers them from the whole file, found
/// chunk by chunk; `None` when the chunks' types do not merge for certain.
pub(super) fn infer(
    path: &Path,
    shown: &str,
    separator: u8,
    string_columns: &[String],
    on_bad: OnBadLine,
    rows: usize,
) -> Result<Option<SchemaRef>, StageError> {
    let mut chunks = Chunks::open(path, separator, rows)?;
    let types = CsvTypes::Infer(string_columns);
    // per column: its type, and whether any chunk had a value in it
    let mut merged: Option<Vec<(polars::prelude::PlSmallStr, DataType, bool)>> = None;
    while let Some((header, chunk)) = chunks.next_chunk()? {
        let (df, _) = parse_chunk(&header, chunk, shown, separator, &types, on_bad)?;
        let columns = df.columns();
        let merged = merged.get_or_insert_with(|| {
            columns
                .iter()
                .map(|c| (c.name().clone(), c.dtype().clone(), false))
                .collect()
        });
        if merged.len() != columns.len() {
            return Err(StageError::internal("a CSV chunk changed its columns"));
        }
        for ((_, ty, seen), c) in merged.iter_mut().zip(columns) {
            if c.null_count() == c.len() {
                continue;
            }
            let t = c.dtype();
            *ty = match (*seen, &*ty, t) {
                (false, _, t) => t.clone(),
                (true, a, b) if a == b => b.clone(),
                (true, DataType::Int64, DataType::Float64)
                | (true, DataType::Float64, DataType::Int64) => DataType::Float64,
                _ => return Ok(None),
            };
            *seen = true;
        }
    }
    let merged = merged.ok_or_else(|| StageError::internal("a CSV file gave no chunk"))?;
    let schema: Schema = merged
        .into_iter()
        .map(|(name, ty, _)| polars::prelude::Field::new(name, ty))
        .collect();
    Ok(Some(Arc::new(schema)))
}

/// The record batches of one CSV file parsed chunk by chunk with `schema`
/// (from [`infer`]); the file's bad lines come with its last batch.
pub(super) fn batches(
    path: &Path,
    shown: &str,
    separator: u8,
    schema: SchemaRef,
    on_bad: OnBadLine,
    rows: usize,
) -> Result<super::Pieces, StageError> {
    let mut chunks = Chunks::open(path, separator, rows)?;
    let shown = shown.to_string();
    let types = CsvTypes::Fixed(schema);
    Ok(super::bad_lines_last(move || {
        let Some((header, chunk)) = chunks.next_chunk()? else {
            return Ok(None);
        };
        let (df, bad) = parse_chunk(&header, chunk, &shown, separator, &types, on_bad)?;
        Ok(Some((plain_batch(&to_batch(&df, &shown)?)?, bad)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Format;
    use crate::ingest::tests::{chunks_match_whole_read, written as write};

    /// The file read whole and read in chunks of every size from 1 to 4
    /// records: the same rows, types and bad lines.
    fn same_either_way(text: &[u8], on_bad: OnBadLine) {
        chunks_match_whole_read("d.csv", Format::Csv, text, on_bad, |p, rows| {
            let schema = infer(p, "d.csv", b',', &[], on_bad, rows)
                .unwrap()
                .expect("types merge");
            batches(p, "d.csv", b',', schema, on_bad, rows).unwrap()
        });
    }

    #[test]
    fn chunks_give_what_the_whole_file_gives() {
        // integers in one chunk, decimals in another; an empty column in
        // early chunks; quoted newlines and separators; blank lines; BOM;
        // no final newline
        same_either_way(
            b"\xEF\xBB\xBFa,b,c,d\n1,x,,t\n2,\"y\nz\",,f\n\n3.5,\"q,r\",7,t\r\n4,w,8.25,f",
            OnBadLine::Error,
        );
        // bad lines: ragged, invalid UTF-8, a quote that never closes
        same_either_way(
            b"a,b\n1,2\n3,4,5\n6,\xff\n7,8\n\n9,10\n11,\"never\n12,13\n",
            OnBadLine::Quarantine,
        );
        // a header and nothing else
        same_either_way(b"a,b\n", OnBadLine::Error);
    }

    #[test]
    fn errors_name_the_files_line_and_unsure_merges_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "d.csv", b"a,b\n1,2\n3,4\n\n5,6,7\n");
        let e = infer(&p, "d.csv", b',', &[], OnBadLine::Error, 1).unwrap_err();
        assert!(
            e.to_string().starts_with("d.csv:5: expected 2 fields"),
            "{e}"
        );
        // numbers in one chunk, words in another: polars' rule for the whole
        // file is not the merge of the chunks' for certain, so no streaming
        let p = write(dir.path(), "m.csv", b"a\n1\ntrue\n");
        assert_eq!(
            infer(&p, "m.csv", b',', &[], OnBadLine::Error, 1).unwrap(),
            None
        );
        assert!(
            infer(&p, "m.csv", b',', &[], OnBadLine::Error, 2)
                .unwrap()
                .is_some()
        );
    }
}
