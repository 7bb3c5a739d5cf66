//! `label_noise`: finds rows whose label is probably wrong, by confident
//! learning (Northcutt et al., JAIR 2021) on out-of-sample predicted
//! probabilities, computed as cleanlab 2.9 computes it (see
//! [`gigo_ml::confident`]).
//!
//! Where the probabilities come from (one of):
//!
//! - **cross-validation** (default): any catalogue `model`
//!   (`logistic_regression`, `gradient_boosting`, `random_forest`, `knn`,
//!   `neural_network`, or one a program registers) trained on `folds`
//!   stratified folds of the feature columns (role `feature`, or
//!   `features`), each row predicted by the model that did not see it.
//!   Numeric features are standardised, text features one-hot encoded
//!   ([`gigo_ml::FeatureEncoder`]); a weight column (role `weight`) weighs
//!   the training rows.
//! - **`knn_consensus`**: the label distribution of each row's `k` nearest
//!   neighbours (its own vote removed), as cleanlab's Datalab does without a
//!   model; useful on embedding columns.
//! - **`pred_probs`**: columns the user already has, one per class in the
//!   order of the sorted class values (each row renormalised to sum to 1).
//!
//! Then the `filter_by` rule flags rows and every row gets a label-quality
//! score (`score`). Added columns (role `added`): `label_quality`,
//! `is_label_issue`, `suggested_label` (the most probable class). `action`:
//! `flag` only adds them; `drop` moves flagged rows to the `removed` port
//! (`removed_reason` = `label_issue`); `relabel` replaces flagged labels by
//! the suggestion; `weight` writes `label_quality` into `weight_column`
//! (role `weight`), multiplied by an existing weight column.
//!
//! The summary reports issues per class, the estimated noise matrix, the
//! most suspicious rows, and, when the table has a boolean `is_flipped`
//! ground-truth column (role `truth`, as `generate` writes), precision,
//! recall and F1 of the flags against it. The metric `label_issue_rate`
//! feeds quality gates (`max_label_issue_rate`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast, filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use gigo_ml::confident::{
    self, FilterBy, FindOptions, LabelIssues, PredProbs, ScoreMethod, TwoPass,
};
use gigo_ml::cv::cross_val_predict_proba;
use gigo_ml::{Catalogue, Classes, EncoderOptions, Estimator, FeatureEncoder, TrainSet, knn_self};
use gigo_pipeline::Metrics;
use gigo_pipeline::budget::Memory;
use gigo_pipeline::budget::Need;
use gigo_pipeline::stream::TableWriter;
use gigo_pipeline::summary::{Block, Section, Severity};
use gigo_pipeline::{
    Inputs, ParamProblem, PortSpec, REASON_COLUMN, Registry, Role, Stage, StageContext, StageError,
    StageOutput, Table, field_with_role, role_of,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{from_ml, from_model};
use crate::labels::label_keys;

mod passes;
mod report;
use passes::RowProbs;
use report::Tally;

/// The stage type name.
pub const STAGE_TYPE: &str = "label_noise";

/// Name of the ground-truth column the summary scores the flags against.
pub const TRUTH_COLUMN: &str = "is_flipped";

/// Which rows are flagged (cleanlab's `filter_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    /// Per off-diagonal cell of the confident joint, the rows with the
    /// largest margin for the other class (cleanlab's default).
    #[default]
    PruneByNoiseRate,
    /// Per class, the rows least likely to belong to their label.
    PruneByClass,
    /// Rows flagged by both rules above.
    Both,
    /// Rows counted off the diagonal of the confident joint.
    ConfidentLearning,
    /// Rows whose most probable class is not their label.
    PredictedNeqGiven,
    /// The estimated number of issues, lowest self-confidence first.
    LowSelfConfidence,
    /// The estimated number of issues, lowest normalised margin first.
    LowNormalizedMargin,
}

