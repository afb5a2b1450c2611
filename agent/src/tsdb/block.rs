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
/// buffer and every chunk in one vector. A compaction of 100k series thus
/// makes a few large allocations instead of a million small ones — small
/// short-lived objects would be interleaved with the head's long-lived ones
/// and leave the heap fragmented (resident memory that nothing uses).
#[derive(Debug, Default)]
pub struct SeriesSet {
    /// Per label: uvarint length + name, uvarint length + value.
    text: Vec<u8>,
    entries: Vec<SetEntry>,
    chunks: Vec<ClosedChunk>,
}

#[derive(Debug, Clone, Copy)]
struct SetEntry {
    text: usize,
    text_len: u32,
    chunk: u32,
    nchunks: u32,
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
    /// Adds a series: its labels sorted by name, and its chunks.
    pub fn push<'a>(
        &mut self,
        labels: impl Iterator<Item = (&'a str, &'a str)>,
        chunks: impl IntoIterator<Item = ClosedChunk>,
    ) {
        let text = self.text.len();
        for (n, v) in labels {
            super::encoding::put_str(&mut self.text, n);
            super::encoding::put_str(&mut self.text, v);
        }
        let chunk = self.chunks.len();
        self.chunks.extend(chunks);
        self.entries.push(SetEntry {
            text,
            text_len: (self.text.len() - text) as u32,
            chunk: chunk as u32,
            nchunks: (self.chunks.len() - chunk) as u32,
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

    pub fn chunks(&self, i: usize) -> &[ClosedChunk] {
        let e = self.entries[i];
        &self.chunks[e.chunk as usize..(e.chunk + e.nchunks) as usize]
    }

    /// Sorts the series by labels, in [`Labels`]' order.
    pub fn sort(&mut self) {
        let mut entries = std::mem::take(&mut self.entries);
        entries
            .sort_unstable_by(|a, b| packed_pairs(self.text(*a)).cmp(packed_pairs(self.text(*b))));
        self.entries = entries;
    }
}

/// The index input of [`write_block`]: the set's labels, the chunk metas
/// written for its series (flat, `metas[i]` is series `i`'s range).
struct Written<'a> {
    set: &'a SeriesSet,
    series: Vec<u32>,
    ranges: Vec<(u32, u32)>,
    metas: Vec<ChunkMeta>,
}

impl IndexInput for Written<'_> {
    fn len(&self) -> usize {
        self.series.len()
    }
    fn labels<'a>(&'a self, i: usize, out: &mut Vec<(&'a str, &'a str)>) {
        out.extend(self.set.labels(self.series[i] as usize));
    }
    fn chunks(&self, i: usize) -> &[ChunkMeta] {
        let (a, b) = self.ranges[i];
        &self.metas[a as usize..b as usize]
    }
}

/// Writes a block for `[mint, maxt)` from series sorted by labels and
/// returns its directory. Chunks outside the range must not be passed.
pub fn write_block(
    parent: &Path,
    mint: i64,
    maxt: i64,
    set: &SeriesSet,
    read: &dyn Fn(&ClosedChunk) -> Result<Cow<'_, [u8]>>,
) -> Result<PathBuf> {
    let ulid = new_ulid();
    let tmp = parent.join(format!("{ulid}.tmp"));
    let dir = parent.join(&ulid);
    let result = (|| -> Result<BlockMeta> {
        let mut cw = ChunkWriter::new(&tmp.join("chunks"))?;
        let mut stats = BlockStats::default();
        let mut written = Written {
            set,
            series: Vec::with_capacity(set.len()),
            ranges: Vec::with_capacity(set.len()),
            metas: Vec::with_capacity(set.len()),
        };
        let mut samples = Vec::new();
        for i in 0..set.len() {
            let chunks = set.chunks(i);
            let first = written.metas.len();
            // The head's chunks of this range, decoded and re-encoded as
            // packed chunks (see packed.rs): fitted to their data and up to
            // MAX_PACKED_SAMPLES long.
            samples.clear();
            let mut corrupt = false;
            for c in chunks {
                let data = read(c)?;
                let mut it = ChunkIter::new(c.enc(), &data);
                samples.extend(it.by_ref());
                corrupt |= it.error();
            }
            if corrupt {
                // Keep whatever the head has, as it is, rather than drop
                // the good chunks of the series with the bad one.
                let labels = Labels::from_pairs(set.labels(i));
                tracing::warn!(series = %labels, "corrupt head chunk; writing the series' chunks unpacked");
                for c in chunks {
                    let data = read(c)?;
                    let n = ChunkIter::new(c.enc(), &data).num_samples() as u64;
                    if n == 0 {
                        continue;
                    }
                    stats.num_samples += n;
                    stats.num_chunks += 1;
                    written.metas.push(ChunkMeta {
                        mint: c.mint,
                        maxt: c.maxt,
                        r: cw.write(c.enc(), &data)?,
                    });
                }
            } else {
                let pieces = samples.len().div_ceil(MAX_PACKED_SAMPLES);
                let per = samples.len().div_ceil(pieces.max(1)).max(1);
                for part in samples.chunks(per) {
                    let data = packed::encode(part);
                    stats.num_samples += part.len() as u64;
                    stats.num_chunks += 1;
                    written.metas.push(ChunkMeta {
                        mint: part[0].0,
                        maxt: part[part.len() - 1].0,
                        r: cw.write(ENCODING_PACKED, &data)?,
                    });
                }
            }
            if written.metas.len() > first {
                stats.num_series += 1;
                written.series.push(i as u32);
                written
                    .ranges
                    .push((first as u32, written.metas.len() as u32));
            }
        }
        cw.finish()?;
        sync_dir(&tmp.join("chunks"))?;
        IndexWriter::write(&tmp.join("index"), &written)?;
        let meta = BlockMeta {
            ulid: ulid.clone(),
            min_time: mint,
            max_time: maxt,
            stats,
            compaction: Compaction {
                level: 1,
                sources: vec![ulid.clone()],
            },
            version: 1,
        };
        let json = serde_json::to_vec_pretty(&meta)?;
        let meta_path = tmp.join("meta.json");
        fs::write(&meta_path, json).with_context(|| format!("writing {}", meta_path.display()))?;
        fs::File::open(&meta_path)?.sync_all()?;
        sync_dir(&tmp)?;
        Ok(meta)
    })();
    if let Err(e) = result {
        let _ = fs::remove_dir_all(&tmp);
        return Err(e.context(format!("writing block {}", tmp.display())));
    }
    fs::rename(&tmp, &dir).with_context(|| format!("renaming {} into place", tmp.display()))?;
    sync_dir(parent)?;
    Ok(dir)
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
            let c = ClosedChunk::mem(i as i64, i as i64, 1, vec![0, 0]);
            set.push(l.iter().copied(), [c]);
        }
        set.sort();
        let got: Vec<Vec<(&str, &str)>> = (0..set.len()).map(|i| set.labels(i).collect()).collect();
        let mut want: Vec<Vec<(&str, &str)>> = sets.to_vec();
        want.sort_by_key(|l| Labels::from_pairs(l.iter().copied()));
        assert_eq!(got, want);
        // Chunks stay with their series.
        for (i, l) in got.iter().enumerate() {
            let orig = sets.iter().position(|x| x == l).unwrap();
            assert_eq!(set.chunks(i)[0].mint, orig as i64);
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
