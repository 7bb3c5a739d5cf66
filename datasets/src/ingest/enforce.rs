//! Contract enforcement on a table as read: columns cast to the contract's
//! types, rows that break its rules quarantined with the reasons, malformed
//! lines joined to the quarantine, and column roles set.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray,
};
use arrow::compute::{can_cast_types, cast, concat_batches, filter_record_batch, not};
use arrow::datatypes::{DataType, Field, Schema};

use gigo_pipeline::{REASON_COLUMN, Role, StageError, append_columns, field_with_role};

use super::bad_lines::{self, BadLine, bad_line_fields};
use super::column_names;
use crate::contract::{Allowed, Bound, ColumnRule, ColumnType, Contract, ExtraColumns};
use crate::error::{DatasetError, WantedBy};

/// One file's rows, split by the contract.
pub(super) struct Split {
    pub(super) kept: RecordBatch,
    pub(super) quarantined: RecordBatch,
    pub(super) violations: BTreeMap<String, usize>,
}

fn with_reason(batch: &RecordBatch, reasons: Vec<String>) -> Result<RecordBatch, StageError> {
    append_columns(
        batch,
        vec![(
            Field::new(REASON_COLUMN, DataType::Utf8, false),
            Arc::new(StringArray::from(reasons)),
        )],
    )
}

/// Casts and checks the columns the contract names; rows with a violation
/// go to the quarantine (as read, with the reasons).
pub(super) fn apply_contract(
    shown: &str,
    raw: RecordBatch,
    contract: Option<&Contract>,
    label: Option<&str>,
) -> Result<Split, StageError> {
    let Some(contract) = contract else {
        let quarantined = with_reason(&raw.slice(0, 0), Vec::new())?;
        return Ok(Split {
            kept: raw,
            quarantined,
            violations: BTreeMap::new(),
        });
    };
    let names = column_names(&raw);
    let missing: Vec<&str> = contract
        .columns
        .iter()
        .map(|c| c.name.as_str())
        .filter(|c| !names.iter().any(|n| n == c))
        .collect();
    if !missing.is_empty() {
        return Err(DatasetError::MissingColumn {
            file: shown.to_string(),
            wanted: missing.iter().map(|m| m.to_string()).collect(),
            by: WantedBy::Contract(contract.file.clone()),
            columns: names,
        }
        .into());
    }
    let extra: Vec<&String> = names
        .iter()
        .filter(|n| contract.column(n).is_none() && Some(n.as_str()) != label)
        .collect();
    let raw = match (contract.extra_columns, extra.is_empty()) {
        (_, true) | (ExtraColumns::Allow, _) => raw,
        (ExtraColumns::Error, false) => {
            return Err(DatasetError::ExtraColumns {
                file: shown.to_string(),
                contract: contract.file.clone(),
                columns: extra.into_iter().cloned().collect(),
            }
            .into());
        }
        (ExtraColumns::Drop, false) => {
            let keep: Vec<usize> = names
                .iter()
                .enumerate()
                .filter(|(_, n)| !extra.contains(n))
                .map(|(i, _)| i)
                .collect();
            raw.project(&keep)?
        }
    };

    let n = raw.num_rows();
    let mut reasons: Vec<Option<String>> = vec![None; n];
    let mut violations = BTreeMap::new();
    let mut fields = Vec::with_capacity(raw.num_columns());
    let mut columns = Vec::with_capacity(raw.num_columns());
    for (field, array) in raw.schema().fields().iter().zip(raw.columns()) {
        match contract.column(field.name()) {
            None => {
                fields.push(field.as_ref().clone());
                columns.push(array.clone());
            }
            Some(rule) => {
                let checked = check_column(shown, contract, rule, array, |i, reason| {
                    *violations.entry(reason.to_string()).or_insert(0usize) += 1;
                    match &mut reasons[i] {
                        None => reasons[i] = Some(reason.to_string()),
                        Some(s) => {
                            s.push_str("; ");
                            s.push_str(reason);
                        }
                    }
                })?;
                fields.push(Field::new(field.name(), checked.data_type().clone(), true));
                columns.push(checked);
            }
        }
    }
    let checked = RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?;
    let keep = BooleanArray::from(reasons.iter().map(Option::is_none).collect::<Vec<_>>());
    let kept = filter_record_batch(&checked, &keep)?;
    let removed = filter_record_batch(&raw, &not(&keep)?)?;
    let quarantined = with_reason(&removed, reasons.into_iter().flatten().collect())?;
    Ok(Split {
        kept,
        quarantined,
        violations,
    })
}

