//! The alerting configuration: route tree, inhibit rules and time intervals,
//! with Alertmanager's key names and validation messages. The same types
//! read Alertmanager's YAML (`serde_norway`) and wasmon's TOML.
//!
//! Syntax errors (a bad matcher, duration or weekday) are serde errors, so
//! the config loader reports them with file and line; cross-references
//! (undefined receiver or time interval, root route rules) are checked by
//! [`AlertingConfig::validate`].

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::matcher::{parse_matchers_fallback, Matcher, MatcherError};
use crate::model::Duration;

/// Why an alerting config is refused: Alertmanager's texts, each naming
/// the field, label, receiver or interval at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("not a valid duration string: {0:?}")]
    BadDuration(String),
    #[error("duration out of range")]
    DurationOutOfRange,
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    #[error("cannot have wildcard group_by (`...`) and other other labels at the same time")]
    WildcardGroupBy,
    #[error("invalid label name {0:?} in group_by list")]
    InvalidGroupBy(String),
    #[error("duplicated label {0:?} in group_by")]
    DuplicateGroupBy(String),
    /// `group_interval` or `repeat_interval`.
    #[error("{0} cannot be zero")]
    ZeroInterval(&'static str),
    #[error("escalation step {step} (receiver {receiver:?}): delay {delay} is shorter than the previous step's {previous}; steps must be in order")]
    EscalationOrder {
        /// From 1.
        step: usize,
        receiver: String,
        delay: Duration,
        previous: Duration,
    },
    #[error("no route provided in config")]
    NoRoute,
    #[error("time interval {0:?} is not unique")]
    DuplicateTimeInterval(String),
    #[error("undefined receiver {0:?} used in route")]
    UndefinedReceiver(String),
    #[error("undefined receiver {0:?} used in route escalation")]
    UndefinedEscalationReceiver(String),
    #[error("undefined time interval {0:?} used in route")]
    UndefinedTimeInterval(String),
    /// What the root route may not have or must have.
    #[error("{}", root_text(.0))]
    Root(RootRule),
    /// A matcher (route or inhibit rule) whose regex does not compile.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// The root route's own rules ([`validate_root`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootRule {
    NoReceiver,
    Matchers,
    Continue,
    MuteTimeIntervals,
    ActiveTimeIntervals,
}

fn root_text(r: &RootRule) -> &'static str {
    match r {
        RootRule::NoReceiver => "root route must specify a default receiver",
        RootRule::Matchers => "root route must not have any matchers",
        RootRule::Continue => "cannot have continue in root route",
        RootRule::MuteTimeIntervals => "root route must not have any mute time intervals",
        RootRule::ActiveTimeIntervals => "root route must not have any active time intervals",
    }
}

/// Why a time interval's field does not parse (a serde error, so the
/// config loader adds file and line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TimeSpecError {
    #[error("couldn't parse timestamp {0}, invalid format")]
    Timestamp(String),
    #[error("{0} is not a valid weekday")]
    Weekday(String),
    #[error("{0} is not a valid month")]
    Month(String),
    #[error("{0} is not a valid day of the month")]
    DayOfMonth(String),
    #[error("{0} is not a valid day of the month: out of range")]
    DayOutOfRange(i32),
    #[error("{0} is not a valid year")]
    Year(String),
    /// A range whose ends are the wrong way round.
    #[error("{0}")]
    Order(&'static str),
}

// ---------------------------------------------------------------------------
// Matchers in config: a list of strings, each holding one or more matchers.

/// A `matchers:` list. Each string is parsed in Alertmanager's fallback mode
/// (UTF-8 parser first, classic parser if that fails).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigMatchers(pub Vec<Matcher>);

impl<'de> Deserialize<'de> for ConfigMatchers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConfigMatchers, D::Error> {
        let lines = Vec::<String>::deserialize(d)?;
        let mut out = Vec::new();
        for line in lines {
            let (ms, classic) = parse_matchers_fallback(&line).map_err(serde::de::Error::custom)?;
            if classic {
                tracing::warn!(
                    input = %line,
                    "matcher parsed with the classic parser; double-quote values and escape backslashes to make it UTF-8 compatible"
                );
            }
            out.extend(ms);
        }
        Ok(ConfigMatchers(out))
    }
}

impl Serialize for ConfigMatchers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| m.to_string()))
    }
}

/// A legacy `match_re` value: a regex, anchored when used.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ConfigRegex(pub String);

impl ConfigRegex {
    /// The anchored form Alertmanager stores and prints (`^(?:re)$`).
    pub fn anchored(&self) -> String {
        format!("^(?:{})$", self.0)
    }
}

impl<'de> Deserialize<'de> for ConfigRegex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ConfigRegex, D::Error> {
        let s = String::deserialize(d)?;
        regex::Regex::new(&format!("^(?:{s})$"))
            .map_err(|e| serde::de::Error::custom(format!("error parsing regexp: {e}")))?;
        Ok(ConfigRegex(s))
    }
}

