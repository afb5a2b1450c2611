//! Side by side: the same data and queries in wasmon (its engine on its
//! TSDB) and in Prometheus 2.42 (a block made by `promtool`, queried over
//! HTTP). Prints figures and whether both agree; asserts nothing about
//! speed.
//!
//! Run with `cargo bench -p wasmon --bench query_compare`
//! (`QUERY_COMPARE_QUICK=1` for a small data set). Steps:
//!
//! 1. generate ~100k series deterministically, 1 h at 15 s (plus 5 min
//!    before, so that the queried hour's windows are full):
//!    `http_requests_total{job,instance,path,method,status}` counters (with
//!    rare resets), a classic histogram `request_duration_seconds_bucket`
//!    (10 buckets) per job/instance/path, and `up` per job/instance;
//! 2. write them as an OpenMetrics file and time
//!    `promtool tsdb create-blocks-from openmetrics FILE DIR`;
//! 3. append the same samples to a wasmon `tsdb::Db` (time-major, as a
//!    scraper would) and compact them into a block;
//! 4. start `prometheus` on a free port of 127.0.0.1 over the block, run
//!    each query as an instant and a 1 h range query (step 15 s) on both,
//!    compare the results and print a table, then stop Prometheus.
//!
//! Without `prometheus`/`promtool` on the PATH only wasmon's side runs.

use std::collections::BTreeMap;
use std::io::{BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use wasmon::model::Labels;
use wasmon::promql::{parse, Engine, QueryResult, Value};
use wasmon::tsdb::{Db, Options};

const STEP_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;
/// Start of the queried hour: 10 min past a 2 h boundary, so that the data
/// (from 5 min before, see [`ts`]) lies in one block window.
const T0: i64 = 1_700_006_400_000 + 600_000;
/// Data starts this long before the queried hour, so that every `[5m]`
/// window of the hour is full, as on a long-running target. (At a series'
/// start Prometheus 2.42 and 3.x extrapolate `rate` differently: 3.x
/// applies the extrapolation-to-zero limit after the 1.1x threshold.)
const WARMUP_MS: i64 = 300_000;
const JOBS: [&str; 5] = ["api", "web", "auth", "billing", "search"];
const INSTANCES: usize = 40;
const CODES: [(&str, &str); 10] = [
    ("GET", "200"),
    ("GET", "304"),
    ("GET", "404"),
    ("GET", "500"),
    ("POST", "200"),
    ("POST", "201"),
    ("POST", "400"),
    ("POST", "500"),
    ("PUT", "200"),
    ("DELETE", "204"),
];
const LE: [&str; 10] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf",
];
const QUERIES: [&str; 4] = [
    "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "topk(5, sum by (instance) (rate(http_requests_total[5m])))",
    "count(up)",
];

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One counter: integer increments, a reset about every 5000 samples.
struct Counter {
    rng: Rng,
    v: f64,
    rate: u64,
}

impl Counter {
    fn new(id: u64) -> Counter {
        let mut rng = Rng::new(id + 1);
        let rate = 1 + rng.next() % 200;
        let v = (rng.next() % 1_000_000) as f64;
        Counter { rng, v, rate }
    }
    fn next(&mut self) -> f64 {
        let r = self.rng.next();
        if r.is_multiple_of(5000) {
            self.v = 0.0;
        } else {
            self.v += (r >> 16) as f64 % self.rate as f64;
        }
        self.v
    }
}

/// The buckets of one histogram: cumulative integer counts.
struct Hist {
    rng: Rng,
    counts: [f64; 10],
}

impl Hist {
    fn new(id: u64) -> Hist {
        Hist {
            rng: Rng::new(0x5eed_0000 + id),
            counts: [0.0; 10],
        }
    }
    fn next(&mut self) -> [f64; 10] {
        let mut acc = 0.0;
        for (b, c) in self.counts.iter_mut().enumerate() {
            // More observations fall into the middle buckets.
            let w = [1, 2, 4, 8, 16, 12, 6, 3, 1, 1][b];
            acc += (self.rng.next() % (w * 4 + 1)) as f64;
            *c += acc;
        }
        self.counts
    }
}

