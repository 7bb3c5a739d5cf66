use super::*;
use crate::testing::ctx;
use arrow::array::Int64Array;
use gigo_pipeline::Artifact;

/// Two well separated clusters per class (3 classes) with 6 labels
/// flipped, an `is_flipped` truth column and an id column.
fn noisy_table() -> Table {
    let n = 300;
    let mut x0 = Vec::new();
    let mut x1 = Vec::new();
    let mut label = Vec::new();
    let mut flipped = Vec::new();
    let mut s = 5u64;
    let mut next = || {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (s >> 40) as f64 / (1u64 << 24) as f64 - 0.5
    };
    for i in 0..n {
        let c = (i % 3) as i64;
        x0.push(c as f64 * 4.0 + next());
        x1.push((c % 2) as f64 * 3.0 + next());
        let flip = i % 50 == 7;
        label.push(if flip { (c + 1) % 3 } else { c });
        flipped.push(flip);
    }
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("id", DataType::Int64, false), Role::Id),
        field_with_role(Field::new("x0", DataType::Float64, false), Role::Feature),
        field_with_role(Field::new("x1", DataType::Float64, false), Role::Feature),
        field_with_role(Field::new("label", DataType::Int64, false), Role::Label),
        field_with_role(
            Field::new("is_flipped", DataType::Boolean, false),
            Role::Truth,
        ),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(x0)),
            Arc::new(Float64Array::from(x1)),
            Arc::new(Int64Array::from(label)),
            Arc::new(BooleanArray::from(flipped)),
        ],
    )
    .unwrap();
    Table::from_batch(batch)
}

fn build(params: Value) -> Result<LabelNoise, Vec<ParamProblem>> {
    let params: LabelNoiseParams = serde_json::from_value(params).unwrap();
    let source = params.check(&Catalogue::classic())?;
    Ok(LabelNoise { params, source })
}

fn run(params: Value, table: Table, seed: u64) -> StageOutput {
    let stage = build(params).unwrap();
    let mut inputs = Inputs::default();
    inputs.push("table", table.into());
    let dir = tempfile::tempdir().unwrap();
    stage.run(&inputs, &ctx("noise", seed, dir.path())).unwrap()
}

fn table_of(out: &StageOutput, port: &str) -> RecordBatch {
    match out.ports[port].source() {
        Some(t) => t.load(1 << 16).unwrap().to_batch().unwrap(),
        None => panic!("not a table"),
    }
}

fn bools(b: &RecordBatch, c: &str) -> Vec<bool> {
    b.column_by_name(c)
        .unwrap()
        .as_boolean()
        .values()
        .iter()
        .collect()
}

fn ints(b: &RecordBatch, c: &str) -> Vec<i64> {
    b.column_by_name(c)
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .to_vec()
}

#[test]
fn flags_the_flipped_rows_and_scores_them_against_the_truth() {
    for (model, params) in [
        ("logistic_regression", json!({})),
        ("gradient_boosting", json!({})),
        // on two features `sqrt` searches one random feature a split: the
        // box a tree draws round the flipped row 157 can then take in row
        // 7, flipped the same way, and row 7 is ranked but not flagged
        // (the defaults: next test); searching both features is exact
        ("random_forest", json!({"max_features": "all"})),
        ("knn", json!({})),
    ] {
        let out = run(
            json!({"model": model, "model_params": params}),
            noisy_table(),
            1,
        );
        let b = table_of(&out, "table");
        assert_eq!(b.num_rows(), 300);
        let flags = bools(&b, "is_label_issue");
        let truth = bools(&b, "is_flipped");
        assert_eq!(flags, truth, "{model}");
        // suggested = the clean label for flipped rows
        let suggested = ints(&b, "suggested_label");
        assert_eq!(suggested[7], 1, "{model}");
        let quality = b
            .column_by_name("label_quality")
            .unwrap()
            .as_primitive::<Float64Type>();
        assert!(quality.value(7) < 0.5 && quality.value(8) > 0.5, "{model}");
        let m = &out.summary["report"]["metrics"];
        assert_eq!(m["label_issue_f1"], 1.0, "{model}");
        assert_eq!(m["label_issues"], 6);
        assert!((m["label_issue_rate"].as_f64().unwrap() - 0.02).abs() < 1e-12);
        // roles of the added columns
        let sch = b.schema();
        assert_eq!(
            role_of(sch.field_with_name("label_quality").unwrap()),
            Role::Added
        );
        assert_eq!(
            role_of(sch.field_with_name("suggested_label").unwrap()),
            Role::Added
        );
    }
}

