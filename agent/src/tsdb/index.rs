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
//! reader maps the file and keeps in memory only the symbol offsets (4 bytes
//! a symbol) and the postings table (16 bytes a label pair); series entries
//! and postings lists are decoded from the mapping on demand and verified by
//! their checksums, so a damaged index yields errors, not panics.
//!
//! Version 2 delta-codes postings (a series entry is ~40 bytes, so a delta
//! mostly fits one byte instead of four) and varint-codes the table's
//! offsets; it roughly halves the index of a block. Version 1 files are
//! still read; an unknown version is refused with its number.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Write};
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

/// Writes an index from series given in label order.
pub struct IndexWriter;

impl IndexWriter {
    /// `series` must be sorted by labels with unique label sets.
    pub fn write(path: &Path, series: &[(Labels, Vec<ChunkMeta>)]) -> Result<()> {
        Self::write_version(path, series, VERSION)
    }

    /// As [`IndexWriter::write`] in format `version` (1 or 2; 1 only so
    /// that tests can check old blocks stay readable).
    pub(crate) fn write_version(
        path: &Path,
        series: &[(Labels, Vec<ChunkMeta>)],
        version: u8,
    ) -> Result<()> {
        // Symbols: every name and value, plus "" for the all-postings key.
        let mut set: BTreeSet<&str> = BTreeSet::new();
        set.insert("");
        for (l, _) in series {
            for l in l.iter() {
                set.insert(&l.name);
                set.insert(&l.value);
            }
        }
        let symbols: Vec<&str> = set.into_iter().collect();
        let sym = |s: &str| -> u32 { symbols.binary_search(&s).map(|i| i as u32).unwrap_or(0) };

        let mut out: Vec<u8> = Vec::with_capacity(1 << 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&[version, 0, 0, 0]);

        let symbols_off = out.len() as u64;
        let start = out.len();
        out.extend_from_slice(&(symbols.len() as u32).to_le_bytes());
        for s in &symbols {
            put_uvarint(&mut out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());

        // Series entries, remembering each one's offset and label pairs.
        let series_off = out.len() as u64;
        let mut pairs: Vec<((u32, u32), u32)> = Vec::new();
        let mut all: Vec<u32> = Vec::with_capacity(series.len());
        let mut body = Vec::new();
        for (labels, chunks) in series {
            let off = u32::try_from(out.len()).context("index larger than 4 GiB")?;
            all.push(off);
            body.clear();
            put_uvarint(&mut body, labels.len() as u64);
            for l in labels.iter() {
                let (n, v) = (sym(&l.name), sym(&l.value));
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
        }

        // Postings, grouped by label pair (series offsets ascend within each).
        pairs.sort_unstable();
        let postings_off = out.len() as u64;
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
        table.push((0, 0, out.len() as u64));
        write_list(&mut out, &all);
        let mut i = 0;
        let mut list = Vec::new();
        while i < pairs.len() {
            let key = pairs[i].0;
            list.clear();
            while i < pairs.len() && pairs[i].0 == key {
                list.push(pairs[i].1);
                i += 1;
            }
            table.push((key.0, key.1, out.len() as u64));
            write_list(&mut out, &list);
        }

        let table_off = out.len() as u64;
        let start = out.len();
        out.extend_from_slice(&(table.len() as u32).to_le_bytes());
        for (n, v, off) in &table {
            put_uvarint(&mut out, *n as u64);
            put_uvarint(&mut out, *v as u64);
            if version == 1 {
                out.extend_from_slice(&off.to_le_bytes());
            } else {
                put_uvarint(&mut out, *off);
            }
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());

        let start = out.len();
        for off in [symbols_off, series_off, postings_off, table_off] {
            out.extend_from_slice(&off.to_le_bytes());
        }
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());

        let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = BufWriter::new(f);
        w.write_all(&out)?;
        let f = w.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        Ok(())
    }
}

/// Read access to an index file.
pub struct IndexReader {
    m: Mmap,
    version: u8,
    /// Offset of each symbol's length prefix.
    symbols: Vec<u32>,
    /// (name sym, value sym, postings offset), sorted.
    table: Vec<(u32, u32, u64)>,
}

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

        let mut d = Decbuf::new(&m[symbols_off..toc_start]);
        let n = d.u32_le()? as usize;
        ensure!(n <= d.remaining(), "bad symbol count");
        let mut symbols = Vec::with_capacity(n);
        for _ in 0..n {
            symbols.push(u32::try_from(symbols_off + d.pos()).context("symbol offset")?);
            let len = d.read_len(d.remaining())?;
            let s = d.bytes(len)?;
            std::str::from_utf8(s).context("symbol is not UTF-8")?;
        }
        section_crc(&m, symbols_off, symbols_off + d.pos())?;

        let mut d = Decbuf::new(&m[table_off..toc_start]);
        let n = d.u32_le()? as usize;
        ensure!(n <= d.remaining(), "bad postings table count");
        let mut table = Vec::with_capacity(n);
        for _ in 0..n {
            let name = d.uvarint()?;
            let value = d.uvarint()?;
            let off = if version == 1 {
                d.u64_le()?
            } else {
                d.uvarint()?
            };
            ensure!(
                name < symbols.len() as u64 && value < symbols.len() as u64,
                "bad symbol ref"
            );
            ensure!(
                off as usize >= postings_off && (off as usize) < table_off,
                "bad postings offset"
            );
            table.push((name as u32, value as u32, off));
        }
        section_crc(&m, table_off, table_off + d.pos())?;
        ensure!(
            table
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
            "postings table not sorted"
        );
        Ok(IndexReader {
            m,
            version,
            symbols,
            table,
        })
    }

    pub fn symbol(&self, i: u64) -> Result<&str> {
        let off = *self
            .symbols
            .get(i as usize)
            .context("symbol ref out of range")? as usize;
        let mut d = Decbuf::new(&self.m[off..]);
        d.str()
    }

    /// The symbol number of `s`, if present (symbols are sorted).
    pub fn find_symbol(&self, s: &str) -> Option<u32> {
        let (mut lo, mut hi) = (0usize, self.symbols.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.symbol(mid as u64).ok()?.cmp(s) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid as u32),
            }
        }
        None
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

    fn name_range(&self, name: u32) -> &[(u32, u32, u64)] {
        let lo = self.table.partition_point(|e| e.0 < name);
        let hi = self.table.partition_point(|e| e.0 <= name);
        &self.table[lo..hi]
    }

    /// Label names (sorted), excluding the all-postings key.
    pub fn label_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut last = None;
        for e in &self.table {
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
            .iter()
            .filter_map(|e| self.symbol(e.1 as u64).ok().map(str::to_owned))
            .collect()
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
        match self.table.binary_search_by(|e| (e.0, e.1).cmp(&(n, v))) {
            Ok(i) if n != 0 => self.postings_or_log(self.table[i].2),
            _ => Vec::new(),
        }
    }

    fn all_postings(&self) -> Vec<u64> {
        match self.table.first() {
            Some(&(0, 0, off)) => self.postings_or_log(off),
            _ => Vec::new(),
        }
    }

    fn postings_matching(&self, name: &str, pred: &dyn Fn(&str) -> bool) -> Vec<u64> {
        let Some(n) = self.find_symbol(name).filter(|&n| n != 0) else {
            return Vec::new();
        };
        let lists = self
            .name_range(n)
            .iter()
            .filter(|e| self.symbol(e.1 as u64).is_ok_and(pred))
            .map(|e| self.postings_or_log(e.2))
            .collect();
        union(lists)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::matcher::{MatchOp, Matcher};
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
