//! A block's index file: symbols, series (labels + chunk references) and
//! postings, in the spirit of Prometheus' index format v2, simplified.
//!
//! ```text
//! header   "WMIX" | version u8 | 3 zero bytes
//! symbols  count u32 | (uvarint len | bytes)* | crc32 u32        sorted, unique
//! series   per series, sorted by labels:
//!          uvarint len | body | crc32(body) u32
//!          body = uvarint #labels | (uvarint name sym | uvarint value sym)*
//!                 | uvarint #chunks | varint mint | uvarint maxt-mint | uvarint ref
//!                 | (uvarint mint-prev maxt | uvarint maxt-mint | varint ref delta)*
//! postings per label pair, then the all-series list:
//!          uvarint count | uvarint first series offset | uvarint delta * (count-1) | crc32 u32
//!          (version 1: count u32 | series offset u32 * count | crc32 u32)
//! table    count u32 | (uvarint name sym | uvarint value sym | uvarint postings offset)* | crc32 u32
//!          (version 1: u64 postings offset)
//!          sorted by (name, value); the all-series list has name = value = "" (symbol 0)
//! toc      symbols u64 | series u64 | postings u64 | table u64 | crc32 u32
//! ```
//!
//! A series is identified inside its block by the offset of its entry. The
//! reader maps the file and keeps in memory only every 32nd symbol offset
//! and postings-table entry (see [`SAMPLE`]); symbols, table entries,
//! series entries and postings lists are decoded from the mapping on demand
//! (series and postings verified by their checksums, symbols and the table
//! once at open), so a damaged index yields errors, not panics.
//!
//! Version 2 delta-codes postings (a series entry is ~40 bytes, so a delta
//! mostly fits one byte instead of four) and varint-codes the table's
//! offsets; it roughly halves the index of a block. Version 1 files are
//! still read; an unknown version is refused with its number.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, ensure, Context as _, Result};
use memmap2::Mmap;

use super::encoding::{put_uvarint, put_varint, Decbuf};
use super::postings::{union, PostingsSource};
use crate::model::{Labels, LabelsBuilder};

const MAGIC: &[u8; 4] = b"WMIX";
const VERSION: u8 = 2;
const TOC_LEN: usize = 4 * 8 + 4;

/// Where a chunk of a series lives and what it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkMeta {
    pub mint: i64,
    pub maxt: i64,
    pub r: u64,
}

/// The series an index is written from, in label order.
pub trait IndexInput {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends series `i`'s (name, value) pairs, sorted by name, to `out`.
    fn labels<'a>(&'a self, i: usize, out: &mut Vec<(&'a str, &'a str)>);
    fn chunks(&self, i: usize) -> &[ChunkMeta];
}

impl IndexInput for [(Labels, Vec<ChunkMeta>)] {
    fn len(&self) -> usize {
        <[_]>::len(self)
    }
    fn labels<'a>(&'a self, i: usize, out: &mut Vec<(&'a str, &'a str)>) {
        out.extend(
            self[i]
                .0
                .iter()
                .map(|l| (l.name.as_str(), l.value.as_str())),
        );
    }
    fn chunks(&self, i: usize) -> &[ChunkMeta] {
        &self[i].1
    }
}

impl IndexInput for Vec<(Labels, Vec<ChunkMeta>)> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn labels<'a>(&'a self, i: usize, out: &mut Vec<(&'a str, &'a str)>) {
        self[..].labels(i, out)
    }
    fn chunks(&self, i: usize) -> &[ChunkMeta] {
        &self[i].1
    }
}

/// Writes an index from series given in label order.
pub struct IndexWriter;

impl IndexWriter {
    /// `series` must be sorted by labels with unique label sets.
    pub fn write(path: &Path, series: &(impl IndexInput + ?Sized)) -> Result<()> {
        Self::write_version(path, series, VERSION)
    }

