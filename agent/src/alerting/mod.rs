//! Alerting, Alertmanager's core inside the agent: matchers, the route tree,
//! aggregation groups and their timers (`dispatch`, `escalation`), the
//! notification pipeline of stages (`notify`: time intervals, inhibition,
//! silences, dedup against the notification log, retries, and the on-call
//! layer's trait), and the webhook v4 message a receiver plugin gets.

pub mod config;
pub mod dispatch;
mod escalation;
pub mod forward;
pub mod inhibit;
pub mod matcher;
pub mod message;
pub mod nflog;
pub mod notify;
pub mod route;
pub mod silence;
pub mod sink;
pub mod types;
