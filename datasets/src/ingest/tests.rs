use super::readers::guarded;
use super::*;
use crate::polars_bridge::plain_batch;
use arrow::array::{Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use gigo_pipeline::{NoProgress, REASON_COLUMN, Source, role_of};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;

fn build(params: serde_json::Value) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
    let mut registry = Registry::new();
    register(&mut registry);
    registry.get("ingest").unwrap().build(&params)
}

/// A context whose files and scratch space are under `dir`.
fn context(dir: &Path) -> StageContext {
    StageContext::new(
        "ingest",
        1,
        dir.to_path_buf(),
        dir.to_path_buf(),
        dir.to_path_buf(),
        Arc::new(NoProgress),
    )
}

/// The error `stage` ends in.
fn stage_error(stage: &dyn Stage, ctx: &StageContext) -> String {
    match stage.run(&Inputs::default(), ctx) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn run(dir: &Path, params: serde_json::Value) -> Result<StageOutput, StageError> {
    let stage = build(params).unwrap();
    let ctx = context(dir);
    stage.fingerprint(dir)?;
    stage.run(&Inputs::default(), &ctx)
}

fn run_err(dir: &Path, params: serde_json::Value) -> String {
    match run(dir, params) {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn table(out: &StageOutput, port: &str) -> Arc<Table> {
    match out.ports[port].source() {
        Some(t) => t.load(1 << 16).unwrap(),
        None => panic!("{port} is {:?}", out.ports[port].kind()),
    }
}

fn write(dir: &Path, name: &str, text: &[u8]) {
    let mut f = std::fs::File::create(dir.join(name)).unwrap();
    f.write_all(text).unwrap();
}

/// `text` written to `dir/name`, and its path.
pub(super) fn written(dir: &Path, name: &str, text: &[u8]) -> PathBuf {
    write(dir, name, text);
    dir.join(name)
}

/// A text file `name` holding `text`, read whole and read by `stream` (its
/// types, then its pieces) in chunks of every size from 1 to 4 records: the
/// same rows, types and bad lines.
pub(super) fn chunks_match_whole_read(
    name: &str,
    format: Format,
    text: &[u8],
    on_bad: OnBadLine,
    stream: impl Fn(&Path, usize) -> Pieces,
) {
    let dir = tempfile::tempdir().unwrap();
    let p = written(dir.path(), name, text);
    let (whole, whole_bad) = read_file(&p, name, format, &[], on_bad).unwrap();
    for rows in 1..=4 {
        let mut parts = Vec::new();
        let mut bad = Vec::new();
        for piece in stream(&p, rows) {
            let (b, l) = piece.unwrap();
            parts.push(b);
            bad.extend(l);
        }
        let got = arrow::compute::concat_batches(&parts[0].schema(), &parts).unwrap();
        assert_eq!(got, whole, "{rows} records a chunk");
        assert_eq!(bad, whole_bad, "{rows} records a chunk");
    }
}

fn balanced(out: &StageOutput) {
    let created: usize = out.created.iter().map(|(_, n)| n).sum();
    let kept = table(out, "table").num_rows();
    let removed = table(out, "quarantined").num_rows();
    assert_eq!(created, kept + removed, "row accounting");
    assert_eq!(out.summary["rows_read"], created);
}

fn strings(t: &Table, column: &str) -> Vec<Option<String>> {
    let b = t.to_batch().unwrap();
    let c = cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
    let c = c.as_any().downcast_ref::<StringArray>().unwrap();
    c.iter().map(|v| v.map(String::from)).collect()
}

const CSV: &str = "id,x,name,label\n1,0.5,ann,0\n2,1.5,,1\n3,-2.25,cy,1\n";

#[test]
fn csv_with_label_sets_roles() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data.csv", CSV.as_bytes());
    let out = run(dir.path(), json!({"path": "data.csv", "label": "label"})).unwrap();
    balanced(&out);
    let t = table(&out, "table");
    assert_eq!(t.num_rows(), 3);
    assert_eq!(t.label_column().unwrap(), "label");
    assert_eq!(t.columns_with_role(Role::Feature), vec!["id", "x", "name"]);
    assert_eq!(out.created, vec![("read from data.csv".to_string(), 3)]);
    assert_eq!(t.schema().field(0).data_type(), &DataType::Int64);
    assert_eq!(t.schema().field(1).data_type(), &DataType::Float64);
    assert_eq!(t.schema().field(2).data_type(), &DataType::Utf8);
    assert_eq!(strings(&t, "name")[1], None);
    assert_eq!(table(&out, "quarantined").num_rows(), 0);
    assert_eq!(out.summary["columns"][3]["role"], "label");
    assert_eq!(out.summary["files"][0]["rows"], 3);
}

#[test]
fn the_four_formats_read_the_same_table() {
    use polars::prelude::{IpcWriter, ParquetWriter, SerWriter};
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data.csv", CSV.as_bytes());
    write(
        dir.path(),
        "data.jsonl",
        b"{\"id\": 1, \"x\": 0.5, \"name\": \"ann\", \"label\": 0}\n{\"id\": 2, \"x\": 1.5, \"name\": null, \"label\": 1}\n\n{\"id\": 3, \"x\": -2.25, \"name\": \"cy\", \"label\": 1}\n",
    );
    let mut df = polars::df!(
        "id" => [1i64, 2, 3],
        "x" => [0.5f64, 1.5, -2.25],
        "name" => [Some("ann"), None, Some("cy")],
        "label" => [0i64, 1, 1],
    )
    .unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("data.parquet")).unwrap())
        .finish(&mut df)
        .unwrap();
    IpcWriter::new(std::fs::File::create(dir.path().join("data.arrow")).unwrap())
        .finish(&mut df)
        .unwrap();
    let reference = run(dir.path(), json!({"path": "data.csv", "label": "label"})).unwrap();
    let reference = table(&reference, "table").to_batch().unwrap();
    for file in ["data.jsonl", "data.parquet", "data.arrow"] {
        let out = run(dir.path(), json!({"path": file, "label": "label"})).unwrap();
        balanced(&out);
        let got = table(&out, "table").to_batch().unwrap();
        assert_eq!(got, reference, "{file}");
    }
    // An explicit format wins over the extension.
    std::fs::copy(dir.path().join("data.csv"), dir.path().join("data.txt")).unwrap();
    let out = run(
        dir.path(),
        json!({"path": "data.txt", "format": "csv", "label": "label"}),
    )
    .unwrap();
    assert_eq!(table(&out, "table").to_batch().unwrap(), reference);
}

