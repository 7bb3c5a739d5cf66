//! Running a plan: topological order, independent stages in parallel, every
//! stage's outputs cached by content, a run record in `runs/<id>/run.json`.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use crate::budget::{Bytes, Ledger, Memory};
use crate::cache::{Cache, Lookup, Manifest};
use crate::error::{Error, StageError};
use crate::plan::{Plan, PlannedStage};
use crate::stage::{Flow, Inputs, NoProgress, Progress, SUMMARY_PORT, StageContext};
use crate::store::{self, PortEntry, ReasonCount, RowAccount};
use crate::stream::DEFAULT_BATCH_ROWS;
use crate::table::{Artifact, PortKind, REASON_COLUMN};
use crate::wiring::Metrics;

/// Version of the `run.json` format.
pub const RUN_RECORD_VERSION: u32 = 1;

/// Receives what happens during a run (the CLI draws progress bars from it).
pub trait Observer: Send + Sync {
    /// A progress handle for a stage that is about to run.
    fn stage_started(&self, _stage_id: &str, _type_name: &str) -> Arc<dyn Progress> {
        Arc::new(NoProgress)
    }
    /// A stage finished (ran, came from the cache, failed or was skipped).
    fn stage_finished(&self, _record: &StageRecord) {}
}

/// An [`Observer`] that ignores everything.
pub struct Silent;
impl Observer for Silent {}

/// How to run.
pub struct RunOptions {
    /// Where run directories go (`runs/`).
    pub runs_dir: PathBuf,
    /// The cache root (`.gigo/cache`).
    pub cache_dir: PathBuf,
    /// The run id; default: `<UTC time>-<pipeline name>`.
    pub run_id: Option<String>,
    /// How many stages may run at once.
    pub jobs: usize,
    /// Re-run every stage, ignoring the cache.
    pub force: bool,
    /// The build id in every cache key; `None`: the running executable's
    /// hash ([`crate::cache::build_id`]). A program that embeds gigo may pin
    /// its own, and then owns the promise that other code gets another id.
    pub build_id: Option<String>,
    /// Rows per batch for stages that read tables in batches; results never
    /// depend on it (so it is in no cache key).
    pub batch_rows: usize,
    /// The memory budget in bytes (`--memory`); `None`: the pipeline's
    /// `memory:`, else [`crate::budget::default_budget`].
    pub memory: Option<u64>,
}

/// Outcome of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Executed in this run.
    Ran,
    /// Served from the cache.
    Cached,
    /// Failed.
    Failed,
    /// Not run because an upstream stage failed.
    Skipped,
}

/// One output in the run record.
#[derive(Debug, Clone, Serialize)]
pub struct OutputRecord {
    /// Kind of artifact.
    pub kind: PortKind,
    /// Path of the file in the run directory.
    pub path: String,
    /// Rows, for tables.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<usize>,
}

/// What `run.json` says of one stage.
#[derive(Debug, Clone, Serialize)]
pub struct StageRecord {
    /// Stage id.
    pub id: String,
    /// Stage type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Outcome.
    pub status: StageStatus,
    /// Whether the outputs came from the cache.
    pub cache_hit: bool,
    /// The cache key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
    /// Wall time of this run of the stage, in milliseconds (0 when cached).
    pub wall_ms: u64,
    /// Row accounting.
    pub rows: RowAccount,
    /// Outputs by port.
    pub outputs: BTreeMap<String, OutputRecord>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Messages the stage logged.
    pub messages: Vec<String>,
    /// Why a cache entry under this stage's key was found damaged, discarded
    /// and recomputed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_repair: Option<String>,
    /// Files the stage published outside the run directory's stage folder.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub published: Vec<String>,
    /// The share of the run's memory budget set aside for the stage while
    /// it ran (see [`crate::budget::Ledger`]); none on a cache hit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_share: Option<u64>,
    /// How long it waited for that share, for stages running beside it to
    /// finish (milliseconds, part of `wall_ms`); none when it did not wait.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_wait_ms: Option<u64>,
}

/// The whole `run.json`.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Format version of this file.
    pub format_version: u32,
    /// gigo's version.
    pub gigo_version: String,
    /// Run id.
    pub run_id: String,
    /// Pipeline name.
    pub pipeline: String,
    /// The pipeline file.
    pub file: String,
    /// Run seed.
    pub seed: u64,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    /// Start time (UTC, RFC 3339).
    pub started_at: String,
    /// End time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The resolved configuration.
    pub config: Value,
    /// Stages, by id.
    pub stages: BTreeMap<String, StageRecord>,
}

/// The result of a run.
pub struct RunResult {
    /// The run directory.
    pub run_dir: PathBuf,
    /// The record written to `run.json`.
    pub record: RunRecord,
}

impl RunResult {
    /// Whether every stage ran or was cached.
    pub fn succeeded(&self) -> bool {
        self.record.status == "succeeded"
    }

    /// The failed stages with their errors.
    pub fn failures(&self) -> Vec<(&str, &str)> {
        self.record
            .stages
            .values()
            .filter(|s| s.status == StageStatus::Failed)
            .map(|s| (s.id.as_str(), s.error.as_deref().unwrap_or("")))
            .collect()
    }

