//! `GET /api/v1/status/config`: the running config, as Prometheus' endpoint
//! of the same name, with every secret redacted (`config::Secret` and
//! secret-looking keys of plugin configs print as `<secret>`).

use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::response::{success, ApiError};
use super::Api;

pub async fn config(State(api): State<Api>) -> Result<Response, ApiError> {
    let config = api.lifecycle.config();
    let value = serde_json::to_value(&*config).map_err(ApiError::internal)?;
    // TOML for people (the format they wrote); JSON for programs. TOML can
    // fail on shapes it has no syntax for, which must not hide the JSON.
    let toml =
        toml::to_string(&*config).unwrap_or_else(|e| format!("# not printable as TOML: {e}\n"));
    Ok(success(json!({
        "toml": toml,
        "config": value,
        "file": config.source.as_ref().map(|p| p.display().to_string()),
    })))
}
