//! A minimal Kubernetes API client for rollback actions: one JSON request
//! with the bearer token, and the API's own `Status.message` in failures.
//!
//! Plugins have no filesystem, so the token comes from the instance config
//! (usually `${ENV}` in the agent config), not a service-account file.

use serde_json::Value;

use crate::http::{self, Method};
use crate::types::Failure;

/// Sends `method` to `api_url` + `path` with an optional JSON `body`
/// (content type first: merge and strategic patches differ only there) and
/// returns the parsed answer. An empty token sends no Authorization header.
/// 429/5xx and 409 (a conflicting update, worth retrying) are retryable.
pub fn request(
    api_url: &str,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<(&str, Value)>,
) -> Result<Value, Failure> {
    let url = format!("{}{path}", api_url.trim_end_matches('/'));
    let auth = token
        .filter(|t| !t.is_empty())
        .map(|t| format!("Bearer {t}"));
    let mut headers = vec![
        ("accept", "application/json"),
        ("user-agent", http::USER_AGENT),
    ];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let bytes = match &body {
        Some((content_type, v)) => {
            headers.push(("content-type", content_type));
            serde_json::to_vec(v).map_err(|e| Failure::permanent(e.to_string()))?
        }
        None => Vec::new(),
    };
    let resp = http::send(method, &url, &headers, &bytes)?;
    resp.classify().map_err(|f| {
        // The API says why in a Status object's `message`.
        let msg = resp
            .json::<Value>()
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| f.message().to_string());
        let m = format!("{url}: HTTP {}: {msg}", resp.status);
        if f.is_retryable() || resp.status == 409 {
            Failure::retryable(m)
        } else {
            Failure::permanent(m)
        }
    })?;
    resp.json()
}
