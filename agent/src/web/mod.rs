//! The HTTP API: Prometheus-style management endpoints, the agent's own
//! metrics, and the plugin endpoints.
//!
//! The API serves from [`Api`], a set of narrow handles onto the parts of
//! the agent (as Prometheus' `web/api/v1` takes retrievers and
//! Alertmanager's `api.Options` takes `Alerts`, `Silences`...), which
//! `app` builds; it never sees the agent itself. Every answer takes a shape
//! of [`response`].

use std::sync::Arc;

use axum::extract::{FromRef, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use serde_json::json;

pub mod alertmanager;
pub mod api;
pub mod auth;
pub mod checks;
pub mod incidents;
pub mod query;
pub mod response;
pub mod rollouts;
pub mod rules;
pub mod status;
pub mod tls;
pub mod ui;
pub mod work;

use crate::alerting::message::WebhookMessage;
use crate::config::Config;
use response::{success, ApiError, ErrorType};

/// The running config, as the agent swapped it in (a reload replaces it
/// whole; holders keep the one they read).
#[derive(Clone)]
pub struct RunningConfig(Arc<dyn AsRef<Config> + Send + Sync>);

impl RunningConfig {
    pub fn new(config: Arc<dyn AsRef<Config> + Send + Sync>) -> RunningConfig {
        RunningConfig(config)
    }
}

impl std::ops::Deref for RunningConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        (*self.0).as_ref()
    }
}

/// The agent's lifecycle as the API sees it: the running config, readiness
/// and reloading (Prometheus' web handler gets the same as functions and a
/// reload channel).
pub trait Lifecycle: Send + Sync + 'static {
    fn config(&self) -> RunningConfig;
    /// False while starting or stopping.
    fn is_ready(&self) -> bool;
    /// Re-reads the config file; on error the running config stays.
    fn reload(&self) -> futures::future::BoxFuture<'_, anyhow::Result<()>>;
}

/// What the API serves from: one handle per part of the agent, cheap to
/// clone. Handlers take the whole set or, through [`FromRef`], only their
/// part (checks, rollouts, incidents).
#[derive(Clone)]
pub struct Api {
    pub lifecycle: Arc<dyn Lifecycle>,
    /// Series, labels and queries; its health is part of readiness.
    pub store: Arc<crate::tsdb::Db>,
    /// The running config's PromQL engine.
    pub engine: crate::promql::SharedEngine,
    pub targets: Arc<crate::scrape::ScrapeManager>,
    pub rules: crate::rules::manager::RuleManager,
    pub alerts: alertmanager::Alerts,
    /// The receivers of the running config (and the plugins they call).
    pub receivers: Arc<crate::plugins::notifier::PluginNotifier>,
    pub plugins: Arc<crate::plugins::PluginRuntime>,
    pub checks: Arc<crate::checks::CheckManager>,
    pub rollouts: Arc<crate::rollout::RolloutManager>,
    pub incidents: incidents::IncidentApi,
    pub metrics: Arc<crate::selfmetrics::Metrics>,
    /// Heavy work (listings, PromQL): bounded, deadlined, stopped at shutdown.
    pub work: work::WorkPool,
}

impl FromRef<Api> for Arc<crate::checks::CheckManager> {
    fn from_ref(api: &Api) -> Self {
        api.checks.clone()
    }
}

impl FromRef<Api> for Arc<crate::rollout::RolloutManager> {
    fn from_ref(api: &Api) -> Self {
        api.rollouts.clone()
    }
}

impl FromRef<Api> for incidents::IncidentApi {
    fn from_ref(api: &Api) -> Self {
        api.incidents.clone()
    }
}