    /// As [`IndexWriter::write`] in format `version` (1 or 2; 1 only so
    /// that tests can check old blocks stay readable).
    pub(crate) fn write_version(
        path: &Path,
        series: &(impl IndexInput + ?Sized),
        version: u8,
    ) -> Result<()> {
        // Symbols: every name and value, plus "" for the all-postings key.
        // Deduplicated by a flat hash set as they come (a block of 100k
        // series has ~1.4M label strings but ~100k distinct ones: 16 B each
        // in a vector of all of them was ~22 MB of peak heap), then one
        // sorted vector — not a tree, whose node per handful of strings is
        // heap churn the long-lived head then fragments around.
        let mut pairs_buf: Vec<(&str, &str)> = Vec::new();
        let mut seen: hashbrown::HashSet<&str, foldhash::fast::FixedState> =
            hashbrown::HashSet::default();
        seen.insert("");
        for i in 0..series.len() {
            pairs_buf.clear();
            series.labels(i, &mut pairs_buf);
            for &(n, v) in &pairs_buf {
                seen.insert(n);
                seen.insert(v);
            }
        }
        let mut symbols: Vec<&str> = seen.into_iter().collect();
        symbols.sort_unstable();
        let sym = |s: &str| -> u32 { symbols.binary_search(&s).map(|i| i as u32).unwrap_or(0) };

        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = Sink::new(file);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0, 0, 0]);

        let symbols_off = out.pos();
        out.begin_section()?;
        out.extend_from_slice(&(symbols.len() as u32).to_le_bytes());
        for s in &symbols {
            put_uvarint(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
            out.maybe_flush()?;
        }
        let crc = out.end_section();
        out.extend_from_slice(&crc.to_le_bytes());

        // Series entries, remembering each one's offset and label pairs.
        let series_off = out.pos();
        let mut pairs: Vec<((u32, u32), u32)> = Vec::new();
        let mut all: Vec<u32> = Vec::with_capacity(series.len());
        let mut body = Vec::new();
        for i in 0..series.len() {
            let chunks = series.chunks(i);
            let off = u32::try_from(out.pos()).context("index larger than 4 GiB")?;
            all.push(off);
            body.clear();
            pairs_buf.clear();
            series.labels(i, &mut pairs_buf);
            put_uvarint(&mut body, pairs_buf.len() as u64);
            for &(n, v) in &pairs_buf {
                let (n, v) = (sym(n), sym(v));
                put_uvarint(&mut body, n as u64);
                put_uvarint(&mut body, v as u64);
                pairs.push(((n, v), off));
            }
            put_uvarint(&mut body, chunks.len() as u64);
            let mut prev: Option<&ChunkMeta> = None;
            for c in chunks {
                match prev {
                    None => {
                        put_varint(&mut body, c.mint);
                        put_uvarint(&mut body, c.maxt.wrapping_sub(c.mint) as u64);
                        put_uvarint(&mut body, c.r);
                    }
                    Some(p) => {
                        put_uvarint(&mut body, c.mint.wrapping_sub(p.maxt) as u64);
                        put_uvarint(&mut body, c.maxt.wrapping_sub(c.mint) as u64);
                        put_varint(&mut body, c.r.wrapping_sub(p.r) as i64);
                    }
                }
                prev = Some(c);
            }
            put_uvarint(&mut out, body.len() as u64);
            out.extend_from_slice(&body);
            out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            out.maybe_flush()?;
        }

        // Postings, grouped by label pair (series offsets ascend within each).
        pairs.sort_unstable();
        let postings_off = out.pos();
        let mut table: Vec<(u32, u32, u64)> = Vec::new();
        let write_list = |out: &mut Vec<u8>, list: &[u32]| {
            let start = out.len();
            if version == 1 {
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for s in list {
                    out.extend_from_slice(&s.to_le_bytes());
                }
            } else {
                put_uvarint(out, list.len() as u64);
                let mut prev = 0;
                for &s in list {
                    put_uvarint(out, (s - prev) as u64);
                    prev = s;
                }
            }
            let crc = crc32fast::hash(&out[start..]);
            out.extend_from_slice(&crc.to_le_bytes());
        };
        // The all-series list first: its key ("", "") sorts first.
        table.push((0, 0, out.pos()));
        write_list(&mut out, &all);
        out.maybe_flush()?;
        let mut i = 0;
        let mut list = Vec::new();
        while i < pairs.len() {
            let key = pairs[i].0;
            list.clear();
            while i < pairs.len() && pairs[i].0 == key {
                list.push(pairs[i].1);
                i += 1;
            }
            table.push((key.0, key.1, out.pos()));
            write_list(&mut out, &list);
            out.maybe_flush()?;
        }

        let table_off = out.pos();
        out.begin_section()?;
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for (n, v, off) in &table {
            put_uvarint(&mut out, *n as u64);
            put_uvarint(&mut out, *v as u64);
            if version == 1 {
                out.extend_from_slice(&off.to_le_bytes());
            } else {
                put_uvarint(&mut out, *off);
            }
            out.maybe_flush()?;
        }
        let crc = out.end_section();
        out.extend_from_slice(&crc.to_le_bytes());

        let start = out.len();
        for off in [symbols_off, series_off, postings_off, table_off] {
            out.extend_from_slice(&off.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());

        out.flush_buf()?;
        out.file
            .sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        Ok(())
    }
}

