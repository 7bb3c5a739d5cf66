//! Exact euclidean k-nearest neighbours, multi-core.
//!
//! Blocked brute force: for a tile of queries and a block of reference
//! rows, a register-tiled `f32` product kernel gives `||q||² + ||r||² -
//! 2 q·r` for every pair.
//! That approximation only *selects candidates*: every pair carries a
//! rigorous bound on its `f32` error, and a reference row is kept as a
//! candidate whenever its lower bound could still beat the current k-th
//! exact distance. Candidates are then measured exactly (in `f64`, from the
//! raw rows), so
//!
//! - the result is the exact k nearest by `(distance, index)`: ties go to
//!   the smaller index, and identical rows are at distance exactly 0;
//! - the result does not depend on the thread count or block sizes, since
//!   the candidate filter never drops a true neighbour.
//!
//! Data are centred on the reference mean before the `f32` product, so
//! large common offsets (values around 1e4) cost no precision. Rows with
//! NaN or infinities fall back to an exact `f64` scan (a NaN distance ranks
//! after every number).
//!
//! The kernel: the reference rows are centred and packed once per search
//! into panels of 16 rows, column by column; each step multiplies 6 query
//! rows by one panel in 12 AVX2 registers (compiled for AVX2 and FMA, used
//! when the CPU has them, else the same code for the baseline target). The
//! products of one query tile and one reference block (6 x 1024) stay in
//! the L1 cache while they are filtered.
//!
//! Speed, on the 2-core development machine (`examples/knn_timing.rs`,
//! uniform data, dev profile): 10,000 x 20, k = 5 in 0.055 s and
//! 100,000 x 20, k = 10 in 5.5 s, against 0.12 s and 10.5 s with the
//! `matrixmultiply` sgemm this replaced (which re-packed both operands on
//! every call and, in the full workspace, started its own threads beside
//! rayon's). The candidate filter keeps about `k (1 + ln(n / 1024))` rows
//! per query for exact measurement.
//!
//! Error bound used: with `u = 2⁻²⁴` and `d` columns, the computed
//! `f32` squared distance of centred rows `q`, `r` differs from the exact
//! one by at most about `(d + 10) u (||q||² + ||r||²)` (casting to f32,
//! the dot product's `γ_d` bound, the norms and the two additions); the
//! filter uses twice that.

use std::cmp::Ordering;

use rayon::prelude::*;

use crate::matrix::Matrix;

/// Queries per parallel task.
const QUERY_BLOCK: usize = 256;
/// Reference rows per product block (a multiple of [`LANES`]).
const REF_BLOCK: usize = 1024;
/// Reference rows per step of the product kernel (two AVX2 registers).
const LANES: usize = 16;
/// Query rows per step of the product kernel.
const MR: usize = 6;

/// The k nearest neighbours of each query row.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbors {
    /// Neighbours per row: the requested k, capped by the number of rows
    /// available (for [`knn_self`]: rows minus one).
    pub k: usize,
    /// Row `i`'s neighbours (indices into the reference rows) are at
    /// `[i * k..(i + 1) * k]`, nearest first.
    pub indices: Vec<u32>,
    /// Their euclidean distances, same layout, ascending.
    pub distances: Vec<f32>,
}

impl Neighbors {
    /// Row `i`'s neighbours and their distances, nearest first.
    pub fn of(&self, i: usize) -> (&[u32], &[f32]) {
        let r = i * self.k..(i + 1) * self.k;
        (&self.indices[r.clone()], &self.distances[r])
    }

    /// The number of query rows.
    pub fn len(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }

