//! The pipeline file: `name`, `seed`, and `stages` (id → `{type, inputs, ...params}`),
//! with command-line overrides (`--set a.b=c`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use crate::diag::{Diagnostic, Location, did_you_mean};
use crate::yaml::{self, Node, NodeValue};

/// Keys a pipeline file may have at the top level.
pub const TOP_LEVEL_KEYS: [&str; 5] = ["name", "description", "seed", "memory", "stages"];

/// Keys of a stage entry that are not parameters.
pub const STAGE_KEYS: [&str; 2] = ["type", "inputs"];

/// A reference to an upstream port: `stage` or `stage.port`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PortRef {
    /// Upstream stage id.
    pub stage: String,
    /// Port name; `None` means the stage's default (first) output.
    pub port: Option<String>,
    /// Where the reference is written.
    pub loc: Location,
}

impl PortRef {
    /// Parses `stage` or `stage.port`.
    pub fn parse(text: &str, loc: Location) -> PortRef {
        match text.split_once('.') {
            Some((stage, port)) => PortRef {
                stage: stage.to_string(),
                port: Some(port.to_string()),
                loc,
            },
            None => PortRef {
                stage: text.to_string(),
                port: None,
                loc,
            },
        }
    }
}

/// How a stage entry connects its inputs.
#[derive(Debug, Clone)]
pub enum InputSpec {
    /// `inputs: a` or `inputs: [a, b.port]`: fill input ports in order.
    Positional(Vec<PortRef>),
    /// `inputs: {table: a, models: [m1, m2]}`.
    Named(Vec<(String, Location, Vec<PortRef>)>),
}

/// One entry of `stages:`.
#[derive(Debug, Clone)]
pub struct StageSpec {
    /// The id (the key in `stages:`).
    pub id: String,
    /// The stage type.
    pub type_name: String,
    /// How inputs are connected.
    pub inputs: InputSpec,
    /// The entry's node (parameters and their locations).
    pub node: Node,
    /// Where the id is written.
    pub loc: Location,
}

impl StageSpec {
    /// Parameters as JSON: every key of the entry except `type` and `inputs`.
    pub fn params(&self) -> Value {
        let mut obj = serde_json::Map::new();
        for (k, v) in self.node.as_map().unwrap_or(&[]) {
            if let Some(key) = k.key_text()
                && !STAGE_KEYS.contains(&key.as_str())
            {
                obj.insert(key, v.to_json());
            }
        }
        Value::Object(obj)
    }

    /// Location of parameter `path` (key location for a top-level parameter
    /// that exists, else the deepest node along the path).
    pub fn param_location(&self, path: &[String]) -> Location {
        if path.len() == 1
            && let Some(loc) = self.node.key_location(&path[0])
        {
            return loc.clone();
        }
        self.node.locate(path).loc.clone()
    }
}

/// A parsed pipeline file (before stage types are checked).
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// The pipeline's name.
    pub name: String,
    /// The run seed.
    pub seed: u64,
    /// The memory budget in bytes (`memory: 2GB`), if the file sets one.
    pub memory: Option<u64>,
    /// Stages in file order.
    pub stages: Vec<StageSpec>,
    /// The file as the user named it.
    pub file: Arc<str>,
    /// Its directory (relative paths in parameters resolve here).
    pub base_dir: PathBuf,
    /// The whole document, after overrides.
    pub root: Node,
}

/// A `--set path=value` override.
#[derive(Debug, Clone)]
pub struct Override {
    /// Dot-separated path: `seed`, `name`, or `stage.param[.sub...]`.
    pub path: Vec<String>,
    /// The value as written.
    pub raw: String,
    /// The value parsed as YAML.
    pub value: Node,
}

