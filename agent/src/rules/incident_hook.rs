//! New pending alerts onto incident timelines: the first sign of trouble,
//! before `for` has passed and anything is sent to the dispatcher.

use super::alerting::{AlertState, AlertingRule};
use crate::incident::{labels_json, Event, Incidents};

/// Records the alerts of `rule` that became pending in the evaluation at
/// `ts` (ms).
pub(super) fn record_pending(incidents: &Incidents, rule: &AlertingRule, ts: i64) {
    for a in rule
        .active_alerts()
        .into_iter()
        .filter(|a| a.state == AlertState::Pending && a.active_at == ts)
    {
        let Some(at) = chrono::DateTime::from_timestamp_millis(ts) else {
            continue;
        };
        let name = a.labels.get("alertname").unwrap_or("alert").to_string();
        incidents.record_alert(
            &a.labels,
            Event::new(
                at,
                "alert_pending",
                format!("{name} pending (value {})", a.value),
            )
            .data(serde_json::json!({ "labels": labels_json(&a.labels) })),
        );
    }
}
