//! Reading JSON lines files in chunks of lines, so that a file larger than
//! memory streams through `ingest` as CSV and Parquet do.
//!
//! A chunk is the next `rows` non-blank lines (and the blank lines among
//! them), parsed exactly as a whole file is ([`parse_jsonl`]): bad lines
//! out, then polars. Line numbers in errors and in quarantined bad lines are
//! the file's.
//!
//! Column types must be known before the first row is written, and polars
//! infers them from every line of the file. Its inference streams (it keeps
//! each distinct row type, not the rows), so [`infer`] runs polars' own
//! inference over the file's good lines as a stream: the types are the ones
//! a whole read would give, not a merge of guesses. Where inference fails
//! (an empty file, no good line, a line polars rejects), `ingest` reads the
//! file whole, as before, and reports the problem from there. Bad lines of a
//! file follow its quarantined rows, as when it is read whole, so the
//! outputs are the same bytes either way.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::SchemaRef;

use gigo_pipeline::StageError;

use super::OnBadLine;
use super::bad_lines::split_jsonl;
use super::readers::{BOM, guarded, parse_jsonl, to_batch};
use crate::polars_bridge::plain_batch;

/// Consecutive lines of a file.
struct Chunk {
    bytes: Vec<u8>,
    /// Lines of the file before the chunk's first.
    line_offset: usize,
}

/// Cuts a JSON lines file into chunks of `rows` non-blank lines.
struct Chunks {
    reader: BufReader<File>,
    path: PathBuf,
    rows: usize,
    /// Lines consumed so far.
    lines: usize,
    eof: bool,
}

impl Chunks {
    fn open(path: &Path, rows: usize) -> Result<Chunks, StageError> {
        let file = File::open(path).map_err(|e| StageError::io(path, e))?;
        Ok(Chunks {
            reader: BufReader::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            rows: rows.max(1),
            lines: 0,
            eof: false,
        })
    }

    fn next_chunk(&mut self) -> Result<Option<Chunk>, StageError> {
        if self.eof {
            return Ok(None);
        }
        let line_offset = self.lines;
        let mut bytes = Vec::new();
        let mut records = 0;
        while records < self.rows {
            let start = bytes.len();
            let n = self
                .reader
                .read_until(b'\n', &mut bytes)
                .map_err(|e| StageError::io(&self.path, e))?;
            if n == 0 {
                self.eof = true;
                break;
            }
            self.lines += 1;
            if !bytes[start..].iter().all(u8::is_ascii_whitespace) {
                records += 1;
            }
        }
        Ok((records > 0).then_some(Chunk { bytes, line_offset }))
    }
}

/// The good lines of a file as one stream of bytes (its BOM left out, as
/// polars leaves it out of a whole file), for polars' streaming inference.
struct GoodLines {
    chunks: Chunks,
    on_bad: OnBadLine,
    buf: Vec<u8>,
    at: usize,
    first: bool,
    /// The first error reading the file (the reader can only say "I/O").
    failed: Option<StageError>,
}

