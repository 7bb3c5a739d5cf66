//! `export`: write a table to Parquet or CSV.

use std::fs;
use std::path::Path;

use gigo_pipeline::{
    Inputs, Memory, ParamProblem, PortSpec, Registry, Source, Stage, StageContext, StageError,
    StageOutput,
};

use schemars::JsonSchema;
use serde::Deserialize;

/// File formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Apache Parquet (Snappy).
    Parquet,
    /// Comma-separated values with a header.
    Csv,
}

/// Parameters of `export`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Where to write. Relative paths resolve against the pipeline file's
    /// directory; a leading `{run}` stands for the run directory
    /// (`{run}/clean.parquet`).
    pub path: String,
    /// `parquet` or `csv`; inferred from the extension when absent.
    #[serde(default)]
    pub format: Option<ExportFormat>,
}

/// The `export` stage.
pub struct Export {
    path: String,
    format: ExportFormat,
}

/// Registers `export`.
pub fn register(registry: &mut Registry) {
    registry.register::<ExportParams, _>(
        "export",
        "Writes its input table to a Parquet or CSV file (format from the extension \
         unless `format` is given). The file is written atomically on every run; a \
         cache hit rewrites it from the cached copy.",
        |p| {
            let format = match p.format {
                Some(f) => f,
                None => match Path::new(&p.path).extension().and_then(|e| e.to_str()) {
                    Some("parquet") | Some("pq") => ExportFormat::Parquet,
                    Some("csv") => ExportFormat::Csv,
                    other => {
                        return Err(vec![ParamProblem::new(
                            "path",
                            format!(
                                "cannot tell the format from the extension {:?}: use .parquet or .csv, or set `format`",
                                other.unwrap_or("")
                            ),
                        )]);
                    }
                },
            };
            if p.path.trim().is_empty() {
                return Err(vec![ParamProblem::new("path", "must not be empty")]);
            }
            Ok(Box::new(Export { path: p.path, format }))
        },
    );
}

/// Writes `table` as CSV with a header, batch by batch.
pub fn write_csv(table: &Source, batch_rows: usize, path: &Path) -> Result<(), StageError> {
    let file = fs::File::create(path).map_err(|e| StageError::io(path, e))?;
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(std::io::BufWriter::with_capacity(1 << 20, file));
    for b in table.batches(batch_rows)? {
        w.write(&b?)
            .map_err(|e| StageError::file(path, "writing CSV", e))?;
    }
    w.into_inner()
        .into_inner()
        .map_err(|e| StageError::io(path, e.into_error()))?;
    Ok(())
}

/// Writes `table` as Parquet, batch by batch; a table already in the store
/// is that file (the same bytes: see [`gigo_pipeline::stream`]), linked (the
/// executor copies it to its target). Returns the file's SHA-256 when it is
/// known without reading the file again.
fn write_parquet(table: &Source, path: &Path) -> Result<Option<String>, StageError> {
    Ok(match table {
        Source::Stored(s) => {
            gigo_pipeline::store::link_or_copy(s.path(), path)
                .map_err(|e| StageError::io(path, e))?;
            s.sha256().map(String::from)
        }
        Source::Memory(t) => gigo_pipeline::store::write_parquet(t, path)?
            .sha256()
            .map(String::from),
    })
}

impl Stage for Export {
    fn inputs(&self) -> Vec<PortSpec> {
        vec![PortSpec::table("table", "the table to write")]
    }

    fn outputs(&self) -> Vec<PortSpec> {
        vec![]
    }

    fn memory(&self) -> Memory {
        Memory::STREAMS
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let table = inputs.source("table")?;
        fs::create_dir_all(&ctx.scratch_dir).map_err(|e| StageError::io(&ctx.scratch_dir, e))?;
        let produced = ctx.scratch_dir.join("export");
        let sha256 = match self.format {
            ExportFormat::Parquet => write_parquet(&table, &produced)?,
            ExportFormat::Csv => {
                write_csv(&table, ctx.batch_rows, &produced)?;
                None
            }
        };
        let out = match sha256 {
            Some(h) => StageOutput::new().publish_hashed(&self.path, produced, h),
            None => StageOutput::new().publish(&self.path, produced),
        };
        Ok(out.with_summary(serde_json::json!({
            "path": self.path,
            "format": format!("{:?}", self.format).to_lowercase(),
            "rows": table.num_rows(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ctx, labelled_table};

    #[test]
    fn writes_csv_and_parquet_for_publishing() {
        let dir = tempfile::tempdir().unwrap();
        let c = ctx("export", 0, dir.path());
        let mut inputs = Inputs::default();
        inputs.push("table", labelled_table(5, 2).into());
        let e = Export {
            path: "{run}/a.csv".into(),
            format: ExportFormat::Csv,
        };
        let out = e.run(&inputs, &c).unwrap();
        assert_eq!(out.summary["rows"], 5);
        assert_eq!(out.published[0].0, "{run}/a.csv");
        let csv = fs::read_to_string(&out.published[0].1).unwrap();
        assert_eq!(csv.lines().next(), Some("id,x,label"));
        assert_eq!(csv.lines().count(), 6);
        assert_eq!(
            c.resolve_target("{run}/a.csv"),
            dir.path().join("run/a.csv")
        );
        let e = Export {
            path: "b.parquet".into(),
            format: ExportFormat::Parquet,
        };
        let out = e.run(&inputs, &c).unwrap();
        assert_eq!(
            gigo_pipeline::store::read_parquet(&out.published[0].1)
                .unwrap()
                .num_rows(),
            5
        );
    }

    #[test]
    fn unknown_extension_is_a_param_error() {
        let mut r = Registry::new();
        register(&mut r);
        let errs = r
            .get("export")
            .unwrap()
            .build(&serde_json::json!({"path": "x.xlsx"}))
            .err()
            .unwrap();
        assert!(
            errs[0].message.contains("cannot tell the format"),
            "{}",
            errs[0].message
        );
    }
}
