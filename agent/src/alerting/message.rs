//! The Alertmanager webhook v4 message, and its conversion to the WIT
//! `notification` a receiver plugin gets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::types::{fingerprint_hex, rfc3339, Alert};
use crate::model::Labels;

/// Alertmanager's zero time, rendered for alerts without an end.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    #[serde(default = "v4")]
    pub version: String,
    #[serde(default)]
    pub group_key: String,
    #[serde(default)]
    pub truncated_alerts: u32,
    pub status: String,
    #[serde(default)]
    pub receiver: String,
    #[serde(default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(default, rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

fn v4() -> String {
    "4".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default = "zero_time")]
    pub ends_at: String,
    #[serde(default, rename = "generatorURL")]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

fn zero_time() -> String {
    ZERO_TIME.to_string()
}

/// Why a message has no WIT form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("status must be \"firing\" or \"resolved\", not {0:?}")]
    Status(String),
    #[error("alerts[{index}]: status must be \"firing\" or \"resolved\", not {status:?}")]
    AlertStatus { index: usize, status: String },
}

impl WebhookMessage {
    /// A synthetic alert for `POST /api/v1/receivers/NAME/test`, like the
    /// "test notification" button of other tools.
    pub fn test_message(receiver: &str, external_url: &str, now_rfc3339: &str) -> WebhookMessage {
        let labels: BTreeMap<String, String> = [
            ("alertname", "WasmonTestNotification"),
            ("severity", "none"),
            ("instance", "wasmon"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let annotations: BTreeMap<String, String> = [(
            "summary".to_string(),
            format!("Test notification for receiver {receiver}"),
        )]
        .into();
        WebhookMessage {
            version: v4(),
            group_key: format!("{{}}:{{alertname=\"WasmonTestNotification\"}}/{receiver}"),
            truncated_alerts: 0,
            status: "firing".to_string(),
            receiver: receiver.to_string(),
            group_labels: [(
                "alertname".to_string(),
                "WasmonTestNotification".to_string(),
            )]
            .into(),
            common_labels: labels.clone(),
            common_annotations: annotations.clone(),
            external_url: external_url.to_string(),
            alerts: vec![WebhookAlert {
                status: "firing".to_string(),
                labels,
                annotations,
                starts_at: now_rfc3339.to_string(),
                ends_at: ZERO_TIME.to_string(),
                generator_url: external_url.to_string(),
                fingerprint: "0000000000000000".to_string(),
            }],
        }
    }
}

fn to_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// The webhook v4 message for a group's alerts, as Alertmanager builds it:
/// common labels/annotations over all alerts, firing alerts without an end
/// time, `truncatedAlerts` when `max_alerts` cuts the list.
pub fn build_message(
    receiver: &str,
    group_key: &str,
    group_labels: &Labels,
    alerts: &[&Alert],
    now: DateTime<Utc>,
    external_url: &str,
    max_alerts: usize,
) -> WebhookMessage {
    let mut common_labels = alerts
        .first()
        .map(|a| to_map(&a.labels))
        .unwrap_or_default();
    let mut common_annotations = alerts
        .first()
        .map(|a| a.annotations.clone())
        .unwrap_or_default();
    for a in alerts.iter().skip(1) {
        common_labels.retain(|k, v| a.labels.get(k) == Some(v.as_str()));
        common_annotations.retain(|k, v| a.annotations.get(k) == Some(v));
    }
    let firing = alerts.iter().any(|a| !a.resolved_at(now));
    let mut out: Vec<WebhookAlert> = alerts
        .iter()
        .map(|a| {
            let resolved = a.resolved_at(now);
            WebhookAlert {
                status: a.status_at(now).to_string(),
                labels: to_map(&a.labels),
                annotations: a.annotations.clone(),
                starts_at: rfc3339(a.starts_at),
                ends_at: if resolved {
                    rfc3339(a.ends_at)
                } else {
                    ZERO_TIME.to_string()
                },
                generator_url: a.generator_url.clone(),
                fingerprint: fingerprint_hex(a.fingerprint()),
            }
        })
        .collect();
    let mut truncated = 0;
    if max_alerts > 0 && out.len() > max_alerts {
        truncated = (out.len() - max_alerts) as u32;
        out.truncate(max_alerts);
    }
    WebhookMessage {
        version: "4".to_string(),
        group_key: group_key.to_string(),
        truncated_alerts: truncated,
        status: if firing { "firing" } else { "resolved" }.to_string(),
        receiver: receiver.to_string(),
        group_labels: to_map(group_labels),
        common_labels,
        common_annotations,
        external_url: external_url.to_string(),
        alerts: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
    }

    fn alert(pairs: &[(&str, &str)], end: i64) -> Alert {
        Alert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: [("summary".to_string(), "s".to_string())].into(),
            starts_at: t(0),
            ends_at: t(end),
            generator_url: "http://g".into(),
            updated_at: t(0),
            timeout: false,
        }
    }

    #[test]
    fn message_like_alertmanager() {
        let a = alert(&[("alertname", "A"), ("job", "j"), ("x", "1")], 100);
        let b = alert(&[("alertname", "A"), ("job", "j"), ("x", "2")], 10);
        let gl = Labels::from_pairs([("alertname", "A")]);
        let m = build_message(
            "r",
            "{}:{alertname=\"A\"}",
            &gl,
            &[&a, &b],
            t(50),
            "http://am",
            1,
        );
        assert_eq!(m.status, "firing");
        assert_eq!(m.truncated_alerts, 1);
        assert_eq!(m.alerts.len(), 1);
        assert_eq!(m.alerts[0].ends_at, ZERO_TIME);
        assert_eq!(m.common_labels.len(), 2);
        assert_eq!(m.common_annotations["summary"], "s");
        assert_eq!(m.alerts[0].fingerprint.len(), 16);
        let m = build_message("r", "k", &gl, &[&b], t(50), "", 0);
        assert_eq!(m.status, "resolved");
        assert_eq!(m.alerts[0].ends_at, rfc3339(t(10)));
    }
}
