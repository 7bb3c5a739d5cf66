//! Drift between a reference and a current table, per column, from the
//! columns' mergeable aggregates (no second pass over the data).
//!
//! Numeric columns: Kolmogorov–Smirnov statistic and p-value, Wasserstein-1
//! distance (also normalised by the reference's standard deviation), PSI over
//! the reference's deciles. Categorical columns (text, booleans): chi-square
//! test of homogeneity, Jensen–Shannon distance (base 2), PSI over the
//! categories. The decision follows Evidently's defaults unless a method is
//! named: with at most 1000 reference rows a test's p-value below 0.05 (KS,
//! chi-square), otherwise a distance at or above 0.1 (normalised Wasserstein,
//! Jensen–Shannon).

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use super::column::{ColumnAcc, ColumnKind};

/// Floor for bin fractions in PSI and JS, so empty bins stay finite.
const EPS: f64 = 1e-4;

/// How a column is judged to drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DriftMethod {
    /// KS / chi-square p-value < 0.05 with at most 1000 reference rows,
    /// otherwise normalised Wasserstein / Jensen–Shannon >= 0.1.
    #[default]
    Auto,
    /// KS p-value (numeric), chi-square p-value (categorical) below the threshold (0.05).
    Test,
    /// PSI at or above the threshold (0.2).
    Psi,
    /// Normalised Wasserstein (numeric) / Jensen–Shannon (categorical) at or above the threshold (0.1).
    Distance,
}

/// The drift figures of one column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnDrift {
    /// Column name.
    pub column: String,
    /// `numeric` or `categorical`.
    pub kind: &'static str,
    /// Rows compared (non-null) in the reference and current tables.
    pub reference_rows: u64,
    /// Current rows.
    pub current_rows: u64,
    /// KS statistic (numeric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_statistic: Option<f64>,
    /// KS p-value (numeric, asymptotic).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_p_value: Option<f64>,
    /// Wasserstein-1 distance (numeric).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// Wasserstein-1 divided by the reference's standard deviation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein_normed: Option<f64>,
    /// Chi-square statistic (categorical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2: Option<f64>,
    /// Chi-square p-value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chi2_p_value: Option<f64>,
    /// Jensen–Shannon distance, base 2 (categorical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jensen_shannon: Option<f64>,
    /// Population stability index.
    pub psi: f64,
    /// The figure the decision used, its threshold and name.
    pub decided_by: String,
    /// The figure's value.
    pub score: f64,
    /// The threshold it was compared with.
    pub threshold: f64,
    /// Whether the column drifted.
    pub drifted: bool,
}

/// Compares two aggregates of the same column; `None` when either side has no
/// values or the column kind has no drift test.
pub fn column_drift(
    column: &str,
    reference: &ColumnAcc,
    current: &ColumnAcc,
    method: DriftMethod,
    threshold: Option<f64>,
) -> Option<ColumnDrift> {
    match reference.kind {
        ColumnKind::Numeric => numeric(column, reference, current, method, threshold),
        ColumnKind::Text | ColumnKind::Boolean => {
            categorical(column, reference, current, method, threshold)
        }
        ColumnKind::Other => None,
    }
}

