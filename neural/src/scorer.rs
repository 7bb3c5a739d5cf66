//! A `neural_classifier` model as a [`Scorer`] for the evaluation stage:
//! probabilities through its fitted feature encoder, and the input gradient
//! of its cross-entropy (burn's autodiff) for adversarial perturbations.

use burn::tensor::activation;
use gigo_ml::scorer::{Scorer, ScorerLoaders};
use gigo_ml::{FeatureEncoder, Matrix, MlError};
use gigo_pipeline::Model;

use crate::backend::training_device;
use crate::fit::{Fitted, onehot, rows_tensor};
use crate::saved::{CLASSIFIER_KIND, ClassifierModel};

/// A trained neural classifier, ready to score rows.
pub struct NeuralScorer {
    config: ClassifierModel,
    fitted: Fitted,
}

impl NeuralScorer {
    /// Reads a `neural_classifier` model.
    pub fn from_model(model: &Model) -> Result<NeuralScorer, MlError> {
        let (config, fitted) = ClassifierModel::from_model(model)?;
        Ok(NeuralScorer { config, fitted })
    }
}

fn load(config: &serde_json::Value, weights: &[u8]) -> Result<Box<dyn Scorer>, MlError> {
    let model = Model {
        kind: CLASSIFIER_KIND.into(),
        config: config.clone(),
        weights: weights.to_vec(),
    };
    Ok(Box::new(NeuralScorer::from_model(&model)?))
}

/// Registers the loader of `neural_classifier` models.
pub fn register_loaders(loaders: &mut ScorerLoaders) {
    loaders.register(CLASSIFIER_KIND, load);
}

/// Rows per forward pass (bounds memory on large tables).
const CHUNK: usize = 4096;

impl Scorer for NeuralScorer {
    fn label_column(&self) -> &str {
        &self.config.label_column
    }

    fn classes(&self) -> &[String] {
        &self.config.classes
    }

    fn features(&self) -> &FeatureEncoder {
        &self.config.features
    }

    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
        Ok(self.fitted.predict_proba(x)?)
    }

    /// Gradients through the network with dropout off. A batch-normalised
    /// network normalises each chunk of rows by its own statistics here (burn
    /// takes batch norm's training path under autodiff), a close
    /// approximation of its inference mode on chunks of thousands of rows.
    fn loss_gradient(&self, x: &Matrix, y: &[u32]) -> Option<Result<Matrix, MlError>> {
        Some(self.gradient(x, y))
    }
}

impl NeuralScorer {
    fn gradient(&self, x: &Matrix, y: &[u32]) -> Result<Matrix, MlError> {
        if x.cols != self.fitted.spec.input_dim || y.len() != x.rows {
            return Err(MlError::data(format!(
                "gradient of {} rows x {} features with {} labels; the model takes {} features",
                x.rows,
                x.cols,
                y.len(),
                self.fitted.spec.input_dim
            )));
        }
        let device = training_device();
        let net = self.fitted.net_on(&device)?;
        let k = self.fitted.n_classes;
        let mut out = Vec::with_capacity(x.rows * x.cols);
        let all: Vec<usize> = (0..x.rows).collect();
        for chunk in all.chunks(CHUNK) {
            let input = rows_tensor(x, chunk, &device).require_grad();
            let logits = net.forward(input.clone(), None);
            let q = onehot(chunk.iter().map(|&i| Some(y[i])), k, &device);
            let loss = (activation::log_softmax(logits, 1) * q).sum().neg();
            let grads = loss.backward();
            let g = input
                .grad(&grads)
                .ok_or_else(|| MlError::data("the network gave no input gradient"))?;
            out.extend(
                g.try_into_vec_as::<f32>()
                    .map_err(|e| MlError::data(format!("reading an input gradient: {e:?}")))?,
            );
        }
        Ok(Matrix::new(x.rows, x.cols, out))
    }
}
