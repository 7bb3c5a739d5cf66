//! gigo-ml's errors as stage errors, keeping their source.
//!
//! The caller's data or parameters (a missing column, a degenerate label, a
//! bad `model_params`) stay the user's problem, with the [`MlError`]
//! reachable through `source()`; a broken invariant inside gigo-ml, or an
//! Arrow failure there, stays a bug ("this is a bug"), never blamed on the
//! data.

use gigo_ml::MlError;
use gigo_pipeline::StageError;

/// An [`MlError`] of the model named `model`, as the user reads it.
#[derive(Debug, thiserror::Error)]
#[error("model `{model}`: {source}")]
pub struct ModelError {
    /// The catalogue name of the model.
    pub model: String,
    /// What gigo-ml said.
    #[source]
    pub source: MlError,
}

/// An error of gigo-ml where no model is involved (label classes, features).
pub fn from_ml(e: MlError) -> StageError {
    if e.is_internal() {
        StageError::internal(e.to_string())
    } else {
        StageError::invalid(e)
    }
}

/// An error of gigo-ml while fitting, scoring or loading model `model`.
pub fn from_model(model: &str) -> impl Fn(MlError) -> StageError + '_ {
    move |source| {
        if source.is_internal() {
            StageError::internal(format!("model `{model}`: {source}"))
        } else {
            StageError::invalid(ModelError {
                model: model.to_string(),
                source,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_s_errors_keep_their_source_and_bugs_stay_bugs() {
        let e = from_model("knn")(MlError::data("3 rows, 5 folds"));
        assert_eq!(e.to_string(), "model `knn`: 3 rows, 5 folds");
        let StageError::Invalid(inner) = &e else {
            panic!("{e:?}")
        };
        let typed = inner.downcast_ref::<ModelError>().unwrap();
        assert!(matches!(typed.source, MlError::Data(_)));
        assert!(inner.source().is_some());
        let bug = from_model("knn")(MlError::Internal("shape".into()));
        assert!(matches!(bug, StageError::Internal(_)), "{bug:?}");
        assert!(matches!(
            from_ml(MlError::Internal("x".into())),
            StageError::Internal(_)
        ));
        let plain = from_ml(MlError::MissingColumn { column: "y".into() });
        assert_eq!(plain.to_string(), "column `y` is not in the data");
    }
}
