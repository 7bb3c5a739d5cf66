//! Benchmark: profile a 10M-row x 20-column numeric table, generated on the
//! fly, batch by batch, and compare with polars' `describe` statistics on the
//! same data. Prints figures; asserts nothing about time.
//!
//! ```text
//! cargo bench --bench profile                 # 10M rows
//! GIGO_BENCH_ROWS=1000000 cargo bench --bench profile
//! ```
//!
//! gigo's time covers `Profiler::update` and `finish` only (generation is
//! timed apart). Peak memory is the process's high-water mark (VmHWM) read
//! right after profiling, before the polars frame is built. Polars computes
//! what its `describe` prints (count, null count, mean, std, min, quartiles,
//! max) on the whole table held in memory; gigo computes far more (distinct
//! counts, histograms, top values, skew, exact duplicates over every row,
//! near duplicates, outliers and correlations on a 50k-row sample).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, Float64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_stages::profile::{ProfileOptions, Profiler, RowCheckOptions};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, StandardNormal};

const COLUMNS: usize = 20;
const BATCH: usize = 65_536;

/// Column `c` of batch `b`: normal, integer-coded, skewed and partly null
/// columns, deterministic per (batch, column).
fn column(b: usize, c: usize, rows: usize) -> Vec<Option<f64>> {
    let mut rng = ChaCha8Rng::seed_from_u64((b * COLUMNS + c) as u64);
    let lognormal = LogNormal::new(0.0, 1.0).expect("valid");
    (0..rows)
        .map(|_| match c {
            0..=9 => Some(StandardNormal.sample(&mut rng)),
            10..=13 => Some(rng.random_range(0..10) as f64),
            14..=16 => Some(lognormal.sample(&mut rng)),
            17 | 18 => (rng.random::<f64>() >= 0.05).then(|| rng.random::<f64>() * 100.0),
            _ => Some(1990.0 + rng.random_range(0..30) as f64),
        })
        .collect()
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        (0..COLUMNS)
            .map(|c| Field::new(format!("c{c}"), DataType::Float64, true))
            .collect::<Vec<_>>(),
    ))
}

fn batch(b: usize, rows: usize) -> RecordBatch {
    let cols: Vec<ArrayRef> = (0..COLUMNS)
        .map(|c| Arc::new(Float64Array::from(column(b, c, rows))) as ArrayRef)
        .collect();
    RecordBatch::try_new(schema(), cols).expect("batch")
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let rows: usize = std::env::var("GIGO_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let batches = rows.div_ceil(BATCH);
    let threads = rayon::current_num_threads();
    println!("profile benchmark: {rows} rows x {COLUMNS} float columns, {threads} threads");

    // gigo: stream the batches through the profiler.
    let opts = ProfileOptions {
        row_columns: (0..COLUMNS).collect(),
        feature_columns: (0..COLUMNS).collect(),
        label_column: None,
        drift_split: None,
        sample_rows: 50_000,
        seed: 0,
        k: 10,
        // Row hashes in memory, as before the partitions existed.
        row_checks: RowCheckOptions::default(),
    };
    let mut profiler = Profiler::new(schema(), opts).expect("profiler");
    let mut generating = Duration::ZERO;
    let mut profiling = Duration::ZERO;
    for b in 0..batches {
        let n = BATCH.min(rows - b * BATCH);
        let t = Instant::now();
        let batch = batch(b, n);
        generating += t.elapsed();
        let t = Instant::now();
        profiler.update(&batch).expect("profile batch");
        profiling += t.elapsed();
    }
    let t = Instant::now();
    let profile = profiler.finish().expect("finish");
    profiling += t.elapsed();
    let gigo_peak = peak_rss_mb();
    let duplicates = profile.row_findings.duplicate.count();
    let c0 = &profile.columns[0];
    println!(
        "gigo profile: {:.2} s (generation {:.2} s apart), peak RSS {:.0} MB; \
         c0 mean {:.4} std {:.4}, exact duplicates {duplicates}, sample {} rows",
        profiling.as_secs_f64(),
        generating.as_secs_f64(),
        gigo_peak,
        c0.mean,
        c0.std().unwrap_or(f64::NAN),
        profile.sample_rows.len()
    );
    drop(profile);

    // polars: the same data as one frame, then describe's statistics.
    let t = Instant::now();
    let mut cols: Vec<Vec<Option<f64>>> = (0..COLUMNS).map(|_| Vec::with_capacity(rows)).collect();
    for b in 0..batches {
        let n = BATCH.min(rows - b * BATCH);
        for (c, col) in cols.iter_mut().enumerate() {
            col.extend(column(b, c, n));
        }
    }
    let frame: Vec<Column> = cols
        .into_iter()
        .enumerate()
        .map(|(c, v)| Column::new(format!("c{c}").into(), v))
        .collect();
    let df = DataFrame::new_infer_height(frame).expect("frame");
    let build = t.elapsed();
    let t = Instant::now();
    let mut check = 0.0;
    for col in df.columns() {
        let ca = col.f64().expect("f64");
        let stats = [
            ca.len() as f64,
            ca.null_count() as f64,
            ca.mean().unwrap_or(0.0),
            ca.std(1).unwrap_or(0.0),
            ca.min().unwrap_or(0.0),
            ca.quantile(0.25, QuantileMethod::Nearest)
                .ok()
                .flatten()
                .unwrap_or(0.0),
            ca.quantile(0.5, QuantileMethod::Nearest)
                .ok()
                .flatten()
                .unwrap_or(0.0),
            ca.quantile(0.75, QuantileMethod::Nearest)
                .ok()
                .flatten()
                .unwrap_or(0.0),
            ca.max().unwrap_or(0.0),
        ];
        check += stats.iter().sum::<f64>();
    }
    let describe = t.elapsed();
    println!(
        "polars describe: {:.2} s (frame build {:.2} s apart), checksum {check:.1}",
        describe.as_secs_f64(),
        build.as_secs_f64()
    );
    println!(
        "ratio gigo / polars describe: {:.2}x; goals: gigo <= 30 s and <= 1536 MB peak on 2 cores",
        profiling.as_secs_f64() / describe.as_secs_f64()
    );
}
