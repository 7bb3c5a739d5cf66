//! Tables as streams of record batches: held in memory, or a Parquet file in
//! the store that is read again on every pass (several readers, several
//! passes, several epochs), so that a table larger than memory flows through
//! a stage in batches.
//!
//! A stage that reads its input in batches declares [`crate::Memory::Streams`]
//! and asks [`crate::Inputs::source`] for a [`Source`]; it writes a table too
//! large to hold through [`crate::StageContext::table_writer`]. Every other
//! stage gets its inputs whole, loaded before it starts and measured against
//! the run's memory budget ([`crate::budget`]).
//!
//! Batch boundaries never change results: every Parquet artifact is written
//! in row groups and pages cut at fixed row counts ([`WRITE_ROWS`]), so the
//! same rows give the same bytes whether they arrived in one batch or in
//! batches of 7 rows.

use std::fs::File;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::error::StageError;
use crate::table::Table;

/// Rows per batch a stage reads when the run does not say (`--batch-rows`).
pub const DEFAULT_BATCH_ROWS: usize = 64 * 1024;

/// Batches a stored table's reading thread decodes ahead of its reader.
pub const READS_AHEAD: usize = 2;

/// Rows per write into a Parquet file: fixed, so a file's bytes do not depend
/// on where its input batches broke.
pub const WRITE_ROWS: usize = 64 * 1024;

/// A table in the store: a Parquet file, read again on each pass.
#[derive(Debug)]
pub struct StoredTable {
    path: PathBuf,
    schema: SchemaRef,
    rows: usize,
    memory_bytes: u64,
    /// SHA-256 of the file, when it was computed while writing it.
    sha256: Option<String>,
}

