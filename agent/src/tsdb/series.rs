//! One in-memory series of the head: its labels packed into a single
//! allocation, its closed compressed chunks and the open chunk being
//! appended to.
//!
//! Memory per series is what limits an agent's cardinality, so labels are
//! one `Box<[u8]>` (varint-length-prefixed names and values, as Prometheus'
//! `stringlabels`), closed chunks are shrunk to their exact size and shared
//! with readers through `Arc`, and the last sample is kept outside the chunks
//! so order checks survive the head dropping persisted chunks.

use std::sync::Arc;

use parking_lot::Mutex;

use super::chunkenc::{Chunk, ChunkIter, SAMPLES_PER_CHUNK};
use super::AppendError;
use crate::model::{Labels, LabelsBuilder};

pub type SeriesRef = u64;

/// A label set packed as `uvarint len, name, uvarint len, value` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedLabels(Box<[u8]>);

impl PackedLabels {
    pub fn new(l: &Labels) -> PackedLabels {
        let mut b = Vec::with_capacity(l.iter().map(|l| l.name.len() + l.value.len() + 2).sum());
        for l in l.iter() {
            super::encoding::put_str(&mut b, &l.name);
            super::encoding::put_str(&mut b, &l.value);
        }
        PackedLabels(b.into_boxed_slice())
    }

    pub fn iter(&self) -> PackedIter<'_> {
        PackedIter { b: &self.0 }
    }

    pub fn to_labels(&self) -> Labels {
        let mut b = LabelsBuilder::default();
        for (n, v) in self.iter() {
            b.set(n, v);
        }
        b.build()
    }

    pub fn eq_labels(&self, l: &Labels) -> bool {
        let mut it = self.iter();
        for l in l.iter() {
            match it.next() {
                Some((n, v)) if n == l.name && v == l.value => {}
                _ => return false,
            }
        }
        it.next().is_none()
    }

    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

pub struct PackedIter<'a> {
    b: &'a [u8],
}

impl<'a> PackedIter<'a> {
    fn take_str(&mut self) -> Option<&'a str> {
        let mut n = 0usize;
        let mut shift = 0;
        loop {
            let (&byte, rest) = self.b.split_first()?;
            self.b = rest;
            n |= ((byte & 0x7f) as usize) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        if n > self.b.len() {
            return None;
        }
        let (s, rest) = self.b.split_at(n);
        self.b = rest;
        // Built from `String`s, so always valid.
        std::str::from_utf8(s).ok()
    }
}

impl<'a> Iterator for PackedIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        if self.b.is_empty() {
            return None;
        }
        let n = self.take_str()?;
        let v = self.take_str()?;
        Some((n, v))
    }
}

