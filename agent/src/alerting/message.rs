//! The Alertmanager webhook v4 message, and its conversion to the WIT
//! `notification` a receiver plugin gets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::plugins::bindings::types as wit;

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

fn status(s: &str) -> Result<wit::AlertStatus, String> {
    match s {
        "firing" => Ok(wit::AlertStatus::Firing),
        "resolved" => Ok(wit::AlertStatus::Resolved),
        other => Err(format!(
            "status must be \"firing\" or \"resolved\", not {other:?}"
        )),
    }
}

fn labels(m: &BTreeMap<String, String>) -> Vec<wit::Label> {
    m.iter()
        .map(|(n, v)| wit::Label {
            name: n.clone(),
            value: v.clone(),
        })
        .collect()
}

impl WebhookMessage {
    /// The WIT notification for this message.
    pub fn to_wit(&self) -> Result<wit::Notification, String> {
        Ok(wit::Notification {
            receiver: self.receiver.clone(),
            status: status(&self.status)?,
            alerts: self
                .alerts
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    Ok(wit::Alert {
                        status: status(&a.status).map_err(|e| format!("alerts[{i}]: {e}"))?,
                        labels: labels(&a.labels),
                        annotations: labels(&a.annotations),
                        starts_at: a.starts_at.clone(),
                        ends_at: a.ends_at.clone(),
                        generator_url: a.generator_url.clone(),
                        fingerprint: a.fingerprint.clone(),
                    })
                })
                .collect::<Result<_, String>>()?,
            group_labels: labels(&self.group_labels),
            common_labels: labels(&self.common_labels),
            common_annotations: labels(&self.common_annotations),
            external_url: self.external_url.clone(),
            group_key: self.group_key.clone(),
            truncated_alerts: self.truncated_alerts,
        })
    }

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
