//! Immutable blocks: one directory per time range, as in Prometheus.
//!
//! ```text
//! DIR/<ULID>/meta.json     {ulid, minTime, maxTime (exclusive), stats, compaction, version}
//! DIR/<ULID>/index         see index.rs
//! DIR/<ULID>/chunks/000001 see chunks.rs
//! ```
//!
//! A block is written into `DIR/<ULID>.tmp`, every file fsynced, then renamed
//! into place, so readers (and a restart after a crash) see whole blocks
//! only. Deletion renames to `<ULID>.deleted` before removing, for the same
//! reason. Blocks are opened by mapping their files; a query holds an
//! `Arc<Block>`, so deleting a block while it is read is safe.

use std::borrow::Cow;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Context as _, Result};
use serde::{Deserialize, Serialize};

use super::chunkenc::ChunkIter;
use super::chunks::{ChunkReader, ChunkWriter};
use super::index::{ChunkMeta, IndexInput, IndexReader, IndexWriter};
use super::packed::{self, ENCODING_PACKED, MAX_PACKED_SAMPLES};
use super::postings::PostingsSource as _;
use super::series::ClosedChunk;
use crate::model::Labels;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    pub num_samples: u64,
    pub num_series: u64,
    pub num_chunks: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Compaction {
    pub level: u32,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    pub ulid: String,
    /// Inclusive.
    pub min_time: i64,
    /// Exclusive, as in Prometheus.
    pub max_time: i64,
    pub stats: BlockStats,
    pub compaction: Compaction,
    pub version: u32,
}

/// A ULID (timestamp-prefixed, lexicographically sortable id), generated
/// without a dependency: 48 bits of milliseconds, 80 bits of entropy from
/// std's randomly keyed hasher, a counter and the clock.
pub fn new_ulid() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let ms = now.as_millis() as u64 & ((1 << 48) - 1);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    let r1 = h.finish();
    h.write_u8(1);
    let r2 = h.finish();
    let v: u128 = ((ms as u128) << 80) | ((r1 as u128 & 0xffff) << 64) | r2 as u128;
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    (0..26)
        .rev()
        .map(|i| ALPHABET[((v >> (i * 5)) & 31) as usize] as char)
        .collect()
}

pub fn is_ulid(s: &str) -> bool {
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
}

/// Total size of the regular files under `dir`.
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => tree_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

/// The series of a block to write: label sets packed back to back in one
/// buffer, each with the caller's tag (which series it is). A compaction
/// of 100k series thus makes a few large allocations instead of a million
/// small ones — small short-lived objects would be interleaved with the
/// head's long-lived ones and leave the heap fragmented (resident memory
/// that nothing uses). Samples are not held here: they are read series by
/// series as the block is written.
#[derive(Debug, Default, Clone)]
pub struct SeriesSet {
    /// Per label: uvarint length + name, uvarint length + value.
    text: Vec<u8>,
    entries: Vec<SetEntry>,
}

#[derive(Debug, Clone, Copy)]
struct SetEntry {
    text: usize,
    text_len: u32,
    tag: u32,
}

/// (name, value) pairs of one packed label set.
fn packed_pairs(mut b: &[u8]) -> impl Iterator<Item = (&str, &str)> {
    let mut take = move || -> Option<&str> {
        let mut d = super::encoding::Decbuf::new(b);
        let s = d.str().ok()?;
        b = &b[d.pos()..];
        Some(s)
    };
    std::iter::from_fn(move || Some((take()?, take()?)))
}

impl SeriesSet {
    /// Adds a series: its labels sorted by name, and a tag for the caller.
    pub fn push<'a>(&mut self, labels: impl Iterator<Item = (&'a str, &'a str)>, tag: u32) {
        let text = self.text.len();
        for (n, v) in labels {
            super::encoding::put_str(&mut self.text, n);
            super::encoding::put_str(&mut self.text, v);
        }
        self.entries.push(SetEntry {
            text,
            text_len: (self.text.len() - text) as u32,
            tag,
        });
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn text(&self, e: SetEntry) -> &[u8] {
        &self.text[e.text..e.text + e.text_len as usize]
    }

    /// Series `i`'s labels.
    pub fn labels(&self, i: usize) -> impl Iterator<Item = (&str, &str)> {
        packed_pairs(self.text(self.entries[i]))
    }

    /// Series `i`'s tag, as pushed.
    pub fn tag(&self, i: usize) -> u32 {
        self.entries[i].tag
    }

    /// Sorts the series by labels, in [`Labels`]' order.
    pub fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        entries
            .sort_unstable_by(|a, b| packed_pairs(self.text(*a)).cmp(packed_pairs(self.text(*b))));
        self.entries = entries;
    }
}