#[test]
fn a_default_random_forest_ranks_the_flipped_rows_lowest() {
    let out = run(json!({"model": "random_forest"}), noisy_table(), 1);
    let b = table_of(&out, "table");
    let quality = b
        .column_by_name("label_quality")
        .unwrap()
        .as_primitive::<Float64Type>();
    let mut order: Vec<usize> = (0..300).collect();
    order.sort_by(|&i, &j| quality.value(i).total_cmp(&quality.value(j)));
    let mut lowest = order[..6].to_vec();
    lowest.sort_unstable();
    assert_eq!(lowest, [7, 57, 107, 157, 207, 257]);
    // at least 5 of the 6 are flagged, and nothing else
    let flags = bools(&b, "is_label_issue");
    let flagged: Vec<usize> = (0..300).filter(|&i| flags[i]).collect();
    assert!(flagged.len() >= 5, "{flagged:?}");
    assert!(flagged.iter().all(|i| lowest.contains(i)), "{flagged:?}");
}

#[test]
fn the_report_has_the_shared_blocks() {
    let out = run(json!({}), noisy_table(), 1);
    let blocks = out.summary["report"]["blocks"].as_array().unwrap();
    let kinds: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["bars", "heatmap", "table"]);
    let top = &blocks[2]["rows"];
    assert_eq!(top.as_array().unwrap().len(), 6);
    // the id column is shown, then given and suggested labels
    assert_eq!(blocks[2]["columns"][1], "id");
    assert_eq!(out.summary["report"]["kind"], "label_noise");
    assert_eq!(out.summary["classes"], json!(["0", "1", "2"]));
}

#[test]
fn drop_moves_flagged_rows_to_the_removed_port() {
    let out = run(json!({"action": "drop"}), noisy_table(), 1);
    let kept = table_of(&out, "table");
    let gone = table_of(&out, "removed");
    assert_eq!(kept.num_rows() + gone.num_rows(), 300);
    assert_eq!(gone.num_rows(), 6);
    assert!(bools(&gone, "is_flipped").iter().all(|&t| t));
    let reasons = gone
        .column_by_name(REASON_COLUMN)
        .unwrap()
        .as_string::<i32>();
    assert!(reasons.iter().all(|r| r == Some("label_issue")));
    assert!(!bools(&kept, "is_label_issue").iter().any(|&f| f));
}

#[test]
fn relabel_and_weight_actions() {
    let out = run(json!({"action": "relabel"}), noisy_table(), 1);
    let b = table_of(&out, "table");
    let clean: Vec<i64> = (0..300).map(|i| i % 3).collect();
    assert_eq!(ints(&b, "label"), clean);

    let out = run(
        json!({"action": "weight", "weight_column": "w"}),
        noisy_table(),
        1,
    );
    let b = table_of(&out, "table");
    let w = b.column_by_name("w").unwrap().as_primitive::<Float64Type>();
    let q = b
        .column_by_name("label_quality")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(w.values(), q.values());
    assert_eq!(
        role_of(b.schema().field_with_name("w").unwrap()),
        Role::Weight
    );
}

#[test]
fn pred_probs_columns_and_knn_consensus() {
    // probabilities that simply follow the clean label
    let t2 = with_prob_columns(|i, c| if i % 3 == c { 0.9 } else { 0.05 });
    let out = run(json!({"pred_probs": ["p0", "p1", "p2"]}), t2, 1);
    assert_eq!(out.summary["report"]["metrics"]["label_issue_f1"], 1.0);

    let out = run(json!({"knn_consensus": {"k": 5}}), noisy_table(), 1);
    assert_eq!(out.summary["report"]["metrics"]["label_issue_f1"], 1.0);
    assert_eq!(out.summary["probabilities"]["source"], "knn_consensus");
}

