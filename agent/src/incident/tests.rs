use super::*;

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap()
}

const KEY: &str = "{}:{alertname=\"HighErrorRate\"}";

fn group() -> Labels {
    Labels::from_pairs([("alertname", "HighErrorRate")])
}

fn alert() -> Labels {
    Labels::from_pairs([("alertname", "HighErrorRate"), ("severity", "critical")])
}

/// The seed story: deploy, pending, firing, ack, rollback, resolved.
fn story(inc: &Incidents) {
    inc.record_global(Event::new(t(0), "rollout_started", "rollout web v2"));
    inc.record_alert(&alert(), Event::new(t(40), "alert_pending", "pending"));
    // Pending of another alert group: not ours.
    inc.record_alert(
        &Labels::from_pairs([("alertname", "DiskFull")]),
        Event::new(t(41), "alert_pending", "other"),
    );
    inc.alert_firing(KEY, &group(), &alert(), t(100));
    inc.record_group(
        KEY,
        Event::new(t(130), "notification", "firing").receiver("oncall", Ok::<(), String>(())),
    );
    inc.ack(KEY, "alice", "on it", None, t(190)).unwrap();
    inc.record_global(Event::new(t(220), "rollback", "rolled back to v1").data(
        serde_json::json!({
            "checks": [{"check": "error_rate", "ok": false, "value": 0.2, "message": "above 0.05"}]
        }),
    ));
    inc.resolve(KEY, t(400));
}

#[test]
fn timeline_and_durations() {
    let inc = Incidents::in_memory();
    story(&inc);
    let list = inc.list();
    assert_eq!(list.len(), 1);
    let i = &list[0];
    let kinds: Vec<&str> = i.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "rollout_started",
            "alert_pending",
            "alert_firing",
            "notification",
            "ack",
            "rollback",
            "resolved"
        ]
    );
    let d = i.durations();
    assert_eq!(d.started, Some(t(0)));
    assert_eq!(d.time_to_detect, Some(Duration::from_secs(100)));
    assert_eq!(d.time_to_acknowledge, Some(Duration::from_secs(90)));
    assert_eq!(d.time_to_mitigate, Some(Duration::from_secs(120)));
    assert_eq!(d.time_to_resolve, Some(Duration::from_secs(300)));
    assert_eq!(d.total, Some(Duration::from_secs(400)));
    assert!(inc.acks(t(401)).is_empty(), "resolution ends the ack");

    let md = report::markdown(i);
    for want in [
        "| Detected (first firing alert) | 2023-11-14T22:15:00Z | time to detect: 1m40s |",
        "time to acknowledge: 1m30s",
        "time to mitigate: 2m",
        "time to resolve: 5m",
        "| **Total duration** | | 6m40s |",
        "metrics: error_rate=0.2",
        "(receiver oncall: ok)",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
}

#[test]
fn events_older_than_the_lookback_stay_out() {
    let inc = Incidents::in_memory();
    inc.record_global(Event::new(t(0), "rollout_started", "old deploy"));
    inc.alert_firing(KEY, &group(), &alert(), t(LOOKBACK.as_secs() as i64 + 1));
    let kinds: Vec<String> = inc.list()[0]
        .events
        .iter()
        .map(|e| e.kind.clone())
        .collect();
    assert_eq!(kinds, ["alert_firing"]);
}

#[test]
fn acks_and_incidents_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let inc = Incidents::open(dir.path()).unwrap();
        inc.alert_firing(KEY, &group(), &alert(), t(100));
        let a = inc
            .ack(KEY, "bob", "c", Some(Duration::from_secs(600)), t(110))
            .unwrap();
        // The writer thread catches up without being asked (kill -9 loses
        // at most PERSIST_INTERVAL of incident events, no ack).
        std::thread::sleep(PERSIST_INTERVAL * 3);
        let on_disk = std::fs::read_to_string(dir.path().join("incidents.json")).unwrap();
        assert!(on_disk.contains("acknowledged by bob"), "{on_disk}");
        a.id
    };
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    let inc = Incidents::open(dir.path()).unwrap();
    let acks = inc.acks(t(200));
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].id, id);
    assert_eq!(acks[0].expires_at, Some(t(710)));
    assert_eq!(
        inc.active_ack(KEY, t(709)).map(|a| a.by),
        Some("bob".into())
    );
    assert!(inc.active_ack(KEY, t(710)).is_none(), "expired");
    let list = inc.list();
    assert_eq!(list.len(), 1);
    assert!(list[0].is_open());
    assert!(list[0].events.iter().any(|e| e.kind == "ack_expired"));
    // Ids keep counting after a restart.
    inc.resolve(KEY, t(800));
    inc.alert_firing(KEY, &group(), &alert(), t(900));
    let ids: Vec<String> = inc.list().iter().map(|i| i.id.clone()).collect();
    assert_eq!(ids, ["1", "2"]);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let inc = Incidents::in_memory();
    assert!(
        matches!(inc.ack(KEY, " ", "", None, t(0)), Err(AckError::Invalid(m)) if m.contains("by"))
    );
    assert!(matches!(
        inc.ack(KEY, "a", "", Some(Duration::ZERO), t(0)),
        Err(AckError::Invalid(m)) if m.contains("expires_in")
    ));
    assert_eq!(
        inc.unack("nope", t(0)),
        Err(AckError::NotFound("nope".into()))
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("acks.json"), "{not json").unwrap();
    let e = Incidents::open(dir.path()).err().unwrap();
    assert!(format!("{e:#}").contains("acks.json"), "{e:#}");
}

