//! Whole pipelines from YAML through the `gigo` binary: the quickstart,
//! caching, resuming after kill -9, determinism, every invalid config with its
//! message and location, the custom stage example and the exec stage.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

fn quickstart() -> String {
    root()
        .join("examples/quickstart.yaml")
        .display()
        .to_string()
}

#[test]
fn quickstart_runs_then_is_all_cache_hits() {
    let dir = tempfile::tempdir().unwrap();
    let first = gigo(dir.path(), &["run", &quickstart(), "--run-id", "one"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let rec = run_record(dir.path(), "one");
    assert_eq!(rec["status"], "succeeded");
    assert!(
        statuses(&rec).iter().all(|(_, s)| s == "ran"),
        "{:?}",
        statuses(&rec)
    );
    // Row accounting is recorded and balanced for every stage with main outputs.
    let split = &rec["stages"]["split"]["rows"];
    assert_eq!(split["checked"], true);
    assert_eq!(split["in"], split["out"]);
    assert_eq!(
        rec["stages"]["data"]["rows"]["created"][0]["reason"],
        "generated"
    );
    // Outputs are Parquet files in the run directory.
    assert!(dir.path().join("runs/one/split/train.parquet").is_file());
    assert!(
        dir.path().join("runs/one/train.parquet").is_file(),
        "export's file"
    );

    let second = gigo(dir.path(), &["run", &quickstart(), "--run-id", "two"]);
    assert!(second.status.success(), "{}", stderr(&second));
    let rec = run_record(dir.path(), "two");
    assert!(
        statuses(&rec).iter().all(|(_, s)| s == "cached"),
        "{:?}",
        statuses(&rec)
    );
    assert!(
        dir.path().join("runs/two/train.parquet").is_file(),
        "export republished on a hit"
    );
    let stages = statuses(&rec).len();
    assert!(
        stdout(&second).contains(&format!("0 ran, {stages} cached")),
        "{}",
        stdout(&second)
    );
}

#[test]
fn an_edited_parameter_reruns_only_what_depends_on_it() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        gigo(dir.path(), &["run", &quickstart(), "--run-id", "a"])
            .status
            .success()
    );
    let o = gigo(
        dir.path(),
        &[
            "run",
            &quickstart(),
            "--run-id",
            "b",
            "--set",
            "split.test_fraction=0.3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = run_record(dir.path(), "b");
    let s: std::collections::BTreeMap<_, _> = statuses(&rec).into_iter().collect();
    assert_eq!(s["data"], "cached");
    assert_eq!(s["split"], "ran");
    assert_eq!(s["export_train"], "ran");
    assert_eq!(
        rec["config"]["stages"]["split"]["params"]["test_fraction"],
        0.3
    );
    // --force re-runs everything.
    let o = gigo(
        dir.path(),
        &["run", &quickstart(), "--run-id", "c", "--force"],
    );
    assert!(o.status.success());
    assert!(
        statuses(&run_record(dir.path(), "c"))
            .iter()
            .all(|(_, s)| s == "ran")
    );
}

/// Also whatever the batch size: the second run reads every stored table in
/// batches of 7 rows (profile streams them; the other stages get them whole,
/// in 7-row batches).
#[test]
fn same_seed_same_bytes_whatever_the_job_count_threads_and_batch_size() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let o = gigo_env(
        a.path(),
        &["run", &quickstart(), "--run-id", "r", "--jobs", "1"],
        &[("RAYON_NUM_THREADS", "1")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = gigo_env(
        b.path(),
        &[
            "run",
            &quickstart(),
            "--run-id",
            "r",
            "--jobs",
            "4",
            "--batch-rows",
            "7",
        ],
        &[("RAYON_NUM_THREADS", "2")],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let fa = files_under(&a.path().join("runs/r"), "parquet");
    let fb = files_under(&b.path().join("runs/r"), "parquet");
    let names: Vec<&str> = fa.iter().map(|f| f.0.as_str()).collect();
    for expected in ["data/table.parquet", "split/train.parquet", "train.parquet"] {
        assert!(names.contains(&expected), "{names:?}");
    }
    assert_eq!(fa, fb);
    // The reports too (no timestamps in them).
    assert_eq!(
        files_under(&a.path().join("runs/r"), "md"),
        files_under(&b.path().join("runs/r"), "md")
    );
    let ja = std::fs::read(a.path().join("runs/r/report.json")).unwrap();
    let jb = std::fs::read(b.path().join("runs/r/report.json")).unwrap();
    assert_eq!(ja, jb);
    // Another seed gives other data.
    let c = tempfile::tempdir().unwrap();
    assert!(
        gigo(
            c.path(),
            &["run", &quickstart(), "--run-id", "r", "--set", "seed=7"]
        )
        .status
        .success()
    );
    assert_ne!(files_under(&c.path().join("runs/r"), "parquet"), fa);
}

fn exec_pipeline(dir: &std::path::Path, mode: &str, timeout: f64) -> String {
    let yaml = format!(
        "name: exec-test\nseed: 3\nstages:\n  data:\n    type: generate\n    rows: 300\n  child:\n    type: exec\n    inputs: data\n    command: [\"{}\", \"{mode}\"]\n    timeout_secs: {timeout}\n  split:\n    type: split\n    inputs: child\n",
        child_bin().display()
    );
    write(dir, "exec.yaml", &yaml)
}

#[test]
fn exec_stage_runs_a_child_program() {
    let dir = tempfile::tempdir().unwrap();
    let p = exec_pipeline(dir.path(), "add-column", 60.0);
    let o = gigo(dir.path(), &["run", &p, "--run-id", "x"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = run_record(dir.path(), "x");
    assert_eq!(rec["stages"]["child"]["outputs"]["table"]["rows"], 300);
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/x/child/summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["child"]["added"], "x_sum");
    assert_eq!(summary["protocol_version"], 1);
    // The label kept its role through the child (split stratifies on it).
    assert_eq!(rec["stages"]["split"]["status"], "ran");
}

#[test]
fn exec_stage_failures_are_clear_and_stop_dependants() {
    for (mode, timeout, expected) in [
        ("crash", 60.0, "exited with status 3"),
        (
            "garbage",
            60.0,
            "wrote garbage to its output `table`: not an Arrow IPC file",
        ),
        ("sleep", 0.5, "timed out after 0.5 s and was killed"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let p = exec_pipeline(dir.path(), mode, timeout);
        let o = gigo(dir.path(), &["run", &p, "--run-id", "x"]);
        assert_eq!(o.status.code(), Some(1), "{mode}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("error in stage `child`"), "{mode}: {err}");
        assert!(err.contains(expected), "{mode}: {err}");
        if mode == "crash" {
            assert!(
                err.contains("something went badly wrong"),
                "stderr tail: {err}"
            );
        }
        let rec = run_record(dir.path(), "x");
        assert_eq!(rec["status"], "failed");
        assert_eq!(rec["stages"]["data"]["status"], "ran");
        assert_eq!(rec["stages"]["child"]["status"], "failed");
        assert_eq!(rec["stages"]["split"]["status"], "skipped");
        assert!(
            rec["stages"]["split"]["error"]
                .as_str()
                .unwrap()
                .contains("upstream stage `child`")
        );
    }
}

#[test]
fn a_run_killed_mid_stage_resumes_to_identical_bytes() {
    let killed = tempfile::tempdir().unwrap();
    let pause = killed.path().join("paused");
    let p = exec_pipeline(killed.path(), "add-column", 120.0);
    let mut child = Command::new(gigo_bin())
        .args(["run", &p, "--run-id", "k"])
        .current_dir(killed.path())
        .env("GIGO_TEST_PAUSE_FILE", &pause)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !pause.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the exec child never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let rec = run_record(killed.path(), "k");
    assert_eq!(
        rec["status"], "running",
        "the record shows the interrupted run"
    );

    // Resume: the finished stage comes from the cache, the killed one re-runs.
    let o = gigo(killed.path(), &["run", &p, "--run-id", "resumed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = run_record(killed.path(), "resumed");
    assert_eq!(rec["stages"]["data"]["status"], "cached");
    assert_eq!(rec["stages"]["child"]["status"], "ran");

    let fresh = tempfile::tempdir().unwrap();
    let p2 = exec_pipeline(fresh.path(), "add-column", 120.0);
    let o = gigo(fresh.path(), &["run", &p2, "--run-id", "resumed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a = files_under(&killed.path().join("runs/resumed"), "parquet");
    let b = files_under(&fresh.path().join("runs/resumed"), "parquet");
    assert_eq!(a.len(), 5);
    assert_eq!(
        a, b,
        "a resumed run writes the same bytes as an uninterrupted one"
    );
}

/// The bytes a run leaves that must not depend on interruptions: every
/// table, the reports (run.json holds times and is left out).
fn run_outputs(run_dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = files_under(run_dir, "parquet");
    out.extend(files_under(run_dir, "md"));
    out.extend(files_under(run_dir, "html"));
    out.push((
        "report.json".into(),
        std::fs::read(run_dir.join("report.json")).unwrap(),
    ));
    out
}

#[test]
fn the_quickstart_killed_at_ten_random_moments_resumes_to_identical_bytes() {
    use rand::{Rng, SeedableRng};
    let reference = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let o = gigo(reference.path(), &["run", &quickstart(), "--run-id", "r"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = start.elapsed();
    let expected = run_outputs(&reference.path().join("runs/r"));
    assert!(expected.len() > 10, "{}", expected.len());

    // One cache through all ten: every killed run is forced (each stage
    // re-runs and replaces its entry), so a kill can land in any stage, in
    // any step of writing an entry; the next run must finish and agree.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    for i in 0..10 {
        let killed = format!("k{i}");
        let mut child = Command::new(gigo_bin())
            .args(["run", &quickstart(), "--run-id", &killed, "--force"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(rng.random_range(0.0..1.0)));
        let _ = child.kill(); // SIGKILL, unless it already finished
        child.wait().unwrap();
        let resumed = format!("resumed{i}");
        let o = gigo(dir.path(), &["run", &quickstart(), "--run-id", &resumed]);
        assert!(o.status.success(), "after kill {i}: {}", stderr(&o));
        let got = run_outputs(&dir.path().join("runs").join(&resumed));
        let differ: Vec<&str> = expected
            .iter()
            .filter(|e| !got.contains(e))
            .map(|e| e.0.as_str())
            .collect();
        assert!(
            got.len() == expected.len() && differ.is_empty(),
            "after kill {i}: {differ:?} differ ({} files, {} expected)",
            got.len(),
            expected.len()
        );
    }
}

#[test]
fn custom_stage_example_runs() {
    // Cargo builds examples for `cargo test`; they sit beside the test binaries.
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("custom_stage");
    assert!(bin.is_file(), "example not built at {}", bin.display());
    let dir = tempfile::tempdir().unwrap();
    let yaml = root().join("examples/custom_stage.yaml");
    let o = Command::new(&bin)
        .args(["run", yaml.to_str().unwrap(), "--run-id", "c"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/c/clip/summary.json")).unwrap(),
    )
    .unwrap();
    assert!(
        summary["values_clipped"].as_u64().unwrap() > 0,
        "outliers were clipped: {summary}"
    );
    // The custom stage's params are checked like a built-in's.
    let bad = write(
        dir.path(),
        "bad.yaml",
        "name: b\nstages:\n  data: {type: generate}\n  clip: {type: clip, inputs: data, min: 3, max: 1}\n",
    );
    let o = Command::new(&bin)
        .args(["validate", &bad])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("bad.yaml:4:36: error in stage `clip`: min 3 is above max 1"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn outputs_are_read_back_by_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        gigo(dir.path(), &["run", &quickstart(), "--run-id", "p"])
            .status
            .success()
    );
    let file = dir.path().join("runs/p/data/table.parquet");
    let script = "import sys, pyarrow.parquet as pq\n\
t = pq.read_table(sys.argv[1])\n\
roles = {f.name: (f.metadata or {}).get(b'gigo:role', b'').decode() for f in t.schema}\n\
print(t.num_rows, roles['label'], roles['x0'], roles['is_flipped'], t.column('label').type)\n";
    let o = Command::new("python3")
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "pyarrow could not read the output (is pyarrow installed? `.ci/run` installs it): {}",
        stderr(&o)
    );
    let rec = run_record(dir.path(), "p");
    let rows = rec["stages"]["data"]["outputs"]["table"]["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(
        stdout(&o).trim(),
        format!("{rows} label feature truth int64")
    );
}
