//! Write-ahead log: numbered segment files in `DIR/wal/`, plus at most one
//! checkpoint that replaces the segments already persisted into blocks.
//!
//! Each record on disk is `len: u32 LE | crc32(payload): u32 LE | payload`.
//! The high bit of `len` says the payload is snappy-compressed (raw snappy,
//! per record, as Prometheus' WAL does; kept only when it is smaller): the
//! checksum covers the stored bytes, so damage is found before
//! decompressing, and readers hand out the decompressed record, so callers
//! never see the difference. Logs written before compression existed have
//! the bit clear and read as before. (A build from before this change reads
//! a compressed record as one of absurd length and truncates the log there:
//! downgrades lose the WAL, not the blocks.)
//! Appends go to an in-memory buffer that is written to the segment file
//! when it grows past [`FLUSH_AT`] or when the log is synced; `sync` also
//! fdatasyncs. The database calls `sync` on its `wal_sync_interval` (or on
//! every commit when that is zero), so a crash loses at most one interval.
//!
//! When the disk refuses writes (full, read-only, I/O errors), what was
//! written of the buffer is dropped from it and the rest kept, so a later
//! write continues exactly where the failed one stopped (no record is
//! written twice or torn in the middle of a segment); a record that cannot
//! be written once the buffer is full is refused ([`Wal::log`] fails and
//! its commit with it), and every failure and the recovery are reported to
//! the store's [`WriteHealth`].
//!
//! Reading is forgiving by design: the first record whose header is cut
//! short, whose length is absurd or whose checksum does not match ends the
//! replay; the segment is truncated there and later segments are removed
//! (their records may refer to series defined in the lost part), with a
//! warning. A torn tail after `kill -9` or a power cut therefore never
//! stops the agent from starting.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use parking_lot::Mutex;

use super::health::{WriteHealth, WriteKind};

/// Buffered bytes that trigger a write to the segment file.
pub const FLUSH_AT: usize = 64 * 1024;
/// Larger records are treated as corruption when reading.
pub const MAX_RECORD: usize = 256 << 20;

const CHECKPOINT_PREFIX: &str = "checkpoint.";

pub fn segment_name(n: u32) -> String {
    format!("{n:08}")
}

pub fn checkpoint_name(n: u32) -> String {
    format!("{CHECKPOINT_PREFIX}{n:08}")
}

/// Flag in a record's length word: the payload is snappy-compressed.
const COMPRESSED: u32 = 1 << 31;

/// Frames a payload into `out`, compressed when that makes it smaller.
pub fn frame(out: &mut Vec<u8>, payload: &[u8]) {
    let compressed = snap::raw::Encoder::new()
        .compress_vec(payload)
        .ok()
        .filter(|c| c.len() < payload.len());
    let (stored, flag) = match &compressed {
        Some(c) => (&c[..], COMPRESSED),
        None => (payload, 0),
    };
    out.extend_from_slice(&(stored.len() as u32 | flag).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(stored).to_le_bytes());
    out.extend_from_slice(stored);
}

/// Segment and checkpoint files found in a WAL directory.
#[derive(Debug, Default)]
pub struct Listing {
    pub segments: Vec<u32>,
    pub checkpoint: Option<u32>,
}

pub fn list(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(l),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for e in rd {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(n) = name.strip_prefix(CHECKPOINT_PREFIX) {
            if let Ok(n) = n.parse::<u32>() {
                l.checkpoint = l.checkpoint.max(Some(n));
            }
        } else if name.len() == 8 {
            if let Ok(n) = name.parse::<u32>() {
                l.segments.push(n);
            }
        }
    }
    l.segments.sort_unstable();
    Ok(l)
}

/// What a replay found.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub records: u64,
    pub last_segment: Option<u32>,
    /// Torn or corrupt places that were cut off.
    pub repairs: u64,
}