/// Casts `array` to the rule's type (non-strict: values that do not convert
/// become null) and reports each row's violations through `violate`.
fn check_column(
    shown: &str,
    contract: &Contract,
    rule: &ColumnRule,
    array: &ArrayRef,
    mut violate: impl FnMut(usize, &str),
) -> Result<ArrayRef, StageError> {
    let name = &rule.name;
    let cast = convert(array, rule.ty).ok_or_else(|| DatasetError::Uncastable {
        file: shown.to_string(),
        column: name.clone(),
        found: array.data_type().clone(),
        expected: rule.ty,
        contract: contract.file.clone(),
    })?;
    let before = array.logical_nulls();
    let after = cast.logical_nulls();
    let not_type = format!("{name}: not {}", rule.ty.with_article());
    let null = format!("{name}: missing but not nullable");
    let below = rule.min.map(|m| format!("{name}: below min {m}"));
    let above = rule.max.map(|m| format!("{name}: above max {m}"));
    let nan = format!("{name}: NaN outside min/max");
    let not_allowed = format!("{name}: not an allowed value");
    let ints = cast.as_any().downcast_ref::<Int64Array>();
    let floats = cast.as_any().downcast_ref::<Float64Array>();
    let strings = cast.as_any().downcast_ref::<StringArray>();
    let bools = cast.as_any().downcast_ref::<BooleanArray>();
    for i in 0..cast.len() {
        let was = before.as_ref().is_none_or(|n| n.is_valid(i));
        let is = after.as_ref().is_none_or(|n| n.is_valid(i));
        if !is {
            if was {
                violate(i, &not_type);
            } else if !rule.nullable {
                violate(i, &null);
            }
            continue;
        }
        if let Some(a) = ints {
            let v = a.value(i);
            if let (Some(m), Some(r)) = (rule.min, &below) {
                let low = match m {
                    Bound::Int(m) => v < m,
                    Bound::Float(m) => (v as f64) < m,
                };
                if low {
                    violate(i, r);
                }
            }
            if let (Some(m), Some(r)) = (rule.max, &above) {
                let high = match m {
                    Bound::Int(m) => v > m,
                    Bound::Float(m) => (v as f64) > m,
                };
                if high {
                    violate(i, r);
                }
            }
            if let Some(Allowed::Ints(set)) = &rule.allowed
                && !set.contains(&v)
            {
                violate(i, &not_allowed);
            }
        } else if let Some(a) = floats {
            let v = a.value(i);
            if v.is_nan() && (rule.min.is_some() || rule.max.is_some()) {
                violate(i, &nan);
            } else {
                if let (Some(m), Some(r)) = (rule.min, &below)
                    && v < m.as_f64()
                {
                    violate(i, r);
                }
                if let (Some(m), Some(r)) = (rule.max, &above)
                    && v > m.as_f64()
                {
                    violate(i, r);
                }
            }
            if let Some(Allowed::Floats(list)) = &rule.allowed
                && !list.contains(&v)
            {
                violate(i, &not_allowed);
            }
        } else if let Some(a) = strings {
            if let Some(Allowed::Strings(set)) = &rule.allowed
                && !set.contains(a.value(i))
            {
                violate(i, &not_allowed);
            }
        } else if let Some(a) = bools
            && let Some(Allowed::Bools(list)) = &rule.allowed
            && !list.contains(&a.value(i))
        {
            violate(i, &not_allowed);
        }
    }
    Ok(cast)
}

