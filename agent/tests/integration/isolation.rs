//! A guest that loops, one that allocates without bound, one that traps and
//! one that calls a host outside its allow-list each fail only their own
//! call, with a clear error, while other plugins keep serving.

use crate::fixtures;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmon::alerting::message::WebhookMessage;
use wasmon::config::hosts::HostPattern;
use wasmon::config::PluginsConfig;
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
        http: None,
    }
}

async fn runtime() -> (tempfile::TempDir, Arc<PluginRuntime>, Arc<Metrics>) {
    let dir = tempfile::tempdir().unwrap();
    fixtures::copy_components(dir.path(), &["noop", "misbehave"]);
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
    wasmon::plugins::notifier::wit_notification(&WebhookMessage::test_message(
        "test",
        "http://localhost",
        "2026-01-01T00:00:00Z",
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_guests_fail_only_their_own_call() {
    let _heavy = fixtures::heavy();
    let (_dir, rt, metrics) = runtime().await;
    let server = fixtures::Receiver::start().await;
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
    let _heavy = fixtures::heavy();
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
    let _heavy = fixtures::heavy();
    let (_dir, rt, _) = runtime().await;
    let server = fixtures::Receiver::start().await;
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

// ---- failure policy (issue 18) ----

mod failure_policy {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use arc_swap::ArcSwap;
    use chrono::{DateTime, Utc};
    use futures::future::BoxFuture;
    use wasmon::alerting::config::AlertingConfig;
    use wasmon::alerting::dispatch::{Dispatcher, Notifier, NotifyError, ReceiverSettings, Shared};
    use wasmon::alerting::message::WebhookMessage;
    use wasmon::alerting::nflog::NotificationLog;
    use wasmon::alerting::silence::{Silences, DEFAULT_RETENTION};
    use wasmon::alerting::types::{AlertStore, PostableAlert};
    use wasmon::clock::{Clock, ManualClock};
    use wasmon::plugins::circuit::State;
    use wasmon::plugins::notifier::PluginNotifier;
    use wasmon::plugins::CallError;
    use wasmon::selfmetrics::{CallLabels, Metrics};

    use super::{instance, notification, runtime};

    /// A sleep in progress: its id and when it ends.
    type Sleep = (u64, DateTime<Utc>);
    /// A notify attempt: receiver, ms since t0, outcome.
    type Attempt = (String, i64, Result<(), NotifyError>);

    /// The dispatcher's manual clock, which also knows who sleeps on it:
    /// the driver advances time only once every flush task is either done
    /// or waiting for a later time, so each plugin call happens at a known
    /// moment however long it takes for real.
    struct TestClock {
        manual: Arc<ManualClock>,
        /// Wake-up times of the sleeps in progress.
        sleeps: Arc<Mutex<Vec<Sleep>>>,
        next: AtomicUsize,
    }

    impl Clock for TestClock {
        fn now(&self) -> DateTime<Utc> {
            self.manual.now()
        }
        fn sleep_until(&self, t: DateTime<Utc>) -> BoxFuture<'static, ()> {
            let id = self.next.fetch_add(1, Ordering::Relaxed) as u64;
            self.sleeps.lock().unwrap().push((id, t));
            let (sleep, sleeps) = (self.manual.sleep_until(t), self.sleeps.clone());
            Box::pin(async move {
                sleep.await;
                sleeps.lock().unwrap().retain(|(i, _)| *i != id);
            })
        }
    }

    /// Counts notify calls in flight and records each one's outcome.
    struct Counting {
        inner: Arc<PluginNotifier>,
        clock: Arc<TestClock>,
        in_flight: Arc<AtomicUsize>,
        log: Arc<Mutex<Vec<Attempt>>>,
    }

    impl Notifier for Counting {
        fn notify(
            &self,
            receiver: &str,
            msg: WebhookMessage,
        ) -> BoxFuture<'static, Result<(), NotifyError>> {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let fut = self.inner.notify(receiver, msg);
            let (in_flight, log, clock) =
                (self.in_flight.clone(), self.log.clone(), self.clock.clone());
            let receiver = receiver.to_string();
            Box::pin(async move {
                let r = fut.await;
                let at = (clock.now() - t0()).num_milliseconds();
                log.lock().unwrap().push((receiver, at, r.clone()));
                in_flight.fetch_sub(1, Ordering::SeqCst);
                r
            })
        }
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-05T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const ROUTES: &str = r#"
route:
  receiver: fast
  group_by: [alertname]
  group_wait: 0s
  group_interval: 5m
  repeat_interval: 4h
  routes:
  - matchers: [alertname=~".+"]
    receiver: looping
    continue: true
  - matchers: [alertname=~".+"]
    receiver: refusing
    continue: true
  - matchers: [alertname=~".+"]
    receiver: fast
"#;

    fn calls(m: &Metrics, inst: &str, result: &str) -> u64 {
        m.plugin_calls
            .get_or_create(&CallLabels {
                plugin: "misbehave".into(),
                instance: inst.into(),
                result: result.into(),
            })
            .get()
    }

    /// A receiver that loops until its deadline, one that fails
    /// permanently and a fast one, side by side for 20 minutes of group
    /// intervals on a manual clock. The looping one's circuit opens and
    /// backs off (a handful of calls instead of a dozen per interval); the
    /// permanent failure is called once per notification; the fast one
    /// delivers every new notification on its first attempt.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_looping_receiver_backs_off_and_a_permanent_failure_is_called_once() {
        let _heavy = crate::fixtures::heavy();
        let (_dir, rt, metrics) = runtime().await;
        let clock = Arc::new(TestClock {
            manual: ManualClock::new(t0()),
            sleeps: Arc::default(),
            next: AtomicUsize::new(0),
        });
        rt.set_clock(clock.clone());
        let t = Duration::from_secs(5);
        let receivers: BTreeMap<String, wasmon::plugins::Instance> = [
            instance(
                "looping",
                "misbehave",
                serde_json::json!({"mode": "loop"}),
                &[],
                Duration::from_millis(100),
            ),
            instance(
                "refusing",
                "misbehave",
                serde_json::json!({"mode": "fail-permanent"}),
                &[],
                t,
            ),
            instance(
                "fast",
                "misbehave",
                serde_json::json!({"mode": "ok"}),
                &[],
                t,
            ),
        ]
        .into_iter()
        .map(|i| (i.name.to_string(), i))
        .collect();
        let counting = Arc::new(Counting {
            inner: Arc::new(PluginNotifier {
                plugins: rt.clone(),
                receivers: ArcSwap::from_pointee(receivers),
                groups: Default::default(),
            }),
            clock: clock.clone(),
            in_flight: Arc::default(),
            log: Arc::default(),
        });
        let shared = Shared {
            alerts: Arc::new(AlertStore::new()),
            silences: Arc::new(Silences::in_memory(DEFAULT_RETENTION)),
            nflog: Arc::new(NotificationLog::in_memory(DEFAULT_RETENTION)),
            notifier: counting.clone(),
            clock: clock.clone(),
            oncall: Arc::new(wasmon::incident::Incidents::in_memory()),
        };
        let settings: HashMap<String, ReceiverSettings> = ["looping", "refusing", "fast"]
            .into_iter()
            .map(|r| (r.to_string(), ReceiverSettings::default()))
            .collect();
        let cfg: AlertingConfig = serde_norway::from_str(ROUTES).unwrap();
        let d = Dispatcher::new(&cfg, settings, "http://wasmon", shared).unwrap();

        let alert = |instance: &str| PostableAlert {
            labels: [("alertname", "Down"), ("instance", instance)]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Default::default()
        };
        let mut firing: Vec<String> = Vec::new();
        let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        // A new alert at 0 and 10 min (new notifications), the same ones
        // again at 5 and 15 min; refreshed every minute as rules do.
        for second in 0..1200i64 {
            if second % 600 == 0 {
                firing.push(format!("i{second}"));
            }
            if second % 60 == 0 {
                d.put_alerts(firing.iter().map(|i| alert(i)).collect())
                    .unwrap();
            }
            tasks.extend(d.start_due());
            // Quiet: no call running, every unfinished flush asleep until later.
            let real = std::time::Instant::now();
            loop {
                tasks.retain(|h| !h.is_finished());
                let now = clock.now();
                let asleep = clock
                    .sleeps
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(_, t)| *t > now)
                    .count();
                if counting.in_flight.load(Ordering::SeqCst) == 0 && tasks.len() == asleep {
                    break;
                }
                assert!(real.elapsed() < Duration::from_secs(60), "flushes stuck");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            clock.manual.advance(Duration::from_secs(1));
        }

        let log = std::mem::take(&mut *counting.log.lock().unwrap());
        let of = |r: &str| -> Vec<(i64, Result<(), NotifyError>)> {
            log.iter()
                .filter(|(x, _, _)| x == r)
                .map(|(_, at, res)| (*at, res.clone()))
                .collect()
        };
        // The fast receiver: each new notification at its flush, first try.
        assert_eq!(
            of("fast"),
            vec![(0, Ok(())), (600_000, Ok(()))],
            "the fast receiver's deliveries changed"
        );
        // The permanent failure: called once per notification, then
        // refused without running at the next flushes of the same one.
        assert_eq!(calls(&metrics, "refusing", "permanent"), 2, "{log:#?}");
        let refusing = of("refusing");
        assert_eq!(refusing.len(), 4, "{refusing:#?}");
        assert!(
            refusing
                .iter()
                .all(|(_, r)| r.as_ref().is_err_and(|e| !e.retryable)),
            "{refusing:#?}"
        );
        assert!(
            refusing[1]
                .1
                .as_ref()
                .unwrap_err()
                .message
                .contains("not called again"),
            "{refusing:#?}"
        );
        // The looping one: 4 flushes with up to 11 attempts each without
        // a breaker; with it, a probe per backoff (30 s, 1, 2, 4, 5 min...).
        let ran = calls(&metrics, "looping", "timeout");
        let attempts = of("looping").len() as u64;
        eprintln!("looping receiver over 20 min: {attempts} attempts, {ran} ran");
        assert!(
            (3..=8).contains(&ran),
            "{ran} looping calls ran in 20 min ({attempts} attempts)"
        );
        assert!(attempts > ran + 10, "{attempts} attempts, {ran} ran");
        let short = metrics
            .plugin_short_circuited
            .get_or_create(&CallLabels {
                plugin: "misbehave".into(),
                instance: "looping".into(),
                result: "circuit_open".into(),
            })
            .get();
        assert_eq!(short, attempts - ran);
        let text = metrics.encode();
        assert!(
            text.contains(
                "wasmon_plugin_circuit_state{plugin=\"misbehave\",instance=\"looping\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("wasmon_plugin_circuit_state{plugin=\"misbehave\",instance=\"fast\"} 0"),
            "{text}"
        );
        let status = rt
            .list()
            .into_iter()
            .find(|p| p.name == "misbehave")
            .unwrap();
        let looping = status
            .instances
            .iter()
            .find(|i| i.instance == "looping")
            .unwrap();
        assert_eq!(looping.state, State::Open);
        assert_eq!(looping.short_circuited, short);
        assert!(
            looping.last_error.as_deref().unwrap().contains("timed out"),
            "{looping:?}"
        );

        // A manual test is let through while the circuit is open (and
        // closes it when the receiver answers).
        let r = rt
            .notify_with(
                &instance(
                    "looping",
                    "misbehave",
                    serde_json::json!({"mode": "loop"}),
                    &[],
                    Duration::from_millis(100),
                ),
                &notification(),
                wasmon::plugins::Policy::Manual,
            )
            .await;
        assert_eq!(
            r.unwrap_err(),
            CallError::Timeout(Duration::from_millis(100))
        );
        assert_eq!(calls(&metrics, "looping", "timeout"), ran + 1);
    }
}