#[test]
fn a_glob_concatenates_the_matches_in_sorted_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("parts")).unwrap();
    write(dir.path(), "parts/b.csv", b"id,x\n3,1.5\n");
    write(dir.path(), "parts/a.csv", b"id,x\n1,2\n2,3\n");
    let out = run(dir.path(), json!({"path": "parts/*.csv"})).unwrap();
    balanced(&out);
    let t = table(&out, "table");
    assert_eq!(
        strings(&t, "id"),
        vec![Some("1".into()), Some("2".into()), Some("3".into())]
    );
    // Ints in one file and floats in the other combine as floats.
    assert_eq!(
        t.schema().field_with_name("x").unwrap().data_type(),
        &DataType::Float64
    );
    assert_eq!(
        out.created,
        vec![
            ("read from parts/a.csv".to_string(), 2),
            ("read from parts/b.csv".to_string(), 1)
        ]
    );
    let err = run_err(dir.path(), json!({"path": "parts/*.parquet"}));
    assert!(err.contains("no file matches `parts/*.parquet`"), "{err}");

    write(dir.path(), "parts/c.csv", b"id,y\n3,1.5\n");
    let err = run_err(dir.path(), json!({"path": "parts/*.csv"}));
    assert!(
        err.contains("parts/c.csv does not have the same columns as parts/a.csv"),
        "{err}"
    );
}

#[test]
fn malformed_csv_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "ragged.csv", b"a,b,c\n1,2,3\n4,5,6,7\n");
    let err = run_err(dir.path(), json!({"path": "ragged.csv"}));
    assert_eq!(
        err,
        "ragged.csv:3: expected 3 fields (as in the header), found 4"
    );

    write(dir.path(), "quote.csv", b"a,b\n1,2\n3,\"x\n4,5\n");
    let err = run_err(dir.path(), json!({"path": "quote.csv"}));
    assert!(err.starts_with("quote.csv:3: unterminated quote"), "{err}");

    write(dir.path(), "ok_quotes.csv", b"a,b\n1,\"x, \"\"y\"\"\nz\"\n");
    let out = run(dir.path(), json!({"path": "ok_quotes.csv"})).unwrap();
    assert_eq!(
        strings(&table(&out, "table"), "b"),
        vec![Some("x, \"y\"\nz".into())]
    );

    write(dir.path(), "utf8.csv", b"a,b\n1,ok\n2,\xff\xfe\n");
    let err = run_err(dir.path(), json!({"path": "utf8.csv"}));
    assert!(
        err.starts_with("utf8.csv:3: field 2 (`b`) is not valid UTF-8"),
        "{err}"
    );

    write(dir.path(), "empty.csv", b"");
    let err = run_err(dir.path(), json!({"path": "empty.csv"}));
    assert_eq!(err, "empty.csv: no header: the file is empty");

    write(dir.path(), "header.csv", b"a,b\n");
    let out = run(dir.path(), json!({"path": "header.csv"})).unwrap();
    balanced(&out);
    let t = table(&out, "table");
    assert_eq!((t.num_rows(), t.schema().fields().len()), (0, 2));
}

#[test]
fn tsv_and_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data.tsv", b"a\tb\n1\tx y\n");
    let out = run(dir.path(), json!({"path": "data.tsv"})).unwrap();
    assert_eq!(
        strings(&table(&out, "table"), "b"),
        vec![Some("x y".into())]
    );
    let err = run_err(dir.path(), json!({"path": "nope.csv"}));
    assert!(
        err.starts_with("nope.csv: the file does not exist"),
        "{err}"
    );
}

