//! Exposition format parsers: the Prometheus text format 0.0.4 and
//! OpenMetrics 1.0 text (Prometheus' `model/textparse`).
//!
//! [`parse`] turns a scraped body into flat [`Sample`]s, each with its full
//! label set (`__name__` included), plus the [`Metadata`] of every metric
//! family that had a `# TYPE`, `# HELP` or `# UNIT` line. The scrape loop
//! picks the [`Format`] from the response's Content-Type with
//! [`format_for_content_type`]. A page is all or nothing: the first error
//! rejects it, with its line number, as both Prometheus and the OpenMetrics
//! spec ("partial or invalid expositions MUST be considered erroneous in
//! their entirety") require.
//!
//! Both parsers are hand-written single passes over the lines of a body that
//! is checked to be UTF-8 once, up front (so invalid UTF-8 anywhere, even in
//! a comment, rejects the page). They allocate the strings that end up in
//! [`Labels`] and little else: a label that did not change since the previous
//! sample is not rebuilt, `le`/`quantile` renderings are memoized, and
//! OpenMetrics keeps one key per series for its grouping rules.
//!
//! # Strictness
//!
//! **OpenMetrics is parsed strictly**, per its ABNF and data model and the
//! upstream parser test suite: `# EOF` required and last, no blank lines or
//! free comments, single spaces, no trailing commas, `_total`/`_created`
//! counters, histogram/summary/stateset/info structure and values, families
//! and series not interleaved, timestamps not going backwards, exemplars
//! only on counter totals and buckets and at most 128 characters of labels.
//! Three rules are relaxed because client_golang breaks them on real pages
//! (and Prometheus accepts them): a summary's quantile values and `_sum` may
//! be negative, and a histogram with negative bucket bounds may have a
//! `_sum` (which may then be negative). A `"` in a HELP text is accepted
//! unescaped, and an exemplar's value is not checked against its bucket.
//!
//! **The Prometheus text format is parsed as Prometheus' scraper parses
//! it** (`model/textparse/promparse.go`, 2.42 and 3.x; see `promtext.rs`
//! for the rules): a page Prometheus ingests is ingested with the same
//! samples, and one it rejects is rejected with the line and a reason
//! worded like its own. That is more lenient than the format's reference
//! parser, prometheus/common's `expfmt.TextParser` (no final line feed
//! needed, TYPE lines after samples or repeated, other escapes kept,
//! missing commas...) and stricter in two places (no negative timestamps,
//! TYPE spelled exactly). The strict reading lives on in [`parse_strict`]
//! (`expfmt.rs`), for `wasmon check metrics` and its lint, as `promtool
//! check metrics` uses expfmt.
//!
//! # Values and labels
//!
//! - Values: decimal floats, `+Inf`/`-Inf`/`NaN` (any case); no hex, no `_`.
//!   Any NaN becomes a plain quiet NaN, never the staleness marker.
//! - Timestamps: integer milliseconds in the text format; float seconds in
//!   OpenMetrics, converted to milliseconds (truncated toward zero, as
//!   Prometheus does).
//! - Label values and (OpenMetrics) HELP unescape `\\`, `\"`, `\n`;
//!   another escaped character is kept with its backslash. Text format HELP
//!   unescapes `\\` and `\n` only, as Prometheus does. An empty label value
//!   means the label is absent.
//! - As in Prometheus 3, the `le` label of a histogram's samples and the
//!   `quantile` label of a summary's (in the text format: of the samples
//!   after a `histogram`/`summary` TYPE line) are normalized to OpenMetrics' canonical
//!   float text (`"1"` → `"1.0"`, `"1e-04"` → `"0.0001"`, `"+Inf"`) in both
//!   formats, so series keep their identity whichever format a target
//!   speaks. Gauge histograms are left alone, as Prometheus does.
//! - OpenMetrics `_created` samples are kept as ordinary samples, as
//!   Prometheus does unless created-timestamp ingestion is enabled.
//! - Exemplars are parsed and validated, then dropped.

mod expfmt;
mod lex;
pub mod lint;
mod number;
mod openmetrics;
mod promtext;
mod series;

#[cfg(test)]
mod tests;

use crate::model::{Labels, TimestampMs};

/// The exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`.
    PromText,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

/// Content negotiation by Content-Type: `application/openmetrics-text` (any
/// version or parameters, case-insensitive) is OpenMetrics; anything else —
/// `text/plain; version=0.0.4`, a missing or unknown type — falls back to the
/// Prometheus text format, as Prometheus does.
pub fn format_for_content_type(content_type: Option<&str>) -> Format {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media.eq_ignore_ascii_case("application/openmetrics-text") {
        Format::OpenMetrics
    } else {
        Format::PromText
    }
}

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// OpenMetrics `unknown`, text format `untyped`, or no TYPE line.
    Unknown,
}

