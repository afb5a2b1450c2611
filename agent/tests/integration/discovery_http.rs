//! HTTP SD (`http_sd_configs`) against a local server on 127.0.0.1:
//! Prometheus' own http_test.go cases, then a running provider whose
//! server changes, breaks (500, bad JSON, too slow) and recovers — the
//! last good groups are kept and the Status says why — and a scrape pool
//! that scrapes what it discovers.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use wasmon::config::discovery::HttpSdConfig;
use wasmon::config::Config;
use wasmon::discovery::http::{refresh, HttpSdError};
use wasmon::discovery::{Status, TargetGroup};

/// What the SD server answers, changed by the test as it goes.
#[derive(Clone)]
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    delay: Duration,
}

#[derive(Clone)]
struct SdServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
}

impl SdServer {
    async fn start(body: &str) -> SdServer {
        let answer = Arc::new(Mutex::new(Answer {
            status: StatusCode::OK,
            content_type: "application/json",
            body: body.into(),
            delay: Duration::ZERO,
        }));
        let seen: Arc<Mutex<Vec<HeaderMap>>> = Arc::default();
        let (a, s) = (answer.clone(), seen.clone());
        let app = Router::new().fallback(move |headers: HeaderMap| {
            let (a, s) = (a.clone(), s.clone());
            async move {
                s.lock().unwrap().push(headers);
                let ans = a.lock().unwrap().clone();
                tokio::time::sleep(ans.delay).await;
                (
                    ans.status,
                    [(header::CONTENT_TYPE, ans.content_type)],
                    ans.body,
                )
                    .into_response()
            }
        });
        let addr = crate::fixtures::serve(app).await;
        SdServer {
            url: format!("http://{addr}/sd"),
            answer,
            seen,
        }
    }

    fn set(&self, f: impl FnOnce(&mut Answer)) {
        f(&mut self.answer.lock().unwrap());
    }

    /// A job scraping every second with one `http_sd_configs` entry for
    /// this server; `extra` adds keys to the entry.
    fn config(&self, extra: &str) -> Config {
        let text = format!(
            "[[scrape_configs]]\njob_name = \"sd\"\nscrape_interval = \"1s\"\n[[scrape_configs.http_sd_configs]]\nurl = \"{}\"\n{extra}",
            self.url
        );
        Config::parse(&text, "t.toml").unwrap()
    }

    fn sd(&self, extra: &str) -> HttpSdConfig {
        self.config(extra).scrape_configs[0].http_sd_configs[0].clone()
    }

    async fn refresh(&self, extra: &str) -> Result<Vec<TargetGroup>, HttpSdError> {
        let sd = self.sd(extra);
        let keys = sd.http_client();
        let client = keys.build(&|p| p.to_path_buf()).unwrap();
        refresh(&client, &keys.credentials(), &sd).await
    }
}

fn group(url: &str, i: usize, targets: &[&str], labels: &[(&str, &str)]) -> TargetGroup {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert("__meta_url".into(), url.into());
    TargetGroup {
        source: format!("{url}:{i}"),
        targets: targets
            .iter()
            .map(|t| BTreeMap::from([("__address__".to_string(), t.to_string())]))
            .collect(),
        labels: l,
    }
}

/// Prometheus' TestHTTPValidRefresh (its fixtures/http_sd.good.json), and
/// the request's headers.
#[tokio::test]
async fn a_valid_answer_becomes_groups_with_source_and_url() {
    let srv = SdServer::start(
        r#"[{"labels": {"__meta_datacenter": "bru1"}, "targets": ["127.0.0.1:9090"]}]"#,
    )
    .await;
    let got = srv.refresh("refresh_interval = \"30s\"\n").await.unwrap();
    assert_eq!(
        got,
        [group(
            &srv.url,
            0,
            &["127.0.0.1:9090"],
            &[("__meta_datacenter", "bru1")]
        )]
    );
    let h = srv.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(h["x-prometheus-refresh-interval-seconds"], "30");
    assert_eq!(h["accept"], "application/json");
}

/// Prometheus' TestHTTPInvalidCode and TestHTTPInvalidFormat.
#[tokio::test]
async fn a_bad_status_or_content_type_is_an_error_as_prometheus_words_it() {
    let srv = SdServer::start("[]").await;
    srv.set(|a| a.status = StatusCode::BAD_REQUEST);
    let err = srv.refresh("").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "server returned HTTP status 400 Bad Request"
    );
    srv.set(|a| {
        a.status = StatusCode::OK;
        a.content_type = "text/plain; charset=utf-8";
        a.body = "{}\n".into();
    });
    let err = srv.refresh("").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unsupported content type "text/plain; charset=utf-8""#
    );
}

/// Prometheus' TestSourceDisappeared: each look publishes the whole set,
/// so a group gone from the answer is gone from the groups.
#[tokio::test]
async fn groups_that_disappear_from_the_answer_are_gone() {
    let srv = SdServer::start("[]").await;
    let one = r#"[{"labels": {"k": "1"}, "targets": ["127.0.0.1"]}]"#;
    let two = r#"[{"labels": {"k": "1"}, "targets": ["127.0.0.1"]}, {"labels": {"k": "2"}, "targets": ["127.0.0.1"]}]"#;
    let g1 = group(&srv.url, 0, &["127.0.0.1"], &[("k", "1")]);
    let g2 = group(&srv.url, 1, &["127.0.0.1"], &[("k", "2")]);
    let cases: [([&str; 2], [Vec<TargetGroup>; 2]); 3] = [
        (["[]", "[]"], [vec![], vec![]]),
        ([one, two], [vec![g1.clone()], vec![g1.clone(), g2.clone()]]),
        ([two, one], [vec![g1.clone(), g2.clone()], vec![g1.clone()]]),
    ];
    for (answers, want) in cases {
        for (body, want) in answers.iter().zip(want) {
            srv.set(|a| a.body = body.to_string());
            assert_eq!(srv.refresh("").await.unwrap(), want, "{body}");
        }
    }
}

