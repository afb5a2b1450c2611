//! Alert label and annotation templates: the subset of Go's `text/template`
//! that Prometheus rule files use, with Prometheus' template functions.
//!
//! Hand-written rather than built on the `gtmpl` crate: gtmpl's functions are
//! plain `fn` pointers (no way to capture the query engine for `query`), it
//! has not been released since 2021, and it is not among our dependencies.
//! This module is a lexer, a parser to a small AST and a tree-walking
//! evaluator: text, actions with pipelines, variables (`$x := ...`,
//! `$x = ...`), fields (`.Labels.job`, `$labels.job`), `if`/`else if`/
//! `else`, `range` (with `$i, $e :=`), `with`, `define`/`template`,
//! comments and `{{-`/`-}}` whitespace trimming.
//!
//! Values print like Go's `fmt` `%v` (floats in the shortest `%g` form, a
//! missing map key as `<no value>`), so annotations read the same as in
//! Prometheus.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::model::Labels;

/// A template value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Go's `nil`.
    Nil,
    /// The result of reading a missing map key (`<no value>` when printed).
    Missing,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    fn truthy(&self) -> bool {
        match self {
            Value::Nil | Value::Missing => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Nil | Value::Missing => "nil",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::Str(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::Map(_) => "map[string]interface {}",
        }
    }

    /// A map of string values (label sets).
    pub fn from_str_map<'a>(m: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
        Value::Map(
            m.into_iter()
                .map(|(k, v)| (k.to_string(), Value::Str(v.to_string())))
                .collect(),
        )
    }

    /// A query sample as templates see it: `.Labels` and `.Value`.
    pub fn sample(labels: &Labels, v: f64) -> Value {
        let mut m = BTreeMap::new();
        m.insert(
            "Labels".to_string(),
            Value::from_str_map(labels.iter().map(|l| (l.name.as_str(), l.value.as_str()))),
        );
        m.insert("Value".to_string(), Value::Float(v));
        Value::Map(m)
    }
}

impl std::fmt::Display for Value {
    /// Go's `%v`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Nil => f.write_str("<nil>"),
            Value::Missing => f.write_str("<no value>"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => f.write_str(&go_fmt_g(*x, None)),
            Value::Str(s) => f.write_str(s),
            Value::List(l) => {
                f.write_str("[")?;
                for (i, v) in l.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
            Value::Map(m) => {
                if m.len() == 2 && m.contains_key("Labels") && m.contains_key("Value") {
                    // A sample struct prints as `{map[...] value}` in Go.
                    return write!(f, "{{{} {}}}", m["Labels"], m["Value"]);
                }
                f.write_str("map[")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

// ---------------------------------------------------------------- numbers

/// Go's `strconv.FormatFloat(v, 'g', prec, 64)` as `fmt` uses it: `None` is
/// the shortest representation (`%v`), `Some(p)` is `%.{p}g`.
pub fn go_fmt_g(v: f64, prec: Option<usize>) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let neg = v < 0.0;
    let a = v.abs();
    // Decimal digits and the decimal point position (value = 0.DIGITS x 10^dp).
    let e = match prec {
        None => format!("{a:e}"),
        Some(p) => format!("{:.*e}", p.max(1) - 1, a),
    };
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    let nd = digits.len() as i32;
    let dp = exp + 1;
    let mut eprec = match prec {
        None => 6,
        Some(p) => p.max(1) as i32,
    };
    if prec.is_some() && eprec > nd && nd >= dp {
        eprec = nd;
    }
    let x = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if x < -4 || x >= eprec {
        out.push_str(&digits[..1]);
        if nd > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(out, "e{}{:02}", if x < 0 { '-' } else { '+' }, x.abs());
    } else if dp <= 0 {
        out.push_str("0.");
        for _ in 0..(-dp) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if dp >= nd {
        out.push_str(&digits);
        for _ in 0..(dp - nd) {
            out.push('0');
        }
    } else {
        out.push_str(&digits[..dp as usize]);
        out.push('.');
        out.push_str(&digits[dp as usize..]);
    }
    out
}

fn to_float(v: &Value) -> Result<f64, String> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s)
            .ok_or_else(|| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax")),
        other => Err(format!("can't convert {} to float", other.type_name())),
    }
}

fn parse_go_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", go_fmt_g(v, Some(4)))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", go_fmt_g(v, Some(4)))
}

fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return go_fmt_g(v, Some(4));
    }
    if v == 0.0 {
        return format!("{}s", go_fmt_g(v, Some(4)));
    }
    if v.abs() >= 1.0 {
        let (sign, v) = if v < 0.0 { ("-", -v) } else { ("", v) };
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", go_fmt_g(v, Some(4)));
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", go_fmt_g(v, Some(4)))
}

