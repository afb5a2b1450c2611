//! Prometheus' template library for alert label and annotation templates,
//! on the shared Go text/template engine (`wasmon-template`): the functions
//! Prometheus registers (`query`, `humanize*`, `label`/`value`/`strvalue`/
//! `sortByLabel`, `reReplaceAll`, `externalURL`, `pathPrefix`, `args`,
//! `safeHtml`, `title`/`toUpper`/`toLower`, `match`, `parseDuration`,
//! `toTime`, ...) and the data an alert template sees (`$labels`,
//! `$externalLabels`, `$externalURL`, `$value`).
//!
//! Values print like Go's `fmt` `%v` (floats in the shortest `%g` form, a
//! missing map key as `<no value>`), so annotations read the same as in
//! Prometheus.

use std::collections::BTreeMap;

use wasmon_template::funcs::{
    arity, html_escape, humanize_duration, re_match, re_replace_all, to_lower, to_upper,
};
use wasmon_template::{
    go_sprint, query_escape, to_float, FuncError, Funcs, Library, Template, Value,
};

use super::error::RuleEvalError;
use crate::model::Labels;

/// A template error (parse or execution), with Go's text.
pub type TemplateError = wasmon_template::Error;

/// A query sample as templates see it: Prometheus' `sample` struct with
/// `.Labels` and `.Value` (printed `{map[...] value}`).
pub fn sample_value(labels: &Labels, v: f64) -> Value {
    Value::Struct(vec![
        ("Labels".to_string(), labels_value(labels)),
        ("Value".to_string(), Value::Float(v)),
    ])
}

/// Go's `%.4g`, the humanizers' precision.
fn g4(v: f64) -> String {
    wasmon_gofmt::format_float(v, 'g', 4)
}

fn humanize(v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut v = v;
    let mut prefix = "";
    if v.abs() >= 1.0 {
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
    } else {
        for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
            if v.abs() >= 1.0 {
                break;
            }
            prefix = p;
            v *= 1000.0;
        }
    }
    format!("{}{prefix}", g4(v))
}

fn humanize1024(v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return g4(v);
    }
    let mut v = v;
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", g4(v))
}

