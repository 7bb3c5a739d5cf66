//! `evaluate` in whole pipelines through the `gigo` binary: the quickstart's
//! story (a baseline on the raw rows against the cleaned, rebalanced,
//! pretrained model, on clean and corrupted test rows), and the Adult example
//! on its official train / test split.
use crate::common::*;

fn by_model(s: &serde_json::Value, metric: &str, model: &str) -> f64 {
    s["metrics"][metric][model]
        .as_f64()
        .unwrap_or_else(|| panic!("{metric} of {model}: {}", s["metrics"]))
}

/// Prints a model's figures (for the README and closing notes).
fn describe(s: &serde_json::Value, model: &str) -> String {
    let mut out = format!("{model}:");
    for m in [
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "ece",
        "robust_auc",
        "mce",
        "flip_rate",
        "adversarial_accuracy",
        "generalisation_gap",
    ] {
        if let Some(v) = s["metrics"][m][model].as_f64() {
            out.push_str(&format!(" {m} {v:.4}"));
        }
    }
    out
}

// Figures: README, "Robustness evaluation" (printed with --no-capture).
#[test]
fn quickstart_ends_with_the_whole_story_in_one_report() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_example(dir.path(), "examples/quickstart.yaml", "q");
    let s = report_section(&run, "evaluate");
    for model in ["baseline", "train"] {
        eprintln!("quickstart {}", describe(&s, model));
        // against the generator's true labels, on clean test rows
        assert!(
            by_model(&s, "accuracy", model) > 0.85,
            "{}",
            describe(&s, model)
        );
        let auc = by_model(&s, "robust_auc", model);
        assert!(auc < by_model(&s, "accuracy", model) && auc > 0.6, "{auc}");
        assert!(by_model(&s, "adversarial_accuracy", model) < by_model(&s, "accuracy", model));
    }
    // gradient boosting sits beside the networks under every corruption;
    // the gradient attack skips it, and the report says why
    eprintln!("quickstart {}", describe(&s, "boosted"));
    assert!(by_model(&s, "accuracy", "boosted") > 0.85);
    assert!(by_model(&s, "robust_auc", "boosted") > 0.6);
    assert!(s["metrics"]["adversarial_accuracy"]["boosted"].is_null());
    let evaluate = run_summary(&run, "evaluate");
    assert_eq!(evaluate["attack_skipped"], serde_json::json!(["boosted"]));
    assert!(
        s["blocks"].as_array().unwrap().iter().any(|b| b["text"]
            .as_str()
            .is_some_and(|t| t.contains("not applied to `boosted` (not differentiable"))),
        "{}",
        s["blocks"]
    );
    // the reference's own corruption error is 1 by definition
    assert!((by_model(&s, "mce", "baseline") - 1.0).abs() < 1e-9);
    let kinds: Vec<&str> = s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"versus_reference"), "{kinds:?}");
    assert!(
        kinds.contains(&"fragile") || kinds.contains(&"robust"),
        "{kinds:?}"
    );

    // One page tells it all: what was wrong, what was fixed, how it held up.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for stage in [
        "profile",
        "label_noise",
        "rebalance",
        "pretrain",
        "baseline",
        "boosted",
        "train",
        "evaluate",
    ] {
        assert_eq!(report_section(&run, stage)["stage"], stage);
    }
    for text in [
        "Accuracy under gaussian_noise",
        "Robustness",
        "Clean metrics",
    ] {
        assert!(html.contains(text), "report.html lacks {text}");
    }
    // SMOTE's rows are counted as created, with their reason.
    let rec = run_record(dir.path(), "q");
    let created = &rec["stages"]["rebalance"]["rows"]["created"];
    assert!(created[0]["rows"].as_u64().unwrap() > 1000, "{created}");
    // The `metrics` table is every figure, for machines.
    assert!(run.join("evaluate/metrics.parquet").is_file());
}

// Figures: README, "Robustness evaluation" (printed with --no-capture).
#[test]
fn adult_example_compares_the_baseline_with_the_cleaned_model() {
    let dir = tempfile::tempdir().unwrap();
    let run = run_example(dir.path(), "examples/adult_robustness.yaml", "a");
    let s = report_section(&run, "evaluate");
    for model in ["baseline", "cleaned", "boosted"] {
        eprintln!("Adult {}", describe(&s, model));
        assert!(
            by_model(&s, "accuracy", model) > 0.8,
            "{}",
            describe(&s, model)
        );
        assert!(s["metrics"]["generalisation_gap"][model].is_number());
    }
    let versus = s["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "versus_reference")
        .expect("a comparison with the baseline");
    eprintln!("Adult: {}", versus["message"]);
    // the official test rows: 16,281
    let rows = s["figures"].as_array().unwrap()[0]["value"]
        .as_u64()
        .unwrap();
    assert_eq!(rows, 16_281);
    // predict scored every test row with the boosted model, exactly as
    // evaluate did (same accuracy on the clean rows)
    let scored = read_parquet(&run.join("test_scored.parquet"));
    assert_eq!(scored.num_rows(), 16_281);
    let predicted = scored
        .column_by_name("predicted")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    let truth = scored.column_by_name("label").unwrap();
    let truth = arrow::compute::cast(truth, &arrow::datatypes::DataType::Utf8).unwrap();
    let truth = truth
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    let right = (0..scored.num_rows())
        .filter(|&i| {
            arrow::array::Array::is_valid(truth, i) && predicted.value(i) == truth.value(i)
        })
        .count();
    let acc = right as f64 / scored.num_rows() as f64;
    assert!(
        (acc - by_model(&s, "accuracy", "boosted")).abs() < 1e-9,
        "predict {acc}, evaluate {}",
        by_model(&s, "accuracy", "boosted")
    );
}