impl StoredTable {
    /// Opens `path` (its footer only: schema, rows, sizes).
    pub fn open(path: &Path) -> Result<StoredTable, StageError> {
        let file = File::open(path).map_err(|e| StageError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| StageError::file(path, "not a readable Parquet file", e))?;
        let meta = builder.metadata();
        let rows = usize::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
        let memory_bytes = meta
            .row_groups()
            .iter()
            .map(|g| u64::try_from(g.total_byte_size()).unwrap_or(0))
            .sum();
        Ok(StoredTable {
            path: path.to_path_buf(),
            schema: builder.schema().clone(),
            rows,
            memory_bytes,
            sha256: None,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema (with roles in field metadata).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows.
    pub fn num_rows(&self) -> usize {
        self.rows
    }

    /// About how many bytes the table takes in memory, whole (the Parquet
    /// footer's uncompressed sizes).
    pub fn memory_bytes(&self) -> u64 {
        self.memory_bytes
    }

    /// The table with the SHA-256 of its file already known (a cache entry's
    /// recorded fingerprint, checked when the entry was served), so that
    /// storing or publishing the same file again does not read it again.
    pub fn with_sha256(mut self, sha256: String) -> StoredTable {
        self.sha256 = Some(sha256);
        self
    }

    /// SHA-256 of the file, if it was computed while it was written.
    pub fn sha256(&self) -> Option<&str> {
        self.sha256.as_deref()
    }

    /// A new pass over the rows, in batches of at most `rows` rows. A thread
    /// of its own decodes the file ahead of the reader (at most
    /// [`READS_AHEAD`] batches), so decoding overlaps the stage's work.
    pub fn batches(&self, rows: usize) -> Result<Batches, StageError> {
        self.read(rows, None)
    }

    /// The rows in `ranges` (sorted, not overlapping), in batches of at most
    /// `rows` rows, read as [`StoredTable::batches`] reads: only the row
    /// groups they touch are decoded, and within those the selected rows.
    pub fn rows_in(&self, ranges: &[Range<usize>], rows: usize) -> Result<Batches, StageError> {
        self.read(rows, Some(ranges))
    }

    fn read(&self, rows: usize, ranges: Option<&[Range<usize>]>) -> Result<Batches, StageError> {
        let path = self.path.clone();
        let file = File::open(&path).map_err(|e| StageError::io(&path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| {
                let b = b.with_batch_size(rows.max(1));
                match ranges {
                    None => b.build(),
                    Some(ranges) => {
                        let sizes: Vec<usize> = b
                            .metadata()
                            .row_groups()
                            .iter()
                            .map(|g| usize::try_from(g.num_rows()).unwrap_or(0))
                            .collect();
                        let (groups, selection) = selection_of(&sizes, ranges);
                        b.with_row_groups(groups)
                            .with_row_selection(selection)
                            .build()
                    }
                }
            })
            .map_err(|e| StageError::file(&path, "not a readable Parquet file", e))?;
        let schema = self.schema.clone();
        let (tx, rx) = sync_channel::<Result<RecordBatch, StageError>>(READS_AHEAD);
        std::thread::Builder::new()
            .name("gigo-reader".into())
            .spawn(move || {
                for b in reader {
                    // The table's own schema (the file's fields, and its metadata).
                    let b = b
                        .and_then(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
                        .map_err(|e| StageError::file(&path, "reading Parquet", e));
                    let failed = b.is_err();
                    // A reader that stopped listening ends the pass.
                    if tx.send(b).is_err() || failed {
                        return;
                    }
                }
            })
            .map_err(|e| StageError::io(&self.path, e))?;
        Ok(Box::new(rx.into_iter()))
    }

    /// The whole table in memory, in batches of at most `rows` rows.
    pub fn load(&self, rows: usize) -> Result<Table, StageError> {
        let batches = self.batches(rows)?.collect::<Result<Vec<_>, _>>()?;
        Table::new(self.schema.clone(), batches)
    }
}

/// The row groups of sizes `sizes` that `ranges` (sorted, not overlapping)
/// touch, and the selection of the ranges' rows within those groups.
fn selection_of(sizes: &[usize], ranges: &[Range<usize>]) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut selectors = Vec::new();
    let mut start = 0;
    for (g, &size) in sizes.iter().enumerate() {
        let end = start + size;
        let mut at = start;
        let mut touched = false;
        for r in ranges {
            let (from, to) = (r.start.max(start), r.end.min(end));
            if from >= to {
                continue;
            }
            touched = true;
            if from > at {
                selectors.push(RowSelector::skip(from - at));
            }
            selectors.push(RowSelector::select(to - from));
            at = to;
        }
        if touched {
            groups.push(g);
            if end > at {
                selectors.push(RowSelector::skip(end - at));
            }
        }
        start = end;
    }
    (groups, RowSelection::from(selectors))
}

/// One pass over a table's rows.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch, StageError>> + Send>;

/// Cuts and joins batches into batches of exactly `rows` rows (the last,
/// from [`Rechunker::finish`], may be shorter): the same chunks whatever
/// batches came in. A chunk that lies inside one input batch is a slice of
/// it, not a copy.
pub struct Rechunker {
    schema: SchemaRef,
    rows: usize,
    pending: Vec<RecordBatch>,
    pending_rows: usize,
}

impl Rechunker {
    /// Chunks of `rows` rows (at least 1) of tables of `schema`.
    pub fn new(schema: SchemaRef, rows: usize) -> Self {
        Rechunker {
            schema,
            rows: rows.max(1),
            pending: Vec::new(),
            pending_rows: 0,
        }
    }

    /// Rows held back, short of a whole chunk.
    pub fn pending_rows(&self) -> usize {
        self.pending_rows
    }

    /// Takes `batch`; the chunks it completes.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>, StageError> {
        let mut full = Vec::new();
        let mut at = 0;
        while at < batch.num_rows() {
            let take = (self.rows - self.pending_rows).min(batch.num_rows() - at);
            self.pending.push(batch.slice(at, take));
            self.pending_rows += take;
            at += take;
            if self.pending_rows == self.rows {
                full.push(self.take()?);
            }
        }
        Ok(full)
    }

    /// The last, shorter chunk, if rows are held back.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>, StageError> {
        if self.pending_rows == 0 {
            return Ok(None);
        }
        self.take().map(Some)
    }

    fn take(&mut self) -> Result<RecordBatch, StageError> {
        let chunk = match self.pending.as_slice() {
            [one] => one.clone(),
            many => concat_batches(&self.schema, many)
                .map_err(|e| StageError::internal(format!("concatenating batches: {e}")))?,
        };
        self.pending.clear();
        self.pending_rows = 0;
        Ok(chunk)
    }
}

/// `batches` as chunks of exactly `rows` rows (the last may be shorter; see
/// [`Rechunker`]): for a stage whose results could depend on how many rows
/// it handles at once (a model's matrix kernels), so that they do not depend
/// on the batches it was given.
pub fn rechunk(schema: SchemaRef, batches: Batches, rows: usize) -> Batches {
    let mut chunker = Rechunker::new(schema, rows);
    let mut input = batches;
    let mut ready = std::collections::VecDeque::new();
    let mut done = false;
    Box::new(std::iter::from_fn(move || {
        loop {
            if let Some(chunk) = ready.pop_front() {
                return Some(Ok(chunk));
            }
            if done {
                return None;
            }
            let next = match input.next() {
                Some(Ok(b)) => chunker.push(&b),
                Some(Err(e)) => Err(e),
                None => {
                    done = true;
                    chunker.finish().map(|last| last.into_iter().collect())
                }
            };
            match next {
                Ok(chunks) => ready.extend(chunks),
                Err(e) => {
                    done = true;
                    return Some(Err(e));
                }
            }
        }
    }))
}

/// A table a stage reads in batches: in memory or in the store.
#[derive(Debug, Clone)]
pub enum Source {
    /// Held in memory.
    Memory(Arc<Table>),
    /// A Parquet file in the store.
    Stored(Arc<StoredTable>),
}

impl Source {
    /// The schema.
    pub fn schema(&self) -> &SchemaRef {
        match self {
            Source::Memory(t) => t.schema(),
            Source::Stored(s) => s.schema(),
        }
    }

    /// Rows.
    pub fn num_rows(&self) -> usize {
        match self {
            Source::Memory(t) => t.num_rows(),
            Source::Stored(s) => s.num_rows(),
        }
    }

    /// About how many bytes the table takes in memory, whole.
    pub fn memory_bytes(&self) -> u64 {
        match self {
            Source::Memory(t) => t.memory_bytes(),
            Source::Stored(s) => s.memory_bytes(),
        }
    }

    /// A new pass over the rows, in batches of at most `rows` rows (a table
    /// in memory gives slices of its own batches, without copying).
    pub fn batches(&self, rows: usize) -> Result<Batches, StageError> {
        match self {
            Source::Stored(s) => s.batches(rows),
            Source::Memory(t) => {
                let rows = rows.max(1);
                let slices: Vec<RecordBatch> = t
                    .batches()
                    .iter()
                    .flat_map(|b| {
                        (0..b.num_rows())
                            .step_by(rows)
                            .map(move |at| b.slice(at, rows.min(b.num_rows() - at)))
                    })
                    .collect();
                Ok(Box::new(slices.into_iter().map(Ok)))
            }
        }
    }

    /// The rows in `ranges` (sorted, not overlapping), in batches of at most
    /// `rows` rows (see [`StoredTable::rows_in`]).
    pub fn rows_in(&self, ranges: &[Range<usize>], rows: usize) -> Result<Batches, StageError> {
        match self {
            Source::Stored(s) => s.rows_in(ranges, rows),
            Source::Memory(t) => {
                let rows = rows.max(1);
                let mut slices = Vec::new();
                let mut start = 0;
                for b in t.batches() {
                    let end = start + b.num_rows();
                    for r in ranges {
                        let (from, to) = (r.start.max(start), r.end.min(end));
                        for at in (from..to).step_by(rows) {
                            slices.push(b.slice(at - start, rows.min(to - at)));
                        }
                    }
                    start = end;
                }
                Ok(Box::new(slices.into_iter().map(Ok)))
            }
        }
    }

    /// Counts of the values in the string column `column`, in one pass.
    pub fn value_counts(
        &self,
        column: &str,
        rows: usize,
    ) -> Result<Vec<(String, usize)>, StageError> {
        crate::table::count_values(self.batches(rows)?, column)
    }

    /// The whole table in memory.
    pub fn load(&self, rows: usize) -> Result<Arc<Table>, StageError> {
        match self {
            Source::Memory(t) => Ok(t.clone()),
            Source::Stored(s) => Ok(Arc::new(s.load(rows)?)),
        }
    }
}

/// Writes a table into a Parquet file batch by batch, hashing the bytes as
/// they go out (no second pass over the file for its fingerprint). Snappy,
/// row groups cut every `4 x` [`WRITE_ROWS`] rows: the same rows give the
/// same bytes however they were batched.
///
/// Encoding, compression and hashing run on a thread of their own, off the
/// stage's critical path: the stage goes on with its next batch while the
/// last one is written (at most [`WRITES_IN_FLIGHT`] chunks wait).
pub struct TableWriter {
    path: PathBuf,
    schema: SchemaRef,
    chunker: Rechunker,
    /// Rows handed to the writing thread.
    rows: usize,
    memory_bytes: u64,
    chunks: Option<SyncSender<RecordBatch>>,
    worker: Option<JoinHandle<Result<String, StageError>>>,
}

/// Chunks of [`WRITE_ROWS`] rows that may wait for the writing thread.
pub const WRITES_IN_FLIGHT: usize = 2;

impl TableWriter {
    /// A writer of tables of `schema` into a new file at `path`.
    pub fn create(path: &Path, schema: SchemaRef) -> Result<TableWriter, StageError> {
        let file = File::create(path).map_err(|e| StageError::io(path, e))?;
        let mut props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("gigo {}", crate::VERSION))
            .set_max_row_group_row_count(Some(WRITE_ROWS * 4));
        // Floating-point columns rarely repeat: a dictionary is built for
        // each page only to be thrown away (measured: a third of the time
        // of writing 10M x 20 doubles).
        for f in schema.fields() {
            if matches!(
                f.data_type(),
                DataType::Float16 | DataType::Float32 | DataType::Float64
            ) {
                props =
                    props.set_column_dictionary_enabled(ColumnPath::from(f.name().as_str()), false);
            }
        }
        let props = props.build();
        // Two threads: one encodes and compresses, the other hashes the
        // bytes and hands them to the kernel (measured on 10M x 20 doubles:
        // each about half of what one thread did alone).
        let (bytes_tx, bytes_rx) = sync_channel::<Vec<u8>>(PIPE_BUFFERS);
        let (free_tx, free_rx) = sync_channel::<Vec<u8>>(PIPE_BUFFERS);
        let at = path.to_path_buf();
        let hasher = std::thread::Builder::new()
            .name("gigo-hasher".into())
            .spawn(move || -> Result<String, StageError> {
                let mut out = file;
                let mut hash = Sha256::new();
                for mut bytes in bytes_rx {
                    hash.update(&bytes);
                    out.write_all(&bytes).map_err(|e| StageError::io(&at, e))?;
                    bytes.clear();
                    // The encoding thread may be done: nobody to hand it to.
                    let _ = free_tx.try_send(bytes);
                }
                out.flush().map_err(|e| StageError::io(&at, e))?;
                Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
            })
            .map_err(|e| StageError::io(path, e))?;
        let sink = Pipe::new(bytes_tx, free_rx);
        let mut writer = ArrowWriter::try_new(sink, schema.clone(), Some(props))
            .map_err(|e| StageError::file(path, "starting a Parquet file", e))?;
        let (tx, rx) = sync_channel::<RecordBatch>(WRITES_IN_FLIGHT);
        let at = path.to_path_buf();
        let worker = std::thread::Builder::new()
            .name("gigo-writer".into())
            .spawn(move || -> Result<String, StageError> {
                let encoded = (|| {
                    for chunk in rx {
                        writer
                            .write(&chunk)
                            .map_err(|e| StageError::file(&at, "writing Parquet", e))?;
                    }
                    let mut pipe = writer
                        .into_inner()
                        .map_err(|e| StageError::file(&at, "closing the Parquet file", e))?;
                    pipe.send().map_err(|e| StageError::io(&at, e))
                })();
                // The hashing thread's error (a full disk) is the cause of
                // a closed pipe: it comes first.
                let hashed = match hasher.join() {
                    Ok(result) => result,
                    Err(panic) => Err(StageError::internal(format!(
                        "the hashing thread of {} panicked: {}",
                        at.display(),
                        crate::panic_message(panic.as_ref())
                    ))),
                };
                let sha256 = hashed?;
                encoded?;
                Ok(sha256)
            })
            .map_err(|e| StageError::io(path, e))?;
        Ok(TableWriter {
            path: path.to_path_buf(),
            chunker: Rechunker::new(schema.clone(), WRITE_ROWS),
            schema,
            rows: 0,
            memory_bytes: 0,
            chunks: Some(tx),
            worker: Some(worker),
        })
    }

    /// Appends `batch` (of the writer's schema).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), StageError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(StageError::internal(format!(
                "writing {}: a batch of schema {:?} into a table of {:?}",
                self.path.display(),
                batch.schema(),
                self.schema
            )));
        }
        for chunk in self.chunker.push(batch)? {
            self.send(chunk)?;
        }
        Ok(())
    }

    /// Hands `chunk` to the writing thread.
    fn send(&mut self, chunk: RecordBatch) -> Result<(), StageError> {
        let chunk = without_empty_null_buffers(chunk)?;
        self.memory_bytes += chunk.get_array_memory_size() as u64;
        self.rows += chunk.num_rows();
        let sent = self.chunks.as_ref().map(|tx| tx.send(chunk).is_ok());
        if sent != Some(true) {
            // The writing thread stopped: its error says why.
            return Err(self.join().err().unwrap_or_else(|| {
                StageError::internal(format!("the writer of {} stopped", self.path.display()))
            }));
        }
        Ok(())
    }

    /// Waits for the writing thread; the file's SHA-256.
    fn join(&mut self) -> Result<String, StageError> {
        self.chunks = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(panic)) => Err(StageError::internal(format!(
                "the writer of {} panicked: {}",
                self.path.display(),
                crate::panic_message(panic.as_ref())
            ))),
            None => Err(StageError::internal(format!(
                "the writer of {} was already closed",
                self.path.display()
            ))),
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.rows + self.chunker.pending_rows()
    }

    /// Closes the file; the table it holds, with its SHA-256.
    pub fn finish(mut self) -> Result<StoredTable, StageError> {
        if let Some(last) = self.chunker.finish()? {
            self.send(last)?;
        }
        let sha256 = self.join()?;
        Ok(StoredTable {
            path: self.path.clone(),
            schema: self.schema.clone(),
            rows: self.rows,
            memory_bytes: self.memory_bytes,
            sha256: Some(sha256),
        })
    }
}

