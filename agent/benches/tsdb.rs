//! TSDB benchmark: prints figures, asserts nothing about speed.
//!
//! Run with `cargo bench -p wasmon --bench tsdb` (set `TSDB_BENCH_QUICK=1`
//! for a fast smoke run, e.g. under `cargo test --bench tsdb`, and
//! `TSDB_BENCH_ONLY=memory,compression,append,disk,merged` for a subset).
//!
//! Measures:
//! - append throughput on one core (label lookup and by-ref, as a scrape
//!   cache does), samples/s;
//! - bytes per sample in chunks for realistic counters, gauges and
//!   histogram-bucket series at 15 s and 30 s scrape intervals, with
//!   timestamp jitter as real scrapes have;
//! - bytes per sample on disk after compaction into a block (chunks + index
//!   + meta), for a realistic mix;
//! - head memory per active series at 100k series: VmRSS delta from
//!   /proc/self/status and the store's own estimate.
//!
//! Targets: < 1.5 bytes/sample on disk, < 1 KiB RSS per active series.

use std::time::{Duration, Instant};

use wasmon::model::Labels;
use wasmon::tsdb::chunkenc::{Chunk, ENCODING_INT, ENCODING_XOR, SAMPLES_PER_CHUNK};
use wasmon::tsdb::packed;
use wasmon::tsdb::{Db, Options};

/// splitmix64: deterministic data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.f64().max(1e-12), self.f64());
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
    /// Poisson-ish count with mean `m` (normal approximation for large m).
    fn count(&mut self, m: f64) -> f64 {
        if m < 30.0 {
            let l = (-m).exp();
            let (mut k, mut p) = (0.0, 1.0);
            loop {
                p *= self.f64();
                if p <= l {
                    return k;
                }
                k += 1.0;
            }
        }
        (m + m.sqrt() * self.normal()).round().max(0.0)
    }
}

/// Error function (Abramowitz–Stegun 7.1.26, |error| < 1.5e-7).
fn erf(x: f64) -> f64 {
    let s = x.signum();
    let x = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let y = 1.0
        - (((((1.061_405_429 * t - 1.453_152_027) * t) + 1.421_413_741) * t - 0.284_496_736) * t
            + 0.254_829_592)
            * t
            * (-x * x).exp();
    s * y
}

/// When every generated series starts.
const START: i64 = 1_700_000_000_000;

