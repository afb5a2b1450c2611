//! Go's `time.Time` as Alertmanager's templates print it: `String()`
//! (`2006-01-02 15:04:05.999999999 -0700 MST`) and `Format(layout)` with
//! Go's reference-time layouts, from RFC 3339 text (what alerts carry).

use std::fmt::Write as _;

/// An instant with the UTC offset and zone name it is shown in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Time {
    /// Seconds since the Unix epoch.
    pub unix: i64,
    /// Nanoseconds within the second.
    pub nanos: u32,
    /// Seconds east of UTC.
    pub offset: i32,
    /// The zone's abbreviation (`UTC`, or `""`: Go prints the offset then).
    pub zone: String,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of days since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// The layout elements of Go's `time` package, longest first where one
/// is a prefix of another.
const ELEMENTS: &[&str] = &[
    "January",
    "Jan",
    "Monday",
    "Mon",
    "MST",
    "2006",
    "-07:00:00",
    "-07:00",
    "-0700",
    "-07",
    "Z07:00:00",
    "Z07:00",
    "Z0700",
    "Z07",
    "002",
    "__2",
    "_2",
    "01",
    "02",
    "03",
    "04",
    "05",
    "06",
    "15",
    "1",
    "2",
    "3",
    "4",
    "5",
    "PM",
    "pm",
];

impl Time {
    /// Parses RFC 3339 (`2026-11-25T08:00:00.5Z`, `...+02:00`). A `Z`
    /// time is in UTC (`+0000 UTC`); another offset has no zone name.
    pub fn parse_rfc3339(s: &str) -> Option<Time> {
        let b = s.as_bytes();
        let num = |r: std::ops::Range<usize>| -> Option<i64> {
            let t = s.get(r)?;
            t.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| t.parse().ok())
                .flatten()
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let (y, mo, d) = (num(0..4)?, num(5..7)? as u32, num(8..10)? as u32);
        let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        let mut i = 19;
        let mut nanos = 0u32;
        if b[i] == b'.' {
            let start = i + 1;
            i = start;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            let digits = &s[start..i];
            if digits.is_empty() || digits.len() > 9 {
                return None;
            }
            nanos = format!("{digits:0<9}").parse().ok()?;
        }
        let (offset, zone) = match s.get(i..)? {
            "Z" | "z" => (0, "UTC".to_string()),
            o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                let secs = (oh * 3600 + om * 60) as i32;
                (if o.starts_with('-') { -secs } else { secs }, String::new())
            }
            _ => return None,
        };
        let days = days_from_civil(y, mo, d);
        let unix = days * 86_400 + h * 3600 + mi * 60 + sec - i64::from(offset);
        Some(Time {
            unix,
            nanos,
            offset,
            zone,
        })
    }

    /// The same instant in UTC (Go's `t.UTC()`).
    pub fn utc(&self) -> Time {
        Time {
            offset: 0,
            zone: "UTC".into(),
            ..self.clone()
        }
    }

    /// Go's `t.String()`: `2006-01-02 15:04:05.999999999 -0700 MST`.
    pub fn to_go_string(&self) -> String {
        self.format("2006-01-02 15:04:05.999999999 -0700 MST")
    }

    /// Go's `t.Format(layout)`.
    pub fn format(&self, layout: &str) -> String {
        let local = self.unix + i64::from(self.offset);
        let days = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        let (hour, min, sec) = (secs / 3600, (secs / 60) % 60, secs % 60);
        let weekday = (days + 4).rem_euclid(7) as usize;
        let yday = days - days_from_civil(year, 1, 1) + 1;
        let mut out = String::new();
        let mut rest = layout;
        'outer: while !rest.is_empty() {
            // Fractional seconds: `.000`/`,000` (fixed) or `.999` (trimmed),
            // only after a seconds element or at any place Go accepts them.
            if let Some(c @ ('.' | ',')) = rest.chars().next() {
                let tail = &rest[1..];
                let digit = tail.chars().next();
                if matches!(digit, Some('0' | '9')) {
                    let d = digit.unwrap_or('0');
                    let n = tail.chars().take_while(|&x| x == d).count();
                    let after = tail[n..].chars().next();
                    if !after.is_some_and(|a| a.is_ascii_digit()) && n <= 9 {
                        let frac = format!("{:09}", self.nanos);
                        let frac = &frac[..n];
                        if d == '0' {
                            out.push(c);
                            out.push_str(frac);
                        } else {
                            let t = frac.trim_end_matches('0');
                            if !t.is_empty() {
                                out.push(c);
                                out.push_str(t);
                            }
                        }
                        rest = &tail[n..];
                        continue;
                    }
                }
            }
            for e in ELEMENTS {
                if let Some(r) = rest.strip_prefix(e) {
                    // Go reads `Jan`/`Mon` only when not followed by a
                    // lower-case letter (`January` is its own element).
                    self.element(e, &mut out, year, month, day, hour, min, sec, weekday, yday);
                    rest = r;
                    continue 'outer;
                }
            }
            let c = rest.chars().next().expect("not empty");
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn element(
        &self,
        e: &str,
        out: &mut String,
        year: i64,
        month: u32,
        day: u32,
        hour: i64,
        min: i64,
        sec: i64,
        weekday: usize,
        yday: i64,
    ) {
        let h12 = if hour % 12 == 0 { 12 } else { hour % 12 };
        let _ = match e {
            "January" => write!(out, "{}", MONTHS[month as usize - 1]),
            "Jan" => write!(out, "{}", &MONTHS[month as usize - 1][..3]),
            "Monday" => write!(out, "{}", DAYS[weekday]),
            "Mon" => write!(out, "{}", &DAYS[weekday][..3]),
            "2006" => write!(out, "{year:04}"),
            "06" => write!(out, "{:02}", year.rem_euclid(100)),
            "01" => write!(out, "{month:02}"),
            "1" => write!(out, "{month}"),
            "02" => write!(out, "{day:02}"),
            "2" => write!(out, "{day}"),
            "_2" => write!(out, "{day:>2}"),
            "002" => write!(out, "{yday:03}"),
            "__2" => write!(out, "{yday:>3}"),
            "15" => write!(out, "{hour:02}"),
            "03" => write!(out, "{h12:02}"),
            "3" => write!(out, "{h12}"),
            "04" => write!(out, "{min:02}"),
            "4" => write!(out, "{min}"),
            "05" => write!(out, "{sec:02}"),
            "5" => write!(out, "{sec}"),
            "PM" => write!(out, "{}", if hour >= 12 { "PM" } else { "AM" }),
            "pm" => write!(out, "{}", if hour >= 12 { "pm" } else { "am" }),
            "MST" => {
                if self.zone.is_empty() {
                    // Go prints the offset when the zone has no name.
                    let (sign, o) = sign_abs(self.offset);
                    write!(out, "{sign}{:02}{:02}", o / 3600, (o / 60) % 60)
                } else {
                    write!(out, "{}", self.zone)
                }
            }
            z => {
                let iso = z.starts_with('Z');
                if iso && self.offset == 0 {
                    out.push('Z');
                    return;
                }
                let (sign, o) = sign_abs(self.offset);
                let (oh, om, os) = (o / 3600, (o / 60) % 60, o % 60);
                let body = z.trim_start_matches(['Z', '-']);
                match body {
                    "07:00:00" => write!(out, "{sign}{oh:02}:{om:02}:{os:02}"),
                    "07:00" => write!(out, "{sign}{oh:02}:{om:02}"),
                    "0700" => write!(out, "{sign}{oh:02}{om:02}"),
                    _ => write!(out, "{sign}{oh:02}"),
                }
            }
        };
    }
}

