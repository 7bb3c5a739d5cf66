//! `gigo validate`: every kind of invalid pipeline, with its exact message and
//! location, all problems in one go, exit code 2; plus graph, stages, schema.

use crate::common::*;

/// Validates `yaml` and returns (exit code, stderr).
fn validate(yaml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "p.yaml", yaml);
    let o = gigo(dir.path(), &["validate", &p]);
    (o.status.code(), stderr(&o).replace(&p, "p.yaml"))
}

fn assert_invalid(yaml: &str, expected: &[&str]) {
    let (code, err) = validate(yaml);
    assert_eq!(code, Some(2), "{err}");
    for e in expected {
        assert!(err.contains(e), "expected `{e}` in:\n{err}");
    }
    let count = err.matches(": error").count();
    assert_eq!(
        count,
        expected.len(),
        "exactly the expected problems:\n{err}"
    );
}

#[test]
fn yaml_syntax_error() {
    assert_invalid(
        "name: x\nstages:\n  a: {type: split\n",
        &[
            "p.yaml:4:1: error: YAML syntax error: while parsing a flow mapping, did not find expected ',' or '}'",
        ],
    );
}

#[test]
fn unknown_stage_type_suggests() {
    let (_, err) = validate("name: x\nstages:\n  a:\n    type: generat\n");
    assert!(
        err.contains("p.yaml:4:11: error in stage `a`: unknown stage type `generat`"),
        "{err}"
    );
    assert!(err.contains("= help: did you mean `generate`?"), "{err}");
    assert!(
        err.contains(" 4 |     type: generat\n   |           ^"),
        "caret under the value:\n{err}"
    );
}

#[test]
fn unknown_and_ill_typed_parameters_together() {
    assert_invalid(
        "name: x\nstages:\n  a:\n    type: generate\n    rowz: 10\n    classes: three\n",
        &[
            "p.yaml:5:5: error in stage `a`: unknown parameter `rowz` for stage type `generate`",
            "p.yaml:6:5: error in stage `a`: parameter `classes`: invalid type: string \"three\", expected usize",
        ],
    );
}

#[test]
fn missing_input_unknown_stage_and_unknown_port() {
    assert_invalid(
        "name: x\nstages:\n  d: {type: generate}\n  s1: {type: split}\n  s2: {type: split, inputs: dd}\n  s3: {type: split, inputs: d.tabel}\n",
        &[
            "p.yaml:4:3: error in stage `s1`: missing input: port `table` (table) is not connected",
            "p.yaml:5:29: error in stage `s2`: input `dd` names no stage",
            "p.yaml:6:29: error in stage `s3`: stage `d` has no output port `tabel`",
        ],
    );
    let (_, err) =
        validate("name: x\nstages:\n  d: {type: generate}\n  s: {type: split, inputs: d.tabel}\n");
    assert!(err.contains("= help: did you mean `d.table`?"), "{err}");
}

#[test]
fn port_kind_mismatch() {
    assert_invalid(
        "name: x\nstages:\n  d: {type: generate}\n  s: {type: split, inputs: d.summary}\n",
        &[
            "p.yaml:4:28: error in stage `s`: input port `table` expects a table, but `d.summary` is a summary",
        ],
    );
}

#[test]
fn unknown_input_port_and_too_many_inputs() {
    assert_invalid(
        "name: x\nstages:\n  d: {type: generate}\n  s: {type: split, inputs: {tabel: d}}\n  t: {type: split, inputs: [d, d]}\n",
        &[
            "p.yaml:4:29: error in stage `s`: stage type `split` has no input port `tabel`",
            "p.yaml:5:32: error in stage `t`: too many inputs: stage type `split` takes 1 (table)",
        ],
    );
}

#[test]
fn duplicate_stage_ids() {
    assert_invalid(
        "name: x\nstages:\n  a: {type: generate}\n  a: {type: generate}\n",
        &["p.yaml:4:3: error: duplicate stage id `a` (first defined at line 3)"],
    );
}

#[test]
fn cycles_print_their_path() {
    assert_invalid(
        "name: x\nstages:\n  a: {type: split, inputs: c.train}\n  b: {type: split, inputs: a.train}\n  c: {type: split, inputs: b.train}\n",
        &["p.yaml:3:3: error: cycle in the pipeline: a -> b -> c -> a"],
    );
}

#[test]
fn top_level_problems() {
    assert_invalid(
        "nme: x\nseed: -3\nstages: {}\n",
        &[
            "p.yaml:1:1: error: unknown top-level key `nme`",
            "p.yaml:1:1: error: missing `name`: give the pipeline a name",
            "p.yaml:2:7: error: `seed` must be a non-negative integer, found an integer",
            "p.yaml:3:9: error: `stages` must be a non-empty mapping",
        ],
    );
    assert_invalid("", &["p.yaml:1:1: error: the pipeline file is empty"]);
    assert_invalid(
        "- a\n- b\n",
        &["error: a pipeline must be a mapping with `name`, `seed` and `stages`, found a list"],
    );
}

#[test]
fn stage_param_checks_report_every_problem() {
    assert_invalid(
        "name: x\nstages:\n  d: {type: generate}\n  s: {type: split, inputs: d, test_fraction: 1.5, valid_fraction: -1}\n",
        &[
            "p.yaml:4:31: error in stage `s`: must be in [0, 1), got 1.5",
            "p.yaml:4:51: error in stage `s`: must be in [0, 1), got -1",
        ],
    );
}