#[test]
fn bad_json_line_error_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.jsonl",
        b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3,, }\n{\"a\": 4}\n",
    );
    let err = run_err(dir.path(), json!({"path": "bad.jsonl"}));
    assert!(err.starts_with("bad.jsonl:3:"), "{err}");

    write(dir.path(), "array.jsonl", b"{\"a\": 1}\n[1, 2]\n");
    let err = run_err(dir.path(), json!({"path": "array.jsonl"}));
    assert!(
        err.starts_with("array.jsonl:2:1: expected a JSON object, found an array"),
        "{err}"
    );
}

/// Found by `cargo fuzz run ingest` (fuzz/, README "Fuzzing"): a CSV
/// whose header is one NUL byte crashed polars-arrow's exporter.
#[test]
fn a_nul_byte_in_a_csv_header_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "nul.csv", b"\0");
    let err = run_err(dir.path(), json!({"path": "nul.csv"}));
    assert_eq!(err, r#"nul.csv: column name "\0" contains a NUL byte"#);
}

/// The forged footer `cargo fuzz run exec_output` found (a block of
/// 4 GiB): ingest's IPC reader refuses it before allocating.
#[test]
fn an_ipc_footer_block_past_the_end_is_an_error_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let forged = include_bytes!("../../../stages/src/testdata/ipc_huge_block.arrow");
    write(dir.path(), "forged.arrow", forged);
    let err = run_err(dir.path(), json!({"path": "forged.arrow"}));
    assert!(
        err.starts_with("forged.arrow: cannot read it as Arrow IPC: block 0"),
        "{err}"
    );
    assert!(err.ends_with("lies outside the 1803-byte file"), "{err}");
}

#[test]
fn corrupt_parquet_and_ipc_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.parquet",
        b"PAR1 this is not parquet at all PAR1",
    );
    let err = run_err(dir.path(), json!({"path": "bad.parquet"}));
    assert!(err.starts_with("bad.parquet: "), "{err}");
    write(dir.path(), "bad.arrow", b"ARROW1\0\0 garbage");
    let err = run_err(dir.path(), json!({"path": "bad.arrow"}));
    assert!(err.starts_with("bad.arrow: "), "{err}");
}

#[test]
fn errors_keep_the_readers_error_and_the_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "bad.parquet",
        b"PAR1 this is not parquet at all PAR1",
    );
    let err = run(dir.path(), json!({"path": "bad.parquet"}))
        .err()
        .unwrap();
    let StageError::Invalid(inner) = &err else {
        panic!("{err:?}")
    };
    let ours = inner.downcast_ref::<DatasetError>().unwrap();
    assert!(
        matches!(
            ours,
            DatasetError::Unreadable {
                format: "Parquet",
                ..
            }
        ),
        "{ours:?}"
    );
    let source = std::error::Error::source(ours).unwrap();
    assert!(
        source
            .downcast_ref::<parquet::errors::ParquetError>()
            .is_some(),
        "{source:?}"
    );

    write(dir.path(), "r.csv", b"a,b\n1,2\n3,4,5\n");
    let err = run(dir.path(), json!({"path": "r.csv"})).err().unwrap();
    let StageError::Invalid(inner) = &err else {
        panic!("{err:?}")
    };
    match inner.downcast_ref::<DatasetError>() {
        Some(DatasetError::Malformed {
            file, line, source, ..
        }) => {
            assert_eq!((file.as_str(), *line), ("r.csv", Some(3)));
            assert!(
                source
                    .as_ref()
                    .unwrap()
                    .downcast_ref::<csv::Error>()
                    .is_some()
            );
        }
        other => panic!("{other:?}"),
    }
}

fn write_parquet(dir: &Path, name: &str, batch: &RecordBatch) {
    let file = std::fs::File::create(dir.join(name)).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(batch).unwrap();
    w.close().unwrap();
}

#[test]
fn parquet_and_ipc_keep_every_column_type() {
    let sample = gigo_pipeline::samples::every_type_batch();
    let dir = tempfile::tempdir().unwrap();
    write_parquet(dir.path(), "all.parquet", &sample);
    let file = std::fs::File::create(dir.path().join("all.arrow")).unwrap();
    let mut w = arrow::ipc::writer::FileWriter::try_new(file, &sample.schema()).unwrap();
    w.write(&sample).unwrap();
    w.finish().unwrap();
    // Dictionary strings become plain strings, and the list of integers
    // `tags` the steps `tags_t0 .. tags_t2` of a sequence (Float64, null past
    // a row's end); everything else as written.
    let plain = plain_batch(&sample).unwrap();
    assert_eq!(plain.schema().field(8).data_type(), &DataType::Utf8);
    let mut lists = super::lists::Lists::of(&plain.schema()).unwrap();
    lists.observe(&plain);
    let expected = lists.widen("sample", plain).unwrap();
    let tags: Vec<Option<f64>> = expected
        .column_by_name("tags_t0")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Float64Array>()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(tags, [Some(1.0), None, None, Some(3.0)]);
    assert!(
        expected.column_by_name("tags_t2").is_some() && expected.column_by_name("tags").is_none()
    );
    for file in ["all.parquet", "all.arrow"] {
        let out = run(dir.path(), json!({"path": file, "label": "label"})).unwrap();
        balanced(&out);
        let got = table(&out, "table").to_batch().unwrap();
        assert_eq!(got.num_rows(), 4, "{file}");
        for (i, field) in expected.schema().fields().iter().enumerate() {
            let g = got.schema().field(i).clone();
            assert_eq!(g.name(), field.name(), "{file}");
            assert_eq!(g.data_type(), field.data_type(), "{file}: {}", field.name());
            assert_eq!(
                got.column(i).as_ref(),
                expected.column(i).as_ref(),
                "{file}: {}",
                field.name()
            );
        }
        assert_eq!(out.summary["columns"][0]["type"], "Decimal128(10, 2)");
        assert_eq!(out.summary["lists"]["columns"], json!(["tags"]), "{file}");
        assert_eq!(out.summary["lists"]["null_steps"], 1 + 3 + 3 + 1, "{file}");
    }
}

