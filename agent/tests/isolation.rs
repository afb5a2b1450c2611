//! A guest that loops, one that allocates without bound, one that traps and
//! one that calls a host outside its allow-list each fail only their own
//! call, with a clear error, while other plugins keep serving.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmon::alerting::message::WebhookMessage;
use wasmon::config::PluginsConfig;
use wasmon::plugins::policy::HostPattern;
use wasmon::plugins::{CallError, Instance, PluginRuntime};
use wasmon::selfmetrics::Metrics;

fn instance(
    name: &str,
    plugin: &str,
    config: serde_json::Value,
    allow: &[&str],
    timeout: Duration,
) -> Instance {
    Instance {
        name: name.into(),
        plugin: plugin.into(),
        config_json: config.to_string().into(),
        allow: allow
            .iter()
            .map(|a| HostPattern::parse(a).unwrap())
            .collect(),
        timeout,
        memory_limit: 32 << 20,
    }
}

async fn runtime() -> (tempfile::TempDir, Arc<PluginRuntime>, Arc<Metrics>) {
    let dir = tempfile::tempdir().unwrap();
    for p in ["noop", "misbehave"] {
        std::fs::copy(common::component(p), dir.path().join(format!("{p}.wasm"))).unwrap();
    }
    let metrics = Arc::new(Metrics::new());
    let rt = PluginRuntime::new(
        &PluginsConfig::default(),
        dir.path().to_path_buf(),
        None,
        metrics.clone(),
    )
    .unwrap();
    assert_eq!(rt.load_all().await, (2, 0), "{:#?}", rt.list());
    (dir, rt, metrics)
}

