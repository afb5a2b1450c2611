//! WAL durability: replay after close, and repair of a torn or corrupt tail
//! (the store opens with a warning and keeps every record before the
//! damage).

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use wasmon::model::Labels;
use wasmon::storage::{MatchOp, Matcher};
use wasmon::tsdb::record::{self, Record};
use wasmon::tsdb::{Db, Options};

type Data = BTreeMap<Labels, Vec<(i64, u64)>>;

fn all(db: &Db) -> Data {
    let any = Matcher::new(MatchOp::Regex, "__name__", ".+").unwrap();
    db.select(&[any], i64::MIN, i64::MAX)
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

fn rng(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Ingests `commits` batches into 10 series (one WAL record per batch after
/// the first) and closes the store.
fn ingest(dir: &Path, commits: i64) -> Data {
    let db = Db::open(dir, Options::default()).unwrap();
    for i in 0..commits {
        let mut app = db.appender();
        for s in 0..10 {
            let l = Labels::from_pairs([("__name__", "m"), ("s", &*s.to_string())]);
            app.append(&l, i * 15_000 + s, (i * s) as f64 + 0.5)
                .unwrap();
        }
        app.commit().unwrap();
    }
    let data = all(&db);
    db.close().unwrap();
    data
}

#[test]
fn replay_after_close_and_after_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let want = ingest(tmp.path(), 500);
    assert_eq!(want.len(), 10);
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(all(&db), want);
    assert_eq!(db.stats().wal_repairs_total, 0);
    // Appends continue after replay; dropping without close also syncs.
    let mut app = db.appender();
    let l = Labels::from_pairs([("__name__", "m"), ("s", "0")]);
    assert!(
        app.append(&l, 0, 1.0).is_err(),
        "order is kept across restarts"
    );
    app.append(&l, 10_000_000, 1.0).unwrap();
    app.commit().unwrap();
    let want = all(&db);
    drop(db);
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    assert_eq!(all(&db), want);
    assert_eq!(db.stats().head_series, 10);
}

/// (start offset, end offset, payload) of each framed record in a segment
/// (the length word's high bit marks a snappy-compressed payload).
fn frames(seg: &[u8]) -> Vec<(usize, usize, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 0;
    let mut compressed = 0;
    while off + 8 <= seg.len() {
        let word = u32::from_le_bytes(seg[off..off + 4].try_into().unwrap());
        let len = (word & !(1 << 31)) as usize;
        let end = off + 8 + len;
        let stored = &seg[off + 8..end];
        let payload = if word & (1 << 31) != 0 {
            compressed += 1;
            snap::raw::Decoder::new().decompress_vec(stored).unwrap()
        } else {
            stored.to_vec()
        };
        out.push((off, end, payload));
        off = end;
    }
    assert!(compressed > out.len() / 2, "sample records are compressed");
    assert_eq!(off, seg.len());
    out
}

/// What a replay of exactly these records must produce.
fn expected(records: &[(usize, usize, Vec<u8>)]) -> Data {
    let mut labels: HashMap<u64, Labels> = HashMap::new();
    let mut out = Data::new();
    for (_, _, p) in records {
        match record::decode(p).unwrap() {
            Record::Series(list) => labels.extend(list),
            Record::Samples(list) => {
                for s in list {
                    let l = labels[&s.r].clone();
                    out.entry(l).or_default().push((s.t, s.v.to_bits()));
                }
            }
        }
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn open_damaged(pristine: &Path, damage: impl FnOnce(&Path)) -> (Db, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(pristine, tmp.path());
    damage(&tmp.path().join("wal/00000000"));
    let db = Db::open(tmp.path(), Options::default()).expect("a damaged WAL must not stop startup");
    (db, tmp)
}

#[test]
fn torn_tail_at_random_offsets() {
    let pristine = tempfile::tempdir().unwrap();
    ingest(pristine.path(), 60);
    let seg = fs::read(pristine.path().join("wal/00000000")).unwrap();
    let recs = frames(&seg);
    assert!(recs.len() > 60);

    let mut seed = 1;
    let mut offsets: Vec<usize> = (0..12)
        .map(|_| (rng(&mut seed) % seg.len() as u64) as usize)
        .collect();
    // Exactly at, just before and just after a record boundary, and the ends.
    let (s, e, _) = &recs[recs.len() / 2];
    offsets.extend([*s, *s + 1, *e - 1, 0, 3, seg.len() - 1]);
    for off in offsets {
        let (db, _tmp) = open_damaged(pristine.path(), |p| {
            fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(off as u64)
                .unwrap();
        });
        let kept: Vec<_> = recs.iter().filter(|r| r.1 <= off).cloned().collect();
        assert_eq!(all(&db), expected(&kept), "truncated at {off}");
        let clean_cut = recs.iter().any(|r| r.1 == off) || off == 0;
        assert_eq!(
            db.stats().wal_repairs_total,
            u64::from(!clean_cut),
            "offset {off}"
        );
        db.close().unwrap();
    }
}

#[test]
fn corrupt_checksum_keeps_earlier_records() {
    let pristine = tempfile::tempdir().unwrap();
    ingest(pristine.path(), 40);
    let seg = fs::read(pristine.path().join("wal/00000000")).unwrap();
    let recs = frames(&seg);
    let mut seed = 99;
    for _ in 0..6 {
        let k = 11 + (rng(&mut seed) as usize % (recs.len() - 11));
        let (start, end, _) = recs[k];
        let pos = start + 8 + (rng(&mut seed) as usize % (end - start - 8));
        let (db, tmp) = open_damaged(pristine.path(), |p| {
            let mut b = fs::read(p).unwrap();
            b[pos] ^= 0x40;
            fs::write(p, b).unwrap();
        });
        assert_eq!(
            all(&db),
            expected(&recs[..k]),
            "record {k} corrupted at {pos}"
        );
        assert_eq!(db.stats().wal_repairs_total, 1);
        // The repaired segment now ends at the last good record, and new
        // appends after the repair survive the next restart.
        assert_eq!(
            fs::metadata(tmp.path().join("wal/00000000")).unwrap().len(),
            start as u64
        );
        let mut app = db.appender();
        let l = Labels::from_pairs([("__name__", "after"), ("k", &*k.to_string())]);
        app.append(&l, 1 << 40, 1.0).unwrap();
        app.commit().unwrap();
        let want = all(&db);
        db.close().unwrap();
        let db = Db::open(tmp.path(), Options::default()).unwrap();
        assert_eq!(all(&db), want);
        assert_eq!(db.stats().wal_repairs_total, 0);
    }
    // A garbage length field is corruption too.
    let (start, _, _) = recs[20];
    let (db, _tmp) = open_damaged(pristine.path(), |p| {
        let mut b = fs::read(p).unwrap();
        b[start..start + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        fs::write(p, b).unwrap();
    });
    assert_eq!(all(&db), expected(&recs[..20]));
}
