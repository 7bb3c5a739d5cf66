//! List columns of numbers read as sequences: a `List` or `FixedSizeList`
//! column `x` of floats or integers (one series per row) becomes the wide
//! columns `x_t0 .. x_t{L-1}` that the sequence encoders read, each column
//! one channel. `L` is the longest list of any list column in the table, so
//! every channel has every step; a shorter (ragged) list, a null list and a
//! null item leave their steps null, which the encoders mask (see
//! `gigo-neural`'s `StepMask`). The summary counts what was padded.
//!
//! Widening needs `L` before the first row is written: a streamed table is
//! read once more for it, list columns only, unless every list column has a
//! fixed size (then the schema says it).

use std::cell::Cell;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Builder, RecordBatch, RecordBatchOptions};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use serde_json::{Value, json};

use crate::error::DatasetError;

/// The name of step `t` of list column `column`.
pub fn step_name(column: &str, t: usize) -> String {
    format!("{column}_t{t}")
}

/// The fixed size of a list of numbers (what is read as a sequence):
/// `Some(None)` for a list of any length, `None` for another type.
fn list_size(data_type: &DataType) -> Option<Option<usize>> {
    match data_type {
        DataType::List(f) | DataType::LargeList(f) if f.data_type().is_numeric() => Some(None),
        DataType::FixedSizeList(f, n) if f.data_type().is_numeric() => Some(Some(*n as usize)),
        _ => None,
    }
}

/// The list columns of a table and the length they are widened to.
#[derive(Debug)]
pub(super) struct Lists {
    /// The list columns, in the table's order, each with its fixed size if
    /// it has one.
    columns: Vec<(String, Option<usize>)>,
    /// The longest list seen.
    length: usize,
    /// The shortest non-null list seen.
    shortest: Option<usize>,
    /// Rows with at least one list shorter than `length` (or null).
    padded_rows: Cell<usize>,
    /// Steps with no value (after the list's end, a null list or item).
    null_steps: Cell<usize>,
}

impl Lists {
    /// The list columns of `schema`, or `None` when it has none.
    pub(super) fn of(schema: &Schema) -> Option<Lists> {
        let columns: Vec<(String, Option<usize>)> = schema
            .fields()
            .iter()
            .filter_map(|f| Some((f.name().clone(), list_size(f.data_type())?)))
            .collect();
        Lists::from_columns(columns)
    }

    fn from_columns(columns: Vec<(String, Option<usize>)>) -> Option<Lists> {
        (!columns.is_empty()).then(|| Lists {
            length: columns.iter().filter_map(|c| c.1).max().unwrap_or(0),
            columns,
            shortest: None,
            padded_rows: Cell::new(0),
            null_steps: Cell::new(0),
        })
    }

    /// Without the columns in `dropped`; `None` when no list column is left.
    pub(super) fn without(self, dropped: &[String]) -> Option<Lists> {
        let mut columns = self.columns;
        columns.retain(|(c, _)| !dropped.contains(c));
        Lists::from_columns(columns)
    }

    fn is_list(&self, name: &str) -> bool {
        self.columns.iter().any(|(c, _)| c == name)
    }

    /// Whether the length is known without reading the rows.
    pub(super) fn known(&self) -> bool {
        self.columns.iter().all(|(_, size)| size.is_some())
    }

    /// Takes in the list lengths of one batch (from the offsets alone).
    pub(super) fn observe(&mut self, batch: &RecordBatch) {
        for (name, _) in &self.columns {
            let Some(col) = batch.column_by_name(name) else {
                continue;
            };
            let lengths: Vec<usize> = match col.data_type() {
                DataType::List(_) => col.as_list::<i32>().offsets().lengths().collect(),
                DataType::LargeList(_) => col.as_list::<i64>().offsets().lengths().collect(),
                DataType::FixedSizeList(_, n) => vec![*n as usize; col.len()],
                _ => continue,
            };
            for (i, len) in lengths.into_iter().enumerate() {
                if col.is_valid(i) {
                    self.length = self.length.max(len);
                    self.shortest = Some(self.shortest.map_or(len, |s| s.min(len)));
                }
            }
        }
    }