fn valid_label_name(n: &str) -> bool {
    // Alertmanager validates names as UTF-8 (the default scheme since 0.28):
    // any non-empty string.
    !n.is_empty()
}

// ---------------------------------------------------------------------------
// Route.

/// A node of the routing tree (`<route>`). Unset options inherit from the
/// parent; the root's defaults are group_wait 30s, group_interval 5m,
/// repeat_interval 4h.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiver: Option<String>,
    /// Label names; `["..."]` groups by all labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<String>>,
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Deprecated: equality matchers.
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub match_eq: BTreeMap<String, String>,
    /// Deprecated: regex matchers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_re: BTreeMap<String, ConfigRegex>,
    #[serde(default, skip_serializing_if = "is_empty_matchers")]
    pub matchers: ConfigMatchers,
    /// Route labels (kept for compatibility; not used for grouping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub active_time_intervals: Vec<String>,
    /// Escalation steps (wasmon's extension): receivers notified when the
    /// group is still firing and unacknowledged `delay` after its first
    /// page attempt. Inherited unless set (`[]` turns it off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Vec<EscalationStepConfig>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteConfig>,
}

/// One escalation step of a route.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStepConfig {
    pub receiver: String,
    /// After the group's first page attempt (delivered or not).
    pub delay: Duration,
}

fn is_empty_matchers(m: &ConfigMatchers) -> bool {
    m.0.is_empty()
}

