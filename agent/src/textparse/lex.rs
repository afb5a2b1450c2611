//! Byte-level helpers shared by both parsers: line splitting, name scanning,
//! quoted strings and escape sequences.
//!
//! Everything here works on a `&str` that has already been checked to be
//! UTF-8, scanning its bytes: every delimiter in both formats is ASCII, so a
//! slice between two delimiters is always on a char boundary.

use std::borrow::Cow;

/// One line of the body, without its line feed.
pub(super) struct Line<'a> {
    /// 1-based line number, for error messages.
    pub no: usize,
    pub text: &'a str,
    /// Whether a line feed ended the line (false only for the last line of a
    /// body that does not end with `\n`).
    pub terminated: bool,
}

/// Splits a body into lines at `\n` (a `\r` stays part of the line, which
/// makes CRLF bodies fail where a value or name is expected, as in Prometheus).
pub(super) struct Lines<'a> {
    text: &'a str,
    pos: usize,
    no: usize,
}

impl<'a> Lines<'a> {
    pub fn new(text: &'a str) -> Lines<'a> {
        Lines {
            text,
            pos: 0,
            no: 0,
        }
    }

    /// Whether any byte follows the lines returned so far.
    pub fn has_more(&self) -> bool {
        self.pos < self.text.len()
    }

    /// The number of the last line returned (0 before the first).
    pub fn line_no(&self) -> usize {
        self.no
    }

    /// Makes `line` (the last one returned) run to `end`, a line feed or
    /// the end of the text past it: the lines in between are consumed.
    pub fn extend(&mut self, line: &Line<'a>, end: usize) -> Line<'a> {
        let start = line.text.as_ptr() as usize - self.text.as_ptr() as usize;
        let from = start + line.text.len();
        self.no += self.text.as_bytes()[from..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.pos = (end + 1).min(self.text.len());
        Line {
            no: line.no,
            text: &self.text[start..end],
            terminated: end < self.text.len(),
        }
    }
}

/// Where a sample line ends when a quoted string on it runs past its line
/// feed, as Prometheus' lexer allows (`\"(\\.|[^\\"])*\"`: a raw line feed is
/// part of the string, a backslash before one is not). From the opening
/// quote at `open`, quotes are followed to the first line feed outside
/// them; `None` when a string never closes.
pub(super) fn logical_line_end(text: &str, open: usize) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = open;
    loop {
        // Inside a string: its closing quote.
        i += 1;
        loop {
            match b.get(i)? {
                b'"' => break,
                b'\\' if b.get(i + 1).is_some_and(|&c| c != b'\n') => i += 2,
                b'\\' => return None,
                _ => i += 1,
            }
        }
        // Outside: the next quote or the end of the line.
        i += 1;
        while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return Some(i);
        }
    }
}

impl<'a> Iterator for Lines<'a> {
    type Item = Line<'a>;

    fn next(&mut self) -> Option<Line<'a>> {
        if self.pos >= self.text.len() {
            return None;
        }
        self.no += 1;
        let start = self.pos;
        match find_byte(self.text.as_bytes(), start, b'\n') {
            Some(nl) => {
                self.pos = nl + 1;
                Some(Line {
                    no: self.no,
                    text: &self.text[start..nl],
                    terminated: true,
                })
            }
            None => {
                self.pos = self.text.len();
                Some(Line {
                    no: self.no,
                    text: &self.text[start..],
                    terminated: false,
                })
            }
        }
    }
}

/// The index of the first `needle` at or after `from`, eight bytes at a time
/// (the classic "has zero byte" trick; the lowest flagged byte is always a
/// true match).
pub(super) fn find_byte(hay: &[u8], from: usize, needle: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let rep = LO.wrapping_mul(needle as u64);
    let mut i = from;
    while i + 8 <= hay.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&hay[i..i + 8]);
        let x = u64::from_le_bytes(w) ^ rep;
        let t = x.wrapping_sub(LO) & !x & HI;
        if t != 0 {
            return Some(i + (t.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == needle).map(|p| i + p)
}

pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The first index at or after `i` that is not a space or tab.
pub(super) fn skip_blank(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_blank(b[i]) {
        i += 1;
    }
    i
}

/// The end of a token that runs until a space, tab or the end of the line.
pub(super) fn token_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && !is_blank(b[i]) {
        i += 1;
    }
    i
}

/// The end of a token that runs until a space or the end of the line
/// (OpenMetrics separates fields with exactly one space).
pub(super) fn space_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i] != b' ' {
        i += 1;
    }
    i
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// End of a metric name `[a-zA-Z_:][a-zA-Z0-9_:]*` starting at `i`
/// (`i` itself when there is none).
pub(super) fn metric_name_end(b: &[u8], i: usize) -> usize {
    if i >= b.len() || !(is_name_start(b[i]) || b[i] == b':') {
        return i;
    }
    let mut j = i + 1;
    while j < b.len() && (is_name_char(b[j]) || b[j] == b':') {
        j += 1;
    }
    j
}

