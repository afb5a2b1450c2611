//! Scrape jobs resolved from config, and targets: discovered label sets
//! turned into final target labels and a URL by `relabel_configs`, as
//! Prometheus' `PopulateLabels` does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::config::http_client::Credentials;
use crate::config::scrape::StaticConfig;
use crate::config::{Config, ScrapeConfig};
use crate::model::labels::{Labels, LabelsBuilder};
use crate::model::relabel::{process_builder, Relabeler};

pub const ADDRESS_LABEL: &str = "__address__";
pub const SCHEME_LABEL: &str = "__scheme__";
pub const METRICS_PATH_LABEL: &str = "__metrics_path__";
pub const SCRAPE_INTERVAL_LABEL: &str = "__scrape_interval__";
pub const SCRAPE_TIMEOUT_LABEL: &str = "__scrape_timeout__";
pub const PARAM_PREFIX: &str = "__param_";

/// A scrape job with defaults applied and rules compiled.
#[derive(Debug)]
pub struct Job {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub config: ScrapeConfig,
    pub relabel: Vec<Relabeler>,
    pub metric_relabel: Vec<Relabeler>,
    /// The job's own client, from its HTTP client keys (TLS, proxy,
    /// redirects, HTTP/2).
    pub client: reqwest::Client,
    /// Where each scrape's `Authorization` header comes from.
    pub credentials: Credentials,
}

impl Job {
    pub fn from_config(sc: &ScrapeConfig, config: &Config) -> Result<Job> {
        let name = sc.job_name.get_ref().clone();
        let interval = sc.scrape_interval.unwrap_or(config.global.scrape_interval);
        // An inherited timeout longer than the interval is capped, as in Prometheus.
        let timeout = sc
            .scrape_timeout
            .unwrap_or(config.global.scrape_timeout)
            .min(interval);
        let compile = |rules: &[crate::model::relabel::RelabelConfig]| {
            rules
                .iter()
                .map(|r| Relabeler::new(r.clone()).map_err(anyhow::Error::msg))
                .collect::<Result<Vec<_>>>()
        };
        // Prometheus' HTTP client keys, checked at load (files read once
        // here; credentials files again on every request).
        let resolve = |p: &std::path::Path| config.resolve(p);
        let keys = sc.http_client();
        let client = keys
            .build(&resolve)
            .with_context(|| format!("job {name:?}"))?;
        let credentials = keys.credentials().resolved(&resolve);
        credentials
            .check()
            .with_context(|| format!("job {name:?}"))?;
        for (i, sd) in sc.http_sd_configs.iter().enumerate() {
            let at = || format!("job {name:?}: http_sd_configs[{i}]");
            crate::discovery::http::check_url(&sd.url).with_context(at)?;
            let keys = sd.http_client();
            keys.build(&resolve)
                .and_then(|_| keys.credentials().resolved(&resolve).check())
                .with_context(at)?;
        }
        for (i, sd) in sc.kubernetes_sd_configs.iter().enumerate() {
            if let Some(file) = &sd.kubeconfig_file {
                crate::discovery::kubernetes::client::check_kubeconfig(&resolve(file))
                    .with_context(|| format!("job {name:?}: kubernetes_sd_configs[{i}]"))?;
            }
        }
        Ok(Job {
            name,
            interval,
            timeout,
            relabel: compile(&sc.relabel_configs)?,
            metric_relabel: compile(&sc.metric_relabel_configs)?,
            config: sc.clone(),
            client,
            credentials,
        })
    }

    /// Label sets of the job's static targets (before relabeling).
    pub fn static_groups(&self) -> Vec<StaticConfig> {
        self.config.static_configs.clone()
    }
}

/// One target of a job: its final labels and where to scrape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Labels attached to every sample (job, instance, user labels).
    pub labels: Labels,
    /// Labels before relabeling, for the targets API.
    pub discovered: Labels,
    pub url: String,
}

/// Why a discovered label set is no target (after relabeling); the scrape
/// manager logs it and drops the set, as Prometheus does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("no address")]
    NoAddress,
    #[error("{0:?} is not a valid hostname")]
    InvalidAddress(String),
}

impl Target {
    /// Builds a target from one discovered label set; Ok(None) when
    /// `relabel_configs` dropped it.
    pub fn populate(job: &Job, discovered: Labels) -> Result<Option<Target>, TargetError> {
        let mut lb = with_job_defaults(job, &discovered);
        let discovered_full = lb.build();
        if !process_builder(&mut lb, &job.relabel) {
            return Ok(None);
        }
        finish(lb, discovered_full).map(Some)
    }
}

/// The discovered labels with the job-level defaults put in where
/// discovery did not set them: what the relabel rules see.
pub(super) fn with_job_defaults(job: &Job, discovered: &Labels) -> LabelsBuilder {
    let sc = &job.config;
    let mut lb = discovered.to_builder();
    let defaults: [(&str, String); 5] = [
        ("job", job.name.clone()),
        (SCHEME_LABEL, sc.scheme.clone()),
        (METRICS_PATH_LABEL, sc.metrics_path.clone()),
        (
            SCRAPE_INTERVAL_LABEL,
            crate::model::duration::format(job.interval),
        ),
        (
            SCRAPE_TIMEOUT_LABEL,
            crate::model::duration::format(job.timeout),
        ),
    ];
    for (k, v) in defaults {
        if lb.get(k).is_none() {
            lb.set(k, v);
        }
    }
    for (k, vs) in &sc.params {
        let name = format!("{PARAM_PREFIX}{k}");
        if let (None, Some(v)) = (lb.get(&name), vs.first()) {
            lb.set(name, v.clone());
        }
    }
    lb
}

