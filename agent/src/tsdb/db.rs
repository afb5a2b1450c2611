//! The database: head + WAL + blocks, appenders, queries, compaction,
//! retention and the background maintenance thread.
//!
//! Write path: [`Appender::append`] checks each sample against the head's
//! window (Prometheus' out-of-bounds, and [`Options::max_future`] ahead of
//! the clock) and the series' last sample, and buffers;
//! [`Appender::commit`] logs the batch's new series and one WAL samples
//! record, then applies the samples to the head (visible to queries from
//! then on). A rolled-back batch removes the series it created.
//! [`Db::compact`] persists the head's oldest `block_duration` window into a
//! block once the head spans 1.5 windows (as Prometheus does, leaving half a
//! window for late samples), drops those chunks from the head, replaces the
//! WAL segments with a checkpoint of what the head still holds, and applies
//! retention. Queries merge the overlapping blocks and the head.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use parking_lot::{Mutex, RwLock};

use super::block::{self, Block};
use super::chunkenc::ChunkIter;
use super::head::Head;
use super::head_chunks::HeadChunks;
use super::health::{WriteHealth, WriteKind};
use super::levels;
use super::postings::postings_for_matchers;
use super::record::{self, Record, RefSample};
use super::series::{MemSeries, SeriesRef, SeriesState};
use super::wal::{self, Wal};
use super::AppendError;
use crate::clock::now_ms;
use crate::model::Labels;
use crate::storage::Matcher;

/// Storage options (`[storage]` in the agent config maps onto these).
#[derive(Debug, Clone)]
pub struct Options {
    /// Blocks whose newest sample is older than this (relative to the newest
    /// sample in the store) are deleted.
    pub retention_time: Duration,
    /// Oldest blocks are deleted while blocks + WAL exceed this many bytes.
    pub retention_size: Option<u64>,
    /// Time range of a block, and the chunk cutting boundary.
    pub block_duration: Duration,
    /// Adjacent blocks are merged into blocks of 3×, 9×, ...
    /// `block_duration` up to this range; `None`: 10% of the retention
    /// time, at most 31 days (Prometheus' defaults). Set it to
    /// `block_duration` to never merge.
    pub max_block_duration: Option<Duration>,
    /// How often the WAL is fsynced; zero = on every commit.
    pub wal_sync_interval: Duration,
    /// WAL segment files are cut at this size.
    pub wal_segment_size: u64,
    /// How often the maintenance thread runs [`Db::compact`].
    pub compaction_interval: Duration,
    /// Move closed head chunks from the heap to `DIR/chunks_head/` files
    /// (every `head_offload_interval`), keeping resident memory per series
    /// flat as the head fills.
    pub head_chunks_on_disk: bool,
    pub head_offload_interval: Duration,
    /// Samples further ahead of the wall clock than this (at most a quarter
    /// of `block_duration`, see [`Options::max_future_ms`]) are rejected
    /// as too far in the future. The head's newest sample drives
    /// compaction, retention and the oldest time an append may take (half
    /// a block behind it, as in Prometheus), so without a bound one target
    /// with a clock a day ahead would close the head to every other
    /// target. Ten minutes is the creation grace period Cortex, Mimir and
    /// Loki use: ample for skewed but working clocks.
    pub max_future: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            retention_time: Duration::from_secs(15 * 24 * 3600),
            retention_size: None,
            block_duration: Duration::from_secs(2 * 3600),
            max_block_duration: None,
            wal_sync_interval: Duration::from_secs(1),
            wal_segment_size: 128 << 20,
            compaction_interval: Duration::from_secs(60),
            head_chunks_on_disk: true,
            head_offload_interval: Duration::from_secs(10),
            max_future: Duration::from_secs(10 * 60),
        }
    }
}

/// A series returned by [`Db::select`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// Figures for `/metrics` and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub head_series: u64,
    pub head_chunks: u64,
    pub head_min_time: Option<i64>,
    pub head_max_time: Option<i64>,
    /// Estimated heap bytes of the head (series, labels, chunks, index).
    pub head_memory_bytes: u64,
    /// Bytes of closed head chunks moved to `chunks_head/` files.
    pub head_chunks_disk_bytes: u64,
    pub samples_appended_total: u64,
    pub out_of_order_total: u64,
    pub out_of_bounds_total: u64,
    pub too_far_in_future_total: u64,
    pub duplicate_total: u64,
    /// Samples refused because their commit could not be written to the
    /// WAL.
    pub write_failed_total: u64,
    pub series_created_total: u64,
    pub series_removed_total: u64,
    pub wal_bytes: u64,
    pub wal_syncs_total: u64,
    /// Torn or corrupt WAL tails cut off at open.
    pub wal_repairs_total: u64,
    pub blocks: u64,
    pub blocks_bytes: u64,
    /// Blocks + WAL.
    pub bytes_on_disk: u64,
    pub compactions_total: u64,
    /// Level compactions: blocks merged into one larger block.
    pub block_merges_total: u64,
    pub blocks_deleted_total: u64,
    /// Failed writes by kind ([`WriteKind::ALL`] order).
    pub write_failures_total: [u64; 3],
    /// Unix ms of the last failed write.
    pub last_write_failure_ms: Option<i64>,
}

