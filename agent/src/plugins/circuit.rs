//! The failure policy of a plugin instance: what a failed call means for
//! the next ones.
//!
//! A receiver that loops until its deadline costs a core-deadline per call,
//! and the dispatcher retries it with backoff inside every group interval:
//! one such plugin kept an agent at ~106% CPU and tripled other receivers'
//! latency. So each instance has a circuit breaker:
//!
//! - **closed**: calls go through. A timeout opens it at once (it cost a
//!   whole deadline); [`TRIP_AFTER`] failures in a row (retryable, trap,
//!   memory cap, host error) open it too.
//! - **open** for a backoff ([`FIRST_OPEN`], doubled each time it opens
//!   again, at most [`MAX_OPEN`]): calls are refused with
//!   [`CallError::CircuitOpen`], which is retryable, without running the
//!   plugin; callers treat it as any retryable failure.
//! - **half-open** once the backoff is over: one call goes through as a
//!   probe (others are still refused). The plugin answering (success, or a
//!   `permanent` verdict) closes the circuit and resets the backoff; a
//!   counted failure opens it again for twice as long.
//!
//! A new version of the plugin or a new config for the instance starts
//! from a closed circuit: the fix deserves a call.
//!
//! Receivers also remember their `permanent` failures: the same
//! notification (same content) is not delivered again — the plugin said it
//! never will be — and is refused with [`CallError::FailedBefore`]; the
//! next different notification is tried.
//!
//! What each caller gets ([`Policy`]): receivers' notifications are
//! guarded and remember permanent failures; health and metric checks are
//! guarded (a check's request is the same every interval, so a permanent
//! failure is called again, once per interval: a check must not stay down
//! on a remembered verdict); rollback actions are never refused — a
//! rollback runs during an incident, once per rollout interval at most, and
//! skipping it would be worse than a wasted deadline — and do not move the
//! breaker. Calls a person asks for (a receiver's test, a check run now)
//! are never refused, and when one succeeds it closes the circuit.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::loader::LoadedPlugin;
use super::runtime::{CallError, Instance};
use crate::selfmetrics::{CallLabels, InstanceLabels, Metrics};

/// Failures in a row (other than timeouts, which trip at once) that open a
/// closed circuit.
pub const TRIP_AFTER: u32 = 3;
/// How long a circuit stays open the first time.
pub const FIRST_OPEN: Duration = Duration::from_secs(30);
/// The longest it stays open (the default group interval: a receiver whose
/// endpoint comes back is tried again within one).
pub const MAX_OPEN: Duration = Duration::from_secs(300);
/// Permanently failed notifications remembered per instance.
const REMEMBERED: usize = 64;
/// Circuits kept before idle closed ones are forgotten.
const KEEP: usize = 512;
/// How long a closed circuit with nothing to remember is kept unused.
const IDLE_MS: i64 = 3_600_000;

/// How the breaker treats a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Refused while the circuit is open; `remember_permanent`: the same
    /// request is not made again after a permanent failure (receivers).
    Guarded { remember_permanent: bool },
    /// Never refused, and its outcome does not move the breaker (rollback
    /// actions).
    Unguarded,
    /// Asked for by a person: never refused; a success closes the circuit.
    Manual,
}

/// Where a circuit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Closed,
    Open,
    HalfOpen,
}

impl State {
    /// The value of `wasmon_plugin_circuit_state`.
    fn gauge(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }
}

/// What a call's outcome means for the breaker.
enum Verdict {
    /// The plugin answered (a success or a permanent failure).
    Answered,
    /// It failed in a way that costs or may pass: counted.
    Failed { trip_now: bool },
    /// Nothing to say about the plugin (it was not called).
    Neutral,
}

fn verdict<T>(result: &Result<T, CallError>) -> Verdict {
    match result {
        Ok(_) | Err(CallError::Permanent(_)) => Verdict::Answered,
        Err(CallError::Timeout(_)) => Verdict::Failed { trip_now: true },
        Err(
            CallError::Retryable(_)
            | CallError::Trap(_)
            | CallError::MemoryLimit(_)
            | CallError::Host(_),
        ) => Verdict::Failed { trip_now: false },
        Err(
            CallError::NotLoaded(_)
            | CallError::WrongKind { .. }
            | CallError::CircuitOpen { .. }
            | CallError::FailedBefore(_),
        ) => Verdict::Neutral,
    }
}

/// One circuit: an instance (by name and config) of one plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    plugin: String,
    instance: Arc<str>,
    config: u64,
}

struct Circuit {
    /// The plugin version the state is about.
    version: String,
    state: State,
    /// Counted failures in a row.
    failures: u32,
    open_until_ms: i64,
    /// How long it opens next time.
    backoff: Duration,
    probe_in_flight: bool,
    short_circuited: u64,
    last_error: Option<String>,
    last_used_ms: i64,
    /// Digests of requests that failed permanently, with the failure.
    permanent: VecDeque<(u64, String)>,
}

