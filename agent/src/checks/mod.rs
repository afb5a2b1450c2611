//! Health checks: every `[[checks]]` entry probes its target on its own
//! interval (HTTP, TCP, a `health-check` plugin or a `metric-check` plugin)
//! and appends the outcome to the store as ordinary series, so ordinary
//! alerting rules alert on them:
//!
//! - `wasmon_check_up{check, target}`: 1 when the check passed, else 0;
//! - `wasmon_check_duration_seconds{check, target}`: how long it took;
//! - `wasmon_check_value{check, target}`: the measured value, when there is one;
//! - plus the samples a plugin returns (with `check` and `target` added).
//!
//! The last result of every check is kept for `GET /api/v1/checks`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::checks::{CheckConfig, CheckKind, StatusList};
use crate::config::{InstanceConfig, PluginsConfig};
use crate::model::Labels;
use crate::plugins::bindings::types as wit;
use crate::plugins::{Instance, PluginRuntime, Policy};
use crate::storage::Appendable;

impl StatusList {
    fn codes(&self) -> Vec<u16> {
        match self {
            StatusList::One(c) => vec![*c],
            StatusList::Many(v) => v.clone(),
        }
    }
}

impl CheckConfig {
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// The plugin instance of a `plugin`/`metric` check, in the form every
    /// plugin instance has (validated and prepared like receivers).
    pub fn instance(&self) -> Option<InstanceConfig> {
        let plugin = self.plugin.clone()?;
        Some(InstanceConfig {
            name: self.name.clone(),
            plugin,
            config: self.config.clone(),
            allow_hosts: self.allow_hosts.clone(),
            timeout: Some(self.timeout),
            memory_limit: self.memory_limit,
            send_resolved: None,
            http_config: None,
            receiver: None,
        })
    }

    /// What serde cannot check. The caller adds file:line.
    pub fn validate(&self) -> Result<()> {
        let name = self.name();
        if name.is_empty() {
            bail!("check name must not be empty");
        }
        if self.interval.is_zero() || self.timeout.is_zero() {
            bail!("check {name:?}: interval and timeout must be greater than 0");
        }
        match self.kind {
            CheckKind::Http => {
                let url = self
                    .url
                    .as_deref()
                    .with_context(|| format!("check {name:?}: an http check needs `url`"))?;
                reqwest::Url::parse(url).with_context(|| format!("check {name:?}: url"))?;
                if let Some(re) = &self.body_regex {
                    regex::Regex::new(re).with_context(|| format!("check {name:?}: body_regex"))?;
                }
                if let Some(m) = &self.method {
                    reqwest::Method::from_bytes(m.as_bytes())
                        .with_context(|| format!("check {name:?}: method {m:?}"))?;
                }
            }
            CheckKind::Tcp => {
                if !self.target.contains(':') {
                    bail!("check {name:?}: a tcp check needs `target` = \"host:port\"");
                }
            }
            CheckKind::Plugin | CheckKind::Metric => {
                if self.plugin.as_deref().unwrap_or("").is_empty() {
                    bail!("check {name:?}: a {:?} check needs `plugin`", self.kind);
                }
            }
        }
        if self.kind != CheckKind::Http && self.url.is_some() {
            bail!("check {name:?}: `url` is for http checks");
        }
        Ok(())
    }
}

/// A check ready to run.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub target: String,
    pub kind: CheckKind,
    pub interval: Duration,
    pub timeout: Duration,
    probe: Probe,
}

#[derive(Debug, Clone)]
enum Probe {
    Http {
        url: String,
        method: reqwest::Method,
        headers: Vec<(String, String)>,
        expected: Vec<u16>,
        body_regex: Option<regex::Regex>,
        max_latency: Option<Duration>,
    },
    Tcp {
        max_latency: Option<Duration>,
    },
    Plugin(Instance),
    Metric(Instance),
}

