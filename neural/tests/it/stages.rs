//! The `pretrain` and `train` stages on Arrow tables: parameters are checked
//! all at once, outputs match their ports, the model port reloads to the same
//! predictions, fine-tuning takes the pretrained encoder, user errors are
//! clear messages, same seed gives the same output.

use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_ml::{Catalogue, Matrix, TrainSet, TrainedModel};
use gigo_neural::saved::EncoderModel;
use gigo_pipeline::summary::Section;
use gigo_pipeline::{
    Artifact, Inputs, NoProgress, Registry, Role, StageContext, StageOutput, Table, field_with_role,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

fn registry() -> Registry {
    let mut r = Registry::new();
    gigo_neural::register(&mut r);
    r
}

fn ctx(id: &str, seed: u64, dir: &std::path::Path) -> StageContext {
    StageContext::new(
        id,
        seed,
        dir.join("scratch"),
        dir.to_path_buf(),
        dir.join("run"),
        Arc::new(NoProgress),
    )
}

/// `n` rows: id, features a, b (numeric) and c (text), a label `y` ("no" /
/// "yes", decided by a + b), and a weight column.
fn table(n: usize, seed: u64) -> Table {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let a: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let b: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    let c: Vec<&str> = (0..n).map(|i| ["u", "v", "w"][i % 3]).collect();
    let y: Vec<&str> = a
        .iter()
        .zip(&b)
        .map(|(a, b)| if a + b > 0.0 { "yes" } else { "no" })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("id", DataType::Int64, false), Role::Id),
        field_with_role(Field::new("a", DataType::Float64, false), Role::Feature),
        field_with_role(Field::new("b", DataType::Float64, false), Role::Feature),
        field_with_role(Field::new("c", DataType::Utf8, false), Role::Feature),
        field_with_role(Field::new("y", DataType::Utf8, true), Role::Label),
        field_with_role(Field::new("w", DataType::Float64, false), Role::Weight),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(a)),
            Arc::new(Float64Array::from(b)),
            Arc::new(StringArray::from(c)),
            Arc::new(StringArray::from(y)),
            Arc::new(Float64Array::from(vec![1.0; n])),
        ],
    )
    .unwrap();
    Table::from_batch(batch)
}

fn table_of(out: &StageOutput, port: &str) -> Arc<Table> {
    match &out.ports[port] {
        Artifact::Table(t) => t.clone(),
        other => panic!("{port} is {:?}", other.kind()),
    }
}

fn model_of(out: &StageOutput, port: &str) -> Arc<gigo_pipeline::Model> {
    match &out.ports[port] {
        Artifact::Model(m) => m.clone(),
        other => panic!("{port} is {:?}", other.kind()),
    }
}

fn column_f64(t: &Table, name: &str) -> Vec<f64> {
    let b = t.to_batch().unwrap();
    let c = b.column_by_name(name).unwrap();
    c.as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .values()
        .to_vec()
}

fn run(
    stage_type: &str,
    params: serde_json::Value,
    inputs: &Inputs,
    seed: u64,
) -> Result<StageOutput, String> {
    let dir = tempfile::tempdir().unwrap();
    let stage = registry()
        .get(stage_type)
        .unwrap()
        .build(&params)
        .map_err(|p| format!("{p:?}"))?;
    stage
        .run(inputs, &ctx("s", seed, dir.path()))
        .map_err(|e| e.to_string())
}

