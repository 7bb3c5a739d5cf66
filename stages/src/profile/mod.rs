//! `profile`: what is wrong with the data, in two passes over batches (the
//! profile, then the rows again with the per-row findings, into the store).
//!
//! Per column (mergeable aggregates over chunks of rows, in parallel): rows,
//! nulls, NaN / infinities, zeros, distinct values (exact below 4096, then a
//! KMV sketch), min / max / mean / std / skew, quantiles and a histogram (a
//! rank-accurate compactor sketch), top values, constant and
//! high-cardinality flags. Per table: exact duplicate rows and conflicting
//! labels over every row (64-bit row hashes); near duplicates and outliers by
//! exact kNN and correlated feature pairs on a deterministic sample of at most
//! `sample_rows` rows (every row when the table is smaller); the class
//! distribution with Datalab's imbalance rule. With a `reference` table (or a
//! `drift` column that splits the rows), per-column drift.
//!
//! Every finding becomes an alert with its numbers, in a report section.

mod column;
mod drift;
mod engine;
mod report;
mod rows;
mod sketch;

pub use column::{ColumnAcc, ColumnKind};
pub use drift::{ColumnDrift, DriftMethod, column_drift};
pub use engine::{Profile, ProfileOptions, Profiler};
pub use sketch::{DistinctSketch, QuantileSketch};

mod partitions;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_pipeline::budget::Need;
use gigo_pipeline::{
    Inputs, Memory, Metrics, ParamProblem, PortSpec, Registry, Role, Source, Stage, StageContext,
    StageError, StageOutput, Table, append_columns, field_with_role, role_of,
};
use schemars::JsonSchema;
use serde::Deserialize;

use engine::{median, quantile};
use gigo_ml::features::can_encode;
pub use partitions::{RowCheckOptions, RowFindings, RowFlags};
use report::{METRICS, Truth, TruthCount, build_section, detail_json};

/// Bytes the exact duplicate and conflict checks hold in memory at most
/// (a quarter of the run's budget when that is less); beyond it their row
/// hashes go to disk in hash partitions.
pub const ROW_CHECK_MEMORY: u64 = 512 << 20;

/// The most the row checks hold per row: a duplicate entry and a conflict
/// entry, as the hash partitions count them.
const ROW_CHECK_BYTES_PER_ROW: u64 = partitions::DUP_BYTES + partitions::CONFLICT_BYTES;

/// About what the sample for the kNN and correlation checks takes
/// (`sample_rows` of the features, and their distances).
const SAMPLE_MEMORY: u64 = 64 << 20;

/// Columns the stage adds (role `added`).
pub const ADDED_COLUMNS: [&str; 6] = [
    "is_duplicate",
    "has_label_conflict",
    "is_near_duplicate",
    "nn_distance",
    "outlier_score",
    "is_outlier",
];

/// How rows are split for drift when both tables arrive in one.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftSplit {
    /// The column whose value says which part a row belongs to (e.g. `split`).
    pub column: String,
    /// Its value on reference rows (e.g. `train`); every other non-null value is current.
    pub reference: String,
}

/// Parameters of `profile`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileParams {
    /// Rows kept (a deterministic sample) for near duplicates, outliers and
    /// correlations; every row when the table is smaller.
    #[serde(default = "default_sample_rows")]
    pub sample_rows: usize,
    /// Neighbours for the outlier score (mean distance to the k nearest rows).
    #[serde(default = "default_k")]
    pub k: usize,
    /// A row is a near duplicate when its nearest neighbour is closer than
    /// this fraction of the median nearest-neighbour distance (Datalab: 0.13).
    #[serde(default = "default_near")]
    pub near_duplicate_factor: f64,
    /// A row is an outlier when its score (mean kNN distance over the median
    /// one) exceeds this; default: the far-out fence Q3 + 3·IQR of the scores.
    #[serde(default)]
    pub outlier_threshold: Option<f64>,
    /// Feature pairs with |Pearson r| at or above this are flagged.
    #[serde(default = "default_corr")]
    pub correlation_threshold: f64,
    /// A column with more nulls than this fraction is flagged (an error above 0.5).
    #[serde(default = "default_null")]
    pub null_threshold: f64,
    /// Split the rows into reference and current by a column's value, for drift.
    #[serde(default)]
    pub drift: Option<DriftSplit>,
    /// How a column is judged to drift.
    #[serde(default)]
    pub drift_method: DriftMethod,
    /// Threshold for `drift_method` (defaults: p < 0.05, PSI >= 0.2, distance >= 0.1).
    #[serde(default)]
    pub drift_threshold: Option<f64>,
    /// Bins of the numeric histograms.
    #[serde(default = "default_bins")]
    pub histogram_bins: usize,
    /// Top values listed per column.
    #[serde(default = "default_top")]
    pub top_values: usize,
    /// Columns left out of the row checks (duplicates, conflicts, distances).
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_sample_rows() -> usize {
    50_000
}
fn default_k() -> usize {
    10
}
fn default_near() -> f64 {
    0.13
}
fn default_corr() -> f64 {
    0.95
}
fn default_null() -> f64 {
    0.05
}
fn default_bins() -> usize {
    20
}
fn default_top() -> usize {
    10
}

