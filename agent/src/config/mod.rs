//! The agent's configuration: one TOML file whose keys mirror Prometheus and
//! Alertmanager names so their users feel at home.
//!
//! Loading is two steps: [`Config::parse`] turns text into typed values (serde
//! reports syntax and type errors with line and column), then
//! [`Config::validate`] checks what serde cannot (unique names, allow-list
//! syntax, `${ENV}` references). Both errors name the file and the line, and a
//! failed reload never replaces a running config.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::model::relabel::Relabeler;

pub mod checks;
pub mod discovery;
pub mod env;
pub mod hosts;
pub mod http_client;
pub mod import;
pub mod remote;
pub mod rollout;
pub mod scrape;
pub mod secret;
pub mod web;
use hosts::HostPattern;
pub use scrape::ScrapeConfig;
pub use secret::Secret;
pub use web::WebConfig;

/// The built-in default configuration (`wasmon run` without `--config`).
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub web: WebConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub query: QueryConfig,
    /// Scrape jobs, as Prometheus' `scrape_configs`.
    #[serde(default)]
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Alert receivers: each one is an instance of a receiver plugin.
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    /// Prometheus rule files (globs, relative to this file), loaded unchanged.
    #[serde(default)]
    pub rule_files: Vec<String>,
    /// Alertmanager notification template files (globs, relative to this
    /// file): their `define`s are available to every receiver's templates.
    #[serde(default)]
    pub templates: Vec<String>,
    /// External Alertmanagers every alert is also sent to.
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerTarget>,
    /// Alertmanager's route tree. Without one, alerting is off.
    #[serde(default)]
    pub route: Option<crate::alerting::config::RouteConfig>,
    #[serde(default)]
    pub inhibit_rules: Vec<crate::alerting::config::InhibitRuleConfig>,
    #[serde(default)]
    pub time_intervals: Vec<crate::alerting::config::TimeIntervalConfig>,
    /// Older spelling of `time_intervals`, as in Alertmanager.
    #[serde(default)]
    pub mute_time_intervals: Vec<crate::alerting::config::TimeIntervalConfig>,
    /// Health checks: results are stored as `wasmon_check_*` series.
    #[serde(default)]
    pub checks: Vec<checks::CheckConfig>,
    /// Canary analyses with automated rollback.
    #[serde(default)]
    pub rollouts: Vec<rollout::RolloutConfig>,
    /// Prometheus remote-write receivers the WAL is streamed to.
    #[serde(default)]
    pub remote_write: Vec<remote::RemoteWriteConfig>,

    /// The file this config came from (None for the built-in default); relative
    /// paths in the config are resolved against its directory.
    #[serde(skip)]
    pub source: Option<PathBuf>,

    /// Every file this config was read from (one TOML file, or the
    /// prometheus.yml and/or alertmanager.yml it was imported from): what
    /// a reload reads again.
    #[serde(skip)]
    pub sources: Vec<PathBuf>,

    /// Command-line settings that win over the file's, kept across reloads.
    #[serde(skip)]
    pub overrides: Overrides,

    /// Turns spans back into `file:line` for checks made after parsing
    /// (plugin instances against the loaded plugins).
    #[serde(skip)]
    locator: Locator,
}

/// Settings given on `wasmon run`'s command line, which win over the
/// config file's (a prometheus.yml has no place for them): Prometheus'
/// `--web.listen-address` and `--storage.tsdb.path`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub listen_address: Option<String>,
    pub storage_path: Option<PathBuf>,
}

/// Where the config text came from and where its lines start.
#[derive(Clone, Default)]
struct Locator {
    origin: String,
    line_starts: Vec<usize>,
}

impl Locator {
    fn new(text: &str, origin: &str) -> Locator {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Locator {
            origin: origin.to_string(),
            line_starts,
        }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= offset).max(1)
    }

    fn at(&self, span: std::ops::Range<usize>) -> String {
        format!("{}:{}", self.origin, self.line(span.start))
    }
}

impl std::fmt::Debug for Locator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({} lines)", self.origin, self.line_starts.len())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfig {
    /// The URL under which the agent is reachable (Alertmanager's `--web.external-url`).
    #[serde(default = "default_external_url")]
    pub external_url: String,
    /// Labels added to alerts and remote-written series (Prometheus' `external_labels`).
    #[serde(default, deserialize_with = "deserialize_label_map")]
    pub external_labels: BTreeMap<String, String>,
    /// Default scrape interval of jobs (Prometheus' default: 1m).
    #[serde(default = "default_scrape_interval", with = "humantime_serde")]
    pub scrape_interval: Duration,
    /// Default scrape timeout of jobs (Prometheus' default: 10s).
    #[serde(default = "default_scrape_timeout", with = "humantime_serde")]
    pub scrape_timeout: Duration,
    /// Default rule group evaluation interval (Prometheus' default: 1m).
    #[serde(default = "default_scrape_interval", with = "humantime_serde")]
    pub evaluation_interval: Duration,
    /// End time given to alerts posted without one (Alertmanager's default: 5m).
    #[serde(default = "default_resolve_timeout")]
    pub resolve_timeout: crate::model::Duration,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        Self {
            external_url: default_external_url(),
            external_labels: BTreeMap::new(),
            scrape_interval: default_scrape_interval(),
            scrape_timeout: default_scrape_timeout(),
            resolve_timeout: default_resolve_timeout(),
            evaluation_interval: default_scrape_interval(),
        }
    }
}

