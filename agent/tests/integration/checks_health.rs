//! Health checks through the real binary: an HTTP check and a TCP check
//! against a local server that goes from up to down; results show as
//! `wasmon_check_up` series in the query API, in `/api/v1/checks`, and an
//! ordinary alerting rule fires on them.

use crate::fixtures;
use crate::fixtures::get_json;

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
    fixtures::serve(Router::new().route("/healthz", get(handler))).await
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

/// `wasmon_check_up` by check name.
async fn up(agent: &fixtures::AgentProcess) -> Vec<(String, String, f64)> {
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
    let dead = fixtures::AgentProcess::free_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let config = CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace("{{DEAD}}", &dead.to_string());
    let agent = fixtures::AgentProcess::start(dir, &config).await;

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
    // `wasmon check config`, start and reload prepare a config this way.
    let invalid = |text: &str| {
        let c = wasmon::config::Config::parse(text, "c.toml").unwrap();
        wasmon::app::Prepared::new(c, None).err().unwrap()
    };
    let text = "[[checks]]\nname = \"a\"\nkind = \"http\"\n\n[[checks]]\nname = \"b\"\nkind = \"http\"\nurl = \"http://x/\"\nbody_regex = \"(\"\n";
    let msg = format!("{:#}", invalid(text));
    assert!(
        msg.contains("c.toml:2") && msg.contains("needs `url`"),
        "{msg}"
    );
    let text = "[[checks]]\nname = \"p\"\nkind = \"plugin\"\n";
    let msg = format!("{:#}", invalid(text));
    assert!(msg.contains("needs `plugin`"), "{msg}");
}

// ---- a check run now, through the API and `wasmon checks run` (issue 18) ----

const RUN_NOW_CONFIG: &str = r#"
[web]
listen_address = "{{LISTEN}}"

[plugins]
cache_dir = ""

# Scheduled once at start, then not for an hour: later runs are ours.
[[checks]]
name = "api"
kind = "http"
url = "http://{{APP}}/healthz"
interval = "1h"
timeout = "1s"

[[checks]]
name = "slow"
kind = "http"
method = "POST"
url = "http://{{SLOW}}/slow"
interval = "1h"
timeout = "10s"

[[checks]]
name = "spinning"
kind = "plugin"
plugin = "probe"
interval = "1h"
timeout = "300ms"
config = { mode = "loop" }
"#;

/// `wasmon ARGS` against the agent: (exit code, stdout, stderr).
async fn wasmon(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many `wasmon_check_up` samples a check has in the last hour.
async fn runs(agent: &fixtures::AgentProcess, check: &str) -> u64 {
    let q = format!("count_over_time(wasmon_check_up{{check=\"{check}\"}}[1h])");
    let url = agent.url(&format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    ));
    let r = get_json(&url).await;
    r["data"]["result"][0]["value"][1]
        .as_str()
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_runs_now_through_the_api_and_the_cli() {
    let healthy = Arc::new(AtomicBool::new(true));
    let app = app(healthy.clone()).await;
    let slow = fixtures::Receiver::start().await;
    *slow.delay.lock().unwrap() = Duration::from_millis(1500);
    let dir = fixtures::agent_dir_with(&["probe"]);
    let config = RUN_NOW_CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace("{{SLOW}}", &slow.addr.to_string());
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let base = agent.url("");
    agent
        .eventually(
            "the scheduled first runs",
            Duration::from_secs(30),
            || async {
                runs(&agent, "api").await == 1
                    && runs(&agent, "slow").await == 1
                    && runs(&agent, "spinning").await == 1
            },
        )
        .await;

    // Through the API: the result in the answer, and one more sample.
    let c = reqwest::Client::new();
    healthy.store(false, Ordering::Relaxed);
    let r = c
        .post(agent.url("/api/v1/checks/api/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["health"], "down", "{v}");
    assert_eq!(v["data"]["last"]["message"], "HTTP 503", "{v}");
    assert_eq!(v["data"]["coalesced"], false);
    assert_eq!(runs(&agent, "api").await, 2);
    let now =
        get_json(&agent.url("/api/v1/query?query=wasmon_check_up%7Bcheck%3D%22api%22%7D")).await;
    assert_eq!(now["data"]["result"][0]["value"][1], "0", "{now}");

    // Through the CLI: a line, exit 0 when up, 1 when down.
    healthy.store(true, Ordering::Relaxed);
    let (code, out, err) = wasmon(&["checks", "run", "api", "--url", &base]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("api (http ") && out.contains(": up in "),
        "{out}"
    );
    assert!(out.contains("HTTP 200"), "{out}");
    healthy.store(false, Ordering::Relaxed);
    let (code, out, _) = wasmon(&["checks", "run", "api", "--url", &base, "--json"]).await;
    assert_eq!(code, 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["health"], "down");
    assert_eq!(runs(&agent, "api").await, 4);

    // Unknown: 404 from the API, an error from the CLI.
    let r = c
        .post(agent.url("/api/v1/checks/nope/run"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"], "no check named \"nope\"");
    let (code, _, err) = wasmon(&["checks", "run", "nope", "--url", &base]).await;
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("no check named"),
        "{err}"
    );

    // Two runs asked for at once share one run (and one sample).
    let before = slow.arrived.load(Ordering::SeqCst);
    let first = tokio::spawn({
        let (c, url) = (c.clone(), agent.url("/api/v1/checks/slow/run"));
        async move { c.post(url).send().await }
    });
    // The second asks while the first waits for the slow target.
    agent
        .eventually(
            "the first run at the target",
            Duration::from_secs(20),
            || async { slow.arrived.load(Ordering::SeqCst) > before },
        )
        .await;
    let b = c.post(agent.url("/api/v1/checks/slow/run")).send().await;
    let a = first.await.unwrap();
    let (a, b): (Value, Value) = (
        a.unwrap().json().await.unwrap(),
        b.unwrap().json().await.unwrap(),
    );
    let coalesced = [&a, &b]
        .iter()
        .filter(|v| v["data"]["coalesced"] == true)
        .count();
    assert_eq!(coalesced, 1, "{a}\n{b}");
    assert_eq!(a["data"]["lastRun"], b["data"]["lastRun"]);
    assert_eq!(
        slow.arrived.load(Ordering::SeqCst),
        before + 1,
        "one request to the target"
    );
    assert_eq!(runs(&agent, "slow").await, 2);

    // The looping plugin check: its scheduled run timed out and opened
    // its circuit, which `plugins list --url` shows; a run asked for by a
    // person still runs it (a timeout, not a refusal).
    let (code, out, err) = wasmon(&["plugins", "list", "--url", &base]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("instance spinning: circuit open until")
            && out.contains("last error: timed out after 300ms"),
        "{out}"
    );
    let (code, out, _) = wasmon(&["checks", "run", "spinning", "--url", &base]).await;
    assert_eq!(code, 1);
    assert!(out.contains("plugin: timed out after 300ms"), "{out}");
    assert_eq!(runs(&agent, "spinning").await, 2);
    let metrics = agent.self_metrics().await;
    assert!(
        metrics.contains("wasmon_plugin_circuit_state{plugin=\"probe\",instance=\"spinning\"} 1"),
        "{metrics}"
    );
}
