//! Benchmark: every `rebalance` sampler beside imbalanced-learn on the same
//! tables, in one run: mammography (11,183 x 6, from ../shared), and a
//! 100k x 20 and a 1M x 50 table generated on the fly (binary, 10% minority,
//! two overlapping Gaussian clouds; the 100k table's last 4 features are
//! small integer codes, which SMOTE-NC treats as categorical on both sides).
//! Prints figures; asserts nothing about time.
//!
//! ```text
//! cargo bench --bench rebalance
//! GIGO_BENCH_TABLES=mammography,100k cargo bench --bench rebalance   # skip 1M x 50
//! GIGO_BENCH_PEER=0 cargo bench --bench rebalance                   # gigo only
//! GIGO_BENCH_METHODS=smote,tomek GIGO_BENCH_REPEAT=5 cargo bench --bench rebalance
//! ```
//!
//! The peer is imbalanced-learn 0.14.2 in the pinned environment
//! (`../shared/bench/peers/setup.sh` prints its python; `GIGO_PEERS_PYTHON`
//! overrides), run as a child process on the same table written to a
//! temporary Parquet file. Its time covers `fit_resample` alone; gigo's
//! covers the stage's `run` (neighbours, decisions, building the output
//! Arrow table). Both take the best of the same number of repeats: 3 on
//! mammography and 100k x 20 (a single run of either tool varies by up to
//! 1.5x on a shared machine), 1 on 1M x 50 and for methods whose first gigo
//! run takes over a second (`GIGO_BENCH_REPEAT` sets it for all).
//!
//! `random_under` reports its removed rows by position (its default
//! `removed_rows: index`); `random_under_full` copies them whole to the
//! `removed` port (`removed_rows: full`). The peer runs the same
//! RandomUnderSampler for both, which returns the kept rows only.
//!
//! Peak memory: for gigo ("gigo MB"), the process's high-water mark (VmHWM)
//! over the stage run, reset just before it (`/proc/self/clear_refs`, after
//! `malloc_trim`), so it counts the input table already in memory plus
//! everything the stage allocates; "+run MB" is that peak minus the RSS
//! just before the run (what the stage itself added). For the peer, its
//! `ru_maxrss` (which also counts pyarrow's copy of the table and the numpy
//! matrix). "input matrix" is rows x features x 8 bytes; "gigo/in" is gigo
//! MB over it. That peak also counts the process's own pages (code, thread
//! stacks, the smaller tables: the RSS before the run, after the trim, less
//! the table; 15-20 MB at 1M x 50), so "(tbl+run)/in" gives the input
//! table's own Arrow buffers plus "+run MB", over the input matrix: the
//! memory a run holding only its input needs.
//!
//! Methods whose exact neighbour search over all rows is quadratic (Tomek,
//! ENN, NearMiss, Borderline-SMOTE, ADASYN, the combinations) are skipped at
//! 1M x 50; NearMiss-2's peer is skipped at 100k, where imbalanced-learn
//! asks scikit-learn for every majority row's distances to all 10k minority
//! rows (a 90k x 10k matrix of distances and one of indices: 14 GB).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gigo::{Artifact, Inputs, NoProgress, Role, Stage, StageContext, Table};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::{Value, json};

/// The peer: imbalanced-learn on a Parquet table (every numeric column but
/// `label` is a feature, as ../shared/bench/peers/smote.py). One JSON line.
const PEER: &str = r#"
import json, resource, sys, time
import numpy as np, pyarrow as pa, pyarrow.parquet as pq
from imblearn.over_sampling import SMOTE, BorderlineSMOTE, ADASYN, SMOTENC, RandomOverSampler
from imblearn.under_sampling import TomekLinks, EditedNearestNeighbours, NearMiss, RandomUnderSampler
from imblearn.combine import SMOTETomek, SMOTEENN
src, method, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
cats = [c for c in sys.argv[4].split(",") if c] if len(sys.argv) > 4 else []
t = pq.read_table(src)
feats = [c for c in t.column_names if c != "label" and (pa.types.is_integer(t.schema.field(c).type) or pa.types.is_floating(t.schema.field(c).type))]
X = np.nan_to_num(np.stack([t.column(c).to_numpy(zero_copy_only=False).astype(np.float64) for c in feats], axis=1))
y = t.column("label").to_numpy()
del t
make = {
    "random_over": lambda: RandomOverSampler(random_state=0),
    "smote": lambda: SMOTE(random_state=0),
    "borderline_smote_1": lambda: BorderlineSMOTE(kind="borderline-1", random_state=0),
    "borderline_smote_2": lambda: BorderlineSMOTE(kind="borderline-2", random_state=0),
    "adasyn": lambda: ADASYN(random_state=0),
    "smote_nc": lambda: SMOTENC(categorical_features=[feats.index(c) for c in cats], random_state=0),
    "random_under": lambda: RandomUnderSampler(random_state=0),
    "random_under_full": lambda: RandomUnderSampler(random_state=0),
    "tomek": lambda: TomekLinks(),
    "enn": lambda: EditedNearestNeighbours(),
    "near_miss_1": lambda: NearMiss(version=1),
    "near_miss_2": lambda: NearMiss(version=2),
    "near_miss_3": lambda: NearMiss(version=3),
    "smote_tomek": lambda: SMOTETomek(random_state=0),
    "smote_enn": lambda: SMOTEENN(random_state=0),
}[method]
times = []
for _ in range(repeat):
    s = make(); t0 = time.perf_counter(); Xr, yr = s.fit_resample(X, y); times.append(time.perf_counter() - t0)
    del Xr
