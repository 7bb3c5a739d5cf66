//! Over-samplers: random, SMOTE, Borderline-SMOTE (1, 2), ADASYN, SMOTE-NC.
//!
//! Each decides, per class to grow, which rows the new rows start from,
//! which neighbour they move towards and how far ([`Synthetic`]); the values
//! are computed later, column by column, in the original feature space.
//! Random draws come from one generator per class (derived from the stage
//! seed and the class), drawn in a fixed order, so the result depends on
//! neither the thread count nor the other classes.

use gigo_pipeline::summary::Severity;
use gigo_pipeline::{StageContext, StageError};
use rand::Rng;
use rayon::prelude::*;

use super::Note;
use super::data::{Classes, Features, Synthetic, sq_dist};
use super::neighbours::{Near, among, within};

/// The generator for class `c`.
fn rng_for_class(ctx: &StageContext, c: usize) -> impl Rng + use<> {
    ctx.rng_for(c as u64)
}

/// Classes to grow and how many rows each needs.
fn wanted(classes: &Classes, targets: &[Option<usize>]) -> Vec<(usize, usize)> {
    let counts = classes.counts();
    targets
        .iter()
        .enumerate()
        .filter_map(|(c, t)| t.map(|t| (c, t.saturating_sub(counts[c]))))
        .filter(|&(_, n)| n > 0)
        .collect()
}

/// Random over-sampling: copies of rows drawn uniformly with replacement.
pub fn random_over(ctx: &StageContext, classes: &Classes, targets: &[Option<usize>]) -> Synthetic {
    let mut out = Synthetic {
        copies: true,
        ..Default::default()
    };
    for (c, n_new) in wanted(classes, targets) {
        let members = &classes.members[c];
        let mut rng = rng_for_class(ctx, c);
        for _ in 0..n_new {
            let row = members[rng.random_range(0..members.len())];
            out.class.push(c as u32);
            out.base.push(row);
        }
    }
    out
}

/// The usable `k` for a class of `n` rows, with a note when capped.
fn cap_k(
    classes: &Classes,
    c: usize,
    k: usize,
    what: &str,
    notes: &mut Vec<Note>,
) -> Result<usize, StageError> {
    let n = classes.members[c].len();
    if n < 2 {
        return Err(StageError::data(format!(
            "class `{}` has {n} row: {what} needs at least 2 rows of a class to interpolate \
             between (use random_over for it, or leave it out with `classes`)",
            classes.names[c]
        )));
    }
    if k > n - 1 {
        notes.push(Note::new(
            Severity::Info,
            "k_capped",
            format!(
                "class `{}` has {n} rows, so its rows have {} same-class neighbours instead of \
                 k_neighbors = {k}",
                classes.names[c],
                n - 1
            ),
        ));
    }
    Ok(k.min(n - 1))
}

/// Draws `n_new` (start, neighbour, gap) triples as SMOTE does: a start row
/// uniformly among `starts`, one of its `k` neighbours uniformly, a gap
/// uniform in [0, 1).
fn draw(
    rng: &mut impl Rng,
    c: usize,
    n_new: usize,
    starts: &[u32],
    near: &Near,
    neighbour_rows: &[u32],
    out: &mut Synthetic,
) {
    let k = near.k;
    out.class.reserve(n_new);
    out.base.reserve(n_new);
    out.neighbour.reserve(n_new);
    out.gap.reserve(n_new);
    for _ in 0..n_new {
        let pick = rng.random_range(0..starts.len() * k);
        let (row, col) = (pick / k, pick % k);
        let nb = near.of(row).0[col];
        out.class.push(c as u32);
        out.base.push(starts[row]);
        out.neighbour.push(neighbour_rows[nb as usize]);
        out.gap.push(rng.random::<f64>());
    }
}

