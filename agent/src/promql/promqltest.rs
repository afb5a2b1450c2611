//! A runner for Prometheus' promqltest script format (`load`, `clear`,
//! `eval instant|range` with `expect` lines), so the upstream conformance
//! files run unchanged against this engine. Grammar:
//! `shared/conformance/prometheus/promql/promqltest/README.md`.
//!
//! Native histogram points (`{{...}}`) are not loaded; cases that need them
//! are expected to be skipped by the caller.

use std::time::Duration;

use regex::Regex;

use super::engine::{parse, Engine, EngineOpts};
use super::error::ParseError;
use super::value::{QueryResult, Value};
use crate::model::{stale_nan, Labels, LabelsBuilder};
use crate::storage::MemStorage;

/// One failed case.
#[derive(Debug, Clone)]
pub struct Failure {
    pub line: usize,
    pub query: String,
    pub reason: String,
}

/// Totals of one script.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub failures: Vec<Failure>,
    /// `load` lines that could not be parsed (new syntax such as `@st`);
    /// not counted as failures, but evals depending on them will fail.
    pub load_errors: Vec<Failure>,
}

/// A point of a series description.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Point {
    Value(f64),
    Missing,
    /// A native histogram (not supported; kept to preserve positions).
    Histogram,
}

/// A script time or interval: a Prometheus duration (`1h30m`, `10s53ms`)
/// or plain seconds, either possibly negative.
pub fn parse_duration_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let ms = match s.parse::<f64>() {
        Ok(v) => (v * 1000.0).round() as i64,
        // At most ~292 years in milliseconds: fits an i64.
        Err(_) => crate::model::duration::parse(s).ok()?.as_millis() as i64,
    };
    Some(if neg { -ms } else { ms })
}

fn parse_float(s: &str) -> Option<f64> {
    let l = s.to_ascii_lowercase();
    match l.as_str() {
        "inf" | "+inf" => return Some(f64::INFINITY),
        "-inf" => return Some(f64::NEG_INFINITY),
        "nan" | "+nan" | "-nan" => return Some(f64::NAN),
        _ => {}
    }
    if let Some(h) = l.strip_prefix("0x") {
        return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
    }
    s.parse().ok()
}

/// What is wrong with a series line (`metric{labels} 1+2x3`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotationError {
    #[error("expands to more than {MAX_POINTS} points ({0})")]
    TooManyPoints(usize),
    #[error("bad value {0:?}")]
    BadValue(String),
    /// A repeat count (`1+0x99999999999999999999`) that does not fit.
    #[error("{0}")]
    BadCount(std::num::ParseIntError),
    #[error("bad metric {metric:?}: {error}")]
    BadMetric { metric: String, error: ParseError },
    #[error("bad metric {0:?}")]
    NotASelector(String),
}

/// An error in a script (or a `--query-fixture`), with its line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ScriptError {
    pub line: usize,
    pub kind: ScriptErrorKind,
}

/// What [`ScriptError`] found.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScriptErrorKind {
    #[error("bad load interval")]
    BadLoadInterval,
    #[error("unknown command {0}")]
    UnknownCommand(String),
    #[error("expected 'at'")]
    ExpectedAt,
    #[error("no query")]
    NoQuery,
    #[error("bad time {0}")]
    BadTime(String),
    #[error("bad range eval")]
    BadRangeEval,
    #[error("bad eval")]
    BadEval,
    #[error("bad expect range vector")]
    BadExpectRangeVector,
    #[error("unknown expectation {0}")]
    UnknownExpectation(String),
    #[error("only `load` blocks belong here, not `eval`")]
    EvalInFixture,
    #[error("more than {0} samples in all")]
    TooManySamples(usize),
    #[error(transparent)]
    Notation(#[from] NotationError),
}

impl ScriptErrorKind {
    fn at(self, line: usize) -> ScriptError {
        ScriptError { line, kind: self }
    }
}

/// The most points one series line may expand to: `0+1x99999999999`
/// must be an error, not an allocation that takes the machine down.
pub const MAX_POINTS: usize = 1_000_000;