impl Check {
    pub fn prepare(cfg: &CheckConfig, defaults: &PluginsConfig) -> Result<Check> {
        cfg.validate()?;
        let probe = match cfg.kind {
            CheckKind::Http => Probe::Http {
                url: cfg.url.clone().unwrap_or_default(),
                method: cfg
                    .method
                    .as_deref()
                    .map(|m| reqwest::Method::from_bytes(m.as_bytes()))
                    .transpose()?
                    .unwrap_or(reqwest::Method::GET),
                headers: cfg
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_string()))
                    .collect(),
                expected: cfg
                    .expected_status
                    .as_ref()
                    .map(StatusList::codes)
                    .unwrap_or_default(),
                body_regex: cfg
                    .body_regex
                    .as_deref()
                    .map(regex::Regex::new)
                    .transpose()?,
                max_latency: cfg.max_latency,
            },
            CheckKind::Tcp => Probe::Tcp {
                max_latency: cfg.max_latency,
            },
            CheckKind::Plugin | CheckKind::Metric => {
                let inst = Instance::prepare(&cfg.instance().expect("validated"), defaults)?;
                if cfg.kind == CheckKind::Plugin {
                    Probe::Plugin(inst)
                } else {
                    Probe::Metric(inst)
                }
            }
        };
        let target = if cfg.target.is_empty() {
            cfg.url.clone().unwrap_or_default()
        } else {
            cfg.target.clone()
        };
        Ok(Check {
            name: cfg.name().to_string(),
            target,
            kind: cfg.kind,
            interval: cfg.interval,
            timeout: cfg.timeout,
            probe,
        })
    }
}

/// The verdict of one run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub ok: bool,
    pub message: String,
    pub value: Option<f64>,
    pub duration_seconds: f64,
    #[serde(skip)]
    pub samples: Vec<wit::Sample>,
}

/// The last result of one check (`GET /api/v1/checks`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckStatus {
    pub name: String,
    pub kind: CheckKind,
    pub target: String,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// "up", "down" or "unknown" (not run yet).
    pub health: &'static str,
    pub last_run: Option<chrono::DateTime<chrono::Utc>>,
    pub last: Option<Outcome>,
    /// Consecutive failed runs.
    pub failures: u64,
}

/// A run of a check asked for by a person, shared by everyone who asks
/// while it runs.
type ManualRun = futures::future::Shared<futures::future::BoxFuture<'static, Option<Outcome>>>;

/// Runs the configured checks; a reload replaces them all.
pub struct CheckManager {
    store: Arc<dyn Appendable>,
    plugins: Arc<PluginRuntime>,
    http: reqwest::Client,
    status: Arc<Mutex<BTreeMap<String, CheckStatus>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// The checks of the current config, by name (for runs on demand).
    checks: Mutex<BTreeMap<String, Check>>,
    /// Runs on demand in progress, by check name.
    manual: Mutex<BTreeMap<String, ManualRun>>,
}

/// What [`CheckManager::run_now`] did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunNow {
    /// The check's status after the run.
    #[serde(flatten)]
    pub status: CheckStatus,
    /// This request joined a run already in progress (asked for by another
    /// request) instead of starting one.
    pub coalesced: bool,
}

impl CheckManager {
    pub fn new(store: Arc<dyn Appendable>, plugins: Arc<PluginRuntime>) -> Arc<CheckManager> {
        Arc::new(CheckManager {
            store,
            plugins,
            http: reqwest::Client::builder()
                .user_agent(concat!("wasmon/", env!("CARGO_PKG_VERSION")))
                .build()
                .expect("HTTP client"),
            status: Arc::default(),
            tasks: Mutex::default(),
            checks: Mutex::default(),
            manual: Mutex::default(),
        })
    }

    /// Stops the running checks and starts `checks`. The last results of
    /// checks that keep their name survive.
    pub fn apply(self: &Arc<Self>, checks: Vec<Check>) {
        self.stop();
        {
            let mut status = self.status.lock().unwrap();
            let keep: BTreeMap<String, CheckStatus> = checks
                .iter()
                .map(|c| {
                    let prev = status.remove(&c.name);
                    let mut s = CheckStatus {
                        name: c.name.clone(),
                        kind: c.kind,
                        target: c.target.clone(),
                        interval: c.interval,
                        health: "unknown",
                        last_run: None,
                        last: None,
                        failures: 0,
                    };
                    if let Some(p) = prev.filter(|p| p.kind == c.kind && p.target == c.target) {
                        s.health = p.health;
                        s.last_run = p.last_run;
                        s.last = p.last;
                        s.failures = p.failures;
                    }
                    (c.name.clone(), s)
                })
                .collect();
            *status = keep;
        }
        *self.checks.lock().unwrap() = checks.iter().map(|c| (c.name.clone(), c.clone())).collect();
        let mut tasks = self.tasks.lock().unwrap();
        for c in checks {
            let me = self.clone();
            tasks.push(tokio::spawn(async move { me.run_loop(c).await }));
        }
    }

    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// The last result of every check, by name.
    pub fn statuses(&self) -> Vec<CheckStatus> {
        self.status.lock().unwrap().values().cloned().collect()
    }

