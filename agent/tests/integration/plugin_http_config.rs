//! A receiver instance's `http_config` (Alertmanager's): the webhook
//! plugin's wasi:http requests made with the instance's TLS settings,
//! credentials, proxy and redirect rule, while `allow_hosts` still decides
//! which destinations it may reach. Servers on 127.0.0.1 only.

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::Router;

use crate::fixtures;
use crate::fixtures::proxy::Proxy;
use crate::fixtures::tls::{serve_https, HttpsOptions, Pki};
use wasmon::alerting::message::WebhookMessage;
use wasmon::config::Config;
use wasmon::plugins::{Instance, PluginRuntime, Policy};
use wasmon::selfmetrics::Metrics;

/// The `Authorization` header and body of each request a server got.
type Seen = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// A server answering 200 to anything, noting what it got.
fn recording_app() -> (Router, Seen) {
    let seen: Seen = Arc::default();
    let log = seen.clone();
    let app = Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let log = log.clone();
        async move {
            let auth = headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string());
            log.lock().unwrap().push((auth, body));
            (StatusCode::OK, "ok")
        }
    });
    (app, seen)
}

async fn runtime() -> (tempfile::TempDir, Arc<PluginRuntime>) {
    let dir = tempfile::tempdir().unwrap();
    fixtures::copy_components(dir.path(), &["webhook"]);
    let rt = PluginRuntime::new(
        &wasmon::config::PluginsConfig::default(),
        dir.path().to_path_buf(),
        None,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    assert_eq!(rt.load_all().await, (1, 0), "{:#?}", rt.list());
    (dir, rt)
}

/// A TOML string for a path.
fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// The webhook receiver instance a config with `http_config` (the inline
/// table's keys, or nothing) makes: errors are what loading the config
/// would say.
fn receiver(url: &str, allow: &[&str], http_config: &str) -> anyhow::Result<Instance> {
    let allow: Vec<String> = allow.iter().map(|a| format!("{a:?}")).collect();
    let http = if http_config.is_empty() {
        String::new()
    } else {
        format!("http_config = {{ {http_config} }}\n")
    };
    let text = format!(
        "[[receivers]]\nname = \"hook\"\nplugin = \"webhook\"\nallow_hosts = [{}]\nconfig = {{ url = {url:?} }}\n{http}",
        allow.join(", ")
    );
    let config = Config::parse(&text, "receivers.toml")?;
    Instance::prepare(&config.receivers[0], &config.plugins)
}

/// An HTTPS server with a certificate for `names` (requiring a client
/// certificate when `mtls`): its hook URL and its `host:port`.
async fn https(pki: &Pki, file: &str, names: &[&str], mtls: bool, app: Router) -> (String, String) {
    let opts = HttpsOptions {
        leaf: pki.issue(file, names),
        client_ca: mtls.then(|| pki.ca_file.clone()),
        tls12_only: false,
    };
    let addr = serve_https(opts, app).await;
    (format!("https://{addr}/hook"), addr.to_string())
}

async fn notify(rt: &PluginRuntime, inst: &Instance) -> Result<(), String> {
    let n = wasmon::plugins::notifier::wit_notification(&WebhookMessage::test_message(
        "hook",
        "http://wasmon",
        "2026-01-01T00:00:00Z",
    ))
    .unwrap();
    rt.notify_with(inst, &n, Policy::Manual)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_config_ca_file_client_certificate_and_insecure_skip_verify() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let pki = Pki::new("receivers");
    let (app, seen) = recording_app();
    let (url, addr) = https(&pki, "hook", &["127.0.0.1"], false, app.clone()).await;
    let allow = [addr.as_str()];
    let ca = format!("tls_config = {{ ca_file = {} }}", q(&pki.ca_file));

    let plain = receiver(&url, &allow, "").unwrap();
    let err = notify(&rt, &plain).await.unwrap_err();
    assert!(
        seen.lock().unwrap().is_empty(),
        "a private CA is not trusted: {err}"
    );
    let with_ca = receiver(&url, &allow, &ca).unwrap();
    notify(&rt, &with_ca).await.unwrap();
    assert_eq!(seen.lock().unwrap().len(), 1);
    let body = serde_json::from_slice::<serde_json::Value>(&seen.lock().unwrap()[0].1).unwrap();
    assert_eq!(body["receiver"], "hook", "{body}");

    // A certificate for another name: refused unless told to skip the
    // check, or to check it against that name.
    let (url, other) = https(&pki, "other", &["hooks.internal"], false, app.clone()).await;
    let allow = [other.as_str()];
    let before = seen.lock().unwrap().len();
    notify(&rt, &receiver(&url, &allow, &ca).unwrap())
        .await
        .unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), before);
    let named = format!(
        "tls_config = {{ ca_file = {}, server_name = \"hooks.internal\" }}",
        q(&pki.ca_file)
    );
    notify(&rt, &receiver(&url, &allow, &named).unwrap())
        .await
        .unwrap();
    let skip = "tls_config = { insecure_skip_verify = true }";
    notify(&rt, &receiver(&url, &allow, skip).unwrap())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), before + 2);

    // mTLS: a server that requires a client certificate.
    let (url, mtls) = https(&pki, "mtls", &["127.0.0.1"], true, app).await;
    let allow = [mtls.as_str()];
    let before = seen.lock().unwrap().len();
    notify(&rt, &receiver(&url, &allow, &ca).unwrap())
        .await
        .unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), before, "no client certificate");
    let client = pki.issue("client", &["wasmon"]);
    let with_cert = format!(
        "tls_config = {{ ca_file = {}, cert_file = {}, key_file = {} }}",
        q(&pki.ca_file),
        q(&client.cert_file),
        q(&client.key_file)
    );
    notify(&rt, &receiver(&url, &allow, &with_cert).unwrap())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().len(), before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_reach_the_server_and_files_are_read_per_request() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let (app, seen) = recording_app();
    let addr = fixtures::serve(app).await;
    let url = format!("http://{addr}/hook");
    let allow = [addr.to_string()];
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let last = || seen.lock().unwrap().last().unwrap().0.clone();

    let basic = receiver(
        &url,
        &allow,
        "basic_auth = { username = \"am\", password = \"s3cret\" }",
    )
    .unwrap();
    notify(&rt, &basic).await.unwrap();
    // base64("am:s3cret")
    assert_eq!(last().as_deref(), Some("Basic YW06czNjcmV0"));

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "first\n").unwrap();
    let file = receiver(
        &url,
        &allow,
        &format!("authorization = {{ credentials_file = {} }}", q(&token)),
    )
    .unwrap();
    notify(&rt, &file).await.unwrap();
    assert_eq!(last().as_deref(), Some("Bearer first"));
    std::fs::write(&token, "second\n").unwrap();
    notify(&rt, &file).await.unwrap();
    assert_eq!(
        last().as_deref(),
        Some("Bearer second"),
        "re-read per request"
    );

    let bearer = receiver(&url, &allow, "bearer_token = \"t0k\"").unwrap();
    notify(&rt, &bearer).await.unwrap();
    assert_eq!(last().as_deref(), Some("Bearer t0k"));

    // A plugin's own Authorization header wins.
    let config = Config::parse(
        &format!(
            "[[receivers]]\nname = \"hook\"\nplugin = \"webhook\"\nallow_hosts = [{:?}]\nconfig = {{ url = {url:?}, headers = {{ Authorization = \"Token mine\" }} }}\nhttp_config = {{ bearer_token = \"t0k\" }}\n",
            addr.to_string()
        ),
        "receivers.toml",
    )
    .unwrap();
    let own = Instance::prepare(&config.receivers[0], &config.plugins).unwrap();
    notify(&rt, &own).await.unwrap();
    assert_eq!(last().as_deref(), Some("Token mine"));

    // Not in the config's Debug form either.
    assert!(!format!("{own:?}").contains("t0k"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_url_carries_the_requests_allow_hosts_still_decides() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let (app, seen) = recording_app();
    let addr = fixtures::serve(app).await;
    let proxy = Proxy::start().await;
    let url = format!("http://{addr}/hook");
    let target = addr.to_string();
    let via = format!("proxy_url = \"http://{}\"", proxy.addr);

    // The proxy's own address is not in allow_hosts: the destination is.
    notify(&rt, &receiver(&url, &[&target], &via).unwrap())
        .await
        .unwrap();
    assert_eq!(proxy.count(), 1);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert_eq!(proxy.carried.lock().unwrap()[0], url);

    // A destination outside allow_hosts is denied before any proxy.
    let err = notify(&rt, &receiver(&url, &["127.0.0.1:1"], &via).unwrap())
        .await
        .unwrap_err();
    assert_eq!(proxy.count(), 1, "{err}");
    assert!(err.contains("denied"), "{err}");

    // no_proxy: straight to the destination.
    let bypass = format!("{via}, no_proxy = \"127.0.0.1\"");
    notify(&rt, &receiver(&url, &[&target], &bypass).unwrap())
        .await
        .unwrap();
    assert_eq!(proxy.count(), 1);
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_only_to_allowed_hosts() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let (app, seen) = recording_app();
    let target = fixtures::serve(app).await;
    let to = format!("http://{target}/moved");
    let redirect = Router::new().fallback(move || {
        let to = to.clone();
        async move { (StatusCode::TEMPORARY_REDIRECT, [("location", to)], "") }
    });
    let from = fixtures::serve(redirect).await;
    let url = format!("http://{from}/hook");
    let (from, target) = (from.to_string(), target.to_string());

    // Followed (with the body, a 307) when both hosts are allowed.
    notify(
        &rt,
        &receiver(&url, &[&from, &target], "follow_redirects = true").unwrap(),
    )
    .await
    .unwrap();
    let body = seen.lock().unwrap()[0].1.clone();
    assert!(!body.is_empty(), "a 307 keeps the body");
    // Denied when the redirect leaves allow_hosts.
    let err = notify(
        &rt,
        &receiver(&url, &[&from], "follow_redirects = true").unwrap(),
    )
    .await
    .unwrap_err();
    assert!(err.contains("denied"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1);
    // Not followed at all when told so: the plugin sees the 307.
    notify(
        &rt,
        &receiver(&url, &[&from, &target], "follow_redirects = false").unwrap(),
    )
    .await
    .unwrap_err();
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn a_bad_http_config_is_refused_naming_the_instance_and_key() {
    let url = "https://127.0.0.1:9/hook";
    let err = |keys: &str| format!("{:#}", receiver(url, &["127.0.0.1"], keys).unwrap_err());
    let e = err("bearer_token = \"a\", basic_auth = { username = \"u\" }");
    assert!(
        e.contains("receivers.toml:2") && e.contains("receiver \"hook\": http_config"),
        "{e}"
    );
    assert!(e.contains("at most one of basic_auth"), "{e}");
    let e = err("tls_config = { ca_file = \"/nonexistent/ca.pem\" }");
    assert!(
        e.contains("instance \"hook\": http_config") && e.contains("tls_config.ca_file"),
        "{e}"
    );
    let e = err("authorization = { credentials_file = \"/nonexistent/token\" }");
    assert!(e.contains("authorization.credentials_file"), "{e}");
    let e = err("tls_config = { min_version = \"TLS10\" }");
    assert!(e.contains("tls_config.min_version"), "{e}");
    let e = err("proxy_url = \"ftp://127.0.0.1:21\"");
    assert!(e.contains("proxy_url"), "{e}");
    let e = err("no_such_key = 1");
    assert!(e.contains("no_such_key"), "{e}");
}
