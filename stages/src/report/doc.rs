//! The report as data: the sections read from the input summaries, the gate
//! results and the alert counts. `report.json` is this, serialised; the HTML
//! and Markdown renderers read nothing else.

use std::collections::BTreeMap;

use gigo_pipeline::summary::{Block, REPORT_KEY, Section, Severity};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::gates::{Gate, GateResult, evaluate};

/// Version of the `report.json` format.
pub const FORMAT_VERSION: u32 = 1;

/// Largest raw summary (serialised bytes) a report keeps for an input that
/// has no report section; larger ones are replaced by a note.
pub const RAW_SUMMARY_MAX: usize = 32 * 1024;

/// A whole report: what `report.json` holds and what the HTML and Markdown
/// renderers draw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportDoc {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The report's title.
    pub title: String,
    /// `gigo <version>`.
    pub generated_by: String,
    /// One section per input summary that carries one, in input order.
    pub sections: Vec<Section>,
    /// Inputs whose summary has no (readable) report section, with their raw
    /// JSON (or a note when it is large).
    #[serde(default)]
    pub other_summaries: Vec<OtherSummary>,
    /// Every gate result, in gate-name order then section order.
    pub gates: Vec<GateResult>,
    /// Alerts over all sections by severity: `error`, `warning`, `info`.
    pub alerts_by_severity: BTreeMap<String, usize>,
}

/// An input summary without a report section, known by the output it came
/// from (when the run says) and its position among the inputs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OtherSummary {
    /// 1-based position among the report's inputs.
    pub input: usize,
    /// The output it came from (`split.summary`), when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Why it has no section (`no report section`, or the parse error).
    pub note: String,
    /// The summary as the stage wrote it (or a note when too large).
    pub summary: Value,
}

impl ReportDoc {
    /// A report over `summaries` (stage summaries, in input order), without
    /// gates. A section that cannot be read entirely keeps what can be read:
    /// a block of a type this version does not know becomes a note, so that a
    /// newer stage never breaks an older report.
    ///
    /// # Example
    /// ```
    /// use gigo_pipeline::summary::Section;
    /// use gigo_stages::report::{ReportDoc, render_markdown};
    ///
    /// let mut s = Section::new("profile", "profile", "Data profile");
    /// s.metric("duplicate_rate", 0.02);
    /// let doc = ReportDoc::new("My data", &[s.into_summary(serde_json::json!({}))]);
    /// assert_eq!(doc.sections[0].stage, "profile");
    /// assert!(render_markdown(&doc).starts_with("# My data"));
    /// ```
    pub fn new(title: &str, summaries: &[Value]) -> ReportDoc {
        let mut sections = Vec::new();
        let mut other_summaries = Vec::new();
        for (i, summary) in summaries.iter().enumerate() {
            match summary.get(REPORT_KEY).map(parse_section) {
                Some(Ok(section)) => sections.push(section),
                Some(Err(e)) => other_summaries.push(OtherSummary {
                    input: i + 1,
                    source: String::new(),
                    note: format!("its report section could not be read: {e}"),
                    summary: capped(summary),
                }),
                None => other_summaries.push(OtherSummary {
                    input: i + 1,
                    source: String::new(),
                    note: "no report section".into(),
                    summary: capped(summary),
                }),
            }
        }
        let mut alerts_by_severity: BTreeMap<String, usize> =
            [Severity::Error, Severity::Warning, Severity::Info]
                .iter()
                .map(|s| (s.as_str().to_string(), 0))
                .collect();
        for a in sections.iter().flat_map(|s| &s.alerts) {
            *alerts_by_severity
                .entry(a.severity.as_str().to_string())
                .or_default() += 1;
        }
        ReportDoc {
            format_version: FORMAT_VERSION,
            title: title.to_string(),
            generated_by: format!("gigo {}", env!("CARGO_PKG_VERSION")),
            sections,
            other_summaries,
            gates: Vec::new(),
            alerts_by_severity,
        }
    }

    /// Tests `gates` on the sections and records the results. Fails, listing
    /// every gate that cannot be tested, when a gate names a metric no section
    /// reports or a key a metric lacks.
    pub fn apply_gates(&mut self, gates: &[Gate]) -> Result<(), Vec<String>> {
        self.gates = evaluate(gates, &self.sections)?;
        Ok(())
    }

    /// The gate results that failed.
    pub fn failed_gates(&self) -> impl Iterator<Item = &GateResult> {
        self.gates.iter().filter(|g| !g.passed)
    }

