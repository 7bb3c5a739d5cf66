//! One compliance check over every registered stage type: unknown parameters
//! are refused; one pipeline uses every type, so each runs and the executor
//! checks that what `run` returns matches the declared ports (and that rows
//! balance); and the same seed gives the same bytes whatever the job and
//! thread counts.

use serde_json::json;

use crate::common::*;

#[test]
fn every_stage_type_refuses_unknown_parameters() {
    let registry = gigo::builtin_registry();
    let mut checked = 0;
    for st in registry.types() {
        let closed = st.params_schema().get("additionalProperties") == Some(&json!(false));
        assert!(closed, "`{}` must deny unknown fields", st.name());
        let problems = match st.build(&json!({"zz_no_such_parameter": 1})) {
            Err(p) => p,
            Ok(_) => panic!("`{}` accepted an unknown parameter", st.name()),
        };
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("zz_no_such_parameter")),
            "`{}`: {:?}",
            st.name(),
            problems.iter().map(|p| &p.message).collect::<Vec<_>>()
        );
        checked += 1;
    }
    assert!(checked >= 12, "{checked}");
}

/// A pipeline with every built-in stage type, on small data.
fn every_stage(dir: &std::path::Path) -> String {
    let csv: String = std::iter::once("a,b,label\n".to_string())
        .chain((0..200).map(|i| format!("{},{},{}\n", i % 17, (i * 7) % 11, i % 2)))
        .collect();
    write(dir, "rows.csv", &csv);
    let yaml = format!(
        r#"name: every-stage
seed: 11
stages:
  data:
    type: generate
    rows: 600
    classes: 2
    class_weights: [0.75, 0.25]
    label_noise: {{rate: 0.05, kind: symmetric}}
  read:
    type: ingest
    path: rows.csv
    label: label
  read_profile:
    type: profile
    inputs: read
  profile:
    type: profile
    inputs: data
  split:
    type: split
    inputs: profile
    test_fraction: 0.25
    valid_fraction: 0.15
  label_noise:
    type: label_noise
    inputs: split.train
    model: logistic_regression
    folds: 3
  rebalance:
    type: rebalance
    inputs: label_noise
    method: smote
  pretrain:
    type: pretrain
    inputs: split.train
    method: scarf
    encoder: {{depth: 1, width: 16}}
    epochs: 2
  train:
    type: train
    inputs: {{table: rebalance, valid: split.valid, test: split.test, pretrained: pretrain.model}}
    epochs: 3
    batch_size: 64
  forest:
    type: fit
    inputs: split.train
    model: random_forest
    model_params: {{n_estimators: 10}}
  scored:
    type: predict
    inputs: {{model: forest.model, table: split.test}}
  evaluate:
    type: evaluate
    inputs: {{models: [train.model, forest.model], test: split.test, train: split.train}}
    corruptions: [gaussian_noise, outliers]
    severities: [1, 3]
    adversarial: fgsm
  child:
    type: exec
    inputs: split.test
    command: ["{child}", "add-column"]
  export:
    type: export
    inputs: child
    path: "{{run}}/child.parquet"
  report:
    type: report
    inputs: [profile.summary, read_profile.summary, label_noise.summary, rebalance.summary,
             pretrain.summary, train.summary, forest.summary, scored.summary, evaluate.summary]
"#,
        child = child_bin().display()
    );
    write(dir, "every.yaml", &yaml)
}

#[test]
fn every_stage_type_runs_to_its_declared_ports_and_the_same_bytes_at_any_thread_count() {
    let registry = gigo::builtin_registry();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let runs = [
        (a.path(), "1", "1"), // --jobs 1, one rayon thread
        (b.path(), "4", "2"),
    ];
    for (dir, jobs, threads) in runs {
        let p = every_stage(dir);
        let o = gigo_env(
            dir,
            &["run", &p, "--run-id", "r", "--jobs", jobs],
            &[("RAYON_NUM_THREADS", threads)],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let rec = run_record(a.path(), "r");
    let used: std::collections::BTreeSet<&str> = rec["stages"]
        .as_object()
        .unwrap()
        .values()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    let registered: std::collections::BTreeSet<&str> = registry.types().map(|t| t.name()).collect();
    assert_eq!(used, registered, "the pipeline must use every stage type");
    for ext in ["parquet", "model", "md"] {
        let fa = files_under(&a.path().join("runs/r"), ext);
        assert!(!fa.is_empty(), "{ext}");
        let fb = files_under(&b.path().join("runs/r"), ext);
        let names = |f: &[(String, Vec<u8>)]| f.iter().map(|x| x.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&fa), names(&fb), "{ext}");
        for ((name, x), (_, y)) in fa.iter().zip(&fb) {
            assert!(x == y, "{name} differs between thread counts");
        }
    }
    assert_eq!(
        std::fs::read(a.path().join("runs/r/report.json")).unwrap(),
        std::fs::read(b.path().join("runs/r/report.json")).unwrap()
    );
}
