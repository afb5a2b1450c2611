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
use std::sync::atomic::{AtomicBool, Ordering};
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
use super::route::{EscalationStep, Route, RouteOpts};
use super::silence::Silences;
use super::types::{
    alert_order, fingerprint_hex, labelset_string, rfc3339, Alert, AlertStore, Fingerprint,
    PostableAlert,
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

/// How often state files a failed write left behind are written again.
pub const STATE_RETRY_INTERVAL: Duration = Duration::from_secs(5);

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
    /// Where the group's escalation stands in this firing episode.
    esc: Escalation,
}

/// A group's escalation in one firing episode. It outlives a config reload
/// when the group does (see [`Dispatcher::take_over`]).
#[derive(Debug, Clone, Default, PartialEq)]
struct Escalation {
    /// When the group's firing alerts were first sent to its receiver,
    /// whether or not that got through: a receiver that is down is what
    /// escalation exists for. Step delays count from here.
    first_page: Option<DateTime<Utc>>,
    /// How far the schedule moved because a step ran late (an ack held
    /// it): the steps after a late one keep their configured spacing from
    /// it instead of all firing at once.
    slip: chrono::Duration,
    /// Steps already run, a prefix of the route's `escalation`.
    done: usize,
}

impl Escalation {
    /// When step `step` is due on the schedule (ignoring acks).
    fn due(&self, step: &EscalationStep) -> Option<DateTime<Utc>> {
        let delay = chrono::Duration::from_std(step.delay).ok()?;
        self.first_page?
            .checked_add_signed(self.slip)?
            .checked_add_signed(delay)
    }

    /// Step `done` runs at `now`: if it is late, so are the ones after it.
    fn ran(&mut self, step: &EscalationStep, now: DateTime<Utc>) {
        if let Some(due) = self.due(step) {
            if now > due {
                self.slip += now - due;
            }
        }
        self.done += 1;
    }

