//! The `report` stage end to end: pipelines through the `gigo` binary whose
//! `report.html` is opened in headless Chromium (no console errors, no
//! fetches, the expected headings), hostile strings that must execute
//! nothing, and quality gates deciding the exit code.

use std::path::Path;

use crate::common::browser::{Rendered, render};
use crate::common::*;
use gigo_pipeline::summary::{Block, Section, Series, Severity};
use gigo_stages::report::{CSP, ReportDoc, esc, parse_gates, render_html};
use serde_json::{Value, json};

/// Tags the report writes. An element of any other type in the rendered DOM
/// was injected.
const OUR_TAGS: &[&str] = gigo_stages::report::ELEMENTS;

/// Every element of a DOM serialised by Chromium, with its attribute names.
/// In a serialisation, text has `<` escaped and attribute values are
/// double-quoted (with `"` escaped), so every other `<` opens a tag.
fn elements(dom: &str) -> Vec<(String, Vec<String>)> {
    let b = dom.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(off) = dom[i..].find('<') {
        i += off + 1;
        if matches!(b.get(i), Some(b'/') | Some(b'!')) {
            i += dom[i..].find('>').expect("tag closes") + 1;
            continue;
        }
        let name_len = dom[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .expect("tag name ends");
        let name = dom[i..i + name_len].to_ascii_lowercase();
        i += name_len;
        let mut attrs = Vec::new();
        loop {
            while b[i].is_ascii_whitespace() {
                i += 1;
            }
            match b[i] {
                b'>' => {
                    i += 1;
                    break;
                }
                b'/' => {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            let len = dom[i..]
                .find(|c: char| c.is_ascii_whitespace() || c == '=' || c == '>' || c == '/')
                .expect("attribute name ends");
            attrs.push(dom[i..i + len].to_ascii_lowercase());
            i += len;
            if b[i] == b'=' {
                assert_eq!(b[i + 1], b'"', "unquoted attribute value in the DOM");
                i += 2;
                i += dom[i..].find('"').expect("closing quote") + 1;
            }
        }
        out.push((name, attrs));
    }
    out
}

/// No element or event-handler attribute that the report does not write.
fn assert_nothing_injected(r: &Rendered) {
    let els = elements(&r.dom);
    assert!(els.len() > 20, "too few elements: {}", r.dom);
    for (tag, attrs) in &els {
        assert!(
            OUR_TAGS.contains(&tag.as_str()),
            "injected <{tag} {attrs:?}>"
        );
        assert!(
            attrs.iter().all(|a| !a.starts_with("on")),
            "event handler on <{tag}>: {attrs:?}"
        );
        if tag == "a" {
            assert_eq!(attrs, &["href"], "links are ours: {attrs:?}");
        }
    }
    assert!(!r.dom.contains("javascript:\""), "no javascript: URL");
}

fn assert_clean(r: &Rendered, what: &str) {
    assert!(
        r.console.is_empty(),
        "{what}: console messages {:#?}",
        r.console
    );
    assert!(
        r.fetched.is_empty(),
        "{what}: the page fetched {:?}",
        r.fetched
    );
}

/// The `<title>` of a serialised DOM.
fn dom_title(dom: &str) -> &str {
    let start = dom.find("<title>").expect("a title") + "<title>".len();
    let end = dom[start..].find("</title>").expect("title closes");
    &dom[start..start + end]
}

fn run_pipeline(dir: &Path, yaml: &str, run_id: &str) -> std::process::Output {
    let p = write(dir, "p.yaml", yaml);
    gigo(dir, &["run", &p, "--run-id", run_id])
}

fn read(dir: &Path, run_id: &str, file: &str) -> String {
    std::fs::read_to_string(dir.join("runs").join(run_id).join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

const GENERATED: &str = "name: report-test
seed: 7
stages:
  data:
    type: generate
    rows: 2000
    classes: 3
    class_weights: [0.6, 0.3, 0.1]
    outliers: 0.02
    missing: 0.02
    duplicates: 0.03
  split:
    type: split
    inputs: data
  profile:
    type: profile
    inputs: data
";

#[test]
fn the_browser_check_sees_script_errors_csp_violations_and_fetches() {
    // The check is only worth something if it can fail: a page with an
    // error, a console message, a fetch; and one whose CSP blocks a script.
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.html",
        "<!DOCTYPE html><html><head><title>t</title></head><body><p>x</p>\
         <img src=\"http://example.invalid/a.png\"><script>console.log('hello'); document.title = 'RAN'; nope();</script></body></html>",
    );
    let r = render(Path::new(&bad));
    assert_eq!(dom_title(&r.dom), "RAN");
    assert!(
        r.console.iter().any(|m| m.contains("hello")),
        "{:?}",
        r.console
    );
    assert!(
        r.console.iter().any(|m| m.contains("nope is not defined")),
        "{:?}",
        r.console
    );
    assert_eq!(r.fetched, vec!["http://example.invalid/a.png"]);
    let blocked = write(
        dir.path(),
        "csp.html",
        &format!(
            "<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><title>t</title></head>\
             <body><script>document.title = 'RAN'</script><img src=\"http://example.invalid/b.png\"></body></html>"
        ),
    );
    let r = render(Path::new(&blocked));
    assert_eq!(dom_title(&r.dom), "t");
    assert!(
        r.console
            .iter()
            .any(|m| m.contains("Content Security Policy")),
        "{:?}",
        r.console
    );
    assert!(r.fetched.is_empty(), "{:?}", r.fetched);
    assert_eq!(
        r.console.len(),
        2,
        "the script and the image: {:?}",
        r.console
    );
}

#[test]
fn a_profiled_run_gives_a_report_that_renders_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{GENERATED}  report:\n    type: report\n    inputs: [profile.summary, split.summary]\n    title: Generated data\n"
    );
    let o = run_pipeline(dir.path(), &yaml, "r");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: Value = serde_json::from_str(&read(dir.path(), "r", "report.json")).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["title"], "Generated data");
    assert_eq!(json["gates"], json!([]));
    let sections = json["sections"].as_array().unwrap();
    assert_eq!(sections.len(), 1);
    assert_eq!(sections[0]["stage"], "profile");
    assert_eq!(
        json["other_summaries"][0]["input"], 2,
        "split's summary has no section"
    );
    let html_path = dir.path().join("runs/r/report.html");
    let size = std::fs::metadata(&html_path).unwrap().len();
    assert!(size < 2_000_000, "{size} bytes");
    let r = render(&html_path);
    assert_clean(&r, "report.html");
    assert_nothing_injected(&r);
    assert_eq!(dom_title(&r.dom), "Generated data");
    for heading in [
        "<h1>Generated data</h1>".to_string(),
        "<h2>Contents</h2>".into(),
        format!("<h2>{}</h2>", esc(sections[0]["title"].as_str().unwrap())),
        "<h2>Other stages</h2>".into(),
    ] {
        assert!(r.dom.contains(&heading), "{heading} missing");
    }
    assert!(r.dom.contains("<svg"), "charts are drawn");
    // The generated garbage shows up as alerts.
    let kinds: Vec<&str> = sections[0]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    assert!(!kinds.is_empty());
    assert!(r.dom.contains("Alerts ("), "alerts are listed");
    let md = read(dir.path(), "r", "report.md");
    assert!(md.starts_with("# Generated data\n"), "{md}");
    assert!(md.contains("**Alerts:**"), "{md}");
}

#[test]
fn summaries_without_a_section_are_listed_by_their_output() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: plumbing\nstages:\n  data:\n    type: generate\n    rows: 200\n  split:\n    type: split\n    inputs: data\n  report:\n    type: report\n    inputs: [data.summary, split.summary]\n";
    let o = run_pipeline(dir.path(), yaml, "r");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: Value = serde_json::from_str(&read(dir.path(), "r", "report.json")).unwrap();
    assert_eq!(json["sections"], json!([]));
    let others = json["other_summaries"].as_array().unwrap();
    assert_eq!(others.len(), 2);
    assert_eq!(
        others[1]["summary"]["stratified"], true,
        "split's own summary"
    );
    let r = render(&dir.path().join("runs/r/report.html"));
    assert_clean(&r, "report.html");
    assert!(r.dom.contains("data.summary") && r.dom.contains("split.summary"));
    assert_eq!(others[1]["source"], "split.summary");
}

