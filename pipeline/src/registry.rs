//! The stage registry: stage type name → how to build it from parameters.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::diag::did_you_mean;
use crate::error::ParamProblem;
use crate::stage::Stage;

type BuildFn = dyn Fn(&Value) -> Result<Box<dyn Stage>, Vec<ParamProblem>> + Send + Sync;

/// One registered stage type.
pub struct StageType {
    name: String,
    doc: String,
    schema: Value,
    build: Box<BuildFn>,
}

impl StageType {
    /// The type name used in YAML (`type: split`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the stage does, in a few sentences.
    pub fn doc(&self) -> &str {
        &self.doc
    }

    /// JSON Schema of the parameters, generated from the parameter type.
    pub fn params_schema(&self) -> &Value {
        &self.schema
    }

    /// Names of the parameters this stage accepts.
    pub fn param_names(&self) -> Vec<&str> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Checks `params` (a JSON object) and builds the stage. Every unknown
    /// parameter is reported at once; then the first ill-typed one (serde
    /// stops there), then whatever the stage's own checks find.
    pub fn build(&self, params: &Value) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let known = self.param_names();
        let closed = self.schema.get("additionalProperties") == Some(&Value::Bool(false));
        let mut problems = Vec::new();
        let mut rest = params.clone();
        if let (true, Some(obj)) = (closed, rest.as_object_mut()) {
            let unknown: Vec<String> = obj
                .keys()
                .filter(|k| !known.contains(&k.as_str()))
                .cloned()
                .collect();
            for k in unknown {
                obj.remove(&k);
                let mut p = ParamProblem::new(
                    &k,
                    format!("unknown parameter `{k}` for stage type `{}`", self.name),
                );
                p.help = Some(match did_you_mean(&k, known.iter().copied()) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known parameters: {}", known.join(", ")),
                });
                problems.push(p);
            }
        }
        // Check the remaining parameters too, so that all problems show at once.
        match (self.build)(&rest) {
            Ok(stage) if problems.is_empty() => Ok(stage),
            Ok(_) => Err(problems),
            Err(mut more) => {
                problems.append(&mut more);
                Err(problems)
            }
        }
    }
}

/// Builds a stage from typed parameters: deserialises them (reporting the path
/// of an ill-typed value), then calls `f`.
fn typed_build<P, F>(f: F) -> Box<BuildFn>
where
    P: DeserializeOwned,
    F: Fn(P) -> Result<Box<dyn Stage>, Vec<ParamProblem>> + Send + Sync + 'static,
{
    Box::new(move |value: &Value| {
        let params: P = serde_path_to_error::deserialize(value).map_err(|e| {
            let path: Vec<String> = e
                .path()
                .iter()
                .filter_map(|seg| match seg {
                    serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                    serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                    serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                    serde_path_to_error::Segment::Unknown => None,
                })
                .collect();
            let inner = e.into_inner().to_string();
            let message = if path.is_empty() {
                inner
            } else {
                format!("parameter `{}`: {inner}", path.join("."))
            };
            vec![ParamProblem {
                path,
                message,
                help: None,
            }]
        })?;
        f(params)
    })
}

/// The stage types a pipeline may use. Built-in stages register themselves
/// explicitly (see `gigo::builtin_registry`); a user's program registers its
/// own in the same way.
///
/// # Example
/// ```
/// use gigo_pipeline::{Registry, Stage, StageOutput, Inputs, StageContext, StageError, PortSpec};
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// #[serde(deny_unknown_fields)]
/// struct Params { times: Option<u32> }
/// struct Noop;
/// impl Stage for Noop {
///     fn inputs(&self) -> Vec<PortSpec> { vec![] }
///     fn outputs(&self) -> Vec<PortSpec> { vec![] }
///     fn run(&self, _: &Inputs, _: &StageContext) -> Result<StageOutput, StageError> {
///         Ok(StageOutput::new())
///     }
/// }
/// let mut registry = Registry::new();
/// registry.register::<Params, _>("noop", "Does nothing.", |_p| Ok(Box::new(Noop)));
/// assert!(registry.get("noop").is_some());
/// ```
#[derive(Default)]
pub struct Registry {
    types: BTreeMap<String, StageType>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    /// Registers stage type `name` whose parameters are `P`. `build` turns
    /// checked parameters into a stage, or lists every problem it finds.
    /// Registering a name again replaces the earlier type.
    pub fn register<P, F>(&mut self, name: &str, doc: &str, build: F)
    where
        P: DeserializeOwned + JsonSchema,
        F: Fn(P) -> Result<Box<dyn Stage>, Vec<ParamProblem>> + Send + Sync + 'static,
    {
        let schema = serde_json::to_value(schemars::schema_for!(P)).unwrap_or(Value::Null);
        self.types.insert(
            name.to_string(),
            StageType {
                name: name.to_string(),
                doc: doc.to_string(),
                schema,
                build: typed_build(build),
            },
        );
    }

    /// Lets the JSON Schema of stage type `name` say more than its parameter
    /// type can (e.g. `model_params` typed by the value of `model`, from a
    /// catalogue known only at registration). Unknown names are ignored.
    pub fn refine_schema(&mut self, name: &str, refine: impl FnOnce(&mut Value)) {
        if let Some(t) = self.types.get_mut(name) {
            refine(&mut t.schema);
        }
    }

    /// The stage type called `name`.
    pub fn get(&self, name: &str) -> Option<&StageType> {
        self.types.get(name)
    }

    /// Every stage type, by name.
    pub fn types(&self) -> impl Iterator<Item = &StageType> {
        self.types.values()
    }

    /// The registered name closest to `name`, for "did you mean".
    pub fn suggest(&self, name: &str) -> Option<&str> {
        did_you_mean(name, self.types.keys().map(String::as_str))
    }
}
