//! Health checks through the real binary: an HTTP check and a TCP check
//! against a local server that goes from up to down; results show as
//! `wasmon_check_up` series in the query API, in `/api/v1/checks`, and an
//! ordinary alerting rule fires on them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde_json::Value;

async fn app(healthy: Arc<AtomicBool>) -> std::net::SocketAddr {
    let handler = move || {
        let healthy = healthy.clone();
        async move {
            if healthy.load(Ordering::Relaxed) {
                (StatusCode::OK, "status: ok")
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, "status: degraded")
            }
        }
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(l, Router::new().route("/healthz", get(handler)))
            .await
            .unwrap()
    });
    addr
}

const RULES: &str = r#"
groups:
  - name: checks
    interval: 200ms
    rules:
      - alert: CheckDown
        expr: wasmon_check_up == 0
        labels:
          severity: critical
"#;

const CONFIG: &str = r#"
rule_files = ["rules.yml"]

[web]
listen_address = "{{LISTEN}}"

[[checks]]
name = "api"
kind = "http"
url = "http://{{APP}}/healthz"
interval = "200ms"
timeout = "1s"
expected_status = [200]
body_regex = "status: ok"
max_latency = "900ms"

[[checks]]
name = "api-port"
kind = "tcp"
target = "{{APP}}"
interval = "200ms"
timeout = "1s"

[[checks]]
name = "nothing-listens"
kind = "tcp"
target = "{{DEAD}}"
interval = "200ms"
timeout = "1s"
"#;

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// `wasmon_check_up` by check name.
async fn up(agent: &common::AgentProcess) -> Vec<(String, String, f64)> {
    let r = get_json(&agent.url("/api/v1/query?query=wasmon_check_up")).await;
    let mut v: Vec<(String, String, f64)> = r["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["metric"]["check"].as_str().unwrap().to_string(),
                s["metric"]["target"].as_str().unwrap().to_string(),
                s["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_checks_become_series_and_alerts() {
    let healthy = Arc::new(AtomicBool::new(true));
    let app = app(healthy.clone()).await;
    let dead = common::AgentProcess::free_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let config = CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace("{{DEAD}}", &dead.to_string());
    let agent = common::AgentProcess::start(dir, &config).await;

    let url = format!("http://{app}/healthz");
    agent
        .eventually(
            "all three checks reported",
            Duration::from_secs(20),
            || async { up(&agent).await.len() == 3 },
        )
        .await;
    assert_eq!(
        up(&agent).await,
        vec![
            ("api".to_string(), url.clone(), 1.0),
            ("api-port".to_string(), app.to_string(), 1.0),
            ("nothing-listens".to_string(), dead.to_string(), 0.0),
        ]
    );
    let d =
        get_json(&agent.url("/api/v1/query?query=wasmon_check_duration_seconds{check=\"api\"}"))
            .await;
    assert_eq!(d["data"]["result"].as_array().unwrap().len(), 1, "{d}");
    let code = get_json(&agent.url("/api/v1/query?query=wasmon_check_http_status_code")).await;
    assert_eq!(code["data"]["result"][0]["value"][1], "200", "{code}");

    let checks = get_json(&agent.url("/api/v1/checks")).await;
    let list = checks["data"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{checks}");
    let api = list.iter().find(|c| c["name"] == "api").unwrap();
    assert_eq!(api["health"], "up", "{api}");
    assert_eq!(api["kind"], "http");
    let dead_check = list
        .iter()
        .find(|c| c["name"] == "nothing-listens")
        .unwrap();
    assert_eq!(dead_check["health"], "down");
    assert!(
        dead_check["last"]["message"]
            .as_str()
            .unwrap()
            .contains("connect failed"),
        "{dead_check}"
    );

    // The app degrades: the HTTP check goes down (the port stays open).
    healthy.store(false, Ordering::Relaxed);
    agent
        .eventually("api down", Duration::from_secs(20), || async {
            up(&agent)
                .await
                .iter()
                .any(|(c, _, v)| c == "api" && *v == 0.0)
        })
        .await;
    let checks = get_json(&agent.url("/api/v1/checks")).await;
    let api = checks["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "api")
        .unwrap()
        .clone();
    assert_eq!(api["health"], "down");
    assert_eq!(api["last"]["message"], "HTTP 503", "{api}");
    assert!(up(&agent)
        .await
        .iter()
        .any(|(c, _, v)| c == "api-port" && *v == 1.0));

    // An ordinary rule alerts on the check series.
    agent
        .eventually(
            "CheckDown alert for api",
            Duration::from_secs(20),
            || async {
                let a = get_json(&agent.url("/api/v1/alerts")).await;
                a["data"]["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a["labels"]["check"] == "api" && a["state"] == "firing")
            },
        )
        .await;

    // Back up.
    healthy.store(true, Ordering::Relaxed);
    agent
        .eventually("api up again", Duration::from_secs(20), || async {
            up(&agent)
                .await
                .iter()
                .any(|(c, _, v)| c == "api" && *v == 1.0)
        })
        .await;
}

#[test]
fn bad_check_config_names_the_line() {
    let text = "[[checks]]\nname = \"a\"\nkind = \"http\"\n\n[[checks]]\nname = \"b\"\nkind = \"http\"\nurl = \"http://x/\"\nbody_regex = \"(\"\n";
    let msg = format!(
        "{:#}",
        wasmon::config::Config::parse(text, "c.toml").unwrap_err()
    );
    assert!(
        msg.contains("c.toml:2") && msg.contains("needs `url`"),
        "{msg}"
    );
    let text = "[[checks]]\nname = \"p\"\nkind = \"plugin\"\n";
    let msg = format!(
        "{:#}",
        wasmon::config::Config::parse(text, "c.toml").unwrap_err()
    );
    assert!(msg.contains("needs `plugin`"), "{msg}");
}
