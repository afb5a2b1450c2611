//! Library-level integration tests of the `wasmon` crate, one module a
//! topic, in one test binary: each test binary links wasmtime, so one
//! binary costs one link, not twenty-two. What the modules share lives in
//! [`fixtures`] (which the end-to-end tests in `tests/e2e/` use too).
//!
//! One process runs them all, concurrently: a test never sets the
//! process's environment, binds only port 0 and keeps its files in its
//! own temp dir; the heavy ones hold [`fixtures::heavy`].

mod fixtures;

mod alerting_dispatch;
mod alerting_matchers;
mod alerting_routes;
mod checks_health;
mod checks_metric;
mod checks_rollback_k8s;
mod discovery_dns;
mod discovery_http;
mod discovery_kubernetes;
mod hot_reload;
mod import_alertmanager;
mod import_prometheus;
mod incident_escalation;
mod incident_rules;
mod isolation;
mod layers;
mod packaging;
mod plugin_http_config;
mod promqltest;
mod rules_alerting;
mod rules_rulefmt;
mod rules_unittest;
mod scrape;
mod scrape_client;
mod textparse_conformance;
mod tsdb_blocks;
mod tsdb_crash;
mod tsdb_query;
mod tsdb_wal;
