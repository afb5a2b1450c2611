//! PromQL engine benchmark: prints figures, asserts nothing about speed.
//!
//! Run with `cargo bench -p wasmon --bench promql`. Builds ~105k series in
//! `MemStorage` (1h of 15s samples): `http_requests_total{job,instance,path,status}`
//! counters and a classic histogram `request_duration_seconds_bucket` with
//! 11 buckets, then times typical dashboard queries as instant and as 1h
//! range queries (step 15s), printing latency and samples scanned per second.
//! The last queries group the 50k counters into 5,000 groups of 10: there
//! the cost of group identity (hashing and comparing label sets) shows.

use std::time::Instant;

use wasmon::model::Labels;
use wasmon::promql::{parse, Engine, Value};
use wasmon::storage::MemStorage;

const STEP_MS: i64 = 15_000;
const HOUR_MS: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000;

fn build() -> (MemStorage, usize, usize) {
    let s = MemStorage::new();
    let n = (HOUR_MS / STEP_MS) as usize + 1;
    let (mut series, mut samples) = (0, 0);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % 1000) as f64 / 100.0
    };
    for job in 0..5 {
        for inst in 0..50 {
            for path in 0..20 {
                for status in [
                    "200", "201", "204", "301", "304", "400", "401", "404", "500", "503",
                ] {
                    let l = Labels::from_pairs([
                        ("__name__", "http_requests_total".to_string()),
                        ("job", format!("job-{job}")),
                        ("instance", format!("10.0.{inst}.1:9090")),
                        ("path", format!("/api/v1/resource/{path}")),
                        ("status", status.to_string()),
                    ]);
                    let mut v = 0.0;
                    let pts = (0..n)
                        .map(|i| {
                            v += rnd();
                            (T0 + i as i64 * STEP_MS, v)
                        })
                        .collect::<Vec<_>>();
                    samples += pts.len();
                    series += 1;
                    s.insert_series(l, pts);
                }
                let bounds = [
                    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf",
                ];
                let mut cum = vec![0.0; bounds.len()];
                let mut all: Vec<Vec<(i64, f64)>> = vec![Vec::with_capacity(n); bounds.len()];
                for i in 0..n {
                    let obs = rnd();
                    let mut acc = 0.0;
                    for (b, c) in cum.iter_mut().enumerate() {
                        acc += obs * (b as f64 + 1.0) / 10.0;
                        *c += acc;
                        all[b].push((T0 + i as i64 * STEP_MS, *c));
                    }
                }
                for (b, pts) in all.into_iter().enumerate() {
                    let l = Labels::from_pairs([
                        ("__name__", "request_duration_seconds_bucket".to_string()),
                        ("job", format!("job-{job}")),
                        ("instance", format!("10.0.{inst}.1:9090")),
                        ("path", format!("/api/v1/resource/{path}")),
                        ("le", bounds[b].to_string()),
                    ]);
                    samples += pts.len();
                    series += 1;
                    s.insert_series(l, pts);
                }
            }
        }
    }
    (s, series, samples)
}

fn main() {
    let t = Instant::now();
    let (store, series, samples) = build();
    println!(
        "built {series} series, {samples} samples in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let engine = Engine::default();
    let end = T0 + HOUR_MS;
    let queries = [
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        // Many small groups: group identity (hashing and comparing labels)
        // dominates rather than accumulation.
        "count(count by (job, instance, path) (http_requests_total))",
        "sum without (status) (rate(http_requests_total[5m]))",
        "http_requests_total / ignoring (status) group_left sum without (status) (http_requests_total)",
    ];
    println!(
        "{:<90} {:>8} {:>12} {:>14} {:>14}",
        "query", "kind", "latency", "scanned", "samples/s"
    );
    for q in queries {
        let expr = parse(q).unwrap();
        for range in [false, true] {
            let runs = if range { 2 } else { 5 };
            let mut best = f64::MAX;
            let mut scanned = 0;
            let mut out_series = 0;
            for _ in 0..runs {
                let t = Instant::now();
                let r = if range {
                    engine.range(&store, &expr, end - HOUR_MS, end, STEP_MS)
                } else {
                    engine.instant(&store, &expr, end)
                }
                .unwrap();
                best = best.min(t.elapsed().as_secs_f64());
                scanned = r.stats.samples_scanned;
                out_series = match &r.value {
                    Value::Vector(v) => v.len(),
                    Value::Matrix(m) => m.len(),
                    _ => 1,
                };
            }
            println!(
                "{:<90} {:>8} {:>10.1}ms {:>14} {:>12.1}M/s   ({} result series, best of {runs})",
                q,
                if range { "range1h" } else { "instant" },
                best * 1e3,
                scanned,
                scanned as f64 / best / 1e6,
                out_series
            );
        }
    }
}
