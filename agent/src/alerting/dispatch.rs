//! The dispatcher (Alertmanager's `dispatch/`): alerts go through the
//! route tree into aggregation groups keyed by route and grouping labels;
//! each group flushes after `group_wait`, then every `group_interval`, and
//! escalation steps come due after the group's first page. What a flush or
//! a step does with the alerts is the notification pipeline it was given
//! ([`super::notify::Pipeline`]: time intervals → inhibition → silences →
//! page and acks → dedup against the notification log → the receiver with
//! retries → log the notification).
//!
//! Time comes from a [`Clock`], so tests drive the timers exactly with a
//! [`crate::clock::ManualClock`] and [`Dispatcher::flush_due`]; the host
//! runs [`Dispatcher::run`] with a [`crate::clock::SystemClock`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::config::{AlertingConfig, ConfigError, TimeIntervalConfig};
use super::escalation::Escalation;
use super::inhibit::Inhibitor;
use super::nflog::NotificationLog;
use super::notify::{muted_by, Context, Kind, OnCall, Parts, Pipeline};
use super::route::{Route, RouteOpts};
use super::silence::Silences;
use super::types::{
    fingerprint_hex, labelset_string, Alert, AlertStore, Fingerprint, PostableAlert,
};
use crate::clock::Clock;
use crate::model::Labels;

// The dispatcher's inputs, where its callers have always found them.
pub use super::notify::{Notifier, NotifyError, ReceiverSettings};

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
    /// Acks (which suppress repeats and hold escalation) and the incident
    /// timelines the notification path records into.
    pub oncall: Arc<dyn OnCall>,
}

/// Why `POST /api/v2/alerts` refused some alerts (the others were taken).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .reasons.join("; "))]
pub struct RejectedAlerts {
    /// Why each refused alert was, in the order posted.
    pub reasons: Vec<String>,
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

impl Group {
    fn firing(&self, now: DateTime<Utc>) -> bool {
        self.alerts.values().any(|a| !a.resolved_at(now))
    }

    /// When the next escalation step may run: None when there is none left,
    /// the group is not paged or not firing, or an ack without expiry holds
    /// it; an ack with an expiry holds it until then.
    fn escalation_due(&self, oncall: &dyn OnCall, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let step = self.opts.escalation.get(self.esc.done)?;
        let due = self.esc.due(step)?;
        if !self.firing(now) {
            return None;
        }
        match oncall.ack(&self.key, now) {
            None => Some(due),
            Some(ack) => ack.until.map(|e| e.max(due)),
        }
    }
}

/// One run of a pipeline for a group.
struct Job {
    /// The group's id (route, group labels).
    id: (String, Labels),
    opts: RouteOpts,
    labels: Labels,
    key: String,
    alerts: Vec<Alert>,
}

impl Job {
    fn context(&self, receiver: &str, now: DateTime<Utc>, kind: Kind) -> Context {
        Context::new(
            self.key.clone(),
            self.labels.clone(),
            receiver,
            self.opts.clone(),
            now,
            kind,
        )
    }
}

/// The end of a group's firing episode, for those its escalation paged.
struct Resolution {
    /// The escalation steps' receivers (other than the group's own).
    receivers: Vec<String>,
    /// The incident it closed.
    incident: Option<String>,
    /// When the resolution was notified.
    notified_at: DateTime<Utc>,
}

struct Inner {
    route: Route,
    inhibitor: Arc<Inhibitor>,
    intervals: Arc<BTreeMap<String, TimeIntervalConfig>>,
    pipeline: Pipeline,
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
    /// A dispatcher for `config` (validated against `receivers`' names)
    /// running the standard pipeline; alerts already in the store are
    /// routed right away.
    pub fn new(
        config: &AlertingConfig,
        receivers: HashMap<String, ReceiverSettings>,
        external_url: impl Into<String>,
        shared: Shared,
    ) -> Result<Dispatcher, ConfigError> {
        Dispatcher::with_pipeline(config, receivers, external_url, shared, Pipeline::standard)
    }

