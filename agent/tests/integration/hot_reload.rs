//! Hot reload: a plugin swapped under concurrent calls loses none of them;
//! a broken file leaves the old version serving; a removed file unloads.

use crate::fixtures;

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
    let _heavy = fixtures::heavy();
    let dir = tempfile::tempdir().unwrap();
    let v1 = std::fs::read(fixtures::component("noop")).unwrap();
    let v2 = std::fs::read(fixtures::component("misbehave")).unwrap();
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
        http: None,
    };
    let n = wasmon::plugins::notifier::wit_notification(&WebhookMessage::test_message(
        "p",
        "http://localhost",
        "2026-01-01T00:00:00Z",
    ))
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
    std::fs::copy(fixtures::component("noop"), dir.path().join("noop.wasm")).unwrap();
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
    let old = std::fs::read(fixtures::component("misbehave")).unwrap();
    let new = std::fs::read(fixtures::component("noop")).unwrap();
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
        http: None,
    };
    let n = wasmon::plugins::notifier::wit_notification(&WebhookMessage::test_message(
        "p",
        "http://localhost",
        "2026-01-01T00:00:00Z",
    ))
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

// ---- change detection, broken files, the directory itself (issue 17 items 5, 6, 10) ----

mod watching {
    use std::io::Write as _;
    use std::path::{Path, PathBuf};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{Duration, SystemTime};

    use wasmon::config::PluginsConfig;
    use wasmon::plugins::{watch, PluginRuntime};
    use wasmon::selfmetrics::{Metrics, ResultLabels};
    use wasmon_plugin_tools::contract::Contract;

    use super::{install, wait_until};
    use crate::fixtures;

    /// The agent's log as the tests see it: one subscriber for the whole
    /// test binary (the runtime logs from its worker threads), each test
    /// counting the lines that name its own temporary directory.
    fn log() -> &'static Mutex<Vec<u8>> {
        static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
        LOG.get_or_init(|| {
            struct Sink(Arc<Mutex<Vec<u8>>>);
            impl std::io::Write for Sink {
                fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                    self.0.lock().unwrap().extend_from_slice(b);
                    Ok(b.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            let buf = Arc::new(Mutex::new(Vec::new()));
            let sink = buf.clone();
            let _ = tracing_subscriber::fmt()
                .with_ansi(false)
                .with_max_level(tracing::Level::INFO)
                .with_writer(move || Sink(sink.clone()))
                .try_init();
            buf
        })
    }

    /// Log lines containing every one of `parts`.
    fn log_lines(parts: &[&str]) -> usize {
        let log = log().lock().unwrap();
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    fn failures(m: &Metrics) -> u64 {
        m.plugin_loads
            .get_or_create(&ResultLabels {
                result: "failure".into(),
            })
            .get()
    }

    fn successes(m: &Metrics) -> u64 {
        m.plugin_loads
            .get_or_create(&ResultLabels {
                result: "success".into(),
            })
            .get()
    }

    /// `TMP/plugins` holding `(name, component)` pairs as NAME.wasm; its
    /// own parent, so that the directory itself can be removed and swapped.
    fn plugins_dir(tmp: &Path, plugins: &[(&str, &str)]) -> PathBuf {
        let dir = tmp.join("plugins");
        std::fs::create_dir(&dir).unwrap();
        for (name, component) in plugins {
            std::fs::copy(
                fixtures::component(component),
                dir.join(format!("{name}.wasm")),
            )
            .unwrap();
        }
        dir
    }

    fn runtime(dir: &Path, cfg: &PluginsConfig) -> (Arc<PluginRuntime>, Arc<Metrics>) {
        log();
        let metrics = Arc::new(Metrics::new());
        let rt = PluginRuntime::new(cfg, dir.to_path_buf(), None, metrics.clone()).unwrap();
        (rt, metrics)
    }

    /// Starts the watcher and waits for its first rescan (it looks once for
    /// changes between the initial load and the watch), so what a test does
    /// next is seen through events only.
    async fn start_watch(rt: &Arc<PluginRuntime>, m: &Metrics) -> watch::WatchHandle {
        let before = m.plugins_dir_rescans.get();
        let handle = watch::watch(rt.clone()).unwrap();
        wait_until(
            "the watcher's first rescan",
            Duration::from_secs(10),
            || m.plugins_dir_rescans.get() > before,
        )
        .await;
        handle
    }

    /// What keeps a watched directory alive: its temporary parent and the
    /// watcher.
    type Keep = (tempfile::TempDir, watch::WatchHandle);

    /// An agent's plugin runtime over `TMP/plugins` holding `plugins`,
    /// loaded and watched: (what to keep, the dir, the runtime, its metrics).
    async fn watched(
        plugins: &[(&str, &str)],
    ) -> (Keep, PathBuf, Arc<PluginRuntime>, Arc<Metrics>) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = plugins_dir(tmp.path(), plugins);
        let (rt, m) = runtime(&dir, &PluginsConfig::default());
        assert_eq!(rt.load_all().await, (plugins.len(), 0));
        let watch = start_watch(&rt, &m).await;
        ((tmp, watch), dir, rt, m)
    }

    fn touch(path: &Path) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
    }

