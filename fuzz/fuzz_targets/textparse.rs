//! The exposition parsers and the lint on arbitrary bytes: an error is
//! fine, a panic is a bug. The first byte picks the reader so one corpus
//! serves all: ingestion's text and OpenMetrics parsers, the strict
//! (expfmt) reading, and `wasmon check metrics`' lint over it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmon::textparse::{lint, parse, parse_strict, Format};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel & 3 {
        0 => drop(parse(body, Format::PromText)),
        1 => drop(parse(body, Format::OpenMetrics)),
        2 => drop(parse_strict(body)),
        _ => drop(lint::lint(body)),
    }
});
