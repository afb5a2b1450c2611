//! Both exposition parsers on arbitrary bytes: an error is fine, a panic is
//! a bug. The first byte picks the format so one corpus serves both.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmon::textparse::{parse, Format};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let format = if sel & 1 == 0 {
        Format::PromText
    } else {
        Format::OpenMetrics
    };
    let _ = parse(body, format);
});
