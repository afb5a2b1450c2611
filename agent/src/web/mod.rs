//! The HTTP API: Prometheus-style management endpoints, the agent's own
//! metrics, and the plugin endpoints.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;

use crate::alerting::message::WebhookMessage;
use crate::app::Agent;

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "wasmon is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/-/reload", post(reload).put(reload))
        .route("/metrics", get(metrics))
        .route("/api/v1/plugins", get(plugins))
        .route("/api/v1/receivers/{name}/test", post(test_receiver))
        .with_state(agent)
}

/// Prometheus' API error envelope.
fn api_error(status: StatusCode, error_type: &str, error: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": error_type, "error": error.to_string()})),
    )
        .into_response()
}

fn api_ok(data: serde_json::Value) -> Response {
    Json(json!({"status": "success", "data": data})).into_response()
}

async fn ready(State(agent): State<Arc<Agent>>) -> Response {
    if agent.is_ready() {
        "wasmon is Ready.\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "wasmon is not ready.\n").into_response()
    }
}

async fn reload(State(agent): State<Arc<Agent>>) -> Response {
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || a.reload_config()).await {
        Ok(Ok(())) => (StatusCode::OK, "").into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e:#}\n"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload task failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        agent.metrics.encode(),
    )
        .into_response()
}

async fn plugins(State(agent): State<Arc<Agent>>) -> Response {
    match serde_json::to_value(agent.plugins.list()) {
        Ok(v) => api_ok(v),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    }
}

/// Sends a notification through one receiver: the body, if any, is an
/// Alertmanager webhook v4 message; without one a synthetic test alert goes out.
async fn test_receiver(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let current = agent.current();
    let Some(inst) = current.receivers.get(&name) else {
        return api_error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no receiver named {name:?}"),
        );
    };
    let msg = if body.iter().all(u8::is_ascii_whitespace) {
        let now = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        WebhookMessage::test_message(&name, &current.config.global.external_url, &now)
    } else {
        match serde_json::from_slice::<WebhookMessage>(&body) {
            Ok(m) => m,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    "bad_data",
                    format!("request body: {e}"),
                )
            }
        }
    };
    let notification = match msg.to_wit() {
        Ok(n) => n,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, "bad_data", e),
    };
    match agent.plugins.notify(inst, &notification).await {
        Ok(info) => api_ok(json!({
            "receiver": name,
            "plugin": inst.plugin,
            "pluginVersion": info.plugin_hash,
            "durationSeconds": info.duration.as_secs_f64(),
        })),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({
                "status": "error",
                "errorType": "plugin",
                "error": e.to_string(),
                "result": e.label(),
                "retryable": e.is_retryable(),
            })),
        )
            .into_response(),
    }
}