    /// `report.json`: pretty-printed, deterministic (no times, no paths).
    pub fn to_json(&self) -> String {
        let mut s = serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            // Serialising plain data cannot fail; say so if it ever does.
            format!("{{\"error\": \"internal error (this is a bug): {e}\"}}")
        });
        s.push('\n');
        s
    }
}

fn capped(summary: &Value) -> Value {
    let len = summary.to_string().len();
    if len <= RAW_SUMMARY_MAX {
        summary.clone()
    } else {
        serde_json::json!({ "omitted": format!("a summary of {len} bytes, too large for the report") })
    }
}

/// Reads a section, block by block: a block that does not parse (a type added
/// by a newer stage, a malformed one) becomes a text note instead of losing
/// the whole section.
pub fn parse_section(v: &Value) -> Result<Section, String> {
    let mut head = v.clone();
    let blocks = match head.as_object_mut() {
        Some(obj) => obj.remove("blocks"),
        None => return Err(format!("expected an object, got {}", kind_of(v))),
    };
    let mut section: Section = serde_json::from_value(head).map_err(|e| e.to_string())?;
    section.blocks = match blocks {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.iter().map(parse_block).collect(),
        Some(other) => vec![note(format!(
            "`blocks` should be a list, got {}",
            kind_of(&other)
        ))],
    };
    Ok(section)
}

fn parse_block(v: &Value) -> Block {
    if v.get("type").and_then(Value::as_str) == Some("group") {
        let title = v
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let blocks = match v.get("blocks") {
            Some(Value::Array(items)) => items.iter().map(parse_block).collect(),
            _ => vec![note("a group without a list of blocks".into())],
        };
        return Block::Group { title, blocks };
    }
    serde_json::from_value(v.clone())
        .or_else(|e| with_nan(v).ok_or(e))
        .unwrap_or_else(|e| {
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("(none)");
        note(format!(
            "This report cannot show a block of type `{ty}` ({e}); report.json keeps the section's readable parts."
        ))
    })
}

/// serde_json writes a NaN or an infinity as `null`, which does not read back
/// into the `f64` fields of a block (heatmap values, histogram edges, line x);
/// read those nulls as NaN, which the renderers show as a gap or a dash.
fn with_nan(v: &Value) -> Option<Block> {
    fn floats(v: Option<&Value>) -> Option<Vec<f64>> {
        v?.as_array()?
            .iter()
            .map(|x| {
                if x.is_null() {
                    Some(f64::NAN)
                } else {
                    x.as_f64()
                }
            })
            .collect()
    }
    fn strings(v: Option<&Value>) -> Option<Vec<String>> {
        v?.as_array()?
            .iter()
            .map(|x| x.as_str().map(str::to_string))
            .collect()
    }
    let title = v.get("title")?.as_str()?.to_string();
    match v.get("type")?.as_str()? {
        "heatmap" => Some(Block::Heatmap {
            title,
            rows: strings(v.get("rows"))?,
            columns: strings(v.get("columns"))?,
            values: v
                .get("values")?
                .as_array()?
                .iter()
                .map(|r| floats(Some(r)))
                .collect::<Option<_>>()?,
        }),
        "histogram" => Some(Block::Histogram {
            title,
            edges: floats(v.get("edges"))?,
            counts: serde_json::from_value(v.get("counts")?.clone()).ok()?,
        }),
        "lines" => Some(Block::Lines {
            title,
            x_label: v.get("x_label")?.as_str()?.to_string(),
            y_label: v.get("y_label")?.as_str()?.to_string(),
            x: floats(v.get("x"))?,
            series: serde_json::from_value(v.get("series")?.clone()).ok()?,
            log_y: v.get("log_y").and_then(Value::as_bool).unwrap_or(false),
        }),
        _ => None,
    }
}