/// Go's `time.Time.String()` of a UTC time from float seconds.
fn go_time_string(v: f64) -> Result<String, String> {
    if v.is_nan() || v.is_infinite() {
        return Ok(go_fmt_g(v, Some(4)));
    }
    // Prometheus goes through model.Time: millisecond precision.
    let ms = ((v * 1e9) as i64) / 1_000_000;
    let t = chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| format!("{v} cannot be represented as a nanoseconds timestamp"))?;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let ns = t.timestamp_subsec_nanos();
    if ns != 0 {
        let f = format!("{ns:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    Ok(s)
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------- lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Field(String),
    Var(String),
    Dot,
    Str(String),
    Int(i64),
    Float(f64),
    LParen,
    RParen,
    Pipe,
    Declare,
    Assign,
    Comma,
}

/// One piece of template source: literal text or an action's tokens.
enum Piece {
    Text(String),
    Action { toks: Vec<Tok>, line: usize },
}

/// A template error (parse or execution), with Go's prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateError(pub String);

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TemplateError {}

fn lex(name: &str, src: &str) -> Result<Vec<Piece>, TemplateError> {
    let perr = |line: usize, msg: String| TemplateError(format!("template: {name}:{line}: {msg}"));
    let mut pieces = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while !rest.is_empty() {
        let Some(open) = rest.find("{{") else {
            let mut t = rest;
            if trim_next {
                t = t.trim_start();
            }
            pieces.push(Piece::Text(t.to_string()));
            break;
        };
        let mut text = &rest[..open];
        if trim_next {
            text = text.trim_start();
        }
        let after = &rest[open + 2..];
        let trim_left = after.starts_with("- ")
            || after.starts_with("-\t")
            || after.starts_with("-\n")
            || after.starts_with("-\r");
        if trim_left {
            text = text.trim_end();
        }
        line += rest[..open].matches('\n').count();
        if !text.is_empty() {
            pieces.push(Piece::Text(text.to_string()));
        }
        let body_start = if trim_left { 2 } else { 0 };
        let inner = &after[body_start..];
        // Comments.
        let trimmed = inner.trim_start();
        if trimmed.starts_with("/*") {
            let Some(end) = trimmed.find("*/") else {
                return Err(perr(line, "unclosed comment".into()));
            };
            let after_c = trimmed[end + 2..].trim_start();
            let (tr, skip) = if let Some(r) = after_c.strip_prefix("-}}") {
                (true, r)
            } else if let Some(r) = after_c.strip_prefix("}}") {
                (false, r)
            } else {
                return Err(perr(line, "comment ends before closing delimiter".into()));
            };
            line += rest[open..rest.len() - skip.len()].matches('\n').count();
            trim_next = tr;
            rest = skip;
            continue;
        }
        let (toks, consumed, tr) = lex_action(inner).map_err(|m| perr(line, m))?;
        pieces.push(Piece::Action { toks, line });
        let used = open + 2 + body_start + consumed;
        line += rest[open..used].matches('\n').count();
        trim_next = tr;
        rest = &rest[used..];
    }
    Ok(pieces)
}

/// Lexes one action up to and including `}}`; returns the tokens, the
/// bytes consumed and whether the closing delimiter trims (`-}}`).
fn lex_action(s: &str) -> Result<(Vec<Tok>, usize, bool), String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut toks = Vec::new();
    let ident_char = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    loop {
        if i >= b.len() {
            return Err("unclosed action".into());
        }
        let c = b[i];
        if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
            // ` -}}` trims.
            let rest = &s[i..].trim_start();
            if let Some(r) = rest.strip_prefix("-}}") {
                return Ok((toks, s.len() - r.len(), true));
            }
            i += 1;
            continue;
        }
        if s[i..].starts_with("}}") {
            return Ok((toks, i + 2, false));
        }
        match c {
            b'(' => {
                toks.push(Tok::LParen);
                i += 1;
            }
            b')' => {
                toks.push(Tok::RParen);
                i += 1;
            }
            b'|' => {
                toks.push(Tok::Pipe);
                i += 1;
            }
            b',' => {
                toks.push(Tok::Comma);
                i += 1;
            }
            b':' if b.get(i + 1) == Some(&b'=') => {
                toks.push(Tok::Declare);
                i += 2;
            }
            b'=' => {
                toks.push(Tok::Assign);
                i += 1;
            }
            b'"' => {
                let mut out = String::new();
                i += 1;
                loop {
                    let Some(ch) = s[i..].chars().next() else {
                        return Err("unterminated quoted string".into());
                    };
                    i += ch.len_utf8();
                    match ch {
                        '"' => break,
                        '\n' => return Err("unterminated quoted string".into()),
                        '\\' => {
                            let Some(e) = s[i..].chars().next() else {
                                return Err("unterminated quoted string".into());
                            };
                            i += e.len_utf8();
                            match e {
                                'n' => out.push('\n'),
                                't' => out.push('\t'),
                                'r' => out.push('\r'),
                                '\\' => out.push('\\'),
                                '"' => out.push('"'),
                                '\'' => out.push('\''),
                                'a' => out.push('\x07'),
                                'b' => out.push('\x08'),
                                'f' => out.push('\x0c'),
                                'v' => out.push('\x0b'),
                                'x' | 'u' | 'U' => {
                                    let n = match e {
                                        'x' => 2,
                                        'u' => 4,
                                        _ => 8,
                                    };
                                    let h = s.get(i..i + n).ok_or("bad escape")?;
                                    let cp =
                                        u32::from_str_radix(h, 16).map_err(|_| "bad escape")?;
                                    out.push(char::from_u32(cp).ok_or("bad escape")?);
                                    i += n;
                                }
                                _ => return Err(format!("unknown escape sequence \\{e}")),
                            }
                        }
                        c => out.push(c),
                    }
                }
                toks.push(Tok::Str(out));
            }
            b'`' => {
                let Some(end) = s[i + 1..].find('`') else {
                    return Err("unterminated raw quoted string".into());
                };
                toks.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
                i += end + 2;
            }
            b'$' => {
                let st = i;
                i += 1;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                toks.push(Tok::Var(s[st..i].to_string()));
            }
            b'.' if b
                .get(i + 1)
                .is_some_and(|c| ident_char(*c) && !c.is_ascii_digit()) =>
            {
                let st = i + 1;
                i += 1;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                toks.push(Tok::Field(s[st..i].to_string()));
            }
            b'.' if !b.get(i + 1).is_some_and(|c| c.is_ascii_digit()) => {
                toks.push(Tok::Dot);
                i += 1;
            }
            b'0'..=b'9' | b'-' | b'+' | b'.' => {
                let st = i;
                i += 1;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || b[i] == b'.'
                        || b[i] == b'_'
                        || ((b[i] == b'-' || b[i] == b'+') && matches!(b[i - 1], b'e' | b'E')))
                {
                    i += 1;
                }
                let t = s[st..i].replace('_', "");
                let (neg, body) = match t.strip_prefix('-') {
                    Some(r) => (true, r.to_string()),
                    None => (false, t.trim_start_matches('+').to_string()),
                };
                let lower = body.to_ascii_lowercase();
                let int = if let Some(h) = lower.strip_prefix("0x") {
                    i64::from_str_radix(h, 16).ok()
                } else if let Some(o) = lower.strip_prefix("0o") {
                    i64::from_str_radix(o, 8).ok()
                } else if let Some(bn) = lower.strip_prefix("0b") {
                    i64::from_str_radix(bn, 2).ok()
                } else {
                    body.parse::<i64>().ok()
                };
                if let Some(v) = int {
                    toks.push(Tok::Int(if neg { -v } else { v }));
                } else if let Ok(f) = body.parse::<f64>() {
                    toks.push(Tok::Float(if neg { -f } else { f }));
                } else {
                    return Err(format!("bad number syntax: {:?}", &s[st..i]));
                }
            }
            c if ident_char(c) => {
                let st = i;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(s[st..i].to_string()));
                // A field chain right after an identifier (e.g. `(x).A`) is
                // lexed as fields by the `.` rule above.
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected {ch:?} in command"));
            }
        }
    }
}

// ---------------------------------------------------------------- parser

#[derive(Debug, Clone)]
enum Arg {
    Dot,
    /// `.A.B` (chain of fields on dot).
    Field(Vec<String>),
    /// `$x.A.B`.
    Var(String, Vec<String>),
    Lit(Value),
    Func(String),
    /// `(pipeline).A.B`.
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug, Clone)]
struct Cmd {
    args: Vec<Arg>,
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Vec<String>,
    assign: bool,
    cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe, usize),
    If(Pipe, Vec<Node>, Vec<Node>, usize),
    With(Pipe, Vec<Node>, Vec<Node>, usize),
    Range(Pipe, Vec<Node>, Vec<Node>, usize),
    Template(String, Option<Pipe>, usize),
    Break,
    Continue,
}

const BUILTINS: &[&str] = &[
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "print", "printf",
    "println", "html", "js", "urlquery", "slice", "call",
];

const PROM_FUNCS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "now",
    "title",
    "toUpper",
    "toLower",
    "stripPort",
    "stripDomain",
    "match",
    "reReplaceAll",
    "graphLink",
    "tableLink",
    "parseDuration",
    "urlQueryEscape",
    "args",
    "safeHtml",
    "externalURL",
    "pathPrefix",
    "tmpl",
];

fn is_func(n: &str) -> bool {
    BUILTINS.contains(&n) || PROM_FUNCS.contains(&n)
}

/// How deeply a template may nest `if`/`with`/`range` (an `else if` chain
/// counts one level per `else if`), `define` bodies and parentheses: the
/// parser and the executor recurse once per level, and a debug build
/// overflows a 2 MiB stack near 1000 levels. Real templates nest a handful.
const MAX_NESTING: usize = 100;

/// How deeply execution may nest: the levels above plus `template` calls,
/// so a `define` that calls itself ends with an error (Go's text/template
/// stops at 100000 calls, on a stack that grows; ours does not).
const MAX_EXEC_DEPTH: usize = 2 * MAX_NESTING;

struct Parser<'a> {
    name: &'a str,
    pieces: Vec<Piece>,
    pos: usize,
    defines: BTreeMap<String, Vec<Node>>,
    /// Variables in scope (for "undefined variable" parse errors).
    vars: Vec<String>,
    range_depth: usize,
    /// Levels of [`MAX_NESTING`] open where the parser is.
    nesting: usize,
}

enum Stop {
    End,
    Else(Vec<Tok>, usize),
    Eof,
}