struct Data {
    paths: usize,
}

impl Data {
    fn groups(&self) -> usize {
        JOBS.len() * INSTANCES * self.paths
    }
    /// (job, instance, path) of a group.
    fn group(&self, g: usize) -> (&'static str, String, String) {
        let p = g % self.paths;
        let i = (g / self.paths) % INSTANCES;
        let j = g / self.paths / INSTANCES;
        (
            JOBS[j],
            format!("10.0.{j}.{i}:8080"),
            format!("/api/v1/resource{p}"),
        )
    }
    fn counter_labels(&self, g: usize, c: usize) -> Vec<(&'static str, String)> {
        let (job, inst, path) = self.group(g);
        vec![
            ("__name__", "http_requests_total".into()),
            ("instance", inst),
            ("job", job.into()),
            ("method", CODES[c].0.into()),
            ("path", path),
            ("status", CODES[c].1.into()),
        ]
    }
    fn bucket_labels(&self, g: usize, b: usize) -> Vec<(&'static str, String)> {
        let (job, inst, path) = self.group(g);
        vec![
            ("__name__", "request_duration_seconds_bucket".into()),
            ("instance", inst),
            ("job", job.into()),
            ("le", LE[b].into()),
            ("path", path),
        ]
    }
    fn up_labels(&self, u: usize) -> Vec<(&'static str, String)> {
        vec![
            ("__name__", "up".into()),
            (
                "instance",
                format!("10.0.{}.{}:8080", u / INSTANCES, u % INSTANCES),
            ),
            ("job", JOBS[u / INSTANCES].into()),
        ]
    }
    fn ups(&self) -> usize {
        JOBS.len() * INSTANCES
    }
    fn series(&self) -> usize {
        self.groups() * (CODES.len() + LE.len()) + self.ups()
    }
}

/// The timestamp of the `i`th scrape: off the query steps by 7 s plus a
/// little jitter, as real scrapes are. (Prometheus 2.42's windows are
/// closed on the left, Prometheus 3's and wasmon's are open: a sample
/// exactly at `t - 5m` would count in one and not in the other.)
fn ts(i: usize) -> i64 {
    T0 - WARMUP_MS + i as i64 * STEP_MS + 7_000 + (i as i64 * 37) % 400
}

fn steps() -> usize {
    ((HOUR_MS + WARMUP_MS) / STEP_MS) as usize + 1
}

fn om_line(w: &mut impl Write, l: &[(&str, String)], v: f64, t: i64) -> std::io::Result<()> {
    write!(w, "{}{{", l[0].1)?;
    for (k, (n, val)) in l[1..].iter().enumerate() {
        if k > 0 {
            w.write_all(b",")?;
        }
        write!(w, "{n}=\"{val}\"")?;
    }
    writeln!(w, "}} {v} {}.{:03}", t / 1000, t % 1000)
}

/// Writes the data as OpenMetrics, each family contiguous, each series'
/// samples in time order.
fn write_openmetrics(d: &Data, path: &Path) -> std::io::Result<u64> {
    let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let n = steps();
    let mut samples = 0u64;
    for g in 0..d.groups() {
        for c in 0..CODES.len() {
            let mut ctr = Counter::new((g * CODES.len() + c) as u64);
            let l = d.counter_labels(g, c);
            for i in 0..n {
                om_line(&mut w, &l, ctr.next(), ts(i))?;
            }
            samples += n as u64;
        }
    }
    let mut buf = vec![[0.0; 10]; n];
    for g in 0..d.groups() {
        let mut h = Hist::new(g as u64);
        for b in buf.iter_mut() {
            *b = h.next();
        }
        for b in 0..LE.len() {
            let l = d.bucket_labels(g, b);
            for (i, v) in buf.iter().enumerate() {
                om_line(&mut w, &l, v[b], ts(i))?;
            }
            samples += n as u64;
        }
    }
    for u in 0..d.ups() {
        let l = d.up_labels(u);
        for i in 0..n {
            om_line(&mut w, &l, 1.0, ts(i))?;
        }
        samples += n as u64;
    }
    w.write_all(b"# EOF\n")?;
    w.flush()?;
    Ok(samples)
}

