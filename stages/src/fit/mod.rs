//! `fit`: trains any catalogue model on a table and puts it on a model port.
//!
//! `model` names the catalogue model (`logistic_regression`,
//! `gradient_boosting`, `random_forest`, `knn`, `neural_network`, or one a
//! program registers) and `model_params` its parameters, typed per model in
//! `gigo schema`. The feature columns (role `feature`, or `features`) are
//! encoded by gigo-ml's feature encoder (numeric standardised, text one-hot);
//! a weight column (role `weight`) weighs the rows. Rows without a label are
//! not trained on (counted in the summary). The model port holds the fitted
//! model with its encoder, label column and classes, so `predict` and
//! `evaluate` score new rows exactly as the training rows were encoded.

mod report;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use gigo_ml::{
    Catalogue, Classes, EncoderOptions, Estimator, FeatureEncoder, TrainSet, TrainedModel,
};
use gigo_pipeline::Metrics;
use gigo_pipeline::{
    Inputs, ParamProblem, PortKind, PortSpec, Registry, Role, Stage, StageContext, StageError,
    StageOutput, Table,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::error::from_model as ml;
use crate::models;

/// The stage type name.
pub const STAGE_TYPE: &str = "fit";

/// Parameters of `fit`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FitParams {
    /// The catalogue model.
    pub model: String,
    /// Its parameters (typed per model in `gigo schema`; unknown names are
    /// errors).
    #[serde(default)]
    pub model_params: Option<BTreeMap<String, Value>>,
    /// Feature columns (default: the columns with role `feature`).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Text features keep their most frequent values as indicators (default 32).
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// Standardise numeric features (default true).
    #[serde(default = "default_true")]
    pub standardize: bool,
}

fn default_max_categories() -> usize {
    32
}
fn default_true() -> bool {
    true
}

/// The `fit` stage.
pub struct Fit {
    params: FitParams,
    model: Arc<dyn Estimator>,
}

/// Registers `fit`, fitting the models of `catalogue`.
pub fn register(registry: &mut Registry, catalogue: &Catalogue) {
    let cat = catalogue.clone();
    registry.register::<FitParams, _>(
        STAGE_TYPE,
        "Trains any catalogue model (logistic_regression, gradient_boosting, random_forest, \
         knn, neural_network, or one a program registers) on the feature columns of a table \
         and outputs it on its `model` port, with its feature encoder, label column and \
         classes, for `predict` and `evaluate`.",
        move |params: FitParams| {
            let mut problems = Vec::new();
            if params.max_categories == 0 {
                problems.push(ParamProblem::new("max_categories", "must be at least 1"));
            }
            if params.features.as_ref().is_some_and(Vec::is_empty) {
                problems.push(ParamProblem::new(
                    "features",
                    "must list at least one column",
                ));
            }
            let model_params = Value::Object(
                params
                    .model_params
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .collect(),
            );
            match models::estimator(&cat, &params.model, &model_params) {
                Ok(model) if problems.is_empty() => Ok(Box::new(Fit {
                    params,
                    model: Arc::from(model),
                })),
                Ok(_) => Err(problems),
                Err(p) => {
                    problems.push(p);
                    Err(problems)
                }
            }
        },
    );
    models::type_model_params(registry, STAGE_TYPE, catalogue, None);
}

impl Stage for Fit {
    fn metrics(&self) -> Metrics {
        Metrics::names(["train_accuracy"])
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table("table", "the training rows")]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::aside(
            "model",
            PortKind::Model,
            "the fitted model, its feature encoder, label column and classes",
        )]
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let table = inputs.table("table")?;
        let fitted = self.fit(&table, ctx)?;
        let summary = report::summary(&ctx.stage_id, &fitted)?;
        Ok(StageOutput::new()
            .with("model", models::port(&fitted.model)?)
            .with_summary(summary))
    }
}

/// A fit and what the summary says of it.
pub(crate) struct Fitted {
    pub model: TrainedModel,
    pub rows: usize,
    pub unlabelled: usize,
    pub train_accuracy: f64,
}

impl Fit {
    fn fit(&self, table: &Table, ctx: &StageContext) -> Result<Fitted, StageError> {
        let name = self.model.name();
        let label = table.label_column()?;
        let features = match &self.params.features {
            Some(f) => f.clone(),
            None => table.columns_with_role(Role::Feature),
        };
        if features.is_empty() {
            return Err(StageError::data(
                "the input table has no feature columns (role `feature`); name them in `features`",
            ));
        }
        if let Some(c) = features.iter().find(|c| **c == label) {
            return Err(StageError::data(format!(
                "`features` lists the label column `{c}`"
            )));
        }
        let batch = table.to_batch()?;
        let col = batch
            .column_by_name(&label)
            .ok_or_else(|| StageError::internal("label column vanished"))?;
        let (classes, index) = Classes::of(col).map_err(ml(name))?;
        let labelled: Vec<usize> = (0..index.len()).filter(|&i| index[i].is_some()).collect();
        let unlabelled = index.len() - labelled.len();
        if unlabelled > 0 {
            ctx.log(format!(
                "{unlabelled} rows without a label in `{label}` are not trained on"
            ));
        }
        if classes.len() < 2 {
            return Err(StageError::data(format!(
                "label column `{label}` has {} class(es) among the labelled rows; a classifier needs 2",
                classes.len()
            )));
        }
        let opts = EncoderOptions {
            max_categories: self.params.max_categories,
            standardize: self.params.standardize,
        };
        let rows = if unlabelled == 0 {
            batch
        } else {
            let idx =
                arrow::array::UInt32Array::from_iter_values(labelled.iter().map(|&i| i as u32));
            arrow::compute::take_record_batch(&batch, &idx)?
        };
        let enc =
            FeatureEncoder::fit(std::slice::from_ref(&rows), &features, &opts).map_err(ml(name))?;
        let x = enc
            .transform(std::slice::from_ref(&rows))
            .map_err(ml(name))?;
        let y: Vec<u32> = labelled.iter().filter_map(|&i| index[i]).collect();
        let weights = models::row_weights(table, &rows)?;
        ctx.progress.message(&format!("fitting {name}"));
        let data = TrainSet::new(&x, &y, classes.len()).weighted(weights.as_deref());
        let fitted = self.model.fit_boxed(&data, ctx.seed).map_err(ml(name))?;
        let p = fitted.predict_proba(&x).map_err(ml(name))?;
        let predicted = crate::evaluate::metrics::argmax_rows(&p.data, p.cols);
        let correct = predicted.iter().zip(&y).filter(|(a, b)| a == b).count();
        Ok(Fitted {
            model: TrainedModel {
                label_column: label,
                classes: classes.names().to_vec(),
                features: enc,
                params: self.model.params(),
                provenance: Value::Null,
                fitted,
            },
            rows: y.len(),
            unlabelled,
            train_accuracy: correct as f64 / y.len().max(1) as f64,
        })
    }
}
