//! End to end through the real binary: the first-party `slack`,
//! `pagerduty` and `email` receivers, each against a real local server on
//! 127.0.0.1 (the recording HTTP server for Slack and PagerDuty, a small
//! SMTP server written here for email, a Python `ssl` one for STARTTLS),
//! checking the exact payloads, resolved notifications, failure classes,
//! the socket allow-list and certificate verification.

use crate::fixtures;
use crate::fixtures::smtp::Smtp;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// One config with every receiver; `{{HTTP}}` is the recording HTTP
/// server, `{{SMTP}}` the SMTP server offering PLAIN and LOGIN,
/// `{{SMTP_LOGIN}}` one offering only LOGIN, `{{CLOSED}}` a port nobody
/// listens on, `{{TLS_SMTP}}` the STARTTLS server (a dead port in the tests
/// that do not start it).
const CONFIG: &str = r##"
[global]
external_url = "http://wasmon.example:9930"

[web]
listen_address = "{{LISTEN}}"

[plugins]
dir = "plugins"
cache_dir = "cache"

[[receivers]]
name = "slack"
plugin = "slack"
allow_hosts = ["{{HTTP}}"]
config = { url = "http://{{HTTP}}/services/T0/B0/XYZ" }

[[receivers]]
name = "slack-custom"
plugin = "slack"
allow_hosts = ["{{HTTP}}"]
[receivers.config]
url = "http://{{HTTP}}/custom"
channel = "#alerts"
username = "{{ .CommonLabels.service }}-bot"
icon_emoji = ":fire:"
title = "{{ .Status | toUpper }}: {{ .CommonLabels.alertname }} ({{ len .Alerts }})"
title_link = "http://grafana.example/d/{{ .GroupLabels.alertname }}"
text = "{{ range .Alerts }}{{ .Labels.pod }}={{ .Status }} {{ end }}"
color = '{{ if eq .Status "firing" }}#ff0000{{ else }}#00ff00{{ end }}'
link_names = true

[[receivers]]
name = "pagerduty"
plugin = "pagerduty"
allow_hosts = ["{{HTTP}}"]
config = { url = "http://{{HTTP}}/v2/enqueue", routing_key = "R0UT1NGKEY" }

[[receivers]]
name = "pagerduty-custom"
plugin = "pagerduty"
allow_hosts = ["{{HTTP}}"]
[receivers.config]
url = "http://{{HTTP}}/v2/custom"
routing_key = "OTHERKEY"
summary = "{{ .CommonAnnotations.description }}"
severity = "critical"
source = "{{ .CommonLabels.service }}"
client = "wasmon-test"
client_url = "http://ui.example/"
component = "{{ .CommonLabels.service }}"
details = { team = "{{ .GroupLabels.alertname }}-team" }

[[receivers]]
name = "email"
plugin = "email"
allow_hosts = ["{{SMTP}}"]
[receivers.config]
smarthost = "{{SMTP}}"
from = "wasmon <wasmon@example.com>"
to = ["ops@example.com", "On Call <oncall@example.com>"]
hello = "wasmon.test"
auth_username = "alice"
auth_password = "s3cret"
require_tls = false
headers = { "X-Group" = "{{ .GroupLabels.alertname }}" }

[[receivers]]
name = "email-login"
plugin = "email"
allow_hosts = ["{{SMTP_LOGIN}}"]
[receivers.config]
smarthost = "{{SMTP_LOGIN}}"
from = "wasmon@example.com"
to = "ops@example.com"
auth_username = "alice"
auth_password = "s3cret"
require_tls = false
subject = "{{ .Status }}: {{ .CommonLabels.alertname }}"
text = "{{ range .Alerts }}{{ .Labels.pod }}\n.{{ .Fingerprint }}\n{{ end }}"

[[receivers]]
name = "email-busy"
plugin = "email"
allow_hosts = ["{{SMTP}}"]
config = { smarthost = "{{SMTP}}", from = "wasmon@example.com", to = "busy@example.com", require_tls = false }