/// Expands the value notation (`1+2x3`, `_x2`, `stale`, `{{...}}`), at most
/// [`MAX_POINTS`] points.
pub fn parse_points(s: &str) -> Result<Vec<Point>, NotationError> {
    let mut out = Vec::new();
    let too_many = NotationError::TooManyPoints;
    let mut rest = s.trim();
    while !rest.is_empty() {
        if rest.starts_with("{{") {
            // A histogram token may hold spaces inside its braces.
            let mut depth = 0i32;
            let mut e = rest.len();
            for (i, c) in rest.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    c if c.is_whitespace() && depth == 0 => {
                        e = i;
                        break;
                    }
                    _ => {}
                }
            }
            let t = &rest[..e];
            let times = t
                .rsplit_once("}}x")
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .map(|n| n.saturating_add(1))
                .unwrap_or(1);
            if out.len().saturating_add(times) > MAX_POINTS {
                return Err(too_many(times));
            }
            for _ in 0..times {
                out.push(Point::Histogram);
            }
            rest = rest[e..].trim_start();
            continue;
        }
        let e = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let tok = &rest[..e];
        rest = rest[e..].trim_start();
        if tok == "_" {
            out.push(Point::Missing);
            continue;
        }
        if tok == "stale" {
            out.push(Point::Value(stale_nan()));
            continue;
        }
        let (base, times) = match tok.rfind('x') {
            Some(i)
                if i > 0
                    && tok[i + 1..].chars().all(|c| c.is_ascii_digit())
                    && i + 1 < tok.len() =>
            {
                (
                    &tok[..i],
                    Some(
                        tok[i + 1..]
                            .parse::<usize>()
                            .map_err(NotationError::BadCount)?,
                    ),
                )
            }
            _ => (tok, None),
        };
        if let Some(n) = times {
            if out.len().saturating_add(n).saturating_add(1) > MAX_POINTS {
                return Err(too_many(n));
            }
        }
        if base == "_" {
            for _ in 0..times.unwrap_or(1) {
                out.push(Point::Missing);
            }
            continue;
        }
        if base == "stale" {
            for _ in 0..times.unwrap_or(1) {
                out.push(Point::Value(stale_nan()));
            }
            continue;
        }
        // Split `a+b` / `a-b` at the last sign not starting the token or an exponent.
        let bb = base.as_bytes();
        let mut split = None;
        for i in (1..bb.len()).rev() {
            if (bb[i] == b'+' || bb[i] == b'-') && !matches!(bb[i - 1], b'e' | b'E') {
                split = Some(i);
                break;
            }
        }
        let (start, inc) = match split {
            Some(i) => {
                let a = parse_float(&base[..i])
                    .ok_or_else(|| NotationError::BadValue(tok.to_string()))?;
                let d = parse_float(&base[i + 1..])
                    .ok_or_else(|| NotationError::BadValue(tok.to_string()))?;
                (a, if bb[i] == b'-' { -d } else { d })
            }
            None => (
                parse_float(base).ok_or_else(|| NotationError::BadValue(tok.to_string()))?,
                0.0,
            ),
        };
        match times {
            None => out.push(Point::Value(start)),
            Some(n) => {
                let mut v = start;
                for _ in 0..=n {
                    out.push(Point::Value(v));
                    v += inc;
                }
            }
        }
    }
    Ok(out)
}