#[test]
fn parameters_are_checked_all_at_once_with_their_paths() {
    let r = registry();
    let problems = r
        .get("train")
        .unwrap()
        .build(&json!({
            "lr": -1, "epochs": 0, "gce_q": 2.0, "dropout": 0.5,
            "encoder": {"width": 30, "norm": "group", "groups": 8},
            "clip_norm": 1.0, "clip_value": 1.0
        }))
        .err()
        .unwrap();
    let paths: Vec<String> = problems.iter().map(|p| p.path.join(".")).collect();
    for want in [
        "dropout",
        "lr",
        "epochs",
        "gce_q",
        "encoder.groups",
        "clip_value",
    ] {
        assert!(
            paths.iter().any(|p| p == want),
            "{want} missing from {paths:?}"
        );
    }
    assert!(
        problems[0]
            .help
            .as_deref()
            .unwrap_or("")
            .contains("encoder")
            || problems[0].message.contains("dropout")
    );
    let problems = r
        .get("pretrain")
        .unwrap()
        .build(&json!({"method": "bert"}))
        .err()
        .unwrap();
    assert!(problems[0].message.contains("method"), "{problems:?}");
    let bad_batch = r
        .get("train")
        .unwrap()
        .build(&json!({"batch_size": "half"}))
        .err()
        .unwrap();
    assert_eq!(bad_batch[0].path, vec!["batch_size"]);
}

#[test]
fn train_outputs_predictions_and_a_model_that_reloads_to_the_same_predictions() {
    let mut inputs = Inputs::default();
    inputs.push("table", table(300, 1).into());
    inputs.push("valid", table(100, 2).into());
    inputs.push("test", table(100, 3).into());
    let params =
        json!({"epochs": 15, "lr": 0.01, "batch_size": 32, "encoder": {"depth": 2, "width": 16}});
    let out = run("train", params.clone(), &inputs, 7).unwrap();
    for port in ["train", "valid", "test"] {
        let t = table_of(&out, port);
        assert_eq!(t.num_rows(), if port == "train" { 300 } else { 100 });
        assert_eq!(
            t.columns_with_role(Role::Added),
            vec!["prob_no", "prob_yes", "predicted"]
        );
    }
    let test = table_of(&out, "test");
    let (p_no, p_yes) = (column_f64(&test, "prob_no"), column_f64(&test, "prob_yes"));
    assert!(
        p_no.iter()
            .zip(&p_yes)
            .all(|(a, b)| (a + b - 1.0).abs() < 1e-5)
    );

    let section = Section::from_summary(&out.summary).unwrap().unwrap();
    let test_acc = section.metrics["test_accuracy"].as_f64().unwrap();
    assert!(test_acc > 0.9, "test accuracy {test_acc}");
    assert!(section.metrics.contains_key("final_valid_loss"));
    assert_eq!(
        out.summary["history"]["epochs"].as_array().unwrap().len(),
        15
    );

    // reload: same predictions from the model port alone
    let model = model_of(&out, "model");
    assert_eq!(model.kind, "neural_network");
    let mut catalogue = Catalogue::classic();
    gigo_neural::network::register(&mut catalogue);
    let cfg =
        TrainedModel::from_parts(&catalogue, &model.kind, &model.config, &model.weights).unwrap();
    assert_eq!(cfg.classes, vec!["no", "yes"]);
    assert_eq!(cfg.params["epochs"], 15);
    let batch = test.to_batch().unwrap();
    let x = cfg.encode(&[batch]).unwrap();
    let probs = cfg.predict_proba(&x).unwrap();
    for (i, want) in p_yes.iter().enumerate() {
        assert!((probs.get(i, 1) as f64 - want).abs() < 1e-6);
    }

    // same seed, same outputs and weights; another seed, other weights
    let again = run("train", params.clone(), &inputs, 7).unwrap();
    assert_eq!(model_of(&again, "model").weights, model.weights);
    assert_eq!(column_f64(&table_of(&again, "test"), "prob_yes"), p_yes);
    let other = run("train", params, &inputs, 8).unwrap();
    assert_ne!(model_of(&other, "model").weights, model.weights);
}

