//! Alertmanager label matchers (`name="value"`, `!=`, `=~`, `!~`) and their
//! two parsers: the UTF-8 strict parser (`matcher/parse`, Alertmanager's
//! default since 0.27) and the classic lenient one (`pkg/labels.ParseMatchers`).
//! [`parse_matchers_fallback`] is Alertmanager's default "fallback" mode:
//! UTF-8 first, classic when the UTF-8 parser refuses the input.
//!
//! Regular expressions are anchored (`^(?:re)$`) as in Alertmanager. Error
//! texts follow Alertmanager's, positions included, so users can search them.

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::model::Labels;

/// The matching operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MatchType {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regexp,
    #[serde(rename = "!~")]
    NotRegexp,
}

impl MatchType {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }

    pub fn is_regex(self) -> bool {
        matches!(self, MatchType::Regexp | MatchType::NotRegexp)
    }

    pub fn is_equal(self) -> bool {
        matches!(self, MatchType::Equal | MatchType::Regexp)
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why matchers do not parse or a matcher does not compile. The texts are
/// Alertmanager's (users search for them; the conformance tests compare
/// them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// A regex value that does not compile, phrased like Go's `regexp`.
    #[error("{0}")]
    Regex(String),
    /// The UTF-8 parser's refusal, led by the column range it is about
    /// (`start:end: ...`).
    #[error("{0}")]
    Syntax(String),
    /// One matcher was asked for, none was given.
    #[error("no matchers")]
    NoMatchers,
    /// One matcher was asked for, several were given.
    #[error("expected 1 matcher, found {0}")]
    NotOne(usize),
    /// The classic parser: not `name op value`.
    #[error("bad matcher format: {0}")]
    BadFormat(String),
    /// The classic parser: a `"` inside the value.
    #[error("matcher value contains unescaped double quote: {0}")]
    UnescapedQuote(String),
}

/// One label matcher. A missing label matches as the empty string.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchType,
    pub value: String,
    re: Option<Regex>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Matcher({self})")
    }
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Matcher) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}
impl Eq for Matcher {}

impl PartialOrd for Matcher {
    fn partial_cmp(&self, o: &Matcher) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Matcher {
    /// Alertmanager's `labels.Matchers` order: name, value, then type.
    fn cmp(&self, o: &Matcher) -> Ordering {
        self.name
            .cmp(&o.name)
            .then_with(|| self.value.cmp(&o.value))
            .then_with(|| self.op.cmp(&o.op))
    }
}

impl Matcher {
    /// A matcher; regex values are compiled anchored.
    pub fn new(
        op: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, MatcherError> {
        let name = name.into();
        let value = value.into();
        let re = if op.is_regex() {
            let anchored = format!("^(?:{value})$");
            Some(
                Regex::new(&anchored)
                    .map_err(|e| MatcherError::Regex(go_regex_error(&anchored, &e)))?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name,
            op,
            value,
            re,
        })
    }

    /// Does a label value (`""` for a missing label) satisfy the matcher?
    pub fn matches_value(&self, v: &str) -> bool {
        match self.op {
            MatchType::Equal => v == self.value,
            MatchType::NotEqual => v != self.value,
            MatchType::Regexp => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchType::NotRegexp => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    /// `name="value"`, the name quoted when it holds reserved characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.chars().any(is_reserved) || self.name.is_empty() {
            write!(
                f,
                "{}{}{}",
                go_quote(&self.name),
                self.op,
                go_quote(&self.value)
            )
        } else {
            write!(f, "{}{}{}", self.name, self.op, go_quote(&self.value))
        }
    }
}

/// A list of matchers; all must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Matcher> {
        self.0.iter()
    }
    /// Sorted as Alertmanager sorts a route's matchers (for route keys).
    pub fn sorted(mut self) -> Matchers {
        self.0.sort();
        self
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// The matcher in the Alertmanager API v2 JSON shape (silences).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl ApiMatcher {
    pub fn to_matcher(&self) -> Result<Matcher, MatcherError> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchType::Equal,
            (false, false) => MatchType::NotEqual,
            (true, true) => MatchType::Regexp,
            (true, false) => MatchType::NotRegexp,
        };
        Matcher::new(op, self.name.clone(), self.value.clone())
    }
}

impl From<&Matcher> for ApiMatcher {
    fn from(m: &Matcher) -> ApiMatcher {
        ApiMatcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: m.op.is_regex(),
            is_equal: m.op.is_equal(),
        }
    }
}

/// Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if c.is_control() => {
                if (c as u32) < 0x10000 {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                } else {
                    out.push_str(&format!("\\U{:08x}", c as u32))
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Rust's regex errors, phrased like Go's `regexp` for the common cases.
pub(crate) fn go_regex_error(anchored: &str, e: &regex::Error) -> String {
    let msg = e.to_string();
    if msg.contains("unclosed character class") {
        // Go reports the text from the unclosed '[' to the end.
        let from = unclosed_class_start(anchored).unwrap_or(0);
        return format!(
            "error parsing regexp: missing closing ]: `{}`",
            &anchored[from..]
        );
    }
    if msg.contains("unclosed group") {
        return format!("error parsing regexp: missing closing ): `{anchored}`");
    }
    if msg.contains("unopened group") {
        return format!("error parsing regexp: unexpected ): `{anchored}`");
    }
    if msg.contains("repetition operator missing expression") {
        return format!(
            "error parsing regexp: missing argument to repetition operator: `{anchored}`"
        );
    }
    let detail = msg
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect::<Vec<_>>()
        .join("; ");
    if detail.is_empty() {
        format!("error parsing regexp: {msg}")
    } else {
        format!(
            "error parsing regexp: {}: `{anchored}`",
            detail.trim_start_matches("error: ")
        )
    }
}

fn unclosed_class_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut open: Option<usize> = None;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' if open.is_none() => {
                open = Some(i);
                // A ']' right after '[' or '[^' is literal.
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if open.is_some() => open = None,
            _ => {}
        }
        i += 1;
    }
    open
}

// ---------------------------------------------------------------------------
// UTF-8 strict parser (matcher/parse).

/// Characters that end an unquoted literal.
fn is_reserved(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Eof,
    OpenBrace,
    CloseBrace,
    Comma,
    Equals,
    NotEquals,
    Matches,
    NotMatches,
    Quoted,
    Unquoted,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    value: String,
    col_start: usize,
    col_end: usize,
}

#[derive(Clone)]
struct Lexer<'a> {
    input: &'a str,
    err: Option<MatcherError>,
    start: usize,
    pos: usize,
    width: usize,
    column: usize,
    cols: usize,
}

impl<'a> Lexer<'a> {
    fn new(input: &'a str) -> Lexer<'a> {
        Lexer {
            input,
            err: None,
            start: 0,
            pos: 0,
            width: 0,
            column: 0,
            cols: 0,
        }
    }

    fn next(&mut self) -> Option<char> {
        if self.pos >= self.input.len() {
            self.width = 0;
            return None;
        }
        let c = self.input[self.pos..].chars().next().unwrap();
        self.width = c.len_utf8();
        self.pos += self.width;
        self.cols += 1;
        Some(c)
    }

    fn rewind(&mut self) {
        self.pos -= self.width;
        if self.width > 0 {
            self.cols -= 1;
        }
    }

    fn skip(&mut self) {
        self.start = self.pos;
        self.column = self.cols;
    }

    fn emit(&mut self, kind: Kind) -> Token {
        let t = Token {
            kind,
            value: self.input[self.start..self.pos].to_string(),
            col_start: self.column,
            col_end: self.cols,
        };
        self.start = self.pos;
        self.column = self.cols;
        t
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.next() {
            Some(c) if valid.contains(c) => true,
            _ => {
                self.rewind();
                false
            }
        }
    }

    fn peek(&mut self) -> Result<Token, MatcherError> {
        let saved = (self.start, self.pos, self.width, self.column, self.cols);
        let r = self.scan();
        (self.start, self.pos, self.width, self.column, self.cols) = saved;
        r
    }

    fn scan(&mut self) -> Result<Token, MatcherError> {
        if let Some(e) = &self.err {
            return Err(e.clone());
        }
        let r = self.scan_inner();
        if let Err(e) = &r {
            self.err = Some(e.clone());
        }
        r
    }

    fn scan_inner(&mut self) -> Result<Token, MatcherError> {
        while let Some(c) = self.next() {
            match c {
                '{' => return Ok(self.emit(Kind::OpenBrace)),
                '}' => return Ok(self.emit(Kind::CloseBrace)),
                ',' => return Ok(self.emit(Kind::Comma)),
                '=' | '!' => {
                    self.rewind();
                    return self.scan_operator();
                }
                '"' => {
                    self.rewind();
                    return self.scan_quoted();
                }
                c if !is_reserved(c) => {
                    self.rewind();
                    return Ok(self.scan_unquoted());
                }
                c if c.is_whitespace() => self.skip(),
                _ => {
                    return Err(MatcherError::Syntax(format!(
                        "{}:{}: {}: invalid input",
                        self.column,
                        self.cols,
                        &self.input[self.start..self.pos]
                    )))
                }
            }
        }
        Ok(Token {
            kind: Kind::Eof,
            value: String::new(),
            col_start: self.column,
            col_end: self.cols,
        })
    }

    fn scan_operator(&mut self) -> Result<Token, MatcherError> {
        if self.accept("!") {
            if self.accept("=") {
                return Ok(self.emit(Kind::NotEquals));
            }
            if self.accept("~") {
                return Ok(self.emit(Kind::NotMatches));
            }
            return Err(MatcherError::Syntax(format!(
                "{}:{}: unexpected end of input, expected one of '=~'",
                self.column, self.cols
            )));
        }
        if self.accept("=") {
            if self.accept("~") {
                return Ok(self.emit(Kind::Matches));
            }
            return Ok(self.emit(Kind::Equals));
        }
        Err(MatcherError::Syntax(format!(
            "{}:{}: unexpected end of input, expected one of '=!'",
            self.column, self.cols
        )))
    }

    fn scan_quoted(&mut self) -> Result<Token, MatcherError> {
        self.next(); // the opening quote
        let mut escaped = false;
        while let Some(c) = self.next() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                return Ok(self.emit(Kind::Quoted));
            }
        }
        Err(MatcherError::Syntax(format!(
            "{}:{}: {}: missing end \"",
            self.column,
            self.cols,
            &self.input[self.start..self.pos]
        )))
    }

    fn scan_unquoted(&mut self) -> Token {
        while let Some(c) = self.next() {
            if is_reserved(c) {
                self.rewind();
                break;
            }
        }
        self.emit(Kind::Unquoted)
    }
}

