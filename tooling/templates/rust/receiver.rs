//! {{name}}: a wasmon receiver (world `receiver` of wit/plugin.wit) that
//! POSTs every notification, as the Alertmanager webhook v4 JSON, to
//! `config.url`. Build: `wasmon plugin build`; check: `wasmon plugin inspect
//! {{name}}.wasm`. In the agent config, give the instance
//! `config = { url = "https://hooks.example.com/alerts" }` and put the URL's
//! host in its `allow_hosts`.

use serde::Deserialize;
use wasmon_sdk::receiver::{Failure, Guest, Notification};
use wasmon_sdk::{alertmanager, http};

/// The instance's `config` table; a missing or misspelled key is a
/// permanent failure that names it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
}

struct Plugin;

impl Guest for Plugin {
    /// Called once per aggregation group flush. No answer, a 429 or a 5xx
    /// is retryable (the agent backs off and retries); any other non-2xx is
    /// permanent.
    fn notify(notification: Notification) -> Result<(), Failure> {
        let config: Config = wasmon_sdk::config()?;
        let body = alertmanager::webhook_v4(&notification);
        http::post_json(&config.url, &body, &[])?.classify()
    }
}

wasmon_sdk::export_receiver!(Plugin);
