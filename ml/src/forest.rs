//! Random forest of Gini classification trees, as scikit-learn's
//! `RandomForestClassifier` (Breiman 2001): every tree is grown on a
//! bootstrap sample of the rows, each split searches a random subset of
//! `max_features` features, trees grow until their leaves are pure (or hit
//! `max_depth` / `min_samples_*`), and the forest's probabilities are the
//! mean of the trees' leaf class distributions.
//!
//! Unlike scikit-learn's exact splitter, splits are searched on features
//! binned into at most `max_bins` quantile bins (the binning of
//! [`crate::boosting`]), which makes a split search cost rows + bins rather
//! than a sort.
//!
//! Deterministic: tree `t` draws its bootstrap and its feature subsets from
//! its own ChaCha stream `(seed, t)`, trees are built in parallel into their
//! slot of the forest, and every sum inside a tree runs in a fixed order, so
//! the model does not depend on the thread count.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::boosting::{bin_columns, fit_bins};
use crate::catalogue::{Classic, ClassicModel, Fit, TrainSet};
use crate::error::MlError;
use crate::matrix::Matrix;

/// Catalogue name.
pub const NAME: &str = "random_forest";

/// How many features each split searches (scikit-learn's `max_features`).
///
/// In a config: `"sqrt"`, `"log2"`, `"all"`, a whole number (a count) or a
/// fraction such as `0.5` (of the feature count). Always at least 1; a
/// count above the feature count means every feature. As scikit-learn, a
/// split keeps drawing features past this number while those drawn are
/// constant in the node.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum MaxFeatures {
    /// `floor(sqrt(n_features))` (the default, as scikit-learn's classifier).
    #[default]
    Sqrt,
    /// `floor(log2(n_features))`.
    Log2,
    /// Every feature (bagged trees rather than a random forest).
    All,
    /// This many features.
    Count(usize),
    /// `floor(fraction * n_features)`, the fraction within `(0, 1]`.
    Fraction(f64),
}

impl MaxFeatures {
    /// The features searched per split when the data has `n_features`.
    pub fn resolve(self, n_features: usize) -> usize {
        let n = n_features as f64;
        let m = match self {
            MaxFeatures::Sqrt => n.sqrt() as usize,
            MaxFeatures::Log2 => n.log2().max(0.0) as usize,
            MaxFeatures::All => n_features,
            MaxFeatures::Count(c) => c,
            MaxFeatures::Fraction(f) => (f * n) as usize,
        };
        m.clamp(1, n_features.max(1))
    }
}

impl schemars::JsonSchema for MaxFeatures {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MaxFeatures".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "\"sqrt\", \"log2\", \"all\", a feature count or a fraction in (0, 1]",
            "anyOf": [
                {"enum": ["sqrt", "log2", "all"]},
                {"type": "integer", "minimum": 1},
                {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
            ]
        })
    }
}

impl Serialize for MaxFeatures {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MaxFeatures::Sqrt => s.serialize_str("sqrt"),
            MaxFeatures::Log2 => s.serialize_str("log2"),
            MaxFeatures::All => s.serialize_str("all"),
            MaxFeatures::Count(c) => s.serialize_u64(*c as u64),
            MaxFeatures::Fraction(f) => s.serialize_f64(*f),
        }
    }
}

