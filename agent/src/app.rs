//! The running agent: owns the current config, the plugin runtime and the
//! HTTP server, and applies config reloads (SIGHUP, `POST /-/reload`) with
//! the rule that a bad config never replaces a good one.

use std::collections::BTreeMap;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use arc_swap::ArcSwap;

use crate::alerting::dispatch::{Dispatcher, ReceiverSettings, Shared};
use crate::config::Config;
use crate::plugins::host::PromqlQueries;
use crate::plugins::notifier::{PluginNotifier, ReceiverGroups};
use crate::plugins::{watch, Instance, PluginKind, PluginRuntime};
use crate::promql::Engine;
use crate::scrape::{Job, ScrapeManager};
use crate::selfmetrics::Metrics;
use crate::tsdb;

/// What a config load produces: the config and its prepared plugin instances.
pub struct Loaded {
    pub config: Config,
    pub receivers: BTreeMap<String, Instance>,
    pub checks: Vec<crate::checks::Check>,
    pub rollouts: Vec<crate::rollout::Rollout>,
    /// `[web]`'s certificate and key, read (used by the server at startup;
    /// certificate changes need a restart).
    pub tls: Option<tokio_rustls::rustls::ServerConfig>,
}

impl AsRef<Config> for Loaded {
    fn as_ref(&self) -> &Config {
        &self.config
    }
}

impl Loaded {
    /// The directory relative paths in the config resolve against.
    fn base_dir(&self) -> PathBuf {
        self.config.resolve(std::path::Path::new(""))
    }
}

/// A config with everything checked that `run` checks short of opening the
/// store and binding ports: the agent's start and every reload go through
/// [`Prepared::new`], and so does `wasmon check config`, so a config the
/// check accepts is one the agent runs.
pub struct Prepared {
    pub loaded: Loaded,
    /// The scrape jobs, for the scrape manager.
    pub jobs: Vec<Job>,
    /// The rule files, read and validated, for the rule manager.
    pub rules: Vec<(PathBuf, crate::rules::rulefmt::RuleGroups)>,
    /// What does not stop the config but should be seen (a rule file glob
    /// that matches nothing, a plugin that is not loaded): `run` logs these,
    /// `check config` prints them.
    pub warnings: Vec<String>,
}

impl Prepared {
    /// Checks and prepares `config`. `plugins`: the loaded plugins to check
    /// every plugin instance against (None: no plugins directory to check).
    pub fn new(config: Config, plugins: Option<&PluginRuntime>) -> Result<Prepared> {
        // What `Config::parse` leaves to the modules that own the sections,
        // in the order it used to check them.
        let at = |span| config.at(span);
        crate::checks::validate_all(&config.checks, &at)?;
        crate::rollout::validate_all(&config.rollouts, &at)?;
        crate::remote::validate_all(&config.remote_write, &at)?;
        let mut warnings = Vec::new();
        let templates = crate::plugins::templates::load(
            &config.templates,
            &config.resolve(std::path::Path::new("")),
        )
        .with_context(|| config.origin().to_string())?;
        let receivers = config
            .receivers
            .iter()
            .filter(|r| !r.plugin.is_empty())
            .map(|r| {
                let mut inst = Instance::prepare(r, &config.plugins)?;
                inst.config_json =
                    crate::plugins::templates::with_templates(&inst.config_json, &templates)
                        .with_context(|| format!("receiver {:?}", r.name()))?
                        .into();
                Ok((r.name().to_string(), inst))
            })
            .collect::<Result<_>>()?;
        let jobs = config
            .scrape_configs
            .iter()
            .map(|sc| Job::from_config(sc, &config))
            .collect::<Result<Vec<_>>>()?;
        let checks = config
            .checks
            .iter()
            .map(|c| crate::checks::Check::prepare(c, &config.plugins))
            .collect::<Result<Vec<_>>>()?;
        let rollouts = config
            .rollouts
            .iter()
            .map(|r| crate::rollout::Rollout::prepare(r, &config.plugins))
            .collect::<Result<Vec<_>>>()?;
        if let Some(plugins) = plugins {
            warnings.extend(check_plugin_uses(&config, plugins)?);
        }
        let base = config.resolve(std::path::Path::new(""));
        for rw in &config.remote_write {
            rw.request_headers(&base).with_context(|| {
                format!(
                    "{}: remote_write {:?}",
                    config.at(rw.url.span()),
                    rw.queue_name()
                )
            })?;
        }
        if let Some(route) = &config.route {
            let origin = config.origin();
            crate::alerting::route::Route::new(route)
                .map_err(|e| anyhow::anyhow!("{origin}: route: {e}"))?;
            crate::alerting::inhibit::Inhibitor::new(&config.inhibit_rules)
                .map_err(|e| anyhow::anyhow!("{origin}: inhibit_rules: {e}"))?;
        }
        let files = crate::rules::manager::resolve_rule_files(&config.rule_files, &base)
            .with_context(|| format!("{}: rule_files", config.origin()))?;
        warnings.extend(
            files
                .unmatched_globs
                .iter()
                .map(|p| crate::rules::manager::unmatched_glob_warning(p)),
        );
        let rules = crate::rules::manager::parse_rule_files(&files.files, &rule_parse_opts())
            .context("loading rule files")?;
        let tls = match (&config.web.tls_cert_file, &config.web.tls_key_file) {
            (Some(cert), Some(key)) => Some(crate::web::tls::server_config(
                &config.resolve(cert),
                &config.resolve(key),
            )?),
            _ => None,
        };
        Ok(Prepared {
            loaded: Loaded {
                config,
                receivers,
                checks,
                rollouts,
                tls,
            },
            jobs,
            rules,
            warnings,
        })
    }

