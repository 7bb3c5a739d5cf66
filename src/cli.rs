//! The `gigo` command line. Exit codes are decided here, in one place:
//!
//! | code | meaning |
//! | --- | --- |
//! | 0 | success |
//! | 1 | a stage failed (its dependants were skipped) |
//! | 2 | invalid pipeline or command line (nothing ran) |
//! | 3 | the run finished but a quality gate failed |
//! | 4 | gigo could not use its run or cache directory |

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use gigo_pipeline::{
    Diagnostic, Error, Observer, Progress, Registry, RunOptions, StageRecord, StageStatus, executor,
};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::graph::{GraphFormat, render};
use crate::schema::{describe_stages, pipeline_schema};

/// Exit code: a stage failed.
pub const EXIT_STAGE_FAILED: u8 = 1;
/// Exit code: the pipeline or the command line is invalid.
pub const EXIT_INVALID: u8 = 2;
/// Exit code: a quality gate failed.
pub const EXIT_GATE_FAILED: u8 = 3;
/// Exit code: the run or cache directory could not be used.
pub const EXIT_IO: u8 = 4;

#[derive(Parser)]
#[command(
    name = "gigo",
    version,
    about = "Garbage in, garbage out: data-quality and training pipelines declared in YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct PipelineArgs {
    /// The pipeline file.
    file: PathBuf,
    /// Override a parameter: `stage.param=value`, `seed=7`, `name=x` (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    set: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: stages in dependency order, unchanged stages from the cache.
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// How many stages may run at once.
        #[arg(long, short = 'j', default_value_t = default_jobs())]
        jobs: usize,
        /// Re-run every stage, ignoring the cache.
        #[arg(long)]
        force: bool,
        /// Directory for run directories.
        #[arg(long, default_value = "runs")]
        runs_dir: PathBuf,
        /// The cache directory.
        #[arg(long, default_value = ".gigo/cache")]
        cache_dir: PathBuf,
        /// Id of this run (default: UTC time and pipeline name).
        #[arg(long)]
        run_id: Option<String>,
        /// No progress bars and no per-stage lines, even on a terminal.
        #[arg(long, short = 'q')]
        quiet: bool,
        /// The memory budget (2GB, 512MiB): a stage that would need more
        /// fails before it starts; stages running at once share it. Overrides
        /// the file's `memory:`; default: three quarters of the machine's
        /// memory.
        #[arg(long, value_parser = parse_memory)]
        memory: Option<u64>,
        /// Rows per batch for stages that read tables in batches. Results
        /// do not depend on it.
        #[arg(long, default_value_t = gigo_pipeline::stream::DEFAULT_BATCH_ROWS, value_parser = parse_batch_rows)]
        batch_rows: usize,
    },
    /// Check a pipeline without running it; print every problem.
    Validate {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Print the pipeline's DAG.
    Graph {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: GraphFormat,
    },
    /// List every stage type with its ports and parameters.
    Stages {
        /// Show only this stage type.
        name: Option<String>,
    },
    /// Print the JSON Schema of pipeline files (for editor completion).
    Schema,
    /// Inspect and prune the cache of stage outputs.
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        /// The cache directory.
        #[arg(long, default_value = ".gigo/cache", global = true)]
        cache_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CacheAction {
    /// List entries: key, stage, size, last use, and which pipelines' latest runs use them.
    Ls {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete entries that no pipeline's latest run uses: all of them, or
    /// those last used before `--older-than`, or the least recently used
    /// until the rest fit `--max-size`.
    Gc {
        /// E.g. `7d`, `12h`, `30m`.
        #[arg(long, value_parser = parse_duration)]
        older_than: Option<Duration>,
        /// E.g. `10GB`, `500MiB`.
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
    },
    /// Delete every entry.
    Clean,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    gigo_pipeline::cache::parse_duration(s)
}

fn parse_size(s: &str) -> Result<u64, String> {
    gigo_pipeline::cache::parse_size(s)
}

fn parse_batch_rows(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("`{text}` is not a positive number of rows")),
    }
}

fn parse_memory(text: &str) -> Result<u64, String> {
    gigo_pipeline::budget::parse_size(text)
}

fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn color() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

fn paint(code: &str, text: &str) -> String {
    if color() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Runs the command line with the stage types of `registry`: what `gigo`'s
/// `main` does with the built-in stages, and what a program with its own
/// stages does with its own registry.
pub fn main_with(registry: Registry) -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_INVALID } else { 0 });
        }
    };
    ExitCode::from(dispatch(cli.command, &registry))
}

