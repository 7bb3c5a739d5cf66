//! The neural network behind gigo-ml's [`Classifier`] interface, so that
//! label-noise cross-validation and evaluation can use it like any other
//! model.
//!
//! It trains with [`TrainParams`] (the `train` stage's parameters; `features`,
//! `sample_weights`, `diagnosis` and fine-tuning ones do not apply: the
//! caller passes a matrix and weights, and no report is written) on a matrix already encoded by gigo-ml's
//! `FeatureEncoder`. No validation rows are given to `fit`, so early
//! stopping is refused.
//!
//! # Example
//! ```
//! use gigo_ml::{Classifier, Matrix};
//! use gigo_neural::{NeuralClassifier, train::TrainParams};
//!
//! let x = Matrix::new(4, 1, vec![-2.0, -1.0, 1.0, 2.0]);
//! let params = TrainParams { epochs: 50, lr: 0.05, ..TrainParams::default() };
//! let mut model = NeuralClassifier::new(params, 7).unwrap();
//! model.fit(&x, &[0, 0, 1, 1], 2, None).unwrap();
//! let p = model.predict_proba(&x);
//! assert!(p.get(0, 0) > 0.5 && p.get(3, 1) > 0.5);
//! let again = gigo_neural::classifier::load(&model.to_bytes().unwrap()).unwrap();
//! assert_eq!(again.predict_proba(&x), p);
//! ```

use gigo_ml::classifier::ClassifierMakers;
use gigo_ml::{Classifier, Matrix, MlError};
use serde::{Deserialize, Serialize};

use crate::config::EncoderSpec;
use crate::fit::{EncoderInit, FitReport, Fitted, TrainSet, fit};
use crate::train::TrainParams;
use crate::weights::Weights;

/// Catalogue name.
pub const NAME: &str = "neural_network";

/// A neural classifier (see the module docs).
pub struct NeuralClassifier {
    params: TrainParams,
    seed: u64,
    fitted: Option<Fitted>,
    report: Option<FitReport>,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    model: String,
    state: State,
}

#[derive(Serialize, Deserialize)]
struct State {
    params: TrainParams,
    seed: u64,
    fitted: Option<SavedFit>,
}

