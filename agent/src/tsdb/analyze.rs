//! Where a block's bytes go: per block (chunks, index, meta) and per metric
//! name (series, samples, chunk bytes, and for packed chunks the bits of
//! the timestamp and value streams). `wasmon tsdb analyze` prints it; the
//! block benchmark (`bench/blocks.py`) reads its JSON to split bytes per
//! sample by metric type.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde::Serialize;

use super::block::{self, Block};
use super::chunkenc::ChunkIter;
use super::packed::{self, ENCODING_PACKED};
use super::postings::postings_for_matchers;
use crate::storage::{MatchOp, Matcher};

/// One block's figures.
#[derive(Debug, Clone, Serialize)]
pub struct BlockReport {
    pub ulid: String,
    pub min_time: i64,
    pub max_time: i64,
    /// From meta.json.
    pub num_samples: u64,
    pub num_series: u64,
    pub num_chunks: u64,
    /// Bytes of the files in `chunks/` (file headers and chunk framing included).
    pub chunks_bytes: u64,
    pub index_bytes: u64,
    /// Every file of the block (chunks, index, meta.json).
    pub total_bytes: u64,
    /// Sorted by name.
    pub metrics: Vec<MetricReport>,
}

/// The chunks of every series of one metric name in a block.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetricReport {
    pub name: String,
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
    /// On-disk bytes of the chunks: length, encoding byte, data, CRC.
    pub chunk_bytes: u64,
    /// Of the packed chunks, re-planned by the current encoder (see
    /// [`packed::explain`]): bits of the timestamp and value streams.
    pub packed_chunks: u64,
    pub time_bits: u64,
    pub value_bits: u64,
    /// How many chunks chose each value code / time code.
    pub value_codes: BTreeMap<String, u64>,
    pub time_codes: BTreeMap<String, u64>,
    /// Packed chunks whose size differs from what the current encoder
    /// writes for the same samples (blocks written by an older encoder).
    pub reencode_differs: u64,
}

/// Bytes of a chunk entry in a chunk file around `len` bytes of data.
fn framed(len: usize) -> u64 {
    let mut varint = Vec::new();
    super::encoding::put_uvarint(&mut varint, len as u64);
    (varint.len() + 1 + len + 4) as u64
}

fn file_size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Analyzes the block in `dir`.
pub fn analyze_block(dir: &Path) -> Result<BlockReport> {
    let b = Block::open(dir)?;
    let all = Matcher::new(MatchOp::Regex, "__name__", ".*")?;
    let mut metrics: BTreeMap<String, MetricReport> = BTreeMap::new();
    for off in postings_for_matchers(&b.index, &[all]) {
        let (labels, metas) = b
            .index
            .series(off)
            .with_context(|| format!("{}: series entry at {off}", dir.display()))?;
        let name = labels.get("__name__").unwrap_or("").to_string();
        let m = metrics.entry(name.clone()).or_insert_with(|| MetricReport {
            name,
            ..MetricReport::default()
        });
        m.series += 1;
        for meta in metas {
            let (enc, data) = b
                .chunks
                .chunk(meta.r)
                .with_context(|| format!("{}: series {labels}", dir.display()))?;
            m.chunks += 1;
            m.chunk_bytes += framed(data.len());
            let mut it = ChunkIter::new(enc, data);
            let samples: Vec<(i64, f64)> = it.by_ref().collect();
            anyhow::ensure!(
                !it.error(),
                "{}: series {labels}: corrupt chunk",
                dir.display()
            );
            m.samples += samples.len() as u64;
            if enc == ENCODING_PACKED && !samples.is_empty() {
                let e = packed::explain(&samples);
                m.packed_chunks += 1;
                m.time_bits += e.time_bits;
                m.value_bits += e.value_bits;
                *m.value_codes.entry(e.value_code).or_default() += 1;
                *m.time_codes.entry(e.time_code).or_default() += 1;
                if e.bytes != data.len() {
                    m.reencode_differs += 1;
                }
            }
        }
    }
    let chunks_dir = dir.join("chunks");
    let chunks_bytes = std::fs::read_dir(&chunks_dir)
        .with_context(|| format!("reading {}", chunks_dir.display()))?
        .flatten()
        .map(|e| file_size(&e.path()))
        .sum();
    Ok(BlockReport {
        ulid: b.meta.ulid.clone(),
        min_time: b.meta.min_time,
        max_time: b.meta.max_time,
        num_samples: b.meta.stats.num_samples,
        num_series: b.meta.stats.num_series,
        num_chunks: b.meta.stats.num_chunks,
        chunks_bytes,
        index_bytes: file_size(&dir.join("index")),
        total_bytes: block::tree_size(dir),
        metrics: metrics.into_values().collect(),
    })
}

