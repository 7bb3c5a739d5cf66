//! `report.html`: one self-contained page. No script, no external fetch (a
//! strict Content-Security-Policy says so to the browser too), charts as
//! inline SVG, groups as `<details>`. Every string that came from a section or
//! a summary is escaped with [`esc`]; the page stays small because tables,
//! charts and the page as a whole have caps, each leaving a visible note.

use super::format::cut;
use std::fmt::Write;

use gigo_pipeline::summary::{Alert, Block, Section};
use serde_json::Value;

use super::doc::ReportDoc;
use super::format::{self, MISSING, general};
use super::gates::GateResult;
use super::svg;

/// The page's Content-Security-Policy: nothing may load or run; only inline
/// styles and `data:` images are allowed.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// Most rows a table shows; the rest are counted in a note.
pub const MAX_TABLE_ROWS: usize = 200;
/// Most columns a table shows.
pub const MAX_TABLE_COLUMNS: usize = 60;
/// Most gate checks listed per table (failed, passed).
pub const MAX_GATE_ROWS: usize = 1000;
/// Most alerts a section lists (most severe first).
pub const MAX_ALERTS: usize = 200;
/// Most rows and columns a heatmap shows.
pub const MAX_HEATMAP: usize = 50;
/// Longest text shown from one cell, label or paragraph.
pub const MAX_TEXT: usize = 20_000;
/// Size past which further blocks are left out (report.json has everything).
pub const MAX_PAGE_BYTES: usize = 1_500_000;

