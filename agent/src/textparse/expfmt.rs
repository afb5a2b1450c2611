//! The Prometheus text format 0.0.4, parsed strictly, the way
//! prometheus/common's `expfmt.TextParser` does: `promtool check metrics`
//! and client libraries read it so; Prometheus' scraper is more lenient
//! (`promtext.rs`). Used by `wasmon check metrics`, never for ingestion.
//! Its test corpus (in `../shared/conformance/prometheus-common`) has 20
//! inputs that must be rejected; all 20 are. It rejects, where Prometheus'
//! scraper accepts,
//! - a last line without a line feed, and blanks after the value or timestamp,
//! - escape sequences other than `\\`, `\"`, `\n` in label values and HELP,
//! - a second HELP or TYPE line for a family, or a TYPE line after its samples,
//! - a histogram `le` or summary `quantile` label that is not a number,
//! - invalid UTF-8 anywhere, even in a comment.
//!
//! Conversely, like expfmt, it accepts negative timestamps and families
//! whose samples are not contiguous. Where expfmt and Prometheus differ the
//! other way, the stricter one wins: TYPE must be one of `counter`, `gauge`,
//! `histogram`, `summary`, `untyped` in lower case (expfmt also takes
//! `COUNTER`), and quoted (UTF-8) metric and label names are accepted
//! inside braces and in HELP/TYPE lines, as in Prometheus 3, but not as a
//! bare `"name"{...}` (an expfmt-only form).
//!
//! Grammar, per line, blanks being spaces and tabs:
//!
//! ```text
//! line    = *blank ( comment / sample / "" )
//! comment = "#" *blank ( ("HELP" / "TYPE") 1*blank name 1*blank text / anything )
//! sample  = ( name *blank ["{" labels "}"] / "{" labels-with-quoted-name "}" )
//!           *blank value [1*blank timestamp]
//! labels  = *blank [ label *blank *("," *blank label *blank) [","] *blank ]
//! label   = (label-name / quoted-name) *blank "=" *blank quoted-value
//! ```
//!
//! Families are merged by name across the page, and `foo_sum`/`foo_count`
//! (and `foo_bucket`) resolve to an earlier `foo` summary (histogram), as in
//! expfmt.

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
    for line in Lines::new(text) {
        p.line(line)?;
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

struct Family {
    name: String,
    /// `None` until a TYPE line or the first sample (which makes it untyped).
    kind: Option<MetricType>,
    help: Option<String>,
    has_metadata: bool,
}

#[derive(Default)]
struct Parser<'a> {
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
    /// The last sample name resolved and its family: consecutive samples
    /// mostly share a name, and a resolution never changes once made.
    last: Option<(Cow<'a, str>, usize)>,
    /// The current line's sample (its labels are `series`'), handed to the
    /// sink after the line.
    pending: Option<(f64, Option<TimestampMs>)>,
    pairs: Vec<RawLabel<'a>>,
    series: SeriesBuilder,
    canonical: Canonical<'a>,
}

fn err(line: usize, msg: impl std::fmt::Display) -> ParseError {
    ParseError::new(line, msg.to_string())
}

impl<'a> Parser<'a> {
    fn line(&mut self, line: Line<'a>) -> Result<(), ParseError> {
        let b = line.text.as_bytes();
        let i = lex::skip_blank(b, 0);
        if i == b.len() {
            return Ok(()); // blank line, or blanks at the very end
        }
        if b[i] == b'#' {
            self.comment(line.no, line.text, i + 1)?;
        } else {
            self.sample(line.no, line.text, i)?;
        }
        if !line.terminated {
            return Err(err(
                line.no,
                "unexpected end of input: the last line must end with a line feed",
            ));
        }
        Ok(())
    }

    /// `# HELP`, `# TYPE`, or a comment (anything else after `#`, including
    /// HELP/TYPE lines with nothing after the name).
    fn comment(&mut self, no: usize, s: &'a str, i: usize) -> Result<(), ParseError> {
        let b = s.as_bytes();
        let i = lex::skip_blank(b, i);
        let kw_end = lex::token_end(b, i);
        let kw = &s[i..kw_end];
        if kw_end == b.len() || (kw != "HELP" && kw != "TYPE") {
            return Ok(());
        }
        let i = lex::skip_blank(b, kw_end);
        if i == b.len() {
            return Ok(());
        }
        let (name, j) = match read_name(s, i).map_err(|m| err(no, m))? {
            Some(x) => x,
            None => return Err(err(no, format!("invalid metric name in {kw} line"))),
        };
        if j == b.len() {
            return Ok(());
        }
        if !lex::is_blank(b[j]) {
            return Err(err(no, format!("invalid metric name in {kw} line")));
        }
        let fam = self.resolve(&name);
        let i = lex::skip_blank(b, j);
        if i == b.len() {
            return Ok(());
        }
        let rest = &s[i..];
        let f = &mut self.families[fam];
        if kw == "HELP" {
            if f.help.is_some() {
                return Err(err(
                    no,
                    format!("second HELP line for metric name {:?}", f.name),
                ));
            }
            let help = if rest.contains('\\') {
                lex::unescape(rest, Escapes::Strict).map_err(|m| err(no, format!("{m} in HELP")))?
            } else {
                rest.to_owned()
            };
            f.help = Some(help);
        } else {
            if f.kind.is_some() {
                return Err(err(
                    no,
                    format!(
                        "second TYPE line for metric name {:?}, or TYPE reported after samples",
                        f.name
                    ),
                ));
            }
            f.kind = Some(match rest {
                "counter" => MetricType::Counter,
                "gauge" => MetricType::Gauge,
                "histogram" => MetricType::Histogram,
                "summary" => MetricType::Summary,
                "untyped" => MetricType::Unknown,
                _ => {
                    return Err(err(
                        no,
                        format!("unknown metric type {}", lex::snippet(rest)),
                    ))
                }
            });
        }
        f.has_metadata = true;
        Ok(())
    }

    fn sample(&mut self, no: usize, s: &'a str, i: usize) -> Result<(), ParseError> {
        let b = s.as_bytes();
        self.pairs.clear();
        let mut name: Option<Cow<'a, str>> = None;
        let mut i = i;
        if b[i] == b'{' {
            i = self.labels(no, s, i + 1, &mut name, true)?;
        } else {
            let e = lex::metric_name_end(b, i);
            if e == i {
                return Err(err(
                    no,
                    format!("invalid metric name at {}", lex::snippet(&s[i..])),
                ));
            }
            name = Some(Cow::Borrowed(&s[i..e]));
            i = lex::skip_blank(b, e);
            if i < b.len() && b[i] == b'{' {
                i = self.labels(no, s, i + 1, &mut name, false)?;
            }
        }
        let Some(name) = name else {
            return Err(err(no, "no metric name in the label set"));
        };

        let i = lex::skip_blank(b, i);
        let ve = lex::token_end(b, i);
        let value = number::parse_float(&s[i..ve]).ok_or_else(|| {
            err(
                no,
                format!("expected float as value, got {}", lex::snippet(&s[i..ve])),
            )
        })?;
        let mut timestamp_ms = None;
        if ve < b.len() {
            let t = lex::skip_blank(b, ve);
            let te = lex::token_end(b, t);
            let ts = s[t..te].parse::<i64>().map_err(|_| {
                err(
                    no,
                    format!(
                        "expected integer as timestamp, got {}",
                        lex::snippet(&s[t..te])
                    ),
                )
            })?;
            if te < b.len() {
                return Err(err(
                    no,
                    format!(
                        "spurious string after timestamp: {}",
                        lex::snippet(&s[te..])
                    ),
                ));
            }
            timestamp_ms = Some(ts);
        }

        let fam = match &self.last {
            Some((last, f)) if *last == name => *f,
            _ => {
                let f = self.resolve(&name);
                self.last = Some((name.clone(), f));
                f
            }
        };
        let kind = *self.families[fam].kind.get_or_insert(MetricType::Unknown);
        let special = match kind {
            MetricType::Histogram => "le",
            MetricType::Summary => "quantile",
            _ => "",
        };
        if !special.is_empty() {
            for p in self.pairs.iter_mut().filter(|p| p.name == special) {
                let v = number::parse_float(&p.value).ok_or_else(|| {
                    err(
                        no,
                        format!(
                            "expected float as value for {special:?} label, got {:?}",
                            p.value
                        ),
                    )
                })?;
                p.value = Cow::Owned(self.canonical.get(&p.value, v));
            }
        }
        self.pairs.push(RawLabel {
            name: Cow::Borrowed(METRIC_NAME),
            value: name,
        });
        series::sort_and_check(&mut self.pairs).map_err(|m| err(no, m))?;
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
        let eol = || err(no, "unexpected end of line in label set");
        loop {
            i = lex::skip_blank(b, i);
            match b.get(i) {
                None => return Err(eol()),
                Some(b'}') => return Ok(i + 1),
                _ => {}
            }
            let quoted_name = b[i] == b'"';
            let (lname, j) = if quoted_name {
                lex::quoted(s, i, Escapes::Strict).map_err(|m| err(no, m))?
            } else {
                let e = lex::label_name_end(b, i);
                if e == i {
                    return Err(err(
                        no,
                        format!("invalid label name at {}", lex::snippet(&s[i..])),
                    ));
                }
                (Cow::Borrowed(&s[i..e]), e)
            };
            i = lex::skip_blank(b, j);
            let Some(&c) = b.get(i) else {
                return Err(eol());
            };
            if c != b'=' {
                if name_inside && quoted_name && (c == b',' || c == b'}') {
                    if name.is_some() {
                        return Err(err(no, "metric name given twice in the label set"));
                    }
                    *name = Some(lname);
                    i += 1;
                    if c == b'}' {
                        return Ok(i);
                    }
                    continue;
                }
                return Err(err(
                    no,
                    format!("expected '=' after label name, found {:?}", char::from(c)),
                ));
            }
            if lname == METRIC_NAME {
                return Err(err(no, format!("label name {METRIC_NAME:?} is reserved")));
            }
            if lname.is_empty() {
                return Err(err(no, "empty label name"));
            }
            i = lex::skip_blank(b, i + 1);
            if b.get(i) != Some(&b'"') {
                return Err(err(
                    no,
                    format!("expected '\"' at start of label value {:?}", lname),
                ));
            }
            let (value, j) = lex::quoted(s, i, Escapes::Strict)
                .map_err(|m| err(no, format!("label {lname:?}: {m}")))?;
            self.pairs.push(RawLabel { name: lname, value });
            i = lex::skip_blank(b, j);
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b'}') => return Ok(i + 1),
                Some(&c) => {
                    return Err(err(
                        no,
                        format!("unexpected {:?} after label value", char::from(c)),
                    ));
                }
                None => return Err(eol()),
            }
        }
    }

    /// The family a metric name belongs to, creating it if needed.
    fn resolve(&mut self, name: &str) -> usize {
        if let Some(&f) = self.by_name.get(name) {
            return f;
        }
        let base_of = |kind, suffixes: &[&str]| {
            suffixes.iter().find_map(|suf| {
                let base = name.strip_suffix(suf).filter(|b| !b.is_empty())?;
                let &f = self.by_name.get(base)?;
                (self.families[f].kind == Some(kind)).then_some(f)
            })
        };
        if let Some(f) = base_of(MetricType::Summary, &["_count", "_sum"]) {
            return f;
        }
        if let Some(f) = base_of(MetricType::Histogram, &["_count", "_sum", "_bucket"]) {
            return f;
        }
        self.families.push(Family {
            name: name.to_owned(),
            kind: None,
            help: None,
            has_metadata: false,
        });
        self.by_name
            .insert(name.to_owned(), self.families.len() - 1);
        self.families.len() - 1
    }

    fn finish(self) -> Vec<Metadata> {
        self.families
            .into_iter()
            .filter(|f| f.has_metadata)
            .map(|f| Metadata {
                family: f.name,
                kind: f.kind.unwrap_or(MetricType::Unknown),
                help: f.help.unwrap_or_default(),
                unit: String::new(),
            })
            .collect()
    }
}

/// A metric name at `i` in a HELP/TYPE line: bare, or quoted (UTF-8).
/// `Ok(None)` when there is no name there.
fn read_name(s: &str, i: usize) -> Result<Option<(Cow<'_, str>, usize)>, LexError> {
    let b = s.as_bytes();
    if b[i] == b'"' {
        let (n, j) = lex::quoted(s, i, Escapes::Strict)?;
        return Ok((!n.is_empty()).then_some((n, j)));
    }
    let e = lex::metric_name_end(b, i);
    Ok((e > i).then(|| (Cow::Borrowed(&s[i..e]), e)))
}
