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
//! missing output, an output that is not Arrow IPC or has no columns. Output
//! columns without a role take the role of the input column of the same name.
//!
//! The child runs in a process group of its own; when it exits or times out
//! the whole group is killed (see [`child`]).

mod child;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{Field, Schema};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use gigo_pipeline::Metrics;
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
    /// resolves against the pipeline file's directory; otherwise `PATH` is
    /// searched. An argument naming an existing file relative to the pipeline
    /// file's directory is handed over as that file's absolute path. The
    /// program and those files are part of the cache key.
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
    /// The program as given to the system: an absolute path (given with a
    /// `/`, relative to the pipeline's directory: the child starts in its
    /// work directory) or a bare name that `PATH` resolves.
    fn program(&self, base_dir: &Path) -> PathBuf {
        let name = &self.params.command[0];
        if name.contains('/') {
            let p = base_dir.join(name); // an absolute `name` replaces `base_dir`
            std::path::absolute(&p).unwrap_or(p)
        } else {
            PathBuf::from(name)
        }
    }

    /// The arguments as handed to the child: one that names a file is its
    /// absolute path, as the child runs in its work directory.
    fn arguments(&self, base_dir: &Path) -> Vec<OsString> {
        self.params.command[1..]
            .iter()
            .map(|arg| {
                argument_file(base_dir, arg).map_or_else(|| arg.into(), PathBuf::into_os_string)
            })
            .collect()
    }

    fn shown(&self) -> String {
        self.params.command.join(" ")
    }
}

/// The file an argument names relative to the pipeline's directory (or
/// absolutely), if one exists there. Directories are not files.
fn argument_file(base_dir: &Path, arg: &str) -> Option<PathBuf> {
    if arg.is_empty() {
        return None;
    }
    let full = base_dir.join(arg); // an absolute `arg` replaces `base_dir`
    full.is_file()
        .then(|| std::path::absolute(&full).unwrap_or(full))
}

/// Where `PATH` (`path_var`) finds the executable `name`, as the system's
/// own search would (empty entries skipped).
fn find_on_path(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path_var?)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|p| is_executable_file(p))
}

fn is_executable_file(p: &Path) -> bool {
    match fs::metadata(p) {
        #[cfg(unix)]
        Ok(m) => {
            use std::os::unix::fs::PermissionsExt;
            m.is_file() && m.permissions().mode() & 0o111 != 0
        }
        #[cfg(not(unix))]
        Ok(m) => m.is_file(),
        Err(_) => false,
    }
}

/// A program found on `PATH` (an interpreter, a system tool, possibly a
/// 100 MB runtime) is known by its real path, size and modification time:
/// an upgrade changes them, and hashing it before every run would not pay.
fn installed_identity(p: &Path) -> Result<String, StageError> {
    let real = fs::canonicalize(p).map_err(|e| StageError::io(p, e))?;
    let meta = fs::metadata(&real).map_err(|e| StageError::io(&real, e))?;
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Ok(format!(
        "{} {} bytes modified {modified}",
        real.display(),
        meta.len()
    ))
}

/// A signal's name, for the common ones.
#[cfg(unix)]
fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        libc::SIGKILL => "SIGKILL: often the out-of-memory killer",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGILL => "SIGILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGXCPU => "SIGXCPU: CPU time limit",
        _ => return None,
    })
}

/// How a failed child ended, in words.
fn how_it_failed(status: std::process::ExitStatus) -> String {
    if let Some(c) = status.code() {
        return format!("exited with status {c}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            let name = signal_name(sig).map_or(String::new(), |n| format!(" ({n})"));
            let core = if status.core_dumped() {
                ", core dumped"
            } else {
                ""
            };
            return format!("was killed by signal {sig}{name}{core}");
        }
    }
    "was killed by a signal".to_string()
}

