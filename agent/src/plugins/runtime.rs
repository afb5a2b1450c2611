//! [`PluginRuntime`]: the set of loaded plugins and the one way to call them.
//!
//! Every call gets a fresh `Store` and instance (from a pre-linked
//! `InstancePre`), so a trap, a runaway loop or a memory bomb poisons nothing
//! but that call. The set of plugins is an immutable map behind an `ArcSwap`:
//! a reload builds the new version off to the side and swaps the map, and a
//! call in flight keeps the `Arc` of the version it started with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::types::{self as wit, Failure};
use super::circuit::{self, Circuits, Policy, Ticket};
use super::engine::{build_engine, Cancel, CompileCache};
use super::file;
use super::host::{CallEnv, HostState, Limits, MemoryLimitExceeded, QueryApi};
use super::loader::{load_component, plugin_name, Linkers, LoadedPlugin, PluginKind, Pre};
use super::policy::{OutboundPolicy, PolicyCounters};
use crate::clock::{Clock, SystemClock};
use crate::config::hosts::HostPattern;
use crate::config::{InstanceConfig, PluginsConfig};
use crate::selfmetrics::{CallLabels, InstanceLabels, Metrics, PluginLabels, ResultLabels};

/// A configured plugin instance, prepared once per config load.
#[derive(Debug, Clone)]
pub struct Instance {
    pub name: Arc<str>,
    pub plugin: String,
    pub config_json: Arc<str>,
    pub allow: Arc<[HostPattern]>,
    pub timeout: Duration,
    pub memory_limit: usize,
    /// How its wasi:http requests are sent when it has `http_config`.
    pub http: Option<Arc<super::outbound::OutboundHttp>>,
}

impl Instance {
    pub fn prepare(cfg: &InstanceConfig, defaults: &PluginsConfig) -> Result<Instance> {
        let allow: Arc<[HostPattern]> = cfg.allow_hosts().into();
        let http = cfg
            .http_config
            .as_ref()
            .map(|h| {
                super::outbound::OutboundHttp::new(&h.http_client(), allow.clone(), &|p| {
                    defaults.resolve(p)
                })
                .map(Arc::new)
                .with_context(|| format!("instance {:?}: http_config", cfg.name()))
            })
            .transpose()?;
        Ok(Instance {
            name: cfg.name().into(),
            plugin: cfg.plugin.clone(),
            config_json: cfg
                .config_json(defaults)
                .with_context(|| format!("instance {:?}", cfg.name()))?
                .into(),
            allow,
            timeout: cfg.timeout.unwrap_or(defaults.call_timeout),
            memory_limit: cfg.memory_limit.unwrap_or(defaults.memory_limit).as_u64() as usize,
            http,
        })
    }
}

/// Why a plugin call failed. Callers branch on it (retry or not).
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum CallError {
    #[error("plugin {0:?} is not loaded")]
    NotLoaded(String),
    #[error("plugin {plugin:?} is a {actual} plugin, not a {expected}")]
    WrongKind {
        plugin: String,
        expected: PluginKind,
        actual: PluginKind,
    },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    MemoryLimit(String),
    #[error("trapped: {0}")]
    Trap(String),
    #[error("failed (retryable): {0}")]
    Retryable(String),
    #[error("failed: {0}")]
    Permanent(String),
    #[error("host error: {0}")]
    Host(String),
    /// Refused without running the plugin: its circuit breaker is open
    /// (see [`circuit`](super::circuit)). Retryable.
    #[error(
        "not called: the instance's circuit is open after {failures} failure(s) in a row \
         (last: {last}); a probe call is let through at {}",
        humantime::format_rfc3339_seconds(*until)
    )]
    CircuitOpen {
        until: SystemTime,
        failures: u32,
        last: String,
    },
    /// Refused without running the plugin: this very request failed
    /// permanently before (receivers). Not retryable.
    #[error("not called again: the same notification failed permanently before: {0}")]
    FailedBefore(String),
}

impl CallError {
    /// Worth retrying with backoff (Alertmanager retries timeouts and
    /// transient failures, not bad requests or broken code).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            CallError::Timeout(_) | CallError::Retryable(_) | CallError::CircuitOpen { .. }
        )
    }

    /// Refused by the failure policy: the plugin did not run.
    pub fn is_short_circuit(&self) -> bool {
        matches!(
            self,
            CallError::CircuitOpen { .. } | CallError::FailedBefore(_)
        )
    }

    /// The `result` label of `wasmon_plugin_calls_total`.
    pub fn label(&self) -> &'static str {
        match self {
            CallError::NotLoaded(_) | CallError::WrongKind { .. } => "not_loaded",
            CallError::Timeout(_) => "timeout",
            CallError::MemoryLimit(_) => "memory",
            CallError::Trap(_) => "trap",
            CallError::Retryable(_) => "retryable",
            CallError::Permanent(_) => "permanent",
            CallError::Host(_) => "error",
            CallError::CircuitOpen { .. } => "circuit_open",
            CallError::FailedBefore(_) => "failed_before",
        }
    }
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Retryable(m) => CallError::Retryable(m),
            Failure::Permanent(m) => CallError::Permanent(m),
        }
    }
}