#[test]
fn parquet_in_a_codec_arrow_rs_lacks_is_read_by_polars() {
    use polars::prelude::{ParquetCompression, ParquetWriter};
    let dir = tempfile::tempdir().unwrap();
    let mut df = polars::df!("x" => [1i64, 2, 3], "s" => ["a", "b", "c"]).unwrap();
    ParquetWriter::new(std::fs::File::create(dir.path().join("g.parquet")).unwrap())
        .with_compression(ParquetCompression::Gzip(None))
        .finish(&mut df)
        .unwrap();
    let out = run(dir.path(), json!({"path": "g.parquet"})).unwrap();
    balanced(&out);
    assert_eq!(
        strings(&table(&out, "table"), "s"),
        vec![Some("a".into()), Some("b".into()), Some("c".into())]
    );
}

#[test]
fn a_panicking_reader_becomes_an_error_naming_the_file() {
    let e = guarded("d.parquet", "Parquet", || -> () {
        panic!("index out of bounds")
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("d.parquet: the Parquet reader panicked while reading it"),
        "{e}"
    );
    assert!(e.ends_with(": index out of bounds"), "{e}");
    assert_eq!(guarded("d.csv", "CSV", || 7).unwrap(), 7);
}

const TRUTHY: &str = "row,x,true_label,true_outlier,w,y\n1,0.5,0,false,1,0\n2,1.5,1,true,2,1\n";

#[test]
fn ignore_id_and_roles_without_a_contract() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "d.csv", TRUTHY.as_bytes());
    let out = run(
        dir.path(),
        json!({"path": "d.csv", "ignore": ["true_*"], "id": ["row"], "roles": {"w": "weight", "y": "label"}}),
    )
    .unwrap();
    balanced(&out);
    let t = table(&out, "table");
    assert_eq!(column_names(&t.to_batch().unwrap()), ["row", "x", "w", "y"]);
    assert_eq!(t.label_column().unwrap(), "y");
    assert_eq!(t.columns_with_role(Role::Id), vec!["row"]);
    assert_eq!(t.columns_with_role(Role::Weight), vec!["w"]);
    assert_eq!(t.columns_with_role(Role::Feature), vec!["x"]);
    assert_eq!(out.summary["ignored"]["count"], 2);
    assert_eq!(
        out.summary["ignored"]["columns"],
        json!(["true_label", "true_outlier"])
    );
    assert_eq!(out.summary["label"], "y");
    // Roles override the contract's.
    write(
        dir.path(),
        "c.yaml",
        b"columns:\n  x: {type: float, role: other}\n  y: {type: int, role: label}\n",
    );
    let out = run(
        dir.path(),
        json!({"path": "d.csv", "schema": "c.yaml", "roles": {"x": "feature", "true_*": "truth"}}),
    )
    .unwrap();
    let t = table(&out, "table");
    assert_eq!(t.label_column().unwrap(), "y");
    assert_eq!(
        t.columns_with_role(Role::Truth),
        vec!["true_label", "true_outlier"]
    );
    assert_eq!(t.columns_with_role(Role::Feature), vec!["row", "x", "w"]);
}