/// Go's `time.Time.String()` of a UTC time from float seconds.
fn go_time_string(v: f64) -> Result<String, FuncError> {
    if v.is_nan() || v.is_infinite() {
        return Ok(g4(v));
    }
    // Prometheus goes through model.Time: millisecond precision.
    let ms = ((v * 1e9) as i64) / 1_000_000;
    let t = chrono::DateTime::from_timestamp_millis(ms).ok_or_else(|| {
        FuncError::Message(format!(
            "{v} cannot be represented as a nanoseconds timestamp"
        ))
    })?;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let ns = t.timestamp_subsec_nanos();
    if ns != 0 {
        let f = format!("{ns:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    Ok(s)
}

/// Prometheus' functions, registered by name; [`FuncContext`] answers them.
const PROM_FUNCS: &[&str] = &[
    "query",
    "first",
    "label",
    "value",
    "strvalue",
    "sortByLabel",
    "humanize",
    "humanize1024",
    "humanizeDuration",
    "humanizePercentage",
    "humanizeTimestamp",
    "toTime",
    "toDuration",
    "now",
    "title",
    "toUpper",
    "toLower",
    "stripPort",
    "stripDomain",
    "match",
    "reReplaceAll",
    "graphLink",
    "tableLink",
    "parseDuration",
    "urlQueryEscape",
    "args",
    "safeHtml",
    "externalURL",
    "pathPrefix",
    "tmpl",
];

/// What Prometheus' template functions need from the outside; it is the
/// library registered onto the engine.
#[derive(Default)]
pub struct FuncContext<'a> {
    /// Runs an instant query at the evaluation time: (labels, value) pairs.
    #[allow(clippy::type_complexity)]
    pub query: Option<&'a dyn Fn(&str) -> Result<Vec<(Labels, f64)>, RuleEvalError>>,
    /// The external URL (for `externalURL`, `pathPrefix`, links).
    pub external_url: String,
    /// Evaluation time in ms (for `now`).
    pub now_ms: i64,
}

impl Library for FuncContext<'_> {
    fn has(&self, name: &str) -> bool {
        PROM_FUNCS.contains(&name)
    }

    fn call(&self, name: &str, a: Vec<Value>) -> Result<Value, FuncError> {
        let want = |n: usize| arity(name, &a, n);
        let s = |v: &Value| -> String { v.to_string() };
        Ok(match name {
            // Escaped as `html` does (Prometheus marks the text safe instead).
            "safeHtml" => Value::Str(html_escape(&go_sprint(&a))),
            "urlQueryEscape" => Value::Str(query_escape(&go_sprint(&a))),
            "query" => {
                want(1)?;
                let q = s(&a[0]);
                let Some(f) = self.query else {
                    return Err(FuncError::message("query is not available in this context"));
                };
                let res = f(&q).map_err(|e| FuncError::Message(e.to_string()))?;
                Value::List(res.iter().map(|(l, v)| sample_value(l, *v)).collect())
            }
            "first" => {
                want(1)?;
                match &a[0] {
                    Value::List(l) if !l.is_empty() => l[0].clone(),
                    Value::List(_) => {
                        return Err(FuncError::message(
                            "first() called on vector with no elements",
                        ))
                    }
                    o => {
                        return Err(FuncError::Message(format!(
                            "wrong type for value; expected queryResult; got {}",
                            o.type_name()
                        )))
                    }
                }
            }
            "label" => {
                want(2)?;
                let l = s(&a[0]);
                match &a[1] {
                    v @ Value::Struct(_) => match v.field("Labels") {
                        Some(Value::Map(lm)) => {
                            lm.get(&l).cloned().unwrap_or(Value::Str(String::new()))
                        }
                        _ => Value::Str(String::new()),
                    },
                    _ => {
                        return Err(FuncError::message(
                            "wrong type for value; expected *template.sample",
                        ))
                    }
                }
            }
            "value" => {
                want(1)?;
                match &a[0] {
                    v @ Value::Struct(_) => v.field("Value").cloned().unwrap_or(Value::Nil),
                    _ => {
                        return Err(FuncError::message(
                            "wrong type for value; expected *template.sample",
                        ))
                    }
                }
            }
            "strvalue" => {
                want(1)?;
                match &a[0] {
                    v @ Value::Struct(_) => match v.field("Labels") {
                        Some(Value::Map(lm)) => lm
                            .get("__value__")
                            .cloned()
                            .unwrap_or(Value::Str(String::new())),
                        _ => Value::Str(String::new()),
                    },
                    _ => {
                        return Err(FuncError::message(
                            "wrong type for value; expected *template.sample",
                        ))
                    }
                }
            }
            "sortByLabel" => {
                want(2)?;
                let l = s(&a[0]);
                let Value::List(mut v) = a[1].clone() else {
                    return Err(FuncError::message(
                        "wrong type for value; expected queryResult",
                    ));
                };
                let key = |x: &Value| -> String {
                    if let Some(Value::Map(lm)) = x.field("Labels") {
                        return lm.get(&l).map(|v| v.to_string()).unwrap_or_default();
                    }
                    String::new()
                };
                v.sort_by_key(key);
                Value::List(v)
            }
            "humanize" => {
                want(1)?;
                Value::Str(humanize(to_float(&a[0])?))
            }
            "humanize1024" => {
                want(1)?;
                Value::Str(humanize1024(to_float(&a[0])?))
            }
            "humanizeDuration" => {
                want(1)?;
                Value::Str(humanize_duration(to_float(&a[0])?))
            }
            "humanizePercentage" => {
                want(1)?;
                Value::Str(format!("{}%", g4(to_float(&a[0])? * 100.0)))
            }
            "humanizeTimestamp" | "toTime" => {
                want(1)?;
                Value::Str(go_time_string(to_float(&a[0])?)?)
            }
            "toDuration" => {
                want(1)?;
                let v = to_float(&a[0])?;
                // Prometheus: time.Duration(v * 1e9).String().
                Value::Str(wasmon_gofmt::format_duration((v * 1e9) as i64))
            }
            "now" => {
                want(0)?;
                Value::Float(self.now_ms as f64 / 1000.0)
            }
            "title" => {
                want(1)?;
                let mut out = String::new();
                let mut prev_letter = false;
                for ch in s(&a[0]).chars() {
                    if !prev_letter {
                        out.extend(ch.to_uppercase());
                    } else {
                        out.push(ch);
                    }
                    prev_letter = ch.is_alphanumeric() || ch == '\'' || ch == '_';
                }
                Value::Str(out)
            }
            "toUpper" => {
                want(1)?;
                Value::Str(to_upper(&s(&a[0])))
            }
            "toLower" => {
                want(1)?;
                Value::Str(to_lower(&s(&a[0])))
            }
            "stripPort" => {
                want(1)?;
                let h = s(&a[0]);
                Value::Str(split_host_port(&h).map(|(h, _)| h).unwrap_or(h))
            }
            "stripDomain" => {
                want(1)?;
                let h = s(&a[0]);
                let (host, port) = match split_host_port(&h) {
                    Some((host, port)) => (host, Some(port)),
                    None => (h.clone(), None),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    Value::Str(h)
                } else {
                    let short = host.split('.').next().unwrap_or("").to_string();
                    Value::Str(match port {
                        Some(p) => format!("{short}:{p}"),
                        None => short,
                    })
                }
            }
            "match" => {
                want(2)?;
                Value::Bool(re_match(&s(&a[0]), &s(&a[1]))?)
            }
            "reReplaceAll" => {
                want(3)?;
                Value::Str(re_replace_all(&s(&a[0]), &s(&a[1]), &s(&a[2]))?)
            }
            "graphLink" => {
                want(1)?;
                Value::Str(format!(
                    "/graph?g0.expr={}&g0.tab=0",
                    query_escape(&s(&a[0]))
                ))
            }
            "tableLink" => {
                want(1)?;
                Value::Str(format!(
                    "/graph?g0.expr={}&g0.tab=1",
                    query_escape(&s(&a[0]))
                ))
            }
            "parseDuration" => {
                want(1)?;
                let d = crate::model::duration::parse(&s(&a[0]))
                    .map_err(|e| FuncError::Message(e.to_string()))?;
                Value::Float(d.as_secs_f64())
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, v) in a.into_iter().enumerate() {
                    m.insert(format!("arg{i}"), v);
                }
                Value::Map(m)
            }
            "externalURL" => {
                want(0)?;
                Value::Str(self.external_url.clone())
            }
            "pathPrefix" => {
                want(0)?;
                let u = &self.external_url;
                let path = u
                    .split_once("://")
                    .map(|(_, r)| r.find('/').map(|i| &r[i..]).unwrap_or(""))
                    .unwrap_or("");
                Value::Str(path.to_string())
            }
            "tmpl" => return Err(FuncError::message("tmpl is only available in consoles")),
            other => return Err(FuncError::Undefined(other.to_string())),
        })
    }
}

