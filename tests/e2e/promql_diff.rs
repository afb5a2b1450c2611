//! A differential PromQL tester: wasmon and Debian's Prometheus 2.42 scrape
//! the same synthetic targets, then answer the same queries, and every
//! answer is compared (result type, label sets, timestamps, values within
//! a relative tolerance; both failing counts as agreeing).
//!
//! The queries are those of the PromQL compliance tester
//! (`../shared/conformance/compliance/promql/promql-test-queries.yml`,
//! its templates expanded with the tester's variant values, its `demo_*`
//! metric names served by the synthetic targets) plus generated
//! aggregations, joins and set operations over a high-cardinality counter
//! whose `endpoint` values differ in one character (`/api/e104`,
//! `/api/e184`): where a hash standing in for label identity shows.
//! Each query runs as a range query over the whole data and as an instant
//! query at its end.
//!
//! Both systems must store identical data, so the targets give every
//! sample its own timestamp (kept by both, `honor_timestamps`) and each
//! scraper has its own cursor into a deterministic history: its scrapes
//! walk through the points one by one (each point served to each scraper
//! twice, so one failed scrape loses nothing), 15 s apart in the last hour
//! (Prometheus refuses samples older than an hour behind its newest), and
//! the last point stays. Sample times are 1.234 s off the second and query
//! times 7.5 s off the sample grid: no sample falls on a window's edge,
//! where Prometheus 2 (left-closed ranges) and 3 (left-open, which wasmon
//! follows) legitimately differ.
//!
//! Differences that are legitimate (Prometheus 3 semantics wasmon follows)
//! are listed in [`KNOWN`] with the reason; they are run and reported, and
//! one that stops differing fails the run, so the list stays true.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::Router;
use futures::StreamExt;
use serde_json::Value;

use crate::fixtures::upstream::{prometheus_installed, Prometheus};

/// How big a run is.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    /// `endpoint` values per target (three `code`s each).
    pub endpoints: usize,
    /// Points per series, 15 s apart.
    pub points: usize,
    /// Scrape interval of both systems.
    pub interval: Duration,
    /// Run every `sample`-th query (1 = all).
    pub sample: usize,
}

impl Size {
    /// The bounded run CI does: 2,572 series, 225 queries (every third).
    pub const CI: Size = Size {
        endpoints: 200,
        points: 24,
        interval: Duration::from_millis(250),
        sample: 3,
    };
    /// The full run: 55,372 series, 5,000 endpoints (15,000 endpoint and
    /// code groups per target), every query.
    pub const FULL: Size = Size {
        endpoints: 5000,
        points: 200,
        interval: Duration::from_millis(1000),
        sample: 1,
    };
}

const TARGETS: usize = 3;
const STEP_MS: i64 = 15_000;
/// Sample times are this far off a multiple of the step (and so of any
/// whole second or subquery step).
const SAMPLE_PHASE_MS: i64 = 1_234;
/// Query times are this far past a sample.
const QUERY_PHASE_MS: i64 = 7_500;

/// What a run compared and found.
#[derive(Debug, Default)]
pub struct Report {
    pub series: usize,
    pub queries: usize,
    pub comparisons: usize,
    pub known: Vec<String>,
    pub differences: Vec<String>,
    /// Listed in [`KNOWN`] but answered alike.
    pub known_but_equal: Vec<String>,
    /// `topk`/`bottomk` answers that picked other series among equal
    /// values (both are right: which of tied series is kept is unspecified,
    /// and Prometheus' choice follows its heap order).
    pub ties: Vec<String>,
    /// Until both held the whole history.
    pub ingest: Duration,
    /// Asking and comparing.
    pub compare: Duration,
    /// Time to answer, summed over queries.
    pub wasmon_time: Duration,
    pub prometheus_time: Duration,
}

/// Queries whose answers legitimately differ, with the reason. Matched
/// against the query text (substring).
pub const KNOWN: &[(&str, &str)] = &[(
    "\"~invalid\"",
    "Prometheus 3 (which wasmon follows) accepts any UTF-8 label name; 2.42 only [a-zA-Z_][a-zA-Z0-9_]*, so it refuses label_replace/label_join to \"~invalid\"",
)];

// ---------------------------------------------------------------------
// The synthetic targets.

