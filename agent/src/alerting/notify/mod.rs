//! The notification pipeline (Alertmanager's `notify/notify.go`): what
//! happens to a group's alerts between the dispatcher's timer and the
//! receiver. A pipeline is a chain of [`Stage`]s, each taking the alerts
//! the one before let through ([`MultiStage`]); when none are left the
//! chain stops, and an error stops it too (the dispatcher then keeps the
//! group's resolved alerts for the next flush).
//!
//! The dispatcher runs one of three pipelines ([`Pipeline`]) per job: a
//! group flush, an escalation step, and the resolution sent to those an
//! escalation paged. [`Pipeline::standard`] is today's behaviour:
//!
//! | stage | file | Alertmanager |
//! |---|---|---|
//! | [`TimeMuteStage`] | `mute.rs` | `TimeMuteStage`/`TimeActiveStage` |
//! | [`InhibitStage`], [`SilenceStage`] | `mute.rs` | `MuteStage` |
//! | [`FiringOnlyStage`] | `mute.rs` | (escalation pages only what fires) |
//! | [`PageStage`], [`AckStage`] | `oncall.rs` | (acks and incidents) |
//! | [`DedupStage`], [`SetNotifiesStage`] | `dedup.rs` | `DedupStage`, `SetNotifiesStage` |
//! | [`RetryStage`] | `retry.rs` | `RetryStage` |
//!
//! To add a behaviour, write a type implementing [`Stage`] (in its own
//! file here, exported below), and put it in the chain
//! [`Pipeline::standard`] builds at the place it belongs; what it needs
//! from the dispatcher's state comes in [`Parts`]. Tests wrap or replace a
//! chain through [`Dispatcher::with_pipeline`](super::dispatch::Dispatcher::with_pipeline).

mod dedup;
mod mute;
mod oncall;
mod retry;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use super::config::TimeIntervalConfig;
use super::dispatch::Shared;
use super::inhibit::Inhibitor;
use super::route::RouteOpts;
use super::types::{Alert, Fingerprint};
use crate::model::Labels;

pub use dedup::{DedupStage, SetNotifiesStage};
pub use mute::{muted_by, FiringOnlyStage, InhibitStage, SilenceStage, TimeMuteStage};
pub use oncall::{AckHold, AckStage, NoOnCall, Notified, OnCall, PageStage, ACKED_REPEAT};
pub use retry::{
    DeliveryError, Notifier, NotifyError, ReceiverSettings, RetryStage, INITIAL_BACKOFF,
    MAX_BACKOFF,
};

/// What a notification is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A flush of an aggregation group to its route's receiver.
    Group,
    /// Escalation step `step` (from 0) of `steps`, `delay` after the
    /// group's first page.
    Escalation {
        step: usize,
        steps: usize,
        delay: Duration,
    },
    /// The end of a firing episode, to a receiver one of its escalation
    /// steps paged; `incident` is the incident that resolution closed.
    EscalatedResolution { incident: Option<String> },
}

/// What a pipeline runs for (Alertmanager keeps these in the `ctx`).
pub struct Context {
    pub group_key: String,
    pub group_labels: Labels,
    pub receiver: String,
    /// The route's options (time intervals, intervals).
    pub route: RouteOpts,
    /// How long a notification stays good; [`AckStage`] lengthens it.
    pub repeat_interval: Duration,
    /// How long sending may be retried (the group interval).
    pub retry_budget: Duration,
    /// The instant the pipeline runs at: every stage judges at it.
    pub now: DateTime<Utc>,
    pub kind: Kind,
    /// Set by [`DedupStage`]: the alerts a notification logs as firing and
    /// resolved.
    pub firing: BTreeSet<Fingerprint>,
    pub resolved: BTreeSet<Fingerprint>,
    on_page: Option<Box<dyn FnOnce() + Send>>,
}

impl Context {
    pub fn new(
        group_key: impl Into<String>,
        group_labels: Labels,
        receiver: impl Into<String>,
        route: RouteOpts,
        now: DateTime<Utc>,
        kind: Kind,
    ) -> Context {
        Context {
            group_key: group_key.into(),
            group_labels,
            receiver: receiver.into(),
            repeat_interval: route.repeat_interval,
            retry_budget: route.group_interval,
            route,
            now,
            kind,
            firing: BTreeSet::new(),
            resolved: BTreeSet::new(),
            on_page: None,
        }
    }

    /// Called (once) when the group is paged: the dispatcher starts its
    /// escalation clock there.
    pub fn on_page(mut self, f: impl FnOnce() + Send + 'static) -> Context {
        self.on_page = Some(Box::new(f));
        self
    }

    /// The group is paged now (see [`PageStage`]).
    pub fn page(&mut self) {
        if let Some(f) = self.on_page.take() {
            f();
        }
    }
}

/// Why a pipeline stopped short of its end.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The receiver did not take the notification.
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    /// Any other stage's failure.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// One step of the notification path: takes the alerts, returns those that
/// go on (none stops the pipeline), or an error.
pub trait Stage: Send + Sync {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>>;
}

/// A stage that has its answer without waiting.
pub(crate) fn ready<'a>(
    r: Result<Vec<Alert>, StageError>,
) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
    Box::pin(std::future::ready(r))
}

/// Stages run in order, each on what the one before let through.
pub struct MultiStage(pub Vec<Arc<dyn Stage>>);

