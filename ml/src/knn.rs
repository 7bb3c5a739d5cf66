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
//! query rows are scaled by -2 (exact) and each sum starts from the
//! reference row's norm term, so the kernel's output is already the lower
//! bound less the query's term and the filter is one comparison per pair.
//! The products of one query tile and one reference block (6 x 1024) stay
//! in the L1 cache while they are filtered. A query's first threshold
//! comes from the minima of 64 groups of its first block's upper bounds
//! (one vectorised pass; the k-th smallest minimum is attained by k rows).
//!
//! A self search over 1,025 to 16,384 rows computes each product once for
//! both rows of the pair (`symmetric`): about half the products.
//!
//! The candidate filter keeps about `k (1 + ln(n / 1024))` rows per query
//! for exact measurement. Timings: `benches/README.md`.
//!
//! Error bound used: with `u = 2⁻²⁴` and `d` columns, the computed
//! `f32` squared distance of centred rows `q`, `r` differs from the exact
//! one by at most about `(2d + 12) u (||q||² + ||r||²)`: casting to f32,
//! the norms, the two additions, and the sum's `γ_(d+1)` bound, which
//! counts twice because the kernel starts each sum from the reference
//! row's norm term (up to `||r||²`) before adding the `d` products (up to
//! `||q||² + ||r||²` in all). The filter uses twice that.

use std::cmp::Ordering;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering as AtomicOrdering};

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
/// The most rows for which a self search is symmetric: it holds every row's
/// running best and a band's offers at once (about 170 bytes per row at
/// k = 5), a trade of memory for time (`benches/README.md` has the figures).
const SYMMETRIC_MAX_ROWS: usize = 16 * REF_BLOCK;
/// The most neighbours per row for which a self search is symmetric: its
/// first thresholds come from the row's own block of [`REF_BLOCK`] rows,
/// which must hold many more than `k`.
const SYMMETRIC_MAX_K: usize = REF_BLOCK / 16;
/// Offers a block keeps before it adds them to the search's count.
const OFFER_SYNC: usize = 1024;
/// Offers the symmetric search allows beyond its expected rate.
const OFFER_SLACK: usize = 16 * OFFER_SYNC;

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

