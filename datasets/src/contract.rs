//! Dataset contracts: what columns a file must have, their types, and the
//! rules each value must follow.
//!
//! A contract is a YAML file (see `schemas/README.md`):
//!
//! ```yaml
//! columns:
//!   age: {type: int, nullable: false, min: 17, max: 100, role: feature}
//!   workclass: {type: string, allowed: [Private, Self-emp]}
//!   label: {type: int, role: label, allowed: [0, 1]}
//! extra_columns: allow   # allow | drop | error
//! ```
//!
//! It is parsed with [`gigo_pipeline::yaml::parse`], so every problem names
//! file, line and column; unknown keys are rejected with a "did you mean".

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use arrow::datatypes::DataType;
use gigo_pipeline::diag::did_you_mean;
use gigo_pipeline::yaml::{Node, NodeValue};
use gigo_pipeline::{Diagnostic, Role, StageError};

use crate::error::DatasetError;

/// The type a contract column is cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 64-bit signed integer (`Int64`).
    Int,
    /// 64-bit float (`Float64`).
    Float,
    /// UTF-8 text (`Utf8`).
    String,
    /// Boolean.
    Bool,
}

impl ColumnType {
    const NAMES: [&'static str; 4] = ["int", "float", "string", "bool"];

    /// Parses a contract type name.
    pub fn parse(s: &str) -> Option<ColumnType> {
        Some(match s {
            "int" => ColumnType::Int,
            "float" => ColumnType::Float,
            "string" => ColumnType::String,
            "bool" => ColumnType::Bool,
            _ => return None,
        })
    }

    /// The name used in contracts.
    pub fn name(self) -> &'static str {
        match self {
            ColumnType::Int => "int",
            ColumnType::Float => "float",
            ColumnType::String => "string",
            ColumnType::Bool => "bool",
        }
    }

    /// "an int", "a float", ... (for messages).
    pub fn with_article(self) -> &'static str {
        match self {
            ColumnType::Int => "an int",
            ColumnType::Float => "a float",
            ColumnType::String => "a string",
            ColumnType::Bool => "a bool",
        }
    }

    /// The Arrow type of the column after casting.
    pub fn arrow_type(self) -> DataType {
        match self {
            ColumnType::Int => DataType::Int64,
            ColumnType::Float => DataType::Float64,
            ColumnType::String => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
        }
    }

    fn is_numeric(self) -> bool {
        matches!(self, ColumnType::Int | ColumnType::Float)
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A `min` or `max` bound, as written.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// An integer bound.
    Int(i64),
    /// A float bound.
    Float(f64),
}

impl Bound {
    /// The bound as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            Bound::Int(i) => i as f64,
            Bound::Float(f) => f,
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Int(i) => write!(f, "{i}"),
            Bound::Float(x) => write!(f, "{x}"),
        }
    }
}

/// The allowed values of a column, typed like the column.
#[derive(Debug, Clone, PartialEq)]
pub enum Allowed {
    /// For `int` columns.
    Ints(BTreeSet<i64>),
    /// For `float` columns (compared exactly).
    Floats(Vec<f64>),
    /// For `string` columns.
    Strings(BTreeSet<String>),
    /// For `bool` columns.
    Bools(Vec<bool>),
}

/// The rules for one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnRule {
    /// Column name.
    pub name: String,
    /// Type the column is cast to.
    pub ty: ColumnType,
    /// Whether nulls are allowed (default true).
    pub nullable: bool,
    /// Smallest allowed value (numeric columns).
    pub min: Option<Bound>,
    /// Largest allowed value (numeric columns).
    pub max: Option<Bound>,
    /// The only values allowed.
    pub allowed: Option<Allowed>,
    /// The column's role; `None` means feature.
    pub role: Option<Role>,
}

/// What to do with columns of the file that the contract does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExtraColumns {
    /// Keep them (as features).
    #[default]
    Allow,
    /// Drop them.
    Drop,
    /// Fail the stage.
    Error,
}

/// A parsed dataset contract.
#[derive(Debug, Clone, PartialEq)]
pub struct Contract {
    /// The file, as the user named it.
    pub file: String,
    /// Column rules in the contract's order.
    pub columns: Vec<ColumnRule>,
    /// What to do with columns the contract does not name.
    pub extra_columns: ExtraColumns,
}

