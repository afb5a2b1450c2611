//! Notification titles and bodies: Go's `text/template` (the
//! `wasmon-template` engine the agent uses too) with Alertmanager's data
//! model and functions, evaluated against a [`Notification`]. Parse once
//! with [`Template::parse`] (parse errors name the offset), render with
//! [`Template::render`]; a render is bounded in output and steps.
//!
//! # Syntax
//!
//! Go's: text is copied as is; `{{ ... }}` is an action. `{{-` trims the
//! white space before the action, `-}}` the white space after it. Besides
//! the table below, variables, `with`, `define`/`template`, `break`/
//! `continue` and Go's builtins (`and`, `or`, `printf`, `html`, `slice`...)
//! work as in Go.
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
//! Alertmanager's default templates (its `template/default.tmpl` and
//! `email.tmpl`: `__subject`, `__alertmanagerURL`, `__text_alert_list`,
//! `slack.default.title`, `email.default.html`, `pagerduty.default.*`...)
//! are defined for every template, and the agent's `templates = [globs]`
//! files are added after them by [`Set::configured`] (their `define`s
//! override a default of the same name, as in Alertmanager).
//!
//! Values of the notification (`.` at the top):
//! `.Status` (`firing`/`resolved`), `.Receiver` (as Alertmanager gives it:
//! regexp-quoted), `.GroupKey`,
//! `.ExternalURL`, `.TruncatedAlerts`, `.Alerts` (also `.Alerts.Firing` and
//! `.Alerts.Resolved`), `.GroupLabels`, `.CommonLabels`,
//! `.CommonAnnotations` and `.Subject` (Alertmanager's default title, e.g.
//! `[FIRING:2] HighErrorRate (checkout)`, see [`subject`]).
//!
//! An alert (`.` inside `range .Alerts`): `.Status`, `.Labels`,
//! `.Annotations`, `.StartsAt`, `.EndsAt` (Go times: printed as Go prints
//! them, `2026-11-25 08:00:00 +0000 UTC`, with `.Format LAYOUT`, `.Unix`,
//! `.UTC`, `.IsZero`), `.GeneratorURL`, `.Fingerprint`.
//!
//! A label set (`.CommonLabels`, `.Labels`...): `.NAME` is the value of
//! label NAME ("" if absent; `index .Labels "odd-name"` for names that are
//! not identifiers); printed whole it reads `a=1, b=2` (sorted by name);
//! `range` over it gives pairs with `.Name` and `.Value`, sorted by name;
//! Alertmanager's methods: `.SortedPairs` (`alertname` first, then by
//! name; `.Names`, `.Values` on it), `.Names`, `.Values`, `.Remove NAMES`.
//!
//! Functions: Go's builtins (`len X` of alerts, labels or a string in
//! bytes, `index LABELS "name"`, `eq`, `ne`, `gt`, `lt`, `ge`, `le`, `not`,
//! ...) and Alertmanager's: `toUpper`, `toLower`, `title` (each word's
//! first letter upper-cased, the rest lower-cased), `trimSpace`, `join SEP
//! LIST` (also of a label set: its values sorted by name), `match RE TEXT`,
//! `reReplaceAll RE REPL TEXT`, `safeHtml`, `stringSlice A B...`,
//! `urlUnescape`, `date LAYOUT TIME`, `tz NAME TIME` (`UTC` and `Local`,
//! which is UTC in a plugin), `now`, `since TIME`, `humanizeDuration`.
//!
//! ```text
//! [{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ len .Alerts.Firing }}{{ end }}] {{ .GroupLabels.alertname }}
//! {{ range .Alerts }}- {{ .Labels.instance }}: {{ .Annotations.summary }}
//! {{ end }}
//! ```

use std::any::Any;
use std::fmt;

use wasmon_gofmt::time::Time;
use wasmon_template::funcs::{
    humanize_duration, re_match, re_replace_all, to_float, to_lower, to_upper,
};
use wasmon_template::{ErrorKind, Escape, FuncError, Funcs, Library, Object, SafeHtml, Value};

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

