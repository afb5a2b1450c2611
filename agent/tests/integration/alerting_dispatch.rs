//! Dispatcher timelines on a manual clock: group_wait, group_interval,
//! repeat_interval, resolved notifications, silences, inhibition, time
//! intervals, retries, and a restart that must not resend.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use wasmon::alerting::config::AlertingConfig;
use wasmon::alerting::dispatch::{Dispatcher, Notifier, NotifyError, ReceiverSettings, Shared};
use wasmon::alerting::matcher::ApiMatcher;
use wasmon::alerting::message::WebhookMessage;
use wasmon::alerting::nflog::NotificationLog;
use wasmon::alerting::notify::{Context, MultiStage, Parts, Pipeline, Stage, StageError};
use wasmon::alerting::silence::{Silence, Silences, DEFAULT_RETENTION};
use wasmon::alerting::types::{Alert, AlertStore, PostableAlert};
use wasmon::clock::{Clock, ManualClock};

#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(DateTime<Utc>, String, WebhookMessage)>>,
    /// Failures to return before succeeding (retryable).
    fail_next: Mutex<usize>,
    clock: Mutex<Option<Arc<ManualClock>>>,
}

impl Notifier for Recorder {
    fn notify(
        &self,
        receiver: &str,
        msg: WebhookMessage,
    ) -> BoxFuture<'static, Result<(), NotifyError>> {
        let mut f = self.fail_next.lock();
        if *f > 0 {
            *f -= 1;
            return Box::pin(async { Err(NotifyError::retryable("503")) });
        }
        let now = self.clock.lock().as_ref().unwrap().now();
        self.sent.lock().push((now, receiver.to_string(), msg));
        Box::pin(async { Ok(()) })
    }
}

