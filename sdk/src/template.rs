//! A small text-template language for notification titles and bodies.
//!
//! Not Go's `text/template`: a little subset with the same look, enough for
//! the templates people write for Alertmanager receivers, evaluated against
//! a [`Notification`]. Parse once with [`Template::parse`] (errors name the
//! offset), render with [`Template::render`].
//!
//! # Syntax
//!
//! Text is copied as is; `{{ ... }}` is an action. `{{-` trims the white
//! space before the action, `-}}` the white space after it.
//!
//! | action | what |
//! |---|---|
//! | `{{ PIPELINE }}` | prints the pipeline's value |
//! | `{{ if PIPELINE }} A {{ else }} B {{ end }}` | A when the value is non-empty/non-zero/true, else B (`else` optional) |
//! | `{{ range PIPELINE }} A {{ else }} B {{ end }}` | A once per element with `.` set to it, B if there is none |
//!
//! A pipeline is a command, optionally followed by `| command`s; the value
//! of each is passed as the last argument of the next. A command is a value
//! (`.Field.path`, `$.Field` for the notification from inside a `range`,
//! `.` for the current value, `"string"` with `\n \t \" \\` escapes, an
//! integer, or `( pipeline )`), or a function followed by its arguments.
//!
//! Values of the notification (`.` at the top):
//! `.Status` (`firing`/`resolved`), `.Receiver`, `.GroupKey`,
//! `.ExternalURL`, `.TruncatedAlerts`, `.Alerts` (also `.Alerts.Firing` and
//! `.Alerts.Resolved`), `.GroupLabels`, `.CommonLabels`,
//! `.CommonAnnotations` and `.Subject` (Alertmanager's default title, e.g.
//! `[FIRING:2] HighErrorRate (checkout)`, see [`subject`]).
//!
//! An alert (`.` inside `range .Alerts`): `.Status`, `.Labels`,
//! `.Annotations`, `.StartsAt`, `.EndsAt`, `.GeneratorURL`, `.Fingerprint`.
//!
//! A label set (`.CommonLabels`, `.Labels`...): `.NAME` is the value of
//! label NAME ("" if absent; `index .Labels "odd-name"` for names that are
//! not identifiers); printed whole it reads `a=1, b=2` (sorted by name);
//! `range` over it gives pairs with `.Name` and `.Value`, sorted by name.
//!
//! Functions: `len X` (alerts, labels or string length), `toUpper`,
//! `toLower`, `title` (first letter of each word upper-cased),
//! `index LABELS "name"`, `eq A B`, `ne A B`, `gt A B`, `lt A B` (numbers or
//! strings), `not X`, `join SEP LABELS` (the values, sorted by name).
//!
//! ```text
//! [{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ len .Alerts.Firing }}{{ end }}] {{ .GroupLabels.alertname }}
//! {{ range .Alerts }}- {{ .Labels.instance }}: {{ .Annotations.summary }}
//! {{ end }}
//! ```

use std::borrow::Cow;
use std::fmt;

use crate::alertmanager;
use crate::types::{Alert, AlertStatus, Label, Notification};

/// A parse or render error, with the template's offset for parse errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    nodes: Vec<Node>,
}

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Print(Pipeline),
    If(Pipeline, Vec<Node>, Vec<Node>),
    Range(Pipeline, Vec<Node>, Vec<Node>),
}

type Pipeline = Vec<Command>;

#[derive(Debug, Clone)]
enum Command {
    Value(Operand),
    Call(String, Vec<Operand>),
}

#[derive(Debug, Clone)]
enum Operand {
    /// A field path from `.` (root = false) or from `$` (root = true).
    Field {
        root: bool,
        path: Vec<String>,
    },
    Str(String),
    Int(i64),
    Sub(Pipeline),
}