    /// The summary a stage produced, read back from the run directory.
    pub fn summary(&self, stage: &str) -> Option<Value> {
        let out = self.record.stages.get(stage)?.outputs.get(SUMMARY_PORT)?;
        let bytes = fs::read(self.run_dir.join(&out.path)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// An output held by the executor: on disk, and in memory only while a
/// stage of this run that reads it has yet to finish. Without that, every
/// table of a run would stay resident until its end; with it, a linear
/// pipeline holds the tables of the stages running now and their inputs.
struct Slot {
    dir: PathBuf,
    entry: PortEntry,
    /// The artifact, while `pending > 0`; loaded from disk on first use.
    value: Mutex<Option<Artifact>>,
    /// Edges from this output to stages of the run that have not finished.
    pending: AtomicUsize,
}

impl Slot {
    fn new(dir: PathBuf, entry: PortEntry, readers: usize) -> Slot {
        Slot {
            dir,
            entry,
            value: Mutex::new(None),
            pending: AtomicUsize::new(readers),
        }
    }

    /// The artifact, from memory or disk (kept for the other readers: the
    /// lock makes concurrent readers share one load).
    fn get(&self) -> Result<Artifact, StageError> {
        let mut v = lock(&self.value);
        if let Some(v) = v.as_ref() {
            return Ok(v.clone());
        }
        let a = store::read_artifact(&self.dir, &self.entry)?;
        if self.pending.load(Ordering::SeqCst) > 0 {
            *v = Some(a.clone());
        }
        Ok(a)
    }

    /// Keeps `a`, just produced, in memory for the stages that will read it.
    fn hold(&self, a: Artifact) {
        if self.pending.load(Ordering::SeqCst) > 0 {
            *lock(&self.value) = Some(a);
        }
    }

    /// One reader has finished (ran, failed or was skipped); the last one
    /// lets the artifact go (its memory is freed once the reader's own
    /// copy of the handle is dropped, which it is by then).
    fn reader_done(&self) {
        let before = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .unwrap_or(0);
        if before <= 1 {
            *lock(&self.value) = None;
        }
    }
}

type Slots = HashMap<(String, String), Arc<Slot>>;

/// How many input edges of the plan read each output (`stage`, `port`).
fn readers(plan: &Plan) -> HashMap<(String, String), usize> {
    let mut n = HashMap::new();
    for st in &plan.stages {
        for (_, srcs) in &st.inputs {
            for src in srcs {
                *n.entry((src.stage.clone(), src.port.clone())).or_insert(0) += 1;
            }
        }
    }
    n
}

/// Stage `st` has finished: each output it read has one reader fewer.
fn inputs_done(st: &PlannedStage, slots: &Mutex<Slots>) {
    let s = lock(slots);
    for (_, srcs) in &st.inputs {
        for src in srcs {
            if let Some(slot) = s.get(&(src.stage.clone(), src.port.clone())) {
                slot.reader_done();
            }
        }
    }
}

/// Runs `plan`. Stage failures do not make this return `Err`: they are in the
/// record (and dependants are skipped); `Err` is for problems with the run
/// directory or cache themselves.
pub fn run(plan: &Plan, opts: &RunOptions, observer: &dyn Observer) -> Result<RunResult, Error> {
    let cache = Cache::open(&opts.cache_dir).map_err(|e| Error::io(&opts.cache_dir, e))?;
    let build = match &opts.build_id {
        Some(b) => b.clone(),
        None => cache
            .build_id()
            .map_err(|e| Error::io(&opts.cache_dir, e))?,
    };
    let run_id = match &opts.run_id {
        Some(id) => id.clone(),
        None => default_run_id(&opts.runs_dir, &plan.name),
    };
    let run_dir = opts.runs_dir.join(&run_id);
    fs::create_dir_all(&run_dir).map_err(|e| Error::io(&run_dir, e))?;
    let record = Mutex::new(RunRecord {
        format_version: RUN_RECORD_VERSION,
        gigo_version: crate::VERSION.to_string(),
        run_id: run_id.clone(),
        pipeline: plan.name.clone(),
        file: plan.file.to_string(),
        seed: plan.seed,
        status: "running".into(),
        started_at: rfc3339(SystemTime::now()),
        finished_at: None,
        config: plan.resolved_config(),
        stages: BTreeMap::new(),
    });
    let write_record = |r: &RunRecord| -> Result<(), Error> {
        let path = run_dir.join("run.json");
        let bytes = serde_json::to_vec_pretty(r).map_err(|e| Error::Internal(e.to_string()))?;
        store::write_atomic(&path, &bytes).map_err(|e| Error::io(&path, e))
    };
    write_record(&lock(&record))?;

    let slots: Mutex<Slots> = Mutex::new(HashMap::new());
    let readers = readers(plan);
    let budget = opts
        .memory
        .or(plan.memory)
        .unwrap_or_else(crate::budget::default_budget);
    let ledger = Ledger::new(budget);
    let mut status: HashMap<&str, Option<StageStatus>> =
        plan.stages.iter().map(|s| (s.id.as_str(), None)).collect();
    let mut started: std::collections::HashSet<&str> = Default::default();
    let mut running = 0usize;
    let jobs = opts.jobs.max(1);
    let (tx, rx) = mpsc::channel::<StageRecord>();

    std::thread::scope(|scope| -> Result<(), Error> {
        loop {
            // Skip what cannot run; start what is ready, up to `jobs`.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for st in &plan.stages {
                    if status[st.id.as_str()].is_some() || started.contains(st.id.as_str()) {
                        continue;
                    }
                    let ups: Vec<&str> = st
                        .inputs
                        .iter()
                        .flat_map(|(_, srcs)| srcs.iter().map(|s| s.stage.as_str()))
                        .collect();
                    let failed_up = ups.iter().find(|u| {
                        matches!(
                            status.get(*u).copied().flatten(),
                            Some(StageStatus::Failed | StageStatus::Skipped)
                        )
                    });
                    if let Some(up) = failed_up {
                        let rec = skipped_record(st, up);
                        inputs_done(st, &slots);
                        observer.stage_finished(&rec);
                        status.insert(st.id.as_str(), Some(StageStatus::Skipped));
                        let mut r = lock(&record);
                        r.stages.insert(st.id.clone(), rec);
                        progressed = true;
                        continue;
                    }
                    let ready = ups.iter().all(|u| {
                        matches!(
                            status.get(*u).copied().flatten(),
                            Some(StageStatus::Ran | StageStatus::Cached)
                        )
                    });
                    if ready && running < jobs {
                        started.insert(st.id.as_str());
                        running += 1;
                        let tx = tx.clone();
                        let (slots, cache, run_dir) = (&slots, &cache, &run_dir);
                        let progress = observer.stage_started(&st.id, &st.type_name);
                        let at = Where {
                            cache,
                            build: &build,
                            run_dir,
                            readers: &readers,
                            budget,
                            ledger: &ledger,
                        };
                        scope.spawn(move || {
                            let rec = run_stage(plan, st, opts, at, slots, progress);
                            inputs_done(st, slots);
                            let _ = tx.send(rec);
                        });
                        progressed = true;
                    }
                }
            }
            if running == 0 {
                break;
            }
            let rec = rx
                .recv()
                .map_err(|_| Error::Internal("a stage worker vanished".into()))?;
            running -= 1;
            observer.stage_finished(&rec);
            let id = plan
                .stages
                .iter()
                .find(|s| s.id == rec.id)
                .map(|s| s.id.as_str())
                .ok_or_else(|| Error::Internal(format!("unknown stage {}", rec.id)))?;
            status.insert(id, Some(rec.status));
            let mut r = lock(&record);
            r.stages.insert(rec.id.clone(), rec);
            write_record(&r)?;
        }
        Ok(())
    })?;

    let _ = fs::remove_dir(run_dir.join(".scratch")); // only once empty
    let mut r = record.into_inner().unwrap_or_else(|p| p.into_inner());
    let ok = r
        .stages
        .values()
        .all(|s| matches!(s.status, StageStatus::Ran | StageStatus::Cached));
    r.status = if ok { "succeeded" } else { "failed" }.into();
    r.finished_at = Some(rfc3339(SystemTime::now()));
    write_record(&r)?;
    // `gigo cache gc` keeps what this run used.
    let keys = r
        .stages
        .values()
        .filter_map(|s| s.cache_key.clone())
        .collect();
    cache
        .record_run(Path::new(&*plan.file), &plan.name, &run_id, keys)
        .map_err(|e| Error::io(&opts.cache_dir, e))?;
    Ok(RunResult { run_dir, record: r })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn skipped_record(st: &PlannedStage, up: &str) -> StageRecord {
    StageRecord {
        id: st.id.clone(),
        type_name: st.type_name.clone(),
        status: StageStatus::Skipped,
        cache_hit: false,
        cache_key: None,
        wall_ms: 0,
        rows: RowAccount::default(),
        outputs: BTreeMap::new(),
        error: Some(format!("not run: upstream stage `{up}` did not succeed")),
        messages: vec![],
        cache_repair: None,
        published: vec![],
        memory_share: None,
        memory_wait_ms: None,
    }
}

/// What every stage of a run shares: the cache, the build id in its keys,
/// the run directory, how many stages read each output.
#[derive(Clone, Copy)]
struct Where<'a> {
    cache: &'a Cache,
    build: &'a str,
    run_dir: &'a Path,
    readers: &'a HashMap<(String, String), usize>,
    budget: u64,
    /// The shares of the budget the running stages hold.
    ledger: &'a Ledger,
}

/// A section's metrics must be among those its stage declares
/// ([`Stage::metrics`]), which `gigo validate` trusts to refuse a gate no
/// input can test.
fn check_declared_metrics(declared: Metrics, summary: &Value) -> Result<(), StageError> {
    let Metrics::Names(names) = declared else {
        return Ok(());
    };
    let Some(metrics) = summary
        .get(crate::summary::REPORT_KEY)
        .and_then(|r| r.get("metrics"))
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    let undeclared: Vec<&str> = metrics
        .keys()
        .map(String::as_str)
        .filter(|m| !names.contains(*m))
        .collect();
    if undeclared.is_empty() {
        return Ok(());
    }
    Err(StageError::internal(format!(
        "the stage reported metric(s) {} that its `metrics()` does not declare",
        undeclared.join(", ")
    )))
}

fn run_stage(
    plan: &Plan,
    st: &PlannedStage,
    opts: &RunOptions,
    at: Where<'_>,
    slots: &Mutex<Slots>,
    progress: Arc<dyn Progress>,
) -> StageRecord {
    let start = Instant::now();
    let mut rec = StageRecord {
        id: st.id.clone(),
        type_name: st.type_name.clone(),
        status: StageStatus::Failed,
        cache_hit: false,
        cache_key: None,
        wall_ms: 0,
        rows: RowAccount::default(),
        outputs: BTreeMap::new(),
        error: None,
        messages: vec![],
        cache_repair: None,
        published: vec![],
        memory_share: None,
        memory_wait_ms: None,
    };
    if let Err(e) = execute(plan, st, opts, at, slots, progress, &mut rec) {
        rec.status = StageStatus::Failed;
        rec.error = Some(e.to_string());
    }
    // The shared `.scratch` itself goes when the run ends: removed here, it
    // could vanish between another stage's creating it and its own folder.
    let _ = fs::remove_dir_all(at.run_dir.join(".scratch").join(&st.id));
    rec.wall_ms = start.elapsed().as_millis() as u64;
    rec
}

fn execute(
    plan: &Plan,
    st: &PlannedStage,
    opts: &RunOptions,
    at: Where<'_>,
    slots: &Mutex<Slots>,
    progress: Arc<dyn Progress>,
    rec: &mut StageRecord,
) -> Result<(), StageError> {
    let Where {
        cache,
        build,
        run_dir,
        readers,
        budget,
        ledger,
    } = at;
    // Inputs, by port, as slots.
    let mut input_slots: Vec<(String, Flow, Arc<Slot>)> = Vec::new();
    let mut input_sources: Vec<String> = Vec::new();
    {
        let s = lock(slots);
        for (port, srcs) in &st.inputs {
            for src in srcs {
                let slot = s
                    .get(&(src.stage.clone(), src.port.clone()))
                    .cloned()
                    .ok_or_else(|| {
                        StageError::internal(format!(
                            "output {}.{} is missing",
                            src.stage, src.port
                        ))
                    })?;
                input_slots.push((port.name.clone(), port.flow, slot));
                input_sources.push(format!("{}.{}", src.stage, src.port));
            }
        }
    }

    let mut ctx = StageContext::new(
        &st.id,
        plan.seed,
        run_dir.join(".scratch").join(&st.id),
        plan.base_dir.clone(),
        run_dir.to_path_buf(),
        progress,
    );
    ctx.batch_rows = opts.batch_rows.max(1);
    ctx.memory_budget = budget;
    let mut extra = st.stage.fingerprint(&plan.base_dir)?;
    if st.stage.results_depend_on_budget() {
        // another budget may give other results (a sample, not every row):
        // never serve one budget's outputs to another
        let mut e = extra.unwrap_or_default();
        e.push_str(&format!("memory budget {budget}\n"));
        extra = Some(e);
    }
    let key = cache_key(st, build, ctx.seed, &input_slots, extra.as_deref());
    rec.cache_key = Some(key.clone());
    let found = if opts.force {
        Lookup::Miss
    } else {
        cache.lookup(&key)
    };
    if let Lookup::Damaged(why) = &found {
        rec.cache_repair = Some(format!(
            "cache entry {key} was damaged ({why}): discarded and recomputed"
        ));
        cache
            .discard(&key)
            .map_err(|e| StageError::io(cache.entry_dir(&key), e))?;
    }
    let (dir, manifest) = match found {
        Lookup::Hit(m) => {
            rec.status = StageStatus::Cached;
            rec.cache_hit = true;
            cache.touch(&key);
            (cache.entry_dir(&key), *m)
        }
        Lookup::Miss | Lookup::Damaged(_) => {
            let mut inputs = Inputs::default();
            let (mut input_bytes, mut rows_in) = (0u64, 0usize);
            for ((port, flow, slot), source) in input_slots.iter().zip(&input_sources) {
                let a = slot.get()?;
                if let Some(t) = a.source() {
                    input_bytes += t.memory_bytes();
                    if *flow == Flow::Main {
                        rows_in += t.num_rows();
                    }
                }
                inputs.push_from(port, source, a);
            }
            let memory = st.stage.memory();
            let need = memory.need(input_bytes, rows_in);
            if need.bytes > budget {
                return Err(StageError::data(format!(
                    "stage `{}` ({}) needs about {} of memory ({}), more than the run's budget \
                     of {}: raise the budget with `--memory` or `memory:` in the pipeline file, \
                     or give the stage fewer rows{}",
                    st.id,
                    st.type_name,
                    Bytes(need.bytes),
                    need.why,
                    Bytes(budget),
                    st.stage
                        .streaming_hint()
                        .map(|h| format!("; {h}"))
                        .unwrap_or_default()
                )));
            }
            // The stage's share of the run's budget, held until its outputs
            // are written: it starts once the share fits beside those of
            // the stages running.
            let wants = st.stage.reserve(&need, &inputs, &ctx).max(need.bytes);
            let asked = Instant::now();
            let mut waited = false;
            let share = ledger.reserve(&st.id, wants, |others| {
                waited = true;
                let on: Vec<String> = others
                    .iter()
                    .map(|(id, b)| format!("`{id}` ({})", Bytes(*b)))
                    .collect();
                ctx.progress.message(&format!(
                    "waiting for memory: it may take {} of the {} budget, and {} hold the rest",
                    Bytes(wants.min(budget)),
                    Bytes(budget),
                    on.join(", ")
                ));
            });
            rec.memory_share = Some(share.bytes);
            if waited {
                rec.memory_wait_ms = Some(asked.elapsed().as_millis() as u64);
            }
            if matches!(memory, Memory::Whole { .. }) {
                inputs = inputs.loaded(ctx.batch_rows)?;
            }
            fs::create_dir_all(&ctx.scratch_dir)
                .map_err(|e| StageError::io(&ctx.scratch_dir, e))?;
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| st.stage.run(&inputs, &ctx)));
            let out = match result {
                Ok(r) => r?,
                Err(p) => {
                    let msg = crate::panic_message(p.as_ref());
                    return Err(StageError::internal(format!("the stage panicked: {msg}")));
                }
            };
            let rows = account(st, &input_slots, &out)?;
            check_declared_metrics(st.stage.metrics(), &out.summary)?;
            let tmp = cache
                .begin(&key)
                .map_err(|e| StageError::io(&opts.cache_dir, e))?;
            let mut published = Vec::new();
            let mut known = BTreeMap::new();
            for (i, (target, produced)) in out.published.iter().enumerate() {
                let file = format!("published-{i}");
                if let Some(h) = out.published_sha256.get(produced) {
                    known.insert(file.clone(), h.clone());
                }
                fs::rename(produced, tmp.join(&file))
                    .or_else(|_| fs::copy(produced, tmp.join(&file)).map(|_| ()))
                    .map_err(|e| StageError::io(produced, e))?;
                published.push((target.clone(), file));
            }
            let mut ports = BTreeMap::new();
            let mut values = HashMap::new();
            for (name, artifact) in &out.ports {
                ports.insert(name.clone(), store::write_artifact(&tmp, name, artifact)?);
                // A stored table is read again from its place in the cache.
                if !matches!(artifact, Artifact::Stored(_)) {
                    values.insert(name.clone(), artifact.clone());
                }
            }
            let _ = fs::remove_dir_all(&ctx.scratch_dir);
            let summary = Artifact::Summary(Arc::new(out.summary.clone()));
            ports.insert(
                SUMMARY_PORT.into(),
                store::write_artifact(&tmp, SUMMARY_PORT, &summary)?,
            );
            values.insert(SUMMARY_PORT.to_string(), summary);
            let mut manifest = Manifest {
                format: crate::cache::MANIFEST_FORMAT,
                gigo_version: crate::VERSION.to_string(),
                build: build.to_string(),
                key: key.clone(),
                stage: st.id.clone(),
                type_name: st.type_name.clone(),
                created_at: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                ports,
                rows,
                messages: ctx.messages(),
                published,
                files: BTreeMap::new(),
            };
            let dir = cache
                .commit(&tmp, &mut manifest, &known, opts.force)
                .map_err(|e| StageError::io(cache.entry_dir(&key), e))?;
            rec.status = StageStatus::Ran;
            // Downstream stages in this run reuse the in-memory values.
            let mut s = lock(slots);
            for (name, entry) in &manifest.ports {
                let key = (st.id.clone(), name.clone());
                let n = readers.get(&key).copied().unwrap_or(0);
                let slot = Slot::new(dir.clone(), entry.clone(), n);
                if let Some(v) = values.remove(name) {
                    slot.hold(v);
                }
                s.insert(key, Arc::new(slot));
            }
            drop(s);
            // The share goes back once the stage's working memory is freed
            // and, when it was large, handed back to the system: freed heap
            // pages stay resident otherwise (in the arena of the thread that
            // ran the stage), under the next stage's own.
            drop((out, inputs));
            if share.bytes >= crate::memory::RELEASE_ABOVE as u64 {
                crate::memory::release_free_memory();
            }
            drop(share);
            (dir, manifest)
        }
    };

    // Publish outputs (cache hits) and link them into the run directory.
    let stage_dir = run_dir.join(&st.id);
    fs::create_dir_all(&stage_dir).map_err(|e| StageError::io(&stage_dir, e))?;
    let mut s = lock(slots);
    for (name, entry) in &manifest.ports {
        let key = (st.id.clone(), name.clone());
        let n = readers.get(&key).copied().unwrap_or(0);
        s.entry(key)
            .or_insert_with(|| Arc::new(Slot::new(dir.clone(), entry.clone(), n)));
        let dest = stage_dir.join(&entry.file);
        if dir != stage_dir {
            store::link_or_copy(&dir.join(&entry.file), &dest)
                .map_err(|e| StageError::io(&dest, e))?;
        }
        rec.outputs.insert(
            name.clone(),
            OutputRecord {
                kind: entry.kind,
                path: format!("{}/{}", st.id, entry.file),
                rows: entry.rows,
            },
        );
    }
    drop(s);
    // Published files are written on every run, cache hits included.
    for (target, file) in &manifest.published {
        let dest = ctx.resolve_target(target);
        if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| StageError::io(parent, e))?;
        }
        store::publish_atomic(&dir.join(file), &dest).map_err(|e| StageError::io(&dest, e))?;
        rec.published.push(dest.display().to_string());
    }
    rec.rows = manifest.rows.clone();
    rec.messages = manifest.messages.clone();
    Ok(())
}