impl Recorder {
    fn take(&self) -> Vec<(DateTime<Utc>, String, WebhookMessage)> {
        std::mem::take(&mut *self.sent.lock())
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-03T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

const CONFIG: &str = r#"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
  - matchers: [severity="page"]
    receiver: pager
    group_wait: 10s
    continue: true
  - matchers: [severity="page"]
    receiver: team
    group_by: [alertname, severity]
  - matchers: [muted="yes"]
    receiver: team
    mute_time_intervals: [always]
inhibit_rules:
- source_matchers: [alertname="NodeDown"]
  target_matchers: [alertname="ServiceDown"]
  equal: [node]
time_intervals:
- name: always
  time_intervals: [{}]
"#;

struct Env {
    clock: Arc<ManualClock>,
    rec: Arc<Recorder>,
    shared: Shared,
    d: Dispatcher,
}

fn env_with(nflog: Arc<NotificationLog>, alerts: Arc<AlertStore>, clock: Arc<ManualClock>) -> Env {
    env_config(CONFIG, nflog, alerts, clock)
}

fn env_config(
    config: &str,
    nflog: Arc<NotificationLog>,
    alerts: Arc<AlertStore>,
    clock: Arc<ManualClock>,
) -> Env {
    env_pipeline(config, nflog, alerts, clock, Pipeline::standard)
}

/// An env whose dispatcher runs the pipeline `build` makes.
fn env_pipeline(
    config: &str,
    nflog: Arc<NotificationLog>,
    alerts: Arc<AlertStore>,
    clock: Arc<ManualClock>,
    build: impl FnOnce(&Parts) -> Pipeline,
) -> Env {
    let rec = Arc::new(Recorder::default());
    *rec.clock.lock() = Some(clock.clone());
    let cfg: AlertingConfig = serde_norway::from_str(config).unwrap();
    let shared = Shared {
        alerts,
        silences: Arc::new(Silences::in_memory(DEFAULT_RETENTION)),
        nflog,
        notifier: rec.clone(),
        clock: clock.clone(),
        oncall: Arc::new(wasmon::incident::Incidents::in_memory()),
    };
    let receivers: HashMap<String, ReceiverSettings> = [
        ("team".to_string(), ReceiverSettings::default()),
        (
            "pager".to_string(),
            ReceiverSettings {
                send_resolved: false,
                max_alerts: 0,
            },
        ),
    ]
    .into();
    let d = Dispatcher::with_pipeline(&cfg, receivers, "http://wasmon:9093", shared.clone(), build)
        .unwrap();
    Env {
        clock,
        rec,
        shared,
        d,
    }
}

fn env() -> Env {
    env_with(
        Arc::new(NotificationLog::in_memory(DEFAULT_RETENTION)),
        Arc::new(AlertStore::new()),
        ManualClock::new(t0()),
    )
}

fn alert(pairs: &[(&str, &str)]) -> PostableAlert {
    PostableAlert {
        labels: pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        ..Default::default()
    }
}

fn resolved(pairs: &[(&str, &str)], at: DateTime<Utc>) -> PostableAlert {
    PostableAlert {
        ends_at: Some(at),
        ..alert(pairs)
    }
}

impl Env {
    /// Advance to t0 + `secs` one second at a time, flushing whatever is
    /// due at each step (what `run` would do).
    async fn at(&self, secs: i64) {
        while self.clock.now() < t0() + chrono::Duration::seconds(secs) {
            self.clock.advance(Duration::from_secs(1));
            self.d.flush_due().await;
        }
    }
    /// Re-send firing alerts like a rule evaluator would (keeps them alive).
    fn refresh(&self, pairs: &[&[(&str, &str)]]) {
        self.d
            .put_alerts(pairs.iter().map(|p| alert(p)).collect())
            .unwrap();
    }
    fn since_t0(&self, t: DateTime<Utc>) -> i64 {
        (t - t0()).num_seconds()
    }
}

const A: &[(&str, &str)] = &[("alertname", "HighLatency"), ("instance", "a")];
const B: &[(&str, &str)] = &[("alertname", "HighLatency"), ("instance", "b")];

#[tokio::test]
async fn group_wait_interval_repeat_and_resolve() {
    let e = env();
    e.refresh(&[A]);
    e.at(29).await;
    assert!(e.rec.take().is_empty(), "nothing before group_wait");
    e.at(30).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    let (when, rcv, msg) = &sent[0];
    assert_eq!(e.since_t0(*when), 30);
    assert_eq!(rcv, "team");
    assert_eq!(msg.group_key, r#"{}:{alertname="HighLatency"}"#);
    assert_eq!(msg.status, "firing");
    assert_eq!(msg.alerts.len(), 1);
    assert_eq!(msg.group_labels["alertname"], "HighLatency");
    assert_eq!(msg.external_url, "http://wasmon:9093");

    // B joins at 1m: sent at the next group_interval (30s + 5m), not before.
    e.at(60).await;
    e.refresh(&[A, B]);
    e.at(329).await;
    assert!(e.rec.take().is_empty());
    e.at(330).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2.alerts.len(), 2);
    assert_eq!(sent[0].2.common_labels.len(), 1);

    // Nothing changes: silence until repeat_interval after the last send.
    let repeat_at = 330 + 4 * 3600;
    let mut s = 330;
    while s + 240 < repeat_at {
        s += 240;
        e.refresh(&[A, B]); // keep them firing (resolve_timeout 5m)
        e.at(s).await;
    }
    assert!(e.rec.take().is_empty(), "no resend before repeat_interval");
    e.refresh(&[A, B]);
    e.at(repeat_at).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1, "repeat after exactly 4h (a multiple of 5m)");
    assert_eq!(e.since_t0(sent[0].0), repeat_at);

    // Resolve A: the next group_interval sends it as resolved.
    let now = e.clock.now();
    e.d.put_alerts(vec![resolved(A, now), alert(B)]).unwrap();
    e.at(repeat_at + 299).await;
    assert!(e.rec.take().is_empty());
    e.refresh(&[B]);
    e.at(repeat_at + 300).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    let msg = &sent[0].2;
    assert_eq!(msg.status, "firing");
    let statuses: Vec<&str> = msg.alerts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(statuses, ["resolved", "firing"]);
    assert_ne!(msg.alerts[0].ends_at, "0001-01-01T00:00:00Z");

    // The resolved alert is forgotten by the group after that flush.
    let g = e.d.groups();
    assert_eq!(g.len(), 1);
    assert_eq!(g[0].alerts.len(), 1);

    // B times out (no refresh for resolve_timeout): one resolved message,
    // then the group is gone.
    e.at(repeat_at + 300 + 600).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2.status, "resolved");
    assert!(e.d.groups().is_empty());
}

