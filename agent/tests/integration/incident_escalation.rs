//! Escalation and acks on a manual clock: each step runs exactly its delay
//! after the group's first page attempt (not a second before), whether or
//! not the primary took it; an ack holds the pending steps and the repeats,
//! an ack's expiry and an unack resume them (the overdue step at once, the
//! later ones keeping their spacing), a config reload carries them over, a
//! resolution cancels them; the incident timeline records it all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use wasmon::alerting::config::AlertingConfig;
use wasmon::alerting::dispatch::{Dispatcher, Notifier, NotifyError, ReceiverSettings, Shared};
use wasmon::alerting::message::WebhookMessage;
use wasmon::alerting::nflog::NotificationLog;
use wasmon::alerting::silence::{Silences, DEFAULT_RETENTION};
use wasmon::alerting::types::{AlertStore, PostableAlert};
use wasmon::clock::{Clock, ManualClock};
use wasmon::incident::Incidents;

#[derive(Default)]
struct Recorder {
    /// Every attempt, failed or not.
    sent: Mutex<Vec<(i64, String, String)>>,
    clock: Mutex<Option<Arc<ManualClock>>>,
    /// Receivers that refuse every notification (permanently, so no retry
    /// waits on the manual clock inside a flush).
    down: Mutex<Vec<String>>,
}

impl Notifier for Recorder {
    fn notify(
        &self,
        receiver: &str,
        msg: WebhookMessage,
    ) -> BoxFuture<'static, Result<(), NotifyError>> {
        let now = self.clock.lock().as_ref().unwrap().now();
        self.sent
            .lock()
            .push(((now - t0()).num_seconds(), receiver.to_string(), msg.status));
        if self.down.lock().iter().any(|r| r == receiver) {
            return Box::pin(async { Err(NotifyError::permanent("HTTP 500: down")) });
        }
        Box::pin(async { Ok(()) })
    }
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-01-03T12:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + chrono::Duration::seconds(secs)
}

// Primary is the route's receiver; repeats every 2m while unacked.
const CONFIG: &str = r#"
route:
  receiver: primary
  group_by: [alertname]
  group_wait: 30s
  group_interval: 1m
  repeat_interval: 2m
  escalation:
  - {receiver: secondary, delay: 5m}
  - {receiver: manager, delay: 15m}
  routes:
  - matchers: [team="quiet"]
    receiver: primary
    escalation: []
"#;

struct Env {
    clock: Arc<ManualClock>,
    rec: Arc<Recorder>,
    incidents: Arc<Incidents>,
    shared: Shared,
    d: Dispatcher,
}

fn receivers() -> HashMap<String, ReceiverSettings> {
    ["primary", "secondary", "manager"]
        .iter()
        .map(|r| (r.to_string(), ReceiverSettings::default()))
        .collect()
}

fn env() -> Env {
    let clock = ManualClock::new(t0());
    let rec = Arc::new(Recorder::default());
    *rec.clock.lock() = Some(clock.clone());
    let cfg: AlertingConfig = serde_norway::from_str(CONFIG).unwrap();
    let incidents = Arc::new(Incidents::in_memory());
    let shared = Shared {
        alerts: Arc::new(AlertStore::new()),
        silences: Arc::new(Silences::in_memory(DEFAULT_RETENTION)),
        nflog: Arc::new(NotificationLog::in_memory(DEFAULT_RETENTION)),
        notifier: rec.clone(),
        clock: clock.clone(),
        oncall: incidents.clone(),
    };
    let d = Dispatcher::new(&cfg, receivers(), "http://wasmon", shared.clone()).unwrap();
    Env {
        clock,
        rec,
        incidents,
        shared,
        d,
    }
}

const KEY: &str = r#"{}:{alertname="Down"}"#;

fn alert(ends: Option<i64>) -> PostableAlert {
    PostableAlert {
        labels: [("alertname".to_string(), "Down".to_string())].into(),
        starts_at: Some(t0()),
        ends_at: Some(at(ends.unwrap_or(36_000))),
        ..Default::default()
    }
}

