//! The dispatcher (Alertmanager's `dispatch/` plus the `notify/` pipeline):
//! alerts go through the route tree into aggregation groups keyed by route
//! and grouping labels; each group flushes after `group_wait`, then every
//! `group_interval`. A flush runs the pipeline for the route's receiver:
//! active/mute time intervals → inhibition → silences → dedup against the
//! notification log → [`Notifier`] with retries → log the notification.
//!
//! Time comes from a [`Clock`], so tests drive the timers exactly with a
//! [`ManualClock`] and [`Dispatcher::flush_due`]; the host runs
//! [`Dispatcher::run`] with a [`SystemClock`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::config::{AlertingConfig, TimeIntervalConfig};
use super::inhibit::Inhibitor;
use super::message::{WebhookAlert, WebhookMessage, ZERO_TIME};
use super::nflog::{needs_update, NotificationLog};
use super::route::{Route, RouteOpts};
use super::silence::Silences;
use super::types::{
    fingerprint_hex, labelset_string, rfc3339, Alert, AlertStore, Fingerprint, PostableAlert,
};
use crate::model::Labels;

// ---------------------------------------------------------------------------
// Clock.

/// The dispatcher's source of time.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Resolves once `now() >= t`.
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()>;
}

/// Wall-clock time and tokio timers.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let d = (t - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(d))
    }
}

/// Time that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock {
    tx: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            tx: watch::Sender::new(start),
        })
    }
    pub fn advance(&self, d: Duration) {
        self.tx
            .send_modify(|t| *t += chrono::Duration::from_std(d).unwrap());
    }
    pub fn set(&self, t: DateTime<Utc>) {
        self.tx.send_replace(t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.tx.borrow()
    }
    fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let mut rx = self.tx.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= t {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
    }
}

// ---------------------------------------------------------------------------
// Notifier.

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

// ---------------------------------------------------------------------------
// Dispatcher.

/// First retry delay; doubled per attempt up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often `run` collects garbage and writes snapshots.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// Everything the dispatcher shares with the rest of the agent. The stores
/// outlive a config reload: build a new [`Dispatcher`] with the same ones.
#[derive(Clone)]
pub struct Shared {
    pub alerts: Arc<AlertStore>,
    pub silences: Arc<Silences>,
    pub nflog: Arc<NotificationLog>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
    /// Acks (which suppress repeats and escalation) and the incident
    /// timelines the dispatcher records into.
    pub incidents: Arc<crate::incident::Incidents>,
}

struct Group {
    opts: RouteOpts,
    labels: Labels,
    key: String,
    alerts: BTreeMap<Fingerprint, Alert>,
    next_flush: DateTime<Utc>,
    has_flushed: bool,
    in_flight: bool,
    /// When the group's firing alerts were first notified (this firing
    /// episode): escalation delays count from here.
    paged_at: Option<DateTime<Utc>>,
    /// The next escalation step to run.
    esc_next: usize,
}

/// Ack suppression: a repeat interval no group reaches.
const ACKED_REPEAT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Group {
    fn firing(&self, now: DateTime<Utc>) -> bool {
        self.alerts.values().any(|a| !a.resolved_at(now))
    }

    /// When the next escalation step may run: None when there is none left,
    /// the group is not paged or not firing, or an ack without expiry holds
    /// it; an ack with an expiry holds it until then.
    fn escalation_due(
        &self,
        incidents: &crate::incident::Incidents,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let step = self.opts.escalation.get(self.esc_next)?;
        let paged = self.paged_at?;
        if !self.firing(now) {
            return None;
        }
        let due = paged + chrono::Duration::from_std(step.delay).ok()?;
        match incidents.active_ack(&self.key, now) {
            None => Some(due),
            Some(ack) => ack.expires_at.map(|e| e.max(due)),
        }
    }
}

struct EscalationJob {
    step: usize,
    steps: usize,
    receiver: String,
    delay: Duration,
    budget: Duration,
    labels: Labels,
    key: String,
    alerts: Vec<Alert>,
}

/// What a flush did.
struct Flushed {
    /// The group's resolved alerts may be forgotten.
    ok: bool,
    /// Firing alerts got past time intervals, inhibition and silences (and
    /// were notified, now or before): the group is paged.
    paged: bool,
}

