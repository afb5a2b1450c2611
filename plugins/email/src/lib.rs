//! A receiver that sends email over SMTP, like Alertmanager's
//! `email_config`, through `wasi:sockets` TCP: the host lets the plugin
//! connect only to the instance's `allow_hosts` (list the smarthost there,
//! as `host:port`).
//!
//! Config (`to`, `from` and `smarthost` required; strings marked (t) are
//! templates, see [`wasmon_sdk::template`]):
//!
//! ```toml
//! config = { to = ["ops@example.com", "oncall@example.com"],  # or "a@x, b@y"
//!            from = "wasmon <wasmon@example.com>",
//!            smarthost = "smtp.example.com:587",
//!            hello = "localhost",              # EHLO name, default "localhost"
//!            auth_username = "wasmon", auth_password = "${SMTP_PASSWORD}",
//!            auth_identity = "",               # AUTH PLAIN authorization identity
//!            require_tls = true,               # default true: STARTTLS or fail
//!            tls_config = { ca = "-----BEGIN CERTIFICATE-----...",  # PEM roots instead of the Mozilla ones
//!                           server_name = "smtp.example.com" },   # default: the smarthost's host
//!            subject = "{{ .Subject }}",       # (t) default: "[FIRING:2] HighErrorRate (checkout)"
//!            text = "...",                     # (t) the body, default DEFAULT_TEXT ("" for none)
//!            html = '{{ template "email.default.html" . }}',  # (t) an HTML body (Alertmanager's default),
//!                                              # rendered as Alertmanager renders HTML; no default
//!            headers = { "Reply-To" = "ops@example.com" } }  # (t) extra headers, may override From/To/Subject
//! ```
//!
//! The dialogue: greeting, EHLO (HELO if refused), AUTH PLAIN or LOGIN
//! when `auth_username` is set (whichever the server offers, PLAIN first),
//! MAIL FROM, one RCPT TO per recipient, DATA with an RFC 5322 message
//! (From, To, Subject, Date, Message-ID, the extra headers, MIME text/plain
//! body), QUIT. A 4xx reply, an I/O error or a dropped connection is
//! retryable; a 5xx reply is permanent; both quote the server.
//!
//! TLS follows Alertmanager: port 465 is SMTPS (TLS from the first byte);
//! otherwise, with `require_tls` (the default) the plugin sends STARTTLS
//! after EHLO and fails permanently if the server does not offer it, then
//! says EHLO again under TLS; with `require_tls = false` it speaks plain
//! SMTP (credentials included: only for a relay on a trusted network).
//! The certificate is verified against the Mozilla roots, or only against
//! `tls_config.ca` when given, for `tls_config.server_name` or the
//! smarthost's host (an IP address is checked against the certificate's IP
//! names). TLS 1.2 and 1.3 by rustls with the RustCrypto provider; the
//! host's clock dates the certificate check.

mod smtp;
mod tls;

use std::collections::BTreeMap;

use serde::Deserialize;
use wasmon_sdk::mail::{self, Message};
use wasmon_sdk::receiver::{Failure, Guest, Notification};
use wasmon_sdk::template::Set;

/// The default subject: Alertmanager's `__subject`.
pub const DEFAULT_SUBJECT: &str = "{{ .Subject }}";