impl<'a> Parser<'a> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> TemplateError {
        TemplateError(format!("template: {}:{line}: {msg}", self.name))
    }

    /// Enters one level of nesting; an error past [`MAX_NESTING`]. (No
    /// matching exit on error paths: an error ends the parse.)
    fn enter(&mut self, line: usize) -> Result<(), TemplateError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.err(
                line,
                format!("nested too deeply: more than {MAX_NESTING} levels of actions, defines and parentheses"),
            ));
        }
        Ok(())
    }

    fn parse_list(&mut self) -> Result<(Vec<Node>, Stop), TemplateError> {
        let mut out = Vec::new();
        while self.pos < self.pieces.len() {
            let i = self.pos;
            self.pos += 1;
            let (toks, line) = match &self.pieces[i] {
                Piece::Text(t) => {
                    out.push(Node::Text(t.clone()));
                    continue;
                }
                Piece::Action { toks, line } => (toks.clone(), *line),
            };
            match toks.first() {
                None => return Err(self.err(line, "missing value for command")),
                Some(Tok::Ident(k)) => match k.as_str() {
                    "end" => return Ok((out, Stop::End)),
                    "else" => return Ok((out, Stop::Else(toks[1..].to_vec(), line))),
                    "if" | "with" | "range" => {
                        let n = self.parse_control(k.clone(), &toks[1..], line)?;
                        out.push(n);
                        continue;
                    }
                    "break" | "continue" => {
                        if self.range_depth == 0 {
                            return Err(
                                self.err(line, format!("{{{{{k}}}}} outside {{{{range}}}}"))
                            );
                        }
                        out.push(if k == "break" {
                            Node::Break
                        } else {
                            Node::Continue
                        });
                        continue;
                    }
                    "define" | "block" => {
                        let Some(Tok::Str(tn)) = toks.get(1) else {
                            return Err(self.err(line, format!("unexpected token in {k} clause")));
                        };
                        let tn = tn.clone();
                        let saved = std::mem::take(&mut self.vars);
                        self.vars.push("$".into());
                        self.enter(line)?;
                        let (body, stop) = self.parse_list()?;
                        self.nesting -= 1;
                        self.vars = saved;
                        if !matches!(stop, Stop::End) {
                            return Err(self.err(line, format!("unexpected EOF in {k}")));
                        }
                        self.defines.insert(tn.clone(), body);
                        if k == "block" {
                            let pipe = if toks.len() > 2 {
                                Some(self.parse_pipe(&toks[2..], line, false)?)
                            } else {
                                None
                            };
                            out.push(Node::Template(tn, pipe, line));
                        }
                        continue;
                    }
                    "template" => {
                        let Some(Tok::Str(tn)) = toks.get(1) else {
                            return Err(self.err(line, "unexpected token in template clause"));
                        };
                        let pipe = if toks.len() > 2 {
                            Some(self.parse_pipe(&toks[2..], line, false)?)
                        } else {
                            None
                        };
                        out.push(Node::Template(tn.clone(), pipe, line));
                        continue;
                    }
                    _ => {}
                },
                _ => {}
            }
            let p = self.parse_pipe(&toks, line, true)?;
            out.push(Node::Action(p, line));
        }
        Ok((out, Stop::Eof))
    }

    fn parse_control(
        &mut self,
        kind: String,
        toks: &[Tok],
        line: usize,
    ) -> Result<Node, TemplateError> {
        self.enter(line)?;
        let nvars = self.vars.len();
        let pipe = self.parse_pipe(toks, line, true)?;
        if kind == "range" {
            self.range_depth += 1;
        }
        let (body, stop) = self.parse_list()?;
        if kind == "range" {
            self.range_depth -= 1;
        }
        let els = match stop {
            Stop::End => Vec::new(),
            Stop::Eof => return Err(self.err(line, format!("unexpected EOF in {kind}"))),
            Stop::Else(rest, eline) => {
                if rest.is_empty() {
                    let (els, stop) = self.parse_list()?;
                    if !matches!(stop, Stop::End) {
                        return Err(self.err(eline, format!("expected end; found else in {kind}")));
                    }
                    els
                } else {
                    // `else if` / `else with`: a nested control that shares our `end`.
                    let Some(Tok::Ident(k2)) = rest.first() else {
                        return Err(self.err(eline, "unexpected token in else"));
                    };
                    if k2 != "if" && k2 != "with" {
                        return Err(self.err(eline, format!("unexpected {k2} in else")));
                    }
                    vec![self.parse_control(k2.clone(), &rest[1..], eline)?]
                }
            }
        };
        self.vars.truncate(nvars);
        self.nesting -= 1;
        Ok(match kind.as_str() {
            "if" => Node::If(pipe, body, els, line),
            "with" => Node::With(pipe, body, els, line),
            _ => Node::Range(pipe, body, els, line),
        })
    }

    fn parse_pipe(
        &mut self,
        toks: &[Tok],
        line: usize,
        allow_decl: bool,
    ) -> Result<Pipe, TemplateError> {
        let mut decl = Vec::new();
        let mut assign = false;
        let mut toks = toks;
        // `$x :=`, `$x =`, `$i, $e :=`
        if allow_decl {
            let mut j = 0;
            let mut names = Vec::new();
            while let Some(Tok::Var(v)) = toks.get(j) {
                names.push(v.clone());
                match toks.get(j + 1) {
                    Some(Tok::Comma) => j += 2,
                    Some(Tok::Declare) | Some(Tok::Assign) => {
                        assign = toks[j + 1] == Tok::Assign;
                        toks = &toks[j + 2..];
                        decl = names.clone();
                        break;
                    }
                    _ => break,
                }
            }
        }
        if assign {
            for d in &decl {
                if !self.vars.contains(d) {
                    return Err(self.err(line, format!("undefined variable \"{d}\"")));
                }
            }
        }
        let (cmds, used) = self.parse_cmds(toks, line)?;
        if used != toks.len() {
            return Err(self.err(line, format!("unexpected {:?} in operand", toks[used])));
        }
        if cmds.is_empty() {
            return Err(self.err(line, "missing value for command"));
        }
        if !assign {
            self.vars.extend(decl.iter().cloned());
        }
        Ok(Pipe { decl, assign, cmds })
    }

    /// Parses commands separated by `|` until the end or an unmatched `)`.
    fn parse_cmds(
        &mut self,
        toks: &[Tok],
        line: usize,
    ) -> Result<(Vec<Cmd>, usize), TemplateError> {
        let mut cmds = Vec::new();
        let mut i = 0;
        loop {
            let mut args = Vec::new();
            while i < toks.len() && toks[i] != Tok::Pipe && toks[i] != Tok::RParen {
                let (a, n) = self.parse_operand(&toks[i..], line)?;
                args.push(a);
                i += n;
            }
            if args.is_empty() {
                if i < toks.len() || !cmds.is_empty() {
                    return Err(self.err(line, "missing value for command"));
                }
                return Ok((cmds, i));
            }
            cmds.push(Cmd { args });
            if i < toks.len() && toks[i] == Tok::Pipe {
                i += 1;
                continue;
            }
            return Ok((cmds, i));
        }
    }

    fn fields_after(toks: &[Tok], mut i: usize) -> (Vec<String>, usize) {
        let mut f = Vec::new();
        while let Some(Tok::Field(n)) = toks.get(i) {
            f.push(n.clone());
            i += 1;
        }
        (f, i)
    }

    fn parse_operand(&mut self, toks: &[Tok], line: usize) -> Result<(Arg, usize), TemplateError> {
        Ok(match &toks[0] {
            Tok::Dot => (Arg::Dot, 1),
            Tok::Field(_) => {
                let (f, n) = Self::fields_after(toks, 0);
                (Arg::Field(f), n)
            }
            Tok::Var(v) => {
                if !self.vars.contains(v) {
                    return Err(self.err(line, format!("undefined variable \"{v}\"")));
                }
                let (f, n) = Self::fields_after(toks, 1);
                (Arg::Var(v.clone(), f), n)
            }
            Tok::Str(s) => (Arg::Lit(Value::Str(s.clone())), 1),
            Tok::Int(v) => (Arg::Lit(Value::Int(*v)), 1),
            Tok::Float(v) => (Arg::Lit(Value::Float(*v)), 1),
            Tok::Ident(id) => match id.as_str() {
                "true" => (Arg::Lit(Value::Bool(true)), 1),
                "false" => (Arg::Lit(Value::Bool(false)), 1),
                "nil" => (Arg::Lit(Value::Nil), 1),
                f if is_func(f) => (Arg::Func(f.to_string()), 1),
                f => return Err(self.err(line, format!("function \"{f}\" not defined"))),
            },
            Tok::LParen => {
                self.enter(line)?;
                let (cmds, used) = self.parse_cmds(&toks[1..], line)?;
                self.nesting -= 1;
                if toks.get(1 + used) != Some(&Tok::RParen) {
                    return Err(self.err(line, "unclosed left paren"));
                }
                let (f, n) = Self::fields_after(toks, 2 + used);
                let pipe = Pipe {
                    decl: vec![],
                    assign: false,
                    cmds,
                };
                (Arg::Sub(Box::new(pipe), f), n)
            }
            t => return Err(self.err(line, format!("unexpected {t:?} in operand"))),
        })
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
    defines: BTreeMap<String, Vec<Node>>,
}

