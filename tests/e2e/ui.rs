//! The web UI in a real browser: starts the real agent (basic auth on, a
//! scrape target, a firing alert, a receiver plugin), then runs
//! tests/ui/ui.test.mjs, which drives Debian's headless Chromium through
//! playwright-core (never a downloaded browser) over every page.
//!
//! Needs `node`, `chromium` and `npm ci` in tests/ui. Under CI=true a missing
//! one fails the test; elsewhere it is skipped with a loud message.

use crate::fixtures;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

const PASSWORD: &str = "ui-test-password";

const CONFIG: &str = r#"
[global]
scrape_interval = "500ms"
scrape_timeout = "400ms"

[web]
listen_address = "{{LISTEN}}"
basic_auth_users = { viewer = "{{HASH}}" }

[storage]
path = "data"

[plugins]
dir = "plugins"
cache_dir = ""

[[scrape_configs]]
job_name = "app"
static_configs = [{ targets = ["{{APP}}"] }]

# Hundreds of discovered pods, half not annotated for scraping (dropped):
# what the targets page and its relabel trace are for. Scraped rarely (their
# ports refuse connections).
[[scrape_configs]]
job_name = "pods"
scrape_interval = "1h"
scrape_timeout = "1s"
file_sd_configs = [{ files = ["targets/*.json"], refresh_interval = "1m" }]

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_pod_annotation_scrape"]
regex = "true"
action = "keep"

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_pod_annotation_port", "__address__"]
regex = '(\d+);([^:]+):.*'
replacement = "$2:$1"
target_label = "__address__"

[[scrape_configs.relabel_configs]]
action = "labelmap"
regex = "__meta_pod_label_(.+)"

[[scrape_configs.relabel_configs]]
source_labels = ["__meta_pod_name"]
target_label = "pod"

[[receivers]]
name = "ops"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/hook" }

[route]
receiver = "ops"
group_by = ["alertname"]
group_wait = "1s"
"#;

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/ui")
}

/// What is missing to run the browser test, if anything.
fn missing_tools(chromium: &Path) -> Option<String> {
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        return Some("node is not installed".into());
    }
    if !chromium.exists() {
        return Some(format!(
            "{} is missing (apt-get install chromium)",
            chromium.display()
        ));
    }
    if !ui_dir().join("node_modules/playwright-core").exists() {
        return Some("tests/ui/node_modules is missing (npm ci --prefix tests/ui)".into());
    }
    None
}

/// The file-SD pods of the "pods" job; every odd one is not annotated
/// for scraping and so dropped by the first rule.
const PODS: usize = 300;

fn write_pods(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let groups: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "targets": [format!("127.0.0.1:{}", 20000 + i)],
                "labels": {
                    "__meta_pod_name": format!("web-{i}"),
                    "__meta_pod_label_app": if i % 3 == 0 { "api" } else { "web" },
                    "__meta_pod_annotation_scrape": if i % 2 == 0 { "true" } else { "false" },
                    "__meta_pod_annotation_port": (30000 + i).to_string(),
                }
            })
        })
        .collect();
    std::fs::write(dir.join("pods.json"), serde_json::to_vec(&groups).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_ui_in_headless_chromium() {
    let chromium = PathBuf::from(
        std::env::var("WASMON_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
    );
    if let Some(why) = missing_tools(&chromium) {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the UI test cannot run under CI: {why}");
        }
        eprintln!("\n*** SKIPPED web_ui_in_headless_chromium: {why} ***\n");
        return;
    }

    let app = Router::new().route("/metrics", get(|| async { "# TYPE jobs gauge\njobs 3\n" }));
    let app_addr = fixtures::serve(app).await;
    let hook = fixtures::Receiver::start().await;

    let dir = fixtures::agent_dir_with(&["webhook"]);
    write_pods(&dir.path().join("targets"), PODS);
    let config = CONFIG
        .replace("{{HASH}}", &bcrypt::hash(PASSWORD, 4).unwrap())
        .replace("{{APP}}", &app_addr.to_string())
        .replace("{{HOOK}}", &hook.addr.to_string());
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let c = reqwest::Client::new();
    let get_json = |path: &str| {
        let req = c.get(agent.url(path)).basic_auth("viewer", Some(PASSWORD));
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };

    let r = c
        .post(agent.url("/api/v2/alerts"))
        .basic_auth("viewer", Some(PASSWORD))
        .json(&json!([{
            "labels": {"alertname": "UiTestAlert", "severity": "page"},
            "annotations": {"summary": "raised by the UI test"}
        }]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    // The graph needs a few samples of `up`, the alerts page a group.
    agent
        .eventually(
            "samples of up and an alert group",
            Duration::from_secs(30),
            || async {
                let end = chrono::Utc::now().timestamp();
                let q = get_json(&format!(
                    "/api/v1/query_range?query=up&start={}&end={end}&step=1",
                    end - 60
                ))
                .await;
                let points = q["data"]["result"][0]["values"]
                    .as_array()
                    .map_or(0, Vec::len);
                let groups = get_json("/api/v2/alerts/groups").await;
                points >= 3 && groups.as_array().is_some_and(|g| !g.is_empty())
            },
        )
        .await;

    let shots = std::env::var_os("WASMON_UI_SCREENSHOTS");
    let mut node = Command::new("node");
    node.arg(ui_dir().join("ui.test.mjs"))
        .current_dir(ui_dir())
        .env("WASMON_URL", format!("http://{}", agent.addr))
        .env("WASMON_USER", "viewer")
        .env("WASMON_PASSWORD", PASSWORD)
        .env("WASMON_PODS", PODS.to_string())
        .env("CHROMIUM", &chromium)
        // playwright-core never downloads, but make sure nothing tries.
        .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(d) = &shots {
        node.env("SCREENSHOT_DIR", d);
    }
    let mut child = node.spawn().expect("starting node");
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(180) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the browser test ran over 180 s\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    println!("{stdout}{stderr}");
    assert!(
        status.success() && stdout.contains("ui: all checks passed"),
        "the browser test failed ({status}):\n{stdout}{stderr}\nagent log:\n{}",
        agent.logs()
    );

    // What the browser did is in the agent: one silence, made and expired
    // through the form.
    let silences = get_json("/api/v2/silences").await;
    let ours: Vec<&Value> = silences
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["comment"] == "silenced by the UI test")
        .collect();
    assert_eq!(ours.len(), 1, "{silences}");
    assert_eq!(ours[0]["status"]["state"], "expired");
    assert_eq!(ours[0]["createdBy"], "ui");
}
