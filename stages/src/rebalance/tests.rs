//! Unit tests of `rebalance` on small hand-built tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use gigo_pipeline::summary::{Block, Section};
use gigo_pipeline::{Artifact, Inputs, Registry, Role, Stage, StageOutput, Table, field_with_role};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

use super::*;
use crate::testing::ctx;

/// Rows of (x, y, class): `id` (role id), features `x`, `y`, `label`,
/// `true_label` (role truth), `note` (no role).
fn table(points: &[(f64, f64, i64)]) -> Table {
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("id", DataType::Int64, false), Role::Id),
        field_with_role(Field::new("x", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("y", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("label", DataType::Int64, false), Role::Label),
        field_with_role(
            Field::new("true_label", DataType::Int64, false),
            Role::Truth,
        ),
        Field::new("note", DataType::Utf8, false),
    ]));
    let n = points.len() as i64;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from((0..n).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(
                points.iter().map(|p| p.0).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                points.iter().map(|p| p.1).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                points.iter().map(|p| p.2).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                points.iter().map(|p| p.2).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["n"; points.len()])),
        ],
    )
    .unwrap();
    Table::from_batch(batch)
}

/// `sizes[c]` random points of class c around (3c, c), seeded.
fn random_points(sizes: &[usize], seed: u64) -> Vec<(f64, f64, i64)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut pts = Vec::new();
    for (c, &n) in sizes.iter().enumerate() {
        for _ in 0..n {
            pts.push((
                3.0 * c as f64 + rng.random::<f64>() * 4.0,
                c as f64 + rng.random::<f64>() * 2.0,
                c as i64,
            ));
        }
    }
    // interleave the classes a little
    let mut order: Vec<usize> = (0..pts.len()).collect();
    order.sort_by_key(|&i| (i * 7919) % pts.len().max(1));
    order.into_iter().map(|i| pts[i]).collect()
}

fn stage(params: serde_json::Value) -> Rebalance {
    let p: RebalanceParams = serde_json::from_value(params).unwrap();
    Rebalance::new(p).unwrap()
}

fn run_on(params: serde_json::Value, t: &Table, seed: u64) -> Result<StageOutput, StageError> {
    let mut inputs = Inputs::default();
    inputs.push("table", t.clone().into());
    let dir = tempfile::tempdir().unwrap();
    // Streamed outputs are files in `dir`: read them before it goes.
    stage(params)
        .run(&inputs, &ctx("rebalance", seed, dir.path()))?
        .loaded()
}

fn run(params: serde_json::Value, t: &Table, seed: u64) -> StageOutput {
    run_on(params, t, seed).unwrap()
}

fn port(out: &StageOutput, name: &str) -> Table {
    match &out.ports[name] {
        Artifact::Table(t) => t.as_ref().clone(),
        _ => panic!("{name} is not a table"),
    }
}

fn column(t: &Table, name: &str) -> ArrayRef {
    let parts: Vec<ArrayRef> = t
        .batches()
        .iter()
        .map(|b| b.column_by_name(name).unwrap().clone())
        .collect();
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    if refs.is_empty() {
        let f = t.schema().field_with_name(name).unwrap();
        return arrow::array::new_empty_array(f.data_type());
    }
    concat(&refs).unwrap()
}

fn floats(t: &Table, name: &str) -> Vec<Option<f64>> {
    let a = cast(&column(t, name), &DataType::Float64).unwrap();
    a.as_primitive::<Float64Type>().iter().collect()
}

fn ints(t: &Table, name: &str) -> Vec<Option<i64>> {
    column(t, name).as_primitive::<Int64Type>().iter().collect()
}

fn flags(t: &Table) -> Vec<bool> {
    column(t, "is_synthetic")
        .as_boolean()
        .iter()
        .map(|v| v.unwrap())
        .collect()
}

fn class_counts(t: &Table) -> BTreeMap<i64, usize> {
    let mut m = BTreeMap::new();
    for l in ints(t, "label") {
        *m.entry(l.unwrap()).or_default() += 1;
    }
    m
}

/// Rows in + created = rows out + removed, as the executor checks.
fn assert_accounting(input: &Table, out: &StageOutput) {
    let created: usize = out.created.iter().map(|(_, n)| n).sum();
    assert_eq!(
        input.num_rows() + created,
        port(out, "table").num_rows() + port(out, "removed").num_rows()
    );
}

fn section(out: &StageOutput) -> Section {
    Section::from_summary(&out.summary).unwrap().unwrap()
}

/// Brute force: the k nearest same-class rows of row i (by distance, then index).
fn same_class_neighbours(pts: &[(f64, f64, i64)], i: usize, k: usize) -> Vec<usize> {
    let mut c: Vec<(f64, usize)> = pts
        .iter()
        .enumerate()
        .filter(|&(j, p)| j != i && p.2 == pts[i].2)
        .map(|(j, p)| ((p.0 - pts[i].0).powi(2) + (p.1 - pts[i].1).powi(2), j))
        .collect();
    c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    c.into_iter().take(k).map(|(_, j)| j).collect()
}

