//! Parity with cleanlab 2.9 on the published out-of-sample probabilities of
//! the label-errors data sets: the same rows flagged in five filter modes,
//! the same three label-quality scores to 1e-6. The reference outputs come
//! from `../shared/bench/golden/make_cleanlab_golden.py` (probabilities
//! renormalised per row in f64, `n_jobs=1`).

use std::fs::File;
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use gigo_ml::confident::{
    FilterBy, FindOptions, PredProbs, ScoreMethod, find_label_issues, label_quality_scores,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared")
        .join(rel)
}

fn read(path: PathBuf) -> RecordBatch {
    let file = File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn f64_column(b: &RecordBatch, name: &str) -> Vec<f64> {
    let c = b
        .column_by_name(name)
        .unwrap_or_else(|| panic!("no column {name}"));
    let c = arrow::compute::cast(c, &DataType::Float64).unwrap();
    c.as_primitive::<Float64Type>().values().to_vec()
}

/// Labels and probabilities exactly as the golden script builds them.
fn inputs(set: &str) -> (Vec<u32>, PredProbs, Vec<i64>) {
    let t = read(shared(&format!(
        "datasets/label_errors/{set}_label_errors.parquet"
    )));
    let labels: Vec<u32> = t
        .column_by_name("label")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .iter()
        .map(|&l| l as u32)
        .collect();
    let index = t
        .column_by_name("index")
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec();
    let k = (0..)
        .take_while(|j| t.column_by_name(&format!("p{j}")).is_some())
        .count();
    let cols: Vec<Vec<f64>> = (0..k).map(|j| f64_column(&t, &format!("p{j}"))).collect();
    let n = labels.len();
    let data: Vec<f64> = (0..n)
        .flat_map(|i| cols.iter().map(move |c| c[i]))
        .collect();
    (labels, PredProbs::normalized(n, k, data).unwrap(), index)
}

fn parity(set: &str) {
    let (labels, probs, index) = inputs(set);
    let golden = read(shared(&format!("bench/golden/cleanlab_{set}.parquet")));
    let g_index = golden
        .column_by_name("index")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(
        g_index.values().to_vec(),
        index,
        "{set}: golden rows are in another order"
    );

    for fb in [
        FilterBy::PruneByNoiseRate,
        FilterBy::PruneByClass,
        FilterBy::Both,
        FilterBy::ConfidentLearning,
        FilterBy::PredictedNeqGiven,
    ] {
        let opts = FindOptions {
            filter_by: fb,
            ..FindOptions::default()
        };
        let ours = find_label_issues(&labels, &probs, &opts).unwrap();
        let col = golden
            .column_by_name(&format!("flag_{}", fb.name()))
            .unwrap()
            .as_boolean();
        assert_eq!(col.null_count(), 0);
        let theirs: Vec<bool> = col.values().iter().collect();
        let differ: Vec<usize> = (0..ours.len()).filter(|&i| ours[i] != theirs[i]).collect();
        assert!(
            differ.is_empty(),
            "{set} {}: {} rows differ from cleanlab ({} flagged by us, {} by cleanlab), first {:?}",
            fb.name(),
            differ.len(),
            ours.iter().filter(|&&f| f).count(),
            theirs.iter().filter(|&&f| f).count(),
            &differ[..differ.len().min(10)]
        );
        eprintln!(
            "{set} {}: {} flagged, identical",
            fb.name(),
            theirs.iter().filter(|&&f| f).count()
        );
    }

    for method in ScoreMethod::ALL {
        let ours = label_quality_scores(&labels, &probs, method).unwrap();
        let theirs = f64_column(&golden, &format!("score_{}", method.name()));
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f64, f64::max);
        assert!(worst <= 1e-6, "{set} {}: max |diff| {worst}", method.name());
        eprintln!("{set} {}: max |diff| {worst:e}", method.name());
    }
}

#[test]
fn mnist_matches_cleanlab() {
    parity("mnist");
}

#[test]
fn twenty_newsgroups_matches_cleanlab() {
    parity("20news");
}

/// All seven modes, a `frac_noise` / `min_examples_per_class` variant, the
/// issue count and the calibrated confident joint, on four sets
/// (`fixtures/cleanlab_modes.py`).
#[test]
fn every_mode_matches_cleanlab_on_four_sets() {
    use gigo_ml::confident::{compute_confident_joint, num_label_issues};
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/cleanlab_modes.json"
    );
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let flagged =
        |m: Vec<bool>| -> Vec<u64> { (0..m.len()).filter(|&i| m[i]).map(|i| i as u64).collect() };
    let as_u64 = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap())
            .collect()
    };
    for set in ["mnist", "20news", "cifar10", "imdb"] {
        let (labels, probs, _) = inputs(set);
        let expect = &fixture[set];
        for fb in FilterBy::ALL {
            let opts = FindOptions {
                filter_by: fb,
                ..FindOptions::default()
            };
            let ours = flagged(find_label_issues(&labels, &probs, &opts).unwrap());
            assert_eq!(ours, as_u64(&expect[fb.name()]), "{set} {}", fb.name());
        }
        let opts = FindOptions {
            frac_noise: 0.5,
            min_examples_per_class: 50,
            ..FindOptions::default()
        };
        let ours = flagged(find_label_issues(&labels, &probs, &opts).unwrap());
        assert_eq!(
            ours,
            as_u64(&expect["frac_noise_0.5_min_50"]),
            "{set} frac_noise"
        );
        assert_eq!(
            num_label_issues(&labels, &probs).unwrap() as u64,
            expect["num_label_issues"].as_u64().unwrap()
        );
        let (cj, _) = compute_confident_joint(&labels, &probs, true).unwrap();
        let theirs: Vec<i64> = expect["confident_joint"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(cj.counts, theirs, "{set} confident joint");
    }
}
