//! `GET /api/v1/checks`: the last result of every health check.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::Agent;

pub async fn list(State(agent): State<Arc<Agent>>) -> Response {
    Json(json!({"status": "success", "data": agent.checks.statuses()})).into_response()
}
