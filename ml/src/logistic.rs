//! Multinomial logistic regression with an L2 penalty, fitted by L-BFGS.
//!
//! Objective (scikit-learn's scaling, so `c` means what `C` means there):
//! the weighted mean cross-entropy plus `‖W‖² / (2 c Σw)`, intercepts
//! unpenalised; two classes use one weight vector (the binomial loss).
//!
//! With `numeric_bins > 0`, every input column with more distinct values
//! than that also gets indicators of its quantile bins: the model stays
//! linear in its parameters but each numeric feature contributes a
//! piecewise-constant curve on top of its slope (a cheap additive model).
//!
//! Speed: every design column is stored as its most frequent value plus
//! the rows that differ from it, so one-hot, zero-heavy and binned columns
//! cost only their exceptions; rows are processed in fixed chunks in
//! parallel and the partial sums added in chunk order, so the fit is the
//! same whatever the thread count. Features should be standardised
//! ([`crate::features::FeatureEncoder`] does it).

use std::collections::VecDeque;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::catalogue::{Classic, ClassicModel, Fit, TrainSet};
use crate::error::MlError;
use crate::matrix::Matrix;

/// Catalogue name.
pub const NAME: &str = "logistic_regression";

/// Rows per parallel chunk.
const CHUNK: usize = 2048;

/// Hyper-parameters of [`LogisticRegression`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LogisticParams {
    /// Inverse L2 strength (scikit-learn's `C`). Default 1.
    pub c: f64,
    /// Most L-BFGS iterations. Default 200.
    pub max_iter: usize,
    /// Stop when every gradient component is below this. Default 1e-4.
    pub tol: f64,
    /// Quantile-bin indicators per numeric column (0: none). Default 0.
    pub numeric_bins: usize,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            c: 1.0,
            max_iter: 200,
            tol: 1e-4,
            numeric_bins: 0,
        }
    }
}

/// A fitted multinomial logistic regression (see the module docs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogisticRegression {
    n_features: usize,
    n_classes: usize,
    expansion: Expansion,
    /// Per output (1 for two classes, else one per class): one weight per
    /// design column, then the intercept.
    weights: Vec<f64>,
    iterations: usize,
}

/// Bin upper bounds, then the base and scale of each bin's indicator.
type BinnedColumn = (Vec<f32>, Vec<f32>, Vec<f32>);

/// How input rows become design rows: the inputs, then bin indicators.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Expansion {
    /// (input column, bin upper bounds): bin `b` holds `(t[b-1], t[b]]`.
    binned: Vec<(usize, Vec<f32>)>,
    /// Indicator columns are standardised: a row in the bin gets
    /// `base + scale`, the others `base` (`-mean / std`).
    scale: Vec<f32>,
    /// The default (most frequent) value of each design column.
    base: Vec<f32>,
}

impl Expansion {
    fn width(&self, n_inputs: usize) -> usize {
        n_inputs + self.binned.iter().map(|(_, t)| t.len() + 1).sum::<usize>()
    }