/// SMOTE: new rows on the segment between a row of the class and one of its
/// `k` nearest same-class neighbours.
pub fn smote(
    ctx: &StageContext,
    classes: &Classes,
    f: &Features,
    targets: &[Option<usize>],
    k: usize,
    notes: &mut Vec<Note>,
) -> Result<Synthetic, StageError> {
    let mut out = Synthetic::default();
    for (c, n_new) in wanted(classes, targets) {
        let k = cap_k(classes, c, k, "SMOTE", notes)?;
        let members = &classes.members[c];
        let near = within(f, members, k, false);
        draw(
            &mut rng_for_class(ctx, c),
            c,
            n_new,
            members,
            &near,
            members,
            &mut out,
        );
    }
    Ok(out)
}

/// Rows of class `c` and how many of their `m` nearest rows (any class)
/// belong to another class.
fn other_class_neighbours(
    classes: &Classes,
    f: &Features,
    c: usize,
    m: usize,
) -> (Near, Vec<usize>) {
    let all: Vec<u32> = (0..classes.of_row.len() as u32).collect();
    let members = &classes.members[c];
    let near = among(f, &all, members, m, true, false);
    let others = (0..members.len())
        .map(|i| {
            near.of(i)
                .0
                .iter()
                .filter(|&&p| classes.of_row[p as usize] as usize != c)
                .count()
        })
        .collect();
    (near, others)
}

/// Borderline-SMOTE (Han et al. 2005): SMOTE from the rows "in danger" only,
/// those with at least half but not all of their `m` nearest neighbours in
/// other classes. Kind 1 moves towards same-class neighbours; kind 2 towards
/// any of the `k` nearest rows, at most half-way (a gap times a uniform
/// factor in [0, 0.5), as imbalanced-learn) when the neighbour is of another
/// class. A class with no row in danger falls back to plain SMOTE, with a
/// warning (imbalanced-learn adds nothing for it).
#[allow(clippy::too_many_arguments)]
pub fn borderline(
    ctx: &StageContext,
    classes: &Classes,
    f: &Features,
    targets: &[Option<usize>],
    k: usize,
    m: usize,
    kind: u8,
    notes: &mut Vec<Note>,
) -> Result<Synthetic, StageError> {
    let mut out = Synthetic::default();
    let all: Vec<u32> = (0..classes.of_row.len() as u32).collect();
    for (c, n_new) in wanted(classes, targets) {
        let members = &classes.members[c];
        let (near_m, others) = other_class_neighbours(classes, f, c, m);
        let m_eff = near_m.k;
        let danger: Vec<u32> = members
            .iter()
            .zip(&others)
            .filter(|&(_, &o)| 2 * o >= m_eff && o < m_eff)
            .map(|(&r, _)| r)
            .collect();
        let mut rng = rng_for_class(ctx, c);
        if danger.is_empty() {
            notes.push(Note::new(
                Severity::Warning,
                "no_borderline_rows",
                format!(
                    "no row of class `{}` is in danger (half or more, but not all, of its {m_eff} \
                     nearest rows in other classes): its {n_new} new rows come from plain SMOTE",
                    classes.names[c]
                ),
            ));
            let k = cap_k(classes, c, k, "SMOTE", notes)?;
            let near = within(f, members, k, false);
            draw(&mut rng, c, n_new, members, &near, members, &mut out);
            continue;
        }
        if kind == 1 {
            let k = cap_k(classes, c, k, "Borderline-SMOTE", notes)?;
            // Same-class neighbours of the rows in danger.
            let near_all = within(f, members, k, false);
            let pos: Vec<usize> = danger
                .iter()
                .map(|r| members.binary_search(r).unwrap_or(0))
                .collect();
            let near = Near {
                k: near_all.k,
                idx: pos
                    .iter()
                    .flat_map(|&p| near_all.of(p).0.to_vec())
                    .collect(),
                dist: pos
                    .iter()
                    .flat_map(|&p| near_all.of(p).1.to_vec())
                    .collect(),
            };
            draw(&mut rng, c, n_new, &danger, &near, members, &mut out);
        } else {
            let near = among(f, &all, &danger, k, true, false);
            let start = out.len();
            draw(&mut rng, c, n_new, &danger, &near, &all, &mut out);
            for s in start..out.len() {
                if classes.of_row[out.neighbour[s] as usize] as usize != c {
                    out.gap[s] *= rng.random::<f64>() * 0.5;
                }
            }
        }
    }
    Ok(out)
}