/// The index input of a block being written: the set's labels, the chunk
/// metas written for its series (flat, `metas[i]` is series `i`'s range).
#[derive(Default)]
struct Written<'a> {
    set: Option<&'a SeriesSet>,
    series: Vec<u32>,
    ranges: Vec<(u32, u32)>,
    metas: Vec<ChunkMeta>,
}

impl IndexInput for Written<'_> {
    fn len(&self) -> usize {
        self.series.len()
    }
    fn labels<'a>(&'a self, i: usize, out: &mut Vec<(&'a str, &'a str)>) {
        if let Some(set) = self.set {
            out.extend(set.labels(self.series[i] as usize));
        }
    }
    fn chunks(&self, i: usize) -> &[ChunkMeta] {
        let (a, b) = self.ranges[i];
        &self.metas[a as usize..b as usize]
    }
}

/// The chunks of a block being written (`chunks/` in its `.tmp`
/// directory), series by series in label order; [`build`] adds the index
/// and meta.json.
struct Builder {
    cw: ChunkWriter,
    stats: BlockStats,
    written: Written<'static>,
}

impl Builder {
    /// Writes series `i`'s samples (sorted, unique) as packed chunks: fitted
    /// to their data and up to MAX_PACKED_SAMPLES long (see packed.rs).
    fn packed(&mut self, i: usize, samples: &[(i64, f64)]) -> Result<()> {
        let first = self.written.metas.len();
        let pieces = samples.len().div_ceil(MAX_PACKED_SAMPLES);
        let per = samples.len().div_ceil(pieces.max(1)).max(1);
        for part in samples.chunks(per) {
            let data = packed::encode(part);
            self.chunk(
                part.len(),
                part[0].0,
                part[part.len() - 1].0,
                ENCODING_PACKED,
                &data,
            )?;
        }
        self.end_series(i, first);
        Ok(())
    }

    /// Writes series `i`'s chunks as they are (`(mint, maxt, encoding,
    /// data)`), for a series with a chunk that does not decode: keep what
    /// there is rather than drop the good chunks with the bad one.
    fn verbatim<'c>(
        &mut self,
        i: usize,
        chunks: impl IntoIterator<Item = (i64, i64, u8, Cow<'c, [u8]>)>,
    ) -> Result<()> {
        let first = self.written.metas.len();
        for (mint, maxt, enc, data) in chunks {
            let n = ChunkIter::new(enc, &data).num_samples();
            if n > 0 {
                self.chunk(n as usize, mint, maxt, enc, &data)?;
            }
        }
        self.end_series(i, first);
        Ok(())
    }

    fn chunk(&mut self, n: usize, mint: i64, maxt: i64, enc: u8, data: &[u8]) -> Result<()> {
        self.stats.num_samples += n as u64;
        self.stats.num_chunks += 1;
        let r = self.cw.write(enc, data)?;
        self.written.metas.push(ChunkMeta { mint, maxt, r });
        Ok(())
    }

    fn end_series(&mut self, i: usize, first: usize) {
        let w = &mut self.written;
        if w.metas.len() > first {
            self.stats.num_series += 1;
            w.series.push(i as u32);
            w.ranges.push((first as u32, w.metas.len() as u32));
        }
    }
}

/// Writes a block for `[mint, maxt)`: `fill` adds the chunks of series
/// by their index in the set of labels it returns (sorted, ascending) —
/// borrowed when the caller has it, or built while filling. Returns the
/// block's directory, or `None` when no series had a sample and
/// `keep_empty` is false (nothing is left on disk then).
fn build<'s>(
    parent: &Path,
    mint: i64,
    maxt: i64,
    keep_empty: bool,
    compaction: impl FnOnce(&str) -> Compaction,
    fill: impl FnOnce(&mut Builder) -> Result<Cow<'s, SeriesSet>>,
) -> Result<Option<PathBuf>> {
    let ulid = new_ulid();
    let tmp = parent.join(format!("{ulid}.tmp"));
    let dir = parent.join(&ulid);
    let result = (|| -> Result<bool> {
        let mut b = Builder {
            cw: ChunkWriter::new(&tmp.join("chunks"))?,
            stats: BlockStats::default(),
            written: Written::default(),
        };
        let set = fill(&mut b)?;
        if b.stats.num_series == 0 && !keep_empty {
            return Ok(false);
        }
        b.cw.finish()?;
        sync_dir(&tmp.join("chunks"))?;
        let written = Written {
            set: Some(&set),
            ..b.written
        };
        IndexWriter::write(&tmp.join("index"), &written)?;
        let meta = BlockMeta {
            ulid: ulid.clone(),
            min_time: mint,
            max_time: maxt,
            stats: b.stats,
            compaction: compaction(&ulid),
            version: 1,
        };
        let json = serde_json::to_vec_pretty(&meta)?;
        let meta_path = tmp.join("meta.json");
        fs::write(&meta_path, json).with_context(|| format!("writing {}", meta_path.display()))?;
        fs::File::open(&meta_path)?.sync_all()?;
        sync_dir(&tmp)?;
        Ok(true)
    })();
    match result {
        Ok(true) => {}
        Ok(false) => {
            let _ = fs::remove_dir_all(&tmp);
            return Ok(None);
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e.context(format!("writing block {}", tmp.display())));
        }
    }
    fs::rename(&tmp, &dir).with_context(|| format!("renaming {} into place", tmp.display()))?;
    sync_dir(parent)?;
    Ok(Some(dir))
}