#[tokio::test]
async fn a_target_with_a_path_or_an_oversized_answer_is_refused() {
    let srv = SdServer::start(r#"[{"targets": ["127.0.0.1:1/metrics"]}]"#).await;
    let err = srv.refresh("").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "group 0: target \"127.0.0.1:1/metrics\" must be host:port"
    );
    srv.set(|a| a.body = format!("[{}]", " ".repeat(wasmon::discovery::http::MAX_BODY)));
    let err = srv.refresh("").await.unwrap_err();
    assert!(matches!(err, HttpSdError::TooLarge), "{err}");
}

#[tokio::test]
async fn the_job_http_client_keys_apply_to_the_sd_request() {
    let srv = SdServer::start("[]").await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "sd-token\n").unwrap();
    let extra = format!(
        "authorization = {{ credentials_file = {:?} }}\n",
        token.display().to_string()
    );
    srv.refresh(&extra).await.unwrap();
    let h = srv.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(h["authorization"], "Bearer sd-token");
}

/// Waits (bounded) until `f` holds for the status and the groups.
async fn until(
    what: &str,
    status: &Status,
    rx: &tokio::sync::watch::Receiver<wasmon::discovery::Groups>,
    f: impl Fn(&wasmon::discovery::StatusState, &[TargetGroup]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (s, g) = (status.get(), rx.borrow().clone());
        if f(&s, &g) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: status {s:?}, groups {g:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_broken_server_keeps_the_last_good_targets_and_the_status_says_why() {
    let a = r#"[{"targets": ["127.0.0.1:9"]}]"#;
    let b = r#"[{"targets": ["127.0.0.1:9", "127.0.0.2:9"]}]"#;
    let srv = SdServer::start(a).await;
    let dir = tempfile::tempdir().unwrap();
    let provider = wasmon::discovery::http::start(
        dir.path().to_path_buf(),
        srv.sd("refresh_interval = \"200ms\"\n"),
        Status::new("http", 0),
    );
    let (rx, status) = (provider.groups.clone(), provider.status.clone());
    let targets = |g: &[TargetGroup]| g.iter().map(|g| g.targets.len()).sum::<usize>();
    until("targets appear", &status, &rx, |s, g| {
        targets(g) == 1 && s.last_error.is_none() && s.targets == 1
    })
    .await;
    srv.set(|x| x.body = b.into());
    until("targets change", &status, &rx, |_, g| targets(g) == 2).await;

    // (what, how the server breaks, what the Status then says)
    type Break = (&'static str, fn(&mut Answer), &'static str);
    let breaks: [Break; 3] = [
        (
            "500",
            |x| x.status = StatusCode::INTERNAL_SERVER_ERROR,
            "500 Internal Server Error",
        ),
        (
            "bad JSON",
            |x| x.body = "[{".into(),
            "invalid JSON target groups",
        ),
        (
            "too slow",
            |x| x.delay = Duration::from_secs(2),
            "timed out",
        ),
    ];
    for (what, breaks, why) in breaks {
        srv.set(breaks);
        until(what, &status, &rx, |s, _| {
            s.last_error.as_deref().is_some_and(|e| e.contains(why))
        })
        .await;
        assert_eq!(
            targets(&rx.borrow()),
            2,
            "{what}: the last good set is kept"
        );
        // Back to good, then on to the next way of breaking.
        srv.set(|x| {
            x.status = StatusCode::OK;
            x.body = b.into();
            x.delay = Duration::ZERO;
        });
        until("recovers", &status, &rx, |s, g| {
            s.last_error.is_none() && targets(g) == 2
        })
        .await;
    }
    srv.set(|x| x.body = a.into());
    until("recovered", &status, &rx, |s, g| {
        s.last_error.is_none() && targets(g) == 1
    })
    .await;
    drop(provider);
}

#[tokio::test]
async fn a_scrape_pool_scrapes_the_targets_http_sd_finds() {
    let scraped = Arc::new(Mutex::new(0usize));
    let s = scraped.clone();
    let target = crate::fixtures::serve(Router::new().fallback(move || {
        let s = s.clone();
        async move {
            *s.lock().unwrap() += 1;
            ([(header::CONTENT_TYPE, "text/plain")], "app_up 1\n")
        }
    }))
    .await;
    let srv = SdServer::start(&format!(
        r#"[{{"targets": ["{target}"], "labels": {{"team": "a"}}}}]"#
    ))
    .await;
    let config = srv.config("refresh_interval = \"200ms\"\n");
    let job = wasmon::scrape::Job::from_config(&config.scrape_configs[0], &config).unwrap();
    let store = Arc::new(wasmon::storage::MemStorage::new());
    let manager = wasmon::scrape::manager::ScrapeManager::new(store).unwrap();
    let dir = tempfile::tempdir().unwrap();
    manager.apply(vec![job], dir.path().to_path_buf()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let active = loop {
        let (active, _) = manager.targets().await;
        if !active.is_empty() {
            break active;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no target discovered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(active[0].labels["team"], "a");
    assert_eq!(active[0].discovered_labels["__meta_url"], srv.url);
    assert_eq!(active[0].scrape_url, format!("http://{target}/metrics"));
    while *scraped.lock().unwrap() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never scraped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    manager.stop().await;
}