/// An external Alertmanager (Prometheus' `alerting.alertmanagers`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerTarget {
    /// Base URL, e.g. `http://alertmanager:9093`.
    pub url: String,
    #[serde(default = "default_scrape_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// A map of label names to values from the config (external labels, target
/// labels), with each name checked as it is read so that an invalid one is
/// reported at its own line.
pub(crate) fn deserialize_label_map<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<BTreeMap<String, String>, D::Error> {
    struct Name(String);
    impl<'de> Deserialize<'de> for Name {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Name, D::Error> {
            let n = String::deserialize(d)?;
            if !crate::model::is_legacy_label_name(&n) {
                return Err(serde::de::Error::custom(format!(
                    "{n:?} is not a valid label name (letters, digits and _, not starting with a digit)"
                )));
            }
            Ok(Name(n))
        }
    }
    impl PartialEq for Name {
        fn eq(&self, o: &Name) -> bool {
            self.0 == o.0
        }
    }
    impl Eq for Name {}
    impl PartialOrd for Name {
        fn partial_cmp(&self, o: &Name) -> Option<std::cmp::Ordering> {
            Some(self.cmp(o))
        }
    }
    impl Ord for Name {
        fn cmp(&self, o: &Name) -> std::cmp::Ordering {
            self.0.cmp(&o.0)
        }
    }
    let m = BTreeMap::<Name, String>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, v)| (k.0, v)).collect())
}

fn default_resolve_timeout() -> crate::model::Duration {
    crate::model::Duration(Duration::from_secs(300))
}

fn default_scrape_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_scrape_timeout() -> Duration {
    Duration::from_secs(10)
}

/// PromQL engine limits (Prometheus' `--query.*` flags).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Wall-clock budget of one query.
    #[serde(default = "default_query_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Most samples one query may load into memory.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// How far back an instant selector looks for a sample.
    #[serde(default = "default_lookback", with = "humantime_serde")]
    pub lookback_delta: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            timeout: default_query_timeout(),
            max_samples: default_max_samples(),
            lookback_delta: default_lookback(),
        }
    }
}

fn default_query_timeout() -> Duration {
    Duration::from_secs(120)
}
fn default_max_samples() -> usize {
    50_000_000
}
fn default_lookback() -> Duration {
    Duration::from_secs(300)
}

/// The embedded time-series store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Data directory (WAL and blocks).
    #[serde(default = "default_storage_path")]
    pub path: PathBuf,
    /// Blocks older than this are deleted (Prometheus' default: 15d).
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention_time: Duration,
    /// Oldest blocks are deleted while the store is larger than this; 0 = no limit.
    #[serde(default)]
    pub retention_size: ByteSize,
    /// How often the WAL is fsynced: a crash loses at most this much.
    #[serde(default = "default_wal_sync", with = "humantime_serde")]
    pub wal_sync_interval: Duration,
    /// Time range of one block (default 2h), which is also how long the
    /// head keeps a series' chunks before compaction. A testing and
    /// benchmark knob, like Prometheus' hidden
    /// `--storage.tsdb.min-block-duration`: short blocks let a bench see
    /// compacted blocks within minutes. Spanned so validation can cite
    /// its line.
    #[serde(default = "default_block_duration", with = "spanned_duration")]
    pub block_duration: Spanned<Duration>,
    /// How often the maintenance thread looks for due compactions, level
    /// merges and retention (default 1m, as Prometheus). A testing knob,
    /// like `block_duration`: with short blocks, a test sees each
    /// compaction within seconds instead of waiting for the next minute.
    /// Nothing is gained in production by checking more often.
    #[serde(default = "default_compaction_interval", with = "spanned_duration")]
    pub compaction_interval: Spanned<Duration>,
    /// Longest block that level compaction merges adjacent blocks into
    /// (3×, 9×, ... `block_duration`). Default: 10% of `retention_time`,
    /// at most 31 days, as Prometheus. Like Prometheus' hidden
    /// `--storage.tsdb.max-block-duration`; equal to `block_duration`, blocks
    /// are never merged.
    #[serde(
        default,
        deserialize_with = "spanned_duration::deserialize_some",
        serialize_with = "spanned_duration::serialize_some",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_block_duration: Option<Spanned<Duration>>,
    /// Samples further ahead of the agent's clock than this are refused
    /// as too far in the future (capped at a quarter of `block_duration`);
    /// see [`crate::tsdb::Options::max_future`].
    #[serde(default = "default_max_future", with = "humantime_serde")]
    pub max_future: Duration,
}

impl StorageConfig {
    /// The store's options for this section (what `Agent::start` opens
    /// the store with).
    pub fn tsdb_options(&self) -> crate::tsdb::Options {
        crate::tsdb::Options {
            retention_time: self.retention_time,
            retention_size: (self.retention_size.as_u64() > 0)
                .then(|| self.retention_size.as_u64()),
            wal_sync_interval: self.wal_sync_interval,
            block_duration: *self.block_duration.get_ref(),
            max_block_duration: self.max_block_duration.as_ref().map(|d| *d.get_ref()),
            compaction_interval: *self.compaction_interval.get_ref(),
            max_future: self.max_future,
            ..crate::tsdb::Options::default()
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            path: default_storage_path(),
            retention_time: default_retention(),
            retention_size: ByteSize::b(0),
            wal_sync_interval: default_wal_sync(),
            block_duration: default_block_duration(),
            max_block_duration: None,
            compaction_interval: default_compaction_interval(),
            max_future: default_max_future(),
        }
    }
}