    /// A dispatcher running the pipeline `build` makes from its parts
    /// (tests add or replace stages; see [`super::notify`]).
    pub fn with_pipeline(
        config: &AlertingConfig,
        receivers: HashMap<String, ReceiverSettings>,
        external_url: impl Into<String>,
        shared: Shared,
        build: impl FnOnce(&Parts) -> Pipeline,
    ) -> Result<Dispatcher, ConfigError> {
        let names: Vec<&str> = receivers.keys().map(String::as_str).collect();
        config.validate(&names)?;
        let route = Route::new(config.route.as_ref().expect("validated"))?;
        let inhibitor = Arc::new(Inhibitor::new(&config.inhibit_rules)?);
        let intervals = Arc::new(config.intervals());
        let pipeline = build(&Parts {
            shared: shared.clone(),
            intervals: intervals.clone(),
            inhibitor: inhibitor.clone(),
            receivers: Arc::new(receivers),
            external_url: external_url.into(),
        });
        let d = Dispatcher {
            inner: Arc::new(Inner {
                route,
                inhibitor,
                intervals,
                pipeline,
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
    /// alerts are taken even when others are refused; the error says why
    /// each refused one was (joined by "; ", as Alertmanager).
    pub fn put_alerts(&self, alerts: Vec<PostableAlert>) -> Result<(), RejectedAlerts> {
        let now = self.inner.shared.clock.now();
        let mut reasons = Vec::new();
        let mut ok = Vec::new();
        for p in alerts {
            match p.into_alert(now, self.inner.resolve_timeout) {
                Ok(a) => ok.push(a),
                Err(e) => reasons.push(e.to_string()),
            }
        }
        self.insert_alerts(ok);
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(RejectedAlerts { reasons })
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

    /// Start every flush and escalation step that is due now; returns
    /// their tasks.
    pub fn start_due(&self) -> Vec<JoinHandle<()>> {
        let now = self.inner.shared.clock.now();
        let mut flushes = Vec::new();
        let mut escalations = Vec::new();
        {
            let mut groups = self.inner.groups.lock();
            if self.inner.retired.load(Ordering::Acquire) {
                return Vec::new();
            }
            for (id, g) in groups.iter_mut() {
                let due = g.escalation_due(self.inner.shared.oncall.as_ref(), now);
                if due.is_some_and(|t| t <= now) {
                    let step = g.opts.escalation[g.esc.done].clone();
                    let kind = Kind::Escalation {
                        step: g.esc.done,
                        steps: g.opts.escalation.len(),
                        delay: step.delay,
                    };
                    escalations.push((Inner::job(id, g), step.receiver.clone(), kind));
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
                flushes.push(Inner::job(id, g));
            }
        }
        flushes.sort_by(|a, b| a.key.cmp(&b.key));
        let mut handles: Vec<JoinHandle<()>> = flushes
            .into_iter()
            .map(|job| {
                let inner = self.inner.clone();
                tokio::spawn(async move { inner.flush(job).await })
            })
            .collect();
        handles.extend(escalations.into_iter().map(|(job, receiver, kind)| {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let now = inner.shared.clock.now();
                let mut ctx = job.context(&receiver, now, kind);
                // Failures are on the incident's timeline; the step is not
                // run again.
                let _ = inner.pipeline.escalation.exec(&mut ctx, job.alerts).await;
            })
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
            .filter_map(|g| g.escalation_due(self.inner.shared.oncall.as_ref(), now));
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
                muted_by: muted_by(&self.inner.intervals, &g.opts, now),
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
        muted_by(&self.inner.intervals, opts, now)
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
    fn job(id: &(String, Labels), g: &Group) -> Job {
        Job {
            id: id.clone(),
            opts: g.opts.clone(),
            labels: g.labels.clone(),
            key: g.key.clone(),
            alerts: g.alerts.values().cloned().collect(),
        }
    }

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
                    .oncall
                    .alert_firing(&g.key, &g.labels, &alert.labels, now);
            }
            g.alerts.insert(fp, alert.clone());
        }
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

    /// A group flush: the flush pipeline to the group's receiver, then the
    /// group's bookkeeping, then the resolution to whoever its escalation
    /// paged.
    async fn flush(self: Arc<Self>, job: Job) {
        let now = self.shared.clock.now();
        let paged = {
            let (inner, id) = (self.clone(), job.id.clone());
            move || inner.mark_paged(&id, now)
        };
        let mut ctx = job
            .context(&job.opts.receiver, now, Kind::Group)
            .on_page(paged);
        // Failing, the group's resolved alerts stay for the next flush,
        // which sends them again (nothing was logged as sent).
        let ok = self
            .pipeline
            .flush
            .exec(&mut ctx, job.alerts.clone())
            .await
            .is_ok();
        let Some(end) = self.finish(&job, ok, now) else {
            return;
        };
        for receiver in &end.receivers {
            let kind = Kind::EscalatedResolution {
                incident: end.incident.clone(),
            };
            let mut ctx = job.context(receiver, end.notified_at, kind);
            let _ = self
                .pipeline
                .escalated_resolution
                .exec(&mut ctx, job.alerts.clone())
                .await;
        }
    }

    /// Updates the group after a flush; when the firing episode is over,
    /// returns who its escalation paged, to tell them about the resolution.
    fn finish(&self, job: &Job, ok: bool, flushed_at: DateTime<Utc>) -> Option<Resolution> {
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
                    .oncall
                    .resolved(&job.key, ended.unwrap_or(flushed_at)),
                notified_at: flushed_at,
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
}