/// Variables predefined for alert templates (Prometheus prepends
/// `{{$labels := .Labels}}...` to every template).
pub const ALERT_VARS: &[&str] = &["$labels", "$externalLabels", "$externalURL", "$value"];

impl Template {
    /// Parses `text`; `vars` are variables defined before the text starts.
    pub fn parse(name: &str, text: &str, vars: &[&str]) -> Result<Template, TemplateError> {
        let pieces = lex(name, text)?;
        let mut p = Parser {
            name,
            pieces,
            pos: 0,
            defines: BTreeMap::new(),
            vars: std::iter::once("$")
                .chain(vars.iter().copied())
                .map(String::from)
                .collect(),
            range_depth: 0,
            nesting: 0,
        };
        let (nodes, stop) = p.parse_list()?;
        match stop {
            Stop::Eof => {}
            Stop::End => return Err(p.err(0, "unexpected {{end}}")),
            Stop::Else(_, l) => return Err(p.err(l, "unexpected {{else}}")),
        }
        Ok(Template {
            name: name.to_string(),
            nodes,
            defines: p.defines,
        })
    }

    /// Runs the template with `dot` as `.` and `$`, extra variables bound.
    pub fn execute(
        &self,
        dot: &Value,
        vars: &[(&str, Value)],
        funcs: &FuncContext<'_>,
    ) -> Result<String, TemplateError> {
        let mut ex = Exec {
            tmpl: self,
            vars: std::iter::once(("$".to_string(), dot.clone()))
                .chain(vars.iter().map(|(k, v)| (k.to_string(), v.clone())))
                .collect(),
            funcs,
            out: String::new(),
            depth: 0,
        };
        ex.walk_list(dot, &self.nodes)?;
        Ok(ex.out)
    }
}

/// What Prometheus' template functions need from the outside.
#[derive(Default)]
pub struct FuncContext<'a> {
    /// Runs an instant query at the evaluation time: (labels, value) pairs.
    #[allow(clippy::type_complexity)]
    pub query: Option<&'a dyn Fn(&str) -> Result<Vec<(Labels, f64)>, String>>,
    /// The external URL (for `externalURL`, `pathPrefix`, links).
    pub external_url: String,
    /// Evaluation time in ms (for `now`).
    pub now_ms: i64,
}

enum Flow {
    Break,
    Continue,
}

struct Exec<'t, 'f> {
    tmpl: &'t Template,
    vars: Vec<(String, Value)>,
    funcs: &'f FuncContext<'f>,
    out: String,
    depth: usize,
}