/// The deterministic history every target serves.
struct Data {
    /// Time of point 0.
    t0: i64,
    points: usize,
    endpoints: usize,
    /// Scrapes per (target, scraper): "prom" is 0, "wasmon" 1.
    scrapes: Vec<[AtomicU64; 2]>,
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A number in [0, 1) fixed by `parts`.
fn unit(parts: &[u64]) -> f64 {
    let h = parts.iter().fold(0u64, |h, &p| mix(h ^ p));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Counters start here, far from zero: where a series begins inside a
/// rate window, Prometheus 2.42 lets the extrapolation to the counter's
/// zero point replace the half-interval limit (a longer extrapolation),
/// Prometheus 3 (and wasmon) take the shorter of the two. That rule is
/// a known difference; data that never reaches it keeps rate comparable.
const COUNTER_START: f64 = 1000.0;

const MEM_TYPES: [&str; 4] = ["free", "used", "buffers", "cached"];
const CPU_MODES: [&str; 3] = ["idle", "system", "user"];
const CODES: [&str; 3] = ["200", "404", "500"];
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
];

impl Data {
    fn series_per_target(&self) -> usize {
        // memory 4, cpus 1, intermittent 1, cpu 3, disk 2, batch 1,
        // histogram 8 x (12 + 2), requests 3 per endpoint; info and
        // limit per endpoint on target 0.
        4 + 1 + 1 + 3 + 2 + 1 + 8 * 14 + 3 * self.endpoints
    }

    fn series(&self) -> usize {
        TARGETS * self.series_per_target() + 2 * self.endpoints
    }

