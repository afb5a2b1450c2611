//! End to end through the real binary: static and file-discovered targets
//! are scraped into the store, visible through the Prometheus API and the
//! agent's own metrics; file SD changes apply live; a kill -9 and restart
//! keeps what was written (WAL replay).

use crate::fixtures;
use crate::fixtures::{get_json, metrics_server, query_value};

use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde_json::Value;

/// [`CONFIG`] with the "app" job scraping `target` and no file discovery.
fn app_only(target: std::net::SocketAddr) -> String {
    CONFIG.replace("{{APP}}", &target.to_string()).replace(
        "file_sd_configs = [{ files = [\"targets/*.json\"], refresh_interval = \"1m\" }]",
        "",
    )
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
    let agent = fixtures::AgentProcess::start(dir, &config).await;

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
    let m = agent.self_metrics().await;
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
    let agent = fixtures::AgentProcess::start(dir, &config).await;
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
    let config = app_only(app);
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    // Over 3.6 s of scrapes, so a 3 s range query has data at every step.
    agent
        .eventually("a dozen scrapes", Duration::from_secs(30), || async {
            query_value(&agent, "count_over_time(up[1m])").await >= Some(13.0)
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
    let agent = fixtures::AgentProcess::start(dir, &config).await;
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

/// Issue #17: 15,000 series of 5,000 `endpoint` values one character apart
/// (`/api/e104`, `/api/e184`) from one target. Grouping by `endpoint` once
/// merged 228 pairs whose label hashes collided (4,772 groups); every
/// group must stand alone, instant and range, and `topk` must pick the
/// right ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregations_over_5000_endpoints_are_exact() {
    let _heavy = fixtures::heavy();
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
    let agent = fixtures::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await;
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
) -> fixtures::AgentProcess {
    short_blocks_jobs(&[("app", target)], "1m", storage_extra).await
}

/// An agent scraping each (job name, target) every second into blocks of
/// `block` (a duration), looking for due compactions every second (the
/// `compaction_interval` testing knob; the default minute made these
/// tests wait for it), with `storage_extra` added to its `[storage]`.
async fn short_blocks_jobs(
    jobs: &[(&str, std::net::SocketAddr)],
    block: &str,
    storage_extra: &str,
) -> fixtures::AgentProcess {
    let mut config = format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "900ms"

[web]
listen_address = "{{{{LISTEN}}}}"

[storage]
path = "data"
block_duration = "{block}"
compaction_interval = "1s"
{storage_extra}
"#
    );
    for (job, target) in jobs {
        config += &format!(
            "\n[[scrape_configs]]\njob_name = \"{job}\"\nstatic_configs = [{{ targets = [\"{target}\"] }}]\n"
        );
    }
    fixtures::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await
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
/// blocks, so the first compaction (due within a second with the
/// `compaction_interval` knob) persists a block exactly one minute long. With the default 2 h
/// the head would span far less than 3 h and no block would be cut. (The
/// old sample is stored by the first scrape, whose commit is the first
/// into the empty head: later ones find it more than half a block behind
/// the newest sample, out of bounds, as Prometheus would.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_duration_sets_the_persisted_block_range() {
    let old = fixtures::now_ms() - 10 * 60_000;
    let page: &'static str = Box::leak(
        format!("# TYPE old_gauge gauge\nold_gauge 1 {old}\n# TYPE cur_gauge gauge\ncur_gauge 2\n")
            .into_boxed_str(),
    );
    let target = metrics_server(page).await;
    let agent = one_minute_blocks(target, "").await;
    let data = agent.dir.path().join("data");
    let metas = || block_metas(&data);
    agent
        .eventually("a persisted block", Duration::from_secs(60), || {
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
/// with explicit timestamps ten seconds apart, half an hour old, so the
/// first compactions persist six ten-second blocks; with
/// `max_block_duration = "30s"` the maintenance thread merges them into
/// two level-2 blocks of thirty seconds (once a block of current data is
/// the newest: the newest block is never merged), deletes the parents,
/// and every sample stays queryable. (Stored by the first scrape, into
/// the empty head; see above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocks_are_merged_up_to_max_block_duration() {
    const B: i64 = 10_000;
    const R: i64 = 3 * B;
    // Aligned to the windows the merges use.
    let a = (fixtures::now_ms() - 30 * 60_000).div_euclid(R) * R;
    let mut page = String::from("# TYPE old_gauge gauge\n");
    for k in 0..6 {
        page += &format!("old_gauge{{k=\"{k}\"}} {k} {}\n", a + k * B + 1_000);
    }
    page += "# TYPE cur_gauge gauge\ncur_gauge 2\n";
    let target = metrics_server(Box::leak(page.into_boxed_str())).await;
    let agent = short_blocks_jobs(&[("app", target)], "10s", "max_block_duration = \"30s\"").await;
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
            Duration::from_secs(90),
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
    let metrics = agent.self_metrics().await;
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

/// A target whose page is built on each request.
async fn dynamic_server(page: fn() -> String) -> std::net::SocketAddr {
    fixtures::serve(Router::new().route("/metrics", get(move || async move { page() }))).await
}

/// The target of `job` in `/api/v1/targets`.
async fn target_of(agent: &fixtures::AgentProcess, job: &str) -> Value {
    target_of_opt(agent, job)
        .await
        .unwrap_or_else(|| panic!("no target of job {job}"))
}

/// Issue 17, item 3: targets exporting timestamps a day ahead and from
/// 1970 (`honor_timestamps`) next to a normal one. Their samples are
/// refused per sample, counted, and shown on the targets (which stay up);
/// the head's time follows the normal target, so its samples keep being
/// stored and queried across compactions (ten-second blocks); and SIGTERM
/// exits promptly. Before, the day-ahead sample moved the head's time,
/// compaction then closed the head to everyone (every sample out of
/// bounds, reported as out of order), and the 1970 one sent compaction
/// window by window through 55 years (SIGTERM waited for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_target_clocks_do_not_stop_ingestion() {
    let normal = metrics_server("# TYPE normal_gauge gauge\nnormal_gauge 1\n").await;
    let ahead = dynamic_server(|| {
        format!(
            "# TYPE skewed_gauge gauge\nskewed_gauge{{by=\"+1d\"}} 1 {}\n",
            fixtures::now_ms() + 86_400_000
        )
    })
    .await;
    let old = dynamic_server(|| {
        format!(
            "# TYPE skewed_gauge gauge\nskewed_gauge{{by=\"1970\"}} 1 1000\nskewed_gauge{{by=\"-10y\"}} 1 {}\n",
            fixtures::now_ms() - 10 * 365 * 86_400_000
        )
    })
    .await;
    let started = fixtures::now_ms();
    let mut agent = short_blocks_jobs(
        &[("normal", normal), ("ahead", ahead), ("old", old)],
        "10s",
        "",
    )
    .await;

    // The skewed targets say why their samples are not stored, and stay up
    // (the scrape itself works, as Prometheus has it).
    agent
        .eventually(
            "the skewed targets' errors",
            Duration::from_secs(30),
            || async {
                let a = target_of(&agent, "ahead").await;
                let o = target_of(&agent, "old").await;
                // Both of the old page's samples: on a fresh head the very
                // first commit may take them (nothing bounds it yet).
                a["lastError"]
                    .as_str()
                    .unwrap()
                    .contains("too far in the future")
                    && o["lastError"].as_str().unwrap().contains("2 out of bounds")
            },
        )
        .await;
    let a = target_of(&agent, "ahead").await;
    assert_eq!(a["health"], "up", "{a}");
    let err = a["lastError"].as_str().unwrap();
    assert!(
        err.contains("skewed_gauge{by=\"+1d\"") && err.contains("ahead of the agent's clock"),
        "{err}"
    );
    assert_eq!(target_of(&agent, "normal").await["lastError"], "");

    // Compactions of the current data (ten-second blocks, due once the
    // head spans 1.5 blocks; looked for every second) with the normal
    // target stored all along: a scrape a second over 30 s, from blocks
    // and head.
    let data = agent.dir.path().join("data");
    agent
        .eventually(
            "two blocks of current data, and 30 s of the normal target",
            Duration::from_secs(90),
            || async {
                let current = block_metas(&data)
                    .iter()
                    .filter(|m| m["minTime"].as_i64().unwrap() >= started - 10_000)
                    .count();
                current >= 2
                    && query_value(&agent, "count_over_time(normal_gauge[30s])").await >= Some(27.0)
            },
        )
        .await;
    let since = fixtures::now_ms();
    agent
        .eventually(
            "normal samples after the compactions",
            Duration::from_secs(20),
            || async {
                query_value(&agent, "timestamp(normal_gauge)")
                    .await
                    .is_some_and(|t| (t * 1000.0) as i64 > since + 2000)
            },
        )
        .await;
    let r = get_json(&agent.url("/api/v1/series?match[]=skewed_gauge")).await;
    assert_eq!(r["data"], serde_json::json!([]), "{r}");

    // Counted, on the agent's and the store's counters.
    let m = agent.self_metrics().await;
    for series in [
        "wasmon_scrape_samples_rejected_total{reason=\"too_far_in_future\"}",
        "wasmon_scrape_samples_rejected_total{reason=\"out_of_bounds\"}",
        "wasmon_tsdb_samples_rejected_total{reason=\"too_far_in_future\"}",
        "wasmon_tsdb_samples_rejected_total{reason=\"out_of_bounds\"}",
    ] {
        assert!(
            fixtures::sample_value(&m, series) >= Some(10.0),
            "{series}\n{m}"
        );
    }
    assert!(reqwest::get(agent.url("/-/ready"))
        .await
        .unwrap()
        .status()
        .is_success());
    agent.terminate_within(Duration::from_secs(15));
}

/// Issue 17, item 8: a target answering with a gzip bomb (128 MiB of
/// zeros in ~130 kB) against the default config. The body is decompressed
/// as it arrives and the scrape stops at the default 64 MiB limit with an
/// error naming it; the agent stays up and ready. (Before, the default was
/// no limit: the whole body was inflated in memory. Peak memory figures:
/// `bench/gzip_bomb.py`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_stops_at_the_default_body_size_limit() {
    use std::io::Write as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..128 {
        gz.write_all(&zeros).unwrap();
    }
    let bomb = bytes::Bytes::from(gz.finish().unwrap());
    let target = fixtures::serve_gzipped_metrics(bomb).await;
    let config = app_only(target);
    let agent = fixtures::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await;
    agent
        .eventually(
            "the bomb's scrape error",
            Duration::from_secs(30),
            || async {
                let t = target_of(&agent, "app").await;
                t["lastError"]
                    .as_str()
                    .unwrap()
                    .contains("body size limit exceeded")
            },
        )
        .await;
    let t = target_of(&agent, "app").await;
    assert_eq!(t["health"], "down", "{t}");
    let err = t["lastError"].as_str().unwrap();
    assert!(
        err.contains("64.0 MiB") && err.contains("body_size_limit"),
        "{err}"
    );
    let up = get_json(&agent.url("/api/v1/query?query=up")).await;
    assert_eq!(up["data"]["result"][0]["value"][1], "0", "{up}");
    assert!(reqwest::get(agent.url("/-/ready"))
        .await
        .unwrap()
        .status()
        .is_success());
}

/// Issue 17, item 9: a target of 10,000 series over its job's
/// `sample_limit` fails every scrape, and the rolled-back scrapes leave no
/// series in the head (before, each left its series behind until the next
/// compaction, and logged them to the WAL). Checked once the target serves
/// a small page again: a scrape in progress has its series in the head
/// until it commits or rolls back, as in Prometheus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_over_its_sample_limit_leaves_no_series() {
    let mut big = String::from("# TYPE many gauge\n");
    for i in 0..10_000 {
        big += &format!("many{{i=\"{i}\"}} 1\n");
    }
    let page = Arc::new(std::sync::Mutex::new(big));
    let served = page.clone();
    let target = fixtures::serve(Router::new().route(
        "/metrics",
        get(move || {
            let page = served.lock().unwrap().clone();
            async move { page }
        }),
    ))
    .await;
    let config = app_only(target).replace(
        "static_configs = [{ targets",
        "sample_limit = 9999\nstatic_configs = [{ targets",
    );
    let agent = fixtures::AgentProcess::start(tempfile::tempdir().unwrap(), &config).await;
    agent
        .eventually("three failed scrapes", Duration::from_secs(30), || async {
            query_value(&agent, "count_over_time(up[1m])").await >= Some(3.0)
        })
        .await;
    let t = target_of(&agent, "app").await;
    assert!(
        t["lastError"]
            .as_str()
            .unwrap()
            .contains("sample limit exceeded: 10000 samples, limit 9999"),
        "{t}"
    );
    *page.lock().unwrap() = "# TYPE small gauge\nsmall 1\n".into();
    agent
        .eventually("a good scrape", Duration::from_secs(30), || async {
            query_value(&agent, "up").await == Some(1.0)
        })
        .await;
    let m = agent.self_metrics().await;
    // The five report series (`up`, `scrape_*`) and `small`.
    assert_eq!(
        fixtures::sample_value(&m, "wasmon_tsdb_head_series"),
        Some(6.0),
        "{m}"
    );
    let v = get_json(&agent.url("/api/v1/label/i/values")).await;
    assert_eq!(v["data"], serde_json::json!([]), "{v}");
}

