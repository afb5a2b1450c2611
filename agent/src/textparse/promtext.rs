//! The Prometheus text format 0.0.4 as Prometheus' scraper reads it
//! (`model/textparse/promlex.l` and `promparse.go`, 2.42 and 3.x): what it
//! ingests is ingested here, with the same samples, and what it rejects is
//! rejected, with the line and a reason worded like its own. The strict
//! reading of the format (prometheus/common's `expfmt.TextParser`, what
//! `promtool check metrics` applies) is [`super::expfmt`].
//!
//! Per line, blanks being spaces and tabs (the lexer's states in brackets):
//!
//! ```text
//! line     = *blank ( "#" comment / NUL / "" ) / sample
//! comment  = 1*blank ("HELP" / "TYPE") 1*blank mname text   [sMeta1, sMeta2]
//!          / anything                                        (a comment)
//! text     = everything after the name, less its first byte; all-blank: ""
//! sample   = ( mname *blank ["{" labels "}"] / "{" labels-with-name "}" )
//!            *blank value *blank [timestamp *blank]
//! labels   = *( *blank (lname / qname) *blank "=" *blank lvalue *blank [","] ) *blank
//! value    = 1*(any but "{", blank)           (Go's ParseFloat, no p/P/_)
//! timestamp= 1*DIGIT                          (int64 milliseconds, no sign)
//! ```
//!
//! What that means next to expfmt, each as Prometheus does it:
//! - the last line needs no line feed; blank lines and blanks at the end of
//!   a sample line are fine;
//! - HELP and TYPE lines are not checked against the samples: they may come
//!   after them, repeat (the last one wins) or name a metric that has no
//!   sample; a TYPE must be exactly `counter`, `gauge`, `histogram`,
//!   `summary` or `untyped` after one blank (`# TYPE a  counter` and a
//!   trailing blank are refused), a HELP may be empty;
//! - label values unescape `\\`, `\"`, `\n` and keep any other `\x` as it
//!   is; HELP text unescapes `\\` and `\n` only;
//! - commas between labels may be left out, and one may trail;
//! - a sample's timestamp has no sign (`-2` is refused);
//! - a line starting with NUL ends the page (the lexer reads it as EOF);
//! - a comment need not be UTF-8 (see `parse_each`); HELP text and label
//!   values must be;
//! - blanks before a sample's metric name are refused (Prometheus makes
//!   them part of the name, which is then invalid).
//!
//! As in Prometheus 3, the `le` of a sample read after a `histogram` TYPE
//! line and the `quantile` after a `summary` one are rewritten in
//! OpenMetrics' canonical float text when they are numbers (`1` → `1.0`);
//! the type is the last TYPE line's, whatever metric it named. Quoted
//! (UTF-8) names are accepted inside braces and in HELP/TYPE lines.
//! Duplicate label names (so also `__name__` inside braces) reject the
//! page, as Prometheus' head refuses such a sample and fails the scrape.

use std::borrow::Cow;
use std::collections::HashMap;

use super::lex::{self, Escapes, LexError, Line, Lines};
use super::number;
use super::series::{self, Canonical, RawLabel, SeriesBuilder};
use super::{Interrupted, Metadata, MetricType, ParseError, SampleRef, Sink};
use crate::model::TimestampMs;
use crate::model::METRIC_NAME;

pub(super) fn parse(text: &str, sink: &mut Sink<'_>) -> Result<Vec<Metadata>, Interrupted> {
    let mut p = Parser::default();
    let mut lines = Lines::new(text);
    while let Some(line) = lines.next() {
        let flow = match p.line(&line) {
            // A label value (or quoted name) with a raw line feed in it:
            // the sample runs on, and is read again as one line.
            Err(e) => match p.open_quote.take() {
                Some(q) => {
                    let open = q - text.as_ptr() as usize;
                    let end = lex::logical_line_end(text, open).ok_or(e)?;
                    let flow = p.line(&lines.extend(&line, end));
                    p.open_quote = None;
                    flow?
                }
                None => return Err(e.into()),
            },
            Ok(flow) => flow,
        };
        if flow == Flow::EndOfPage {
            break;
        }
        // A line has at most one sample: the page is never held parsed.
        if let Some((value, timestamp_ms)) = p.pending.take() {
            sink(SampleRef {
                labels: p.series.labels(),
                value,
                timestamp_ms,
            })?;
        }
    }
    Ok(p.finish())
}

