//! Go's `text/template`, for the templates Prometheus and Alertmanager
//! users write: one engine for the agent's rule and notification templates
//! and for the Rust plugins' SDK, so both read templates the same way.
//!
//! Split as Go's package is: [`lex`](crate::lex) (source to tokens),
//! [`parse`](crate::parse) (tokens to a tree), [`exec`] (the tree run over
//! a [`Value`], within [`Limits`]) and [`funcs`] (the builtins and the
//! [`Library`] registry through which a host adds its functions, as Go's
//! `Template.Funcs`).
//!
//! Supported: text, actions with pipelines, variables (`$x := ...`,
//! `$x = ...`), fields (`.Labels.job`, `$labels.job`), `if`/`else if`/
//! `else`, `range` (with `$i, $e :=`, `break`, `continue`, over lists, maps
//! and integers), `with`, `define`/`template`/`block`, comments and
//! `{{-`/`-}}` trimming. Values print like Go's `fmt` `%v`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub mod exec;
pub mod funcs;
mod lex;
mod parse;

pub use exec::{Escape, Obj, Object, SafeHtml, Value};
pub use funcs::{go_sprint, go_sprintf, query_escape, to_float, FuncError, Funcs, Library};
pub use parse::{MAX_EXEC_DEPTH, MAX_NESTING};

use exec::Exec;
use parse::{Node, Parser, Stop};

/// What went wrong, for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The source is not a valid template.
    Parse,
    /// The source calls a function that no library defines (a parse
    /// error: Go checks function names when it parses).
    UndefinedFunction,
    /// Execution failed (a function's error, a bad field, ...).
    Exec,
    /// Execution went past its [`Limits`].
    Budget,
}

/// A template error with Go's text (`template: NAME:LINE: ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// The template's name.
    pub name: String,
    /// The line of the action (1-based; 0 when not known).
    pub line: usize,
    /// The byte offset of the action's `{{` (parse errors).
    pub offset: Option<usize>,
    /// What went wrong, without the `template: ...` prefix.
    pub message: String,
}

impl Error {
    pub(crate) fn parse(name: &str, line: usize, offset: usize, message: String) -> Error {
        Error {
            kind: ErrorKind::Parse,
            name: name.into(),
            line,
            offset: Some(offset),
            message,
        }
    }

    pub(crate) fn exec(name: &str, line: usize, message: String) -> Error {
        Error {
            kind: ErrorKind::Exec,
            name: name.into(),
            line,
            offset: None,
            message,
        }
    }

