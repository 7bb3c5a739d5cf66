//! The stage contract: ports, parameters, context, outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use arrow::datatypes::SchemaRef;

use crate::budget::Memory;
use crate::error::{ParamProblem, StageError};
use crate::stream::{DEFAULT_BATCH_ROWS, Source, TableWriter};
use crate::table::{Artifact, Model, PortKind, Table};
use crate::wiring::{Metrics, Wiring};

/// How rows on a port count in the row accounting of the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Rows that flow through the stage: input rows, output rows.
    Main,
    /// Rows the stage removed; the table has a `removed_reason` column.
    Removed,
    /// Not counted (a side table, a model, a summary).
    Aside,
}

/// A named input or output of a stage.
#[derive(Debug, Clone)]
pub struct PortSpec {
    /// Port name (`table`, `train`, `quarantined`, ...).
    pub name: String,
    /// What it carries.
    pub kind: PortKind,
    /// How its rows count.
    pub flow: Flow,
    /// Inputs only: whether the port may be left unconnected.
    pub optional: bool,
    /// Inputs only: whether the port takes several upstream ports.
    pub many: bool,
    /// One line for `gigo stages`.
    pub doc: String,
}

impl PortSpec {
    /// A required table port whose rows flow through.
    pub fn table(name: &str, doc: &str) -> Self {
        PortSpec {
            name: name.into(),
            kind: PortKind::Table,
            flow: Flow::Main,
            optional: false,
            many: false,
            doc: doc.into(),
        }
    }

    /// An output table of removed rows (with a `removed_reason` column).
    pub fn removed(name: &str, doc: &str) -> Self {
        PortSpec {
            flow: Flow::Removed,
            ..PortSpec::table(name, doc)
        }
    }

    /// A port of `kind` that does not count in row accounting.
    pub fn aside(name: &str, kind: PortKind, doc: &str) -> Self {
        PortSpec {
            kind,
            flow: Flow::Aside,
            ..PortSpec::table(name, doc)
        }
    }

    /// Marks an input port optional.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Marks an input port as taking several upstream ports.
    pub fn many(mut self) -> Self {
        self.many = true;
        self
    }
}

/// Name of the port every stage has: its JSON summary.
pub const SUMMARY_PORT: &str = "summary";

/// A stage built from checked parameters, ready to run.
///
/// Building (from parameters) is separate from running, so that `gigo
/// validate` can build every stage and check the graph without touching data.
pub trait Stage: Send + Sync {
    /// The input ports, in the order a YAML list of inputs fills them.
    fn inputs(&self) -> Vec<PortSpec>;

    /// The output ports. The first is the default port (`stage` alone in an
    /// input means `stage.<first>`). Every stage also has a `summary` port.
    fn outputs(&self) -> Vec<PortSpec>;

    /// Extra content that the cache key must cover besides parameters and
    /// inputs: e.g. the bytes of the files a source stage reads. Called before
    /// every run; `base_dir` is the pipeline file's directory.
    fn fingerprint(&self, _base_dir: &Path) -> Result<Option<String>, StageError> {
        Ok(None)
    }

    /// The metrics its summary section may carry (see [`Metrics`]): what a
    /// `report` stage's gates can test. The executor refuses a section that
    /// carries an undeclared one, as a bug.
    fn metrics(&self) -> Metrics {
        Metrics::none()
    }

    /// Checks the stage's place in the validated graph (see [`Wiring`]), at
    /// validate time, before any data is read. A problem's path is a
    /// parameter path, or `inputs` for the stage's inputs.
    fn check_wiring(&self, _wiring: &Wiring) -> Vec<ParamProblem> {
        Vec::new()
    }

    /// How it uses memory, checked against the run's budget before it starts
    /// (see [`Memory`]). The default holds its inputs whole: the executor
    /// loads stored input tables into memory first. A stage that declares
    /// [`Memory::Streams`] gets them as they are and reads them in batches
    /// ([`Inputs::source`]).
    fn memory(&self) -> Memory {
        Memory::WHOLE
    }

    /// Whether the stage's outputs may differ with the run's memory budget
    /// (say, a sample when the rows do not fit): the budget is then part of
    /// its cache key. Deciding only how to read (in memory or in batches,
    /// with the same results) does not count.
    fn results_depend_on_budget(&self) -> bool {
        false
    }

    /// For a stage that holds its inputs whole with these parameters, how
    /// to make it read them in batches instead (other parameters), added to
    /// the error when it does not fit the budget.
    fn streaming_hint(&self) -> Option<String> {
        None
    }

    /// The most memory the stage may take while it runs, given its inputs
    /// and the run's budget (`ctx.memory_budget`): the share the executor
    /// sets aside for it, so that the stages running at once never pass the
    /// budget together (see [`crate::budget::Ledger`]). `need` is what
    /// [`Stage::memory`] says it needs. The default is `need`, right for a
    /// stage whose use does not grow with the budget; a stage that holds
    /// more when the budget allows (a matrix, a sample, a whole file) says
    /// how much. The executor keeps the share between `need` and the budget.
    fn reserve(&self, need: &crate::budget::Need, _inputs: &Inputs, _ctx: &StageContext) -> u64 {
        need.bytes
    }

