//! Alerting, Alertmanager's core inside the agent: matchers, the route tree,
//! aggregation groups and their timers (`dispatch`), inhibition, silences,
//! the notification log that deduplicates sends, and the webhook v4 message
//! a receiver plugin gets.

pub mod config;
pub mod dispatch;
pub mod forward;
pub mod inhibit;
pub mod matcher;
pub mod message;
pub mod nflog;
pub mod plugin_notifier;
pub mod route;
pub mod silence;
pub mod sink;
pub mod types;
