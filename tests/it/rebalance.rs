//! The `rebalance` stage against imbalanced-learn on real imbalanced data
//! sets (golden files made by `tests/golden/imblearn/make_golden.py`, whose
//! header has the command), and end to end in pipelines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::common::{gigo, read_parquet, root, stderr, write};
use arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use gigo::{Artifact, Inputs, NoProgress, Role, Stage, StageContext, StageOutput, Table};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

fn datasets() -> PathBuf {
    root().join("../shared/datasets/imbalanced")
}

fn golden_dir() -> PathBuf {
    root().join("tests/golden/imblearn")
}

/// The data set as the golden script saw it: features = the golden's list
/// (numeric columns), `label` the label, a `row` id column (0..n) added, other
/// columns role `other`.
fn load(name: &str, features: &[String]) -> Table {
    let path = datasets().join(format!("{name}.parquet"));
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap();
    let n = batch.num_rows() as i64;
    let mut fields = vec![gigo::field_with_role(
        Field::new("row", DataType::Int64, false),
        Role::Id,
    )];
    let mut cols: Vec<Arc<dyn Array>> =
        vec![Arc::new(Int64Array::from((0..n).collect::<Vec<_>>()))];
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        let role = if f.name() == "label" {
            Role::Label
        } else if features.contains(f.name()) {
            Role::Feature
        } else {
            Role::Other
        };
        fields.push(gigo::field_with_role(f.as_ref().clone(), role));
        cols.push(c.clone());
    }
    Table::from_batch(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap())
}

fn run(params: Value, table: &Table, seed: u64) -> StageOutput {
    let registry = gigo::builtin_registry();
    let stage: Box<dyn Stage> = registry
        .get("rebalance")
        .unwrap()
        .build(&params)
        .unwrap_or_else(|e| panic!("{params}: {e:?}"));
    let dir = tempfile::tempdir().unwrap();
    let ctx = StageContext::new(
        "rebalance",
        seed,
        dir.path().join("scratch"),
        dir.path().to_path_buf(),
        dir.path().join("run"),
        Arc::new(NoProgress),
    );
    let mut inputs = Inputs::default();
    inputs.push("table", Artifact::Table(Arc::new(table.clone())));
    // Streamed outputs are files in `dir`: read them before it goes.
    stage
        .run(&inputs, &ctx)
        .and_then(StageOutput::loaded)
        .unwrap_or_else(|e| panic!("{params}: {e}"))
}

fn port(out: &StageOutput, name: &str) -> Table {
    match &out.ports[name] {
        Artifact::Table(t) => t.as_ref().clone(),
        _ => panic!("{name} is not a table"),
    }
}

fn ints(t: &Table, name: &str) -> Vec<i64> {
    t.batches()
        .iter()
        .flat_map(|b| {
            b.column_by_name(name)
                .unwrap()
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.unwrap_or(-1))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn counts(t: &Table) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in ints(t, "label") {
        *m.entry(l.to_string()).or_default() += 1;
    }
    m
}

fn golden_counts(v: &Value) -> BTreeMap<String, usize> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap() as usize))
        .collect()
}

fn golden_files() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("json") {
            let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            out.push((p.file_stem().unwrap().to_string_lossy().to_string(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 5, "one golden file per data set");
    out
}

/// The feature values of every row, as the golden script saw them (f64).
fn feature_rows(t: &Table, features: &[String]) -> Vec<Vec<f64>> {
    let b = t.to_batch().unwrap();
    let cols: Vec<Vec<f64>> = features
        .iter()
        .map(|f| {
            let a = arrow::compute::cast(b.column_by_name(f).unwrap(), &DataType::Float64).unwrap();
            a.as_primitive::<arrow::datatypes::Float64Type>()
                .iter()
                .map(|v| v.unwrap_or(0.0))
                .collect()
        })
        .collect();
    (0..b.num_rows())
        .map(|i| cols.iter().map(|c| c[i]).collect())
        .collect()
}

/// Whether row `i`'s `k`-th nearest other row is tied with the next one:
/// then which rows are "the k nearest" is a matter of tie-breaking (gigo
/// takes the earlier row; scikit-learn's order depends on its tree).
fn boundary_tie(x: &[Vec<f64>], i: usize, k: usize) -> bool {
    let mut d: Vec<f64> = (0..x.len())
        .filter(|&j| j != i)
        .map(|j| x[i].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)).sum())
        .collect();
    d.sort_by(f64::total_cmp);
    d.len() > k && d[k - 1] == d[k]
}