[[receivers]]
name = "email-nobody"
plugin = "email"
allow_hosts = ["{{SMTP}}"]
config = { smarthost = "{{SMTP}}", from = "wasmon@example.com", to = "ops@example.com, nobody@example.com", require_tls = false }

[[receivers]]
name = "email-badauth"
plugin = "email"
allow_hosts = ["{{SMTP}}"]
config = { smarthost = "{{SMTP}}", from = "wasmon@example.com", to = "ops@example.com", auth_username = "alice", auth_password = "wrong", require_tls = false }

[[receivers]]
name = "email-denied"
plugin = "email"
allow_hosts = ["{{CLOSED}}"]
config = { smarthost = "{{SMTP}}", from = "wasmon@example.com", to = "ops@example.com", require_tls = false }

[[receivers]]
name = "email-tls"
plugin = "email"
allow_hosts = ["{{SMTP}}"]
config = { smarthost = "{{SMTP}}", from = "wasmon@example.com", to = "ops@example.com" }

[[receivers]]
name = "email-starttls"
plugin = "email"
allow_hosts = ["{{TLS_SMTP}}"]
[receivers.config]
smarthost = "{{TLS_SMTP}}"
from = "wasmon@example.com"
to = "ops@example.com"
auth_username = "alice"
auth_password = "s3cret"
tls_config = { ca = """{{CA}}""" }

[[receivers]]
name = "email-badca"
plugin = "email"
allow_hosts = ["{{TLS_SMTP}}"]
[receivers.config]
smarthost = "{{TLS_SMTP}}"
from = "wasmon@example.com"
to = "ops@example.com"
tls_config = { ca = """{{OTHER_CA}}""" }
"##;