struct FlushJob {
    id: (String, Labels),
    opts: RouteOpts,
    labels: Labels,
    key: String,
    alerts: Vec<Alert>,
}

struct Inner {
    route: Route,
    inhibitor: Inhibitor,
    intervals: BTreeMap<String, TimeIntervalConfig>,
    receivers: HashMap<String, ReceiverSettings>,
    external_url: String,
    resolve_timeout: Duration,
    shared: Shared,
    /// By route and group labels (a hash of the labels would merge two
    /// groups whose hashes collide).
    groups: Mutex<HashMap<(String, Labels), Group>>,
    wake: Notify,
}

/// A summary of an aggregation group (for the API and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub key: String,
    pub receiver: String,
    pub labels: Labels,
    pub alerts: Vec<Fingerprint>,
    pub next_flush: DateTime<Utc>,
    /// Escalation steps already run in this firing episode.
    pub escalation_steps_done: usize,
}

/// Why an alert is not notified now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertMarks {
    pub silenced_by: Vec<String>,
    pub inhibited_by: Vec<String>,
}

/// The dispatcher. Cheap to clone (shared inside).
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl Dispatcher {
    /// A dispatcher for `config` (validated against `receivers`' names);
    /// alerts already in the store are routed right away.
    pub fn new(
        config: &AlertingConfig,
        receivers: HashMap<String, ReceiverSettings>,
        external_url: impl Into<String>,
        shared: Shared,
    ) -> Result<Dispatcher, String> {
        let names: Vec<&str> = receivers.keys().map(String::as_str).collect();
        config.validate(&names)?;
        let route = Route::new(config.route.as_ref().expect("validated"))?;
        let d = Dispatcher {
            inner: Arc::new(Inner {
                route,
                inhibitor: Inhibitor::new(&config.inhibit_rules)?,
                intervals: config.intervals(),
                receivers,
                external_url: external_url.into(),
                resolve_timeout: config.global.resolve_timeout.as_std(),
                shared,
                groups: Mutex::new(HashMap::new()),
                wake: Notify::new(),
            }),
        };
        for a in d.inner.shared.alerts.list() {
            d.inner.route_alert(a);
        }
        Ok(d)
    }

    pub fn route(&self) -> &Route {
        &self.inner.route
    }

    pub fn shared(&self) -> &Shared {
        &self.inner.shared
    }

    /// `POST /api/v2/alerts`: normalise, store (merging), route. Valid
    /// alerts are taken even when others are refused; the error lists the
    /// refused ones.
    pub fn put_alerts(&self, alerts: Vec<PostableAlert>) -> Result<(), String> {
        let now = self.inner.shared.clock.now();
        let mut errs = Vec::new();
        let mut ok = Vec::new();
        for (i, p) in alerts.into_iter().enumerate() {
            match p.into_alert(now, self.inner.resolve_timeout) {
                Ok(a) => ok.push(a),
                Err(e) => errs.push(format!("alert {i}: {e}")),
            }
        }
        self.insert_alerts(ok);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }

    /// Take alerts that are already normalised (from the rule engine).
    pub fn insert_alerts(&self, alerts: Vec<Alert>) {
        let now = self.inner.shared.clock.now();
        for a in alerts {
            let stored = self.inner.shared.alerts.put(a, now);
            self.inner.route_alert(stored);
        }
        self.inner.wake.notify_one();
    }

    /// Start every flush that is due now; returns their tasks.
    pub fn start_due(&self) -> Vec<JoinHandle<()>> {
        let now = self.inner.shared.clock.now();
        let mut jobs = Vec::new();
        let mut escalations = Vec::new();
        {
            let mut groups = self.inner.groups.lock();
            for g in groups.values_mut() {
                let due = g.escalation_due(&self.inner.shared.incidents, now);
                if due.is_some_and(|t| t <= now) {
                    let step = &g.opts.escalation[g.esc_next];
                    escalations.push(EscalationJob {
                        step: g.esc_next,
                        steps: g.opts.escalation.len(),
                        receiver: step.receiver.clone(),
                        delay: step.delay,
                        budget: g.opts.group_interval,
                        labels: g.labels.clone(),
                        key: g.key.clone(),
                        alerts: g.alerts.values().cloned().collect(),
                    });
                    g.esc_next += 1;
                }
            }
            for (id, g) in groups.iter_mut() {
                if g.in_flight || g.next_flush > now {
                    continue;
                }
                g.next_flush = now + chrono::Duration::from_std(g.opts.group_interval).unwrap();
                g.has_flushed = true;
                g.in_flight = true;
                jobs.push(FlushJob {
                    id: id.clone(),
                    opts: g.opts.clone(),
                    labels: g.labels.clone(),
                    key: g.key.clone(),
                    alerts: g.alerts.values().cloned().collect(),
                });
            }
        }
        jobs.sort_by(|a, b| a.key.cmp(&b.key));
        let mut handles: Vec<JoinHandle<()>> = jobs
            .into_iter()
            .map(|job| {
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    let flushed_at = inner.shared.clock.now();
                    let done = inner.flush(&job, flushed_at).await;
                    let (key, labels, budget) =
                        (job.key.clone(), job.labels.clone(), job.opts.group_interval);
                    let resolved = job.alerts.clone();
                    let escalated = inner.finish(job, done, flushed_at);
                    for receiver in escalated {
                        inner
                            .notify_escalated_resolved(
                                &receiver, &key, &labels, &resolved, flushed_at, budget,
                            )
                            .await;
                    }
                })
            })
            .collect();
        handles.extend(escalations.into_iter().map(|job| {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.escalate(job).await })
        }));
        handles
    }

    /// Re-plan the timers now (an unack may make an escalation step due).
    pub fn poke(&self) {
        self.inner.wake.notify_one();
    }

    /// Whether `key` is an aggregation group with firing alerts now (what
    /// may be acknowledged).
    pub fn group_firing(&self, key: &str) -> bool {
        let now = self.inner.shared.clock.now();
        self.inner
            .groups
            .lock()
            .values()
            .any(|g| g.key == key && g.firing(now))
    }

    /// Run every due flush to completion (tests and single-step drivers).
    pub async fn flush_due(&self) {
        for h in self.start_due() {
            let _ = h.await;
        }
    }

    /// The earliest pending group flush.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let now = self.inner.shared.clock.now();
        let groups = self.inner.groups.lock();
        let flushes = groups
            .values()
            .filter(|g| !g.in_flight)
            .map(|g| g.next_flush);
        let steps = groups
            .values()
            .filter_map(|g| g.escalation_due(&self.inner.shared.incidents, now));
        flushes.chain(steps).min()
    }

    /// Garbage-collect and persist: resolved alerts from the store,
    /// expired silences and log entries; then snapshots.
    pub fn maintenance(&self) {
        let s = &self.inner.shared;
        let now = s.clock.now();
        s.alerts.gc(now);
        if let Err(e) = s.silences.maintenance(now) {
            tracing::warn!("silences snapshot: {e}");
        }
        if let Err(e) = s.nflog.maintenance(now) {
            tracing::warn!("notification log snapshot: {e}");
        }
    }

    /// Drive the timers until `shutdown` resolves, then write snapshots.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let clock = self.inner.shared.clock.clone();
        let mut next_maintenance =
            clock.now() + chrono::Duration::from_std(MAINTENANCE_INTERVAL).unwrap();
        loop {
            self.start_due();
            let now = clock.now();
            if now >= next_maintenance {
                self.maintenance();
                next_maintenance = now + chrono::Duration::from_std(MAINTENANCE_INTERVAL).unwrap();
            }
            let wake_at = self
                .next_deadline()
                .map_or(next_maintenance, |t| t.min(next_maintenance));
            tokio::select! {
                _ = clock.sleep_until(wake_at) => {}
                _ = self.inner.wake.notified() => {}
                _ = &mut shutdown => break,
            }
        }
        self.maintenance();
    }

    /// The aggregation groups, by key.
    pub fn groups(&self) -> Vec<GroupInfo> {
        let mut v: Vec<GroupInfo> = self
            .inner
            .groups
            .lock()
            .values()
            .map(|g| GroupInfo {
                key: g.key.clone(),
                receiver: g.opts.receiver.clone(),
                labels: g.labels.clone(),
                alerts: g.alerts.keys().copied().collect(),
                next_flush: g.next_flush,
                escalation_steps_done: g.esc_next,
            })
            .collect();
        v.sort_by(|a, b| (&a.key, &a.receiver).cmp(&(&b.key, &b.receiver)));
        v
    }

    /// Silences and inhibiting alerts that mute `labels` now.
    pub fn marks(&self, labels: &Labels) -> AlertMarks {
        let s = &self.inner.shared;
        let now = s.clock.now();
        let current = s.alerts.list();
        AlertMarks {
            silenced_by: s.silences.mutes(labels, now),
            inhibited_by: self
                .inner
                .inhibitor
                .mutes(labels, &current, now)
                .map(fingerprint_hex)
                .into_iter()
                .collect(),
        }
    }
}

