//! The wasmtime engine shared by every plugin, its epoch ticker, and the
//! on-disk cache of compiled components.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The cache of compiled components, keyed by the component's content hash
/// and the engine's compatibility hash (wasmtime version, target, settings),
/// so an upgrade or a config change never loads stale code.
#[derive(Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

impl CompileCache {
    /// `dir` None disables caching.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> CompileCache {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = format!("{:016x}", h.finish());
        CompileCache { dir, engine_key }
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
    /// compiled (slow: run it off the async runtime) and written to the cache.
    /// Returns whether the cache served it.
    pub fn load(
        &self,
        engine: &Engine,
        bytes: &[u8],
        content_hash: &str,
    ) -> Result<(Component, bool)> {
        let cached = self.path_for(content_hash);
        if let Some(path) = cached.as_deref().filter(|p| p.exists()) {
            // SAFETY: the file is one this cache wrote with `Component::serialize`
            // for this engine (its name carries the content and engine hashes),
            // in a directory the agent owns; wasmtime still checks its header
            // and rejects an incompatible one, in which case we recompile.
            match unsafe { Component::deserialize_file(engine, path) } {
                Ok(c) => return Ok((c, true)),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "discarding unusable compile-cache entry")
                }
            }
        }
        let component = Component::new(engine, bytes)?;
        if let Some(path) = cached {
            if let Err(e) = write_atomically(&path, &component.serialize()?) {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "could not write compile cache");
            }
        }
        Ok((component, false))
    }
}

fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