/// A test CA (EC P-256, valid until 2125), the certificate it signed for
/// 127.0.0.1 and localhost with its key, and a CA that signed nothing.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBmTCCAT+gAwIBAgIUNGA/J66/TfyyHlD7ChzTgYyYDqkwCgYIKoZIzj0EAwIw\nGTEXMBUGA1UEAwwOd2FzbW9uIHRlc3QgQ0EwIBcNMjYxMTI1MDkzMDU1WhgPMjEy\nNjExMDEwOTMwNTVaMBkxFzAVBgNVBAMMDndhc21vbiB0ZXN0IENBMFkwEwYHKoZI\nzj0CAQYIKoZIzj0DAQcDQgAE7S4Zf1d8zIEG+Vq5DTIGExNeKxjeicmN2CcAuN7+\nnr2tqovFd973DE4HI3UIYqAzbrYStDHFwvJ/GEY1e6Yyf6NjMGEwHQYDVR0OBBYE\nFDOFj+TbwLktktAGD5ehek1IUTEhMB8GA1UdIwQYMBaAFDOFj+TbwLktktAGD5eh\nek1IUTEhMA8GA1UdEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgEGMAoGCCqGSM49\nBAMCA0gAMEUCIQCtRNT2y1iswRBDK/43nt3IA7iBJYAS9rAzNYBsgHN7zgIgSmFY\nLmN2Rssj6sa/sUTBRx4h7FtQpBrr4pSeP6IBEQg=\n-----END CERTIFICATE-----\n";
const LEAF_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBxDCCAWqgAwIBAgIUQ6h1i0ckVrOqqaM0PTBiqaiKUxswCgYIKoZIzj0EAwIw\nGTEXMBUGA1UEAwwOd2FzbW9uIHRlc3QgQ0EwIBcNMjYxMTI1MDkzMDU1WhgPMjEy\nNjExMDEwOTMwNTVaMBQxEjAQBgNVBAMMCWxvY2FsaG9zdDBZMBMGByqGSM49AgEG\nCCqGSM49AwEHA0IABD4U3rD794fmdvEEzWq2u29FtwwpufBoUuxapMo95msyVL0/\ngj/CKVumwFTWQkSn2b1vpZxHWwurtc61Sg/zH9GjgZIwgY8wDAYDVR0TAQH/BAIw\nADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwGgYDVR0RBBMw\nEYcEfwAAAYIJbG9jYWxob3N0MB0GA1UdDgQWBBRD4fMJiMXS7e6KqkGqiz7iW+i3\n4DAfBgNVHSMEGDAWgBQzhY/k28C5LZLQBg+XoXpNSFExITAKBggqhkjOPQQDAgNI\nADBFAiA5F4o30aKA4FKuMbTzztNARSGMX22FI1JwkRS/1NwC0gIhAKAMVEpl9md1\n1I6EVy0CKUlJ5/sXGKnnFW53fz7rVMj/\n-----END CERTIFICATE-----\n";
const LEAF_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgDwuHJtY7ma6XmmvZ\n/BU/eIur3L0uNbDHXpkKBeYpEOihRANCAAQ+FN6w+/eH5nbxBM1qtrtvRbcMKbnw\naFLsWqTKPeZrMlS9P4I/wilbpsBU1kJEp9m9b6WcR1sLq7XOtUoP8x/R\n-----END PRIVATE KEY-----\n";
const OTHER_CA_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBjTCCATOgAwIBAgIUDAVZ7HLmPAYJPY6NWRBEjBW+VEQwCgYIKoZIzj0EAwIw\nEzERMA8GA1UEAwwIb3RoZXIgQ0EwIBcNMjYxMTI1MDkzMDU1WhgPMjEyNjExMDEw\nOTMwNTVaMBMxETAPBgNVBAMMCG90aGVyIENBMFkwEwYHKoZIzj0CAQYIKoZIzj0D\nAQcDQgAEmhFhRhXudKlot6eXQXdyVqjhW7LuMOKwjAdoT8DxhaCUu0OX6zO7PzYE\nKZTk7L4Zo07jcyNC3OezvetGT7KQhaNjMGEwHQYDVR0OBBYEFKlhdk7P1fJlpFuB\n50aAcKoUcIJWMB8GA1UdIwQYMBaAFKlhdk7P1fJlpFuB50aAcKoUcIJWMA8GA1Ud\nEwEB/wQFMAMBAf8wDgYDVR0PAQH/BAQDAgIEMAoGCCqGSM49BAMCA0gAMEUCIFSA\nGIfnAHEuzUxTivNtQ+LVNlTgFA3ldoKbq33EY6DuAiEA7o58tdCK3Jv4LbMlSf4F\n0xA4Qyu4XEkzlP8CZR+XsgI=\n-----END CERTIFICATE-----\n";

const GROUP_KEY: &str = "{}/{severity=\"critical\"}:{alertname=\"HighErrorRate\"}";
const SOURCE: &str = "http://wasmon.example:9930/graph?g0.expr=rate";

/// An Alertmanager webhook v4 message for two pods of one group, both
/// firing or both resolved.
fn message(resolved: bool) -> Value {
    let alert = |pod: &str| {
        json!({
            "status": if resolved { "resolved" } else { "firing" },
            "labels": {"alertname": "HighErrorRate", "service": "checkout", "pod": pod},
            "annotations": {"summary": format!("error rate high on {pod}")},
            "startsAt": "2026-11-25T08:00:00Z",
            "endsAt": if resolved { "2026-11-25T08:10:00Z" } else { "0001-01-01T00:00:00Z" },
            "generatorURL": SOURCE,
            "fingerprint": format!("fp-{pod}"),
        })
    };
    json!({
        "version": "4",
        "groupKey": GROUP_KEY,
        "truncatedAlerts": 0,
        "status": if resolved { "resolved" } else { "firing" },
        "receiver": "team ops",
        "groupLabels": {"alertname": "HighErrorRate"},
        "commonLabels": {"alertname": "HighErrorRate", "service": "checkout"},
        "commonAnnotations": {},
        "externalURL": "http://wasmon.example:9930",
        "alerts": [alert("a"), alert("b")],
    })
}

