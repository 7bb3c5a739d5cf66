//! Unit tests of the report: escaping of every field that comes from data,
//! page structure, size caps, the stage's files and summary.

use super::*;
use crate::testing::ctx;
use gigo_pipeline::summary::{Block, Section, Series, Severity};
use serde_json::json;

const SCRIPT: &str = "<script>alert(1)</script>";
const IMG: &str = "\"><img src=x onerror=alert(1)>";
const QUOTES: &str = "&'\"";

fn hostile(i: usize) -> String {
    [SCRIPT, IMG, QUOTES][i % 3].to_string()
}

/// A section using every block type, whose every string is `h(i)`.
fn section_of(h: fn(usize) -> String) -> Section {
    let mut s = Section::new(&h(0), &h(1), &h(2));
    s.figure(&h(0), h(1), "int");
    s.figure(&h(1), json!(0.5), &h(2));
    s.metric(&h(0), 0.1);
    s.metric(&h(1), json!({ h(2): 0.2, h(0): null }));
    s.alert(Severity::Error, &h(0), Some(&h(1)), h(2))
        .with(&h(0), h(1))
        .with(&h(2), json!({ h(1): [h(0)] }));
    s.alert(Severity::Info, &h(1), None, h(0));
    let series = |k: usize| Series {
        name: h(k),
        values: vec![Some(1.0), None, Some(3.0)],
    };
    let blocks = vec![
        Block::Text { text: h(0) },
        Block::Table {
            title: h(1),
            columns: vec![h(0), h(1), h(2)],
            rows: vec![vec![json!(h(0)), json!(h(1)), json!({ h(2): h(0) })]],
        },
        Block::Bars {
            title: h(2),
            labels: vec![h(0), h(1), h(2)],
            series: vec![series(0), series(1)],
        },
        Block::Histogram {
            title: h(0),
            edges: vec![0.0, 1.0, 2.0],
            counts: vec![3, 4],
        },
        Block::Lines {
            title: h(1),
            x_label: h(2),
            y_label: h(0),
            x: vec![1.0, 2.0, 3.0],
            series: vec![series(1), series(2)],
            log_y: true,
        },
        Block::Heatmap {
            title: h(2),
            rows: vec![h(0), h(1)],
            columns: vec![h(1), h(2)],
            values: vec![vec![1.0, -1.0], vec![f64::NAN, 0.0]],
        },
    ];
    s.block(Block::Group {
        title: h(0),
        blocks: blocks.clone(),
    });
    for b in blocks {
        s.block(b);
    }
    s
}

fn hostile_doc() -> ReportDoc {
    let summaries = vec![
        section_of(hostile).into_summary(json!({})),
        json!({ SCRIPT: IMG, "n": 1 }),
    ];
    let mut doc = ReportDoc::new(&format!("{SCRIPT}{IMG}{QUOTES}"), &summaries);
    let gates = parse_gates(
        &[
            (format!("max_{SCRIPT}"), json!(0.01)),
            (format!("min_{IMG}"), json!({ QUOTES: 0.5, SCRIPT: 0.0 })),
        ]
        .into(),
    )
    .unwrap();
    doc.apply_gates(&gates).unwrap();
    doc
}

/// Tags the renderer writes, and their attributes. Anything else in the page
/// came from data and escaped nothing.
const TAGS: &[&str] = super::html::ELEMENTS;
const ATTRS: &[&str] = &[
    "lang",
    "charset",
    "http-equiv",
    "content",
    "name",
    "class",
    "id",
    "href",
    "xmlns",
    "viewBox",
    "width",
    "height",
    "role",
    "aria-label",
    "x",
    "y",
    "x1",
    "x2",
    "y1",
    "y2",
    "d",
    "fill",
    "stroke",
    "stroke-width",
    "text-anchor",
    "transform",
    "cx",
    "cy",
    "r",
    "style",
];