#[test]
fn roles_that_match_nothing_or_conflict_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "d.csv", TRUTHY.as_bytes());
    let err = run_err(
        dir.path(),
        json!({"path": "d.csv", "ignore": ["true_lable"]}),
    );
    assert!(
        err.starts_with("d.csv: `true_lable` in `ignore` matches no column"),
        "{err}"
    );
    assert!(err.ends_with("(did you mean `true_label`?)"), "{err}");
    let err = run_err(
        dir.path(),
        json!({"path": "d.csv", "roles": {"wt": "weight"}}),
    );
    assert!(err.contains("(did you mean `w`?)"), "{err}");
    let err = run_err(
        dir.path(),
        json!({"path": "d.csv", "ignore": ["true_*"], "roles": {"true_label": "truth"}}),
    );
    assert!(err.contains("column `true_label` is ignored by"), "{err}");
    // A label named in `roles` must be in the file.
    let err = run_err(
        dir.path(),
        json!({"path": "d.csv", "roles": {"yy": "label"}}),
    );
    assert!(
        err.starts_with("label column `yy` is not in d.csv"),
        "{err}"
    );
    // The contract cannot require a column `ignore` drops.
    write(
        dir.path(),
        "c.yaml",
        b"columns:\n  true_label: {type: int}\n",
    );
    let err = run_err(
        dir.path(),
        json!({"path": "d.csv", "schema": "c.yaml", "ignore": ["true_*"]}),
    );
    assert!(
        err.starts_with(
            "d.csv: column `true_label` is in the contract c.yaml but `ignore` drops it"
        ),
        "{err}"
    );
    // Build time: conflicts that need no data.
    let problems = build(json!({"path": "d.csv", "label": "y", "ignore": ["y"]}))
        .err()
        .unwrap();
    assert_eq!(problems[0].path, vec!["ignore"]);
    assert!(
        problems[0]
            .message
            .contains("label column `y` cannot also be ignored")
    );
    let problems = build(json!({"path": "d.csv", "label": "y", "roles": {"y": "id"}}))
        .err()
        .unwrap();
    assert!(problems[0].message.contains("cannot also be given role id"));
    let problems = build(json!({"path": "d.csv", "ignore": ["a"], "id": ["a"]}))
        .err()
        .unwrap();
    assert!(problems[0].message.contains("both ignored"));
    assert!(build(json!({"path": "d.csv", "roles": {"a": "boss"}})).is_err());
}

#[test]
fn bad_lines_can_be_quarantined_with_every_row_accounted() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "d.csv",
        b"a,b\n1,x\n2,y,extra\n3,\"open\n4,z\n\n5,\xff\n6,w\n",
    );
    let err = run_err(dir.path(), json!({"path": "d.csv"}));
    assert!(err.starts_with("d.csv:4: unterminated quote"), "{err}");
    write(dir.path(), "blank.csv", b"a,b\n1,x\n\n\n2,y,extra\n");
    let err = run_err(dir.path(), json!({"path": "blank.csv"}));
    assert!(err.starts_with("blank.csv:5: expected 2 fields"), "{err}");
    let out = run(
        dir.path(),
        json!({"path": "d.csv", "on_bad_line": "quarantine"}),
    )
    .unwrap();
    balanced(&out);
    let kept = table(&out, "table");
    assert_eq!(
        strings(&kept, "a"),
        vec![Some("1".into()), Some("4".into()), Some("6".into())]
    );
    let q = table(&out, "quarantined");
    assert_eq!(q.num_rows(), 3);
    assert_eq!(
        strings(&q, LINE_COLUMN),
        vec![Some("3".into()), Some("4".into()), Some("7".into())]
    );
    assert_eq!(
        strings(&q, RAW_COLUMN),
        vec![
            Some("2,y,extra".into()),
            Some("3,\"open".into()),
            Some("5,\u{fffd}".into())
        ]
    );
    assert_eq!(
        strings(&q, REASON_COLUMN),
        vec![
            Some("bad line: expected 2 fields (as in the header), found 3".into()),
            Some("bad line: unterminated quote".into()),
            Some("bad line: field 2 is not valid UTF-8".into()),
        ]
    );
    assert_eq!(strings(&q, "a"), vec![None, None, None]);
    assert_eq!(
        role_of(q.schema().field_with_name(RAW_COLUMN).unwrap()),
        Role::Added
    );
    assert_eq!(out.summary["files"][0]["bad_lines"], 3);
    assert_eq!(out.summary["rows_read"], 6);

    // With a contract: its violations and the bad lines share the port.
    write(
        dir.path(),
        "c.yaml",
        b"columns:\n  a: {type: int, max: 5}\n",
    );
    let out = run(
        dir.path(),
        json!({"path": "d.csv", "schema": "c.yaml", "on_bad_line": "quarantine"}),
    )
    .unwrap();
    balanced(&out);
    let q = table(&out, "quarantined");
    assert_eq!(q.num_rows(), 4);
    assert_eq!(strings(&q, "a")[0], Some("6".into()));
    assert_eq!(strings(&q, LINE_COLUMN)[0], None);
}

#[test]
fn bad_json_lines_can_be_quarantined() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "d.jsonl",
        b"{\"a\": 1}\n{\"a\": 2,, }\n[1, 2]\n{\"a\": 4}\n",
    );
    let out = run(
        dir.path(),
        json!({"path": "d.jsonl", "on_bad_line": "quarantine"}),
    )
    .unwrap();
    balanced(&out);
    assert_eq!(table(&out, "table").num_rows(), 2);
    let q = table(&out, "quarantined");
    assert_eq!(
        strings(&q, LINE_COLUMN),
        vec![Some("2".into()), Some("3".into())]
    );
    assert_eq!(strings(&q, RAW_COLUMN)[1], Some("[1, 2]".into()));
    // Every line bad: an empty table, every line quarantined.
    write(dir.path(), "bad.jsonl", b"nope\n[1]\n");
    let out = run(
        dir.path(),
        json!({"path": "bad.jsonl", "on_bad_line": "quarantine"}),
    )
    .unwrap();
    balanced(&out);
    assert_eq!(table(&out, "quarantined").num_rows(), 2);
    // Binary formats have no lines.
    let problems = build(json!({"path": "d.parquet", "on_bad_line": "quarantine"}))
        .err()
        .unwrap();
    assert_eq!(problems[0].path, vec!["on_bad_line"]);
}

