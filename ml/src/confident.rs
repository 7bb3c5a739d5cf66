//! Confident learning (Northcutt, Jiang & Chuang, "Confident Learning:
//! Estimating Uncertainty in Dataset Labels", JAIR 2021), computed as
//! cleanlab 2.9 computes it (`cleanlab.filter.find_label_issues`,
//! `cleanlab.count`, `cleanlab.rank`), single-label, `n_jobs=1` path.
//!
//! Given labels `ỹ` and out-of-sample predicted probabilities `p̂(y = j | x)`:
//!
//! 1. per-class thresholds `t_j` = mean of `p̂_j` over the rows labelled `j`;
//! 2. the confident joint `C[ỹ][y*]`: a row counts for the class whose
//!    probability reaches its threshold (the argmax if several do); its
//!    diagonal is at least 1, and it is calibrated so that each row sums to
//!    the number of rows with that label and the whole to `n`;
//! 3. from it: the joint `Q = C / n`, the noise matrix `P(ỹ | y*)`, the
//!    inverse noise matrix `P(y* | ỹ)` and the true-class prior `P(y*)`;
//! 4. the rows flagged by the chosen [`FilterBy`] rule, minus those whose
//!    given label is (within 1e-6) the model's own prediction.
//!
//! Where cleanlab's result depends on floating-point rounding or on the order
//! in which NumPy sorts ties, this module reproduces NumPy's arithmetic
//! ([`crate::numpy_compat`]), so the flagged rows are identical to
//! cleanlab's on the same inputs (see `ml/tests/cleanlab_parity.rs`).
//!
//! # Example
//! ```
//! use gigo_ml::confident::{find_label_issues, FilterBy, FindOptions, PredProbs};
//! let probs = PredProbs::new(6, 2, vec![
//!     0.9, 0.1,  0.8, 0.2,  0.1, 0.9,   // rows 0-2
//!     0.2, 0.8,  0.3, 0.7,  0.95, 0.05, // rows 3-5
//! ]).unwrap();
//! let labels = [0, 0, 0, 1, 1, 1]; // row 2 looks like a 1, row 5 like a 0
//! let flagged = find_label_issues(&labels, &probs, &FindOptions::default()).unwrap();
//! assert_eq!(flagged, vec![false, false, true, false, false, true]);
//! ```

use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::knn::Neighbors;
use crate::matrix::Matrix;
use crate::numpy_compat::{PairwiseSum, argsort, mean, pairwise_sum};

/// cleanlab's `FLOATING_POINT_COMPARISON`.
const FP_EPS: f64 = 1e-6;
/// cleanlab's `CLIPPING_LOWER_BOUND`.
const CLIP_LOW: f64 = 1e-6;
/// cleanlab's `TINY_VALUE`.
const TINY: f64 = 1e-100;

/// Predicted class probabilities, one row per example (`f64`, row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct PredProbs {
    rows: usize,
    cols: usize,
    data: Vec<f64>,
}

impl PredProbs {
    /// Probabilities for `rows` examples and `cols` classes. Every value must
    /// be finite and within `[0, 1]` (1e-6 tolerance, as cleanlab checks).
    pub fn new(rows: usize, cols: usize, data: Vec<f64>) -> Result<PredProbs, MlError> {
        if data.len() != rows * cols {
            return Err(MlError::Internal(format!(
                "PredProbs::new: {rows}x{cols} needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        if cols < 2 {
            return Err(MlError::data(format!(
                "predicted probabilities need at least 2 classes, got {cols}"
            )));
        }
        if let Some(pos) = data
            .iter()
            .position(|v| !v.is_finite() || *v < -FP_EPS || *v > 1.0 + FP_EPS)
        {
            return Err(MlError::data(format!(
                "predicted probability of row {}, class {} is {}, not within [0, 1]",
                pos / cols,
                pos % cols,
                data[pos]
            )));
        }
        Ok(PredProbs { rows, cols, data })
    }

    /// Each row divided by its sum, as `P / P.sum(axis=1, keepdims=True)`
    /// in NumPy (bit for bit). Rows must have a positive, finite sum.
    pub fn normalized(rows: usize, cols: usize, mut data: Vec<f64>) -> Result<PredProbs, MlError> {
        if data.len() != rows * cols || cols == 0 {
            return Err(MlError::Internal(format!(
                "PredProbs::normalized: {rows}x{cols} needs {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        for (i, row) in data.chunks_mut(cols).enumerate() {
            normalize_row(row, i)?;
        }
        PredProbs::new(rows, cols, data)
    }

    /// From an `f32` matrix (e.g. a classifier's `predict_proba`).
    pub fn from_matrix(m: &Matrix) -> Result<PredProbs, MlError> {
        PredProbs::new(m.rows, m.cols, m.data.iter().map(|&v| v as f64).collect())
    }

    /// Number of examples.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of classes.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// All values, row-major.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The most probable class of row `i` (the first one on ties, as `np.argmax`).
    pub fn argmax(&self, i: usize) -> usize {
        argmax(self.row(i))
    }
}

/// Divides row `i` by its sum, as [`PredProbs::normalized`] does, and checks
/// that it then holds probabilities (as [`PredProbs::new`] does).
pub fn normalize_row(row: &mut [f64], i: usize) -> Result<(), MlError> {
    let s = pairwise_sum(row);
    if !(s > 0.0 && s.is_finite()) || row.iter().any(|v| *v < 0.0) {
        return Err(MlError::data(format!(
            "scores of row {i} cannot be normalised into probabilities (sum {s})"
        )));
    }
    row.iter_mut().for_each(|v| *v /= s);
    if let Some(j) = row
        .iter()
        .position(|v| !v.is_finite() || *v < -FP_EPS || *v > 1.0 + FP_EPS)
    {
        return Err(MlError::data(format!(
            "predicted probability of row {i}, class {j} is {}, not within [0, 1]",
            row[j]
        )));
    }
    Ok(())
}

fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (j, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = j;
        }
    }
    best
}

/// Which rows [`find_label_issues`] flags (cleanlab's `filter_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterBy {
    /// For every off-diagonal cell `(given i, true j)` of the calibrated
    /// confident joint, the rows labelled `i` with the largest margin
    /// `p̂_j - p̂_i`, as many as the cell counts (cleanlab's default).
    #[default]
    PruneByNoiseRate,
    /// Per class, the rows with the lowest probability of their given
    /// label, as many as the class's off-diagonal counts.
    PruneByClass,
    /// Rows flagged by both of the above.
    Both,
    /// The rows counted off the diagonal of the confident joint.
    ConfidentLearning,
    /// Rows whose most probable class is not their label.
    PredictedNeqGiven,
    /// The [`num_label_issues`] rows with the lowest self-confidence.
    LowSelfConfidence,
    /// The [`num_label_issues`] rows with the lowest normalised margin.
    LowNormalizedMargin,
}

impl FilterBy {
    /// Every mode, in cleanlab's order.
    pub const ALL: [FilterBy; 7] = [
        FilterBy::PruneByNoiseRate,
        FilterBy::PruneByClass,
        FilterBy::Both,
        FilterBy::ConfidentLearning,
        FilterBy::PredictedNeqGiven,
        FilterBy::LowSelfConfidence,
        FilterBy::LowNormalizedMargin,
    ];

    /// The name cleanlab uses.
    pub fn name(self) -> &'static str {
        match self {
            FilterBy::PruneByNoiseRate => "prune_by_noise_rate",
            FilterBy::PruneByClass => "prune_by_class",
            FilterBy::Both => "both",
            FilterBy::ConfidentLearning => "confident_learning",
            FilterBy::PredictedNeqGiven => "predicted_neq_given",
            FilterBy::LowSelfConfidence => "low_self_confidence",
            FilterBy::LowNormalizedMargin => "low_normalized_margin",
        }
    }
}

/// A label-quality score per row: lower means more likely mislabelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMethod {
    /// `p̂(given label)`.
    #[default]
    SelfConfidence,
    /// `(p̂(given) - max over other classes p̂ + 1) / 2`.
    NormalizedMargin,
    /// `ln(1 + e/s) / max(e/s, 1e-6)` with `e` the entropy normalised by
    /// `ln K` and `s = max(p̂(given), 1e-6)`.
    ConfidenceWeightedEntropy,
}

impl ScoreMethod {
    /// Every method.
    pub const ALL: [ScoreMethod; 3] = [
        ScoreMethod::SelfConfidence,
        ScoreMethod::NormalizedMargin,
        ScoreMethod::ConfidenceWeightedEntropy,
    ];