fn numeric(
    column: &str,
    r: &ColumnAcc,
    c: &ColumnAcc,
    method: DriftMethod,
    threshold: Option<f64>,
) -> Option<ColumnDrift> {
    if r.n == 0 || c.n == 0 {
        return None;
    }
    // Evaluate both CDFs at every value either sketch retained.
    let mut points: Vec<f64> = r
        .sketch
        .quantiles(&grid(2000))
        .into_iter()
        .flatten()
        .collect();
    points.extend(c.sketch.quantiles(&grid(2000)).into_iter().flatten());
    points.sort_by(f64::total_cmp);
    points.dedup();
    let fr = r.sketch.cdf(&points);
    let fc = c.sketch.cdf(&points);
    let ks = fr
        .iter()
        .zip(&fc)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let (n, m) = (r.n as f64, c.n as f64);
    let en = (n * m / (n + m)).sqrt();
    let ks_p = kolmogorov_q((en + 0.12 + 0.11 / en) * ks);
    let wasserstein: f64 = points
        .windows(2)
        .zip(fr.iter().zip(&fc))
        .map(|(w, (a, b))| (a - b).abs() * (w[1] - w[0]))
        .sum();
    let std = r.std().filter(|s| *s > 0.0).unwrap_or(1.0);
    let normed = wasserstein / std;
    // PSI over the reference's deciles.
    let mut edges: Vec<f64> = r
        .sketch
        .quantiles(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
        .into_iter()
        .flatten()
        .collect();
    edges.dedup();
    let psi = psi_from_cdfs(&r.sketch.cdf(&edges), &c.sketch.cdf(&edges));
    let (decided_by, score, thr, drifted) = match method {
        DriftMethod::Test => decide_p("ks_p_value", ks_p, threshold.unwrap_or(0.05)),
        DriftMethod::Psi => decide_d("psi", psi, threshold.unwrap_or(0.2)),
        DriftMethod::Distance => decide_d("wasserstein_normed", normed, threshold.unwrap_or(0.1)),
        DriftMethod::Auto if r.n <= 1000 => decide_p("ks_p_value", ks_p, threshold.unwrap_or(0.05)),
        DriftMethod::Auto => decide_d("wasserstein_normed", normed, threshold.unwrap_or(0.1)),
    };
    Some(ColumnDrift {
        column: column.into(),
        kind: "numeric",
        reference_rows: r.n,
        current_rows: c.n,
        ks_statistic: Some(ks),
        ks_p_value: Some(ks_p),
        wasserstein: Some(wasserstein),
        wasserstein_normed: Some(normed),
        chi2: None,
        chi2_p_value: None,
        jensen_shannon: None,
        psi,
        decided_by,
        score,
        threshold: thr,
        drifted,
    })
}

fn grid(n: usize) -> Vec<f64> {
    (0..=n).map(|i| i as f64 / n as f64).collect()
}

fn categorical(
    column: &str,
    r: &ColumnAcc,
    c: &ColumnAcc,
    method: DriftMethod,
    threshold: Option<f64>,
) -> Option<ColumnDrift> {
    let rt = r.top.sorted();
    let ct = c.top.sorted();
    let nr: u64 = rt.iter().map(|p| p.1).sum::<u64>() + r.top.uncounted;
    let nc: u64 = ct.iter().map(|p| p.1).sum::<u64>() + c.top.uncounted;
    if nr == 0 || nc == 0 {
        return None;
    }
    let mut cats: BTreeSet<&str> = rt.iter().map(|p| p.0.as_str()).collect();
    cats.extend(ct.iter().map(|p| p.0.as_str()));
    let mut counts: Vec<(f64, f64)> = cats
        .iter()
        .map(|k| (r.top.count(k) as f64, c.top.count(k) as f64))
        .collect();
    if r.top.uncounted + c.top.uncounted > 0 {
        counts.push((r.top.uncounted as f64, c.top.uncounted as f64));
    }
    let (nr, nc) = (nr as f64, nc as f64);
    // Chi-square test of homogeneity on the 2 x K table.
    let total = nr + nc;
    let mut chi2 = 0.0;
    let mut used = 0usize;
    for &(a, b) in &counts {
        let col = a + b;
        if col == 0.0 {
            continue;
        }
        used += 1;
        for (obs, row) in [(a, nr), (b, nc)] {
            let exp = row * col / total;
            chi2 += (obs - exp) * (obs - exp) / exp;
        }
    }
    let chi2_p = if used > 1 {
        ChiSquared::new((used - 1) as f64)
            .map(|d| d.sf(chi2))
            .unwrap_or(1.0)
    } else {
        1.0
    };
    let p: Vec<f64> = counts.iter().map(|c| (c.0 / nr).max(EPS)).collect();
    let q: Vec<f64> = counts.iter().map(|c| (c.1 / nc).max(EPS)).collect();
    let psi: f64 = p.iter().zip(&q).map(|(a, b)| (b - a) * (b / a).ln()).sum();
    let js = jensen_shannon(
        &counts.iter().map(|c| c.0 / nr).collect::<Vec<_>>(),
        &counts.iter().map(|c| c.1 / nc).collect::<Vec<_>>(),
    );
    let (decided_by, score, thr, drifted) = match method {
        DriftMethod::Test => decide_p("chi2_p_value", chi2_p, threshold.unwrap_or(0.05)),
        DriftMethod::Psi => decide_d("psi", psi, threshold.unwrap_or(0.2)),
        DriftMethod::Distance => decide_d("jensen_shannon", js, threshold.unwrap_or(0.1)),
        DriftMethod::Auto if nr <= 1000.0 => {
            decide_p("chi2_p_value", chi2_p, threshold.unwrap_or(0.05))
        }
        DriftMethod::Auto => decide_d("jensen_shannon", js, threshold.unwrap_or(0.1)),
    };
    Some(ColumnDrift {
        column: column.into(),
        kind: "categorical",
        reference_rows: nr as u64,
        current_rows: nc as u64,
        ks_statistic: None,
        ks_p_value: None,
        wasserstein: None,
        wasserstein_normed: None,
        chi2: Some(chi2),
        chi2_p_value: Some(chi2_p),
        jensen_shannon: Some(js),
        psi,
        decided_by,
        score,
        threshold: thr,
        drifted,
    })
}

fn decide_p(name: &str, p: f64, thr: f64) -> (String, f64, f64, bool) {
    (name.into(), p, thr, p < thr)
}

fn decide_d(name: &str, d: f64, thr: f64) -> (String, f64, f64, bool) {
    (name.into(), d, thr, d >= thr)
}

/// PSI over bins given by both CDFs at the inner edges.
fn psi_from_cdfs(fr: &[f64], fc: &[f64]) -> f64 {
    let bins = |f: &[f64]| {
        let mut prev = 0.0;
        let mut out: Vec<f64> = f
            .iter()
            .map(|&x| {
                let b = x - prev;
                prev = x;
                b
            })
            .collect();
        out.push(1.0 - prev);
        out
    };
    bins(fr)
        .iter()
        .zip(bins(fc))
        .map(|(&a, b)| {
            let (a, b) = (a.max(EPS), b.max(EPS));
            (b - a) * (b / a).ln()
        })
        .sum()
}

/// Jensen–Shannon distance (the square root of the divergence), base 2, as
/// scipy's `jensenshannon(p, q, base=2)`.
pub fn jensen_shannon(p: &[f64], q: &[f64]) -> f64 {
    let kl = |a: &[f64], m: &[f64]| -> f64 {
        a.iter()
            .zip(m)
            .filter(|(x, _)| **x > 0.0)
            .map(|(x, y)| x * (x / y).log2())
            .sum()
    };
    let m: Vec<f64> = p.iter().zip(q).map(|(a, b)| 0.5 * (a + b)).collect();
    (0.5 * kl(p, &m) + 0.5 * kl(q, &m)).max(0.0).sqrt()
}

/// The Kolmogorov distribution's survival function Q(λ).
pub fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    for j in 1..=100 {
        let j = j as f64;
        let term = (-2.0 * j * j * lambda * lambda).exp();
        sum += if j as i64 % 2 == 1 { term } else { -term };
        if term < 1e-12 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Float64Array, StringArray};
    use std::sync::Arc;

    fn num(xs: Vec<f64>) -> ColumnAcc {
        let a: ArrayRef = Arc::new(Float64Array::from(xs));
        ColumnAcc::from_array(ColumnKind::Numeric, &a).unwrap()
    }

    fn text(xs: Vec<&str>) -> ColumnAcc {
        let a: ArrayRef = Arc::new(StringArray::from(xs));
        ColumnAcc::from_array(ColumnKind::Text, &a).unwrap()
    }

    #[test]
    fn identical_columns_do_not_drift_and_shifted_ones_do() {
        let base: Vec<f64> = (0..5000).map(|i| (i % 100) as f64).collect();
        let same = column_drift(
            "x",
            &num(base.clone()),
            &num(base.clone()),
            DriftMethod::Auto,
            None,
        )
        .unwrap();
        assert_eq!(same.ks_statistic, Some(0.0));
        assert!(same.wasserstein.unwrap().abs() < 1e-12);
        assert!(same.psi.abs() < 1e-12);
        assert!(!same.drifted);
        let shifted: Vec<f64> = base.iter().map(|x| x + 10.0).collect();
        let d = column_drift("x", &num(base), &num(shifted), DriftMethod::Auto, None).unwrap();
        // A shift by 10 moves every quantile by 10: W1 = 10, KS = 10/100.
        assert!((d.wasserstein.unwrap() - 10.0).abs() < 0.3, "{d:?}");
        assert!((d.ks_statistic.unwrap() - 0.1).abs() < 0.01, "{d:?}");
        assert!(d.drifted);
        assert_eq!(d.decided_by, "wasserstein_normed");
    }

    #[test]
    fn categorical_drift_matches_hand_computed_figures() {
        // Reference 50/50, current 90/10.
        let r = text([vec!["a"; 50], vec!["b"; 50]].concat());
        let c = text([vec!["a"; 90], vec!["b"; 10]].concat());
        let d = column_drift("c", &r, &c, DriftMethod::Auto, None).unwrap();
        // Chi-square on [[50,50],[90,10]]: expected 70/30 per row.
        let chi2 = 2.0 * (20.0f64.powi(2) / 70.0 + 20.0f64.powi(2) / 30.0);
        assert!((d.chi2.unwrap() - chi2).abs() < 1e-9);
        assert!(d.chi2_p_value.unwrap() < 1e-6);
        let psi = (0.9 - 0.5) * (0.9f64 / 0.5).ln() + (0.1 - 0.5) * (0.1f64 / 0.5).ln();
        assert!((d.psi - psi).abs() < 1e-9);
        assert!(d.drifted);
        let js = jensen_shannon(&[0.5, 0.5], &[0.5, 0.5]);
        assert_eq!(js, 0.0);
        // Disjoint supports: distance 1 in base 2.
        assert!((jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn kolmogorov_distribution_matches_known_values() {
        // Q(1.36) = 0.049..., the classic 5% critical value.
        assert!((kolmogorov_q(1.358) - 0.05).abs() < 1e-3);
        assert_eq!(kolmogorov_q(0.0), 1.0);
        assert!(kolmogorov_q(3.0) < 1e-6);
    }
}
