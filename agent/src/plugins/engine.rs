//! The wasmtime engine shared by every plugin, its epoch ticker, the
//! on-disk cache of compiled components, and the compiler child process.
//!
//! Compiling a component runs Cranelift: megabytes of compiler code paged
//! in and a heap of compile-time data. In the agent that stayed resident
//! for the life of the process (~12 MB for one receiver, measured: RSS
//! after a fresh compile vs after a cache hit). So the agent binary
//! compiles in a short-lived child of itself (`wasmon __compile-plugin`,
//! see [`compile_in_child_process`]) and only maps the result, as it would
//! a cache hit. A compiler crash or blow-up on a hostile component then
//! takes down the child, not the agent.

use std::hash::{Hash, Hasher};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::{Allocator, PluginsConfig};

/// One epoch tick. Call deadlines are checked (and long-running guests yield
/// to the async runtime) once per tick, so this bounds both how late a
/// timeout fires and how long a busy guest can hold a runtime thread.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine for the given plugin settings and starts its epoch
/// ticker (a thread that stops when the engine is dropped).
pub fn build_engine(cfg: &PluginsConfig) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // Deterministic enough to cache: compiled code depends only on the
    // engine settings, which `precompile_compatibility_hash` captures.
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    if cfg.allocator == Allocator::Pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(cfg.pool_instances)
            .total_core_instances(cfg.pool_instances * 4)
            .total_memories(cfg.pool_instances * 2)
            .total_tables(cfg.pool_instances * 4)
            .total_stacks(cfg.pool_instances)
            .max_memory_size(cfg.memory_limit.as_u64() as usize)
            .max_memories_per_component(4);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    let engine = Engine::new(&config)
        .map_err(anyhow::Error::from)
        .context("creating the wasmtime engine")?;
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("wasmon-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => return,
            }
        })
        .context("starting the epoch ticker thread")?;
    Ok(engine)
}

/// The executable that compiles components in a child process, when set.
static COMPILER_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes every [`CompileCache`] created afterwards compile in a child
/// process running `exe __compile-plugin` (the agent binary passes itself;
/// library users and tests compile in-process).
pub fn compile_in_child_process(exe: PathBuf) {
    let _ = COMPILER_EXE.set(exe);
}

/// Exit code of `__compile-plugin` when the component does not compile
/// (its error is on stderr); any other failure of the child is about the
/// child, not the component.
pub const COMPILE_FAILED: i32 = 3;

/// The child's side: builds the engine from `cfg_json` (the parent's
/// [`PluginsConfig`], so the compiled code matches the parent's engine),
/// compiles the component read from stdin and writes it to `out`.
pub fn compile_worker(cfg_json: &str, out: &Path) -> Result<(), (i32, String)> {
    let infra = |e: anyhow::Error| (2, format!("{e:#}"));
    let cfg: PluginsConfig = serde_json::from_str(cfg_json)
        .context("engine settings")
        .map_err(infra)?;
    let engine = build_engine(&cfg).map_err(infra)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
        .context("reading the component from stdin")
        .map_err(infra)?;
    let code = engine
        .precompile_component(&bytes)
        .map_err(|e| (COMPILE_FAILED, format!("{:#}", anyhow::Error::from(e))))?;
    write_atomically(out, &code).map_err(infra)
}

/// How a cache miss gets compiled: in this process, or by a child.
#[derive(Clone)]
struct Child {
    exe: PathBuf,
    cfg_json: String,
}

/// Why a child compile did not produce a component.
enum ChildError {
    /// The component does not compile, or the compiler died on it: a
    /// verdict on the component.
    Component(anyhow::Error),
    /// The child could not run (exec failed, bad settings): compile
    /// in-process instead.
    Unavailable(anyhow::Error),
    /// Stopped because the result is no longer wanted.
    Cancelled,
}

/// How often a compile in a child process checks whether it was cancelled.
const CHILD_POLL: Duration = Duration::from_millis(20);