#[derive(Serialize, Deserialize)]
struct SavedFit {
    spec: EncoderSpec,
    n_classes: usize,
    /// `GNW1` weights as hex.
    weights: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, MlError> {
    if !s.len().is_multiple_of(2) {
        return Err(MlError::data("saved weights: odd hex length"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16)
                .map_err(|e| MlError::data(format!("saved weights: {e}")))
        })
        .collect()
}

impl NeuralClassifier {
    /// An unfitted network; `seed` fixes initialisation, batch order and dropout.
    pub fn new(params: TrainParams, seed: u64) -> Result<NeuralClassifier, MlError> {
        if let Err(problems) = params.check() {
            let msg = problems
                .iter()
                .map(|p| format!("{}: {}", p.path.join("."), p.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(MlError::param("params", msg));
        }
        if params.early_stopping.is_some() {
            return Err(MlError::param(
                "early_stopping",
                "the Classifier interface has no validation rows",
            ));
        }
        Ok(NeuralClassifier {
            params,
            seed,
            fitted: None,
            report: None,
        })
    }

    /// How the last `fit` went (learning curves, gradient norms).
    pub fn report(&self) -> Option<&FitReport> {
        self.report.as_ref()
    }

    /// Reads a model written by [`Classifier::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<NeuralClassifier, MlError> {
        let saved: Saved = serde_json::from_slice(bytes)?;
        if saved.model != NAME {
            return Err(MlError::data(format!(
                "saved model is a `{}`, not a `{NAME}`",
                saved.model
            )));
        }
        let fitted = match saved.state.fitted {
            Some(f) => Some(Fitted {
                spec: f.spec,
                n_classes: f.n_classes,
                weights: Weights::from_bytes(&unhex(&f.weights)?)?,
            }),
            None => None,
        };
        Ok(NeuralClassifier {
            params: saved.state.params,
            seed: saved.state.seed,
            fitted,
            report: None,
        })
    }
}

/// The name stages that cross-validate a model (`label_noise`) know the
/// neural classifier by.
pub const MAKER_NAME: &str = gigo_ml::classifier::MLP;

/// Registers the neural classifier as [`MAKER_NAME`]: its parameters are the
/// `train` stage's, less those about table columns, a pretrained encoder or the report.
///
/// # Example
/// ```
/// let mut makers = gigo_ml::classifier::ClassifierMakers::default();
/// gigo_neural::classifier::register_maker(&mut makers);
/// let make = makers.get("mlp").unwrap();
/// assert_eq!(make(&serde_json::json!({"epochs": 3}), 0).unwrap().name(), "neural_network");
/// let err = make(&serde_json::json!({"features": ["a"]}), 0).err().unwrap();
/// assert!(err.to_string().contains("features"));
/// ```
pub fn register_maker(makers: &mut ClassifierMakers) {
    makers.register(MAKER_NAME, make);
}

fn make(params: &serde_json::Value, seed: u64) -> Result<Box<dyn Classifier>, MlError> {
    let params: TrainParams = serde_json::from_value(params.clone())
        .map_err(|e| MlError::param("model_params", e.to_string()))?;
    let not_here = [
        (
            "features",
            params.features.is_some(),
            "the stage's own `features` choose the columns",
        ),
        (
            "sample_weights",
            !params.sample_weights,
            "the stage passes the table's weight column",
        ),
        (
            "freeze_encoder",
            params.freeze_encoder,
            "there is no pretrained encoder here",
        ),
        (
            "encoder_lr",
            params.encoder_lr.is_some(),
            "there is no pretrained encoder here",
        ),
        (
            "diagnosis",
            params.diagnosis.is_some(),
            "the cross-validated models are not diagnosed in a report",
        ),
    ];
    if let Some((name, _, why)) = not_here.iter().find(|(_, set, _)| *set) {
        return Err(MlError::param(
            name,
            format!("does not apply to a cross-validated `{MAKER_NAME}`: {why}"),
        ));
    }
    Ok(Box::new(NeuralClassifier::new(params, seed)?))
}

/// Reads any saved classifier: a neural one here, every other kind through
/// gigo-ml's [`gigo_ml::classifier::load`].
pub fn load(bytes: &[u8]) -> Result<Box<dyn Classifier>, MlError> {
    #[derive(Deserialize)]
    struct Head {
        model: String,
    }
    let head: Head = serde_json::from_slice(bytes)?;
    if head.model == NAME {
        Ok(Box::new(NeuralClassifier::from_bytes(bytes)?))
    } else {
        gigo_ml::classifier::load(bytes)
    }
}

fn uniform(rows: usize, k: usize) -> Matrix {
    let k = k.max(1);
    Matrix::new(rows, k, vec![1.0 / k as f32; rows * k])
}

impl Classifier for NeuralClassifier {
    fn fit(
        &mut self,
        x: &Matrix,
        y: &[u32],
        n_classes: usize,
        sample_weight: Option<&[f32]>,
    ) -> Result<(), MlError> {
        if y.len() != x.rows || x.rows == 0 {
            return Err(MlError::data(format!(
                "{} labels for {} rows of features",
                y.len(),
                x.rows
            )));
        }
        if n_classes < 2 {
            return Err(MlError::data(format!(
                "a classifier needs at least 2 classes, got {n_classes}"
            )));
        }
        if let Some(i) = y.iter().position(|&l| l as usize >= n_classes) {
            return Err(MlError::data(format!(
                "label {} of row {i} is not one of {n_classes} classes",
                y[i]
            )));
        }
        if let Some(w) = sample_weight
            && (w.len() != x.rows || w.iter().any(|v| !v.is_finite() || *v < 0.0))
        {
            return Err(MlError::data(
                "sample weights must be one finite non-negative number per row",
            ));
        }
        if !x.is_finite() {
            return Err(MlError::data("features contain NaN or infinite values"));
        }
        let spec = EncoderSpec::new(self.params.encoder.clone().unwrap_or_default(), x.cols)?;
        let classes: Vec<String> = (0..n_classes).map(|c| c.to_string()).collect();
        let class_weights = self.params.class_weights.resolve(&classes, y);
        let (fitted, report) = fit(
            &self.params.settings(),
            EncoderInit::Fresh(spec),
            n_classes,
            &class_weights,
            &TrainSet {
                x,
                y,
                w: sample_weight,
            },
            None,
            self.seed,
            &mut |_| {},
        )?;
        self.fitted = Some(fitted);
        self.report = Some(report);
        Ok(())
    }

    fn predict_proba(&self, x: &Matrix) -> Matrix {
        match &self.fitted {
            Some(f) if x.cols == f.spec.input_dim => f
                .predict_proba(x)
                .unwrap_or_else(|_| uniform(x.rows, f.n_classes)),
            Some(f) => uniform(x.rows, f.n_classes),
            None => uniform(x.rows, 1),
        }
    }

    fn n_features(&self) -> Option<usize> {
        self.fitted.as_ref().map(|f| f.spec.input_dim)
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn to_bytes(&self) -> Result<Vec<u8>, MlError> {
        let saved = Saved {
            model: NAME.into(),
            state: State {
                params: self.params.clone(),
                seed: self.seed,
                fitted: self.fitted.as_ref().map(|f| SavedFit {
                    spec: f.spec.clone(),
                    n_classes: f.n_classes,
                    weights: hex(&f.weights.to_bytes()),
                }),
            },
        };
        Ok(serde_json::to_vec(&saved)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(params: serde_json::Value) -> String {
        match make(&params, 0) {
            Ok(_) => panic!("{params} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn label_noise_model_params_get_train_checks_and_refuse_diagnosis() {
        let err = refusal(json!({"loss": "gce", "focal_gamma": 2.0}));
        assert!(
            err.contains("focal_gamma") && err.contains("`loss: focal`") && err.contains("gce"),
            "{err}"
        );
        let err = refusal(json!({"diagnosis": {"vanishing_ratio": 0.01}}));
        assert!(err.contains("diagnosis"), "{err}");
        assert!(make(&json!({"optimizer": "sgd", "weight_decay": 0.001}), 0).is_ok());
    }
}
