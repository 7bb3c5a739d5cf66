//! The `ingest` summary: one entry per file read, then the totals, the
//! quarantine by reason, the columns with their roles and what `ignore`
//! dropped.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use gigo_pipeline::{REASON_COLUMN, Source, StageContext, StageError};

use super::Format;
use super::enforce::Split;

/// The rows of one file, as its batches pass the contract.
#[derive(Debug, Default)]
pub(super) struct FileCounts {
    pub(super) rows_read: usize,
    pub(super) kept: usize,
    pub(super) quarantined: usize,
    pub(super) bad_lines: usize,
    pub(super) violations: BTreeMap<String, usize>,
}

impl FileCounts {
    /// Adds one batch's split (its bad lines counted apart).
    pub(super) fn add(&mut self, split: &Split) {
        self.rows_read += split.kept.num_rows() + split.quarantined.num_rows();
        self.kept += split.kept.num_rows();
        self.quarantined += split.quarantined.num_rows();
        for (k, v) in &split.violations {
            *self.violations.entry(k.clone()).or_default() += v;
        }
    }
}

/// What `ingest` gathers while it reads its files, for the summary.
#[derive(Debug, Default)]
pub(super) struct Report {
    files: Vec<Value>,
    violations: BTreeMap<String, usize>,
    ignored: Vec<String>,
}

impl Report {
    /// Notes the columns `ignore` dropped from one file (each named once).
    pub(super) fn ignored(&mut self, columns: Vec<String>) {
        for c in columns {
            if !self.ignored.contains(&c) {
                self.ignored.push(c);
            }
        }
    }

    /// Notes one file: `rows_read` rows, `bad_lines` of them malformed
    /// lines, split by the contract (the bad lines already in the quarantine);
    /// `read` says how (`in batches`, `whole`).
    pub(super) fn file(&mut self, shown: &str, format: Format, read: &str, file: &FileCounts) {
        for (k, v) in &file.violations {
            *self.violations.entry(k.clone()).or_default() += v;
        }
        self.files.push(json!({
            "file": shown,
            "format": format.name(),
            "read": read,
            "rows": file.rows_read,
            "rows_kept": file.kept,
            "rows_quarantined": file.quarantined,
            "bad_lines": file.bad_lines,
        }));
    }

    /// The stage's summary, given the tables it outputs; logs what was
    /// ignored and quarantined.
    pub(super) fn finish(
        self,
        ctx: &StageContext,
        rows_read: usize,
        kept: &Source,
        quarantined: &Source,
        label: Option<&str>,
        contract: Option<&str>,
    ) -> Result<Value, StageError> {
        let Report {
            files,
            violations,
            ignored,
        } = self;
        let by_reason: serde_json::Map<String, Value> = quarantined
            .value_counts(REASON_COLUMN, ctx.batch_rows)?
            .into_iter()
            .map(|(r, n)| (r, json!(n)))
            .collect();
        let columns: Vec<Value> = kept
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
            "files": files,
            "rows_read": rows_read,
            "rows_kept": kept.num_rows(),
            "rows_quarantined": quarantined.num_rows(),
            "quarantined_by_reason": by_reason,
            "violations_by_rule": violations,
            "label": label,
            "contract": contract,
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
        Ok(summary)
    }
}