fn default_max_future() -> Duration {
    crate::tsdb::Options::default().max_future
}

fn default_storage_path() -> PathBuf {
    PathBuf::from("data")
}
fn default_retention() -> Duration {
    Duration::from_secs(15 * 24 * 3600)
}
fn default_wal_sync() -> Duration {
    Duration::from_secs(1)
}
fn default_block_duration() -> Spanned<Duration> {
    // No span: it is not in the file (validation then cites the file only,
    // and the default is valid anyway).
    Spanned::new(0..0, Duration::from_secs(2 * 3600))
}

fn default_compaction_interval() -> Spanned<Duration> {
    Spanned::new(0..0, crate::tsdb::Options::default().compaction_interval)
}

/// Shortest accepted `storage.block_duration`: a testing knob (tests need
/// a few compactions within seconds, with `compaction_interval`); shorter
/// blocks would only multiply files and index overhead, and a block
/// shorter than a few scrape intervals holds next to nothing.
pub const MIN_BLOCK_DURATION: Duration = Duration::from_secs(10);

/// Shortest accepted `storage.compaction_interval`: each run lists the
/// blocks and locks the head briefly; more often than this is busy work.
pub const MIN_COMPACTION_INTERVAL: Duration = Duration::from_secs(1);

/// humantime (de)serialization of a duration that keeps its span.
mod spanned_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};
    use toml::Spanned;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Spanned<Duration>, D::Error> {
        let s = Spanned::<String>::deserialize(d)?;
        let span = s.span();
        humantime::parse_duration(s.get_ref())
            .map(|v| Spanned::new(span, v))
            .map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(v: &Spanned<Duration>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*v.get_ref()))
    }

    /// For an optional field (`default` covers its absence).
    pub fn deserialize_some<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Spanned<Duration>>, D::Error> {
        deserialize(d).map(Some)
    }

    pub fn serialize_some<S: Serializer>(
        v: &Option<Spanned<Duration>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => serialize(v, s),
            None => s.serialize_none(),
        }
    }
}

fn default_external_url() -> String {
    "http://localhost:9930".to_string()
}

/// How instances get their memory: fresh mmap per call, or slots reserved up front.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    #[default]
    OnDemand,
    Pooling,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory watched for `*.wasm` components; the file stem is the plugin's name.
    #[serde(default = "default_plugins_dir")]
    pub dir: PathBuf,
    /// Where compiled components are cached (keyed by content hash and engine).
    /// Empty disables the cache.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// Watch `dir` and reload changed plugins without restart.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Default deadline of one plugin call (instantiation included).
    #[serde(default = "default_call_timeout", with = "humantime_serde")]
    pub call_timeout: Duration,
    /// Default cap on one instance's linear memory.
    #[serde(default = "default_memory_limit")]
    pub memory_limit: ByteSize,
    #[serde(default)]
    pub allocator: Allocator,
    /// With the pooling allocator: how many instances may be live at once.
    #[serde(default = "default_pool_instances")]
    pub pool_instances: u32,
    /// Larger files in `dir` are refused without being read (a component
    /// is read whole, hashed and compiled; the largest real ones, JS and
    /// Python runtimes, are under 20 MB).
    #[serde(default = "default_max_plugin_size")]
    pub max_plugin_size: ByteSize,
    /// The config file's directory, against which instances' relative
    /// paths (`http_config` files, `${file:PATH}`) resolve, as [`Config::resolve`] does;
    /// None: the working directory. Set by [`Config::load`].
    #[serde(skip)]
    pub config_dir: Option<PathBuf>,
}

impl PluginsConfig {
    /// An instance's file path, relative ones against the config's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match &self.config_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: default_plugins_dir(),
            cache_dir: default_cache_dir(),
            watch: true,
            call_timeout: default_call_timeout(),
            memory_limit: default_memory_limit(),
            allocator: Allocator::default(),
            pool_instances: default_pool_instances(),
            max_plugin_size: default_max_plugin_size(),
            config_dir: None,
        }
    }
}

fn default_plugins_dir() -> PathBuf {
    PathBuf::from("plugins")
}
fn default_cache_dir() -> PathBuf {
    PathBuf::from("data/plugin-cache")
}
fn default_true() -> bool {
    true
}
fn default_call_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_memory_limit() -> ByteSize {
    ByteSize::mib(64)
}
fn default_pool_instances() -> u32 {
    64
}
fn default_max_plugin_size() -> ByteSize {
    ByteSize::mib(64)
}

/// One alert receiver: a named instance of a receiver plugin.
pub type ReceiverConfig = InstanceConfig;

/// What every plugin instance has: a name, which plugin, its config and its
/// limits. (Not `#[serde(flatten)]`ed into kinds: flatten would lose the
/// spans that let errors cite a line.)
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceConfig {
    /// The instance's name, unique among its kind.
    pub name: Spanned<String>,
    /// The plugin's name: the file stem of its component in the plugins dir.
    /// Receivers only may leave it out: such a receiver notifies no one
    /// (Alertmanager's receiver without integrations).
    #[serde(default)]
    pub plugin: String,
    /// Receivers only: the receiver name the route uses, when this
    /// instance is one of several integrations of one Alertmanager
    /// receiver (each is notified). Default: the instance's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Handed to the plugin as JSON (`config.get()`), with `${ENV}` expanded.
    /// Dumps redact secret-looking keys (the host knows no plugin's schema).
    #[serde(default, serialize_with = "secret::serialize_redacted_table")]
    pub config: toml::Table,
    /// Hosts the plugin may reach over wasi:http: `host`, `host:port`,
    /// `*.domain` or `*`. Everything else is denied.
    #[serde(default)]
    pub allow_hosts: Vec<Spanned<String>>,
    /// Overrides `plugins.call_timeout` for this instance.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Overrides `plugins.memory_limit` for this instance.
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// Receivers only: also notify when alerts resolve (default true).
    #[serde(default)]
    pub send_resolved: Option<bool>,
    /// How the plugin's outbound HTTP is made (Alertmanager's receiver
    /// `http_config`: TLS, basic auth, authorization, proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_config: Option<http_client::HttpConfigSection>,
}

