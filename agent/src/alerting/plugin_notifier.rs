//! The bridge from the dispatcher to receiver plugins: one plugin call per
//! notification, failures mapped to retryable or permanent.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use super::message::WebhookMessage;
use super::notify::{Notifier, NotifyError};
use crate::plugins::{Instance, PluginRuntime};

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
            let n = msg
                .to_wit()
                .map_err(|e| NotifyError::permanent(e.to_string()))?;
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
