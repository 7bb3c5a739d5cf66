//! `rebalance`: class imbalance, by resampling or by weighting.
//!
//! Methods (`method`):
//!
//! | family | methods | what happens to rows |
//! | --- | --- | --- |
//! | over-sampling | `random_over`, `smote`, `borderline_smote`, `adasyn`, `smote_nc` | rows are added (`is_synthetic` = true) |
//! | under-sampling | `random_under`, `near_miss` | rows are removed, down to a target |
//! | cleaning | `tomek`, `enn` | rows are removed where a rule finds them |
//! | combined | `smote_tomek`, `smote_enn` | SMOTE, then Tomek links / ENN clean every class, synthetic rows included |
//! | weighting | `balanced`, `effective_number`, `class_weights` | no row changes; a weight column is added |
//!
//! The algorithms follow imbalanced-learn 0.14 (the tool users run today;
//! see each function's docs for the few deliberate differences), with its
//! defaults: `k_neighbors` 5 for the SMOTE family, `m_neighbors` 10 for
//! Borderline-SMOTE, `n_neighbors` 3 for ENN and NearMiss.
//!
//! **Distances** are euclidean on the raw numeric feature columns (role
//! `feature`), without scaling, as imbalanced-learn: standardise upstream if
//! the columns have very different scales. A missing value (null, NaN,
//! infinity) counts as its column's mean in distances.
//!
//! **Synthetic rows** (SMOTE family) are made in the original feature space:
//! a numeric feature is `x + gap * (neighbour - x)`, missing when either end
//! is missing; integer and boolean columns are rounded (half away from zero)
//! so that the column keeps its type (imbalanced-learn returns floats);
//! SMOTE-NC's categorical features take the most frequent value among the
//! start row's neighbours. Other columns: the label is the class; `id`
//! columns are null; `truth`, `other` and `added` columns are null (nothing
//! is known about a row that was never observed); a `weight` column copies
//! the start row's weight. `random_over` copies whole rows (every column but
//! `id`, which is null). Every output row has `is_synthetic` (role `added`):
//! false for input rows, true for new ones. Output rows: the input rows in
//! their order (minus removed ones), then the synthetic rows, class by class.
//!
//! **Removed rows** go to the `removed` port with `removed_reason`
//! (`random_under`, `tomek_link`, `enn`, `near_miss`): every column
//! (`removed_rows: full`, the default but for `random_under`), or only the
//! row's position (`input_row`), its label, `id` columns and
//! `is_synthetic` (`removed_rows: index`, the default of `random_under`:
//! its removed rows are a random draw, often most of the table, and a copy
//! of them would double the memory the stage needs).
//!
//! **Weights**: `balanced` gives class c the weight `n / (K * n_c)` (row
//! weights sum to n); `effective_number` gives `(1 - beta) / (1 - beta^n_c)`,
//! normalised so that the K class weights sum to K; `class_weights` takes
//! them from the parameters (unlisted classes: 1). They land in
//! `weight_column` (default `sample_weight`, role `weight`), multiplied by an
//! existing weight column if there is one.
//!
//! **Held-out data**: `gigo validate` refuses the stage when its rows come only from a
//! `split` stage's `test` or `valid` port (see [`provenance`] for why and how).
//!
//! Everything random derives from the stage seed, one generator per class,
//! so the same seed gives the same rows whatever the thread count.

mod data;
mod neighbours;
mod provenance;
mod report;
mod smote;
mod strategy;
mod stream;
mod undersample;
mod weights;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use gigo_pipeline::budget::Need;
use gigo_pipeline::summary::Severity;
use gigo_pipeline::{
    Inputs, Memory, ParamProblem, PortSpec, Registry, Stage, StageContext, StageError, StageOutput,
};
use gigo_pipeline::{Metrics, Wiring};
use schemars::JsonSchema;
use serde::Deserialize;

use data::{Classes, Features, RemovedRows, Rows, Synthetic};
use report::ClassLine;
use strategy::Kind;
pub use strategy::{ClassName, Named, Strategy};
pub use undersample::KindSel;
use undersample::{NearMissVersion, Removal};