    /// What `wasmon check config` runs on a file: load it, load the plugins
    /// of its plugins dir when that dir exists (without creating it or the
    /// compile cache), and prepare.
    pub async fn check_file(path: &std::path::Path) -> Result<Prepared> {
        let config = Config::load_files(&[path.to_path_buf()])?;
        if plugin_uses(&config).is_empty() {
            return Prepared::new(config, None);
        }
        let dir = config.resolve(&config.plugins.dir);
        if !dir.is_dir() {
            let mut p = Prepared::new(config, None)?;
            p.warnings.push(format!(
                "plugins directory {} does not exist: plugin instances not checked against plugins",
                dir.display()
            ));
            return Ok(p);
        }
        let cache = (!config.plugins.cache_dir.as_os_str().is_empty())
            .then(|| config.resolve(&config.plugins.cache_dir))
            .filter(|c| c.is_dir());
        let plugins = PluginRuntime::new(&config.plugins, dir, cache, Arc::new(Metrics::new()))?;
        plugins.load_all().await;
        let mut p = Prepared::new(config, Some(&plugins))?;
        for s in plugins.list() {
            if let Some(e) = s.error {
                p.warnings
                    .push(format!("plugin {:?} does not load: {e}", s.name));
            }
        }
        Ok(p)
    }

    /// How many rules the rule files hold.
    pub fn rule_count(&self) -> usize {
        self.rules
            .iter()
            .flat_map(|(_, rg)| &rg.groups)
            .map(|g| g.rules.len())
            .sum()
    }
}

/// Rule file parsing as the agent does it (shared by the check in
/// [`Prepared::new`] and the rule manager, so they cannot differ).
fn rule_parse_opts() -> crate::rules::rulefmt::ParseOpts {
    crate::rules::rulefmt::ParseOpts::default()
}

/// Every plugin instance of the config: what uses it (for messages), the
/// instance, and the world its use needs.
fn plugin_uses(config: &Config) -> Vec<(String, crate::config::InstanceConfig, PluginKind)> {
    use crate::config::checks::CheckKind;
    let mut uses = Vec::new();
    for r in config.receivers.iter().filter(|r| !r.plugin.is_empty()) {
        let what = format!("receiver {:?}", r.name());
        uses.push((what, r.clone(), PluginKind::Receiver));
    }
    for c in &config.checks {
        let Some(inst) = c.instance() else { continue };
        let kind = match c.kind {
            CheckKind::Metric => PluginKind::MetricCheck,
            _ => PluginKind::HealthCheck,
        };
        uses.push((format!("check {:?}", c.name()), inst, kind));
    }
    for r in &config.rollouts {
        for m in &r.metric_checks {
            let what = format!("rollout {:?}: metric check {:?}", r.name(), m.name());
            uses.push((what, m.clone(), PluginKind::MetricCheck));
        }
        if let Some(rb) = &r.rollback {
            let what = format!("rollout {:?}: rollback", r.name());
            uses.push((what, rb.clone(), PluginKind::RollbackAction));
        }
    }
    uses
}

