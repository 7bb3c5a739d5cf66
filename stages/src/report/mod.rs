//! `report`: one run's findings as `report.html`, `report.json` and
//! `report.md`, with quality gates.
//!
//! The stage reads the summaries it is given and renders the
//! [`Section`](gigo_pipeline::summary::Section) each one carries under
//! `"report"`, without knowing which stage wrote it: a new stage gets its part
//! of the report, and gates on its metrics, with no change here. A summary
//! without a section is listed by the output it came from (`split.summary`)
//! with its raw JSON in a collapsed block.
//!
//! Gates (`max_<metric>` / `min_<metric>`, see [`gates`]) are tested on the
//! sections' metrics; the results go into all three files and into this
//! stage's summary under `"gates"`, where `gigo run` finds a failed one and
//! exits with code 3.
//!
//! # Example
//! ```
//! use gigo_pipeline::summary::{Section, Severity};
//! use gigo_stages::report::{ReportDoc, parse_gates, render_html, render_markdown};
//!
//! let mut s = Section::new("profile", "profile", "Data profile");
//! s.metric("duplicate_rate", 0.02);
//! s.alert(Severity::Warning, "duplicates", None, "20 duplicate rows");
//! let mut doc = ReportDoc::new("Quickstart", &[s.into_summary(serde_json::json!({}))]);
//! let gates = parse_gates(&[("max_duplicate_rate".to_string(), serde_json::json!(0.01))].into()).unwrap();
//! doc.apply_gates(&gates).unwrap();
//! assert!(!doc.gates[0].passed);
//! assert!(render_html(&doc).contains("1 of 1 gate check(s) failed"));
//! assert!(render_markdown(&doc).contains("❌"));
//! ```

mod doc;
mod format;
pub mod gates;
mod html;
mod markdown;
mod svg;

use std::collections::BTreeMap;
use std::fs;

use gigo_pipeline::{
    Artifact, Inputs, ParamProblem, PortKind, PortSpec, Registry, Stage, StageContext, StageError,
    StageOutput, Wiring,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

pub use doc::{FORMAT_VERSION, OtherSummary, ReportDoc, parse_section};
pub use gates::{Gate, GateResult, parse_gates};
pub use html::{CSP, ELEMENTS, MAX_PAGE_BYTES, MAX_TABLE_ROWS, esc, render_html};
pub use markdown::{md, render_markdown};

/// Parameters of `report`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    /// The report's title.
    #[serde(default = "default_title")]
    pub title: String,
    /// Directory for `report.html`, `report.json` and `report.md`. A leading
    /// `{run}` stands for the run directory; other relative paths resolve
    /// against the pipeline file's directory.
    #[serde(default = "default_dir")]
    pub dir: String,
    /// Quality gates: `max_<metric>: <number>` or `min_<metric>: <number>`,
    /// or a number per key (`max_null_rate: {age: 0.05}`). A gate tests the
    /// metric in every input section that reports it (bounds inclusive; a
    /// scalar bound on a per-key metric applies to every key). A failed gate
    /// makes `gigo run` exit with code 3; a gate on a metric or key no input
    /// reports fails the stage.
    #[serde(default)]
    #[schemars(
        with = "BTreeMap<String, gates::ThresholdSpec>",
        extend("propertyNames" = {"pattern": "^(max|min)_.+$"})
    )]
    pub gates: BTreeMap<String, Value>,
}

fn default_title() -> String {
    "gigo report".into()
}

fn default_dir() -> String {
    "{run}".into()
}

/// The `report` stage.
pub struct Report {
    title: String,
    dir: String,
    gates: Vec<Gate>,
}

/// The three files, by name.
pub const FILES: [&str; 3] = ["report.html", "report.json", "report.md"];

impl ReportParams {
    fn check(self) -> Result<Report, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        if self.dir.trim().is_empty() {
            problems.push(ParamProblem::new(
                "dir",
                "must not be empty (the default is `{run}`)",
            ));
        }
        let gates = match parse_gates(&self.gates) {
            Ok(g) => g,
            Err(mut p) => {
                problems.append(&mut p);
                Vec::new()
            }
        };
        if problems.is_empty() {
            Ok(Report {
                title: self.title,
                dir: self.dir.trim_end_matches(['/', '\\']).to_string(),
                gates,
            })
        } else {
            Err(problems)
        }
    }
}

/// Registers `report`.
pub fn register(registry: &mut Registry) {
    registry.register::<ReportParams, _>(
        "report",
        "Writes report.html (one self-contained page: charts as inline SVG, no \
         script, no external fetch), report.json (versioned, deterministic) and \
         report.md (a short summary for CI) from the summaries it is given, and \
         tests quality gates (`max_<metric>` / `min_<metric>`) on the metrics they \
         report. A failed gate is listed in all three files and makes `gigo run` \
         exit with code 3.",
        |p| Ok(Box::new(p.check()?)),
    );
}

impl Stage for Report {
    fn inputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::aside(
                "summaries",
                PortKind::Summary,
                "the summaries to report on: `inputs: [profile.summary, ...]`",
            )
            .many(),
        ]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![]
    }

    fn check_wiring(&self, wiring: &Wiring) -> Vec<ParamProblem> {
        gates::check_declared(&self.gates, wiring)
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let summaries: Vec<Value> = inputs
            .all("summaries")
            .iter()
            .map(|a| match a {
                Artifact::Summary(v) => Ok(v.as_ref().clone()),
                other => Err(StageError::internal(format!(
                    "port `summaries` received a {}",
                    other.kind()
                ))),
            })
            .collect::<Result<_, _>>()?;
        let mut doc = ReportDoc::new(&self.title, &summaries);
        let sources = inputs.sources("summaries");
        for o in &mut doc.other_summaries {
            if let Some(src) = sources.get(o.input - 1) {
                o.source = src.clone();
            }
        }
        doc.apply_gates(&self.gates).map_err(|errors| {
            StageError::data(format!(
                "{} gate(s) cannot be tested: {}",
                errors.len(),
                errors.join("; ")
            ))
        })?;
        fs::create_dir_all(&ctx.scratch_dir).map_err(|e| StageError::io(&ctx.scratch_dir, e))?;
        let mut out = StageOutput::new();
        for (name, text) in
            FILES
                .iter()
                .zip([render_html(&doc), doc.to_json(), render_markdown(&doc)])
        {
            let produced = ctx.scratch_dir.join(name);
            fs::write(&produced, text).map_err(|e| StageError::io(&produced, e))?;
            out = out.publish(format!("{}/{name}", self.dir), produced);
        }
        let failed = doc.failed_gates().count();
        if failed > 0 {
            ctx.log(format!("{failed} gate check(s) failed"));
        }
        Ok(out.with_summary(serde_json::json!({
            "files": FILES.iter().map(|f| format!("{}/{f}", self.dir)).collect::<Vec<_>>(),
            "sections": doc.sections.iter().map(|s| s.stage.clone()).collect::<Vec<_>>(),
            "other_summaries": doc.other_summaries.len(),
            "alerts_by_severity": doc.alerts_by_severity,
            "gates_failed": failed,
            "gates": doc.gates,
        })))
    }
}

#[cfg(test)]
mod tests;
