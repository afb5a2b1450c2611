//! Grafana compatibility: the requests Grafana's Prometheus data source makes
//! (health check, metric browser, label and series look-ups, metadata for
//! type hints, range and instant queries with the POST method, exemplars,
//! the alert-rule list) are replayed against the real agent AND against
//! Debian's Prometheus 2.42 scraping the same target, and the answers are
//! compared: same HTTP status, same JSON shape, same series and label sets.
//! Request list: Grafana 10/11 `public/app/plugins/datasource/prometheus`
//! (language provider, datasource health check, metric browser).
//!
//! And PromQL answers compared with Prometheus' over thousands of series
//! and hundreds of queries (`promql_diff`).

use crate::fixtures;
use crate::fixtures::upstream::{prometheus_installed, Prometheus};
use crate::promql_diff;

use std::collections::BTreeSet;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use serde_json::Value;

const PAGE: &str = "\
# HELP app_requests_total Requests served.
# TYPE app_requests_total counter
app_requests_total{code=\"200\",path=\"/\"} 1027
app_requests_total{code=\"500\",path=\"/\"} 3
# HELP app_queue_depth Jobs waiting.
# TYPE app_queue_depth gauge
app_queue_depth 7
# HELP app_latency_seconds Request latency.
# TYPE app_latency_seconds histogram
app_latency_seconds_bucket{le=\"0.1\"} 90
app_latency_seconds_bucket{le=\"1\"} 99
app_latency_seconds_bucket{le=\"+Inf\"} 100
app_latency_seconds_sum 12.5
app_latency_seconds_count 100
";

async fn target() -> std::net::SocketAddr {
    let app = Router::new().route("/metrics", get(|| async { PAGE }));
    fixtures::serve(app).await
}

/// Prometheus scraping `target` as the agent does; None when it is not
/// installed (outside CI).
async fn prometheus(target: std::net::SocketAddr) -> Option<Prometheus> {
    if !prometheus_installed("the Prometheus comparison") {
        return None;
    }
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: app\n    static_configs:\n      - targets: ['{target}']\n"
    );
    Some(Prometheus::start(&config, &[], None).await)
}

const CONFIG: &str = r#"
[global]
scrape_interval = "1s"
scrape_timeout = "900ms"

[web]
listen_address = "{{LISTEN}}"

[storage]
path = "data"

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"] }]
"#;

/// One request as Grafana sends it.
struct Req {
    what: &'static str,
    method: &'static str,
    path: &'static str,
    params: Vec<(&'static str, String)>,
}

fn requests(now: f64) -> Vec<Req> {
    let (start, end) = (format!("{:.3}", now - 10.0), format!("{now:.3}"));
    let range = || vec![("start", start.clone()), ("end", end.clone())];
    let with = |mut v: Vec<(&'static str, String)>, extra: &[(&'static str, &str)]| {
        v.extend(extra.iter().map(|(k, x)| (*k, x.to_string())));
        v
    };
    vec![
        Req {
            what: "health check",
            method: "GET",
            path: "/api/v1/query",
            params: vec![("query", "1+1".into()), ("time", end.clone())],
        },
        Req {
            what: "version detection",
            method: "GET",
            path: "/api/v1/status/buildinfo",
            params: vec![],
        },
        Req {
            what: "label names",
            method: "GET",
            path: "/api/v1/labels",
            params: range(),
        },
        Req {
            what: "label names for a metric",
            method: "GET",
            path: "/api/v1/labels",
            params: with(range(), &[("match[]", "app_requests_total")]),
        },
        Req {
            what: "metric names",
            method: "GET",
            path: "/api/v1/label/__name__/values",
            params: range(),
        },
        Req {
            what: "label values for a metric",
            method: "GET",
            path: "/api/v1/label/code/values",
            params: with(range(), &[("match[]", "{__name__=\"app_requests_total\"}")]),
        },
        Req {
            what: "series",
            method: "GET",
            path: "/api/v1/series",
            params: with(range(), &[("match[]", "app_latency_seconds_bucket")]),
        },
        Req {
            what: "metadata",
            method: "GET",
            path: "/api/v1/metadata",
            params: vec![],
        },
        Req {
            what: "metadata of one metric",
            method: "GET",
            path: "/api/v1/metadata",
            params: vec![("metric", "app_queue_depth".into())],
        },
        Req {
            what: "range query (POST)",
            method: "POST",
            path: "/api/v1/query_range",
            params: with(
                range(),
                &[
                    ("query", "sum by (code) (rate(app_requests_total[5s]))"),
                    ("step", "2"),
                ],
            ),
        },
        Req {
            what: "range query of a gauge",
            method: "POST",
            path: "/api/v1/query_range",
            params: with(range(), &[("query", "app_queue_depth"), ("step", "1")]),
        },
        Req {
            what: "instant query (POST)",
            method: "POST",
            path: "/api/v1/query",
            params: vec![
                (
                    "query",
                    "histogram_quantile(0.9, sum by (le) (app_latency_seconds_bucket))".into(),
                ),
                ("time", end.clone()),
            ],
        },
        Req {
            what: "table query",
            method: "POST",
            path: "/api/v1/query",
            params: vec![
                ("query", "app_requests_total".into()),
                ("time", end.clone()),
            ],
        },
        Req {
            what: "exemplars",
            method: "GET",
            path: "/api/v1/query_exemplars",
            params: with(range(), &[("query", "app_latency_seconds_bucket")]),
        },
        Req {
            what: "bad query",
            method: "POST",
            path: "/api/v1/query",
            params: vec![("query", "sum(".into()), ("time", end.clone())],
        },
        Req {
            what: "alert rules",
            method: "GET",
            path: "/api/v1/rules",
            params: vec![],
        },
    ]
}

async fn send(client: &reqwest::Client, base: &str, r: &Req) -> (u16, Value) {
    let url = format!("{base}{}", r.path);
    let resp = match r.method {
        "GET" => client.get(&url).query(&r.params).send().await,
        _ => client.post(&url).form(&r.params).send().await,
    }
    .unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp
        .json()
        .await
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", r.what));
    (status, body)
}

/// The JSON's shape: objects keep their keys, arrays the shapes of their
/// elements (as a set), leaves their type. Values can differ (timestamps,
/// rates at slightly different scrape times); shapes must not.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => {
            let set: BTreeSet<String> = a.iter().map(|e| shape(e).to_string()).collect();
            Value::Array(
                set.into_iter()
                    .map(|s| serde_json::from_str(&s).unwrap())
                    .collect(),
            )
        }
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// Prometheus 3 (and wasmon) store the `le`/`quantile` values of classic
/// histograms and summaries from the text format in canonical float form
/// ("1" becomes "1.0"); 2.42 keeps the page's spelling. Compare the numbers.
fn canonical(mut metric: Value) -> Value {
    for key in ["le", "quantile"] {
        if let Some(v) = metric.get(key).and_then(Value::as_str) {
            let f: f64 = v.parse().unwrap_or(f64::NAN);
            metric[key] = Value::String(format!("{f:?}"));
        }
    }
    metric
}

/// The label sets of a query result, a series list, or the strings of a list.
fn members(v: &Value) -> BTreeSet<String> {
    let data = &v["data"];
    let items = data["result"].as_array().or(data.as_array());
    items
        .map(|a| {
            a.iter()
                .map(|e| match e.get("metric") {
                    Some(m) => canonical(m.clone()).to_string(),
                    None if e.is_object() => canonical(e.clone()).to_string(),
                    None => e.to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_requests_answer_like_prometheus() {
    let app = target().await;
    let prom = prometheus(app).await;
    let agent = fixtures::AgentProcess::start(
        tempfile::tempdir().unwrap(),
        &CONFIG.replace("{{APP}}", &app.to_string()),
    )
    .await;
    let client = reqwest::Client::new();
    let wasmon = agent.url("");
    let prom_url = prom.as_ref().map(|p| format!("http://{}", p.addr));
    // Both have scraped for longer than the replayed 10 s range (12 one-second
    // scrapes), so range answers are complete on both sides.
    for base in std::iter::once(&wasmon).chain(prom_url.as_ref()) {
        let start = std::time::Instant::now();
        loop {
            let q = [("query", "count_over_time(app_queue_depth[15s])")];
            let ok = match client
                .get(format!("{base}/api/v1/query"))
                .query(&q)
                .send()
                .await
            {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| {
                        v["data"]["result"][0]["value"][1]
                            .as_str()
                            .map(|s| s.parse::<f64>().unwrap_or(0.0) >= 12.0)
                    })
                    .unwrap_or(false),
                Err(_) => false,
            };
            if ok {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{base} never scraped the target\n{}",
                agent.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.0;
    let mut compared = 0;
    for r in requests(now) {
        let (status, body) = send(&client, &wasmon, &r).await;
        // What Grafana itself relies on, checked on wasmon alone.
        match r.what {
            "bad query" => {
                assert_eq!(status, 400, "{}: {body}", r.what);
                assert_eq!(body["errorType"], "bad_data", "{body}");
            }
            _ => assert_eq!(
                (status, body["status"].as_str()),
                (200, Some("success")),
                "{}: {body}",
                r.what
            ),
        }
        match r.what {
            "health check" => assert_eq!(body["data"]["result"][1], "2", "{body}"),
            "version detection" => {
                let v = body["data"]["version"].as_str().unwrap();
                let major: u32 = v.split('.').next().unwrap().parse().unwrap();
                assert!(major >= 2, "Grafana needs a Prometheus-like version: {v}");
            }
            "metadata of one metric" => assert_eq!(
                body["data"],
                serde_json::json!({"app_queue_depth": [{"type": "gauge", "help": "Jobs waiting.", "unit": ""}]})
            ),
            "range query of a gauge" => {
                let values = body["data"]["result"][0]["values"].as_array().unwrap();
                assert!(values.len() >= 8, "{body}");
                assert!(values.iter().all(|p| p[1] == "7"), "{body}");
            }
            _ => {}
        }
        let Some(prom_url) = &prom_url else { continue };
        let (p_status, p_body) = send(&client, prom_url, &r).await;
        assert_eq!(
            status, p_status,
            "{}: wasmon {body} vs prometheus {p_body}",
            r.what
        );
        if r.what == "version detection" {
            continue; // wasmon adds its own version; Prometheus has Go details
        }
        assert_eq!(
            shape(&body),
            shape(&p_body),
            "{}: wasmon {body}\nprometheus {p_body}",
            r.what
        );
        if r.what != "bad query" {
            assert_eq!(
                members(&body),
                members(&p_body),
                "{}: wasmon {body}\nprometheus {p_body}",
                r.what
            );
        }
        if r.what.starts_with("metadata") {
            assert_eq!(body["data"], p_body["data"], "{}", r.what);
        }
        compared += 1;
    }
    if prom_url.is_some() {
        assert_eq!(compared, 15);
    }
}

/// PromQL answers like Prometheus 2.42's on the same data: the compliance
/// tester's queries and generated aggregations, joins and set operations
/// over 2,572 series with 200 `endpoint` values one character apart (the
/// full size is the ignored test below).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promql_answers_like_prometheus() {
    let _heavy = fixtures::heavy();
    let Some(report) = promql_diff::run(promql_diff::Size::CI).await else {
        return;
    };
    report.print();
    assert!(report.comparisons >= 400, "{report:?}");
    assert!(
        report.differences.is_empty() && report.known_but_equal.is_empty(),
        "{} differences from Prometheus, {} known differences no longer seen (see above)",
        report.differences.len(),
        report.known_but_equal.len()
    );
}

/// The full size, by hand: `cargo test -p wasmon --test e2e
/// promql_answers_like_prometheus_full_size -- --ignored --nocapture`
/// (55,372 series, 5,000 endpoints, every query; several minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn promql_answers_like_prometheus_full_size() {
    let _heavy = fixtures::heavy();
    let Some(report) = promql_diff::run(promql_diff::Size::FULL).await else {
        panic!("/usr/bin/prometheus is needed");
    };
    report.print();
    assert!(
        report.differences.is_empty(),
        "{} differences",
        report.differences.len()
    );
}
