//! Sequence encoders (`kind: tcn`, `rnn`, `transformer`) through the
//! `gigo` binary on a real UCR archive set (ItalyPowerDemand: 67 training
//! and 1,029 test series of 24 steps, its official split), with the layout
//! inferred from the column names; ragged series masked; the Transformer
//! on tabular rows; and the errors of a broken layout.
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

/// A pipeline that ingests the CSV file `data` (label `label`) and trains
/// on it with `params` (the train stage's parameters, one per line), then
/// reports.
fn trained_on(data: &str, params: &[&str]) -> String {
    let params: String = params.iter().map(|l| format!("    {l}\n")).collect();
    format!(
        "name: csv\nseed: 0\nstages:\n  d:\n    type: ingest\n    path: {data}\n    label: label\n  \
         train:\n    type: train\n    inputs: d\n{params}  report:\n    type: report\n    \
         inputs: [train.summary]\n"
    )
}

/// Runs `file`, which must fail with a message and no panic: its stderr.
fn refused(dir: &std::path::Path, file: &str) -> String {
    let o = gigo(dir, &["run", file]);
    assert_ne!(o.status.code(), Some(0));
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// Runs `file` as run `id`, which must succeed: the run's directory.
fn ran(dir: &std::path::Path, file: &str, id: &str) -> std::path::PathBuf {
    let o = gigo(dir, &["run", file, "--run-id", id]);
    assert_eq!(o.status.code(), Some(0), "{id}: {}", stderr(&o));
    dir.join("runs").join(id)
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
    for (id, encoder, receptive, epochs) in [
        ("tcn", "{kind: tcn, depth: 4, width: 32}", 61, 80),
        ("rnn", "{kind: rnn, depth: 1, width: 32}", 24, 80),
        (
            "transformer",
            "{kind: transformer, depth: 2, width: 32}",
            24,
            60,
        ),
    ] {
        let text = italy(encoder).replace("epochs: 200", &format!("epochs: {epochs}"));
        let file = write(dir.path(), &format!("{id}.yaml"), &text);
        let run = ran(dir.path(), &file, id);
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
    let err = refused(dir.path(), &write(dir.path(), "gap.yaml", &text));
    assert!(err.contains("train") && err.contains("`t7`"), "{err}");
    // a shape that does not match the columns names the parameter
    let text = italy("{kind: rnn, sequence: {channels: 2, length: 24}}");
    let err = refused(dir.path(), &write(dir.path(), "shape.yaml", &text));
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
    let text = trained_on(
        &data,
        &["encoder: {kind: tcn, depth: 1, width: 4}", "epochs: 1"],
    );
    let err = refused(dir.path(), &write(dir.path(), "nan.yaml", &text));
    assert!(
        err.contains("row 5") && err.contains("channel 0") && err.contains("`t0` .. `t2`"),
        "{err}"
    );
}

/// Two classes of series (a rising and a falling ramp, with a wiggle) of
/// 8 to 16 steps, some steps missing in the middle: each row's values (to
/// its own length; `None` where a step is missing) and its class.
fn ragged_rows(rows: usize) -> Vec<(Vec<Option<f64>>, usize)> {
    let mut state = 12345u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as f64 / (1u64 << 31) as f64
    };
    (0..rows)
        .map(|i| {
            let class = i % 2;
            let len = 8 + (next() * 9.0) as usize;
            let steps = (0..len)
                .map(|t| {
                    let gap = t > 0 && t + 1 < len && next() < 0.1;
                    let ramp = t as f64 / len as f64;
                    let v = if class == 0 { ramp } else { 1.0 - ramp };
                    let v = v + 0.1 * (t as f64 * 1.7).sin() + 0.1 * next();
                    // as the CSV file writes it
                    (!gap).then(|| format!("{v:.4}").parse().unwrap())
                })
                .collect();
            (steps, class)
        })
        .collect()
}

/// The longest series of [`ragged_rows`].
const RAGGED_LENGTH: usize = 16;

/// [`ragged_rows`] as wide CSV columns `t0 .. t15` (the rest of each row
/// empty): `(csv, missing steps)`.
fn ragged_series(rows: usize) -> (String, usize) {
    let mut csv = (0..RAGGED_LENGTH)
        .map(|t| format!("t{t},"))
        .collect::<String>()
        + "label\n";
    let mut missing = 0;
    for (steps, class) in ragged_rows(rows) {
        for t in 0..RAGGED_LENGTH {
            match steps.get(t).copied().flatten() {
                Some(v) => csv.push_str(&format!("{v},")),
                None => {
                    missing += 1;
                    csv.push(',');
                }
            }
        }
        csv.push_str(&format!("{class}\n"));
    }
    (csv, missing)
}

/// Ragged series (empty trailing cells, gaps) are masked, not imputed: each
/// kind learns them, and the report counts the masked steps.
#[test]
fn ragged_series_are_masked_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (csv, missing) = ragged_series(120);
    let data = write(dir.path(), "ragged.csv", &csv);
    for (id, encoder) in [
        ("rnn", "{kind: rnn, depth: 1, width: 16}"),
        ("tcn", "{kind: tcn, depth: 3, width: 16}"),
        (
            "causal",
            "{kind: transformer, depth: 1, width: 16, causal: true}",
        ),
    ] {
        let encoder = format!("encoder: {encoder}");
        let params = [encoder.as_str(), "lr: 0.01", "epochs: 30", "batch_size: 16"];
        let text = trained_on(&data, &params);
        let file = write(dir.path(), &format!("{id}.yaml"), &text);
        let s = run_summary(&ran(dir.path(), &file, id), "train");
        assert_eq!(s["encoder"]["masked_steps"], missing, "{id}");
        let acc = s["scores"]["train"]["accuracy"].as_f64().unwrap();
        assert!(acc >= 0.9, "{id}: training accuracy {acc}");
        let said = run_record(dir.path(), id)["stages"]["train"]["messages"].to_string();
        assert!(
            said.contains(&format!("{missing} step(s) of the series have no value")),
            "{said}"
        );
    }
}

