//! Rollouts: canary analysis and automated rollback, with Flagger/Argo
//! Rollouts semantics.
//!
//! A rollout is started by `POST /api/v1/rollouts/NAME/start` or by a change
//! of the version label that its `version_query` returns. Then, every
//! `interval`, every check is evaluated (PromQL thresholds and `metric-check`
//! plugin instances). A failed evaluation counts one failure; at `threshold`
//! failures the rollback action (a `rollback-action` plugin instance) runs,
//! the decision is logged and kept with the checks that triggered it, and a
//! critical `RolloutRolledBack` alert enters the alert pipeline. Recovery is
//! then verified for `verify`: the first passing evaluation resolves the
//! alert; a window without one fires `RolloutStillFailing`. A rollout that
//! stays under the threshold for `soak` becomes stable (`Succeeded`).
//!
//! ```text
//!  Idle/Succeeded/RolledBack --start--> Progressing --soak, failures < threshold--> Succeeded
//!                                            | failures >= threshold: rollback action
//!                                            v
//!                                        Verifying --checks pass--> RolledBack (alert resolved)
//!                                            | verify window over, still failing
//!                                            v
//!                                        StillFailing --checks pass--> RolledBack
//! ```
//!
//! State (phase, versions, failures, decision history) is written to
//! `rollouts.json` in the data dir on every change and read back at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::rollout::{MetricConfig, RolloutConfig};
use crate::config::PluginsConfig;
use crate::model::Labels;
use crate::plugins::bindings::types as wit;
use crate::plugins::host::QueryApi;
use crate::plugins::{Instance, PluginRuntime};
use crate::rules::group::{AlertSink, OutgoingAlert};

mod incident_hook;

/// How many decisions a rollout's history keeps.
const HISTORY: usize = 100;

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

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Phase {
    /// Nothing under analysis.
    #[default]
    Idle,
    /// A new version is being analysed.
    Progressing,
    /// Rolled back; waiting for the checks to pass again.
    Verifying,
    /// Rolled back and recovered.
    RolledBack,
    /// Rolled back, and the checks still fail after the verify window.
    StillFailing,
    /// Soaked without reaching the threshold: the version is stable.
    Succeeded,
}

/// One check's verdict in one evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    pub check: String,
    pub ok: bool,
    pub value: Option<f64>,
    pub message: String,
}

/// One evaluation of all checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluation {
    pub at: DateTime<Utc>,
    pub passed: bool,
    pub checks: Vec<Verdict>,
}

impl Evaluation {
    /// The failed checks, for logs, alerts and the rollback request.
    pub fn reason(&self) -> String {
        let failed: Vec<String> = self
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| match c.value {
                Some(v) => format!("{}={v} ({})", c.check, c.message),
                None => format!("{} ({})", c.check, c.message),
            })
            .collect();
        if failed.is_empty() {
            "all checks passed".to_string()
        } else {
            format!("failed checks: {}", failed.join("; "))
        }
    }
}

/// One decision in a rollout's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub at: DateTime<Utc>,
    /// started, check_failed, rolled_back, rollback_failed, recovered,
    /// still_failing, succeeded.
    pub event: String,
    pub phase: Phase,
    pub version: Option<String>,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Verdict>,
}

/// A rollout's persisted state.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    pub phase: Phase,
    /// The version under analysis (or last analysed).
    pub version: Option<String>,
    /// The version to return to.
    pub stable_version: Option<String>,
    pub failures: u32,
    pub started_at: Option<DateTime<Utc>>,
    pub phase_since: Option<DateTime<Utc>>,
    pub rolled_back_at: Option<DateTime<Utc>>,
    /// What the rollback action said.
    pub rollback_message: Option<String>,
    /// Why the rollout was rolled back.
    pub rollback_reason: Option<String>,
    /// The version `version_query` returned last.
    pub observed_version: Option<String>,
    pub last_evaluation: Option<Evaluation>,
    pub history: Vec<Decision>,
}