impl Filter {
    fn to_ml(self) -> FilterBy {
        match self {
            Filter::PruneByNoiseRate => FilterBy::PruneByNoiseRate,
            Filter::PruneByClass => FilterBy::PruneByClass,
            Filter::Both => FilterBy::Both,
            Filter::ConfidentLearning => FilterBy::ConfidentLearning,
            Filter::PredictedNeqGiven => FilterBy::PredictedNeqGiven,
            Filter::LowSelfConfidence => FilterBy::LowSelfConfidence,
            Filter::LowNormalizedMargin => FilterBy::LowNormalizedMargin,
        }
    }
}

/// The label-quality score written to `label_quality`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// Probability of the given label.
    #[default]
    SelfConfidence,
    /// `(p(given) - max p(other) + 1) / 2`.
    NormalizedMargin,
    /// Entropy-weighted self-confidence.
    ConfidenceWeightedEntropy,
}

impl Score {
    fn to_ml(self) -> ScoreMethod {
        match self {
            Score::SelfConfidence => ScoreMethod::SelfConfidence,
            Score::NormalizedMargin => ScoreMethod::NormalizedMargin,
            Score::ConfidenceWeightedEntropy => ScoreMethod::ConfidenceWeightedEntropy,
        }
    }
}

/// What happens to the flagged rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Only add `label_quality`, `is_label_issue` and `suggested_label`.
    #[default]
    Flag,
    /// Move flagged rows to the `removed` port.
    Drop,
    /// Replace flagged labels by `suggested_label`.
    Relabel,
    /// Write `label_quality` as a sample weight (`weight_column`).
    Weight,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Flag => "flag",
            Action::Drop => "drop",
            Action::Relabel => "relabel",
            Action::Weight => "weight",
        }
    }
}

/// kNN consensus instead of a model.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KnnConsensus {
    /// Neighbours per row (default 10).
    #[serde(default = "default_knn_k")]
    pub k: usize,
}

fn default_knn_k() -> usize {
    10
}

/// Parameters of `label_noise`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelNoiseParams {
    /// The cross-validated catalogue model (default `logistic_regression`).
    #[serde(default = "default_model")]
    pub model: String,
    /// Hyper-parameters of `model` (typed per model in `gigo schema`;
    /// unknown names are errors).
    #[serde(default)]
    pub model_params: Option<BTreeMap<String, Value>>,
    /// Cross-validation folds (default 5).
    #[serde(default = "default_folds")]
    pub folds: usize,
    /// Which rows are flagged (default `prune_by_noise_rate`).
    #[serde(default)]
    pub filter_by: Filter,
    /// The score written to `label_quality` (default `self_confidence`).
    #[serde(default)]
    pub score: Score,
    /// Use these probability columns (one per class, in sorted class order)
    /// instead of cross-validation.
    #[serde(default)]
    pub pred_probs: Option<Vec<String>>,
    /// Use the labels of each row's nearest neighbours instead of a model.
    #[serde(default)]
    pub knn_consensus: Option<KnnConsensus>,
    /// Feature columns (default: the columns with role `feature`); e.g.
    /// embedding columns for `knn_consensus`.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Text features keep their most frequent values as indicators (default 32).
    #[serde(default = "default_max_categories")]
    pub max_categories: usize,
    /// Standardise numeric features (default true); `false` keeps features
    /// that share one scale (pixels, embeddings) as they are.
    #[serde(default = "default_true")]
    pub standardize: bool,
    /// What to do with flagged rows (default `flag`).
    #[serde(default)]
    pub action: Action,
    /// `action: weight`: the weight column written (default `sample_weight`).
    #[serde(default)]
    pub weight_column: Option<String>,
    /// Rows shown in the report's table of top issues (default 20).
    #[serde(default = "default_top")]
    pub top_issues: usize,
}

fn default_model() -> String {
    DEFAULT_MODEL.to_string()
}

