//! Times 5-fold cross-validated gradient boosting on a Parquet table of
//! numbers (the `label_noise` benchmark's model step, without the stage):
//! `cargo run -p gigo-ml --example boosting_timing FILE [label] [repeat]`.
//! Every integer, unsigned or boolean column other than the label,
//! `label_clean` and `is_flipped` is a feature. Prints the best time and a
//! checksum of the out-of-fold probabilities (so that a change that alters
//! results shows).

use std::fs::File;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Int64Type};
use gigo_ml::boosting::BoostingParams;
use gigo_ml::cv::cross_val_predict_proba;
use gigo_ml::{Matrix, TrainSet};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: boosting_timing FILE [label] [repeat]");
    let label = args.get(2).map_or("label", String::as_str);
    let repeat: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).expect("file"))
        .expect("parquet")
        .build()
        .expect("reader");
    let batches: Vec<_> = reader.map(|b| b.expect("batch")).collect();
    let batch = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    let n = batch.num_rows();
    let schema = batch.schema();
    let features: Vec<usize> = (0..batch.num_columns())
        .filter(|&j| {
            let name = schema.field(j).name();
            name != label && name != "label_clean" && name != "is_flipped"
        })
        .collect();
    let d = features.len();
    let mut x = vec![0f32; n * d];
    for (c, &j) in features.iter().enumerate() {
        let col = cast(batch.column(j), &DataType::Float32).expect("numeric column");
        for (i, v) in col
            .as_primitive::<Float32Type>()
            .values()
            .iter()
            .enumerate()
        {
            x[i * d + c] = *v;
        }
    }
    let y_col = cast(
        batch.column_by_name(label).expect("label"),
        &DataType::Int64,
    )
    .expect("int");
    let y_col = y_col.as_primitive::<Int64Type>();
    assert_eq!(y_col.null_count(), 0);
    let mut classes: Vec<i64> = y_col.values().to_vec();
    classes.sort_unstable();
    classes.dedup();
    let y: Vec<u32> = y_col
        .values()
        .iter()
        .map(|v| classes.binary_search(v).expect("class") as u32)
        .collect();
    let x = Matrix::new(n, d, x);
    let spec = BoostingParams::default();
    let mut best = f64::INFINITY;
    let mut sum = 0.0;
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        let p = cross_val_predict_proba(&spec, &TrainSet::new(&x, &y, classes.len()), 5, 0)
            .expect("cv");
        let secs = t.elapsed().as_secs_f64();
        eprint!("{secs:.3} ");
        best = best.min(secs);
        sum = p.data.iter().map(|&v| v as f64).sum::<f64>()
            + p.data.iter().step_by(7).map(|&v| v as f64).sum::<f64>();
    }
    println!(
        "{n} x {d}, {} classes: {best:.4} s (checksum {sum:.6})",
        classes.len()
    );
}