impl Config {
    /// Parses and validates config text. `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        Config::parse_in(text, origin, None)
    }

    /// [`Config::parse`] of the text of the file `source` (relative paths,
    /// `${file:PATH}` included, resolve against its directory).
    pub fn parse_in(text: &str, origin: &str, source: Option<&Path>) -> Result<Config> {
        let mut config: Config =
            toml::from_str(text).map_err(|e| secret::parse_error(text, origin, &e))?;
        config.locator = Locator::new(text, origin);
        config.source = source.map(Path::to_path_buf);
        config.plugins.config_dir = source.and_then(Path::parent).map(Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    /// `file:line` of a span of the config text (for errors found after
    /// parsing).
    pub fn at(&self, span: std::ops::Range<usize>) -> String {
        self.locator.at(span)
    }

    /// What errors call the config: its file name, or the built-in default.
    pub fn origin(&self) -> &str {
        &self.locator.origin
    }

    /// Loads a config file; relative paths in it resolve against its directory.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut config = Config::parse_in(&text, &path.display().to_string(), Some(path))?;
        config.sources = vec![path.to_path_buf()];
        Ok(config)
    }

    /// Loads the config `run --config` (repeatable) and `check config`
    /// name: one TOML file, or Prometheus' and/or Alertmanager's YAML files
    /// (`.yml`/`.yaml`), imported as `wasmon config import` does, each
    /// recognised by its content (top-level `route` or `receivers`: an
    /// alertmanager.yml). What the import does not carry is logged as
    /// warnings with file:line.
    pub fn load_files(paths: &[PathBuf]) -> Result<Config> {
        let is_yaml = |p: &Path| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yml") || e.eq_ignore_ascii_case("yaml"))
        };
        match paths {
            [] => bail!("no config file given"),
            [one] if !is_yaml(one) => return Config::load(one),
            _ => {}
        }
        if let Some(p) = paths.iter().find(|p| !is_yaml(p)) {
            bail!(
                "{}: give either one TOML config or Prometheus/Alertmanager YAML files (.yml, .yaml), not both",
                p.display()
            );
        }
        let mut sources = import::Sources::default();
        for p in paths {
            let (slot, other) = if import::is_alertmanager_yaml(p)? {
                (&mut sources.alertmanager, "alertmanager.yml")
            } else {
                (&mut sources.prometheus, "prometheus.yml")
            };
            if let Some(first) = slot.replace(p.clone()) {
                bail!(
                    "{} and {}: both are {other} files; give one of each at most",
                    first.display(),
                    p.display()
                );
            }
        }
        // Relative paths are resolved against the first file's directory
        // (the Prometheus one when both are given); the importer rewrites
        // the other file's to stay right from there.
        let main = sources
            .prometheus
            .clone()
            .or_else(|| sources.alertmanager.clone())
            .expect("at least one file");
        sources.out_dir = Some(main.parent().map(Path::to_path_buf).unwrap_or_default());
        let imported = import::import(&sources)?;
        for f in &imported.findings {
            tracing::warn!("{f}");
        }
        let origin = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ");
        let mut config = imported.config_in(&format!("{origin} (imported)"), Some(&main))?;
        config.sources = paths.to_vec();
        Ok(config)
    }

    /// This config with `o` applied (and remembered, for reloads).
    pub fn with_overrides(mut self, o: Overrides) -> Config {
        if let Some(a) = &o.listen_address {
            self.web.listen_address = a.clone();
        }
        if let Some(p) = &o.storage_path {
            self.storage.path = p.clone();
        }
        self.overrides = o;
        self
    }

    /// The built-in default config.
    pub fn builtin() -> Config {
        Config::parse(DEFAULT_CONFIG, "built-in default config")
            .expect("the built-in default config is valid (tested)")
    }

    /// Resolves a path from the config against the config file's directory.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        match self.source.as_deref().and_then(Path::parent) {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.to_path_buf(),
        }
    }

    fn validate(&self) -> Result<()> {
        let origin = self.origin();
        let at = |span: std::ops::Range<usize>| self.at(span);
        let line_of = |offset: usize| self.locator.line(offset);
        if self.plugins.call_timeout.is_zero() {
            bail!("{origin}: plugins.call_timeout must be greater than 0");
        }
        let bd = &self.storage.block_duration;
        let d = *bd.get_ref();
        if d < MIN_BLOCK_DURATION || d.subsec_nanos() != 0 {
            // The built-in default has no span; anything invalid came from the file.
            bail!(
                "{}: storage.block_duration {} must be a whole number of seconds and at least {}",
                at(bd.span()),
                humantime::format_duration(d),
                humantime::format_duration(MIN_BLOCK_DURATION),
            );
        }
        let ci = &self.storage.compaction_interval;
        if *ci.get_ref() < MIN_COMPACTION_INTERVAL {
            bail!(
                "{}: storage.compaction_interval {} must be at least {}",
                at(ci.span()),
                humantime::format_duration(*ci.get_ref()),
                humantime::format_duration(MIN_COMPACTION_INTERVAL),
            );
        }
        if let Some(max) = &self.storage.max_block_duration {
            let m = *max.get_ref();
            if m < d || m.subsec_nanos() != 0 {
                bail!(
                    "{}: storage.max_block_duration {} must be a whole number of seconds and at least block_duration ({})",
                    at(max.span()),
                    humantime::format_duration(m),
                    humantime::format_duration(d),
                );
            }
        }
        let mut jobs = BTreeMap::new();
        for j in &self.scrape_configs {
            let name = j.job_name.get_ref();
            let here = at(j.job_name.span());
            if name.is_empty() {
                bail!("{here}: job_name must not be empty");
            }
            if let Some(first) = jobs.insert(name.clone(), j.job_name.span()) {
                bail!(
                    "{here}: duplicate job_name {name:?} (first defined at line {})",
                    line_of(first.start)
                );
            }
            let interval = j.scrape_interval.unwrap_or(self.global.scrape_interval);
            let timeout = j.scrape_timeout.unwrap_or(self.global.scrape_timeout);
            if interval.is_zero() {
                bail!("{here}: job {name:?}: scrape_interval must be greater than 0");
            }
            if timeout > interval && j.scrape_timeout.is_some() {
                bail!("{here}: job {name:?}: scrape timeout {timeout:?} greater than scrape interval {interval:?}");
            }
            if j.scheme != "http" && j.scheme != "https" {
                bail!(
                    "{here}: job {name:?}: scheme must be http or https, not {:?}",
                    j.scheme
                );
            }
            for (kind, rules) in [
                ("relabel_configs", &j.relabel_configs),
                ("metric_relabel_configs", &j.metric_relabel_configs),
            ] {
                for (i, r) in rules.iter().enumerate() {
                    Relabeler::new(r.clone())
                        .map_err(|e| anyhow::anyhow!("{here}: job {name:?}: {kind}[{i}]: {e}"))?;
                }
            }
            for sd in &j.file_sd_configs {
                for f in &sd.files {
                    let ok = [".json", ".yml", ".yaml"].iter().any(|e| f.ends_with(e));
                    if !ok {
                        bail!("{here}: job {name:?}: file_sd_configs file {f:?} must end in .json, .yml or .yaml");
                    }
                }
            }
            for (i, sd) in j.kubernetes_sd_configs.iter().enumerate() {
                sd.validate().map_err(|e| {
                    anyhow::anyhow!("{here}: job {name:?}: kubernetes_sd_configs[{i}]: {e}")
                })?;
            }
            for (i, sd) in j.dns_sd_configs.iter().enumerate() {
                sd.validate().map_err(|e| {
                    anyhow::anyhow!("{here}: job {name:?}: dns_sd_configs[{i}]: {e:#}")
                })?;
            }
            for sc in &j.static_configs {
                for t in &sc.targets {
                    if t.is_empty() || t.contains('/') {
                        bail!("{here}: job {name:?}: target {t:?} must be host:port");
                    }
                }
            }
        }
        let mut seen = BTreeMap::new();
        for r in &self.receivers {
            let name = r.name.get_ref();
            if name.is_empty() {
                bail!("{}: receiver name must not be empty", at(r.name.span()));
            }
            if let Some(first) = seen.insert(name.clone(), r.name.span()) {
                bail!(
                    "{}: duplicate receiver name {name:?} (first defined at line {})",
                    at(r.name.span()),
                    line_of(first.start)
                );
            }
            let what = format!("receiver {name:?}");
            if r.plugin.is_empty() {
                // A receiver that notifies no one takes nothing else.
                if !r.config.is_empty() || !r.allow_hosts.is_empty() || r.receiver.is_some() {
                    bail!(
                        "{}: {what}: `plugin` must name a plugin (only a receiver without `config`, `allow_hosts` and `receiver` may leave it out: it notifies no one)",
                        at(r.name.span())
                    );
                }
                continue;
            }
            if r.receiver.as_deref().is_some_and(str::is_empty) {
                bail!(
                    "{}: {what}: `receiver` must not be empty",
                    at(r.name.span())
                );
            }
            r.validate(&what).with_context(|| at(r.name.span()))?;
            for h in &r.allow_hosts {
                HostPattern::parse(h.get_ref())
                    .with_context(|| format!("{}: {what}: allow_hosts", at(h.span())))?;
            }
        }
        self.web
            .validate()
            .with_context(|| format!("{origin}: [web]"))?;
        if self.route.is_some() {
            let groups = self.receiver_groups();
            let names: Vec<&str> = groups.keys().map(String::as_str).collect();
            self.alerting()
                .validate(&names)
                .map_err(|e| anyhow::anyhow!("{origin}: route: {e}"))?;
        } else if !self.inhibit_rules.is_empty() {
            bail!("{origin}: inhibit_rules need a route");
        }
        Ok(())
    }

    /// The routing part of the config, in the alerting core's terms.
    pub fn alerting(&self) -> crate::alerting::config::AlertingConfig {
        crate::alerting::config::AlertingConfig {
            global: crate::alerting::config::GlobalConfig {
                resolve_timeout: self.global.resolve_timeout,
            },
            route: self.route.clone(),
            inhibit_rules: self.inhibit_rules.clone(),
            time_intervals: self.time_intervals.clone(),
            mute_time_intervals: self.mute_time_intervals.clone(),
        }
    }

    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|r| r.name.get_ref() == name)
    }

    /// The receiver names a route may use, each with the instances it
    /// notifies: an instance under its own name, or under its `receiver`
    /// with the other integrations of that receiver; a receiver without a
    /// plugin notifies none.
    pub fn receiver_groups(&self) -> BTreeMap<String, Vec<&ReceiverConfig>> {
        let mut groups: BTreeMap<String, Vec<&ReceiverConfig>> = BTreeMap::new();
        for r in &self.receivers {
            let key = r.receiver.as_deref().unwrap_or(r.name());
            let members = groups.entry(key.to_string()).or_default();
            if !r.plugin.is_empty() {
                members.push(r);
            }
        }
        groups
    }
}

