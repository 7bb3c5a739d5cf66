//! Quality gates: `max_<metric>` / `min_<metric>` thresholds on the metrics
//! that sections report.
//!
//! - A gate tests metric `<metric>` in every input section that reports it.
//! - A metric is a number, or an object of numbers by key (`null_rate` by
//!   column). A scalar threshold on an object metric applies to every key; a
//!   threshold map (`max_null_rate: {age: 0.05}`) tests the keys it names.
//! - Bounds are inclusive: `max_x: 0.01` passes at exactly 0.01.
//! - A value that is not a finite number (NaN is written as `null` in JSON)
//!   fails its gate: a check that cannot be made must not pass.
//! - A gate whose metric no input can report (every stage declares its
//!   metrics, [`gigo_pipeline::Metrics`]) is refused by `gigo validate`.
//! - A gate whose metric no input reports in this run (drift needs a
//!   reference input), or whose key a metric lacks, is an error of the run,
//!   not a failed gate: a typo must neither pass silently nor pass for a data
//!   problem.

use std::collections::BTreeMap;

use gigo_pipeline::diag::did_you_mean;
use gigo_pipeline::summary::Section;
use gigo_pipeline::{Metrics, ParamProblem, Wiring};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::format::general;

/// A gate's threshold: a number, or a number per key.
// Used for the parameter schema only: values are checked by `parse_gates`, so
// that every problem is reported at once.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ThresholdSpec {
    /// One bound for the metric, or for every key of an object metric.
    All(f64),
    /// A bound per key (e.g. per column).
    PerKey(BTreeMap<String, f64>),
}

/// Which side a gate bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// `max_<metric>`: the value must be at most the threshold.
    Max,
    /// `min_<metric>`: the value must be at least the threshold.
    Min,
}

impl Bound {
    fn word(self) -> &'static str {
        match self {
            Bound::Max => "maximum",
            Bound::Min => "minimum",
        }
    }
}

/// The threshold of a checked gate.
#[derive(Debug, Clone, PartialEq)]
pub enum Threshold {
    /// Applies to the metric, or to every key of an object metric.
    All(f64),
    /// Applies to the named keys of an object metric.
    PerKey(BTreeMap<String, f64>),
}

/// A checked gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    /// As written: `max_duplicate_rate`.
    pub name: String,
    /// `max` or `min`.
    pub bound: Bound,
    /// The metric it tests: `duplicate_rate`.
    pub metric: String,
    /// Its threshold(s).
    pub threshold: Threshold,
}

/// The outcome of one gate on one value. A gate yields one result per
/// section reporting its metric, and per key for object metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    /// The gate as written (`max_null_rate`).
    pub name: String,
    /// The stage whose section reported the value.
    pub stage: String,
    /// The key inside an object metric (`age`), or null.
    pub key: Option<String>,
    /// The value tested; null when it was not a finite number.
    pub value: Option<f64>,
    /// The bound.
    pub threshold: f64,
    /// Whether the value is within the bound.
    pub passed: bool,
    /// One sentence for people.
    pub message: String,
}

/// Checks the `gates` parameter: names `max_<metric>` / `min_<metric>`,
/// values a finite number or a map of finite numbers. Reports every problem.
pub fn parse_gates(spec: &BTreeMap<String, Value>) -> Result<Vec<Gate>, Vec<ParamProblem>> {
    let mut gates = Vec::new();
    let mut problems = Vec::new();
    for (name, v) in spec {
        let path = format!("gates.{name}");
        let parsed = if let Some(m) = name.strip_prefix("max_") {
            Some((Bound::Max, m))
        } else {
            name.strip_prefix("min_").map(|m| (Bound::Min, m))
        };
        let metric = match parsed {
            Some((_, "")) | None => {
                let mut p = ParamProblem::new(
                    &path,
                    format!("gate `{name}` must be named `max_<metric>` or `min_<metric>`"),
                );
                p.help =
                    Some("e.g. `max_duplicate_rate: 0.01` or `max_null_rate: {age: 0.05}`".into());
                problems.push(p);
                None
            }
            Some((bound, m)) => Some((bound, m.to_string())),
        };
        let threshold = match v {
            Value::Number(n) => match n.as_f64().filter(|f| f.is_finite()) {
                Some(f) => Some(Threshold::All(f)),
                None => {
                    problems.push(ParamProblem::new(
                        &path,
                        format!("gate `{name}`: {n} is not a finite number"),
                    ));
                    None
                }
            },
            Value::Object(map) if !map.is_empty() => {
                let mut per_key = BTreeMap::new();
                let mut ok = true;
                for (k, kv) in map {
                    match kv.as_f64().filter(|f| f.is_finite()) {
                        Some(f) => {
                            per_key.insert(k.clone(), f);
                        }
                        None => {
                            ok = false;
                            problems.push(ParamProblem::new(
                                &path,
                                format!("gate `{name}`: the threshold for key `{k}` must be a number, got {kv}"),
                            ));
                        }
                    }
                }
                ok.then_some(Threshold::PerKey(per_key))
            }
            other => {
                problems.push(ParamProblem::new(
                    &path,
                    format!(
                        "gate `{name}` needs a number or a map of numbers by key, got {}",
                        if other.is_object() {
                            "an empty map".to_string()
                        } else {
                            other.to_string()
                        }
                    ),
                ));
                None
            }
        };
        if let (Some((bound, metric)), Some(threshold)) = (metric, threshold) {
            gates.push(Gate {
                name: name.clone(),
                bound,
                metric,
                threshold,
            });
        }
    }
    if problems.is_empty() {
        Ok(gates)
    } else {
        Err(problems)
    }
}