/// Splits `total` in proportion to `weights` (summing to > 0) so that the
/// parts sum to `total` exactly: floors, then one more for the largest
/// remainders (ties: the earlier entry).
pub fn apportion(weights: &[f64], total: usize) -> Vec<usize> {
    let sum: f64 = weights.iter().sum();
    let exact: Vec<f64> = weights.iter().map(|w| w / sum * total as f64).collect();
    let mut parts: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let given: usize = parts.iter().sum();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    for &i in order.iter().take(total.saturating_sub(given)) {
        parts[i] += 1;
    }
    parts
}

/// ADASYN (He et al. 2008): as SMOTE, but each row of the class gets new
/// rows in proportion to the share of other classes among its `k` nearest
/// rows. The shares are apportioned so that the class reaches its target
/// exactly (imbalanced-learn rounds each row's share, which can miss the
/// target by a few rows). A class none of whose rows has a neighbour of
/// another class falls back to uniform shares (plain SMOTE), with a warning
/// (imbalanced-learn fails).
pub fn adasyn(
    ctx: &StageContext,
    classes: &Classes,
    f: &Features,
    targets: &[Option<usize>],
    k: usize,
    notes: &mut Vec<Note>,
) -> Result<Synthetic, StageError> {
    let mut out = Synthetic::default();
    for (c, n_new) in wanted(classes, targets) {
        let members = &classes.members[c];
        let (near_all, others) = other_class_neighbours(classes, f, c, k);
        let mut ratio: Vec<f64> = others
            .iter()
            .map(|&o| o as f64 / near_all.k.max(1) as f64)
            .collect();
        if ratio.iter().all(|&r| r == 0.0) {
            notes.push(Note::new(
                Severity::Warning,
                "adasyn_uniform",
                format!(
                    "no row of class `{}` has a neighbour of another class among its {} nearest \
                     rows: ADASYN has nothing to weight by, so its new rows are spread evenly \
                     (plain SMOTE)",
                    classes.names[c], near_all.k
                ),
            ));
            ratio = vec![1.0; members.len()];
        }
        let per_row = apportion(&ratio, n_new);
        let k = cap_k(classes, c, k, "ADASYN", notes)?;
        let near = within(f, members, k, false);
        let mut rng = rng_for_class(ctx, c);
        for (i, &g) in per_row.iter().enumerate() {
            let nbs = near.of(i).0;
            for _ in 0..g {
                let nb = nbs[rng.random_range(0..near.k)];
                out.class.push(c as u32);
                out.base.push(members[i]);
                out.neighbour.push(members[nb as usize]);
                out.gap.push(rng.random::<f64>());
            }
        }
    }
    Ok(out)
}

/// Median of the per-feature population standard deviations over `rows`
/// (missing values skipped), as SMOTE-NC's categorical penalty.
fn median_std(f: &Features, rows: &[u32]) -> f64 {
    let mut stds: Vec<f64> = f
        .numeric
        .iter()
        .map(|col| {
            let (mut n, mut mean, mut m2) = (0.0f64, 0.0f64, 0.0f64);
            for &r in rows {
                if let Some(v) = col.get(r as usize) {
                    n += 1.0;
                    let d = v - mean;
                    mean += d / n;
                    m2 += d * (v - mean);
                }
            }
            if n > 0.0 { (m2 / n).sqrt() } else { 0.0 }
        })
        .collect();
    if stds.is_empty() {
        return 0.0;
    }
    stds.sort_by(f64::total_cmp);
    let h = stds.len() / 2;
    if stds.len() % 2 == 1 {
        stds[h]
    } else {
        (stds[h - 1] + stds[h]) / 2.0
    }
}