    /// The name cleanlab uses.
    pub fn name(self) -> &'static str {
        match self {
            ScoreMethod::SelfConfidence => "self_confidence",
            ScoreMethod::NormalizedMargin => "normalized_margin",
            ScoreMethod::ConfidenceWeightedEntropy => "confidence_weighted_entropy",
        }
    }
}

/// Options of [`find_label_issues`]; the defaults are cleanlab's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindOptions {
    /// The flagging rule.
    pub filter_by: FilterBy,
    /// Keep only this fraction of the off-diagonal counts (prune modes
    /// only); 1 flags every confidently estimated issue.
    pub frac_noise: f64,
    /// Flag exactly this many rows per class (prune modes only).
    pub num_to_remove_per_class: Option<Vec<usize>>,
    /// Never shrink a class below this many rows (prune modes only).
    pub min_examples_per_class: usize,
}

impl Default for FindOptions {
    fn default() -> Self {
        FindOptions {
            filter_by: FilterBy::PruneByNoiseRate,
            frac_noise: 1.0,
            num_to_remove_per_class: None,
            min_examples_per_class: 1,
        }
    }
}

/// A `K x K` integer count matrix indexed `[given label][true label]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfidentJoint {
    /// Number of classes.
    pub classes: usize,
    /// Counts, row-major: `counts[given * classes + true]`.
    pub counts: Vec<i64>,
}

impl ConfidentJoint {
    /// The count of `(given, true)`.
    pub fn get(&self, given: usize, true_label: usize) -> i64 {
        self.counts[given * self.classes + true_label]
    }

    /// Sum of the off-diagonal counts.
    pub fn off_diagonal(&self) -> i64 {
        let k = self.classes;
        (0..k * k)
            .filter(|c| c / k != c % k)
            .map(|c| self.counts[c])
            .sum()
    }
}

/// Estimates derived from a (calibrated) confident joint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentEstimates {
    /// `P(y* = j)`, the prior of the true classes.
    pub prior_true: Vec<f64>,
    /// `P(ỹ = i | y* = j)` at `[i * K + j]`; columns sum to 1.
    pub noise_matrix: Vec<f64>,
    /// `P(y* = j | ỹ = i)` at `[j * K + i]`; columns sum to 1.
    pub inverse_noise_matrix: Vec<f64>,
    /// `Q[ỹ = i, y* = j]` at `[i * K + j]`: the calibrated joint divided by `n`.
    pub joint: Vec<f64>,
}

fn check_labels(labels: &[u32], probs: &PredProbs) -> Result<(), MlError> {
    if labels.len() != probs.rows {
        return Err(MlError::data(format!(
            "{} labels for {} rows of predicted probabilities",
            labels.len(),
            probs.rows
        )));
    }
    if let Some(i) = labels.iter().position(|&l| l as usize >= probs.cols) {
        return Err(MlError::data(format!(
            "label {} of row {i} is not a class of the {} predicted probabilities",
            labels[i], probs.cols
        )));
    }
    Ok(())
}

/// Number of rows per class.
pub fn label_counts(labels: &[u32], classes: usize) -> Vec<usize> {
    let mut c = vec![0; classes];
    for &l in labels {
        c[l as usize] += 1;
    }
    c
}

/// Per-class thresholds: the mean predicted probability of class `k` over
/// the rows labelled `k` (2 for a class without rows), at least 2e-6.
pub fn confident_thresholds(labels: &[u32], probs: &PredProbs) -> Result<Vec<f64>, MlError> {
    check_labels(labels, probs)?;
    Ok(thresholds_unchecked(labels, probs))
}

fn thresholds_unchecked(labels: &[u32], probs: &PredProbs) -> Vec<f64> {
    let k = probs.cols;
    let mut by_class: Vec<Vec<f64>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        by_class[l as usize].push(probs.row(i)[l as usize]);
    }
    thresholds_of(by_class.iter().map(|v| (!v.is_empty()).then(|| mean(v))))
}

