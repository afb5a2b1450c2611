//! The head: the in-memory, writable part of the store holding the most
//! recent data (everything not yet persisted to a block).
//!
//! Series are found by label-set hash (collisions fall back to comparing
//! labels) and by ref; the inverted index ([`MemPostings`]) answers
//! matchers; label names and values are stored once, in a symbol table
//! ([`Symbols`]) that series labels and postings refer to by id. One
//! `RwLock` guards these; each series has its own mutex,
//! so concurrent scrape loops appending to different series only share the
//! read lock. A new series is written to the WAL by the first commit that
//! has a sample for it, before that commit's samples ([`Head::log_new_series`]
//! serialises this, so its record precedes any sample record that refers
//! to it); a series no commit logged is removed again when its appenders
//! roll back ([`Head::remove_unlogged`]).

use std::borrow::Cow;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use parking_lot::{Mutex, RwLock, RwLockReadGuard};

use super::head_chunks::HeadChunks;
use super::postings::{postings_for_matchers, MemPostings};
use super::record;
use super::series::{
    hash_labels, hash_pairs, oldest_sample_time, ClosedChunk, DiskChunk, DiskRef, MemSeries,
    SeriesRef,
};
use super::symbols::{SymLabels, Symbols};
use super::wal::Wal;
use super::AppendError;
use crate::model::Labels;
use crate::storage::Matcher;

type RefMap<V> = hashbrown::HashMap<SeriesRef, V, foldhash::fast::FixedState>;

#[derive(Default)]
struct HeadIndex {
    /// Every label name and value of the head's series, once.
    symbols: Symbols,
    series: RefMap<Arc<MemSeries>>,
    /// Refs by label-set hash. The hash is not stored: when the table grows
    /// it is recomputed from the series' labels, which saves 8 bytes a
    /// series for a rehash that happens a few times in the head's life.
    by_hash: HashTable<SeriesRef>,
    postings: MemPostings,
}

fn labels_eq<'a>(mut a: impl Iterator<Item = (&'a str, &'a str)>, l: &Labels) -> bool {
    for l in l.iter() {
        match a.next() {
            Some((n, v)) if n == l.name && v == l.value => {}
            _ => return false,
        }
    }
    a.next().is_none()
}

impl HeadIndex {
    fn find(&self, hash: u64, labels: &Labels) -> Option<&Arc<MemSeries>> {
        let HeadIndex {
            symbols,
            series,
            by_hash,
            ..
        } = self;
        let r = by_hash.find(hash, |r| {
            series
                .get(r)
                .is_some_and(|s| labels_eq(s.labels.resolve(symbols), labels))
        })?;
        series.get(r)
    }

    fn labels(&self, s: &MemSeries) -> Labels {
        Labels::from_pairs(s.labels.resolve(&self.symbols))
    }

    /// Adds a new series `r` (the caller checked it is not there).
    fn insert(
        &mut self,
        hash: u64,
        r: SeriesRef,
        labels: &Labels,
    ) -> Result<Arc<MemSeries>, AppendError> {
        let sl = SymLabels::intern(
            &mut self.symbols,
            labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
        )
        .map_err(|e| AppendError::Storage(e.to_string()))?;
        self.postings.add(r, sl.pairs());
        let s = Arc::new(MemSeries::new(r, sl));
        self.series.insert(r, s.clone());
        let HeadIndex {
            symbols,
            series,
            by_hash,
            ..
        } = self;
        by_hash.insert_unique(hash, r, |r| {
            series
                .get(r)
                .map_or(0, |s| hash_pairs(s.labels.resolve(symbols)))
        });
        Ok(s)
    }

    /// Removes a series from the maps (postings and symbols: see
    /// [`Head::truncate_series`], which does them in bulk).
    fn remove(&mut self, s: &MemSeries) {
        let hash = hash_pairs(s.labels.resolve(&self.symbols));
        if let Ok(e) = self.by_hash.find_entry(hash, |&r| r == s.r) {
            e.remove();
        }
        self.series.remove(&s.r);
    }

    /// Sorted refs of every series.
    fn all_refs(&self) -> Vec<SeriesRef> {
        let mut all: Vec<SeriesRef> = self.series.keys().copied().collect();
        all.sort_unstable();
        all
    }
}

/// Counters exported through [`super::Stats`].
#[derive(Debug, Default)]
pub struct HeadCounters {
    pub samples_appended: AtomicU64,
    pub out_of_order: AtomicU64,
    pub out_of_bounds: AtomicU64,
    pub too_far_in_future: AtomicU64,
    pub duplicates: AtomicU64,
    /// Samples of commits the WAL refused (the disk refused writes).
    pub write_failed: AtomicU64,
    pub series_created: AtomicU64,
    pub series_removed: AtomicU64,
}