impl Circuit {
    fn new(version: &str, now_ms: i64) -> Circuit {
        Circuit {
            version: version.to_string(),
            state: State::Closed,
            failures: 0,
            open_until_ms: 0,
            backoff: FIRST_OPEN,
            probe_in_flight: false,
            short_circuited: 0,
            last_error: None,
            last_used_ms: now_ms,
            permanent: VecDeque::new(),
        }
    }

    fn idle(&self, now_ms: i64) -> bool {
        self.state == State::Closed
            && self.failures == 0
            && self.permanent.is_empty()
            && !self.probe_in_flight
            && now_ms - self.last_used_ms > IDLE_MS
    }
}

/// A plugin instance's circuit, for `plugins list` and the API.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstanceCircuit {
    pub instance: String,
    pub state: State,
    /// Counted failures in a row.
    pub failures: u32,
    /// While open: when a probe call will be let through.
    #[serde(with = "humantime_serde")]
    pub open_until: Option<SystemTime>,
    /// Calls refused without running the plugin.
    pub short_circuited: u64,
    pub last_error: Option<String>,
    /// Notifications remembered as failed permanently.
    pub failed_permanently: usize,
}

struct Inner {
    map: Mutex<HashMap<Key, Circuit>>,
    metrics: Arc<Metrics>,
}

/// The circuits of every plugin instance that was called.
pub struct Circuits {
    inner: Arc<Inner>,
}

/// Permission for one call; hand it back with [`Circuits::record`]. Dropped
/// unrecorded (the call's task was cancelled), it frees the probe slot.
pub struct Ticket {
    inner: Arc<Inner>,
    key: Key,
    version: String,
    policy: Policy,
    digest: Option<u64>,
    probe: bool,
    recorded: bool,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.recorded || !self.probe {
            return;
        }
        if let Some(c) = self.inner.map.lock().unwrap().get_mut(&self.key) {
            c.probe_in_flight = false;
        }
    }
}

/// A digest of a request, to recognise the same request again.
pub fn digest(request: &impl std::fmt::Debug) -> u64 {
    let mut h = DefaultHasher::new();
    format!("{request:?}").hash(&mut h);
    h.finish()
}

fn config_digest(inst: &Instance) -> u64 {
    let mut h = DefaultHasher::new();
    inst.config_json.hash(&mut h);
    inst.allow.len().hash(&mut h);
    for a in inst.allow.iter() {
        format!("{a:?}").hash(&mut h);
    }
    inst.timeout.hash(&mut h);
    inst.memory_limit.hash(&mut h);
    h.finish()
}

fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