/// Prometheus reads a page that is not UTF-8 as long as the bad bytes are
/// in free comments (which it skips) or after a line that starts with NUL
/// (where it stops). Returns `text` with such comment lines emptied (line
/// numbers kept), or the first line whose bad bytes Prometheus would refuse.
pub(super) fn comments_sanitized(body: &[u8]) -> Result<String, ParseError> {
    let mut out = Vec::with_capacity(body.len());
    for (k, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
        let i = lex::skip_blank(line, 0);
        if line.get(i) == Some(&0) {
            break;
        }
        if std::str::from_utf8(line).is_ok() {
            out.extend_from_slice(line);
            continue;
        }
        let why = match metadata_keyword(line, i) {
            None if line.get(i) == Some(&b'#') => {
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
                continue;
            }
            Some(kw) if kw == b"HELP" => "help text is not a valid utf8 string",
            Some(_) => "invalid metric type: not a valid utf8 string",
            None => "invalid UTF-8 label value",
        };
        return Err(ParseError::new(k + 1, why));
    }
    // Only whole lines that were UTF-8 were kept.
    String::from_utf8(out).map_err(|_| ParseError::new(1, "invalid UTF-8"))
}

/// For a line whose first non-blank byte (at `i`) is `#`: the keyword when
/// it is a HELP or TYPE line (`#`, blanks, the keyword, a blank), as the
/// lexer's `#[ \t]+` and `HELP[\t ]+` rules decide.
fn metadata_keyword(b: &[u8], i: usize) -> Option<&[u8]> {
    if b.get(i) != Some(&b'#') || !b.get(i + 1).is_some_and(|&c| lex::is_blank(c)) {
        return None;
    }
    let k = lex::skip_blank(b, i + 1);
    let kw = b.get(k..k + 4)?;
    (matches!(kw, b"HELP" | b"TYPE") && b.get(k + 4).is_some_and(|&c| lex::is_blank(c)))
        .then_some(kw)
}

#[derive(PartialEq, Eq)]
enum Flow {
    Next,
    EndOfPage,
}

struct Family {
    name: String,
    kind: MetricType,
    help: String,
}

#[derive(Default)]
struct Parser<'a> {
    /// Families named by a HELP or TYPE line, in order of appearance.
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
    /// The type of the last TYPE line, which decides the `le`/`quantile`
    /// rewriting of the samples after it (Prometheus' `p.mtype`).
    mtype: Option<MetricType>,
    /// The current line's sample (its labels are `series`'), handed to the
    /// sink after the line.
    pending: Option<(f64, Option<TimestampMs>)>,
    /// Set with an error when a quoted string did not close on its line:
    /// the address of its opening quote.
    open_quote: Option<usize>,
    pairs: Vec<RawLabel<'a>>,
    series: SeriesBuilder,
    canonical: Canonical<'a>,
}

fn err(line: usize, msg: impl std::fmt::Display) -> ParseError {
    ParseError::new(line, msg.to_string())
}

/// What the lexer found where it wanted something else, as Prometheus
/// quotes it: the next character, or the end of the line.
fn got(s: &str, i: usize) -> String {
    match s[i..].chars().next() {
        Some(c) => format!("{:?}", c.to_string()),
        None => "\"\\n\"".to_string(),
    }
}

impl<'a> Parser<'a> {
    fn line(&mut self, line: &Line<'a>) -> Result<Flow, ParseError> {
        let (no, s) = (line.no, line.text);
        let b = s.as_bytes();
        let i = lex::skip_blank(b, 0);
        match b.get(i) {
            None => Ok(Flow::Next),
            Some(0) => Ok(Flow::EndOfPage),
            Some(b'#') => {
                if let Some(kw) = metadata_keyword(b, i) {
                    let at = lex::skip_blank(b, i + 1) + 4;
                    self.metadata(no, s, kw == b"HELP", lex::skip_blank(b, at))?;
                }
                Ok(Flow::Next)
            }
            Some(_) => {
                self.sample(no, s, i)?;
                Ok(Flow::Next)
            }
        }
    }