const FUNCTIONS: &[&str] = &[
    "len", "toUpper", "toLower", "title", "index", "eq", "ne", "gt", "lt", "not", "join",
];

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let actions = split(text)?;
        let mut it = actions.into_iter().peekable();
        let (nodes, end) = parse_block(&mut it)?;
        match end {
            None => Ok(Template { nodes }),
            Some((kw, at)) => Err(Error(format!("unexpected {{{{ {kw} }}}} at offset {at}"))),
        }
    }

    /// Renders the template against `notification`.
    pub fn render(&self, notification: &Notification) -> Result<String, Error> {
        let mut out = String::new();
        let root = Value::Root(notification);
        exec(&self.nodes, &root, notification, &mut out)?;
        Ok(out)
    }
}

/// Parses and renders `text` in one go.
pub fn render(text: &str, notification: &Notification) -> Result<String, Error> {
    Template::parse(text)?.render(notification)
}

/// Alertmanager's default title (its `__subject` template):
/// `[FIRING:N] <group label values> (<other common label values>)`, or
/// `[RESOLVED] ...`; values are sorted by label name.
pub fn subject(n: &Notification) -> String {
    let mut s = match n.status {
        AlertStatus::Firing => format!("[FIRING:{}]", firing(n).len()),
        AlertStatus::Resolved => "[RESOLVED]".to_string(),
    };
    let group = sorted(&n.group_labels);
    let values: Vec<&str> = group.iter().map(|l| l.value.as_str()).collect();
    s.push(' ');
    s.push_str(&values.join(" "));
    let extra: Vec<&str> = sorted(&n.common_labels)
        .into_iter()
        .filter(|l| !n.group_labels.iter().any(|g| g.name == l.name))
        .map(|l| l.value.as_str())
        .collect();
    if !extra.is_empty() {
        s.push_str(&format!(" ({})", extra.join(" ")));
    }
    s
}

/// The alerts of `n` that are firing.
pub fn firing(n: &Notification) -> Vec<&Alert> {
    with_status(&n.alerts, AlertStatus::Firing)
}

/// The alerts of `n` that are resolved.
pub fn resolved(n: &Notification) -> Vec<&Alert> {
    with_status(&n.alerts, AlertStatus::Resolved)
}

fn with_status(alerts: &[Alert], status: AlertStatus) -> Vec<&Alert> {
    alerts.iter().filter(|a| a.status == status).collect()
}

fn sorted(labels: &[Label]) -> Vec<&Label> {
    alertmanager::sorted_pairs(labels)
}

// ---- lexing and parsing ----

enum Piece {
    Text(String),
    Action(String, usize),
}

/// Splits the template into text and action pieces, applying trim markers.
fn split(text: &str) -> Result<Vec<Piece>, Error> {
    let mut pieces = Vec::new();
    let mut rest = text;
    let mut offset = 0;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let mut before = &rest[..start];
        if trim_next {
            before = before.trim_start();
        }
        let inner_start = start + 2;
        let end = rest[inner_start..]
            .find("}}")
            .ok_or_else(|| Error(format!("unclosed action at offset {}", offset + start)))?;
        let mut inner = &rest[inner_start..inner_start + end];
        if let Some(s) = inner.strip_prefix('-') {
            before = before.trim_end();
            inner = s;
        }
        trim_next = false;
        if let Some(s) = inner.strip_suffix('-') {
            trim_next = true;
            inner = s;
        }
        if !before.is_empty() {
            pieces.push(Piece::Text(before.to_string()));
        }
        pieces.push(Piece::Action(inner.trim().to_string(), offset + start));
        let consumed = inner_start + end + 2;
        rest = &rest[consumed..];
        offset += consumed;
    }
    let last = if trim_next { rest.trim_start() } else { rest };
    if !last.is_empty() {
        pieces.push(Piece::Text(last.to_string()));
    }
    Ok(pieces)
}

type Pieces = std::iter::Peekable<std::vec::IntoIter<Piece>>;

/// Parses nodes until `else`/`end` (returned with its offset) or the end.
/// The keyword that closed a block (`else` or `end`) and its offset.
type Closer = Option<(String, usize)>;

