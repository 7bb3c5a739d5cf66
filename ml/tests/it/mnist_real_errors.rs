//! Real label errors: on the MNIST test set, gigo's own cross-validated
//! model must rank the human-validated label errors (15 rows of
//! `../shared/datasets/label_errors/mnist_label_errors.parquet`, row for row
//! with the test set via `index`) among its lowest label-quality rows.
//!
//! Model: 10-nearest-neighbour vote weighted by inverse distance on the raw
//! pixels (not standardised: pixels share one scale, and standardising
//! near-constant border pixels amplifies noise), 5 stratified folds, seed 0;
//! score: normalised margin. Measured: 8 of the 15 among the 100 lowest
//! (self-confidence: 5); cleanlab's published CNN probabilities get 15.

use std::fs::File;
use std::path::PathBuf;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use gigo_ml::confident::{PredProbs, ScoreMethod, label_quality_scores};
use gigo_ml::cv::cross_val_predict_proba;
use gigo_ml::knn_classifier::KnnParams;
use gigo_ml::{EncoderOptions, FeatureEncoder, TrainSet};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn read(rel: &str) -> Vec<RecordBatch> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel);
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

#[test]
fn validated_mnist_errors_rank_among_the_lowest_quality_rows() {
    let test = read("datasets/mnist/mnist_test.parquet");
    let errors = read("datasets/label_errors/mnist_label_errors.parquet");
    let index: Vec<i64> = errors
        .iter()
        .flat_map(|b| {
            b.column_by_name("index")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    assert!(
        index.iter().enumerate().all(|(i, &v)| v == i as i64),
        "rows must line up"
    );
    let validated: Vec<usize> = errors
        .iter()
        .flat_map(|b| {
            b.column_by_name("validated_error")
                .unwrap()
                .as_boolean()
                .values()
                .iter()
                .collect::<Vec<_>>()
        })
        .enumerate()
        .filter_map(|(i, v)| v.then_some(i))
        .collect();
    assert_eq!(validated.len(), 15);

    let pixels: Vec<String> = (0..784).map(|i| format!("px{i}")).collect();
    let opts = EncoderOptions {
        standardize: false,
        ..EncoderOptions::default()
    };
    let enc = FeatureEncoder::fit(&test, &pixels, &opts).unwrap();
    let x = enc.transform(&test).unwrap();
    let y: Vec<u32> = test
        .iter()
        .flat_map(|b| {
            b.column_by_name("label")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .iter()
                .map(|&v| v as u32)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(y.len(), index.len());
    let model = KnnParams {
        k: 10,
        distance_weighted: true,
    };
    let p = cross_val_predict_proba(&model, &TrainSet::new(&x, &y, 10), 5, 0).unwrap();
    let probs = PredProbs::from_matrix(&p).unwrap();
    let accuracy = (0..y.len())
        .filter(|&i| probs.argmax(i) == y[i] as usize)
        .count() as f64
        / y.len() as f64;
    assert!(accuracy > 0.93, "cross-validated accuracy {accuracy}");

    let found = |method| {
        let q = label_quality_scores(&y, &probs, method).unwrap();
        let mut order: Vec<usize> = (0..q.len()).collect();
        order.sort_by(|&a, &b| q[a].total_cmp(&q[b]).then(a.cmp(&b)));
        validated
            .iter()
            .filter(|i| order[..100].contains(i))
            .count()
    };
    let margin = found(ScoreMethod::NormalizedMargin);
    let self_conf = found(ScoreMethod::SelfConfidence);
    eprintln!(
        "validated errors among the 100 lowest: {margin}/15 (normalized margin), {self_conf}/15 (self-confidence); accuracy {accuracy:.4}"
    );
    assert!(
        margin >= 7,
        "only {margin}/15 validated errors among the 100 lowest"
    );
    assert!(self_conf >= 4, "only {self_conf}/15 by self-confidence");
}