pub struct Head {
    index: RwLock<HeadIndex>,
    next_ref: AtomicU64,
    /// Samples older than this are rejected: their range is (or is being)
    /// persisted in a block.
    min_valid_time: AtomicI64,
    /// Newest sample timestamp seen (`i64::MIN` when empty).
    max_time: AtomicI64,
    /// Oldest sample timestamp the head may hold: the oldest appended since
    /// the last truncation, or that truncation's time (`i64::MAX` when
    /// nothing was appended). Tracked rather than asked of every series,
    /// whose oldest chunk is on disk.
    min_time: AtomicI64,
    /// Chunks are cut at multiples of this (the block duration).
    pub chunk_range: i64,
    pub counters: HeadCounters,
    /// Where closed chunks are offloaded, if enabled.
    disk: Option<HeadChunks>,
    /// Held shared by a commit while it applies samples and notes their
    /// times ([`Head::commit_guard`]); taken exclusively to wait until
    /// every commit in flight has noted what it appended.
    commit_gate: RwLock<()>,
    /// Oldest sample applied since [`Head::raise_min_time_to_data`] began
    /// its scan (commits note it before `min_time`).
    recent_min: AtomicI64,
    /// Serialises logging new series (see [`Head::log_new_series`]).
    series_log: Mutex<()>,
}

/// A series' labels and its chunks overlapping a time range.
pub struct SeriesChunks {
    pub labels: Labels,
    pub chunks: Vec<ClosedChunk>,
}

impl Head {
    pub fn new(chunk_range: i64, disk: Option<HeadChunks>) -> Head {
        Head {
            index: RwLock::new(HeadIndex::default()),
            next_ref: AtomicU64::new(1),
            min_valid_time: AtomicI64::new(i64::MIN),
            max_time: AtomicI64::new(i64::MIN),
            min_time: AtomicI64::new(i64::MAX),
            chunk_range: chunk_range.max(1),
            counters: HeadCounters::default(),
            disk,
            commit_gate: RwLock::new(()),
            recent_min: AtomicI64::new(i64::MAX),
            series_log: Mutex::new(()),
        }
    }