const TOP_KEYS: [&str; 2] = ["columns", "extra_columns"];
const COLUMN_KEYS: [&str; 6] = ["type", "nullable", "min", "max", "allowed", "role"];
const ROLES: [&str; 5] = ["feature", "label", "weight", "id", "other"];

impl Contract {
    /// Parses contract text; `file` names it in locations. Returns every
    /// problem found.
    pub fn parse(source: &str, file: &str) -> Result<Contract, Vec<Diagnostic>> {
        let file_arc: Arc<str> = Arc::from(file);
        let root = gigo_pipeline::yaml::parse(source, &file_arc)?;
        let mut problems = Vec::new();
        let mut contract = Contract {
            file: file.to_string(),
            columns: Vec::new(),
            extra_columns: ExtraColumns::Allow,
        };
        let Some(entries) = root.as_map() else {
            return Err(vec![Diagnostic::error(
                Some(root.loc.clone()),
                format!(
                    "a dataset contract must be a mapping with `columns:`, found {}",
                    root.type_name()
                ),
            )]);
        };
        unknown_keys(entries, &TOP_KEYS, "contract key", &mut problems);
        match root.get("extra_columns") {
            None => {}
            Some(node) => match node.as_str() {
                Some("allow") => contract.extra_columns = ExtraColumns::Allow,
                Some("drop") => contract.extra_columns = ExtraColumns::Drop,
                Some("error") => contract.extra_columns = ExtraColumns::Error,
                _ => problems.push(
                    Diagnostic::error(
                        Some(node.loc.clone()),
                        format!(
                            "`extra_columns` must be allow, drop or error, found {}",
                            describe(node)
                        ),
                    )
                    .with_help("allow keeps them, drop removes them, error fails the stage"),
                ),
            },
        }
        match root.get("columns") {
            None => problems.push(Diagnostic::error(
                Some(root.loc.clone()),
                "the contract has no `columns:` mapping".into(),
            )),
            Some(cols) => match cols.as_map() {
                None => problems.push(Diagnostic::error(
                    Some(cols.loc.clone()),
                    format!(
                        "`columns` must be a mapping of column name to rules, found {}",
                        cols.type_name()
                    ),
                )),
                Some(cols) => {
                    for (key, value) in cols {
                        let name = key.key_text().unwrap_or_default();
                        if let Some(rule) = parse_column(&name, key, value, &mut problems) {
                            contract.columns.push(rule);
                        }
                    }
                }
            },
        }
        let labels: Vec<&ColumnRule> = contract
            .columns
            .iter()
            .filter(|c| c.role == Some(Role::Label))
            .collect();
        if labels.len() > 1 {
            let names: Vec<&str> = labels.iter().map(|c| c.name.as_str()).collect();
            let second = root.locate(&["columns".to_string(), labels[1].name.clone()]);
            problems.push(Diagnostic::error(
                Some(second.loc.clone()),
                format!(
                    "several columns have `role: label`: {}; a table has one label",
                    names.join(", ")
                ),
            ));
        }
        if problems.is_empty() {
            Ok(contract)
        } else {
            Err(problems)
        }
    }

    /// Reads and parses the contract at `path`; `shown` is how the user
    /// named it. Problems become one data error listing each with its place.
    pub fn load(path: &Path, shown: &str) -> Result<Contract, StageError> {
        let source = std::fs::read_to_string(path).map_err(|e| StageError::io(path, e))?;
        match Contract::parse(&source, shown) {
            Ok(contract) => Ok(contract),
            Err(problems) => Err(DatasetError::InvalidContract {
                file: shown.to_string(),
                problems,
                text: source,
            }
            .into()),
        }
    }

    /// The rule for `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnRule> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The column with `role: label`, if any.
    pub fn label_column(&self) -> Option<&str> {
        self.columns
            .iter()
            .find(|c| c.role == Some(Role::Label))
            .map(|c| c.name.as_str())
    }
}

fn describe(node: &Node) -> String {
    match &node.value {
        NodeValue::Str(s) => format!("`{s}`"),
        _ => node.type_name().to_string(),
    }
}