/// The model cross-validated when `model` is absent.
pub const DEFAULT_MODEL: &str = "logistic_regression";
fn default_folds() -> usize {
    5
}
fn default_max_categories() -> usize {
    32
}
fn default_top() -> usize {
    20
}
fn default_true() -> bool {
    true
}

/// Where the probabilities come from, once checked.
#[derive(Clone)]
enum Source {
    CrossValidation(Arc<dyn Estimator>),
    Knn(usize),
    Columns(Vec<String>),
}

impl LabelNoiseParams {
    /// Checks every rule and reports all problems at once; `model` comes
    /// from `catalogue`.
    fn check(&self, catalogue: &Catalogue) -> Result<Source, Vec<ParamProblem>> {
        let mut p = Vec::new();
        if self.folds < 2 {
            p.push(ParamProblem::new(
                "folds",
                format!("must be at least 2, got {}", self.folds),
            ));
        }
        if self.max_categories == 0 {
            p.push(ParamProblem::new("max_categories", "must be at least 1"));
        }
        if let Some(c) = &self.weight_column {
            if c.is_empty() {
                p.push(ParamProblem::new("weight_column", "must not be empty"));
            }
            if self.action != Action::Weight {
                p.push(ParamProblem::new(
                    "weight_column",
                    "is only used with `action: weight`",
                ));
            }
        }
        if let Some(f) = &self.features
            && f.is_empty()
        {
            p.push(ParamProblem::new(
                "features",
                "must list at least one column",
            ));
        }
        let spec = match self.estimator(catalogue) {
            Ok(s) => Some(s),
            Err(e) => {
                p.push(e);
                None
            }
        };
        let source = match (&self.pred_probs, &self.knn_consensus) {
            (Some(_), Some(_)) => {
                p.push(ParamProblem::new(
                    "pred_probs",
                    "give either `pred_probs` or `knn_consensus`, not both",
                ));
                None
            }
            (Some(cols), None) => {
                if cols.len() < 2 {
                    p.push(ParamProblem::new(
                        "pred_probs",
                        "needs one column per class (at least 2)",
                    ));
                }
                let mut seen = cols.clone();
                seen.sort();
                seen.dedup();
                if seen.len() != cols.len() {
                    p.push(ParamProblem::new("pred_probs", "lists a column twice"));
                }
                if self.model_params.is_some() {
                    p.push(ParamProblem::new(
                        "model_params",
                        "has no effect with `pred_probs` (no model is trained)",
                    ));
                }
                Some(Source::Columns(cols.clone()))
            }
            (None, Some(k)) => {
                if k.k == 0 {
                    p.push(ParamProblem::new("knn_consensus.k", "must be at least 1"));
                }
                if self.model_params.is_some() {
                    p.push(ParamProblem::new(
                        "model_params",
                        "has no effect with `knn_consensus` (no model is trained)",
                    ));
                }
                Some(Source::Knn(k.k))
            }
            (None, None) => spec.map(Source::CrossValidation),
        };
        match source {
            Some(s) if p.is_empty() => Ok(s),
            _ => Err(p),
        }
    }

    /// The model with its parameters, checked by the model itself.
    fn estimator(&self, catalogue: &Catalogue) -> Result<Arc<dyn Estimator>, ParamProblem> {
        let params = Value::Object(
            self.model_params
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
        );
        crate::models::estimator(catalogue, &self.model, &params).map(Arc::from)
    }
}

/// The `label_noise` stage.
pub struct LabelNoise {
    params: LabelNoiseParams,
    source: Source,
}