/// Thresholds as the confident joint compares them: 1e-6 lower.
fn lowered(thresholds: &[f64]) -> Vec<f64> {
    thresholds.iter().map(|t| t - 1e-6).collect()
}

/// Thresholds from each class's mean probability (`None`: no rows).
fn thresholds_of(means: impl Iterator<Item = Option<f64>>) -> Vec<f64> {
    means.map(|m| m.unwrap_or(2.0).max(2.0 * FP_EPS)).collect()
}

/// The confident joint and the rows counted off its diagonal (before
/// calibration, as cleanlab returns them).
pub fn compute_confident_joint(
    labels: &[u32],
    probs: &PredProbs,
    calibrate: bool,
) -> Result<(ConfidentJoint, Vec<usize>), MlError> {
    check_labels(labels, probs)?;
    let k = probs.cols;
    let thresholds = lowered(&thresholds_unchecked(labels, probs));
    let mut counts = vec![0i64; k * k];
    let mut off = Vec::new();
    for (i, &l) in labels.iter().enumerate() {
        let Some(guess) = confident_guess(probs.row(i), &thresholds) else {
            continue;
        };
        counts[l as usize * k + guess] += 1;
        if guess != l as usize {
            off.push(i);
        }
    }
    let cj = joint_from_counts(counts, k);
    Ok(if calibrate {
        (
            calibrate_confident_joint(&cj, &label_counts(labels, k)),
            off,
        )
    } else {
        (cj, off)
    })
}

/// The class a row is confidently counted for: the one whose probability
/// reaches its threshold (`thresholds` already lowered by 1e-6), the most
/// probable if several do, none if none does.
fn confident_guess(row: &[f64], thresholds: &[f64]) -> Option<usize> {
    let mut n_conf = 0;
    let mut first_conf = 0;
    for (j, (&p, &t)) in row.iter().zip(thresholds).enumerate() {
        if p >= t {
            if n_conf == 0 {
                first_conf = j;
            }
            n_conf += 1;
        }
    }
    match n_conf {
        0 => None,
        1 => Some(first_conf),
        _ => Some(argmax(row)),
    }
}

/// The confident joint of raw counts: its diagonal at least 1.
fn joint_from_counts(mut counts: Vec<i64>, k: usize) -> ConfidentJoint {
    for j in 0..k {
        counts[j * k + j] = counts[j * k + j].max(1);
    }
    ConfidentJoint { classes: k, counts }
}

/// Rescales each row to its label count and the whole to `n`, rounding to
/// integers while keeping the row totals (`calibrate_confident_joint`).
pub fn calibrate_confident_joint(cj: &ConfidentJoint, label_counts: &[usize]) -> ConfidentJoint {
    let k = cj.classes;
    let mut cal = vec![0.0f64; k * k];
    for i in 0..k {
        let row_sum = (cj.counts[i * k..(i + 1) * k].iter().sum::<i64>() as f64).max(TINY);
        for j in 0..k {
            cal[i * k + j] = cj.get(i, j) as f64 / row_sum * label_counts[i] as f64;
        }
    }
    let total = pairwise_sum(&cal).max(TINY);
    let n: usize = label_counts.iter().sum();
    cal.iter_mut().for_each(|v| *v = *v / total * n as f64);
    ConfidentJoint {
        classes: k,
        counts: round_preserving_row_totals(&cal, k),
    }
}

/// cleanlab's `round_preserving_sum` on each row of a `k`-column matrix.
fn round_preserving_row_totals(m: &[f64], k: usize) -> Vec<i64> {
    m.chunks(k).flat_map(round_preserving_sum).collect()
}

fn round_preserving_sum(floats: &[f64]) -> Vec<i64> {
    let mut ints: Vec<f64> = floats.iter().map(|v| v.round_ties_even()).collect();
    let orig_sum = pairwise_sum(floats).round_ties_even();
    let mut int_sum = pairwise_sum(&ints).round_ties_even();
    while (int_sum - orig_sum).abs() > FP_EPS {
        let diff = (orig_sum - int_sum).round_ties_even();
        let increment = if diff < 0.0 { -1.0 } else { 1.0 };
        let changes = (diff.abs() as usize).min(floats.len());
        let residual: Vec<f64> = floats.iter().zip(&ints).map(|(f, i)| f - i).collect();
        let mut order = argsort(&residual);
        if increment > 0.0 {
            order.reverse();
        }
        for &i in &order[..changes] {
            ints[i] += increment;
        }
        int_sum = pairwise_sum(&ints).round_ties_even();
    }
    ints.into_iter().map(|v| v as i64).collect()
}

/// Estimates of the latent noise process from a calibrated confident joint
/// (`cleanlab.count.estimate_latent` with `py_method="cnt"`, no
/// convergence iterations, plus `estimate_joint`).
pub fn estimate_latent(cj: &ConfidentJoint, label_counts: &[usize]) -> LatentEstimates {
    let k = cj.classes;
    let n: usize = label_counts.iter().sum();
    let ps: Vec<f64> = label_counts
        .iter()
        .map(|&c| c as f64 / n.max(1) as f64)
        .collect();
    let given_totals: Vec<f64> = (0..k)
        .map(|i| (0..k).map(|j| cj.get(i, j)).sum::<i64>() as f64)
        .collect();
    let true_totals: Vec<f64> = (0..k)
        .map(|j| (0..k).map(|i| cj.get(i, j)).sum::<i64>() as f64)
        .collect();
    let mut noise = vec![0.0; k * k];
    let mut inverse = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..k {
            noise[i * k + j] = cj.get(i, j) as f64 / true_totals[j].max(TINY);
            inverse[j * k + i] = cj.get(i, j) as f64 / given_totals[i].max(TINY);
        }
    }
    let prior: Vec<f64> = (0..k)
        .map(|j| inverse[j * k + j] / noise[j * k + j].max(TINY) * ps[j])
        .collect();
    let clipped: Vec<f64> = prior.iter().map(|p| p.clamp(CLIP_LOW, 1.0)).collect();
    let s = pairwise_sum(&clipped).max(TINY);
    let total: f64 =
        pairwise_sum(&cj.counts.iter().map(|&c| c as f64).collect::<Vec<_>>()).max(TINY);
    LatentEstimates {
        prior_true: clipped.iter().map(|p| p / s).collect(),
        noise_matrix: clip_noise_rates(&noise, k),
        inverse_noise_matrix: clip_noise_rates(&inverse, k),
        joint: cj.counts.iter().map(|&c| c as f64 / total).collect(),
    }
}