/// Tests every gate against `sections`. Returns one result per tested value,
/// in gate-name order then section order, or every gate that could not be
/// tested (unknown metric, missing key, per-key threshold on a scalar).
pub fn evaluate(gates: &[Gate], sections: &[Section]) -> Result<Vec<GateResult>, Vec<String>> {
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for gate in gates {
        let reporting: Vec<&Section> = sections
            .iter()
            .filter(|s| s.metrics.contains_key(&gate.metric))
            .collect();
        if reporting.is_empty() {
            errors.push(unknown_metric(gate, sections));
            continue;
        }
        for s in reporting {
            let metric = &s.metrics[&gate.metric];
            match (metric, &gate.threshold) {
                (Value::Object(by_key), Threshold::All(t)) => {
                    for (k, v) in by_key {
                        results.push(test(gate, s, Some(k), v, *t));
                    }
                }
                (Value::Object(by_key), Threshold::PerKey(ts)) => {
                    for (k, t) in ts {
                        match by_key.get(k) {
                            Some(v) => results.push(test(gate, s, Some(k), v, *t)),
                            None => {
                                let keys: Vec<&str> = by_key.keys().map(String::as_str).collect();
                                errors.push(format!(
                                    "gate `{}`: metric `{}` of stage `{}` has no key `{k}`{}; its keys: {}",
                                    gate.name,
                                    gate.metric,
                                    s.stage,
                                    did_you_mean(k, keys.iter().copied())
                                        .map(|d| format!(" (did you mean `{d}`?)"))
                                        .unwrap_or_default(),
                                    list(&keys),
                                ));
                            }
                        }
                    }
                }
                (_, Threshold::PerKey(_)) => errors.push(format!(
                    "gate `{}` gives thresholds by key, but metric `{}` of stage `{}` is a single value: write `{}: <number>`",
                    gate.name, gate.metric, s.stage, gate.name
                )),
                (v, Threshold::All(t)) => results.push(test(gate, s, None, v, *t)),
            }
        }
    }
    if errors.is_empty() {
        Ok(results)
    } else {
        Err(errors)
    }
}

fn unknown_metric(gate: &Gate, sections: &[Section]) -> String {
    let mut known: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in sections {
        for m in s.metrics.keys() {
            known.entry(m.as_str()).or_default().push(s.stage.as_str());
        }
    }
    no_input_reports(gate, &known, When::Run)
}

/// At validate time: a problem for every gate whose metric no input stage
/// declares (see [`Metrics`]), so a typo fails `gigo validate`, not the run.
/// An input whose metrics are not known before the run (`exec`) may report
/// any metric.
pub fn check_declared(gates: &[Gate], wiring: &Wiring) -> Vec<ParamProblem> {
    let inputs = wiring.inputs();
    let mut known: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in &inputs {
        match wiring.metrics_of(e.stage) {
            Metrics::Any => return Vec::new(),
            Metrics::Names(names) => {
                for m in names {
                    let stages = known.entry(m.as_str()).or_default();
                    if !stages.contains(&e.stage) {
                        stages.push(e.stage);
                    }
                }
            }
        }
    }
    gates
        .iter()
        .filter(|g| !known.contains_key(g.metric.as_str()))
        .map(|g| {
            ParamProblem::new(
                &format!("gates.{}", g.name),
                no_input_reports(g, &known, When::Validate),
            )
        })
        .collect()
}

/// Whether the metrics were reported (a run) or declared (validation).
#[derive(Clone, Copy)]
enum When {
    Run,
    Validate,
}

