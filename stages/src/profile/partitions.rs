//! Exact duplicates and label conflicts over every row, within a memory
//! limit: the 64-bit row hashes go into hash partitions, each sorted and
//! scanned on its own. When all of them fit the limit they stay in memory
//! (one partition); otherwise each partition is written to a file in the
//! stage's scratch directory as the rows stream past, and read back one at
//! a time. Equal hashes always land in the same partition, so the result
//! is exactly the one-partition result, whatever the partition count.
//!
//! What is kept per row in the end is two bits (is a duplicate, has a label
//! conflict), 25 MB for 100M rows.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use gigo_pipeline::StageError;
use rayon::slice::ParallelSliceMut;

/// Bytes an entry of the duplicate check takes (hash, row).
pub(super) const DUP_BYTES: u64 = 16;
/// Bytes an entry of the conflict check takes (feature hash, label hash, row).
pub(super) const CONFLICT_BYTES: u64 = 24;

/// One flag per row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFlags {
    words: Vec<u64>,
    len: usize,
}

impl RowFlags {
    /// `len` flags, all false.
    pub fn new(len: usize) -> Self {
        RowFlags {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// Sets row `i`.
    pub fn set(&mut self, i: usize) {
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Whether row `i` is set.
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// How many rows are set.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// How the row checks may use memory.
#[derive(Debug, Clone, Default)]
pub struct RowCheckOptions {
    /// Rows expected (the input's row count); sizes the partitions.
    pub rows: u64,
    /// Bytes the hash entries may take at once; 0: no limit (one partition
    /// in memory).
    pub memory: u64,
    /// Where partitions are written when there are several.
    pub spill_dir: Option<PathBuf>,
}

impl RowCheckOptions {
    /// Partitions needed so that one partition of `bytes_per_row` entries
    /// fits the limit.
    fn partitions(&self, bytes_per_row: u64) -> usize {
        if self.memory == 0 || self.spill_dir.is_none() {
            return 1;
        }
        let total = self.rows.saturating_mul(bytes_per_row);
        usize::try_from(total.div_ceil(self.memory).max(1)).unwrap_or(usize::MAX)
    }
}

/// Entries of `W` words, sorted by their words, in partitions by the first.
struct Partitioned<const W: usize> {
    buffers: Vec<Vec<[u64; W]>>,
    /// One file per partition, when there are several.
    files: Vec<(PathBuf, BufWriter<File>)>,
    flush_at: usize,
}

impl<const W: usize> Partitioned<W> {
    fn new(partitions: usize, dir: Option<&Path>, name: &str) -> Result<Self, StageError> {
        let mut files = Vec::new();
        if partitions > 1
            && let Some(dir) = dir
        {
            std::fs::create_dir_all(dir).map_err(|e| StageError::io(dir, e))?;
            for p in 0..partitions {
                let path = dir.join(format!("{name}-{p}.bin"));
                let f = File::create(&path).map_err(|e| StageError::io(&path, e))?;
                files.push((path, BufWriter::with_capacity(256 << 10, f)));
            }
        }
        let partitions = files.len().max(1);
        Ok(Partitioned {
            buffers: (0..partitions).map(|_| Vec::new()).collect(),
            files,
            flush_at: 16 << 10,
        })
    }

    fn push(&mut self, entry: [u64; W]) -> Result<(), StageError> {
        let p = if self.files.is_empty() {
            0
        } else {
            // Hashes are mixed: their top bits spread evenly.
            ((entry[0] >> 32) % self.buffers.len() as u64) as usize
        };
        self.buffers[p].push(entry);
        if !self.files.is_empty() && self.buffers[p].len() >= self.flush_at {
            self.write_out(p)?;
        }
        Ok(())
    }

    fn write_out(&mut self, p: usize) -> Result<(), StageError> {
        let (path, w) = &mut self.files[p];
        let mut bytes = Vec::with_capacity(self.buffers[p].len() * W * 8);
        for e in self.buffers[p].drain(..) {
            for word in e {
                bytes.extend_from_slice(&word.to_le_bytes());
            }
        }
        w.write_all(&bytes)
            .map_err(|e| StageError::io(path.as_path(), e))
    }

    /// Calls `f` with each partition's entries, sorted; removes the files.
    fn for_each_sorted(
        mut self,
        mut f: impl FnMut(&[[u64; W]]) -> Result<(), StageError>,
    ) -> Result<(), StageError> {
        if self.files.is_empty() {
            let mut all = std::mem::take(&mut self.buffers[0]);
            all.par_sort_unstable();
            return f(&all);
        }
        for p in 0..self.buffers.len() {
            self.write_out(p)?;
        }
        let files = std::mem::take(&mut self.files);
        for (path, w) in files {
            let file = w
                .into_inner()
                .map_err(|e| StageError::io(&path, e.into_error()))?;
            drop(file);
            let mut entries = read_entries::<W>(&path)?;
            let _ = std::fs::remove_file(&path);
            entries.par_sort_unstable();
            f(&entries)?;
        }
        Ok(())
    }
}

fn read_entries<const W: usize>(path: &Path) -> Result<Vec<[u64; W]>, StageError> {
    let file = File::open(path).map_err(|e| StageError::io(path, e))?;
    let len = file.metadata().map_err(|e| StageError::io(path, e))?.len() as usize;
    let mut r = BufReader::with_capacity(256 << 10, file);
    let mut out = Vec::with_capacity(len / (W * 8));
    let mut buf = vec![0u8; W * 8 * 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        r.read_exact(&mut buf[..n])
            .map_err(|e| StageError::io(path, e))?;
        for chunk in buf[..n].chunks_exact(W * 8) {
            let mut e = [0u64; W];
            for (w, b) in e.iter_mut().zip(chunk.chunks_exact(8)) {
                *w = u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            }
            out.push(e);
        }
        left -= n;
    }
    Ok(out)
}

/// Gathers the row hashes as batches pass; [`RowChecks::finish`] finds the
/// duplicates and the conflicts.
pub struct RowChecks {
    dups: Partitioned<2>,
    conflicts: Option<Partitioned<3>>,
    rows: u64,
    /// Partitions used (1: all in memory).
    pub partitions: usize,
}

/// What the row checks found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RowFindings {
    /// Rows equal to an earlier row (every row after the first of its group).
    pub duplicate: RowFlags,
    /// Rows whose features equal another row's while the labels differ.
    pub label_conflict: RowFlags,
    /// Groups of rows with equal features and different labels.
    pub conflict_groups: usize,
}

impl RowChecks {
    /// Checks for duplicates, and for conflicts when `conflicts` (a label and
    /// features are known).
    pub fn new(opts: &RowCheckOptions, conflicts: bool) -> Result<Self, StageError> {
        let per_row = DUP_BYTES + if conflicts { CONFLICT_BYTES } else { 0 };
        let partitions = opts.partitions(per_row);
        let dir = opts.spill_dir.as_deref();
        Ok(RowChecks {
            dups: Partitioned::new(partitions, dir, "duplicates")?,
            conflicts: if conflicts {
                Some(Partitioned::new(partitions, dir, "conflicts")?)
            } else {
                None
            },
            rows: 0,
            partitions,
        })
    }

    /// The next rows' hashes: the whole-row hash, and (with conflicts) the
    /// features' and the label's.
    pub fn push(
        &mut self,
        row_hashes: &[u64],
        feature_hashes: &[u64],
        label_hashes: &[u64],
    ) -> Result<(), StageError> {
        for (i, &h) in row_hashes.iter().enumerate() {
            self.dups.push([h, self.rows + i as u64])?;
        }
        if let Some(c) = &mut self.conflicts {
            for (i, (&f, &l)) in feature_hashes.iter().zip(label_hashes).enumerate() {
                c.push([f, l, self.rows + i as u64])?;
            }
        }
        self.rows += row_hashes.len() as u64;
        Ok(())
    }

    /// Duplicates and conflicts over every row pushed.
    pub fn finish(self) -> Result<RowFindings, StageError> {
        let n = self.rows as usize;
        let mut duplicate = RowFlags::new(n);
        self.dups.for_each_sorted(|entries| {
            for group in entries.chunk_by(|a, b| a[0] == b[0]) {
                for e in &group[1..] {
                    duplicate.set(e[1] as usize);
                }
            }
            Ok(())
        })?;
        let mut label_conflict = RowFlags::new(n);
        let mut conflict_groups = 0;
        if let Some(c) = self.conflicts {
            c.for_each_sorted(|entries| {
                for group in entries.chunk_by(|a, b| a[0] == b[0]) {
                    if group.iter().any(|g| g[1] != group[0][1]) {
                        conflict_groups += 1;
                        for g in group {
                            label_conflict.set(g[2] as usize);
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(RowFindings {
            duplicate,
            label_conflict,
            conflict_groups,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::rows::{duplicate_of, label_conflicts};
    use crate::profile::sketch::mix64;

    #[test]
    fn partitions_on_disk_find_exactly_what_one_partition_in_memory_finds() {
        let n = 50_000u64;
        // Few distinct values: many duplicates and conflicting groups.
        let rows: Vec<u64> = (0..n).map(|i| mix64(i * 7919 % 3_001)).collect();
        let features: Vec<u64> = (0..n).map(|i| mix64(i % 2_003)).collect();
        let labels: Vec<u64> = (0..n).map(|i| mix64(i * 31 % 5)).collect();
        let run = |opts: RowCheckOptions| {
            let mut c = RowChecks::new(&opts, true).unwrap();
            for at in (0..n as usize).step_by(777) {
                let end = (at + 777).min(n as usize);
                c.push(&rows[at..end], &features[at..end], &labels[at..end])
                    .unwrap();
            }
            let parts = c.partitions;
            (c.finish().unwrap(), parts)
        };
        let (memory, one) = run(RowCheckOptions::default());
        assert_eq!(one, 1);
        let dir = tempfile::tempdir().unwrap();
        let (spilled, parts) = run(RowCheckOptions {
            rows: n,
            memory: 100_000,
            spill_dir: Some(dir.path().join("spill")),
        });
        assert!(parts > 10, "{parts} partitions");
        assert_eq!(memory, spilled);
        // The spill files are gone.
        assert_eq!(
            std::fs::read_dir(dir.path().join("spill")).unwrap().count(),
            0
        );
        // And both agree with the plain whole-table functions.
        let expected_dups = duplicate_of(&rows);
        for (i, d) in expected_dups.iter().enumerate() {
            assert_eq!(memory.duplicate.get(i), d.is_some(), "row {i}");
        }
        let (flags, groups) = label_conflicts(&features, &labels);
        assert_eq!(memory.conflict_groups, groups);
        assert!(groups > 0);
        for (i, f) in flags.iter().enumerate() {
            assert_eq!(memory.label_conflict.get(i), *f, "row {i}");
        }
    }
}
