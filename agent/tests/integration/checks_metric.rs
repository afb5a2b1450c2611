//! Metric checks through the real binary: the `metric-threshold` plugin
//! queries the agent's own store through the host `query` import, and its
//! verdict and value become `wasmon_check_*` series.

use crate::fixtures;
use crate::fixtures::get_json;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde_json::Value;

async fn app(depth: Arc<AtomicU64>) -> std::net::SocketAddr {
    let handler = move || {
        let depth = depth.clone();
        async move {
            format!(
                "# TYPE queue_depth gauge\nqueue_depth {}\n",
                depth.load(Ordering::Relaxed)
            )
        }
    };
    fixtures::serve(Router::new().route("/metrics", get(handler))).await
}

const CONFIG: &str = r#"
[global]
scrape_interval = "200ms"
scrape_timeout = "150ms"

[web]
listen_address = "{{LISTEN}}"

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"] }]

[[checks]]
name = "queue"
kind = "metric"
plugin = "metric-threshold"
interval = "200ms"
config = { query = 'max(queue_depth)', max = 10 }

[[checks]]
name = "broken-query"
kind = "metric"
plugin = "metric-threshold"
interval = "200ms"
config = { query = 'sum(', max = 1 }

[[checks]]
name = "absent"
kind = "metric"
plugin = "metric-threshold"
interval = "200ms"
config = { query = 'no_such_metric', min = 1 }
"#;

async fn check(agent: &fixtures::AgentProcess, name: &str) -> Value {
    let c = get_json(&agent.url("/api/v1/checks")).await;
    c["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_threshold_queries_the_store() {
    let depth = Arc::new(AtomicU64::new(3));
    let app = app(depth.clone()).await;
    let dir = fixtures::agent_dir_with(&["metric-threshold"]);
    let agent =
        fixtures::AgentProcess::start(dir, &CONFIG.replace("{{APP}}", &app.to_string())).await;

    agent
        .eventually(
            "queue check up with value 3",
            Duration::from_secs(20),
            || async {
                let c = check(&agent, "queue").await;
                c["health"] == "up" && c["last"]["value"] == 3.0
            },
        )
        .await;
    let c = check(&agent, "queue").await;
    assert_eq!(c["last"]["message"], "queue: 3 <= max 10", "{c}");
    let v = get_json(&agent.url("/api/v1/query?query=wasmon_check_value{check=\"queue\"}")).await;
    assert_eq!(v["data"]["result"][0]["value"][1], "3", "{v}");
    // The plugin's own sample, with check/target added by the host.
    let v = get_json(&agent.url("/api/v1/query?query=wasmon_metric_check_value")).await;
    let r = v["data"]["result"].as_array().unwrap();
    assert!(r.iter().any(|s| s["metric"]["check"] == "queue"), "{v}");

    let b = check(&agent, "broken-query").await;
    agent
        .eventually("broken query reported", Duration::from_secs(20), || async {
            check(&agent, "broken-query").await["health"] == "down"
        })
        .await;
    let b2 = check(&agent, "broken-query").await;
    assert!(
        b2["last"]["message"]
            .as_str()
            .unwrap()
            .contains("query \"sum(\""),
        "{b} {b2}"
    );
    agent
        .eventually(
            "absent is down (no data)",
            Duration::from_secs(20),
            || async {
                let c = check(&agent, "absent").await;
                c["health"] == "down" && c["last"]["message"] == "absent: no data"
            },
        )
        .await;

    depth.store(42, Ordering::Relaxed);
    agent
        .eventually(
            "queue check down at 42",
            Duration::from_secs(20),
            || async {
                let c = check(&agent, "queue").await;
                c["health"] == "down" && c["last"]["value"] == 42.0
            },
        )
        .await;
    assert_eq!(
        check(&agent, "queue").await["last"]["message"],
        "queue: 42 > max 10"
    );
    let up = get_json(&agent.url("/api/v1/query?query=wasmon_check_up{check=\"queue\"}")).await;
    assert_eq!(up["data"]["result"][0]["value"][1], "0", "{up}");
}
