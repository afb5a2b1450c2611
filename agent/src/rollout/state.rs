//! A rollout's persisted state: its phase, versions, failure count and the
//! history of decisions, as `rollouts.json` holds it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How many decisions a rollout's history keeps.
const HISTORY: usize = 100;

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
    pub(super) fn decide(
        &mut self,
        now: DateTime<Utc>,
        event: &str,
        message: String,
        checks: Vec<Verdict>,
    ) {
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

    pub(super) fn set_phase(&mut self, phase: Phase, now: DateTime<Utc>) {
        self.phase = phase;
        self.phase_since = Some(now);
    }
}
