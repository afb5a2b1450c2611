//! One in-memory series of the head: its labels as symbol ids, the chunks
//! it closed (moved to disk or still on the heap) and the open chunk being
//! appended to.
//!
//! Memory per series is what limits an agent's cardinality, so everything
//! here is sized by hand: labels are a few bytes of varint ids into the
//! head's symbol table ([`SymLabels`]), chunks moved to the head chunk
//! files are a varint-packed list of ~13 bytes each ([`DiskChunks`]),
//! chunks still on the heap are shared with readers through `Arc`, and the
//! last sample is the open chunk's own state. `MemSeries` plus its `Arc`
//! header fill exactly one 160-byte allocator size class (a test pins it).

use std::sync::Arc;

use parking_lot::Mutex;
use thin_vec::ThinVec;

use super::chunkenc::{Chunk, ChunkIter, SAMPLES_PER_CHUNK};
use super::symbols::SymLabels;
use super::AppendError;

pub type SeriesRef = u64;

/// The head's label-set hash, computed the same way from `Labels` and
/// from a series' resolved symbol ids (the head compares labels on equal
/// hashes: see [`crate::model::hash_pairs`]).
pub use crate::model::{hash_labels, hash_pairs};

/// A closed chunk's bytes on the heap: one thin pointer, so that
/// [`ClosedChunk`] stays small.
pub type MemBytes = Arc<Box<[u8]>>;

/// Where a chunk record in the head chunk files is: file number (16 bits),
/// byte offset (32 bits) and length (16 bits; a record is a small header
/// and a chunk of at most 120 samples) packed in one word. 0 is no record
/// (files are numbered from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DiskRef(u64);

impl DiskRef {
    pub const NONE: DiskRef = DiskRef(0);

    pub fn new(file: u32, off: u64, len: usize) -> Option<DiskRef> {
        if file == 0 || file > 0xffff || off > 0xffff_ffff || len > 0xffff {
            return None;
        }
        Some(DiskRef(((file as u64) << 48) | (off << 16) | len as u64))
    }

    pub fn from_raw(raw: u64) -> DiskRef {
        DiskRef(raw)
    }

    pub fn raw(self) -> u64 {
        self.0
    }

    pub fn is_none(self) -> bool {
        self.0 == 0
    }

    pub fn file(self) -> u32 {
        (self.0 >> 48) as u32
    }

    pub fn off(self) -> u64 {
        (self.0 >> 16) & 0xffff_ffff
    }

    pub fn byte_len(self) -> u32 {
        (self.0 & 0xffff) as u32
    }
}

/// A closed chunk, immutable and shared with queries and compaction.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub mint: i64,
    pub maxt: i64,
    /// [`super::chunkenc::ENCODING_XOR`] or `ENCODING_INT`.
    pub enc: u8,
    pub data: MemBytes,
}

impl ClosedChunk {
    pub fn mem(mint: i64, maxt: i64, enc: u8, data: Vec<u8>) -> ClosedChunk {
        ClosedChunk {
            mint,
            maxt,
            enc,
            data: Arc::new(data.into_boxed_slice()),
        }
    }

    pub fn enc(&self) -> u8 {
        self.enc
    }

    pub fn iter(&self) -> ChunkIter<'_> {
        ChunkIter::new(self.enc, &self.data)
    }
}

/// The chunks of a series that moved to the head chunk files, as a chain:
/// each record there names the record of the series' previous chunk (see
/// head_chunks.rs), so the series keeps only the newest one and how many
/// of the chain are still in the head — 10 bytes inside the series
/// whatever the count, where a list would grow with every chunk (~13
/// bytes each packed, 32 as `ClosedChunk`s).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskChain {
    pub newest: DiskRef,
    pub len: u16,
}

/// What a chunk record says of itself (head_chunks.rs reads it).
#[derive(Debug, Clone)]
pub struct DiskChunk {
    pub prev: DiskRef,
    pub chunk: ClosedChunk,
}