impl ProfileParams {
    fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let mut p = Vec::new();
        if self.k == 0 {
            p.push(ParamProblem::new("k", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.near_duplicate_factor) {
            p.push(ParamProblem::new(
                "near_duplicate_factor",
                format!("must be in [0, 1], got {}", self.near_duplicate_factor),
            ));
        }
        if !(0.0..=1.0).contains(&self.correlation_threshold) {
            p.push(ParamProblem::new(
                "correlation_threshold",
                format!("must be in [0, 1], got {}", self.correlation_threshold),
            ));
        }
        if !(0.0..=1.0).contains(&self.null_threshold) {
            p.push(ParamProblem::new(
                "null_threshold",
                format!("must be in [0, 1], got {}", self.null_threshold),
            ));
        }
        if self.histogram_bins == 0 || self.histogram_bins > 200 {
            p.push(ParamProblem::new(
                "histogram_bins",
                "must be between 1 and 200",
            ));
        }
        if let Some(t) = self.outlier_threshold
            && (t.is_nan() || t <= 0.0)
        {
            p.push(ParamProblem::new("outlier_threshold", "must be positive"));
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// The `profile` stage.
pub struct ProfileStage {
    params: ProfileParams,
}

/// Registers `profile`.
pub fn register(registry: &mut Registry) {
    registry.register::<ProfileParams, _>(
        "profile",
        "Profiles a table in two passes over its batches (memory independent of the rows): per-column statistics, histograms and top values; \
         exact and near duplicates, conflicting labels, outliers (kNN distance), correlated \
         features, class imbalance; drift against a `reference` table or between the two parts \
         of a `drift` column. Adds per-row columns (is_duplicate, has_label_conflict, \
         is_near_duplicate, nn_distance, outlier_score, is_outlier) and a report section with \
         alerts and gateable metrics (duplicate_rate, null_rate by column, outlier_rate, ...).",
        |params| {
            params.check()?;
            Ok(Box::new(ProfileStage { params }))
        },
    );
}

impl Stage for ProfileStage {
    fn metrics(&self) -> Metrics {
        Metrics::names(METRICS)
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table("table", "the rows to profile"),
            PortSpec::aside(
                "reference",
                gigo_pipeline::PortKind::Table,
                "optional reference rows (e.g. train) to measure drift against",
            )
            .optional(),
        ]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table(
            "table",
            "the input rows with the per-row findings added",
        )]
    }

    fn memory(&self) -> Memory {
        // Two bits per row (the flags) and the sample; the hash partitions
        // keep within a quarter of the budget (at most ROW_CHECK_MEMORY).
        Memory::Streams {
            per_row: 0.25,
            fixed: gigo_pipeline::budget::STREAM_FIXED + SAMPLE_MEMORY,
        }
    }

    /// The row checks' hash entries (at most [`ROW_CHECK_BYTES_PER_ROW`] a
    /// row) within their limit, beyond which they spill.
    fn reserve(&self, need: &Need, inputs: &Inputs, ctx: &StageContext) -> u64 {
        let rows = inputs
            .source_opt("table")
            .map_or(0, |t| t.num_rows() as u64);
        need.bytes
            + rows
                .saturating_mul(ROW_CHECK_BYTES_PER_ROW)
                .min(ROW_CHECK_MEMORY.min(ctx.memory_budget / 4))
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let table = inputs.source("table")?;
        let keep = kept_columns(table.schema())?;
        let schema = Arc::new(table.schema().project(&keep)?);
        let base = |b: RecordBatch| -> Result<RecordBatch, StageError> {
            Ok(RecordBatch::try_new(
                schema.clone(),
                b.project(&keep)?.columns().to_vec(),
            )?)
        };
        let p = &self.params;
        for name in p.exclude.iter().chain(p.drift.as_ref().map(|d| &d.column)) {
            if schema.index_of(name).is_err() {
                return Err(StageError::data(format!(
                    "profile: column `{name}` is not in the table (columns: {})",
                    column_list(&schema)
                )));
            }
        }
        let label = Table::empty(schema.clone()).label_column().ok();
        let excluded = |f: &Field| {
            p.exclude.contains(f.name()) || p.drift.as_ref().is_some_and(|d| &d.column == f.name())
        };
        let row_columns: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                !matches!(
                    role_of(f),
                    Role::Id | Role::Truth | Role::Added | Role::Weight
                ) && !excluded(f)
            })
            .map(|(i, _)| i)
            .collect();
        let mut feature_columns: Vec<usize> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| role_of(f) == Role::Feature && !excluded(f))
            .map(|(i, _)| i)
            .collect();
        if feature_columns.is_empty() {
            // No roles recorded: every other column of a usable type.
            feature_columns = row_columns
                .iter()
                .copied()
                .filter(|&i| role_of(schema.field(i)) == Role::Other)
                .collect();
        }
        // Dates, times, lists, structs: profiled, but no kNN / correlation
        // feature (the encoder has no distance for them).
        let mut not_features = Vec::new();
        feature_columns.retain(|&i| {
            let dt = schema.field(i).data_type();
            let usable = ColumnKind::of(dt) != ColumnKind::Other && can_encode(dt);
            if !usable {
                not_features.push((schema.field(i).name().clone(), dt.to_string()));
            }
            usable
        });
        let opts = ProfileOptions {
            row_columns,
            feature_columns,
            label_column: label.as_ref().and_then(|l| schema.index_of(l).ok()),
            drift_split: p
                .drift
                .as_ref()
                .and_then(|d| Some((schema.index_of(&d.column).ok()?, d.reference.clone()))),
            sample_rows: p.sample_rows,
            seed: ctx.seed,
            k: p.k,
            row_checks: RowCheckOptions {
                rows: table.num_rows() as u64,
                memory: ROW_CHECK_MEMORY.min(ctx.memory_budget / 4),
                spill_dir: Some(ctx.scratch_dir.join("row-hashes")),
            },
        };
        // Two passes over the rows: the profile, then the rows again with
        // the per-row findings added, into the store.
        ctx.progress.set_total(2 * table.num_rows() as u64);
        let mut profiler = Profiler::new(schema.clone(), opts.clone())?;
        for batch in table.batches(ctx.batch_rows)? {
            let batch = base(batch?)?;
            profiler.update(&batch)?;
            ctx.progress.advance(batch.num_rows() as u64);
        }
        let profile = profiler.finish()?;
        if profile.row_partitions > 1 {
            ctx.log(format!(
                "duplicates and label conflicts checked in {} hash partitions on disk",
                profile.row_partitions
            ));
        }
        let reference = match inputs.source_opt("reference") {
            Some(r) => Some(reference_columns(&r, &schema, ctx.batch_rows)?),
            None => None,
        };
        let mut findings = Findings::new(&profile, p);
        findings.not_features = not_features;

