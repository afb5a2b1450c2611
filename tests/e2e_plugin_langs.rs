//! Plugins in any language, through the real binary: `wasmon plugin
//! inspect` on the first-party components, the same receiver written in C,
//! JavaScript and Python (`examples/plugins/`) built by `wasmon plugin build`
//! and called by the agent (the output checked in the agent's log), outbound
//! HTTP from JavaScript and Python plugins (a receiver and a rollback action
//! reach a local server in their `allow_hosts`, and are denied, with the
//! reason in the error, the log and the metrics, outside it), and
//! `wasmon plugin new` + `build` round trips.
//!
//! The C builds take well under a second and run in the fast path. The
//! JavaScript and Python builds take seconds to a minute and their
//! components seconds to compile, so those tests are `#[ignore]` and `cargo
//! xtask ci` runs them explicitly; so is the Rust round trip (a cold guest
//! std build). Each JavaScript or Python plugin is built and compiled once
//! per test run and shared by the tests that use it ([`shared`]).

#[path = "../agent/tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde_json::{json, Value};

fn wasmon(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(args)
        .output()
        .expect("running wasmon")
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn inspect_json(file: &Path) -> Value {
    let out = wasmon(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        file.as_ref(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn capability_names(inspection: &Value) -> Vec<String> {
    inspection["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn inspect_reports_world_imports_and_capabilities_of_first_party_plugins() {
    let webhook = inspect_json(&common::component("webhook"));
    assert_eq!(webhook["world"], "receiver", "{webhook:#}");
    assert_eq!(webhook["package"], "wasmon:plugin@0.1.0");
    assert_eq!(
        webhook["size"].as_u64().unwrap(),
        std::fs::metadata(common::component("webhook"))
            .unwrap()
            .len()
    );
    assert!(webhook["exports"]
        .as_array()
        .unwrap()
        .contains(&json!("notify")));
    let imports: Vec<&str> = webhook["imports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap())
        .collect();
    assert!(
        imports.contains(&"wasmon:plugin/config@0.1.0"),
        "{imports:?}"
    );
    assert!(
        imports
            .iter()
            .any(|i| i.starts_with("wasi:http/outgoing-handler@0.2")),
        "{imports:?}"
    );
    let caps = capability_names(&webhook);
    assert!(caps.contains(&"outbound-http".to_string()), "{caps:?}");
    assert!(!caps.contains(&"network".to_string()), "{caps:?}");

    // SMTP needs raw sockets; a metric check queries the store; noop asks
    // for nothing beyond the contract.
    let email = inspect_json(&common::component("email"));
    assert!(
        capability_names(&email).contains(&"network".to_string()),
        "{email:#}"
    );
    let metric = inspect_json(&common::component("metric-threshold"));
    assert_eq!(metric["world"], "metric-check");
    assert!(
        capability_names(&metric).contains(&"query".to_string()),
        "{metric:#}"
    );
    let action = inspect_json(&common::component("http-action"));
    assert_eq!(action["world"], "rollback-action");

    // The text form names the world and the size.
    let out = wasmon(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        common::component("webhook").as_ref(),
    ]);
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("world         receiver (wasmon:plugin@0.1.0)"),
        "{shown}"
    );
    assert!(shown.contains("outbound-http"), "{shown}");
}

#[test]
fn inspect_explains_what_is_not_a_plugin() {
    let dir = tempfile::tempdir().unwrap();
    // A core module: not a component at all.
    let core = dir.path().join("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let out = wasmon(&["plugin".as_ref(), "inspect".as_ref(), core.as_ref()]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("a core WebAssembly module, not a component"),
        "{}",
        text(&out)
    );
    // A component that exports nothing: no world fits, and inspect says why.
    let empty = dir.path().join("empty.wasm");
    std::fs::write(
        &empty,
        wasmon_plugin_tools::contract::encode(b"\0asm\x01\0\0\0").unwrap(),
    )
    .unwrap();
    let out = wasmon(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        "--json".as_ref(),
        empty.as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["world"], Value::Null);
    assert!(
        v["world_error"]
            .as_str()
            .unwrap()
            .contains("not every export of any world"),
        "{v:#}"
    );
    // A missing file is named.
    let out = wasmon(&[
        "plugin".as_ref(),
        "inspect".as_ref(),
        dir.path().join("nope.wasm").as_ref(),
    ]);
    assert!(text(&out).contains("nope.wasm"), "{}", text(&out));
}

/// `wasmon plugin build SRC --out DIR/plugins/` and the inspection it printed.
fn build(src: &Path, plugins: &Path) -> String {
    std::fs::create_dir_all(plugins).unwrap();
    let out = wasmon(&[
        "plugin".as_ref(),
        "build".as_ref(),
        src.as_ref(),
        "--out".as_ref(),
        plugins.as_ref(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const CONFIG: &str = r#"
[web]
listen_address = "{{LISTEN}}"

[plugins]
dir = "plugins"
cache_dir = "{{CACHE}}"

[[receivers]]
name = "{{INSTANCE}}"
plugin = "{{PLUGIN}}"
# The JS and Python runtimes need more than the 10 s / 64 MiB defaults on a
# busy 2-core machine (their first instance initializes an interpreter).
timeout = "60s"
memory_limit = "256MiB"
"#;

/// A tracing field as the agent's text log shows it: the host joins the
/// guest's fields as `k="v"` into one `fields` value, which is itself
/// Debug-quoted.
fn logged(key: &str, value: &str) -> String {
    let inner = format!("{key}={value:?}");
    let quoted = format!("{inner:?}");
    quoted[1..quoted.len() - 1].to_string()
}

/// A plugin built once per test run and, when an agent first needs it,
/// compiled once into a compile cache that every agent of the run shares,
/// so an agent loads it `from_cache`: a JavaScript or Python component
/// takes seconds to a minute to build and to compile on a busy machine, and
/// several tests use the same one.
struct Shared {
    /// The component, `DIR/plugins/NAME.wasm`.
    wasm: PathBuf,
    /// What `plugin build` printed (the inspection).
    shown: String,
    compiled: OnceLock<()>,
}

impl Shared {
    fn name(&self) -> String {
        self.wasm
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Compiles it into the shared cache with `wasmon plugins list`, as an
    /// operator warms a cache, unless that is done.
    fn compile(&self) {
        self.compiled.get_or_init(|| {
            let dir = self.wasm.parent().unwrap().parent().unwrap();
            let warm = dir.join("warm.toml");
            std::fs::write(
                &warm,
                format!(
                    "[web]\nlisten_address = \"127.0.0.1:1\"\n[plugins]\ndir = \"plugins\"\ncache_dir = {:?}\n",
                    shared_cache()
                ),
            )
            .unwrap();
            let started = std::time::Instant::now();
            let out = wasmon(&[
                "plugins".as_ref(),
                "list".as_ref(),
                "--config".as_ref(),
                warm.as_ref(),
            ]);
            assert!(
                out.status.success() && String::from_utf8_lossy(&out.stdout).contains(" ok"),
                "{}",
                text(&out)
            );
            eprintln!(
                "{}: compiled in {:.1}s",
                self.name(),
                started.elapsed().as_secs_f64()
            );
        });
    }

    /// A temp dir whose `plugins/` holds these components, compiled.
    fn agent_dir(plugins: &[&Shared]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("plugins")).unwrap();
        for p in plugins {
            p.compile();
            std::fs::copy(
                &p.wasm,
                dir.path().join("plugins").join(p.wasm.file_name().unwrap()),
            )
            .unwrap();
        }
        dir
    }
}

/// This run's scratch dir under `CARGO_TARGET_TMPDIR`, emptied at its first
/// use in the process, with the shared compile cache in `cache/`.
fn shared_root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e_plugin_langs");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("cache")).unwrap();
        root
    })
}

fn shared_cache() -> PathBuf {
    shared_root().join("cache")
}

/// The plugin `key` names: built on first use from the directory `source`
/// returns (it is given a scratch dir of its own). Tests asking for the
/// same key wait for the one build.
fn shared(key: &str, source: impl FnOnce(&Path) -> PathBuf) -> Arc<Shared> {
    /// One cell per key: a test waits only for the build it needs.
    type Cells = Mutex<HashMap<String, Arc<OnceLock<Arc<Shared>>>>>;
    static BUILT: OnceLock<Cells> = OnceLock::new();
    let cell = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(key.to_string())
        .or_default()
        .clone();
    cell.get_or_init(|| {
        let dir = shared_root().join(key);
        std::fs::create_dir_all(&dir).unwrap();
        let src = source(&dir);
        let started = std::time::Instant::now();
        let shown = build(&src, &dir.join("plugins"));
        let built = started.elapsed();
        let wasm = std::fs::read_dir(dir.join("plugins"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "wasm"))
            .unwrap();
        eprintln!(
            "{key}: built in {:.1}s ({} bytes)",
            built.as_secs_f64(),
            std::fs::metadata(&wasm).unwrap().len()
        );
        Arc::new(Shared {
            wasm,
            shown,
            compiled: OnceLock::new(),
        })
    })
    .clone()
}

/// `examples/plugins/NAME`, built.
fn example(name: &str) -> Arc<Shared> {
    shared(&format!("example-{name}"), |_| {
        repo().join("examples/plugins").join(name)
    })
}

/// The `plugin new` template of `kind` in `lang`, as `my-KIND`, built.
fn template(lang: &str, kind: &str) -> Arc<Shared> {
    shared(&format!("template-{lang}-{kind}"), |dir| {
        plugin_new(kind, lang, dir)
    })
}

/// `wasmon plugin new KIND my-KIND --lang LANG --dir PARENT`: the new dir.
fn plugin_new(kind: &str, lang: &str, parent: &Path) -> PathBuf {
    let name = format!("my-{kind}");
    let out = wasmon(&[
        "plugin".as_ref(),
        "new".as_ref(),
        kind.as_ref(),
        name.as_ref(),
        "--lang".as_ref(),
        lang.as_ref(),
        "--dir".as_ref(),
        parent.as_ref(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    parent.join(name)
}

/// The webhook v4 message of two firing alerts that the tests send to
/// `POST /api/v1/receivers/NAME/test`, with these common labels.
fn message(common: Value) -> Value {
    let alert = |name: &str| {
        json!({
            "status": "firing",
            "labels": {"alertname": name, "service": "checkout"},
            "annotations": {},
            "startsAt": "2026-11-25T08:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://x/graph",
            "fingerprint": format!("fp-{name}"),
        })
    };
    json!({
        "version": "4",
        "groupKey": "{}:{service=\"checkout\"}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "team ops",
        "groupLabels": {"service": "checkout"},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://wasmon.example",
        "alerts": [alert("HighErrorRate"), alert("HighLatency")],
    })
}

/// `POST /api/v1/receivers/NAME/test` with `body`: the status and the answer.
async fn test_receiver(agent: &common::AgentProcess, instance: &str, body: &Value) -> (u16, Value) {
    // Generous: a call may wait on a busy machine's scheduler.
    let r = reqwest::Client::new()
        .post(agent.url(&format!("/api/v1/receivers/{instance}/test")))
        .json(body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// Runs the agent with `plugin` as receiver `<lang>-ops`, sends a firing
/// notification of two alerts and checks the log line the plugin wrote
/// through the host's `log` import; then a notification it must refuse,
/// and checks the permanent failure.
async fn same_receiver(plugin: &Shared, lang: &str) {
    assert!(
        plugin.shown.contains("world         receiver"),
        "{}",
        plugin.shown
    );
    let example = plugin.name();
    let instance = format!("{lang}-ops");
    let config = CONFIG
        .replace("{{INSTANCE}}", &instance)
        .replace("{{PLUGIN}}", &example)
        .replace("{{CACHE}}", &shared_cache().to_string_lossy());
    let agent = common::AgentProcess::start(Shared::agent_dir(&[plugin]), &config).await;
    assert!(
        agent.logs().contains("from_cache=true"),
        "the agent compiled again:\n{}",
        agent.logs()
    );
    let (status, body) =
        test_receiver(&agent, &instance, &message(json!({"service": "checkout"}))).await;
    assert_eq!(status, 200, "{body}\n{}", agent.logs());

    let logs = agent.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("notification") && l.contains(&logged("lang", lang)))
        .unwrap_or_else(|| panic!("no notification line from the {lang} receiver:\n{logs}"));
    for (k, v) in [
        ("instance", instance.as_str()),
        ("receiver", "team ops"),
        ("status", "firing"),
        ("alerts", "2"),
        ("alertnames", "HighErrorRate,HighLatency"),
    ] {
        assert!(
            line.contains(&logged(k, v)),
            "{k}={v:?} missing in:\n{line}"
        );
    }
    assert!(line.contains(&format!("plugin=\"{example}\"")), "{line}");

    // Asked to fail: a permanent failure, not retried.
    let (status, body) = test_receiver(
        &agent,
        &instance,
        &message(json!({"service": "checkout", "fail": "on purpose"})),
    )
    .await;
    assert_eq!(status, 502);
    assert_eq!(body["retryable"], false, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("asked to fail: on purpose"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c_receiver_is_built_and_called_by_the_agent() {
    same_receiver(&example("c-receiver"), "c").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a JavaScript build and compile; run by cargo xtask ci"]
async fn js_receiver_is_built_and_called_by_the_agent() {
    same_receiver(&example("js-receiver"), "js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: componentize-py build (~1 min) and CPython compile; run by cargo xtask ci"]
async fn python_receiver_is_built_and_called_by_the_agent() {
    same_receiver(&example("python-receiver"), "python").await;
}

/// The receivers and rollouts of the outbound-HTTP tests: `{{LANG}}-hook`
/// POSTs to the hook server, which is in its `allow_hosts`;
/// `{{LANG}}-outside` is configured to POST to a server that is not.
/// `{{ROLLOUTS}}` are [`ROLLOUT`]s: `checkout` rolls back through the
/// rollback template against the fake deployment API (allowed), `payments`
/// through the same plugin against the outside server (denied).
const HTTP_CONFIG: &str = r#"
[web]
listen_address = "{{LISTEN}}"

[plugins]
dir = "plugins"
cache_dir = "{{CACHE}}"
call_timeout = "60s"
memory_limit = "256MiB"

[[receivers]]
name = "{{LANG}}-hook"
plugin = "{{RECEIVER}}"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/hook?team=ops" }

[[receivers]]
name = "{{LANG}}-outside"
plugin = "{{RECEIVER}}"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{OUTSIDE}}/hook" }

{{ROLLOUTS}}"#;

/// One rollout of [`HTTP_CONFIG`]: once started, it fails its analysis at
/// once (`vector(1)` is never at most 0) and rolls back through the
/// `{{ROLLBACK}}` plugin, which calls `{{URL}}`.
const ROLLOUT: &str = r#"
[[rollouts]]
name = "{{NAME}}"
target = "{{NAME}}-deploy"
interval = "200ms"
threshold = 1

[[rollouts.metrics]]
name = "always-bad"
query = "vector(1)"
max = 0

[rollouts.rollback]
name = "undo-{{NAME}}"
plugin = "{{ROLLBACK}}"
allow_hosts = ["{{API}}"]
config = { url = "{{URL}}", token = "s3cret" }
"#;

async fn rollout(agent: &common::AgentProcess, name: &str) -> Value {
    let v: Value = reqwest::get(agent.url(&format!("/api/v1/rollouts/{name}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"].clone()
}

/// The history entry `event` of rollout `name`, once it has one.
async fn decision(agent: &common::AgentProcess, name: &str, event: &str) -> Value {
    let start = std::time::Instant::now();
    loop {
        let r = rollout(agent, name).await;
        if let Some(d) = r["history"]
            .as_array()
            .and_then(|h| h.iter().find(|d| d["event"] == event))
        {
            return d.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "rollout {name}: no {event} in {r:#}\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Outbound HTTP from `lang`'s receiver example and rollback template,
/// through the real agent: the exact webhook body with its Content-Length
/// reaches the allowed hook; a host outside `allow_hosts` is refused, and
/// the call's error, the agent's log and `/metrics` say so; the rollback
/// action calls the fake deployment API (JSON body, bearer token from its
/// config) and its outcome is the rollout's history, and is refused the
/// same way outside its `allow_hosts`.
async fn plugins_reach_allowed_hosts_only(lang: &str) {
    let receiver = example(&format!("{lang}-receiver"));
    let rollback = template(lang, "rollback-action");
    let hook = common::Receiver::start().await;
    let api = common::Receiver::start().await;
    let outside = common::Receiver::start().await;
    let rollouts = [
        ("checkout", "http://{{API}}/deployments/checkout/rollback"),
        (
            "payments",
            "http://{{OUTSIDE}}/deployments/payments/rollback",
        ),
    ]
    .map(|(name, url)| ROLLOUT.replace("{{NAME}}", name).replace("{{URL}}", url))
    .concat();
    let config = HTTP_CONFIG
        .replace("{{ROLLOUTS}}", &rollouts)
        .replace("{{LANG}}", lang)
        .replace("{{RECEIVER}}", &receiver.name())
        .replace("{{ROLLBACK}}", &rollback.name())
        .replace("{{HOOK}}", &hook.addr.to_string())
        .replace("{{API}}", &api.addr.to_string())
        .replace("{{OUTSIDE}}", &outside.addr.to_string())
        .replace("{{CACHE}}", &shared_cache().to_string_lossy());
    let agent =
        common::AgentProcess::start(Shared::agent_dir(&[&receiver, &rollback]), &config).await;

    // Allowed: the webhook JSON of the message, as sent, with its length.
    let sent = message(json!({"service": "checkout"}));
    let (status, body) = test_receiver(&agent, &format!("{lang}-hook"), &sent).await;
    assert_eq!(status, 200, "{body}\n{}", agent.logs());
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].headers["content-type"], "application/json");
    assert_eq!(
        got[0].headers["content-length"],
        got[0].body.len().to_string().as_str(),
        "{got:?}"
    );
    assert!(got[0].headers.get("transfer-encoding").is_none(), "{got:?}");
    let posted: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(posted, sent);

    // Outside allow_hosts: nothing leaves, the plugin's error says why.
    let instance = format!("{lang}-outside");
    let (status, body) = test_receiver(&agent, &instance, &sent).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["retryable"], true, "{body}");
    let error = body["error"].as_str().unwrap();
    let target = outside.addr.to_string();
    assert!(
        error.contains(&format!(
            "HTTP-request-denied: {target} is not in this plugin instance's allow_hosts"
        )),
        "{error}"
    );
    let logs = agent.logs();
    assert!(
        logs.lines().any(|l| l
            .contains("denied outbound HTTP request: host not in the instance's allow_hosts")
            && l.contains(&format!("instance={instance}"))
            && l.contains(&format!("target={target}"))),
        "{logs}"
    );
    let metrics = reqwest::get(agent.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let denied = format!(
        "wasmon_plugin_http_requests_denied_total{{plugin=\"{}\",instance=\"{instance}\"}} 1",
        receiver.name()
    );
    assert!(metrics.contains(&denied), "{denied} missing:\n{metrics}");

    // The rollback action, allowed and denied.
    let client = reqwest::Client::new();
    for name in ["checkout", "payments"] {
        let r = client
            .post(agent.url(&format!("/api/v1/rollouts/{name}/start")))
            .json(&json!({"version": "v2", "stable_version": "v1"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let done = decision(&agent, "checkout", "rolled_back").await;
    let called = api.requests();
    assert_eq!(called.len(), 1, "{called:?}");
    assert_eq!(called[0].path, "/deployments/checkout/rollback");
    assert_eq!(called[0].headers["authorization"], "Bearer s3cret");
    assert_eq!(
        called[0].headers["content-length"],
        called[0].body.len().to_string().as_str()
    );
    let asked: Value = serde_json::from_slice(&called[0].body).unwrap();
    assert_eq!(asked["rollout"], "checkout", "{asked}");
    assert_eq!(asked["target"], "checkout-deploy", "{asked}");
    assert_eq!(asked["version"], "v1", "{asked}");
    assert_eq!(asked["failedVersion"], "v2", "{asked}");
    assert!(
        asked["reason"].as_str().unwrap().contains("always-bad"),
        "{asked}"
    );
    let api_addr = api.addr.to_string();
    assert!(
        done["message"].as_str().unwrap().contains(&format!(
            "checkout-deploy back to v1: http://{api_addr}/deployments/checkout/rollback answered 200"
        )),
        "{done}"
    );
    let failed = decision(&agent, "payments", "rollback_failed").await;
    assert!(
        failed["message"].as_str().unwrap().contains(&format!(
            "HTTP-request-denied: {target} is not in this plugin instance's allow_hosts"
        )),
        "{failed}"
    );
    assert!(outside.requests().is_empty(), "{:?}", outside.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: JavaScript builds and compiles; run by cargo xtask ci"]
async fn js_plugins_reach_allowed_hosts_only() {
    plugins_reach_allowed_hosts_only("js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: componentize-py builds (~1 min each) and CPython compiles; run by cargo xtask ci"]
async fn python_plugins_reach_allowed_hosts_only() {
    plugins_reach_allowed_hosts_only("python").await;
}

/// The starlingmonkey engine's Web `fetch`: the notification reaches the
/// allowed hook with its Content-Length; outside `allow_hosts` the fetch
/// rejects (catchable: the plugin does not trap) and the call fails,
/// retryably, with the agent's note of the denied request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a StarlingMonkey build (~1 min) and compile (~30-90 s); run by cargo xtask ci"]
async fn js_fetch_receiver_posts_with_fetch() {
    let receiver = example("js-fetch-receiver");
    assert!(
        receiver.shown.contains("wasi:http/outgoing-handler"),
        "{}",
        receiver.shown
    );
    let hook = common::Receiver::start().await;
    let outside = common::Receiver::start().await;
    let config = HTTP_CONFIG
        .replace("{{ROLLOUTS}}", "")
        .replace("{{LANG}}", "fetch")
        .replace("{{RECEIVER}}", &receiver.name())
        .replace("{{HOOK}}", &hook.addr.to_string())
        .replace("{{OUTSIDE}}", &outside.addr.to_string())
        .replace("{{CACHE}}", &shared_cache().to_string_lossy());
    let agent = common::AgentProcess::start(Shared::agent_dir(&[&receiver]), &config).await;

    let (status, body) = test_receiver(&agent, "fetch-hook", &message(json!({}))).await;
    assert_eq!(status, 200, "{body}\n{}", agent.logs());
    let got = hook.requests();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].path, "/hook");
    assert_eq!(
        got[0].headers["content-length"],
        got[0].body.len().to_string().as_str(),
        "{got:?}"
    );
    let posted: Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(posted["receiver"], "team ops", "{posted}");
    assert_eq!(posted["groupKey"], "{}:{service=\"checkout\"}", "{posted}");
    assert_eq!(posted["alerts"].as_array().unwrap().len(), 2, "{posted}");

    let (status, body) = test_receiver(&agent, "fetch-outside", &message(json!({}))).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["retryable"], true, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains("uncaught TypeError"), "not caught: {error}");
    assert!(
        error.contains("outbound HTTP request(s) denied: host not in allow_hosts"),
        "{error}"
    );
    assert!(outside.requests().is_empty());
}

/// `plugin new KIND NAME --lang LANG` then `plugin build`: the scaffold
/// builds into a component of its world.
fn new_and_build(kind: &str, lang: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{kind}");
    let src = plugin_new(kind, lang, dir.path());
    let shown = build(&src, &dir.path().join("plugins"));
    assert!(
        shown.contains(&format!("world         {kind} ")),
        "{lang} {kind}:\n{shown}"
    );
    let v = inspect_json(&dir.path().join("plugins").join(format!("{name}.wasm")));
    assert_eq!(v["world"], kind, "{v:#}");
    (dir, name)
}

const KINDS: [&str; 4] = [
    "receiver",
    "health-check",
    "rollback-action",
    "metric-check",
];

#[test]
fn new_c_plugin_of_every_kind_builds() {
    for kind in KINDS {
        let (_dir, _) = new_and_build(kind, "c");
    }
}

/// The JavaScript and Python templates build as written, into components
/// of their world that can reach the network (the receiver, health-check
/// and rollback-action templates make HTTP calls).
fn templates_of_every_kind_build(lang: &str) {
    for kind in KINDS {
        let built = template(lang, kind);
        assert!(
            built.shown.contains(&format!("world         {kind} ")),
            "{lang} {kind}:\n{}",
            built.shown
        );
        let v = inspect_json(&built.wasm);
        assert_eq!(v["world"], kind, "{v:#}");
        assert!(
            capability_names(&v).contains(&"outbound-http".to_string()),
            "{lang} {kind}: {v:#}"
        );
    }
}

#[test]
#[ignore = "slow: four JavaScript builds; run by cargo xtask ci"]
fn new_js_plugin_of_every_kind_builds() {
    templates_of_every_kind_build("js");
}

#[test]
#[ignore = "slow: four componentize-py builds; run by cargo xtask ci"]
fn new_python_plugin_of_every_kind_builds() {
    templates_of_every_kind_build("python");
}

/// What the JavaScript engines cannot run is refused at build time, with
/// the file, the line and what to do instead; a component the agent could
/// not load is refused too (the check `plugin inspect` makes).
#[test]
fn js_build_refuses_what_its_engine_cannot_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("hook");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(
        src.join("wasmon-plugin.json"),
        r#"{"name": "hook", "world": "receiver", "lang": "js"}"#,
    )
    .unwrap();
    std::fs::write(
        src.join("app.js"),
        "// fetch('in a comment') is fine\nexport async function notify(n) {\n  await fetch('http://x/');\n}\n",
    )
    .unwrap();
    let out = wasmon(&["plugin".as_ref(), "build".as_ref(), src.as_ref()]);
    assert!(!out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for want in [
        "app.js:2: declares an async function",
        "app.js:3: uses await",
        "app.js:3: calls fetch()",
        "\"engine\": \"starlingmonkey\"",
    ] {
        assert!(shown.contains(want), "{want} missing:\n{shown}");
    }
    assert!(!shown.contains("app.js:1"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a Rust guest build (std for wasm on the Debian route); run by cargo xtask ci"]
async fn new_rust_receiver_builds_and_runs() {
    let (dir, name) = new_and_build("receiver", "rust");
    let config = CONFIG
        .replace("{{INSTANCE}}", "scaffolded")
        .replace("{{PLUGIN}}", &name)
        .replace("{{CACHE}}", "cache");
    let agent = common::AgentProcess::start(dir, &config).await;
    let r = reqwest::Client::new()
        .post(agent.url("/api/v1/receivers/scaffolded/test"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let logs = agent.logs();
    assert!(
        logs.lines()
            .any(|l| l.contains("notification") && l.contains(&logged("receiver", "scaffolded"))),
        "{logs}"
    );
}