/// Scrape timestamps: a fixed interval plus jitter — mostly a millisecond
/// or two, sometimes tens of ms, rarely a slow scrape of hundreds.
fn timestamps(rng: &mut Rng, n: usize, interval_ms: i64) -> Vec<i64> {
    (0..n as i64)
        .map(|i| {
            let r = rng.f64();
            let jitter = if r < 0.90 {
                (rng.next() % 5) as i64 - 2
            } else if r < 0.99 {
                (rng.next() % 41) as i64 - 20
            } else {
                (rng.next() % 1001) as i64 - 500
            };
            START + i * interval_ms + jitter
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Monotonic counter, rate log-uniform in 0.01..1000 events/s.
    BusyCounter,
    /// Counter that rarely moves (errors, restarts): most real counters.
    IdleCounter,
    /// Byte gauge moving in 4 KiB pages (memory, queue bytes).
    BytesGauge,
    /// Small integer gauge (goroutines, connections, queue length).
    IntGauge,
    /// Full-precision ratio gauge (CPU fraction, load) — the worst case.
    FloatGauge,
    /// One histogram: 11 cumulative buckets + _count + _sum per scrape.
    Histogram,
}

/// Generates `n` scrapes of one metric family; returns one value series per
/// time series (a histogram yields 13).
fn values(rng: &mut Rng, kind: Kind, n: usize, interval_s: f64) -> Vec<Vec<f64>> {
    match kind {
        Kind::BusyCounter | Kind::IdleCounter => {
            let rate = match kind {
                Kind::BusyCounter => 10f64.powf(-2.0 + 5.0 * rng.f64()),
                _ => 0.0005,
            };
            let mut v = (rng.next() % 100_000) as f64;
            vec![(0..n)
                .map(|_| {
                    v += rng.count(rate * interval_s);
                    v
                })
                .collect()]
        }
        Kind::BytesGauge => {
            let mut pages = 20_000.0 + (rng.next() % 50_000) as f64;
            vec![(0..n)
                .map(|_| {
                    pages = (pages + (rng.normal() * 30.0).round()).max(0.0);
                    pages * 4096.0
                })
                .collect()]
        }
        Kind::IntGauge => {
            let mut g = (rng.next() % 200) as f64;
            vec![(0..n)
                .map(|_| {
                    if rng.f64() < 0.3 {
                        g = (g + (rng.normal() * 3.0).round()).max(0.0);
                    }
                    g
                })
                .collect()]
        }
        Kind::FloatGauge => {
            let mut g = rng.f64();
            vec![(0..n)
                .map(|_| {
                    g = (g + rng.normal() * 0.05).clamp(0.0, 1.0);
                    g
                })
                .collect()]
        }
        Kind::Histogram => {
            let bounds = [
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let rate = 10f64.powf(-1.0 + 3.0 * rng.f64());
            let median = 0.02 + 0.2 * rng.f64();
            // Log-normal latencies: per scrape, Poisson counts per bucket.
            let cdf =
                |x: f64| 0.5 * (1.0 + erf((x / median).ln() / (0.8 * std::f64::consts::SQRT_2)));
            let mut probs = Vec::with_capacity(bounds.len() + 1);
            let mut prev = 0.0;
            for b in bounds {
                let c = cdf(b);
                probs.push(c - prev);
                prev = c;
            }
            probs.push(1.0 - prev);
            let mut buckets = vec![0.0; bounds.len() + 1];
            let mut sum = 0.0;
            let mut out = vec![Vec::with_capacity(n); bounds.len() + 3];
            for _ in 0..n {
                let mut cum = 0.0;
                for (i, p) in probs.iter().enumerate() {
                    cum += rng.count(rate * interval_s * p);
                    buckets[i] += cum;
                }
                let total = cum;
                sum += total * median * (1.0 + 0.2 * rng.normal()).max(0.0);
                // buckets[] above holds running cumulative sums per scrape.
                for (i, b) in buckets.iter().enumerate() {
                    out[i].push(*b);
                }
                out[bounds.len() + 1].push(buckets[bounds.len()]); // _count
                out[bounds.len() + 2].push(sum);
            }
            out
        }
    }
}

/// Chunk bytes for one series, cut and encoded as the head does (120
/// samples a chunk; integer chunks where values allow), its sample count,
/// and how many of its chunks are integer-encoded.
fn chunk_bytes(ts: &[i64], vs: &[f64]) -> (usize, usize, usize) {
    encode(ts, vs, false)
}

/// Bytes as a block stores them: packed chunks of a 2 h block range
/// (`per` samples each).
fn packed_bytes(ts: &[i64], vs: &[f64], per: usize) -> usize {
    let samples: Vec<(i64, f64)> = ts.iter().copied().zip(vs.iter().copied()).collect();
    samples.chunks(per).map(|c| packed::encode(c).len()).sum()
}

/// As [`chunk_bytes`]; with `xor_only`, every chunk is XOR (Prometheus-like
/// values, this store's timestamp code).
fn encode(ts: &[i64], vs: &[f64], xor_only: bool) -> (usize, usize, usize) {
    let mut chunks: Vec<Chunk> = Vec::new();
    for (&t, &v) in ts.iter().zip(vs) {
        let cut = match chunks.last() {
            None => true,
            Some(c) => c.num_samples() >= SAMPLES_PER_CHUNK || !c.can_append(v),
        };
        if cut {
            let next = match chunks.last() {
                _ if xor_only => Chunk::new(ENCODING_XOR, false),
                None => Chunk::first(v, 128),
                Some(c) => c.successor(v, 128),
            };
            chunks.push(next);
        }
        if let Some(c) = chunks.last_mut() {
            c.append(t, v);
        }
    }
    let bytes = chunks.iter().map(|c| c.bytes().len()).sum();
    let ints = chunks
        .iter()
        .filter(|c| c.encoding() == ENCODING_INT)
        .count();
    (bytes, ts.len(), ints)
}

// The agent's allocator and settings (agent/src/main.rs), so that RSS
// figures match what the agent would show.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:250,muzzy_decay_ms:0\0";

/// Lets jemalloc's background thread hand freed pages back (1 s decay), so
/// the RSS shows live memory rather than what the allocator keeps.
fn settle_heap() {
    std::thread::sleep(Duration::from_millis(1500));
}

fn vm_rss_kib() -> u64 {
    status_kib("VmRSS:")
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets VmHWM (peak RSS) to the current RSS (Linux: clear_refs 5).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Realistic label sets: ~7 labels, ~150 bytes, 100 instances per job.
fn series_labels(i: usize, name: &str) -> Labels {
    Labels::from_pairs([
        ("__name__", name.to_string()),
        ("job", format!("service-{}", i / 1000 % 20)),
        (
            "instance",
            format!("10.1.{}.{}:9100", i / 256 % 256, i % 256),
        ),
        ("namespace", format!("team-{}", i / 5000)),
        (
            "pod",
            format!(
                "service-{}-7d9f8b6c5-{:05x}",
                i / 1000 % 20,
                i * 7919 % 0xfffff
            ),
        ),
        ("code", ["200", "404", "500"][i % 3].to_string()),
        ("method", ["GET", "POST"][i / 3 % 2].to_string()),
    ])
}

fn main() {
    let quick = std::env::var_os("TSDB_BENCH_QUICK").is_some();
    println!("tsdb benchmark{}", if quick { " (quick)" } else { "" });
    // TSDB_BENCH_ONLY=memory,compression,append,disk,merged runs a subset.
    let only = std::env::var("TSDB_BENCH_ONLY").unwrap_or_default();
    let run = |name: &str| only.is_empty() || only.split(',').any(|s| s == name);
    // Memory first, while the allocator holds no freed memory that would
    // hide the head's growth from the RSS delta.
    if run("memory") {
        head_memory(quick);
    }
    if run("compression") {
        compression(quick);
    }
    if run("append") {
        append_throughput(quick);
    }
    if run("disk") {
        on_disk(quick);
    }
    if run("merged") {
        merged_on_disk(quick);
    }
}

fn compression(quick: bool) {
    println!("\n## bytes per sample in chunks (120 samples/chunk, jittered timestamps)");
    let n = if quick { 480 } else { 2880 }; // 2 h / 12 h at 15 s
    let series = if quick { 50 } else { 400 };
    println!(
        "head chunks (120 samples, streaming encodings) and block chunks (packed, 2 h per chunk)"
    );
    println!(
        "{:<14} {:>8} {:>8} {:>14} {:>14} {:>12} {:>12} {:>12}",
        "kind",
        "15s",
        "30s",
        "15s XOR-only",
        "15s aligned ts",
        "block 15s",
        "block 2ms",
        "block alig."
    );
    for kind in [
        Kind::BusyCounter,
        Kind::IdleCounter,
        Kind::BytesGauge,
        Kind::IntGauge,
        Kind::FloatGauge,
        Kind::Histogram,
    ] {
        let mut row = Vec::new();
        // (interval, XOR only, timestamps: 0 jittered, 1 aligned, 2 snapped
        // to the schedule within 2 ms as the scrape loop does, packed?)
        for (interval, xor_only, align, block) in [
            (15_000i64, false, 0, false),
            (30_000, false, 0, false),
            (15_000, true, 0, false),
            (15_000, false, 1, false),
            (15_000, false, 0, true),
            (15_000, false, 2, true),
            (15_000, false, 1, true),
        ] {
            let mut rng = Rng(42);
            let (mut bytes, mut samples) = (0, 0);
            for _ in 0..series {
                let ts = snap(timestamps(&mut rng, n, interval), interval, align);
                for vs in values(&mut rng, kind, n, interval as f64 / 1000.0) {
                    if block {
                        bytes += packed_bytes(&ts, &vs, (2 * 3_600_000 / interval) as usize);
                        samples += ts.len();
                    } else {
                        let (b, s, _) = encode(&ts, &vs, xor_only);
                        bytes += b;
                        samples += s;
                    }
                }
            }
            row.push(bytes as f64 / samples as f64);
        }
        println!(
            "{:<14} {:>8.3} {:>8.3} {:>14.3} {:>14.3} {:>12.3} {:>12.3} {:>12.3}",
            format!("{kind:?}"),
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            row[5],
            row[6]
        );
    }
    // Timestamps alone, to show what jitter costs.
    let mut rng = Rng(1);
    let ts = timestamps(&mut rng, n, 15_000);
    let (b, s, _) = chunk_bytes(&ts, &vec![1.0; n]);
    let exact: Vec<i64> = (0..n as i64).map(|i| i * 15_000).collect();
    let (b0, _, _) = chunk_bytes(&exact, &vec![1.0; n]);
    println!(
        "constant value: {:.3} B/sample with jitter, {:.3} without",
        b as f64 / s as f64,
        b0 as f64 / s as f64
    );
}

/// Timestamps as stored: `align` 0 as scraped (jittered), 1 aligned to the
/// interval, 2 snapped to the schedule when within 2 ms of it (what the
/// scrape loop stores, after Prometheus' timestamp tolerance).
fn snap(ts: Vec<i64>, interval: i64, align: u8) -> Vec<i64> {
    ts.into_iter()
        .map(|t| {
            // The schedule: the series' start plus whole intervals.
            let grid = START + (t - START + interval / 2).div_euclid(interval) * interval;
            match align {
                1 => grid,
                2 if (t - grid).abs() <= 2 => grid,
                _ => t,
            }
        })
        .collect()
}

/// The mix used for the on-disk figure, per 100 metric families: 30 idle
/// counters, 20 busy counters, 15 integer gauges, 10 byte gauges, 5 float
/// gauges and 20 histograms. A histogram is 13 series (11 buckets, +Inf
/// included, `_count`, `_sum`), so by series count it is 80 scalar series
/// and 260 histogram series — histogram-heavy, like an instrumented
/// HTTP service.
fn mix(i: usize) -> Kind {
    match i % 100 {
        0..=29 => Kind::IdleCounter,
        30..=49 => Kind::BusyCounter,
        50..=64 => Kind::IntGauge,
        65..=74 => Kind::BytesGauge,
        75..=79 => Kind::FloatGauge,
        _ => Kind::Histogram,
    }
}

fn append_throughput(quick: bool) {
    println!("\n## append throughput (one thread)");
    let series = if quick { 2_000 } else { 10_000 };
    let scrapes = if quick { 20 } else { 100 };
    let labels: Vec<Labels> = (0..series)
        .map(|i| series_labels(i, "http_requests_total"))
        .collect();
    for by_ref in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = Options {
            wal_sync_interval: Duration::from_secs(1),
            ..Options::default()
        };
        let db = Db::open(tmp.path(), opts).unwrap();
        let mut refs = vec![0u64; series];
        // First scrape creates the series (not timed).
        let mut app = db.appender();
        for (i, l) in labels.iter().enumerate() {
            refs[i] = app.append(l, 0, 0.0).unwrap();
        }
        app.commit().unwrap();
        let start = Instant::now();
        for s in 1..scrapes {
            let t = s as i64 * 15_000;
            let mut app = db.appender();
            for (i, l) in labels.iter().enumerate() {
                let v = (s * (i % 7 + 1)) as f64;
                if by_ref {
                    app.append_ref(refs[i], t, v).unwrap();
                } else {
                    app.append(l, t, v).unwrap();
                }
            }
            app.commit().unwrap();
        }
        let el = start.elapsed();
        let n = (series * (scrapes - 1)) as f64;
        println!(
            "{:<28} {:>10.0} samples/s ({:.0} ns/sample, WAL included)",
            if by_ref {
                "append_ref (scrape cache)"
            } else {
                "append(labels)"
            },
            n / el.as_secs_f64(),
            el.as_nanos() as f64 / n
        );
    }
}

type BenchSeries = Vec<(Labels, Vec<i64>, Vec<f64>)>;

/// `families` metric families of the realistic mix, `n` scrapes 15 s apart
/// (timestamps per `snap`'s `align`).
fn disk_mix(families: usize, n: usize, align: u8) -> BenchSeries {
    let mut rng = Rng(7);
    let mut data = Vec::new();
    for f in 0..families {
        let kind = mix(f);
        let ts = snap(timestamps(&mut rng, n, 15_000), 15_000, align);
        for (j, vs) in values(&mut rng, kind, n, 15.0).into_iter().enumerate() {
            let name = format!("{kind:?}_{j}").to_lowercase();
            data.push((series_labels(f, &name), ts.clone(), vs));
        }
    }
    data
}

fn ingest(db: &Db, data: &BenchSeries, scrapes: std::ops::Range<usize>) {
    for i in scrapes {
        let mut app = db.appender();
        for (l, ts, vs) in data {
            app.append(l, ts[i], vs[i]).unwrap();
        }
        app.commit().unwrap();
    }
}

/// Blocks in `dir`, oldest first: (min time, max time, level, samples,
/// chunk bytes, index bytes).
fn blocks_in(dir: &std::path::Path) -> Vec<(i64, i64, u64, u64, u64, u64)> {
    let mut blocks = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.join("meta.json").exists() {
            let meta: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p.join("meta.json")).unwrap()).unwrap();
            let chunks: u64 = std::fs::read_dir(p.join("chunks"))
                .unwrap()
                .flatten()
                .map(|c| c.metadata().unwrap().len())
                .sum();
            let index = std::fs::metadata(p.join("index")).unwrap().len();
            blocks.push((
                meta["minTime"].as_i64().unwrap(),
                meta["maxTime"].as_i64().unwrap(),
                meta["compaction"]["level"].as_u64().unwrap(),
                meta["stats"]["numSamples"].as_u64().unwrap(),
                chunks,
                index,
            ));
        }
    }
    blocks.sort();
    blocks
}