impl Override {
    /// Parses `a.b=c`. `index` numbers overrides for locations (`--set:N`).
    pub fn parse(text: &str, index: usize) -> Result<Override, Diagnostic> {
        let file: Arc<str> = Arc::from("--set");
        let loc = Location::new(file.clone(), index + 1, 1);
        let Some((path, raw)) = text.split_once('=') else {
            return Err(Diagnostic::error(
                Some(loc),
                format!("override `{text}` must look like `stage.param=value`"),
            ));
        };
        let path: Vec<String> = path.trim().split('.').map(|s| s.to_string()).collect();
        if path.iter().any(String::is_empty) {
            return Err(Diagnostic::error(
                Some(loc),
                format!("override `{text}` has an empty name in its path"),
            ));
        }
        let value_loc = Location::new(file.clone(), index + 1, text.find('=').unwrap_or(0) + 2);
        let value = match yaml::parse(raw, &file) {
            Ok(mut node) => {
                relocate(&mut node, &value_loc);
                node
            }
            // Not valid YAML on its own (e.g. `a: b`): take it as a string.
            Err(_) => Node::new(NodeValue::Str(raw.to_string()), value_loc),
        };
        Ok(Override {
            path,
            raw: raw.to_string(),
            value,
        })
    }
}

fn relocate(node: &mut Node, loc: &Location) {
    node.loc = loc.clone();
    match &mut node.value {
        NodeValue::Seq(items) => items.iter_mut().for_each(|n| relocate(n, loc)),
        NodeValue::Map(entries) => entries.iter_mut().for_each(|(k, v)| {
            relocate(k, loc);
            relocate(v, loc);
        }),
        _ => {}
    }
}

/// Reads and parses a pipeline file, applying overrides. Returns every
/// problem found.
pub fn load_file(
    path: &Path,
    overrides: &[Override],
) -> Result<(PipelineSpec, String), Vec<Diagnostic>> {
    let file: Arc<str> = Arc::from(path.display().to_string());
    let source = std::fs::read_to_string(path).map_err(|e| {
        vec![Diagnostic::error(
            None,
            format!("cannot read pipeline file {}: {e}", path.display()),
        )]
    })?;
    let base_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let spec = parse_str(&source, file, base_dir, overrides)?;
    Ok((spec, source))
}

