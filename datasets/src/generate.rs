//! The `generate` stage: synthetic classification data with known, injected
//! garbage.
//!
//! The clean data follows scikit-learn's `make_classification`: every class
//! has one or more Gaussian clusters centred on distinct vertices of a
//! hypercube (side `2 * class_sep`) in the informative subspace, each cluster
//! with its own random covariance; redundant features are random linear
//! combinations of the informative ones, and noise features are pure
//! `N(0, 1)`. Feature columns come in that order: `x0 .. x{informative-1}` are
//! informative, then the redundant ones, then the noise.
//!
//! Garbage is then injected in a fixed order, each kind recorded in a
//! ground-truth column ([`Role::Truth`]):
//!
//! 1. label flips (`is_flipped`; `true_label` keeps the clean label),
//! 2. outliers (`true_outlier`),
//! 3. missing feature cells (`n_missing`),
//! 4. duplicate rows (`true_duplicate`), exact copies of earlier rows.
//!
//! Everything is drawn from the stage's seeded generator, so the same seed
//! gives the same table.

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_pipeline::{
    Inputs, ParamProblem, PortSpec, Registry, Role, Stage, StageContext, StageError, StageOutput,
    Table, field_with_role,
};
use rand::Rng;
use rand::seq::{SliceRandom, index};
use rand_distr::StandardNormal;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The stage type name used in YAML (`type: generate`).
pub const STAGE_TYPE: &str = "generate";

/// What `gigo stages` shows for the stage.
const DOC: &str = "Generates a synthetic classification table like scikit-learn's \
make_classification: Gaussian clusters on the vertices of a hypercube in an informative \
subspace, plus redundant (linear combinations) and pure-noise features. Injects known \
garbage (flipped labels, outliers, missing cells, duplicate rows) and records each kind in \
ground-truth columns (true_label, is_flipped, true_outlier, true_duplicate, n_missing), so that \
cleaning stages can be scored against it. The same seed gives the same table.";

/// Most feature cells (rows × features) the stage will generate.
const MAX_CELLS: usize = 1_000_000_000;

/// Most feature columns the stage will generate.
const MAX_FEATURES: usize = 10_000;

/// Outliers lie this many (root-mean-square) standard deviations from the mean, at least...
const OUTLIER_MIN_STD: f64 = 6.0;
/// ... and at most.
const OUTLIER_MAX_STD: f64 = 10.0;

/// Parameters of the `generate` stage. `{}` is valid: 1000 clean rows, two
/// balanced classes, 8 features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct GenerateParams {
    /// Number of rows to generate, before duplicates are added (at least 10).
    pub rows: usize,
    /// Number of classes (2 to 100); labels are 0 .. classes-1.
    pub classes: usize,
    /// Number of informative features (the columns x0, x1, ... come first);
    /// 2^informative must be at least classes × clusters_per_class.
    pub informative: usize,
    /// Number of redundant features: random linear combinations of the
    /// informative ones (they follow the informative columns).
    pub redundant: usize,
    /// Number of pure N(0, 1) noise features (the last feature columns).
    pub noise_features: usize,
    /// Number of Gaussian clusters per class.
    pub clusters_per_class: usize,
    /// Half the side of the hypercube on whose vertices the cluster centres
    /// lie: larger values separate the classes more.
    pub class_sep: f64,
    /// Relative class frequencies, one per class, all > 0 (e.g. [0.9, 0.1] for
    /// a 90/10 imbalance); normalised. Default: balanced classes.
    pub class_weights: Option<Vec<f64>>,
    /// Labels to flip (the given `label` differs from `true_label`).
    pub label_noise: LabelNoise,
    /// Fraction of rows (0 to <1) made outliers: their features are moved 6 to
    /// 10 standard deviations (root mean square over the features) from the
    /// mean, along a random direction.
    pub outliers: f64,
    /// Fraction of feature cells (0 to <1) set to null.
    pub missing: f64,
    /// Number of duplicate rows to add, as a fraction (0 to <1) of `rows`: exact
    /// copies of randomly chosen rows, each placed somewhere after its original.
    pub duplicates: f64,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            rows: 1000,
            classes: 2,
            informative: 4,
            redundant: 2,
            noise_features: 2,
            clusters_per_class: 1,
            class_sep: 1.0,
            class_weights: None,
            label_noise: LabelNoise::default(),
            outliers: 0.0,
            missing: 0.0,
            duplicates: 0.0,
        }
    }
}

/// Label noise: which labels to flip, and to what.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LabelNoise {
    /// Fraction of rows (0 to <1) whose label is flipped: exactly
    /// round(rate × rows) rows, chosen at random.
    pub rate: f64,
    /// How a flipped label is chosen.
    pub kind: LabelNoiseKind,
}