/// The message for a gate whose metric is not among `known` (metric ->
/// stages that report it).
fn no_input_reports(gate: &Gate, known: &BTreeMap<&str, Vec<&str>>, when: When) -> String {
    let (verb, listed_as, none) = match when {
        When::Run => (
            "reports",
            "metrics reported",
            "none (no input summary has a report section with metrics)",
        ),
        When::Validate => ("can report", "metrics the inputs can report", "none"),
    };
    let hint = did_you_mean(&gate.metric, known.keys().copied())
        .map(|d| {
            let prefix = match gate.bound {
                Bound::Max => "max_",
                Bound::Min => "min_",
            };
            format!(" (did you mean `{prefix}{d}`?)")
        })
        .unwrap_or_default();
    let listed: Vec<String> = known
        .iter()
        .map(|(m, stages)| format!("{m} ({})", stages.join(", ")))
        .collect();
    format!(
        "gate `{}`: no input {verb} metric `{}`{hint}; {listed_as}: {}",
        gate.name,
        gate.metric,
        if listed.is_empty() {
            none.to_string()
        } else {
            listed.join(", ")
        }
    )
}

fn list(keys: &[&str]) -> String {
    const SHOWN: usize = 30;
    let mut s = keys
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        s.push_str(&format!(", ... ({} in all)", keys.len()));
    }
    if keys.is_empty() { "none".into() } else { s }
}

