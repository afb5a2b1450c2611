//! The state of one plugin call's `Store` and the host side of the imports
//! every plugin gets: log, config, clock, (checks) query, WASI p2 without
//! files or environment, and `wasi:http` behind the instance's allow-list.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::metric_check::wasmon::plugin::query;
use super::bindings::receiver::wasmon::plugin::{clock, config, log};
use super::bindings::types::Sample;
use super::policy::OutboundPolicy;
use crate::clock::Clock;

/// Instant PromQL queries for `metric-check` plugins. The agent's query
/// engine implements this; without one, queries fail with a clear message.
pub trait QueryApi: Send + Sync {
    fn instant(
        &self,
        expr: String,
        time_ms: i64,
    ) -> futures::future::BoxFuture<'static, Result<Vec<Sample>, QueryError>>;
}

/// Why a plugin's (or a rollout's) instant query failed. The guest gets
/// the text (the WIT `query` import's error is a string).
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The query does not parse, or its evaluation failed.
    #[error(transparent)]
    Eval(#[from] crate::promql::EvalError),
    /// The result is a range vector or a string (its type name).
    #[error("expected an instant vector or scalar, got a {0}")]
    NotInstant(&'static str),
    /// The blocking task running the query panicked or was cancelled.
    #[error("query task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// No query engine is attached to the runtime.
    #[error("this agent has no query engine attached")]
    NoEngine,
    /// `wasmon plugin call` without `--query-fixture` (the expression).
    #[error("no series to query {0:?}: give `wasmon plugin call` a --query-fixture")]
    NoFixture(String),
}

/// Instant queries for metric-check plugins: PromQL over a store (the
/// agent's, or `wasmon plugin call`'s fixture) on a blocking thread,
/// results as WIT samples (a scalar is one unlabeled sample).
pub struct PromqlQueries {
    pub store: Arc<dyn crate::storage::Queryable>,
    /// The running config's engine, read per query.
    pub engine: crate::promql::SharedEngine,
}

impl QueryApi for PromqlQueries {
    fn instant(
        &self,
        expr: String,
        time_ms: i64,
    ) -> futures::future::BoxFuture<'static, Result<Vec<Sample>, QueryError>> {
        let (store, engine) = (self.store.clone(), self.engine.get());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let parsed = crate::promql::parse(&expr)?;
                let r = engine.instant(&*store, &parsed, time_ms)?;
                let sample = |labels: &crate::model::Labels, t: i64, v: f64| Sample {
                    labels: labels
                        .iter()
                        .map(|l| super::bindings::types::Label {
                            name: l.name.clone(),
                            value: l.value.clone(),
                        })
                        .collect(),
                    value: v,
                    timestamp_ms: t,
                };
                match r.value {
                    crate::promql::Value::Scalar { t, v } => {
                        Ok(vec![sample(&crate::model::Labels::new(), t, v)])
                    }
                    crate::promql::Value::Vector(v) => {
                        Ok(v.iter().map(|s| sample(&s.labels, s.t, s.v)).collect())
                    }
                    other => Err(QueryError::NotInstant(other.type_name())),
                }
            })
            .await?
        })
    }
}

/// Why a call's memory grew past its cap (kept so the error can say so).
#[derive(Debug, thiserror::Error)]
#[error("memory limit exceeded: the plugin asked for {desired} bytes, its cap is {limit} bytes")]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// Per-call memory and table caps. A custom limiter (rather than
/// `StoreLimits`) so an exceeded cap surfaces as a typed error.
pub struct Limits {
    pub memory_bytes: usize,
    pub table_elements: usize,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            return Err(MemoryLimitExceeded {
                desired,
                limit: self.memory_bytes,
            }
            .into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }
}

/// Identity and capabilities of the instance a call runs for.
pub struct CallEnv {
    pub plugin: Arc<str>,
    pub instance: Arc<str>,
    pub config_json: Arc<str>,
    pub clock: Arc<dyn Clock>,
    pub query: Option<Arc<dyn QueryApi>>,
}

/// `T` of every plugin `Store`.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) policy: OutboundPolicy,
    pub(crate) limits: Limits,
    pub(crate) env: Arc<CallEnv>,
}

impl HostState {
    pub fn new(env: Arc<CallEnv>, policy: OutboundPolicy, limits: Limits) -> HostState {
        // No preopens, no environment, no args, closed stdio. Sockets (for
        // protocols like SMTP) follow the same allow-list as wasi:http.
        let mut b = WasiCtx::builder();
        if !policy.allow.is_empty() {
            let check = super::policy::socket_check(
                policy.allow.clone(),
                policy.plugin.clone(),
                policy.instance.clone(),
            );
            b.allow_ip_name_lookup(true)
                .allow_tcp(true)
                .allow_udp(false)
                .socket_addr_check(check);
        }
        let wasi = b.build();
        HostState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            policy,
            limits,
            env,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.policy,
        }
    }
}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String, fields: Vec<(String, String)>) {
        // Guests can write anything: cap what reaches the host log.
        let mut message = message;
        truncate(&mut message, 4096);
        let fields = fields
            .iter()
            .take(32)
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (plugin, instance) = (&*self.env.plugin, &*self.env.instance);
        match level {
            log::Level::Trace => {
                tracing::trace!(target: "wasmon::plugin", plugin, instance, fields, "{message}")
            }
            log::Level::Debug => {
                tracing::debug!(target: "wasmon::plugin", plugin, instance, fields, "{message}")
            }
            log::Level::Info => {
                tracing::info!(target: "wasmon::plugin", plugin, instance, fields, "{message}")
            }
            log::Level::Warn => {
                tracing::warn!(target: "wasmon::plugin", plugin, instance, fields, "{message}")
            }
            log::Level::Error => {
                tracing::error!(target: "wasmon::plugin", plugin, instance, fields, "{message}")
            }
        }
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> String {
        self.env.config_json.to_string()
    }

    fn instance_name(&mut self) -> String {
        self.env.instance.to_string()
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> i64 {
        self.env.clock.now_ms()
    }
}

impl super::bindings::receiver::wasmon::plugin::types::Host for HostState {}

impl query::Host for HostState {
    /// The WIT import's error is the text.
    async fn instant(&mut self, expr: String, time_ms: i64) -> Result<Vec<Sample>, String> {
        match &self.env.query {
            Some(q) => q.instant(expr, time_ms).await,
            None => Err(QueryError::NoEngine),
        }
        .map_err(|e| e.to_string())
    }
}