/// The index file as it is written: a buffer flushed to the file between
/// entries (the whole index in memory, grown by doubling, was up to ~16 MB
/// of peak heap at 100k series), the offset of what is written so far, and
/// a running CRC for the sections checksummed as a whole. Entries with
/// their own CRC are hashed from the buffer, which is never flushed in the
/// middle of one.
struct Sink {
    file: File,
    buf: Vec<u8>,
    flushed: u64,
    section: Option<crc32fast::Hasher>,
}

impl Sink {
    const FLUSH_AT: usize = 1 << 16;

    fn new(file: File) -> Sink {
        Sink {
            file,
            buf: Vec::with_capacity(Self::FLUSH_AT * 2),
            flushed: 0,
            section: None,
        }
    }

    /// File offset of the next byte.
    fn pos(&self) -> u64 {
        self.flushed + self.buf.len() as u64
    }

    fn flush_buf(&mut self) -> Result<()> {
        if let Some(h) = &mut self.section {
            h.update(&self.buf);
        }
        self.file.write_all(&self.buf)?;
        self.flushed += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Between entries only.
    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= Self::FLUSH_AT {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Starts a section whose CRC covers everything until `end_section`.
    fn begin_section(&mut self) -> Result<()> {
        self.flush_buf()?;
        self.section = Some(crc32fast::Hasher::new());
        Ok(())
    }

    fn end_section(&mut self) -> u32 {
        let mut h = self.section.take().unwrap_or_default();
        h.update(&self.buf);
        h.finalize()
    }
}

impl std::ops::Deref for Sink {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.buf
    }
}

impl std::ops::DerefMut for Sink {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

/// Every `SAMPLE`-th symbol offset and postings-table entry is kept in
/// memory; the rest is decoded from the mapping (at most `SAMPLE - 1`
/// entries skipped per lookup). A block of 100k series with a unique label
/// value each has ~200k symbols and table entries: fully in memory that
/// was ~3.5 MB of heap per block, ~600 MB over 15 days of 2 h blocks; this
/// way it is 1/32 of that (Prometheus samples its postings offset table
/// the same way).
const SAMPLE: usize = 32;

/// Read access to an index file.
pub struct IndexReader {
    m: Mmap,
    version: u8,
    nsymbols: u32,
    /// File offset of every `SAMPLE`-th symbol's length prefix.
    sym_samples: Vec<u32>,
    /// Entries in the postings table.
    table_len: u32,
    /// (name sym, value sym, file offset) of every `SAMPLE`-th table entry.
    table_samples: Vec<(u32, u32, u32)>,
}

/// One postings-table entry: (name sym, value sym, postings offset).
type TableEntry = (u32, u32, u64);

fn section_crc(m: &[u8], start: usize, end: usize) -> Result<()> {
    ensure!(
        start <= end && end + 4 <= m.len(),
        "index section out of bounds"
    );
    let want = u32::from_le_bytes([m[end], m[end + 1], m[end + 2], m[end + 3]]);
    ensure!(
        crc32fast::hash(&m[start..end]) == want,
        "index section checksum mismatch"
    );
    Ok(())
}

/// Decodes the table entry at the start of `d`.
fn read_entry(d: &mut Decbuf<'_>, version: u8) -> Result<TableEntry> {
    let name = u32::try_from(d.uvarint()?).context("bad symbol ref")?;
    let value = u32::try_from(d.uvarint()?).context("bad symbol ref")?;
    let off = if version == 1 {
        d.u64_le()?
    } else {
        d.uvarint()?
    };
    Ok((name, value, off))
}

impl IndexReader {
    pub fn open(path: &Path) -> Result<IndexReader> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: see ChunkReader::open; block files are immutable.
        let m = unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))?;
        Self::from_mmap(m).with_context(|| format!("reading index {}", path.display()))
    }

    fn from_mmap(m: Mmap) -> Result<IndexReader> {
        ensure!(m.len() >= 8 + TOC_LEN, "file too short");
        ensure!(&m[..4] == MAGIC, "bad header");
        let version = m[4];
        ensure!(
            version == 1 || version == VERSION,
            "index format version {version} is not supported (this build reads 1 and {VERSION})"
        );
        ensure!(m.len() <= u32::MAX as usize, "index larger than 4 GiB");
        let toc_start = m.len() - TOC_LEN;
        section_crc(&m, toc_start, toc_start + 32)?;
        let mut d = Decbuf::new(&m[toc_start..]);
        let symbols_off = d.u64_le()? as usize;
        let _series_off = d.u64_le()? as usize;
        let postings_off = d.u64_le()? as usize;
        let table_off = d.u64_le()? as usize;
        ensure!(
            symbols_off <= postings_off && postings_off <= table_off && table_off <= toc_start,
            "bad table of contents"
        );

        // Every symbol and table entry is decoded once here, to verify the
        // sections (checksums, UTF-8, bounds, order) and take the samples;
        // lookups later decode the same bytes and cannot meet anything new.
        let mut d = Decbuf::new(&m[symbols_off..toc_start]);
        let n = d.u32_le()? as usize;
        ensure!(n <= d.remaining(), "bad symbol count");
        let mut sym_samples = Vec::with_capacity(n.div_ceil(SAMPLE));
        for i in 0..n {
            if i % SAMPLE == 0 {
                sym_samples.push((symbols_off + d.pos()) as u32);
            }
            let len = d.read_len(d.remaining())?;
            let s = d.bytes(len)?;
            std::str::from_utf8(s).context("symbol is not UTF-8")?;
        }
        section_crc(&m, symbols_off, symbols_off + d.pos())?;
        let nsymbols = n as u32;

        let mut d = Decbuf::new(&m[table_off..toc_start]);
        let n = d.u32_le()? as usize;
        ensure!(n <= d.remaining(), "bad postings table count");
        let mut table_samples = Vec::with_capacity(n.div_ceil(SAMPLE));
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..n {
            let pos = (table_off + d.pos()) as u32;
            let (name, value, off) = read_entry(&mut d, version)?;
            ensure!(name < nsymbols && value < nsymbols, "bad symbol ref");
            ensure!(
                off as usize >= postings_off && (off as usize) < table_off,
                "bad postings offset"
            );
            ensure!(
                prev.is_none_or(|p| p < (name, value)),
                "postings table not sorted"
            );
            prev = Some((name, value));
            if i % SAMPLE == 0 {
                table_samples.push((name, value, pos));
            }
        }
        section_crc(&m, table_off, table_off + d.pos())?;
        // The pass above paged in every symbol and table entry: hand those
        // clean file pages back, so that a block costs resident memory only
        // for what queries read. Advisory; an error changes nothing.
        #[cfg(unix)]
        // SAFETY: a read-only private mapping of an immutable file: pages
        // dropped here are read back from the file on the next access.
        let _ = unsafe { m.unchecked_advise(memmap2::UncheckedAdvice::DontNeed) };
        Ok(IndexReader {
            m,
            version,
            nsymbols,
            sym_samples,
            table_len: n as u32,
            table_samples,
        })
    }

    pub fn symbol(&self, i: u64) -> Result<&str> {
        ensure!(i < self.nsymbols as u64, "symbol ref out of range");
        let off = self.sym_samples[i as usize / SAMPLE] as usize;
        let mut d = Decbuf::new(&self.m[off..]);
        for _ in 0..i as usize % SAMPLE {
            let len = d.read_len(d.remaining())?;
            d.bytes(len)?;
        }
        d.str()
    }

    /// The symbol number of `s`, if present (symbols are sorted).
    pub fn find_symbol(&self, s: &str) -> Option<u32> {
        // The last sample at or before `s`, then a scan of its run.
        let k = self.sym_samples.partition_point(|&off| {
            Decbuf::new(&self.m[off as usize..])
                .str()
                .is_ok_and(|x| x <= s)
        });
        let k = k.checked_sub(1)?;
        let mut d = Decbuf::new(&self.m[self.sym_samples[k] as usize..]);
        let first = k * SAMPLE;
        for i in first..(first + SAMPLE).min(self.nsymbols as usize) {
            match d.str().ok()?.cmp(s) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Some(i as u32),
                std::cmp::Ordering::Greater => return None,
            }
        }
        None
    }

    /// Table entries from the `k`-th sample on, in order.
    fn entries_from(&self, k: usize) -> impl Iterator<Item = TableEntry> + '_ {
        let start = self
            .table_samples
            .get(k)
            .map_or(self.m.len(), |s| s.2 as usize);
        let mut d = Decbuf::new(&self.m[start.min(self.m.len())..]);
        let left = (self.table_len as usize).saturating_sub(k * SAMPLE);
        (0..left).map_while(move |_| read_entry(&mut d, self.version).ok())
    }

    /// Index of the last table sample at or before `key` (0 if none).
    fn sample_before(&self, key: (u32, u32)) -> usize {
        self.table_samples
            .partition_point(|&(n, v, _)| (n, v) <= key)
            .saturating_sub(1)
    }

    fn entry(&self, n: u32, v: u32) -> Option<u64> {
        self.entries_from(self.sample_before((n, v)))
            .take_while(|e| (e.0, e.1) <= (n, v))
            .find(|e| (e.0, e.1) == (n, v))
            .map(|e| e.2)
    }

    /// Table entries of label name `name`.
    fn name_range(&self, name: u32) -> impl Iterator<Item = TableEntry> + '_ {
        self.entries_from(self.sample_before((name, 0)))
            .skip_while(move |e| e.0 < name)
            .take_while(move |e| e.0 == name)
    }

    fn list(&self, off: u64) -> Result<Vec<u64>> {
        let off = off as usize;
        let mut d = Decbuf::new(self.m.get(off..).context("postings offset")?);
        let mut out;
        if self.version == 1 {
            let n = d.u32_le()? as usize;
            ensure!(n.saturating_mul(4) <= d.remaining(), "bad postings count");
            out = Vec::with_capacity(n);
            for _ in 0..n {
                out.push(d.u32_le()? as u64);
            }
        } else {
            // Every delta takes at least a byte.
            let n = d.read_len(d.remaining())?;
            out = Vec::with_capacity(n);
            let mut prev = 0u64;
            for _ in 0..n {
                prev = prev
                    .checked_add(d.uvarint()?)
                    .context("bad postings delta")?;
                out.push(prev);
            }
        }
        section_crc(&self.m, off, off + d.pos())?;
        Ok(out)
    }

    /// Label names (sorted), excluding the all-postings key.
    pub fn label_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut last = None;
        for e in self.entries_from(0) {
            if e.0 == 0 || last == Some(e.0) {
                continue;
            }
            last = Some(e.0);
            if let Ok(s) = self.symbol(e.0 as u64) {
                out.push(s.to_owned());
            }
        }
        out
    }

    pub fn label_values(&self, name: &str) -> Vec<String> {
        let Some(n) = self.find_symbol(name).filter(|&n| n != 0) else {
            return Vec::new();
        };
        self.name_range(n)
            .filter_map(|e| self.symbol(e.1 as u64).ok().map(str::to_owned))
            .collect()
    }

    /// Heap bytes held (the samples; the rest is the file mapping).
    pub fn heap_bytes(&self) -> usize {
        self.sym_samples.capacity() * 4 + self.table_samples.capacity() * 12
    }

    /// Labels and chunk metas of the series whose entry is at `off`.
    pub fn series(&self, off: u64) -> Result<(Labels, Vec<ChunkMeta>)> {
        let off = off as usize;
        let mut d = Decbuf::new(self.m.get(off..).context("series offset out of range")?);
        let len = d.read_len(d.remaining())?;
        let body = d.bytes(len)?;
        let crc = d.u32_le()?;
        ensure!(
            crc32fast::hash(body) == crc,
            "series entry at {off}: checksum mismatch"
        );
        let mut d = Decbuf::new(body);
        let n = d.read_len(body.len())?;
        let mut b = LabelsBuilder::default();
        for _ in 0..n {
            let name = self.symbol(d.uvarint()?)?;
            let value = self.symbol(d.uvarint()?)?;
            b.set(name, value);
        }
        let n = d.read_len(body.len())?;
        let mut chunks: Vec<ChunkMeta> = Vec::with_capacity(n);
        for i in 0..n {
            let c = if i == 0 {
                let mint = d.varint()?;
                let maxt = mint.wrapping_add(d.uvarint()? as i64);
                ChunkMeta {
                    mint,
                    maxt,
                    r: d.uvarint()?,
                }
            } else {
                let p = chunks[i - 1];
                let mint = p.maxt.wrapping_add(d.uvarint()? as i64);
                let maxt = mint.wrapping_add(d.uvarint()? as i64);
                ChunkMeta {
                    mint,
                    maxt,
                    r: p.r.wrapping_add(d.varint()? as u64),
                }
            };
            chunks.push(c);
        }
        if !d.is_empty() {
            bail!("series entry at {off}: trailing bytes");
        }
        Ok((b.build(), chunks))
    }

    pub fn size_bytes(&self) -> u64 {
        self.m.len() as u64
    }

    fn postings_or_log(&self, off: u64) -> Vec<u64> {
        self.list(off).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "corrupt postings list in block index; ignoring it");
            Vec::new()
        })
    }
}