impl RouteConfig {
    /// Checks of one node that do not need the rest of the config
    /// (Alertmanager's `Route.UnmarshalYAML`).
    pub fn validate_node(&self) -> Result<(), ConfigError> {
        for k in self.match_eq.keys().chain(self.match_re.keys()) {
            if !valid_label_name(k) {
                return Err(ConfigError::InvalidLabelName(k.clone()));
            }
        }
        if let Some(gb) = &self.group_by {
            let mut seen = HashSet::new();
            for l in gb {
                if l == "..." {
                    if gb.len() > 1 {
                        return Err(ConfigError::WildcardGroupBy);
                    }
                } else if !valid_label_name(l) {
                    return Err(ConfigError::InvalidGroupBy(l.clone()));
                }
                if !seen.insert(l) {
                    return Err(ConfigError::DuplicateGroupBy(l.clone()));
                }
            }
        }
        if self.group_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroInterval("group_interval"));
        }
        if self.repeat_interval.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::ZeroInterval("repeat_interval"));
        }
        if let Some(steps) = &self.escalation {
            for (i, w) in steps.windows(2).enumerate() {
                if w[1].delay < w[0].delay {
                    return Err(ConfigError::EscalationOrder {
                        step: i + 2,
                        receiver: w[1].receiver.clone(),
                        delay: w[1].delay,
                        previous: w[0].delay,
                    });
                }
            }
        }
        Ok(())
    }

    fn walk<'a>(
        &'a self,
        f: &mut dyn FnMut(&'a RouteConfig) -> Result<(), ConfigError>,
    ) -> Result<(), ConfigError> {
        f(self)?;
        for r in &self.routes {
            r.walk(f)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Inhibit rules.

/// `<inhibit_rule>`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitRuleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_match: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_match_re: BTreeMap<String, ConfigRegex>,
    #[serde(default, skip_serializing_if = "is_empty_matchers")]
    pub source_matchers: ConfigMatchers,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_match: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_match_re: BTreeMap<String, ConfigRegex>,
    #[serde(default, skip_serializing_if = "is_empty_matchers")]
    pub target_matchers: ConfigMatchers,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equal: Vec<String>,
}

impl InhibitRuleConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        for k in self
            .source_match
            .keys()
            .chain(self.source_match_re.keys())
            .chain(self.target_match.keys())
            .chain(self.target_match_re.keys())
            .chain(self.equal.iter())
        {
            if !valid_label_name(k) {
                return Err(ConfigError::InvalidLabelName(k.clone()));
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Time intervals.

/// A named set of time intervals (`time_intervals:` / `mute_time_intervals:`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "RawTimeIntervalConfig")]
pub struct TimeIntervalConfig {
    pub name: String,
    #[serde(default)]
    pub time_intervals: Vec<TimeInterval>,
}

/// A [`TimeIntervalConfig`] as written: its intervals' locations are still
/// names, so an unknown one is reported with the interval's name (and, by
/// the format's deserializer, its line).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeIntervalConfig {
    name: String,
    #[serde(default)]
    time_intervals: Vec<RawTimeInterval>,
}

/// An interval of a named set that cannot be used, and which one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("time interval {name:?}: time_intervals[{index}]: {source}")]
pub struct TimeIntervalError {
    pub name: String,
    pub index: usize,
    pub source: UnknownTimeZone,
}

impl TryFrom<RawTimeIntervalConfig> for TimeIntervalConfig {
    type Error = TimeIntervalError;

    fn try_from(raw: RawTimeIntervalConfig) -> Result<TimeIntervalConfig, TimeIntervalError> {
        let time_intervals = raw
            .time_intervals
            .into_iter()
            .enumerate()
            .map(|(index, ti)| {
                TimeInterval::try_from(ti).map_err(|source| TimeIntervalError {
                    name: raw.name.clone(),
                    index,
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TimeIntervalConfig {
            name: raw.name,
            time_intervals,
        })
    }
}

impl TimeIntervalConfig {
    /// Is `t` inside any of the intervals?
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.time_intervals.iter().any(|ti| ti.contains(t))
    }
}

/// `<time_interval_spec>`: every non-empty field must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "RawTimeInterval")]
pub struct TimeInterval {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<TimeRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<WeekdayRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub days_of_month: Vec<DayOfMonthRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub months: Vec<MonthRange>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub years: Vec<YearRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
}

/// A [`TimeInterval`] with its `location` not yet looked up.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeInterval {
    #[serde(default)]
    times: Vec<TimeRange>,
    #[serde(default)]
    weekdays: Vec<WeekdayRange>,
    #[serde(default)]
    days_of_month: Vec<DayOfMonthRange>,
    #[serde(default)]
    months: Vec<MonthRange>,
    #[serde(default)]
    years: Vec<YearRange>,
    #[serde(default)]
    location: Option<String>,
}

impl TryFrom<RawTimeInterval> for TimeInterval {
    type Error = UnknownTimeZone;

    fn try_from(raw: RawTimeInterval) -> Result<TimeInterval, UnknownTimeZone> {
        Ok(TimeInterval {
            times: raw.times,
            weekdays: raw.weekdays,
            days_of_month: raw.days_of_month,
            months: raw.months,
            years: raw.years,
            location: raw.location.as_deref().map(Location::parse).transpose()?,
        })
    }
}

/// The time zone of a time interval (Alertmanager's `location`, Go's
/// `time.LoadLocation`): `UTC` (or empty), `Local` (the agent's own zone),
/// or a name in the IANA tz database such as `Europe/Berlin`. Names are
/// looked up in the system's database and, when it lacks them (a
/// distroless image has none), in the copy built into the binary.
#[derive(Debug, Clone, PartialEq)]
pub enum Location {
    Utc,
    Local,
    Named {
        /// As written in the config (and printed back).
        name: String,
        tz: jiff::tz::TimeZone,
    },
}

/// A `location` that is neither `UTC`, `Local` nor a known IANA name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("location: unknown time zone {0}")]
pub struct UnknownTimeZone(pub String);

impl Location {
    /// Looks a `location` up as Alertmanager does.
    pub fn parse(name: &str) -> Result<Location, UnknownTimeZone> {
        match name {
            "UTC" | "" => Ok(Location::Utc),
            "Local" => Ok(Location::Local),
            // Go refuses paths out of the database; so do we, before any lookup.
            _ if name.starts_with('/') || name.split('/').any(|p| p == "..") => {
                Err(UnknownTimeZone(name.to_string()))
            }
            // The database is searched without regard to case; Go reads
            // the zone's file, so `europe/berlin` is unknown there, and here.
            _ => match jiff::tz::TimeZone::get(name) {
                Ok(tz) if tz.iana_name().is_none_or(|n| n == name) => Ok(Location::Named {
                    name: name.to_string(),
                    tz,
                }),
                _ => Err(UnknownTimeZone(name.to_string())),
            },
        }
    }

    /// The name as written in a config.
    pub fn name(&self) -> &str {
        match self {
            Location::Utc => "UTC",
            Location::Local => "Local",
            Location::Named { name, .. } => name,
        }
    }

    fn time_zone(&self) -> jiff::tz::TimeZone {
        match self {
            Location::Utc => jiff::tz::TimeZone::UTC,
            Location::Local => jiff::tz::TimeZone::system(),
            Location::Named { tz, .. } => tz.clone(),
        }
    }
}

impl<'de> Deserialize<'de> for Location {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Location, D::Error> {
        Location::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Location {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// `start_time`/`end_time` as minutes of the day, end exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start_minute: u32,
    pub end_minute: u32,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawTimeRange {
    start_time: String,
    end_time: String,
}

fn parse_hhmm(s: &str) -> Result<u32, TimeSpecError> {
    let bad = || TimeSpecError::Timestamp(s.to_string());
    if s == "24:00" {
        return Ok(24 * 60);
    }
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

impl<'de> Deserialize<'de> for TimeRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TimeRange, D::Error> {
        let raw = RawTimeRange::deserialize(d)?;
        let e = serde::de::Error::custom;
        let start = parse_hhmm(&raw.start_time).map_err(e)?;
        let end = parse_hhmm(&raw.end_time).map_err(e)?;
        if start >= end {
            return Err(e(TimeSpecError::Order(
                "start time cannot be equal or greater than end time",
            )));
        }
        Ok(TimeRange {
            start_minute: start,
            end_minute: end,
        })
    }
}

impl Serialize for TimeRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = |m: u32| format!("{:02}:{:02}", m / 60, m % 60);
        RawTimeRange {
            start_time: f(self.start_minute),
            end_time: f(self.end_minute),
        }
        .serialize(s)
    }
}

/// A scalar that YAML/TOML may give as a number or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum StrOrInt {
    S(String),
    I(i64),
}

impl StrOrInt {
    fn into_string(self) -> String {
        match self {
            StrOrInt::S(s) => s,
            StrOrInt::I(i) => i.to_string(),
        }
    }
}

/// Parse `a` or `a:b` with `f`; `a` alone is `a:a`.
fn parse_range(
    s: &str,
    f: &dyn Fn(&str) -> Result<i32, TimeSpecError>,
) -> Result<(i32, i32), TimeSpecError> {
    match s.split_once(':') {
        Some((a, b)) => Ok((f(a)?, f(b)?)),
        None => {
            let v = f(s)?;
            Ok((v, v))
        }
    }
}

macro_rules! range_type {
    ($name:ident, $parse:expr, $check:expr, $fmt:expr) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            pub begin: i32,
            pub end: i32,
        }
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let s = StrOrInt::deserialize(d)?.into_string();
                let (begin, end) = parse_range(&s, &$parse).map_err(serde::de::Error::custom)?;
                let check: fn(i32, i32) -> Result<(), TimeSpecError> = $check;
                check(begin, end).map_err(serde::de::Error::custom)?;
                Ok($name { begin, end })
            }
        }
        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let f: fn(i32) -> String = $fmt;
                if self.begin == self.end {
                    s.serialize_str(&f(self.begin))
                } else {
                    s.serialize_str(&format!("{}:{}", f(self.begin), f(self.end)))
                }
            }
        }
    };
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