/// Whether `p` lies on the segment from `a` to `b` (up to rounding).
fn on_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> bool {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return (p.0 - a.0).abs() < 1e-9 && (p.1 - a.1).abs() < 1e-9;
    }
    let t = ((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2;
    let (qx, qy) = (a.0 + t * dx, a.1 + t * dy);
    (-1e-9..=1.0 + 1e-9).contains(&t) && (p.0 - qx).abs() < 1e-9 && (p.1 - qy).abs() < 1e-9
}

#[test]
fn smote_balances_marks_and_fills_non_feature_columns() {
    let pts = random_points(&[40, 10], 1);
    let t = table(&pts);
    let out = run(serde_json::json!({"method": "smote"}), &t, 7);
    let o = port(&out, "table");
    assert_eq!(class_counts(&o), BTreeMap::from([(0, 40), (1, 40)]));
    assert_eq!(out.created, vec![("smote".to_string(), 30)]);
    assert_accounting(&t, &out);
    let flags = flags(&o);
    // input rows first, unchanged and unflagged, then 30 synthetic rows
    assert!(flags[..50].iter().all(|f| !f) && flags[50..].iter().all(|&f| f));
    assert_eq!(&ints(&o, "id")[..50], &ints(&t, "id")[..]);
    assert!(ints(&o, "id")[50..].iter().all(Option::is_none));
    assert!(ints(&o, "true_label")[50..].iter().all(Option::is_none));
    let notes = column(&o, "note");
    assert_eq!(notes.null_count(), 30);
    assert!(ints(&o, "label")[50..].iter().all(|&l| l == Some(1)));
    // roles survive, the flag is an added column
    let schema = o.schema();
    assert_eq!(o.columns_with_role(Role::Added), vec!["is_synthetic"]);
    assert_eq!(o.columns_with_role(Role::Feature), vec!["x", "y"]);
    assert!(schema.field_with_name("id").unwrap().is_nullable());
    assert_eq!(port(&out, "removed").num_rows(), 0);
    // the report: before / after bars and a table
    let s = section(&out);
    assert_eq!(s.kind, "rebalance");
    assert_eq!(s.metrics["rows_added"], 30);
    assert_eq!(s.metrics["imbalance_ratio_before"], 4.0);
    assert_eq!(s.metrics["imbalance_ratio_after"], 1.0);
    let bars = s
        .blocks
        .iter()
        .find_map(|b| match b {
            Block::Bars { series, .. } => Some(series.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(bars[0].values, vec![Some(40.0), Some(10.0)]);
    assert_eq!(bars[1].values, vec![Some(40.0), Some(40.0)]);
}

#[test]
fn same_seed_same_rows_other_seed_other_rows_any_thread_count() {
    let t = table(&random_points(&[60, 15, 9], 2));
    for method in [
        "smote",
        "borderline_smote",
        "adasyn",
        "random_over",
        "random_under",
    ] {
        let p = serde_json::json!({ "method": method });
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let four = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap();
        let a = one.install(|| run(p.clone(), &t, 3));
        let b = four.install(|| run(p.clone(), &t, 3));
        let c = run(p.clone(), &t, 4);
        let xs = |o: &StageOutput| floats(&port(o, "table"), "x");
        assert_eq!(xs(&a), xs(&b), "{method}");
        assert_ne!(xs(&a), xs(&c), "{method}");
    }
}

#[test]
fn smote_keeps_integer_columns_integer_and_missing_stays_missing() {
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("n", DataType::Int64, true), Role::Feature),
        field_with_role(Field::new("x", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("label", DataType::Utf8, false), Role::Label),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![0, 10, 20, 30, 100, 110, 120, 130])),
            Arc::new(Float64Array::from(vec![
                Some(0.0),
                None,
                Some(2.0),
                Some(3.0),
                Some(0.0),
                Some(1.0),
                Some(2.0),
                Some(3.0),
            ])),
            Arc::new(StringArray::from(vec![
                "a", "a", "a", "a", "b", "b", "b", "b",
            ])),
        ],
    )
    .unwrap();
    let t = Table::from_batch(batch);
    let out = run(
        serde_json::json!({"method": "smote", "strategy": {"a": 40}, "k_neighbors": 1}),
        &t,
        1,
    );
    let o = port(&out, "table");
    assert_eq!(
        o.schema().field_with_name("n").unwrap().data_type(),
        &DataType::Int64
    );
    let n = ints(&o, "n");
    let x = floats(&o, "x");
    // row 1 (x missing) is a neighbour or a start of some synthetic rows:
    // those have x missing, the others not
    let mut missing = 0;
    for i in 8..o.num_rows() {
        assert!(n[i].unwrap() >= 0 && n[i].unwrap() <= 30);
        missing += usize::from(x[i].is_none());
    }
    assert!(missing > 0 && missing < 32, "{missing}");
}