pub fn router(api: Api) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "wasmon is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics))
        .route("/debug/allocator", get(allocator_report))
        .route("/api/v1/plugins", get(plugins))
        .route("/api/v1/query", get(query::instant).post(query::instant))
        .route("/api/v1/query_range", get(query::range).post(query::range))
        .route("/api/v1/targets", get(api::targets))
        .route("/api/v1/rules", get(api::rules))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/series", get(api::series).post(api::series))
        .route("/api/v1/labels", get(api::labels).post(api::labels))
        .route("/api/v1/label/{name}/values", get(api::label_values))
        .route("/api/v1/status/buildinfo", get(api::buildinfo))
        .route("/api/v1/metadata", get(api::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(api::query_exemplars).post(api::query_exemplars),
        )
        .route(
            "/api/v2/alerts",
            get(alertmanager::get_alerts).post(alertmanager::post_alerts),
        )
        .route("/api/v2/alerts/groups", get(alertmanager::get_groups))
        .route(
            "/api/v2/silences",
            get(alertmanager::get_silences).post(alertmanager::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(alertmanager::get_silence).delete(alertmanager::delete_silence),
        )
        .route("/api/v2/receivers", get(alertmanager::get_receivers))
        .route("/api/v2/status", get(alertmanager::get_status))
        .route("/api/v1/receivers/{name}/test", post(test_receiver))
        .route("/api/v1/checks", get(checks::list))
        .route("/api/v1/checks/{name}/run", post(checks::run))
        .merge(incidents::routes())
        .route("/api/v1/rollouts", get(rollouts::list))
        .route("/api/v1/rollouts/{name}", get(rollouts::get))
        .route("/api/v1/rollouts/{name}/start", post(rollouts::start))
        .route("/api/v1/status/config", get(status::config))
        .merge(ui::routes())
        .layer(axum::middleware::from_fn_with_state(
            auth::state(api.lifecycle.clone()),
            auth::check,
        ))
        .with_state(api)
}

/// Ready unless starting or stopping, or while the WAL cannot be written
/// (samples would be refused or lost: a load balancer or an orchestrator
/// should know).
async fn ready(State(api): State<Api>) -> Response {
    if !api.lifecycle.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "wasmon is not ready.\n").into_response();
    }
    match api.store.wal_write_error() {
        None => "wasmon is Ready.\n".into_response(),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("wasmon is not ready: the WAL cannot be written: {e}\n"),
        )
            .into_response(),
    }
}

async fn reload(State(api): State<Api>) -> Response {
    match api.lifecycle.reload().await {
        Ok(()) => (StatusCode::OK, "").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e:#}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(api): State<Api>) -> Response {
    let mut extra = store_and_scrape_metrics(&api);
    extra.extend(discovery_metrics(&api.targets.pool_views().await));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        api.metrics.encode_with(&extra),
    )
        .into_response()
}

