//! The executor: walks a parsed tree with `.` and variables (Go's
//! `text/template/exec.go`), and the value model. Execution has a budget
//! ([`Limits`]): output size and steps, so a hostile `{{range N}}`, a
//! string doubled in a loop or deep recursion ends with an error naming the
//! template and line instead of eating memory or time.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::funcs::{html_escape_go, FuncError, Funcs};
use crate::parse::{Arg, Cmd, Node, Pipe, MAX_EXEC_DEPTH};
use crate::{Error, Limits, Template};

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
    /// A Go struct: named fields in order, printed `{v1 v2}` (a query
    /// sample is `{Labels, Value}`).
    Struct(Vec<(String, Value)>),
    /// A host's value with its own fields, printing and iteration (a Go
    /// type with methods, e.g. Alertmanager's `KV` and `Alerts`).
    Object(Obj),
}

/// A host value as templates see it: Go's reflection over a host type,
/// spelled out. Errors are the message after `executing "NAME": `.
pub trait Object: fmt::Debug + Send + Sync {
    /// The type name errors use.
    fn type_name(&self) -> &'static str;
    /// `.Name` on the value (a field or a method without arguments).
    fn field(&self, name: &str) -> Result<Value, FuncError>;
    /// How `{{ . }}` prints it (Go's `String()` method, or an error).
    fn print(&self) -> Result<String, FuncError>;
    /// Go's `if` truth.
    fn truthy(&self) -> bool {
        true
    }
    /// What the builtin `len` answers, if it has a length.
    fn length(&self) -> Option<usize> {
        None
    }
    /// The elements `range` visits, if it can be ranged over.
    fn items(&self) -> Option<Vec<Value>> {
        None
    }
    /// `index X key`, if it can be indexed.
    fn index(&self, _key: &Value) -> Option<Value> {
        None
    }
    /// A method called with arguments (`.Labels.Remove (stringSlice "a")`,
    /// `.StartsAt.Format "15:04"`); `None` if there is no such method.
    fn method(&self, _name: &str, _args: Vec<Value>) -> Option<Result<Value, FuncError>> {
        None
    }
    /// For a library's functions that take this type.
    fn as_any(&self) -> &dyn Any;
}

/// How an action's printed value is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Escape {
    /// As is (text/template).
    #[default]
    None,
    /// Go's html/template in a page's text: `&<>"'+` and NUL escaped,
    /// [`SafeHtml`] values as they are.
    Html,
}

/// A string marked safe for HTML (Go's `template.HTML`, what
/// Alertmanager's `safeHtml` returns): printed unescaped by
/// [`Escape::Html`], like any string otherwise.
#[derive(Debug)]
pub struct SafeHtml(pub String);