/// Off-diagonal rates clipped to `[0, 0.9999]`, columns renormalised to 1.
fn clip_noise_rates(m: &[f64], k: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..k * k)
        .map(|c| {
            if c / k == c % k {
                m[c]
            } else {
                m[c].clamp(0.0, 0.9999)
            }
        })
        .collect();
    for j in 0..k {
        let s: f64 = (0..k).map(|i| out[i * k + j]).sum::<f64>().max(TINY);
        (0..k).for_each(|i| out[i * k + j] /= s);
    }
    out
}

/// Rows whose given label is also the prediction once it gets a 1e-6 bonus
/// (`_reduce_issues`): never reported as issues.
fn predicted_is_given(labels: &[u32], probs: &PredProbs) -> Vec<bool> {
    labels
        .iter()
        .enumerate()
        .map(|(i, &l)| given_is_predicted(probs.row(i), l))
        .collect()
}

/// Whether label `l` is the prediction of `row` once it gets a 1e-6 bonus.
fn given_is_predicted(row: &[f64], l: u32) -> bool {
    let mut best = 0;
    let bonus = |j: usize| row[j] + if j == l as usize { FP_EPS } else { 0.0 };
    for j in 1..row.len() {
        if bonus(j) > bonus(best) {
            best = j;
        }
    }
    best == l as usize
}

/// cleanlab's estimate of the number of label issues
/// (`num_label_issues`, `estimation_method="off_diagonal"`): rows off the
/// diagonal of the uncalibrated confident joint, except those the model
/// predicts as labelled.
pub fn num_label_issues(labels: &[u32], probs: &PredProbs) -> Result<usize, MlError> {
    let (_, off) = compute_confident_joint(labels, probs, false)?;
    let keep = predicted_is_given(labels, probs);
    Ok(off.iter().filter(|&&i| !keep[i]).count())
}

/// The label-quality score of every row (`cleanlab.rank.get_label_quality_scores`,
/// without `adjust_pred_probs`).
pub fn label_quality_scores(
    labels: &[u32],
    probs: &PredProbs,
    method: ScoreMethod,
) -> Result<Vec<f64>, MlError> {
    check_labels(labels, probs)?;
    Ok(labels
        .iter()
        .enumerate()
        .map(|(i, &l)| quality_of(probs.row(i), l, method))
        .collect())
}

/// The label-quality score of one row labelled `l`.
fn quality_of(row: &[f64], l: u32, method: ScoreMethod) -> f64 {
    let own = row[l as usize];
    match method {
        ScoreMethod::SelfConfidence => own,
        ScoreMethod::NormalizedMargin => {
            let other = row
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != l as usize)
                .map(|(_, &p)| p)
                .fold(f64::NEG_INFINITY, f64::max);
            (own - other + 1.0) / 2.0
        }
        ScoreMethod::ConfidenceWeightedEntropy => {
            let xlogx: Vec<f64> = row
                .iter()
                .map(|&p| if p == 0.0 { 0.0 } else { p * p.ln() })
                .collect();
            let entropy = -pairwise_sum(&xlogx) / (row.len() as f64).ln();
            let score = entropy / own.max(CLIP_LOW);
            (score + 1.0).ln() / score.max(CLIP_LOW)
        }
    }
}

/// The rows of each class, in order.
fn rows_by_class(labels: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut rows = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        rows[l as usize].push(i);
    }
    rows
}

/// How many rows to prune per `(true j, given k)` pair: the calibrated
/// confident joint transposed, adjusted to keep `n` rows per class and
/// scaled by `frac_noise` (`_keep_at_least_n_per_class`).
fn prune_counts(cj: &ConfidentJoint, n: usize, frac_noise: f64) -> Vec<i64> {
    let k = cj.classes;
    // pcm[i][j] = cj[j][i]
    let pcm: Vec<f64> = (0..k * k).map(|c| cj.get(c % k, c / k) as f64).collect();
    let diag: Vec<f64> = (0..k).map(|j| pcm[j * k + j]).collect();
    let new_diag: Vec<f64> = diag.iter().map(|&d| d.max(n as f64)).collect();
    let nonzero_per_col: Vec<f64> = (0..k)
        .map(|j| ((0..k).filter(|&i| pcm[i * k + j] != 0.0).count() as f64 - 1.0).max(1.0))
        .collect();
    let mut m: Vec<f64> = (0..k * k)
        .map(|c| {
            let j = c % k;
            let v = pcm[c] - (new_diag[j] - diag[j]) / nonzero_per_col[j];
            if v < 0.0 { 0.0 } else { v }
        })
        .collect();
    for j in 0..k {
        m[j * k + j] = new_diag[j];
    }
    // _reduce_prune_counts: off-diagonals times frac_noise, the diagonal
    // takes up what was removed from its column; then truncated to ints
    let mut reduced: Vec<f64> = m.iter().map(|v| v * frac_noise).collect();
    for j in 0..k {
        reduced[j * k + j] = m[j * k + j];
    }
    let mut col_removed = vec![0.0f64; k];
    for i in 0..k {
        for j in 0..k {
            col_removed[j] += m[i * k + j] - reduced[i * k + j];
        }
    }
    for j in 0..k {
        reduced[j * k + j] = m[j * k + j] + col_removed[j];
    }
    let truncated: Vec<f64> = reduced.iter().map(|v| v.trunc()).collect();
    round_preserving_row_totals(&truncated, k)
}