/// Appends the same samples to a wasmon Db, one commit per scrape step.
fn load_wasmon(d: &Data, db: &Db) -> (u64, Duration) {
    let n = steps();
    let mut labels: Vec<Labels> = Vec::with_capacity(d.series());
    for g in 0..d.groups() {
        for c in 0..CODES.len() {
            labels.push(Labels::from_pairs(d.counter_labels(g, c)));
        }
    }
    for g in 0..d.groups() {
        for b in 0..LE.len() {
            labels.push(Labels::from_pairs(d.bucket_labels(g, b)));
        }
    }
    for u in 0..d.ups() {
        labels.push(Labels::from_pairs(d.up_labels(u)));
    }
    let mut counters: Vec<Counter> = (0..d.groups() * CODES.len())
        .map(|i| Counter::new(i as u64))
        .collect();
    let mut hists: Vec<Hist> = (0..d.groups()).map(|g| Hist::new(g as u64)).collect();
    let mut refs = Vec::with_capacity(labels.len());
    let mut vals = vec![0.0; labels.len()];
    let mut samples = 0u64;
    let mut spent = Duration::ZERO;
    for i in 0..n {
        let t = ts(i);
        // Values are generated outside the timed part.
        let mut k = 0;
        for c in counters.iter_mut() {
            vals[k] = c.next();
            k += 1;
        }
        for h in hists.iter_mut() {
            for v in h.next() {
                vals[k] = v;
                k += 1;
            }
        }
        for v in &mut vals[k..] {
            *v = 1.0;
        }
        let start = Instant::now();
        let mut app = db.appender();
        if i == 0 {
            for (l, &v) in labels.iter().zip(&vals) {
                refs.push(app.append(l, t, v).expect("append"));
            }
        } else {
            for (r, &v) in refs.iter().zip(&vals) {
                app.append_ref(*r, t, v).expect("append");
            }
        }
        app.commit().expect("commit");
        spent += start.elapsed();
        samples += labels.len() as u64;
    }
    (samples, spent)
}

/// Bytes and samples of the blocks (directories with a `meta.json`) in `dir`.
fn blocks_in(dir: &Path) -> (u64, u64, usize) {
    let (mut bytes, mut samples, mut n) = (0, 0, 0);
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        let Ok(meta) = std::fs::read(p.join("meta.json")) else {
            continue;
        };
        let meta: Json = serde_json::from_slice(&meta).unwrap_or(Json::Null);
        samples += meta["stats"]["numSamples"].as_u64().unwrap_or(0);
        bytes += dir_size(&p);
        n += 1;
    }
    (bytes, samples, n)
}

fn dir_size(p: &Path) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
        let Ok(m) = e.metadata() else { continue };
        n += if m.is_dir() {
            dir_size(&e.path())
        } else {
            m.len()
        };
    }
    n
}