fn on_disk(quick: bool) {
    println!("\n## bytes per sample on disk after compaction (mix of 24% scalar and 76% histogram series, 15 s scrapes)");
    let families = if quick { 200 } else { 2_000 };
    for align in [0u8, 2, 1] {
        let tmp = tempfile::tempdir().unwrap();
        let db = Db::open(tmp.path(), Options::default()).unwrap();
        // 5 h: the first (partial) and the second 2 h window are compacted.
        let n = 20 * 60;
        let data = disk_mix(families, n, align);
        ingest(&db, &data, 0..n);
        db.sync_wal().unwrap();
        let wal_dir = tmp.path().join("wal");
        let stored = wasmon::tsdb::wal::dir_size(&wal_dir);
        let mut plain = 0u64;
        wasmon::tsdb::wal::replay(&wal_dir, &mut |p| plain += 8 + p.len() as u64).unwrap();
        let total = (n * data.len()) as f64;
        println!(
            "{} timestamps: WAL before compaction {:.2} B/sample stored, {:.2} B/sample uncompressed ({:.0}%)",
            ["jittered", "aligned", "2 ms-snapped"][align as usize],
            stored as f64 / total,
            plain as f64 / total,
            100.0 * stored as f64 / plain as f64
        );
        db.compact().unwrap();
        println!(
            "{} timestamps, {} series:",
            ["jittered", "aligned", "2 ms-snapped (as scraped)"][align as usize],
            data.len()
        );
        for (i, (_, _, _, samples, chunks, index)) in blocks_in(tmp.path()).iter().enumerate() {
            println!(
                "  block {} ({}): {:>8} samples, chunks {:>8} B, index {:>7} B → {:.3} B/sample on disk (chunks alone {:.3}); target < 1.5",
                i + 1,
                if i == 0 { "series' first 2 h" } else { "steady state" },
                samples,
                chunks,
                index,
                (chunks + index) as f64 / *samples as f64,
                *chunks as f64 / *samples as f64
            );
        }
    }
}