    async fn run_loop(self: Arc<Self>, check: Check) {
        let mut tick = tokio::time::interval(check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let outcome = self.run_once(&check).await;
            self.finish(&check, &outcome);
        }
    }

    /// Stores a run's outcome: the check's series and its status.
    fn finish(&self, check: &Check, outcome: &Outcome) {
        let now = chrono::Utc::now();
        self.record(check, outcome, now.timestamp_millis());
        if let Some(s) = self.status.lock().unwrap().get_mut(&check.name) {
            s.health = if outcome.ok { "up" } else { "down" };
            s.failures = if outcome.ok { 0 } else { s.failures + 1 };
            s.last_run = Some(now);
            s.last = Some(outcome.clone());
        }
        if !outcome.ok {
            tracing::debug!(check = %check.name, target = %check.target, message = %outcome.message, "check failed");
        }
    }

    /// Runs the check `name` now (`POST /api/v1/checks/NAME/run`), stores
    /// the result as a scheduled run does, and returns it; None when there
    /// is no such check. Requests for a check that is already being run on
    /// demand wait for that run and share its result (`coalesced`) rather
    /// than start another. A plugin check is run even while its circuit is
    /// open (a person asked), and a pass closes the circuit.
    pub async fn run_now(self: &Arc<Self>, name: &str) -> Option<RunNow> {
        use futures::FutureExt;
        let check = self.checks.lock().unwrap().get(name).cloned()?;
        let (run, coalesced) = {
            let mut manual = self.manual.lock().unwrap();
            match manual.get(name) {
                Some(run) => (run.clone(), true),
                None => {
                    let me = self.clone();
                    // A task of its own, not the request's: a client that
                    // goes away does not cancel a run others wait for.
                    let task = tokio::spawn(async move {
                        let outcome = me.run_once_with(&check, Policy::Manual).await;
                        me.finish(&check, &outcome);
                        me.manual.lock().unwrap().remove(&check.name);
                        outcome
                    });
                    let run: ManualRun = task.map(Result::ok).boxed().shared();
                    manual.insert(name.to_string(), run.clone());
                    (run, false)
                }
            }
        };
        run.await?;
        let status = self.status.lock().unwrap().get(name).cloned()?;
        Some(RunNow { status, coalesced })
    }

    /// Runs `check` once.
    pub async fn run_once(&self, check: &Check) -> Outcome {
        self.run_once_with(
            check,
            Policy::Guarded {
                remember_permanent: false,
            },
        )
        .await
    }