/// The cache key: gigo version, the build that runs, stage type, resolved
/// parameters, the stage's seed, the fingerprints of its inputs by port, and
/// the stage's own extra fingerprint (e.g. the files it reads).
fn cache_key(
    st: &PlannedStage,
    build: &str,
    seed: u64,
    inputs: &[(String, Flow, Arc<Slot>)],
    extra: Option<&str>,
) -> String {
    let inputs: Vec<Value> = inputs
        .iter()
        .map(|(port, _, slot)| serde_json::json!([port, slot.entry.fingerprint]))
        .collect();
    let material = serde_json::json!({
        "gigo": crate::VERSION,
        "build": build,
        "type": st.type_name,
        "params": st.params,
        "seed": seed,
        "inputs": inputs,
        "extra": extra,
    });
    store::sha256_hex(material.to_string().as_bytes())
}

/// Checks that outputs match the declared ports and that rows balance:
/// in + created = out + removed.
fn account(
    st: &PlannedStage,
    inputs: &[(String, Flow, Arc<Slot>)],
    out: &crate::stage::StageOutput,
) -> Result<RowAccount, StageError> {
    let mut rows = RowAccount {
        created: out
            .created
            .iter()
            .map(|(reason, rows)| ReasonCount {
                reason: reason.clone(),
                rows: *rows,
            })
            .collect(),
        ..Default::default()
    };
    for (_, flow, slot) in inputs {
        if *flow == Flow::Main {
            rows.rows_in += slot.entry.rows.unwrap_or(0);
        }
    }
    let mut has_main = false;
    let mut removed_total = 0usize;
    for spec in &st.outputs {
        if spec.name == SUMMARY_PORT {
            continue;
        }
        let Some(artifact) = out.ports.get(&spec.name) else {
            return Err(StageError::internal(format!(
                "stage `{}` did not produce its declared output `{}`",
                st.id, spec.name
            )));
        };
        if artifact.kind() != spec.kind {
            return Err(StageError::internal(format!(
                "output `{}` of stage `{}` is a {}, declared as a {}",
                spec.name,
                st.id,
                artifact.kind(),
                spec.kind
            )));
        }
        match spec.flow {
            Flow::Main => {
                has_main = true;
                rows.rows_out += artifact.num_rows().unwrap_or(0);
            }
            Flow::Removed => {
                if let Some(t) = artifact.source() {
                    removed_total += t.num_rows();
                    if t.num_rows() > 0 {
                        for (reason, n) in t.value_counts(REASON_COLUMN, DEFAULT_BATCH_ROWS)? {
                            match rows.removed.iter_mut().find(|r| r.reason == reason) {
                                Some(r) => r.rows += n,
                                None => rows.removed.push(ReasonCount { reason, rows: n }),
                            }
                        }
                    }
                }
            }
            Flow::Aside => {}
        }
    }
    if let Some(extra) = out
        .ports
        .keys()
        .find(|k| !st.outputs.iter().any(|p| &p.name == *k))
    {
        return Err(StageError::internal(format!(
            "stage `{}` produced an undeclared output `{extra}`",
            st.id
        )));
    }
    if has_main {
        let created: usize = rows.created.iter().map(|c| c.rows).sum();
        if rows.rows_in + created != rows.rows_out + removed_total {
            return Err(StageError::internal(format!(
                "row accounting does not balance in stage `{}`: {} in + {} created != {} out + {} removed",
                st.id, rows.rows_in, created, rows.rows_out, removed_total
            )));
        }
        rows.checked = true;
    }
    Ok(rows)
}