/// A resampling or weighting method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Copies of random rows of the classes to grow.
    RandomOver,
    /// SMOTE: interpolation between a row and a same-class neighbour.
    Smote,
    /// Borderline-SMOTE: SMOTE from the rows near other classes (`borderline_kind` 1 or 2).
    BorderlineSmote,
    /// ADASYN: SMOTE weighted towards rows surrounded by other classes.
    Adasyn,
    /// SMOTE-NC: SMOTE for mixed numeric and categorical features.
    SmoteNc,
    /// Random rows of the classes to shrink are removed.
    RandomUnder,
    /// Rows in Tomek links (mutual nearest neighbours of different classes) are removed.
    Tomek,
    /// Edited nearest neighbours: rows their neighbours disagree with are removed.
    Enn,
    /// NearMiss (`version` 1, 2 or 3): keeps the rows nearest the minority class.
    NearMiss,
    /// SMOTE, then Tomek links removed from every class.
    SmoteTomek,
    /// SMOTE, then ENN applied to every class.
    SmoteEnn,
    /// Weights n / (K * n_c).
    Balanced,
    /// Weights from the effective number of samples (Cui et al. 2019).
    EffectiveNumber,
    /// Weights given in `class_weights`.
    ClassWeights,
}

/// The family of a method, which fixes what `strategy` means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Over,
    Under,
    Clean,
    Combined,
    Weight,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::RandomOver => "random_over",
            Method::Smote => "smote",
            Method::BorderlineSmote => "borderline_smote",
            Method::Adasyn => "adasyn",
            Method::SmoteNc => "smote_nc",
            Method::RandomUnder => "random_under",
            Method::Tomek => "tomek",
            Method::Enn => "enn",
            Method::NearMiss => "near_miss",
            Method::SmoteTomek => "smote_tomek",
            Method::SmoteEnn => "smote_enn",
            Method::Balanced => "balanced",
            Method::EffectiveNumber => "effective_number",
            Method::ClassWeights => "class_weights",
        }
    }

    fn family(self) -> Family {
        match self {
            Method::RandomOver
            | Method::Smote
            | Method::BorderlineSmote
            | Method::Adasyn
            | Method::SmoteNc => Family::Over,
            Method::RandomUnder | Method::NearMiss => Family::Under,
            Method::Tomek | Method::Enn => Family::Clean,
            Method::SmoteTomek | Method::SmoteEnn => Family::Combined,
            Method::Balanced | Method::EffectiveNumber | Method::ClassWeights => Family::Weight,
        }
    }

    /// What `strategy` means for this method.
    fn strategy_kind(self) -> Option<Kind> {
        match self.family() {
            Family::Over | Family::Combined => Some(Kind::Over),
            Family::Under => Some(Kind::Under),
            Family::Clean => Some(Kind::Clean),
            Family::Weight => None,
        }
    }
}