    /// Runs `check` once; `policy` is the failure policy of a plugin call.
    async fn run_once_with(&self, check: &Check, policy: Policy) -> Outcome {
        let start = Instant::now();
        let (ok, message, value, samples) = match &check.probe {
            Probe::Http {
                url,
                method,
                headers,
                expected,
                body_regex,
                max_latency,
            } => {
                let mut req = self
                    .http
                    .request(method.clone(), url)
                    .timeout(check.timeout);
                for (k, v) in headers {
                    req = req.header(k, v);
                }
                match req.send().await {
                    Err(e) => (false, format!("request failed: {e}"), None, vec![]),
                    Ok(resp) => {
                        let status = resp.status().as_u16();
                        let body = resp.text().await.unwrap_or_default();
                        let latency = start.elapsed();
                        let status_ok = if expected.is_empty() {
                            (200..300).contains(&status)
                        } else {
                            expected.contains(&status)
                        };
                        let status_sample = sample(
                            "wasmon_check_http_status_code",
                            &check.name,
                            &check.target,
                            status as f64,
                        );
                        let verdict = if !status_ok {
                            Err(format!("HTTP {status}"))
                        } else if body_regex.as_ref().is_some_and(|re| !re.is_match(&body)) {
                            Err(format!("HTTP {status}: body does not match body_regex"))
                        } else if max_latency.is_some_and(|m| latency > m) {
                            Err(format!(
                                "HTTP {status} in {latency:?}: slower than max_latency"
                            ))
                        } else {
                            Ok(format!("HTTP {status} in {latency:?}"))
                        };
                        let (ok, m) = match verdict {
                            Ok(m) => (true, m),
                            Err(m) => (false, m),
                        };
                        (ok, m, Some(latency.as_secs_f64()), vec![status_sample])
                    }
                }
            }
            Probe::Tcp { max_latency } => {
                match tokio::time::timeout(
                    check.timeout,
                    tokio::net::TcpStream::connect(&check.target),
                )
                .await
                {
                    Err(_) => (
                        false,
                        format!("connect timed out after {:?}", check.timeout),
                        None,
                        vec![],
                    ),
                    Ok(Err(e)) => (false, format!("connect failed: {e}"), None, vec![]),
                    Ok(Ok(_)) => {
                        let latency = start.elapsed();
                        if max_latency.is_some_and(|m| latency > m) {
                            (
                                false,
                                format!("connected in {latency:?}: slower than max_latency"),
                                Some(latency.as_secs_f64()),
                                vec![],
                            )
                        } else {
                            (
                                true,
                                format!("connected in {latency:?}"),
                                Some(latency.as_secs_f64()),
                                vec![],
                            )
                        }
                    }
                }
            }
            Probe::Plugin(inst) => {
                let req = wit::CheckRequest {
                    check: check.name.clone(),
                    target: check.target.clone(),
                    timeout_ms: check.timeout.as_millis().min(u32::MAX as u128) as u32,
                };
                match self.plugins.check_with(inst, &req, policy).await {
                    Ok((r, _)) => (r.ok, r.message, r.value, r.samples),
                    Err(e) => (false, format!("plugin: {e}"), None, vec![]),
                }
            }
            Probe::Metric(inst) => {
                match evaluate_metric_check(&self.plugins, inst, &check.name, policy).await {
                    Ok(r) => (r.ok, r.message, r.value, r.samples),
                    Err(e) => (false, format!("plugin: {e}"), None, vec![]),
                }
            }
        };
        Outcome {
            ok,
            message,
            value,
            duration_seconds: start.elapsed().as_secs_f64(),
            samples,
        }
    }

    /// Appends the host's series and the plugin's samples.
    fn record(&self, check: &Check, o: &Outcome, now_ms: i64) {
        let mut app = self.store.appender();
        let mut put = |labels: Labels, t: i64, v: f64| {
            if let Err(e) = app.append(&labels, t, v) {
                tracing::debug!(check = %check.name, series = ?labels, error = %e, "check sample rejected");
            }
        };
        let host = |metric: &str| {
            Labels::from_pairs([
                ("__name__", metric),
                ("check", check.name.as_str()),
                ("target", check.target.as_str()),
            ])
        };
        put(
            host("wasmon_check_up"),
            now_ms,
            if o.ok { 1.0 } else { 0.0 },
        );
        put(
            host("wasmon_check_duration_seconds"),
            now_ms,
            o.duration_seconds,
        );
        if let Some(value) = o.value {
            put(host("wasmon_check_value"), now_ms, value);
        }
        for s in &o.samples {
            let mut pairs: Vec<(String, String)> = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            if !pairs.iter().any(|(n, _)| n == "__name__") {
                continue;
            }
            for (n, v) in [("check", &check.name), ("target", &check.target)] {
                if !pairs.iter().any(|(k, _)| k == n) {
                    pairs.push((n.to_string(), v.clone()));
                }
            }
            let t = if s.timestamp_ms > 0 {
                s.timestamp_ms
            } else {
                now_ms
            };
            put(Labels::from_pairs(pairs), t, s.value);
        }
        // A commit fails only when the WAL refuses the write: the store
        // logs that (at most once a minute) and counts the samples.
        if let Err(e) = app.commit() {
            tracing::debug!(check = %check.name, error = %format!("{e:#}"), "appending check results");
        }
    }
}

/// Calls a `metric-check` plugin instance at the current time.
pub async fn evaluate_metric_check(
    plugins: &PluginRuntime,
    inst: &Instance,
    check: &str,
    policy: Policy,
) -> Result<wit::CheckResult, crate::plugins::CallError> {
    let time_ms = crate::clock::now_ms();
    let req = wit::MetricCheckRequest {
        check: check.to_string(),
        time_ms,
    };
    plugins
        .evaluate_with(inst, &req, policy)
        .await
        .map(|(r, _)| r)
}

