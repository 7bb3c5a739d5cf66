//! The files `ingest` reads: a path or a glob resolved to files, and the
//! tables read from several files concatenated, columns matched by name and
//! their types unified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions, new_empty_array};
use arrow::compute::{can_cast_types, cast, concat_batches};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use gigo_pipeline::StageError;

use crate::error::DatasetError;

use super::column_names;

pub(super) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The files `pattern` names, sorted. A literal path must be a file; a glob
/// must match at least one file.
pub fn matched_files(pattern: &str, base_dir: &Path) -> Result<Vec<PathBuf>, DatasetError> {
    let as_path = Path::new(pattern);
    if !is_glob(pattern) {
        let path = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            base_dir.join(as_path)
        };
        if !path.is_file() {
            return Err(DatasetError::MissingFile {
                pattern: pattern.to_string(),
                exists: path.exists(),
                looked: path,
            });
        }
        return Ok(vec![path]);
    }
    let full = if as_path.is_absolute() {
        pattern.to_string()
    } else {
        let base = glob::Pattern::escape(&base_dir.to_string_lossy());
        format!("{base}/{pattern}")
    };
    let entries = glob::glob(&full).map_err(|e| DatasetError::Glob {
        pattern: pattern.to_string(),
        path: None,
        source: Box::new(e),
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| DatasetError::Glob {
            pattern: pattern.to_string(),
            path: Some(e.path().to_path_buf()),
            source: Box::new(std::io::Error::from(e)),
        })?;
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(DatasetError::NoMatch {
            pattern: pattern.to_string(),
            dir: base_dir.to_path_buf(),
        });
    }
    Ok(files)
}

/// How a file is named in messages: relative to the pipeline's directory
/// when inside it.
pub(super) fn shown(path: &Path, base_dir: &Path) -> String {
    path.strip_prefix(base_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The type a column takes when files disagree: integers widen to Int64,
/// numbers to Float64, anything else becomes text.
fn unify(column: &str, types: &[(&str, &DataType)]) -> Result<DataType, DatasetError> {
    let typed: Vec<&(&str, &DataType)> = types
        .iter()
        .filter(|(_, t)| **t != DataType::Null)
        .collect();
    let Some((_, first)) = typed.first() else {
        return Ok(DataType::Null);
    };
    if typed.iter().all(|(_, t)| t == first) {
        return Ok((*first).clone());
    }
    if typed.iter().all(|(_, t)| t.is_integer()) {
        return Ok(DataType::Int64);
    }
    if typed.iter().all(|(_, t)| t.is_integer() || t.is_floating()) {
        return Ok(DataType::Float64);
    }
    if let Some((file, t)) = typed
        .iter()
        .find(|(_, t)| !can_cast_types(t, &DataType::Utf8))
    {
        let (other, ot) = typed
            .iter()
            .find(|(_, o)| o != t)
            .map(|(f, o)| (*f, *o))
            .unwrap_or((file, t));
        return Err(DatasetError::IncompatibleTypes {
            column: column.to_string(),
            file: file.to_string(),
            ty: (*t).clone(),
            other: other.to_string(),
            other_ty: ot.clone(),
        });
    }
    Ok(DataType::Utf8)
}

/// Concatenates the files' batches, matching columns by name (in the first
/// file's order) and unifying types.
pub(super) fn concat_parts(parts: Vec<(String, RecordBatch)>) -> Result<RecordBatch, StageError> {
    let mut parts = parts;
    if parts.len() <= 1 {
        return parts
            .pop()
            .map(|(_, b)| b)
            .ok_or_else(|| StageError::internal("no file was read"));
    }
    let (first_file, first) = &parts[0];
    let names = column_names(first);
    for (file, batch) in &parts[1..] {
        let other = column_names(batch);
        let missing: Vec<&str> = names
            .iter()
            .filter(|n| !other.contains(n))
            .map(String::as_str)
            .collect();
        let extra: Vec<&str> = other
            .iter()
            .filter(|n| !names.contains(n))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(DatasetError::DifferentColumns {
                file: file.clone(),
                first: first_file.clone(),
                missing: missing.into_iter().map(String::from).collect(),
                extra: extra.into_iter().map(String::from).collect(),
            }
            .into());
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    for name in &names {
        let types: Vec<(&str, &DataType)> = parts
            .iter()
            .filter_map(|(f, b)| {
                Some((
                    f.as_str(),
                    b.schema_ref().field_with_name(name).ok()?.data_type(),
                ))
            })
            .collect();
        let ty = unify(name, &types)?;
        let nullable = parts.iter().any(|(_, b)| {
            b.schema_ref()
                .field_with_name(name)
                .map_or(true, |f| f.is_nullable())
        });
        fields.push(Field::new(name, ty, nullable));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let mut batches = Vec::with_capacity(parts.len());
    for (file, batch) in &parts {
        let mut columns = Vec::with_capacity(names.len());
        for field in schema.fields() {
            let col = batch
                .column_by_name(field.name())
                .cloned()
                .unwrap_or_else(|| new_empty_array(field.data_type()));
            let col = if col.data_type() == field.data_type() {
                col
            } else {
                cast(&col, field.data_type()).map_err(|source| DatasetError::NotCombinable {
                    file: file.clone(),
                    column: field.name().clone(),
                    ty: field.data_type().clone(),
                    source,
                })?
            };
            columns.push(col);
        }
        batches.push(RecordBatch::try_new_with_options(
            schema.clone(),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?);
    }
    Ok(concat_batches(&schema, &batches)?)
}