fn split_host_port(s: &str) -> Option<(String, String)> {
    if let Some(r) = s.strip_prefix('[') {
        let (h, p) = r.split_once("]:")?;
        return Some((h.to_string(), p.to_string()));
    }
    let (h, p) = s.rsplit_once(':')?;
    if h.contains(':') {
        return None;
    }
    Some((h.to_string(), p.to_string()))
}

/// What an alert's label and annotation templates see.
#[derive(Debug, Clone, Default)]
pub struct AlertTemplateData {
    pub labels: Labels,
    pub external_labels: Labels,
    pub external_url: String,
    pub value: f64,
}

fn labels_value(l: &Labels) -> Value {
    Value::from_str_map(l.iter().map(|l| (l.name.as_str(), l.value.as_str())))
}

/// Variables predefined for alert templates (Prometheus prepends
/// `{{$labels := .Labels}}...` to every template).
pub const ALERT_VARS: &[&str] = &["$labels", "$externalLabels", "$externalURL", "$value"];

/// Parses an alert template as Prometheus validates rule files.
pub fn check_alert_template(name: &str, text: &str) -> Result<(), TemplateError> {
    let prometheus = FuncContext::default();
    let funcs = Funcs::builtins().with(&prometheus);
    Template::parse(&format!("__alert_{name}"), text, ALERT_VARS, &funcs).map(|_| ())
}