impl<'de> Deserialize<'de> for MaxFeatures {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = MaxFeatures;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"sqrt\", \"log2\", \"all\", a feature count or a fraction")
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<MaxFeatures, E> {
                match v {
                    "sqrt" => Ok(MaxFeatures::Sqrt),
                    "log2" => Ok(MaxFeatures::Log2),
                    "all" => Ok(MaxFeatures::All),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<MaxFeatures, E> {
                usize::try_from(v)
                    .map(MaxFeatures::Count)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<MaxFeatures, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<MaxFeatures, E> {
                Ok(MaxFeatures::Fraction(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Hyper-parameters of [`RandomForest`] (scikit-learn's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ForestParams {
    /// Trees in the forest. Default 100.
    pub n_estimators: usize,
    /// Features searched per split. Default `sqrt`.
    pub max_features: MaxFeatures,
    /// Grow each tree on a bootstrap sample (`n` rows drawn with
    /// replacement); `false` grows every tree on all rows. Default true.
    pub bootstrap: bool,
    /// Deepest a tree may grow; `None` (default): until the leaves are pure
    /// or too small to split.
    pub max_depth: Option<usize>,
    /// Fewest distinct training rows a node needs to be split. Default 2.
    pub min_samples_split: usize,
    /// Fewest distinct training rows in a leaf. Default 1.
    pub min_samples_leaf: usize,
    /// Bins per feature for the split search, within 2..=255. Default 255.
    pub max_bins: usize,
    /// Seed of the bootstraps and feature draws. Default 0.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        ForestParams {
            n_estimators: 100,
            max_features: MaxFeatures::Sqrt,
            bootstrap: true,
            max_depth: None,
            min_samples_split: 2,
            min_samples_leaf: 1,
            max_bins: 255,
            seed: 0,
        }
    }
}

/// Marks a leaf in [`Tree::feature`].
const LEAF: u32 = u32::MAX;

/// One tree, node by node (the root first, children after their parent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Tree {
    /// The split feature of each node, or [`LEAF`].
    feature: Vec<u32>,
    /// Rows with `x[feature] <= threshold` go to the left child (0 for leaves).
    threshold: Vec<f32>,
    /// Inner node: its left child (the right one follows it). Leaf: its
    /// index in `proba`.
    child: Vec<u32>,
    /// The class distribution of each leaf (`n_classes` values a leaf).
    proba: Vec<f32>,
}

impl Tree {
    fn leaf_of(&self, x: &[f32]) -> usize {
        let mut i = 0;
        while self.feature[i] != LEAF {
            let go_right = x[self.feature[i] as usize] > self.threshold[i];
            i = self.child[i] as usize + usize::from(go_right);
        }
        self.child[i] as usize
    }

    /// Checks what prediction relies on, so that a damaged saved model is
    /// an error rather than a panic or an endless walk.
    fn check(&self, n_features: usize, n_classes: usize) -> Result<(), MlError> {
        let n = self.feature.len();
        let bad = |why: &str| Err(MlError::data(format!("saved random forest: {why}")));
        if n == 0 || self.threshold.len() != n || self.child.len() != n {
            return bad("a tree's node arrays are empty or of different lengths");
        }
        for i in 0..n {
            let c = self.child[i] as usize;
            if self.feature[i] == LEAF {
                let end = (c + 1).checked_mul(n_classes);
                if end.is_none_or(|e| e > self.proba.len()) {
                    return bad("a leaf points past the leaf distributions");
                }
            } else if self.feature[i] as usize >= n_features || c <= i || c + 1 >= n {
                return bad("a node has an invalid feature or child");
            }
        }
        Ok(())
    }
}

/// A fitted random forest (see the module docs).
///
/// # Example
/// ```
/// use gigo_ml::catalogue::{Fit, FittedModel, TrainSet};
/// use gigo_ml::forest::ForestParams;
/// use gigo_ml::Matrix;
/// // XOR of two features
/// let x = Matrix::new(4, 2, vec![0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
/// let y = [0, 1, 1, 0];
/// let params = ForestParams { bootstrap: false, ..ForestParams::default() };
/// let forest = params.fit(&TrainSet::new(&x, &y, 2), 0)?;
/// let p = forest.predict_proba(&x)?;
/// assert!(p.row(1)[1] > 0.5 && p.row(3)[0] > 0.5);
/// # Ok::<(), gigo_ml::MlError>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RandomForest {
    n_features: usize,
    n_classes: usize,
    trees: Vec<Tree>,
}

impl RandomForest {
    /// Trees in the forest.
    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Leaves, summed over the trees.
    pub fn n_leaves(&self) -> usize {
        let f = self;
        f.trees.iter().map(|t| t.proba.len() / f.n_classes).sum()
    }
}

/// What every tree of one fit shares.
struct Shared<'a> {
    /// `cols[feature][row]`: the training bins.
    cols: &'a [Vec<u8>],
    thresholds: &'a [Vec<f32>],
    y: &'a [u32],
    /// The caller's row weights (1 without them).
    weight: &'a [f64],
    n_classes: usize,
    /// Features searched per split.
    mtry: usize,
    /// The weighted class distribution of all rows, for a tree whose
    /// bootstrap drew only rows of weight 0.
    prior: Vec<f32>,
    p: &'a ForestParams,
}

/// The best split of a node found so far.
#[derive(Clone, Copy)]
struct Split {
    /// `sum_c L_c^2 / L + sum_c R_c^2 / R` (weighted class totals of the
    /// children): the larger, the lower the children's weighted Gini impurity.
    proxy: f64,
    feature: usize,
    bin: u8,
}

/// One tree's growth: its rows, their weights, its RNG and scratch space.
struct Grower<'a> {
    s: &'a Shared<'a>,
    /// This tree's weight of each row (bootstrap count x caller weight).
    w: Vec<f64>,
    rng: ChaCha8Rng,
    /// The features, shuffled in place node after node.
    features: Vec<usize>,
    /// Weighted class totals per bin of one feature: `hist[bin * k + class]`.
    hist: Vec<f64>,
    /// Rows per bin of one feature.
    count: Vec<u32>,
    /// Weighted class totals left of a candidate split.
    left: Vec<f64>,
}