/// Registers `label_noise`, cross-validating the models of `catalogue`.
pub fn register(registry: &mut Registry, catalogue: &Catalogue) {
    let cat = catalogue.clone();
    registry.register::<LabelNoiseParams, _>(
        STAGE_TYPE,
        "Finds rows whose label is probably wrong: confident learning (as cleanlab 2.9) on \
         out-of-sample probabilities from k-fold cross-validation of a model \
         of the catalogue, from kNN consensus, \
         or from given probability columns. Adds label_quality, is_label_issue and \
         suggested_label; action flag, drop (to the `removed` port), relabel or weight. \
         Reports issues per class, the noise matrix, the top issues, and precision/recall \
         against an `is_flipped` truth column when there is one.",
        move |params: LabelNoiseParams| {
            let source = params.check(&cat)?;
            Ok(Box::new(LabelNoise { params, source }))
        },
    );
    crate::models::type_model_params(registry, STAGE_TYPE, catalogue, Some(DEFAULT_MODEL));
}

/// The label column and its classes, in [`Classes`] order.
pub(super) struct LabelClasses {
    column: String,
    names: Vec<String>,
}

/// The labels of a table as class indices, in [`Classes`] order.
struct Labels {
    classes: LabelClasses,
    index: Vec<u32>,
    /// A row holding each class (for building `suggested_label`).
    example_row: Vec<u32>,
}

fn read_labels(table: &Table, batch: &RecordBatch) -> Result<Labels, StageError> {
    let column = table.label_column()?;
    let col = batch
        .column_by_name(&column)
        .ok_or_else(|| StageError::internal("label column vanished"))?;
    if col.null_count() > 0 {
        return Err(missing_labels(&column, col.null_count()));
    }
    let (classes, index) = Classes::of(col).map_err(from_ml)?;
    let names = classes.names().to_vec();
    let index: Vec<u32> = index
        .into_iter()
        .map(|c| c.ok_or_else(|| StageError::internal("a non-null label without a class")))
        .collect::<Result<_, _>>()?;
    let mut example_row = vec![u32::MAX; names.len()];
    for (i, &c) in index.iter().enumerate() {
        if example_row[c as usize] == u32::MAX {
            example_row[c as usize] = i as u32;
        }
    }
    Ok(Labels {
        classes: LabelClasses { column, names },
        index,
        example_row,
    })
}

impl LabelClasses {
    /// Checks that `cols` name one probability column per class.
    fn check(&self, cols: &[String]) -> Result<(), StageError> {
        if cols.len() != self.names.len() {
            return Err(StageError::data(format!(
                "`pred_probs` names {} columns but the label column `{}` has {} \
                 classes ({})",
                cols.len(),
                self.column,
                self.names.len(),
                self.names.join(", ")
            )));
        }
        Ok(())
    }
}

/// The probability columns `cols` of `batch` as rows divided by their sums
/// (row-major); `at` is the batch's first row in the table (for errors).
fn probability_rows(
    batch: &RecordBatch,
    cols: &[String],
    at: usize,
) -> Result<Vec<f64>, StageError> {
    let (n, k) = (batch.num_rows(), cols.len());
    let mut data = vec![0.0f64; n * k];
    for (j, name) in cols.iter().enumerate() {
        let c = column(batch, name)?;
        if !(c.data_type().is_numeric()) {
            return Err(StageError::data(format!(
                "probability column `{name}` has type {}, not numbers",
                c.data_type()
            )));
        }
        let v = cast(c, &DataType::Float64)?;
        let v = v.as_primitive::<Float64Type>();
        for i in 0..n {
            if v.is_null(i) {
                return Err(StageError::data(format!(
                    "probability column `{name}` is missing a value in row {}",
                    at + i
                )));
            }
            data[i * k + j] = v.value(i);
        }
    }
    for (i, row) in data.chunks_mut(k).enumerate() {
        confident::normalize_row(row, at + i).map_err(from_ml)?;
    }
    Ok(data)
}

