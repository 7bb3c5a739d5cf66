//! Artifacts on disk: Parquet tables, model files, JSON summaries (the cache
//! that holds them is [`crate::cache`]).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::StageError;
use crate::stream::{StoredTable, TableWriter};
use crate::table::{Artifact, Model, PortKind, Table};

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex SHA-256 of a file's content, streamed.
pub fn file_sha256(path: &Path) -> Result<String, StageError> {
    let mut f = fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).map_err(|e| StageError::io(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Writes `table` as Parquet (Snappy), through [`TableWriter`]: the same
/// rows give the same bytes, however they are batched.
pub fn write_parquet(table: &Table, path: &Path) -> Result<StoredTable, StageError> {
    let mut w = TableWriter::create(path, table.schema().clone())?;
    for b in table.batches() {
        w.write(b)?;
    }
    w.finish()
}

/// Reads a Parquet file written by [`write_parquet`] (or any Parquet file).
pub fn read_parquet(path: &Path) -> Result<Table, StageError> {
    StoredTable::open(path)?.load(crate::stream::DEFAULT_BATCH_ROWS)
}

/// Checks that every block the footer of Arrow IPC file `f` lists lies inside the
/// file: arrow-rs allocates a block's claimed size before reading it, so a
/// forged footer would otherwise ask for gigabytes (found by fuzzing). A
/// footer that does not parse is left for the reader to report.
pub fn check_ipc_blocks(f: &mut fs::File) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut tail = [0u8; 10];
    if len < 10 || f.seek(SeekFrom::End(-10)).is_err() || f.read_exact(&mut tail).is_err() {
        return Ok(());
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer_len + 10 > len {
        return Ok(());
    }
    let mut footer = vec![0u8; footer_len as usize];
    f.seek(SeekFrom::Start(len - 10 - footer_len))
        .and_then(|_| f.read_exact(&mut footer))
        .map_err(|e| e.to_string())?;
    f.rewind().map_err(|e| e.to_string())?;
    let Ok(footer) = arrow::ipc::root_as_footer(&footer) else {
        return Ok(());
    };
    let blocks = footer.recordBatches().into_iter().flatten();
    for (i, b) in blocks
        .chain(footer.dictionaries().into_iter().flatten())
        .enumerate()
    {
        let end = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.metaDataLength()).ok())
            .zip(u64::try_from(b.bodyLength()).ok())
            .and_then(|((o, m), n)| o.checked_add(m)?.checked_add(n));
        if end.is_none_or(|end| end > len) {
            return Err(format!(
                "block {i} of the footer ({} + {} bytes at offset {}) lies outside the {len}-byte file",
                b.metaDataLength(),
                b.bodyLength(),
                b.offset()
            ));
        }
    }
    Ok(())
}

/// What the cache knows of one output port.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PortEntry {
    /// What the port carries.
    pub kind: PortKind,
    /// File name inside the entry directory.
    pub file: String,
    /// Rows, for tables.
    pub rows: Option<usize>,
    /// SHA-256 of the file's content: what downstream cache keys are made of.
    pub fingerprint: String,
}

/// Row accounting of one stage run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RowAccount {
    /// Rows on the stage's main input ports.
    #[serde(rename = "in")]
    pub rows_in: usize,
    /// Rows on its main output ports.
    #[serde(rename = "out")]
    pub rows_out: usize,
    /// Rows brought in (read, generated, synthesised), by reason.
    pub created: Vec<ReasonCount>,
    /// Rows removed, by reason (from the `removed_reason` column).
    pub removed: Vec<ReasonCount>,
    /// Whether in + created = out + removed was checked (stages without a
    /// main output, such as `export`, have nothing to balance).
    pub checked: bool,
}

/// A count with its reason.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReasonCount {
    /// Why.
    pub reason: String,
    /// How many rows.
    pub rows: usize,
}

/// Writes an artifact as `dir/<port>.<ext>` and returns its entry.
pub fn write_artifact(
    dir: &Path,
    port: &str,
    artifact: &Artifact,
) -> Result<PortEntry, StageError> {
    // A table's hash is taken as it is written; other files are hashed here.
    let (file, rows, hashed) = match artifact {
        Artifact::Table(t) => {
            let file = format!("{port}.parquet");
            let written = write_parquet(t, &dir.join(&file))?;
            (file, Some(t.num_rows()), written.sha256().map(String::from))
        }
        Artifact::Stored(t) => {
            let file = format!("{port}.parquet");
            let dest = dir.join(&file);
            link_or_copy(t.path(), &dest).map_err(|e| StageError::io(&dest, e))?;
            (file, Some(t.num_rows()), t.sha256().map(String::from))
        }
        Artifact::Model(m) => {
            let file = format!("{port}.model");
            write_model(m, &dir.join(&file))?;
            (file, None, None)
        }
        Artifact::Summary(s) => {
            let file = format!("{port}.json");
            let text = serde_json::to_vec_pretty(s.as_ref())
                .map_err(|e| StageError::internal(format!("summary JSON: {e}")))?;
            write_file(&dir.join(&file), &text)?;
            (file, None, None)
        }
    };
    let fingerprint = match hashed {
        Some(h) => h,
        None => file_sha256(&dir.join(&file))?,
    };
    Ok(PortEntry {
        kind: artifact.kind(),
        file,
        rows,
        fingerprint,
    })
}