    pub(crate) fn budget(name: &str, line: usize, message: String) -> Error {
        Error {
            kind: ErrorKind::Budget,
            ..Error::exec(name, line, message)
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, line, msg) = (&self.name, self.line, &self.message);
        match self.kind {
            ErrorKind::Parse | ErrorKind::UndefinedFunction => {
                write!(f, "template: {name}:{line}: {msg}")
            }
            ErrorKind::Exec | ErrorKind::Budget => {
                write!(f, "template: {name}:{line}: executing \"{name}\": {msg}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// What one execution may use. Go's text/template has no such limits;
/// templates here come from rule files, receivers' configuration and
/// plugins, and run on shared workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of output, and of any one string value.
    pub max_output: usize,
    /// Actions, control structures, range iterations and function calls.
    pub max_steps: u64,
}

impl Default for Limits {
    /// Far above what an annotation or a notification body needs.
    fn default() -> Limits {
        Limits {
            max_output: 4 << 20,
            max_steps: 1_000_000,
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
    defines: BTreeMap<String, Define>,
    limits: Limits,
}

/// A `define`d template: its body and the name of the template (file) it
/// was parsed from, which its execution errors name.
#[derive(Debug, Clone)]
pub(crate) struct Define {
    pub(crate) origin: Arc<str>,
    pub(crate) nodes: Arc<Vec<Node>>,
}

impl Define {
    /// Go's rule: a body of only white space (and comments) is empty, and
    /// an empty definition does not replace an existing one.
    fn is_empty(&self) -> bool {
        self.nodes
            .iter()
            .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
    }
}

impl Template {
    /// Parses `text`; `vars` are variables defined before the text starts,
    /// `funcs` says which identifiers are functions.
    pub fn parse(name: &str, text: &str, vars: &[&str], funcs: &Funcs) -> Result<Template, Error> {
        let pieces = lex::lex(name, text)?;
        let mut p = Parser {
            name,
            funcs,
            pieces,
            pos: 0,
            defines: BTreeMap::new(),
            vars: std::iter::once("$")
                .chain(vars.iter().copied())
                .map(String::from)
                .collect(),
            range_depth: 0,
            nesting: 0,
            offset: 0,
        };
        let (nodes, stop) = p.parse_list()?;
        match stop {
            Stop::Eof => {}
            Stop::End => return Err(p.err(0, "unexpected {{end}}")),
            Stop::Else(_, l) => return Err(p.err(l, "unexpected {{else}}")),
        }
        let origin: Arc<str> = name.into();
        let defines = p
            .defines
            .into_iter()
            .map(|(k, nodes)| {
                let d = Define {
                    origin: origin.clone(),
                    nodes: Arc::new(nodes),
                };
                (k, d)
            })
            .collect();
        Ok(Template {
            name: name.to_string(),
            nodes,
            defines,
            limits: Limits::default(),
        })
    }

    /// Adds the `define`s of `base` that this template does not define
    /// itself, as Go's `Clone` of a set then `Parse` of this text: what is
    /// parsed later wins, except that an empty definition (white space
    /// only) does not replace a non-empty one. Alertmanager parses its
    /// default templates, then the users' files, then a receiver's text;
    /// each step inherits the one before.
    pub fn inherit(mut self, base: &Template) -> Template {
        for (name, d) in &base.defines {
            match self.defines.get(name) {
                Some(mine) if !mine.is_empty() || d.is_empty() => {}
                _ => {
                    self.defines.insert(name.clone(), d.clone());
                }
            }
        }
        self
    }

    /// Whether a template `name` is defined (by this text or inherited).
    pub fn defines(&self, name: &str) -> bool {
        self.defines.contains_key(name)
    }

    /// The same template with other [`Limits`].
    pub fn with_limits(mut self, limits: Limits) -> Template {
        self.limits = limits;
        self
    }

    /// The template's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the template with `dot` as `.` and `$`, extra variables bound.
    pub fn execute(
        &self,
        dot: &Value,
        vars: &[(&str, Value)],
        funcs: &Funcs,
    ) -> Result<String, Error> {
        self.execute_escaped(dot, vars, funcs, Escape::None)
    }

    /// [`Template::execute`] with every action's printed value escaped by
    /// `escape` (literal text is not): Go's html/template in the text
    /// context of a page, which is where Alertmanager's email HTML prints
    /// values. A [`SafeHtml`] value is printed as is.
    pub fn execute_escaped(
        &self,
        dot: &Value,
        vars: &[(&str, Value)],
        funcs: &Funcs,
        escape: Escape,
    ) -> Result<String, Error> {
        let mut ex = Exec {
            tmpl: self,
            cur: self.name.as_str().into(),
            escape,
            vars: std::iter::once(("$".to_string(), dot.clone()))
                .chain(vars.iter().map(|(k, v)| (k.to_string(), v.clone())))
                .collect(),
            funcs,
            out: String::new(),
            depth: 0,
            limits: self.limits,
            steps: 0,
        };
        ex.walk_list(dot, &self.nodes)?;
        Ok(ex.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str) -> Result<String, Error> {
        let funcs = Funcs::builtins();
        Template::parse("t", text, &[], &funcs)?
            .with_limits(Limits {
                max_output: 1 << 16,
                max_steps: 10_000,
            })
            .execute(&Value::Nil, &[], &funcs)
    }

    /// A hostile template ends on the budget with an error naming the
    /// template and line, quickly and without the memory it asks for.
    #[test]
    fn execution_is_bounded() {
        let e = run("a\n{{range 1000000000000000}}x{{end}}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Budget, "{e}");
        assert_eq!(
            e.to_string(),
            "template: t:2: executing \"t\": template took more than 10000 evaluation steps"
        );
        let e = run("{{$x := \"aaaaaaaa\"}}{{range 40}}{{$x = print $x $x}}{{end}}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Budget, "{e}");
        assert!(e.to_string().contains("would exceed 65536 bytes"), "{e}");
        let e = run("{{range 9000}}0123456789{{end}}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Budget, "{e}");
        // Within the budget the same shapes run.
        assert_eq!(run("{{range 3}}{{.}}{{end}}").unwrap(), "012");
    }

    /// Go's fmt refuses widths past 1e6 (`%!(NOVERB)`) instead of padding.
    #[test]
    fn printf_width_is_bounded_like_go() {
        assert_eq!(
            run("{{printf \"%999999999d|\" 1}}").unwrap(),
            "%!(NOVERB)%!(EXTRA int=1)"
        );
        assert_eq!(
            run("{{printf \"%.9999999f\" 1.5}}").unwrap(),
            "%!(NOVERB)%!(EXTRA float64=1.5)"
        );
        assert_eq!(
            run("{{printf \"%5d|%-4s|%.2f\" 42 \"ab\" 3.14159}}").unwrap(),
            "   42|ab  |3.14"
        );
    }

    #[test]
    fn builtins_and_errors_like_go() {
        assert_eq!(run("{{len \"héllo\"}}").unwrap(), "6");
        assert_eq!(run("{{if and 1 0}}y{{else}}n{{end}}").unwrap(), "n");
        assert_eq!(run("{{or 0 \"x\"}}").unwrap(), "x");
        assert_eq!(
            run("{{index (slice \"abcdef\" 1 3) | print}}").unwrap(),
            "bc"
        );
        assert_eq!(
            run("{{html \"<a&b>\"}} {{urlquery \"a b&c\"}} {{js \"'x'\"}}").unwrap(),
            "&lt;a&amp;b&gt; a+b%26c \\'x\\'"
        );
        assert_eq!(
            run("{{printf \"%v %g %G\" 1e21 1e-7 2.5e30}}").unwrap(),
            "1e+21 1e-07 2.5E+30"
        );
        let e = run("x\n{{nope 1}}").unwrap_err();
        assert_eq!(
            (e.kind, e.line, e.offset),
            (ErrorKind::UndefinedFunction, 2, Some(2))
        );
        assert_eq!(
            e.to_string(),
            "template: t:2: function \"nope\" not defined"
        );
    }

    /// A function's error is typed for the hosts and reads as Go's inside
    /// the executor's `error calling NAME: `.
    #[test]
    fn function_errors_are_typed_with_gos_text() {
        let e = funcs::arity("humanize", &[], 1).unwrap_err();
        assert_eq!(
            e,
            FuncError::Arity {
                name: "humanize".into(),
                want: 1,
                got: 0
            }
        );
        assert_eq!(
            e.to_string(),
            "wrong number of args for humanize: want 1 got 0"
        );
        assert_eq!(
            to_float(&Value::Str("x".into())),
            Err(FuncError::ParseFloat("x".into()))
        );
        assert_eq!(
            to_float(&Value::Str("x".into())).unwrap_err().to_string(),
            "strconv.ParseFloat: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            to_float(&Value::Nil).unwrap_err().to_string(),
            "can't convert nil to float"
        );
        assert_eq!(
            run("{{not}}").unwrap_err().to_string(),
            "template: t:1: executing \"t\": error calling not: wrong number of args for not: want 1 got 0"
        );
        assert_eq!(
            run("{{index 1 2}}").unwrap_err().message,
            "error calling index: can't index item of type int"
        );
    }

    /// A library's function is found by name; it shadows a builtin.
    #[test]
    fn libraries_register_functions() {
        struct Lib;
        impl Library for Lib {
            fn has(&self, name: &str) -> bool {
                name == "double" || name == "len"
            }
            fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, FuncError> {
                match (name, args.as_slice()) {
                    ("double", [Value::Int(i)]) => Ok(Value::Int(i * 2)),
                    ("len", _) => Ok(Value::Str("mine".into())),
                    _ => Err(FuncError::message("bad args")),
                }
            }
        }
        let lib = Lib;
        let funcs = Funcs::builtins().with(&lib);
        let t = Template::parse(
            "t",
            "{{double 21}} {{len \"x\"}} {{double \"a\"}}",
            &[],
            &funcs,
        );
        let e = t.unwrap().execute(&Value::Nil, &[], &funcs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "template: t:1: executing \"t\": error calling double: bad args"
        );
        let t = Template::parse("t", "{{double 21}} {{len \"x\"}}", &[], &funcs).unwrap();
        assert_eq!(t.execute(&Value::Nil, &[], &funcs).unwrap(), "42 mine");
        assert!(Template::parse("t", "{{double 1}}", &[], &Funcs::builtins()).is_err());
    }
}