/// The error for a label column with `n` missing values.
fn missing_labels(column: &str, n: usize) -> StageError {
    StageError::data(format!(
        "label column `{column}` has {n} missing values; label_noise needs a label on \
         every row (drop or fill them upstream)"
    ))
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, StageError> {
    batch
        .column_by_name(name)
        .ok_or_else(|| StageError::data(format!("column `{name}` is not in the input table")))
}

impl LabelNoise {
    /// The feature columns: `features`, or the columns with role `feature`.
    fn feature_columns(&self, table: &Table) -> Result<Vec<String>, StageError> {
        let cols = match &self.params.features {
            Some(f) => f.clone(),
            None => table.columns_with_role(Role::Feature),
        };
        if cols.is_empty() {
            return Err(StageError::data(
                "the input table has no feature columns (role `feature`); name them in \
                 `features`, or give `pred_probs`",
            ));
        }
        Ok(cols)
    }

    /// Out-of-sample probabilities, and a description of how they were made.
    fn probabilities(
        &self,
        table: &Table,
        batch: &RecordBatch,
        labels: &Labels,
        ctx: &StageContext,
    ) -> Result<(PredProbs, Value), StageError> {
        let n = batch.num_rows();
        let k = labels.classes.names.len();
        match &self.source {
            Source::Columns(cols) => {
                labels.classes.check(cols)?;
                let data = probability_rows(batch, cols, 0)?;
                let probs = PredProbs::new(n, k, data).map_err(from_ml)?;
                Ok((probs, json!({"source": "columns", "columns": cols})))
            }
            Source::Knn(kn) => {
                let cols = self.feature_columns(table)?;
                let opts = EncoderOptions {
                    max_categories: self.params.max_categories,
                    standardize: self.params.standardize,
                };
                let enc = FeatureEncoder::fit(std::slice::from_ref(batch), &cols, &opts)
                    .map_err(from_ml)?;
                let x = enc
                    .transform(std::slice::from_ref(batch))
                    .map_err(from_ml)?;
                ctx.progress.message("nearest neighbours");
                let nn = knn_self(&x, *kn);
                let probs = confident::knn_consensus(&nn, &labels.index, k).map_err(from_ml)?;
                Ok((
                    probs,
                    json!({"source": "knn_consensus", "k": nn.k, "features": enc.output_names().len()}),
                ))
            }
            Source::CrossValidation(model) => {
                let cv =
                    self.cross_validate(model.as_ref(), table, batch, &labels.index, k, ctx)?;
                let probs = PredProbs::from_matrix(&cv.probs).map_err(from_ml)?;
                Ok((
                    probs,
                    json!({
                        "source": "cross_validation",
                        "model": crate::models::describe(model.as_ref()),
                        "folds": cv.folds,
                        "features": cv.encoder.output_names().len(),
                    }),
                ))
            }
        }
    }

    /// `model` cross-validated on the rows of `batch` (classes `y`) in
    /// stratified folds.
    fn cross_validate(
        &self,
        model: &dyn Estimator,
        table: &Table,
        batch: &RecordBatch,
        y: &[u32],
        k: usize,
        ctx: &StageContext,
    ) -> Result<CrossValidated, StageError> {
        let n = batch.num_rows();
        let cols = self.feature_columns(table)?;
        let opts = EncoderOptions {
            max_categories: self.params.max_categories,
            standardize: self.params.standardize,
        };
        let encoder =
            FeatureEncoder::fit(std::slice::from_ref(batch), &cols, &opts).map_err(from_ml)?;
        let x = encoder
            .transform(std::slice::from_ref(batch))
            .map_err(from_ml)?;
        let weights = crate::models::row_weights(table, batch)?;
        let folds = self.params.folds.min(n);
        if folds < 2 {
            return Err(StageError::data(format!(
                "cross-validation needs at least 2 rows, the input has {n}"
            )));
        }
        ctx.progress
            .message(&format!("{folds}-fold cross-validation"));
        let data = TrainSet::new(&x, y, k).weighted(weights.as_deref());
        let probs = cross_val_predict_proba(model, &data, folds, ctx.seed)
            .map_err(from_model(model.name()))?;
        Ok(CrossValidated {
            encoder,
            x,
            weights,
            probs,
            folds,
        })
    }
}

/// What cross-validating a model takes beside the table: its encoded
/// features, and per fold (two at once on two cores) the training rows'
/// copy, their indices and the model's own working memory. Measured with
/// logistic regression on 2M rows x 20 float columns: a peak of 2.17 GB
/// for a table of 0.34 GB, about six times the table (the factor counts
/// the table once more). The whole table is cross-validated when this
/// fits the budget; otherwise the sample is sized by it.
pub(super) const CV_MEMORY: Memory = Memory::Whole { factor: 5.0 };

/// A model cross-validated on some rows: their encoding, their weights, the
/// out-of-fold probabilities and the folds.
struct CrossValidated {
    encoder: FeatureEncoder,
    x: gigo_ml::Matrix,
    weights: Option<Vec<f32>>,
    probs: gigo_ml::Matrix,
    folds: usize,
}

/// The error for a label column with a single class.
fn single_class(labels: &LabelClasses) -> StageError {
    StageError::data(format!(
        "label column `{}` has a single class ({}); there is nothing to confuse it with",
        labels.column,
        labels.names.join(", ")
    ))
}

impl Stage for LabelNoise {
    fn metrics(&self) -> Metrics {
        Metrics::names(report::METRICS)
    }

    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table("table", "labelled rows")]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table(
                "table",
                "the rows with label_quality, is_label_issue and suggested_label (minus \
                 flagged rows with `action: drop`)",
            ),
            PortSpec::removed(
                "removed",
                "flagged rows with `action: drop` (removed_reason = label_issue)",
            ),
        ]
    }

    fn memory(&self) -> Memory {
        if self.in_passes().is_some() || self.may_sample().is_some() {
            // batches in flight, the top issues and K x K counts; with a
            // model, the table whole when cross-validating it fits the
            // budget (CV_MEMORY), else a sample in half of it (checked
            // when it starts)
            Memory::STREAMS
        } else if let Some(cols) = self.ranks_columns() {
            // every row's probabilities, beside what the ranking keeps
            Memory::Streams {
                per_row: 8.0 * cols.len() as f64 + passes::RANKED_BYTES,
                fixed: gigo_pipeline::budget::STREAM_FIXED,
            }
        } else {
            Memory::WHOLE
        }
    }

    /// A model is cross-validated on a sample when the table does not fit.
    fn results_depend_on_budget(&self) -> bool {
        self.may_sample().is_some()
    }

    fn streaming_hint(&self) -> Option<String> {
        let ranks = !matches!(
            self.params.filter_by,
            Filter::ConfidentLearning | Filter::PredictedNeqGiven
        );
        // kNN consensus holds the table whatever the filter
        (ranks && !matches!(self.source, Source::Knn(_))).then(|| {
            format!(
                "`filter_by: {}` ranks every row against the others; `filter_by: \
                 confident_learning` (or `predicted_neq_given`) judges each row on its own and \
                 reads the rows in batches (with a model, cross-validating a sample when the \
                 table does not fit)",
                self.params.filter_by.to_ml().name()
            )
        })
    }

    /// Cross-validating a model takes [`CV_MEMORY`] of the table when that
    /// fits the budget, else a sample sized to half of it (and a ranking
    /// filter every row's probabilities in the other half).
    fn reserve(&self, need: &Need, inputs: &Inputs, ctx: &StageContext) -> u64 {
        let (Some(_), Some(source)) = (self.may_sample(), inputs.source_opt("table")) else {
            return need.bytes;
        };
        let cv = CV_MEMORY
            .need(source.memory_bytes(), source.num_rows())
            .bytes;
        let ranks = !TwoPass::streams(self.params.filter_by.to_ml());
        need.bytes
            + match (cv <= ctx.memory_budget, ranks) {
                (true, _) => cv,
                // a ranking filter holds every row's probabilities in the other half
                (false, true) => ctx.memory_budget,
                (false, false) => ctx.memory_budget / 2,
            }
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        if let Some(cols) = self.in_passes() {
            return self.run_in_passes(&inputs.source("table")?, RowProbs::Columns(cols), ctx);
        }
        if let Some(cols) = self.ranks_columns() {
            return self.run_ranked(&inputs.source("table")?, RowProbs::Columns(cols), ctx);
        }
        let table = match self.may_sample() {
            Some(model) => {
                let source = inputs.source("table")?;
                let need = CV_MEMORY.need(source.memory_bytes(), source.num_rows());
                if need.bytes > ctx.memory_budget {
                    let sample = RowProbs::Sample(model, need);
                    return if TwoPass::streams(self.params.filter_by.to_ml()) {
                        self.run_in_passes(&source, sample, ctx)
                    } else {
                        self.run_ranked(&source, sample, ctx)
                    };
                }
                source.load(ctx.batch_rows)?
            }
            None => inputs.table("table")?,
        };
        let batch = table.to_batch()?;
        let n = batch.num_rows();
        if n == 0 {
            return Err(StageError::data("label_noise got an empty table"));
        }
        let labels = read_labels(&table, &batch)?;
        let k = labels.classes.names.len();
        if k < 2 {
            return Err(single_class(&labels.classes));
        }
        let started = std::time::Instant::now();
        let (probs, how) = self.probabilities(&table, &batch, &labels, ctx)?;
        let seconds_probs = started.elapsed().as_secs_f64();
        ctx.progress.message("confident learning");
        let opts = FindOptions {
            filter_by: self.params.filter_by.to_ml(),
            ..FindOptions::default()
        };
        let LabelIssues {
            is_issue,
            quality,
            suggested,
            estimates,
        } = confident::analyse(&labels.index, &probs, &opts, self.params.score.to_ml())
            .map_err(from_ml)?;
        let verdicts = Verdicts {
            is_issue,
            quality,
            suggested,
        };
        let schema = table.schema().clone();
        let label_col = column(&batch, &labels.classes.column)?;
        let class_values = take(
            label_col.as_ref(),
            &UInt32Array::from(labels.example_row.clone()),
            None,
        )?;
        let (out, removed) =
            self.apply(&schema, &batch, &labels.classes, &class_values, &verdicts)?;
        let mut tally = Tally::new(&schema, k, self.params.top_issues);
        tally.add(&batch, &labels.index, &verdicts)?;
        let summary = self.summary(ctx, &labels.classes, &tally, &estimates, how, seconds_probs)?;
        Ok(StageOutput::new()
            .with("table", Table::from_batch(out))
            .with("removed", Table::from_batch(removed))
            .with_summary(summary))
    }
}