print(json.dumps({"rows_out": int(len(yr)), "seconds": min(times),
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"#;

/// A table to benchmark on.
struct Bench {
    name: String,
    table: Table,
    parquet: PathBuf,
    features: usize,
    /// Columns SMOTE-NC treats as categorical (empty: not run).
    categorical: Vec<String>,
    repeat: usize,
    /// Methods skipped on this table, with why.
    skip: Vec<(&'static str, &'static str)>,
    peer_skip: Vec<(&'static str, &'static str)>,
}

fn status_kb(key: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0), after handing freed heap
/// memory back to the OS so that the baseline is the live data (the table
/// generators and the Parquet writer leave freed memory with the allocator).
fn reset_peak() {
    gigo::memory::release_free_memory();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Tags `label` as the label and every other numeric column as a feature.
fn with_roles(batch: RecordBatch) -> Table {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let role = if f.name() == "label" {
                Role::Label
            } else if f.data_type().is_numeric() {
                Role::Feature
            } else {
                Role::Other
            };
            gigo::field_with_role(f.as_ref().clone(), role)
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())
        .expect("same columns");
    Table::from_batch(batch)
}

fn read_parquet(path: &Path) -> RecordBatch {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.map(|b| b.expect("batch")).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

/// `rows` x `features`: class 1 (10%) is shifted by 1.0 in the first 5
/// features; the last `codes` features are integer codes 0..6 (class 1
/// leaning to the high codes).
fn generate(rows: usize, features: usize, codes: usize, seed: u64) -> RecordBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let label: Vec<i64> = (0..rows)
        .map(|_| i64::from(rng.random::<f64>() < 0.1))
        .collect();
    let mut fields = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for j in 0..features {
        let mut rng = ChaCha8Rng::seed_from_u64(seed * 1000 + j as u64 + 1);
        if j >= features - codes {
            let v: Vec<i64> = label
                .iter()
                .map(|&l| (rng.random_range(0..6) + 2 * l).min(5))
                .collect();
            fields.push(Field::new(format!("c{j}"), DataType::Int64, false));
            cols.push(Arc::new(Int64Array::from(v)));
        } else {
            let shift = if j < 5 { 1.0 } else { 0.0 };
            let v: Vec<f64> = label
                .iter()
                .map(|&l| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    z + shift * l as f64
                })
                .collect();
            fields.push(Field::new(format!("f{j}"), DataType::Float64, false));
            cols.push(Arc::new(Float64Array::from(v)));
        }
    }
    fields.push(Field::new("label", DataType::Int64, false));
    cols.push(Arc::new(Int64Array::from(label)));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch")
}

fn write_parquet(batch: &RecordBatch, path: &Path) {
    let file = File::create(path).expect("create parquet");
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(65_536))
        .build();
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).expect("writer");
    let step = 65_536;
    let mut start = 0;
    while start < batch.num_rows() {
        let len = step.min(batch.num_rows() - start);
        w.write(&batch.slice(start, len)).expect("write");
        start += len;
    }
    w.close().expect("close");
}

