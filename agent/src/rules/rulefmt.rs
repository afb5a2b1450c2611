//! Prometheus rule files (`groups:` YAML), loaded unchanged and validated
//! like Prometheus' `model/rulefmt`: unique group names, `record` xor
//! `alert`, `expr` present and valid PromQL, valid label names, templates
//! that parse. Errors name the file and, where it can be found, the line
//! and column.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::template;
use crate::model::duration;

/// How strictly names are checked.
#[derive(Debug, Clone, Default)]
pub struct ParseOpts {
    /// Ignore unknown fields instead of rejecting them (promtool's
    /// `--ignore-unknown-fields`).
    pub ignore_unknown_fields: bool,
    /// Legacy (pre-UTF-8) name validation: label names must match
    /// `[a-zA-Z_][a-zA-Z0-9_]*`, metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    pub legacy_names: bool,
}

/// One error found in a rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleError {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (0, _) => write!(f, "{}: {}", self.file, self.message),
            (l, 0) => write!(f, "{}:{l}: {}", self.file, self.message),
            (l, c) => write!(f, "{}:{l}:{c}: {}", self.file, self.message),
        }
    }
}

/// All errors of one file.
#[derive(Debug, Clone)]
pub struct RuleErrors(pub Vec<RuleError>);

impl std::fmt::Display for RuleErrors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RuleErrors {}

/// A parsed rule file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleGroups {
    pub groups: Vec<RuleGroup>,
}

/// One `groups:` entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleGroup {
    pub name: String,
    /// `None`: the global evaluation interval.
    pub interval: Option<Duration>,
    /// 0 = no limit.
    pub limit: usize,
    pub query_offset: Option<Duration>,
    /// Labels added to every rule of the group (rule labels win).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleDef>,
}

/// Recording or alerting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    Record(String),
    Alert(String),
}

/// One rule as written.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub kind: RuleKind,
    pub expr: String,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl RuleDef {
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Record(n) | RuleKind::Alert(n) => n,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Option<Vec<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    query_offset: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    rules: Option<Vec<RawRule>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<String>,
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    expr: Option<String>,
    #[serde(default, rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn legacy_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_' || ch == ':')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':')
}

fn valid_label_name(n: &str, opts: &ParseOpts) -> bool {
    if opts.legacy_names {
        crate::model::is_legacy_label_name(n)
    } else {
        !n.is_empty()
    }
}

/// Finds the `nth` (0-based) line whose trimmed text, after an optional
/// `- `, starts with `key:` and contains `value` (best effort: the YAML
/// parser does not hand out positions of validated nodes).
fn locate(text: &str, key: &str, value: &str, nth: usize) -> (usize, usize) {
    let mut seen = 0;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let t2 = t.strip_prefix("- ").map(str::trim_start).unwrap_or(t);
        if let Some(rest) = t2.strip_prefix(key) {
            if rest.trim_start().starts_with(':') && rest.contains(value) {
                if seen == nth {
                    let col = line.len() - t2.len() + 1;
                    return (i + 1, col);
                }
                seen += 1;
            }
        }
    }
    (0, 0)
}

/// Reads and parses a rule file.
pub fn parse_file(path: &Path, opts: &ParseOpts) -> Result<RuleGroups, RuleErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        RuleErrors(vec![RuleError {
            file: file.clone(),
            line: 0,
            column: 0,
            message: e.to_string(),
        }])
    })?;
    parse(&text, &file, opts)
}

/// Open `[`/`{` counted as plain text (so quoted ones count too): at most
/// this many at once. serde_norway refuses nesting past 128 levels anyway,
/// but libyaml's scanner first takes time quadratic in the depth of flow
/// collections (50,000 `[` took 40 s in a debug build). Strings in real rule
/// files (PromQL, regexes) leave few brackets open.
const MAX_OPEN_BRACKETS: usize = 1000;

fn check_flow_nesting(text: &str, file: &str) -> Result<(), RuleError> {
    let (mut open, mut line, mut line_start) = (0usize, 1, 0);
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'[' | b'{' => open += 1,
            b']' | b'}' => open = open.saturating_sub(1),
            b'\n' => (line, line_start) = (line + 1, i + 1),
            _ => {}
        }
        if open > MAX_OPEN_BRACKETS {
            return Err(RuleError {
                file: file.to_string(),
                line,
                column: i - line_start + 1,
                message: format!("nested too deeply: more than {MAX_OPEN_BRACKETS} open brackets"),
            });
        }
    }
    Ok(())
}

fn yaml_error(file: &str, e: &serde_norway::Error) -> RuleError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    let mut message = e.to_string();
    // serde_norway appends " at line L column C"; we print it in front.
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    RuleError {
        file: file.to_string(),
        line,
        column,
        message,
    }
}

