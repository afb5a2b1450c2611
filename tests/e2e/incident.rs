//! End to end through the real binary: a deploy (rollout started), an alert
//! fires and pages the primary, nobody acks, escalation pages the secondary
//! (step 2), `wasmon ack` stops the manager step (3) and the repeats, the
//! ack survives a kill -9 and shows in the alerts API, the resolution closes
//! the incident, and `wasmon incidents ID --report` has the right durations.
//! A primary that is down does not hold escalation back, and config reloads
//! mid-escalation neither page again nor delay the next step.

use crate::fixtures;
use crate::fixtures::wasmon;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const CONFIG: &str = r#"
[global]
evaluation_interval = "500ms"

[web]
listen_address = "{{LISTEN}}"

[[receivers]]
name = "primary"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/primary" }

[[receivers]]
name = "secondary"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/secondary" }

[[receivers]]
name = "manager"
plugin = "webhook"
allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/manager" }

[route]
receiver = "primary"
group_by = ["alertname"]
group_wait = "1s"
group_interval = "1s"
repeat_interval = "2s"
escalation = [
  { receiver = "secondary", delay = "3s" },
  { receiver = "manager", delay = "9s" },
]

[[rollouts]]
name = "web"
interval = "500ms"
soak = "10m"

[[rollouts.metrics]]
name = "errors"
query = "vector(0)"
max = 1
"#;

fn count(hook: &fixtures::Receiver, path: &str, status: &str) -> usize {
    hook.requests()
        .iter()
        .filter(|r| r.path == path)
        .filter(|r| serde_json::from_slice::<Value>(&r.body).unwrap()["status"] == status)
        .count()
}

async fn get(agent: &fixtures::AgentProcess, path: &str) -> Value {
    fixtures::get_ok_json(&agent.url(path)).await
}

