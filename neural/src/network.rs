//! The neural network as a catalogue model (`neural_network`), so that the
//! `fit` stage, label-noise cross-validation, `predict` and `evaluate` use
//! it like any other model. The `train` stage fits the same network with
//! validation rows, a pretrained encoder and a report, and puts the same
//! [`Network`] on its model port.
//!
//! Through the catalogue it fits with [`TrainParams`] (the `train` stage's
//! parameters; `features`, `sample_weights`, `diagnosis`, early stopping and
//! the fine-tuning ones do not apply: the caller passes an encoded matrix
//! and weights, there are no validation rows and no report).
//!
//! # Example
//! ```
//! use gigo_ml::{Fit, FittedModel, Matrix, TrainSet};
//! use gigo_neural::train::TrainParams;
//!
//! let x = Matrix::new(4, 1, vec![-2.0, -1.0, 1.0, 2.0]);
//! let params = TrainParams { epochs: 50, lr: 0.05, ..TrainParams::default() };
//! let model = params.fit(&TrainSet::new(&x, &[0, 0, 1, 1], 2), 7).unwrap();
//! let p = model.predict_proba(&x).unwrap();
//! assert!(p.get(0, 0) > 0.5 && p.get(3, 1) > 0.5);
//! let again = gigo_neural::Network::load(&model.save().unwrap()).unwrap();
//! assert_eq!(again.predict_proba(&x).unwrap(), p);
//! ```

use burn::tensor::activation;
use gigo_ml::catalogue::{Catalogue, Fit, FittedModel, TrainSet, check_width};
use gigo_ml::{Matrix, MlError};
use serde::{Deserialize, Serialize};

use crate::backend::training_device;
use crate::config::EncoderSpec;
use crate::fit::{self, EncoderInit, Fitted, onehot, rows_tensor};
use crate::train::TrainParams;
use crate::weights::Weights;

/// Catalogue name.
pub const NAME: &str = "neural_network";

/// Leading bytes of a saved [`Network`].
const MAGIC: &[u8; 4] = b"GNN1";

/// Rows per forward pass when taking gradients (bounds memory).
const CHUNK: usize = 4096;

/// A fitted network: its architecture and weights.
pub struct Network {
    /// The architecture, classes and weights.
    pub fitted: Fitted,
}

#[derive(Serialize, Deserialize)]
struct Header {
    spec: EncoderSpec,
    n_classes: usize,
}

/// Registers the network in `catalogue` as [`NAME`].
///
/// # Example
/// ```
/// let mut catalogue = gigo_ml::Catalogue::classic();
/// gigo_neural::network::register(&mut catalogue);
/// let e = catalogue.estimator("neural_network", &serde_json::json!({"epochs": 3})).unwrap();
/// assert_eq!(e.name(), "neural_network");
/// let err = catalogue
///     .estimator("neural_network", &serde_json::json!({"features": ["a"]}))
///     .err()
///     .unwrap();
/// assert!(err.to_string().contains("features"));
/// ```
pub fn register(catalogue: &mut Catalogue) {
    catalogue.register::<TrainParams>();
}

impl Fit for TrainParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str =
        "the `train` stage's network (encoder `mlp` or `cnn`, every training lever)";
    type Fitted = Network;

    fn check(&self) -> Result<(), MlError> {
        if let Err(problems) = TrainParams::check(self) {
            let msg = problems
                .iter()
                .map(|p| format!("{}: {}", p.path.join("."), p.message))
                .collect::<Vec<_>>()
                .join("; ");
            return Err(MlError::Params(msg));
        }
        let not_here = [
            (
                "features",
                self.features.is_some(),
                "the stage's own `features` choose the columns",
            ),
            (
                "sample_weights",
                !self.sample_weights,
                "the stage passes the table's weight column",
            ),
            (
                "freeze_encoder",
                self.freeze_encoder,
                "there is no pretrained encoder here (use the `train` stage)",
            ),
            (
                "encoder_lr",
                self.encoder_lr.is_some(),
                "there is no pretrained encoder here (use the `train` stage)",
            ),
            (
                "diagnosis",
                self.diagnosis.is_some(),
                "only the `train` stage writes a diagnosed report",
            ),
            (
                "early_stopping",
                self.early_stopping.is_some(),
                "a catalogue fit has no validation rows (use the `train` stage)",
            ),
            (
                "pseudo_label",
                self.pseudo_label.is_some(),
                "a catalogue fit sees labelled rows only (use the `train` stage)",
            ),
        ];
        if let Some((name, _, why)) = not_here.iter().find(|(_, set, _)| *set) {
            return Err(MlError::param(
                name,
                format!("does not apply to a `{NAME}` fitted through the catalogue: {why}"),
            ));
        }
        Ok(())
    }

    fn fit(&self, data: &TrainSet, seed: u64) -> Result<Network, MlError> {
        Fit::check(self)?;
        data.check()?;
        let spec = EncoderSpec::new(self.encoder.clone().unwrap_or_default(), data.x.cols)?;
        let classes: Vec<String> = (0..data.n_classes).map(|c| c.to_string()).collect();
        let class_weights = self.class_weights.resolve(&classes, data.y);
        let (fitted, _report) = fit::fit(
            &self.settings(),
            EncoderInit::Fresh(spec),
            data.n_classes,
            &class_weights,
            &mut fit::TrainSet {
                x: data.x,
                y: data.y,
                w: data.weights,
            },
            None,
            seed,
            &mut |_| {},
        )?;
        Ok(Network { fitted })
    }
}

