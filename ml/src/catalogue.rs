//! The model catalogue: every classifier gigo can fit, by one name.
//!
//! A model is its parameter type implementing [`Fit`] (linfa's design:
//! fitting the parameters returns the fitted model, so nothing unfitted can
//! be scored) and one [`Catalogue::register`] line. gigo-ml registers the
//! classic models ([`Catalogue::classic`]); gigo-neural registers the
//! network through the binary; a user's program registers its own. Stages
//! that fit (`fit`, `label_noise`) or score (`predict`, `evaluate`) models
//! ask the catalogue and know no model family.
//!
//! # Example
//! ```
//! use gigo_ml::catalogue::{Catalogue, TrainSet};
//! use gigo_ml::Matrix;
//! let catalogue = Catalogue::classic();
//! let x = Matrix::new(4, 1, vec![-2.0, -1.0, 1.0, 2.0]);
//! let model = catalogue
//!     .estimator("knn", &serde_json::json!({"k": 1}))
//!     .unwrap()
//!     .fit_boxed(&TrainSet::new(&x, &[0, 0, 1, 1], 2), 0)
//!     .unwrap();
//! assert_eq!(model.predict_proba(&x).unwrap().row(3), &[0.0, 1.0]);
//! let again = catalogue.load("knn", &model.save().unwrap()).unwrap();
//! assert_eq!(again.predict_proba(&x).unwrap(), model.predict_proba(&x).unwrap());
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::MlError;
use crate::matrix::Matrix;

/// Training rows: features `x`, labels `y` in `0..n_classes` (every class
/// need not be present) and optional non-negative per-row weights.
#[derive(Debug, Clone, Copy)]
pub struct TrainSet<'a> {
    /// One row per example.
    pub x: &'a Matrix,
    /// The class of each row.
    pub y: &'a [u32],
    /// How many classes the model predicts.
    pub n_classes: usize,
    /// Per-row weights (all 1 when `None`).
    pub weights: Option<&'a [f32]>,
}

impl<'a> TrainSet<'a> {
    /// Unweighted rows.
    pub fn new(x: &'a Matrix, y: &'a [u32], n_classes: usize) -> TrainSet<'a> {
        TrainSet {
            x,
            y,
            n_classes,
            weights: None,
        }
    }

    /// The same rows with weights.
    pub fn weighted(mut self, weights: Option<&'a [f32]>) -> TrainSet<'a> {
        self.weights = weights;
        self
    }

    /// Checks what every fit needs: shapes, labels in range, weights,
    /// finite features.
    pub fn check(&self) -> Result<(), MlError> {
        let (x, y, n_classes) = (self.x, self.y, self.n_classes);
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
        if let Some(w) = self.weights {
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
}

/// A fitted probabilistic classifier. Object-safe: stages hold a
/// `Box<dyn FittedModel>`.
pub trait FittedModel: Send + Sync {
    /// Its catalogue name.
    fn name(&self) -> &'static str;

    /// The column count it was fitted on.
    fn n_features(&self) -> usize;

    /// The number of classes it predicts.
    fn n_classes(&self) -> usize;

    /// Class probabilities: one row per row of `x`, [`Self::n_classes`]
    /// columns summing to 1. Rows of another width than
    /// [`Self::n_features`] are an error.
    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError>;

    /// The gradient of the cross-entropy of labels `y` with respect to `x`
    /// (same shape as `x`). `None`: the model is not differentiable (trees,
    /// kNN), so attacks that need gradients do not apply.
    fn loss_gradient(&self, _x: &Matrix, _y: &[u32]) -> Option<Result<Matrix, MlError>> {
        None
    }

    /// The fitted model as bytes; [`FittedModel::load`] reads them.
    fn save(&self) -> Result<Vec<u8>, MlError>;

    /// Reads bytes written by [`FittedModel::save`], refusing damaged ones.
    fn load(bytes: &[u8]) -> Result<Self, MlError>
    where
        Self: Sized;
}

/// Refuses rows of another width than the model was fitted on.
pub fn check_width(model: &dyn FittedModel, x: &Matrix) -> Result<(), MlError> {
    if x.cols != model.n_features() {
        return Err(MlError::data(format!(
            "`{}` was fitted on {} features, these rows have {}",
            model.name(),
            model.n_features(),
            x.cols
        )));
    }
    Ok(())
}

/// A model's parameters, and how to fit and load it: what a catalogue entry
/// is made of. Implemented by each model's parameter type.
pub trait Fit:
    DeserializeOwned + Serialize + JsonSchema + Default + Clone + Send + Sync + 'static
{
    /// The model's one name (YAML `model:`, saved artifacts, reports).
    const NAME: &'static str;
    /// What the model is, in a sentence.
    const DOC: &'static str;
    /// The fitted model.
    type Fitted: FittedModel + 'static;

    /// Checks the parameters before any data is seen.
    fn check(&self) -> Result<(), MlError>;

    /// Fits on `data`; `seed` is the stage's seed (for models whose
    /// parameters carry no seed of their own). Same inputs, same model.
    fn fit(&self, data: &TrainSet, seed: u64) -> Result<Self::Fitted, MlError>;
}

/// Checked parameters of one catalogue model, ready to fit any number of
/// times (one per cross-validation fold).
pub trait Estimator: Send + Sync {
    /// The catalogue name.
    fn name(&self) -> &'static str;
    /// The resolved parameters (defaults filled in), for reports.
    fn params(&self) -> Value;
    /// Fits on `data` (named apart from [`Fit::fit`] so both traits can be
    /// in scope).
    fn fit_boxed(&self, data: &TrainSet, seed: u64) -> Result<Box<dyn FittedModel>, MlError>;
}

impl<P: Fit> Estimator for P {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn params(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    fn fit_boxed(&self, data: &TrainSet, seed: u64) -> Result<Box<dyn FittedModel>, MlError> {
        data.check()?;
        Ok(Box::new(Fit::fit(self, data, seed)?))
    }
}

type LoadFn = fn(&[u8]) -> Result<Box<dyn FittedModel>, MlError>;
type EstimatorFn = fn(&Value) -> Result<Box<dyn Estimator>, MlError>;

/// One registered model.
pub struct Entry {
    name: &'static str,
    doc: &'static str,
    schema: Value,
    estimator: EstimatorFn,
    load: LoadFn,
}

impl Entry {
    /// The catalogue name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// What the model is.
    pub fn doc(&self) -> &'static str {
        self.doc
    }

    /// JSON Schema of its parameters (every subschema inlined).
    pub fn params_schema(&self) -> &Value {
        &self.schema
    }
}

fn estimator<P: Fit>(params: &Value) -> Result<Box<dyn Estimator>, MlError> {
    let params = if params.is_null() {
        Value::Object(Default::default())
    } else {
        params.clone()
    };
    let p: P = serde_path_to_error::deserialize(params).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        if path == "." {
            MlError::Params(inner)
        } else {
            MlError::Params(format!("`{path}`: {inner}"))
        }
    })?;
    p.check()?;
    Ok(Box::new(p))
}

