//! TSDB head behaviour through the public API: append rules, matcher
//! semantics (Prometheus' empty-value and regex-anchoring rules), label
//! names/values, staleness markers, concurrent appenders.

use std::sync::Arc;

use wasmon::model::{stale_nan, Labels, STALE_NAN_BITS};
use wasmon::storage::{MatchOp, Matcher};
use wasmon::tsdb::{AppendError, Db, Options};

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn m(name: &str, op: MatchOp, value: &str) -> Matcher {
    Matcher::new(op, name, value).unwrap()
}

fn open(dir: &std::path::Path) -> Db {
    Db::open(dir, Options::default()).unwrap()
}

#[test]
fn append_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let s = l(&[("__name__", "up"), ("job", "a")]);
    let mut app = db.appender();
    let r = app.append(&s, 1000, 1.0).unwrap();
    // In-batch ordering is checked too.
    assert_eq!(app.append(&s, 999, 1.0), Err(AppendError::OutOfOrder));
    assert_eq!(app.append(&s, 1000, 1.0), Ok(r), "same value is a no-op");
    assert_eq!(
        app.append(&s, 1000, 2.0),
        Err(AppendError::DuplicateSampleForTimestamp)
    );
    assert_eq!(
        app.append(&Labels::new(), 1000, 2.0),
        Err(AppendError::EmptyLabels)
    );
    app.commit().unwrap();

    let mut app = db.appender();
    assert_eq!(app.append(&s, 500, 1.0), Err(AppendError::OutOfOrder));
    assert_eq!(
        app.append(&s, 1000, 3.0),
        Err(AppendError::DuplicateSampleForTimestamp)
    );
    assert_eq!(app.append_ref(r, 2000, 2.0), Ok(r));
    assert_eq!(
        app.append_ref(12345, 2000, 2.0),
        Err(AppendError::UnknownSeriesRef(12345))
    );
    // Not visible before commit.
    assert_eq!(
        db.select(&[Matcher::equal("job", "a")], 0, 10_000)[0]
            .samples
            .len(),
        1
    );
    app.commit().unwrap();
    let got = db.select(&[Matcher::equal("job", "a")], 0, 10_000);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].labels, s);
    assert_eq!(got[0].samples, vec![(1000, 1.0), (2000, 2.0)]);

    // Rollback discards; dropping an appender rolls back too.
    let mut app = db.appender();
    app.append(&s, 3000, 3.0).unwrap();
    app.rollback();
    let mut app = db.appender();
    app.append(&s, 3000, 3.0).unwrap();
    drop(app);
    assert_eq!(
        db.select(&[Matcher::equal("job", "a")], 0, 10_000)[0]
            .samples
            .len(),
        2
    );

    let st = db.stats();
    assert_eq!(st.samples_appended_total, 2);
    assert_eq!(st.out_of_order_total, 2);
    assert_eq!(st.head_series, 1);
}

#[test]
fn special_values_survive_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let s = l(&[("__name__", "x")]);
    let values = [
        1.0,
        stale_nan(),
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::from_bits(0x7ff8_dead_beef_0001),
    ];
    let mut app = db.appender();
    for (i, v) in values.iter().enumerate() {
        app.append(&s, i as i64 * 15_000, *v).unwrap();
    }
    app.commit().unwrap();
    let got = db.select(&[Matcher::equal("__name__", "x")], i64::MIN, i64::MAX);
    let bits: Vec<u64> = got[0].samples.iter().map(|s| s.1.to_bits()).collect();
    let want: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
    assert_eq!(bits, want);
    assert_eq!(bits[1], STALE_NAN_BITS);
}