impl Inner {
    fn route_alert(&self, alert: Alert) {
        let now = self.shared.clock.now();
        let fp = alert.fingerprint();
        let mut groups = self.groups.lock();
        for r in self.route.match_labels(&alert.labels) {
            let labels = r.group_labels(&alert.labels);
            let id = (r.id().to_string(), labels.clone());
            let g = groups.entry(id).or_insert_with(|| Group {
                key: format!("{}:{}", r.key(), labelset_string(&labels)),
                opts: r.opts.clone(),
                labels,
                alerts: BTreeMap::new(),
                next_flush: now + chrono::Duration::from_std(r.opts.group_wait).unwrap(),
                has_flushed: false,
                in_flight: false,
                paged_at: None,
                esc_next: 0,
            });
            // An alert older than group_wait is sent without waiting.
            if !g.has_flushed
                && alert.starts_at + chrono::Duration::from_std(g.opts.group_wait).unwrap() < now
            {
                g.next_flush = g.next_flush.min(now);
            }
            // A firing alert new to the group (or firing again) goes on the
            // incident's timeline; re-sends of the same alert do not, nor do
            // silenced ones (the first flush that pages for them opens the
            // incident if the silence ends while they fire).
            let was_firing = g.alerts.get(&fp).is_some_and(|a| !a.resolved_at(now));
            if !alert.resolved_at(now)
                && !was_firing
                && self.shared.silences.mutes(&alert.labels, now).is_empty()
            {
                self.shared
                    .incidents
                    .alert_firing(&g.key, &g.labels, &alert.labels, now);
            }
            g.alerts.insert(fp, alert.clone());
        }
    }

