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
//!
//! Files: `config.rs` (a `[[rollouts]]` entry validated and prepared),
//! `state.rs` (the persisted state and decision history), this file (the
//! manager: the state machine above, driven every interval), `checks.rs`
//! (evaluating the checks), `alerts.rs` (the alerts built from the state),
//! `incident_hook.rs` (decisions onto incident timelines), `api.rs` (the
//! HTTP API and its CLI client).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::Utc;

use crate::alerting::sink::AlertSink;
use crate::plugins::bindings::types as wit;
use crate::plugins::host::QueryApi;
use crate::plugins::PluginRuntime;

mod alerts;
mod checks;
mod config;
mod incident_hook;
mod state;

pub use config::{validate_all, Rollout};
pub use state::{Decision, Evaluation, Phase, RolloutState, Verdict};

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
        let now_ms = crate::clock::now_ms();
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
