//! `[[rollouts]]`: the schema of a canary rollout. Its state machine and
//! the validation beyond serde's live in `crate::rollout`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::InstanceConfig;

/// One `[[rollouts]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutConfig {
    pub name: Spanned<String>,
    /// What the rollback action acts on (a Deployment, a Service, a flag...).
    #[serde(default)]
    pub target: String,
    /// How often the checks are evaluated.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Failed evaluations before rolling back (Flagger's `threshold`).
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// A rollout that stays under the threshold this long is stable.
    #[serde(default = "default_soak", with = "humantime_serde")]
    pub soak: Duration,
    /// After a rollback, how long the checks have to pass again.
    #[serde(default = "default_verify", with = "humantime_serde")]
    pub verify: Duration,
    /// PromQL whose result carries the running version in `version_label`;
    /// a change starts a rollout.
    #[serde(default)]
    pub version_query: Option<String>,
    #[serde(default = "default_version_label")]
    pub version_label: String,
    /// Extra labels of the rollout's alerts.
    #[serde(default, deserialize_with = "crate::config::deserialize_label_map")]
    pub labels: BTreeMap<String, String>,
    /// PromQL checks (Flagger's metrics with a thresholdRange).
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
    /// `metric-check` plugin instances.
    #[serde(default)]
    pub metric_checks: Vec<InstanceConfig>,
    /// The `rollback-action` plugin instance. Without one a failed rollout
    /// only alerts.
    #[serde(default)]
    pub rollback: Option<InstanceConfig>,
}

/// A PromQL check: the query must return one value inside `[min, max]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    pub name: String,
    pub query: String,
    #[serde(default)]
    pub min: Option<f64>,
    #[serde(default)]
    pub max: Option<f64>,
}

fn default_interval() -> Duration {
    Duration::from_secs(60)
}
fn default_threshold() -> u32 {
    5
}
fn default_soak() -> Duration {
    Duration::from_secs(600)
}
fn default_verify() -> Duration {
    Duration::from_secs(300)
}
fn default_version_label() -> String {
    "version".to_string()
}