impl DiskChain {
    /// The chunks of the chain overlapping `[mint, maxt]`, oldest first,
    /// read with `read`. A record that cannot be read ends the walk (its
    /// file was dropped by a truncation: the data is in a block).
    pub fn chunks(
        self,
        mint: i64,
        maxt: i64,
        read: &dyn Fn(DiskRef) -> Option<DiskChunk>,
    ) -> Vec<ClosedChunk> {
        let mut out = Vec::new();
        let mut r = self.newest;
        for _ in 0..self.len {
            let Some(d) = read(r) else { break };
            if d.chunk.maxt < mint {
                // Newest first and never overlapping: the rest is older.
                break;
            }
            if d.chunk.mint <= maxt {
                out.push(d.chunk);
            }
            r = d.prev;
        }
        out.reverse();
        out
    }

    /// Start of the chain's oldest chunk that can still be read.
    fn oldest_mint(self, read: &dyn Fn(DiskRef) -> Option<DiskChunk>) -> Option<i64> {
        let mut r = self.newest;
        let mut oldest = None;
        for _ in 0..self.len {
            let Some(d) = read(r) else { break };
            oldest = Some(d.chunk.mint);
            r = d.prev;
        }
        oldest
    }

    /// How many of the chain's newest chunks end at or after `mint`.
    fn count_from(self, mint: i64, read: &dyn Fn(DiskRef) -> Option<DiskChunk>) -> u16 {
        let mut r = self.newest;
        let mut n = 0;
        while n < self.len {
            match read(r) {
                Some(d) if d.chunk.maxt >= mint => {
                    n += 1;
                    r = d.prev;
                }
                _ => break,
            }
        }
        n
    }
}

#[derive(Debug)]
struct OpenChunk {
    mint: i64,
    chunk: Chunk,
}

/// The mutable part of a series, behind its mutex.
#[derive(Debug)]
pub struct SeriesState {
    /// Closed chunks in the head chunk files (older than every `mem` one):
    /// a [`DiskChain`], kept as two fields so that the length packs with
    /// `pending` (a nested struct would pad to 16 bytes and push the
    /// series into the next allocator size class).
    disk_newest: DiskRef,
    disk_len: u16,
    /// Closed chunks still on the heap, waiting for the next offload.
    mem: ThinVec<ClosedChunk>,
    /// The chunk being appended to; its last sample is the series' last.
    open: Option<OpenChunk>,
    /// Appenders holding uncommitted samples for this series; the head does
    /// not garbage-collect a series while this is non-zero.
    pub pending: u32,
    /// The series' record is in the WAL. A series is created in the head
    /// by the first append that names it but logged only by the first
    /// commit with a sample for it: until then a rollback removes it again
    /// (a scrape failing its `sample_limit` leaves nothing behind).
    pub logged: bool,
}

/// Initial buffer of an open chunk; grows in 32-byte steps (bstream.rs).
const OPEN_CHUNK_CAPACITY: usize = 32;

/// An open chunk is cut once it holds this many bytes (or
/// [`SAMPLES_PER_CHUNK`] samples). The open chunk is the part of a series
/// that grows in memory — a float gauge takes 4-5 bytes a sample, so 120
/// samples would be ~550 — while closed chunks leave the heap within
/// seconds and cost the series nothing once on disk ([`DiskChain`]).
/// Blocks re-encode a series' whole range, so this does not change their
/// size.
pub const CHUNK_BYTES_TARGET: usize = 160;

/// End (exclusive) of the `range`-aligned window containing `t`.
pub fn range_end(t: i64, range: i64) -> i64 {
    t.div_euclid(range).saturating_add(1).saturating_mul(range)
}

impl SeriesState {
    fn new() -> SeriesState {
        SeriesState {
            disk_newest: DiskRef::NONE,
            disk_len: 0,
            mem: ThinVec::new(),
            open: None,
            pending: 0,
            logged: false,
        }
    }

    /// The last appended sample. None before the first, and after the head
    /// dropped the open chunk for being older than its minimum valid time —
    /// then every sample the order check could refuse is out of bounds
    /// anyway.
    pub fn last(&self) -> Option<(i64, f64)> {
        let o = self.open.as_ref()?;
        (o.chunk.num_samples() > 0).then(|| (o.chunk.last_t(), o.chunk.last_v()))
    }