impl MetricType {
    /// The name as Prometheus' metadata API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// What a page says about one metric family. Missing pieces are empty
/// strings / `Unknown`; an empty HELP or UNIT counts as missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    pub family: String,
    pub kind: MetricType,
    pub help: String,
    pub unit: String,
}

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// All labels, including `__name__`.
    pub labels: Labels,
    pub value: f64,
    /// The sample's own timestamp, if the line had one.
    pub timestamp_ms: Option<TimestampMs>,
}

/// A parsed page: samples in page order, and metadata in the order families
/// first appear.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    pub samples: Vec<Sample>,
    pub metadata: Vec<Metadata>,
}

/// Why a page was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(line: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line,
            message: message.into(),
        }
    }
}

/// A sink refused a sample: parsing stopped there (the sink knows why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// Why [`parse_each`] ended before the end of the page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupted {
    /// The page is invalid.
    Parse(ParseError),
    /// The sink returned [`Stop`].
    Stopped,
}

impl From<ParseError> for Interrupted {
    fn from(e: ParseError) -> Self {
        Interrupted::Parse(e)
    }
}

impl From<Stop> for Interrupted {
    fn from(_: Stop) -> Self {
        Interrupted::Stopped
    }
}

/// One sample as [`parse_each`] hands it over: its labels are the
/// parser's (reused for the next line), so a sink copies what it keeps.
#[derive(Debug, Clone, Copy)]
pub struct SampleRef<'a> {
    pub labels: &'a Labels,
    pub value: f64,
    pub timestamp_ms: Option<TimestampMs>,
}

/// Where [`parse_each`] hands each sample, in page order.
pub type Sink<'s> = dyn FnMut(SampleRef<'_>) -> Result<(), Stop> + 's;

/// Parses an exposition body, handing every sample to `sink` as soon as
/// its line is read, so a page of 100k series is never held parsed in
/// memory. Returns the page's metadata. Samples handed over before an
/// error are not valid on their own: an error anywhere rejects the page.
pub fn parse_each(
    body: &[u8],
    format: Format,
    sink: &mut Sink<'_>,
) -> Result<Vec<Metadata>, Interrupted> {
    match (std::str::from_utf8(body), format) {
        (Ok(text), Format::PromText) => promtext::parse(text, sink),
        (Ok(text), Format::OpenMetrics) => openmetrics::parse(text, sink),
        // Prometheus skips free comments without looking at their bytes.
        (Err(_), Format::PromText) => promtext::parse(&promtext::comments_sanitized(body)?, sink),
        (Err(e), _) => Err(invalid_utf8(body, e).into()),
    }
}

fn invalid_utf8(body: &[u8], e: std::str::Utf8Error) -> ParseError {
    let ok = &body[..e.valid_up_to()];
    let line = ok.iter().filter(|&&b| b == b'\n').count() + 1;
    ParseError::new(line, "invalid UTF-8")
}

/// Parses a whole exposition body into memory (tests, tools; the scrape
/// loop streams with [`parse_each`]).
pub fn parse(body: &[u8], format: Format) -> Result<Parsed, ParseError> {
    collect(|sink| parse_each(body, format, sink))
}

/// Parses a text-format page the strict way prometheus/common's
/// `expfmt.TextParser` does (`promtool check metrics`, client libraries):
/// the checks `wasmon check metrics` reports and ingestion does not make.
pub fn parse_strict(body: &[u8]) -> Result<Parsed, ParseError> {
    collect(|sink| {
        let text = std::str::from_utf8(body).map_err(|e| invalid_utf8(body, e))?;
        expfmt::parse(text, sink)
    })
}

fn collect(
    run: impl FnOnce(&mut Sink<'_>) -> Result<Vec<Metadata>, Interrupted>,
) -> Result<Parsed, ParseError> {
    let mut samples = Vec::new();
    let metadata = run(&mut |s| {
        samples.push(Sample {
            labels: s.labels.clone(),
            value: s.value,
            timestamp_ms: s.timestamp_ms,
        });
        Ok(())
    })
    .map_err(|e| match e {
        Interrupted::Parse(e) => e,
        // The sink above never stops.
        Interrupted::Stopped => ParseError::new(0, "stopped"),
    })?;
    Ok(Parsed { samples, metadata })
}