impl Network {
    /// Reads what [`FittedModel::save`] wrote.
    pub fn from_bytes(bytes: &[u8]) -> Result<Network, MlError> {
        let bad = |why: &str| MlError::data(format!("saved `{NAME}`: {why}"));
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or_else(|| bad("not a saved network"))?;
        let (len, rest) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| bad("truncated"))?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(bad("truncated"));
        }
        let header: Header = serde_json::from_slice(&rest[..len])?;
        let weights = Weights::from_bytes(&rest[len..])?;
        Ok(Network {
            fitted: Fitted {
                spec: header.spec,
                n_classes: header.n_classes,
                weights,
            },
        })
    }

    fn gradient(&self, x: &Matrix, y: &[u32]) -> Result<Matrix, MlError> {
        check_width(self, x)?;
        if y.len() != x.rows {
            return Err(MlError::data(format!(
                "gradient of {} rows with {} labels",
                x.rows,
                y.len()
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
                .ok_or_else(|| MlError::Internal("the network gave no input gradient".into()))?;
            out.extend(
                g.try_into_vec_as::<f32>()
                    .map_err(|e| MlError::Internal(format!("reading an input gradient: {e:?}")))?,
            );
        }
        Ok(Matrix::new(x.rows, x.cols, out))
    }
}

impl FittedModel for Network {
    fn name(&self) -> &'static str {
        NAME
    }

    fn n_features(&self) -> usize {
        self.fitted.spec.input_dim
    }

    fn n_classes(&self) -> usize {
        self.fitted.n_classes
    }

    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
        check_width(self, x)?;
        Ok(self.fitted.predict_proba(x)?)
    }

    /// Gradients through the network with dropout off. A batch-normalised
    /// network normalises each chunk of rows by its own statistics here (burn
    /// takes batch norm's training path under autodiff), a close
    /// approximation of its inference mode on chunks of thousands of rows.
    fn loss_gradient(&self, x: &Matrix, y: &[u32]) -> Option<Result<Matrix, MlError>> {
        Some(self.gradient(x, y))
    }

    fn save(&self) -> Result<Vec<u8>, MlError> {
        let header = serde_json::to_vec(&Header {
            spec: self.fitted.spec.clone(),
            n_classes: self.fitted.n_classes,
        })?;
        let weights = self.fitted.weights.to_bytes();
        let mut out = Vec::with_capacity(8 + header.len() + weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&weights);
        Ok(out)
    }

    fn load(bytes: &[u8]) -> Result<Network, MlError> {
        Network::from_bytes(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn refusal(params: serde_json::Value) -> String {
        let mut c = Catalogue::new();
        register(&mut c);
        match c.estimator(NAME, &params) {
            Ok(_) => panic!("{params} accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn catalogue_params_get_train_checks_and_refuse_what_does_not_apply() {
        let err = refusal(json!({"loss": "gce", "focal_gamma": 2.0}));
        assert!(
            err.contains("focal_gamma") && err.contains("`loss: focal`") && err.contains("gce"),
            "{err}"
        );
        let err = refusal(json!({"diagnosis": {"vanishing_ratio": 0.01}}));
        assert!(err.contains("diagnosis"), "{err}");
        let err = refusal(json!({"early_stopping": {"patience": 2}}));
        assert!(err.contains("early_stopping"), "{err}");
        let err = refusal(json!({"epoch": 2}));
        assert!(err.contains("epoch"), "{err}");
        let mut c = Catalogue::new();
        register(&mut c);
        assert!(
            c.estimator(NAME, &json!({"optimizer": "sgd", "weight_decay": 0.001}))
                .is_ok()
        );
    }

    #[test]
    fn saved_networks_round_trip_and_damage_is_an_error() {
        let x = Matrix::new(4, 1, vec![-2.0, -1.0, 1.0, 2.0]);
        let params = TrainParams {
            epochs: 5,
            ..TrainParams::default()
        };
        let m = params.fit(&TrainSet::new(&x, &[0, 0, 1, 1], 2), 1).unwrap();
        let bytes = m.save().unwrap();
        let back = Network::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.predict_proba(&x).unwrap(),
            m.predict_proba(&x).unwrap()
        );
        assert!(Network::from_bytes(&bytes[..10]).is_err());
        assert!(Network::from_bytes(b"{\"model\":1}").is_err());
        assert!(m.predict_proba(&Matrix::zeros(1, 2)).is_err());
        let g = m.loss_gradient(&x, &[0, 0, 1, 1]).unwrap().unwrap();
        assert_eq!((g.rows, g.cols), (4, 1));
    }
}
