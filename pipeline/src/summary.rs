//! The summary vocabulary that every stage shares with the `report` stage.
//!
//! A stage's summary (its `summary` port, also stored in `run.json`) is a JSON
//! object. Under the key `"report"` it carries a [`Section`]: what the report
//! shows for that stage, written only in generic building blocks (figures,
//! alerts, tables, bar charts, histograms, line charts, heatmaps) and named
//! metrics that quality gates can test. The report stage renders any section
//! without knowing which stage wrote it, so a new stage gets its part of the
//! report (HTML, JSON, Markdown) and its gates with no change to the report.
//!
//! Everything else in a summary is the stage's own machine-readable detail.
//!
//! ```
//! use gigo_pipeline::summary::{Block, Section, Severity};
//!
//! let mut s = Section::new("profile", "profile", "Data profile");
//! s.figure("rows", 1000.0, "int");
//! s.metric("duplicate_rate", 0.02);
//! s.alert(Severity::Warning, "duplicates", None, "20 exact duplicate rows (2.0%)");
//! s.block(Block::bars("Rows per class", vec!["a".into(), "b".into()], "rows", vec![900.0, 100.0]));
//! let summary = s.into_summary(serde_json::json!({"rows": 1000}));
//! assert_eq!(summary["report"]["metrics"]["duplicate_rate"], 0.02);
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the section format; the report records it.
pub const SECTION_FORMAT: u32 = 1;

/// Key of a summary under which the [`Section`] lives.
pub const REPORT_KEY: &str = "report";

/// Key of a summary under which failed and passed quality gates live; the CLI
/// exits with its gate code when one has `"passed": false`.
pub const GATES_KEY: &str = "gates";

/// How bad an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Likely to hurt a model.
    Warning,
    /// Certain to hurt a model, or the data is broken.
    Error,
}

impl Severity {
    /// `info`, `warning` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One finding, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// How bad.
    pub severity: Severity,
    /// A stable machine name (`duplicates`, `high_nulls`, `drift`, ...).
    pub kind: String,
    /// The column concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// One sentence for people.
    pub message: String,
    /// The numbers behind it (`{"rate": 0.02, "threshold": 0.01}`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evidence: BTreeMap<String, Value>,
}

/// A headline number shown at the top of a section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// What it is (`rows`, `duplicate rate`).
    pub label: String,
    /// The value (a number, or a string).
    pub value: Value,
    /// How to print a number: `int`, `float`, `pct` (a fraction shown as a
    /// percentage) or `seconds`.
    #[serde(default = "default_format")]
    pub format: String,
}

fn default_format() -> String {
    "float".into()
}

/// One named series of numbers in a chart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// One value per label (bars) or per x (lines); `null` for a gap.
    pub values: Vec<Option<f64>>,
}

/// A building block of a section, rendered in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// A paragraph of plain text.
    Text {
        /// The text (escaped when rendered).
        text: String,
    },
    /// A table of values (numbers, strings, booleans, nulls).
    Table {
        /// Caption.
        title: String,
        /// Column headers.
        columns: Vec<String>,
        /// Rows of cells.
        rows: Vec<Vec<Value>>,
    },
    /// Grouped bars: one group per label, one bar per series.
    Bars {
        /// Caption.
        title: String,
        /// Category labels.
        labels: Vec<String>,
        /// Series (e.g. `before`, `after`).
        series: Vec<Series>,
    },
    /// A histogram of a numeric column: `counts[i]` rows in
    /// `[edges[i], edges[i+1])`.
    Histogram {
        /// Caption.
        title: String,
        /// Bin edges, one more than counts.
        edges: Vec<f64>,
        /// Rows per bin.
        counts: Vec<u64>,
    },
    /// Line chart: curves over a shared x axis.
    Lines {
        /// Caption.
        title: String,
        /// X axis name.
        x_label: String,
        /// Y axis name.
        y_label: String,
        /// X values.
        x: Vec<f64>,
        /// Curves.
        series: Vec<Series>,
        /// Whether to draw y on a log scale (gradient norms).
        #[serde(default)]
        log_y: bool,
    },
    /// A matrix of numbers (confusion matrix, noise matrix, correlations).
    Heatmap {
        /// Caption.
        title: String,
        /// Row labels.
        rows: Vec<String>,
        /// Column labels.
        columns: Vec<String>,
        /// Values, row-major.
        values: Vec<Vec<f64>>,
    },
    /// A titled group of blocks (e.g. one per column), collapsible in HTML.
    Group {
        /// Caption.
        title: String,
        /// Nested blocks.
        blocks: Vec<Block>,
    },
}