    /// Target `i`'s page at point `k`.
    fn page(&self, i: usize, k: usize) -> String {
        let ts = self.t0 + k as i64 * STEP_MS;
        let iu = i as u64;
        let ku = k as u64;
        let mut p = String::with_capacity(200 + self.endpoints * 3 * 80);
        let line = |p: &mut String, name: &str, labels: &str, v: f64| {
            let _ = if labels.is_empty() {
                writeln!(p, "{name} {v} {ts}")
            } else {
                writeln!(p, "{name}{{{labels}}} {v} {ts}")
            };
        };
        p.push_str("# TYPE demo_memory_usage_bytes gauge\n");
        for (j, t) in MEM_TYPES.iter().enumerate() {
            let v = 1e9 * (1.0 + iu as f64) * (1.0 + j as f64 / 4.0)
                + 1e8 * (k as f64 / 7.0 + j as f64).sin()
                + (1e6 * unit(&[1, iu, j as u64, ku])).floor();
            line(
                &mut p,
                "demo_memory_usage_bytes",
                &format!("type=\"{t}\""),
                v,
            );
        }
        p.push_str("# TYPE demo_num_cpus gauge\n");
        line(&mut p, "demo_num_cpus", "", [4.0, 8.0, 16.0][i % 3]);
        // Present two stretches of ten points in three.
        if !(k / 10 + i).is_multiple_of(3) {
            p.push_str("# TYPE demo_intermittent_metric gauge\n");
            line(&mut p, "demo_intermittent_metric", "", k as f64);
        }
        p.push_str("# TYPE demo_cpu_usage_seconds_total counter\n");
        for (j, m) in CPU_MODES.iter().enumerate() {
            // Target 1's counters reset half way.
            let from = if i == 1 && k >= self.points / 2 {
                self.points / 2
            } else {
                0
            };
            let v: f64 = (from..=k)
                .map(|x| 0.9 * (1 + iu) as f64 * unit(&[2, iu, j as u64, x as u64]))
                .sum::<f64>()
                + if from == 0 { COUNTER_START } else { 0.0 };
            line(
                &mut p,
                "demo_cpu_usage_seconds_total",
                &format!("mode=\"{m}\""),
                v,
            );
        }
        p.push_str("# TYPE demo_disk_usage_bytes gauge\n");
        let disk = 5e10 + k as f64 * 1e7 * (1.0 + iu as f64) + (1e6 * unit(&[3, iu, ku])).floor();
        line(&mut p, "demo_disk_usage_bytes", "", disk);
        p.push_str("# TYPE demo_disk_total_bytes gauge\n");
        line(&mut p, "demo_disk_total_bytes", "", 1e11);
        p.push_str("# TYPE demo_batch_last_success_timestamp_seconds gauge\n");
        let last = (self.t0 + (k / 8 * 8) as i64 * STEP_MS) as f64 / 1000.0;
        line(
            &mut p,
            "demo_batch_last_success_timestamp_seconds",
            "",
            last,
        );
        p.push_str("# TYPE demo_api_request_duration_seconds histogram\n");
        for method in ["GET", "POST"] {
            for path in ["/api/foo", "/api/bar"] {
                for status in ["200", "500"] {
                    let sid = mix(method.len() as u64 ^ (path.len() as u64) << 8)
                        ^ mix(status.as_bytes()[0] as u64 ^ path.as_bytes()[5] as u64);
                    let labels = format!("method=\"{method}\",path=\"{path}\",status=\"{status}\"");
                    let scale = 0.1 + 0.4 * unit(&[4, iu, sid]);
                    let mut counts = [COUNTER_START; 12];
                    let mut sum = COUNTER_START;
                    for x in 0..=k {
                        let n = (20.0 * unit(&[5, iu, sid, x as u64])).floor();
                        for (b, le) in BUCKETS.iter().enumerate() {
                            let f = match le.parse::<f64>() {
                                Ok(le) => 1.0 - (-le / scale).exp(),
                                Err(_) => 1.0,
                            };
                            counts[b] += (n * f).floor();
                        }
                        sum += n * scale;
                    }
                    for (b, le) in BUCKETS.iter().enumerate() {
                        line(
                            &mut p,
                            "demo_api_request_duration_seconds_bucket",
                            &format!("{labels},le=\"{le}\""),
                            counts[b],
                        );
                    }
                    line(
                        &mut p,
                        "demo_api_request_duration_seconds_sum",
                        &labels,
                        sum,
                    );
                    line(
                        &mut p,
                        "demo_api_request_duration_seconds_count",
                        &labels,
                        counts[11],
                    );
                }
            }
        }
        p.push_str("# TYPE http_requests_total counter\n");
        for e in 0..self.endpoints {
            for (c, code) in CODES.iter().enumerate() {
                let s = [6, iu, e as u64, c as u64];
                let r = 1 + (mix(s.iter().fold(0, |h, &x| mix(h ^ x))) % 7) as i64;
                let v = |x: usize| {
                    COUNTER_START as i64
                        + 3 * x as i64 * r
                        + (3.0 * unit(&[7, iu, e as u64, c as u64, x as u64])) as i64
                };
                // Every 97th endpoint's counters reset two thirds of the way.
                let reset = self.points * 2 / 3;
                let v = if e % 97 == 0 && k >= reset {
                    v(k) - v(reset)
                } else {
                    v(k)
                };
                line(
                    &mut p,
                    "http_requests_total",
                    &format!("endpoint=\"/api/e{e}\",code=\"{code}\""),
                    v as f64,
                );
            }
        }
        if i == 0 {
            p.push_str("# TYPE endpoint_info gauge\n");
            for e in 0..self.endpoints {
                line(
                    &mut p,
                    "endpoint_info",
                    &format!("endpoint=\"/api/e{e}\",team=\"t{}\"", e % 37),
                    1.0,
                );
            }
            p.push_str("# TYPE http_request_limit gauge\n");
            for e in 0..self.endpoints {
                // Never a multiple of 1/20: no rate equals a twentieth
                // of it, where summation order would decide `>`.
                let v = (100.0 * unit(&[8, e as u64])).floor() + 0.37;
                line(
                    &mut p,
                    "http_request_limit",
                    &format!("endpoint=\"/api/e{e}\""),
                    v,
                );
            }
        }
        p
    }
}

async fn serve_page(
    State((data, i)): State<(Arc<Data>, usize)>,
    Path(client): Path<String>,
) -> (axum::http::HeaderMap, String) {
    let c = usize::from(client == "wasmon");
    let n = data.scrapes[i][c].fetch_add(1, Ordering::SeqCst) as usize;
    let mut h = axum::http::HeaderMap::new();
    h.insert(
        "content-type",
        axum::http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    // Once every point was served (twice), an empty page: series with
    // their own timestamps get no staleness marker in either system, and
    // neither spends the queries' time re-reading the last point.
    if n >= 2 * data.points + 4 {
        return (h, String::new());
    }
    let k = (n / 2).min(data.points - 1);
    (h, data.page(i, k))
}

async fn targets(data: &Arc<Data>) -> Vec<std::net::SocketAddr> {
    let mut out = Vec::new();
    for i in 0..TARGETS {
        let app = Router::new()
            .route("/{client}/metrics", get(serve_page))
            .with_state((data.clone(), i));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        out.push(l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    }
    out
}

// ---------------------------------------------------------------------
// The queries.

#[derive(serde::Deserialize)]
struct QueryFile {
    test_cases: Vec<FileCase>,
}

#[derive(serde::Deserialize)]
struct FileCase {
    query: String,
    #[serde(default)]
    variant_args: Vec<String>,
    #[serde(default)]
    should_fail: bool,
    #[serde(default)]
    skip_comparison: bool,
}

/// The compliance tester's values for its template arguments
/// (`testcases/expand.go`).
fn variant_values(arg: &str) -> &'static [&'static str] {
    match arg {
        "range" => &["1s", "15s", "1m", "5m", "15m", "1h"],
        "offset" => &["1m", "5m", "10m"],
        "simpleAggrOp" => &["sum", "avg", "max", "min", "count", "stddev", "stdvar"],
        "simpleTimeAggrOp" => &[
            "sum", "avg", "max", "min", "count", "stddev", "stdvar", "absent", "last",
        ],
        "topBottomOp" => &["topk", "bottomk"],
        "quantile" => &[
            "-0.5", "0.1", "0.5", "0.75", "0.95", "0.90", "0.99", "1", "1.5",
        ],
        "arithBinOp" => &["+", "-", "*", "/", "%", "^"],
        "compBinOp" => &["==", "!=", "<", ">", "<=", ">="],
        "binOp" => &[
            "+", "-", "*", "/", "%", "^", "==", "!=", "<", ">", "<=", ">=",
        ],
        "simpleMathFunc" => &[
            "abs", "ceil", "floor", "exp", "sqrt", "ln", "log2", "log10", "round",
        ],
        "extrapolatedRateFunc" => &["delta", "rate", "increase"],
        "clampFunc" => &["clamp_min", "clamp_max"],
        "instantRateFunc" => &["idelta", "irate"],
        "dateFunc" => &[
            "day_of_month",
            "day_of_week",
            "days_in_month",
            "hour",
            "minute",
            "month",
            "year",
        ],
        "smoothingFactor" | "trendFactor" => &["0.1", "0.5", "0.8"],
        other => panic!("unknown variant arg {other:?}"),
    }
}

fn expand(q: &str, args: &[String]) -> Vec<String> {
    let Some((first, rest)) = args.split_first() else {
        return vec![q.to_string()];
    };
    variant_values(first)
        .iter()
        .flat_map(|v| expand(&q.replace(&format!("{{{{.{first}}}}}"), v), rest))
        .collect()
}

/// One query to compare.
#[derive(Debug, Clone)]
pub struct Case {
    pub query: String,
    pub should_fail: bool,
}

/// The compliance tester's queries, on the synthetic targets: the demo
/// service's host becomes 127.0.0.1 and its first instance our first
/// target.
fn compliance_cases(first: std::net::SocketAddr) -> Vec<Case> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/conformance/compliance/promql/promql-test-queries.yml"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let file: QueryFile = serde_norway::from_str(&text).unwrap();
    let mut out = Vec::new();
    for c in file.test_cases.iter().filter(|c| !c.skip_comparison) {
        for q in expand(&c.query, &c.variant_args) {
            let q = q
                .replace("demo.promlabs.com:10000", &first.to_string())
                .replace("demo.promlabs.com", "127.0.0.1");
            out.push(Case {
                query: q,
                should_fail: c.should_fail,
            });
        }
    }
    out
}

/// Aggregations, joins and set operations over the high-cardinality
/// counter (15 series per endpoint across the targets, endpoint values one
/// character apart).
fn generated_cases() -> Vec<Case> {
    let x = "http_requests_total";
    let r = "rate(http_requests_total[5m])";
    let mut q: Vec<String> = Vec::new();
    for op in [
        "sum", "avg", "min", "max", "count", "stddev", "stdvar", "group",
    ] {
        for by in [
            "by (endpoint)",
            "by (endpoint, code)",
            "without (instance)",
            "without (code, instance)",
            "by (code)",
            "",
        ] {
            for input in [x, r] {
                q.push(format!("{op} {by} ({input})"));
            }
        }
    }
    q.extend(
        [
            "count(count by (endpoint) (X))",
            "count(sum without (code) (X))",
            "topk(5, sum by (endpoint) (R))",
            "bottomk(5, sum by (endpoint) (R))",
            "topk by (code) (3, R)",
            "bottomk by (code, instance) (2, X)",
            "topk(1, X) by (endpoint)",
            "sum(topk(2, X) by (endpoint))",
            "quantile by (code) (0.9, R)",
            "quantile without (endpoint) (0.5, R)",
            "count_values by (code) (\"v\", floor(R))",
            "count(count_values by (endpoint) (\"v\", X))",
            "X / on (endpoint, code, instance) X",
            "R / ignoring (code) group_left sum without (code) (R)",
            "sum by (endpoint, instance) (R) / on (endpoint, instance) group_right sum by (endpoint, instance, code) (R)",
            "X * on (endpoint) group_left (team) endpoint_info",
            "count by (team) (X * on (endpoint) group_left (team) endpoint_info)",
            "sum by (team) (R * on (endpoint) group_left (team) endpoint_info)",
            "sum by (endpoint) (R) > on (endpoint) http_request_limit / 20",
            "sum by (endpoint) (R) > bool on (endpoint) http_request_limit / 20",
            "X + ignoring (code) X",
            "X + on (endpoint) X",
            "sum by (endpoint) (X) - on (endpoint) group_left max by (endpoint, code) (X)",
            "X and on (endpoint) (http_request_limit > 50)",
            "X unless on (endpoint) (http_request_limit > 50)",
            "(http_request_limit > 80) or on (endpoint) (http_request_limit < 20)",
            "sum by (endpoint) (R) and sum by (endpoint) (R) > 0.5",
            "X{code=\"200\"} or ignoring (code) X{code=\"404\"}",
            "X{code=\"200\"} unless ignoring (code) X{code=\"500\"} > 100",
            "(R > 0.5) and ignoring (code) (R < 0.8)",
            "count(X and ignoring (code, instance) X{instance=~\".*\"})",
            "(X > 300) or X{code=\"500\"}",
            "count(X{endpoint=~\"/api/e1.4\"} unless on (endpoint) X{endpoint=~\"/api/e18.\"})",
            "count(label_replace(X, \"ep\", \"$1\", \"endpoint\", \"/api/e(.*)\"))",
            "sum by (ep) (label_replace(R, \"ep\", \"$1\", \"endpoint\", \"/api/e(.)(.*)\"))",
            "histogram_quantile(0.9, sum by (le, path) (rate(demo_api_request_duration_seconds_bucket[5m])))",
            "histogram_quantile(0.5, sum without (instance, method) (rate(demo_api_request_duration_seconds_bucket[5m])))",
            "max_over_time(sum by (endpoint) (R)[5m:1m])",
            "count(increase(X[10m]) > 30)",
            "resets(X[1h]) > 0",
        ]
        .iter()
        .map(|t| t.replace('X', x).replace('R', r)),
    );
    q.into_iter()
        .map(|query| Case {
            query,
            should_fail: false,
        })
        .collect()
}

// ---------------------------------------------------------------------
// Asking and comparing.

/// An answer: the error, or the result type and series by label set
/// (a scalar or string is one unlabelled series).
#[derive(Debug)]
enum Answer {
    Error(String),
    Ok {
        kind: String,
        series: BTreeMap<String, Vec<(i64, f64)>>,
    },
}

fn parse_value(v: &Value) -> f64 {
    match v.as_str() {
        Some("NaN") => f64::NAN,
        Some("+Inf") | Some("Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some(s) => s.parse().unwrap_or(f64::NAN),
        None => f64::NAN,
    }
}

fn point(p: &Value) -> (i64, f64) {
    let t = (p[0].as_f64().unwrap_or(f64::NAN) * 1000.0).round() as i64;
    (t, parse_value(&p[1]))
}

/// When a query is evaluated.
#[derive(Debug, Clone, Copy)]
enum At {
    Range { start: i64, end: i64, step: i64 },
    Instant(i64),
}

async fn ask(client: &reqwest::Client, base: &str, q: &str, at: At) -> Answer {
    let secs = |ms: i64| format!("{:.3}", ms as f64 / 1000.0);
    let (path, params) = match at {
        At::Range { start, end, step } => (
            "query_range",
            vec![
                ("query", q.to_string()),
                ("start", secs(start)),
                ("end", secs(end)),
                ("step", secs(step)),
            ],
        ),
        At::Instant(t) => ("query", vec![("query", q.to_string()), ("time", secs(t))]),
    };
    let resp = match client
        .post(format!("{base}/api/v1/{path}"))
        .form(&params)
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => return Answer::Error(format!("request: {e}")),
    };
    let body: Value = match resp.json().await {
        Ok(v) => v,
        Err(e) => return Answer::Error(format!("not JSON: {e}")),
    };
    if body["status"] != "success" {
        return Answer::Error(body["error"].as_str().unwrap_or("?").to_string());
    }
    let data = &body["data"];
    let kind = data["resultType"].as_str().unwrap_or("?").to_string();
    let mut series = BTreeMap::new();
    match kind.as_str() {
        "matrix" | "vector" => {
            for s in data["result"].as_array().into_iter().flatten() {
                let labels = s["metric"].to_string();
                let pts = match s.get("values") {
                    Some(vs) => vs.as_array().into_iter().flatten().map(point).collect(),
                    None => vec![point(&s["value"])],
                };
                series.insert(labels, pts);
            }
        }
        _ => {
            series.insert(String::new(), vec![point(&data["result"])]);
        }
    }
    Answer::Ok { kind, series }
}

async fn timed_ask(client: &reqwest::Client, base: &str, q: &str, at: At) -> (Answer, Duration) {
    let t = Instant::now();
    (ask(client, base, q, at).await, t.elapsed())
}

/// Like the compliance tester's `cmpopts.EquateApprox(1e-5, 0)` with NaNs
/// equal, and a 1e-12 margin for results that should be 0 but are summed
/// in another order.
fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan())
        || a == b
        || (a - b).abs() <= (1e-5 * a.abs().min(b.abs())).max(1e-12)
}