impl Grower<'_> {
    /// Grows the tree on the rows of positive weight.
    fn grow(mut self) -> Tree {
        let k = self.s.n_classes;
        let mut rows: Vec<u32> = (0..self.w.len() as u32)
            .filter(|&r| self.w[r as usize] > 0.0)
            .collect();
        let mut tree = Tree::default();
        push_node(&mut tree);
        let mut totals = vec![0.0; k];
        // (node, rows[start..end], depth), depth first, left child first
        let mut stack = vec![(0usize, 0usize, rows.len(), 0usize)];
        while let Some((node, start, end, depth)) = stack.pop() {
            let seg = &mut rows[start..end];
            totals.iter_mut().for_each(|t| *t = 0.0);
            for &r in seg.iter() {
                totals[self.s.y[r as usize] as usize] += self.w[r as usize];
            }
            let p = self.s.p;
            let splittable = seg.len() >= p.min_samples_split
                && seg.len() >= 2 * p.min_samples_leaf
                && p.max_depth.is_none_or(|d| depth < d)
                && totals.iter().filter(|&&t| t > 0.0).count() > 1;
            let split = if splittable {
                self.best_split(seg, &totals)
            } else {
                None
            };
            let Some(split) = split else {
                tree.feature[node] = LEAF;
                tree.child[node] = (tree.proba.len() / k) as u32;
                let sum: f64 = totals.iter().sum();
                if sum > 0.0 {
                    tree.proba.extend(totals.iter().map(|&t| (t / sum) as f32));
                } else {
                    tree.proba.extend_from_slice(&self.s.prior);
                }
                continue;
            };
            let col = &self.s.cols[split.feature];
            let mut mid = 0;
            for i in 0..seg.len() {
                if col[seg[i] as usize] <= split.bin {
                    seg.swap(i, mid);
                    mid += 1;
                }
            }
            let left = tree.feature.len();
            push_node(&mut tree);
            push_node(&mut tree);
            tree.feature[node] = split.feature as u32;
            tree.threshold[node] = self.s.thresholds[split.feature][split.bin as usize];
            tree.child[node] = left as u32;
            stack.push((left + 1, start + mid, end, depth + 1));
            stack.push((left, start, start + mid, depth + 1));
        }
        tree
    }

    /// The best split of a node (`rows`, class weight `totals`) over a
    /// random subset of the features; `None` when no feature has a split
    /// leaving `min_samples_leaf` rows on both sides. As scikit-learn, a
    /// split that does not lower the impurity is still taken.
    fn best_split(&mut self, rows: &[u32], totals: &[f64]) -> Option<Split> {
        let nf = self.features.len();
        let mut best: Option<Split> = None;
        let mut searched = 0;
        let mut i = 0;
        while i < nf && searched < self.s.mtry {
            // a partial Fisher-Yates shuffle draws the features one by one
            let j = self.rng.random_range(i..nf);
            self.features.swap(i, j);
            let f = self.features[i];
            i += 1;
            if self.search_feature(f, rows, totals, &mut best) {
                searched += 1;
            }
        }
        best
    }

    /// Updates `best` with the best split on feature `f`; false when `f`
    /// is constant in the node (it then does not count as searched).
    fn search_feature(
        &mut self,
        f: usize,
        rows: &[u32],
        totals: &[f64],
        best: &mut Option<Split>,
    ) -> bool {
        let k = self.s.n_classes;
        let col = &self.s.cols[f];
        let mut touched = [0u64; 4];
        for &r in rows {
            let r = r as usize;
            let b = col[r] as usize;
            touched[b >> 6] |= 1 << (b & 63);
            self.count[b] += 1;
            self.hist[b * k + self.s.y[r] as usize] += self.w[r];
        }
        // the bins present in the node, ascending
        let mut bins = [0u8; 256];
        let mut n_bins = 0;
        for (word, &bits) in touched.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                bins[n_bins] = (word * 64 + bits.trailing_zeros() as usize) as u8;
                n_bins += 1;
                bits &= bits - 1;
            }
        }
        let bins = &bins[..n_bins];
        let min_leaf = self.s.p.min_samples_leaf;
        let left = &mut self.left;
        left.fill(0.0);
        let mut left_rows = 0;
        for &b in &bins[..n_bins.saturating_sub(1)] {
            let b = b as usize;
            left_rows += self.count[b] as usize;
            for (l, h) in left.iter_mut().zip(&self.hist[b * k..(b + 1) * k]) {
                *l += h;
            }
            if left_rows < min_leaf {
                continue;
            }
            if rows.len() - left_rows < min_leaf {
                break;
            }
            let (mut lw, mut lsq, mut rw, mut rsq) = (0.0, 0.0, 0.0, 0.0);
            for (&l, &t) in left.iter().zip(totals) {
                let r = t - l;
                lw += l;
                lsq += l * l;
                rw += r;
                rsq += r * r;
            }
            if lw <= 0.0 || rw <= 0.0 {
                continue;
            }
            let proxy = lsq / lw + rsq / rw;
            if best.is_none_or(|s| proxy > s.proxy) {
                *best = Some(Split {
                    proxy,
                    feature: f,
                    bin: b as u8,
                });
            }
        }
        for &b in bins {
            let b = b as usize;
            self.count[b] = 0;
            self.hist[b * k..(b + 1) * k].fill(0.0);
        }
        n_bins > 1
    }
}

