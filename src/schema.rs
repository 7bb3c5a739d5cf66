//! The JSON Schema of pipeline files, generated from the stages' parameter
//! types, and the text of `gigo stages`.

use std::fmt::Write;

use gigo_pipeline::Registry;
use serde_json::{Map, Value, json};

/// JSON Schema (draft 2020-12) of a pipeline file accepted by `registry`.
pub fn pipeline_schema(registry: &Registry) -> Value {
    let mut defs = Map::new();
    let mut variants = Vec::new();
    for st in registry.types() {
        // Move each stage's definitions under a prefix so that names cannot clash.
        let prefix = format!("{}__", st.name());
        let text = st
            .params_schema()
            .to_string()
            .replace("\"#/$defs/", &format!("\"#/$defs/{prefix}"));
        let Ok(schema) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(Value::Object(d)) = schema.get("$defs") {
            for (k, v) in d {
                defs.insert(format!("{prefix}{k}"), v.clone());
            }
        }
        let mut props = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        props.insert(
            "type".into(),
            json!({"const": st.name(), "description": st.doc()}),
        );
        props.insert("inputs".into(), json!({"$ref": "#/$defs/inputs"}));
        let mut required = vec![Value::String("type".into())];
        if let Some(Value::Array(r)) = schema.get("required") {
            required.extend(r.iter().cloned());
        }
        let mut variant = json!({
            "type": "object",
            "title": st.name(),
            "description": st.doc(),
            "properties": props,
            "required": required,
            "additionalProperties": false,
        });
        // rules a stage adds beside its properties (`model_params` typed by `model`)
        if let (Some(rules), Value::Object(v)) = (schema.get("allOf"), &mut variant) {
            v.insert("allOf".into(), rules.clone());
        }
        variants.push(variant);
    }
    let port_ref = json!({"type": "string", "pattern": "^[A-Za-z0-9_-]+(\\.[A-Za-z0-9_-]+)?$",
        "description": "an upstream port: `stage` (its default output) or `stage.port`"});
    defs.insert(
        "inputs".into(),
        json!({
            "description": "upstream ports: one, a list (filling input ports in order), or a map from input port to one or several",
            "anyOf": [
                port_ref,
                {"type": "array", "items": port_ref},
                {"type": "object", "additionalProperties": {"anyOf": [port_ref, {"type": "array", "items": port_ref}]}}
            ]
        }),
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gigo pipeline",
        "type": "object",
        "required": ["name", "stages"],
        "additionalProperties": false,
        "properties": {
            "name": {"type": "string", "minLength": 1, "description": "the pipeline's name"},
            "description": {"type": "string"},
            "seed": {"type": "integer", "minimum": 0, "description": "the run seed: every random choice derives from it"},
            "memory": {"type": ["string", "integer"], "description": "the memory budget (2GB, 512MiB); `--memory` overrides it; default: three quarters of the machine's memory"},
            "stages": {
                "type": "object",
                "description": "stage id -> {type, inputs, ...parameters}",
                "propertyNames": {"pattern": "^[A-Za-z0-9_-]+$"},
                "additionalProperties": {"oneOf": variants}
            }
        },
        "$defs": defs,
    })
}

/// A short type description of a parameter's schema.
fn type_of(prop: &Value, root: &Value) -> String {
    if let Some(r) = prop.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        let target = root.get("$defs").and_then(|d| d.get(name));
        return match target {
            Some(t) => type_of(t, root),
            None => name.to_string(),
        };
    }
    if let Some(Value::Array(vals)) = prop.get("enum") {
        return vals
            .iter()
            .map(|v| v.to_string().trim_matches('"').to_string())
            .collect::<Vec<_>>()
            .join(" | ");
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(alts)) = prop.get(key) {
            let parts: Vec<String> = alts
                .iter()
                .filter(|a| a.get("type") != Some(&Value::String("null".into())))
                .map(|a| match a.get("const") {
                    Some(c) => c.to_string().trim_matches('"').to_string(),
                    None => type_of(a, root),
                })
                .collect();
            return parts.join(" | ");
        }
    }
    if prop.get("properties").is_some() {
        return "mapping".into();
    }
    match prop.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!(
                "list of {}",
                prop.get("items")
                    .map(|i| type_of(i, root))
                    .unwrap_or_default()
            )
        }
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".into(),
    }
}

/// The text of `gigo stages`: every stage type with its ports and parameters.
pub fn describe_stages(registry: &Registry, only: Option<&str>) -> String {
    let mut out = String::new();
    for st in registry
        .types()
        .filter(|t| only.is_none_or(|o| o == t.name()))
    {
        let _ = writeln!(out, "{}\n  {}", st.name(), st.doc());
        if let Ok(stage) = st.build(&json!({})) {
            let ins: Vec<String> = stage
                .inputs()
                .iter()
                .map(|p| format!("{} ({})", p.name, p.kind))
                .collect();
            let outs: Vec<String> = stage
                .outputs()
                .iter()
                .map(|p| format!("{} ({})", p.name, p.kind))
                .collect();
            let _ = writeln!(
                out,
                "  inputs:  {}",
                if ins.is_empty() {
                    "none".into()
                } else {
                    ins.join(", ")
                }
            );
            let _ = writeln!(
                out,
                "  outputs: {}{}summary",
                outs.join(", "),
                if outs.is_empty() { "" } else { ", " }
            );
        } else {
            let _ = writeln!(
                out,
                "  ports:   depend on the parameters (see below); every stage also has `summary`"
            );
        }
        let schema = st.params_schema();
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            out.push_str("  parameters:\n");
            for (name, prop) in props {
                let mut line = format!("    {name}: {}", type_of(prop, schema));
                if required.contains(&name.as_str()) {
                    line.push_str(" (required)");
                } else if let Some(d) = prop.get("default") {
                    let _ = write!(line, " = {d}");
                }
                let _ = writeln!(out, "{line}");
                if let Some(desc) = prop.get("description").and_then(Value::as_str) {
                    for l in desc.lines() {
                        let _ = writeln!(out, "        {l}");
                    }
                }
            }
        }
        out.push('\n');
    }
    out
}
