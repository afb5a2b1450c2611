//! [`PluginRuntime`]: the set of loaded plugins and the one way to call them.
//!
//! Every call gets a fresh `Store` and instance (from a pre-linked
//! `InstancePre`), so a trap, a runaway loop or a memory bomb poisons nothing
//! but that call. The set of plugins is an immutable map behind an `ArcSwap`:
//! a reload builds the new version off to the side and swaps the map, and a
//! call in flight keeps the `Arc` of the version it started with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use arc_swap::ArcSwap;
use wasmtime::{Engine, Store, UpdateDeadline};

use super::bindings::types::{self as wit, Failure};
use super::engine::{build_engine, CompileCache};
use super::file;
use super::host::{CallEnv, Clock, HostState, Limits, MemoryLimitExceeded, QueryApi, SystemClock};
use super::loader::{load_component, plugin_name, Linkers, LoadedPlugin, PluginKind, Pre};
use super::policy::{HostPattern, OutboundPolicy, PolicyCounters};
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
}

impl Instance {
    pub fn prepare(cfg: &InstanceConfig, defaults: &PluginsConfig) -> Result<Instance> {
        Ok(Instance {
            name: cfg.name().into(),
            plugin: cfg.plugin.clone(),
            config_json: cfg
                .config_json()
                .with_context(|| format!("instance {:?}", cfg.name()))?
                .into(),
            allow: cfg.allow_hosts().into(),
            timeout: cfg.timeout.unwrap_or(defaults.call_timeout),
            memory_limit: cfg.memory_limit.unwrap_or(defaults.memory_limit).as_u64() as usize,
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
}

impl CallError {
    /// Worth retrying with backoff (Alertmanager retries timeouts and
    /// transient failures, not bad requests or broken code).
    pub fn is_retryable(&self) -> bool {
        matches!(self, CallError::Timeout(_) | CallError::Retryable(_))
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
    /// Serializes loads so two events for one file cannot race their swaps.
    load_lock: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    query: ArcSwap<Option<Arc<dyn QueryApi>>>,
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
            load_lock: tokio::sync::Mutex::new(()),
            metrics,
            clock: Arc::new(SystemClock),
            query: ArcSwap::from_pointee(None),
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Attaches the query engine `metric-check` plugins use.
    pub fn set_query_api(&self, q: Arc<dyn QueryApi>) {
        self.query.store(Arc::new(Some(q)));
    }

    /// Loads every `*.wasm` in the plugins dir. Returns (serving, failed)
    /// over the files there.
    pub async fn load_all(&self) -> (usize, usize) {
        self.rescan().await
    }

    /// Brings the loaded set in line with the plugins dir: loads new and
    /// changed files and unloads plugins whose file is gone. A file whose
    /// [`file::Stamp`] did not change since the last look is not read, so a rescan
    /// of an unchanged directory costs one `stat` per file. Returns
    /// (serving, failed) over the files in the dir.
    ///
    /// When the directory itself cannot be read (deleted, being replaced),
    /// nothing is unloaded: the plugins loaded from it keep serving, a
    /// warning is logged once and `wasmon_plugins_dir_present` is 0 until
    /// it is back (the watcher re-arms and rescans then).
    pub async fn rescan(&self) -> (usize, usize) {
        let counts = self.rescan_dir().await;
        // Counted when done, so that a caller seeing the count move knows
        // the rescan is over.
        self.metrics.plugins_dir_rescans.inc();
        counts
    }

    async fn rescan_dir(&self) -> (usize, usize) {
        let Some(mut paths) = self.list_dir() else {
            return (0, 0);
        };
        paths.sort();
        let present: BTreeSet<String> = paths.iter().filter_map(|p| plugin_name(p)).collect();
        let (mut ok, mut failed) = (0, 0);
        for p in &paths {
            match self.reload_path(p).await {
                ReloadOutcome::Loaded | ReloadOutcome::Unchanged => ok += 1,
                ReloadOutcome::Failed(_) => failed += 1,
                ReloadOutcome::Removed | ReloadOutcome::Ignored => {}
            }
        }
        // Plugins and failures whose file is no longer listed: the removal
        // events may have been merged into this batch, or never seen.
        let mut known: BTreeSet<String> = self.plugins.load().keys().cloned().collect();
        known.extend(self.errors.lock().unwrap().keys().cloned());
        known.extend(self.seen.lock().unwrap().keys().cloned());
        for name in known.difference(&present) {
            self.reload_path(&self.dir.join(format!("{name}.wasm")))
                .await;
        }
        (ok, failed)
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

    /// (Re)loads the plugin at `path`, or unloads it when the file is gone.
    /// On failure the previous version, if any, keeps serving. The file is
    /// read only when its stamp changed, compiled only when its content
    /// did, and a failure is reported once per version of the file.
    pub async fn reload_path(&self, path: &Path) -> ReloadOutcome {
        let Some(name) = plugin_name(path) else {
            return ReloadOutcome::Ignored;
        };
        let _guard = self.load_lock.lock().await;
        let known = self.seen.lock().unwrap().get(&name).map(|s| s.stamp);
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
        let (stamp, bytes, hash) = match change {
            // The whole directory going away (`rm -r`, a remount) is not a
            // removal of each plugin: see `rescan`.
            file::Change::Gone if !self.dir.is_dir() => return ReloadOutcome::Ignored,
            file::Change::Gone => return self.unload(&name, path),
            file::Change::Unchanged => {
                return match self.errors.lock().unwrap().get(&name) {
                    Some(e) => ReloadOutcome::Failed(e.error.clone()),
                    None => ReloadOutcome::Unchanged,
                }
            }
            file::Change::Unreadable { stamp, error } => {
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
        let (engine, linkers, cache) = (
            self.engine.clone(),
            self.linkers.clone(),
            self.cache.clone(),
        );
        let path_buf = path.to_path_buf();
        let task_name = name.clone();
        // Compilation is CPU-bound and can take seconds: keep it off the
        // async workers that serve the API and other plugins' calls.
        let loaded = tokio::task::spawn_blocking(move || {
            load_component(&engine, &linkers, &cache, &task_name, path_buf, &bytes)
        })
        .await;
        let loaded = match loaded {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                self.remember(&name, stamp, Some(hash));
                return self.record_failure(&name, path, format!("{e:#}"));
            }
            // Not a verdict on the file: the next event tries again.
            Err(e) => return self.record_failure(&name, path, format!("loader task failed: {e}")),
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
        ReloadOutcome::Loaded
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

    /// Every plugin known: loaded ones and files that failed to load.
    pub fn list(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.load();
        let errors = self.errors.lock().unwrap().clone();
        let mut out: BTreeMap<String, PluginStatus> = plugins
            .values()
            .map(|p| {
                (
                    p.name.clone(),
                    PluginStatus {
                        name: p.name.clone(),
                        kind: Some(p.kind),
                        path: p.path.clone(),
                        hash: Some(p.hash.clone()),
                        size: Some(p.size),
                        imports: p.imports.clone(),
                        loaded_at: Some(p.loaded_at),
                        load_ms: Some(p.load_duration.as_secs_f64() * 1e3),
                        from_cache: Some(p.from_cache),
                        error: None,
                    },
                )
            })
            .collect();
        for (name, e) in errors {
            out.entry(name.clone())
                .or_insert_with(|| PluginStatus {
                    name,
                    kind: None,
                    path: e.path.clone(),
                    hash: None,
                    size: None,
                    imports: Vec::new(),
                    loaded_at: None,
                    load_ms: None,
                    from_cache: None,
                    error: None,
                })
                .error = Some(e.error);
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
            clock: self.clock.clone(),
            query: Option::clone(&self.query.load()),
        });
        let policy = OutboundPolicy {
            allow: inst.allow.clone(),
            plugin: plugin.name.as_str().into(),
            instance: inst.name.clone(),
            counters,
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

    /// Runs one call under its timeout and turns every failure into a
    /// [`CallError`], recording metrics.
    async fn run<T>(
        &self,
        inst: &Instance,
        plugin: &LoadedPlugin,
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

    /// Delivers a notification through a receiver instance.
    pub async fn notify(
        &self,
        inst: &Instance,
        n: &wit::Notification,
    ) -> Result<CallInfo, CallError> {
        let plugin = self.plugin_for(inst, PluginKind::Receiver)?;
        let Pre::Receiver(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_notify(&mut store, n).await
        };
        self.run(inst, &plugin, &counters, fut)
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

    /// Runs a health-check instance.
    pub async fn check(
        &self,
        inst: &Instance,
        req: &wit::CheckRequest,
    ) -> Result<(wit::CheckResult, CallInfo), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::HealthCheck)?;
        let Pre::HealthCheck(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_check(&mut store, req).await
        };
        self.run(inst, &plugin, &counters, fut).await
    }

    /// Runs a rollback-action instance.
    pub async fn rollback(
        &self,
        inst: &Instance,
        req: &wit::RollbackRequest,
    ) -> Result<(wit::RollbackOutcome, CallInfo), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::RollbackAction)?;
        let Pre::RollbackAction(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_rollback(&mut store, req).await
        };
        self.run(inst, &plugin, &counters, fut).await
    }

    /// Runs a metric-check instance.
    pub async fn evaluate(
        &self,
        inst: &Instance,
        req: &wit::MetricCheckRequest,
    ) -> Result<(wit::CheckResult, CallInfo), CallError> {
        let plugin = self.plugin_for(inst, PluginKind::MetricCheck)?;
        let Pre::MetricCheck(pre) = &plugin.pre else {
            unreachable!("kind checked by plugin_for")
        };
        let counters = Arc::new(PolicyCounters::default());
        let mut store = self.store(inst, &plugin, counters.clone());
        let fut = async {
            let b = pre.instantiate_async(&mut store).await?;
            b.call_evaluate(&mut store, req).await
        };
        self.run(inst, &plugin, &counters, fut).await
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
