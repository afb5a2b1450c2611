//! Numbers: sample values, timestamps, and the canonical rendering of `le`
//! and `quantile` label values.

/// Parses a sample value.
///
/// The accepted grammar is the one Go's `strconv.ParseFloat` gives Prometheus
/// once it has ruled out hex floats and `_` (which both of its parsers do),
/// and it is also OpenMetrics' `number`: an optional sign, decimal digits with
/// an optional fraction and exponent, or `Inf`/`Infinity`/`NaN` in any case.
/// A signed NaN and a finite literal too large for an f64 (`1e400`) are
/// rejected, as Go does. NaN comes out as Rust's canonical quiet NaN, so
/// scraped data can never carry the staleness-marker bit pattern.
pub(crate) fn parse_float(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.is_empty() {
        return None;
    }
    if let Some(v) = parse_small_int(b) {
        return Some(v);
    }
    let v: f64 = s.parse().ok()?;
    if v.is_nan() {
        // Rust accepts "+nan"/"-nan"; Go and the OpenMetrics ABNF do not.
        return (b[0] != b'+' && b[0] != b'-').then_some(f64::NAN);
    }
    if v.is_infinite() && !b.iter().any(|c| c | 0x20 == b'i') {
        return None; // out of range, not an infinity literal
    }
    Some(v)
}

/// Fast path for the most common values: an optional `-` and up to 15
/// digits, which an f64 represents exactly.
fn parse_small_int(b: &[u8]) -> Option<f64> {
    let (neg, digits) = match b[0] {
        b'-' => (true, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + d as i64;
    }
    let v = n as f64;
    Some(if neg { -v } else { v })
}

/// OpenMetrics' `realnumber`: `[sign] digits [. digits] [e [sign] digits]`
/// with at least one mantissa digit (no Inf/NaN).
pub(crate) fn is_realnumber(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut mantissa_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let frac_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        mantissa_digits += i - frac_start;
    }
    if mantissa_digits == 0 {
        return false;
    }
    if i < b.len() && b[i] | 0x20 == b'e' {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == exp_start {
            return false;
        }
    }
    i == b.len()
}

/// An OpenMetrics timestamp (float seconds): its value in seconds, for
/// ordering checks, and in milliseconds. `None` unless it is a finite
/// `realnumber`.
pub(crate) fn parse_om_timestamp(s: &str) -> Option<(f64, i64)> {
    if !is_realnumber(s) {
        return None;
    }
    let secs = parse_float(s)?;
    Some((secs, seconds_to_ms(s, secs)))
}

/// Seconds to milliseconds, truncating toward zero like Prometheus'
/// `int64(ts * 1000)`, but from the decimal digits when the number has no
/// exponent and a modest integer part, so `1520879607.789` is exactly
/// `1520879607789` whatever the nearest f64 is. Out-of-range values
/// saturate.
fn seconds_to_ms(s: &str, secs: f64) -> i64 {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c | 0x20 == b'e') {
        let (neg, digits) = match b[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let int = int.trim_start_matches('0');
        if int.len() <= 15 {
            let mut ms = if int.is_empty() {
                0
            } else {
                int.parse::<i64>().unwrap_or(0) * 1000
            };
            let fb = frac.as_bytes();
            for (k, scale) in [100, 10, 1].into_iter().enumerate() {
                if let Some(&c) = fb.get(k) {
                    ms += (c - b'0') as i64 * scale;
                }
            }
            return if neg { -ms } else { ms };
        }
    }
    (secs * 1000.0) as i64
}

/// Renders `f` the way Prometheus normalizes `le` and `quantile` values
/// (`labels.FormatOpenMetricsFloat`): Go's shortest `%g` (exponent form when
/// the decimal exponent is < -4 or >= 6, exponent with a sign and at least
/// two digits), plus `.0` when the result has neither `.` nor `e`;
/// `+Inf`/`-Inf`/`NaN` for the non-finite values.
pub(crate) fn format_om_float(f: f64) -> String {
    if f == 0.0 {
        return "0.0".into();
    }
    let mut out = wasmon_gofmt::format_float(f, 'g', -1);
    if f.is_finite() && !out.contains(['.', 'e']) {
        out.push_str(".0");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_go() {
        for (s, want) in [
            ("1", 1.0),
            ("-3e3", -3000.0),
            ("08", 8.0),
            ("1.", 1.0),
            (".5", 0.5),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("inf", f64::INFINITY),
            ("Infinity", f64::INFINITY),
            ("1.7560473e+06", 1_756_047.3),
            ("0000000000000000000000000000000000000000001.2e-1", 0.12),
            ("9223372036854775808", 9_223_372_036_854_775_808.0),
            ("1e-400", 0.0),
        ] {
            assert_eq!(parse_float(s), Some(want), "{s}");
        }
        assert!(parse_float("NaN").unwrap().is_nan());
        assert!(parse_float("nan").unwrap().is_nan());
        assert!(!crate::model::is_stale_nan(parse_float("NaN").unwrap()));
        for s in [
            "", "+nan", "-NaN", "0x1p-3", "0x1", "1_2", "1e400", "-1e400", "blubb", "1e", ".",
            "1 ", "--1", "0b1",
        ] {
            assert_eq!(parse_float(s), None, "{s}");
        }
    }

    #[test]
    fn realnumbers() {
        for s in ["1", "-1", "+1.5", "1.", ".5", "1e5", "1.5E-3", "000"] {
            assert!(is_realnumber(s), "{s}");
        }
        for s in [
            "", "+", ".", "e5", "1e", "1e+", "Inf", "NaN", "1.1.1", "1_2", "0x1",
        ] {
            assert!(!is_realnumber(s), "{s}");
        }
    }

    #[test]
    fn om_timestamps_to_ms() {
        for (s, ms) in [
            ("0", 0),
            ("000", 0),
            ("1.1", 1100),
            ("1520879607.789", 1_520_879_607_789),
            ("-1.1", -1100),
            ("0.0000000001", 0),
            ("1.5e3", 1_500_000),
            ("1.7268398142239082e+09", 1_726_839_814_223),
            ("12345678901234567890.1234567890", i64::MAX),
        ] {
            assert_eq!(parse_om_timestamp(s).map(|t| t.1), Some(ms), "{s}");
        }
        for s in ["NaN", "Inf", "-Inf", "0x1p-3", "1z", "", "1e999"] {
            assert_eq!(parse_om_timestamp(s), None, "{s}");
        }
    }

    #[test]
    fn canonical_le_rendering() {
        for (f, want) in [
            (0.0, "0.0"),
            (-0.0, "0.0"),
            (1.0, "1.0"),
            (-1.0, "-1.0"),
            (0.5, "0.5"),
            (10.0, "10.0"),
            (1e-11, "1e-11"),
            (1e-10, "1e-10"),
            (1e-5, "1e-05"),
            (1e-4, "0.0001"),
            (1.1e-4, "0.00011"),
            (100000.0, "100000.0"),
            (123456.0, "123456.0"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (1e10, "1e+10"),
            (1e23, "1e+23"),
            (1.55555555555552e6, "1.55555555555552e+06"),
            (-0.00099, "-0.00099"),
            (-8.999999999999979e-05, "-8.999999999999979e-05"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
            (1e100, "1e+100"),
        ] {
            assert_eq!(format_om_float(f), want, "{f:e}");
        }
    }
}