impl PostingsSource for IndexReader {
    fn postings(&self, name: &str, value: &str) -> Vec<u64> {
        let (Some(n), Some(v)) = (self.find_symbol(name), self.find_symbol(value)) else {
            return Vec::new();
        };
        match self.entry(n, v) {
            Some(off) if n != 0 => self.postings_or_log(off),
            _ => Vec::new(),
        }
    }

    fn all_postings(&self) -> Vec<u64> {
        match self.entries_from(0).next() {
            Some((0, 0, off)) => self.postings_or_log(off),
            _ => Vec::new(),
        }
    }

    fn postings_matching(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> Vec<u64> {
        let Some(n) = self.find_symbol(name).filter(|&n| n != 0) else {
            return Vec::new();
        };
        let lists = self
            .name_range(n)
            .filter(|e| self.symbol(e.1 as u64).is_ok_and(pred))
            .map(|e| self.postings_or_log(e.2))
            .collect();
        union(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MatchOp, Matcher};
    use crate::tsdb::postings::postings_for_matchers;

    #[test]
    fn write_read_query() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index");
        let mut series: Vec<(Labels, Vec<ChunkMeta>)> = (0..50)
            .map(|i| {
                let l = Labels::from_pairs([
                    ("__name__", if i % 2 == 0 { "a" } else { "b" }),
                    ("i", &*i.to_string()),
                ]);
                let c = vec![
                    ChunkMeta {
                        mint: i,
                        maxt: i + 10,
                        r: (1 << 32) | (8 + i as u64 * 100),
                    },
                    ChunkMeta {
                        mint: i + 20,
                        maxt: i + 30,
                        r: (1 << 32) | (50 + i as u64 * 100),
                    },
                ];
                (l, c)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        // Version 1 (old blocks) and the current version read alike; the
        // current one is smaller.
        let v1 = tmp.path().join("index.v1");
        IndexWriter::write_version(&v1, &series, 1).unwrap();
        IndexWriter::write(&path, &series).unwrap();
        let (n1, n2) = (
            std::fs::metadata(&v1).unwrap().len(),
            std::fs::metadata(&path).unwrap().len(),
        );
        assert!(n2 * 10 < n1 * 9, "v2 {n2} bytes vs v1 {n1}");
        check_index(&IndexReader::open(&v1).unwrap(), &series);
        check_index(&IndexReader::open(&path).unwrap(), &series);
        // A future version is refused by number.
        let mut b = std::fs::read(&path).unwrap();
        b[4] = 9;
        std::fs::write(&path, b).unwrap();
        let err = format!("{:#}", IndexReader::open(&path).err().unwrap());
        assert!(err.contains("version 9 is not supported"), "{err}");
    }

    fn check_index(r: &IndexReader, series: &[(Labels, Vec<ChunkMeta>)]) {
        assert_eq!(r.label_names(), vec!["__name__", "i"]);
        assert_eq!(r.label_values("__name__"), vec!["a", "b"]);
        let all = r.all_postings();
        assert_eq!(all.len(), 50);
        for (off, want) in all.iter().zip(series) {
            assert_eq!(&r.series(*off).unwrap(), want);
        }
        let m = [
            Matcher::equal("__name__", "a"),
            Matcher::new(MatchOp::Regex, "i", "1.*").unwrap(),
        ];
        let got: Vec<Labels> = postings_for_matchers(r, &m)
            .into_iter()
            .map(|o| r.series(o).unwrap().0)
            .collect();
        let names: Vec<&str> = got.iter().map(|l| l.get("i").unwrap()).collect();
        assert_eq!(names, ["10", "12", "14", "16", "18"]);
    }

    /// Lookups through the sampled tables find every symbol and every
    /// label pair, whichever side of a sample boundary they fall on.
    #[test]
    fn sampled_lookups_find_everything() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index");
        let mut series: Vec<(Labels, Vec<ChunkMeta>)> = (0..2000)
            .map(|i| {
                let l = Labels::from_pairs([
                    ("__name__", format!("m{}", i % 7)),
                    ("pod", format!("pod-{i:05}")),
                    ("zone", format!("z{}", i % 3)),
                ]);
                (l, vec![])
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        IndexWriter::write(&path, &series).unwrap();
        let r = IndexReader::open(&path).unwrap();
        // Full tables would be ~40 KB (4 bytes a symbol, 16 an entry).
        assert!(r.heap_bytes() < 2048, "{} heap bytes", r.heap_bytes());
        let offs = r.all_postings();
        assert_eq!(offs.len(), 2000);
        for (i, (l, _)) in series.iter().enumerate() {
            for lab in l.iter() {
                let sym = r.find_symbol(&lab.value).unwrap();
                assert_eq!(r.symbol(sym as u64).unwrap(), lab.value);
                assert!(r.postings(&lab.name, &lab.value).contains(&offs[i]));
            }
        }
        assert_eq!(r.find_symbol("pod-99999"), None);
        assert_eq!(r.find_symbol("zzz"), None);
        assert!(r.postings("pod", "nope").is_empty());
        assert!(r.postings("nope", "z1").is_empty());
        assert_eq!(r.label_names(), ["__name__", "pod", "zone"]);
        assert_eq!(r.label_values("zone"), ["z0", "z1", "z2"]);
        assert_eq!(r.label_values("pod").len(), 2000);
        assert_eq!(r.postings("zone", "z1").len(), 667);
        let odd = r.postings_matching("pod", &|v| v.ends_with('1'));
        assert_eq!(odd.len(), 200);
    }

    /// Every section larger than the writer's 64 KiB buffer, so each is
    /// flushed to the file in pieces: offsets, per-entry and per-section
    /// checksums still agree with what the reader checks.
    #[test]
    fn sections_larger_than_the_write_buffer_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index");
        let n = 12_000;
        let mut series: Vec<(Labels, Vec<ChunkMeta>)> = (0..n)
            .map(|i| {
                let l = Labels::from_pairs([
                    ("__name__", format!("metric_{}", i % 11)),
                    ("pod", format!("pod-{i:08}-abcdef")),
                ]);
                let c = (0..3)
                    .map(|k| ChunkMeta {
                        mint: i * 1000 + k * 100,
                        maxt: i * 1000 + k * 100 + 99,
                        r: (i * 3 + k) as u64 * 40,
                    })
                    .collect();
                (l, c)
            })
            .collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        IndexWriter::write(&path, &series).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 4 * 65_536);
        let r = IndexReader::open(&path).unwrap();
        let offs = r.all_postings();
        assert_eq!(offs.len(), n as usize);
        for (i, want) in series.iter().enumerate() {
            assert_eq!(&r.series(offs[i]).unwrap(), want);
        }
        assert_eq!(r.label_values("pod").len(), n as usize);
        assert_eq!(r.postings("__name__", "metric_3").len(), 1091);
    }

    #[test]
    fn corrupt_index_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("index");
        let series = vec![(Labels::from_pairs([("a", "b")]), vec![])];
        IndexWriter::write(&path, &series).unwrap();
        let good = std::fs::read(&path).unwrap();
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x55;
            std::fs::write(&path, &bad).unwrap();
            if let Ok(r) = IndexReader::open(&path) {
                for off in r.all_postings() {
                    let _ = r.series(off);
                }
            }
        }
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(IndexReader::open(&path).is_err());
    }
}
