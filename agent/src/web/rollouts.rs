//! `GET /api/v1/rollouts`, `GET /api/v1/rollouts/NAME` and
//! `POST /api/v1/rollouts/NAME/start` (`wasmon rollouts` is a client, in
//! [`crate::client::rollouts`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{success, ApiError};
use crate::rollout::{Rollout, RolloutManager, RolloutState, StartError};

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

pub async fn list(State(rollouts): State<Arc<RolloutManager>>) -> Response {
    let data: Vec<Value> = rollouts.list().iter().map(|(r, s)| view(r, s)).collect();
    success(data)
}

pub async fn get(
    State(rollouts): State<Arc<RolloutManager>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match rollouts.get(&name) {
        Some((r, s)) => Ok(success(view(&r, &s))),
        None => Err(ApiError::not_found(format!("no rollout named {name:?}"))),
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
    State(rollouts): State<Arc<RolloutManager>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: StartBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_data(format!(
            "request body: {e} (expected {{\"version\": \"...\"}})"
        ))
    })?;
    match rollouts.start(
        &name,
        &body.version,
        body.stable_version.as_deref(),
        "started through the API",
    ) {
        // A reload may have removed it since.
        Ok(_) => match rollouts.get(&name) {
            Some((r, s)) => Ok(success(view(&r, &s))),
            None => Err(ApiError::not_found(format!("no rollout named {name:?}"))),
        },
        Err(e @ StartError::NotFound(_)) => Err(ApiError::not_found(e)),
        Err(e @ StartError::Invalid(_)) => Err(ApiError::bad_data(e)),
    }
}