    /// Whether there are no query rows (or k is 0).
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// Each row's `k` nearest *other* rows of `data`: a row is never its own
/// neighbour, but an identical copy at another index is, at distance 0.
/// `k` is capped at `rows - 1`.
///
/// # Example
/// ```
/// use gigo_ml::{knn::knn_self, matrix::Matrix};
/// let m = Matrix::new(4, 1, vec![0.0, 1.0, 0.0, 5.0]);
/// let nn = knn_self(&m, 2);
/// assert_eq!(nn.of(0), (&[2u32, 1][..], &[0.0f32, 1.0][..]));
/// assert_eq!(nn.of(3).0, &[1, 0]);
/// ```
pub fn knn_self(data: &Matrix, k: usize) -> Neighbors {
    search(data, data, k.min(data.rows.saturating_sub(1)), true)
}

/// Each query row's `k` nearest rows of `reference` (capped at its row count).
///
/// # Panics
/// If the two matrices have different column counts (a programming error).
pub fn knn(reference: &Matrix, queries: &Matrix, k: usize) -> Neighbors {
    assert_eq!(
        reference.cols, queries.cols,
        "knn: reference has {} columns, queries {}",
        reference.cols, queries.cols
    );
    search(reference, queries, k.min(reference.rows), false)
}

/// Exact squared distance of two raw rows, in `f64`.
#[inline]
pub(crate) fn exact_sq(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum()
}

/// Orders `(squared distance, index)`; NaN after everything.
#[inline]
fn by_distance_then_index(a: &(f64, u32), b: &(f64, u32)) -> Ordering {
    let key = |d: f64| if d.is_nan() { f64::INFINITY } else { d };
    key(a.0)
        .partial_cmp(&key(b.0))
        .unwrap_or(Ordering::Equal)
        .then(a.0.is_nan().cmp(&b.0.is_nan()))
        .then(a.1.cmp(&b.1))
}

/// One query's running result: the best `k` exactly measured candidates.
struct Best {
    kept: Vec<(f64, u32)>,
    k: usize,
}

impl Best {
    fn new(k: usize) -> Best {
        Best {
            kept: Vec::with_capacity(k + 16),
            k,
        }
    }

    /// The k-th smallest exact squared distance so far (infinite until k are known).
    fn threshold(&self) -> f64 {
        if self.kept.len() < self.k {
            f64::INFINITY
        } else {
            self.kept[self.k - 1].0
        }
    }

    /// Measures `candidates` exactly and keeps the best `k` overall.
    fn absorb(&mut self, query: &[f32], reference: &Matrix, candidates: &[u32]) {
        if candidates.is_empty() {
            return;
        }
        self.kept.extend(
            candidates
                .iter()
                .map(|&j| (exact_sq(query, reference.row(j as usize)), j)),
        );
        self.kept.sort_unstable_by(by_distance_then_index);
        self.kept.truncate(self.k);
    }