/// Parameters of `rebalance`. Options that only some methods use are
/// rejected for the others, so that a typo'd combination never silently
/// does nothing.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RebalanceParams {
    /// The resampling or weighting method.
    pub method: Method,
    /// SMOTE family: same-class neighbours to interpolate towards (default 5;
    /// ADASYN also uses it to weigh rows). Capped at the class size - 1.
    #[serde(default)]
    pub k_neighbors: Option<usize>,
    /// Which classes are resampled and to how many rows (default `auto`:
    /// over-samplers grow every class to the majority's size, under-samplers
    /// shrink every class to the minority's, cleaners clean every class but
    /// the minority). Also a ratio minority/majority in (0, 1], or rows per
    /// class (`{"0": 500, "1": 500}`). Resampling methods only.
    #[serde(default)]
    pub strategy: Option<Strategy>,
    /// Resample only these classes (of those the strategy picks). Resampling
    /// methods only; for `smote_tomek` / `smote_enn` it applies to the SMOTE step.
    #[serde(default)]
    pub classes: Option<Vec<ClassName>>,
    /// `borderline_smote`: 1 (neighbours of the same class) or 2 (any class,
    /// at most half-way towards another class). Default 1.
    #[serde(default)]
    pub borderline_kind: Option<u8>,
    /// `borderline_smote`: neighbours that decide whether a row is in danger
    /// (default 10).
    #[serde(default)]
    pub m_neighbors: Option<usize>,
    /// `smote_nc`: feature columns to treat as categorical, besides the text
    /// ones (which always are). Default: the text feature columns.
    #[serde(default)]
    pub categorical: Option<Vec<String>>,
    /// `enn`, `smote_enn`, `near_miss`: neighbours consulted (default 3).
    #[serde(default)]
    pub n_neighbors: Option<usize>,
    /// `enn`, `smote_enn`: `all` (default) removes a row when any neighbour
    /// is of another class; `mode` when most are.
    #[serde(default)]
    pub kind_sel: Option<KindSel>,
    /// `near_miss`: version 1, 2 or 3 (default 1).
    #[serde(default)]
    pub version: Option<u8>,
    /// `near_miss` version 3: majority neighbours of each minority row that
    /// form the candidate pool (default 3).
    #[serde(default)]
    pub n_neighbors_ver3: Option<usize>,
    /// `effective_number`: beta in [0, 1) (default 0.999; the paper uses
    /// 0.9 to 0.9999). 0 weighs every class 1; near 1 approaches `balanced`.
    #[serde(default)]
    pub beta: Option<f64>,
    /// `class_weights`: weight per class (`{"0": 1.0, "1": 5.0}`);
    /// unlisted classes weigh 1.
    #[serde(default)]
    pub class_weights: Option<BTreeMap<String, f64>>,
    /// Weighting methods: the column to write (default `sample_weight`).
    #[serde(default)]
    pub weight_column: Option<String>,
    /// Methods that remove rows: what the `removed` port holds per removed
    /// row. `full`: every column and `removed_reason` (the default of the
    /// methods that remove rows for a reason found in the data: `tomek`,
    /// `enn`, `near_miss`, `smote_tomek`, `smote_enn`). `index`:
    /// `input_row` (its position in the input; for `smote_tomek` /
    /// `smote_enn`, among the rows after SMOTE, synthetic ones last), the
    /// label, `id` columns, `is_synthetic` and `removed_reason`, without
    /// copying the removed rows' features (the default of `random_under`,
    /// whose removed rows are a random draw, often most of the table).
    #[serde(default)]
    pub removed_rows: Option<RemovedRows>,
}