    /// The column a widened column came from (`x` for `x_t3`).
    pub(super) fn origin<'a>(&'a self, name: &str) -> Option<&'a str> {
        self.columns.iter().map(|(c, _)| c.as_str()).find(|c| {
            name.strip_prefix(c)
                .and_then(|r| r.strip_prefix("_t"))
                .is_some_and(|t| t.parse::<usize>().is_ok_and(|t| t < self.length))
        })
    }

    /// `batch` with each list column replaced, where it stood, by its
    /// `length` step columns (Float64; null past the list's end). `file`
    /// names the file in errors.
    pub(super) fn widen(
        &self,
        file: &str,
        batch: RecordBatch,
    ) -> Result<RecordBatch, DatasetError> {
        let schema = batch.schema();
        let rows = batch.num_rows();
        let mut fields: Vec<Field> = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        let mut short = vec![false; rows];
        for (field, col) in schema.fields().iter().zip(batch.columns()) {
            if !self.is_list(field.name()) {
                fields.push(field.as_ref().clone());
                arrays.push(col.clone());
                continue;
            }
            let list = as_list(field.name(), col)?;
            let values = list
                .values()
                .as_primitive::<arrow::datatypes::Float64Type>();
            let offsets = list.offsets();
            let mut steps: Vec<Float64Builder> = (0..self.length)
                .map(|_| Float64Builder::with_capacity(rows))
                .collect();
            let mut nulls = 0;
            for (i, s) in short.iter_mut().enumerate() {
                let start = offsets[i] as usize;
                let len = if list.is_valid(i) {
                    offsets[i + 1] as usize - start
                } else {
                    0
                };
                if len > self.length {
                    return Err(DatasetError::ColumnConflict {
                        file: file.to_string(),
                        column: field.name().clone(),
                        problem: format!(
                            "holds a list of {len} values in row {i} of a batch, longer than the \
                             {} steps the table's lists were measured at",
                            self.length
                        ),
                    });
                }
                for (t, b) in steps.iter_mut().enumerate() {
                    let v =
                        (t < len && values.is_valid(start + t)).then(|| values.value(start + t));
                    nulls += usize::from(v.is_none());
                    b.append_option(v);
                }
                *s |= len < self.length;
            }
            self.null_steps.set(self.null_steps.get() + nulls);
            for (t, mut b) in steps.into_iter().enumerate() {
                let name = step_name(field.name(), t);
                if schema.field_with_name(&name).is_ok() {
                    return Err(DatasetError::ColumnConflict {
                        file: file.to_string(),
                        column: name,
                        problem: format!(
                            "is also the name of step {t} of list column `{}`: rename one",
                            field.name()
                        ),
                    });
                }
                fields.push(Field::new(name, DataType::Float64, true));
                arrays.push(Arc::new(b.finish()));
            }
        }
        self.padded_rows
            .set(self.padded_rows.get() + short.iter().filter(|s| **s).count());
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options).map_err(
            |source| DatasetError::Internal {
                what: "widening list columns".into(),
                source,
            },
        )
    }

    /// The summary entry: the columns, the length, what was padded.
    pub(super) fn summary(&self) -> Value {
        json!({
            "columns": self.columns.iter().map(|(c, _)| c).collect::<Vec<_>>(),
            "length": self.length,
            "shortest": self.shortest.unwrap_or(self.length),
            "padded_rows": self.padded_rows.get(),
            "null_steps": self.null_steps.get(),
        })
    }

    /// What the log says.
    pub(super) fn message(&self) -> String {
        let mut m = format!(
            "list column(s) {} read as {} step column(s) each (`{}_t0` ..)",
            self.columns
                .iter()
                .map(|(c, _)| format!("`{c}`"))
                .collect::<Vec<_>>()
                .join(", "),
            self.length,
            self.columns[0].0
        );
        if self.padded_rows.get() > 0 {
            m.push_str(&format!(
                "; {} row(s) hold a shorter or null list: {} step(s) are null and masked by the \
                 sequence encoders",
                self.padded_rows.get(),
                self.null_steps.get()
            ));
        } else if self.null_steps.get() > 0 {
            m.push_str(&format!(
                "; {} null item(s) are null steps",
                self.null_steps.get()
            ));
        }
        m
    }
}

