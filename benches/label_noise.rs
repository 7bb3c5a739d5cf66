//! Benchmark: the `label_noise` stage beside cleanlab 2.9 + scikit-learn on
//! the same noisy table, in one run. Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench --bench label_noise
//! GIGO_BENCH_PEER=0 cargo bench --bench label_noise      # gigo only (needs GIGO_BENCH_NOISY)
//! GIGO_BENCH_REPEAT=5 cargo bench --bench label_noise    # gigo repeats (median shown)
//! GIGO_BENCH_CASES=boosting cargo bench --bench label_noise   # only cases whose name has it
//! ```
//!
//! Data: Adult one-hot (`../shared/datasets/adult/adult_onehot.parquet`,
//! 48,842 rows, 113 features, 2 classes) with 20% symmetric label noise
//! made by `../shared/bench/peers/make_noisy.py` (seed 0, `split` dropped):
//! both tools read the very same file and are scored against its
//! `is_flipped` column. (`GIGO_BENCH_NOISY=path` reuses an existing file.)
//!
//! The peer is `../shared/bench/peers/label_noise.py` in the pinned Python
//! environment (`../shared/bench/peers/setup.sh` prints its python;
//! `GIGO_PEERS_PYTHON` overrides): 5-fold `cross_val_predict` then
//! `cleanlab.filter.find_label_issues`; its time is its `seconds_total`
//! (reading the Parquet file, cross-validation, finding issues). gigo's time
//! covers the same path: reading the Parquet file into a table, then the
//! stage's `run` (encoding, 5-fold cross-validation, confident learning,
//! building the output table and the summary).
//!
//! The issue's goals, for reference: a linear model with F1 >= 0.696 in
//! <= 0.2x cleanlab + logistic regression's time (3.2 s when the goal was
//! set), and a stronger model with F1 >= 0.75 in <= 0.1x cleanlab +
//! histogram gradient boosting's time (93-136 s when the goal was set).
//! Ratios below are against the peer's time measured in this run.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::{Field, Schema};
use gigo::{Artifact, Inputs, NoProgress, Role, Stage, StageContext, Table, field_with_role};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

/// One configuration of each tool, compared row by row.
struct Case {
    name: &'static str,
    gigo: Value,
    peer: Option<(&'static str, &'static str)>,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "linear: logistic regression",
            gigo: json!({"model": "logistic_regression"}),
            peer: Some(("logreg", "prune_by_noise_rate")),
        },
        Case {
            name: "linear: logistic regression + 32 quantile bins per numeric feature",
            gigo: json!({"model": "logistic_regression", "model_params": {"numeric_bins": 32}}),
            peer: Some(("logreg", "prune_by_noise_rate")),
        },
        Case {
            name: "strong: gradient boosting",
            gigo: json!({"model": "gradient_boosting"}),
            peer: Some(("hgb", "prune_by_noise_rate")),
        },
        Case {
            name: "strong: random forest (100 trees; no peer row: the peer script has none)",
            gigo: json!({"model": "random_forest"}),
            peer: None,
        },
        Case {
            name: "neural: mlp, 2 x 128 relu, 4 epochs, batches of 256 (no peer row)",
            gigo: json!({"model": "neural_network", "model_params": {"epochs": 4, "batch_size": 256}}),
            peer: None,
        },
        Case {
            name: "strong: gradient boosting, filter_by low_self_confidence",
            gigo: json!({"model": "gradient_boosting", "filter_by": "low_self_confidence"}),
            peer: Some(("hgb", "low_self_confidence")),
        },
    ]
}

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(rel)
}

