//! `[[remote_write]]`: Prometheus' `remote_write` section, same names. The
//! queue's use of it and the validation beyond serde's live in
//! `crate::remote`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::scrape::BasicAuth;
use super::secret::Secret;
use crate::model::relabel::RelabelConfig;

#[derive(Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint, e.g. `http://prometheus:9090/api/v1/write`.
    pub url: Spanned<String>,
    /// Names the queue in metrics, logs and its progress file; defaults to a
    /// hash of the URL (so the progress survives reordering the list).
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub remote_timeout: Duration,
    /// Extra request headers (not the protocol's own). Their values may be
    /// credentials (API keys): `${VAR}` is expanded and dumps show `<secret>`.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    #[serde(default)]
    pub bearer_token: Option<Secret>,
    /// Applied to each series (after external labels) before it is sent.
    #[serde(default)]
    pub write_relabel_configs: Vec<RelabelConfig>,
    #[serde(default)]
    pub queue_config: QueueConfig,
}

// Hand-written so that credentials never reach a log line or an error.
impl std::fmt::Debug for RemoteWriteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("url", self.url.get_ref())
            .field("name", &self.name)
            .field("remote_timeout", &self.remote_timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("basic_auth", &self.basic_auth.as_ref().map(|_| "<secret>"))
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<secret>"),
            )
            .field("write_relabel_configs", &self.write_relabel_configs.len())
            .field("queue_config", &self.queue_config)
            .finish()
    }
}

/// Prometheus' `queue_config`, with its defaults.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Samples buffered per shard before reading the WAL pauses.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    #[serde(default = "default_max_shards")]
    pub max_shards: usize,
    #[serde(default = "default_min_shards")]
    pub min_shards: usize,
    #[serde(default = "default_max_samples")]
    pub max_samples_per_send: usize,
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub batch_send_deadline: Duration,
    #[serde(default = "default_min_backoff", with = "humantime_serde")]
    pub min_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    #[serde(default)]
    pub retry_on_http_429: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            capacity: default_capacity(),
            max_shards: default_max_shards(),
            min_shards: default_min_shards(),
            max_samples_per_send: default_max_samples(),
            batch_send_deadline: default_deadline(),
            min_backoff: default_min_backoff(),
            max_backoff: default_max_backoff(),
            retry_on_http_429: false,
        }
    }
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_capacity() -> usize {
    2500
}
fn default_max_shards() -> usize {
    200
}
fn default_min_shards() -> usize {
    1
}
fn default_max_samples() -> usize {
    500
}
fn default_deadline() -> Duration {
    Duration::from_secs(5)
}
fn default_min_backoff() -> Duration {
    Duration::from_millis(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(5)
}