fn push_node(tree: &mut Tree) {
    tree.feature.push(LEAF);
    tree.threshold.push(0.0);
    tree.child.push(0);
}

/// Tree `t`'s RNG: stream `t` of the seed, whatever thread grows it.
fn tree_rng(seed: u64, t: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(t as u64);
    rng
}

impl Fit for ForestParams {
    const NAME: &'static str = NAME;
    const DOC: &'static str = "random forest of Gini trees (bootstrap, random features per split)";
    type Fitted = Classic<RandomForest>;

    fn check(&self) -> Result<(), MlError> {
        if self.n_estimators == 0 {
            return Err(MlError::param("n_estimators", "must be at least 1"));
        }
        match self.max_features {
            MaxFeatures::Count(0) => {
                return Err(MlError::param("max_features", "must be at least 1"));
            }
            MaxFeatures::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(MlError::param(
                    "max_features",
                    format!("a fraction must be within (0, 1], got {f}"),
                ));
            }
            _ => {}
        }
        if self.max_depth == Some(0) {
            return Err(MlError::param("max_depth", "must be at least 1"));
        }
        if self.min_samples_split < 2 {
            return Err(MlError::param("min_samples_split", "must be at least 2"));
        }
        if self.min_samples_leaf == 0 {
            return Err(MlError::param("min_samples_leaf", "must be at least 1"));
        }
        if !(2..=255).contains(&self.max_bins) {
            return Err(MlError::param("max_bins", "must be within 2..=255"));
        }
        Ok(())
    }

    fn fit(&self, data: &TrainSet, _seed: u64) -> Result<Classic<RandomForest>, MlError> {
        self.check()?;
        data.check()?;
        let (x, y, n_classes, sample_weight) = (data.x, data.y, data.n_classes, data.weights);
        let p = self;
        let n = x.rows;
        let k = n_classes;
        let weight: Vec<f64> = match sample_weight {
            Some(w) => w.iter().map(|&v| v as f64).collect(),
            None => vec![1.0; n],
        };
        // bins from the rows that count, so that a row of weight 0 changes
        // nothing
        let thresholds = if weight.contains(&0.0) {
            let kept: Vec<usize> = (0..n).filter(|&r| weight[r] > 0.0).collect();
            fit_bins(&x.select_rows(&kept), p.max_bins)
        } else {
            fit_bins(x, p.max_bins)
        };
        let cols = bin_columns(x, &thresholds);
        let mut prior = vec![0.0f64; k];
        for (&l, &w) in y.iter().zip(&weight) {
            prior[l as usize] += w;
        }
        let total: f64 = prior.iter().sum();
        let shared = Shared {
            cols: &cols,
            thresholds: &thresholds,
            y,
            weight: &weight,
            n_classes: k,
            mtry: p.max_features.resolve(x.cols),
            prior: prior.iter().map(|&v| (v / total) as f32).collect(),
            p,
        };
        let trees: Vec<Tree> = (0..p.n_estimators)
            .into_par_iter()
            .map(|t| {
                let mut rng = tree_rng(p.seed, t);
                let w = if p.bootstrap {
                    let mut drawn = vec![0u32; n];
                    for _ in 0..n {
                        drawn[rng.random_range(0..n)] += 1;
                    }
                    drawn
                        .iter()
                        .zip(shared.weight)
                        .map(|(&c, &w)| c as f64 * w)
                        .collect()
                } else {
                    shared.weight.to_vec()
                };
                Grower {
                    s: &shared,
                    w,
                    rng,
                    features: (0..x.cols).collect(),
                    hist: vec![0.0; 256 * k],
                    count: vec![0; 256],
                    left: vec![0.0; k],
                }
                .grow()
            })
            .collect();
        let (n_features, n_classes) = (x.cols, k);
        Ok(Classic::new(
            self.clone(),
            n_features,
            n_classes,
            RandomForest {
                n_features: x.cols,
                n_classes: k,
                trees,
            },
        ))
    }
}

