//! Alertmanager API v2 (the subset amtool and Grafana use): alerts,
//! silences, receivers, status. Shapes follow
//! `../shared/conformance/alertmanager/api/v2/openapi.yaml`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::api::Params;
use crate::alerting::dispatch::Dispatcher;
use crate::alerting::matcher::{parse_matchers_fallback, Matcher};
use crate::alerting::silence::{Silence, SilenceError};
use crate::alerting::types::{fingerprint_hex, rfc3339, PostableAlert};
use crate::app::Agent;

/// Alertmanager's plain-text errors (the v2 API answers errors as a JSON string).
fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, Json(Value::String(msg.into()))).into_response()
}

/// An error before a handler has anything to answer (small, unlike a Response).
struct V2Error(StatusCode, String);

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        error(self.0, self.1)
    }
}

fn dispatcher(agent: &Agent) -> Result<Dispatcher, V2Error> {
    agent.dispatcher().ok_or_else(|| {
        V2Error(
            StatusCode::SERVICE_UNAVAILABLE,
            "alerting is off: the config has no route".into(),
        )
    })
}

fn bool_param(p: &Params, name: &str, default: bool) -> bool {
    p.get(name).map(|v| v == "true").unwrap_or(default)
}

fn filters(p: &Params) -> Result<Vec<Matcher>, V2Error> {
    let mut out = Vec::new();
    for f in p.all("filter") {
        let (ms, _) = parse_matchers_fallback(f)
            .map_err(|e| V2Error(StatusCode::BAD_REQUEST, format!("bad matcher format: {e}")))?;
        out.extend(ms);
    }
    Ok(out)
}

fn labels_map(l: &crate::model::Labels) -> Value {
    let m: serde_json::Map<String, Value> =
        l.iter().map(|l| (l.name.clone(), json!(l.value))).collect();
    Value::Object(m)
}

/// GET /api/v2/alerts
pub async fn get_alerts(State(agent): State<Arc<Agent>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let d = match dispatcher(&agent) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let fs = match filters(&p) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let (active, silenced, inhibited) = (
        bool_param(&p, "active", true),
        bool_param(&p, "silenced", true),
        bool_param(&p, "inhibited", true),
    );
    let receiver_re = match p
        .get("receiver")
        .map(|r| regex::Regex::new(&format!("^(?:{r})$")))
    {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("failed to parse receiver param: {e}"),
            )
        }
        None => None,
    };
    let now = agent.alert_state.clock.now();
    let mut out = Vec::new();
    for a in agent.alert_state.alerts.list() {
        if a.resolved_at(now) || !fs.iter().all(|m| m.matches(&a.labels)) {
            continue;
        }
        let receivers: Vec<String> = d
            .route()
            .match_labels(&a.labels)
            .iter()
            .map(|r| r.opts.receiver.clone())
            .collect();
        if let Some(re) = &receiver_re {
            if !receivers.iter().any(|r| re.is_match(r)) {
                continue;
            }
        }
        let marks = d.marks(&a.labels);
        let state = if marks.silenced_by.is_empty() && marks.inhibited_by.is_empty() {
            "active"
        } else {
            "suppressed"
        };
        if (state == "active" && !active)
            || (!marks.silenced_by.is_empty() && !silenced)
            || (!marks.inhibited_by.is_empty() && !inhibited)
        {
            continue;
        }
        out.push(json!({
            "labels": labels_map(&a.labels),
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": rfc3339(a.ends_at),
            "updatedAt": rfc3339(a.updated_at),
            "generatorURL": a.generator_url,
            "fingerprint": fingerprint_hex(a.fingerprint()),
            "receivers": receivers.iter().map(|r| json!({"name": r})).collect::<Vec<_>>(),
            "status": {"state": state, "silencedBy": marks.silenced_by, "inhibitedBy": marks.inhibited_by, "mutedBy": []},
        }));
    }
    out.sort_by(|a, b| a["fingerprint"].as_str().cmp(&b["fingerprint"].as_str()));
    Json(out).into_response()
}

/// POST /api/v2/alerts
pub async fn post_alerts(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    let d = match dispatcher(&agent) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let alerts: Vec<PostableAlert> = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid alerts: {e}")),
    };
    match d.put_alerts(alerts) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

