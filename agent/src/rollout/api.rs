//! `GET /api/v1/rollouts`, `GET /api/v1/rollouts/NAME`,
//! `POST /api/v1/rollouts/NAME/start` and the `wasmon rollouts` CLI.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{Rollout, RolloutState, StartError};
use crate::app::Agent;

fn view(r: &Rollout, s: &RolloutState) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("name".into(), json!(r.name));
        m.insert("target".into(), json!(r.target));
        m.insert("threshold".into(), json!(r.threshold));
        m.insert(
            "interval".into(),
            json!(humantime::format_duration(r.interval).to_string()),
        );
        m.insert(
            "soak".into(),
            json!(humantime::format_duration(r.soak).to_string()),
        );
        m.insert(
            "verify".into(),
            json!(humantime::format_duration(r.verify).to_string()),
        );
        m.insert("metrics".into(), json!(r.metrics));
        m.insert(
            "metricChecks".into(),
            json!(r
                .metric_checks
                .iter()
                .map(|(n, i)| json!({"name": n, "plugin": i.plugin}))
                .collect::<Vec<_>>()),
        );
        m.insert(
            "rollbackAction".into(),
            json!(r
                .rollback
                .as_ref()
                .map(|i| json!({"name": &*i.name, "plugin": i.plugin}))),
        );
    }
    v
}

fn error(status: StatusCode, error_type: &str, e: impl std::fmt::Display) -> Response {
    (
        status,
        Json(json!({"status": "error", "errorType": error_type, "error": e.to_string()})),
    )
        .into_response()
}

pub async fn list(State(agent): State<Arc<Agent>>) -> Response {
    let data: Vec<Value> = agent
        .rollouts
        .list()
        .iter()
        .map(|(r, s)| view(r, s))
        .collect();
    Json(json!({"status": "success", "data": data})).into_response()
}

pub async fn get(State(agent): State<Arc<Agent>>, Path(name): Path<String>) -> Response {
    match agent.rollouts.get(&name) {
        Some((r, s)) => Json(json!({"status": "success", "data": view(&r, &s)})).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no rollout named {name:?}"),
        ),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {
    version: String,
    #[serde(default)]
    stable_version: Option<String>,
}

pub async fn start(
    State(agent): State<Arc<Agent>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let body: StartBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_data",
                format!("request body: {e} (expected {{\"version\": \"...\"}})"),
            )
        }
    };
    match agent.rollouts.start(
        &name,
        &body.version,
        body.stable_version.as_deref(),
        "started through the API",
    ) {
        Ok(_) => {
            let (r, s) = agent.rollouts.get(&name).expect("just started");
            Json(json!({"status": "success", "data": view(&r, &s)})).into_response()
        }
        Err(e @ StartError::NotFound(_)) => error(StatusCode::NOT_FOUND, "not_found", e),
        Err(e @ StartError::Invalid(_)) => error(StatusCode::BAD_REQUEST, "bad_data", e),
    }
}

/// `wasmon rollouts`: prints the rollouts of a running agent.
pub async fn print_status(url: &str, json_out: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let url = format!("{}/api/v1/rollouts", url.trim_end_matches('/'));
    let v: Value = reqwest::get(&url)
        .await
        .with_context(|| format!("GET {url}"))?
        .error_for_status()?
        .json()
        .await
        .with_context(|| format!("GET {url}: not JSON"))?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v["data"])?);
        return Ok(());
    }
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "{:<20} {:<13} {:<14} {:<14} {:>8}  LAST DECISION",
        "NAME", "PHASE", "VERSION", "STABLE", "FAILURES"
    );
    let list = v["data"].as_array().cloned().unwrap_or_default();
    for r in &list {
        let last = r["history"]
            .as_array()
            .and_then(|h| h.last())
            .map(|d| format!("{} {}: {}", s(&d["at"]), s(&d["event"]), s(&d["message"])))
            .unwrap_or_else(|| "-".into());
        println!(
            "{:<20} {:<13} {:<14} {:<14} {:>8}  {}",
            s(&r["name"]),
            s(&r["phase"]),
            s(&r["version"]),
            s(&r["stableVersion"]),
            format!("{}/{}", r["failures"], r["threshold"]),
            last
        );
    }
    if list.is_empty() {
        println!("(no rollouts configured)");
    }
    Ok(())
}
