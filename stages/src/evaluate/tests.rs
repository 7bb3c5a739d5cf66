use std::sync::Arc;

use arrow::array::{AsArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use gigo_ml::{FeatureEncoder, Fit, FittedModel, MlError, TrainSet};
use gigo_pipeline::summary::Section;
use gigo_pipeline::{Artifact, Model};

use super::*;
use crate::testing::ctx;

/// `p(1) = sigmoid(sharpness * z)` on the standardised first feature `z`
/// (sharpness 0: a constant prediction), differentiable: a catalogue model
/// defined here.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct ThresholdParams {
    sharpness: f32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Threshold {
    sharpness: f32,
    n_features: usize,
}

impl Fit for ThresholdParams {
    const NAME: &'static str = "threshold";
    const DOC: &'static str = "a sigmoid of the first feature";
    type Fitted = Threshold;

    fn check(&self) -> Result<(), MlError> {
        Ok(())
    }

    fn fit(&self, data: &TrainSet, _seed: u64) -> Result<Threshold, MlError> {
        Ok(Threshold {
            sharpness: self.sharpness,
            n_features: data.x.cols,
        })
    }
}

impl FittedModel for Threshold {
    fn name(&self) -> &'static str {
        "threshold"
    }
    fn n_features(&self) -> usize {
        self.n_features
    }
    fn n_classes(&self) -> usize {
        2
    }
    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
        let mut out = Vec::with_capacity(x.rows * 2);
        for r in x.iter_rows() {
            let p1 = if self.sharpness == 0.0 {
                0.7
            } else {
                1.0 / (1.0 + (-self.sharpness * r[0]).exp())
            };
            out.extend([1.0 - p1, p1]);
        }
        Ok(Matrix::new(x.rows, 2, out))
    }
    fn loss_gradient(&self, x: &Matrix, y: &[u32]) -> Option<Result<Matrix, MlError>> {
        let p = self.predict_proba(x).ok()?;
        let mut g = vec![0.0; x.rows * x.cols];
        for (i, &label) in y.iter().enumerate() {
            let d = p.get(i, 1) - if label == 1 { 1.0 } else { 0.0 };
            g[i * x.cols] = d * self.sharpness;
        }
        Some(Ok(Matrix::new(x.rows, x.cols, g)))
    }
    fn save(&self) -> Result<Vec<u8>, MlError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn load(bytes: &[u8]) -> Result<Threshold, MlError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

