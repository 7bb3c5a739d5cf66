//! Reading Parquet and Arrow IPC files in batches, so that `ingest` holds a
//! batch at a time, never a whole file: the contract is checked per batch
//! and each batch goes on into the store.
//!
//! Streaming needs every file's schema before the first row is written, so
//! it applies when every matched file is Parquet (in a compression codec
//! this build reads: Snappy, zstd or none), or every one is Arrow IPC, all
//! of one schema. Otherwise `ingest` reads file by file and unifies the
//! types across files, as before (JSON lines files are read whole; CSV
//! files stream in chunks of their own, `csv_stream`).

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use arrow::ipc::reader::FileReader;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;

use gigo_pipeline::{Batches, StageError};

use super::Format;
use super::readers::guarded;
use crate::error::DatasetError;
use crate::polars_bridge::{plain_batch, plain_type};

/// Whether `files` can stream: all Parquet in codecs this build reads, or all
/// Arrow IPC, of one schema (as plain types).
pub(super) fn can_stream(files: &[PathBuf], formats: &[Format]) -> Result<bool, StageError> {
    let ipc = formats.first() == Some(&Format::Ipc);
    let one = if ipc { Format::Ipc } else { Format::Parquet };
    if formats.iter().any(|f| *f != one) {
        return Ok(false);
    }
    let mut first: Option<Schema> = None;
    for path in files {
        // A file that does not open fails later, on the path that names
        // the problem.
        let schema = if ipc {
            ipc_schema(path)
        } else {
            parquet_schema(path)
        };
        let Some(schema) = schema else {
            return Ok(false);
        };
        let plain = Schema::new(
            schema
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_data_type(plain_type(f.data_type())))
                .collect::<Vec<_>>(),
        );
        match &first {
            None => first = Some(plain),
            Some(s) if s.fields() == plain.fields() => {}
            Some(_) => return Ok(false),
        }
    }
    Ok(true)
}

/// The schema of a Parquet file whose codecs this build reads.
fn parquet_schema(path: &Path) -> Option<SchemaRef> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).ok()?).ok()?;
    let readable = builder.metadata().row_groups().iter().all(|g| {
        g.columns().iter().all(|c| {
            matches!(
                c.compression(),
                Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::ZSTD(_)
            )
        })
    });
    readable.then(|| builder.schema().clone())
}

/// The schema of an Arrow IPC file whose blocks lie within it.
fn ipc_schema(path: &Path) -> Option<SchemaRef> {
    let mut file = File::open(path).ok()?;
    gigo_pipeline::store::check_ipc_blocks(&mut file).ok()?;
    let reader = FileReader::try_new(BufReader::new(file), None).ok()?;
    Some(reader.schema())
}

/// The batches of Arrow IPC file `path`, each of the file's record batches
/// cut into pieces of at most `rows` rows, with plain Arrow types; a file
/// without batches gives one empty batch (its columns). A record batch is
/// read whole, so a file written as one huge batch is held whole.
pub(super) fn ipc_batches(path: &Path, shown: &str, rows: usize) -> Result<Batches, StageError> {
    let unreadable = |e: arrow::error::ArrowError| -> StageError {
        DatasetError::Unreadable {
            file: shown.to_string(),
            format: "Arrow IPC",
            source: Box::new(e),
        }
        .into()
    };
    let mut file = File::open(path).map_err(|e| StageError::io(path, e))?;
    gigo_pipeline::store::check_ipc_blocks(&mut file).map_err(|e| {
        StageError::from(DatasetError::Unreadable {
            file: shown.to_string(),
            format: "Arrow IPC",
            source: e.into(),
        })
    })?;
    let mut reader = FileReader::try_new(BufReader::new(file), None).map_err(unreadable)?;
    if reader.num_batches() == 0 {
        let batch = plain_batch(&RecordBatch::new_empty(reader.schema()))?;
        return Ok(Box::new(std::iter::once(Ok(batch))));
    }
    let shown = shown.to_string();
    let rows = rows.max(1);
    let mut pending: std::collections::VecDeque<RecordBatch> = Default::default();
    // A panic inside the reader becomes an error naming the file.
    Ok(Box::new(std::iter::from_fn(move || {
        loop {
            if let Some(b) = pending.pop_front() {
                return Some(Ok(b));
            }
            let next = match guarded(&shown, "Arrow IPC", || reader.next()) {
                Err(e) => Err(e.into()),
                Ok(None) => return None,
                Ok(Some(Err(e))) => Err(DatasetError::Unreadable {
                    file: shown.clone(),
                    format: "Arrow IPC",
                    source: Box::new(e),
                }
                .into()),
                Ok(Some(Ok(b))) => plain_batch(&b).map_err(StageError::from),
            };
            match next {
                Err(e) => return Some(Err(e)),
                Ok(b) => pending.extend(
                    (0..b.num_rows())
                        .step_by(rows)
                        .map(|at| b.slice(at, rows.min(b.num_rows() - at))),
                ),
            }
        }
    })))
}

/// The batches of Parquet file `path`, at most `rows` rows each, with plain
/// Arrow types; an empty file gives one empty batch (its columns).
pub(super) fn parquet_batches(
    path: &Path,
    shown: &str,
    rows: usize,
) -> Result<Batches, StageError> {
    let file = File::open(path).map_err(|e| StageError::io(path, e))?;
    let unreadable = |e: parquet::errors::ParquetError| -> StageError {
        DatasetError::Unreadable {
            file: shown.to_string(),
            format: "Parquet",
            source: Box::new(e),
        }
        .into()
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(unreadable)?;
    let empty = builder.metadata().file_metadata().num_rows() == 0;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(rows.max(1))
        .build()
        .map_err(unreadable)?;
    if empty {
        let batch = plain_batch(&RecordBatch::new_empty(schema))?;
        return Ok(Box::new(std::iter::once(Ok(batch))));
    }
    let shown = shown.to_string();
    let mut reader = reader;
    // A panic inside the reader becomes an error naming the file.
    Ok(Box::new(std::iter::from_fn(move || {
        Some(match guarded(&shown, "Parquet", || reader.next()) {
            Err(e) => Err(e.into()),
            Ok(None) => return None,
            Ok(Some(Err(e))) => Err(DatasetError::Unreadable {
                file: shown.clone(),
                format: "Parquet",
                source: Box::new(e),
            }
            .into()),
            Ok(Some(Ok(b))) => plain_batch(&b).map_err(StageError::from),
        })
    })))
}
