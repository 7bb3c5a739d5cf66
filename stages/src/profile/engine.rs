//! The streaming profiler: feed it record batches, get a [`Profile`].
//!
//! One pass. The rows are cut into chunks at fixed row offsets that are
//! profiled in parallel (per-column aggregates, row hashes) and merged in
//! chunk order, so results do not depend on the thread count or on where
//! batch boundaries fall.
//! Memory: the aggregates (a few hundred kB per column), the row hashes
//! (16 to 40 bytes per row, in memory or in hash partitions on disk: see
//! [`super::partitions`]), two bits per row in the end, and a sample of at
//! most `sample_rows` rows for the distance- and pair-based checks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray};
use arrow::compute::{cast, filter, not};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use gigo_ml::features::{EncoderOptions, FeatureEncoder};
use gigo_ml::knn::knn_self;
use gigo_pipeline::StageError;
use gigo_pipeline::stream::Rechunker;
use rayon::prelude::*;

use super::column::{ColumnAcc, ColumnKind};
use super::partitions::{RowCheckOptions, RowChecks, RowFindings};
use super::rows::{RowSample, as_f64, label_hashes, pearson, row_hashes};

/// Rows per chunk of parallel work.
pub const CHUNK_ROWS: usize = 16_384;

/// Rows profiled together (a multiple of [`CHUNK_ROWS`]).
const GROUP_ROWS: usize = 8 * CHUNK_ROWS;

/// What to profile and how.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// Columns that define an exact duplicate row (indices into the schema).
    pub row_columns: Vec<usize>,
    /// Feature columns: conflicting labels, near duplicates, outliers, correlations.
    pub feature_columns: Vec<usize>,
    /// The label column.
    pub label_column: Option<usize>,
    /// Split rows into reference / current by this column's value for drift:
    /// (column index, reference value as text).
    pub drift_split: Option<(usize, String)>,
    /// Rows kept for the distance- and pair-based checks.
    pub sample_rows: usize,
    /// Seed of the sample.
    pub seed: u64,
    /// Neighbours for the outlier score.
    pub k: usize,
    /// How the exact duplicate and conflict checks may use memory.
    pub row_checks: RowCheckOptions,
}

/// The finished profile of a table.
pub struct Profile {
    /// The schema profiled.
    pub schema: SchemaRef,
    /// Rows seen.
    pub rows: u64,
    /// One aggregate per schema column.
    pub columns: Vec<ColumnAcc>,
    /// With `drift_split`: aggregates of the reference and the current rows.
    pub split: Option<(Vec<ColumnAcc>, Vec<ColumnAcc>)>,
    /// Per row: equal to an earlier row; features equal to another row's
    /// with a different label; and the count of such groups.
    pub row_findings: RowFindings,
    /// Hash partitions the row checks used (1: all in memory).
    pub row_partitions: usize,
    /// Rows in the sample, and their global indices.
    pub sample_rows: Vec<u64>,
    /// Per sampled row: distance to its nearest neighbour (standardised features).
    pub nn_distance: Vec<f64>,
    /// Per sampled row: mean distance to its `k` nearest neighbours.
    pub knn_mean_distance: Vec<f64>,
    /// Pearson correlations of numeric feature pairs on the sample: (a, b, r).
    pub correlations: Vec<(String, String, f64)>,
}

/// One pass over a table, batch by batch.
pub struct Profiler {
    schema: SchemaRef,
    work: Work,
    merged: Merged,
    /// The rows in groups of [`GROUP_ROWS`], so that chunks start at fixed
    /// row offsets.
    groups: Rechunker,
    /// The last group and its chunks' results, merged while the next group
    /// is profiled.
    pending: Option<(RecordBatch, Vec<ChunkResult>)>,
    sample_schema: SchemaRef,
}

/// What profiling a chunk reads.
struct Work {
    opts: ProfileOptions,
    kinds: Vec<ColumnKind>,
    /// Per column, the [`super::sketch::DistinctSketch::bound`] of the merged aggregate
    /// (set as groups merge; a chunk profiled before it fell keeps more
    /// hashes, with the same merged result).
    bounds: Vec<AtomicU64>,
}

/// What the chunks' results are merged into, in chunk order.
struct Merged {
    columns: Vec<ColumnAcc>,
    split: Option<(Vec<ColumnAcc>, Vec<ColumnAcc>)>,
    checks: RowChecks,
    sample: RowSample,
    sample_columns: Vec<usize>,
    sample_rows: usize,
    rows: u64,
}

struct ChunkResult {
    columns: Vec<ColumnAcc>,
    split: Option<(Vec<ColumnAcc>, Vec<ColumnAcc>)>,
    row_hashes: Vec<u64>,
    feature_hashes: Vec<u64>,
    label_hashes: Vec<u64>,
}