const PAYLOADS: &[&str] = &[
    "<script>document.title='PWNED'</script>",
    "\"><img src=x onerror=\"document.title='PWNED'\">",
    "'><svg onload=\"document.title='PWNED'\">",
    "</title></style></details></section><script>document.title='PWNED'</script>",
    "<!-- <iframe src=\"javascript:document.title='PWNED'\">",
    "&lt;script&gt; &amp; ' \" &",
    "<a href=\"javascript:document.title='PWNED'\">click</a>",
    "x\" onmouseover=\"document.title='PWNED'\" data-x=\"",
    "x' onfocus='document.title=1' autofocus='",
];

/// A section using every block type, whose strings cycle through [`PAYLOADS`].
fn hostile_section() -> Section {
    let mut n = 0usize;
    let mut h = || {
        n += 1;
        PAYLOADS[n % PAYLOADS.len()].to_string()
    };
    let mut s = Section::new(&h(), &h(), &h());
    s.figure(&h(), h(), "int");
    s.figure(&h(), 0.25, &h());
    s.metric(&h(), json!({ h(): 0.1, h(): null }));
    s.metric("rate", 0.5);
    let (kind, col, msg, k1, v1, k2) = (h(), h(), h(), h(), h(), h());
    s.alert(Severity::Error, &kind, Some(&col), msg)
        .with(&k1, v1)
        .with(&k2, json!([h(), 1.5]));
    let (kind, msg) = (h(), h());
    s.alert(Severity::Warning, &kind, None, msg);
    let mut blocks = vec![
        Block::Text { text: h() },
        Block::Table {
            title: h(),
            columns: vec![h(), h(), h()],
            rows: vec![vec![json!(h()), json!(1), json!({ h(): h() })]; 3],
        },
        Block::Bars {
            title: h(),
            labels: vec![h(), h(), h()],
            series: vec![
                Series {
                    name: h(),
                    values: vec![Some(1.0), None, Some(2.0)],
                },
                Series {
                    name: h(),
                    values: vec![Some(3.0), Some(-1.0), None],
                },
            ],
        },
        Block::Histogram {
            title: h(),
            edges: vec![0.0, 1.0, 2.0, 3.0],
            counts: vec![4, 9, 2],
        },
        Block::Lines {
            title: h(),
            x_label: h(),
            y_label: h(),
            x: vec![1.0, 2.0, 3.0, 4.0],
            series: vec![
                Series {
                    name: h(),
                    values: vec![Some(1.0), Some(0.5), None, Some(0.1)],
                },
                Series {
                    name: h(),
                    values: vec![Some(2.0), Some(1.0), Some(0.7), Some(0.6)],
                },
            ],
            log_y: true,
        },
        Block::Heatmap {
            title: h(),
            rows: vec![h(), h()],
            columns: vec![h(), h()],
            values: vec![vec![0.9, -0.2], vec![f64::NAN, 1.0]],
        },
    ];
    blocks.push(Block::Group {
        title: h(),
        blocks: blocks.clone(),
    });
    for b in blocks {
        s.block(b);
    }
    s
}