/// Issue 17, item 9: while the disk refuses the agent's writes (a file
/// size limit, which holds for root too, where `chmod a-w` on the WAL
/// directory does not), `/-/ready` answers 503 naming the WAL error, the
/// failures are counted on /metrics, and the log says so once, not every
/// second; once writes work again the agent is ready again, and what it
/// accepted meanwhile (kept in the WAL's buffer, written on recovery)
/// survives a kill -9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_that_cannot_be_written_makes_the_agent_unready_until_it_recovers() {
    let app = metrics_server("# TYPE g gauge\ng 1\n").await;
    let config = app_only(app);
    let agent =
        fixtures::AgentProcess::start_logging_through_a_pipe(tempfile::tempdir().unwrap(), &config)
            .await;
    let pid = agent.child.id();
    agent
        .eventually("a few scrapes", Duration::from_secs(30), || async {
            query_value(&agent, "count_over_time(g[1m])")
                .await
                .is_some()
        })
        .await;

    fixtures::set_file_size_limit(pid, Some(1));
    let body = std::sync::Mutex::new(String::new());
    agent
        .eventually("not ready", Duration::from_secs(20), || async {
            let r = reqwest::get(agent.url("/-/ready")).await.unwrap();
            let unready = r.status() == 503;
            *body.lock().unwrap() = r.text().await.unwrap();
            unready
        })
        .await;
    let body = body.into_inner().unwrap();
    assert!(
        body.contains("the WAL cannot be written") && body.contains("File too large"),
        "{body}"
    );
    // Failing for a few more seconds (a WAL sync every 100 ms fails).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = agent.self_metrics().await;
    let failures =
        fixtures::sample_value(&m, "wasmon_tsdb_write_failures_total{kind=\"wal\"}").unwrap();
    assert!(failures >= 10.0, "{m}");
    let last =
        fixtures::sample_value(&m, "wasmon_tsdb_last_write_failure_timestamp_seconds").unwrap();
    assert!((last * 1000.0) as i64 > fixtures::now_ms() - 10_000, "{m}");
    assert_eq!(
        reqwest::get(agent.url("/-/ready")).await.unwrap().status(),
        503
    );

    fixtures::set_file_size_limit(pid, None);
    agent
        .eventually("ready again", Duration::from_secs(20), || async {
            reqwest::get(agent.url("/-/ready"))
                .await
                .unwrap()
                .status()
                .is_success()
        })
        .await;
    let logs = agent.logs();
    let errors = logs
        .lines()
        .filter(|l| l.contains("ERROR") && l.contains("writing the WAL failed"))
        .count();
    assert_eq!(errors, 1, "{failures} failures, logged once:\n{logs}");
    assert!(logs.contains("writing the WAL works again"), "{logs}");

    // Everything scraped up to now, the failing seconds included, is in
    // the WAL: after the next sync a kill -9 and a restart keep it all.
    let t = fixtures::now_ms() as f64 / 1000.0;
    let q = format!("/api/v1/query?query=count_over_time(g[10m])&time={t}");
    let before = get_json(&agent.url(&q)).await["data"]["result"][0]["value"][1].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let dir = agent.kill9();
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let after = get_json(&agent.url(&q)).await["data"]["result"][0]["value"][1].clone();
    assert_eq!(before, after, "{}", agent.logs());
    assert!(!agent.logs().contains("torn"), "{}", agent.logs());
}