        let added = Findings::added_fields();
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(added.iter().cloned());
        let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let mut writer = ctx.table_writer("table", out_schema)?;
        let sampled: HashMap<u64, usize> = profile
            .sample_rows
            .iter()
            .enumerate()
            .map(|(s, &row)| (row, s))
            .collect();
        let mut truth = TruthColumns::new(&schema);
        let mut at = 0usize;
        for batch in table.batches(ctx.batch_rows)? {
            let batch = base(batch?)?;
            let n = batch.num_rows();
            let columns = findings.columns(&profile, &sampled, at, n);
            truth.add(&batch, &columns);
            let columns = added.iter().cloned().zip(columns).collect();
            writer.write(&append_columns(&batch, columns)?)?;
            at += n;
            ctx.progress.advance(n as u64);
        }
        let out_table = writer.finish()?;
        if out_table.num_rows() != profile.rows as usize {
            return Err(StageError::internal(format!(
                "profile read {} rows on its first pass and {} on its second",
                profile.rows,
                out_table.num_rows()
            )));
        }
        let section = build_section(
            ctx,
            p,
            &profile,
            &findings,
            reference.as_deref(),
            &truth.finish(),
        )?;
        let detail = detail_json(p, &profile, &findings, reference.as_deref());
        Ok(StageOutput::new()
            .with("table", out_table)
            .with_summary(section.into_summary(detail)))
    }
}

fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The columns kept: all but those an earlier `profile` added, so profiling
/// twice replaces them; a non-added column with one of those names is an error.
fn kept_columns(schema: &Schema) -> Result<Vec<usize>, StageError> {
    let mut keep = Vec::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if ADDED_COLUMNS.contains(&f.name().as_str()) {
            if role_of(f) == Role::Added {
                continue;
            }
            return Err(StageError::data(format!(
                "profile: the table already has a column `{}` (role {}); profile adds a column of \
                 that name. Rename it, or give it role `added` if an earlier profile made it",
                f.name(),
                role_of(f)
            )));
        }
        keep.push(i);
    }
    Ok(keep)
}

/// The findings checked against the generator's truth columns, counted as
/// the rows pass: duplicates on every row, outliers on the sampled rows.
struct TruthColumns {
    /// (finding, truth column, its index in the table when it is there,
    /// the added column that holds the finding, the counts).
    checks: Vec<(&'static str, &'static str, Option<usize>, usize, TruthCount)>,
}

impl TruthColumns {
    fn new(schema: &Schema) -> Self {
        let checks = [
            ("duplicates", "true_duplicate", "is_duplicate"),
            ("outliers", "true_outlier", "is_outlier"),
        ]
        .into_iter()
        .map(|(what, col, found_in)| {
            let index = schema.index_of(col).ok().filter(|&i| {
                let f = schema.field(i);
                role_of(f) == Role::Truth && f.data_type() == &DataType::Boolean
            });
            let finding = ADDED_COLUMNS
                .iter()
                .position(|c| *c == found_in)
                .unwrap_or_default();
            (what, col, index, finding, TruthCount::default())
        })
        .collect();
        TruthColumns { checks }
    }

    fn add(&mut self, batch: &RecordBatch, added: &[ArrayRef]) {
        for (_, _, index, finding, count) in &mut self.checks {
            let Some(i) = *index else { continue };
            let truth = batch.column(i).as_boolean();
            let found = added[*finding].as_boolean();
            for r in 0..batch.num_rows() {
                if found.is_valid(r) {
                    count.add(found.value(r), truth.value(r));
                }
            }
        }
    }

    fn finish(self) -> Truth {
        self.checks
            .into_iter()
            .filter(|c| c.2.is_some())
            .map(|(what, col, _, _, count)| (what, col, count))
            .collect()
    }
}

/// The reference table's column aggregates, aligned with `schema` by name.
fn reference_columns(
    reference: &Source,
    schema: &Schema,
    batch_rows: usize,
) -> Result<Vec<Option<ColumnAcc>>, StageError> {
    let rschema = reference.schema().clone();
    let opts = ProfileOptions {
        row_columns: Vec::new(),
        feature_columns: Vec::new(),
        label_column: None,
        drift_split: None,
        sample_rows: 0,
        seed: 0,
        k: 1,
        row_checks: RowCheckOptions::default(),
    };
    let mut profiler = Profiler::new(rschema.clone(), opts)?;
    for batch in reference.batches(batch_rows)? {
        profiler.update(&batch?)?;
    }
    let profile = profiler.finish()?;
    Ok(schema
        .fields()
        .iter()
        .map(|f| {
            let i = rschema.index_of(f.name()).ok()?;
            let acc = &profile.columns[i];
            (acc.kind == ColumnKind::of(f.data_type())).then(|| acc.clone())
        })
        .collect())
}

