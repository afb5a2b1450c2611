//! PromQL: parse with promql-parser, then evaluate (instant and range) on a
//! small in-memory store with a tight timeout and sample limit, so a slow
//! or huge query is an error, not a hang. Errors are fine; panics are bugs.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use wasmon::model::Labels;
use wasmon::promql::{parse, Engine, EngineOpts};
use wasmon::storage::MemStorage;

fn store() -> &'static MemStorage {
    static S: OnceLock<MemStorage> = OnceLock::new();
    S.get_or_init(|| {
        let s = MemStorage::new();
        for (i, (name, code)) in [
            ("http_requests_total", "200"),
            ("http_requests_total", "500"),
            ("up", ""),
            ("node_memory_bytes", ""),
        ]
        .iter()
        .enumerate()
        {
            let mut pairs = vec![("__name__", *name), ("job", "app")];
            if !code.is_empty() {
                pairs.push(("code", code));
            }
            let l = Labels::from_pairs(pairs);
            for t in 0..60i64 {
                let v = match i {
                    3 => f64::NAN,
                    _ => (t * (i as i64 + 1)) as f64,
                };
                s.append(l.clone(), t * 15_000, v);
            }
        }
        // Classic histogram buckets.
        for le in ["0.1", "1", "+Inf"] {
            let l = Labels::from_pairs([("__name__", "req_seconds_bucket"), ("le", le)]);
            for t in 0..60i64 {
                s.append(l.clone(), t * 15_000, t as f64);
            }
        }
        s
    })
}

fn engine() -> Engine {
    Engine::new(EngineOpts {
        lookback_delta_ms: 5 * 60 * 1000,
        max_samples: 200_000,
        timeout: Duration::from_millis(500),
        default_subquery_step_ms: 15_000,
        stepwise_range: false,
    })
}

fuzz_target!(init: {
    // libfuzzer-sys' panic hook aborts on every panic, even one wasmon
    // catches on purpose (promql::parse_query turns promql-parser's panics on
    // out-of-range durations into errors). The default hook lets that catch
    // work; a panic that escapes the target still aborts the run, because
    // fuzz_target! runs the body under catch_unwind and aborts on a panic.
    drop(std::panic::take_hook());
}, |data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if q.len() > 2048 {
        return;
    }
    let Ok(expr) = parse(q) else {
        return;
    };
    let e = engine();
    let _ = e.instant(store(), &expr, 600_000);
    let _ = e.range(store(), &expr, 0, 900_000, 60_000);
});