#[tokio::test]
async fn continue_routes_and_send_resolved_false() {
    let e = env();
    let p: &[(&str, &str)] = &[("alertname", "Disk"), ("severity", "page")];
    e.refresh(&[p]);
    e.at(10).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, "pager");
    assert_eq!(
        sent[0].2.group_key,
        r#"{}/{severity="page"}:{alertname="Disk"}"#
    );
    e.at(30).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1, "continue: the next matching sibling too");
    assert_eq!(sent[0].1, "team");
    assert_eq!(
        sent[0].2.group_key,
        r#"{}/{severity="page"}:{alertname="Disk", severity="page"}"#
    );
    // Resolve: team (send_resolved) is told, pager is not.
    let now = e.clock.now();
    e.d.put_alerts(vec![resolved(p, now)]).unwrap();
    e.at(330).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, "team");
    assert_eq!(sent[0].2.status, "resolved");
}

#[tokio::test]
async fn silences_inhibition_and_time_intervals() {
    let e = env();
    // A silence for instance=b.
    let id = e
        .shared
        .silences
        .set(
            Silence {
                id: String::new(),
                matchers: vec![ApiMatcher {
                    name: "instance".into(),
                    value: "b".into(),
                    is_regex: false,
                    is_equal: true,
                }],
                starts_at: t0(),
                ends_at: t0() + chrono::Duration::hours(1),
                updated_at: t0(),
                created_by: "test".into(),
                comment: "maintenance".into(),
            },
            t0(),
        )
        .unwrap();
    let node: &[(&str, &str)] = &[("alertname", "NodeDown"), ("node", "n1")];
    let svc1: &[(&str, &str)] = &[("alertname", "ServiceDown"), ("node", "n1")];
    let svc2: &[(&str, &str)] = &[("alertname", "ServiceDown"), ("node", "n2")];
    let muted: &[(&str, &str)] = &[("alertname", "Quiet"), ("muted", "yes")];
    e.refresh(&[A, B, node, svc1, svc2, muted]);
    e.at(30).await;
    let mut sent = e.rec.take();
    sent.sort_by(|a, b| a.2.group_key.cmp(&b.2.group_key));
    let keys: Vec<(&str, usize)> = sent
        .iter()
        .map(|(_, _, m)| (m.group_key.as_str(), m.alerts.len()))
        .collect();
    assert_eq!(
        keys,
        [
            (r#"{}:{alertname="HighLatency"}"#, 1),
            (r#"{}:{alertname="NodeDown"}"#, 1),
            (r#"{}:{alertname="ServiceDown"}"#, 1),
        ],
        "B silenced, ServiceDown on n1 inhibited, Quiet muted by time"
    );
    let svc = &sent[2].2;
    assert_eq!(svc.alerts[0].labels["node"], "n2");
    let marks =
        e.d.marks(&wasmon::model::Labels::from_pairs(B.iter().copied()));
    assert_eq!(marks.silenced_by, vec![id.clone()]);
    // Expire the silence: B is sent at the next interval.
    e.shared.silences.expire(&id, e.clock.now()).unwrap();
    e.at(329).await;
    e.refresh(&[A, B, node, svc1, svc2, muted]);
    e.at(330).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2.alerts.len(), 2);
}

#[tokio::test]
async fn retries_with_backoff_within_group_interval() {
    let e = env();
    *e.rec.fail_next.lock() = 3;
    e.refresh(&[A]);
    e.at(29).await;
    e.clock.advance(Duration::from_secs(1));
    // Start the flush without waiting for it: it will sleep on the backoff.
    let handles = e.d.start_due();
    assert_eq!(handles.len(), 1);
    for _ in 0..20 {
        for _ in 0..5 {
            tokio::task::yield_now().await;
        }
        e.clock.advance(Duration::from_millis(500));
    }
    for h in handles {
        h.await.unwrap();
    }
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1, "sent after 3 retryable failures");
    // 500ms + 1s + 2s of backoff.
    let delay = sent[0].0 - (t0() + chrono::Duration::seconds(30));
    assert!(delay >= chrono::Duration::milliseconds(3500), "{delay}");
    assert!(delay < chrono::Duration::seconds(5), "{delay}");
}

#[tokio::test]
async fn restart_does_not_resend_within_repeat_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nflog.json");
    let clock = ManualClock::new(t0());
    let store = Arc::new(AlertStore::new());
    let e = env_with(
        Arc::new(NotificationLog::open(&path, DEFAULT_RETENTION).unwrap()),
        store.clone(),
        clock.clone(),
    );
    e.refresh(&[A]);
    e.at(30).await;
    assert_eq!(e.rec.take().len(), 1);
    e.d.maintenance(); // writes the snapshot
    drop(e);

    // "Restart": a new log from the file, a new dispatcher; the alert store
    // is rebuilt from the rule engine re-sending.
    let e = env_with(
        Arc::new(NotificationLog::open(&path, DEFAULT_RETENTION).unwrap()),
        Arc::new(AlertStore::new()),
        clock.clone(),
    );
    e.refresh(&[A]);
    let base = e.since_t0(e.clock.now());
    e.at(base + 30).await;
    assert!(e.rec.take().is_empty(), "already notified: dedup via nflog");
    // A new alert in the group is sent.
    e.refresh(&[A, B]);
    e.at(base + 30 + 300).await;
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2.alerts.len(), 2);
    let _ = store;
}

