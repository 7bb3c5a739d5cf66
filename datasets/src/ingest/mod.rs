//! The `ingest` stage: reads CSV, Parquet, Arrow IPC or JSON lines files
//! (through polars) into an Arrow table, checks them against an optional
//! dataset contract, and sets column roles.
//!
//! Rows that break the contract go to the `quarantined` port with a
//! `removed_reason` such as `age: above max 100`; the others go to `table`.
//! Malformed files fail the stage with the file, line and (where known)
//! column of the first problem.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use gigo_pipeline::budget::Need;
use gigo_pipeline::store::file_sha256;
use gigo_pipeline::{
    Inputs, Memory, ParamProblem, PortSpec, Registry, Role, Source, Stage, StageContext,
    StageError, StageOutput, Table, TableWriter,
};

use crate::contract::{ColumnType, Contract};
use crate::error::{DatasetError, WantedBy};

mod bad_lines;
mod csv_stream;
mod enforce;
mod files;
mod fingerprint;
mod jsonl_stream;
mod lists;
mod readers;
mod report;
mod roles;
mod streams;
#[cfg(test)]
mod tests;

use bad_lines::BadLine;
pub use bad_lines::{LINE_COLUMN, OnBadLine, RAW_COLUMN};
use enforce::{Split, apply_contract, role_for, with_bad_lines, with_roles};
pub use files::matched_files;
use files::{concat_parts, is_glob, shown};
pub use fingerprint::FingerprintMode;
use lists::Lists;
pub use readers::first_bad_json_line;
use readers::read_file;
use report::{FileCounts, Report};
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
    /// What the cache key covers of each file: `metadata` (the default: size,
    /// modification and status-change times, inode, and a Parquet file's
    /// footer; microseconds whatever the size) or `content` (SHA-256 of every
    /// byte, about a second per GB: for file systems with coarse
    /// timestamps). Either way a file that changes while it is read fails
    /// the stage.
    #[serde(default)]
    pub fingerprint: FingerprintMode,
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
features unless the contract says otherwise. A list column of numbers `x` (one series per row) \
becomes the step columns `x_t0 ..` that the sequence encoders read, padded with nulls to the \
table's longest list.";

