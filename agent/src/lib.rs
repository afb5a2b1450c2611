//! wasmon: a monitoring agent whose extensions are WebAssembly components.
//!
//! Start with `ARCHITECTURE.md` at the repository root for the map.

pub mod alerting;
pub mod app;
pub mod author;
pub mod checks;
pub mod client;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod fsutil;
pub mod incident;
pub mod model;
pub mod plugins;
pub mod promql;
pub mod remote;
pub mod rollout;
pub mod rules;
pub mod scrape;
pub mod selfmetrics;
pub mod storage;
pub mod textparse;
pub mod tsdb;
pub mod web;
