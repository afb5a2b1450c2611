//! OpenMetrics 1.0 text, strictly (see the module docs of `textparse` for
//! the three relaxations).
//!
//! Lines are either `# TYPE|HELP|UNIT name value`, a sample
//! `name[{labels}] value [timestamp] [# {labels} value [timestamp]]` with
//! single spaces, or the final `# EOF`. On top of the syntax, the parser
//! tracks three nested units the data model constrains:
//!
//! - the metric family: its metadata comes before its samples, at most one
//!   line of each kind; its sample names must carry its type's suffixes; no
//!   two families may share a name or produce the same sample name, which
//!   also catches a family reappearing after another one (interleaving);
//! - the metric (the series without `le`/`quantile`/the stateset label and
//!   without the suffix): its samples are contiguous, all with or all
//!   without timestamps, timestamps never going backwards;
//! - the metric point (a metric's samples at one timestamp): no sample given
//!   twice; a histogram point has buckets in increasing `le` order with
//!   cumulative counts ending in `+Inf`, and `_count` (= the `+Inf` bucket)
//!   and `_sum` both or neither.

use std::borrow::Cow;
use std::collections::HashSet;

use super::lex::{self, Escapes, Line, Lines};
use super::number;
use super::series::{self, Canonical, RawLabel, SeriesBuilder};
use super::{Interrupted, Metadata, MetricType, ParseError, SampleRef, Sink};
use crate::model::TimestampMs;
use crate::model::METRIC_NAME;

/// The combined length, in code points, of an exemplar's label names and
/// values may not exceed this.
const EXEMPLAR_MAX_CHARS: usize = 128;

/// Samples go to `sink` as they are read; a page that turns out to be
/// invalid later (no `# EOF`, a family reopened) is reported only then, so
/// the caller must treat what it got as provisional until this returns Ok
/// (the scrape loop appends into a batch it rolls back).
pub(super) fn parse(text: &str, sink: &mut Sink<'_>) -> Result<Vec<Metadata>, Interrupted> {
    let mut p = Parser::default();
    let mut lines = Lines::new(text);
    while let Some(line) = lines.next() {
        if line.text == "# EOF" {
            if lines.has_more() {
                return Err(err(line.no + 1, "unexpected data after # EOF").into());
            }
            p.close_family(line.no)?;
            return Ok(p.metadata);
        }
        p.line(line)?;
        if let Some((value, timestamp_ms)) = p.pending.take() {
            sink(SampleRef {
                labels: p.series.labels(),
                value,
                timestamp_ms,
            })?;
        }
    }
    Err(err(
        lines.line_no().max(1),
        "the exposition does not end with # EOF",
    )
    .into())
}

fn err(line: usize, msg: impl std::fmt::Display) -> ParseError {
    ParseError::new(line, msg.to_string())
}

/// What a sample is within its family, from its name's suffix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// Gauge, unknown and stateset samples (no suffix).
    Value,
    Total,
    Created,
    Count,
    Sum,
    Bucket,
    /// A summary sample without suffix.
    Quantile,
    Info,
}

fn role_of(kind: MetricType, suffix: &str) -> Option<Role> {
    use MetricType::*;
    Some(match (kind, suffix) {
        (Gauge | Unknown | StateSet, "") => Role::Value,
        (Counter, "_total") => Role::Total,
        (Counter | Histogram | Summary, "_created") => Role::Created,
        (Summary, "") => Role::Quantile,
        (Summary | Histogram, "_count") | (GaugeHistogram, "_gcount") => Role::Count,
        (Summary | Histogram, "_sum") | (GaugeHistogram, "_gsum") => Role::Sum,
        (Histogram | GaugeHistogram, "_bucket") => Role::Bucket,
        (Info, "_info") => Role::Info,
        _ => return None,
    })
}