/// What a successful call reports besides its value.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// The version (content hash) of the plugin that served the call.
    pub plugin_hash: String,
    pub duration: Duration,
}

/// The deadline error raised from the epoch callback.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

/// A plugin file that failed to load, kept for the API and logs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadError {
    pub path: PathBuf,
    pub error: String,
    #[serde(with = "humantime_serde")]
    pub at: SystemTime,
}

/// One row of `plugins list` / `GET /api/v1/plugins`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginStatus {
    pub name: String,
    pub kind: Option<PluginKind>,
    pub path: PathBuf,
    pub hash: Option<String>,
    pub size: Option<u64>,
    pub imports: Vec<String>,
    #[serde(with = "humantime_serde")]
    pub loaded_at: Option<SystemTime>,
    pub load_ms: Option<f64>,
    pub from_cache: Option<bool>,
    /// The last load error; when `hash` is also set, that older version serves.
    pub error: Option<String>,
    /// A newer version being compiled; when `hash` is also set, that older
    /// version serves until it is done.
    pub loading: Option<Compiling>,
    /// The circuit of each instance of the plugin that was called.
    pub instances: Vec<circuit::InstanceCircuit>,
}

/// A version of a plugin file being compiled.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Compiling {
    pub version: String,
    #[serde(with = "humantime_serde")]
    pub since: SystemTime,
}

impl PluginStatus {
    fn empty(name: &str, path: &Path) -> PluginStatus {
        PluginStatus {
            name: name.to_string(),
            kind: None,
            path: path.to_path_buf(),
            hash: None,
            size: None,
            imports: Vec::new(),
            loaded_at: None,
            load_ms: None,
            from_cache: None,
            error: None,
            loading: None,
            instances: Vec::new(),
        }
    }
}

/// The last version of a plugin file the runtime looked at: its stamp, and
/// its content hash when it was read (the serving version's, or one that
/// failed and is not worth compiling again).
#[derive(Debug, Clone)]
struct Seen {
    stamp: file::Stamp,
    hash: Option<String>,
}

/// Outcome of loading one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    Loaded,
    Unchanged,
    Removed,
    Failed(String),
    Ignored,
    /// A new version is being compiled (the one before it, if any, serves
    /// until it is done).
    Loading,
}

/// Components at most this large compile in well under a second or two
/// (Rust and C plugins: tens to hundreds of KB); larger ones (JavaScript,
/// Python: 10-20 MB, half a minute) may not take every compile slot.
pub const LARGE_COMPONENT: u64 = 2 << 20;

/// How many compiles run at once: the number of cores, at least 2. Large
/// components may hold all but one slot, so a small plugin copied in next
/// to large ones compiles at once instead of queueing behind them.
struct CompileSlots {
    all: Arc<tokio::sync::Semaphore>,
    large: Arc<tokio::sync::Semaphore>,
}

impl CompileSlots {
    fn new() -> CompileSlots {
        let n = std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .max(2);
        CompileSlots {
            all: Arc::new(tokio::sync::Semaphore::new(n)),
            large: Arc::new(tokio::sync::Semaphore::new(n - 1)),
        }
    }

    async fn acquire(&self, large: bool) -> Vec<tokio::sync::OwnedSemaphorePermit> {
        let mut permits = Vec::with_capacity(2);
        // The semaphores are never closed.
        if large {
            if let Ok(p) = self.large.clone().acquire_owned().await {
                permits.push(p);
            }
        }
        if let Ok(p) = self.all.clone().acquire_owned().await {
            permits.push(p);
        }
        permits
    }
}

/// The newest version of a plugin file being compiled.
struct InFlight {
    /// Tells this load from the one that supersedes it: only the load whose
    /// generation is still the file's when it finishes may install.
    generation: u64,
    /// The stamp of the file as last seen with this content (a touch while
    /// it compiles updates it without a second compile).
    stamp: file::Stamp,
    hash: String,
    cancel: Arc<Cancel>,
    since: SystemTime,
}

/// Counts a running load task for [`PluginRuntime::load_all`]'s wait.
struct Running(tokio::sync::watch::Sender<usize>);