/// Table-level findings derived from a profile.
struct Findings {
    duplicates: usize,
    conflict_rows: usize,
    near: Vec<bool>,
    near_not_exact: usize,
    near_threshold: f64,
    scores: Vec<f64>,
    outlier: Vec<bool>,
    outlier_threshold: f64,
    outliers: usize,
    /// Feature columns of a type the kNN encoder cannot use: (name, type).
    not_features: Vec<(String, String)>,
}

impl Findings {
    fn new(profile: &Profile, p: &ProfileParams) -> Self {
        let duplicates = profile.row_findings.duplicate.count();
        let conflict_rows = profile.row_findings.label_conflict.count();
        let med_nn = median(&profile.nn_distance);
        let near_threshold = p.near_duplicate_factor * med_nn;
        let near: Vec<bool> = profile
            .nn_distance
            .iter()
            .map(|&d| d < near_threshold || d == 0.0)
            .collect();
        let near_not_exact = near
            .iter()
            .zip(&profile.sample_rows)
            .zip(&profile.nn_distance)
            .filter(|((n, _), d)| **n && **d > 0.0)
            .count();
        let med = median(&profile.knn_mean_distance);
        let scores: Vec<f64> = profile
            .knn_mean_distance
            .iter()
            .map(|&d| if med > 0.0 { d / med } else { 0.0 })
            .collect();
        let outlier_threshold = p.outlier_threshold.unwrap_or_else(|| {
            let (q1, q3) = (quantile(&scores, 0.25), quantile(&scores, 0.75));
            q3 + 3.0 * (q3 - q1)
        });
        let outlier: Vec<bool> = scores.iter().map(|&s| s > outlier_threshold).collect();
        let outliers = outlier.iter().filter(|&&o| o).count();
        Findings {
            duplicates,
            conflict_rows,
            near,
            near_not_exact,
            near_threshold,
            scores,
            outlier,
            outlier_threshold,
            outliers,
            not_features: Vec::new(),
        }
    }

    /// The fields of the per-row columns, in [`ADDED_COLUMNS`] order.
    fn added_fields() -> Vec<Field> {
        ADDED_COLUMNS
            .iter()
            .map(|&name| {
                let ty = match name {
                    "nn_distance" | "outlier_score" => DataType::Float64,
                    _ => DataType::Boolean,
                };
                field_with_role(Field::new(name, ty, true), Role::Added)
            })
            .collect()
    }

    /// The per-row columns of rows `start .. start + len`: sampled-only
    /// checks are null on unsampled rows (`sampled`: row -> sample index).
    fn columns(
        &self,
        profile: &Profile,
        sampled: &HashMap<u64, usize>,
        start: usize,
        len: usize,
    ) -> Vec<ArrayRef> {
        let rows = start..start + len;
        let found = &profile.row_findings;
        // Each row's place in the sample, looked up once.
        let slots: Vec<Option<usize>> = rows
            .clone()
            .map(|r| {
                sampled
                    .get(&(r as u64))
                    .copied()
                    .filter(|&s| s < self.scores.len())
            })
            .collect();
        let flag = |of: &[bool]| -> ArrayRef {
            Arc::new(BooleanArray::from(
                slots.iter().map(|s| s.map(|s| of[s])).collect::<Vec<_>>(),
            ))
        };
        let number = |of: &[f64]| -> ArrayRef {
            Arc::new(Float64Array::from(
                slots.iter().map(|s| s.map(|s| of[s])).collect::<Vec<_>>(),
            ))
        };
        vec![
            Arc::new(BooleanArray::from(
                rows.clone()
                    .map(|r| found.duplicate.get(r))
                    .collect::<Vec<_>>(),
            )) as ArrayRef,
            Arc::new(BooleanArray::from(
                rows.clone()
                    .map(|r| found.label_conflict.get(r))
                    .collect::<Vec<_>>(),
            )),
            flag(&self.near),
            number(&profile.nn_distance),
            number(&self.scores),
            flag(&self.outlier),
        ]
    }
}

#[cfg(test)]
mod tests;