fn sign_abs(offset: i32) -> (char, i32) {
    if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_go() {
        let t = Time::parse_rfc3339("2026-11-25T08:05:09.120Z").unwrap();
        assert_eq!(t.to_go_string(), "2026-11-25 08:05:09.12 +0000 UTC");
        assert_eq!(
            t.format("Mon Jan _2 15:04:05 MST 2006"),
            "Wed Nov 25 08:05:09 UTC 2026"
        );
        assert_eq!(
            t.format("2006-01-02T15:04:05.000Z07:00"),
            "2026-11-25T08:05:09.120Z"
        );
        assert_eq!(
            t.format("3:04PM, January 2 (002)"),
            "8:05AM, November 25 (329)"
        );
        let t = Time::parse_rfc3339("2024-02-29T23:59:59+02:00").unwrap();
        assert_eq!(t.to_go_string(), "2024-02-29 23:59:59 +0200 +0200");
        assert_eq!(t.utc().to_go_string(), "2024-02-29 21:59:59 +0000 UTC");
        assert_eq!(t.unix, 1_709_243_999);
        assert_eq!(
            Time::parse_rfc3339("0001-01-01T00:00:00Z")
                .unwrap()
                .to_go_string(),
            "0001-01-01 00:00:00 +0000 UTC"
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T25:00:00Z",
        ] {
            assert!(Time::parse_rfc3339(bad).is_none(), "{bad}");
        }
    }
}