#[test]
fn a_test_table_without_labels_is_predicted_not_scored() {
    let t = table(40, 2);
    let b = t.to_batch().unwrap();
    let unlabelled = Table::from_batch(b.project(&[0, 1, 2, 3, 5]).unwrap());
    let mut inputs = Inputs::default();
    inputs.push("table", table(60, 1).into());
    inputs.push("test", unlabelled.clone().into());
    let out = run("train", json!({"epochs": 2}), &inputs, 1).unwrap();
    assert_eq!(table_of(&out, "test").num_rows(), 40);
    let section = Section::from_summary(&out.summary).unwrap().unwrap();
    assert!(!section.metrics.contains_key("test_accuracy"));
    // a validation table must have labels
    let mut inputs = Inputs::default();
    inputs.push("table", table(60, 1).into());
    inputs.push("valid", unlabelled.into());
    let err = run("train", json!({"epochs": 2}), &inputs, 1).unwrap_err();
    assert!(
        err.contains("`valid` table has no label column `y`"),
        "{err}"
    );
}

#[test]
fn unconnected_valid_and_test_give_empty_tables() {
    let mut inputs = Inputs::default();
    inputs.push("table", table(60, 1).into());
    let out = run("train", json!({"epochs": 2}), &inputs, 1).unwrap();
    assert_eq!(table_of(&out, "valid").num_rows(), 0);
    assert_eq!(table_of(&out, "test").num_rows(), 0);
    assert_eq!(
        table_of(&out, "valid").schema(),
        table_of(&out, "train").schema()
    );
}

#[test]
fn pretrain_then_fine_tune() {
    let mut all = Inputs::default();
    all.push("table", table(200, 1).into());
    all.push("table", table(100, 4).into());
    let out = run(
        "pretrain",
        json!({"method": "vime", "epochs": 5, "encoder": {"depth": 2, "width": 8}}),
        &all,
        3,
    )
    .unwrap();
    let emb = table_of(&out, "embeddings");
    assert_eq!(emb.num_rows(), 300);
    assert_eq!(
        emb.columns_with_role(Role::Feature),
        (0..8).map(|i| format!("emb_{i}")).collect::<Vec<_>>()
    );
    assert_eq!(emb.label_column().unwrap(), "y");
    let encoder = model_of(&out, "model");
    assert_eq!(encoder.kind, "neural_encoder");
    let (cfg, w) = EncoderModel::from_model(&encoder).unwrap();
    assert_eq!(cfg.feature_columns, vec!["a", "b", "c"]);
    assert_eq!(cfg.pretrain["method"], "vime");
    let section = Section::from_summary(&out.summary).unwrap().unwrap();
    assert!(section.metrics.contains_key("final_pretrain_loss"));

    // fine-tune from it: the encoder's architecture and features are used
    let mut inputs = Inputs::default();
    inputs.push("table", table(200, 1).into());
    inputs.push("pretrained", Artifact::Model(encoder.clone()));
    let tuned = run(
        "train",
        json!({"epochs": 3, "freeze_encoder": true}),
        &inputs,
        5,
    )
    .unwrap();
    let tuned_model = model_of(&tuned, "model");
    let c = gigo_ml::trained::PortConfig::read(&tuned_model.config).unwrap();
    let f = gigo_neural::Network::from_bytes(&tuned_model.weights)
        .unwrap()
        .fitted;
    assert_eq!(f.spec.params.width, 8);
    assert_eq!(c.provenance["pretrained"]["method"], "vime");
    assert_eq!(
        &f.weights.tensors[..w.tensors.len()],
        &w.tensors[..],
        "frozen"
    );
    // setting an encoder as well is a clear error
    let err = run(
        "train",
        json!({"epochs": 1, "encoder": {"width": 4}}),
        &inputs,
        5,
    )
    .unwrap_err();
    assert!(
        err.contains("`encoder`") && err.contains("pretrained"),
        "{err}"
    );
}