/// `noisy_table` with probability columns p0..p2: `p(row, class)`.
fn with_prob_columns(p: impl Fn(i64, i64) -> f64) -> Table {
    let b = noisy_table().to_batch().unwrap();
    let mut cols: Vec<ArrayRef> = b.columns().to_vec();
    let mut fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for c in 0..3i64 {
        let v: Vec<f64> = (0..300i64).map(|i| p(i, c)).collect();
        cols.push(Arc::new(Float64Array::from(v)));
        fields.push(Field::new(format!("p{c}"), DataType::Float64, false));
    }
    Table::from_batch(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).unwrap())
}

/// Probabilities that mostly follow the clean label, with ties (rounded
/// values, uniform rows) and misses.
fn with_pred_probs() -> Table {
    with_prob_columns(|i, c| match i % 11 {
        0 => 1.0,
        1 | 2 => 0.1 * ((i * 7 + c * 3) % 10) as f64,
        _ if i % 3 == c => 0.6 + 0.001 * (i % 97) as f64,
        _ => 0.2 + 0.001 * ((i + c) % 89) as f64,
    })
}

/// `stage` on `table` in memory (batches of 65,536 rows), then on its
/// stored copy (batches of 7 rows), under `budget` (else the default).
fn in_memory_and_stored(
    stage: &LabelNoise,
    table: &Table,
    stored: &Arc<gigo_pipeline::StoredTable>,
    dir: &std::path::Path,
    budget: Option<u64>,
) -> Vec<StageOutput> {
    [
        (Artifact::from(table.clone()), 65_536),
        (Artifact::Stored(stored.clone()), 7),
    ]
    .into_iter()
    .map(|(input, rows)| {
        let mut inputs = Inputs::default();
        inputs.push("table", input);
        let mut c = ctx("noise", 1, dir);
        c.batch_rows = rows;
        if let Some(b) = budget {
            c.memory_budget = b;
        }
        stage.run(&inputs, &c).unwrap()
    })
    .collect()
}

