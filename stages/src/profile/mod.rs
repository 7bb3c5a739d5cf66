//! `profile`: what is wrong with the data, in one pass.
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
mod rows;
mod sketch;

pub use column::{ColumnAcc, ColumnKind};
pub use drift::{ColumnDrift, DriftMethod, column_drift};
pub use engine::{Profile, ProfileOptions, Profiler};
pub use sketch::{DistinctSketch, QuantileSketch};

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_pipeline::summary::{Block, Section, Severity};
use gigo_pipeline::{
    Inputs, ParamProblem, PortSpec, Registry, Role, Stage, StageContext, StageError, StageOutput,
    Table, append_columns, field_with_role, role_of,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use column::{is_temporal, list_lengths, temporal_text};
use engine::{median, quantile};
use gigo_ml::features::can_encode;

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
        "Profiles a table in one pass: per-column statistics, histograms and top values; \
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

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let table = inputs.table("table")?;
        let base = strip_added(&table)?;
        let schema = base.schema().clone();
        let p = &self.params;
        for name in p.exclude.iter().chain(p.drift.as_ref().map(|d| &d.column)) {
            if schema.index_of(name).is_err() {
                return Err(StageError::data(format!(
                    "profile: column `{name}` is not in the table (columns: {})",
                    column_list(&schema)
                )));
            }
        }
        let label = base.label_column().ok();
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
        };
        ctx.progress.set_total(base.num_rows() as u64);
        let mut profiler = Profiler::new(schema.clone(), opts.clone());
        for batch in base.batches() {
            profiler.update(batch)?;
            ctx.progress.advance(batch.num_rows() as u64);
        }
        let profile = profiler.finish()?;
        let reference = match inputs.table_opt("reference") {
            Some(r) => Some(reference_columns(&r, &schema)?),
            None => None,
        };
        let mut findings = Findings::new(&profile, p);
        findings.not_features = not_features;
        let added = findings.columns(&profile);
        let out_table = add_columns(&base, added)?;
        let section = build_section(ctx, p, &profile, &findings, reference.as_deref(), &base)?;
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

/// The table without columns an earlier `profile` added, so profiling twice
/// replaces them; a non-added column with one of those names is an error.
fn strip_added(table: &Table) -> Result<Table, StageError> {
    let schema = table.schema();
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
    if keep.len() == schema.fields().len() {
        return Ok(table.clone());
    }
    let batches = table
        .batches()
        .iter()
        .map(|b| b.project(&keep))
        .collect::<Result<Vec<_>, _>>()?;
    Table::new(Arc::new(schema.project(&keep)?), batches)
}

/// The reference table's column aggregates, aligned with `schema` by name.
fn reference_columns(
    reference: &Table,
    schema: &Schema,
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
    };
    let mut profiler = Profiler::new(rschema.clone(), opts);
    for batch in reference.batches() {
        profiler.update(batch)?;
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
        let duplicates = profile.duplicate_of.iter().filter(|d| d.is_some()).count();
        let conflict_rows = profile.label_conflict.iter().filter(|&&c| c).count();
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

    /// The per-row columns: sampled-only checks are null on unsampled rows.
    fn columns(&self, profile: &Profile) -> Vec<(&'static str, ArrayRef)> {
        let n = profile.rows as usize;
        let mut near = vec![None; n];
        let mut nn = vec![None; n];
        let mut score = vec![None; n];
        let mut outlier = vec![None; n];
        for (s, &row) in profile.sample_rows.iter().enumerate() {
            let row = row as usize;
            if s < self.scores.len() {
                near[row] = Some(self.near[s]);
                nn[row] = Some(profile.nn_distance[s]);
                score[row] = Some(self.scores[s]);
                outlier[row] = Some(self.outlier[s]);
            }
        }
        vec![
            (
                "is_duplicate",
                Arc::new(BooleanArray::from(
                    profile
                        .duplicate_of
                        .iter()
                        .map(|d| d.is_some())
                        .collect::<Vec<_>>(),
                )) as ArrayRef,
            ),
            (
                "has_label_conflict",
                Arc::new(BooleanArray::from(profile.label_conflict.clone())),
            ),
            ("is_near_duplicate", Arc::new(BooleanArray::from(near))),
            ("nn_distance", Arc::new(Float64Array::from(nn))),
            ("outlier_score", Arc::new(Float64Array::from(score))),
            ("is_outlier", Arc::new(BooleanArray::from(outlier))),
        ]
    }
}

