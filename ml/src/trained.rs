//! A fitted catalogue model with what it needs to score table rows: its
//! feature encoder, its label column and classes. What a model port
//! carries between stages, whichever stage fitted it (`fit`, `train`).
//!
//! On a port it is three parts: the kind (the catalogue name), a JSON config
//! ([`PortConfig`]) and the fitted model's own bytes
//! ([`FittedModel::save`]).

use arrow::array::RecordBatch;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalogue::{Catalogue, FittedModel};
use crate::error::MlError;
use crate::features::FeatureEncoder;
use crate::matrix::Matrix;

/// Version of the config layout.
pub const FORMAT: u32 = 2;

/// A fitted model that scores table rows.
pub struct TrainedModel {
    /// The label column it was fitted on.
    pub label_column: String,
    /// The classes, as text, in the order of the probability columns.
    pub classes: Vec<String>,
    /// How table columns become its input matrix (the fitted encoder, with
    /// its imputation of missing values).
    pub features: FeatureEncoder,
    /// The resolved parameters it was fitted with.
    pub params: Value,
    /// Where it came from, for reports (e.g. the pretraining of a network).
    pub provenance: Value,
    /// The fitted model.
    pub fitted: Box<dyn FittedModel>,
}

/// The JSON config of a model port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// [`FORMAT`].
    pub format: u32,
    /// The label column.
    pub label_column: String,
    /// The classes, in output order.
    pub classes: Vec<String>,
    /// The feature encoder.
    pub features: FeatureEncoder,
    /// The resolved parameters.
    pub params: Value,
    /// Where it came from.
    #[serde(default)]
    pub provenance: Value,
}

impl TrainedModel {
    /// Its catalogue name.
    pub fn name(&self) -> &'static str {
        self.fitted.name()
    }

    /// The kind, config and bytes that travel on a port.
    pub fn to_parts(&self) -> Result<(String, Value, Vec<u8>), MlError> {
        let config = PortConfig {
            format: FORMAT,
            label_column: self.label_column.clone(),
            classes: self.classes.clone(),
            features: self.features.clone(),
            params: self.params.clone(),
            provenance: self.provenance.clone(),
        };
        Ok((
            self.name().to_string(),
            serde_json::to_value(&config)?,
            self.fitted.save()?,
        ))
    }

    /// Reads the parts of a port written by [`TrainedModel::to_parts`],
    /// with the catalogue's loader for `kind`.
    pub fn from_parts(
        catalogue: &Catalogue,
        kind: &str,
        config: &Value,
        bytes: &[u8],
    ) -> Result<TrainedModel, MlError> {
        let fitted = catalogue.load(kind, bytes)?;
        let cfg = PortConfig::read(config)?;
        if fitted.n_classes() != cfg.classes.len() || fitted.n_features() != cfg.features.width() {
            return Err(MlError::data(format!(
                "the saved `{kind}` predicts {} classes from {} features, its config says {} \
                 classes and {} features",
                fitted.n_classes(),
                fitted.n_features(),
                cfg.classes.len(),
                cfg.features.width()
            )));
        }
        Ok(TrainedModel {
            label_column: cfg.label_column,
            classes: cfg.classes,
            features: cfg.features,
            params: cfg.params,
            provenance: cfg.provenance,
            fitted,
        })
    }

    /// The encoded rows of `batches` (missing values imputed by the encoder).
    pub fn encode(&self, batches: &[RecordBatch]) -> Result<Matrix, MlError> {
        self.features.transform(batches)
    }

    /// Class probabilities of encoded rows.
    pub fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
        self.fitted.predict_proba(x)
    }
}

impl PortConfig {
    /// Reads a port's config, refusing another format.
    pub fn read(config: &Value) -> Result<PortConfig, MlError> {
        let format = config.get("format").and_then(Value::as_u64);
        if format != Some(FORMAT as u64) {
            return Err(MlError::data(format!(
                "the model's config is format {}; this gigo reads format {FORMAT} (fit it again)",
                format.map_or("unknown".to_string(), |f| f.to_string())
            )));
        }
        Ok(serde_json::from_value(config.clone())?)
    }
}
