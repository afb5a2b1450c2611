//! Exposition parser benchmark: prints figures, asserts nothing about speed.
//!
//! Run with `cargo bench -p wasmon --bench textparse`. Measures parse
//! throughput (MB/s, samples/s, ns/sample) for:
//! - a generated page shaped like a busy service's `/metrics`: counters and
//!   gauges with 5-8 labels, histograms with 10 buckets + `+Inf`, `_sum`,
//!   `_count`; about 10k samples, in both formats;
//! - the largest page of Prometheus' textparse testdata (a real Go
//!   process's 237 metric families).
//!
//! Text-format pages are also read by `parse_strict` (expfmt's rules, the
//! parser ingestion used before it followed Prometheus' scraper; now
//! `wasmon check metrics`), streamed: the before/after of that change in
//! one run.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use wasmon::textparse::{parse, parse_each, parse_strict, Format};

/// A small deterministic generator, so every run parses the same page.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE"];
const CODES: &[&str] = &["200", "201", "204", "301", "400", "404", "500", "503"];
const HANDLERS: &[&str] = &[
    "/api/v1/query",
    "/api/v1/series",
    "/api/v1/labels",
    "/metrics",
    "/-/healthy",
    "/login",
];
const REGIONS: &[&str] = &["eu-west-1", "us-east-1", "ap-south-1"];
const BUCKETS: &[&str] = &[
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
];

/// The same families and series in either format: 20 counter families and
/// 20 gauge families of 100 series, 10 histogram families of 45 series.
fn generate(format: Format) -> (String, usize) {
    let om = format == Format::OpenMetrics;
    let mut rng = Lcg(42);
    let mut out = String::new();
    let mut samples = 0;
    let common = |rng: &mut Lcg, i: usize| {
        format!(
            "instance=\"10.0.{}.{}:9100\",job=\"api-server\",region=\"{}\",zone=\"{}{}\"",
            i / 250,
            i % 250,
            rng.pick(REGIONS),
            rng.pick(REGIONS),
            rng.pick(&["a", "b", "c"])
        )
    };
    for f in 0..20 {
        let family = format!("app_http_requests_{f}");
        let sample = format!("{family}_total");
        let (meta_name, help) = if om {
            (&family, "Requests served.")
        } else {
            (&sample, "Requests served.")
        };
        writeln!(out, "# HELP {meta_name} {help}\n# TYPE {meta_name} counter").unwrap();
        for i in 0..100 {
            let labels = format!(
                "{},method=\"{}\",code=\"{}\",handler=\"{}\"",
                common(&mut rng, i),
                rng.pick(METHODS),
                rng.pick(CODES),
                rng.pick(HANDLERS)
            );
            writeln!(out, "{sample}{{{labels}}} {}", rng.next() % 10_000_000).unwrap();
            samples += 1;
        }
    }
    for f in 0..20 {
        let family = format!("app_queue_depth_{f}");
        writeln!(out, "# HELP {family} Items waiting.\n# TYPE {family} gauge").unwrap();
        for i in 0..100 {
            let labels = format!("{},queue=\"q{}\"", common(&mut rng, i), i % 7);
            writeln!(
                out,
                "{family}{{{labels}}} {}.{:03}",
                rng.next() % 5000,
                rng.next() % 1000
            )
            .unwrap();
            samples += 1;
        }
    }
    for f in 0..10 {
        let family = format!("app_request_duration_seconds_{f}");
        writeln!(
            out,
            "# HELP {family} Request latency.\n# TYPE {family} histogram"
        )
        .unwrap();
        for i in 0..45 {
            let labels = format!(
                "{},method=\"{}\",handler=\"{}\"",
                common(&mut rng, i),
                rng.pick(METHODS),
                rng.pick(HANDLERS)
            );
            let mut count = 0;
            for le in BUCKETS.iter().chain(&["+Inf"]) {
                count += rng.next() % 100;
                writeln!(out, "{family}_bucket{{{labels},le=\"{le}\"}} {count}").unwrap();
            }
            writeln!(
                out,
                "{family}_sum{{{labels}}} {}.{:06}",
                count / 3,
                rng.next() % 1_000_000
            )
            .unwrap();
            writeln!(out, "{family}_count{{{labels}}} {count}").unwrap();
            samples += BUCKETS.len() + 3;
        }
    }
    if om {
        out.push_str("# EOF\n");
    }
    (out, samples)
}

