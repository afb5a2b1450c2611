//! `GET /api/v1/checks`: the last result of every health check;
//! `POST /api/v1/checks/NAME/run`: run one now; and `wasmon checks run`,
//! the client of the latter.

use std::sync::Arc;

use anyhow::Context;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::app::Agent;
use crate::web::client::{base, check};

pub async fn list(State(agent): State<Arc<Agent>>) -> Response {
    Json(json!({"status": "success", "data": agent.checks.statuses()})).into_response()
}

/// Runs the check now and answers with its result, which is also stored
/// as its series, as a scheduled run's is. A request for a check that is
/// already being run on demand waits for that run (`coalesced: true`).
pub async fn run(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    match agent.checks.run_now(&name).await {
        Some(r) => Json(json!({"status": "success", "data": r})).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({
                "status": "error",
                "errorType": "not_found",
                "error": format!("no check named {name:?}"),
            })),
        )
            .into_response(),
    }
}

/// `wasmon checks run NAME`: prints the result; true when the check passed.
pub async fn cli_run(url: &str, name: &str, json_out: bool) -> anyhow::Result<bool> {
    let u = format!(
        "{}/api/v1/checks/{}/run",
        base(url),
        utf8_percent_path(name)
    );
    let resp = reqwest::Client::new()
        .post(&u)
        .send()
        .await
        .with_context(|| format!("POST {u}"))?;
    let text = check(resp, &format!("POST {u}")).await?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("POST {u}: not JSON"))?;
    let d = &v["data"];
    if json_out {
        println!("{}", serde_json::to_string_pretty(d)?);
    } else {
        let last = &d["last"];
        println!(
            "{} ({} {}): {} in {:.3}s: {}{}",
            d["name"].as_str().unwrap_or(name),
            d["kind"].as_str().unwrap_or("?"),
            d["target"].as_str().unwrap_or(""),
            d["health"].as_str().unwrap_or("?"),
            last["durationSeconds"].as_f64().unwrap_or(0.0),
            last["message"].as_str().unwrap_or(""),
            last["value"]
                .as_f64()
                .map(|v| format!(" (value {v})"))
                .unwrap_or_default(),
        );
    }
    Ok(d["health"] == "up")
}

/// A check name as one path segment.
fn utf8_percent_path(name: &str) -> String {
    form_urlencoded::byte_serialize(name.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