/// Checks every tag of `html`: a known name, known attributes, every value
/// double-quoted. Returns the number of tags seen.
fn check_markup(html: &str) -> usize {
    let body = html
        .strip_prefix("<!DOCTYPE html>")
        .expect("starts with the doctype");
    // The style sheet is ours and has no tags.
    let (before, rest) = body.split_once("<style>").unwrap();
    let (css, after) = rest.split_once("</style>").unwrap();
    assert!(!css.contains('<'));
    let mut count = 0;
    for part in [before, after] {
        let mut rest = part;
        while let Some(start) = rest.find('<') {
            let tag_and_more = &rest[start + 1..];
            let end = tag_and_more
                .find('>')
                .expect("every `<` opens a tag that closes");
            let tag = &tag_and_more[..end];
            rest = &tag_and_more[end + 1..];
            count += 1;
            let tag = tag.strip_prefix('/').unwrap_or(tag);
            let tag = tag.strip_suffix('/').unwrap_or(tag);
            let name_end = tag.find(' ').unwrap_or(tag.len());
            let name = &tag[..name_end];
            assert!(TAGS.contains(&name), "unexpected tag <{name}> in: <{tag}>");
            let mut attrs = tag[name_end..].trim_start();
            while !attrs.is_empty() {
                let (attr, after_eq) = attrs
                    .split_once("=\"")
                    .unwrap_or_else(|| panic!("unquoted attribute in <{tag}>"));
                assert!(
                    ATTRS.contains(&attr),
                    "unexpected attribute `{attr}` in <{tag}>"
                );
                let (_value, next) = after_eq.split_once('"').expect("closing quote");
                attrs = next.trim_start();
            }
        }
    }
    count
}

#[test]
fn every_string_from_data_is_escaped_in_html() {
    let html = render_html(&hostile_doc());
    let tags = check_markup(&html);
    assert!(tags > 100, "{tags}");
    for raw in ["<script", "<img", "<SCRIPT"] {
        assert!(!html.contains(raw), "raw {raw} survived");
    }
    // The hostile text is there, as text.
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&amp;&#39;&quot;"));
    // ... in the title, a heading, an SVG label, a table header, a gate row.
    assert!(html.contains("<title>&lt;script&gt;"));
    assert!(html.contains("<h2>&amp;&#39;&quot;</h2>"));
    assert!(html.contains("<th>&lt;script&gt;alert(1)&lt;/script&gt;</th>"));
    assert!(html.contains("<code>max_&lt;script&gt;alert(1)&lt;/script&gt;</code>"));
    assert!(html.contains(r#"aria-label="&quot;&gt;&lt;img"#));
}

#[test]
fn the_page_is_self_contained() {
    let plain = section_of(|i| format!("name {i}"));
    let html = render_html(&ReportDoc::new("plain", &[plain.into_summary(json!({}))]));
    check_markup(&html);
    assert!(html.contains(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
    )));
    assert!(CSP.starts_with("default-src 'none'; style-src 'unsafe-inline'; img-src data:"));
    // No script of ours, nothing fetched: the only URL is SVG's namespace.
    for s in [
        "<script", "src=", "url(", "@import", "<link", "<iframe", "<object",
    ] {
        assert!(!html.contains(s), "{s}");
    }
    let urls: Vec<_> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..i + 26])
        .collect();
    assert!(
        urls.iter()
            .all(|u| u.starts_with("http-equiv") || u.starts_with("http://www.w3.org/2000/svg")),
        "{urls:?}"
    );
}

#[test]
fn markdown_cannot_inject_html_or_break_tables() {
    let md = render_markdown(&hostile_doc());
    assert!(!md.contains('<'), "{md}");
    assert!(md.contains("&lt;script&gt;"));
    // Every table row keeps its number of cells: no unescaped `|` from data.
    for line in md.lines().filter(|l| l.starts_with('|')) {
        let cells = line.replace("\\|", "").matches('|').count();
        assert!(cells == 7 || cells == 3, "{line}");
    }
    assert!(md.contains("## Quality gates: ❌"), "{md}");
}

#[test]
fn alerts_are_sorted_by_severity_with_their_evidence() {
    let mut s = Section::new("p", "profile", "P");
    s.alert(Severity::Info, "i", None, "first info");
    s.alert(Severity::Warning, "w", None, "a warning");
    s.alert(Severity::Error, "e", Some("age"), "an error")
        .with("rate", 0.25)
        .with("rows", 12);
    let html = render_html(&ReportDoc::new("T", &[s.into_summary(json!({}))]));
    let pos = |t: &str| html.find(t).unwrap();
    assert!(pos("an error") < pos("a warning") && pos("a warning") < pos("first info"));
    assert!(html.contains("rate = 0.25 · rows = 12"), "{html}");
    assert!(html.contains("column <b>age</b>"));
}