#[test]
fn user_errors_are_messages_naming_the_cause() {
    // no label column
    let t = table(30, 1);
    let b = t.to_batch().unwrap();
    let no_label = Table::from_batch(b.project(&[0, 1, 2, 3]).unwrap());
    let mut inputs = Inputs::default();
    inputs.push("table", no_label.into());
    let err = run("train", json!({"epochs": 1}), &inputs, 1).unwrap_err();
    assert!(err.contains("label"), "{err}");
    // a feature column that is not there
    let mut inputs = Inputs::default();
    inputs.push("table", table(30, 1).into());
    let err = run(
        "train",
        json!({"epochs": 1, "features": ["a", "zz"]}),
        &inputs,
        1,
    )
    .unwrap_err();
    assert!(err.contains("`zz`"), "{err}");
    // early stopping without validation rows
    let err = run(
        "train",
        json!({"epochs": 2, "early_stopping": {"patience": 1}}),
        &inputs,
        1,
    )
    .unwrap_err();
    assert!(
        err.contains("early_stopping") && err.contains("valid"),
        "{err}"
    );
    // a CNN whose image does not fit the features
    let err = run(
        "train",
        json!({"epochs": 1, "encoder": {"kind": "cnn", "image": [4, 4]}}),
        &inputs,
        1,
    )
    .unwrap_err();
    assert!(err.contains("encoder.image"), "{err}");
    // batch norm with online training
    let err = run(
        "train",
        json!({"epochs": 1, "batch_size": 1, "encoder": {"norm": "batch"}}),
        &inputs,
        1,
    )
    .unwrap_err();
    assert!(err.contains("batch_size"), "{err}");
    // a classifier on the pretrained port is accepted (its encoder is reused)
    let out = run(
        "train",
        json!({"epochs": 1, "encoder": {"width": 4}}),
        &inputs,
        1,
    )
    .unwrap();
    let mut again = Inputs::default();
    again.push("table", table(30, 1).into());
    again.push("pretrained", Artifact::Model(model_of(&out, "model")));
    assert!(run("train", json!({"epochs": 1}), &again, 1).is_ok());
}

#[test]
fn neural_classifier_plugs_into_cross_validation() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let n = 120;
    let mut x = Vec::new();
    let mut y = Vec::new();
    for i in 0..n {
        let c = (i % 3) as u32;
        x.push(c as f32 + 0.3 * rng.random_range(-1.0f32..1.0));
        x.push(rng.random_range(-1.0f32..1.0));
        y.push(c);
    }
    let x = Matrix::new(n, 2, x);
    let p = gigo_neural::train::TrainParams {
        epochs: 30,
        lr: 0.02,
        batch_size: gigo_neural::config::BatchSize::Rows(16),
        ..Default::default()
    };
    let probs = gigo_ml::cv::cross_val_predict_proba(&p, &TrainSet::new(&x, &y, 3), 4, 1).unwrap();
    let acc = (0..n)
        .filter(|&i| gigo_neural::data::argmax(probs.row(i)) == y[i] as usize)
        .count();
    assert!(acc > 110, "{acc} of {n} out-of-fold");
    let m = gigo_ml::Estimator::fit_boxed(&p, &TrainSet::new(&x, &y, 3), 1).unwrap();
    assert_eq!(m.name(), "neural_network");
    assert_eq!(m.n_features(), 2);
    assert!(m.predict_proba(&Matrix::zeros(1, 3)).is_err());
}

#[test]
fn a_missing_label_is_not_trained_on_and_an_unseen_class_counts_as_wrong() {
    let t = table(100, 1);
    let b = t.to_batch().unwrap();
    let y = b.column_by_name("y").unwrap();
    let y = y.as_any().downcast_ref::<StringArray>().unwrap();
    let with_gaps: StringArray = (0..y.len())
        .map(|i| if i % 10 == 0 { None } else { Some(y.value(i)) })
        .collect();
    let mut cols = b.columns().to_vec();
    cols[4] = Arc::new(with_gaps);
    let gappy = Table::from_batch(RecordBatch::try_new(b.schema(), cols).unwrap());
    let mut inputs = Inputs::default();
    inputs.push("table", gappy.into());
    let dir = tempfile::tempdir().unwrap();
    let stage = registry()
        .get("train")
        .unwrap()
        .build(&json!({"epochs": 2}))
        .unwrap();
    let c = ctx("t", 1, dir.path());
    let out = stage.run(&inputs, &c).unwrap();
    assert_eq!(
        table_of(&out, "train").num_rows(),
        100,
        "every row gets predictions"
    );
    assert!(
        c.messages()
            .iter()
            .any(|m| m.contains("10 training rows without a label"))
    );
}

