//! Plugin runtime benchmark: prints figures, asserts nothing about speed.
//!
//! Run with `cargo bench -p wasmon --bench plugins` after `cargo xtask plugins`.
//! Measures: cold compile vs cached load, instantiate cost, no-op receiver
//! call latency (p50/p99) with the on-demand and pooling allocators,
//! concurrent throughput, and hot-reload latency (file rename → new version
//! serving).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmon::alerting::message::WebhookMessage;
use wasmon::config::{Allocator, PluginsConfig};
use wasmon::plugins::{watch, Instance, PluginRuntime};
use wasmon::selfmetrics::Metrics;

fn component(name: &str) -> PathBuf {
    let dir = std::env::var_os("WASMON_PLUGIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "{} missing: run `cargo xtask plugins` first",
        p.display()
    );
    p
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn runtime(cfg: &PluginsConfig, dir: &Path, cache: Option<&Path>) -> Arc<PluginRuntime> {
    PluginRuntime::new(
        cfg,
        dir.to_path_buf(),
        cache.map(Path::to_path_buf),
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

fn noop_instance() -> Instance {
    Instance {
        name: "bench".into(),
        plugin: "noop".into(),
        config_json: "{}".into(),
        allow: Arc::new([]),
        timeout: Duration::from_secs(10),
        memory_limit: 64 << 20,
        http: None,
    }
}

async fn compile_vs_cache(name: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(component(name), dir.path().join(format!("{name}.wasm"))).unwrap();
    let size = std::fs::metadata(component(name)).unwrap().len();
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let cache = tempfile::tempdir().unwrap();
        let rt = runtime(&PluginsConfig::default(), dir.path(), Some(cache.path()));
        rt.load_all().await;
        let p = rt.get(name).unwrap();
        assert!(!p.from_cache);
        cold.push(p.load_duration);
        let rt = runtime(&PluginsConfig::default(), dir.path(), Some(cache.path()));
        rt.load_all().await;
        let p = rt.get(name).unwrap();
        assert!(p.from_cache);
        warm.push(p.load_duration);
    }
    cold.sort();
    warm.sort();
    println!(
        "load {name:<10} ({:>6.1} KiB): cold compile median {:>8.2} ms   cached load median {:>6.2} ms",
        size as f64 / 1024.0,
        ms(pct(&cold, 0.5)),
        ms(pct(&warm, 0.5))
    );
}

async fn call_latency(label: &str, cfg: &PluginsConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(component("noop"), dir.path().join("noop.wasm")).unwrap();
    let rt = runtime(cfg, dir.path(), None);
    rt.load_all().await;
    let inst = noop_instance();
    let n = wasmon::plugins::notifier::wit_notification(&WebhookMessage::test_message(
        "bench",
        "http://localhost",
        "2026-01-01T00:00:00Z",
    ))
    .unwrap();
    for _ in 0..200 {
        rt.notify(&inst, &n).await.unwrap();
    }
    const N: usize = 2000;
    let mut inst_t = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        rt.instantiate_only(&inst).await.unwrap();
        inst_t.push(t.elapsed());
    }
    let mut call_t = Vec::with_capacity(N);
    for _ in 0..N {
        let t = Instant::now();
        rt.notify(&inst, &n).await.unwrap();
        call_t.push(t.elapsed());
    }
    inst_t.sort();
    call_t.sort();
    println!(
        "{label:<10} instantiate p50 {:>7.1} µs p99 {:>7.1} µs | no-op notify (instantiate+call) p50 {:>7.1} µs p99 {:>7.1} µs  ({N} calls)",
        us(pct(&inst_t, 0.5)),
        us(pct(&inst_t, 0.99)),
        us(pct(&call_t, 0.5)),
        us(pct(&call_t, 0.99)),
    );
    // Throughput with 4 concurrent callers on the 2-core runtime.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (rt, inst, n) = (rt.clone(), inst.clone(), n.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..N / 4 {
                rt.notify(&inst, &n).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let el = start.elapsed();
    println!(
        "{label:<10} throughput, 4 concurrent callers: {:>8.0} calls/s",
        N as f64 / el.as_secs_f64()
    );
}

async fn hot_reload(cached: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let versions = [
        std::fs::read(component("noop")).unwrap(),
        std::fs::read(component("misbehave")).unwrap(),
    ];
    std::fs::write(dir.path().join("p.wasm"), &versions[0]).unwrap();
    let rt = runtime(
        &PluginsConfig::default(),
        dir.path(),
        cached.then_some(cache.path()),
    );
    rt.load_all().await;
    if cached {
        // Warm the cache with the second version too.
        std::fs::write(dir.path().join("warm.wasm"), &versions[1]).unwrap();
        rt.load_all().await;
    }
    let _w = watch::watch(rt.clone()).unwrap();
    let mut lat = Vec::new();
    for i in 1..=10 {
        let bytes = &versions[i % 2];
        let before = rt.get("p").unwrap().hash.clone();
        let tmp = dir.path().join(".p.tmp");
        std::fs::write(&tmp, bytes).unwrap();
        let t = Instant::now();
        std::fs::rename(&tmp, dir.path().join("p.wasm")).unwrap();
        while rt.get("p").unwrap().hash == before {
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "hot reload ({}): rename → new version serving: median {:>7.1} ms, max {:>7.1} ms (10 swaps, includes {} ms debounce)",
        if cached { "cached   " } else { "uncached " },
        ms(pct(&lat, 0.5)),
        ms(lat[lat.len() - 1]),
        watch::DEBOUNCE.as_millis()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "== wasmon plugin runtime benchmark ({} cores)",
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0)
        );
        for name in ["noop", "webhook"] {
            compile_vs_cache(name).await;
        }
        call_latency("on-demand", &PluginsConfig::default()).await;
        call_latency(
            "pooling",
            &PluginsConfig {
                allocator: Allocator::Pooling,
                ..PluginsConfig::default()
            },
        )
        .await;
        hot_reload(false).await;
        hot_reload(true).await;
    });
}