impl Exec<'_, '_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> TemplateError {
        TemplateError(format!(
            "template: {}:{line}: executing \"{}\": {msg}",
            self.tmpl.name, self.tmpl.name
        ))
    }

    /// Enters one level of `if`/`with`/`range` or `template`; an error past
    /// [`MAX_EXEC_DEPTH`] (callers leave it on error: an error ends the run).
    fn enter(&mut self, line: usize) -> Result<(), TemplateError> {
        self.depth += 1;
        if self.depth > MAX_EXEC_DEPTH {
            return Err(self.err(
                line,
                format!("exceeded maximum template depth ({MAX_EXEC_DEPTH})"),
            ));
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Value, nodes: &[Node]) -> Result<Option<Flow>, TemplateError> {
        for n in nodes {
            if let Some(f) = self.walk(dot, n)? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    fn scoped(&mut self, dot: &Value, nodes: &[Node]) -> Result<Option<Flow>, TemplateError> {
        let n = self.vars.len();
        let r = self.walk_list(dot, nodes);
        self.vars.truncate(n);
        r
    }

    fn walk(&mut self, dot: &Value, n: &Node) -> Result<Option<Flow>, TemplateError> {
        match n {
            Node::Text(t) => self.out.push_str(t),
            Node::Action(p, line) => {
                let v = self.pipe(dot, p, *line)?;
                if p.decl.is_empty() {
                    let _ = write!(self.out, "{v}");
                }
            }
            Node::If(p, body, els, line) | Node::With(p, body, els, line) => {
                self.enter(*line)?;
                let nv = self.vars.len();
                let v = self.pipe(dot, p, *line)?;
                let is_with = matches!(n, Node::With(..));
                let r = if v.truthy() {
                    let d = if is_with { v } else { dot.clone() };
                    self.walk_list(&d, body)
                } else {
                    self.walk_list(dot, els)
                };
                self.vars.truncate(nv);
                self.depth -= 1;
                return r;
            }
            Node::Range(p, body, els, line) => {
                self.enter(*line)?;
                let r = self.range(dot, p, body, els, *line);
                self.depth -= 1;
                return r;
            }
            Node::Template(name, p, line) => {
                let Some(body) = self.tmpl.defines.get(name) else {
                    return Err(self.err(*line, format!("no such template \"{name}\"")));
                };
                let d = match p {
                    Some(p) => self.pipe(dot, p, *line)?,
                    None => Value::Nil,
                };
                self.enter(*line)?;
                let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), d.clone())]);
                let r = self.walk_list(&d, &body.clone());
                self.vars = saved;
                self.depth -= 1;
                r?;
            }
            Node::Break => return Ok(Some(Flow::Break)),
            Node::Continue => return Ok(Some(Flow::Continue)),
        }
        Ok(None)
    }

    fn range(
        &mut self,
        dot: &Value,
        p: &Pipe,
        body: &[Node],
        els: &[Node],
        line: usize,
    ) -> Result<Option<Flow>, TemplateError> {
        let nv = self.vars.len();
        let mut pp = p.clone();
        let decl = std::mem::take(&mut pp.decl);
        let v = self.pipe(dot, &pp, line)?;
        let items: Vec<(Value, Value)> = match v {
            Value::List(l) => l
                .into_iter()
                .enumerate()
                .map(|(i, v)| (Value::Int(i as i64), v))
                .collect(),
            Value::Map(m) => m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect(),
            Value::Int(n) => (0..n).map(|i| (Value::Int(i), Value::Int(i))).collect(),
            Value::Nil | Value::Missing => Vec::new(),
            other => return Err(self.err(line, format!("range can't iterate over {other}"))),
        };
        if items.is_empty() {
            let r = self.scoped(dot, els);
            self.vars.truncate(nv);
            return r;
        }
        for (k, v) in items {
            let n2 = self.vars.len();
            match decl.len() {
                0 => {}
                1 => self.vars.push((decl[0].clone(), v.clone())),
                _ => {
                    self.vars.push((decl[0].clone(), k));
                    self.vars.push((decl[1].clone(), v.clone()));
                }
            }
            let r = self.walk_list(&v, body)?;
            self.vars.truncate(n2);
            if let Some(Flow::Break) = r {
                break;
            }
        }
        self.vars.truncate(nv);
        Ok(None)
    }

    fn var(&self, name: &str) -> Value {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or(Value::Missing)
    }

    fn pipe(&mut self, dot: &Value, p: &Pipe, line: usize) -> Result<Value, TemplateError> {
        let mut v: Option<Value> = None;
        for c in &p.cmds {
            v = Some(self.cmd(dot, c, v, line)?);
        }
        let v = v.unwrap_or(Value::Nil);
        if p.assign {
            for d in &p.decl {
                if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == d) {
                    slot.1 = v.clone();
                }
            }
        } else if p.decl.len() == 1 {
            self.vars.push((p.decl[0].clone(), v.clone()));
        } else {
            for d in &p.decl {
                self.vars.push((d.clone(), v.clone()));
            }
        }
        Ok(v)
    }

    fn fields(&self, mut v: Value, fields: &[String], line: usize) -> Result<Value, TemplateError> {
        for f in fields {
            v = match v {
                Value::Map(mut m) => m.remove(f).unwrap_or(Value::Missing),
                Value::Nil | Value::Missing => {
                    return Err(self.err(line, format!("nil pointer evaluating interface {{}}.{f}")))
                }
                other => {
                    return Err(self.err(
                        line,
                        format!("can't evaluate field {f} in type {}", other.type_name()),
                    ))
                }
            };
        }
        Ok(v)
    }

    fn arg(&mut self, dot: &Value, a: &Arg, line: usize) -> Result<Value, TemplateError> {
        match a {
            Arg::Dot => Ok(dot.clone()),
            Arg::Field(f) => self.fields(dot.clone(), f, line),
            Arg::Var(v, f) => {
                let base = self.var(v);
                self.fields(base, f, line)
            }
            Arg::Lit(v) => Ok(v.clone()),
            Arg::Func(name) => self.call(dot, name, &[], None, line),
            Arg::Sub(p, f) => {
                let v = self.pipe(dot, p, line)?;
                self.fields(v, f, line)
            }
        }
    }

    fn cmd(
        &mut self,
        dot: &Value,
        c: &Cmd,
        prev: Option<Value>,
        line: usize,
    ) -> Result<Value, TemplateError> {
        if let Arg::Func(name) = &c.args[0] {
            return self.call(dot, name, &c.args[1..], prev, line);
        }
        if c.args.len() > 1 || prev.is_some() {
            return Err(self.err(line, "can't give argument to non-function"));
        }
        self.arg(dot, &c.args[0], line)
    }

    fn call(
        &mut self,
        dot: &Value,
        name: &str,
        args: &[Arg],
        prev: Option<Value>,
        line: usize,
    ) -> Result<Value, TemplateError> {
        // Short-circuit `and`/`or`.
        if name == "and" || name == "or" {
            let n = args.len() + prev.is_some() as usize;
            if n < 1 {
                return Err(self.err(
                    line,
                    format!("wrong number of args for {name}: want at least 1 got 0"),
                ));
            }
            let mut last = Value::Nil;
            for a in args {
                last = self.arg(dot, a, line)?;
                if (name == "and") != last.truthy() {
                    return Ok(last);
                }
            }
            if let Some(p) = prev {
                last = p;
            }
            return Ok(last);
        }
        let mut vals = Vec::with_capacity(args.len() + 1);
        for a in args {
            vals.push(self.arg(dot, a, line)?);
        }
        if let Some(p) = prev {
            vals.push(p);
        }
        self.apply(name, vals)
            .map_err(|e| self.err(line, format!("error calling {name}: {e}")))
    }

    fn apply(&self, name: &str, a: Vec<Value>) -> Result<Value, String> {
        let want = |n: usize| -> Result<(), String> {
            if a.len() != n {
                Err(format!(
                    "wrong number of args for {name}: want {n} got {}",
                    a.len()
                ))
            } else {
                Ok(())
            }
        };
        let s = |v: &Value| -> String { v.to_string() };
        Ok(match name {
            "not" => {
                want(1)?;
                Value::Bool(!a[0].truthy())
            }
            "eq" => {
                if a.len() < 2 {
                    return Err("missing argument for comparison".into());
                }
                Value::Bool(
                    a[1..]
                        .iter()
                        .any(|b| compare(&a[0], b) == Some(std::cmp::Ordering::Equal)),
                )
            }
            "ne" | "lt" | "le" | "gt" | "ge" => {
                want(2)?;
                let o = compare(&a[0], &a[1]).ok_or("incompatible types for comparison")?;
                use std::cmp::Ordering::*;
                Value::Bool(match name {
                    "ne" => o != Equal,
                    "lt" => o == Less,
                    "le" => o != Greater,
                    "gt" => o == Greater,
                    _ => o != Less,
                })
            }
            "len" => {
                want(1)?;
                Value::Int(match &a[0] {
                    Value::Str(s) => s.len(),
                    Value::List(l) => l.len(),
                    Value::Map(m) => m.len(),
                    o => return Err(format!("len of type {}", o.type_name())),
                } as i64)
            }
            "index" => {
                if a.is_empty() {
                    return Err("wrong number of args for index".into());
                }
                let mut v = a[0].clone();
                for k in &a[1..] {
                    v = match (v, k) {
                        (Value::Map(mut m), k) => {
                            m.remove(&k.to_string()).unwrap_or(Value::Missing)
                        }
                        (Value::List(l), Value::Int(i)) => {
                            if *i < 0 || *i as usize >= l.len() {
                                return Err(format!("index out of range: {i}"));
                            }
                            l[*i as usize].clone()
                        }
                        (Value::Nil | Value::Missing, _) => {
                            return Err("index of untyped nil".into())
                        }
                        (o, _) => {
                            return Err(format!("can't index item of type {}", o.type_name()))
                        }
                    };
                }
                v
            }
            "slice" => {
                let Some(Value::Str(st)) = a.first() else {
                    match a.first() {
                        Some(Value::List(l)) => {
                            let from = a
                                .get(1)
                                .map(|v| to_float(v).unwrap_or(0.0) as usize)
                                .unwrap_or(0);
                            let to = a
                                .get(2)
                                .map(|v| to_float(v).unwrap_or(0.0) as usize)
                                .unwrap_or(l.len());
                            if from > to || to > l.len() {
                                return Err("index out of range".into());
                            }
                            return Ok(Value::List(l[from..to].to_vec()));
                        }
                        _ => return Err("can't slice item".into()),
                    }
                };
                let from = a
                    .get(1)
                    .map(|v| to_float(v).unwrap_or(0.0) as usize)
                    .unwrap_or(0);
                let to = a
                    .get(2)
                    .map(|v| to_float(v).unwrap_or(0.0) as usize)
                    .unwrap_or(st.len());
                Value::Str(st.get(from..to).ok_or("index out of range")?.to_string())
            }
            "print" => Value::Str(go_sprint(&a)),
            "println" => {
                let mut o = a.iter().map(s).collect::<Vec<_>>().join(" ");
                o.push('\n');
                Value::Str(o)
            }
            "printf" => {
                let Some(Value::Str(f)) = a.first() else {
                    return Err("wrong type for value; expected string".into());
                };
                Value::Str(go_sprintf(f, &a[1..]))
            }
            "html" | "safeHtml" => Value::Str(
                go_sprint(&a)
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&#34;")
                    .replace('\'', "&#39;"),
            ),
            "js" => Value::Str(
                go_sprint(&a)
                    .replace('\\', "\\\\")
                    .replace('\'', "\\'")
                    .replace('"', "\\\"")
                    .replace('<', "\\u003C")
                    .replace('>', "\\u003E"),
            ),
            "urlquery" | "urlQueryEscape" => Value::Str(query_escape(&go_sprint(&a))),
            "call" => return Err("call is not supported".into()),
            "query" => {
                want(1)?;
                let q = s(&a[0]);
                let Some(f) = self.funcs.query else {
                    return Err("query is not available in this context".into());
                };
                let res = f(&q)?;
                Value::List(res.iter().map(|(l, v)| Value::sample(l, *v)).collect())
            }
            "first" => {
                want(1)?;
                match &a[0] {
                    Value::List(l) if !l.is_empty() => l[0].clone(),
                    Value::List(_) => {
                        return Err("first() called on vector with no elements".into())
                    }
                    o => {
                        return Err(format!(
                            "wrong type for value; expected queryResult; got {}",
                            o.type_name()
                        ))
                    }
                }
            }
            "label" => {
                want(2)?;
                let l = s(&a[0]);
                match &a[1] {
                    Value::Map(m) => match m.get("Labels") {
                        Some(Value::Map(lm)) => {
                            lm.get(&l).cloned().unwrap_or(Value::Str(String::new()))
                        }
                        _ => Value::Str(String::new()),
                    },
                    _ => return Err("wrong type for value; expected *template.sample".into()),
                }
            }
            "value" => {
                want(1)?;
                match &a[0] {
                    Value::Map(m) => m.get("Value").cloned().unwrap_or(Value::Nil),
                    _ => return Err("wrong type for value; expected *template.sample".into()),
                }
            }
            "strvalue" => {
                want(1)?;
                match &a[0] {
                    Value::Map(m) => match m.get("Labels") {
                        Some(Value::Map(lm)) => lm
                            .get("__value__")
                            .cloned()
                            .unwrap_or(Value::Str(String::new())),
                        _ => Value::Str(String::new()),
                    },
                    _ => return Err("wrong type for value; expected *template.sample".into()),
                }
            }
            "sortByLabel" => {
                want(2)?;
                let l = s(&a[0]);
                let Value::List(mut v) = a[1].clone() else {
                    return Err("wrong type for value; expected queryResult".into());
                };
                let key = |x: &Value| -> String {
                    if let Value::Map(m) = x {
                        if let Some(Value::Map(lm)) = m.get("Labels") {
                            return lm.get(&l).map(|v| v.to_string()).unwrap_or_default();
                        }
                    }
                    String::new()
                };
                v.sort_by_key(key);
                Value::List(v)
            }
            "humanize" => {
                want(1)?;
                Value::Str(humanize(to_float(&a[0])?))
            }
            "humanize1024" => {
                want(1)?;
                Value::Str(humanize1024(to_float(&a[0])?))
            }
            "humanizeDuration" => {
                want(1)?;
                Value::Str(humanize_duration(to_float(&a[0])?))
            }
            "humanizePercentage" => {
                want(1)?;
                Value::Str(format!("{}%", go_fmt_g(to_float(&a[0])? * 100.0, Some(4))))
            }
            "humanizeTimestamp" | "toTime" => {
                want(1)?;
                Value::Str(go_time_string(to_float(&a[0])?)?)
            }
            "toDuration" => {
                want(1)?;
                let v = to_float(&a[0])?;
                Value::Str(go_duration_string(v))
            }
            "now" => {
                want(0)?;
                Value::Float(self.funcs.now_ms as f64 / 1000.0)
            }
            "title" => {
                want(1)?;
                let mut out = String::new();
                let mut prev_letter = false;
                for ch in s(&a[0]).chars() {
                    if !prev_letter {
                        out.extend(ch.to_uppercase());
                    } else {
                        out.push(ch);
                    }
                    prev_letter = ch.is_alphanumeric() || ch == '\'' || ch == '_';
                }
                Value::Str(out)
            }
            "toUpper" => {
                want(1)?;
                Value::Str(s(&a[0]).to_uppercase())
            }
            "toLower" => {
                want(1)?;
                Value::Str(s(&a[0]).to_lowercase())
            }
            "stripPort" => {
                want(1)?;
                let h = s(&a[0]);
                Value::Str(split_host_port(&h).map(|(h, _)| h).unwrap_or(h))
            }
            "stripDomain" => {
                want(1)?;
                let h = s(&a[0]);
                let (host, port) = match split_host_port(&h) {
                    Some((host, port)) => (host, Some(port)),
                    None => (h.clone(), None),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    Value::Str(h)
                } else {
                    let short = host.split('.').next().unwrap_or("").to_string();
                    Value::Str(match port {
                        Some(p) => format!("{short}:{p}"),
                        None => short,
                    })
                }
            }
            "match" => {
                want(2)?;
                let re = regex::Regex::new(&s(&a[0])).map_err(|e| e.to_string())?;
                Value::Bool(re.is_match(&s(&a[1])))
            }
            "reReplaceAll" => {
                want(3)?;
                let re = regex::Regex::new(&s(&a[0])).map_err(|e| e.to_string())?;
                Value::Str(re.replace_all(&s(&a[2]), s(&a[1]).as_str()).into_owned())
            }
            "graphLink" => {
                want(1)?;
                Value::Str(format!(
                    "/graph?g0.expr={}&g0.tab=0",
                    query_escape(&s(&a[0]))
                ))
            }
            "tableLink" => {
                want(1)?;
                Value::Str(format!(
                    "/graph?g0.expr={}&g0.tab=1",
                    query_escape(&s(&a[0]))
                ))
            }
            "parseDuration" => {
                want(1)?;
                let d = crate::model::duration::parse(&s(&a[0])).map_err(|e| e.to_string())?;
                Value::Float(d.as_secs_f64())
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, v) in a.into_iter().enumerate() {
                    m.insert(format!("arg{i}"), v);
                }
                Value::Map(m)
            }
            "externalURL" => {
                want(0)?;
                Value::Str(self.funcs.external_url.clone())
            }
            "pathPrefix" => {
                want(0)?;
                let u = &self.funcs.external_url;
                let path = u
                    .split_once("://")
                    .map(|(_, r)| r.find('/').map(|i| &r[i..]).unwrap_or(""))
                    .unwrap_or("");
                Value::Str(path.to_string())
            }
            "tmpl" => return Err("tmpl is only available in consoles".into()),
            other => return Err(format!("function \"{other}\" not defined")),
        })
    }
}

fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(r) = s.strip_prefix('[') {
        let (h, p) = r.split_once("]:")?;
        return Some((h.to_string(), p.to_string()));
    }
    let (h, p) = s.rsplit_once(':')?;
    if h.contains(':') {
        return None;
    }
    Some((h.to_string(), p.to_string()))
}

/// Go's `time.Duration.String()` of float seconds.
fn go_duration_string(secs: f64) -> String {
    let ns = (secs * 1e9) as i64;
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if u < 1_000_000_000 {
        let (v, unit) = if u < 1_000 {
            (u as f64, "ns")
        } else if u < 1_000_000 {
            (u as f64 / 1e3, "µs")
        } else {
            (u as f64 / 1e6, "ms")
        };
        let _ = write!(out, "{}{unit}", go_fmt_g(v, None));
        return out;
    }
    let h = u / 3_600_000_000_000;
    let m = (u / 60_000_000_000) % 60;
    let s = (u % 60_000_000_000) as f64 / 1e9;
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if h > 0 || m > 0 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(out, "{}s", go_fmt_g(s, None));
    out
}

fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
            to_float(a).ok()?.partial_cmp(&to_float(b).ok()?)
        }
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Nil | Value::Missing, Value::Nil | Value::Missing) => {
            Some(std::cmp::Ordering::Equal)
        }
        _ => None,
    }
}

/// Go's `fmt.Sprint`: spaces between operands when neither is a string.
fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        let _ = write!(out, "{v}");
    }
    out
}