/// Analyzes `dir` if it is a block, else every block directly under it (a
/// data directory), oldest first.
pub fn analyze(dir: &Path) -> Result<Vec<BlockReport>> {
    if dir.join("meta.json").is_file() {
        return Ok(vec![analyze_block(dir)?]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let is_block = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(block::is_ulid)
            && p.join("meta.json").is_file();
        if is_block {
            out.push(analyze_block(&p)?);
        }
    }
    out.sort_by_key(|r| (r.min_time, r.ulid.clone()));
    Ok(out)
}

/// The reports as text tables.
pub fn render(reports: &[BlockReport]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let per = |bytes: u64, samples: u64| bytes as f64 / samples.max(1) as f64;
    for r in reports {
        let _ = writeln!(
            s,
            "block {} [{}, {}) {} series, {} chunks, {} samples: chunks {} B, index {} B, total {} B = {:.3} B/sample",
            r.ulid,
            r.min_time,
            r.max_time,
            r.num_series,
            r.num_chunks,
            r.num_samples,
            r.chunks_bytes,
            r.index_bytes,
            r.total_bytes,
            per(r.total_bytes, r.num_samples)
        );
        let _ = writeln!(
            s,
            "  {:<40} {:>8} {:>8} {:>10} {:>11} {:>8} {:>8} {:>8}  value codes",
            "metric", "series", "chunks", "samples", "chunk B", "B/smpl", "t b/s", "v b/s"
        );
        for m in &r.metrics {
            let bits = |b: u64| {
                if m.packed_chunks == 0 {
                    "-".to_string()
                } else {
                    format!("{:.2}", b as f64 / m.samples.max(1) as f64)
                }
            };
            let codes: Vec<String> = m
                .value_codes
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect();
            let _ = writeln!(
                s,
                "  {:<40} {:>8} {:>8} {:>10} {:>11} {:>8.3} {:>8} {:>8}  {}",
                m.name,
                m.series,
                m.chunks,
                m.samples,
                m.chunk_bytes,
                per(m.chunk_bytes, m.samples),
                bits(m.time_bits),
                bits(m.value_bits),
                codes.join(" ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::tsdb::{Db, Options};
    use std::time::Duration;

    #[test]
    fn reports_bytes_per_metric_that_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            dir.path(),
            Options {
                block_duration: Duration::from_secs(60),
                head_chunks_on_disk: false,
                ..Options::default()
            },
        )
        .unwrap();
        // Two metrics over 2.5 minutes at 1 s: one block [0, 60 s) is due.
        let c = Labels::from_pairs([("__name__", "c_total"), ("i", "1")]);
        let g = Labels::from_pairs([("__name__", "g"), ("i", "1")]);
        let g2 = Labels::from_pairs([("__name__", "g"), ("i", "2")]);
        for s in 0..150i64 {
            let mut app = db.appender();
            app.append(&c, s * 1000, (s * 3) as f64).unwrap();
            app.append(&g, s * 1000, (s as f64 * 0.37).sin()).unwrap();
            app.append(&g2, s * 1000, 5.0).unwrap();
            app.commit().unwrap();
        }
        db.compact().unwrap();
        let reports = analyze(dir.path()).unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let r = &reports[0];
        assert_eq!((r.min_time, r.max_time), (0, 60_000));
        assert_eq!(r.num_samples, 180);
        let names: Vec<&str> = r.metrics.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["c_total", "g"]);
        let (cm, gm) = (&r.metrics[0], &r.metrics[1]);
        assert_eq!((cm.series, cm.samples), (1, 60));
        assert_eq!((gm.series, gm.samples), (2, 120));
        // Every chunk byte is accounted for: the chunk file is its 8-byte
        // header plus the framed chunks.
        assert_eq!(cm.chunk_bytes + gm.chunk_bytes + 8, r.chunks_bytes);
        assert!(r.total_bytes > r.chunks_bytes + r.index_bytes);
        // A constant-rate counter on the grid costs no bits per sample
        // (2-bit stream headers only); the sine gauge is full-precision
        // floats (XOR or bit patterns), the constant one an all-zero stream.
        assert_eq!(cm.value_codes.get("int-median-zero"), Some(&1), "{cm:?}");
        assert_eq!(
            (cm.time_bits, cm.value_bits, cm.reencode_differs),
            (2, 2, 0)
        );
        assert_eq!(gm.value_codes.get("int-median-zero"), Some(&1), "{gm:?}");
        assert!(
            gm.value_codes
                .keys()
                .any(|k| k == "xor" || k.starts_with("bits")),
            "{gm:?}"
        );
        assert!(gm.value_bits > 59 * 30, "{gm:?}");
        let text = render(&reports);
        assert!(
            text.contains("c_total") && text.contains("B/sample"),
            "{text}"
        );
    }
}