fn strip_unknown(v: &mut serde_norway::Value) {
    use serde_norway::Value as V;
    fn keep(m: &mut serde_norway::Mapping, keys: &[&str]) {
        m.retain(|k, _| k.as_str().is_some_and(|k| keys.contains(&k)));
    }
    let V::Mapping(top) = v else { return };
    keep(top, &["groups"]);
    if let Some(V::Sequence(groups)) = top.get_mut("groups") {
        for g in groups {
            if let V::Mapping(gm) = g {
                keep(
                    gm,
                    &[
                        "name",
                        "interval",
                        "limit",
                        "query_offset",
                        "labels",
                        "rules",
                    ],
                );
                if let Some(V::Sequence(rules)) = gm.get_mut("rules") {
                    for r in rules {
                        if let V::Mapping(rm) = r {
                            keep(
                                rm,
                                &[
                                    "record",
                                    "alert",
                                    "expr",
                                    "for",
                                    "keep_firing_for",
                                    "labels",
                                    "annotations",
                                ],
                            );
                        }
                    }
                }
            }
        }
    }
}

/// Parses rule file text; `file` names it in errors.
pub fn parse(text: &str, file: &str, opts: &ParseOpts) -> Result<RuleGroups, RuleErrors> {
    check_flow_nesting(text, file).map_err(|e| RuleErrors(vec![e]))?;
    // Typed parse straight from the text first: its errors carry positions.
    let direct: Result<RawFile, _> = serde_norway::from_str(text);
    let raw = match direct {
        Ok(r) if !opts.ignore_unknown_fields => r,
        direct => {
            // Merge keys (`<<: *anchor`) and ignored unknown fields need the
            // generic value first.
            let mut v: serde_norway::Value = match serde_norway::from_str(text) {
                Ok(v) => v,
                Err(e) => return Err(RuleErrors(vec![yaml_error(file, &e)])),
            };
            if let Err(e) = v.apply_merge() {
                return Err(RuleErrors(vec![yaml_error(file, &e)]));
            }
            if opts.ignore_unknown_fields {
                strip_unknown(&mut v);
            }
            if v.is_null() {
                return Ok(RuleGroups::default());
            }
            // Back through text: plain scalars (`expr: 1`) then read as
            // strings, as they do from the original text.
            let again =
                serde_norway::to_string(&v).map_err(|e| RuleErrors(vec![yaml_error(file, &e)]))?;
            match serde_norway::from_str::<RawFile>(&again) {
                Ok(r) => r,
                Err(e) => {
                    return Err(RuleErrors(vec![match direct {
                        Err(d) if d.location().is_some() => yaml_error(file, &d),
                        _ => yaml_error(file, &e),
                    }]))
                }
            }
        }
    };
    let mut errs = Vec::new();
    let mut out = RuleGroups::default();
    let mut names = HashSet::new();
    let mut name_seen: BTreeMap<String, usize> = BTreeMap::new();
    for g in raw.groups.unwrap_or_default() {
        let gname = g.name.clone().unwrap_or_default();
        let nth = *name_seen.get(&gname).unwrap_or(&0);
        name_seen.insert(gname.clone(), nth + 1);
        let (gl, gc) = locate(text, "name", &gname, nth);
        let gerr = |msg: String, errs: &mut Vec<RuleError>| {
            errs.push(RuleError {
                file: file.to_string(),
                line: gl,
                column: gc,
                message: msg,
            })
        };
        if gname.is_empty() {
            gerr("Groupname must not be empty".into(), &mut errs);
        }
        if !names.insert(gname.clone()) {
            gerr(
                format!("groupname: \"{gname}\" is repeated in the same file"),
                &mut errs,
            );
        }
        let dur = |s: &Option<String>, what: &str, errs: &mut Vec<RuleError>| match s {
            None => None,
            Some(s) => match duration::parse(s) {
                Ok(d) => Some(d),
                Err(e) => {
                    errs.push(RuleError {
                        file: file.to_string(),
                        line: gl,
                        column: gc,
                        message: format!("group \"{gname}\": {what}: {e}"),
                    });
                    None
                }
            },
        };
        let interval = dur(&g.interval, "interval", &mut errs);
        let query_offset = dur(&g.query_offset, "query_offset", &mut errs);
        if interval == Some(Duration::ZERO) {
            gerr(
                format!("group \"{gname}\": interval must be > 0"),
                &mut errs,
            );
        }
        let glabels = g.labels.unwrap_or_default();
        for k in glabels.keys() {
            if k == crate::model::METRIC_NAME || !valid_label_name(k, opts) {
                gerr(
                    format!("group \"{gname}\": invalid label name: {k}"),
                    &mut errs,
                );
            }
        }
        let mut group = RuleGroup {
            name: gname.clone(),
            interval,
            limit: g.limit.unwrap_or(0),
            query_offset,
            labels: glabels,
            rules: Vec::new(),
        };
        let mut kind_seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (i, r) in g.rules.unwrap_or_default().into_iter().enumerate() {
            let (key, rname) = match (&r.record, &r.alert) {
                (Some(n), _) => ("record", n.clone()),
                (None, Some(n)) => ("alert", n.clone()),
                (None, None) => ("expr", r.expr.clone().unwrap_or_default()),
            };
            let k = (key.to_string(), rname.clone());
            let nth = *kind_seen.get(&k).unwrap_or(&0);
            kind_seen.insert(k, nth + 1);
            let (line, column) = {
                let (l, c) = locate(text, key, &rname, nth);
                if l == 0 {
                    (gl, gc)
                } else {
                    (l, c)
                }
            };
            let mut rerr = |msg: String| {
                errs.push(RuleError {
                    file: file.to_string(),
                    line,
                    column,
                    message: format!("group \"{gname}\", rule {}, \"{rname}\": {msg}", i + 1),
                })
            };
            let mut ok = true;
            let mut fail = |m: String| {
                ok = false;
                rerr(m)
            };
            let kind = match (&r.record, &r.alert) {
                (Some(_), Some(_)) => {
                    fail("only one of 'record' and 'alert' must be set".into());
                    None
                }
                (None, None) => {
                    fail("one of 'record' or 'alert' must be set".into());
                    None
                }
                (Some(rec), None) => {
                    if rec.is_empty() {
                        fail("one of 'record' or 'alert' must be set".into());
                    }
                    if r.for_.is_some() {
                        fail("invalid field 'for' in recording rule".into());
                    }
                    if r.keep_firing_for.is_some() {
                        fail("invalid field 'keep_firing_for' in recording rule".into());
                    }
                    if r.annotations.as_ref().is_some_and(|a| !a.is_empty()) {
                        fail("invalid field 'annotations' in recording rule".into());
                    }
                    // A PromQL selector written as the name is a common mistake.
                    if rec.contains('{')
                        || rec.contains('}')
                        || (opts.legacy_names && !legacy_metric_name(rec))
                    {
                        fail(format!("invalid recording rule name: {rec}"));
                    }
                    Some(RuleKind::Record(rec.clone()))
                }
                (None, Some(a)) => {
                    if a.is_empty() {
                        fail("one of 'record' or 'alert' must be set".into());
                    }
                    Some(RuleKind::Alert(a.clone()))
                }
            };
            let expr = r.expr.clone().unwrap_or_default();
            if expr.trim().is_empty() {
                fail("field 'expr' must be set in rule".into());
            } else if let Err(e) = crate::promql::parse_query(&expr) {
                fail(format!("could not parse expression: {e}"));
            }
            let labels = r.labels.clone().unwrap_or_default();
            for k in labels.keys() {
                if matches!(kind, Some(RuleKind::Record(_))) && k == crate::model::METRIC_NAME {
                    fail(format!("invalid recording rule label name: {k}"));
                } else if !valid_label_name(k, opts) || k == crate::model::METRIC_NAME {
                    fail(format!("invalid label name: {k}"));
                }
            }
            let annotations = r.annotations.clone().unwrap_or_default();
            for k in annotations.keys() {
                if !valid_label_name(k, opts) {
                    fail(format!("invalid annotation name: {k}"));
                }
            }
            if let Some(RuleKind::Alert(_)) = &kind {
                for (k, v) in labels.iter().chain(annotations.iter()) {
                    if let Err(e) = template::check_alert_template(&rname, v) {
                        fail(format!("msg=template: {k}: {e}"));
                    }
                }
            }
            let parse_d = |s: &Option<String>| match s {
                None => Ok(Duration::ZERO),
                Some(s) => duration::parse(s),
            };
            let for_ = parse_d(&r.for_).unwrap_or_else(|e| {
                fail(format!("for: {e}"));
                Duration::ZERO
            });
            let keep_firing_for = parse_d(&r.keep_firing_for).unwrap_or_else(|e| {
                fail(format!("keep_firing_for: {e}"));
                Duration::ZERO
            });
            if let (true, Some(kind)) = (ok, kind) {
                group.rules.push(RuleDef {
                    kind,
                    expr,
                    for_,
                    keep_firing_for,
                    labels,
                    annotations,
                });
            }
        }
        out.groups.push(group);
    }
    if !errs.is_empty() {
        return Err(RuleErrors(errs));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_have_positions() {
        let e = parse(
            "groups:\n  - name: g\n    rules:\n      - record: x\n        expr: rate(hi)\n",
            "f.yml",
            &ParseOpts::default(),
        )
        .unwrap_err();
        assert_eq!(e.0[0].line, 4, "{e}");
        assert!(e.to_string().contains("could not parse expression"), "{e}");
        let e = parse(
            "groups:\n  - name: g\n    rules:\n      - alert: x\n        expr: up\n        annotation: {}\n",
            "f.yml",
            &ParseOpts::default(),
        )
        .unwrap_err();
        assert!(e.0[0].line == 4 || e.0[0].line == 6, "{e}");
        assert!(e.to_string().contains("annotation"), "{e}");
    }

    #[test]
    fn template_errors_rejected() {
        let e = parse(
            "groups:\n  - name: g\n    rules:\n      - alert: x\n        expr: up\n        annotations:\n          a: '{{ nope }}'\n",
            "f.yml",
            &ParseOpts::default(),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("function \"nope\" not defined"),
            "{e}"
        );
    }
}
