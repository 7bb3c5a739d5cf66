//! What travels on model ports: a pretrained encoder (`neural_encoder`) or
//! a trained classifier (`neural_classifier`). Each [`Model`] is
//! self-contained: its config holds the exact resolved parameters, the
//! architecture, the feature columns and the fitted feature encoder (so new
//! rows are standardised exactly as the training rows were), and for a
//! classifier the label column and classes; its weights are `GNW1` bytes
//! (see [`crate::weights`]).

use gigo_ml::FeatureEncoder;
use gigo_pipeline::Model;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::EncoderSpec;
use crate::error::NeuralError;
use crate::fit::Fitted;
use crate::weights::Weights;

/// Model kind of a pretrained encoder.
pub const ENCODER_KIND: &str = "neural_encoder";
/// Model kind of a trained classifier.
pub const CLASSIFIER_KIND: &str = "neural_classifier";
/// Version of the config layout.
pub const FORMAT: u32 = 1;

/// Config of a `neural_encoder` model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderModel {
    /// [`FORMAT`].
    pub format: u32,
    /// The architecture.
    pub encoder: EncoderSpec,
    /// The input columns, in order.
    pub feature_columns: Vec<String>,
    /// How those columns become the encoder's input.
    pub features: FeatureEncoder,
    /// The resolved parameters of the `pretrain` stage that made it.
    pub pretrain: Value,
    /// The burn backend it was trained on.
    pub backend: String,
}

/// Config of a `neural_classifier` model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierModel {
    /// [`FORMAT`].
    pub format: u32,
    /// The encoder's architecture (the head maps its width to the classes).
    pub encoder: EncoderSpec,
    /// The input columns, in order.
    pub feature_columns: Vec<String>,
    /// How those columns become the network's input.
    pub features: FeatureEncoder,
    /// The label column it was trained on.
    pub label_column: String,
    /// The classes, as text, in output order.
    pub classes: Vec<String>,
    /// The resolved parameters of the `train` stage that made it.
    pub train: Value,
    /// The pretraining that made the initial encoder, if any.
    pub pretrained: Option<Value>,
    /// The burn backend it was trained on.
    pub backend: String,
}

fn check_kind(model: &Model, kind: &str) -> Result<(), NeuralError> {
    if model.kind != kind {
        return Err(NeuralError::data(format!(
            "the model on this port is a `{}`, expected a `{kind}`",
            model.kind
        )));
    }
    Ok(())
}

fn check_format(format: u32) -> Result<(), NeuralError> {
    if format != FORMAT {
        return Err(NeuralError::Saved(format!(
            "config format {format}; this gigo reads format {FORMAT}"
        )));
    }
    Ok(())
}

impl EncoderModel {
    /// The port artifact.
    pub fn into_model(self, weights: &Weights) -> Result<Model, NeuralError> {
        Ok(Model {
            kind: ENCODER_KIND.into(),
            config: serde_json::to_value(&self)
                .map_err(|e| NeuralError::internal(format!("encoder config: {e}")))?,
            weights: weights.to_bytes(),
        })
    }

    /// Reads a `neural_encoder` model (a classifier's encoder is accepted
    /// too: fine-tuning can start from a trained classifier's encoder).
    pub fn from_model(model: &Model) -> Result<(EncoderModel, Weights), NeuralError> {
        if model.kind == CLASSIFIER_KIND {
            let (c, fitted) = ClassifierModel::from_model(model)?;
            // the classifier's weights are the encoder's followed by the head's (2 tensors)
            let mut w = fitted.weights;
            let keep = w.tensors.len().saturating_sub(2);
            w.tensors.truncate(keep);
            return Ok((
                EncoderModel {
                    format: FORMAT,
                    encoder: c.encoder,
                    feature_columns: c.feature_columns,
                    features: c.features,
                    pretrain: c.train,
                    backend: c.backend,
                },
                w,
            ));
        }
        check_kind(model, ENCODER_KIND)?;
        let cfg: EncoderModel = serde_json::from_value(model.config.clone())
            .map_err(|e| NeuralError::Saved(format!("encoder config: {e}")))?;
        check_format(cfg.format)?;
        Ok((cfg, Weights::from_bytes(&model.weights)?))
    }
}

impl ClassifierModel {
    /// The port artifact.
    pub fn into_model(self, weights: &Weights) -> Result<Model, NeuralError> {
        Ok(Model {
            kind: CLASSIFIER_KIND.into(),
            config: serde_json::to_value(&self)
                .map_err(|e| NeuralError::internal(format!("classifier config: {e}")))?,
            weights: weights.to_bytes(),
        })
    }

    /// Reads a `neural_classifier` model, ready to predict.
    pub fn from_model(model: &Model) -> Result<(ClassifierModel, Fitted), NeuralError> {
        check_kind(model, CLASSIFIER_KIND)?;
        let cfg: ClassifierModel = serde_json::from_value(model.config.clone())
            .map_err(|e| NeuralError::Saved(format!("classifier config: {e}")))?;
        check_format(cfg.format)?;
        let fitted = Fitted {
            spec: cfg.encoder.clone(),
            n_classes: cfg.classes.len(),
            weights: Weights::from_bytes(&model.weights)?,
        };
        Ok((cfg, fitted))
    }
}