impl Running {
    fn start(tx: &tokio::sync::watch::Sender<usize>) -> Running {
        tx.send_modify(|n| *n += 1);
        Running(tx.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

pub struct PluginRuntime {
    engine: Engine,
    linkers: Arc<Linkers>,
    cache: CompileCache,
    dir: PathBuf,
    plugins: ArcSwap<BTreeMap<String, Arc<LoadedPlugin>>>,
    errors: Mutex<BTreeMap<String, LoadError>>,
    /// What was last seen of each plugin file, loaded or not.
    seen: Mutex<BTreeMap<String, Seen>>,
    /// Why the plugins dir could not be read at the last look (None: it could).
    dir_problem: Mutex<Option<String>>,
    max_plugin_size: u64,
    /// Serializes looking at files (stat, read, hash), so two rescans do
    /// not read the same change twice; compiles run outside it.
    scan_lock: tokio::sync::Mutex<()>,
    /// Loads in progress by plugin name. Deciding what a file's new state
    /// means and installing a finished load both happen under this lock, so
    /// a load that finishes late never installs over what was decided
    /// after it started (a newer version, a revert, a removal).
    loading: Mutex<BTreeMap<String, InFlight>>,
    next_generation: AtomicU64,
    /// Load tasks running, superseded ones included.
    running: tokio::sync::watch::Sender<usize>,
    slots: CompileSlots,
    metrics: Arc<Metrics>,
    clock: std::sync::RwLock<Arc<dyn Clock>>,
    query: ArcSwap<Option<Arc<dyn QueryApi>>>,
    circuits: Circuits,
    /// Compiles held by [`PluginRuntime::hold_compile`], by plugin name.
    holds: Mutex<BTreeMap<String, Arc<tokio::sync::Semaphore>>>,
}

/// Holds the compiles of one plugin after they took their compile slot,
/// until dropped: a test's stand-in for a compile that takes long, so
/// what happens meanwhile is not left to the machine's speed.
pub struct CompileHold(Arc<tokio::sync::Semaphore>);

impl Drop for CompileHold {
    fn drop(&mut self) {
        // A closed semaphore releases every waiter, and later ones at once.
        self.0.close();
    }
}

impl PluginRuntime {
    /// `dir` is the plugins directory, `cache_dir` None disables the compile cache.
    pub fn new(
        cfg: &PluginsConfig,
        dir: PathBuf,
        cache_dir: Option<PathBuf>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<PluginRuntime>> {
        let engine = build_engine(cfg)?;
        let linkers = Arc::new(Linkers::new(&engine).context("linking host imports")?);
        let cache = CompileCache::new(&engine, cfg, cache_dir);
        Ok(Arc::new(PluginRuntime {
            engine,
            linkers,
            cache,
            dir,
            plugins: ArcSwap::from_pointee(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeMap::new()),
            dir_problem: Mutex::new(None),
            max_plugin_size: cfg.max_plugin_size.as_u64(),
            scan_lock: tokio::sync::Mutex::new(()),
            loading: Mutex::new(BTreeMap::new()),
            next_generation: AtomicU64::new(1),
            running: tokio::sync::watch::Sender::new(0),
            slots: CompileSlots::new(),
            circuits: Circuits::new(metrics.clone()),
            metrics,
            clock: std::sync::RwLock::new(Arc::new(SystemClock)),
            query: ArcSwap::from_pointee(None),
            holds: Mutex::new(BTreeMap::new()),
        }))
    }

    /// Holds every compile of plugin `name` that starts from now on, after
    /// it took its compile slot, until the returned hold is dropped. For
    /// tests that need a compile in progress for as long as they look.
    #[doc(hidden)]
    pub fn hold_compile(&self, name: &str) -> CompileHold {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.holds
            .lock()
            .unwrap()
            .insert(name.to_string(), gate.clone());
        CompileHold(gate)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Replaces the clock plugins see and the failure policy times its
    /// backoffs with (tests drive it).
    pub fn set_clock(&self, clock: Arc<dyn Clock>) {
        *self.clock.write().unwrap() = clock;
    }

    fn clock(&self) -> Arc<dyn Clock> {
        self.clock.read().unwrap().clone()
    }

    /// Attaches the query engine `metric-check` plugins use.
    pub fn set_query_api(&self, q: Arc<dyn QueryApi>) {
        self.query.store(Arc::new(Some(q)));
    }

    /// Loads every `*.wasm` in the plugins dir and waits until every load
    /// is done. Returns (serving, failed) over the files there.
    pub async fn load_all(self: &Arc<Self>) -> (usize, usize) {
        let present = self.rescan_dir().await;
        self.metrics.plugins_dir_rescans.inc();
        self.wait_loaded(|_| true).await;
        let plugins = self.plugins.load();
        let errors = self.errors.lock().unwrap();
        present.iter().fold((0, 0), |(ok, failed), name| {
            if errors.contains_key(name) {
                (ok, failed + 1)
            } else if plugins.contains_key(name) {
                (ok + 1, failed)
            } else {
                (ok, failed)
            }
        })
    }

    /// Waits until no load of a plugin for which `which` holds is in
    /// progress.
    async fn wait_loaded(&self, which: impl Fn(&str) -> bool) {
        let mut rx = self.running.subscribe();
        loop {
            if !self.loading.lock().unwrap().keys().any(|n| which(n)) {
                return;
            }
            // Every load ends by leaving `loading` and then stopping its
            // task, which changes the count.
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Brings the loaded set in line with the plugins dir: starts loading
    /// new and changed files and unloads plugins whose file is gone. A file
    /// whose [`file::Stamp`] did not change since the last look is not
    /// read, so a rescan of an unchanged directory costs one `stat` per
    /// file. Compiles run in the background, several at once (see
    /// [`LARGE_COMPONENT`]): the rescan returns once every change was
    /// looked at, so a small plugin copied in while a large one compiles
    /// is loaded right away.
    ///
    /// When the directory itself cannot be read (deleted, being replaced),
    /// nothing is unloaded: the plugins loaded from it keep serving, a
    /// warning is logged once and `wasmon_plugins_dir_present` is 0 until
    /// it is back (the watcher re-arms and rescans then).
    pub async fn rescan(self: &Arc<Self>) {
        self.rescan_dir().await;
        // Counted when done, so that a caller seeing the count move knows
        // every change was looked at (and its load started).
        self.metrics.plugins_dir_rescans.inc();
    }

    /// Returns the names of the plugin files in the directory.
    async fn rescan_dir(self: &Arc<Self>) -> BTreeSet<String> {
        let _guard = self.scan_lock.lock().await;
        let Some(mut paths) = self.list_dir() else {
            return BTreeSet::new();
        };
        paths.sort();
        let present: BTreeSet<String> = paths.iter().filter_map(|p| plugin_name(p)).collect();
        for p in &paths {
            self.examine(p).await;
        }
        // Plugins and failures whose file is no longer listed: the removal
        // events may have been merged into this batch, or never seen.
        let mut known: BTreeSet<String> = self.plugins.load().keys().cloned().collect();
        known.extend(self.errors.lock().unwrap().keys().cloned());
        known.extend(self.seen.lock().unwrap().keys().cloned());
        known.extend(self.loading.lock().unwrap().keys().cloned());
        for name in known.difference(&present) {
            self.examine(&self.dir.join(format!("{name}.wasm"))).await;
        }
        present
    }

    /// The entries of the plugins dir, or None (reported once per state
    /// change) when it cannot be read.
    fn list_dir(&self) -> Option<Vec<PathBuf>> {
        let mut problem = self.dir_problem.lock().unwrap();
        match std::fs::read_dir(&self.dir) {
            Ok(rd) => {
                if problem.take().is_some() {
                    tracing::info!(dir = %self.dir.display(), "plugins directory is back: loading what is in it");
                }
                self.metrics.plugins_dir_present.set(1);
                Some(rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            }
            Err(e) => {
                let what = e.to_string();
                if problem.is_none() {
                    self.metrics.plugins_dir_disappearances.inc();
                }
                if problem.as_deref() != Some(what.as_str()) {
                    tracing::warn!(
                        dir = %self.dir.display(),
                        error = %e,
                        serving = self.plugins.load().len(),
                        "cannot read the plugins directory: plugins already loaded keep serving; \
                         it is loaded again when it is back"
                    );
                    *problem = Some(what);
                }
                self.metrics.plugins_dir_present.set(0);
                None
            }
        }
    }

    /// (Re)loads the plugin at `path`, or unloads it when the file is gone,
    /// and waits for the load to finish. On failure the previous version,
    /// if any, keeps serving. The file is read only when its stamp changed,
    /// compiled only when its content did, and a failure is reported once
    /// per version of the file.
    pub async fn reload_path(self: &Arc<Self>, path: &Path) -> ReloadOutcome {
        let outcome = {
            let _guard = self.scan_lock.lock().await;
            self.examine(path).await
        };
        if outcome != ReloadOutcome::Loading {
            return outcome;
        }
        let Some(name) = plugin_name(path) else {
            return ReloadOutcome::Ignored;
        };
        self.wait_loaded(|n| n == name).await;
        if let Some(e) = self.errors.lock().unwrap().get(&name) {
            return ReloadOutcome::Failed(e.error.clone());
        }
        if self.plugins.load().contains_key(&name) {
            ReloadOutcome::Loaded
        } else {
            ReloadOutcome::Ignored
        }
    }

    /// Looks at the file at `path` and acts on what changed: starts a load
    /// (returning [`ReloadOutcome::Loading`]), unloads, or reports. Call
    /// under `scan_lock`.
    async fn examine(self: &Arc<Self>, path: &Path) -> ReloadOutcome {
        let Some(name) = plugin_name(path) else {
            return ReloadOutcome::Ignored;
        };
        // The version being compiled is the one last seen.
        let known = self
            .loading
            .lock()
            .unwrap()
            .get(&name)
            .map(|f| f.stamp)
            .or_else(|| self.seen.lock().unwrap().get(&name).map(|s| s.stamp));
        let (path_buf, max) = (path.to_path_buf(), self.max_plugin_size);
        // Reading and hashing up to `max_plugin_size` bytes takes a while:
        // not on the async workers.
        let change =
            match tokio::task::spawn_blocking(move || file::read_if_changed(&path_buf, max, known))
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    return self.record_failure(&name, path, format!("reader task failed: {e}"))
                }
            };
        // From here on, decisions are taken against the current loads.
        let mut loading = self.loading.lock().unwrap();
        let (stamp, bytes, hash) = match change {
            // The whole directory going away (`rm -r`, a remount) is not a
            // removal of each plugin: see `rescan`.
            file::Change::Gone if !self.dir.is_dir() => return ReloadOutcome::Ignored,
            file::Change::Gone => {
                self.supersede(&mut loading, &name);
                return self.unload(&name, path);
            }
            file::Change::Unchanged => {
                if loading.contains_key(&name) {
                    return ReloadOutcome::Loading;
                }
                return match self.errors.lock().unwrap().get(&name) {
                    Some(e) => ReloadOutcome::Failed(e.error.clone()),
                    None => ReloadOutcome::Unchanged,
                };
            }
            file::Change::Unreadable { stamp, error } => {
                // A verdict on new content: what was compiling is older.
                if error.is_about_content() {
                    self.supersede(&mut loading, &name);
                }
                let error = error.to_string();
                if let Some(stamp) = stamp {
                    self.remember(&name, stamp, None);
                }
                // A file refused unread has no hash to tell its versions
                // apart; the same refusal again (a touch) is no news.
                let same = self
                    .errors
                    .lock()
                    .unwrap()
                    .get(&name)
                    .is_some_and(|e| e.error == error);
                if same {
                    return ReloadOutcome::Failed(error);
                }
                return self.record_failure(&name, path, error);
            }
            file::Change::Read { stamp, bytes, hash } => (stamp, bytes, hash),
        };
        self.metrics.plugin_file_reads.inc();
        if let Some(f) = loading.get_mut(&name) {
            if f.hash == hash {
                // Touched or copied again while it compiles.
                f.stamp = stamp;
                return ReloadOutcome::Loading;
            }
        }
        self.supersede(&mut loading, &name);
        if self
            .plugins
            .load()
            .get(&name)
            .is_some_and(|p| p.hash == hash)
        {
            self.remember(&name, stamp, Some(hash));
            if self.errors.lock().unwrap().remove(&name).is_some() {
                tracing::info!(plugin = %name, path = %path.display(), "plugin file is back to the version serving");
                self.set_last_load_successful(&name, true);
            }
            return ReloadOutcome::Unchanged;
        }
        let failed_before = self
            .seen
            .lock()
            .unwrap()
            .get(&name)
            .is_some_and(|s| s.hash.as_deref() == Some(hash.as_str()));
        if failed_before {
            // The same bytes again (a touch, a copy of the same file):
            // already reported.
            if let Some(e) = self.errors.lock().unwrap().get(&name) {
                let error = e.error.clone();
                self.remember(&name, stamp, Some(hash));
                return ReloadOutcome::Failed(error);
            }
        }
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(Cancel::default());
        loading.insert(
            name.clone(),
            InFlight {
                generation,
                stamp,
                hash: hash.clone(),
                cancel: cancel.clone(),
                since: SystemTime::now(),
            },
        );
        drop(loading);
        self.metrics.plugin_loads_in_progress.inc();
        let running = Running::start(&self.running);
        let me = self.clone();
        let path = path.to_path_buf();
        tokio::spawn(async move {
            let _running = running;
            me.compile_and_install(name, path, bytes, hash, generation, cancel)
                .await;
        });
        ReloadOutcome::Loading
    }

    /// Drops the load in progress of `name`, if any: a newer state of the
    /// file was seen. A compile in a child process is killed; one in this
    /// process finishes and is discarded.
    fn supersede(&self, loading: &mut BTreeMap<String, InFlight>, name: &str) {
        if let Some(f) = loading.remove(name) {
            f.cancel.cancel();
            self.metrics.plugin_loads_in_progress.dec();
            tracing::info!(plugin = %name, version = %&f.hash[..12], "superseded while compiling: a newer state of the file was seen");
        }
    }

    /// One load: waits for a compile slot (a compile-cache hit needs none),
    /// compiles in a blocking thread and installs the result, unless a
    /// newer state of the file was seen meanwhile.
    async fn compile_and_install(
        &self,
        name: String,
        path: PathBuf,
        bytes: Vec<u8>,
        hash: String,
        generation: u64,
        cancel: Arc<Cancel>,
    ) {
        let large = bytes.len() as u64 > LARGE_COMPONENT && !self.cache.is_cached(&hash);
        let permits = tokio::select! {
            p = self.slots.acquire(large) => p,
            () = cancel.cancelled() => {
                self.count_superseded();
                return;
            }
        };
        let hold = self.holds.lock().unwrap().get(&name).cloned();
        if let Some(hold) = hold {
            tokio::select! {
                // Err once the hold is dropped (closed): the compile goes on.
                _ = hold.acquire() => {}
                () = cancel.cancelled() => {
                    self.count_superseded();
                    return;
                }
            }
        }
        let (engine, linkers, cache) = (
            self.engine.clone(),
            self.linkers.clone(),
            self.cache.clone(),
        );
        let (task_name, task_path, task_cancel) = (name.clone(), path.clone(), cancel.clone());
        // Compilation is CPU-bound and can take seconds: keep it off the
        // async workers that serve the API and other plugins' calls.
        let loaded = tokio::task::spawn_blocking(move || {
            load_component(
                &engine,
                &linkers,
                &cache,
                &task_name,
                task_path,
                &bytes,
                &task_cancel,
            )
        })
        .await;
        drop(permits);
        let mut loading = self.loading.lock().unwrap();
        let stamp = match loading.get(&name) {
            Some(f) if f.generation == generation => f.stamp,
            _ => {
                drop(loading);
                self.count_superseded();
                return;
            }
        };
        loading.remove(&name);
        self.metrics.plugin_loads_in_progress.dec();
        // Installed under the lock: see `loading`.
        let loaded = match loaded {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                self.remember(&name, stamp, Some(hash));
                self.record_failure(&name, &path, format!("{e:#}"));
                return;
            }
            // Not a verdict on the file: the next event tries again.
            Err(e) => {
                self.record_failure(&name, &path, format!("loader task failed: {e}"));
                return;
            }
        };
        tracing::info!(
            plugin = %name,
            kind = %loaded.kind,
            version = %&loaded.hash[..12],
            size = loaded.size,
            from_cache = loaded.from_cache,
            load_ms = loaded.load_duration.as_secs_f64() * 1e3,
            "plugin loaded"
        );
        self.remember(&name, stamp, Some(hash));
        let loaded = Arc::new(loaded);
        self.swap(|m| m.insert(name.clone(), loaded.clone()));
        self.errors.lock().unwrap().remove(&name);
        self.metrics
            .plugin_loads
            .get_or_create(&ResultLabels {
                result: "success".into(),
            })
            .inc();
        self.set_last_load_successful(&name, true);
    }

    /// Loads one plugin file from anywhere as plugin `name`, as the
    /// watcher loads one (header first under `max_plugin_size`, compiled,
    /// type-checked against its world): for `wasmon plugin call`.
    pub async fn load_file(&self, name: &str, path: &Path) -> Result<Arc<LoadedPlugin>> {
        let (file, max) = (path.to_path_buf(), self.max_plugin_size);
        let bytes = tokio::task::spawn_blocking(move || file::read(&file, max))
            .await
            .context("reader task failed")??;
        let (engine, linkers, cache) = (
            self.engine.clone(),
            self.linkers.clone(),
            self.cache.clone(),
        );
        let (task_name, task_path) = (name.to_string(), path.to_path_buf());
        let loaded = tokio::task::spawn_blocking(move || {
            load_component(
                &engine,
                &linkers,
                &cache,
                &task_name,
                task_path,
                &bytes,
                &Cancel::default(),
            )
        })
        .await
        .context("loader task failed")??;
        let loaded = Arc::new(loaded);
        self.swap(|m| m.insert(name.to_string(), loaded.clone()));
        Ok(loaded)
    }

    fn count_superseded(&self) {
        self.metrics
            .plugin_loads
            .get_or_create(&ResultLabels {
                result: "superseded".into(),
            })
            .inc();
    }

    fn remember(&self, name: &str, stamp: file::Stamp, hash: Option<String>) {
        self.seen
            .lock()
            .unwrap()
            .insert(name.to_string(), Seen { stamp, hash });
    }

    fn unload(&self, name: &str, path: &Path) -> ReloadOutcome {
        self.seen.lock().unwrap().remove(name);
        self.errors.lock().unwrap().remove(name);
        let removed = self.swap(|m| m.remove(name).is_some());
        self.metrics
            .plugin_last_load_successful
            .remove(&PluginLabels {
                plugin: name.to_string(),
            });
        if removed {
            tracing::info!(plugin = %name, path = %path.display(), "plugin removed");
            return ReloadOutcome::Removed;
        }
        ReloadOutcome::Ignored
    }

    fn set_last_load_successful(&self, name: &str, ok: bool) {
        self.metrics
            .plugin_last_load_successful
            .get_or_create(&PluginLabels {
                plugin: name.to_string(),
            })
            .set(i64::from(ok));
    }

    fn record_failure(&self, name: &str, path: &Path, error: String) -> ReloadOutcome {
        let serving = self
            .plugins
            .load()
            .get(name)
            .map(|p| p.hash[..12].to_string());
        tracing::error!(
            plugin = %name,
            file = %path.display(),
            still_serving = serving.as_deref().unwrap_or("none"),
            "rejected plugin file: {error}"
        );
        self.errors.lock().unwrap().insert(
            name.to_string(),
            LoadError {
                path: path.to_path_buf(),
                error: error.clone(),
                at: SystemTime::now(),
            },
        );
        self.metrics
            .plugin_loads
            .get_or_create(&ResultLabels {
                result: "failure".into(),
            })
            .inc();
        self.set_last_load_successful(name, false);
        ReloadOutcome::Failed(error)
    }

    fn swap<R>(&self, f: impl FnOnce(&mut BTreeMap<String, Arc<LoadedPlugin>>) -> R) -> R {
        let mut next = BTreeMap::clone(&self.plugins.load());
        let r = f(&mut next);
        self.metrics.plugins_loaded.set(next.len() as i64);
        self.plugins.store(Arc::new(next));
        r
    }

    /// The plugin currently serving `name`.
    pub fn get(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.load().get(name).cloned()
    }

    /// Every plugin known: loaded ones, ones being compiled and files that
    /// failed to load.
    pub fn list(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.load();
        let errors = self.errors.lock().unwrap().clone();
        let loading: Vec<(String, String, SystemTime)> = self
            .loading
            .lock()
            .unwrap()
            .iter()
            .map(|(n, f)| (n.clone(), f.hash.clone(), f.since))
            .collect();
        let mut out: BTreeMap<String, PluginStatus> = plugins
            .values()
            .map(|p| {
                (
                    p.name.clone(),
                    PluginStatus {
                        kind: Some(p.kind),
                        hash: Some(p.hash.clone()),
                        size: Some(p.size),
                        imports: p.imports.clone(),
                        loaded_at: Some(p.loaded_at),
                        load_ms: Some(p.load_duration.as_secs_f64() * 1e3),
                        from_cache: Some(p.from_cache),
                        ..PluginStatus::empty(&p.name, &p.path)
                    },
                )
            })
            .collect();
        for (name, e) in errors {
            out.entry(name.clone())
                .or_insert_with(|| PluginStatus::empty(&name, &e.path))
                .error = Some(e.error);
        }
        for (name, hash, since) in loading {
            let path = self.dir.join(format!("{name}.wasm"));
            out.entry(name.clone())
                .or_insert_with(|| PluginStatus::empty(&name, &path))
                .loading = Some(Compiling {
                version: hash,
                since,
            });
        }
        for (name, status) in out.iter_mut() {
            status.instances = self.circuits.of_plugin(name);
        }
        out.into_values().collect()
    }

    fn plugin_for(
        &self,
        inst: &Instance,
        kind: PluginKind,
    ) -> Result<Arc<LoadedPlugin>, CallError> {
        let p = self
            .get(&inst.plugin)
            .ok_or_else(|| CallError::NotLoaded(inst.plugin.clone()))?;
        if p.kind != kind {
            return Err(CallError::WrongKind {
                plugin: inst.plugin.clone(),
                expected: kind,
                actual: p.kind,
            });
        }
        Ok(p)
    }

    /// A fresh store for one call, with the instance's limits and policy.
    fn store(
        &self,
        inst: &Instance,
        plugin: &LoadedPlugin,
        counters: Arc<PolicyCounters>,
    ) -> Store<HostState> {
        let env = Arc::new(CallEnv {
            plugin: plugin.name.as_str().into(),
            instance: inst.name.clone(),
            config_json: inst.config_json.clone(),
            clock: self.clock(),
            query: Option::clone(&self.query.load()),
        });
        let policy = OutboundPolicy {
            allow: inst.allow.clone(),
            plugin: plugin.name.as_str().into(),
            instance: inst.name.clone(),
            counters,
            http: inst.http.clone(),
        };
        let limits = Limits {
            memory_bytes: inst.memory_limit,
            table_elements: 100_000,
        };
        let mut store = Store::new(&self.engine, HostState::new(env, policy, limits));
        store.limiter(|s| &mut s.limits);
        // Check the deadline every epoch tick; until it passes, yield so a busy
        // guest shares the async runtime instead of pinning a worker thread.
        let deadline = Instant::now() + inst.timeout;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store
    }

    /// Asks the instance's circuit for a call (see [`circuit`]).
    fn admit(
        &self,
        inst: &Instance,
        plugin: &LoadedPlugin,
        policy: Policy,
        digest: Option<u64>,
    ) -> Result<Ticket, CallError> {
        let now = self.clock().now_ms();
        let admitted = self.circuits.admit(inst, plugin, policy, digest, now);
        if let Err(e) = &admitted {
            tracing::debug!(plugin = %plugin.name, instance = %inst.name, error = %e, "plugin call refused");
        }
        admitted
    }

    /// Runs one call under its timeout and turns every failure into a
    /// [`CallError`], recording metrics and the outcome in the instance's
    /// circuit.
    async fn run<T>(
        &self,
        inst: &Instance,
        plugin: &LoadedPlugin,
        ticket: Ticket,
        counters: &PolicyCounters,
        fut: impl std::future::Future<Output = wasmtime::Result<Result<T, Failure>>>,
    ) -> Result<(T, CallInfo), CallError> {
        let start = Instant::now();
        // The epoch deadline catches guests that compute; this outer timeout
        // also catches ones blocked in a host call (a slow HTTP peer).
        let result = match tokio::time::timeout(inst.timeout, fut).await {
            Err(_) => Err(CallError::Timeout(inst.timeout)),
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(failure))) => Err(CallError::from(failure)),
            Ok(Err(e)) => Err(classify(e, inst.timeout)),
        };
        let duration = start.elapsed();
        let denied = counters.denied.load(Ordering::Relaxed);
        let result = result.map_err(|e| annotate_denied(e, denied, counters));
        self.circuits.record(ticket, &result, self.clock().now_ms());
        let labels = InstanceLabels {
            plugin: plugin.name.clone(),
            instance: inst.name.to_string(),
        };
        if denied > 0 {
            self.metrics
                .plugin_http_denied
                .get_or_create(&labels)
                .inc_by(denied);
        }
        self.metrics
            .plugin_call_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
        self.metrics
            .plugin_calls
            .get_or_create(&CallLabels {
                plugin: labels.plugin,
                instance: labels.instance,
                result: match &result {
                    Ok(_) => "ok",
                    Err(e) => e.label(),
                }
                .to_string(),
            })
            .inc();
        if let Err(e) = &result {
            tracing::warn!(plugin = %plugin.name, instance = %inst.name, version = %&plugin.hash[..12], error = %e, "plugin call failed");
        }
        result.map(|v| {
            (
                v,
                CallInfo {
                    plugin_hash: plugin.hash.clone(),
                    duration,
                },
            )
        })
    }

    /// Delivers a notification through a receiver instance. The same
    /// notification is not delivered again after a permanent failure, and
    /// calls are refused while the instance's circuit is open.
    pub async fn notify(
        &self,
        inst: &Instance,
        n: &wit::Notification,
    ) -> Result<CallInfo, CallError> {
        self.notify_with(
            inst,
            n,
            Policy::Guarded {
                remember_permanent: true,
            },
        )
        .await
    }

    /// [`PluginRuntime::notify`] under another failure policy
    /// ([`Policy::Manual`] for a receiver's test).
    pub async fn notify_with(
        &self,
        inst: &Instance,
        n: &wit::Notification,
        policy: Policy,
    ) -> Result<CallInfo, CallError> {
        let plugin = self.plugin_for(inst, PluginKind::Receiver)?;
        let Pre::Receiver(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let ticket = self.admit(inst, &plugin, policy, Some(circuit::digest(n)))?;
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_notify(&mut store, n).await
        };
        self.run(inst, &plugin, ticket, &counters, fut)
            .await
            .map(|((), info)| info)
    }

    /// Instantiates a receiver without calling it: what every call pays
    /// before the guest runs. For benchmarks.
    #[doc(hidden)]
    pub async fn instantiate_only(&self, inst: &Instance) -> Result<(), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::Receiver)?;
        let Pre::Receiver(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let mut store = self.store(inst, &plugin, Arc::default());
        pre.instantiate_async(&mut store)
            .await
            .map(drop)
            .map_err(|e| classify(e, inst.timeout))
    }

    /// Runs a health-check instance (refused while its circuit is open).
    pub async fn check(
        &self,
        inst: &Instance,
        req: &wit::CheckRequest,
    ) -> Result<(wit::CheckResult, CallInfo), CallError> {
        self.check_with(
            inst,
            req,
            Policy::Guarded {
                remember_permanent: false,
            },
        )
        .await
    }

    /// [`PluginRuntime::check`] under another failure policy
    /// ([`Policy::Manual`] for a check run on demand).
    pub async fn check_with(
        &self,
        inst: &Instance,
        req: &wit::CheckRequest,
        policy: Policy,
    ) -> Result<(wit::CheckResult, CallInfo), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::HealthCheck)?;
        let Pre::HealthCheck(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let ticket = self.admit(inst, &plugin, policy, None)?;
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_check(&mut store, req).await
        };
        self.run(inst, &plugin, ticket, &counters, fut).await
    }

