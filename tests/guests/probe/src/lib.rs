//! Test guest: a health check that answers what its config asks, for the
//! host's check and `wasmon plugin call` tests.
//!
//! Config: `{"mode": "...", "url": "...", "value": 1.5}`, where `mode` is
//! - `up` / `down`: passes / fails, with `value` and one extra sample
//!   `probe_value{mode}`;
//! - `http`: POSTs the request as JSON to `url` and passes on a 2xx
//!   answer (a denied host is a retryable failure naming
//!   `HTTP-request-denied`);
//! - `loop`: spins until the host's deadline stops it;
//! - `fail-permanent`: returns that failure.

use std::hint::black_box;

use serde::Deserialize;
use wasmon_sdk::health_check::{CheckRequest, CheckResult, Failure, Guest};
use wasmon_sdk::http;
use wasmon_sdk::types::{Label, Sample};

#[derive(Deserialize)]
struct Config {
    mode: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    value: Option<f64>,
}

struct Probe;

impl Guest for Probe {
    fn check(request: CheckRequest) -> Result<CheckResult, Failure> {
        let config: Config = wasmon_sdk::config()?;
        wasmon_sdk::log::info(format!(
            "probe: {} on {:?} (mode {})",
            request.check, request.target, config.mode
        ));
        let verdict = |ok: bool, message: String| CheckResult {
            ok,
            message,
            value: config.value,
            samples: vec![Sample {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "probe_value".into(),
                    },
                    Label {
                        name: "mode".into(),
                        value: config.mode.clone(),
                    },
                ],
                value: config.value.unwrap_or(0.0),
                timestamp_ms: 0,
            }],
        };
        match config.mode.as_str() {
            "up" => Ok(verdict(true, format!("{} is up", request.target))),
            "down" => Ok(verdict(false, format!("{} is down", request.target))),
            "http" => {
                let body = serde_json::json!({
                    "check": request.check,
                    "target": request.target,
                    "timeout_ms": request.timeout_ms,
                });
                let response = http::post_json(&config.url, &body, &[])?;
                let ok = (200..300).contains(&response.status);
                Ok(verdict(ok, format!("HTTP {}", response.status)))
            }
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "fail-permanent" => Err(Failure::permanent("probe: asked to fail (permanent)")),
            other => Err(Failure::permanent(format!("probe: unknown mode {other:?}"))),
        }
    }
}

wasmon_sdk::export_health_check!(Probe);