impl RebalanceParams {
    fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let m = self.method;
        let mut p = Vec::new();
        let mut unused = |name: &str, set: bool, used_by: &[Method]| {
            if set && !used_by.contains(&m) {
                let names: Vec<&str> = used_by.iter().map(|m| m.name()).collect();
                let mut problem = ParamProblem::new(
                    name,
                    format!(
                        "`{name}` does nothing for method `{}`; it is used by: {}",
                        m.name(),
                        names.join(", ")
                    ),
                );
                problem.help = Some(format!("remove `{name}`"));
                p.push(problem);
            }
        };
        use Method::*;
        let resampling = [
            RandomOver,
            Smote,
            BorderlineSmote,
            Adasyn,
            SmoteNc,
            RandomUnder,
            Tomek,
            Enn,
            NearMiss,
            SmoteTomek,
            SmoteEnn,
        ];
        unused(
            "k_neighbors",
            self.k_neighbors.is_some(),
            &[
                Smote,
                BorderlineSmote,
                Adasyn,
                SmoteNc,
                SmoteTomek,
                SmoteEnn,
            ],
        );
        unused("strategy", self.strategy.is_some(), &resampling);
        unused("classes", self.classes.is_some(), &resampling);
        unused(
            "borderline_kind",
            self.borderline_kind.is_some(),
            &[BorderlineSmote],
        );
        unused(
            "m_neighbors",
            self.m_neighbors.is_some(),
            &[BorderlineSmote],
        );
        unused("categorical", self.categorical.is_some(), &[SmoteNc]);
        unused(
            "n_neighbors",
            self.n_neighbors.is_some(),
            &[Enn, SmoteEnn, NearMiss],
        );
        unused("kind_sel", self.kind_sel.is_some(), &[Enn, SmoteEnn]);
        unused("version", self.version.is_some(), &[NearMiss]);
        unused(
            "n_neighbors_ver3",
            self.n_neighbors_ver3.is_some(),
            &[NearMiss],
        );
        unused("beta", self.beta.is_some(), &[EffectiveNumber]);
        unused(
            "class_weights",
            self.class_weights.is_some(),
            &[ClassWeights],
        );
        unused(
            "removed_rows",
            self.removed_rows.is_some(),
            &[RandomUnder, Tomek, Enn, NearMiss, SmoteTomek, SmoteEnn],
        );
        unused(
            "weight_column",
            self.weight_column.is_some(),
            &[Balanced, EffectiveNumber, ClassWeights],
        );
        for (name, v) in [
            ("k_neighbors", self.k_neighbors),
            ("m_neighbors", self.m_neighbors),
            ("n_neighbors", self.n_neighbors),
            ("n_neighbors_ver3", self.n_neighbors_ver3),
        ] {
            if v == Some(0) {
                p.push(ParamProblem::new(
                    name,
                    format!("`{name}` must be at least 1"),
                ));
            }
        }
        if let Some(k) = self.borderline_kind
            && !(1..=2).contains(&k)
        {
            p.push(ParamProblem::new(
                "borderline_kind",
                format!("`borderline_kind` is 1 or 2, got {k}"),
            ));
        }
        if let Some(v) = self.version
            && !(1..=3).contains(&v)
        {
            p.push(ParamProblem::new(
                "version",
                format!("`version` is 1, 2 or 3, got {v}"),
            ));
        }
        if self.n_neighbors_ver3.is_some() && self.version.unwrap_or(1) != 3 {
            p.push(ParamProblem::new(
                "n_neighbors_ver3",
                "`n_neighbors_ver3` is only used by NearMiss version 3 (set `version: 3`)",
            ));
        }
        if let Some(b) = self.beta
            && !(0.0..1.0).contains(&b)
        {
            p.push(ParamProblem::new(
                "beta",
                format!("`beta` must be in [0, 1), got {b}"),
            ));
        }
        if m == ClassWeights {
            match &self.class_weights {
                None => p.push(ParamProblem::new(
                    "class_weights",
                    "method `class_weights` needs `class_weights: {<class>: <weight>, ...}`",
                )),
                Some(w) => {
                    for (c, &v) in w {
                        if !(v.is_finite() && v >= 0.0) {
                            p.push(ParamProblem::new(
                                "class_weights",
                                format!("the weight of class `{c}` must be a finite number >= 0, got {v}"),
                            ));
                        }
                    }
                }
            }
        }
        if let Some(c) = &self.weight_column
            && c.trim().is_empty()
        {
            p.push(ParamProblem::new(
                "weight_column",
                "`weight_column` must not be empty",
            ));
        }
        if let Some(c) = &self.classes
            && c.is_empty()
        {
            p.push(ParamProblem::new(
                "classes",
                "`classes` is empty: nothing would be resampled (leave it out for all classes)",
            ));
        }
        if let (Some(s), Some(kind)) = (&self.strategy, m.strategy_kind()) {
            for msg in strategy::check(s, kind) {
                p.push(ParamProblem::new("strategy", msg));
            }
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }

    fn k(&self) -> usize {
        self.k_neighbors.unwrap_or(5)
    }

    fn n(&self) -> usize {
        self.n_neighbors.unwrap_or(3)
    }
}

/// Something the report should say about a run (a fallback, a cap).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Note {
    severity: Severity,
    kind: &'static str,
    message: String,
}

