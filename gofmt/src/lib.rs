//! Go's spellings of numbers and durations, in one place.
//!
//! Prometheus and Alertmanager are Go programs: the numbers in their API
//! answers, template output and tool messages are spelled by Go's
//! `strconv.FormatFloat` and `time.Duration.String()`, and wasmon must
//! spell them the same way to answer the same bytes. No dependencies, so
//! that the template engine and the guest SDK (built for wasm) can use it.
//!
//! The digits come from Rust's float formatting, which like Go's gives the
//! shortest round-tripping digits without a precision and correctly
//! rounded ones with one; this crate lays them out the way Go does.

pub mod time;

/// Go's `strconv.FormatFloat(v, fmt, prec, 64)` for the formats `'e'`,
/// `'E'`, `'f'`, `'g'` and `'G'`; a negative `prec` is Go's `-1`, the
/// fewest digits that read back as `v`. Any other `fmt` gives Go's
/// `%` + fmt spelling of a bad verb.
pub fn format_float(v: f64, fmt: char, prec: i32) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    let prec = usize::try_from(prec).ok();
    match fmt {
        'e' | 'E' => format_e(v, prec, fmt),
        'f' => match prec {
            // Rust's Display is Go's 'f' with -1: shortest digits, never an
            // exponent.
            None => format!("{v}"),
            Some(p) => format!("{v:.p$}"),
        },
        'g' | 'G' => format_g(v, prec, if fmt == 'g' { 'e' } else { 'E' }),
        other => format!("%{other}"),
    }
}

/// Go's `fmt` `%v` of a float64: `strconv.FormatFloat(v, 'g', -1, 64)`.
pub fn format_float_v(v: f64) -> String {
    format_float(v, 'g', -1)
}

/// Decimal digits of `|v|` (no trailing zeros, at least one digit) and the
/// decimal point position: `|v| = 0.DIGITS × 10^dp`. `sig` is the number of
/// significant digits to round to, `None` the shortest round-trip.
fn digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    let a = v.abs();
    let s = match sig {
        None => format!("{a:e}"),
        Some(n) => format!("{a:.*e}", n.max(1) - 1),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    if d == b"0" {
        // Zero: Go's decimal has no digits and dp 0; one '0' prints the same.
        return (d, 1);
    }
    (d, exp + 1)
}

/// `d.ddd` + `e±XX` with `frac` digits after the point (zeros padded).
fn push_e(out: &mut String, d: &[u8], dp: i32, frac: usize, e: char) {
    out.push(d[0] as char);
    if frac > 0 {
        out.push('.');
        for i in 1..=frac {
            out.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    }
    let x = if d == b"0" { 0 } else { dp - 1 };
    out.push(e);
    out.push(if x < 0 { '-' } else { '+' });
    let x = x.unsigned_abs();
    if x < 10 {
        out.push('0');
    }
    out.push_str(&x.to_string());
}

/// Fixed notation with `frac` digits after the point (zeros padded).
fn push_f(out: &mut String, d: &[u8], dp: i32, frac: usize) {
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(*d.get(i).unwrap_or(&b'0') as char);
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac as i32 {
            let j = dp + i;
            out.push(if j < 0 {
                '0'
            } else {
                *d.get(j as usize).unwrap_or(&b'0') as char
            });
        }
    }
}

fn format_e(v: f64, prec: Option<usize>, e: char) -> String {
    let (d, dp) = digits(v, prec.map(|p| p + 1));
    let frac = prec.unwrap_or(d.len() - 1);
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    push_e(&mut out, &d, dp, frac, e);
    out
}

/// Go's `%g`: `%e` when the exponent is < -4 or >= the precision (6 for the
/// shortest form), else `%f`; no trailing zeros either way.
fn format_g(v: f64, prec: Option<usize>, e: char) -> String {
    let (d, dp) = digits(v, prec.map(|p| p.max(1)));
    let nd = d.len() as i32;
    let shortest = prec.is_none();
    let mut p = prec.map_or(nd, |p| p.max(1) as i32);
    let mut eprec = p;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    if shortest {
        eprec = 6;
    }
    let exp = dp - 1;
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    if d != b"0" && (exp < -4 || exp >= eprec) {
        p = p.min(nd);
        push_e(&mut out, &d, dp, (p - 1).max(0) as usize, e);
        return out;
    }
    if p > dp {
        p = nd;
    }
    push_f(&mut out, &d, dp, (p - dp).max(0) as usize);
    out
}

/// Go's `time.Duration(nanos).String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub fn format_duration(nanos: i64) -> String {
    let mut u = nanos.unsigned_abs();
    let mut out = String::new();
    if nanos < 0 {
        out.push('-');
    }
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        // Below a second: the largest unit under it, with a fraction.
        let (prec, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        push_frac(&mut out, u, prec);
        out.push_str(unit);
        return out;
    }
    let secs_frac = u % 1_000_000_000;
    u /= 1_000_000_000;
    let (h, m, s) = (u / 3600, (u / 60) % 60, u % 60);
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    push_frac(&mut out, s * 1_000_000_000 + secs_frac, 9);
    out.push('s');
    out
}