    /// The bytes of a head chunk (chunks come with their bytes: those on
    /// disk are read when the chain is walked).
    pub fn read_chunk<'a>(&self, c: &'a ClosedChunk) -> anyhow::Result<Cow<'a, [u8]>> {
        Ok(Cow::Borrowed(&c.data[..]))
    }

    fn read_record(&self, r: DiskRef) -> Option<DiskChunk> {
        self.disk.as_ref()?.read_record(r)
    }

    /// A series' chunks overlapping `[mint, maxt]`, oldest first: its disk
    /// chain (read without holding the series' lock) and its heap chunks.
    pub fn chunks_of(&self, s: &MemSeries, mint: i64, maxt: i64) -> Vec<ClosedChunk> {
        let (chain, mut heap) = s.state.lock().chunks(mint, maxt);
        let Some(chain) = chain else {
            return heap;
        };
        let mut out = chain.chunks(mint, maxt, &|r| self.read_record(r));
        out.append(&mut heap);
        out
    }

    /// Moves closed chunks out of the heap (no-op when disabled).
    pub fn offload_chunks(&self) -> anyhow::Result<usize> {
        match &self.disk {
            Some(disk) => disk.offload(&self.all_series()),
            None => Ok(0),
        }
    }

    /// Bytes in head chunk files.
    pub fn disk_bytes(&self) -> u64 {
        self.disk.as_ref().map_or(0, HeadChunks::size_bytes)
    }

    pub fn min_valid_time(&self) -> i64 {
        self.min_valid_time.load(Ordering::SeqCst)
    }

    pub fn set_min_valid_time(&self, t: i64) {
        self.min_valid_time.fetch_max(t, Ordering::SeqCst);
    }

    pub fn max_time(&self) -> i64 {
        self.max_time.load(Ordering::SeqCst)
    }

    /// The oldest sample time an appender may take now: nothing before
    /// the persisted range, nor more than half a block behind the newest
    /// sample (Prometheus' `appendableMinValidTime`: the window compaction
    /// may be cutting stays closed to appends).
    pub fn appendable_min_valid_time(&self) -> i64 {
        let max = self.max_time();
        let window = if max == i64::MIN {
            i64::MIN
        } else {
            max.saturating_sub(self.chunk_range / 2)
        };
        self.min_valid_time().max(window)
    }

    /// Held by a commit from checking its samples against the minimum
    /// valid time until it has noted their times with
    /// [`Head::note_appended`].
    pub fn commit_guard(&self) -> RwLockReadGuard<'_, ()> {
        self.commit_gate.read()
    }

    /// Records the oldest and newest sample a commit (or the WAL replay)
    /// applied; `mint > maxt` when none.
    pub fn note_appended(&self, mint: i64, maxt: i64) {
        if mint > maxt {
            return;
        }
        self.max_time.fetch_max(maxt, Ordering::SeqCst);
        // `recent_min` first: see `raise_min_time_to_data`.
        self.recent_min.fetch_min(mint, Ordering::SeqCst);
        self.min_time.fetch_min(mint, Ordering::SeqCst);
    }

    /// Raises the head's minimum time to `t`: the caller knows no chunk
    /// holds older samples (compaction found a window empty, and every
    /// append is at or after `t`).
    pub fn advance_min_time(&self, t: i64) {
        self.min_time.fetch_max(t, Ordering::SeqCst);
    }

    /// Raises the head's minimum time (a lower bound, which trails the data
    /// after a gap in ingestion or once a lone old sample's window was
    /// persisted) to the oldest sample the head holds, but at least to
    /// `floor` (appends are at or after it). One pass over the series
    /// (walking disk chains), so that compaction steps over a gap of any
    /// length at once instead of window by window.
    pub fn raise_min_time_to_data(&self, floor: i64) {
        // A commit that applies a sample the scan below misses (its series
        // was already visited) notes it in `recent_min`, which is read once
        // every commit in flight has finished; commits that start after
        // that lower `min_time` themselves (after `recent_min`, so the
        // final `fetch_min` covers one that runs between the two stores).
        self.recent_min.store(i64::MAX, Ordering::SeqCst);
        let oldest = self.oldest_sample_time().unwrap_or(i64::MAX);
        drop(self.commit_gate.write());
        let recent = self.recent_min.load(Ordering::SeqCst);
        self.min_time
            .fetch_max(oldest.min(recent).max(floor), Ordering::SeqCst);
        self.min_time
            .fetch_min(self.recent_min.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// The oldest sample time in the head (None without chunks).
    fn oldest_sample_time(&self) -> Option<i64> {
        self.all_series()
            .iter()
            .filter_map(|s| {
                let o = s.state.lock().oldest();
                oldest_sample_time(o, &|r| self.read_record(r))
            })
            .min()
    }

    /// Runs `f` on the series for `labels` (created if new, unlogged: see
    /// [`Head::log_new_series`]) while the index read lock is held, so that
    /// garbage collection cannot remove the series between lookup and `f`
    /// marking it pending.
    pub fn with_series<R>(
        &self,
        labels: &Labels,
        f: impl FnOnce(&Arc<MemSeries>) -> R,
    ) -> Result<R, AppendError> {
        self.with_series_hashed(labels, hash_labels(labels), f)
    }

    /// [`Head::with_series`] with the labels' [`hash_labels`] already
    /// computed (the scrape loop needs it too).
    pub fn with_series_hashed<R>(
        &self,
        labels: &Labels,
        hash: u64,
        f: impl FnOnce(&Arc<MemSeries>) -> R,
    ) -> Result<R, AppendError> {
        {
            let ix = self.index.read();
            if let Some(s) = ix.find(hash, labels) {
                return Ok(f(s));
            }
        }
        if labels.is_empty() {
            return Err(AppendError::EmptyLabels);
        }
        let mut ix = self.index.write();
        if ix.find(hash, labels).is_none() {
            let r = self.next_ref.fetch_add(1, Ordering::SeqCst);
            ix.insert(hash, r, labels)?;
            self.counters.series_created.fetch_add(1, Ordering::Relaxed);
        }
        // Downgrade is not needed for correctness: GC also takes the write lock.
        let s = ix.find(hash, labels).ok_or(AppendError::EmptyLabels)?;
        Ok(f(s))
    }

    /// Writes the series records of those of `series` not in the WAL yet
    /// (one record), then marks them logged. Called by a commit before it
    /// logs its samples: whichever of two commits sharing a new series
    /// gets here first logs it, and the other one's samples can only be
    /// logged after.
    pub fn log_new_series(&self, series: &[Arc<MemSeries>], wal: &Wal) -> anyhow::Result<()> {
        if series.iter().all(|s| s.state.lock().logged) {
            return Ok(());
        }
        let _serial = self.series_log.lock();
        let mut new: Vec<&Arc<MemSeries>> =
            series.iter().filter(|s| !s.state.lock().logged).collect();
        new.sort_unstable_by_key(|s| s.r);
        new.dedup_by_key(|s| s.r);
        if new.is_empty() {
            return Ok(());
        }
        let mut rec = Vec::with_capacity(64 * new.len());
        record::begin_series(&mut rec);
        {
            let ix = self.index.read();
            for s in &new {
                let pairs: Vec<(&str, &str)> = s.labels.resolve(&ix.symbols).collect();
                record::put_series(&mut rec, s.r, &pairs);
            }
        }
        wal.log(&rec, false)?;
        for s in new {
            s.state.lock().logged = true;
        }
        Ok(())
    }

    /// Removes those of `series` that no commit logged and no appender
    /// holds (what rolled-back appends created). Returns how many.
    pub fn remove_unlogged(&self, series: &[Arc<MemSeries>]) -> usize {
        let unheld = |s: &MemSeries| {
            let st = s.state.lock();
            !st.logged && st.pending == 0
        };
        if !series.iter().any(|s| unheld(s)) {
            return 0;
        }
        let mut ix = self.index.write();
        self.remove_series(&mut ix, series, &|st| !st.logged && st.pending == 0)
    }

    /// Removes from the index the series of `candidates` still there for
    /// which `gone` holds (checked under the index write lock, so that no
    /// appender can find one in between), releasing their postings and
    /// symbols. Returns how many.
    fn remove_series(
        &self,
        ix: &mut HeadIndex,
        candidates: &[Arc<MemSeries>],
        gone: &dyn Fn(&super::series::SeriesState) -> bool,
    ) -> usize {
        let mut removed = Vec::new();
        let mut released = Vec::new();
        for s in candidates {
            let here = ix.series.get(&s.r).is_some_and(|x| Arc::ptr_eq(x, s));
            if here && gone(&s.state.lock()) {
                ix.remove(s);
                removed.push(s.r);
                released.push(s.clone());
            }
        }
        // A few series (a rolled-back scrape's): rewrite only their lists;
        // many (a truncation): one pass over all of them.
        if removed.len().saturating_mul(64) < ix.series.len() {
            let some: Vec<(u64, Vec<_>)> = released
                .iter()
                .map(|s| (s.r, s.labels.pairs().collect()))
                .collect();
            ix.postings.delete_some(&some);
        } else {
            ix.postings.delete_many(&removed);
        }
        for s in &released {
            s.labels.release(&mut ix.symbols);
        }
        if ix.symbols.compact() {
            tracing::debug!(symbols = ix.symbols.len(), "head symbol table compacted");
        }
        self.counters
            .series_removed
            .fetch_add(removed.len() as u64, Ordering::Relaxed);
        removed.len()
    }

    /// Runs `f` on the series with ref `r`, under the index read lock.
    pub fn with_ref<R>(&self, r: SeriesRef, f: impl FnOnce(&Arc<MemSeries>) -> R) -> Option<R> {
        let ix = self.index.read();
        ix.series.get(&r).map(f)
    }

    /// Creates (or finds) a series with a given ref during WAL replay.
    /// Returns the series, whose ref differs from `r` when the same labels
    /// were already replayed under another ref; None when it cannot be
    /// added (symbol table full).
    pub fn replay_series(&self, r: SeriesRef, labels: &Labels) -> Option<Arc<MemSeries>> {
        let hash = hash_labels(labels);
        let mut ix = self.index.write();
        if let Some(s) = ix.find(hash, labels) {
            return Some(s.clone());
        }
        if let Some(s) = ix.series.get(&r) {
            // Same ref, different labels: corrupt input. Keep the first.
            tracing::warn!(
                series_ref = r,
                "WAL replay: series ref reused with other labels"
            );
            return Some(s.clone());
        }
        match ix.insert(hash, r, labels) {
            Ok(s) => {
                self.next_ref.fetch_max(r + 1, Ordering::SeqCst);
                s.state.lock().logged = true;
                Some(s)
            }
            Err(e) => {
                tracing::error!(series_ref = r, error = %e, "WAL replay: series not restored");
                None
            }
        }
    }

    pub fn num_series(&self) -> usize {
        self.index.read().series.len()
    }

    pub fn all_series(&self) -> Vec<Arc<MemSeries>> {
        self.index.read().series.values().cloned().collect()
    }

    pub fn postings_for_matchers(&self, matchers: &[Matcher]) -> Vec<SeriesRef> {
        let ix = self.index.read();
        let all = || ix.all_refs();
        postings_for_matchers(&ix.postings.view(&ix.symbols, &all), matchers)
    }

    /// The labels of a series of this head.
    pub fn labels(&self, s: &MemSeries) -> Labels {
        self.index.read().labels(s)
    }

    /// Runs `f` on a series' (name, value) pairs, sorted by name, without
    /// building a [`Labels`].
    pub fn with_labels<R>(
        &self,
        s: &MemSeries,
        f: impl for<'a> FnOnce(&mut dyn Iterator<Item = (&'a str, &'a str)>) -> R,
    ) -> R {
        let ix = self.index.read();
        let mut pairs = s.labels.resolve(&ix.symbols);
        let r = f(&mut pairs);
        drop(pairs);
        r
    }

    /// Labels and chunks overlapping `[mint, maxt]` of the given series.
    pub fn series_chunks(&self, refs: &[SeriesRef], mint: i64, maxt: i64) -> Vec<SeriesChunks> {
        let series: Vec<Arc<MemSeries>> = {
            let ix = self.index.read();
            refs.iter()
                .filter_map(|r| ix.series.get(r).cloned())
                .collect()
        };
        let with_chunks: Vec<(Arc<MemSeries>, Vec<ClosedChunk>)> = series
            .into_iter()
            .filter_map(|s| {
                let chunks = self.chunks_of(&s, mint, maxt);
                (!chunks.is_empty()).then_some((s, chunks))
            })
            .collect();
        let ix = self.index.read();
        with_chunks
            .into_iter()
            .map(|(s, chunks)| SeriesChunks {
                labels: ix.labels(&s),
                chunks,
            })
            .collect()
    }

    pub fn labels_of(&self, refs: &[SeriesRef]) -> Vec<Labels> {
        let ix = self.index.read();
        refs.iter()
            .filter_map(|r| ix.series.get(r).map(|s| ix.labels(s)))
            .collect()
    }

    pub fn label_names(&self) -> Vec<String> {
        let ix = self.index.read();
        ix.postings.label_names(&ix.symbols)
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let ix = self.index.read();
        ix.postings.label_values(&ix.symbols, name)
    }

    /// Oldest sample time the head may hold (None when empty).
    pub fn min_time(&self) -> Option<i64> {
        let min = self.min_time.load(Ordering::Relaxed);
        (min != i64::MAX && min <= self.max_time()).then_some(min)
    }

    /// Drops chunks ending before `mint` and removes series left without
    /// chunks and without pending appends. Returns (chunks, series) removed.
    pub fn truncate(&self, mint: i64) -> (usize, usize) {
        let r = self.truncate_series(mint);
        if let Some(disk) = &self.disk {
            disk.truncate(mint);
        }
        r
    }

    fn truncate_series(&self, mint: i64) -> (usize, usize) {
        self.set_min_valid_time(mint);
        // Chunks never straddle the truncation time (they are cut at block
        // boundaries): what stays begins at or after it.
        self.min_time.fetch_max(mint, Ordering::Relaxed);
        let mut chunks = 0;
        let mut empty = Vec::new();
        for s in self.all_series() {
            let mut st = s.state.lock();
            chunks += st.truncate(mint, &|r| self.read_record(r));
            if st.is_empty() && st.pending == 0 {
                empty.push(s.clone());
            }
        }
        if empty.is_empty() {
            return (chunks, 0);
        }
        let mut ix = self.index.write();
        // Re-checked under the write lock: an appender may have found it.
        let removed = self.remove_series(&mut ix, &empty, &|st| st.is_empty() && st.pending == 0);
        // After a large drop (series churn), give the maps' space back;
        // otherwise keep the headroom for the series still coming.
        let n = ix.series.len();
        if ix.series.capacity() > 2 * n + 1024 {
            ix.series.shrink_to(n * 8 / 7);
            let HeadIndex {
                symbols,
                series,
                by_hash,
                ..
            } = &mut *ix;
            by_hash.shrink_to(n * 8 / 7, |r| {
                series
                    .get(r)
                    .map_or(0, |s| hash_pairs(s.labels.resolve(symbols)))
            });
        }
        (chunks, removed)
    }

    /// (chunks, estimated heap bytes) of the whole head.
    pub fn memory(&self) -> (usize, usize) {
        let ix = self.index.read();
        let mut chunks = 0;
        // Per series: the MemSeries allocation with its Arc header; map
        // slots are counted from the maps' capacities (slot + control byte).
        let per_series = std::mem::size_of::<MemSeries>() + 16;
        let mut bytes = ix.postings.memory_estimate()
            + ix.symbols.heap_bytes()
            + ix.series.capacity() * 17
            + ix.by_hash.capacity() * 9;
        for s in ix.series.values() {
            let st = s.state.lock();
            chunks += st.num_chunks();
            bytes += per_series + s.labels.heap_bytes() + st.chunk_bytes();
        }
        (chunks, bytes)
    }
}