#[test]
fn figures_use_their_format_and_missing_numbers_show_a_dash() {
    let mut s = Section::new("p", "profile", "P");
    s.figure("rows", 1234567, "int");
    s.figure("dup", 0.0213, "pct");
    s.figure("time", 2.5, "seconds");
    s.figure("nan", serde_json::to_value(f64::NAN).unwrap(), "float");
    let doc = ReportDoc::new("T", &[s.into_summary(json!({}))]);
    let html = render_html(&doc);
    for v in [
        "1,234,567",
        "2.13%",
        "2.5 s",
        "<div class=\"value\">—</div>",
    ] {
        assert!(html.contains(v), "{v}");
    }
    let md = render_markdown(&doc);
    assert!(
        md.contains("| rows | 1,234,567 |") && md.contains("| nan | — |"),
        "{md}"
    );
}

#[test]
fn a_large_profile_gives_a_small_page() {
    // A profile of a wide, big table: 200 columns, each with a histogram of
    // 1000 bins, 500 top values and stats; plus a table of 100k rows.
    let mut s = Section::new("profile", "profile", "Profile");
    s.figure("rows", 1_000_000, "int");
    let rows: Vec<Vec<Value>> = (0..100_000)
        .map(|i| vec![json!(i), json!(format!("value {i}")), json!(i as f64 / 7.0)])
        .collect();
    s.block(Block::table("rows", &["id", "name", "x"], rows));
    for c in 0..200 {
        let edges: Vec<f64> = (0..=1000).map(|i| i as f64 / 10.0).collect();
        s.block(Block::Group {
            title: format!("column {c}"),
            blocks: vec![
                Block::Histogram {
                    title: "distribution".into(),
                    edges,
                    counts: vec![1000; 1000],
                },
                Block::bars(
                    "top values",
                    (0..500).map(|i| format!("v{i}")).collect(),
                    "rows",
                    vec![3.0; 500],
                ),
                Block::table(
                    "stats",
                    &["stat", "value"],
                    vec![vec![json!("mean"), json!(1.5)]; 20],
                ),
            ],
        });
    }
    let doc = ReportDoc::new("Big", &[s.into_summary(json!({}))]);
    let html = render_html(&doc);
    assert!(html.len() < 2_000_000, "{} bytes", html.len());
    assert!(html.contains(&format!(
        "{} more rows not shown (100000 in all)",
        100_000 - MAX_TABLE_ROWS
    )));
    assert!(html.contains("440 more categories not shown"));
    assert!(html.contains("The page reached its size limit"));
    assert!(html.contains("column 0") && html.ends_with("</html>\n"));
    check_markup(&html);
    assert!(render_markdown(&doc).len() < 10_000);
}

