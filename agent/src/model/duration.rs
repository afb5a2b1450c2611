//! Prometheus durations (`model.Duration` in prometheus/common): the one
//! parser and printer of `1h30m`, `2d`, `1y`, `500ms` for rule files,
//! alerting configs, the query API and PromQL range checks.
//!
//! Syntax: `0`, or one or more `<digits><unit>` with units `y` (365d), `w`,
//! `d`, `h`, `m`, `s`, `ms`, each at most once and largest first; no sign,
//! no fraction. The value must fit Go's `time.Duration` (int64
//! nanoseconds, about 292 years), else it is out of range. Printed as
//! Prometheus' `Duration.String()` does: largest units first, years and
//! weeks only when nothing smaller remains (`16d`, not `2w2d`), `0s` for
//! zero.
//!
//! Go's `time.Duration.String()` (`1h30m0s`) is another format and lives
//! elsewhere.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a Prometheus duration, in Prometheus' words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    /// Over Go's `time.Duration` range (int64 nanoseconds).
    #[error("duration out of range")]
    OutOfRange,
}

const MS_PER_DAY: u64 = 86_400_000;

/// Units, largest first, in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * MS_PER_DAY),
    ("w", 7 * MS_PER_DAY),
    ("d", MS_PER_DAY),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// The largest duration Go's `time.Duration` holds, in whole milliseconds.
const MAX_MS: u64 = i64::MAX as u64 / 1_000_000;

/// Parses a Prometheus duration (see the module doc).
pub fn parse(s: &str) -> Result<std::time::Duration, DurationError> {
    match s {
        "0" => return Ok(std::time::Duration::ZERO),
        "" => return Err(DurationError::Empty),
        _ => {}
    }
    let invalid = || DurationError::Invalid(s.to_owned());
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let n: u64 = match rest[..digits].parse() {
            Ok(n) => n,
            // Only too many digits fail here.
            Err(_) => return Err(DurationError::OutOfRange),
        };
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| !b.is_ascii_digit()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        // Units in order and each once: look only past the last one.
        let idx = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(invalid)?
            + next_unit;
        next_unit = idx + 1;
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .filter(|&t| t <= MAX_MS)
            .ok_or(DurationError::OutOfRange)?;
    }
    Ok(std::time::Duration::from_millis(total))
}

/// Prints `d` as Prometheus' `model.Duration.String()` (milliseconds and
/// up; anything finer is dropped).
pub fn format(d: std::time::Duration) -> String {
    let mut ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (i, &(unit, mult)) in UNITS.iter().enumerate() {
        // Years and weeks only when exact: `90d` reads better than `12w6d`.
        let exact_only = i < 2;
        if exact_only && ms % mult != 0 {
            continue;
        }
        if ms >= mult {
            out.push_str(&(ms / mult).to_string());
            out.push_str(unit);
            ms %= mult;
        }
    }
    out
}

/// A duration read and written in Prometheus' syntax (configs, rule files,
/// API values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn parse(s: &str) -> Result<Duration, DurationError> {
        parse(s).map(Duration)
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }

    pub fn to_chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Duration {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Duration, DurationError> {
        Duration::parse(s)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        Duration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// For a `std::time::Duration` field written in Prometheus' syntax:
/// `#[serde(with = "crate::model::duration::serde_std")]`.
pub mod serde_std {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        super::Duration::deserialize(d).map(|d| d.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;
    const W: u64 = 7 * D;
    const Y: u64 = 365 * D;

    /// prometheus/common model/time_test.go `TestParseDuration` and
    /// `TestDuration_String`: input, milliseconds, printed form.
    #[test]
    fn parse_and_print_like_prometheus() {
        for (input, ms, printed) in [
            ("0", 0, "0s"),
            ("0w", 0, "0s"),
            ("0s", 0, "0s"),
            ("324ms", 324, "324ms"),
            ("3s", 3 * S, "3s"),
            ("5m", 5 * M, "5m"),
            ("1h", H, "1h"),
            ("4d", 4 * D, "4d"),
            ("4d1h", 4 * D + H, "4d1h"),
            ("14d", 14 * D, "2w"),
            ("3w", 3 * W, "3w"),
            ("2w2d", 16 * D, "16d"),
            ("3w2d1h", 3 * W + 2 * D + H, "23d1h"),
            ("10y", 10 * Y, "10y"),
            (
                "1y2w3d4h5m6s7ms",
                Y + 2 * W + 3 * D + 4 * H + 5 * M + 6 * S + 7,
                "382d4h5m6s7ms",
            ),
            ("1h30m", H + 30 * M, "1h30m"),
            ("90m", 90 * M, "1h30m"),
            ("1500ms", 1500, "1s500ms"),
            ("100ms", 100, "100ms"),
        ] {
            let d = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(d.as_millis() as u64, ms, "{input}");
            assert_eq!(format(d), printed, "{input}");
            // What is printed parses back to the same value.
            assert_eq!(parse(printed), Ok(d), "{printed}");
        }
    }

    #[test]
    fn invalid_durations() {
        for input in [
            "1", "5", "1.5h", "1d1d", "1h1d", "1m1h", "-1m", "m", "1x", "5 m", "1m ", " 1m",
            "1ms1s", "1s1s", "1hh", "0x10s",
        ] {
            assert_eq!(
                parse(input),
                Err(DurationError::Invalid(input.into())),
                "{input}"
            );
        }
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(
            parse("1d1d").unwrap_err().to_string(),
            "not a valid duration string: \"1d1d\""
        );
    }

    #[test]
    fn overflow_is_an_error() {
        // Go's time.Duration holds up to 2^63-1 ns: 106751d23h47m16s854ms.
        assert_eq!(
            parse("106751d23h47m16s854ms").map(|d| d.as_millis()),
            Ok(9_223_372_036_854)
        );
        for input in [
            "106751d23h47m16s855ms",
            "293y",
            "99999999999999y",
            "18446744073709551616ms",
            "99999999999999999999999s",
        ] {
            assert_eq!(parse(input), Err(DurationError::OutOfRange), "{input}");
        }
    }

    #[test]
    fn serde_in_configs() {
        #[derive(Deserialize, Serialize)]
        struct C {
            #[serde(with = "serde_std")]
            a: std::time::Duration,
            b: Duration,
        }
        let c: C = toml::from_str("a = \"2w2d\"\nb = \"90s\"").unwrap();
        assert_eq!(c.a, std::time::Duration::from_millis(16 * D));
        assert_eq!(c.b, Duration(std::time::Duration::from_secs(90)));
        assert_eq!(toml::to_string(&c).unwrap(), "a = \"16d\"\nb = \"1m30s\"\n");
        let e = toml::from_str::<C>("a = \"1d1d\"\nb = \"1s\"")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a valid duration string: \"1d1d\""), "{e}");
    }
}
