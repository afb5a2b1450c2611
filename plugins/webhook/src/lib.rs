//! A receiver that POSTs the Alertmanager webhook v4 JSON to a URL, like
//! Alertmanager's `webhook_config`, so anything built for Alertmanager
//! webhooks works unchanged behind wasmon.
//!
//! Config: `{"url": "https://...", "max_alerts": 0, "headers": {"k": "v"}}`.
//! `url` is required; `max_alerts` > 0 keeps that many alerts and counts the
//! rest in `truncatedAlerts`; `headers` are added to the request (put tokens
//! there, from `${ENV}` in the agent config). The URL's host must be on the
//! instance's allow-list.

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmon_sdk::receiver::{Failure, Guest, Notification};
use wasmon_sdk::{alertmanager, http};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    max_alerts: usize,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

struct Webhook;

impl Guest for Webhook {
    fn notify(mut notification: Notification) -> Result<(), Failure> {
        let config: Config = wasmon_sdk::config()?;
        alertmanager::truncate_alerts(&mut notification, config.max_alerts);
        let headers: Vec<(&str, &str)> = config
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let payload = alertmanager::webhook_v4(&notification);
        http::post_json(&config.url, &payload, &headers)?.classify()
    }
}

wasmon_sdk::export_receiver!(Webhook);
