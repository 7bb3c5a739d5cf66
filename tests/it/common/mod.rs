//! Helpers for the integration tests: run the `gigo` binary in a scratch
//! directory and read what it wrote.
#![allow(dead_code)]

pub mod browser;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The project root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The `gigo` binary built for these tests.
pub fn gigo_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gigo"))
}

/// The exec child program built for these tests.
pub fn child_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gigo-exec-example"))
}

/// Runs `gigo args...` in `dir` (runs/ and .gigo/ land there).
pub fn gigo(dir: &Path, args: &[&str]) -> Output {
    gigo_env(dir, args, &[])
}

/// Runs `gigo` with extra environment variables.
pub fn gigo_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(gigo_bin());
    c.args(args).current_dir(dir).env_remove("NO_COLOR");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("gigo runs")
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `runs/<id>/run.json` under `dir`.
pub fn run_record(dir: &Path, id: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(dir.join("runs").join(id).join("run.json")).expect("run.json");
    serde_json::from_str(&text).expect("run.json is JSON")
}

/// Status of every stage in a run record, as (id, status) pairs.
pub fn statuses(record: &serde_json::Value) -> Vec<(String, String)> {
    record["stages"]
        .as_object()
        .expect("stages")
        .iter()
        .map(|(k, v)| (k.clone(), v["status"].as_str().unwrap_or("").to_string()))
        .collect()
}

/// Writes `text` to `dir/name` and returns the path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write file");
    p.display().to_string()
}

/// Every file under `dir` with its bytes, sorted by relative path.
pub fn files_under(dir: &Path, ext: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().and_then(|x| x.to_str()) == Some(ext) {
                let rel = p
                    .strip_prefix(dir)
                    .expect("under dir")
                    .display()
                    .to_string();
                out.push((rel, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// A Parquet file as one batch.
pub fn read_parquet(path: &Path) -> RecordBatch {
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()
}

/// The values of primitive column `name` of `batch` (panics when it is
/// missing or has another type).
pub fn column_values<T: arrow::datatypes::ArrowPrimitiveType>(
    batch: &RecordBatch,
    name: &str,
) -> Vec<T::Native> {
    use arrow::array::AsArray;
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column `{name}`"))
        .as_primitive::<T>()
        .values()
        .to_vec()
}

/// The report section of stage `stage` in `run_dir/report.json`.
pub fn report_section(run_dir: &Path, stage: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("report.json")).expect("report.json");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    report["sections"]
        .as_array()
        .expect("sections")
        .iter()
        .find(|s| s["stage"] == stage)
        .unwrap_or_else(|| panic!("no section for {stage}"))
        .clone()
}

/// Runs the pipeline file `file` (relative to the project root) as run
/// `run_id` in `dir`, asserts that it succeeded, and returns its run directory.
pub fn run_example(dir: &Path, file: &str, run_id: &str) -> PathBuf {
    let path = root().join(file);
    let o = gigo(dir, &["run", path.to_str().unwrap(), "--run-id", run_id]);
    assert_eq!(o.status.code(), Some(0), "{file}: {}", stderr(&o));
    dir.join("runs").join(run_id)
}

/// The `summary.json` stage `stage` wrote in run directory `run_dir`.
pub fn run_summary(run_dir: &Path, stage: &str) -> serde_json::Value {
    let path = run_dir.join(stage).join("summary.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}