    /// Runs a rollback-action instance. Never refused by the failure
    /// policy: see [`circuit`].
    pub async fn rollback(
        &self,
        inst: &Instance,
        req: &wit::RollbackRequest,
    ) -> Result<(wit::RollbackOutcome, CallInfo), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::RollbackAction)?;
        let Pre::RollbackAction(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let ticket = self.admit(inst, &plugin, Policy::Unguarded, None)?;
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_rollback(&mut store, req).await
        };
        self.run(inst, &plugin, ticket, &counters, fut).await
    }

    /// Runs a metric-check instance (refused while its circuit is open).
    pub async fn evaluate(
        &self,
        inst: &Instance,
        req: &wit::MetricCheckRequest,
    ) -> Result<(wit::CheckResult, CallInfo), CallError> {
        self.evaluate_with(
            inst,
            req,
            Policy::Guarded {
                remember_permanent: false,
            },
        )
        .await
    }

    /// [`PluginRuntime::evaluate`] under another failure policy.
    pub async fn evaluate_with(
        &self,
        inst: &Instance,
        req: &wit::MetricCheckRequest,
        policy: Policy,
    ) -> Result<(wit::CheckResult, CallInfo), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::MetricCheck)?;
        let Pre::MetricCheck(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let ticket = self.admit(inst, &plugin, policy, None)?;
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_evaluate(&mut store, req).await
        };
        self.run(inst, &plugin, ticket, &counters, fut).await
    }
}