/// The sample-name suffixes a family of this type uses.
fn suffixes(kind: MetricType) -> &'static [&'static str] {
    use MetricType::*;
    match kind {
        Gauge | Unknown | StateSet => &[""],
        Counter => &["_total", "_created"],
        Summary => &["", "_count", "_sum", "_created"],
        Histogram => &["_bucket", "_count", "_sum", "_created"],
        GaugeHistogram => &["_bucket", "_gcount", "_gsum"],
        Info => &["_info"],
    }
}

struct Family<'a> {
    name: &'a str,
    kind: MetricType,
    type_seen: bool,
    help: Option<String>,
    unit: Option<&'a str>,
    has_metadata: bool,
    has_samples: bool,
    /// Its names have been checked against (and added to) the used names.
    finalized: bool,
    /// Keys of the metrics seen so far, to reject one coming back.
    metrics: HashSet<Vec<u8>>,
}

impl<'a> Family<'a> {
    fn new(name: &'a str) -> Family<'a> {
        Family {
            name,
            kind: MetricType::Unknown,
            type_seen: false,
            help: None,
            unit: None,
            has_metadata: false,
            has_samples: false,
            finalized: false,
            metrics: HashSet::new(),
        }
    }
}

/// Identifies a sample within a metric point, to catch repeats.
#[derive(PartialEq)]
enum PointKey<'a> {
    Single(Role),
    Bucket(f64),
    Quantile(f64),
    State(Cow<'a, str>),
}

/// The samples of the current metric point, as far as the checks need them.
#[derive(Default)]
struct Point<'a> {
    active: bool,
    /// The line of the last sample, for errors found at the end of the point.
    line: usize,
    singles: u16,
    buckets: usize,
    last_le: f64,
    last_bucket: f64,
    inf_bucket: Option<f64>,
    negative_bucket: bool,
    count: Option<f64>,
    sum: Option<f64>,
    quantiles: Vec<f64>,
    states: Vec<Cow<'a, str>>,
}

impl<'a> Point<'a> {
    fn contains(&self, key: &PointKey<'a>) -> bool {
        match key {
            PointKey::Single(r) => self.singles & (1 << *r as u16) != 0,
            PointKey::Bucket(le) => self.buckets > 0 && *le <= self.last_le,
            PointKey::Quantile(q) => self.quantiles.contains(q),
            PointKey::State(s) => self.states.contains(s),
        }
    }

    fn add(&mut self, line: usize, key: PointKey<'a>, value: f64) -> Result<(), String> {
        if !self.active {
            // A fresh point, keeping the two vectors' allocations.
            let (mut quantiles, mut states) = (
                std::mem::take(&mut self.quantiles),
                std::mem::take(&mut self.states),
            );
            quantiles.clear();
            states.clear();
            *self = Point {
                active: true,
                quantiles,
                states,
                ..Point::default()
            };
        }
        self.line = line;
        match key {
            PointKey::Single(r) => {
                self.singles |= 1 << r as u16;
                match r {
                    Role::Count => self.count = Some(value),
                    Role::Sum => self.sum = Some(value),
                    _ => {}
                }
            }
            PointKey::Bucket(le) => {
                if self.buckets > 0 && value < self.last_bucket {
                    return Err(format!(
                        "histogram buckets must be cumulative: {value} after {} in the bucket below",
                        self.last_bucket
                    ));
                }
                self.buckets += 1;
                self.last_le = le;
                self.last_bucket = value;
                self.negative_bucket |= le < 0.0;
                if le == f64::INFINITY {
                    self.inf_bucket = Some(value);
                }
            }
            PointKey::Quantile(q) => self.quantiles.push(q),
            PointKey::State(s) => self.states.push(s),
        }
        Ok(())
    }
}

#[derive(Default)]
struct Parser<'a> {
    fam: Option<Family<'a>>,
    /// Family names and sample names of every family finalized so far.
    used: HashSet<String>,
    metadata: Vec<Metadata>,
    /// The current line's sample (its labels are `series`'), handed to the
    /// sink after the line.
    pending: Option<(f64, Option<TimestampMs>)>,
    pairs: Vec<RawLabel<'a>>,
    exemplar_pairs: Vec<RawLabel<'a>>,
    series: SeriesBuilder,
    canonical: Canonical<'a>,
    /// The current metric's key (its labels without the point label).
    key: Vec<u8>,
    scratch: Vec<u8>,
    in_metric: bool,
    /// Whether the current metric's samples have timestamps (unknown before
    /// its first sample).
    ts_mode: Option<bool>,
    last_ts: f64,
    point: Point<'a>,
}