#[test]
fn tomek_removes_the_majority_end_of_each_link() {
    // a: 0, 1, 2, 8   b: 2.4, 5, 6   -> link (2, 2.4); auto cleans all but
    // the minority (b, 3 rows), so only the row at 2 goes.
    let pts: Vec<(f64, f64, i64)> = [
        (0.0, 0),
        (1.0, 0),
        (2.0, 0),
        (8.0, 0),
        (2.4, 1),
        (5.0, 1),
        (6.0, 1),
    ]
    .iter()
    .map(|&(x, c)| (x, 0.0, c))
    .collect();
    let t = table(&pts);
    let out = run(serde_json::json!({"method": "tomek"}), &t, 1);
    let removed = port(&out, "removed");
    assert_eq!(ints(&removed, "id"), vec![Some(2)]);
    let reasons = column(&removed, "removed_reason");
    assert_eq!(reasons.as_string::<i32>().value(0), "tomek_link");
    assert_accounting(&t, &out);
    // strategy all: both ends go
    let out = run(
        serde_json::json!({"method": "tomek", "strategy": "all"}),
        &t,
        1,
    );
    assert_eq!(ints(&port(&out, "removed"), "id"), vec![Some(2), Some(4)]);
}

#[test]
fn enn_removes_rows_whose_neighbours_disagree() {
    // a b-row sitting among a-rows: with kind_sel all, the a-rows next to it
    // go (one of their 3 neighbours is b); with mode only rows whose
    // majority disagrees. b is the minority, so only a-rows are cleaned.
    let pts: Vec<(f64, f64, i64)> = [
        (0.0, 0),
        (1.0, 0),
        (2.0, 0),
        (3.0, 0),
        (4.0, 0),
        (10.0, 0),
        (11.0, 0),
        (2.5, 1),
        (20.0, 1),
        (21.0, 1),
    ]
    .iter()
    .map(|&(x, c)| (x, 0.0, c))
    .collect();
    let t = table(&pts);
    let out = run(serde_json::json!({"method": "enn"}), &t, 1);
    // neighbours (3): 0 -> 1,2,2.5 | 1 -> 0,2,2.5 | 2 -> 2.5,3,1 | 3 -> 2.5,4,2
    // 4 -> 3,2.5,2 | 10 -> 11,4,3 | 11 -> 10,4,3
    assert_eq!(
        ints(&port(&out, "removed"), "id"),
        vec![Some(0), Some(1), Some(2), Some(3), Some(4)]
    );
    let out = run(
        serde_json::json!({"method": "enn", "kind_sel": "mode"}),
        &t,
        1,
    );
    assert_eq!(port(&out, "removed").num_rows(), 0);
}

#[test]
fn near_miss_1_keeps_the_rows_nearest_the_minority() {
    // minority b at 0 and 1; a at 2, 3, 5, 9: NearMiss-1 with n_neighbors 2
    // keeps the two a-rows with the smallest summed distance to b: 2, 3.
    let pts: Vec<(f64, f64, i64)> = [(9.0, 0), (2.0, 0), (5.0, 0), (3.0, 0), (0.0, 1), (1.0, 1)]
        .iter()
        .map(|&(x, c)| (x, 0.0, c))
        .collect();
    let t = table(&pts);
    let out = run(
        serde_json::json!({"method": "near_miss", "n_neighbors": 2}),
        &t,
        1,
    );
    assert_eq!(
        ints(&port(&out, "table"), "id"),
        vec![Some(1), Some(3), Some(4), Some(5)]
    );
    let r = port(&out, "removed");
    assert_eq!(ints(&r, "id"), vec![Some(0), Some(2)]);
    // version 2 with n_neighbors 1: the farthest b-row (0) decides: 2, 3 again
    let out = run(
        serde_json::json!({"method": "near_miss", "version": 2, "n_neighbors": 1}),
        &t,
        1,
    );
    assert_eq!(ints(&port(&out, "removed"), "id"), vec![Some(0), Some(2)]);
    // version 3: pool = the 1 nearest a-row of each b-row = {2}; fewer than
    // the target: a warning, and only that row stays
    let out = run(
        serde_json::json!({"method": "near_miss", "version": 3, "n_neighbors_ver3": 1}),
        &t,
        1,
    );
    assert_eq!(
        ints(&port(&out, "table"), "id"),
        vec![Some(1), Some(4), Some(5)]
    );
    assert!(
        section(&out)
            .alerts
            .iter()
            .any(|a| a.kind == "near_miss_short")
    );
}