/// How a flipped label is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelNoiseKind {
    /// Uniformly among the other classes.
    #[default]
    Symmetric,
    /// Class c becomes class (c + 1) mod classes.
    ClassConditional,
}

impl LabelNoiseKind {
    /// The name used in YAML.
    fn as_str(self) -> &'static str {
        match self {
            LabelNoiseKind::Symmetric => "symmetric",
            LabelNoiseKind::ClassConditional => "class_conditional",
        }
    }
}

impl GenerateParams {
    /// Total number of feature columns.
    pub fn n_features(&self) -> usize {
        self.informative
            .saturating_add(self.redundant)
            .saturating_add(self.noise_features)
    }

    /// Checks the parameters, reporting every problem at once.
    pub fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let mut problems = Vec::new();
        let mut problem = |path: &str, msg: String| problems.push(ParamProblem::new(path, msg));

        if self.rows < 10 {
            problem("rows", format!("must be at least 10, got {}", self.rows));
        }
        let classes_ok = (2..=100).contains(&self.classes);
        if !classes_ok {
            problem(
                "classes",
                format!("must be between 2 and 100, got {}", self.classes),
            );
        }
        if self.informative == 0 {
            problem("informative", "must be at least 1, got 0".into());
        }
        if self.clusters_per_class == 0 {
            problem("clusters_per_class", "must be at least 1, got 0".into());
        }
        if classes_ok && self.informative > 0 && self.clusters_per_class > 0 {
            let clusters = self.classes.saturating_mul(self.clusters_per_class);
            // 2^informative >= clusters; informative >= 64 always suffices.
            let vertices_ok = self.informative >= 64
                || u64::try_from(clusters).is_ok_and(|c| (1u64 << self.informative) >= c);
            if !vertices_ok {
                problem(
                    "informative",
                    format!(
                        "2^informative must be at least classes × clusters_per_class = {clusters} \
                         (each cluster needs its own hypercube vertex), got informative = {}",
                        self.informative
                    ),
                );
            }
            if self.rows >= 10 && clusters > self.rows {
                problem(
                    "clusters_per_class",
                    format!(
                        "classes × clusters_per_class = {clusters} exceeds rows = {}",
                        self.rows
                    ),
                );
            }
        }
        let features = self.n_features();
        if features > MAX_FEATURES {
            problem(
                "informative",
                format!(
                    "informative + redundant + noise_features must be at most {MAX_FEATURES}, got {features}"
                ),
            );
        } else if self
            .rows
            .checked_mul(features)
            .is_none_or(|c| c > MAX_CELLS)
        {
            problem(
                "rows",
                format!(
                    "rows × features must be at most {MAX_CELLS} cells, got {} × {features}",
                    self.rows
                ),
            );
        }
        if !self.class_sep.is_finite() || self.class_sep < 0.0 {
            problem(
                "class_sep",
                format!("must be a finite number >= 0, got {}", self.class_sep),
            );
        }
        if let Some(weights) = &self.class_weights {
            let mut weights_ok = true;
            if weights.len() != self.classes {
                weights_ok = false;
                problem(
                    "class_weights",
                    format!(
                        "must have one weight per class ({}), got {}",
                        self.classes,
                        weights.len()
                    ),
                );
            }
            for (i, w) in weights.iter().enumerate() {
                if !w.is_finite() || *w <= 0.0 {
                    weights_ok = false;
                    problem(
                        &format!("class_weights.{i}"),
                        format!("must be a finite number > 0, got {w}"),
                    );
                }
            }
            if weights_ok && classes_ok && self.rows >= 10 {
                let counts = class_counts(weights, self.rows);
                if let Some(c) = counts.iter().position(|&n| n == 0) {
                    problem(
                        "class_weights",
                        format!(
                            "class {c} would get no row out of {} (its weight is too small)",
                            self.rows
                        ),
                    );
                }
            }
        }
        for (path, value) in [
            ("label_noise.rate", self.label_noise.rate),
            ("outliers", self.outliers),
            ("missing", self.missing),
            ("duplicates", self.duplicates),
        ] {
            if !(0.0..1.0).contains(&value) {
                problem(
                    path,
                    format!(
                        "must be a fraction between 0 (included) and 1 (excluded), got {value}"
                    ),
                );
            }
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// The class weights, uniform when none are given.
    fn weights(&self) -> Vec<f64> {
        match &self.class_weights {
            Some(w) => w.clone(),
            None => vec![1.0; self.classes],
        }
    }
}

/// Splits `n` rows between classes in proportion to `weights` (positive, not
/// necessarily normalised): floors of the quotas, then the rows left over to
/// the largest remainders (ties to the lower class).
fn class_counts(weights: &[f64], n: usize) -> Vec<usize> {
    let total: f64 = weights.iter().sum();
    let quotas: Vec<f64> = weights.iter().map(|w| w / total * n as f64).collect();
    let mut counts: Vec<usize> = quotas.iter().map(|q| q.floor() as usize).collect();
    let mut assigned: usize = counts.iter().sum();
    // Rounding error could in principle over-assign: take back from the largest.
    while assigned > n {
        let Some(c) = (0..counts.len()).max_by_key(|&c| counts[c]) else {
            break;
        };
        counts[c] -= 1;
        assigned -= 1;
    }
    let mut order: Vec<usize> = (0..counts.len()).collect();
    let frac = |c: usize| quotas[c] - quotas[c].floor();
    order.sort_by(|&a, &b| frac(b).total_cmp(&frac(a)).then(a.cmp(&b)));
    for &c in order.iter().cycle().take(n - assigned) {
        counts[c] += 1;
    }
    counts
}

/// `round(fraction × n)`, for a fraction in [0, 1).
fn fraction_of(fraction: f64, n: usize) -> usize {
    ((fraction * n as f64).round() as usize).min(n)
}

/// The generated rows, column by column, before they become Arrow arrays.
#[derive(Debug, Clone)]
struct Synthetic {
    /// Feature values by column; `None` is a missing cell.
    features: Vec<Vec<Option<f64>>>,
    /// The given (possibly flipped) label.
    label: Vec<usize>,
    /// The clean label.
    true_label: Vec<usize>,
    /// Whether the label was flipped.
    is_flipped: Vec<bool>,
    /// Whether the row was made an outlier.
    is_outlier: Vec<bool>,
    /// Whether the row is a copy of an earlier row.
    is_duplicate: Vec<bool>,
    /// Missing feature cells in the row.
    n_missing: Vec<usize>,
}

/// How much garbage of each kind was injected (into the generated rows; the
/// duplicates then copy their original's flags).
#[derive(Debug, Clone, Copy, Default)]
struct Injected {
    flipped: usize,
    outliers: usize,
    missing_cells: usize,
    duplicates: usize,
}

/// `rows × cols` entries drawn uniformly from [-1, 1), row-major.
fn uniform_matrix<R: Rng>(rows: usize, cols: usize, rng: &mut R) -> Vec<f64> {
    (0..rows * cols)
        .map(|_| 2.0 * rng.random::<f64>() - 1.0)
        .collect()
}

/// `n` distinct vertices of the hypercube {-sep, +sep}^dim, in random order.
/// Needs `2^dim >= n`.
fn hypercube<R: Rng>(n: usize, dim: usize, sep: f64, rng: &mut R) -> Vec<Vec<f64>> {
    // Like scikit-learn: distinct bit patterns over (at most) the first 30
    // dimensions, random bits beyond.
    let head = dim.min(30);
    let picks = index::sample(rng, 1usize << head, n);
    picks
        .into_iter()
        .map(|bits| {
            (0..dim)
                .map(|j| {
                    let on = if j < head {
                        (bits >> j) & 1 == 1
                    } else {
                        rng.random::<bool>()
                    };
                    if on { sep } else { -sep }
                })
                .collect()
        })
        .collect()
}

/// A direction drawn uniformly on the unit sphere in `dim` dimensions.
fn unit_direction<R: Rng>(dim: usize, rng: &mut R) -> Vec<f64> {
    loop {
        let v: Vec<f64> = (0..dim).map(|_| rng.sample(StandardNormal)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm > 1e-12 {
            return v.into_iter().map(|x| x / norm).collect();
        }
    }
}

/// Mean and (population) standard deviation of `xs`.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len().max(1) as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// Generates the clean data and injects the garbage. `p` must have passed
/// [`GenerateParams::check`].
fn synthesize<R: Rng>(p: &GenerateParams, rng: &mut R) -> (Synthetic, Injected) {
    let n = p.rows;
    let k = p.classes;
    let cpc = p.clusters_per_class;
    let inf = p.informative;
    let red = p.redundant;
    let d = p.n_features();

    // Labels: exact counts per class, shuffled.
    let counts = class_counts(&p.weights(), n);
    let mut true_label: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(c, &m)| std::iter::repeat_n(c, m))
        .collect();
    true_label.shuffle(rng);

    // Clusters: the rows of class c go in turn to its clusters c·cpc .. c·cpc+cpc-1.
    let n_clusters = k * cpc;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); n_clusters];
    let mut seen = vec![0usize; k];
    for (i, &c) in true_label.iter().enumerate() {
        members[c * cpc + seen[c] % cpc].push(i);
        seen[c] += 1;
    }
    let centroids = hypercube(n_clusters, inf, p.class_sep, rng);

    // Informative features: z·A + centroid, z ~ N(0, I), A uniform in [-1, 1).
    let mut x = vec![vec![0.0f64; n]; d];
    let mut z = vec![0.0f64; inf];
    for (centroid, rows) in centroids.iter().zip(&members) {
        let a = uniform_matrix(inf, inf, rng);
        for &i in rows {
            for v in z.iter_mut() {
                *v = rng.sample(StandardNormal);
            }
            for (col, xs) in x.iter_mut().take(inf).enumerate() {
                let dot: f64 = z
                    .iter()
                    .enumerate()
                    .map(|(r, zr)| zr * a[r * inf + col])
                    .sum();
                xs[i] = centroid[col] + dot;
            }
        }
    }

    // Redundant features: informative × B, B uniform in [-1, 1).
    let b = uniform_matrix(inf, red, rng);
    let (informative, rest) = x.split_at_mut(inf);
    for (j, xs) in rest.iter_mut().take(red).enumerate() {
        for (i, v) in xs.iter_mut().enumerate() {
            *v = informative
                .iter()
                .enumerate()
                .map(|(r, col)| col[i] * b[r * red + j])
                .sum();
        }
    }

    // Noise features.
    for xs in x.iter_mut().skip(inf + red) {
        for v in xs.iter_mut() {
            *v = rng.sample(StandardNormal);
        }
    }

    // 1. Label flips.
    let mut injected = Injected::default();
    let mut label = true_label.clone();
    let mut is_flipped = vec![false; n];
    injected.flipped = fraction_of(p.label_noise.rate, n);
    for i in index::sample(rng, n, injected.flipped) {
        let c = true_label[i];
        label[i] = match p.label_noise.kind {
            LabelNoiseKind::Symmetric => {
                let other = rng.random_range(0..k - 1);
                if other >= c { other + 1 } else { other }
            }
            LabelNoiseKind::ClassConditional => (c + 1) % k,
        };
        is_flipped[i] = true;
    }

    // 2. Outliers: mean + r·√d·σ⊙u, u a random unit direction, r in [6, 10],
    // so the root-mean-square z-score over the features is r.
    let mut is_outlier = vec![false; n];
    injected.outliers = fraction_of(p.outliers, n);
    if injected.outliers > 0 {
        let stats: Vec<(f64, f64)> = x.iter().map(|xs| mean_std(xs)).collect();
        let spread = (d as f64).sqrt();
        for i in index::sample(rng, n, injected.outliers) {
            let u = unit_direction(d, rng);
            let r = rng.random_range(OUTLIER_MIN_STD..=OUTLIER_MAX_STD);
            for ((xs, (mean, std)), uj) in x.iter_mut().zip(&stats).zip(&u) {
                xs[i] = mean + r * spread * std * uj;
            }
            is_outlier[i] = true;
        }
    }

    // 3. Missing cells, chosen among all n·d cells.
    let mut features: Vec<Vec<Option<f64>>> = x
        .into_iter()
        .map(|xs| xs.into_iter().map(Some).collect())
        .collect();
    let mut n_missing = vec![0usize; n];
    injected.missing_cells = fraction_of(p.missing, n * d);
    for cell in index::sample(rng, n * d, injected.missing_cells) {
        let (i, j) = (cell / d, cell % d);
        features[j][i] = None;
        n_missing[i] += 1;
    }

    // 4. Duplicates: copies of random rows, each at a random place after its
    // original (sort key in [source, n); originals first on ties).
    injected.duplicates = fraction_of(p.duplicates, n);
    let mut order: Vec<(f64, bool, usize)> = (0..n).map(|i| (i as f64, false, i)).collect();
    for _ in 0..injected.duplicates {
        let source = rng.random_range(0..n);
        let key = source as f64 + rng.random::<f64>() * (n - source) as f64;
        order.push((key, true, source));
    }
    order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));

    let pick = |v: &[usize]| order.iter().map(|&(_, _, s)| v[s]).collect::<Vec<_>>();
    let pick_bool = |v: &[bool]| order.iter().map(|&(_, _, s)| v[s]).collect::<Vec<_>>();
    let synthetic = Synthetic {
        features: features
            .iter()
            .map(|col| order.iter().map(|&(_, _, s)| col[s]).collect())
            .collect(),
        label: pick(&label),
        true_label: pick(&true_label),
        is_flipped: pick_bool(&is_flipped),
        is_outlier: pick_bool(&is_outlier),
        is_duplicate: order.iter().map(|&(_, dup, _)| dup).collect(),
        n_missing: pick(&n_missing),
    };
    (synthetic, injected)
}

