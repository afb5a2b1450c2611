//! A Prometheus user's files as they are: `wasmon run --config
//! prometheus.yml --config alertmanager.yml` next to Debian's Prometheus
//! 2.42 and Alertmanager 0.25 on the same files and target gives the same
//! series, recording-rule result, firing alert and notification;
//! reload re-imports (a broken file keeps the running config); and
//! `wasmon config import` + `wasmon check config` through the binary.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::Router;

use serde_json::{json, Value};

use crate::fixtures::upstream::{prometheus_installed, Alertmanager, Prometheus};
use crate::fixtures::{self, text, wasmon, AgentProcess};

const PAGE: &str = "\
# TYPE app_requests_total counter
app_requests_total{code=\"200\",path=\"/a\"} 10
app_requests_total{code=\"500\",path=\"/a\"} 2
# TYPE app_temp gauge
app_temp 42
# TYPE go_goroutines gauge
go_goroutines 7
";

const RULES: &str = "\
groups:
  - name: g
    interval: 1s
    rules:
      - record: job:app_requests:sum
        expr: sum by (job) (app_requests_total)
      - alert: TooHot
        expr: app_temp > 40
        labels: {severity: page}
";

/// A prometheus.yml scraping `target` every second, with relabeling,
/// metric relabeling, external labels and `rules` as its rule file.
fn prometheus_yml(target: &str, rules: &std::path::Path) -> String {
    prometheus_yml_alerting(target, rules, None)
}

/// [`prometheus_yml`] sending alerts to the Alertmanager at `am`.
fn prometheus_yml_alerting(target: &str, rules: &std::path::Path, am: Option<&str>) -> String {
    let alerting = am
        .map(|am| {
            format!(
                "alerting:\n  alertmanagers:\n    - static_configs: [{{targets: [\"{am}\"]}}]\n"
            )
        })
        .unwrap_or_default();
    format!(
        r#"{alerting}global:
  scrape_interval: 1s
  evaluation_interval: 1s
  external_labels: {{site: lab}}
rule_files: ["{rules}"]
scrape_configs:
  - job_name: app
    static_configs:
      - targets: ["{target}"]
        labels: {{team: core}}
    relabel_configs:
      - source_labels: [__address__]
        regex: "([^:]+):.*"
        target_label: host
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: go_.*
        action: drop
"#,
        rules = rules.display()
    )
}

/// An alertmanager.yml notifying the webhook `url` of every group.
fn alertmanager_yml(url: &str) -> String {
    format!(
        r#"route:
  receiver: hook
  group_by: [alertname]
  group_wait: 1s
  group_interval: 1s
receivers:
  - name: hook
    webhook_configs:
      - url: {url}
"#
    )
}

/// What a webhook notification says that both sides must agree on (times,
/// URLs and the group key's form legitimately differ).
fn gist(body: &Value) -> Value {
    let alerts: Vec<Value> = body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| json!({"labels": a["labels"], "status": a["status"], "annotations": a["annotations"]}))
        .collect();
    json!({
        "receiver": body["receiver"],
        "status": body["status"],
        "groupLabels": body["groupLabels"],
        "commonLabels": body["commonLabels"],
        "alerts": alerts,
    })
}

async fn serve_page() -> std::net::SocketAddr {
    fixtures::serve(Router::new().route("/metrics", axum::routing::get(|| async { PAGE }))).await
}

/// `query`'s result on the API at `base` as (labels, value) pairs, sorted.
async fn instant(base: &str, query: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut out: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| (r["metric"].to_string(), r["value"][1].to_string()))
        .collect();
    out.sort();
    out
}