/// Each row's verdict, for a batch or a whole table.
pub(super) struct Verdicts {
    is_issue: Vec<bool>,
    quality: Vec<f64>,
    suggested: Vec<u32>,
}

impl LabelNoise {
    /// A batch with the added columns, and its removed rows (none unless
    /// `action: drop`). `class_values` holds one label value per class.
    fn apply(
        &self,
        schema: &SchemaRef,
        batch: &RecordBatch,
        labels: &LabelClasses,
        class_values: &ArrayRef,
        v: &Verdicts,
    ) -> Result<(RecordBatch, RecordBatch), StageError> {
        let label_idx = schema.index_of(&labels.column)?;
        let label_col = batch.column(label_idx);
        let suggested = take(
            class_values.as_ref(),
            &UInt32Array::from(v.suggested.clone()),
            None,
        )?;
        let quality: ArrayRef = Arc::new(Float64Array::from(v.quality.clone()));
        let flagged = BooleanArray::from(v.is_issue.clone());

        let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut cols: Vec<ArrayRef> = batch.columns().to_vec();
        let put =
            |fields: &mut Vec<Field>, cols: &mut Vec<ArrayRef>, f: Field, a: ArrayRef| match fields
                .iter()
                .position(|x| x.name() == f.name())
            {
                Some(i) => {
                    fields[i] = f;
                    cols[i] = a;
                }
                None => {
                    fields.push(f);
                    cols.push(a);
                }
            };
        let added =
            |name: &str, t: DataType| field_with_role(Field::new(name, t, false), Role::Added);
        put(
            &mut fields,
            &mut cols,
            added("label_quality", DataType::Float64),
            quality,
        );
        put(
            &mut fields,
            &mut cols,
            added("is_label_issue", DataType::Boolean),
            Arc::new(flagged.clone()),
        );
        put(
            &mut fields,
            &mut cols,
            added("suggested_label", label_col.data_type().clone()),
            suggested.clone(),
        );
        match self.params.action {
            Action::Flag | Action::Drop => {}
            Action::Relabel => {
                cols[label_idx] = zip(&flagged, &suggested, label_col)?;
            }
            Action::Weight => {
                let name = self
                    .params
                    .weight_column
                    .as_deref()
                    .unwrap_or("sample_weight");
                let old = schema
                    .fields()
                    .iter()
                    .position(|f| role_of(f) == Role::Weight)
                    .or_else(|| schema.index_of(name).ok());
                let prior = match old {
                    Some(i) => training_weights_at(batch, schema.field(i).name(), i)?,
                    None => None,
                };
                let w: Vec<f64> = v
                    .quality
                    .iter()
                    .enumerate()
                    .map(|(i, q)| q * prior.as_ref().map_or(1.0, |p| p[i]))
                    .collect();
                if let Some(i) = old
                    && schema.field(i).name() != name
                {
                    fields[i] = field_with_role(fields[i].clone(), Role::Other);
                }
                put(
                    &mut fields,
                    &mut cols,
                    field_with_role(Field::new(name, DataType::Float64, false), Role::Weight),
                    Arc::new(Float64Array::from(w)),
                );
            }
        }
        let out_schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let all = RecordBatch::try_new(out_schema.clone(), cols)?;
        // removed rows: the input columns plus the added ones, then the reason
        let mut removed_fields: Vec<Field> = out_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        removed_fields.push(field_with_role(
            Field::new(REASON_COLUMN, DataType::Utf8, false),
            Role::Other,
        ));
        let removed_schema = Arc::new(Schema::new_with_metadata(
            removed_fields,
            out_schema.metadata().clone(),
        ));
        if self.params.action != Action::Drop {
            return Ok((all, RecordBatch::new_empty(removed_schema)));
        }
        let kept = arrow::compute::not(&flagged)?;
        let keep = filter_record_batch(&all, &kept)?;
        let gone = filter_record_batch(&all, &flagged)?;
        let mut gone_cols = gone.columns().to_vec();
        gone_cols.push(Arc::new(StringArray::from(vec![
            "label_issue";
            gone.num_rows()
        ])));
        let gone = RecordBatch::try_new(removed_schema, gone_cols)?;
        Ok((keep, gone))
    }
}

/// A weight column's values (nulls as 1).
fn training_weights_at(
    batch: &RecordBatch,
    name: &str,
    i: usize,
) -> Result<Option<Vec<f64>>, StageError> {
    let c = batch.column(i);
    if !(c.data_type().is_numeric() || c.data_type() == &DataType::Boolean) {
        return Err(StageError::data(format!(
            "the existing weight column `{name}` has type {}, not numbers",
            c.data_type()
        )));
    }
    let v = cast(c, &DataType::Float64)?;
    let v = v.as_primitive::<Float64Type>();
    Ok(Some(
        (0..v.len())
            .map(|r| if v.is_null(r) { 1.0 } else { v.value(r) })
            .collect(),
    ))
}

#[cfg(test)]
mod tests;