impl Block {
    /// A bar chart with one series.
    pub fn bars(title: &str, labels: Vec<String>, series: &str, values: Vec<f64>) -> Block {
        Block::Bars {
            title: title.into(),
            labels,
            series: vec![Series {
                name: series.into(),
                values: values.into_iter().map(Some).collect(),
            }],
        }
    }

    /// A table from string headers and rows.
    pub fn table(title: &str, columns: &[&str], rows: Vec<Vec<Value>>) -> Block {
        Block::Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows,
        }
    }
}

/// What the report shows for one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    /// Format version ([`SECTION_FORMAT`]).
    pub format: u32,
    /// The stage id.
    pub stage: String,
    /// The stage type.
    pub kind: String,
    /// Heading.
    pub title: String,
    /// Headline numbers.
    #[serde(default)]
    pub figures: Vec<Figure>,
    /// Numbers quality gates can test, by name: a number, or an object of
    /// numbers by key (e.g. `null_rate` by column). A gate `max_<name>` or
    /// `min_<name>` in the report's parameters tests metric `<name>`.
    #[serde(default)]
    pub metrics: BTreeMap<String, Value>,
    /// Findings.
    #[serde(default)]
    pub alerts: Vec<Alert>,
    /// Content, in order.
    #[serde(default)]
    pub blocks: Vec<Block>,
}

impl Section {
    /// An empty section for stage `stage` of type `kind`.
    pub fn new(stage: &str, kind: &str, title: &str) -> Self {
        Section {
            format: SECTION_FORMAT,
            stage: stage.into(),
            kind: kind.into(),
            title: title.into(),
            figures: Vec::new(),
            metrics: BTreeMap::new(),
            alerts: Vec::new(),
            blocks: Vec::new(),
        }
    }

    /// Adds a headline number (`format`: int, float, pct, seconds).
    pub fn figure(&mut self, label: &str, value: impl Into<Value>, format: &str) {
        self.figures.push(Figure {
            label: label.into(),
            value: value.into(),
            format: format.into(),
        });
    }

    /// Sets a gateable metric.
    pub fn metric(&mut self, name: &str, value: impl Into<Value>) {
        self.metrics.insert(name.into(), value.into());
    }

    /// Adds an alert without evidence; returns it for adding evidence.
    pub fn alert(
        &mut self,
        severity: Severity,
        kind: &str,
        column: Option<&str>,
        message: impl Into<String>,
    ) -> &mut Alert {
        self.alerts.push(Alert {
            severity,
            kind: kind.into(),
            column: column.map(str::to_string),
            message: message.into(),
            evidence: BTreeMap::new(),
        });
        self.alerts.last_mut().expect("just pushed")
    }

    /// Adds a block.
    pub fn block(&mut self, block: Block) {
        self.blocks.push(block);
    }

    /// The stage summary: `detail` (an object, or null) with this section under
    /// `"report"`.
    pub fn into_summary(self, detail: Value) -> Value {
        let mut summary = match detail {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        summary.insert(
            REPORT_KEY.into(),
            serde_json::to_value(self).unwrap_or(Value::Null),
        );
        Value::Object(summary)
    }

    /// The section inside a stage summary, if it has one.
    pub fn from_summary(summary: &Value) -> Option<Result<Section, serde_json::Error>> {
        summary
            .get(REPORT_KEY)
            .map(|v| serde_json::from_value(v.clone()))
    }
}

impl Alert {
    /// Adds a number or value behind the alert.
    pub fn with(&mut self, key: &str, value: impl Into<Value>) -> &mut Alert {
        self.evidence.insert(key.into(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn section_round_trips_through_a_summary() {
        let mut s = Section::new("prof", "profile", "Data profile");
        s.figure("rows", 10, "int");
        s.metric("null_rate", serde_json::json!({"age": 0.5}));
        s.alert(Severity::Error, "nulls", Some("age"), "half missing")
            .with("rate", 0.5);
        s.block(Block::Histogram {
            title: "age".into(),
            edges: vec![0.0, 1.0, 2.0],
            counts: vec![3, 4],
        });
        s.block(Block::Group {
            title: "g".into(),
            blocks: vec![Block::Text { text: "x".into() }],
        });
        let summary = s.clone().into_summary(serde_json::json!({"rows": 10}));
        assert_eq!(summary["rows"], 10);
        assert_eq!(summary["report"]["blocks"][0]["type"], "histogram");
        let back = Section::from_summary(&summary).unwrap().unwrap();
        assert_eq!(back, s);
        assert!(Section::from_summary(&serde_json::json!({})).is_none());
    }
}
