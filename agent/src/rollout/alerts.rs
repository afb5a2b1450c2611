//! The alerts a rollout raises (`RolloutRolledBack`, `RolloutStillFailing`,
//! `RolloutRollbackFailed`), firing or resolved, built from its state for
//! the alert sink.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Evaluation, Phase, Rollout, RolloutManager, RolloutState};
use crate::alerting::sink::OutgoingAlert;
use crate::model::Labels;

impl RolloutManager {
    /// The alerts of a rolled-back rollout, firing or resolved.
    pub(super) fn alerts(
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
    pub(super) fn alert(
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
}
