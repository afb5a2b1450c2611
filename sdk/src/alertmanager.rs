//! The Alertmanager webhook v4 payload.
//!
//! A [`Notification`] carries exactly the fields of the message Alertmanager's
//! `webhook_config` POSTs, so a receiver that speaks to anything built for
//! Alertmanager (a webhook relay, a ticketing bridge) sends [`webhook_v4`] as
//! is, and receivers for other services start from the same field names.
//! Label and annotation lists become JSON objects, as in Alertmanager's
//! `template.KV`; the last of two equal names wins.

use serde_json::{json, Map, Value};

use crate::types::{AlertStatus, Label, Notification};

/// The webhook v4 JSON for `notification`:
///
/// ```json
/// {"version": "4", "groupKey": "...", "truncatedAlerts": 0,
///  "status": "firing", "receiver": "...", "groupLabels": {},
///  "commonLabels": {}, "commonAnnotations": {}, "externalURL": "...",
///  "alerts": [{"status": "firing", "labels": {}, "annotations": {},
///              "startsAt": "...", "endsAt": "...", "generatorURL": "...",
///              "fingerprint": "..."}]}
/// ```
pub fn webhook_v4(notification: &Notification) -> Value {
    let alerts: Vec<Value> = notification
        .alerts
        .iter()
        .map(|a| {
            json!({
                "status": status(a.status),
                "labels": labels(&a.labels),
                "annotations": labels(&a.annotations),
                "startsAt": a.starts_at,
                "endsAt": a.ends_at,
                "generatorURL": a.generator_url,
                "fingerprint": a.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": notification.group_key,
        "truncatedAlerts": notification.truncated_alerts,
        "status": status(notification.status),
        "receiver": notification.receiver,
        "groupLabels": labels(&notification.group_labels),
        "commonLabels": labels(&notification.common_labels),
        "commonAnnotations": labels(&notification.common_annotations),
        "externalURL": notification.external_url,
        "alerts": alerts,
    })
}

/// Keeps at most `max_alerts` alerts (0 keeps them all) and adds the number
/// dropped to `truncated_alerts`, as Alertmanager's `max_alerts` does.
/// The host may already have truncated, hence the addition.
pub fn truncate_alerts(notification: &mut Notification, max_alerts: usize) {
    if max_alerts == 0 || notification.alerts.len() <= max_alerts {
        return;
    }
    let dropped = notification.alerts.len() - max_alerts;
    notification.alerts.truncate(max_alerts);
    let dropped = u32::try_from(dropped).unwrap_or(u32::MAX);
    notification.truncated_alerts = notification.truncated_alerts.saturating_add(dropped);
}

/// `firing` or `resolved`, as Alertmanager spells them.
pub fn status(status: AlertStatus) -> &'static str {
    match status {
        AlertStatus::Firing => "firing",
        AlertStatus::Resolved => "resolved",
    }
}

/// A label list as a JSON object.
pub fn labels(labels: &[Label]) -> Value {
    let map: Map<String, Value> = labels
        .iter()
        .map(|l| (l.name.clone(), Value::String(l.value.clone())))
        .collect();
    Value::Object(map)
}

/// The value of label `name`, if the list has it (the last one wins, as in
/// [`labels`]).
pub fn label<'a>(labels: &'a [Label], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .rev()
        .find(|l| l.name == name)
        .map(|l| l.value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Alert;

    fn l(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn alert(name: &str) -> Alert {
        Alert {
            status: AlertStatus::Firing,
            labels: vec![l("alertname", name), l("severity", "page")],
            annotations: vec![l("summary", "down")],
            starts_at: "2024-01-01T00:00:00Z".into(),
            ends_at: "0001-01-01T00:00:00Z".into(),
            generator_url: "http://prom/graph".into(),
            fingerprint: "abc".into(),
        }
    }

    fn notification(alerts: usize) -> Notification {
        Notification {
            receiver: "team".into(),
            status: AlertStatus::Firing,
            alerts: (0..alerts).map(|i| alert(&format!("A{i}"))).collect(),
            group_labels: vec![l("alertname", "A")],
            common_labels: vec![l("severity", "page")],
            common_annotations: vec![],
            external_url: "http://wasmon:9093".into(),
            group_key: "{}:{alertname=\"A\"}".into(),
            truncated_alerts: 0,
        }
    }

    #[test]
    fn payload_has_webhook_v4_fields() {
        let v = webhook_v4(&notification(1));
        assert_eq!(
            v,
            json!({
                "version": "4",
                "groupKey": "{}:{alertname=\"A\"}",
                "truncatedAlerts": 0,
                "status": "firing",
                "receiver": "team",
                "groupLabels": {"alertname": "A"},
                "commonLabels": {"severity": "page"},
                "commonAnnotations": {},
                "externalURL": "http://wasmon:9093",
                "alerts": [{
                    "status": "firing",
                    "labels": {"alertname": "A0", "severity": "page"},
                    "annotations": {"summary": "down"},
                    "startsAt": "2024-01-01T00:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prom/graph",
                    "fingerprint": "abc",
                }],
            })
        );
    }

    #[test]
    fn truncation_counts_dropped_alerts() {
        let mut n = notification(5);
        n.truncated_alerts = 2;
        truncate_alerts(&mut n, 3);
        assert_eq!(n.alerts.len(), 3);
        assert_eq!(n.truncated_alerts, 4);
        truncate_alerts(&mut n, 0);
        assert_eq!(n.alerts.len(), 3);
        truncate_alerts(&mut n, 10);
        assert_eq!(n.truncated_alerts, 4);
    }

    #[test]
    fn label_lookup_matches_object() {
        let ls = [l("a", "1"), l("a", "2")];
        assert_eq!(label(&ls, "a"), Some("2"));
        assert_eq!(labels(&ls), json!({"a": "2"}));
        assert_eq!(label(&ls, "b"), None);
    }
}
