//! Times exact self-kNN on uniform random data, 100,000 x 20 and k = 10 by
//! default: `cargo run --release -p gigo-ml --example knn_timing [rows] [cols] [k] [repeat] [levels]`
//! (the best of `repeat` runs; with `levels`, every value is one of that
//! many, so that rows repeat).
//!
//! Measured on the 2-core development machine: 5.1-5.4 s (6-8 s while
//! other builds shared the cores); 3.8 s with the symmetric self search,
//! which the kNN keeps to 16,384 rows (see `SYMMETRIC_MAX_ROWS` in
//! `src/knn.rs`).

use gigo_ml::{Matrix, knn_self};

fn main() {
    let arg = |i: usize, default: usize| -> usize {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let (n, d, k, repeat) = (arg(1, 100_000), arg(2, 20), arg(3, 10), arg(4, 1));
    let levels = arg(5, 0) as f64;
    let mut s = 1u64;
    let data: Vec<f32> = (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 11) as f64 / (1u64 << 53) as f64;
            if levels > 0.0 {
                (u * levels).floor() as f32
            } else {
                u as f32
            }
        })
        .collect();
    let m = Matrix::new(n, d, data);
    let mut best = f64::INFINITY;
    let mut nn = None;
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        nn = Some(knn_self(&m, k));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let nn = nn.expect("at least one run");
    println!(
        "{n} x {d}, k = {}: {best:.4} s (row 0's nearest: {})",
        nn.k,
        nn.of(0).0[0]
    );
}
