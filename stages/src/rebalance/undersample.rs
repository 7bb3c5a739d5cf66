//! Under-samplers and cleaners: random, Tomek links, edited nearest
//! neighbours, NearMiss (1, 2, 3). Each returns the rows it removes with
//! the reason; they never add or change a row.
//!
//! The deterministic ones follow imbalanced-learn 0.14 step by step, so that
//! they remove the same rows on the same data (the golden tests check it):
//! same neighbour counts, same sums of distances, same stable orderings.
//! Where two rows are at exactly the same distance, gigo prefers the earlier
//! row; scikit-learn's order for such ties depends on its tree layout.

use gigo_pipeline::summary::Severity;
use gigo_pipeline::{StageContext, StageError};
use rand::seq::index::sample;
use rayon::prelude::*;
use schemars::JsonSchema;
use serde::Deserialize;

use super::Note;
use super::data::{Classes, Features, sq_dist};
use super::neighbours::{among, within};
use super::strategy::minority;

/// Reason recorded for rows removed by random under-sampling.
pub const RANDOM_UNDER: &str = "random_under";
/// Reason recorded for rows removed as part of a Tomek link.
pub const TOMEK_LINK: &str = "tomek_link";
/// Reason recorded for rows removed by edited nearest neighbours.
pub const ENN: &str = "enn";
/// Reason recorded for rows removed by NearMiss.
pub const NEAR_MISS: &str = "near_miss";

/// Removed rows (global indices) and why.
pub type Removal = Vec<(u32, &'static str)>;

/// Random under-sampling: keeps a uniform sample (without replacement) of
/// each targeted class's rows.
pub fn random_under(ctx: &StageContext, classes: &Classes, targets: &[Option<usize>]) -> Removal {
    let mut removed = Vec::new();
    for (c, t) in targets.iter().enumerate() {
        let Some(t) = *t else { continue };
        let members = &classes.members[c];
        if t >= members.len() {
            continue;
        }
        let mut rng = ctx.rng_for(c as u64);
        let mut keep = vec![false; members.len()];
        for i in sample(&mut rng, members.len(), t) {
            keep[i] = true;
        }
        removed.extend(
            members
                .iter()
                .zip(&keep)
                .filter(|&(_, &k)| !k)
                .map(|(&r, _)| (r, RANDOM_UNDER)),
        );
    }
    removed.sort_unstable();
    removed
}

/// Tomek links (Tomek 1976): two rows of different classes, each the
/// other's nearest neighbour. Removes the members of links that belong to a
/// targeted class.
pub fn tomek(classes: &Classes, f: &Features, targeted: &[bool]) -> Removal {
    let all: Vec<u32> = (0..classes.of_row.len() as u32).collect();
    let near = within(f, &all, 1, true);
    if near.k == 0 {
        return Vec::new();
    }
    (0..all.len())
        .filter(|&i| {
            let c = classes.of_row[i] as usize;
            let j = near.of(i).0[0] as usize;
            targeted[c] && classes.of_row[j] as usize != c && near.of(j).0[0] as usize == i
        })
        .map(|i| (i as u32, TOMEK_LINK))
        .collect()
}

/// How ENN decides whether a row agrees with its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KindSel {
    /// Keep a row only if all its neighbours are of its class.
    #[default]
    All,
    /// Keep a row if the most common class among its neighbours (ties: the
    /// first class) is its own.
    Mode,
}

/// Edited nearest neighbours (Wilson 1972): removes a row of a targeted
/// class when its `n` nearest rows disagree with its class (see [`KindSel`]).
pub fn enn(classes: &Classes, f: &Features, targeted: &[bool], n: usize, kind: KindSel) -> Removal {
    let all: Vec<u32> = (0..classes.of_row.len() as u32).collect();
    let queries: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&r| targeted[classes.of_row[r as usize] as usize])
        .collect();
    let near = if queries.len() == all.len() {
        within(f, &all, n, true)
    } else {
        among(f, &all, &queries, n, true, true)
    };
    let k = classes.names.len();
    queries
        .par_iter()
        .enumerate()
        .filter(|&(i, &r)| {
            let c = classes.of_row[r as usize];
            let labels = near.of(i).0.iter().map(|&p| classes.of_row[p as usize]);
            match kind {
                KindSel::All => labels.into_iter().any(|l| l != c),
                KindSel::Mode => {
                    let mut counts = vec![0usize; k];
                    for l in labels {
                        counts[l as usize] += 1;
                    }
                    // scipy's mode: the most frequent, ties to the smallest class
                    let top = counts.iter().copied().max().unwrap_or(0);
                    let mode = counts.iter().position(|&n| n == top).unwrap_or(0);
                    near.k > 0 && mode as u32 != c
                }
            }
        })
        .map(|(_, &r)| (r, ENN))
        .collect()
}