#[test]
fn hostile_strings_in_any_section_field_execute_nothing() {
    let summaries = vec![
        hostile_section().into_summary(json!({})),
        json!({ PAYLOADS[0]: PAYLOADS[1], "nested": { PAYLOADS[2]: [PAYLOADS[3]] } }),
    ];
    let mut doc = ReportDoc::new("XSS probe", &summaries);
    let gates = parse_gates(&[("max_rate".to_string(), json!(0.1))].into()).unwrap();
    doc.apply_gates(&gates).unwrap();
    let html = render_html(&doc);
    let dir = tempfile::tempdir().unwrap();
    let with_csp = dir.path().join("with_csp.html");
    std::fs::write(&with_csp, &html).unwrap();
    // Escaping must hold on its own: the same page without its CSP.
    let csp_tag = format!("<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">");
    assert!(html.contains(&csp_tag));
    let without_csp = dir.path().join("without_csp.html");
    std::fs::write(&without_csp, html.replace(&csp_tag, "")).unwrap();
    for page in [&with_csp, &without_csp] {
        let r = render(page);
        // With the CSP, an injected script or handler would be a console
        // violation; without it, it would run and retitle the page.
        assert_clean(&r, &page.display().to_string());
        assert_eq!(dom_title(&r.dom), "XSS probe");
        assert_nothing_injected(&r);
        // The hostile text is on the page, as text.
        for text in [
            "&lt;script&gt;document.title='PWNED'&lt;/script&gt;",
            "\"&gt;&lt;img src=x onerror=\"document.title='PWNED'\"&gt;",
            "&amp;lt;script&amp;gt; &amp;amp; ' \" &amp;",
        ] {
            assert!(r.dom.contains(text), "{text} is not shown as text");
        }
    }
}

#[cfg(feature = "polars")]
#[test]
fn hostile_column_names_and_categories_from_a_csv_execute_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let header = [
        "<script>document.title='PWNED'</script>",
        "\"><img src=x onerror=alert(1)>",
        "label",
    ];
    let cats = [
        "<script>document.title='PWNED'</script>",
        "\"><img src=x onerror=alert(1)>",
        "a|b`c`",
    ];
    let mut csv = header
        .iter()
        .map(|h| quote(h))
        .collect::<Vec<_>>()
        .join(",")
        + "\n";
    for i in 0..120 {
        csv.push_str(&format!(
            "{},{},{}\n",
            (i * 37 % 101) as f64 / 10.0,
            quote(cats[i % 3]),
            quote(cats[(i / 3) % 3])
        ));
    }
    write(dir.path(), "data.csv", &csv);
    let yaml = "name: hostile\nstages:\n  raw:\n    type: ingest\n    path: data.csv\n    label: label\n  profile:\n    type: profile\n    inputs: raw\n  report:\n    type: report\n    inputs: [profile.summary, raw.summary]\n    title: \"<script>document.title='PWNED'</script>\"\n";
    let o = run_pipeline(dir.path(), yaml, "r");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = render(&dir.path().join("runs/r/report.html"));
    assert_clean(&r, "report.html");
    assert_nothing_injected(&r);
    assert_eq!(
        dom_title(&r.dom),
        "&lt;script&gt;document.title='PWNED'&lt;/script&gt;",
        "the title is the escaped text, not PWNED"
    );
    assert!(r.dom.contains("&gt;&lt;img src=x onerror=alert(1)&gt;"));
    let md = read(dir.path(), "r", "report.md");
    assert!(!md.contains('<'), "{md}");
}