impl RolloutState {
    fn decide(&mut self, now: DateTime<Utc>, event: &str, message: String, checks: Vec<Verdict>) {
        self.history.push(Decision {
            at: now,
            event: event.to_string(),
            phase: self.phase,
            version: self.version.clone(),
            message,
            checks,
        });
        if self.history.len() > HISTORY {
            let extra = self.history.len() - HISTORY;
            self.history.drain(..extra);
        }
    }

    fn set_phase(&mut self, phase: Phase, now: DateTime<Utc>) {
        self.phase = phase;
        self.phase_since = Some(now);
    }
}

/// Runs the configured rollouts and keeps their state.
pub struct RolloutManager {
    plugins: Arc<PluginRuntime>,
    query: Arc<dyn QueryApi>,
    sink: Arc<dyn AlertSink>,
    file: crate::fsutil::StateFile,
    external_url: Mutex<String>,
    rollouts: Mutex<BTreeMap<String, Arc<Rollout>>>,
    state: Mutex<BTreeMap<String, RolloutState>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Where decisions go on incident timelines (see `incident_hook.rs`).
    incidents: incident_hook::Hook,
}

/// Why a start request was refused.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no rollout named {0:?}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

impl RolloutManager {
    /// `path` is the state file; its content, if any, is loaded.
    pub fn new(
        plugins: Arc<PluginRuntime>,
        query: Arc<dyn QueryApi>,
        sink: Arc<dyn AlertSink>,
        path: PathBuf,
    ) -> Arc<RolloutManager> {
        let state = match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "unreadable rollout state; starting afresh");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read the rollout state; starting afresh");
                BTreeMap::new()
            }
        };
        Arc::new(RolloutManager {
            plugins,
            query,
            sink,
            file: crate::fsutil::StateFile::new(path, "the rollout state"),
            external_url: Mutex::default(),
            rollouts: Mutex::default(),
            state: Mutex::new(state),
            tasks: Mutex::default(),
            incidents: Default::default(),
        })
    }

    /// Replaces the configured rollouts (state is kept by name).
    pub fn apply(self: &Arc<Self>, rollouts: Vec<Rollout>, external_url: &str) {
        self.stop();
        *self.external_url.lock().unwrap() = external_url.trim_end_matches('/').to_string();
        let map: BTreeMap<String, Arc<Rollout>> = rollouts
            .into_iter()
            .map(|r| (r.name.clone(), Arc::new(r)))
            .collect();
        {
            let mut state = self.state.lock().unwrap();
            for name in map.keys() {
                state.entry(name.clone()).or_default();
            }
        }
        let mut tasks = self.tasks.lock().unwrap();
        for r in map.values() {
            let (me, r) = (self.clone(), r.clone());
            tasks.push(tokio::spawn(async move { me.run_loop(r).await }));
        }
        *self.rollouts.lock().unwrap() = map;
    }

    pub fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    /// Every configured rollout with its state.
    pub fn list(&self) -> Vec<(Arc<Rollout>, RolloutState)> {
        let rollouts = self.rollouts.lock().unwrap().clone();
        let state = self.state.lock().unwrap();
        rollouts
            .into_values()
            .map(|r| {
                let s = state.get(&r.name).cloned().unwrap_or_default();
                (r, s)
            })
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<(Arc<Rollout>, RolloutState)> {
        let r = self.rollouts.lock().unwrap().get(name).cloned()?;
        let s = self
            .state
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .unwrap_or_default();
        Some((r, s))
    }

    /// Starts analysing `version` (the API's start).
    pub fn start(
        &self,
        name: &str,
        version: &str,
        stable: Option<&str>,
        why: &str,
    ) -> Result<RolloutState, StartError> {
        let rollout = self
            .rollouts
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| StartError::NotFound(name.to_string()))?;
        if version.is_empty() {
            return Err(StartError::Invalid("version must not be empty".into()));
        }
        let now = Utc::now();
        let mut resolved = Vec::new();
        let s = {
            let mut all = self.state.lock().unwrap();
            let s = all.entry(name.to_string()).or_default();
            if matches!(s.phase, Phase::Verifying | Phase::StillFailing) {
                resolved = self.alerts(&rollout, s, now, false);
            }
            if let Some(stable) = stable {
                s.stable_version = Some(stable.to_string());
            } else if matches!(s.phase, Phase::Idle | Phase::Succeeded)
                && s.version.as_deref().is_some_and(|v| v != version)
            {
                s.stable_version = s.version.clone();
            }
            s.version = Some(version.to_string());
            s.failures = 0;
            s.started_at = Some(now);
            s.rolled_back_at = None;
            s.rollback_message = None;
            s.rollback_reason = None;
            s.last_evaluation = None;
            s.set_phase(Phase::Progressing, now);
            s.decide(
                now,
                "started",
                format!(
                    "analysing {version} ({why}); stable version {}",
                    s.stable_version.as_deref().unwrap_or("unknown")
                ),
                vec![],
            );
            s.clone()
        };
        tracing::info!(rollout = %name, version, stable = s.stable_version.as_deref().unwrap_or(""), why, "rollout started");
        if !resolved.is_empty() {
            self.sink.send(resolved);
        }
        self.save();
        Ok(s)
    }

    async fn run_loop(self: Arc<Self>, r: Arc<Rollout>) {
        let mut tick = tokio::time::interval(r.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.tick(&r).await;
        }
    }

    /// One interval of one rollout.
    pub async fn tick(&self, r: &Rollout) {
        if self.file.is_behind() {
            self.save();
        }
        if let Some(q) = &r.version_query {
            self.watch_version(r, q).await;
        }
        let (phase, version, failures) = {
            let all = self.state.lock().unwrap();
            let s = all.get(&r.name).cloned().unwrap_or_default();
            (s.phase, s.version, s.failures)
        };
        if !matches!(
            phase,
            Phase::Progressing | Phase::Verifying | Phase::StillFailing
        ) {
            return;
        }
        // A rollback that failed is retried before anything else.
        if phase == Phase::Progressing && failures >= r.threshold {
            self.roll_back(r, version).await;
            return;
        }
        let eval = self.evaluate(r).await;
        let now = Utc::now();
        let mut out = Vec::new();
        let mut rollback = false;
        {
            let mut all = self.state.lock().unwrap();
            let s = all.entry(r.name.clone()).or_default();
            if s.phase != phase || s.version != version {
                return; // restarted meanwhile
            }
            s.last_evaluation = Some(eval.clone());
            match phase {
                Phase::Progressing => {
                    if !eval.passed {
                        s.failures += 1;
                        s.decide(
                            now,
                            "check_failed",
                            format!("failure {}/{}: {}", s.failures, r.threshold, eval.reason()),
                            eval.checks.clone(),
                        );
                        tracing::warn!(rollout = %r.name, version = version.as_deref().unwrap_or(""), failures = s.failures, threshold = r.threshold, reason = %eval.reason(), "rollout analysis failed");
                        rollback = s.failures >= r.threshold;
                    }
                    let soaked = s
                        .started_at
                        .is_some_and(|t| (now - t).to_std().unwrap_or_default() >= r.soak);
                    if !rollback && soaked {
                        s.set_phase(Phase::Succeeded, now);
                        s.stable_version = s.version.clone();
                        s.decide(
                            now,
                            "succeeded",
                            format!(
                                "soaked {} with {} of {} failures: stable",
                                humantime::format_duration(r.soak),
                                s.failures,
                                r.threshold
                            ),
                            vec![],
                        );
                        tracing::info!(rollout = %r.name, version = version.as_deref().unwrap_or(""), "rollout succeeded");
                    }
                }
                Phase::Verifying | Phase::StillFailing => {
                    if eval.passed {
                        out = self.alerts(r, s, now, false);
                        s.set_phase(Phase::RolledBack, now);
                        s.decide(
                            now,
                            "recovered",
                            "checks pass again after the rollback".to_string(),
                            eval.checks.clone(),
                        );
                        tracing::info!(rollout = %r.name, "rollout recovered after rollback");
                    } else {
                        let over = s
                            .rolled_back_at
                            .is_some_and(|t| (now - t).to_std().unwrap_or_default() >= r.verify);
                        if phase == Phase::Verifying && over {
                            s.set_phase(Phase::StillFailing, now);
                            s.decide(
                                now,
                                "still_failing",
                                format!(
                                    "still failing {} after the rollback: {}",
                                    humantime::format_duration(r.verify),
                                    eval.reason()
                                ),
                                eval.checks.clone(),
                            );
                            tracing::error!(rollout = %r.name, reason = %eval.reason(), "rollout still failing after rollback");
                        }
                        out = self.alerts(r, s, now, true);
                    }
                }
                _ => {}
            }
        }
        if !out.is_empty() {
            self.sink.send(out);
        }
        self.save();
        if rollback {
            self.roll_back(r, version).await;
        }
    }

    /// Calls the rollback action and moves to `Verifying`.
    async fn roll_back(&self, r: &Rollout, version: Option<String>) {
        let (stable, reason) = {
            let all = self.state.lock().unwrap();
            let s = all.get(&r.name).cloned().unwrap_or_default();
            let reason = s
                .last_evaluation
                .as_ref()
                .map(Evaluation::reason)
                .unwrap_or_default();
            (s.stable_version, reason)
        };
        let failed = version.clone().unwrap_or_default();
        let result = match &r.rollback {
            None => Ok("no rollback action configured: alert only".to_string()),
            Some(inst) => {
                let req = wit::RollbackRequest {
                    rollout: r.name.clone(),
                    target: r.target.clone(),
                    failed_version: failed.clone(),
                    stable_version: stable.clone().unwrap_or_default(),
                    reason: reason.clone(),
                };
                self.plugins
                    .rollback(inst, &req)
                    .await
                    .map(|(o, _)| match o.current_version {
                        Some(v) => format!("{} (now serving {v})", o.message),
                        None => o.message,
                    })
                    .map_err(|e| e.to_string())
            }
        };
        let now = Utc::now();
        let mut out = Vec::new();
        {
            let mut all = self.state.lock().unwrap();
            let s = all.entry(r.name.clone()).or_default();
            if s.phase != Phase::Progressing || s.version != version {
                return;
            }
            let checks = s
                .last_evaluation
                .as_ref()
                .map(|e| e.checks.clone())
                .unwrap_or_default();
            match result {
                Ok(message) => {
                    s.set_phase(Phase::Verifying, now);
                    s.rolled_back_at = Some(now);
                    s.rollback_reason = Some(reason.clone());
                    s.rollback_message = Some(message.clone());
                    s.decide(
                        now,
                        "rolled_back",
                        format!(
                            "rolled back {failed} to {} after {} failed evaluations ({reason}): {message}",
                            stable.as_deref().unwrap_or("the previous version"),
                            s.failures
                        ),
                        checks,
                    );
                    tracing::warn!(rollout = %r.name, failed_version = %failed, stable_version = stable.as_deref().unwrap_or(""), reason = %reason, action = %message, "rollout rolled back");
                    out = self.alerts(r, s, now, true);
                }
                Err(e) => {
                    s.decide(
                        now,
                        "rollback_failed",
                        format!("rollback action failed (retrying every interval): {e}"),
                        checks,
                    );
                    tracing::error!(rollout = %r.name, failed_version = %failed, error = %e, "rollback action failed");
                    out.push(self.alert(
                        r,
                        s,
                        "RolloutRollbackFailed",
                        format!("Rollout {}: rolling back {failed} failed", r.name),
                        e,
                        now,
                        now,
                        true,
                    ));
                }
            }
        }
        self.sink.send(out);
        self.save();
    }

    /// Follows `version_query`: a new version (not the stable one) starts
    /// a rollout; the first one ever seen is taken as stable.
    async fn watch_version(&self, r: &Rollout, q: &str) {
        let now_ms = Utc::now().timestamp_millis();
        let samples = match self.query.instant(q.to_string(), now_ms).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(rollout = %r.name, error = %e, "version_query failed");
                return;
            }
        };
        let mut versions: Vec<String> = samples
            .iter()
            .filter_map(|s| {
                s.labels
                    .iter()
                    .find(|l| l.name == r.version_label)
                    .map(|l| l.value.clone())
            })
            .collect();
        versions.sort();
        versions.dedup();
        let (observed_before, stable, current) = {
            let all = self.state.lock().unwrap();
            let s = all.get(&r.name).cloned().unwrap_or_default();
            (s.observed_version, s.stable_version, s.version)
        };
        // While two versions run side by side (a canary), the new one is
        // the one that is not stable.
        let seen = match versions.as_slice() {
            [] => return,
            [one] => one.clone(),
            many => {
                let new: Vec<&String> = many
                    .iter()
                    .filter(|v| Some(v.as_str()) != stable.as_deref())
                    .collect();
                match new.as_slice() {
                    [one] => (*one).clone(),
                    _ => return,
                }
            }
        };
        if observed_before.as_deref() == Some(seen.as_str()) {
            return;
        }
        let start = match &observed_before {
            None if current.is_none() => {
                let mut all = self.state.lock().unwrap();
                let s = all.entry(r.name.clone()).or_default();
                s.observed_version = Some(seen.clone());
                s.version = Some(seen.clone());
                s.stable_version = Some(seen.clone());
                tracing::info!(rollout = %r.name, version = %seen, "first version seen: taken as stable");
                false
            }
            None => {
                current.as_deref() != Some(seen.as_str())
                    && stable.as_deref() != Some(seen.as_str())
            }
            Some(_) => stable.as_deref() != Some(seen.as_str()),
        };
        {
            let mut all = self.state.lock().unwrap();
            all.entry(r.name.clone()).or_default().observed_version = Some(seen.clone());
        }
        if start {
            let why = format!(
                "{} label changed from {}",
                r.version_label,
                observed_before.as_deref().unwrap_or("(unknown)")
            );
            let _ = self.start(&r.name, &seen, None, &why);
        } else {
            self.save();
        }
    }

    /// Evaluates every check of `r` now.
    pub async fn evaluate(&self, r: &Rollout) -> Evaluation {
        let now = Utc::now();
        let mut checks = Vec::new();
        for m in &r.metrics {
            let v = match self
                .query
                .instant(m.query.clone(), now.timestamp_millis())
                .await
            {
                Err(e) => Verdict {
                    check: m.name.clone(),
                    ok: false,
                    value: None,
                    message: format!("query failed: {e}"),
                },
                Ok(samples) => match samples.as_slice() {
                    [] => Verdict {
                        check: m.name.clone(),
                        ok: false,
                        value: None,
                        message: "no data".to_string(),
                    },
                    [one] => {
                        let (ok, message) = in_range(one.value, m.min, m.max);
                        Verdict {
                            check: m.name.clone(),
                            ok,
                            value: Some(one.value),
                            message,
                        }
                    }
                    many => Verdict {
                        check: m.name.clone(),
                        ok: false,
                        value: None,
                        message: format!("{} series: the query must return one value", many.len()),
                    },
                },
            };
            checks.push(v);
        }
        for (name, inst) in &r.metric_checks {
            let guarded = crate::plugins::Policy::Guarded {
                remember_permanent: false,
            };
            let v = match crate::checks::evaluate_metric_check(&self.plugins, inst, name, guarded)
                .await
            {
                Ok(res) => Verdict {
                    check: name.clone(),
                    ok: res.ok,
                    value: res.value,
                    message: res.message,
                },
                Err(e) => Verdict {
                    check: name.clone(),
                    ok: false,
                    value: None,
                    message: format!("plugin: {e}"),
                },
            };
            checks.push(v);
        }
        Evaluation {
            at: now,
            passed: checks.iter().all(|c| c.ok),
            checks,
        }
    }

    /// The alerts of a rolled-back rollout, firing or resolved.
    fn alerts(
        &self,
        r: &Rollout,
        s: &RolloutState,
        now: DateTime<Utc>,
        firing: bool,
    ) -> Vec<OutgoingAlert> {
        let failed = s.version.clone().unwrap_or_default();
        let stable = s
            .stable_version
            .as_deref()
            .unwrap_or("the previous version");
        let mut v = vec![self.alert(
            r,
            s,
            "RolloutRolledBack",
            format!("Rollout {}: {failed} rolled back to {stable}", r.name),
            format!(
                "{} Action: {}",
                s.rollback_reason.as_deref().unwrap_or(""),
                s.rollback_message.as_deref().unwrap_or("")
            ),
            s.rolled_back_at.unwrap_or(now),
            now,
            firing,
        )];
        if s.phase == Phase::StillFailing {
            v.push(
                self.alert(
                    r,
                    s,
                    "RolloutStillFailing",
                    format!(
                        "Rollout {}: checks still fail {} after rolling back {failed}",
                        r.name,
                        humantime::format_duration(r.verify)
                    ),
                    s.last_evaluation
                        .as_ref()
                        .map(Evaluation::reason)
                        .unwrap_or_default(),
                    s.phase_since.unwrap_or(now),
                    now,
                    firing,
                ),
            );
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn alert(
        &self,
        r: &Rollout,
        s: &RolloutState,
        alertname: &str,
        summary: String,
        description: String,
        starts_at: DateTime<Utc>,
        now: DateTime<Utc>,
        firing: bool,
    ) -> OutgoingAlert {
        let mut pairs: Vec<(String, String)> = r
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        pairs.push(("severity".into(), "critical".into()));
        pairs.push(("alertname".into(), alertname.into()));
        pairs.push(("rollout".into(), r.name.clone()));
        pairs.push(("version".into(), s.version.clone().unwrap_or_default()));
        let resend = (r.interval * 4).max(Duration::from_secs(60));
        let ends_at = if firing {
            now + chrono::Duration::from_std(resend).unwrap_or_default()
        } else {
            now
        };
        let mut annotations = BTreeMap::new();
        annotations.insert("summary".to_string(), summary);
        annotations.insert("description".to_string(), description.trim().to_string());
        if let Some(stable) = &s.stable_version {
            annotations.insert("stable_version".to_string(), stable.clone());
        }
        OutgoingAlert {
            labels: Labels::from_pairs(pairs),
            annotations,
            starts_at,
            ends_at,
            generator_url: format!(
                "{}/api/v1/rollouts/{}",
                self.external_url.lock().unwrap(),
                r.name
            ),
        }
    }

    /// Writes the state file atomically and durably (temp file, fsync,
    /// rename, directory fsync). The state lock is held through the write so
    /// concurrent saves land in order and never share the temp file. A
    /// failure is logged by the file (at most once a minute while the disk
    /// refuses writes) and the next tick writes it again.
    fn save(&self) {
        let state = self.state.lock().unwrap();
        self.incidents.forward(&state);
        // Serialize and write under the lock so an older snapshot can never
        // land on disk after a newer one.
        let _ = self.file.write(|| Ok(serde_json::to_vec_pretty(&*state)?));
    }
}

fn in_range(v: f64, min: Option<f64>, max: Option<f64>) -> (bool, String) {
    if v.is_nan() {
        return (false, "NaN".to_string());
    }
    if let Some(m) = min.filter(|m| v < *m) {
        return (false, format!("{v} < min {m}"));
    }
    if let Some(m) = max.filter(|m| v > *m) {
        return (false, format!("{v} > max {m}"));
    }
    (true, format!("{v} within range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert!(in_range(0.01, None, Some(0.05)).0);
        assert!(!in_range(0.2, None, Some(0.05)).0);
        assert!(!in_range(1.0, Some(2.0), None).0);
        assert!(!in_range(f64::NAN, Some(0.0), Some(1.0)).0);
    }

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