fn add_columns(table: &Table, added: Vec<(&'static str, ArrayRef)>) -> Result<Table, StageError> {
    let columns = added
        .into_iter()
        .map(|(name, array)| {
            let field = Field::new(name, array.data_type().clone(), true);
            (field_with_role(field, Role::Added), array)
        })
        .collect();
    Ok(Table::from_batch(append_columns(
        &table.to_batch()?,
        columns,
    )?))
}

/// Warning, or error above `error_above`.
fn severity(value: f64, error_above: f64) -> Severity {
    if value > error_above {
        Severity::Error
    } else {
        Severity::Warning
    }
}

fn rate(count: usize, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        count as f64 / of as f64
    }
}

fn finite(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

/// Per-column statistics as JSON.
fn column_json(name: &str, field: &Field, acc: &ColumnAcc, p: &ProfileParams) -> Value {
    let quantiles: serde_json::Map<String, Value> = column_quantiles(acc)
        .into_iter()
        .map(|(k, v)| (k, finite(v)))
        .collect();
    let top: Vec<Value> = acc
        .top
        .sorted()
        .into_iter()
        .take(p.top_values)
        .map(|(v, c)| json!({"value": v, "count": c}))
        .collect();
    let distinct = acc.distinct.estimate();
    let non_null = acc.rows - acc.nulls;
    let dt = field.data_type();
    let has_lengths = acc.kind == ColumnKind::Text || list_lengths_type(dt);
    let text = |v: f64| (acc.n > 0).then(|| temporal_text(v, dt)).flatten();
    json!({
        "name": name,
        "type": field.data_type().to_string(),
        "role": role_of(field).as_str(),
        "kind": acc.kind,
        "rows": acc.rows,
        "nulls": acc.nulls,
        "null_rate": rate(acc.nulls as usize, acc.rows),
        "nan": acc.nan,
        "inf": acc.inf,
        "zeros": acc.zeros,
        "distinct": distinct,
        "distinct_exact": acc.distinct.is_exact(),
        "min": (acc.n > 0).then(|| finite(acc.min)),
        "max": (acc.n > 0).then(|| finite(acc.max)),
        "mean": (acc.n > 0).then(|| finite(acc.mean)),
        "std": acc.std().map(finite),
        "skew": acc.skew().map(finite),
        "quantiles": quantiles,
        "top_values": top,
        "top_values_exact": acc.top.is_exact(),
        "min_text": text(acc.min),
        "max_text": text(acc.max),
        "temporal": is_temporal(dt),
        "min_length": (has_lengths && acc.min_len != u64::MAX).then_some(acc.min_len),
        "max_length": has_lengths.then_some(acc.max_len),
        "constant": non_null > 0 && distinct <= 1,
        "high_cardinality": acc.kind == ColumnKind::Text && distinct > 50 && distinct as f64 > 0.5 * non_null as f64,
    })
}

/// Whether [`list_lengths`] measures columns of `data_type`.
fn list_lengths_type(data_type: &arrow::datatypes::DataType) -> bool {
    list_lengths(&arrow::array::new_empty_array(data_type)).is_some()
}

/// Quantiles shown for a numeric column, in order, named `p1`, `p25`, ...;
/// the ends are the exact min and max, the others clamped between them.
fn column_quantiles(acc: &ColumnAcc) -> Vec<(String, f64)> {
    if acc.n == 0 {
        return Vec::new();
    }
    let qs = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0];
    qs.iter()
        .zip(acc.sketch.quantiles(&qs))
        .map(|(&q, v)| {
            let v = if q == 0.0 {
                acc.min
            } else if q == 1.0 {
                acc.max
            } else {
                v.unwrap_or(f64::NAN).clamp(acc.min, acc.max)
            };
            (format!("p{}", (q * 100.0).round()), v)
        })
        .collect()
}

