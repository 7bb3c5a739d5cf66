//! What the cache key covers of an ingested file, and the check that it did
//! not change while it was read.
//!
//! Hashing every byte of a 50 GB file for the cache key takes minutes, before
//! any work. So by default (`fingerprint: metadata`) the key covers what the
//! file system says of it: size, modification and status-change times (in
//! nanoseconds), inode and device, and for Parquet the footer (its schema,
//! row groups and their statistics). Any write to the file changes its
//! status-change time, which no tool sets back (`touch -d` and `rsync -t` set
//! the modification time only), so an edited file misses the cache; a file
//! copied or moved elsewhere also misses (a recompute, never a stale result).
//! A file system whose times are coarse (FAT, some network mounts: 1-2 s) can
//! show a same-size rewrite within that window as unchanged: use
//! `fingerprint: content` there, which hashes every byte (SHA-256).
//!
//! Either way the stage re-reads the metadata after reading each file and
//! fails if it changed: rows read from a file being rewritten would be a mix
//! of two versions.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use gigo_pipeline::StageError;
use gigo_pipeline::store::{file_sha256, sha256_hex};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the cache key covers of each file read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FingerprintMode {
    /// Size, modification and status-change times, inode, device, and a
    /// Parquet file's footer: microseconds whatever the size.
    #[default]
    Metadata,
    /// SHA-256 of every byte (about 1 s per GB here): for file systems with
    /// coarse timestamps.
    Content,
}

/// A Parquet footer longer than this is not hashed (a real one is kilobytes
/// to a few megabytes; the metadata still covers the file).
const MAX_FOOTER: u64 = 64 << 20;

/// The file system's description of `path`: changes whenever its content
/// does (see the module documentation).
pub fn stamp(path: &Path) -> Result<String, StageError> {
    let m = std::fs::metadata(path).map_err(|e| StageError::io(path, e))?;
    let mut s = format!("size {}", m.len());
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        s.push_str(&format!(
            " mtime {}.{:09} ctime {}.{:09} ino {} dev {}",
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec(),
            m.ino(),
            m.dev()
        ));
    }
    #[cfg(not(unix))]
    if let Ok(t) = m.modified() {
        s.push_str(&format!(" mtime {t:?}"));
    }
    if let Some(footer) = parquet_footer(path, m.len())? {
        s.push_str(&format!(" footer {}", sha256_hex(&footer)));
    }
    Ok(s)
}

/// The footer of a Parquet file (the bytes before the trailing length and
/// `PAR1`), or `None` when the file does not end like a Parquet file.
fn parquet_footer(path: &Path, size: u64) -> Result<Option<Vec<u8>>, StageError> {
    if size < 12 {
        return Ok(None);
    }
    let io = |e| StageError::io(path, e);
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut tail = [0u8; 8];
    f.seek(SeekFrom::End(-8)).map_err(io)?;
    f.read_exact(&mut tail).map_err(io)?;
    if &tail[4..] != b"PAR1" {
        return Ok(None);
    }
    let len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if len > size - 12 || len > MAX_FOOTER {
        return Ok(None);
    }
    let mut footer = vec![0u8; len as usize];
    f.seek(SeekFrom::End(-8 - len as i64)).map_err(io)?;
    f.read_exact(&mut footer).map_err(io)?;
    Ok(Some(footer))
}

/// The cache key's line for `path`.
pub fn of(mode: FingerprintMode, path: &Path) -> Result<String, StageError> {
    match mode {
        FingerprintMode::Metadata => stamp(path),
        FingerprintMode::Content => file_sha256(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rewrite_of_the_same_size_changes_the_stamp_even_with_the_old_mtime() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(&p, "x\n1\n").unwrap();
        let before = stamp(&p).unwrap();
        assert_eq!(before, stamp(&p).unwrap(), "stable while unchanged");
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&p, "x\n2\n").unwrap();
        // set the modification time back, as `touch -d` would
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), mtime);
        assert_ne!(before, stamp(&p).unwrap());
        assert_eq!(
            of(FingerprintMode::Content, &p).unwrap(),
            sha256_hex(b"x\n2\n")
        );
    }

    #[test]
    fn a_parquet_footer_is_part_of_the_stamp_and_a_forged_length_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.parquet");
        let mut bytes = b"PAR1".to_vec();
        bytes.extend_from_slice(b"ROWGROUPS");
        bytes.extend_from_slice(b"FOOTER");
        bytes.extend_from_slice(&6u32.to_le_bytes());
        bytes.extend_from_slice(b"PAR1");
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(
            parquet_footer(&p, bytes.len() as u64).unwrap().as_deref(),
            Some(&b"FOOTER"[..])
        );
        assert!(stamp(&p).unwrap().contains(" footer "));
        // a length past the start of the file: no footer, no allocation of it
        let n = bytes.len();
        bytes[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(parquet_footer(&p, bytes.len() as u64).unwrap(), None);
        // not Parquet at all
        std::fs::write(&p, b"a,b\n1,2\n").unwrap();
        assert_eq!(parquet_footer(&p, 8).unwrap(), None);
    }
}
