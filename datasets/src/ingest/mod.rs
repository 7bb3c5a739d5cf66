//! The `ingest` stage: reads CSV, Parquet, Arrow IPC or JSON lines files
//! (through polars) into an Arrow table, checks them against an optional
//! dataset contract, and sets column roles.
//!
//! Rows that break the contract go to the `quarantined` port with a
//! `removed_reason` such as `age: above max 100`; the others go to `table`.
//! Malformed files fail the stage with the file, line and (where known)
//! column of the first problem.

use std::collections::{BTreeMap, HashSet};
use std::io::Cursor;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray, new_empty_array,
};
use arrow::compute::{can_cast_types, cast, concat_batches, filter_record_batch, not};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use polars::prelude::{
    CsvReadOptions, DataFrame, JsonFormat, JsonReader, ParquetReader, PolarsResult, SerReader,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

use gigo_pipeline::diag::did_you_mean;
use gigo_pipeline::store::file_sha256;
use gigo_pipeline::{
    Inputs, ParamProblem, PortSpec, REASON_COLUMN, Registry, Role, Stage, StageContext, StageError,
    StageOutput, Table, append_columns, field_with_role,
};

use crate::contract::{Allowed, Bound, ColumnRule, ColumnType, Contract, ExtraColumns};
use crate::polars_bridge::{dataframe_to_record_batch, plain_batch};

mod bad_lines;
mod roles;
use bad_lines::{BadLine, bad_line_fields, split_csv, split_jsonl};
pub use bad_lines::{LINE_COLUMN, OnBadLine, RAW_COLUMN};
use roles::ColumnRoles;

/// A file format `ingest` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Comma-separated values with a header line.
    Csv,
    /// Tab-separated values with a header line.
    Tsv,
    /// Apache Parquet.
    Parquet,
    /// Arrow IPC file (also called Feather v2).
    Ipc,
    /// JSON lines: one JSON object per line.
    Jsonl,
}

/// Extensions `format` is inferred from.
const EXTENSIONS: &str = ".csv, .tsv, .tab, .parquet, .pq, .arrow, .ipc, .feather, .jsonl, .ndjson";

impl Format {
    /// The format a file extension stands for (case-insensitive).
    pub fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        Some(match ext.as_str() {
            "csv" => Format::Csv,
            "tsv" | "tab" => Format::Tsv,
            "parquet" | "pq" => Format::Parquet,
            "arrow" | "ipc" | "feather" => Format::Ipc,
            "jsonl" | "ndjson" => Format::Jsonl,
            _ => return None,
        })
    }

    /// The reader that parses it, for messages.
    fn reader(self) -> &'static str {
        match self {
            Format::Csv | Format::Tsv => "polars CSV",
            Format::Jsonl => "polars JSON lines",
            Format::Parquet => "Parquet",
            Format::Ipc => "Arrow IPC",
        }
    }

    /// The name used in parameters.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Parquet => "parquet",
            Format::Ipc => "ipc",
            Format::Jsonl => "jsonl",
        }
    }
}

/// Parameters of the `ingest` stage.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The file to read, or a glob pattern (`data/part-*.csv`) whose matches
    /// are read in sorted order and concatenated. Relative to the pipeline
    /// file's directory.
    pub path: String,
    /// File format: csv, tsv, parquet, ipc or jsonl. Inferred from the file
    /// extension when absent (.csv, .tsv, .parquet, .pq, .arrow, .ipc,
    /// .feather, .jsonl, .ndjson).
    #[serde(default)]
    pub format: Option<Format>,
    /// Path to a dataset contract (YAML; see `schemas/README.md`): column
    /// types, nullability, min/max, allowed values, roles. Rows that break it
    /// are quarantined with the reason.
    #[serde(default)]
    pub schema: Option<String>,
    /// The label column. Overrides the contract's `role: label` column when
    /// both are given.
    #[serde(default)]
    pub label: Option<String>,
    /// Columns dropped after reading, by name or glob (`true_*`): ground
    /// truth, leakage, free text. The summary counts and names them.
    #[serde(default)]
    pub ignore: Vec<String>,
    /// Row id columns, by name or glob: kept, never features.
    #[serde(default)]
    pub id: Vec<String>,
    /// Roles by column name or glob (`{row: id, w: weight, true_*: truth}`):
    /// feature, label, weight, id, truth or other. They override the
    /// contract's roles. A name or glob that matches no column is an error.
    #[serde(default)]
    pub roles: BTreeMap<String, Role>,
    /// CSV, TSV and JSON lines: what a malformed line (wrong field count, a
    /// quote that never closes, invalid UTF-8 or JSON) does. `error` (the
    /// default) fails with file and line; `quarantine` sends it to
    /// `quarantined` with `line_number`, `raw_line` and the reason.
    #[serde(default)]
    pub on_bad_line: OnBadLine,
}

/// The `ingest` stage, built from checked [`Params`].
#[derive(Debug, Clone)]
pub struct Ingest {
    params: Params,
    roles: ColumnRoles,
}

const DOC: &str = "Reads a CSV, TSV, Parquet, Arrow IPC or JSON lines file (or a glob of them, \
concatenated in sorted order) into an Arrow table, through polars. With `schema:`, columns are \
cast to the contract's types and rows that break its rules (nullable, min, max, allowed) go to \
`quarantined` with the reason. Sets column roles: the label column is the label, the others \
features unless the contract says otherwise.";

/// Registers the `ingest` stage type.
pub fn register(registry: &mut Registry) {
    registry.register::<Params, _>("ingest", DOC, |p| {
        Ok(Box::new(Ingest::new(p)?) as Box<dyn Stage>)
    });
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

impl Ingest {
    /// Checks `params` (without touching any file) and builds the stage.
    pub fn new(params: Params) -> Result<Ingest, Vec<ParamProblem>> {
        let mut problems = Vec::new();
        if params.path.trim().is_empty() {
            problems.push(ParamProblem::new("path", "`path` is empty"));
        } else if params.format.is_none() {
            // The extension of a literal path, or of a glob whose last
            // component ends in a literal extension (`*.csv`), must be known.
            let last = Path::new(&params.path);
            let ext_literal = last
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| !is_glob(e));
            let checkable = !is_glob(&params.path) || ext_literal;
            if checkable && Format::from_extension(last).is_none() {
                let mut p = ParamProblem::new(
                    "path",
                    format!(
                        "cannot tell the format of `{}` from its extension",
                        params.path
                    ),
                );
                p.help = Some(format!(
                    "set `format:` to csv, tsv, parquet, ipc or jsonl (known extensions: {EXTENSIONS})"
                ));
                problems.push(p);
            }
        }
        if params
            .schema
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            problems.push(ParamProblem::new("schema", "`schema` is empty"));
        }
        if params.label.as_deref().is_some_and(|s| s.is_empty()) {
            problems.push(ParamProblem::new("label", "`label` is empty"));
        }
        let format = params
            .format
            .or_else(|| Format::from_extension(Path::new(&params.path)));
        if params.on_bad_line == OnBadLine::Quarantine
            && let Some(f @ (Format::Parquet | Format::Ipc)) = format
        {
            problems.push(ParamProblem::new(
                "on_bad_line",
                format!(
                    "`on_bad_line` applies to text files (csv, tsv, jsonl); {} files have no lines",
                    f.name()
                ),
            ));
        }
        let roles = ColumnRoles::new(
            &params.ignore,
            &params.id,
            &params.roles,
            params.label.as_deref().filter(|l| !l.is_empty()),
        )
        .map_err(|p| problems.extend(p))
        .ok();
        match roles {
            Some(roles) if problems.is_empty() => Ok(Ingest { params, roles }),
            _ => Err(problems),
        }
    }

    fn format_of(&self, path: &Path, shown: &str) -> Result<Format, StageError> {
        match self.params.format {
            Some(f) => Ok(f),
            None => Format::from_extension(path).ok_or_else(|| {
                StageError::data(format!(
                    "{shown}: cannot tell the format from the extension (known: {EXTENSIONS}); set `format:`"
                ))
            }),
        }
    }
}

