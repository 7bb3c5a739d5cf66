//! Small tables and contexts for unit tests.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use gigo_pipeline::{NoProgress, Role, StageContext, Table, field_with_role};

/// A context for stage `id` with run seed `seed`, all directories under `dir`.
pub fn ctx(id: &str, seed: u64, dir: &Path) -> StageContext {
    StageContext::new(
        id,
        seed,
        dir.join("scratch"),
        dir.to_path_buf(),
        dir.join("run"),
        Arc::new(NoProgress),
    )
}

/// `n` rows: `id` (0..n), feature `x` (= id / 10), `label` (= id % classes).
pub fn labelled_table(n: usize, classes: i64) -> Table {
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("id", DataType::Int64, false), Role::Id),
        field_with_role(Field::new("x", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("label", DataType::Int64, false), Role::Label),
    ]));
    let ids: Vec<i64> = (0..n as i64).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 / 10.0).collect::<Vec<_>>(),
            )),
            Arc::new(Int64Array::from(
                ids.iter().map(|i| i % classes).collect::<Vec<_>>(),
            )),
        ],
    )
    .expect("test table");
    Table::from_batch(batch)
}

/// `n` rows of two classes a model can learn: `x` (numeric: class `b` is
/// shifted by 2), `colour` (text, mostly `red` for class `a`), `label`
/// (`a` / `b`), and an `id`.
pub fn two_classes(n: usize) -> Table {
    use arrow::array::StringArray;
    let schema = Arc::new(Schema::new(vec![
        field_with_role(Field::new("id", DataType::Int64, false), Role::Id),
        field_with_role(Field::new("x", DataType::Float64, true), Role::Feature),
        field_with_role(Field::new("colour", DataType::Utf8, true), Role::Feature),
        field_with_role(Field::new("label", DataType::Utf8, true), Role::Label),
    ]));
    let class = |i: usize| i % 2;
    let x: Vec<f64> = (0..n)
        .map(|i| 2.0 * class(i) as f64 + ((i * 7919) % 97) as f64 / 97.0 - 0.5)
        .collect();
    let colour: Vec<&str> = (0..n)
        .map(|i| match (class(i), i % 5) {
            (0, 0) => "blue",
            (0, _) => "red",
            (_, 0) => "red",
            _ => "blue",
        })
        .collect();
    let label: Vec<&str> = (0..n).map(|i| ["a", "b"][class(i)]).collect();
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from((0..n as i64).collect::<Vec<_>>())),
            Arc::new(Float64Array::from(x)),
            Arc::new(StringArray::from(colour)),
            Arc::new(StringArray::from(label)),
        ],
    )
    .expect("test table");
    Table::from_batch(batch)
}