const CONTRACT: &str = "columns:
  age: {type: int, nullable: false, min: 17, max: 100}
  workclass: {type: string, allowed: [Private, Self-emp]}
  income: {type: float, min: 0}
  label: {type: int, role: label, allowed: [0, 1]}
  id: {type: string, role: id}
extra_columns: drop
";

#[test]
fn contract_violations_are_quarantined_with_reasons() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "contract.yaml", CONTRACT.as_bytes());
    write(
        dir.path(),
        "people.csv",
        b"id,age,workclass,income,label,notes\n\
007,30,Private,100.5,0,a\n\
008,212,Private,5,1,b\n\
009,abc,Self-emp,7,0,c\n\
010,,Private,8,1,d\n\
011,40,Gov,9,2,e\n\
012,50,Self-emp,,1,f\n\
013,16,Private,-1,0,g\n",
    );
    let out = run(
        dir.path(),
        json!({"path": "people.csv", "schema": "contract.yaml"}),
    )
    .unwrap();
    balanced(&out);
    let kept = table(&out, "table");
    let quarantined = table(&out, "quarantined");
    assert_eq!(kept.num_rows(), 2);
    assert_eq!(quarantined.num_rows(), 5);
    // Strings stay strings (leading zeros kept), `notes` is dropped.
    assert_eq!(
        strings(&kept, "id"),
        vec![Some("007".into()), Some("012".into())]
    );
    assert!(kept.schema().field_with_name("notes").is_err());
    assert_eq!(
        kept.schema().field_with_name("age").unwrap().data_type(),
        &DataType::Int64
    );
    assert_eq!(kept.label_column().unwrap(), "label");
    assert_eq!(kept.columns_with_role(Role::Id), vec!["id"]);
    assert_eq!(
        kept.columns_with_role(Role::Feature),
        vec!["age", "workclass", "income"]
    );
    assert_eq!(
        strings(&quarantined, REASON_COLUMN),
        vec![
            Some("age: above max 100".into()),
            Some("age: not an int".into()),
            Some("age: missing but not nullable".into()),
            Some("workclass: not an allowed value; label: not an allowed value".into()),
            Some("age: below min 17; income: below min 0".into()),
        ]
    );
    // Quarantined rows are as read: the bad age is still there.
    assert_eq!(strings(&quarantined, "age")[1], Some("abc".into()));
    let reason_field = quarantined.schema().field_with_name(REASON_COLUMN).unwrap();
    assert_eq!(role_of(reason_field), Role::Added);
    assert_eq!(out.summary["rows_quarantined"], 5);
    assert_eq!(out.summary["quarantined_by_reason"]["age: not an int"], 1);
    assert_eq!(out.summary["violations_by_rule"]["age: below min 17"], 1);
    assert_eq!(quarantined.value_counts(REASON_COLUMN).unwrap().len(), 5);

    // `label:` overrides the contract's label column.
    let out = run(
        dir.path(),
        json!({"path": "people.csv", "schema": "contract.yaml", "label": "notes"}),
    )
    .unwrap();
    let kept = table(&out, "table");
    assert_eq!(kept.label_column().unwrap(), "notes");
    assert_eq!(kept.columns_with_role(Role::Other), vec!["label"]);
}

#[test]
fn contract_casts_other_formats_and_floats() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        b"columns:\n  n: {type: int}\n  b: {type: bool}\n  s: {type: string}\n",
    );
    write(
        dir.path(),
        "d.jsonl",
        b"{\"n\": 1.0, \"b\": 1, \"s\": 5}\n{\"n\": 1.5, \"b\": 2, \"s\": \"x\"}\n",
    );
    let out = run(dir.path(), json!({"path": "d.jsonl", "schema": "c.yaml"})).unwrap();
    balanced(&out);
    assert_eq!(table(&out, "table").num_rows(), 1);
    assert_eq!(
        strings(&table(&out, "quarantined"), REASON_COLUMN),
        vec![Some("n: not an int; b: not a bool".into())]
    );

    write(
        dir.path(),
        "list.jsonl",
        b"{\"n\": [1, 2], \"b\": true, \"s\": \"x\"}\n",
    );
    let err = run_err(
        dir.path(),
        json!({"path": "list.jsonl", "schema": "c.yaml"}),
    );
    assert!(
        err.starts_with("list.jsonl: column `n` has type List"),
        "{err}"
    );
    assert!(err.contains("cannot be cast to int"), "{err}");
}