fn load<P: Fit>(bytes: &[u8]) -> Result<Box<dyn FittedModel>, MlError> {
    Ok(Box::new(P::Fitted::load(bytes)?))
}

/// The models a build of gigo can fit and score, by name.
#[derive(Clone, Default)]
pub struct Catalogue {
    entries: BTreeMap<&'static str, Arc<Entry>>,
}

impl std::fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.keys()).finish()
    }
}

impl Catalogue {
    /// An empty catalogue.
    pub fn new() -> Catalogue {
        Catalogue::default()
    }

    /// gigo-ml's own models: `logistic_regression`, `gradient_boosting`,
    /// `random_forest`, `knn`.
    pub fn classic() -> Catalogue {
        let mut c = Catalogue::new();
        c.register::<crate::logistic::LogisticParams>();
        c.register::<crate::boosting::BoostingParams>();
        c.register::<crate::forest::ForestParams>();
        c.register::<crate::knn_classifier::KnnParams>();
        c
    }

    /// Registers (or replaces) the model whose parameters are `P`.
    pub fn register<P: Fit>(&mut self) {
        let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
            s.inline_subschemas = true;
        });
        let mut schema =
            serde_json::to_value(settings.into_generator().into_root_schema_for::<P>())
                .unwrap_or(Value::Null);
        if let Value::Object(m) = &mut schema {
            m.remove("$schema");
            m.remove("title");
        }
        self.entries.insert(
            P::NAME,
            Arc::new(Entry {
                name: P::NAME,
                doc: P::DOC,
                schema,
                estimator: estimator::<P>,
                load: load::<P>,
            }),
        );
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.keys().copied().collect()
    }

    /// Every entry, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().map(Arc::as_ref)
    }

    /// The entry of `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name).map(Arc::as_ref)
    }

    fn entry(&self, name: &str) -> Result<&Entry, MlError> {
        self.get(name).ok_or_else(|| MlError::UnknownModel {
            name: name.to_string(),
            known: self.names().join(", "),
        })
    }

    /// Checked parameters of model `name` (`params` as in YAML's
    /// `model_params`; null means the defaults).
    pub fn estimator(&self, name: &str, params: &Value) -> Result<Box<dyn Estimator>, MlError> {
        (self.entry(name)?.estimator)(params)
    }

    /// Reads a fitted model `name` saved by [`FittedModel::save`].
    pub fn load(&self, name: &str, bytes: &[u8]) -> Result<Box<dyn FittedModel>, MlError> {
        let model = (self.entry(name)?.load)(bytes)?;
        if model.name() != name {
            return Err(MlError::data(format!(
                "the saved model is a `{}`, not a `{name}`",
                model.name()
            )));
        }
        Ok(model)
    }

    /// JSON Schema fragment typing `model_params` by `model`: one
    /// `if model = name then model_params follows its schema` per entry;
    /// `default` is the model used when `model` is absent.
    pub fn params_schema_rules(&self, default: Option<&str>) -> Value {
        let rules: Vec<Value> = self
            .entries()
            .map(|e| {
                let mut when = serde_json::json!({
                    "properties": {"model": {"const": e.name}},
                    "required": ["model"]
                });
                if default == Some(e.name) {
                    when = serde_json::json!({"anyOf": [when, {"not": {"required": ["model"]}}]});
                }
                serde_json::json!({
                    "if": when,
                    "then": {"properties": {"model_params": {
                        "anyOf": [e.schema, {"type": "null"}]
                    }}}
                })
            })
            .collect();
        Value::Array(rules)
    }
}

