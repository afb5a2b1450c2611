//! The incident store as the notification path's on-call layer
//! ([`OnCall`]): `app` hands an `Arc<Incidents>` to the dispatcher as its
//! `Shared::oncall`, and the timeline texts of notifications and
//! escalation steps are written here.

use chrono::{DateTime, Utc};

use super::{Event, Incidents};
use crate::alerting::notify::{AckHold, Context, Kind, Notified, OnCall};
use crate::alerting::types::Alert;
use crate::model::Labels;

impl OnCall for Incidents {
    fn alert_firing(
        &self,
        group_key: &str,
        group_labels: &Labels,
        alert: &Labels,
        now: DateTime<Utc>,
    ) {
        Incidents::alert_firing(self, group_key, group_labels, alert, now);
    }

    /// A page opens the group's incident if none is open (an alert that
    /// was silenced when it joined the group, paged once the silence ended).
    fn paged(&self, group_key: &str, group_labels: &Labels, firing: &[&Alert], now: DateTime<Utc>) {
        if self.has_open(group_key) {
            return;
        }
        for a in firing {
            Incidents::alert_firing(self, group_key, group_labels, &a.labels, now);
        }
    }

    fn ack(&self, group_key: &str, now: DateTime<Utc>) -> Option<AckHold> {
        self.active_ack(group_key, now).map(|a| AckHold {
            until: a.expires_at,
        })
    }

    fn notified(&self, ctx: &Context, n: &Notified<'_>) {
        let (receiver, now) = (ctx.receiver.as_str(), ctx.now);
        let result = n.result.clone().map_err(|e| e.to_string());
        match &ctx.kind {
            Kind::Group => {
                // Not logged as sent, so the group's next flush sends it
                // again.
                let next_flush = now + chrono::Duration::from_std(ctx.retry_budget).unwrap();
                self.record_group(
                    &ctx.group_key,
                    Event::new(
                        now,
                        "notification",
                        format!(
                            "{} notification of {} alert(s) to {receiver}",
                            n.status, n.alerts
                        ),
                    )
                    .receiver(receiver, result)
                    .retry_at(next_flush),
                );
            }
            Kind::Escalation { step, steps, delay } => self.record_group(
                &ctx.group_key,
                Event::new(
                    now,
                    "escalation",
                    format!(
                        "escalation {}/{steps}: no ack {} after the first page, paged {receiver}",
                        step + 1,
                        humantime::format_duration(*delay),
                    ),
                )
                .receiver(receiver, result)
                .data(serde_json::json!({"step": step + 1})),
            ),
            Kind::EscalatedResolution { incident } => {
                let Some(incident) = incident else { return };
                self.record_in(
                    incident,
                    Event::new(
                        now,
                        "notification",
                        format!(
                            "resolved notification of {} alert(s) to {receiver} (escalated to)",
                            n.alerts
                        ),
                    )
                    .receiver(receiver, result),
                );
            }
        }
    }

    fn resolved(&self, group_key: &str, ended: DateTime<Utc>) -> Option<String> {
        self.resolve(group_key, ended)
    }
}
