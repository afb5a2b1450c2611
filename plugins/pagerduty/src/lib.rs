//! A receiver that sends PagerDuty Events API v2 events, like
//! Alertmanager's `pagerduty_config` with a `routing_key`: `trigger` while
//! the group fires, `resolve` once it is resolved, both with the same
//! `dedup_key` (the SHA-256 hex of the group key, as Alertmanager computes
//! it), so PagerDuty resolves the incident the trigger opened.
//!
//! Config (`routing_key` required; strings marked (t) are templates, see
//! [`wasmon_sdk::template`]):
//!
//! ```toml
//! config = { routing_key = "${PD_ROUTING_KEY}",
//!            url = "https://events.pagerduty.com/v2/enqueue",  # default
//!            summary = "{{ .Subject }}",  # (t) default; truncated to 1024 characters ("description" also accepted)
//!            severity = "error",          # (t) critical | error | warning | info; default "error"
//!            source = "",                 # (t) default: the client
//!            client = "wasmon",           # (t) default "wasmon"
//!            client_url = "",             # (t) default: <externalURL>/#/alerts?receiver=<receiver>
//!            class = "", component = "", group = "",   # (t) left out when empty
//!            details = { team = "{{ .CommonLabels.team }}" } }   # (t) added to/overriding the defaults
//! ```
//!
//! `payload.custom_details` defaults to Alertmanager's: `firing` and
//! `resolved` (the alerts as text: labels, annotations, source),
//! `num_firing` and `num_resolved` (as strings). The answer 202 (any 2xx)
//! is success; 429 and 5xx are retried; other statuses are permanent
//! failures quoting PagerDuty's answer.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use wasmon_sdk::receiver::{AlertStatus, Failure, Guest, Notification};
use wasmon_sdk::template::{self, Set};
use wasmon_sdk::{alertmanager, http, log};

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// The longest summary PagerDuty accepts, in characters.
pub const MAX_SUMMARY: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    routing_key: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default, alias = "description")]
    summary: Option<String>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    client: Option<String>,
    #[serde(default)]
    client_url: Option<String>,
    #[serde(default)]
    class: Option<String>,
    #[serde(default)]
    component: Option<String>,
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    details: BTreeMap<String, String>,
}

fn render(key: &str, text: Option<&str>, n: &Notification, set: &Set) -> Result<String, Failure> {
    set.parse(text.unwrap_or(""))
        .and_then(|t| t.render(n))
        .map_err(|e| Failure::permanent(format!("pagerduty: template {key:?}: {e}")))
}

/// Cuts `s` to `max` characters, the last being "…", like Alertmanager's
/// `TruncateInRunes`. Returns whether it cut.
fn truncate(s: &str, max: usize) -> (String, bool) {
    if s.chars().count() <= max {
        return (s.to_string(), false);
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    (out, true)
}

/// The Events API v2 message for `n`.
fn event(config: &Config, n: &Notification, set: &Set) -> Result<Value, Failure> {
    let action = match n.status {
        AlertStatus::Firing => "trigger",
        AlertStatus::Resolved => "resolve",
    };
    let client = match &config.client {
        Some(c) => render("client", Some(c), n, set)?,
        None => "wasmon".to_string(),
    };
    let client_url = match &config.client_url {
        Some(c) => render("client_url", Some(c), n, set)?,
        None => alertmanager::alerts_url(n),
    };
    let summary = render(
        "summary",
        Some(config.summary.as_deref().unwrap_or("{{ .Subject }}")),
        n,
        set,
    )?;
    let (summary, cut) = truncate(&summary, MAX_SUMMARY);
    if cut {
        log::warn(format!("summary truncated to {MAX_SUMMARY} characters"));
    }
    let source = match &config.source {
        Some(s) => render("source", Some(s), n, set)?,
        None => client.clone(),
    };
    let severity = render(
        "severity",
        Some(config.severity.as_deref().unwrap_or("error")),
        n,
        set,
    )?;

    let firing = template::firing(n);
    let resolved = template::resolved(n);
    let mut details = Map::new();
    details.insert(
        "firing".into(),
        alertmanager::text_alert_list(&firing).into(),
    );
    details.insert(
        "resolved".into(),
        alertmanager::text_alert_list(&resolved).into(),
    );
    details.insert("num_firing".into(), firing.len().to_string().into());
    details.insert("num_resolved".into(), resolved.len().to_string().into());
    for (k, v) in &config.details {
        details.insert(
            k.clone(),
            render(&format!("details.{k}"), Some(v), n, set)?.into(),
        );
    }

    let mut payload = Map::new();
    payload.insert("summary".into(), summary.into());
    payload.insert("source".into(), source.into());
    payload.insert("severity".into(), severity.into());
    for (key, value) in [
        ("class", &config.class),
        ("component", &config.component),
        ("group", &config.group),
    ] {
        let v = render(key, value.as_deref(), n, set)?;
        if !v.is_empty() {
            payload.insert(key.into(), v.into());
        }
    }
    payload.insert("custom_details".into(), Value::Object(details));

    let mut message = Map::new();
    message.insert("routing_key".into(), config.routing_key.clone().into());
    message.insert("event_action".into(), action.into());
    message.insert(
        "dedup_key".into(),
        alertmanager::group_key_hash(&n.group_key).into(),
    );
    message.insert("payload".into(), Value::Object(payload));
    message.insert("client".into(), client.into());
    message.insert("client_url".into(), client_url.into());
    Ok(Value::Object(message))
}

struct PagerDuty;

impl Guest for PagerDuty {
    fn notify(notification: Notification) -> Result<(), Failure> {
        let config: Config = wasmon_sdk::config()?;
        if config.routing_key.trim().is_empty() {
            return Err(Failure::permanent("pagerduty: routing_key is empty"));
        }
        let set = Set::configured()?;
        let body = event(&config, &notification, &set)?;
        let url = config.url.as_deref().unwrap_or(DEFAULT_URL);
        http::post_json(url, &body, &[])?.classify()
    }
}

wasmon_sdk::export_receiver!(PagerDuty);

#[cfg(test)]
mod tests {
    #[test]
    fn truncation_like_alertmanager() {
        assert_eq!(super::truncate("abc", 3), ("abc".to_string(), false));
        assert_eq!(super::truncate("abcd", 3), ("ab…".to_string(), true));
        assert_eq!(super::truncate("ééé", 2), ("é…".to_string(), true));
    }
}