/// Writes a block for `[mint, maxt)` from the head's series, `set`
/// sorted by labels, and returns its directory (`None`: no series had a
/// chunk in the range). `chunks(tag)` gives a series' chunks within the
/// range, read one series at a time so that only one series' data is held
/// (the whole range's, at 100k series, was ~1.4 KiB per series of
/// transient heap); `read` gives a chunk's bytes. The head's chunks are
/// decoded and re-encoded as packed chunks.
pub fn write_block(
    parent: &Path,
    mint: i64,
    maxt: i64,
    set: &SeriesSet,
    chunks: &dyn Fn(u32) -> Vec<ClosedChunk>,
    read: &dyn Fn(&ClosedChunk) -> Result<Cow<'_, [u8]>>,
) -> Result<Option<PathBuf>> {
    let level1 = |ulid: &str| Compaction {
        level: 1,
        sources: vec![ulid.to_owned()],
    };
    build(parent, mint, maxt, false, level1, |b| {
        let mut samples = Vec::new();
        for i in 0..set.len() {
            let chunks = chunks(set.tag(i));
            let chunks = &chunks[..];
            samples.clear();
            let mut corrupt = false;
            for c in chunks {
                let data = read(c)?;
                let mut it = ChunkIter::new(c.enc(), &data);
                samples.extend(it.by_ref());
                corrupt |= it.error();
            }
            if corrupt {
                let labels = Labels::from_pairs(set.labels(i));
                tracing::warn!(series = %labels, "corrupt head chunk; writing the series' chunks unpacked");
                let raw: Result<Vec<_>> = chunks
                    .iter()
                    .map(|c| Ok((c.mint, c.maxt, c.enc(), read(c)?)))
                    .collect();
                b.verbatim(i, raw?)?;
            } else {
                b.packed(i, &samples)?;
            }
        }
        Ok(Cow::Borrowed(set))
    })
}
/// One source of [`merge`]: its series in label order, one at a time.
struct Cursor<'b> {
    block: &'b Block,
    postings: Vec<u64>,
    next: usize,
    current: Option<(Labels, Vec<ChunkMeta>)>,
}