/// Maps a wasmtime error (trap, limit, deadline, instantiation) to a CallError.
fn classify(e: wasmtime::Error, timeout: Duration) -> CallError {
    if e.downcast_ref::<DeadlineExceeded>().is_some() {
        return CallError::Timeout(timeout);
    }
    if let Some(m) = e.downcast_ref::<MemoryLimitExceeded>() {
        return CallError::MemoryLimit(m.to_string());
    }
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        // The first line of the full chain names the trap; the rest is the
        // guest backtrace, worth keeping for the plugin's author.
        return CallError::Trap(
            format!("{trap}: {e:?}")
                .lines()
                .take(12)
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    CallError::Host(format!("{e:#}"))
}

/// A failure caused by the sandbox denying a request should say so, even
/// when the plugin's own message is vague.
fn annotate_denied(e: CallError, denied: u64, counters: &PolicyCounters) -> CallError {
    if denied == 0 {
        return e;
    }
    let _ = counters;
    let note = format!(" [{denied} outbound HTTP request(s) denied: host not in allow_hosts]");
    match e {
        CallError::Retryable(m) => CallError::Retryable(m + &note),
        CallError::Permanent(m) => CallError::Permanent(m + &note),
        CallError::Trap(m) => CallError::Trap(m + &note),
        CallError::Host(m) => CallError::Host(m + &note),
        other => other,
    }
}

/// Helpers building WIT values from plain data (used by the API and tests).
pub mod values {
    use super::wit;

    pub fn labels(pairs: &[(&str, &str)]) -> Vec<wit::Label> {
        pairs
            .iter()
            .map(|(n, v)| wit::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect()
    }
}