#[test]
fn the_stage_writes_three_files_and_reports_gates_in_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let c = ctx("report", 0, dir.path());
    let mut s = Section::new("prof", "profile", "Profile");
    s.metric("duplicate_rate", 0.03);
    s.metric("null_rate", json!({"age": 0.01, "zip": 0.2}));
    let mut inputs = Inputs::default();
    inputs.push(
        "summaries",
        Artifact::Summary(s.into_summary(json!({})).into()),
    );
    inputs.push_from(
        "summaries",
        "split.summary",
        Artifact::Summary(json!({"rows": 3}).into()),
    );
    let build = |params: Value| ReportParams::deserialize(params).unwrap().check().unwrap();
    let stage = build(
        json!({"gates": {"max_duplicate_rate": 0.01, "max_null_rate": {"age": 0.05}}, "dir": "{run}/reports/"}),
    );
    let out = stage.run(&inputs, &c).unwrap();
    let targets: Vec<&str> = out.published.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        targets,
        [
            "{run}/reports/report.html",
            "{run}/reports/report.json",
            "{run}/reports/report.md"
        ]
    );
    let gates = out.summary["gates"].as_array().unwrap();
    assert_eq!(gates.len(), 2);
    assert_eq!(gates[0]["name"], "max_duplicate_rate");
    assert_eq!(gates[0]["passed"], false);
    assert_eq!(gates[0]["stage"], "prof");
    assert_eq!(gates[1]["key"], "age");
    assert_eq!(gates[1]["passed"], true);
    assert_eq!(out.summary["gates_failed"], 1);
    assert_eq!(out.summary["other_summaries"], 1);
    let json: Value =
        serde_json::from_str(&fs::read_to_string(&out.published[1].1).unwrap()).unwrap();
    assert_eq!(json["gates"], out.summary["gates"]);
    let html = fs::read_to_string(&out.published[0].1).unwrap();
    assert!(html.contains("1 of 2 gate check(s) failed"));
    // a summary without a section is named by the output it came from
    assert!(html.contains("<summary>split.summary <span"), "{html}");
    assert_eq!(json["other_summaries"][0]["source"], "split.summary");
    let md = fs::read_to_string(&out.published[2].1).unwrap();
    assert!(
        md.contains("| ❌ | max\\_duplicate\\_rate | prof |  | 0.03 | 0.01 |"),
        "{md}"
    );
    // Same inputs, same bytes.
    let again = stage.run(&inputs, &c).unwrap();
    for (a, b) in out.published.iter().zip(&again.published) {
        assert_eq!(fs::read(&a.1).unwrap(), fs::read(&b.1).unwrap());
    }
    // A gate on a metric nobody reports fails the stage, naming what exists.
    let err = build(json!({"gates": {"min_robust_auc": 0.7}}))
        .run(&inputs, &c)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        "1 gate(s) cannot be tested: gate `min_robust_auc`: no input reports metric `robust_auc`; \
         metrics reported: duplicate_rate (prof), null_rate (prof)"
    );
}

#[test]
fn bad_params_are_reported_all_at_once() {
    let mut r = Registry::new();
    register(&mut r);
    let errs = r
        .get("report")
        .unwrap()
        .build(&json!({"dir": " ", "gates": {"duplicate_rate": 0.1, "max_x": "a"}, "titel": "x"}))
        .err()
        .unwrap();
    let text: Vec<String> = errs
        .iter()
        .map(|p| format!("{}: {}", p.path.join("."), p.message))
        .collect();
    assert_eq!(errs.len(), 4, "{text:#?}");
    assert!(text[0].starts_with("titel: unknown parameter"), "{text:?}");
    assert_eq!(errs[0].help.as_deref(), Some("did you mean `title`?"));
    assert!(text.iter().any(|t| t.starts_with("dir: must not be empty")));
    assert!(
        text.iter()
            .any(|t| t.starts_with("gates.duplicate_rate: gate `duplicate_rate` must be named"))
    );
    assert!(
        text.iter()
            .any(|t| t.starts_with("gates.max_x: gate `max_x` needs a number"))
    );
    assert!(r.get("report").unwrap().build(&json!({})).is_ok());
}

#[test]
fn failed_gates_lead_the_html_and_many_passed_checks_fold_away() {
    let mut s = Section::new("p", "profile", "P");
    let rates: serde_json::Map<String, Value> = (0..30)
        .map(|i| (format!("c{i}"), json!(i as f64 / 100.0)))
        .collect();
    s.metric("null_rate", Value::Object(rates));
    let mut doc = ReportDoc::new("T", &[s.into_summary(json!({}))]);
    let gates = parse_gates(&[("max_null_rate".to_string(), json!(0.285))].into()).unwrap();
    doc.apply_gates(&gates).unwrap();
    let html = render_html(&doc);
    assert!(html.contains("1 of 30 gate check(s) failed"));
    let folded = html
        .find("<details><summary>29 passed check(s)</summary>")
        .unwrap();
    let failed_row = html.find("<tr class=\"fail\">").unwrap();
    assert!(failed_row < folded);
    assert!(
        html[failed_row..].contains("null_rate[c29] of stage `p` is 0.29, above the maximum 0.285")
    );
    assert_eq!(html.matches("<tr class=\"pass\">").count(), 29);
}