    /// Does the work. Never prints: report through `ctx` and the summary.
    fn run(&self, inputs: &Inputs, ctx: &StageContext) -> Result<StageOutput, StageError>;
}

/// The inputs of one stage run, by port.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    ports: BTreeMap<String, Vec<Artifact>>,
    /// Where each artifact came from (`stage.port`), in the same order.
    sources: BTreeMap<String, Vec<String>>,
}

impl Inputs {
    /// Adds an artifact to port `name` (its source is unknown: see
    /// [`Inputs::push_from`]).
    pub fn push(&mut self, name: &str, artifact: Artifact) {
        let i = self.all(name).len();
        self.push_from(name, &format!("{name}[{i}]"), artifact);
    }

    /// Adds an artifact to port `name` that upstream output `source`
    /// (`stage.port`) produced.
    pub fn push_from(&mut self, name: &str, source: &str, artifact: Artifact) {
        self.ports
            .entry(name.to_string())
            .or_default()
            .push(artifact);
        self.sources
            .entry(name.to_string())
            .or_default()
            .push(source.to_string());
    }

    /// Where each artifact on `name` came from (`stage.port`, or `name[i]`
    /// when the caller did not say), in the order of [`Inputs::all`].
    pub fn sources(&self, name: &str) -> &[String] {
        self.sources.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every artifact connected to `name`.
    pub fn all(&self, name: &str) -> &[Artifact] {
        self.ports.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The table on `name`, if connected.
    pub fn table_opt(&self, name: &str) -> Option<Arc<Table>> {
        self.all(name).iter().find_map(|a| match a {
            Artifact::Table(t) => Some(t.clone()),
            _ => None,
        })
    }

    /// The table on the required port `name`.
    pub fn table(&self, name: &str) -> Result<Arc<Table>, StageError> {
        self.table_opt(name)
            .ok_or_else(|| StageError::internal(format!("input port `{name}` has no table")))
    }

    /// The table on `name`, in memory or stored, for reading in batches.
    pub fn source_opt(&self, name: &str) -> Option<Source> {
        self.all(name).iter().find_map(Artifact::source)
    }

    /// The table on the required port `name`, for reading in batches.
    pub fn source(&self, name: &str) -> Result<Source, StageError> {
        self.source_opt(name)
            .ok_or_else(|| StageError::internal(format!("input port `{name}` has no table")))
    }

    /// Every stored input table loaded into memory (what a stage that holds
    /// its inputs whole gets), in batches of at most `rows` rows.
    pub fn loaded(mut self, rows: usize) -> Result<Inputs, StageError> {
        for artifacts in self.ports.values_mut() {
            for a in artifacts.iter_mut() {
                if let Artifact::Stored(s) = a {
                    *a = Artifact::Table(Arc::new(s.load(rows)?));
                }
            }
        }
        Ok(self)
    }

    /// The models on `name`.
    pub fn models(&self, name: &str) -> Vec<Arc<Model>> {
        self.all(name)
            .iter()
            .filter_map(|a| match a {
                Artifact::Model(m) => Some(m.clone()),
                _ => None,
            })
            .collect()
    }

    /// Iterates over ports and their artifacts.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Vec<Artifact>)> {
        self.ports.iter()
    }
}

/// What a stage returns.
#[derive(Debug, Default)]
pub struct StageOutput {
    /// Artifacts by output port.
    pub ports: BTreeMap<String, Artifact>,
    /// JSON for the report (`{}` when there is nothing to say).
    pub summary: serde_json::Value,
    /// Rows this stage brought into the pipeline (read from a file,
    /// generated, synthesised), with why.
    pub created: Vec<(String, usize)>,
    /// Files to publish outside the cache: (target as written in the
    /// parameters, file the stage produced in its scratch directory). The
    /// executor keeps a copy in the cache and writes the target atomically on
    /// every run, cache hits included. A target starting with `{run}` lands in
    /// the run directory; other relative targets resolve against the pipeline
    /// file's directory.
    pub published: Vec<(String, PathBuf)>,
    /// The SHA-256 of published files whose hash the stage already knows
    /// (a stored table published as it is), by produced path.
    pub published_sha256: BTreeMap<PathBuf, String>,
}

impl StageOutput {
    /// An output with no ports yet.
    pub fn new() -> Self {
        StageOutput {
            summary: serde_json::json!({}),
            ..Default::default()
        }
    }

    /// Sets port `name`.
    pub fn with(mut self, name: &str, artifact: impl Into<Artifact>) -> Self {
        self.ports.insert(name.to_string(), artifact.into());
        self
    }

