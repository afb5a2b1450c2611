//! The scrape loop against a real HTTP target on 127.0.0.1: target labels,
//! honor_labels, metric relabeling, limits, staleness, synthetic series,
//! content negotiation and gzip.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::get;
use axum::Router;
use wasmon::config::Config;
use wasmon::model::{is_stale_nan, Labels};
use wasmon::scrape::scrape_loop::{Health, ScrapeLoop, ScrapeStats};
use wasmon::scrape::{Job, Target};
use wasmon::storage::{Matcher, MemStorage};

#[derive(Clone)]
struct Page {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    gzip: bool,
}

struct Server {
    addr: std::net::SocketAddr,
    page: Arc<Mutex<Page>>,
    seen_headers: Arc<Mutex<Vec<HeaderMap>>>,
}

async fn server(body: &str) -> Server {
    let page = Arc::new(Mutex::new(Page {
        status: StatusCode::OK,
        content_type: "text/plain; version=0.0.4",
        body: body.as_bytes().to_vec(),
        gzip: false,
    }));
    let seen_headers: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
    let (p, h) = (page.clone(), seen_headers.clone());
    let app = Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let (p, h) = (p.clone(), h.clone());
            async move {
                h.lock().unwrap().push(headers);
                let page = p.lock().unwrap().clone();
                let mut out = HeaderMap::new();
                out.insert("content-type", HeaderValue::from_static(page.content_type));
                let body = if page.gzip {
                    use std::io::Write;
                    out.insert("content-encoding", HeaderValue::from_static("gzip"));
                    let mut e =
                        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                    e.write_all(&page.body).unwrap();
                    e.finish().unwrap()
                } else {
                    page.body
                };
                (page.status, out, body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Server {
        addr,
        page,
        seen_headers,
    }
}

fn job(extra: &str) -> Job {
    let text =
        format!("[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"15s\"\n{extra}");
    let c = Config::parse(&text, "t.toml").unwrap();
    Job::from_config(&c.scrape_configs[0], &c).unwrap()
}

fn scrape_loop(job: Job, addr: std::net::SocketAddr, store: Arc<MemStorage>) -> ScrapeLoop {
    let job = Arc::new(job);
    let discovered = Labels::from_pairs([
        ("__address__", addr.to_string()),
        ("env", "test".to_string()),
    ]);
    let target = Target::populate(&job, discovered).unwrap().unwrap();
    ScrapeLoop::new(
        job,
        Arc::new(target),
        store,
        Arc::new(ScrapeStats::default()),
    )
}

/// A loop for `job` scraping `addr` into a new TSDB in `dir`.
fn tsdb_scrape_loop(
    job: Job,
    addr: std::net::SocketAddr,
    dir: &std::path::Path,
) -> (ScrapeLoop, Arc<wasmon::tsdb::Db>) {
    let db = Arc::new(wasmon::tsdb::Db::open(dir, wasmon::tsdb::Options::default()).unwrap());
    let job = Arc::new(job);
    let target = Target::populate(
        &job,
        Labels::from_pairs([("__address__", addr.to_string())]),
    )
    .unwrap()
    .unwrap();
    let sl = ScrapeLoop::new(
        job,
        Arc::new(target),
        db.clone(),
        Arc::new(ScrapeStats::default()),
    );
    (sl, db)
}

fn value(store: &MemStorage, name: &str, t: i64) -> Option<f64> {
    store
        .series(name)
        .iter()
        .rev()
        .find(|(_, ts, _)| *ts == t)
        .map(|(_, _, v)| *v)
}

const PAGE: &str = "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\nhttp_requests_total{path=\"/a\",job=\"scraped\"} 10\nhttp_requests_total{path=\"/b\"} 3\n# TYPE temp gauge\ntemp 21.5 1700000000000\n";

#[tokio::test]
async fn scrape_appends_samples_with_target_labels_and_reports() {
    let srv = server(PAGE).await;
    let store = Arc::new(MemStorage::new());
    let mut sl = scrape_loop(job(""), srv.addr, store.clone());
    sl.scrape_once(1000).await;
    let st = sl.state.lock().unwrap().clone();
    assert_eq!(st.health, Health::Up, "{}", st.last_error);

    let reqs = store.series("http_requests_total");
    assert_eq!(reqs.len(), 2);
    let a = &reqs
        .iter()
        .find(|(l, _, _)| l.get("path") == Some("/a"))
        .unwrap()
        .0;
    // A scraped `job` conflicts with the target's: kept as exported_job.
    assert_eq!(a.get("job"), Some("app"));
    assert_eq!(a.get("exported_job"), Some("scraped"));
    assert_eq!(a.get("instance"), Some(srv.addr.to_string().as_str()));
    assert_eq!(a.get("env"), Some("test"));
    // Explicit timestamps are honored.
    assert_eq!(store.series("temp")[0].1, 1_700_000_000_000);

    assert_eq!(value(&store, "up", 1000), Some(1.0));
    assert_eq!(value(&store, "scrape_samples_scraped", 1000), Some(3.0));
    assert_eq!(
        value(&store, "scrape_samples_post_metric_relabeling", 1000),
        Some(3.0)
    );
    assert_eq!(value(&store, "scrape_series_added", 1000), Some(3.0));
    assert!(value(&store, "scrape_duration_seconds", 1000).unwrap() > 0.0);
    let up = &store.series("up")[0].0;
    assert_eq!(up.get("job"), Some("app"));

    // Prometheus' Accept header, and the timeout header.
    let h = srv.seen_headers.lock().unwrap()[0].clone();
    assert!(h["accept"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert_eq!(h["x-prometheus-scrape-timeout-seconds"], "10");

    // Second scrape: /b disappeared -> staleness marker; nothing added.
    srv.page.lock().unwrap().body =
        b"http_requests_total{path=\"/a\",job=\"scraped\"} 11\ntemp 22 1700000015000\n".to_vec();
    sl.scrape_once(16000).await;
    let b: Vec<_> = store
        .series("http_requests_total")
        .into_iter()
        .filter(|(l, _, _)| l.get("path") == Some("/b"))
        .collect();
    assert_eq!(b.len(), 2);
    assert_eq!(b[1].1, 16000);
    assert!(
        is_stale_nan(b[1].2),
        "expected a staleness marker for the vanished series"
    );
    assert_eq!(value(&store, "scrape_series_added", 16000), Some(0.0));
    // Series with explicit timestamps never get staleness markers.
    assert!(store
        .series("temp")
        .iter()
        .all(|(_, _, v)| !is_stale_nan(*v)));

    // A failed scrape: up 0, lastError set, everything from the last scrape stale.
    srv.page.lock().unwrap().status = StatusCode::INTERNAL_SERVER_ERROR;
    sl.scrape_once(31000).await;
    assert_eq!(value(&store, "up", 31000), Some(0.0));
    let st = sl.state.lock().unwrap().clone();
    assert_eq!(st.health, Health::Down);
    assert!(st.last_error.contains("500"), "{}", st.last_error);
    let a_last = store
        .series("http_requests_total")
        .into_iter()
        .rfind(|(l, _, _)| l.get("path") == Some("/a"))
        .unwrap();
    assert_eq!(a_last.1, 31000);
    assert!(is_stale_nan(a_last.2));
}

#[tokio::test]
async fn honor_labels_and_metric_relabeling() {
    let srv = server(PAGE).await;
    let store = Arc::new(MemStorage::new());
    let j = job(
        "honor_labels = true\n[[scrape_configs.metric_relabel_configs]]\nsource_labels = [\"__name__\"]\nregex = \"temp\"\naction = \"drop\"\n",
    );
    let mut sl = scrape_loop(j, srv.addr, store.clone());
    sl.scrape_once(1000).await;
    assert!(
        store.series("temp").is_empty(),
        "dropped by metric_relabel_configs"
    );
    let a = store
        .series("http_requests_total")
        .into_iter()
        .find(|(l, _, _)| l.get("path") == Some("/a"))
        .unwrap()
        .0;
    assert_eq!(
        a.get("job"),
        Some("scraped"),
        "honor_labels keeps the scraped value"
    );
    assert_eq!(a.get("exported_job"), None);
    assert_eq!(value(&store, "scrape_samples_scraped", 1000), Some(3.0));
    assert_eq!(
        value(&store, "scrape_samples_post_metric_relabeling", 1000),
        Some(2.0)
    );
}

#[tokio::test]
async fn limits_fail_the_whole_scrape() {
    let srv = server(PAGE).await;
    for (extra, needle) in [
        ("sample_limit = 2\n", "sample limit exceeded"),
        ("label_limit = 3\n", "label limit exceeded"),
        ("label_value_length_limit = 2\n", "longer than 2"),
        ("body_size_limit = \"20B\"\n", "body size limit exceeded"),
    ] {
        let store = Arc::new(MemStorage::new());
        let mut sl = scrape_loop(job(extra), srv.addr, store.clone());
        sl.scrape_once(1000).await;
        let st = sl.state.lock().unwrap().clone();
        assert!(st.last_error.contains(needle), "{extra}: {}", st.last_error);
        assert!(
            store.series("http_requests_total").is_empty(),
            "{extra}: nothing may be appended"
        );
        assert_eq!(value(&store, "up", 1000), Some(0.0));
    }
}

#[tokio::test]
async fn openmetrics_and_gzip() {
    let srv = server("# TYPE requests counter\nrequests_total 5\n# EOF\n").await;
    {
        let mut p = srv.page.lock().unwrap();
        p.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        p.gzip = true;
    }
    let store = Arc::new(MemStorage::new());
    let mut sl = scrape_loop(job(""), srv.addr, store.clone());
    sl.scrape_once(1000).await;
    let st = sl.state.lock().unwrap().clone();
    assert_eq!(st.health, Health::Up, "{}", st.last_error);
    assert_eq!(store.series("requests_total").len(), 1);
    // The same page without `# EOF` is invalid OpenMetrics.
    srv.page.lock().unwrap().body = b"requests_total 5\n".to_vec();
    sl.scrape_once(2000).await;
    let st = sl.state.lock().unwrap().clone();
    assert!(st.last_error.contains("parse error"), "{}", st.last_error);
}

/// A page Prometheus' scraper ingests and expfmt refuses (no final line
/// feed, TYPE after its samples and repeated, labels without a comma, a
/// `\t` kept as written) is scraped; one Prometheus refuses (a negative
/// timestamp) marks the target down with the line and the reason.
#[tokio::test]
async fn text_pages_are_read_as_prometheus_reads_them() {
    let srv = server(concat!(
        "jobs{queue=\"a\" kind=\"x\\ty\"} 4\n",
        "# TYPE jobs gauge\n",
        "# TYPE jobs gauge\n",
        "\n",
        "done 7",
    ))
    .await;
    let store = Arc::new(MemStorage::new());
    let mut sl = scrape_loop(job(""), srv.addr, store.clone());
    sl.scrape_once(1000).await;
    let st = sl.state.lock().unwrap().clone();
    assert_eq!(st.health, Health::Up, "{}", st.last_error);
    assert_eq!(value(&store, "done", 1000), Some(7.0));
    let jobs = store.series("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].0.get("kind"), Some("x\\ty"));

    srv.page.lock().unwrap().body = b"done 8\ndone 9 -5\n".to_vec();
    sl.scrape_once(2000).await;
    let st = sl.state.lock().unwrap().clone();
    assert_eq!(st.health, Health::Down);
    assert_eq!(
        st.last_error,
        "parse error: line 2: expected timestamp or new record, got \"-\""
    );
    // Nothing of a refused page is kept (the failed scrape marks the
    // series stale).
    assert!(value(&store, "done", 2000).is_some_and(f64::is_nan));
}

/// With the real store, vanished series are marked stale through the
/// store's series handles (no label sets kept by the loop).
#[tokio::test]
async fn staleness_through_the_tsdb() {
    let srv = server(PAGE).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut sl, db) = tsdb_scrape_loop(job(""), srv.addr, dir.path());
    // Near the page's own timestamp for `temp` (1700000000000): the store
    // takes nothing more than half a block older than its newest sample.
    let t0 = 1_699_999_990_000;
    sl.scrape_once(t0).await;
    srv.page.lock().unwrap().body = b"http_requests_total{path=\"/a\"} 11\n".to_vec();
    sl.scrape_once(t0 + 15_000).await;
    let m = [
        Matcher::equal("__name__", "http_requests_total"),
        Matcher::equal("path", "/b"),
    ];
    let got = db.select(&m, 0, i64::MAX);
    assert_eq!(got.len(), 1);
    let samples = &got[0].samples;
    assert_eq!(samples.len(), 2, "{samples:?}");
    assert_eq!(samples[1].0, t0 + 15_000);
    assert!(is_stale_nan(samples[1].1));
}

/// Two series whose label hashes collided under the hash the loop keyed
/// its series by (issue #17: `/api/e419` and `/api/e492` with these
/// labels, under the head's old Fx-style hash) are two series: both count
/// as added, and the one that vanishes is marked stale.
#[tokio::test]
async fn series_whose_label_hashes_collide_are_tracked_apart() {
    let both = "m{endpoint=\"/api/e419\",instance=\"synth:1\"} 1\nm{endpoint=\"/api/e492\",instance=\"synth:1\"} 2\n";
    let srv = server(both).await;
    let dir = tempfile::tempdir().unwrap();
    let (mut sl, db) = tsdb_scrape_loop(job("honor_labels = true\n"), srv.addr, dir.path());
    let samples = |name: &str, m: &[Matcher]| -> Vec<(i64, f64)> {
        let mut all = vec![Matcher::equal("__name__", name)];
        all.extend_from_slice(m);
        db.select(&all, 0, 100_000)
            .first()
            .map(|s| s.samples.clone())
            .unwrap_or_default()
    };
    sl.scrape_once(1000).await;
    assert_eq!(samples("scrape_series_added", &[]), [(1000, 2.0)]);
    for (i, gone) in ["/api/e419", "/api/e492"].into_iter().enumerate() {
        let kept = if i == 0 { "/api/e492" } else { "/api/e419" };
        let t = 16_000 * (2 * i as i64 + 1);
        srv.page.lock().unwrap().body =
            format!("m{{endpoint={kept:?},instance=\"synth:1\"}} 3\n").into_bytes();
        sl.scrape_once(t).await;
        let got = samples("m", &[Matcher::equal("endpoint", gone)]);
        assert!(
            got.last()
                .is_some_and(|&(st, v)| st == t && is_stale_nan(v)),
            "{gone} vanished at {t}: {got:?}"
        );
        let got = samples("m", &[Matcher::equal("endpoint", kept)]);
        assert_eq!(got.last(), Some(&(t, 3.0)), "{kept}");
        // Both back.
        srv.page.lock().unwrap().body = both.as_bytes().to_vec();
        sl.scrape_once(t + 16_000).await;
        assert_eq!(
            samples("scrape_series_added", &[]).last(),
            Some(&(t + 16_000, 1.0))
        );
    }
}

/// A scrape that fails half way (at the sample limit, after some of its
/// series were already in the batch) marks the last *good* scrape's series
/// stale — including one the failed page gave its own timestamp — and
/// none of the series only the failed page had; the next good scrape
/// counts every series as added. Through the TSDB (series handles) and the
/// in-memory store (label sets).
#[tokio::test]
async fn a_scrape_failing_half_way_marks_the_last_good_scrape_stale() {
    let good = "m{s=\"a\"} 1\nm{s=\"b\"} 2\n";
    let failing = "m{s=\"a\"} 1 1700000000000\nm{s=\"c\"} 3\nm{s=\"d\"} 4\nm{s=\"e\"} 5\n";
    let srv = server(good).await;
    let dir = tempfile::tempdir().unwrap();
    let db =
        Arc::new(wasmon::tsdb::Db::open(dir.path(), wasmon::tsdb::Options::default()).unwrap());
    let mem = Arc::new(MemStorage::new());
    for use_db in [true, false] {
        let j = Arc::new(job("sample_limit = 3\n"));
        let target = Target::populate(
            &j,
            Labels::from_pairs([("__address__", srv.addr.to_string())]),
        )
        .unwrap()
        .unwrap();
        let store: Arc<dyn wasmon::storage::Appendable> =
            if use_db { db.clone() } else { mem.clone() };
        let mut sl = ScrapeLoop::new(j, Arc::new(target), store, Arc::new(ScrapeStats::default()));
        srv.page.lock().unwrap().body = good.as_bytes().to_vec();
        sl.scrape_once(1000).await;
        srv.page.lock().unwrap().body = failing.as_bytes().to_vec();
        sl.scrape_once(2000).await;
        let st = sl.state.lock().unwrap().clone();
        assert!(st.last_error.contains("sample limit"), "{}", st.last_error);
        srv.page.lock().unwrap().body = good.as_bytes().to_vec();
        sl.scrape_once(3000).await;
        // (t, stale?) per series.
        let samples = |s: &str| -> Vec<(i64, bool)> {
            if use_db {
                let m = [Matcher::equal("__name__", "m"), Matcher::equal("s", s)];
                db.select(&m, 0, 10_000)
                    .first()
                    .map(|x| {
                        x.samples
                            .iter()
                            .map(|&(t, v)| (t, is_stale_nan(v)))
                            .collect()
                    })
                    .unwrap_or_default()
            } else {
                mem.series("m")
                    .into_iter()
                    .filter(|(l, _, _)| l.get("s") == Some(s))
                    .map(|(_, t, v)| (t, is_stale_nan(v)))
                    .collect()
            }
        };
        let which = if use_db { "tsdb" } else { "memory" };
        assert_eq!(
            samples("a"),
            [(1000, false), (2000, true), (3000, false)],
            "{which}"
        );
        assert_eq!(
            samples("b"),
            [(1000, false), (2000, true), (3000, false)],
            "{which}"
        );
        for s in ["c", "d", "e"] {
            assert!(samples(s).is_empty(), "{which}: {s} was never committed");
        }
        let added = if use_db {
            let m = [Matcher::equal("__name__", "scrape_series_added")];
            db.select(&m, 3000, 3000)[0].samples[0].1
        } else {
            value(&mem, "scrape_series_added", 3000).unwrap()
        };
        assert_eq!(
            added, 2.0,
            "{which}: after a failed scrape every series is new"
        );
    }
}

#[tokio::test]
async fn basic_and_bearer_auth_reach_the_target() {
    use base64::Engine as _;
    let srv = server(PAGE).await;
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, "from-file\n").unwrap();
    let tok_file = dir.path().join("token");
    std::fs::write(&tok_file, "tok-from-file\n").unwrap();
    let cases = [
        (
            "basic_auth = { username = \"prom\", password = \"s3cret\" }".to_string(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("prom:s3cret")
            ),
        ),
        (
            // The file's trailing newline is not part of the password.
            format!(
                "basic_auth = {{ username = \"prom\", password_file = {:?} }}",
                pw_file.display().to_string()
            ),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("prom:from-file")
            ),
        ),
        (
            "bearer_token = \"abc\"".to_string(),
            "Bearer abc".to_string(),
        ),
        (
            format!("bearer_token_file = {:?}", tok_file.display().to_string()),
            "Bearer tok-from-file".to_string(),
        ),
    ];
    for (i, (extra, want)) in cases.iter().enumerate() {
        let store = Arc::new(MemStorage::new());
        let mut sl = scrape_loop(job(extra), srv.addr, store.clone());
        sl.scrape_once(1_000 * (i as i64 + 1)).await;
        let seen = srv.seen_headers.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            seen.get("authorization").and_then(|v| v.to_str().ok()),
            Some(want.as_str()),
            "{extra}"
        );
        assert_eq!(sl.state.lock().unwrap().health, Health::Up, "{extra}");
    }
}

#[test]
fn conflicting_or_unreadable_auth_is_a_named_config_error() {
    let text = "[[scrape_configs]]\njob_name = \"app\"\nbearer_token = \"a\"\nbasic_auth = { username = \"u\", password = \"p\" }\n";
    let c = Config::parse(text, "t.toml").unwrap();
    let err = Job::from_config(&c.scrape_configs[0], &c).unwrap_err();
    assert!(
        format!("{err:#}").contains("job \"app\": at most one of"),
        "{err:#}"
    );

    let text =
        "[[scrape_configs]]\njob_name = \"app\"\nbearer_token_file = \"/nonexistent/token\"\n";
    let c = Config::parse(text, "t.toml").unwrap();
    let err = format!(
        "{:#}",
        Job::from_config(&c.scrape_configs[0], &c).unwrap_err()
    );
    assert!(
        err.contains("job \"app\": reading bearer_token_file /nonexistent/token"),
        "{err}"
    );
}
