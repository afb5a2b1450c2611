//! End to end through the real binary: HTTPS with a certificate made in the
//! test, basic and bearer auth on the API and the UI (open probes, 401 with
//! `WWW-Authenticate` otherwise), and secrets that never show in
//! `/api/v1/status/config` nor in the agent's log.

use crate::fixtures;

use std::time::Duration;

use reqwest::StatusCode;

const USER_PASSWORD: &str = "ui-pass-7f3a9c";
const BEARER: &str = "bearer-tok-51d0e2";
const SCRAPE_PASSWORD: &str = "scrape-pass-c0ffee";
const SCRAPE_BEARER: &str = "scrape-bearer-badf00d";
const PLUGIN_TOKEN: &str = "plugin-token-a11ce";
const FILE_TOKEN: &str = "file-token-0b5e55ed";

fn config(hash: &str, tls: &str) -> String {
    format!(
        r#"
[global]
scrape_interval = "1s"
scrape_timeout = "500ms"

[web]
listen_address = "{{{{LISTEN}}}}"
{tls}
basic_auth_users = {{ admin = "{hash}" }}
bearer_tokens = ["{BEARER}"]
bearer_token_file = "tokens.txt"

[storage]
path = "data"

[plugins]
dir = "plugins"
cache_dir = ""

[[scrape_configs]]
job_name = "basic"
static_configs = [{{ targets = ["127.0.0.1:1"] }}]
basic_auth = {{ username = "scraper", password = "{SCRAPE_PASSWORD}" }}

[[scrape_configs]]
job_name = "bearer"
static_configs = [{{ targets = ["127.0.0.1:1"] }}]
bearer_token = "{SCRAPE_BEARER}"

[[receivers]]
name = "chat"
plugin = "webhook"
config = {{ url = "http://127.0.0.1:1/hook", token = "{PLUGIN_TOKEN}", headers = {{ Authorization = "{PLUGIN_TOKEN}" }} }}
"#
    )
}

fn agent_dir() -> tempfile::TempDir {
    let dir = fixtures::agent_dir_with(&["webhook"]);
    std::fs::write(dir.path().join("tokens.txt"), format!("\n{FILE_TOKEN}\n")).unwrap();
    dir
}

/// Low bcrypt cost: the check is the same, the test is fast.
fn hash() -> String {
    bcrypt::hash(USER_PASSWORD, 4).unwrap()
}

