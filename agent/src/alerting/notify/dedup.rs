//! Deduplication against the notification log, and logging what was sent.

use std::collections::HashMap;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::{ready, Context, ReceiverSettings, Stage, StageError};
use crate::alerting::nflog::{needs_update, NotificationLog};
use crate::alerting::types::Alert;

/// Goes on only when the log says the receiver needs to hear about these
/// alerts (new ones fire, all resolved, the repeat interval passed:
/// [`needs_update`]); notes in the context which alerts fire and which
/// resolved, for [`SetNotifiesStage`] (Alertmanager's `DedupStage`).
pub struct DedupStage {
    pub nflog: Arc<NotificationLog>,
    pub receivers: Arc<HashMap<String, ReceiverSettings>>,
}

impl Stage for DedupStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        let now = ctx.now;
        let (resolved, firing): (Vec<&Alert>, Vec<&Alert>) =
            alerts.iter().partition(|a| a.resolved_at(now));
        ctx.firing = firing.iter().map(|a| a.fingerprint()).collect();
        ctx.resolved = resolved.iter().map(|a| a.fingerprint()).collect();
        let settings = self
            .receivers
            .get(&ctx.receiver)
            .cloned()
            .unwrap_or_default();
        let entry = self.nflog.query(&ctx.group_key, &ctx.receiver);
        let update = needs_update(
            entry.as_ref(),
            &ctx.firing,
            &ctx.resolved,
            settings.send_resolved,
            ctx.repeat_interval,
            now,
        );
        ready(Ok(if update { alerts } else { Vec::new() }))
    }
}

/// Logs the notification that got through, so the next flush's
/// [`DedupStage`] knows it (Alertmanager's `SetNotifiesStage`).
pub struct SetNotifiesStage {
    pub nflog: Arc<NotificationLog>,
}

impl Stage for SetNotifiesStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        self.nflog.log(
            &ctx.group_key,
            &ctx.receiver,
            std::mem::take(&mut ctx.firing),
            std::mem::take(&mut ctx.resolved),
            ctx.now,
        );
        ready(Ok(alerts))
    }
}
