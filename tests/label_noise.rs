//! `label_noise` on real data through the `gigo` binary: the official MNIST
//! test set, read by `ingest` (UInt8 pixels), scored by gigo's own
//! cross-validated kNN, against the 15 human-validated label errors.

mod common;

use arrow::array::AsArray;
use arrow::datatypes::{Float64Type, Int64Type};
use common::*;

// Measured (dev profile, 2 cores, about 4 s): 6 of the 15 among the 100
// lowest (5, 7 and 5 with seeds 1-3; gigo-ml's direct call with its own fold
// seed, ml/tests/mnist_real_errors.rs: 8). Chance would put 0.15 there.
#[test]
fn mnist_pipeline_ranks_the_validated_label_errors_among_the_lowest_quality_rows() {
    let dir = tempfile::tempdir().unwrap();
    run_example(dir.path(), "examples/mnist_label_errors.yaml", "m");

    let errors =
        read_parquet(&root().join("../shared/datasets/label_errors/mnist_label_errors.parquet"));
    let index = column_values::<Int64Type>(&errors, "index");
    let validated: Vec<usize> = errors
        .column_by_name("validated_error")
        .unwrap()
        .as_boolean()
        .iter()
        .enumerate()
        .filter_map(|(i, v)| (v == Some(true)).then_some(i))
        .collect();
    assert_eq!(validated.len(), 15);

    let out = read_parquet(&dir.path().join("runs/m/label_noise/table.parquet"));
    let quality = column_values::<Float64Type>(&out, "label_quality");
    // ingest keeps every row, in file order: row i is the study's index i
    assert_eq!(quality.len(), index.len());
    assert!(index.iter().enumerate().all(|(i, &v)| v == i as i64));
    let mut order: Vec<usize> = (0..quality.len()).collect();
    order.sort_by(|&a, &b| quality[a].total_cmp(&quality[b]).then(a.cmp(&b)));
    let found = validated
        .iter()
        .filter(|i| order[..100].contains(i))
        .count();

    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("runs/m/label_noise/summary.json")).unwrap(),
    )
    .unwrap();
    eprintln!(
        "MNIST pipeline: {found}/15 validated errors among the 100 lowest-quality rows; label issue rate {}",
        summary["report"]["metrics"]["label_issue_rate"]
    );
    assert!(
        found >= 5,
        "only {found}/15 validated errors among the 100 lowest"
    );
}
