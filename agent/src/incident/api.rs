//! `/api/v1/acks` and `/api/v1/incidents`, and the CLI's client side
//! (`wasmon ack|unack|incidents`).
//!
//! Answers are bare JSON (the ack, the list, the incident); errors are
//! `{"error": "..."}` with a 4xx/5xx status. Every handler runs on the
//! API's bounded blocking pool ([`crate::web::work`]): acks write and
//! fsync `acks.json`, listings walk every incident with its timeline, and
//! the async workers must stay free for `/-/ready`, scrapes and signals.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{AckError, Incident};
use crate::app::Agent;
use crate::web::work::{Stopped, Work, DEFAULT_TIMEOUT};

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(json!({"error": msg.into()}))).into_response()
}

/// Runs a handler's work on the API's blocking pool, deadlined.
async fn on_pool(
    agent: &Agent,
    f: impl FnOnce(&Work) -> Result<Response, Stopped> + Send + 'static,
) -> Response {
    match agent.work.run(DEFAULT_TIMEOUT, f).await {
        Ok(r) => r,
        Err(e) => error(e.status(), e.to_string()),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    group_key: String,
    by: String,
    #[serde(default)]
    comment: String,
    /// Prometheus duration (`30m`, `1h30m`).
    #[serde(default)]
    expires_in: Option<String>,
}

/// POST /api/v1/acks
pub async fn post_ack(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    let req: AckRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad ack request: {e}")),
    };
    let expires_in = match req.expires_in.as_deref() {
        None | Some("") => None,
        Some(s) => match crate::model::Duration::parse(s) {
            Ok(d) => Some(d.as_std()),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("expires_in: {e}")),
        },
    };
    let Some(d) = agent.dispatcher() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "alerting is off: the config has no route",
        );
    };
    let a = agent.clone();
    // Once started, an ack runs to its end (the client leaving does not
    // leave it half made).
    on_pool(&agent, move |w| {
        w.check()?;
        if !d.group_firing(&req.group_key) {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "no alert group {:?} with firing alerts (see /api/v2/alerts/groups for the keys)",
                    req.group_key
                ),
            ));
        }
        let now = a.alert_state.clock.now();
        Ok(
            match a
                .alert_state
                .incidents
                .ack(&req.group_key, &req.by, &req.comment, expires_in, now)
            {
                Ok(ack) => {
                    tracing::info!(group = %ack.group_key, by = %ack.by, id = %ack.id, "alert group acknowledged");
                    Json(ack).into_response()
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            },
        )
    })
    .await
}

/// GET /api/v1/acks (dropping expired ones may write acks.json)
pub async fn list_acks(State(agent): State<Arc<Agent>>) -> Response {
    let a = agent.clone();
    on_pool(&agent, move |w| {
        w.check()?;
        let now = a.alert_state.clock.now();
        Ok(Json(a.alert_state.incidents.acks(now)).into_response())
    })
    .await
}

