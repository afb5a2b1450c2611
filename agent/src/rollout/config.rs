//! What a rollout is: its `[[rollouts]]` entry (the schema is
//! `config::rollout`), checked where rollouts are built (names,
//! thresholds, PromQL, plugin instances) and prepared to run.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::config::rollout::{MetricConfig, RolloutConfig};
use crate::config::PluginsConfig;
use crate::plugins::Instance;

impl RolloutConfig {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }
}

/// Validates every rollout. `at` turns a span into `file:line`.
pub fn validate_all(
    rollouts: &[RolloutConfig],
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<()> {
    let mut seen = BTreeMap::new();
    for r in rollouts {
        let name = r.name();
        let here = at(r.name.span());
        if name.is_empty() {
            bail!("{here}: rollout name must not be empty");
        }
        if let Some(first) = seen.insert(name.to_string(), r.name.span()) {
            bail!(
                "{here}: duplicate rollout name {name:?} (first defined at {})",
                at(first)
            );
        }
        if r.interval.is_zero() || r.threshold == 0 {
            bail!("{here}: rollout {name:?}: interval and threshold must be greater than 0");
        }
        if !crate::model::is_legacy_label_name(&r.version_label) {
            bail!(
                "{here}: rollout {name:?}: version_label {:?} is not a valid label name",
                r.version_label
            );
        }
        let mut checks = BTreeMap::new();
        for m in &r.metrics {
            if m.min.is_none() && m.max.is_none() {
                bail!(
                    "{here}: rollout {name:?}: metric {:?} needs min, max or both",
                    m.name
                );
            }
            crate::promql::parse(&m.query).map_err(|e| {
                anyhow::anyhow!("{here}: rollout {name:?}: metric {:?}: {e}", m.name)
            })?;
            if checks.insert(m.name.clone(), ()).is_some() {
                bail!(
                    "{here}: rollout {name:?}: duplicate check name {:?}",
                    m.name
                );
            }
        }
        if let Some(q) = &r.version_query {
            crate::promql::parse(q)
                .map_err(|e| anyhow::anyhow!("{here}: rollout {name:?}: version_query: {e}"))?;
        }
        for i in &r.metric_checks {
            if checks.insert(i.name().to_string(), ()).is_some() {
                bail!(
                    "{here}: rollout {name:?}: duplicate check name {:?}",
                    i.name()
                );
            }
            crate::checks::validate_instance(
                i,
                &format!("rollout {name:?}: metric check {:?}", i.name()),
                at,
            )?;
        }
        if let Some(i) = &r.rollback {
            crate::checks::validate_instance(i, &format!("rollout {name:?}: rollback"), at)?;
        }
    }
    Ok(())
}

/// A rollout ready to run.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub name: String,
    pub target: String,
    pub interval: Duration,
    pub threshold: u32,
    pub soak: Duration,
    pub verify: Duration,
    pub version_query: Option<String>,
    pub version_label: String,
    pub labels: BTreeMap<String, String>,
    pub metrics: Vec<MetricConfig>,
    pub metric_checks: Vec<(String, Instance)>,
    pub rollback: Option<Instance>,
}

impl Rollout {
    pub fn prepare(cfg: &RolloutConfig, defaults: &PluginsConfig) -> Result<Rollout> {
        Ok(Rollout {
            name: cfg.name().to_string(),
            target: cfg.target.clone(),
            interval: cfg.interval,
            threshold: cfg.threshold,
            soak: cfg.soak,
            verify: cfg.verify,
            version_query: cfg.version_query.clone(),
            version_label: cfg.version_label.clone(),
            labels: cfg.labels.clone(),
            metrics: cfg.metrics.clone(),
            metric_checks: cfg
                .metric_checks
                .iter()
                .map(|i| Ok((i.name().to_string(), Instance::prepare(i, defaults)?)))
                .collect::<Result<_>>()?,
            rollback: cfg
                .rollback
                .as_ref()
                .map(|i| Instance::prepare(i, defaults))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_validation_names_the_line() {
        // What `wasmon check config` reports (the config parses;
        // `validate_all` refuses it).
        let invalid = |text: &str| {
            let c = crate::config::Config::parse(text, "r.toml").unwrap();
            format!(
                "{:#}",
                super::validate_all(&c.rollouts, &|s| c.at(s)).unwrap_err()
            )
        };
        let text =
            "[[rollouts]]\nname = \"a\"\n[[rollouts.metrics]]\nname = \"x\"\nquery = \"up\"\n";
        let msg = invalid(text);
        assert!(
            msg.contains("r.toml:2") && msg.contains("needs min, max"),
            "{msg}"
        );
        let text = "[[rollouts]]\nname = \"a\"\nversion_query = \"sum(\"\n";
        let msg = invalid(text);
        assert!(msg.contains("version_query"), "{msg}");
        let ok = "[[rollouts]]\nname = \"a\"\ninterval = \"1s\"\nthreshold = 2\n[[rollouts.metrics]]\nname = \"x\"\nquery = \"up\"\nmax = 1\n[rollouts.rollback]\nname = \"undo\"\nplugin = \"http-action\"\nallow_hosts = [\"127.0.0.1\"]\n";
        let c = crate::config::Config::parse(ok, "r.toml").unwrap();
        super::validate_all(&c.rollouts, &|s| c.at(s)).unwrap();
        assert_eq!(c.rollouts[0].threshold, 2);
    }
}