/// The files `pattern` names, sorted. A literal path must be a file; a glob
/// must match at least one file.
pub fn matched_files(pattern: &str, base_dir: &Path) -> Result<Vec<PathBuf>, StageError> {
    let as_path = Path::new(pattern);
    if !is_glob(pattern) {
        let path = if as_path.is_absolute() {
            as_path.to_path_buf()
        } else {
            base_dir.join(as_path)
        };
        if !path.is_file() {
            let what = if path.exists() {
                "is not a file"
            } else {
                "does not exist"
            };
            return Err(StageError::data(format!(
                "{pattern}: the file {what} (looked for {})",
                path.display()
            )));
        }
        return Ok(vec![path]);
    }
    let full = if as_path.is_absolute() {
        pattern.to_string()
    } else {
        let base = glob::Pattern::escape(&base_dir.to_string_lossy());
        format!("{base}/{pattern}")
    };
    let entries = glob::glob(&full)
        .map_err(|e| StageError::data(format!("`{pattern}` is not a valid glob pattern: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| {
            StageError::data(format!(
                "{}: cannot read while matching `{pattern}`: {}",
                e.path().display(),
                e.error()
            ))
        })?;
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(StageError::data(format!(
            "no file matches `{pattern}` (in {})",
            base_dir.display()
        )));
    }
    Ok(files)
}

/// How a file is named in messages: relative to the pipeline's directory
/// when inside it.
fn shown(path: &Path, base_dir: &Path) -> String {
    path.strip_prefix(base_dir)
        .unwrap_or(path)
        .display()
        .to_string()
}

impl Stage for Ingest {
    fn inputs(&self) -> Vec<PortSpec> {
        Vec::new()
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![
            PortSpec::table(
                "table",
                "the rows read that pass the contract, with roles set",
            ),
            PortSpec::removed(
                "quarantined",
                "rows that break the contract, as read, with `removed_reason`",
            ),
        ]
    }

    fn fingerprint(&self, base_dir: &Path) -> Result<Option<String>, StageError> {
        let mut out = String::new();
        for path in matched_files(&self.params.path, base_dir)? {
            let sha = file_sha256(&path)?;
            out.push_str(&format!("{}\t{sha}\n", shown(&path, base_dir)));
        }
        if let Some(schema) = &self.params.schema {
            let path = if Path::new(schema).is_absolute() {
                PathBuf::from(schema)
            } else {
                base_dir.join(schema)
            };
            out.push_str(&format!("contract {schema}\t{}\n", file_sha256(&path)?));
        }
        Ok(Some(out))
    }

    fn run(&self, _inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let files = matched_files(&self.params.path, &ctx.base_dir)?;
        let contract = match &self.params.schema {
            Some(s) => Some(Contract::load(&ctx.resolve(Path::new(s)), s)?),
            None => None,
        };
        // Named in the parameters (`label:` or `roles`): it must be in every file.
        let named_label = self.roles.label().map(String::from);
        let label: Option<String> = named_label
            .clone()
            .or_else(|| contract.as_ref()?.label_column().map(String::from));
        let string_columns: Vec<String> = contract
            .iter()
            .flat_map(|c| c.columns.iter())
            .filter(|c| c.ty == ColumnType::String)
            .map(|c| c.name.clone())
            .collect();

        ctx.progress.set_total(files.len() as u64);
        let mut output = StageOutput::new();
        let mut kept_parts = Vec::new();
        let mut quarantined_parts = Vec::new();
        let mut file_summaries = Vec::new();
        let mut violations: BTreeMap<String, usize> = BTreeMap::new();
        let mut ignored: Vec<String> = Vec::new();
        let mut given: BTreeMap<String, Role> = BTreeMap::new();
        for path in &files {
            let shown = shown(path, &ctx.base_dir);
            ctx.progress.message(&shown);
            let format = self.format_of(path, &shown)?;
            let (raw, bad) = read_file(
                path,
                &shown,
                format,
                &string_columns,
                self.params.on_bad_line,
            )?;
            check_unique_names(&raw, &shown)?;
            if let Some(l) = &named_label {
                check_label(&raw, l, &shown)?;
            }
            let resolved = self.roles.resolve(&column_names(&raw), &shown)?;
            let raw = drop_ignored(&shown, raw, &resolved.ignored, contract.as_ref())?;
            for c in resolved.ignored {
                if !ignored.contains(&c) {
                    ignored.push(c);
                }
            }
            given.extend(resolved.roles);
            let rows_read = raw.num_rows() + bad.len();
            let mut split = apply_contract(&shown, raw, contract.as_ref(), named_label.as_deref())?;
            for (k, v) in split.violations {
                *violations.entry(k).or_default() += v;
            }
            if self.params.on_bad_line == OnBadLine::Quarantine {
                split.quarantined = with_bad_lines(&shown, split.quarantined, &bad)?;
            }
            file_summaries.push(json!({
                "file": shown,
                "format": format.name(),
                "rows": rows_read,
                "rows_kept": split.kept.num_rows(),
                "rows_quarantined": split.quarantined.num_rows(),
                "bad_lines": bad.len(),
            }));
            output = output.created(format!("read from {shown}"), rows_read);
            kept_parts.push((shown.clone(), split.kept));
            quarantined_parts.push((shown, split.quarantined));
            ctx.progress.advance(1);
        }

        let roles = |name: &str| role_for(name, label.as_deref(), &given, contract.as_ref());
        let kept = with_roles(&concat_parts(kept_parts)?, roles)?;
        let quarantined = with_roles(&concat_parts(quarantined_parts)?, |name| {
            if [LINE_COLUMN, RAW_COLUMN].contains(&name)
                && self.params.on_bad_line == OnBadLine::Quarantine
            {
                Role::Added
            } else {
                roles(name)
            }
        })?;
        let kept = Table::from_batch(kept);
        let quarantined = Table::from_batch(quarantined);

        let rows_read: usize = output.created.iter().map(|(_, n)| n).sum();
        let by_reason: serde_json::Map<String, serde_json::Value> = quarantined
            .value_counts(REASON_COLUMN)?
            .into_iter()
            .map(|(r, n)| (r, json!(n)))
            .collect();
        let columns: Vec<serde_json::Value> = kept
            .schema()
            .fields()
            .iter()
            .map(|f| {
                json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "role": gigo_pipeline::role_of(f).as_str(),
                })
            })
            .collect();
        let summary = json!({
            "files": file_summaries,
            "rows_read": rows_read,
            "rows_kept": kept.num_rows(),
            "rows_quarantined": quarantined.num_rows(),
            "quarantined_by_reason": by_reason,
            "violations_by_rule": violations,
            "label": label,
            "contract": self.params.schema,
            "columns": columns,
            "ignored": {"count": ignored.len(), "columns": ignored},
        });
        if !ignored.is_empty() {
            ctx.log(format!(
                "{} column(s) ignored: {}",
                ignored.len(),
                ignored.join(", ")
            ));
        }
        if quarantined.num_rows() > 0 {
            ctx.log(format!(
                "{} of {rows_read} rows quarantined by the contract",
                quarantined.num_rows()
            ));
        }
        Ok(output
            .with("table", kept)
            .with("quarantined", quarantined)
            .with_summary(summary))
    }
}

