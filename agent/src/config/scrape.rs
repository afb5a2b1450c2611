//! Scrape job configuration, with Prometheus' `scrape_configs` names.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::discovery::{DnsSdConfig, HttpSdConfig, KubernetesSdConfig};
use super::http_client::with_http_client_config;
use super::Secret;
use toml::Spanned;

use crate::model::relabel::RelabelConfig;

with_http_client_config! {
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub job_name: Spanned<String>,
    /// Defaults to `global.scrape_interval`.
    #[serde(default, with = "humantime_serde")]
    pub scrape_interval: Option<Duration>,
    /// Defaults to `global.scrape_timeout`, capped at the interval.
    #[serde(default, with = "humantime_serde")]
    pub scrape_timeout: Option<Duration>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_scheme")]
    pub scheme: String,
    #[serde(default)]
    pub params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub honor_labels: bool,
    #[serde(default = "default_true")]
    pub honor_timestamps: bool,
    /// Per-scrape limit on samples after metric relabeling; 0 = none.
    /// Exceeding it fails the whole scrape, as in Prometheus.
    #[serde(default)]
    pub sample_limit: usize,
    #[serde(default)]
    pub label_limit: usize,
    #[serde(default)]
    pub label_name_length_limit: usize,
    #[serde(default)]
    pub label_value_length_limit: usize,
    /// Largest body accepted, counted after decompression (a scrape
    /// stops reading there and fails naming the limit). Default
    /// [`DEFAULT_BODY_SIZE_LIMIT`]; 0 = none, as Prometheus' default —
    /// where a 4 MB gzip bomb (zeros) inflates to 4 GB in the agent.
    #[serde(default = "default_body_size_limit")]
    pub body_size_limit: ByteSize,
    #[serde(default)]
    pub static_configs: Vec<StaticConfig>,
    #[serde(default)]
    pub file_sd_configs: Vec<FileSdConfig>,
    #[serde(default)]
    pub http_sd_configs: Vec<HttpSdConfig>,
    #[serde(default)]
    pub dns_sd_configs: Vec<DnsSdConfig>,
    #[serde(default)]
    pub kubernetes_sd_configs: Vec<KubernetesSdConfig>,
    #[serde(default)]
    pub relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub metric_relabel_configs: Vec<RelabelConfig>,
}
}

/// The default `body_size_limit`: 64 MiB, some 400k series in the text
/// format — several times the largest pages real targets serve
/// (kube-state-metrics in a large cluster: tens of MB), and a bound a
/// small agent can hold per concurrent scrape. Raise it per job for a
/// bigger target.
pub const DEFAULT_BODY_SIZE_LIMIT: ByteSize = ByteSize::mib(64);

fn default_body_size_limit() -> ByteSize {
    DEFAULT_BODY_SIZE_LIMIT
}

fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_scheme() -> String {
    "http".into()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// `${VAR}` is expanded, as in the password.
    #[serde(deserialize_with = "super::env::deserialize_expanded")]
    pub username: String,
    #[serde(default)]
    pub password: Secret,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

impl BasicAuth {
    /// The `Authorization` header value, reading `password_file` (resolved
    /// by `resolve`) when set.
    pub fn header_value(&self, resolve: impl Fn(&Path) -> PathBuf) -> anyhow::Result<String> {
        use anyhow::Context as _;
        use base64::Engine as _;
        let password = match &self.password_file {
            Some(f) => std::fs::read_to_string(resolve(f))
                .with_context(|| format!("reading basic_auth.password_file {}", f.display()))?
                .trim_end()
                .to_string(),
            None => self.password.expose().to_string(),
        };
        let creds = format!("{}:{password}", self.username);
        Ok(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(creds)
        ))
    }
}

/// A target group, as in a Prometheus `static_configs` entry or a file SD file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default, deserialize_with = "super::deserialize_label_map")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileSdConfig {
    /// Paths or globs of JSON (`.json`) or YAML (`.yml`, `.yaml`) target files.
    pub files: Vec<String>,
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh_interval: Duration,
}

fn default_refresh() -> Duration {
    Duration::from_secs(300)
}