/// The `i` label of the selected series, sorted (select orders by all labels).
fn names(db: &Db, ms: &[Matcher]) -> Vec<String> {
    let mut v: Vec<String> = db
        .select(ms, i64::MIN, i64::MAX)
        .into_iter()
        .map(|s| s.labels.get("i").unwrap_or("").to_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn matcher_semantics() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let mut app = db.appender();
    // i identifies each series; some have env, some do not.
    for (i, env) in [
        ("1", "prod"),
        ("2", "dev"),
        ("3", ""),
        ("4", "production"),
        ("5", "pro"),
    ] {
        app.append(&l(&[("__name__", "m"), ("i", i), ("env", env)]), 1000, 1.0)
            .unwrap();
    }
    app.append(&l(&[("__name__", "other"), ("i", "6")]), 1000, 1.0)
        .unwrap();
    app.commit().unwrap();
    let name = Matcher::equal("__name__", "m");
    let q = |ms: &[Matcher]| {
        let mut all = vec![name.clone()];
        all.extend_from_slice(ms);
        names(&db, &all)
    };
    assert_eq!(q(&[]), ["1", "2", "3", "4", "5"]);
    assert_eq!(q(&[m("env", MatchOp::Equal, "prod")]), ["1"]);
    // Absent label reads as "".
    assert_eq!(q(&[m("env", MatchOp::Equal, "")]), ["3"]);
    assert_eq!(q(&[m("env", MatchOp::NotEqual, "")]), ["1", "2", "4", "5"]);
    assert_eq!(
        q(&[m("env", MatchOp::NotEqual, "prod")]),
        ["2", "3", "4", "5"]
    );
    // Regexes are fully anchored.
    assert_eq!(q(&[m("env", MatchOp::Regex, "prod")]), ["1"]);
    assert_eq!(q(&[m("env", MatchOp::Regex, "pro.*")]), ["1", "4", "5"]);
    assert_eq!(q(&[m("env", MatchOp::Regex, "rod")]), Vec::<String>::new());
    assert_eq!(q(&[m("env", MatchOp::Regex, ".*rod")]), ["1"]);
    assert_eq!(q(&[m("env", MatchOp::NotRegex, "pro.*")]), ["2", "3"]);
    // `.*` matches everything including absent; `.+` needs the label.
    assert_eq!(
        q(&[m("env", MatchOp::Regex, ".*")]),
        ["1", "2", "3", "4", "5"]
    );
    assert_eq!(q(&[m("env", MatchOp::Regex, ".+")]), ["1", "2", "4", "5"]);
    assert_eq!(q(&[m("env", MatchOp::NotRegex, ".+")]), ["3"]);
    assert_eq!(
        q(&[m("env", MatchOp::NotRegex, ".*")]),
        Vec::<String>::new()
    );
    // An alternation including the empty string selects the absent ones too.
    assert_eq!(q(&[m("env", MatchOp::Regex, "dev|")]), ["2", "3"]);
    assert_eq!(q(&[m("env", MatchOp::Regex, "dev|prod")]), ["1", "2"]);
    // A label no series has.
    assert_eq!(
        q(&[m("nope", MatchOp::Equal, "")]),
        ["1", "2", "3", "4", "5"]
    );
    assert_eq!(q(&[m("nope", MatchOp::Equal, "x")]), Vec::<String>::new());
    assert_eq!(
        q(&[m("nope", MatchOp::NotEqual, "x")]),
        ["1", "2", "3", "4", "5"]
    );
    // Only negative matchers: start from all series.
    assert_eq!(names(&db, &[m("env", MatchOp::Equal, "")]), ["3", "6"]);
    assert_eq!(names(&db, &[m("__name__", MatchOp::NotEqual, "m")]), ["6"]);
    // Combining several.
    assert_eq!(
        q(&[
            m("env", MatchOp::Regex, "pro.*"),
            m("i", MatchOp::NotRegex, "4|5")
        ]),
        ["1"]
    );

    assert_eq!(
        db.label_names(&[], i64::MIN, i64::MAX),
        ["__name__", "env", "i"]
    );
    assert_eq!(
        db.label_names(&[Matcher::equal("__name__", "other")], i64::MIN, i64::MAX),
        ["__name__", "i"]
    );
    assert_eq!(
        db.label_values("env", &[], i64::MIN, i64::MAX),
        ["dev", "pro", "prod", "production"]
    );
    assert_eq!(
        db.label_values(
            "env",
            &[m("env", MatchOp::Regex, "p.*")],
            i64::MIN,
            i64::MAX
        ),
        ["pro", "prod", "production"]
    );
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX),
        ["m", "other"]
    );
}

