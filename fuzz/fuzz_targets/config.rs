//! The agent's TOML config and Prometheus rule files (YAML): arbitrary text
//! must give an error naming what and where, never a panic. The first byte
//! picks which loader (and for rule files, which options).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmon::config::Config;
use wasmon::rules::rulefmt::{self, ParseOpts};

fuzz_target!(init: {
    // libfuzzer-sys' panic hook aborts on every panic, even one wasmon
    // catches on purpose (promql::parse_query turns promql-parser's panics on
    // out-of-range durations into errors). The default hook lets that catch
    // work; a panic that escapes the target still aborts the run, because
    // fuzz_target! runs the body under catch_unwind and aborts on a panic.
    drop(std::panic::take_hook());
}, |data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    match sel % 3 {
        0 => {
            let _ = Config::parse(text, "fuzz.toml");
        }
        n => {
            let opts = ParseOpts {
                ignore_unknown_fields: n == 2,
                legacy_names: sel & 4 != 0,
            };
            let _ = rulefmt::parse(text, "fuzz.yml", &opts);
        }
    }
});