/// A list column as a `List<Float64>` (a fixed-size one cast too).
fn as_list(name: &str, col: &ArrayRef) -> Result<arrow::array::ListArray, DatasetError> {
    let target = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
    let cast = cast(col, &target).map_err(|source| DatasetError::Internal {
        what: format!("reading list column `{name}` as floats"),
        source,
    })?;
    Ok(cast.as_list::<i32>().clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{FixedSizeListArray, Float64Array, Int64Array, ListArray};
    use arrow::datatypes::{Float32Type, Int64Type};

    fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(cols).unwrap()
    }

    fn floats(b: &RecordBatch, name: &str) -> Vec<Option<f64>> {
        let c = b.column_by_name(name).unwrap();
        let c = c.as_any().downcast_ref::<Float64Array>().unwrap();
        c.iter().collect()
    }

    #[test]
    fn ragged_lists_widen_to_the_longest_with_null_steps_counted() {
        let x = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), Some(2), Some(3)]),
            Some(vec![Some(4)]),
            None,
            Some(vec![Some(5), None, Some(6)]),
        ]);
        let b = batch(vec![
            (
                "id",
                Arc::new(Int64Array::from(vec![0, 1, 2, 3])) as ArrayRef,
            ),
            ("x", Arc::new(x)),
        ]);
        let mut lists = Lists::of(&b.schema()).unwrap();
        assert!(!lists.known());
        lists.observe(&b);
        let w = lists.widen("f.parquet", b).unwrap();
        let names: Vec<String> = w
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names, ["id", "x_t0", "x_t1", "x_t2"]);
        assert_eq!(floats(&w, "x_t0"), [Some(1.0), Some(4.0), None, Some(5.0)]);
        assert_eq!(floats(&w, "x_t1"), [Some(2.0), None, None, None]);
        assert_eq!(floats(&w, "x_t2"), [Some(3.0), None, None, Some(6.0)]);
        let s = lists.summary();
        assert_eq!(s["length"], 3);
        assert_eq!(s["shortest"], 1);
        assert_eq!(s["padded_rows"], 2, "the short list and the null one");
        assert_eq!(s["null_steps"], 2 + 3 + 1);
        assert_eq!(lists.origin("x_t2"), Some("x"));
        assert_eq!(lists.origin("x_t3"), None);
        assert_eq!(lists.origin("id"), None);
    }

    #[test]
    fn fixed_size_lists_are_known_from_the_schema_and_channels_share_the_length() {
        let a = FixedSizeListArray::from_iter_primitive::<Float32Type, _, _>(
            vec![
                Some(vec![Some(0.5), Some(1.5)]),
                Some(vec![Some(2.5), Some(3.5)]),
            ],
            2,
        );
        let b3 = ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
            Some(vec![Some(1.0), Some(2.0), Some(3.0)]),
            Some(vec![Some(4.0), Some(5.0), Some(6.0)]),
        ]);
        let fixed = batch(vec![("a", Arc::new(a.clone()) as ArrayRef)]);
        let l = Lists::of(&fixed.schema()).unwrap();
        assert!(l.known());
        assert_eq!(l.length, 2);
        let both = batch(vec![("a", Arc::new(a) as ArrayRef), ("b", Arc::new(b3))]);
        let mut l = Lists::of(&both.schema()).unwrap();
        l.observe(&both);
        let w = l.widen("f", both).unwrap();
        assert_eq!(w.num_columns(), 6, "both channels are 3 steps long");
        assert_eq!(floats(&w, "a_t1"), [Some(1.5), Some(3.5)]);
        assert_eq!(
            floats(&w, "a_t2"),
            [None, None],
            "the shorter channel is padded"
        );
        assert_eq!(floats(&w, "b_t2"), [Some(3.0), Some(6.0)]);
        assert_eq!(l.summary()["padded_rows"], 2);
    }

    #[test]
    fn a_name_taken_by_a_step_and_a_list_longer_than_measured_are_errors() {
        let x = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1)])]);
        let clash = batch(vec![
            ("x", Arc::new(x.clone()) as ArrayRef),
            ("x_t0", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
        ]);
        let mut l = Lists::of(&clash.schema()).unwrap();
        l.observe(&clash);
        let e = l.widen("d.parquet", clash).unwrap_err().to_string();
        assert!(
            e.contains("d.parquet") && e.contains("`x_t0`") && e.contains("list column `x`"),
            "{e}"
        );
        let only = batch(vec![("x", Arc::new(x) as ArrayRef)]);
        let l = Lists::of(&only.schema()).unwrap();
        let e = l.widen("d.parquet", only).unwrap_err().to_string();
        assert!(e.contains("`x`") && e.contains("list of 1 values"), "{e}");
    }

    #[test]
    fn lists_of_text_are_not_sequences() {
        let s = Schema::new(vec![Field::new(
            "tags",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
            true,
        )]);
        assert!(Lists::of(&s).is_none());
    }
}
