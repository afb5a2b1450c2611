//! The bridge from the dispatcher to receiver plugins: one plugin call per
//! notification, failures mapped to retryable or permanent, and the WIT
//! form of a webhook message. It lives with the plugins, not in `alerting`,
//! so that alerting knows only its `Notifier` trait and never the runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use super::bindings::types as wit;
use super::{Instance, PluginRuntime};
use crate::alerting::message::{MessageError, WebhookMessage};
use crate::alerting::notify::{Notifier, NotifyError};

/// Delivers notifications through the receiver instances of the current
/// config (swapped on reload).
pub struct PluginNotifier {
    pub plugins: Arc<PluginRuntime>,
    pub receivers: ArcSwap<BTreeMap<String, Instance>>,
}

impl Notifier for PluginNotifier {
    fn notify(
        &self,
        receiver: &str,
        mut msg: WebhookMessage,
    ) -> BoxFuture<'static, Result<(), NotifyError>> {
        let inst = self.receivers.load().get(receiver).cloned();
        let plugins = self.plugins.clone();
        let receiver = receiver.to_string();
        Box::pin(async move {
            let Some(inst) = inst else {
                return Err(NotifyError::permanent(format!(
                    "no receiver named {receiver:?}"
                )));
            };
            msg.receiver = receiver.clone();
            let n = wit_notification(&msg).map_err(|e| NotifyError::permanent(e.to_string()))?;
            match plugins.notify(&inst, &n).await {
                Ok(info) => {
                    tracing::info!(receiver = %receiver, group = %msg.group_key, status = %msg.status, alerts = msg.alerts.len(), ms = info.duration.as_secs_f64() * 1e3, "notification sent");
                    Ok(())
                }
                Err(e) if e.is_retryable() => Err(NotifyError::retryable(format!(
                    "receiver {receiver:?}: {e}"
                ))),
                Err(e) => Err(NotifyError::permanent(format!(
                    "receiver {receiver:?}: {e}"
                ))),
            }
        })
    }
}

/// The WIT notification of a message (what a receiver plugin is called with).
pub fn wit_notification(msg: &WebhookMessage) -> Result<wit::Notification, MessageError> {
    Ok(wit::Notification {
        receiver: msg.receiver.clone(),
        status: status(&msg.status).ok_or_else(|| MessageError::Status(msg.status.clone()))?,
        alerts: msg
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Ok(wit::Alert {
                    status: status(&a.status).ok_or_else(|| MessageError::AlertStatus {
                        index: i,
                        status: a.status.clone(),
                    })?,
                    labels: labels(&a.labels),
                    annotations: labels(&a.annotations),
                    starts_at: a.starts_at.clone(),
                    ends_at: a.ends_at.clone(),
                    generator_url: a.generator_url.clone(),
                    fingerprint: a.fingerprint.clone(),
                })
            })
            .collect::<Result<_, MessageError>>()?,
        group_labels: labels(&msg.group_labels),
        common_labels: labels(&msg.common_labels),
        common_annotations: labels(&msg.common_annotations),
        external_url: msg.external_url.clone(),
        group_key: msg.group_key.clone(),
        truncated_alerts: msg.truncated_alerts,
    })
}

fn status(s: &str) -> Option<wit::AlertStatus> {
    match s {
        "firing" => Some(wit::AlertStatus::Firing),
        "resolved" => Some(wit::AlertStatus::Resolved),
        _ => None,
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