/// On plain tabular rows the Transformer makes one token per feature (and
/// a class token); a causal one there is an error naming the parameter.
#[test]
fn a_transformer_reads_tabular_rows_as_feature_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("a,b,c,label\n");
    for i in 0..200 {
        let (a, b) = (
            (i * 37 % 101) as f64 / 50.0 - 1.0,
            (i * 53 % 89) as f64 / 44.0 - 1.0,
        );
        let c = (i * 7 % 13) as f64;
        csv.push_str(&format!("{a},{b},{c},{}\n", u8::from(a * b > 0.0)));
    }
    let data = write(dir.path(), "xor.csv", &csv);
    let pipeline = |encoder: &str| {
        let encoder = format!("encoder: {encoder}");
        trained_on(
            &data,
            &[&encoder, "lr: 0.003", "epochs: 60", "batch_size: 16"],
        )
    };
    let file = write(
        dir.path(),
        "t.yaml",
        &pipeline("{kind: transformer, depth: 2, width: 16}"),
    );
    let run = ran(dir.path(), &file, "t");
    let s = run_summary(&run, "train");
    // the sign of a * b: no single feature tells, attention between them does
    let acc = s["scores"]["train"]["accuracy"].as_f64().unwrap();
    assert!(acc >= 0.9, "training accuracy {acc}");
    assert_eq!(s["encoder"]["sequence"], serde_json::Value::Null);
    assert_eq!(figure(&report_section(&run, "train"), "tokens"), 4);
    let text = pipeline("{kind: transformer, causal: true}");
    let err = refused(dir.path(), &write(dir.path(), "c.yaml", &text));
    assert!(
        err.contains("encoder.causal") && err.contains("train"),
        "{err}"
    );
}