    /// Would appending `(t, v)` after `last` be accepted? `Ok(false)` means
    /// an exact duplicate, which is silently ignored as in Prometheus.
    pub fn check(last: Option<(i64, f64)>, t: i64, v: f64) -> Result<bool, AppendError> {
        match last {
            Some((lt, _)) if t < lt => Err(AppendError::OutOfOrder),
            Some((lt, lv)) if t == lt => {
                if lv.to_bits() == v.to_bits() {
                    Ok(false)
                } else {
                    Err(AppendError::DuplicateSampleForTimestamp)
                }
            }
            _ => Ok(true),
        }
    }

    /// Appends a sample, cutting a new chunk after [`SAMPLES_PER_CHUNK`]
    /// samples or [`CHUNK_BYTES_TARGET`] bytes, or at a `chunk_range`
    /// boundary (so chunks never straddle a block). Returns whether a sample
    /// was stored.
    pub fn append(&mut self, t: i64, v: f64, chunk_range: i64) -> Result<bool, AppendError> {
        if !Self::check(self.last(), t, v)? {
            return Ok(false);
        }
        let cut = match &self.open {
            None => true,
            Some(o) => {
                o.chunk.num_samples() >= SAMPLES_PER_CHUNK
                    || o.chunk.bytes().len() >= CHUNK_BYTES_TARGET
                    || t >= range_end(o.mint, chunk_range)
                    || !o.chunk.can_append(v)
            }
        };
        if cut {
            let next = match &self.open {
                Some(o) => o.chunk.successor(v, OPEN_CHUNK_CAPACITY),
                None => Chunk::first(v, OPEN_CHUNK_CAPACITY),
            };
            self.close_open();
            self.open = Some(OpenChunk {
                mint: t,
                chunk: next,
            });
        }
        if let Some(o) = &mut self.open {
            o.chunk.append(t, v);
        }
        Ok(true)
    }

    fn close_open(&mut self) {
        if let Some(o) = self.open.take() {
            if o.chunk.num_samples() > 0 {
                let maxt = o.chunk.last_t();
                let enc = o.chunk.encoding();
                // Exact growth: doubling would keep unused 32-byte entries
                // per series until the next offload.
                self.mem.reserve_exact(1);
                self.mem
                    .push(ClosedChunk::mem(o.mint, maxt, enc, o.chunk.into_bytes()));
            }
        }
    }

    /// The chunks on the heap (closed and open, the open one copied)
    /// overlapping `[mint, maxt]`, oldest first, and the disk chain when
    /// it may hold chunks of that range (resolve it with
    /// [`DiskChain::chunks`], without this state's lock).
    pub fn chunks(&self, mint: i64, maxt: i64) -> (Option<DiskChain>, Vec<ClosedChunk>) {
        let overlaps = |c: &ClosedChunk| c.maxt >= mint && c.mint <= maxt;
        let mut out: Vec<ClosedChunk> = self.mem.iter().filter(|c| overlaps(c)).cloned().collect();
        let mut heap_mint = self.mem.first().map(|c| c.mint);
        if let Some(o) = &self.open {
            if o.chunk.num_samples() > 0 && o.chunk.last_t() >= mint && o.mint <= maxt {
                out.push(ClosedChunk::mem(
                    o.mint,
                    o.chunk.last_t(),
                    o.chunk.encoding(),
                    o.chunk.bytes().to_vec(),
                ));
            }
            heap_mint = heap_mint.or(Some(o.mint));
        }
        // Disk chunks all end before the heap's first chunk starts.
        let disk = (self.disk_len > 0 && heap_mint.is_none_or(|m| mint < m)).then_some(self.disk());
        (disk, out)
    }

    /// Drops chunks that end before `mint` (reading the disk chain's
    /// records with `read`); returns how many were dropped.
    pub fn truncate(&mut self, mint: i64, read: &dyn Fn(DiskRef) -> Option<DiskChunk>) -> usize {
        let keep = self.disk().count_from(mint, read);
        let mut dropped = (self.disk_len - keep) as usize;
        self.disk_len = keep;
        let before = self.mem.len();
        self.mem.retain(|c| c.maxt >= mint);
        dropped += before - self.mem.len();
        if self.mem.is_empty() {
            self.mem = ThinVec::new();
        }
        if self.open.as_ref().is_some_and(|o| o.chunk.last_t() < mint) {
            self.open = None;
            dropped += 1;
        }
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.disk_len == 0 && self.mem.is_empty() && self.open.is_none()
    }