/// Equal-width histogram of a numeric column between its min and max.
fn histogram(acc: &ColumnAcc, bins: usize) -> Option<(Vec<f64>, Vec<u64>)> {
    if acc.n == 0 || !acc.min.is_finite() || !acc.max.is_finite() {
        return None;
    }
    let (lo, hi) = if acc.max > acc.min {
        (acc.min, acc.max)
    } else {
        (acc.min - 0.5, acc.min + 0.5)
    };
    let edges: Vec<f64> = (0..=bins)
        .map(|i| lo + (hi - lo) * i as f64 / bins as f64)
        .collect();
    let counts = acc.sketch.histogram(&edges);
    Some((edges, counts))
}

/// Class counts from the label column's aggregate (most frequent first).
fn class_counts(profile: &Profile, label: Option<usize>) -> Vec<(String, u64)> {
    label
        .map(|l| profile.columns[l].top.sorted())
        .unwrap_or_default()
}

fn drifts(
    profile: &Profile,
    p: &ProfileParams,
    reference: Option<&[Option<ColumnAcc>]>,
) -> Vec<ColumnDrift> {
    let schema = &profile.schema;
    let skip = |f: &Field| {
        matches!(role_of(f), Role::Id | Role::Truth | Role::Added)
            || p.drift.as_ref().is_some_and(|d| &d.column == f.name())
    };
    let pairs: Vec<(usize, &ColumnAcc, &ColumnAcc)> = match (&profile.split, reference) {
        (Some((r, c)), _) => (0..r.len()).map(|i| (i, &r[i], &c[i])).collect(),
        (None, Some(r)) => r
            .iter()
            .enumerate()
            .filter_map(|(i, acc)| acc.as_ref().map(|a| (i, a, &profile.columns[i])))
            .collect(),
        (None, None) => Vec::new(),
    };
    pairs
        .into_iter()
        .filter(|(i, _, _)| !skip(schema.field(*i)))
        .filter_map(|(i, r, c)| {
            column_drift(
                schema.field(i).name(),
                r,
                c,
                p.drift_method,
                p.drift_threshold,
            )
        })
        .collect()
}

fn detail_json(
    p: &ProfileParams,
    profile: &Profile,
    f: &Findings,
    reference: Option<&[Option<ColumnAcc>]>,
) -> Value {
    let schema = &profile.schema;
    let label = schema
        .fields()
        .iter()
        .position(|fl| role_of(fl) == Role::Label);
    let columns: Vec<Value> = schema
        .fields()
        .iter()
        .zip(&profile.columns)
        .map(|(fl, acc)| column_json(fl.name(), fl, acc, p))
        .collect();
    let classes = class_counts(profile, label);
    json!({
        "rows": profile.rows,
        "columns": columns,
        "duplicates": {"rows": f.duplicates, "rate": rate(f.duplicates, profile.rows)},
        "label_conflicts": {"rows": f.conflict_rows, "groups": profile.conflict_groups},
        "sample": {"rows": profile.sample_rows.len(), "of": profile.rows},
        "near_duplicates": {
            "rows": f.near.iter().filter(|&&n| n).count(),
            "not_exact": f.near_not_exact,
            "threshold": f.near_threshold,
        },
        "outliers": {"rows": f.outliers, "threshold": f.outlier_threshold, "k": p.k},
        "correlations": profile.correlations.iter()
            .filter(|c| c.2.abs() >= p.correlation_threshold)
            .map(|c| json!({"a": c.0, "b": c.1, "r": c.2})).collect::<Vec<_>>(),
        "classes": classes.iter().map(|(k, c)| json!({"label": k, "rows": c})).collect::<Vec<_>>(),
        "drift": drifts(profile, p, reference),
        "not_features": f.not_features.iter()
            .map(|(c, t)| json!({"column": c, "type": t})).collect::<Vec<_>>(),
    })
}