impl Env {
    /// A config reload, as the agent does it: a new dispatcher on the same
    /// stores takes over from the running one.
    fn reload(&mut self, config: &str) {
        let cfg: AlertingConfig = serde_norway::from_str(config).unwrap();
        let d = Dispatcher::new(&cfg, receivers(), "http://wasmon", self.shared.clone()).unwrap();
        d.take_over(&self.d);
        self.d = d;
    }
    /// Advance to t0 + `secs` one second at a time, flushing what is due
    /// at each step (what `run` does).
    async fn until(&self, secs: i64) {
        while self.clock.now() < at(secs) {
            self.clock.advance(Duration::from_secs(1));
            self.d.flush_due().await;
        }
    }
    /// (seconds since t0, receiver) of the sends to `receiver`.
    fn sent_to(&self, receiver: &str) -> Vec<i64> {
        self.rec
            .sent
            .lock()
            .iter()
            .filter(|(_, r, _)| r == receiver)
            .map(|(t, _, _)| *t)
            .collect()
    }
    fn kinds(&self) -> Vec<(i64, String)> {
        let list = self.incidents.list();
        assert_eq!(list.len(), 1, "one incident: {list:#?}");
        list[0]
            .events
            .iter()
            .map(|e| ((e.at - t0()).num_seconds(), e.kind.clone()))
            .collect()
    }
}

#[tokio::test]
async fn steps_fire_at_exactly_their_delay() {
    let e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(30).await;
    assert_eq!(e.sent_to("primary"), [30], "first page after group_wait");
    // Steps count from the first page (30s): 5m30s and 15m30s.
    assert_eq!(e.d.next_deadline(), Some(at(90)), "next group flush first");
    e.until(329).await;
    assert!(e.sent_to("secondary").is_empty(), "not a second early");
    assert_eq!(e.d.next_deadline(), Some(at(330)));
    e.until(330).await;
    assert_eq!(e.sent_to("secondary"), [330]);
    e.until(929).await;
    assert!(e.sent_to("manager").is_empty());
    e.until(930).await;
    assert_eq!(e.sent_to("manager"), [930]);
    e.until(2000).await;
    assert_eq!(e.sent_to("secondary"), [330], "each step once");
    assert_eq!(e.sent_to("manager"), [930]);
    // Unacked, the primary gets its repeats every repeat_interval.
    assert_eq!(&e.sent_to("primary")[..3], [30, 150, 270]);
    let groups = e.d.groups();
    assert_eq!(groups[0].escalation_steps_done, 2);
    // The resolution reaches everyone paged, once (notified at 2010).
    e.d.put_alerts(vec![alert(Some(2000))]).unwrap();
    e.until(2100).await;
    let resolved: Vec<(i64, String)> = e
        .rec
        .sent
        .lock()
        .iter()
        .filter(|(_, _, s)| s == "resolved")
        .map(|(t, r, _)| (*t, r.clone()))
        .collect();
    assert_eq!(
        resolved,
        [
            (2010, "primary".to_string()),
            (2010, "secondary".to_string()),
            (2010, "manager".to_string())
        ]
    );
    let esc: Vec<i64> = e
        .kinds()
        .into_iter()
        .filter(|(_, k)| k == "escalation")
        .map(|(t, _)| t)
        .collect();
    assert_eq!(esc, [330, 930]);
    let last = e.incidents.list()[0].events.last().unwrap().clone();
    assert_eq!(
        (last.kind.as_str(), last.receiver.as_deref()),
        ("notification", Some("manager"))
    );
}

