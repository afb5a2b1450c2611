//! End to end through the real binary, the canary story: a new version
//! shows up in the scraped `app_build_info` → the rollout starts by itself →
//! its error rate fails the analysis `threshold` times → the `http-action`
//! plugin flips the app back to the stable version → a critical
//! `RolloutRolledBack` notification → the checks pass again → resolved
//! notification. Then: the state survives a restart, `wasmon rollouts`
//! prints it, and a rollout started through the API soaks to `Succeeded`.

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Query;
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};

#[derive(Default)]
struct App {
    version: String,
    bad: bool,
    ok: u64,
    errors: u64,
    rollbacks: Vec<(String, String)>,
}

/// An app with a good (v1) and a bad (v2) version behind a switch.
async fn app(state: Arc<Mutex<App>>) -> std::net::SocketAddr {
    let s1 = state.clone();
    let metrics = move || {
        let s = s1.clone();
        async move {
            let mut s = s.lock().unwrap();
            s.ok += 100;
            if s.bad {
                s.errors += 30;
            }
            format!(
                "# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {}\nhttp_requests_total{{code=\"500\"}} {}\n# TYPE app_build_info gauge\napp_build_info{{version=\"{}\"}} 1\n",
                s.ok, s.errors, s.version
            )
        }
    };
    let s2 = state.clone();
    let rollback = move |q: Query<std::collections::HashMap<String, String>>, body: String| {
        let s = s2.clone();
        async move {
            let mut s = s.lock().unwrap();
            let v = q.get("version").cloned().unwrap_or_default();
            s.rollbacks.push((v.clone(), body));
            s.version = v;
            s.bad = false;
            "switched"
        }
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            l,
            Router::new()
                .route("/metrics", get(metrics))
                .route("/switch", post(rollback)),
        )
        .await
        .unwrap()
    });
    addr
}

const CONFIG: &str = r#"
[global]
scrape_interval = "200ms"
scrape_timeout = "150ms"
external_url = "http://wasmon.test"

[web]
listen_address = "{{LISTEN}}"

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"] }]

[[receivers]]
name = "oncall"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/oncall" }

[route]
receiver = "oncall"
group_by = ["alertname", "rollout"]
group_wait = "200ms"
group_interval = "500ms"
repeat_interval = "1h"

[[rollouts]]
name = "checkout"
target = "checkout-switch"
interval = "500ms"
threshold = 2
soak = "4s"
verify = "6s"
version_query = "app_build_info"
labels = { team = "shop" }

[[rollouts.metrics]]
name = "error-rate"
query = 'sum(rate(http_requests_total{code=~"5.."}[2s])) / sum(rate(http_requests_total[2s]))'
max = 0.05

[rollouts.rollback]
name = "switch-back"
plugin = "http-action"
allow_hosts = ["{{APP}}"]
config = { url = "http://{{APP}}/switch?version={{stable_version}}", json = { rollout = "{{rollout}}", failed = "{{failed_version}}", reason = "{{reason}}" } }
"#;