fn parse_block(it: &mut Pieces) -> Result<(Vec<Node>, Closer), Error> {
    let mut nodes = Vec::new();
    while let Some(piece) = it.next() {
        let (action, at) = match piece {
            Piece::Text(t) => {
                nodes.push(Node::Text(t));
                continue;
            }
            Piece::Action(a, at) => (a, at),
        };
        let (keyword, rest) = match action.split_once(char::is_whitespace) {
            Some((k, r)) => (k, r.trim()),
            None => (action.as_str(), ""),
        };
        match keyword {
            "else" | "end" => {
                if !rest.is_empty() {
                    return Err(Error(format!(
                        "{{{{ {keyword} }}}} takes nothing at offset {at}"
                    )));
                }
                return Ok((nodes, Some((keyword.to_string(), at))));
            }
            "if" | "range" => {
                let pipe = parse_pipeline(rest, at)?;
                let (body, end) = parse_block(it)?;
                let els = match end {
                    Some((ref k, _)) if k == "else" => {
                        let (els, end) = parse_block(it)?;
                        match end {
                            Some((ref k, _)) if k == "end" => els,
                            Some((k, at)) => {
                                return Err(Error(format!(
                                    "unexpected {{{{ {k} }}}} at offset {at}"
                                )))
                            }
                            None => {
                                return Err(Error(format!(
                                    "{{{{ {keyword} }}}} at offset {at} has no {{{{ end }}}}"
                                )))
                            }
                        }
                    }
                    Some(_) => Vec::new(),
                    None => {
                        return Err(Error(format!(
                            "{{{{ {keyword} }}}} at offset {at} has no {{{{ end }}}}"
                        )))
                    }
                };
                nodes.push(if keyword == "if" {
                    Node::If(pipe, body, els)
                } else {
                    Node::Range(pipe, body, els)
                });
            }
            _ => nodes.push(Node::Print(parse_pipeline(&action, at)?)),
        }
    }
    Ok((nodes, None))
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Field(bool, Vec<String>),
    Str(String),
    Int(i64),
    Ident(String),
    Pipe,
    Open,
    Close,
}

fn lex(s: &str, at: usize) -> Result<Vec<Token>, Error> {
    let err = |m: &str| Error(format!("{m} in the action at offset {at}"));
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let ident_char = |c: char| c.is_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '|' {
            tokens.push(Token::Pipe);
            i += 1;
        } else if c == '(' {
            tokens.push(Token::Open);
            i += 1;
        } else if c == ')' {
            tokens.push(Token::Close);
            i += 1;
        } else if c == '.' || c == '$' {
            let root = c == '$';
            if root {
                i += 1;
            }
            let mut path = Vec::new();
            while i < chars.len() && chars[i] == '.' {
                i += 1;
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                if i > start {
                    path.push(chars[start..i].iter().collect());
                } else if !path.is_empty() || (i < chars.len() && chars[i] == '.') {
                    return Err(err("empty field name"));
                }
            }
            tokens.push(Token::Field(root, path));
        } else if c == '"' {
            i += 1;
            let mut out = String::new();
            loop {
                match chars.get(i) {
                    None => return Err(err("unterminated string")),
                    Some('"') => break,
                    Some('\\') => {
                        i += 1;
                        out.push(match chars.get(i) {
                            Some('n') => '\n',
                            Some('t') => '\t',
                            Some('"') => '"',
                            Some('\\') => '\\',
                            _ => return Err(err("bad escape")),
                        });
                    }
                    Some(&c) => out.push(c),
                }
                i += 1;
            }
            i += 1;
            tokens.push(Token::Str(out));
        } else if c.is_ascii_digit() || c == '-' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let n: String = chars[start..i].iter().collect();
            tokens.push(Token::Int(n.parse().map_err(|_| err("bad number"))?));
        } else if ident_char(c) {
            let start = i;
            while i < chars.len() && ident_char(chars[i]) {
                i += 1;
            }
            tokens.push(Token::Ident(chars[start..i].iter().collect()));
        } else {
            return Err(err(&format!("unexpected {c:?}")));
        }
    }
    Ok(tokens)
}