fn have(bin: &str) -> bool {
    Command::new(bin)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Prometheus server; killed when dropped.
struct Prom {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_prometheus(data: &Path, work: &Path) -> Result<Prom, String> {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let cfg = work.join("prometheus.yml");
    std::fs::write(&cfg, "scrape_configs: []\n").map_err(|e| e.to_string())?;
    let log = work.join("prometheus.log");
    let logf = std::fs::File::create(&log).map_err(|e| e.to_string())?;
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(logf)
        .spawn()
        .map_err(|e| e.to_string())?;
    let p = Prom { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(180);
    while Instant::now() < deadline {
        if let Ok((200, _)) = http_get(port, "/-/ready") {
            return Ok(p);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("prometheus not ready; see {}", p.log.display()))
}

fn http_get(port: u16, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let status = std::str::from_utf8(&buf[..split])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf[split + 4..].to_vec()))
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn secs(t: i64) -> String {
    format!("{}.{:03}", t / 1000, t % 1000)
}

/// Result series by canonical label string: points (ms, value).
type Canon = BTreeMap<String, Vec<(i64, f64)>>;

fn canon_labels(pairs: impl Iterator<Item = (String, String)>) -> String {
    let mut v: Vec<(String, String)> = pairs.collect();
    v.sort();
    v.iter()
        .map(|(k, x)| format!("{k}={x:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_val(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        x => x.parse().unwrap_or(f64::NAN),
    }
}

fn canon_prom(data: &Json) -> Canon {
    let mut out = Canon::new();
    let pt = |p: &Json| {
        (
            (p[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64,
            parse_val(p[1].as_str().unwrap_or("")),
        )
    };
    match data["resultType"].as_str() {
        Some("scalar") => {
            out.insert(String::new(), vec![pt(&data["result"])]);
        }
        _ => {
            for s in data["result"].as_array().into_iter().flatten() {
                let key = canon_labels(
                    s["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string())),
                );
                let pts = if let Some(vs) = s["values"].as_array() {
                    vs.iter().map(pt).collect()
                } else {
                    vec![pt(&s["value"])]
                };
                out.insert(key, pts);
            }
        }
    }
    out
}

fn canon_wasmon(v: &Value) -> Canon {
    let key = |l: &Labels| canon_labels(l.iter().map(|l| (l.name.clone(), l.value.clone())));
    let mut out = Canon::new();
    match v {
        Value::Scalar { t, v } => {
            out.insert(String::new(), vec![(*t, *v)]);
        }
        Value::Vector(s) => {
            for x in s {
                out.insert(key(&x.labels), vec![(x.t, x.v)]);
            }
        }
        Value::Matrix(m) => {
            for x in m {
                out.insert(key(&x.labels), x.points.clone());
            }
        }
        Value::String { .. } => {}
    }
    out
}

/// Same series, same timestamps, values within a relative 1e-9.
fn same(a: &Canon, b: &Canon) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} series vs {}", a.len(), b.len()));
    }
    for ((ka, pa), (kb, pb)) in a.iter().zip(b) {
        if ka != kb {
            return Err(format!("labels {ka} vs {kb}"));
        }
        if pa.len() != pb.len() {
            return Err(format!("{ka}: {} points vs {}", pa.len(), pb.len()));
        }
        for (x, y) in pa.iter().zip(pb) {
            let close = (x.1.is_nan() && y.1.is_nan())
                || x.1 == y.1
                || (x.1 - y.1).abs() <= 1e-9 * x.1.abs().max(y.1.abs());
            if x.0 != y.0 || !close {
                return Err(format!("{ka}: {x:?} vs {y:?}"));
            }
        }
    }
    Ok(())
}

struct PromRun {
    exec_ms: f64,
    wall_ms: f64,
    samples: u64,
    result: Canon,
}

fn prom_query(port: u16, q: &str, range: bool) -> Result<PromRun, String> {
    let end = T0 + HOUR_MS;
    let path = if range {
        format!(
            "/api/v1/query_range?query={}&start={}&end={}&step=15&stats=all",
            enc(q),
            secs(end - HOUR_MS),
            secs(end)
        )
    } else {
        format!(
            "/api/v1/query?query={}&time={}&stats=all",
            enc(q),
            secs(end)
        )
    };
    let t = Instant::now();
    let (status, body) = http_get(port, &path).map_err(|e| e.to_string())?;
    let wall_ms = t.elapsed().as_secs_f64() * 1e3;
    let j: Json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("HTTP {status}: {}", j["error"]));
    }
    let st = &j["data"]["stats"];
    Ok(PromRun {
        exec_ms: st["timings"]["execTotalTime"].as_f64().unwrap_or(f64::NAN) * 1e3,
        wall_ms,
        samples: st["samples"]["totalQueryableSamples"].as_u64().unwrap_or(0),
        result: canon_prom(&j["data"]),
    })
}

fn main() {
    let quick = std::env::var_os("QUERY_COMPARE_QUICK").is_some();
    let d = Data {
        paths: if quick { 2 } else { 25 },
    };
    let with_prom = have("prometheus") && have("promtool");
    let work = tempfile::tempdir().expect("temp dir");
    println!(
        "# wasmon vs Prometheus: {} series, 1h (+5m before) at 15s ({} samples each), data in {}",
        d.series(),
        steps(),
        work.path().display()
    );
    if !with_prom {
        println!(
            "prometheus and/or promtool not found on PATH: printing wasmon's side only \
             (install Debian's prometheus package for the comparison)"
        );
    }

    // Prometheus: OpenMetrics file -> promtool block.
    let prom_dir = work.path().join("prometheus");
    let mut prom_import = None;
    if with_prom {
        let om = work.path().join("data.om");
        let t = Instant::now();
        let samples = write_openmetrics(&d, &om).expect("write OpenMetrics");
        let om_bytes = std::fs::metadata(&om).map(|m| m.len()).unwrap_or(0);
        println!(
            "OpenMetrics file: {samples} samples, {:.1} MB, written in {:.1}s",
            om_bytes as f64 / 1e6,
            t.elapsed().as_secs_f64()
        );
        std::fs::create_dir_all(&prom_dir).unwrap();
        let t = Instant::now();
        let out = Command::new("promtool")
            .args(["tsdb", "create-blocks-from", "openmetrics", "-q"])
            .arg(&om)
            .arg(&prom_dir)
            .output()
            .expect("run promtool");
        let el = t.elapsed();
        if !out.status.success() {
            panic!(
                "promtool failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let _ = std::fs::remove_file(&om);
        prom_import = Some((samples, el));
    }

    // wasmon: append + compact.
    let wdir = work.path().join("wasmon");
    let db = Db::open(&wdir, Options::default()).expect("open db");
    let (wsamples, append_time) = load_wasmon(&d, &db);
    {
        // One sample 3 h after the data makes the head span the next block
        // window too, so that compaction persists the whole hour.
        let mut app = db.appender();
        let l = Labels::from_pairs([("__name__", "wasmon_bench_compaction_marker")]);
        app.append(&l, T0 + 3 * HOUR_MS, 1.0).unwrap();
        app.commit().unwrap();
    }
    let t = Instant::now();
    db.compact().expect("compact");
    let compact_time = t.elapsed();
    let (wbytes, wblock_samples, wblocks) = blocks_in(&wdir);
    let st = db.stats();

    println!("\n## ingestion");
    println!(
        "wasmon:     {wsamples} samples appended in {:.2}s = {:.2}M samples/s \
         (one commit per 15s step, series refs cached), compaction {:.2}s",
        append_time.as_secs_f64(),
        wsamples as f64 / append_time.as_secs_f64() / 1e6,
        compact_time.as_secs_f64()
    );
    if let Some((s, el)) = prom_import {
        println!(
            "prometheus: promtool create-blocks-from openmetrics: {s} samples in {:.2}s = {:.2}M samples/s \
             (parses text, not comparable one to one)",
            el.as_secs_f64(),
            s as f64 / el.as_secs_f64() / 1e6
        );
    }
    println!("\n## bytes per sample on disk");
    println!(
        "wasmon:     {wblocks} block(s), {wbytes} bytes, {wblock_samples} samples = {:.3} bytes/sample \
         (WAL after checkpoint {} bytes, not counted)",
        wbytes as f64 / wblock_samples.max(1) as f64,
        st.wal_bytes
    );
    if with_prom {
        let (pbytes, psamples, pblocks) = blocks_in(&prom_dir);
        println!(
            "prometheus: {pblocks} block(s), {pbytes} bytes, {psamples} samples = {:.3} bytes/sample",
            pbytes as f64 / psamples.max(1) as f64
        );
    }

    let prom = if with_prom {
        match start_prometheus(&prom_dir, work.path()) {
            Ok(p) => Some(p),
            Err(e) => {
                println!("could not start prometheus: {e}");
                None
            }
        }
    } else {
        None
    };

    println!("\n## queries (best of 3 runs after a warm-up; range = 1h at step 15s)");
    println!(
        "{:<84} {:>7} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>6}",
        "query",
        "kind",
        "wasmon ms",
        "+json ms",
        "prom ms",
        "prom wall",
        "w Msmp/s",
        "p Msmp/s",
        "equal"
    );
    let engine = Engine::default();
    let end = T0 + HOUR_MS;
    for q in QUERIES {
        let expr = parse(q).expect("parse");
        for range in [false, true] {
            let run = || -> QueryResult {
                if range {
                    engine.range(&db, &expr, end - HOUR_MS, end, STEP_MS)
                } else {
                    engine.instant(&db, &expr, end)
                }
                .expect("wasmon query")
            };
            let mut res = run();
            let mut best = f64::MAX;
            let mut best_json = f64::MAX;
            for _ in 0..3 {
                let t = Instant::now();
                res = run();
                let e = t.elapsed().as_secs_f64() * 1e3;
                let body = serde_json::to_vec(&wasmon::web::query::value_json(&res.value)).unwrap();
                std::hint::black_box(body);
                best = best.min(e);
                best_json = best_json.min(t.elapsed().as_secs_f64() * 1e3);
            }
            let w_rate = res.stats.samples_scanned as f64 / best / 1e3;
            let wc = canon_wasmon(&res.value);
            let (pm, pw, pr, eq) = match &prom {
                Some(p) => {
                    let mut bestp: Option<PromRun> = None;
                    let mut failure = None;
                    for k in 0..4 {
                        match prom_query(p.port, q, range) {
                            Ok(r) => {
                                if k > 0 && bestp.as_ref().is_none_or(|b| r.exec_ms < b.exec_ms) {
                                    bestp = Some(r);
                                }
                            }
                            Err(e) => {
                                failure = Some(e);
                                break;
                            }
                        }
                    }
                    match (bestp, failure) {
                        (Some(r), None) => {
                            let eq = match same(&wc, &r.result) {
                                Ok(()) => "yes".to_string(),
                                Err(e) => {
                                    println!("  differs: {e}");
                                    "NO".to_string()
                                }
                            };
                            (
                                format!("{:.1}", r.exec_ms),
                                format!("{:.1}", r.wall_ms),
                                format!("{:.1}", r.samples as f64 / r.exec_ms / 1e3),
                                eq,
                            )
                        }
                        (_, e) => {
                            println!("  prometheus failed: {}", e.unwrap_or_default());
                            ("-".into(), "-".into(), "-".into(), "-".into())
                        }
                    }
                }
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            println!(
                "{:<84} {:>7} {:>10.1} {:>10.1} {:>10} {:>10} {:>10.1} {:>10} {:>6}",
                q,
                if range { "range" } else { "instant" },
                best,
                best_json,
                pm,
                pw,
                w_rate,
                pr,
                eq
            );
        }
    }
    println!(
        "\nwasmon ms: Engine::{{instant,range}} on the Db (selection + evaluation); +json: plus \
         rendering the API's JSON. prom ms: execTotalTime from stats=all; prom wall: the HTTP \
         round trip incl. JSON. Msmp/s: each engine's own sample count (wasmon samples_scanned, \
         Prometheus totalQueryableSamples) per second of its own time."
    );
    drop(prom);
}
