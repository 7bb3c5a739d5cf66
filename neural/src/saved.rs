//! What a `pretrain` stage puts on its model port: a pretrained encoder
//! (`neural_encoder`). Its config holds the exact resolved parameters, the
//! architecture, the feature columns and the fitted feature encoder (so new
//! rows are standardised exactly as the training rows were); its weights
//! are `GNW1` bytes (see [`crate::weights`]). A trained network travels as
//! every catalogue model does ([`gigo_ml::TrainedModel`],
//! [`crate::network::Network`]).

use gigo_ml::FeatureEncoder;
use gigo_pipeline::Model;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use gigo_ml::trained::PortConfig;

use crate::config::EncoderSpec;
use crate::error::NeuralError;
use crate::network::{NAME as NETWORK, Network};
use crate::weights::Weights;

/// Model kind of a pretrained encoder.
pub const ENCODER_KIND: &str = "neural_encoder";
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

    /// Reads a `neural_encoder` model (a trained `neural_network`'s encoder
    /// is accepted too: fine-tuning can start from a trained network).
    pub fn from_model(model: &Model) -> Result<(EncoderModel, Weights), NeuralError> {
        if model.kind == NETWORK {
            let c = PortConfig::read(&model.config)?;
            let net = Network::from_bytes(&model.weights)?;
            // the network's weights are the encoder's followed by the head's (2 tensors)
            let mut w = net.fitted.weights;
            let keep = w.tensors.len().saturating_sub(2);
            w.tensors.truncate(keep);
            return Ok((
                EncoderModel {
                    format: FORMAT,
                    encoder: net.fitted.spec,
                    feature_columns: c.features.columns().to_vec(),
                    features: c.features,
                    pretrain: c.params,
                    backend: c
                        .provenance
                        .get("backend")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
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
