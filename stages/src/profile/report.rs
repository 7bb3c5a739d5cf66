//! The profile's report section: figures, gateable metrics, alerts and
//! blocks, and the JSON detail beside it in the summary.

use arrow::datatypes::Field;
use gigo_pipeline::summary::{Block, Section, Severity};
use gigo_pipeline::{Role, StageContext, StageError, role_of};
use serde_json::{Value, json};

use super::column::{is_temporal, list_lengths, temporal_text};
use super::{ColumnAcc, ColumnDrift, ColumnKind, Findings, Profile, ProfileParams, column_drift};

/// Every metric [`build_section`] may report (the truth checks need a
/// generator's `true_*` columns, the class figures a label, the drift figures
/// a reference).
pub(super) const METRICS: [&str; 15] = [
    "rows",
    "duplicate_rate",
    "missing_cell_rate",
    "outlier_rate",
    "near_duplicate_rate",
    "label_conflict_rate",
    "null_rate",
    "imbalance_ratio",
    "minority_class_fraction",
    "duplicates_precision",
    "duplicates_recall",
    "outliers_precision",
    "outliers_recall",
    "drifted_columns",
    "drift_share",
];

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

pub(super) fn detail_json(
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
        "label_conflicts": {"rows": f.conflict_rows, "groups": profile.row_findings.conflict_groups},
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

/// A finding compared with a ground-truth column from a generator: true
/// positives, false positives, false negatives (rows without a verdict, such
/// as outliers off the sample, are left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct TruthCount {
    pub(super) tp: usize,
    pub(super) fp: usize,
    pub(super) fn_: usize,
}

impl TruthCount {
    pub(super) fn add(&mut self, found: bool, truth: bool) {
        match (found, truth) {
            (true, true) => self.tp += 1,
            (true, false) => self.fp += 1,
            (false, true) => self.fn_ += 1,
            _ => {}
        }
    }
}

/// The findings checked against truth columns: (finding, column, counts).
pub(super) type Truth = Vec<(&'static str, &'static str, TruthCount)>;

pub(super) fn build_section(
    ctx: &StageContext,
    p: &ProfileParams,
    profile: &Profile,
    f: &Findings,
    reference: Option<&[Option<ColumnAcc>]>,
    truth: &Truth,
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
                f.conflict_rows, profile.row_findings.conflict_groups
            ),
        )
        .with("rows", f.conflict_rows)
        .with("groups", profile.row_findings.conflict_groups);
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
        // In the one class order of every stage (`gigo_ml::classes`).
        let order = gigo_ml::Classes::from_keys(classes.iter().map(|c| c.0.as_str()));
        let mut ordered = classes.clone();
        ordered.sort_by_key(|c| order.index_of(&c.0));
        s.block(Block::bars(
            "Rows per class",
            ordered.iter().map(|c| c.0.clone()).collect(),
            "rows",
            ordered.iter().map(|c| c.1 as f64).collect(),
        ));
    }

    // Ground truth from a generator, when present.
    let mut truth_rows = Vec::new();
    for &(what, col, TruthCount { tp, fp, fn_ }) in truth {
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