/// The label sets of the job's series (the scrape's own `scrape_*` series
/// aside: Prometheus 2.42 and wasmon write the same five, checked by name).
async fn job_series(base: &str) -> BTreeSet<String> {
    instant(base, r#"{job="app"}"#)
        .await
        .into_iter()
        .map(|(labels, _)| labels)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_series_rules_and_alerts_as_prometheus_on_the_same_yml() {
    if !prometheus_installed("import_prometheus side by side") {
        return;
    }
    let _heavy = fixtures::heavy();
    let target = serve_page().await;
    let hook = fixtures::Receiver::start().await;
    // The same alertmanager.yml but for where the webhook posts, so the
    // two sides' notifications can be told apart.
    let am = Alertmanager::start(&alertmanager_yml(&format!("http://{}/am", hook.addr))).await;
    let dir = fixtures::agent_dir_with(&["webhook"]);
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let am_addr = am.addr.to_string();
    let yml = prometheus_yml_alerting(&target.to_string(), &rules, Some(&am_addr));
    let prom = Prometheus::start(&yml, &[], None).await;
    let wasmon_am = alertmanager_yml(&format!("http://{}/wasmon", hook.addr));
    let agent = AgentProcess::start_yaml(
        dir,
        &[("prometheus.yml", &yml), ("alertmanager.yml", &wasmon_am)],
    )
    .await;
    let p = prom.url("");
    let w = agent.url("");

    // Both have scraped, evaluated and fired (`for` is 0: firing at the
    // first evaluation that sees the sample).
    let firing = r#"ALERTS{alertname="TooHot",alertstate="firing"}"#;
    let start = Instant::now();
    loop {
        let mut ready = true;
        for base in [&p, &w] {
            ready &= !instant(base, "job:app_requests:sum").await.is_empty()
                && !instant(base, firing).await.is_empty()
                && !instant(base, "app_temp").await.is_empty();
        }
        if ready {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not both ready within 60s\nwasmon:\n{}\nprometheus:\n{}",
            agent.logs(),
            prom.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let (ps, ws) = (job_series(&p).await, job_series(&w).await);
    assert_eq!(ws, ps, "the job's series (names and labels)");
    assert!(
        ws.iter()
            .any(|l| l.contains(r#""host":"127.0.0.1""#) && l.contains(r#""team":"core""#)),
        "relabeling and target labels applied: {ws:?}"
    );
    assert!(
        !ws.iter().any(|l| l.contains("go_goroutines")),
        "metric_relabel dropped go_*: {ws:?}"
    );
    assert_eq!(
        instant(&w, "job:app_requests:sum").await,
        instant(&p, "job:app_requests:sum").await,
        "the recording rule's result"
    );
    let alert_labels = |v: Vec<(String, String)>| v.into_iter().map(|(l, _)| l).collect::<Vec<_>>();
    assert_eq!(
        alert_labels(instant(&w, firing).await),
        alert_labels(instant(&p, firing).await),
        "the firing alert's labels"
    );
    // The notification: Prometheus -> Alertmanager -> webhook beside
    // wasmon's own rules -> route -> webhook plugin. (wasmon also sends its
    // alerts to the Alertmanager of `alerting.alertmanagers`; they carry
    // the same labels, so Alertmanager sees one alert.)
    let first = |path: &str| {
        hook.requests()
            .iter()
            .find(|r| r.path == path)
            .map(|r| gist(&serde_json::from_slice(&r.body).unwrap()))
    };
    let start = Instant::now();
    while first("/am").is_none() || first("/wasmon").is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no notification from both within 60s: {:?}\nwasmon:\n{}\nalertmanager:\n{}",
            hook.requests()
                .iter()
                .map(|r| r.path.clone())
                .collect::<Vec<_>>(),
            agent.logs(),
            am.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (theirs, ours) = (first("/am").unwrap(), first("/wasmon").unwrap());
    assert_eq!(ours, theirs, "the notification");
    // External labels are on the alerts each sends out.
    assert_eq!(ours["commonLabels"]["site"], "lab", "{ours}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reimports_and_a_broken_yml_keeps_the_running_config() {
    let target = serve_page().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    std::fs::write(&rules, RULES).unwrap();
    let yml = prometheus_yml(&target.to_string(), &rules);
    let agent = AgentProcess::start_yaml(dir, &[("prometheus.yml", &yml)]).await;
    let path = agent.config_path().with_file_name("prometheus.yml");
    let client = reqwest::Client::new();
    let jobs = || async {
        let v = fixtures::get_json(&agent.url("/api/v1/targets")).await;
        let mut jobs: Vec<String> = v["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|t| t["labels"]["job"].as_str().unwrap_or_default().to_string())
            .collect();
        jobs.sort();
        jobs
    };
    assert_eq!(jobs().await, ["app"]);

    // A second job: the reload re-imports the file.
    let two = yml.replace(
        "  - job_name: app\n",
        &format!("  - job_name: other\n    static_configs: [{{targets: [\"{target}\"]}}]\n  - job_name: app\n"),
    );
    std::fs::write(&path, &two).unwrap();
    let r = client.post(agent.url("/-/reload")).send().await.unwrap();
    assert!(
        r.status().is_success(),
        "{:?}\n{}",
        r.status(),
        agent.logs()
    );
    agent
        .eventually(
            "the reloaded job's target",
            Duration::from_secs(20),
            || async { jobs().await == ["app", "other"] },
        )
        .await;

    // A file Prometheus refuses: the reload fails naming file:line, the
    // running config stays.
    std::fs::write(
        &path,
        two.replace("scrape_interval: 1s", "scrape_interval: 1 s"),
    )
    .unwrap();
    let r = client.post(agent.url("/-/reload")).send().await.unwrap();
    assert!(!r.status().is_success());
    let body = r.text().await.unwrap();
    assert!(body.contains("prometheus.yml:2"), "{body}");
    assert_eq!(jobs().await, ["app", "other"]);
}

#[test]
fn config_import_then_check_config_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let yml = dir.path().join("prometheus.yml");
    std::fs::write(
        &yml,
        "global:\n  scrape_interval: 30s\nscrape_configs:\n  - job_name: a\n    static_configs: [{targets: [\"127.0.0.1:9100\"]}]\n    ec2_sd_configs:\n      - region: eu-west-1\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let toml = out_dir.join("wasmon.toml");
    let out = wasmon([
        "config".as_ref(),
        "import".as_ref(),
        "--prometheus".as_ref(),
        yml.as_os_str(),
        "--out".as_ref(),
        toml.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want = format!(
        "{}:6: unsupported: scrape_configs[0].ec2_sd_configs: ",
        yml.display()
    );
    assert!(stderr.contains(&want), "{stderr}");
    let out = wasmon(["check".as_ref(), "config".as_ref(), toml.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out));

    // The yml itself checks too (the way `run --config` reads it) ...
    let out = wasmon(["check".as_ref(), "config".as_ref(), yml.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out));
    // ... and a file Prometheus refuses fails, naming file:line.
    std::fs::write(&yml, "scrape_configs:\n  - job_name: a\n  - job_name: a\n").unwrap();
    let out = wasmon(["check".as_ref(), "config".as_ref(), yml.as_os_str()]);
    assert!(!out.status.success(), "{}", text(&out));
    let want = format!(
        "{}:3: found multiple scrape configs with job name \"a\"",
        yml.display()
    );
    assert!(text(&out).contains(&want), "{}", text(&out));
}