/// Reads framed records from `r` until EOF, the first bad record, or `f`
/// returning false. `f` gets each payload and the offset just past its
/// record. Returns the offset of the end of the last good record and what
/// was wrong, if anything.
fn read_records(
    r: impl Read,
    f: &mut dyn FnMut(&[u8], u64) -> bool,
    stats: &mut ReplayStats,
) -> (u64, Option<String>) {
    let mut r = BufReader::with_capacity(1 << 20, r);
    let mut off = 0u64;
    let mut payload = Vec::new();
    let mut plain = Vec::new();
    let mut decoder = snap::raw::Decoder::new();
    loop {
        let mut hdr = [0u8; 8];
        match read_full(&mut r, &mut hdr) {
            Ok(0) => return (off, None),
            Ok(8) => {}
            Ok(n) => return (off, Some(format!("torn record header ({n} of 8 bytes)"))),
            Err(e) => return (off, Some(format!("read error: {e}"))),
        }
        let word = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let compressed = word & COMPRESSED != 0;
        let len = (word & !COMPRESSED) as usize;
        let crc = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]);
        if len == 0 || len > MAX_RECORD {
            return (off, Some(format!("invalid record length {len}")));
        }
        payload.resize(len, 0);
        match read_full(&mut r, &mut payload) {
            Ok(n) if n == len => {}
            Ok(n) => return (off, Some(format!("torn record ({n} of {len} bytes)"))),
            Err(e) => return (off, Some(format!("read error: {e}"))),
        }
        if crc32fast::hash(&payload) != crc {
            return (off, Some("record checksum mismatch".into()));
        }
        let record = if compressed {
            match snap::raw::decompress_len(&payload) {
                Ok(n) if n > 0 && n <= MAX_RECORD => plain.resize(n, 0),
                Ok(n) => return (off, Some(format!("invalid decompressed record length {n}"))),
                Err(e) => return (off, Some(format!("undecodable compressed record: {e}"))),
            }
            match decoder.decompress(&payload, &mut plain) {
                Ok(n) if n == plain.len() => &plain[..],
                Ok(n) => {
                    return (
                        off,
                        Some(format!(
                            "compressed record decoded to {n} of {} bytes",
                            plain.len()
                        )),
                    )
                }
                Err(e) => return (off, Some(format!("undecodable compressed record: {e}"))),
            }
        } else {
            &payload[..]
        };
        stats.records += 1;
        off += 8 + len as u64;
        if !f(record, off) {
            return (off, None);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Replays the checkpoint and the segments after it, calling `f` with each
/// record payload in order, and repairs a torn or corrupt tail.
pub fn replay(dir: &Path, f: &mut dyn FnMut(&[u8])) -> Result<ReplayStats> {
    let f = &mut |p: &[u8], _| {
        f(p);
        true
    };
    let mut stats = ReplayStats::default();
    let listing = list(dir)?;
    let mut first_segment = 0;
    if let Some(cp) = listing.checkpoint {
        let path = dir.join(checkpoint_name(cp));
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let (_, err) = read_records(file, f, &mut stats);
        if let Some(err) = err {
            // Checkpoints are written whole and renamed into place, so this is
            // real damage; keep what was read and go on with the segments.
            tracing::warn!(path = %path.display(), %err, "corrupt WAL checkpoint, using its readable part");
            stats.repairs += 1;
        }
        first_segment = cp + 1;
        stats.last_segment = Some(cp);
    }
    let segments: Vec<u32> = listing
        .segments
        .into_iter()
        .filter(|&s| s >= first_segment)
        .collect();
    for (i, &seg) in segments.iter().enumerate() {
        let path = dir.join(segment_name(seg));
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let (good, err) = read_records(file, f, &mut stats);
        stats.last_segment = Some(seg);
        if let Some(err) = err {
            stats.repairs += 1;
            let later = &segments[i + 1..];
            tracing::warn!(
                segment = %path.display(),
                offset = good,
                dropped_bytes = size.saturating_sub(good),
                dropped_later_segments = later.len(),
                %err,
                "WAL ends in a torn or corrupt record; truncating it"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .with_context(|| format!("opening {} to repair it", path.display()))?;
            file.set_len(good)
                .and_then(|_| file.sync_all())
                .with_context(|| format!("truncating {}", path.display()))?;
            for &s in later {
                let p = dir.join(segment_name(s));
                if let Err(e) = fs::remove_file(&p) {
                    tracing::warn!(path = %p.display(), error = %e, "removing WAL segment after corruption");
                }
            }
            break;
        }
    }
    Ok(stats)
}

/// Reads, strictly, the checkpoint and the segments up to `upto`: the input
/// of a new checkpoint. Any damage is an error (the caller then keeps the
/// segments); `f` failing stops the read with its error.
pub fn read_upto(dir: &Path, upto: u32, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let listing = list(dir)?;
    let mut files = Vec::new();
    let cp = listing.checkpoint.filter(|&c| c <= upto);
    if let Some(c) = cp {
        files.push(dir.join(checkpoint_name(c)));
    }
    for s in listing.segments {
        if s <= upto && cp.is_none_or(|c| s > c) {
            files.push(dir.join(segment_name(s)));
        }
    }
    for path in files {
        let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut failed = None;
        let (_, err) = read_records(
            file,
            &mut |p, _| match f(p) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            },
            &mut ReplayStats::default(),
        );
        if let Some(e) = failed {
            return Err(e);
        }
        if let Some(err) = err {
            anyhow::bail!("{}: {err}", path.display());
        }
    }
    Ok(())
}

/// Reads the records of one WAL file (a segment or a checkpoint) from byte
/// `offset` on, without repairing anything: for readers that tail the log
/// while it is written (remote write). `f` gets each payload and the offset
/// just past its record (where to resume); returning false stops. Returns
/// the offset after the last complete record and, if reading stopped on an
/// incomplete or bad record, why (at the live tail that only means "not
/// written yet").
pub fn read_file_from(
    path: &Path,
    offset: u64,
    f: &mut dyn FnMut(&[u8], u64) -> bool,
) -> std::io::Result<(u64, Option<String>)> {
    use std::io::{Seek, SeekFrom};
    let mut file = File::open(path)?;
    file.seek(SeekFrom::Start(offset))?;
    let (end, err) = read_records(
        file,
        &mut |p, off| f(p, offset + off),
        &mut ReplayStats::default(),
    );
    Ok((offset + end, err))
}

/// Where [`Wal::checkpoint`]'s producer writes record payloads.
pub type RecordSink<'a> = dyn FnMut(&[u8]) -> Result<()> + 'a;

struct Writer {
    file: Arc<File>,
    seg: u32,
    seg_bytes: u64,
    buf: Vec<u8>,
}

impl Writer {
    /// Writes the buffer out; returns how many bytes were written.
    fn flush(&mut self) -> Result<usize> {
        let n = self.buf.len();
        write_out(&mut &*self.file, &mut self.buf)
            .with_context(|| format!("writing WAL segment {}", segment_name(self.seg)))?;
        Ok(n)
    }
}

/// Writes `buf` to `out` and empties it. On an error the bytes that were
/// written are removed from `buf`, so that writing it again continues
/// where this attempt stopped.
fn write_out(out: &mut impl Write, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut done = 0;
    let result = loop {
        if done == buf.len() {
            break Ok(());
        }
        match out.write(&buf[done..]) {
            Ok(0) => break Err(std::io::Error::from(ErrorKind::WriteZero)),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    buf.drain(..done);
    result
}

/// The WAL writer. Thread-safe; records are appended in call order.
pub struct Wal {
    dir: PathBuf,
    segment_size: u64,
    w: Mutex<Writer>,
    /// Serialises syncs so that the sync counter means something (see
    /// [`Wal::syncs`]).
    sync_lock: Mutex<()>,
    syncs: AtomicU64,
    health: Arc<WriteHealth>,
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

fn create_segment(dir: &Path, n: u32) -> Result<File> {
    let path = dir.join(segment_name(n));
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating WAL segment {}", path.display()))?;
    sync_dir(dir)?;
    Ok(f)
}

impl Wal {
    /// Starts writing a fresh segment numbered `next` (after replay, one past
    /// the last segment read: a possibly repaired segment is never appended to).
    pub fn create(dir: &Path, next: u32, segment_size: u64) -> Result<Wal> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let file = create_segment(dir, next)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_size: segment_size.max(64 * 1024),
            w: Mutex::new(Writer {
                file: Arc::new(file),
                seg: next,
                seg_bytes: 0,
                buf: Vec::with_capacity(FLUSH_AT * 2),
            }),
            sync_lock: Mutex::new(()),
            syncs: AtomicU64::new(0),
            health: Arc::default(),
        })
    }

    /// Reports write failures and recoveries to `health` (the store's).
    pub fn with_health(mut self, health: Arc<WriteHealth>) -> Wal {
        self.health = health;
        self
    }

    pub fn health(&self) -> &Arc<WriteHealth> {
        &self.health
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `r` reported to the health: a write that wrote bytes recovers the
    /// WAL (one that had nothing to write proves nothing).
    fn report<T>(&self, r: Result<T>, wrote: impl FnOnce(&T) -> bool) -> Result<T> {
        match &r {
            Ok(v) if wrote(v) => self.health.succeeded(WriteKind::Wal),
            Ok(_) => {}
            Err(e) => self.health.failed(WriteKind::Wal, e),
        }
        r
    }

    /// Appends one record. With `sync`, writes and fdatasyncs before
    /// returning. An error means the record is not in the log: it could
    /// not be written while the buffer was full (or, with `sync`, synced).
    pub fn log(&self, payload: &[u8], sync: bool) -> Result<()> {
        // Compressed outside the lock: appenders of different targets
        // commit in parallel.
        let mut framed = Vec::with_capacity(payload.len() / 2 + 16);
        frame(&mut framed, payload);
        {
            let mut w = self.w.lock();
            let size = framed.len() as u64;
            if w.seg_bytes > 0 && w.seg_bytes + size > self.segment_size {
                let cut = self.cut_locked(&mut w);
                self.report(cut, |_| true)?;
            }
            w.buf.extend_from_slice(&framed);
            w.seg_bytes += size;
            if w.buf.len() >= FLUSH_AT && !sync {
                let flushed = w.flush();
                if let Err(e) = self.report(flushed, |&n| n > 0) {
                    // Refuse this record if none of it was written (the
                    // older ones stay buffered for the next attempt); part
                    // of it on disk must be completed, so it stays.
                    if w.buf.len() >= framed.len() {
                        let keep = w.buf.len() - framed.len();
                        w.buf.truncate(keep);
                        w.seg_bytes -= size;
                        return Err(e);
                    }
                }
            }
        }
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes buffered records and fdatasyncs the current segment.
    pub fn sync(&self) -> Result<()> {
        let _s = self.sync_lock.lock();
        let (file, wrote) = {
            let mut w = self.w.lock();
            let flushed = w.flush();
            (w.file.clone(), self.report(flushed, |_| false)?)
        };
        let synced = file.sync_data().context("syncing WAL segment");
        self.report(synced, |_| wrote > 0)?;
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Completed syncs. Syncs are serialised, so once this has grown by two
    /// since a commit returned, that commit is on disk.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    fn cut_locked(&self, w: &mut Writer) -> Result<u32> {
        w.flush()?;
        w.file.sync_data().context("syncing WAL segment")?;
        let old = w.seg;
        let file = create_segment(&self.dir, old + 1)?;
        w.file = Arc::new(file);
        w.seg = old + 1;
        w.seg_bytes = 0;
        Ok(old)
    }

    /// Closes the current segment and starts the next; returns the closed
    /// segment's number.
    pub fn cut_segment(&self) -> Result<u32> {
        let mut w = self.w.lock();
        let cut = self.cut_locked(&mut w);
        self.report(cut, |_| true)
    }

    /// Writes `checkpoint.<upto>` with the records `write` produces, then
    /// deletes segments `<= upto` and older checkpoints. The checkpoint is
    /// written to a temporary file, synced and renamed, so a crash leaves
    /// either the old state or the new one.
    pub fn checkpoint(
        &self,
        upto: u32,
        write: &mut dyn FnMut(&mut RecordSink<'_>) -> Result<()>,
    ) -> Result<()> {
        let final_path = self.dir.join(checkpoint_name(upto));
        let tmp = self.dir.join(format!("{}.tmp", checkpoint_name(upto)));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut framed = Vec::new();
        write(&mut |payload: &[u8]| {
            framed.clear();
            frame(&mut framed, payload);
            out.write_all(&framed).context("writing WAL checkpoint")
        })?;
        let file = out
            .into_inner()
            .map_err(|e| e.into_error())
            .context("writing WAL checkpoint")?;
        file.sync_all().context("syncing WAL checkpoint")?;
        drop(file);
        fs::rename(&tmp, &final_path).with_context(|| format!("renaming {}", tmp.display()))?;
        sync_dir(&self.dir)?;
        let listing = list(&self.dir)?;
        for s in listing.segments.into_iter().filter(|&s| s <= upto) {
            let _ = fs::remove_file(self.dir.join(segment_name(s)));
        }
        for e in fs::read_dir(&self.dir)?.flatten() {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some(n) = name.strip_prefix(CHECKPOINT_PREFIX) {
                let n = n.trim_end_matches(".tmp");
                if n.parse::<u32>().is_ok_and(|n| n < upto) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        Ok(())
    }

    /// Bytes of all WAL files on disk plus the unwritten buffer.
    pub fn size_bytes(&self) -> u64 {
        let buffered = self.w.lock().buf.len() as u64;
        dir_size(&self.dir) + buffered
    }
}

/// Total size of the regular files directly in `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Removes leftover temporary checkpoints from an interrupted run.
pub fn remove_tmp(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().to_str().is_some_and(|n| n.ends_with(".tmp")) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(dir: &Path) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        replay(dir, &mut |p| out.push(p.to_vec())).unwrap();
        out
    }

    /// Incompressible bytes (xorshift), so records keep their size on disk.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn write_replay_cut_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("wal");
        let wal = Wal::create(&dir, 0, 64 * 1024).unwrap();
        for i in 0..100u32 {
            wal.log(&noise(i as u64, 1000 + i as usize), false).unwrap();
        }
        wal.sync().unwrap();
        assert!(list(&dir).unwrap().segments.len() > 1);
        let got = records(&dir);
        assert_eq!(got.len(), 100);
        assert_eq!(got[42], noise(42, 1042));

        let upto = wal.cut_segment().unwrap();
        wal.log(b"after", true).unwrap();
        wal.checkpoint(upto, &mut |w| w(b"cp")).unwrap();
        let got = records(&dir);
        assert_eq!(got, vec![b"cp".to_vec(), b"after".to_vec()]);
        assert_eq!(list(&dir).unwrap().segments, vec![upto + 1]);
    }

    /// A disk that takes `room` more bytes, then refuses.
    struct Filling {
        written: Vec<u8>,
        room: usize,
    }

    impl Write for Filling {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(27)); // EFBIG
            }
            // Short writes, as at a file size limit.
            let n = b.len().min(self.room).min(7);
            self.written.extend_from_slice(&b[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A write that fails part way keeps exactly the unwritten rest, so
    /// the retry after the disk recovers continues the same byte stream
    /// (no record written twice, none torn).
    #[test]
    fn a_failed_write_resumes_where_it_stopped() {
        let mut buf: Vec<u8> = (0..100u8).collect();
        let mut disk = Filling {
            written: Vec::new(),
            room: 40,
        };
        assert!(write_out(&mut disk, &mut buf).is_err());
        assert_eq!(disk.written.len(), 40);
        assert_eq!(buf, (40..100u8).collect::<Vec<_>>());
        buf.extend_from_slice(&[200, 201]);
        disk.room = 1000;
        write_out(&mut disk, &mut buf).unwrap();
        assert!(buf.is_empty());
        let mut want: Vec<u8> = (0..100u8).collect();
        want.extend_from_slice(&[200, 201]);
        assert_eq!(disk.written, want);
    }

    #[test]
    fn torn_tail_is_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let wal = Wal::create(&dir, 0, 1 << 20).unwrap();
        // Incompressible records, so each is stored as 8 + 100 bytes.
        for i in 0..10u64 {
            wal.log(&noise(i + 7, 100), false).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let seg = dir.join(segment_name(0));
        let f = OpenOptions::new().write(true).open(&seg).unwrap();
        f.set_len(108 * 9 + 50).unwrap();
        assert_eq!(records(&dir).len(), 9);
        assert_eq!(fs::metadata(&seg).unwrap().len(), 108 * 9);
    }

    #[test]
    fn records_are_compressed_transparently() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // A log written before compression: plain frames only.
        let mut legacy = Vec::new();
        for i in 0..3u8 {
            let p = vec![i; 50];
            legacy.extend_from_slice(&(p.len() as u32).to_le_bytes());
            legacy.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
            legacy.extend_from_slice(&p);
        }
        fs::write(dir.join(segment_name(0)), &legacy).unwrap();
        let wal = Wal::create(&dir, 1, 1 << 20).unwrap();
        let recs: Vec<Vec<u8>> = (0..50u32)
            .map(|i| {
                (0..2000u32)
                    .flat_map(|j| ((i * 1000 + j / 7) as f64).to_bits().to_le_bytes())
                    .collect()
            })
            .collect();
        for r in &recs {
            wal.log(r, false).unwrap();
        }
        wal.log(b"x", false).unwrap(); // too small to gain: stored plain
        wal.sync().unwrap();
        let seg1 = fs::metadata(dir.join(segment_name(1))).unwrap().len();
        let raw: usize = recs.iter().map(|r| r.len() + 8).sum();
        assert!(seg1 * 3 < raw as u64, "{seg1} bytes on disk for {raw}");
        let mut want: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 50]).collect();
        want.extend(recs.iter().cloned());
        want.push(b"x".to_vec());
        assert_eq!(records(&dir), want);
        let upto = wal.cut_segment().unwrap();
        let mut via_read_upto = Vec::new();
        read_upto(&dir, upto, &mut |p| {
            via_read_upto.push(p.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(via_read_upto, want);
        // Checkpoints are compressed the same way.
        wal.checkpoint(upto, &mut |w| recs.iter().try_for_each(|r| w(r)))
            .unwrap();
        assert_eq!(records(&dir), recs);
        let cp = fs::metadata(dir.join(checkpoint_name(upto))).unwrap().len();
        assert!(cp * 3 < raw as u64);
        drop(wal);

        // A flipped bit inside a compressed record fails its checksum: the
        // log is cut there, not decoded into garbage.
        let wal = Wal::create(&dir, upto + 1, 1 << 20).unwrap();
        for r in &recs[..4] {
            wal.log(r, false).unwrap();
        }
        wal.sync().unwrap();
        drop(wal);
        let seg = dir.join(segment_name(upto + 1));
        let mut bytes = fs::read(&seg).unwrap();
        let first = (u32::from_le_bytes(bytes[..4].try_into().unwrap()) & !COMPRESSED) as usize;
        assert!(u32::from_le_bytes(bytes[..4].try_into().unwrap()) & COMPRESSED != 0);
        bytes[8 + first + 8 + 3] ^= 0x10;
        fs::write(&seg, &bytes).unwrap();
        let got = records(&dir);
        assert_eq!(got.len(), recs.len() + 1);
        assert_eq!(got[recs.len()], recs[0]);
        assert_eq!(fs::metadata(&seg).unwrap().len(), 8 + first as u64);
    }
}