    fn write(self, indices: &mut [u32], distances: &mut [f32]) {
        for (s, (d2, j)) in self.kept.into_iter().enumerate() {
            indices[s] = j;
            distances[s] = d2.sqrt() as f32;
        }
    }
}

/// Centred `f32` rows, packed for the product kernel, and their squared
/// norms (in `f64`, of the `f32` values).
///
/// Rows are packed in panels of [`LANES`] rows, column by column: element
/// (row `i`, column `p`) is at `panels[(i / LANES * d + p) * LANES + i % LANES]`;
/// the last panel is padded with zero rows. Packed once per search, so the
/// kernel reads contiguous lanes and nothing is packed again per block.
struct Centred {
    panels: Vec<f32>,
    norms: Vec<f64>,
    d: usize,
}

impl Centred {
    /// Rows `rows` in the kernel's query layout: tiles of [`MR`] rows,
    /// column by column (element (row `a0 + a`, column `p`) of tile `t` at
    /// `out[(t * d + p) * MR + a]`), the last tile padded with zero rows.
    fn gather_tiles(&self, rows: std::ops::Range<usize>, out: &mut Vec<f32>) {
        let d = self.d;
        let m = rows.len();
        out.clear();
        // one zero column when there are none, so that every tile exists
        out.resize(m.div_ceil(MR) * d.max(1) * MR, 0.0);
        for (a, i) in rows.enumerate() {
            let (t, lane) = (a / MR, a % MR);
            let base = i / LANES * d * LANES + i % LANES;
            for p in 0..d {
                out[(t * d + p) * MR + lane] = self.panels[base + p * LANES];
            }
        }
    }
}

fn centre(m: &Matrix, mean: &[f64]) -> Centred {
    let d = m.cols;
    let mut panels = vec![0.0f32; m.rows.div_ceil(LANES) * LANES * d];
    let mut norms = vec![0.0f64; m.rows];
    if d > 0 {
        panels
            .par_chunks_mut(d * LANES)
            .zip(norms.par_chunks_mut(LANES))
            .enumerate()
            .for_each(|(b, (panel, norms))| {
                for (l, norm) in norms.iter_mut().enumerate() {
                    let mut s = 0.0f64;
                    for (p, (&x, &mu)) in m.row(b * LANES + l).iter().zip(mean).enumerate() {
                        let o = (x as f64 - mu) as f32;
                        panel[p * LANES + l] = o;
                        s += (o as f64) * (o as f64);
                    }
                    *norm = s;
                }
            });
    }
    Centred { panels, norms, d }
}

/// `out[a * stride + j] = -2 q_a · r_(r0 + j)` for the query rows in `qt`
/// (the layout of [`Centred::gather_tiles`], padding rows included) and the
/// reference rows `r0..r0 + w` (`r0` a multiple of [`LANES`]), padded to a
/// multiple of [`LANES`]: `stride` is at least that.
///
/// A register tile of [`MR`] queries by [`LANES`] reference rows per step;
/// `FUSED`: multiply-adds are fused (the AVX2 + FMA build of
/// [`block_products`]). The `f32` error bound in the module docs holds for
/// any order of the additions, fused or not.
#[inline(always)]
fn products_body<const FUSED: bool>(
    qt: &[f32],
    r: &Centred,
    r0: usize,
    w: usize,
    out: &mut [f32],
    stride: usize,
) {
    let d = r.d;
    let panels = &r.panels[r0 * d..(r0 + w.div_ceil(LANES) * LANES) * d];
    for (t, tile) in qt.chunks_exact(d * MR).enumerate() {
        let (tile, _) = tile.as_chunks::<MR>();
        for (b, panel) in panels.chunks_exact(d * LANES).enumerate() {
            let (panel, _) = panel.as_chunks::<LANES>();
            // fixed-size rows: the accumulators stay in registers
            let mut acc = [[0f32; LANES]; MR];
            for (qp, rp) in tile.iter().zip(panel) {
                for a in 0..MR {
                    let q = qp[a];
                    for l in 0..LANES {
                        acc[a][l] = if FUSED {
                            q.mul_add(rp[l], acc[a][l])
                        } else {
                            q * rp[l] + acc[a][l]
                        };
                    }
                }
            }
            // every lane and every tile row, padding included: constant
            // bounds keep `acc` in registers
            for (a, acc) in acc.iter().enumerate() {
                let o = &mut out[(t * MR + a) * stride + b * LANES..][..LANES];
                for (o, &v) in o.iter_mut().zip(acc) {
                    *o = -2.0 * v;
                }
            }
        }
    }
}

fn column_means(m: &Matrix) -> Vec<f64> {
    let mut mean = vec![0.0f64; m.cols];
    for row in m.iter_rows() {
        for (s, &x) in mean.iter_mut().zip(row) {
            *s += x as f64;
        }
    }
    let n = m.rows.max(1) as f64;
    mean.iter_mut().for_each(|s| *s /= n);
    mean
}

fn search(reference: &Matrix, queries: &Matrix, k: usize, exclude_self: bool) -> Neighbors {
    let nq = queries.rows;
    let mut indices = vec![0u32; nq * k];
    let mut distances = vec![0f32; nq * k];
    if k == 0 || nq == 0 {
        return Neighbors {
            k,
            indices,
            distances,
        };
    }
    assert!(
        reference.rows <= u32::MAX as usize,
        "knn: more than u32::MAX reference rows"
    );
    let mean = column_means(reference);
    let r = centre(reference, &mean);
    let q = if exclude_self {
        None
    } else {
        Some(centre(queries, &mean))
    };
    let qc = q.as_ref().unwrap_or(&r);
    // Norms so large that f32 sums overflow cannot go through the f32 kernel.
    let limit = (f32::MAX / 64.0) as f64;
    let finite = reference.is_finite()
        && queries.is_finite()
        && r.norms.iter().chain(&qc.norms).all(|&n| n < limit);
    let s = Search::new(reference, queries, &r, qc, k, exclude_self);

    indices
        .par_chunks_mut(QUERY_BLOCK * k)
        .zip(distances.par_chunks_mut(QUERY_BLOCK * k))
        .enumerate()
        .for_each(|(b, (idx, dist))| {
            let q0 = b * QUERY_BLOCK;
            let q1 = (q0 + QUERY_BLOCK).min(nq);
            let bests = if finite {
                block_products(&s, q0..q1)
            } else {
                block_exact(&s, q0..q1)
            };
            for (i, best) in bests.into_iter().enumerate() {
                best.write(&mut idx[i * k..(i + 1) * k], &mut dist[i * k..(i + 1) * k]);
            }
        });
    Neighbors {
        k,
        indices,
        distances,
    }
}

/// What every query block of one search shares.
struct Search<'a> {
    reference: &'a Matrix,
    queries: &'a Matrix,
    /// The centred reference rows and the centred query rows (the same for
    /// a self search).
    r: &'a Centred,
    qc: &'a Centred,
    k: usize,
    exclude_self: bool,
    /// Twice the relative `f32` error bound of a squared distance (module docs).
    c: f64,
    /// Each reference row's squared norm times `1 - c` and `1 + c`: its
    /// terms of the lower and upper bounds, computed once per search.
    r_lo: Vec<f32>,
    r_hi: Vec<f32>,
}