fn print_diagnostics(diags: &[Diagnostic], source: Option<&str>) {
    for d in diags {
        let src = match &d.location {
            Some(l) if &*l.file == "--set" => None,
            _ => source,
        };
        eprintln!("{}\n", d.render(src));
    }
    eprintln!(
        "{}: {} problem{} found",
        paint("1;31", "invalid pipeline"),
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

fn load(args: &PipelineArgs, registry: &Registry) -> Result<gigo_pipeline::Plan, u8> {
    match gigo_pipeline::load_plan(&args.file, &args.set, registry) {
        Ok((plan, _)) => Ok(plan),
        Err((diags, source)) => {
            print_diagnostics(&diags, source.as_deref());
            Err(EXIT_INVALID)
        }
    }
}

fn dispatch(command: Command, registry: &Registry) -> u8 {
    match command {
        Command::Validate { pipeline } => match load(&pipeline, registry) {
            Ok(plan) => {
                println!(
                    "{}: valid ({} stages)",
                    pipeline.file.display(),
                    plan.stages.len()
                );
                0
            }
            Err(code) => code,
        },
        Command::Graph { pipeline, format } => match load(&pipeline, registry) {
            Ok(plan) => {
                print!("{}", render(&plan, format));
                0
            }
            Err(code) => code,
        },
        Command::Stages { name } => {
            if let Some(n) = &name
                && registry.get(n).is_none()
            {
                let hint = registry
                    .suggest(n)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                eprintln!("no stage type `{n}`{hint}");
                return EXIT_INVALID;
            }
            print!("{}", describe_stages(registry, name.as_deref()));
            0
        }
        Command::Schema => match serde_json::to_string_pretty(&pipeline_schema(registry)) {
            Ok(s) => {
                println!("{s}");
                0
            }
            Err(e) => {
                eprintln!("internal error (this is a bug): {e}");
                EXIT_IO
            }
        },
        Command::Cache { action, cache_dir } => cache_command(action, &cache_dir),
        Command::Run {
            pipeline,
            jobs,
            force,
            runs_dir,
            cache_dir,
            run_id,
            quiet,
            memory,
            batch_rows,
        } => {
            let plan = match load(&pipeline, registry) {
                Ok(p) => p,
                Err(code) => return code,
            };
            if let Some(id) = &run_id
                && (id.is_empty() || id.contains(['/', '\\']) || id == "." || id == "..")
            {
                eprintln!("--run-id `{id}` must be a plain directory name");
                return EXIT_INVALID;
            }
            let opts = RunOptions {
                runs_dir,
                cache_dir,
                run_id,
                jobs,
                force,
                build_id: None,
                batch_rows,
                memory,
            };
            let terminal = !quiet && std::io::stderr().is_terminal();
            let observer = TerminalObserver::new(terminal);
            let result = match executor::run(&plan, &opts, &observer) {
                Ok(r) => r,
                Err(Error::Io { path, source }) => {
                    eprintln!("{}: {}: {source}", paint("1;31", "error"), path.display());
                    return EXIT_IO;
                }
                Err(e) => {
                    eprintln!("{}: {e}", paint("1;31", "error"));
                    return EXIT_IO;
                }
            };
            observer.multi.clear().ok();
            let count = |s: StageStatus| {
                result
                    .record
                    .stages
                    .values()
                    .filter(|r| r.status == s)
                    .count()
            };
            let (ran, cached) = (count(StageStatus::Ran), count(StageStatus::Cached));
            for r in result.record.stages.values() {
                if let Some(why) = &r.cache_repair {
                    eprintln!("{} in stage `{}`: {why}", paint("1;33", "warning"), r.id);
                }
            }
            for (id, err) in result.failures() {
                eprintln!("{} in stage `{id}`: {err}", paint("1;31", "error"));
            }
            for r in result
                .record
                .stages
                .values()
                .filter(|r| r.status == StageStatus::Skipped)
            {
                eprintln!("skipped `{}`: {}", r.id, r.error.as_deref().unwrap_or(""));
            }
            let status = if result.succeeded() {
                paint("1;32", "succeeded")
            } else {
                paint("1;31", "failed")
            };
            println!(
                "run {} {status}: {ran} ran, {cached} cached, {} failed, {} skipped -> {}",
                result.record.run_id,
                count(StageStatus::Failed),
                count(StageStatus::Skipped),
                result.run_dir.display()
            );
            if !result.succeeded() {
                return EXIT_STAGE_FAILED;
            }
            let failed_gates = failed_gates(&result);
            if !failed_gates.is_empty() {
                for (stage, message) in &failed_gates {
                    // Messages quote data (column names): no control characters
                    // reach the terminal.
                    let message = sanitize(message);
                    eprintln!("{} ({stage}): {message}", paint("1;31", "gate failed"));
                }
                return EXIT_GATE_FAILED;
            }
            0
        }
    }
}

fn cache_command(action: CacheAction, dir: &std::path::Path) -> u8 {
    use gigo_pipeline::cache::{Cache, GcPolicy};
    let fail = |e: std::io::Error| {
        eprintln!("{}: {}: {e}", paint("1;31", "error"), dir.display());
        EXIT_IO
    };
    if !dir.is_dir() {
        eprintln!("no cache at {}: nothing to list or remove", dir.display());
        return 0;
    }
    let opened = if matches!(action, CacheAction::Ls { .. }) {
        Cache::open(dir)
    } else {
        Cache::open_exclusive(dir, || {
            eprintln!("waiting until no gigo run uses {} ...", dir.display())
        })
    };
    let cache = match opened {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match action {
        CacheAction::Ls { json } => {
            let entries = match cache.entries() {
                Ok(e) => e,
                Err(e) => return fail(e),
            };
            if json {
                match serde_json::to_string_pretty(&entries) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("internal error (this is a bug): {e}");
                        return EXIT_IO;
                    }
                }
                return 0;
            }
            println!(
                "{:<12}  {:<24}  {:>10}  {:<20}  kept by",
                "key", "stage (type)", "size", "last used"
            );
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mut total = 0;
            for e in &entries {
                total += e.size;
                let stage = format!("{} ({})", e.stage, e.type_name);
                println!(
                    "{:<12}  {:<24}  {:>10}  {:<20}  {}",
                    &e.key[..e.key.len().min(12)],
                    sanitize(&stage),
                    human_size(e.size),
                    format!("{} ago", human_age(now.saturating_sub(e.last_used))),
                    sanitize(&e.kept_by.join(", "))
                );
            }
            println!("{} entries, {}", entries.len(), human_size(total));
            0
        }
        CacheAction::Gc {
            older_than,
            max_size,
        } => match cache.gc(&GcPolicy {
            older_than,
            max_size,
        }) {
            Ok(r) => {
                println!(
                    "removed {} entries ({}), kept {}",
                    r.entries,
                    human_size(r.bytes),
                    r.kept
                );
                0
            }
            Err(e) => fail(e),
        },
        CacheAction::Clean => match cache.clean() {
            Ok(r) => {
                println!("removed {} entries ({})", r.entries, human_size(r.bytes));
                0
            }
            Err(e) => fail(e),
        },
    }
}

/// Text that came from files (stage ids, paths) with control characters replaced.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b / 1e6),
        _ => format!("{:.2} GB", b / 1e9),
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs}s"),
        120..7_200 => format!("{}m", secs / 60),
        7_200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// The failed quality gates that stages' summaries report