/// `num_to_remove_per_class`: spread each class's requested count over its
/// noise rates (cleanlab's formula, including its broadcasting).
fn prune_counts_for_targets(
    pcm: &[i64],
    k: usize,
    targets: &[usize],
    counts: &[usize],
) -> Vec<i64> {
    let row_sums: Vec<f64> = (0..k)
        .map(|i| pcm[i * k..(i + 1) * k].iter().sum::<i64>() as f64)
        .collect();
    // psy[i][j] = pcm[i][j] / row_sums[j] (NumPy broadcasts over the last axis)
    let psy: Vec<f64> = (0..k * k)
        .map(|c| pcm[c] as f64 / row_sums[c % k])
        .collect();
    let noise_per_s: Vec<f64> = (0..k)
        .map(|i| pairwise_sum(&psy[i * k..(i + 1) * k]) - psy[i * k + i])
        .collect();
    let mut tmp: Vec<f64> = (0..k * k)
        .map(|c| psy[c] * targets[c / k] as f64 / noise_per_s[c / k])
        .collect();
    for i in 0..k {
        tmp[i * k + i] = counts[i] as f64 - targets[i] as f64;
    }
    round_preserving_row_totals(&tmp, k)
}

/// Flags the rows whose label is likely wrong (`cleanlab.filter.find_label_issues`).
/// Returns one flag per row.
pub fn find_label_issues(
    labels: &[u32],
    probs: &PredProbs,
    opts: &FindOptions,
) -> Result<Vec<bool>, MlError> {
    check_labels(labels, probs)?;
    let k = probs.cols;
    let n = labels.len();
    let counts = label_counts(labels, k);
    if counts.iter().filter(|&&c| c > 0).count() < 2 && labels.iter().any(|&l| l != 0) {
        return Err(MlError::data(
            "finding label issues needs at least 2 classes among the labels",
        ));
    }
    if !(opts.frac_noise > 0.0 && opts.frac_noise <= 1.0) {
        return Err(MlError::param("frac_noise", "must be in (0, 1]"));
    }
    let prune_mode = matches!(
        opts.filter_by,
        FilterBy::PruneByNoiseRate | FilterBy::PruneByClass | FilterBy::Both
    );
    if let Some(t) = &opts.num_to_remove_per_class {
        if !prune_mode {
            return Err(MlError::param(
                "num_to_remove_per_class",
                format!(
                    "is only supported with the prune modes, not {}",
                    opts.filter_by.name()
                ),
            ));
        }
        if t.len() != k {
            return Err(MlError::param(
                "num_to_remove_per_class",
                format!("needs one count per class ({k}), got {}", t.len()),
            ));
        }
    }
    let (cj, off_diagonal) = compute_confident_joint(labels, probs, true)?;
    let mut mask = vec![false; n];
    match opts.filter_by {
        FilterBy::LowSelfConfidence | FilterBy::LowNormalizedMargin => {
            let method = if opts.filter_by == FilterBy::LowSelfConfidence {
                ScoreMethod::SelfConfidence
            } else {
                ScoreMethod::NormalizedMargin
            };
            let scores = label_quality_scores(labels, probs, method)?;
            let count = num_label_issues(labels, probs)?;
            for &i in &argsort(&scores)[..count] {
                mask[i] = true;
            }
            return Ok(mask);
        }
        FilterBy::ConfidentLearning => off_diagonal.iter().for_each(|&i| mask[i] = true),
        FilterBy::PredictedNeqGiven => {
            for (i, &l) in labels.iter().enumerate() {
                mask[i] = probs.argmax(i) != l as usize;
            }
        }
        FilterBy::PruneByNoiseRate | FilterBy::PruneByClass | FilterBy::Both => {
            let mut pcm = prune_counts(&cj, opts.min_examples_per_class, opts.frac_noise);
            if let Some(targets) = &opts.num_to_remove_per_class {
                pcm = prune_counts_for_targets(&pcm, k, targets, &counts);
            }
            let by_class = rows_by_class(labels, k);
            let min_ex = opts.min_examples_per_class;
            let by_class_mask = if opts.filter_by != FilterBy::PruneByNoiseRate {
                Some(prune_by_class(probs, &by_class, &pcm, min_ex))
            } else {
                None
            };
            let by_rate_mask = if opts.filter_by != FilterBy::PruneByClass {
                Some(prune_by_noise_rate(probs, &by_class, &pcm, min_ex))
            } else {
                None
            };
            for i in 0..n {
                mask[i] = by_class_mask.as_ref().is_none_or(|m| m[i])
                    && by_rate_mask.as_ref().is_none_or(|m| m[i]);
            }
        }
    }
    let keep = predicted_is_given(labels, probs);
    for (m, k) in mask.iter_mut().zip(keep) {
        *m &= !k;
    }
    Ok(mask)
}

/// `_prune_by_class`, all classes.
fn prune_by_class(
    probs: &PredProbs,
    by_class: &[Vec<usize>],
    pcm: &[i64],
    min_ex: usize,
) -> Vec<bool> {
    let k = probs.cols;
    let mut mask = vec![false; probs.rows];
    for (c, rows) in by_class.iter().enumerate() {
        // cleanlab only writes a class's mask back when it has 2+ rows
        if rows.len() <= min_ex || rows.len() <= 1 {
            continue;
        }
        let num_issues = rows.len() as i64 - pcm[c * k + c];
        if num_issues >= 1 {
            let class_probs: Vec<f64> = rows.iter().map(|&i| probs.row(i)[c]).collect();
            let take = (num_issues as usize).min(rows.len());
            for &r in &argsort(&class_probs)[..take] {
                mask[rows[r]] = true;
            }
        }
    }
    mask
}

/// `_prune_by_count`, all classes: for given class `c` and every other
/// class `j`, the `pcm[j][c]` rows with the largest `p̂_j - p̂_c`.
fn prune_by_noise_rate(
    probs: &PredProbs,
    by_class: &[Vec<usize>],
    pcm: &[i64],
    min_ex: usize,
) -> Vec<bool> {
    let k = probs.cols;
    let mut mask = vec![false; probs.rows];
    for (c, rows) in by_class.iter().enumerate() {
        if rows.len() <= min_ex || rows.len() <= 1 {
            continue;
        }
        for j in 0..k {
            let num = pcm[j * k + c];
            if j == c || num <= 0 {
                continue;
            }
            let neg_margin: Vec<f64> = rows
                .iter()
                .map(|&i| {
                    let p = probs.row(i);
                    -(p[j] - p[c])
                })
                .collect();
            let take = (num as usize).min(rows.len());
            for &r in &argsort(&neg_margin)[..take] {
                mask[rows[r]] = true;
            }
        }
    }
    mask
}