/// Set when a compile's result is no longer wanted (a newer version of the
/// file, or the file removed). A compile in a child process is killed; one
/// in this process runs to the end and its result is dropped.
#[derive(Debug, Default)]
pub struct Cancel {
    flag: std::sync::atomic::AtomicBool,
    notify: tokio::sync::Notify,
}

impl Cancel {
    pub fn cancel(&self) {
        self.flag.store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Resolves once [`Cancel::cancel`] was called.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a cancel in between
            // is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// Why [`CompileCache::load_cancellable`] gave no component.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cancelled: a newer version superseded it")]
    Cancelled,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Child {
    /// Compiles `bytes` to `out` in a child process. When `cancel` is set
    /// while it runs (a newer version of the file arrived), the child is
    /// killed: a superseded 30 s compile should not keep a core busy.
    fn compile(&self, bytes: &[u8], out: &Path, cancel: &Cancel) -> Result<(), ChildError> {
        let start = Instant::now();
        let mut child = std::process::Command::new(&self.exe)
            .arg("--log.level=error")
            .arg("__compile-plugin")
            .arg("--engine-config")
            .arg(&self.cfg_json)
            .arg(out)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))
            .map_err(ChildError::Unavailable)?;
        // The component goes in on stdin from another thread, so a child
        // that fails early (and stops reading) cannot wedge this one.
        let mut stdin = child.stdin.take();
        let input = bytes.to_vec();
        let feeder = std::thread::spawn(move || {
            if let Some(mut s) = stdin.take() {
                let _ = s.write_all(&input);
            }
        });
        // stderr is drained by its own thread so a chatty child cannot
        // block on a full pipe while this one polls for cancellation.
        let mut err_pipe = child.stderr.take();
        let reader = std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(e) = err_pipe.as_mut() {
                let _ = std::io::Read::read_to_end(e, &mut buf);
            }
            buf
        });
        let status = loop {
            if cancel.is_cancelled() {
                let _ = child.kill();
                let _ = child.wait();
                let _ = feeder.join();
                let _ = reader.join();
                let _ = std::fs::remove_file(out);
                return Err(ChildError::Cancelled);
            }
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => std::thread::sleep(CHILD_POLL),
                Err(e) => {
                    let _ = child.kill();
                    return Err(ChildError::Unavailable(
                        anyhow::Error::from(e).context("waiting for the compiler process"),
                    ));
                }
            }
        };
        let _ = feeder.join();
        let stderr_bytes = reader.join().unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr_bytes);
        let stderr = stderr.trim().trim_start_matches("error: ");
        let output = std::process::Output {
            status,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        match output.status.code() {
            Some(0) => {
                tracing::debug!(
                    elapsed_ms = start.elapsed().as_millis() as u64,
                    "component compiled in a child process"
                );
                Ok(())
            }
            Some(COMPILE_FAILED) => Err(ChildError::Component(anyhow::anyhow!("{stderr}"))),
            Some(code) => Err(ChildError::Unavailable(anyhow::anyhow!(
                "compiler process exited with {code}: {stderr}"
            ))),
            // Killed (the OOM killer, a crash): compiling it again here
            // would do the same to the agent.
            None => Err(ChildError::Component(anyhow::anyhow!(
                "the compiler process died ({}){}",
                output.status,
                if stderr.is_empty() {
                    String::new()
                } else {
                    format!(": {stderr}")
                }
            ))),
        }
    }
}

/// The cache of compiled components, keyed by the component's content hash
/// and the engine's compatibility hash (wasmtime version, target, settings),
/// so an upgrade or a config change never loads stale code.
#[derive(Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
    child: Option<Child>,
}