impl InstanceConfig {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    pub(crate) fn validate(&self, what: &str) -> Result<()> {
        if self.plugin.is_empty() {
            bail!("{what}: `plugin` must name a plugin");
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            bail!("{what}: timeout must be greater than 0");
        }
        // Fail on a missing ${ENV} now rather than at the first
        // notification. `${file:PATH}` is read when the instance is
        // prepared (start, reload, `check config`), not here.
        let mut value = serde_json::to_value(&self.config).context("converting config to JSON")?;
        env::expand_json(&mut value, "config", env::FileRefs::Check)
            .with_context(|| what.to_string())?;
        if let Some(h) = &self.http_config {
            // The checks that need no file; files are read when the
            // instance is prepared (`plugins::Instance::prepare`).
            h.http_client()
                .validate()
                .with_context(|| format!("{what}: http_config"))?;
        }
        Ok(())
    }

    /// The instance config as the JSON text a plugin reads, `${VAR}` and
    /// `${file:PATH}` expanded (relative paths against the config file's
    /// directory, `plugins.config_dir`).
    pub fn config_json(&self, plugins: &PluginsConfig) -> Result<String> {
        let mut value = serde_json::to_value(&self.config).context("converting config to JSON")?;
        env::expand_json(
            &mut value,
            "config",
            env::FileRefs::Read(plugins.config_dir.as_deref()),
        )?;
        Ok(value.to_string())
    }