/// `table(n, seed)` with every 11th label missing and weights 0.5, 1, 1.5.
fn ragged_table(n: usize, seed: u64) -> Table {
    let b = table(n, seed).to_batch().unwrap();
    let y = b.column_by_name("y").unwrap();
    let y = y.as_any().downcast_ref::<StringArray>().unwrap();
    let y: StringArray = (0..n).map(|i| (i % 11 != 4).then(|| y.value(i))).collect();
    let w = Float64Array::from_iter_values((0..n).map(|i| 0.5 + (i % 3) as f64 * 0.5));
    let mut cols = b.columns().to_vec();
    cols[4] = Arc::new(y);
    cols[5] = Arc::new(w);
    Table::from_batch(RecordBatch::try_new(b.schema(), cols).unwrap())
}

/// The table on `port`, loaded if it was written to the store.
fn rows_of(out: &StageOutput, port: &str) -> RecordBatch {
    match &out.ports[port] {
        Artifact::Table(t) => t.to_batch().unwrap(),
        Artifact::Stored(s) => s.load(1 << 20).unwrap().to_batch().unwrap(),
        other => panic!("{port} is {:?}", other.kind()),
    }
}

/// `table` written to the store under `dir`.
fn stored_copy(table: &Table, dir: &std::path::Path) -> Arc<gigo_pipeline::StoredTable> {
    std::fs::create_dir_all(dir).unwrap();
    let mut w =
        gigo_pipeline::TableWriter::create(&dir.join("t.parquet"), table.schema().clone()).unwrap();
    w.write(&table.to_batch().unwrap()).unwrap();
    Arc::new(w.finish().unwrap())
}

/// Runs `stage` on `table` in memory, stored and loaded (it fits), and
/// stored and streamed at batches of 65,536 and 999 rows, with the inputs
/// that `more` adds: the outputs (the logs say which runs streamed).
fn in_memory_and_streamed(
    stage: &dyn gigo_pipeline::Stage,
    table: &Table,
    stored: &Arc<gigo_pipeline::StoredTable>,
    dir: &std::path::Path,
    more: &dyn Fn(&mut Inputs),
) -> Vec<StageOutput> {
    let mut outs = Vec::new();
    let mut logs = Vec::new();
    for (input, budget, rows) in [
        (Artifact::from(table.clone()), 4 << 30, 65_536),
        (Artifact::Stored(stored.clone()), 4 << 30, 65_536),
        (Artifact::Stored(stored.clone()), 1 << 20, 65_536),
        (Artifact::Stored(stored.clone()), 1 << 20, 999),
    ] {
        let mut inputs = Inputs::default();
        inputs.push("table", input);
        more(&mut inputs);
        let mut c = ctx("s", 3, dir);
        c.memory_budget = budget;
        c.batch_rows = rows;
        outs.push(stage.run(&inputs, &c).unwrap());
        logs.push(c.messages().join("\n"));
    }
    assert!(!logs[1].contains("shuffle buffer"), "{}", logs[1]);
    assert!(logs[2].contains("reads them from the store"), "{}", logs[2]);
    outs
}