/// End of a label name `[a-zA-Z_][a-zA-Z0-9_]*` starting at `i`.
pub(super) fn label_name_end(b: &[u8], i: usize) -> usize {
    if i >= b.len() || !is_name_start(b[i]) {
        return i;
    }
    let mut j = i + 1;
    while j < b.len() && is_name_char(b[j]) {
        j += 1;
    }
    j
}

/// How to treat a backslash followed by something other than `\`, `"`, `n`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Escapes {
    /// Reject it (the Prometheus text format as prometheus/common parses it).
    Strict,
    /// Keep the backslash and the character (OpenMetrics: `BS normal-char`
    /// is allowed and means itself, as in Prometheus and client_python).
    Keep,
}

/// What is wrong inside a quoted string or a label set; the parsers add
/// the line (and what the string was: a label value, a HELP text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LexError {
    #[error("unterminated quoted string (a label value must close on its line)")]
    Unterminated,
    #[error("invalid escape sequence '\\{}'", .0.escape_debug())]
    InvalidEscape(char),
    #[error("backslash at the end of the line")]
    TrailingBackslash,
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
}

/// Scans the double-quoted string whose opening quote is at `i`. Returns the
/// unescaped content and the index just after the closing quote. The string
/// must close on the same line: a raw line feed cannot appear in it.
pub(super) fn quoted(s: &str, i: usize, esc: Escapes) -> Result<(Cow<'_, str>, usize), LexError> {
    let b = s.as_bytes();
    debug_assert_eq!(b[i], b'"');
    let start = i + 1;
    let mut j = start;
    let mut escaped = false;
    loop {
        match b.get(j) {
            None => return Err(LexError::Unterminated),
            Some(b'"') => break,
            Some(b'\\') => {
                escaped = true;
                j += 2;
            }
            Some(_) => j += 1,
        }
    }
    let raw = &s[start..j];
    if !escaped {
        return Ok((Cow::Borrowed(raw), j + 1));
    }
    Ok((Cow::Owned(unescape(raw, esc)?), j + 1))
}

/// Resolves `\\`, `\"` and `\n`; other escapes per `esc`. A trailing lone
/// backslash is an error.
pub(super) fn unescape(raw: &str, esc: Escapes) -> Result<String, LexError> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut run = 0;
    let mut k = 0;
    while k < b.len() {
        if b[k] != b'\\' {
            k += 1;
            continue;
        }
        out.push_str(&raw[run..k]);
        match b.get(k + 1) {
            Some(b'\\') => out.push('\\'),
            Some(b'"') => out.push('"'),
            Some(b'n') => out.push('\n'),
            Some(_) if esc == Escapes::Keep => {
                // Keep the backslash; the escaped character starts the next run.
                out.push('\\');
                k += 1;
                run = k;
                continue;
            }
            Some(_) => {
                let c = raw[k + 1..].chars().next().unwrap_or_default();
                return Err(LexError::InvalidEscape(c));
            }
            None => return Err(LexError::TrailingBackslash),
        }
        k += 2;
        run = k;
    }
    out.push_str(&raw[run..]);
    Ok(out)
}

/// Cuts `s` for an error message: at most 60 characters, quoted.
pub(super) fn snippet(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{:?}...", &s[..i]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_byte_agrees_with_naive_search() {
        let hay = b"abc\ndefghijklmnop\nqrstuvwxyz0123456789\n\n\xff\x0a";
        for from in 0..hay.len() {
            let want = hay[from..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|p| p + from);
            assert_eq!(find_byte(hay, from, b'\n'), want, "from {from}");
        }
        assert_eq!(find_byte(b"\x0b\x0a", 0, b'\n'), Some(1));
        assert_eq!(find_byte(&[0x80u8; 20], 0, b'\n'), None);
    }

    #[test]
    fn lines_keep_track_of_termination() {
        let v: Vec<_> = Lines::new("a\n\nb")
            .map(|l| (l.no, l.text, l.terminated))
            .collect();
        assert_eq!(v, [(1, "a", true), (2, "", true), (3, "b", false)]);
        assert_eq!(Lines::new("").count(), 0);
    }

    #[test]
    fn unescape_modes() {
        assert_eq!(
            unescape(r#"a\\b\"c\nd"#, Escapes::Strict).unwrap(),
            "a\\b\"c\nd"
        );
        assert_eq!(
            unescape(r"a\tb", Escapes::Strict).unwrap_err().to_string(),
            r"invalid escape sequence '\t'"
        );
        assert_eq!(unescape(r"a\tb\☃", Escapes::Keep).unwrap(), r"a\tb\☃");
        assert!(unescape("a\\", Escapes::Keep).is_err());
    }

    #[test]
    fn quoted_strings() {
        let s = r#"x="a\"b" y"#;
        let (v, end) = quoted(s, 2, Escapes::Strict).unwrap();
        assert_eq!((v.as_ref(), &s[end..]), ("a\"b", " y"));
        assert!(quoted(r#""abc"#, 0, Escapes::Keep).is_err());
        assert!(quoted(r#""abc\"#, 0, Escapes::Keep).is_err());
    }
}