#[test]
fn time_range_and_sorting() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let mut app = db.appender();
    for i in 0..1000i64 {
        for s in ["b", "a", "c"] {
            app.append(&l(&[("__name__", "m"), ("s", s)]), i * 15_000, i as f64)
                .unwrap();
        }
    }
    app.commit().unwrap();
    let got = db.select(&[Matcher::equal("__name__", "m")], 150_000, 300_000);
    let order: Vec<&str> = got.iter().map(|s| s.labels.get("s").unwrap()).collect();
    assert_eq!(order, ["a", "b", "c"]);
    for s in &got {
        let ts: Vec<i64> = s.samples.iter().map(|x| x.0).collect();
        assert_eq!(ts, (10..=20).map(|i| i * 15_000).collect::<Vec<_>>());
    }
    assert!(db
        .select(&[Matcher::equal("__name__", "m")], 1 << 40, 1 << 41)
        .is_empty());
    // 1000 samples → at least 9 chunks of at most 120 samples, a few more
    // where one reaches the byte target (the first, XOR-coded, does).
    let chunks = db.stats().head_chunks;
    assert!((3 * 9..=3 * 12).contains(&chunks), "{chunks} chunks");
}

#[test]
fn concurrent_appenders_and_readers() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Arc::new(open(tmp.path()));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let db = db.clone();
            std::thread::spawn(move || {
                for i in 0..200i64 {
                    let mut app = db.appender();
                    for s in 0..50 {
                        let labels = l(&[
                            ("__name__", "m"),
                            ("w", &w.to_string()),
                            ("s", &s.to_string()),
                        ]);
                        app.append(&labels, i * 1000, i as f64).unwrap();
                    }
                    app.commit().unwrap();
                }
            })
        })
        .collect();
    let reader = {
        let db = db.clone();
        std::thread::spawn(move || {
            for _ in 0..50 {
                for s in db.select(&[Matcher::equal("__name__", "m")], 0, i64::MAX) {
                    assert!(s.samples.windows(2).all(|w| w[0].0 < w[1].0));
                }
            }
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    reader.join().unwrap();
    let got = db.select(&[Matcher::equal("__name__", "m")], 0, i64::MAX);
    assert_eq!(got.len(), 200);
    assert!(got.iter().all(|s| s.samples.len() == 200));
    assert_eq!(db.stats().samples_appended_total, 40_000);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A sample is accepted only inside the head's window: at most
/// `max_future` (10 minutes by default) ahead of the clock, and no more
/// than half a block behind the head's newest sample. Refused samples
/// create no series and do not move the head's time.
#[test]
fn appends_outside_the_head_window_are_refused_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let now = now_ms();
    let ok = l(&[("__name__", "ok")]);
    let mut app = db.appender();
    app.append(&ok, now, 1.0).unwrap();
    app.commit().unwrap();

    let mut app = db.appender();
    let ahead = l(&[("__name__", "skewed"), ("by", "+1d")]);
    assert_eq!(
        app.append(&ahead, now + 86_400_000, 1.0),
        Err(AppendError::TooFarInFuture)
    );
    let old = l(&[("__name__", "skewed"), ("by", "1970")]);
    assert_eq!(app.append(&old, 0, 1.0), Err(AppendError::OutOfBounds));
    // Half a block (1 h of the default 2 h) behind the newest sample.
    assert_eq!(
        app.append(&old, now - 3_600_001, 1.0),
        Err(AppendError::OutOfBounds)
    );
    // A clock a few minutes fast, or a little behind, is fine.
    app.append(&ok, now + 5 * 60_000, 2.0).unwrap();
    app.append(&l(&[("__name__", "late")]), now - 30 * 60_000, 1.0)
        .unwrap();
    app.commit().unwrap();

    let st = db.stats();
    assert_eq!(st.too_far_in_future_total, 1);
    assert_eq!(st.out_of_bounds_total, 2);
    assert_eq!(st.head_series, 2, "refused samples create no series");
    assert_eq!(st.head_max_time, Some(now + 5 * 60_000));
    assert!(db
        .select(&[Matcher::equal("__name__", "skewed")], i64::MIN, i64::MAX)
        .is_empty());
}

/// A rolled-back batch leaves none of the series it created, in the head
/// (label values, postings) or in the WAL; a series another appender also
/// holds survives the rollback and is logged by that one's commit.
#[test]
fn a_rolled_back_batch_leaves_no_series() {
    let tmp = tempfile::tempdir().unwrap();
    let now = now_ms();
    {
        let db = open(tmp.path());
        let kept = l(&[("__name__", "m"), ("i", "kept")]);
        let mut app = db.appender();
        app.append(&kept, now, 1.0).unwrap();
        app.commit().unwrap();

        let mut app = db.appender();
        for i in 0..1000 {
            app.append(&l(&[("__name__", "m"), ("i", &i.to_string())]), now, 1.0)
                .unwrap();
        }
        app.append(&kept, now + 1, 2.0).unwrap();
        assert_eq!(db.stats().head_series, 1001);
        app.rollback();
        assert_eq!(db.stats().head_series, 1, "{:?}", db.stats());
        assert_eq!(db.label_values("i", &[], i64::MIN, i64::MAX), vec!["kept"]);

        // Dropped uncommitted: the same.
        let mut app = db.appender();
        app.append(&l(&[("__name__", "dropped")]), now, 1.0)
            .unwrap();
        drop(app);
        assert_eq!(db.stats().head_series, 1);

        // Two appenders share a new series: one rolls back, the other
        // commits it.
        let shared = l(&[("__name__", "shared")]);
        let mut a = db.appender();
        let mut b = db.appender();
        a.append(&shared, now, 1.0).unwrap();
        b.append(&shared, now, 1.0).unwrap();
        a.rollback();
        assert_eq!(db.stats().head_series, 2);
        b.commit().unwrap();
        db.close().unwrap();
    }
    // The WAL holds only what was committed.
    let db = open(tmp.path());
    assert_eq!(db.stats().head_series, 2, "{:?}", db.stats());
    let got = db.select(&[Matcher::equal("__name__", "shared")], 0, i64::MAX);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].samples, vec![(now, 1.0)]);
}

