//! `GET /api/v1/status/config`: the running config, as Prometheus' endpoint
//! of the same name, with every secret redacted (`config::Secret` and
//! secret-looking keys of plugin configs print as `<secret>`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::app::Agent;

pub async fn config(State(agent): State<Arc<Agent>>) -> Response {
    let loaded = agent.current();
    let value = match serde_json::to_value(&loaded.config) {
        Ok(v) => v,
        Err(e) => return super::api_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e),
    };
    // TOML for people (the format they wrote); JSON for programs. TOML can
    // fail on shapes it has no syntax for, which must not hide the JSON.
    let toml = toml::to_string(&loaded.config)
        .unwrap_or_else(|e| format!("# not printable as TOML: {e}\n"));
    super::api_ok(json!({
        "toml": toml,
        "config": value,
        "file": loaded.config.source.as_ref().map(|p| p.display().to_string()),
    }))
}