/// Same-class neighbours for SMOTE-NC: squared distance = euclidean over the
/// numeric features + `penalty²` per categorical feature that differs, i.e.
/// imbalanced-learn's distance over one-hot columns scaled to `median_std /
/// sqrt(2)` (with `penalty` = median_std), computed from category codes
/// without building the one-hot matrix. Exact brute force over the class, one query per task.
fn nc_neighbours(f: &Features, rows: &[u32], k: usize, penalty: f64) -> Near {
    let n = rows.len();
    let k = k.min(n.saturating_sub(1));
    let d = f.numeric.len();
    let x = f.rows_f64(rows);
    let codes: Vec<Vec<u32>> = f
        .categorical
        .iter()
        .map(|c| rows.iter().map(|&r| c.codes[r as usize]).collect())
        .collect();
    let p2 = penalty * penalty;
    let mut idx = vec![0u32; n * k];
    let mut dist = vec![0f64; n * k];
    if k == 0 {
        return Near { k, idx, dist };
    }
    idx.par_chunks_mut(k)
        .zip(dist.par_chunks_mut(k))
        .enumerate()
        .for_each(|(i, (idx, dist))| {
            let xi = &x[i * d..(i + 1) * d];
            let mut all: Vec<(f64, u32)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let mut s = sq_dist(xi, &x[j * d..(j + 1) * d]);
                    s += p2 * codes.iter().filter(|c| c[i] != c[j]).count() as f64;
                    (s, j as u32)
                })
                .collect();
            let cmp = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
            if all.len() > k {
                all.select_nth_unstable_by(k - 1, cmp);
                all.truncate(k);
            }
            all.sort_by(cmp);
            for (s, (d2, j)) in all.into_iter().enumerate() {
                idx[s] = j;
                dist[s] = d2.sqrt();
            }
        });
    Near { k, idx, dist }
}

/// SMOTE-NC (Chawla et al. 2002, as imbalanced-learn): numeric features are
/// interpolated as in SMOTE; each categorical feature takes the most frequent
/// value among the start row's `k` neighbours (ties broken at random).
pub fn smote_nc(
    ctx: &StageContext,
    classes: &Classes,
    f: &Features,
    targets: &[Option<usize>],
    k: usize,
    notes: &mut Vec<Note>,
) -> Result<Synthetic, StageError> {
    let mut out = Synthetic {
        categorical: vec![Vec::new(); f.categorical.len()],
        ..Default::default()
    };
    for (c, n_new) in wanted(classes, targets) {
        let k = cap_k(classes, c, k, "SMOTE-NC", notes)?;
        let members = &classes.members[c];
        // imbalanced-learn one-hot encodes at median_std / sqrt(2): two rows
        // with different categories differ in two such columns, median_std² in all.
        let near = nc_neighbours(f, members, k, median_std(f, members));
        let mut rng = rng_for_class(ctx, c);
        let start = out.len();
        draw(&mut rng, c, n_new, members, &near, members, &mut out);
        let mut counts: Vec<usize> = Vec::new();
        for s in start..out.len() {
            let base_pos = members.binary_search(&out.base[s]).unwrap_or(0);
            let nbs = near.of(base_pos).0;
            for (j, cat) in f.categorical.iter().enumerate() {
                counts.clear();
                counts.resize(cat.n_codes, 0);
                for &p in nbs {
                    counts[cat.codes[members[p as usize] as usize] as usize] += 1;
                }
                let top = counts.iter().copied().max().unwrap_or(0);
                // Tied codes in order of first appearance among the neighbours.
                let mut tied: Vec<u32> = Vec::new();
                for &p in nbs {
                    let code = cat.codes[members[p as usize] as usize];
                    if counts[code as usize] == top && !tied.contains(&code) {
                        tied.push(code);
                    }
                }
                let code = if tied.len() > 1 {
                    tied[rng.random_range(0..tied.len())]
                } else {
                    tied.first().copied().unwrap_or(0)
                };
                let source = nbs
                    .iter()
                    .map(|&p| members[p as usize])
                    .find(|&r| cat.codes[r as usize] == code)
                    .unwrap_or(out.base[s]);
                out.categorical[j].push(source);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_hits_the_total_and_favours_large_remainders() {
        assert_eq!(apportion(&[1.0, 1.0, 1.0], 10), vec![4, 3, 3]);
        assert_eq!(apportion(&[0.0, 2.0, 1.0], 4), vec![0, 3, 1]);
        assert_eq!(apportion(&[0.5, 0.25, 0.25], 7).iter().sum::<usize>(), 7);
    }
}