/// Arrow `Int64` values from counts and class indices.
fn int64(v: &[usize]) -> Result<ArrayRef, StageError> {
    let values = v
        .iter()
        .map(|&x| i64::try_from(x))
        .collect::<Result<Vec<i64>, _>>()
        .map_err(|e| StageError::internal(format!("value does not fit in Int64: {e}")))?;
    Ok(Arc::new(Int64Array::from(values)))
}

impl Synthetic {
    /// Number of rows, duplicates included.
    fn num_rows(&self) -> usize {
        self.label.len()
    }

    /// The rows as one record batch: `row_id`, features, `label`, then the
    /// ground-truth columns.
    fn to_batch(&self) -> Result<RecordBatch, StageError> {
        let n = self.num_rows();
        let mut fields = vec![field_with_role(
            Field::new("row_id", DataType::Int64, false),
            Role::Id,
        )];
        let mut columns: Vec<ArrayRef> = vec![int64(&(0..n).collect::<Vec<_>>())?];
        for (j, col) in self.features.iter().enumerate() {
            fields.push(field_with_role(
                Field::new(format!("x{j}"), DataType::Float64, true),
                Role::Feature,
            ));
            columns.push(Arc::new(Float64Array::from(col.clone())));
        }
        fields.push(field_with_role(
            Field::new("label", DataType::Int64, false),
            Role::Label,
        ));
        columns.push(int64(&self.label)?);
        let truth: [(&str, DataType, ArrayRef); 5] = [
            ("true_label", DataType::Int64, int64(&self.true_label)?),
            (
                "is_flipped",
                DataType::Boolean,
                Arc::new(BooleanArray::from(self.is_flipped.clone())),
            ),
            (
                "true_outlier",
                DataType::Boolean,
                Arc::new(BooleanArray::from(self.is_outlier.clone())),
            ),
            (
                "true_duplicate",
                DataType::Boolean,
                Arc::new(BooleanArray::from(self.is_duplicate.clone())),
            ),
            ("n_missing", DataType::Int64, int64(&self.n_missing)?),
        ];
        for (name, dtype, array) in truth {
            fields.push(field_with_role(Field::new(name, dtype, false), Role::Truth));
            columns.push(array);
        }
        Ok(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?)
    }
}