/// The values of an answer at each timestamp, sorted: what two `topk`
/// answers that broke ties differently still share.
fn values_by_time(series: &BTreeMap<String, Vec<(i64, f64)>>) -> BTreeMap<i64, Vec<f64>> {
    let mut at: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
    for (t, v) in series.values().flatten() {
        at.entry(*t).or_default().push(*v);
    }
    for vs in at.values_mut() {
        vs.sort_by(f64::total_cmp);
    }
    at
}

/// Two answers that select the same values at every timestamp.
fn same_values(w: &Answer, p: &Answer) -> bool {
    let (Answer::Ok { series: ws, .. }, Answer::Ok { series: ps, .. }) = (w, p) else {
        return false;
    };
    let (wv, pv) = (values_by_time(ws), values_by_time(ps));
    wv.len() == pv.len()
        && wv.iter().zip(&pv).all(|((wt, a), (pt, b))| {
            wt == pt && a.len() == b.len() && a.iter().zip(b).all(|(x, y)| close(*x, *y))
        })
}

/// Why two answers differ (None when they agree).
fn differ(w: &Answer, p: &Answer, should_fail: bool) -> Option<String> {
    match (w, p) {
        (Answer::Error(_), Answer::Error(_)) => None,
        (Answer::Error(e), Answer::Ok { .. }) => Some(format!("wasmon failed: {e}")),
        (Answer::Ok { .. }, Answer::Error(e)) if should_fail => Some(format!(
            "wasmon answered a query that should fail (prometheus: {e})"
        )),
        (Answer::Ok { .. }, Answer::Error(e)) => Some(format!("prometheus failed: {e}")),
        (
            Answer::Ok {
                kind: wk,
                series: ws,
            },
            Answer::Ok {
                kind: pk,
                series: ps,
            },
        ) => {
            if wk != pk {
                return Some(format!("result type {wk} vs {pk}"));
            }
            let only_w: Vec<&String> = ws.keys().filter(|k| !ps.contains_key(*k)).collect();
            let only_p: Vec<&String> = ps.keys().filter(|k| !ws.contains_key(*k)).collect();
            if !only_w.is_empty() || !only_p.is_empty() {
                return Some(format!(
                    "series: {} of {} only in wasmon (e.g. {}), {} of {} only in prometheus (e.g. {})",
                    only_w.len(),
                    ws.len(),
                    only_w.first().map_or("-", |s| s.as_str()),
                    only_p.len(),
                    ps.len(),
                    only_p.first().map_or("-", |s| s.as_str()),
                ));
            }
            for (l, wp) in ws {
                let pp = &ps[l];
                if wp.len() != pp.len()
                    || wp
                        .iter()
                        .zip(pp)
                        .any(|(a, b)| a.0 != b.0 || !close(a.1, b.1))
                {
                    let first = wp
                        .iter()
                        .zip(pp)
                        .find(|(a, b)| a.0 != b.0 || !close(a.1, b.1))
                        .map(|(a, b)| format!("{a:?} vs {b:?}"))
                        .unwrap_or_default();
                    return Some(format!(
                        "{l}: {} vs {} points, first difference {first}",
                        wp.len(),
                        pp.len()
                    ));
                }
            }
            None
        }
    }
}