/// Two groups whose label sets have the same fingerprint (FNV-64a, found
/// by a collision search) stay two groups: the dispatcher once keyed its
/// groups by that hash, so the second alert joined the first one's group
/// and was notified under the other's group labels.
#[tokio::test]
async fn groups_whose_fingerprints_collide_stay_apart() {
    let (x, y) = ("60535023dc3c792e", "531d463aafd37b7c");
    let fp = |v: &str| {
        wasmon::alerting::types::fingerprint(&wasmon::model::Labels::from_pairs([("g", v)]))
    };
    assert_eq!(fp(x), fp(y), "the two group label sets collide");
    let e = env_config(
        "route:\n  receiver: team\n  group_by: [g]\n  group_wait: 30s\n  group_interval: 5m\n",
        Arc::new(NotificationLog::in_memory(DEFAULT_RETENTION)),
        Arc::new(AlertStore::new()),
        ManualClock::new(t0()),
    );
    e.refresh(&[
        &[("alertname", "A"), ("g", x)],
        &[("alertname", "B"), ("g", y)],
    ]);
    assert_eq!(e.d.groups().len(), 2);
    e.at(30).await;
    let mut sent: Vec<(String, Vec<String>)> = e
        .rec
        .take()
        .into_iter()
        .map(|(_, _, m)| {
            let names = m
                .alerts
                .iter()
                .map(|a| a.labels["alertname"].clone())
                .collect();
            (m.group_labels["g"].clone(), names)
        })
        .collect();
    sent.sort();
    assert_eq!(
        sent,
        [
            (y.to_string(), vec!["B".to_string()]),
            (x.to_string(), vec!["A".to_string()]),
        ]
    );
}

/// A stage a test puts in front of the flush pipeline: notes what each
/// flush ran for and drops the alerts labelled `drop="yes"`.
#[derive(Default)]
struct Dropper {
    seen: Mutex<Vec<Seen>>,
}

/// What a flush ran for: group key, receiver, repeat interval, time, and
/// how many alerts it had.
type Seen = (String, String, Duration, DateTime<Utc>, usize);

