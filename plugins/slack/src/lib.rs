//! A receiver that posts to a Slack incoming webhook, with the message
//! Alertmanager's `slack_config` sends by default: one attachment whose
//! color is `danger` while the group fires and `good` once it is resolved.
//!
//! Config (every key but `url` optional; all strings but `url` are
//! templates, see [`wasmon_sdk::template`] for the syntax):
//!
//! ```toml
//! config = { url = "https://hooks.slack.com/services/${SLACK_HOOK}",
//!            channel = "#alerts",           # default: the webhook's channel
//!            username = "wasmon",           # default "wasmon"
//!            icon_emoji = ":rotating_light:", icon_url = "",
//!            title = "{{ .Subject }}",      # e.g. "[FIRING:2] HighErrorRate (checkout)"
//!            title_link = "",               # default: <externalURL>/#/alerts?receiver=<receiver>
//!            pretext = "", footer = "",
//!            text = "...",                  # default: one line per alert (DEFAULT_TEXT)
//!            fallback = "",                 # default: "<title> | <title_link>"
//!            color = "",                    # default: "danger" when firing, "good" when resolved
//!            link_names = false }
//! ```
//!
//! Empty strings are left out of the payload, like Alertmanager's
//! `omitempty`. Whether resolved notifications are sent is the host's
//! `send_resolved` rule, not the plugin's. A 2xx answer is success, except
//! a JSON body with `"ok": false` (Slack's Web API style), which is a
//! permanent failure quoting Slack's `error`; 429 and 5xx are retried.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use wasmon_sdk::receiver::{AlertStatus, Failure, Guest, Notification};
use wasmon_sdk::template::Set;
use wasmon_sdk::{alertmanager, http};

/// The default title: Alertmanager's `__subject`.
pub const DEFAULT_TITLE: &str = "{{ .Subject }}";

/// The default text: one line per alert, with its summary when it has one.
pub const DEFAULT_TEXT: &str = "{{ range .Alerts }}*{{ .Status | toUpper }}* {{ .Labels.alertname }}{{ if .Annotations.summary }}: {{ .Annotations.summary }}{{ end }}\n{{ end }}";

/// The default username.
pub const DEFAULT_USERNAME: &str = "wasmon";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    url: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    icon_emoji: Option<String>,
    #[serde(default)]
    icon_url: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    title_link: Option<String>,
    #[serde(default)]
    pretext: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    fallback: Option<String>,
    #[serde(default)]
    footer: Option<String>,
    #[serde(default)]
    color: Option<String>,
    #[serde(default)]
    link_names: bool,
}

/// Renders the template `text` (the config key `key`), or `default` when
/// the key is absent.
fn render(
    key: &str,
    text: &Option<String>,
    default: &str,
    n: &Notification,
    set: &Set,
) -> Result<String, Failure> {
    let text = text.as_deref().unwrap_or(default);
    set.parse(text)
        .and_then(|t| t.render(n))
        .map_err(|e| Failure::permanent(format!("slack: template {key:?}: {e}")))
}

/// The Slack payload for `n` with `config`.
fn payload(config: &Config, n: &Notification, set: &Set) -> Result<Value, Failure> {
    let title = render("title", &config.title, DEFAULT_TITLE, n, set)?;
    let title_link = match &config.title_link {
        Some(_) => render("title_link", &config.title_link, "", n, set)?,
        None => alertmanager::alerts_url(n),
    };
    let default_fallback = format!("{title} | {title_link}");
    let fallback = match &config.fallback {
        Some(_) => render("fallback", &config.fallback, "", n, set)?,
        None => default_fallback,
    };
    let default_color = match n.status {
        AlertStatus::Firing => "danger",
        AlertStatus::Resolved => "good",
    };
    let text = render("text", &config.text, DEFAULT_TEXT, n, set)?;

    let mut attachment = Map::new();
    put(&mut attachment, "title", title);
    put(&mut attachment, "title_link", title_link);
    put(
        &mut attachment,
        "pretext",
        render("pretext", &config.pretext, "", n, set)?,
    );
    put(&mut attachment, "text", text.trim_end().to_string());
    put(&mut attachment, "fallback", fallback);
    put(
        &mut attachment,
        "footer",
        render("footer", &config.footer, "", n, set)?,
    );
    put(
        &mut attachment,
        "color",
        render("color", &config.color, default_color, n, set)?,
    );
    attachment.insert("mrkdwn_in".into(), json!(["fallback", "pretext", "text"]));

    let mut message = Map::new();
    put(
        &mut message,
        "channel",
        render("channel", &config.channel, "", n, set)?,
    );
    put(
        &mut message,
        "username",
        render("username", &config.username, DEFAULT_USERNAME, n, set)?,
    );
    put(
        &mut message,
        "icon_emoji",
        render("icon_emoji", &config.icon_emoji, "", n, set)?,
    );
    put(
        &mut message,
        "icon_url",
        render("icon_url", &config.icon_url, "", n, set)?,
    );
    if config.link_names {
        message.insert("link_names".into(), Value::Bool(true));
    }
    message.insert(
        "attachments".into(),
        Value::Array(vec![Value::Object(attachment)]),
    );
    Ok(Value::Object(message))
}

/// Sets `k` to `v` unless `v` is empty (Alertmanager's `omitempty`).
fn put(map: &mut Map<String, Value>, k: &str, v: String) {
    if !v.is_empty() {
        map.insert(k.to_string(), Value::String(v));
    }
}

struct Slack;

impl Guest for Slack {
    fn notify(notification: Notification) -> Result<(), Failure> {
        let config: Config = wasmon_sdk::config()?;
        let set = Set::configured()?;
        let body = payload(&config, &notification, &set)?;
        let response = http::post_json(&config.url, &body, &[])?;
        response.classify()?;
        // Slack's Web API answers 200 with {"ok": false, "error": "..."}.
        if let Ok(Value::Object(answer)) = serde_json::from_slice::<Value>(&response.body) {
            if answer.get("ok") == Some(&Value::Bool(false)) {
                let error = answer
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(Failure::permanent(format!("slack: {error}")));
            }
        }
        Ok(())
    }
}

wasmon_sdk::export_receiver!(Slack);
