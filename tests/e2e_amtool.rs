//! Interop with the real Alertmanager tools (Debian's prometheus-alertmanager
//! 0.25): `amtool` lists alerts and adds/expires silences against the agent,
//! and the agent forwards rule alerts to a real Alertmanager on 127.0.0.1.

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_alerts_are_forwarded_to_a_real_alertmanager() {
    let am_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        am_dir.path().join("am.yml"),
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    let am_addr = common::AgentProcess::free_addr();
    let mut am = Command::new(tool("prometheus-alertmanager"))
        .arg(format!(
            "--config.file={}",
            am_dir.path().join("am.yml").display()
        ))
        .arg(format!(
            "--storage.path={}",
            am_dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={am_addr}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(am_dir.path().join("am.log")).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _guard = Kill(std::mem::replace(
        &mut am,
        Command::new("true").spawn().unwrap(),
    ));

    // Alertmanager must listen before the agent's first send: a failed
    // send is retried only after the resend delay (1 m, as Prometheus),
    // longer than this test waits.
    let ready = Instant::now();
    while !reqwest::get(format!("http://{am_addr}/-/ready"))
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "Alertmanager never became ready:\n{}",
            std::fs::read_to_string(am_dir.path().join("am.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

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
            std::fs::read_to_string(am_dir.path().join("am.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