#[test]
fn pred_probs_filters_run_over_batches_with_the_in_memory_results() {
    let dir = tempfile::tempdir().unwrap();
    let table = with_pred_probs();
    let batch = table.to_batch().unwrap();
    // the in-memory computation, straight from gigo_ml
    let labels: Vec<u32> = batch
        .column_by_name("label")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .values()
        .iter()
        .map(|&l| l as u32)
        .collect();
    let probs = PredProbs::normalized(
        300,
        3,
        (0..300)
            .flat_map(|i| {
                (0..3).map(move |c| {
                    let col = format!("p{c}");
                    (i, col)
                })
            })
            .map(|(i, col)| {
                batch
                    .column_by_name(&col)
                    .unwrap()
                    .as_primitive::<Float64Type>()
                    .value(i)
            })
            .collect(),
    )
    .unwrap();
    // the same table stored, read back in batches of 7 rows
    let mut w = TableWriter::create(&dir.path().join("t.parquet"), table.schema().clone()).unwrap();
    w.write(&batch).unwrap();
    let stored = Arc::new(w.finish().unwrap());
    for (filter, name) in [
        (FilterBy::ConfidentLearning, "confident_learning"),
        (FilterBy::PredictedNeqGiven, "predicted_neq_given"),
        // the ranking filters hold every row's probabilities, not the table
        (FilterBy::PruneByNoiseRate, "prune_by_noise_rate"),
        (FilterBy::PruneByClass, "prune_by_class"),
        (FilterBy::Both, "both"),
        (FilterBy::LowSelfConfidence, "low_self_confidence"),
        (FilterBy::LowNormalizedMargin, "low_normalized_margin"),
    ] {
        let opts = FindOptions {
            filter_by: filter,
            ..FindOptions::default()
        };
        let want =
            confident::analyse(&labels, &probs, &opts, ScoreMethod::NormalizedMargin).unwrap();
        let params = json!({"pred_probs": ["p0", "p1", "p2"], "filter_by": name,
                            "score": "normalized_margin", "action": "drop"});
        let stage = build(params.clone()).unwrap();
        assert!(matches!(stage.memory(), Memory::Streams { .. }), "{name}");
        let outs = in_memory_and_stored(&stage, &table, &stored, dir.path(), None);
        let (a, b) = (&outs[0], &outs[1]);
        assert_eq!(table_of(a, "table"), table_of(b, "table"), "{name}");
        assert_eq!(table_of(a, "removed"), table_of(b, "removed"), "{name}");
        assert_eq!(a.summary, b.summary, "{name}");
        // what was dropped is what gigo_ml flags
        let gone = table_of(b, "removed");
        let ids: Vec<i64> = gone
            .column_by_name("id")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec();
        let flagged: Vec<i64> = (0..300).filter(|&i| want.is_issue[i as usize]).collect();
        assert!(!flagged.is_empty(), "{name}");
        assert_eq!(ids, flagged, "{name}");
        assert_eq!(table_of(b, "table").num_rows() + gone.num_rows(), 300);
        assert_eq!(
            b.summary["estimated_label_issues"],
            json!(want.estimates.estimated_issues)
        );
        assert_eq!(
            b.summary["confident_joint"],
            json!(
                want.estimates
                    .confident_joint
                    .counts
                    .chunks(3)
                    .map(<[i64]>::to_vec)
                    .collect::<Vec<_>>()
            )
        );
        let q: Vec<f64> = gone
            .column_by_name("label_quality")
            .unwrap()
            .as_primitive::<Float64Type>()
            .values()
            .to_vec();
        let want_q: Vec<f64> = flagged.iter().map(|&i| want.quality[i as usize]).collect();
        assert_eq!(q, want_q, "{name}");
        assert!(b.summary["report"]["metrics"]["label_issue_f1"].is_number());
    }
    // kNN consensus holds the table whole
    let stage = build(json!({"knn_consensus": {}})).unwrap();
    assert!(matches!(stage.memory(), Memory::Whole { .. }));
}

#[test]
fn same_seed_same_output() {
    for model in ["gradient_boosting", "random_forest"] {
        let a = run(json!({"model": model}), noisy_table(), 3);
        let b = run(json!({"model": model}), noisy_table(), 3);
        assert_eq!(table_of(&a, "table"), table_of(&b, "table"), "{model}");
        assert_eq!(a.summary["noise_matrix"], b.summary["noise_matrix"]);
    }
}

/// A stand-in catalogue model: logistic regression whose `c` comes
/// from the params; it records the last seed it was fitted with.
#[derive(Debug, Clone, Default, serde::Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Recorder {
    c: Option<f64>,
}

static SEED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl gigo_ml::Fit for Recorder {
    const NAME: &'static str = "recorder";
    const DOC: &'static str = "logistic regression that records its seed";
    type Fitted = gigo_ml::catalogue::Classic<gigo_ml::logistic::LogisticRegression>;

    fn check(&self) -> Result<(), gigo_ml::MlError> {
        match self.c {
            Some(c) if c > 0.0 => Ok(()),
            _ => Err(gigo_ml::MlError::param("c", "must be given and positive")),
        }
    }

    fn fit(&self, data: &TrainSet, seed: u64) -> Result<Self::Fitted, gigo_ml::MlError> {
        SEED.store(seed, std::sync::atomic::Ordering::SeqCst);
        gigo_ml::logistic::LogisticParams {
            c: self.c.unwrap_or(1.0),
            ..Default::default()
        }
        .fit(data, seed)
    }
}

