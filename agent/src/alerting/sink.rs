//! The alert sink contract: what alert producers (the rule engine,
//! rollouts) hand over and the trait they hand it to. The host connects a
//! sink to the dispatcher and external Alertmanagers (`app.rs`); producers
//! depend only on this file, not on each other.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::model::Labels;

/// An alert as handed to the notifier/dispatcher (Alertmanager's
/// `postableAlert` fields).
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingAlert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub generator_url: String,
}

/// Where alerts go; the host connects it to the dispatcher (or an
/// Alertmanager client). Called from a rule group's evaluation and a
/// rollout's tick, so it should not block for long.
pub trait AlertSink: Send + Sync {
    fn send(&self, alerts: Vec<OutgoingAlert>);
}

/// A sink that drops everything.
pub struct NoopSink;

impl AlertSink for NoopSink {
    fn send(&self, _alerts: Vec<OutgoingAlert>) {}
}

/// A sink that keeps everything (tests).
#[derive(Default)]
pub struct MemorySink {
    pub sent: parking_lot::Mutex<Vec<OutgoingAlert>>,
}

impl AlertSink for MemorySink {
    fn send(&self, alerts: Vec<OutgoingAlert>) {
        self.sent.lock().extend(alerts);
    }
}

impl MemorySink {
    pub fn take(&self) -> Vec<OutgoingAlert> {
        std::mem::take(&mut *self.sent.lock())
    }
}
