//! `/api/v1/acks` and `/api/v1/incidents` (`wasmon ack|unack|incidents`
//! are clients, in [`crate::client::incidents`]).
//!
//! Answers are bare JSON (the ack, the list, the incident); errors are the
//! API's error envelope ([`super::response::ApiError`], whose `error`
//! is the message) with a 4xx/5xx status. Every handler runs on the
//! API's bounded blocking pool ([`super::work`]): acks write and
//! fsync `acks.json`, listings walk every incident with its timeline, and
//! the async workers must stay free for `/-/ready`, scrapes and signals.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::{FromRef, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::response::{bare, ApiError};
use super::work::{Stopped, Work, WorkPool, DEFAULT_TIMEOUT};
use crate::alerting::dispatch::Dispatcher;
use crate::clock::Clock;
use crate::incident::{AckError, Incident, Incidents};

/// What these handlers serve from.
#[derive(Clone)]
pub struct IncidentApi {
    pub incidents: Arc<Incidents>,
    /// The running config's dispatcher (None without a route): an ack needs
    /// a firing group, an unack wakes escalation.
    pub dispatcher: Arc<ArcSwap<Option<Dispatcher>>>,
    pub clock: Arc<dyn Clock>,
    /// The API's blocking pool.
    pub work: WorkPool,
}

impl IncidentApi {
    fn dispatcher(&self) -> Option<Dispatcher> {
        Option::clone(&self.dispatcher.load())
    }
}

/// Runs a handler's work on the API's blocking pool, deadlined.
async fn on_pool(
    api: &IncidentApi,
    f: impl FnOnce(&Work) -> Result<Result<Response, ApiError>, Stopped> + Send + 'static,
) -> Response {
    match api.work.run(DEFAULT_TIMEOUT, f).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => ApiError::from(e).into_response(),
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
pub async fn post_ack(State(api): State<IncidentApi>, body: Bytes) -> Response {
    let req: AckRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return ApiError::bad_data(format!("bad ack request: {e}")).into_response(),
    };
    let expires_in = match req.expires_in.as_deref() {
        None | Some("") => None,
        Some(s) => match crate::model::Duration::parse(s) {
            Ok(d) => Some(d.as_std()),
            Err(e) => return ApiError::bad_data(format!("expires_in: {e}")).into_response(),
        },
    };
    let Some(d) = api.dispatcher() else {
        return ApiError::unavailable("alerting is off: the config has no route").into_response();
    };
    let a = api.clone();
    // Once started, an ack runs to its end (the client leaving does not
    // leave it half made).
    on_pool(&api, move |w| {
        w.check()?;
        if !d.group_firing(&req.group_key) {
            return Ok(Err(ApiError::bad_data(format!(
                "no alert group {:?} with firing alerts (see /api/v2/alerts/groups for the keys)",
                req.group_key
            ))));
        }
        let now = a.clock.now();
        Ok(
            match a
                .incidents
                .ack(&req.group_key, &req.by, &req.comment, expires_in, now)
            {
                Ok(ack) => {
                    tracing::info!(group = %ack.group_key, by = %ack.by, id = %ack.id, "alert group acknowledged");
                    Ok(bare(ack))
                }
                Err(e) => Err(ApiError::bad_data(e)),
            },
        )
    })
    .await
}

/// GET /api/v1/acks (dropping expired ones may write acks.json)
pub async fn list_acks(State(api): State<IncidentApi>) -> Response {
    let a = api.clone();
    on_pool(&api, move |w| {
        w.check()?;
        let now = a.clock.now();
        Ok(Ok(bare(a.incidents.acks(now))))
    })
    .await
}

/// DELETE /api/v1/acks/{id}
pub async fn delete_ack(State(api): State<IncidentApi>, Path(id): Path<String>) -> Response {
    let a = api.clone();
    on_pool(&api, move |w| {
        w.check()?;
        let now = a.clock.now();
        Ok(match a.incidents.unack(&id, now) {
            Ok(ack) => {
                tracing::info!(group = %ack.group_key, id = %ack.id, "alert group unacknowledged");
                // Escalation steps held by the ack may be due right now.
                if let Some(d) = a.dispatcher() {
                    d.poke();
                }
                Ok(bare(ack))
            }
            Err(e @ AckError::NotFound(_)) => Err(ApiError::not_found(e)),
            Err(e) => Err(ApiError::bad_data(e)),
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
pub async fn list_incidents(State(api): State<IncidentApi>) -> Response {
    let a = api.clone();
    on_pool(&api, move |w| {
        let all = a.incidents.list();
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
        Ok(Ok(bare(list)))
    })
    .await
}

/// GET /api/v1/incidents/{id}
pub async fn get_incident(State(api): State<IncidentApi>, Path(id): Path<String>) -> Response {
    let a = api.clone();
    on_pool(&api, move |w| {
        w.check()?;
        Ok(match a.incidents.get(&id) {
            Some(i) => Ok(bare(incident_json(&i))),
            None => Err(ApiError::not_found(format!("no incident {id:?}"))),
        })
    })
    .await
}

/// GET /api/v1/incidents/{id}/report
pub async fn get_report(State(api): State<IncidentApi>, Path(id): Path<String>) -> Response {
    let a = api.clone();
    on_pool(&api, move |w| {
        w.check()?;
        Ok(match a.incidents.get(&id) {
            Some(i) => Ok((
                [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
                crate::incident::report::markdown(&i),
            )
                .into_response()),
            None => Err(ApiError::not_found(format!("no incident {id:?}"))),
        })
    })
    .await
}

/// The routes, merged into the API's router (whose state hands out an
/// [`IncidentApi`]).
pub fn routes<S>() -> axum::Router<S>
where
    IncidentApi: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    use axum::routing::{delete, get};
    axum::Router::new()
        .route("/api/v1/acks", get(list_acks).post(post_ack))
        .route("/api/v1/acks/{id}", delete(delete_ack))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/report", get(get_report))
}