/// Rows where gigo and imbalanced-learn disagree, printed; returns those
/// that no tie explains.
fn compare(
    name: &str,
    method: &str,
    ours: &BTreeSet<i64>,
    theirs: &BTreeSet<i64>,
    explained: impl Fn(usize) -> bool,
) -> Vec<i64> {
    let differ: Vec<i64> = ours.symmetric_difference(theirs).copied().collect();
    let unexplained: Vec<i64> = differ
        .iter()
        .copied()
        .filter(|&r| !explained(r as usize))
        .collect();
    println!(
        "{name:>14} {method:<12} gigo {:>6} imblearn {:>6} same {:>6} differ {:>3} (tied: {})",
        ours.len(),
        theirs.len(),
        ours.intersection(theirs).count(),
        differ.len(),
        differ.len() - unexplained.len()
    );
    unexplained
}

#[test]
fn deterministic_samplers_remove_the_rows_imbalanced_learn_removes() {
    let mut total_diff = BTreeMap::new();
    for (name, g) in golden_files() {
        let features: Vec<String> = g["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        let table = load(&name, &features);
        assert_eq!(counts(&table), golden_counts(&g["counts"]), "{name}");
        let n = table.num_rows() as i64;
        let x = feature_rows(&table, &features);
        for (method, params, keep) in [
            ("tomek", json!({"method": "tomek"}), false),
            ("enn", json!({"method": "enn"}), false),
            (
                "near_miss_1",
                json!({"method": "near_miss", "version": 1}),
                true,
            ),
            (
                "near_miss_2",
                json!({"method": "near_miss", "version": 2}),
                true,
            ),
            (
                "near_miss_3",
                json!({"method": "near_miss", "version": 3}),
                true,
            ),
        ] {
            let out = run(params, &table, 0);
            let expect = &g["methods"][method];
            let kept: BTreeSet<i64> = ints(&port(&out, "table"), "row").into_iter().collect();
            let removed: BTreeSet<i64> = ints(&port(&out, "removed"), "row").into_iter().collect();
            assert_eq!(kept.len() + removed.len(), n as usize);
            let (ours, theirs): (BTreeSet<i64>, BTreeSet<i64>) = if keep {
                (
                    kept,
                    expect["kept"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_i64().unwrap())
                        .collect(),
                )
            } else {
                (
                    removed,
                    expect["removed"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_i64().unwrap())
                        .collect(),
                )
            };
            let k = match method {
                "tomek" => 1,
                _ => 3,
            };
            // a differing row is explained by a tie at its own neighbour
            // boundary or, for Tomek links, at its nearest row's
            let explained = |r: usize| {
                boundary_tie(&x, r, k)
                    || (method == "tomek"
                        && (0..x.len()).any(|j| {
                            j != r && boundary_tie(&x, j, 1) && {
                                let d: f64 =
                                    x[r].iter().zip(&x[j]).map(|(a, b)| (a - b) * (a - b)).sum();
                                (0..x.len()).filter(|&m| m != r).all(|m| {
                                    d <= x[r]
                                        .iter()
                                        .zip(&x[m])
                                        .map(|(a, b)| (a - b) * (a - b))
                                        .sum::<f64>()
                                })
                            }
                        }))
            };
            let bad = compare(&name, method, &ours, &theirs, explained);
            total_diff.insert(format!("{name}/{method}"), bad.len());
        }
    }
    let bad: Vec<_> = total_diff.iter().filter(|&(_, &d)| d > 0).collect();
    assert!(
        bad.is_empty(),
        "rows differ from imbalanced-learn without a tie to explain it: {bad:?}"
    );
}

#[test]
fn randomised_samplers_reach_imbalanced_learns_counts() {
    // SMOTE & co. use numpy's generator in imbalanced-learn: the rows differ,
    // the counts must not (ADASYN: gigo reaches the target exactly, while
    // imbalanced-learn's per-row rounding misses it by a few rows).
    for (name, g) in golden_files() {
        let features: Vec<String> = g["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect();
        let table = load(&name, &features);
        let target = golden_counts(&g["methods"]["smote"]["counts_after"]);
        for (method, params) in [
            ("random_over", json!({"method": "random_over"})),
            ("random_under", json!({"method": "random_under"})),
            ("smote", json!({"method": "smote"})),
            (
                "borderline_smote_1",
                json!({"method": "borderline_smote", "borderline_kind": 1}),
            ),
            (
                "borderline_smote_2",
                json!({"method": "borderline_smote", "borderline_kind": 2}),
            ),
            ("adasyn", json!({"method": "adasyn"})),
            ("smote_tomek", json!({"method": "smote_tomek"})),
            ("smote_enn", json!({"method": "smote_enn"})),
        ] {
            let out = run(params, &table, 0);
            let ours = counts(&port(&out, "table"));
            let theirs = golden_counts(&g["methods"][method]["counts_after"]);
            println!("{name:>14} {method:<20} gigo {ours:?} imblearn {theirs:?}");
            match method {
                "adasyn" => assert_eq!(ours, target, "{name} {method}"),
                "smote_tomek" | "smote_enn" => {
                    // random synthetic rows, then cleaning: same order of magnitude
                    for (c, n) in &theirs {
                        let o = ours[c] as f64;
                        let rel = (o - *n as f64).abs() / *n as f64;
                        assert!(rel < 0.25, "{name} {method} class {c}: {o} vs {n}");
                    }
                }
                _ => assert_eq!(ours, theirs, "{name} {method}"),
            }
        }
    }
}

/// A pipeline: generated imbalanced data (with missing values, outliers and
/// duplicates), split, rebalanced from `input`, reported.
fn pipeline(dir: &Path, input: &str, params: &str) -> String {
    write(
        dir,
        "p.yaml",
        &format!(
            "name: rb\nseed: 3\nstages:\n  data:\n    type: generate\n    rows: 2000\n    classes: 3\n    \
             class_weights: [0.7, 0.2, 0.1]\n    missing: 0.01\n    outliers: 0.02\n    duplicates: 0.02\n  \
             split:\n    type: split\n    inputs: data\n  \
             rebalance:\n    type: rebalance\n    inputs: {input}\n{params}  \
             report:\n    type: report\n    inputs: [rebalance.summary]\n"
        ),
    )
}

#[test]
fn a_pipeline_rebalances_its_training_part_and_reports_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "split.train", "    method: smote_tomek\n");
    let o = gigo(dir.path(), &["run", &p, "--run-id", "r"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let record = crate::common::run_record(dir.path(), "r");
    let rows = &record["stages"]["rebalance"]["rows"];
    let out = read_parquet(&dir.path().join("runs/r/rebalance/table.parquet"));
    let removed = read_parquet(&dir.path().join("runs/r/rebalance/removed.parquet"));
    // the executor's accounting: in + created = out + removed
    let created: u64 = rows["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rows"].as_u64().unwrap())
        .sum();
    assert!(created > 0);
    assert_eq!(rows["checked"], true);
    assert_eq!(rows["out"].as_u64().unwrap(), out.num_rows() as u64);
    assert_eq!(
        rows["in"].as_u64().unwrap() + created,
        (out.num_rows() + removed.num_rows()) as u64
    );
    assert_eq!(rows["removed"][0]["reason"], "tomek_link");
    // roles and flags survive the Parquet round trip
    let flag = out.column_by_name("is_synthetic").unwrap().as_boolean();
    assert!(flag.true_count() > 0 && flag.false_count() > 0);
    let schema = out.schema();
    let role = |c: &str| gigo::role_of(schema.field_with_name(c).unwrap());
    assert_eq!(role("is_synthetic"), Role::Added);
    assert_eq!(role("label"), Role::Label);
    assert!(removed.column_by_name("removed_reason").is_some());
    // the report shows the section with before / after bars
    let s: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/r/rebalance/summary.json")).unwrap(),
    )
    .unwrap();
    let blocks = s["report"]["blocks"].as_array().unwrap();
    let bars = blocks.iter().find(|b| b["type"] == "bars").unwrap();
    assert_eq!(bars["series"][0]["name"], "before");
    assert_eq!(bars["series"][1]["name"], "after");
    assert!(
        s["report"]["metrics"]["imbalance_ratio_after"]
            .as_f64()
            .unwrap()
            < 1.2
    );
    let html = std::fs::read_to_string(dir.path().join("runs/r/report.html")).unwrap();
    assert!(
        html.contains("Class rebalancing"),
        "the report shows the stage"
    );
}