    fn time_muted(&self, opts: &RouteOpts, now: DateTime<Utc>) -> bool {
        let within = |n: &String| self.intervals.get(n).is_some_and(|ti| ti.contains(now));
        if !opts.active_time_intervals.is_empty() && !opts.active_time_intervals.iter().any(within)
        {
            return true;
        }
        opts.mute_time_intervals.iter().any(within)
    }

    /// The notification pipeline for one group; true when the group's
    /// resolved alerts may be forgotten.
    async fn flush(&self, job: &FlushJob, now: DateTime<Utc>) -> Flushed {
        let done = Flushed {
            ok: true,
            paged: false,
        };
        let receiver = job.opts.receiver.as_str();
        if self.time_muted(&job.opts, now) {
            tracing::debug!(group = %job.key, "notifications muted by time interval");
            return done;
        }
        // Copying every current alert costs O(all alerts) per flush: only
        // pay it when some inhibit rule needs them.
        let current = if self.inhibitor.rules.is_empty() {
            Vec::new()
        } else {
            self.shared.alerts.list()
        };
        let mut alerts: Vec<&Alert> = job
            .alerts
            .iter()
            .filter(|a| self.inhibitor.mutes(&a.labels, &current, now).is_none())
            .filter(|a| self.shared.silences.mutes(&a.labels, now).is_empty())
            .collect();
        if alerts.is_empty() {
            return done;
        }
        alerts.sort_by(|a, b| alert_order(a, b));
        let settings = self.receivers.get(receiver).cloned().unwrap_or_default();
        let firing: BTreeSet<Fingerprint> = alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .map(|a| a.fingerprint())
            .collect();
        let resolved: BTreeSet<Fingerprint> = alerts
            .iter()
            .filter(|a| a.resolved_at(now))
            .map(|a| a.fingerprint())
            .collect();
        let done = Flushed {
            ok: true,
            paged: !firing.is_empty(),
        };
        if done.paged && !self.shared.incidents.has_open(&job.key) {
            for a in alerts.iter().filter(|a| !a.resolved_at(now)) {
                self.shared
                    .incidents
                    .alert_firing(&job.key, &job.labels, &a.labels, now);
            }
        }
        // An acknowledged group gets no repeats (new alerts and resolutions
        // still go out).
        let repeat = if self.shared.incidents.active_ack(&job.key, now).is_some() {
            ACKED_REPEAT
        } else {
            job.opts.repeat_interval
        };
        let entry = self.shared.nflog.query(&job.key, receiver);
        if !needs_update(
            entry.as_ref(),
            &firing,
            &resolved,
            settings.send_resolved,
            repeat,
            now,
        ) {
            return done;
        }
        if !settings.send_resolved {
            alerts.retain(|a| !a.resolved_at(now));
        }
        if !alerts.is_empty() {
            let msg = build_message(
                receiver,
                &job.key,
                &job.labels,
                &alerts,
                now,
                &self.external_url,
                settings.max_alerts,
            );
            let status = msg.status.clone();
            let n = msg.alerts.len();
            let result = self
                .send_with_retries(receiver, msg, now, job.opts.group_interval)
                .await;
            self.shared.incidents.record_group(
                &job.key,
                crate::incident::Event::new(
                    now,
                    "notification",
                    format!("{status} notification of {n} alert(s) to {receiver}"),
                )
                .receiver(receiver, result.clone()),
            );
            if result.is_err() {
                return Flushed {
                    ok: false,
                    paged: false,
                };
            }
        }
        self.shared
            .nflog
            .log(&job.key, receiver, firing, resolved, now);
        done
    }

