//! Prometheus' HTTP client keys on a scrape job, against local servers on
//! 127.0.0.1: TLS (CA pinning, server_name, insecure_skip_verify, client
//! certificates, versions), credentials files re-read per scrape,
//! redirects, proxies, HTTP/2, and the checks at config load.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::http::{header, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;
use wasmon::config::Config;
use wasmon::model::Labels;
use wasmon::scrape::scrape_loop::{Health, ScrapeLoop, ScrapeStats};
use wasmon::scrape::{Job, Target};
use wasmon::storage::MemStorage;

use crate::fixtures::tls::{serve_https, HttpsOptions, Pki};

/// One request as a server saw it: HTTP version, Authorization, path.
type Request1 = (Version, Option<String>, String);

/// What a server saw of each request.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Request1>>>);

impl Seen {
    fn last(&self) -> Request1 {
        self.0.lock().unwrap().last().cloned().expect("a request")
    }
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

/// `/metrics` serves one sample; `/moved` redirects there with a 302.
fn metrics_app(seen: Seen) -> Router {
    Router::new().fallback(move |req: Request| {
        let seen = seen.clone();
        async move {
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let path = req.uri().path().to_string();
            seen.0
                .lock()
                .unwrap()
                .push((req.version(), auth, path.clone()));
            if path == "/moved" {
                return (StatusCode::FOUND, [(header::LOCATION, "/metrics")], "").into_response();
            }
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                "app_up 1\n",
            )
                .into_response()
        }
    })
}

fn job(extra: &str) -> anyhow::Result<Job> {
    let text =
        format!("[[scrape_configs]]\njob_name = \"app\"\nscrape_interval = \"15s\"\n{extra}");
    let c = Config::parse(&text, "t.toml")?;
    Job::from_config(&c.scrape_configs[0], &c)
}

/// A loop of `job` for the target at `address`, into a memory store.
fn scrape_loop(job: Job, address: &str) -> ScrapeLoop {
    let job = Arc::new(job);
    let target = Target::populate(&job, Labels::from_pairs([("__address__", address)]))
        .unwrap()
        .unwrap();
    ScrapeLoop::new(
        job,
        Arc::new(target),
        Arc::new(MemStorage::new()),
        Arc::new(ScrapeStats::default()),
    )
}

/// Scrapes `address` once with `job`; the loop's health and last error.
async fn scrape(job: Job, address: &str) -> (Health, String) {
    let mut sl = scrape_loop(job, address);
    sl.scrape_once(1_000).await;
    let st = sl.state.lock().unwrap().clone();
    (st.health, st.last_error)
}

fn q(p: &std::path::Path) -> String {
    format!("{:?}", p.display().to_string())
}

struct Https {
    pki: Pki,
    addr: std::net::SocketAddr,
    seen: Seen,
}

impl Https {
    /// Scrapes this server once over HTTPS with the test CA pinned;
    /// `tls` adds keys to `tls_config`, `extra` to the job.
    async fn scrape(&self, tls: &str, extra: &str) -> (Health, String) {
        let ca = q(&self.pki.ca_file);
        let text = format!("scheme = \"https\"\n{extra}tls_config = {{ ca_file = {ca}{tls} }}\n");
        scrape(job(&text).unwrap(), &self.addr.to_string()).await
    }
}

/// An HTTPS target with a certificate for `names`.
async fn https(names: &[&str], mtls: bool, tls12_only: bool) -> Https {
    let pki = Pki::new("test");
    let leaf = pki.issue("server", names);
    let seen = Seen::default();
    let opts = HttpsOptions {
        leaf,
        client_ca: mtls.then(|| pki.ca_file.clone()),
        tls12_only,
    };
    let addr = serve_https(opts, metrics_app(seen.clone())).await;
    Https { pki, addr, seen }
}

#[tokio::test]
async fn a_pinned_ca_file_verifies_the_target() {
    let srv = https(&["127.0.0.1"], false, false).await;
    let addr = srv.addr.to_string();
    let (h, err) = scrape(job("scheme = \"https\"\n").unwrap(), &addr).await;
    assert_eq!(h, Health::Down, "a private CA is not trusted by default");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let (h, err) = srv.scrape("", "").await;
    assert_eq!(h, Health::Up, "{err}");

    // `ca` (the PEM inline) works as `ca_file` does.
    let pem = std::fs::read_to_string(&srv.pki.ca_file).unwrap();
    let extra = format!("scheme = \"https\"\n[scrape_configs.tls_config]\nca = '''\n{pem}'''\n");
    let (h, err) = scrape(job(&extra).unwrap(), &addr).await;
    assert_eq!(h, Health::Up, "{err}");
}

