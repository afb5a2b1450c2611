//! The rule engine's side of incident timelines: an alert that turns
//! pending is recorded once (not at every evaluation), and lands on the
//! incident its group opens when it fires.

use std::sync::Arc;

use wasmon::alerting::sink::MemorySink;
use wasmon::incident::Incidents;
use wasmon::model::Labels;
use wasmon::rules::group::ms_to_time;
use wasmon::rules::rulefmt::{parse, ParseOpts};
use wasmon::rules::{Group, RuleOpts};
use wasmon::storage::MemStorage;

const M: i64 = 60_000;
// Far enough from the epoch that the look-back window is all in range.
const T0: i64 = 1_700_000_000_000;

const DOWN: &str = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 5m
"#;

#[test]
fn pending_alerts_reach_the_incident() {
    let store = Arc::new(MemStorage::new());
    let sink = Arc::new(MemorySink::default());
    let incidents = Arc::new(Incidents::in_memory());
    let mut opts = RuleOpts::new(store.clone(), store.clone(), sink.clone());
    opts.incidents = Some(incidents.clone());
    let rg = parse(DOWN, "t.yml", &ParseOpts::default()).unwrap();
    let g = Group::new("t.yml", &rg.groups[0], M, Arc::new(opts), true).unwrap();
    for i in 0..=6 {
        store.append(
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            T0 + i * M,
            0.0,
        );
    }
    for i in 0..=5 {
        g.eval(T0 + i * M);
    }
    let sent = sink.take();
    assert_eq!(sent.len(), 1, "fired at 5m");
    // The dispatcher's part: the firing alert opens the group's incident.
    let group = Labels::from_pairs([("alertname", "Down")]);
    incidents.alert_firing(
        "{}:{alertname=\"Down\"}",
        &group,
        &sent[0].labels,
        ms_to_time(T0 + 5 * M),
    );
    let i = &incidents.list()[0];
    let kinds: Vec<(&str, i64)> = i
        .events
        .iter()
        .map(|e| (e.kind.as_str(), e.at.timestamp_millis() - T0))
        .collect();
    assert_eq!(kinds, [("alert_pending", 0), ("alert_firing", 5 * M)]);
    assert_eq!(i.events[0].data["labels"]["job"], "a");
    let d = i.durations();
    assert_eq!(d.time_to_detect, Some(std::time::Duration::from_secs(300)));
}
