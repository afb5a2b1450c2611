//! Stages that hold alerts back: time intervals, inhibition, silences.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{ready, Context, Stage, StageError};
use crate::alerting::config::TimeIntervalConfig;
use crate::alerting::inhibit::Inhibitor;
use crate::alerting::route::RouteOpts;
use crate::alerting::silence::Silences;
use crate::alerting::types::{Alert, AlertStore};

/// The route's mute intervals that contain `now`, and its active intervals
/// when `now` is outside all of them (Alertmanager's `mutedBy`).
pub fn muted_by(
    intervals: &BTreeMap<String, TimeIntervalConfig>,
    opts: &RouteOpts,
    now: DateTime<Utc>,
) -> Vec<String> {
    let within = |n: &&String| intervals.get(*n).is_some_and(|ti| ti.contains(now));
    let mut names: Vec<String> = Vec::new();
    if !opts.active_time_intervals.is_empty()
        && !opts.active_time_intervals.iter().any(|n| within(&n))
    {
        names.extend(opts.active_time_intervals.iter().cloned());
    }
    names.extend(opts.mute_time_intervals.iter().filter(within).cloned());
    names
}

/// Nothing goes out while the route's time intervals mute it
/// (Alertmanager's `TimeMuteStage` and `TimeActiveStage`).
pub struct TimeMuteStage {
    pub intervals: Arc<BTreeMap<String, TimeIntervalConfig>>,
}

impl Stage for TimeMuteStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        if muted_by(&self.intervals, &ctx.route, ctx.now).is_empty() {
            return ready(Ok(alerts));
        }
        tracing::debug!(group = %ctx.group_key, "notifications muted by time interval");
        ready(Ok(Vec::new()))
    }
}

/// Drops the alerts an inhibit rule mutes now (Alertmanager's `MuteStage`
/// with the inhibitor).
pub struct InhibitStage {
    pub inhibitor: Arc<Inhibitor>,
    /// The store's alerts are the possible sources.
    pub alerts: Arc<AlertStore>,
}

impl Stage for InhibitStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        mut alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        // Copying every current alert costs O(all alerts) per flush: only
        // pay it when some inhibit rule needs them.
        if self.inhibitor.rules.is_empty() {
            return ready(Ok(alerts));
        }
        let current = self.alerts.list();
        // Indexed once: a scan of every alert per group member made a
        // flush O(group × all alerts).
        let inhibiting = self.inhibitor.index(&current, ctx.now);
        alerts.retain(|a| inhibiting.mutes(&a.labels).is_none());
        ready(Ok(alerts))
    }
}

/// Drops silenced alerts (Alertmanager's `MuteStage` with the silencer).
pub struct SilenceStage {
    pub silences: Arc<Silences>,
}

impl Stage for SilenceStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        mut alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        alerts.retain(|a| self.silences.mutes(&a.labels, ctx.now).is_empty());
        ready(Ok(alerts))
    }
}

/// Only firing alerts go on: an escalation step pages for what still fires.
pub struct FiringOnlyStage;

impl Stage for FiringOnlyStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        mut alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        alerts.retain(|a| !a.resolved_at(ctx.now));
        ready(Ok(alerts))
    }
}