#[tokio::test]
async fn server_name_checks_the_certificate_against_another_name() {
    let srv = https(&["metrics.internal"], false, false).await;
    let (h, err) = srv.scrape("", "").await;
    assert_eq!(h, Health::Down, "the certificate is not for 127.0.0.1");
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let (h, err) = srv.scrape(", server_name = \"metrics.internal\"", "").await;
    assert_eq!(h, Health::Up, "{err}");
    let (h, _) = srv.scrape(", server_name = \"other.internal\"", "").await;
    assert_eq!(h, Health::Down, "server_name is checked, not ignored");
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_certificate() {
    let srv = https(&["elsewhere.example"], false, false).await;
    let extra = "scheme = \"https\"\ntls_config = { insecure_skip_verify = true }\n";
    let (h, err) = scrape(job(extra).unwrap(), &srv.addr.to_string()).await;
    assert_eq!(h, Health::Up, "{err}");
}

#[tokio::test]
async fn client_certificates_pass_a_server_that_requires_them() {
    let srv = https(&["127.0.0.1"], true, false).await;
    let (h, _) = srv.scrape("", "").await;
    assert_eq!(h, Health::Down, "the server requires a client certificate");
    let client = srv.pki.issue("client", &["wasmon"]);
    let tls = format!(
        ", cert_file = {}, key_file = {}",
        q(&client.cert_file),
        q(&client.key_file)
    );
    let (h, err) = srv.scrape(&tls, "").await;
    assert_eq!(h, Health::Up, "{err}");
}

#[tokio::test]
async fn min_version_tls13_refuses_a_tls12_only_server() {
    let srv = https(&["127.0.0.1"], false, true).await;
    let (h, err) = srv.scrape("", "").await;
    assert_eq!(h, Health::Up, "TLS 1.2 is allowed by default: {err}");
    let (h, err) = srv.scrape(", min_version = \"TLS13\"", "").await;
    assert_eq!(h, Health::Down);
    assert!(err.to_lowercase().contains("version"), "{err}");
}

#[tokio::test]
async fn a_rotated_credentials_file_is_used_at_the_next_scrape() {
    let seen = Seen::default();
    let addr = crate::fixtures::serve(metrics_app(seen.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    let extra = format!("authorization = {{ credentials_file = {} }}\n", q(&token));
    let mut sl = scrape_loop(job(&extra).unwrap(), &addr.to_string());
    sl.scrape_once(1_000).await;
    assert_eq!(seen.last().1.as_deref(), Some("Bearer first"));
    std::fs::write(&token, "second\n").unwrap();
    sl.scrape_once(16_000).await;
    assert_eq!(seen.last().1.as_deref(), Some("Bearer second"));

    // A file gone is a failed scrape that names it, not a stale header.
    std::fs::remove_file(&token).unwrap();
    sl.scrape_once(31_000).await;
    let st = sl.state.lock().unwrap().clone();
    assert_eq!(st.health, Health::Down);
    assert!(
        st.last_error.contains("authorization.credentials_file"),
        "{}",
        st.last_error
    );
}

#[tokio::test]
async fn authorization_type_and_credentials_make_the_header() {
    let seen = Seen::default();
    let addr = crate::fixtures::serve(metrics_app(seen.clone())).await;
    let extra = "authorization = { type = \"Token\", credentials = \"abc\" }\n";
    let (h, err) = scrape(job(extra).unwrap(), &addr.to_string()).await;
    assert_eq!(h, Health::Up, "{err}");
    assert_eq!(seen.last().1.as_deref(), Some("Token abc"));
}

#[tokio::test]
async fn follow_redirects_false_fails_on_a_302() {
    let seen = Seen::default();
    let addr = crate::fixtures::serve(metrics_app(seen.clone())).await;
    let (h, err) = scrape(
        job("metrics_path = \"/moved\"\n").unwrap(),
        &addr.to_string(),
    )
    .await;
    assert_eq!(h, Health::Up, "redirects are followed by default: {err}");
    assert_eq!(seen.last().2, "/metrics");
    let (h, err) = scrape(
        job("metrics_path = \"/moved\"\nfollow_redirects = false\n").unwrap(),
        &addr.to_string(),
    )
    .await;
    assert_eq!(h, Health::Down);
    assert!(err.contains("302"), "{err}");
}

/// A forward proxy for plain HTTP: counts requests, forwards them.
async fn proxy() -> (std::net::SocketAddr, Arc<Mutex<usize>>) {
    let count: Arc<Mutex<usize>> = Arc::default();
    let c = count.clone();
    let app = Router::new().fallback(move |req: Request| {
        let c = c.clone();
        async move {
            *c.lock().unwrap() += 1;
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let resp = client.get(req.uri().to_string()).send().await.unwrap();
            let status = resp.status();
            let ctype = resp.headers().get(header::CONTENT_TYPE).cloned();
            let body = resp.bytes().await.unwrap();
            let mut out = Response::new(axum::body::Body::from(body));
            *out.status_mut() = status;
            if let Some(ct) = ctype {
                out.headers_mut().insert(header::CONTENT_TYPE, ct);
            }
            out
        }
    });
    (crate::fixtures::serve(app).await, count)
}

#[tokio::test]
async fn proxy_url_sends_scrapes_through_the_proxy_and_no_proxy_bypasses_it() {
    let seen = Seen::default();
    let target = crate::fixtures::serve(metrics_app(seen.clone())).await;
    let (proxy, count) = proxy().await;
    let (h, err) = scrape(
        job(&format!("proxy_url = \"http://{proxy}\"\n")).unwrap(),
        &target.to_string(),
    )
    .await;
    assert_eq!(h, Health::Up, "{err}");
    assert_eq!(*count.lock().unwrap(), 1);
    for no_proxy in ["127.0.0.1", "127.0.0.0/8", "example.com,127.0.0.1"] {
        let extra = format!("proxy_url = \"http://{proxy}\"\nno_proxy = \"{no_proxy}\"\n");
        let (h, err) = scrape(job(&extra).unwrap(), &target.to_string()).await;
        assert_eq!(h, Health::Up, "{no_proxy}: {err}");
        assert_eq!(*count.lock().unwrap(), 1, "{no_proxy} bypasses the proxy");
    }
    assert_eq!(seen.count(), 4);
}

#[tokio::test]
async fn enable_http2_false_speaks_http1_to_an_h2_server() {
    let srv = https(&["127.0.0.1"], false, false).await;
    let (h, err) = srv.scrape("", "").await;
    assert_eq!(h, Health::Up, "{err}");
    assert_eq!(srv.seen.last().0, Version::HTTP_2, "HTTP/2 by default");
    let (h, err) = srv.scrape("", "enable_http2 = false\n").await;
    assert_eq!(h, Health::Up, "{err}");
    assert_eq!(srv.seen.last().0, Version::HTTP_11);
}

#[tokio::test]
async fn a_kubelet_job_as_a_node_agent_writes_it_scrapes_over_https_with_the_token() {
    let srv = https(&["127.0.0.1"], false, false).await;
    let sa = tempfile::tempdir().unwrap();
    std::fs::copy(&srv.pki.ca_file, sa.path().join("ca.crt")).unwrap();
    std::fs::write(sa.path().join("token"), "sa-token\n").unwrap();
    // Relative paths resolve against the config file's directory.
    let text = format!(
        r#"
[[scrape_configs]]
job_name = "kubernetes-cadvisor"
scheme = "https"
metrics_path = "/metrics/cadvisor"
tls_config = {{ ca_file = "ca.crt" }}
authorization = {{ credentials_file = "token" }}
static_configs = [{{ targets = ["{}"] }}]
"#,
        srv.addr
    );
    let path = sa.path().join("wasmon.toml");
    std::fs::write(&path, &text).unwrap();
    let c = Config::load(&path).unwrap();
    let job = Job::from_config(&c.scrape_configs[0], &c).unwrap();
    let (h, err) = scrape(job, &srv.addr.to_string()).await;
    assert_eq!(h, Health::Up, "{err}");
    let (_, auth, path) = srv.seen.last();
    assert_eq!(auth.as_deref(), Some("Bearer sa-token"));
    assert_eq!(path, "/metrics/cadvisor");
}

#[test]
fn bad_client_keys_are_config_errors_naming_the_job_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new("c");
    let leaf = pki.issue("leaf", &["x"]);
    let missing = q(&dir.path().join("missing"));
    let cases = [
        (
            "authorization = { credentials = \"a\" }\nbearer_token = \"b\"\n".to_string(),
            "at most one of basic_auth, authorization",
        ),
        (
            "authorization = { type = \"Basic\", credentials = \"a\" }\n".to_string(),
            "authorization.type \"Basic\" is not allowed",
        ),
        (
            "authorization = { credentials = \"a\", credentials_file = \"f\" }\n".to_string(),
            "authorization.credentials and authorization.credentials_file",
        ),
        (
            format!("authorization = {{ credentials_file = {missing} }}\n"),
            "reading authorization.credentials_file",
        ),
        (
            format!("tls_config = {{ ca = \"x\", ca_file = {} }}\n", q(&pki.ca_file)),
            "tls_config.ca and tls_config.ca_file",
        ),
        (
            format!("tls_config = {{ ca_file = {missing} }}\n"),
            "reading tls_config.ca_file",
        ),
        (
            format!("tls_config = {{ ca_file = {} }}\n", q(&leaf.key_file)),
            "tls_config.ca_file: no PEM certificate",
        ),
        (
            format!("tls_config = {{ cert_file = {} }}\n", q(&leaf.cert_file)),
            "tls_config.cert_file is set without tls_config.key_file",
        ),
        (
            "tls_config = { min_version = \"TLS11\" }\n".to_string(),
            "tls_config.min_version \"TLS11\": only TLS12 and TLS13 are supported (rustls has no TLS 1.0/1.1)",
        ),
        (
            "no_proxy = \"127.0.0.1\"\n".to_string(),
            "no_proxy is set without proxy_url",
        ),
        (
            "proxy_url = \"ftp://proxy:21\"\n".to_string(),
            "proxy_url: unsupported scheme \"ftp\"",
        ),
        (
            "[[scrape_configs.http_sd_configs]]\nurl = \"http://127.0.0.1:1/sd\"\nbearer_token = \"a\"\nbearer_token_file = \"b\"\n".to_string(),
            "job \"app\": http_sd_configs[0]: at most one of",
        ),
        (
            "[[scrape_configs.http_sd_configs]]\nurl = \"ftp://127.0.0.1/sd\"\n".to_string(),
            "job \"app\": http_sd_configs[0]: url \"ftp://127.0.0.1/sd\": the scheme must be http or https",
        ),
    ];
    for (extra, want) in cases {
        let err = format!("{:#}", job(&extra).unwrap_err());
        assert!(err.contains("job \"app\""), "{extra}: {err}");
        assert!(err.contains(want), "{extra}: want {want:?} in {err}");
    }
}

#[tokio::test]
async fn a_reload_changing_a_client_key_restarts_the_pool_with_the_new_client() {
    let seen = Seen::default();
    let addr = crate::fixtures::serve(metrics_app(seen.clone())).await;
    let manager = wasmon::scrape::ScrapeManager::new(Arc::new(MemStorage::new())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for token in ["old", "new"] {
        let extra = format!(
            "scrape_interval = \"1s\"\nbearer_token = \"{token}\"\nstatic_configs = [{{ targets = [\"{addr}\"] }}]\n"
        );
        let text = format!("[[scrape_configs]]\njob_name = \"app\"\n{extra}");
        let c = Config::parse(&text, "t.toml").unwrap();
        let job = Job::from_config(&c.scrape_configs[0], &c).unwrap();
        manager.apply(vec![job], dir.path().to_path_buf()).await;
        let want = format!("Bearer {token}");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while seen.0.lock().unwrap().last().map(|r| r.1.clone()) != Some(Some(want.clone())) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no scrape with {want}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    manager.stop().await;
}

/// The errors a user sees for a target that fails TLS, printed by
/// `cargo test -p wasmon --test integration scrape_client::tls_errors -- --nocapture`.
#[tokio::test]
async fn tls_errors_name_the_cause() {
    let srv = https(&["127.0.0.1"], true, true).await;
    for (tls, why) in [
        (", min_version = \"TLS13\"", "version"),
        ("", "certificate"),
    ] {
        let (h, err) = srv.scrape(tls, "").await;
        println!("{tls:?}: {err}");
        assert_eq!(h, Health::Down);
        assert!(err.to_lowercase().contains(why), "{err}");
    }
}