/// DELETE /api/v1/acks/{id}
pub async fn delete_ack(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let a = agent.clone();
    on_pool(&agent, move |w| {
        w.check()?;
        let now = a.alert_state.clock.now();
        Ok(match a.alert_state.incidents.unack(&id, now) {
            Ok(ack) => {
                tracing::info!(group = %ack.group_key, id = %ack.id, "alert group unacknowledged");
                // Escalation steps held by the ack may be due right now.
                if let Some(d) = a.dispatcher() {
                    d.poke();
                }
                Json(ack).into_response()
            }
            Err(e @ AckError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
            Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
        })
    })
    .await
}

fn incident_json(i: &Incident) -> Value {
    let mut v = serde_json::to_value(i).unwrap_or(Value::Null);
    v["status"] = json!(if i.is_open() { "open" } else { "resolved" });
    v["durations"] = serde_json::to_value(i.durations()).unwrap_or(Value::Null);
    v
}

/// GET /api/v1/incidents (newest first, without the timeline)
pub async fn list_incidents(State(agent): State<Arc<Agent>>) -> Response {
    let a = agent.clone();
    on_pool(&agent, move |w| {
        let all = a.alert_state.incidents.list();
        let mut list: Vec<Value> = Vec::with_capacity(all.len());
        for i in all.iter().rev() {
            w.check()?;
            let mut v = incident_json(i);
            if let Some(o) = v.as_object_mut() {
                o.remove("events");
                o.insert("event_count".into(), json!(i.events.len()));
            }
            list.push(v);
        }
        Ok(Json(list).into_response())
    })
    .await
}

/// GET /api/v1/incidents/{id}
pub async fn get_incident(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let a = agent.clone();
    on_pool(&agent, move |w| {
        w.check()?;
        Ok(match a.alert_state.incidents.get(&id) {
            Some(i) => Json(incident_json(&i)).into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        })
    })
    .await
}

/// GET /api/v1/incidents/{id}/report
pub async fn get_report(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let a = agent.clone();
    on_pool(&agent, move |w| {
        w.check()?;
        Ok(match a.alert_state.incidents.get(&id) {
            Some(i) => (
                [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                super::report::markdown(&i),
            )
                .into_response(),
            None => error(StatusCode::NOT_FOUND, format!("no incident {id:?}")),
        })
    })
    .await
}

// --- CLI ---------------------------------------------------------------

use crate::web::client::{base, check};

/// `wasmon ack`
pub async fn cli_ack(
    url: &str,
    group_key: &str,
    by: &str,
    comment: &str,
    expires_in: Option<&str>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let u = format!("{}/api/v1/acks", base(url));
    let mut body = json!({"group_key": group_key, "by": by, "comment": comment});
    if let Some(e) = expires_in {
        body["expires_in"] = json!(e);
    }
    let resp = reqwest::Client::new()
        .post(&u)
        .json(&body)
        .send()
        .await
        .with_context(|| format!("POST {u}"))?;
    let text = check(resp, &format!("POST {u}")).await?;
    let v: Value = serde_json::from_str(&text).with_context(|| format!("POST {u}: not JSON"))?;
    println!(
        "acknowledged {} (ack id {}{})",
        group_key,
        v["id"].as_str().unwrap_or("?"),
        v["expires_at"]
            .as_str()
            .map(|e| format!(", expires {e}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `wasmon unack`
pub async fn cli_unack(url: &str, id: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let u = format!("{}/api/v1/acks/{id}", base(url));
    let resp = reqwest::Client::new()
        .delete(&u)
        .send()
        .await
        .with_context(|| format!("DELETE {u}"))?;
    check(resp, &format!("DELETE {u}")).await?;
    println!("ack {id} removed");
    Ok(())
}

/// `wasmon incidents [ID] [--report]`
pub async fn cli_incidents(url: &str, id: Option<&str>, report: bool) -> anyhow::Result<()> {
    use anyhow::Context;
    let u = match (id, report) {
        (Some(id), true) => format!("{}/api/v1/incidents/{id}/report", base(url)),
        (Some(id), false) => format!("{}/api/v1/incidents/{id}", base(url)),
        (None, true) => anyhow::bail!("--report needs an incident ID"),
        (None, false) => format!("{}/api/v1/incidents", base(url)),
    };
    let resp = reqwest::get(&u).await.with_context(|| format!("GET {u}"))?;
    let text = check(resp, &format!("GET {u}")).await?;
    if report {
        print!("{text}");
        return Ok(());
    }
    let v: Value = serde_json::from_str(&text).with_context(|| format!("GET {u}: not JSON"))?;
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    if id.is_some() {
        println!(
            "incident {} [{}] {}",
            s(&v["id"]),
            s(&v["status"]),
            s(&v["group_key"])
        );
        for e in v["events"].as_array().into_iter().flatten() {
            println!("{}", timeline_line(e));
        }
        return Ok(());
    }
    println!(
        "{:<6} {:<9} {:<22} {:<22} GROUP",
        "ID", "STATUS", "OPENED", "RESOLVED"
    );
    let list = v.as_array().cloned().unwrap_or_default();
    for i in &list {
        println!(
            "{:<6} {:<9} {:<22} {:<22} {}",
            s(&i["id"]),
            s(&i["status"]),
            s(&i["opened_at"]),
            s(&i["resolved_at"]),
            s(&i["group_key"])
        );
    }
    if list.is_empty() {
        println!("(no incidents)");
    }
    Ok(())
}

/// One event of `wasmon incidents ID`: time, kind, message and, for a
/// send, its receiver and result (a failed page must not read like a
/// delivered one).
fn timeline_line(e: &Value) -> String {
    let Ok(e) = serde_json::from_value::<super::Event>(e.clone()) else {
        return format!("(unreadable event: {e})");
    };
    let mut line = format!(
        "{}  {:<20} {}",
        e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        e.kind,
        e.message
    );
    if let (Some(r), Some(outcome)) = (&e.receiver, e.outcome()) {
        line.push_str(&format!(" -> {r}: {outcome}"));
    }
    line
}

/// The routes, merged into the agent's router.
pub fn routes() -> axum::Router<Arc<Agent>> {
    use axum::routing::{delete, get};
    axum::Router::new()
        .route("/api/v1/acks", get(list_acks).post(post_ack))
        .route("/api/v1/acks/{id}", delete(delete_ack))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/report", get(get_report))
}