/// Every plugin instance of the config against the loaded plugins. A plugin
/// of another world than its use is an error (every call would fail); one
/// that is not loaded is a warning, as it may still be dropped into the
/// plugins directory (hot reload).
fn check_plugin_uses(config: &Config, plugins: &PluginRuntime) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    for (what, inst, want) in plugin_uses(config) {
        let here = config.at(inst.name.span());
        match plugins.get(&inst.plugin) {
            Some(p) if p.kind != want => anyhow::bail!(
                "{here}: {what}: plugin {:?} is a {} plugin, not a {}",
                inst.plugin,
                p.kind,
                want
            ),
            Some(_) => {}
            None => warnings.push(format!(
                "{here}: {what}: plugin {:?} is not loaded from {} (calls fail until it is there)",
                inst.plugin,
                plugins.dir().display()
            )),
        }
    }
    Ok(warnings)
}

pub struct Agent {
    current: ArcSwap<Loaded>,
    /// The files the config is read from again on reload (none: the
    /// built-in default).
    config_paths: Vec<PathBuf>,
    pub plugins: Arc<PluginRuntime>,
    pub metrics: Arc<Metrics>,
    pub db: Arc<tsdb::Db>,
    pub scrape: Arc<ScrapeManager>,
    pub checks: Arc<crate::checks::CheckManager>,
    pub rollouts: Arc<crate::rollout::RolloutManager>,
    pub remote: Arc<crate::remote::RemoteWrite>,
    ready: AtomicBool,
    /// Serializes reloads (SIGHUP and the API may race).
    reload_lock: tokio::sync::Mutex<()>,
    maintenance: std::sync::Mutex<Option<tsdb::Maintenance>>,
    /// Alerts, silences and the notification log: they outlive reloads.
    pub alert_state: Shared,
    /// Acks and incident timelines (the dispatcher's on-call layer).
    pub incidents: Arc<crate::incident::Incidents>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    notifier: Arc<PluginNotifier>,
    /// The dispatcher of the current config (None without a route); shared
    /// with the rule engine's alert sink.
    dispatcher: Arc<ArcSwap<Option<Dispatcher>>>,
    pub rules: crate::rules::manager::RuleManager,
    dispatch_task: std::sync::Mutex<
        Option<(
            tokio::sync::oneshot::Sender<()>,
            tokio::task::JoinHandle<()>,
        )>,
    >,
    _watch: Option<watch::WatchHandle>,
    /// The API's heavy work (listings, PromQL): bounded, deadlined, and
    /// stopped at shutdown.
    pub work: crate::web::work::WorkPool,
    /// The running config's PromQL engine (API, rules, checks, rollouts).
    engine: crate::promql::SharedEngine,
    /// Where rules and rollouts send alerts (its forwarding targets follow
    /// the config's alertmanagers).
    sink: Arc<AlertSinkToDispatcher>,
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
        let config_paths = config.sources.clone();
        let Prepared {
            loaded,
            jobs,
            rules: rule_files,
            warnings,
        } = Prepared::new(config, Some(&plugins))?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let storage = &loaded.config.storage;
        let data_dir = loaded.config.resolve(&storage.path);
        let db = tsdb::Db::open(&data_dir, storage.tsdb_options())
            .with_context(|| format!("opening the store in {}", data_dir.display()))?;
        let maintenance = db.spawn_maintenance();
        let db = Arc::new(db);
        // One engine per loaded config, shared by the API, rules, metric
        // checks and rollouts; a reload installs the next one.
        let engine = crate::promql::SharedEngine::new(engine_for(&loaded.config));
        let queries = Arc::new(PromqlQueries {
            store: db.clone(),
            engine: engine.clone(),
        });
        plugins.set_query_api(queries.clone());
        let remote = Arc::new(crate::remote::RemoteWrite::new(&data_dir, metrics.clone()));
        remote
            .apply(&loaded.config)
            .await
            .context("starting remote write")?;
        let scrape = Arc::new(ScrapeManager::new(db.clone())?);
        scrape.apply(jobs, loaded.base_dir()).await;
        let checks = crate::checks::CheckManager::new(db.clone(), plugins.clone());
        checks.apply(loaded.checks.clone());
        let notifier = Arc::new(PluginNotifier {
            plugins: plugins.clone(),
            receivers: ArcSwap::from_pointee(loaded.receivers.clone()),
            groups: ArcSwap::from_pointee(ReceiverGroups::of(&loaded.config)),
        });
        let retention = crate::alerting::silence::DEFAULT_RETENTION;
        let incidents =
            crate::incident::Incidents::open(&data_dir).context("opening acks and incidents")?;
        let alert_state = Shared {
            alerts: Arc::new(crate::alerting::types::AlertStore::new()),
            silences: Arc::new(
                crate::alerting::silence::Silences::open(data_dir.join("silences.json"), retention)
                    .context("opening the silences")?,
            ),
            nflog: Arc::new(
                crate::alerting::nflog::NotificationLog::open(
                    data_dir.join("nflog.json"),
                    retention,
                )
                .context("opening the notification log")?,
            ),
            notifier: notifier.clone(),
            clock: Arc::new(crate::clock::SystemClock),
            oncall: incidents.clone(),
        };
        let dispatcher: Arc<ArcSwap<Option<Dispatcher>>> = Arc::new(ArcSwap::from_pointee(None));
        let sink = Arc::new(AlertSinkToDispatcher {
            dispatcher: dispatcher.clone(),
            forwarder: arc_swap::ArcSwapOption::from(forwarder_for(&loaded.config).map(Arc::new)),
        });
        let rollouts = crate::rollout::RolloutManager::new(
            plugins.clone(),
            queries,
            sink.clone(),
            data_dir.join("rollouts.json"),
        );
        rollouts.set_incidents(incidents.clone());
        let mut rule_opts =
            crate::rules::group::RuleOpts::new(db.clone(), db.clone(), sink.clone());
        rule_opts.engine = engine.clone();
        rule_opts.incidents = Some(incidents.clone());
        let globals = rule_globals(&loaded.config);
        rule_opts.external_labels = globals.external_labels;
        rule_opts.external_url = globals.external_url;
        let mut mopts = crate::rules::manager::ManagerOpts::new(rule_opts);
        mopts.default_interval_ms = globals.default_interval_ms;
        mopts.parse_opts = rule_parse_opts();
        let rules = crate::rules::manager::RuleManager::new(mopts);
        rules
            .update_parsed(rule_files)
            .context("loading rule files")?;
        metrics.config_last_reload_successful.set(1);
        metrics.config_last_reload_success_timestamp.set(unix_now());
        let agent = Arc::new(Agent {
            current: ArcSwap::from_pointee(loaded),
            config_paths,
            plugins,
            metrics,
            db,
            scrape,
            checks,
            rollouts,
            remote,
            ready: AtomicBool::new(true),
            reload_lock: tokio::sync::Mutex::new(()),
            maintenance: std::sync::Mutex::new(Some(maintenance)),
            alert_state,
            incidents,
            started_at: chrono::Utc::now(),
            notifier,
            dispatcher,
            rules,
            dispatch_task: std::sync::Mutex::new(None),
            _watch: watch,
            work: crate::web::work::WorkPool::default(),
            engine,
            sink,
        });
        agent.start_dispatcher(&agent.current())?;
        let current = agent.current();
        agent.rollouts.apply(
            current.rollouts.clone(),
            &current.config.global.external_url,
        );
        Ok(agent)
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
        if self.config_paths.is_empty() {
            anyhow::bail!("running on the built-in default config: there is no file to reload");
        }
        let old = self.current();
        let config =
            Config::load_files(&self.config_paths)?.with_overrides(old.config.overrides.clone());
        if config.web.listen_address != old.config.web.listen_address
            || config.plugins.dir != old.config.plugins.dir
            || config.plugins.allocator != old.config.plugins.allocator
        {
            tracing::warn!("web.listen_address, plugins.dir and plugins.allocator changes take effect on restart");
        }
        if config.storage.path != old.config.storage.path
            || config.storage.block_duration != old.config.storage.block_duration
            || config.storage.max_block_duration != old.config.storage.max_block_duration
            || config.storage.compaction_interval != old.config.storage.compaction_interval
            || config.storage.max_future != old.config.storage.max_future
        {
            tracing::warn!(
                "storage.path, storage.block_duration, storage.max_block_duration, storage.compaction_interval and storage.max_future changes take effect on restart"
            );
        }
        let Prepared {
            loaded,
            jobs,
            rules,
            warnings,
        } = Prepared::new(config, Some(&self.plugins))?;
        for w in &warnings {
            tracing::warn!("{w}");
        }
        let base = loaded.base_dir();
        let loaded = Arc::new(loaded);
        // Rule groups first: if they fail, the reload fails before anything
        // changed. Groups read the engine at each evaluation.
        self.rules
            .update_parsed_with(rules, Some(rule_globals(&loaded.config)))
            .context("loading rule files")?;
        self.engine.set(engine_for(&loaded.config));
        self.start_dispatcher(&loaded)?;
        if loaded.config.alertmanagers != old.config.alertmanagers {
            // The old forwarder sends what it holds and stops.
            self.sink
                .forwarder
                .store(forwarder_for(&loaded.config).map(Arc::new));
        }
        self.current.store(loaded);
        self.scrape.apply(jobs, base).await;
        self.checks.apply(self.current().checks.clone());
        if let Err(e) = self.remote.apply(&self.current().config).await {
            tracing::error!(error = %format!("{e:#}"), "starting remote write queues");
        }
        let current = self.current();
        self.rollouts.apply(
            current.rollouts.clone(),
            &current.config.global.external_url,
        );
        Ok(())
    }

    /// Serves the HTTP API until `shutdown` resolves. Returns the bound address
    /// through `bound` as soon as the listener is up.
    pub async fn serve(
        self: Arc<Self>,
        bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let current = self.current();
        let addr = current.config.web.listen_address.clone();
        // Read when the config was prepared: bad certificate files failed
        // the start before the port is taken.
        let tls = current.tls.clone();
        drop(current);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("listening on web.listen_address {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(address = %local, tls = tls.is_some(), "HTTP API listening");
        if let Some(tx) = bound {
            let _ = tx.send(local);
        }
        let router = crate::web::router(self.api());
        // On the signal, heavy API work stops first (its requests answer 503
        // at once), so the drain below is not held up by a big listing.
        let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
        let agent = self.clone();
        let shutdown = async move {
            shutdown.await;
            agent.work.shut_down();
            let _ = drain_tx.send(());
        };
        match tls {
            Some(tls) => crate::web::tls::serve(listener, router, tls, shutdown).await?,
            None => {
                let server = axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .into_future();
                tokio::pin!(server);
                tokio::select! {
                    r = &mut server => r.context("HTTP server")?,
                    _ = drain_rx => {
                        // Connections still busy after the drain bound (a
                        // slow plugin call, a client reading slowly) must
                        // not keep the agent from stopping.
                        match tokio::time::timeout(crate::web::tls::DRAIN_TIMEOUT, &mut server).await {
                            Ok(r) => r.context("HTTP server")?,
                            Err(_) => tracing::warn!(
                                "HTTP connections still open after {:?}; closing them",
                                crate::web::tls::DRAIN_TIMEOUT
                            ),
                        }
                    }
                }
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// The handles the HTTP API serves from.
    pub fn api(self: &Arc<Self>) -> crate::web::Api {
        crate::web::Api {
            lifecycle: self.clone(),
            store: self.db.clone(),
            engine: self.engine.clone(),
            targets: self.scrape.clone(),
            rules: self.rules.clone(),
            alerts: crate::web::alertmanager::Alerts {
                dispatcher: self.dispatcher.clone(),
                state: self.alert_state.clone(),
                incidents: self.incidents.clone(),
                started_at: self.started_at,
            },
            receivers: self.notifier.clone(),
            plugins: self.plugins.clone(),
            checks: self.checks.clone(),
            rollouts: self.rollouts.clone(),
            incidents: crate::web::incidents::IncidentApi {
                incidents: self.incidents.clone(),
                dispatcher: self.dispatcher.clone(),
                clock: self.alert_state.clock.clone(),
                work: self.work.clone(),
            },
            metrics: self.metrics.clone(),
            work: self.work.clone(),
        }
    }

    /// The dispatcher of the running config, if it has a route.
    pub fn dispatcher(&self) -> Option<Dispatcher> {
        Option::clone(&self.dispatcher.load())
    }

    /// Builds the dispatcher for `loaded` (sharing alerts, silences and the
    /// notification log with the previous one) and swaps it in.
    fn start_dispatcher(&self, loaded: &Loaded) -> Result<()> {
        let config = &loaded.config;
        let next = match &config.route {
            None => None,
            Some(_) => {
                // A receiver of several instances hears of resolved alerts
                // when one of them wants to: the notifier leaves them out
                // for the others.
                let settings: std::collections::HashMap<String, ReceiverSettings> = config
                    .receiver_groups()
                    .into_iter()
                    .map(|(name, members)| {
                        let send_resolved = members.is_empty()
                            || members.iter().any(|r| r.send_resolved.unwrap_or(true));
                        (
                            name,
                            ReceiverSettings {
                                send_resolved,
                                max_alerts: 0,
                            },
                        )
                    })
                    .collect();
                let d = Dispatcher::new(
                    &config.alerting(),
                    settings,
                    config.global.external_url.clone(),
                    self.alert_state.clone(),
                )
                .map_err(|e| anyhow::anyhow!("route: {e}"))?;
                // Escalation in progress goes on where it stood.
                if let Some(previous) = self.dispatcher() {
                    d.take_over(&previous);
                }
                Some(d)
            }
        };
        self.notifier
            .receivers
            .store(Arc::new(loaded.receivers.clone()));
        self.notifier
            .groups
            .store(Arc::new(ReceiverGroups::of(&loaded.config)));
        let mut task = self.dispatch_task.lock().unwrap();
        if let Some((stop, _)) = task.take() {
            let _ = stop.send(());
        }
        if let Some(d) = &next {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let d2 = d.clone();
            let h = tokio::spawn(async move {
                d2.run(async {
                    let _ = rx.await;
                })
                .await
            });
            *task = Some((tx, h));
        }
        self.dispatcher.store(Arc::new(next));
        Ok(())
    }

    /// Stops scraping (writing staleness markers) and flushes the store.
    pub async fn shutdown(&self) {
        self.ready.store(false, Ordering::Relaxed);
        let task = self.dispatch_task.lock().unwrap().take();
        if let Some((stop, h)) = task {
            let _ = stop.send(());
            let _ = h.await;
        }
        self.rules.stop();
        self.checks.stop();
        self.rollouts.stop();
        self.scrape.stop().await;
        let maintenance = self.maintenance.lock().unwrap().take();
        if let Some(m) = maintenance {
            // Waits for a compaction in progress to reach its next step:
            // off the async workers.
            let _ = tokio::task::spawn_blocking(move || m.stop()).await;
        }
        self.incidents.persist();
        if let Err(e) = self.db.sync_wal() {
            tracing::error!(error = %format!("{e:#}"), "flushing the WAL on shutdown");
        }
        self.remote.stop().await;
    }
}

impl crate::web::Lifecycle for Agent {
    fn config(&self) -> crate::web::RunningConfig {
        crate::web::RunningConfig::new(self.current())
    }

    fn is_ready(&self) -> bool {
        Agent::is_ready(self)
    }

    fn reload(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(self.reload_config())
    }
}

fn engine_for(config: &Config) -> Engine {
    let q = &config.query;
    Engine::new(crate::promql::engine::EngineOpts {
        lookback_delta_ms: q.lookback_delta.as_millis() as i64,
        max_samples: q.max_samples,
        timeout: q.timeout,
        default_subquery_step_ms: config.global.evaluation_interval.as_millis() as i64,
        ..Default::default()
    })
}

/// What the rule manager takes from the config (a reload applies it).
fn rule_globals(config: &Config) -> crate::rules::manager::Globals {
    crate::rules::manager::Globals {
        default_interval_ms: config.global.evaluation_interval.as_millis() as i64,
        external_labels: crate::model::Labels::from_pairs(config.global.external_labels.clone()),
        external_url: config.global.external_url.clone(),
    }
}

/// The sender to the config's external Alertmanagers (None without any).
fn forwarder_for(config: &Config) -> Option<crate::alerting::forward::Forwarder> {
    let ams = &config.alertmanagers;
    (!ams.is_empty()).then(|| {
        let urls = ams.iter().map(|a| a.url.clone()).collect();
        let timeout = ams.iter().map(|a| a.timeout).max().unwrap_or_default();
        crate::alerting::forward::Forwarder::start(urls, timeout)
    })
}

/// Where the rule engine's alerts go: the local dispatcher (when the config
/// has a route) and external Alertmanagers (when configured).
struct AlertSinkToDispatcher {
    dispatcher: Arc<ArcSwap<Option<Dispatcher>>>,
    forwarder: arc_swap::ArcSwapOption<crate::alerting::forward::Forwarder>,
}

impl crate::alerting::sink::AlertSink for AlertSinkToDispatcher {
    fn send(&self, alerts: Vec<crate::alerting::sink::OutgoingAlert>) {
        if let Some(f) = &*self.forwarder.load() {
            f.send(
                alerts
                    .iter()
                    .map(|a| crate::alerting::types::PostableAlert {
                        labels: a
                            .labels
                            .iter()
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .collect(),
                        annotations: a.annotations.clone(),
                        starts_at: Some(a.starts_at),
                        ends_at: Some(a.ends_at),
                        generator_url: a.generator_url.clone(),
                    })
                    .collect(),
            );
        }
        if let Some(d) = &**self.dispatcher.load() {
            let now = chrono::Utc::now();
            d.insert_alerts(
                alerts
                    .into_iter()
                    .map(|a| crate::alerting::types::Alert {
                        labels: a.labels,
                        annotations: a.annotations,
                        starts_at: a.starts_at,
                        ends_at: a.ends_at,
                        generator_url: a.generator_url,
                        updated_at: now,
                        timeout: false,
                    })
                    .collect(),
            );
        }
    }
}

/// Seconds since the epoch, as Prometheus' `*_timestamp_seconds` gauges.
fn unix_now() -> i64 {
    crate::clock::now_ms().div_euclid(1000)
}

/// Config errors that only `Prepared::new` finds (plugin instance configs,
/// rollout settings): what `wasmon check config` reports.
#[cfg(test)]
mod tests {
    use super::*;

    /// The error `wasmon check config` reports: the config's own, else the
    /// one of the module that owns the section (checks, rollouts,
    /// remote_write validate where they are built, in `Prepared::new`).
    fn check_config_err(text: &str, origin: &str) -> anyhow::Error {
        match Config::parse(text, origin) {
            Err(e) => e,
            Ok(c) => Prepared::new(c, None)
                .err()
                .expect("the config is accepted"),
        }
    }

    /// Every field that can hold a credential takes `${VAR}` from the
    /// environment, and a reference that cannot be expanded fails the load
    /// naming the file, the line and the variable (never the value).
    #[test]
    fn env_references_expand_in_every_credential_field() {
        type Get = fn(&Config) -> String;
        let cases: [(&str, &str, Get); 14] = [
            ("web bearer_tokens", "[web]\nbearer_tokens = [\"ok-token\", \"{V}\"]\n", |c| {
                c.web.bearer_tokens[1].expose().into()
            }),
            ("web basic_auth_users", "[web]\n\n[web.basic_auth_users]\nadmin = \"{V}\"\n", |c| {
                c.web.basic_auth_users["admin"].expose().into()
            }),
            ("scrape basic_auth.password", "[[scrape_configs]]\njob_name = \"a\"\nbasic_auth = { username = \"u\", password = \"{V}\" }\n", |c| {
                c.scrape_configs[0].basic_auth.as_ref().unwrap().password.expose().into()
            }),
            ("scrape basic_auth.username", "[[scrape_configs]]\njob_name = \"a\"\n[scrape_configs.basic_auth]\nusername = \"{V}\"\n", |c| {
                c.scrape_configs[0].basic_auth.as_ref().unwrap().username.clone()
            }),
            ("scrape bearer_token", "[[scrape_configs]]\njob_name = \"a\"\nbearer_token = \"{V}\"\n", |c| {
                c.scrape_configs[0].bearer_token.as_ref().unwrap().expose().into()
            }),
            ("remote_write bearer_token", "[[remote_write]]\nurl = \"http://a/\"\nbearer_token = \"{V}\"\n", |c| {
                c.remote_write[0].bearer_token.as_ref().unwrap().expose().into()
            }),
            ("remote_write basic_auth", "[[remote_write]]\nurl = \"http://a/\"\nbasic_auth = { username = \"u\", password = \"{V}\" }\n", |c| {
                c.remote_write[0].basic_auth.as_ref().unwrap().password.expose().into()
            }),
            ("remote_write headers", "[[remote_write]]\nurl = \"http://a/\"\nheaders = { X-Api-Key = \"{V}\" }\n", |c| {
                c.remote_write[0].headers["X-Api-Key"].expose().into()
            }),
            ("check headers", "[[checks]]\nname = \"c\"\nkind = \"http\"\nurl = \"http://a/\"\n[checks.headers]\nX-Api-Key = \"{V}\"\n", |c| {
                c.checks[0].headers["X-Api-Key"].expose().into()
            }),
            ("receiver config", "[[receivers]]\nname = \"r\"\nplugin = \"webhook\"\nconfig = { url = \"http://a/\", headers = { Authorization = \"{V}\" } }\n", |c| {
                json_at(&c.receivers[0].config_json(&c.plugins).unwrap(), "/headers/Authorization")
            }),
            ("receiver config table", "[[receivers]]\nname = \"r\"\nplugin = \"webhook\"\n[receivers.config]\nurl = \"http://a/\"\ntoken = \"{V}\"\n", |c| {
                json_at(&c.receivers[0].config_json(&c.plugins).unwrap(), "/token")
            }),
            ("check plugin config", "[[checks]]\nname = \"c\"\nkind = \"plugin\"\nplugin = \"probe\"\nconfig = { token = \"{V}\" }\n", |c| {
                json_at(&c.checks[0].instance().unwrap().config_json(&c.plugins).unwrap(), "/token")
            }),
            ("rollout metric check config", "[[rollouts]]\nname = \"r\"\n[[rollouts.metric_checks]]\nname = \"m\"\nplugin = \"metric-threshold\"\nconfig = { token = \"{V}\" }\n", |c| {
                json_at(&c.rollouts[0].metric_checks[0].config_json(&c.plugins).unwrap(), "/token")
            }),
            ("rollout rollback config", "[[rollouts]]\nname = \"r\"\n[rollouts.rollback]\nname = \"undo\"\nplugin = \"http-action\"\nconfig = { token = \"{V}\" }\n", |c| {
                json_at(&c.rollouts[0].rollback.as_ref().unwrap().config_json(&c.plugins).unwrap(), "/token")
            }),
        ];
        fn json_at(text: &str, ptr: &str) -> String {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            v.pointer(ptr).unwrap().as_str().unwrap().to_string()
        }
        for (i, (what, template, get)) in cases.iter().enumerate() {
            let var = format!("WASMON_T17_ENV_{i}");
            // A bcrypt hash must be one, so it comes whole from the variable.
            let (prefix, value) = if what.contains("basic_auth_users") {
                ("", bcrypt::hash("pw", 4).unwrap())
            } else {
                ("pre-", "s3cret-value".to_string())
            };
            let text = template.replace("{V}", &format!("{prefix}${{{var}}}"));
            let lines: Vec<&str> = text.lines().collect();
            let mut line = lines.iter().position(|l| l.contains(&var)).unwrap() + 1;
            if what.contains(" config") {
                // Plugin configs are free-form tables without spans: the
                // error cites the instance's name line and the key path.
                line = lines[..line]
                    .iter()
                    .rposition(|l| l.starts_with("name = "))
                    .unwrap()
                    + 1;
                let msg = format!("{:#}", check_config_err(&text, "e.toml"));
                assert!(msg.contains(": config."), "{what}: no key path in: {msg}");
            }
            std::env::remove_var(&var);
            let msg = format!("{:#}", check_config_err(&text, "e.toml"));
            assert!(
                msg.contains(&format!("e.toml:{line}"))
                    || msg.contains(&format!("e.toml: TOML parse error at line {line},")),
                "{what}: no file:line {line} in: {msg}"
            );
            assert!(msg.contains(&var), "{what}: variable not named: {msg}");
            assert!(!msg.contains("ok-token"), "{what}: {msg}");
            std::env::set_var(&var, &value);
            let c = Config::parse(&text, "e.toml").unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(get(&c), format!("{prefix}{value}"), "{what}");
            // `$${` is the literal spelling.
            if prefix.is_empty() {
                continue;
            }
            let literal = template.replace("{V}", &format!("$${{{var}}}"));
            let c = Config::parse(&literal, "e.toml").unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(get(&c), format!("${{{var}}}"), "{what}");
        }
    }

    /// The rollout's `version_label` is a label name, checked where the
    /// rollout is built, at its line.
    #[test]
    fn rollout_version_label_is_checked_at_its_line() {
        let msg = format!(
            "{:#}",
            check_config_err(
                "[[rollouts]]\nname = \"r\"\nversion_label = \"0v\"\n",
                "l.toml"
            )
        );
        assert!(
            msg.contains("l.toml:2") && msg.contains("version_label"),
            "{msg}"
        );
    }
}