impl Token {
    fn unquote(&self) -> Result<String, MatcherError> {
        if self.kind != Kind::Quoted {
            return Ok(self.value.clone());
        }
        let bad = || {
            MatcherError::Syntax(format!(
                "{}:{}: {}: invalid input",
                self.col_start, self.col_end, self.value
            ))
        };
        let bytes = go_unquote(&self.value).ok_or_else(bad)?;
        String::from_utf8(bytes).map_err(|_| bad())
    }
}

/// Go's `strconv.Unquote` for a double-quoted string, as bytes (`\x` escapes
/// may build invalid UTF-8; the caller checks).
pub fn go_unquote(s: &str) -> Option<Vec<u8>> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::with_capacity(inner.len());
    let mut it = inner.chars().peekable();
    while let Some(c) = it.next() {
        match c {
            '"' | '\n' => return None,
            '\\' => {
                let e = it.next()?;
                match e {
                    'a' => out.push(7),
                    'b' => out.push(8),
                    'f' => out.push(12),
                    'n' => out.push(b'\n'),
                    'r' => out.push(b'\r'),
                    't' => out.push(b'\t'),
                    'v' => out.push(11),
                    '\\' => out.push(b'\\'),
                    '"' => out.push(b'"'),
                    'x' => {
                        let h: String = (0..2).map(|_| it.next()).collect::<Option<String>>()?;
                        out.push(u8::from_str_radix(&h, 16).ok()?);
                    }
                    '0'..='7' => {
                        let mut o = String::from(e);
                        for _ in 0..2 {
                            o.push(it.next()?);
                        }
                        let v = u32::from_str_radix(&o, 8).ok()?;
                        out.push(u8::try_from(v).ok()?);
                    }
                    'u' | 'U' => {
                        let n = if e == 'u' { 4 } else { 8 };
                        let h: String = (0..n).map(|_| it.next()).collect::<Option<String>>()?;
                        let v = u32::from_str_radix(&h, 16).ok()?;
                        let ch = char::from_u32(v)?;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return None,
                }
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Some(out)
}

const ERR_EOF: &str = "end of input";
const ERR_EXPECTED_EOF: &str = "expected end of input";
const ERR_NO_OPEN_BRACE: &str = "expected opening brace";
const ERR_NO_CLOSE_BRACE: &str = "expected close brace";
const ERR_NO_LABEL_NAME: &str = "expected label name";
const ERR_NO_LABEL_VALUE: &str = "expected label value";
const ERR_NO_OPERATOR: &str = "expected an operator such as '=', '!=', '=~' or '!~'";
const ERR_EXPECTED_COMMA_OR_CLOSE: &str = "expected a comma or close brace";
const ERR_EXPECTED_MATCHER_OR_CLOSE: &str = "expected a matcher or close brace after comma";

/// Errors from peeking: the lexer's own error, end of input, or an
/// unexpected token.
enum PeekErr {
    Eof,
    Other(MatcherError),
}

impl PeekErr {
    fn msg(self) -> String {
        match self {
            PeekErr::Eof => ERR_EOF.to_string(),
            PeekErr::Other(e) => e.to_string(),
        }
    }

    fn error(self) -> MatcherError {
        match self {
            PeekErr::Eof => MatcherError::Syntax(ERR_EOF.to_string()),
            PeekErr::Other(e) => e,
        }
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    has_open_brace: bool,
    matchers: Vec<Matcher>,
}

#[derive(Clone, Copy)]
enum State {
    OpenBrace,
    CloseBrace,
    Matcher,
    EndOfMatcher,
    Comma,
    Eof,
}

impl<'a> Parser<'a> {
    fn expect_peek(&mut self, kinds: &[Kind]) -> Result<Token, PeekErr> {
        let t = self.lexer.peek().map_err(PeekErr::Other)?;
        if t.kind == Kind::Eof {
            return Err(PeekErr::Eof);
        }
        if !kinds.contains(&t.kind) {
            return Err(PeekErr::Other(MatcherError::Syntax(format!(
                "{}:{}: unexpected {}",
                t.col_start, t.col_end, t.value
            ))));
        }
        Ok(t)
    }

    fn expect(&mut self, kinds: &[Kind]) -> Result<Token, PeekErr> {
        let t = self.expect_peek(kinds)?;
        let _ = self.lexer.scan();
        Ok(t)
    }

    fn accept_peek(&mut self, kinds: &[Kind]) -> Result<bool, PeekErr> {
        let t = self.lexer.peek().map_err(PeekErr::Other)?;
        if t.kind == Kind::Eof {
            return Err(PeekErr::Eof);
        }
        Ok(kinds.contains(&t.kind))
    }

    fn step(&mut self, s: State) -> Result<Option<State>, MatcherError> {
        match s {
            State::OpenBrace => {
                match self.accept_peek(&[Kind::OpenBrace]) {
                    Err(PeekErr::Eof) => return Ok(Some(State::Eof)),
                    Err(e) => return Err(e.error()),
                    Ok(true) => {
                        self.has_open_brace = true;
                        let _ = self.lexer.scan();
                    }
                    Ok(false) => {}
                }
                match self.accept_peek(&[Kind::CloseBrace]) {
                    Err(PeekErr::Eof) => Ok(Some(State::CloseBrace)),
                    Err(e) => Err(e.error()),
                    Ok(true) => Ok(Some(State::CloseBrace)),
                    Ok(false) => Ok(Some(State::Matcher)),
                }
            }
            State::CloseBrace => {
                if self.has_open_brace {
                    if let Err(e) = self.expect(&[Kind::CloseBrace]) {
                        return Err(MatcherError::Syntax(format!(
                            "0:{}: {}: {}",
                            self.lexer.cols,
                            e.msg(),
                            ERR_NO_CLOSE_BRACE
                        )));
                    }
                } else if self.expect(&[Kind::CloseBrace]).is_ok() {
                    return Err(MatcherError::Syntax(format!(
                        "0:{}: }}: {}",
                        self.lexer.cols, ERR_NO_OPEN_BRACE
                    )));
                }
                Ok(Some(State::Eof))
            }
            State::Matcher => {
                let t = self.expect(&[Kind::Quoted, Kind::Unquoted]).map_err(|e| {
                    MatcherError::Syntax(format!("{}: {}", e.msg(), ERR_NO_LABEL_NAME))
                })?;
                let name = t.unquote()?;
                let t = self
                    .expect(&[
                        Kind::Equals,
                        Kind::NotEquals,
                        Kind::Matches,
                        Kind::NotMatches,
                    ])
                    .map_err(|e| {
                        MatcherError::Syntax(format!("{}: {}", e.msg(), ERR_NO_OPERATOR))
                    })?;
                let op = match t.kind {
                    Kind::Equals => MatchType::Equal,
                    Kind::NotEquals => MatchType::NotEqual,
                    Kind::Matches => MatchType::Regexp,
                    _ => MatchType::NotRegexp,
                };
                let t = self.expect(&[Kind::Unquoted, Kind::Quoted]).map_err(|e| {
                    MatcherError::Syntax(format!("{}: {}", e.msg(), ERR_NO_LABEL_VALUE))
                })?;
                let value = t.unquote()?;
                let m = Matcher::new(op, name, value)
                    .map_err(|e| MatcherError::Syntax(format!("failed to create matcher: {e}")))?;
                self.matchers.push(m);
                Ok(Some(State::EndOfMatcher))
            }
            State::EndOfMatcher => match self.expect_peek(&[Kind::Comma, Kind::CloseBrace]) {
                Err(PeekErr::Eof) => Ok(Some(State::CloseBrace)),
                Err(e) => Err(MatcherError::Syntax(format!(
                    "{}: {}",
                    e.msg(),
                    ERR_EXPECTED_COMMA_OR_CLOSE
                ))),
                Ok(t) if t.kind == Kind::Comma => Ok(Some(State::Comma)),
                Ok(_) => Ok(Some(State::CloseBrace)),
            },
            State::Comma => {
                let _ = self.lexer.scan();
                match self.expect_peek(&[Kind::CloseBrace, Kind::Unquoted, Kind::Quoted]) {
                    Err(PeekErr::Eof) => Ok(Some(State::CloseBrace)),
                    Err(e) => Err(MatcherError::Syntax(format!(
                        "{}: {}",
                        e.msg(),
                        ERR_EXPECTED_MATCHER_OR_CLOSE
                    ))),
                    Ok(t) if t.kind == Kind::CloseBrace => Ok(Some(State::CloseBrace)),
                    Ok(_) => Ok(Some(State::Matcher)),
                }
            }
            State::Eof => {
                let t = self
                    .lexer
                    .scan()
                    .map_err(|e| MatcherError::Syntax(format!("{e}: {ERR_EXPECTED_EOF}")))?;
                if t.kind != Kind::Eof {
                    return Err(MatcherError::Syntax(format!(
                        "{}:{}: {}: {}",
                        t.col_start, t.col_end, t.value, ERR_EXPECTED_EOF
                    )));
                }
                Ok(None)
            }
        }
    }
}

/// Parse matchers with the UTF-8 strict parser: `{a="b", c=~"d.*"}`, braces
/// optional, values unquoted (no reserved characters) or Go-quoted.
pub fn parse_matchers(input: &str) -> Result<Vec<Matcher>, MatcherError> {
    let mut p = Parser {
        lexer: Lexer::new(input),
        has_open_brace: false,
        matchers: Vec::new(),
    };
    let mut s = State::OpenBrace;
    while let Some(next) = p.step(s)? {
        s = next;
    }
    Ok(p.matchers)
}

/// Exactly one matcher, UTF-8 strict parser.
pub fn parse_matcher(input: &str) -> Result<Matcher, MatcherError> {
    let mut m = parse_matchers(input)?;
    match m.len() {
        1 => Ok(m.pop().unwrap()),
        0 => Err(MatcherError::NoMatchers),
        n => Err(MatcherError::NotOne(n)),
    }
}

// ---------------------------------------------------------------------------
// Classic parser (pkg/labels.ParseMatchers).

fn classic_re() -> &'static Regex {
    static RE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"^[\t\n\x0C\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\x0C\r ]*(=~|=|!=|!~)[\t\n\x0C\r ]*((?s).*?)[\t\n\x0C\r ]*$")
            .unwrap()
    })
}