impl Note {
    fn new(severity: Severity, kind: &'static str, message: String) -> Note {
        Note {
            severity,
            kind,
            message,
        }
    }
}

/// The `rebalance` stage.
pub struct Rebalance {
    params: RebalanceParams,
}

impl Rebalance {
    /// A stage from checked parameters.
    pub fn new(params: RebalanceParams) -> Result<Rebalance, Vec<ParamProblem>> {
        params.check()?;
        Ok(Rebalance { params })
    }
}

/// Registers `rebalance`.
pub fn register(registry: &mut Registry) {
    registry.register::<RebalanceParams, _>(
        "rebalance",
        "Fixes class imbalance in training data, by resampling (random over/under-sampling, \
         SMOTE, Borderline-SMOTE, ADASYN, SMOTE-NC, Tomek links, edited nearest neighbours, \
         NearMiss, SMOTE+Tomek, SMOTE+ENN; as imbalanced-learn) or by weighting (balanced, \
         effective number of samples, given class weights, into a `sample_weight` column). \
         Synthetic rows are marked `is_synthetic`; removed rows go to `removed` with the \
         reason. Refuses rows that come only from a split's test or valid port.",
        |params| Ok(Box::new(Rebalance::new(params)?)),
    );
}

/// What resampling did, per class.
struct Accounting {
    added: Vec<usize>,
    removed: Vec<BTreeMap<&'static str, usize>>,
}

impl Accounting {
    fn new(k: usize) -> Accounting {
        Accounting {
            added: vec![0; k],
            removed: vec![BTreeMap::new(); k],
        }
    }

    /// The report's line of every class, given its rows before.
    fn lines(&self, names: &[String], before: &[usize]) -> Vec<ClassLine> {
        names
            .iter()
            .enumerate()
            .map(|(c, name)| {
                let removed: usize = self.removed[c].values().sum();
                ClassLine {
                    name: name.clone(),
                    before: before[c],
                    added: self.added[c],
                    removed: self.removed[c].clone(),
                    after: (before[c] + self.added[c]).saturating_sub(removed),
                    weight: None,
                }
            })
            .collect()
    }

    fn count_removed(&mut self, removal: &Removal, classes: &Classes, names: &[String]) {
        for &(g, reason) in removal {
            let name = &classes.names[classes.of_row[g as usize] as usize];
            if let Some(c) = names.iter().position(|n| n == name) {
                *self.removed[c].entry(reason).or_default() += 1;
            }
        }
    }
}

impl Stage for Rebalance {
    fn metrics(&self) -> Metrics {
        Metrics::names(report::METRICS)
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table(
            "table",
            "labelled training rows (never a split's test or valid part)",
        )]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table(
                "table",
                "the rebalanced rows: kept input rows, then synthetic rows (`is_synthetic`), \
                 or every row with a weight column",
            ),
            PortSpec::removed(
                "removed",
                "rows removed by under-sampling or cleaning, with why",
            ),
        ]
    }

    fn check_wiring(&self, wiring: &Wiring) -> Vec<ParamProblem> {
        provenance::refuse_held_out(wiring)
    }

    /// Every method reads its input in batches (see [`stream`]).
    fn memory(&self) -> Memory {
        Memory::Streams {
            per_row: stream::bytes_per_row(self.params.method),
            fixed: gigo_pipeline::budget::STREAM_FIXED,
        }
    }

    /// The oversamplers gather the rows new rows are made from, the
    /// cleaning methods every row's features (at most the table, at
    /// [`stream::GATHERED_FACTOR`] its size).
    fn reserve(&self, need: &Need, inputs: &Inputs, _ctx: &StageContext) -> u64 {
        let gathers = !matches!(self.params.method.family(), Family::Weight)
            && self.params.method != Method::RandomUnder;
        match inputs.source_opt("table") {
            Some(t) if gathers => {
                need.bytes + (t.memory_bytes() as f64 * stream::GATHERED_FACTOR) as u64
            }
            _ => need.bytes,
        }
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        self.rebalance_batches(&inputs.source("table")?, ctx)
    }
}