    /// One escalation step: the group's firing alerts (past inhibition and
    /// silences) to the step's receiver.
    async fn escalate(&self, job: EscalationJob) {
        let now = self.shared.clock.now();
        let current = self.shared.alerts.list();
        let mut alerts: Vec<&Alert> = job
            .alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .filter(|a| self.inhibitor.mutes(&a.labels, &current, now).is_none())
            .filter(|a| self.shared.silences.mutes(&a.labels, now).is_empty())
            .collect();
        if alerts.is_empty() {
            return;
        }
        alerts.sort_by(|a, b| alert_order(a, b));
        let settings = self
            .receivers
            .get(&job.receiver)
            .cloned()
            .unwrap_or_default();
        let msg = build_message(
            &job.receiver,
            &job.key,
            &job.labels,
            &alerts,
            now,
            &self.external_url,
            settings.max_alerts,
        );
        tracing::info!(group = %job.key, step = job.step + 1, receiver = %job.receiver, "escalating: no ack");
        let result = self
            .send_with_retries(&job.receiver, msg, now, job.budget)
            .await;
        self.shared.incidents.record_group(
            &job.key,
            crate::incident::Event::new(
                now,
                "escalation",
                format!(
                    "escalation {}/{}: no ack {} after the first page, paged {}",
                    job.step + 1,
                    job.steps,
                    humantime::format_duration(job.delay),
                    job.receiver
                ),
            )
            .receiver(&job.receiver, result)
            .data(serde_json::json!({"step": job.step + 1})),
        );
    }

    async fn send_with_retries(
        &self,
        receiver: &str,
        msg: WebhookMessage,
        start: DateTime<Utc>,
        budget: Duration,
    ) -> Result<(), String> {
        let deadline = start + chrono::Duration::from_std(budget).unwrap();
        let mut backoff = INITIAL_BACKOFF;
        let mut attempt = 1;
        loop {
            match self.shared.notifier.notify(receiver, msg.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.retryable => {
                    let next =
                        self.shared.clock.now() + chrono::Duration::from_std(backoff).unwrap();
                    if next >= deadline {
                        tracing::warn!(receiver, attempt, group = %msg.group_key, "notify failed, giving up until the next group interval: {e}");
                        return Err(format!("failed after {attempt} attempt(s): {e}"));
                    }
                    tracing::debug!(receiver, attempt, "notify failed, retrying: {e}");
                    self.shared.clock.sleep_until(next).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    attempt += 1;
                }
                Err(e) => {
                    tracing::warn!(receiver, attempt, group = %msg.group_key, "notify failed permanently: {e}");
                    return Err(format!("failed permanently: {e}"));
                }
            }
        }
    }

