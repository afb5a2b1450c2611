//! Hot reload: a plugin swapped under concurrent calls loses none of them;
//! a broken file leaves the old version serving; a removed file unloads.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmon::alerting::message::WebhookMessage;
use wasmon::config::PluginsConfig;
use wasmon::plugins::{watch, CallError, Instance, PluginRuntime};
use wasmon::selfmetrics::Metrics;

/// Atomic replace, as deploy tools and `kubectl cp`-then-`mv` do.
fn install(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_concurrent_calls_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let v1 = std::fs::read(common::component("noop")).unwrap();
    let v2 = std::fs::read(common::component("misbehave")).unwrap();
    install(dir.path(), "p.wasm", &v1);

    let rt = PluginRuntime::new(
        &PluginsConfig::default(),
        dir.path().to_path_buf(),
        None,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    rt.load_all().await;
    let h1 = rt.get("p").expect("v1 loaded").hash.clone();
    let _watch = watch::watch(rt.clone()).unwrap();

    let inst = Instance {
        name: "p".into(),
        plugin: "p".into(),
        // Both versions accept this config: noop ignores it, misbehave obeys "ok".
        config_json: r#"{"mode":"ok"}"#.into(),
        allow: Arc::new([]),
        timeout: Duration::from_secs(10),
        memory_limit: 32 << 20,
    };
    let n = WebhookMessage::test_message("p", "http://localhost", "2026-01-01T00:00:00Z")
        .to_wit()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Result<String, CallError>>>> = Arc::default();
    let mut callers = Vec::new();
    for _ in 0..4 {
        let (rt, inst, n, stop, seen) = (
            rt.clone(),
            inst.clone(),
            n.clone(),
            stop.clone(),
            seen.clone(),
        );
        callers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let r = rt.notify(&inst, &n).await.map(|i| i.plugin_hash);
                seen.lock().unwrap().push(r);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    install(dir.path(), "p.wasm", &v2);
    let took = wait_until("v2 to serve", Duration::from_secs(10), || {
        rt.get("p").is_some_and(|p| p.hash != h1)
    })
    .await;
    eprintln!("hot reload took {took:?}");
    let h2 = rt.get("p").unwrap().hash.clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for c in callers {
        c.await.unwrap();
    }

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let errors: Vec<_> = seen.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} of {} calls failed during the swap: {:?}",
        errors.len(),
        seen.len(),
        &errors[..errors.len().min(5)]
    );
    let versions: BTreeSet<_> = seen.iter().map(|r| r.as_ref().unwrap().clone()).collect();
    assert_eq!(
        versions,
        BTreeSet::from([h1.clone(), h2.clone()]),
        "calls were not served by both versions"
    );
    // Once v2 served a call, v1 never serves again (in this caller order).
    assert_eq!(seen.last().unwrap().as_ref().unwrap(), &h2);

    // A broken file is rejected with an error naming it; v2 keeps serving.
    install(dir.path(), "p.wasm", b"\0asm this is not a component");
    wait_until(
        "the broken file to be reported",
        Duration::from_secs(10),
        || rt.list().iter().any(|p| p.name == "p" && p.error.is_some()),
    )
    .await;
    let status = rt.list().into_iter().find(|p| p.name == "p").unwrap();
    assert_eq!(
        status.hash.as_deref(),
        Some(h2.as_str()),
        "old version should still be listed as serving"
    );
    assert!(status.path.ends_with("p.wasm"));
    assert_eq!(rt.notify(&inst, &n).await.unwrap().plugin_hash, h2);

    // Removing the file unloads the plugin.
    std::fs::remove_file(dir.path().join("p.wasm")).unwrap();
    wait_until("the plugin to unload", Duration::from_secs(10), || {
        rt.get("p").is_none()
    })
    .await;
    assert_eq!(
        rt.notify(&inst, &n).await.unwrap_err(),
        CallError::NotLoaded("p".into())
    );

    // A new file appears and serves.
    install(dir.path(), "q.wasm", &v1);
    wait_until("a new plugin to load", Duration::from_secs(10), || {
        rt.get("q").is_some()
    })
    .await;
    assert_eq!(rt.get("q").unwrap().hash, h1);
}

#[tokio::test]
async fn compile_cache_is_used_on_second_load() {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    std::fs::copy(common::component("noop"), dir.path().join("noop.wasm")).unwrap();
    let load = || async {
        let rt = PluginRuntime::new(
            &PluginsConfig::default(),
            dir.path().to_path_buf(),
            Some(cache.path().to_path_buf()),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        rt.load_all().await;
        rt.get("noop").unwrap().from_cache
    };
    assert!(!load().await, "first load cannot come from an empty cache");
    assert_eq!(std::fs::read_dir(cache.path()).unwrap().count(), 1);
    assert!(load().await, "second load should come from the cache");
    // A corrupt cache entry is discarded and the component recompiled.
    for e in std::fs::read_dir(cache.path()).unwrap() {
        std::fs::write(e.unwrap().path(), b"garbage").unwrap();
    }
    assert!(!load().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_flight_call_finishes_on_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let old = std::fs::read(common::component("misbehave")).unwrap();
    let new = std::fs::read(common::component("noop")).unwrap();
    install(dir.path(), "p.wasm", &old);
    let rt = PluginRuntime::new(
        &PluginsConfig::default(),
        dir.path().to_path_buf(),
        None,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    rt.load_all().await;
    let h_old = rt.get("p").unwrap().hash.clone();
    let _watch = watch::watch(rt.clone()).unwrap();
    let inst = Instance {
        name: "p".into(),
        plugin: "p".into(),
        config_json: r#"{"mode":"busy","ms":3000}"#.into(),
        allow: Arc::new([]),
        timeout: Duration::from_secs(20),
        memory_limit: 32 << 20,
    };
    let n = WebhookMessage::test_message("p", "http://localhost", "2026-01-01T00:00:00Z")
        .to_wit()
        .unwrap();
    let call = {
        let (rt, inst, n) = (rt.clone(), inst.clone(), n.clone());
        tokio::spawn(async move { rt.notify(&inst, &n).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    install(dir.path(), "p.wasm", &new);
    wait_until("the new version to load", Duration::from_secs(10), || {
        rt.get("p").is_some_and(|p| p.hash != h_old)
    })
    .await;
    assert!(
        !call.is_finished(),
        "the busy call should still be running after the swap"
    );
    let info = call
        .await
        .unwrap()
        .expect("in-flight call failed across the reload");
    assert_eq!(
        info.plugin_hash, h_old,
        "the in-flight call must finish on the version it started on"
    );
}
