//! A trained model as the evaluation stage sees it: it turns table rows into
//! class probabilities, knows its label column and classes, and, when it is
//! differentiable, gives the gradient of its loss with respect to its encoded
//! inputs (for adversarial perturbations).
//!
//! Models travel between stages as a kind, a JSON config and weight bytes.
//! Each crate that makes models registers a loader for its kinds in
//! [`ScorerLoaders`]; the evaluation stage asks the loaders, so it needs to
//! know no model family (gigo-neural registers `neural_classifier` there).

use std::collections::BTreeMap;

use crate::error::MlError;
use crate::features::{ColumnEncoding, FeatureEncoder};
use crate::matrix::Matrix;

/// A trained classifier over table rows.
pub trait Scorer: Send + Sync {
    /// The label column it was trained on.
    fn label_column(&self) -> &str;

    /// The classes, as text, in the order of the probability columns.
    fn classes(&self) -> &[String];

    /// How table columns become its input matrix (the fitted encoder, with
    /// its imputation policy for missing values).
    fn features(&self) -> &FeatureEncoder;

    /// Class probabilities of every row of the encoded matrix `x`.
    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError>;

    /// The gradient of the cross-entropy of labels `y` with respect to `x`
    /// (same shape as `x`), in inference mode. `None`: the model is not
    /// differentiable (trees, kNN), so no adversarial perturbation applies.
    fn loss_gradient(&self, _x: &Matrix, _y: &[u32]) -> Option<Result<Matrix, MlError>> {
        None
    }
}

/// Reads a model from its port's config and weights.
pub type LoadScorer = fn(&serde_json::Value, &[u8]) -> Result<Box<dyn Scorer>, MlError>;

/// Loaders by model kind.
///
/// # Example
/// ```
/// use gigo_ml::scorer::ScorerLoaders;
/// let loaders = ScorerLoaders::default();
/// let err = loaders.load("mystery", &serde_json::Value::Null, &[]).err().unwrap();
/// assert!(err.to_string().contains("mystery"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScorerLoaders {
    by_kind: BTreeMap<String, LoadScorer>,
}

impl ScorerLoaders {
    /// Registers (or replaces) the loader of model kind `kind`.
    pub fn register(&mut self, kind: &str, load: LoadScorer) {
        self.by_kind.insert(kind.to_string(), load);
    }

    /// The kinds that can be loaded.
    pub fn kinds(&self) -> Vec<&str> {
        self.by_kind.keys().map(String::as_str).collect()
    }

    /// Loads a model of `kind`.
    pub fn load(
        &self,
        kind: &str,
        config: &serde_json::Value,
        weights: &[u8],
    ) -> Result<Box<dyn Scorer>, MlError> {
        match self.by_kind.get(kind) {
            Some(load) => load(config, weights),
            None => Err(MlError::data(format!(
                "cannot score a model of kind `{kind}`: this build loads {}",
                if self.by_kind.is_empty() {
                    "no model kind (is the `neural` feature off?)".to_string()
                } else {
                    self.kinds()
                        .iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ))),
        }
    }
}

/// For each output column of `encoder`, whether it encodes a numeric input
/// (`false` for one-hot indicators, which an adversary must not move).
pub fn numeric_outputs(encoder: &FeatureEncoder) -> Vec<bool> {
    let mut out = Vec::with_capacity(encoder.width());
    for enc in encoder.encodings() {
        let numeric = matches!(enc, ColumnEncoding::Numeric { .. });
        out.extend(std::iter::repeat_n(numeric, enc.width()));
    }
    out
}
