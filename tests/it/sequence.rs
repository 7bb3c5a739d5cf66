//! Sequence encoders (`kind: tcn`, `kind: rnn`) through the `gigo` binary
//! on a real UCR archive set (ItalyPowerDemand: 67 training and 1,029 test
//! series of 24 steps, its official split), with the layout inferred from
//! the column names; and the errors of a broken layout.
use crate::common::*;

/// ItalyPowerDemand with `encoder`, trained on the official training rows.
fn italy(encoder: &str) -> String {
    format!(
        r#"
name: italy
seed: 0
stages:
  d:
    type: ingest
    path: {data}
    label: label
  split:
    type: split
    inputs: d
    test_by: {{column: split, values: [test]}}
    valid_fraction: 0
  train:
    type: train
    inputs: {{table: split.train, test: split.test}}
    encoder: {encoder}
    lr: 0.003
    epochs: 200
    batch_size: 16
  report:
    type: report
    inputs: [train.summary]
"#,
        data = root()
            .join("../shared/datasets/sequences/ItalyPowerDemand.parquet")
            .display()
    )
}

fn figure(section: &serde_json::Value, label: &str) -> serde_json::Value {
    section["figures"]
        .as_array()
        .expect("figures")
        .iter()
        .find(|f| f["label"] == label)
        .unwrap_or_else(|| panic!("no figure `{label}` in {section}"))["value"]
        .clone()
}

/// Both kinds learn the series well above chance (0.5) and at least as well
/// as the 1-nearest-neighbour baseline of the archive (0.955) less a margin,
/// and the report says what the encoder saw.
#[test]
fn sequence_encoders_learn_italy_power_demand_from_column_names() {
    let dir = tempfile::tempdir().unwrap();
    for (id, encoder, receptive) in [
        ("tcn", "{kind: tcn, depth: 4, width: 32}", 61),
        ("rnn", "{kind: rnn, depth: 1, width: 32}", 24),
    ] {
        let file = write(dir.path(), &format!("{id}.yaml"), &italy(encoder));
        let o = gigo(dir.path(), &["run", &file, "--run-id", id]);
        assert_eq!(o.status.code(), Some(0), "{id}: {}", stderr(&o));
        let run = dir.path().join("runs").join(id);
        // the `split` column is not a step: left out, and said so
        let record = run_record(dir.path(), id);
        let said = record["stages"]["train"]["messages"].to_string();
        assert!(
            said.contains("1 feature column(s) not named as steps are not read: split"),
            "{said}"
        );
        let s = run_summary(&run, "train");
        let acc = s["scores"]["test"]["accuracy"].as_f64().unwrap();
        assert!(acc >= 0.93, "{id}: test accuracy {acc}");
        assert_eq!(s["encoder"]["sequence"]["length"], 24, "{id}");
        assert_eq!(s["encoder"]["sequence"]["channels"], 1, "{id}");
        let section = report_section(&run, "train");
        assert_eq!(
            figure(&section, "receptive field (steps)"),
            receptive,
            "{id}"
        );
        assert_eq!(figure(&section, "sequence"), "1 channel(s) x 24 steps");
    }
}

/// A broken layout is an error that names the column, before training.
#[test]
fn a_sequence_missing_a_step_names_it() {
    let dir = tempfile::tempdir().unwrap();
    // t0..t23 without t7
    let steps: Vec<String> = (0..24)
        .filter(|&j| j != 7)
        .map(|j| format!("t{j}"))
        .collect();
    let text = italy("{kind: tcn}").replace(
        "    encoder:",
        &format!("    features: [{}]\n    encoder:", steps.join(", ")),
    );
    let file = write(dir.path(), "gap.yaml", &text);
    let o = gigo(dir.path(), &["run", &file]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(err.contains("train") && err.contains("`t7`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // a shape that does not match the columns names the parameter
    let text = italy("{kind: rnn, sequence: {channels: 2, length: 24}}");
    let file = write(dir.path(), "shape.yaml", &text);
    let o = gigo(dir.path(), &["run", &file]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("encoder.sequence") && err.contains("need 48"),
        "{err}"
    );
}

/// A training series with no finite value is an error naming its row.
#[test]
fn an_all_missing_series_names_its_row() {
    let dir = tempfile::tempdir().unwrap();
    // row 5's series is empty
    let mut csv = String::from("t0,t1,t2,label\n");
    for i in 0..40 {
        csv.push_str(&match i {
            5 => ",,,1\n".to_string(),
            _ => format!("{},{},{},{}\n", i, i + 1, i + 2, i % 2),
        });
    }
    let data = write(dir.path(), "seq.csv", &csv);
    let text = format!(
        r#"
name: nan_series
seed: 0
stages:
  d:
    type: ingest
    path: {data}
    label: label
  train:
    type: train
    inputs: d
    encoder: {{kind: tcn, depth: 1, width: 4}}
    epochs: 1
"#
    );
    let file = write(dir.path(), "nan.yaml", &text);
    let o = gigo(dir.path(), &["run", &file]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(
        err.contains("row 5") && err.contains("channel 0") && err.contains("`t0` .. `t2`"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
