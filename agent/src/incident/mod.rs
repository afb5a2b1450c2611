//! Acknowledgements and incidents: what Alertmanager lacks for on-call work.
//!
//! - [`Ack`]: someone owns a firing alert group. While an ack is active the
//!   dispatcher sends no repeat notifications and no escalation step for that
//!   group; it ends when the group resolves, when it expires or on unack.
//! - [`Incident`]: one per firing episode of an alert group (opened by the
//!   first firing alert, closed when the group's resolution is notified,
//!   resolved as of its last alert's `endsAt`),
//!   with a timeline of events from every part of the agent: rollouts,
//!   rules (pending), the dispatcher (firing, notifications, escalation,
//!   resolved) and acks. `report.rs` renders the post-incident report.
//!
//! Everything takes `now` explicitly (the dispatcher's [`Clock`]) so tests
//! drive it with a manual clock. State is persisted as JSON in the data dir
//! (`acks.json`, `incidents.json`), written to a temp file then renamed:
//! acks on every change (rare, and an ack must not be lost to a crash),
//! incidents at most every [`PERSIST_INTERVAL`] by a writer thread (a burst
//! of alerts must not rewrite the file per alert under the dispatcher's
//! lock) and when the store is dropped. While the disk refuses writes the
//! writer thread tries both again at that pace (an ack accepted meanwhile
//! reaches the disk once it recovers), logging the failure once a minute.
//!
//! The dispatcher reaches this store only through alerting's `OnCall`
//! trait (`oncall.rs`).
//!
//! [`Clock`]: crate::clock::Clock

mod oncall;
pub mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::fsutil::StateFile;
use crate::model::Labels;

/// Closed incidents kept (the oldest are dropped first).
pub const MAX_CLOSED: usize = 200;
/// Events kept per incident; later ones are counted, not stored (a flapping
/// group must not grow the file without bound).
pub const MAX_EVENTS: usize = 1000;
/// Agent-wide and per-alert events seen before an incident opens are pulled
/// into it when they are at most this old (a deploy 20 minutes before the
/// alert belongs to its timeline).
pub const LOOKBACK: Duration = Duration::from_secs(3600);
/// How often changed incidents are written.
pub const PERSIST_INTERVAL: Duration = Duration::from_millis(250);
/// Recent events kept for [`LOOKBACK`].
const RECENT_CAP: usize = 512;

/// An acknowledgement of an alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub group_key: String,
    pub by: String,
    pub comment: String,
    pub created_at: DateTime<Utc>,
    /// None: until the group resolves or someone unacks.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Ack {
    pub fn active_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| now < e)
    }
}

/// One entry of an incident's timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: DateTime<Utc>,
    /// rollout_started, rollout_check_failed, rollback, rollback_failed,
    /// recovery_verified, rollout_still_failing, rollout_succeeded,
    /// alert_pending, alert_firing, notification, escalation, ack, unack,
    /// ack_expired, resolved.
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// `ok` or `failed`, for notifications and escalation steps (files
    /// from before `error` existed hold the error here instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When a failed send is tried again (the group's next flush); absent
    /// on a failure, it is not retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<DateTime<Utc>>,
    /// Anything else worth keeping: alert labels, the failed checks and
    /// their values for a rollback, who acked.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

impl Event {
    pub fn new(at: DateTime<Utc>, kind: &str, message: impl Into<String>) -> Event {
        Event {
            at,
            kind: kind.to_string(),
            message: message.into(),
            receiver: None,
            result: None,
            error: None,
            retry_at: None,
            data: serde_json::Value::Null,
        }
    }
    /// A send to receiver `r` and its result; a failure is not retried
    /// unless [`Event::retry_at`] says when. Any error type the sender has:
    /// the timeline keeps its text.
    pub fn receiver<E: std::fmt::Display>(mut self, r: &str, result: Result<(), E>) -> Event {
        self.receiver = Some(r.to_string());
        match result {
            Ok(()) => self.result = Some(RESULT_OK.to_string()),
            Err(e) => {
                self.result = Some(RESULT_FAILED.to_string());
                self.error = Some(e.to_string());
            }
        }
        self
    }
    /// When a failed send is tried again (ignored for a success).
    pub fn retry_at(mut self, t: DateTime<Utc>) -> Event {
        if self.failed() {
            self.retry_at = Some(t);
        }
        self
    }
    pub fn failed(&self) -> bool {
        self.result.as_deref().is_some_and(|r| r != RESULT_OK)
    }
    /// The send's result for people: `ok`, or `FAILED (retried at T): why`
    /// / `FAILED (not retried): why`. None for events that send nothing.
    pub fn outcome(&self) -> Option<String> {
        let result = self.result.as_deref()?;
        if result == RESULT_OK {
            return Some(RESULT_OK.to_string());
        }
        let error = match (&self.error, result) {
            (Some(e), _) => e.as_str(),
            // An incidents.json from before `error`: the error is the result.
            (None, r) if r != RESULT_FAILED => r,
            (None, _) => "no reason recorded",
        };
        let retry = match self.retry_at {
            Some(t) => format!(
                "retried at {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => "not retried".to_string(),
        };
        Some(format!("FAILED ({retry}): {error}"))
    }
    pub fn data(mut self, d: serde_json::Value) -> Event {
        self.data = d;
        self
    }
}

/// [`Event::result`] of a send that got through.
pub const RESULT_OK: &str = "ok";
/// [`Event::result`] of a send that did not.
pub const RESULT_FAILED: &str = "failed";

/// A firing episode of one alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub events: Vec<Event>,
    #[serde(default)]
    pub dropped_events: u64,
}

