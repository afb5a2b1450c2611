//! The HTTP API as a client reaches it: the real axum router over a real
//! agent (`Agent::start` on a temp dir: store, rules, dispatcher, silences;
//! no plugins, no scrape targets), fed one request per input. The first
//! byte picks the endpoint and how the rest is sent: query and query_range
//! (form bodies and raw query strings, so parameter parsing is fuzzed too),
//! series selectors, Alertmanager v2 alerts and silences (JSON bodies) and
//! matcher filters. Any status is an answer; a panic, a hang (libFuzzer's
//! -timeout) or a stack overflow is a bug.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;
use wasmon::config::Config;

struct Api {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    // Kept for the life of the process: the store and silences live there.
    _dir: tempfile::TempDir,
}

fn api() -> &'static Api {
    static API: OnceLock<Api> = OnceLock::new();
    API.get_or_init(|| {
        // tmpfs when there is one: silences are fsynced on every change.
        let base = std::path::Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let d = dir.path().display();
        let text = format!(
            r#"
[web]
listen_address = "127.0.0.1:0"

[storage]
path = "{d}/data"

[plugins]
dir = "{d}/plugins"
cache_dir = "{d}/cache"
watch = false

[query]
timeout = "1s"
max_samples = 200000

[[receivers]]
name = "ops"
plugin = "webhook"
allow_hosts = ["127.0.0.1:9"]
config = {{ url = "http://127.0.0.1:9/unused" }}

[route]
receiver = "ops"
group_wait = "1h"
"#
        );
        let config = Config::parse(&text, "fuzz.toml").expect("fuzz config");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let agent = rt.block_on(wasmon::app::Agent::start(config)).expect("agent");
        let router = wasmon::web::router(Arc::clone(&agent));
        Api {
            rt,
            router,
            _dir: dir,
        }
    })
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn request(sel: u8, text: &str, raw: &[u8]) -> Option<Request<Body>> {
    let post_form = |path: &str, body: String| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .ok()
    };
    let post_json = |path: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(raw.to_vec()))
            .ok()
    };
    let get = |path: &str, query: &str| {
        Request::builder()
            .uri(format!("{path}?{query}"))
            .body(Body::empty())
            .ok()
    };
    match sel % 10 {
        0 => post_form("/api/v1/query", form(&[("query", text), ("time", "600")])),
        1 => post_form(
            "/api/v1/query_range",
            form(&[("query", text), ("start", "0"), ("end", "900"), ("step", "60")]),
        ),
        // Every parameter from the input, as a client could send them.
        2 => post_form("/api/v1/query", text.to_string()),
        3 => post_form("/api/v1/query_range", text.to_string()),
        4 => get("/api/v1/series", &form(&[("match[]", text)])),
        5 => post_json("/api/v2/alerts"),
        6 => post_json("/api/v2/silences"),
        7 => get("/api/v2/alerts", &form(&[("filter", text)])),
        8 => get("/api/v2/silences", &form(&[("filter", text)])),
        _ => get("/api/v1/query_exemplars", &form(&[("query", text)])),
    }
}

fuzz_target!(init: {
    // libfuzzer-sys' panic hook aborts on every panic, even one wasmon
    // catches on purpose (promql::parse_query turns promql-parser's panics
    // into errors). The default hook lets that catch work; a panic that
    // escapes the target still aborts the run.
    drop(std::panic::take_hook());
    api();
}, |data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let Some(req) = request(sel, &text, rest) else {
        return;
    };
    let api = api();
    api.rt.block_on(async {
        let resp = api.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body");
        // A client error is an answer; the server failing on its own input
        // handling is not, nor is a panic in a blocking task (the query
        // handlers answer one as "query task failed: ...").
        let text = String::from_utf8_lossy(&body);
        assert!(
            status.as_u16() != 500 || text.starts_with("{\"error\":\"storage"),
            "{status}: {text}"
        );
        assert!(
            !text.starts_with("{\"error\":\"query task failed"),
            "{status}: {text}"
        );
    });
});
