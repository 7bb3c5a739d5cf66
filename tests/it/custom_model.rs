//! A model defined in this file only (a nearest-centroid classifier)
//! registers in the catalogue and is then fitted by `fit`, cross-validated
//! by `label_noise`, and scored by `predict` and `evaluate`, in one pipeline
//! run in-process: adding a model to gigo touches no other file.

use gigo::ml::catalogue::{Fit, FittedModel, TrainSet, check_width};
use gigo::ml::{Matrix, MlError};
use gigo::{RunOptions, Silent, executor};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Parameters of `nearest_centroid`: probabilities are a softmax of minus
/// `sharpness` times the squared distance to each class's centroid.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
struct CentroidParams {
    sharpness: f32,
}

impl Default for CentroidParams {
    fn default() -> Self {
        CentroidParams { sharpness: 1.0 }
    }
}

#[derive(Serialize, Deserialize)]
struct Centroids {
    sharpness: f32,
    /// One row per class.
    centres: Vec<Vec<f32>>,
}

impl Fit for CentroidParams {
    const NAME: &'static str = "nearest_centroid";
    const DOC: &'static str = "softmax of minus the squared distance to each class centroid";
    type Fitted = Centroids;

    fn check(&self) -> Result<(), MlError> {
        if self.sharpness > 0.0 {
            Ok(())
        } else {
            Err(MlError::param("sharpness", "must be positive"))
        }
    }

    fn fit(&self, data: &TrainSet, _seed: u64) -> Result<Centroids, MlError> {
        let (x, k) = (data.x, data.n_classes);
        let mut sums = vec![vec![0.0f64; x.cols]; k];
        let mut counts = vec![0.0f64; k];
        for (row, &y) in x.iter_rows().zip(data.y) {
            counts[y as usize] += 1.0;
            for (s, v) in sums[y as usize].iter_mut().zip(row) {
                *s += *v as f64;
            }
        }
        let centres = sums
            .iter()
            .zip(&counts)
            .map(|(s, &n)| s.iter().map(|v| (v / n.max(1.0)) as f32).collect())
            .collect();
        Ok(Centroids {
            sharpness: self.sharpness,
            centres,
        })
    }
}

impl FittedModel for Centroids {
    fn name(&self) -> &'static str {
        "nearest_centroid"
    }
    fn n_features(&self) -> usize {
        self.centres[0].len()
    }
    fn n_classes(&self) -> usize {
        self.centres.len()
    }
    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
        check_width(self, x)?;
        let k = self.centres.len();
        let mut out = Vec::with_capacity(x.rows * k);
        for row in x.iter_rows() {
            let z: Vec<f32> = self
                .centres
                .iter()
                .map(|c| {
                    -self.sharpness
                        * c.iter()
                            .zip(row)
                            .map(|(a, b)| (a - b) * (a - b))
                            .sum::<f32>()
                })
                .collect();
            let max = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = z.iter().map(|v| (v - max).exp()).collect();
            let s: f32 = e.iter().sum();
            out.extend(e.iter().map(|v| v / s));
        }
        Ok(Matrix::new(x.rows, k, out))
    }
    fn save(&self) -> Result<Vec<u8>, MlError> {
        Ok(serde_json::to_vec(self)?)
    }

    fn load(bytes: &[u8]) -> Result<Centroids, MlError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

const PIPELINE: &str = r#"
name: custom_model
seed: 3
stages:
  data:
    type: generate
    rows: 1200
    classes: 2
    informative: 3
    label_noise: {rate: 0.1, kind: symmetric}
  split:
    type: split
    inputs: data
    test_fraction: 0.25
  centroid:
    type: fit
    inputs: split.train
    model: nearest_centroid
    model_params: {sharpness: 2.0}
  noise:
    type: label_noise
    inputs: split.train
    model: nearest_centroid
  scored:
    type: predict
    inputs: {model: centroid.model, table: split.test}
  evaluate:
    type: evaluate
    inputs: {models: [centroid.model], test: split.test}
    corruptions: [gaussian_noise]
    severities: [1, 3]
"#;

#[test]
fn a_model_from_a_test_file_is_fitted_cross_validated_and_scored_by_every_stage() {
    let mut catalogue = gigo::catalogue();
    catalogue.register::<CentroidParams>();
    let registry = gigo::registry_with(&catalogue);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.yaml");
    std::fs::write(&file, PIPELINE).unwrap();
    let plan = match gigo::load_plan(&file, &[], &registry) {
        Ok((plan, _)) => plan,
        Err((diags, _)) => panic!("{diags:?}"),
    };
    let opts = RunOptions {
        runs_dir: dir.path().join("runs"),
        cache_dir: dir.path().join("cache"),
        run_id: Some("r".into()),
        jobs: 2,
        force: false,
        build_id: Some("test".into()),
        batch_rows: gigo_pipeline::stream::DEFAULT_BATCH_ROWS,
        memory: None,
    };
    let result = executor::run(&plan, &opts, &Silent).unwrap();
    assert!(result.succeeded(), "{:?}", result.failures());
    let summary = |stage: &str| -> serde_json::Value {
        serde_json::from_slice(
            &std::fs::read(result.run_dir.join(stage).join("summary.json")).unwrap(),
        )
        .unwrap()
    };
    let fit = summary("centroid");
    assert_eq!(fit["model"], "nearest_centroid");
    assert_eq!(fit["params"]["sharpness"], 2.0);
    assert!(fit["train_accuracy"].as_f64().unwrap() > 0.7, "{fit}");
    let noise = summary("noise");
    assert_eq!(noise["probabilities"]["model"]["model"], "nearest_centroid");
    assert_eq!(noise["probabilities"]["model"]["sharpness"], 1.0);
    let recall = noise["truth"]["recall"].as_f64().unwrap();
    assert!(recall > 0.3, "{}", noise["truth"]);
    let scored = summary("scored");
    assert_eq!(scored["model"], "nearest_centroid");
    assert_eq!(scored["rows"], 300);
    let evaluate = summary("evaluate");
    let acc = evaluate["report"]["metrics"]["accuracy"]["centroid"]
        .as_f64()
        .unwrap();
    assert!(acc > 0.7, "{acc}");
    // not differentiable: the attack was skipped, and the report says so
    assert_eq!(evaluate["attack_skipped"], serde_json::json!(["centroid"]));

    // the same registry refuses the model's bad parameters at validate time
    std::fs::write(&file, PIPELINE.replace("sharpness: 2.0", "sharpness: -1")).unwrap();
    let Err((diags, _)) = gigo::load_plan(&file, &[], &registry) else {
        panic!("negative sharpness accepted")
    };
    let text = format!("{diags:?}");
    assert!(
        text.contains("sharpness") && text.contains("must be positive"),
        "{text}"
    );
}
