//! Recording and alerting rules (Prometheus' `rules/` package).
//!
//! - [`rulefmt`]: rule files as Prometheus writes them, validated.
//! - [`template`]: Prometheus' template functions and the alert template data, on the
//!   shared Go text/template engine (`wasmon-template`).
//! - [`recording`], [`alerting`]: one rule's evaluation; alerting rules
//!   keep the inactive → pending → firing state machine.
//! - [`group`]: a group's rules evaluated in order at one timestamp,
//!   results written back through an [`Appendable`](crate::storage::Appendable)
//!   (stale markers when a series disappears), alerts handed to an
//!   [`AlertSink`](crate::alerting::sink::AlertSink).
//! - [`manager`]: loads files, runs each group on its interval (aligned like
//!   Prometheus), reloads, restores `for` state from `ALERTS_FOR_STATE`.
//! - (`/api/v1/rules` and `/api/v1/alerts` JSON is the HTTP API's, in `web/rules.rs`.)
//! - [`unittest`]: promtool's rule unit-test format (`wasmon test rules`).

pub mod alerting;
pub mod error;
pub mod group;
mod incident_hook;
pub mod manager;
pub mod recording;
pub mod rulefmt;
pub mod template;
pub mod unittest;

pub use alerting::{Alert, AlertState, AlertingRule};
pub use error::{BuildError, RuleEvalError};
pub use group::{Group, Rule, RuleOpts};
pub use manager::{ManagerOpts, RuleManager};
