//! Delivery: the message for the receiver, sent through the [`Notifier`]
//! with retries and backoff within the retry budget (Alertmanager's
//! `RetryStage`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{Context, Kind, Notified, OnCall, Stage, StageError};
use crate::alerting::message::{build_message, WebhookMessage};
use crate::alerting::types::{alert_order, Alert};
use crate::clock::Clock;

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a notification failed; retryable failures are retried with backoff
/// within the group interval.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    pub retryable: bool,
    pub message: String,
}

impl NotifyError {
    pub fn retryable(m: impl Into<String>) -> NotifyError {
        NotifyError {
            retryable: true,
            message: m.into(),
        }
    }
    pub fn permanent(m: impl Into<String>) -> NotifyError {
        NotifyError {
            retryable: false,
            message: m.into(),
        }
    }
}

/// Why a notification did not get through in the end.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DeliveryError {
    /// Retryable failures until the retry budget ran out.
    #[error("failed after {attempts} attempt(s): {last}")]
    GaveUp { attempts: u32, last: NotifyError },
    #[error("failed permanently: {0}")]
    Permanent(NotifyError),
}

/// What the host implements to deliver a notification to a receiver
/// (a receiver plugin call).
pub trait Notifier: Send + Sync {
    fn notify(
        &self,
        receiver: &str,
        msg: WebhookMessage,
    ) -> BoxFuture<'static, Result<(), NotifyError>>;
}

/// Per-receiver settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverSettings {
    /// Notify about resolved alerts (Alertmanager's webhook default: true).
    pub send_resolved: bool,
    /// At most this many alerts per message, 0 = all (`max_alerts`).
    pub max_alerts: usize,
}

impl Default for ReceiverSettings {
    fn default() -> ReceiverSettings {
        ReceiverSettings {
            send_resolved: true,
            max_alerts: 0,
        }
    }
}

/// Builds the receiver's message from the alerts (resolved ones only when
/// it wants them), sends it with retries, and tells the on-call layer how
/// it went. Passes every alert on, sent or not: the notification log
/// records the resolved ones a receiver does not want as seen.
pub struct RetryStage {
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    pub receivers: Arc<HashMap<String, ReceiverSettings>>,
    pub external_url: String,
    pub oncall: Arc<dyn OnCall>,
}

impl Stage for RetryStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        Box::pin(async move {
            let now = ctx.now;
            let settings = self
                .receivers
                .get(&ctx.receiver)
                .cloned()
                .unwrap_or_default();
            let mut sent: Vec<&Alert> = alerts
                .iter()
                .filter(|a| settings.send_resolved || !a.resolved_at(now))
                .collect();
            if sent.is_empty() {
                return Ok(alerts);
            }
            sent.sort_by(|a, b| alert_order(a, b));
            let msg = build_message(
                &ctx.receiver,
                &ctx.group_key,
                &ctx.group_labels,
                &sent,
                now,
                &self.external_url,
                settings.max_alerts,
            );
            if let Kind::Escalation { step, .. } = ctx.kind {
                tracing::info!(group = %ctx.group_key, step = step + 1, receiver = %ctx.receiver, "escalating: no ack");
            }
            let status = msg.status.clone();
            let n = msg.alerts.len();
            let result = self
                .send_with_retries(&ctx.receiver, msg, now, ctx.retry_budget)
                .await;
            self.oncall.notified(
                ctx,
                &Notified {
                    status: &status,
                    alerts: n,
                    result: &result,
                },
            );
            result?;
            Ok(alerts)
        })
    }
}

impl RetryStage {
    async fn send_with_retries(
        &self,
        receiver: &str,
        msg: WebhookMessage,
        start: DateTime<Utc>,
        budget: Duration,
    ) -> Result<(), DeliveryError> {
        let deadline = chrono::Duration::from_std(budget)
            .ok()
            .and_then(|b| start.checked_add_signed(b))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut backoff = INITIAL_BACKOFF;
        let mut attempts = 1;
        loop {
            match self.notifier.notify(receiver, msg.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable => {
                    let next = self.clock.now() + chrono::Duration::from_std(backoff).unwrap();
                    if next >= deadline {
                        tracing::warn!(receiver, attempt = attempts, group = %msg.group_key, "notify failed, giving up until the next group interval: {e}");
                        return Err(DeliveryError::GaveUp { attempts, last: e });
                    }
                    tracing::debug!(receiver, attempt = attempts, "notify failed, retrying: {e}");
                    self.clock.sleep_until(next).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempts += 1;
                }
                Err(e) => {
                    tracing::warn!(receiver, attempt = attempts, group = %msg.group_key, "notify failed permanently: {e}");
                    return Err(DeliveryError::Permanent(e));
                }
            }
        }
    }
}