    pub fn allow_hosts(&self) -> Vec<HostPattern> {
        self.allow_hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h.get_ref()).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_default_is_valid() {
        let c = Config::builtin();
        assert_eq!(c.web.listen_address, "127.0.0.1:9930");
        assert_eq!(c.plugins.dir, PathBuf::from("plugins"));
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = Config::parse("[web]\nlisten_address = \n", "a.toml").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("a.toml") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn parse_errors_do_not_echo_the_line() {
        // A typo next to a secret must not copy the secret into the log.
        let text = "[web]\nbearer_tokens = [\"hunter2-token\", oops]\n";
        let msg = format!("{:#}", Config::parse(text, "a.toml").unwrap_err());
        assert!(msg.contains("a.toml") && msg.contains("line 2"), "{msg}");
        assert!(!msg.contains("hunter2"), "{msg}");
        let text = "[[scrape_configs]]\njob_name = \"a\"\nbearer_token = 42\n";
        let msg = format!("{:#}", Config::parse(text, "a.toml").unwrap_err());
        assert!(
            msg.contains("line 3") && msg.contains("bearer_token"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = Config::parse("[web]\nlisten = \"x\"\n", "a.toml").unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `listen`"),
            "{err:#}"
        );
    }

    #[test]
    fn duplicate_receiver_names_line() {
        let text = r#"
[[receivers]]
name = "ops"
plugin = "webhook"

[[receivers]]
name = "ops"
plugin = "webhook"
"#;
        let msg = format!("{:#}", Config::parse(text, "c.toml").unwrap_err());
        assert!(
            msg.contains("c.toml:7") && msg.contains("first defined at line 3"),
            "{msg}"
        );
    }

    #[test]
    fn bad_allow_host_is_rejected_with_line() {
        let text = "[[receivers]]\nname = \"a\"\nplugin = \"webhook\"\nallow_hosts = [\"ok.example\", \"bad host\"]\n";
        let msg = format!("{:#}", Config::parse(text, "c.toml").unwrap_err());
        assert!(
            msg.contains("c.toml:4") && msg.contains("bad host"),
            "{msg}"
        );
    }

    #[test]
    fn scrape_config_errors_name_the_job_line() {
        let text = "[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs.relabel_configs]]\naction = \"hashmod\"\ntarget_label = \"x\"\n";
        let msg = format!("{:#}", Config::parse(text, "s.toml").unwrap_err());
        assert!(
            msg.contains("s.toml:2")
                && msg.contains("relabel_configs[0]")
                && msg.contains("modulus"),
            "{msg}"
        );
        let text = "[[scrape_configs]]\njob_name = \"a\"\nscrape_interval = \"5s\"\nscrape_timeout = \"10s\"\n";
        let msg = format!("{:#}", Config::parse(text, "s.toml").unwrap_err());
        assert!(msg.contains("greater than scrape interval"), "{msg}");
        let text = "[[scrape_configs]]\njob_name = \"a\"\nscrape_interval = \"5 parsecs\"\n";
        let msg = format!("{:#}", Config::parse(text, "s.toml").unwrap_err());
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn route_tree_in_toml_is_validated() {
        let text = r#"
[[receivers]]
name = "ops"
plugin = "webhook"

[route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "10s"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "pager"
"#;
        let msg = format!("{:#}", Config::parse(text, "r.toml").unwrap_err());
        assert!(
            msg.contains("r.toml: route") && msg.contains("undefined receiver \"pager\""),
            "{msg}"
        );
        let ok = text.replace(
            "receiver = \"pager\"",
            "receiver = \"ops\"\ncontinue = true",
        );
        let c = Config::parse(&ok, "r.toml").unwrap();
        assert_eq!(c.alerting().route.unwrap().routes.len(), 1);
    }

    /// An Alertmanager receiver of several integrations is several
    /// instances sharing a `receiver` name; one without any has no plugin.
    /// Routes name receivers, never a member instance.
    #[test]
    fn receivers_group_instances_under_one_route_name() {
        let text = r#"
[[receivers]]
name = "team/slack[0]"
receiver = "team"
plugin = "slack"

[[receivers]]
name = "team/email[0]"
receiver = "team"
plugin = "email"

[[receivers]]
name = "blackhole"

[[receivers]]
name = "hook"
plugin = "webhook"

[route]
receiver = "team"

[[route.routes]]
matchers = ['a="b"']
receiver = "blackhole"

[[route.routes]]
matchers = ['a="c"']
receiver = "hook"
"#;
        let c = Config::parse(text, "g.toml").unwrap();
        let groups = c.receiver_groups();
        let groups: Vec<(&str, Vec<&str>)> = groups
            .iter()
            .map(|(k, v)| (k.as_str(), v.iter().map(|r| r.name()).collect()))
            .collect();
        assert_eq!(
            groups,
            [
                ("blackhole", vec![]),
                ("hook", vec!["hook"]),
                ("team", vec!["team/slack[0]", "team/email[0]"]),
            ]
        );
        let member = text.replace("receiver = \"hook\"", "receiver = \"team/email[0]\"");
        let msg = format!("{:#}", Config::parse(&member, "g.toml").unwrap_err());
        assert!(
            msg.contains("undefined receiver \"team/email[0]\""),
            "{msg}"
        );
        // A receiver without a plugin takes nothing else.
        let bad = text.replace(
            "name = \"blackhole\"",
            "name = \"blackhole\"\nconfig = { url = \"x\" }",
        );
        let msg = format!("{:#}", Config::parse(&bad, "g.toml").unwrap_err());
        assert!(
            msg.contains("g.toml:13") && msg.contains("`plugin` must name a plugin"),
            "{msg}"
        );
    }

    /// `${file:PATH}` in a plugin config is read relative to the config
    /// file when the instance's config is made, not when the config is
    /// checked.
    #[test]
    fn file_references_resolve_against_the_config_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("url"), "https://hooks.example/s3cret\n").unwrap();
        let path = dir.path().join("w.toml");
        let text = "[[receivers]]\nname = \"a\"\nplugin = \"webhook\"\nconfig = { url = \"${file:url}\", other = \"${file:missing}\" }\n";
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let msg = format!("{:#}", c.receivers[0].config_json(&c.plugins).unwrap_err());
        assert_eq!(
            msg,
            "config.other: file missing: No such file or directory (os error 2)"
        );
        std::fs::write(dir.path().join("missing"), "x").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&c.receivers[0].config_json(&c.plugins).unwrap()).unwrap();
        assert_eq!(json["url"], "https://hooks.example/s3cret");
        // A check's plugin instance resolves against the same directory.
        let text = "[[checks]]\nname = \"c\"\nkind = \"plugin\"\nplugin = \"probe\"\nconfig = { url = \"${file:url}\" }\n";
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let inst = c.checks[0].instance().unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&inst.config_json(&c.plugins).unwrap()).unwrap();
        assert_eq!(json["url"], "https://hooks.example/s3cret");
    }

