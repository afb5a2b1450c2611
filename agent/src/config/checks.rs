//! `[[checks]]`: the schema of a health check. What a check does and the
//! validation beyond serde's live in `crate::checks`.

use std::collections::BTreeMap;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::Secret;

/// One `[[checks]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// Unique among checks; the `check` label of its series.
    pub name: Spanned<String>,
    pub kind: CheckKind,
    /// The `target` label (and, for `tcp`, the host:port to connect to).
    /// Defaults to the URL of an `http` check.
    #[serde(default)]
    pub target: String,
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// http: the URL to GET.
    #[serde(default)]
    pub url: Option<String>,
    /// http: the method (default GET).
    #[serde(default)]
    pub method: Option<String>,
    /// http: request headers. Their values may be credentials: `${VAR}`
    /// is expanded and dumps show `<secret>`.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// http: accepted status code(s); default any 2xx.
    #[serde(default)]
    pub expected_status: Option<StatusList>,
    /// http: a regex the response body must match.
    #[serde(default)]
    pub body_regex: Option<String>,
    /// http/tcp: slower than this fails the check.
    #[serde(default, with = "humantime_serde")]
    pub max_latency: Option<Duration>,
    /// plugin/metric: the plugin's name (file stem in the plugins dir).
    #[serde(default)]
    pub plugin: Option<String>,
    /// plugin/metric: the instance's config, handed to the plugin as JSON.
    #[serde(
        default,
        serialize_with = "crate::config::secret::serialize_redacted_table"
    )]
    pub config: toml::Table,
    /// plugin: hosts the plugin may reach.
    #[serde(default)]
    pub allow_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
}

/// How a check probes its target.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Http,
    Tcp,
    /// A `health-check` plugin instance.
    Plugin,
    /// A `metric-check` plugin instance (queries the local store).
    Metric,
}

/// `expected_status = 200` or `expected_status = [200, 204]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum StatusList {
    One(u16),
    Many(Vec<u16>),
}

fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
