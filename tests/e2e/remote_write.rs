//! End to end against a real Prometheus (Debian's /usr/bin/prometheus,
//! 2.42, with its remote-write receiver on 127.0.0.1): wasmon scrapes a
//! local target and remote-writes it; the samples are queried back from
//! Prometheus. Then Prometheus goes down (wasmon retries, a backlog builds
//! up in its WAL), wasmon is killed with SIGKILL, both come back on their
//! data directories: every sample wasmon stored, before, during and after
//! the outage, must be at Prometheus, and nothing else.

use crate::fixtures;
use crate::fixtures::upstream::{prometheus_installed, Prometheus};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde_json::Value;

/// No scrape jobs: everything Prometheus holds came through remote write.
const PROMETHEUS_CONFIG: &str = "global:\n  scrape_interval: 1m\n";
const PROMETHEUS_ARGS: &[&str] = &["--web.enable-remote-write-receiver"];

/// A target whose counter goes up by one on every scrape.
async fn counting_target() -> std::net::SocketAddr {
    let n = Arc::new(AtomicU64::new(0));
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let n = n.clone();
            async move {
                let v = n.fetch_add(1, Ordering::SeqCst) + 1;
                format!("# TYPE e2e_scrapes_total counter\ne2e_scrapes_total {v}\n")
            }
        }),
    );
    fixtures::serve(app).await
}

const CONFIG: &str = r#"
[global]
scrape_interval = "300ms"
scrape_timeout = "250ms"
external_labels = { site = "e2e" }

[web]
listen_address = "{{LISTEN}}"

[storage]
path = "data"
wal_sync_interval = "100ms"

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"] }]

[[remote_write]]
url = "http://{{PROM}}/api/v1/write"
name = "prom"
write_relabel_configs = [{ source_labels = ["__name__"], regex = "scrape_duration_seconds", action = "drop" }]
[remote_write.queue_config]
batch_send_deadline = "100ms"
min_backoff = "50ms"
max_backoff = "500ms"
"#;

/// All raw samples of `e2e_scrapes_total` in the last 10 minutes, as
/// (ms timestamp → value), from a Prometheus-compatible query API.
async fn samples(base: &str) -> (BTreeMap<i64, String>, Value) {
    let r: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", "e2e_scrapes_total[10m]")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    let result = r["data"]["result"].as_array().cloned().unwrap_or_default();
    assert!(result.len() <= 1, "one series expected: {r}");
    if let Some(s) = result.first() {
        for v in s["values"].as_array().unwrap() {
            let t = (v[0].as_f64().unwrap() * 1000.0).round() as i64;
            out.insert(t, v[1].as_str().unwrap().to_string());
        }
    }
    let metric = result
        .first()
        .map(|s| s["metric"].clone())
        .unwrap_or(Value::Null);
    (out, metric)
}

fn metric_value(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l.contains("remote_name=\"prom\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_to_prometheus_survives_kill9() {
    if !prometheus_installed("remote_write") {
        return;
    }
    let prom = Prometheus::start(PROMETHEUS_CONFIG, PROMETHEUS_ARGS, None).await;
    let prom_url = format!("http://{}", prom.addr);
    let app = counting_target().await;
    let config = CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace("{{PROM}}", &prom.addr.to_string());
    let agent = fixtures::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await;

    // Samples arrive at Prometheus with the scrape's labels, the external
    // label, and the values the target served.
    agent
        .eventually(
            "5 samples at prometheus",
            Duration::from_secs(60),
            || async { samples(&prom_url).await.0.len() >= 5 },
        )
        .await;
    let (got, metric) = samples(&prom_url).await;
    assert_eq!(metric["job"], "app", "{metric}");
    assert_eq!(metric["instance"], app.to_string(), "{metric}");
    assert_eq!(metric["site"], "e2e", "{metric}");
    let values: Vec<f64> = got.values().map(|v| v.parse().unwrap()).collect();
    assert!(
        values.windows(2).all(|w| w[1] == w[0] + 1.0),
        "consecutive scrapes: {values:?}"
    );
    // write_relabel_configs dropped scrape_duration_seconds; `up` went through.
    let q = |expr: &'static str| {
        let u = prom_url.clone();
        async move {
            let r: Value = reqwest::Client::new()
                .get(format!("{u}/api/v1/query"))
                .query(&[("query", expr)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["data"]["result"].as_array().unwrap().len()
        }
    };
    assert_eq!(q("up{job=\"app\"}").await, 1);
    assert_eq!(q("scrape_duration_seconds").await, 0);
    let m = agent.self_metrics().await;
    assert!(
        metric_value(&m, "wasmon_remote_storage_samples_total") > 0.0,
        "{m}"
    );
    assert_eq!(metric_value(&m, "wasmon_remote_storage_shards"), 1.0, "{m}");

    // Prometheus goes away: wasmon keeps scraping and retrying, the
    // samples pile up in its WAL. Then SIGKILL wasmon mid-stream, bring
    // Prometheus back, restart wasmon on the same data.
    let prom_state = prom.stop();
    let down_at = chrono::Utc::now().timestamp_millis();
    agent
        .eventually(
            "retries while prometheus is down",
            Duration::from_secs(30),
            || async {
                let m = agent.self_metrics().await;
                metric_value(&m, "wasmon_remote_storage_samples_retried_total") > 0.0
            },
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let killed_at = chrono::Utc::now().timestamp_millis();
    let dir = agent.kill9();
    let prom = Prometheus::start(PROMETHEUS_CONFIG, PROMETHEUS_ARGS, Some(prom_state)).await;
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    agent
        .eventually(
            "samples after the restart at prometheus",
            Duration::from_secs(60),
            || async {
                samples(&prom_url)
                    .await
                    .0
                    .keys()
                    .filter(|&&t| t > killed_at + 500)
                    .count()
                    >= 5
            },
        )
        .await;

    // Every sample wasmon stored (before the kill, and after it) reaches
    // Prometheus, and Prometheus has none that wasmon does not.
    let (local, _) = samples(&agent.url("")).await;
    let newest = *local.keys().last().unwrap();
    assert!(local.keys().any(|&t| t < down_at) && newest > killed_at + 500);
    assert!(
        local
            .keys()
            .filter(|&&t| t > down_at && t < killed_at)
            .count()
            >= 4,
        "wasmon scraped while prometheus was down"
    );
    agent
        .eventually("prometheus caught up", Duration::from_secs(30), || async {
            let (p, _) = samples(&prom_url).await;
            local.keys().all(|t| p.contains_key(t))
        })
        .await;
    let (remote, _) = samples(&prom_url).await;
    let remote: BTreeMap<i64, String> = remote.into_iter().filter(|(t, _)| *t <= newest).collect();
    assert_eq!(
        remote,
        local,
        "prometheus must hold exactly what wasmon stored\nwasmon log:\n{}\nprometheus log:\n{}",
        agent.logs(),
        prom.logs()
    );
    let m = agent.self_metrics().await;
    assert_eq!(
        metric_value(&m, "wasmon_remote_storage_samples_failed_total"),
        0.0,
        "{m}"
    );
    assert!(
        !prom.logs().contains("Out of order sample"),
        "a resent sample was out of order at prometheus:\n{}",
        prom.logs()
    );
}
