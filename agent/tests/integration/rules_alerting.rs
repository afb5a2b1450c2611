//! The alert state machine on a hand-driven timeline: pending, firing after
//! `for`, resend every resend delay, `endsAt`, resolved and resent for 15
//! minutes, `keep_firing_for`, `limit`, ALERTS series, `for` restoration;
//! recording rules with stale markers; the manager on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use wasmon::alerting::sink::MemorySink;
use wasmon::model::{is_stale_nan, Labels};
use wasmon::rules::group::ms_to_time;
use wasmon::rules::rulefmt::{parse, ParseOpts};
use wasmon::rules::{AlertState, Group, ManagerOpts, Rule, RuleManager, RuleOpts};
use wasmon::storage::{MatchOp, Matcher, MemStorage, Queryable};

const M: i64 = 60_000;

fn setup(rules_yaml: &str, restored: bool) -> (Arc<MemStorage>, Arc<MemorySink>, Group) {
    let store = Arc::new(MemStorage::new());
    let sink = Arc::new(MemorySink::default());
    let mut opts = RuleOpts::new(store.clone(), store.clone(), sink.clone());
    opts.external_url = "http://wasmon.example".into();
    opts.external_labels = Labels::from_pairs([("site", "eu")]);
    let rg = parse(rules_yaml, "t.yml", &ParseOpts::default()).unwrap();
    let g = Group::new("t.yml", &rg.groups[0], M, Arc::new(opts), restored).unwrap();
    (store, sink, g)
}

fn up(store: &MemStorage, t: i64, v: f64) {
    store.append(Labels::from_pairs([("__name__", "up"), ("job", "a")]), t, v);
}

fn series(store: &MemStorage, name: &str) -> Vec<(Labels, Vec<(i64, f64)>)> {
    let m = [Matcher::new(MatchOp::Equal, "__name__", name).unwrap()];
    store
        .select(&m, i64::MIN / 2, i64::MAX / 2)
        .unwrap()
        .into_iter()
        .map(|s| (s.labels, s.samples))
        .collect()
}

fn alerting(g: &Group) -> &wasmon::rules::AlertingRule {
    match &g.rules[0] {
        Rule::Alerting(a) => a,
        _ => panic!(),
    }
}

const DOWN: &str = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 5m
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.job }} down ({{ $value }})"
"#;

#[test]
fn pending_firing_resend_resolved_timeline() {
    let (store, sink, g) = setup(DOWN, true);
    for i in 0..=30 {
        up(&store, i * M, if i < 8 { 0.0 } else { 1.0 });
    }
    let a = alerting(&g);

    g.eval(0);
    let al = a.active_alerts();
    assert_eq!(al.len(), 1);
    assert_eq!(al[0].state, AlertState::Pending);
    assert_eq!(al[0].active_at, 0);
    assert_eq!(al[0].annotations["summary"], "a down (0)");
    assert_eq!(
        al[0].labels,
        Labels::from_pairs([("alertname", "Down"), ("job", "a"), ("severity", "page")])
    );
    assert!(sink.take().is_empty(), "pending alerts are not sent");

    for i in 1..5 {
        g.eval(i * M);
        assert_eq!(a.active_alerts()[0].state, AlertState::Pending, "t={i}m");
        assert!(sink.take().is_empty());
    }

    g.eval(5 * M);
    assert_eq!(a.active_alerts()[0].state, AlertState::Firing);
    let sent = sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].starts_at, ms_to_time(5 * M));
    // endsAt = now + 4 * max(resend delay 1m, interval 1m)
    assert_eq!(sent[0].ends_at, ms_to_time(9 * M));
    assert_eq!(
        sent[0].labels.get("site"),
        Some("eu"),
        "external labels added"
    );
    assert_eq!(
        sent[0].generator_url,
        "http://wasmon.example/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
    );

    g.eval(6 * M);
    assert!(
        sink.take().is_empty(),
        "not resent before the resend delay passed"
    );
    g.eval(7 * M);
    let sent = sink.take();
    assert_eq!(sent.len(), 1, "resent after the resend delay");
    assert_eq!(sent[0].ends_at, ms_to_time(11 * M));

    // up == 1 from 8m: resolved, sent at once with endsAt = resolvedAt.
    g.eval(8 * M);
    assert!(a.active_alerts().is_empty());
    let cur = a.current_alerts();
    assert_eq!(cur[0].state, AlertState::Inactive);
    assert_eq!(cur[0].resolved_at, Some(8 * M));
    let sent = sink.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].ends_at, ms_to_time(8 * M));
    assert_eq!(sent[0].starts_at, ms_to_time(5 * M));

    // Resent every resend delay for 15 minutes, then dropped.
    let mut resends = Vec::new();
    for i in 9..=25 {
        g.eval(i * M);
        if !sink.take().is_empty() {
            resends.push(i);
        }
    }
    assert_eq!(resends, vec![10, 12, 14, 16, 18, 20, 22]);
    assert!(a.current_alerts().is_empty(), "dropped after 15m");

    // ALERTS series: pending 0..4m then stale at 5m, firing 5..7m then stale at 8m.
    let alerts = series(&store, "ALERTS");
    let pending = alerts
        .iter()
        .find(|(l, _)| l.get("alertstate") == Some("pending"))
        .unwrap();
    assert_eq!(pending.1.len(), 6);
    assert_eq!(pending.1[4], (4 * M, 1.0));
    assert!(is_stale_nan(pending.1[5].1) && pending.1[5].0 == 5 * M);
    let firing = alerts
        .iter()
        .find(|(l, _)| l.get("alertstate") == Some("firing"))
        .unwrap();
    assert_eq!(firing.1[0], (5 * M, 1.0));
    assert!(is_stale_nan(firing.1.last().unwrap().1));
    assert_eq!(firing.1.last().unwrap().0, 8 * M);
    let fs = series(&store, "ALERTS_FOR_STATE");
    assert_eq!(
        fs[0].1[0],
        (0, 0.0),
        "ALERTS_FOR_STATE holds activeAt in seconds"
    );
}