async fn status(req: reqwest::RequestBuilder) -> StatusCode {
    req.send().await.unwrap().status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_and_bearer_auth_guard_api_and_ui_and_secrets_stay_hidden() {
    let hash = hash();
    let agent = fixtures::AgentProcess::start(agent_dir(), &config(&hash, "")).await;
    let c = reqwest::Client::new();

    // Probes stay open (AgentProcess::start already waited on /-/ready).
    assert_eq!(status(c.get(agent.url("/-/healthy"))).await, StatusCode::OK);
    assert_eq!(status(c.get(agent.url("/-/ready"))).await, StatusCode::OK);

    for path in [
        "/api/v1/targets",
        "/",
        "/ui/app.js",
        "/api/v1/status/config",
        "/metrics",
    ] {
        let url = agent.url(path);
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(
            r.status(),
            StatusCode::UNAUTHORIZED,
            "{path} without credentials"
        );
        let challenges: Vec<_> = r
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert!(
            challenges
                .iter()
                .any(|c| c.starts_with("Basic realm=\"wasmon\""))
                && challenges.iter().any(|c| c.starts_with("Bearer")),
            "{path}: {challenges:?}"
        );
        let wrong = [
            c.get(&url).basic_auth("admin", Some("not-the-password")),
            c.get(&url).basic_auth("nobody", Some(USER_PASSWORD)),
            c.get(&url).bearer_auth("not-the-token"),
            c.get(&url).bearer_auth(""),
            // The bcrypt hash itself is not a password.
            c.get(&url).basic_auth("admin", Some(&hash)),
        ];
        for req in wrong {
            assert_eq!(status(req).await, StatusCode::UNAUTHORIZED, "{path}");
        }
        assert_eq!(
            status(c.get(&url).basic_auth("admin", Some(USER_PASSWORD))).await,
            StatusCode::OK,
            "{path} with basic auth"
        );
        assert_eq!(
            status(c.get(&url).bearer_auth(BEARER)).await,
            StatusCode::OK,
            "{path} with a bearer token"
        );
    }
    // Running a check now is guarded like the rest of the API.
    let run = agent.url("/api/v1/checks/nope/run");
    assert_eq!(status(c.post(&run)).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(c.post(&run).bearer_auth(BEARER)).await,
        StatusCode::NOT_FOUND
    );
    let page = c
        .get(agent.url("/"))
        .basic_auth("admin", Some(USER_PASSWORD))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("<title>wasmon</title>"), "{page}");

    // The config dump shows the structure, never a secret.
    let dump = c
        .get(agent.url("/api/v1/status/config"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let cfg = &v["data"]["config"];
    assert_eq!(
        cfg["scrape_configs"][0]["basic_auth"]["username"],
        "scraper"
    );
    assert_eq!(
        cfg["scrape_configs"][0]["basic_auth"]["password"],
        "<secret>"
    );
    assert_eq!(cfg["scrape_configs"][1]["bearer_token"], "<secret>");
    assert_eq!(cfg["web"]["basic_auth_users"]["admin"], "<secret>");
    assert_eq!(
        cfg["receivers"][0]["config"]["url"],
        "http://127.0.0.1:1/hook"
    );
    assert!(
        v["data"]["toml"].as_str().unwrap().contains("[web]"),
        "{dump}"
    );
    let secrets = [
        USER_PASSWORD,
        BEARER,
        SCRAPE_PASSWORD,
        SCRAPE_BEARER,
        PLUGIN_TOKEN,
        FILE_TOKEN,
        &hash,
    ];
    for s in secrets {
        assert!(!dump.contains(s), "status/config leaks {s:?}: {dump}");
    }

    // A reload and a failed scrape (both targets refuse connections) go
    // through the logging paths that see the config.
    let r = c
        .post(agent.url("/-/reload"))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    agent
        .eventually("a failed scrape", Duration::from_secs(20), || async {
            let t: serde_json::Value = c
                .get(agent.url("/api/v1/targets"))
                .bearer_auth(BEARER)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            t["data"]["activeTargets"]
                .as_array()
                .is_some_and(|a| a.len() == 2 && a.iter().all(|t| t["health"] == "down"))
        })
        .await;
    let logs = agent.logs();
    assert!(logs.contains("HTTP API listening"), "{logs}");
    for s in secrets {
        assert!(!logs.contains(s), "the log leaks {s:?}:\n{logs}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = agent_dir();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let addr = fixtures::AgentProcess::free_addr();
    let text = config(
        &hash(),
        "tls_cert_file = \"cert.pem\"\ntls_key_file = \"key.pem\"",
    )
    .replace("{{LISTEN}}", &addr.to_string());
    let child_dir = dir.path().to_path_buf();
    let cfg_path = dir.path().join("wasmon.toml");
    std::fs::write(&cfg_path, text).unwrap();
    let log = dir.path().join("wasmon.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["run", "--config"])
        .arg(&cfg_path)
        .env("WASMON_LOG", "info,wasmon=debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    // Trust exactly this certificate; "localhost" pinned to the listener.
    let c = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", addr)
        .build()
        .unwrap();
    let url = |p: &str| format!("https://localhost:{}{p}", addr.port());
    let start = std::time::Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            panic!(
                "wasmon exited ({s}):\n{}",
                std::fs::read_to_string(&log).unwrap()
            );
        }
        if let Ok(r) = c.get(url("/-/ready")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "not ready over HTTPS:\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let child = Kill(child);

    assert_eq!(
        status(c.get(url("/api/v1/targets"))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            c.get(url("/api/v1/targets"))
                .basic_auth("admin", Some("wrong"))
        )
        .await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            c.get(url("/api/v1/targets"))
                .basic_auth("admin", Some(USER_PASSWORD))
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        status(c.get(url("/")).bearer_auth(BEARER)).await,
        StatusCode::OK
    );
    assert_eq!(status(c.get(url("/"))).await, StatusCode::UNAUTHORIZED);

    // Tokens in bearer_token_file rotate without a reload.
    assert_eq!(
        status(c.get(url("/api/v1/plugins")).bearer_auth(FILE_TOKEN)).await,
        StatusCode::OK
    );
    std::fs::write(child_dir.join("tokens.txt"), "rotated-token-77\n").unwrap();
    assert_eq!(
        status(c.get(url("/api/v1/plugins")).bearer_auth(FILE_TOKEN)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(
            c.get(url("/api/v1/plugins"))
                .bearer_auth("rotated-token-77")
        )
        .await,
        StatusCode::OK
    );

    // Plain HTTP on the TLS port gets no answer; an untrusting client fails.
    let plain = reqwest::get(format!("http://{addr}/-/healthy")).await;
    assert!(
        plain.as_ref().map_or(true, |r| !r.status().is_success()),
        "plain HTTP answered: {plain:?}"
    );
    let untrusting = reqwest::Client::new()
        .get(format!("https://{addr}/-/healthy"))
        .send()
        .await;
    assert!(
        untrusting.is_err(),
        "a self-signed cert was accepted without trust"
    );
    drop(child);
}

/// README's form `bearer_tokens = ["${WASMON_API_TOKEN}"]`: the token is the
/// variable's value, and the text `${WASMON_API_TOKEN}` is no token at all.
/// Unset, the config is refused by both `check config` and `run`, naming the
/// file, the line and the variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_from_the_environment() {
    const VAR: &str = "WASMON_API_TOKEN";
    const REAL: &str = "env-token-7c1d44";
    let text = "[web]\nlisten_address = \"{{LISTEN}}\"\nbearer_tokens = [\"${WASMON_API_TOKEN}\"]\n\n[storage]\npath = \"data\"\n\n[plugins]\ndir = \"plugins\"\ncache_dir = \"\"\n";

    // Unset: refused, by the check and by the agent.
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("wasmon.toml");
    std::fs::write(&cfg, text.replace("{{LISTEN}}", "127.0.0.1:1")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["check", "config"])
        .arg(&cfg)
        .env_remove(VAR)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{}: TOML parse error at line 3", cfg.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(VAR) && stdout.contains("not set"),
        "{stdout}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove(VAR)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(VAR),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Set (for the agent only): the value is the token.
    let agent = fixtures::AgentProcess::start_with_env(dir, text, &[(VAR, REAL)]).await;
    let c = reqwest::Client::new();
    let url = agent.url("/api/v1/targets");
    assert_eq!(status(c.get(&url).bearer_auth(REAL)).await, StatusCode::OK);
    for wrong in ["${WASMON_API_TOKEN}", "$WASMON_API_TOKEN", ""] {
        assert_eq!(
            status(c.get(&url).bearer_auth(wrong)).await,
            StatusCode::UNAUTHORIZED,
            "{wrong:?}"
        );
    }
    assert_eq!(status(c.get(&url)).await, StatusCode::UNAUTHORIZED);
}