/// Discovery figures: Prometheus' `prometheus_sd_discovered_targets` per
/// job (static targets included, as Prometheus counts them), and per
/// mechanism config of a job how its refreshes went.
fn discovery_metrics(views: &[crate::scrape::manager::PoolView]) -> Vec<crate::selfmetrics::Extra> {
    use crate::selfmetrics::Extra;
    let mut discovered = Vec::new();
    let (mut refreshes, mut failures, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for v in views {
        let mut n = v.static_targets();
        for s in v.discovery() {
            let st = s.get();
            n += st.targets;
            let labelled = |e: Extra| e.with_label("job", v.name()).with_label("config", s.name());
            refreshes.push(labelled(Extra::counter(
                "wasmon_sd_refreshes",
                "Looks a discovery mechanism made (refreshes, watch events, re-lists), failed or not",
                st.refreshes as f64,
            )));
            failures.push(labelled(Extra::counter(
                "wasmon_sd_refresh_failures",
                "Looks a discovery mechanism made that failed (its last good targets were kept)",
                st.failures as f64,
            )));
            failed.push(labelled(Extra::gauge(
                "wasmon_sd_last_refresh_failed",
                "Whether the last look of a discovery mechanism failed (1: its targets are the last good ones; /api/v1/targets' discoveryStatus says why)",
                if st.last_error.is_some() { 1.0 } else { 0.0 },
            )));
        }
        discovered.push(
            Extra::gauge(
                "prometheus_sd_discovered_targets",
                "Current number of discovered targets",
                n as f64,
            )
            .with_label("config", v.name())
            .with_label("name", "scrape"),
        );
    }
    discovered.extend(refreshes);
    discovered.extend(failures);
    discovered.extend(failed);
    discovered
}

/// Figures owned by the store and the scrape manager, read at scrape time.
fn store_and_scrape_metrics(api: &Api) -> Vec<crate::selfmetrics::Extra> {
    use crate::selfmetrics::Extra;
    use std::sync::atomic::Ordering::Relaxed;
    let s = api.store.stats();
    let sc = &api.targets.stats;
    let mut v = vec![
        Extra::gauge(
            "wasmon_tsdb_head_series",
            "Series in the head block",
            s.head_series as f64,
        ),
        Extra::gauge(
            "wasmon_tsdb_head_chunks",
            "Chunks in the head block",
            s.head_chunks as f64,
        ),
        Extra::gauge(
            "wasmon_tsdb_head_memory_bytes",
            "Estimated memory held by the head block",
            s.head_memory_bytes as f64,
        ),
        Extra::gauge(
            "wasmon_tsdb_wal_bytes",
            "Size of the write-ahead log",
            s.wal_bytes as f64,
        ),
        Extra::gauge(
            "wasmon_tsdb_blocks_loaded",
            "Persisted blocks",
            s.blocks as f64,
        ),
        Extra::gauge(
            "wasmon_tsdb_storage_bytes",
            "Bytes the store uses on disk (blocks and WAL)",
            s.bytes_on_disk as f64,
        ),
        Extra::counter(
            "wasmon_tsdb_samples_appended",
            "Samples appended to the head",
            s.samples_appended_total as f64,
        ),
        Extra::counter(
            "wasmon_tsdb_out_of_order_samples",
            "Samples rejected as out of order",
            s.out_of_order_total as f64,
        ),
        Extra::counter(
            "wasmon_tsdb_compactions",
            "Head compactions into blocks",
            s.compactions_total as f64,
        ),
        Extra::counter(
            "wasmon_tsdb_block_merges",
            "Level compactions: adjacent blocks merged into one larger block",
            s.block_merges_total as f64,
        ),
        Extra::counter(
            "wasmon_tsdb_wal_repairs",
            "Torn or corrupt WAL tails truncated at startup",
            s.wal_repairs_total as f64,
        ),
        Extra::counter(
            "wasmon_scrape_samples_appended",
            "Scraped samples appended",
            sc.appended.load(Relaxed) as f64,
        ),
        Extra::counter(
            "wasmon_scrape_samples_out_of_order",
            "Scraped samples rejected as out of order",
            sc.out_of_order.load(Relaxed) as f64,
        ),
        Extra::counter(
            "wasmon_scrape_samples_duplicate_timestamp",
            "Scraped samples rejected for a duplicate timestamp",
            sc.duplicates.load(Relaxed) as f64,
        ),
    ];
    v.extend(api.work.metrics());
    let rejected = "Samples the store refused, by reason";
    for (reason, n) in [
        ("out_of_bounds", s.out_of_bounds_total),
        ("too_far_in_future", s.too_far_in_future_total),
        ("out_of_order", s.out_of_order_total),
        ("duplicate_timestamp", s.duplicate_total),
        ("write_failed", s.write_failed_total),
    ] {
        v.push(
            Extra::counter("wasmon_tsdb_samples_rejected", rejected, n as f64)
                .with_label("reason", reason),
        );
    }
    let rejected =
        "Scraped samples the store refused, by reason (the target shows them in its lastError)";
    for (reason, n) in [
        ("out_of_bounds", &sc.out_of_bounds),
        ("too_far_in_future", &sc.too_far_in_future),
        ("out_of_order", &sc.out_of_order),
        ("duplicate_timestamp", &sc.duplicates),
        ("write_failed", &sc.write_failed),
    ] {
        v.push(
            Extra::counter(
                "wasmon_scrape_samples_rejected",
                rejected,
                n.load(Relaxed) as f64,
            )
            .with_label("reason", reason),
        );
    }
    for (k, n) in crate::tsdb::health::WriteKind::ALL
        .iter()
        .zip(s.write_failures_total)
    {
        v.push(
            Extra::counter(
                "wasmon_tsdb_write_failures",
                "Failed storage writes by kind (wal: the agent is not ready while it fails)",
                n as f64,
            )
            .with_label("kind", k.as_str()),
        );
    }
    v.push(Extra::gauge(
        "wasmon_tsdb_last_write_failure_timestamp_seconds",
        "When a storage write last failed (0: never)",
        s.last_write_failure_ms.map_or(0.0, |ms| ms as f64 / 1000.0),
    ));
    if let Some(rss) = crate::selfmetrics::resident_memory_bytes() {
        v.push(Extra::gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            rss as f64,
        ));
    }
    if let Some(a) = crate::selfmetrics::allocator_stats() {
        for (name, help, value) in [
            (
                "wasmon_allocator_allocated_bytes",
                "Bytes in live heap objects",
                a.allocated,
            ),
            (
                "wasmon_allocator_active_bytes",
                "Bytes in heap pages holding live objects",
                a.active,
            ),
            (
                "wasmon_allocator_resident_bytes",
                "Resident bytes of the allocator, freed pages not yet returned included",
                a.resident,
            ),
            (
                "wasmon_allocator_retained_bytes",
                "Address space the allocator keeps without physical memory",
                a.retained,
            ),
        ] {
            v.push(Extra::gauge(name, help, value as f64));
        }
    }
    v
}

