//! `GET /api/v1/targets/relabel_steps` (Prometheus 3.8): what a scrape
//! pool's `relabel_configs` do to one discovered label set, rule by rule.
//! The JSON is [`crate::scrape::trace::TargetTrace`]'s, as `wasmon relabel test --output json`
//! prints it.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;

use super::api::Params;
use super::response::{success, ApiError};
use super::work::DEFAULT_TIMEOUT;
use super::Api;
use crate::scrape::target::Target;
use crate::scrape::trace::labels_from_json;

/// GET /api/v1/targets/relabel_steps?scrapePool=JOB&labels={"k":"v"}
pub async fn relabel_steps(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let pool = match p.get("scrapePool") {
        None | Some("") => return Err(ApiError::bad_data("no scrapePool parameter provided")),
        Some(s) => s.to_string(),
    };
    let labels = match p.get("labels") {
        None | Some("") => return Err(ApiError::bad_data("no labels parameter provided")),
        Some(s) => labels_from_json(s)
            .map_err(|e| ApiError::bad_data(format!("error parsing labels: {e}")))?,
    };
    let Some(job) = api.targets.job(&pool).await else {
        return Err(ApiError::bad_data(format!(
            "error retrieving scrape config: scrape pool {pool:?} not found"
        )));
    };
    // Rules are a handful, but a set may be large and regexes slow:
    // off the async workers like any other heavy request.
    let data = api
        .work
        .run(DEFAULT_TIMEOUT, move |_| {
            Ok(serde_json::json!(Target::trace(&job, labels)))
        })
        .await?;
    Ok(success(data))
}
