//! Unit tests of the profile stage.

use super::*;
use crate::testing::ctx;
use gigo_pipeline::samples::every_type_batch;
use gigo_pipeline::summary::Section;
use serde_json::{Value, json};

/// The sample with roles as `ingest` sets them: `label`, the rest features.
fn every_type_table() -> Table {
    let batch = every_type_batch();
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let role = if f.name() == "label" {
                Role::Label
            } else {
                Role::Feature
            };
            field_with_role(f.as_ref().clone(), role)
        })
        .collect();
    Table::from_batch(
        arrow::array::RecordBatch::try_new(Arc::new(Schema::new(fields)), batch.columns().to_vec())
            .unwrap(),
    )
}

/// Profiles `table`; the output table lives in the returned directory.
fn profile(table: Table) -> Result<(StageOutput, tempfile::TempDir), StageError> {
    let mut registry = Registry::new();
    register(&mut registry);
    let stage = registry.get("profile").unwrap().build(&json!({})).unwrap();
    let mut inputs = Inputs::default();
    inputs.push("table", table.into());
    let dir = tempfile::tempdir().unwrap();
    let out = stage.run(&inputs, &ctx("profile", 1, dir.path()))?;
    Ok((out, dir))
}

fn column<'a>(out: &'a StageOutput, name: &str) -> &'a Value {
    out.summary["columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

#[test]
fn every_column_type_is_profiled_and_unusable_features_are_named() {
    let (out, _dir) = profile(every_type_table()).unwrap();
    for c in out.summary["columns"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let nulls = if name == "label" { 0 } else { 1 };
        assert_eq!(c["nulls"], nulls, "{name}");
        assert_eq!(c["rows"], 4, "{name}");
    }
    let price = column(&out, "price");
    assert_eq!(
        (price["min"].as_f64(), price["max"].as_f64()),
        (Some(-0.05), Some(1234.56))
    );
    let day = column(&out, "day");
    assert_eq!(
        (day["min_text"].as_str(), day["max_text"].as_str()),
        (Some("2022-01-08"), Some("2024-10-04"))
    );
    assert_eq!(day["min"], 19_000.0);
    let seen = column(&out, "seen");
    assert_eq!(seen["min_text"], "2020-09-13T12:26:40");
    assert_eq!(seen["max_text"], "2023-11-14T22:13:21");
    let utc = column(&out, "seen_utc");
    assert!(
        utc["max_text"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-14T22:13:22"),
        "{utc}"
    );
    assert_eq!(column(&out, "wait")["max_text"], "PT3600S");
    assert_eq!(column(&out, "at")["max_text"], "01:00:00");
    assert_eq!(column(&out, "colour")["distinct"], 2);
    for (name, distinct, lengths) in [
        ("tags", 3, Some((0, 3))),
        ("point", 3, None),
        ("points", 3, Some((0, 3))),
    ] {
        let c = column(&out, name);
        assert_eq!(c["kind"], "other", "{name}");
        assert_eq!(c["distinct"], distinct, "{name}");
        let got = c["min_length"].as_u64().zip(c["max_length"].as_u64());
        assert_eq!(got, lengths, "{name}");
    }
    // Only the decimal and the dictionary are kNN features; the others are named.
    let skipped: Vec<&str> = out.summary["not_features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["column"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        [
            "day", "seen", "seen_utc", "wait", "at", "tags", "point", "points"
        ]
    );
    let section = Section::from_summary(&out.summary).unwrap().unwrap();
    let alert = section
        .alerts
        .iter()
        .find(|a| a.kind == "not_features")
        .unwrap();
    assert!(
        alert.message.contains("`seen_utc` (Timestamp("),
        "{}",
        alert.message
    );
    let t = out.ports["table"].source().expect("a table");
    let nn = t.load(1 << 16).unwrap().to_batch().unwrap();
    assert_eq!(nn.column_by_name("nn_distance").unwrap().null_count(), 0);
}

#[test]
fn a_table_of_only_unusable_features_is_still_profiled() {
    let batch = every_type_batch();
    let keep: Vec<usize> = (1..8).collect();
    let (out, _dir) = profile(Table::from_batch(batch.project(&keep).unwrap())).unwrap();
    assert_eq!(out.summary["not_features"].as_array().unwrap().len(), 7);
    assert_eq!(column(&out, "tags")["distinct"], 3);
}