fn notification() -> wasmon::plugins::bindings::types::Notification {
    WebhookMessage::test_message("test", "http://localhost", "2026-01-01T00:00:00Z")
        .to_wit()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_guests_fail_only_their_own_call() {
    let (_dir, rt, metrics) = runtime().await;
    let server = common::Receiver::start().await;
    let n = notification();
    let url = format!("http://{}/hook", server.addr);

    let looping = instance(
        "spin",
        "misbehave",
        serde_json::json!({"mode": "loop"}),
        &[],
        Duration::from_secs(2),
    );
    let hog = instance(
        "hog",
        "misbehave",
        serde_json::json!({"mode": "alloc"}),
        &[],
        Duration::from_secs(20),
    );
    let trap = instance(
        "trap",
        "misbehave",
        serde_json::json!({"mode": "trap"}),
        &[],
        Duration::from_secs(5),
    );
    // Allowed: a different port on the same host, so the real one is denied.
    let denied = instance(
        "sneaky",
        "misbehave",
        serde_json::json!({"mode": "http", "url": url}),
        &["127.0.0.1:1"],
        Duration::from_secs(5),
    );
    let allowed_addr = server.addr.to_string();
    let allowed = instance(
        "honest",
        "misbehave",
        serde_json::json!({"mode": "http", "url": url}),
        &[allowed_addr.as_str()],
        Duration::from_secs(5),
    );
    let noop = instance(
        "noop",
        "noop",
        serde_json::json!({}),
        &[],
        Duration::from_secs(5),
    );

    // Healthy calls run while the bad ones are in flight.
    let done = Arc::new(AtomicUsize::new(0));
    let healthy = {
        let (rt, n, noop, done) = (rt.clone(), n.clone(), noop.clone(), done.clone());
        tokio::spawn(async move {
            for _ in 0..50 {
                rt.notify(&noop, &n)
                    .await
                    .expect("noop call failed while others misbehaved");
                done.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let (r_loop, r_hog, r_trap, r_denied) = tokio::join!(
        async {
            let r = rt.notify(&looping, &n).await;
            // The looping call lasts its whole timeout; every healthy call
            // must have finished by then, i.e. the loop blocked nobody.
            (r, done.load(Ordering::SeqCst))
        },
        rt.notify(&hog, &n),
        rt.notify(&trap, &n),
        rt.notify(&denied, &n),
    );
    healthy.await.unwrap();

    let (r_loop, healthy_done_during_loop) = r_loop;
    assert_eq!(
        r_loop.unwrap_err(),
        CallError::Timeout(Duration::from_secs(2))
    );
    assert_eq!(
        healthy_done_during_loop, 50,
        "healthy calls were held up by a looping guest"
    );

    match r_hog.unwrap_err() {
        CallError::MemoryLimit(m) => assert!(
            m.contains("memory limit exceeded") && m.contains("33554432"),
            "{m}"
        ),
        other => panic!("expected a memory-limit error, got {other:?}"),
    }
    match r_trap.unwrap_err() {
        CallError::Trap(m) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    match r_denied.unwrap_err() {
        e @ CallError::Retryable(_) => {
            let m = e.to_string();
            assert!(m.contains("denied") && m.contains("allow_hosts"), "{m}");
        }
        other => panic!("expected the denied request to fail the call, got {other:?}"),
    }
    assert!(
        server.requests().is_empty(),
        "a denied request reached the server"
    );

    // The same plugin, allowed to reach the server, gets through.
    rt.notify(&allowed, &n)
        .await
        .expect("allowed request failed");
    assert_eq!(server.requests().len(), 1);

    // And after all that, every plugin still serves.
    rt.notify(&noop, &n).await.unwrap();
    rt.notify(
        &instance(
            "fine",
            "misbehave",
            serde_json::json!({"mode": "ok"}),
            &[],
            Duration::from_secs(5),
        ),
        &n,
    )
    .await
    .unwrap();

    let text = metrics.encode();
    for (inst, result) in [
        ("spin", "timeout"),
        ("hog", "memory"),
        ("trap", "trap"),
        ("sneaky", "retryable"),
        ("noop", "ok"),
    ] {
        let needle = "wasmon_plugin_calls_total{plugin=\"";
        assert!(
            text.lines().any(|l| l.starts_with(needle)
                && l.contains(&format!("instance=\"{inst}\""))
                && l.contains(&format!("result=\"{result}\""))),
            "no {inst}/{result} call in metrics:\n{text}"
        );
    }
    assert!(
        text.contains(
            "wasmon_plugin_http_requests_denied_total{plugin=\"misbehave\",instance=\"sneaky\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_failures_keep_their_kind() {
    let (_dir, rt, _) = runtime().await;
    let n = notification();
    let t = Duration::from_secs(5);
    let r = rt
        .notify(
            &instance(
                "a",
                "misbehave",
                serde_json::json!({"mode": "fail-retryable"}),
                &[],
                t,
            ),
            &n,
        )
        .await;
    assert!(
        matches!(&r, Err(e @ CallError::Retryable(_)) if e.is_retryable()),
        "{r:?}"
    );
    let r = rt
        .notify(
            &instance(
                "b",
                "misbehave",
                serde_json::json!({"mode": "fail-permanent"}),
                &[],
                t,
            ),
            &n,
        )
        .await;
    assert!(
        matches!(&r, Err(e @ CallError::Permanent(_)) if !e.is_retryable()),
        "{r:?}"
    );
    let r = rt
        .notify(
            &instance("c", "nonexistent", serde_json::json!({}), &[], t),
            &n,
        )
        .await;
    assert_eq!(r.unwrap_err(), CallError::NotLoaded("nonexistent".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_blocked_on_a_slow_host_times_out() {
    let (_dir, rt, _) = runtime().await;
    let server = common::Receiver::start().await;
    *server.delay.lock().unwrap() = Duration::from_secs(30);
    let addr = server.addr.to_string();
    let slow = instance(
        "slow",
        "misbehave",
        serde_json::json!({"mode": "http", "url": format!("http://{addr}/")}),
        &[addr.as_str()],
        Duration::from_millis(500),
    );
    // The guest is parked in a host call (no epochs tick inside it): the
    // outer timeout must still end the call.
    let r = rt.notify(&slow, &notification()).await;
    assert_eq!(
        r.unwrap_err(),
        CallError::Timeout(Duration::from_millis(500))
    );
}