#[test]
fn contract_errors_have_places() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "c.yaml",
        b"columns:\n  age: {type: int, maximum: 3}\n",
    );
    write(dir.path(), "d.csv", b"age\n1\n");
    let err = run_err(dir.path(), json!({"path": "d.csv", "schema": "c.yaml"}));
    assert!(
        err.contains("c.yaml:2:20: error: unknown column rule `maximum`"),
        "{err}"
    );
    assert!(err.contains("did you mean `max`?"), "{err}");

    write(dir.path(), "c.yaml", b"columns:\n  agee: {type: int}\n");
    let err = run_err(dir.path(), json!({"path": "d.csv", "schema": "c.yaml"}));
    assert!(
        err.starts_with("d.csv: column `agee` required by the contract c.yaml is missing; its columns are: age (did you mean `age`?)"),
        "{err}"
    );

    write(
        dir.path(),
        "c.yaml",
        b"columns:\n  age: {type: int}\nextra_columns: error\n",
    );
    write(dir.path(), "e.csv", b"age,zip\n1,2\n");
    let err = run_err(dir.path(), json!({"path": "e.csv", "schema": "c.yaml"}));
    assert!(
        err.contains("column(s) `zip` are not in the contract c.yaml"),
        "{err}"
    );
}

#[test]
fn a_missing_label_column_lists_the_columns() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data.csv", CSV.as_bytes());
    let err = run_err(dir.path(), json!({"path": "data.csv", "label": "lable"}));
    assert_eq!(
        err,
        "label column `lable` is not in data.csv; its columns are: id, x, name, label (did you mean `label`?)"
    );
}

#[test]
fn parameters_are_checked_at_build_time() {
    let problems = build(json!({"path": "data.xlsx"})).err().unwrap();
    assert_eq!(problems[0].path, vec!["path"]);
    assert!(problems[0].message.contains("cannot tell the format"));
    assert!(build(json!({"path": "data.xlsx", "format": "csv"})).is_ok());
    assert!(build(json!({"path": "data/*"})).is_ok());
    assert!(build(json!({"path": "data/*.txt"})).is_err());
    assert!(build(json!({"path": "a.csv", "sep": ","})).is_err());
}