impl<'a> Search<'a> {
    fn new(
        reference: &'a Matrix,
        queries: &'a Matrix,
        r: &'a Centred,
        qc: &'a Centred,
        k: usize,
        exclude_self: bool,
    ) -> Search<'a> {
        let u = f32::EPSILON as f64 / 2.0;
        let c = 2.0 * (reference.cols as f64 + 10.0) * u;
        // lower bound of the exact squared distance = qn(1-c) + rn(1-c) - 2 q·r
        let r_lo = r.norms.iter().map(|&x| (x * (1.0 - c)) as f32).collect();
        let r_hi = r.norms.iter().map(|&x| (x * (1.0 + c)) as f32).collect();
        Search {
            reference,
            queries,
            r,
            qc,
            k,
            exclude_self,
            c,
            r_lo,
            r_hi,
        }
    }
}

/// Exact scan without candidate selection (non-finite data).
fn block_exact(s: &Search, rows: std::ops::Range<usize>) -> Vec<Best> {
    let Search {
        reference,
        queries,
        k,
        exclude_self,
        ..
    } = *s;
    let all: Vec<u32> = (0..reference.rows as u32).collect();
    rows.map(|i| {
        let mut best = Best::new(k);
        let cands: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&j| !(exclude_self && j as usize == i))
            .collect();
        best.absorb(queries.row(i), reference, &cands);
        best
    })
    .collect()
}

/// The `k` nearest reference rows of query rows `rows`, through the `f32`
/// products and the candidate filter. Compiled twice: for AVX2 and FMA,
/// used when the CPU has them (checked at run time), and for the baseline
/// target.
fn block_products(s: &Search, rows: std::ops::Range<usize>) -> Vec<Best> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features `block_avx2` is compiled for.
            return unsafe { block_avx2(s, rows) };
        }
    }
    block_body::<false>(s, rows)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2(s: &Search, rows: std::ops::Range<usize>) -> Vec<Best> {
    block_body::<true>(s, rows)
}