#[test]
fn smote_nc_votes_categories_and_never_one_hot_encodes() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let n = 60;
    let labels: Vec<i64> = (0..n).map(|i| i64::from(i % 5 == 0)).collect();
    // class 1 is always colour "red", class 0 "blue" or "green"
    let colours: Vec<&str> = (0..n)
        .map(|i| {
            if labels[i] == 1 {
                "red"
            } else if i % 2 == 0 {
                "blue"
            } else {
                "green"
            }
        })
        .collect();
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("x", DataType::Float64, false), Role::Feature),
        field_with_role(Field::new("colour", DataType::Utf8, false), Role::Feature),
        field_with_role(Field::new("label", DataType::Int64, false), Role::Label),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Float64Array::from(
                (0..n).map(|_| rng.random::<f64>()).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(colours)),
            Arc::new(Int64Array::from(labels)),
        ],
    )
    .unwrap();
    let t = Table::from_batch(batch);
    let out = run(serde_json::json!({"method": "smote_nc"}), &t, 2);
    let o = port(&out, "table");
    assert_eq!(class_counts(&o), BTreeMap::from([(0, 48), (1, 48)]));
    // same columns as the input (plus the flag): no one-hot columns
    assert_eq!(o.schema().fields().len(), schema.fields().len() + 1);
    let c = column(&o, "colour");
    let c = c.as_string::<i32>();
    assert!((n..o.num_rows()).all(|i| c.value(i) == "red"));
    // smote refuses the text column and points at smote_nc
    let e = run_on(serde_json::json!({"method": "smote"}), &t, 2).unwrap_err();
    assert!(
        e.to_string().contains("`colour`") && e.to_string().contains("smote_nc"),
        "{e}"
    );
}

#[test]
fn weighting_adds_a_weight_column_and_keeps_earlier_weights() {
    let t = table(&random_points(&[30, 10], 3));
    let out = run(serde_json::json!({"method": "balanced"}), &t, 1);
    let o = port(&out, "table");
    assert_eq!(o.num_rows(), 40);
    assert_eq!(o.columns_with_role(Role::Weight), vec!["sample_weight"]);
    let w = floats(&o, "sample_weight");
    let l = ints(&o, "label");
    for (w, l) in w.iter().zip(&l) {
        let expect = if *l == Some(0) {
            40.0 / 60.0
        } else {
            40.0 / 20.0
        };
        assert!((w.unwrap() - expect).abs() < 1e-12);
    }
    assert!((w.iter().map(|w| w.unwrap()).sum::<f64>() - 40.0).abs() < 1e-9);
    // chained: user weights multiply the balanced ones
    let out2 = run(
        serde_json::json!({"method": "class_weights", "class_weights": {"1": 3.0}}),
        &o,
        1,
    );
    let w2 = floats(&port(&out2, "table"), "sample_weight");
    for ((a, b), l) in w.iter().zip(&w2).zip(&l) {
        let f = if *l == Some(1) { 3.0 } else { 1.0 };
        assert!((a.unwrap() * f - b.unwrap()).abs() < 1e-12);
    }
    // an unknown class is named
    let e = run_on(
        serde_json::json!({"method": "class_weights", "class_weights": {"7": 3.0}}),
        &t,
        1,
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("class `7`") && e.to_string().contains("0, 1"),
        "{e}"
    );
}

#[test]
fn combined_methods_clean_synthetic_rows_too_and_account_for_them() {
    // two classes on the same square: plenty of links and disagreements
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let pts: Vec<(f64, f64, i64)> = (0..100)
        .map(|i| {
            (
                rng.random::<f64>(),
                rng.random::<f64>(),
                i64::from(i % 5 == 0),
            )
        })
        .collect();
    let t = table(&pts);
    for (method, reason) in [("smote_tomek", "tomek_link"), ("smote_enn", "enn")] {
        let out = run(serde_json::json!({ "method": method }), &t, 5);
        assert_eq!(out.created, vec![("smote".to_string(), 60)]);
        let kept = port(&out, "table");
        assert!(
            flags(&kept).iter().filter(|&&f| f).count() < 60,
            "{method} removed no synthetic row"
        );
        assert_accounting(&t, &out);
        let removed = port(&out, "removed");
        assert!(removed.num_rows() > 0, "{method}");
        let reasons = removed.value_counts("removed_reason").unwrap();
        assert_eq!(reasons, vec![(reason.to_string(), removed.num_rows())]);
        let s = section(&out);
        assert_eq!(s.metrics["rows_removed"], removed.num_rows());
    }
}

#[test]
fn params_are_checked_all_at_once() {
    let p: RebalanceParams = serde_json::from_value(serde_json::json!({
        "method": "smote", "version": 2, "beta": 0.5, "k_neighbors": 0, "strategy": "majority"
    }))
    .unwrap();
    let errs = p.check().unwrap_err();
    let paths: Vec<String> = errs.iter().map(|e| e.path.join(".")).collect();
    assert_eq!(
        paths,
        vec!["version", "beta", "k_neighbors", "strategy"],
        "{errs:?}"
    );
    assert!(errs[0].message.contains("near_miss"));
    // unknown parameters through the registry
    let mut r = Registry::new();
    register(&mut r);
    let errs = r
        .get("rebalance")
        .unwrap()
        .build(&serde_json::json!({"method": "smote", "k_neighbours": 3}))
        .err()
        .unwrap();
    assert!(errs[0].message.contains("unknown parameter `k_neighbours`"));
    assert_eq!(errs[0].help.as_deref(), Some("did you mean `k_neighbors`?"));
    let errs = r
        .get("rebalance")
        .unwrap()
        .build(&serde_json::json!({"method": "class_weights"}))
        .err()
        .unwrap();
    assert!(errs[0].message.contains("needs `class_weights"));
}

