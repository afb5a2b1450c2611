//! Blocks: the head's old data is persisted into immutable block
//! directories, queries merge blocks and head, the WAL is checkpointed,
//! everything survives a restart, and retention deletes the oldest blocks.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmon::model::Labels;
use wasmon::storage::{MatchOp, Matcher};
use wasmon::tsdb::block::BlockMeta;
use wasmon::tsdb::{AppendError, Db, Options};

const H: i64 = 3_600_000;

type Data = BTreeMap<Labels, Vec<(i64, u64)>>;

fn select(db: &Db, mint: i64, maxt: i64) -> Data {
    let any = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    db.select(&[any], mint, maxt)
        .into_iter()
        .map(|s| {
            (
                s.labels,
                s.samples
                    .into_iter()
                    .map(|(t, v)| (t, v.to_bits()))
                    .collect(),
            )
        })
        .collect()
}

fn filter(d: &Data, mint: i64, maxt: i64) -> Data {
    d.iter()
        .map(|(l, s)| {
            (
                l.clone(),
                s.iter()
                    .copied()
                    .filter(|x| x.0 >= mint && x.0 <= maxt)
                    .collect::<Vec<_>>(),
            )
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// 20 series scraped every 15 s (with jitter) for 10 h, plus one series that
/// stops after 3 h.
fn ingest(db: &Db) {
    for i in 0..(10 * H / 15_000) {
        let mut app = db.appender();
        let t = i * 15_000;
        for s in 0..20 {
            let l = Labels::from_pairs([("__name__", "req_total"), ("s", &*s.to_string())]);
            app.append(&l, t + (i * 7 + s) % 13, (i * (s + 1)) as f64)
                .unwrap();
        }
        if t < 3 * H {
            let l = Labels::from_pairs([("__name__", "gone"), ("job", "old")]);
            app.append(&l, t, 1.0).unwrap();
        }
        app.commit().unwrap();
    }
}

fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("meta.json").exists())
        .collect();
    v.sort();
    v
}

fn meta(dir: &Path) -> BlockMeta {
    serde_json::from_slice(&fs::read(dir.join("meta.json")).unwrap()).unwrap()
}

/// The defaults without level compaction, for tests of one level of
/// blocks (the 2 h blocks are never merged).
fn one_level() -> Options {
    Options {
        max_block_duration: Some(Duration::from_secs(2 * 3600)),
        ..Options::default()
    }
}

#[test]
fn persist_query_restart_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), one_level()).unwrap();
    ingest(&db);
    let want = select(&db, i64::MIN, i64::MAX);
    let before = db.stats();
    assert_eq!(before.blocks, 0);
    assert_eq!(before.head_series, 21);

    db.compact().unwrap();
    let st = db.stats();
    // Head spans [0, 10h): windows up to 8h are due (1.5 windows rule).
    assert_eq!(st.blocks, 4, "{st:?}");
    assert_eq!(st.head_series, 20, "the stopped series left the head");
    assert!(st.head_chunks < before.head_chunks / 3);
    let dirs = block_dirs(tmp.path());
    assert_eq!(dirs.len(), 4);
    let metas: Vec<BlockMeta> = dirs.iter().map(|d| meta(d)).collect();
    let ranges: Vec<(i64, i64)> = metas.iter().map(|m| (m.min_time, m.max_time)).collect();
    assert_eq!(
        ranges,
        [(0, 2 * H), (2 * H, 4 * H), (4 * H, 6 * H), (6 * H, 8 * H)]
    );
    let total: u64 = metas.iter().map(|m| m.stats.num_samples).sum();
    assert_eq!(
        total,
        20 * (8 * H / 15_000) as u64 + (3 * H / 15_000) as u64
    );
    for d in &dirs {
        assert!(d.join("index").is_file() && d.join("chunks/000001").is_file());
    }
    assert!(fs::read_dir(tmp.path().join("wal")).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("checkpoint.")));

    // Queries merge blocks and head, for any range.
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    for (a, b) in [
        (H, 9 * H),
        (2 * H, 2 * H + 20_000),
        (7 * H, 8 * H + 60_000),
        (5 * H, 5 * H),
    ] {
        assert_eq!(select(&db, a, b), filter(&want, a, b), "range {a}..{b}");
    }
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX),
        ["gone", "req_total"]
    );
    assert_eq!(
        db.label_values("__name__", &[], 9 * H, 10 * H),
        ["req_total"]
    );
    assert_eq!(db.label_names(&[], 0, H), ["__name__", "job", "s"]);
    assert_eq!(
        db.label_values("job", &[Matcher::equal("__name__", "gone")], 0, 10 * H),
        ["old"]
    );

    // The persisted range is closed for appends.
    let mut app = db.appender();
    let l = Labels::from_pairs([("__name__", "late")]);
    assert_eq!(app.append(&l, 7 * H, 1.0), Err(AppendError::OutOfBounds));
    app.rollback();

    // Restart: blocks are loaded, the head comes back from the checkpoint.
    db.close().unwrap();
    let db = Db::open(tmp.path(), one_level()).unwrap();
    assert_eq!(db.stats().blocks, 4);
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    drop(db);

    // Retention by time, relative to the newest sample (~10 h).
    let opts = Options {
        retention_time: Duration::from_secs(5 * 3600),
        ..one_level()
    };
    let db = Db::open(tmp.path(), opts).unwrap();
    db.compact().unwrap();
    let st = db.stats();
    assert_eq!(st.blocks, 2, "{st:?}");
    assert_eq!(st.blocks_deleted_total, 2);
    assert_eq!(
        select(&db, i64::MIN, i64::MAX),
        filter(&want, 4 * H, i64::MAX)
    );
    assert_eq!(block_dirs(tmp.path()).len(), 2);
    drop(db);

    // Retention by size deletes the oldest blocks first.
    let newest = block_dirs(tmp.path())
        .into_iter()
        .max_by_key(|d| meta(d).min_time)
        .unwrap();
    let opts = Options {
        retention_size: Some(1),
        ..one_level()
    };
    let db = Db::open(tmp.path(), opts).unwrap();
    db.compact().unwrap();
    assert_eq!(db.stats().blocks, 0);
    assert!(!newest.exists());
    // The head is unaffected by retention.
    assert_eq!(select(&db, 8 * H, i64::MAX), filter(&want, 8 * H, i64::MAX));
}