    /// The output with every stored table port read into memory: for a
    /// caller (a test) that runs a stage itself and removes its scratch
    /// directory, where stored outputs are written, afterwards.
    pub fn loaded(mut self) -> Result<Self, StageError> {
        for a in self.ports.values_mut() {
            if let Artifact::Stored(s) = a {
                *a = Artifact::Table(Arc::new(s.load(DEFAULT_BATCH_ROWS)?));
            }
        }
        Ok(self)
    }

    /// Sets the summary.
    pub fn with_summary(mut self, summary: serde_json::Value) -> Self {
        self.summary = summary;
        self
    }

    /// Publishes `produced` (a file in the scratch directory) at `target`.
    pub fn publish(mut self, target: impl Into<String>, produced: PathBuf) -> Self {
        self.published.push((target.into(), produced));
        self
    }

    /// Publishes `produced` whose SHA-256 is already known (a link to a
    /// stored table), so the executor does not read it again to hash it.
    pub fn publish_hashed(
        self,
        target: impl Into<String>,
        produced: PathBuf,
        sha256: String,
    ) -> Self {
        let mut out = self.publish(target, produced.clone());
        out.published_sha256.insert(produced, sha256);
        out
    }

    /// Records rows brought in.
    pub fn created(mut self, reason: impl Into<String>, rows: usize) -> Self {
        self.created.push((reason.into(), rows));
        self
    }
}

/// Progress of one stage: a total and a position. Implementations draw bars
/// on a terminal, or nothing.
pub trait Progress: Send + Sync {
    /// Sets the total amount of work (e.g. rows, epochs).
    fn set_total(&self, total: u64);
    /// Advances by `n`.
    fn advance(&self, n: u64);
    /// A short status message.
    fn message(&self, msg: &str);
}

/// A [`Progress`] that shows nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn set_total(&self, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn message(&self, _msg: &str) {}
}

/// What a running stage gets besides its inputs.
pub struct StageContext {
    /// The stage id.
    pub stage_id: String,
    /// This stage's seed, derived from the run seed and the stage id.
    pub seed: u64,
    /// A directory the stage may use freely during this run.
    pub scratch_dir: PathBuf,
    /// The pipeline file's directory: relative paths in parameters resolve here.
    pub base_dir: PathBuf,
    /// The run directory (`runs/<id>`).
    pub run_dir: PathBuf,
    /// Progress reporting.
    pub progress: Arc<dyn Progress>,
    /// Rows per batch when a stage reads a table in batches (`--batch-rows`).
    /// Results never depend on it.
    pub batch_rows: usize,
    /// The run's memory budget in bytes (`--memory`), for a stage that
    /// sizes its own buffers (e.g. how many hash partitions it spills).
    pub memory_budget: u64,
    log: Mutex<Vec<String>>,
}

impl StageContext {
    /// A context for `stage_id` under run seed `run_seed`.
    pub fn new(
        stage_id: &str,
        run_seed: u64,
        scratch_dir: PathBuf,
        base_dir: PathBuf,
        run_dir: PathBuf,
        progress: Arc<dyn Progress>,
    ) -> Self {
        StageContext {
            stage_id: stage_id.to_string(),
            seed: derive_seed(run_seed, stage_id),
            scratch_dir,
            base_dir,
            run_dir,
            progress,
            batch_rows: DEFAULT_BATCH_ROWS,
            memory_budget: crate::budget::default_budget(),
            log: Mutex::new(Vec::new()),
        }
    }

    /// A writer for the table of output port `port`, into a file in the
    /// scratch directory that the executor moves into the store: for a
    /// table written batch by batch, never held whole.
    pub fn table_writer(&self, port: &str, schema: SchemaRef) -> Result<TableWriter, StageError> {
        std::fs::create_dir_all(&self.scratch_dir)
            .map_err(|e| StageError::io(&self.scratch_dir, e))?;
        TableWriter::create(
            &self.scratch_dir.join(format!("{port}.out.parquet")),
            schema,
        )
    }

    /// The stage's random number generator. Same run seed and stage id, same
    /// stream.
    pub fn rng(&self) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(self.seed)
    }

    /// An independent generator for chunk `i` of parallel work, so results do
    /// not depend on which thread ran which chunk.
    pub fn rng_for(&self, i: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(derive_seed(self.seed, &format!("chunk-{i}")))
    }

    /// Resolves a publish target: `{run}/...` in the run directory, other
    /// relative paths against the pipeline's directory.
    pub fn resolve_target(&self, target: &str) -> PathBuf {
        match target.strip_prefix("{run}") {
            Some(rest) => self.run_dir.join(rest.trim_start_matches(['/', '\\'])),
            None => self.resolve(Path::new(target)),
        }
    }

    /// Resolves a path from the parameters against the pipeline's directory.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir.join(path)
        }
    }

    /// Records a message for the run record (stages never print).
    pub fn log(&self, msg: impl Into<String>) {
        if let Ok(mut log) = self.log.lock() {
            log.push(msg.into());
        }
    }

    /// The messages logged so far.
    pub fn messages(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

/// A seed derived from a parent seed and a name (SHA-256, first 8 bytes).
pub fn derive_seed(seed: u64, name: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_le_bytes(b)
}
