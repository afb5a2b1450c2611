//! Notification texts beside a real Alertmanager: Debian's
//! `prometheus-alertmanager` 0.25 and wasmon, with the same route, the
//! same user template file (`templates`) and Slack and PagerDuty receivers
//! pointing at one local HTTP server, get the same alerts; the texts they
//! send (Slack username, title, title link, text, fallback, color;
//! PagerDuty summary, client, client URL, details) are compared byte for
//! byte. wasmon's config is the same alertmanager.yml (its URLs and sender
//! aside) through `config::import`, which gives a receiver without texts
//! Alertmanager's default definitions (`{{ template "slack.default.title" . }}`).
//!
//! Known differences, not exercised here: a label set printed whole
//! (`{{ .CommonLabels }}`) reads `a=1, b=2` in wasmon, `map[a:1 b:2]` in
//! Alertmanager; `range` over a label set gives pairs (`.Name`, `.Value`)
//! in wasmon, values in Alertmanager; `tz` knows only UTC in a plugin;
//! HTML escaping is html/template's for a page's text everywhere (in a URL
//! attribute Go also percent-encodes what a URL may not hold: a value with
//! spaces or quotes in an `href` differs); the email's MIME layout
//! (boundary, line folding, Date, Message-ID) is not compared; Alertmanager
//! sends Slack's empty `text` and `footer` as `""`, wasmon's plugin leaves
//! them out.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fixtures;
use crate::fixtures::smtp::Smtp;
use crate::fixtures::upstream::{prometheus_installed, Alertmanager};

/// The user's template file, used by both: Alertmanager's data (methods
/// with arguments, Go times) and functions, over its default definitions.
const USER_TMPL: &str = r#"{{ define "my.title" }}{{ .CommonLabels.service | toUpper }}: {{ template "__subject" . }}{{ end }}
{{ define "my.text" }}{{ range .Alerts }}{{ .Labels.SortedPairs.Values | join "," }} since {{ .StartsAt.Format "2006-01-02 15:04 MST" }} ({{ .StartsAt }}) {{ reReplaceAll "(.*)Rate" "$1" .Labels.alertname }}{{ if match "^a" .Labels.pod }} pod-a{{ end }} {{ title .Annotations.summary }} {{ (.Labels.Remove (stringSlice "pod" "instance")).Names }} {{ .Annotations.summary | safeHtml }}
{{ end }}{{ (.CommonLabels.Remove .GroupLabels.Names).Values | join "+" }} {{ len .Alerts.Firing }}/{{ len .Alerts.Resolved }} {{ .Receiver }}{{ end }}
"#;

const EXTERNAL_URL: &str = "http://am.example:9093";

/// Slack receivers: Alertmanager's defaults, and the user's templates.
/// PagerDuty: defaults.
const RECEIVERS: [&str; 3] = ["slack-default", "slack-custom", "pagerduty"];

/// The route both sides have: every receiver gets every group.
fn route() -> Value {
    let routes: Vec<Value> = RECEIVERS
        .iter()
        .chain(&["email"])
        .map(|r| json!({"receiver": r, "continue": true}))
        .collect();
    json!({
        "receiver": "blackhole",
        "group_by": ["alertname"],
        "group_wait": "1s",
        // An alert older than group_wait is flushed at once, alone; the
        // group with both comes one group_interval later.
        "group_interval": "1s",
        "routes": routes,
    })
}

/// The alertmanager.yml of one side (`am` or `wasmon`): its receivers post
/// under `/{side}/` and mail from `{side}@example.com`.
fn am_config(hook: &str, tmpl: &str, smtp: &str, side: &str) -> String {
    json!({
        "templates": [tmpl],
        "route": route(),
        "receivers": [
            {"name": "blackhole"},
            {"name": "email", "email_configs": [{
                "to": "ops@example.com",
                "from": format!("{side}@example.com"),
                "smarthost": smtp,
                "require_tls": false,
            }]},
            {"name": "slack-default", "slack_configs": [{"api_url": format!("{hook}/{side}/slack-default")}]},
            {"name": "slack-custom", "slack_configs": [{
                "api_url": format!("{hook}/{side}/slack-custom"),
                "title": "{{ template \"my.title\" . }}",
                "text": "{{ template \"my.text\" . }}",
            }]},
            {"name": "pagerduty", "pagerduty_configs": [{
                "routing_key": "k",
                "url": format!("{hook}/{side}/pagerduty"),
            }]},
        ],
    })
    .to_string()
}

