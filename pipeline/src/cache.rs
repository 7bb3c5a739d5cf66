//! The content-addressed cache of stage outputs, and what keeps it honest.
//!
//! - Keys cover the build that runs ([`build_id`]: the SHA-256 of the running
//!   executable), so a rebuilt gigo, or a user's own binary with its own
//!   stages, never serves another build's outputs.
//! - An entry is written in a temporary directory and renamed into place once
//!   complete; its manifest records the size and SHA-256 of every file, and a
//!   lookup checks them all before serving it. A truncated, edited or missing
//!   file makes the entry [`Lookup::Damaged`]: it is discarded and recomputed.
//! - Runs hold a shared lock on the cache for as long as they run; `gc` and
//!   `clean` take it exclusively, so nothing is deleted under a running stage.
//!   Runs sharing one cache commit entries by rename: the first one wins, and
//!   the same key means the same content.
//! - Each run records the keys it used (`.pipelines/`), so `gc` keeps what the
//!   latest run of each pipeline needs.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::store::{PortEntry, RowAccount, file_sha256, sha256_hex, write_atomic};

/// Version of the manifest format; entries of another format are misses.
pub const MANIFEST_FORMAT: u32 = 2;

const MANIFEST: &str = "manifest.json";
const USED: &str = ".used";
const LOCK: &str = ".lock";
const BUILD_IDS: &str = ".build-ids";
const PIPELINES: &str = ".pipelines";

/// Size and content hash of one file of an entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileCheck {
    /// Bytes.
    pub size: u64,
    /// Hex SHA-256 of the content.
    pub sha256: String,
}

/// The manifest of a cache entry, written last: its presence means the entry
/// is complete, and its `files` say what the entry must hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// gigo version that wrote it.
    pub gigo_version: String,
    /// The build that wrote it ([`build_id`]).
    pub build: String,
    /// The cache key.
    pub key: String,
    /// Id of the stage that produced it.
    pub stage: String,
    /// Its stage type.
    pub type_name: String,
    /// When it was written (seconds since the Unix epoch).
    pub created_at: u64,
    /// Output ports (summary included).
    pub ports: BTreeMap<String, PortEntry>,
    /// Row accounting of the run that produced it.
    pub rows: RowAccount,
    /// Messages the stage logged.
    pub messages: Vec<String>,
    /// Files published outside the cache: (target as written, file in the entry).
    pub published: Vec<(String, String)>,
    /// Every file of the entry but the manifest, checked at each lookup
    /// (filled in by [`Cache::commit`]).
    pub files: BTreeMap<String, FileCheck>,
}

/// What a lookup found.
#[derive(Debug)]
pub enum Lookup {
    /// A complete entry whose every file checked out.
    Hit(Box<Manifest>),
    /// No entry under the key.
    Miss,
    /// An entry that must not be served, and why.
    Damaged(String),
}

/// How [`Cache::gc`] chooses what to delete. Entries that the latest run of
/// a pipeline used are always kept.
#[derive(Debug, Clone, Default)]
pub struct GcPolicy {
    /// Delete entries last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Then delete the least recently used until the rest fit this many bytes.
    pub max_size: Option<u64>,
}

/// One entry, as `gigo cache ls` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EntryInfo {
    /// The key.
    pub key: String,
    /// Stage id and type that produced it (empty for unreadable entries).
    pub stage: String,
    /// Stage type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Bytes on disk (files shared with run directories by hard links count here too).
    pub size: u64,
    /// Last time a run wrote or used it (seconds since the Unix epoch).
    pub last_used: u64,
    /// Pipelines whose latest run used it.
    pub kept_by: Vec<String>,
}

/// What [`Cache::gc`] or [`Cache::clean`] removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Removed {
    /// Entries removed.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
    /// Entries kept.
    pub kept: usize,
}

/// The keys one pipeline's latest run used.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PipelineRun {
    file: String,
    pipeline: String,
    run_id: String,
    keys: BTreeSet<String>,
}

/// The content-addressed cache: `<root>/<key>/` holds a stage's outputs and a
/// manifest.
pub struct Cache {
    root: PathBuf,
    // Held for the cache's lifetime: shared for runs, exclusive for gc / clean.
    _lock: Option<fs::File>,
}

