//! `wasmon config import --alertmanager` side by side with the real thing:
//! one alertmanager.yml (webhook receivers, one of them with two
//! integrations, a grouped route tree with `continue`, an inhibit rule),
//! run by Debian's Alertmanager 0.25 and, imported, by wasmon; the same
//! alerts posted to both; what each webhook receives compared.
//!
//! Compared: the receiver, the status, `groupLabels`, `commonLabels`, and
//! the alerts' labels and status in order. Not compared, as they
//! legitimately differ: `externalURL` (each its own), `groupKey` (each
//! side's route ids), `startsAt`/`endsAt` (each side's clock at receipt),
//! `generatorURL`, `fingerprint`, annotations' order.

use crate::fixtures;
use crate::fixtures::upstream::Alertmanager;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// `{{HOOK}}`: the address of the webhook server this side posts to.
const AM_YML: &str = r#"global:
  resolve_timeout: 5m
route:
  receiver: default
  group_by: [alertname, service]
  group_wait: 1s
  group_interval: 2s
  repeat_interval: 1h
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      continue: true
    - match_re:
        service: api|auth
      receiver: team-api
      group_by: [alertname]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [service]
receivers:
  - name: default
    webhook_configs:
      - url: http://{{HOOK}}/default
  - name: pager
    webhook_configs:
      - url: http://{{HOOK}}/pager
      - url: http://{{HOOK}}/pager-firing-only
        send_resolved: false
  - name: team-api
    webhook_configs:
      - url: http://{{HOOK}}/team-api
        max_alerts: 5
"#;

/// What a notification says that both sides must agree on.
fn gist(body: &Value) -> Value {
    let alerts: Vec<Value> = body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| json!({"labels": a["labels"], "status": a["status"]}))
        .collect();
    json!({
        "receiver": body["receiver"],
        "status": body["status"],
        "commonLabels": body["commonLabels"],
        "alerts": alerts,
    })
}

/// The notifications a webhook server got, by path and group labels, in
/// the order they came.
fn per_group(hook: &fixtures::Receiver) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in hook.requests() {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        out.entry(format!("{} {}", r.path, body["groupLabels"]))
            .or_default()
            .push(gist(&body));
    }
    out
}