#[inline(always)]
fn block_body<const FUSED: bool>(s: &Search, rows: std::ops::Range<usize>) -> Vec<Best> {
    let Search {
        reference,
        queries,
        r,
        qc,
        k,
        exclude_self,
        c,
        ..
    } = *s;
    let (r_lo, r_hi) = (&s.r_lo, &s.r_hi);
    let d = reference.cols;
    let n = reference.rows;
    let mut bests: Vec<Best> = rows.clone().map(|_| Best::new(k)).collect();
    // one kernel tile of queries against one block of reference rows, padded
    // to whole panels: small enough to stay in the L1 cache while filtered
    let mut prod = vec![0f32; MR * REF_BLOCK];
    let mut pending: Vec<u32> = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    let mut qtiles = Vec::new();
    qc.gather_tiles(rows.clone(), &mut qtiles);

    for r0 in (0..n).step_by(REF_BLOCK) {
        let r1 = (r0 + REF_BLOCK).min(n);
        let w = r1 - r0;
        let stride = w.div_ceil(LANES) * LANES;
        for (t, (tile, bests)) in qtiles
            .chunks_exact(d.max(1) * MR)
            .zip(bests.chunks_mut(MR))
            .enumerate()
        {
            if d > 0 {
                products_body::<FUSED>(tile, r, r0, w, &mut prod[..MR * stride], stride);
            } else {
                prod.fill(0.0);
            }
            for (a, best) in bests.iter_mut().enumerate() {
                let qi = t * MR + a;
                let gi = rows.start + qi;
                let row = &mut prod[a * stride..a * stride + w];
                let lo = &r_lo[r0..r1];
                if exclude_self && (r0..r1).contains(&gi) {
                    row[gi - r0] = f32::INFINITY;
                }
                let qn = qc.norms[gi];
                let mut tau = best.threshold();
                if tau.is_infinite() {
                    // Bootstrap: the k-th smallest upper bound in this block
                    // bounds the k-th exact distance from above.
                    let needed = k - best.kept.len();
                    let qh = (qn * (1.0 + c)) as f32;
                    if let Some(t) = kth_upper_bound(row, &r_hi[r0..r1], qh, needed, &mut scratch) {
                        // the f32 sums add at most a few ulps: absorbed by the 2x slack
                        tau = t as f64;
                        if !best.kept.is_empty() {
                            tau = tau.max(best.kept.last().map_or(0.0, |x| x.0));
                        }
                    }
                }
                pending.clear();
                if tau.is_infinite() {
                    pending.extend(
                        (r0..r1)
                            .filter(|&j| row[j - r0].is_finite())
                            .map(|j| j as u32),
                    );
                } else {
                    let thr = ((tau - qn * (1.0 - c)) as f32).next_up();
                    collect_below(row, lo, thr, r0, &mut pending);
                }
                best.absorb(queries.row(gi), reference, &pending);
            }
        }
    }
    bests
}

/// The `needed`-th smallest upper bound `row[j] + hi[j] + qh` over the
/// finite entries of `row`, or `None` when there are fewer than `needed`.
/// An insertion into a short sorted list (`top`, reused): after the first
/// few entries almost every value fails the one comparison with the
/// current `needed`-th, so this costs about one pass over the row.
#[inline(always)]
fn kth_upper_bound(
    row: &[f32],
    hi: &[f32],
    qh: f32,
    needed: usize,
    top: &mut Vec<f32>,
) -> Option<f32> {
    top.clear();
    if needed == 0 {
        return None;
    }
    let insert = |top: &mut Vec<f32>, v: f32| {
        if top.len() == needed {
            top.pop();
        }
        let at = top.partition_point(|&t| t <= v);
        top.insert(at, v);
    };
    // fill: the first `needed` finite values
    let mut j = 0;
    while top.len() < needed && j < row.len() {
        let v = row[j] + hi[j] + qh;
        if v.is_finite() {
            insert(top, v);
        }
        j += 1;
    }
    if top.len() < needed {
        return None;
    }
    // then only values below the current `needed`-th (false for NaN and
    // infinities), tested a fixed chunk of lanes at a time (vectorises)
    const CHUNK: usize = 16;
    let mut worst = top[needed - 1];
    let (row, hi) = (&row[j..], &hi[j..]);
    let split = row.len() - row.len() % CHUNK;
    for (rc, hc) in row[..split]
        .chunks_exact(CHUNK)
        .zip(hi[..split].chunks_exact(CHUNK))
    {
        let mut any = false;
        for l in 0..CHUNK {
            any |= rc[l] + hc[l] + qh < worst;
        }
        if any {
            for l in 0..CHUNK {
                let v = rc[l] + hc[l] + qh;
                if v < worst {
                    insert(top, v);
                    worst = top[needed - 1];
                }
            }
        }
    }
    for (&p, &h) in row[split..].iter().zip(&hi[split..]) {
        let v = p + h + qh;
        if v < worst {
            insert(top, v);
            worst = top[needed - 1];
        }
    }
    Some(worst)
}