/// Precision and recall of `found` against a boolean truth column.
fn truth_check(
    base: &Table,
    column: &str,
    found: &[Option<bool>],
) -> Option<(usize, usize, usize)> {
    let field = base.schema().field_with_name(column).ok()?;
    if role_of(field) != Role::Truth || field.data_type() != &DataType::Boolean {
        return None;
    }
    let batch = base.to_batch().ok()?;
    let truth = batch
        .column_by_name(column)?
        .as_any()
        .downcast_ref::<BooleanArray>()?
        .clone();
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for (i, f) in found.iter().enumerate() {
        let Some(f) = f else { continue };
        match (*f, truth.value(i)) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    Some((tp, fp, fn_))
}

fn build_section(
    ctx: &StageContext,
    p: &ProfileParams,
    profile: &Profile,
    f: &Findings,
    reference: Option<&[Option<ColumnAcc>]>,
    base: &Table,
) -> Result<Section, StageError> {
    let schema = &profile.schema;
    let n = profile.rows;
    let mut s = Section::new(&ctx.stage_id, "profile", "Data profile");
    let null_cells: u64 = profile.columns.iter().map(|c| c.nulls).sum();
    let cells = n * schema.fields().len() as u64;
    let dup_rate = rate(f.duplicates, n);
    let sampled = profile.sample_rows.len() as u64;
    let outlier_rate = rate(f.outliers, sampled);
    s.figure("rows", n, "int");
    s.figure("columns", schema.fields().len(), "int");
    s.figure("missing cells", rate(null_cells as usize, cells), "pct");
    s.figure("duplicate rows", dup_rate, "pct");
    s.figure("outliers", outlier_rate, "pct");
    s.metric("rows", n);
    s.metric("duplicate_rate", dup_rate);
    s.metric("missing_cell_rate", rate(null_cells as usize, cells));
    s.metric("outlier_rate", outlier_rate);
    s.metric("near_duplicate_rate", rate(f.near_not_exact, sampled));
    s.metric("label_conflict_rate", rate(f.conflict_rows, n));
    let null_rates: serde_json::Map<String, Value> = schema
        .fields()
        .iter()
        .zip(&profile.columns)
        .map(|(fl, c)| (fl.name().clone(), json!(rate(c.nulls as usize, c.rows))))
        .collect();
    s.metric("null_rate", Value::Object(null_rates));

    // Duplicates, conflicts, near duplicates, outliers.
    if f.duplicates > 0 {
        s.alert(
            severity(dup_rate, 0.05),
            "duplicates",
            None,
            format!(
                "{} rows ({:.1}%) are exact copies of earlier rows",
                f.duplicates,
                100.0 * dup_rate
            ),
        )
        .with("rows", f.duplicates)
        .with("rate", dup_rate);
    }
    if f.conflict_rows > 0 {
        s.alert(
            Severity::Warning,
            "label_conflicts",
            None,
            format!(
                "{} rows in {} groups have identical features but different labels",
                f.conflict_rows, profile.conflict_groups
            ),
        )
        .with("rows", f.conflict_rows)
        .with("groups", profile.conflict_groups);
    }
    if f.near_not_exact > 0 {
        s.alert(
            Severity::Info,
            "near_duplicates",
            None,
            format!(
                "{} rows have a near-identical neighbour (distance below {:.3}, {} x the median \
                 nearest-neighbour distance) without being exact copies",
                f.near_not_exact, f.near_threshold, p.near_duplicate_factor
            ),
        )
        .with("rows", f.near_not_exact)
        .with("threshold", f.near_threshold);
    }
    if f.outliers > 0 {
        s.alert(
            severity(outlier_rate, 0.05),
            "outliers",
            None,
            format!(
                "{} of {} rows ({:.1}%) are outliers: their mean distance to the {} nearest rows \
                 is over {:.2} x the median",
                f.outliers,
                sampled,
                100.0 * outlier_rate,
                p.k,
                f.outlier_threshold
            ),
        )
        .with("rows", f.outliers)
        .with("threshold", f.outlier_threshold);
    }
    let with_nulls = profile.columns.iter().filter(|c| c.nulls > 0).count();
    if null_cells > 0 {
        s.alert(
            Severity::Info,
            "missing",
            None,
            format!(
                "{null_cells} cells ({:.2}%) are missing, in {with_nulls} of {} columns",
                100.0 * rate(null_cells as usize, cells),
                schema.fields().len()
            ),
        )
        .with("cells", null_cells)
        .with("columns", with_nulls);
    }
    if !f.not_features.is_empty() {
        let list = f
            .not_features
            .iter()
            .map(|(c, t)| format!("`{c}` ({t})"))
            .collect::<Vec<_>>()
            .join(", ");
        s.alert(
            Severity::Info,
            "not_features",
            None,
            format!(
                "not used for near duplicates, outliers, correlations and label conflicts \
                 (the kNN features take numbers, booleans and text): {list}; their column \
                 statistics are profiled"
            ),
        )
        .with(
            "columns",
            f.not_features
                .iter()
                .map(|(c, _)| c.clone())
                .collect::<Vec<_>>(),
        );
    }
    if sampled < n {
        s.alert(
            Severity::Info,
            "sampled",
            None,
            format!(
                "near duplicates, outliers and correlations were computed on a sample of {sampled} \
                 of {n} rows (raise sample_rows to cover more)"
            ),
        );
    }

    // Per-column alerts.
    for (fl, c) in schema.fields().iter().zip(&profile.columns) {
        // Ground truth, ids and added columns are not data to fix.
        if matches!(role_of(fl), Role::Truth | Role::Id | Role::Added) {
            continue;
        }
        let is_feature = !matches!(role_of(fl), Role::Label | Role::Weight);
        let name = fl.name().as_str();
        let null_rate = rate(c.nulls as usize, c.rows);
        if null_rate > p.null_threshold {
            s.alert(
                severity(null_rate, 0.5),
                "nulls",
                Some(name),
                format!("{:.1}% of `{name}` is missing", 100.0 * null_rate),
            )
            .with("nulls", c.nulls)
            .with("rate", null_rate);
        }
        let non_null = c.rows - c.nulls;
        let distinct = c.distinct.estimate();
        if non_null > 0 && distinct <= 1 {
            s.alert(
                Severity::Warning,
                "constant",
                Some(name),
                format!("`{name}` has a single value"),
            );
        }
        if c.nan + c.inf > 0 {
            s.alert(
                Severity::Warning,
                "non_finite",
                Some(name),
                format!("`{name}` has {} NaN and {} infinite values", c.nan, c.inf),
            )
            .with("nan", c.nan)
            .with("inf", c.inf);
        }
        if c.kind == ColumnKind::Text
            && distinct > 50
            && distinct as f64 > 0.5 * non_null as f64
            && role_of(fl) != Role::Id
        {
            s.alert(
                Severity::Info,
                "high_cardinality",
                Some(name),
                format!("`{name}` has {distinct} distinct values in {non_null} rows"),
            )
            .with("distinct", distinct);
        }
        if let Some(sk) = c.skew()
            && is_feature
            && sk.abs() > 3.0
        {
            s.alert(
                Severity::Info,
                "skewed",
                Some(name),
                format!("`{name}` is highly skewed (skewness {sk:.2})"),
            )
            .with("skew", sk);
        }
        if is_feature
            && c.kind == ColumnKind::Numeric
            && c.n > 0
            && c.zeros as f64 > 0.5 * c.n as f64
        {
            s.alert(
                Severity::Info,
                "zeros",
                Some(name),
                format!(
                    "{:.1}% of `{name}` is zero",
                    100.0 * c.zeros as f64 / c.n as f64
                ),
            )
            .with("zeros", c.zeros);
        }
    }

    // Correlations.
    let mut strong: Vec<&(String, String, f64)> = profile
        .correlations
        .iter()
        .filter(|c| c.2.abs() >= p.correlation_threshold)
        .collect();
    strong.sort_by(|a, b| b.2.abs().total_cmp(&a.2.abs()));
    for (a, b, r) in &strong {
        s.alert(
            Severity::Warning,
            "correlated",
            Some(a),
            format!("`{a}` and `{b}` are highly correlated (r = {r:.3})"),
        )
        .with("other", b.as_str())
        .with("r", *r);
    }

    // Classes.
    let label = schema
        .fields()
        .iter()
        .position(|fl| role_of(fl) == Role::Label);
    let classes = class_counts(profile, label);
    if !classes.is_empty() {
        let k = classes.len();
        let total: u64 = classes.iter().map(|c| c.1).sum();
        let max = classes.iter().map(|c| c.1).max().unwrap_or(0);
        let min = classes.iter().map(|c| c.1).min().unwrap_or(0);
        let ratio = if min > 0 {
            max as f64 / min as f64
        } else {
            f64::INFINITY
        };
        s.figure("classes", k, "int");
        s.figure("imbalance ratio", finite(ratio), "float");
        s.metric("imbalance_ratio", finite(ratio));
        s.metric("minority_class_fraction", rate(min as usize, total));
        if ratio >= 3.0 {
            s.alert(
                if ratio >= 20.0 {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                "imbalance",
                None,
                format!(
                    "the largest class has {ratio:.1} x the rows of the smallest ({max} vs {min})"
                ),
            )
            .with("ratio", finite(ratio));
        }
        for (cls, c) in &classes {
            let frac = rate(*c as usize, total);
            if frac < 0.1 / k as f64 {
                s.alert(
                    Severity::Warning,
                    "class_imbalance",
                    None,
                    format!(
                        "class {cls} has {c} rows ({:.2}%), under 0.1/K = {:.2}% of the data",
                        100.0 * frac,
                        10.0 / k as f64
                    ),
                )
                .with("class", cls.as_str())
                .with("rows", *c)
                .with("fraction", frac);
            }
        }
        let mut ordered = classes.clone();
        ordered.sort_by(|a, b| natural_cmp(&a.0, &b.0));
        s.block(Block::bars(
            "Rows per class",
            ordered.iter().map(|c| c.0.clone()).collect(),
            "rows",
            ordered.iter().map(|c| c.1 as f64).collect(),
        ));
    }

    // Ground truth from a generator, when present.
    let dup_found: Vec<Option<bool>> = profile
        .duplicate_of
        .iter()
        .map(|d| Some(d.is_some()))
        .collect();
    let mut out_found: Vec<Option<bool>> = vec![None; n as usize];
    for (i, &row) in profile.sample_rows.iter().enumerate() {
        if i < f.outlier.len() {
            out_found[row as usize] = Some(f.outlier[i]);
        }
    }
    let mut truth_rows = Vec::new();
    for (what, col, found) in [
        ("duplicates", "true_duplicate", &dup_found),
        ("outliers", "true_outlier", &out_found),
    ] {
        if let Some((tp, fp, fn_)) = truth_check(base, col, found) {
            let precision = rate(tp, (tp + fp) as u64);
            let recall = rate(tp, (tp + fn_) as u64);
            s.metric(&format!("{what}_precision"), precision);
            s.metric(&format!("{what}_recall"), recall);
            truth_rows.push(vec![
                json!(what),
                json!(col),
                json!(tp + fn_),
                json!(tp + fp),
                json!(precision),
                json!(recall),
            ]);
        }
    }
    if !truth_rows.is_empty() {
        s.block(Block::table(
            "Found versus injected (ground-truth columns from the generator)",
            &[
                "finding",
                "truth column",
                "injected",
                "found",
                "precision",
                "recall",
            ],
            truth_rows,
        ));
    }

    // Drift.
    let drift = drifts(profile, p, reference);
    if !drift.is_empty() {
        let drifted: Vec<&ColumnDrift> = drift.iter().filter(|d| d.drifted).collect();
        s.figure("drifted columns", drifted.len(), "int");
        s.metric("drifted_columns", drifted.len());
        s.metric("drift_share", rate(drifted.len(), drift.len() as u64));
        for d in &drifted {
            s.alert(
                Severity::Warning,
                "drift",
                Some(&d.column),
                format!(
                    "`{}` drifted: {} = {:.4} (threshold {})",
                    d.column, d.decided_by, d.score, d.threshold
                ),
            )
            .with("method", d.decided_by.as_str())
            .with("score", finite(d.score))
            .with("psi", finite(d.psi));
        }
        s.block(Block::table(
            "Drift (reference → current)",
            &[
                "column",
                "kind",
                "drifted",
                "decided by",
                "score",
                "threshold",
                "KS",
                "Wasserstein (normed)",
                "Jensen–Shannon",
                "PSI",
            ],
            drift
                .iter()
                .map(|d| {
                    vec![
                        json!(d.column),
                        json!(d.kind),
                        json!(d.drifted),
                        json!(d.decided_by),
                        finite(d.score),
                        json!(d.threshold),
                        d.ks_statistic.map_or(Value::Null, finite),
                        d.wasserstein_normed.map_or(Value::Null, finite),
                        d.jensen_shannon.map_or(Value::Null, finite),
                        finite(d.psi),
                    ]
                })
                .collect(),
        ));
    }

    // Column overview, then one group per column.
    s.block(Block::table(
        "Columns",
        &[
            "column",
            "type",
            "role",
            "missing",
            "distinct",
            "min",
            "mean",
            "max",
            "std",
            "top value",
        ],
        schema
            .fields()
            .iter()
            .zip(&profile.columns)
            .map(|(fl, c)| {
                let num = |x: f64| if c.n > 0 { finite(x) } else { Value::Null };
                vec![
                    json!(fl.name()),
                    json!(fl.data_type().to_string()),
                    json!(role_of(fl).as_str()),
                    json!(rate(c.nulls as usize, c.rows)),
                    json!(c.distinct.estimate()),
                    num(c.min),
                    num(c.mean),
                    num(c.max),
                    c.std().map_or(Value::Null, finite),
                    c.top.sorted().first().map_or(Value::Null, |t| json!(t.0)),
                ]
            })
            .collect(),
    ));
    if !strong.is_empty() {
        s.block(Block::table(
            "Highly correlated feature pairs",
            &["a", "b", "r"],
            strong
                .iter()
                .map(|(a, b, r)| vec![json!(a), json!(b), json!(r)])
                .collect(),
        ));
    }
    for (fl, c) in schema.fields().iter().zip(&profile.columns) {
        let mut blocks = Vec::new();
        let stats = column_json(fl.name(), fl, c, p);
        let rows: Vec<Vec<Value>> = [
            "rows", "nulls", "nan", "inf", "zeros", "distinct", "min", "max", "mean", "std", "skew",
        ]
        .iter()
        .filter(|k| !stats[**k].is_null())
        .map(|k| vec![json!(k), stats[*k].clone()])
        .chain(
            column_quantiles(c)
                .into_iter()
                .map(|(q, v)| vec![json!(q), finite(v)]),
        )
        .collect();
        blocks.push(Block::table("Statistics", &["statistic", "value"], rows));
        if c.kind == ColumnKind::Numeric
            && let Some((edges, counts)) = histogram(c, p.histogram_bins)
        {
            blocks.push(Block::Histogram {
                title: format!("Histogram of {}", fl.name()),
                edges,
                counts,
            });
        }
        let top = c.top.sorted();
        if !top.is_empty() && (c.kind != ColumnKind::Numeric || top.len() <= 20) {
            let shown: Vec<(String, u64)> = top.into_iter().take(p.top_values).collect();
            blocks.push(Block::bars(
                &format!("Top values of {}", fl.name()),
                shown.iter().map(|t| t.0.clone()).collect(),
                "rows",
                shown.iter().map(|t| t.1 as f64).collect(),
            ));
        }
        s.block(Block::Group {
            title: fl.name().clone(),
            blocks,
        });
    }
    Ok(s)
}

/// Orders class labels numerically when both are numbers.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::ctx;
    use gigo_pipeline::Artifact;
    use gigo_pipeline::samples::every_type_batch;

    /// The sample with roles as `ingest` sets them: `label`, the rest features.
    fn every_type_table() -> Table {
        let batch = every_type_batch();
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let role = if f.name() == "label" {
                    Role::Label
                } else {
                    Role::Feature
                };
                field_with_role(f.as_ref().clone(), role)
            })
            .collect();
        Table::from_batch(
            arrow::array::RecordBatch::try_new(
                Arc::new(Schema::new(fields)),
                batch.columns().to_vec(),
            )
            .unwrap(),
        )
    }

    fn profile(table: Table) -> Result<StageOutput, StageError> {
        let mut registry = Registry::new();
        register(&mut registry);
        let stage = registry.get("profile").unwrap().build(&json!({})).unwrap();
        let mut inputs = Inputs::default();
        inputs.push("table", table.into());
        let dir = tempfile::tempdir().unwrap();
        stage.run(&inputs, &ctx("profile", 1, dir.path()))
    }

    fn column<'a>(out: &'a StageOutput, name: &str) -> &'a Value {
        out.summary["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
    }

    #[test]
    fn every_column_type_is_profiled_and_unusable_features_are_named() {
        let out = profile(every_type_table()).unwrap();
        for c in out.summary["columns"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let nulls = if name == "label" { 0 } else { 1 };
            assert_eq!(c["nulls"], nulls, "{name}");
            assert_eq!(c["rows"], 4, "{name}");
        }
        let price = column(&out, "price");
        assert_eq!(
            (price["min"].as_f64(), price["max"].as_f64()),
            (Some(-0.05), Some(1234.56))
        );
        let day = column(&out, "day");
        assert_eq!(
            (day["min_text"].as_str(), day["max_text"].as_str()),
            (Some("2022-01-08"), Some("2024-10-04"))
        );
        assert_eq!(day["min"], 19_000.0);
        let seen = column(&out, "seen");
        assert_eq!(seen["min_text"], "2020-09-13T12:26:40");
        assert_eq!(seen["max_text"], "2023-11-14T22:13:21");
        let utc = column(&out, "seen_utc");
        assert!(
            utc["max_text"]
                .as_str()
                .unwrap()
                .starts_with("2023-11-14T22:13:22"),
            "{utc}"
        );
        assert_eq!(column(&out, "wait")["max_text"], "PT3600S");
        assert_eq!(column(&out, "at")["max_text"], "01:00:00");
        assert_eq!(column(&out, "colour")["distinct"], 2);
        for (name, distinct, lengths) in [
            ("tags", 3, Some((0, 3))),
            ("point", 3, None),
            ("points", 3, Some((0, 3))),
        ] {
            let c = column(&out, name);
            assert_eq!(c["kind"], "other", "{name}");
            assert_eq!(c["distinct"], distinct, "{name}");
            let got = c["min_length"].as_u64().zip(c["max_length"].as_u64());
            assert_eq!(got, lengths, "{name}");
        }
        // Only the decimal and the dictionary are kNN features; the others are named.
        let skipped: Vec<&str> = out.summary["not_features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["column"].as_str().unwrap())
            .collect();
        assert_eq!(
            skipped,
            [
                "day", "seen", "seen_utc", "wait", "at", "tags", "point", "points"
            ]
        );
        let section = Section::from_summary(&out.summary).unwrap().unwrap();
        let alert = section
            .alerts
            .iter()
            .find(|a| a.kind == "not_features")
            .unwrap();
        assert!(
            alert.message.contains("`seen_utc` (Timestamp("),
            "{}",
            alert.message
        );
        let Artifact::Table(t) = &out.ports["table"] else {
            panic!("no table")
        };
        let nn = t.to_batch().unwrap();
        assert_eq!(nn.column_by_name("nn_distance").unwrap().null_count(), 0);
    }

    #[test]
    fn a_table_of_only_unusable_features_is_still_profiled() {
        let batch = every_type_batch();
        let keep: Vec<usize> = (1..8).collect();
        let out = profile(Table::from_batch(batch.project(&keep).unwrap())).unwrap();
        assert_eq!(out.summary["not_features"].as_array().unwrap().len(), 7);
        assert_eq!(column(&out, "tags")["distinct"], 3);
    }
}
