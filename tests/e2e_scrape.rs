//! End to end through the real binary: static and file-discovered targets
//! are scraped into the store, visible through the Prometheus API and the
//! agent's own metrics; file SD changes apply live; a kill -9 and restart
//! keeps what was written (WAL replay).

#[path = "../agent/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde_json::Value;

async fn metrics_server(page: &'static str) -> std::net::SocketAddr {
    let app = Router::new().route("/metrics", get(move || async move { page }));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    addr
}

async fn get_json(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

const CONFIG: &str = r#"
[global]
scrape_interval = "300ms"
scrape_timeout = "250ms"

[web]
listen_address = "{{LISTEN}}"

[storage]
path = "data"
wal_sync_interval = "100ms"

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"], labels = { env = "test" } }]

[[scrape_configs]]
job_name = "discovered"
file_sd_configs = [{ files = ["targets/*.json"], refresh_interval = "1m" }]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_store_query_and_restart() {
    let app =
        metrics_server("# TYPE http_requests_total counter\nhttp_requests_total{path=\"/\"} 7\n")
            .await;
    let other = metrics_server("# TYPE queue_depth gauge\nqueue_depth 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/a.json"),
        format!(r#"[{{"targets": ["{other}"], "labels": {{"team": "infra"}}}}]"#),
    )
    .unwrap();
    let config = CONFIG.replace("{{APP}}", &app.to_string());
    let agent = common::AgentProcess::start(dir, &config).await;

    // Both targets come up.
    agent
        .eventually("two healthy targets", Duration::from_secs(30), || async {
            let t = get_json(&agent.url("/api/v1/targets")).await;
            let active = t["data"]["activeTargets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            active.len() == 2 && active.iter().all(|t| t["health"] == "up")
        })
        .await;
    let t = get_json(&agent.url("/api/v1/targets")).await;
    let disc = t["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["scrapePool"] == "discovered")
        .unwrap()
        .clone();
    assert_eq!(disc["labels"]["team"], "infra");
    assert!(disc["discoveredLabels"]["__meta_filepath"]
        .as_str()
        .unwrap()
        .ends_with("targets/a.json"));
    assert_eq!(disc["scrapeUrl"], format!("http://{other}/metrics"));

    // The samples are in the store with the target's labels.
    let s = get_json(&agent.url("/api/v1/series?match[]=http_requests_total")).await;
    assert_eq!(
        s["data"],
        serde_json::json!([{"__name__": "http_requests_total", "env": "test", "instance": app.to_string(), "job": "app", "path": "/"}])
    );
    let s = get_json(&agent.url("/api/v1/series?match[]=up")).await;
    assert_eq!(s["data"].as_array().unwrap().len(), 2);
    let v = get_json(&agent.url("/api/v1/label/job/values")).await;
    assert_eq!(v["data"], serde_json::json!(["app", "discovered"]));
    let bad = reqwest::get(agent.url("/api/v1/series?match[]=up{"))
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    // Store and scrape figures on the agent's own /metrics.
    let m = reqwest::get(agent.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let head_series: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("wasmon_tsdb_head_series "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(head_series >= 12.0, "{m}"); // 2 scraped + 2 x 5 synthetic
    assert!(m.contains("wasmon_scrape_samples_appended_total"));

    // Removing the file drops the discovered target.
    std::fs::write(agent.dir.path().join("targets/a.json"), "[]").unwrap();
    agent
        .eventually(
            "the discovered target to go",
            Duration::from_secs(30),
            || async {
                let t = get_json(&agent.url("/api/v1/targets")).await;
                t["data"]["activeTargets"].as_array().map(|a| a.len()) == Some(1)
            },
        )
        .await;

    // kill -9, restart on the same data: the series are still there.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dir = agent.kill9();
    let agent = common::AgentProcess::start(dir, &config).await;
    let s = get_json(&agent.url("/api/v1/series?match[]=queue_depth")).await;
    assert_eq!(
        s["data"].as_array().unwrap().len(),
        1,
        "{s}\n{}",
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_query_api_over_scraped_data() {
    let app = metrics_server("# TYPE http_requests_total counter\nhttp_requests_total{path=\"/\"} 7\nhttp_requests_total{path=\"/x\"} 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("{{APP}}", &app.to_string()).replace(
        "file_sd_configs = [{ files = [\"targets/*.json\"], refresh_interval = \"1m\" }]",
        "",
    );
    let agent = common::AgentProcess::start(dir, &config).await;
    // Over 3.6 s of scrapes, so a 3 s range query has data at every step.
    agent
        .eventually("a dozen scrapes", Duration::from_secs(30), || async {
            let r = get_json(&agent.url("/api/v1/query?query=count_over_time(up[1m])")).await;
            r["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                >= 13.0
        })
        .await;

    // Instant query, Prometheus' vector shape.
    let r = get_json(&agent.url("/api/v1/query?query=sum(http_requests_total)")).await;
    assert_eq!(r["status"], "success");
    assert_eq!(r["data"]["resultType"], "vector");
    assert_eq!(r["data"]["result"][0]["metric"], serde_json::json!({}));
    assert_eq!(r["data"]["result"][0]["value"][1], "10");
    // POST form, as Grafana sends it; `time` honored.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let r: Value = reqwest::Client::new()
        .post(agent.url("/api/v1/query"))
        .form(&[
            ("query", "http_requests_total{path=\"/x\"}"),
            ("time", &format!("{now:.3}")),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["data"]["result"][0]["metric"]["path"], "/x");
    assert_eq!(r["data"]["result"][0]["metric"]["job"], "app");
    assert_eq!(r["data"]["result"][0]["value"][1], "3");
    // Scalar and range queries.
    let r = get_json(&agent.url("/api/v1/query?query=1%2B1&time=100")).await;
    assert_eq!(
        r["data"],
        serde_json::json!({"resultType": "scalar", "result": [100.0, "2"]})
    );
    let start = now - 3.0;
    let r = get_json(&agent.url(&format!(
        "/api/v1/query_range?query=up&start={start}&end={now}&step=1"
    )))
    .await;
    assert_eq!(r["data"]["resultType"], "matrix");
    let values = r["data"]["result"][0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 4, "{r}");
    assert!(values.iter().all(|v| v[1] == "1"));

    // Errors: Prometheus' types and status codes.
    let r = reqwest::get(agent.url("/api/v1/query?query=sum("))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorType"], "bad_data");
    let r = reqwest::get(agent.url(&format!(
        "/api/v1/query_range?query=up&start={start}&end={now}&step=0"
    )))
    .await
    .unwrap();
    assert_eq!(r.status(), 400);
    let r = reqwest::get(agent.url("/api/v1/query_range?query=up&start=0&end=100000&step=1"))
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("11,000 points"),
        "{body}"
    );
    let r = reqwest::get(
        agent.url("/api/v1/query?query=http_requests_total%20%2B%20on()%20http_requests_total"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["errorType"], "execution");
    let bi = get_json(&agent.url("/api/v1/status/buildinfo")).await;
    assert_eq!(bi["status"], "success");
}

/// Issue #17: 15,000 series of 5,000 `endpoint` values one character apart
/// (`/api/e104`, `/api/e184`) from one target. Grouping by `endpoint` once
/// merged 228 pairs whose label hashes collided (4,772 groups); every
/// group must stand alone, instant and range, and `topk` must pick the
/// right ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_over_5000_endpoints_are_exact() {
    const ENDPOINTS: usize = 5000;
    let mut page = String::from("# TYPE http_requests_total counter\n");
    for e in 0..ENDPOINTS {
        for (c, code) in ["200", "404", "500"].iter().enumerate() {
            let v = e * 3 + c + 1;
            page.push_str(&format!(
                "http_requests_total{{endpoint=\"/api/e{e}\",code=\"{code}\"}} {v}\n"
            ));
        }
    }
    let app = metrics_server(Box::leak(page.into_boxed_str())).await;
    let config = CONFIG
        .replace("{{APP}}", &app.to_string())
        .replace(
            "file_sd_configs = [{ files = [\"targets/*.json\"], refresh_interval = \"1m\" }]",
            "",
        )
        .replace("\"300ms\"", "\"1s\"")
        .replace("\"250ms\"", "\"900ms\"");
    let agent = common::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await;
    let query = |q: &str| {
        let url = agent.url("/api/v1/query");
        let q = q.to_string();
        async move {
            let r: Value = reqwest::Client::new()
                .post(url)
                .form(&[("query", q.as_str())])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(r["status"], "success", "{q}: {r}");
            r["data"]["result"].as_array().cloned().unwrap_or_default()
        }
    };
    let value = |r: &Value| -> f64 { r["value"][1].as_str().unwrap().parse().unwrap() };
    agent
        .eventually(
            "two scrapes of 15,000 series",
            Duration::from_secs(60),
            || async {
                let r = query("count(count_over_time(http_requests_total[1m]) >= 2)").await;
                r.first().map(value) == Some(15_000.0)
            },
        )
        .await;

    let r = query("count(count by (endpoint) (http_requests_total))").await;
    assert_eq!(value(&r[0]), ENDPOINTS as f64);
    let r = query("count(sum without (code) (http_requests_total))").await;
    assert_eq!(value(&r[0]), ENDPOINTS as f64);
    // Each endpoint sums 3 consecutive values: 9e + 6; the top five are
    // the last five endpoints.
    let r = query("topk(5, sum by (endpoint) (http_requests_total))").await;
    let mut top: Vec<(String, f64)> = r
        .iter()
        .map(|s| {
            (
                s["metric"]["endpoint"].as_str().unwrap().to_string(),
                value(s),
            )
        })
        .collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let want: Vec<(String, f64)> = (ENDPOINTS - 5..ENDPOINTS)
        .rev()
        .map(|e| (format!("/api/e{e}"), (9 * e + 6) as f64))
        .collect();
    assert_eq!(top, want);
    // Every group's sum is 9e + 6; two merged groups would sum to 3 mod 9.
    let r = query("sum by (endpoint) (http_requests_total) % 9 != 6").await;
    assert!(r.is_empty(), "{r:?}");
    // And column-wise (a range query).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let r = get_json(&agent.url(&format!(
        "/api/v1/query_range?query=count(count%20by%20(endpoint)%20(http_requests_total))&start={}&end={now}&step=1",
        now - 2.0
    )))
    .await;
    let values = r["data"]["result"][0]["values"].as_array().unwrap();
    assert!(!values.is_empty(), "{r}");
    assert!(values.iter().all(|v| v[1] == "5000"), "{r}");
}

/// An agent scraping `target` every second into one-minute blocks, with
/// `storage_extra` added to its `[storage]` section.
async fn one_minute_blocks(
    target: std::net::SocketAddr,
    storage_extra: &str,
) -> common::AgentProcess {
    let config = format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "900ms"

[web]
listen_address = "{{{{LISTEN}}}}"

[storage]
path = "data"
block_duration = "1m"
{storage_extra}

[[scrape_configs]]
job_name = "app"
static_configs = [{{ targets = ["{target}"] }}]
"#
    );
    common::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await
}

/// meta.json of every block in `data`.
fn block_metas(data: &std::path::Path) -> Vec<Value> {
    std::fs::read_dir(data)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("meta.json")).ok())
        .map(|b| serde_json::from_slice(&b).unwrap())
        .collect()
}

/// `[storage] block_duration` reaches the store the real binary opens: a
/// target exposing a sample 10 minutes old (an explicit timestamp, honored)
/// next to a current one makes the head span more than 1.5 one-minute
/// blocks, so the first compaction (the maintenance thread runs it once a
/// minute) persists a block exactly one minute long. With the default 2 h
/// the head would span far less than 3 h and no block would be cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_duration_sets_the_persisted_block_range() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let old = now - 10 * 60_000;
    let page: &'static str = Box::leak(
        format!("# TYPE old_gauge gauge\nold_gauge 1 {old}\n# TYPE cur_gauge gauge\ncur_gauge 2\n")
            .into_boxed_str(),
    );
    let target = metrics_server(page).await;
    let agent = one_minute_blocks(target, "").await;
    let data = agent.dir.path().join("data");
    let metas = || block_metas(&data);
    agent
        .eventually("a persisted block", Duration::from_secs(150), || {
            let n = metas().len();
            async move { n > 0 }
        })
        .await;
    // The same compaction may also persist the current minute's block:
    // pick the one holding the old sample (directory order is arbitrary).
    let metas = metas();
    let range = |m: &Value| {
        (
            m["minTime"].as_i64().unwrap(),
            m["maxTime"].as_i64().unwrap(),
        )
    };
    let m = metas
        .iter()
        .find(|m| {
            let (mint, maxt) = range(m);
            mint <= old && old < maxt
        })
        .unwrap_or_else(|| panic!("old sample at {old} in no block: {metas:?}"));
    let (mint, maxt) = range(m);
    assert_eq!(maxt - mint, 60_000, "{m}");
    assert_eq!(m["stats"]["numSamples"], 1, "{m}");
}