/// Everything confident learning says about one labelled data set.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelIssues {
    /// Whether each row is flagged.
    pub is_issue: Vec<bool>,
    /// The label-quality score of each row (lower: more suspicious).
    pub quality: Vec<f64>,
    /// The most probable class of each row.
    pub suggested: Vec<u32>,
    /// The data-set-wide figures.
    pub estimates: Estimates,
}

/// Runs the whole analysis: flags, scores, suggestions and estimates.
pub fn analyse(
    labels: &[u32],
    probs: &PredProbs,
    opts: &FindOptions,
    score: ScoreMethod,
) -> Result<LabelIssues, MlError> {
    let is_issue = find_label_issues(labels, probs, opts)?;
    let quality = label_quality_scores(labels, probs, score)?;
    let (cj, _) = compute_confident_joint(labels, probs, true)?;
    let counts = label_counts(labels, probs.cols);
    Ok(LabelIssues {
        is_issue,
        quality,
        suggested: (0..probs.rows).map(|i| probs.argmax(i) as u32).collect(),
        estimates: Estimates {
            latent: estimate_latent(&cj, &counts),
            confident_joint: cj,
            estimated_issues: num_label_issues(labels, probs)?,
            thresholds: thresholds_unchecked(labels, probs),
        },
    })
}

/// Confident learning over rows that arrive in batches, for the filters that
/// decide each row on its own ([`FilterBy::ConfidentLearning`],
/// [`FilterBy::PredictedNeqGiven`]): the flags, scores and estimates
/// [`analyse`] gives, bit for bit, holding `O(K^2)` numbers instead of the
/// probabilities. Two passes over the rows, in the same order: [`first`]
/// (the thresholds: each class's mean, summed as NumPy sums), then
/// [`second`] (each row's verdict; the confident joint), then [`finish`].
///
/// [`first`]: TwoPass::first
/// [`second`]: TwoPass::second
/// [`finish`]: TwoPass::finish
#[derive(Debug, Clone)]
pub struct TwoPass {
    k: usize,
    filter: FilterBy,
    score: ScoreMethod,
    label_counts: Vec<usize>,
    sums: Vec<PairwiseSum>,
    /// Thresholds, and the same lowered by 1e-6 (the joint's), once known.
    thresholds: Option<(Vec<f64>, Vec<f64>)>,
    joint: Vec<i64>,
    estimated: usize,
}

/// What [`TwoPass::second`] says of one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RowVerdict {
    /// Flagged as a label issue.
    pub is_issue: bool,
    /// Its label-quality score.
    pub quality: f64,
    /// Its most probable class.
    pub suggested: u32,
}

impl TwoPass {
    /// Whether `filter` decides each row on its own (so can stream).
    pub fn streams(filter: FilterBy) -> bool {
        matches!(
            filter,
            FilterBy::ConfidentLearning | FilterBy::PredictedNeqGiven
        )
    }

    /// For rows with these class counts (all rows, both passes).
    pub fn new(
        label_counts: Vec<usize>,
        filter: FilterBy,
        score: ScoreMethod,
    ) -> Result<TwoPass, MlError> {
        if !TwoPass::streams(filter) {
            return Err(MlError::param(
                "filter_by",
                format!(
                    "{} ranks all rows against each other, so it needs them all at once",
                    filter.name()
                ),
            ));
        }
        let k = label_counts.len();
        if k < 2 {
            return Err(MlError::data(
                "predicted probabilities need at least 2 classes",
            ));
        }
        if label_counts.iter().filter(|&&c| c > 0).count() < 2 {
            return Err(MlError::data(
                "finding label issues needs at least 2 classes among the labels",
            ));
        }
        Ok(TwoPass {
            k,
            filter,
            score,
            sums: label_counts.iter().map(|&c| PairwiseSum::new(c)).collect(),
            label_counts,
            thresholds: None,
            joint: vec![0; k * k],
            estimated: 0,
        })
    }

    fn check(&self, label: u32, row: &[f64]) -> Result<(), MlError> {
        if row.len() != self.k || label as usize >= self.k {
            return Err(MlError::Internal(format!(
                "TwoPass: a row of {} values with label {label} for {} classes",
                row.len(),
                self.k
            )));
        }
        Ok(())
    }

    /// First pass: row `row` (probabilities, normalised) labelled `label`.
    pub fn first(&mut self, label: u32, row: &[f64]) -> Result<(), MlError> {
        self.check(label, row)?;
        let sum = &mut self.sums[label as usize];
        if sum.finish().is_some() {
            return Err(MlError::Internal(format!(
                "TwoPass: more rows of class {label} than counted"
            )));
        }
        sum.push(row[label as usize]);
        Ok(())
    }

    /// The per-class thresholds (the first pass must be complete).
    pub fn thresholds(&mut self) -> Result<&[f64], MlError> {
        if self.thresholds.is_none() {
            let means: Vec<Option<f64>> = self
                .sums
                .iter()
                .zip(&self.label_counts)
                .map(|(s, &c)| match (s.finish(), c) {
                    (_, 0) => Ok(None),
                    (Some(t), c) => Ok(Some(t / c as f64)),
                    (None, _) => Err(MlError::Internal(
                        "TwoPass: fewer rows in the first pass than counted".into(),
                    )),
                })
                .collect::<Result<_, _>>()?;
            let t = thresholds_of(means.into_iter());
            let low = lowered(&t);
            self.thresholds = Some((t, low));
        }
        Ok(&self.thresholds.as_ref().map(|t| &t.0).expect("set above")[..])
    }