    #[test]
    fn max_future_reaches_the_store_options() {
        let c = Config::parse("", "f.toml").unwrap();
        assert_eq!(c.storage.tsdb_options().max_future_ms(), 600_000);
        let c = Config::parse("[storage]\nmax_future = \"2m\"\n", "f.toml").unwrap();
        assert_eq!(c.storage.tsdb_options().max_future_ms(), 120_000);
        // At most a quarter of the block duration.
        let c = Config::parse(
            "[storage]\nmax_future = \"1h\"\nblock_duration = \"1m\"\n",
            "f.toml",
        )
        .unwrap();
        assert_eq!(c.storage.tsdb_options().max_future_ms(), 15_000);
    }

    #[test]
    fn block_duration_is_validated_and_reaches_the_store_options() {
        // Absent: Prometheus' 2h.
        let c = Config::parse("", "b.toml").unwrap();
        assert_eq!(
            c.storage.tsdb_options().block_duration,
            Duration::from_secs(7200)
        );
        for (text, secs) in [
            ("10s", 10),
            ("1m", 60),
            ("10m", 600),
            ("8m 30s", 510),
            ("2h", 7200),
        ] {
            let c = Config::parse(
                &format!("[storage]\nblock_duration = \"{text}\"\n"),
                "b.toml",
            )
            .unwrap_or_else(|e| panic!("{text}: {e:#}"));
            assert_eq!(
                *c.storage.block_duration.get_ref(),
                Duration::from_secs(secs)
            );
            assert_eq!(
                c.storage.tsdb_options().block_duration,
                Duration::from_secs(secs),
                "{text}"
            );
        }
        // Too short, zero, or not whole seconds: rejected at the key's line.
        for text in ["9s", "0s", "90s 500ms", "10m 1ms"] {
            let cfg = format!("[storage]\npath = \"d\"\nblock_duration = \"{text}\"\n");
            let msg = format!("{:#}", Config::parse(&cfg, "b.toml").unwrap_err());
            assert!(
                msg.contains("b.toml:3") && msg.contains("storage.block_duration"),
                "{text}: {msg}"
            );
        }
        // Not a duration: serde's error, still at the line.
        let msg = format!(
            "{:#}",
            Config::parse("[storage]\nblock_duration = \"ten minutes\"\n", "b.toml").unwrap_err()
        );
        assert!(msg.contains("line 2"), "{msg}");
        // The config dump prints it back in the form it is written.
        let c = Config::parse("[storage]\nblock_duration = \"10m\"\n", "b.toml").unwrap();
        let dump = toml::to_string(&c.storage).unwrap();
        assert!(dump.contains("block_duration = \"10m\""), "{dump}");
    }