/// Expands one alert label or annotation template. Errors are returned
/// as `<error expanding template: ...>` text, as Prometheus does.
pub fn expand_alert_template(
    rule_name: &str,
    text: &str,
    data: &AlertTemplateData,
    funcs: &FuncContext<'_>,
) -> String {
    // Fast path: no action at all.
    if !text.contains("{{") {
        return text.to_string();
    }
    match try_expand_alert_template(rule_name, text, data, funcs) {
        Ok(s) => s,
        Err(e) => format!("<error expanding template: {e}>"),
    }
}

/// Like [`expand_alert_template`] but returns the error.
pub fn try_expand_alert_template(
    rule_name: &str,
    text: &str,
    data: &AlertTemplateData,
    funcs: &FuncContext<'_>,
) -> Result<String, TemplateError> {
    let funcs = Funcs::builtins().with(funcs);
    let t = Template::parse(&format!("__alert_{rule_name}"), text, ALERT_VARS, &funcs)?;
    let labels = labels_value(&data.labels);
    let ext = labels_value(&data.external_labels);
    let url = Value::Str(data.external_url.clone());
    let value = Value::Float(data.value);
    let mut root = BTreeMap::new();
    root.insert("Labels".to_string(), labels.clone());
    root.insert("ExternalLabels".to_string(), ext.clone());
    root.insert("ExternalURL".to_string(), url.clone());
    root.insert("Value".to_string(), value.clone());
    let vars = [
        ("$labels", labels),
        ("$externalLabels", ext),
        ("$externalURL", url),
        ("$value", value),
    ];
    t.execute(&Value::Map(root), &vars, &funcs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmon_template::MAX_NESTING;

    fn run(text: &str, labels: &[(&str, &str)], value: f64) -> String {
        let data = AlertTemplateData {
            labels: Labels::from_pairs(labels.iter().copied()),
            external_labels: Labels::from_pairs([("cluster", "eu1")]),
            external_url: "http://prom.example/x".into(),
            value,
        };
        let q = |q: &str| -> Result<Vec<(Labels, f64)>, RuleEvalError> {
            match q {
                "up" => Ok(vec![
                    (
                        Labels::from_pairs([("__name__", "up"), ("instance", "b")]),
                        0.0,
                    ),
                    (
                        Labels::from_pairs([("__name__", "up"), ("instance", "a")]),
                        1.0,
                    ),
                ]),
                _ => Ok(vec![]),
            }
        };
        let funcs = FuncContext {
            query: Some(&q),
            external_url: data.external_url.clone(),
            now_ms: 1_000_000,
        };
        expand_alert_template("Test", text, &data, &funcs)
    }

    #[test]
    fn humanizers() {
        assert_eq!(humanize(1234567.0), "1.235M");
        assert_eq!(humanize(0.001234), "1.234m");
        assert_eq!(humanize(0.0), "0");
        assert_eq!(humanize(12.0), "12");
        assert_eq!(humanize1024(1048576.0), "1Mi");
        assert_eq!(humanize1024(1.0), "1");
        assert_eq!(humanize_duration(3661.0), "1h 1m 1s");
        assert_eq!(humanize_duration(90061.0), "1d 1h 1m 1s");
        assert_eq!(humanize_duration(1.5), "1.5s");
        assert_eq!(humanize_duration(0.0012), "1.2ms");
        assert_eq!(humanize_duration(0.0), "0s");
        assert_eq!(
            go_time_string(1435065584.128).unwrap(),
            "2015-06-23 13:19:44.128 +0000 UTC"
        );
        assert_eq!(
            go_time_string(0.0).unwrap(),
            "1970-01-01 00:00:00 +0000 UTC"
        );
    }

    #[test]
    fn variables_and_functions() {
        let l = [("instance", "host:9090"), ("job", "node")];
        assert_eq!(
            run("{{ $labels.instance }} down", &l, 1.0),
            "host:9090 down"
        );
        assert_eq!(run("{{ .Labels.job }}/{{ $value }}", &l, 0.25), "node/0.25");
        assert_eq!(run("{{ $labels.nope }}", &l, 1.0), "<no value>");
        assert_eq!(
            run("{{ $externalLabels.cluster }} {{ $externalURL }}", &l, 1.0),
            "eu1 http://prom.example/x"
        );
        assert_eq!(
            run("{{ $value | humanizePercentage }}", &l, 0.1234),
            "12.34%"
        );
        assert_eq!(run("{{ printf \"%.2f\" $value }}", &l, 1.23456), "1.23");
        assert_eq!(run("{{ printf \"%d items\" 3 }}", &l, 0.0), "3 items");
        assert_eq!(run("{{ $labels.job | toUpper }}", &l, 0.0), "NODE");
        assert_eq!(run("{{ title \"hello world\" }}", &l, 0.0), "Hello World");
        assert_eq!(
            run("{{ reReplaceAll \":.*\" \"\" $labels.instance }}", &l, 0.0),
            "host"
        );
        assert_eq!(run("{{ stripPort $labels.instance }}", &l, 0.0), "host");
        assert_eq!(
            run(
                "{{ if gt $value 1.0 }}high{{ else if eq $value 1.0 }}one{{ else }}low{{ end }}",
                &l,
                1.0
            ),
            "one"
        );
        assert_eq!(
            run(
                "{{ if and (eq $labels.job \"node\") (not false) }}y{{ end }}",
                &l,
                0.0
            ),
            "y"
        );
        assert_eq!(run("{{ len $labels }}", &l, 0.0), "2");
        assert_eq!(run("{{ index $labels \"job\" }}", &l, 0.0), "node");
        assert_eq!(
            run("{{ with $labels.job }}[{{ . }}]{{ end }}", &l, 0.0),
            "[node]"
        );
        assert_eq!(
            run(
                "{{ range $k, $v := $labels }}{{ $k }}={{ $v }};{{ end }}",
                &l,
                0.0
            ),
            "instance=host:9090;job=node;"
        );
        assert_eq!(
            run("{{ range query \"up\" | sortByLabel \"instance\" }}{{ .Labels.instance }}:{{ .Value }} {{ end }}", &l, 0.0),
            "a:1 b:0 "
        );
        assert_eq!(run("{{ query \"up\" | first | value }}", &l, 0.0), "0");
        assert_eq!(
            run("{{ query \"up\" | first | label \"instance\" }}", &l, 0.0),
            "b"
        );
        assert_eq!(
            run(
                "{{ with query \"nothing\" }}x{{ else }}none{{ end }}",
                &l,
                0.0
            ),
            "none"
        );
        assert_eq!(run("a {{- \" b \" -}} c", &l, 0.0), "a b c");
        assert_eq!(run("{{/* comment */}}x", &l, 0.0), "x");
        assert_eq!(run("{{ $x := 1 }}{{ $x = 2 }}{{ $x }}", &l, 0.0), "2");
        assert_eq!(run("{{ 1234567.0 | humanize }}", &l, 0.0), "1.235M");
        assert_eq!(
            run("{{ \"3600\" | humanizeDuration }}", &l, 0.0),
            "1h 0m 0s"
        );
        assert_eq!(
            run(
                "{{ define \"x\" }}[{{ . }}]{{ end }}{{ template \"x\" 5 }}",
                &l,
                0.0
            ),
            "[5]"
        );
    }

    #[test]
    fn errors() {
        assert!(check_alert_template("A", "{{ nope }}")
            .unwrap_err()
            .to_string()
            .contains("function \"nope\" not defined"));
        assert!(check_alert_template("A", "{{ if 1 }}").is_err());
        assert!(check_alert_template("A", "{{ $undefined }}").is_err());
        assert!(check_alert_template("A", "{{ $.labels.service }}").is_ok());
        let out = run("{{ query \"nothing\" | first }}", &[], 0.0);
        assert!(
            out.starts_with("<error expanding template: template: __alert_Test:1: executing"),
            "{out}"
        );
        assert!(
            out.contains("first() called on vector with no elements"),
            "{out}"
        );
    }

    fn on_worker_stack(f: impl FnOnce() + Send + 'static) {
        // A tokio worker's stack: rule evaluation expands templates there.
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    /// Each shape the parser and executor recurse on: at the limit it runs
    /// (on a worker's stack, debug build included), one level more is a
    /// parse error naming the limit and the line.
    #[test]
    fn nesting_is_bounded() {
        let shapes = |n: usize| {
            [
                format!("{}x{}", "{{if true}}".repeat(n), "{{end}}".repeat(n)),
                format!("{}x{}", "{{range 1}}".repeat(n), "{{end}}".repeat(n)),
                format!("{}x{}", "{{with 1}}".repeat(n), "{{end}}".repeat(n)),
                format!(
                    "{{{{if false}}}}{}x{{{{end}}}}",
                    "{{else if false}}".repeat(n - 1)
                ),
                format!("{{{{{}1{}}}}}", "(".repeat(n), ")".repeat(n)),
                format!(
                    "{{{{define \"d\"}}}}{}x{}{{{{end}}}}{{{{template \"d\"}}}}",
                    "{{if true}}".repeat(n - 1),
                    "{{end}}".repeat(n - 1)
                ),
            ]
        };
        on_worker_stack(move || {
            for t in shapes(MAX_NESTING) {
                let out = run(&t, &[], 1.0);
                assert!(!out.contains("error"), "{}: {out}", &t[..30]);
            }
            for t in shapes(MAX_NESTING + 1).into_iter().chain(shapes(50_000)) {
                let e = check_alert_template("A", &t).unwrap_err().to_string();
                assert!(
                    e.contains(":1: nested too deeply: more than 100 levels of actions, defines and parentheses"),
                    "{}: {e}",
                    &t[..30]
                );
            }
        });
    }

    /// A `define` calling itself, directly or through another, ends with
    /// Go's error (at wasmon's depth) instead of overflowing the stack,
    /// also when each call adds levels of its own.
    #[test]
    fn recursive_templates_end_with_an_error() {
        on_worker_stack(|| {
            for t in [
                "{{define \"a\"}}{{template \"a\" .}}{{end}}{{template \"a\" .}}".to_string(),
                "{{define \"a\"}}{{template \"b\"}}{{end}}{{define \"b\"}}x{{template \"a\"}}{{end}}{{template \"a\"}}".to_string(),
                format!(
                    "{{{{define \"a\"}}}}{}{{{{template \"a\"}}}}{}{{{{end}}}}{{{{template \"a\"}}}}",
                    "{{if true}}".repeat(MAX_NESTING - 1),
                    "{{end}}".repeat(MAX_NESTING - 1)
                ),
            ] {
                let out = run(&t, &[], 1.0);
                assert!(out.contains("exceeded maximum template depth (200)"), "{out}");
            }
        });
    }
}