/// The role of column `name`: the label column is the label; roles given in
/// the parameters come next, then the contract's (a contract label
/// overridden by `label:` becomes `other`); everything else is a feature.
fn role_for(
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

fn with_roles(batch: &RecordBatch, role: impl Fn(&str) -> Role) -> Result<RecordBatch, StageError> {
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
fn with_bad_lines(
    shown: &str,
    quarantined: RecordBatch,
    bad: &[BadLine],
) -> Result<RecordBatch, StageError> {
    let n = quarantined.num_rows();
    let mut added = Vec::new();
    for field in bad_line_fields() {
        if quarantined.schema().field_with_name(field.name()).is_ok() {
            return Err(StageError::data(format!(
                "{shown}: the file has a column `{}`, which `on_bad_line: quarantine` adds to \
                 `quarantined`; rename or `ignore` it",
                field.name()
            )));
        }
        let nulls = arrow::array::new_null_array(field.data_type(), n);
        added.push((field, nulls));
    }
    let quarantined = append_columns(&quarantined, added)?;
    let rows = bad_lines::bad_line_rows(quarantined.schema_ref(), bad)?;
    Ok(concat_batches(&quarantined.schema(), &[quarantined, rows])?)
}

/// `batch` without the `ignore`d columns; a column the contract names cannot
/// be ignored.
fn drop_ignored(
    shown: &str,
    batch: RecordBatch,
    ignored: &[String],
    contract: Option<&Contract>,
) -> Result<RecordBatch, StageError> {
    if ignored.is_empty() {
        return Ok(batch);
    }
    if let Some(c) = contract
        && let Some(name) = ignored.iter().find(|n| c.column(n).is_some())
    {
        return Err(StageError::data(format!(
            "{shown}: column `{name}` is in the contract {} but `ignore` drops it; remove it \
             from one of them",
            c.file
        )));
    }
    let keep: Vec<usize> = column_names(&batch)
        .iter()
        .enumerate()
        .filter(|(_, n)| !ignored.contains(n))
        .map(|(i, _)| i)
        .collect();
    Ok(batch.project(&keep)?)
}

fn column_names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

fn check_unique_names(batch: &RecordBatch, shown: &str) -> Result<(), StageError> {
    let mut seen = HashSet::new();
    for name in column_names(batch) {
        if !seen.insert(name.clone()) {
            return Err(StageError::data(format!(
                "{shown}: column `{name}` appears more than once"
            )));
        }
    }
    Ok(())
}

fn check_label(batch: &RecordBatch, label: &str, shown: &str) -> Result<(), StageError> {
    let names = column_names(batch);
    if names.iter().any(|n| n == label) {
        return Ok(());
    }
    Err(StageError::data(missing_column_message(
        &format!("label column `{label}` is not in {shown}"),
        label,
        &names,
    )))
}

fn missing_column_message(head: &str, wanted: &str, names: &[String]) -> String {
    let mut msg = format!(
        "{head}; its columns are: {}",
        if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(", ")
        }
    );
    if let Some(s) = did_you_mean(wanted, names.iter().map(String::as_str)) {
        msg.push_str(&format!(" (did you mean `{s}`?)"));
    }
    msg
}

// ---------------------------------------------------------------------------
// Reading files

/// Reads one file into a record batch with plain Arrow types. A panic inside
/// a reader becomes an error naming the file (a last line of defence: the
/// readers are meant to return errors).
fn read_file(
    path: &Path,
    shown: &str,
    format: Format,
    string_columns: &[String],
    on_bad: OnBadLine,
) -> Result<(RecordBatch, Vec<BadLine>), StageError> {
    guarded(shown, format.reader(), || {
        read_file_unguarded(path, shown, format, string_columns, on_bad)
    })?
}

fn read_file_unguarded(
    path: &Path,
    shown: &str,
    format: Format,
    string_columns: &[String],
    on_bad: OnBadLine,
) -> Result<(RecordBatch, Vec<BadLine>), StageError> {
    if matches!(format, Format::Parquet | Format::Ipc) {
        let len = std::fs::metadata(path)
            .map_err(|e| StageError::io(path, e))?
            .len();
        if len == 0 {
            return Err(StageError::data(format!("{shown}: the file is empty")));
        }
    }
    let (df, bad) = match format {
        Format::Csv => read_csv(path, shown, b',', string_columns, on_bad)?,
        Format::Tsv => read_csv(path, shown, b'\t', string_columns, on_bad)?,
        Format::Jsonl => read_jsonl(path, shown, on_bad)?,
        Format::Parquet => return Ok((read_parquet(path, shown)?, Vec::new())),
        Format::Ipc => return Ok((read_ipc(path, shown)?, Vec::new())),
    };
    let batch = dataframe_to_record_batch(&df).map_err(|e| match e {
        StageError::Data(m) => StageError::data(format!("{shown}: {m}")),
        e => e,
    })?;
    Ok((batch, bad))
}

/// Parquet through arrow-rs, which reads every type a Parquet file holds
/// (polars, as built here, panics on decimals and lacks structs and times).
/// A compression codec this build of arrow-rs lacks (gzip, lz4, brotli) is
/// read by polars instead.
fn read_parquet(path: &Path, shown: &str) -> Result<RecordBatch, StageError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let open = || std::fs::File::open(path).map_err(|e| StageError::io(path, e));
    let bad = |e: &dyn std::fmt::Display| {
        StageError::data(format!("{shown}: cannot read it as Parquet: {e}"))
    };
    let builder = ParquetRecordBatchReaderBuilder::try_new(open()?).map_err(|e| bad(&e))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| bad(&e))?;
    let mut batches = Vec::new();
    for batch in reader {
        match batch {
            Ok(b) => batches.push(b),
            Err(e) if e.to_string().contains("Disabled feature at compile time") => {
                let file = open()?;
                let df = polars_read(shown, "Parquet", || ParquetReader::new(file).finish())?
                    .map_err(|e| corrupt(shown, "Parquet", &e))?;
                return dataframe_to_record_batch(&df);
            }
            Err(e) => return Err(bad(&e)),
        }
    }
    plain_batch(&concat_batches(&schema, &batches)?)
}

/// Arrow IPC files through arrow-rs (every Arrow type, as written).
fn read_ipc(path: &Path, shown: &str) -> Result<RecordBatch, StageError> {
    let mut file = std::fs::File::open(path).map_err(|e| StageError::io(path, e))?;
    let bad = |e: &dyn std::fmt::Display| {
        StageError::data(format!("{shown}: cannot read it as Arrow IPC: {e}"))
    };
    // A forged footer would make the reader allocate what it claims.
    gigo_pipeline::store::check_ipc_blocks(&mut file).map_err(|e| bad(&e))?;
    let reader = arrow::ipc::reader::FileReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| bad(&e))?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
    plain_batch(&concat_batches(&schema, &batches)?)
}

fn corrupt(shown: &str, what: &str, e: &polars::prelude::PolarsError) -> StageError {
    StageError::data(format!("{shown}: cannot read it as {what}: {e}"))
}

/// Runs `f`, turning a panic (inside polars or arrow-rs) into an error
/// naming the file and the reader.
fn guarded<T>(shown: &str, what: &str, f: impl FnOnce() -> T) -> Result<T, StageError> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let msg = match gigo_pipeline::panic_message(panic.as_ref()) {
            m if m.is_empty() => "unknown failure".to_string(),
            m => m,
        };
        StageError::data(format!(
            "{shown}: the {what} reader panicked while reading it (a bug in the reader; the \
             file may be corrupt or use a type it does not support): {msg}"
        ))
    })
}

/// Runs a polars reader, turning a panic inside polars into an error.
fn polars_read<T>(
    shown: &str,
    what: &str,
    f: impl FnOnce() -> PolarsResult<T>,
) -> Result<PolarsResult<T>, StageError> {
    guarded(shown, &format!("polars {what}"), f)
}

fn read_csv(
    path: &Path,
    shown: &str,
    separator: u8,
    string_columns: &[String],
    on_bad: OnBadLine,
) -> Result<(DataFrame, Vec<BadLine>), StageError> {
    let mut bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    let bad = match on_bad {
        OnBadLine::Error => Vec::new(),
        OnBadLine::Quarantine => {
            let (kept, bad) = split_csv(&bytes, shown, separator)?;
            bytes = kept;
            bad
        }
    };
    let (header, blank_lines) = check_csv_structure(&bytes, shown, separator)?;
    // Blank lines are no records (as for the `csv` crate and most tools);
    // polars would read them as rows of nulls.
    if !blank_lines.is_empty() {
        let mut kept = Vec::with_capacity(bytes.len());
        let mut from = 0;
        for r in blank_lines {
            kept.extend_from_slice(&bytes[from..r.start]);
            from = r.end;
        }
        kept.extend_from_slice(&bytes[from..]);
        bytes = kept;
    }
    let overwrite: polars::prelude::Schema = header
        .iter()
        .filter(|h| string_columns.contains(h))
        .map(|h| polars::prelude::Field::new(h.as_str().into(), polars::prelude::DataType::String))
        .collect();
    let options = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .with_raise_if_empty(false)
        .with_schema_overwrite((!overwrite.is_empty()).then(|| Arc::new(overwrite)))
        .map_parse_options(|o| o.with_separator(separator));
    let df = polars_read(shown, "CSV", || {
        options
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
    })?
    .map_err(|e| corrupt(shown, "CSV", &e))?;
    Ok((df, bad))
}