/// The same mix over 26 h, compacted hour by hour as the maintenance
/// thread does, with and without level compaction: the range the merged
/// blocks cover, as 2 h blocks and as merged blocks.
fn merged_on_disk(quick: bool) {
    const H: i64 = 3_600_000;
    println!("\n## level compaction: the same samples in 2 h blocks and in merged blocks (2 ms-snapped timestamps, 26 h)");
    let families = if quick { 50 } else { 500 };
    let n = 26 * 240;
    let data = disk_mix(families, n, 2);
    let mut runs = Vec::new();
    for max in [Some(Duration::from_secs(7200)), None] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = Options {
            max_block_duration: max,
            ..Options::default()
        };
        let db = Db::open(tmp.path(), opts).unwrap();
        let t0 = Instant::now();
        for h in 0..26 {
            ingest(&db, &data, h * 240..(h + 1) * 240);
            db.compact().unwrap();
        }
        runs.push((t0.elapsed(), blocks_in(tmp.path())));
    }
    // The range of the merged blocks (level 2 and up).
    let merged = runs[1].1.iter().filter(|b| b.2 >= 2);
    let lo = merged.clone().map(|b| b.0).min().unwrap_or(0);
    let hi = merged.map(|b| b.1).max().unwrap_or(0);
    let base = runs[0].1.first().map_or(0, |b| b.0);
    for ((elapsed, blocks), what) in runs
        .iter()
        .zip(["2 h blocks only", "merged (default ranges: 2 h, 6 h, 18 h)"])
    {
        let layout: Vec<String> = blocks
            .iter()
            .map(|b| format!("[{},{})L{}", (b.0 - base) / H, (b.1 - base) / H, b.2))
            .collect();
        let span: Vec<_> = blocks.iter().filter(|b| b.0 >= lo && b.1 <= hi).collect();
        let samples: u64 = span.iter().map(|b| b.3).sum();
        let chunks: u64 = span.iter().map(|b| b.4).sum();
        let index: u64 = span.iter().map(|b| b.5).sum();
        println!(
            "{what}: {} series, {} blocks (hours from the first sample): {}",
            data.len(),
            blocks.len(),
            layout.join(" ")
        );
        println!(
            "  [{} h, {} h) in {} blocks: {samples} samples, chunks {chunks} B, index {index} B → {:.3} B/sample (chunks {:.3}, index {:.3}); ingest + compactions {:.1} s",
            (lo - base) / H,
            (hi - base) / H,
            span.len(),
            (chunks + index) as f64 / samples as f64,
            chunks as f64 / samples as f64,
            index as f64 / samples as f64,
            elapsed.as_secs_f64()
        );
    }
}