fn gate_pipeline(gates: &str) -> String {
    format!(
        "{GENERATED}  report:\n    type: report\n    inputs: [profile.summary]\n    gates:\n{gates}"
    )
}

#[test]
fn a_failed_gate_exits_3_and_is_listed_in_all_three_reports() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_pipeline(
        dir.path(),
        &gate_pipeline("      max_duplicate_rate: 0.001\n      max_null_rate: 0.9\n"),
        "r",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("gate failed (report): duplicate_rate of stage `profile` is"),
        "{}",
        stderr(&o)
    );
    let json: Value = serde_json::from_str(&read(dir.path(), "r", "report.json")).unwrap();
    let gates = json["gates"].as_array().unwrap();
    let failed: Vec<&Value> = gates.iter().filter(|g| g["passed"] == false).collect();
    assert_eq!(failed.len(), 1, "{gates:?}");
    assert_eq!(failed[0]["name"], "max_duplicate_rate");
    assert_eq!(failed[0]["stage"], "profile");
    assert_eq!(failed[0]["threshold"], 0.001);
    assert!(failed[0]["value"].as_f64().unwrap() > 0.001);
    // max_null_rate: one check per column, all passed.
    assert!(
        gates
            .iter()
            .filter(|g| g["name"] == "max_null_rate")
            .count()
            > 5
    );
    let md = read(dir.path(), "r", "report.md");
    assert!(md.contains("## Quality gates: ❌ 1 of"), "{md}");
    assert!(
        md.contains("| ❌ | max\\_duplicate\\_rate | profile |"),
        "{md}"
    );
    let html_path = dir.path().join("runs/r/report.html");
    let r = render(&html_path);
    assert_clean(&r, "report.html");
    assert!(r.dom.contains("<h2>Quality gates</h2>"));
    assert!(r.dom.contains("<tr class=\"fail\">"));
    assert!(r.dom.contains("<code>max_duplicate_rate</code>"));
    // The gate table comes before the sections.
    assert!(r.dom.find("Quality gates</h2>") < r.dom.find("id=\"s1\""));
}

