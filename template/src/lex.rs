//! The lexer: template source to text pieces and the tokens of each
//! action (Go's `text/template/parse/lex.go`), with `{{-`/`-}}` trimming
//! and comments applied here.

use crate::Error;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Ident(String),
    Field(String),
    /// A field right after an operand, without a space: `.B` of `.A.B`,
    /// `$x.B`, `(p).B` (Go tells `.A.B` from `.A .B`, a method's argument).
    Chain(String),
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

/// One piece of template source: literal text or an action's tokens, its
/// line and the byte offset of its `{{`.
pub(crate) enum Piece {
    Text(String),
    Action {
        toks: Vec<Tok>,
        line: usize,
        offset: usize,
    },
}

pub(crate) fn lex(name: &str, src: &str) -> Result<Vec<Piece>, Error> {
    let perr = |line: usize, offset: usize, msg: String| Error::parse(name, line, offset, msg);
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
        let offset = src.len() - rest.len() + open;
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
                return Err(perr(line, offset, "unclosed comment".into()));
            };
            let after_c = trimmed[end + 2..].trim_start();
            let (tr, skip) = if let Some(r) = after_c.strip_prefix("-}}") {
                (true, r)
            } else if let Some(r) = after_c.strip_prefix("}}") {
                (false, r)
            } else {
                return Err(perr(
                    line,
                    offset,
                    "comment ends before closing delimiter".into(),
                ));
            };
            line += rest[open..rest.len() - skip.len()].matches('\n').count();
            trim_next = tr;
            rest = skip;
            continue;
        }
        let (toks, consumed, tr) = lex_action(inner).map_err(|m| perr(line, offset, m))?;
        pieces.push(Piece::Action { toks, line, offset });
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
                let chained = i > 0 && (ident_char(b[i - 1]) || matches!(b[i - 1], b')' | b'$'));
                let st = i + 1;
                i += 1;
                while i < b.len() && ident_char(b[i]) {
                    i += 1;
                }
                let name = s[st..i].to_string();
                toks.push(if chained {
                    Tok::Chain(name)
                } else {
                    Tok::Field(name)
                });
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
