//! `ingest` through the binary: a contract quarantines rows with counted
//! reasons, a malformed file is an error naming file and line, and changed
//! data invalidates the cache.

use crate::common::*;

const CONTRACT: &str = "columns:\n  age: {type: int, nullable: false, min: 0, max: 120}\n  city: {type: string, allowed: [Paris, Oslo]}\n  y: {type: int, role: label, allowed: [0, 1]}\n";

fn pipeline(dir: &std::path::Path) -> String {
    write(dir, "contract.yaml", CONTRACT);
    write(
        dir,
        "p.yaml",
        "name: ingest-test\nstages:\n  raw:\n    type: ingest\n    path: data.csv\n    schema: contract.yaml\n  split:\n    type: split\n    inputs: raw\n    test_fraction: 0.25\n    valid_fraction: 0\n",
    )
}

#[test]
fn contract_violations_are_quarantined_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data.csv",
        "age,city,y\n30,Paris,0\n212,Oslo,1\n40,Rome,0\n,Paris,1\n25,Oslo,1\n33,Paris,0\n41,Oslo,1\n",
    );
    let p = pipeline(dir.path());
    let o = gigo(dir.path(), &["run", &p, "--run-id", "r"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rec = run_record(dir.path(), "r");
    let rows = &rec["stages"]["raw"]["rows"];
    assert_eq!(rows["checked"], true);
    assert_eq!(rows["out"], 4);
    let removed: u64 = rows["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(removed, 3, "{rows}");
    assert_eq!(rows["created"][0]["rows"], 7);
    let reasons: Vec<&str> = rows["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("age") && r.contains("120")),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.starts_with("city")), "{reasons:?}");
    assert!(dir.path().join("runs/r/raw/quarantined.parquet").is_file());

    // Changing the data re-runs ingest even though the YAML did not change.
    let again = gigo(dir.path(), &["run", &p, "--run-id", "same"]);
    assert!(again.status.success());
    assert_eq!(
        run_record(dir.path(), "same")["stages"]["raw"]["status"],
        "cached"
    );
    write(
        dir.path(),
        "data.csv",
        "age,city,y\n30,Paris,0\n31,Oslo,1\n32,Paris,0\n33,Oslo,1\n",
    );
    let changed = gigo(dir.path(), &["run", &p, "--run-id", "changed"]);
    assert!(changed.status.success(), "{}", stderr(&changed));
    let rec = run_record(dir.path(), "changed");
    assert_eq!(rec["stages"]["raw"]["status"], "ran");
    assert_eq!(rec["stages"]["raw"]["rows"]["out"], 4);
}

#[test]
fn the_cache_key_covers_a_file_s_metadata_or_on_request_every_byte() {
    let data = "age,city,y\n30,Paris,0\n31,Oslo,1\n32,Paris,0\n33,Oslo,1\n";
    let status = |dir: &std::path::Path, p: &str, run: &str| {
        let o = gigo(dir, &["run", p, "--run-id", run]);
        assert!(o.status.success(), "{}", stderr(&o));
        run_record(dir, run)["stages"]["raw"]["status"].clone()
    };
    for (mode, after_rewrite) in [("metadata", "ran"), ("content", "cached")] {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.csv", data);
        let p = write(
            dir.path(),
            "p.yaml",
            &format!(
                "name: fp\nstages:\n  raw:\n    type: ingest\n    path: data.csv\n    label: y\n    \
                 fingerprint: {mode}\n"
            ),
        );
        assert_eq!(status(dir.path(), &p, "a"), "ran");
        assert_eq!(status(dir.path(), &p, "b"), "cached", "{mode}: untouched");
        // the same bytes written again: metadata sees a new file (a safe
        // miss), the content hash sees the same one
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(dir.path(), "data.csv", data);
        assert_eq!(status(dir.path(), &p, "c"), after_rewrite, "{mode}");
        // different bytes of the same size miss either way
        write(
            dir.path(),
            "data.csv",
            &data.replace("Paris,0\n33", "Paris,1\n33"),
        );
        assert_eq!(status(dir.path(), &p, "d"), "ran", "{mode}");
    }
}

#[test]
fn a_malformed_csv_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "data.csv",
        "age,city,y\n30,Paris,0\n31,Oslo,1,extra\n",
    );
    let p = pipeline(dir.path());
    let o = gigo(dir.path(), &["run", &p, "--run-id", "r"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("error in stage `raw`"), "{err}");
    assert!(err.contains("data.csv:3"), "{err}");
    assert_eq!(
        run_record(dir.path(), "r")["stages"]["split"]["status"],
        "skipped"
    );
}

#[test]
fn a_missing_file_is_a_stage_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path());
    let o = gigo(dir.path(), &["run", &p, "--run-id", "r"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("data.csv"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Two Parquet files of one schema stream through `ingest` in batches: the
/// contract is checked batch by batch, and batches of 7 rows give the same
/// bytes (kept rows, quarantine, summary) as the default batch size.
#[test]
fn parquet_files_stream_through_the_contract_and_the_batch_size_changes_no_byte() {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    let data = tempfile::tempdir().unwrap();
    write(data.path(), "contract.yaml", CONTRACT);
    let schema = Arc::new(Schema::new(vec![
        Field::new("age", DataType::Int64, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("y", DataType::Int64, true),
    ]));
    let mut bad = 0;
    for part in 0..2i64 {
        let n = 3_000i64;
        let age: Vec<Option<i64>> = (0..n)
            .map(|i| match (i + part) % 97 {
                0 => None,
                1 => Some(500),
                _ => Some(i % 90),
            })
            .collect();
        let city: Vec<&str> = (0..n)
            .map(|i| {
                if i % 101 == 5 {
                    "Rome"
                } else {
                    ["Paris", "Oslo"][i as usize % 2]
                }
            })
            .collect();
        bad += (0..n)
            .filter(|i| matches!((i + part) % 97, 0 | 1) || i % 101 == 5)
            .count();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(age)),
                Arc::new(StringArray::from(city)),
                Arc::new(Int64Array::from_iter_values((0..n).map(|i| i % 2))),
            ],
        )
        .unwrap();
        let file = std::fs::File::create(data.path().join(format!("part-{part}.parquet"))).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }
    let p = write(
        data.path(),
        "p.yaml",
        "name: stream\nstages:\n  raw:\n    type: ingest\n    path: part-*.parquet\n    schema: contract.yaml\n  split:\n    type: split\n    inputs: raw\n",
    );
    let run = |batch_rows: &str| {
        let dir = tempfile::tempdir().unwrap();
        let o = gigo(
            dir.path(),
            &["run", &p, "--run-id", "r", "--batch-rows", batch_rows, "-q"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let run = dir.path().join("runs/r");
        let mut files = files_under(&run, "parquet");
        files.extend(files_under(&run.join("raw"), "json"));
        (files, run_record(dir.path(), "r"), dir)
    };
    let (small, rec, _a) = run("7");
    let (default, _, _b) = run("65536");
    assert_eq!(small, default);
    let rows = &rec["stages"]["raw"]["rows"];
    assert_eq!(rows["created"].as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(
        rows["out"].as_u64().unwrap() as usize,
        6_000 - bad,
        "{rows}"
    );
    assert_eq!(rows["checked"], true);
}