#[test]
fn data_errors_are_clear() {
    let t = table(&[(0.0, 0.0, 0), (1.0, 0.0, 0), (2.0, 0.0, 1)]);
    let e = run_on(serde_json::json!({"method": "smote"}), &t, 1).unwrap_err();
    assert!(e.to_string().contains("class `1` has 1 row"), "{e}");
    let e = run_on(
        serde_json::json!({"method": "random_over", "classes": [5]}),
        &t,
        1,
    )
    .unwrap_err();
    assert!(e.to_string().contains("`5`"), "{e}");
    let unlabelled = t.with_role("label", Role::Other).unwrap();
    let e = run_on(serde_json::json!({"method": "smote"}), &unlabelled, 1).unwrap_err();
    assert!(e.to_string().contains("no label column"), "{e}");
}

#[test]
fn random_over_copies_rows_but_not_ids() {
    let pts = random_points(&[12, 3], 6);
    let t = table(&pts);
    let out = run(serde_json::json!({"method": "random_over"}), &t, 1);
    let o = port(&out, "table");
    let (x, y, tl) = (floats(&o, "x"), floats(&o, "y"), ints(&o, "true_label"));
    for i in 15..o.num_rows() {
        assert!(
            pts.iter()
                .any(|p| Some(p.0) == x[i] && Some(p.1) == y[i] && p.2 == 1)
        );
        assert_eq!(tl[i], Some(1));
    }
    assert!(ints(&o, "id")[15..].iter().all(Option::is_none));
}

