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
use super::encoding::{put_uvarint, put_varint, take_uvarint};
use super::symbols::SymLabels;
use super::AppendError;
use crate::model::Labels;

pub type SeriesRef = u64;

/// A 64-bit hash of a label set computed the same way from `Labels` and
/// from a series' resolved symbol ids (Fx-style word mixing: fast,
/// in-memory only).
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

/// Chunks moved to the head chunk files, oldest first, packed as varints:
/// per chunk its encoding byte, `mint` (zig-zag, as the difference from
/// the previous chunk's `maxt`; absolute for the first), `maxt - mint`,
/// file, offset and length. ~13 bytes a chunk where a [`ClosedChunk`] is
/// 32, and one thin pointer in the series while there are none.
#[derive(Debug, Default)]
pub struct DiskChunks(ThinVec<u8>);

impl DiskChunks {
    pub fn iter(&self) -> DiskChunksIter<'_> {
        DiskChunksIter {
            b: &self.0,
            prev_maxt: 0,
        }
    }

    fn encode(out: &mut Vec<u8>, prev_maxt: i64, c: &ClosedChunk, r: DiskRef, enc: u8) {
        out.push(enc);
        put_varint(out, c.mint.wrapping_sub(prev_maxt));
        put_uvarint(out, c.maxt.wrapping_sub(c.mint) as u64);
        put_uvarint(out, r.file() as u64);
        put_uvarint(out, r.off());
        put_uvarint(out, r.byte_len() as u64);
    }

    fn rebuild(chunks: impl Iterator<Item = ClosedChunk>) -> DiskChunks {
        let mut b = Vec::new();
        let mut prev = 0;
        for c in chunks {
            if let ChunkData::Disk(enc, r) = c.data {
                Self::encode(&mut b, prev, &c, r, enc);
                prev = c.maxt;
            }
        }
        let mut v = ThinVec::with_capacity(b.len());
        v.extend_from_slice(&b);
        DiskChunks(v)
    }

    /// Appends a chunk (newer than every chunk already listed).
    fn push(&mut self, c: &ClosedChunk, r: DiskRef, enc: u8) {
        let prev = self.iter().last().map_or(0, |c| c.maxt);
        let mut b = Vec::with_capacity(16);
        Self::encode(&mut b, prev, c, r, enc);
        // Exact growth: this list lives as long as the series.
        self.0.reserve_exact(b.len());
        self.0.extend_from_slice(&b);
    }

    /// Drops the chunks ending before `mint`; returns how many.
    fn truncate(&mut self, mint: i64) -> usize {
        let dropped = self.iter().take_while(|c| c.maxt < mint).count();
        if dropped > 0 {
            let keep: Vec<ClosedChunk> = self.iter().skip(dropped).collect();
            *self = Self::rebuild(keep.into_iter());
        }
        dropped
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn heap_bytes(&self) -> usize {
        if self.0.capacity() == 0 {
            0
        } else {
            self.0.capacity() + 16
        }
    }
}

pub struct DiskChunksIter<'a> {
    b: &'a [u8],
    prev_maxt: i64,
}

impl DiskChunksIter<'_> {
    fn uvarint(&mut self) -> Option<u64> {
        take_uvarint(&mut self.b)
    }
}