#[test]
fn damaged_block_is_skipped_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), one_level()).unwrap();
    ingest(&db);
    db.compact().unwrap();
    db.close().unwrap();
    let dirs = block_dirs(tmp.path());
    // Truncated index in one block, flipped chunk bytes in another.
    let idx = dirs[0].join("index");
    let len = fs::metadata(&idx).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&idx)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let chunk = dirs[1].join("chunks/000001");
    let mut b = fs::read(&chunk).unwrap();
    for i in (100..b.len()).step_by(97) {
        b[i] ^= 0xff;
    }
    fs::write(&chunk, b).unwrap();
    // Leftover of an interrupted compaction is cleaned up.
    fs::create_dir_all(tmp.path().join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp")).unwrap();

    let db = Db::open(tmp.path(), one_level()).unwrap();
    assert_eq!(db.stats().blocks, 3);
    assert!(!tmp.path().join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp").exists());
    // Queries over the damaged chunks return what is readable, never panic.
    let got = select(&db, i64::MIN, i64::MAX);
    assert!(!got.is_empty());
}

#[test]
fn head_chunks_offloaded_to_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), one_level()).unwrap();
    ingest(&db);
    let want = select(&db, i64::MIN, i64::MAX);
    let before = db.stats();
    let moved = db.offload_head_chunks().unwrap();
    let after = db.stats();
    assert!(moved > 0 && moved as u64 <= before.head_chunks, "{moved}");
    assert!(after.head_chunks_disk_bytes > 0);
    assert!(
        after.head_memory_bytes < before.head_memory_bytes / 2,
        "{} -> {}",
        before.head_memory_bytes,
        after.head_memory_bytes
    );
    assert_eq!(db.offload_head_chunks().unwrap(), 0, "nothing left to move");
    // Reads, compaction (which reads the chunks back) and restart all work.
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    assert_eq!(select(&db, 2 * H, 3 * H), filter(&want, 2 * H, 3 * H));
    db.compact().unwrap();
    assert_eq!(db.stats().blocks, 4);
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    db.offload_head_chunks().unwrap();
    db.close().unwrap();
    let db = Db::open(tmp.path(), one_level()).unwrap();
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    // chunks_head/ is rebuilt from the WAL replay, not reloaded.
    assert!(db.stats().head_chunks_disk_bytes > 0);
}