impl ClassicModel for RandomForest {
    type Params = ForestParams;

    fn validate(&self, n_features: usize, n_classes: usize) -> Result<(), MlError> {
        if n_classes < 2 || self.trees.is_empty() {
            return Err(MlError::data(
                "saved random forest: no trees or fewer than 2 classes",
            ));
        }
        for t in &self.trees {
            t.check(n_features, n_classes)?;
        }
        Ok(())
    }

    fn predict(&self, _params: &ForestParams, x: &Matrix) -> Matrix {
        let f = self;
        let k = f.n_classes;
        let mut out = Matrix::zeros(x.rows, k);
        out.data.par_chunks_mut(k).enumerate().for_each(|(i, o)| {
            let row = x.row(i);
            let mut sum = vec![0.0f64; k];
            for t in &f.trees {
                let leaf = t.leaf_of(row);
                for (s, &v) in sum.iter_mut().zip(&t.proba[leaf * k..(leaf + 1) * k]) {
                    *s += v as f64;
                }
            }
            let total: f64 = sum.iter().sum();
            for (o, s) in o.iter_mut().zip(&sum) {
                *o = (s / total) as f32;
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boosting::tests::{accuracy, checkerboard};
    use crate::catalogue::FittedModel;
    use crate::catalogue::fit_test;
    use crate::logistic::LogisticParams;

    fn fitted(
        params: ForestParams,
        x: &Matrix,
        y: &[u32],
        w: Option<&[f32]>,
    ) -> Classic<RandomForest> {
        fit_test(params, x, y, 2, w)
    }

    #[test]
    fn forest_learns_a_checkerboard_a_linear_model_cannot() {
        let (x, y) = checkerboard(2000);
        let (xt, yt) = checkerboard(1000);
        let linear = fit_test(LogisticParams::default(), &x, &y, 2, None);
        assert!(accuracy(&linear, &xt, &yt) < 0.7);
        let m = fitted(ForestParams::default(), &x, &y, None);
        assert_eq!(m.n_trees(), 100);
        let acc = accuracy(&m, &xt, &yt);
        assert!(acc > 0.9, "{acc}");
        // stumps cannot express XOR
        let stumps = fitted(
            ForestParams {
                max_depth: Some(1),
                ..ForestParams::default()
            },
            &x,
            &y,
            None,
        );
        assert_eq!(stumps.n_leaves(), 200);
        assert!(accuracy(&stumps, &xt, &yt) < 0.75);
    }

    #[test]
    fn forest_probabilities_sum_to_one_over_three_classes() {
        let (x, _) = checkerboard(600);
        let y: Vec<u32> = (0..x.rows)
            .map(|i| ((x.get(i, 0) as u32) + (x.get(i, 1) as u32)) % 3)
            .collect();
        let params = ForestParams {
            n_estimators: 20,
            ..ForestParams::default()
        };
        // class 3 never occurs: it gets probability 0
        let m = fit_test(params, &x, &y, 4, None);
        let p = m.predict_proba(&x).unwrap();
        assert_eq!((p.rows, p.cols), (600, 4));
        for i in 0..p.rows {
            let r = p.row(i);
            assert!((r.iter().sum::<f32>() - 1.0).abs() < 1e-5, "{r:?}");
            assert_eq!(r[3], 0.0);
        }
        assert!(accuracy(&m, &x, &y) > 0.95);
        // rows of another width are an error
        assert!(m.predict_proba(&Matrix::zeros(2, 2)).is_err());
    }

    #[test]
    fn forest_same_seed_same_bytes_whatever_the_thread_count() {
        let (x, y) = checkerboard(500);
        let params = ForestParams {
            n_estimators: 24,
            ..ForestParams::default()
        };
        let fit = |threads, params: &ForestParams| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fitted(params.clone(), &x, &y, None).save().unwrap())
        };
        let one = fit(1, &params);
        assert_eq!(one, fit(4, &params));
        assert_eq!(one, fit(3, &params));
        let other_seed = ForestParams { seed: 1, ..params };
        assert_ne!(one, fit(4, &other_seed));
    }

    #[test]
    fn forest_a_weight_of_zero_is_removing_the_row() {
        let (x, y) = checkerboard(300);
        // without bootstrap a tree sees exactly the rows of positive weight
        let params = ForestParams {
            n_estimators: 10,
            bootstrap: false,
            ..ForestParams::default()
        };
        let mut w = vec![1.0f32; 300];
        let dropped: Vec<usize> = (0..300).filter(|i| i % 7 == 3).collect();
        dropped.iter().for_each(|&i| w[i] = 0.0);
        let weighted = fitted(params.clone(), &x, &y, Some(&w));
        let kept: Vec<usize> = (0..300).filter(|i| i % 7 != 3).collect();
        let ky: Vec<u32> = kept.iter().map(|&i| y[i]).collect();
        let removed = fitted(params, &x.select_rows(&kept), &ky, None);
        let (xt, _) = checkerboard(200);
        assert_eq!(
            weighted.predict_proba(&xt).unwrap(),
            removed.predict_proba(&xt).unwrap()
        );
    }

    #[test]
    fn forest_a_heavily_weighted_class_dominates() {
        // one constant feature: every tree is a single leaf of its
        // bootstrap's weighted class distribution
        let x = Matrix::new(40, 1, vec![1.0; 40]);
        let y: Vec<u32> = (0..40).map(|i| (i % 2) as u32).collect();
        let w: Vec<f32> = y.iter().map(|&l| if l == 1 { 9.0 } else { 1.0 }).collect();
        let plain = fitted(ForestParams::default(), &x, &y, None);
        let p = plain.predict_proba(&x).unwrap().row(0)[1];
        assert!((p - 0.5).abs() < 0.05, "{p}");
        let heavy = fitted(ForestParams::default(), &x, &y, Some(&w));
        let p = heavy.predict_proba(&x).unwrap().row(0)[1];
        assert!((p - 0.9).abs() < 0.03, "{p}");
    }

    #[test]
    fn forest_round_trips_through_bytes() {
        let (x, y) = checkerboard(400);
        let m = fitted(
            ForestParams {
                n_estimators: 15,
                max_features: MaxFeatures::Fraction(0.5),
                ..ForestParams::default()
            },
            &x,
            &y,
            None,
        );
        let bytes = m.save().unwrap();
        let back = crate::catalogue::Catalogue::classic()
            .load(NAME, &bytes)
            .unwrap();
        assert_eq!(back.name(), NAME);
        assert_eq!(back.n_features(), 3);
        let (xt, _) = checkerboard(300);
        assert_eq!(
            back.predict_proba(&xt).unwrap(),
            m.predict_proba(&xt).unwrap()
        );
        // a damaged tree is an error, not a panic
        let text = String::from_utf8(bytes).unwrap();
        let damaged = text.replacen("\"child\":[1,", "\"child\":[0,", 1);
        assert_ne!(damaged, text);
        assert!(Classic::<RandomForest>::load(damaged.as_bytes()).is_err());
    }

    #[test]
    fn forest_rejects_invalid_params() {
        let bad = [
            ForestParams {
                n_estimators: 0,
                ..ForestParams::default()
            },
            ForestParams {
                max_features: MaxFeatures::Count(0),
                ..ForestParams::default()
            },
            ForestParams {
                max_features: MaxFeatures::Fraction(1.5),
                ..ForestParams::default()
            },
            ForestParams {
                max_depth: Some(0),
                ..ForestParams::default()
            },
            ForestParams {
                min_samples_split: 1,
                ..ForestParams::default()
            },
            ForestParams {
                min_samples_leaf: 0,
                ..ForestParams::default()
            },
            ForestParams {
                max_bins: 256,
                ..ForestParams::default()
            },
        ];
        for p in bad {
            assert!(p.check().is_err(), "{p:?}");
        }
        let catalogue = crate::catalogue::Catalogue::classic();
        let spec = |v: serde_json::Value| catalogue.estimator(NAME, &v);
        assert!(spec(serde_json::json!({"trees": 3})).is_err());
        assert!(spec(serde_json::json!({"max_features": "half"})).is_err());
        assert!(spec(serde_json::json!({"n_estimators": 0})).is_err());
        let s = spec(serde_json::json!({"max_features": 0.5})).unwrap();
        assert_eq!(s.params()["max_features"], 0.5);
        assert_eq!(s.params()["n_estimators"], 100);
        assert_eq!(s.name(), NAME);
    }

    #[test]
    fn forest_max_features_resolves_as_scikit_learn() {
        assert_eq!(MaxFeatures::Sqrt.resolve(20), 4);
        assert_eq!(MaxFeatures::Log2.resolve(20), 4);
        assert_eq!(MaxFeatures::Log2.resolve(1), 1);
        assert_eq!(MaxFeatures::All.resolve(7), 7);
        assert_eq!(MaxFeatures::Count(9).resolve(7), 7);
        assert_eq!(MaxFeatures::Fraction(0.5).resolve(7), 3);
        assert_eq!(MaxFeatures::Fraction(0.01).resolve(7), 1);
        for m in [
            MaxFeatures::Log2,
            MaxFeatures::Count(3),
            MaxFeatures::Fraction(0.25),
        ] {
            let v = serde_json::to_value(m).unwrap();
            assert_eq!(serde_json::from_value::<MaxFeatures>(v).unwrap(), m);
        }
    }

    /// `cargo test -p gigo-ml forest_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "prints a timing"]
    fn forest_timing_10000_by_20() {
        let (n, d) = (12_000, 20);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut next = || rng.random::<f32>();
        let mut data = Vec::with_capacity(n * d);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row: Vec<f32> = (0..d).map(|_| next() * 2.0 - 1.0).collect();
            // a non-linear rule on 4 features plus 10% label noise
            let clean = (row[0] * row[1] > 0.0) ^ (row[2] + row[3] > 0.5);
            y.push(u32::from(clean ^ (next() < 0.1)));
            data.extend(row);
        }
        let x = Matrix::new(n, d, data);
        let train: Vec<usize> = (0..10_000).collect();
        let test: Vec<usize> = (10_000..n).collect();
        let (xtr, xte) = (x.select_rows(&train), x.select_rows(&test));
        let start = std::time::Instant::now();
        let m = fitted(ForestParams::default(), &xtr, &y[..10_000], None);
        let secs = start.elapsed().as_secs_f64();
        let acc = accuracy(&m, &xte, &y[10_000..]);
        println!(
            "100 trees on 10000 x 20: {secs:.2} s, {} leaves, held-out accuracy {acc:.3} \
             (label noise caps it at 0.9), {} threads",
            m.n_leaves(),
            rayon::current_num_threads()
        );
    }
}
