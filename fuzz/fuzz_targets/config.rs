//! The agent's TOML config and Prometheus rule files (YAML): arbitrary text
//! must give an error naming what and where, never a panic. The first byte
//! picks which loader (and for rule files, which options).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmon::config::Config;
use wasmon::rules::rulefmt::{self, ParseOpts};

fuzz_target!(|data: &[u8]| {
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