/// `v / 10^prec` with the fraction's trailing zeros (and a bare point)
/// left out, as Go's `fmtFrac` + `fmtInt`.
fn push_frac(out: &mut String, v: u64, prec: u32) {
    let scale = 10u64.pow(prec);
    out.push_str(&(v / scale).to_string());
    let frac = v % scale;
    if frac != 0 {
        let f = format!("{frac:0w$}", w = prec as usize);
        out.push('.');
        out.push_str(f.trim_end_matches('0'));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected strings from Go 1.22's strconv (`strconv_test.go` ftoatests
    /// and `fmt.Sprint`).
    #[test]
    fn format_float_like_go() {
        let cases: &[(f64, char, i32, &str)] = &[
            (1.0, 'e', 5, "1.00000e+00"),
            (1.0, 'f', 5, "1.00000"),
            (1.0, 'g', 5, "1"),
            (1.0, 'g', -1, "1"),
            (20.0, 'g', -1, "20"),
            (1234567.8, 'g', -1, "1.2345678e+06"),
            (200000.0, 'g', -1, "200000"),
            (2000000.0, 'g', -1, "2e+06"),
            (1e10, 'g', -1, "1e+10"),
            (400.0, 'g', 2, "4e+02"),
            (40.0, 'g', 2, "40"),
            (4.0, 'g', 2, "4"),
            (0.0, 'e', 5, "0.00000e+00"),
            (0.0, 'f', 5, "0.00000"),
            (0.0, 'g', 5, "0"),
            (0.0, 'g', -1, "0"),
            (-1.0, 'e', 5, "-1.00000e+00"),
            (-1.0, 'g', -1, "-1"),
            (12.0, 'e', 5, "1.20000e+01"),
            (123456789.0, 'e', 3, "1.235e+08"),
            (123456789.0, 'f', 3, "123456789.000"),
            (123456789.0, 'g', 3, "1.23e+08"),
            (123456789.0, 'g', -1, "1.23456789e+08"),
            (1e23, 'e', 17, "9.99999999999999916e+22"),
            (1e23, 'f', 17, "99999999999999991611392.00000000000000000"),
            (1e23, 'g', 17, "9.9999999999999992e+22"),
            (1e23, 'e', -1, "1e+23"),
            (1e23, 'f', -1, "100000000000000000000000"),
            (1e23, 'g', -1, "1e+23"),
            (100.0, 'x', -1, "%x"),
            (0.0001, 'g', -1, "0.0001"),
            (0.00001, 'g', -1, "1e-05"),
            (0.000123, 'g', 2, "0.00012"),
            (1234.5678, 'g', 4, "1235"),
            (12345.0, 'g', 4, "1.234e+04"),
            (1.5, 'g', 4, "1.5"),
            (100.0, 'g', 3, "100"),
            (-2.25, 'g', -1, "-2.25"),
            (1.0, 'E', -1, "1E+00"),
            (0.25, 'e', -1, "2.5e-01"),
            (12345.0, 'e', -1, "1.2345e+04"),
            (1e-7, 'f', -1, "0.0000001"),
            (1e21, 'f', -1, "1000000000000000000000"),
            (f64::INFINITY, 'g', -1, "+Inf"),
            (f64::NEG_INFINITY, 'e', 3, "-Inf"),
            (f64::NAN, 'f', 2, "NaN"),
            (-0.0, 'g', -1, "-0"),
            (-0.0, 'e', -1, "-0e+00"),
            (5e-324, 'g', -1, "5e-324"),
            (f64::MAX, 'g', -1, "1.7976931348623157e+308"),
            (0.5, 'f', 0, "0"),
            (1.5, 'f', 0, "2"),
            (3.0, 'g', 0, "3"),
        ];
        for &(v, f, p, want) in cases {
            assert_eq!(
                format_float(v, f, p),
                want,
                "FormatFloat({v:e}, {f:?}, {p})"
            );
        }
        assert_eq!(format_float_v(0.1), "0.1");
    }

    #[test]
    /// Moved from the agent's template module, which had its own copy.
    fn go_float_formatting() {
        assert_eq!(format_float(1.0, 'g', -1), "1");
        assert_eq!(format_float(0.5, 'g', -1), "0.5");
        assert_eq!(format_float(100000.0, 'g', -1), "100000");
        assert_eq!(format_float(1e6, 'g', -1), "1e+06");
        assert_eq!(format_float(123456789.0, 'g', -1), "1.23456789e+08");
        assert_eq!(format_float(0.0001, 'g', -1), "0.0001");
        assert_eq!(format_float(0.00001, 'g', -1), "1e-05");
        assert_eq!(format_float(1234.5678, 'g', 4), "1235");
        assert_eq!(format_float(12345.0, 'g', 4), "1.234e+04");
        assert_eq!(format_float(1.5, 'g', 4), "1.5");
        assert_eq!(format_float(-2.25, 'g', -1), "-2.25");
    }

    /// Go's `time_test.go` durationTests.
    #[test]
    fn format_duration_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * 60_000_000_000 + 5_000_000_000, "4m5s"),
            (4 * 60_000_000_000 + 5_001_000_000, "4m5.001s"),
            (
                5 * 3_600_000_000_000 + 6 * 60_000_000_000 + 7_001_000_000,
                "5h6m7.001s",
            ),
            (8 * 60_000_000_000 + 1, "8m0.000000001s"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (-1_500_000, "-1.5ms"),
            (3_600_000_000_000, "1h0m0s"),
        ];
        for &(ns, want) in cases {
            assert_eq!(format_duration(ns), want, "Duration({ns})");
        }
    }
}