/// Go's `fmt.Sprintf` for the verbs templates use.
pub fn go_sprintf(f: &str, args: &[Value]) -> String {
    let mut out = String::new();
    let mut ai = 0;
    let mut it = f.chars().peekable();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut minus = false;
        let mut plus = false;
        let mut zero = false;
        let mut space = false;
        let mut sharp = false;
        while let Some(&fl) = it.peek() {
            match fl {
                '-' => minus = true,
                '+' => plus = true,
                '0' => zero = true,
                ' ' => space = true,
                '#' => sharp = true,
                _ => break,
            }
            it.next();
        }
        let mut width = None;
        while let Some(&d) = it.peek() {
            if let Some(v) = d.to_digit(10) {
                width = Some(width.unwrap_or(0) * 10 + v as usize);
                it.next();
            } else {
                break;
            }
        }
        let mut prec = None;
        if it.peek() == Some(&'.') {
            it.next();
            let mut p = 0;
            while let Some(&d) = it.peek() {
                if let Some(v) = d.to_digit(10) {
                    p = p * 10 + v as usize;
                    it.next();
                } else {
                    break;
                }
            }
            prec = Some(p);
        }
        let Some(verb) = it.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let bad = |arg: &Value| format!("%!{verb}({}={arg})", arg.type_name());
        let sign = |s: String, nonneg: bool| -> String {
            if nonneg && plus {
                format!("+{s}")
            } else if nonneg && space {
                format!(" {s}")
            } else {
                s
            }
        };
        let body = match verb {
            'v' | 's' => {
                let s = arg.to_string();
                match (verb, prec) {
                    ('s', Some(p)) => s.chars().take(p).collect(),
                    _ => s,
                }
            }
            'q' => format!("{:?}", arg.to_string()),
            't' => match arg {
                Value::Bool(b) => b.to_string(),
                o => bad(o),
            },
            'd' => match arg {
                Value::Int(i) => sign(i.to_string(), *i >= 0),
                o => bad(o),
            },
            'x' | 'X' | 'o' | 'b' => match arg {
                Value::Int(i) => {
                    let s = match verb {
                        'x' => format!("{:x}", i.unsigned_abs()),
                        'X' => format!("{:X}", i.unsigned_abs()),
                        'o' => format!("{:o}", i.unsigned_abs()),
                        _ => format!("{:b}", i.unsigned_abs()),
                    };
                    let s = if sharp && verb == 'x' {
                        format!("0x{s}")
                    } else {
                        s
                    };
                    if *i < 0 {
                        format!("-{s}")
                    } else {
                        s
                    }
                }
                Value::Str(s) if verb == 'x' || verb == 'X' => {
                    let h: String = s.bytes().map(|b| format!("{b:02x}")).collect();
                    if verb == 'X' {
                        h.to_uppercase()
                    } else {
                        h
                    }
                }
                o => bad(o),
            },
            'f' | 'F' | 'e' | 'E' | 'g' | 'G' => match arg {
                Value::Float(v) => {
                    let v = *v;
                    let s = if v.is_nan() {
                        "NaN".to_string()
                    } else if v.is_infinite() {
                        if v > 0.0 {
                            "+Inf".into()
                        } else {
                            "-Inf".into()
                        }
                    } else {
                        match verb {
                            'f' | 'F' => format!("{:.*}", prec.unwrap_or(6), v),
                            'e' | 'E' => {
                                let s = format!("{:.*e}", prec.unwrap_or(6), v);
                                let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
                                let e: i32 = e.parse().unwrap_or(0);
                                let r =
                                    format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
                                if verb == 'E' {
                                    r.to_uppercase()
                                } else {
                                    r
                                }
                            }
                            _ => go_fmt_g(v, prec),
                        }
                    };
                    let s = if v.is_infinite() && v > 0.0 && !plus {
                        "+Inf".to_string()
                    } else {
                        s
                    };
                    sign(s, v >= 0.0 && !v.is_infinite())
                }
                o => bad(o),
            },
            'c' => match arg {
                Value::Int(i) => char::from_u32(*i as u32)
                    .map(String::from)
                    .unwrap_or_default(),
                o => bad(o),
            },
            _ => format!("%!{verb}({}={arg})", arg.type_name()),
        };
        let w = width.unwrap_or(0);
        let len = body.chars().count();
        if len >= w {
            out.push_str(&body);
        } else if minus {
            out.push_str(&body);
            out.extend(std::iter::repeat_n(' ', w - len));
        } else if zero && !matches!(verb, 's' | 'v' | 'q') {
            let (sgn, digits) = match body.strip_prefix('-') {
                Some(r) => ("-", r.to_string()),
                None => ("", body.clone()),
            };
            out.push_str(sgn);
            out.extend(std::iter::repeat_n('0', w - len));
            out.push_str(&digits);
        } else {
            out.extend(std::iter::repeat_n(' ', w - len));
            out.push_str(&body);
        }
    }
    if ai < args.len() {
        out.push_str("%!(EXTRA ");
        let extra: Vec<String> = args[ai..]
            .iter()
            .map(|a| format!("{}={a}", a.type_name()))
            .collect();
        out.push_str(&extra.join(", "));
        out.push(')');
    }
    out
}

// ---------------------------------------------------------------- alert templates

/// What an alert's label and annotation templates see.
#[derive(Debug, Clone, Default)]
pub struct AlertTemplateData {
    pub labels: Labels,
    pub external_labels: Labels,
    pub external_url: String,
    pub value: f64,
}

