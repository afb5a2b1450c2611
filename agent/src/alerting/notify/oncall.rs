//! The on-call layer the notification path reports to (incident
//! timelines) and asks about acknowledgements. It is a trait so alerting
//! does not depend on who keeps incidents: the agent plugs
//! `incident::Incidents` in, tests may plug [`NoOnCall`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::{ready, Context, DeliveryError, Stage, StageError};
use crate::alerting::types::Alert;
use crate::model::Labels;

/// Ack suppression: a repeat interval no group reaches.
pub const ACKED_REPEAT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// An acknowledgement holding a group now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AckHold {
    /// When the ack ends by itself (None: only an unack ends it).
    pub until: Option<DateTime<Utc>>,
}

/// A notification that was sent, or given up on.
#[derive(Debug)]
pub struct Notified<'a> {
    /// `firing` or `resolved` (the message's status).
    pub status: &'a str,
    /// Alerts in the message.
    pub alerts: usize,
    pub result: &'a Result<(), DeliveryError>,
}

/// What the dispatcher tells the on-call layer and asks it.
pub trait OnCall: Send + Sync {
    /// A firing alert that no silence mutes joined group `group_key` (or
    /// fires again in it).
    fn alert_firing(
        &self,
        group_key: &str,
        group_labels: &Labels,
        alert: &Labels,
        now: DateTime<Utc>,
    );
    /// The group's `firing` alerts got past muting: the group is paged
    /// (whether or not the receiver takes it).
    fn paged(&self, group_key: &str, group_labels: &Labels, firing: &[&Alert], now: DateTime<Utc>);
    /// The ack holding the group now, if any.
    fn ack(&self, group_key: &str, now: DateTime<Utc>) -> Option<AckHold>;
    /// A notification of the kind `ctx.kind` went to `ctx.receiver`.
    fn notified(&self, ctx: &Context, n: &Notified<'_>);
    /// The group's firing episode ended at `ended`; returns the incident
    /// that closed (named again in [`super::Kind::EscalatedResolution`]).
    fn resolved(&self, group_key: &str, ended: DateTime<Utc>) -> Option<String>;
}

/// No on-call layer: nothing recorded, nothing acknowledged.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoOnCall;

impl OnCall for NoOnCall {
    fn alert_firing(&self, _: &str, _: &Labels, _: &Labels, _: DateTime<Utc>) {}
    fn paged(&self, _: &str, _: &Labels, _: &[&Alert], _: DateTime<Utc>) {}
    fn ack(&self, _: &str, _: DateTime<Utc>) -> Option<AckHold> {
        None
    }
    fn notified(&self, _: &Context, _: &Notified<'_>) {}
    fn resolved(&self, _: &str, _: DateTime<Utc>) -> Option<String> {
        None
    }
}

/// Firing alerts got past time intervals, inhibition and silences: the
/// group is paged now (or it was before). The dispatcher's escalation
/// clock starts at the first page ([`Context::page`]), and the on-call
/// layer opens the group's incident.
pub struct PageStage {
    pub oncall: Arc<dyn OnCall>,
}

impl Stage for PageStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        let firing: Vec<&Alert> = alerts.iter().filter(|a| !a.resolved_at(ctx.now)).collect();
        if !firing.is_empty() {
            ctx.page();
            self.oncall
                .paged(&ctx.group_key, &ctx.group_labels, &firing, ctx.now);
        }
        ready(Ok(alerts))
    }
}

/// An acknowledged group gets no repeats (new alerts and resolutions still
/// go out).
pub struct AckStage {
    pub oncall: Arc<dyn OnCall>,
}

impl Stage for AckStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        if self.oncall.ack(&ctx.group_key, ctx.now).is_some() {
            ctx.repeat_interval = ACKED_REPEAT;
        }
        ready(Ok(alerts))
    }
}
