use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use gigo_pipeline::{Artifact, Model, field_with_role};
use serde_json::json;

use super::*;
use crate::testing::{ctx, two_classes};

/// A model of `kind` fitted by the `fit` stage on `two_classes(300)`.
fn fitted(kind: &str) -> Model {
    let mut r = Registry::new();
    crate::fit::register(&mut r, &Catalogue::classic());
    let stage = r
        .get("fit")
        .unwrap()
        .build(&json!({"model": kind}))
        .unwrap();
    let mut inputs = Inputs::default();
    inputs.push("table", two_classes(300).into());
    let dir = tempfile::tempdir().unwrap();
    let out = stage.run(&inputs, &ctx("fit", 1, dir.path())).unwrap();
    match &out.ports["model"] {
        Artifact::Model(m) => m.as_ref().clone(),
        _ => panic!("model port"),
    }
}

/// Scores `table`; the scored table lives in the returned directory.
fn predict(model: &Model, table: Table) -> Result<(StageOutput, tempfile::TempDir), StageError> {
    let mut r = Registry::new();
    register(&mut r, &Catalogue::classic());
    let stage = r.get(STAGE_TYPE).unwrap().build(&json!({})).unwrap();
    let mut inputs = Inputs::default();
    inputs.push_from(
        "model",
        "fit.model",
        Artifact::Model(Arc::new(model.clone())),
    );
    inputs.push("table", table.into());
    let dir = tempfile::tempdir().unwrap();
    let out = stage.run(&inputs, &ctx("predict", 1, dir.path()))?;
    Ok((out, dir))
}

#[test]
fn new_rows_get_exactly_the_models_own_probabilities() {
    let catalogue = Catalogue::classic();
    let new_rows = two_classes(1000);
    for kind in [
        "gradient_boosting",
        "logistic_regression",
        "random_forest",
        "knn",
    ] {
        let m = fitted(kind);
        let (out, _dir) = predict(&m, new_rows.clone()).unwrap();
        let t = out.ports["table"].source().unwrap().load(1 << 16).unwrap();
        let b = t.to_batch().unwrap();
        // every input column is kept, three are added
        assert_eq!(b.num_columns(), 4 + 3);
        assert_eq!(b.num_rows(), 1000);
        assert_eq!(
            t.columns_with_role(Role::Added),
            ["prob_a", "prob_b", "predicted"]
        );
        let own = models::load(&catalogue, &m).unwrap();
        let want = own
            .predict_proba(&own.encode(new_rows.batches()).unwrap())
            .unwrap();
        for (j, c) in ["prob_a", "prob_b"].iter().enumerate() {
            let got = b.column_by_name(c).unwrap().as_primitive::<Float64Type>();
            for i in 0..1000 {
                assert_eq!(got.value(i), want.get(i, j) as f64, "{kind} {c} row {i}");
            }
        }
        let predicted = b.column_by_name("predicted").unwrap().as_string::<i32>();
        let right = (0..1000)
            .filter(|&i| predicted.value(i) == ["a", "b"][i % 2])
            .count();
        assert!(right > 900, "{kind}: {right}");
        assert_eq!(out.summary["model"], kind);
        assert_eq!(out.summary["rows"], 1000);
    }
}

/// `two_classes(50)` with column `x` replaced by `field` / `array`.
fn with_x(field: Field, array: Arc<dyn Array>) -> Table {
    let b = two_classes(50).to_batch().unwrap();
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut cols = b.columns().to_vec();
    fields[1] = field;
    cols[1] = array;
    Table::from_batch(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap())
}

#[test]
fn a_table_that_does_not_match_is_refused_with_the_columns_named() {
    let m = fitted("logistic_regression");
    let b = two_classes(50).to_batch().unwrap();
    let missing = Table::from_batch(b.project(&[0, 2, 3]).unwrap());
    let e = predict(&m, missing).err().unwrap().to_string();
    assert!(e.contains("missing columns `x`"), "{e}");
    let text: Arc<dyn Array> = Arc::new(StringArray::from(vec!["1.5"; 50]));
    let mistyped = with_x(
        field_with_role(Field::new("x", DataType::Utf8, true), Role::Feature),
        text,
    );
    let e = predict(&m, mistyped).err().unwrap().to_string();
    assert!(
        e.contains("column `x` is Utf8, but the model was fitted on it as numeric"),
        "{e}"
    );
    let renamed = with_x(
        field_with_role(Field::new("x2", DataType::Float64, true), Role::Feature),
        b.column(1).clone(),
    );
    let e = predict(&m, renamed).err().unwrap().to_string();
    assert!(
        e.contains("missing columns `x`") && e.contains("not fitted on: `x2`"),
        "{e}"
    );
    // an extra column without the feature role is just carried along
    let other = with_x(
        Field::new("x", DataType::Float64, true),
        b.column(1).clone(),
    );
    assert!(predict(&m, other).is_ok());
}