/// `n` rows: `x` evenly in [-1, 1), `noise`, `region` (a category) and
/// `label` = x > 0.
fn table(n: usize) -> Table {
    let xs: Vec<f64> = (0..n)
        .map(|i| -1.0 + 2.0 * i as f64 / n as f64 + 0.5 / n as f64)
        .collect();
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("x", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("noise", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("region", DataType::Utf8, true), Role::Feature),
        field_with_role(Field::new("label", DataType::Int64, false), Role::Label),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Float64Array::from(xs.clone())),
            Arc::new(Float64Array::from(
                (0..n)
                    .map(|i| ((i * 7919) % 101) as f64 / 101.0)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                (0..n)
                    .map(|i| ["north", "south", "east"][i % 3])
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                xs.iter().map(|&x| i64::from(x > 0.0)).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    Table::from_batch(batch)
}

fn catalogue() -> Catalogue {
    let mut c = Catalogue::classic();
    c.register::<ThresholdParams>();
    c
}

/// A fitted `threshold` model on a port, as `fit` would put it there.
fn model(sharpness: f32) -> Artifact {
    let t = table(200);
    let cols: Vec<String> = ["x", "noise", "region"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let enc = FeatureEncoder::fit(t.batches(), &cols, &Default::default()).unwrap();
    let x = enc.transform(t.batches()).unwrap();
    let fitted = ThresholdParams { sharpness }
        .fit(&TrainSet::new(&x, &vec![0; x.rows], 2), 0)
        .unwrap();
    let trained = TrainedModel {
        label_column: "label".into(),
        classes: vec!["0".into(), "1".into()],
        features: enc,
        params: serde_json::json!({ "sharpness": sharpness }),
        provenance: serde_json::Value::Null,
        fitted: Box::new(fitted),
    };
    crate::models::port(&trained).unwrap().into()
}

fn stage(params: serde_json::Value) -> Box<dyn Stage> {
    let mut r = Registry::new();
    register(&mut r, &catalogue());
    r.get("evaluate")
        .unwrap()
        .build(&params)
        .map_err(|p| format!("{p:?}"))
        .unwrap()
}

/// Inputs with models from stages `sharp` (sharpness 8) and `flat` (a
/// constant prediction), and test rows.
fn inputs(test: Table) -> Inputs {
    let mut i = Inputs::default();
    i.push_from("models", "sharp.model", model(8.0));
    i.push_from("models", "flat.model", model(0.0));
    i.push("test", test.into());
    i
}

fn run(params: serde_json::Value, inputs: &Inputs) -> Result<StageOutput, StageError> {
    let dir = tempfile::tempdir().unwrap();
    stage(params).run(inputs, &ctx("evaluate", 7, dir.path()))
}

fn section(out: &StageOutput) -> Section {
    Section::from_summary(&out.summary).unwrap().unwrap()
}

fn metric(s: &Section, name: &str, model: &str) -> f64 {
    s.metrics[name][model]
        .as_f64()
        .unwrap_or_else(|| panic!("{name} of {model}"))
}

/// (corruption, severity) → accuracy of `model`, from the metrics table.
fn curve(out: &StageOutput, model: &str, corruption: &str) -> Vec<(i64, f64)> {
    let Artifact::Table(t) = &out.ports["metrics"] else {
        panic!("metrics is a table")
    };
    let b = t.to_batch().unwrap();
    let m = b.column_by_name("model").unwrap().as_string::<i32>();
    let c = b.column_by_name("corruption").unwrap().as_string::<i32>();
    let s = b
        .column_by_name("severity")
        .unwrap()
        .as_primitive::<Int64Type>();
    let a = b
        .column_by_name("accuracy")
        .unwrap()
        .as_primitive::<Float64Type>();
    let sp = b.column_by_name("split").unwrap().as_string::<i32>();
    (0..b.num_rows())
        .filter(|&i| m.value(i) == model && sp.value(i) == "test")
        .filter(|&i| c.value(i) == corruption || (c.value(i) == "none" && s.value(i) == 0))
        .map(|i| (s.value(i), a.value(i)))
        .collect()
}

#[test]
fn a_constant_model_never_flips_and_a_sharp_one_degrades_with_severity() {
    let out = run(serde_json::json!({}), &inputs(table(600))).unwrap();
    let s = section(&out);
    // the constant model predicts class 1 for every row, whatever the input
    assert_eq!(metric(&s, "flip_rate", "flat"), 0.0);
    assert!((metric(&s, "accuracy", "flat") - 0.5).abs() < 0.01);
    // the sharp model is right on clean rows and loses accuracy as noise grows
    assert_eq!(metric(&s, "accuracy", "sharp"), 1.0);
    let noise = curve(&out, "sharp", "gaussian_noise");
    assert_eq!(noise.len(), 6, "{noise:?}");
    assert!(
        noise.windows(2).all(|w| w[1].1 <= w[0].1 + 0.02),
        "{noise:?}"
    );
    assert!(noise[5].1 < 0.9, "{noise:?}");
    assert!(metric(&s, "flip_rate", "sharp") > 0.0);
    let auc = metric(&s, "robust_auc", "sharp");
    assert!(auc < 1.0 && auc > 0.5, "{auc}");
    // the reference is the first model: its corruption error is 1
    assert!((metric(&s, "mce", "sharp") - 1.0).abs() < 1e-12);
    // the adversarial attack applies to the differentiable model
    let adv = curve(&out, "sharp", "adversarial_pgd");
    assert_eq!(adv.len(), 6);
    assert!(adv[5].1 < adv[0].1, "{adv:?}");
    // the verdict names the corruption that costs the most accuracy first
    let mut worst = ("", 0.0);
    for c in Corruption::ALL
        .iter()
        .filter(|c| **c != Corruption::LabelNoise)
    {
        let drop = noise[0].1 - curve(&out, "sharp", c.name())[5].1;
        if drop > worst.1 {
            worst = (c.name(), drop);
        }
    }
    let fragile = s
        .alerts
        .iter()
        .find(|a| a.kind == "fragile" && a.message.contains("`sharp`"))
        .expect("a verdict on `sharp`");
    let named: Vec<&str> = fragile
        .message
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(", ")
        .collect();
    assert!(
        named[0].starts_with(worst.0) || adv[0].1 - adv[5].1 > worst.1,
        "{} / {worst:?}",
        fragile.message
    );
    assert!(
        s.alerts
            .iter()
            .any(|a| a.kind == "robust" && a.message.contains("`flat`"))
    );
    assert!(
        s.alerts
            .iter()
            .any(|a| a.kind == "versus_reference" && a.message.contains("`flat`"))
    );
}

#[test]
fn same_seed_same_figures() {
    let i = inputs(table(300));
    let a = run(serde_json::json!({"severities": [2, 5]}), &i).unwrap();
    let b = run(serde_json::json!({"severities": [5, 2]}), &i).unwrap();
    assert_eq!(a.summary, b.summary);
    let (Artifact::Table(x), Artifact::Table(y)) = (&a.ports["metrics"], &b.ports["metrics"])
    else {
        panic!()
    };
    assert_eq!(x.to_batch().unwrap(), y.to_batch().unwrap());
    // 2 models x (1 clean + 9 corruptions x 2 severities + the attack x 2):
    // the constant model is differentiable too (its gradient is zero)
    assert_eq!(x.num_rows(), 2 * (1 + 9 * 2 + 2));
}

#[test]
fn splits_give_the_generalisation_gap_and_ood_rows_are_split_off() {
    let mut i = inputs(table(300));
    i.push("train", table(200).into());
    let out = run(
        serde_json::json!({"ood": {"column": "region", "values": ["east"]}, "corruptions": ["swap"], "adversarial": "none"}),
        &i,
    )
    .unwrap();
    let s = section(&out);
    assert!(s.metrics["generalisation_gap"]["sharp"].is_number());
    assert!(s.metrics["ood_gap"]["flat"].is_number());
    let Artifact::Table(t) = &out.ports["metrics"] else {
        panic!()
    };
    let b = t.to_batch().unwrap();
    let split = b.column_by_name("split").unwrap().as_string::<i32>();
    let rows = b
        .column_by_name("rows")
        .unwrap()
        .as_primitive::<Int64Type>();
    let get = |name: &str| {
        (0..b.num_rows())
            .find(|&r| split.value(r) == name)
            .map(|r| rows.value(r))
    };
    assert_eq!(get("ood"), Some(100));
    assert_eq!(get("test"), Some(200));
    assert_eq!(get("train"), Some(200));
}

#[test]
fn user_errors_are_clear() {
    let err = |params: serde_json::Value, i: &Inputs| run(params, i).err().unwrap().to_string();
    let e = err(serde_json::json!({"reference": "nope"}), &inputs(table(50)));
    assert!(e.contains("`nope`") && e.contains("`sharp`"), "{e}");
    let mut none = Inputs::default();
    none.push("test", table(50).into());
    assert!(err(serde_json::json!({}), &none).contains("at least one model"));
    let mut alien = Inputs::default();
    alien.push_from(
        "models",
        "x.model",
        Model {
            kind: "mystery".into(),
            config: serde_json::Value::Null,
            weights: vec![],
        }
        .into(),
    );
    alien.push("test", table(50).into());
    let e = err(serde_json::json!({}), &alien);
    assert!(
        e.contains("`x`") && e.contains("mystery") && e.contains("threshold"),
        "{e}"
    );
    let unlabelled = Table::from_batch(table(50).to_batch().unwrap().project(&[0, 1, 2]).unwrap());
    let e = err(serde_json::json!({}), &inputs(unlabelled));
    assert!(e.contains("no column `label`"), "{e}");
    let e = err(
        serde_json::json!({"ood": {"column": "region", "values": ["west"]}}),
        &inputs(table(50)),
    );
    assert!(e.contains("empty"), "{e}");
    // parameters are checked before any work
    let mut r = Registry::new();
    register(&mut r, &catalogue());
    let problems = r
        .get("evaluate")
        .unwrap()
        .build(&serde_json::json!({"severities": [0, 6], "pgd_steps": 0}))
        .err()
        .unwrap();
    assert_eq!(problems.len(), 2, "{problems:?}");
}

#[test]
fn corruptions_with_nothing_to_act_on_are_left_out() {
    let numeric_only = Columns {
        numeric: vec![0],
        categorical: vec![],
        label: Some(1),
    };
    assert!(!applies(Corruption::CategoricalShift, &numeric_only));
    assert!(!applies(Corruption::Swap, &numeric_only));
    assert!(applies(Corruption::GaussianNoise, &numeric_only));
    assert!(applies(Corruption::MissingMnar, &numeric_only));
    let categorical_only = Columns {
        numeric: vec![],
        categorical: vec![0],
        label: Some(1),
    };
    assert!(applies(Corruption::CategoricalShift, &categorical_only));
    assert!(!applies(Corruption::Outliers, &categorical_only));
    assert!(applies(Corruption::MissingMcar, &categorical_only));
}

/// The metrics table of `out`.
fn figures(out: &StageOutput) -> RecordBatch {
    let Artifact::Table(t) = &out.ports["metrics"] else {
        panic!("metrics is a table")
    };
    t.to_batch().unwrap()
}

#[test]
fn blocks_of_test_rows_give_the_same_figures_whatever_the_batches() {
    let dir = tempfile::tempdir().unwrap();
    let test = table(300);
    let mut w =
        gigo_pipeline::TableWriter::create(&dir.path().join("test.parquet"), test.schema().clone())
            .unwrap();
    w.write(&test.to_batch().unwrap()).unwrap();
    let stored = Arc::new(w.finish().unwrap());
    let params =
        serde_json::json!({"severities": [1, 4], "ood": {"column": "region", "values": ["east"]}});
    let run_with = |block_rows: usize, test: Artifact, batch_rows: usize| {
        let built: EvaluateParams = serde_json::from_value(params.clone()).unwrap();
        let stage = Evaluate {
            params: built.check().unwrap(),
            catalogue: catalogue(),
            block_rows,
        };
        assert!(matches!(stage.memory(), Memory::Streams { .. }));
        let mut i = Inputs::default();
        i.push_from("models", "sharp.model", model(8.0));
        i.push_from("models", "flat.model", model(0.0));
        i.push("test", test);
        i.push("train", table(70).into());
        let mut c = ctx("evaluate", 7, dir.path());
        c.batch_rows = batch_rows;
        stage.run(&i, &c).unwrap()
    };
    // Blocks of 64 of the 200 in-distribution test rows: a table in memory
    // in one batch and the stored file read 7 rows at a time agree exactly.
    let a = run_with(64, Artifact::from(test.clone()), 65_536);
    let b = run_with(64, Artifact::Stored(stored.clone()), 7);
    assert_eq!(a.summary, b.summary);
    assert_eq!(figures(&a), figures(&b));
    // One block is the whole table, whatever the batches.
    let whole = run_with(BLOCK_ROWS, Artifact::Stored(stored), 7);
    let one = run_with(300, Artifact::from(test), 65_536);
    assert_eq!(whole.summary, one.summary);
    let (blocks, whole) = (figures(&a), figures(&whole));
    assert_eq!(blocks.num_rows(), whole.num_rows());
    // Clean figures add up exactly over blocks; corrupted ones are drawn per
    // block (so they differ), but every corruption still acts on every block.
    let severity = |b: &RecordBatch| {
        b.column_by_name("severity")
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    };
    assert_eq!(severity(&blocks), severity(&whole));
    let clean: Vec<usize> = (0..whole.num_rows())
        .filter(|&r| severity(&whole)[r] == 0)
        .collect();
    assert_eq!(clean.len(), 2 * 3, "train, test and ood of two models");
    for &r in &clean {
        assert_eq!(blocks.slice(r, 1), whole.slice(r, 1));
    }
    let noise = curve(&a, "sharp", "gaussian_noise");
    assert_eq!(noise.len(), 3);
    assert!(noise[2].1 < noise[0].1, "{noise:?}");
    let rows = blocks
        .column_by_name("rows")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(rows.value(clean[1]), 200, "the in-distribution test rows");
}