/// Escapes text for HTML and SVG, in element content and in quoted
/// attribute values alike: `&`, `<`, `>`, `"` and `'`.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // NUL is dropped by parsers anyway; keep the page clean.
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root{--fg:#1d2430;--muted:#5b6575;--bg:#fff;--panel:#f5f7fa;--line:#d9dee6;--err:#b3261e;--warn:#9a5b00;--info:#1f5fa8;--ok:#1b7a3a}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);margin:0 auto;max-width:1080px;padding:24px}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:32px 0 8px;border-bottom:1px solid var(--line);padding-bottom:4px}
h3{font-size:16px;margin:20px 0 6px}h4{font-size:14px;margin:14px 0 4px}
.muted,.meta{color:var(--muted)}.note{color:var(--muted);font-style:italic;margin:4px 0}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:var(--panel);padding:1px 4px;border-radius:3px}
nav.toc{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 16px;margin:16px 0}
nav.toc h2{border:0;margin:4px 0;font-size:15px}nav.toc ol{margin:4px 0;padding-left:22px}
a{color:var(--info)}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:var(--panel);border:1px solid var(--line);border-radius:6px;padding:8px 12px;min-width:120px}
.card .label{color:var(--muted);font-size:12px}.card .value{font-size:20px;font-weight:600}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--panel)}td.num{text-align:right;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;max-width:100%}
figure{margin:12px 0}figcaption{font-weight:600;margin-bottom:4px}
ul.alerts{list-style:none;padding:0;margin:6px 0}
ul.alerts li{border-left:4px solid var(--line);background:var(--panel);padding:5px 10px;margin:4px 0;border-radius:0 4px 4px 0}
li.sev-error{border-color:var(--err)!important}li.sev-warning{border-color:var(--warn)!important}li.sev-info{border-color:var(--info)!important}
.badge{display:inline-block;font-size:11px;font-weight:700;text-transform:uppercase;padding:0 6px;border-radius:3px;color:#fff;margin-right:6px}
.b-error{background:var(--err)}.b-warning{background:var(--warn)}.b-info{background:var(--info)}.b-pass{background:var(--ok)}.b-fail{background:var(--err)}
.ev{display:block;color:var(--muted);font-size:12px}
.verdict{font-weight:600}.verdict.fail{color:var(--err)}.verdict.pass{color:var(--ok)}
tr.fail td{background:#fdecea}
details{border:1px solid var(--line);border-radius:6px;padding:4px 10px;margin:6px 0}
summary{cursor:pointer;font-weight:600}
p.text{white-space:pre-wrap}
pre{background:var(--panel);padding:8px;overflow-x:auto;font-size:12px;white-space:pre-wrap}
svg.chart{max-width:100%;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:var(--fg)}svg text.tk,svg text.val{fill:var(--muted);font-size:10px}
svg .axis{stroke:#8a93a3;stroke-width:1}svg .grid{stroke:#e6e9ef;stroke-width:1}
@media (prefers-color-scheme:dark){:root{--fg:#e3e7ee;--muted:#9aa4b4;--bg:#14171c;--panel:#1d2229;--line:#343b46}tr.fail td{background:#3a1f1d}}
"#;

/// Renders `doc` as one self-contained HTML page.
///
/// # Example
/// ```
/// use gigo_pipeline::summary::Section;
/// use gigo_stages::report::{ReportDoc, render_html};
///
/// let s = Section::new("p", "profile", "<b>not bold</b>");
/// let html = render_html(&ReportDoc::new("Report", &[s.into_summary(serde_json::json!({}))]));
/// assert!(html.contains("&lt;b&gt;not bold&lt;/b&gt;"));
/// ```
pub fn render_html(doc: &ReportDoc) -> String {
    let mut w = Page {
        out: String::with_capacity(64 * 1024),
        full: false,
    };
    w.page(doc);
    w.out
}

struct Page {
    out: String,
    /// The page reached [`MAX_PAGE_BYTES`]: blocks are left out from here on.
    full: bool,
}

impl Page {
    fn push(&mut self, s: &str) {
        self.out.push_str(s);
    }

    fn page(&mut self, doc: &ReportDoc) {
        let title = esc(&doc.title);
        let _ = write!(
            self.out,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <meta name=\"generator\" content=\"{}\">\n<title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
            esc(&doc.generated_by)
        );
        let failed = doc.failed_gates().count();
        let counts = |k: &str| doc.alerts_by_severity.get(k).copied().unwrap_or(0);
        let _ = write!(
            self.out,
            "<header>\n<h1>{title}</h1>\n<p class=\"meta\">{} · {} section(s) · alerts: {} error(s), {} warning(s), {} info{}</p>\n</header>\n",
            esc(&doc.generated_by),
            doc.sections.len(),
            counts("error"),
            counts("warning"),
            counts("info"),
            if doc.gates.is_empty() {
                String::new()
            } else if failed == 0 {
                format!(" · all {} gate check(s) passed", doc.gates.len())
            } else {
                format!(
                    " · <b>{failed} of {} gate check(s) failed</b>",
                    doc.gates.len()
                )
            }
        );
        self.toc(doc);
        if !doc.gates.is_empty() {
            self.gates(doc);
        }
        for (i, s) in doc.sections.iter().enumerate() {
            self.section(i, s);
        }
        if !doc.other_summaries.is_empty() {
            self.push("<section id=\"other\">\n<h2>Other stages</h2>\n<p class=\"muted\">These inputs have no report section; their summaries are shown as written.</p>\n");
            for o in &doc.other_summaries {
                let raw = serde_json::to_string_pretty(&o.summary).unwrap_or_default();
                let _ = writeln!(
                    self.out,
                    "<details><summary>{} <span class=\"muted\">({})</span></summary><pre>{}</pre></details>",
                    if o.source.is_empty() {
                        format!("input {}", o.input)
                    } else {
                        esc(&o.source)
                    },
                    esc(&o.note),
                    esc(&cut(&raw, MAX_TEXT))
                );
            }
            self.push("</section>\n");
        }
        if self.full {
            self.push("<p class=\"note\">Some blocks were left out to keep this page small; report.json has everything.</p>\n");
        }
        let _ = write!(
            self.out,
            "<footer><p class=\"muted\">{} — report format {}</p></footer>\n</body>\n</html>\n",
            esc(&doc.generated_by),
            doc.format_version
        );
    }

    fn toc(&mut self, doc: &ReportDoc) {
        self.push("<nav class=\"toc\">\n<h2>Contents</h2>\n<ol>\n");
        if !doc.gates.is_empty() {
            let failed = doc.failed_gates().count();
            let _ = writeln!(
                self.out,
                "<li><a href=\"#gates\">Quality gates</a> {}</li>",
                if failed > 0 {
                    format!("<span class=\"badge b-fail\">{failed} failed</span>")
                } else {
                    "<span class=\"badge b-pass\">passed</span>".into()
                }
            );
        }
        for (i, s) in doc.sections.iter().enumerate() {
            let worst = s.alerts.iter().map(|a| a.severity).max();
            let _ = writeln!(
                self.out,
                "<li><a href=\"#s{}\">{}</a> <span class=\"muted\">{} · {}</span>{}</li>",
                i + 1,
                esc(&s.title),
                esc(&s.stage),
                esc(&s.kind),
                match worst {
                    Some(sev) => format!(
                        " <span class=\"badge b-{0}\">{1} alert(s)</span>",
                        sev.as_str(),
                        s.alerts.len()
                    ),
                    None => String::new(),
                }
            );
        }
        if !doc.other_summaries.is_empty() {
            self.push("<li><a href=\"#other\">Other stages</a></li>\n");
        }
        self.push("</ol>\n</nav>\n");
    }

    fn gates(&mut self, doc: &ReportDoc) {
        let (failed, passed): (Vec<&GateResult>, Vec<&GateResult>) =
            doc.gates.iter().partition(|g| !g.passed);
        let _ = writeln!(
            self.out,
            "<section id=\"gates\">\n<h2>Quality gates</h2>\n<p class=\"verdict {}\">{}</p>",
            if failed.is_empty() { "pass" } else { "fail" },
            if failed.is_empty() {
                format!("All {} gate check(s) passed", doc.gates.len())
            } else {
                format!(
                    "{} of {} gate check(s) failed",
                    failed.len(),
                    doc.gates.len()
                )
            }
        );
        if !failed.is_empty() {
            self.gate_table(&failed);
        }
        // Many passed checks (a per-column gate on a wide table) fold away.
        if failed.is_empty() && passed.len() <= 20 {
            self.gate_table(&passed);
        } else if !passed.is_empty() {
            let _ = writeln!(
                self.out,
                "<details><summary>{} passed check(s)</summary>",
                passed.len()
            );
            self.gate_table(&passed);
            self.push("</details>\n");
        }
        self.push("</section>\n");
    }

    fn gate_table(&mut self, gates: &[&GateResult]) {
        self.push("<div class=\"scroll\"><table>\n<thead><tr><th>result</th><th>gate</th><th>stage</th><th>key</th><th>value</th><th>threshold</th><th>message</th></tr></thead>\n<tbody>\n");
        for g in gates.iter().take(MAX_GATE_ROWS) {
            let result = if g.passed { "pass" } else { "fail" };
            let _ = writeln!(
                self.out,
                "<tr class=\"{result}\"><td><span class=\"badge b-{result}\">{result}</span></td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&g.name),
                esc(&g.stage),
                esc(&cut(g.key.as_deref().unwrap_or(""), 200)),
                g.value.map_or_else(|| MISSING.to_string(), general),
                general(g.threshold),
                esc(&cut(&g.message, 1000))
            );
        }
        self.push("</tbody>\n</table></div>\n");
        if gates.len() > MAX_GATE_ROWS {
            let _ = writeln!(
                self.out,
                "<p class=\"note\">{} more check(s) not shown; report.json lists them all.</p>",
                gates.len() - MAX_GATE_ROWS
            );
        }
    }

    fn section(&mut self, i: usize, s: &Section) {
        let _ = write!(
            self.out,
            "<section id=\"s{}\" class=\"stage\">\n<h2>{}</h2>\n<p class=\"muted\">stage <code>{}</code> · type <code>{}</code></p>\n",
            i + 1,
            esc(&s.title),
            esc(&s.stage),
            esc(&s.kind)
        );
        if !s.figures.is_empty() {
            self.push("<div class=\"cards\">\n");
            for f in &s.figures {
                let _ = writeln!(
                    self.out,
                    "<div class=\"card\"><div class=\"label\">{}</div><div class=\"value\">{}</div></div>",
                    esc(&f.label),
                    esc(&cut(&format::value(&f.value, &f.format), 200))
                );
            }
            self.push("</div>\n");
        }
        if !s.alerts.is_empty() {
            self.alerts(&s.alerts);
        }
        for b in &s.blocks {
            self.block(b);
        }
        if !s.metrics.is_empty() {
            self.metrics(s);
        }
        self.push("</section>\n");
    }

    fn alerts(&mut self, alerts: &[Alert]) {
        let mut sorted: Vec<&Alert> = alerts.iter().collect();
        // Most severe first; the section's order within a severity.
        sorted.sort_by_key(|a| std::cmp::Reverse(a.severity));
        let _ = writeln!(
            self.out,
            "<h3>Alerts ({})</h3>\n<ul class=\"alerts\">",
            alerts.len()
        );
        for a in sorted.iter().take(MAX_ALERTS) {
            let sev = a.severity.as_str();
            let _ = write!(
                self.out,
                "<li class=\"sev-{sev}\"><span class=\"badge b-{sev}\">{sev}</span><code>{}</code> ",
                esc(&a.kind)
            );
            if let Some(c) = &a.column {
                let _ = write!(self.out, "column <b>{}</b>: ", esc(&cut(c, 200)));
            }
            self.push(&esc(&cut(&a.message, MAX_TEXT)));
            if !a.evidence.is_empty() {
                let ev: Vec<String> = a
                    .evidence
                    .iter()
                    .take(30)
                    .map(|(k, v)| {
                        format!(
                            "{} = {}",
                            esc(&cut(k, 100)),
                            esc(&cut(&format::cell(v), 300))
                        )
                    })
                    .collect();
                let _ = write!(self.out, "<span class=\"ev\">{}</span>", ev.join(" · "));
            }
            self.push("</li>\n");
        }
        self.push("</ul>\n");
        if alerts.len() > MAX_ALERTS {
            let _ = writeln!(
                self.out,
                "<p class=\"note\">{} more alert(s) not shown; report.json lists them all.</p>",
                alerts.len() - MAX_ALERTS
            );
        }
    }

    fn metrics(&mut self, s: &Section) {
        self.push("<details><summary>Metrics <span class=\"muted\">(gates test these: <code>max_&lt;metric&gt;</code>, <code>min_&lt;metric&gt;</code>)</span></summary>\n<table><thead><tr><th>metric</th><th>value</th></tr></thead><tbody>\n");
        for (name, v) in &s.metrics {
            let shown = match v {
                Value::Object(by_key) => {
                    let mut parts: Vec<String> = by_key
                        .iter()
                        .take(50)
                        .map(|(k, x)| format!("{}: {}", esc(&cut(k, 100)), esc(&format::cell(x))))
                        .collect();
                    if by_key.len() > 50 {
                        parts.push(format!("… {} more", by_key.len() - 50));
                    }
                    parts.join(" · ")
                }
                other => esc(&cut(&format::cell(other), 300)),
            };
            let _ = writeln!(
                self.out,
                "<tr><td><code>{}</code></td><td>{shown}</td></tr>",
                esc(name)
            );
        }
        self.push("</tbody></table>\n</details>\n");
    }

    fn block(&mut self, b: &Block) {
        if self.out.len() > MAX_PAGE_BYTES {
            if !self.full {
                self.push("<p class=\"note\">The page reached its size limit: the remaining blocks are left out (report.json has them).</p>\n");
            }
            self.full = true;
            return;
        }
        match b {
            Block::Text { text } => {
                let _ = writeln!(
                    self.out,
                    "<p class=\"text\">{}</p>",
                    esc(&cut(text, MAX_TEXT))
                );
            }
            Block::Table {
                title,
                columns,
                rows,
            } => self.table(title, columns, rows),
            Block::Bars {
                title,
                labels,
                series,
            } => {
                self.push("<figure>");
                self.caption(title);
                let (svg, left) = svg::bars(title, labels, series);
                self.push(&svg);
                if left > 0 {
                    let _ = write!(
                        self.out,
                        "<p class=\"note\">{left} more categories not shown ({} in all).</p>",
                        labels.len()
                    );
                }
                self.push("</figure>\n");
            }
            Block::Histogram {
                title,
                edges,
                counts,
            } => {
                self.push("<figure>");
                self.caption(title);
                match svg::histogram(title, edges, counts) {
                    Some(svg) => self.push(&svg),
                    None => {
                        let _ = write!(
                            self.out,
                            "<p class=\"note\">This histogram cannot be drawn: {} edges for {} bins (needs one more edge than bins).</p>",
                            edges.len(),
                            counts.len()
                        );
                    }
                }
                self.push("</figure>\n");
            }
            Block::Lines {
                title,
                x_label,
                y_label,
                x,
                series,
                log_y,
            } => {
                self.push("<figure>");
                self.caption(title);
                match svg::lines(title, x_label, y_label, x, series, *log_y) {
                    Some(svg) => self.push(&svg),
                    None => self.push("<p class=\"note\">No finite values to draw.</p>"),
                }
                self.push("</figure>\n");
            }
            Block::Heatmap {
                title,
                rows,
                columns,
                values,
            } => self.heatmap(title, rows, columns, values),
            Block::Group { title, blocks } => {
                let _ = writeln!(
                    self.out,
                    "<details><summary>{}</summary>",
                    esc(&cut(title, 300))
                );
                for b in blocks {
                    self.block(b);
                }
                self.push("</details>\n");
            }
        }
    }

    fn caption(&mut self, title: &str) {
        if !title.is_empty() {
            let _ = write!(
                self.out,
                "<figcaption>{}</figcaption>",
                esc(&cut(title, 300))
            );
        }
    }

    fn table(&mut self, title: &str, columns: &[String], rows: &[Vec<Value>]) {
        let ncols = columns
            .len()
            .max(rows.iter().map(Vec::len).max().unwrap_or(0));
        let shown_cols = ncols.min(MAX_TABLE_COLUMNS);
        self.push("<figure>");
        self.caption(title);
        self.push("<div class=\"scroll\"><table>\n<thead><tr>");
        for i in 0..shown_cols {
            let _ = write!(
                self.out,
                "<th>{}</th>",
                esc(&cut(columns.get(i).map_or("", String::as_str), 200))
            );
        }
        self.push("</tr></thead>\n<tbody>\n");
        for row in rows.iter().take(MAX_TABLE_ROWS) {
            self.push("<tr>");
            for i in 0..shown_cols {
                match row.get(i) {
                    Some(v @ Value::Number(_)) => {
                        let _ =
                            write!(self.out, "<td class=\"num\">{}</td>", esc(&format::cell(v)));
                    }
                    Some(v) => {
                        let _ = write!(self.out, "<td>{}</td>", esc(&cut(&format::cell(v), 1000)));
                    }
                    None => self.push("<td></td>"),
                }
            }
            self.push("</tr>\n");
        }
        self.push("</tbody>\n</table></div>");
        let mut notes = Vec::new();
        if rows.len() > MAX_TABLE_ROWS {
            notes.push(format!(
                "{} more rows not shown ({} in all).",
                rows.len() - MAX_TABLE_ROWS,
                rows.len()
            ));
        }
        if ncols > shown_cols {
            notes.push(format!("{} more columns not shown.", ncols - shown_cols));
        }
        if !notes.is_empty() {
            let _ = write!(self.out, "<p class=\"note\">{}</p>", notes.join(" "));
        }
        self.push("</figure>\n");
    }

    fn heatmap(&mut self, title: &str, rows: &[String], columns: &[String], values: &[Vec<f64>]) {
        let nr = values.len().min(MAX_HEATMAP);
        let nc = values
            .iter()
            .map(Vec::len)
            .max()
            .unwrap_or(0)
            .min(MAX_HEATMAP);
        let finite = values
            .iter()
            .take(nr)
            .flat_map(|r| r.iter().take(nc))
            .copied()
            .filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
        // Signed values (correlations) diverge from zero; others scale lo..hi.
        let diverging = lo < 0.0;
        let max_abs = lo.abs().max(hi.abs());
        let shade = |v: f64| -> Option<(u8, u8, u8, f64)> {
            if !v.is_finite() {
                return None;
            }
            let (t, rgb) = if diverging {
                let t = if max_abs > 0.0 {
                    v.abs() / max_abs
                } else {
                    0.0
                };
                (
                    t,
                    if v < 0.0 {
                        (213.0, 94.0, 0.0)
                    } else {
                        (0.0, 114.0, 178.0)
                    },
                )
            } else {
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                (t, (0.0, 114.0, 178.0))
            };
            let mix = |c: f64| (255.0 + (c - 255.0) * t * 0.9).round() as u8;
            Some((mix(rgb.0), mix(rgb.1), mix(rgb.2), t))
        };
        self.push("<figure>");
        self.caption(title);
        self.push("<div class=\"scroll\"><table class=\"heat\">\n<thead><tr><th></th>");
        for i in 0..nc {
            let _ = write!(
                self.out,
                "<th>{}</th>",
                esc(&cut(columns.get(i).map_or("", String::as_str), 40))
            );
        }
        self.push("</tr></thead>\n<tbody>\n");
        for (r, row) in values.iter().take(nr).enumerate() {
            let _ = write!(
                self.out,
                "<tr><th>{}</th>",
                esc(&cut(rows.get(r).map_or("", String::as_str), 40))
            );
            for c in 0..nc {
                match row.get(c).copied().and_then(|v| shade(v).map(|s| (v, s))) {
                    Some((v, (red, green, blue, t))) => {
                        let _ = write!(
                            self.out,
                            "<td class=\"num\" style=\"background:rgb({red},{green},{blue});color:{}\">{}</td>",
                            if t > 0.55 { "#fff" } else { "#1d2430" },
                            general(v)
                        );
                    }
                    None => {
                        let _ = write!(self.out, "<td class=\"num\">{MISSING}</td>");
                    }
                }
            }
            self.push("</tr>\n");
        }
        self.push("</tbody>\n</table></div>");
        if values.len() > nr || values.iter().any(|r| r.len() > nc) {
            let _ = write!(
                self.out,
                "<p class=\"note\">Only the first {MAX_HEATMAP} rows and columns are shown.</p>"
            );
        }
        self.push("</figure>\n");
    }
}

/// Every element type the renderer writes. Anything else in a rendered page
/// was injected (the browser tests check this).
pub const ELEMENTS: &[&str] = &[
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "header",
    "footer",
    "h1",
    "h2",
    "h3",
    "h4",
    "p",
    "nav",
    "ol",
    "ul",
    "li",
    "a",
    "span",
    "section",
    "div",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "code",
    "b",
    "details",
    "summary",
    "pre",
    "figure",
    "figcaption",
    "svg",
    "rect",
    "text",
    "line",
    "path",
    "circle",
];