const ALERTS_URL: &str = "http://wasmon.example:9930/#/alerts?receiver=team+ops";

fn config(http: &str, smtp: &Smtp, smtp_login: &Smtp, closed: &str, tls_smtp: &str) -> String {
    CONFIG
        .replace("{{CA}}", CA_PEM)
        .replace("{{OTHER_CA}}", OTHER_CA_PEM)
        .replace("{{HTTP}}", http)
        .replace("{{SMTP}}", &smtp.addr.to_string())
        .replace("{{SMTP_LOGIN}}", &smtp_login.addr.to_string())
        .replace("{{CLOSED}}", closed)
        .replace("{{TLS_SMTP}}", tls_smtp)
}

async fn start_agent(config: &str) -> fixtures::AgentProcess {
    let dir = fixtures::agent_dir_with(&["slack", "pagerduty", "email"]);
    fixtures::AgentProcess::start(dir, config).await
}

/// POSTs `body` to the test endpoint of `receiver`; returns the status and
/// the JSON answer.
async fn test_receiver(
    agent: &fixtures::AgentProcess,
    receiver: &str,
    body: &Value,
) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(agent.url(&format!("/api/v1/receivers/{receiver}/test")))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn ok(agent: &fixtures::AgentProcess, receiver: &str, body: &Value) {
    let (status, answer) = test_receiver(agent, receiver, body).await;
    assert_eq!(status, 200, "{receiver}: {answer}\n{}", agent.logs());
}