/// The value of the sample `series` (name and labels as rendered) on the
/// agent's /metrics.
fn metric_value(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The `discoveryStatus` row of `job` on /api/v1/targets.
async fn discovery_row(agent: &fixtures::AgentProcess, job: &str) -> Value {
    let t = get_json(&agent.url("/api/v1/targets")).await;
    t["data"]["discoveryStatus"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["scrapePool"] == job).cloned())
        .unwrap_or_else(|| panic!("no discoveryStatus row for {job}: {t}"))
}

/// Issue 20: a file SD file that turns invalid keeps the job's targets and
/// says so on /api/v1/targets (`discoveryStatus`) and /metrics
/// (`wasmon_sd_*`, `prometheus_sd_discovered_targets`); fixed, it is up
/// again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_discovery_file_keeps_its_targets_and_says_why() {
    let app = metrics_server("# TYPE up_gauge gauge\nup_gauge 1\n").await;
    let other = metrics_server("# TYPE queue_depth gauge\nqueue_depth 3\n").await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    let good = format!(r#"[{{"targets": ["{other}"]}}]"#);
    std::fs::write(dir.path().join("targets/a.json"), &good).unwrap();
    let agent =
        fixtures::AgentProcess::start(dir, &CONFIG.replace("{{APP}}", &app.to_string())).await;
    let file = agent.dir.path().join("targets/a.json");
    agent
        .eventually("the discovered target", Duration::from_secs(30), || async {
            target_of_opt(&agent, "discovered").await.is_some()
        })
        .await;
    let row = discovery_row(&agent, "discovered").await;
    assert_eq!(row["config"], "file_sd_configs[0]", "{row}");
    assert_eq!(row["mechanism"], "file", "{row}");
    assert_eq!(row["health"], "up", "{row}");
    assert_eq!(row["lastError"], "", "{row}");
    assert_eq!(row["targets"], 1, "{row}");
    assert!(
        humantime::parse_rfc3339(row["lastSuccess"].as_str().unwrap()).is_ok(),
        "{row}"
    );
    let m = agent.self_metrics().await;
    let failed = r#"wasmon_sd_last_refresh_failed{job="discovered",config="file_sd_configs[0]"}"#;
    let failures =
        r#"wasmon_sd_refresh_failures_total{job="discovered",config="file_sd_configs[0]"}"#;
    assert_eq!(metric_value(&m, failed), Some(0.0), "{m}");
    assert_eq!(metric_value(&m, failures), Some(0.0), "{m}");
    for job in ["app", "discovered"] {
        let s = format!(r#"prometheus_sd_discovered_targets{{config="{job}",name="scrape"}}"#);
        assert_eq!(metric_value(&m, &s), Some(1.0), "{s}\n{m}");
    }

    // Half-written: the file no longer parses.
    std::fs::write(&file, &good[..good.len() / 2]).unwrap();
    agent
        .eventually(
            "the failure on discoveryStatus",
            Duration::from_secs(30),
            || async { discovery_row(&agent, "discovered").await["health"] == "down" },
        )
        .await;
    let row = discovery_row(&agent, "discovered").await;
    let err = row["lastError"].as_str().unwrap();
    assert!(
        err.contains("a.json") && err.contains("invalid JSON"),
        "{row}"
    );
    assert_eq!(row["targets"], 1, "{row}");
    let m = agent.self_metrics().await;
    assert_eq!(metric_value(&m, failed), Some(1.0), "{m}");
    assert!(metric_value(&m, failures).unwrap() >= 1.0, "{m}");
    let s = r#"prometheus_sd_discovered_targets{config="discovered",name="scrape"}"#;
    assert_eq!(metric_value(&m, s), Some(1.0), "{m}");
    // The target is kept and still scraped.
    let t = target_of(&agent, "discovered").await;
    assert_eq!(t["scrapeUrl"], format!("http://{other}/metrics"));
    let before = t["lastScrape"].clone();
    agent
        .eventually(
            "another scrape of the kept target",
            Duration::from_secs(30),
            || async { target_of(&agent, "discovered").await["lastScrape"] != before },
        )
        .await;

    // Fixed: up again.
    std::fs::write(&file, &good).unwrap();
    agent
        .eventually(
            "the job to be up again",
            Duration::from_secs(30),
            || async { discovery_row(&agent, "discovered").await["health"] == "up" },
        )
        .await;
    let m = agent.self_metrics().await;
    assert_eq!(metric_value(&m, failed), Some(0.0), "{m}");
}

/// The target of `job` in `/api/v1/targets`, if it has one.
async fn target_of_opt(agent: &fixtures::AgentProcess, job: &str) -> Option<Value> {
    let t = get_json(&agent.url("/api/v1/targets")).await;
    t["data"]["activeTargets"]
        .as_array()?
        .iter()
        .find(|t| t["scrapePool"] == job)
        .cloned()
}

/// A node agent's usual pod rules (Prometheus' example
/// kubernetes-pods job): keep annotated pods, honour their port and path.
const POD_RULES: &str = r#"
[[scrape_configs]]
job_name = "kubernetes-pods"
params = { module = ["m1"] }

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"]
action = "keep"
regex = "true"

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_kubernetes_pod_annotation_prometheus_io_path"]
target_label = "__metrics_path__"
regex = "(.+)"

[[scrape_configs.relabel_configs]]
source_labels = ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"]
regex = '([^:]+)(?::\d+)?;(\d+)'
replacement = "$1:$2"
target_label = "__address__"

[[scrape_configs.relabel_configs]]
action = "labelmap"
regex = "__meta_kubernetes_pod_label_(.+)"

[[scrape_configs]]
job_name = "node"
static_configs = [{ targets = ["127.0.0.1:9100"] }]
"#;

/// `wasmon relabel test` through the binary: each rule's step, the
/// verdict and the exit code (0 kept, 1 dropped, 2 error), and JSON with
/// Prometheus' relabel_steps shape.
#[test]
fn relabel_test_prints_each_step_and_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("wasmon.toml");
    std::fs::write(&config, POD_RULES).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
            .args(["relabel", "test", "--config"])
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&[
        "--job",
        "kubernetes-pods",
        r#"{__meta_kubernetes_pod_annotation_prometheus_io_scrape="true", __address__="10.0.0.1:8080", __meta_kubernetes_pod_annotation_prometheus_io_port="9102", __meta_kubernetes_pod_label_app="web"}"#,
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    for want in [
        "+ job=\"kubernetes-pods\"",
        "+ __param_module=\"m1\"",
        "rule 0 action=keep",
        "~ __address__=\"10.0.0.1:8080\" -> \"10.0.0.1:9102\"",
        "rule 3 action=labelmap",
        "+ app=\"web\"",
        "verdict: KEPT",
        "target labels: {app=\"web\", instance=\"10.0.0.1:9102\", job=\"kubernetes-pods\"}",
        "scrape URL: http://10.0.0.1:9102/metrics?module=m1",
    ] {
        assert!(out.contains(want), "{want:?} not in:\n{out}");
    }

    // Not annotated: dropped by the keep rule; the rest not applied.
    let (code, out, _) = run(&[
        "--job",
        "kubernetes-pods",
        r#"{"__address__": "10.0.0.2:80"}"#,
    ]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("DROPPED by this rule (source value \"\")"),
        "{out}"
    );
    assert!(out.contains("(not applied: dropped by rule 0)"), "{out}");
    assert!(out.contains("verdict: DROPPED by rule 0"), "{out}");

    let (code, out, err) = run(&[
        "--job",
        "kubernetes-pods",
        "--output",
        "json",
        r#"{__address__="10.0.0.2:80"}"#,
    ]);
    assert_eq!(code, Some(1), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let steps = v["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[0]["keep"], false);
    assert_eq!(steps[0]["output"], serde_json::json!({}));
    assert_eq!(steps[0]["rule"]["action"], "keep");
    assert_eq!(v["droppedBy"], 0);
    assert_eq!(v["input"]["__scheme__"], "http");

    // Errors say what and where, exit 2.
    let (code, _, err) = run(&["--job", "pods", r#"{__address__="a:1"}"#]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no job \"pods\"") && err.contains("\"kubernetes-pods\", \"node\""),
        "{err}"
    );
    let (code, _, err) = run(&["--job", "node", r#"{__address__="a:1", x=~"y"}"#]);
    assert_eq!(code, Some(2));
    assert!(err.contains("only name=\"value\" pairs"), "{err}");
    let (code, _, err) = run(&["--job", "node", r#"{__address__="a:1"#]);
    assert_eq!(code, Some(2));
    assert!(err.contains("label set: 1:"), "{err}");
    std::fs::write(&config, "[[scrape_configs]]\njob_name = 3\n").unwrap();
    let (code, _, err) = run(&["--job", "node", r#"{__address__="a:1"}"#]);
    assert_eq!(code, Some(2));
    assert!(err.contains("wasmon.toml"), "{err}");
}

/// `/api/v1/targets/relabel_steps` on the running agent: for a dropped
/// and a kept discovered set of a file-SD job, Prometheus' steps (one per
/// rule, output empty from the dropping rule on) agreeing with what the
/// agent did with them; bad parameters are a 400 saying which.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relabel_steps_api_traces_dropped_and_kept_targets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/pods.json"),
        r#"[{"targets": ["127.0.0.1:1"], "labels": {"__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true", "__meta_kubernetes_pod_annotation_prometheus_io_port": "2", "__meta_kubernetes_pod_label_app": "web"}},
            {"targets": ["127.0.0.1:3"], "labels": {"__meta_kubernetes_pod_label_app": "db"}}]"#,
    )
    .unwrap();
    let rules = POD_RULES
        .replace(
            "job_name = \"kubernetes-pods\"",
            "job_name = \"kubernetes-pods\"\nscrape_interval = \"1h\"\nfile_sd_configs = [{ files = [\"targets/*.json\"] }]",
        )
        .replace(
            "static_configs = [{ targets = [\"127.0.0.1:9100\"] }]",
            "static_configs = []",
        );
    let config =
        format!("[web]\nlisten_address = \"{{{{LISTEN}}}}\"\n[storage]\npath = \"data\"\n{rules}");
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let targets = || async { get_json(&agent.url("/api/v1/targets")).await["data"].clone() };
    agent
        .eventually(
            "one active, one dropped",
            Duration::from_secs(30),
            || async {
                let t = targets().await;
                t["activeTargets"].as_array().is_some_and(|a| a.len() == 1)
                    && t["droppedTargets"].as_array().is_some_and(|d| d.len() == 1)
            },
        )
        .await;
    let t = targets().await;
    let steps = |labels: &Value| {
        let url = reqwest::Url::parse_with_params(
            &agent.url("/api/v1/targets/relabel_steps"),
            [
                ("scrapePool", "kubernetes-pods"),
                ("labels", &labels.to_string()),
            ],
        )
        .unwrap();
        async move { fixtures::get_ok_json(url.as_str()).await["data"].clone() }
    };

    let dropped = steps(&t["droppedTargets"][0]["discoveredLabels"]).await;
    let keeps: Vec<&Value> = dropped["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["keep"])
        .collect();
    assert_eq!(keeps, [false, false, false, false], "{dropped}");
    assert_eq!(
        dropped["steps"][0]["rule"],
        serde_json::json!({"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
            "separator": ";", "regex": "true", "replacement": "$1", "action": "keep"})
    );
    assert_eq!(dropped["steps"][1]["output"], serde_json::json!({}));
    assert_eq!(dropped["droppedBy"], 0);
    assert_eq!(dropped["target"], Value::Null);

    let active = &t["activeTargets"][0];
    let kept = steps(&active["discoveredLabels"]).await;
    assert_eq!(kept["keep"], true, "{kept}");
    assert_eq!(kept["steps"][2]["output"]["__address__"], "127.0.0.1:2");
    assert_eq!(kept["steps"][3]["output"]["app"], "web");
    assert_eq!(kept["target"]["scrapeUrl"], active["scrapeUrl"]);
    assert_eq!(kept["target"]["labels"], active["labels"]);

    for (query, says) in [
        ("labels={}", "no scrapePool parameter provided"),
        ("scrapePool=kubernetes-pods", "no labels parameter provided"),
        (
            "scrapePool=nope&labels={}",
            "scrape pool \\\"nope\\\" not found",
        ),
        (
            "scrapePool=kubernetes-pods&labels=[1]",
            "error parsing labels",
        ),
    ] {
        let r = reqwest::get(agent.url(&format!("/api/v1/targets/relabel_steps?{query}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let body = r.text().await.unwrap();
        assert!(body.contains(says), "{query}: {body}");
    }
}