impl Read for GoodLines {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            let chunk = match self.chunks.next_chunk() {
                Ok(Some(c)) => c,
                Ok(None) => return Ok(0),
                Err(e) => {
                    self.failed = Some(e);
                    return Err(std::io::Error::other("the file could not be read"));
                }
            };
            self.buf = match self.on_bad {
                OnBadLine::Error => chunk.bytes,
                OnBadLine::Quarantine => split_jsonl(&chunk.bytes).0,
            };
            self.at = 0;
            if std::mem::replace(&mut self.first, false) && self.buf.starts_with(BOM) {
                self.at = BOM.len();
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// One file's column types as polars infers them from the whole file, read
/// as a stream; `None` when polars cannot infer them (the whole read then
/// says why).
pub(super) fn infer(
    path: &Path,
    shown: &str,
    on_bad: OnBadLine,
    rows: usize,
) -> Result<Option<SchemaRef>, StageError> {
    let mut lines = BufReader::with_capacity(
        1 << 20,
        GoodLines {
            chunks: Chunks::open(path, rows)?,
            on_bad,
            buf: Vec::new(),
            at: 0,
            first: true,
            failed: None,
        },
    );
    let inferred = guarded(shown, "polars JSON lines", || {
        polars::io::ndjson::infer_schema(&mut lines, None)
    });
    if let Some(e) = lines.get_mut().failed.take() {
        return Err(e);
    }
    Ok(match inferred {
        Ok(Ok(schema)) if !schema.is_empty() => Some(Arc::new(schema)),
        _ => None,
    })
}

/// The record batches of one JSON lines file parsed chunk by chunk with
/// `schema` (from [`infer`]); the file's bad lines come with its last batch.
pub(super) fn batches(
    path: &Path,
    shown: &str,
    schema: SchemaRef,
    on_bad: OnBadLine,
    rows: usize,
) -> Result<super::Pieces, StageError> {
    let mut chunks = Chunks::open(path, rows)?;
    let shown = shown.to_string();
    Ok(super::bad_lines_last(move || {
        let Some(Chunk { bytes, line_offset }) = chunks.next_chunk()? else {
            return Ok(None);
        };
        let (df, mut bad) = guarded(&shown, "polars JSON lines", || {
            parse_jsonl(bytes, &shown, on_bad, Some(schema.clone()))
        })?
        .map_err(|e| e.shift_line(0, line_offset))?;
        for b in &mut bad {
            b.line += line_offset;
        }
        Ok(Some((plain_batch(&to_batch(&df, &shown)?)?, bad)))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Format;
    use crate::ingest::readers::read_file;
    use crate::ingest::tests::{chunks_match_whole_read, written as write};

    /// The file read whole and read in chunks of every size from 1 to 4
    /// records: the same rows, types and bad lines.
    fn same_either_way(text: &[u8], on_bad: OnBadLine) {
        chunks_match_whole_read("d.jsonl", Format::Jsonl, text, on_bad, |p, rows| {
            let schema = infer(p, "d.jsonl", on_bad, rows)
                .unwrap()
                .expect("types inferred");
            batches(p, "d.jsonl", schema, on_bad, rows).unwrap()
        });
    }

    #[test]
    fn chunks_give_what_the_whole_file_gives() {
        // integers in one chunk, decimals in another; keys in another order,
        // a key first seen late, a key null in early chunks, nested values;
        // blank lines; BOM; CRLF; no final newline
        same_either_way(
            b"\xEF\xBB\xBF{\"a\": 1, \"b\": \"x\", \"c\": null}\n{\"b\": \"y\", \"a\": 2}\n\n\
              {\"a\": 3.5, \"c\": true, \"s\": {\"k\": 1}}\r\n{\"a\": 4, \"d\": [1, 2], \"b\": null}\n\
              {\"a\": null, \"c\": false, \"s\": {\"k\": 2.5, \"j\": \"q\"}}",
            OnBadLine::Error,
        );
        // bad lines: not JSON, not an object, a truncated object
        same_either_way(
            b"{\"a\": 1}\nnope\n{\"a\": 2}\n[1, 2]\n\n{\"a\": 3, \n{\"a\": 4.5}\n",
            OnBadLine::Quarantine,
        );
    }

    #[test]
    fn errors_name_the_files_line_and_files_polars_rejects_are_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "d.jsonl",
            b"{\"a\": 1}\n{\"a\": 2}\n\n{\"a\": 3,,}\n",
        );
        use polars::prelude::{DataType, Field, Schema};
        let schema = SchemaRef::new(Schema::from_iter([Field::new("a".into(), DataType::Int64)]));
        let e = batches(&p, "d.jsonl", schema, OnBadLine::Error, 1)
            .unwrap()
            .find_map(Result::err)
            .expect("an error");
        assert!(e.to_string().starts_with("d.jsonl:4:"), "{e}");
        // inference fails on the bad line: the whole read reports it
        assert_eq!(infer(&p, "d.jsonl", OnBadLine::Error, 1).unwrap(), None);
        // nothing but blank lines, or nothing but bad lines
        let p = write(dir.path(), "e.jsonl", b"\n \n");
        assert_eq!(infer(&p, "e.jsonl", OnBadLine::Error, 1).unwrap(), None);
        let p = write(dir.path(), "b.jsonl", b"nope\n[1]\n");
        assert_eq!(
            infer(&p, "b.jsonl", OnBadLine::Quarantine, 1).unwrap(),
            None
        );
        // polars 0.55 panics on bytes that end in `}\n` when the line that
        // holds their last quarter is the last line and its first sample
        // stopped early (a CRLF line); `parse_jsonl` trims the end
        let p = write(
            dir.path(),
            "t.jsonl",
            b"{\"a\": 1}\n{\"a\": 2}\r\n{\"b\": \"a long value\", \"a\": 3}\n",
        );
        let (t, _) = read_file(&p, "t.jsonl", Format::Jsonl, &[], OnBadLine::Error).unwrap();
        assert_eq!(t.num_rows(), 3);
    }
}
