//! `exec`: a stage written in any language, run as a child process that
//! exchanges Arrow IPC files with gigo.
//!
//! # Protocol `gigo-exec` version 1
//!
//! For every run gigo makes a fresh work directory and:
//! 1. writes each input port `P` to `inputs/P.arrow` (Arrow IPC *file* format,
//!    column roles in the field metadata under `gigo:role`);
//! 2. writes `request.json`: `{"protocol": "gigo-exec", "version": 1,
//!    "stage": id, "seed": u64, "params": {...}, "inputs": {P: path},
//!    "outputs": {Q: path}, "summary": path}` (absolute paths);
//! 3. starts `command` (an argument list, no shell) in the work directory with
//!    the environment variables `GIGO_EXEC_REQUEST` (path of `request.json`)
//!    and `GIGO_EXEC_PROTOCOL=1`, standard input closed;
//! 4. waits at most `timeout_secs`, then kills it.
//!
//! The child writes every declared output `Q` to `outputs/Q.arrow` (Arrow IPC
//! file format) and may write a JSON summary to `outputs/summary.json`; it
//! exits 0 on success. Anything else fails the stage with the reason and the
//! end of the child's standard error: a non-zero exit, a signal, a timeout, a
//! missing output, or an output that is not Arrow IPC. Output columns without
//! a role take the role of the input column of the same name.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use gigo_pipeline::table::ROLE_KEY;
use gigo_pipeline::{
    Inputs, ParamProblem, PortKind, PortSpec, Registry, Stage, StageContext, StageError,
    StageOutput, Table, store,
};
use schemars::JsonSchema;
use serde::Deserialize;

/// The protocol version this gigo speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Parameters of `exec`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The program and its arguments (no shell). A program given with a `/`
    /// resolves against the pipeline file's directory; otherwise `PATH` is searched.
    pub command: Vec<String>,
    /// Names of the stage's input ports (tables), in order. (The stage's
    /// `inputs:` key connects them, as for every stage.)
    #[serde(default = "default_ports")]
    pub input_ports: Vec<String>,
    /// Names of the output ports (tables) the child must write.
    #[serde(default = "default_ports")]
    pub output_ports: Vec<String>,
    /// Seconds before the child is killed and the stage fails.
    #[serde(default = "default_timeout")]
    pub timeout_secs: f64,
    /// Free-form parameters handed to the child in `request.json`.
    #[serde(default)]
    pub params: serde_json::Value,
}

fn default_ports() -> Vec<String> {
    vec!["table".into()]
}
fn default_timeout() -> f64 {
    600.0
}

fn valid_port(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl ExecParams {
    fn check(&self) -> Result<(), Vec<ParamProblem>> {
        let mut p = Vec::new();
        if self.command.is_empty() || self.command[0].is_empty() {
            p.push(ParamProblem::new(
                "command",
                "must name a program: `command: [program, arg, ...]`",
            ));
        }
        if !(self.timeout_secs > 0.0 && self.timeout_secs.is_finite()) {
            p.push(ParamProblem::new(
                "timeout_secs",
                format!("must be positive, got {}", self.timeout_secs),
            ));
        }
        for (field, names) in [
            ("input_ports", &self.input_ports),
            ("output_ports", &self.output_ports),
        ] {
            for (i, n) in names.iter().enumerate() {
                if !valid_port(n) || n == "summary" {
                    p.push(ParamProblem::new(
                        &format!("{field}.{i}"),
                        format!("`{n}` is not a valid port name (letters, digits, `_`, `-`; not `summary`)"),
                    ));
                }
                if names[..i].contains(n) {
                    p.push(ParamProblem::new(
                        &format!("{field}.{i}"),
                        format!("port `{n}` is listed twice"),
                    ));
                }
            }
        }
        if p.is_empty() { Ok(()) } else { Err(p) }
    }
}

/// The `exec` stage.
pub struct Exec {
    params: ExecParams,
}

/// Registers `exec`.
pub fn register(registry: &mut Registry) {
    registry.register::<ExecParams, _>(
        "exec",
        "Runs a program (any language) as a stage: its input tables are handed over as \
         Arrow IPC files and its outputs read back the same way (protocol gigo-exec v1, \
         see the README). A crash, a timeout or garbage output fails the stage with a \
         clear message.",
        |params| {
            params.check()?;
            Ok(Box::new(Exec { params }))
        },
    );
}

impl Exec {
    fn program(&self, base_dir: &Path) -> PathBuf {
        let p = Path::new(&self.params.command[0]);
        if p.components().count() > 1 && !p.is_absolute() {
            base_dir.join(p)
        } else {
            p.to_path_buf()
        }
    }
}

fn tail(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(10);
    let t = lines[start..].join("\n");
    if t.is_empty() {
        "(nothing on stderr)".into()
    } else {
        t
    }
}

fn write_ipc(table: &Table, path: &Path) -> Result<(), StageError> {
    let f = fs::File::create(path).map_err(|e| StageError::io(path, e))?;
    let mut w = FileWriter::try_new(f, table.schema())?;
    for b in table.batches() {
        w.write(b)?;
    }
    w.finish()?;
    Ok(())
}

fn read_ipc(path: &Path) -> Result<Table, String> {
    let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
    check_blocks(&mut f)?;
    // arrow-rs's IPC reader panics on some corrupt files (a buffer offset
    // past the body, found by fuzzing): the child's fault, so an error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let reader = FileReader::try_new(f, None).map_err(|e| e.to_string())?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Table::new(schema, batches).map_err(|e| e.to_string())
    }))
    .map_err(|panic| {
        format!(
            "the Arrow reader failed on it: {}",
            gigo_pipeline::panic_message(panic.as_ref())
        )
    })?
}