#[tokio::test]
async fn ack_holds_steps_and_repeats_until_unack() {
    let e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(330).await;
    assert_eq!(e.sent_to("secondary"), [330]);
    assert!(e.d.group_firing(KEY));
    e.incidents
        .ack(KEY, "alice", "looking", None, e.clock.now())
        .unwrap();
    let primary_before = e.sent_to("primary").len();
    e.until(3000).await;
    assert!(e.sent_to("manager").is_empty(), "the ack stops step 2");
    assert_eq!(
        e.sent_to("primary").len(),
        primary_before,
        "no repeats while acked"
    );
    // Only the group's flush timer is left, no escalation deadline.
    let next = e.d.next_deadline().unwrap();
    assert!(next <= at(3060), "{next}");
    // Unack: the overdue step runs at once.
    let id = e.incidents.acks(e.clock.now())[0].id.clone();
    e.incidents.unack(&id, e.clock.now()).unwrap();
    e.d.flush_due().await;
    assert_eq!(e.sent_to("manager"), [3000]);
    let kinds: Vec<String> = e.kinds().into_iter().map(|(_, k)| k).collect();
    let pos = |k: &str| kinds.iter().position(|x| x == k).unwrap();
    assert!(pos("ack") < pos("unack") && kinds.iter().filter(|k| *k == "escalation").count() == 2);
}

#[tokio::test]
async fn a_primary_that_is_down_still_gets_the_steps_paged_on_time() {
    let e = env();
    e.rec.down.lock().push("primary".into());
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(1000).await;
    // Every flush tries the primary again (its page never got logged)...
    assert_eq!(&e.sent_to("primary")[..3], [30, 90, 150]);
    // ...and escalation counts from the first attempt, as if it had landed.
    assert_eq!(e.sent_to("secondary"), [330]);
    assert_eq!(e.sent_to("manager"), [930]);
    let events = e.incidents.list()[0].events.clone();
    let first = events.iter().find(|e| e.kind == "notification").unwrap();
    assert_eq!(first.result.as_deref(), Some("failed"));
    assert_eq!(
        first.error.as_deref(),
        Some("failed permanently: HTTP 500: down")
    );
    assert_eq!(first.retry_at, Some(at(90)), "the next group flush");
    assert_eq!(
        first.outcome().unwrap(),
        "FAILED (retried at 2024-01-03T12:01:30Z): failed permanently: HTTP 500: down"
    );
    let steps: Vec<_> = events.iter().filter(|e| e.kind == "escalation").collect();
    assert_eq!(steps.len(), 2);
    assert!(steps.iter().all(|s| s.outcome().as_deref() == Some("ok")));
    let report = wasmon::incident::report::markdown(&e.incidents.list()[0]);
    assert!(
        report.contains("(receiver primary: FAILED (retried at 2024-01-03T12:01:30Z)"),
        "{report}"
    );
}

#[tokio::test]
async fn a_failed_step_is_shown_as_failed_and_not_retried() {
    let e = env();
    e.rec.down.lock().push("secondary".into());
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(1000).await;
    assert_eq!(e.sent_to("secondary"), [330], "one step, one page");
    assert_eq!(e.sent_to("manager"), [930], "the next step still runs");
    let events = e.incidents.list()[0].events.clone();
    let step = events.iter().find(|e| e.kind == "escalation").unwrap();
    assert_eq!(step.retry_at, None);
    assert_eq!(
        step.outcome().unwrap(),
        "FAILED (not retried): failed permanently: HTTP 500: down"
    );
}

#[tokio::test]
async fn unack_runs_the_overdue_step_at_once_and_keeps_the_spacing() {
    let e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(100).await;
    let ack = e
        .incidents
        .ack(KEY, "dave", "", None, e.clock.now())
        .unwrap();
    e.until(1000).await;
    assert!(e.sent_to("secondary").is_empty() && e.sent_to("manager").is_empty());
    // Unacked at 1000s: both steps are overdue (330s, 930s). The next one
    // runs now; the one after keeps its 10m spacing from it instead of
    // paging the manager in the same instant.
    e.incidents.unack(&ack.id, e.clock.now()).unwrap();
    e.d.flush_due().await;
    assert_eq!(e.sent_to("secondary"), [1000]);
    assert_eq!(e.d.next_deadline().map(|t| t <= at(1060)), Some(true));
    e.until(1599).await;
    assert!(e.sent_to("manager").is_empty(), "not with the secondary");
    e.until(1600).await;
    assert_eq!(e.sent_to("manager"), [1600]);
}