impl Iterator for DiskChunksIter<'_> {
    type Item = ClosedChunk;

    fn next(&mut self) -> Option<ClosedChunk> {
        let (&enc, rest) = self.b.split_first()?;
        self.b = rest;
        let z = self.uvarint()?;
        let mint = self
            .prev_maxt
            .wrapping_add(((z >> 1) as i64) ^ -((z & 1) as i64));
        let maxt = mint.wrapping_add(self.uvarint()? as i64);
        let (file, off, len) = (self.uvarint()?, self.uvarint()?, self.uvarint()?);
        // Only ever encoded from valid DiskRefs.
        let r = DiskRef::new(file as u32, off, len as usize)?;
        self.prev_maxt = maxt;
        Some(ClosedChunk {
            mint,
            maxt,
            data: ChunkData::Disk(enc, r),
        })
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
    /// Closed chunks in the head chunk files (older than every `mem` one).
    disk: DiskChunks,
    /// Closed chunks still on the heap, waiting for the next offload.
    mem: ThinVec<ClosedChunk>,
    /// The chunk being appended to; its last sample is the series' last.
    open: Option<OpenChunk>,
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
            disk: DiskChunks::default(),
            mem: ThinVec::new(),
            open: None,
            pending: 0,
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
        Ok(true)
    }

    fn close_open(&mut self) {
        if let Some(o) = self.open.take() {
            if o.chunk.num_samples() > 0 {
                let maxt = o.chunk.last_t();
                let enc = o.chunk.encoding();
                // Exact growth: doubling would keep unused 32-byte entries
                // per series for the life of the head.
                self.mem.reserve_exact(1);
                self.mem
                    .push(ClosedChunk::mem(o.mint, maxt, enc, o.chunk.into_bytes()));
            }
        }
    }

    /// Chunks overlapping `[mint, maxt]`, oldest first; the open chunk is
    /// copied.
    pub fn chunks(&self, mint: i64, maxt: i64) -> Vec<ClosedChunk> {
        let overlaps = |c: &ClosedChunk| c.maxt >= mint && c.mint <= maxt;
        let mut out: Vec<ClosedChunk> = self.disk.iter().filter(overlaps).collect();
        out.extend(self.mem.iter().filter(|c| overlaps(c)).cloned());
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
        let mut dropped = self.disk.truncate(mint);
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
        self.disk.is_empty() && self.mem.is_empty() && self.open.is_none()
    }

    pub fn num_chunks(&self) -> usize {
        self.disk.iter().count() + self.mem.len() + usize::from(self.open.is_some())
    }

    pub fn min_time(&self) -> Option<i64> {
        self.disk
            .iter()
            .next()
            .or_else(|| self.mem.first().cloned())
            .map(|c| c.mint)
            .or(self.open.as_ref().map(|o| o.mint))
    }

    /// Closed chunks still on the heap, oldest first (to be offloaded).
    pub fn mem_chunks(&self) -> &[ClosedChunk] {
        &self.mem
    }

    /// Records that the oldest in-memory chunk, whose bytes are `data`, now
    /// lives at `to`. Only the oldest: disk chunks must stay older than the
    /// heap ones, so a pass that failed half-way leaves the rest in memory.
    /// Returns false when that chunk is no longer the oldest in memory (it
    /// was truncated meanwhile).
    pub fn chunk_moved(&mut self, data: &MemBytes, to: DiskRef) -> bool {
        match self.mem.first() {
            Some(c) if matches!(&c.data, ChunkData::Mem(_, d) if Arc::ptr_eq(d, data)) => {
                let c = self.mem.remove(0);
                self.disk.push(&c, to, c.enc());
                if self.mem.is_empty() {
                    self.mem = ThinVec::new();
                }
                true
            }
            _ => false,
        }
    }

    /// Heap bytes held by chunks (for the memory estimate).
    pub fn chunk_bytes(&self) -> usize {
        let mem: usize = self
            .mem
            .iter()
            .map(|c| match &c.data {
                // Box and Arc allocations with their headers.
                ChunkData::Mem(_, d) => d.len() + 16 + 24,
                ChunkData::Disk(..) => 0,
            })
            .sum();
        let mem_list = if self.mem.capacity() == 0 {
            0
        } else {
            16 + self.mem.capacity() * std::mem::size_of::<ClosedChunk>()
        };
        mem + mem_list
            + self.disk.heap_bytes()
            + self.open.as_ref().map_or(0, |o| o.chunk.capacity())
    }
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
        let n: usize = s
            .chunks(i64::MIN, i64::MAX)
            .iter()
            .map(|c| c.iter().unwrap().count())
            .sum();
        assert_eq!(n, 302);
        assert_eq!(s.truncate(7_200_000), 3);
        assert_eq!(s.min_time(), Some(7_200_000));
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
    fn chunks_move_to_disk_in_order_and_truncate() {
        let mut s = SeriesState::new();
        for i in 0..500i64 {
            s.append(i * 15_000, i as f64, 1 << 40).unwrap();
        }
        assert_eq!(s.mem_chunks().len(), 4);
        let datas: Vec<MemBytes> = s
            .mem_chunks()
            .iter()
            .map(|c| match &c.data {
                ChunkData::Mem(_, d) => d.clone(),
                ChunkData::Disk(..) => unreachable!(),
            })
            .collect();
        // Only the oldest in-memory chunk can move.
        assert!(!s.chunk_moved(&datas[1], DiskRef::new(1, 0, 10).unwrap()));
        for (i, d) in datas.iter().enumerate() {
            let r = DiskRef::new(1 + i as u32, 1000 * i as u64, d.len()).unwrap();
            assert!(s.chunk_moved(d, r));
        }
        assert!(s.mem_chunks().is_empty());
        let all = s.chunks(i64::MIN, i64::MAX);
        assert_eq!(all.len(), 5);
        for (i, c) in all[..4].iter().enumerate() {
            assert_eq!(
                (c.mint, c.maxt),
                (i as i64 * 1_800_000, i as i64 * 1_800_000 + 1_785_000)
            );
            match c.data {
                ChunkData::Disk(_, r) => {
                    assert_eq!((r.file(), r.off()), (1 + i as u32, 1000 * i as u64));
                    assert_eq!(r.byte_len() as usize, datas[i].len());
                }
                ChunkData::Mem(..) => panic!("chunk {i} still in memory"),
            }
        }
        assert_eq!(s.num_chunks(), 5);
        assert_eq!(s.min_time(), Some(0));
        assert_eq!(s.truncate(3_600_000), 2);
        assert_eq!(s.min_time(), Some(3_600_000));
        let left = s.chunks(i64::MIN, i64::MAX);
        assert_eq!(left.len(), 3);
        assert_eq!(left[0].mint, 3_600_000);
        // Negative and far-apart times survive the delta coding.
        let mut d = DiskChunks::default();
        let c = |mint, maxt| ClosedChunk {
            mint,
            maxt,
            data: ChunkData::Disk(1, DiskRef::new(7, 9, 3).unwrap()),
        };
        let r = DiskRef::new(7, 9, 3).unwrap();
        d.push(&c(-5_000, -1), r, 1);
        d.push(&c(i64::MAX / 2, i64::MAX / 2 + 10), r, 2);
        let got: Vec<(i64, i64, u8)> = d.iter().map(|c| (c.mint, c.maxt, c.enc())).collect();
        assert_eq!(got, [(-5_000, -1, 1), (i64::MAX / 2, i64::MAX / 2 + 10, 2)]);
    }
}

#[cfg(test)]
mod layout {
    #[test]
    fn series_fill_one_size_class_and_disk_refs_round_trip() {
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
        assert!(super::DiskRef::new(1, 1 << 32, 1).is_none());
    }
}