#[test]
fn any_registered_model_is_cross_validated_with_the_stage_seed() {
    let errs = build(json!({"model": "mlp"})).err().unwrap();
    assert_eq!(errs[0].path, vec!["model"]);
    assert!(
        errs[0].message.contains("unknown model `mlp`")
            && errs[0].message.contains("`gradient_boosting`"),
        "{}",
        errs[0].message
    );

    let mut catalogue = Catalogue::classic();
    catalogue.register::<Recorder>();
    let params = |v: Value| serde_json::from_value::<LabelNoiseParams>(v).unwrap();
    let errs = params(json!({"model": "recorder", "model_params": {"c": "x"}}))
        .check(&catalogue)
        .err()
        .unwrap();
    assert_eq!(errs[0].path, vec!["model_params"]);
    let errs = params(json!({"model": "recorder", "model_params": {"c": -1.0}}))
        .check(&catalogue)
        .err()
        .unwrap();
    assert_eq!(errs[0].path, vec!["model_params", "c"]);
    let p = params(json!({"model": "recorder", "model_params": {"c": 1.0}}));
    let stage = LabelNoise {
        source: p.check(&catalogue).unwrap(),
        params: p,
    };
    let mut inputs = Inputs::default();
    inputs.push("table", noisy_table().into());
    let dir = tempfile::tempdir().unwrap();
    let c = ctx("noise", 5, dir.path());
    let out = stage.run(&inputs, &c).unwrap();
    assert_eq!(SEED.load(std::sync::atomic::Ordering::SeqCst), c.seed);
    let model = &out.summary["probabilities"]["model"];
    assert_eq!(model["model"], "recorder");
    assert_eq!(model["c"], 1.0);
    let truth = &out.summary["truth"];
    assert!(truth["recall"].as_f64().unwrap() > 0.5, "{truth}");
}

#[test]
fn params_are_checked_all_at_once() {
    let errs = build(json!({
        "folds": 1,
        "model_params": {"nope": 1},
        "weight_column": "",
    }))
    .err()
    .unwrap();
    let paths: Vec<String> = errs.iter().map(|e| e.path.join(".")).collect();
    assert!(paths.contains(&"folds".to_string()), "{paths:?}");
    assert!(paths.contains(&"model_params".to_string()), "{paths:?}");
    assert!(paths.contains(&"weight_column".to_string()), "{paths:?}");
    let errs = build(json!({"pred_probs": ["a"], "knn_consensus": {}}))
        .err()
        .unwrap();
    assert!(!errs.is_empty());
    assert!(
        build(json!({"model": "gradient_boosting", "model_params": {"learning_rate": -1}}))
            .is_err()
    );
    assert!(build(json!({"model": "knn", "model_params": {"k": 3}})).is_ok());
    assert!(build(json!({"model": "random_forest", "model_params": {"n_estimators": 0}})).is_err());
    assert!(
        build(json!({"model": "random_forest", "model_params": {"max_features": "half"}})).is_err()
    );
    assert!(
        build(json!({"model": "random_forest", "model_params": {"max_features": 0.5}})).is_ok()
    );
}

#[test]
fn the_registry_rejects_unknown_parameters_and_builds_known_ones() {
    let mut registry = Registry::new();
    register(&mut registry, &Catalogue::classic());
    let kind = registry.get(STAGE_TYPE).unwrap();
    let errs = kind.build(&json!({"modle": "knn"})).err().unwrap();
    assert_eq!(errs[0].path, vec!["modle"]);
    assert!(errs[0].help.as_deref().unwrap_or("").contains("model"));
    let stage = kind
        .build(&json!({"model": "knn", "action": "drop"}))
        .unwrap();
    let outs: Vec<String> = stage.outputs().into_iter().map(|p| p.name).collect();
    assert_eq!(outs, ["table", "removed"]);
}