/// jemalloc's statistics report: where resident memory goes by size class
/// (live objects against slab pages), for diagnosing memory growth.
async fn allocator_report() -> Response {
    match tokio::task::spawn_blocking(crate::selfmetrics::allocator_report).await {
        Ok(Some(text)) => text.into_response(),
        _ => (
            StatusCode::NOT_FOUND,
            "allocator statistics are not available (jemalloc is not the allocator)\n",
        )
            .into_response(),
    }
}

async fn plugins(State(api): State<Api>) -> Response {
    success(api.plugins.list())
}

/// Sends a notification through one receiver: the body, if any, is an
/// Alertmanager webhook v4 message; without one a synthetic test alert goes out.
async fn test_receiver(
    State(api): State<Api>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let receivers = api.receivers.receivers.load_full();
    let Some(inst) = receivers.get(&name) else {
        return Err(ApiError::not_found(format!("no receiver named {name:?}")));
    };
    let msg = if body.iter().all(u8::is_ascii_whitespace) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        let config = api.lifecycle.config();
        WebhookMessage::test_message(&name, &config.global.external_url, &now)
    } else {
        serde_json::from_slice::<WebhookMessage>(&body)
            .map_err(|e| ApiError::bad_data(format!("request body: {e}")))?
    };
    let notification =
        crate::plugins::notifier::wit_notification(&msg).map_err(ApiError::bad_data)?;
    // A person's test: not refused by an open circuit, and closes it when
    // the receiver works again.
    match api
        .plugins
        .notify_with(inst, &notification, crate::plugins::Policy::Manual)
        .await
    {
        Ok(info) => Ok(success(json!({
            "receiver": name,
            "plugin": inst.plugin,
            "pluginVersion": info.plugin_hash,
            "durationSeconds": info.duration.as_secs_f64(),
        }))),
        Err(e) => Err(
            ApiError::new(StatusCode::BAD_GATEWAY, ErrorType::Plugin, &e)
                .with("result", e.label())
                .with("retryable", e.is_retryable()),
        ),
    }
}
