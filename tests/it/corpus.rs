//! A malformed-data corpus through ingest -> profile -> label_noise ->
//! export. Each case ends in exit 0 with every row of the file accounted
//! (read = table + quarantined, and read = the rows the file holds), or in
//! exit 1 with a clear error that names the stage, and the file when reading
//! failed; never a panic, a hang or a lost row.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, Decimal128Array, DictionaryArray, Float64Array, Int32Array, Int64Array, ListArray,
    RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Int32Type};

use crate::common::*;

/// What a case must end in.
enum Expect {
    /// Exit 0, and ingest read exactly this many rows.
    Rows(u64),
    /// Exit 0 with every row accounted, or exit 1 with a clear error
    /// (formats where either is a fair reading of the bytes).
    RowsOrError,
    /// Exit 1, and the error names the file (and the line, for text files
    /// whose problem is on one).
    Error,
    /// `ingest` and `profile` succeed; a later stage may refuse a column
    /// type it cannot use, naming the column.
    ReadAndProfiled(&'static str),
}

/// `n` good CSV rows: x, y, label (two classes).
fn good_rows(n: usize, eol: &str) -> String {
    (0..n)
        .map(|i| {
            format!(
                "{},{},{}{eol}",
                i % 13,
                (i * 7) % 5,
                if i % 3 == 0 { "b" } else { "a" }
            )
        })
        .collect()
}

fn csv(body: &str) -> Vec<u8> {
    format!("x,y,label\n{}{body}", good_rows(40, "\n")).into_bytes()
}

fn parquet(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let n = columns[0].1.len();
    let label: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| if i % 3 == 0 { "b" } else { "a" }),
    ));
    let mut cols = columns;
    cols.push(("label", label));
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    out
}