/// The default body: a summary line, a link, then every alert with its
/// labels and annotations.
pub const DEFAULT_TEXT: &str = "\
{{ len .Alerts.Firing }} firing, {{ len .Alerts.Resolved }} resolved: {{ .GroupLabels }}
{{ .ExternalURL }}
{{ range .Alerts }}
[{{ .Status | toUpper }}] {{ .Labels.alertname }}
Labels:
{{ range .Labels }}  - {{ .Name }} = {{ .Value }}
{{ end }}Annotations:
{{ range .Annotations }}  - {{ .Name }} = {{ .Value }}
{{ end }}Starts at: {{ .StartsAt.Format \"2006-01-02T15:04:05.999999999Z07:00\" }}
{{- if eq .Status \"resolved\" }}
Ends at: {{ .EndsAt.Format \"2006-01-02T15:04:05.999999999Z07:00\" }}{{ end }}
Source: {{ .GeneratorURL }}
{{ end }}";

#[derive(Deserialize)]
#[serde(untagged)]
enum Recipients {
    One(String),
    Many(Vec<String>),
}

impl Recipients {
    /// The recipients as written (mailboxes, maybe with display names).
    fn list(&self) -> Vec<String> {
        let split = |s: &str| -> Vec<String> {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        match self {
            Recipients::One(s) => split(s),
            Recipients::Many(v) => v.iter().flat_map(|s| split(s)).collect(),
        }
    }
}

fn default_hello() -> String {
    "localhost".into()
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    to: Recipients,
    from: String,
    smarthost: String,
    #[serde(default = "default_hello")]
    hello: String,
    #[serde(default)]
    auth_username: String,
    #[serde(default)]
    auth_password: String,
    #[serde(default)]
    auth_identity: String,
    #[serde(default = "default_true")]
    require_tls: bool,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    tls_config: TlsConfig,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TlsConfig {
    /// PEM certificates to trust instead of the Mozilla roots.
    #[serde(default)]
    ca: Option<String>,
    /// The name to verify the certificate for (default: the smarthost's host).
    #[serde(default)]
    server_name: Option<String>,
}

fn render(key: &str, text: &str, n: &Notification, set: &Set) -> Result<String, Failure> {
    set.parse(text)
        .and_then(|t| t.render(n))
        .map_err(|e| Failure::permanent(format!("email: template {key:?}: {e}")))
}

/// `host:port` split; `[v6]:port` accepted.
fn host_port(smarthost: &str) -> Result<(&str, u16), Failure> {
    let bad = || Failure::permanent(format!("email: smarthost {smarthost:?} must be host:port"));
    let (host, port) = smarthost.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host, port))
}

/// The message for `n`, as sent in DATA.
fn message(
    config: &Config,
    to: &[String],
    n: &Notification,
    now_ms: i64,
    set: &Set,
) -> Result<String, Failure> {
    // Defaults first; config headers replace a default of the same name.
    let mut headers: Vec<(String, String)> = vec![
        ("From".into(), config.from.clone()),
        ("To".into(), to.join(", ")),
        (
            "Subject".into(),
            render(
                "subject",
                config.subject.as_deref().unwrap_or(DEFAULT_SUBJECT),
                n,
                set,
            )?,
        ),
        ("Date".into(), mail::date(now_ms)),
        (
            "Message-ID".into(),
            mail::message_id(now_ms, &n.group_key, &config.from),
        ),
    ];
    for (name, value) in &config.headers {
        let value = render(&format!("headers.{name}"), value, n, set)?;
        match headers
            .iter_mut()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => headers.push((name.clone(), value)),
        }
    }
    let body = render(
        "text",
        config.text.as_deref().unwrap_or(DEFAULT_TEXT),
        n,
        set,
    )?;
    let mut m = Message::new();
    for (k, v) in &headers {
        m = m.header(k, v);
    }
    m = m.text_body(&body);
    if let Some(html) = &config.html {
        let html = set
            .parse(html)
            .and_then(|t| t.render_html(n))
            .map_err(|e| Failure::permanent(format!("email: template \"html\": {e}")))?;
        m = m.html_body(&html);
    }
    Ok(m.to_string())
}

struct Email;

impl Guest for Email {
    fn notify(notification: Notification) -> Result<(), Failure> {
        let config: Config = wasmon_sdk::config()?;
        let to = config.to.list();
        if to.is_empty() {
            return Err(Failure::permanent("email: no recipient in `to`"));
        }
        let (host, port) = host_port(&config.smarthost)?;
        let set = Set::configured()?;
        let text = message(&config, &to, &notification, wasmon_sdk::now_ms(), &set)?;
        let envelope_to: Vec<String> = to.iter().map(|t| mail::address(t).to_string()).collect();

        let tls_name = config.tls_config.server_name.as_deref().unwrap_or(host);
        let mut client = if port == 465 {
            let tls = tls::config(config.tls_config.ca.as_deref())?;
            smtp::Client::connect(host, port, Some((tls, tls_name)))?
        } else {
            smtp::Client::connect(host, port, None)?
        };
        client.hello(&config.hello)?;
        if config.require_tls && !client.is_tls() {
            if client.extension("STARTTLS").is_none() {
                return Err(Failure::permanent(format!(
                    "email: require_tls is set but {} does not offer STARTTLS \
                     (set require_tls = false to send in clear text)",
                    config.smarthost
                )));
            }
            let tls = tls::config(config.tls_config.ca.as_deref())?;
            client.starttls(tls, tls_name, &config.hello)?;
        }
        if !config.auth_username.is_empty() {
            client.auth(
                &config.auth_identity,
                &config.auth_username,
                &config.auth_password,
            )?;
        }
        client.send(mail::address(&config.from), &envelope_to, &text)?;
        client.quit();
        Ok(())
    }
}

wasmon_sdk::export_receiver!(Email);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_and_smarthost() {
        let r: Recipients = serde_json::from_str(r#""a@x, B <b@y>""#).unwrap();
        assert_eq!(r.list(), ["a@x", "B <b@y>"]);
        let r: Recipients = serde_json::from_str(r#"["a@x", "c@z"]"#).unwrap();
        assert_eq!(r.list(), ["a@x", "c@z"]);
        assert_eq!(host_port("smtp:25").unwrap(), ("smtp", 25));
        assert_eq!(host_port("[::1]:25").unwrap(), ("[::1]", 25));
        assert!(host_port("smtp").is_err());
        assert!(host_port(":25").is_err());
    }
}