#[test]
fn overrides_are_typed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "p.yaml",
        "name: x\nstages:\n  d: {type: generate}\n  s: {type: split, inputs: d}\n",
    );
    let o = gigo(
        dir.path(),
        &[
            "validate",
            &p,
            "--set",
            "s.test_fraction=0.3",
            "--set",
            "seed=7",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = gigo(
        dir.path(),
        &["validate", &p, "--set", "s.test_fraction=abc"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("--set:1:17: error in stage `s`: parameter `test_fraction`: invalid type: string \"abc\", expected f64"), "{err}");
    let o = gigo(
        dir.path(),
        &["validate", &p, "--set", "x.y=1", "--set", "nonsense"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("--set:1:5: error: override `x.y`: there is no stage `x`"),
        "{err}"
    );
    assert!(
        err.contains("--set:2:1: error: override `nonsense` must look like `stage.param=value`"),
        "{err}"
    );
}

#[test]
fn missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = gigo(dir.path(), &["validate", "nope.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read pipeline file nope.yaml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn nasty_inputs_never_panic() {
    let nasty = [
        "\0\0\0",
        "name: [unclosed",
        "name: x\nstages:\n  a: 5\n",
        "name: x\nstages:\n  a: {type: [1, 2]}\n",
        "name: x\nstages:\n  a: {type: generate, inputs: {table: [1]}}\n",
        "name: x\nstages:\n  ? [a, b]\n  : {type: generate}\n",
        "name: x\nseed: 99999999999999999999999\nstages:\n  a: {type: generate}\n",
        "name: x\nstages:\n  a: &x {type: generate}\n  b: *x\n  c: *nope\n",
        "name: x\nstages:\n  a: {type: generate, rows: .nan, label_noise: {rate: .inf}}\n",
        "name: \"\\uD800\"\nstages: {a: {type: split, inputs: a}}\n",
        "---\nname: a\n---\nname: b\n",
        &"name: x\nstages:\n".repeat(1000),
        &format!("name: x\nstages:\n  a: {}\n", "[".repeat(5000)),
    ];
    for (i, yaml) in nasty.iter().enumerate() {
        let (code, err) = validate(yaml);
        assert_eq!(code, Some(2), "case {i}: {err}");
        assert!(!err.contains("panicked"), "case {i}: {err}");
        assert!(err.contains("error"), "case {i}: {err}");
    }
}

#[test]
fn graph_in_three_formats() {
    let dir = tempfile::tempdir().unwrap();
    let qs = root()
        .join("examples/quickstart.yaml")
        .display()
        .to_string();
    let text = stdout(&gigo(dir.path(), &["graph", &qs]));
    assert!(
        text.contains("rebalance [rebalance] <- table: label_noise.table"),
        "{text}"
    );
    let dot = stdout(&gigo(dir.path(), &["graph", &qs, "--format", "dot"]));
    assert!(dot.starts_with("digraph \"quickstart\" {"), "{dot}");
    assert!(
        dot.contains("\"split\" -> \"label_noise\" [label=\"train → table\"];"),
        "{dot}"
    );
    let mermaid = stdout(&gigo(dir.path(), &["graph", &qs, "--format", "mermaid"]));
    assert!(mermaid.starts_with("flowchart LR\n"), "{mermaid}");
    assert!(
        mermaid.contains("data -- \"table → table\" --> profile"),
        "{mermaid}"
    );
}

#[test]
fn stages_lists_types_ports_and_documented_params() {
    let dir = tempfile::tempdir().unwrap();
    let o = gigo(dir.path(), &["stages"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for t in ["generate", "split", "export", "exec"] {
        assert!(text.lines().any(|l| l == t), "{t} missing:\n{text}");
    }
    assert!(
        text.contains(
            "    test_fraction: number = 0.2\n        Fraction of rows for the `test` port."
        ),
        "{text}"
    );
    assert!(
        text.contains("outputs: train (table), valid (table), test (table), summary"),
        "{text}"
    );
    let o = gigo(dir.path(), &["stages", "splt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("did you mean `split`?"));
}

#[test]
fn schema_is_generated_and_matches_the_shipped_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = gigo(dir.path(), &["schema"]);
    assert!(o.status.success());
    let schema: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let variants = schema["properties"]["stages"]["additionalProperties"]["oneOf"]
        .as_array()
        .unwrap();
    let split = variants.iter().find(|v| v["title"] == "split").unwrap();
    assert_eq!(split["properties"]["test_fraction"]["default"], 0.2);
    assert_eq!(split["additionalProperties"], false);
    let shipped = std::fs::read_to_string(root().join("schemas/pipeline.schema.json"))
        .expect("schemas/pipeline.schema.json is shipped");
    let shipped: serde_json::Value = serde_json::from_str(&shipped).unwrap();
    assert_eq!(
        shipped, schema,
        "regenerate with `gigo schema > schemas/pipeline.schema.json`"
    );
}

/// Every example pipeline validates as it is committed (parameters,
/// inputs, paths), so a renamed parameter cannot leave an example behind.
#[test]
fn every_example_validates() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(root().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        // custom_stage.yaml needs its own binary (custom_stage_example_runs)
        if !name.ends_with(".yaml")
            || name.ends_with(".contract.yaml")
            || name == "custom_stage.yaml"
        {
            continue;
        }
        let o = gigo(dir.path(), &["validate", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        seen += 1;
    }
    assert!(seen >= 8, "{seen} examples");
}