    /// Rewritten in place with the very same bytes: events and a new mtime,
    /// no new content.
    fn rewrite_same(path: &Path) {
        let bytes = std::fs::read(path).unwrap();
        std::fs::File::create(path)
            .unwrap()
            .write_all(&bytes)
            .unwrap();
    }

    /// Installs `name` and waits until it serves: every event before it has
    /// been handled by then (one task handles them in order).
    async fn sentinel(rt: &PluginRuntime, dir: &Path, name: &str) {
        install(
            dir,
            &format!("{name}.wasm"),
            &std::fs::read(fixtures::component("noop")).unwrap(),
        );
        wait_until(
            &format!("sentinel {name} to load"),
            Duration::from_secs(30),
            || rt.get(name).is_some(),
        )
        .await;
    }

    /// A few debounce periods with nothing happening: a watcher that feeds
    /// on its own reads would rescan (and read) again and again in this time.
    async fn settle_and_assert_quiet(m: &Metrics) {
        tokio::time::sleep(watch::DEBOUNCE * 2).await;
        let (rescans, reads) = (m.plugins_dir_rescans.get(), m.plugin_file_reads.get());
        tokio::time::sleep(watch::DEBOUNCE * 8).await;
        assert_eq!(
            (m.plugins_dir_rescans.get(), m.plugin_file_reads.get()),
            (rescans, reads),
            "the watcher kept rescanning/reading with nothing changing"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn touching_or_rewriting_identical_content_reloads_nothing() {
        let (_keep, dir, rt, m) = watched(&[("p", "noop")]).await;
        let loaded_at = rt.get("p").unwrap().loaded_at;

        touch(&dir.join("p.wasm"));
        rewrite_same(&dir.join("p.wasm"));
        sentinel(&rt, &dir, "q").await;
        settle_and_assert_quiet(&m).await;
        assert_eq!(successes(&m), 2, "only p's first load and q's");
        assert_eq!(rt.get("p").unwrap().loaded_at, loaded_at, "p was reloaded");

        // An unrelated change in the directory rescans it, and reads
        // nothing but what is new: unchanged files are not re-hashed.
        let reads = m.plugin_file_reads.get();
        std::fs::write(dir.join("README.txt"), b"notes").unwrap();
        sentinel(&rt, &dir, "r").await;
        settle_and_assert_quiet(&m).await;
        assert_eq!(
            m.plugin_file_reads.get(),
            reads + 1,
            "only r.wasm should have been read"
        );
        assert_eq!(successes(&m), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broken_file_is_reported_once_per_change() {
        let (_keep, dir, rt, m) = watched(&[]).await;
        let broken = dir.join("b.wasm");
        let file = broken.display().to_string();
        let error_of = |rt: &PluginRuntime| {
            rt.list()
                .into_iter()
                .find(|p| p.name == "b")
                .and_then(|p| p.error)
        };

        // 1 MiB of junk: refused on its first bytes, never read whole.
        let junk: Vec<u8> = (0..1u32 << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8 | 1)
            .collect();
        install(&dir, "b.wasm", &junk);
        wait_until("the junk to be reported", Duration::from_secs(30), || {
            error_of(&rt).is_some()
        })
        .await;
        let error = error_of(&rt).unwrap();
        assert!(error.starts_with("not WebAssembly"), "{error}");
        assert_eq!(m.plugin_file_reads.get(), 0, "junk was read whole");

        // The same bytes again: nothing new to say.
        touch(&broken);
        rewrite_same(&broken);
        install(&dir, "b.wasm", &junk);
        sentinel(&rt, &dir, "s").await;
        settle_and_assert_quiet(&m).await;
        assert_eq!(failures(&m), 1);
        assert_eq!(log_lines(&["ERROR", "rejected plugin file", &file]), 1);
        assert_eq!(error_of(&rt).as_deref(), Some(error.as_str()));

        // New broken content is a new change: reported once more.
        install(&dir, "b.wasm", b"\0asm\x01\0\0\0");
        wait_until(
            "the core module to be reported",
            Duration::from_secs(30),
            || error_of(&rt).is_some_and(|e| e.contains("core WebAssembly module")),
        )
        .await;
        settle_and_assert_quiet(&m).await;
        assert_eq!(failures(&m), 2);
        assert_eq!(log_lines(&["ERROR", "rejected plugin file", &file]), 2);
        // Visible as before on /metrics.
        assert!(
            m.encode()
                .contains("wasmon_plugin_last_load_successful{plugin=\"b\"} 0"),
            "{}",
            m.encode()
        );
    }

    /// `cp` onto the name, or a rewrite in place: the file is empty, then
    /// half written, for as long as the writer takes. It is read once the
    /// writer closes it, never reported broken in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_written_in_place_is_read_when_its_writer_closes_it() {
        let (_keep, dir, rt, m) = watched(&[("p", "noop")]).await;
        let h1 = rt.get("p").unwrap().hash.clone();

        let new = std::fs::read(fixtures::component("misbehave")).unwrap();
        let mut writer = std::fs::File::create(dir.join("p.wasm")).unwrap();
        writer.write_all(&new[..new.len() / 2]).unwrap();
        // Quiet for several debounce periods with the file half written.
        tokio::time::sleep(watch::DEBOUNCE * 6).await;
        assert_eq!(rt.get("p").unwrap().hash, h1);
        writer.write_all(&new[new.len() / 2..]).unwrap();
        drop(writer);
        wait_until("the new version to serve", Duration::from_secs(30), || {
            rt.get("p").is_some_and(|p| p.hash != h1)
        })
        .await;
        assert_eq!(failures(&m), 0, "{:#?}", rt.list());
        let file = dir.join("p.wasm").display().to_string();
        assert_eq!(log_lines(&["rejected plugin file", &file]), 0);
    }

    /// A hand-made component (binary format 0xd): `imports` are instances of
    /// an empty instance type, `exports` re-export the first import.
    fn component_of(imports: &[&str], exports: &[&str]) -> Vec<u8> {
        fn name(out: &mut Vec<u8>, n: &str) {
            out.push(0x00);
            out.push(n.len() as u8);
            out.extend_from_slice(n.as_bytes());
        }
        fn section(out: &mut Vec<u8>, id: u8, body: Vec<u8>) {
            out.push(id);
            out.push(body.len() as u8);
            out.extend(body);
        }
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        section(&mut c, 7, vec![1, 0x42, 0]);
        let mut body = vec![imports.len() as u8];
        for i in imports {
            name(&mut body, i);
            body.extend([0x05, 0]);
        }
        section(&mut c, 10, body);
        if !exports.is_empty() {
            let mut body = vec![exports.len() as u8];
            for e in exports {
                name(&mut body, e);
                body.extend([0x05, 0, 0]);
            }
            section(&mut c, 11, body);
        }
        c
    }

    /// Each kind of file that is not a plugin gets its own message, and
    /// the agent's loader and `wasmon plugin inspect` give the same one.
    #[tokio::test]
    async fn the_loader_and_inspect_say_the_same_about_each_non_plugin() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let mut too_new = std::fs::read(fixtures::component("noop")).unwrap();
        too_new[4] = 0x0e;
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("empty", Vec::new(), "empty file (0 bytes)"),
            ("random", vec![0x9c, 0x17, 0xf2, 0x03, 0x55, 0x60, 0x01, 0xaa, 0xd1], "not WebAssembly"),
            ("text", b"hello, this is text\n".to_vec(), "not WebAssembly"),
            ("short", b"\0as".to_vec(), "truncated"),
            ("core", b"\0asm\x01\0\0\0".to_vec(), "a core WebAssembly module, not a component: wrap it with `wasm-tools component new`"),
            ("too-new", too_new, "binary format 0xe, which this wasmon does not read yet"),
            ("too-old", b"\0asm\x0c\0\x01\0".to_vec(), "an older pre-release encoding"),
            (
                "other-world",
                component_of(&["wasi:cli/environment@0.2.0"], &["wasi:cli/run@0.2.0"]),
                "a component for another world, not a wasmon plugin: it exports wasi:cli/run@0.2.0; a plugin exports exactly one of `notify` (receiver)",
            ),
            (
                "exports-nothing",
                wasmon_plugin_tools::contract::encode(b"\0asm\x01\0\0\0").unwrap(),
                "a component for another world, not a wasmon plugin: it exports nothing",
            ),
            (
                "contract-0.2",
                component_of(&["wasmon:plugin/log@0.2.0"], &[]),
                "built against wasmon:plugin@0.2.0 (it imports wasmon:plugin/log@0.2.0), newer than this wasmon",
            ),
        ];
        for (name, bytes, _) in &cases {
            std::fs::write(dir.join(format!("{name}.wasm")), bytes).unwrap();
        }
        let (rt, m) = runtime(dir, &PluginsConfig::default());
        assert_eq!(rt.load_all().await, (0, cases.len()));
        assert_eq!(
            m.plugin_file_reads.get(),
            3,
            "only the files with a component header this wasmon reads are read whole"
        );
        let contract = Contract::embedded().unwrap();
        for (name, bytes, expected) in &cases {
            let agent = rt
                .list()
                .into_iter()
                .find(|p| p.name == *name)
                .and_then(|p| p.error)
                .unwrap_or_else(|| panic!("{name}: no error"));
            assert!(agent.contains(expected), "{name}: the agent says {agent:?}");
            assert!(
                !agent.contains("expected `(`"),
                "{name}: a text parser's error: {agent}"
            );
            let inspect = match contract.inspect(bytes) {
                Err(e) => format!("{e:#}"),
                Ok(i) => i
                    .world_error
                    .unwrap_or_else(|| panic!("{name}: inspect found a world")),
            };
            assert_eq!(agent, inspect, "{name}: the agent and inspect disagree");
        }

        // Over the size limit: refused before reading, naming the setting.
        let small = PluginsConfig {
            max_plugin_size: bytesize::ByteSize::b(1024),
            ..PluginsConfig::default()
        };
        let big = tempfile::tempdir().unwrap();
        std::fs::copy(fixtures::component("noop"), big.path().join("noop.wasm")).unwrap();
        let (rt, m) = runtime(big.path(), &small);
        assert_eq!(rt.load_all().await, (0, 1));
        let error = rt.list()[0].error.clone().unwrap();
        assert!(
            error.contains(
                "over the maximum plugin size of 1024 bytes (`[plugins] max_plugin_size`)"
            ),
            "{error}"
        );
        assert_eq!(m.plugin_file_reads.get(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deleted_and_recreated_directory_is_watched_again() {
        let (keep, dir, rt, m) = watched(&[("p", "noop")]).await;
        let tmp = keep.0.path();
        let h1 = rt.get("p").unwrap().hash.clone();

        std::fs::remove_dir_all(&dir).unwrap();
        wait_until(
            "the missing directory to show",
            Duration::from_secs(30),
            || m.plugins_dir_present.get() == 0,
        )
        .await;
        // Past a re-arm attempt of the backstop: still one warning.
        tokio::time::sleep(watch::REARM_INTERVAL + Duration::from_millis(500)).await;
        let shown = dir.display().to_string();
        assert_eq!(
            log_lines(&["WARN", "cannot read the plugins directory", &shown]),
            1
        );
        assert_eq!(m.plugins_dir_disappearances.get(), 1);
        assert!(
            m.encode().contains("wasmon_plugins_dir_present 0"),
            "{}",
            m.encode()
        );
        // Decided: what was loaded keeps serving while the directory is away.
        assert_eq!(rt.get("p").map(|p| p.hash.clone()), Some(h1.clone()));

        std::fs::create_dir(&dir).unwrap();
        install(
            &dir,
            "p.wasm",
            &std::fs::read(fixtures::component("misbehave")).unwrap(),
        );
        install(
            &dir,
            "q.wasm",
            &std::fs::read(fixtures::component("noop")).unwrap(),
        );
        wait_until(
            "the re-created directory to load",
            Duration::from_secs(30),
            || rt.get("q").is_some() && rt.get("p").is_some_and(|p| p.hash != h1),
        )
        .await;
        assert_eq!(m.plugins_dir_present.get(), 1);
        // Changes inside it are seen again, not only its creation.
        sentinel(&rt, &dir, "t").await;

        // Renamed away and another directory renamed in (a deploy tool's
        // swap): the watch follows the name, not the old inode.
        let next = tmp.join("plugins.next");
        std::fs::create_dir(&next).unwrap();
        std::fs::copy(fixtures::component("noop"), next.join("p.wasm")).unwrap();
        std::fs::rename(&dir, tmp.join("plugins.old")).unwrap();
        std::fs::rename(&next, &dir).unwrap();
        wait_until(
            "the swapped-in directory to load",
            Duration::from_secs(30),
            || rt.get("q").is_none() && rt.get("p").is_some_and(|p| p.hash == h1),
        )
        .await;
        // Changes in the old directory are not ours any more.
        std::fs::copy(fixtures::component("noop"), tmp.join("plugins.old/z.wasm")).unwrap();
        sentinel(&rt, &dir, "s").await;
        assert!(rt.get("z").is_none());
    }

    /// Kubernetes ConfigMap/Secret volumes, as kubelet's AtomicWriter
    /// updates them: the files are symlinks through `..data`, which is
    /// swapped by renaming a new symlink over it; no `*.wasm` name changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kubernetes_volume_update_by_symlink_swap_reloads() {
        use std::os::unix::fs::symlink;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("plugins");
        let v1 = dir.join("..2026_01_01_00_00_00.000000001");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::copy(fixtures::component("noop"), v1.join("p.wasm")).unwrap();
        symlink(v1.file_name().unwrap(), dir.join("..data")).unwrap();
        symlink("..data/p.wasm", dir.join("p.wasm")).unwrap();
        let (rt, m) = runtime(&dir, &PluginsConfig::default());
        assert_eq!(rt.load_all().await, (1, 0));
        let h1 = rt.get("p").unwrap().hash.clone();
        let _watch = start_watch(&rt, &m).await;

        let v2: PathBuf = dir.join("..2026_01_01_00_05_00.000000002");
        std::fs::create_dir(&v2).unwrap();
        std::fs::copy(fixtures::component("misbehave"), v2.join("p.wasm")).unwrap();
        symlink(v2.file_name().unwrap(), dir.join("..data_tmp")).unwrap();
        std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
        std::fs::remove_dir_all(&v1).unwrap();
        wait_until(
            "the swapped version to serve",
            Duration::from_secs(30),
            || rt.get("p").is_some_and(|p| p.hash != h1),
        )
        .await;
        assert!(
            rt.list().iter().all(|p| p.error.is_none()),
            "{:#?}",
            rt.list()
        );

        // The plugins directory itself a symlink, swapped to a new release
        // directory (`ln -sfn`, Capistrano style).
        let rel = tmp.path().join("release-2");
        std::fs::create_dir(&rel).unwrap();
        std::fs::copy(fixtures::component("noop"), rel.join("p.wasm")).unwrap();
        let linked = tmp.path().join("current");
        symlink(&dir, &linked).unwrap();
        let (rt, m) = runtime(&linked, &PluginsConfig::default());
        rt.load_all().await;
        let before = rt.get("p").unwrap().hash.clone();
        let _watch = start_watch(&rt, &m).await;
        symlink(&rel, tmp.path().join("current.tmp")).unwrap();
        std::fs::rename(tmp.path().join("current.tmp"), &linked).unwrap();
        wait_until(
            "the re-pointed directory to load",
            Duration::from_secs(30),
            || rt.get("p").is_some_and(|p| p.hash != before),
        )
        .await;
        sentinel(&rt, &linked, "s").await;
        assert!(rel.join("s.wasm").exists());
    }

    // ---- parallel loading (issue 18) ----

    fn superseded(m: &Metrics) -> u64 {
        m.plugin_loads
            .get_or_create(&ResultLabels {
                result: "superseded".into(),
            })
            .get()
    }

    fn compiling(rt: &PluginRuntime, name: &str) -> bool {
        rt.list()
            .iter()
            .any(|p| p.name == name && p.loading.is_some())
    }

    /// A plugin copied in next to one still compiling serves meanwhile,
    /// and the compiling one, touched while it compiles, is compiled and
    /// reported once. The slow compile is held by the test, not guessed
    /// from a component's size: how long a compile takes depends on what
    /// else the machine runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_small_plugin_serves_while_a_large_one_compiles() {
        let (_keep, dir, rt, m) = watched(&[]).await;
        let hold = rt.hold_compile("a-slow");
        // Named to be looked at first: a one-at-a-time loader would make
        // the small one wait for it.
        install(&dir, "a-slow.wasm", &super::slow_component(2_000));
        wait_until("a-slow to be compiling", Duration::from_secs(30), || {
            compiling(&rt, "a-slow")
        })
        .await;
        install(
            &dir,
            "z-small.wasm",
            &std::fs::read(fixtures::component("noop")).unwrap(),
        );
        wait_until("the small plugin to serve", Duration::from_secs(60), || {
            rt.get("z-small").is_some()
        })
        .await;
        let slow = rt.list().into_iter().find(|p| p.name == "a-slow");
        assert!(
            slow.as_ref()
                .is_some_and(|p| p.loading.is_some() && p.error.is_none() && p.hash.is_none()),
            "the slow one should still be compiling when the small one serves: {slow:#?}"
        );
        // Touched mid-compile: the same content, not compiled again.
        touch(&dir.join("a-slow.wasm"));
        sentinel(&rt, &dir, "s").await;
        assert!(compiling(&rt, "a-slow"), "{:#?}", rt.list());
        drop(hold);
        wait_until(
            "the slow one to be refused",
            Duration::from_secs(120),
            || {
                rt.list()
                    .iter()
                    .any(|p| p.name == "a-slow" && p.error.is_some())
            },
        )
        .await;
        let error = rt.list().into_iter().find(|p| p.name == "a-slow").unwrap();
        assert!(
            error.error.as_deref().unwrap().contains("exports nothing"),
            "{error:#?}"
        );
        settle_and_assert_quiet(&m).await;
        assert_eq!((successes(&m), failures(&m), superseded(&m)), (2, 1, 0));
        let file = dir.join("a-slow.wasm").display().to_string();
        assert_eq!(log_lines(&["ERROR", "rejected plugin file", &file]), 1);
    }

    /// A new version copied over one still compiling wins, whichever
    /// finishes first: the older one is dropped, never installed over it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_newer_version_supersedes_a_compile_in_progress() {
        let (_keep, dir, rt, m) = watched(&[]).await;
        install(&dir, "p.wasm", &super::slow_component(12_000));
        wait_until("p to be compiling", Duration::from_secs(30), || {
            compiling(&rt, "p")
        })
        .await;
        let noop = std::fs::read(fixtures::component("noop")).unwrap();
        install(&dir, "p.wasm", &noop);
        wait_until("the newer p to serve", Duration::from_secs(60), || {
            rt.get("p").is_some()
        })
        .await;
        let newer = rt.get("p").unwrap().hash.clone();
        // The old compile runs to its end in this process (a compiler
        // child would be killed), then is dropped.
        wait_until(
            "the old compile to be dropped",
            Duration::from_secs(120),
            || superseded(&m) == 1,
        )
        .await;
        settle_and_assert_quiet(&m).await;
        assert_eq!(rt.get("p").unwrap().hash, newer);
        assert!(
            rt.list()
                .iter()
                .all(|p| p.error.is_none() && p.loading.is_none()),
            "{:#?}",
            rt.list()
        );
        assert_eq!((successes(&m), failures(&m)), (1, 0));
    }
}

/// A component that takes Cranelift seconds to compile and is not a
/// plugin (it exports nothing, so it is refused once compiled): one
/// function of `blocks` small blocks, each a conditional exit and some
/// arithmetic over 32 locals. Register allocation is superlinear in the
/// blocks of one function (12,000 blocks: ~200 KB, several seconds), and
/// one function keeps wasmtime's parallel compilation to one core, so a
/// test measures the agent's scheduling, not the machine's core count.
fn slow_component(blocks: u32) -> Vec<u8> {
    fn leb(out: &mut Vec<u8>, mut v: u32) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(out: &mut Vec<u8>, id: u8, body: &[u8]) {
        out.push(id);
        leb(out, body.len() as u32);
        out.extend_from_slice(body);
    }
    const LOCALS: u32 = 32;
    const GET: u8 = 0x20;
    const SET: u8 = 0x21;
    // One run of 32 i32 locals.
    let mut body = vec![1, LOCALS as u8, 0x7f];
    for j in 0..blocks {
        // block; br_if 0 (local x); local a = (local b + local c) * local d; end
        body.extend([0x02, 0x40, GET, ((j * 5 + 2) % LOCALS) as u8, 0x0d, 0x00]);
        body.extend([
            GET,
            (j % LOCALS) as u8,
            GET,
            ((j * 7 + 3) % LOCALS) as u8,
            0x6a,
        ]);
        body.extend([GET, ((j * 11 + 5) % LOCALS) as u8, 0x6c]);
        body.extend([SET, ((j * 13 + 1) % LOCALS) as u8, 0x0b]);
    }
    body.extend([GET, 0, 0x0b]);
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    // type 0: () -> i32; one function of it; its code.
    section(&mut module, 1, &[1, 0x60, 0, 1, 0x7f]);
    section(&mut module, 3, &[1, 0]);
    let mut code = vec![1];
    leb(&mut code, body.len() as u32);
    code.extend_from_slice(&body);
    section(&mut module, 10, &code);
    wasmon_plugin_tools::contract::encode(&module).unwrap()
}