/// The `generate` stage, built from checked parameters.
#[derive(Debug, Clone)]
pub struct Generate {
    params: GenerateParams,
}

impl Generate {
    /// Checks `params` and builds the stage, or lists every problem.
    pub fn new(params: GenerateParams) -> Result<Self, Vec<ParamProblem>> {
        params.check()?;
        Ok(Generate { params })
    }

    /// The parameters.
    pub fn params(&self) -> &GenerateParams {
        &self.params
    }
}

impl Stage for Generate {
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table(
            "table",
            "the generated rows: row_id, features x0.., label, and ground-truth columns",
        )]
    }

    fn run(&self, _inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let p = &self.params;
        let mut rng = ctx.rng();
        let (data, injected) = synthesize(p, &mut rng);
        let batch = data.to_batch()?;
        let n_rows = batch.num_rows();

        let mut class_counts = vec![0usize; p.classes];
        for &c in &data.label {
            if let Some(count) = class_counts.get_mut(c) {
                *count += 1;
            }
        }
        let summary = json!({
            "rows": n_rows,
            "generated_rows": p.rows,
            "classes": p.classes,
            "class_counts": class_counts,
            "features": {
                "total": p.n_features(),
                "informative": p.informative,
                "redundant": p.redundant,
                "noise": p.noise_features,
            },
            "garbage": {
                "flipped_labels": injected.flipped,
                "label_noise_kind": p.label_noise.kind.as_str(),
                "outliers": injected.outliers,
                "missing_cells": injected.missing_cells,
                "duplicates": injected.duplicates,
            },
        });
        ctx.log(format!(
            "generated {} rows ({} duplicates): {} flipped labels, {} outliers, {} missing cells",
            n_rows,
            injected.duplicates,
            injected.flipped,
            injected.outliers,
            injected.missing_cells
        ));
        Ok(StageOutput::new()
            .with("table", Table::from_batch(batch))
            .created("generated", n_rows)
            .with_summary(summary))
    }
}