/// Offloads interleaved with appends and compactions, as the maintenance
/// thread does them: each series' chunks on disk form a chain that grows
/// at one end while truncations cut the other; every range read through
/// it, before and after compaction and a restart, is what was written.
#[test]
fn head_chunk_chains_under_interleaved_offload_and_compaction() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    let mut want: Data = Data::new();
    for i in 0..(7 * H / 15_000) {
        let mut app = db.appender();
        let t = i * 15_000;
        for s in 0..10i64 {
            let l = Labels::from_pairs([("__name__", "g"), ("s", &*s.to_string())]);
            // A float wandering at full precision: chunks cut at the byte
            // target, so there are many per series.
            let v = ((i * (s + 3)) as f64).sin() * 1e3 + s as f64;
            app.append(&l, t, v).unwrap();
            want.entry(l).or_default().push((t, v.to_bits()));
        }
        app.commit().unwrap();
        if i % 37 == 0 {
            db.offload_head_chunks().unwrap();
        }
        if i % 240 == 0 {
            db.compact().unwrap();
        }
    }
    db.offload_head_chunks().unwrap();
    assert!(db.stats().head_chunks_disk_bytes > 0);
    for (lo, hi) in [
        (i64::MIN, i64::MAX),
        (4 * H + 1, 5 * H),
        (6 * H - 60_000, 6 * H + 60_000),
        (5 * H + 30 * 60_000, 5 * H + 31 * 60_000),
    ] {
        assert_eq!(select(&db, lo, hi), filter(&want, lo, hi), "[{lo}, {hi}]");
    }
    db.compact().unwrap();
    assert!(db.stats().blocks >= 2);
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    db.close().unwrap();
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
}