#[test]
fn keep_firing_for_holds_alert() {
    let (store, sink, g) = setup(
        r#"
groups:
  - name: g
    interval: 1m
    rules:
      - alert: Down
        expr: up == 0
        keep_firing_for: 3m
"#,
        true,
    );
    up(&store, 0, 0.0);
    for i in 1..10 {
        up(&store, i * M, 1.0);
    }
    let a = alerting(&g);
    g.eval(0);
    assert_eq!(
        a.active_alerts()[0].state,
        AlertState::Firing,
        "for: 0 fires at once"
    );
    assert_eq!(sink.take().len(), 1);
    for i in 1..=3 {
        g.eval(i * M);
        let al = a.active_alerts();
        assert_eq!(al.len(), 1, "t={i}m");
        assert_eq!(al[0].state, AlertState::Firing);
        assert_eq!(al[0].keep_firing_since, Some(M));
    }
    g.eval(4 * M);
    assert!(a.active_alerts().is_empty(), "kept firing for 3m only");
    assert_eq!(a.current_alerts()[0].resolved_at, Some(4 * M));
}

#[test]
fn pending_alert_that_disappears_is_dropped() {
    let (store, sink, g) = setup(DOWN, true);
    up(&store, 0, 0.0);
    up(&store, M, 1.0);
    g.eval(0);
    g.eval(M);
    assert!(alerting(&g).current_alerts().is_empty());
    assert!(sink.take().is_empty());
}

