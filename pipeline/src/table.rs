//! What travels on ports: tables (Arrow), models and summaries.

use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, RecordBatchOptions, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::StageError;
use crate::stream::{Source, StoredTable};

/// Field-metadata key under which a column's [`Role`] is recorded.
pub const ROLE_KEY: &str = "gigo:role";

/// Name of the column that says why a row was removed, on removed-row ports.
pub const REASON_COLUMN: &str = "removed_reason";

/// What a column is for. Recorded in the Arrow field metadata (`gigo:role`), so
/// it survives Parquet files and Arrow IPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// An input to models.
    Feature,
    /// The class label.
    Label,
    /// A per-row sample weight.
    Weight,
    /// A row identifier (never a feature).
    Id,
    /// Ground truth recorded by a generator (e.g. which labels were flipped);
    /// for scoring gigo itself, never a feature.
    Truth,
    /// A column that a gigo stage added (`is_duplicate`, `label_quality`, ...).
    Added,
    /// Carried along, not used by models.
    Other,
}

impl Role {
    /// The metadata value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Feature => "feature",
            Role::Label => "label",
            Role::Weight => "weight",
            Role::Id => "id",
            Role::Truth => "truth",
            Role::Added => "added",
            Role::Other => "other",
        }
    }

    /// Parses a metadata value.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "feature" => Role::Feature,
            "label" => Role::Label,
            "weight" => Role::Weight,
            "id" => Role::Id,
            "truth" => Role::Truth,
            "added" => Role::Added,
            "other" => Role::Other,
            _ => return None,
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field carrying `role` in its metadata.
pub fn field_with_role(mut field: Field, role: Role) -> Field {
    field.metadata_mut().insert(ROLE_KEY, role.as_str());
    field
}

/// `batch` with `columns` appended (fields and arrays), keeping the schema's
/// metadata and the row count (also for a batch without columns).
pub fn append_columns(
    batch: &RecordBatch,
    columns: Vec<(Field, ArrayRef)>,
) -> Result<RecordBatch, StageError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut arrays = batch.columns().to_vec();
    for (field, array) in columns {
        fields.push(field);
        arrays.push(array);
    }
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        batch.schema().metadata().clone(),
    ));
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(schema, arrays, &options)?)
}

/// Name of the probability column of class `c`.
pub fn prob_column(c: &str) -> String {
    format!("prob_{c}")
}

/// Name of the predicted-class column.
pub const PREDICTED: &str = "predicted";

/// `table` with one probability column per class (`prob_<class>`, from the
/// row-major `probs`, `classes.len()` per row) and the predicted class
/// (`predicted`, as text: the first most probable class), all with role
/// `added`. Columns of those names already present (an earlier model's)
/// are replaced.
pub fn with_predictions(
    table: &Table,
    probs: &[f32],
    classes: &[String],
) -> Result<Table, StageError> {
    let k = classes.len();
    let batch = table.to_batch()?;
    if probs.len() != batch.num_rows() * k {
        return Err(StageError::internal(format!(
            "{} probabilities for {} rows and {k} classes",
            probs.len(),
            batch.num_rows()
        )));
    }
    let names: Vec<String> = classes.iter().map(|c| prob_column(c)).collect();
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| {
            let n = schema.field(i).name();
            n != PREDICTED && !names.contains(n)
        })
        .collect();
    let batch = batch.project(&keep)?;
    let mut columns: Vec<(Field, ArrayRef)> = Vec::with_capacity(k + 1);
    for (j, name) in names.iter().enumerate() {
        let col: Vec<f64> = probs
            .iter()
            .skip(j)
            .step_by(k.max(1))
            .map(|&p| p as f64)
            .collect();
        columns.push((
            field_with_role(Field::new(name, DataType::Float64, false), Role::Added),
            Arc::new(arrow::array::Float64Array::from(col)),
        ));
    }
    let predicted: Vec<&str> = probs
        .chunks(k.max(1))
        .map(|row| {
            let mut best = 0;
            for (i, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = i;
                }
            }
            classes[best].as_str()
        })
        .collect();
    columns.push((
        field_with_role(Field::new(PREDICTED, DataType::Utf8, false), Role::Added),
        Arc::new(StringArray::from(predicted)),
    ));
    Ok(Table::from_batch(append_columns(&batch, columns)?))
}