impl From<wasmon_template::Error> for Error {
    fn from(e: wasmon_template::Error) -> Error {
        let at = e
            .offset
            .map(|o| format!(" at offset {o}"))
            .unwrap_or_default();
        Error(match e.kind {
            ErrorKind::UndefinedFunction => format!("unknown function: {e}{at}"),
            _ => format!("{e}{at}"),
        })
    }
}

impl From<Error> for crate::types::Failure {
    /// A template that does not parse or render fails the same way on a
    /// retry: permanent.
    fn from(e: Error) -> crate::types::Failure {
        crate::types::Failure::Permanent(e.0)
    }
}

/// The name parse and render errors give the template.
const NAME: &str = "notification";

/// Alertmanager 0.25's `template/default.tmpl` (Apache-2.0; see the file).
pub const DEFAULT_TMPL: &str = include_str!("default.tmpl");

/// Alertmanager 0.25's `template/email.tmpl` (Apache-2.0; see the file).
pub const EMAIL_TMPL: &str = include_str!("email.tmpl");

/// The key of an instance's config JSON under which the agent hands a
/// receiver its `templates` files: `[{"name": PATH, "text": TEXT}]`.
/// [`crate::config`] leaves it out of the plugin's own config.
pub const CONFIG_KEY: &str = "__templates";

/// A set of `define`d templates that texts are parsed in: Alertmanager's
/// defaults, then the users' files, as Alertmanager's `FromGlobs`.
#[derive(Debug, Clone)]
pub struct Set {
    base: wasmon_template::Template,
}

impl Set {
    /// Alertmanager's default templates.
    pub fn defaults() -> Set {
        let funcs = Funcs::builtins().with(&Alertmanager);
        let parse = |name, text| {
            wasmon_template::Template::parse(name, text, &[], &funcs)
                .expect("Alertmanager's default templates parse")
        };
        let base = parse("email.tmpl", EMAIL_TMPL).inherit(&parse("default.tmpl", DEFAULT_TMPL));
        Set { base }
    }

    /// The defaults, then `files` (name, text) in order: a later file's
    /// `define` replaces an earlier one of the same name. A file that does
    /// not parse is an error naming it.
    pub fn with_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Set, Error> {
        let mut set = Set::defaults();
        let funcs = Funcs::builtins().with(&Alertmanager);
        for (name, text) in files {
            let t = wasmon_template::Template::parse(name, text, &[], &funcs)?;
            set.base = t.inherit(&set.base);
        }
        Ok(set)
    }

    /// The defaults and the files the agent's `templates` setting gave
    /// this instance (see [`CONFIG_KEY`]).
    pub fn configured() -> Result<Set, Error> {
        Set::from_config_json(&crate::raw_config())
    }

    /// [`Set::configured`] from an instance's config JSON text.
    pub fn from_config_json(raw: &str) -> Result<Set, Error> {
        #[derive(serde::Deserialize)]
        struct File {
            name: String,
            text: String,
        }
        let value: serde_json::Value = match serde_json::from_str(raw) {
            Ok(v) => v,
            // Not JSON (or empty): no templates; the plugin's own config
            // reading says what is wrong with it.
            Err(_) => return Ok(Set::defaults()),
        };
        let Some(files) = value.get(CONFIG_KEY) else {
            return Ok(Set::defaults());
        };
        let files: Vec<File> = serde_json::from_value(files.clone())
            .map_err(|e| Error(format!("config key {CONFIG_KEY}: {e}")))?;
        Set::with_files(files.iter().map(|f| (f.name.as_str(), f.text.as_str())))
    }

    /// Parses `text` with the set's templates defined.
    pub fn parse(&self, text: &str) -> Result<Template, Error> {
        let funcs = Funcs::builtins().with(&Alertmanager);
        Ok(Template {
            tree: wasmon_template::Template::parse(NAME, text, &[], &funcs)?.inherit(&self.base),
        })
    }

    /// Whether the set defines a template `name`.
    pub fn defines(&self, name: &str) -> bool {
        self.base.defines(name)
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    tree: wasmon_template::Template,
}

impl Template {
    /// Parses `text` with Alertmanager's default templates defined (use
    /// [`Set::parse`] for the users' files too).
    pub fn parse(text: &str) -> Result<Template, Error> {
        Set::defaults().parse(text)
    }