/// The end of the child's stderr for a message (its stdout's when stderr
/// is empty).
fn streams_end(done: &child::Finished) -> String {
    const LINES: usize = 20;
    const CHARS: usize = 4000;
    let (name, tail, text) = match (done.stderr.end(LINES, CHARS), done.stdout.end(LINES, CHARS)) {
        (None, Some(out)) => ("stdout", &done.stdout, out),
        (err, _) => (
            "stderr",
            &done.stderr,
            err.unwrap_or_else(|| "(nothing on stderr)".into()),
        ),
    };
    let held = if tail.still_open {
        format!(
            "\n(a process that left the child's process group still holds its {name} open; \
             gigo stopped reading it)"
        )
    } else {
        String::new()
    };
    format!("its {name} ends with:\n{text}{held}")
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

/// Reads an Arrow IPC file the way `exec` reads a child's output; the error
/// says why the file is not one. For the fuzz targets (`fuzz/`), not an API.
#[doc(hidden)]
pub fn read_child_output(path: &Path) -> Result<Table, String> {
    read_ipc(path)
}

/// Reads an output the child wrote, or says why it is not an Arrow IPC file.
fn read_ipc(path: &Path) -> Result<Table, String> {
    let mut f = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut magic = Vec::new();
    (&mut f)
        .take(6)
        .read_to_end(&mut magic)
        .map_err(|e| e.to_string())?;
    if magic != b"ARROW1" {
        return Err(if magic.starts_with(&[0xff; 4]) {
            "it looks like the Arrow IPC stream format; the protocol wants the file format \
             (pyarrow: `pa.ipc.new_file`)"
        } else if magic.is_empty() {
            "it is empty"
        } else {
            "it does not start with `ARROW1`"
        }
        .into());
    }
    gigo_pipeline::store::check_ipc_blocks(&mut f)?;
    // The bytes are the child's: a decoder panic on them is their fault, not a gigo bug.
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
            "the Arrow reader could not decode it: {}",
            gigo_pipeline::panic_message(panic.as_ref())
        )
    })?
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
    /// The child's program writes its own summary: any metric.
    fn metrics(&self) -> Metrics {
        Metrics::Any
    }

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
        // Editing the program or a file named as an argument (a script) re-runs
        // the stage. Not covered: directories, files the child reads or imports
        // on its own, environment variables.
        let name = &self.params.command[0];
        let program = self.program(base_dir);
        let mut key = if name.contains('/') {
            if program.is_file() {
                format!("program {name}\t{}\n", store::file_sha256(&program)?)
            } else {
                format!("program {name}\tnot found\n")
            }
        } else {
            match find_on_path(name, std::env::var_os("PATH").as_deref()) {
                Some(p) => format!("program {name}\t{}\n", installed_identity(&p)?),
                None => format!("program {name}\tnot found on PATH\n"),
            }
        };
        for (i, arg) in self.params.command.iter().enumerate().skip(1) {
            if let Some(f) = argument_file(base_dir, arg) {
                let sha = store::file_sha256(&f)?;
                key.push_str(&format!("argument {i} {arg}\t{sha}\n"));
            }
        }
        Ok(Some(key))
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
        let mut command = Command::new(&program);
        command
            .args(self.arguments(&ctx.base_dir))
            .current_dir(&work)
            .env("GIGO_EXEC_REQUEST", &request_path)
            .env("GIGO_EXEC_PROTOCOL", PROTOCOL_VERSION.to_string());
        let running = child::spawn(&mut command).map_err(|e| {
            StageError::External(format!("cannot start `{}`: {e}", program.display()))
        })?;
        // A timeout too long for the clock is no timeout.
        let timeout = Duration::try_from_secs_f64(self.params.timeout_secs).ok();
        let done = running
            .wait(timeout)
            .map_err(|e| StageError::External(format!("waiting for `{}`: {e}", self.shown())))?;
        // The ends of its streams stay beside its work files.
        for (file, tail) in [("stdout.log", &done.stdout), ("stderr.log", &done.stderr)] {
            let path = work.join(file);
            fs::write(&path, tail.bytes()).map_err(|e| StageError::io(&path, e))?;
        }
        match done.ending {
            child::Ending::TimedOut => {
                return Err(StageError::External(format!(
                    "`{}` timed out after {} s and was killed with its process group; {}",
                    self.shown(),
                    self.params.timeout_secs,
                    streams_end(&done)
                )));
            }
            child::Ending::Exited(status) if !status.success() => {
                return Err(StageError::External(format!(
                    "`{}` {}; {}",
                    self.shown(),
                    how_it_failed(status),
                    streams_end(&done)
                )));
            }
            child::Ending::Exited(_) => {}
        }
        let mut out = StageOutput::new();
        for (name, path) in &out_paths {
            if !path.is_file() {
                return Err(StageError::External(format!(
                    "`{}` exited 0 but did not write its output `{name}` ({})",
                    self.shown(),
                    path.display()
                )));
            }
            let table = read_ipc(path).map_err(|e| {
                StageError::External(format!(
                    "`{}` wrote garbage to its output `{name}`: not an Arrow IPC file ({}: {e})",
                    self.shown(),
                    path.display()
                ))
            })?;
            if table.schema().fields().is_empty() {
                return Err(StageError::External(format!(
                    "`{}` wrote its output `{name}` ({}) with no columns",
                    self.shown(),
                    path.display()
                )));
            }
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
        let err = run_in(dir.path(), &["sh", "-c", "echo boom >&2; exit 3"], 10.0).unwrap_err();
        assert!(err.contains("exited with status 3"), "{err}");
        assert!(err.contains("boom"), "{err}");
    }

    #[test]
    fn a_slow_child_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_in(dir.path(), &["sleep", "5"], 0.2).unwrap_err();
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
            include_bytes!("../testdata/ipc_bad_buffer_offset.arrow"),
        )
        .unwrap();
        let err = read_ipc(&path).unwrap_err();
        assert!(
            err.starts_with("the Arrow reader could not decode it: the offset of the new Buffer cannot exceed the existing length"),
            "{err}"
        );
    }

    /// Found by `cargo fuzz run exec_output`: a footer block claiming 4 GiB
    /// made arrow-rs allocate it before reading (libFuzzer: out-of-memory).
    #[test]
    fn an_ipc_footer_block_past_the_end_is_an_error_not_an_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.arrow");
        fs::write(&path, include_bytes!("../testdata/ipc_huge_block.arrow")).unwrap();
        let err = read_ipc(&path).unwrap_err();
        assert!(err.starts_with("block 0 of the footer ("), "{err}");
        assert!(err.ends_with("lies outside the 1803-byte file"), "{err}");
    }

    #[test]
    fn garbage_and_missing_outputs_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = "echo nope > outputs/table.arrow";
        let err = run_in(dir.path(), &["sh", "-c", garbage], 10.0).unwrap_err();
        assert!(err.contains("wrote garbage to its output `table`"), "{err}");
        let err = run_in(dir.path(), &["true"], 10.0).unwrap_err();
        assert!(err.contains("did not write its output `table`"), "{err}");
    }

    #[test]
    fn a_copying_child_round_trips_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let out = run_in(dir.path(), &["sh", "-c", COPY], 10.0).unwrap();
        match &out.ports["table"] {
            gigo_pipeline::Artifact::Table(t) => {
                assert_eq!(t.num_rows(), 4);
                assert_eq!(t.label_column().unwrap(), "label");
            }
            _ => panic!("not a table"),
        }
    }

    fn run_in(dir: &Path, command: &[&str], timeout: f64) -> Result<StageOutput, String> {
        exec(command, timeout)
            .run(&inputs(), &ctx("x", 0, dir))
            .map_err(|e| e.to_string())
    }

    const COPY: &str = "cp inputs/table.arrow outputs/table.arrow";

    /// Whether a process is gone (no longer exists or is a zombie) within a
    /// second: a SIGKILLed process may still be on its way out.
    fn gone(pid: &str) -> bool {
        let dead = || match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        };
        let start = std::time::Instant::now();
        while !dead() {
            if start.elapsed() > Duration::from_secs(1) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// Kills a test's leftover process, whatever the test's outcome.
    struct Reap(PathBuf);
    impl Drop for Reap {
        fn drop(&mut self) {
            if let Ok(pid) = fs::read_to_string(&self.0) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
    }

    #[test]
    fn editing_an_argument_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("my_stage.sh"), "echo one").unwrap();
        fs::create_dir(dir.path().join("pkg")).unwrap();
        fs::write(dir.path().join("pkg/lib.sh"), "a").unwrap();
        let e = exec(&["sh", "my_stage.sh", "--flag", "pkg"], 10.0);
        let first = e.fingerprint(dir.path()).unwrap().unwrap();
        assert_eq!(e.fingerprint(dir.path()).unwrap().unwrap(), first);
        assert!(first.starts_with("program sh\t/"), "{first}");
        // Directories are not covered.
        fs::write(dir.path().join("pkg/lib.sh"), "b").unwrap();
        assert_eq!(e.fingerprint(dir.path()).unwrap().unwrap(), first);
        fs::write(dir.path().join("my_stage.sh"), "echo two").unwrap();
        assert_ne!(e.fingerprint(dir.path()).unwrap().unwrap(), first);
    }

    #[test]
    fn a_program_on_path_is_known_by_its_path_size_and_time() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        fs::write(&tool, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(dir.path().join("data"), "not executable").unwrap();
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).unwrap();
        assert_eq!(
            find_on_path("tool", Some(path.as_os_str())),
            Some(tool.clone())
        );
        assert_eq!(find_on_path("data", Some(path.as_os_str())), None);
        let before = installed_identity(&tool).unwrap();
        assert_eq!(installed_identity(&tool).unwrap(), before);
        fs::write(&tool, "#!/bin/sh\necho upgraded\n").unwrap();
        assert_ne!(installed_identity(&tool).unwrap(), before);
    }

    #[test]
    fn a_program_path_is_made_absolute() {
        // The child starts in its work directory: `./tool` of a pipeline run
        // as `gigo run pipeline.yaml` (base directory `.`) must still be found.
        let e = exec(&["./tool"], 10.0);
        assert!(e.program(Path::new(".")).is_absolute());
        assert_eq!(exec(&["sh"], 10.0).program(Path::new(".")), Path::new("sh"));
    }

    #[test]
    fn an_argument_file_is_handed_over_by_its_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("copy.sh"), COPY).unwrap();
        let out = run_in(dir.path(), &["sh", "copy.sh"], 10.0).unwrap();
        assert!(out.ports.contains_key("table"));
    }

    #[test]
    fn a_huge_stderr_keeps_only_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let script = "head -c 50000000 /dev/zero | tr '\\0' x >&2 & \
                      head -c 50000000 /dev/zero; wait; echo >&2; echo THE-END >&2; exit 1";
        let err = run_in(dir.path(), &["sh", "-c", script], 60.0).unwrap_err();
        let start: String = err.chars().take(200).collect();
        assert!(err.contains("exited with status 1"), "{start}");
        assert!(err.ends_with("\nTHE-END"), "{start}");
        assert!(err.len() < 5000, "the message holds {} bytes", err.len());
        let kept = fs::metadata(dir.path().join("scratch/exec/stderr.log")).unwrap();
        assert_eq!(kept.len(), child::TAIL_BYTES as u64);
    }

    /// Runs the shell `script`, which writes the pid of a process it leaves
    /// behind to `$PID_FILE`: the stage's result, how long it took, that pid,
    /// and a guard that kills the process whatever the test's outcome.
    fn run_leaving(
        dir: &Path,
        script: &str,
        timeout: f64,
    ) -> (Result<StageOutput, String>, Duration, String, Reap) {
        let pid_file = dir.join("left.pid");
        let reap = Reap(pid_file.clone());
        let script = script.replace("$PID_FILE", &pid_file.display().to_string());
        let start = std::time::Instant::now();
        let result = run_in(dir, &["sh", "-c", &script], timeout);
        let took = start.elapsed();
        let pid = fs::read_to_string(&pid_file).unwrap().trim().to_string();
        (result, took, pid, reap)
    }

    #[test]
    fn a_timed_out_child_is_killed_with_its_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        // The grandchild inherits stdout and stderr: their pipes stay open while it lives.
        let script = "sleep 1000 & echo $! > $PID_FILE; exec sleep 1000";
        let (result, took, pid, _reap) = run_leaving(dir.path(), script, 1.0);
        assert!(took < Duration::from_secs(5), "{took:?}");
        let err = result.unwrap_err();
        assert!(err.contains("timed out after 1 s"), "{err}");
        assert!(gone(&pid), "the grandchild {pid} still runs");
    }

    #[test]
    fn a_finished_child_leaves_nothing_running() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!("sleep 1000 & echo $! > $PID_FILE; {COPY}");
        let (result, took, pid, _reap) = run_leaving(dir.path(), &script, 60.0);
        assert!(took < Duration::from_secs(5), "{took:?}");
        result.unwrap();
        assert!(gone(&pid), "the grandchild {pid} still runs");
    }

    #[test]
    fn a_process_escaping_the_group_does_not_hang_the_stage() {
        if Command::new("setsid").arg("true").status().is_err() {
            eprintln!("no setsid here: skipped");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // The pid file appears once the process has left the group.
        let script = "setsid sh -c 'echo $$ > $PID_FILE; exec sleep 1000' & \
                      while [ ! -s $PID_FILE ]; do sleep 0.01; done; echo bye >&2; exit 1";
        let (result, took, _, _reap) = run_leaving(dir.path(), script, 60.0);
        assert!(
            took < child::PIPE_GRACE + Duration::from_secs(3),
            "{took:?}"
        );
        let err = result.unwrap_err();
        assert!(err.contains("bye\n(a process that left"), "{err}");
    }

    #[test]
    fn a_child_killed_by_a_signal_says_which() {
        let dir = tempfile::tempdir().unwrap();
        let err = run_in(dir.path(), &["sh", "-c", "kill -KILL $$"], 10.0).unwrap_err();
        assert!(err.contains("was killed by signal 9 (SIGKILL"), "{err}");
    }

    #[test]
    fn outputs_that_are_not_arrow_files_name_their_port_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, stream: bool, table: &Table| {
            let path = dir.path().join(name);
            let f = fs::File::create(&path).unwrap();
            if stream {
                let mut w = arrow::ipc::writer::StreamWriter::try_new(f, table.schema()).unwrap();
                table.batches().iter().for_each(|b| w.write(b).unwrap());
                w.finish().unwrap();
            } else {
                let mut w = FileWriter::try_new(f, table.schema()).unwrap();
                table.batches().iter().for_each(|b| w.write(b).unwrap());
                w.finish().unwrap();
            }
            path
        };
        let table = labelled_table(100, 2);
        let whole = write("whole.arrow", false, &table);
        let bytes = fs::read(&whole).unwrap();
        fs::write(
            dir.path().join("truncated.arrow"),
            &bytes[..bytes.len() / 2],
        )
        .unwrap();
        write("stream.arrow", true, &table);
        write(
            "no_columns.arrow",
            false,
            &Table::empty(Arc::new(Schema::empty())),
        );
        for (file, expected) in [
            (
                "truncated.arrow",
                "wrote garbage to its output `table`: not an Arrow IPC file (",
            ),
            ("stream.arrow", "the Arrow IPC stream format"),
            ("no_columns.arrow", "wrote its output `table` ("),
        ] {
            let copy = format!("cp {} outputs/table.arrow", dir.path().join(file).display());
            let err = run_in(dir.path(), &["sh", "-c", &copy], 10.0).unwrap_err();
            assert!(err.contains(expected), "{file}: {err}");
            assert!(err.contains("outputs/table.arrow"), "{file}: {err}");
        }
    }

    #[test]
    fn a_timeout_too_long_for_the_clock_is_no_timeout() {
        let dir = tempfile::tempdir().unwrap();
        assert!(run_in(dir.path(), &["sh", "-c", COPY], 1e300).is_ok());
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