    /// Updates the group after a flush; returns the escalation receivers to
    /// tell about the resolution when the firing episode is over.
    fn finish(&self, job: FlushJob, done: Flushed, flushed_at: DateTime<Utc>) -> Vec<String> {
        let ok = done.ok;
        let mut escalated = Vec::new();
        // Every alert of the flush resolved: the firing episode is over
        // (its incident closes, its ack ends, escalation starts afresh).
        let episode_over =
            ok && !job.alerts.is_empty() && job.alerts.iter().all(|a| a.resolved_at(flushed_at));
        if episode_over {
            self.shared.incidents.resolve(&job.key, flushed_at);
        }
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get_mut(&job.id) {
            g.in_flight = false;
            if done.paged && g.paged_at.is_none() {
                g.paged_at = Some(flushed_at);
            }
            if episode_over {
                for s in &g.opts.escalation[..g.esc_next.min(g.opts.escalation.len())] {
                    if s.receiver != g.opts.receiver && !escalated.contains(&s.receiver) {
                        escalated.push(s.receiver.clone());
                    }
                }
                g.paged_at = None;
                g.esc_next = 0;
            }
            if ok {
                // Forget resolved alerts just notified, unless updated since.
                for a in job.alerts.iter().filter(|a| a.resolved_at(flushed_at)) {
                    let fp = a.fingerprint();
                    if g.alerts.get(&fp) == Some(a) {
                        g.alerts.remove(&fp);
                    }
                }
            }
            if g.alerts.is_empty() {
                groups.remove(&job.id);
            }
        }
        drop(groups);
        self.wake.notify_one();
        escalated
    }

    /// Whoever an escalation step paged hears about the resolution too
    /// (unless the receiver has send_resolved off).
    async fn notify_escalated_resolved(
        &self,
        receiver: &str,
        key: &str,
        labels: &Labels,
        alerts: &[Alert],
        now: DateTime<Utc>,
        budget: Duration,
    ) {
        let settings = self.receivers.get(receiver).cloned().unwrap_or_default();
        if !settings.send_resolved {
            return;
        }
        let mut alerts: Vec<&Alert> = alerts.iter().collect();
        alerts.sort_by(|a, b| alert_order(a, b));
        let msg = build_message(
            receiver,
            key,
            labels,
            &alerts,
            now,
            &self.external_url,
            settings.max_alerts,
        );
        let n = msg.alerts.len();
        let result = self.send_with_retries(receiver, msg, now, budget).await;
        self.shared.incidents.record_resolved(
            key,
            now,
            crate::incident::Event::new(
                now,
                "notification",
                format!("resolved notification of {n} alert(s) to {receiver} (escalated to)"),
            )
            .receiver(receiver, result),
        );
    }
}

/// Alertmanager's `AlertSlice` order: by `job`, then `instance`, then labels.
fn alert_order(a: &Alert, b: &Alert) -> std::cmp::Ordering {
    for k in ["job", "instance"] {
        let (x, y) = (a.labels.get(k), b.labels.get(k));
        if x != y {
            return match (x, y) {
                (Some(x), Some(y)) => x.cmp(y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                _ => std::cmp::Ordering::Equal,
            };
        }
    }
    a.labels.cmp(&b.labels)
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

    #[tokio::test]
    async fn manual_clock_sleeps_until_advanced() {
        let c = ManualClock::new(t(0));
        let s = c.sleep_until(t(10));
        let h = tokio::spawn(s);
        tokio::task::yield_now().await;
        assert!(!h.is_finished());
        c.advance(Duration::from_secs(10));
        h.await.unwrap();
        assert_eq!(c.now(), t(10));
    }
}