/// Checks that every block the footer of IPC file `f` lists lies inside the
/// file: arrow-rs allocates a block's claimed size before reading it, so a
/// forged footer would otherwise ask for gigabytes (found by fuzzing). A
/// footer that does not parse is left for the reader to report.
fn check_blocks(f: &mut fs::File) -> Result<(), String> {
    use std::io::{Seek, SeekFrom};
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut tail = [0u8; 10];
    if len < 10 || f.seek(SeekFrom::End(-10)).is_err() || f.read_exact(&mut tail).is_err() {
        return Ok(());
    }
    let footer_len = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer_len + 10 > len {
        return Ok(());
    }
    let mut footer = vec![0u8; footer_len as usize];
    f.seek(SeekFrom::Start(len - 10 - footer_len))
        .and_then(|_| f.read_exact(&mut footer))
        .map_err(|e| e.to_string())?;
    f.rewind().map_err(|e| e.to_string())?;
    let Ok(footer) = arrow::ipc::root_as_footer(&footer) else {
        return Ok(());
    };
    let blocks = footer.recordBatches().into_iter().flatten();
    for (i, b) in blocks
        .chain(footer.dictionaries().into_iter().flatten())
        .enumerate()
    {
        let end = u64::try_from(b.offset())
            .ok()
            .zip(u64::try_from(b.metaDataLength()).ok())
            .zip(u64::try_from(b.bodyLength()).ok())
            .and_then(|((o, m), n)| o.checked_add(m)?.checked_add(n));
        if end.is_none_or(|end| end > len) {
            return Err(format!(
                "block {i} of the footer ({} + {} bytes at offset {}) lies outside the {len}-byte file",
                b.metaDataLength(),
                b.bodyLength(),
                b.offset()
            ));
        }
    }
    Ok(())
}

/// Reads an Arrow IPC file the way `exec` reads a child's output; the error
/// says why the file is not one. For the fuzz targets (`fuzz/`), not an API.
#[doc(hidden)]
pub fn read_child_output(path: &Path) -> Result<Table, String> {
    read_ipc(path)
}