impl Stage for Dropper {
    fn exec<'a>(
        &'a self,
        ctx: &'a mut Context,
        mut alerts: Vec<Alert>,
    ) -> BoxFuture<'a, Result<Vec<Alert>, StageError>> {
        self.seen.lock().push((
            ctx.group_key.clone(),
            ctx.receiver.clone(),
            ctx.repeat_interval,
            ctx.now,
            alerts.len(),
        ));
        alerts.retain(|a| a.labels.get("drop") != Some("yes"));
        Box::pin(async move { Ok(alerts) })
    }
}

#[tokio::test]
async fn an_injected_stage_runs_in_the_flush_pipeline() {
    let dropper = Arc::new(Dropper::default());
    let stage = dropper.clone();
    let e = env_pipeline(
        CONFIG,
        Arc::new(NotificationLog::in_memory(DEFAULT_RETENTION)),
        Arc::new(AlertStore::new()),
        ManualClock::new(t0()),
        |parts| {
            let standard = Pipeline::standard(parts);
            Pipeline {
                flush: Arc::new(MultiStage(vec![stage, standard.flush.clone()])),
                ..standard
            }
        },
    );
    let dropped = [
        ("alertname", "HighLatency"),
        ("instance", "c"),
        ("drop", "yes"),
    ];
    e.d.put_alerts(vec![alert(A), alert(&dropped)]).unwrap();
    e.at(30).await;
    let seen = std::mem::take(&mut *dropper.seen.lock());
    assert_eq!(
        seen,
        vec![(
            r#"{}:{alertname="HighLatency"}"#.to_string(),
            "team".to_string(),
            Duration::from_secs(4 * 3600),
            t0() + chrono::Duration::seconds(30),
            2
        )]
    );
    let sent = e.rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].2.alerts.len(), 1, "the stage dropped one alert");
    assert_eq!(sent[0].2.alerts[0].labels["instance"], "a");
}

/// A route muted by an interval in Europe/Berlin (UTC+1 in January) is
/// muted from 22:00 to midnight Berlin time — 21:00 to 23:00 UTC — and
/// notifies at the first group flush after that, not by UTC's clock.
#[tokio::test]
async fn a_time_interval_in_a_named_zone_mutes_by_that_zone() {
    let config = r#"
route:
  receiver: team
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
  - matchers: [team="berlin"]
    receiver: team
    mute_time_intervals: [berlin-evenings]
time_intervals:
- name: berlin-evenings
  time_intervals:
  - times: [{start_time: '22:00', end_time: '24:00'}]
    location: Europe/Berlin
"#;
    let start = DateTime::parse_from_rfc3339("2024-01-03T21:00:30Z")
        .unwrap()
        .with_timezone(&Utc);
    let clock = ManualClock::new(start);
    let e = env_config(
        config,
        Arc::new(NotificationLog::in_memory(DEFAULT_RETENTION)),
        Arc::new(AlertStore::new()),
        clock.clone(),
    );
    let berlin: &[(&str, &str)] = &[("alertname", "Late"), ("team", "berlin")];
    let end = start + chrono::Duration::hours(2) + chrono::Duration::minutes(5);
    let mut sent = Vec::new();
    while clock.now() < end {
        // Re-sent every minute as a rule evaluator would (resolve_timeout 5m).
        if (clock.now() - start).num_seconds() % 60 == 0 {
            e.refresh(&[berlin]);
        }
        clock.advance(Duration::from_secs(1));
        e.d.flush_due().await;
        sent.extend(e.rec.take());
    }
    let times: Vec<String> = sent.iter().map(|(t, _, _)| t.to_rfc3339()).collect();
    // Flushes run at 21:01:00Z and every 5 minutes after; 23:01:00Z is the
    // first one past Berlin's midnight (23:00Z).
    assert_eq!(times, ["2024-01-03T23:01:00+00:00"]);
    assert_eq!(sent[0].2.alerts[0].labels["team"], "berlin");
}
