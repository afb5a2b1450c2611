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

/// Alertmanager's hash of a group key (`notify.Key.Hash`): the SHA-256 of
/// the key as 64 hex digits. PagerDuty and Opsgenie use it as the
/// deduplication key, so it is stable across firing and resolved
/// notifications of the same group.
pub fn group_key_hash(group_key: &str) -> String {
    crate::sha256::hex(group_key.as_bytes())
}

/// Alertmanager's `__alertmanagerURL`: `<externalURL>/#/alerts?receiver=<receiver>`
/// with the receiver URL-query-escaped.
pub fn alerts_url(notification: &Notification) -> String {
    format!(
        "{}/#/alerts?receiver={}",
        notification.external_url,
        query_escape(&notification.receiver)
    )
}

/// Escapes `s` for a URL query value, like Go's `url.QueryEscape`
/// (space becomes `+`).
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Alertmanager's `__text_alert_list` for `alerts`: per alert, its labels
/// and annotations (sorted by name, one ` - name = value` line each) and its
/// source URL.
pub fn text_alert_list(alerts: &[&crate::types::Alert]) -> String {
    let mut out = String::new();
    for a in alerts {
        out.push_str("Labels:\n");
        for l in sorted_pairs(&a.labels) {
            out.push_str(&format!(" - {} = {}\n", l.name, l.value));
        }
        out.push_str("Annotations:\n");
        for l in sorted_pairs(&a.annotations) {
            out.push_str(&format!(" - {} = {}\n", l.name, l.value));
        }
        out.push_str(&format!("Source: {}\n", a.generator_url));
    }
    out
}

/// A label list as Alertmanager's `SortedPairs`: `alertname` first, the
/// others sorted by name, the last of two equal names winning.
pub fn sorted_pairs(labels: &[Label]) -> Vec<&Label> {
    let mut v: Vec<&Label> = Vec::new();
    for l in labels {
        match v.iter().position(|x| x.name == l.name) {
            Some(i) => v[i] = l,
            None => v.push(l),
        }
    }
    v.sort_by(|a, b| (a.name != "alertname", &a.name).cmp(&(b.name != "alertname", &b.name)));
    v
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
    fn group_key_hash_and_urls() {
        assert_eq!(
            group_key_hash("{}:{alertname=\"A\"}"),
            crate::sha256::hex(b"{}:{alertname=\"A\"}")
        );
        assert_eq!(group_key_hash("").len(), 64);
        let mut n = notification(1);
        n.receiver = "team a/b".into();
        assert_eq!(
            alerts_url(&n),
            "http://wasmon:9093/#/alerts?receiver=team+a%2Fb"
        );
        let a = &n.alerts[0];
        assert_eq!(
            text_alert_list(&[a]),
            "Labels:\n - alertname = A0\n - severity = page\nAnnotations:\n - summary = down\nSource: http://prom/graph\n"
        );
    }

    #[test]
    fn label_lookup_matches_object() {
        let ls = [l("a", "1"), l("a", "2")];
        assert_eq!(label(&ls, "a"), Some("2"));
        assert_eq!(labels(&ls), json!({"a": "2"}));
        assert_eq!(label(&ls, "b"), None);
    }
}
