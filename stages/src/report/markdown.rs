//! `report.md`: a short summary for a CI job page (GitHub's step summary,
//! GitLab's job page): the gates with ✅/❌, alert counts, the top alerts and
//! each section's headline figures. Text from data is escaped so that a
//! column named `<script>` or `a|b` stays text and cannot break a table.

use super::format::cut;
use std::fmt::Write;

use gigo_pipeline::summary::{Alert, Section, Severity};

use super::doc::ReportDoc;
use super::format::{self, MISSING, general};
use super::gates::GateResult;

/// Most failed gate checks listed.
pub const MAX_GATE_ROWS: usize = 50;
/// Most alerts listed.
pub const MAX_TOP_ALERTS: usize = 10;
/// Most figures listed per section.
pub const MAX_FIGURES: usize = 8;

/// Escapes text for Markdown (CommonMark / GitHub): HTML-special characters
/// become entities, Markdown punctuation is backslash-escaped, line breaks
/// become spaces (a cell must stay on its line).
pub fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' | '\t' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '|' | '~' | '#' | '!' | '(' | ')' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn icon(s: Severity) -> &'static str {
    match s {
        Severity::Error => "🛑",
        Severity::Warning => "⚠️",
        Severity::Info => "ℹ️",
    }
}

/// Renders the short Markdown summary of `doc`.
pub fn render_markdown(doc: &ReportDoc) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {}\n", md(&doc.title));
    let _ = writeln!(
        out,
        "{} · {} section(s)\n",
        md(&doc.generated_by),
        doc.sections.len()
    );
    if !doc.gates.is_empty() {
        let failed = doc.failed_gates().count();
        if failed == 0 {
            let _ = writeln!(
                out,
                "## Quality gates: ✅ all {} check(s) passed\n",
                doc.gates.len()
            );
        } else {
            let _ = writeln!(
                out,
                "## Quality gates: ❌ {failed} of {} check(s) failed\n",
                doc.gates.len()
            );
        }
        out.push_str("| | gate | stage | key | value | threshold |\n| --- | --- | --- | --- | ---: | ---: |\n");
        let row = |out: &mut String, ok: bool, g: &GateResult, key: String| {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {key} | {} | {} |",
                if ok { "✅" } else { "❌" },
                md(&g.name),
                md(&g.stage),
                g.value.map_or_else(|| MISSING.to_string(), general),
                general(g.threshold)
            );
        };
        let failed: Vec<&GateResult> = doc.failed_gates().collect();
        for g in failed.iter().take(MAX_GATE_ROWS) {
            row(
                &mut out,
                false,
                g,
                md(&cut(g.key.as_deref().unwrap_or(""), 80)),
            );
        }
        if failed.len() > MAX_GATE_ROWS {
            let _ = writeln!(
                out,
                "| ❌ | … | | {} more failed check(s) in report.json | | |",
                failed.len() - MAX_GATE_ROWS
            );
        }
        // Passed checks: one row per gate and stage; when the gate tested
        // several keys, the one closest to its threshold.
        let mut passed: Vec<(usize, &GateResult)> = Vec::new();
        for g in doc.gates.iter().filter(|g| g.passed) {
            match passed
                .iter_mut()
                .find(|(_, p)| p.name == g.name && p.stage == g.stage)
            {
                Some((n, worst)) => {
                    *n += 1;
                    let is_max = g.name.starts_with("max_");
                    if let (Some(v), Some(w)) = (g.value, worst.value)
                        && ((is_max && v > w) || (!is_max && v < w))
                    {
                        *worst = g;
                    }
                }
                None => passed.push((1, g)),
            }
        }
        for (n, g) in passed {
            let key = md(&cut(g.key.as_deref().unwrap_or(""), 80));
            let key = if n == 1 {
                key
            } else {
                format!("{key} (closest of {n} keys)")
            };
            row(&mut out, true, g, key);
        }
        out.push('\n');
    }
    let n = |k: &str| doc.alerts_by_severity.get(k).copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "**Alerts:** {} error(s) · {} warning(s) · {} info\n",
        n("error"),
        n("warning"),
        n("info")
    );
    let mut alerts: Vec<(&Section, &Alert)> = doc
        .sections
        .iter()
        .flat_map(|s| s.alerts.iter().map(move |a| (s, a)))
        .collect();
    alerts.sort_by_key(|(_, a)| std::cmp::Reverse(a.severity));
    if !alerts.is_empty() {
        out.push_str("### Top alerts\n\n");
        for (s, a) in alerts.iter().take(MAX_TOP_ALERTS) {
            let _ = writeln!(
                out,
                "- {} **{}** · {} · {}{}",
                icon(a.severity),
                a.severity.as_str(),
                md(&s.stage),
                a.column
                    .as_deref()
                    .map(|c| format!("column {}: ", md(&cut(c, 80))))
                    .unwrap_or_default(),
                md(&cut(&a.message, 300))
            );
        }
        if alerts.len() > MAX_TOP_ALERTS {
            let _ = writeln!(
                out,
                "- … {} more in report.html",
                alerts.len() - MAX_TOP_ALERTS
            );
        }
        out.push('\n');
    }
    for s in &doc.sections {
        let _ = writeln!(out, "### {} (stage {})\n", md(&s.title), md(&s.stage));
        if s.figures.is_empty() {
            out.push_str("No headline figures.\n\n");
            continue;
        }
        out.push_str("| figure | value |\n| --- | ---: |\n");
        for f in s.figures.iter().take(MAX_FIGURES) {
            let _ = writeln!(
                out,
                "| {} | {} |",
                md(&cut(&f.label, 80)),
                md(&cut(&format::value(&f.value, &f.format), 80))
            );
        }
        out.push('\n');
    }
    if !doc.other_summaries.is_empty() {
        let _ = writeln!(
            out,
            "{} input(s) without a report section; see report.html.\n",
            doc.other_summaries.len()
        );
    }
    out.push_str("Full report: `report.html` · machine-readable: `report.json`\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        name: &str,
        key: Option<&str>,
        value: f64,
        threshold: f64,
        passed: bool,
    ) -> GateResult {
        GateResult {
            name: name.into(),
            stage: "p".into(),
            key: key.map(str::to_string),
            value: Some(value),
            threshold,
            passed,
            message: String::new(),
        }
    }

    #[test]
    fn failed_checks_are_listed_and_passed_ones_fold_per_gate() {
        let mut doc = ReportDoc::new("T", &[]);
        doc.gates = vec![
            result("max_null_rate", Some("a"), 0.01, 0.05, true),
            result("max_null_rate", Some("b"), 0.2, 0.05, false),
            result("max_null_rate", Some("c"), 0.04, 0.05, true),
            result("max_null_rate", Some("d"), 0.02, 0.05, true),
            result("min_auc", None, 0.8, 0.7, true),
            result("min_f1", Some("x"), 0.9, 0.5, true),
            result("min_f1", Some("y"), 0.6, 0.5, true),
        ];
        let md = render_markdown(&doc);
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ❌") || l.starts_with("| ✅"))
            .collect();
        assert_eq!(
            rows,
            [
                "| ❌ | max\\_null\\_rate | p | b | 0.2 | 0.05 |",
                "| ✅ | max\\_null\\_rate | p | c (closest of 3 keys) | 0.04 | 0.05 |",
                "| ✅ | min\\_auc | p |  | 0.8 | 0.7 |",
                "| ✅ | min\\_f1 | p | y (closest of 2 keys) | 0.6 | 0.5 |",
            ]
        );
        assert!(
            md.contains("## Quality gates: ❌ 1 of 7 check(s) failed"),
            "{md}"
        );
    }

    #[test]
    fn markdown_specials_and_html_are_neutralised() {
        assert_eq!(md("a|b"), "a\\|b");
        assert_eq!(md("<script>x</script>"), "&lt;script&gt;x&lt;/script&gt;");
        assert_eq!(
            md("`code` *b* _i_ [l](u) ![i](x)"),
            "\\`code\\` \\*b\\* \\_i\\_ \\[l\\]\\(u\\) \\!\\[i\\]\\(x\\)"
        );
        assert_eq!(md("two\nlines"), "two lines");
        assert_eq!(md("&lt;"), "&amp;lt;");
    }
}
