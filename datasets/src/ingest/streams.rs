//! Reading Parquet files in batches, so that `ingest` holds a batch at a
//! time, never a whole file: the contract is checked per batch and each
//! batch goes on into the store.
//!
//! Streaming needs every file's schema before the first row is written, so
//! it applies when every matched file is Parquet, all of one schema, in a
//! compression codec this build reads (Snappy, zstd or none). Otherwise
//! `ingest` reads file by file and unifies the types across files, as
//! before (CSV, JSON lines and IPC files are read whole).

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;

use gigo_pipeline::{Batches, StageError};

use super::Format;
use super::readers::guarded;
use crate::error::DatasetError;
use crate::polars_bridge::{plain_batch, plain_type};

/// Whether `files` can stream: all Parquet, one schema (as plain types),
/// codecs this build reads.
pub(super) fn can_stream(files: &[PathBuf], formats: &[Format]) -> Result<bool, StageError> {
    if formats.iter().any(|f| *f != Format::Parquet) {
        return Ok(false);
    }
    let mut first: Option<Schema> = None;
    for path in files {
        let Ok(file) = File::open(path) else {
            return Ok(false);
        };
        // A file that does not open as Parquet fails later, on the path
        // that names the problem.
        let Ok(builder) = ParquetRecordBatchReaderBuilder::try_new(file) else {
            return Ok(false);
        };
        let readable = builder.metadata().row_groups().iter().all(|g| {
            g.columns().iter().all(|c| {
                matches!(
                    c.compression(),
                    Compression::UNCOMPRESSED | Compression::SNAPPY | Compression::ZSTD(_)
                )
            })
        });
        if !readable {
            return Ok(false);
        }
        let plain = Schema::new(
            builder
                .schema()
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