/// Level compaction through the real binary: a target exposes six samples
/// with explicit timestamps a minute apart, half an hour old, so the first
/// compactions persist six one-minute blocks; with `max_block_duration =
/// "3m"` the maintenance thread merges them into two level-2 blocks of
/// three minutes, deletes the parents, and every sample stays queryable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_merged_up_to_max_block_duration() {
    const R: i64 = 180_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Aligned to the 3-minute windows the merges use.
    let a = (now - 30 * 60_000).div_euclid(R) * R;
    let mut page = String::from("# TYPE old_gauge gauge\n");
    for k in 0..6 {
        page += &format!("old_gauge{{k=\"{k}\"}} {k} {}\n", a + k * 60_000 + 1_000);
    }
    page += "# TYPE cur_gauge gauge\ncur_gauge 2\n";
    let target = metrics_server(Box::leak(page.into_boxed_str())).await;
    let agent = one_minute_blocks(target, "max_block_duration = \"3m\"").await;
    let data = agent.dir.path().join("data");
    // meta.json of every block of the old range, by min time.
    let old_blocks = || -> Vec<Value> {
        let mut v = block_metas(&data);
        v.retain(|m| m["minTime"].as_i64().unwrap() < a + 2 * R);
        v.sort_by_key(|m| m["minTime"].as_i64().unwrap());
        v
    };
    agent
        .eventually(
            "two merged blocks over the old range",
            Duration::from_secs(240),
            || {
                let v = old_blocks();
                async move { v.len() == 2 && v.iter().all(|m| m["compaction"]["level"] == 2) }
            },
        )
        .await;
    let v = old_blocks();
    for (i, m) in v.iter().enumerate() {
        let mint = m["minTime"].as_i64().unwrap();
        assert_eq!(mint, a + i as i64 * R, "{m}");
        assert_eq!(m["maxTime"].as_i64().unwrap(), mint + R, "{m}");
        assert_eq!(m["stats"]["numSamples"], 3, "{m}");
        assert_eq!(m["stats"]["numSeries"], 3, "{m}");
        assert_eq!(
            m["compaction"]["sources"].as_array().unwrap().len(),
            3,
            "{m}"
        );
    }
    // The parents are gone from disk (only the two blocks cover the old
    // range, above); the merges are counted.
    let metrics = reqwest::get(agent.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let merges = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wasmon_tsdb_block_merges_total "))
        .map(|v| v.trim().parse::<f64>().unwrap());
    assert!(merges >= Some(2.0), "{merges:?}");
    // Every old sample answers a query over the merged blocks.
    let q = format!(
        "/api/v1/query?query=sum(sum_over_time(old_gauge[10m]))&time={}",
        (a + 2 * R) as f64 / 1000.0
    );
    let r = get_json(&agent.url(&q)).await;
    assert_eq!(r["data"]["result"][0]["value"][1], "15", "{r}");
}