#[test]
fn a_table_over_the_budget_trains_from_the_store_with_the_in_memory_results() {
    // three chunks of the shuffle's grid, read one chunk per buffer
    let n = 140_000;
    let dir = tempfile::tempdir().unwrap();
    let table = ragged_table(n, 11);
    let stored = stored_copy(&table, dir.path());
    let params = json!({"epochs": 2, "batch_size": 500, "lr": 0.01, "shuffle_buffer": 65536,
                        "encoder": {"depth": 1, "width": 8}, "class_weights": "balanced"});
    let stage = registry().get("train").unwrap().build(&params).unwrap();
    let outs = in_memory_and_streamed(stage.as_ref(), &table, &stored, dir.path(), &|i| {
        i.push("valid", ragged_table(500, 12).into())
    });
    assert!(matches!(outs[2].ports["train"], Artifact::Stored(_)));
    let first = &outs[0];
    for (i, out) in outs.iter().enumerate().skip(1) {
        assert_eq!(
            model_of(out, "model").weights,
            model_of(first, "model").weights,
            "run {i}"
        );
        assert_eq!(rows_of(out, "train"), rows_of(first, "train"), "run {i}");
        assert_eq!(rows_of(out, "valid"), rows_of(first, "valid"), "run {i}");
        assert_eq!(out.summary, first.summary, "run {i}");
    }
    // it learnt, on the labelled rows only
    let section = Section::from_summary(&first.summary).unwrap().unwrap();
    let acc = section.metrics["train_accuracy"].as_f64().unwrap();
    assert!(acc > 0.9, "train accuracy {acc}");
    assert_eq!(rows_of(first, "train").num_rows(), n);
    // what cannot be streamed says why
    let stage = registry()
        .get("train")
        .unwrap()
        .build(&json!({"epochs": 1, "batch_size": "full", "shuffle_buffer": 65536}))
        .unwrap();
    let mut inputs = Inputs::default();
    inputs.push("table", Artifact::Stored(stored.clone()));
    inputs.push("valid", ragged_table(50, 12).into());
    let mut c = ctx("s", 3, dir.path());
    c.memory_budget = 1 << 20;
    let e = stage.run(&inputs, &c).unwrap_err().to_string();
    assert!(
        e.contains("batch_size") && e.contains("shuffle buffer"),
        "{e}"
    );
    assert_eq!(
        first.summary["history"]["epochs"][0]["steps"],
        json!((n - (0..n).filter(|i| i % 11 == 4).count()).div_ceil(500))
    );
}

#[test]
fn a_table_over_the_budget_pretrains_from_the_store_with_the_in_memory_results() {
    // three chunks of the shuffle's grid, read one chunk per buffer: swap
    // noise draws from the rows of the buffer, in memory as from the store
    let n = 140_000;
    let dir = tempfile::tempdir().unwrap();
    let table = table(n, 21);
    let stored = stored_copy(&table, dir.path());
    let params = json!({"epochs": 2, "batch_size": 1000, "shuffle_buffer": 65536,
                        "encoder": {"depth": 1, "width": 4}});
    let stage = registry().get("pretrain").unwrap().build(&params).unwrap();
    let outs = in_memory_and_streamed(stage.as_ref(), &table, &stored, dir.path(), &|_| {});
    assert!(matches!(outs[2].ports["embeddings"], Artifact::Stored(_)));
    // a stored table's embeddings are written as they come, held or not
    assert!(matches!(outs[1].ports["embeddings"], Artifact::Stored(_)));
    assert!(matches!(outs[0].ports["embeddings"], Artifact::Table(_)));
    let first = &outs[0];
    for (i, out) in outs.iter().enumerate().skip(1) {
        assert_eq!(
            model_of(out, "model").weights,
            model_of(first, "model").weights,
            "run {i}"
        );
        assert_eq!(
            rows_of(out, "embeddings"),
            rows_of(first, "embeddings"),
            "run {i}"
        );
        assert_eq!(out.summary, first.summary, "run {i}");
    }
    // the same rows as two stored tables: concatenated in the store, the same run
    let whole = table.to_batch().unwrap();
    let mut inputs = Inputs::default();
    for (i, (at, len)) in [(0, 70_000), (70_000, n - 70_000)].into_iter().enumerate() {
        let part = Table::from_batch(whole.slice(at, len));
        inputs.push(
            "table",
            Artifact::Stored(stored_copy(&part, &dir.path().join(format!("{i}")))),
        );
    }
    let mut c = ctx("s", 3, dir.path());
    c.memory_budget = 1 << 20;
    let two = stage.run(&inputs, &c).unwrap();
    assert_eq!(
        model_of(&two, "model").weights,
        model_of(first, "model").weights
    );
    assert_eq!(rows_of(&two, "embeddings"), rows_of(first, "embeddings"));
    assert_eq!(two.summary, first.summary);
    let emb = rows_of(first, "embeddings");
    assert_eq!(emb.num_rows(), n);
    assert!(emb.column_by_name("emb_3").is_some() && emb.column_by_name("a").is_none());
    let epochs = first.summary["history"]["epochs"].as_array().unwrap();
    assert_eq!(epochs[0]["steps"], json!(n.div_ceil(1000)));
    let loss = |e: usize| epochs[e]["train_loss"].as_f64().unwrap();
    assert!(loss(1) < loss(0), "{} then {}", loss(0), loss(1));
    // a batch larger than the buffer cannot be streamed, and says why
    let stage = registry()
        .get("pretrain")
        .unwrap()
        .build(&json!({"epochs": 1, "batch_size": "full", "shuffle_buffer": 65536}))
        .unwrap();
    let mut inputs = Inputs::default();
    inputs.push("table", Artifact::Stored(stored));
    let mut c = ctx("p", 5, dir.path());
    c.memory_budget = 1 << 20;
    let e = stage.run(&inputs, &c).unwrap_err().to_string();
    assert!(
        e.contains("batch_size") && e.contains("shuffle buffer"),
        "{e}"
    );
}