/// Reads an artifact written by [`write_artifact`].
pub fn read_artifact(dir: &Path, entry: &PortEntry) -> Result<Artifact, StageError> {
    let path = dir.join(&entry.file);
    Ok(match entry.kind {
        PortKind::Table => Artifact::Stored(Arc::new(
            StoredTable::open(&path)?.with_sha256(entry.fingerprint.clone()),
        )),
        PortKind::Model => Artifact::Model(Arc::new(read_model(&path)?)),
        PortKind::Summary => {
            let bytes = fs::read(&path).map_err(|e| StageError::io(&path, e))?;
            let v = serde_json::from_slice(&bytes)
                .map_err(|e| StageError::file(&path, "not JSON", e))?;
            Artifact::Summary(Arc::new(v))
        }
    })
}

const MODEL_MAGIC: &[u8; 8] = b"GIGOMDL1";

/// A model file: magic, header length (u64 LE), JSON header (kind, config), weights.
pub fn write_model(m: &Model, path: &Path) -> Result<(), StageError> {
    let header =
        serde_json::to_vec(m).map_err(|e| StageError::internal(format!("model header: {e}")))?;
    let mut bytes = Vec::with_capacity(16 + header.len() + m.weights.len());
    bytes.extend_from_slice(MODEL_MAGIC);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&m.weights);
    write_file(path, &bytes)
}

/// Reads a model file.
pub fn read_model(path: &Path) -> Result<Model, StageError> {
    let bytes = fs::read(path).map_err(|e| StageError::io(path, e))?;
    let bad = || StageError::data(format!("{}: not a gigo model file", path.display()));
    if bytes.len() < 16 || &bytes[..8] != MODEL_MAGIC {
        return Err(bad());
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&bytes[8..16]);
    let n = usize::try_from(u64::from_le_bytes(n)).map_err(|_| bad())?;
    let header = bytes.get(16..16 + n).ok_or_else(bad)?;
    let mut m: Model = serde_json::from_slice(header).map_err(|_| bad())?;
    m.weights = bytes[16 + n..].to_vec();
    Ok(m)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StageError> {
    let mut f = fs::File::create(path).map_err(|e| StageError::io(path, e))?;
    f.write_all(bytes).map_err(|e| StageError::io(path, e))
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, then a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    atomically(path, |tmp| fs::write(tmp, bytes))
}

/// Makes `dest` hold the content of `src` atomically, without copying where
/// it can: a hard link made beside `dest` and renamed into place, or where
/// linking is impossible (another file system) a streamed copy. A published
/// file linked to its cache entry shares its bytes: writing into it in place
/// damages the entry, which the next lookup detects (its hash is checked)
/// and recomputes.
pub fn publish_atomic(src: &Path, dest: &Path) -> std::io::Result<()> {
    atomically(dest, |tmp| {
        fs::hard_link(src, tmp).or_else(|_| fs::copy(src, tmp).map(|_| ()))
    })
}

/// Runs `write` on a temporary file beside `dest`, then renames it into
/// place; on failure the temporary file is removed.
fn atomically(
    dest: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> std::io::Result<()> {
    static N: AtomicU64 = AtomicU64::new(0);
    let nonce = N.fetch_add(1, Ordering::Relaxed);
    let tmp = dest.with_extension(format!("tmp-{}-{nonce}", std::process::id()));
    let done = write(&tmp).and_then(|_| fs::rename(&tmp, dest));
    if done.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    done
}

/// Makes `dest` hold the content of `src`: a hard link when possible, else a copy.
pub fn link_or_copy(src: &Path, dest: &Path) -> std::io::Result<()> {
    if dest.exists() {
        fs::remove_file(dest)?;
    }
    fs::hard_link(src, dest).or_else(|_| fs::copy(src, dest).map(|_| ()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn parquet_round_trip_is_byte_stable() {
        let dir = tempfile::tempdir().unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let b = RecordBatch::try_new(
            schema,
            vec![Arc::new(Float64Array::from(vec![
                Some(1.0),
                None,
                Some(f64::NAN),
            ]))],
        )
        .unwrap();
        let t = Table::from_batch(b);
        write_parquet(&t, &dir.path().join("a.parquet")).unwrap();
        write_parquet(&t, &dir.path().join("b.parquet")).unwrap();
        assert_eq!(
            file_sha256(&dir.path().join("a.parquet")).unwrap(),
            file_sha256(&dir.path().join("b.parquet")).unwrap()
        );
        let back = read_parquet(&dir.path().join("a.parquet")).unwrap();
        assert_eq!(back.num_rows(), 3);
    }

    #[test]
    fn model_files_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let m = Model {
            kind: "k".into(),
            config: serde_json::json!({"a": 1}),
            weights: vec![1, 2, 3],
        };
        let p = dir.path().join("m.model");
        write_model(&m, &p).unwrap();
        assert_eq!(read_model(&p).unwrap(), m);
        fs::write(&p, b"garbage").unwrap();
        assert!(read_model(&p).is_err());
    }
}