fn peer_python() -> Option<String> {
    if std::env::var("GIGO_BENCH_PEER").is_ok_and(|v| v == "0") {
        return None;
    }
    if let Ok(p) = std::env::var("GIGO_PEERS_PYTHON") {
        return Some(p);
    }
    let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bench/peers/setup.sh");
    let out = Command::new(setup).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run_peer(py: &str, b: &Bench, method: &str, repeat: usize) -> Result<Value, String> {
    let out = Command::new(py)
        .args(["-c", PEER])
        .arg(&b.parquet)
        .arg(method)
        .arg(repeat.to_string())
        .arg(b.categorical.join(","))
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(err.lines().last().unwrap_or("failed").to_string());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// gigo's params for a bench method name.
fn params(method: &str, b: &Bench) -> Value {
    match method {
        "borderline_smote_1" => json!({"method": "borderline_smote", "borderline_kind": 1}),
        "borderline_smote_2" => json!({"method": "borderline_smote", "borderline_kind": 2}),
        "near_miss_1" => json!({"method": "near_miss", "version": 1}),
        "near_miss_2" => json!({"method": "near_miss", "version": 2}),
        "near_miss_3" => json!({"method": "near_miss", "version": 3}),
        "smote_nc" => json!({"method": "smote_nc", "categorical": b.categorical}),
        "random_under_full" => json!({"method": "random_under", "removed_rows": "full"}),
        m => json!({ "method": m }),
    }
}

/// (best seconds, rows out, peak MB, peak MB above the RSS before the run,
/// runs made) of the gigo stage.
fn run_gigo(b: &Bench, method: &str) -> Result<(f64, usize, f64, f64, usize), String> {
    let registry = gigo::builtin_registry();
    let stage: Box<dyn Stage> = registry
        .get("rebalance")
        .ok_or("no rebalance stage")?
        .build(&params(method, b))
        .map_err(|e| format!("{e:?}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ctx = StageContext::new(
        "rebalance",
        0,
        dir.path().join("scratch"),
        dir.path().to_path_buf(),
        dir.path().join("run"),
        Arc::new(NoProgress),
    );
    let mut inputs = Inputs::default();
    inputs.push("table", Artifact::Table(Arc::new(b.table.clone())));
    let mut best = f64::INFINITY;
    let mut rows = 0;
    let mut peak = 0f64;
    let mut base = 0f64;
    let given = std::env::var("GIGO_BENCH_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut repeat = given.unwrap_or(b.repeat);
    let mut runs = 0;
    while runs < repeat {
        runs += 1;
        reset_peak();
        base = status_kb("VmRSS:") / 1024.0;
        let t0 = Instant::now();
        let out = stage.run(&inputs, &ctx).map_err(|e| e.to_string())?;
        best = best.min(t0.elapsed().as_secs_f64());
        peak = peak.max(status_kb("VmHWM:") / 1024.0);
        rows = out
            .ports
            .get("table")
            .and_then(Artifact::num_rows)
            .unwrap_or(0);
        drop(out);
        if given.is_none() && best > SLOW_RUN_S {
            repeat = 1;
        }
    }
    Ok((best, rows, peak, peak - base, runs))
}

/// A gigo run longer than this is not repeated (nor is the peer's, which
/// then takes 5-90 s a run): the repeats are for the short, noisy runs.
const SLOW_RUN_S: f64 = 1.0;

const METHODS: [&str; 15] = [
    "random_over",
    "smote",
    "borderline_smote_1",
    "borderline_smote_2",
    "adasyn",
    "smote_nc",
    "random_under",
    "random_under_full",
    "tomek",
    "enn",
    "near_miss_1",
    "near_miss_2",
    "near_miss_3",
    "smote_tomek",
    "smote_enn",
];

fn main() {
    let wanted: Vec<String> = std::env::var("GIGO_BENCH_TABLES")
        .unwrap_or_else(|_| "mammography,100k,1m".into())
        .split(',')
        .map(str::to_string)
        .collect();
    // Each table in a fresh process of its own, so that its peak memory
    // counts neither the earlier tables' runs nor what they left in the
    // allocator (at 1M x 50 the baseline was 19 MB higher after them).
    if wanted.len() > 1 {
        let me = std::env::current_exe().expect("the bench's own path");
        for name in &wanted {
            let status = Command::new(&me)
                .args(std::env::args_os().skip(1))
                .env("GIGO_BENCH_TABLES", name)
                .status()
                .expect("run the bench for one table");
            if !status.success() {
                eprintln!("table `{name}`: the bench failed ({status})");
                std::process::exit(1);
            }
        }
        return;
    }
    let only: Option<Vec<String>> = std::env::var("GIGO_BENCH_METHODS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect());
    let py = peer_python();
    let tmp = tempfile::tempdir().expect("temp dir");
    println!(
        "rebalance bench: {} threads, peer: {}",
        rayon::current_num_threads(),
        py.as_deref().unwrap_or("none")
    );
    let quadratic: Vec<(&str, &str)> = [
        "borderline_smote_1",
        "borderline_smote_2",
        "adasyn",
        "smote_nc",
        "tomek",
        "enn",
        "near_miss_1",
        "near_miss_2",
        "near_miss_3",
        "smote_tomek",
        "smote_enn",
    ]
    .map(|m| (m, "quadratic neighbour search over all rows"))
    .to_vec();
    for name in &wanted {
        let b = match name.as_str() {
            "mammography" => {
                let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../shared/datasets/imbalanced/mammography.parquet");
                let batch = read_parquet(&src);
                Bench {
                    name: "mammography".into(),
                    features: batch.num_columns() - 1,
                    table: with_roles(batch),
                    parquet: src,
                    categorical: vec![],
                    repeat: 3,
                    skip: vec![("smote_nc", "no categorical features")],
                    peer_skip: vec![],
                }
            }
            "100k" => {
                let batch = generate(100_000, 20, 4, 1);
                let parquet = tmp.path().join("gen_100k.parquet");
                write_parquet(&batch, &parquet);
                Bench {
                    name: "100k x 20".into(),
                    features: 20,
                    table: with_roles(batch),
                    parquet,
                    categorical: (16..20).map(|j| format!("c{j}")).collect(),
                    repeat: 3,
                    skip: vec![],
                    peer_skip: vec![("near_miss_2", "needs a 90k x 10k distance matrix (14 GB)")],
                }
            }
            "1m" => {
                let batch = generate(1_000_000, 50, 0, 2);
                let parquet = tmp.path().join("gen_1m.parquet");
                write_parquet(&batch, &parquet);
                Bench {
                    name: "1M x 50".into(),
                    features: 50,
                    table: with_roles(batch),
                    parquet,
                    categorical: vec![],
                    repeat: 1,
                    skip: quadratic.clone(),
                    peer_skip: vec![],
                }
            }
            other => {
                eprintln!("unknown table `{other}` (mammography, 100k, 1m)");
                continue;
            }
        };
        // the baseline each run starts from (see `reset_peak`)
        reset_peak();
        let n = b.table.num_rows();
        let input_mb = (n * b.features * 8) as f64 / 1_048_576.0;
        let table_mb = b
            .table
            .batches()
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum::<usize>() as f64
            / 1_048_576.0;
        println!(
            "\n== {} ({} rows x {} features; input matrix {:.0} MB; table {:.0} MB; RSS before {:.0} MB)",
            b.name,
            n,
            b.features,
            input_mb,
            table_mb,
            status_kb("VmRSS:") / 1024.0
        );
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>10} {:>8} {:>10} {:>8} {:>10} {:>8} {:>13}",
            "method",
            "gigo out",
            "peer out",
            "gigo s",
            "imblearn s",
            "ratio",
            "gigo MB",
            "+run MB",
            "peer MB",
            "gigo/in",
            "(tbl+run)/in"
        );
        for method in METHODS {
            if only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|m| m == method))
            {
                continue;
            }
            if let Some((_, why)) = b.skip.iter().find(|(m, _)| *m == method) {
                println!("{method:<20} skipped: {why}");
                continue;
            }
            let g = run_gigo(&b, method);
            let peer_skip = b.peer_skip.iter().find(|(m, _)| *m == method);
            let p = match (&py, peer_skip) {
                (Some(_), Some((_, why))) => Err(format!("peer skipped: {why}")),
                (Some(py), None) => {
                    let runs = g.as_ref().map_or(b.repeat, |g| g.4);
                    run_peer(py, &b, method, runs)
                }
                (None, _) => Err("no peer".into()),
            };
            let line = match (&g, &p) {
                (Ok((gs, grows, gmb, gadd, _)), Ok(pv)) => {
                    let ps = pv["seconds"].as_f64().unwrap_or(f64::NAN);
                    format!(
                        "{method:<20} {grows:>9} {:>9} {gs:>9.3} {ps:>10.3} {:>7.3}x {gmb:>10.0} {gadd:>8.0} {:>10.0} {:>7.2}x {:>12.2}x",
                        pv["rows_out"],
                        gs / ps,
                        pv["max_rss_mb"].as_f64().unwrap_or(f64::NAN),
                        gmb / input_mb,
                        (table_mb + gadd) / input_mb
                    )
                }
                (Ok((gs, grows, gmb, gadd, _)), Err(e)) => format!(
                    "{method:<20} {grows:>9} {:>9} {gs:>9.3} {:>10} {:>8} {gmb:>10.0} {gadd:>8.0} {:>10} {:>7.2}x {:>12.2}x   ({e})",
                    "-",
                    "-",
                    "-",
                    "-",
                    gmb / input_mb,
                    (table_mb + gadd) / input_mb
                ),
                (Err(e), _) => format!("{method:<20} gigo failed: {e}"),
            };
            println!("{line}");
        }
    }
    println!(
        "\nratio = gigo seconds / imbalanced-learn seconds (goal for SMOTE at 100k x 20: <= 0.25x);"
    );
    println!(
        "gigo/in = gigo's peak RSS / input matrix (goal at 1M x 50: <= 2x); (tbl+run)/in = \
         (input table's Arrow buffers + what the run added) / input matrix."
    );
}