#[test]
fn validation_and_test_rows_over_the_budget_are_read_in_batches_with_the_held_figures() {
    let dir = tempfile::tempdir().unwrap();
    let stored = stored_copy(&ragged_table(20_000, 11), dir.path());
    // 40,000 rows of 5 encoded features: 0.8 MB encoded, over a quarter of 1 MB
    let big = stored_copy(&ragged_table(40_000, 12), &dir.path().join("v"));
    let params = json!({"epochs": 2, "batch_size": 500, "lr": 0.01,
                        "encoder": {"depth": 1, "width": 8},
                        "early_stopping": {"patience": 5}});
    let stage = registry().get("train").unwrap().build(&params).unwrap();
    let runs: Vec<(StageOutput, String)> = [4 << 30, 1 << 20]
        .into_iter()
        .map(|budget| {
            let mut inputs = Inputs::default();
            inputs.push("table", Artifact::Stored(stored.clone()));
            inputs.push("valid", Artifact::Stored(big.clone()));
            inputs.push("test", Artifact::Stored(big.clone()));
            let mut c = ctx("s", 3, dir.path());
            c.memory_budget = budget;
            c.batch_rows = 999;
            let out = stage.run(&inputs, &c).unwrap();
            (out, c.messages().join("\n"))
        })
        .collect();
    let (held, read) = (&runs[0], &runs[1]);
    assert!(!held.1.contains("read in batches"), "{}", held.1);
    for port in ["valid", "test"] {
        let line = format!("the `{port}` rows' features take");
        assert!(read.1.contains(&line), "{}", read.1);
    }
    assert!(matches!(read.0.ports["test"], Artifact::Stored(_)));
    assert!(matches!(held.0.ports["test"], Artifact::Table(_)));
    for port in ["train", "valid", "test"] {
        assert_eq!(rows_of(&read.0, port), rows_of(&held.0, port), "{port}");
    }
    assert_eq!(read.0.summary, held.0.summary);
    assert_eq!(rows_of(&read.0, "test").num_rows(), 40_000);
    // the validation rows were scored every epoch, the test rows at the end
    let epochs = read.0.summary["history"]["epochs"].as_array().unwrap();
    assert!(
        epochs
            .iter()
            .all(|e| e["valid_accuracy"].as_f64().unwrap() > 0.5)
    );
    let section = Section::from_summary(&read.0.summary).unwrap().unwrap();
    let acc = section.metrics["test_accuracy"].as_f64().unwrap();
    assert!(acc > 0.8, "test accuracy {acc}");
}
