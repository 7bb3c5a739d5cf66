//! Times exact self-kNN (k = 10) on uniform random data, 100,000 x 20 by
//! default: `cargo run --release -p gigo-ml --example knn_timing [rows]`.
//!
//! Measured on the 2-core development machine: 5.1 s (the machine otherwise
//! idle), 6-8 s while other builds shared the cores.

use gigo_ml::{Matrix, knn_self};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let d = 20;
    let mut s = 1u64;
    let data: Vec<f32> = (0..n * d)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) as f32
        })
        .collect();
    let m = Matrix::new(n, d, data);
    let t = std::time::Instant::now();
    let nn = knn_self(&m, 10);
    println!(
        "{n} x {d}, k = {}: {:.2} s (row 0's nearest: {})",
        nn.k,
        t.elapsed().as_secs_f64(),
        nn.of(0).0[0]
    );
}