impl Circuits {
    pub fn new(metrics: Arc<Metrics>) -> Circuits {
        Circuits {
            inner: Arc::new(Inner {
                map: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// Lets a call through or refuses it. `digest` identifies the request
    /// (for [`Policy::Guarded`] with `remember_permanent`).
    pub fn admit(
        &self,
        inst: &Instance,
        plugin: &LoadedPlugin,
        policy: Policy,
        digest: Option<u64>,
        now_ms: i64,
    ) -> Result<Ticket, CallError> {
        let key = Key {
            plugin: plugin.name.clone(),
            instance: inst.name.clone(),
            config: config_digest(inst),
        };
        let mut ticket = Ticket {
            inner: self.inner.clone(),
            key: key.clone(),
            version: plugin.hash.clone(),
            policy,
            digest,
            probe: false,
            recorded: false,
        };
        if policy == Policy::Unguarded {
            return Ok(ticket);
        }
        let mut map = self.inner.map.lock().unwrap();
        if map.len() >= KEEP && !map.contains_key(&key) {
            map.retain(|_, c| !c.idle(now_ms));
        }
        let c = map
            .entry(key.clone())
            .or_insert_with(|| Circuit::new(&plugin.hash, now_ms));
        if c.version != plugin.hash {
            // A new version of the plugin: a fresh start.
            *c = Circuit::new(&plugin.hash, now_ms);
            self.set_gauge(&key, State::Closed);
        }
        c.last_used_ms = now_ms;
        if policy == Policy::Manual {
            return Ok(ticket);
        }
        let refuse = |c: &mut Circuit, why: CallError| {
            c.short_circuited += 1;
            self.inner
                .metrics
                .plugin_short_circuited
                .get_or_create(&CallLabels {
                    plugin: key.plugin.clone(),
                    instance: key.instance.to_string(),
                    result: why.label().to_string(),
                })
                .inc();
            Err(why)
        };
        if let (
            Policy::Guarded {
                remember_permanent: true,
            },
            Some(d),
        ) = (policy, digest)
        {
            if let Some((_, error)) = c.permanent.iter().find(|(x, _)| *x == d) {
                let why = CallError::FailedBefore(error.clone());
                return refuse(c, why);
            }
        }
        match c.state {
            State::Closed => Ok(ticket),
            State::Open if now_ms >= c.open_until_ms => {
                c.state = State::HalfOpen;
                c.probe_in_flight = true;
                self.set_gauge(&key, State::HalfOpen);
                tracing::info!(plugin = %key.plugin, instance = %key.instance, "circuit half-open: letting one call through as a probe");
                ticket.probe = true;
                Ok(ticket)
            }
            State::HalfOpen if !c.probe_in_flight => {
                c.probe_in_flight = true;
                ticket.probe = true;
                Ok(ticket)
            }
            State::Open | State::HalfOpen => {
                let why = CallError::CircuitOpen {
                    until: at(c.open_until_ms.max(now_ms)),
                    failures: c.failures,
                    last: c.last_error.clone().unwrap_or_default(),
                };
                refuse(c, why)
            }
        }
    }

    /// Applies a call's outcome to its circuit.
    pub fn record<T>(&self, mut ticket: Ticket, result: &Result<T, CallError>, now_ms: i64) {
        ticket.recorded = true;
        if ticket.policy == Policy::Unguarded {
            return;
        }
        let mut map = self.inner.map.lock().unwrap();
        let Some(c) = map.get_mut(&ticket.key) else {
            return;
        };
        if c.version != ticket.version {
            // About a version that has been replaced since.
            return;
        }
        if ticket.probe {
            c.probe_in_flight = false;
        }
        let key = &ticket.key;
        let verdict = verdict(result);
        if ticket.policy == Policy::Manual && !matches!(verdict, Verdict::Answered) {
            // A person's test does not make the backoff longer.
            return;
        }
        match verdict {
            Verdict::Neutral => {}
            Verdict::Answered => {
                if let (
                    Policy::Guarded {
                        remember_permanent: true,
                    },
                    Some(d),
                    Err(CallError::Permanent(m)),
                ) = (ticket.policy, ticket.digest, result)
                {
                    if c.permanent.len() == REMEMBERED {
                        c.permanent.pop_front();
                    }
                    c.permanent.push_back((d, m.clone()));
                }
                if c.state != State::Closed {
                    tracing::info!(plugin = %key.plugin, instance = %key.instance, "circuit closed: the plugin answered");
                }
                c.state = State::Closed;
                c.failures = 0;
                c.backoff = FIRST_OPEN;
                self.set_gauge(key, State::Closed);
            }
            Verdict::Failed { trip_now } => {
                c.failures = c.failures.saturating_add(1);
                if let Err(e) = result {
                    c.last_error = Some(e.to_string());
                }
                let trip = match c.state {
                    // Started before another call opened it: no news.
                    State::Open => false,
                    State::HalfOpen => ticket.probe,
                    State::Closed => trip_now || c.failures >= TRIP_AFTER,
                };
                if trip {
                    let open_for = c.backoff;
                    c.state = State::Open;
                    c.open_until_ms = now_ms.saturating_add(open_for.as_millis() as i64);
                    c.backoff = (c.backoff * 2).min(MAX_OPEN);
                    self.set_gauge(key, State::Open);
                    tracing::warn!(
                        plugin = %key.plugin,
                        instance = %key.instance,
                        failures = c.failures,
                        open_for = %humantime::format_duration(open_for),
                        error = c.last_error.as_deref().unwrap_or(""),
                        "circuit open: calls are refused without running the plugin until a probe succeeds"
                    );
                }
            }
        }
    }

    fn set_gauge(&self, key: &Key, state: State) {
        self.inner
            .metrics
            .plugin_circuit_state
            .get_or_create(&InstanceLabels {
                plugin: key.plugin.clone(),
                instance: key.instance.to_string(),
            })
            .set(state.gauge());
    }

    /// The circuits of `plugin`'s instances, by instance name.
    pub fn of_plugin(&self, plugin: &str) -> Vec<InstanceCircuit> {
        let map = self.inner.map.lock().unwrap();
        let mut v: Vec<InstanceCircuit> = map
            .iter()
            .filter(|(k, _)| k.plugin == plugin)
            .map(|(k, c)| InstanceCircuit {
                instance: k.instance.to_string(),
                state: c.state,
                failures: c.failures,
                open_until: (c.state == State::Open).then(|| at(c.open_until_ms)),
                short_circuited: c.short_circuited,
                last_error: c.last_error.clone(),
                failed_permanently: c.permanent.len(),
            })
            .collect();
        v.sort_by(|a, b| a.instance.cmp(&b.instance));
        v
    }
}