#[test]
fn passing_gates_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let o = run_pipeline(
        dir.path(),
        &gate_pipeline("      max_duplicate_rate: 0.5\n      max_null_rate: {x0: 0.5}\n"),
        "r",
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let json: Value = serde_json::from_str(&read(dir.path(), "r", "report.json")).unwrap();
    let gates = json["gates"].as_array().unwrap();
    assert_eq!(gates.len(), 2);
    assert!(gates.iter().all(|g| g["passed"] == true));
    assert_eq!(gates[1]["key"], "x0");
    assert!(read(dir.path(), "r", "report.md").contains("✅ all 2 check(s) passed"));
}

#[test]
fn a_gate_no_input_can_report_is_invalid_and_one_this_run_lacks_fails_the_run() {
    let dir = tempfile::tempdir().unwrap();
    // A metric no input declares: `gigo validate` refuses it, at the gate's line.
    let p = write(
        dir.path(),
        "typo.yaml",
        &gate_pipeline("      max_duplicat_rate: 0.1\n"),
    );
    let o = gigo(dir.path(), &["validate", &p]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("gate `max_duplicat_rate`: no input can report metric `duplicat_rate` (did you mean `max_duplicate_rate`?)")
            && err.contains("metrics the inputs can report: ")
            && err.contains("duplicate_rate (profile)")
            && err.contains("typo.yaml:22"),
        "{err}"
    );
    // A metric profile reports only with a reference input: valid, but this
    // run has none, so the run fails rather than the gate passing unseen.
    let o = run_pipeline(
        dir.path(),
        &gate_pipeline("      max_drift_share: 0.1\n"),
        "r",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("gate `max_drift_share`: no input reports metric `drift_share`")
            && err.contains("metrics reported: ")
            && err.contains("duplicate_rate (profile)"),
        "{err}"
    );
    let o = run_pipeline(
        dir.path(),
        &gate_pipeline("      max_null_rate: {no_such_column: 0.1}\n"),
        "r2",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("has no key `no_such_column`"),
        "{}",
        stderr(&o)
    );
    let p = write(
        dir.path(),
        "p.yaml",
        &gate_pipeline("      duplicate_rate: high\n"),
    );
    let o = gigo(dir.path(), &["validate", &p]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("must be named `max_<metric>` or `min_<metric>`"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("needs a number or a map of numbers"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn reports_are_the_same_bytes_on_every_run_and_republished_from_the_cache() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let yaml = format!(
        "{GENERATED}  report:\n    type: report\n    inputs: [profile.summary, split.summary]\n    dir: \"{{run}}/reports\"\n"
    );
    for (dir, id) in [(&a, "one"), (&b, "one"), (&a, "two")] {
        let o = run_pipeline(dir.path(), &yaml, id);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let rec = run_record(a.path(), "two");
    assert_eq!(rec["stages"]["report"]["status"], "cached");
    for f in ["report.html", "report.json", "report.md"] {
        let one = read(a.path(), "one", &format!("reports/{f}"));
        assert_eq!(
            one,
            read(b.path(), "one", &format!("reports/{f}")),
            "{f} differs between runs"
        );
        assert_eq!(
            one,
            read(a.path(), "two", &format!("reports/{f}")),
            "{f} not republished on a cache hit"
        );
    }
}
