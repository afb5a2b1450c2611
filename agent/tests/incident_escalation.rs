//! Escalation and acks on a manual clock: each step runs exactly its delay
//! after the group's first notification (not a second before), an ack holds
//! the pending steps and the repeats, an ack's expiry and an unack resume
//! them, a resolution cancels them; the incident timeline records it all.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use parking_lot::Mutex;
use wasmon::alerting::config::AlertingConfig;
use wasmon::alerting::dispatch::{
    Clock, Dispatcher, ManualClock, Notifier, NotifyError, ReceiverSettings, Shared,
};
use wasmon::alerting::message::WebhookMessage;
use wasmon::alerting::nflog::NotificationLog;
use wasmon::alerting::silence::{Silences, DEFAULT_RETENTION};
use wasmon::alerting::types::{AlertStore, PostableAlert};
use wasmon::incident::Incidents;

#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<(i64, String, String)>>,
    clock: Mutex<Option<Arc<ManualClock>>>,
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
        incidents: incidents.clone(),
    };
    let receivers: HashMap<String, ReceiverSettings> = ["primary", "secondary", "manager"]
        .iter()
        .map(|r| (r.to_string(), ReceiverSettings::default()))
        .collect();
    let d = Dispatcher::new(&cfg, receivers, "http://wasmon", shared.clone()).unwrap();
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
    let i = &e.incidents.list()[0];
    assert_eq!(i.resolved_at, Some(at(270)));
    let d = i.durations();
    assert_eq!(d.detected, Some(t0()));
    assert_eq!(d.time_to_acknowledge, Some(Duration::from_secs(200)));
    assert_eq!(d.time_to_resolve, Some(Duration::from_secs(270)));
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
        c.validate(&["p", "s"]).unwrap_err()
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
