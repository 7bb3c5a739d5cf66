//! What the stages that fit or score catalogue models share: parameters
//! checked by the catalogue, `model_params` typed in the schema, and model
//! ports read and written as [`TrainedModel`]s.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use gigo_ml::{Catalogue, Estimator, MlError, TrainedModel};
use gigo_pipeline::diag::did_you_mean;
use gigo_pipeline::{Model, ParamProblem, Registry, Role, StageError, Table};
use serde_json::{Value, json};

/// The checked estimator of catalogue model `name` with `params`, or the
/// problem (under `model` or `model_params`).
pub fn estimator(
    catalogue: &Catalogue,
    name: &str,
    params: &Value,
) -> Result<Box<dyn Estimator>, ParamProblem> {
    if catalogue.get(name).is_none() {
        let mut p = ParamProblem::new(
            "model",
            format!(
                "unknown model `{name}`; this build has {}",
                catalogue
                    .names()
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        p.help = did_you_mean(name, catalogue.names()).map(|s| format!("did you mean `{s}`?"));
        return Err(p);
    }
    catalogue.estimator(name, params).map_err(|e| match e {
        MlError::InvalidParam { param, reason } => ParamProblem::new(
            &format!("model_params.{param}"),
            format!("`{param}` of model `{name}` {reason}"),
        ),
        other => ParamProblem::new("model_params", format!("model `{name}`: {other}")),
    })
}

/// The model and its resolved parameters, for a summary:
/// `{"model": name, ...params}`.
pub fn describe(model: &dyn Estimator) -> Value {
    let mut v = model.params();
    match &mut v {
        Value::Object(m) => {
            m.insert("model".into(), json!(model.name()));
        }
        _ => v = json!({"model": model.name(), "params": v}),
    }
    v
}

/// Types `model` (one of the catalogue's names) and `model_params` (by the
/// value of `model`) in the schema of stage type `stage`.
pub fn type_model_params(
    registry: &mut Registry,
    stage: &str,
    catalogue: &Catalogue,
    default: Option<&str>,
) {
    registry.refine_schema(stage, |schema| {
        let Some(obj) = schema.as_object_mut() else {
            return;
        };
        if let Some(Value::Object(props)) = obj.get_mut("properties")
            && let Some(Value::Object(model)) = props.get_mut("model")
        {
            model.insert("enum".into(), json!(catalogue.names()));
        }
        let rules = catalogue.params_schema_rules(default);
        match obj.get_mut("allOf") {
            Some(Value::Array(all)) => all.extend(rules.as_array().cloned().unwrap_or_default()),
            _ => {
                obj.insert("allOf".into(), rules);
            }
        }
    });
}

/// Reads a model port with the catalogue.
pub fn load(catalogue: &Catalogue, model: &Model) -> Result<TrainedModel, MlError> {
    TrainedModel::from_parts(catalogue, &model.kind, &model.config, &model.weights)
}

/// The port form of a fitted model.
pub fn port(model: &TrainedModel) -> Result<Model, StageError> {
    let (kind, config, weights) = model
        .to_parts()
        .map_err(|e| StageError::internal(format!("saving the model: {e}")))?;
    Ok(Model {
        kind,
        config,
        weights,
    })
}

/// The weight column's values (nulls as 1) to weigh training rows, if any.
pub fn row_weights(table: &Table, batch: &RecordBatch) -> Result<Option<Vec<f32>>, StageError> {
    let Some(name) = table.columns_with_role(Role::Weight).into_iter().next() else {
        return Ok(None);
    };
    let c = batch.column_by_name(&name).ok_or_else(|| {
        StageError::data(format!(
            "the weight column `{name}` is not in the input table"
        ))
    })?;
    if !(c.data_type().is_numeric() || c.data_type() == &DataType::Boolean) {
        return Err(StageError::data(format!(
            "the weight column `{name}` has type {}, not numbers",
            c.data_type()
        )));
    }
    let v = cast(c, &DataType::Float64)?;
    let v = v.as_primitive::<Float64Type>();
    let w: Vec<f32> = (0..v.len())
        .map(|i| if v.is_null(i) { 1.0 } else { v.value(i) as f32 })
        .collect();
    if let Some(i) = w.iter().position(|x| !x.is_finite() || *x < 0.0) {
        return Err(StageError::data(format!(
            "the weight column `{name}` has {} in row {i}; weights must be finite and >= 0",
            w[i]
        )));
    }
    Ok(Some(w))
}