impl CompileCache {
    /// `dir` None disables caching. `cfg` must be what `engine` was built
    /// from (a compiler child builds its engine from it).
    pub fn new(engine: &Engine, cfg: &PluginsConfig, dir: Option<PathBuf>) -> CompileCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = format!("{:016x}", h.finish());
        let child = COMPILER_EXE.get().and_then(|exe| {
            Some(Child {
                exe: exe.clone(),
                cfg_json: serde_json::to_string(cfg).ok()?,
            })
        });
        CompileCache {
            dir,
            engine_key,
            child,
        }
    }

    pub fn content_hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    fn path_for(&self, content_hash: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| {
            d.join(format!(
                "{content_hash}-{}-{}.cwasm",
                env!("CARGO_PKG_VERSION"),
                self.engine_key
            ))
        })
    }

    /// Loads `bytes` as a component: from the cache when present, otherwise
    /// compiled (slow: run it off the async runtime) — by a child process
    /// when one is set up — and written to the cache. Returns whether the
    /// cache served it.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
    ) -> Result<(Component, bool)> {
        match self.load_cancellable(engine, bytes, content_hash, &Cancel::default()) {
            Ok(c) => Ok(c),
            Err(LoadError::Failed(e)) => Err(e),
            Err(LoadError::Cancelled) => unreachable!("nothing cancels a fresh Cancel"),
        }
    }

    /// Whether `content_hash` is in the cache (a load would be a quick
    /// map, not a compile).
    pub fn is_cached(&self, content_hash: &str) -> bool {
        self.path_for(content_hash).is_some_and(|p| p.exists())
    }

    /// [`CompileCache::load`], stopped early when `cancel` is set (a child
    /// compile is killed).
    pub fn load_cancellable(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
        cancel: &Cancel,
    ) -> Result<(Component, bool), LoadError> {
        let cached = self.path_for(content_hash);
        if let Some(path) = cached.as_deref().filter(|p| p.exists()) {
            // SAFETY: the file is one this cache wrote with `Component::serialize`
            // (or a compiler child with `precompile_component`) for this engine
            // (its name carries the content and engine hashes), in a directory
            // the agent owns; wasmtime still checks its header and rejects an
            // incompatible one, in which case we recompile.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compile-cache entry")
                }
            }
        }
        if let Some(child) = &self.child {
            match self.load_from_child(engine, child, bytes, cached.as_deref(), cancel) {
                Ok(c) => return Ok((c, false)),
                Err(ChildError::Component(e)) => return Err(e.into()),
                Err(ChildError::Cancelled) => return Err(LoadError::Cancelled),
                Err(ChildError::Unavailable(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "compiling in a child process failed; compiling in the agent")
                }
            }
        }
        if cancel.is_cancelled() {
            return Err(LoadError::Cancelled);
        }
        let component = Component::new(engine, bytes).map_err(anyhow::Error::from)?;
        if let Some(path) = cached {
            let code = component.serialize().map_err(anyhow::Error::from)?;
            if let Err(e) = write_atomically(&path, &code) {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "could not write compile cache");
            }
        }
        Ok((component, false))
    }

    fn load_from_child(
        &self,
        engine: &Engine,
        child: &Child,
        bytes: &[u8],
        cached: Option<&Path>,
        cancel: &Cancel,
    ) -> Result<Component, ChildError> {
        // Without a cache the code goes through a temporary file, deleted
        // once mapped.
        let (out, temporary) = match cached {
            Some(p) => (p.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "wasmon-compile-{}-{}-{}.cwasm",
                    std::process::id(),
                    unique(),
                    &CompileCache::content_hash(bytes)[..16]
                )),
                true,
            ),
        };
        child.compile(bytes, &out, cancel)?;
        // SAFETY: written just now by the child from these bytes with an
        // engine built from the same settings; wasmtime checks the header.
        let loaded = unsafe { Component::deserialize_file(engine, &out) };
        if temporary {
            let _ = std::fs::remove_file(&out);
        }
        loaded
            .map_err(anyhow::Error::from)
            .context("loading the code the compiler process wrote")
            .map_err(ChildError::Unavailable)
    }
}

/// A number no other call in this process gets (temporary file names).
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Unique per write: loads run in parallel, and two files with the same
    // content compile to the same cache path at the same time.
    let tmp = path.with_extension(format!("tmp{}-{}", std::process::id(), unique()));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