#[test]
fn rebalancing_test_data_is_refused_by_validate_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), "split.test", "    method: smote\n");
    for args in [vec!["validate", &p], vec!["run", &p, "--run-id", "t"]] {
        let o = gigo(dir.path(), &args);
        assert_ne!(o.status.code(), Some(0));
        let err = stderr(&o);
        assert!(
            err.contains("split.test")
                && err.contains("split.train")
                && err.contains("meaningless"),
            "{err}"
        );
        // at the stage's `inputs:` line of the generated file, before any data
        assert!(
            err.contains("p.yaml:17") && err.contains("rebalance"),
            "{err}"
        );
    }
    assert!(!dir.path().join("runs/t/data").exists(), "no stage ran");
    // the valid port is held out too
    let p = pipeline(dir.path(), "split.valid", "    method: smote\n");
    let o = gigo(dir.path(), &["validate", &p]);
    assert!(stderr(&o).contains("split.valid"), "{}", stderr(&o));
    // the training part is fine
    let p = pipeline(dir.path(), "split.train", "    method: smote\n");
    let o = gigo(dir.path(), &["validate", &p]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn validate_reports_options_the_method_does_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(
        dir.path(),
        "split.train",
        "    method: smote\n    version: 2\n    strategy: majority\n",
    );
    let o = gigo(dir.path(), &["validate", &p]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("`version` does nothing for method `smote`"),
        "{err}"
    );
    assert!(
        err.contains("`majority` cannot be used to over-sample"),
        "{err}"
    );
}
