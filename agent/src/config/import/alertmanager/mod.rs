//! alertmanager.yml -> wasmon TOML: `global` defaults, `route`,
//! `inhibit_rules`, `time_intervals`/`mute_time_intervals`, `templates`,
//! and each receiver's integrations as instances of the first-party
//! receiver plugins ([`receivers`]).
//!
//! Alertmanager 0.25's `config/config.go` is the reference: what it refuses
//! is an [`ImportError`] with its message and the line; what wasmon cannot
//! carry is a finding. Route pieces are checked by deserializing them into
//! wasmon's own alerting types, so the imported TOML cannot fail later on
//! something the YAML's line could have named.

mod receivers;

use std::collections::{BTreeMap, BTreeSet};

use super::yaml::{Node, Value};
use super::{Ctx, ImportError};
use crate::alerting::config::{InhibitRuleConfig, RouteConfig, TimeIntervalConfig};

/// Converts an alertmanager.yml document into `out`.
pub fn convert(doc: &Node, ctx: &mut Ctx, out: &mut toml::Table) -> Result<(), ImportError> {
    if !matches!(doc.value, Value::Map(_)) {
        return Err(ctx.error(doc, format!("the document is {}, not a map", doc.kind())));
    }
    for e in doc.map_entries() {
        let key = e.key.as_str().unwrap_or("");
        match key {
            "global"
            | "route"
            | "inhibit_rules"
            | "receivers"
            | "templates"
            | "time_intervals"
            | "mute_time_intervals" => {}
            _ => return Err(unknown_field(ctx, &e.key, "config")),
        }
    }
    let global = Global::read(doc.get("global"), ctx)?;
    if let Some(rt) = &global.resolve_timeout {
        table(out, "global").insert("resolve_timeout".into(), rt.clone().into());
    }

    if let Some(t) = doc.get("templates") {
        let mut globs = Vec::new();
        for item in seq(t, "templates", ctx)? {
            globs.push(toml::Value::String(ctx.path(&string(
                item,
                "templates",
                ctx,
            )?)));
        }
        if !globs.is_empty() {
            out.insert("templates".into(), globs.into());
        }
    }

    let names = receivers::convert(doc.get("receivers"), &global, ctx, out)?;

    // Time intervals first: the route refers to them by name.
    let mut intervals = BTreeSet::new();
    for key in ["mute_time_intervals", "time_intervals"] {
        let Some(list) = doc.get(key) else { continue };
        let mut carried = Vec::new();
        for (i, item) in seq(list, key, ctx)?.iter().enumerate() {
            let ti = time_interval(item, &format!("{key}[{i}]"), ctx)?;
            let name = ti.get("name").and_then(|v| v.as_str()).unwrap_or_default();
            if !intervals.insert(name.to_string()) {
                let what = if key == "time_intervals" {
                    "time interval"
                } else {
                    "mute time interval"
                };
                return Err(ctx.error(item, format!("{what} {name:?} is not unique")));
            }
            carried.push(toml::Value::Table(ti));
        }
        if !carried.is_empty() {
            out.insert(key.into(), carried.into());
        }
    }

    let Some(route_node) = doc.get("route").filter(|r| !r.is_null()) else {
        // Alertmanager: `no route provided in config` (Load), before the
        // receivers are looked at.
        return Err(ctx.error(doc, "no route provided in config"));
    };
    let mut refs = Refs::default();
    let root = route(route_node, "route", 0, ctx, &mut refs)?;
    check_root(route_node, &root, ctx)?;
    for (name, node) in &refs.receivers {
        if !names.contains(name) {
            return Err(ctx.error(node, format!("undefined receiver {name:?} used in route")));
        }
    }
    for (name, node) in &refs.intervals {
        if !intervals.contains(name) {
            return Err(ctx.error(
                node,
                format!("undefined time interval {name:?} used in route"),
            ));
        }
    }
    out.insert("route".into(), root.into());

    if let Some(rules) = doc.get("inhibit_rules") {
        let mut carried = Vec::new();
        for (i, r) in seq(rules, "inhibit_rules", ctx)?.iter().enumerate() {
            carried.push(toml::Value::Table(inhibit_rule(
                r,
                &format!("inhibit_rules[{i}]"),
                ctx,
            )?));
        }
        if !carried.is_empty() {
            out.insert("inhibit_rules".into(), carried.into());
        }
    }
    Ok(())
}

/// yaml.v2's strict mode refusing a key its struct does not have.
fn unknown_field(ctx: &Ctx, key: &Node, ty: &str) -> ImportError {
    ctx.error(
        key,
        format!(
            "field {} not found in type {ty}",
            key.as_str().unwrap_or("?")
        ),
    )
}