impl Cache {
    /// A cache under `root` (created if needed), for a run: holds a shared
    /// lock until dropped, so `gc` and `clean` wait for the run to end.
    pub fn open(root: &Path) -> std::io::Result<Cache> {
        let f = Self::lock_file(root)?;
        f.lock_shared()?;
        let cache = Cache {
            root: root.to_path_buf(),
            _lock: Some(f),
        };
        cache.remove_stale_temporaries();
        Ok(cache)
    }

    /// A cache under `root` for maintenance (`gc`, `clean`): waits until no
    /// run holds it (calling `waiting` first if it must wait), then holds it
    /// alone until dropped.
    pub fn open_exclusive(root: &Path, waiting: impl FnOnce()) -> std::io::Result<Cache> {
        let f = Self::lock_file(root)?;
        match f.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                waiting();
                f.lock()?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        Ok(Cache {
            root: root.to_path_buf(),
            _lock: Some(f),
        })
    }

    fn lock_file(root: &Path) -> std::io::Result<fs::File> {
        fs::create_dir_all(root)?;
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join(LOCK))
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of entry `key`.
    pub fn entry_dir(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }

    /// The build id of the running executable, memoised in the cache by the
    /// executable's path, size and modification time (see [`build_id`]).
    ///
    /// The memo lives in the user's cache directory (`$XDG_CACHE_HOME/gigo`
    /// or `~/.cache/gigo`), so a build is hashed once however many caches it
    /// uses; where that cannot be written, in this cache.
    pub fn build_id(&self) -> std::io::Result<String> {
        static ID: OnceLock<String> = OnceLock::new();
        if let Some(id) = ID.get() {
            return Ok(id.clone());
        }
        let user = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("gigo").join(BUILD_IDS.trim_start_matches('.')));
        let id = match user.map(|d| build_id(&d)) {
            Some(Ok(id)) => id,
            _ => build_id(&self.root.join(BUILD_IDS))?,
        };
        Ok(ID.get_or_init(|| id).clone())
    }

    /// The entry under `key`, checked file by file.
    pub fn lookup(&self, key: &str) -> Lookup {
        let dir = self.entry_dir(key);
        let bytes = match fs::read(dir.join(MANIFEST)) {
            Ok(b) => b,
            Err(_) if !dir.exists() => return Lookup::Miss,
            Err(e) => return Lookup::Damaged(format!("its manifest cannot be read: {e}")),
        };
        let m: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => return Lookup::Damaged(format!("its manifest is not valid: {e}")),
        };
        if m.format != MANIFEST_FORMAT || m.key != key {
            return Lookup::Damaged("its manifest belongs to another entry or format".into());
        }
        match verify(&dir, &m) {
            Ok(()) => Lookup::Hit(Box::new(m)),
            Err(why) => Lookup::Damaged(why),
        }
    }

    /// Deletes entry `key` (a damaged one): renamed away first, so no reader
    /// sees half of it.
    pub fn discard(&self, key: &str) -> std::io::Result<()> {
        let dir = self.entry_dir(key);
        if !dir.exists() {
            return Ok(());
        }
        let away = self.temporary(key);
        match fs::rename(&dir, &away) {
            Ok(()) => fs::remove_dir_all(&away),
            // Another run discarded it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Marks entry `key` as used now (what `gc --older-than` and `ls` read).
    pub fn touch(&self, key: &str) {
        let path = self.entry_dir(key).join(USED);
        if let Ok(f) = fs::File::create(&path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    fn temporary(&self, key: &str) -> PathBuf {
        self.root.join(format!(
            ".tmp-{key}-{}-{}",
            std::process::id(),
            next_nonce()
        ))
    }

    /// A fresh temporary directory for building entry `key`.
    pub fn begin(&self, key: &str) -> std::io::Result<PathBuf> {
        let dir = self.temporary(key);
        fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// Records the size and hash of every file in `tmp` in the manifest,
    /// writes it there and renames `tmp` to the entry's place.
    ///
    /// With `replace` (a forced run), an existing entry under the same key is
    /// swapped out, so what the forced run produced is what gets published.
    pub fn commit(
        &self,
        tmp: &Path,
        manifest: &mut Manifest,
        known: &BTreeMap<String, String>,
        replace: bool,
    ) -> std::io::Result<PathBuf> {
        manifest.format = MANIFEST_FORMAT;
        manifest.files = checks_of(tmp, manifest, known)?;
        let bytes = serde_json::to_vec_pretty(&*manifest).map_err(std::io::Error::other)?;
        fs::write(tmp.join(MANIFEST), bytes)?;
        let dest = self.entry_dir(&manifest.key);
        if replace && dest.exists() {
            let old = self.temporary(&manifest.key);
            fs::rename(&dest, &old)?;
            let _ = fs::remove_dir_all(&old);
        }
        let dest = match fs::rename(tmp, &dest) {
            Ok(()) => dest,
            Err(_) if dest.join(MANIFEST).is_file() => {
                // Another run committed the same entry first: same key, same content.
                let _ = fs::remove_dir_all(tmp);
                dest
            }
            Err(e) => return Err(e),
        };
        self.touch(&manifest.key);
        Ok(dest)
    }

    /// Records that the latest run of pipeline `file` used `keys`, so that
    /// `gc` keeps them.
    pub fn record_run(
        &self,
        file: &Path,
        pipeline: &str,
        run_id: &str,
        keys: BTreeSet<String>,
    ) -> std::io::Result<()> {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let file = file.display().to_string();
        let dir = self.root.join(PIPELINES);
        fs::create_dir_all(&dir)?;
        let rec = PipelineRun {
            file: file.clone(),
            pipeline: pipeline.to_string(),
            run_id: run_id.to_string(),
            keys,
        };
        let bytes = serde_json::to_vec_pretty(&rec).map_err(std::io::Error::other)?;
        write_atomic(
            &dir.join(format!("{}.json", &sha256_hex(file.as_bytes())[..16])),
            &bytes,
        )
    }

    /// The latest runs of pipelines whose file still exists; records of
    /// pipelines whose file is gone keep nothing.
    fn pipeline_runs(&self) -> Vec<PipelineRun> {
        let Ok(dir) = fs::read_dir(self.root.join(PIPELINES)) else {
            return vec![];
        };
        dir.flatten()
            .filter_map(|e| fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<PipelineRun>(&b).ok())
            .filter(|r| Path::new(&r.file).is_file())
            .collect()
    }

    /// Every entry, most recently used first.
    pub fn entries(&self) -> std::io::Result<Vec<EntryInfo>> {
        let mut kept_by: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.pipeline_runs() {
            for k in r.keys {
                kept_by
                    .entry(k)
                    .or_default()
                    .push(format!("{} ({})", r.pipeline, r.file));
            }
        }
        let mut out = Vec::new();
        for e in fs::read_dir(&self.root)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !e.path().is_dir() {
                continue;
            }
            let dir = e.path();
            let manifest = fs::read(dir.join(MANIFEST))
                .ok()
                .and_then(|b| serde_json::from_slice::<Manifest>(&b).ok());
            let (stage, type_name) = manifest.map(|m| (m.stage, m.type_name)).unwrap_or_default();
            let used = fs::metadata(dir.join(USED))
                .or_else(|_| fs::metadata(&dir))
                .and_then(|m| m.modified())
                .ok();
            out.push(EntryInfo {
                kept_by: kept_by.remove(&name).unwrap_or_default(),
                key: name,
                stage,
                type_name,
                size: dir_size(&dir),
                last_used: used.map(unix_secs).unwrap_or(0),
            });
        }
        out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    /// Deletes entries by `policy`; with no limit set, every entry that no
    /// pipeline's latest run used.
    pub fn gc(&self, policy: &GcPolicy) -> std::io::Result<Removed> {
        let now = unix_secs(SystemTime::now());
        let entries = self.entries()?;
        let unlimited = policy.older_than.is_none() && policy.max_size.is_none();
        let mut doomed = BTreeSet::new();
        if unlimited {
            doomed.extend(
                entries
                    .iter()
                    .filter(|e| e.kept_by.is_empty())
                    .map(|e| e.key.clone()),
            );
        }
        if let Some(age) = policy.older_than {
            doomed.extend(
                entries
                    .iter()
                    .filter(|e| {
                        e.kept_by.is_empty() && now.saturating_sub(e.last_used) > age.as_secs()
                    })
                    .map(|e| e.key.clone()),
            );
        }
        if let Some(max) = policy.max_size {
            let mut total: u64 = entries
                .iter()
                .filter(|e| !doomed.contains(&e.key))
                .map(|e| e.size)
                .sum();
            // Least recently used first.
            for e in entries.iter().rev() {
                if total <= max {
                    break;
                }
                if e.kept_by.is_empty() && doomed.insert(e.key.clone()) {
                    total -= e.size;
                }
            }
        }
        let mut removed = Removed::default();
        for e in &entries {
            if doomed.contains(&e.key) {
                self.discard(&e.key)?;
                removed.entries += 1;
                removed.bytes += e.size;
            } else {
                removed.kept += 1;
            }
        }
        Ok(removed)
    }

    /// Deletes every entry and every record (the lock file stays).
    pub fn clean(&self) -> std::io::Result<Removed> {
        let mut removed = Removed::default();
        for e in fs::read_dir(&self.root)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if name == LOCK {
                continue;
            }
            let path = e.path();
            if path.is_dir() {
                if !name.starts_with('.') {
                    removed.entries += 1;
                    removed.bytes += dir_size(&path);
                }
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(removed)
    }

    /// Removes temporary directories left by runs that were killed.
    fn remove_stale_temporaries(&self) {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(".tmp-") else {
                continue;
            };
            // .tmp-<key>-<pid>-<nonce>
            let pid = rest.rsplit('-').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive || pid == Some(std::process::id()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// The size and hash of every file in `dir` but the manifest; port files
/// reuse the fingerprint computed when they were written, and files in
/// `known` (published links to stored tables) the hash given there.
fn checks_of(
    dir: &Path,
    m: &Manifest,
    known: &BTreeMap<String, String>,
) -> std::io::Result<BTreeMap<String, FileCheck>> {
    let known: BTreeMap<&str, &str> = m
        .ports
        .values()
        .map(|p| (p.file.as_str(), p.fingerprint.as_str()))
        .chain(known.iter().map(|(f, h)| (f.as_str(), h.as_str())))
        .collect();
    let mut files = BTreeMap::new();
    for e in fs::read_dir(dir)?.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name == MANIFEST || name == USED {
            continue;
        }
        let size = e.metadata()?.len();
        let sha256 = match known.get(name.as_str()) {
            Some(h) => h.to_string(),
            None => file_sha256(&e.path()).map_err(std::io::Error::other)?,
        };
        files.insert(name, FileCheck { size, sha256 });
    }
    Ok(files)
}

/// Checks that every file the manifest names is there with its size and hash.
fn verify(dir: &Path, m: &Manifest) -> Result<(), String> {
    let named = m
        .ports
        .values()
        .map(|p| &p.file)
        .chain(m.published.iter().map(|(_, f)| f));
    for file in named {
        if !m.files.contains_key(file) {
            return Err(format!("its manifest has no check for `{file}`"));
        }
    }
    for p in m.ports.values() {
        if m.files[&p.file].sha256 != p.fingerprint {
            return Err(format!("`{}` has two different hashes", p.file));
        }
    }
    for (file, check) in &m.files {
        let path = dir.join(file);
        let size = match fs::metadata(&path) {
            Ok(md) => md.len(),
            Err(_) => return Err(format!("`{file}` is missing")),
        };
        if size != check.size {
            return Err(format!(
                "`{file}` has {size} bytes, {} were written",
                check.size
            ));
        }
        match file_sha256(&path) {
            Ok(h) if h == check.sha256 => {}
            Ok(_) => return Err(format!("`{file}` changed after it was written")),
            Err(e) => return Err(format!("`{file}` cannot be read: {e}")),
        }
    }
    Ok(())
}

/// The build id of the running executable: the SHA-256 of its bytes, so that
/// any other build (a change to gigo, or to a program that registers its own
/// stages) gets other cache keys. Hashing a large binary takes a moment, so
/// the result is memoised in `memo_dir` under the executable's path, size,
/// inode, and modification and status-change times (the last cannot be set
/// by hand: any write, rename or copy over the file changes it).
pub fn build_id(memo_dir: &Path) -> std::io::Result<String> {
    let exe = std::env::current_exe()?;
    let md = fs::metadata(&exe)?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    #[cfg(unix)]
    let (inode, ctime) = {
        use std::os::unix::fs::MetadataExt;
        (md.ino(), (md.ctime(), md.ctime_nsec()))
    };
    #[cfg(not(unix))]
    let (inode, ctime) = (0u64, (0i64, 0i64));
    let memo_key = sha256_hex(
        format!(
            "{}\n{}\n{mtime}\n{inode}\n{ctime:?}",
            exe.display(),
            md.len()
        )
        .as_bytes(),
    );
    let memo = memo_dir.join(&memo_key[..32]);
    if let Ok(text) = fs::read_to_string(&memo) {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(text.to_string());
        }
    }
    let id = file_sha256(&exe).map_err(std::io::Error::other)?;
    fs::create_dir_all(memo_dir)?;
    write_atomic(&memo, id.as_bytes())?;
    Ok(id)
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn next_nonce() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// `text` as a non-negative number and the unit after it (`1.5GiB` -> 1.5,
/// `GiB`); `what` says what was expected.
fn number_and_unit<'a>(text: &'a str, what: &str) -> Result<(f64, &'a str), String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num
        .parse::<f64>()
        .map_err(|_| format!("`{text}` is not {what}"))?;
    Ok((n, unit.trim()))
}

/// Parses a duration as `gigo cache gc --older-than` takes it: a number and
/// a unit, `s`, `m`, `h`, `d` or `w` (`7d`, `12h`, `90s`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (n, unit) = number_and_unit(text, "a duration such as 7d, 12h or 30m")?;
    let secs = match unit {
        "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        "w" => 604_800.0,
        _ => return Err(format!("`{text}`: the unit must be s, m, h, d or w")),
    };
    Ok(Duration::from_secs_f64(n * secs))
}

/// Parses a size as `gigo cache gc --max-size` and `--memory` take it:
/// `10GB`, `500MB`, `1.5GiB`, `1.5g`, `2048` (bytes); case and spaces
/// ignored. KB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of
/// 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(text, "a size such as 10GB or 500MiB")?;
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (use B, KB, MB, GB, TB or KiB, MiB, GiB, TiB)"
            ));
        }
    };
    Ok((n * mult) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(key: &str) -> Manifest {
        Manifest {
            format: MANIFEST_FORMAT,
            gigo_version: "t".into(),
            build: "b".into(),
            key: key.into(),
            stage: "s".into(),
            type_name: "t".into(),
            created_at: 0,
            ports: Default::default(),
            rows: RowAccount::default(),
            messages: vec![],
            published: vec![],
            files: Default::default(),
        }
    }

    /// An entry `key` with one summary port `out.json` holding `content`.
    fn committed(cache: &Cache, key: &str, content: &[u8]) -> PathBuf {
        let tmp = cache.begin(key).unwrap();
        fs::write(tmp.join("out.json"), content).unwrap();
        let mut m = manifest(key);
        m.ports.insert(
            "out".into(),
            PortEntry {
                kind: crate::table::PortKind::Summary,
                file: "out.json".into(),
                rows: None,
                fingerprint: file_sha256(&tmp.join("out.json")).unwrap(),
            },
        );
        cache.commit(&tmp, &mut m, &BTreeMap::new(), false).unwrap()
    }

    #[test]
    fn uncommitted_entries_are_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let tmp = cache.begin("k1").unwrap();
        fs::write(tmp.join("x.json"), b"{}").unwrap();
        assert!(matches!(cache.lookup("k1"), Lookup::Miss));
        cache
            .commit(&tmp, &mut manifest("k1"), &BTreeMap::new(), false)
            .unwrap();
        assert!(matches!(cache.lookup("k1"), Lookup::Hit(_)));
    }

    #[test]
    fn damaged_entries_are_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        type Damage = fn(&Path);
        let cases: [(&str, Damage); 5] = [
            ("garbage", |d| {
                fs::write(d.join("out.json"), b"garbage").unwrap()
            }),
            ("same size", |d| {
                fs::write(d.join("out.json"), b"{\"a\":2}").unwrap()
            }),
            ("truncated", |d| {
                fs::write(d.join("out.json"), b"{").unwrap()
            }),
            ("missing", |d| fs::remove_file(d.join("out.json")).unwrap()),
            ("manifest", |d| {
                fs::write(d.join(MANIFEST), b"{\"format\":").unwrap()
            }),
        ];
        for (i, (what, damage)) in cases.iter().enumerate() {
            let key = format!("k{i}");
            let entry = committed(&cache, &key, b"{\"a\":1}");
            assert!(matches!(cache.lookup(&key), Lookup::Hit(_)), "{what}");
            damage(&entry);
            match cache.lookup(&key) {
                Lookup::Damaged(why) => assert!(!why.is_empty(), "{what}"),
                other => panic!("{what}: {other:?}"),
            }
            cache.discard(&key).unwrap();
            assert!(matches!(cache.lookup(&key), Lookup::Miss), "{what}");
        }
    }

    #[test]
    fn the_build_id_is_the_executables_hash_and_memoised() {
        let dir = tempfile::tempdir().unwrap();
        let memo = dir.path().join("memo");
        let id = build_id(&memo).unwrap();
        let exe = std::env::current_exe().unwrap();
        assert_eq!(id, file_sha256(&exe).unwrap());
        // The second call reads the memo: a planted value proves it.
        let files: Vec<_> = fs::read_dir(&memo).unwrap().flatten().collect();
        assert_eq!(files.len(), 1);
        fs::write(files[0].path(), "a".repeat(64)).unwrap();
        assert_eq!(build_id(&memo).unwrap(), "a".repeat(64));
    }

    #[test]
    fn maintenance_waits_for_running_runs() {
        let dir = tempfile::tempdir().unwrap();
        let run = Cache::open(dir.path()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let root = dir.path().to_path_buf();
        let gc = std::thread::spawn(move || {
            let c = Cache::open_exclusive(&root, || tx.send(()).unwrap()).unwrap();
            c.clean().unwrap()
        });
        // It had to wait, and has not got the cache while the run holds it.
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!gc.is_finished());
        drop(run);
        gc.join().unwrap();
    }

    #[test]
    fn gc_keeps_what_the_latest_runs_use() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let pipeline = dir.path().join("p.yaml");
        fs::write(&pipeline, "name: p").unwrap();
        {
            let cache = Cache::open(&root).unwrap();
            for k in ["a", "b", "c"] {
                committed(&cache, k, format!("{{\"{k}\":1}}").as_bytes());
            }
            cache
                .record_run(&pipeline, "p", "r1", ["b".to_string()].into())
                .unwrap();
            // `a` was last used long ago.
            let old = SystemTime::now() - Duration::from_secs(10 * 86_400);
            fs::File::options()
                .write(true)
                .open(cache.entry_dir("a").join(USED))
                .unwrap()
                .set_modified(old)
                .unwrap();
            let ls = cache.entries().unwrap();
            assert_eq!(ls.len(), 3);
            assert_eq!(ls.last().unwrap().key, "a");
            assert_eq!(ls.iter().find(|e| e.key == "b").unwrap().kept_by.len(), 1);
        }
        let cache = Cache::open_exclusive(&root, || {}).unwrap();
        let r = cache
            .gc(&GcPolicy {
                older_than: Some(Duration::from_secs(7 * 86_400)),
                max_size: None,
            })
            .unwrap();
        assert_eq!((r.entries, r.kept), (1, 2));
        assert!(matches!(cache.lookup("a"), Lookup::Miss));
        // Size 0 leaves only what a pipeline's latest run uses.
        let r = cache
            .gc(&GcPolicy {
                older_than: None,
                max_size: Some(0),
            })
            .unwrap();
        assert_eq!((r.entries, r.kept), (1, 1));
        assert!(matches!(cache.lookup("b"), Lookup::Hit(_)));
        // Once the pipeline file is gone, nothing keeps its entries.
        fs::remove_file(&pipeline).unwrap();
        let r = cache.gc(&GcPolicy::default()).unwrap();
        assert_eq!((r.entries, r.kept), (1, 0));
        committed(&cache, "d", b"{}");
        let r = cache.clean().unwrap();
        assert_eq!(r.entries, 1);
        assert!(cache.entries().unwrap().is_empty());
    }

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("d").is_err());
        assert_eq!(parse_size("10GB").unwrap(), 10_000_000_000);
        assert_eq!(parse_size("1.5GiB").unwrap(), 1_610_612_736);
        assert_eq!(parse_size("2048").unwrap(), 2048);
        assert!(parse_size("10 parsecs").is_err());
    }
}