impl Profiler {
    /// A profiler for tables of `schema`.
    pub fn new(schema: SchemaRef, opts: ProfileOptions) -> Result<Self, StageError> {
        let kinds: Vec<ColumnKind> = schema
            .fields()
            .iter()
            .map(|f| ColumnKind::of(f.data_type()))
            .collect();
        let columns = kinds.iter().map(|&k| ColumnAcc::new(k)).collect();
        let split = opts.drift_split.as_ref().map(|_| {
            (
                kinds.iter().map(|&k| ColumnAcc::new(k)).collect(),
                kinds.iter().map(|&k| ColumnAcc::new(k)).collect(),
            )
        });
        let mut sample_columns = opts.feature_columns.clone();
        sample_columns.extend(opts.label_column);
        let sample_schema = Arc::new(
            schema
                .project(&sample_columns)
                .unwrap_or_else(|_| Schema::empty()),
        );
        let sample = RowSample::new(opts.sample_rows, opts.seed, sample_schema.clone());
        let conflicts = opts.label_column.is_some() && !opts.feature_columns.is_empty();
        let checks = RowChecks::new(&opts.row_checks, conflicts)?;
        let groups = Rechunker::new(schema.clone(), GROUP_ROWS);
        Ok(Profiler {
            schema,
            merged: Merged {
                columns,
                split,
                checks,
                sample,
                sample_columns,
                sample_rows: opts.sample_rows,
                rows: 0,
            },
            work: Work {
                bounds: kinds.iter().map(|_| AtomicU64::new(u64::MAX)).collect(),
                opts,
                kinds,
            },
            groups,
            pending: None,
            sample_schema,
        })
    }

    /// Profiles one batch (of the profiler's schema). Rows are profiled in
    /// chunks that start at multiples of [`CHUNK_ROWS`] of the whole table,
    /// whatever the batches: the floating-point sums merge in the same order
    /// however the rows arrive.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<(), StageError> {
        for rows in self.groups.push(batch)? {
            self.profile_rows(rows)?;
        }
        Ok(())
    }

    /// Profiles `batch`, which starts at a multiple of [`CHUNK_ROWS`], while
    /// the group before it is merged.
    fn profile_rows(&mut self, batch: RecordBatch) -> Result<(), StageError> {
        let (work, merged) = (&self.work, &mut self.merged);
        let pending = self.pending.take();
        let (results, merging) = rayon::join(
            || work.profile_group(&batch),
            || match pending {
                Some((rows, results)) => {
                    merged.merge(&rows, results)?;
                    for (bound, acc) in work.bounds.iter().zip(&merged.columns) {
                        bound.store(acc.distinct.bound(), Ordering::Relaxed);
                    }
                    Ok::<(), StageError>(())
                }
                None => Ok(()),
            },
        );
        merging?;
        self.pending = Some((batch, results?));
        Ok(())
    }

    /// Finishes the pass: exact duplicates and conflicts over every row, then
    /// the sample-based checks.
    pub fn finish(mut self) -> Result<Profile, StageError> {
        if let Some(rows) = self.groups.finish()? {
            self.profile_rows(rows)?;
        }
        let mut merged = self.merged;
        if let Some((rows, results)) = self.pending.take() {
            merged.merge(&rows, results)?;
        }
        let row_partitions = merged.checks.partitions;
        let row_findings = merged.checks.finish()?;
        let (sample, sample_rows) = merged.sample.finish()?;
        let opts = &self.work.opts;
        let n_features = opts.feature_columns.len();
        let feature_names: Vec<String> = self
            .sample_schema
            .fields()
            .iter()
            .take(n_features)
            .map(|f| f.name().clone())
            .collect();
        let (nn_distance, knn_mean_distance) =
            neighbour_distances(&sample, &feature_names, opts.k)?;
        let correlations = correlations(&sample, &feature_names)?;
        Ok(Profile {
            schema: self.schema,
            rows: merged.rows,
            columns: merged.columns,
            split: merged.split,
            row_findings,
            row_partitions,
            sample_rows,
            nn_distance,
            knn_mean_distance,
            correlations,
        })
    }
}

impl Merged {
    /// Adds the results of a group's chunks, in chunk order.
    fn merge(&mut self, batch: &RecordBatch, results: Vec<ChunkResult>) -> Result<(), StageError> {
        for r in results {
            for (mine, theirs) in self.columns.iter_mut().zip(&r.columns) {
                mine.merge(theirs);
            }
            if let (Some((ra, ca)), Some((rb, cb))) = (self.split.as_mut(), r.split.as_ref()) {
                ra.iter_mut().zip(rb).for_each(|(a, b)| a.merge(b));
                ca.iter_mut().zip(cb).for_each(|(a, b)| a.merge(b));
            }
            self.checks
                .push(&r.row_hashes, &r.feature_hashes, &r.label_hashes)?;
        }
        if !self.sample_columns.is_empty() && self.sample_rows > 0 {
            let projected = batch
                .project(&self.sample_columns)
                .map_err(|e| StageError::internal(format!("projecting rows: {e}")))?;
            self.sample.offer(&projected, self.rows)?;
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }
}

impl Work {
    /// The results of a group's chunks, profiled in parallel.
    fn profile_group(&self, batch: &RecordBatch) -> Result<Vec<ChunkResult>, StageError> {
        let n = batch.num_rows();
        let starts: Vec<usize> = (0..n).step_by(CHUNK_ROWS).collect();
        starts
            .par_iter()
            .map(|&start| self.profile_chunk(&batch.slice(start, CHUNK_ROWS.min(n - start))))
            .collect()
    }