    #[test]
    fn compaction_interval_is_validated_and_reaches_the_store_options() {
        let c = Config::parse("", "c.toml").unwrap();
        assert_eq!(
            c.storage.tsdb_options().compaction_interval,
            Duration::from_secs(60)
        );
        let c = Config::parse("[storage]\ncompaction_interval = \"2s\"\n", "c.toml").unwrap();
        assert_eq!(
            c.storage.tsdb_options().compaction_interval,
            Duration::from_secs(2)
        );
        for text in ["0s", "500ms"] {
            let cfg = format!("[storage]\npath = \"d\"\ncompaction_interval = \"{text}\"\n");
            let msg = format!("{:#}", Config::parse(&cfg, "c.toml").unwrap_err());
            assert!(
                msg.contains("c.toml:3") && msg.contains("storage.compaction_interval"),
                "{text}: {msg}"
            );
        }
    }

    #[test]
    fn max_block_duration_sets_the_merge_ranges() {
        const H: i64 = 3_600_000;
        // Absent: 10% of the retention time (15d -> 36h): 2h, 6h, 18h.
        let c = Config::parse("", "m.toml").unwrap();
        assert_eq!(
            c.storage.tsdb_options().block_ranges(),
            [2 * H, 6 * H, 18 * H]
        );
        assert!(!toml::to_string(&c.storage)
            .unwrap()
            .contains("max_block_duration"));
        let c = Config::parse("[storage]\nretention_time = \"90d\"\n", "m.toml").unwrap();
        assert_eq!(
            c.storage.tsdb_options().block_ranges(),
            [2 * H, 6 * H, 18 * H, 54 * H, 162 * H]
        );
        // Equal to block_duration: never merged.
        let c = Config::parse(
            "[storage]\nblock_duration = \"8m\"\nmax_block_duration = \"8m\"\n",
            "m.toml",
        )
        .unwrap();
        assert_eq!(c.storage.tsdb_options().block_ranges(), [480_000]);
        let dump = toml::to_string(&c.storage).unwrap();
        assert!(dump.contains("max_block_duration = \"8m\""), "{dump}");
        let c = Config::parse("[storage]\nmax_block_duration = \"54h\"\n", "m.toml").unwrap();
        assert_eq!(
            c.storage.tsdb_options().block_ranges(),
            [2 * H, 6 * H, 18 * H, 54 * H]
        );
        // Shorter than a block, or not whole seconds: rejected at its line.
        for text in ["1h", "3h 1ms"] {
            let cfg = format!("[storage]\npath = \"d\"\nmax_block_duration = \"{text}\"\n");
            let msg = format!("{:#}", Config::parse(&cfg, "m.toml").unwrap_err());
            assert!(
                msg.contains("m.toml:3") && msg.contains("storage.max_block_duration"),
                "{text}: {msg}"
            );
        }
    }

    /// Label names from the config are checked as Prometheus 2.x checks
    /// them, at the line of the name.
    #[test]
    fn invalid_label_names_are_rejected_at_their_line() {
        for (text, line) in [
            ("[global]\nexternal_labels = { 0bad-name = \"x\" }\n", 2),
            ("[global]\n[global.external_labels]\nok = \"x\"\n\"a.b\" = \"y\"\n", 4),
            ("[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs.static_configs]]\ntargets = [\"h:1\"]\nlabels = { team = \"x\", 0bad-name = \"y\" }\n", 5),
            ("[[rollouts]]\nname = \"r\"\nlabels = { \"te am\" = \"x\" }\n", 3),
            ("[[scrape_configs]]\njob_name = \"a\"\nrelabel_configs = [{ source_labels = [\"a\"], target_label = \"0bad-name\" }]\n", 2),
        ] {
            let msg = format!("{:#}", Config::parse(text, "l.toml").unwrap_err());
            assert!(
                msg.contains(&format!("l.toml: TOML parse error at line {line},"))
                    || msg.contains(&format!("l.toml:{line}:")),
                "{text}: {msg}"
            );
            assert!(msg.contains("not a valid label name") || msg.contains("invalid 'target_label'"), "{msg}");
        }
        let c = Config::parse(
            "[global]\nexternal_labels = { cluster = \"eu1\", __replica__ = \"a\" }\n",
            "l.toml",
        )
        .unwrap();
        assert_eq!(c.global.external_labels["cluster"], "eu1");
    }

    #[test]
    fn relative_paths_resolve_against_config_dir() {
        let mut c = Config::builtin();
        c.source = Some(PathBuf::from("/etc/wasmon/wasmon.toml"));
        assert_eq!(
            c.resolve(Path::new("plugins")),
            PathBuf::from("/etc/wasmon/plugins")
        );
        assert_eq!(c.resolve(Path::new("/abs")), PathBuf::from("/abs"));
    }
}