/// A list column is a channel: the same ragged series as a JSON lines
/// array (read whole) and a Parquet `List<Float64>` (streamed, its lengths
/// measured first) train exactly the model that wide CSV columns with empty
/// cells train: the same scores, the same masked steps; `ingest` counts
/// what it padded.
#[test]
fn list_columns_train_as_the_same_sequences_as_wide_columns() {
    use arrow::array::{ArrayRef, Int64Array, ListArray, RecordBatch};
    use arrow::datatypes::Float64Type;
    let dir = tempfile::tempdir().unwrap();
    let rows = ragged_rows(80);
    let (csv, missing) = ragged_series(80);
    let wide = write(dir.path(), "wide.csv", &csv);
    let jsonl: String = rows
        .iter()
        .map(|(steps, class)| {
            let x: Vec<String> = steps
                .iter()
                .map(|v| v.map_or("null".into(), |v| v.to_string()))
                .collect();
            format!("{{\"x\": [{}], \"label\": {class}}}\n", x.join(", "))
        })
        .collect();
    let json = write(dir.path(), "lists.jsonl", &jsonl);
    let x = ListArray::from_iter_primitive::<Float64Type, _, _>(
        rows.iter().map(|(steps, _)| Some(steps.clone())),
    );
    let label = Int64Array::from_iter_values(rows.iter().map(|(_, c)| *c as i64));
    let batch = RecordBatch::try_from_iter([
        ("x", std::sync::Arc::new(x) as ArrayRef),
        ("label", std::sync::Arc::new(label) as ArrayRef),
    ])
    .unwrap();
    let pq = dir.path().join("lists.parquet");
    let mut w = parquet::arrow::ArrowWriter::try_new(
        std::fs::File::create(&pq).unwrap(),
        batch.schema(),
        None,
    )
    .unwrap();
    // several row groups, read in batches of 7 rows
    for at in (0..batch.num_rows()).step_by(30) {
        w.write(&batch.slice(at, 30.min(batch.num_rows() - at)))
            .unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
    let params = [
        "encoder: {kind: rnn, depth: 1, width: 8}",
        "lr: 0.01",
        "epochs: 5",
        "batch_size: 16",
    ];
    let padded = rows.iter().filter(|(s, _)| s.len() < RAGGED_LENGTH).count();
    let mut scores = Vec::new();
    for (id, data) in [
        ("wide", wide),
        ("jsonl", json),
        ("parquet", pq.display().to_string()),
    ] {
        let file = write(
            dir.path(),
            &format!("{id}.yaml"),
            &trained_on(&data, &params),
        );
        let o = gigo(
            dir.path(),
            &["run", &file, "--run-id", id, "--batch-rows", "7"],
        );
        assert_eq!(o.status.code(), Some(0), "{id}: {}", stderr(&o));
        let run = dir.path().join("runs").join(id);
        let s = run_summary(&run, "train");
        assert_eq!(s["encoder"]["masked_steps"], missing, "{id}");
        assert_eq!(
            s["encoder"]["sequence"]["length"], RAGGED_LENGTH,
            "{id}: {s}"
        );
        scores.push((id, s["scores"].clone(), s["history"].clone()));
        if id != "wide" {
            let d = run_summary(&run, "d");
            assert_eq!(d["lists"]["columns"], serde_json::json!(["x"]), "{id}");
            assert_eq!(d["lists"]["length"], RAGGED_LENGTH, "{id}");
            assert_eq!(d["lists"]["padded_rows"], padded, "{id}");
            assert_eq!(d["lists"]["null_steps"], missing, "{id}");
            let said = run_record(dir.path(), id)["stages"]["d"]["messages"].to_string();
            assert!(
                said.contains("list column(s) `x` read as 16 step column(s)"),
                "{said}"
            );
        }
    }
    for (id, s, h) in &scores[1..] {
        assert_eq!(
            (s, h),
            (&scores[0].1, &scores[0].2),
            "{id} against the wide columns"
        );
    }
}