    fn profile_chunk(&self, chunk: &RecordBatch) -> Result<ChunkResult, StageError> {
        let columns = self.accumulate(chunk)?;
        let split = match &self.opts.drift_split {
            Some((col, reference)) => {
                let values = cast(chunk.column(*col), &DataType::Utf8)
                    .map_err(|e| StageError::internal(format!("drift column: {e}")))?;
                let is_ref: BooleanArray = values
                    .as_string::<i32>()
                    .iter()
                    .map(|v| Some(v == Some(reference.as_str())))
                    .collect();
                let is_cur = not(&is_ref).map_err(|e| StageError::internal(e.to_string()))?;
                let part = |mask: &BooleanArray| -> Result<Vec<ColumnAcc>, StageError> {
                    let cols: Vec<ArrayRef> = chunk
                        .columns()
                        .iter()
                        .map(|c| filter(c.as_ref(), mask))
                        .collect::<Result<_, _>>()
                        .map_err(|e| StageError::internal(e.to_string()))?;
                    self.accumulate_arrays(&cols, false)
                };
                Some((part(&is_ref)?, part(&is_cur)?))
            }
            None => None,
        };
        let label_hashes = match self.opts.label_column {
            Some(l) => label_hashes(chunk.column(l))?,
            None => Vec::new(),
        };
        Ok(ChunkResult {
            columns,
            split,
            row_hashes: row_hashes(chunk, &self.opts.row_columns)?,
            // Only conflicts use feature hashes, and only with a label.
            feature_hashes: if self.opts.label_column.is_some() {
                row_hashes(chunk, &self.opts.feature_columns)?
            } else {
                Vec::new()
            },
            label_hashes,
        })
    }

    /// The aggregates of a chunk of the whole table (merged into the
    /// aggregates whose distinct-sketch bounds `bounds` holds).
    fn accumulate(&self, chunk: &RecordBatch) -> Result<Vec<ColumnAcc>, StageError> {
        self.accumulate_arrays(chunk.columns(), true)
    }

    /// The aggregates of `arrays`; `bounded`: only for the whole table's
    /// aggregates (a drift split's rows have sketches of their own).
    fn accumulate_arrays(
        &self,
        arrays: &[ArrayRef],
        bounded: bool,
    ) -> Result<Vec<ColumnAcc>, StageError> {
        arrays
            .iter()
            .zip(&self.kinds)
            .zip(&self.bounds)
            .map(|((a, &k), b)| {
                let bound = if bounded {
                    b.load(Ordering::Relaxed)
                } else {
                    u64::MAX
                };
                ColumnAcc::from_array_below(k, a, bound)
            })
            .collect()
    }
}

/// Distance to the nearest neighbour and mean distance to the `k` nearest, on
/// standardised (one-hot for categories) features of the sampled rows.
fn neighbour_distances(
    sample: &RecordBatch,
    features: &[String],
    k: usize,
) -> Result<(Vec<f64>, Vec<f64>), StageError> {
    let n = sample.num_rows();
    if features.is_empty() || n < 2 {
        return Ok((Vec::new(), Vec::new()));
    }
    let enc = FeatureEncoder::fit(
        std::slice::from_ref(sample),
        features,
        &EncoderOptions::default(),
    )
    .map_err(crate::error::from_ml)?;
    let m = enc
        .transform(std::slice::from_ref(sample))
        .map_err(crate::error::from_ml)?;
    let k = k.min(n - 1).max(1);
    let nb = knn_self(&m, k);
    let mut nearest = Vec::with_capacity(n);
    let mut mean = Vec::with_capacity(n);
    for i in 0..n {
        let (_, d) = nb.of(i);
        nearest.push(f64::from(d[0]));
        mean.push(d.iter().map(|&x| f64::from(x)).sum::<f64>() / d.len() as f64);
    }
    Ok((nearest, mean))
}

/// Pearson correlation of every pair of numeric feature columns.
fn correlations(
    sample: &RecordBatch,
    features: &[String],
) -> Result<Vec<(String, String, f64)>, StageError> {
    let numeric: Vec<(String, Vec<Option<f64>>)> = features
        .iter()
        .enumerate()
        .filter(|(i, _)| ColumnKind::of(sample.column(*i).data_type()) == ColumnKind::Numeric)
        .map(|(i, name)| Ok((name.clone(), as_f64(sample.column(i))?)))
        .collect::<Result<_, StageError>>()?;
    let pairs: Vec<(usize, usize)> = (0..numeric.len())
        .flat_map(|a| (a + 1..numeric.len()).map(move |b| (a, b)))
        .collect();
    Ok(pairs
        .par_iter()
        .filter_map(|&(a, b)| {
            pearson(&numeric[a].1, &numeric[b].1)
                .map(|r| (numeric[a].0.clone(), numeric[b].0.clone(), r))
        })
        .collect())
}

/// The median of finite values (lower middle on even counts); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[(v.len() - 1) / 2]
}

/// The `q`-quantile (linear interpolation) of finite values.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}