/// Registers the `generate` stage type.
pub fn register(registry: &mut Registry) {
    registry.register::<GenerateParams, _>(STAGE_TYPE, DOC, |p| {
        Ok(Box::new(Generate::new(p)?) as Box<dyn Stage>)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    use gigo_pipeline::{Artifact, NoProgress, role_of};

    /// Runs the stage with `params` (JSON) under `seed`; returns the batch and
    /// the output.
    fn run(params: serde_json::Value, seed: u64) -> (RecordBatch, StageOutput) {
        let mut registry = Registry::new();
        register(&mut registry);
        let stage = registry
            .get(STAGE_TYPE)
            .unwrap()
            .build(&params)
            .unwrap_or_else(|e| panic!("params rejected: {e:?}"));
        let dir = tempfile::tempdir().unwrap();
        let ctx = StageContext::new(
            "gen",
            seed,
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
            dir.path().to_path_buf(),
            Arc::new(NoProgress),
        );
        let out = stage.run(&Inputs::default(), &ctx).unwrap();
        let batch = match out.ports.get("table") {
            Some(Artifact::Table(t)) => t.to_batch().unwrap(),
            other => panic!("no table: {other:?}"),
        };
        (batch, out)
    }

    fn ints(b: &RecordBatch, name: &str) -> Vec<i64> {
        b.column_by_name(name)
            .unwrap()
            .as_primitive::<Int64Type>()
            .values()
            .to_vec()
    }

    fn bools(b: &RecordBatch, name: &str) -> Vec<bool> {
        let a = b.column_by_name(name).unwrap().as_boolean();
        (0..a.len()).map(|i| a.value(i)).collect()
    }

    /// Feature columns as `Option<f64>` rows.
    fn feature_rows(b: &RecordBatch) -> Vec<Vec<Option<f64>>> {
        let cols: Vec<&Float64Array> = b
            .schema()
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| role_of(f) == Role::Feature)
            .map(|(i, _)| b.column(i).as_primitive::<Float64Type>())
            .collect();
        (0..b.num_rows())
            .map(|i| {
                cols.iter()
                    .map(|c| c.is_valid(i).then(|| c.value(i)))
                    .collect()
            })
            .collect()
    }

    fn problems(params: serde_json::Value) -> Vec<ParamProblem> {
        let p: GenerateParams = serde_json::from_value(params).unwrap();
        p.check().unwrap_err()
    }

    #[test]
    fn empty_params_give_the_default_table() {
        let (b, out) = run(json!({}), 1);
        assert_eq!(b.num_rows(), 1000);
        let names: Vec<String> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let expected = [
            "row_id",
            "x0",
            "x1",
            "x2",
            "x3",
            "x4",
            "x5",
            "x6",
            "x7",
            "label",
            "true_label",
            "is_flipped",
            "true_outlier",
            "true_duplicate",
            "n_missing",
        ];
        assert_eq!(names, expected);
        let roles: Vec<Role> = b.schema().fields().iter().map(|f| role_of(f)).collect();
        assert_eq!(roles[0], Role::Id);
        assert!(roles[1..9].iter().all(|r| *r == Role::Feature));
        assert_eq!(roles[9], Role::Label);
        assert!(roles[10..].iter().all(|r| *r == Role::Truth));
        assert_eq!(ints(&b, "row_id"), (0..1000).collect::<Vec<i64>>());
        assert_eq!(ints(&b, "label"), ints(&b, "true_label"));
        assert_eq!(out.created, vec![("generated".to_string(), 1000)]);
        assert_eq!(out.summary["class_counts"], json!([500, 500]));
        assert_eq!(b.column_by_name("x0").unwrap().null_count(), 0);
    }

    #[test]
    fn same_seed_same_table_different_seed_different() {
        let params = json!({
            "rows": 300, "classes": 3, "clusters_per_class": 2,
            "label_noise": {"rate": 0.1}, "outliers": 0.05, "missing": 0.1, "duplicates": 0.1,
        });
        let (a, _) = run(params.clone(), 7);
        let (b, _) = run(params.clone(), 7);
        let (c, _) = run(params, 8);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn flips_are_exact_and_recorded() {
        for kind in ["symmetric", "class_conditional"] {
            let (b, out) = run(
                json!({"rows": 1000, "classes": 4, "informative": 3,
                       "label_noise": {"rate": 0.137, "kind": kind}}),
                3,
            );
            let label = ints(&b, "label");
            let truth = ints(&b, "true_label");
            let flipped = bools(&b, "is_flipped");
            assert_eq!(flipped.iter().filter(|f| **f).count(), 137);
            assert_eq!(out.summary["garbage"]["flipped_labels"], 137);
            for i in 0..b.num_rows() {
                if flipped[i] {
                    assert_ne!(label[i], truth[i]);
                    assert!((0..4).contains(&label[i]));
                    if kind == "class_conditional" {
                        assert_eq!(label[i], (truth[i] + 1) % 4);
                    }
                } else {
                    assert_eq!(label[i], truth[i]);
                }
            }
        }
    }

    #[test]
    fn class_counts_follow_weights() {
        let (b, out) = run(json!({"rows": 1000, "class_weights": [0.9, 0.1]}), 5);
        let truth = ints(&b, "true_label");
        assert_eq!(truth.iter().filter(|&&c| c == 0).count(), 900);
        assert_eq!(truth.iter().filter(|&&c| c == 1).count(), 100);
        assert_eq!(out.summary["class_counts"], json!([900, 100]));

        // Largest remainder: 1000 × (1/3, 1/3, 1/3) gives 334, 333, 333.
        assert_eq!(class_counts(&[1.0, 1.0, 1.0], 1000), vec![334, 333, 333]);
        assert_eq!(class_counts(&[2.0, 1.0, 1.0], 10), vec![5, 3, 2]);
        assert_eq!(class_counts(&[0.9, 0.1], 1000), vec![900, 100]);
    }

    #[test]
    fn duplicates_copy_earlier_rows() {
        let (b, out) = run(
            json!({"rows": 500, "duplicates": 0.2, "missing": 0.05, "label_noise": {"rate": 0.1}}),
            11,
        );
        assert_eq!(b.num_rows(), 600);
        assert_eq!(out.created, vec![("generated".to_string(), 600)]);
        assert_eq!(ints(&b, "row_id"), (0..600).collect::<Vec<i64>>());
        let rows = feature_rows(&b);
        let label = ints(&b, "label");
        let truth = ints(&b, "true_label");
        let dup = bools(&b, "true_duplicate");
        assert_eq!(dup.iter().filter(|d| **d).count(), 100);
        for i in 0..b.num_rows() {
            let original = (0..i).find(|&j| !dup[j] && rows[j] == rows[i]);
            if dup[i] {
                let j = original.unwrap_or_else(|| panic!("duplicate row {i} has no original"));
                assert_eq!(label[i], label[j]);
                assert_eq!(truth[i], truth[j]);
            } else {
                assert!(
                    original.is_none(),
                    "original row {i} repeats an earlier one"
                );
            }
        }
    }

    #[test]
    fn missing_cells_match_the_fraction_and_the_counts() {
        let (b, out) = run(json!({"rows": 2000, "missing": 0.15}), 13);
        let rows = feature_rows(&b);
        let n_missing = ints(&b, "n_missing");
        let mut total = 0;
        for (row, n) in rows.iter().zip(&n_missing) {
            let nulls = row.iter().filter(|v| v.is_none()).count() as i64;
            assert_eq!(nulls, *n);
            total += nulls;
        }
        let cells = 2000.0 * 8.0;
        assert_eq!(total, (0.15f64 * cells).round() as i64);
        assert_eq!(out.summary["garbage"]["missing_cells"], total);
        // Spread over many rows, not concentrated.
        let rows_hit = n_missing.iter().filter(|n| **n > 0).count();
        assert!(rows_hit > 1000, "{rows_hit}");
    }

    #[test]
    fn outliers_lie_far_out() {
        let (b, _) = run(json!({"rows": 1000, "outliers": 0.03}), 17);
        let rows = feature_rows(&b);
        let outlier = bools(&b, "true_outlier");
        assert_eq!(outlier.iter().filter(|o| **o).count(), 30);
        let d = rows[0].len();
        let clean: Vec<usize> = (0..rows.len()).filter(|&i| !outlier[i]).collect();
        let stats: Vec<(f64, f64)> = (0..d)
            .map(|j| {
                let xs: Vec<f64> = clean.iter().map(|&i| rows[i][j].unwrap()).collect();
                mean_std(&xs)
            })
            .collect();
        let rms_z = |i: usize| {
            let s: f64 = (0..d)
                .map(|j| ((rows[i][j].unwrap() - stats[j].0) / stats[j].1).powi(2))
                .sum();
            (s / d as f64).sqrt()
        };
        let min_outlier = (0..rows.len())
            .filter(|&i| outlier[i])
            .map(rms_z)
            .fold(f64::INFINITY, f64::min);
        let max_clean = clean.iter().map(|&i| rms_z(i)).fold(0.0, f64::max);
        assert!(min_outlier > 5.0, "{min_outlier}");
        assert!(min_outlier > max_clean, "{min_outlier} <= {max_clean}");
    }

    #[test]
    fn classes_are_separable_when_far_apart() {
        // With a large class_sep, the class means differ clearly on the
        // informative features.
        let (b, _) = run(
            json!({"rows": 1000, "class_sep": 5.0, "informative": 2,
                                "redundant": 0, "noise_features": 1}),
            19,
        );
        let rows = feature_rows(&b);
        let truth = ints(&b, "true_label");
        let mean = |c: i64, j: usize| {
            let xs: Vec<f64> = (0..rows.len())
                .filter(|&i| truth[i] == c)
                .map(|i| rows[i][j].unwrap())
                .collect();
            mean_std(&xs).0
        };
        let gap: f64 = (0..2).map(|j| (mean(0, j) - mean(1, j)).abs()).sum();
        assert!(gap > 5.0, "{gap}");
        // The noise feature does not tell the classes apart.
        assert!((mean(0, 2) - mean(1, 2)).abs() < 0.3);
    }

    #[test]
    fn redundant_features_are_linear_in_informative_ones() {
        let (b, _) = run(
            json!({"rows": 50, "informative": 2, "redundant": 1,
                                "noise_features": 0}),
            23,
        );
        let rows: Vec<Vec<f64>> = feature_rows(&b)
            .into_iter()
            .map(|r| r.into_iter().map(Option::unwrap).collect())
            .collect();
        // Solve x2 = a·x0 + b·x1 from two rows, check it on the rest.
        let (r0, r1) = (&rows[0], &rows[1]);
        let det = r0[0] * r1[1] - r0[1] * r1[0];
        let a = (r0[2] * r1[1] - r0[1] * r1[2]) / det;
        let c = (r0[0] * r1[2] - r0[2] * r1[0]) / det;
        for r in &rows {
            assert!((r[2] - (a * r[0] + c * r[1])).abs() < 1e-9);
        }
    }

    #[test]
    fn param_check_reports_every_problem() {
        let found = problems(json!({
            "rows": 5,
            "classes": 3,
            "informative": 0,
            "class_weights": [1.0, -2.0],
            "label_noise": {"rate": 1.5},
            "outliers": -0.1,
            "missing": 1.0,
            "duplicates": 2.0,
        }));
        let paths: Vec<String> = found.iter().map(|p| p.path.join(".")).collect();
        for expected in [
            "rows",
            "informative",
            "class_weights",
            "class_weights.1",
            "label_noise.rate",
            "outliers",
            "missing",
            "duplicates",
        ] {
            assert!(
                paths.contains(&expected.to_string()),
                "{expected} not in {paths:?}"
            );
        }
        let rate = found
            .iter()
            .find(|p| p.path == ["label_noise", "rate"])
            .unwrap();
        assert!(rate.message.contains("1.5"), "{}", rate.message);

        // NaN (not expressible in JSON) is no fraction either.
        let nan = GenerateParams {
            duplicates: f64::NAN,
            class_sep: f64::INFINITY,
            ..GenerateParams::default()
        };
        let paths: Vec<Vec<String>> = nan
            .check()
            .unwrap_err()
            .into_iter()
            .map(|p| p.path)
            .collect();
        assert_eq!(
            paths,
            [
                vec!["class_sep".to_string()],
                vec!["duplicates".to_string()]
            ]
        );
    }

    #[test]
    fn param_check_catches_too_few_informative_and_tiny_classes() {
        let found = problems(json!({"classes": 5, "clusters_per_class": 2, "informative": 3}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, ["informative"]);
        assert!(problems(json!({"classes": 101}))[0].path == ["classes"]);
        let found = problems(json!({"rows": 100, "class_weights": [1000.0, 1.0]}));
        assert_eq!(found[0].path, ["class_weights"]);
        assert!(found[0].message.contains("class 1"));
        // 2^3 = 8 vertices suffice for 4 classes × 2 clusters.
        let ok: GenerateParams = serde_json::from_value(
            json!({"classes": 4, "clusters_per_class": 2, "informative": 3}),
        )
        .unwrap();
        assert!(ok.check().is_ok());
    }

    #[test]
    fn unknown_and_ill_typed_params_are_rejected() {
        let mut registry = Registry::new();
        register(&mut registry);
        let st = registry.get(STAGE_TYPE).unwrap();
        let err = st.build(&json!({"rowz": 10})).err().unwrap();
        assert_eq!(err[0].path, ["rowz"]);
        let err = st
            .build(&json!({"label_noise": {"kind": "asymmetric"}}))
            .err()
            .unwrap();
        assert_eq!(err[0].path[0], "label_noise");
        let err = st.build(&json!({"rows": 3, "classes": 1})).err().unwrap();
        assert_eq!(err.len(), 2);
        assert!(st.param_names().contains(&"label_noise"));
        assert!(!st.doc().is_empty());
    }
}