fn test(gate: &Gate, s: &Section, key: Option<&str>, v: &Value, threshold: f64) -> GateResult {
    let what = match key {
        Some(k) => format!("{}[{k}] of stage `{}`", gate.metric, s.stage),
        None => format!("{} of stage `{}`", gate.metric, s.stage),
    };
    let value = v.as_f64().filter(|f| f.is_finite());
    let (passed, message) = match value {
        None => (
            false,
            format!(
                "{what} is not a finite number ({}), so the {} {} cannot be checked: failed",
                if v.is_null() {
                    "NaN or missing".to_string()
                } else {
                    v.to_string()
                },
                gate.bound.word(),
                general(threshold)
            ),
        ),
        Some(x) => {
            let passed = match gate.bound {
                Bound::Max => x <= threshold,
                Bound::Min => x >= threshold,
            };
            let relation = match (gate.bound, passed) {
                (Bound::Max, true) => "within the maximum",
                (Bound::Max, false) => "above the maximum",
                (Bound::Min, true) => "within the minimum",
                (Bound::Min, false) => "below the minimum",
            };
            (
                passed,
                format!(
                    "{what} is {}, {relation} {}",
                    general(x),
                    general(threshold)
                ),
            )
        }
    };
    GateResult {
        name: gate.name.clone(),
        stage: s.stage.clone(),
        key: key.map(str::to_string),
        value,
        threshold,
        passed,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gates(v: Value) -> Vec<Gate> {
        let map: BTreeMap<String, Value> = serde_json::from_value(v).unwrap();
        parse_gates(&map).unwrap()
    }

    fn section(stage: &str, metrics: Value) -> Section {
        let mut s = Section::new(stage, "profile", "Profile");
        for (k, v) in metrics.as_object().unwrap() {
            s.metric(k, v.clone());
        }
        s
    }

    #[test]
    fn names_and_values_are_checked_all_at_once() {
        let map: BTreeMap<String, Value> = serde_json::from_value(json!({
            "duplicate_rate": 0.1,
            "max_": 0.1,
            "max_ok": "high",
            "min_x": {"a": "b", "c": 1},
            "max_y": {},
            "max_z": [1],
            "min_fine": 0.5,
        }))
        .unwrap();
        let problems = parse_gates(&map).unwrap_err();
        let text: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.path.join("."), p.message))
            .collect();
        assert_eq!(problems.len(), 6, "{text:#?}");
        assert!(
            text[0].starts_with("gates.duplicate_rate: gate `duplicate_rate` must be named"),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("gates.max_: gate `max_` must be named"))
        );
        assert!(
            text.iter()
                .any(|t| t.contains("gate `max_ok` needs a number") && t.contains("\"high\""))
        );
        assert!(
            text.iter()
                .any(|t| t.contains("gate `min_x`: the threshold for key `a`"))
        );
        assert!(
            text.iter()
                .any(|t| t.contains("gate `max_y`") && t.contains("empty map"))
        );
        assert!(
            text.iter()
                .any(|t| t.contains("gate `max_z` needs a number"))
        );
        let ok = gates(json!({"min_auc": 0.7, "max_null_rate": {"age": 0.05}}));
        assert_eq!(ok[0].metric, "null_rate");
        assert_eq!(ok[0].bound, Bound::Max);
        assert_eq!(
            ok[1],
            Gate {
                name: "min_auc".into(),
                bound: Bound::Min,
                metric: "auc".into(),
                threshold: Threshold::All(0.7)
            }
        );
    }

    #[test]
    fn max_and_min_are_inclusive_bounds() {
        let s = [section("p", json!({"rate": 0.01, "auc": 0.7}))];
        let r = evaluate(&gates(json!({"max_rate": 0.01, "min_auc": 0.7})), &s).unwrap();
        assert!(r.iter().all(|g| g.passed), "{r:?}");
        let r = evaluate(&gates(json!({"max_rate": 0.009, "min_auc": 0.71})), &s).unwrap();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|g| !g.passed));
        assert_eq!(r[0].name, "max_rate");
        assert_eq!(
            r[0].message,
            "rate of stage `p` is 0.01, above the maximum 0.009"
        );
        assert_eq!(
            r[1].message,
            "auc of stage `p` is 0.7, below the minimum 0.71"
        );
        assert_eq!(r[1].value, Some(0.7));
        assert_eq!(r[1].key, None);
    }

    #[test]
    fn scalar_threshold_applies_to_every_key_and_maps_test_named_keys() {
        let s = [section(
            "prof",
            json!({"null_rate": {"age": 0.1, "income": 0.0, "zip": 0.02}}),
        )];
        let r = evaluate(&gates(json!({"max_null_rate": 0.05})), &s).unwrap();
        let failed: Vec<_> = r
            .iter()
            .filter(|g| !g.passed)
            .map(|g| g.key.clone().unwrap())
            .collect();
        assert_eq!(r.len(), 3);
        assert_eq!(failed, vec!["age"]);
        let r = evaluate(
            &gates(json!({"max_null_rate": {"age": 0.2, "zip": 0.01}})),
            &s,
        )
        .unwrap();
        assert_eq!(r.len(), 2);
        assert!(r[0].passed && r[0].key.as_deref() == Some("age"));
        assert!(!r[1].passed && r[1].key.as_deref() == Some("zip"));
        assert_eq!(
            r[1].message,
            "null_rate[zip] of stage `prof` is 0.02, above the maximum 0.01"
        );
    }

    #[test]
    fn every_section_reporting_the_metric_is_tested() {
        let s = [
            section("train", json!({"duplicate_rate": 0.0})),
            section("other", json!({"auc": 0.9})),
            section("test", json!({"duplicate_rate": 0.2})),
        ];
        let r = evaluate(&gates(json!({"max_duplicate_rate": 0.01})), &s).unwrap();
        let by_stage: Vec<_> = r.iter().map(|g| (g.stage.as_str(), g.passed)).collect();
        assert_eq!(by_stage, vec![("train", true), ("test", false)]);
    }

    #[test]
    fn unknown_metric_or_key_is_an_error_naming_the_gate_and_what_exists() {
        let s = [section(
            "prof",
            json!({"duplicate_rate": 0.0, "null_rate": {"age": 0.1}}),
        )];
        let e = evaluate(&gates(json!({"max_duplicat_rate": 0.01})), &s).unwrap_err();
        assert_eq!(
            e[0],
            "gate `max_duplicat_rate`: no input reports metric `duplicat_rate` (did you mean `max_duplicate_rate`?); \
             metrics reported: duplicate_rate (prof), null_rate (prof)"
        );
        let e = evaluate(
            &gates(json!({"max_null_rate": {"agee": 0.1}, "max_duplicate_rate": {"x": 1}})),
            &s,
        )
        .unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].contains("gate `max_duplicate_rate` gives thresholds by key"),
            "{e:?}"
        );
        assert_eq!(
            e[1],
            "gate `max_null_rate`: metric `null_rate` of stage `prof` has no key `agee` (did you mean `age`?); its keys: age"
        );
        let e = evaluate(&gates(json!({"min_auc": 0.5})), &[]).unwrap_err();
        assert!(e[0].contains("metrics reported: none"), "{e:?}");
    }

    #[test]
    fn a_value_that_is_not_a_finite_number_fails() {
        // serde_json writes NaN as null.
        let nan = serde_json::to_value(f64::NAN).unwrap();
        assert!(nan.is_null());
        let s = [section(
            "p",
            json!({"rate": nan, "by": {"a": null, "b": "x"}}),
        )];
        let r = evaluate(&gates(json!({"max_rate": 1.0, "min_by": 0.0})), &s).unwrap();
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|g| !g.passed && g.value.is_none()), "{r:?}");
        assert!(
            r[0].message
                .contains("is not a finite number (NaN or missing)"),
            "{}",
            r[0].message
        );
        assert!(
            r[1].message
                .contains("is not a finite number (NaN or missing)"),
            "{}",
            r[1].message
        );
        assert!(r[2].message.contains("(\"x\")"), "{}", r[2].message);
    }
}