#[tokio::test]
async fn reloads_keep_escalation_where_it_stood() {
    let mut e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(400).await;
    assert_eq!(e.sent_to("secondary"), [330]);
    // Reloads every 100s, each before the next step: none pages again,
    // none delays the manager's step (15m after the first page, 930s).
    for t in [400, 500, 600, 700, 800, 900] {
        e.until(t).await;
        e.reload(CONFIG);
        assert_eq!(e.d.groups()[0].escalation_steps_done, 1);
    }
    e.until(929).await;
    assert!(e.sent_to("manager").is_empty());
    e.until(930).await;
    assert_eq!(e.sent_to("manager"), [930]);
    e.until(1500).await;
    assert_eq!(e.sent_to("secondary"), [330], "no step pages twice");
    let primary = e.sent_to("primary");
    assert!(
        primary.windows(2).all(|w| w[1] - w[0] >= 120),
        "a reload re-paged the primary before its repeat interval: {primary:?}"
    );
    assert_eq!(e.d.groups()[0].escalation_steps_done, 2);
    let esc = e
        .kinds()
        .into_iter()
        .filter(|(_, k)| k == "escalation")
        .count();
    assert_eq!(esc, 2);
}

#[tokio::test]
async fn a_reload_that_changes_the_steps_keeps_the_first_page() {
    let mut e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(400).await;
    // The manager now comes 10m after the first page (30s): at 630s, not
    // 10m after the reload; the secondary's step, unchanged, is done.
    e.reload(&CONFIG.replace("delay: 15m", "delay: 10m"));
    e.until(629).await;
    assert!(e.sent_to("manager").is_empty());
    e.until(630).await;
    assert_eq!(e.sent_to("manager"), [630]);
    e.until(1500).await;
    assert_eq!(e.sent_to("secondary"), [330]);
    assert_eq!(e.sent_to("manager"), [630]);
}

#[tokio::test]
async fn a_group_gone_from_the_new_tree_starts_over() {
    let mut e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(400).await;
    // A new child route takes the alert: another route, another group.
    e.reload(&format!(
        "{CONFIG}  - matchers: [alertname=\"Down\"]\n    receiver: primary\n"
    ));
    assert_eq!(e.d.groups()[0].escalation_steps_done, 0);
    e.until(401).await;
    // Its first page (at once: the alert is older than group_wait) starts
    // its escalation.
    assert_eq!(e.sent_to("primary").last(), Some(&401));
    e.until(700).await;
    assert_eq!(e.sent_to("secondary"), [330]);
    e.until(701).await;
    assert_eq!(e.sent_to("secondary"), [330, 701]);
}

#[tokio::test]
async fn ack_expiry_resumes_escalation() {
    let e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(360).await;
    // Acked at 6m for 20m: step 2 (due 15m30s) waits for the expiry at 26m.
    let ack = e
        .incidents
        .ack(
            KEY,
            "bob",
            "",
            Some(Duration::from_secs(1200)),
            e.clock.now(),
        )
        .unwrap();
    assert_eq!(ack.expires_at, Some(at(1560)));
    e.until(1000).await;
    assert_eq!(e.d.next_deadline().map(|t| t <= at(1560)), Some(true));
    e.until(1559).await;
    assert!(e.sent_to("manager").is_empty());
    e.until(1560).await;
    assert_eq!(e.sent_to("manager"), [1560], "fires at the ack's expiry");
    assert!(e.incidents.acks(e.clock.now()).is_empty());
    assert!(e
        .kinds()
        .iter()
        .any(|(t, k)| *t == 1560 && k == "ack_expired"));
}