fn unknown_keys(
    entries: &[(Node, Node)],
    known: &[&str],
    what: &str,
    problems: &mut Vec<Diagnostic>,
) {
    for (key, _) in entries {
        let text = key.key_text().unwrap_or_default();
        if known.contains(&text.as_str()) {
            continue;
        }
        let help = match did_you_mean(&text, known.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("known keys: {}", known.join(", ")),
        };
        problems.push(
            Diagnostic::error(Some(key.loc.clone()), format!("unknown {what} `{text}`"))
                .with_help(help),
        );
    }
}

fn parse_column(
    name: &str,
    key: &Node,
    value: &Node,
    problems: &mut Vec<Diagnostic>,
) -> Option<ColumnRule> {
    let before = problems.len();
    let Some(entries) = value.as_map() else {
        problems.push(
            Diagnostic::error(
                Some(value.loc.clone()),
                format!(
                    "column `{name}` needs a mapping of rules, found {}",
                    value.type_name()
                ),
            )
            .with_help("e.g. `{type: int, min: 0}`"),
        );
        return None;
    };
    unknown_keys(entries, &COLUMN_KEYS, "column rule", problems);

    let ty = match value.get("type") {
        None => {
            problems.push(
                Diagnostic::error(
                    Some(key.loc.clone()),
                    format!("column `{name}` has no `type`"),
                )
                .with_help("add `type: int`, `float`, `string` or `bool`"),
            );
            None
        }
        Some(t) => match t.as_str().and_then(ColumnType::parse) {
            Some(ty) => Some(ty),
            None => {
                let mut d = Diagnostic::error(
                    Some(t.loc.clone()),
                    format!(
                        "column `{name}`: unknown type {}; known types: {}",
                        describe(t),
                        ColumnType::NAMES.join(", ")
                    ),
                );
                if let Some(s) = t
                    .as_str()
                    .and_then(|s| did_you_mean(s, ColumnType::NAMES.iter().copied()))
                {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                problems.push(d);
                None
            }
        },
    };

    let nullable = match value.get("nullable") {
        None => true,
        Some(n) => match n.value {
            NodeValue::Bool(b) => b,
            _ => {
                problems.push(Diagnostic::error(
                    Some(n.loc.clone()),
                    format!(
                        "column `{name}`: `nullable` must be true or false, found {}",
                        describe(n)
                    ),
                ));
                true
            }
        },
    };

    let role = match value.get("role") {
        None => None,
        Some(r) => match r
            .as_str()
            .filter(|s| ROLES.contains(s))
            .and_then(Role::parse)
        {
            Some(role) => Some(role),
            None => {
                let mut d = Diagnostic::error(
                    Some(r.loc.clone()),
                    format!(
                        "column `{name}`: unknown role {}; known roles: {}",
                        describe(r),
                        ROLES.join(", ")
                    ),
                );
                if let Some(s) = r
                    .as_str()
                    .and_then(|s| did_you_mean(s, ROLES.iter().copied()))
                {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                problems.push(d);
                None
            }
        },
    };

    let mut bound = |which: &str| -> Option<Bound> {
        let node = value.get(which)?;
        if let Some(ty) = ty
            && !ty.is_numeric()
        {
            problems.push(Diagnostic::error(
                Some(node.loc.clone()),
                format!("column `{name}`: `{which}` applies to int and float columns, not {ty}"),
            ));
            return None;
        }
        match node.value {
            NodeValue::Int(i) => Some(Bound::Int(i)),
            NodeValue::Float(f) if !f.is_nan() => Some(Bound::Float(f)),
            _ => {
                problems.push(Diagnostic::error(
                    Some(node.loc.clone()),
                    format!(
                        "column `{name}`: `{which}` must be a number, found {}",
                        describe(node)
                    ),
                ));
                None
            }
        }
    };
    let min = bound("min");
    let max = bound("max");
    if let (Some(lo), Some(hi)) = (min, max)
        && lo.as_f64() > hi.as_f64()
    {
        let at = value.get("min").map(|n| n.loc.clone());
        problems.push(Diagnostic::error(
            at,
            format!("column `{name}`: `min` {lo} is above `max` {hi}"),
        ));
    }

    let allowed = match (value.get("allowed"), ty) {
        (Some(list), Some(ty)) => parse_allowed(name, list, ty, problems),
        _ => None,
    };

    if problems.len() > before {
        return None;
    }
    Some(ColumnRule {
        name: name.to_string(),
        ty: ty?,
        nullable,
        min,
        max,
        allowed,
        role,
    })
}

fn parse_allowed(
    name: &str,
    list: &Node,
    ty: ColumnType,
    problems: &mut Vec<Diagnostic>,
) -> Option<Allowed> {
    let NodeValue::Seq(items) = &list.value else {
        problems.push(Diagnostic::error(
            Some(list.loc.clone()),
            format!(
                "column `{name}`: `allowed` must be a list of values, found {}",
                list.type_name()
            ),
        ));
        return None;
    };
    if items.is_empty() {
        problems.push(Diagnostic::error(
            Some(list.loc.clone()),
            format!("column `{name}`: `allowed` is empty, so no row could pass"),
        ));
        return None;
    }
    let mut bad = |item: &Node| {
        problems.push(Diagnostic::error(
            Some(item.loc.clone()),
            format!(
                "column `{name}` is {}, but this allowed value is {}",
                ty.with_article(),
                item.type_name()
            ),
        ));
    };
    let mut ok = true;
    let allowed = match ty {
        ColumnType::Int => Allowed::Ints(
            items
                .iter()
                .filter_map(|i| match i.value {
                    NodeValue::Int(v) => Some(v),
                    _ => {
                        bad(i);
                        ok = false;
                        None
                    }
                })
                .collect(),
        ),
        ColumnType::Float => Allowed::Floats(
            items
                .iter()
                .filter_map(|i| match i.value {
                    NodeValue::Int(v) => Some(v as f64),
                    NodeValue::Float(v) => Some(v),
                    _ => {
                        bad(i);
                        ok = false;
                        None
                    }
                })
                .collect(),
        ),
        ColumnType::Bool => Allowed::Bools(
            items
                .iter()
                .filter_map(|i| match i.value {
                    NodeValue::Bool(v) => Some(v),
                    _ => {
                        bad(i);
                        ok = false;
                        None
                    }
                })
                .collect(),
        ),
        ColumnType::String => Allowed::Strings(
            items
                .iter()
                .filter_map(|i| match &i.value {
                    NodeValue::Seq(_) | NodeValue::Map(_) | NodeValue::Null => {
                        bad(i);
                        ok = false;
                        None
                    }
                    _ => i.key_text(),
                })
                .collect(),
        ),
    };
    ok.then_some(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let c = Contract::parse(
            "columns:\n  age: {type: int, nullable: false, min: 17, max: 100, role: feature}\n  workclass: {type: string, allowed: [Private, Self-emp]}\n  label: {type: int, role: label, allowed: [0, 1]}\nextra_columns: drop\n",
            "c.yaml",
        )
        .unwrap();
        assert_eq!(c.columns.len(), 3);
        assert_eq!(c.columns[0].min, Some(Bound::Int(17)));
        assert!(!c.columns[0].nullable);
        assert_eq!(c.label_column(), Some("label"));
        assert_eq!(c.extra_columns, ExtraColumns::Drop);
        assert_eq!(
            c.columns[1].allowed,
            Some(Allowed::Strings(
                ["Private".to_string(), "Self-emp".to_string()].into()
            ))
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let err = Contract::parse(
            "columns:\n  age: {type: integer, mni: 3}\n  name: {type: string, min: 1}\n  x: {type: int, allowed: [a]}\nextra: 1\n",
            "c.yaml",
        )
        .unwrap_err();
        let text: Vec<String> = err.iter().map(|d| d.render(None)).collect();
        let all = text.join("\n");
        assert!(
            all.contains("c.yaml:2:24: error: unknown column rule `mni`"),
            "{all}"
        );
        assert!(
            all.contains("c.yaml:2:15: error: column `age`: unknown type `integer`"),
            "{all}"
        );
        assert!(all.contains("c.yaml:3:29"), "{all}");
        assert!(all.contains("c.yaml:4:28"), "{all}");
        assert!(
            all.contains("c.yaml:5:1: error: unknown contract key `extra`"),
            "{all}"
        );
        assert!(
            err.iter()
                .any(|d| d.help.as_deref() == Some("did you mean `min`?"))
        );
    }

    #[test]
    fn the_example_contract_parses() {
        let c = Contract::parse(
            include_str!("../../schemas/example_contract.yaml"),
            "schemas/example_contract.yaml",
        )
        .unwrap();
        assert_eq!(c.label_column(), Some("income"));
        assert_eq!(c.extra_columns, ExtraColumns::Allow);
    }
}