fn head_memory(quick: bool) {
    println!("\n## head memory per active series (15 s scrapes of 1000-series targets, half idle and half busy counters; compaction every simulated minute, as the maintenance thread does)");
    let series = if quick { 10_000 } else { 100_000 };
    let labels: Vec<Labels> = (0..series)
        .map(|i| series_labels(i, "http_requests_total"))
        .collect();
    let label_bytes: usize = labels
        .iter()
        .map(|l| {
            l.iter()
                .map(|l| l.name.len() + l.value.len())
                .sum::<usize>()
        })
        .sum();
    println!(
        "label text {:.0} B/series over {} labels",
        label_bytes as f64 / series as f64,
        labels[0].len()
    );
    let tmp = tempfile::tempdir().unwrap();
    let db = Db::open(tmp.path(), Options::default()).unwrap();
    let mut rng = Rng(3);
    let mut vals: Vec<f64> = (0..series).map(|_| (rng.next() % 100_000) as f64).collect();
    let rates: Vec<f64> = (0..series)
        .map(|i| {
            if i % 2 == 0 {
                0.0005
            } else {
                10f64.powf(-2.0 + 4.0 * rng.f64())
            }
        })
        .collect();
    let mut refs = vec![0u64; series];
    settle_heap();
    let base = vm_rss_kib();
    let base_alloc = wasmon::selfmetrics::allocator_stats();
    let per = |bytes: u64| bytes as f64 / series as f64;
    let mut t = 0i64;
    // 2 h blocks are cut once the head spans 3 h (720 scrapes); from then
    // on the head holds 1-1.5 blocks' worth: the steady state.
    let end = if quick { 240 } else { 1440 };
    let checkpoints = [1usize, 30, 120, 240, 480, 720, 960, 1200, 1440];
    let mut steady: Vec<f64> = Vec::new();
    let mut peaks: Vec<(f64, bool)> = Vec::new();
    for scrape in 0..end {
        // One appender per target of 1000 series, as scrape loops do.
        for target in (0..series).step_by(1000) {
            let mut app = db.appender();
            for i in target..(target + 1000).min(series) {
                vals[i] += rng.count(rates[i] * 15.0);
                let ts = t + (rng.next() % 5) as i64;
                if t == 0 {
                    refs[i] = app.append(&labels[i], ts, vals[i]).unwrap();
                } else {
                    app.append_ref(refs[i], ts, vals[i]).unwrap();
                }
            }
            app.commit().unwrap();
        }
        // What the maintenance thread does every head_offload_interval and
        // compaction_interval.
        db.offload_head_chunks().unwrap();
        let n = scrape + 1;
        if scrape % 4 == 3 {
            // The transient peak of compactions (the block's series set,
            // the index being built) in the steady state, from VmHWM.
            let measure = n > 720 && reset_peak_rss();
            let before = db.stats().compactions_total;
            db.compact().unwrap();
            if measure {
                let peak = per(status_kib("VmHWM:").saturating_sub(base) * 1024);
                peaks.push((peak, db.stats().compactions_total > before));
            }
        }
        t += 15_000;
        if n > 720 && n % 24 == 0 {
            steady.push(per(vm_rss_kib().saturating_sub(base) * 1024));
        }
        if !checkpoints.contains(&n) {
            continue;
        }
        let rss = vm_rss_kib().saturating_sub(base) * 1024;
        settle_heap();
        let settled = vm_rss_kib().saturating_sub(base) * 1024;
        let st = db.stats();
        let alloc = match (wasmon::selfmetrics::allocator_stats(), base_alloc) {
            (Some(a), Some(b)) => format!(
                ", allocated {:.0} / active {:.0} / resident {:.0}",
                per(a.allocated.saturating_sub(b.allocated)),
                per(a.active.saturating_sub(b.active)),
                per(a.resident.saturating_sub(b.resident))
            ),
            _ => String::new(),
        };
        println!(
            "{:>6} series x {:>4} scrapes: RSS {:>5.0} B/series ({:>5.0} after 1.5 s), estimate {:>5.0}{alloc}, head chunks {}, blocks {}",
            series,
            n,
            per(rss),
            per(settled),
            per(st.head_memory_bytes),
            st.head_chunks,
            st.blocks,
        );
    }
    if !steady.is_empty() {
        let mean = steady.iter().sum::<f64>() / steady.len() as f64;
        let max = steady.iter().cloned().fold(f64::MIN, f64::max);
        let min = steady.iter().cloned().fold(f64::MAX, f64::min);
        println!(
            "steady state (scrapes 720-{end}, every 6 simulated minutes): RSS min {min:.0} / mean {mean:.0} / max {max:.0} B/series"
        );
    }
    let max_of = |cut: bool| {
        peaks
            .iter()
            .filter(|p| p.1 == cut)
            .map(|p| p.0)
            .reduce(f64::max)
    };
    if let (Some(cut), idle) = (max_of(true), max_of(false)) {
        println!(
            "peak RSS (VmHWM) in the steady state: {cut:.0} B/series during a compaction that persists a block, {:.0} otherwise ({} runs)",
            idle.unwrap_or(f64::NAN),
            peaks.len()
        );
    }
    drop(labels);
    println!("(RSS delta from before the first append, jemalloc as in the agent; includes the WAL buffer and allocator slack; allocated/active/resident are jemalloc's live-object, live-page and resident bytes, from the same start; target < 1024 B/series)");
}
