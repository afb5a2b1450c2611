//! {{name}}: a wasmon health check (world `health-check` of wit/plugin.wit)
//! that GETs `config.url` and passes on a 2xx. Build: `wasmon plugin build`;
//! check: `wasmon plugin inspect {{name}}.wasm`. In the agent config, give
//! the check `config = { url = "http://app:8080/healthz" }` and put the
//! URL's host in its `allow_hosts`.

use serde::Deserialize;
use wasmon_sdk::health_check::{CheckRequest, CheckResult, Failure, Guest};
use wasmon_sdk::http::{self, Method};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
}

struct Plugin;

impl Guest for Plugin {
    fn check(_request: CheckRequest) -> Result<CheckResult, Failure> {
        let config: Config = wasmon_sdk::config()?;
        // No answer at all is a failed check too: say why.
        let (ok, message, value) = match http::send(Method::Get, &config.url, &[], &[]) {
            Ok(r) => (
                (200..300).contains(&r.status),
                format!("HTTP {}", r.status),
                Some(f64::from(r.status)),
            ),
            Err(failure) => (false, failure.message().to_string(), None),
        };
        Ok(CheckResult {
            ok,
            message,
            value,
            samples: Vec::new(),
        })
    }
}

wasmon_sdk::export_health_check!(Plugin);