/// Registers the `ingest` stage type.
pub fn register(registry: &mut Registry) {
    registry.register::<Params, _>("ingest", DOC, |p| {
        Ok(Box::new(Ingest::new(p)?) as Box<dyn Stage>)
    });
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
                DatasetError::UnknownFormat {
                    file: shown.to_string(),
                    known: EXTENSIONS,
                }
                .into()
            }),
        }
    }
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

    fn memory(&self) -> Memory {
        // No inputs: what it reads is its own (Parquet in batches; other
        // formats a file at a time).
        Memory::STREAMS
    }

    /// What it reads whole when its files do not stream: four times their
    /// size on disk (the most its budget check lets through), else the
    /// batches in flight.
    fn reserve(&self, need: &Need, _inputs: &Inputs, ctx: &StageContext) -> u64 {
        let Ok(files) = matched_files(&self.params.path, &ctx.base_dir) else {
            return need.bytes; // the run says what is wrong
        };
        let formats: Result<Vec<Format>, StageError> = files
            .iter()
            .map(|p| self.format_of(p, &shown(p, &ctx.base_dir)))
            .collect();
        match formats.and_then(|f| streams::can_stream(&files, &f)) {
            Ok(false) => need
                .bytes
                .max(total_size(&files).saturating_mul(WHOLE_READ_FACTOR)),
            _ => need.bytes,
        }
    }

    fn fingerprint(&self, base_dir: &Path) -> Result<Option<String>, StageError> {
        let mut out = String::new();
        for path in matched_files(&self.params.path, base_dir)? {
            let line = fingerprint::of(self.params.fingerprint, &path)?;
            out.push_str(&format!("{}\t{line}\n", shown(&path, base_dir)));
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
        let formats = files
            .iter()
            .map(|p| self.format_of(p, &shown(p, &ctx.base_dir)))
            .collect::<Result<Vec<_>, _>>()?;
        // Parquet files of one schema, and large CSV and JSON lines files
        // whose types are known for certain, stream through, batch by batch,
        // into the store; other inputs are read whole, file by file.
        let plan = self.plan(&files, &formats, &string_columns, ctx)?;
        let whole = matches!(plan, Plan::Whole);
        // List columns become step columns: a streamed table's lengths are
        // measured first; a table read whole is widened once concatenated.
        let mut lists = match plan {
            Plan::Arrow | Plan::Jsonl { .. } => self.measure_lists(&plan, &files, &formats, ctx)?,
            Plan::Csv { .. } | Plan::Whole => None,
        };
        let mut sink = if whole {
            check_budget(&files, ctx.memory_budget)?;
            Sink::Memory {
                kept: Vec::new(),
                quarantined: Vec::new(),
            }
        } else {
            Sink::Stored {
                kept: None,
                quarantined: None,
            }
        };
        let mut output = StageOutput::new();
        let mut report = Report::default();
        let mut given: BTreeMap<String, Role> = BTreeMap::new();
        let quarantine_role = |name: &str, roles: &dyn Fn(&str) -> Role| {
            if [LINE_COLUMN, RAW_COLUMN].contains(&name)
                && self.params.on_bad_line == OnBadLine::Quarantine
            {
                Role::Added
            } else {
                roles(name)
            }
        };
        for (path, &format) in files.iter().zip(&formats) {
            let shown = shown(path, &ctx.base_dir);
            ctx.progress.message(&shown);
            let before = fingerprint::stamp(path)?;
            let mut counts = FileCounts::default();
            let pieces = self.pieces(&plan, path, format, &shown, &string_columns, ctx)?;
            // The columns are checked and their roles resolved once a file.
            let mut ignored: Option<Vec<String>> = None;
            for piece in pieces {
                let (raw, bad) = piece?;
                let dropped = match &ignored {
                    Some(dropped) => dropped,
                    None => {
                        check_unique_names(&raw, &shown)?;
                        if let Some(l) = &named_label {
                            check_label(&raw, l, &shown)?;
                        }
                        let resolved = self.roles.resolve(&column_names(&raw), &shown)?;
                        report.ignored(resolved.ignored.clone());
                        given.extend(resolved.roles);
                        ignored.insert(resolved.ignored)
                    }
                };
                let raw = drop_ignored(&shown, raw, dropped, contract.as_ref())?;
                let mut split =
                    apply_contract(&shown, raw, contract.as_ref(), named_label.as_deref())?;
                if let Some(l) = &lists {
                    split.kept = l.widen(&shown, split.kept)?;
                }
                counts.add(&split);
                if self.params.on_bad_line == OnBadLine::Quarantine {
                    split.quarantined = with_bad_lines(&shown, split.quarantined, &bad)?;
                }
                counts.rows_read += bad.len();
                counts.quarantined += bad.len();
                counts.bad_lines += bad.len();
                let roles = |name: &str| {
                    role_for(
                        list_of(&lists, name),
                        label.as_deref(),
                        &given,
                        contract.as_ref(),
                    )
                };
                sink.push(ctx, &shown, split, &roles, &|name: &str| {
                    quarantine_role(name, &roles)
                })?;
            }
            if fingerprint::stamp(path)? != before {
                return Err(DatasetError::ChangedWhileRead { file: shown }.into());
            }
            let read = if whole { "whole" } else { "in batches" };
            report.file(&shown, format, read, &counts);
            output = output.created(format!("read from {shown}"), counts.rows_read);
            ctx.progress.advance(1);
        }

        if let Sink::Memory { kept, .. } = &mut sink {
            lists = widen_whole(kept, &self.params.path)?;
        }
        let roles = |name: &str| {
            role_for(
                list_of(&lists, name),
                label.as_deref(),
                &given,
                contract.as_ref(),
            )
        };
        let (kept, quarantined) =
            sink.finish(&roles, &|name: &str| quarantine_role(name, &roles))?;

        let rows_read: usize = output.created.iter().map(|(_, n)| n).sum();
        let mut summary = report.finish(
            ctx,
            rows_read,
            &kept,
            &quarantined,
            label.as_deref(),
            self.params.schema.as_deref(),
        )?;
        if let Some(l) = &lists {
            ctx.log(l.message());
            summary["lists"] = l.summary();
        }
        Ok(output
            .with("table", kept)
            .with("quarantined", quarantined)
            .with_summary(summary))
    }
}