/// Exact squared distance of two raw rows, in `f64`: four partial sums
/// (columns `p`, `p + 4`, ... in partial sum `p % 4`), added as
/// `(s0 + s1) + (s2 + s3)`, so that several additions are in flight (the
/// exact measurements were about a tenth of the search's time). This is the
/// distance the search ranks by; the squares of `f32` differences are
/// exact in `f64`, so it differs from any other summation order by a few
/// `f64` ulps.
#[inline]
pub(crate) fn exact_sq(a: &[f32], b: &[f32]) -> f64 {
    let mut acc = [0f64; 4];
    let (ca, ta) = a.as_chunks::<4>();
    let (cb, tb) = b.as_chunks::<4>();
    for (x, y) in ca.iter().zip(cb) {
        for l in 0..4 {
            let d = x[l] as f64 - y[l] as f64;
            acc[l] += d * d;
        }
    }
    for (l, (&x, &y)) in ta.iter().zip(tb).enumerate() {
        let d = x as f64 - y as f64;
        acc[l] += d * d;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Orders `(squared distance, index)`; NaN after everything.
#[inline]
fn by_distance_then_index(a: &(f64, u32), b: &(f64, u32)) -> Ordering {
    match a.0.partial_cmp(&b.0) {
        Some(Ordering::Equal) => a.1.cmp(&b.1),
        Some(o) => o,
        // at least one NaN: it goes last
        None => a.0.is_nan().cmp(&b.0.is_nan()).then(a.1.cmp(&b.1)),
    }
}

/// One query's running result: the best `k` exactly measured candidates.
struct Best {
    kept: Vec<(f64, u32)>,
    k: usize,
}

impl Best {
    fn new(k: usize) -> Best {
        Best {
            kept: Vec::with_capacity(k),
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

    /// Measures `candidates` exactly and keeps the best `k` overall (never
    /// more than `k` held: the symmetric search holds every row's at once).
    fn absorb(&mut self, query: &[f32], reference: &Matrix, candidates: &[u32]) {
        for &j in candidates {
            self.offer((exact_sq(query, reference.row(j as usize)), j));
        }
    }

    /// Keeps an exactly measured candidate if it is among the best `k`.
    fn offer(&mut self, c: (f64, u32)) {
        if self.kept.len() == self.k {
            if by_distance_then_index(&c, &self.kept[self.k - 1]).is_ge() {
                return;
            }
            self.kept.pop();
        }
        let at = self
            .kept
            .partition_point(|x| by_distance_then_index(x, &c).is_lt());
        self.kept.insert(at, c);
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
    /// Rows `rows`, times -2, in the kernel's query layout: tiles of [`MR`]
    /// rows, column by column (element (row `a0 + a`, column `p`) of tile
    /// `t` at `out[(t * d + p) * MR + a]`), the last tile padded with zero
    /// rows. Scaling by -2 is exact, so the kernel's products are exactly
    /// -2 times those of the rows themselves, and it needs no multiply of
    /// its own.
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
                out[(t * d + p) * MR + lane] = -2.0 * self.panels[base + p * LANES];
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

/// `out[a * stride + j] = init[r0 + j] + q_a · r_(r0 + j)` for the query rows
/// in `qt` (the layout of [`Centred::gather_tiles`]: scaled by -2, padding
/// rows included) and the reference rows `r0..r0 + w` (`r0` a multiple of
/// [`LANES`]), padded to a multiple of [`LANES`]: `stride` and `init`'s
/// length are at least that. Starting the sums from `init` (the reference
/// row's term of the lower bound) leaves the filter a plain comparison.
///
/// A register tile of [`MR`] queries by [`LANES`] reference rows per step;
/// `FUSED`: multiply-adds are fused (the AVX2 + FMA build of
/// [`block_products`]). The `f32` error bound in the module docs holds for
/// any order of the additions, fused or not.
#[inline(always)]
fn products_body<const FUSED: bool>(
    qt: &[f32],
    r: &Centred,
    init: &[f32],
    r0: usize,
    w: usize,
    out: &mut [f32],
    stride: usize,
) {
    let d = r.d;
    let padded = w.div_ceil(LANES) * LANES;
    let panels = &r.panels[r0 * d..(r0 + padded) * d];
    let (init, _) = init[r0..r0 + padded].as_chunks::<LANES>();
    for (t, tile) in qt.chunks_exact(d * MR).enumerate() {
        let (tile, _) = tile.as_chunks::<MR>();
        for ((b, panel), init) in panels.chunks_exact(d * LANES).enumerate().zip(init) {
            let (panel, _) = panel.as_chunks::<LANES>();
            // fixed-size rows: the accumulators stay in registers
            let mut acc = [*init; MR];
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
                    *o = v;
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
    let n = reference.rows;
    let query_block = |b: usize| b * QUERY_BLOCK..((b + 1) * QUERY_BLOCK).min(nq);
    let fresh = |b: usize| -> Vec<Best> { query_block(b).map(|_| Best::new(k)).collect() };
    let blocks = indices
        .par_chunks_mut(QUERY_BLOCK * k)
        .zip(distances.par_chunks_mut(QUERY_BLOCK * k))
        .enumerate();
    let write = |bests: Vec<Best>, idx: &mut [u32], dist: &mut [f32]| {
        for (i, best) in bests.into_iter().enumerate() {
            best.write(&mut idx[i * k..(i + 1) * k], &mut dist[i * k..(i + 1) * k]);
        }
    };
    if !finite {
        blocks.for_each(|(b, (idx, dist))| write(block_exact(&s, query_block(b)), idx, dist));
    } else if let Some(all) =
        (exclude_self && n > REF_BLOCK && n <= SYMMETRIC_MAX_ROWS && k <= SYMMETRIC_MAX_K)
            .then(|| symmetric(&s, query_block, fresh))
            .flatten()
    {
        blocks
            .zip(all)
            .for_each(|((_, (idx, dist)), bests)| write(bests, idx, dist));
    } else {
        // each block's results written as soon as they are known (holding
        // them all would cost a `Best` per row at once)
        blocks.for_each(|(b, (idx, dist))| {
            let mut bests = fresh(b);
            block_products(&s, query_block(b), &mut bests, 0..n, None);
            write(bests, idx, dist);
        });
    }
    Neighbors {
        k,
        indices,
        distances,
    }
}

/// The self search over `n` rows, computing each product once for both
/// rows of the pair (about half the products of the plain search).
///
/// 1. Each query block searches its own reference block (all pairs within
///    it, both ways), which gives every row a finite k-th distance.
/// 2. In bands of reference blocks after its own (the next one, the two
///    after it, the four after those, ...), each query block's rows take
///    candidates as in the plain search, and each product also offers the
///    query row to the reference row ([`Columns`]), against that row's
///    k-th distance at the start of the band.
/// 3. After each band, the offers are absorbed by the rows they were made
///    to, so that the next band's thresholds are tighter.
///
/// Every pair of rows in different reference blocks is measured exactly
/// once, each row seeing the other; pairs within a block in step 1. The
/// result is the plain search's: the exact k nearest by (distance, index).
///
/// When the rows come in no particular order, a row has seen about twice
/// as many blocks at the start of a band as the band offers it, so it keeps
/// about `k / 2` offers per band: `k / 2 log2(n / 1024)` in all. Duplicated
/// rows spread over many blocks make far more (each copy beats the later
/// copies' neighbours by index, so the offers grow with the square of the
/// copies). When a band's offers pass twice the rate of fixed thresholds
/// (`k / 1024` of the pairs tested, plus [`OFFER_SLACK`]) or `4 k n` (they
/// are held until the band ends), the search gives up (`None`) and the
/// caller runs the plain search.
fn symmetric(
    s: &Search,
    query_block: impl Fn(usize) -> std::ops::Range<usize> + Sync,
    fresh: impl Fn(usize) -> Vec<Best> + Sync,
) -> Option<Vec<Vec<Best>>> {
    let n = s.reference.rows;
    let blocks = n.div_ceil(QUERY_BLOCK);
    let own = |b: usize| {
        let r0 = b * QUERY_BLOCK / REF_BLOCK * REF_BLOCK;
        r0..(r0 + REF_BLOCK).min(n)
    };
    let mut bests: Vec<Vec<Best>> = (0..blocks)
        .into_par_iter()
        .map(|b| {
            let mut bests = fresh(b);
            block_products(s, query_block(b), &mut bests, own(b), None);
            bests
        })
        .collect();
    let over = AtomicBool::new(false);
    let super_blocks = n.div_ceil(REF_BLOCK);
    // bands of reference blocks 1, 2-3, 4-7, ... blocks after a row's own
    let mut near = 1;
    while near < super_blocks {
        let far = (2 * near).min(super_blocks);
        let total = (AtomicUsize::new(0), AtomicUsize::new(0));
        let tau: Vec<f64> = bests.iter().flatten().map(Best::threshold).collect();
        // rounded up, so that the f32 filter keeps every row the f64 test keeps
        let tau32: Vec<f32> = tau
            .iter()
            .map(|&t| {
                let t32 = t as f32;
                if (t32 as f64) < t { t32.next_up() } else { t32 }
            })
            .collect();
        let offers: Vec<Vec<(u32, u32, f64)>> = bests
            .par_iter_mut()
            .enumerate()
            .map(|(b, bests)| {
                let mut cols = Columns {
                    tau: &tau,
                    tau32: &tau32,
                    out: Vec::new(),
                    unsynced: (0, 0),
                    total: &total,
                    over: &over,
                    k: s.k,
                    cap: 4 * s.k * n,
                };
                let first = own(b).start / REF_BLOCK;
                let band = ((first + near) * REF_BLOCK).min(n)..((first + far) * REF_BLOCK).min(n);
                if !band.is_empty() {
                    block_products(s, query_block(b), bests, band, Some(&mut cols));
                }
                cols.out.sort_unstable_by_key(|o| o.0);
                cols.out
            })
            .collect();
        if over.load(AtomicOrdering::Relaxed) {
            return None;
        }
        bests.par_iter_mut().enumerate().for_each(|(b, bests)| {
            let rows = query_block(b);
            for o in &offers {
                let from = o.partition_point(|x| (x.0 as usize) < rows.start);
                let to = o.partition_point(|x| (x.0 as usize) < rows.end);
                for &(j, i, d2) in &o[from..to] {
                    bests[j as usize - rows.start].offer((d2, i));
                }
            }
        });
        near = far;
    }
    Some(bests)
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
    /// Each reference row's squared norm times `1 - c`, its term of the lower
    /// bound (zeros past the last row, up to a whole panel), and `2c` times
    /// the norm, what turns the lower bound into the upper one. Computed once
    /// per search.
    r_lo: Vec<f32>,
    r_span: Vec<f32>,
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
        let c = 2.0 * (2.0 * reference.cols as f64 + 12.0) * u;
        // lower bound of the exact squared distance = qn(1-c) + rn(1-c) - 2 q·r
        let mut r_lo: Vec<f32> = r.norms.iter().map(|&x| (x * (1.0 - c)) as f32).collect();
        r_lo.resize(r.norms.len().div_ceil(LANES) * LANES, 0.0);
        let r_span = r.norms.iter().map(|&x| (x * 2.0 * c) as f32).collect();
        Search {
            reference,
            queries,
            r,
            qc,
            k,
            exclude_self,
            c,
            r_lo,
            r_span,
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

/// Query rows `rows`' nearest among the reference rows `refs` (a range of
/// whole reference blocks), through the `f32` products and the candidate
/// filter, absorbed into `bests` (one per query row, carried over from
/// earlier ranges). With `columns`, each product also offers the query row
/// to the reference row (see [`Columns`]). Compiled twice: for AVX2 and FMA,
/// used when the CPU has them (checked at run time), and for the baseline
/// target.
fn block_products(
    s: &Search,
    rows: std::ops::Range<usize>,
    bests: &mut [Best],
    refs: std::ops::Range<usize>,
    columns: Option<&mut Columns>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features `block_avx2` is compiled for.
            return unsafe { block_avx2(s, rows, bests, refs, columns) };
        }
    }
    block_body::<false>(s, rows, bests, refs, columns)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn block_avx2(
    s: &Search,
    rows: std::ops::Range<usize>,
    bests: &mut [Best],
    refs: std::ops::Range<usize>,
    columns: Option<&mut Columns>,
) {
    block_body::<true>(s, rows, bests, refs, columns)
}

#[inline(always)]
fn block_body<const FUSED: bool>(
    s: &Search,
    rows: std::ops::Range<usize>,
    bests: &mut [Best],
    refs: std::ops::Range<usize>,
    mut columns: Option<&mut Columns>,
) {
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
    let (r_lo, r_span) = (&s.r_lo, &s.r_span);
    let d = reference.cols;
    // one kernel tile of queries against one block of reference rows, padded
    // to whole panels: small enough to stay in the L1 cache while filtered
    let mut prod = vec![0f32; MR * REF_BLOCK];
    let mut pending: Vec<u32> = Vec::new();
    let mut offered: Vec<u32> = Vec::new();
    let mut scratch: Vec<f32> = Vec::new();
    let mut qtiles = Vec::new();
    qc.gather_tiles(rows.clone(), &mut qtiles);

    for r0 in refs.clone().step_by(REF_BLOCK) {
        if columns.as_deref().is_some_and(Columns::stopped) {
            return;
        }
        let r1 = (r0 + REF_BLOCK).min(refs.end);
        let w = r1 - r0;
        let stride = w.div_ceil(LANES) * LANES;
        for (t, (tile, bests)) in qtiles
            .chunks_exact(d.max(1) * MR)
            .zip(bests.chunks_mut(MR))
            .enumerate()
        {
            if d > 0 {
                products_body::<FUSED>(tile, r, r_lo, r0, w, &mut prod[..MR * stride], stride);
            } else {
                // no columns: every norm, so every lower bound, is 0
                prod.fill(0.0);
            }
            for (a, best) in bests.iter_mut().enumerate() {
                let qi = t * MR + a;
                let gi = rows.start + qi;
                let row = &mut prod[a * stride..a * stride + w];
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
                    let span = &r_span[r0..r1];
                    let bound = group_upper_bound(row, span, qh, needed)
                        .or_else(|| kth_upper_bound(row, span, qh, needed, &mut scratch));
                    if let Some(t) = bound {
                        // the f32 sums add at most a few ulps: absorbed by the 2x slack
                        tau = t as f64;
                        if !best.kept.is_empty() {
                            tau = tau.max(best.kept.last().map_or(0.0, |x| x.0));
                        }
                    }
                }
                pending.clear();
                offered.clear();
                let q_lo = qn * (1.0 - c);
                let thr = if tau.is_infinite() {
                    // no threshold yet: every finite product is a candidate
                    pending.extend(
                        (r0..r1)
                            .filter(|&j| row[j - r0].is_finite())
                            .map(|j| j as u32),
                    );
                    f32::NEG_INFINITY
                } else {
                    ((tau - q_lo) as f32).next_up()
                };
                match columns.as_deref() {
                    None => collect_below(row, thr, r0, &mut pending),
                    // both sides' tests in one pass over the products
                    Some(cols) => {
                        let each = &cols.tau32[r0..r1];
                        collect_both(row, thr, q_lo as f32, each, r0, &mut pending, &mut offered);
                    }
                }
                best.absorb(queries.row(gi), reference, &pending);
                if let Some(cols) = columns.as_deref_mut() {
                    cols.offer(queries.row(gi), gi, &offered, w, reference);
                }
            }
        }
    }
}

/// The column side of the symmetric self search: while query row `i`'s
/// products with reference rows `j` are in hand, row `j` (of a later
/// reference block, whose own search never meets row `i`) gets `i` as a
/// candidate when `i` passes `j`'s threshold. The thresholds are fixed for
/// the band (each row's k-th distance when it started), so the offers are
/// measured exactly at once and only those within the threshold are kept,
/// to be absorbed by `j` after the band.
struct Columns<'a> {
    /// Row `j`'s threshold, the exact squared distance.
    tau: &'a [f64],
    /// The same, rounded up to `f32`, for the filter.
    tau32: &'a [f32],
    /// Kept offers `(j, i, squared distance)`.
    out: Vec<(u32, u32, f64)>,
    /// Offers kept and pairs tested by this block, not yet added to `total`.
    unsynced: (usize, usize),
    /// Offers kept and pairs tested by all blocks (updated every
    /// [`OFFER_SYNC`] offers).
    total: &'a (AtomicUsize, AtomicUsize),
    /// Set when the offers outgrew the pairs tested (see [`symmetric`]):
    /// every block stops.
    over: &'a AtomicBool,
    /// Neighbours wanted per row.
    k: usize,
    /// The most offers a band may keep.
    cap: usize,
}

impl Columns<'_> {
    /// Offers query row `i` (raw values `query`) to the reference rows
    /// `found`, those that passed the filter.
    #[inline(always)]
    fn offer(&mut self, query: &[f32], i: usize, found: &[u32], tested: usize, reference: &Matrix) {
        self.unsynced.1 += tested;
        for &j in found {
            let d2 = exact_sq(query, reference.row(j as usize));
            if d2 <= self.tau[j as usize] {
                self.out.push((j, i as u32, d2));
                self.unsynced.0 += 1;
            }
        }
        if self.unsynced.0 >= OFFER_SYNC {
            let (offers, pairs) = std::mem::take(&mut self.unsynced);
            let offers = offers + self.total.0.fetch_add(offers, AtomicOrdering::Relaxed);
            let pairs = pairs + self.total.1.fetch_add(pairs, AtomicOrdering::Relaxed);
            // a pair passes with probability at most about k / REF_BLOCK
            // when the rows come in no particular order; and the band's
            // offers, all held until it ends, stay within `cap`
            if offers > OFFER_SLACK + 2 * self.k * pairs / REF_BLOCK || offers > self.cap {
                self.over.store(true, AtomicOrdering::Relaxed);
            }
        }
    }

    /// Whether the search gave up (too many offers).
    fn stopped(&self) -> bool {
        self.over.load(AtomicOrdering::Relaxed)
    }
}

/// Groups of [`group_upper_bound`]: one minimum per lane of eight AVX2 registers.
const GROUPS: usize = 64;

/// A cheap upper bound of the `needed`-th smallest `row[j] + span[j] + qh`:
/// entry `j` belongs to group `j % GROUPS`, and the `needed`-th smallest of
/// the group minima is attained by `needed` distinct entries, so at least
/// `needed` reference rows lie within it. One vectorised pass of additions
/// and minima (no sorted list to maintain); with `needed` much smaller than
/// [`GROUPS`] the bound is close to the exact order statistic. `None` when
/// `needed` is over a quarter of the groups (the bound would be loose) or
/// fewer than `needed` groups hold a finite entry.
#[inline(always)]
fn group_upper_bound(row: &[f32], hi: &[f32], qh: f32, needed: usize) -> Option<f32> {
    if needed == 0 || needed > GROUPS / 4 {
        return None;
    }
    let mut mins = [f32::INFINITY; GROUPS];
    let (rows, row_tail) = row.as_chunks::<GROUPS>();
    let (his, hi_tail) = hi.as_chunks::<GROUPS>();
    for (rc, hc) in rows.iter().zip(his) {
        for l in 0..GROUPS {
            // `min` keeps the other operand when one is NaN
            mins[l] = mins[l].min(rc[l] + hc[l]);
        }
    }
    for (l, (&p, &h)) in row_tail.iter().zip(hi_tail).enumerate() {
        mins[l] = mins[l].min(p + h);
    }
    // the `needed` smallest minima, sorted, by insertion (a general
    // selection took longer than the pass above)
    let mut top = [f32::INFINITY; GROUPS / 4];
    let top = &mut top[..needed];
    for &v in &mins {
        if v < top[needed - 1] {
            let at = top.partition_point(|&t| t <= v);
            top.copy_within(at..needed - 1, at + 1);
            top[at] = v;
        }
    }
    let bound = top[needed - 1] + qh;
    bound.is_finite().then_some(bound)
}

/// The `needed`-th smallest upper bound `row[j] + span[j] + qh` over the
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

/// Pushes `offset + j` for every `j` with `row[j] <= thr`.
#[inline(always)]
fn collect_below(row: &[f32], thr: f32, offset: usize, out: &mut Vec<u32>) {
    const CHUNK: usize = 16;
    let (chunks, tail) = row.as_chunks::<CHUNK>();
    for (c, rc) in chunks.iter().enumerate() {
        // a branch-free test over fixed lanes (vectorises); most chunks hold
        // no candidate
        if rc.iter().fold(false, |any, &v| any | (v <= thr)) {
            for (l, &v) in rc.iter().enumerate() {
                if v <= thr {
                    out.push((offset + c * CHUNK + l) as u32);
                }
            }
        }
    }
    let split = chunks.len() * CHUNK;
    for (l, &v) in tail.iter().enumerate() {
        if v <= thr {
            out.push((offset + split + l) as u32);
        }
    }
}

/// [`collect_below`] into `rows`, and the column side's test into `cols`, in
/// one pass: `offset + j` for every `j` with `row[j] <= thr`, and for every
/// `j` with `row[j] + add <= each[j]`.
#[inline(always)]
fn collect_both(
    row: &[f32],
    thr: f32,
    add: f32,
    each: &[f32],
    offset: usize,
    rows: &mut Vec<u32>,
    cols: &mut Vec<u32>,
) {
    const CHUNK: usize = 16;
    let (chunks, tail) = row.as_chunks::<CHUNK>();
    let (eachs, each_tail) = each.as_chunks::<CHUNK>();
    let test = |v: f32, t: f32| (v <= thr, v + add <= t);
    for (c, (rc, tc)) in chunks.iter().zip(eachs).enumerate() {
        let mut any = false;
        for l in 0..CHUNK {
            let (a, b) = test(rc[l], tc[l]);
            any |= a | b;
        }
        if any {
            for l in 0..CHUNK {
                let (a, b) = test(rc[l], tc[l]);
                let j = (offset + c * CHUNK + l) as u32;
                if a {
                    rows.push(j);
                }
                if b {
                    cols.push(j);
                }
            }
        }
    }
    let split = chunks.len() * CHUNK;
    for (l, (&v, &t)) in tail.iter().zip(each_tail).enumerate() {
        let (a, b) = test(v, t);
        let j = (offset + split + l) as u32;
        if a {
            rows.push(j);
        }
        if b {
            cols.push(j);
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The definition: all distances (as `exact_sq` sums them), sorted by
    /// (distance, index).
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
                .map(|j| (exact_sq(queries.row(i), reference.row(j)), j as u32))
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
    fn the_exact_distance_is_the_f64_sum_of_squares() {
        let a: Vec<f32> = (0..23).map(|i| (i as f32 * 0.37).sin() * 1e3).collect();
        let b: Vec<f32> = (0..23).map(|i| (i as f32 * 1.91).cos() * 1e3).collect();
        for d in 0..=23 {
            let plain: f64 = (0..d).map(|p| (a[p] as f64 - b[p] as f64).powi(2)).sum();
            let got = exact_sq(&a[..d], &b[..d]);
            assert!(
                (got - plain).abs() <= 1e-14 * plain,
                "{d}: {got} vs {plain}"
            );
        }
        assert_eq!(exact_sq(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
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
        // more neighbours than the symmetric search takes
        let k = SYMMETRIC_MAX_K + 3;
        assert_eq!(knn_self(&m, k), naive(&m, &m, k, true));
        let q = m.select_rows(&(0..300).map(|i| (i * 13) % n).collect::<Vec<_>>());
        assert_eq!(knn(&m, &q, 6), naive(&m, &q, 6, false));
    }

    /// Whether the symmetric self search of `m` answers (does not give way).
    fn symmetric_answers(m: &Matrix, k: usize) -> bool {
        let n = m.rows;
        let r = centre(m, &column_means(m));
        let s = Search::new(m, m, &r, &r, k, true);
        let query_block = |b: usize| b * QUERY_BLOCK..((b + 1) * QUERY_BLOCK).min(n);
        let fresh = |b: usize| query_block(b).map(|_| Best::new(k)).collect::<Vec<_>>();
        symmetric(&s, query_block, fresh).is_some()
    }

    #[test]
    fn the_symmetric_self_search_matches_the_definition() {
        // Over one reference block: each product serves both rows. A last
        // block of 3 rows (fewer than k + 1) leaves its rows without a
        // threshold from their own block; some rows are exact copies of
        // others (in other blocks), some coordinates tie.
        for (n, k) in [
            (3 * REF_BLOCK, 5),
            (2 * REF_BLOCK + 3, 6),
            (REF_BLOCK + 500, 1),
            // bands of 1, 2 and 3 blocks
            (6 * REF_BLOCK + 100, 3),
        ] {
            assert!(n > REF_BLOCK && n <= SYMMETRIC_MAX_ROWS);
            let d = 4;
            let mut x = 7u64;
            let mut data: Vec<f32> = (0..n * d)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((x >> 40) % 2000) as f32 * 0.01
                })
                .collect();
            for i in (0..n).step_by(97).skip(1) {
                let src = (i * 31) % n;
                data.copy_within(src * d..(src + 1) * d, i * d);
            }
            let m = Matrix::new(n, d, data);
            // the symmetric search answers (it does not give way)
            assert!(symmetric_answers(&m, k));
            assert_eq!(knn_self(&m, k), naive(&m, &m, k, true), "{n} rows, k = {k}");
        }
    }

    #[test]
    fn many_copies_of_a_row_make_the_symmetric_search_give_way() {
        // 4 distinct rows, each copied 1,024 times across every block:
        // each copy beats the later copies' neighbours by index, so the
        // offers would grow with the square of the copies.
        let (n, k) = (4 * REF_BLOCK, 5);
        let data: Vec<f32> = (0..n * 2).map(|i| ((i / 2) % 4) as f32).collect();
        let m = Matrix::new(n, 2, data);
        assert!(!symmetric_answers(&m, k));
        // the plain search answers instead
        assert_eq!(knn_self(&m, k), naive(&m, &m, k, true));
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
            let fresh = || rows.clone().map(|_| Best::new(k)).collect::<Vec<_>>();
            let (mut dispatched, mut baseline) = (fresh(), fresh());
            block_products(&s, rows.clone(), &mut dispatched, 0..n, None);
            block_body::<false>(&s, rows.clone(), &mut baseline, 0..n, None);
            assert_eq!(kept(dispatched), kept(baseline));
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