    fn fit(x: &Matrix, bins: usize) -> Expansion {
        // a small strided sample finds each column's mode and whether it
        // needs bins; a larger one places the bin edges
        let small: Vec<usize> = (0..x.rows).step_by(x.rows.div_ceil(2048).max(1)).collect();
        let large: Vec<usize> = (0..x.rows)
            .step_by(x.rows.div_ceil(20_000).max(1))
            .collect();
        let per_col: Vec<(f32, Option<BinnedColumn>)> = (0..x.cols)
            .into_par_iter()
            .map(|f| {
                let mut v: Vec<f32> = small.iter().map(|&i| x.get(i, f)).collect();
                v.sort_by(f32::total_cmp);
                // the most frequent value (the smallest on ties)
                let (mut mode, mut best, mut run) = (v.first().copied().unwrap_or(0.0), 0, 0);
                for (i, &val) in v.iter().enumerate() {
                    run = if i > 0 && v[i - 1] == val { run + 1 } else { 1 };
                    if run > best {
                        best = run;
                        mode = val;
                    }
                }
                let mut distinct = v;
                distinct.dedup();
                let thresholds = (bins > 0 && distinct.len() > bins).then(|| {
                    let mut v: Vec<f32> = large.iter().map(|&i| x.get(i, f)).collect();
                    v.sort_by(f32::total_cmp);
                    let mut t: Vec<f32> = (1..bins).map(|j| v[j * v.len() / bins]).collect();
                    t.dedup();
                    // bin frequencies in the sample standardise the indicators
                    let mut count = vec![0usize; t.len() + 1];
                    v.iter()
                        .for_each(|&u| count[t.partition_point(|&e| e < u)] += 1);
                    let (mut base, mut scale) = (Vec::new(), Vec::new());
                    for c in count {
                        let m = c as f64 / v.len() as f64;
                        let sd = (m * (1.0 - m)).sqrt();
                        let sd = if sd > 0.0 { sd } else { 1.0 };
                        base.push((-m / sd) as f32);
                        scale.push((1.0 / sd) as f32);
                    }
                    (t, base, scale)
                });
                (mode, thresholds)
            })
            .collect();
        let mut base: Vec<f32> = per_col.iter().map(|(m, _)| *m).collect();
        let mut binned = Vec::new();
        let mut scale = Vec::new();
        for (f, (_, t)) in per_col.into_iter().enumerate() {
            if let Some((t, b, sc)) = t {
                binned.push((f, t));
                base.extend(b);
                scale.extend(sc);
            }
        }
        Expansion {
            binned,
            scale,
            base,
        }
    }

    /// The design rows of `x`, as exceptions to `base`.
    fn design(&self, x: &Matrix) -> Design {
        let parts: Vec<(Vec<u32>, Vec<f32>, Vec<u32>)> = (0..x.rows)
            .collect::<Vec<_>>()
            .par_chunks(CHUNK)
            .map(|rows| {
                let (mut idx, mut val, mut len) = (Vec::new(), Vec::new(), Vec::new());
                for &i in rows {
                    let start = idx.len();
                    let row = x.row(i);
                    for (j, (&v, &b)) in row.iter().zip(&self.base).enumerate() {
                        if v != b {
                            idx.push(j as u32);
                            val.push(v - b);
                        }
                    }
                    let mut col = x.cols;
                    for (f, t) in &self.binned {
                        let bin = t.partition_point(|&u| u < row[*f]);
                        idx.push((col + bin) as u32);
                        val.push(self.scale[col - x.cols + bin]);
                        col += t.len() + 1;
                    }
                    len.push((idx.len() - start) as u32);
                }
                (idx, val, len)
            })
            .collect();
        let mut d = Design {
            row_start: Vec::with_capacity(x.rows + 1),
            idx: Vec::new(),
            val: Vec::new(),
        };
        d.row_start.push(0);
        for (idx, val, len) in parts {
            d.idx.extend(idx);
            d.val.extend(val);
            for l in len {
                let last = *d.row_start.last().unwrap_or(&0);
                d.row_start.push(last + l as usize);
            }
        }
        d
    }
}

/// Design rows as sparse exceptions to the per-column defaults.
struct Design {
    row_start: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f32>,
}

impl Design {
    fn rows(&self) -> usize {
        self.row_start.len() - 1
    }

    /// `Σ_j w_j (x_ij - base_j)` over row `i`'s exceptions.
    #[inline(always)]
    fn dot(&self, i: usize, w: &[f64]) -> f64 {
        let r = self.row_start[i]..self.row_start[i + 1];
        let mut s = 0.0;
        for (&j, &v) in self.idx[r.clone()].iter().zip(&self.val[r]) {
            s += w[j as usize] * v as f64;
        }
        s
    }

