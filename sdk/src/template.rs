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
//! Functions: Go's builtins (`len X` of alerts, labels or a string in
//! bytes, `index LABELS "name"`, `eq`, `ne`, `gt`, `lt`, `ge`, `le`, `not`,
//! ...) and Alertmanager's `toUpper`, `toLower`, `title` (first letter of
//! each word upper-cased), `trimSpace`, `join SEP LABELS` (the values,
//! sorted by name).
//!
//! ```text
//! [{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ len .Alerts.Firing }}{{ end }}] {{ .GroupLabels.alertname }}
//! {{ range .Alerts }}- {{ .Labels.instance }}: {{ .Annotations.summary }}
//! {{ end }}
//! ```

use std::any::Any;
use std::fmt;

use wasmon_template::{ErrorKind, FuncError, Funcs, Library, Object, Value};

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

/// The name parse and render errors give the template.
const NAME: &str = "notification";

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    tree: wasmon_template::Template,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let funcs = Funcs::builtins().with(&Alertmanager);
        Ok(Template {
            tree: wasmon_template::Template::parse(NAME, text, &[], &funcs)?,
        })
    }

    /// Renders the template against `notification`.
    pub fn render(&self, notification: &Notification) -> Result<String, Error> {
        let funcs = Funcs::builtins().with(&Alertmanager);
        let root = Value::object(Root(notification.clone()));
        Ok(self.tree.execute(&root, &[], &funcs)?)
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

impl Object for Root {
    fn type_name(&self) -> &'static str {
        "the notification"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        let n = &self.0;
        Ok(match name {
            "Status" => str_value(alertmanager::status(n.status)),
            "Receiver" => str_value(&n.receiver),
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
            "StartsAt" => str_value(&a.starts_at),
            "EndsAt" => str_value(&a.ends_at),
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

impl Object for Labels {
    fn type_name(&self) -> &'static str {
        "a label set"
    }
    fn field(&self, name: &str) -> Result<Value, FuncError> {
        Ok(str_value(alertmanager::label(&self.0, name).unwrap_or("")))
    }
    /// `a=1, b=2`, sorted by name.
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

// ---- Alertmanager's functions ----

/// The functions Alertmanager adds to Go's builtins (the ones wasmon
/// plugins use; no regular expressions, to keep plugins small).
struct Alertmanager;

const FUNCTIONS: &[&str] = &["toUpper", "toLower", "title", "trimSpace", "join"];

impl Library for Alertmanager {
    fn has(&self, name: &str) -> bool {
        FUNCTIONS.contains(&name)
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value, FuncError> {
        let arity = |n: usize| wasmon_template::funcs::arity(name, &args, n);
        let string = |v: &Value| match v {
            Value::Str(s) => Ok(s.clone()),
            Value::Int(_) | Value::Bool(_) | Value::Float(_) => Ok(v.to_string()),
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
                    "toUpper" => s.to_uppercase(),
                    "toLower" => s.to_lowercase(),
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
                let Some(Labels(l)) = labels else {
                    return Err(FuncError::Message(format!(
                        "join of {}",
                        args[1].type_name()
                    )));
                };
                let values: Vec<&str> = sorted(l).iter().map(|l| l.value.as_str()).collect();
                Value::Str(values.join(&sep))
            }
            other => return Err(FuncError::Message(format!("unknown function {other:?}"))),
        })
    }
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
}