fn parse_pipeline(s: &str, at: usize) -> Result<Pipeline, Error> {
    let tokens = lex(s, at)?;
    let mut pos = 0;
    let pipe = pipeline(&tokens, &mut pos, at)?;
    if pos != tokens.len() {
        return Err(Error(format!(
            "unexpected ')' in the action at offset {at}"
        )));
    }
    Ok(pipe)
}

fn pipeline(tokens: &[Token], pos: &mut usize, at: usize) -> Result<Pipeline, Error> {
    let err = |m: String| Error(format!("{m} in the action at offset {at}"));
    let mut commands = Vec::new();
    loop {
        let mut words = Vec::new();
        let mut func = None;
        while let Some(t) = tokens.get(*pos) {
            match t {
                Token::Pipe | Token::Close => break,
                Token::Ident(name) if words.is_empty() && func.is_none() => {
                    if !FUNCTIONS.contains(&name.as_str()) {
                        return Err(err(format!("unknown function {name:?}")));
                    }
                    func = Some(name.clone());
                    *pos += 1;
                }
                Token::Ident(name) => return Err(err(format!("unexpected {name:?}"))),
                Token::Field(root, path) => {
                    words.push(Operand::Field {
                        root: *root,
                        path: path.clone(),
                    });
                    *pos += 1;
                }
                Token::Str(s) => {
                    words.push(Operand::Str(s.clone()));
                    *pos += 1;
                }
                Token::Int(n) => {
                    words.push(Operand::Int(*n));
                    *pos += 1;
                }
                Token::Open => {
                    *pos += 1;
                    let sub = pipeline(tokens, pos, at)?;
                    if tokens.get(*pos) != Some(&Token::Close) {
                        return Err(err("unclosed '('".into()));
                    }
                    *pos += 1;
                    words.push(Operand::Sub(sub));
                }
            }
        }
        let command = match func {
            Some(f) => Command::Call(f, words),
            None if words.len() == 1 => Command::Value(words.pop().expect("one word")),
            None if words.is_empty() => return Err(err("empty command".into())),
            None => return Err(err("a value cannot take arguments".into())),
        };
        commands.push(command);
        if tokens.get(*pos) == Some(&Token::Pipe) {
            *pos += 1;
            if !matches!(tokens.get(*pos), Some(Token::Ident(_))) {
                return Err(err("'|' must be followed by a function".into()));
            }
        } else {
            return Ok(commands);
        }
    }
}

// ---- evaluation ----