/// CPU time of this thread (`CLOCK_THREAD_CPUTIME_ID`): unlike wall time it
/// does not count the time other processes on a busy machine take the core
/// away, so figures stay comparable between runs.
#[cfg(target_os = "linux")]
fn thread_cpu() -> Option<Duration> {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit time_t on the
    // Linux targets this runs on); the call only writes into it.
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu() -> Option<Duration> {
    None
}

/// The two ways of parsing a page: collected into memory (`parse`, a label
/// set allocated per sample) and streamed (`parse_each`, as the scrape loop
/// does: each sample's labels borrowed from the parser's reused builder).
#[derive(Clone, Copy)]
enum Mode {
    Collect,
    Stream,
    /// `parse_strict` (text format only), collected.
    Strict,
}

fn run(body: &[u8], format: Format, mode: Mode) -> usize {
    match mode {
        Mode::Collect => parse(body, format).unwrap().samples.len(),
        Mode::Strict => parse_strict(body).unwrap().samples.len(),
        Mode::Stream => {
            let mut n = 0usize;
            parse_each(body, format, &mut |s| {
                n += black_box(s.labels.len()).min(1);
                Ok(())
            })
            .unwrap();
            n
        }
    }
}

/// Parses `body` repeatedly for about `budget` and prints the figures of the
/// median run (by thread CPU time when available, else wall time).
fn measure(what: &str, body: &[u8], format: Format, mode: Mode, budget: Duration) {
    let samples = parse(body, format)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .samples
        .len();
    for _ in 0..3 {
        black_box(run(black_box(body), format, mode));
    }
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    let start = Instant::now();
    while start.elapsed() < budget || wall.len() < 5 {
        let (c, t) = (thread_cpu(), Instant::now());
        black_box(run(black_box(body), format, mode));
        wall.push(t.elapsed());
        if let (Some(c0), Some(c1)) = (c, thread_cpu()) {
            cpu.push(c1.saturating_sub(c0));
        }
    }
    wall.sort();
    cpu.sort();
    let clock = if cpu.len() == wall.len() {
        "cpu"
    } else {
        "wall"
    };
    let runs = if clock == "cpu" { &cpu } else { &wall };
    let median = runs[runs.len() / 2].as_secs_f64();
    let mode = match mode {
        Mode::Collect => "collect",
        Mode::Stream => "stream",
        Mode::Strict => "strict",
    };
    println!(
        "{what:<46} {mode:<7} {:>7.1} KiB {samples:>5} samples | {clock} median {:>7.3} ms: {:>6.1} MB/s {:>5.2} M samples/s {:>5.0} ns/sample | wall median {:.3} ms, best {:.3} ms, {} runs",
        body.len() as f64 / 1024.0,
        median * 1e3,
        body.len() as f64 / median / 1e6,
        samples as f64 / median / 1e6,
        median * 1e9 / samples as f64,
        wall[wall.len() / 2].as_secs_f64() * 1e3,
        wall[0].as_secs_f64() * 1e3,
        wall.len(),
    );
}

fn main() {
    let budget = Duration::from_secs_f64(
        std::env::var("TEXTPARSE_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2.0),
    );
    for format in [Format::PromText, Format::OpenMetrics] {
        let (page, n) = generate(format);
        let what = format!("generated page ({format:?}, {n} samples)");
        let modes: &[Mode] = match format {
            Format::PromText => &[Mode::Collect, Mode::Stream, Mode::Strict],
            Format::OpenMetrics => &[Mode::Collect, Mode::Stream],
        };
        for &mode in modes {
            measure(&what, page.as_bytes(), format, mode, budget);
        }
    }
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join(
        "../../shared/conformance/prometheus/model/textparse/testdata/alltypes.237mfs.prom.txt",
    );
    match std::fs::read(&testdata) {
        Ok(body) => {
            for mode in [Mode::Collect, Mode::Stream, Mode::Strict] {
                measure(
                    "testdata alltypes.237mfs.prom.txt (PromText)",
                    &body,
                    Format::PromText,
                    mode,
                    budget,
                );
            }
        }
        Err(e) => println!("skipping {}: {e}", testdata.display()),
    }
}
