//! The cache through the `gigo` binary: another build misses it, a damaged
//! entry is recomputed and never served, runs sharing it at once agree, and
//! `gigo cache ls | gc | clean` keep what the latest runs use.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::*;

fn small_pipeline(dir: &Path, rows: usize) -> String {
    let yaml = format!(
        "name: cache-test\nseed: 5\nstages:\n  data:\n    type: generate\n    rows: {rows}\n  split:\n    type: split\n    inputs: data\n  out:\n    type: export\n    inputs: split.train\n    path: \"{{run}}/train.parquet\"\n"
    );
    write(dir, "p.yaml", &yaml)
}

fn run_with(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("gigo runs")
}

fn all_status(dir: &Path, run: &str) -> Vec<String> {
    statuses(&run_record(dir, run))
        .into_iter()
        .map(|(_, s)| s)
        .collect()
}

#[test]
fn another_build_of_gigo_misses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_pipeline(dir.path(), 300);
    // A copy of the binary, then the same copy with one more byte: to the
    // loader the same program, to the cache another build.
    let bin: PathBuf = dir.path().join("gigo-copy");
    std::fs::copy(gigo_bin(), &bin).unwrap();
    for (run, expect) in [("a", "ran"), ("b", "cached")] {
        let o = run_with(&bin, dir.path(), &["run", &p, "--run-id", run]);
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            all_status(dir.path(), run).iter().all(|s| s == expect),
            "{run}"
        );
    }
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.push(0);
    std::fs::write(&bin, &bytes).unwrap();
    let o = run_with(&bin, dir.path(), &["run", &p, "--run-id", "c"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        all_status(dir.path(), "c").iter().all(|s| s == "ran"),
        "a rebuilt gigo must not serve the old build's outputs: {:?}",
        all_status(dir.path(), "c")
    );
    // The build is its bytes, not its path: the test's own gigo, which the
    // first copy was made from, hits that copy's entries.
    let o = gigo(dir.path(), &["run", &p, "--run-id", "d"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(all_status(dir.path(), "d").iter().all(|s| s == "cached"));
}

#[test]
fn a_damaged_cache_entry_is_recomputed_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_pipeline(dir.path(), 300);
    let o = gigo(dir.path(), &["run", &p, "--run-id", "a"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let clean = files_under(&dir.path().join("runs/a"), "parquet");
    // Seven bytes of garbage over every cached Parquet file, in place (the
    // run directory's hard links see it too).
    let damaged = files_under(&dir.path().join(".gigo/cache"), "parquet");
    assert!(damaged.len() >= 4, "{}", damaged.len());
    for (rel, _) in &damaged {
        std::fs::write(dir.path().join(".gigo/cache").join(rel), b"garbage").unwrap();
    }
    let o = gigo(dir.path(), &["run", &p, "--run-id", "b"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("damaged"), "{err}");
    let rec = run_record(dir.path(), "b");
    for stage in ["data", "split"] {
        assert_eq!(rec["stages"][stage]["status"], "ran", "{stage}");
        let why = rec["stages"][stage]["cache_repair"].as_str().unwrap();
        assert!(why.contains(".parquet"), "{why}");
    }
    assert_eq!(files_under(&dir.path().join("runs/b"), "parquet"), clean);
    let o = gigo(dir.path(), &["run", &p, "--run-id", "c"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(all_status(dir.path(), "c").iter().all(|s| s == "cached"));
}

#[test]
fn runs_sharing_one_cache_at_once_agree_and_gc_keeps_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let p = small_pipeline(dir.path(), 3000);
    let spawn = |run: &str| {
        Command::new(gigo_bin())
            .args(["run", &p, "--run-id", run])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = ["x", "y", "z"].iter().map(|r| spawn(r)).collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let x = files_under(&dir.path().join("runs/x"), "parquet");
    assert_eq!(x.len(), 5);
    for run in ["y", "z"] {
        assert_eq!(
            files_under(&dir.path().join("runs").join(run), "parquet"),
            x
        );
    }
    let entries = || -> Vec<serde_json::Value> {
        let o = gigo(dir.path(), &["cache", "ls", "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o))
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    };
    let first = entries();
    assert_eq!(first.len(), 3, "{first:?}");
    assert!(
        first
            .iter()
            .all(|e| e["kept_by"].as_array().unwrap().len() == 1)
    );
    let table = stdout(&gigo(dir.path(), &["cache", "ls"]));
    assert!(
        table.contains("split (split)") && table.contains("3 entries"),
        "{table}"
    );

    // A changed parameter: its new entries are the latest run's, the old
    // split and export entries are garbage; `data` is shared by both runs.
    let o = gigo(
        dir.path(),
        &[
            "run",
            &p,
            "--run-id",
            "w",
            "--set",
            "split.test_fraction=0.3",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(entries().len(), 5);
    let o = gigo(dir.path(), &["cache", "gc"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("removed 2 entries"), "{}", stdout(&o));
    let kept = entries();
    assert_eq!(kept.len(), 3);
    let o = gigo(
        dir.path(),
        &[
            "run",
            &p,
            "--run-id",
            "v",
            "--set",
            "split.test_fraction=0.3",
        ],
    );
    assert!(o.status.success());
    assert!(all_status(dir.path(), "v").iter().all(|s| s == "cached"));
    let o = gigo(dir.path(), &["cache", "gc", "--older-than", "bad"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = gigo(dir.path(), &["cache", "clean"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(entries().is_empty());
}
