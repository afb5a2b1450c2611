//! The builtin functions of Go's text/template (`funcs.go`: and/or/not,
//! len/index/slice, print/printf/println, html/js/urlquery, eq/ne/lt/le/
//! gt/ge) and the registry a host adds its library to.

use std::fmt::{self, Write as _};

use crate::exec::Value;

/// Why a host's function or value failed: the message after `error
/// calling NAME: ` (functions) or `executing "NAME": ` (an [`Object`]'s
/// fields and printing), in Go's words where Go has them.
///
/// Hand-written rather than derived: this crate is shipped into every Rust
/// plugin and depends on nothing but the Go formatting crate.
///
/// [`Object`]: crate::exec::Object
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FuncError {
    /// Called with `got` arguments where `name` takes `want`.
    Arity {
        name: String,
        want: usize,
        got: usize,
    },
    /// A string argument that is not a number (Go's `strconv.ParseFloat`).
    ParseFloat(String),
    /// A value that cannot be used as a number (Go's type name).
    NotANumber(&'static str),
    /// `.field` on a host value that has no such field.
    NoField {
        type_name: &'static str,
        field: String,
    },
    /// A function no library or builtin defines.
    Undefined(String),
    /// Any other failure, in the function's own words.
    Message(String),
}

impl FuncError {
    /// A failure in the function's own words.
    pub fn message(msg: impl Into<String>) -> FuncError {
        FuncError::Message(msg.into())
    }
}

impl fmt::Display for FuncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FuncError::Arity { name, want, got } => {
                write!(f, "wrong number of args for {name}: want {want} got {got}")
            }
            FuncError::ParseFloat(s) => {
                write!(f, "strconv.ParseFloat: parsing {s:?}: invalid syntax")
            }
            FuncError::NotANumber(type_name) => write!(f, "can't convert {type_name} to float"),
            FuncError::NoField { type_name, field } => {
                write!(f, "{type_name} has no field {field:?}")
            }
            FuncError::Undefined(name) => write!(f, "function \"{name}\" not defined"),
            FuncError::Message(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for FuncError {}

/// The functions `and`/`or` (short-circuited by the executor) and the
/// others of [`builtin`].
pub const BUILTINS: &[&str] = &[
    "and", "or", "not", "eq", "ne", "lt", "le", "gt", "ge", "len", "index", "print", "printf",
    "println", "html", "js", "urlquery", "slice", "call",
];

/// A host's function library (Go's `template.FuncMap`): Prometheus' for
/// rule templates, Alertmanager's for notification templates.
pub trait Library {
    /// Whether this library defines `name` (asked at parse time).
    fn has(&self, name: &str) -> bool;
    /// Calls `name`, which [`Library::has`] said is defined. The error is
    /// the message after `error calling NAME: `.
    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, FuncError>;
}

/// The functions a template sees: the builtins plus the hosts' libraries,
/// a library's function shadowing a builtin of the same name as in Go.
#[derive(Default, Clone)]
pub struct Funcs<'a> {
    libraries: Vec<&'a dyn Library>,
}

impl<'a> Funcs<'a> {
    /// Only the builtins.
    pub fn builtins() -> Funcs<'a> {
        Funcs::default()
    }

    /// Adds `library` (a library added earlier wins a name both define).
    pub fn with(mut self, library: &'a dyn Library) -> Funcs<'a> {
        self.libraries.push(library);
        self
    }

    /// Whether `name` is a function.
    pub fn has(&self, name: &str) -> bool {
        self.libraries.iter().any(|l| l.has(name)) || BUILTINS.contains(&name)
    }

    /// Calls `name` with evaluated arguments (`and`/`or` are the executor's).
    pub fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, FuncError> {
        match self.libraries.iter().find(|l| l.has(name)) {
            Some(l) => l.call(name, args),
            None => builtin(name, args),
        }
    }
}

/// A number argument as float64 (Prometheus' functions take strings too).
pub fn to_float(v: &Value) -> Result<f64, FuncError> {
    match v {
        Value::Float(f) => Ok(*f),
        Value::Int(i) => Ok(*i as f64),
        Value::Str(s) => parse_go_float(s).ok_or_else(|| FuncError::ParseFloat(s.clone())),
        other => Err(FuncError::NotANumber(other.type_name())),
    }
}

/// Go's `strconv.ParseFloat` spellings of the special values, else Rust's.
pub fn parse_go_float(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
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

/// Go's error for a call with `args.len() != n`.
pub fn arity(name: &str, args: &[Value], n: usize) -> Result<(), FuncError> {
    if args.len() != n {
        return Err(FuncError::Arity {
            name: name.to_string(),
            want: n,
            got: args.len(),
        });
    }
    Ok(())
}

/// Go's `template.HTMLEscapeString`.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Go's html/template escaping of a value printed in a page's text
/// (`htmlEscaper`): also `+` and NUL, unlike [`html_escape`].
pub fn html_escape_go(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '+' => out.push_str("&#43;"),
            '\0' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn builtin(name: &str, a: Vec<Value>) -> Result<Value, FuncError> {
    let want = |n: usize| arity(name, &a, n);
    let s = |v: &Value| -> String { v.to_string() };
    Ok(match name {
        "not" => {
            want(1)?;
            Value::Bool(!a[0].truthy())
        }
        "eq" => {
            if a.len() < 2 {
                return Err(FuncError::message("missing argument for comparison"));
            }
            Value::Bool(
                a[1..]
                    .iter()
                    .any(|b| compare(&a[0], b) == Some(std::cmp::Ordering::Equal)),
            )
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            want(2)?;
            let o = compare(&a[0], &a[1])
                .ok_or_else(|| FuncError::message("incompatible types for comparison"))?;
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
                Value::Object(o) => match o.0.length() {
                    Some(n) => n,
                    None => {
                        return Err(FuncError::Message(format!(
                            "len of type {}",
                            o.0.type_name()
                        )))
                    }
                },
                o => return Err(FuncError::Message(format!("len of type {}", o.type_name()))),
            } as i64)
        }
        "index" => {
            if a.is_empty() {
                return Err(FuncError::message("wrong number of args for index"));
            }
            let mut v = a[0].clone();
            for k in &a[1..] {
                v = match (v, k) {
                    (Value::Map(mut m), k) => m.remove(&k.to_string()).unwrap_or(Value::Missing),
                    (Value::Object(o), k) if o.0.index(k).is_some() => {
                        o.0.index(k).unwrap_or(Value::Missing)
                    }
                    (Value::List(l), Value::Int(i)) => {
                        if *i < 0 || *i as usize >= l.len() {
                            return Err(FuncError::Message(format!("index out of range: {i}")));
                        }
                        l[*i as usize].clone()
                    }
                    (Value::Nil | Value::Missing, _) => {
                        return Err(FuncError::message("index of untyped nil"))
                    }
                    (o, _) => {
                        return Err(FuncError::Message(format!(
                            "can't index item of type {}",
                            o.type_name()
                        )))
                    }
                };
            }
            v
        }
        "slice" => {
            // The bounds `slice x [from [to]]`, the missing ones the ends.
            let bounds = |len: usize| {
                let at = |i: usize, default: usize| {
                    a.get(i)
                        .map_or(default, |v| to_float(v).unwrap_or(0.0) as usize)
                };
                let (from, to) = (at(1, 0), at(2, len));
                if from > to || to > len {
                    return Err(FuncError::message("index out of range"));
                }
                Ok(from..to)
            };
            match a.first() {
                Some(Value::List(l)) => Value::List(l[bounds(l.len())?].to_vec()),
                Some(Value::Str(st)) => Value::Str(
                    st.get(bounds(st.len())?)
                        .ok_or_else(|| FuncError::message("index out of range"))?
                        .to_string(),
                ),
                _ => return Err(FuncError::message("can't slice item")),
            }
        }
        "print" => Value::Str(go_sprint(&a)),
        "println" => {
            let mut o = a.iter().map(s).collect::<Vec<_>>().join(" ");
            o.push('\n');
            Value::Str(o)
        }
        "printf" => {
            let Some(Value::Str(f)) = a.first() else {
                return Err(FuncError::message("wrong type for value; expected string"));
            };
            Value::Str(go_sprintf(f, &a[1..]))
        }
        "html" => Value::Str(html_escape(&go_sprint(&a))),
        "js" => Value::Str(
            go_sprint(&a)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('"', "\\\"")
                .replace('<', "\\u003C")
                .replace('>', "\\u003E"),
        ),
        "urlquery" => Value::Str(query_escape(&go_sprint(&a))),
        "call" => return Err(FuncError::message("call is not supported")),
        other => return Err(FuncError::Undefined(other.to_string())),
    })
}

/// Go's `eq`/`lt`... comparison of basic kinds; `None` if incomparable.
pub fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
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
pub fn go_sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        let _ = write!(out, "{v}");
    }
    out
}