fn parse_weekday(s: &str) -> Result<i32, TimeSpecError> {
    let l = s.trim().to_lowercase();
    WEEKDAYS
        .iter()
        .position(|d| *d == l)
        .map(|i| i as i32)
        .ok_or_else(|| TimeSpecError::Weekday(s.to_string()))
}

fn parse_month(s: &str) -> Result<i32, TimeSpecError> {
    let l = s.trim().to_lowercase();
    if let Some(i) = MONTHS.iter().position(|m| *m == l) {
        return Ok(i as i32 + 1);
    }
    match l.parse::<i32>() {
        Ok(n) if (1..=12).contains(&n) => Ok(n),
        _ => Err(TimeSpecError::Month(s.to_string())),
    }
}

fn parse_day_of_month(s: &str) -> Result<i32, TimeSpecError> {
    let n: i32 = s
        .trim()
        .parse()
        .map_err(|_| TimeSpecError::DayOfMonth(s.to_string()))?;
    if n == 0 || !(-31..=31).contains(&n) {
        return Err(TimeSpecError::DayOutOfRange(n));
    }
    Ok(n)
}

fn parse_year(s: &str) -> Result<i32, TimeSpecError> {
    match s.trim().parse::<i32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(TimeSpecError::Year(s.to_string())),
    }
}

range_type!(
    WeekdayRange,
    parse_weekday,
    |b, e| if b > e {
        Err(TimeSpecError::Order("start day cannot be before end day"))
    } else {
        Ok(())
    },
    |i| WEEKDAYS[i as usize].to_string()
);
range_type!(
    MonthRange,
    parse_month,
    |b, e| if b > e {
        Err(TimeSpecError::Order(
            "end month cannot be before start month",
        ))
    } else {
        Ok(())
    },
    |i| MONTHS[(i - 1) as usize].to_string()
);
range_type!(
    DayOfMonthRange,
    parse_day_of_month,
    |b, e| {
        if b < 0 && e > 0 {
            return Err(TimeSpecError::Order(
                "end day must be negative if start day is negative",
            ));
        }
        if (b > 0) == (e > 0) && b > e {
            return Err(TimeSpecError::Order("start day cannot be after end day"));
        }
        Ok(())
    },
    |i| i.to_string()
);
range_type!(
    YearRange,
    parse_year,
    |b, e| if b > e {
        Err(TimeSpecError::Order("end year cannot be before start year"))
    } else {
        Ok(())
    },
    |i| i.to_string()
);

/// The fields of an instant in an interval's zone that its ranges test.
struct Civil {
    year: i32,
    /// 1..=12.
    month: i32,
    day: i32,
    days_in_month: i32,
    /// 0 is Sunday, as Go's `time.Weekday`.
    weekday: i32,
    minute_of_day: u32,
}

impl Civil {
    /// `t` on the wall clock of `tz`: in a DST gap no instant reads as the
    /// skipped times, and in a repeated hour two instants read the same,
    /// as with Go's `t.In(loc)`.
    fn of(t: DateTime<Utc>, tz: jiff::tz::TimeZone) -> Civil {
        let ts = jiff::Timestamp::new(t.timestamp(), t.timestamp_subsec_nanos() as i32)
            .unwrap_or_else(|_| {
                // Outside jiff's range (years -9999..=9999): clamp, as no
                // interval can name such a year anyway.
                if t.timestamp() < 0 {
                    jiff::Timestamp::MIN
                } else {
                    jiff::Timestamp::MAX
                }
            });
        let z = ts.to_zoned(tz);
        Civil {
            year: i32::from(z.year()),
            month: i32::from(z.month()),
            day: i32::from(z.day()),
            days_in_month: i32::from(z.days_in_month()),
            weekday: i32::from(z.weekday().to_sunday_zero_offset()),
            minute_of_day: z.hour() as u32 * 60 + z.minute() as u32,
        }
    }
}