#[test]
fn data_problems_are_clear_errors() {
    let stage = build(json!({"pred_probs": ["p0", "p1"]})).unwrap();
    let mut inputs = Inputs::default();
    inputs.push("table", noisy_table().into());
    let dir = tempfile::tempdir().unwrap();
    let e = stage
        .run(&inputs, &ctx("noise", 1, dir.path()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("3 classes"), "{e}");

    let stage = build(json!({"features": ["nope"]})).unwrap();
    let e = stage
        .run(&inputs, &ctx("noise", 1, dir.path()))
        .err()
        .unwrap();
    assert!(e.to_string().contains("`nope`"), "{e}");
}

#[test]
fn cross_validation_runs_on_a_stratified_sample_when_the_table_does_not_fit() {
    let table = noisy_table();
    let dir = tempfile::tempdir().unwrap();
    let mut w = TableWriter::create(&dir.path().join("t.parquet"), table.schema().clone()).unwrap();
    w.write(&table.to_batch().unwrap()).unwrap();
    let stored = Arc::new(w.finish().unwrap());
    let stage = build(json!({"filter_by": "confident_learning"})).unwrap();
    assert!(matches!(stage.memory(), Memory::Streams { .. }));
    let need = CV_MEMORY.need(table.memory_bytes(), 300).bytes;
    let run_with = |input: Artifact, budget: u64, rows: usize| {
        let mut inputs = Inputs::default();
        inputs.push("table", input);
        let mut c = ctx("noise", 1, dir.path());
        c.memory_budget = budget;
        c.batch_rows = rows;
        stage.run(&inputs, &c)
    };
    // The table fits: cross-validated whole, as with any budget.
    let whole = run_with(Artifact::from(table.clone()), need, 65_536).unwrap();
    assert!(whole.summary["probabilities"].get("sample").is_none());
    let roomy = run(json!({"filter_by": "confident_learning"}), table.clone(), 1);
    assert_eq!(table_of(&whole, "table"), table_of(&roomy, "table"));
    // Two thirds of what it needs: a third of the rows in half the budget,
    // the same whether the rows come in memory or stored, 7 at a time.
    let mut outs = Vec::new();
    for (input, rows) in [
        (Artifact::from(table.clone()), 65_536),
        (Artifact::Stored(stored.clone()), 7),
    ] {
        outs.push(run_with(input, need * 2 / 3, rows).unwrap());
    }
    let (a, b) = (&outs[0], &outs[1]);
    assert_eq!(table_of(a, "table"), table_of(b, "table"));
    assert_eq!(a.summary, b.summary);
    let sample = &a.summary["probabilities"]["sample"];
    assert_eq!(sample["of"], 300);
    assert_eq!(sample["rows"], 99, "33 of each class's 100 rows: {sample}");
    assert!(
        sample["why"].as_str().unwrap().contains("budget"),
        "{sample}"
    );
    // Every row is judged, and the flipped ones are found.
    let out = table_of(a, "table");
    assert_eq!(out.num_rows(), 300);
    assert_eq!(bools(&out, "is_label_issue"), bools(&out, "is_flipped"));
    let s = Section::from_summary(&a.summary).unwrap().unwrap();
    assert!(
        s.alerts
            .iter()
            .any(|x| x.kind == "sampled" && x.message.contains("99 of the 300"))
    );
    // The default filter ranks every row: the sample's model scores them,
    // every row's probabilities are held, and the flags are the same
    // whether the rows come in memory or stored, 7 at a time.
    let ranked = build(json!({})).unwrap();
    assert!(matches!(ranked.memory(), Memory::Streams { .. }));
    let outs = in_memory_and_stored(&ranked, &table, &stored, dir.path(), Some(need * 2 / 3));
    let (a, b) = (&outs[0], &outs[1]);
    assert_eq!(table_of(a, "table"), table_of(b, "table"));
    assert_eq!(a.summary, b.summary);
    assert_eq!(a.summary["probabilities"]["sample"]["rows"], 99);
    let out = table_of(a, "table");
    assert_eq!(out.num_rows(), 300);
    assert_eq!(bools(&out, "is_label_issue"), bools(&out, "is_flipped"));
    // A budget with no room for a few rows per class is a clear error.
    let e = run_with(Artifact::from(table), 1000, 65_536)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("--memory") && e.contains("300 rows"), "{e}");
}