/// Checks a CSV file's structure with the `csv` crate (every record has as
/// many fields as the header, quotes are closed, text is UTF-8, header names
/// are unique), so that errors name the line instead of polars' byte
/// offsets. Returns the header and the byte ranges of blank lines.
fn check_csv_structure(
    bytes: &[u8],
    shown: &str,
    separator: u8,
) -> Result<(Vec<String>, Vec<Range<usize>>), StageError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StageError::data(format!(
            "{shown}: no header: the file is empty"
        )));
    }
    let scan = scan_csv(bytes, separator);
    if let Some(line) = scan.unterminated_quote {
        return Err(StageError::data(format!(
            "{shown}:{line}: unterminated quote: the quoted field that starts on this line never ends"
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(false)
        .delimiter(separator)
        .from_reader(bytes);
    let mut header: Option<Vec<String>> = None;
    let mut record = csv::StringRecord::new();
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {
                if header.is_none() {
                    let names: Vec<String> = record.iter().map(String::from).collect();
                    let line = record.position().map_or(1, |p| p.line());
                    let mut seen = HashSet::new();
                    if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                        return Err(StageError::data(format!(
                            "{shown}:{line}: column `{dup}` appears more than once in the header"
                        )));
                    }
                    header = Some(names);
                }
            }
            Ok(false) => break,
            Err(e) => return Err(csv_error(shown, bytes, &e, header.as_deref())),
        }
    }
    let header = header
        .ok_or_else(|| StageError::data(format!("{shown}: no header: the file has no lines")))?;
    Ok((header, scan.blank_lines))
}

/// The first byte at or after `offset` that is not in a blank line.
fn skip_blank_lines(bytes: &[u8], offset: usize) -> usize {
    let mut begin = offset.min(bytes.len());
    while begin < bytes.len() && matches!(bytes[begin], b'\n' | b'\r') {
        begin += 1;
    }
    begin
}

fn csv_error(shown: &str, bytes: &[u8], e: &csv::Error, header: Option<&[String]>) -> StageError {
    // The csv crate's own line numbers skip blank lines.
    let line = e.position().map(|p| {
        let begin = skip_blank_lines(bytes, p.byte() as usize);
        1 + bytes[..begin].iter().filter(|&&b| b == b'\n').count()
    });
    let at = match line {
        Some(l) => format!("{shown}:{l}"),
        None => shown.to_string(),
    };
    StageError::data(match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => {
            let of = if header.is_some() {
                " (as in the header)"
            } else {
                ""
            };
            format!("{at}: expected {expected_len} fields{of}, found {len}")
        }
        csv::ErrorKind::Utf8 { err, .. } => {
            let field = err.field();
            let name = header
                .and_then(|h| h.get(field))
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            format!(
                "{at}: field {}{name} is not valid UTF-8 (after {} valid bytes)",
                field + 1,
                err.valid_up_to()
            )
        }
        csv::ErrorKind::Io(io) => format!("{shown}: {io}"),
        _ => format!("{at}: {e}"),
    })
}

/// What a quick pass over CSV bytes finds.
struct CsvScan {
    /// The line on which a quoted field opens and never closes.
    unterminated_quote: Option<usize>,
    /// Byte ranges of blank lines outside quotes, newline included.
    blank_lines: Vec<Range<usize>>,
}

/// Scans CSV bytes with RFC 4180 quoting: `"` opens a quote only at the
/// start of a field, `""` inside quotes is a literal quote.
fn scan_csv(bytes: &[u8], separator: u8) -> CsvScan {
    #[derive(PartialEq)]
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut line = 1usize;
    let mut opened = 1usize;
    let mut line_begin = 0usize;
    let mut blank_lines = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        let in_quotes = state == State::Quoted;
        state = match (state, b) {
            (State::FieldStart, b'"') => {
                opened = line;
                State::Quoted
            }
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (State::Quoted, _) => State::Quoted,
            (_, b) if b == separator || b == b'\n' => State::FieldStart,
            (State::FieldStart | State::QuoteInQuoted, b'\r') => State::FieldStart,
            _ => State::Unquoted,
        };
        if b == b'\n' {
            line += 1;
            if !in_quotes {
                let content = &bytes[line_begin..i];
                if content.is_empty() || content == b"\r" {
                    blank_lines.push(line_begin..i + 1);
                }
                line_begin = i + 1;
            }
        }
    }
    CsvScan {
        unterminated_quote: (state == State::Quoted).then_some(opened),
        blank_lines,
    }
}

fn read_jsonl(
    path: &Path,
    shown: &str,
    on_bad: OnBadLine,
) -> Result<(DataFrame, Vec<BadLine>), StageError> {
    let bytes = std::fs::read(path).map_err(|e| StageError::io(path, e))?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(StageError::data(format!(
            "{shown}: the file is empty: no rows, so no columns"
        )));
    }
    let (bytes, bad) = match on_bad {
        OnBadLine::Error => (bytes, Vec::new()),
        OnBadLine::Quarantine => split_jsonl(&bytes),
    };
    if bytes.is_empty() {
        // Every line was bad: no rows, no columns.
        return Ok((
            DataFrame::new(0, Vec::new()).map_err(|e| corrupt(shown, "JSON lines", &e))?,
            bad,
        ));
    }
    let result = polars_read(shown, "JSON lines", || {
        JsonReader::new(Cursor::new(bytes.as_slice()))
            .with_json_format(JsonFormat::JsonLines)
            .infer_schema_len(None)
            .finish()
    });
    match result {
        Ok(Ok(df)) => Ok((df, bad)),
        Ok(Err(e)) => {
            Err(first_bad_json_line(&bytes, shown)
                .unwrap_or_else(|| corrupt(shown, "JSON lines", &e)))
        }
        Err(panic) => Err(first_bad_json_line(&bytes, shown).unwrap_or(panic)),
    }
}

/// The first line of a JSON lines file that is not a JSON object, as an error
/// naming file, line and column.
pub fn first_bad_json_line(bytes: &[u8], shown: &str) -> Option<StageError> {
    bytes
        .split(|&b| b == b'\n')
        .enumerate()
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .find_map(|(i, line)| {
            let (col, msg) = json_line_problem(line)?;
            Some(StageError::data(format!("{shown}:{}:{col}: {msg}", i + 1)))
        })
}

/// What is wrong with one line of a JSON lines file, if anything: the
/// column and the problem.
fn json_line_problem(line: &[u8]) -> Option<(usize, String)> {
    match serde_json::from_slice::<serde_json::Value>(line) {
        Err(e) => {
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(k) => msg[..k].to_string(),
                None => msg,
            };
            Some((e.column().max(1), msg))
        }
        Ok(serde_json::Value::Object(_)) => None,
        Ok(other) => {
            let what = match other {
                serde_json::Value::Array(_) => "an array",
                serde_json::Value::String(_) => "a string",
                serde_json::Value::Number(_) => "a number",
                serde_json::Value::Bool(_) => "a boolean",
                _ => "null",
            };
            let col = line
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(0)
                + 1;
            Some((col, format!("expected a JSON object, found {what}")))
        }
    }
}

// ---------------------------------------------------------------------------
// The contract