fn text_alert_list(pods: &[&str]) -> String {
    pods.iter()
        .map(|pod| {
            format!(
                "Labels:\n - alertname = HighErrorRate\n - pod = {pod}\n - service = checkout\n\
                 Annotations:\n - summary = error rate high on {pod}\nSource: {SOURCE}\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_and_pagerduty_payloads() {
    let server = fixtures::Receiver::start().await;
    let smtp = Smtp::start("PLAIN LOGIN").await;
    let smtp_login = Smtp::start("LOGIN").await;
    let http = server.addr.to_string();
    let agent = start_agent(&config(
        &http,
        &smtp,
        &smtp_login,
        "127.0.0.1:1",
        "127.0.0.1:1",
    ))
    .await;

    // Slack, defaults: Alertmanager's title, one line per alert, danger.
    ok(&agent, "slack", &message(false)).await;
    let got = server.requests();
    assert_eq!(got[0].path, "/services/T0/B0/XYZ");
    assert_eq!(got[0].headers["content-type"], "application/json");
    let payload: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(
        payload,
        json!({
            "username": "wasmon",
            "attachments": [{
                "title": "[FIRING:2] HighErrorRate (checkout)",
                "title_link": ALERTS_URL,
                "text": "*FIRING* HighErrorRate: error rate high on a\n*FIRING* HighErrorRate: error rate high on b",
                "fallback": format!("[FIRING:2] HighErrorRate (checkout) | {ALERTS_URL}"),
                "color": "danger",
                "mrkdwn_in": ["fallback", "pretext", "text"],
            }],
        })
    );

    // Resolved: good, RESOLVED title.
    ok(&agent, "slack", &message(true)).await;
    let payload: Value = serde_json::from_slice(&server.requests()[1].body).unwrap();
    let attachment = &payload["attachments"][0];
    assert_eq!(attachment["title"], "[RESOLVED] HighErrorRate (checkout)");
    assert_eq!(attachment["color"], "good");
    assert_eq!(
        attachment["text"],
        "*RESOLVED* HighErrorRate: error rate high on a\n*RESOLVED* HighErrorRate: error rate high on b"
    );

    // Slack, every field templated from the config.
    ok(&agent, "slack-custom", &message(false)).await;
    let got = server.requests();
    assert_eq!(got[2].path, "/custom");
    let payload: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(
        payload,
        json!({
            "channel": "#alerts",
            "username": "checkout-bot",
            "icon_emoji": ":fire:",
            "link_names": true,
            "attachments": [{
                "title": "FIRING: HighErrorRate (2)",
                "title_link": "http://grafana.example/d/HighErrorRate",
                "text": "a=firing b=firing",
                "fallback": "FIRING: HighErrorRate (2) | http://grafana.example/d/HighErrorRate",
                "color": "#ff0000",
                "mrkdwn_in": ["fallback", "pretext", "text"],
            }],
        })
    );
    ok(&agent, "slack-custom", &message(true)).await;
    let payload: Value = serde_json::from_slice(&server.requests()[3].body).unwrap();
    assert_eq!(payload["attachments"][0]["color"], "#00ff00");
    assert_eq!(payload["attachments"][0]["text"], "a=resolved b=resolved");

    // PagerDuty: trigger, then resolve with the same dedup_key; 202 is success.
    *server.status.lock().unwrap() = axum::http::StatusCode::ACCEPTED;
    let dedup_key: String = Sha256::digest(GROUP_KEY.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    ok(&agent, "pagerduty", &message(false)).await;
    let got = server.requests();
    assert_eq!(got[4].path, "/v2/enqueue");
    let trigger: Value = serde_json::from_slice(&got[4].body).unwrap();
    assert_eq!(
        trigger,
        json!({
            "routing_key": "R0UT1NGKEY",
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": "[FIRING:2] HighErrorRate (checkout)",
                "source": "wasmon",
                "severity": "error",
                "custom_details": {
                    "firing": text_alert_list(&["a", "b"]),
                    "resolved": "",
                    "num_firing": "2",
                    "num_resolved": "0",
                },
            },
            "client": "wasmon",
            "client_url": ALERTS_URL,
        })
    );
    ok(&agent, "pagerduty", &message(true)).await;
    let resolve: Value = serde_json::from_slice(&server.requests()[5].body).unwrap();
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(
        resolve["payload"]["summary"],
        "[RESOLVED] HighErrorRate (checkout)"
    );
    assert_eq!(
        resolve["payload"]["custom_details"],
        json!({
            "firing": "",
            "resolved": text_alert_list(&["a", "b"]),
            "num_firing": "0",
            "num_resolved": "2",
        })
    );

    // PagerDuty, templated fields; the summary is cut to 1024 characters.
    let mut long = message(false);
    long["commonAnnotations"]["description"] = json!("é".repeat(2000));
    ok(&agent, "pagerduty-custom", &long).await;
    let event: Value = serde_json::from_slice(&server.requests()[6].body).unwrap();
    let summary = event["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert_eq!(summary, format!("{}…", "é".repeat(1023)));
    assert_eq!(event["routing_key"], "OTHERKEY");
    assert_eq!(event["client"], "wasmon-test");
    assert_eq!(event["client_url"], "http://ui.example/");
    assert_eq!(event["payload"]["severity"], "critical");
    assert_eq!(event["payload"]["source"], "checkout");
    assert_eq!(event["payload"]["component"], "checkout");
    assert_eq!(
        event["payload"]["custom_details"]["team"],
        "HighErrorRate-team"
    );
    assert_eq!(event["payload"]["custom_details"]["num_firing"], "2");

    // 429 and 5xx are retried, other 4xx are not.
    for (code, retryable) in [(429, true), (503, true), (400, false)] {
        *server.status.lock().unwrap() = axum::http::StatusCode::from_u16(code).unwrap();
        let (status, answer) = test_receiver(&agent, "pagerduty", &message(false)).await;
        assert_eq!(status, 502, "{answer}");
        assert_eq!(answer["retryable"], retryable, "{code}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains(&format!("HTTP {code}")),
            "{answer}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_smtp() {
    let server = fixtures::Receiver::start().await;
    let smtp = Smtp::start("PLAIN LOGIN").await;
    let smtp_login = Smtp::start("LOGIN").await;
    // A port that was free a moment ago and on which nobody listens.
    let closed = fixtures::AgentProcess::free_addr().to_string();
    let agent = start_agent(&config(
        &server.addr.to_string(),
        &smtp,
        &smtp_login,
        &closed,
        "127.0.0.1:1",
    ))
    .await;

    // AUTH PLAIN, two recipients, the default subject and body.
    let before = chrono::Utc::now();
    ok(&agent, "email", &message(false)).await;
    let sessions = smtp.sessions();
    assert_eq!(sessions.len(), 1);
    let s = &sessions[0];
    assert_eq!(
        s.commands,
        [
            "EHLO wasmon.test",
            // base64("\0alice\0s3cret")
            "AUTH PLAIN AGFsaWNlAHMzY3JldA==",
            "MAIL FROM:<wasmon@example.com>",
            "RCPT TO:<ops@example.com>",
            "RCPT TO:<oncall@example.com>",
            "DATA",
            "QUIT",
        ]
    );
    let (headers, body) = split_message(&s.data[0]);
    assert_eq!(headers["From"], "wasmon <wasmon@example.com>");
    assert_eq!(
        headers["To"],
        "ops@example.com, On Call <oncall@example.com>"
    );
    assert_eq!(headers["Subject"], "[FIRING:2] HighErrorRate (checkout)");
    assert_eq!(headers["X-Group"], "HighErrorRate");
    assert_eq!(headers["MIME-Version"], "1.0");
    assert_eq!(headers["Content-Type"], "text/plain; charset=UTF-8");
    assert_eq!(headers["Content-Transfer-Encoding"], "7bit");
    let id = &headers["Message-ID"];
    assert!(id.starts_with('<') && id.ends_with("@example.com>"), "{id}");
    let date = chrono::DateTime::parse_from_rfc2822(&headers["Date"]).unwrap();
    let skew = (date.with_timezone(&chrono::Utc) - before).num_seconds();
    assert!((-2..60).contains(&skew), "Date {date} vs {before}");
    let alert = |pod: &str| {
        format!(
            "\n[FIRING] HighErrorRate\nLabels:\n  - alertname = HighErrorRate\n  - pod = {pod}\n  \
             - service = checkout\nAnnotations:\n  - summary = error rate high on {pod}\n\
             Starts at: 2026-11-25T08:00:00Z\nSource: {SOURCE}\n"
        )
    };
    let expected = format!(
        "2 firing, 0 resolved: alertname=HighErrorRate\nhttp://wasmon.example:9930\n{}{}",
        alert("a"),
        alert("b")
    );
    assert_eq!(body, expected.replace('\n', "\r\n"));

    // Resolved: the subject says so and the body has the end times.
    ok(&agent, "email", &message(true)).await;
    let sessions = smtp.sessions();
    let (headers, body) = split_message(&sessions[1].data[0]);
    assert_eq!(headers["Subject"], "[RESOLVED] HighErrorRate (checkout)");
    assert!(body.starts_with("0 firing, 2 resolved"), "{body}");
    assert!(
        body.contains("Starts at: 2026-11-25T08:00:00Z\r\nEnds at: 2026-11-25T08:10:00Z\r\n"),
        "{body}"
    );
    assert_ne!(
        headers["Message-ID"],
        split_message(&sessions[0].data[0]).0["Message-ID"]
    );

    // AUTH LOGIN when that is all the server offers; templated subject and
    // body; a body line starting with "." is dot-stuffed on the wire.
    ok(&agent, "email-login", &message(false)).await;
    let sessions = smtp_login.sessions();
    assert_eq!(
        sessions[0].commands,
        [
            "EHLO localhost",
            "AUTH LOGIN",
            "YWxpY2U=", // alice
            "czNjcmV0", // s3cret
            "MAIL FROM:<wasmon@example.com>",
            "RCPT TO:<ops@example.com>",
            "DATA",
            "QUIT",
        ]
    );
    let (headers, body) = split_message(&sessions[0].data[0]);
    assert_eq!(headers["Subject"], "firing: HighErrorRate");
    assert_eq!(body, "a\r\n.fp-a\r\nb\r\n.fp-b\r\n");
    assert!(
        sessions[0].raw_data[0].contains("\r\n..fp-a\r\n"),
        "not dot-stuffed: {:?}",
        sessions[0].raw_data[0]
    );

    // 4xx is retryable, 5xx permanent, both quoting the server.
    let (status, answer) = test_receiver(&agent, "email-busy", &message(false)).await;
    assert_eq!(status, 502);
    assert_eq!(answer["retryable"], true, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("RCPT TO <busy@example.com>: 450 4.2.1 Mailbox busy"),
        "{error}"
    );
    let (_, answer) = test_receiver(&agent, "email-nobody", &message(false)).await;
    assert_eq!(answer["retryable"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(error.contains("550 5.1.1 No such user"), "{error}");
    let (_, answer) = test_receiver(&agent, "email-badauth", &message(false)).await;
    assert_eq!(answer["retryable"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("AUTH PLAIN: 535 5.7.8 Authentication credentials invalid"),
        "{error}"
    );
    assert!(!error.contains("wrong"), "the password leaked: {error}");
    let seen = smtp.connections();

    // A smarthost not in allow_hosts: refused by the host, no connection.
    let (status, answer) = test_receiver(&agent, "email-denied", &message(false)).await;
    assert_eq!(status, 502);
    assert_eq!(answer["retryable"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains(&format!("smtp {}: connect: access denied", smtp.addr))
            && error.contains("allow_hosts"),
        "{error}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(smtp.connections(), seen, "the SMTP server saw a connection");

    // require_tls (the default) with a server that offers no STARTTLS.
    let (_, answer) = test_receiver(&agent, "email-tls", &message(false)).await;
    assert_eq!(answer["retryable"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("require_tls") && error.contains("does not offer STARTTLS"),
        "{error}"
    );
    let last = smtp.sessions().pop().unwrap();
    assert_eq!(last.commands, ["EHLO localhost"], "nothing sent in clear");
}

/// An SMTP server with STARTTLS, in Python (stdlib `ssl`), so that the
/// TLS side is not the same library as the plugin's: EHLO offers
/// STARTTLS before TLS and AUTH PLAIN after; every session is appended to
/// a JSON-lines file (commands, "<TLS>" where TLS started, DATA, TLS
/// version, server-side error).
const TLS_SMTP_SERVER: &str = r#"
import json, socket, ssl, sys
cert, key, out = sys.argv[1:4]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
while True:
    conn, _ = srv.accept()
    log = {"commands": [], "data": None, "tls": None}
    f = conn.makefile("rwb")
    def send(line):
        f.write(line.encode() + b"\r\n")
        f.flush()
    tls = False
    try:
        send("220 py.local ESMTP")
        while True:
            line = f.readline()
            if not line:
                break
            cmd = line.decode().rstrip("\r\n")
            log["commands"].append(cmd)
            u = cmd.upper()
            if u.startswith("EHLO"):
                send("250-py.local")
                send("250 AUTH PLAIN" if tls else "250 STARTTLS")
            elif u == "STARTTLS" and not tls:
                send("220 2.0.0 Ready to start TLS")
                f.close()
                conn = ctx.wrap_socket(conn, server_side=True)
                log["tls"] = conn.version()
                log["commands"].append("<TLS>")
                f = conn.makefile("rwb")
                tls = True
            elif u.startswith("AUTH PLAIN "):
                ok = tls and cmd[11:] == "AGFsaWNlAHMzY3JldA=="
                send("235 2.7.0 ok" if ok else "535 5.7.8 no")
            elif u.startswith("MAIL") or u.startswith("RCPT"):
                send("250 ok")
            elif u == "DATA":
                send("354 go")
                data = b""
                while True:
                    l = f.readline()
                    if l in (b".\r\n", b""):
                        break
                    data += l
                log["data"] = data.decode()
                send("250 queued")
            elif u == "QUIT":
                send("221 bye")
                break
            else:
                send("502 no")
    except Exception as e:
        log["error"] = repr(e)
    conn.close()
    with open(out, "a") as o:
        o.write(json.dumps(log) + "\n")
"#;

/// The Python STARTTLS server, killed on drop.
struct TlsSmtp {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsSmtp {
    fn start() -> TlsSmtp {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, log) = (
            dir.path().join("cert.pem"),
            dir.path().join("key.pem"),
            dir.path().join("sessions.jsonl"),
        );
        std::fs::write(&cert, LEAF_PEM).unwrap();
        std::fs::write(&key, LEAF_KEY).unwrap();
        let mut child = std::process::Command::new("python3")
            .arg("-c")
            .arg(TLS_SMTP_SERVER)
            .args([&cert, &key, &log])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs the STARTTLS test server");
        let mut port = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        TlsSmtp {
            child,
            addr: format!("127.0.0.1:{}", port.trim()),
            log,
            _dir: dir,
        }
    }

    /// Waits for `n` sessions to be logged and returns them.
    async fn sessions(&self, n: usize) -> Vec<Value> {
        for _ in 0..250 {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            let sessions: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            if sessions.len() >= n {
                return sessions;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("fewer than {n} STARTTLS sessions logged");
    }
}

impl Drop for TlsSmtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_starttls() {
    let server = fixtures::Receiver::start().await;
    let smtp = Smtp::start("PLAIN LOGIN").await;
    let smtp_login = Smtp::start("LOGIN").await;
    let tls = TlsSmtp::start();
    let config = config(
        &server.addr.to_string(),
        &smtp,
        &smtp_login,
        "127.0.0.1:1",
        &tls.addr,
    );
    let agent = start_agent(&config).await;

    // STARTTLS, EHLO again, AUTH under TLS, the message.
    ok(&agent, "email-starttls", &message(false)).await;
    let sessions = tls.sessions(1).await;
    let s = &sessions[0];
    assert_eq!(
        s["commands"],
        json!([
            "EHLO localhost",
            "STARTTLS",
            "<TLS>",
            "EHLO localhost",
            "AUTH PLAIN AGFsaWNlAHMzY3JldA==",
            "MAIL FROM:<wasmon@example.com>",
            "RCPT TO:<ops@example.com>",
            "DATA",
            "QUIT",
        ]),
        "{s}"
    );
    assert!(
        matches!(s["tls"].as_str(), Some("TLSv1.3" | "TLSv1.2")),
        "{s}"
    );
    let (headers, _) = split_message(s["data"].as_str().unwrap());
    assert_eq!(headers["Subject"], "[FIRING:2] HighErrorRate (checkout)");

    // A certificate from another CA: a permanent failure, nothing sent.
    let (status, answer) = test_receiver(&agent, "email-badca", &message(false)).await;
    assert_eq!(status, 502);
    assert_eq!(answer["retryable"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("TLS") && error.contains("certificate"),
        "{error}"
    );
    let sessions = tls.sessions(2).await;
    assert_eq!(
        sessions[1]["commands"],
        json!(["EHLO localhost", "STARTTLS"])
    );
    assert!(sessions[1]["error"].is_string(), "{}", sessions[1]);
}

/// Headers (unfolded, by name) and body of a message as received.
fn split_message(data: &str) -> (BTreeMap<String, String>, String) {
    let (head, body) = data.split_once("\r\n\r\n").expect("a blank line");
    let mut headers = BTreeMap::new();
    for line in head.split("\r\n") {
        let (k, v) = line.split_once(": ").unwrap_or_else(|| panic!("{line:?}"));
        assert!(
            headers.insert(k.to_string(), v.to_string()).is_none(),
            "duplicate {k}"
        );
    }
    (headers, body.to_string())
}