    /// A HELP or TYPE line from its metric name (at `i`).
    fn metadata(&mut self, no: usize, s: &'a str, help: bool, i: usize) -> Result<(), ParseError> {
        let b = s.as_bytes();
        let kw = if help { "HELP" } else { "TYPE" };
        let bad_name = || {
            err(
                no,
                format!("expected metric name after {kw}, got {}", got(s, i)),
            )
        };
        let (name, j) = if b.get(i) == Some(&b'"') {
            lex::quoted(s, i, Escapes::Keep).map_err(|_| bad_name())?
        } else {
            let e = lex::metric_name_end(b, i);
            if e == i {
                return Err(bad_name());
            }
            (Cow::Borrowed(&s[i..e]), e)
        };
        // The lexer takes the rest of the line as the text and the parser
        // drops its first byte (the blank after the name); a rest that is
        // all blanks is read as blanks and an empty text.
        let rest = &s[j..];
        let text = if lex::skip_blank(rest.as_bytes(), 0) == rest.len() {
            ""
        } else {
            // A first byte that starts a multi-byte character leaves
            // invalid UTF-8 behind, which both HELP and TYPE refuse.
            rest.get(1..).ok_or_else(|| {
                err(
                    no,
                    if help {
                        "help text is not a valid utf8 string".to_string()
                    } else {
                        format!("invalid metric type {:?}", rest)
                    },
                )
            })?
        };
        let fam = self.family(&name);
        if help {
            self.families[fam].help = unescape_help(text);
        } else {
            let kind = match text {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                "summary" => MetricType::Summary,
                "untyped" => MetricType::Unknown,
                _ => return Err(err(no, format!("invalid metric type {text:?}"))),
            };
            self.families[fam].kind = kind;
            self.mtype = Some(kind);
        }
        Ok(())
    }

    fn sample(&mut self, no: usize, s: &'a str, i: usize) -> Result<(), ParseError> {
        let b = s.as_bytes();
        self.pairs.clear();
        let mut name: Option<Cow<'a, str>> = None;
        let mut i = i;
        if b[i] == b'{' {
            i = self.labels(no, s, i + 1, &mut name, true)?;
            if name.is_none() {
                return Err(err(no, "metric name not set in the label set"));
            }
        } else {
            let e = lex::metric_name_end(b, i);
            if e == i {
                return Err(err(
                    no,
                    format!("expected a valid start token, got {}", got(s, i)),
                ));
            }
            if i > 0 {
                // Prometheus keeps the blanks in the name, which then fails
                // its name check.
                return Err(err(
                    no,
                    format!("invalid metric name {:?}: blanks before it", &s[..e]),
                ));
            }
            name = Some(Cow::Borrowed(&s[i..e]));
            i = lex::skip_blank(b, e);
            if b.get(i) == Some(&b'{') {
                i = self.labels(no, s, i + 1, &mut name, false)?;
            }
        }
        let name = name.unwrap_or_default();

        let i = lex::skip_blank(b, i);
        let ve = value_end(b, i);
        if ve == i {
            return Err(err(
                no,
                format!("expected value after metric, got {}", got(s, i)),
            ));
        }
        let raw = &s[i..ve];
        let value = number::parse_float(raw).ok_or_else(|| {
            if raw.contains(['p', 'P', '_']) {
                err(no, format!("unsupported character in float: {raw:?}"))
            } else {
                err(
                    no,
                    format!("strconv.ParseFloat: parsing {raw:?}: invalid syntax"),
                )
            }
        })?;
        let t = lex::skip_blank(b, ve);
        let mut timestamp_ms = None;
        if t < b.len() {
            let te = digits_end(b, t);
            if te == t {
                return Err(err(
                    no,
                    format!("expected timestamp or new record, got {}", got(s, t)),
                ));
            }
            let ts = s[t..te].parse::<i64>().map_err(|_| {
                err(
                    no,
                    format!(
                        "strconv.ParseInt: parsing {:?}: value out of range",
                        &s[t..te]
                    ),
                )
            })?;
            let end = lex::skip_blank(b, te);
            if end < b.len() {
                return Err(err(
                    no,
                    format!("expected next entry after timestamp, got {}", got(s, end)),
                ));
            }
            timestamp_ms = Some(ts);
        }

        let special = match self.mtype {
            Some(MetricType::Histogram) => "le",
            Some(MetricType::Summary) => "quantile",
            _ => "",
        };
        if !special.is_empty() {
            for p in self.pairs.iter_mut().filter(|p| p.name == special) {
                // Not a number: kept as it is.
                if let Some(v) = number::parse_float(&p.value) {
                    p.value = Cow::Owned(self.canonical.get(&p.value, v));
                }
            }
        }
        if name.is_empty() {
            return Err(err(no, "invalid metric name \"\""));
        }
        self.pairs.push(RawLabel {
            name: Cow::Borrowed(METRIC_NAME),
            value: name,
        });
        series::sort_and_check(&mut self.pairs).map_err(|e| match e {
            LexError::DuplicateLabel(n) => err(
                no,
                format!("label name {n:?} is not unique: invalid sample"),
            ),
            e => err(no, e),
        })?;
        self.series.build(&mut self.pairs);
        self.pending = Some((value, timestamp_ms));
        Ok(())
    }