async fn post_alert(agent: &fixtures::AgentProcess, ends_at: DateTime<Utc>) {
    let r = reqwest::Client::new()
        .post(agent.url("/api/v2/alerts"))
        .json(&json!([{
            "labels": {"alertname": "HighErrorRate", "service": "web"},
            "annotations": {"summary": "5xx above 5%"},
            "endsAt": ends_at.to_rfc3339(),
        }]))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

fn secs(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a duration: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_ack_resolution_and_report() {
    let hook = fixtures::Receiver::start().await;
    let dir = fixtures::agent_dir_with(&["webhook"]);
    let config = CONFIG.replace("{{HOOK}}", &hook.addr.to_string());
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let client = reqwest::Client::new();

    // The deploy.
    let deployed = Utc::now();
    let r = client
        .post(agent.url("/api/v1/rollouts/web/start"))
        .json(&json!({"version": "v2"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    tokio::time::sleep(Duration::from_millis(1500)).await;

    // The alert fires and pages the primary.
    let fired = Utc::now();
    post_alert(&agent, fired + chrono::Duration::hours(1)).await;
    agent
        .eventually("the primary page", Duration::from_secs(10), || async {
            count(&hook, "/primary", "firing") >= 1
        })
        .await;
    let groups = get(&agent, "/api/v2/alerts/groups").await;
    let key = groups[0]["groupKey"].as_str().unwrap().to_string();
    assert_eq!(groups[0]["ack"], Value::Null);

    // Acking something that is not a firing group is refused.
    let r = client
        .post(agent.url("/api/v1/acks"))
        .json(&json!({"group_key": "{}:{alertname=\"Nope\"}", "by": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("no alert group"),
        "{e}"
    );
    // Errors come in the API's error envelope, as every /api/v1 error does.
    assert_eq!(e["status"], "error", "{e}");
    assert_eq!(e["errorType"], "bad_data", "{e}");
    let r = client
        .post(agent.url("/api/v1/acks"))
        .json(&json!({"group_key": key, "by": "x", "expires_in": "soon"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert!(
        e["error"].as_str().unwrap().starts_with("expires_in: "),
        "{e}"
    );

    // Nobody acks: step 2 pages the secondary 3s after the first page.
    agent
        .eventually(
            "escalation to the secondary",
            Duration::from_secs(15),
            || async { count(&hook, "/secondary", "firing") == 1 },
        )
        .await;
    let paged_secondary = Instant::now();
    assert_eq!(count(&hook, "/manager", "firing"), 0);

    // The CLI acks; the manager step (9s) must not come.
    let url = agent.url("");
    let out = wasmon([
        "ack",
        &key,
        "--by",
        "alice",
        "--comment",
        "rolling back",
        "--url",
        &url,
    ]);
    let acked = Utc::now();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(stdout.contains("acknowledged"), "{stdout}");
    let acks = get(&agent, "/api/v1/acks").await;
    assert_eq!(acks.as_array().unwrap().len(), 1, "{acks}");
    assert_eq!(acks[0]["by"], "alice");
    assert_eq!(acks[0]["comment"], "rolling back");
    let ack_id = acks[0]["id"].as_str().unwrap().to_string();
    let groups = get(&agent, "/api/v2/alerts/groups").await;
    assert_eq!(groups[0]["ack"]["id"], ack_id.as_str());

    // A repeat already in flight may land; after that, none while acked,
    // and no manager page past its 9s.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let primary_after_ack = count(&hook, "/primary", "firing");
    let wait = Duration::from_secs(11).saturating_sub(paged_secondary.elapsed());
    tokio::time::sleep(wait.max(Duration::from_secs(4))).await;
    assert_eq!(
        count(&hook, "/manager", "firing"),
        0,
        "the ack stops step 3"
    );
    assert_eq!(
        count(&hook, "/primary", "firing"),
        primary_after_ack,
        "no repeats while acked"
    );

    // The ack survives a kill -9 (the alert source re-sends its alert):
    // escalation, which starts over with the new process' first page,
    // stays held.
    let dir = agent.kill9();
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    post_alert(&agent, fired + chrono::Duration::hours(1)).await;
    let acks = get(&agent, "/api/v1/acks").await;
    assert_eq!(acks[0]["id"], ack_id.as_str(), "{acks}");
    agent
        .eventually("the group with its ack", Duration::from_secs(5), || async {
            let g = get(&agent, "/api/v2/alerts/groups").await;
            g[0]["ack"]["id"] == ack_id.as_str()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(count(&hook, "/secondary", "firing"), 1);
    assert_eq!(count(&hook, "/manager", "firing"), 0);

    // Resolution closes the incident and ends the ack.
    let resolving = Utc::now();
    post_alert(&agent, resolving).await;
    agent
        .eventually(
            "the resolved notification",
            Duration::from_secs(10),
            || async { count(&hook, "/primary", "resolved") == 1 },
        )
        .await;
    let list = get(&agent, "/api/v1/incidents").await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let inc = &list[0];
    assert_eq!(inc["status"], "resolved", "{inc}");
    let id = inc["id"].as_str().unwrap().to_string();
    assert!(get(&agent, "/api/v1/acks")
        .await
        .as_array()
        .unwrap()
        .is_empty());

    let full = get(&agent, &format!("/api/v1/incidents/{id}")).await;
    let kinds: Vec<&str> = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for k in [
        "rollout_started",
        "alert_firing",
        "notification",
        "escalation",
        "ack",
        "resolved",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(pos("rollout_started") < pos("alert_firing"));
    assert!(pos("escalation") < pos("ack") && pos("ack") < pos("resolved"));
    let esc: Vec<&Value> = full["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "escalation")
        .collect();
    assert_eq!(esc.len(), 1, "only step 2 ran: {esc:#?}");
    assert_eq!(esc[0]["receiver"], "secondary");
    assert_eq!(esc[0]["result"], "ok");

    // Durations against what the test saw (±1s for HTTP and scheduling).
    let d = &full["durations"];
    let between = |a: DateTime<Utc>, b: DateTime<Utc>| (b - a).num_milliseconds() as f64 / 1000.0;
    let near = |what: &str, got: f64, lo: f64, hi: f64| {
        assert!(
            got >= lo - 1.0 && got <= hi + 1.0,
            "{what} {got}s not in [{lo}, {hi}]"
        );
    };
    near(
        "time to detect",
        secs(&d["time_to_detect"]),
        between(deployed, fired) - 0.5,
        between(deployed, fired) + 0.5,
    );
    near(
        "time to acknowledge",
        secs(&d["time_to_acknowledge"]),
        between(fired, acked) - 1.0,
        between(fired, acked),
    );
    // Resolved as of the alert's endsAt, not when that was notified.
    near(
        "time to resolve",
        secs(&d["time_to_resolve"]),
        between(fired, resolving),
        between(fired, resolving),
    );
    near(
        "total",
        secs(&d["total"]),
        between(deployed, resolving),
        between(deployed, resolving),
    );
    assert!(
        secs(&d["time_to_acknowledge"]) >= 4.0,
        "after step 2 (3s after a 1s group_wait)"
    );
    assert_eq!(
        d["time_to_mitigate"],
        Value::Null,
        "no rollback in this story"
    );

    // The Markdown report from the CLI shows the same durations.
    let url = agent.url("");
    let out = wasmon(["incidents", &id, "--report", "--url", &url]);
    assert!(out.status.success(), "{out:?}");
    let md = String::from_utf8(out.stdout).unwrap();
    let human = |s: f64| {
        let s = s as u64;
        if s >= 60 {
            format!("{}m{}s", s / 60, s % 60).replace("m0s", "m")
        } else {
            format!("{s}s")
        }
    };
    for (label, key) in [
        ("time to detect", "time_to_detect"),
        ("time to acknowledge", "time_to_acknowledge"),
        ("time to resolve", "time_to_resolve"),
    ] {
        let want = format!("{label}: {}", human(secs(&d[key])));
        assert!(md.contains(&want), "missing {want:?}:\n{md}");
    }
    assert!(
        md.contains(&format!(
            "| **Total duration** | | {} |",
            human(secs(&d["total"]))
        )),
        "{md}"
    );
    assert!(md.contains("paged secondary"), "{md}");
    assert!(md.contains("acknowledged by alice"), "{md}");

    println!("{md}");

    // The list from the CLI.
    let out = wasmon(["incidents", "--url", &url]);
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(list.contains("resolved") && list.contains(&key), "{list}");
    // And unack of a gone ack is a clear error.
    let out = wasmon(["unack", &ack_id, "--url", &url]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no ack with id"),
        "{out:?}"
    );
}

/// Polls every 20 ms until `hook` has `n` requests to `path`; when the
/// n-th was seen (±20 ms), or None after `limit`.
async fn seen(hook: &fixtures::Receiver, path: &str, n: usize, limit: Duration) -> Option<Instant> {
    let start = Instant::now();
    loop {
        if hook.requests().iter().filter(|r| r.path == path).count() >= n {
            return Some(Instant::now());
        }
        if start.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start_escalation(
    primary: &fixtures::Receiver,
    hook: &fixtures::Receiver,
    steps: (&str, &str),
) -> (fixtures::AgentProcess, String) {
    // CONFIG with the primary on its own server (so it can be down), no
    // repeats, and the steps' delays.
    let config = CONFIG
        .replace(
            r#"allow_hosts = ["{{HOOK}}"]
config = { url = "http://{{HOOK}}/primary" }"#,
            &format!(
                r#"allow_hosts = ["{0}"]
config = {{ url = "http://{0}/primary" }}"#,
                primary.addr
            ),
        )
        .replace("{{HOOK}}", &hook.addr.to_string())
        .replace(r#"repeat_interval = "2s""#, r#"repeat_interval = "1h""#)
        .replace(r#"delay = "3s""#, &format!(r#"delay = "{}""#, steps.0))
        .replace(r#"delay = "9s""#, &format!(r#"delay = "{}""#, steps.1));
    assert!(config.contains(&primary.addr.to_string()) && config.contains(steps.1));
    let agent =
        fixtures::AgentProcess::start(fixtures::agent_dir_with(&["webhook"]), &config).await;
    post_alert(&agent, Utc::now() + chrono::Duration::hours(1)).await;
    (agent, config)
}

/// The case escalation exists for: the primary's receiver is down. Its
/// pages fail (and are retried every group interval), the secondary is
/// paged 3s after the first attempt all the same, and the timeline shows
/// the failed pages as failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_that_is_down_still_gets_the_secondary_paged_on_time() {
    let primary = fixtures::Receiver::start().await;
    *primary.status.lock().unwrap() = reqwest::StatusCode::INTERNAL_SERVER_ERROR;
    let hook = fixtures::Receiver::start().await;
    let (agent, _) = start_escalation(&primary, &hook, ("3s", "1h")).await;
    let first = seen(&primary, "/primary", 1, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no page attempt\n{}", agent.logs()));
    let paged = seen(&hook, "/secondary", 1, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| {
            panic!(
                "the secondary was never paged ({} failed primary attempts)\n{}",
                primary.requests().len(),
                agent.logs()
            )
        });
    let after = paged - first;
    assert!(
        after >= Duration::from_millis(2700) && after <= Duration::from_millis(5000),
        "secondary paged {after:?} after the first attempt, not 3s"
    );
    assert!(primary.requests().len() >= 2, "the primary is retried");

    let id = get(&agent, "/api/v1/incidents").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = wasmon(["incidents", &id, "--url", &agent.url("")]);
    assert!(out.status.success(), "{out:?}");
    let timeline = String::from_utf8(out.stdout).unwrap();
    let line = |kind: &str| {
        timeline
            .lines()
            .find(|l| l.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} in\n{timeline}"))
            .to_string()
    };
    let page = line("notification");
    assert!(
        page.contains("-> primary: FAILED (retried at ") && page.contains("HTTP 500"),
        "{timeline}"
    );
    assert!(
        line("escalation").contains("-> secondary: ok"),
        "{timeline}"
    );
    let report = wasmon(["incidents", &id, "--report", "--url", &agent.url("")]);
    let report = String::from_utf8(report.stdout).unwrap();
    assert!(
        report.contains("(receiver primary: FAILED (retried at "),
        "{report}"
    );
}

/// Reloads mid-escalation (POST /-/reload, three of them) neither page the
/// primary or the secondary again nor move the manager's step: it comes 8s
/// after the first page, as it would have without them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_mid_escalation_neither_repages_nor_delays_the_next_step() {
    let hook = fixtures::Receiver::start().await;
    let (agent, _) = start_escalation(&hook, &hook, ("2s", "8s")).await;
    let first = seen(&hook, "/primary", 1, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no first page\n{}", agent.logs()));
    seen(&hook, "/secondary", 1, Duration::from_secs(10))
        .await
        .unwrap_or_else(|| panic!("no secondary page\n{}", agent.logs()));
    let client = reqwest::Client::new();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = client.post(agent.url("/-/reload")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let managed = seen(&hook, "/manager", 1, Duration::from_secs(12))
        .await
        .unwrap_or_else(|| panic!("the manager was never paged\n{}", agent.logs()));
    let after = managed - first;
    assert!(
        after >= Duration::from_millis(7700) && after <= Duration::from_millis(10_000),
        "manager paged {after:?} after the first page, not 8s"
    );
    // Past another step's worth of time: nobody paged twice.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for path in ["/primary", "/secondary", "/manager"] {
        assert_eq!(count(&hook, path, "firing"), 1, "{path} paged again");
    }
    let id = get(&agent, "/api/v1/incidents").await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let inc = get(&agent, &format!("/api/v1/incidents/{id}")).await;
    let steps = inc["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "escalation")
        .count();
    assert_eq!(steps, 2, "{inc}");
}

/// Issue 17's soak: an ack and a silence accepted while the disk refuses
/// writes (a file size limit on the agent) reach the disk once it takes
/// writes again, and survive a kill -9; each state file logs its failure
/// once, not at every attempt. Before, acks.json was written only at the
/// next ack change (a restart lost the ack), silences.json at the next
/// change or the 15-minute maintenance, and a 10 s outage logged 36
/// "saving incidents" errors (one per 250 ms retry), one per notification
/// and one per silence or ack.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_silences_accepted_while_the_disk_refuses_writes_reach_it_later() {
    let hook = fixtures::Receiver::start().await;
    let config = CONFIG.replace("{{HOOK}}", &hook.addr.to_string());
    let agent = fixtures::AgentProcess::start_logging_through_a_pipe(
        fixtures::agent_dir_with(&["webhook"]),
        &config,
    )
    .await;
    let client = reqwest::Client::new();
    // A rollout in progress saves its state every interval.
    let r = client
        .post(agent.url("/api/v1/rollouts/web/start"))
        .json(&json!({"version": "v2"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    post_alert(&agent, Utc::now() + chrono::Duration::hours(1)).await;
    agent
        .eventually("the primary page", Duration::from_secs(10), || async {
            count(&hook, "/primary", "firing") >= 1
        })
        .await;
    let groups = get(&agent, "/api/v2/alerts/groups").await;
    let key = groups[0]["groupKey"].as_str().unwrap().to_string();

    fixtures::set_file_size_limit(agent.child.id(), Some(1));
    let r = client
        .post(agent.url("/api/v1/acks"))
        .json(&json!({"group_key": key, "by": "oncall"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ack = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let now = Utc::now();
    let r = client
        .post(agent.url("/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "alertname", "value": "Other", "isRegex": false, "isEqual": true}],
            "startsAt": now.to_rfc3339(),
            "endsAt": (now + chrono::Duration::hours(1)).to_rfc3339(),
            "createdBy": "oncall",
            "comment": "made while the disk was full",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let silence = r.json::<Value>().await.unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    // Several retries' worth (acks and incidents every 250 ms, rollouts
    // every 500 ms).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let data = agent.dir.path().join("data");
    let on_disk = |file: &str, id: &str| {
        std::fs::read_to_string(data.join(file)).is_ok_and(|s| s.contains(id))
    };
    assert!(!on_disk("acks.json", &ack) && !on_disk("silences.json", &silence));

    fixtures::set_file_size_limit(agent.child.id(), None);
    agent
        .eventually(
            "the ack and the silence on disk",
            Duration::from_secs(20),
            || {
                let done = on_disk("acks.json", &ack) && on_disk("silences.json", &silence);
                async move { done }
            },
        )
        .await;
    let logs = agent.logs();
    for what in [
        "the acks",
        "the silences",
        "the incidents",
        "the rollout state",
    ] {
        let failed = logs
            .lines()
            .filter(|l| l.contains(" ERROR ") && l.contains(&format!("writing {what} (")))
            .count();
        assert_eq!(failed, 1, "{what}: logged once\n{logs}");
        assert!(
            logs.contains(&format!("writing {what} (")) && logs.contains("works again"),
            "{logs}"
        );
    }

    let dir = agent.kill9();
    let agent = fixtures::AgentProcess::start(dir, &config).await;
    let acks = get(&agent, "/api/v1/acks").await;
    assert_eq!(acks[0]["id"], ack.as_str(), "{acks}");
    let r = reqwest::get(agent.url(&format!("/api/v2/silence/{silence}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
