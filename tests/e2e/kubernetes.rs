//! End to end through the real binary as a node agent: pods on its node,
//! found through a fake Kubernetes API on 127.0.0.1, are scraped with the
//! labels the usual relabel rules give them, disappear and go stale; an API
//! outage keeps the targets and says why; a rotated token is used.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fixtures::kube_api::{self, KubeApi};
use crate::fixtures::{self, get_json, metrics_server, query_value, AgentProcess};

/// The node agent's pod job from deploy/kubernetes/daemonset.yaml, pointed
/// at the fake API with a token file.
const CONFIG: &str = r#"
[global]
scrape_interval = "300ms"
scrape_timeout = "250ms"

[web]
listen_address = "{{LISTEN}}"

[storage]
path = "data"

[[scrape_configs]]
job_name = "kubernetes-pods"

[[scrape_configs.kubernetes_sd_configs]]
role = "pod"
api_server = "{{API}}"
authorization = { credentials_file = "token" }
selectors = [{ role = "pod", field = "spec.nodeName=${NODE_NAME}" }]

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
regex = "true"
action = "keep"

[[scrape_configs.relabel_configs]]
source_labels = ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"]
regex = "(.+?)(?::\\d+)?;(\\d+)"
replacement = "$1:$2"
target_label = "__address__"

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_namespace"]
target_label = "namespace"

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_name"]
target_label = "pod"
"#;

fn scraped_pod(name: &str, node: &str, port: u16) -> Value {
    kube_api::pod(
        "shop",
        name,
        node,
        "127.0.0.1",
        json!({"prometheus.io/scrape": "true", "prometheus.io/port": port.to_string()}),
    )
}

async fn active_pods(agent: &AgentProcess) -> Vec<String> {
    let t = get_json(&agent.url("/api/v1/targets")).await;
    let mut pods: Vec<String> = t["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["labels"]["pod"].as_str().map(str::to_string))
        .collect();
    pods.sort();
    pods
}

async fn discovery_status(agent: &AgentProcess) -> Value {
    let t = get_json(&agent.url("/api/v1/targets")).await;
    t["data"]["discoveryStatus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scrapePool"] == "kubernetes-pods")
        .cloned()
        .unwrap_or(Value::Null)
}

async fn up(agent: &AgentProcess, pod: &str) -> Option<f64> {
    query_value(agent, &format!("up{{pod=\"{pod}\"}}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_agent_scrapes_its_nodes_pods_as_they_come_and_go() {
    let api = KubeApi::start(Some("token-1")).await;
    let (a, b, c) = (
        metrics_server("app_requests_total 1\n").await,
        metrics_server("app_requests_total 2\n").await,
        metrics_server("app_requests_total 3\n").await,
    );
    api.apply("nodes", kube_api::node("node-a", "127.0.0.1"));
    api.apply("pods", scraped_pod("cart", "node-a", a.port()));
    api.apply("pods", scraped_pod("web", "node-a", b.port()));
    // Another node's pod: never seen by this agent's watch.
    api.apply("pods", scraped_pod("elsewhere", "node-b", c.port()));
    let mut quiet = kube_api::pod("shop", "quiet", "node-a", "127.0.0.1", json!({}));
    quiet["metadata"]["labels"] = json!({"app": "quiet"});
    api.apply("pods", quiet);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "token-1\n").unwrap();
    let config = CONFIG.replace("{{API}}", &api.url());
    let agent = AgentProcess::start_with_env(dir, &config, &[("NODE_NAME", "node-a")]).await;

    agent
        .eventually(
            "both annotated pods of node-a scraped",
            Duration::from_secs(20),
            || async {
                active_pods(&agent).await == ["cart", "web"]
                    && up(&agent, "cart").await == Some(1.0)
                    && up(&agent, "web").await == Some(1.0)
            },
        )
        .await;
    // The selector is on the watch: the API was never asked for all pods.
    let requests = api.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r.contains("/pods"))
            .all(|r| r.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "{requests:#?}"
    );
    let t = get_json(&agent.url("/api/v1/targets")).await;
    let cart = t["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["labels"]["pod"] == "cart")
        .unwrap()
        .clone();
    assert_eq!(cart["labels"]["namespace"], "shop");
    assert_eq!(
        cart["labels"]["instance"],
        format!("127.0.0.1:{}", a.port())
    );
    assert_eq!(
        cart["discoveredLabels"]["__meta_kubernetes_pod_node_name"],
        "node-a"
    );
    assert_eq!(
        cart["discoveredLabels"]["__meta_kubernetes_pod_ready"],
        "true"
    );
    // The unannotated pod is dropped, and listed so.
    assert!(t["data"]["droppedTargets"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["discoveredLabels"]["__meta_kubernetes_pod_name"] == "quiet"));

    // A pod deleted: its target goes and its series go stale.
    assert!(api.delete("pods", "shop", "cart"));
    agent
        .eventually(
            "the deleted pod's target gone and stale",
            Duration::from_secs(20),
            || async { active_pods(&agent).await == ["web"] && up(&agent, "cart").await.is_none() },
        )
        .await;
    assert_eq!(up(&agent, "web").await, Some(1.0));

    // An API outage: the targets stay, the status says why.
    api.outage(true);
    agent
        .eventually("the outage reported", Duration::from_secs(30), || async {
            discovery_status(&agent).await["health"] == "down"
        })
        .await;
    let status = discovery_status(&agent).await;
    assert!(
        status["lastError"].as_str().unwrap().contains("503"),
        "{status}"
    );
    assert_eq!(active_pods(&agent).await, ["web"]);
    let metrics = agent.self_metrics().await;
    assert!(
        fixtures::sample_value(
            &metrics,
            "wasmon_sd_last_refresh_failed{job=\"kubernetes-pods\",config=\"kubernetes_sd_configs[0]\"}"
        ) == Some(1.0),
        "{metrics}"
    );

    // Back, with a rotated token: the agent reads the new one from its file.
    std::fs::write(agent.dir.path().join("token"), "token-2\n").unwrap();
    api.set_token("token-2");
    api.outage(false);
    api.apply("pods", scraped_pod("cart", "node-a", a.port()));
    agent
        .eventually(
            "recovered with the new token",
            Duration::from_secs(40),
            || async {
                discovery_status(&agent).await["health"] == "up"
                    && active_pods(&agent).await == ["cart", "web"]
            },
        )
        .await;
    assert_eq!(api.seen_auth().last().unwrap(), "Bearer token-2");
}