/// The role recorded on a field; columns without one count as [`Role::Other`].
pub fn role_of(field: &Field) -> Role {
    field
        .metadata()
        .get(ROLE_KEY)
        .and_then(|r| Role::parse(r))
        .unwrap_or(Role::Other)
}

/// A table on a port: Arrow record batches sharing one schema.
///
/// Stages must not depend on where batch boundaries fall: the same table may
/// arrive in one batch or several (e.g. when read back from the cache).
#[derive(Debug, Clone)]
pub struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Table {
    /// A table of `batches`, all of which must have `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self, StageError> {
        for b in &batches {
            if b.schema().fields() != schema.fields() {
                return Err(StageError::internal(format!(
                    "record batch schema {:?} differs from the table schema {:?}",
                    b.schema(),
                    schema
                )));
            }
        }
        Ok(Table { schema, batches })
    }

    /// A table of one batch.
    pub fn from_batch(batch: RecordBatch) -> Self {
        Table {
            schema: batch.schema(),
            batches: vec![batch],
        }
    }

    /// An empty table with `schema`.
    pub fn empty(schema: SchemaRef) -> Self {
        Table {
            schema,
            batches: Vec::new(),
        }
    }

    /// The schema (with roles in field metadata).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The batches.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Total number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// Bytes its arrays take in memory.
    pub fn memory_bytes(&self) -> u64 {
        self.batches
            .iter()
            .map(|b| b.get_array_memory_size() as u64)
            .sum()
    }

    /// The table as one batch (concatenating if needed).
    pub fn to_batch(&self) -> Result<RecordBatch, StageError> {
        match self.batches.as_slice() {
            [one] => Ok(one.clone()),
            _ => arrow::compute::concat_batches(&self.schema, &self.batches)
                .map_err(|e| StageError::internal(format!("concatenating batches: {e}"))),
        }
    }

    /// Names of the columns with `role`, in schema order.
    pub fn columns_with_role(&self, role: Role) -> Vec<String> {
        self.schema
            .fields()
            .iter()
            .filter(|f| role_of(f) == role)
            .map(|f| f.name().clone())
            .collect()
    }

    /// The label column's name, or a clear error naming the stage's need.
    pub fn label_column(&self) -> Result<String, StageError> {
        let labels = self.columns_with_role(Role::Label);
        match labels.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(StageError::data(
                "the input table has no label column (set `label:` on the ingest stage, or `role: label` in its contract)",
            )),
            many => Err(StageError::data(format!(
                "the input table has several label columns: {}",
                many.join(", ")
            ))),
        }
    }

    /// A copy of this table whose schema gives `column` the role `role`.
    pub fn with_role(&self, column: &str, role: Role) -> Result<Table, StageError> {
        let fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == column {
                    field_with_role(f.as_ref().clone(), role)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        let batches = self
            .batches
            .iter()
            .map(|b| {
                RecordBatch::try_new(schema.clone(), b.columns().to_vec())
                    .map_err(|e| StageError::internal(format!("re-tagging roles: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Table { schema, batches })
    }

    /// Counts of the values in the string column `column` (e.g. removal reasons),
    /// sorted by reason.
    pub fn value_counts(&self, column: &str) -> Result<Vec<(String, usize)>, StageError> {
        count_values(self.batches.iter().cloned().map(Ok), column)
    }
}

/// Counts of the values in the string column `column` over `batches`, sorted
/// by value (a null counts as `(no reason)`).
pub fn count_values(
    batches: impl IntoIterator<Item = Result<RecordBatch, StageError>>,
    column: &str,
) -> Result<Vec<(String, usize)>, StageError> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for b in batches {
        let b = b?;
        let col = b
            .column_by_name(column)
            .ok_or_else(|| StageError::internal(format!("column `{column}` is missing")))?;
        let strings = col.as_any().downcast_ref::<StringArray>().ok_or_else(|| {
            StageError::internal(format!("column `{column}` is not a string column"))
        })?;
        for i in 0..strings.len() {
            let v = if strings.is_null(i) {
                "(no reason)"
            } else {
                strings.value(i)
            };
            match counts.get_mut(v) {
                Some(n) => *n += 1,
                None => {
                    counts.insert(v.to_string(), 1);
                }
            }
        }
    }
    Ok(counts.into_iter().collect())
}

/// A trained model as it travels on a model port: what it is, the exact
/// resolved configuration that made it, and its weights as bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The model family (e.g. `logistic_regression`, `mlp`).
    pub kind: String,
    /// Everything needed to rebuild it: hyper-parameters, feature names, classes.
    pub config: serde_json::Value,
    /// Serialised weights, in the family's own format.
    #[serde(skip)]
    pub weights: Vec<u8>,
}

/// The kind of thing a port carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortKind {
    /// An Arrow table.
    Table,
    /// A trained model.
    Model,
    /// A JSON summary for the report.
    Summary,
}

impl fmt::Display for PortKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortKind::Table => "table",
            PortKind::Model => "model",
            PortKind::Summary => "summary",
        })
    }
}

