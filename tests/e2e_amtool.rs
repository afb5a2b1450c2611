//! Interop with the real Alertmanager tools (Debian's prometheus-alertmanager
//! 0.25): `amtool` lists alerts and adds/expires silences against the agent,
//! the agent forwards rule alerts to a real Alertmanager on 127.0.0.1, and
//! the agent and Alertmanager, fed the same alerts and silence on the same
//! route tree, send the same notifications.

#[path = "../agent/tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        std::path::Path::new(&path).exists(),
        "{path} is missing: apt-get install prometheus-alertmanager (.ci/run does)"
    );
    path
}

fn amtool(agent: &common::AgentProcess, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool("amtool"))
        .arg(format!("--alertmanager.url=http://{}", agent.addr))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

const CONFIG: &str = r#"
[web]
listen_address = "{{LISTEN}}"

[[receivers]]
name = "ops"
plugin = "webhook"
allow_hosts = ["127.0.0.1:9"]
config = { url = "http://127.0.0.1:9/unused" }

[route]
receiver = "ops"
group_wait = "1h"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amtool_lists_alerts_and_manages_silences() {
    let dir = tempfile::tempdir().unwrap();
    let agent = common::AgentProcess::start(dir, CONFIG).await;

    let (ok, out) = amtool(
        &agent,
        &[
            "alert",
            "add",
            "alertname=DiskFull",
            "instance=db1",
            "severity=warning",
            "--annotation=summary=disk 95% full",
        ],
    );
    assert!(ok, "amtool alert add failed: {out}");
    let (ok, out) = amtool(&agent, &["alert", "query"]);
    assert!(ok, "amtool alert query failed: {out}\n{}", agent.logs());
    assert!(
        out.contains("DiskFull") && out.contains("disk 95% full"),
        "{out}"
    );

    let (ok, id) = amtool(
        &agent,
        &[
            "silence",
            "add",
            "alertname=DiskFull",
            "--comment=maintenance",
            "--author=e2e",
            "--duration=1h",
        ],
    );
    assert!(ok, "amtool silence add failed: {id}\n{}", agent.logs());
    let id = id.lines().next().unwrap_or("").trim().to_string();
    assert_eq!(id.len(), 36, "expected a silence id, got {id:?}");
    let (ok, out) = amtool(&agent, &["silence", "query"]);
    assert!(
        ok && out.contains(&id) && out.contains("maintenance"),
        "{out}"
    );
    // The alert is now silenced: not in the default (active) listing.
    let (_, out) = amtool(&agent, &["alert", "query"]);
    assert!(!out.contains("DiskFull"), "{out}");
    let (_, out) = amtool(&agent, &["alert", "query", "--silenced"]);
    assert!(out.contains("DiskFull"), "{out}");

    let (ok, out) = amtool(&agent, &["silence", "expire", &id]);
    assert!(ok, "amtool silence expire failed: {out}");
    let (_, out) = amtool(&agent, &["silence", "query"]);
    assert!(
        !out.contains(&id),
        "an expired silence is not listed by default: {out}"
    );
    let (_, out) = amtool(&agent, &["silence", "query", "--expired"]);
    assert!(out.contains(&id), "{out}");
}