/// `wasmon config import --alertmanager yml --out toml`; the TOML written.
fn import(yml: &std::path::Path, toml: &std::path::Path) -> String {
    let out = fixtures::wasmon([
        "config",
        "import",
        "--alertmanager",
        yml.to_str().unwrap(),
        "--out",
        toml.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", fixtures::text(&out));
    std::fs::read_to_string(toml).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_alertmanager_yml_notifies_as_alertmanager_does() {
    let _heavy = fixtures::heavy();
    let (am_hook, our_hook) = (
        fixtures::Receiver::start().await,
        fixtures::Receiver::start().await,
    );
    let am = Alertmanager::start(&AM_YML.replace("{{HOOK}}", &am_hook.addr.to_string())).await;

    let dir = fixtures::agent_dir_with(&["webhook"]);
    let yml = dir.path().join("alertmanager.yml");
    std::fs::write(&yml, AM_YML.replace("{{HOOK}}", &our_hook.addr.to_string())).unwrap();
    let toml_path = dir.path().join("imported.toml");
    let imported = import(&yml, &toml_path);
    assert!(
        !imported.contains("Not carried"),
        "everything is carried:\n{imported}"
    );
    let config = format!("{imported}\n[web]\nlisten_address = \"{{{{LISTEN}}}}\"\n");
    let agent = fixtures::AgentProcess::start(dir, &config).await;

    // One receiver name for `pager`'s two instances, as Alertmanager lists it.
    let receivers = |url: String| async move {
        reqwest::get(url)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    assert_eq!(
        receivers(agent.url("/api/v2/receivers")).await,
        receivers(am.url("/api/v2/receivers")).await
    );

    let client = reqwest::Client::new();
    let post = |alerts: Value| {
        let client = client.clone();
        let urls = [am.url("/api/v2/alerts"), agent.url("/api/v2/alerts")];
        async move {
            for url in urls {
                let r = client.post(&url).json(&alerts).send().await.unwrap();
                let status = r.status();
                assert!(status.is_success(), "POST {url}: {status}");
            }
        }
    };
    let now = chrono::Utc::now();
    let later = now + chrono::Duration::hours(1);
    let alert = |name: &str,
                 service: &str,
                 severity: &str,
                 instance: &str,
                 ends: chrono::DateTime<chrono::Utc>| {
        json!({
            "labels": {"alertname": name, "service": service, "severity": severity, "instance": instance},
            "annotations": {"summary": format!("{name} on {instance}")},
            "startsAt": now.to_rfc3339(),
            "endsAt": ends.to_rfc3339(),
        })
    };
    // Both sides have sent `n` notifications, and nothing more comes
    // within a group interval and a half; bounded.
    let settle = |n: usize| {
        let (am_hook, our_hook, agent, am) = (&am_hook, &our_hook, &agent, &am);
        async move {
            let start = Instant::now();
            while am_hook.requests().len() < n || our_hook.requests().len() < n {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "waiting for {n} notifications each: Alertmanager {:#?}\nwasmon {:#?}\nagent log:\n{}\nalertmanager log:\n{}",
                    per_group(am_hook),
                    per_group(our_hook),
                    agent.logs(),
                    am.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            tokio::time::sleep(Duration::from_millis(3000)).await;
        }
    };
    let same_so_far = |step: &str| {
        let (theirs, ours) = (per_group(&am_hook), per_group(&our_hook));
        assert_eq!(
            ours, theirs,
            "{step}: wasmon (left) and Alertmanager (right) notified differently"
        );
        theirs
    };

    // Firing: the critical api alert pages both of `pager`'s webhooks and
    // (continue) `team-api`, and inhibits the api warnings; the db
    // warnings go to `default`.
    post(json!([
        alert("ServiceDown", "api", "critical", "a", later),
        alert("HighLatency", "api", "warning", "a", later),
        alert("HighLatency", "db", "warning", "a", later),
        alert("HighLatency", "db", "warning", "b", later),
    ]))
    .await;
    settle(4).await;
    let theirs = same_so_far("firing");
    assert_eq!(theirs.len(), 4, "{theirs:#?}");

    // The critical alert resolves: `pager` hears it on the webhook that
    // wants resolved alerts only; the api warning is no longer inhibited.
    let ended = chrono::Utc::now();
    post(json!([alert("ServiceDown", "api", "critical", "a", ended)])).await;
    settle(7).await;
    let theirs = same_so_far("critical resolved");
    let statuses = |key: &str| -> Vec<String> {
        theirs
            .get(key)
            .unwrap_or_else(|| panic!("{key}: {theirs:#?}"))
            .iter()
            .map(|n| n["status"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        statuses(r#"/pager {"alertname":"ServiceDown","service":"api"}"#),
        ["firing", "resolved"]
    );
    assert_eq!(
        statuses(r#"/pager-firing-only {"alertname":"ServiceDown","service":"api"}"#),
        ["firing"]
    );
    assert_eq!(
        theirs[r#"/team-api {"alertname":"HighLatency"}"#].len(),
        1,
        "inhibited until the critical alert resolved: {theirs:#?}"
    );
}

/// A `*_file` secret imported as `${file:PATH}` is read when the instance
/// is prepared: `check config` and the agent fail on a missing file naming
/// the key and the file (never the content), and a rotated file is used
/// after a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_secrets_are_read_at_start_and_again_on_reload() {
    let hook = fixtures::Receiver::start().await;
    let dir = fixtures::agent_dir_with(&["webhook"]);
    let yml = dir.path().join("alertmanager.yml");
    std::fs::write(
        &yml,
        "route:\n  receiver: hook\n  group_wait: 0s\n  group_interval: 1s\nreceivers:\n  - name: hook\n    slack_configs: []\n    webhook_configs:\n      - url_file: secrets/hook_url\n",
    )
    .unwrap();
    let toml_path = dir.path().join("imported.toml");
    let imported = import(&yml, &toml_path);
    assert!(
        imported.contains("url = \"${file:secrets/hook_url}\""),
        "{imported}"
    );
    // The file's host could not be read at import: the finding says so,
    // and the instance must be allowed the hook's address by hand.
    assert!(imported.contains("add its host"), "{imported}");
    let imported = imported.replace(
        "plugin = \"webhook\"",
        &format!("plugin = \"webhook\"\nallow_hosts = [\"{}\"]", hook.addr),
    );
    std::fs::write(&toml_path, &imported).unwrap();

    let check =
        |path: &std::path::Path| fixtures::wasmon(["check", "config", path.to_str().unwrap()]);
    let out = check(&toml_path);
    let text = fixtures::text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("config.url: file secrets/hook_url: No such file or directory"),
        "{text}"
    );
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    let secret = dir.path().join("secrets/hook_url");
    std::fs::write(
        &secret,
        format!("http://{}/first?token=s3cret\n", hook.addr),
    )
    .unwrap();
    let out = check(&toml_path);
    assert!(out.status.success(), "{}", fixtures::text(&out));
    assert!(!fixtures::text(&out).contains("s3cret"));

    let config = format!("{imported}\n[web]\nlisten_address = \"{{{{LISTEN}}}}\"\n");
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let client = reqwest::Client::new();
    let fire = |name: &'static str| {
        let client = client.clone();
        let url = agent.url("/api/v2/alerts");
        async move {
            let r = client
                .post(url)
                .json(&json!([{"labels": {"alertname": name}}]))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
        }
    };
    let paths = |hook: &fixtures::Receiver| -> Vec<String> {
        hook.requests().iter().map(|r| r.path.clone()).collect()
    };
    let wait_for = |n: usize| {
        let (hook, agent) = (&hook, &agent);
        async move {
            let start = Instant::now();
            while hook.requests().len() < n {
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "waiting for {n} notifications: {:?}\n{}",
                    paths(hook),
                    agent.logs()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    fire("First").await;
    wait_for(1).await;
    // Rotated: the reload prepares the instance again, reading the file.
    std::fs::write(&secret, format!("http://{}/second\n", hook.addr)).unwrap();
    let r = client.post(agent.url("/-/reload")).send().await.unwrap();
    assert!(r.status().is_success(), "{}", agent.logs());
    fire("Second").await;
    wait_for(2).await;
    assert_eq!(paths(&hook), ["/first", "/second"]);
    assert!(!agent.logs().contains("s3cret"), "{}", agent.logs());
}
