//! The `profile` stage end to end: on the quickstart's generated garbage
//! (scored against the generator's ground truth) and on real data (Adult,
//! checked against figures computed here, independently of the stage).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::common::{gigo, read_parquet, root, run_example, stderr};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};

fn bools(b: &RecordBatch, name: &str) -> Vec<Option<bool>> {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_boolean()
        .iter()
        .collect()
}

/// (precision, recall) of `found` against `truth`, over rows where found is set.
fn precision_recall(found: &[Option<bool>], truth: &[Option<bool>]) -> (f64, f64, usize) {
    let (mut tp, mut fp, mut fn_) = (0, 0, 0);
    for (f, t) in found.iter().zip(truth) {
        match (f.expect("every row scored"), t.unwrap()) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            _ => {}
        }
    }
    (
        tp as f64 / (tp + fp).max(1) as f64,
        tp as f64 / (tp + fn_).max(1) as f64,
        tp + fn_,
    )
}

fn summary(dir: &Path, run: &str, stage: &str) -> serde_json::Value {
    let p = dir.join("runs").join(run).join(stage).join("summary.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

#[test]
fn quickstart_profile_finds_the_injected_duplicates_and_outliers() {
    let dir = tempfile::tempdir().unwrap();
    run_example(dir.path(), "examples/quickstart.yaml", "q");
    let t = read_parquet(&dir.path().join("runs/q/profile/table.parquet"));

    let (p, r, injected) =
        precision_recall(&bools(&t, "is_duplicate"), &bools(&t, "true_duplicate"));
    assert!(
        injected >= 90,
        "the quickstart injects 2% duplicates: {injected}"
    );
    assert!(
        p >= 0.99 && r >= 0.99,
        "duplicates: precision {p}, recall {r}"
    );

    let (p, r, injected) = precision_recall(&bools(&t, "is_outlier"), &bools(&t, "true_outlier"));
    assert!(
        injected >= 90,
        "the quickstart injects 2% outliers: {injected}"
    );
    assert!(p >= 0.8 && r >= 0.9, "outliers: precision {p}, recall {r}");

    // The report section names the garbage.
    let s = summary(dir.path(), "q", "profile");
    let kinds: Vec<&str> = s["report"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    for kind in ["duplicates", "outliers", "missing", "imbalance"] {
        assert!(kinds.contains(&kind), "no `{kind}` alert in {kinds:?}");
    }
    let m = &s["report"]["metrics"];
    let dup_rate = m["duplicate_rate"].as_f64().unwrap();
    assert!((dup_rate - 100.0 / 5100.0).abs() < 0.002, "{dup_rate}");
    assert!(m["imbalance_ratio"].as_f64().unwrap() > 5.0);
    assert_eq!(m["duplicates_recall"], 1.0);

    // label_noise scores its flags against the generator's `is_flipped`.
    let ln = summary(dir.path(), "q", "label_noise");
    let m = &ln["report"]["metrics"];
    let (p, r) = (
        m["label_issue_precision"].as_f64().unwrap(),
        m["label_issue_recall"].as_f64().unwrap(),
    );
    assert!(
        p >= 0.55 && r >= 0.8,
        "label issues: precision {p}, recall {r}"
    );
    // And the report carries both sections.
    let report = std::fs::read_to_string(dir.path().join("runs/q/report.md")).unwrap();
    assert!(
        report.contains("label\\_noise") || report.contains("label_noise"),
        "{report}"
    );
}

fn adult() -> PathBuf {
    root().join("../shared/datasets/adult/adult.parquet")
}

/// Independent figures for one column of Adult: nulls, and for integers the
/// sorted values.
fn column_values(b: &RecordBatch, name: &str) -> (usize, Vec<i64>, Vec<Option<String>>) {
    let c = b.column_by_name(name).unwrap();
    let nulls = c.null_count();
    match c.data_type() {
        DataType::Int64 => {
            let mut v: Vec<i64> = c.as_primitive::<Int64Type>().iter().flatten().collect();
            v.sort_unstable();
            (nulls, v, Vec::new())
        }
        _ => {
            let s = cast(c, &DataType::Utf8).unwrap();
            let v = s
                .as_string::<i32>()
                .iter()
                .map(|x| x.map(str::to_string))
                .collect();
            (nulls, Vec::new(), v)
        }
    }
}

#[test]
fn adult_profile_matches_independently_computed_figures() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: adult\nseed: 1\nstages:\n  raw:\n    type: ingest\n    path: {}\n    label: label\n  \
         profile:\n    type: profile\n    inputs: raw\n    drift: {{column: split, reference: train}}\n",
        adult().display()
    );
    let p = crate::common::write(dir.path(), "adult.yaml", &yaml);
    let o = gigo(dir.path(), &["run", &p, "--run-id", "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(dir.path(), "a", "profile");
    let data = read_parquet(&adult());
    assert_eq!(s["rows"], 48_842);

    let columns: BTreeMap<String, &serde_json::Value> = s["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_string(), c))
        .collect();
    for field in data.schema().fields() {
        let name = field.name();
        let (nulls, ints, texts) = column_values(&data, name);
        let c = columns[name.as_str()];
        assert_eq!(c["nulls"], nulls, "{name}");
        if !ints.is_empty() {
            // Exact min, max, mean; quantiles within 1% of rank.
            assert_eq!(c["min"].as_f64().unwrap(), ints[0] as f64, "{name}");
            assert_eq!(
                c["max"].as_f64().unwrap(),
                *ints.last().unwrap() as f64,
                "{name}"
            );
            let mean = ints.iter().map(|&x| x as f64).sum::<f64>() / ints.len() as f64;
            assert!((c["mean"].as_f64().unwrap() - mean).abs() < 1e-6 * mean.abs().max(1.0));
            for (key, q) in [("p25", 0.25), ("p50", 0.5), ("p75", 0.75), ("p95", 0.95)] {
                let got = c["quantiles"][key].as_f64().unwrap();
                let lo = ints[((q - 0.01f64).max(0.0) * (ints.len() - 1) as f64) as usize] as f64;
                let hi =
                    ints[((q + 0.01f64).min(1.0) * (ints.len() - 1) as f64).ceil() as usize] as f64;
                assert!(
                    lo <= got && got <= hi,
                    "{name} {key}: {got} not in [{lo}, {hi}]"
                );
            }
            let distinct = ints.iter().collect::<std::collections::BTreeSet<_>>().len();
            if c["distinct_exact"] == true {
                assert_eq!(c["distinct"], distinct, "{name}");
            } else {
                // The KMV sketch (4096 hashes): 1.6% standard error.
                let est = c["distinct"].as_f64().unwrap();
                assert!(
                    (est / distinct as f64 - 1.0).abs() < 0.05,
                    "{name}: {est} vs {distinct}"
                );
                assert!(distinct > 4000, "{name}: sketched although small");
            }
        } else {
            let mut counts: HashMap<&str, u64> = HashMap::new();
            for v in texts.iter().flatten() {
                *counts.entry(v).or_default() += 1;
            }
            assert_eq!(c["distinct"], counts.len(), "{name}");
            let top = &c["top_values"][0];
            let best = counts.values().max().unwrap();
            assert_eq!(top["count"], *best, "{name}");
            assert_eq!(counts[top["value"].as_str().unwrap()], *best);
        }
    }
    // Classes.
    let classes: BTreeMap<String, u64> = s["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["label"].as_str().unwrap().to_string(),
                c["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let (_, labels, _) = column_values(&data, "label");
    let ones = labels.iter().filter(|&&l| l == 1).count() as u64;
    assert_eq!(classes["1"], ones);
    assert_eq!(classes["0"], 48_842 - ones);

    // Exact duplicates over every column but `split`, counted here by key.
    let keys: Vec<String> = (0..data.num_rows())
        .map(|i| {
            data.schema()
                .fields()
                .iter()
                .filter(|f| f.name() != "split")
                .map(|f| {
                    let c = data.column_by_name(f.name()).unwrap();
                    arrow::util::display::array_value_to_string(c, i).unwrap()
                        + if c.is_null(i) { "\u{0}null" } else { "" }
                })
                .collect::<Vec<_>>()
                .join("\u{1}")
        })
        .collect();
    let unique: std::collections::HashSet<&String> = keys.iter().collect();
    assert_eq!(s["duplicates"]["rows"], keys.len() - unique.len());

    // Drift: train and test are one population split at random, so nothing
    // drifts, and every column (but split) was compared.
    let drift = s["drift"].as_array().unwrap();
    assert_eq!(drift.len(), 15, "{drift:?}");
    let drifted: Vec<&str> = drift
        .iter()
        .filter(|d| d["drifted"] == true)
        .map(|d| d["column"].as_str().unwrap())
        .collect();
    assert!(drifted.is_empty(), "{drifted:?}");
    let age = drift.iter().find(|d| d["column"] == "age").unwrap();
    assert!(age["ks_statistic"].as_f64().unwrap() < 0.02);
    assert!(age["psi"].as_f64().unwrap() < 0.01);
}
