//! The parser: pieces from the lexer to a tree of nodes (Go's
//! `text/template/parse/parse.go` and `node.go`), with the nesting bounded
//! and variables checked at parse time, as Go does.

use std::collections::BTreeMap;

use crate::exec::Value;
use crate::funcs::Funcs;
use crate::lex::{Piece, Tok};
use crate::{Error, ErrorKind};

#[derive(Debug, Clone)]
pub(crate) enum Arg {
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
pub(crate) struct Cmd {
    pub(crate) args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) decl: Vec<String>,
    pub(crate) assign: bool,
    pub(crate) cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Action(Pipe, usize),
    If(Pipe, Vec<Node>, Vec<Node>, usize),
    With(Pipe, Vec<Node>, Vec<Node>, usize),
    Range(Pipe, Vec<Node>, Vec<Node>, usize),
    Template(String, Option<Pipe>, usize),
    Break,
    Continue,
}

/// How deeply a template may nest `if`/`with`/`range` (an `else if` chain
/// counts one level per `else if`), `define` bodies and parentheses: the
/// parser and the executor recurse once per level, and a debug build
/// overflows a 2 MiB stack near 1000 levels. Real templates nest a handful.
pub const MAX_NESTING: usize = 100;

/// How deeply execution may nest: the levels above plus `template` calls,
/// so a `define` that calls itself ends with an error (Go's text/template
/// stops at 100000 calls, on a stack that grows; ours does not).
pub const MAX_EXEC_DEPTH: usize = 2 * MAX_NESTING;

pub(crate) struct Parser<'a> {
    pub(crate) name: &'a str,
    /// Which identifiers are functions.
    pub(crate) funcs: &'a Funcs<'a>,
    pub(crate) pieces: Vec<Piece>,
    pub(crate) pos: usize,
    pub(crate) defines: BTreeMap<String, Vec<Node>>,
    /// Variables in scope (for "undefined variable" parse errors).
    pub(crate) vars: Vec<String>,
    pub(crate) range_depth: usize,
    /// Levels of [`MAX_NESTING`] open where the parser is.
    pub(crate) nesting: usize,
    /// The byte offset of the action being parsed (for errors).
    pub(crate) offset: usize,
}

pub(crate) enum Stop {
    End,
    Else(Vec<Tok>, usize),
    Eof,
}

impl<'a> Parser<'a> {
    pub(crate) fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::parse(self.name, line, self.offset, msg.to_string())
    }

    /// Enters one level of nesting; an error past [`MAX_NESTING`]. (No
    /// matching exit on error paths: an error ends the parse.)
    fn enter(&mut self, line: usize) -> Result<(), Error> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.err(
                line,
                format!("nested too deeply: more than {MAX_NESTING} levels of actions, defines and parentheses"),
            ));
        }
        Ok(())
    }

    pub(crate) fn parse_list(&mut self) -> Result<(Vec<Node>, Stop), Error> {
        let mut out = Vec::new();
        while self.pos < self.pieces.len() {
            let i = self.pos;
            self.pos += 1;
            let (toks, line) = match &self.pieces[i] {
                Piece::Text(t) => {
                    out.push(Node::Text(t.clone()));
                    continue;
                }
                Piece::Action { toks, line, offset } => {
                    self.offset = *offset;
                    (toks.clone(), *line)
                }
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
                            return Err(self.err(
                                line,
                                format!("unexpected EOF: {{{{ {k} }}}} has no {{{{ end }}}}"),
                            ));
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

    fn parse_control(&mut self, kind: String, toks: &[Tok], line: usize) -> Result<Node, Error> {
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
            Stop::Eof => {
                return Err(self.err(
                    line,
                    format!("unexpected EOF: {{{{ {kind} }}}} has no {{{{ end }}}}"),
                ))
            }
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

    fn parse_pipe(&mut self, toks: &[Tok], line: usize, allow_decl: bool) -> Result<Pipe, Error> {
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
    fn parse_cmds(&mut self, toks: &[Tok], line: usize) -> Result<(Vec<Cmd>, usize), Error> {
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
        while let Some(Tok::Chain(n)) = toks.get(i) {
            f.push(n.clone());
            i += 1;
        }
        (f, i)
    }

    fn parse_operand(&mut self, toks: &[Tok], line: usize) -> Result<(Arg, usize), Error> {
        Ok(match &toks[0] {
            Tok::Dot => (Arg::Dot, 1),
            Tok::Field(first) => {
                let (mut f, n) = Self::fields_after(toks, 1);
                f.insert(0, first.clone());
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
                f if self.funcs.has(f) => (Arg::Func(f.to_string()), 1),
                f => {
                    let mut e = self.err(line, format!("function \"{f}\" not defined"));
                    e.kind = ErrorKind::UndefinedFunction;
                    return Err(e);
                }
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