    #[inline(always)]
    fn axpy(&self, i: usize, r: f64, g: &mut [f64]) {
        let range = self.row_start[i]..self.row_start[i + 1];
        for (&j, &v) in self.idx[range.clone()].iter().zip(&self.val[range]) {
            g[j as usize] += r * v as f64;
        }
    }
}

impl LogisticRegression {
    /// L-BFGS iterations of the fit.
    pub fn iterations(&self) -> usize {
        self.iterations
    }
}

/// Parameters per model output: 1 for two classes, else one per class.
fn outputs(k: usize) -> usize {
    if k == 2 { 1 } else { k }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Softmax of one row of logits, in place; returns log-sum-exp.
fn softmax(z: &mut [f64]) -> f64 {
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut s = 0.0;
    for v in z.iter_mut() {
        *v = (*v - max).exp();
        s += *v;
    }
    z.iter_mut().for_each(|v| *v /= s);
    max + s.ln()
}

/// The logit offsets every row shares: `b_c + Σ_j w_cj base_j` per output.
fn offsets(theta: &[f64], base: &[f64], outs: usize) -> Vec<f64> {
    let p = base.len();
    (0..outs)
        .map(|c| {
            let w = &theta[c * (p + 1)..(c + 1) * (p + 1)];
            w[p] + w[..p].iter().zip(base).map(|(a, b)| a * b).sum::<f64>()
        })
        .collect()
}

struct Problem<'a> {
    design: &'a Design,
    base: Vec<f64>,
    y: &'a [u32],
    w: &'a [f64],
    k: usize,
    weight_sum: f64,
    c: f64,
}

impl Problem<'_> {
    /// Objective and gradient at `theta`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let p = self.base.len();
        let outs = outputs(self.k);
        let off = offsets(theta, &self.base, outs);
        let partials: Vec<(f64, Vec<f64>, Vec<f64>)> = (0..self.design.rows())
            .collect::<Vec<_>>()
            .par_chunks(CHUNK)
            .map(|rows| {
                // gradient over exceptions, and Σ r per output (for the
                // defaults and the intercept)
                let mut g = vec![0.0; outs * (p + 1)];
                let mut rsum = vec![0.0; outs];
                let mut z = vec![0.0; self.k];
                let mut loss = 0.0;
                for &i in rows {
                    let (yi, wi) = (self.y[i], self.w[i]);
                    if outs == 1 {
                        let zi = off[0] + self.design.dot(i, &theta[..p]);
                        let yf = yi as f64;
                        // one exp for both log(1 + e^z) and the sigmoid; `ln`
                        // rather than `ln_1p`: the loss only needs absolute
                        // accuracy, and glibc's log1p is several times slower
                        let e = (-zi.abs()).exp();
                        let softplus = zi.max(0.0) + (1.0 + e).ln();
                        let p1 = if zi >= 0.0 {
                            1.0 / (1.0 + e)
                        } else {
                            e / (1.0 + e)
                        };
                        loss += wi * (softplus - yf * zi);
                        let r = wi * (p1 - yf);
                        self.design.axpy(i, r, &mut g[..p]);
                        rsum[0] += r;
                    } else {
                        for (c, zc) in z.iter_mut().enumerate() {
                            *zc = off[c] + self.design.dot(i, &theta[c * (p + 1)..c * (p + 1) + p]);
                        }
                        let own = z[yi as usize];
                        loss += wi * (softmax(&mut z) - own);
                        z[yi as usize] -= 1.0;
                        for (c, &pc) in z.iter().enumerate() {
                            let r = wi * pc;
                            self.design.axpy(i, r, &mut g[c * (p + 1)..c * (p + 1) + p]);
                            rsum[c] += r;
                        }
                    }
                }
                (loss, g, rsum)
            })
            .collect();
        grad.fill(0.0);
        let mut loss = 0.0;
        let mut rsum = vec![0.0; outs];
        for (l, g, r) in partials {
            loss += l;
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
            rsum.iter_mut().zip(&r).for_each(|(a, b)| *a += b);
        }
        for c in 0..outs {
            let gc = &mut grad[c * (p + 1)..(c + 1) * (p + 1)];
            for (gj, bj) in gc[..p].iter_mut().zip(&self.base) {
                *gj += rsum[c] * bj;
            }
            gc[p] = rsum[c];
        }
        let inv = 1.0 / self.weight_sum;
        let reg = 1.0 / (self.c * self.weight_sum);
        let mut penalty = 0.0;
        for (i, (gv, &t)) in grad.iter_mut().zip(theta).enumerate() {
            *gv *= inv;
            if i % (p + 1) != p {
                *gv += reg * t;
                penalty += t * t;
            }
        }
        loss * inv + 0.5 * reg * penalty
    }
}