impl TimeInterval {
    /// Alertmanager's `ContainsTime`: `t` read in the interval's location
    /// (UTC without one).
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let tz = self
            .location
            .as_ref()
            .map_or(jiff::tz::TimeZone::UTC, Location::time_zone);
        self.contains_civil(&Civil::of(t, tz))
    }

    fn contains_civil(&self, t: &Civil) -> bool {
        if !self.times.is_empty() {
            let m = t.minute_of_day;
            if !self
                .times
                .iter()
                .any(|r| m >= r.start_minute && m < r.end_minute)
            {
                return false;
            }
        }
        if !self.days_of_month.is_empty() {
            let dim = t.days_in_month;
            let day = t.day;
            let ok = self.days_of_month.iter().any(|r| {
                let begin = if r.begin < 0 {
                    dim + r.begin + 1
                } else {
                    r.begin
                };
                let end = if r.end < 0 { dim + r.end + 1 } else { r.end };
                if begin > dim {
                    return false;
                }
                let begin = begin.clamp(-dim, dim);
                let end = end.clamp(-dim, dim);
                day >= begin && day <= end
            });
            if !ok {
                return false;
            }
        }
        if !self.months.is_empty() {
            let m = t.month;
            if !self.months.iter().any(|r| m >= r.begin && m <= r.end) {
                return false;
            }
        }
        if !self.weekdays.is_empty() {
            let w = t.weekday;
            if !self.weekdays.iter().any(|r| w >= r.begin && w <= r.end) {
                return false;
            }
        }
        if !self.years.is_empty() {
            let y = t.year;
            if !self.years.iter().any(|r| y >= r.begin && y <= r.end) {
                return false;
            }
        }
        true
    }
}

// ---------------------------------------------------------------------------
// The whole alerting section.

/// `global:` settings the alerting core uses.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct GlobalConfig {
    /// End time given to alerts posted without one (default 5m).
    #[serde(default = "default_resolve_timeout")]
    pub resolve_timeout: Duration,
}

impl Default for GlobalConfig {
    fn default() -> GlobalConfig {
        GlobalConfig {
            resolve_timeout: default_resolve_timeout(),
        }
    }
}

fn default_resolve_timeout() -> Duration {
    Duration::from_secs(300)
}

/// Alertmanager's configuration as far as routing is concerned. Other
/// top-level keys of an Alertmanager file (receivers, templates) are ignored
/// here: receivers are plugin instances in wasmon.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AlertingConfig {
    #[serde(default)]
    pub global: GlobalConfig,
    #[serde(default)]
    pub route: Option<RouteConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub time_intervals: Vec<TimeIntervalConfig>,
    /// Deprecated spelling of `time_intervals`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mute_time_intervals: Vec<TimeIntervalConfig>,
}

impl AlertingConfig {
    /// Alertmanager's checks across the config. `receivers` are the names
    /// the host knows (its receiver plugin instances).
    pub fn validate(&self, receivers: &[&str]) -> Result<(), ConfigError> {
        let route = self.route.as_ref().ok_or(ConfigError::NoRoute)?;
        validate_root(route)?;
        let mut names = HashSet::new();
        for ti in self.time_intervals.iter().chain(&self.mute_time_intervals) {
            if !names.insert(ti.name.as_str()) {
                return Err(ConfigError::DuplicateTimeInterval(ti.name.clone()));
            }
        }
        let known: HashSet<&str> = receivers.iter().copied().collect();
        route.walk(&mut |r| {
            r.validate_node()?;
            if let Some(rcv) = &r.receiver {
                if !known.contains(rcv.as_str()) {
                    return Err(ConfigError::UndefinedReceiver(rcv.clone()));
                }
            }
            for s in r.escalation.iter().flatten() {
                if !known.contains(s.receiver.as_str()) {
                    return Err(ConfigError::UndefinedEscalationReceiver(s.receiver.clone()));
                }
            }
            for n in r.mute_time_intervals.iter().chain(&r.active_time_intervals) {
                if !names.contains(n.as_str()) {
                    return Err(ConfigError::UndefinedTimeInterval(n.clone()));
                }
            }
            Ok(())
        })?;
        for r in &self.inhibit_rules {
            r.validate()?;
        }
        Ok(())
    }

    /// All named time intervals (both spellings).
    pub fn intervals(&self) -> BTreeMap<String, TimeIntervalConfig> {
        self.time_intervals
            .iter()
            .chain(&self.mute_time_intervals)
            .map(|t| (t.name.clone(), t.clone()))
            .collect()
    }
}

