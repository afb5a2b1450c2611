//! {{name}}: a wasmon rollback action (world `rollback-action` of
//! wit/plugin.wit) that POSTs the rollback request as JSON to `config.url`
//! (a deploy API, a feature-flag service). Build: `wasmon plugin build`;
//! check: `wasmon plugin inspect {{name}}.wasm`. In the agent config, give
//! `[rollouts.rollback]` `config = { url = "https://deploy.example.com/rollback" }`
//! and put the URL's host in its `allow_hosts`.

use serde::{Deserialize, Serialize};
use wasmon_sdk::http;
use wasmon_sdk::rollback_action::{Failure, Guest, RollbackOutcome, RollbackRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
}

/// What the API gets.
#[derive(Serialize)]
struct Body<'a> {
    rollout: &'a str,
    target: &'a str,
    failed_version: &'a str,
    stable_version: &'a str,
    reason: &'a str,
}

struct Plugin;

impl Guest for Plugin {
    /// A retryable failure is retried every rollout interval; a permanent
    /// one ends the attempt.
    fn rollback(r: RollbackRequest) -> Result<RollbackOutcome, Failure> {
        let config: Config = wasmon_sdk::config()?;
        let body = Body {
            rollout: &r.rollout,
            target: &r.target,
            failed_version: &r.failed_version,
            stable_version: &r.stable_version,
            reason: &r.reason,
        };
        let response = http::post_json(&config.url, &body, &[])?;
        response.classify()?;
        Ok(RollbackOutcome {
            message: format!("rolled back: HTTP {}", response.status),
            current_version: Some(r.stable_version).filter(|v| !v.is_empty()),
        })
    }
}

wasmon_sdk::export_rollback_action!(Plugin);