    /// The disk chain (when not empty) and the start of the oldest chunk
    /// on the heap: the series' oldest sample is the chain's oldest, else
    /// that one (resolve the chain with [`oldest_sample_time`] without
    /// this state's lock).
    pub fn oldest(&self) -> (Option<DiskChain>, Option<i64>) {
        let heap = self
            .mem
            .first()
            .map(|c| c.mint)
            .or(self.open.as_ref().map(|o| o.mint));
        ((self.disk_len > 0).then(|| self.disk()), heap)
    }

    pub fn num_chunks(&self) -> usize {
        self.disk_len as usize + self.mem.len() + usize::from(self.open.is_some())
    }

    fn disk(&self) -> DiskChain {
        DiskChain {
            newest: self.disk_newest,
            len: self.disk_len,
        }
    }

    /// The disk chain, and the closed chunks still on the heap, oldest
    /// first (to be offloaded).
    pub fn offload_state(&self) -> (DiskChain, &[ClosedChunk]) {
        (self.disk(), &self.mem)
    }

    /// Records that the oldest in-memory chunk, whose bytes are `data`,
    /// now is the record `to`, written with `prev` as its predecessor. Only
    /// if the chain still ends at `prev` and that chunk is still the
    /// oldest on the heap (else the record is left orphaned and the chunk
    /// stays in memory for the next offload); returns whether it moved.
    pub fn chunk_moved(&mut self, data: &MemBytes, prev: DiskRef, to: DiskRef) -> bool {
        let ok = self.disk_newest == prev
            && self.disk_len < u16::MAX
            && self.mem.first().is_some_and(|c| Arc::ptr_eq(&c.data, data));
        if ok {
            self.mem.remove(0);
            if self.mem.is_empty() {
                self.mem = ThinVec::new();
            }
            self.disk_newest = to;
            self.disk_len += 1;
        }
        ok
    }

    /// Heap bytes held by chunks (for the memory estimate).
    pub fn chunk_bytes(&self) -> usize {
        // The Box and Arc allocations with their headers.
        let mem: usize = self.mem.iter().map(|c| c.data.len() + 16 + 24).sum();
        let mem_list = if self.mem.capacity() == 0 {
            0
        } else {
            16 + self.mem.capacity() * std::mem::size_of::<ClosedChunk>()
        };
        mem + mem_list + self.open.as_ref().map_or(0, |o| o.chunk.capacity())
    }
}

/// The oldest sample time of a series from what [`SeriesState::oldest`]
/// returned, reading its disk chain with `read`.
pub fn oldest_sample_time(
    (chain, heap): (Option<DiskChain>, Option<i64>),
    read: &dyn Fn(DiskRef) -> Option<DiskChunk>,
) -> Option<i64> {
    chain.and_then(|c| c.oldest_mint(read)).or(heap)
}

/// A series in the head. Its labels are ids into the head's symbol table:
/// resolve them through the head (which holds the table's lock).
#[derive(Debug)]
pub struct MemSeries {
    pub r: SeriesRef,
    pub labels: SymLabels,
    pub state: Mutex<SeriesState>,
}