/// (`"gates": [{"passed": false, "message": ...}, ...]`, as the `report` stage
/// writes them), as (stage id, message) pairs.
fn failed_gates(result: &gigo_pipeline::RunResult) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for id in result.record.stages.keys() {
        let Some(summary) = result.summary(id) else {
            continue;
        };
        let Some(gates) = summary.get("gates").and_then(|g| g.as_array()) else {
            continue;
        };
        for g in gates {
            if g.get("passed") == Some(&serde_json::Value::Bool(false)) {
                let message = match g.get("message").and_then(|m| m.as_str()) {
                    Some(m) => m.to_string(),
                    None => g.get("name").map(|n| n.to_string()).unwrap_or_default(),
                };
                failed.push((id.clone(), message));
            }
        }
    }
    failed
}

/// Draws a spinner or bar per running stage on a terminal; nothing otherwise.
struct TerminalObserver {
    multi: MultiProgress,
    enabled: bool,
    bars: std::sync::Mutex<std::collections::HashMap<String, ProgressBar>>,
}

impl TerminalObserver {
    fn new(enabled: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if enabled {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        TerminalObserver {
            multi,
            enabled,
            bars: Default::default(),
        }
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn set_total(&self, total: u64) {
        self.0.set_length(total);
        self.0.set_style(
            ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
    }
    fn advance(&self, n: u64) {
        self.0.inc(n);
    }
    fn message(&self, msg: &str) {
        self.0.set_message(msg.to_string());
    }
}

impl Observer for TerminalObserver {
    fn stage_started(&self, stage_id: &str, type_name: &str) -> Arc<dyn Progress> {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_prefix(format!("{stage_id} ({type_name})"));
        if self.enabled {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(stage_id.to_string(), bar.clone());
        }
        Arc::new(Bar(bar))
    }

    fn stage_finished(&self, r: &StageRecord) {
        if let Some(bar) = self.bars.lock().ok().and_then(|mut b| b.remove(&r.id)) {
            bar.finish_and_clear();
        }
        if !self.enabled {
            return;
        }
        let mark = match r.status {
            StageStatus::Ran => paint("32", "ran   "),
            StageStatus::Cached => paint("36", "cached"),
            StageStatus::Failed => paint("31", "FAILED"),
            StageStatus::Skipped => paint("33", "skip  "),
        };
        let rows = if r.rows.checked || r.rows.rows_out > 0 {
            format!("  rows {} -> {}", r.rows.rows_in, r.rows.rows_out)
        } else {
            String::new()
        };
        let removed: usize = r.rows.removed.iter().map(|x| x.rows).sum();
        let removed = if removed > 0 {
            format!(" ({removed} removed)")
        } else {
            String::new()
        };
        let _ = self.multi.println(format!(
            "{mark} {} ({}) {:.2}s{rows}{removed}",
            r.id,
            r.type_name,
            r.wall_ms as f64 / 1000.0
        ));
    }
}
