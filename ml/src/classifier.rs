//! The classifier interface shared by every model (classic ones here, the
//! neural network of the training stage later), and the model catalogue.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::matrix::Matrix;

/// A probabilistic multi-class classifier. Object-safe: stages hold a
/// `Box<dyn Classifier>`.
pub trait Classifier: Send + Sync {
    /// Trains on rows `x` with labels `y` in `0..n_classes` (every class
    /// need not be present) and optional non-negative per-row weights.
    /// Training again replaces the previous fit. Same inputs, same model.
    fn fit(
        &mut self,
        x: &Matrix,
        y: &[u32],
        n_classes: usize,
        sample_weight: Option<&[f32]>,
    ) -> Result<(), MlError>;

    /// Class probabilities, one row per row of `x` and `n_classes` columns
    /// summing to 1. `x` must have the training column count (see
    /// [`Classifier::n_features`]); an unfitted model, or rows of another
    /// width, get uniform probabilities.
    fn predict_proba(&self, x: &Matrix) -> Matrix;

    /// The column count seen in training (`None` before [`Classifier::fit`]).
    fn n_features(&self) -> Option<usize>;

    /// The model's name in the catalogue (`logistic_regression`, ...).
    fn name(&self) -> &'static str;

    /// The fitted model as bytes; [`load`] reads them back.
    fn to_bytes(&self) -> Result<Vec<u8>, MlError>;
}

/// Checks what every `fit` checks: shapes, labels in range, weights.
pub(crate) fn check_fit_inputs(
    x: &Matrix,
    y: &[u32],
    n_classes: usize,
    sample_weight: Option<&[f32]>,
) -> Result<(), MlError> {
    if y.len() != x.rows {
        return Err(MlError::data(format!(
            "{} labels for {} rows of features",
            y.len(),
            x.rows
        )));
    }
    if x.rows == 0 {
        return Err(MlError::data("cannot train on 0 rows"));
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
    if let Some(w) = sample_weight {
        if w.len() != x.rows {
            return Err(MlError::data(format!(
                "{} sample weights for {} rows",
                w.len(),
                x.rows
            )));
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite() || *v < 0.0) {
            return Err(MlError::data(format!(
                "sample weight of row {i} is {}, not a finite non-negative number",
                w[i]
            )));
        }
        if w.iter().all(|&v| v == 0.0) {
            return Err(MlError::data("every sample weight is 0"));
        }
    }
    if !x.is_finite() {
        return Err(MlError::data(
            "features contain NaN or infinite values (encode them with FeatureEncoder first)",
        ));
    }
    Ok(())
}

/// Uniform probabilities (what an unusable input gets).
pub(crate) fn uniform(rows: usize, n_classes: usize) -> Matrix {
    let k = n_classes.max(1);
    Matrix::new(rows, k, vec![1.0 / k as f32; rows * k])
}

/// The name gigo-neural registers its network under in [`ClassifierMakers`]
/// (the `label_noise` stage's `model: mlp`).
pub const MLP: &str = "mlp";

/// Builds an unfitted classifier from its JSON hyper-parameters and a seed,
/// or says what is wrong with the parameters.
pub type MakeClassifier = fn(&serde_json::Value, u64) -> Result<Box<dyn Classifier>, MlError>;

/// Classifiers that other crates add to the catalogue, by the name stages
/// know them by (gigo-neural registers `mlp`), so that a stage can train a
/// model family it does not depend on.
///
/// # Example
/// ```
/// use gigo_ml::classifier::{ClassifierMakers, ModelSpec};
/// use gigo_ml::logistic::LogisticParams;
/// let mut makers = ClassifierMakers::default();
/// makers.register("plain_logistic", |_params, _seed| {
///     ModelSpec::LogisticRegression(LogisticParams::default()).build()
/// });
/// assert_eq!(makers.names(), ["plain_logistic"]);
/// let make = makers.get("plain_logistic").unwrap();
/// assert_eq!(make(&serde_json::json!({}), 0).unwrap().name(), "logistic_regression");
/// assert!(makers.get("mlp").is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClassifierMakers {
    by_name: BTreeMap<String, MakeClassifier>,
}

impl ClassifierMakers {
    /// Registers (or replaces) the maker of `name`.
    pub fn register(&mut self, name: &str, make: MakeClassifier) {
        self.by_name.insert(name.to_string(), make);
    }

    /// The maker of `name`, if one is registered.
    pub fn get(&self, name: &str) -> Option<MakeClassifier> {
        self.by_name.get(name).copied()
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

/// Which classifier to build, with its hyper-parameters (the catalogue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelSpec {
    /// Multinomial logistic regression ([`crate::logistic::LogisticRegression`]).
    LogisticRegression(crate::logistic::LogisticParams),
    /// k-nearest-neighbour vote ([`crate::knn_classifier::KnnClassifier`]).
    Knn(crate::knn_classifier::KnnParams),
    /// Histogram gradient boosting ([`crate::boosting::GradientBoosting`]).
    GradientBoosting(crate::boosting::BoostingParams),
    /// Random forest of Gini trees ([`crate::forest::RandomForest`]).
    RandomForest(crate::forest::ForestParams),
}

impl ModelSpec {
    /// An unfitted classifier of this kind.
    pub fn build(&self) -> Result<Box<dyn Classifier>, MlError> {
        Ok(match self {
            ModelSpec::LogisticRegression(p) => {
                Box::new(crate::logistic::LogisticRegression::new(p.clone())?)
            }
            ModelSpec::Knn(p) => Box::new(crate::knn_classifier::KnnClassifier::new(p.clone())?),
            ModelSpec::GradientBoosting(p) => {
                Box::new(crate::boosting::GradientBoosting::new(p.clone())?)
            }
            ModelSpec::RandomForest(p) => Box::new(crate::forest::RandomForest::new(p.clone())?),
        })
    }
}

/// The envelope [`Classifier::to_bytes`] writes: the model name, then its state.
#[derive(Serialize, Deserialize)]
pub(crate) struct Saved<T> {
    pub model: String,
    pub state: T,
}

pub(crate) fn save<T: Serialize>(model: &str, state: &T) -> Result<Vec<u8>, MlError> {
    Ok(serde_json::to_vec(&Saved {
        model: model.to_string(),
        state,
    })?)
}

/// Reads a model written by [`Classifier::to_bytes`].
pub fn load(bytes: &[u8]) -> Result<Box<dyn Classifier>, MlError> {
    #[derive(Deserialize)]
    struct Head {
        model: String,
    }
    let head: Head = serde_json::from_slice(bytes)?;
    match head.model.as_str() {
        crate::logistic::NAME => Ok(Box::new(crate::logistic::LogisticRegression::from_bytes(
            bytes,
        )?)),
        crate::knn_classifier::NAME => Ok(Box::new(
            crate::knn_classifier::KnnClassifier::from_bytes(bytes)?,
        )),
        crate::boosting::NAME => Ok(Box::new(crate::boosting::GradientBoosting::from_bytes(
            bytes,
        )?)),
        crate::forest::NAME => Ok(Box::new(crate::forest::RandomForest::from_bytes(bytes)?)),
        other => Err(MlError::data(format!("unknown saved model `{other}`"))),
    }
}