/// Parse a comma-separated list of matchers the lenient pre-0.27 way.
pub fn parse_matchers_classic(s: &str) -> Result<Vec<Matcher>, MatcherError> {
    let s = s.strip_prefix('{').unwrap_or(s);
    let s = s.strip_suffix('}').unwrap_or(s);
    let mut tokens = Vec::new();
    let mut token = String::new();
    let (mut inside_quotes, mut escaped) = (false, false);
    for c in s.chars() {
        match c {
            ',' if !inside_quotes => {
                tokens.push(std::mem::take(&mut token));
                continue;
            }
            ',' => {}
            '"' => {
                if !escaped {
                    inside_quotes = !inside_quotes;
                } else {
                    escaped = false;
                }
            }
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
        token.push(c);
    }
    let last = token.trim_matches(|c: char| c.is_whitespace());
    if !last.is_empty() {
        tokens.push(last.to_string());
    }
    tokens.iter().map(|t| parse_matcher_classic(t)).collect()
}

/// One matcher, classic syntax.
pub fn parse_matcher_classic(s: &str) -> Result<Matcher, MatcherError> {
    let caps = classic_re()
        .captures(s)
        .ok_or_else(|| MatcherError::BadFormat(s.to_string()))?;
    let (name, op, raw) = (&caps[1], &caps[2], &caps[3]);
    let mut raw_value = raw;
    let mut expect_trailing_quote = false;
    if raw_value.starts_with('"') {
        raw_value = &raw_value[1..];
        expect_trailing_quote = true;
    }
    let mut value = String::new();
    let mut escaped = false;
    let unescaped_quote = || MatcherError::UnescapedQuote(raw.to_string());
    for (i, c) in raw_value.char_indices() {
        if escaped {
            escaped = false;
            match c {
                'n' => value.push('\n'),
                '"' | '\\' => value.push(c),
                _ => {
                    value.push('\\');
                    value.push(c);
                }
            }
            continue;
        }
        match c {
            '\\' => {
                if i < raw_value.len() - 1 {
                    escaped = true;
                    continue;
                }
                value.push('\\');
            }
            '"' => {
                if !expect_trailing_quote || i < raw_value.len() - 1 {
                    return Err(unescaped_quote());
                }
                expect_trailing_quote = false;
            }
            c => value.push(c),
        }
    }
    if expect_trailing_quote {
        return Err(unescaped_quote());
    }
    let op = match op {
        "=" => MatchType::Equal,
        "!=" => MatchType::NotEqual,
        "=~" => MatchType::Regexp,
        _ => MatchType::NotRegexp,
    };
    Matcher::new(op, name, value)
}

/// Alertmanager's default ("fallback") mode: the UTF-8 parser, then the
/// classic one if the UTF-8 parser refuses the input. Returns whether the
/// classic parser was needed (worth a warning: it goes away upstream).
pub fn parse_matchers_fallback(input: &str) -> Result<(Vec<Matcher>, bool), MatcherError> {
    match parse_matchers(input) {
        Ok(m) => Ok((m, false)),
        Err(utf8_err) => match parse_matchers_classic(input) {
            Ok(m) => Ok((m, true)),
            Err(_) => Err(utf8_err),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(p: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(p.iter().copied())
    }

    #[test]
    fn matching() {
        let m = Matcher::new(MatchType::Regexp, "a", "b|c").unwrap();
        assert!(m.matches(&l(&[("a", "b")])));
        assert!(!m.matches(&l(&[("a", "bc")])), "anchored");
        let m = Matcher::new(MatchType::Equal, "a", "").unwrap();
        assert!(m.matches(&l(&[("x", "y")])), "missing label = empty");
        let m = Matcher::new(MatchType::NotRegexp, "a", ".+").unwrap();
        assert!(m.matches(&l(&[])));
    }

    #[test]
    fn display_and_sort() {
        let ms =
            Matchers(parse_matchers(r#"{owner="team-A", level!="critical"}"#).unwrap()).sorted();
        assert_eq!(ms.to_string(), r#"{level!="critical",owner="team-A"}"#);
        let m = parse_matcher(r#""foo bar"=~"x\ny""#).unwrap();
        assert_eq!(m.to_string(), r#""foo bar"=~"x\ny""#);
    }

    #[test]
    fn fallback() {
        let (m, classic) = parse_matchers_fallback("foo=").unwrap();
        assert!(classic);
        assert_eq!(m[0].value, "");
        let (_, classic) = parse_matchers_fallback(r#"foo="bar""#).unwrap();
        assert!(!classic);
    }

    #[test]
    fn errors_say_which_kind() {
        assert_eq!(parse_matcher("a=b,c=d"), Err(MatcherError::NotOne(2)));
        assert_eq!(parse_matcher(""), Err(MatcherError::NoMatchers));
        assert_eq!(
            parse_matcher_classic("a b"),
            Err(MatcherError::BadFormat("a b".into()))
        );
        assert!(matches!(
            Matcher::new(MatchType::Regexp, "a", "("),
            Err(MatcherError::Regex(_))
        ));
        assert!(matches!(
            parse_matchers("{a=b"),
            Err(MatcherError::Syntax(_))
        ));
    }

    #[test]
    fn regex_error_like_go() {
        let e = parse_matchers_classic(r#"{foo=~"invalid[regexp"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "error parsing regexp: missing closing ]: `[regexp)$`"
        );
    }
}