#[tokio::test]
async fn resolve_cancels_pending_steps_and_closes_the_incident() {
    let e = env();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(200).await;
    e.incidents
        .ack(KEY, "carol", "", None, e.clock.now())
        .unwrap();
    // Resolved at 250s: notified at the next group flush (270s).
    e.until(250).await;
    e.d.put_alerts(vec![alert(Some(250))]).unwrap();
    e.until(3000).await;
    assert!(e.sent_to("secondary").is_empty(), "resolved before step 1");
    assert!(e.sent_to("manager").is_empty());
    let rec = e.rec.sent.lock().clone();
    assert_eq!(
        rec.last().unwrap(),
        &(270, "primary".to_string(), "resolved".to_string()),
        "only the primary was paged, only it hears of the resolution"
    );
    assert!(e.d.groups().is_empty());
    assert!(e.incidents.acks(e.clock.now()).is_empty(), "ack ends");
    // Resolved when the alert ended (its endsAt, 250s), not when that was
    // notified (270s).
    let i = &e.incidents.list()[0];
    assert_eq!(i.resolved_at, Some(at(250)));
    let d = i.durations();
    assert_eq!(d.detected, Some(t0()));
    assert_eq!(d.time_to_acknowledge, Some(Duration::from_secs(200)));
    assert_eq!(d.time_to_resolve, Some(Duration::from_secs(250)));
    assert_eq!(d.total, Some(Duration::from_secs(250)));
    let report = wasmon::incident::report::markdown(i);
    assert!(report.contains("time to resolve: 4m10s"), "{report}");
    assert_eq!(d.time_to_mitigate, None);
    // A new firing episode opens a new incident, escalation from scratch.
    e.d.put_alerts(vec![PostableAlert {
        starts_at: Some(at(3000)),
        ..alert(None)
    }])
    .unwrap();
    e.until(3030 + 300).await;
    assert_eq!(e.sent_to("secondary"), [3330]);
    let list = e.incidents.list();
    assert_eq!(list.len(), 2);
    assert!(list[1].is_open());
}

#[tokio::test]
async fn empty_escalation_overrides_the_inherited_one() {
    let e = env();
    let mut a = alert(None);
    a.labels.insert("team".into(), "quiet".into());
    e.d.put_alerts(vec![a]).unwrap();
    e.until(2000).await;
    assert!(!e.sent_to("primary").is_empty());
    assert!(e.sent_to("secondary").is_empty());
    assert!(e.sent_to("manager").is_empty());
}

#[tokio::test]
async fn silenced_alerts_open_no_incident_until_the_silence_ends() {
    let e = env();
    let silence: wasmon::alerting::silence::Silence = serde_json::from_value(serde_json::json!({
        "matchers": [{"name": "alertname", "value": "Down", "isRegex": false}],
        "startsAt": t0().to_rfc3339(),
        "endsAt": at(600).to_rfc3339(),
        "createdBy": "t",
        "comment": "maintenance",
    }))
    .unwrap();
    e.shared.silences.set(silence, t0()).unwrap();
    e.d.put_alerts(vec![alert(None)]).unwrap();
    e.until(599).await;
    assert!(e.incidents.list().is_empty(), "silenced: no incident");
    assert!(e.rec.sent.lock().is_empty());
    assert!(e.sent_to("secondary").is_empty(), "no page, no escalation");
    // The silence ends at 600: the next flush (630) pages and opens it;
    // escalation counts from that page.
    e.until(630).await;
    assert_eq!(e.sent_to("primary"), [630]);
    let kinds = e.kinds();
    assert_eq!(kinds[0], (630, "alert_firing".to_string()));
    e.until(929).await;
    assert!(e.sent_to("secondary").is_empty());
    e.until(930).await;
    assert_eq!(e.sent_to("secondary"), [930]);
}

#[test]
fn config_errors_name_the_step() {
    let bad = |y: &str| {
        let c: AlertingConfig = serde_norway::from_str(y).unwrap();
        c.validate(&["p", "s"]).unwrap_err().to_string()
    };
    let e = bad("route: {receiver: p, escalation: [{receiver: nobody, delay: 5m}]}");
    assert!(
        e.contains("undefined receiver \"nobody\" used in route escalation"),
        "{e}"
    );
    let e = bad(
        "route: {receiver: p, escalation: [{receiver: s, delay: 15m}, {receiver: p, delay: 5m}]}",
    );
    assert!(
        e.contains("escalation step 2") && e.contains("in order"),
        "{e}"
    );
    let e = serde_norway::from_str::<AlertingConfig>(
        "route: {receiver: p, escalation: [{receiver: s, delay: 5x}]}",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a valid duration"), "{e}");
}