impl Incident {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }

    fn push(&mut self, e: Event) {
        if self.events.len() >= MAX_EVENTS {
            self.dropped_events += 1;
            return;
        }
        // Keep the timeline ordered even when an event arrives late (a
        // pulled-in deploy, a notification that finished after an ack).
        let pos = self.events.partition_point(|x| x.at <= e.at);
        self.events.insert(pos, e);
    }

    fn first(&self, kinds: &[&str]) -> Option<DateTime<Utc>> {
        self.events
            .iter()
            .filter(|e| kinds.contains(&e.kind.as_str()))
            .map(|e| e.at)
            .min()
    }

    /// The milestones and durations of the post-incident report.
    pub fn durations(&self) -> Durations {
        let detected = self.first(&["alert_firing"]).or(Some(self.opened_at));
        let started = self
            .first(&["rollout_started", "alert_pending", "alert_firing"])
            .or(detected);
        let acknowledged = self.first(&["ack"]);
        let mitigated = self.first(&["rollback"]);
        let resolved = self.resolved_at;
        let between = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
            (Some(a), Some(b)) if b >= a => (b - a).to_std().ok(),
            _ => None,
        };
        Durations {
            started,
            detected,
            acknowledged,
            mitigated,
            resolved,
            time_to_detect: between(started, detected),
            time_to_acknowledge: between(detected, acknowledged),
            time_to_mitigate: between(detected, mitigated),
            time_to_resolve: between(detected, resolved),
            total: between(started, resolved),
        }
    }
}

/// Milestones: `started` is the deploy (rollout started) or, without one,
/// the first pending/firing alert; `detected` the first firing alert.
/// Times to acknowledge, mitigate (first rollback) and resolve count from
/// detection; `total` from the start to the resolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Durations {
    pub started: Option<DateTime<Utc>>,
    pub detected: Option<DateTime<Utc>>,
    pub acknowledged: Option<DateTime<Utc>>,
    pub mitigated: Option<DateTime<Utc>>,
    pub resolved: Option<DateTime<Utc>>,
    #[serde(with = "opt_secs")]
    pub time_to_detect: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub time_to_acknowledge: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub time_to_mitigate: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub time_to_resolve: Option<Duration>,
    #[serde(with = "opt_secs")]
    pub total: Option<Duration>,
}