struct Inner {
    dir: PathBuf,
    opts: Options,
    head: Head,
    wal: Wal,
    /// Sorted by min time; never overlapping.
    blocks: RwLock<Vec<Arc<Block>>>,
    compact_lock: Mutex<()>,
    closed: AtomicBool,
    wal_repairs: u64,
    compactions: AtomicU64,
    merges: AtomicU64,
    blocks_deleted: AtomicU64,
    health: Arc<WriteHealth>,
}

/// The embedded time-series database. `Send + Sync`; share it by `Arc` or
/// by reference.
pub struct Db {
    inner: Arc<Inner>,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

impl Options {
    /// The block ranges level compaction merges into (the first is
    /// `block_duration`).
    pub fn block_ranges(&self) -> Vec<i64> {
        const MAX_DEFAULT: Duration = Duration::from_secs(31 * 24 * 3600);
        let max = self
            .max_block_duration
            .unwrap_or_else(|| (self.retention_time / 10).min(MAX_DEFAULT));
        levels::ranges(ms(self.block_duration), ms(max))
    }

    /// How far ahead of the wall clock a sample may be: `max_future`, at
    /// most a quarter of `block_duration` — so that the head's newest
    /// sample stays within a quarter block of the clock, and samples of
    /// targets with a correct clock (which must be at most half a block
    /// behind it) keep a quarter block of slack.
    pub fn max_future_ms(&self) -> i64 {
        let cap = ms(self.block_duration) / 4;
        i64::try_from(self.max_future.as_millis())
            .unwrap_or(i64::MAX)
            .min(cap)
    }
}

/// Deletes the parents of merged blocks that a crash left behind (see
/// [`levels::superseded`]); returns the blocks to keep.
fn drop_superseded(blocks: Vec<Arc<Block>>) -> Vec<Arc<Block>> {
    let metas: Vec<(u32, &[String])> = blocks
        .iter()
        .map(|b| (b.meta.compaction.level, &b.meta.compaction.sources[..]))
        .collect();
    let doomed = levels::superseded(&metas);
    if doomed.is_empty() {
        return blocks;
    }
    let mut keep = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.into_iter().enumerate() {
        if !doomed.contains(&i) {
            keep.push(b);
            continue;
        }
        tracing::info!(block = %b.meta.ulid, "removing a block already merged into another (interrupted merge)");
        if let Err(e) = Block::delete(&b.dir) {
            // Its data is in the merged block: queries merge duplicates,
            // so keeping it loaded is safe, only wasteful.
            tracing::warn!(block = %b.meta.ulid, error = %format!("{e:#}"), "could not remove a merged block's parent");
            keep.push(b);
        }
    }
    keep
}

impl Db {
    /// Opens (or creates) the store in `dir`: loads blocks, replays the WAL.
    pub fn open(dir: &Path, opts: Options) -> Result<Db> {
        let started = Instant::now();
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut blocks = Vec::new();
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            if name.ends_with(".tmp") || name.ends_with(".deleted") {
                tracing::info!(path = %path.display(), "removing leftover from an interrupted compaction");
                let _ = fs::remove_dir_all(&path);
                continue;
            }
            if !block::is_ulid(&name) || !path.is_dir() {
                continue;
            }
            match Block::open(&path) {
                Ok(b) => blocks.push(Arc::new(b)),
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %format!("{e:#}"), "skipping unreadable block")
                }
            }
        }
        blocks.sort_by_key(|b| b.meta.min_time);
        let blocks = drop_superseded(blocks);

        let disk = if opts.head_chunks_on_disk {
            Some(HeadChunks::open(&dir.join("chunks_head"))?)
        } else {
            None
        };
        let head = Head::new(ms(opts.block_duration), disk);
        if let Some(maxt) = blocks.iter().map(|b| b.meta.max_time).max() {
            head.set_min_valid_time(maxt);
        }
        let wal_dir = dir.join("wal");
        fs::create_dir_all(&wal_dir).with_context(|| format!("creating {}", wal_dir.display()))?;
        wal::remove_tmp(&wal_dir);
        let mut refs: HashMap<u64, Arc<MemSeries>> = HashMap::new();
        let (mut samples, mut unknown, mut bad, mut future) = (0u64, 0u64, 0u64, 0u64);
        let mvt = head.min_valid_time();
        // A log written before samples were bounded may hold some from a
        // skewed clock: they would set the head's time for everyone.
        let max_t = now_ms().saturating_add(opts.max_future_ms());
        let replay = wal::replay(&wal_dir, &mut |payload| match record::decode(payload) {
            Ok(Record::Series(list)) => {
                for (r, l) in list {
                    if !l.is_empty() {
                        if let Some(s) = head.replay_series(r, &l) {
                            refs.insert(r, s);
                        }
                    }
                }
            }
            Ok(Record::Samples(list)) => {
                for s in list {
                    let Some(series) = refs.get(&s.r) else {
                        unknown += 1;
                        continue;
                    };
                    if s.t < mvt {
                        continue;
                    }
                    if s.t > max_t {
                        future += 1;
                        continue;
                    }
                    if series.state.lock().append(s.t, s.v, head.chunk_range) == Ok(true) {
                        head.note_appended(s.t, s.t);
                        samples += 1;
                    }
                }
            }
            Err(e) => {
                bad += 1;
                tracing::warn!(error = %e, "skipping undecodable WAL record");
            }
        })?;
        if unknown > 0 {
            tracing::warn!(
                samples = unknown,
                "WAL replay: samples for unknown series dropped"
            );
        }
        if future > 0 {
            tracing::warn!(
                samples = future,
                max_future_ms = opts.max_future_ms(),
                "WAL replay: samples too far ahead of the clock dropped"
            );
        }
        if let Some(b) = blocks.last().filter(|b| b.meta.max_time > max_t) {
            tracing::warn!(
                block = %b.meta.ulid,
                max_time = b.meta.max_time,
                "a block reaches into the future (written from a skewed clock's samples): appends before its end are out of bounds until then"
            );
        }
        // Replay rebuilt every chunk on the heap: move the closed ones out now
        // rather than at the first maintenance tick.
        if let Err(e) = head.offload_chunks() {
            tracing::warn!(error = %format!("{e:#}"), "moving replayed head chunks to disk failed");
        }
        let next = replay.last_segment.map_or(0, |s| s + 1);
        let health = Arc::new(WriteHealth::default());
        let wal = Wal::create(&wal_dir, next, opts.wal_segment_size)?.with_health(health.clone());
        tracing::info!(
            dir = %dir.display(),
            blocks = blocks.len(),
            series = head.num_series(),
            samples,
            wal_records = replay.records,
            bad_records = bad,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tsdb opened"
        );
        Ok(Db {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                opts,
                head,
                wal,
                blocks: RwLock::new(blocks),
                compact_lock: Mutex::new(()),
                closed: AtomicBool::new(false),
                wal_repairs: replay.repairs,
                compactions: AtomicU64::new(0),
                merges: AtomicU64::new(0),
                blocks_deleted: AtomicU64::new(0),
                health,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// A batch of appends that becomes visible (and is logged) on commit.
    /// Cheap; use one per scrape.
    pub fn appender(&self) -> Appender {
        let head = &self.inner.head;
        Appender {
            db: self.inner.clone(),
            min_t: head.appendable_min_valid_time(),
            max_t: now_ms().saturating_add(self.inner.opts.max_future_ms()),
            batch: HashMap::new(),
            series: Vec::new(),
            samples: Vec::new(),
            unlogged: Vec::new(),
            done: false,
        }
    }

    /// Series matching all `matchers` with their samples in `[mint, maxt]`,
    /// sorted by labels. Staleness markers are returned as stored.
    pub fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series> {
        let mut out: BTreeMap<Labels, Vec<Vec<(i64, f64)>>> = BTreeMap::new();
        let push = |out: &mut BTreeMap<Labels, Vec<Vec<(i64, f64)>>>,
                    labels: Labels,
                    enc: u8,
                    data: &[u8]| {
            let mut it = ChunkIter::new(enc, data);
            let samples: Vec<(i64, f64)> = it
                .by_ref()
                .filter(|(t, _)| *t >= mint && *t <= maxt)
                .collect();
            if it.error() {
                tracing::warn!(series = %labels, "corrupt chunk; returning the samples before the damage");
            }
            if !samples.is_empty() {
                out.entry(labels).or_default().push(samples);
            }
        };
        // The head first, then the blocks: a compaction in between moves
        // data from the former to the latter, so it is seen once or twice
        // (merged), never missed.
        let head = &self.inner.head;
        let refs = head.postings_for_matchers(matchers);
        for sc in head.series_chunks(&refs, mint, maxt) {
            for c in &sc.chunks {
                match head.read_chunk(c) {
                    Ok(data) => push(&mut out, sc.labels.clone(), c.enc(), &data),
                    // Its file was dropped by a concurrent truncation: the
                    // data is in a block now, read below.
                    Err(e) => tracing::debug!(error = %format!("{e:#}"), "head chunk gone"),
                }
            }
        }
        for b in self.blocks_in(mint, maxt) {
            for off in postings_for_matchers(&b.index, matchers) {
                let (labels, metas) = match b.index.series(off) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(block = %b.meta.ulid, error = %format!("{e:#}"), "corrupt series entry");
                        continue;
                    }
                };
                for m in metas.iter().filter(|m| m.maxt >= mint && m.mint <= maxt) {
                    match b.chunks.chunk(m.r) {
                        Ok((enc, data)) => push(&mut out, labels.clone(), enc, data),
                        Err(e) => {
                            tracing::warn!(block = %b.meta.ulid, error = %format!("{e:#}"), "unreadable chunk")
                        }
                    }
                }
            }
        }
        out.into_iter()
            .map(|(labels, parts)| Series {
                labels,
                samples: merge(parts),
            })
            .collect()
    }

    /// Label sets of the series matching `matchers` that have a chunk
    /// overlapping `[mint, maxt]` (Prometheus' `series` hint: chunk ranges,
    /// not each sample), unique. Reads the indexes and chunk ranges only,
    /// never samples: `/api/v1/series` over 10k series and half an hour
    /// took over 30 s through [`Db::select`], decoding every sample.
    pub fn series_labels(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> BTreeSet<Labels> {
        let mut out = BTreeSet::new();
        let head = &self.inner.head;
        let refs = head.postings_for_matchers(matchers);
        out.extend(
            head.series_chunks(&refs, mint, maxt)
                .into_iter()
                .map(|sc| sc.labels),
        );
        for b in self.blocks_in(mint, maxt) {
            for off in postings_for_matchers(&b.index, matchers) {
                match b.index.series(off) {
                    Ok((labels, metas)) => {
                        if metas.iter().any(|m| m.maxt >= mint && m.mint <= maxt) {
                            out.insert(labels);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(block = %b.meta.ulid, error = %format!("{e:#}"), "corrupt series entry");
                    }
                }
            }
        }
        out
    }

    /// Label names of the series matching `matchers` (all names when empty)
    /// in blocks and head overlapping `[mint, maxt]`, sorted.
    pub fn label_names(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<String> {
        let mut set = BTreeSet::new();
        for l in self.matching_labels(matchers, mint, maxt, &mut |names| set.extend(names)) {
            set.extend(l.iter().map(|l| l.name.clone()));
        }
        set.into_iter().collect()
    }

    /// Values of label `name` among the series matching `matchers`, sorted.
    pub fn label_values(
        &self,
        name: &str,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Vec<String> {
        let mut set = BTreeSet::new();
        if matchers.is_empty() {
            for b in self.blocks_in(mint, maxt) {
                set.extend(b.index.label_values(name));
            }
            if self.head_overlaps(mint, maxt) {
                set.extend(self.inner.head.label_values(name));
            }
        } else {
            for l in self.matching_labels(matchers, mint, maxt, &mut |_| {}) {
                if let Some(v) = l.get(name) {
                    set.insert(v.to_owned());
                }
            }
        }
        set.into_iter().collect()
    }

    /// Label sets of matching series; with no matchers, hands every source's
    /// label names to `all_names` instead (index-only, no series decoding).
    fn matching_labels(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
        all_names: &mut dyn FnMut(Vec<String>),
    ) -> Vec<Labels> {
        let mut out = Vec::new();
        let head_overlaps = self.head_overlaps(mint, maxt);
        if matchers.is_empty() {
            for b in self.blocks_in(mint, maxt) {
                all_names(b.index.label_names());
            }
            if head_overlaps {
                all_names(self.inner.head.label_names());
            }
            return out;
        }
        for b in self.blocks_in(mint, maxt) {
            for off in postings_for_matchers(&b.index, matchers) {
                if let Ok((l, _)) = b.index.series(off) {
                    out.push(l);
                }
            }
        }
        if head_overlaps {
            let head = &self.inner.head;
            out.extend(head.labels_of(&head.postings_for_matchers(matchers)));
        }
        out
    }

    fn head_overlaps(&self, mint: i64, maxt: i64) -> bool {
        let head = &self.inner.head;
        head.max_time() >= mint && head.min_valid_time() <= maxt
    }

    fn blocks_in(&self, mint: i64, maxt: i64) -> Vec<Arc<Block>> {
        self.inner
            .blocks
            .read()
            .iter()
            .filter(|b| b.overlaps(mint, maxt))
            .cloned()
            .collect()
    }

    /// Persists what is due into blocks, truncates the head and the WAL, and
    /// applies retention. Safe to call at any time from any thread.
    pub fn compact(&self) -> Result<()> {
        self.inner.compact(&|| false)
    }

    /// Moves closed head chunks from the heap to the head chunk files now
    /// (the maintenance thread does this every `head_offload_interval`).
    pub fn offload_head_chunks(&self) -> Result<usize> {
        self.inner.head.offload_chunks()
    }

    /// Why the WAL cannot be written, while its last write failed (the
    /// agent is not ready then).
    pub fn wal_write_error(&self) -> Option<String> {
        self.inner.health.failing(WriteKind::Wal)
    }

    /// Writes and fsyncs the WAL now.
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.wal.sync()
    }

    /// Completed WAL syncs: a commit that returned before this counter grew
    /// by two is durable (syncs are serialised).
    pub fn wal_syncs(&self) -> u64 {
        self.inner.wal.syncs()
    }

    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        let h = &i.head;
        let c = &h.counters;
        let (head_chunks, head_mem) = h.memory();
        let blocks = i.blocks.read();
        let blocks_bytes: u64 = blocks.iter().map(|b| b.size).sum();
        let wal_bytes = i.wal.size_bytes();
        let max = h.max_time();
        Stats {
            head_series: h.num_series() as u64,
            head_chunks: head_chunks as u64,
            head_min_time: h.min_time(),
            head_max_time: (max != i64::MIN).then_some(max),
            head_memory_bytes: head_mem as u64,
            head_chunks_disk_bytes: h.disk_bytes(),
            samples_appended_total: c.samples_appended.load(Ordering::Relaxed),
            out_of_order_total: c.out_of_order.load(Ordering::Relaxed),
            out_of_bounds_total: c.out_of_bounds.load(Ordering::Relaxed),
            too_far_in_future_total: c.too_far_in_future.load(Ordering::Relaxed),
            duplicate_total: c.duplicates.load(Ordering::Relaxed),
            write_failed_total: c.write_failed.load(Ordering::Relaxed),
            series_created_total: c.series_created.load(Ordering::Relaxed),
            series_removed_total: c.series_removed.load(Ordering::Relaxed),
            wal_bytes,
            wal_syncs_total: i.wal.syncs(),
            wal_repairs_total: i.wal_repairs,
            blocks: blocks.len() as u64,
            blocks_bytes,
            bytes_on_disk: blocks_bytes + wal_bytes,
            compactions_total: i.compactions.load(Ordering::Relaxed),
            block_merges_total: i.merges.load(Ordering::Relaxed),
            blocks_deleted_total: i.blocks_deleted.load(Ordering::Relaxed),
            write_failures_total: WriteKind::ALL.map(|k| i.health.failures(k)),
            last_write_failure_ms: i.health.last_failure_ms(),
        }
    }

    /// Starts the maintenance thread: WAL sync every `wal_sync_interval`,
    /// compaction and retention every `compaction_interval`. It stops when
    /// the returned handle is dropped or the database is closed/dropped.
    pub fn spawn_maintenance(&self) -> Maintenance {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        // (stopped, its condition variable, and the same flag for a
        // compaction in progress to poll)
        let stop = Arc::new((
            std::sync::Mutex::new(false),
            std::sync::Condvar::new(),
            AtomicBool::new(false),
        ));
        let stop2 = stop.clone();
        let sync_every = self.inner.opts.wal_sync_interval;
        let compact_every = self
            .inner
            .opts
            .compaction_interval
            .max(Duration::from_millis(10));
        let offload_every = self
            .inner
            .opts
            .head_offload_interval
            .max(Duration::from_millis(10));
        let mut tick = compact_every.min(offload_every);
        if !sync_every.is_zero() {
            tick = tick.min(sync_every);
        }
        let handle = std::thread::Builder::new()
            .name("tsdb-maintenance".into())
            .spawn(move || {
                let mut last_compact = Instant::now();
                let mut last_offload = Instant::now();
                loop {
                    {
                        let (lock, cv, _) = &*stop2;
                        let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
                        let (guard, _) = cv
                            .wait_timeout_while(guard, tick, |stopped| !*stopped)
                            .unwrap_or_else(|e| e.into_inner());
                        if *guard {
                            return;
                        }
                    }
                    let Some(inner) = weak.upgrade() else { return };
                    if inner.closed.load(Ordering::SeqCst) {
                        return;
                    }
                    // Failures are counted and logged (rate-limited) by
                    // the store's write health; the WAL reports its own.
                    if !sync_every.is_zero() {
                        let _ = inner.wal.sync();
                    }
                    if last_offload.elapsed() >= offload_every {
                        last_offload = Instant::now();
                        match inner.head.offload_chunks() {
                            Ok(_) => inner.health.succeeded(WriteKind::HeadChunks),
                            Err(e) => inner.health.failed(WriteKind::HeadChunks, &e),
                        }
                    }
                    if last_compact.elapsed() >= compact_every {
                        last_compact = Instant::now();
                        let stopping = || stop2.2.load(Ordering::SeqCst);
                        match inner.compact(&stopping) {
                            Ok(()) => inner.health.succeeded(WriteKind::Compaction),
                            Err(e) => inner.health.failed(WriteKind::Compaction, &e),
                        }
                    }
                }
            })
            .expect("spawning the tsdb maintenance thread");
        Maintenance {
            stop,
            handle: Some(handle),
        }
    }

    /// Flushes and fsyncs the WAL. Data not yet in blocks is replayed from
    /// the WAL on the next open.
    pub fn close(self) -> Result<()> {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wal.sync()
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.closed.load(Ordering::SeqCst) {
            if let Err(e) = self.wal.sync() {
                tracing::warn!(error = %format!("{e:#}"), "WAL sync on drop failed");
            }
        }
    }
}

/// Concatenates per-chunk sample runs into one sorted, deduplicated list.
fn merge(mut parts: Vec<Vec<(i64, f64)>>) -> Vec<(i64, f64)> {
    if parts.len() == 1 {
        return parts.pop().unwrap_or_default();
    }
    parts.sort_by_key(|p| p.first().map(|s| s.0));
    let mut out: Vec<(i64, f64)> = parts.concat();
    if !out.windows(2).all(|w| w[0].0 < w[1].0) {
        out.sort_by_key(|s| s.0);
        out.dedup_by_key(|s| s.0);
    }
    out
}

/// Why a compaction stopped early: the maintenance thread is stopping.
#[derive(Debug, thiserror::Error)]
#[error("compaction interrupted: the store is shutting down")]
struct Interrupted;

impl Inner {
    /// [`Db::compact`]; stops between steps (and between the series of a
    /// block being written) once `cancel` says so, leaving the head as it
    /// was for the next run.
    fn compact(&self, cancel: &dyn Fn() -> bool) -> Result<()> {
        match self.compact_steps(cancel) {
            Err(e) if e.is::<Interrupted>() => {
                tracing::info!("compaction interrupted: shutting down");
                Ok(())
            }
            r => r,
        }
    }

    fn compact_steps(&self, cancel: &dyn Fn() -> bool) -> Result<()> {
        let _g = self.compact_lock.lock();
        let range = self.head.chunk_range;
        let mut persisted = false;
        while let Some(head_min) = self.head.min_time() {
            if cancel() {
                return Err(Interrupted.into());
            }
            let start = head_min.div_euclid(range).saturating_mul(range);
            let end = start.saturating_add(range);
            if self.head.max_time() < end.saturating_add(range / 2) {
                break;
            }
            // From here on appends into [start, end) are out of bounds, so
            // the snapshot below is complete.
            self.head.set_min_valid_time(end);
            // Labels of every head series (a series without chunks in the
            // window is left out of the block as it is written).
            let members = self.head.all_series();
            let mut set = block::SeriesSet::default();
            for (k, s) in members.iter().enumerate() {
                self.head
                    .with_labels(s, |labels| set.push(labels, k as u32));
            }
            set.sort();
            let t0 = Instant::now();
            let chunks = |k: u32| -> Vec<_> {
                let mut v = self.head.chunks_of(&members[k as usize], start, end - 1);
                v.retain(|c| c.mint >= start && c.maxt < end);
                v
            };
            let written = block::write_block(&self.dir, start, end, &set, &chunks, &|c| {
                if cancel() {
                    return Err(Interrupted.into());
                }
                self.head.read_chunk(c)
            })?;
            drop(set);
            drop(members);
            let Some(dir) = written else {
                // A window without data: the head's minimum time is a lower
                // bound, which trails the data after a gap in ingestion or
                // once a lone old sample's window was persisted. Every
                // chunk starts at or after it, so none ends inside this
                // window either: nothing to persist or truncate. Go
                // straight to the oldest sample's window (appends are at
                // or after `end` now): one pass over the series, so a gap
                // of years costs no more than one of two hours.
                self.head.raise_min_time_to_data(end);
                continue;
            };
            let b = Arc::new(Block::open(&dir)?);
            tracing::info!(
                block = %b.meta.ulid, mint = start, maxt = end, series = b.meta.stats.num_series,
                samples = b.meta.stats.num_samples, bytes = b.size,
                elapsed_ms = t0.elapsed().as_millis() as u64, "persisted head block"
            );
            {
                let mut blocks = self.blocks.write();
                blocks.push(b);
                blocks.sort_by_key(|b| b.meta.min_time);
            }
            let (chunks, removed) = self.head.truncate(end);
            tracing::debug!(chunks, series = removed, "head truncated");
            self.compactions.fetch_add(1, Ordering::Relaxed);
            persisted = true;
        }
        if persisted {
            self.checkpoint_wal()?;
        }
        // Retention first, so that blocks about to go are not merged; and
        // a failing merge (disk full) must not stop retention.
        self.apply_retention()?;
        self.merge_blocks(cancel)
    }

    /// Level compaction: merges adjacent blocks as [`levels::plan`] says
    /// until it has nothing more to say.
    fn merge_blocks(&self, cancel: &dyn Fn() -> bool) -> Result<()> {
        let ranges = self.opts.block_ranges();
        loop {
            if cancel() {
                return Err(Interrupted.into());
            }
            let blocks: Vec<Arc<Block>> = self.blocks.read().clone();
            let spans: Vec<levels::Span> = blocks
                .iter()
                .map(|b| levels::Span {
                    min: b.meta.min_time,
                    max: b.meta.max_time,
                })
                .collect();
            let Some(run) = levels::plan(&spans, &ranges) else {
                return Ok(());
            };
            let parents = &blocks[run];
            let t0 = Instant::now();
            let dir = block::merge(&self.dir, parents)?;
            let b = Arc::new(Block::open(&dir)?);
            tracing::info!(
                block = %b.meta.ulid, level = b.meta.compaction.level,
                mint = b.meta.min_time, maxt = b.meta.max_time, parents = parents.len(),
                series = b.meta.stats.num_series, samples = b.meta.stats.num_samples,
                bytes = b.size, elapsed_ms = t0.elapsed().as_millis() as u64, "merged blocks"
            );
            {
                let mut list = self.blocks.write();
                list.retain(|x| !parents.iter().any(|p| Arc::ptr_eq(p, x)));
                list.push(b);
                list.sort_by_key(|b| b.meta.min_time);
            }
            self.merges.fetch_add(1, Ordering::Relaxed);
            // Queries that still hold a parent keep reading its mapping.
            // A crash before these deletions is undone at open
            // (`drop_superseded`).
            for p in parents {
                Block::delete(&p.dir)?;
            }
        }
    }

    /// Replaces the WAL segments so far by a checkpoint: their records,
    /// keeping only series still in the head and samples the head still
    /// holds (as Prometheus does). It is built from the log, not from the
    /// head, so it never contains a sample whose commit was not logged: after
    /// a crash every commit is recovered whole or not at all.
    fn checkpoint_wal(&self) -> Result<()> {
        let upto = self.wal.cut_segment()?;
        let live: HashSet<u64> = self.head.all_series().iter().map(|s| s.r).collect();
        let mint = self.head.min_valid_time();
        let dir = self.wal.dir().to_path_buf();
        self.wal.checkpoint(upto, &mut |write| {
            let mut buf = Vec::with_capacity(1 << 16);
            wal::read_upto(&dir, upto, &mut |payload| match record::decode(payload) {
                Ok(Record::Series(list)) => {
                    buf.clear();
                    record::begin_series(&mut buf);
                    let mut any = false;
                    for (r, l) in list.iter().filter(|(r, _)| live.contains(r)) {
                        let pairs: Vec<(&str, &str)> = l
                            .iter()
                            .map(|l| (l.name.as_str(), l.value.as_str()))
                            .collect();
                        record::put_series(&mut buf, *r, &pairs);
                        any = true;
                    }
                    if any {
                        write(&buf)?;
                    }
                    Ok(())
                }
                Ok(Record::Samples(list)) => {
                    let keep: Vec<RefSample> = list
                        .into_iter()
                        .filter(|s| s.t >= mint && live.contains(&s.r))
                        .collect();
                    if !keep.is_empty() {
                        buf.clear();
                        record::encode_samples(&mut buf, &keep);
                        write(&buf)?;
                    }
                    Ok(())
                }
                // Replay skips these too.
                Err(_) => Ok(()),
            })
        })
    }

    fn apply_retention(&self) -> Result<()> {
        let mut doomed: Vec<Arc<Block>> = Vec::new();
        {
            let mut blocks = self.blocks.write();
            let newest = blocks
                .iter()
                .map(|b| b.meta.max_time)
                .chain([self.head.max_time()])
                .max()
                .unwrap_or(i64::MIN);
            let cutoff = newest.saturating_sub(ms(self.opts.retention_time));
            blocks.retain(|b| {
                let keep = b.meta.max_time > cutoff;
                if !keep {
                    doomed.push(b.clone());
                }
                keep
            });
            if let Some(limit) = self.opts.retention_size {
                let mut total: u64 =
                    blocks.iter().map(|b| b.size).sum::<u64>() + self.wal.size_bytes();
                while total > limit && !blocks.is_empty() {
                    let b = blocks.remove(0);
                    total = total.saturating_sub(b.size);
                    doomed.push(b);
                }
            }
        }
        for b in doomed {
            tracing::info!(block = %b.meta.ulid, mint = b.meta.min_time, maxt = b.meta.max_time, "deleting block (retention)");
            Block::delete(&b.dir)?;
            self.blocks_deleted.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

type StopSignal = (std::sync::Mutex<bool>, std::sync::Condvar, AtomicBool);

/// Handle of the maintenance thread; stops it when dropped.
pub struct Maintenance {
    stop: Arc<StopSignal>,
    handle: Option<JoinHandle<()>>,
}

impl Maintenance {
    /// Stops the thread and waits for it: a compaction in progress stops
    /// at its next step (the rest is redone after the next start, from
    /// the WAL), so this takes about one block write at most.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        let (lock, cv, flag) = &*self.stop;
        flag.store(true, Ordering::SeqCst);
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// A batch of samples; see [`Db::appender`]. Dropping it uncommitted rolls
/// it back.
pub struct Appender {
    db: Arc<Inner>,
    /// Oldest sample time accepted (the head's appendable window when the
    /// appender was made; the commit re-checks the persisted range).
    min_t: i64,
    /// Newest sample time accepted ([`Options::max_future_ms`] ahead of
    /// the clock when the appender was made).
    max_t: i64,
    /// Series ref → index into `series`.
    batch: HashMap<SeriesRef, u32>,
    /// Touched series with the last sample pending for each.
    series: Vec<(Arc<MemSeries>, i64, f64)>,
    /// (index into `series`, t, v).
    samples: Vec<(u32, i64, f64)>,
    /// Series not in the WAL yet when this batch first named them (which
    /// it created, mostly): the commit logs those with a sample in the
    /// batch; at the end the ones still unlogged are removed, unless
    /// another appender holds them.
    unlogged: Vec<Arc<MemSeries>>,
    done: bool,
}

impl Appender {
    /// Adds a sample for the series `labels` (created if new). Returns the
    /// series ref, usable with [`Appender::append_ref`] while the series
    /// lives in the head.
    pub fn append(&mut self, labels: &Labels, t: i64, v: f64) -> Result<SeriesRef, AppendError> {
        let db = self.db.clone();
        self.check_bounds(t)?;
        db.head.with_series(labels, |s| self.add(s, t, v))?
    }

    /// [`Appender::append`] with `hash` = [`super::series::hash_labels`] of
    /// `labels`, computed by the caller.
    pub fn append_hashed(
        &mut self,
        labels: &Labels,
        hash: u64,
        t: i64,
        v: f64,
    ) -> Result<SeriesRef, AppendError> {
        let db = self.db.clone();
        self.check_bounds(t)?;
        db.head
            .with_series_hashed(labels, hash, |s| self.add(s, t, v))?
    }

    /// Adds a sample by series ref (a scrape cache hit): no label hashing.
    pub fn append_ref(&mut self, r: SeriesRef, t: i64, v: f64) -> Result<SeriesRef, AppendError> {
        let db = self.db.clone();
        self.check_bounds(t)?;
        db.head
            .with_ref(r, |s| self.add(s, t, v))
            .unwrap_or(Err(AppendError::UnknownSeriesRef(r)))
    }

    /// The head's window, checked before a series is looked up (or
    /// created) for the sample.
    fn check_bounds(&self, t: i64) -> Result<(), AppendError> {
        let c = &self.db.head.counters;
        if t < self.min_t.max(self.db.head.min_valid_time()) {
            c.out_of_bounds.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::OutOfBounds);
        }
        if t > self.max_t {
            c.too_far_in_future.fetch_add(1, Ordering::Relaxed);
            return Err(AppendError::TooFarInFuture);
        }
        Ok(())
    }

    fn add(&mut self, s: &Arc<MemSeries>, t: i64, v: f64) -> Result<SeriesRef, AppendError> {
        let idx = self.batch.get(&s.r).copied();
        let mut st = s.state.lock();
        let last = match idx {
            Some(i) => {
                let (_, lt, lv) = self.series[i as usize];
                Some((lt, lv))
            }
            None => st.last(),
        };
        // (Listed again if a refused sample named it before: harmless.)
        if idx.is_none() && !st.logged {
            self.unlogged.push(s.clone());
        }
        match SeriesState::check(last, t, v) {
            Ok(true) => {}
            Ok(false) => return Ok(s.r),
            Err(e) => {
                let c = &self.db.head.counters;
                match e {
                    AppendError::OutOfOrder => c.out_of_order.fetch_add(1, Ordering::Relaxed),
                    _ => c.duplicates.fetch_add(1, Ordering::Relaxed),
                };
                return Err(e);
            }
        }
        let i = match idx {
            Some(i) => {
                self.series[i as usize].1 = t;
                self.series[i as usize].2 = v;
                i
            }
            None => {
                st.pending += 1;
                let i = self.series.len() as u32;
                self.series.push((s.clone(), t, v));
                self.batch.insert(s.r, i);
                i
            }
        };
        self.samples.push((i, t, v));
        Ok(s.r)
    }

    /// Number of samples waiting for commit.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Logs the batch (its new series first) to the WAL and makes it
    /// visible. Samples that lost a race with another appender on the same
    /// series are dropped (counted as out of order), as in Prometheus, and
    /// so are those whose range a compaction closed meanwhile (out of
    /// bounds). On error nothing of the batch is visible.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        if self.samples.is_empty() {
            self.release();
            return Ok(());
        }
        let db = self.db.clone();
        if !self.unlogged.is_empty() {
            let new: Vec<Arc<MemSeries>> = self
                .unlogged
                .iter()
                .filter(|s| self.batch.contains_key(&s.r))
                .cloned()
                .collect();
            if let Err(e) = db.head.log_new_series(&new, &db.wal) {
                self.refused_by_the_wal();
                return Err(e.context("writing new series to the WAL"));
            }
        }
        let mut rec = Vec::with_capacity(16 + self.samples.len() * 12);
        let refs: Vec<RefSample> = self
            .samples
            .iter()
            .map(|&(i, t, v)| RefSample {
                r: self.series[i as usize].0.r,
                t,
                v,
            })
            .collect();
        record::encode_samples(&mut rec, &refs);
        if let Err(e) = db.wal.log(&rec, db.opts.wal_sync_interval.is_zero()) {
            self.refused_by_the_wal();
            return Err(e.context("writing samples to the WAL"));
        }
        let head = &db.head;
        let (mut appended, mut out_of_order, mut out_of_bounds) = (0u64, 0u64, 0u64);
        let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
        {
            // From reading the minimum valid time until the samples' times
            // are noted (compaction waits for this; see
            // `Head::raise_min_time_to_data`).
            let _gate = head.commit_guard();
            let mvt = head.min_valid_time();
            for &(i, t, v) in &self.samples {
                let s = &self.series[i as usize].0;
                if t < mvt {
                    out_of_bounds += 1;
                    continue;
                }
                match s.state.lock().append(t, v, head.chunk_range) {
                    Ok(true) => {
                        appended += 1;
                        mint = mint.min(t);
                        maxt = maxt.max(t);
                    }
                    Ok(false) => {}
                    Err(_) => out_of_order += 1,
                }
            }
            head.note_appended(mint, maxt);
        }
        self.release();
        let c = &head.counters;
        c.samples_appended.fetch_add(appended, Ordering::Relaxed);
        c.out_of_order.fetch_add(out_of_order, Ordering::Relaxed);
        c.out_of_bounds.fetch_add(out_of_bounds, Ordering::Relaxed);
        Ok(())
    }

    /// Ends a batch the WAL refused: counted (the samples are lost to
    /// the caller's error, and a disk that refuses writes must show on
    /// /metrics as refused samples, not only as a failing WAL).
    fn refused_by_the_wal(&mut self) {
        let n = self.samples.len() as u64;
        self.db
            .head
            .counters
            .write_failed
            .fetch_add(n, Ordering::Relaxed);
        self.release();
    }

    /// Discards the batch, and the series it created.
    pub fn rollback(mut self) {
        self.done = true;
        self.release();
    }

    /// Ends the batch: its series are no longer pending, and those it
    /// named unlogged that no commit logged (all of them on a rollback)
    /// are removed from the head, unless another appender holds them.
    fn release(&mut self) {
        for (s, _, _) in self.series.drain(..) {
            let mut st = s.state.lock();
            st.pending = st.pending.saturating_sub(1);
        }
        self.unlogged.retain(|s| !s.state.lock().logged);
        if !self.unlogged.is_empty() {
            self.db.head.remove_unlogged(&self.unlogged);
            self.unlogged.clear();
        }
        self.samples.clear();
        self.batch.clear();
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if !self.done {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A lone sample from 1970 next to current data: compaction persists
    /// its window, then steps over the 55 empty years in one go (the old
    /// loop tried ~240k two-hour windows, each building and deleting an
    /// empty block), persists the current data's windows, and stops. The
    /// cancel hook counts the steps and would stop the old loop early.
    #[test]
    fn compaction_steps_over_a_gap_of_decades_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(tmp.path(), Options::default()).unwrap();
        let h = 2 * 3_600_000;
        let now = now_ms();
        let mut app = db.appender();
        // One commit on an empty head: nothing bounds it yet.
        app.append(&Labels::from_pairs([("__name__", "old")]), 0, 1.0)
            .unwrap();
        // Five hours a minute apart from a window's start: the first window
        // is due, the second not (the head must span 1.5 windows past it).
        let first = (now - 3 * h).div_euclid(h) * h;
        let cur = Labels::from_pairs([("__name__", "cur")]);
        for k in 0..5 * 60 {
            app.append(&cur, first + k * 60_000, k as f64).unwrap();
        }
        app.commit().unwrap();
        let steps = Cell::new(0u32);
        db.inner
            .compact(&|| {
                steps.set(steps.get() + 1);
                steps.get() > 10_000
            })
            .unwrap();
        assert!(steps.get() < 10_000, "{} steps", steps.get());
        // 1970's block (deleted by retention since) and the current data's
        // first full window; the head keeps the last 1.5 windows.
        assert_eq!(db.stats().compactions_total, 2, "{:?}", db.stats());
        let blocks = db.inner.blocks.read().clone();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].meta.min_time, first);
        let all = db.select(&[Matcher::equal("__name__", "cur")], 0, i64::MAX);
        assert_eq!(all[0].samples.len(), 5 * 60);
    }
}