    /// Renders the template against `notification`.
    pub fn render(&self, notification: &Notification) -> Result<String, Error> {
        self.run(notification, Escape::None)
    }

    /// Renders the template as Alertmanager renders HTML (its email
    /// body, through Go's html/template): values printed by actions are
    /// HTML-escaped unless marked with `safeHtml`, and the page's
    /// `<!-- -->` comments are dropped.
    pub fn render_html(&self, notification: &Notification) -> Result<String, Error> {
        self.run(notification, Escape::Html)
    }

    fn run(&self, notification: &Notification, escape: Escape) -> Result<String, Error> {
        let funcs = Funcs::builtins().with(&Alertmanager);
        let root = Value::object(Root(notification.clone()));
        Ok(self.tree.execute_escaped(&root, &[], &funcs, escape)?)
    }
}

/// Parses and renders `text` in one go.
pub fn render(text: &str, notification: &Notification) -> Result<String, Error> {
    Template::parse(text)?.render(notification)
}

/// Alertmanager's default title (its `__subject` template):
/// `[FIRING:N] <group label values> (<other common label values>)`, or
/// `[RESOLVED] ...`; values in `SortedPairs` order.
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

/// Go's `regexp.QuoteMeta`: Alertmanager quotes the receiver's name so
/// in templates (`.Receiver`).
fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

// ---- Alertmanager's data model ----

/// `.` at the top: the notification (Alertmanager's `template.Data`).
#[derive(Debug)]
struct Root(Notification);

/// `.Alerts`, `.Alerts.Firing`...: a list of alerts.
#[derive(Debug)]
struct Alerts(Vec<Alert>);

/// One alert.
#[derive(Debug)]
struct AlertValue(Alert);

/// A label set (Alertmanager's `KV`): `.NAME` is a value, "" if absent.
#[derive(Debug)]
struct Labels(Vec<Label>);

/// A label set's element in `range`: `.Name` and `.Value`.
#[derive(Debug)]
struct Pair(Label);

/// `.SortedPairs`: Alertmanager's `Pairs`.
#[derive(Debug)]
struct Pairs(Vec<Label>);

/// A Go `time.Time`.
#[derive(Debug)]
struct GoTime(Time);

/// A Go `time.Duration` (what `since` returns), in nanoseconds.
#[derive(Debug)]
struct GoDuration(i64);

fn no_field(type_name: &'static str, field: &str) -> FuncError {
    FuncError::NoField {
        type_name,
        field: field.to_string(),
    }
}

/// Alertmanager's data objects other than label sets have no `String()`.
fn unprintable(type_name: &str) -> FuncError {
    FuncError::Message(format!("cannot print {type_name}"))
}

fn str_value(s: &str) -> Value {
    Value::Str(s.to_string())
}

fn strings(v: impl IntoIterator<Item = String>) -> Value {
    Value::List(v.into_iter().map(Value::Str).collect())
}

/// An alert's time: RFC 3339 from the host; Go's zero time if empty.
fn time_value(s: &str) -> Result<Value, FuncError> {
    let t = if s.is_empty() {
        Time::parse_rfc3339("0001-01-01T00:00:00Z")
    } else {
        Time::parse_rfc3339(s)
    };
    t.map(|t| Value::object(GoTime(t)))
        .ok_or_else(|| FuncError::Message(format!("alert time {s:?} is not RFC 3339")))
}

impl Object for Root {
    fn type_name(&self) -> &'static str {
        "the notification"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        let n = &self.0;
        Ok(match name {
            "Status" => str_value(alertmanager::status(n.status)),
            "Receiver" => Value::Str(quote_meta(&n.receiver)),
            "GroupKey" => str_value(&n.group_key),
            "ExternalURL" => str_value(&n.external_url),
            "TruncatedAlerts" => Value::Int(i64::from(n.truncated_alerts)),
            "Alerts" => Value::object(Alerts(n.alerts.clone())),
            "GroupLabels" => Value::object(Labels(n.group_labels.clone())),
            "CommonLabels" => Value::object(Labels(n.common_labels.clone())),
            "CommonAnnotations" => Value::object(Labels(n.common_annotations.clone())),
            "Subject" => Value::Str(subject(n)),
            _ => return Err(no_field(self.type_name(), name)),
        })
    }
    fn print(&self) -> Result<String, FuncError> {
        Err(unprintable(self.type_name()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Object for Alerts {
    fn type_name(&self) -> &'static str {
        "a list of alerts"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        let status = match name {
            "Firing" => AlertStatus::Firing,
            "Resolved" => AlertStatus::Resolved,
            _ => return Err(no_field(self.type_name(), name)),
        };
        let alerts = with_status(&self.0, status).into_iter().cloned().collect();
        Ok(Value::object(Alerts(alerts)))
    }
    fn print(&self) -> Result<String, FuncError> {
        Err(unprintable(self.type_name()))
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn length(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn items(&self) -> Option<Vec<Value>> {
        Some(
            self.0
                .iter()
                .map(|a| Value::object(AlertValue(a.clone())))
                .collect(),
        )
    }
    fn index(&self, key: &Value) -> Option<Value> {
        let Value::Int(i) = key else {
            return None;
        };
        let a = self.0.get(usize::try_from(*i).ok()?)?;
        Some(Value::object(AlertValue(a.clone())))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Object for AlertValue {
    fn type_name(&self) -> &'static str {
        "an alert"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        let a = &self.0;
        Ok(match name {
            "Status" => str_value(alertmanager::status(a.status)),
            "Labels" => Value::object(Labels(a.labels.clone())),
            "Annotations" => Value::object(Labels(a.annotations.clone())),
            "StartsAt" => time_value(&a.starts_at)?,
            "EndsAt" => time_value(&a.ends_at)?,
            "GeneratorURL" => str_value(&a.generator_url),
            "Fingerprint" => str_value(&a.fingerprint),
            _ => return Err(no_field(self.type_name(), name)),
        })
    }
    fn print(&self) -> Result<String, FuncError> {
        Err(unprintable(self.type_name()))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The strings of a `[]string` argument (`.Names`, `stringSlice ...`).
fn string_list(v: &Value, what: &str) -> Result<Vec<String>, FuncError> {
    match v {
        Value::List(l) => Ok(l.iter().map(|v| v.to_string()).collect()),
        Value::Nil | Value::Missing => Ok(Vec::new()),
        other => Err(FuncError::Message(format!(
            "{what} needs a list of strings, got {}",
            other.type_name()
        ))),
    }
}

impl Object for Labels {
    fn type_name(&self) -> &'static str {
        "a label set"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        // Go finds a method before a map key of the same name.
        Ok(match name {
            "SortedPairs" => Value::object(Pairs(sorted(&self.0).into_iter().cloned().collect())),
            "Names" => strings(sorted(&self.0).into_iter().map(|l| l.name.clone())),
            "Values" => strings(sorted(&self.0).into_iter().map(|l| l.value.clone())),
            _ => str_value(alertmanager::label(&self.0, name).unwrap_or("")),
        })
    }
    fn method(&self, name: &str, args: Vec<Value>) -> Option<Result<Value, FuncError>> {
        if name != "Remove" {
            return None;
        }
        Some((|| {
            wasmon_template::funcs::arity("Remove", &args, 1)?;
            let keys = string_list(&args[0], "Remove")?;
            let kept = self
                .0
                .iter()
                .filter(|l| !keys.contains(&l.name))
                .cloned()
                .collect();
            Ok(Value::object(Labels(kept)))
        })())
    }
    /// `a=1, b=2`, in `SortedPairs` order.
    fn print(&self) -> Result<String, FuncError> {
        let pairs: Vec<String> = sorted(&self.0)
            .iter()
            .map(|l| format!("{}={}", l.name, l.value))
            .collect();
        Ok(pairs.join(", "))
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn length(&self) -> Option<usize> {
        Some(sorted(&self.0).len())
    }
    fn items(&self) -> Option<Vec<Value>> {
        Some(
            sorted(&self.0)
                .into_iter()
                .map(|l| Value::object(Pair(l.clone())))
                .collect(),
        )
    }
    fn index(&self, key: &Value) -> Option<Value> {
        let Value::Str(key) = key else {
            return None;
        };
        Some(str_value(alertmanager::label(&self.0, key).unwrap_or("")))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Object for Pairs {
    fn type_name(&self) -> &'static str {
        "template.Pairs"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        Ok(match name {
            "Names" => strings(self.0.iter().map(|l| l.name.clone())),
            "Values" => strings(self.0.iter().map(|l| l.value.clone())),
            _ => return Err(no_field(self.type_name(), name)),
        })
    }
    /// Go's `%v` of a slice of structs: `[{a 1} {b 2}]`.
    fn print(&self) -> Result<String, FuncError> {
        let pairs: Vec<String> = self
            .0
            .iter()
            .map(|l| format!("{{{} {}}}", l.name, l.value))
            .collect();
        Ok(format!("[{}]", pairs.join(" ")))
    }
    fn truthy(&self) -> bool {
        !self.0.is_empty()
    }
    fn length(&self) -> Option<usize> {
        Some(self.0.len())
    }
    fn items(&self) -> Option<Vec<Value>> {
        Some(
            self.0
                .iter()
                .map(|l| Value::object(Pair(l.clone())))
                .collect(),
        )
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Object for Pair {
    fn type_name(&self) -> &'static str {
        "a label"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        match name {
            "Name" => Ok(str_value(&self.0.name)),
            "Value" => Ok(str_value(&self.0.value)),
            _ => Err(no_field(self.type_name(), name)),
        }
    }
    fn print(&self) -> Result<String, FuncError> {
        Ok(format!("{}={}", self.0.name, self.0.value))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Object for GoTime {
    fn type_name(&self) -> &'static str {
        "time.Time"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        let t = &self.0;
        Ok(match name {
            "Unix" => Value::Int(t.unix),
            "UnixMilli" => Value::Int(t.unix * 1000 + i64::from(t.nanos / 1_000_000)),
            "UTC" | "Local" => Value::object(GoTime(t.utc())),
            "IsZero" => Value::Bool(t.unix == -62_135_596_800 && t.nanos == 0),
            "String" => Value::Str(t.to_go_string()),
            _ => return Err(no_field(self.type_name(), name)),
        })
    }
    fn method(&self, name: &str, args: Vec<Value>) -> Option<Result<Value, FuncError>> {
        (name == "Format").then(|| {
            wasmon_template::funcs::arity("Format", &args, 1)?;
            Ok(Value::Str(self.0.format(&args[0].to_string())))
        })
    }
    fn print(&self) -> Result<String, FuncError> {
        Ok(self.0.to_go_string())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

impl Object for GoDuration {
    fn type_name(&self) -> &'static str {
        "time.Duration"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        Ok(match name {
            "Seconds" => Value::Float(self.0 as f64 / 1e9),
            "Minutes" => Value::Float(self.0 as f64 / 6e10),
            "Hours" => Value::Float(self.0 as f64 / 3.6e12),
            "String" => Value::Str(wasmon_gofmt::format_duration(self.0)),
            _ => return Err(no_field(self.type_name(), name)),
        })
    }
    fn print(&self) -> Result<String, FuncError> {
        Ok(wasmon_gofmt::format_duration(self.0))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---- Alertmanager's functions ----

/// The functions Alertmanager adds to Go's builtins (0.25's, and the
/// later `trimSpace`, `urlUnescape`, `date`, `tz`, `now`, `since`,
/// `humanizeDuration`).
struct Alertmanager;

const FUNCTIONS: &[&str] = &[
    "toUpper",
    "toLower",
    "title",
    "trimSpace",
    "join",
    "match",
    "reReplaceAll",
    "safeHtml",
    "stringSlice",
    "urlUnescape",
    "date",
    "tz",
    "now",
    "since",
    "humanizeDuration",
];

fn now() -> Time {
    // The host's clock in a plugin; the system's in the SDK's own tests.
    #[cfg(target_arch = "wasm32")]
    let ms = crate::now_ms();
    #[cfg(not(target_arch = "wasm32"))]
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Time {
        unix: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as u32,
        offset: 0,
        zone: "UTC".into(),
    }
}

fn time_arg<'v>(name: &str, v: &'v Value) -> Result<&'v Time, FuncError> {
    match v {
        Value::Object(o) => o.0.as_any().downcast_ref::<GoTime>().map(|t| &t.0),
        _ => None,
    }
    .ok_or_else(|| {
        FuncError::Message(format!(
            "{name} needs a time (e.g. .StartsAt), got {}",
            v.type_name()
        ))
    })
}

impl Library for Alertmanager {
    fn has(&self, name: &str) -> bool {
        FUNCTIONS.contains(&name)
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, FuncError> {
        let arity = |n: usize| wasmon_template::funcs::arity(name, &args, n);
        let string = |v: &Value| match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(_) | Value::Bool(_) | Value::Float(_) => Ok(v.to_string()),
            Value::Object(o) if o.0.as_any().is::<SafeHtml>() => Ok(v.to_string()),
            other => Err(FuncError::Message(format!(
                "{name} needs a string, got {}",
                other.type_name()
            ))),
        };
        Ok(match name {
            "toUpper" | "toLower" | "title" | "trimSpace" => {
                arity(1)?;
                let s = string(&args[0])?;
                Value::Str(match name {
                    "toUpper" => to_upper(&s),
                    "toLower" => to_lower(&s),
                    "trimSpace" => s.trim().to_string(),
                    _ => title(&s),
                })
            }
            "join" => {
                arity(2)?;
                let sep = string(&args[0])?;
                let labels = match &args[1] {
                    Value::Object(o) => o.0.as_any().downcast_ref::<Labels>(),
                    _ => None,
                };
                let values: Vec<String> = match labels {
                    // wasmon's: a label set's values, sorted by name.
                    Some(Labels(l)) => sorted(l).iter().map(|l| l.value.clone()).collect(),
                    None => string_list(&args[1], "join")?,
                };
                Value::Str(values.join(&sep))
            }
            "match" => {
                arity(2)?;
                Value::Bool(re_match(&string(&args[0])?, &string(&args[1])?)?)
            }
            "reReplaceAll" => {
                arity(3)?;
                let (p, r, t) = (string(&args[0])?, string(&args[1])?, string(&args[2])?);
                Value::Str(re_replace_all(&p, &r, &t)?)
            }
            "safeHtml" => {
                arity(1)?;
                Value::object(SafeHtml(string(&args[0])?))
            }
            "stringSlice" => strings(args.iter().map(string).collect::<Result<Vec<_>, _>>()?),
            "urlUnescape" => {
                arity(1)?;
                Value::Str(url_unescape(&string(&args[0])?)?)
            }
            "date" => {
                arity(2)?;
                let layout = string(&args[0])?;
                Value::Str(time_arg(name, &args[1])?.format(&layout))
            }
            "tz" => {
                arity(2)?;
                let zone = string(&args[0])?;
                let t = time_arg(name, &args[1])?;
                match zone.as_str() {
                    // A plugin has no time zone database; its Local is UTC.
                    "" | "UTC" | "Local" => Value::object(GoTime(t.utc())),
                    _ => {
                        return Err(FuncError::Message(format!(
                            "unknown time zone {zone} (plugins know UTC only)"
                        )))
                    }
                }
            }
            "now" => {
                arity(0)?;
                Value::object(GoTime(now()))
            }
            "since" => {
                arity(1)?;
                let t = time_arg(name, &args[0])?;
                let n = now();
                let secs = n.unix.saturating_sub(t.unix);
                let nanos = i64::from(n.nanos) - i64::from(t.nanos);
                Value::object(GoDuration(
                    secs.saturating_mul(1_000_000_000).saturating_add(nanos),
                ))
            }
            "humanizeDuration" => {
                arity(1)?;
                let secs = match &args[0] {
                    Value::Object(o) => match o.0.as_any().downcast_ref::<GoDuration>() {
                        Some(d) => d.0 as f64 / 1e9,
                        None => to_float(&args[0])?,
                    },
                    v => to_float(v)?,
                };
                Value::Str(humanize_duration(secs))
            }
            other => return Err(FuncError::Message(format!("unknown function {other:?}"))),
        })
    }
}

/// `cases.Title(language.AmericanEnglish)`: per word (letters, digits,
/// `_` and apostrophes), the first letter upper-cased and the rest lower-cased.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        // Unicode word breaking keeps `_` and apostrophes inside a word.
        let word_char = c.is_alphanumeric() || matches!(c, '_' | '\'' | '’');
        if word_char && !in_word {
            out.push_str(&to_upper(&c.to_string()));
        } else if word_char {
            out.push_str(&to_lower(&c.to_string()));
        } else {
            out.push(c);
        }
        in_word = word_char;
    }
    out
}

/// Go's `url.QueryUnescape`: `+` is a space, `%XX` a byte; a bad escape
/// is Go's error.
fn url_unescape(s: &str) -> Result<String, FuncError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .filter(|_| b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit());
                let Some(v) = hex else {
                    let bad: String = s[i..].chars().take(3).collect();
                    return Err(FuncError::Message(format!("invalid URL escape {bad:?}")));
                };
                out.push(v);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
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

    /// Plugins read templates as the agent does: Go's text/template
    /// (variables, `with`, `printf`, `and`, bytes for `len`), bounded.
    #[test]
    fn go_dialect_like_the_agent() {
        assert_eq!(
            r("{{ $n := len .Alerts }}{{ with .CommonLabels.service }}{{ . }}:{{ $n }}{{ end }}"),
            "checkout:3"
        );
        assert_eq!(
            r("{{ printf \"%d firing\" (len .Alerts.Firing) }}"),
            "2 firing"
        );
        assert_eq!(
            r("{{ if and .Alerts (eq .Status \"firing\") }}y{{ end }}"),
            "y"
        );
        assert_eq!(r("{{ len \"héllo\" }}"), "6");
        let err = render("{{ range 100000000 }}x{{ end }}", &n())
            .unwrap_err()
            .0;
        assert!(err.contains("evaluation steps"), "{err}");
    }

    /// Alertmanager's default templates render their text: `__subject`
    /// with its trailing space when no other label is common, the text
    /// alert list with `alertname` first.
    #[test]
    fn default_templates_like_alertmanager() {
        assert_eq!(
            r("{{ template \"slack.default.title\" . }}"),
            "[FIRING:2] HighErrorRate (checkout)"
        );
        let mut x = n();
        x.status = AlertStatus::Resolved;
        x.common_labels.retain(|l| l.name == "alertname");
        let t = Template::parse("{{ template \"email.default.subject\" . }}").unwrap();
        assert_eq!(t.render(&x).unwrap(), "[RESOLVED] HighErrorRate ");
        assert_eq!(
            r("{{ template \"slack.default.fallback\" . }}"),
            "[FIRING:2] HighErrorRate (checkout) | http://wasmon:9930/#/alerts?receiver=ops"
        );
        assert_eq!(
            r("{{ template \"slack.default.username\" . }}"),
            "Alertmanager"
        );
        assert_eq!(
            r("{{ template \"__text_alert_list\" .Alerts.Resolved }}"),
            "Labels:\n - alertname = HighErrorRate\n - pod = c\n - service = checkout\n\
             Annotations:\n - summary = errors on c\nSource: http://g\n"
        );
        for name in [
            "__alertmanagerURL",
            "pagerduty.default.instances",
            "opsgenie.default.description",
            "email.default.html",
            "telegram.default.message",
        ] {
            assert!(Set::defaults().defines(name), "{name}");
        }
    }

    /// Alertmanager's data: methods with arguments, Go times, its
    /// functions.
    #[test]
    fn alertmanager_data_and_functions() {
        assert_eq!(
            r("{{ .CommonLabels.Remove .GroupLabels.Names }}|{{ (.CommonLabels.Remove (stringSlice \"service\")).Values }}"),
            "service=checkout|[HighErrorRate]"
        );
        assert_eq!(
            r("{{ .CommonLabels.SortedPairs.Names | join \",\" }} {{ .GroupLabels.SortedPairs }}"),
            "alertname,service [{alertname HighErrorRate}]"
        );
        assert_eq!(
            r("{{ range .Alerts.Firing }}{{ .StartsAt }}|{{ .StartsAt.Format \"15:04 Jan 2\" }}|{{ date \"2006\" .StartsAt }}|{{ .StartsAt.Unix }}{{ break }}{{ end }}"),
            "2026-11-25 08:00:00 +0000 UTC|08:00 Nov 25|2026|1795593600"
        );
        assert_eq!(
            r("{{ (index .Alerts 0).EndsAt.IsZero }} {{ (tz \"UTC\" (index .Alerts 0).StartsAt).Unix }}"),
            "true 1795593600"
        );
        assert_eq!(
            r("{{ reReplaceAll \"(.*)Rate\" \"${1}s\" .CommonLabels.alertname }} {{ match \"^High\" .CommonLabels.alertname }}"),
            "HighErrors true"
        );
        assert_eq!(
            r("{{ title \"hELLO wORLD it's 1st HTTP_server\" }}|{{ trimSpace \"  x \" }}|{{ urlUnescape \"a%20b+c\" }}|{{ humanizeDuration 3725 }}"),
            "Hello World It's 1st Http_server|x|a b c|1h 2m 5s"
        );
        assert_eq!(r("{{ toUpper \"straße\" }}"), "STRAßE");
        let e = render("{{ reReplaceAll \"(\" \"\" \"x\" }}", &n())
            .unwrap_err()
            .0;
        assert!(e.contains("regexp: Compile"), "{e}");
        let e = render("{{ tz \"Europe/Paris\" now }}", &n()).unwrap_err().0;
        assert!(e.contains("unknown time zone Europe/Paris"), "{e}");
        let mut x = n();
        x.receiver = "team.ops (eu)".into();
        assert_eq!(
            render("{{ .Receiver }}", &x).unwrap(),
            "team\\.ops \\(eu\\)"
        );
    }

    /// HTML renders escape what actions print (not the page's text, not
    /// `safeHtml`) and drop the page's comments, as html/template.
    #[test]
    fn html_like_html_template() {
        let mut x = n();
        x.common_labels.push(l("q", "a<b & \"c\" +1"));
        let t = Template::parse("<!-- c --><p>{{ .CommonLabels.q }}</p>{{ safeHtml \"<br>\" }}")
            .unwrap();
        assert_eq!(
            t.render_html(&x).unwrap(),
            "<p>a&lt;b &amp; &#34;c&#34; &#43;1</p><br>"
        );
        assert_eq!(t.render(&x).unwrap(), "<!-- c --><p>a<b & \"c\" +1</p><br>");
        let html = Template::parse("{{ template \"email.default.html\" . }}")
            .unwrap()
            .render_html(&x)
            .unwrap();
        assert!(!html.contains("Mailgun"), "comment kept");
        assert!(
            html.contains(
                "<title>[FIRING:2] HighErrorRate (a&lt;b &amp; &#34;c&#34; &#43;1 checkout)</title>"
            ),
            "{html}"
        );
        assert!(html.contains("pod = a<br"), "{html}");
    }

    /// Users' files come after the defaults: their `define`s are
    /// available and replace a default of the same name; an empty one
    /// does not; a file that does not parse is named.
    #[test]
    fn users_files_extend_and_override_the_defaults() {
        let set = Set::with_files([
            ("a.tmpl", "{{ define \"mine\" }}M:{{ .Status }}{{ end }}{{ define \"__alertmanager\" }}Ops{{ end }}"),
            ("b.tmpl", "{{ define \"__alertmanager\" }}  {{ end }}"),
        ])
        .unwrap();
        let t = set
            .parse("{{ template \"mine\" . }} {{ template \"slack.default.username\" . }}")
            .unwrap();
        assert_eq!(t.render(&n()).unwrap(), "M:firing Ops");
        let json = r#"{"url": "x", "__templates": [{"name": "c.tmpl", "text": "{{ define \"x\" }}X{{ end }}"}]}"#;
        let set = Set::from_config_json(json).unwrap();
        assert_eq!(
            set.parse("{{ template \"x\" }}")
                .unwrap()
                .render(&n())
                .unwrap(),
            "X"
        );
        let e = Set::with_files([("bad.tmpl", "{{ define \"x\" }}")])
            .unwrap_err()
            .0;
        assert!(e.contains("bad.tmpl"), "{e}");
        let e = Set::with_files([("f.tmpl", "{{ define \"y\" }}{{ .Nope }}{{ end }}")])
            .unwrap()
            .parse("{{ template \"y\" . }}")
            .unwrap()
            .render(&n())
            .unwrap_err()
            .0;
        assert!(e.starts_with("template: f.tmpl:1:"), "{e}");
    }
}