/// How `ingest` reads its files.
enum Plan {
    /// Each file whole, types unified across files at the end.
    Whole,
    /// Parquet files, or Arrow IPC files, of one schema, in batches.
    Arrow,
    /// CSV or TSV files, in chunks of records parsed with these types.
    Csv {
        separator: u8,
        schema: polars::prelude::SchemaRef,
    },
    /// JSON lines files, in chunks of lines parsed with these types.
    Jsonl { schema: polars::prelude::SchemaRef },
}

/// Text files of at least this size in all stream (when their types are
/// known for certain), even within the budget: reading them whole would hold
/// about four times this.
const STREAM_TEXT_BYTES: u64 = 256 << 20;

impl Ingest {
    /// The pieces of one file as `plan` reads it.
    fn pieces(
        &self,
        plan: &Plan,
        path: &Path,
        format: Format,
        shown: &str,
        string_columns: &[String],
        ctx: &StageContext,
    ) -> Result<Pieces, StageError> {
        Ok(match plan {
            Plan::Arrow => Box::new(
                match format {
                    Format::Ipc => streams::ipc_batches(path, shown, ctx.batch_rows)?,
                    _ => streams::parquet_batches(path, shown, ctx.batch_rows)?,
                }
                .map(|b| b.map(|b| (b, Vec::new()))),
            ),
            Plan::Csv { separator, schema } => csv_stream::batches(
                path,
                shown,
                *separator,
                schema.clone(),
                self.params.on_bad_line,
                ctx.batch_rows,
            )?,
            Plan::Jsonl { schema } => jsonl_stream::batches(
                path,
                shown,
                schema.clone(),
                self.params.on_bad_line,
                ctx.batch_rows,
            )?,
            Plan::Whole => Box::new(std::iter::once(read_file(
                path,
                shown,
                format,
                string_columns,
                self.params.on_bad_line,
            ))),
        })
    }

    /// The list columns of a streamed table and the longest list in them:
    /// from the first file's schema when every list has a fixed size, else
    /// by reading every file once more (see [`lists`]). Columns `ignore`
    /// drops are left out.
    fn measure_lists(
        &self,
        plan: &Plan,
        files: &[PathBuf],
        formats: &[Format],
        ctx: &StageContext,
    ) -> Result<Option<Lists>, StageError> {
        let (Some(first), Some(&format)) = (files.first(), formats.first()) else {
            return Ok(None);
        };
        let shown_first = shown(first, &ctx.base_dir);
        let Some(piece) = self
            .pieces(plan, first, format, &shown_first, &[], ctx)?
            .next()
        else {
            return Ok(None);
        };
        let (batch, _) = piece?;
        let ignored = self
            .roles
            .resolve(&column_names(&batch), &shown_first)?
            .ignored;
        let Some(mut lists) = Lists::of(&batch.schema()).and_then(|l| l.without(&ignored)) else {
            return Ok(None);
        };
        if lists.known() {
            return Ok(Some(lists));
        }
        for (path, &format) in files.iter().zip(formats) {
            let shown = shown(path, &ctx.base_dir);
            ctx.progress.message(&format!("{shown}: list lengths"));
            for piece in self.pieces(plan, path, format, &shown, &[], ctx)? {
                lists.observe(&piece?.0);
            }
        }
        Ok(Some(lists))
    }