/// Go's `fmt` refuses a width or precision past this (`tooLarge`): the
/// rest of the format is dropped with `%!(NOVERB)`, so `%999999999d`
/// cannot ask for a gigabyte of padding.
const MAX_WIDTH: usize = 1_000_000;

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
                if width > Some(MAX_WIDTH) {
                    break;
                }
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
                    if p > MAX_WIDTH {
                        break;
                    }
                } else {
                    break;
                }
            }
            prec = Some(p);
        }
        let too_large = width > Some(MAX_WIDTH) || prec > Some(MAX_WIDTH);
        let Some(verb) = it.next().filter(|_| !too_large) else {
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
                    let s = match verb {
                        'f' | 'F' => wasmon_gofmt::format_float(v, 'f', prec.unwrap_or(6) as i32),
                        'e' | 'E' => wasmon_gofmt::format_float(v, verb, prec.unwrap_or(6) as i32),
                        _ => wasmon_gofmt::format_float(v, verb, prec.map_or(-1, |p| p as i32)),
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

// ---- functions Prometheus' and Alertmanager's libraries both have ----

/// Go's `%.4g`, the humanizers' precision.
fn g4(v: f64) -> String {
    wasmon_gofmt::format_float(v, 'g', 4)
}

/// prometheus/common's `HumanizeDuration` (Prometheus' and Alertmanager's
/// `humanizeDuration`): seconds as `1d 2h 3m 4s`, `1.5s`, `250ms`.
pub fn humanize_duration(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    if v == 0.0 {
        return format!("{}s", g4(v));
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
        return format!("{sign}{}s", g4(v));
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
    format!("{}{prefix}s", g4(v))
}

/// Go's `regexp.MatchString` (`match`): unanchored; a bad pattern is an
/// error naming it.
#[cfg(feature = "regex")]
pub fn re_match(pattern: &str, text: &str) -> Result<bool, FuncError> {
    Ok(compile(pattern)?.is_match(text))
}

/// `reReplaceAll PATTERN REPL TEXT`: Go's `ReplaceAllString`, `$1` and
/// `${name}` expanded in REPL.
#[cfg(feature = "regex")]
pub fn re_replace_all(pattern: &str, repl: &str, text: &str) -> Result<String, FuncError> {
    Ok(compile(pattern)?.replace_all(text, repl).into_owned())
}

#[cfg(feature = "regex")]
fn compile(pattern: &str) -> Result<regex::Regex, FuncError> {
    // Bounded: a template's pattern must not ask for an unbounded program.
    regex::RegexBuilder::new(pattern)
        .size_limit(1 << 20)
        .build()
        .map_err(|e| FuncError::Message(format!("regexp: Compile({pattern:?}): {e}")))
}

/// Go's `strings.ToUpper` (`toUpper`): per character, a character whose
/// upper case is several (`ß`) kept as it is, as Go's simple mapping.
pub fn to_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

/// Go's `strings.ToLower` (`toLower`), per character like [`to_upper`].
pub fn to_lower(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}