/// The sub-table `key` of `t`, made if missing.
fn table<'a>(t: &'a mut toml::Table, key: &str) -> &'a mut toml::Table {
    t.entry(key)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .expect("only tables are put under this key")
}

/// A list (null reads as empty, as yaml.v2 reads `key:`).
fn seq<'a>(n: &'a Node, what: &str, ctx: &Ctx) -> Result<&'a [Node], ImportError> {
    match &n.value {
        Value::Seq(items) => Ok(items),
        Value::Null => Ok(&[]),
        _ => Err(ctx.error(n, format!("{what}: expected a list, got {}", n.kind()))),
    }
}

/// A map's entries (null reads as empty).
fn map<'a>(n: &'a Node, what: &str, ctx: &Ctx) -> Result<&'a [super::yaml::Entry], ImportError> {
    match &n.value {
        Value::Map(_) | Value::Null => Ok(n.map_entries()),
        _ => Err(ctx.error(n, format!("{what}: expected a map, got {}", n.kind()))),
    }
}

/// A scalar as a string (null reads as "").
fn string(n: &Node, what: &str, ctx: &Ctx) -> Result<String, ImportError> {
    match &n.value {
        Value::Scalar { text, .. } => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        _ => Err(ctx.error(n, format!("{what}: expected a string, got {}", n.kind()))),
    }
}

fn boolean(n: &Node, what: &str, ctx: &Ctx) -> Result<bool, ImportError> {
    n.as_bool()
        .ok_or_else(|| ctx.error(n, format!("{what}: expected a bool, got {}", n.kind())))
}

fn strings(n: &Node, what: &str, ctx: &Ctx) -> Result<Vec<String>, ImportError> {
    seq(n, what, ctx)?
        .iter()
        .map(|i| string(i, what, ctx))
        .collect()
}

/// A map of strings to strings (labels, headers, details).
fn string_map(n: &Node, what: &str, ctx: &Ctx) -> Result<toml::Table, ImportError> {
    let mut t = toml::Table::new();
    for e in map(n, what, ctx)? {
        let k = string(&e.key, what, ctx)?;
        t.insert(k, string(&e.value, what, ctx)?.into());
    }
    Ok(t)
}

/// A Prometheus duration (`model.Duration`), checked and carried as written.
fn duration(n: &Node, what: &str, ctx: &Ctx) -> Result<String, ImportError> {
    let s = string(n, what, ctx)?;
    crate::model::Duration::parse(&s).map_err(|e| ctx.error(n, format!("{what}: {e}")))?;
    Ok(s)
}

/// A YAML value as TOML, for sections carried key for key whose checks
/// are then made by deserializing them into wasmon's types. Scalars keep
/// yaml.v2's reading (unquoted `true`, numbers); null is left out.
fn to_toml(n: &Node) -> Option<toml::Value> {
    to_toml_as(n, false)
}

/// [`to_toml`]; with `all_strings`, every scalar is a string (as yaml.v2
/// reads a number into a string field).
fn to_toml_as(n: &Node, all_strings: bool) -> Option<toml::Value> {
    Some(match &n.value {
        Value::Null => return None,
        Value::Scalar { text, quoted } => {
            if !quoted && !all_strings {
                if let Some(b) = n.as_bool() {
                    return Some(b.into());
                }
                if let Some(i) = n.as_i64() {
                    return Some(i.into());
                }
            }
            text.clone().into()
        }
        Value::Seq(items) => items
            .iter()
            .filter_map(|i| to_toml_as(i, all_strings))
            .collect::<Vec<_>>()
            .into(),
        Value::Map(entries) => {
            let mut t = toml::Table::new();
            for e in entries {
                if let Some(v) = to_toml_as(&e.value, all_strings) {
                    t.insert(e.key.as_str().unwrap_or("").to_string(), v);
                }
            }
            t.into()
        }
    })
}

/// `global:` as Alertmanager reads it, with its defaults applied where a
/// receiver needs them.
#[derive(Default)]
pub(super) struct Global {
    resolve_timeout: Option<String>,
    /// Applied to integrations without their own `http_config`.
    http_config: Option<toml::Table>,
    /// `smtp_*` keys (without the prefix), as email configs inherit them.
    smtp: BTreeMap<&'static str, (Node, toml::Value)>,
    /// `smtp_auth_password_file`.
    smtp_password_file: Option<Node>,
    slack_api_url: Option<Node>,
    slack_api_url_file: Option<Node>,
    pagerduty_url: Option<Node>,
    /// Keys only an integration without a plugin reads: named when one
    /// of those integrations is reported.
    other: BTreeSet<String>,
}

