//! Rollout decisions onto incident timelines. Every decision is pushed to
//! the state's history and the state is saved after it, so `save` forwards
//! the decisions newer than the last forwarded one per rollout: one hook,
//! no change at each decision site.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::{Decision, RolloutManager, RolloutState};
use crate::incident::{Event, Incidents};

/// The incident store and, per rollout, the time of the last decision
/// forwarded.
type Forwarding = (Arc<Incidents>, BTreeMap<String, DateTime<Utc>>);

#[derive(Default)]
pub(super) struct Hook {
    inner: Mutex<Option<Forwarding>>,
}

/// The timeline kind of a rollout decision; the report's milestones use
/// `rollout_started` (deploy) and `rollback` (mitigation).
fn kind(event: &str) -> String {
    match event {
        "started" => "rollout_started".into(),
        "rolled_back" => "rollback".into(),
        "rollback_failed" => "rollback_failed".into(),
        "recovered" => "recovery_verified".into(),
        other => format!("rollout_{other}"),
    }
}

fn event(rollout: &str, d: &Decision) -> Event {
    Event::new(
        d.at,
        &kind(&d.event),
        format!(
            "rollout {rollout} {}: {}",
            d.version.as_deref().unwrap_or("?"),
            d.message
        ),
    )
    .data(serde_json::json!({
        "rollout": rollout,
        "version": d.version,
        "checks": d.checks,
    }))
}

impl Hook {
    pub(super) fn forward(&self, state: &BTreeMap<String, RolloutState>) {
        let mut g = self.inner.lock();
        let Some((incidents, last)) = g.as_mut() else {
            return;
        };
        for (name, s) in state {
            let seen = last.get(name).copied();
            for d in s.history.iter().filter(|d| seen.is_none_or(|t| d.at > t)) {
                incidents.record_global(event(name, d));
            }
            if let Some(d) = s.history.last() {
                last.insert(name.clone(), d.at);
            }
        }
    }
}

impl RolloutManager {
    /// Record decisions from now on into `incidents` (those already in the
    /// state file were before this run and are not replayed).
    pub fn set_incidents(&self, incidents: Arc<Incidents>) {
        let state = self.state.lock().unwrap();
        let last = state
            .iter()
            .filter_map(|(n, s)| s.history.last().map(|d| (n.clone(), d.at)))
            .collect();
        *self.incidents.inner.lock() = Some((incidents, last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::{Phase, Verdict};

    fn decision(at: i64, event: &str, checks: Vec<Verdict>) -> Decision {
        Decision {
            at: DateTime::from_timestamp(1_700_000_000 + at, 0).unwrap(),
            event: event.into(),
            phase: Phase::Progressing,
            version: Some("v2".into()),
            message: event.into(),
            checks,
        }
    }

    #[test]
    fn decisions_are_forwarded_once_with_their_metrics() {
        let inc = Arc::new(Incidents::in_memory());
        let hook = Hook::default();
        let mut st = BTreeMap::from([("web".to_string(), RolloutState::default())]);
        st.get_mut("web")
            .unwrap()
            .history
            .push(decision(0, "started", vec![]));
        // Decisions before the hook is set are not replayed.
        *hook.inner.lock() = Some((
            inc.clone(),
            BTreeMap::from([("web".to_string(), st["web"].history[0].at)]),
        ));
        let failed = Verdict {
            check: "error-rate".into(),
            ok: false,
            value: Some(0.2),
            message: "above 0.05".into(),
        };
        let h = &mut st.get_mut("web").unwrap().history;
        h.push(decision(10, "rolled_back", vec![failed]));
        h.push(decision(20, "recovered", vec![]));
        hook.forward(&st);
        hook.forward(&st);
        let g = crate::model::Labels::from_pairs([("alertname", "X")]);
        inc.alert_firing(
            "k",
            &g,
            &g,
            DateTime::from_timestamp(1_700_000_030, 0).unwrap(),
        );
        let i = &inc.list()[0];
        let kinds: Vec<&str> = i.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["rollback", "recovery_verified", "alert_firing"]);
        assert_eq!(i.events[0].data["checks"][0]["value"], 0.2);
        assert!(crate::incident::report::markdown(i).contains("metrics: error-rate=0.2"));
    }
}