/// One file's rows, split by the contract.
struct Split {
    kept: RecordBatch,
    quarantined: RecordBatch,
    violations: BTreeMap<String, usize>,
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
fn apply_contract(
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
    if let Some(first) = missing.first() {
        let list = missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let head = if missing.len() == 1 {
            format!(
                "{shown}: column {list} required by the contract {} is missing",
                contract.file
            )
        } else {
            format!(
                "{shown}: columns {list} required by the contract {} are missing",
                contract.file
            )
        };
        return Err(StageError::data(missing_column_message(
            &head, first, &names,
        )));
    }
    let extra: Vec<&String> = names
        .iter()
        .filter(|n| contract.column(n).is_none() && Some(n.as_str()) != label)
        .collect();
    let raw = match (contract.extra_columns, extra.is_empty()) {
        (_, true) | (ExtraColumns::Allow, _) => raw,
        (ExtraColumns::Error, false) => {
            let list = extra
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(StageError::data(format!(
                "{shown}: column(s) {list} are not in the contract {} (it says `extra_columns: error`)",
                contract.file
            )));
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
    let cast = convert(array, rule.ty).ok_or_else(|| {
        StageError::data(format!(
            "{shown}: column `{name}` has type {}, which cannot be cast to {} as the contract {} asks",
            array.data_type(),
            rule.ty,
            contract.file
        ))
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

// ---------------------------------------------------------------------------
// Concatenating files

/// The type a column takes when files disagree: integers widen to Int64,
/// numbers to Float64, anything else becomes text.
fn unify(column: &str, types: &[(&str, &DataType)]) -> Result<DataType, StageError> {
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
        return Err(StageError::data(format!(
            "column `{column}` is {t} in {file} but {ot} in {other}; these cannot be combined"
        )));
    }
    Ok(DataType::Utf8)
}

/// Concatenates the files' batches, matching columns by name (in the first
/// file's order) and unifying types.
fn concat_parts(parts: Vec<(String, RecordBatch)>) -> Result<RecordBatch, StageError> {
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
            let mut what = Vec::new();
            if !missing.is_empty() {
                what.push(format!("it lacks {}", missing.join(", ")));
            }
            if !extra.is_empty() {
                what.push(format!("it has {} in addition", extra.join(", ")));
            }
            return Err(StageError::data(format!(
                "{file} does not have the same columns as {first_file}: {}",
                what.join("; ")
            )));
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
                cast(&col, field.data_type()).map_err(|e| {
                    StageError::data(format!(
                        "{file}: column `{}` cannot be combined with the other files as {}: {e}",
                        field.name(),
                        field.data_type()
                    ))
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

#[cfg(test)]
mod tests {
    use super::*;
    use gigo_pipeline::{Artifact, NoProgress, role_of};
    use std::io::Write;

    fn build(params: serde_json::Value) -> Result<Box<dyn Stage>, Vec<ParamProblem>> {
        let mut registry = Registry::new();
        register(&mut registry);
        registry.get("ingest").unwrap().build(&params)
    }

    fn run(dir: &Path, params: serde_json::Value) -> Result<StageOutput, StageError> {
        let stage = build(params).unwrap();
        let ctx = StageContext::new(
            "ingest",
            1,
            dir.to_path_buf(),
            dir.to_path_buf(),
            dir.to_path_buf(),
            Arc::new(NoProgress),
        );
        stage.fingerprint(dir)?;
        stage.run(&Inputs::default(), &ctx)
    }

    fn run_err(dir: &Path, params: serde_json::Value) -> String {
        match run(dir, params) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e.to_string(),
        }
    }

    fn table(out: &StageOutput, port: &str) -> Arc<Table> {
        match &out.ports[port] {
            Artifact::Table(t) => t.clone(),
            other => panic!("{port} is {:?}", other.kind()),
        }
    }

    fn write(dir: &Path, name: &str, text: &[u8]) {
        let mut f = std::fs::File::create(dir.join(name)).unwrap();
        f.write_all(text).unwrap();
    }

    fn balanced(out: &StageOutput) {
        let created: usize = out.created.iter().map(|(_, n)| n).sum();
        let kept = table(out, "table").num_rows();
        let removed = table(out, "quarantined").num_rows();
        assert_eq!(created, kept + removed, "row accounting");
        assert_eq!(out.summary["rows_read"], created);
    }

    fn strings(t: &Table, column: &str) -> Vec<Option<String>> {
        let b = t.to_batch().unwrap();
        let c = cast(b.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
        let c = c.as_any().downcast_ref::<StringArray>().unwrap();
        c.iter().map(|v| v.map(String::from)).collect()
    }

    const CSV: &str = "id,x,name,label\n1,0.5,ann,0\n2,1.5,,1\n3,-2.25,cy,1\n";

    #[test]
    fn csv_with_label_sets_roles() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.csv", CSV.as_bytes());
        let out = run(dir.path(), json!({"path": "data.csv", "label": "label"})).unwrap();
        balanced(&out);
        let t = table(&out, "table");
        assert_eq!(t.num_rows(), 3);
        assert_eq!(t.label_column().unwrap(), "label");
        assert_eq!(t.columns_with_role(Role::Feature), vec!["id", "x", "name"]);
        assert_eq!(out.created, vec![("read from data.csv".to_string(), 3)]);
        assert_eq!(t.schema().field(0).data_type(), &DataType::Int64);
        assert_eq!(t.schema().field(1).data_type(), &DataType::Float64);
        assert_eq!(t.schema().field(2).data_type(), &DataType::Utf8);
        assert_eq!(strings(&t, "name")[1], None);
        assert_eq!(table(&out, "quarantined").num_rows(), 0);
        assert_eq!(out.summary["columns"][3]["role"], "label");
        assert_eq!(out.summary["files"][0]["rows"], 3);
    }

    #[test]
    fn the_four_formats_read_the_same_table() {
        use polars::prelude::{IpcWriter, ParquetWriter, SerWriter};
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.csv", CSV.as_bytes());
        write(
            dir.path(),
            "data.jsonl",
            b"{\"id\": 1, \"x\": 0.5, \"name\": \"ann\", \"label\": 0}\n{\"id\": 2, \"x\": 1.5, \"name\": null, \"label\": 1}\n\n{\"id\": 3, \"x\": -2.25, \"name\": \"cy\", \"label\": 1}\n",
        );
        let mut df = polars::df!(
            "id" => [1i64, 2, 3],
            "x" => [0.5f64, 1.5, -2.25],
            "name" => [Some("ann"), None, Some("cy")],
            "label" => [0i64, 1, 1],
        )
        .unwrap();
        ParquetWriter::new(std::fs::File::create(dir.path().join("data.parquet")).unwrap())
            .finish(&mut df)
            .unwrap();
        IpcWriter::new(std::fs::File::create(dir.path().join("data.arrow")).unwrap())
            .finish(&mut df)
            .unwrap();
        let reference = run(dir.path(), json!({"path": "data.csv", "label": "label"})).unwrap();
        let reference = table(&reference, "table").to_batch().unwrap();
        for file in ["data.jsonl", "data.parquet", "data.arrow"] {
            let out = run(dir.path(), json!({"path": file, "label": "label"})).unwrap();
            balanced(&out);
            let got = table(&out, "table").to_batch().unwrap();
            assert_eq!(got, reference, "{file}");
        }
        // An explicit format wins over the extension.
        std::fs::copy(dir.path().join("data.csv"), dir.path().join("data.txt")).unwrap();
        let out = run(
            dir.path(),
            json!({"path": "data.txt", "format": "csv", "label": "label"}),
        )
        .unwrap();
        assert_eq!(table(&out, "table").to_batch().unwrap(), reference);
    }

    #[test]
    fn a_glob_concatenates_the_matches_in_sorted_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("parts")).unwrap();
        write(dir.path(), "parts/b.csv", b"id,x\n3,1.5\n");
        write(dir.path(), "parts/a.csv", b"id,x\n1,2\n2,3\n");
        let out = run(dir.path(), json!({"path": "parts/*.csv"})).unwrap();
        balanced(&out);
        let t = table(&out, "table");
        assert_eq!(
            strings(&t, "id"),
            vec![Some("1".into()), Some("2".into()), Some("3".into())]
        );
        // Ints in one file and floats in the other combine as floats.
        assert_eq!(
            t.schema().field_with_name("x").unwrap().data_type(),
            &DataType::Float64
        );
        assert_eq!(
            out.created,
            vec![
                ("read from parts/a.csv".to_string(), 2),
                ("read from parts/b.csv".to_string(), 1)
            ]
        );
        let err = run_err(dir.path(), json!({"path": "parts/*.parquet"}));
        assert!(err.contains("no file matches `parts/*.parquet`"), "{err}");

        write(dir.path(), "parts/c.csv", b"id,y\n3,1.5\n");
        let err = run_err(dir.path(), json!({"path": "parts/*.csv"}));
        assert!(
            err.contains("parts/c.csv does not have the same columns as parts/a.csv"),
            "{err}"
        );
    }

    #[test]
    fn malformed_csv_errors_name_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "ragged.csv", b"a,b,c\n1,2,3\n4,5,6,7\n");
        let err = run_err(dir.path(), json!({"path": "ragged.csv"}));
        assert_eq!(
            err,
            "ragged.csv:3: expected 3 fields (as in the header), found 4"
        );

        write(dir.path(), "quote.csv", b"a,b\n1,2\n3,\"x\n4,5\n");
        let err = run_err(dir.path(), json!({"path": "quote.csv"}));
        assert!(err.starts_with("quote.csv:3: unterminated quote"), "{err}");

        write(dir.path(), "ok_quotes.csv", b"a,b\n1,\"x, \"\"y\"\"\nz\"\n");
        let out = run(dir.path(), json!({"path": "ok_quotes.csv"})).unwrap();
        assert_eq!(
            strings(&table(&out, "table"), "b"),
            vec![Some("x, \"y\"\nz".into())]
        );

        write(dir.path(), "utf8.csv", b"a,b\n1,ok\n2,\xff\xfe\n");
        let err = run_err(dir.path(), json!({"path": "utf8.csv"}));
        assert!(
            err.starts_with("utf8.csv:3: field 2 (`b`) is not valid UTF-8"),
            "{err}"
        );

        write(dir.path(), "empty.csv", b"");
        let err = run_err(dir.path(), json!({"path": "empty.csv"}));
        assert_eq!(err, "empty.csv: no header: the file is empty");

        write(dir.path(), "header.csv", b"a,b\n");
        let out = run(dir.path(), json!({"path": "header.csv"})).unwrap();
        balanced(&out);
        let t = table(&out, "table");
        assert_eq!((t.num_rows(), t.schema().fields().len()), (0, 2));
    }

    #[test]
    fn tsv_and_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.tsv", b"a\tb\n1\tx y\n");
        let out = run(dir.path(), json!({"path": "data.tsv"})).unwrap();
        assert_eq!(
            strings(&table(&out, "table"), "b"),
            vec![Some("x y".into())]
        );
        let err = run_err(dir.path(), json!({"path": "nope.csv"}));
        assert!(
            err.starts_with("nope.csv: the file does not exist"),
            "{err}"
        );
    }

    #[test]
    fn bad_json_line_error_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad.jsonl",
            b"{\"a\": 1}\n{\"a\": 2}\n{\"a\": 3,, }\n{\"a\": 4}\n",
        );
        let err = run_err(dir.path(), json!({"path": "bad.jsonl"}));
        assert!(err.starts_with("bad.jsonl:3:"), "{err}");

        write(dir.path(), "array.jsonl", b"{\"a\": 1}\n[1, 2]\n");
        let err = run_err(dir.path(), json!({"path": "array.jsonl"}));
        assert!(
            err.starts_with("array.jsonl:2:1: expected a JSON object, found an array"),
            "{err}"
        );
    }