impl Global {
    fn read(node: Option<&Node>, ctx: &mut Ctx) -> Result<Global, ImportError> {
        let mut g = Global::default();
        let Some(node) = node else { return Ok(g) };
        let mut seen = BTreeMap::new();
        for e in map(node, "global", ctx)? {
            let key = e.key.as_str().unwrap_or("");
            let v = &e.value;
            let path = format!("global.{key}");
            match key {
                "resolve_timeout" => g.resolve_timeout = Some(duration(v, &path, ctx)?),
                "http_config" => g.http_config = Some(receivers::http_config(v, &path, ctx)?),
                "smtp_from" | "smtp_hello" | "smtp_auth_username" | "smtp_auth_password"
                | "smtp_auth_identity" => {
                    let s = string(v, &path, ctx)?;
                    if !s.is_empty() {
                        let k = smtp_key(key);
                        g.smtp.insert(k, (v.clone(), s.into()));
                    }
                }
                "smtp_smarthost" => {
                    let s = string(v, &path, ctx)?;
                    if !s.is_empty() {
                        receivers::host_port(v, &s, &path, ctx)?;
                        g.smtp.insert("smarthost", (v.clone(), s.into()));
                    }
                }
                "smtp_require_tls" => {
                    let b = boolean(v, &path, ctx)?;
                    g.smtp.insert("require_tls", (v.clone(), b.into()));
                }
                "smtp_auth_password_file" => {
                    if !string(v, &path, ctx)?.is_empty() {
                        g.smtp_password_file = Some(v.clone());
                    }
                }
                "smtp_auth_secret" => {
                    if !string(v, &path, ctx)?.is_empty() {
                        ctx.unsupported(
                            v,
                            path,
                            "CRAM-MD5 is not offered by the email plugin (PLAIN and LOGIN are)",
                        );
                    }
                }
                "slack_api_url" => {
                    receivers::url(v, &path, ctx)?;
                    g.slack_api_url = Some(v.clone());
                }
                "slack_api_url_file" => {
                    if !string(v, &path, ctx)?.is_empty() {
                        g.slack_api_url_file = Some(v.clone());
                    }
                }
                "pagerduty_url" => {
                    receivers::url(v, &path, ctx)?;
                    g.pagerduty_url = Some(v.clone());
                }
                "opsgenie_api_url"
                | "opsgenie_api_key"
                | "opsgenie_api_key_file"
                | "wechat_api_url"
                | "wechat_api_secret"
                | "wechat_api_corp_id"
                | "victorops_api_url"
                | "victorops_api_key"
                | "victorops_api_key_file"
                | "telegram_api_url"
                | "webex_api_url" => {
                    if !v.is_null() && string(v, &path, ctx).is_ok_and(|s| !s.is_empty()) {
                        g.other.insert(key.to_string());
                        ctx.unsupported(
                            v,
                            path,
                            "only read by an integration wasmon has no receiver plugin for yet (#23)",
                        );
                    }
                }
                _ => return Err(unknown_field(ctx, &e.key, "config.GlobalConfig")),
            }
            seen.insert(key, ());
        }
        for (a, b) in [
            ("slack_api_url", "slack_api_url_file"),
            ("opsgenie_api_key", "opsgenie_api_key_file"),
            ("victorops_api_key", "victorops_api_key_file"),
            ("smtp_auth_password", "smtp_auth_password_file"),
        ] {
            let set = |k: &str| {
                node.get(k)
                    .and_then(Node::as_str)
                    .is_some_and(|s| !s.is_empty())
            };
            if set(a) && set(b) {
                return Err(ctx.error(node, format!("at most one of {a} & {b} must be configured")));
            }
        }
        Ok(g)
    }
}

fn smtp_key(global_key: &str) -> &'static str {
    match global_key {
        "smtp_from" => "from",
        "smtp_hello" => "hello",
        "smtp_auth_username" => "auth_username",
        "smtp_auth_password" => "auth_password",
        _ => "auth_identity",
    }
}

/// What a route tree refers to, for the checks made once all is read.
#[derive(Default)]
struct Refs {
    receivers: Vec<(String, Node)>,
    intervals: Vec<(String, Node)>,
}

/// Deepest route nesting imported: the TOML config (table headers of
/// nested `routes`) holds a little more; real trees are a few levels deep,
/// and a hostile one must not exhaust the stack.
pub const MAX_ROUTE_DEPTH: usize = 50;