fn cases() -> Vec<(&'static str, &'static str, Vec<u8>, Expect)> {
    let n = 40;
    let f64s = |f: fn(usize) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values((0..n).map(f)))
    };
    let wide_header: Vec<String> = (0..3000).map(|i| format!("c{i}")).collect();
    let wide: String = format!(
        "{},label\n{}",
        wide_header.join(","),
        (0..20)
            .map(|r| {
                let vals: Vec<String> = (0..3000).map(|c| ((r * c) % 10).to_string()).collect();
                format!(
                    "{},{}\n",
                    vals.join(","),
                    if r % 2 == 0 { "a" } else { "b" }
                )
            })
            .collect::<String>()
    );
    let big_field = format!("x,y,label,note\n{}", {
        let mut s = String::new();
        for i in 0..40 {
            let note = if i == 7 {
                "z".repeat(200_000)
            } else {
                "n".into()
            };
            s.push_str(&format!(
                "{},{},{},{note}\n",
                i % 13,
                i % 5,
                if i % 3 == 0 { "b" } else { "a" }
            ));
        }
        s
    });
    let parquet_table = parquet(vec![
        ("x", f64s(|i| i as f64)),
        ("y", f64s(|i| (i % 5) as f64)),
    ]);
    let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(
        (0..n).map(|i| Some((0..(i % 4) as i32).map(Some).collect::<Vec<_>>())),
    ));
    let strukt: ArrayRef = Arc::new(StructArray::from(vec![
        (
            Arc::new(Field::new("p", DataType::Int64, false)),
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        (
            Arc::new(Field::new("q", DataType::Int32, false)),
            Arc::new(Int32Array::from_iter_values(0..n as i32)) as ArrayRef,
        ),
    ]));
    let decimal: ArrayRef = Arc::new(
        Decimal128Array::from_iter_values((0..n as i128).map(|i| i * 125))
            .with_precision_and_scale(10, 2)
            .unwrap(),
    );
    let dict: ArrayRef = Arc::new(
        (0..n)
            .map(|i| ["red", "green", "blue"][i % 3])
            .collect::<DictionaryArray<Int32Type>>(),
    );
    let stamp: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from_iter_values(
            (0..n as i64).map(|i| 1_700_000_000_000_000 + i * 3_600_000_000),
        )
        .with_timezone("UTC"),
    );
    let mut truncated = parquet_table.clone();
    truncated.truncate(truncated.len() / 2);
    let mut magic = b"PAR1".to_vec();
    magic.extend((0..4000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    magic.extend_from_slice(b"PAR1");
    let jsonl: String = (0..40)
        .map(|i| {
            format!(
                "{{\"x\": {i}, \"label\": \"{}\"}}\n",
                if i % 3 == 0 { "b" } else { "a" }
            )
        })
        .collect();

    use Expect::*;
    vec![
        (
            "ragged rows",
            "data.csv",
            csv("1,2\n3,4,a,9\n"),
            RowsOrError,
        ),
        (
            "a BOM",
            "data.csv",
            [b"\xEF\xBB\xBF".as_slice(), &csv("")].concat(),
            Rows(40),
        ),
        (
            "CRLF",
            "data.csv",
            format!("x,y,label\r\n{}", good_rows(40, "\r\n")).into_bytes(),
            Rows(40),
        ),
        (
            "non-UTF-8 bytes",
            "data.csv",
            [csv("").as_slice(), b"1,2,\xff\xfe\n"].concat(),
            RowsOrError,
        ),
        (
            "NUL bytes",
            "data.csv",
            [csv("").as_slice(), b"1,2,a\x00b\n"].concat(),
            RowsOrError,
        ),
        (
            "a 200 KB field",
            "data.csv",
            big_field.into_bytes(),
            Rows(40),
        ),
        (
            "broken quotes",
            "data.csv",
            csv("1,2,\"a\n3,4,b\n"),
            RowsOrError,
        ),
        (
            "mixed types in a column",
            "data.csv",
            csv("abc,2,a\n"),
            RowsOrError,
        ),
        (
            "duplicate header names",
            "data.csv",
            format!("x,x,label\n{}", good_rows(40, "\n")).into_bytes(),
            RowsOrError,
        ),
        ("an empty file", "data.csv", vec![], Error),
        (
            "a header with no rows",
            "data.csv",
            b"x,y,label\n".to_vec(),
            RowsOrError,
        ),
        (
            "one row",
            "data.csv",
            b"x,y,label\n1,2,a\n".to_vec(),
            RowsOrError,
        ),
        (
            "one class",
            "data.csv",
            format!("x,y,label\n{}", good_rows(40, "\n").replace(",b", ",a")).into_bytes(),
            RowsOrError,
        ),
        (
            "missing labels",
            "data.csv",
            csv("1,2,\n3,4,\n"),
            RowsOrError,
        ),
        (
            "float labels",
            "data.csv",
            format!(
                "x,y,label\n{}",
                good_rows(40, "\n")
                    .replace(",a", ",0.0")
                    .replace(",b", ",1.5")
            )
            .into_bytes(),
            Rows(40),
        ),
        (
            "no label column",
            "data.csv",
            format!("x,y,z\n{}", good_rows(40, "\n")).into_bytes(),
            Error,
        ),
        (
            "an all-null column",
            "data.csv",
            format!(
                "x,y,e,label\n{}",
                good_rows(40, "\n")
                    .replace(",a", ",,a")
                    .replace(",b", ",,b")
            )
            .into_bytes(),
            Rows(40),
        ),
        (
            "an all-NaN column",
            "data.csv",
            format!(
                "x,y,e,label\n{}",
                good_rows(40, "\n")
                    .replace(",a", ",NaN,a")
                    .replace(",b", ",NaN,b")
            )
            .into_bytes(),
            Rows(40),
        ),
        ("3,000 columns", "data.csv", wide.into_bytes(), Rows(20)),
        (
            "broken JSON lines",
            "data.jsonl",
            format!("{jsonl}{{\"x\": 1, \"label\": \n").into_bytes(),
            RowsOrError,
        ),
        ("Parquet", "data.parquet", parquet_table, Rows(40)),
        // The list of integers `l` (ragged, 0 to 3 items) is read as the
        // steps `l_t0 .. l_t2` of a sequence (see tests/it/sequence.rs); the
        // struct is what the feature encoder refuses.
        (
            "nested Parquet columns",
            "data.parquet",
            parquet(vec![("x", f64s(|i| i as f64)), ("l", list), ("s", strukt)]),
            ReadAndProfiled("s"),
        ),
        (
            "a decimal Parquet column",
            "data.parquet",
            parquet(vec![("x", f64s(|i| i as f64)), ("d", decimal)]),
            ReadAndProfiled("d"),
        ),
        (
            "a dictionary Parquet column",
            "data.parquet",
            parquet(vec![("x", f64s(|i| i as f64)), ("c", dict)]),
            ReadAndProfiled("c"),
        ),
        (
            "a timestamp Parquet column",
            "data.parquet",
            parquet(vec![("x", f64s(|i| i as f64)), ("t", stamp)]),
            ReadAndProfiled("t"),
        ),
        ("a truncated Parquet file", "data.parquet", truncated, Error),
        (
            "random bytes with Parquet magic",
            "data.parquet",
            magic,
            Error,
        ),
    ]
}

fn pipeline(dir: &Path, file: &str) -> String {
    let yaml = format!(
        "name: corpus\nseed: 1\nstages:\n  read:\n    type: ingest\n    path: {file}\n    label: label\n  profile:\n    type: profile\n    inputs: read\n  label_noise:\n    type: label_noise\n    inputs: profile\n    model: logistic_regression\n    folds: 2\n  export:\n    type: export\n    inputs: label_noise\n    path: \"{{run}}/out.csv\"\n"
    );
    write(dir, "p.yaml", &yaml)
}

/// Runs `gigo run` with a deadline: a hang fails the case.
fn run_bounded(dir: &Path, p: &str) -> std::process::Output {
    let mut child = std::process::Command::new(gigo_bin())
        .args(["run", p, "--run-id", "r"])
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("gigo hung for 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn every_malformed_file_ends_in_counted_rows_or_a_clear_error() {
    use Expect::*;
    let mut failures = Vec::new();
    for (name, file, bytes, expect) in cases() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(file), &bytes).unwrap();
        let p = pipeline(dir.path(), file);
        let o = run_bounded(dir.path(), &p);
        let err = stderr(&o);
        let mut bad = |why: String| failures.push(format!("{name}: {why}\n{err}"));
        if err.contains("panicked")
            || err.contains("RUST_BACKTRACE")
            || err.contains("this is a bug")
        {
            bad("a panic or an internal error reached the user".into());
            continue;
        }
        match o.status.code() {
            Some(0) => {
                let rec = run_record(dir.path(), "r");
                let rows = &rec["stages"]["read"]["rows"];
                let read: u64 = rows["created"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["rows"].as_u64().unwrap())
                    .sum();
                let removed: u64 = rows["removed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["rows"].as_u64().unwrap())
                    .sum();
                if rows["checked"] != true || rows["out"].as_u64().unwrap() + removed != read {
                    bad(format!("rows do not balance: {rows}"));
                }
                match expect {
                    Rows(n) if read != n => bad(format!("read {read} rows, the file holds {n}")),
                    Error => bad("succeeded, but the file cannot be read".into()),
                    _ => {}
                }
            }
            Some(1) => {
                let failed: Vec<String> = statuses(&run_record(dir.path(), "r"))
                    .into_iter()
                    .filter(|(_, s)| s == "failed")
                    .map(|(id, _)| id)
                    .collect();
                if failed.is_empty() || !failed.iter().all(|id| err.contains(&format!("`{id}`"))) {
                    bad(format!(
                        "exit 1 without naming the failed stage ({failed:?})"
                    ));
                }
                if failed == ["read"] && !err.contains(file) {
                    bad("the reading error does not name the file".into());
                }
                let on_a_line = !matches!(name, "an empty file" | "no label column");
                if failed == ["read"]
                    && file.ends_with(".csv")
                    && on_a_line
                    && !err.contains(&format!("{file}:"))
                {
                    bad("the reading error does not name the line".into());
                }
                match expect {
                    Rows(_) => bad("failed, but the file is valid".into()),
                    ReadAndProfiled(column) => {
                        if failed.iter().any(|f| f == "read" || f == "profile") {
                            bad("ingest or profile failed on a valid file".into());
                        } else if !err.contains(&format!("`{column}`")) {
                            bad(format!("the refusal does not name column `{column}`"));
                        }
                    }
                    _ => {}
                }
            }
            other => bad(format!("exit code {other:?}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