/// The NearMiss variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearMissVersion {
    /// Keep the rows whose `n` nearest minority rows are closest on average.
    One,
    /// Keep the rows whose `n` farthest minority rows are closest on average.
    Two,
    /// Keep, among the `n_ver3` nearest rows of each minority row, those
    /// whose `n` nearest minority rows are farthest on average.
    Three,
}

/// Stable order of `scores` (ascending, or descending), as Python's `sorted`.
fn stable_order(scores: &[f64], descending: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    if descending {
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    } else {
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    }
    order
}

/// Sum of each row's `n` largest distances to `minority` (NearMiss-2), by
/// exact brute force: no `rows x minority` matrix is ever held.
fn farthest_sums(f: &Features, rows: &[u32], minority: &[u32], n: usize) -> Vec<f64> {
    let d = f.numeric.len();
    let x = f.rows_f64(rows);
    let y = f.rows_f64(minority);
    let n = n.min(minority.len());
    (0..rows.len())
        .into_par_iter()
        .map(|i| {
            let xi = &x[i * d..(i + 1) * d];
            // the n largest squared distances, ascending
            let mut top: Vec<f64> = Vec::with_capacity(n + 1);
            for yj in y.chunks_exact(d.max(1)).take(minority.len()) {
                let d2 = sq_dist(xi, yj);
                if top.len() < n || d2 > top[0] {
                    let at = top.partition_point(|&t| t < d2);
                    top.insert(at, d2);
                    if top.len() > n {
                        top.remove(0);
                    }
                }
            }
            top.iter().map(|d2| d2.sqrt()).sum()
        })
        .collect()
}

/// NearMiss (Mani & Zhang 2003): brings each targeted class down to its
/// target by keeping the rows closest to (versions 1, 2) or, among the
/// nearest to the minority class, farthest from (version 3) the rows of the
/// minority class. Version 3 keeps fewer rows than the target when fewer
/// rows are anyone's near neighbours (a warning says so), as
/// imbalanced-learn.
#[allow(clippy::too_many_arguments)]
pub fn near_miss(
    classes: &Classes,
    f: &Features,
    targets: &[Option<usize>],
    version: NearMissVersion,
    n: usize,
    n_ver3: usize,
    notes: &mut Vec<Note>,
) -> Result<Removal, StageError> {
    let counts = classes.counts();
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    let min = minority(&counts);
    let minority_rows = &classes.members[min];
    let mut removed = Vec::new();
    for (c, t) in targets.iter().enumerate() {
        let Some(t) = *t else { continue };
        let members = &classes.members[c];
        if t >= members.len() {
            continue;
        }
        let kept_positions: Vec<usize> = match version {
            NearMissVersion::One => {
                let near = among(f, minority_rows, members, n, false, true);
                let sums: Vec<f64> = (0..members.len())
                    .map(|i| near.of(i).1.iter().sum())
                    .collect();
                stable_order(&sums, false).into_iter().take(t).collect()
            }
            NearMissVersion::Two => {
                let sums = farthest_sums(f, members, minority_rows, n);
                stable_order(&sums, false).into_iter().take(t).collect()
            }
            NearMissVersion::Three => {
                let near3 = among(f, members, minority_rows, n_ver3, false, true);
                let mut pool: Vec<usize> = near3.idx.iter().map(|&p| p as usize).collect();
                pool.sort_unstable();
                pool.dedup();
                let pool_rows: Vec<u32> = pool.iter().map(|&p| members[p]).collect();
                let near = among(f, minority_rows, &pool_rows, n, false, true);
                let sums: Vec<f64> = (0..pool.len()).map(|i| near.of(i).1.iter().sum()).collect();
                if pool.len() < t {
                    notes.push(Note::new(
                        Severity::Warning,
                        "near_miss_short",
                        format!(
                            "NearMiss-3 keeps {} rows of class `{}` instead of {t}: only that many \
                             are among the {n_ver3} nearest of some row of the minority class `{}`",
                            pool.len(),
                            classes.names[c],
                            classes.names[min]
                        ),
                    ));
                }
                stable_order(&sums, true)
                    .into_iter()
                    .take(t)
                    .map(|i| pool[i])
                    .collect()
            }
        };
        let mut keep = vec![false; members.len()];
        for p in kept_positions {
            keep[p] = true;
        }
        removed.extend(
            members
                .iter()
                .zip(&keep)
                .filter(|&(_, &k)| !k)
                .map(|(&r, _)| (r, NEAR_MISS)),
        );
    }
    removed.sort_unstable();
    Ok(removed)
}