/// The report's note when the input's weights multiply the class weights.
fn existing_weights_note(old: &str) -> Note {
    Note::new(
        Severity::Info,
        "existing_weights",
        format!("the input's weights (`{old}`) multiply the class weights"),
    )
}

impl Rebalance {
    /// A weighting method's class weights; `None` for the resampling ones.
    fn class_weights(
        &self,
        counts: &[usize],
        names: &[String],
    ) -> Result<Option<Vec<f64>>, StageError> {
        let p = &self.params;
        Ok(match p.method {
            Method::Balanced => Some(weights::balanced(counts)),
            Method::EffectiveNumber => {
                Some(weights::effective_number(counts, p.beta.unwrap_or(0.999)))
            }
            Method::ClassWeights => Some(weights::user(
                names,
                p.class_weights.as_ref().unwrap_or(&BTreeMap::new()),
            )?),
            _ => None,
        })
    }

    /// SMOTE-NC's features of `rows`: numeric and categorical (text
    /// columns, and those named in `categorical`), at least one of each.
    fn nc_features(&self, rows: &Rows) -> Result<Features, StageError> {
        let named = self.params.categorical.as_deref().unwrap_or(&[]);
        let f = Features::load(rows, Method::SmoteNc.name(), Some(named))?;
        if f.categorical.is_empty() {
            return Err(StageError::data(
                "`smote_nc` needs categorical feature columns (text columns, or those named in \
                 `categorical`) and found none: use `smote`",
            ));
        }
        Ok(f)
    }

    /// The new rows of Borderline-SMOTE or ADASYN, which weigh each row of
    /// a class by the other classes among its neighbours in every row
    /// (`f`, the features of every row of `classes`).
    fn by_danger(
        &self,
        ctx: &StageContext,
        classes: &Classes,
        f: &Features,
        t: &[Option<usize>],
        notes: &mut Vec<Note>,
    ) -> Result<Synthetic, StageError> {
        let p = &self.params;
        match p.method {
            Method::BorderlineSmote => smote::borderline(
                ctx,
                classes,
                f,
                t,
                p.k(),
                p.m_neighbors.unwrap_or(10),
                p.borderline_kind.unwrap_or(1),
                notes,
            ),
            Method::Adasyn => smote::adasyn(ctx, classes, f, t, p.k(), notes),
            m => Err(StageError::internal(format!(
                "`{}` does not weigh rows by their neighbours",
                m.name()
            ))),
        }
    }

    /// The rows `tomek`, `enn` or `near_miss` removes, from the features
    /// `f` of every row of `classes`, towards the targets `t`.
    fn cleaned(
        &self,
        classes: &Classes,
        f: &Features,
        t: &[Option<usize>],
        notes: &mut Vec<Note>,
    ) -> Result<Removal, StageError> {
        let p = &self.params;
        let targeted: Vec<bool> = t.iter().map(Option::is_some).collect();
        Ok(match p.method {
            Method::Tomek => undersample::tomek(classes, f, &targeted),
            Method::Enn => {
                undersample::enn(classes, f, &targeted, p.n(), p.kind_sel.unwrap_or_default())
            }
            Method::NearMiss => undersample::near_miss(
                classes,
                f,
                t,
                match p.version.unwrap_or(1) {
                    1 => NearMissVersion::One,
                    2 => NearMissVersion::Two,
                    _ => NearMissVersion::Three,
                },
                p.n(),
                p.n_neighbors_ver3.unwrap_or(3),
                notes,
            )?,
            m => {
                return Err(StageError::internal(format!(
                    "`{}` does not clean by neighbours",
                    m.name()
                )));
            }
        })
    }

    /// What the `removed` port holds.
    fn removed_mode(&self) -> RemovedRows {
        self.params
            .removed_rows
            .unwrap_or(if self.params.method == Method::RandomUnder {
                RemovedRows::Index
            } else {
                RemovedRows::Full
            })
    }
}
