//! The running agent: owns the current config, the plugin runtime and the
//! HTTP server, and applies config reloads (SIGHUP, `POST /-/reload`) with
//! the rule that a bad config never replaces a good one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use crate::config::Config;
use crate::plugins::{watch, Instance, PluginRuntime};
use crate::scrape::{Job, ScrapeManager};
use crate::selfmetrics::Metrics;
use crate::tsdb;

/// What a config load produces: the config and its prepared plugin instances.
pub struct Loaded {
    pub config: Config,
    pub receivers: BTreeMap<String, Instance>,
}

impl Loaded {
    /// Everything a config needs before it may replace the running one;
    /// the scrape jobs are handed to the scrape manager.
    fn prepare(config: Config) -> Result<(Loaded, Vec<Job>)> {
        let receivers = config
            .receivers
            .iter()
            .map(|r| Ok((r.name().to_string(), Instance::prepare(r, &config.plugins)?)))
            .collect::<Result<_>>()?;
        let jobs = config
            .scrape_configs
            .iter()
            .map(|sc| Job::from_config(sc, &config))
            .collect::<Result<Vec<_>>>()?;
        Ok((Loaded { config, receivers }, jobs))
    }

    /// The directory relative paths in the config resolve against.
    fn base_dir(&self) -> PathBuf {
        self.config.resolve(std::path::Path::new(""))
    }
}

pub struct Agent {
    current: ArcSwap<Loaded>,
    config_path: Option<PathBuf>,
    pub plugins: Arc<PluginRuntime>,
    pub metrics: Arc<Metrics>,
    pub db: Arc<tsdb::Db>,
    pub scrape: Arc<ScrapeManager>,
    ready: AtomicBool,
    /// Serializes reloads (SIGHUP and the API may race).
    reload_lock: tokio::sync::Mutex<()>,
    maintenance: std::sync::Mutex<Option<tsdb::Maintenance>>,
    _watch: Option<watch::WatchHandle>,
}

impl Agent {
    /// Builds the agent from a config (the file it came from, if any, is
    /// what reloads re-read) and loads every plugin.
    pub async fn start(config: Config) -> Result<Arc<Agent>> {
        let metrics = Arc::new(Metrics::new());
        let dir = config.resolve(&config.plugins.dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating plugins directory {}", dir.display()))?;
        let cache_dir = (!config.plugins.cache_dir.as_os_str().is_empty())
            .then(|| config.resolve(&config.plugins.cache_dir));
        let plugins = PluginRuntime::new(&config.plugins, dir, cache_dir, metrics.clone())?;
        let (ok, failed) = plugins.load_all().await;
        tracing::info!(loaded = ok, failed, dir = %plugins.dir().display(), "plugins loaded");
        let watch = if config.plugins.watch {
            Some(watch::watch(plugins.clone())?)
        } else {
            None
        };
        let config_path = config.source.clone();
        let (loaded, jobs) = Loaded::prepare(config)?;
        let storage = &loaded.config.storage;
        let data_dir = loaded.config.resolve(&storage.path);
        let db = tsdb::Db::open(
            &data_dir,
            tsdb::Options {
                retention_time: storage.retention_time,
                retention_size: (storage.retention_size.as_u64() > 0)
                    .then(|| storage.retention_size.as_u64()),
                wal_sync_interval: storage.wal_sync_interval,
                ..tsdb::Options::default()
            },
        )
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let maintenance = db.spawn_maintenance();
        let db = Arc::new(db);
        let scrape = Arc::new(ScrapeManager::new(db.clone())?);
        scrape.apply(jobs, loaded.base_dir()).await;
        for (name, inst) in &loaded.receivers {
            if plugins.get(&inst.plugin).is_none() {
                tracing::warn!(receiver = %name, plugin = %inst.plugin, "receiver's plugin is not loaded (yet): calls fail until it appears in the plugins directory");
            }
        }
        metrics.config_last_reload_successful.set(1);
        metrics.config_last_reload_success_timestamp.set(unix_now());
        let agent = Arc::new(Agent {
            current: ArcSwap::from_pointee(loaded),
            config_path,
            plugins,
            metrics,
            db,
            scrape,
            ready: AtomicBool::new(true),
            reload_lock: tokio::sync::Mutex::new(()),
            maintenance: std::sync::Mutex::new(Some(maintenance)),
            _watch: watch,
        });
        Ok(agent)
    }

    /// A PromQL engine with the current config's limits.
    pub fn engine(&self) -> crate::promql::Engine {
        let q = &self.current().config.query;
        crate::promql::Engine::new(crate::promql::engine::EngineOpts {
            lookback_delta_ms: q.lookback_delta.as_millis() as i64,
            max_samples: q.max_samples,
            timeout: q.timeout,
            ..Default::default()
        })
    }

    pub fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Re-reads the config file. On error the running config stays.
    pub async fn reload_config(&self) -> Result<()> {
        let _guard = self.reload_lock.lock().await;
        let result = self.try_reload().await;
        match &result {
            Ok(()) => {
                self.metrics.config_last_reload_successful.set(1);
                self.metrics
                    .config_last_reload_success_timestamp
                    .set(unix_now());
                tracing::info!("configuration reloaded");
            }
            Err(e) => {
                self.metrics.config_last_reload_successful.set(0);
                tracing::error!(error = %format!("{e:#}"), "configuration reload failed; keeping the running configuration");
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<()> {
        let Some(path) = &self.config_path else {
            anyhow::bail!("running on the built-in default config: there is no file to reload");
        };
        let config = Config::load(path)?;
        let old = self.current();
        if config.web.listen_address != old.config.web.listen_address
            || config.plugins.dir != old.config.plugins.dir
            || config.plugins.allocator != old.config.plugins.allocator
        {
            tracing::warn!("web.listen_address, plugins.dir and plugins.allocator changes take effect on restart");
        }
        if config.storage.path != old.config.storage.path {
            tracing::warn!("storage.path changes take effect on restart");
        }
        let (loaded, jobs) = Loaded::prepare(config)?;
        let base = loaded.base_dir();
        self.current.store(Arc::new(loaded));
        self.scrape.apply(jobs, base).await;
        Ok(())
    }

    /// Serves the HTTP API until `shutdown` resolves. Returns the bound address
    /// through `bound` as soon as the listener is up.
    pub async fn serve(
        self: Arc<Self>,
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let addr = self.current().config.web.listen_address.clone();
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on web.listen_address {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(address = %local, "HTTP API listening");
        if let Some(tx) = bound {
            let _ = tx.send(local);
        }
        let router = crate::web::router(self.clone());
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("HTTP server")?;
        self.shutdown().await;
        Ok(())
    }

    /// Stops scraping (writing staleness markers) and flushes the store.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Relaxed);
        self.scrape.stop().await;
        if let Some(m) = self.maintenance.lock().unwrap().take() {
            m.stop();
        }
        if let Err(e) = self.db.sync_wal() {
            tracing::error!(error = %format!("{e:#}"), "flushing the WAL on shutdown");
        }
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