/// Minimises `f` from `x` by L-BFGS (memory 10, backtracking Armijo line
/// search). Returns the iterations used.
pub(crate) fn lbfgs(
    f: &dyn Fn(&[f64], &mut [f64]) -> f64,
    x: &mut [f64],
    max_iter: usize,
    gtol: f64,
) -> usize {
    const MEMORY: usize = 10;
    let n = x.len();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(u, v)| u * v).sum::<f64>();
    let mut g = vec![0.0; n];
    let mut fx = f(x, &mut g);
    let mut hist: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::new();
    let mut xn = vec![0.0; n];
    let mut gn = vec![0.0; n];
    for it in 0..max_iter {
        if g.iter().all(|v| v.abs() <= gtol) {
            return it;
        }
        // two-loop recursion: d = -H g
        let mut q: Vec<f64> = g.clone();
        let mut alpha = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qi, yi)| *qi -= a * yi);
            alpha.push(a);
        }
        let gamma = match hist.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / dot(&g, &g).sqrt().max(1.0),
        };
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in hist.iter().zip(alpha.iter().rev()) {
            let b = rho * dot(y, &q);
            q.iter_mut().zip(s).for_each(|(qi, si)| *qi += (a - b) * si);
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut dg = dot(&g, &dir);
        if dg >= 0.0 {
            hist.clear();
            dir = g.iter().map(|v| -v).collect();
            dg = -dot(&g, &g);
        }
        let mut step = 1.0;
        let mut fnew;
        let mut tries = 0;
        loop {
            xn.iter_mut()
                .zip(x.iter())
                .zip(&dir)
                .for_each(|((a, b), c)| *a = b + step * c);
            fnew = f(&xn, &mut gn);
            if fnew <= fx + 1e-4 * step * dg || tries >= 40 {
                break;
            }
            step *= 0.5;
            tries += 1;
        }
        if fnew > fx {
            // no decrease possible along this direction: converged as far
            // as floating point allows
            return it + 1;
        }
        let s: Vec<f64> = xn.iter().zip(x.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = gn.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(1e-300) {
            if hist.len() == MEMORY {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        let rel = (fx - fnew).abs() / fx.abs().max(fnew.abs()).max(1.0);
        x.copy_from_slice(&xn);
        g.copy_from_slice(&gn);
        fx = fnew;
        if rel <= 1e-12 {
            return it + 1;
        }
    }
    max_iter
}

impl Fit for LogisticParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "multinomial logistic regression (L2, L-BFGS)";
    type Fitted = Classic<LogisticRegression>;

    fn check(&self) -> Result<(), MlError> {
        if !(self.c > 0.0 && self.c.is_finite()) {
            return Err(MlError::param("c", "must be a positive number"));
        }
        if self.max_iter == 0 {
            return Err(MlError::param("max_iter", "must be at least 1"));
        }
        if self.tol.is_nan() || self.tol <= 0.0 {
            return Err(MlError::param("tol", "must be positive"));
        }
        if self.numeric_bins == 1 || self.numeric_bins > 1024 {
            return Err(MlError::param(
                "numeric_bins",
                "must be 0 (off) or within 2..=1024",
            ));
        }
        Ok(())
    }

    fn fit(&self, data: &TrainSet, _seed: u64) -> Result<Classic<LogisticRegression>, MlError> {
        self.check()?;
        data.check()?;
        let (x, y, k) = (data.x, data.y, data.n_classes);
        let expansion = Expansion::fit(x, self.numeric_bins);
        let design = expansion.design(x);
        let w: Vec<f64> = match data.weights {
            Some(w) => w.iter().map(|&v| v as f64).collect(),
            None => vec![1.0; x.rows],
        };
        let problem = Problem {
            design: &design,
            base: expansion.base.iter().map(|&v| v as f64).collect(),
            y,
            weight_sum: w.iter().sum(),
            w: &w,
            k,
            c: self.c,
        };
        let p = expansion.width(x.cols);
        let mut theta = vec![0.0; (p + 1) * outputs(k)];
        let iterations = lbfgs(
            &|t, g| problem.eval(t, g),
            &mut theta,
            self.max_iter,
            self.tol,
        );
        let (n_features, n_classes) = (x.cols, k);
        Ok(Classic::new(
            self.clone(),
            n_features,
            n_classes,
            LogisticRegression {
                n_features: x.cols,
                n_classes: k,
                expansion,
                weights: theta,
                iterations,
            },
        ))
    }
}

impl ClassicModel for LogisticRegression {
    type Params = LogisticParams;

    fn predict(&self, _params: &LogisticParams, x: &Matrix) -> Matrix {
        let f = self;
        let k = f.n_classes;
        let outs = outputs(k);
        let design = f.expansion.design(x);
        let base: Vec<f64> = f.expansion.base.iter().map(|&v| v as f64).collect();
        let p = base.len();
        let off = offsets(&f.weights, &base, outs);
        let mut out = Matrix::zeros(x.rows, k);
        out.data.par_chunks_mut(k).enumerate().for_each(|(i, o)| {
            if outs == 1 {
                let p1 = sigmoid(off[0] + design.dot(i, &f.weights[..p]));
                o[0] = (1.0 - p1) as f32;
                o[1] = p1 as f32;
            } else {
                let mut z: Vec<f64> = (0..k)
                    .map(|c| off[c] + design.dot(i, &f.weights[c * (p + 1)..c * (p + 1) + p]))
                    .collect();
                softmax(&mut z);
                o.iter_mut().zip(&z).for_each(|(a, b)| *a = *b as f32);
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::FittedModel;

    /// Two gaussian-ish blobs per class on a grid, three classes.
    fn blobs() -> (Matrix, Vec<u32>) {
        let mut data = Vec::new();
        let mut y = Vec::new();
        let centres = [(-2.0f32, 0.0f32), (2.0, 0.0), (0.0, 2.5)];
        let mut s = 3u64;
        for (c, &(cx, cy)) in centres.iter().enumerate() {
            for _ in 0..200 {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let v = ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5;
                data.extend([cx + 1.5 * u, cy + 1.5 * v]);
                y.push(c as u32);
            }
        }
        (Matrix::new(y.len(), 2, data), y)
    }

    #[test]
    fn separates_blobs_and_probabilities_sum_to_one() {
        let (x, y) = blobs();
        let m = LogisticParams::default()
            .fit(&TrainSet::new(&x, &y, 3), 0)
            .unwrap();
        let p = m.predict_proba(&x).unwrap();
        let mut correct = 0;
        for (i, &yi) in y.iter().enumerate() {
            let row = p.row(i);
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            let pred = (0..3).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap();
            correct += (pred == yi as usize) as usize;
        }
        assert!(correct as f64 / x.rows as f64 > 0.97, "{correct}");
        assert!(m.iterations() < 200);
    }

    #[test]
    fn matches_the_optimum_of_a_tiny_problem() {
        // 1-D, two classes, symmetric data: the intercepts are equal and the
        // gradient vanishes at the solution
        let x = Matrix::new(4, 1, vec![-2.0, -1.0, 1.0, 2.0]);
        let y = [0, 0, 1, 1];
        let m = LogisticParams {
            tol: 1e-10,
            ..LogisticParams::default()
        }
        .fit(&TrainSet::new(&x, &y, 2), 0)
        .unwrap();
        let f = &*m;
        // symmetric data: the logit of class 1 is 0 at x = 0
        assert_eq!(f.weights.len(), 2);
        assert!(f.weights[0] > 0.0);
        let p = m.predict_proba(&Matrix::new(1, 1, vec![0.0])).unwrap();
        assert!((p.data[0] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn weights_count_like_repeated_rows() {
        let x = Matrix::new(3, 1, vec![0.0, 1.0, 1.5]);
        let y = [0, 1, 0];
        let params = LogisticParams {
            tol: 1e-9,
            ..LogisticParams::default()
        };
        let weighted = params
            .fit(
                &TrainSet::new(&x, &y, 2).weighted(Some(&[1.0, 2.0, 1.0])),
                0,
            )
            .unwrap();
        let xr = Matrix::new(4, 1, vec![0.0, 1.0, 1.0, 1.5]);
        let repeated = params
            .fit(&TrainSet::new(&xr, &[0, 1, 1, 0], 2), 0)
            .unwrap();
        let q = Matrix::new(1, 1, vec![0.7]);
        let (a, b) = (
            weighted.predict_proba(&q).unwrap(),
            repeated.predict_proba(&q).unwrap(),
        );
        assert!(
            (a.data[0] - b.data[0]).abs() < 1e-5,
            "{:?} {:?}",
            a.data,
            b.data
        );
    }

    #[test]
    fn same_fit_whatever_the_thread_count_and_round_trips() {
        let (x, y) = blobs();
        let fit = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| {
                    LogisticParams::default()
                        .fit(&TrainSet::new(&x, &y, 3), 0)
                        .unwrap()
                })
        };
        let (a, b) = (fit(1), fit(3));
        assert_eq!(a.predict_proba(&x).unwrap(), b.predict_proba(&x).unwrap());
        crate::catalogue::assert_round_trips(&a, &x);
    }

    #[test]
    fn numeric_bins_learn_a_non_monotone_effect() {
        // class 1 in the middle of the range: no slope separates it
        let n = 900;
        let x = Matrix::new(n, 1, (0..n).map(|i| i as f32 / n as f32).collect());
        let y: Vec<u32> = (0..n)
            .map(|i| ((n / 3..2 * n / 3).contains(&i)) as u32)
            .collect();
        let acc = |bins| {
            let m = LogisticParams {
                numeric_bins: bins,
                ..LogisticParams::default()
            }
            .fit(&TrainSet::new(&x, &y, 2), 0)
            .unwrap();
            let p = m.predict_proba(&x).unwrap();
            (0..n)
                .filter(|&i| (p.row(i)[1] > 0.5) == (y[i] == 1))
                .count() as f64
                / n as f64
        };
        assert!(acc(0) < 0.7);
        assert!(acc(12) > 0.95);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let x = Matrix::new(2, 1, vec![0.0, 1.0]);
        let p = LogisticParams::default();
        assert!(p.fit(&TrainSet::new(&x, &[0, 2], 2), 0).is_err());
        assert!(p.fit(&TrainSet::new(&x, &[0], 2), 0).is_err());
        let negative = TrainSet::new(&x, &[0, 1], 2).weighted(Some(&[1.0, -1.0]));
        assert!(p.fit(&negative, 0).is_err());
        let bad_c = LogisticParams {
            c: 0.0,
            ..Default::default()
        };
        assert!(bad_c.check().is_err());
        // another width: an error naming both widths, not uniform probabilities
        let m = p.fit(&TrainSet::new(&x, &[0, 1], 2), 0).unwrap();
        let err = m
            .predict_proba(&Matrix::new(1, 2, vec![0.0, 1.0]))
            .unwrap_err();
        assert!(
            err.to_string().contains("1 features, these rows have 2"),
            "{err}"
        );
    }
}