fn peer_python() -> Option<String> {
    if let Ok(p) = std::env::var("GIGO_PEERS_PYTHON") {
        return Some(p);
    }
    let out = Command::new(shared("bench/peers/setup.sh")).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The noisy table: `GIGO_BENCH_NOISY`, or made now by make_noisy.py.
fn noisy_file(py: Option<&str>, dir: &Path) -> Result<PathBuf, String> {
    if let Ok(p) = std::env::var("GIGO_BENCH_NOISY") {
        return Ok(PathBuf::from(p));
    }
    let py = py.ok_or("no peer python to run make_noisy.py (set GIGO_BENCH_NOISY)")?;
    let dst = dir.join("adult_noisy.parquet");
    let out = Command::new(py)
        .arg(shared("bench/peers/make_noisy.py"))
        .arg(shared("datasets/adult/adult_onehot.parquet"))
        .arg(&dst)
        .args(["--seed", "0", "--rate", "0.2", "--drop", "split"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    println!("{}", String::from_utf8_lossy(&out.stdout).trim());
    Ok(dst)
}

/// Reads the noisy file into a table with roles: `label` is the label,
/// `is_flipped` and `label_clean` are ground truth, the rest are features.
fn read_table(path: &Path) -> Table {
    let file = File::open(path).expect("noisy parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    let schema = batches[0].schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let role = match f.name().as_str() {
                "label" => Role::Label,
                "is_flipped" | "label_clean" => Role::Truth,
                _ => Role::Feature,
            };
            field_with_role(f.as_ref().clone(), role)
        })
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let batches = batches
        .into_iter()
        .map(|b| RecordBatch::try_new(schema.clone(), b.columns().to_vec()).expect("roles"))
        .collect();
    Table::new(schema, batches).expect("table")
}

/// (seconds, precision, recall, F1, flagged) of one gigo run, from the file.
fn run_gigo(stage: &dyn Stage, path: &Path) -> (f64, f64, f64, f64, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = StageContext::new(
        "label_noise",
        0,
        dir.path().join("scratch"),
        dir.path().to_path_buf(),
        dir.path().join("run"),
        Arc::new(NoProgress),
    );
    let t = Instant::now();
    let table = read_table(path);
    let mut inputs = Inputs::default();
    inputs.push("table", Artifact::Table(Arc::new(table)));
    let out = stage.run(&inputs, &ctx).expect("label_noise run");
    let secs = t.elapsed().as_secs_f64();
    let m = &out.summary["report"]["metrics"];
    let f = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
    (
        secs,
        f("label_issue_precision"),
        f("label_issue_recall"),
        f("label_issue_f1"),
        m["label_issues"].as_u64().unwrap_or(0),
    )
}

fn run_peer(py: &str, path: &Path, model: &str, filter: &str) -> Result<Value, String> {
    let out = Command::new(py)
        .arg(shared("bench/peers/label_noise.py"))
        .arg(path)
        .args(["--model", model, "--filter-by", filter, "--seed", "0"])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().ok_or("no output")?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes --bench; nothing else to parse
    let repeat: usize = std::env::var("GIGO_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let with_peer = !std::env::var("GIGO_BENCH_PEER").is_ok_and(|v| v == "0");
    let py = peer_python();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = match noisy_file(py.as_deref(), dir.path()) {
        Ok(p) => p,
        Err(e) => {
            println!("label_noise bench: cannot make the noisy table: {e}");
            return;
        }
    };
    println!(
        "Adult one-hot, 20% symmetric noise (seed 0), 5 folds; gigo: median of {repeat} runs; {} threads\n",
        rayon_threads()
    );
    println!(
        "{:<68} {:>9} {:>9} {:>7} {:>7} {:>7} {:>8}",
        "case", "tool", "flagged", "prec", "recall", "F1", "seconds"
    );
    let registry = gigo::builtin_registry();
    let kind = registry
        .get("label_noise")
        .expect("label_noise is registered");
    let only = std::env::var("GIGO_BENCH_CASES").ok();
    for case in cases() {
        if only
            .as_ref()
            .is_some_and(|o| !case.name.contains(o.as_str()))
        {
            continue;
        }
        let stage = kind.build(&case.gigo).expect("bench params are valid");
        let runs: Vec<(f64, f64, f64, f64, u64)> = (0..repeat)
            .map(|_| run_gigo(stage.as_ref(), &path))
            .collect();
        let secs = median(runs.iter().map(|r| r.0).collect());
        let (_, p, r, f1, flagged) = runs[0];
        println!(
            "{:<68} {:>9} {:>9} {:>7.4} {:>7.4} {:>7.4} {:>8.3}",
            case.name, "gigo", flagged, p, r, f1, secs
        );
        let (Some(py), Some((model, filter)), true) = (&py, case.peer, with_peer) else {
            continue;
        };
        match run_peer(py, &path, model, filter) {
            Ok(v) => {
                let peer_secs = v["seconds_total"].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{:<68} {:>9} {:>9} {:>7.4} {:>7.4} {:>7.4} {:>8.3}",
                    format!("  cleanlab + sklearn {model}, {filter}"),
                    "peer",
                    v["flagged"],
                    v["precision"].as_f64().unwrap_or(f64::NAN),
                    v["recall"].as_f64().unwrap_or(f64::NAN),
                    v["f1"].as_f64().unwrap_or(f64::NAN),
                    peer_secs
                );
                println!(
                    "{:<68} time ratio gigo/peer {:.3}; F1 gigo - peer {:+.4}",
                    "",
                    secs / peer_secs,
                    f1 - v["f1"].as_f64().unwrap_or(f64::NAN)
                );
            }
            Err(e) => println!("  peer {model} failed: {e}"),
        }
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