/// The root route's own rules.
pub fn validate_root(route: &RouteConfig) -> Result<(), ConfigError> {
    if route.receiver.as_deref().unwrap_or("").is_empty() {
        return Err(ConfigError::Root(RootRule::NoReceiver));
    }
    if !route.match_eq.is_empty() || !route.match_re.is_empty() || !route.matchers.0.is_empty() {
        return Err(ConfigError::Root(RootRule::Matchers));
    }
    if route.continue_matching {
        return Err(ConfigError::Root(RootRule::Continue));
    }
    if !route.mute_time_intervals.is_empty() {
        return Err(ConfigError::Root(RootRule::MuteTimeIntervals));
    }
    if !route.active_time_intervals.is_empty() {
        return Err(ConfigError::Root(RootRule::ActiveTimeIntervals));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (s, secs, back) in [
            ("30s", 30, "30s"),
            ("5m", 300, "5m"),
            ("4h", 4 * 3600, "4h"),
            ("1h30m", 5400, "1h30m"),
            ("1d", 86400, "1d"),
            ("90m", 5400, "1h30m"),
            ("1w", 7 * 86400, "1w"),
            ("0", 0, "0s"),
        ] {
            let d = Duration::parse(s).unwrap();
            assert_eq!(d.0.as_secs(), secs, "{s}");
            assert_eq!(d.to_string(), back);
        }
        assert_eq!(Duration::parse("1500ms").unwrap().to_string(), "1s500ms");
        for bad in ["", "5", "m", "1m1h", "1.5h", "-1s", "1x"] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn yaml_and_toml() {
        let yaml = r#"
route:
  receiver: default
  group_by: [alertname, cluster]
  group_wait: 10s
  routes:
  - matchers: ['severity="critical"', 'team=~"a|b"']
    receiver: pager
    continue: true
    mute_time_intervals: [offhours]
  - match: {service: db}
    match_re: {env: prod.*}
    receiver: db
inhibit_rules:
- source_matchers: [severity="critical"]
  target_matchers: [severity="warning"]
  equal: [alertname]
time_intervals:
- name: offhours
  time_intervals:
  - times: [{start_time: "17:00", end_time: "24:00"}]
    weekdays: ['monday:friday']
    days_of_month: ['1:5', -1]
    months: ['january:march', 'december']
    years: ['2020:2030']
    location: UTC
"#;
        let c: AlertingConfig = serde_norway::from_str(yaml).unwrap();
        c.validate(&["default", "pager", "db"]).unwrap();
        let r = c.route.as_ref().unwrap();
        assert_eq!(r.routes[0].matchers.0.len(), 2);
        assert!(r.routes[0].continue_matching);
        assert_eq!(r.group_wait, Some(Duration::from_secs(10)));
        assert_eq!(
            c.validate(&["default"]).unwrap_err().to_string(),
            "undefined receiver \"pager\" used in route"
        );
        assert_eq!(
            c.validate(&["default"]),
            Err(ConfigError::UndefinedReceiver("pager".into()))
        );

        let toml_text = r#"
[route]
receiver = "default"
group_by = ["..."]
repeat_interval = "1h30m"
[[route.routes]]
matchers = ['severity="critical"']
receiver = "pager"
active_time_intervals = ["biz"]
[[time_intervals]]
name = "biz"
[[time_intervals.time_intervals]]
weekdays = ["monday:friday"]
times = [{ start_time = "09:00", end_time = "17:00" }]
location = "Local"
"#;
        let c: AlertingConfig = toml::from_str(toml_text).unwrap();
        c.validate(&["default", "pager"]).unwrap();
        assert_eq!(
            c.route.as_ref().unwrap().repeat_interval,
            Some(Duration::from_secs(5400))
        );
    }

    #[test]
    fn validation_errors() {
        let bad = |y: &str| -> String {
            match serde_norway::from_str::<AlertingConfig>(y) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate(&["r"]).unwrap_err().to_string(),
            }
        };
        assert!(bad("route: {}").contains("root route must specify a default receiver"));
        assert!(bad("route: {receiver: r, matchers: [a=b]}")
            .contains("root route must not have any matchers"));
        assert!(bad("route: {receiver: r, group_by: ['...', a]}").contains("wildcard group_by"));
        assert!(bad("route: {receiver: r, group_by: [a, a]}")
            .contains("duplicated label \"a\" in group_by"));
        assert!(bad("route: {receiver: r, routes: [{group_interval: 0}]}")
            .contains("group_interval cannot be zero"));
        assert!(
            bad("route: {receiver: r, routes: [{mute_time_intervals: [x]}]}")
                .contains("undefined time interval \"x\" used in route")
        );
        assert!(bad("route: {receiver: r, group_wait: 5x}").contains("not a valid duration string"));
        assert!(bad(
            "route: {receiver: r}\ntime_intervals: [{name: a, time_intervals: [{weekdays: [funday]}]}]"
        )
        .contains("funday is not a valid weekday"));
        assert!(bad(
            "route: {receiver: r}\ntime_intervals: [{name: a, time_intervals: [{times: [{start_time: '10:00', end_time: '09:00'}]}]}]"
        )
        .contains("start time cannot be equal or greater than end time"));
    }

    #[test]
    fn time_interval_contains() {
        let ti: TimeInterval = serde_norway::from_str(
            "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday'], days_of_month: ['-1']}",
        )
        .unwrap();
        // 2024-01-31 is a Wednesday, the last day of January.
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert!(ti.contains(t("2024-01-31T09:00:00Z")));
        assert!(!ti.contains(t("2024-01-31T17:00:00Z")));
        assert!(!ti.contains(t("2024-01-30T10:00:00Z")));
        // 2024-03-31 is a Sunday.
        assert!(!ti.contains(t("2024-03-31T10:00:00Z")));
        let feb: TimeInterval = serde_norway::from_str("{days_of_month: ['1:31']}").unwrap();
        assert!(feb.contains(t("2024-02-29T00:00:00Z")));
    }

    /// A time as Alertmanager's tests write them (`"06 Apr 21 13:00 +1000"`).
    fn go_time(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_str(s, "%d %b %y %H:%M %z")
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .with_timezone(&Utc)
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn interval(yaml: &str) -> TimeInterval {
        serde_norway::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    /// Alertmanager's `timeinterval_test.go` cases with a location.
    #[test]
    fn upstream_location_cases() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            // AEST 9AM to 5PM, Monday to Friday.
            (
                "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday'], location: Australia/Sydney}",
                &["06 Apr 21 13:00 +1000"],
                &["06 Apr 21 13:00 +0000"],
            ),
            // An alternative time zone during daylight saving time.
            (
                "{times: [{start_time: '09:00', end_time: '17:00'}], weekdays: ['monday:friday'], months: [november], location: Australia/Sydney}",
                &["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"],
                &["31 Oct 21 21:00 +0000"],
            ),
            // Last-day mutes do not shift during spring-forward months.
            (
                "{days_of_month: ['-1'], location: America/New_York}",
                &["31 Mar 21 12:00 -0400"],
                &["30 Mar 21 12:00 -0400"],
            ),
        ];
        for (yaml, inside, outside) in cases {
            let ti = interval(yaml);
            for t in *inside {
                assert!(ti.contains(go_time(t)), "{yaml} should contain {t}");
            }
            for t in *outside {
                assert!(!ti.contains(go_time(t)), "{yaml} should not contain {t}");
            }
        }
        let parsed = interval("{years: ['2020:2022'], location: 'Australia/Sydney'}");
        assert_eq!(parsed.location.as_ref().unwrap().name(), "Australia/Sydney");
        assert_eq!(
            serde_norway::to_string(&parsed).unwrap(),
            "years:\n- 2020:2022\nlocation: Australia/Sydney\n"
        );
    }

    /// `TestIntervener_Mutes`: evenings and weekends in Sydney.
    #[test]
    fn upstream_intervener_sydney() {
        let evenings: TimeIntervalConfig = serde_norway::from_str(
            "{name: evenings, time_intervals: [{times: [{start_time: '00:00', end_time: '09:00'}, {start_time: '17:00', end_time: '24:00'}], location: Australia/Sydney}]}",
        )
        .unwrap();
        let weekends: TimeIntervalConfig = serde_norway::from_str(
            "{name: weekends, time_intervals: [{weekdays: [saturday, sunday], location: Australia/Sydney}]}",
        )
        .unwrap();
        // Sydney is UTC+11 in January.
        for (now, e, w) in [
            ("2024-01-01T00:00:00+11:00", true, false),
            ("2024-01-01T09:00:00+11:00", false, false),
            ("2024-01-06T10:00:00+11:00", false, true),
            ("2024-01-06T17:00:00+11:00", true, true),
            ("2024-01-01T10:00:00Z", true, false),
            ("2024-01-06T10:00:00Z", true, true),
        ] {
            assert_eq!(evenings.contains(utc(now)), e, "evenings at {now}");
            assert_eq!(weekends.contains(utc(now)), w, "weekends at {now}");
        }
    }

    /// Europe/Berlin: 2024-03-31 02:00 CET jumps to 03:00 CEST (01:00 UTC);
    /// 2024-10-27 03:00 CEST falls back to 02:00 CET (01:00 UTC).
    #[test]
    fn dst_edges_berlin() {
        let two_to_three = interval(
            "{times: [{start_time: '02:00', end_time: '03:00'}], location: Europe/Berlin}",
        );
        // The day before: 02:30 CET is 01:30 UTC.
        assert!(two_to_three.contains(utc("2024-03-30T01:30:00Z")));
        // Spring forward: no instant of the day reads 02:xx.
        let day = utc("2024-03-30T23:00:00Z");
        for minute in 0..24 * 60 {
            let t = day + chrono::Duration::minutes(minute);
            assert!(!two_to_three.contains(t), "{t} reads as 02:xx in Berlin");
        }
        // Fall back: 02:00-03:00 happens twice, two hours of real time.
        for (t, inside) in [
            ("2024-10-26T23:59:00Z", false), // 01:59 CEST
            ("2024-10-27T00:00:00Z", true),  // 02:00 CEST
            ("2024-10-27T00:59:00Z", true),  // 02:59 CEST
            ("2024-10-27T01:00:00Z", true),  // 02:00 CET, again
            ("2024-10-27T01:59:00Z", true),  // 02:59 CET
            ("2024-10-27T02:00:00Z", false), // 03:00 CET
        ] {
            assert_eq!(two_to_three.contains(utc(t)), inside, "{t}");
        }
        // Weekday and day of month follow the zone's midnight, not UTC's.
        let sunday =
            interval("{weekdays: [sunday], days_of_month: ['-1'], location: Europe/Berlin}");
        // 2024-03-30T23:30Z is Sunday 31 March 00:30 CET in Berlin.
        assert!(sunday.contains(utc("2024-03-30T23:30:00Z")));
        assert!(!interval("{weekdays: [sunday]}").contains(utc("2024-03-30T23:30:00Z")));
    }

    /// America/New_York: 2021-03-14 02:00 EST jumps to 03:00 EDT (07:00
    /// UTC); 2021-11-07 02:00 EDT falls back to 01:00 EST (06:00 UTC).
    #[test]
    fn dst_edges_new_york() {
        let skipped = interval(
            "{times: [{start_time: '02:30', end_time: '02:31'}], location: America/New_York}",
        );
        // 02:30 on the spring-forward day does not exist.
        let day = utc("2021-03-14T05:00:00Z");
        for minute in 0..24 * 60 {
            let t = day + chrono::Duration::minutes(minute);
            assert!(!skipped.contains(t), "{t} reads as 02:30 in New York");
        }
        assert!(skipped.contains(utc("2021-03-13T07:30:00Z")));
        let one_to_two = interval(
            "{times: [{start_time: '01:00', end_time: '02:00'}], location: America/New_York}",
        );
        for (t, inside) in [
            ("2021-11-07T04:59:00Z", false), // 00:59 EDT
            ("2021-11-07T05:00:00Z", true),  // 01:00 EDT
            ("2021-11-07T06:30:00Z", true),  // 01:30 EST, the repeated hour
            ("2021-11-07T07:00:00Z", false), // 02:00 EST
        ] {
            assert_eq!(one_to_two.contains(utc(t)), inside, "{t}");
        }
        // The last day of January ends at 05:00 UTC on 1 February.
        let last = interval("{days_of_month: ['-1'], location: America/New_York}");
        assert!(last.contains(utc("2024-02-01T04:30:00Z")));
        assert!(!last.contains(utc("2024-02-01T05:00:00Z")));
    }

    #[test]
    fn unknown_keys_are_still_refused() {
        let e = serde_norway::from_str::<TimeInterval>("{weekday: [monday]}").unwrap_err();
        assert!(e.to_string().contains("unknown field `weekday`"), "{e}");
        let e =
            serde_norway::from_str::<TimeIntervalConfig>("{name: a, intervals: []}").unwrap_err();
        assert!(e.to_string().contains("unknown field `intervals`"), "{e}");
    }

    /// A container without /usr/share/zoneinfo (distroless) still knows
    /// the zones: the database is built in.
    #[test]
    fn tz_database_is_bundled() {
        let db = jiff::tz::TimeZoneDatabase::bundled();
        for name in ["Europe/Berlin", "America/New_York", "Australia/Sydney"] {
            db.get(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn unknown_location_names_the_interval() {
        let e = serde_norway::from_str::<AlertingConfig>(
            "time_intervals:\n- name: offhours\n  time_intervals:\n  - times: [{start_time: '09:00', end_time: '17:00'}]\n    location: Mars/Olympus_Mons\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("time interval \"offhours\": time_intervals[0]: location: unknown time zone Mars/Olympus_Mons"),
            "{e}"
        );
        assert!(e.contains("line 2"), "the interval's line: {e}");
        let e = toml::from_str::<AlertingConfig>(
            "[[time_intervals]]\nname = \"offhours\"\n[[time_intervals.time_intervals]]\nlocation = \"Mars/Olympus_Mons\"\n",
        )
        .unwrap_err();
        assert!(
            e.message().contains("time interval \"offhours\": time_intervals[0]: location: unknown time zone Mars/Olympus_Mons"),
            "{e}"
        );
        assert!(e.span().is_some(), "{e}");
        for bad in [
            "../../etc/passwd",
            "/etc/localtime",
            "Europe/Nowhere",
            "europe/berlin",
            "utc",
        ] {
            assert_eq!(Location::parse(bad), Err(UnknownTimeZone(bad.into())));
        }
        for ok in [
            "UTC",
            "",
            "Local",
            "Europe/Berlin",
            "America/New_York",
            "Etc/GMT+5",
        ] {
            Location::parse(ok).unwrap();
        }
    }
}