    /// The label set after `{` (at `i`); returns the index after `}`. With
    /// `name_inside`, a quoted string followed by `,` or `}` is the metric
    /// name.
    fn labels(
        &mut self,
        no: usize,
        s: &'a str,
        mut i: usize,
        name: &mut Option<Cow<'a, str>>,
        name_inside: bool,
    ) -> Result<usize, ParseError> {
        let b = s.as_bytes();
        loop {
            i = lex::skip_blank(b, i);
            let quoted_name = match b.get(i) {
                Some(b'}') => return Ok(i + 1),
                Some(b'"') => true,
                Some(&c) if c.is_ascii_alphabetic() || c == b'_' => false,
                _ => return Err(err(no, format!("expected label name, got {}", got(s, i)))),
            };
            let (lname, j) = if quoted_name {
                lex::quoted(s, i, Escapes::Keep).map_err(|e| {
                    self.note_open_quote(&e, s, i);
                    err(no, format!("expected label name, got {}", got(s, i)))
                })?
            } else {
                let e = lex::label_name_end(b, i);
                (Cow::Borrowed(&s[i..e]), e)
            };
            i = lex::skip_blank(b, j);
            let c = b.get(i).copied();
            if quoted_name && matches!(c, Some(b',' | b'}')) {
                if !name_inside || name.is_some() {
                    return Err(err(no, "metric name already set in the label set"));
                }
                *name = Some(lname);
                i += 1;
                if c == Some(b'}') {
                    return Ok(i);
                }
                continue;
            }
            if c != Some(b'=') {
                return Err(err(no, format!("expected equal, got {}", got(s, i))));
            }
            if lname.is_empty() {
                return Err(err(no, "invalid label name \"\""));
            }
            i = lex::skip_blank(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return Err(err(no, format!("expected label value, got {}", got(s, i))));
            }
            let (value, j) = lex::quoted(s, i, Escapes::Keep).map_err(|e| {
                self.note_open_quote(&e, s, i);
                err(
                    no,
                    format!("expected label value, got {}: unterminated", got(s, i)),
                )
            })?;
            self.pairs.push(RawLabel { name: lname, value });
            // A comma may follow; without one the next label may still come.
            i = lex::skip_blank(b, j);
            if b.get(i) == Some(&b',') {
                i += 1;
            }
        }
    }

    fn note_open_quote(&mut self, e: &LexError, s: &str, i: usize) {
        if *e == LexError::Unterminated {
            self.open_quote = Some(s.as_ptr() as usize + i);
        }
    }

    /// The family a HELP/TYPE line names, creating it if needed.
    fn family(&mut self, name: &str) -> usize {
        if let Some(&f) = self.by_name.get(name) {
            return f;
        }
        self.families.push(Family {
            name: name.to_owned(),
            kind: MetricType::Unknown,
            help: String::new(),
        });
        self.by_name
            .insert(name.to_owned(), self.families.len() - 1);
        self.families.len() - 1
    }

    fn finish(self) -> Vec<Metadata> {
        self.families
            .into_iter()
            .map(|f| Metadata {
                family: f.name,
                kind: f.kind,
                help: f.help,
                unit: String::new(),
            })
            .collect()
    }
}

/// The end of a value token: up to a blank, `{` or the end of the line.
fn value_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !lex::is_blank(b[i]) && b[i] != b'{' {
        i += 1;
    }
    i
}

fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// HELP text as Prometheus unescapes it: `\\` and `\n` only; any other
/// backslash (a lone one at the end included) stays.
fn unescape_help(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(k) = rest.find('\\') {
        out.push_str(&rest[..k]);
        match rest.as_bytes().get(k + 1) {
            Some(b'\\') => out.push('\\'),
            Some(b'n') => out.push('\n'),
            _ => {
                out.push('\\');
                rest = &rest[k + 1..];
                continue;
            }
        }
        rest = &rest[k + 2..];
    }
    out.push_str(rest);
    out
}