/// One route node (`depth` levels below the root) and its children, as
/// wasmon's `route` table.
fn route(
    n: &Node,
    path: &str,
    depth: usize,
    ctx: &mut Ctx,
    refs: &mut Refs,
) -> Result<toml::Table, ImportError> {
    if depth > MAX_ROUTE_DEPTH {
        return Err(ctx.error(
            n,
            format!("route tree nested deeper than {MAX_ROUTE_DEPTH} levels"),
        ));
    }
    let mut t = toml::Table::new();
    let mut children = Vec::new();
    for e in map(n, path, ctx)? {
        let key = e.key.as_str().unwrap_or("");
        let v = &e.value;
        let here = format!("{path}.{key}");
        match key {
            "receiver" => {
                let r = string(v, &here, ctx)?;
                if !r.is_empty() {
                    refs.receivers.push((r.clone(), v.clone()));
                    t.insert(key.into(), r.into());
                }
            }
            "group_by" => {
                t.insert(key.into(), to_vec(strings(v, &here, ctx)?));
            }
            "continue" => {
                t.insert(key.into(), boolean(v, &here, ctx)?.into());
            }
            "match" => {
                let m = string_map(v, &here, ctx)?;
                legacy_names(v, &m, ctx)?;
                if !m.is_empty() {
                    t.insert(key.into(), m.into());
                }
            }
            "match_re" => {
                let m = match_re(v, &here, ctx)?;
                if !m.is_empty() {
                    t.insert(key.into(), m.into());
                }
            }
            "matchers" => {
                let m = strings(v, &here, ctx)?;
                check_matchers(v, &m, &here, ctx)?;
                if !m.is_empty() {
                    t.insert(key.into(), to_vec(m));
                }
            }
            "group_wait" | "group_interval" | "repeat_interval" => {
                if !v.is_null() {
                    t.insert(key.into(), duration(v, &here, ctx)?.into());
                }
            }
            "mute_time_intervals" | "active_time_intervals" => {
                let names = strings(v, &here, ctx)?;
                for name in &names {
                    refs.intervals.push((name.clone(), v.clone()));
                }
                if !names.is_empty() {
                    t.insert(key.into(), to_vec(names));
                }
            }
            "routes" => {
                for (i, c) in seq(v, &here, ctx)?.iter().enumerate() {
                    children.push(toml::Value::Table(route(
                        c,
                        &format!("{here}[{i}]"),
                        depth + 1,
                        ctx,
                        refs,
                    )?));
                }
            }
            _ => return Err(unknown_field(ctx, &e.key, "config.plain")),
        }
    }
    // Alertmanager's Route.UnmarshalYAML checks, through wasmon's own type
    // (so the TOML is known to load).
    let parsed: RouteConfig = toml::Value::Table(t.clone())
        .try_into()
        .map_err(|e| ctx.error(n, format!("{path}: {}", e.message())))?;
    if let Some(gb) = &parsed.group_by {
        if let Some(bad) = gb
            .iter()
            .find(|l| *l != "..." && !crate::model::is_legacy_label_name(l))
        {
            return Err(ctx.error(n, format!("invalid label name {bad:?} in group_by list")));
        }
    }
    parsed
        .validate_node()
        .map_err(|e| ctx.error(n, e.to_string()))?;
    if !children.is_empty() {
        t.insert("routes".into(), children.into());
    }
    Ok(t)
}

/// The root route's rules (Alertmanager's `Config.UnmarshalYAML` and `Load`).
fn check_root(n: &Node, root: &toml::Table, ctx: &Ctx) -> Result<(), ImportError> {
    let has = |k: &str| root.contains_key(k);
    let message = if !has("receiver") {
        "root route must specify a default receiver"
    } else if has("match") || has("match_re") || has("matchers") {
        "root route must not have any matchers"
    } else if has("mute_time_intervals") {
        "root route must not have any mute time intervals"
    } else if has("active_time_intervals") {
        "root route must not have any active time intervals"
    } else if root.get("continue").and_then(toml::Value::as_bool) == Some(true) {
        "cannot have continue in root route"
    } else {
        return Ok(());
    };
    Err(ctx.error(n, message))
}

fn to_vec(v: Vec<String>) -> toml::Value {
    v.into_iter()
        .map(toml::Value::String)
        .collect::<Vec<_>>()
        .into()
}

/// `match`/`source_match`/`target_match` names: Alertmanager 0.25 takes
/// only legacy label names there.
fn legacy_names(n: &Node, m: &toml::Table, ctx: &Ctx) -> Result<(), ImportError> {
    for k in m.keys() {
        if !crate::model::is_legacy_label_name(k) {
            return Err(ctx.error(n, format!("invalid label name {k:?}")));
        }
    }
    Ok(())
}