/// A strategy for the property tests, with the counts it should give.
fn expected_counts(counts: &[usize], kind: &str, strategy: &serde_json::Value) -> Vec<usize> {
    let maj = *counts.iter().max().unwrap();
    let min = *counts.iter().min().unwrap();
    match strategy {
        serde_json::Value::String(_) => counts
            .iter()
            .map(|_| match kind {
                "over" => maj,
                _ => min,
            })
            .collect(),
        serde_json::Value::Number(r) => {
            let r = r.as_f64().unwrap();
            counts
                .iter()
                .map(|&c| match kind {
                    "over" => c.max((r * maj as f64).floor() as usize),
                    _ => c.min((min as f64 / r).floor() as usize),
                })
                .collect()
        }
        serde_json::Value::Object(m) => counts
            .iter()
            .enumerate()
            .map(|(c, &n)| {
                m.get(&c.to_string())
                    .map_or(n, |v| v.as_u64().unwrap() as usize)
            })
            .collect(),
        _ => unreachable!(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    // Output class counts match the strategy exactly, and the set of labels
    // is preserved, for every sampler that has a target.
    #[test]
    fn counts_match_the_strategy(
        sizes in proptest::collection::vec(3usize..40, 2..4),
        which in 0usize..3,
        ratio in 0.3f64..1.0,
        seed in 0u64..1000,
        method in prop::sample::select(vec![
            ("random_over", "over"), ("smote", "over"), ("borderline_smote", "over"),
            ("adasyn", "over"), ("random_under", "under"), ("near_miss", "under"),
        ]),
    ) {
        let t = table(&random_points(&sizes, seed));
        let (name, kind) = method;
        let strategy = match which {
            0 => serde_json::json!("auto"),
            1 => serde_json::json!(ratio),
            _ => {
                // counts: grow (or shrink) class 1 halfway
                let c1 = sizes[1];
                let big = *sizes.iter().max().unwrap();
                let small = *sizes.iter().min().unwrap();
                let target = if kind == "over" { c1 + (big - c1) / 2 } else { small + (c1 - small) / 2 };
                serde_json::json!({ "1": target })
            }
        };
        let mut want = expected_counts(&sizes, kind, &strategy);
        if which == 0 {
            // auto leaves the majority (over) / minority (under) alone
            for (c, w) in want.iter_mut().enumerate() {
                let maj = strategy::majority(&sizes);
                let min = strategy::minority(&sizes);
                if (kind == "over" && c == maj) || (kind == "under" && c == min) {
                    *w = sizes[c];
                }
            }
        }
        let out = run(serde_json::json!({"method": name, "strategy": strategy}), &t, seed);
        let got = class_counts(&port(&out, "table"));
        let want: BTreeMap<i64, usize> = want.iter().enumerate().map(|(c, &n)| (c as i64, n)).collect();
        prop_assert_eq!(got, want);
        assert_accounting(&t, &out);
    }

    // Every SMOTE row lies on the segment between a row of its class and one
    // of that row's k nearest same-class neighbours.
    #[test]
    fn smote_rows_lie_between_a_row_and_a_near_neighbour(
        sizes in proptest::collection::vec(4usize..30, 2..4),
        k in 1usize..6,
        seed in 0u64..1000,
    ) {
        let pts = random_points(&sizes, seed);
        let t = table(&pts);
        let out = run(serde_json::json!({"method": "smote", "k_neighbors": k}), &t, seed);
        let o = port(&out, "table");
        let (x, y, l) = (floats(&o, "x"), floats(&o, "y"), ints(&o, "label"));
        for i in pts.len()..o.num_rows() {
            let p = (x[i].unwrap(), y[i].unwrap());
            let class = l[i].unwrap();
            let ok = (0..pts.len()).filter(|&j| pts[j].2 == class).any(|j| {
                same_class_neighbours(&pts, j, k)
                    .into_iter()
                    .any(|n| on_segment(p, (pts[j].0, pts[j].1), (pts[n].0, pts[n].1)))
            });
            prop_assert!(ok, "row {i} at {p:?} is on no segment");
        }
    }

    // Under-samplers and cleaners only remove rows: kept and removed rows
    // partition the input, unchanged.
    #[test]
    fn under_samplers_only_remove_rows(
        sizes in proptest::collection::vec(3usize..40, 2..4),
        seed in 0u64..1000,
        method in prop::sample::select(vec![
            serde_json::json!({"method": "random_under"}),
            serde_json::json!({"method": "tomek"}),
            serde_json::json!({"method": "enn"}),
            serde_json::json!({"method": "near_miss", "version": 1}),
            serde_json::json!({"method": "near_miss", "version": 2}),
            serde_json::json!({"method": "near_miss", "version": 3}),
        ]),
    ) {
        let pts = random_points(&sizes, seed);
        let t = table(&pts);
        let method_name = method["method"].as_str().unwrap().to_string();
        let out = run(method, &t, seed);
        let (kept, removed) = (port(&out, "table"), port(&out, "removed"));
        prop_assert!(out.created.is_empty());
        prop_assert!(!flags(&kept).iter().any(|&f| f));
        let mut ids: Vec<i64> = ints(&kept, "id").into_iter().chain(ints(&removed, "id")).map(Option::unwrap).collect();
        ids.sort_unstable();
        prop_assert_eq!(ids, (0..pts.len() as i64).collect::<Vec<_>>());
        let (x, kid) = (floats(&kept, "x"), ints(&kept, "id"));
        for (x, id) in x.iter().zip(&kid) {
            prop_assert_eq!(x.unwrap(), pts[id.unwrap() as usize].0);
        }
        // no label appears that was not there; samplers with a target keep
        // every class (cleaners may empty a class, as imbalanced-learn's)
        let kept_classes: Vec<i64> = class_counts(&kept).into_keys().collect();
        prop_assert!(kept_classes.iter().all(|&c| (c as usize) < sizes.len()));
        if method_name != "tomek" && method_name != "enn" {
            prop_assert_eq!(kept_classes.len(), sizes.len());
        }
    }
}

#[test]
fn booleans_in_labels_and_features_work() {
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("f", DataType::Boolean, false), Role::Feature),
        field_with_role(Field::new("x", DataType::Float64, false), Role::Feature),
        field_with_role(Field::new("label", DataType::Boolean, false), Role::Label),
    ]));
    let n = 20;
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(BooleanArray::from(
                (0..n).map(|i| i % 3 == 0).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                (0..n).map(|i| i as f64).collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                (0..n).map(|i| i % 4 == 0).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let t = Table::from_batch(batch);
    let out = run(
        serde_json::json!({"method": "smote", "classes": [true]}),
        &t,
        1,
    );
    let o = port(&out, "table");
    assert_eq!(o.num_rows(), 30);
    assert_eq!(
        o.schema().field_with_name("f").unwrap().data_type(),
        &DataType::Boolean
    );
}

#[test]
fn removed_rows_index_reports_positions_labels_and_ids_only() {
    // Two batches, so that positions continue across them.
    let pts = random_points(&[40, 9], 8);
    let one = table(&pts);
    let mut batches = Vec::new();
    for (start, len) in [(0, 20), (20, 29)] {
        batches.push(one.batches()[0].slice(start, len));
    }
    let t = Table::new(one.schema().clone(), batches).unwrap();
    for params in [
        serde_json::json!({"method": "random_under"}),
        serde_json::json!({"method": "smote_enn", "strategy": "auto"}),
    ] {
        let with = |mode: &str| {
            let mut p = params.clone();
            p["removed_rows"] = mode.into();
            run(p, &t, 3)
        };
        let (full, index) = (with("full"), with("index"));
        // the default: index for random_under, full for the others
        let default = port(&run(params.clone(), &t, 3), "removed");
        let expected = if params["method"] == "random_under" {
            &index
        } else {
            &full
        };
        assert_eq!(
            default.schema(),
            port(expected, "removed").schema(),
            "{params}"
        );
        // The kept rows and the counts do not depend on the mode.
        assert_eq!(
            ints(&port(&full, "table"), "id"),
            ints(&port(&index, "table"), "id")
        );
        assert_accounting(&t, &index);
        let (rf, ri) = (port(&full, "removed"), port(&index, "removed"));
        assert!(ri.num_rows() > 0, "{params}");
        let names: Vec<String> = ri
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(
            names,
            ["input_row", "id", "label", "is_synthetic", "removed_reason"],
            "{params}"
        );
        assert_eq!(ints(&rf, "id"), ints(&ri, "id"));
        assert_eq!(ints(&rf, "label"), ints(&ri, "label"));
        assert_eq!(flags(&rf), flags(&ri));
        assert_eq!(
            rf.value_counts("removed_reason").unwrap(),
            ri.value_counts("removed_reason").unwrap()
        );
        // `input_row` points at the removed row: for input rows, its `id`
        // is its position; for synthetic rows (ids null), past the input.
        let pos = column(&ri, "input_row");
        let pos: Vec<u64> = pos
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .values()
            .to_vec();
        assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
        for (p, id) in pos.iter().zip(ints(&ri, "id")) {
            match id {
                Some(id) => assert_eq!(*p, id as u64),
                None => assert!(*p >= t.num_rows() as u64),
            }
        }
    }
    // `input_row` taken already, and the option on a method that removes nothing
    let extra = Arc::new(Int64Array::from(vec![0i64; one.num_rows()])) as ArrayRef;
    let taken = Table::from_batch(
        gigo_pipeline::append_columns(
            &one.batches()[0],
            vec![(Field::new("input_row", DataType::Int64, false), extra)],
        )
        .unwrap(),
    );
    let e = run_on(serde_json::json!({"method": "random_under"}), &taken, 1).unwrap_err();
    assert!(e.to_string().contains("already has a column"), "{e}");
    let p: RebalanceParams =
        serde_json::from_value(serde_json::json!({"method": "smote", "removed_rows": "index"}))
            .unwrap();
    let errs = p.check().unwrap_err();
    assert_eq!(errs[0].path, vec!["removed_rows".to_string()]);
}

/// The streamed methods read a stored table in batches of 7 rows and give
/// what the whole-table algorithm gives on the table in memory, byte for
/// byte: the rows kept, the new rows, the removed rows and the report.
/// The table has missing values (the neighbour search imputes the mean of
/// every row, not of the rows gathered), an integer feature and a weight
/// column, and its classes are interleaved.
#[test]
fn streamed_methods_match_the_whole_table_algorithm_on_a_stored_table() {
    use gigo_pipeline::TableWriter;
    let n = 300usize;
    let class = |i: usize| match i % 10 {
        0 => 2,
        1 | 2 => 1,
        _ => 0,
    };
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("id", DataType::Int64, false), Role::Id),
        field_with_role(Field::new("x", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("k", DataType::Int64, true), Role::Feature),
        field_with_role(Field::new("w", DataType::Float64, true), Role::Weight),
        field_with_role(Field::new("label", DataType::Int64, false), Role::Label),
        Field::new("note", DataType::Utf8, false),
    ]));
    let x: Vec<Option<f64>> = (0..n)
        .map(|i| match i % 13 {
            0 => None,
            5 => Some(f64::NAN),
            _ => Some(class(i) as f64 + ((i * 7919) % 101) as f64 / 50.0),
        })
        .collect();
    let k: Vec<Option<i64>> = (0..n)
        .map(|i| (i % 17 != 3).then_some(((i * 31) % 9) as i64))
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(x)),
            Arc::new(Int64Array::from(k)),
            Arc::new(Float64Array::from(
                (0..n).map(|i| 0.5 + (i % 4) as f64).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                (0..n).map(|i| class(i) as i64).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(vec!["n"; n])),
        ],
    )
    .unwrap();
    let memory = Table::from_batch(batch.clone());
    let dir = tempfile::tempdir().unwrap();
    let mut w = TableWriter::create(&dir.path().join("t.parquet"), schema).unwrap();
    w.write(&batch).unwrap();
    let stored = Arc::new(w.finish().unwrap());
    let one = |t: Table| {
        let batches: Vec<RecordBatch> = t.batches().to_vec();
        arrow::compute::concat_batches(t.schema(), &batches).unwrap()
    };
    for params in [
        json_params("smote", serde_json::json!({})),
        json_params(
            "smote",
            serde_json::json!({"strategy": {"2": 100}, "k_neighbors": 3}),
        ),
        json_params("random_over", serde_json::json!({})),
        json_params("random_under", serde_json::json!({})),
        json_params("random_under", serde_json::json!({"removed_rows": "full"})),
        json_params("balanced", serde_json::json!({})),
        json_params("effective_number", serde_json::json!({"beta": 0.99})),
        json_params("tomek", serde_json::json!({})),
        json_params("tomek", serde_json::json!({"strategy": "all"})),
        json_params("enn", serde_json::json!({"n_neighbors": 3})),
        json_params(
            "enn",
            serde_json::json!({"kind_sel": "mode", "removed_rows": "index"}),
        ),
        json_params("near_miss", serde_json::json!({"version": 1})),
        json_params("near_miss", serde_json::json!({"version": 2})),
        json_params("near_miss", serde_json::json!({"version": 3})),
        json_params("borderline_smote", serde_json::json!({})),
        json_params(
            "borderline_smote",
            serde_json::json!({"borderline_kind": 2, "m_neighbors": 5}),
        ),
        json_params("adasyn", serde_json::json!({})),
        json_params("adasyn", serde_json::json!({"strategy": {"2": 120}})),
        json_params("smote_nc", serde_json::json!({"categorical": ["k"]})),
        json_params(
            "smote_nc",
            serde_json::json!({"categorical": ["k"], "strategy": {"2": 90}, "k_neighbors": 3}),
        ),
        json_params("smote_tomek", serde_json::json!({})),
        json_params("smote_enn", serde_json::json!({"k_neighbors": 3})),
        json_params(
            "smote_enn",
            serde_json::json!({"kind_sel": "mode", "removed_rows": "index"}),
        ),
    ] {
        let s = stage(params.clone());
        assert!(matches!(s.memory(), Memory::Streams { .. }), "{params}");
        let run = |input: Artifact, rows: usize, whole: bool| {
            let sub = tempfile::tempdir().unwrap();
            let mut c = ctx("rebalance", 4, sub.path());
            c.batch_rows = rows;
            let out = if whole {
                s.rebalance(&memory, &c)
            } else {
                let mut inputs = Inputs::default();
                inputs.push("table", input);
                s.run(&inputs, &c)
            };
            out.and_then(StageOutput::loaded).unwrap()
        };
        let weighting = matches!(s.params.method, Method::Balanced | Method::EffectiveNumber);
        // the reference: the whole-table algorithm (weighting has none:
        // the stream over the table in memory, as one batch)
        let want = run(Artifact::from(memory.clone()), 1 << 16, !weighting);
        let got = run(Artifact::Stored(stored.clone()), 7, false);
        for p in ["table", "removed"] {
            assert_eq!(one(port(&want, p)), one(port(&got, p)), "{params} {p}");
        }
        assert_eq!(want.summary, got.summary, "{params}");
        assert_eq!(want.created, got.created, "{params}");
        let out = one(port(&got, "table"));
        if weighting {
            assert!(out.column_by_name("sample_weight").is_some(), "{params}");
        } else {
            assert_ne!(out.num_rows(), n, "{params}: nothing resampled");
        }
    }
}