/// A fitted classic model (gigo-ml's own): its parameters, the shape it
/// was fitted on and the fitted state `M`; saved as JSON under its name and
/// checked when read back. Derefs to the state.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Classic<M: ClassicModel> {
    params: M::Params,
    n_features: usize,
    n_classes: usize,
    model: M,
}

/// What a classic model's fitted state gives [`Classic`]: its parameter
/// type, its probabilities, and checks on a state read back from bytes.
pub trait ClassicModel: Serialize + DeserializeOwned + Send + Sync + Sized + 'static {
    /// The parameters that fitted it.
    type Params: Fit<Fitted = Classic<Self>>;
    /// Class probabilities of rows of the fitted width.
    fn predict(&self, params: &Self::Params, x: &Matrix) -> Matrix;
    /// Checks a state read back from bytes (beyond its parameters).
    fn validate(&self, _n_features: usize, _n_classes: usize) -> Result<(), MlError> {
        Ok(())
    }
}

impl<M: ClassicModel> Classic<M> {
    /// A fitted model of `n_features` features and `n_classes` classes.
    pub fn new(params: M::Params, n_features: usize, n_classes: usize, model: M) -> Classic<M> {
        Classic {
            params,
            n_features,
            n_classes,
            model,
        }
    }

    /// The parameters it was fitted with.
    pub fn params(&self) -> &M::Params {
        &self.params
    }
}

impl<M: ClassicModel> std::ops::Deref for Classic<M> {
    type Target = M;
    fn deref(&self) -> &M {
        &self.model
    }
}

impl<M: ClassicModel> FittedModel for Classic<M> {
    fn name(&self) -> &'static str {
        <M::Params as Fit>::NAME
    }

    fn n_features(&self) -> usize {
        self.n_features
    }

    fn n_classes(&self) -> usize {
        self.n_classes
    }

    fn predict_proba(&self, x: &Matrix) -> Result<Matrix, MlError> {
        check_width(self, x)?;
        Ok(self.model.predict(&self.params, x))
    }

    fn save(&self) -> Result<Vec<u8>, MlError> {
        save_json(self.name(), self)
    }

    fn load(bytes: &[u8]) -> Result<Classic<M>, MlError> {
        let m: Classic<M> = load_json(<M::Params as Fit>::NAME, bytes)?;
        m.params.check()?;
        if m.n_classes < 2 {
            return Err(MlError::data(format!(
                "saved `{}`: fewer than 2 classes",
                m.name()
            )));
        }
        m.model.validate(m.n_features, m.n_classes)?;
        Ok(m)
    }
}

/// Saves a JSON-serialisable fitted model under its name (what the classic
/// models write).
fn save_json<T: Serialize>(name: &str, state: &T) -> Result<Vec<u8>, MlError> {
    #[derive(Serialize)]
    struct Saved<'a, T> {
        model: &'a str,
        state: &'a T,
    }
    Ok(serde_json::to_vec(&Saved { model: name, state })?)
}

/// Reads what [`save_json`] wrote, refusing another model's bytes.
fn load_json<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T, MlError> {
    #[derive(serde::Deserialize)]
    struct Saved<T> {
        model: String,
        state: T,
    }
    let saved: Saved<Value> = serde_json::from_slice(bytes)?;
    if saved.model != name {
        return Err(MlError::data(format!(
            "the saved model is a `{}`, not a `{name}`",
            saved.model
        )));
    }
    Ok(serde_json::from_value(saved.state)?)
}

/// Fits `params` on rows in a unit test.
#[cfg(test)]
pub(crate) fn fit_test<P: Fit>(
    params: P,
    x: &Matrix,
    y: &[u32],
    n_classes: usize,
    weights: Option<&[f32]>,
) -> P::Fitted {
    Fit::fit(
        &params,
        &TrainSet::new(x, y, n_classes).weighted(weights),
        0,
    )
    .unwrap()
}

/// Asserts that `model` saved and read back through the classic catalogue
/// predicts exactly what it did, in a unit test.
#[cfg(test)]
pub(crate) fn assert_round_trips(model: &dyn FittedModel, x: &Matrix) {
    let back = Catalogue::classic()
        .load(model.name(), &model.save().unwrap())
        .unwrap();
    assert_eq!(back.name(), model.name());
    assert_eq!(
        back.predict_proba(x).unwrap(),
        model.predict_proba(x).unwrap()
    );
}