impl Stage for MultiStage {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        mut alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        Box::pin(async move {
            for s in &self.0 {
                if alerts.is_empty() {
                    break;
                }
                alerts = s.exec(ctx, alerts).await?;
            }
            Ok(alerts)
        })
    }
}

/// What the stages of [`Pipeline::standard`] are built from: the
/// dispatcher's config and the stores it shares with the agent.
pub struct Parts {
    pub shared: Shared,
    pub intervals: Arc<BTreeMap<String, TimeIntervalConfig>>,
    pub inhibitor: Arc<Inhibitor>,
    pub receivers: Arc<HashMap<String, ReceiverSettings>>,
    pub external_url: String,
}

/// The dispatcher's three pipelines.
#[derive(Clone)]
pub struct Pipeline {
    /// A group flush ([`Kind::Group`]).
    pub flush: Arc<dyn Stage>,
    /// An escalation step ([`Kind::Escalation`]).
    pub escalation: Arc<dyn Stage>,
    /// The resolution to escalated receivers ([`Kind::EscalatedResolution`]).
    pub escalated_resolution: Arc<dyn Stage>,
}

impl Pipeline {
    pub fn standard(p: &Parts) -> Pipeline {
        let s = &p.shared;
        let inhibit: Arc<dyn Stage> = Arc::new(InhibitStage {
            inhibitor: p.inhibitor.clone(),
            alerts: s.alerts.clone(),
        });
        let silence: Arc<dyn Stage> = Arc::new(SilenceStage {
            silences: s.silences.clone(),
        });
        let retry: Arc<dyn Stage> = Arc::new(RetryStage {
            notifier: s.notifier.clone(),
            clock: s.clock.clone(),
            receivers: p.receivers.clone(),
            external_url: p.external_url.clone(),
            oncall: s.oncall.clone(),
        });
        let flush = MultiStage(vec![
            Arc::new(TimeMuteStage {
                intervals: p.intervals.clone(),
            }),
            inhibit.clone(),
            silence.clone(),
            Arc::new(PageStage {
                oncall: s.oncall.clone(),
            }),
            Arc::new(AckStage {
                oncall: s.oncall.clone(),
            }),
            Arc::new(DedupStage {
                nflog: s.nflog.clone(),
                receivers: p.receivers.clone(),
            }),
            retry.clone(),
            Arc::new(SetNotifiesStage {
                nflog: s.nflog.clone(),
            }),
        ]);
        let escalation = MultiStage(vec![
            Arc::new(FiringOnlyStage),
            inhibit,
            silence,
            retry.clone(),
        ]);
        Pipeline {
            flush: Arc::new(flush),
            escalation: Arc::new(escalation),
            escalated_resolution: retry,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str) -> Alert {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Alert {
            labels: Labels::from_pairs([("alertname", name)]),
            annotations: BTreeMap::new(),
            starts_at: t,
            ends_at: t + chrono::Duration::hours(1),
            generator_url: String::new(),
            updated_at: t,
            timeout: false,
        }
    }

    fn ctx() -> Context {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        Context::new(
            "k",
            Labels::new(),
            "r",
            RouteOpts::default(),
            now,
            Kind::Group,
        )
    }

    /// Counts its runs, then answers with `answer`.
    struct Probe {
        runs: std::sync::atomic::AtomicUsize,
        answer: fn(Vec<Alert>) -> Result<Vec<Alert>, StageError>,
    }

    impl Probe {
        fn new(answer: fn(Vec<Alert>) -> Result<Vec<Alert>, StageError>) -> Arc<Probe> {
            Arc::new(Probe {
                runs: Default::default(),
                answer,
            })
        }
        fn runs(&self) -> usize {
            self.runs.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    impl Stage for Probe {
        fn exec<'a>(
            &'a self,
            _: &'a mut Context,
            alerts: Vec<Alert>,
        ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
            self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ready((self.answer)(alerts))
        }
    }

    #[tokio::test]
    async fn multistage_stops_when_no_alert_is_left_or_a_stage_fails() {
        let pass = Probe::new(Ok);
        let drop_all = Probe::new(|_| Ok(Vec::new()));
        let after = Probe::new(Ok);
        let chain = MultiStage(vec![pass.clone(), drop_all.clone(), after.clone()]);
        let out = chain.exec(&mut ctx(), vec![alert("A")]).await.unwrap();
        assert!(out.is_empty());
        assert_eq!((pass.runs(), drop_all.runs(), after.runs()), (1, 1, 0));

        let fail = Probe::new(|_| Err(anyhow::anyhow!("broken").into()));
        let after = Probe::new(Ok);
        let chain = MultiStage(vec![fail.clone(), after.clone()]);
        let err = chain.exec(&mut ctx(), vec![alert("A")]).await.unwrap_err();
        assert_eq!(err.to_string(), "broken");
        assert_eq!(after.runs(), 0);

        let after = Probe::new(Ok);
        let chain = MultiStage(vec![after.clone()]);
        assert!(chain.exec(&mut ctx(), Vec::new()).await.unwrap().is_empty());
        assert_eq!(after.runs(), 0, "nothing to notify: no stage runs");
    }

    #[test]
    fn the_page_hook_runs_once() {
        let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let n2 = n.clone();
        let mut c = ctx().on_page(move || {
            n2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        });
        c.page();
        c.page();
        assert_eq!(n.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
