//! End-to-end tests: the real `wasmon` binary (and, where a test compares,
//! Debian's Prometheus and Alertmanager) driven from outside, one module a
//! topic, in one test binary (as wasmtime's `tests/all/main.rs`): each test
//! binary links wasmtime, so one binary costs one link, not fourteen.
//! What the modules share lives in [`fixtures`], once.
//!
//! One process runs them all, concurrently: a test never sets the
//! process's environment (children get theirs with `Command::env`), binds
//! only port 0 and keeps its files in its own temp dir; the heavy ones
//! (load, soak, crash, the PromQL differential, plugin-language builds)
//! hold [`fixtures::heavy`] so that they do not run at the same time.
//!
//! The slow plugin-language tests are `#[ignore]`d; CI runs them with
//! `cargo test -p wasmon --test e2e -- --ignored plugin_langs::`.

mod fixtures;

mod alerting;
mod amtool;
mod crash;
mod grafana;
mod import_alertmanager;
mod import_prometheus;
mod incident;
mod kubernetes;
mod load;
mod plugin_langs;
mod promql_diff;
mod receivers;
mod remote_write;
mod rollout;
mod scrape;
mod templates_am;
mod ui;
mod web_security;
mod webhook;