/// Splits `metric{labels} values` into labels and the value text. A line
/// with only a value (scalar result) gives `None` labels.
pub fn parse_series_line(line: &str) -> Result<(Option<Labels>, String), NotationError> {
    let line = line.trim();
    let first = line.split_whitespace().next().unwrap_or("");
    if !first.contains('{') && (parse_float(first).is_some() || first == "_") {
        return Ok((None, line.to_string()));
    }
    let mut end = None;
    if let Some(b) = line.find('{') {
        if line[..b].chars().all(|c| !c.is_whitespace()) {
            let mut in_q = false;
            let mut esc = false;
            for (i, c) in line[b..].char_indices() {
                if esc {
                    esc = false;
                    continue;
                }
                match c {
                    '\\' if in_q => esc = true,
                    '"' => in_q = !in_q,
                    '}' if !in_q => {
                        end = Some(b + i + 1);
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    let end = end.unwrap_or_else(|| line.find(char::is_whitespace).unwrap_or(line.len()));
    let metric = &line[..end];
    let labels = parse_metric(metric)?;
    Ok((Some(labels), line[end..].trim().to_string()))
}

/// Parses `name{a="b"}` into labels using the PromQL parser.
pub fn parse_metric(m: &str) -> Result<Labels, NotationError> {
    if m == "{}" {
        return Ok(Labels::new());
    }
    let e = crate::promql::parse_query(m).map_err(|error| NotationError::BadMetric {
        metric: m.to_string(),
        error,
    })?;
    let promql_parser::parser::Expr::VectorSelector(vs) = e else {
        return Err(NotationError::NotASelector(m.to_string()));
    };
    let mut b = LabelsBuilder::default();
    if let Some(n) = vs.name {
        b.set(crate::model::METRIC_NAME, n);
    }
    for mt in vs.matchers.matchers {
        b.set(mt.name, mt.value);
    }
    Ok(b.build())
}

#[derive(Debug, Default)]
struct Expect {
    fail: Option<Option<(bool, String)>>, // Some(None) = any; Some(Some((is_regex, s)))
    warn: Vec<Option<(bool, String)>>,
    info: Vec<Option<(bool, String)>>,
    no_warn: bool,
    no_info: bool,
    ordered: bool,
    string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
}

enum Cmd {
    Load {
        interval: i64,
        lines: Vec<(usize, String)>,
    },
    Clear,
    Eval(Box<Eval>),
}

struct Eval {
    line: usize,
    query: String,
    /// (start, end, step); step 0 = instant.
    start: i64,
    end: i64,
    step: i64,
    expect: Expect,
    results: Vec<(usize, String)>,
}

fn is_command(l: &str) -> bool {
    let w = l.split_whitespace().next().unwrap_or("");
    w == "load" || w == "load_with_nhcb" || w == "clear" || w.starts_with("eval")
}

fn parse_expect_msg(rest: &str) -> Option<(bool, String)> {
    let rest = rest.trim();
    if rest.is_empty() {
        return None;
    }
    if let Some(r) = rest.strip_prefix("msg:") {
        return Some((false, unquote(r.trim())));
    }
    if let Some(r) = rest.strip_prefix("regex:") {
        return Some((true, unquote(r.trim())));
    }
    Some((false, unquote(rest)))
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2
        && ((s.starts_with('"') && s.ends_with('"')) || (s.starts_with('`') && s.ends_with('`')))
    {
        return s[1..s.len() - 1].to_string();
    }
    s.to_string()
}

fn parse_script(text: &str) -> Result<Vec<Cmd>, ScriptError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut cmds = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let raw = lines[i];
        let l = raw.trim();
        i += 1;
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let lineno = i;
        let mut body = Vec::new();
        while i < lines.len() {
            let t = lines[i].trim();
            if t.is_empty() || is_command(t) {
                break;
            }
            if !t.starts_with('#') {
                body.push((i + 1, t.to_string()));
            }
            i += 1;
        }
        let mut words = l.split_whitespace();
        let cmd = words.next().unwrap_or("");
        match cmd {
            "clear" => cmds.push(Cmd::Clear),
            "load" | "load_with_nhcb" => {
                let iv = words
                    .next()
                    .and_then(parse_duration_ms)
                    .ok_or(ScriptErrorKind::BadLoadInterval.at(lineno))?;
                cmds.push(Cmd::Load {
                    interval: iv,
                    lines: body,
                });
            }
            c if c.starts_with("eval") => {
                let mut expect = Expect::default();
                match c {
                    "eval" => {}
                    "eval_fail" => expect.fail = Some(None),
                    "eval_warn" => expect.warn.push(None),
                    "eval_info" => expect.info.push(None),
                    "eval_ordered" => expect.ordered = true,
                    _ => return Err(ScriptErrorKind::UnknownCommand(c.to_string()).at(lineno)),
                }
                let rest = l[c.len()..].trim_start();
                let (start, end, step, query) = if let Some(r) = rest.strip_prefix("instant") {
                    let r = r
                        .trim_start()
                        .strip_prefix("at")
                        .ok_or(ScriptErrorKind::ExpectedAt.at(lineno))?
                        .trim_start();
                    let (ts, q) = r
                        .split_once(char::is_whitespace)
                        .ok_or(ScriptErrorKind::NoQuery.at(lineno))?;
                    let t = parse_duration_ms(ts)
                        .ok_or_else(|| ScriptErrorKind::BadTime(ts.to_string()).at(lineno))?;
                    (t, t, 0, q.trim().to_string())
                } else if let Some(r) = rest.strip_prefix("range") {
                    let w: Vec<&str> = r.split_whitespace().collect();
                    if w.len() < 7 || w[0] != "from" || w[2] != "to" || w[4] != "step" {
                        return Err(ScriptErrorKind::BadRangeEval.at(lineno));
                    }
                    let p = |s: &str| {
                        parse_duration_ms(s)
                            .ok_or_else(|| ScriptErrorKind::BadTime(s.to_string()).at(lineno))
                    };
                    let mut q = r;
                    for word in &w[..6] {
                        q = q.trim_start().strip_prefix(word).unwrap_or(q);
                    }
                    (p(w[1])?, p(w[3])?, p(w[5])?, q.trim().to_string())
                } else {
                    return Err(ScriptErrorKind::BadEval.at(lineno));
                };
                let mut results = Vec::new();
                for (ln, b) in body {
                    if let Some(r) = b.strip_prefix("expect ") {
                        let r = r.trim();
                        let (kind, rest) = r.split_once(char::is_whitespace).unwrap_or((r, ""));
                        match kind {
                            "fail" => expect.fail = Some(parse_expect_msg(rest)),
                            "warn" => expect.warn.push(parse_expect_msg(rest)),
                            "info" => expect.info.push(parse_expect_msg(rest)),
                            "no_warn" => expect.no_warn = true,
                            "no_info" => expect.no_info = true,
                            "ordered" => expect.ordered = true,
                            "string" => expect.string = Some(unquote(rest)),
                            "range" => {
                                let w: Vec<&str> = rest.split_whitespace().collect();
                                if w.len() == 7
                                    && w[0] == "vector"
                                    && w[1] == "from"
                                    && w[3] == "to"
                                    && w[5] == "step"
                                {
                                    let p = |s: &str| {
                                        parse_duration_ms(s).ok_or_else(|| {
                                            ScriptErrorKind::BadTime(s.to_string()).at(ln)
                                        })
                                    };
                                    expect.range_vector = Some((p(w[2])?, p(w[4])?, p(w[6])?));
                                } else {
                                    return Err(ScriptErrorKind::BadExpectRangeVector.at(ln));
                                }
                            }
                            _ => {
                                return Err(
                                    ScriptErrorKind::UnknownExpectation(kind.to_string()).at(ln)
                                )
                            }
                        }
                    } else if let Some(r) = b.strip_prefix("expected_fail_message") {
                        expect.fail = Some(Some((false, r.trim().to_string())));
                    } else if let Some(r) = b.strip_prefix("expected_fail_regexp") {
                        expect.fail = Some(Some((true, r.trim().to_string())));
                    } else {
                        results.push((ln, b));
                    }
                }
                cmds.push(Cmd::Eval(Box::new(Eval {
                    line: lineno,
                    query,
                    start,
                    end,
                    step,
                    expect,
                    results,
                })));
            }
            other => return Err(ScriptErrorKind::UnknownCommand(format!("{other:?}")).at(lineno)),
        }
    }
    Ok(cmds)
}

/// Prometheus' `almost.Equal` with the promqltest epsilon.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPS: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPS * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPS
}

/// Runs a script. `skip(line)` returns a reason to skip the eval at that
/// line (e.g. it needs native histograms).
/// Loads one series line of a `load` block (`metric{labels} 1+2x3`) at
/// `interval` steps from time 0; returns how many samples it added and the
/// time of its last one.
fn load_line(
    storage: &MemStorage,
    interval: i64,
    line: &str,
) -> Result<(usize, i64), NotationError> {
    let (labels, vals) = parse_series_line(line)?;
    let points = parse_points(&vals)?;
    let Some(labels) = labels else {
        return Ok((0, 0));
    };
    let (mut added, mut last) = (0, 0);
    for (i, p) in points.iter().enumerate() {
        if let Point::Value(v) = p {
            last = i as i64 * interval;
            storage.append(labels.clone(), last, *v);
            added += 1;
        }
    }
    Ok((added, last))
}

/// A store holding the series of a script made only of `load` blocks (and
/// `clear`), as promqltest loads them: sample `i` of a series at `i *
/// interval` from time 0. This is the format of `wasmon plugin call
/// --query-fixture`. Returns the store and the time of its latest sample.
pub fn load_fixture(text: &str, max_samples: usize) -> Result<(MemStorage, i64), ScriptError> {
    let storage = MemStorage::new();
    let (mut total, mut latest) = (0usize, 0i64);
    for cmd in parse_script(text)? {
        match cmd {
            Cmd::Clear => storage.clear(),
            Cmd::Eval(ev) => return Err(ScriptErrorKind::EvalInFixture.at(ev.line)),
            Cmd::Load { interval, lines } => {
                for (ln, l) in lines {
                    let (added, last) = load_line(&storage, interval, &l)
                        .map_err(|e| ScriptErrorKind::from(e).at(ln))?;
                    total += added;
                    latest = latest.max(last);
                    if total > max_samples {
                        return Err(ScriptErrorKind::TooManySamples(max_samples).at(ln));
                    }
                }
            }
        }
    }
    Ok((storage, latest))
}

pub fn run_script(text: &str, skip: &dyn Fn(usize) -> Option<String>) -> Outcome {
    let mut out = Outcome::default();
    let cmds = match parse_script(text) {
        Ok(c) => c,
        Err(e) => {
            out.failed += 1;
            out.failures.push(Failure {
                line: 0,
                query: String::new(),
                reason: format!("script parse error: {e}"),
            });
            return out;
        }
    };
    let storage = MemStorage::new();
    let engine = Engine::new(EngineOpts {
        timeout: Duration::from_secs(30),
        ..EngineOpts::default()
    });
    for cmd in cmds {
        match cmd {
            Cmd::Clear => storage.clear(),
            Cmd::Load { interval, lines } => {
                for (ln, l) in lines {
                    if let Err(e) = load_line(&storage, interval, &l) {
                        out.load_errors.push(Failure {
                            line: ln,
                            query: l.clone(),
                            reason: format!("load: {e}"),
                        });
                    }
                }
            }
            Cmd::Eval(ev) => {
                if let Some(reason) = skip(ev.line) {
                    let _ = reason;
                    out.skipped += 1;
                    continue;
                }
                let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_eval(&engine, &storage, &ev)
                }))
                .unwrap_or_else(|p| {
                    Err(format!(
                        "panic: {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    ))
                });
                match res {
                    Ok(()) => out.passed += 1,
                    Err(reason) => {
                        out.failed += 1;
                        out.failures.push(Failure {
                            line: ev.line,
                            query: ev.query.clone(),
                            reason,
                        });
                    }
                }
            }
        }
    }
    out
}

fn strip_pos(s: &str) -> String {
    let re = Regex::new(r"\s*\(\d+:\d+\)$").unwrap();
    re.replace(s, "").into_owned()
}

fn strip_pos_regex(s: &str) -> String {
    let re = Regex::new(r"\s*\\\([^()]*\\\)$").unwrap();
    re.replace(s, "").into_owned()
}

fn matches_msg(exp: &(bool, String), got: &str) -> bool {
    if exp.0 {
        Regex::new(&strip_pos_regex(&exp.1))
            .map(|r| r.is_match(got))
            .unwrap_or(false)
    } else {
        strip_pos(&exp.1) == got
    }
}

fn check_annotations(
    kind: &str,
    exp: &[Option<(bool, String)>],
    none: bool,
    got: &[String],
) -> Result<(), String> {
    if none && !got.is_empty() {
        return Err(format!("expected no {kind} annotation, got {got:?}"));
    }
    if exp.is_empty() {
        return Ok(());
    }
    for e in exp {
        let ok = match e {
            None => !got.is_empty(),
            Some(m) => got.iter().any(|g| matches_msg(m, g)),
        };
        if !ok {
            return Err(format!("expected {kind} annotation {e:?}, got {got:?}"));
        }
    }
    for g in got {
        if !exp.iter().any(|e| match e {
            None => true,
            Some(m) => matches_msg(m, g),
        }) {
            return Err(format!("unexpected {kind} annotation {g:?}"));
        }
    }
    Ok(())
}

fn run_eval(engine: &Engine, storage: &MemStorage, ev: &Eval) -> Result<(), String> {
    let res = parse(&ev.query).and_then(|expr| {
        if ev.step == 0 {
            engine.instant(storage, &expr, ev.start)
        } else {
            engine.range(storage, &expr, ev.start, ev.end, ev.step)
        }
    });
    let res: QueryResult = match (res, &ev.expect.fail) {
        (Err(e), Some(exp)) => {
            return match exp {
                None => Ok(()),
                Some(m) if m.0 => {
                    if Regex::new(&m.1)
                        .map(|r| r.is_match(&e.to_string()))
                        .unwrap_or(false)
                    {
                        Ok(())
                    } else {
                        Err(format!("error {e:?} does not match regex {:?}", m.1))
                    }
                }
                Some(m) => {
                    if e.to_string() == m.1 {
                        Ok(())
                    } else {
                        Err(format!(
                            "error {:?} differs from expected {:?}",
                            e.to_string(),
                            m.1
                        ))
                    }
                }
            };
        }
        (Err(e), None) => return Err(format!("unexpected error: {e}")),
        (Ok(_), Some(_)) => return Err("expected an error, query succeeded".into()),
        (Ok(r), None) => r,
    };
    let x = &ev.expect;
    check_annotations("warn", &x.warn, x.no_warn, &res.annotations.warnings)?;
    check_annotations("info", &x.info, x.no_info, &res.annotations.infos)?;
    if let Some(s) = &x.string {
        return match &res.value {
            Value::String { s: got, .. } if got == s => Ok(()),
            other => Err(format!("expected string {s:?}, got {other:?}")),
        };
    }
    // Expected series.
    let mut expected: Vec<(Option<Labels>, Vec<Point>)> = Vec::new();
    for (ln, l) in &ev.results {
        let (lab, vals) = parse_series_line(l).map_err(|e| format!("line {ln}: {e}"))?;
        let pts = parse_points(&vals).map_err(|e| format!("line {ln}: {e}"))?;
        expected.push((lab, pts));
    }
    if expected.iter().any(|e| e.1.contains(&Point::Histogram)) {
        return Err("expected native histogram values (unsupported)".into());
    }
    match &res.value {
        Value::Scalar { v, .. } => {
            if ev.step != 0 {
                return Err("range query returned a scalar".into());
            }
            match expected.as_slice() {
                [(None, p)] if p.len() == 1 => match p[0] {
                    Point::Value(e) if almost_equal(e, *v) => Ok(()),
                    _ => Err(format!("expected scalar {:?}, got {v}", p[0])),
                },
                _ => Err(format!(
                    "expected {} series, got scalar {v}",
                    expected.len()
                )),
            }
        }
        Value::String { s, .. } => Err(format!("unexpected string result {s:?}")),
        Value::Vector(vs) => {
            if vs.len() != expected.len() {
                return Err(format!(
                    "expected {} samples, got {}: {}",
                    expected.len(),
                    vs.len(),
                    vs.iter()
                        .map(|s| format!("{} {}", s.labels, s.v))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for (i, (lab, pts)) in expected.iter().enumerate() {
                let lab = lab.clone().unwrap_or_default();
                let Some(pos) = vs.iter().position(|s| s.labels == lab) else {
                    return Err(format!("expected series {lab} not found in result"));
                };
                if x.ordered && pos != i {
                    return Err(format!("series {lab} at position {pos}, expected {i}"));
                }
                match pts.as_slice() {
                    [Point::Value(e)] if almost_equal(*e, vs[pos].v) => {}
                    _ => return Err(format!("series {lab}: expected {pts:?}, got {}", vs[pos].v)),
                }
            }
            Ok(())
        }
        Value::Matrix(ms) => {
            let (start, step) = if ev.step != 0 {
                (ev.start, ev.step)
            } else if let Some((s, _, st)) = x.range_vector {
                (s, st)
            } else {
                return Err(
                    "instant query returned a range vector without 'expect range vector'".into(),
                );
            };
            if ms.len() != expected.len() {
                return Err(format!(
                    "expected {} series, got {}: {}",
                    expected.len(),
                    ms.len(),
                    ms.iter()
                        .map(|s| format!("{} {:?}", s.labels, s.points))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            for (lab, pts) in &expected {
                let lab = lab.clone().unwrap_or_default();
                let Some(s) = ms.iter().find(|s| s.labels == lab) else {
                    return Err(format!("expected series {lab} not found in result"));
                };
                let want: Vec<(i64, f64)> = pts
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| match p {
                        Point::Value(v) => Some((start + i as i64 * step, *v)),
                        _ => None,
                    })
                    .collect();
                let same = want.len() == s.points.len()
                    && want
                        .iter()
                        .zip(&s.points)
                        .all(|(a, b)| a.0 == b.0 && almost_equal(a.1, b.1));
                if !same {
                    return Err(format!(
                        "series {lab}: expected {want:?}, got {:?}",
                        s.points
                    ));
                }
            }
            Ok(())
        }
    }
}

/// Runs every eval of a script as range queries twice — column-wise (the
/// default) and step by step (`EngineOpts::stepwise_range`) — and returns
/// where the two disagree (values, labels, errors or annotations). An
/// instant eval at `t` becomes ranges around `t` at a few steps.
pub fn cross_check_script(text: &str) -> Vec<String> {
    let mut diffs = Vec::new();
    let Ok(cmds) = parse_script(text) else {
        return diffs;
    };
    let storage = MemStorage::new();
    let opts = EngineOpts {
        timeout: Duration::from_secs(30),
        ..EngineOpts::default()
    };
    let col = Engine::new(opts.clone());
    let step = Engine::new(EngineOpts {
        stepwise_range: true,
        ..opts
    });
    for cmd in cmds {
        match cmd {
            Cmd::Clear => storage.clear(),
            Cmd::Load { interval, lines } => {
                for (_, l) in lines {
                    if let Ok((Some(labels), pts)) = parse_series_line(&l)
                        .and_then(|(lab, vals)| Ok((lab, parse_points(&vals)?)))
                    {
                        for (i, p) in pts.iter().enumerate() {
                            if let Point::Value(v) = p {
                                storage.append(labels.clone(), i as i64 * interval, *v);
                            }
                        }
                    }
                }
            }
            Cmd::Eval(ev) => {
                let Ok(expr) = parse(&ev.query) else {
                    continue;
                };
                let ranges: Vec<(i64, i64, i64)> = if ev.step > 0 {
                    vec![(ev.start, ev.end, ev.step)]
                } else {
                    vec![
                        (ev.start, ev.start, 1000),
                        (ev.start - 300_000, ev.start + 300_000, 60_000),
                        (ev.start - 100_000, ev.start + 50_000, 7_000),
                        (ev.start - 3_600_000, ev.start, 600_000),
                    ]
                };
                for (a, b, st) in ranges {
                    let x = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        col.range(&storage, &expr, a, b, st)
                    }));
                    let y = step.range(&storage, &expr, a, b, st);
                    let d = match (x, y) {
                        (Err(_), _) => Some("column-wise evaluation panicked".to_string()),
                        (Ok(x), y) => compare_results(x, y),
                    };
                    if let Some(d) = d {
                        diffs.push(format!(
                            "line {}: {} [{a}, {b}, {st}]: {d}",
                            ev.line, ev.query
                        ));
                    }
                }
            }
        }
    }
    diffs
}

fn compare_results(
    x: Result<QueryResult, super::EvalError>,
    y: Result<QueryResult, super::EvalError>,
) -> Option<String> {
    let (x, y) = match (x, y) {
        (Err(a), Err(b)) => {
            return (a.to_string() != b.to_string()).then(|| format!("errors {a} vs {b}"))
        }
        (Ok(_), Err(b)) => return Some(format!("step-wise failed: {b}")),
        (Err(a), Ok(_)) => return Some(format!("column-wise failed: {a}")),
        (Ok(x), Ok(y)) => (x, y),
    };
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    if sorted(&x.annotations.warnings) != sorted(&y.annotations.warnings)
        || sorted(&x.annotations.infos) != sorted(&y.annotations.infos)
    {
        return Some(format!(
            "annotations {:?} vs {:?}",
            x.annotations, y.annotations
        ));
    }
    let (Value::Matrix(a), Value::Matrix(b)) = (&x.value, &y.value) else {
        return (x.value != y.value).then(|| format!("{:?} vs {:?}", x.value, y.value));
    };
    if a.len() != b.len() {
        return Some(format!("{} series vs {}", a.len(), b.len()));
    }
    for (s, t) in a.iter().zip(b) {
        if s.labels != t.labels || s.points.len() != t.points.len() {
            return Some(format!("series {s:?} vs {t:?}"));
        }
        for (p, q) in s.points.iter().zip(&t.points) {
            if p.0 != q.0 || !(almost_equal(p.1, q.1) || (p.1.is_nan() && q.1.is_nan())) {
                return Some(format!("series {}: {p:?} vs {q:?}", s.labels));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notation() {
        let p = parse_points("1+1x2 _ stale _x2 5x1 -2-1x1 1e+3").unwrap();
        assert_eq!(p.len(), 12);
        assert_eq!(p[0], Point::Value(1.0));
        assert_eq!(p[2], Point::Value(3.0));
        assert_eq!(p[3], Point::Missing);
        assert_eq!(p[7], Point::Value(5.0));
        assert_eq!(p[10], Point::Value(-3.0));
        assert_eq!(p[11], Point::Value(1000.0));
        assert_eq!(parse_duration_ms("10s53ms"), Some(10053));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
    }

    /// Fixture and script errors carry their line and what is wrong; the
    /// texts `wasmon plugin call --query-fixture` prints stay the same.
    #[test]
    fn errors_name_line_and_what() {
        let load_fixture = |text: &str, max: usize| match load_fixture(text, max) {
            Ok(_) => panic!("{text:?} loaded"),
            Err(e) => Err::<(), _>(e),
        };
        let e = load_fixture("load 1m\n  up 1\n\neval instant at 0 up\n", 10).unwrap_err();
        assert_eq!(e, ScriptErrorKind::EvalInFixture.at(4));
        assert_eq!(
            e.to_string(),
            "line 4: only `load` blocks belong here, not `eval`"
        );
        let e = load_fixture("load 1m\n  up 0+1x99999999\n", 10).unwrap_err();
        assert_eq!(e.line, 2);
        assert!(matches!(
            e.kind,
            ScriptErrorKind::Notation(NotationError::TooManyPoints(99999999))
        ));
        let e = load_fixture("load 1m\n  up{ 1\n", 10).unwrap_err();
        assert!(
            matches!(&e.kind, ScriptErrorKind::Notation(NotationError::BadMetric { error, .. }) if error.column == 4),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("line 2: bad metric \"up{\": 1:4: parse error:"),
            "{e}"
        );
        let e = load_fixture("load 1m\n  a 1\n  b 2\n", 1).unwrap_err();
        assert_eq!(e.to_string(), "line 3: more than 1 samples in all");
    }
}