fn sample(metric: &str, check: &str, target: &str, value: f64) -> wit::Sample {
    wit::Sample {
        labels: [("__name__", metric), ("check", check), ("target", target)]
            .iter()
            .map(|(n, v)| wit::Label {
                name: n.to_string(),
                value: v.to_string(),
            })
            .collect(),
        value,
        timestamp_ms: 0,
    }
}

/// Validates every check: unique names, kind-specific keys, plugin instance
/// config and allow-lists. `at` turns a span into `file:line`.
pub fn validate_all(
    checks: &[CheckConfig],
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<()> {
    let mut seen = BTreeMap::new();
    for c in checks {
        let here = at(c.name.span());
        if let Some(first) = seen.insert(c.name().to_string(), c.name.span()) {
            bail!(
                "{here}: duplicate check name {:?} (first defined at {})",
                c.name(),
                at(first)
            );
        }
        c.validate().with_context(|| here.clone())?;
        if let Some(i) = c.instance() {
            validate_instance(&i, &format!("check {:?}", c.name()), at)?;
        }
    }
    Ok(())
}

/// Validates a plugin instance embedded in a check or a rollout.
pub(crate) fn validate_instance(
    i: &InstanceConfig,
    what: &str,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<()> {
    i.validate(what).with_context(|| at(i.name.span()))?;
    for h in &i.allow_hosts {
        crate::config::hosts::HostPattern::parse(h.get_ref())
            .with_context(|| format!("{}: {what}: allow_hosts", at(h.span())))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The guide's sections on `[[checks]]` and `[[rollouts]]`.
    fn guide_section(title: &str) -> &'static str {
        let guide = include_str!("../../../docs/plugin-guide.md");
        let start = guide
            .find(&format!("\n## {title}"))
            .unwrap_or_else(|| panic!("no section {title:?} in the guide"));
        let rest = &guide[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |e| e + 3);
        &rest[..end]
    }

    fn toml_blocks(section: &str) -> Vec<String> {
        section
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap().to_string())
            .collect()
    }

    /// The keys a config struct has, by serializing one.
    fn keys(v: impl serde::Serialize) -> Vec<String> {
        serde_json::to_value(v)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    /// Every key of `[[checks]]` and `[[rollouts]]` (and their tables) is
    /// in the guide's tables, and the guide's examples are valid configs.
    #[test]
    fn the_guide_documents_every_check_and_rollout_key_with_examples_that_parse() {
        let checks = guide_section("Health checks");
        let rollouts = guide_section("Rollouts");
        let mut parsed = Vec::new();
        for block in toml_blocks(checks).iter().chain(&toml_blocks(rollouts)) {
            // Examples take credentials from the environment: read them as
            // literal text here.
            let text = block.replace("${", "$${");
            parsed.push(
                crate::config::Config::parse(&text, "plugin-guide.md")
                    .unwrap_or_else(|e| panic!("{e:#}\n{block}")),
            );
        }
        let c = parsed.iter().flat_map(|c| &c.checks).collect::<Vec<_>>();
        let r = parsed.iter().flat_map(|c| &c.rollouts).collect::<Vec<_>>();
        assert!(c.len() >= 4 && r.len() == 1, "examples missing");
        let documented = |section: &str, key: &str| {
            section.contains(&format!("| `{key}` |"))
                || section.contains(&format!("| `[[rollouts.{key}]]` |"))
                || section.contains(&format!("| `[rollouts.{key}]` |"))
        };
        for key in keys(c[0]) {
            assert!(
                documented(checks, &key),
                "[[checks]] {key} is not documented"
            );
        }
        let rollout = r[0];
        for key in keys(rollout) {
            assert!(
                documented(rollouts, &key),
                "[[rollouts]] {key} is not documented"
            );
        }
        for key in keys(&rollout.metrics[0]) {
            assert!(documented(rollouts, &key), "rollouts.metrics {key}");
        }
        for key in keys(rollout.rollback.as_ref().unwrap()) {
            // Receivers only.
            if key != "send_resolved" {
                assert!(documented(rollouts, &key), "plugin instance {key}");
            }
        }
    }
}