/// Pushes `offset + j` for every `j` with `row[j] + lo[j] <= thr`.
#[inline(always)]
fn collect_below(row: &[f32], lo: &[f32], thr: f32, offset: usize, out: &mut Vec<u32>) {
    const CHUNK: usize = 16;
    let split = row.len() - row.len() % CHUNK;
    let (rh, rt) = row.split_at(split);
    let (lh, lt) = lo.split_at(split);
    for (c, (rc, lc)) in rh
        .chunks_exact(CHUNK)
        .zip(lh.chunks_exact(CHUNK))
        .enumerate()
    {
        // a branch-free test over fixed lanes (vectorises); most chunks hold
        // no candidate
        let mut any = false;
        for l in 0..CHUNK {
            any |= rc[l] + lc[l] <= thr;
        }
        if any {
            for l in 0..CHUNK {
                if rc[l] + lc[l] <= thr {
                    out.push((offset + c * CHUNK + l) as u32);
                }
            }
        }
    }
    for (l, (&p, &q)) in rt.iter().zip(lt).enumerate() {
        if p + q <= thr {
            out.push((offset + split + l) as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition: all distances in f64, sorted by (distance, index).
    fn naive(reference: &Matrix, queries: &Matrix, k: usize, exclude_self: bool) -> Neighbors {
        let mut indices = Vec::new();
        let mut distances = Vec::new();
        let k = if exclude_self {
            k.min(reference.rows.saturating_sub(1))
        } else {
            k.min(reference.rows)
        };
        for i in 0..queries.rows {
            let mut all: Vec<(f64, u32)> = (0..reference.rows)
                .filter(|&j| !(exclude_self && i == j))
                .map(|j| {
                    let s: f64 = queries
                        .row(i)
                        .iter()
                        .zip(reference.row(j))
                        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
                        .sum();
                    (s, j as u32)
                })
                .collect();
            all.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
            for &(d2, j) in &all[..k] {
                indices.push(j);
                distances.push(d2.sqrt() as f32);
            }
        }
        Neighbors {
            k,
            indices,
            distances,
        }
    }

    #[test]
    fn duplicates_are_at_distance_zero_and_ties_go_to_the_smaller_index() {
        // rows 0, 2, 4 identical; rows 1 and 3 at the same distance from 0
        let m = Matrix::new(5, 2, vec![1.0, 1.0, 2.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        let nn = knn_self(&m, 4);
        assert_eq!(
            nn.of(0),
            (&[2u32, 4, 1, 3][..], &[0.0f32, 0.0, 1.0, 1.0][..])
        );
        assert_eq!(nn.of(4).0, &[0, 2, 1, 3]);
        assert_eq!(
            nn.of(1),
            (&[0u32, 2, 4, 3][..], &[1.0f32, 1.0, 1.0, 2.0][..])
        );
    }

    #[test]
    fn k_is_capped_and_empty_inputs_work() {
        let m = Matrix::new(3, 1, vec![0.0, 1.0, 3.0]);
        let nn = knn_self(&m, 10);
        assert_eq!(nn.k, 2);
        assert_eq!(nn.len(), 3);
        assert_eq!(nn.of(2).0, &[1, 0]);
        let q = Matrix::new(1, 1, vec![2.5]);
        let nn = knn(&m, &q, 10);
        assert_eq!(nn.k, 3);
        assert_eq!(nn.of(0), (&[2u32, 1, 0][..], &[0.5f32, 1.5, 2.5][..]));
        assert!(knn_self(&Matrix::zeros(0, 3), 5).is_empty());
        assert_eq!(knn_self(&Matrix::zeros(1, 3), 5).k, 0);
        // no columns: everything at distance 0, ties by index
        let nn = knn_self(&Matrix::zeros(4, 0), 2);
        assert_eq!(nn.of(3).0, &[0, 1]);
    }

    #[test]
    fn non_finite_rows_rank_last() {
        let m = Matrix::new(4, 1, vec![0.0, f32::NAN, 2.0, f32::INFINITY]);
        let nn = knn_self(&m, 3);
        assert_eq!(nn.of(0).0, &[2, 3, 1]);
        assert!(nn.of(0).1[2].is_nan());
    }

    #[test]
    fn large_blocks_match_the_definition() {
        // more rows than one reference block and one query block, with a
        // large offset and many exact duplicates
        let n = 2 * REF_BLOCK + 77;
        let d = 5;
        let mut data = Vec::with_capacity(n * d);
        let mut s = 12345u64;
        for i in 0..n {
            for _ in 0..d {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 40) % 50) as f32 * 0.01 + 1e4;
                data.push(if i % 7 == 0 { 1e4 } else { v });
            }
        }
        let m = Matrix::new(n, d, data);
        assert_eq!(knn_self(&m, 6), naive(&m, &m, 6, true));
        let q = m.select_rows(&(0..300).map(|i| (i * 13) % n).collect::<Vec<_>>());
        assert_eq!(knn(&m, &q, 6), naive(&m, &q, 6, false));
    }

    #[test]
    fn the_baseline_kernel_agrees_with_the_dispatched_one() {
        // The dispatched build is the AVX2 one on most machines: check the
        // baseline build (no fused multiply-add) finds the same neighbours.
        let (n, d, k) = (1500, 7, 6);
        let data: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919) % 211) as f32 * 0.37)
            .collect();
        let m = Matrix::new(n, d, data);
        let r = centre(&m, &column_means(&m));
        let kept = |bests: Vec<Best>| -> Vec<Vec<(f64, u32)>> {
            bests.into_iter().map(|b| b.kept).collect()
        };
        let s = Search::new(&m, &m, &r, &r, k, true);
        for rows in [0..256, 300..301, 1490..1500] {
            let dispatched = kept(block_products(&s, rows.clone()));
            let baseline = kept(block_body::<false>(&s, rows));
            assert_eq!(dispatched, baseline);
        }
        assert_eq!(knn_self(&m, k), naive(&m, &m, k, true));
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let n = 700;
        let data: Vec<f32> = (0..n * 3).map(|i| ((i * 7919) % 101) as f32).collect();
        let m = Matrix::new(n, 3, data);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| knn_self(&m, 5));
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| knn_self(&m, 5));
        assert_eq!(one, three);
    }

    fn matrix(
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
    ) -> impl Strategy<Value = Matrix> {
        (
            rows,
            cols,
            prop_oneof![Just(0.0f32), Just(1e4f32), -50.0f32..50.0],
        )
            .prop_flat_map(|(n, d, offset)| {
                // values on a coarse grid give many exact ties and duplicates
                let cell = prop_oneof![(-3i32..4).prop_map(|v| v as f32), -3.0f32..3.0,];
                (
                    proptest::collection::vec(cell, n * d),
                    proptest::collection::vec(0..n.max(1), n / 3),
                )
                    .prop_map(move |(v, dup)| {
                        let mut m = Matrix::new(n, d, v.iter().map(|x| x + offset).collect());
                        // copy some rows over others: exact duplicates
                        for (t, &src) in dup.iter().enumerate() {
                            let dst = (t * 5 + 1) % n;
                            let row = m.row(src).to_vec();
                            m.row_mut(dst).copy_from_slice(&row);
                        }
                        m
                    })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn knn_self_equals_the_exact_definition(m in matrix(1..300, 1..12), k in 1usize..12) {
            prop_assert_eq!(knn_self(&m, k), naive(&m, &m, k, true));
        }

        #[test]
        fn knn_equals_the_exact_definition(
            m in matrix(1..300, 3..4),
            q in matrix(1..60, 3..4),
            k in 1usize..12,
        ) {
            prop_assert_eq!(knn(&m, &q, k), naive(&m, &q, k, false));
        }
    }
}