    /// This escalation under a route whose steps changed from `old` to
    /// `new` (a reload): the first page and the slip stay; it resumes after
    /// the last step of `new` that already ran (same receiver and delay),
    /// so no step already run pages again, and a new step placed before it
    /// is passed over rather than paged late.
    fn carried(&self, old: &[EscalationStep], new: &[EscalationStep]) -> Escalation {
        let done = if old == new {
            self.done
        } else {
            let ran = &old[..self.done.min(old.len())];
            new.iter()
                .rposition(|s| ran.contains(s))
                .map_or(0, |i| i + 1)
        };
        Escalation {
            done,
            ..self.clone()
        }
    }
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
        let step = self.opts.escalation.get(self.esc.done)?;
        let due = self.esc.due(step)?;
        if !self.firing(now) {
            return None;
        }
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

/// The end of a group's firing episode, for those its escalation paged.
struct Resolution {
    /// The escalation steps' receivers (other than the group's own).
    receivers: Vec<String>,
    /// The incident it closed.
    incident: Option<String>,
    key: String,
    labels: Labels,
    alerts: Vec<Alert>,
    /// When the resolution was notified.
    notified_at: DateTime<Utc>,
    /// The retry budget (the group interval).
    budget: Duration,
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
    /// A newer dispatcher took over (a reload): this one starts no more
    /// flushes or steps. Set under the `groups` lock.
    retired: AtomicBool,
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
    /// Time intervals muting the group's notifications now.
    pub muted_by: Vec<String>,
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
                retired: AtomicBool::new(false),
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
    /// alerts are taken even when others are refused; the error lists why
    /// each refused one was (joined by "; ", as Alertmanager).
    pub fn put_alerts(&self, alerts: Vec<PostableAlert>) -> Result<(), String> {
        let now = self.inner.shared.clock.now();
        let mut errs = Vec::new();
        let mut ok = Vec::new();
        for p in alerts {
            match p.into_alert(now, self.inner.resolve_timeout) {
                Ok(a) => ok.push(a),
                Err(e) => errs.push(e),
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
            if self.inner.retired.load(Ordering::Acquire) {
                return Vec::new();
            }
            for g in groups.values_mut() {
                let due = g.escalation_due(&self.inner.shared.incidents, now);
                if due.is_some_and(|t| t <= now) {
                    let step = g.opts.escalation[g.esc.done].clone();
                    escalations.push(EscalationJob {
                        step: g.esc.done,
                        steps: g.opts.escalation.len(),
                        receiver: step.receiver.clone(),
                        delay: step.delay,
                        budget: g.opts.group_interval,
                        labels: g.labels.clone(),
                        key: g.key.clone(),
                        alerts: g.alerts.values().cloned().collect(),
                    });
                    g.esc.ran(&step, now);
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
                    let ok = inner.flush(&job, flushed_at).await;
                    let Some(end) = inner.finish(job, ok, flushed_at) else {
                        return;
                    };
                    for receiver in &end.receivers {
                        inner.notify_escalated_resolved(receiver, &end).await;
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

    /// Takes over from `previous`, the dispatcher of the config before a
    /// reload; call it before [`Dispatcher::run`]. `previous` starts no more
    /// flushes or escalation steps (those in flight finish), and each group
    /// that still exists under this route tree (same route, same group key)
    /// keeps its escalation: when it was first paged and the steps already
    /// run, which do not run again. Alertmanager likewise keeps its
    /// notification log across a reload; without this, every reload would
    /// start escalation over and frequent reloads could hold off the last
    /// step for good.
    pub fn take_over(&self, previous: &Dispatcher) {
        let old = previous.inner.groups.lock();
        previous.inner.retired.store(true, Ordering::Release);
        let by_key: HashMap<(&str, &str), &Group> = old
            .iter()
            .map(|(id, g)| ((id.0.as_str(), g.key.as_str()), g))
            .collect();
        let mut carried = 0;
        for (id, g) in self.inner.groups.lock().iter_mut() {
            if let Some(o) = by_key.get(&(id.0.as_str(), g.key.as_str())) {
                g.esc = o.esc.carried(&o.opts.escalation, &g.opts.escalation);
                carried += usize::from(g.esc.first_page.is_some());
            }
        }
        drop(old);
        tracing::debug!(groups = carried, "escalation carried over the reload");
        self.inner.wake.notify_one();
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

    /// The earliest pending group flush or escalation step.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let now = self.inner.shared.clock.now();
        let groups = self.inner.groups.lock();
        if self.inner.retired.load(Ordering::Acquire) {
            return None;
        }
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
        // Failures are logged by the stores (rate-limited) and retried.
        let _ = s.silences.maintenance(now);
        let _ = s.nflog.maintenance(now);
    }

    /// Silences or notification log entries that a failed write left
    /// only in memory (the disk refused writes): written again every
    /// [`STATE_RETRY_INTERVAL`] until they are on disk, so a crash after
    /// the disk recovers loses none of them.
    pub fn state_behind(&self) -> bool {
        let s = &self.inner.shared;
        s.silences.is_behind() || s.nflog.is_behind()
    }

    /// Drive the timers until `shutdown` resolves, then write snapshots.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let clock = self.inner.shared.clock.clone();
        let mut next_maintenance =
            clock.now() + chrono::Duration::from_std(MAINTENANCE_INTERVAL).unwrap();
        let retry_every = chrono::Duration::from_std(STATE_RETRY_INTERVAL).unwrap();
        let mut next_retry = clock.now() + retry_every;
        loop {
            self.start_due();
            let now = clock.now();
            if now >= next_maintenance {
                self.maintenance();
                next_maintenance = now + chrono::Duration::from_std(MAINTENANCE_INTERVAL).unwrap();
            } else if self.state_behind() && now >= next_retry {
                let s = &self.inner.shared;
                // Each logs its own failure (rate-limited).
                if s.silences.is_behind() {
                    let _ = s.silences.snapshot();
                }
                if s.nflog.is_behind() {
                    let _ = s.nflog.snapshot();
                }
                next_retry = now + retry_every;
            }
            let mut wake_at = self
                .next_deadline()
                .map_or(next_maintenance, |t| t.min(next_maintenance));
            if self.state_behind() {
                wake_at = wake_at.min(next_retry.max(now));
            }
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
        let now = self.inner.shared.clock.now();
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
                escalation_steps_done: g.esc.done,
                muted_by: self.inner.muted_by(&g.opts, now),
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
        self.marker(&current, now).marks(labels)
    }

    /// Marks many alerts at `now` against `current` (the store's alerts):
    /// see [`Marker`].
    pub fn marker<'a>(&'a self, current: &'a [Alert], now: DateTime<Utc>) -> Marker<'a> {
        Marker {
            inhibit: self.inner.inhibitor.index(current, now),
            silences: self.inner.shared.silences.active(now),
        }
    }

    /// Names of the time intervals that mute a route's notifications at
    /// `now` (Alertmanager's `mutedBy`).
    pub fn muted_by(&self, opts: &RouteOpts, now: DateTime<Utc>) -> Vec<String> {
        self.inner.muted_by(opts, now)
    }
}

/// The marks of many alerts at one instant (the API's listings): the
/// inhibiting alerts are indexed and the active silences copied once, so
/// marking every alert costs O(alerts), not O(alerts²).
pub struct Marker<'a> {
    inhibit: super::inhibit::InhibitIndex<'a>,
    silences: super::silence::ActiveSilences,
}

impl Marker<'_> {
    pub fn marks(&self, labels: &Labels) -> AlertMarks {
        AlertMarks {
            silenced_by: self.silences.mutes(labels),
            inhibited_by: self
                .inhibit
                .mutes(labels)
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
                esc: Escalation::default(),
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
        !self.muted_by(opts, now).is_empty()
    }

    /// The route's mute intervals that contain `now`, and its active
    /// intervals when `now` is outside all of them.
    fn muted_by(&self, opts: &RouteOpts, now: DateTime<Utc>) -> Vec<String> {
        let within = |n: &&String| self.intervals.get(*n).is_some_and(|ti| ti.contains(now));
        let mut names: Vec<String> = Vec::new();
        if !opts.active_time_intervals.is_empty()
            && !opts.active_time_intervals.iter().any(|n| within(&n))
        {
            names.extend(opts.active_time_intervals.iter().cloned());
        }
        names.extend(opts.mute_time_intervals.iter().filter(within).cloned());
        names
    }

    /// The group's firing alerts are being sent to its receiver: if this
    /// is the first time in the firing episode, escalation counts from now.
    fn mark_paged(&self, id: &(String, Labels), now: DateTime<Utc>) {
        let mut groups = self.groups.lock();
        let Some(g) = groups.get_mut(id) else { return };
        if g.esc.first_page.is_none() {
            g.esc.first_page = Some(now);
            drop(groups);
            // The first step may be due before the next flush.
            self.wake.notify_one();
        }
    }

    /// The notification pipeline for one group; true when the group's
    /// resolved alerts may be forgotten.
    async fn flush(&self, job: &FlushJob, now: DateTime<Utc>) -> bool {
        let receiver = job.opts.receiver.as_str();
        if self.time_muted(&job.opts, now) {
            tracing::debug!(group = %job.key, "notifications muted by time interval");
            return true;
        }
        // Copying every current alert costs O(all alerts) per flush: only
        // pay it when some inhibit rule needs them.
        let current = if self.inhibitor.rules.is_empty() {
            Vec::new()
        } else {
            self.shared.alerts.list()
        };
        // Indexed once: a scan of every alert per group member made a
        // flush O(group × all alerts).
        let inhibiting = self.inhibitor.index(&current, now);
        let mut alerts: Vec<&Alert> = job
            .alerts
            .iter()
            .filter(|a| inhibiting.mutes(&a.labels).is_none())
            .filter(|a| self.shared.silences.mutes(&a.labels, now).is_empty())
            .collect();
        if alerts.is_empty() {
            return true;
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
        // Firing alerts got past time intervals, inhibition and silences:
        // the group is paged (now, or it was before), whether or not the
        // receiver takes it.
        let paged = !firing.is_empty();
        if paged {
            self.mark_paged(&job.id, now);
        }
        if paged && !self.shared.incidents.has_open(&job.key) {
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
            return true;
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
            let failed = result.is_err();
            // Not logged as sent, so the group's next flush sends it again.
            let next_flush = now + chrono::Duration::from_std(job.opts.group_interval).unwrap();
            self.shared.incidents.record_group(
                &job.key,
                crate::incident::Event::new(
                    now,
                    "notification",
                    format!("{status} notification of {n} alert(s) to {receiver}"),
                )
                .receiver(receiver, result)
                .retry_at(next_flush),
            );
            if failed {
                return false;
            }
        }
        self.shared
            .nflog
            .log(&job.key, receiver, firing, resolved, now);
        true
    }

    /// One escalation step: the group's firing alerts (past inhibition and
    /// silences) to the step's receiver.
    async fn escalate(&self, job: EscalationJob) {
        let now = self.shared.clock.now();
        let current = if self.inhibitor.rules.is_empty() {
            Vec::new()
        } else {
            self.shared.alerts.list()
        };
        let inhibiting = self.inhibitor.index(&current, now);
        let mut alerts: Vec<&Alert> = job
            .alerts
            .iter()
            .filter(|a| !a.resolved_at(now))
            .filter(|a| inhibiting.mutes(&a.labels).is_none())
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

    /// Updates the group after a flush; when the firing episode is over,
    /// returns who its escalation paged, to tell them about the resolution.
    fn finish(&self, job: FlushJob, ok: bool, flushed_at: DateTime<Utc>) -> Option<Resolution> {
        // Every alert of the flush resolved: the firing episode is over
        // (its incident closes, its ack ends, escalation starts afresh).
        let episode_over =
            ok && !job.alerts.is_empty() && job.alerts.iter().all(|a| a.resolved_at(flushed_at));
        let mut end = None;
        if episode_over {
            // The incident ended when its last alert did, not when that was
            // notified (up to a group interval later).
            let ended = job.alerts.iter().map(|a| a.ends_at).max();
            end = Some(Resolution {
                receivers: Vec::new(),
                incident: self
                    .shared
                    .incidents
                    .resolve(&job.key, ended.unwrap_or(flushed_at)),
                key: job.key.clone(),
                labels: job.labels.clone(),
                alerts: job.alerts.clone(),
                notified_at: flushed_at,
                budget: job.opts.group_interval,
            });
        }
        let mut groups = self.groups.lock();
        if let Some(g) = groups.get_mut(&job.id) {
            g.in_flight = false;
            if let Some(end) = end.as_mut() {
                let ran = &g.opts.escalation[..g.esc.done.min(g.opts.escalation.len())];
                for s in ran {
                    if s.receiver != g.opts.receiver && !end.receivers.contains(&s.receiver) {
                        end.receivers.push(s.receiver.clone());
                    }
                }
                g.esc = Escalation::default();
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
        end
    }

    /// Whoever an escalation step paged hears about the resolution too
    /// (unless the receiver has send_resolved off).
    async fn notify_escalated_resolved(&self, receiver: &str, end: &Resolution) {
        let settings = self.receivers.get(receiver).cloned().unwrap_or_default();
        if !settings.send_resolved {
            return;
        }
        let mut alerts: Vec<&Alert> = end.alerts.iter().collect();
        alerts.sort_by(|a, b| alert_order(a, b));
        let now = end.notified_at;
        let msg = build_message(
            receiver,
            &end.key,
            &end.labels,
            &alerts,
            now,
            &self.external_url,
            settings.max_alerts,
        );
        let n = msg.alerts.len();
        let result = self.send_with_retries(receiver, msg, now, end.budget).await;
        let Some(incident) = &end.incident else {
            return;
        };
        self.shared.incidents.record_in(
            incident,
            crate::incident::Event::new(
                now,
                "notification",
                format!("resolved notification of {n} alert(s) to {receiver} (escalated to)"),
            )
            .receiver(receiver, result),
        );
    }
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