#[derive(Clone, Copy)]
enum Meta {
    Type,
    Help,
    Unit,
}

impl<'a> Parser<'a> {
    fn line(&mut self, line: Line<'a>) -> Result<(), ParseError> {
        let s = line.text;
        match s.as_bytes().first() {
            None => Err(err(line.no, "empty line")),
            Some(b'#') => self.metadata_line(line.no, s),
            Some(_) => self.sample(line.no, s),
        }
    }

    fn metadata_line(&mut self, no: usize, s: &'a str) -> Result<(), ParseError> {
        let (kw, rest) = if let Some(r) = s.strip_prefix("# TYPE ") {
            (Meta::Type, r)
        } else if let Some(r) = s.strip_prefix("# HELP ") {
            (Meta::Help, r)
        } else if let Some(r) = s.strip_prefix("# UNIT ") {
            (Meta::Unit, r)
        } else {
            return Err(err(
                no,
                format!(
                    "invalid line {}: only # TYPE, # HELP, # UNIT and # EOF may start with '#'",
                    lex::snippet(s)
                ),
            ));
        };
        let b = rest.as_bytes();
        let e = lex::metric_name_end(b, 0);
        if e == 0 {
            return Err(err(
                no,
                format!("invalid metric name in {}", lex::snippet(s)),
            ));
        }
        if b.get(e) != Some(&b' ') {
            return Err(err(
                no,
                format!(
                    "expected a space and a value after the metric name in {}",
                    lex::snippet(s)
                ),
            ));
        }
        self.metadata(no, kw, &rest[..e], &rest[e + 1..])
    }

    fn metadata(
        &mut self,
        no: usize,
        kw: Meta,
        name: &'a str,
        value: &'a str,
    ) -> Result<(), ParseError> {
        match &self.fam {
            Some(f) if f.name == name => {
                if f.has_samples {
                    return Err(err(no, format!("metadata for {name:?} after its samples")));
                }
            }
            _ => {
                self.close_family(no)?;
                self.fam = Some(Family::new(name));
            }
        }
        let f = self.fam.as_mut().expect("family just opened");
        f.has_metadata = true;
        match kw {
            Meta::Type => {
                if f.type_seen {
                    return Err(err(no, format!("second TYPE line for {name:?}")));
                }
                f.type_seen = true;
                f.kind = match value {
                    "counter" => MetricType::Counter,
                    "gauge" => MetricType::Gauge,
                    "histogram" => MetricType::Histogram,
                    "gaugehistogram" => MetricType::GaugeHistogram,
                    "summary" => MetricType::Summary,
                    "info" => MetricType::Info,
                    "stateset" => MetricType::StateSet,
                    "unknown" => MetricType::Unknown,
                    _ => {
                        return Err(err(
                            no,
                            format!("invalid metric type {}", lex::snippet(value)),
                        ))
                    }
                };
            }
            Meta::Help => {
                if f.help.is_some() {
                    return Err(err(no, format!("second HELP line for {name:?}")));
                }
                let help = if value.contains('\\') {
                    lex::unescape(value, Escapes::Keep)
                        .map_err(|m| err(no, format!("{m} in HELP")))?
                } else {
                    value.to_owned()
                };
                f.help = Some(help);
            }
            Meta::Unit => {
                if f.unit.is_some() {
                    return Err(err(no, format!("second UNIT line for {name:?}")));
                }
                if !value
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
                {
                    return Err(err(no, format!("invalid unit {}", lex::snippet(value))));
                }
                if !value.is_empty() && !name.strip_suffix(value).is_some_and(|r| r.ends_with('_'))
                {
                    return Err(err(
                        no,
                        format!("unit {value:?} is not a suffix of the family name {name:?}"),
                    ));
                }
                f.unit = Some(value);
            }
        }
        if matches!(f.kind, MetricType::Info | MetricType::StateSet)
            && f.unit.is_some_and(|u| !u.is_empty())
        {
            return Err(err(
                no,
                format!("{} family {name:?} cannot have a unit", f.kind.as_str()),
            ));
        }
        Ok(())
    }

