//! Nearest neighbours on the raw numeric features, as imbalanced-learn
//! measures them (euclidean, no scaling), exact in `f64`.
//!
//! The multi-core kNN engine of `gigo-ml` works on an `f32` copy of the
//! rows and is exact on those values. Rounding the data to `f32` can swap two
//! neighbours whose distances differ by less than that rounding. Where that
//! matters (`exact`: the deterministic under-samplers, whose removed rows are
//! compared with imbalanced-learn's), each query asks the engine for
//! [`MARGIN`] extra candidates, measures them again in `f64` on the original
//! values and keeps the best `k` by (distance, row). The over-samplers, which
//! pick neighbours at random anyway, take the engine's answer as is. Either
//! way ties go to the earlier row, a row is never its own neighbour, and an
//! identical copy at another row is, at distance 0.

use gigo_ml::{knn, knn_self};
use rayon::prelude::*;

use super::data::Features;

/// Extra candidates fetched from the `f32` engine before the exact re-rank.
const MARGIN: usize = 4;

/// `k` neighbours per query, as positions into the reference rows, nearest
/// first, with their exact euclidean distances.
#[derive(Debug, Clone, PartialEq)]
pub struct Near {
    /// Neighbours per query (the requested k, capped by the rows available).
    pub k: usize,
    /// Positions, `k` per query.
    pub idx: Vec<u32>,
    /// Distances, same layout.
    pub dist: Vec<f64>,
}

impl Near {
    /// Query `i`'s neighbours (positions into the reference rows) and distances.
    pub fn of(&self, i: usize) -> (&[u32], &[f64]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.idx[r.clone()], &self.dist[r])
    }
}

/// Re-ranks `cands` (positions into `reference`) for the query at global row
/// `q` and writes the best `k` into `idx` / `dist`.
fn rerank(
    f: &Features,
    reference: &[u32],
    q: u32,
    cands: impl Iterator<Item = u32>,
    idx: &mut [u32],
    dist: &mut [f64],
) {
    let mut best: Vec<(f64, u32)> = cands
        .map(|p| (f.dist2(q as usize, reference[p as usize] as usize), p))
        .collect();
    best.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (s, (d2, p)) in best.into_iter().take(idx.len()).enumerate() {
        idx[s] = p;
        dist[s] = d2.sqrt();
    }
}

/// The engine's answer as is (distances from the `f32` values).
fn as_is(nn: gigo_ml::Neighbors) -> Near {
    Near {
        k: nn.k,
        idx: nn.indices,
        dist: nn.distances.into_iter().map(f64::from).collect(),
    }
}

/// Each of `rows`' `k` nearest other rows among `rows` (global indices in,
/// positions into `rows` out). `k` is capped at `rows.len() - 1`. `exact`:
/// re-ranked in `f64` on the original values (see the module docs).
pub fn within(f: &Features, rows: &[u32], k: usize, exact: bool) -> Near {
    let k = k.min(rows.len().saturating_sub(1));
    let mut idx = vec![0u32; rows.len() * k];
    let mut dist = vec![0f64; rows.len() * k];
    if k == 0 {
        return Near { k, idx, dist };
    }
    let m = f.matrix(rows);
    if !exact {
        return as_is(knn_self(&m, k));
    }
    let nn = knn_self(&m, k + MARGIN);
    drop(m);
    idx.par_chunks_mut(k)
        .zip(dist.par_chunks_mut(k))
        .enumerate()
        .for_each(|(i, (idx, dist))| {
            rerank(f, rows, rows[i], nn.of(i).0.iter().copied(), idx, dist);
        });
    Near { k, idx, dist }
}

/// Each query's `k` nearest rows of `reference` (global indices in,
/// positions into `reference` out). With `skip_self`, a query that is itself
/// one of the reference rows does not count as its own neighbour. `exact`:
/// re-ranked in `f64` on the original values (see the module docs).
pub fn among(
    f: &Features,
    reference: &[u32],
    queries: &[u32],
    k: usize,
    skip_self: bool,
    exact: bool,
) -> Near {
    let k = k.min(reference.len().saturating_sub(usize::from(skip_self)));
    let mut idx = vec![0u32; queries.len() * k];
    let mut dist = vec![0f64; queries.len() * k];
    if k == 0 || queries.is_empty() {
        return Near { k, idx, dist };
    }
    let margin = if exact { MARGIN } else { 0 };
    let nn = knn(
        &f.matrix(reference),
        &f.matrix(queries),
        k + margin + usize::from(skip_self),
    );
    idx.par_chunks_mut(k)
        .zip(dist.par_chunks_mut(k))
        .enumerate()
        .for_each(|(i, (idx, dist))| {
            let q = queries[i];
            let (found, found_dist) = nn.of(i);
            let cands = found
                .iter()
                .zip(found_dist)
                .filter(|&(&p, _)| !(skip_self && reference[p as usize] == q));
            if exact {
                rerank(f, reference, q, cands.map(|(&p, _)| p), idx, dist);
            } else {
                for (s, (&p, &d)) in cands.take(k).enumerate() {
                    idx[s] = p;
                    dist[s] = f64::from(d);
                }
            }
        });
    Near { k, idx, dist }
}