/// Compaction re-encodes a block's chunks as packed chunks (one per series
/// and 2 h range at 15 s): every kind of value survives bit for bit —
/// staleness markers, NaN, ±Inf, -0.0, counter resets, fractions.
#[test]
fn packed_block_chunks_keep_every_value() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    let stale = f64::from_bits(wasmon::model::STALE_NAN_BITS);
    let kinds = ["counter", "gauge", "special", "bytes"];
    for i in 0..(5 * H / 15_000) {
        let mut app = db.appender();
        let t = i * 15_000 + (i * 5) % 3 - 1;
        for k in kinds {
            let v = match k {
                // Resets every 100 scrapes; stale for a while in between.
                "counter" if i % 300 > 250 && i % 300 < 260 => stale,
                "counter" => ((i % 100) * 37) as f64,
                "gauge" => (i as f64 * 0.37).sin(),
                "special" => [
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                    -0.0,
                    stale,
                    1e300,
                    5.0,
                ][i as usize % 7],
                _ => ((i * 13 % 50) * 4096) as f64,
            };
            let l = Labels::from_pairs([("__name__", "m"), ("k", k)]);
            app.append(&l, t, v).unwrap();
        }
        app.commit().unwrap();
    }
    let want = select(&db, i64::MIN, i64::MAX);
    db.compact().unwrap();
    let dirs = block_dirs(tmp.path());
    assert!(!dirs.is_empty());
    for d in &dirs {
        let m = meta(d);
        assert_eq!(
            m.stats.num_chunks, m.stats.num_series,
            "one chunk per series: {m:?}"
        );
    }
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    for (a, b) in [(0, H), (H / 2, 3 * H), (2 * H - 1, 2 * H + 1)] {
        assert_eq!(select(&db, a, b), filter(&want, a, b), "range {a}..{b}");
    }
    drop(db);
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Level compaction with the default ranges (2 h, 6 h, 18 h at 15 d
/// retention): 26 h of scrapes, compacted every simulated 20 minutes as the
/// maintenance thread would, end as one 18 h block plus the 2 h blocks the
/// planner must leave alone; every sample is still there, bit for bit,
/// through merges, a restart, and a crash that left a merged block's
/// parent on disk.
#[test]
fn level_compaction_merges_blocks_and_keeps_every_sample() {
    let _heavy = crate::fixtures::heavy();
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    let mut want = Data::new();
    let mut first_block: Option<PathBuf> = None;
    let saved = tempfile::tempdir().unwrap();
    for i in 0..(26 * H / 15_000) {
        let mut app = db.appender();
        let t = i * 15_000 + (i * 7) % 11;
        for s in 0..8i64 {
            let l = Labels::from_pairs([("__name__", "m"), ("s", &*s.to_string())]);
            // Counters, a decimal gauge and a full-precision float.
            let v = match s % 3 {
                0 => (i * (s + 1)) as f64,
                1 => ((i * 37 + s) % 1000) as f64 / 8.0,
                _ => (i as f64 * 0.01 + s as f64).sin(),
            };
            app.append(&l, t, v).unwrap();
            want.entry(l).or_default().push((t, v.to_bits()));
        }
        // One series lives only through the first 7 h, another starts at
        // 11 h: merged blocks hold series their parents do not share.
        let (gone, late) = (t < 7 * H, t >= 11 * H);
        for (name, on) in [("early", gone), ("late", late)] {
            if on {
                let l = Labels::from_pairs([("__name__", name)]);
                app.append(&l, t, 1.5).unwrap();
                want.entry(l).or_default().push((t, 1.5f64.to_bits()));
            }
        }
        app.commit().unwrap();
        if i % 80 == 79 {
            db.compact().unwrap();
            // Keep a copy of the very first 2 h block, to put it back later
            // as a crash between a merge and its parents' deletion would.
            if first_block.is_none() {
                if let Some(d) = block_dirs(tmp.path()).first() {
                    copy_dir(d, &saved.path().join(d.file_name().unwrap()));
                    first_block = Some(d.clone());
                }
            }
        }
    }
    db.compact().unwrap();
    let st = db.stats();
    let dirs = block_dirs(tmp.path());
    let metas: Vec<BlockMeta> = dirs.iter().map(|d| meta(d)).collect();
    let mut layout: Vec<(i64, i64, u32)> = metas
        .iter()
        .map(|m| (m.min_time / H, m.max_time / H, m.compaction.level))
        .collect();
    layout.sort();
    // [18, 24) never filled a 6 h window while its newest block stayed the
    // newest; [0, 18) went 2 h -> 6 h -> 18 h.
    assert_eq!(
        layout,
        [(0, 18, 3), (18, 20, 1), (20, 22, 1), (22, 24, 1)],
        "{st:?}"
    );
    assert_eq!(st.blocks, 4);
    assert_eq!(st.block_merges_total, 4, "three 6 h merges, one 18 h");
    let big = metas.iter().find(|m| m.compaction.level == 3).unwrap();
    assert_eq!(big.compaction.sources.len(), 9, "{big:?}");
    assert!(big.compaction.sources.windows(2).all(|w| w[0] < w[1]));
    // 10 series (8 + early + late); packed chunks hold at most 2048
    // samples: 18 h at 15 s (4320) -> 3 chunks, 7 h (1680) -> 1.
    assert_eq!(big.stats.num_series, 10);
    let in_big: u64 = want.values().flatten().filter(|(t, _)| *t < 18 * H).count() as u64;
    assert_eq!(big.stats.num_samples, in_big);
    assert_eq!(big.stats.num_chunks, 8 * 3 + 1 + 1);

    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    for (a, b) in [(5 * H, 13 * H), (17 * H + 1, 19 * H), (0, 0)] {
        assert_eq!(select(&db, a, b), filter(&want, a, b), "range {a}..{b}");
    }
    assert_eq!(
        db.label_values("__name__", &[], i64::MIN, i64::MAX),
        ["early", "late", "m"]
    );
    db.close().unwrap();

    // A crash after the 6 h merge wrote its block but before it deleted
    // the parents: the parent is back on disk next to the 18 h block.
    let first = first_block.expect("a block was written");
    assert!(!first.exists(), "merged away");
    copy_dir(&saved.path().join(first.file_name().unwrap()), &first);
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    assert!(!first.exists(), "a superseded parent is removed at open");
    assert_eq!(db.stats().blocks, 4);
    assert_eq!(select(&db, i64::MIN, i64::MAX), want);
    // Nothing more to merge: the planner is stable.
    db.compact().unwrap();
    assert_eq!(db.stats().block_merges_total, 0);
    assert_eq!(block_dirs(tmp.path()).len(), 4);
}

/// A merge over a block with damaged chunks completes (a failing merge
/// would be retried, and fail, every minute): what decodes is kept, and
/// the rest of the series is copied as it was rather than dropped.
#[test]
fn merging_a_damaged_block_keeps_what_is_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), one_level()).unwrap();
    ingest(&db);
    db.compact().unwrap();
    let want = select(&db, i64::MIN, i64::MAX);
    db.close().unwrap();
    let dirs = block_dirs(tmp.path());
    assert_eq!(dirs.len(), 4);
    let by_time = |d: &PathBuf| meta(d).min_time;
    let second = dirs.iter().find(|d| by_time(d) == 2 * H).unwrap();
    let chunk = second.join("chunks/000001");
    let mut b = fs::read(&chunk).unwrap();
    for i in (200..b.len()).step_by(89) {
        b[i] ^= 0x5a;
    }
    fs::write(&chunk, b).unwrap();
    let damaged = select(&Db::open(tmp.path(), one_level()).unwrap(), 0, 6 * H - 1);

    let db = Db::open(tmp.path(), Options::default()).unwrap();
    db.compact().unwrap();
    let st = db.stats();
    assert_eq!((st.blocks, st.block_merges_total), (2, 1), "{st:?}");
    // Exactly what the damaged blocks gave before the merge.
    assert_eq!(select(&db, 0, 6 * H - 1), damaged);
    assert!(!damaged.is_empty());
    // The undamaged rest is untouched.
    assert_eq!(select(&db, 6 * H, i64::MAX), filter(&want, 6 * H, i64::MAX));
}