fn labels_value(l: &Labels) -> Value {
    Value::from_str_map(l.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Parses an alert template as Prometheus validates rule files.
pub fn check_alert_template(name: &str, text: &str) -> Result<(), TemplateError> {
    Template::parse(&format!("__alert_{name}"), text, ALERT_VARS).map(|_| ())
}

/// Expands one alert label or annotation template. Errors are returned
/// as `<error expanding template: ...>` text, as Prometheus does.
pub fn expand_alert_template(
    rule_name: &str,
    text: &str,
    data: &AlertTemplateData,
    funcs: &FuncContext<'_>,
) -> String {
    // Fast path: no action at all.
    if !text.contains("{{") {
        return text.to_string();
    }
    match try_expand_alert_template(rule_name, text, data, funcs) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// Like [`expand_alert_template`] but returns the error.
pub fn try_expand_alert_template(
    rule_name: &str,
    text: &str,
    data: &AlertTemplateData,
    funcs: &FuncContext<'_>,
) -> Result<String, TemplateError> {
    let t = Template::parse(&format!("__alert_{rule_name}"), text, ALERT_VARS)?;
    let labels = labels_value(&data.labels);
    let ext = labels_value(&data.external_labels);
    let url = Value::Str(data.external_url.clone());
    let value = Value::Float(data.value);
    let mut root = BTreeMap::new();
    root.insert("Labels".to_string(), labels.clone());
    root.insert("ExternalLabels".to_string(), ext.clone());
    root.insert("ExternalURL".to_string(), url.clone());
    root.insert("Value".to_string(), value.clone());
    let vars = [
        ("$labels", labels),
        ("$externalLabels", ext),
        ("$externalURL", url),
        ("$value", value),
    ];
    t.execute(&Value::Map(root), &vars, funcs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let data = AlertTemplateData {
            labels: Labels::from_pairs(labels.iter().copied()),
            external_labels: Labels::from_pairs([("cluster", "eu1")]),
            external_url: "http://prom.example/x".into(),
            value,
        };
        let q = |q: &str| -> Result<Vec<(Labels, f64)>, String> {
            match q {
                "up" => Ok(vec![
                    (
                        Labels::from_pairs([("__name__", "up"), ("instance", "b")]),
                        0.0,
                    ),
                    (
                        Labels::from_pairs([("__name__", "up"), ("instance", "a")]),
                        1.0,
                    ),
                ]),
                _ => Ok(vec![]),
            }
        };
        let funcs = FuncContext {
            query: Some(&q),
            external_url: data.external_url.clone(),
            now_ms: 1_000_000,
        };
        expand_alert_template("Test", text, &data, &funcs)
    }

    #[test]
    fn go_float_formatting() {
        assert_eq!(go_fmt_g(1.0, None), "1");
        assert_eq!(go_fmt_g(0.5, None), "0.5");
        assert_eq!(go_fmt_g(100000.0, None), "100000");
        assert_eq!(go_fmt_g(1e6, None), "1e+06");
        assert_eq!(go_fmt_g(123456789.0, None), "1.23456789e+08");
        assert_eq!(go_fmt_g(0.0001, None), "0.0001");
        assert_eq!(go_fmt_g(0.00001, None), "1e-05");
        assert_eq!(go_fmt_g(1234.5678, Some(4)), "1235");
        assert_eq!(go_fmt_g(12345.0, Some(4)), "1.234e+04");
        assert_eq!(go_fmt_g(1.5, Some(4)), "1.5");
        assert_eq!(go_fmt_g(-2.25, None), "-2.25");
    }

    #[test]
    fn humanizers() {
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.001234), "1.234m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(12.0), "12");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize_duration(3661.0), "1h 1m 1s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.0012), "1.2ms");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(
            go_time_string(1435065584.128).unwrap(),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(
            go_time_string(0.0).unwrap(),
            "1970-01-01 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn variables_and_functions() {
        let l = [("instance", "host:9090"), ("job", "node")];
        assert_eq!(
            run("{{ $labels.instance }} down", &l, 1.0),
            "host:9090 down"
        );
        assert_eq!(run("{{ .Labels.job }}/{{ $value }}", &l, 0.25), "node/0.25");
        assert_eq!(run("{{ $labels.nope }}", &l, 1.0), "<no value>");
        assert_eq!(
            run("{{ $externalLabels.cluster }} {{ $externalURL }}", &l, 1.0),
            "eu1 http://prom.example/x"
        );
        assert_eq!(
            run("{{ $value | humanizePercentage }}", &l, 0.1234),
            "12.34%"
        );
        assert_eq!(run("{{ printf \"%.2f\" $value }}", &l, 1.23456), "1.23");
        assert_eq!(run("{{ printf \"%d items\" 3 }}", &l, 0.0), "3 items");
        assert_eq!(run("{{ $labels.job | toUpper }}", &l, 0.0), "NODE");
        assert_eq!(run("{{ title \"hello world\" }}", &l, 0.0), "Hello World");
        assert_eq!(
            run("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", &l, 0.0),
            "host"
        );
        assert_eq!(run("{{ stripPort $labels.instance }}", &l, 0.0), "host");
        assert_eq!(
            run(
                "{{ if gt $value 1.0 }}high{{ else if eq $value 1.0 }}one{{ else }}low{{ end }}",
                &l,
                1.0
            ),
            "one"
        );
        assert_eq!(
            run(
                "{{ if and (eq $labels.job \"node\") (not false) }}y{{ end }}",
                &l,
                0.0
            ),
            "y"
        );
        assert_eq!(run("{{ len $labels }}", &l, 0.0), "2");
        assert_eq!(run("{{ index $labels \"job\" }}", &l, 0.0), "node");
        assert_eq!(
            run("{{ with $labels.job }}[{{ . }}]{{ end }}", &l, 0.0),
            "[node]"
        );
        assert_eq!(
            run(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                &l,
                0.0
            ),
            "instance=host:9090;job=node;"
        );
        assert_eq!(
            run("{{ range query \"up\" | sortByLabel \"instance\" }}{{ .Labels.instance }}:{{ .Value }} {{ end }}", &l, 0.0),
            "a:1 b:0 "
        );
        assert_eq!(run("{{ query \"up\" | first | value }}", &l, 0.0), "0");
        assert_eq!(
            run("{{ query \"up\" | first | label \"instance\" }}", &l, 0.0),
            "b"
        );
        assert_eq!(
            run(
                "{{ with query \"nothing\" }}x{{ else }}none{{ end }}",
                &l,
                0.0
            ),
            "none"
        );
        assert_eq!(run("a {{- \" b \" -}} c", &l, 0.0), "a b c");
        assert_eq!(run("{{/* comment */}}x", &l, 0.0), "x");
        assert_eq!(run("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", &l, 0.0), "2");
        assert_eq!(run("{{ 1234567.0 | humanize }}", &l, 0.0), "1.235M");
        assert_eq!(
            run("{{ \"3600\" | humanizeDuration }}", &l, 0.0),
            "1h 0m 0s"
        );
        assert_eq!(
            run(
                "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" 5 }}",
                &l,
                0.0
            ),
            "[5]"
        );
    }

    #[test]
    fn errors() {
        assert!(check_alert_template("A", "{{ nope }}")
            .unwrap_err()
            .0
            .contains("function \"nope\" not defined"));
        assert!(check_alert_template("A", "{{ if 1 }}").is_err());
        assert!(check_alert_template("A", "{{ $undefined }}").is_err());
        assert!(check_alert_template("A", "{{ $.labels.service }}").is_ok());
        let out = run("{{ query \"nothing\" | first }}", &[], 0.0);
        assert!(
            out.starts_with("<error expanding template: template: __alert_Test:1: executing"),
            "{out}"
        );
        assert!(
            out.contains("first() called on vector with no elements"),
            "{out}"
        );
    }

    fn on_worker_stack(f: impl FnOnce() + Send + 'static) {
        // A tokio worker's stack: rule evaluation expands templates there.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    /// Each shape the parser and executor recurse on: at the limit it runs
    /// (on a worker's stack, debug build included), one level more is a
    /// parse error naming the limit and the line.
    #[test]
    fn nesting_is_bounded() {
        let shapes = |n: usize| {
            [
                format!("{}x{}", "{{if true}}".repeat(n), "{{end}}".repeat(n)),
                format!("{}x{}", "{{range 1}}".repeat(n), "{{end}}".repeat(n)),
                format!("{}x{}", "{{with 1}}".repeat(n), "{{end}}".repeat(n)),
                format!(
                    "{{{{if false}}}}{}x{{{{end}}}}",
                    "{{else if false}}".repeat(n - 1)
                ),
                format!("{{{{{}1{}}}}}", "(".repeat(n), ")".repeat(n)),
                format!(
                    "{{{{define \"d\"}}}}{}x{}{{{{end}}}}{{{{template \"d\"}}}}",
                    "{{if true}}".repeat(n - 1),
                    "{{end}}".repeat(n - 1)
                ),
            ]
        };
        on_worker_stack(move || {
            for t in shapes(MAX_NESTING) {
                let out = run(&t, &[], 1.0);
                assert!(!out.contains("error"), "{}: {out}", &t[..30]);
            }
            for t in shapes(MAX_NESTING + 1).into_iter().chain(shapes(50_000)) {
                let e = check_alert_template("A", &t).unwrap_err().to_string();
                assert!(
                    e.contains(":1: nested too deeply: more than 100 levels of actions, defines and parentheses"),
                    "{}: {e}",
                    &t[..30]
                );
            }
        });
    }

    /// A `define` calling itself, directly or through another, ends with
    /// Go's error (at wasmon's depth) instead of overflowing the stack,
    /// also when each call adds levels of its own.
    #[test]
    fn recursive_templates_end_with_an_error() {
        on_worker_stack(|| {
            for t in [
                "{{define \"a\"}}{{template \"a\" .}}{{end}}{{template \"a\" .}}".to_string(),
                "{{define \"a\"}}{{template \"b\"}}{{end}}{{define \"b\"}}x{{template \"a\"}}{{end}}{{template \"a\"}}".to_string(),
                format!(
                    "{{{{define \"a\"}}}}{}{{{{template \"a\"}}}}{}{{{{end}}}}{{{{template \"a\"}}}}",
                    "{{if true}}".repeat(MAX_NESTING - 1),
                    "{{end}}".repeat(MAX_NESTING - 1)
                ),
            ] {
                let out = run(&t, &[], 1.0);
                assert!(out.contains("exceeded maximum template depth (200)"), "{out}");
            }
        });
    }
}