    fn sample(&mut self, no: usize, s: &'a str) -> Result<(), ParseError> {
        let b = s.as_bytes();
        let e = lex::metric_name_end(b, 0);
        if e == 0 {
            return Err(err(
                no,
                format!("invalid metric name at {}", lex::snippet(s)),
            ));
        }
        let name = &s[..e];
        self.pairs.clear();
        let mut i = e;
        if b.get(i) == Some(&b'{') {
            i = parse_labels(s, i, &mut self.pairs).map_err(|m| err(no, m))?;
        }
        if b.get(i) != Some(&b' ') {
            return Err(err(
                no,
                format!(
                    "expected a space and a value after {}",
                    lex::snippet(&s[..i])
                ),
            ));
        }
        i += 1;
        let ve = lex::space_end(b, i);
        let value = number::parse_float(&s[i..ve])
            .ok_or_else(|| err(no, format!("invalid value {}", lex::snippet(&s[i..ve]))))?;
        let mut ts = None;
        let mut exemplar = false;
        if ve < b.len() {
            let i = ve + 1;
            if b.get(i) == Some(&b'#') {
                self.exemplar(s, i).map_err(|m| err(no, m))?;
                exemplar = true;
            } else {
                let te = lex::space_end(b, i);
                ts = Some(number::parse_om_timestamp(&s[i..te]).ok_or_else(|| {
                    err(no, format!("invalid timestamp {}", lex::snippet(&s[i..te])))
                })?);
                if te < b.len() {
                    if b.get(te + 1) != Some(&b'#') {
                        return Err(err(
                            no,
                            format!(
                                "unexpected text after the timestamp: {}",
                                lex::snippet(&s[te..])
                            ),
                        ));
                    }
                    self.exemplar(s, te + 1).map_err(|m| err(no, m))?;
                    exemplar = true;
                }
            }
        }
        self.add_sample(no, name, value, ts, exemplar)
    }

    /// Checks the exemplar starting at the `#` at `i` up to the end of the
    /// line; it is then dropped.
    fn exemplar(&mut self, s: &'a str, i: usize) -> Result<(), String> {
        let b = s.as_bytes();
        if !s[i..].starts_with("# {") {
            return Err(format!(
                "invalid exemplar {}: expected '# {{labels}} value [timestamp]'",
                lex::snippet(&s[i..])
            ));
        }
        self.exemplar_pairs.clear();
        let mut j = parse_labels(s, i + 2, &mut self.exemplar_pairs)?;
        series::sort_and_check(&mut self.exemplar_pairs).map_err(|m| format!("exemplar: {m}"))?;
        let chars: usize = self
            .exemplar_pairs
            .iter()
            .map(|p| p.name.chars().count() + p.value.chars().count())
            .sum();
        if chars > EXEMPLAR_MAX_CHARS {
            return Err(format!(
                "exemplar labels are {chars} characters long, more than {EXEMPLAR_MAX_CHARS}"
            ));
        }
        if b.get(j) != Some(&b' ') {
            return Err("expected a space and a value after the exemplar labels".into());
        }
        j += 1;
        let ve = lex::space_end(b, j);
        if number::parse_float(&s[j..ve]).is_none() {
            return Err(format!(
                "invalid exemplar value {}",
                lex::snippet(&s[j..ve])
            ));
        }
        if ve < b.len() {
            let t = ve + 1;
            let te = lex::space_end(b, t);
            if te < b.len() {
                return Err(format!(
                    "unexpected text after the exemplar: {}",
                    lex::snippet(&s[te..])
                ));
            }
            if number::parse_om_timestamp(&s[t..te]).is_none() {
                return Err(format!(
                    "invalid exemplar timestamp {}",
                    lex::snippet(&s[t..te])
                ));
            }
        }
        Ok(())
    }