/// The relabeled labels made a target: the URL from the `__` labels,
/// `instance` defaulted to the address, the `__` labels removed.
pub(super) fn finish(
    mut lb: LabelsBuilder,
    discovered_full: Labels,
) -> Result<Target, TargetError> {
    let Some(addr) = lb.get(ADDRESS_LABEL).map(str::to_string) else {
        return Err(TargetError::NoAddress);
    };
    if addr.contains('/') {
        return Err(TargetError::InvalidAddress(addr));
    }
    let scheme = lb.get(SCHEME_LABEL).unwrap_or("http").to_string();
    let path = lb.get(METRICS_PATH_LABEL).unwrap_or("/metrics").to_string();
    let mut params: BTreeMap<String, String> = BTreeMap::new();
    for l in lb.iter() {
        if let Some(p) = l.name.strip_prefix(PARAM_PREFIX) {
            params.insert(p.to_string(), l.value.clone());
        }
    }
    if lb.get("instance").is_none() {
        lb.set("instance", addr.clone());
    }
    // Labels starting with "__" are internal: gone after relabeling.
    lb.retain(|l| !l.name.starts_with("__"));
    let mut url = format!("{scheme}://{addr}{path}");
    if !params.is_empty() {
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
            .collect();
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&q.join("&"));
    }
    Ok(Target {
        labels: lb.build(),
        discovered: discovered_full,
        url,
    })
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The discovered label sets of a target group (one per target).
pub fn group_labels(group: &StaticConfig, extra: &[(&str, &str)]) -> Vec<Labels> {
    group
        .targets
        .iter()
        .map(|t| {
            let mut lb = LabelsBuilder::default();
            for (k, v) in &group.labels {
                lb.set(k.clone(), v.clone());
            }
            for (k, v) in extra {
                lb.set(*k, *v);
            }
            lb.set(ADDRESS_LABEL, t.clone());
            lb.build()
        })
        .collect()
}

pub type SharedJob = Arc<Job>;

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A job "app" (15s interval) with `extra` TOML lines in its table.
    pub(in crate::scrape) fn job(extra: &str) -> Job {
        let text =
            format!("[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"15s\"\n{extra}");
        let c = Config::parse(&text, "t.toml").unwrap();
        Job::from_config(&c.scrape_configs[0], &c).unwrap()
    }

    #[test]
    fn defaults_instance_and_internal_labels() {
        let j = job("params = { module = [\"http_2xx\"] }\n");
        let d = Labels::from_pairs([(ADDRESS_LABEL, "10.0.0.1:9100"), ("env", "prod")]);
        let t = Target::populate(&j, d).unwrap().unwrap();
        assert_eq!(
            t.labels,
            Labels::from_pairs([
                ("env", "prod"),
                ("instance", "10.0.0.1:9100"),
                ("job", "app")
            ])
        );
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics?module=http_2xx");
        assert_eq!(t.discovered.get(SCRAPE_INTERVAL_LABEL), Some("15s"));
    }

    /// Prometheus prints the job's durations as `model.Duration` does
    /// (`1m30s`, not `1m 30s`).
    #[test]
    fn internal_duration_labels_print_like_prometheus() {
        let text = "[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"90s\"\nscrape_timeout = \"1500ms\"\n";
        let c = Config::parse(text, "t.toml").unwrap();
        let j = Job::from_config(&c.scrape_configs[0], &c).unwrap();
        let t = Target::populate(&j, Labels::from_pairs([(ADDRESS_LABEL, "h:1")]))
            .unwrap()
            .unwrap();
        assert_eq!(t.discovered.get(SCRAPE_INTERVAL_LABEL), Some("1m30s"));
        assert_eq!(t.discovered.get(SCRAPE_TIMEOUT_LABEL), Some("1s500ms"));
    }

    #[test]
    fn relabel_can_drop_and_rewrite() {
        let j = job(
            "[[scrape_configs.relabel_configs]]\nsource_labels = [\"env\"]\nregex = \"dev\"\naction = \"drop\"\n\
             [[scrape_configs.relabel_configs]]\nsource_labels = [\"__address__\"]\nregex = \"(.*):.*\"\ntarget_label = \"instance\"\n\
             [[scrape_configs.relabel_configs]]\ntarget_label = \"__metrics_path__\"\nreplacement = \"/probe\"\n",
        );
        let dropped = Target::populate(
            &j,
            Labels::from_pairs([(ADDRESS_LABEL, "a:1"), ("env", "dev")]),
        )
        .unwrap();
        assert!(dropped.is_none());
        let t = Target::populate(&j, Labels::from_pairs([(ADDRESS_LABEL, "host:9100")]))
            .unwrap()
            .unwrap();
        assert_eq!(t.labels.get("instance"), Some("host"));
        assert_eq!(t.url, "http://host:9100/probe");
    }

    /// A set relabeling leaves without an address, or with a path in it, is
    /// no target; the error says which (the manager logs it per set).
    #[test]
    fn sets_without_a_usable_address_are_errors() {
        let j = job(
            "[[scrape_configs.relabel_configs]]\nregex = \"__address__\"\naction = \"labeldrop\"\n",
        );
        let e = Target::populate(&j, Labels::from_pairs([(ADDRESS_LABEL, "h:1")])).unwrap_err();
        assert_eq!(e, TargetError::NoAddress);
        let j = job("");
        let e = Target::populate(&j, Labels::from_pairs([(ADDRESS_LABEL, "h:1/x")])).unwrap_err();
        assert_eq!(e, TargetError::InvalidAddress("h:1/x".into()));
        assert_eq!(e.to_string(), "\"h:1/x\" is not a valid hostname");
    }
}