/// GET /api/v2/alerts/groups
pub async fn get_groups(State(agent): State<Arc<Agent>>) -> Response {
    let d = match dispatcher(&agent) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let groups: Vec<Value> = d
        .groups()
        .into_iter()
        .map(|g| {
            let alerts: Vec<Value> = g
                .alerts
                .iter()
                .filter_map(|fp| agent.alert_state.alerts.get(*fp))
                .map(|a| json!({"labels": labels_map(&a.labels), "annotations": a.annotations, "startsAt": rfc3339(a.starts_at), "endsAt": rfc3339(a.ends_at), "fingerprint": fingerprint_hex(a.fingerprint())}))
                .collect();
            let ack = agent.alert_state.incidents.active_ack(&g.key, agent.alert_state.clock.now());
            json!({"labels": labels_map(&g.labels), "receiver": {"name": g.receiver}, "alerts": alerts, "groupKey": g.key, "ack": ack})
        })
        .collect();
    Json(groups).into_response()
}

fn silence_json(s: &crate::alerting::silence::SilenceWithState) -> Value {
    serde_json::to_value(s).unwrap_or(Value::Null)
}

/// GET /api/v2/silences
pub async fn get_silences(State(agent): State<Arc<Agent>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let fs = match filters(&p) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let now = agent.alert_state.clock.now();
    let list: Vec<Value> = agent
        .alert_state
        .silences
        .list(now)
        .iter()
        .filter(|s| {
            // A filter selects silences that have a matcher equal to it, as amtool does.
            fs.iter().all(|f| {
                s.silence.matchers.iter().any(|m| {
                    m.name == f.name
                        && m.value == f.value
                        && m.is_regex == f.op.is_regex()
                        && m.is_equal == f.op.is_equal()
                })
            })
        })
        .map(silence_json)
        .collect();
    Json(list).into_response()
}

/// POST /api/v2/silences: create, or update when the body has an id.
pub async fn post_silence(State(agent): State<Arc<Agent>>, body: Bytes) -> Response {
    let s: Silence = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    let now = agent.alert_state.clock.now();
    let result = agent.alert_state.silences.set(s, now);
    match result {
        Ok(id) => {
            persist_silences(&agent);
            tracing::info!(silence = %id, "silence set");
            Json(json!({"silenceID": id})).into_response()
        }
        Err(SilenceError::NotFound) => error(StatusCode::NOT_FOUND, "silence not found"),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// GET /api/v2/silence/ID
pub async fn get_silence(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let now = agent.alert_state.clock.now();
    match agent.alert_state.silences.get(&id, now) {
        Some(s) => Json(silence_json(&s)).into_response(),
        None => error(StatusCode::NOT_FOUND, "silence not found"),
    }
}

/// DELETE /api/v2/silence/ID
pub async fn delete_silence(State(agent): State<Arc<Agent>>, Path(id): Path<String>) -> Response {
    let now = agent.alert_state.clock.now();
    match agent.alert_state.silences.expire(&id, now) {
        Ok(()) => {
            persist_silences(&agent);
            tracing::info!(silence = %id, "silence expired");
            StatusCode::OK.into_response()
        }
        Err(SilenceError::NotFound) => error(StatusCode::NOT_FOUND, "silence not found"),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Silences are few and precious: write them at every change, so a crash
/// right after `amtool silence add` loses nothing.
fn persist_silences(agent: &Agent) {
    if let Err(e) = agent.alert_state.silences.snapshot() {
        tracing::error!(error = %e, "writing the silences snapshot");
    }
}

/// GET /api/v2/receivers
pub async fn get_receivers(State(agent): State<Arc<Agent>>) -> Response {
    let names: Vec<Value> = agent
        .current()
        .config
        .receivers
        .iter()
        .map(|r| json!({"name": r.name()}))
        .collect();
    Json(names).into_response()
}

/// GET /api/v2/status
pub async fn get_status(State(agent): State<Arc<Agent>>) -> Response {
    let cfg = agent.current();
    let original = cfg
        .config
        .source
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_else(|| crate::config::DEFAULT_CONFIG.to_string());
    Json(json!({
        "cluster": {"status": "disabled", "peers": [], "name": ""},
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "revision": "", "branch": "", "buildUser": "", "buildDate": "", "goVersion": "",
        },
        "config": {"original": original},
        "uptime": rfc3339(agent.started_at),
    }))
    .into_response()
}
