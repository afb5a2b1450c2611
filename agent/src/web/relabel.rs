//! `GET /api/v1/targets/relabel_steps` (Prometheus 3.8): what a scrape
//! pool's `relabel_configs` do to one discovered label set, rule by rule.
//! The JSON here is also what `wasmon relabel test --output json` prints.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value};

use super::api::{labels_json, Params};
use super::response::{success, ApiError};
use super::work::DEFAULT_TIMEOUT;
use super::Api;
use crate::model::labels::Labels;
use crate::scrape::target::{Target, TargetTrace};

/// Prometheus' `{"steps": [{"rule", "output", "keep"}]}`, and what
/// Prometheus leaves to its UI: the labels the rules saw (the discovered
/// ones with the job's defaults), the verdict, and the target made of the
/// labels left (its final labels and URL) or why there is none.
pub fn trace_json(pool: &str, t: &TargetTrace) -> Value {
    let (target, error) = match &t.target {
        None => (Value::Null, Value::Null),
        Some(Ok(target)) => (
            json!({"labels": labels_json(&target.labels), "scrapeUrl": target.url}),
            Value::Null,
        ),
        Some(Err(e)) => (Value::Null, json!(e.to_string())),
    };
    json!({
        "steps": t.relabel.steps,
        "scrapePool": pool,
        "discoveredLabels": labels_json(&t.discovered),
        "input": labels_json(&t.relabel.input),
        "keep": matches!(t.target, Some(Ok(_))),
        "droppedBy": t.relabel.dropped_by,
        "target": target,
        "error": error,
    })
}

/// A label set as Prometheus' API takes it: a JSON object of strings.
pub fn parse_json_labels(s: &str) -> Result<Labels, serde_json::Error> {
    let m: BTreeMap<String, String> = serde_json::from_str(s)?;
    Ok(Labels::from_pairs(m))
}

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
        Some(s) => parse_json_labels(s)
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
            Ok(trace_json(&pool, &Target::trace(&job, labels)))
        })
        .await?;
    Ok(success(data))
}