fn note(text: String) -> Block {
    Block::Text { text }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigo_pipeline::summary::Severity;
    use serde_json::json;

    #[test]
    fn sections_and_other_summaries_are_told_apart_in_input_order() {
        let mut a = Section::new("prof", "profile", "Profile");
        a.alert(Severity::Warning, "dups", None, "dups");
        a.alert(Severity::Error, "nulls", Some("age"), "nulls");
        let summaries = vec![
            json!({"rows": {"train": 3}}),
            a.clone().into_summary(json!({})),
            json!({"report": "garbage"}),
        ];
        let doc = ReportDoc::new("T", &summaries);
        assert_eq!(doc.sections, vec![a]);
        assert_eq!(doc.other_summaries.len(), 2);
        assert_eq!(doc.other_summaries[0].input, 1);
        assert_eq!(doc.other_summaries[0].note, "no report section");
        assert_eq!(
            doc.other_summaries[0].summary,
            json!({"rows": {"train": 3}})
        );
        assert!(
            doc.other_summaries[1]
                .note
                .contains("could not be read: expected an object, got a string")
        );
        assert_eq!(
            serde_json::to_value(&doc.alerts_by_severity).unwrap(),
            json!({"error": 1, "warning": 1, "info": 0})
        );
    }

    #[test]
    fn unknown_block_types_become_notes_and_keep_the_rest() {
        let v = json!({
            "format": 1, "stage": "future", "kind": "new_stage", "title": "From the future",
            "blocks": [
                {"type": "text", "text": "kept"},
                {"type": "sankey", "flows": []},
                {"type": "group", "title": "g", "blocks": [{"type": "violin"}, {"type": "text", "text": "inner"}]},
                {"type": "histogram", "title": "bad", "edges": "nope", "counts": []}
            ]
        });
        let s = parse_section(&v).unwrap();
        assert_eq!(s.blocks.len(), 4);
        assert_eq!(
            s.blocks[0],
            Block::Text {
                text: "kept".into()
            }
        );
        let Block::Text { text } = &s.blocks[1] else {
            panic!()
        };
        assert!(text.contains("type `sankey`"), "{text}");
        let Block::Group { blocks, .. } = &s.blocks[2] else {
            panic!()
        };
        assert!(matches!(&blocks[0], Block::Text { text } if text.contains("`violin`")));
        assert_eq!(
            blocks[1],
            Block::Text {
                text: "inner".into()
            }
        );
        assert!(matches!(&s.blocks[3], Block::Text { text } if text.contains("`histogram`")));
    }

    #[test]
    fn nan_written_as_null_reads_back_as_nan() {
        let mut s = Section::new("p", "evaluate", "E");
        s.block(Block::Heatmap {
            title: "m".into(),
            rows: vec!["a".into()],
            columns: vec!["x".into(), "y".into()],
            values: vec![vec![1.0, f64::NAN]],
        });
        s.block(Block::Histogram {
            title: "h".into(),
            edges: vec![f64::NEG_INFINITY, 0.0],
            counts: vec![1],
        });
        s.block(Block::Lines {
            title: "l".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            x: vec![0.0, f64::NAN],
            series: vec![],
            log_y: true,
        });
        let back = parse_section(&s.into_summary(json!({}))["report"]).unwrap();
        let Block::Heatmap { values, .. } = &back.blocks[0] else {
            panic!("{:?}", back.blocks[0])
        };
        assert_eq!(values[0][0], 1.0);
        assert!(values[0][1].is_nan());
        assert!(matches!(&back.blocks[1], Block::Histogram { edges, .. } if edges[0].is_nan()));
        assert!(matches!(&back.blocks[2], Block::Lines { x, log_y: true, .. } if x[1].is_nan()));
    }

    #[test]
    fn json_is_deterministic_and_versioned() {
        let mut s = Section::new("prof", "profile", "Profile");
        s.metric("null_rate", json!({"b": 0.1, "a": 0.2}));
        s.alert(Severity::Info, "x", None, "m")
            .with("z", 1)
            .with("a", 2);
        let summaries = vec![s.into_summary(json!({})), json!({"k": 1})];
        let one = ReportDoc::new("T", &summaries).to_json();
        let two = ReportDoc::new("T", &summaries).to_json();
        assert_eq!(one, two);
        let v: Value = serde_json::from_str(&one).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(
            v["generated_by"],
            format!("gigo {}", env!("CARGO_PKG_VERSION"))
        );
        for key in [
            "title",
            "sections",
            "gates",
            "alerts_by_severity",
            "other_summaries",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        let back: ReportDoc = serde_json::from_str(&one).unwrap();
        assert_eq!(back.to_json(), one);
    }

    #[test]
    fn a_huge_raw_summary_is_replaced_by_a_note() {
        let big = json!({"blob": "x".repeat(RAW_SUMMARY_MAX * 2)});
        let doc = ReportDoc::new("T", &[big]);
        assert!(
            doc.other_summaries[0].summary["omitted"]
                .as_str()
                .unwrap()
                .contains("too large")
        );
    }
}