async fn rollout(agent: &fixtures::AgentProcess) -> Value {
    let v: Value = reqwest::get(agent.url("/api/v1/rollouts/checkout"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].clone()
}

fn notifications(hook: &fixtures::Receiver) -> Vec<Value> {
    hook.requests()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_version_is_rolled_back_alerted_and_resolved() {
    let state = Arc::new(Mutex::new(App {
        version: "v1".into(),
        ..Default::default()
    }));
    let app = app(state.clone()).await;
    let hook = fixtures::Receiver::start().await;
    let dir = fixtures::agent_dir_with(&["webhook", "http-action"]);
    let config = CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace("{{HOOK}}", &hook.addr.to_string());
    let agent = fixtures::AgentProcess::start(dir, &config).await;

    agent
        .eventually("v1 taken as stable", Duration::from_secs(30), || async {
            rollout(&agent).await["stableVersion"] == "v1"
        })
        .await;
    let r = rollout(&agent).await;
    assert_eq!(r["phase"], "Idle", "{r}");

    // Deploy v2: errors spike.
    {
        let mut s = state.lock().unwrap();
        s.version = "v2".into();
        s.bad = true;
    }
    agent
        .eventually(
            "the rollout of v2 starts",
            Duration::from_secs(30),
            || async {
                let r = rollout(&agent).await;
                r["version"] == "v2" && r["phase"] != "Idle"
            },
        )
        .await;
    agent
        .eventually(
            "the rollback action ran",
            Duration::from_secs(30),
            || async { !state.lock().unwrap().rollbacks.is_empty() },
        )
        .await;
    let (to, body) = state.lock().unwrap().rollbacks[0].clone();
    assert_eq!(to, "v1");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["rollout"], "checkout");
    assert_eq!(body["failed"], "v2");
    assert!(
        body["reason"].as_str().unwrap().contains("error-rate="),
        "{body}"
    );

    // The critical notification, then the resolved one once the checks pass.
    agent
        .eventually(
            "RolloutRolledBack firing",
            Duration::from_secs(30),
            || async { notifications(&hook).iter().any(|n| n["status"] == "firing") },
        )
        .await;
    let firing = notifications(&hook)
        .into_iter()
        .find(|n| n["status"] == "firing")
        .unwrap();
    let labels = &firing["alerts"][0]["labels"];
    assert_eq!(
        labels,
        &json!({"alertname": "RolloutRolledBack", "rollout": "checkout", "version": "v2",
                "severity": "critical", "team": "shop"}),
        "{firing}"
    );
    let ann = &firing["alerts"][0]["annotations"];
    assert_eq!(ann["summary"], "Rollout checkout: v2 rolled back to v1");
    assert!(
        ann["description"].as_str().unwrap().contains("error-rate=")
            && ann["description"]
                .as_str()
                .unwrap()
                .contains("POST http://"),
        "{ann}"
    );
    assert_eq!(
        firing["alerts"][0]["generatorURL"],
        "http://wasmon.test/api/v1/rollouts/checkout"
    );
    agent
        .eventually("recovered", Duration::from_secs(30), || async {
            rollout(&agent).await["phase"] == "RolledBack"
        })
        .await;
    agent
        .eventually("resolved notification", Duration::from_secs(30), || async {
            notifications(&hook)
                .iter()
                .any(|n| n["status"] == "resolved")
        })
        .await;
    let r = rollout(&agent).await;
    let events: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        [
            "started",
            "check_failed",
            "check_failed",
            "rolled_back",
            "recovered"
        ],
        "{r:#}"
    );
    let rolled = &r["history"][3];
    assert_eq!(rolled["checks"][0]["check"], "error-rate");
    assert_eq!(rolled["checks"][0]["ok"], false);
    assert!(rolled["checks"][0]["value"].as_f64().unwrap() > 0.05);
    assert_eq!(r["stableVersion"], "v1");
    assert_eq!(r["failures"], 2);
    assert!(
        !notifications(&hook)
            .iter()
            .any(|n| n["commonLabels"]["alertname"] == "RolloutStillFailing"),
        "recovered within the verify window"
    );

    // The CLI.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["rollouts", "--url", &agent.url("")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("checkout")
            && l.contains("RolledBack")
            && l.contains("v2")
            && l.contains("v1")
            && l.contains("2/2")
            && l.contains("recovered")),
        "{text}"
    );

    // State survives a restart.
    let dir = agent.kill9();
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let r = rollout(&agent).await;
    assert_eq!(r["phase"], "RolledBack", "{r}");
    assert_eq!(r["history"].as_array().unwrap().len(), 5);

    // Started through the API, a good version soaks and becomes stable.
    let client = reqwest::Client::new();
    let resp = client
        .post(agent.url("/api/v1/rollouts/checkout/start"))
        .json(&json!({"version": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let r = rollout(&agent).await;
    assert_eq!(r["phase"], "Progressing");
    assert_eq!(r["version"], "v3");
    agent
        .eventually("v3 succeeded", Duration::from_secs(30), || async {
            rollout(&agent).await["phase"] == "Succeeded"
        })
        .await;
    let r = rollout(&agent).await;
    assert_eq!(r["stableVersion"], "v3");
    let resp = client
        .post(agent.url("/api/v1/rollouts/nope/start"))
        .json(&json!({"version": "v3"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = client
        .post(agent.url("/api/v1/rollouts/checkout/start"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}