fn json_params(method: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut p = extra;
    p["method"] = serde_json::json!(method);
    p
}

/// 220 rows in two classes, and a context whose budget is 1000 bytes more
/// than what any streaming stage keeps for its batches.
fn tight_budget(dir: &std::path::Path) -> (Inputs, StageContext) {
    let mut inputs = Inputs::default();
    inputs.push("table", table(&random_points(&[200, 20], 1)).into());
    let mut c = ctx("rebalance", 1, dir);
    c.memory_budget = gigo_pipeline::budget::STREAM_FIXED + 1000;
    (inputs, c)
}

/// The cleaning methods hold the features of every row for their
/// neighbour search: when those do not fit the budget they say so before
/// reading them.
#[test]
fn cleaning_refuses_before_gathering_features_that_do_not_fit_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, mut c) = tight_budget(dir.path());
    for method in ["tomek", "enn", "near_miss"] {
        let s = stage(serde_json::json!({ "method": method }));
        let Err(err) = s.run(&inputs, &c) else {
            panic!("{method}: a budget of 64 MB and 1000 bytes was not refused");
        };
        let err = err.to_string();
        for part in [
            format!("`{method}` searches neighbours among the features of every row"),
            "the 220 rows' 2 feature columns".to_string(),
            "--memory".to_string(),
        ] {
            assert!(err.contains(&part), "{err}");
        }
    }
    c.memory_budget = 1 << 30;
    assert!(
        stage(serde_json::json!({"method": "tomek"}))
            .run(&inputs, &c)
            .is_ok()
    );
}

/// SMOTE over a stored table holds the rows of the classes it grows: when
/// they do not fit the budget it says so before reading them.
#[test]
fn smote_refuses_before_gathering_rows_that_do_not_fit_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let (inputs, mut c) = tight_budget(dir.path());
    let Err(err) = stage(serde_json::json!({"method": "smote"})).run(&inputs, &c) else {
        panic!("a budget of 64 MB and 1000 bytes was not refused");
    };
    let err = err.to_string();
    for part in [
        "`smote` holds the 21 rows",
        "180 new rows",
        "memory budget",
        "--memory",
    ] {
        assert!(err.contains(part), "{err}");
    }
    c.memory_budget = 1 << 30;
    assert!(
        stage(serde_json::json!({"method": "smote"}))
            .run(&inputs, &c)
            .is_ok()
    );
}