    /// Second pass: the verdict on row `row` labelled `label`.
    pub fn second(&mut self, label: u32, row: &[f64]) -> Result<RowVerdict, MlError> {
        self.check(label, row)?;
        self.thresholds()?;
        let (_, lowered) = self.thresholds.as_ref().expect("set above");
        let guess = confident_guess(row, lowered);
        if let Some(g) = guess {
            self.joint[label as usize * self.k + g] += 1;
        }
        let kept = given_is_predicted(row, label);
        let off = guess.is_some_and(|g| g != label as usize);
        if off && !kept {
            self.estimated += 1;
        }
        let suggested = argmax(row);
        let flagged = match self.filter {
            FilterBy::ConfidentLearning => off,
            _ => suggested != label as usize,
        };
        Ok(RowVerdict {
            is_issue: flagged && !kept,
            quality: quality_of(row, label, self.score),
            suggested: suggested as u32,
        })
    }

    /// The estimates, after the second pass.
    pub fn finish(mut self) -> Result<Estimates, MlError> {
        let thresholds = self.thresholds()?.to_vec();
        let cj =
            calibrate_confident_joint(&joint_from_counts(self.joint, self.k), &self.label_counts);
        Ok(Estimates {
            latent: estimate_latent(&cj, &self.label_counts),
            confident_joint: cj,
            estimated_issues: self.estimated,
            thresholds,
        })
    }
}

/// The data-set-wide figures of confident learning.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimates {
    /// The calibrated confident joint.
    pub confident_joint: ConfidentJoint,
    /// Noise matrix, inverse noise matrix, priors and joint.
    pub latent: LatentEstimates,
    /// cleanlab's estimate of the number of issues ([`num_label_issues`]).
    pub estimated_issues: usize,
    /// The per-class thresholds.
    pub thresholds: Vec<f64>,
}