#[test]
fn limit_and_errors_set_health() {
    let (store, _sink, g) = setup(
        r#"
groups:
  - name: g
    limit: 1
    rules:
      - alert: Many
        expr: up
      - record: bad
        expr: up + on() group_left up
"#,
        true,
    );
    store.append(Labels::from_pairs([("__name__", "up"), ("i", "1")]), 0, 1.0);
    store.append(Labels::from_pairs([("__name__", "up"), ("i", "2")]), 0, 1.0);
    g.eval(0);
    let st = g.rules[0].status();
    assert_eq!(st.health, wasmon::rules::group::Health::Bad);
    assert_eq!(
        st.last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    assert!(alerting(&g).current_alerts().is_empty());
    assert_eq!(
        g.rules[1].status().health,
        wasmon::rules::group::Health::Bad
    );
}

#[test]
fn recording_rule_writes_and_marks_stale() {
    let (store, _sink, g) = setup(
        r#"
groups:
  - name: g
    labels:
      team: x
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          source: rule
      - record: job:up:double
        expr: job:up:sum * 2
"#,
        true,
    );
    up(&store, 0, 3.0);
    g.eval(0);
    let s = series(&store, "job:up:sum");
    assert_eq!(s.len(), 1);
    assert_eq!(
        s[0].0,
        Labels::from_pairs([
            ("__name__", "job:up:sum"),
            ("job", "a"),
            ("source", "rule"),
            ("team", "x")
        ])
    );
    assert_eq!(s[0].1, vec![(0, 3.0)]);
    // The second rule sees the first one's output of the same evaluation.
    assert_eq!(series(&store, "job:up:double")[0].1, vec![(0, 6.0)]);
    // `up` disappears (beyond the lookback): the recorded series goes stale.
    g.eval(10 * M);
    let s = series(&store, "job:up:sum");
    assert_eq!(s[0].1.len(), 2);
    assert!(is_stale_nan(s[0].1[1].1));
    assert_eq!(s[0].1[1].0, 10 * M);
}

#[test]
fn for_state_restored_after_restart() {
    let yaml = r#"
groups:
  - name: g
    rules:
      - alert: Down
        expr: up == 0
        for: 30m
"#;
    let (store, _sink, g) = setup(yaml, false);
    for i in 0..=60 {
        up(&store, i * M, 0.0);
    }
    // Before the restart the alert had been active since 1000s; the last
    // ALERTS_FOR_STATE sample was written at 1200s.
    let fs = Labels::from_pairs([
        ("__name__", "ALERTS_FOR_STATE"),
        ("alertname", "Down"),
        ("job", "a"),
    ]);
    for t in [1000, 1100, 1200] {
        store.append(fs.clone(), t * 1000, 1000.0);
    }
    let a = alerting(&g);
    g.eval(1_500_000);
    assert!(!a.restored());
    assert_eq!(a.active_alerts()[0].active_at, 1_500_000);
    assert!(
        series(&store, "ALERTS").is_empty(),
        "no ALERTS before restoration"
    );
    g.restore_for_state(1_500_000);
    assert!(a.restored());
    // Pending time before the outage counts: activeAt moved by the downtime (300s).
    assert_eq!(a.active_alerts()[0].active_at, 1_300_000);
    g.eval(1_300_000 + 30 * M - M);
    assert_eq!(a.active_alerts()[0].state, AlertState::Pending);
    g.eval(1_300_000 + 30 * M);
    assert_eq!(a.active_alerts()[0].state, AlertState::Firing);

    // Little time left: the alert waits the grace period (10m).
    let (store, _sink, g) = setup(yaml, false);
    for i in 0..=80 {
        up(&store, i * M, 0.0);
    }
    store.append(fs.clone(), 2_700_000, 1000.0); // pending 1700s of 1800s
    g.eval(3_000_000);
    g.restore_for_state(3_000_000);
    assert_eq!(
        alerting(&g).active_alerts()[0].active_at,
        3_000_000 + 10 * M - 30 * M
    );
}

#[test]
fn eval_timestamps_are_aligned() {
    let (_s, _k, g) = setup(DOWN, true);
    let t = g.eval_timestamp(1_000_000_000);
    assert!(t <= 1_000_000_000 && t > 1_000_000_000 - M);
    assert_eq!(g.eval_timestamp(t + M + 1), t + M);
    assert_eq!((t - g.eval_timestamp(5)) % M, 0);
}

/// Waits until the manager has `n` groups and each has evaluated at its
/// latest slot at or before `now`. The slot is per group: its offset comes
/// from a hash of the group's name and file (a temp dir here), so a fixed
/// timestamp would hold for one group's offset and not another's.
async fn wait_eval(m: &RuleManager, n: usize, now: i64) {
    // Generous: the group tasks only need to be scheduled, but CI machines
    // are busy; the wait ends as soon as they are.
    for _ in 0..3000 {
        let gs = m.groups();
        if gs.len() == n
            && gs
                .iter()
                .all(|g| g.last_eval_ms().is_some_and(|t| t >= g.eval_timestamp(now)))
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let st: Vec<_> = m
        .groups()
        .iter()
        .map(|g| (g.name.clone(), g.last_eval_ms(), g.eval_timestamp(now)))
        .collect();
    panic!("groups not evaluated at their slot <= {now}: (name, last, want) {st:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manager_runs_reloads_and_keeps_old_groups_on_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.rules.yml"),
        "groups:\n  - name: a\n    interval: 10s\n    rules:\n      - record: one\n        expr: vector(1)\n",
    )
    .unwrap();
    let store = Arc::new(MemStorage::new());
    let sink = Arc::new(MemorySink::default());
    let opts = RuleOpts::new(store.clone(), store.clone(), sink.clone());
    let clock = wasmon::clock::ManualClock::from_ms(1_000_000);
    let mut mo = ManagerOpts::new(opts);
    mo.clock = clock.clone();
    let m = RuleManager::new(mo);
    m.update(&["*.rules.yml".to_string()], dir.path()).unwrap();
    assert_eq!(m.groups().len(), 1);
    let g = m.groups()[0].clone();
    clock.advance_ms(10_000);
    wait_eval(&m, 1, 1_010_000).await;
    let t1 = g.last_eval_ms().unwrap();
    assert_eq!(t1, g.eval_timestamp(1_010_000));
    assert_eq!(series(&store, "one")[0].1, vec![(t1, 1.0)]);

    // A bad file: the reload fails and the old group keeps running.
    std::fs::write(
        dir.path().join("b.rules.yml"),
        "groups:\n  - name: b\n    rules:\n      - record: x\n        expr: 'up +'\n",
    )
    .unwrap();
    let err = m.reload_patterns_for_test(dir.path());
    assert!(err.is_err());
    assert!(Arc::ptr_eq(&m.groups()[0], &g));
    clock.advance_ms(10_000);
    wait_eval(&m, 1, 1_020_000).await;
    assert_eq!(g.last_eval_ms(), Some(t1 + 10_000));

    // Fixed: the unchanged group keeps running, the new one starts.
    std::fs::write(
        dir.path().join("b.rules.yml"),
        "groups:\n  - name: b\n    rules:\n      - record: two\n        expr: vector(2)\n",
    )
    .unwrap();
    m.update(&["*.rules.yml".to_string()], dir.path()).unwrap();
    assert_eq!(m.groups().len(), 2);
    assert!(Arc::ptr_eq(&m.groups()[0], &g));
    clock.advance_ms(60_000);
    wait_eval(&m, 2, 1_080_000).await;
    assert!(!series(&store, "two").is_empty());

    // Removing a file stops its group and marks its series stale.
    std::fs::remove_file(dir.path().join("a.rules.yml")).unwrap();
    m.update(&["*.rules.yml".to_string()], dir.path()).unwrap();
    assert_eq!(m.groups().len(), 1);
    let one = series(&store, "one");
    assert!(is_stale_nan(one[0].1.last().unwrap().1));
    m.stop();
}

trait ReloadForTest {
    fn reload_patterns_for_test(&self, dir: &std::path::Path) -> anyhow::Result<()>;
}

impl ReloadForTest for RuleManager {
    fn reload_patterns_for_test(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        self.update(&["*.rules.yml".to_string()], dir)
    }
}

#[test]
fn api_json_shapes() {
    let (store, _sink, g) = setup(DOWN, true);
    up(&store, 0, 0.0);
    g.eval(0);
    let groups = vec![Arc::new(g)];
    let v = wasmon::web::rules::rules_json(&groups, &Default::default());
    assert_eq!(v["status"], "success");
    let grp = &v["data"]["groups"][0];
    assert_eq!(grp["name"], "g");
    assert_eq!(grp["file"], "t.yml");
    assert_eq!(grp["interval"], 60.0);
    let r = &grp["rules"][0];
    assert_eq!(r["type"], "alerting");
    assert_eq!(r["name"], "Down");
    assert_eq!(r["query"], "up == 0");
    assert_eq!(r["duration"], 300);
    assert_eq!(r["keepFiringFor"], 0);
    assert_eq!(r["state"], "pending");
    assert_eq!(r["health"], "ok");
    assert_eq!(r["labels"]["severity"], "page");
    assert_eq!(r["lastEvaluation"], "1970-01-01T00:00:00Z");
    assert!(r["evaluationTime"].is_number());
    let a = &r["alerts"][0];
    assert_eq!(a["state"], "pending");
    assert_eq!(a["activeAt"], "1970-01-01T00:00:00Z");
    assert_eq!(a["value"], "0e+00");
    assert_eq!(a["labels"]["alertname"], "Down");
    assert_eq!(a["annotations"]["summary"], "a down (0)");
    let f = wasmon::web::rules::RulesFilter {
        rule_type: Some("record".into()),
        ..Default::default()
    };
    let v = wasmon::web::rules::rules_json(&groups, &f);
    assert_eq!(v["data"]["groups"].as_array().unwrap().len(), 0);
    let v = wasmon::web::rules::alerts_json(&groups);
    assert_eq!(v["data"]["alerts"][0]["labels"]["job"], "a");
}
