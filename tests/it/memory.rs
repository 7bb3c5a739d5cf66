//! The memory budget through the `gigo` binary: a stage that would hold
//! more than `--memory` (or the file's `memory:`) fails before it starts,
//! naming itself, what it needs and the budget; stages that stream go on.

use crate::common::{gigo, run_record, stderr, write};

/// 250k rows x 20 features (about 45 MB in memory): `export` and `split`
/// stream it in a budget of 80 MB, `fit` (a model fitted on the table held
/// whole) would hold it twice and cannot.
const PIPELINE: &str = "name: budget
seed: 1
stages:
  data:
    type: generate
    rows: 250000
    classes: 2
    informative: 10
    redundant: 0
    noise_features: 10
  export:
    type: export
    inputs: data
    path: '{run}/data.parquet'
  split:
    type: split
    inputs: data
  clean:
    type: fit
    inputs: data
    model: logistic_regression
";

#[test]
fn a_stage_over_the_budget_fails_before_it_starts_and_streaming_stages_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "budget.yaml", PIPELINE);
    let o = gigo(
        dir.path(),
        &["run", &file, "--run-id", "r", "--memory", "80MB", "-q"],
    );
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    let record = run_record(dir.path(), "r");
    assert_eq!(record["stages"]["export"]["status"], "ran");
    assert_eq!(record["stages"]["split"]["status"], "ran");
    assert_eq!(record["stages"]["clean"]["status"], "failed");
    let error = record["stages"]["clean"]["error"].as_str().unwrap();
    for part in [
        "stage `clean` (fit) needs about",
        "it holds its inputs whole",
        "more than the run's budget of 80 MB",
        "--memory",
    ] {
        assert!(error.contains(part), "{error}");
    }
    // Nothing of the refused stage is in the run directory.
    assert!(!dir.path().join("runs/r/clean").exists());
    // The message reaches the user too.
    assert!(stderr(&o).contains("needs about"), "{}", stderr(&o));

    // `memory:` in the file sets the budget; `--memory` overrides it.
    let with_budget = PIPELINE.replace("seed: 1\n", "seed: 1\nmemory: 80MB\n");
    let file = write(dir.path(), "budget2.yaml", &with_budget);
    let o = gigo(dir.path(), &["run", &file, "--run-id", "f", "-q"]);
    assert_ne!(o.status.code(), Some(0));
    assert_eq!(
        run_record(dir.path(), "f")["stages"]["clean"]["status"],
        "failed"
    );
    let o = gigo(
        dir.path(),
        &["run", &file, "--run-id", "g", "--memory", "4GB", "-q"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_budget_that_is_not_a_size_is_refused_at_its_line_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "bad.yaml",
        &PIPELINE.replace("seed: 1\n", "seed: 1\nmemory: lots\n"),
    );
    let o = gigo(dir.path(), &["validate", &file]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("bad.yaml:3"), "{err}");
    assert!(err.contains("`memory`: `lots` is not a size"), "{err}");
    let good = write(dir.path(), "good.yaml", PIPELINE);
    let o = gigo(dir.path(), &["run", &good, "--memory", "2 parsecs"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("unknown unit"), "{}", stderr(&o));
}

/// A CSV file of about 18 MB with a contract and bad lines quarantined:
/// read whole at the default budget, in chunks at 70 MB (four times its size
/// would not fit). The kept rows and the quarantine are the
/// same bytes either way (the profile of the same bytes is the same).
#[test]
fn a_csv_file_read_in_chunks_gives_the_bytes_it_gives_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("id,x,y,note,label\n");
    for i in 0..450_000u64 {
        match i % 50_000 {
            // a ragged line and a quoted newline now and then
            7 => csv.push_str("1,2\n"),
            8 => csv.push_str(&format!("{i},{}.5,3,\"two\nlines\",a\n", i % 97)),
            // `y`: empty in the first rows, integers, one decimal at the end
            _ => {
                let y = match i {
                    0..100_000 => String::new(),
                    449_999 => "0.25".into(),
                    _ => (i % 13).to_string(),
                };
                let label = if i % 3 == 0 { "a" } else { "b" };
                csv.push_str(&format!(
                    "{i},{},{y},a note of some length: {},{label}\n",
                    i % 1000,
                    i % 7
                ));
            }
        }
    }
    assert!(csv.len() > 70_000_000 / 4, "{} bytes", csv.len());
    write(dir.path(), "d.csv", &csv);
    write(
        dir.path(),
        "contract.yaml",
        "columns:\n  id: {type: int}\n  x: {type: float, max: 990}\n  y: {type: float}\n  \
         note: {type: string}\n  label: {type: string, role: label}\n",
    );
    let pipeline = write(
        dir.path(),
        "p.yaml",
        "name: csv\nstages:\n  read:\n    type: ingest\n    path: d.csv\n    schema: contract.yaml\n    \
         on_bad_line: quarantine\n  \
         kept:\n    type: export\n    inputs: read\n    path: '{run}/kept.parquet'\n  \
         gone:\n    type: export\n    inputs: read.quarantined\n    path: '{run}/gone.parquet'\n",
    );
    for (run, memory) in [("whole", "4GB"), ("chunks", "70MB")] {
        let o = gigo(
            dir.path(),
            &[
                "run",
                &pipeline,
                "--run-id",
                run,
                "--memory",
                memory,
                "--cache-dir",
                &format!("cache-{run}"),
                "-q",
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let bytes = |run: &str, file: &str| {
        std::fs::read(dir.path().join("runs").join(run).join(file)).unwrap()
    };
    for file in ["kept.parquet", "gone.parquet"] {
        assert!(
            bytes("whole", file) == bytes("chunks", file),
            "{file} differs between the whole and the chunked read"
        );
    }
    for (run, read) in [("whole", "whole"), ("chunks", "in batches")] {
        let summary = String::from_utf8(bytes(run, "read/summary.json")).unwrap();
        assert!(summary.contains("\"bad_lines\": 9"), "{summary}");
        assert!(
            summary.contains(&format!("\"read\": \"{read}\"")),
            "{summary}"
        );
    }
}

/// Two stages that each fit the budget but not together: with two jobs,
/// one waits for the other's share, and every output has the bytes of a
/// run under a budget where they run side by side.
#[test]
fn stages_that_do_not_fit_together_take_turns_and_give_the_same_bytes() {
    const TWO: &str = "name: turns
seed: 1
stages:
  data:
    type: generate
    rows: 50000
    classes: 2
    informative: 10
    redundant: 0
    noise_features: 10
  five:
    type: label_noise
    inputs: data
    model: logistic_regression
    filter_by: confident_learning
  three:
    type: label_noise
    inputs: data
    model: logistic_regression
    filter_by: confident_learning
    folds: 3
";
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "turns.yaml", TWO);
    let run = |id: &str, memory: &str| {
        let cache = format!("cache-{id}");
        let o = gigo(
            dir.path(),
            &[
                "run",
                &file,
                "--run-id",
                id,
                "--memory",
                memory,
                "--jobs",
                "2",
                "-q",
                "--cache-dir",
                &cache,
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        run_record(dir.path(), id)
    };
    // each cross-validation is counted at six times the table (9 MB) beside
    // 64 MB for its batches: about 120 MB, so 200 MB holds one at a time
    let tight = run("tight", "200MB");
    let roomy = run("roomy", "4GB");
    let waited = |r: &serde_json::Value| -> Vec<String> {
        ["five", "three"]
            .into_iter()
            .filter(|s| r["stages"][*s].get("memory_wait_ms").is_some())
            .map(String::from)
            .collect()
    };
    assert_eq!(waited(&tight).len(), 1, "{tight}");
    assert_eq!(waited(&roomy), Vec::<String>::new(), "{roomy}");
    for stage in ["five", "three"] {
        let share = tight["stages"][stage]["memory_share"].as_u64().unwrap();
        assert!(
            share > 100_000_000 && share <= 200_000_000,
            "{stage}: {share}"
        );
        let outputs = tight["stages"][stage]["outputs"].as_object().unwrap();
        assert!(outputs.contains_key("table"), "{stage}: {outputs:?}");
        for (port, out) in outputs {
            let path = out["path"].as_str().unwrap();
            let other = roomy["stages"][stage]["outputs"][port]["path"]
                .as_str()
                .unwrap();
            let read = |id: &str, p: &str| std::fs::read(dir.path().join("runs").join(id).join(p));
            assert_eq!(
                read("tight", path).unwrap(),
                read("roomy", other).unwrap(),
                "{stage}.{port}"
            );
        }
    }
}

/// Cross-validation runs on a sample when the table does not fit the
/// budget, so the budget is part of `label_noise`'s cache key: a run under
/// another budget never gets the sampled result from the cache.
#[test]
fn a_budget_that_changes_the_results_is_part_of_the_cache_key() {
    const CV: &str = "name: keyed
seed: 1
stages:
  data:
    type: generate
    rows: 100000
    classes: 2
    informative: 10
    redundant: 0
    noise_features: 10
  clean:
    type: label_noise
    inputs: data
    model: logistic_regression
    filter_by: confident_learning
";
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "keyed.yaml", CV);
    let run = |id: &str, memory: &str| {
        let o = gigo(
            dir.path(),
            &["run", &file, "--run-id", id, "--memory", memory, "-q"],
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let record = run_record(dir.path(), id);
        let summary =
            std::fs::read_to_string(dir.path().join("runs").join(id).join("clean/summary.json"))
                .unwrap();
        let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
        (
            record["stages"]["clean"]["status"]
                .as_str()
                .unwrap()
                .to_string(),
            record["stages"]["data"]["status"]
                .as_str()
                .unwrap()
                .to_string(),
            summary["probabilities"].get("sample").is_some(),
        )
    };
    // 16 MB of rows: cross-validating them whole takes about 100 MB
    assert_eq!(run("small", "80MB"), ("ran".into(), "ran".into(), true));
    assert_eq!(run("large", "4GB"), ("ran".into(), "cached".into(), false));
    assert_eq!(
        run("again", "4GB"),
        ("cached".into(), "cached".into(), false)
    );
    assert_eq!(
        run("back", "80MB"),
        ("cached".into(), "cached".into(), true)
    );
}