#[derive(Debug, Clone)]
enum Value<'a> {
    Root(&'a Notification),
    Alerts(Vec<&'a Alert>),
    Alert(&'a Alert),
    Labels(&'a [Label]),
    Label(&'a Label),
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
}

impl Value<'_> {
    fn truthy(&self) -> bool {
        match self {
            Value::Root(_) | Value::Alert(_) | Value::Label(_) => true,
            Value::Alerts(a) => !a.is_empty(),
            Value::Labels(l) => !l.is_empty(),
            Value::Str(s) => !s.is_empty(),
            Value::Int(n) => *n != 0,
            Value::Bool(b) => *b,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Root(_) => "the notification",
            Value::Alerts(_) => "a list of alerts",
            Value::Alert(_) => "an alert",
            Value::Labels(_) => "a label set",
            Value::Label(_) => "a label",
            Value::Str(_) => "a string",
            Value::Int(_) => "a number",
            Value::Bool(_) => "a boolean",
        }
    }

    fn print(&self, out: &mut String) -> Result<(), Error> {
        match self {
            Value::Str(s) => out.push_str(s),
            Value::Int(n) => out.push_str(&n.to_string()),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Labels(l) => {
                let pairs: Vec<String> = sorted(l)
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect();
                out.push_str(&pairs.join(", "));
            }
            Value::Label(l) => {
                out.push_str(&l.name);
                out.push('=');
                out.push_str(&l.value);
            }
            other => return Err(Error(format!("cannot print {}", other.kind()))),
        }
        Ok(())
    }

    fn as_str(&self) -> Option<Cow<'_, str>> {
        match self {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Int(n) => Some(Cow::Owned(n.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

fn field<'a>(v: Value<'a>, name: &str) -> Result<Value<'a>, Error> {
    let s = |x: &'a str| Value::Str(Cow::Borrowed(x));
    let unknown = |v: &Value| Err(Error(format!("{} has no field {name:?}", v.kind())));
    Ok(match v {
        Value::Root(n) => match name {
            "Status" => s(alertmanager::status(n.status)),
            "Receiver" => s(&n.receiver),
            "GroupKey" => s(&n.group_key),
            "ExternalURL" => s(&n.external_url),
            "TruncatedAlerts" => Value::Int(i64::from(n.truncated_alerts)),
            "Alerts" => Value::Alerts(n.alerts.iter().collect()),
            "GroupLabels" => Value::Labels(&n.group_labels),
            "CommonLabels" => Value::Labels(&n.common_labels),
            "CommonAnnotations" => Value::Labels(&n.common_annotations),
            "Subject" => Value::Str(Cow::Owned(subject(n))),
            _ => return unknown(&v),
        },
        Value::Alerts(ref alerts) => match name {
            "Firing" | "Resolved" => {
                let want = if name == "Firing" {
                    AlertStatus::Firing
                } else {
                    AlertStatus::Resolved
                };
                Value::Alerts(
                    alerts
                        .iter()
                        .copied()
                        .filter(|a| a.status == want)
                        .collect(),
                )
            }
            _ => return unknown(&v),
        },
        Value::Alert(a) => match name {
            "Status" => s(alertmanager::status(a.status)),
            "Labels" => Value::Labels(&a.labels),
            "Annotations" => Value::Labels(&a.annotations),
            "StartsAt" => s(&a.starts_at),
            "EndsAt" => s(&a.ends_at),
            "GeneratorURL" => s(&a.generator_url),
            "Fingerprint" => s(&a.fingerprint),
            _ => return unknown(&v),
        },
        Value::Labels(l) => s(alertmanager::label(l, name).unwrap_or("")),
        Value::Label(l) => match name {
            "Name" => s(&l.name),
            "Value" => s(&l.value),
            _ => return unknown(&v),
        },
        _ => return unknown(&v),
    })
}

fn eval_operand<'a>(
    op: &Operand,
    dot: &Value<'a>,
    root: &'a Notification,
) -> Result<Value<'a>, Error> {
    match op {
        Operand::Field {
            root: from_root,
            path,
        } => {
            let mut v = if *from_root {
                Value::Root(root)
            } else {
                dot.clone()
            };
            for name in path {
                v = field(v, name)?;
            }
            Ok(v)
        }
        Operand::Str(s) => Ok(Value::Str(Cow::Owned(s.clone()))),
        Operand::Int(n) => Ok(Value::Int(*n)),
        Operand::Sub(p) => eval_pipeline(p, dot, root),
    }
}

fn eval_pipeline<'a>(
    pipe: &Pipeline,
    dot: &Value<'a>,
    root: &'a Notification,
) -> Result<Value<'a>, Error> {
    let mut last: Option<Value<'a>> = None;
    for command in pipe {
        let value = match command {
            Command::Value(op) => {
                if last.is_some() {
                    return Err(Error("a value cannot take a piped argument".into()));
                }
                eval_operand(op, dot, root)?
            }
            Command::Call(name, args) => {
                let mut values = args
                    .iter()
                    .map(|a| eval_operand(a, dot, root))
                    .collect::<Result<Vec<_>, _>>()?;
                values.extend(last.take());
                call(name, values)?
            }
        };
        last = Some(value);
    }
    last.ok_or_else(|| Error("empty pipeline".into()))
}

fn call<'a>(name: &str, args: Vec<Value<'a>>) -> Result<Value<'a>, Error> {
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(Error(format!(
                "{name} takes {n} argument(s), got {}",
                args.len()
            )))
        }
    };
    let string = |v: &Value| {
        v.as_str()
            .map(Cow::into_owned)
            .ok_or_else(|| Error(format!("{name} needs a string, got {}", v.kind())))
    };
    Ok(match name {
        "len" => {
            arity(1)?;
            Value::Int(match &args[0] {
                Value::Alerts(a) => a.len() as i64,
                Value::Labels(l) => sorted(l).len() as i64,
                Value::Str(s) => s.chars().count() as i64,
                other => return Err(Error(format!("len of {}", other.kind()))),
            })
        }
        "toUpper" | "toLower" | "title" => {
            arity(1)?;
            let s = string(&args[0])?;
            Value::Str(Cow::Owned(match name {
                "toUpper" => s.to_uppercase(),
                "toLower" => s.to_lowercase(),
                _ => title(&s),
            }))
        }
        "index" => {
            arity(2)?;
            let key = string(&args[1])?;
            match &args[0] {
                Value::Labels(l) => {
                    Value::Str(Cow::Borrowed(alertmanager::label(l, &key).unwrap_or("")))
                }
                other => return Err(Error(format!("index of {}", other.kind()))),
            }
        }
        "eq" | "ne" | "gt" | "lt" => {
            arity(2)?;
            let ord = match (&args[0], &args[1]) {
                (Value::Int(a), Value::Int(b)) => a.cmp(b),
                (a, b) => string(a)?.cmp(&string(b)?),
            };
            Value::Bool(match name {
                "eq" => ord.is_eq(),
                "ne" => ord.is_ne(),
                "gt" => ord.is_gt(),
                _ => ord.is_lt(),
            })
        }
        "not" => {
            arity(1)?;
            Value::Bool(!args[0].truthy())
        }
        "join" => {
            arity(2)?;
            let sep = string(&args[0])?;
            match &args[1] {
                Value::Labels(l) => {
                    let values: Vec<&str> = sorted(l).iter().map(|l| l.value.as_str()).collect();
                    Value::Str(Cow::Owned(values.join(&sep)))
                }
                other => return Err(Error(format!("join of {}", other.kind()))),
            }
        }
        _ => return Err(Error(format!("unknown function {name:?}"))),
    })
}

fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = true;
    for c in s.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

fn exec<'a>(
    nodes: &[Node],
    dot: &Value<'a>,
    root: &'a Notification,
    out: &mut String,
) -> Result<(), Error> {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Print(p) => eval_pipeline(p, dot, root)?.print(out)?,
            Node::If(p, then, els) => {
                let branch = if eval_pipeline(p, dot, root)?.truthy() {
                    then
                } else {
                    els
                };
                exec(branch, dot, root, out)?;
            }
            Node::Range(p, body, els) => {
                let items: Vec<Value<'a>> = match eval_pipeline(p, dot, root)? {
                    Value::Alerts(a) => a.into_iter().map(Value::Alert).collect(),
                    Value::Labels(l) => sorted(l).into_iter().map(Value::Label).collect(),
                    other => return Err(Error(format!("cannot range over {}", other.kind()))),
                };
                if items.is_empty() {
                    exec(els, dot, root, out)?;
                }
                for item in &items {
                    exec(body, item, root, out)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(name: &str, value: &str) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }

    fn alert(pod: &str, status: AlertStatus) -> Alert {
        Alert {
            status,
            labels: vec![
                l("alertname", "HighErrorRate"),
                l("service", "checkout"),
                l("pod", pod),
            ],
            annotations: vec![l("summary", &format!("errors on {pod}"))],
            starts_at: "2026-11-25T08:00:00Z".into(),
            ends_at: "0001-01-01T00:00:00Z".into(),
            generator_url: "http://g".into(),
            fingerprint: format!("fp-{pod}"),
        }
    }

    fn n() -> Notification {
        Notification {
            receiver: "ops".into(),
            status: AlertStatus::Firing,
            alerts: vec![
                alert("a", AlertStatus::Firing),
                alert("b", AlertStatus::Firing),
                alert("c", AlertStatus::Resolved),
            ],
            group_labels: vec![l("alertname", "HighErrorRate")],
            common_labels: vec![l("service", "checkout"), l("alertname", "HighErrorRate")],
            common_annotations: vec![],
            external_url: "http://wasmon:9930".into(),
            group_key: "{}:{alertname=\"HighErrorRate\"}".into(),
            truncated_alerts: 0,
        }
    }

    fn r(t: &str) -> String {
        render(t, &n()).unwrap_or_else(|e| panic!("{t}: {e}"))
    }

    #[test]
    fn subject_like_alertmanager() {
        let mut x = n();
        assert_eq!(subject(&x), "[FIRING:2] HighErrorRate (checkout)");
        x.status = AlertStatus::Resolved;
        x.common_labels.retain(|l| l.name == "alertname");
        assert_eq!(subject(&x), "[RESOLVED] HighErrorRate");
        assert_eq!(r("{{ .Subject }}"), "[FIRING:2] HighErrorRate (checkout)");
    }

    #[test]
    fn fields_functions_and_pipes() {
        assert_eq!(r("{{ .Status }} {{.Receiver}}"), "firing ops");
        assert_eq!(r("{{ .CommonLabels.alertname }}!"), "HighErrorRate!");
        assert_eq!(r("{{ .GroupLabels.nope }}|"), "|");
        assert_eq!(
            r("{{ len .Alerts }}/{{ .Alerts.Firing | len }}/{{ len .Alerts.Resolved }}"),
            "3/2/1"
        );
        assert_eq!(r("{{ .Status | toUpper }}"), "FIRING");
        assert_eq!(r("{{ \"hello world\" | title }}"), "Hello World");
        assert_eq!(
            r("{{ .CommonLabels }}"),
            "alertname=HighErrorRate, service=checkout"
        );
        assert_eq!(
            r("{{ join \" \" .CommonLabels }}"),
            "HighErrorRate checkout"
        );
        assert_eq!(r("{{ index .CommonLabels \"service\" }}"), "checkout");
        assert_eq!(r("{{ if gt (len .Alerts) 2 }}many{{ end }}"), "many");
    }

    #[test]
    fn if_else_range_and_trim() {
        let t = "{{ if eq .Status \"firing\" }}F{{ else }}R{{ end }}";
        assert_eq!(r(t), "F");
        let t = "{{ range .Alerts.Firing }}- {{ .Labels.pod }} {{ .Annotations.summary }} ({{ $.Receiver }})\n{{ end }}";
        assert_eq!(r(t), "- a errors on a (ops)\n- b errors on b (ops)\n");
        let t = "x\n  {{- range .GroupLabels }} {{ .Name }}={{ .Value }}{{ end -}}  \n y";
        assert_eq!(r(t), "x alertname=HighErrorRatey");
        assert_eq!(
            r("{{ range .Alerts.Resolved }}{{ .Fingerprint }}{{ else }}none{{ end }}"),
            "fp-c"
        );
        assert_eq!(r("{{ if not .CommonAnnotations }}empty{{ end }}"), "empty");
    }

    #[test]
    fn errors_are_clear() {
        let e = |t: &str| Template::parse(t).unwrap_err().0;
        assert!(
            e("{{ if .Status }}x").contains("no {{ end }}"),
            "{}",
            e("{{ if .Status }}x")
        );
        assert!(e("a {{ end }}").contains("offset 2"));
        assert!(e("{{ .Status").contains("unclosed"));
        assert!(e("{{ frob .Status }}").contains("unknown function"));
        let err = render("{{ .Nope }}", &n()).unwrap_err().0;
        assert!(err.contains("no field \"Nope\""), "{err}");
        let err = render("{{ .Alerts }}", &n()).unwrap_err().0;
        assert!(err.contains("cannot print"), "{err}");
    }
}