    fn plan(
        &self,
        files: &[PathBuf],
        formats: &[Format],
        string_columns: &[String],
        ctx: &StageContext,
    ) -> Result<Plan, StageError> {
        if streams::can_stream(files, formats)? {
            return Ok(Plan::Arrow);
        }
        let separator = match formats.first() {
            Some(Format::Csv) => Some(b','),
            Some(Format::Tsv) => Some(b'\t'),
            Some(Format::Jsonl) => None,
            _ => return Ok(Plan::Whole),
        };
        let on_disk = total_size(files);
        let large = on_disk.saturating_mul(WHOLE_READ_FACTOR) > ctx.memory_budget
            || on_disk >= STREAM_TEXT_BYTES;
        if !large || formats.iter().any(|f| Some(f) != formats.first()) {
            return Ok(Plan::Whole);
        }
        let on_bad = self.params.on_bad_line;
        let mut first: Option<polars::prelude::SchemaRef> = None;
        for path in files {
            let shown = shown(path, &ctx.base_dir);
            ctx.progress.message(&format!("{shown}: column types"));
            let inferred = match separator {
                Some(sep) => {
                    csv_stream::infer(path, &shown, sep, string_columns, on_bad, ctx.batch_rows)?
                }
                None => jsonl_stream::infer(path, &shown, on_bad, ctx.batch_rows)?,
            };
            let Some(schema) = inferred else {
                return Ok(Plan::Whole);
            };
            match &first {
                None => first = Some(schema),
                Some(s) if *s == schema => {}
                Some(_) => return Ok(Plan::Whole),
            }
        }
        Ok(match (first, separator) {
            (Some(schema), Some(separator)) => Plan::Csv { separator, schema },
            (Some(schema), None) => Plan::Jsonl { schema },
            (None, _) => Plan::Whole,
        })
    }
}

/// Where `ingest` puts the rows that pass and those quarantined: parts of
/// each file, concatenated at the end (types unified across files), or
/// files in the store written batch by batch (Parquet files of one schema).
enum Sink {
    Memory {
        kept: Vec<(String, RecordBatch)>,
        quarantined: Vec<(String, RecordBatch)>,
    },
    /// (Writers are boxed: large beside the other variant.)
    Stored {
        kept: Option<Box<TableWriter>>,
        quarantined: Option<Box<TableWriter>>,
    },
}

type RoleOf<'a> = &'a dyn Fn(&str) -> Role;

/// What one file gives: record batches, each with the malformed lines set
/// aside while it was read.
type Pieces = Box<dyn Iterator<Item = Result<(RecordBatch, Vec<BadLine>), StageError>>>;

/// The pieces of a file read chunk by chunk, where `next` parses the next
/// chunk into its rows and bad lines (`None` at the end). All the file's bad
/// lines come with its last batch, as when it is read whole, so they follow
/// its quarantined rows either way.
fn bad_lines_last(
    mut next: impl FnMut() -> Result<Option<(RecordBatch, Vec<BadLine>)>, StageError> + 'static,
) -> Pieces {
    let mut bad_lines: Vec<BadLine> = Vec::new();
    let mut pending: Option<RecordBatch> = None;
    let mut step = move || -> Result<Option<(RecordBatch, Vec<BadLine>)>, StageError> {
        loop {
            let Some((batch, bad)) = next()? else {
                return Ok(pending.take().map(|b| (b, std::mem::take(&mut bad_lines))));
            };
            bad_lines.extend(bad);
            if let Some(done) = pending.replace(batch) {
                return Ok(Some((done, Vec::new())));
            }
        }
    };
    Box::new(std::iter::from_fn(move || step().transpose()))
}

