//! Crash safety: a child process (this test binary re-executed with
//! `WASMON_TSDB_CRASH_CHILD` set) ingests continuously with a 100 ms WAL
//! sync interval and small blocks (so compactions and WAL checkpoints happen
//! during the run) and records the last commit it knows to be synced. The
//! parent `kill -9`s it at a random moment, reopens the store and checks
//! that it opens cleanly, that every synced sample is there, and that what
//! survived is a prefix of the commits (each commit is one WAL record). The
//! next round's child continues in the same directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmon::model::Labels;
use wasmon::storage::Matcher;
use wasmon::tsdb::{Db, Options};

const CHILD_ENV: &str = "WASMON_TSDB_CRASH_CHILD";
const SERIES: usize = 50;
const STEP: i64 = 1000;

fn opts() -> Options {
    Options {
        wal_sync_interval: Duration::from_millis(100),
        block_duration: Duration::from_secs(60),
        compaction_interval: Duration::from_millis(50),
        ..Options::default()
    }
}

fn labels(s: usize) -> Labels {
    Labels::from_pairs([("__name__", "crash_test"), ("s", &*s.to_string())])
}

/// Per series, the timestamps found; asserts the values match.
fn contents(db: &Db) -> Vec<Vec<i64>> {
    let got = db.select(
        &[Matcher::equal("__name__", "crash_test")],
        i64::MIN,
        i64::MAX,
    );
    let mut out = vec![Vec::new(); SERIES];
    for s in got {
        let idx: usize = s.labels.get("s").unwrap().parse().unwrap();
        for (t, v) in s.samples {
            assert_eq!(v, (t / STEP) as f64, "series {idx} t={t}");
            out[idx].push(t);
        }
    }
    out
}

/// The child: ingest until killed (or 30 s pass).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let db = Db::open(&dir.join("db"), opts()).unwrap();
    let _maintenance = db.spawn_maintenance();
    let start = contents(&db)[0].last().map_or(0, |t| t / STEP + 1);
    let mut progress = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("progress"))
        .unwrap();
    let mut pending: std::collections::VecDeque<(i64, u64)> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut i = start;
    while Instant::now() < deadline {
        let mut app = db.appender();
        for s in 0..SERIES {
            app.append(&labels(s), i * STEP, i as f64).unwrap();
        }
        app.commit().unwrap();
        pending.push_back((i, db.wal_syncs()));
        // Syncs are serialised: two completed syncs after a commit returned
        // mean one started after it, so the commit is on disk.
        let now = db.wal_syncs();
        let mut synced = None;
        while pending.front().is_some_and(|&(_, s)| now >= s + 2) {
            synced = pending.pop_front().map(|p| p.0);
        }
        if let Some(k) = synced {
            progress.write_all(format!("{k}\n").as_bytes()).unwrap();
        }
        i += 1;
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// [`crash_child`]'s name for the test harness: its path below the test
/// crate's root (`tsdb_crash::crash_child`).
fn crash_child_name() -> String {
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    format!("{module}::crash_child")
}

fn last_synced(path: &Path) -> Option<i64> {
    let s = fs::read_to_string(path).ok()?;
    s.lines().filter_map(|l| l.parse().ok()).next_back()
}

#[test]
fn kill_9_loses_nothing_synced() {
    let _heavy = crate::fixtures::heavy();
    let tmp = tempfile::tempdir().unwrap();
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let mut rnd = seed;
    let mut prev_len = 0;
    for round in 0..3 {
        let progress = tmp.path().join("progress");
        let _ = fs::remove_file(&progress);
        File::create(&progress).unwrap();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &crash_child_name(),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let waited = Instant::now();
        while last_synced(&progress).is_none() {
            assert!(
                waited.elapsed() < Duration::from_secs(20),
                "child never reported a sync"
            );
            assert!(child.try_wait().unwrap().is_none(), "child exited early");
            std::thread::sleep(Duration::from_millis(10));
        }
        rnd = rnd
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = 50 + (rnd >> 33) % 700;
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let synced = last_synced(&progress).unwrap();

        let db = Db::open(&tmp.path().join("db"), opts()).expect("store must open after kill -9");
        let got = contents(&db);
        let n = got[0].len();
        for (s, ts) in got.iter().enumerate() {
            let want: Vec<i64> = (0..ts.len() as i64).map(|i| i * STEP).collect();
            assert_eq!(
                ts, &want,
                "round {round} series {s}: not a gap-free prefix (seed {seed})"
            );
            assert_eq!(
                ts.len(),
                n,
                "round {round}: series {s} differs from series 0 (seed {seed})"
            );
        }
        assert!(
            n as i64 > synced,
            "round {round}: synced commit {synced} lost, only {n} commits recovered (seed {seed})"
        );
        assert!(
            n >= prev_len,
            "round {round}: data from an earlier round was lost"
        );
        prev_len = n;
        let st = db.stats();
        println!(
            "round {round}: killed after {delay} ms, synced {synced}, recovered {n} commits, blocks {}, wal repairs {}",
            st.blocks, st.wal_repairs_total
        );
        db.close().unwrap();
    }
}