impl MemSeries {
    pub fn new(r: SeriesRef, labels: SymLabels) -> MemSeries {
        MemSeries {
            r,
            labels,
            state: Mutex::new(SeriesState::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    #[test]
    fn hashes_agree_and_differ() {
        let l = Labels::from_pairs([
            ("__name__", "up"),
            ("job", "a"),
            ("long", &*"x".repeat(300)),
        ]);
        assert_eq!(
            hash_pairs(l.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
            hash_labels(&l)
        );
        assert_ne!(
            hash_labels(&Labels::from_pairs([("a", "bc")])),
            hash_labels(&Labels::from_pairs([("ab", "c")]))
        );
    }

    /// A head chunk file in memory: records by ref.
    type Records = std::collections::HashMap<u64, DiskChunk>;

    fn reader(recs: &Records) -> impl Fn(DiskRef) -> Option<DiskChunk> + '_ {
        move |r| recs.get(&r.raw()).cloned()
    }

    /// Moves every heap chunk of `s` to `recs`, as an offload does.
    fn offload(s: &mut SeriesState, recs: &mut Records, next_off: &mut u64) {
        let (chain, mem) = s.offload_state();
        let mut prev = chain.newest;
        let mut moved = Vec::new();
        for c in mem {
            let r = DiskRef::new(1, *next_off, 25 + c.data.len()).unwrap();
            *next_off += 1000;
            recs.insert(
                r.raw(),
                DiskChunk {
                    prev,
                    chunk: c.clone(),
                },
            );
            moved.push((c.data.clone(), prev, r));
            prev = r;
        }
        for (data, prev, r) in moved {
            assert!(s.chunk_moved(&data, prev, r));
        }
    }

    fn all_samples(s: &SeriesState, recs: &Records, mint: i64, maxt: i64) -> Vec<(i64, f64)> {
        let (disk, mut heap) = s.chunks(mint, maxt);
        let mut chunks = disk.map_or(Vec::new(), |d| d.chunks(mint, maxt, &reader(recs)));
        chunks.append(&mut heap);
        chunks.iter().flat_map(|c| c.iter()).collect()
    }

    #[test]
    fn append_rules_and_cutting() {
        let mut s = SeriesState::new();
        assert_eq!(s.last(), None);
        assert_eq!(s.append(1000, 1.0, 7_200_000), Ok(true));
        assert_eq!(s.last(), Some((1000, 1.0)));
        assert_eq!(s.append(1000, 1.0, 7_200_000), Ok(false));
        assert_eq!(
            s.append(1000, 2.0, 7_200_000),
            Err(AppendError::DuplicateSampleForTimestamp)
        );
        assert_eq!(s.append(999, 2.0, 7_200_000), Err(AppendError::OutOfOrder));
        for i in 1..=300 {
            s.append(1000 + i * 15_000, i as f64, 7_200_000).unwrap();
        }
        assert_eq!(s.num_chunks(), 3);
        // Crossing a range boundary cuts even a small chunk.
        s.append(7_200_000, 0.0, 7_200_000).unwrap();
        assert_eq!(s.num_chunks(), 4);
        let recs = Records::new();
        assert_eq!(all_samples(&s, &recs, i64::MIN, i64::MAX).len(), 302);
        assert_eq!(s.truncate(7_200_000, &reader(&recs)), 3);
        assert_eq!(all_samples(&s, &recs, i64::MIN, i64::MAX).len(), 1);
    }

    #[test]
    fn chunks_are_cut_at_the_byte_target() {
        // Full-precision floats: ~8 bytes a sample in XOR.
        let mut s = SeriesState::new();
        let mut x = 0.123_456_789_f64;
        for i in 0..120 {
            x = (x * 3.9 * (1.0 - x)).abs();
            s.append(i * 1000, x, 1 << 40).unwrap();
        }
        assert!(s.num_chunks() >= 4, "{} chunks", s.num_chunks());
        for c in s.offload_state().1 {
            assert!(c.data.len() <= CHUNK_BYTES_TARGET + 16, "{}", c.data.len());
        }
        assert_eq!(all_samples(&s, &Records::new(), 0, i64::MAX).len(), 120);
    }

    #[test]
    fn last_sample_survives_an_integer_chunk_nan() {
        // Integer chunks escape a NaN without touching their integer state;
        // the series' last value must still be the NaN (a staleness marker
        // repeated at the same timestamp is a duplicate, not a conflict).
        let mut s = SeriesState::new();
        for i in 0..130 {
            s.append(i * 1000, (i * 3) as f64, 7_200_000).unwrap();
        }
        let stale = crate::model::stale_nan();
        s.append(200_000, stale, 7_200_000).unwrap();
        let (t, v) = s.last().unwrap();
        assert_eq!((t, v.to_bits()), (200_000, stale.to_bits()));
        assert_eq!(s.append(200_000, stale, 7_200_000), Ok(false));
        s.append(201_000, 400.0, 7_200_000).unwrap();
        assert_eq!(s.last(), Some((201_000, 400.0)));
    }

    #[test]
    fn chunks_move_to_the_disk_chain_in_order_and_truncate() {
        let mut s = SeriesState::new();
        let (mut recs, mut off) = (Records::new(), 1u64);
        let mut want = Vec::new();
        for i in 0..500i64 {
            s.append(i * 15_000, i as f64, 1 << 40).unwrap();
            want.push((i * 15_000, i as f64));
            if i == 250 {
                offload(&mut s, &mut recs, &mut off);
            }
        }
        offload(&mut s, &mut recs, &mut off);
        assert!(s.offload_state().1.is_empty());
        assert_eq!(s.num_chunks(), 1 + recs.len());
        assert!(recs.len() >= 4, "{} records", recs.len());
        assert_eq!(all_samples(&s, &recs, i64::MIN, i64::MAX), want);
        // A range served by the heap alone does not need the chain.
        let (disk, _) = s.chunks(499 * 15_000, i64::MAX);
        assert_eq!(disk, None);
        // A range in the middle reads only the chain's overlapping records:
        // whole chunks around it, nothing more.
        let bounds: Vec<(i64, i64)> = recs
            .values()
            .map(|d| (d.chunk.mint, d.chunk.maxt))
            .collect();
        let (lo, hi) = (130 * 15_000, 140 * 15_000);
        let mid = all_samples(&s, &recs, lo, hi);
        let first = bounds
            .iter()
            .filter(|b| b.1 >= lo)
            .map(|b| b.0)
            .min()
            .unwrap();
        let last = bounds
            .iter()
            .filter(|b| b.0 <= hi)
            .map(|b| b.1)
            .max()
            .unwrap();
        assert_eq!((mid[0].0, mid[mid.len() - 1].0), (first, last));
        assert_eq!(mid.len() as i64, (last - first) / 15_000 + 1);
        // Only the oldest heap chunk can move, onto the chain's newest end.
        for i in 500..740i64 {
            s.append(i * 15_000, i as f64, 1 << 40).unwrap();
        }
        let (chain, mem) = s.offload_state();
        let (d0, d1) = (mem[0].data.clone(), mem[1].data.clone());
        let r = DiskRef::new(2, 0, 10).unwrap();
        assert!(!s.chunk_moved(&d1, chain.newest, r));
        assert!(!s.chunk_moved(&d0, DiskRef::NONE, r));
        // Truncation counts back through the chain.
        let before = bounds.iter().filter(|b| b.1 < 3_600_000).count();
        assert_eq!(s.truncate(3_600_000, &reader(&recs)), before);
        let left = all_samples(&s, &recs, i64::MIN, i64::MAX);
        let cut = bounds
            .iter()
            .filter(|b| b.1 >= 3_600_000)
            .map(|b| b.0)
            .min()
            .unwrap();
        assert!(cut <= 3_600_000);
        assert_eq!(left[0].0, cut);
        assert_eq!(left.len() as i64, 740 - cut / 15_000);
        // A record that cannot be read (its file gone) ends the walk.
        let on_disk = s.offload_state().0.len as usize;
        assert_eq!(s.truncate(3_600_000, &|_| None), on_disk);
        assert_eq!(s.num_chunks(), 1 + s.offload_state().1.len());
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn series_fill_one_size_class_and_disk_refs_round_trip() {
        assert_eq!(std::mem::size_of::<super::DiskChain>(), 16);
        assert_eq!(std::mem::size_of::<super::ClosedChunk>(), 32);
        // With the Arc header (16 bytes), one 160-byte allocation.
        assert!(
            std::mem::size_of::<super::MemSeries>() <= 144,
            "{}",
            std::mem::size_of::<super::MemSeries>()
        );
        let r = super::DiskRef::new(65535, 0xffff_fff0, 1200).unwrap();
        assert_eq!(
            (r.file(), r.off(), r.byte_len()),
            (65535, 0xffff_fff0, 1200)
        );
        assert!(super::DiskRef::new(65536, 0, 1).is_none());
        assert!(
            super::DiskRef::new(0, 0, 1).is_none(),
            "file 0 is no record"
        );
        assert!(super::DiskRef::new(1, 1 << 32, 1).is_none());
    }
}