/// Gives output columns that lack a role the role of the same-named input column.
fn restore_roles(table: Table, inputs: &[Arc<Table>]) -> Result<Table, StageError> {
    let fields: Vec<Field> = table
        .schema()
        .fields()
        .iter()
        .map(|f| {
            if f.metadata().contains_key(ROLE_KEY) {
                return f.as_ref().clone();
            }
            let role = inputs.iter().find_map(|t| {
                t.schema()
                    .field_with_name(f.name())
                    .ok()
                    .map(gigo_pipeline::role_of)
            });
            match role {
                Some(r) => gigo_pipeline::field_with_role(f.as_ref().clone(), r),
                None => f.as_ref().clone(),
            }
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(
        fields,
        table.schema().metadata().clone(),
    ));
    let batches = table
        .batches()
        .iter()
        .map(|b| arrow::array::RecordBatch::try_new(schema.clone(), b.columns().to_vec()))
        .collect::<Result<Vec<_>, _>>()?;
    Table::new(schema, batches)
}

impl Stage for Exec {
    fn inputs(&self) -> Vec<PortSpec> {
        self.params
            .input_ports
            .iter()
            .map(|n| PortSpec::table(n, "a table handed to the child"))
            .collect()
    }

    fn outputs(&self) -> Vec<PortSpec> {
        // The child's row semantics are its own: its outputs are not row-checked.
        self.params
            .output_ports
            .iter()
            .map(|n| PortSpec::aside(n, PortKind::Table, "a table the child writes"))
            .collect()
    }

    fn fingerprint(&self, base_dir: &Path) -> Result<Option<String>, StageError> {
        // A program given by path is part of the key: rebuilding it re-runs the stage.
        let prog = self.program(base_dir);
        if prog.is_file() && self.params.command[0].contains('/') {
            return Ok(Some(store::file_sha256(&prog)?));
        }
        Ok(None)
    }

    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError> {
        let work = ctx.scratch_dir.join("exec");
        // Nothing from an earlier attempt may pass for this run's output.
        if work.exists() {
            fs::remove_dir_all(&work).map_err(|e| StageError::io(&work, e))?;
        }
        let (in_dir, out_dir) = (work.join("inputs"), work.join("outputs"));
        for d in [&in_dir, &out_dir] {
            fs::create_dir_all(d).map_err(|e| StageError::io(d, e))?;
        }
        let abs = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
        let mut in_paths = BTreeMap::new();
        let mut in_tables = Vec::new();
        for name in &self.params.input_ports {
            let t = inputs.table(name)?;
            let path = in_dir.join(format!("{name}.arrow"));
            write_ipc(&t, &path)?;
            in_paths.insert(name.clone(), abs(&path).display().to_string());
            in_tables.push(t);
        }
        let out_paths: BTreeMap<String, PathBuf> = self
            .params
            .output_ports
            .iter()
            .map(|n| (n.clone(), abs(&out_dir.join(format!("{n}.arrow")))))
            .collect();
        let summary_path = abs(&out_dir.join("summary.json"));
        let request = serde_json::json!({
            "protocol": "gigo-exec",
            "version": PROTOCOL_VERSION,
            "stage": ctx.stage_id,
            "seed": ctx.seed,
            "params": self.params.params,
            "inputs": in_paths,
            "outputs": out_paths.iter().map(|(k, v)| (k.clone(), v.display().to_string())).collect::<BTreeMap<_, _>>(),
            "summary": summary_path.display().to_string(),
        });
        let request_path = abs(&work.join("request.json"));
        fs::write(&request_path, request.to_string())
            .map_err(|e| StageError::io(&request_path, e))?;

        let program = self.program(&ctx.base_dir);
        let (stdout_path, stderr_path) = (work.join("stdout.log"), work.join("stderr.log"));
        let stdout = fs::File::create(&stdout_path).map_err(|e| StageError::io(&stdout_path, e))?;
        let stderr = fs::File::create(&stderr_path).map_err(|e| StageError::io(&stderr_path, e))?;
        let mut child = Command::new(&program)
            .args(&self.params.command[1..])
            .current_dir(&work)
            .env("GIGO_EXEC_REQUEST", &request_path)
            .env("GIGO_EXEC_PROTOCOL", PROTOCOL_VERSION.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                StageError::External(format!("cannot start `{}`: {e}", program.display()))
            })?;
        let deadline = Instant::now() + Duration::from_secs_f64(self.params.timeout_secs);
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(StageError::External(format!(
                        "`{}` timed out after {} s and was killed; its stderr ends with:\n{}",
                        self.params.command.join(" "),
                        self.params.timeout_secs,
                        tail(&stderr_path)
                    )));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(StageError::External(format!("waiting for the child: {e}"))),
            }
        };
        if !status.success() {
            let how = match status.code() {
                Some(c) => format!("exited with status {c}"),
                None => "was killed by a signal".to_string(),
            };
            return Err(StageError::External(format!(
                "`{}` {how}; its stderr ends with:\n{}",
                self.params.command.join(" "),
                tail(&stderr_path)
            )));
        }
        let mut out = StageOutput::new();
        for (name, path) in &out_paths {
            if !path.is_file() {
                return Err(StageError::External(format!(
                    "`{}` exited 0 but did not write its output `{name}` ({})",
                    self.params.command.join(" "),
                    path.display()
                )));
            }
            let table = read_ipc(path).map_err(|e| {
                StageError::External(format!(
                    "`{}` wrote garbage to its output `{name}`: not an Arrow IPC file ({e})",
                    self.params.command.join(" ")
                ))
            })?;
            out = out.with(name, restore_roles(table, &in_tables)?);
        }
        let child_summary = if summary_path.is_file() {
            let text =
                fs::read_to_string(&summary_path).map_err(|e| StageError::io(&summary_path, e))?;
            serde_json::from_str(&text).map_err(|e| {
                StageError::External(format!("the child's summary.json is not JSON: {e}"))
            })?
        } else {
            serde_json::Value::Null
        };
        let rows: BTreeMap<String, usize> = out
            .ports
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.num_rows()?)))
            .collect();
        Ok(out.with_summary(serde_json::json!({
            "command": self.params.command,
            "protocol_version": PROTOCOL_VERSION,
            "rows": rows,
            "child": child_summary,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{ctx, labelled_table};

    fn exec(command: &[&str], timeout: f64) -> Exec {
        Exec {
            params: ExecParams {
                command: command.iter().map(|s| s.to_string()).collect(),
                input_ports: vec!["table".into()],
                output_ports: vec!["table".into()],
                timeout_secs: timeout,
                params: serde_json::Value::Null,
            },
        }
    }

    fn inputs() -> Inputs {
        let mut i = Inputs::default();
        i.push("table", labelled_table(4, 2).into());
        i
    }

    #[test]
    fn a_crashing_child_fails_with_its_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(&["sh", "-c", "echo boom >&2; exit 3"], 10.0);
        let err = e
            .run(&inputs(), &ctx("x", 0, dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("exited with status 3"), "{err}");
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn a_slow_child_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(&["sleep", "5"], 0.2);
        let err = e
            .run(&inputs(), &ctx("x", 0, dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("timed out after 0.2 s"), "{err}");
    }

    /// Found by `cargo fuzz run exec_output` (fuzz/, README "Fuzzing"): a
    /// record batch whose buffer offset lies past the file made arrow-rs panic.
    #[test]
    fn an_ipc_file_with_a_bad_buffer_offset_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.arrow");
        fs::write(
            &path,
            include_bytes!("testdata/ipc_bad_buffer_offset.arrow"),
        )
        .unwrap();
        let err = read_ipc(&path).unwrap_err();
        assert!(
            err.starts_with("the Arrow reader failed on it: the offset of the new Buffer cannot exceed the existing length"),
            "{err}"
        );
    }

    /// Found by `cargo fuzz run exec_output`: a footer block claiming 4 GiB
    /// made arrow-rs allocate it before reading (libFuzzer: out-of-memory).
    #[test]
    fn an_ipc_footer_block_past_the_end_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.arrow");
        fs::write(&path, include_bytes!("testdata/ipc_huge_block.arrow")).unwrap();
        let err = read_ipc(&path).unwrap_err();
        assert!(err.starts_with("block 0 of the footer ("), "{err}");
        assert!(err.ends_with("lies outside the 1803-byte file"), "{err}");
    }

    #[test]
    fn garbage_and_missing_outputs_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(&["sh", "-c", "echo nope > outputs/table.arrow"], 10.0);
        let err = e
            .run(&inputs(), &ctx("x", 0, dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("wrote garbage to its output `table`"), "{err}");
        let e = exec(&["true"], 10.0);
        let err = e
            .run(&inputs(), &ctx("y", 0, dir.path()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("did not write its output `table`"), "{err}");
    }

    #[test]
    fn a_copying_child_round_trips_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let e = exec(
            &["sh", "-c", "cp inputs/table.arrow outputs/table.arrow"],
            10.0,
        );
        let out = e.run(&inputs(), &ctx("x", 0, dir.path())).unwrap();
        match &out.ports["table"] {
            gigo_pipeline::Artifact::Table(t) => {
                assert_eq!(t.num_rows(), 4);
                assert_eq!(t.label_column().unwrap(), "label");
            }
            _ => panic!("not a table"),
        }
    }

    #[test]
    fn params_are_checked() {
        let p = ExecParams {
            command: vec![],
            input_ports: vec!["a".into(), "a".into()],
            output_ports: vec!["summary".into()],
            timeout_secs: 0.0,
            params: serde_json::Value::Null,
        };
        assert_eq!(p.check().unwrap_err().len(), 4);
    }
}