/// `batch` with the validity buffers of columns without nulls dropped. The
/// Parquet writer pages a column with a validity buffer differently from
/// one without, so the same values (a slice of a column with nulls
/// elsewhere, or a column parsed on its own) would give different bytes.
fn without_empty_null_buffers(batch: RecordBatch) -> Result<RecordBatch, StageError> {
    if !batch
        .columns()
        .iter()
        .any(|c| c.null_count() == 0 && c.nulls().is_some())
    {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .map(|c| {
            if c.null_count() == 0 && c.nulls().is_some() {
                let data = c.to_data().into_builder().nulls(None).build()?;
                Ok(arrow::array::make_array(data))
            } else {
                Ok(c.clone())
            }
        })
        .collect::<Result<Vec<_>, arrow::error::ArrowError>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// Bytes per hand-over from the encoding thread to the hashing one.
const PIPE_BYTES: usize = 4 << 20;

/// Buffers of [`PIPE_BYTES`] in the pipe, filled or waiting to be: about
/// a row group of doubles, so that a row group's flush does not wait for
/// the disk. The hashing thread hands each buffer back when its bytes are
/// out, so the pipe's memory stays at this many buffers.
const PIPE_BUFFERS: usize = 12;

/// The encoding thread's end of the pipe to the hashing thread.
struct Pipe {
    buf: Vec<u8>,
    tx: SyncSender<Vec<u8>>,
    /// Buffers the hashing thread is done with.
    free: Receiver<Vec<u8>>,
    /// Buffers made so far.
    made: usize,
}

impl Pipe {
    /// A pipe into `tx`, whose receiver returns the buffers through `free`.
    fn new(tx: SyncSender<Vec<u8>>, free: Receiver<Vec<u8>>) -> Self {
        Pipe {
            buf: Vec::with_capacity(PIPE_BYTES),
            tx,
            free,
            made: 1,
        }
    }

    /// Hands the bytes gathered so far to the hashing thread.
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let stopped =
            || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the file writer stopped");
        let next = match self.free.try_recv() {
            Ok(b) => b,
            Err(_) if self.made < PIPE_BUFFERS => {
                self.made += 1;
                Vec::with_capacity(PIPE_BYTES)
            }
            Err(_) => self.free.recv().map_err(|_| stopped())?,
        };
        let bytes = std::mem::replace(&mut self.buf, next);
        self.tx.send(bytes).map_err(|_| stopped())
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + buf.len() > self.buf.capacity() {
            self.send()?;
        }
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    fn table(rows: usize) -> Table {
        let schema = Arc::new(Schema::new(vec![
            Field::new("i", DataType::Int64, false),
            Field::new("x", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(Float64Array::from_iter(
                    (0..rows).map(|i| (i % 7 != 0).then_some(i as f64 * 0.5)),
                )),
            ],
        )
        .unwrap();
        Table::from_batch(batch)
    }

    fn write(source: &Source, batch_rows: usize, path: &Path) -> StoredTable {
        let mut w = TableWriter::create(path, source.schema().clone()).unwrap();
        for b in source.batches(batch_rows).unwrap() {
            w.write(&b.unwrap()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn the_same_rows_give_the_same_bytes_however_they_are_batched() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::Memory(Arc::new(table(150_000)));
        let whole = write(&source, usize::MAX, &dir.path().join("a.parquet"));
        let small = write(&source, 7, &dir.path().join("b.parquet"));
        let odd = write(&source, 65_537, &dir.path().join("c.parquet"));
        let bytes = |p: &Path| std::fs::read(p).unwrap();
        assert_eq!(bytes(whole.path()), bytes(small.path()));
        assert_eq!(bytes(whole.path()), bytes(odd.path()));
        // The hash taken while writing is the file's.
        assert_eq!(
            whole.sha256().unwrap(),
            crate::store::file_sha256(whole.path()).unwrap()
        );
        assert_eq!(whole.num_rows(), 150_000);
    }

    #[test]
    fn values_without_nulls_give_the_same_bytes_with_or_without_a_validity_buffer() {
        // a column null in its first half only, written whole (its second
        // half a slice with a validity buffer of ones) and in two parts (the
        // second half parsed on its own, without one)
        let (n, half) = (270_000, 70_000);
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let values = |r: std::ops::Range<usize>| -> Vec<Option<f64>> {
            r.map(|i| (i >= half).then_some(i as f64)).collect()
        };
        let batch = |v: Vec<Option<f64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Float64Array::from(v)) as ArrayRef],
            )
            .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let write_all = |name: &str, batches: &[RecordBatch]| {
            let mut w = TableWriter::create(&dir.path().join(name), schema.clone()).unwrap();
            batches.iter().for_each(|b| w.write(b).unwrap());
            std::fs::read(w.finish().unwrap().path()).unwrap()
        };
        let whole = write_all("a.parquet", &[batch(values(0..n))]);
        let second: Vec<f64> = (half..n).map(|i| i as f64).collect();
        let parts = write_all(
            "b.parquet",
            &[
                batch(values(0..half)),
                RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(Float64Array::from(second)) as ArrayRef],
                )
                .unwrap(),
            ],
        );
        assert!(whole == parts, "the same values gave different bytes");
    }

    #[test]
    fn ranges_of_rows_read_the_same_from_memory_and_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let memory = Source::Memory(Arc::new(table(600_000)));
        let stored = Source::Stored(Arc::new(write(
            &memory,
            usize::MAX,
            &dir.path().join("t.parquet"),
        )));
        let ids = |source: &Source, ranges: &[Range<usize>], rows: usize| -> Vec<i64> {
            let mut out = Vec::new();
            for b in source.rows_in(ranges, rows).unwrap() {
                let b = b.unwrap();
                assert!(b.num_rows() <= rows);
                let col = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                out.extend(col.values().iter().copied());
            }
            out
        };
        // inside one row group, across groups, at the ends, a whole group
        let ranges = [0..3, 65_536..131_072, 262_000..262_300, 524_288..600_000];
        let want: Vec<i64> = ranges.iter().cloned().flatten().map(|i| i as i64).collect();
        for rows in [7, 65_536, 1 << 20] {
            assert_eq!(
                ids(&memory, &ranges, rows),
                want,
                "memory, batches of {rows}"
            );
            assert_eq!(
                ids(&stored, &ranges, rows),
                want,
                "stored, batches of {rows}"
            );
        }
        assert!(ids(&stored, &[], 10).is_empty());
    }

    #[test]
    fn rechunking_gives_batches_of_the_asked_size_whatever_came_in() {
        let source = Source::Memory(Arc::new(table(1_000)));
        for input in [1, 7, 300, 1_000, 5_000] {
            let out: Vec<RecordBatch> =
                rechunk(source.schema().clone(), source.batches(input).unwrap(), 256)
                    .map(|b| b.unwrap())
                    .collect();
            let sizes: Vec<usize> = out.iter().map(RecordBatch::num_rows).collect();
            assert_eq!(sizes, vec![256, 256, 256, 232], "input batches of {input}");
            let whole = concat_batches(source.schema(), &out).unwrap();
            assert_eq!(whole, source.load(1).unwrap().to_batch().unwrap());
        }
    }

    #[test]
    fn a_stored_table_reads_again_on_every_pass_in_batches_of_the_asked_size() {
        let dir = tempfile::tempdir().unwrap();
        let source = Source::Memory(Arc::new(table(1_000)));
        write(&source, 100, &dir.path().join("a.parquet"));
        let stored = Source::Stored(Arc::new(
            StoredTable::open(&dir.path().join("a.parquet")).unwrap(),
        ));
        assert_eq!(stored.num_rows(), 1_000);
        assert!(stored.memory_bytes() > 8_000);
        for _ in 0..2 {
            let sizes: Vec<usize> = stored
                .batches(300)
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .collect();
            assert_eq!(sizes, vec![300, 300, 300, 100]);
        }
        let back = stored.load(64).unwrap().to_batch().unwrap();
        assert_eq!(back, source.load(1).unwrap().to_batch().unwrap());
    }

    #[test]
    fn a_full_disk_is_a_clear_error_naming_the_file() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            return;
        }
        let source = Source::Memory(Arc::new(table(200_000)));
        let mut w = TableWriter::create(full, source.schema().clone()).unwrap();
        let mut failed = None;
        for b in source.batches(50_000).unwrap() {
            if let Err(e) = w.write(&b.unwrap()) {
                failed = Some(e);
                break;
            }
        }
        let e = match failed {
            Some(e) => e,
            None => w.finish().expect_err("writing to /dev/full must fail"),
        };
        let msg = e.to_string();
        assert!(msg.contains("/dev/full"), "{msg}");
        assert!(msg.to_lowercase().contains("no space"), "{msg}");
    }
}