/// A real Alertmanager on 127.0.0.1 (no clustering), stopped when dropped.
struct Alertmanager {
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl Alertmanager {
    /// Starts it on `config` (YAML, or JSON which is YAML too) and waits
    /// until it is ready: a send into an Alertmanager that does not listen
    /// yet is retried only after the resend delay (1 m, as Prometheus),
    /// longer than these tests wait.
    async fn start(config: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("am.yml"), config).unwrap();
        let addr = common::AgentProcess::free_addr();
        let child = Command::new(tool("prometheus-alertmanager"))
            .arg(format!(
                "--config.file={}",
                dir.path().join("am.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("am.log")).unwrap())
            .spawn()
            .unwrap();
        let am = Alertmanager { addr, dir, child };
        let ready = Instant::now();
        while !reqwest::get(am.url("/-/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                ready.elapsed() < Duration::from_secs(30),
                "Alertmanager never became ready:\n{}",
                am.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        am
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("am.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_alerts_are_forwarded_to_a_real_alertmanager() {
    let am =
        Alertmanager::start("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
            .await;
    let am_addr = am.addr;

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yml"),
        "groups:\n  - name: g\n    interval: 500ms\n    rules:\n      - alert: AlwaysFiring\n        expr: vector(1)\n        labels:\n          team: infra\n",
    )
    .unwrap();
    let config = format!(
        "rule_files = [\"rules.yml\"]\n\n[[alertmanagers]]\nurl = \"http://{am_addr}\"\n\n[web]\nlisten_address = \"{{{{LISTEN}}}}\"\n"
    );
    let agent = common::AgentProcess::start(dir, &config).await;
    let start = Instant::now();
    loop {
        if let Ok(r) = reqwest::get(format!("http://{am_addr}/api/v2/alerts")).await {
            let v: serde_json::Value = r.json().await.unwrap_or_default();
            if let Some(a) = v.as_array().and_then(|a| a.first()) {
                assert_eq!(a["labels"]["alertname"], "AlwaysFiring");
                assert_eq!(a["labels"]["team"], "infra");
                assert_eq!(a["status"]["state"], "active");
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the alert never reached Alertmanager\nagent:\n{}\nalertmanager:\n{}",
            agent.logs(),
            am.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a notification says, for the comparison: its status and its
/// alerts (labels and status) in the order sent.
fn gist(body: &serde_json::Value) -> serde_json::Value {
    let alerts: Vec<serde_json::Value> = body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| serde_json::json!({"labels": a["labels"], "status": a["status"]}))
        .collect();
    serde_json::json!({"status": body["status"], "alerts": alerts})
}

/// The notifications `hook` got under `prefix`, per group (receiver and
/// group labels), in the order they came.
fn per_group(
    hook: &common::Receiver,
    prefix: &str,
) -> std::collections::BTreeMap<String, Vec<serde_json::Value>> {
    let mut out: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for r in hook
        .requests()
        .iter()
        .filter(|r| r.path.starts_with(prefix))
    {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let receiver = body["receiver"].as_str().unwrap_or("?");
        assert_eq!(r.path, format!("{prefix}{receiver}"), "{body}");
        out.entry(format!("{receiver} {}", body["groupLabels"]))
            .or_default()
            .push(gist(&body));
    }
    out
}

/// Routing (with `continue`), grouping, inhibition, a silence and resolved
/// notifications, side by side with Alertmanager 0.25 on the same route
/// tree and inhibit rule, fed the same alerts: every notification, group
/// by group, the same (receiver, group labels, status, alerts with their
/// status, in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_match_alertmanager_side_by_side() {
    use serde_json::json;
    let hook = common::Receiver::start().await;
    let names = ["default", "pager", "team-api"];
    // One definition of the tree for both: Alertmanager reads it as JSON
    // (which is YAML), wasmon as TOML.
    let tree = json!({
        "route": {
            "receiver": "default",
            "group_by": ["alertname", "service"],
            "group_wait": "1s",
            "group_interval": "2s",
            "repeat_interval": "1h",
            "routes": [
                {"matchers": ["severity=\"critical\""], "receiver": "pager", "continue": true},
                {"matchers": ["service=\"api\""], "receiver": "team-api"},
            ],
        },
        "inhibit_rules": [{
            "source_matchers": ["severity=\"critical\""],
            "target_matchers": ["severity=\"warning\""],
            "equal": ["service"],
        }],
    });
    let mut am_config = tree.clone();
    am_config["receivers"] = names
        .iter()
        .map(|n| json!({"name": n, "webhook_configs": [{"url": format!("http://{}/am/{n}", hook.addr)}]}))
        .collect();
    let am = Alertmanager::start(&am_config.to_string()).await;
    let mut config = tree;
    config["web"] = json!({"listen_address": "{{LISTEN}}"});
    config["receivers"] = names
        .iter()
        .map(|n| {
            json!({
                "name": n,
                "plugin": "webhook",
                "allow_hosts": [hook.addr.to_string()],
                "config": {"url": format!("http://{}/wasmon/{n}", hook.addr)},
            })
        })
        .collect();
    let agent = common::AgentProcess::start(
        common::agent_dir_with(&["webhook"]),
        &toml::to_string(&config).unwrap(),
    )
    .await;
    let client = reqwest::Client::new();
    let post = |path: &'static str, body: serde_json::Value| {
        let client = client.clone();
        let urls = [am.url(path), agent.url(path)];
        async move {
            for url in urls {
                let r = client.post(&url).json(&body).send().await.unwrap();
                let status = r.status();
                assert!(
                    status.is_success(),
                    "POST {url}: {status} {}",
                    r.text().await.unwrap()
                );
            }
        }
    };
    let now = chrono::Utc::now();
    let rfc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    post(
        "/api/v2/silences",
        json!({
            "matchers": [{"name": "alertname", "value": "Silenced", "isRegex": false, "isEqual": true}],
            "startsAt": rfc(now),
            "endsAt": rfc(now + chrono::Duration::hours(1)),
            "createdBy": "e2e",
            "comment": "side by side",
        }),
    )
    .await;
    let alert = |name: &str,
                 service: &str,
                 severity: &str,
                 instance: &str,
                 ends: chrono::DateTime<chrono::Utc>| {
        let mut labels = json!({"alertname": name, "service": service, "severity": severity});
        if !instance.is_empty() {
            labels["instance"] = json!(instance);
        }
        json!({"labels": labels, "annotations": {"summary": name}, "startsAt": rfc(now), "endsAt": rfc(ends)})
    };
    let later = now + chrono::Duration::hours(1);
    // Both sides have sent `n` notifications, and nothing more comes within
    // a group interval and a half.
    let settle = |n: usize| {
        let hook = &hook;
        let (agent, am) = (&agent, &am);
        async move {
            let count = |p: &str| {
                hook.requests()
                    .iter()
                    .filter(|r| r.path.starts_with(p))
                    .count()
            };
            let start = Instant::now();
            while count("/am/") < n || count("/wasmon/") < n {
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "waiting for {n} notifications each: Alertmanager {:#?}\nwasmon {:#?}\nagent log:\n{}\nalertmanager log:\n{}",
                    per_group(hook, "/am/"),
                    per_group(hook, "/wasmon/"),
                    agent.logs(),
                    am.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(3000)).await;
        }
    };
    // The same notifications so far: comparing after each step, not only
    // at the end, also catches one sent a step early or late.
    let same_so_far = |step: &str| {
        let (theirs, ours) = (per_group(&hook, "/am/"), per_group(&hook, "/wasmon/"));
        assert_eq!(
            ours, theirs,
            "{step}: wasmon (left) and Alertmanager (right) notified differently:\nwasmon {ours:#?}\nAlertmanager {theirs:#?}"
        );
        theirs
    };

    // Firing: the critical alert pages `pager` and (continue) `team-api`
    // and inhibits the api warnings; the db warning goes to `default`; the
    // silenced one goes nowhere.
    post(
        "/api/v2/alerts",
        json!([
            alert("ServiceDown", "api", "critical", "", later),
            alert("HighLatency", "api", "warning", "a", later),
            alert("HighLatency", "api", "warning", "b", later),
            alert("HighLatency", "db", "warning", "a", later),
            alert("Silenced", "db", "warning", "", later),
        ]),
    )
    .await;
    settle(3).await;
    same_so_far("firing");
    // The critical alert resolves (its groups say so, the api warnings are
    // no longer inhibited) and a new db warning joins its group.
    let ended = chrono::Utc::now();
    post(
        "/api/v2/alerts",
        json!([
            alert("ServiceDown", "api", "critical", "", ended),
            alert("HighLatency", "db", "warning", "c", later),
        ]),
    )
    .await;
    settle(7).await;
    same_so_far("critical resolved");
    // Everything resolves; the silenced alert stays unheard of.
    let ended = chrono::Utc::now();
    post(
        "/api/v2/alerts",
        json!([
            alert("HighLatency", "api", "warning", "a", ended),
            alert("HighLatency", "api", "warning", "b", ended),
            alert("HighLatency", "db", "warning", "a", ended),
            alert("HighLatency", "db", "warning", "c", ended),
            alert("Silenced", "db", "warning", "", ended),
        ]),
    )
    .await;
    settle(9).await;
    let theirs = same_so_far("all resolved");
    let statuses = |key: &str| -> Vec<String> {
        theirs[key]
            .iter()
            .map(|n| n["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(theirs.len(), 4, "{theirs:#?}");
    assert_eq!(
        statuses(r#"team-api {"alertname":"HighLatency","service":"api"}"#),
        ["firing", "resolved"],
        "inhibited until the critical alert resolved"
    );
    assert_eq!(
        statuses(r#"pager {"alertname":"ServiceDown","service":"api"}"#),
        ["firing", "resolved"]
    );
    assert_eq!(
        theirs[r#"default {"alertname":"HighLatency","service":"db"}"#][1]["alerts"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "the new alert joined its group"
    );
}
