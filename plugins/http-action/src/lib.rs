//! A rollback action that makes one HTTP request: turn a feature flag off,
//! call a deploy hook, flip a switch back.
//!
//! Config:
//!
//! ```toml
//! config = { url = "http://flags:8080/flags/new-checkout", method = "PATCH",
//!            json = { enabled = false, reason = "{{reason}}" },
//!            headers = { Authorization = "Bearer ${FLAG_TOKEN}" } }
//! ```
//!
//! `method` defaults to POST. The body is either `body` (text, sent as is)
//! or `json` (a table, sent as JSON); `expected_status` (default: any 2xx)
//! lists the statuses that count as done. In `url`, `headers`, `body` and the
//! strings of `json`, these placeholders are replaced: `{{rollout}}`,
//! `{{target}}`, `{{failed_version}}`, `{{stable_version}}`, `{{reason}}`
//! (in `json` values they stay valid JSON whatever they contain).
//! A 429 or 5xx answer or no answer is retryable (the agent retries next
//! interval); any other unexpected status is permanent.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmon_sdk::http::{self, Method};
use wasmon_sdk::rollback_action::{Failure, Guest, RollbackOutcome, RollbackRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    json: Option<serde_json::Value>,
    #[serde(default)]
    expected_status: Vec<u16>,
}

struct HttpAction;

fn fill(s: &str, r: &RollbackRequest) -> String {
    s.replace("{{rollout}}", &r.rollout)
        .replace("{{target}}", &r.target)
        .replace("{{failed_version}}", &r.failed_version)
        .replace("{{stable_version}}", &r.stable_version)
        .replace("{{reason}}", &r.reason)
}

fn fill_json(v: &mut serde_json::Value, r: &RollbackRequest) {
    match v {
        serde_json::Value::String(s) => *s = fill(s, r),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|v| fill_json(v, r)),
        serde_json::Value::Object(m) => m.values_mut().for_each(|v| fill_json(v, r)),
        _ => {}
    }
}

fn method(m: Option<&str>) -> Result<Method, Failure> {
    Ok(match m.unwrap_or("POST").to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        other => return Err(Failure::permanent(format!("unsupported method {other:?}"))),
    })
}

impl Guest for HttpAction {
    fn rollback(request: RollbackRequest) -> Result<RollbackOutcome, Failure> {
        let cfg: Config = wasmon_sdk::config()?;
        if cfg.body.is_some() && cfg.json.is_some() {
            return Err(Failure::permanent(
                "config: give `body` or `json`, not both",
            ));
        }
        let method = method(cfg.method.as_deref())?;
        let url = fill(&cfg.url, &request);
        let mut headers: Vec<(String, String)> = cfg
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), fill(v, &request)))
            .collect();
        let has =
            |h: &[(String, String)], n: &str| h.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        let body = match (&cfg.body, &cfg.json) {
            (Some(b), _) => fill(b, &request).into_bytes(),
            (None, Some(j)) => {
                let mut j = j.clone();
                fill_json(&mut j, &request);
                if !has(&headers, "content-type") {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                serde_json::to_vec(&j).map_err(|e| Failure::permanent(e.to_string()))?
            }
            (None, None) => Vec::new(),
        };
        if !has(&headers, "user-agent") {
            headers.push(("user-agent".into(), http::USER_AGENT.into()));
        }
        let hs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let shown = format!(
            "{} {url}",
            cfg.method.as_deref().unwrap_or("POST").to_ascii_uppercase()
        );
        let resp = http::send(method, &url, &hs, &body)?;
        let ok = if cfg.expected_status.is_empty() {
            (200..300).contains(&resp.status)
        } else {
            cfg.expected_status.contains(&resp.status)
        };
        if !ok {
            let failure = resp
                .classify()
                .err()
                .unwrap_or_else(|| Failure::permanent(format!("HTTP {}", resp.status)));
            return Err(match failure {
                Failure::Retryable(m) => Failure::Retryable(format!("{shown}: {m}")),
                Failure::Permanent(m) => Failure::Permanent(format!("{shown}: {m}")),
            });
        }
        wasmon_sdk::log::info(format!("{shown}: HTTP {}", resp.status));
        Ok(RollbackOutcome {
            message: format!("{shown}: HTTP {}", resp.status),
            current_version: None,
        })
    }
}

wasmon_sdk::export_rollback_action!(HttpAction);