/// Durations in the JSON as seconds (fractional), null when unknown.
mod opt_secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_f64(d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

/// An event not tied to a group yet: agent-wide (rollouts, `labels` None)
/// or about one alert (`labels` Some).
#[derive(Debug, Clone)]
struct Recent {
    labels: Option<Labels>,
    event: Event,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IncidentFile {
    next_id: u64,
    incidents: Vec<Incident>,
}

struct State {
    acks: Vec<Ack>,
    file: IncidentFile,
    /// Events from the last [`LOOKBACK`], for incidents that open later.
    recent: std::collections::VecDeque<Recent>,
    ack_seq: u64,
}

/// Acks and incidents; one per agent, shared by the dispatcher, the rule
/// engine, the rollouts and the API. Cheap to call: one mutex.
pub struct Incidents {
    state: Mutex<State>,
    /// `DIR/incidents.json` and `DIR/acks.json`; None in memory.
    files: Option<Files>,
    /// Incidents changed since the last write.
    dirty: std::sync::atomic::AtomicBool,
    /// One writer of incidents.json at a time (a second one waits for the
    /// first to finish: shutdown returns with the file written).
    writing: Mutex<()>,
}

struct Files {
    incidents: StateFile,
    /// Written at every change with the state's lock held (so in order),
    /// and again by the writer while a failed write left it behind.
    acks: StateFile,
}

/// Why an ack request is refused (the API answers 400 or 404).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AckError {
    #[error("{0}")]
    Invalid(String),
    #[error("no ack with id {0:?}")]
    NotFound(String),
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> anyhow::Result<T> {
    use anyhow::Context;
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// `labels` carries every one of `group`'s label pairs.
fn covers(labels: &Labels, group: &BTreeMap<String, String>) -> bool {
    group.iter().all(|(k, v)| labels.get(k) == Some(v.as_str()))
}

impl Incidents {
    /// In memory only (tests, or a config without a data dir).
    pub fn in_memory() -> Incidents {
        Incidents {
            state: Mutex::new(State {
                acks: Vec::new(),
                file: IncidentFile {
                    next_id: 1,
                    incidents: Vec::new(),
                },
                recent: Default::default(),
                ack_seq: 0,
            }),
            files: None,
            dirty: Default::default(),
            writing: Mutex::new(()),
        }
    }

    /// Loads `DIR/acks.json` and `DIR/incidents.json` (missing files are an
    /// empty start; an unreadable one is an error naming it).
    /// Starts the writer thread, which ends with the store.
    pub fn open(dir: &Path) -> anyhow::Result<std::sync::Arc<Incidents>> {
        let acks: Vec<Ack> = read_json(&dir.join("acks.json"))?;
        let mut file: IncidentFile = read_json(&dir.join("incidents.json"))?;
        file.next_id = file.next_id.max(1);
        let inc = std::sync::Arc::new(Incidents {
            state: Mutex::new(State {
                acks,
                file,
                recent: Default::default(),
                ack_seq: 0,
            }),
            files: Some(Files {
                incidents: StateFile::new(dir.join("incidents.json"), "the incidents"),
                acks: StateFile::new(dir.join("acks.json"), "the acks"),
            }),
            dirty: Default::default(),
            writing: Mutex::new(()),
        });
        let weak = std::sync::Arc::downgrade(&inc);
        std::thread::Builder::new()
            .name("incidents-writer".into())
            .spawn(move || loop {
                std::thread::sleep(PERSIST_INTERVAL);
                match weak.upgrade() {
                    Some(i) => i.persist(),
                    None => return,
                }
            })
            .map_err(|e| anyhow::anyhow!("starting the incidents writer: {e}"))?;
        Ok(inc)
    }

    /// Writes incidents.json if anything changed since the last write, and
    /// acks.json if its last write failed. Failures are logged by the
    /// files (at most once a minute while the disk refuses writes) and
    /// tried again at the next call.
    pub fn persist(&self) {
        let Some(f) = &self.files else { return };
        if f.acks.is_behind() {
            let st = self.state.lock();
            self.save_acks(&st);
        }
        let _w = self.writing.lock();
        if !self.dirty.swap(false, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let written = f
            .incidents
            .write(|| Ok(serde_json::to_vec(&self.state.lock().file)?));
        if written.is_err() {
            self.dirty.store(true, std::sync::atomic::Ordering::Release);
        }
    }

    /// Writes acks.json now: an ack must not be lost to a crash. Callers
    /// hold the state's lock, so writes land in order.
    fn save_acks(&self, st: &State) {
        if let Some(f) = &self.files {
            let _ = f.acks.write(|| Ok(serde_json::to_vec(&st.acks)?));
        }
    }

    /// Marks incidents for the writer (callers hold the state lock, so
    /// the write sees their change).
    fn save_incidents(&self, _st: &State) {
        self.dirty.store(true, std::sync::atomic::Ordering::Release);
    }

    fn open_incident_mut<'a>(st: &'a mut State, key: &str) -> Option<&'a mut Incident> {
        st.file
            .incidents
            .iter_mut()
            .rev()
            .find(|i| i.group_key == key && i.is_open())
    }

    // --- acks ----------------------------------------------------------

    /// Acknowledges `group_key` (the caller checked it is firing).
    pub fn ack(
        &self,
        group_key: &str,
        by: &str,
        comment: &str,
        expires_in: Option<Duration>,
        now: DateTime<Utc>,
    ) -> Result<Ack, AckError> {
        if by.trim().is_empty() {
            return Err(AckError::Invalid(
                "\"by\" must name who acknowledges".into(),
            ));
        }
        let expires_at = match expires_in {
            Some(d) if d.is_zero() => {
                return Err(AckError::Invalid("\"expires_in\" must be positive".into()))
            }
            Some(d) => Some(
                chrono::Duration::from_std(d)
                    .ok()
                    .and_then(|d| now.checked_add_signed(d))
                    .ok_or_else(|| AckError::Invalid("\"expires_in\" is too large".into()))?,
            ),
            None => None,
        };
        let mut st = self.state.lock();
        st.ack_seq += 1;
        let id = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(group_key.as_bytes());
            h.update(now.timestamp_nanos_opt().unwrap_or(0).to_le_bytes());
            h.update(st.ack_seq.to_le_bytes());
            h.update(std::process::id().to_le_bytes());
            hex::encode(&h.finalize()[..8])
        };
        let ack = Ack {
            id,
            group_key: group_key.to_string(),
            by: by.to_string(),
            comment: comment.to_string(),
            created_at: now,
            expires_at,
        };
        // One ack per group: a new one replaces the old (re-ack to extend).
        st.acks.retain(|a| a.group_key != group_key);
        st.acks.push(ack.clone());
        let msg = match expires_at {
            Some(e) => format!("acknowledged by {by} until {}", e.to_rfc3339()),
            None => format!("acknowledged by {by}"),
        };
        let ev = Event::new(now, "ack", msg).data(serde_json::json!({
            "id": ack.id, "by": by, "comment": comment, "expires_at": expires_at,
        }));
        if let Some(i) = Self::open_incident_mut(&mut st, group_key) {
            i.push(ev);
        }
        self.save_acks(&st);
        self.save_incidents(&st);
        Ok(ack)
    }

    /// Removes an ack: escalation resumes where it stood.
    pub fn unack(&self, id: &str, now: DateTime<Utc>) -> Result<Ack, AckError> {
        let mut st = self.state.lock();
        let pos = st
            .acks
            .iter()
            .position(|a| a.id == id)
            .ok_or_else(|| AckError::NotFound(id.to_string()))?;
        let ack = st.acks.remove(pos);
        if let Some(i) = Self::open_incident_mut(&mut st, &ack.group_key) {
            i.push(Event::new(
                now,
                "unack",
                format!("ack by {} removed", ack.by),
            ));
        }
        self.save_acks(&st);
        self.save_incidents(&st);
        Ok(ack)
    }

    /// Acks still in force at `now` (expired ones are dropped, with an
    /// `ack_expired` event).
    pub fn acks(&self, now: DateTime<Utc>) -> Vec<Ack> {
        let mut st = self.state.lock();
        self.expire(&mut st, now);
        st.acks.clone()
    }

    /// The ack in force for `group_key` at `now`.
    pub fn active_ack(&self, group_key: &str, now: DateTime<Utc>) -> Option<Ack> {
        let mut st = self.state.lock();
        self.expire(&mut st, now);
        st.acks.iter().find(|a| a.group_key == group_key).cloned()
    }

    /// Drops acks expired at `now`, noting it in their incidents.
    fn expire(&self, st: &mut State, now: DateTime<Utc>) {
        let expired: Vec<Ack> = st
            .acks
            .iter()
            .filter(|a| !a.active_at(now))
            .cloned()
            .collect();
        if expired.is_empty() {
            return;
        }
        st.acks.retain(|a| a.active_at(now));
        for a in &expired {
            let at = a.expires_at.unwrap_or(now);
            if let Some(i) = Self::open_incident_mut(st, &a.group_key) {
                i.push(Event::new(
                    at,
                    "ack_expired",
                    format!("ack by {} expired", a.by),
                ));
            }
        }
        self.save_acks(st);
        self.save_incidents(st);
    }

    // --- events --------------------------------------------------------

    fn remember(st: &mut State, r: Recent) {
        st.recent.push_back(r);
        while st.recent.len() > RECENT_CAP {
            st.recent.pop_front();
        }
    }

    /// An agent-wide event (a rollout's decision): goes to every open
    /// incident, and to incidents opening within [`LOOKBACK`].
    pub fn record_global(&self, ev: Event) {
        let mut st = self.state.lock();
        let mut changed = false;
        for i in st.file.incidents.iter_mut().filter(|i| i.is_open()) {
            i.push(ev.clone());
            changed = true;
        }
        Self::remember(
            &mut st,
            Recent {
                labels: None,
                event: ev,
            },
        );
        if changed {
            self.save_incidents(&st);
        }
    }

    /// An event about one alert before routing (a rule's pending alert):
    /// goes to open incidents whose group labels it carries, and to such
    /// incidents opening within [`LOOKBACK`].
    pub fn record_alert(&self, labels: &Labels, ev: Event) {
        let mut st = self.state.lock();
        let mut changed = false;
        for i in st
            .file
            .incidents
            .iter_mut()
            .filter(|i| i.is_open() && covers(labels, &i.group_labels))
        {
            i.push(ev.clone());
            changed = true;
        }
        Self::remember(
            &mut st,
            Recent {
                labels: Some(labels.clone()),
                event: ev,
            },
        );
        if changed {
            self.save_incidents(&st);
        }
    }

    /// A firing alert joined group `group_key`: opens the group's incident
    /// if none is open (pulling in recent related events) and records it.
    pub fn alert_firing(
        &self,
        group_key: &str,
        group_labels: &Labels,
        alert: &Labels,
        now: DateTime<Utc>,
    ) {
        let mut st = self.state.lock();
        let ev = Event::new(now, "alert_firing", format!("{} firing", alert_name(alert)))
            .data(serde_json::json!({ "labels": labels_json(alert) }));
        if let Some(i) = Self::open_incident_mut(&mut st, group_key) {
            i.push(ev);
        } else {
            let gl: BTreeMap<String, String> = group_labels
                .iter()
                .map(|l| (l.name.clone(), l.value.clone()))
                .collect();
            let id = st.file.next_id.to_string();
            st.file.next_id += 1;
            let mut inc = Incident {
                id,
                group_key: group_key.to_string(),
                group_labels: gl,
                opened_at: now,
                resolved_at: None,
                events: Vec::new(),
                dropped_events: 0,
            };
            let since = now - chrono::Duration::from_std(LOOKBACK).unwrap_or_default();
            for r in st.recent.iter().filter(|r| r.event.at >= since) {
                if r.labels
                    .as_ref()
                    .is_none_or(|l| covers(l, &inc.group_labels))
                {
                    inc.push(r.event.clone());
                }
            }
            inc.push(ev);
            tracing::info!(incident = %inc.id, group = %group_key, "incident opened");
            st.file.incidents.push(inc);
        }
        self.save_incidents(&st);
    }

    /// Whether `group_key` has an open incident.
    pub fn has_open(&self, group_key: &str) -> bool {
        let mut st = self.state.lock();
        Self::open_incident_mut(&mut st, group_key).is_some()
    }

    /// An event of the group's open incident (notifications, escalation).
    pub fn record_group(&self, group_key: &str, ev: Event) {
        let mut st = self.state.lock();
        if let Some(i) = Self::open_incident_mut(&mut st, group_key) {
            i.push(ev);
            self.save_incidents(&st);
        }
    }

    /// An event of incident `id`, open or not (the resolved notice to
    /// escalation receivers comes after the incident closed).
    pub fn record_in(&self, id: &str, ev: Event) {
        let mut st = self.state.lock();
        if let Some(i) = st.file.incidents.iter_mut().rev().find(|i| i.id == id) {
            i.push(ev);
            self.save_incidents(&st);
        }
    }

    /// The group's resolution was notified: close its incident as resolved
    /// at `ended` (when its last alert ended; not before it opened) and drop
    /// its ack (an ack ends with the group's firing episode). Returns the
    /// incident's id.
    pub fn resolve(&self, group_key: &str, ended: DateTime<Utc>) -> Option<String> {
        let mut st = self.state.lock();
        let before = st.acks.len();
        st.acks.retain(|a| a.group_key != group_key);
        if st.acks.len() != before {
            self.save_acks(&st);
        }
        let i = Self::open_incident_mut(&mut st, group_key)?;
        let at = ended.max(i.opened_at);
        i.push(Event::new(
            at,
            "resolved",
            "all alerts of the group resolved",
        ));
        i.resolved_at = Some(at);
        let id = i.id.clone();
        tracing::info!(incident = %i.id, group = %group_key, "incident resolved");
        let closed = st.file.incidents.iter().filter(|i| !i.is_open()).count();
        if closed > MAX_CLOSED {
            let mut extra = closed - MAX_CLOSED;
            st.file.incidents.retain(|i| {
                if extra > 0 && !i.is_open() {
                    extra -= 1;
                    false
                } else {
                    true
                }
            });
        }
        self.save_incidents(&st);
        Some(id)
    }

    // --- reads ---------------------------------------------------------

    pub fn list(&self) -> Vec<Incident> {
        self.state.lock().file.incidents.clone()
    }

    pub fn get(&self, id: &str) -> Option<Incident> {
        self.state
            .lock()
            .file
            .incidents
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }
}

impl Drop for Incidents {
    fn drop(&mut self) {
        self.persist();
    }
}

fn alert_name(l: &Labels) -> String {
    l.get("alertname").unwrap_or("alert").to_string()
}

pub fn labels_json(l: &Labels) -> serde_json::Value {
    serde_json::Value::Object(
        l.iter()
            .map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone())))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