/// Parses pipeline YAML from a string.
pub fn parse_str(
    source: &str,
    file: Arc<str>,
    base_dir: PathBuf,
    overrides: &[Override],
) -> Result<PipelineSpec, Vec<Diagnostic>> {
    let mut root = yaml::parse(source, &file)?;
    let mut problems = Vec::new();
    if root.value == NodeValue::Null {
        return Err(vec![Diagnostic::error(
            Some(root.loc.clone()),
            "the pipeline file is empty: it needs `name`, `seed` and `stages`".into(),
        )]);
    }
    if root.as_map().is_none() {
        return Err(vec![Diagnostic::error(
            Some(root.loc.clone()),
            format!(
                "a pipeline must be a mapping with `name`, `seed` and `stages`, found {}",
                root.type_name()
            ),
        )]);
    }
    for ov in overrides {
        if let Err(d) = apply_override(&mut root, ov) {
            problems.push(d);
        }
    }

    for (k, _) in root.as_map().unwrap_or(&[]) {
        let key = k.key_text().unwrap_or_default();
        if !TOP_LEVEL_KEYS.contains(&key.as_str()) {
            let mut d = Diagnostic::error(
                Some(k.loc.clone()),
                format!("unknown top-level key `{key}`"),
            );
            d = d.with_help(match did_you_mean(&key, TOP_LEVEL_KEYS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("a pipeline has {}", TOP_LEVEL_KEYS.join(", ")),
            });
            problems.push(d);
        }
    }

    let name = match root.get("name") {
        Some(n) => match &n.value {
            NodeValue::Str(s) if !s.trim().is_empty() => s.clone(),
            _ => {
                problems.push(Diagnostic::error(
                    Some(n.loc.clone()),
                    format!("`name` must be a non-empty string, found {}", n.type_name()),
                ));
                String::new()
            }
        },
        None => {
            problems.push(Diagnostic::error(
                Some(root.loc.clone()),
                "missing `name`: give the pipeline a name".into(),
            ));
            String::new()
        }
    };

    let seed = match root.get("seed") {
        Some(n) => match n.value {
            NodeValue::Int(i) if i >= 0 => i as u64,
            _ => {
                problems.push(Diagnostic::error(
                    Some(n.loc.clone()),
                    format!(
                        "`seed` must be a non-negative integer, found {}",
                        n.type_name()
                    ),
                ));
                0
            }
        },
        None => 0,
    };

    let memory = root.get("memory").and_then(|n| {
        let parsed = match &n.value {
            NodeValue::Str(text) => crate::budget::parse_size(text),
            NodeValue::Int(i) => crate::budget::parse_size(&i.to_string()),
            _ => Err(format!(
                "must be a size such as 2GB or 512MiB, found {}",
                n.type_name()
            )),
        };
        parsed
            .map_err(|e| {
                problems.push(Diagnostic::error(
                    Some(n.loc.clone()),
                    format!("`memory`: {e}"),
                ))
            })
            .ok()
    });

    let mut stages = Vec::new();
    match root.get("stages") {
        None => problems.push(Diagnostic::error(
            Some(root.loc.clone()),
            "missing `stages`: a pipeline needs at least one stage".into(),
        )),
        Some(node) => match node.as_map() {
            Some(entries) if !entries.is_empty() => {
                for (k, v) in entries {
                    match parse_stage(k, v) {
                        Ok(s) => stages.push(s),
                        Err(mut d) => problems.append(&mut d),
                    }
                }
            }
            _ => problems.push(Diagnostic::error(
                Some(node.loc.clone()),
                "`stages` must be a non-empty mapping from stage id to `{type: ..., ...}`".into(),
            )),
        },
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(PipelineSpec {
        name,
        seed,
        memory,
        stages,
        file,
        base_dir,
        root,
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_stage(key: &Node, node: &Node) -> Result<StageSpec, Vec<Diagnostic>> {
    let id = key.key_text().unwrap_or_default();
    let mut problems = Vec::new();
    if !valid_id(&id) {
        problems.push(
            Diagnostic::error(Some(key.loc.clone()), format!("invalid stage id `{id}`")).with_help(
                "use letters, digits, `_` and `-` (a `.` separates a stage from its port)",
            ),
        );
    }
    if node.as_map().is_none() {
        problems.push(
            Diagnostic::error(
                Some(node.loc.clone()),
                format!(
                    "stage `{id}` must be a mapping with a `type`, found {}",
                    node.type_name()
                ),
            )
            .in_stage(&id),
        );
        return Err(problems);
    }
    let type_name = match node.get("type") {
        Some(t) => match t.as_str() {
            Some(s) => s.to_string(),
            None => {
                problems.push(
                    Diagnostic::error(
                        Some(t.loc.clone()),
                        format!("`type` must be a string, found {}", t.type_name()),
                    )
                    .in_stage(&id),
                );
                String::new()
            }
        },
        None => {
            problems.push(
                Diagnostic::error(Some(key.loc.clone()), "missing `type`".into())
                    .in_stage(&id)
                    .with_help("run `gigo stages` to list the stage types"),
            );
            String::new()
        }
    };
    let inputs = match node.get("inputs") {
        None => InputSpec::Positional(Vec::new()),
        Some(n) => match parse_inputs(n) {
            Ok(i) => i,
            Err(d) => {
                problems.push(d.in_stage(&id));
                InputSpec::Positional(Vec::new())
            }
        },
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(StageSpec {
        id,
        type_name,
        inputs,
        node: node.clone(),
        loc: key.loc.clone(),
    })
}

fn refs_of(node: &Node) -> Result<Vec<PortRef>, Diagnostic> {
    let one = |n: &Node| match n.as_str() {
        Some(s) if !s.is_empty() => Ok(PortRef::parse(s, n.loc.clone())),
        _ => Err(Diagnostic::error(
            Some(n.loc.clone()),
            format!(
                "an input must be `stage` or `stage.port`, found {}",
                n.type_name()
            ),
        )),
    };
    match &node.value {
        NodeValue::Seq(items) => items.iter().map(one).collect(),
        _ => Ok(vec![one(node)?]),
    }
}

fn parse_inputs(node: &Node) -> Result<InputSpec, Diagnostic> {
    match &node.value {
        NodeValue::Null => Ok(InputSpec::Positional(Vec::new())),
        NodeValue::Map(entries) => {
            let mut named = Vec::new();
            for (k, v) in entries {
                named.push((k.key_text().unwrap_or_default(), k.loc.clone(), refs_of(v)?));
            }
            Ok(InputSpec::Named(named))
        }
        _ => Ok(InputSpec::Positional(refs_of(node)?)),
    }
}

/// Applies one override to the document. Paths: `seed`, `name`, or
/// `stage.param[.sub...]`; the stage must exist, the parameter may be new.
fn apply_override(root: &mut Node, ov: &Override) -> Result<(), Diagnostic> {
    let loc = ov.value.loc.clone();
    let top = ov.path[0].as_str();
    if ov.path.len() == 1 && (top == "seed" || top == "name") {
        set_key(root, &ov.path, ov.value.clone());
        return Ok(());
    }
    let stage_ids: Vec<String> = root
        .get("stages")
        .and_then(Node::as_map)
        .map(|m| m.iter().filter_map(|(k, _)| k.key_text()).collect())
        .unwrap_or_default();
    if !stage_ids.iter().any(|s| s == top) {
        let d = Diagnostic::error(
            Some(loc),
            format!(
                "override `{}`: there is no stage `{top}`",
                ov.path.join(".")
            ),
        );
        return Err(
            match did_you_mean(top, stage_ids.iter().map(String::as_str)) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help("override `seed`, `name`, or `stage.param`"),
            },
        );
    }
    if ov.path.len() < 2 {
        return Err(Diagnostic::error(
            Some(loc),
            format!("override `{top}` names a stage but no parameter: use `{top}.param=value`"),
        ));
    }
    let mut full = vec!["stages".to_string()];
    full.extend(ov.path.iter().cloned());
    set_key(root, &full, ov.value.clone());
    Ok(())
}

/// Sets `path` in nested mappings, creating mappings as needed.
fn set_key(node: &mut Node, path: &[String], value: Node) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    if !matches!(node.value, NodeValue::Map(_)) {
        node.value = NodeValue::Map(Vec::new());
    }
    if let NodeValue::Map(entries) = &mut node.value {
        let pos = entries
            .iter()
            .position(|(k, _)| k.key_text().as_deref() == Some(first.as_str()));
        let idx = match pos {
            Some(i) => i,
            None => {
                let key = Node::new(NodeValue::Str(first.clone()), value.loc.clone());
                let child = Node::new(NodeValue::Map(Vec::new()), value.loc.clone());
                entries.push((key, child));
                entries.len() - 1
            }
        };
        set_key(&mut entries[idx].1, rest, value);
    }
}

/// Retypes override values by the parameter schema: a value that YAML read as
/// a number or boolean becomes a string where the schema wants a string
/// (`--set ingest.path=2024` stays the file name `2024`).
pub fn coerce_overrides(
    spec: &mut PipelineSpec,
    overrides: &[Override],
    schema_of: impl Fn(&str) -> Option<Value>,
) {
    for ov in overrides {
        if ov.path.len() < 2 {
            continue;
        }
        let Some(stage) = spec.stages.iter_mut().find(|s| s.id == ov.path[0]) else {
            continue;
        };
        let Some(schema) = schema_of(&stage.type_name) else {
            continue;
        };
        if wants_string(&schema, &ov.path[1..]) && ov.value.as_str().is_none() {
            let node = Node::new(NodeValue::Str(ov.raw.clone()), ov.value.loc.clone());
            set_key(&mut stage.node, &ov.path[1..], node);
        }
    }
}

fn wants_string(schema: &Value, path: &[String]) -> bool {
    let mut s = schema;
    for seg in path {
        match s.get("properties").and_then(|p| p.get(seg)) {
            Some(p) => s = p,
            None => return false,
        }
    }
    match s.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => {
            ts.iter().any(|t| t == "string")
                && !ts
                    .iter()
                    .any(|t| t == "number" || t == "integer" || t == "boolean")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<PipelineSpec, Vec<Diagnostic>> {
        parse_str(src, Arc::from("p.yaml"), PathBuf::from("."), &[])
    }

    #[test]
    fn parses_stages_and_inputs() {
        let spec = parse(
            "name: t\nseed: 3\nstages:\n  gen: {type: generate, rows: 10}\n  sp:\n    type: split\n    inputs: gen\n  ex:\n    type: export\n    inputs: {table: sp.train}\n",
        )
        .unwrap();
        assert_eq!(spec.seed, 3);
        assert_eq!(spec.stages.len(), 3);
        assert_eq!(spec.stages[0].params()["rows"], 10);
        match &spec.stages[2].inputs {
            InputSpec::Named(n) => {
                assert_eq!(n[0].0, "table");
                assert_eq!(n[0].2[0].stage, "sp");
                assert_eq!(n[0].2[0].port.as_deref(), Some("train"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reports_all_structural_problems_at_once() {
        let errs =
            parse("nme: t\nseed: -1\nstages:\n  a.b: {type: x}\n  c: {rows: 1}\n").unwrap_err();
        let msgs: Vec<&str> = errs.iter().map(|d| d.message.as_str()).collect();
        assert!(msgs.contains(&"unknown top-level key `nme`"), "{msgs:?}");
        assert!(
            msgs.contains(&"missing `name`: give the pipeline a name"),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"`seed` must be a non-negative integer, found an integer"),
            "{msgs:?}"
        );
        assert!(msgs.contains(&"invalid stage id `a.b`"), "{msgs:?}");
        assert!(msgs.contains(&"missing `type`"), "{msgs:?}");
    }

    #[test]
    fn overrides_set_and_create_params() {
        let ov = vec![
            Override::parse("gen.rows=50", 0).unwrap(),
            Override::parse("seed=7", 1).unwrap(),
            Override::parse("gen.noise.rate=0.2", 2).unwrap(),
        ];
        let spec = parse_str(
            "name: t\nstages:\n  gen: {type: generate, rows: 10}\n",
            Arc::from("p.yaml"),
            PathBuf::from("."),
            &ov,
        )
        .unwrap();
        assert_eq!(spec.seed, 7);
        assert_eq!(spec.stages[0].params()["rows"], 50);
        assert_eq!(spec.stages[0].params()["noise"]["rate"], 0.2);
    }

    #[test]
    fn override_of_unknown_stage_suggests() {
        let ov = vec![Override::parse("gne.rows=50", 0).unwrap()];
        let errs = parse_str(
            "name: t\nstages:\n  gen: {type: generate}\n",
            Arc::from("p.yaml"),
            PathBuf::from("."),
            &ov,
        )
        .unwrap_err();
        assert_eq!(
            errs[0].message,
            "override `gne.rows`: there is no stage `gne`"
        );
        assert_eq!(errs[0].help.as_deref(), Some("did you mean `gen`?"));
    }

    #[test]
    fn schema_decides_string_overrides() {
        let schema = serde_json::json!({"properties": {"path": {"type": "string"}, "n": {"type": "integer"}}});
        assert!(wants_string(&schema, &["path".into()]));
        assert!(!wants_string(&schema, &["n".into()]));
    }
}