impl Object for SafeHtml {
    fn type_name(&self) -> &'static str {
        "template.HTML"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        Err(FuncError::NoField {
            type_name: self.type_name(),
            field: name.to_string(),
        })
    }
    fn print(&self) -> Result<String, FuncError> {
        Ok(self.0.clone())
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn length(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// A shared [`Object`]; two are equal when they are the same object.
#[derive(Clone, Debug)]
pub struct Obj(pub Arc<dyn Object>);

impl PartialEq for Obj {
    fn eq(&self, other: &Obj) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Value {
    /// Wraps a host object.
    pub fn object(o: impl Object + 'static) -> Value {
        Value::Object(Obj(Arc::new(o)))
    }
}

impl Value {
    /// Go's `if` truth: not the zero value, not empty.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Struct(_) => true,
            Value::Object(o) => o.0.truthy(),
            Value::Nil | Value::Missing => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            Value::Map(m) => !m.is_empty(),
        }
    }

    /// The Go type name errors use.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Struct(_) => "struct",
            Value::Object(o) => o.0.type_name(),
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

    /// The field `name` of a struct or map value.
    pub fn field(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.get(name),
            Value::Struct(fields) => fields.iter().find(|(n, _)| n == name).map(|(_, v)| v),
            _ => None,
        }
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
            Value::Float(x) => f.write_str(&wasmon_gofmt::format_float_v(*x)),
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
            Value::Object(o) => match o.0.print() {
                Ok(s) => f.write_str(&s),
                Err(e) => write!(f, "%!v(ERROR={e})"),
            },
            Value::Struct(fields) => {
                f.write_str("{")?;
                for (i, (_, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("}")
            }
            Value::Map(m) => {
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

/// `text` without its `<!-- ... -->` comments (an unclosed one runs to
/// the end, as html/template reads it).
fn strip_html_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("<!--") {
        out.push_str(&rest[..i]);
        match rest[i + 4..].find("-->") {
            Some(j) => rest = &rest[i + 4 + j + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

pub(crate) enum Flow {
    Break,
    Continue,
}

pub(crate) struct Exec<'t, 'f> {
    pub(crate) tmpl: &'t Template,
    /// The template (file) whose nodes run now: a `define` from another
    /// file names that file in its errors.
    pub(crate) cur: Arc<str>,
    pub(crate) escape: Escape,
    pub(crate) vars: Vec<(String, Value)>,
    pub(crate) funcs: &'f Funcs<'f>,
    pub(crate) out: String,
    pub(crate) depth: usize,
    pub(crate) limits: Limits,
    /// Steps taken so far (nodes walked, range iterations, calls).
    pub(crate) steps: u64,
}

impl Exec<'_, '_> {
    fn err(&self, line: usize, msg: impl std::fmt::Display) -> Error {
        Error::exec(&self.cur, line, msg.to_string())
    }

    /// Counts one step against [`Limits::max_steps`].
    fn step(&mut self, line: usize) -> Result<(), Error> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return Err(Error::budget(
                &self.cur,
                line,
                format!(
                    "template took more than {} evaluation steps",
                    self.limits.max_steps
                ),
            ));
        }
        Ok(())
    }

    /// Appends to the output, an error past [`Limits::max_output`].
    fn emit(&mut self, line: usize, s: &str) -> Result<(), Error> {
        self.within_output(line, self.out.len().saturating_add(s.len()))?;
        self.out.push_str(s);
        Ok(())
    }

    fn within_output(&self, line: usize, len: usize) -> Result<(), Error> {
        if len > self.limits.max_output {
            return Err(Error::budget(
                &self.cur,
                line,
                format!(
                    "template output would exceed {} bytes",
                    self.limits.max_output
                ),
            ));
        }
        Ok(())
    }

    /// Enters one level of `if`/`with`/`range` or `template`; an error past
    /// [`MAX_EXEC_DEPTH`] (callers leave it on error: an error ends the run).
    fn enter(&mut self, line: usize) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_EXEC_DEPTH {
            return Err(self.err(
                line,
                format!("exceeded maximum template depth ({MAX_EXEC_DEPTH})"),
            ));
        }
        Ok(())
    }

    pub(crate) fn walk_list(&mut self, dot: &Value, nodes: &[Node]) -> Result<Option<Flow>, Error> {
        for n in nodes {
            if let Some(f) = self.walk(dot, n)? {
                return Ok(Some(f));
            }
        }
        Ok(None)
    }

    fn scoped(&mut self, dot: &Value, nodes: &[Node]) -> Result<Option<Flow>, Error> {
        let n = self.vars.len();
        let r = self.walk_list(dot, nodes);
        self.vars.truncate(n);
        r
    }

    fn walk(&mut self, dot: &Value, n: &Node) -> Result<Option<Flow>, Error> {
        match n {
            Node::Text(t) => match self.escape {
                // html/template drops the page's comments from its text.
                Escape::Html if t.contains("<!--") => self.emit(0, &strip_html_comments(t))?,
                _ => self.emit(0, t)?,
            },
            Node::Action(p, line) => {
                self.step(*line)?;
                let v = self.pipe(dot, p, *line)?;
                if p.decl.is_empty() {
                    let text = match &v {
                        Value::Object(o) => o.0.print().map_err(|e| self.err(*line, e))?,
                        v => v.to_string(),
                    };
                    let safe = matches!(&v, Value::Object(o) if o.0.as_any().is::<SafeHtml>());
                    match self.escape {
                        Escape::Html if !safe => self.emit(*line, &html_escape_go(&text))?,
                        _ => self.emit(*line, &text)?,
                    }
                }
            }
            Node::If(p, body, els, line) | Node::With(p, body, els, line) => {
                self.step(*line)?;
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
                self.step(*line)?;
                let Some(def) = self.tmpl.defines.get(name) else {
                    return Err(self.err(*line, format!("no such template \"{name}\"")));
                };
                let (origin, body) = (def.origin.clone(), def.nodes.clone());
                let d = match p {
                    Some(p) => self.pipe(dot, p, *line)?,
                    None => Value::Nil,
                };
                self.enter(*line)?;
                let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), d.clone())]);
                let saved_cur = std::mem::replace(&mut self.cur, origin);
                let r = self.walk_list(&d, &body);
                self.vars = saved;
                self.cur = saved_cur;
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
    ) -> Result<Option<Flow>, Error> {
        let nv = self.vars.len();
        let mut pp = p.clone();
        let decl = std::mem::take(&mut pp.decl);
        let v = self.pipe(dot, &pp, line)?;
        // An integer range is iterated, not materialized: `{{range N}}`
        // with a huge N ends on the step budget, not out of memory.
        let items: Box<dyn Iterator<Item = (Value, Value)>> = match v {
            Value::List(l) => Box::new(
                l.into_iter()
                    .enumerate()
                    .map(|(i, v)| (Value::Int(i as i64), v)),
            ),
            Value::Map(m) => Box::new(m.into_iter().map(|(k, v)| (Value::Str(k), v))),
            Value::Int(n) => Box::new((0..n).map(|i| (Value::Int(i), Value::Int(i)))),
            Value::Nil | Value::Missing => Box::new(std::iter::empty()),
            Value::Object(o) => match o.0.items() {
                Some(items) => Box::new(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| (Value::Int(i as i64), v)),
                ),
                None => {
                    return Err(self.err(
                        line,
                        format!("range can't iterate over {}", o.0.type_name()),
                    ))
                }
            },
            other => return Err(self.err(line, format!("range can't iterate over {other}"))),
        };
        let mut items = items.peekable();
        if items.peek().is_none() {
            let r = self.scoped(dot, els);
            self.vars.truncate(nv);
            return r;
        }
        for (k, v) in items {
            self.step(line)?;
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

    fn pipe(&mut self, dot: &Value, p: &Pipe, line: usize) -> Result<Value, Error> {
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

    fn fields(&self, mut v: Value, fields: &[String], line: usize) -> Result<Value, Error> {
        for f in fields {
            v = match v {
                Value::Map(mut m) => m.remove(f).unwrap_or(Value::Missing),
                Value::Object(o) => o.0.field(f).map_err(|e| self.err(line, e))?,
                Value::Struct(fields) => match fields.into_iter().find(|(n, _)| n == f) {
                    Some((_, v)) => v,
                    None => {
                        return Err(
                            self.err(line, format!("can't evaluate field {f} in type struct"))
                        )
                    }
                },
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

    fn arg(&mut self, dot: &Value, a: &Arg, line: usize) -> Result<Value, Error> {
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
    ) -> Result<Value, Error> {
        if let Arg::Func(name) = &c.args[0] {
            return self.call(dot, name, &c.args[1..], prev, line);
        }
        if c.args.len() > 1 || prev.is_some() {
            if let Some(v) = self.method_call(dot, c, prev.clone(), line)? {
                return Ok(v);
            }
            return Err(self.err(line, "can't give argument to non-function"));
        }
        self.arg(dot, &c.args[0], line)
    }

    /// `.A.Method arg...` (or `$x.Method`, `(p).Method`): Go calls a method
    /// with the command's other arguments and the piped value. `None` when
    /// the last field is not a method taking arguments.
    fn method_call(
        &mut self,
        dot: &Value,
        c: &Cmd,
        prev: Option<Value>,
        line: usize,
    ) -> Result<Option<Value>, Error> {
        let (base, path) = match &c.args[0] {
            Arg::Field(f) if !f.is_empty() => (dot.clone(), f.as_slice()),
            Arg::Var(v, f) if !f.is_empty() => (self.var(v), f.as_slice()),
            Arg::Sub(p, f) if !f.is_empty() => (self.pipe(dot, p, line)?, f.as_slice()),
            _ => return Ok(None),
        };
        let (name, path) = path.split_last().expect("not empty");
        let recv = self.fields(base, path, line)?;
        let Value::Object(o) = recv else {
            return Ok(None);
        };
        let mut vals = Vec::with_capacity(c.args.len());
        for a in &c.args[1..] {
            vals.push(self.arg(dot, a, line)?);
        }
        vals.extend(prev);
        self.step(line)?;
        match o.0.method(name, vals) {
            None => Ok(None),
            Some(r) => r
                .map(Some)
                .map_err(|e| self.err(line, format!("error calling {name}: {e}"))),
        }
    }

    fn call(
        &mut self,
        dot: &Value,
        name: &str,
        args: &[Arg],
        prev: Option<Value>,
        line: usize,
    ) -> Result<Value, Error> {
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
        self.step(line)?;
        let v = self
            .funcs
            .call(name, vals)
            .map_err(|e| self.err(line, format!("error calling {name}: {e}")))?;
        // A value is bounded like the output: a template that doubles a
        // string in a loop stops here, not out of memory.
        if let Value::Str(s) = &v {
            self.within_output(line, s.len())?;
        }
        Ok(v)
    }
}