fn default_run_id(runs_dir: &Path, name: &str) -> String {
    let stamp = rfc3339(SystemTime::now())
        .replace([':', '-'], "")
        .replace('T', "-")
        .trim_end_matches('Z')
        .to_string();
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = format!("{stamp}-{safe}");
    let mut id = base.clone();
    let mut n = 2;
    while runs_dir.join(&id).exists() {
        id = format!("{base}-{n}");
        n += 1;
    }
    id
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a time (UTC).
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use crate::stage::{PortSpec, Stage, StageOutput};
    use crate::table::Table;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct NoParams {}

    /// A stage with no inputs that counts its runs and says `{"n": 1}`.
    struct Counting(Arc<AtomicUsize>);
    impl Stage for Counting {
        fn inputs(&self) -> Vec<PortSpec> {
            vec![]
        }
        fn outputs(&self) -> Vec<PortSpec> {
            vec![]
        }
        fn run(
            &self,
            _: &crate::stage::Inputs,
            _: &StageContext,
        ) -> Result<StageOutput, StageError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(StageOutput::new().with_summary(serde_json::json!({"n": 1})))
        }
    }

    fn counting_plan(dir: &Path, runs: Arc<AtomicUsize>) -> Plan {
        let mut registry = Registry::new();
        registry.register::<NoParams, _>("count", "Counts.", move |_| {
            Ok(Box::new(Counting(runs.clone())))
        });
        let spec = crate::config::parse_str(
            "name: t\nseed: 1\nstages:\n  c:\n    type: count\n",
            "t.yaml".into(),
            dir.to_path_buf(),
            &[],
        )
        .unwrap();
        crate::plan::build_plan(&spec, &registry).unwrap()
    }

    fn options(dir: &Path, build: &str) -> RunOptions {
        RunOptions {
            runs_dir: dir.join("runs"),
            cache_dir: dir.join("cache"),
            run_id: None,
            jobs: 1,
            force: false,
            build_id: Some(build.into()),
            batch_rows: crate::stream::DEFAULT_BATCH_ROWS,
            memory: None,
        }
    }

    type Seen = Arc<Mutex<Vec<(String, bool)>>>;

    /// Outputs a table, and records at each of its runs whether the table
    /// `watched` (one a previous stage produced) is still alive in memory.
    struct Watching {
        reads: usize,
        watched: Arc<Mutex<std::sync::Weak<Table>>>,
        seen: Seen,
        produce: bool,
    }
    impl Stage for Watching {
        fn inputs(&self) -> Vec<PortSpec> {
            // the second input is read aside: rows flow from the first only
            let ports = [
                PortSpec::table("a", "rows"),
                PortSpec::aside("b", PortKind::Table, "rows"),
            ];
            ports.into_iter().take(self.reads).collect()
        }
        fn outputs(&self) -> Vec<PortSpec> {
            vec![PortSpec::table("table", "rows")]
        }
        fn run(
            &self,
            _: &crate::stage::Inputs,
            ctx: &StageContext,
        ) -> Result<StageOutput, StageError> {
            let alive = lock(&self.watched).upgrade().is_some();
            lock(&self.seen).push((ctx.stage_id.clone(), alive));
            let schema = Arc::new(arrow::datatypes::Schema::new(vec![
                arrow::datatypes::Field::new("x", arrow::datatypes::DataType::Int64, false),
            ]));
            let col: arrow::array::ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
                ctx.stage_id.len() as i64,
            ]));
            let t = Arc::new(Table::from_batch(
                arrow::array::RecordBatch::try_new(schema, vec![col]).unwrap(),
            ));
            if self.produce {
                *lock(&self.watched) = Arc::downgrade(&t);
            }
            let out = StageOutput::new().with("table", Artifact::Table(t));
            // a source makes its row; a reader passes one through
            Ok(if self.reads == 0 {
                out.created("made", 1)
            } else {
                out
            })
        }
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct WatchParams {
        reads: usize,
        #[serde(default)]
        produce: bool,
    }

    /// What each stage of `yaml` saw of the watched table.
    fn watch(dir: &Path, yaml: &str) -> Vec<(String, bool)> {
        let watched = Arc::new(Mutex::new(std::sync::Weak::new()));
        let seen: Seen = Arc::default();
        let mut registry = Registry::new();
        let (w, s) = (watched.clone(), seen.clone());
        registry.register::<WatchParams, _>("w", "Watches.", move |p| {
            Ok(Box::new(Watching {
                reads: p.reads,
                watched: w.clone(),
                seen: s.clone(),
                produce: p.produce,
            }))
        });
        let spec = crate::config::parse_str(yaml, "t.yaml".into(), dir.to_path_buf(), &[]).unwrap();
        let plan = crate::plan::build_plan(&spec, &registry).unwrap();
        let r = run(&plan, &options(dir, "b"), &Silent).unwrap();
        assert!(r.succeeded(), "{:?}", r.failures());
        lock(&seen).to_vec()
    }

    #[test]
    fn an_output_leaves_memory_when_its_last_reader_has_finished() {
        let chain = "name: t\nseed: 1\nstages:\n  src:\n    type: w\n    reads: 0\n    produce: true\n  \
                     mid:\n    type: w\n    reads: 1\n    inputs: src\n  \
                     last:\n    type: w\n    reads: 1\n    inputs: mid\n";
        let dir = tempfile::tempdir().unwrap();
        let seen = watch(dir.path(), chain);
        assert_eq!(
            seen,
            [
                ("src".into(), false),
                ("mid".into(), true),
                ("last".into(), false)
            ],
            "src's table is held for mid, then let go"
        );
        // a second reader keeps it until that reader has run
        let fan = chain.replace(
            "reads: 1\n    inputs: mid",
            "reads: 2\n    inputs: [mid, src]",
        );
        let dir = tempfile::tempdir().unwrap();
        let seen = watch(dir.path(), &fan);
        assert_eq!(seen[2], ("last".into(), true), "{seen:?}");
    }

    /// A stage that declares `bytes` of memory and, while it runs, counts
    /// the stages of its kind running (`peak`: the most at once); with
    /// `meet`, it waits (up to 10 s) to see another running.
    struct Holding {
        bytes: u64,
        meet: bool,
        running: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }
    impl Stage for Holding {
        fn inputs(&self) -> Vec<PortSpec> {
            vec![]
        }
        fn outputs(&self) -> Vec<PortSpec> {
            vec![]
        }
        fn memory(&self) -> Memory {
            Memory::Streams {
                per_row: 0.0,
                fixed: self.bytes,
            }
        }
        fn run(
            &self,
            _: &crate::stage::Inputs,
            _: &StageContext,
        ) -> Result<StageOutput, StageError> {
            let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(now, Ordering::SeqCst);
            let until = Instant::now() + Duration::from_secs(if self.meet { 10 } else { 0 });
            while self.peak.load(Ordering::SeqCst) < 2 && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(100));
            self.running.fetch_sub(1, Ordering::SeqCst);
            Ok(StageOutput::new())
        }
    }

    #[derive(serde::Deserialize, schemars::JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct HoldParams {
        bytes: u64,
        #[serde(default)]
        meet: bool,
    }

    /// Runs two independent `Holding` stages of `bytes` each with two jobs
    /// under `budget`: the most that ran at once, and each one's record.
    fn two_holding(dir: &Path, bytes: u64, meet: bool, budget: u64) -> (usize, Vec<StageRecord>) {
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut registry = Registry::new();
        let (r, p) = (running.clone(), peak.clone());
        registry.register::<HoldParams, _>("hold", "Holds.", move |params| {
            Ok(Box::new(Holding {
                bytes: params.bytes,
                meet: params.meet,
                running: r.clone(),
                peak: p.clone(),
            }))
        });
        let yaml = format!(
            "name: t\nseed: 1\nstages:\n  a:\n    type: hold\n    bytes: {bytes}\n    meet: {meet}\n  \
             b:\n    type: hold\n    bytes: {bytes}\n    meet: {meet}\n"
        );
        let spec =
            crate::config::parse_str(&yaml, "t.yaml".into(), dir.to_path_buf(), &[]).unwrap();
        let plan = crate::plan::build_plan(&spec, &registry).unwrap();
        let mut opts = options(dir, "b");
        opts.jobs = 2;
        opts.force = true;
        opts.memory = Some(budget);
        let r = run(&plan, &opts, &Silent).unwrap();
        assert!(r.succeeded(), "{:?}", r.failures());
        (
            peak.load(Ordering::SeqCst),
            r.record.stages.into_values().collect(),
        )
    }

    #[test]
    fn stages_run_at_once_only_while_their_shares_fit_the_budget_together() {
        let dir = tempfile::tempdir().unwrap();
        // 400 + 400 fit 1000: the two run side by side and neither waits
        let (peak, recs) = two_holding(dir.path(), 400, true, 1_000);
        assert_eq!(peak, 2);
        for r in &recs {
            assert_eq!(r.memory_share, Some(400), "{}", r.id);
            assert_eq!(r.memory_wait_ms, None, "{}", r.id);
        }
        // 600 + 600 do not: one waits for the other to finish
        let (peak, recs) = two_holding(dir.path(), 600, false, 1_000);
        assert_eq!(peak, 1);
        let waited: Vec<&str> = recs
            .iter()
            .filter(|r| r.memory_wait_ms.is_some())
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(waited.len(), 1, "{waited:?}");
        // a stage over the whole budget still fails before it starts
        let dir = tempfile::tempdir().unwrap();
        let (running, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let mut registry = Registry::new();
        registry.register::<HoldParams, _>("hold", "Holds.", move |params| {
            Ok(Box::new(Holding {
                bytes: params.bytes,
                meet: false,
                running: running.clone(),
                peak: peak.clone(),
            }))
        });
        let spec = crate::config::parse_str(
            "name: t\nseed: 1\nstages:\n  big:\n    type: hold\n    bytes: 2000\n",
            "t.yaml".into(),
            dir.path().to_path_buf(),
            &[],
        )
        .unwrap();
        let plan = crate::plan::build_plan(&spec, &registry).unwrap();
        let mut opts = options(dir.path(), "b");
        opts.memory = Some(1_000);
        let r = run(&plan, &opts, &Silent).unwrap();
        let err = r.record.stages["big"].error.clone().unwrap_or_default();
        assert!(err.contains("more than the run's budget"), "{err}");
    }

    #[test]
    fn a_section_may_carry_only_the_metrics_its_stage_declares() {
        let summary = serde_json::json!({"report": {"metrics": {"rows": 3, "drift": 0.1}}});
        let e = check_declared_metrics(Metrics::names(["rows"]), &summary).unwrap_err();
        assert!(matches!(e, StageError::Internal(_)), "{e:?}");
        assert!(e.to_string().contains("drift"), "{e}");
        assert!(check_declared_metrics(Metrics::names(["rows", "drift"]), &summary).is_ok());
        assert!(check_declared_metrics(Metrics::Any, &summary).is_ok());
        // no report section: nothing to check
        assert!(check_declared_metrics(Metrics::none(), &serde_json::json!({"n": 1})).is_ok());
    }

    #[test]
    fn another_build_misses_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let plan = counting_plan(dir.path(), runs.clone());
        let status = |build: &str| {
            let r = run(&plan, &options(dir.path(), build), &Silent).unwrap();
            r.record.stages["c"].status
        };
        assert_eq!(status("one"), StageStatus::Ran);
        assert_eq!(status("one"), StageStatus::Cached);
        assert_eq!(status("two"), StageStatus::Ran);
        assert_eq!(status("two"), StageStatus::Cached);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_damaged_entry_is_recomputed_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let plan = counting_plan(dir.path(), runs.clone());
        let opts = options(dir.path(), "b");
        let first = run(&plan, &opts, &Silent).unwrap();
        let key = first.record.stages["c"].cache_key.clone().unwrap();
        let summary = opts.cache_dir.join(&key).join("summary.json");
        // Seven bytes of garbage, written in place (through the run
        // directory's hard link, as a user's slip would).
        fs::write(&summary, b"garbage").unwrap();
        let second = run(&plan, &opts, &Silent).unwrap();
        let rec = &second.record.stages["c"];
        assert_eq!(rec.status, StageStatus::Ran);
        let why = rec.cache_repair.as_deref().unwrap();
        assert!(why.contains("summary.json"), "{why}");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(second.summary("c").unwrap(), serde_json::json!({"n": 1}));
        let third = run(&plan, &opts, &Silent).unwrap();
        assert_eq!(third.record.stages["c"].status, StageStatus::Cached);
        assert!(third.record.stages["c"].cache_repair.is_none());
    }

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            "2026-11-18T11:06:40Z"
        );
    }
}