/// `series_labels` (what `/api/v1/series` lists) finds the series `select`
/// finds, in the head and in blocks, for any range, from indexes and
/// chunk ranges alone. (The API used `select`, which decodes every sample
/// of every matching series: over 10k series and half an hour the soak's
/// `/api/v1/series` took more than 30 s.)
#[test]
fn series_labels_lists_what_select_finds_without_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(tmp.path());
    let mut app = db.appender();
    for i in 0..1000i64 {
        let mut names = vec!["a", "b", "c"];
        if i < 100 {
            names.push("early");
        }
        if i > 900 {
            names.push("late");
        }
        for s in names {
            app.append(&l(&[("__name__", "m"), ("s", s)]), i * 15_000, i as f64)
                .unwrap();
        }
    }
    app.commit().unwrap();
    // 4 h of data: the first 2 h go to a block.
    db.compact().unwrap();
    assert!(db.stats().blocks >= 1, "{:?}", db.stats());
    let m = [Matcher::equal("__name__", "m")];
    for (mint, maxt, want) in [
        (i64::MIN, i64::MAX, vec!["a", "b", "c", "early", "late"]),
        (0, 1_000_000, vec!["a", "b", "c", "early"]),
        (5_000_000, 6_000_000, vec!["a", "b", "c"]),
        (14_000_000, 15_000_000, vec!["a", "b", "c", "late"]),
        (1 << 40, 1 << 41, vec![]),
    ] {
        let listed: Vec<String> = db
            .series_labels(&m, mint, maxt)
            .iter()
            .map(|l| l.get("s").unwrap().to_string())
            .collect();
        let selected: Vec<String> = db
            .select(&m, mint, maxt)
            .iter()
            .map(|s| s.labels.get("s").unwrap().to_string())
            .collect();
        assert_eq!(listed, want, "[{mint}, {maxt}]");
        assert_eq!(listed, selected, "[{mint}, {maxt}]");
    }
}