#[test]
fn closed_incidents_are_bounded() {
    let inc = Incidents::in_memory();
    for n in 0..(MAX_CLOSED as i64 + 5) {
        inc.alert_firing(KEY, &group(), &alert(), t(n * 10));
        inc.resolve(KEY, t(n * 10 + 5));
    }
    let list = inc.list();
    assert_eq!(list.len(), MAX_CLOSED);
    assert_eq!(list[0].id, "6", "oldest dropped first");
}

#[test]
fn failed_sends_read_as_failed_with_their_retry() {
    let inc = Incidents::in_memory();
    inc.alert_firing(KEY, &group(), &alert(), t(100));
    inc.record_group(
        KEY,
        Event::new(
            t(130),
            "notification",
            "firing notification of 1 alert(s) to oncall",
        )
        .receiver("oncall", Err("failed after 3 attempt(s): HTTP 503"))
        .retry_at(t(430)),
    );
    inc.record_group(
        KEY,
        Event::new(
            t(430),
            "notification",
            "firing notification of 1 alert(s) to oncall",
        )
        .receiver("oncall", Ok::<(), String>(()))
        .retry_at(t(730)),
    );
    inc.record_group(
        KEY,
        Event::new(t(400), "escalation", "escalation 1/1: paged boss")
            .receiver("boss", Err("failed permanently: HTTP 400")),
    );
    let i = inc.list().remove(0);
    let sends: Vec<(Option<&str>, Option<DateTime<Utc>>)> = i
        .events
        .iter()
        .filter(|e| e.receiver.is_some())
        .map(|e| (e.result.as_deref(), e.retry_at))
        .collect();
    assert_eq!(
        sends,
        [
            (Some("failed"), Some(t(430))),
            (Some("failed"), None),
            (Some("ok"), None)
        ],
        "a success has no retry"
    );
    let md = report::markdown(&i);
    for want in [
        "(receiver oncall: FAILED (retried at 2023-11-14T22:20:30Z): failed after 3 attempt(s): HTTP 503)",
        "(receiver boss: FAILED (not retried): failed permanently: HTTP 400)",
        "(receiver oncall: ok)",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    // incidents.json from before `error`: the error was the result.
    let old: Event = serde_json::from_value(serde_json::json!({
        "at": t(1), "kind": "notification", "message": "m",
        "receiver": "r", "result": "failed permanently: HTTP 400",
    }))
    .unwrap();
    assert_eq!(
        old.outcome().unwrap(),
        "FAILED (not retried): failed permanently: HTTP 400"
    );
}

#[test]
fn resolved_at_the_alerts_end_never_before_the_opening() {
    let inc = Incidents::in_memory();
    inc.alert_firing(KEY, &group(), &alert(), t(100));
    let id = inc.resolve(KEY, t(250)).unwrap();
    assert_eq!(inc.get(&id).unwrap().resolved_at, Some(t(250)));
    // An alert whose source back-dated its end before the incident opened.
    inc.alert_firing(KEY, &group(), &alert(), t(300));
    let id = inc.resolve(KEY, t(200)).unwrap();
    let i = inc.get(&id).unwrap();
    assert_eq!(i.resolved_at, Some(t(300)));
    assert_eq!(i.durations().time_to_resolve, Some(Duration::ZERO));
    assert_eq!(inc.resolve(KEY, t(400)), None, "nothing open");
}