/// wasmon's config: the yml imported, plus where it listens and the
/// external URL Alertmanager is given by flag.
fn wasmon_config(dir: &std::path::Path, hook: &str, tmpl: &str, smtp: &str) -> String {
    let yml = dir.join("alertmanager.yml");
    std::fs::write(&yml, am_config(hook, tmpl, smtp, "wasmon")).unwrap();
    let imported = wasmon::config::import::import(&wasmon::config::import::Sources {
        alertmanager: Some(yml),
        out_dir: Some(dir.to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    assert!(imported.findings.is_empty(), "{:?}", imported.findings);
    let mut config: toml::Table = toml::from_str(&imported.toml).unwrap();
    let mut section = |name: &str, key: &str, value: &str| {
        let t = config
            .entry(name)
            .or_insert_with(|| toml::Table::new().into());
        t.as_table_mut()
            .unwrap()
            .insert(key.into(), value.to_string().into());
    };
    section("global", "external_url", EXTERNAL_URL);
    section("web", "listen_address", "{{LISTEN}}");
    toml::to_string(&config).unwrap()
}

/// The texts a Slack payload carries; an absent one reads "" (Alertmanager
/// 0.25 sends an empty `text` and `footer`, wasmon's plugin leaves empty
/// strings out).
fn slack_texts(v: &Value) -> Value {
    let a = &v["attachments"][0];
    let text = |v: &Value| json!(v.as_str().unwrap_or(""));
    json!({
        "username": text(&v["username"]),
        "title": text(&a["title"]),
        "title_link": text(&a["title_link"]),
        "text": text(&a["text"]),
        "pretext": text(&a["pretext"]),
        "fallback": text(&a["fallback"]),
        "footer": text(&a["footer"]),
        "color": text(&a["color"]),
    })
}

/// The texts a PagerDuty Events v2 event carries.
fn pagerduty_texts(v: &Value) -> Value {
    json!({
        "summary": v["payload"]["summary"],
        "client": v["client"],
        "client_url": v["client_url"],
        "custom_details": v["payload"]["custom_details"],
        "event_action": v["event_action"],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_user_templates_render_as_alertmanager() {
    if !prometheus_installed("templates_am") {
        return;
    }
    let _heavy = fixtures::heavy();
    let hook_server = fixtures::Receiver::start().await;
    let hook = format!("http://{}", hook_server.addr);
    let smtp = Smtp::start("PLAIN LOGIN").await;
    let smtp_addr = smtp.addr.to_string();
    let dir = fixtures::agent_dir_with(&["slack", "pagerduty", "webhook", "email"]);
    let tmpl = dir.path().join("my.tmpl");
    std::fs::write(&tmpl, USER_TMPL).unwrap();
    let am = Alertmanager::start_with_args(
        &am_config(&hook, &tmpl.display().to_string(), &smtp_addr, "am"),
        &[&format!("--web.external-url={EXTERNAL_URL}")],
    )
    .await;
    let config = wasmon_config(dir.path(), &hook, &tmpl.display().to_string(), &smtp_addr);
    let agent = fixtures::AgentProcess::start(dir, &config).await;

    let alert = |pod: &str| {
        json!({
            "labels": {"alertname": "HighErrorRate", "service": "checkout", "pod": pod, "instance": format!("{pod}:9100")},
            "annotations": {"summary": format!("error rate high on {pod} <5%>")},
            "startsAt": "2026-11-25T08:00:00.5Z",
            "endsAt": (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339(),
            "generatorURL": "http://prom:9090/graph?g0.expr=rate%28x%5B5m%5D%29+%3E+1&g0.tab=1",
        })
    };
    let client = reqwest::Client::new();
    for url in [am.url("/api/v2/alerts"), agent.url("/api/v2/alerts")] {
        let r = client
            .post(&url)
            .json(&json!([alert("a"), alert("b")]))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {url}: {}", r.status());
    }

    // The notification of the group with both alerts.
    let body = |side: &str, receiver: &str| -> Option<Value> {
        let path = format!("/{side}/{receiver}");
        hook_server
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .find(|v| {
                let s = v.to_string();
                s.contains("FIRING:2") || s.contains(r#""num_firing":"2""#)
            })
    };
    let mail = |from: &str| -> Option<String> {
        smtp.sessions()
            .into_iter()
            .flat_map(|s| s.data)
            .find(|d| d.contains(&format!("From: {from}")) && d.contains("FIRING:2"))
    };
    let start = Instant::now();
    while RECEIVERS
        .iter()
        .any(|r| body("am", r).is_none() || body("wasmon", r).is_none())
        || mail("am@example.com").is_none()
        || mail("wasmon@example.com").is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not every notification came: {:?}\nagent:\n{}\nalertmanager:\n{}",
            hook_server
                .requests()
                .iter()
                .map(|r| r.path.clone())
                .collect::<Vec<_>>(),
            agent.logs(),
            am.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    for r in ["slack-default", "slack-custom"] {
        let (want, got) = (body("am", r).unwrap(), body("wasmon", r).unwrap());
        assert_eq!(slack_texts(&got), slack_texts(&want), "{r}");
    }
    let custom = slack_texts(&body("wasmon", "slack-custom").unwrap());
    // The user's file did render (not an empty text on both sides).
    assert!(
        custom["text"]
            .as_str()
            .unwrap()
            .starts_with("HighErrorRate,a:9100,a,checkout since 2026-11-25 08:00 UTC"),
        "{custom}"
    );
    let (want, got) = (
        body("am", "pagerduty").unwrap(),
        body("wasmon", "pagerduty").unwrap(),
    );
    assert_eq!(pagerduty_texts(&got), pagerduty_texts(&want));

    let (want, got) = (
        mail("am@example.com").unwrap(),
        mail("wasmon@example.com").unwrap(),
    );
    assert_eq!(
        header(&got, "Subject"),
        header(&want, "Subject"),
        "{:?}\n{:?}",
        got.split("\r\n\r\n").next(),
        want.split("\r\n\r\n").next()
    );
    assert_eq!(
        header(&got, "Subject"),
        "[FIRING:2] HighErrorRate (checkout)"
    );
    let (want_html, got_html) = (html_part(&want), html_part(&got));
    assert!(
        want_html.contains("error rate high on a &lt;5%&gt;"),
        "{want_html}"
    );
    if got_html != want_html {
        let at = got_html
            .bytes()
            .zip(want_html.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got_html.len().min(want_html.len()));
        let ctx = |s: &str| {
            s.get(at.saturating_sub(80)..(at + 80).min(s.len()))
                .unwrap_or("")
                .to_string()
        };
        panic!(
            "HTML bodies differ at byte {at}:\nwasmon: {:?}\nAlertmanager: {:?}",
            ctx(&got_html),
            ctx(&want_html)
        );
    }
}

/// A header of a message (unfolded).
fn header(message: &str, name: &str) -> String {
    let head = message.split("\r\n\r\n").next().unwrap_or("");
    let unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ");
    unfolded
        .split("\r\n")
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {message}"))
        .to_string()
}

/// The text/html part of a multipart message, quoted-printable decoded,
/// with LF line ends and no trailing white space.
fn html_part(message: &str) -> String {
    let start = message
        .find("Content-Type: text/html")
        .unwrap_or_else(|| panic!("no HTML part: {message}"));
    let part = &message[start..];
    let body_at = part.find("\r\n\r\n").expect("part headers end") + 4;
    let body = &part[body_at..];
    let end = body.find("\r\n--").unwrap_or(body.len());
    let qp = body[..end].replace("=\r\n", "");
    let bytes = qp.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
            if let Some(v) = qp
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out)
        .replace("\r\n", "\n")
        .trim_end()
        .to_string()
}
