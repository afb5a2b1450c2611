//! End to end through the real binary, the seed scenario: an error rate
//! above 5% for the `for` duration → one grouped notification to the
//! critical receivers (continue to a second one) → a silence mutes it (no
//! repeat while it lasts) → the silence expires → the error rate recovers →
//! resolved notification.
//! Also: alerts and silences through the Alertmanager v2 API, silences
//! surviving a restart.

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

/// An app whose error ratio the test controls.
async fn app(errors: Arc<Mutex<bool>>) -> std::net::SocketAddr {
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let handler = move || {
        let (errors, counts) = (errors.clone(), counts.clone());
        async move {
            let mut c = counts.lock().unwrap();
            c.0 += 100;
            if *errors.lock().unwrap() {
                c.1 += 20;
            }
            format!(
                "# TYPE http_requests_total counter\nhttp_requests_total{{code=\"200\"}} {}\nhttp_requests_total{{code=\"500\"}} {}\n",
                c.0, c.1
            )
        }
    };
    fixtures::serve(Router::new().route("/metrics", get(handler))).await
}

const RULES: &str = r#"
groups:
  - name: slo
    interval: 500ms
    rules:
      - alert: HighErrorRate
        expr: sum(rate(http_requests_total{code=~"5.."}[3s])) / sum(rate(http_requests_total[3s])) > 0.05
        for: 1s
        labels:
          severity: critical
        annotations:
          summary: "error rate {{ $value | humanizePercentage }}"
      - record: code:http_requests:rate3s
        expr: sum by (code) (rate(http_requests_total[3s]))
"#;

const CONFIG: &str = r#"
rule_files = ["rules.yml"]

[global]
scrape_interval = "250ms"
scrape_timeout = "200ms"
evaluation_interval = "500ms"
external_url = "http://wasmon.test"

[web]
listen_address = "{{LISTEN}}"

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"] }]

[[receivers]]
name = "default"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/default" }

[[receivers]]
name = "oncall"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/oncall" }

[[receivers]]
name = "team-chat"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/chat" }

[route]
receiver = "default"
group_by = ["alertname"]
group_wait = "1s"
group_interval = "1s"
repeat_interval = "3s"

[[route.routes]]
matchers = ['severity="critical"']
receiver = "oncall"
continue = true

[[route.routes]]
matchers = ['severity="critical"']
receiver = "team-chat"
"#;

async fn eventually<F: FnMut() -> bool>(
    what: &str,
    limit: Duration,
    agent: &fixtures::AgentProcess,
    mut f: F,
) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "timed out waiting for {what}\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bodies(hook: &fixtures::Receiver, path: &str) -> Vec<Value> {
    hook.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_rate_alert_routes_silences_and_resolves() {
    let errors = Arc::new(Mutex::new(true));
    let app = app(errors.clone()).await;
    let hook = fixtures::Receiver::start().await;
    let dir = fixtures::agent_dir_with(&["webhook"]);
    std::fs::write(dir.path().join("rules.yml"), RULES).unwrap();
    let config = CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace("{{HOOK}}", &hook.addr.to_string());
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let client = reqwest::Client::new();

    // Firing: one grouped notification to each critical receiver, none to the default.
    eventually(
        "the firing notifications",
        Duration::from_secs(30),
        &agent,
        || !bodies(&hook, "/oncall").is_empty() && !bodies(&hook, "/chat").is_empty(),
    )
    .await;
    let oncall = bodies(&hook, "/oncall");
    assert_eq!(oncall.len(), 1, "one grouped notification: {oncall:#?}");
    assert_eq!(bodies(&hook, "/chat").len(), 1);
    assert!(bodies(&hook, "/default").is_empty());
    let n = &oncall[0];
    assert_eq!(n["status"], "firing");
    assert_eq!(n["receiver"], "oncall");
    assert_eq!(n["groupLabels"], json!({"alertname": "HighErrorRate"}));
    assert_eq!(n["commonLabels"]["severity"], "critical");
    assert!(
        n["commonAnnotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("error rate "),
        "{n}"
    );
    assert_eq!(n["externalURL"], "http://wasmon.test");
    assert!(n["alerts"][0]["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with("http://wasmon.test/graph?g0.expr="));

    // The recording rule writes its series back to the store.
    let r: Value = client
        .get(agent.url("/api/v1/query?query=code:http_requests:rate3s"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: Vec<&str> = r["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["metric"]["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes.len(), 2, "{r}");
    let rules: Value = client
        .get(agent.url("/api/v1/rules"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let group = &rules["data"]["groups"][0];
    assert_eq!(group["name"], "slo");
    assert_eq!(group["rules"][0]["type"], "alerting");
    assert_eq!(group["rules"][0]["state"], "firing");
    assert_eq!(group["rules"][1]["type"], "recording");
    assert_eq!(group["rules"][1]["health"], "ok");
    // An unknown rule type is a request error, with its HTTP status (it
    // used to be an error body in a 200).
    let r = client
        .get(agent.url("/api/v1/rules?type=bogus"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "error");
    assert_eq!(body["errorType"], "bad_data");
    assert_eq!(body["error"], "unsupported type \"bogus\"");

    // The alert is visible in both APIs.
    let alerts: Value = client
        .get(agent.url("/api/v1/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(alerts["data"]["alerts"][0]["state"], "firing");
    let v2: Value = client
        .get(agent.url("/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2[0]["labels"]["alertname"], "HighErrorRate");
    assert_eq!(v2[0]["status"]["state"], "active");
    let receivers: Vec<&str> = v2[0]["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(receivers, ["oncall", "team-chat"]);

    // Silence it; the alert shows as suppressed.
    let now = chrono::Utc::now();
    let r: Value = client
        .post(agent.url("/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "alertname", "value": "HighErrorRate", "isRegex": false, "isEqual": true}],
            "startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "e2e",
            "comment": "investigating",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let silence_id = r["silenceID"].as_str().unwrap().to_string();
    let v2: Value = client
        .get(agent.url("/api/v2/alerts"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2[0]["status"]["state"], "suppressed");
    assert_eq!(v2[0]["status"]["silencedBy"][0], silence_id.as_str());

    // Past repeat_interval (3s) nothing is repeated while the silence lasts.
    let before = (bodies(&hook, "/oncall").len(), bodies(&hook, "/chat").len());
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        (bodies(&hook, "/oncall").len(), bodies(&hook, "/chat").len()),
        before,
        "a silenced group must not notify"
    );

    // Expire the silence, then the error rate recovers: resolved notifications.
    let r = client
        .delete(agent.url(&format!("/api/v2/silence/{silence_id}")))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    *errors.lock().unwrap() = false;
    eventually(
        "the resolved notifications",
        Duration::from_secs(30),
        &agent,
        || {
            let last = |p: &str| {
                bodies(&hook, p)
                    .last()
                    .map(|b| b["status"] == "resolved")
                    .unwrap_or(false)
            };
            last("/oncall") && last("/chat")
        },
    )
    .await;
    let all = bodies(&hook, "/oncall");
    let resolved = all.last().unwrap();
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(resolved["alerts"][0]["status"], "resolved");
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert!(bodies(&hook, "/default").is_empty());

    // The silence (now expired) survives a restart; so does its state.
    let s: Value = client
        .get(agent.url("/api/v2/silences"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s[0]["status"]["state"], "expired");
    let dir = agent.kill9();
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let s: Value = reqwest::get(agent.url(&format!("/api/v2/silence/{silence_id}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["comment"], "investigating");
    assert_eq!(s["status"]["state"], "expired");
}