/// Brings up the targets, wasmon and Prometheus, waits until both hold
/// the whole history, then compares every query. None when Prometheus is
/// not installed (outside CI).
pub async fn run(size: Size) -> Option<Report> {
    let points = size.points.max(4);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // The history ends by the time both have read it (each point is served
    // twice per scraper) and starts within the hour Prometheus accepts.
    let span = (points as i64 - 1) * STEP_MS;
    let read_ms = 2 * points as i64 * size.interval.as_millis() as i64;
    assert!(
        span < 55 * 60_000,
        "{points} points do not fit in the last hour"
    );
    let t0 = (now + read_ms - span - 60_000) / STEP_MS * STEP_MS + SAMPLE_PHASE_MS;
    let data = Arc::new(Data {
        t0,
        points,
        endpoints: size.endpoints,
        scrapes: (0..TARGETS).map(|_| Default::default()).collect(),
    });
    let began = Instant::now();
    let addrs = targets(&data).await;
    let list = |quote: &str| {
        addrs
            .iter()
            .map(|a| format!("{quote}{a}{quote}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ms = size.interval.as_millis();
    let timeout = ms * 9 / 10;
    if !prometheus_installed("the PromQL comparison") {
        return None;
    }
    let prom = Prometheus::start(
        &format!(
            "global:\n  scrape_interval: {ms}ms\n  scrape_timeout: {timeout}ms\nscrape_configs:\n  - job_name: demo\n    metrics_path: /prom/metrics\n    static_configs:\n      - targets: [{}]\n",
            list("'")
        ),
        &[],
        None,
    )
    .await;
    let agent = crate::fixtures::AgentProcess::start(
        tempfile::tempdir().unwrap(),
        &format!(
            "[global]\nscrape_interval = \"{ms}ms\"\nscrape_timeout = \"{timeout}ms\"\n\n[web]\nlisten_address = \"{{{{LISTEN}}}}\"\n\n[storage]\npath = \"data\"\n\n[[scrape_configs]]\njob_name = \"demo\"\nmetrics_path = \"/wasmon/metrics\"\nstatic_configs = [{{ targets = [{}] }}]\n",
            list("\"")
        ),
    )
    .await;
    let wasmon = agent.url("");
    let prometheus = format!("http://{}", prom.addr);

    // Wait until both scrapers were served the last point a second time,
    // then for that scrape to be appended.
    let deadline =
        Instant::now() + Duration::from_millis(read_ms as u64 * 3) + Duration::from_secs(60);
    let need = 2 * points as u64 + 2;
    while data
        .scrapes
        .iter()
        .any(|s| s.iter().any(|c| c.load(Ordering::SeqCst) < need))
    {
        let got: Vec<[u64; 2]> = data
            .scrapes
            .iter()
            .map(|s| [s[0].load(Ordering::SeqCst), s[1].load(Ordering::SeqCst)])
            .collect();
        assert!(
            Instant::now() < deadline,
            "scrapes so far (prometheus, wasmon) per target: {got:?}, need {need}\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(size.interval * 2).await;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let last = t0 + span;
    let start = t0 + QUERY_PHASE_MS - STEP_MS;
    let end = last + QUERY_PHASE_MS;
    // About 30 steps over the data, a multiple of the sample step.
    let step = ((span / 30) / STEP_MS).max(1) * STEP_MS;
    // Both hold every sample: the same count of each series, metric by
    // metric (`count_over_time` drops the name, so over several metrics at
    // once it fails in both with "vector cannot contain metrics with the
    // same labelset", and two failures would agree).
    let names: Value = client
        .get(format!("{prometheus}/api/v1/label/__name__/values"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.starts_with("demo_") || n.starts_with("http_") || *n == "endpoint_info")
        .collect();
    let (mut checked, mut full) = (0, 0);
    for name in names {
        let check = format!("count_over_time({name}[1h])");
        let (w, p) = (
            ask(&client, &wasmon, &check, At::Instant(end)).await,
            ask(&client, &prometheus, &check, At::Instant(end)).await,
        );
        for (who, a) in [("wasmon", &w), ("prometheus", &p)] {
            if let Answer::Error(e) = a {
                panic!("{check} failed in {who}: {e}\n{}", agent.logs());
            }
        }
        if let Some(d) = differ(&w, &p, false) {
            panic!(
                "the two systems did not ingest the same samples: {check}: {d}\n{}",
                agent.logs()
            );
        }
        if let Answer::Ok { series, .. } = &w {
            checked += series.len();
            full += series
                .values()
                .filter(|p| p[0].1 as usize >= points - 1)
                .count();
        }
    }
    assert_eq!(checked, data.series(), "series ingested");
    assert!(full > data.series() / 2, "most series hold every point");

    let ingest = began.elapsed();
    let began = Instant::now();
    let mut cases = compliance_cases(addrs[0]);
    cases.extend(generated_cases());
    let cases: Vec<Case> = cases
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % size.sample == 0)
        .map(|(_, c)| c)
        .collect();
    let mut report = Report {
        series: data.series(),
        queries: cases.len(),
        ingest,
        ..Default::default()
    };
    // Each query as a range query over the data and as an instant query
    // at its end.
    let range = At::Range { start, end, step };
    let jobs: Vec<(Case, At)> = cases
        .iter()
        .flat_map(|c| [(c.clone(), range), (c.clone(), At::Instant(end))])
        .collect();
    type Done = (Case, At, Option<String>, bool, Duration, Duration);
    let results: Vec<Done> = futures::stream::iter(jobs)
        .map(|(c, at)| {
            let (client, wasmon, prometheus) = (&client, &wasmon, &prometheus);
            async move {
                let ((w, wt), (p, pt)) = futures::join!(
                    timed_ask(client, wasmon, &c.query, at),
                    timed_ask(client, prometheus, &c.query, at)
                );
                let d = differ(&w, &p, c.should_fail);
                let selects = c.query.contains("topk") || c.query.contains("bottomk");
                let tie = d.is_some() && selects && same_values(&w, &p);
                (c, at, d, tie, wt, pt)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let mut known_seen: HashMap<&str, bool> = HashMap::new();
    for (c, at, d, tie, wt, pt) in results {
        report.comparisons += 1;
        report.wasmon_time += wt;
        report.prometheus_time += pt;
        let kind = match at {
            At::Range { .. } => "range",
            At::Instant(_) => "instant",
        };
        let known = KNOWN.iter().find(|(pat, _)| c.query.contains(pat));
        match (d, known) {
            (None, None) => {}
            (None, Some((pat, _))) => {
                known_seen.entry(pat).or_insert(false);
            }
            (Some(d), Some((pat, why))) => {
                known_seen.insert(pat, true);
                report
                    .known
                    .push(format!("{kind} {}: {d} [known: {why}]", c.query));
            }
            (Some(d), None) if tie => report.ties.push(format!("{kind} {}: {d}", c.query)),
            (Some(d), None) => report.differences.push(format!("{kind} {}: {d}", c.query)),
        }
    }
    report.known_but_equal = known_seen
        .into_iter()
        .filter(|(_, differed)| !differed)
        .map(|(p, _)| p.to_string())
        .collect();
    report.known.sort();
    report.differences.sort();
    report.compare = began.elapsed();
    Some(report)
}

impl Report {
    pub fn print(&self) {
        println!(
            "promql differential: {} series, {} queries, {} comparisons (range + instant), {} differences, {} known differences, {} ties broken otherwise ({:.1} s ingesting, {:.1} s comparing; answers took {:.1} s in wasmon, {:.1} s in prometheus)",
            self.series,
            self.queries,
            self.comparisons,
            self.differences.len(),
            self.known.len(),
            self.ties.len(),
            self.ingest.as_secs_f64(),
            self.compare.as_secs_f64(),
            self.wasmon_time.as_secs_f64(),
            self.prometheus_time.as_secs_f64(),
        );
        for d in &self.differences {
            println!("DIFF {d}");
        }
        for d in &self.known {
            println!("KNOWN {d}");
        }
        for p in &self.known_but_equal {
            println!("KNOWN BUT EQUAL {p}");
        }
        for t in &self.ties {
            println!("TIE {t}");
        }
    }
}