impl<'b> Cursor<'b> {
    fn new(block: &'b Block) -> Cursor<'b> {
        let mut c = Cursor {
            block,
            postings: block.index.all_postings(),
            next: 0,
            current: None,
        };
        c.advance();
        c
    }

    fn advance(&mut self) {
        self.current = None;
        while let Some(&off) = self.postings.get(self.next) {
            self.next += 1;
            match self.block.index.series(off) {
                Ok(s) => {
                    self.current = Some(s);
                    return;
                }
                // Queries skip it the same way: nothing of it is readable.
                Err(e) => tracing::warn!(
                    block = %self.block.meta.ulid, error = %format!("{e:#}"),
                    "corrupt series entry left out of the merged block"
                ),
            }
        }
    }
}

/// Merges `sources` (sorted by time, not overlapping) into one block of
/// their whole range, as level compaction does (see levels.rs), and
/// returns its directory. Series are streamed in label order through a
/// merge of the sources' indexes, their samples re-packed into chunks of
/// up to MAX_PACKED_SAMPLES: what is held meanwhile is the new block's
/// labels and chunk metas, not its samples.
pub fn merge(parent: &Path, sources: &[std::sync::Arc<Block>]) -> Result<PathBuf> {
    let mint = sources.iter().map(|b| b.meta.min_time).min();
    let maxt = sources.iter().map(|b| b.meta.max_time).max();
    let (Some(mint), Some(maxt)) = (mint, maxt) else {
        anyhow::bail!("no blocks to merge");
    };
    let level = sources
        .iter()
        .map(|b| b.meta.compaction.level)
        .max()
        .unwrap_or(1)
        + 1;
    let mut leaves: Vec<String> = sources
        .iter()
        .flat_map(|b| b.meta.compaction.sources.iter().cloned())
        .collect();
    leaves.sort();
    leaves.dedup();
    let compaction = |_: &str| Compaction {
        level,
        sources: leaves,
    };
    let dir = build(parent, mint, maxt, true, compaction, |b| {
        let mut cursors: Vec<Cursor<'_>> = sources.iter().map(|s| Cursor::new(s)).collect();
        let mut set = SeriesSet::default();
        let mut samples: Vec<(i64, f64)> = Vec::new();
        let mut chunks: Vec<(i64, i64, u8, Cow<'_, [u8]>)> = Vec::new();
        while let Some(labels) = cursors
            .iter()
            .filter_map(|c| c.current.as_ref().map(|s| &s.0))
            .min()
            .cloned()
        {
            samples.clear();
            chunks.clear();
            let mut corrupt = false;
            for c in &mut cursors {
                let Some((_, metas)) = c.current.take_if(|s| s.0 == labels) else {
                    continue;
                };
                for m in metas {
                    match c.block.chunks.chunk(m.r) {
                        Ok((enc, data)) => {
                            let mut it = ChunkIter::new(enc, data);
                            samples.extend(it.by_ref());
                            corrupt |= it.error();
                            chunks.push((m.mint, m.maxt, enc, Cow::Borrowed(data)));
                        }
                        Err(e) => tracing::warn!(
                            block = %c.block.meta.ulid, series = %labels, error = %format!("{e:#}"),
                            "unreadable chunk left out of the merged block"
                        ),
                    }
                }
                c.advance();
            }
            set.push(
                labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                0,
            );
            let i = set.len() - 1;
            if corrupt {
                tracing::warn!(series = %labels, "corrupt block chunk; copying the series' chunks unpacked");
                b.verbatim(i, chunks.drain(..))?;
                continue;
            }
            // Sources do not overlap, so this holds unless one is damaged
            // in a way its checksums missed.
            if !samples.windows(2).all(|w| w[0].0 < w[1].0) {
                samples.sort_by_key(|s| s.0);
                samples.dedup_by_key(|s| s.0);
            }
            if !samples.is_empty() {
                b.packed(i, &samples)?;
            }
        }
        Ok(Cow::Owned(set))
    })?;
    dir.context("merged block not written")
}

/// An opened block.
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub index: IndexReader,
    pub chunks: ChunkReader,
    pub size: u64,
}

impl Block {
    pub fn open(dir: &Path) -> Result<Block> {
        let meta_path = dir.join("meta.json");
        let meta: BlockMeta = serde_json::from_slice(
            &fs::read(&meta_path).with_context(|| format!("reading {}", meta_path.display()))?,
        )
        .with_context(|| format!("parsing {}", meta_path.display()))?;
        ensure!(
            meta.min_time <= meta.max_time,
            "{}: minTime > maxTime",
            meta_path.display()
        );
        let index = IndexReader::open(&dir.join("index"))?;
        let chunks = ChunkReader::open(&dir.join("chunks"))?;
        Ok(Block {
            dir: dir.to_path_buf(),
            size: tree_size(dir),
            meta,
            index,
            chunks,
        })
    }

    pub fn overlaps(&self, mint: i64, maxt: i64) -> bool {
        self.meta.min_time <= maxt && mint < self.meta.max_time
    }

    /// Removes the block directory (rename first, so a crash mid-way leaves
    /// no half block that would be loaded).
    pub fn delete(dir: &Path) -> Result<()> {
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("block");
        let gone = dir.with_file_name(format!("{name}.deleted"));
        fs::rename(dir, &gone)
            .with_context(|| format!("renaming {} for deletion", dir.display()))?;
        fs::remove_dir_all(&gone).with_context(|| format!("removing {}", gone.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_sets_sort_as_labels_do() {
        let sets = [
            vec![("a", "1"), ("b", "2")],
            vec![("a", "1")],
            vec![("a", "10")],
            vec![("__name__", "up"), ("z", "9")],
            vec![("a", "1"), ("a2", "0")],
            vec![("b", "0")],
            vec![("a", "é")],
        ];
        let mut set = SeriesSet::default();
        for (i, l) in sets.iter().enumerate() {
            set.push(l.iter().copied(), i as u32);
        }
        set.sort();
        let got: Vec<Vec<(&str, &str)>> = (0..set.len()).map(|i| set.labels(i).collect()).collect();
        let mut want: Vec<Vec<(&str, &str)>> = sets.to_vec();
        want.sort_by_key(|l| Labels::from_pairs(l.iter().copied()));
        assert_eq!(got, want);
        // Tags stay with their series.
        for (i, l) in got.iter().enumerate() {
            let orig = sets.iter().position(|x| x == l).unwrap();
            assert_eq!(set.tag(i), orig as u32);
        }
    }

    #[test]
    fn ulids_sort_by_time_and_differ() {
        let a = new_ulid();
        let b = new_ulid();
        assert!(is_ulid(&a) && is_ulid(&b));
        assert_ne!(a, b);
        assert!(a[..10] <= b[..10]);
    }
}
