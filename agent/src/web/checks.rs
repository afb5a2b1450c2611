//! `GET /api/v1/checks`: the last result of every health check;
//! `POST /api/v1/checks/NAME/run`: run one now (`wasmon checks run` is its
//! client, in [`crate::client::checks`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;

use super::response::{success, ApiError};
use crate::checks::CheckManager;

pub async fn list(State(checks): State<Arc<CheckManager>>) -> Response {
    success(checks.statuses())
}

/// Runs the check now and answers with its result, which is also stored
/// as its series, as a scheduled run's is. A request for a check that is
/// already being run on demand waits for that run (`coalesced: true`).
pub async fn run(
    State(checks): State<Arc<CheckManager>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    match checks.run_now(&name).await {
        Some(r) => Ok(success(r)),
        None => Err(ApiError::not_found(format!("no check named {name:?}"))),
    }
}