    /// Found by `cargo fuzz run ingest` (fuzz/, README "Fuzzing"): a CSV
    /// whose header is one NUL byte crashed polars-arrow's exporter.
    #[test]
    fn a_nul_byte_in_a_csv_header_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "nul.csv", b"\0");
        let err = run_err(dir.path(), json!({"path": "nul.csv"}));
        assert_eq!(err, r#"nul.csv: column name "\0" contains a NUL byte"#);
    }

    /// The forged footer `cargo fuzz run exec_output` found (a block of
    /// 4 GiB): ingest's IPC reader refuses it before allocating.
    #[test]
    fn an_ipc_footer_block_past_the_end_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let forged = include_bytes!("../../../stages/src/testdata/ipc_huge_block.arrow");
        write(dir.path(), "forged.arrow", forged);
        let err = run_err(dir.path(), json!({"path": "forged.arrow"}));
        assert!(
            err.starts_with("forged.arrow: cannot read it as Arrow IPC: block 0"),
            "{err}"
        );
        assert!(err.ends_with("lies outside the 1803-byte file"), "{err}");
    }

    #[test]
    fn corrupt_parquet_and_ipc_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "bad.parquet",
            b"PAR1 this is not parquet at all PAR1",
        );
        let err = run_err(dir.path(), json!({"path": "bad.parquet"}));
        assert!(err.starts_with("bad.parquet: "), "{err}");
        write(dir.path(), "bad.arrow", b"ARROW1\0\0 garbage");
        let err = run_err(dir.path(), json!({"path": "bad.arrow"}));
        assert!(err.starts_with("bad.arrow: "), "{err}");
    }

    fn write_parquet(dir: &Path, name: &str, batch: &RecordBatch) {
        let file = std::fs::File::create(dir.join(name)).unwrap();
        let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        w.write(batch).unwrap();
        w.close().unwrap();
    }

    #[test]
    fn parquet_and_ipc_keep_every_column_type() {
        let sample = gigo_pipeline::samples::every_type_batch();
        let dir = tempfile::tempdir().unwrap();
        write_parquet(dir.path(), "all.parquet", &sample);
        let file = std::fs::File::create(dir.path().join("all.arrow")).unwrap();
        let mut w = arrow::ipc::writer::FileWriter::try_new(file, &sample.schema()).unwrap();
        w.write(&sample).unwrap();
        w.finish().unwrap();
        // Dictionary strings become plain strings; everything else as written.
        let expected = plain_batch(&sample).unwrap();
        assert_eq!(expected.schema().field(8).data_type(), &DataType::Utf8);
        for file in ["all.parquet", "all.arrow"] {
            let out = run(dir.path(), json!({"path": file, "label": "label"})).unwrap();
            balanced(&out);
            let got = table(&out, "table").to_batch().unwrap();
            assert_eq!(got.num_rows(), 4, "{file}");
            for (i, field) in expected.schema().fields().iter().enumerate() {
                let g = got.schema().field(i).clone();
                assert_eq!(g.name(), field.name(), "{file}");
                assert_eq!(g.data_type(), field.data_type(), "{file}: {}", field.name());
                assert_eq!(
                    got.column(i).as_ref(),
                    expected.column(i).as_ref(),
                    "{file}: {}",
                    field.name()
                );
            }
            assert_eq!(out.summary["columns"][0]["type"], "Decimal128(10, 2)");
        }
    }

    #[test]
    fn parquet_in_a_codec_arrow_rs_lacks_is_read_by_polars() {
        use polars::prelude::{ParquetCompression, ParquetWriter};
        let dir = tempfile::tempdir().unwrap();
        let mut df = polars::df!("x" => [1i64, 2, 3], "s" => ["a", "b", "c"]).unwrap();
        ParquetWriter::new(std::fs::File::create(dir.path().join("g.parquet")).unwrap())
            .with_compression(ParquetCompression::Gzip(None))
            .finish(&mut df)
            .unwrap();
        let out = run(dir.path(), json!({"path": "g.parquet"})).unwrap();
        balanced(&out);
        assert_eq!(
            strings(&table(&out, "table"), "s"),
            vec![Some("a".into()), Some("b".into()), Some("c".into())]
        );
    }

    #[test]
    fn a_panicking_reader_becomes_an_error_naming_the_file() {
        let e = guarded("d.parquet", "Parquet", || -> () {
            panic!("index out of bounds")
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("d.parquet: the Parquet reader panicked while reading it"),
            "{e}"
        );
        assert!(e.ends_with(": index out of bounds"), "{e}");
        assert_eq!(guarded("d.csv", "CSV", || 7).unwrap(), 7);
    }

    const TRUTHY: &str = "row,x,true_label,true_outlier,w,y\n1,0.5,0,false,1,0\n2,1.5,1,true,2,1\n";

    #[test]
    fn ignore_id_and_roles_without_a_contract() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "d.csv", TRUTHY.as_bytes());
        let out = run(
            dir.path(),
            json!({"path": "d.csv", "ignore": ["true_*"], "id": ["row"], "roles": {"w": "weight", "y": "label"}}),
        )
        .unwrap();
        balanced(&out);
        let t = table(&out, "table");
        assert_eq!(column_names(&t.to_batch().unwrap()), ["row", "x", "w", "y"]);
        assert_eq!(t.label_column().unwrap(), "y");
        assert_eq!(t.columns_with_role(Role::Id), vec!["row"]);
        assert_eq!(t.columns_with_role(Role::Weight), vec!["w"]);
        assert_eq!(t.columns_with_role(Role::Feature), vec!["x"]);
        assert_eq!(out.summary["ignored"]["count"], 2);
        assert_eq!(
            out.summary["ignored"]["columns"],
            json!(["true_label", "true_outlier"])
        );
        assert_eq!(out.summary["label"], "y");
        // Roles override the contract's.
        write(
            dir.path(),
            "c.yaml",
            b"columns:\n  x: {type: float, role: other}\n  y: {type: int, role: label}\n",
        );
        let out = run(
            dir.path(),
            json!({"path": "d.csv", "schema": "c.yaml", "roles": {"x": "feature", "true_*": "truth"}}),
        )
        .unwrap();
        let t = table(&out, "table");
        assert_eq!(t.label_column().unwrap(), "y");
        assert_eq!(
            t.columns_with_role(Role::Truth),
            vec!["true_label", "true_outlier"]
        );
        assert_eq!(t.columns_with_role(Role::Feature), vec!["row", "x", "w"]);
    }

    #[test]
    fn roles_that_match_nothing_or_conflict_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "d.csv", TRUTHY.as_bytes());
        let err = run_err(
            dir.path(),
            json!({"path": "d.csv", "ignore": ["true_lable"]}),
        );
        assert!(
            err.starts_with("d.csv: `true_lable` in `ignore` matches no column"),
            "{err}"
        );
        assert!(err.ends_with("(did you mean `true_label`?)"), "{err}");
        let err = run_err(
            dir.path(),
            json!({"path": "d.csv", "roles": {"wt": "weight"}}),
        );
        assert!(err.contains("(did you mean `w`?)"), "{err}");
        let err = run_err(
            dir.path(),
            json!({"path": "d.csv", "ignore": ["true_*"], "roles": {"true_label": "truth"}}),
        );
        assert!(err.contains("column `true_label` is ignored by"), "{err}");
        // A label named in `roles` must be in the file.
        let err = run_err(
            dir.path(),
            json!({"path": "d.csv", "roles": {"yy": "label"}}),
        );
        assert!(
            err.starts_with("label column `yy` is not in d.csv"),
            "{err}"
        );
        // The contract cannot require a column `ignore` drops.
        write(
            dir.path(),
            "c.yaml",
            b"columns:\n  true_label: {type: int}\n",
        );
        let err = run_err(
            dir.path(),
            json!({"path": "d.csv", "schema": "c.yaml", "ignore": ["true_*"]}),
        );
        assert!(
            err.starts_with(
                "d.csv: column `true_label` is in the contract c.yaml but `ignore` drops it"
            ),
            "{err}"
        );
        // Build time: conflicts that need no data.
        let problems = build(json!({"path": "d.csv", "label": "y", "ignore": ["y"]}))
            .err()
            .unwrap();
        assert_eq!(problems[0].path, vec!["ignore"]);
        assert!(
            problems[0]
                .message
                .contains("label column `y` cannot also be ignored")
        );
        let problems = build(json!({"path": "d.csv", "label": "y", "roles": {"y": "id"}}))
            .err()
            .unwrap();
        assert!(problems[0].message.contains("cannot also be given role id"));
        let problems = build(json!({"path": "d.csv", "ignore": ["a"], "id": ["a"]}))
            .err()
            .unwrap();
        assert!(problems[0].message.contains("both ignored"));
        assert!(build(json!({"path": "d.csv", "roles": {"a": "boss"}})).is_err());
    }

    #[test]
    fn bad_lines_can_be_quarantined_with_every_row_accounted() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "d.csv",
            b"a,b\n1,x\n2,y,extra\n3,\"open\n4,z\n\n5,\xff\n6,w\n",
        );
        let err = run_err(dir.path(), json!({"path": "d.csv"}));
        assert!(err.starts_with("d.csv:4: unterminated quote"), "{err}");
        write(dir.path(), "blank.csv", b"a,b\n1,x\n\n\n2,y,extra\n");
        let err = run_err(dir.path(), json!({"path": "blank.csv"}));
        assert!(err.starts_with("blank.csv:5: expected 2 fields"), "{err}");
        let out = run(
            dir.path(),
            json!({"path": "d.csv", "on_bad_line": "quarantine"}),
        )
        .unwrap();
        balanced(&out);
        let kept = table(&out, "table");
        assert_eq!(
            strings(&kept, "a"),
            vec![Some("1".into()), Some("4".into()), Some("6".into())]
        );
        let q = table(&out, "quarantined");
        assert_eq!(q.num_rows(), 3);
        assert_eq!(
            strings(&q, LINE_COLUMN),
            vec![Some("3".into()), Some("4".into()), Some("7".into())]
        );
        assert_eq!(
            strings(&q, RAW_COLUMN),
            vec![
                Some("2,y,extra".into()),
                Some("3,\"open".into()),
                Some("5,\u{fffd}".into())
            ]
        );
        assert_eq!(
            strings(&q, REASON_COLUMN),
            vec![
                Some("bad line: expected 2 fields (as in the header), found 3".into()),
                Some("bad line: unterminated quote".into()),
                Some("bad line: field 2 is not valid UTF-8".into()),
            ]
        );
        assert_eq!(strings(&q, "a"), vec![None, None, None]);
        assert_eq!(
            role_of(q.schema().field_with_name(RAW_COLUMN).unwrap()),
            Role::Added
        );
        assert_eq!(out.summary["files"][0]["bad_lines"], 3);
        assert_eq!(out.summary["rows_read"], 6);

        // With a contract: its violations and the bad lines share the port.
        write(
            dir.path(),
            "c.yaml",
            b"columns:\n  a: {type: int, max: 5}\n",
        );
        let out = run(
            dir.path(),
            json!({"path": "d.csv", "schema": "c.yaml", "on_bad_line": "quarantine"}),
        )
        .unwrap();
        balanced(&out);
        let q = table(&out, "quarantined");
        assert_eq!(q.num_rows(), 4);
        assert_eq!(strings(&q, "a")[0], Some("6".into()));
        assert_eq!(strings(&q, LINE_COLUMN)[0], None);
    }

    #[test]
    fn bad_json_lines_can_be_quarantined() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "d.jsonl",
            b"{\"a\": 1}\n{\"a\": 2,, }\n[1, 2]\n{\"a\": 4}\n",
        );
        let out = run(
            dir.path(),
            json!({"path": "d.jsonl", "on_bad_line": "quarantine"}),
        )
        .unwrap();
        balanced(&out);
        assert_eq!(table(&out, "table").num_rows(), 2);
        let q = table(&out, "quarantined");
        assert_eq!(
            strings(&q, LINE_COLUMN),
            vec![Some("2".into()), Some("3".into())]
        );
        assert_eq!(strings(&q, RAW_COLUMN)[1], Some("[1, 2]".into()));
        // Every line bad: an empty table, every line quarantined.
        write(dir.path(), "bad.jsonl", b"nope\n[1]\n");
        let out = run(
            dir.path(),
            json!({"path": "bad.jsonl", "on_bad_line": "quarantine"}),
        )
        .unwrap();
        balanced(&out);
        assert_eq!(table(&out, "quarantined").num_rows(), 2);
        // Binary formats have no lines.
        let problems = build(json!({"path": "d.parquet", "on_bad_line": "quarantine"}))
            .err()
            .unwrap();
        assert_eq!(problems[0].path, vec!["on_bad_line"]);
    }

    const CONTRACT: &str = "columns:
  age: {type: int, nullable: false, min: 17, max: 100}
  workclass: {type: string, allowed: [Private, Self-emp]}
  income: {type: float, min: 0}
  label: {type: int, role: label, allowed: [0, 1]}
  id: {type: string, role: id}
