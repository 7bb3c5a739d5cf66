use gigo_pipeline::{Artifact, Model};
use serde_json::json;

use super::*;
use crate::testing::{ctx, two_classes};

fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r, &Catalogue::classic());
    r
}

fn run(params: Value, table: Table, seed: u64) -> Result<StageOutput, StageError> {
    let stage = registry()
        .get(STAGE_TYPE)
        .unwrap()
        .build(&params)
        .map_err(|p| StageError::data(format!("{p:?}")))?;
    let mut inputs = Inputs::default();
    inputs.push("table", table.into());
    let dir = tempfile::tempdir().unwrap();
    stage.run(&inputs, &ctx("fit", seed, dir.path()))
}

fn model_of(out: &StageOutput) -> Model {
    match &out.ports["model"] {
        Artifact::Model(m) => m.as_ref().clone(),
        _ => panic!("model port"),
    }
}

#[test]
fn every_classic_model_fits_and_its_port_reloads_to_the_same_probabilities() {
    let t = two_classes(400);
    let catalogue = Catalogue::classic();
    for name in catalogue.names() {
        let out = run(json!({"model": name}), t.clone(), 3).unwrap();
        let acc = out.summary["train_accuracy"].as_f64().unwrap();
        assert!(acc > 0.9, "{name}: {acc}");
        assert_eq!(out.summary["rows"], 400);
        let m = model_of(&out);
        assert_eq!(m.kind, name);
        let back = models::load(&catalogue, &m).unwrap();
        assert_eq!(back.label_column, "label");
        assert_eq!(back.classes, ["a", "b"]);
        assert_eq!(back.features.columns(), ["x", "colour"]);
        let x = back.encode(t.batches()).unwrap();
        let p = back.predict_proba(&x).unwrap();
        let predicted = crate::evaluate::metrics::argmax_rows(&p.data, 2);
        let correct = (0..400).filter(|&i| predicted[i] == (i % 2) as u32).count();
        assert_eq!(correct as f64 / 400.0, acc, "{name}");
        // same seed, same bytes
        let again = run(json!({"model": name}), t.clone(), 3).unwrap();
        assert_eq!(model_of(&again).weights, m.weights, "{name}");
        assert_eq!(model_of(&again).config, m.config, "{name}");
    }
}

#[test]
fn model_and_model_params_are_checked_when_built_and_typed_in_the_schema() {
    let r = registry();
    let kind = r.get(STAGE_TYPE).unwrap();
    let e = kind
        .build(&json!({"model": "gradient_bosting"}))
        .err()
        .unwrap();
    assert_eq!(e[0].path, ["model"]);
    assert!(e[0].message.contains("unknown model"), "{}", e[0].message);
    assert_eq!(
        e[0].help.as_deref(),
        Some("did you mean `gradient_boosting`?")
    );
    let e = kind
        .build(&json!({"model": "gradient_boosting", "model_params": {"learning_rate": -1}}))
        .err()
        .unwrap();
    assert_eq!(e[0].path, ["model_params", "learning_rate"]);
    let e = kind
        .build(&json!({"model": "knn", "model_params": {"kk": 3}}))
        .err()
        .unwrap();
    assert_eq!(e[0].path, ["model_params"]);
    assert!(e[0].message.contains("kk"), "{}", e[0].message);
    assert!(
        kind.build(&json!({"model": "knn", "model_params": {"k": 3}}))
            .is_ok()
    );

    let schema = kind.params_schema();
    let names = &schema["properties"]["model"]["enum"];
    assert_eq!(names, &json!(Catalogue::classic().names()));
    let rules = schema["allOf"].as_array().unwrap();
    let boosting = rules
        .iter()
        .find(|r| r["if"]["properties"]["model"]["const"] == "gradient_boosting")
        .unwrap();
    let p = &boosting["then"]["properties"]["model_params"]["anyOf"][0];
    assert_eq!(p["properties"]["learning_rate"]["type"], "number");
    assert_eq!(p["additionalProperties"], false);
}

#[test]
fn rows_without_a_label_are_counted_and_not_trained_on() {
    use arrow::array::StringArray;
    let t = two_classes(200);
    let b = t.to_batch().unwrap();
    let label: StringArray = (0..200)
        .map(|i| (i % 10 != 0).then_some(["a", "b"][i % 2]))
        .collect();
    let mut cols = b.columns().to_vec();
    cols[3] = std::sync::Arc::new(label);
    let t = Table::from_batch(RecordBatch::try_new(b.schema(), cols).unwrap());
    let out = run(json!({"model": "logistic_regression"}), t, 1).unwrap();
    assert_eq!(out.summary["rows"], 180);
    assert_eq!(out.summary["unlabelled_rows"], 20);
    let s = gigo_pipeline::summary::Section::from_summary(&out.summary)
        .unwrap()
        .unwrap();
    assert!(s.metrics.contains_key("train_accuracy"));
}

#[test]
fn data_problems_are_clear_errors() {
    let e = run(
        json!({"model": "knn", "features": ["nope"]}),
        two_classes(20),
        1,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("`nope`"), "{e}");
    let e = run(
        json!({"model": "knn", "features": ["x", "label"]}),
        two_classes(20),
        1,
    )
    .err()
    .unwrap();
    assert!(e.to_string().contains("label column `label`"), "{e}");
}

use arrow::array::RecordBatch;