/// kNN consensus probabilities, as cleanlab's Datalab computes them without
/// a model: the label distribution of each row's `k` nearest other rows
/// (the row's own vote removed). Usable as out-of-sample `pred_probs`.
pub fn knn_consensus(
    neighbors: &Neighbors,
    labels: &[u32],
    classes: usize,
) -> Result<PredProbs, MlError> {
    let n = neighbors.len();
    if labels.len() != n {
        return Err(MlError::data(format!(
            "{} labels for neighbours of {n} rows",
            labels.len()
        )));
    }
    if neighbors.k == 0 {
        return Err(MlError::data("kNN consensus needs at least 2 rows"));
    }
    if let Some(&l) = labels.iter().find(|&&l| l as usize >= classes) {
        return Err(MlError::data(format!(
            "label {l} is not one of {classes} classes"
        )));
    }
    let mut data = vec![0.0f64; n * classes];
    let w = 1.0 / neighbors.k as f64;
    for i in 0..n {
        for &j in neighbors.of(i).0 {
            data[i * classes + labels[j as usize] as usize] += w;
        }
    }
    PredProbs::new(n, classes, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knn::knn_self;

    #[test]
    fn two_passes_over_batches_give_what_analyse_gives() {
        // 4 classes, 5,000 rows: random scores, many of them tied (rounded
        // to tenths), some rows exactly uniform
        let (n, k) = (5_000usize, 4usize);
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut labels = Vec::new();
        let mut data = Vec::new();
        for i in 0..n {
            let l = (next() % k as u64) as u32;
            labels.push(l);
            for j in 0..k {
                let v = (next() % 1000) as f64 / 1000.0 + if j == l as usize { 0.8 } else { 0.0 };
                data.push(match i % 7 {
                    0 => 1.0,
                    1 => (v * 10.0).round() / 10.0,
                    _ => v,
                });
            }
        }
        let probs = PredProbs::normalized(n, k, data.clone()).unwrap();
        for filter in [FilterBy::ConfidentLearning, FilterBy::PredictedNeqGiven] {
            for score in ScoreMethod::ALL {
                let opts = FindOptions {
                    filter_by: filter,
                    ..FindOptions::default()
                };
                let want = analyse(&labels, &probs, &opts, score).unwrap();
                let mut two = TwoPass::new(label_counts(&labels, k), filter, score).unwrap();
                let rows = |i: usize| {
                    let mut r = data[i * k..(i + 1) * k].to_vec();
                    normalize_row(&mut r, i).unwrap();
                    r
                };
                for (i, &l) in labels.iter().enumerate() {
                    two.first(l, &rows(i)).unwrap();
                }
                let verdicts: Vec<RowVerdict> = (0..n)
                    .map(|i| two.second(labels[i], &rows(i)).unwrap())
                    .collect();
                let est = two.finish().unwrap();
                let what = format!("{} / {}", filter.name(), score.name());
                assert_eq!(
                    verdicts.iter().map(|v| v.is_issue).collect::<Vec<_>>(),
                    want.is_issue,
                    "{what}"
                );
                assert!(want.is_issue.iter().any(|&f| f), "{what}: nothing flagged");
                let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&verdicts.iter().map(|v| v.quality).collect::<Vec<_>>()),
                    bits(&want.quality),
                    "{what}"
                );
                assert_eq!(
                    verdicts.iter().map(|v| v.suggested).collect::<Vec<_>>(),
                    want.suggested
                );
                assert_eq!(
                    est.confident_joint, want.estimates.confident_joint,
                    "{what}"
                );
                assert_eq!(est.latent, want.estimates.latent, "{what}");
                assert_eq!(
                    est.estimated_issues, want.estimates.estimated_issues,
                    "{what}"
                );
                assert_eq!(
                    bits(&est.thresholds),
                    bits(&want.estimates.thresholds),
                    "{what}"
                );
            }
        }
        // the ranking filters need every row at once
        let e = TwoPass::new(
            vec![3, 4],
            FilterBy::PruneByNoiseRate,
            ScoreMethod::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("prune_by_noise_rate ranks"), "{e}");
    }

    fn probs(rows: &[[f64; 3]]) -> PredProbs {
        PredProbs::new(rows.len(), 3, rows.iter().flatten().copied().collect()).unwrap()
    }

    /// Three well separated classes, two swapped labels. The expected
    /// results below were computed with cleanlab 2.9 on the same arrays.
    fn noisy() -> (Vec<u32>, PredProbs) {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for c in 0..3 {
            for r in 0..10 {
                let mut p = [0.05; 3];
                p[c] = 0.9 - 0.01 * r as f64;
                let rest = (1.0 - p[c]) / 2.0;
                for (j, v) in p.iter_mut().enumerate() {
                    if j != c {
                        *v = rest;
                    }
                }
                rows.push(p);
                labels.push(c as u32);
            }
        }
        labels[3] = 1; // a class-0 row labelled 1
        labels[25] = 0; // a class-2 row labelled 0
        (labels, probs(&rows))
    }

    #[test]
    fn thresholds_are_class_means() {
        let p = probs(&[[0.8, 0.1, 0.1], [0.6, 0.2, 0.2], [0.1, 0.7, 0.2]]);
        let t = confident_thresholds(&[0, 0, 1], &p).unwrap();
        assert_eq!(t, vec![0.7, 0.7, 2.0]);
    }

    #[test]
    fn every_mode_flags_what_cleanlab_flags() {
        let (labels, p) = noisy();
        for fb in FilterBy::ALL {
            let opts = FindOptions {
                filter_by: fb,
                ..FindOptions::default()
            };
            let mask = find_label_issues(&labels, &p, &opts).unwrap();
            let flagged: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
            // row 25 (p = 0.85 for its true class 2) is not confidently
            // class 2: only the argmax rule catches it
            let expected = if fb == FilterBy::PredictedNeqGiven {
                vec![3, 25]
            } else {
                vec![3]
            };
            assert_eq!(flagged, expected, "{}", fb.name());
        }
        assert_eq!(num_label_issues(&labels, &p).unwrap(), 1);
    }

    #[test]
    fn confident_joint_counts_given_against_true() {
        let (labels, p) = noisy();
        let (cj, off) = compute_confident_joint(&labels, &p, false).unwrap();
        assert_eq!(off, vec![3]);
        assert_eq!(cj.counts, vec![9, 0, 0, 1, 10, 0, 0, 0, 5]);
        assert_eq!(cj.off_diagonal(), 1);
        let (cal, _) = compute_confident_joint(&labels, &p, true).unwrap();
        // calibrated rows sum to the label counts
        let counts = label_counts(&labels, 3);
        for (i, &c) in counts.iter().enumerate() {
            assert_eq!((0..3).map(|j| cal.get(i, j)).sum::<i64>(), c as i64);
        }
        let latent = estimate_latent(&cal, &counts);
        for j in 0..3 {
            let col: f64 = (0..3).map(|i| latent.noise_matrix[i * 3 + j]).sum();
            assert!((col - 1.0).abs() < 1e-12);
        }
        assert!((latent.prior_true.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((latent.joint.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn scores_follow_their_definitions() {
        let p = probs(&[[0.7, 0.2, 0.1], [1.0, 0.0, 0.0]]);
        let labels = [1, 0];
        let sc = label_quality_scores(&labels, &p, ScoreMethod::SelfConfidence).unwrap();
        assert_eq!(sc, vec![0.2, 1.0]);
        let nm = label_quality_scores(&labels, &p, ScoreMethod::NormalizedMargin).unwrap();
        assert!((nm[0] - (0.2 - 0.7 + 1.0) / 2.0).abs() < 1e-15);
        assert_eq!(nm[1], 1.0);
        let cwe =
            label_quality_scores(&labels, &p, ScoreMethod::ConfidenceWeightedEntropy).unwrap();
        let e: f64 = -(0.7f64 * 0.7f64.ln() + 0.2 * 0.2f64.ln() + 0.1 * 0.1f64.ln()) / 3f64.ln();
        let s = e / 0.2;
        assert!((cwe[0] - (s + 1.0).ln() / s).abs() < 1e-12);
        // zero entropy: ln(1) / 1e-6 = 0
        assert_eq!(cwe[1], 0.0);
    }

    #[test]
    fn round_preserving_sum_keeps_the_total() {
        // ties in the residuals go as NumPy's argsort orders them
        assert_eq!(round_preserving_sum(&[0.5, 0.5, 1.0]), vec![0, 1, 1]);
        assert_eq!(round_preserving_sum(&[1.4, 1.4, 1.2]), vec![1, 2, 1]);
        assert_eq!(round_preserving_sum(&[2.6, 2.6, 0.8]), vec![2, 3, 1]);
    }

    #[test]
    fn frac_noise_and_num_to_remove_shrink_the_prune_counts() {
        let (labels, p) = noisy();
        let opts = FindOptions {
            filter_by: FilterBy::PruneByClass,
            num_to_remove_per_class: Some(vec![1, 0, 0]),
            ..FindOptions::default()
        };
        let mask = find_label_issues(&labels, &p, &opts).unwrap();
        let flagged: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
        assert_eq!(flagged, vec![25]);
        let bad = FindOptions {
            filter_by: FilterBy::ConfidentLearning,
            num_to_remove_per_class: Some(vec![1, 0, 0]),
            ..FindOptions::default()
        };
        assert!(find_label_issues(&labels, &p, &bad).is_err());
        let bad = FindOptions {
            frac_noise: 0.0,
            ..FindOptions::default()
        };
        assert!(find_label_issues(&labels, &p, &bad).is_err());
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        let p = probs(&[[0.7, 0.2, 0.1]]);
        assert!(find_label_issues(&[3], &p, &FindOptions::default()).is_err());
        assert!(find_label_issues(&[0, 1], &p, &FindOptions::default()).is_err());
        assert!(PredProbs::new(1, 2, vec![0.5, f64::NAN]).is_err());
        assert!(PredProbs::new(1, 2, vec![1.5, 0.0]).is_err());
        assert!(PredProbs::normalized(1, 2, vec![0.0, 0.0]).is_err());
        let q = PredProbs::normalized(1, 2, vec![1.0, 3.0]).unwrap();
        assert_eq!(q.row(0), &[0.25, 0.75]);
    }

    #[test]
    fn knn_consensus_is_the_neighbours_label_distribution() {
        // two clusters; row 2 sits in cluster A but is labelled B
        let m = Matrix::new(6, 1, vec![0.0, 0.1, 0.2, 5.0, 5.1, 5.2]);
        let labels = [0, 0, 1, 1, 1, 1];
        let nn = knn_self(&m, 2);
        let p = knn_consensus(&nn, &labels, 2).unwrap();
        assert_eq!(p.row(2), &[1.0, 0.0]);
        assert_eq!(p.row(0), &[0.5, 0.5]);
        assert_eq!(p.row(4), &[0.0, 1.0]);
    }
}