extra_columns: drop
";

    #[test]
    fn contract_violations_are_quarantined_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "contract.yaml", CONTRACT.as_bytes());
        write(
            dir.path(),
            "people.csv",
            b"id,age,workclass,income,label,notes\n\
007,30,Private,100.5,0,a\n\
008,212,Private,5,1,b\n\
009,abc,Self-emp,7,0,c\n\
010,,Private,8,1,d\n\
011,40,Gov,9,2,e\n\
012,50,Self-emp,,1,f\n\
013,16,Private,-1,0,g\n",
        );
        let out = run(
            dir.path(),
            json!({"path": "people.csv", "schema": "contract.yaml"}),
        )
        .unwrap();
        balanced(&out);
        let kept = table(&out, "table");
        let quarantined = table(&out, "quarantined");
        assert_eq!(kept.num_rows(), 2);
        assert_eq!(quarantined.num_rows(), 5);
        // Strings stay strings (leading zeros kept), `notes` is dropped.
        assert_eq!(
            strings(&kept, "id"),
            vec![Some("007".into()), Some("012".into())]
        );
        assert!(kept.schema().field_with_name("notes").is_err());
        assert_eq!(
            kept.schema().field_with_name("age").unwrap().data_type(),
            &DataType::Int64
        );
        assert_eq!(kept.label_column().unwrap(), "label");
        assert_eq!(kept.columns_with_role(Role::Id), vec!["id"]);
        assert_eq!(
            kept.columns_with_role(Role::Feature),
            vec!["age", "workclass", "income"]
        );
        assert_eq!(
            strings(&quarantined, REASON_COLUMN),
            vec![
                Some("age: above max 100".into()),
                Some("age: not an int".into()),
                Some("age: missing but not nullable".into()),
                Some("workclass: not an allowed value; label: not an allowed value".into()),
                Some("age: below min 17; income: below min 0".into()),
            ]
        );
        // Quarantined rows are as read: the bad age is still there.
        assert_eq!(strings(&quarantined, "age")[1], Some("abc".into()));
        let reason_field = quarantined.schema().field_with_name(REASON_COLUMN).unwrap();
        assert_eq!(role_of(reason_field), Role::Added);
        assert_eq!(out.summary["rows_quarantined"], 5);
        assert_eq!(out.summary["quarantined_by_reason"]["age: not an int"], 1);
        assert_eq!(out.summary["violations_by_rule"]["age: below min 17"], 1);
        assert_eq!(quarantined.value_counts(REASON_COLUMN).unwrap().len(), 5);

        // `label:` overrides the contract's label column.
        let out = run(
            dir.path(),
            json!({"path": "people.csv", "schema": "contract.yaml", "label": "notes"}),
        )
        .unwrap();
        let kept = table(&out, "table");
        assert_eq!(kept.label_column().unwrap(), "notes");
        assert_eq!(kept.columns_with_role(Role::Other), vec!["label"]);
    }

    #[test]
    fn contract_casts_other_formats_and_floats() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "c.yaml",
            b"columns:\n  n: {type: int}\n  b: {type: bool}\n  s: {type: string}\n",
        );
        write(
            dir.path(),
            "d.jsonl",
            b"{\"n\": 1.0, \"b\": 1, \"s\": 5}\n{\"n\": 1.5, \"b\": 2, \"s\": \"x\"}\n",
        );
        let out = run(dir.path(), json!({"path": "d.jsonl", "schema": "c.yaml"})).unwrap();
        balanced(&out);
        assert_eq!(table(&out, "table").num_rows(), 1);
        assert_eq!(
            strings(&table(&out, "quarantined"), REASON_COLUMN),
            vec![Some("n: not an int; b: not a bool".into())]
        );

        write(
            dir.path(),
            "list.jsonl",
            b"{\"n\": [1, 2], \"b\": true, \"s\": \"x\"}\n",
        );
        let err = run_err(
            dir.path(),
            json!({"path": "list.jsonl", "schema": "c.yaml"}),
        );
        assert!(
            err.starts_with("list.jsonl: column `n` has type List"),
            "{err}"
        );
        assert!(err.contains("cannot be cast to int"), "{err}");
    }

    #[test]
    fn contract_errors_have_places() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "c.yaml",
            b"columns:\n  age: {type: int, maximum: 3}\n",
        );
        write(dir.path(), "d.csv", b"age\n1\n");
        let err = run_err(dir.path(), json!({"path": "d.csv", "schema": "c.yaml"}));
        assert!(
            err.contains("c.yaml:2:20: error: unknown column rule `maximum`"),
            "{err}"
        );
        assert!(err.contains("did you mean `max`?"), "{err}");

        write(dir.path(), "c.yaml", b"columns:\n  agee: {type: int}\n");
        let err = run_err(dir.path(), json!({"path": "d.csv", "schema": "c.yaml"}));
        assert!(
            err.starts_with("d.csv: column `agee` required by the contract c.yaml is missing; its columns are: age (did you mean `age`?)"),
            "{err}"
        );

        write(
            dir.path(),
            "c.yaml",
            b"columns:\n  age: {type: int}\nextra_columns: error\n",
        );
        write(dir.path(), "e.csv", b"age,zip\n1,2\n");
        let err = run_err(dir.path(), json!({"path": "e.csv", "schema": "c.yaml"}));
        assert!(
            err.contains("column(s) `zip` are not in the contract c.yaml"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_label_column_lists_the_columns() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.csv", CSV.as_bytes());
        let err = run_err(dir.path(), json!({"path": "data.csv", "label": "lable"}));
        assert_eq!(
            err,
            "label column `lable` is not in data.csv; its columns are: id, x, name, label (did you mean `label`?)"
        );
    }

    #[test]
    fn parameters_are_checked_at_build_time() {
        let problems = build(json!({"path": "data.xlsx"})).err().unwrap();
        assert_eq!(problems[0].path, vec!["path"]);
        assert!(problems[0].message.contains("cannot tell the format"));
        assert!(build(json!({"path": "data.xlsx", "format": "csv"})).is_ok());
        assert!(build(json!({"path": "data/*"})).is_ok());
        assert!(build(json!({"path": "data/*.txt"})).is_err());
        assert!(build(json!({"path": "a.csv", "sep": ","})).is_err());
    }

    #[test]
    fn the_fingerprint_follows_the_content() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data.csv", CSV.as_bytes());
        let stage = build(json!({"path": "*.csv"})).unwrap();
        let a = stage.fingerprint(dir.path()).unwrap();
        write(dir.path(), "data.csv", b"id\n1\n");
        let b = stage.fingerprint(dir.path()).unwrap();
        assert_ne!(a, b);
        assert!(b.unwrap().starts_with("data.csv\t"));
    }

    mod never_panics {
        use super::*;
        use proptest::prelude::*;

        fn text() -> impl Strategy<Value = Vec<u8>> {
            proptest::collection::vec(
                prop::sample::select(vec![
                    b'a', b'1', b'7', b',', b'"', b'\n', b'\r', b'.', b' ', b'-', b'{', b'}', b':',
                    b'[', 0xff, b'\t',
                ]),
                0..60,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
            #[test]
            fn any_bytes_give_a_table_or_an_error(bytes in text(), header in any::<bool>()) {
                let dir = tempfile::tempdir().unwrap();
                let mut content = if header { b"a,b\n".to_vec() } else { Vec::new() };
                content.extend_from_slice(&bytes);
                write(dir.path(), "c.yaml", b"columns:\n  a: {type: int, min: 0, nullable: false}\n");
                for name in ["d.csv", "d.jsonl", "d.parquet", "d.arrow"] {
                    write(dir.path(), name, &content);
                    for params in [json!({"path": name}), json!({"path": name, "schema": "c.yaml"})] {
                        match run(dir.path(), params) {
                            Ok(out) => balanced(&out),
                            Err(e) => {
                                let e = e.to_string();
                                prop_assert!(!e.contains("panicked"), "{name}: {e}");
                                prop_assert!(!e.contains("internal error"), "{name}: {e}");
                            }
                        }
                    }
                }
            }
        }
    }
}