#[test]
fn the_fingerprint_follows_the_content() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data.csv", CSV.as_bytes());
    let stage = build(json!({"path": "*.csv"})).unwrap();
    let a = stage.fingerprint(dir.path()).unwrap();
    write(dir.path(), "data.csv", b"id\n1\n");
    let b = stage.fingerprint(dir.path()).unwrap();
    assert_ne!(a, b);
    assert!(b.unwrap().starts_with("data.csv\t"));
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop::sample::select(vec![
                b'a', b'1', b'7', b',', b'"', b'\n', b'\r', b'.', b' ', b'-', b'{', b'}', b':',
                b'[', 0xff, b'\t',
            ]),
            0..60,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
        #[test]
        fn any_bytes_give_a_table_or_an_error(bytes in text(), header in any::<bool>()) {
            let dir = tempfile::tempdir().unwrap();
            let mut content = if header { b"a,b\n".to_vec() } else { Vec::new() };
            content.extend_from_slice(&bytes);
            write(dir.path(), "c.yaml", b"columns:\n  a: {type: int, min: 0, nullable: false}\n");
            for name in ["d.csv", "d.jsonl", "d.parquet", "d.arrow"] {
                write(dir.path(), name, &content);
                for params in [json!({"path": name}), json!({"path": name, "schema": "c.yaml"})] {
                    match run(dir.path(), params) {
                        Ok(out) => balanced(&out),
                        Err(e) => {
                            let e = e.to_string();
                            prop_assert!(!e.contains("panicked"), "{name}: {e}");
                            prop_assert!(!e.contains("internal error"), "{name}: {e}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn files_read_whole_that_would_not_fit_the_budget_are_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    // `x` is a number in one file and text in the other: the types unify
    // only when both are read whole
    for (name, quote) in [("a.jsonl", ""), ("b.jsonl", "\"")] {
        let rows: String = (0..1_000)
            .map(|i| format!("{{\"x\": {quote}{i}{quote}, \"y\": {}}}\n", i % 2))
            .collect();
        write(dir.path(), name, rows.as_bytes());
    }
    let stage = build(json!({"path": "*.jsonl", "label": "y"})).unwrap();
    let mut ctx = context(dir.path());
    ctx.memory_budget = 20_000;
    let e = stage_error(stage.as_ref(), &ctx);
    assert!(
        e.contains("ingest reads 2 file(s) of 40 kB whole")
            && e.contains("more than the run's budget of 20 kB")
            && e.contains("Parquet"),
        "{e}"
    );
    // With room enough, the same files read.
    ctx.memory_budget = 1 << 30;
    assert!(stage.run(&Inputs::default(), &ctx).is_ok());
}

#[test]
fn a_json_lines_file_over_the_budget_streams_with_what_a_whole_read_gives() {
    let dir = tempfile::tempdir().unwrap();
    // a decimal late in the file makes `x` a float; `z` appears late; two
    // bad lines
    let mut rows: String = (0..2_000)
        .map(|i| format!("{{\"x\": {i}, \"y\": {}}}\n", i % 2))
        .collect();
    rows.push_str("not json\n\n{\"x\": 0.5, \"y\": 1, \"z\": \"late\"}\n[1]\n");
    write(dir.path(), "a.jsonl", rows.as_bytes());
    let stage =
        build(json!({"path": "a.jsonl", "label": "y", "on_bad_line": "quarantine"})).unwrap();
    let mut outs = Vec::new();
    for (budget, read) in [(20_000, "in batches"), (1 << 30, "whole")] {
        let mut ctx = context(dir.path());
        ctx.memory_budget = budget;
        ctx.batch_rows = 300;
        let out = stage.run(&Inputs::default(), &ctx).unwrap();
        balanced(&out);
        assert_eq!(out.summary["files"][0]["read"], read);
        outs.push(out);
    }
    assert!(matches!(
        outs[0].ports["table"].source(),
        Some(Source::Stored(_))
    ));
    let streamed = table(&outs[0], "table").to_batch().unwrap();
    assert_eq!(streamed.num_rows(), 2_001);
    assert_eq!(
        streamed.schema().field_with_name("x").unwrap().data_type(),
        &arrow::datatypes::DataType::Float64
    );
    assert_eq!(streamed, table(&outs[1], "table").to_batch().unwrap());
    let bad = table(&outs[0], "quarantined").to_batch().unwrap();
    assert_eq!(bad, table(&outs[1], "quarantined").to_batch().unwrap());
    let lines = bad
        .column_by_name(LINE_COLUMN)
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    assert_eq!(lines.values(), &[2_001, 2_004]);
}

#[test]
fn a_csv_file_over_the_budget_streams_in_chunks_unless_its_types_are_unsure() {
    let dir = tempfile::tempdir().unwrap();
    let rows: String = (0..2_000).map(|i| format!("{i},{}\n", i % 2)).collect();
    write(dir.path(), "a.csv", format!("x,y\n{rows}").as_bytes());
    // the last chunk's `x` is not a number: whole-file inference says text
    write(
        dir.path(),
        "b.csv",
        format!("x,y\n{rows}yes,1\n").as_bytes(),
    );
    let mut ctx = context(dir.path());
    ctx.memory_budget = 20_000;
    ctx.batch_rows = 300;
    let stage = build(json!({"path": "a.csv", "label": "y"})).unwrap();
    let out = stage.run(&Inputs::default(), &ctx).unwrap();
    assert!(
        matches!(out.ports["table"].source(), Some(Source::Stored(_))),
        "streamed into the store"
    );
    let table = table(&out, "table");
    assert_eq!(table.num_rows(), 2_000);
    assert_eq!(
        table.schema().field_with_name("x").unwrap().data_type(),
        &arrow::datatypes::DataType::Int64
    );
    let stage = build(json!({"path": "b.csv", "label": "y"})).unwrap();
    let e = stage_error(stage.as_ref(), &ctx);
    assert!(
        e.contains("whole") && e.contains("CSV whose column types differ"),
        "{e}"
    );
}

#[test]
fn ipc_files_of_one_schema_stream_in_batches_with_what_parquet_gives() {
    // two files, each of several record batches, with dictionary strings and
    // a row that breaks the contract
    let dir = tempfile::tempdir().unwrap();
    let batch = |from: i64, n: i64| {
        let keys = arrow::array::Int32Array::from_iter_values((0..n).map(|i| (i % 2) as i32));
        let words = arrow::array::StringArray::from(vec!["a", "b"]);
        let dict = arrow::array::DictionaryArray::try_new(keys, Arc::new(words)).unwrap();
        RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(arrow::array::Int64Array::from_iter_values(from..from + n))
                    as arrow::array::ArrayRef,
            ),
            ("s", Arc::new(dict) as arrow::array::ArrayRef),
        ])
        .unwrap()
    };
    for (f, from) in [("a", 0), ("b", 100)] {
        let parts = [batch(from, 40), batch(from + 40, 1), batch(from + 41, 59)];
        let file = std::fs::File::create(dir.path().join(format!("{f}.arrow"))).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(file, &parts[0].schema()).unwrap();
        parts.iter().for_each(|p| w.write(p).unwrap());
        w.finish().unwrap();
        let whole = arrow::compute::concat_batches(&parts[0].schema(), &parts).unwrap();
        write_parquet(dir.path(), &format!("{f}.parquet"), &whole);
    }
    write(
        dir.path(),
        "contract.yaml",
        b"columns:\n  x: {type: int, max: 150}\n  s: {type: string, role: label}\n",
    );
    let mut outs = Vec::new();
    for (glob, rows) in [("*.parquet", 65_536), ("*.arrow", 7), ("*.arrow", 65_536)] {
        let mut ctx = context(dir.path());
        ctx.batch_rows = rows;
        let stage = build(json!({"path": glob, "schema": "contract.yaml"})).unwrap();
        let out = stage.run(&Inputs::default(), &ctx).unwrap();
        balanced(&out);
        assert!(
            matches!(out.ports["table"].source(), Some(Source::Stored(_))),
            "{glob}: streamed into the store"
        );
        assert_eq!(out.summary["files"][0]["read"], "in batches", "{glob}");
        outs.push(out);
    }
    let kept = table(&outs[0], "table").to_batch().unwrap();
    assert_eq!(kept.num_rows(), 151);
    assert_eq!(table(&outs[0], "quarantined").num_rows(), 49);
    for out in &outs[1..] {
        assert_eq!(table(out, "table").to_batch().unwrap(), kept);
        assert_eq!(
            table(out, "quarantined").to_batch().unwrap(),
            table(&outs[0], "quarantined").to_batch().unwrap()
        );
    }
}