/// A `match_re` map: names checked, each regex compiled anchored.
fn match_re(n: &Node, what: &str, ctx: &Ctx) -> Result<toml::Table, ImportError> {
    let mut t = toml::Table::new();
    for e in map(n, what, ctx)? {
        let k = string(&e.key, what, ctx)?;
        if !crate::model::is_legacy_label_name(&k) {
            return Err(ctx.error(&e.key, format!("invalid label name {k:?}")));
        }
        if e.value.is_null() {
            return Err(ctx.error(&e.value, format!("invalid regexp value for {k:?}")));
        }
        let re = string(&e.value, what, ctx)?;
        regex::Regex::new(&format!("^(?:{re})$"))
            .map_err(|err| ctx.error(&e.value, format!("error parsing regexp: {err}")))?;
        t.insert(k, re.into());
    }
    Ok(t)
}

fn check_matchers(n: &Node, m: &[String], what: &str, ctx: &Ctx) -> Result<(), ImportError> {
    for line in m {
        crate::alerting::matcher::parse_matchers_fallback(line)
            .map_err(|e| ctx.error(n, format!("{what}: {e}")))?;
    }
    Ok(())
}

fn inhibit_rule(n: &Node, path: &str, ctx: &mut Ctx) -> Result<toml::Table, ImportError> {
    let mut t = toml::Table::new();
    for e in map(n, path, ctx)? {
        let key = e.key.as_str().unwrap_or("");
        let v = &e.value;
        let here = format!("{path}.{key}");
        let value: toml::Value = match key {
            "source_match" | "target_match" => {
                let m = string_map(v, &here, ctx)?;
                legacy_names(v, &m, ctx)?;
                m.into()
            }
            "source_match_re" | "target_match_re" => match_re(v, &here, ctx)?.into(),
            "source_matchers" | "target_matchers" => {
                let m = strings(v, &here, ctx)?;
                check_matchers(v, &m, &here, ctx)?;
                to_vec(m)
            }
            "equal" => to_vec(strings(v, &here, ctx)?),
            _ => return Err(unknown_field(ctx, &e.key, "config.plain")),
        };
        let empty = match &value {
            toml::Value::Table(t) => t.is_empty(),
            toml::Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if !empty {
            t.insert(key.into(), value);
        }
    }
    let parsed: InhibitRuleConfig = toml::Value::Table(t.clone())
        .try_into()
        .map_err(|e| ctx.error(n, format!("{path}: {}", e.message())))?;
    parsed.validate().map_err(|e| ctx.error(n, e.to_string()))?;
    Ok(t)
}

/// A named time interval, checked by wasmon's parser. A named `location`
/// is carried as it is (IANA zones are wasmon's to resolve).
fn time_interval(n: &Node, path: &str, ctx: &mut Ctx) -> Result<toml::Table, ImportError> {
    for e in map(n, path, ctx)? {
        if !matches!(e.key.as_str(), Some("name" | "time_intervals")) {
            return Err(unknown_field(ctx, &e.key, "config.plain"));
        }
    }
    let name = n
        .get("name")
        .map(|v| string(v, path, ctx))
        .transpose()?
        .unwrap_or_default();
    if name.is_empty() {
        let what = if path.starts_with("mute") {
            "missing name in mute time interval"
        } else {
            "missing name in time interval"
        };
        return Err(ctx.error(n, what));
    }
    let mut intervals = Vec::new();
    if let Some(list) = n.get("time_intervals") {
        for (i, spec) in seq(list, path, ctx)?.iter().enumerate() {
            let here = format!("{path}.time_intervals[{i}]");
            let Some(toml::Value::Table(mut t)) = to_toml_as(spec, true) else {
                if spec.is_null() {
                    intervals.push(toml::Value::Table(toml::Table::new()));
                    continue;
                }
                return Err(ctx.error(spec, format!("{here}: expected a map")));
            };
            let location = t.remove("location");
            let check = toml::Table::from_iter([
                ("name".to_string(), toml::Value::from(name.clone())),
                (
                    "time_intervals".to_string(),
                    toml::Value::from(vec![toml::Value::Table(t.clone())]),
                ),
            ]);
            toml::Value::Table(check)
                .try_into::<TimeIntervalConfig>()
                .map_err(|e| ctx.error(spec, format!("{here}: {}", e.message())))?;
            if let Some(loc) = location {
                t.insert("location".into(), loc);
            }
            intervals.push(toml::Value::Table(t));
        }
    }
    let mut t = toml::Table::new();
    t.insert("name".into(), name.into());
    t.insert("time_intervals".into(), intervals.into());
    Ok(t)
}