/// Casts to a contract type; `None` when the types cannot be cast at all.
/// Values that do not convert (text that is not a number, a fractional float
/// for an int, 2 for a bool) become null.
fn convert(array: &ArrayRef, ty: ColumnType) -> Option<ArrayRef> {
    let target = ty.arrow_type();
    let from = array.data_type();
    if from == &target {
        return Some(array.clone());
    }
    let numeric = from.is_integer() || from.is_floating();
    match ty {
        ColumnType::Int if from.is_floating() => {
            let f = cast(array, &DataType::Float64).ok()?;
            let f = f.as_any().downcast_ref::<Float64Array>()?;
            let out: Int64Array = f
                .iter()
                .map(|v| {
                    v.filter(|x| x.fract() == 0.0 && *x >= -(2f64.powi(63)) && *x < 2f64.powi(63))
                        .map(|x| x as i64)
                })
                .collect();
            Some(Arc::new(out))
        }
        ColumnType::Bool if numeric => {
            let f = cast(array, &DataType::Float64).ok()?;
            let f = f.as_any().downcast_ref::<Float64Array>()?;
            let out: BooleanArray = f
                .iter()
                .map(|v| match v {
                    Some(0.0) => Some(false),
                    Some(1.0) => Some(true),
                    _ => None,
                })
                .collect();
            Some(Arc::new(out))
        }
        _ if can_cast_types(from, &target) => cast(array, &target).ok(),
        _ => None,
    }
}
/// The role of column `name`: the label column is the label; roles given in
/// the parameters come next, then the contract's (a contract label
/// overridden by `label:` becomes `other`); everything else is a feature.
pub(super) fn role_for(
    name: &str,
    label: Option<&str>,
    given: &BTreeMap<String, Role>,
    contract: Option<&Contract>,
) -> Role {
    if label == Some(name) {
        return Role::Label;
    }
    if name == REASON_COLUMN {
        return Role::Added;
    }
    if let Some(&role) = given.get(name) {
        return role;
    }
    match contract.and_then(|c| c.column(name)).and_then(|c| c.role) {
        Some(Role::Label) => Role::Other,
        Some(role) => role,
        None => Role::Feature,
    }
}

pub(super) fn with_roles(
    batch: &RecordBatch,
    role: impl Fn(&str) -> Role,
) -> Result<RecordBatch, StageError> {
    let fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| field_with_role(f.as_ref().clone(), role(f.name())))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema,
        batch.columns().to_vec(),
        &options,
    )?)
}

/// The contract's quarantine of one file with the file's bad lines after it,
/// and the columns that hold them (`line_number`, `raw_line`).
pub(super) fn with_bad_lines(
    shown: &str,
    quarantined: RecordBatch,
    bad: &[BadLine],
) -> Result<RecordBatch, StageError> {
    let n = quarantined.num_rows();
    let mut added = Vec::new();
    for field in bad_line_fields() {
        if quarantined.schema().field_with_name(field.name()).is_ok() {
            return Err(DatasetError::ColumnConflict {
                file: shown.to_string(),
                column: field.name().clone(),
                problem: "is in the file, and `on_bad_line: quarantine` adds a column of that \
                          name to `quarantined`; rename or `ignore` it"
                    .into(),
            }
            .into());
        }
        let nulls = arrow::array::new_null_array(field.data_type(), n);
        added.push((field, nulls));
    }
    let quarantined = append_columns(&quarantined, added)?;
    let rows = bad_lines::bad_line_rows(quarantined.schema_ref(), bad)?;
    Ok(concat_batches(&quarantined.schema(), &[quarantined, rows])?)
}