/// A value on a port.
#[derive(Debug, Clone)]
pub enum Artifact {
    /// A table in memory.
    Table(Arc<Table>),
    /// A table in the store, read in batches ([`crate::stream`]).
    Stored(Arc<StoredTable>),
    /// A model.
    Model(Arc<Model>),
    /// A summary.
    Summary(Arc<serde_json::Value>),
}

impl Artifact {
    /// The kind of this artifact.
    pub fn kind(&self) -> PortKind {
        match self {
            Artifact::Table(_) | Artifact::Stored(_) => PortKind::Table,
            Artifact::Model(_) => PortKind::Model,
            Artifact::Summary(_) => PortKind::Summary,
        }
    }

    /// Rows, for tables.
    pub fn num_rows(&self) -> Option<usize> {
        match self {
            Artifact::Table(t) => Some(t.num_rows()),
            Artifact::Stored(t) => Some(t.num_rows()),
            _ => None,
        }
    }

    /// The table, in memory or stored, for reading in batches.
    pub fn source(&self) -> Option<Source> {
        match self {
            Artifact::Table(t) => Some(Source::Memory(t.clone())),
            Artifact::Stored(t) => Some(Source::Stored(t.clone())),
            _ => None,
        }
    }
}

impl From<StoredTable> for Artifact {
    fn from(t: StoredTable) -> Self {
        Artifact::Stored(Arc::new(t))
    }
}

impl From<Source> for Artifact {
    fn from(s: Source) -> Self {
        match s {
            Source::Memory(t) => Artifact::Table(t),
            Source::Stored(t) => Artifact::Stored(t),
        }
    }
}

impl From<Table> for Artifact {
    fn from(t: Table) -> Self {
        Artifact::Table(Arc::new(t))
    }
}

impl From<Model> for Artifact {
    fn from(m: Model) -> Self {
        Artifact::Model(Arc::new(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::DataType;

    #[test]
    fn roles_survive_retagging_and_are_found() {
        let schema = Arc::new(Schema::new(vec![
            field_with_role(Field::new("x", DataType::Int64, false), Role::Feature),
            Field::new("y", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(Int64Array::from(vec![0, 1])),
            ],
        )
        .unwrap();
        let t = Table::from_batch(batch);
        assert!(t.label_column().is_err());
        let t = t.with_role("y", Role::Label).unwrap();
        assert_eq!(t.label_column().unwrap(), "y");
        assert_eq!(t.columns_with_role(Role::Feature), vec!["x"]);
        assert_eq!(t.num_rows(), 2);
    }
}