    fn add_sample(
        &mut self,
        no: usize,
        name: &'a str,
        value: f64,
        ts: Option<(f64, i64)>,
        exemplar: bool,
    ) -> Result<(), ParseError> {
        use MetricType as T;

        // The family: the current one if the name fits its type, else a new
        // family without metadata, named after the sample.
        let role = self
            .fam
            .as_ref()
            .and_then(|f| role_of(f.kind, name.strip_prefix(f.name)?));
        let role = match role {
            Some(r) => r,
            None => {
                self.close_family(no)?;
                self.fam = Some(Family::new(name));
                Role::Value
            }
        };
        self.finalize(no)?;
        let fam = self.fam.as_mut().expect("family set above");
        fam.has_samples = true;
        let (kind, fam_name) = (fam.kind, fam.name);

        if exemplar
            && !matches!(
                (kind, role),
                (T::Counter, Role::Total) | (T::Histogram | T::GaugeHistogram, Role::Bucket)
            )
        {
            return Err(err(
                no,
                format!(
                    "{name}: exemplars are only allowed on counter totals and histogram buckets"
                ),
            ));
        }

        // Labels: the one that tells the samples of a point apart, and the
        // one a histogram/summary metric itself may not have.
        series::sort_and_check(&mut self.pairs).map_err(|m| err(no, m))?;
        let (point_label, forbidden) = match (kind, role) {
            (T::Histogram | T::GaugeHistogram, Role::Bucket) => ("le", ""),
            (T::Histogram | T::GaugeHistogram, _) => ("", "le"),
            (T::Summary, Role::Quantile) => ("quantile", ""),
            (T::Summary, _) => ("", "quantile"),
            (T::StateSet, _) => (fam_name, ""),
            _ => ("", ""),
        };
        let mut point_idx = None;
        for (k, p) in self.pairs.iter().enumerate() {
            if p.name == point_label {
                point_idx = Some(k);
            } else if p.name == forbidden {
                return Err(err(
                    no,
                    format!("{name} must not have a {forbidden:?} label"),
                ));
            }
        }
        let point_value = point_idx.map(|k| &self.pairs[k].value);

        let key = match role {
            Role::Bucket => {
                let le = point_value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err(no, format!("{name} has no \"le\" label")))?;
                let bound = match le.as_ref() {
                    "+Inf" => Some(f64::INFINITY),
                    v if number::is_realnumber(v) => number::parse_float(v),
                    _ => None,
                }
                .ok_or_else(|| err(no, format!("{name}: invalid \"le\" value {le:?}")))?;
                check_count(no, name, value)?;
                PointKey::Bucket(bound)
            }
            Role::Quantile => {
                let q = point_value
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| err(no, format!("{name} has no \"quantile\" label")))?;
                let qv = Some(q.as_ref())
                    .filter(|v| number::is_realnumber(v))
                    .and_then(number::parse_float)
                    .filter(|v| (0.0..=1.0).contains(v))
                    .ok_or_else(|| {
                        err(
                            no,
                            format!("{name}: invalid quantile {q:?}, must be within 0 and 1"),
                        )
                    })?;
                PointKey::Quantile(qv)
            }
            Role::Value if kind == T::StateSet => {
                let state = point_value.ok_or_else(|| {
                    err(
                        no,
                        format!("stateset sample {name} has no {fam_name:?} label"),
                    )
                })?;
                if value != 0.0 && value != 1.0 {
                    return Err(err(
                        no,
                        format!("stateset {name}: value must be 0 or 1, got {value}"),
                    ));
                }
                PointKey::State(state.clone())
            }
            Role::Total => {
                if value.is_nan() || value < 0.0 {
                    return Err(err(
                        no,
                        format!("counter {name} must not be negative or NaN, got {value}"),
                    ));
                }
                PointKey::Single(role)
            }
            Role::Count => {
                check_count(no, name, value)?;
                PointKey::Single(role)
            }
            Role::Sum => {
                if value.is_nan() {
                    return Err(err(no, format!("{name} must not be NaN")));
                }
                PointKey::Single(role)
            }
            Role::Info => {
                if value != 1.0 {
                    return Err(err(
                        no,
                        format!("info {name}: value must be 1, got {value}"),
                    ));
                }
                PointKey::Single(role)
            }
            Role::Value | Role::Created => PointKey::Single(role),
        };

        // The metric: contiguous, and timestamps consistent and not going
        // backwards; the point: nothing twice.
        self.scratch.clear();
        for (k, p) in self.pairs.iter().enumerate() {
            if Some(k) == point_idx || p.value.is_empty() {
                continue;
            }
            self.scratch.extend_from_slice(p.name.as_bytes());
            self.scratch.push(0xff);
            self.scratch.extend_from_slice(p.value.as_bytes());
            self.scratch.push(0xff);
        }
        if !self.in_metric || self.scratch != self.key {
            self.flush_point()?;
            let fam = self.fam.as_mut().expect("family set above");
            if !fam.metrics.insert(self.scratch.clone()) {
                return Err(err(
                    no,
                    format!("{name}: the samples of a metric must be contiguous (it reappears after another metric of family {fam_name:?})"),
                ));
            }
            std::mem::swap(&mut self.key, &mut self.scratch);
            self.in_metric = true;
            self.ts_mode = None;
        }
        match (self.ts_mode, ts) {
            (None, _) => self.ts_mode = Some(ts.is_some()),
            (Some(true), None) | (Some(false), Some(_)) => {
                return Err(err(
                    no,
                    format!("{name}: a metric's samples must all have a timestamp or none"),
                ));
            }
            _ => {}
        }
        if let Some((secs, _)) = ts {
            if self.point.active {
                if secs < self.last_ts {
                    return Err(err(
                        no,
                        format!("{name}: timestamps of a metric must not go backwards"),
                    ));
                }
                if secs > self.last_ts || self.point.contains(&key) {
                    self.flush_point()?;
                }
            }
            self.last_ts = secs;
        } else if self.point.active && self.point.contains(&key) {
            return Err(err(
                no,
                match key {
                    PointKey::Bucket(_) => {
                        format!("{name}: histogram buckets out of order or repeated")
                    }
                    _ => format!("{name}: duplicate sample"),
                },
            ));
        }
        self.point
            .add(no, key, value)
            .map_err(|m| err(no, format!("{name}: {m}")))?;

        // The sample itself, with `le`/`quantile` in canonical form.
        if matches!(
            (kind, role),
            (T::Histogram, Role::Bucket) | (T::Summary, Role::Quantile)
        ) {
            let k = point_idx.expect("checked above");
            let v = number::parse_float(&self.pairs[k].value).expect("checked above");
            let canon = self.canonical.get(&self.pairs[k].value, v);
            self.pairs[k].value = Cow::Owned(canon);
        }
        let pos = self
            .pairs
            .partition_point(|p| p.name.as_ref() < METRIC_NAME);
        self.pairs.insert(
            pos,
            RawLabel {
                name: Cow::Borrowed(METRIC_NAME),
                value: Cow::Borrowed(name),
            },
        );
        self.series.build(&mut self.pairs);
        self.pending = Some((value, ts.map(|t| t.1)));
        Ok(())
    }

    /// Checks the names of the current family against those of earlier
    /// families, once its type is settled (at its first sample or its end).
    fn finalize(&mut self, no: usize) -> Result<(), ParseError> {
        let Some(f) = self.fam.as_mut() else {
            return Ok(());
        };
        if f.finalized {
            return Ok(());
        }
        f.finalized = true;
        let names = std::iter::once(f.name.to_owned()).chain(
            suffixes(f.kind)
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| format!("{}{s}", f.name)),
        );
        for n in names {
            if self.used.contains(&n) {
                return Err(err(
                    no,
                    format!(
                        "metric family {:?} clashes with an earlier family over the name {n:?} (families must be unique and not interleaved)",
                        f.name
                    ),
                ));
            }
            self.used.insert(n);
        }
        Ok(())
    }

    /// Ends the current metric point, checking histogram structure.
    fn flush_point(&mut self) -> Result<(), ParseError> {
        if !self.point.active {
            return Ok(());
        }
        self.point.active = false;
        let Some(f) = &self.fam else { return Ok(()) };
        let (count, sum) = match f.kind {
            MetricType::Histogram => ("_count", "_sum"),
            MetricType::GaugeHistogram => ("_gcount", "_gsum"),
            _ => return Ok(()),
        };
        let (p, name) = (&self.point, f.name);
        let Some(inf) = p.inf_bucket else {
            return Err(err(
                p.line,
                format!("histogram {name:?} has no +Inf bucket"),
            ));
        };
        match (p.count, p.sum) {
            (Some(c), Some(_)) if c != inf => {
                return Err(err(
                    p.line,
                    format!("{name}{count} is {c} but the +Inf bucket is {inf}"),
                ));
            }
            (Some(_), None) => {
                return Err(err(p.line, format!("{name}{count} without {name}{sum}")))
            }
            (None, Some(_)) => {
                return Err(err(p.line, format!("{name}{sum} without {name}{count}")))
            }
            _ => {}
        }
        if p.sum.is_some_and(|s| s < 0.0) && !p.negative_bucket {
            return Err(err(
                p.line,
                format!("{name}{sum} is negative but no bucket bound is"),
            ));
        }
        Ok(())
    }

    fn close_family(&mut self, no: usize) -> Result<(), ParseError> {
        self.flush_point()?;
        self.in_metric = false;
        self.finalize(no)?;
        if let Some(f) = self.fam.take() {
            if f.has_metadata {
                self.metadata.push(Metadata {
                    family: f.name.to_owned(),
                    kind: f.kind,
                    help: f.help.unwrap_or_default(),
                    unit: f.unit.unwrap_or_default().to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// A count (`_count`, `_gcount`, bucket): a non-negative integer.
fn check_count(no: usize, name: &str, v: f64) -> Result<(), ParseError> {
    if v.is_nan() || v < 0.0 || v.fract() != 0.0 {
        return Err(err(
            no,
            format!("{name} must be a non-negative integer, got {v}"),
        ));
    }
    Ok(())
}

/// `{name="value",...}` starting at the `{` at `i`, strictly: no blanks, no
/// trailing comma. Returns the index after `}`.
fn parse_labels<'a>(s: &'a str, i: usize, out: &mut Vec<RawLabel<'a>>) -> Result<usize, String> {
    let b = s.as_bytes();
    let mut i = i + 1;
    if b.get(i) == Some(&b'}') {
        return Ok(i + 1);
    }
    loop {
        let ne = lex::label_name_end(b, i);
        if ne == i {
            return Err(format!("invalid label name at {}", lex::snippet(&s[i..])));
        }
        let name = &s[i..ne];
        if b.get(ne) != Some(&b'=') {
            return Err(format!("expected '=' after label name {name:?}"));
        }
        if b.get(ne + 1) != Some(&b'"') {
            return Err(format!("expected '\"' after {name}="));
        }
        if name == METRIC_NAME {
            return Err(format!("label name {METRIC_NAME:?} is reserved"));
        }
        let (value, j) =
            lex::quoted(s, ne + 1, Escapes::Keep).map_err(|m| format!("label {name:?}: {m}"))?;
        out.push(RawLabel {
            name: Cow::Borrowed(name),
            value,
        });
        match b.get(j) {
            Some(b',') => i = j + 1,
            Some(b'}') => return Ok(j + 1),
            _ => {
                return Err(format!(
                    "expected ',' or '}}' after the value of label {name:?}"
                ))
            }
        }
    }
}
