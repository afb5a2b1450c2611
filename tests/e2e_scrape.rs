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

/// One request must not kill the agent: 50,000 nested parentheses (the query
/// that overflowed a worker's stack and aborted the process) and the other
/// recursive shapes are refused with a 400 that names the limit and where it
/// was crossed; queries at the limit answer; the agent stays up and ready.
/// Parse errors name their position as Prometheus does, and the parameter
/// errors use its texts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_malformed_queries_get_a_400_and_the_agent_stays_up() {
    let app = metrics_server("# TYPE up gauge\nthing 1\n").await;
    let dir = tempfile::tempdir().unwrap();
    let config = CONFIG.replace("{{APP}}", &app.to_string()).replace(
        "file_sd_configs = [{ files = [\"targets/*.json\"], refresh_interval = \"1m\" }]",
        "",
    );
    let agent = common::AgentProcess::start(dir, &config).await;
    let client = reqwest::Client::new();
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let req = client.post(agent.url(path)).form(&form);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let nested = |open: &str, inner: &str, close: &str, n: usize| {
        format!("{}{inner}{}", open.repeat(n), close.repeat(n))
    };
    let limit = wasmon::promql::syntax::MAX_DEPTH;
    let range = |q: String| {
        vec![
            ("query", q),
            ("start", "0".to_string()),
            ("end", "600".to_string()),
            ("step", "60".to_string()),
        ]
    };

    let too_deep = [
        (nested("(", "1", ")", 50_000), "1:1001:"),
        (format!("{}1", "-".repeat(50_000)), "1:1001:"),
        (format!("1{}", "+1".repeat(50_000)), "1:2002:"),
        (nested("abs(", "vector(1)", ")", 50_000), "1:4004:"),
        (nested("(", "1", ")", limit + 1), "1:1001:"),
    ];
    for (q, at) in too_deep {
        for (path, form) in [
            ("/api/v1/query", vec![("query", q.clone())]),
            ("/api/v1/query_range", range(q.clone())),
        ] {
            let (status, body) = post(path, form).await;
            assert_eq!(status, 400, "{path} {}: {body}", &q[..20]);
            assert_eq!(body["errorType"], "bad_data");
            assert_eq!(
                body["error"],
                format!("invalid parameter \"query\": {at} parse error: query is nested too deeply: more than {limit} levels of parentheses, brackets and operators"),
                "{path}"
            );
        }
    }
    // At the limit, each shape answers (evaluated off the 2 MiB workers).
    for q in [
        nested("(", "1", ")", limit),
        format!("{}1", "-".repeat(limit)),
        format!("1{}", "+1".repeat(limit)),
        nested("abs(", "vector(1)", ")", limit - 1),
        nested("max_over_time(", "vector(1)", "[30s:30s])", limit / 2 - 1),
    ] {
        let (status, body) = post("/api/v1/query", vec![("query", q.clone())]).await;
        assert_eq!(status, 200, "{}: {body}", &q[..20]);
        let (status, body) = post("/api/v1/query_range", range(q.clone())).await;
        assert_eq!(status, 200, "{}: {body}", &q[..20]);
    }

    // Positions and Prometheus' texts.
    for (q, want) in [
        (
            "1 +",
            "invalid parameter \"query\": 1:4: parse error: unexpected end of input",
        ),
        (
            "foo bar",
            "invalid parameter \"query\": 1:5: parse error: unexpected identifier \"bar\"",
        ),
        (
            "up[99999999999999y]",
            "invalid parameter \"query\": 1:4: parse error: duration out of range",
        ),
        (
            "sum(up) by",
            "invalid parameter \"query\": 1:11: parse error: unexpected end of input",
        ),
    ] {
        let (status, body) = post("/api/v1/query", vec![("query", q.to_string())]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(want)), "{q}");
    }
    for (step, want) in [
        ("0", "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"),
        ("-5", "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"),
        ("1e30", "invalid parameter \"step\": cannot parse \"1e30\" to a valid duration. It overflows int64"),
    ] {
        let mut form = range("up".into());
        form[3].1 = step.into();
        let (status, body) = post("/api/v1/query_range", form).await;
        assert_eq!((status, body["error"].as_str()), (400, Some(want)), "{step}");
    }

    let ready = reqwest::get(agent.url("/-/ready")).await.unwrap();
    assert_eq!(ready.status(), 200, "{}", agent.logs());
    let (status, body) = post("/api/v1/query", vec![("query", "1+1".into())]).await;
    assert_eq!(
        (status, &body["data"]["result"][1]),
        (200, &serde_json::json!("2"))
    );
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