/// A 64-bit hash of a label set computed the same way from `Labels` and
/// from `PackedLabels` (Fx-style word mixing: fast, in-memory only).
pub fn hash_pairs<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> u64 {
    fn mix(h: u64, w: u64) -> u64 {
        (h.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95)
    }
    fn bytes(mut h: u64, b: &[u8]) -> u64 {
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            h = mix(h, u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = mix(h, u64::from_le_bytes(w));
        mix(h, b.len() as u64)
    }
    let mut h = 0u64;
    for (n, v) in pairs {
        h = bytes(h, n.as_bytes());
        h = bytes(h, v.as_bytes());
    }
    // Final avalanche so that the low bits used by hash tables vary.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

pub fn hash_labels(l: &Labels) -> u64 {
    hash_pairs(l.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// A closed chunk's bytes on the heap: one thin pointer, so that
/// [`ChunkData`] (and with it [`ClosedChunk`]) stays small.
pub type MemBytes = Arc<Box<[u8]>>;

/// Where a chunk moved to disk is: file number (16 bits), byte offset
/// (32 bits) and length (16 bits; head chunks hold at most 120 samples)
/// packed in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskRef(u64);

impl DiskRef {
    pub fn new(file: u32, off: u64, len: usize) -> Option<DiskRef> {
        if file > 0xffff || off > 0xffff_ffff || len > 0xffff {
            return None;
        }
        Some(DiskRef(((file as u64) << 48) | (off << 16) | len as u64))
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

/// Where a closed chunk's bytes are, with the chunk's encoding
/// ([`super::chunkenc::ENCODING_XOR`] or `ENCODING_INT`) in the padding.
#[derive(Debug, Clone)]
pub enum ChunkData {
    /// On the heap, shared with readers.
    Mem(u8, MemBytes),
    /// Moved to a head chunk file (see head_chunks.rs).
    Disk(u8, DiskRef),
}

/// A closed chunk, immutable and shared with queries and compaction.
/// 32 bytes: the head keeps one per closed chunk of every series.
#[derive(Debug, Clone)]
pub struct ClosedChunk {
    pub mint: i64,
    pub maxt: i64,
    pub data: ChunkData,
}

impl ClosedChunk {
    /// An in-memory chunk.
    pub fn mem(mint: i64, maxt: i64, enc: u8, data: Vec<u8>) -> ClosedChunk {
        ClosedChunk {
            mint,
            maxt,
            data: ChunkData::Mem(enc, Arc::new(data.into_boxed_slice())),
        }
    }

    pub fn enc(&self) -> u8 {
        match self.data {
            ChunkData::Mem(e, _) | ChunkData::Disk(e, _) => e,
        }
    }

    /// Decodes an in-memory chunk (`None` for one moved to disk: resolve it
    /// with [`super::head::Head::read_chunk`]).
    pub fn iter(&self) -> Option<ChunkIter<'_>> {
        match &self.data {
            ChunkData::Mem(enc, d) => Some(ChunkIter::new(*enc, d)),
            ChunkData::Disk(..) => None,
        }
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
    closed: Vec<ClosedChunk>,
    open: Option<OpenChunk>,
    /// Last appended sample; `i64::MIN` when none yet.
    last_t: i64,
    last_v: u64,
    /// Appenders holding uncommitted samples for this series; the head does
    /// not garbage-collect a series while this is non-zero.
    pub pending: u32,
}

/// Initial buffer of an open chunk; grows in 32-byte steps (bstream.rs).
const OPEN_CHUNK_CAPACITY: usize = 32;

/// End (exclusive) of the `range`-aligned window containing `t`.
pub fn range_end(t: i64, range: i64) -> i64 {
    t.div_euclid(range).saturating_add(1).saturating_mul(range)
}

impl SeriesState {
    fn new() -> SeriesState {
        SeriesState {
            closed: Vec::new(),
            open: None,
            last_t: i64::MIN,
            last_v: 0,
            pending: 0,
        }
    }

    pub fn last(&self) -> Option<(i64, f64)> {
        (self.last_t != i64::MIN).then(|| (self.last_t, f64::from_bits(self.last_v)))
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
    /// samples or at a `chunk_range` boundary (so chunks never straddle a
    /// block). Returns whether a sample was stored.
    pub fn append(&mut self, t: i64, v: f64, chunk_range: i64) -> Result<bool, AppendError> {
        if !Self::check(self.last(), t, v)? {
            return Ok(false);
        }
        let cut = match &self.open {
            None => true,
            Some(o) => {
                o.chunk.num_samples() >= SAMPLES_PER_CHUNK
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
        self.last_t = t;
        self.last_v = v.to_bits();
        Ok(true)
    }

    fn close_open(&mut self) {
        if let Some(o) = self.open.take() {
            if o.chunk.num_samples() > 0 {
                let maxt = o.chunk.last_t();
                let enc = o.chunk.encoding();
                // Exact growth: a doubled capacity would keep up to four
                // unused 48-byte entries per series for the life of the head.
                self.closed.reserve_exact(1);
                self.closed
                    .push(ClosedChunk::mem(o.mint, maxt, enc, o.chunk.into_bytes()));
            }
        }
    }

    /// Chunks overlapping `[mint, maxt]`; the open chunk is copied.
    pub fn chunks(&self, mint: i64, maxt: i64) -> Vec<ClosedChunk> {
        let mut out: Vec<ClosedChunk> = self
            .closed
            .iter()
            .filter(|c| c.maxt >= mint && c.mint <= maxt)
            .cloned()
            .collect();
        if let Some(o) = &self.open {
            if o.chunk.num_samples() > 0 && o.chunk.last_t() >= mint && o.mint <= maxt {
                out.push(ClosedChunk::mem(
                    o.mint,
                    o.chunk.last_t(),
                    o.chunk.encoding(),
                    o.chunk.bytes().to_vec(),
                ));
            }
        }
        out
    }

    /// Drops chunks that end before `mint`; returns how many were dropped.
    pub fn truncate(&mut self, mint: i64) -> usize {
        let before = self.closed.len();
        self.closed.retain(|c| c.maxt >= mint);
        let mut dropped = before - self.closed.len();
        if self.open.as_ref().is_some_and(|o| o.chunk.last_t() < mint) {
            self.open = None;
            dropped += 1;
        }
        if self.closed.capacity() > self.closed.len() * 2 {
            self.closed.shrink_to_fit();
        }
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty() && self.open.is_none()
    }

    pub fn num_chunks(&self) -> usize {
        self.closed.len() + usize::from(self.open.is_some())
    }

    pub fn min_time(&self) -> Option<i64> {
        self.closed
            .first()
            .map(|c| c.mint)
            .or(self.open.as_ref().map(|o| o.mint))
    }

    pub fn closed_chunks(&self) -> &[ClosedChunk] {
        &self.closed
    }

    /// Points the in-memory closed chunk whose bytes are `data` to `to`
    /// (it may have been truncated meanwhile: then returns false).
    pub fn swap_chunk_data(&mut self, data: &MemBytes, to: DiskRef) -> bool {
        for c in &mut self.closed {
            if let ChunkData::Mem(enc, d) = &c.data {
                if Arc::ptr_eq(d, data) {
                    c.data = ChunkData::Disk(*enc, to);
                    return true;
                }
            }
        }
        false
    }

    /// Heap bytes held by chunks (for the memory estimate).
    pub fn chunk_bytes(&self) -> usize {
        let closed: usize = self
            .closed
            .iter()
            .map(|c| match &c.data {
                // Box and Arc allocations with their headers.
                ChunkData::Mem(_, d) => d.len() + 16 + 24,
                ChunkData::Disk(..) => 0,
            })
            .sum();
        closed
            + self.closed.capacity() * std::mem::size_of::<ClosedChunk>()
            + self.open.as_ref().map_or(0, |o| o.chunk.capacity())
    }
}

/// A series in the head.
#[derive(Debug)]
pub struct MemSeries {
    pub r: SeriesRef,
    pub labels: PackedLabels,
    pub state: Mutex<SeriesState>,
}

impl MemSeries {
    pub fn new(r: SeriesRef, labels: PackedLabels) -> MemSeries {
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

    #[test]
    fn packed_labels() {
        let l = Labels::from_pairs([
            ("__name__", "up"),
            ("job", "a"),
            ("long", &*"x".repeat(300)),
        ]);
        let p = PackedLabels::new(&l);
        assert!(p.eq_labels(&l));
        assert_eq!(p.to_labels(), l);
        assert_eq!(hash_pairs(p.iter()), hash_labels(&l));
        assert!(!p.eq_labels(&Labels::from_pairs([("__name__", "up")])));
        assert_ne!(
            hash_labels(&Labels::from_pairs([("a", "bc")])),
            hash_labels(&Labels::from_pairs([("ab", "c")]))
        );
    }

    #[test]
    fn append_rules_and_cutting() {
        let mut s = SeriesState::new();
        assert_eq!(s.append(1000, 1.0, 7_200_000), Ok(true));
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
        let n: usize = s
            .chunks(i64::MIN, i64::MAX)
            .iter()
            .map(|c| c.iter().unwrap().count())
            .sum();
        assert_eq!(n, 302);
        assert_eq!(s.truncate(7_200_000), 3);
        assert_eq!(s.min_time(), Some(7_200_000));
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn closed_chunk_is_small_and_disk_refs_round_trip() {
        assert_eq!(std::mem::size_of::<super::ClosedChunk>(), 32);
        // With its Arc header, 224 bytes: one allocator size class.
        assert!(std::mem::size_of::<super::MemSeries>() <= 208);
        let r = super::DiskRef::new(65535, 0xffff_fff0, 1200).unwrap();
        assert_eq!(
            (r.file(), r.off(), r.byte_len()),
            (65535, 0xffff_fff0, 1200)
        );
        assert!(super::DiskRef::new(65536, 0, 1).is_none());
        assert!(super::DiskRef::new(1, 1 << 32, 1).is_none());
    }
}