impl Sink {
    fn push(
        &mut self,
        ctx: &StageContext,
        shown: &str,
        split: Split,
        roles: RoleOf<'_>,
        quarantine_roles: RoleOf<'_>,
    ) -> Result<(), StageError> {
        match self {
            Sink::Memory { kept, quarantined } => {
                kept.push((shown.to_string(), split.kept));
                quarantined.push((shown.to_string(), split.quarantined));
            }
            Sink::Stored { kept, quarantined } => {
                for (writer, port, batch, role) in [
                    (kept, "table", split.kept, roles),
                    (
                        quarantined,
                        "quarantined",
                        split.quarantined,
                        quarantine_roles,
                    ),
                ] {
                    let batch = with_roles(&batch, role)?;
                    if writer.is_none() {
                        *writer = Some(Box::new(ctx.table_writer(port, batch.schema())?));
                    }
                    if let Some(w) = writer {
                        w.write(&batch)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(
        self,
        roles: RoleOf<'_>,
        quarantine_roles: RoleOf<'_>,
    ) -> Result<(Source, Source), StageError> {
        match self {
            Sink::Memory { kept, quarantined } => {
                let kept = with_roles(&concat_parts(kept)?, roles)?;
                let quarantined = with_roles(&concat_parts(quarantined)?, quarantine_roles)?;
                Ok((
                    Source::Memory(Arc::new(Table::from_batch(kept))),
                    Source::Memory(Arc::new(Table::from_batch(quarantined))),
                ))
            }
            Sink::Stored { kept, quarantined } => {
                let (Some(kept), Some(quarantined)) = (kept, quarantined) else {
                    return Err(StageError::internal("ingest streamed no batch at all"));
                };
                Ok((
                    Source::Stored(Arc::new((*kept).finish()?)),
                    Source::Stored(Arc::new((*quarantined).finish()?)),
                ))
            }
        }
    }
}

/// The column whose role `name` takes: a widened list's step takes the
/// list's (named in `roles`, `id`, `ignore`), any other column its own.
fn list_of<'a>(lists: &'a Option<Lists>, name: &'a str) -> &'a str {
    lists.as_ref().and_then(|l| l.origin(name)).unwrap_or(name)
}

/// The parts of a table read whole, concatenated and with their list
/// columns widened (see [`lists`]), as one part; `None` when it has no list
/// column. `shown` names the files in errors.
fn widen_whole(
    parts: &mut Vec<(String, RecordBatch)>,
    shown: &str,
) -> Result<Option<Lists>, StageError> {
    let Some(mut lists) = parts.first().and_then(|(_, b)| Lists::of(&b.schema())) else {
        return Ok(None);
    };
    let batch = concat_parts(std::mem::take(parts))?;
    lists.observe(&batch);
    let batch = lists.widen(shown, batch)?;
    parts.push((shown.to_string(), batch));
    Ok(Some(lists))
}

/// How many times its size on disk a file read whole takes at its peak (the
/// bytes, polars' frame, the Arrow copy), and what is held in the end (the
/// parts of every file, concatenated).
const WHOLE_READ_FACTOR: u64 = 4;

/// The size of `files` on disk (those that can be asked).
fn total_size(files: &[PathBuf]) -> u64 {
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum()
}

/// Refuses files read whole whose size says they would not fit `budget`,
/// before reading any.
fn check_budget(files: &[PathBuf], budget: u64) -> Result<(), DatasetError> {
    let on_disk = total_size(files);
    let need = on_disk.saturating_mul(WHOLE_READ_FACTOR);
    if need > budget {
        return Err(DatasetError::OverBudget {
            files: files.len(),
            on_disk,
            need,
            budget,
        });
    }
    Ok(())
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
        return Err(DatasetError::ColumnConflict {
            file: shown.to_string(),
            column: name.clone(),
            problem: format!(
                "is in the contract {} but `ignore` drops it; remove it from one of them",
                c.file
            ),
        }
        .into());
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

fn check_unique_names(batch: &RecordBatch, shown: &str) -> Result<(), DatasetError> {
    let mut seen = HashSet::new();
    for name in column_names(batch) {
        if !seen.insert(name.clone()) {
            return Err(DatasetError::ColumnConflict {
                file: shown.to_string(),
                column: name,
                problem: "appears more than once".into(),
            });
        }
    }
    Ok(())
}

fn check_label(batch: &RecordBatch, label: &str, shown: &str) -> Result<(), DatasetError> {
    let names = column_names(batch);
    if names.iter().any(|n| n == label) {
        return Ok(());
    }
    Err(DatasetError::MissingColumn {
        file: shown.to_string(),
        wanted: vec![label.to_string()],
        by: WantedBy::Label,
        columns: names,
    })
}
