//! `receivers:` -> `[[receivers]]`: each integration config becomes one
//! instance of the first-party plugin with the same settings, Alertmanager's
//! global defaults applied as `Config.UnmarshalYAML` applies them (the
//! integration's own key wins). A receiver with one integration is one
//! instance of the receiver's name; with several, each instance is named
//! `<receiver>/<kind>[<i>]` and says `receiver = "<receiver>"`, the name
//! the route uses (the agent notifies all of a receiver's instances). A
//! receiver with none (or only integrations wasmon has no plugin for) is
//! an entry without a plugin: routed to, it notifies no one, as in
//! Alertmanager.
//!
//! `*_file` secrets are never read here: they become `${file:PATH}`
//! references, read by the agent when it prepares the instance.

use std::collections::BTreeSet;

use super::super::yaml::{Entry, Node, Value};
use super::super::{Ctx, ImportError};
use super::{boolean, map, seq, string, string_map, to_toml, unknown_field, Global};

/// Integrations wasmon has no first-party plugin for yet (#23).
const NO_PLUGIN: [&str; 8] = [
    "opsgenie_configs",
    "victorops_configs",
    "pushover_configs",
    "wechat_configs",
    "telegram_configs",
    "sns_configs",
    "webex_configs",
    "discord_configs",
];

/// Integrations newer than Alertmanager 0.25, reported rather than refused.
const NEWER: [&str; 6] = [
    "msteams_configs",
    "msteamsv2_configs",
    "mattermost_configs",
    "rocketchat_configs",
    "jira_configs",
    "incidentio_configs",
];

const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Converts the receivers into `out.receivers`; returns their names.
pub(super) fn convert(
    node: Option<&Node>,
    global: &Global,
    ctx: &mut Ctx,
    out: &mut toml::Table,
) -> Result<BTreeSet<String>, ImportError> {
    let mut names = BTreeSet::new();
    let mut instances = Vec::new();
    let Some(node) = node else { return Ok(names) };
    for (i, r) in seq(node, "receivers", ctx)?.iter().enumerate() {
        let path = format!("receivers[{i}]");
        let entries = map(r, &path, ctx)?;
        let name = r
            .get("name")
            .map(|n| string(n, &path, ctx))
            .transpose()?
            .unwrap_or_default();
        if name.is_empty() {
            return Err(ctx.error(r, "missing name in receiver"));
        }
        if !names.insert(name.clone()) {
            return Err(ctx.error(
                r,
                format!("notification config name {name:?} is not unique"),
            ));
        }
        let mut carried = Vec::new();
        for e in entries {
            let kind = e.key.as_str().unwrap_or("");
            if kind == "name" {
                continue;
            }
            let known = [
                "webhook_configs",
                "slack_configs",
                "pagerduty_configs",
                "email_configs",
            ];
            if !known.contains(&kind) && !NO_PLUGIN.contains(&kind) && !NEWER.contains(&kind) {
                return Err(unknown_field(ctx, &e.key, "config.plain"));
            }
            let here = format!("{path}.{kind}");
            let configs = seq(&e.value, &here, ctx)?;
            for (j, c) in configs.iter().enumerate() {
                let at = format!("{here}[{j}]");
                map(c, &at, ctx)?;
                let inst = match kind {
                    "webhook_configs" => webhook(c, &at, global, ctx)?,
                    "slack_configs" => slack(c, &at, global, ctx)?,
                    "pagerduty_configs" => pagerduty(c, &at, global, ctx)?,
                    "email_configs" => email(c, &at, global, ctx)?,
                    k if NO_PLUGIN.contains(&k) => {
                        check_no_plugin(k, c, global, ctx)?;
                        ctx.unsupported(
                            c,
                            at,
                            format!(
                                "wasmon has no receiver plugin for {} yet (#23): not notified",
                                k.trim_end_matches("_configs")
                            ),
                        );
                        None
                    }
                    k => {
                        ctx.unsupported(
                            c,
                            at,
                            format!(
                                "{k} is newer than Alertmanager 0.25 and wasmon has no plugin for it: not notified"
                            ),
                        );
                        None
                    }
                };
                if let Some(inst) = inst {
                    carried.push((kind.trim_end_matches("_configs"), j, inst));
                }
            }
        }
        let several = carried.len() > 1;
        if carried.is_empty() {
            let mut t = toml::Table::new();
            t.insert("name".into(), name.clone().into());
            instances.push(toml::Value::Table(t));
        }
        for (kind, j, inst) in carried {
            let mut t = toml::Table::new();
            if several {
                t.insert("name".into(), format!("{name}/{kind}[{j}]").into());
                t.insert("receiver".into(), name.clone().into());
            } else {
                t.insert("name".into(), name.clone().into());
            }
            t.insert("plugin".into(), kind.into());
            t.extend(inst);
            instances.push(toml::Value::Table(t));
        }
    }
    if !instances.is_empty() {
        out.insert("receivers".into(), instances.into());
    }
    Ok(names)
}

/// What the instance has besides its name and plugin.
type Instance = toml::Table;

/// What every integration shares: `send_resolved` and `http_config`.
struct Common {
    inst: Instance,
    config: toml::Table,
    hosts: Vec<String>,
}

impl Common {
    fn new(
        n: &Node,
        path: &str,
        send_resolved: bool,
        global: &Global,
        ctx: &mut Ctx,
    ) -> Result<Common, ImportError> {
        let mut inst = Instance::new();
        let sr = match n.get("send_resolved") {
            Some(v) if !v.is_null() => boolean(v, &format!("{path}.send_resolved"), ctx)?,
            _ => send_resolved,
        };
        inst.insert("send_resolved".into(), sr.into());
        if let Some(h) = &global.http_config {
            inst.insert("http_config".into(), h.clone().into());
        }
        Ok(Common {
            inst,
            config: toml::Table::new(),
            hosts: Vec::new(),
        })
    }

    /// `http_config` of the integration (replacing global's whole, as
    /// Alertmanager does: it is one pointer).
    fn http_config(&mut self, v: &Node, path: &str, ctx: &mut Ctx) -> Result<(), ImportError> {
        let h = http_config(v, path, ctx)?;
        self.inst.insert("http_config".into(), h.into());
        Ok(())
    }

    /// A string key carried into the plugin's config as `to`.
    fn text(&mut self, to: &str, v: &Node, path: &str, ctx: &Ctx) -> Result<(), ImportError> {
        let s = string(v, path, ctx)?;
        if !s.is_empty() {
            self.config.insert(to.into(), literal(&s).into());
        }
        Ok(())
    }

    /// A URL key: checked, allowed, carried.
    fn url(&mut self, to: &str, v: &Node, path: &str, ctx: &Ctx) -> Result<(), ImportError> {
        let u = url(v, path, ctx)?;
        self.hosts.push(host_of(&u));
        self.config.insert(to.into(), literal(u.as_str()).into());
        Ok(())
    }

    /// A `*_file` key: a `${file:PATH}` reference in `to`. The host a URL
    /// file points at is read once here, for `allow_hosts` only.
    fn file(
        &mut self,
        to: &str,
        v: &Node,
        path: &str,
        url_in_it: bool,
        ctx: &mut Ctx,
    ) -> Result<(), ImportError> {
        let p = string(v, path, ctx)?;
        let out = ctx.path(&p);
        if out.contains('}') {
            return Err(ctx.error(
                v,
                format!("{path}: a file path with `}}` cannot be referenced"),
            ));
        }
        if url_in_it {
            let host = std::fs::read_to_string(ctx.source_path(&p))
                .ok()
                .and_then(|t| reqwest::Url::parse(t.trim()).ok())
                .filter(|u| u.host_str().is_some())
                .map(|u| host_of(&u));
            match host {
                Some(h) => self.hosts.push(h),
                None => ctx.note(
                    v,
                    path,
                    "the URL file could not be read now: add its host to this instance's allow_hosts",
                ),
            }
        }
        self.config
            .insert(to.into(), format!("${{file:{}}}", literal(&out)).into());
        Ok(())
    }

    /// Alertmanager's default for each key the YAML does not have.
    fn defaults(&mut self, n: &Node, defaults: &[UpstreamDefault]) {
        for d in defaults {
            if n.get(d.yaml).is_none() {
                self.config.insert(d.plugin.into(), d.text.into());
            }
        }
    }

    fn finish(mut self) -> Option<Instance> {
        let mut hosts = self.hosts;
        hosts.sort();
        hosts.dedup();
        if !hosts.is_empty() {
            self.inst.insert(
                "allow_hosts".into(),
                hosts
                    .into_iter()
                    .map(toml::Value::String)
                    .collect::<Vec<_>>()
                    .into(),
            );
        }
        self.inst.insert("config".into(), self.config.into());
        Some(self.inst)
    }
}

/// A string from the YAML as it must be written into a plugin config,
/// where `${` starts a reference: `$${` keeps it literal.
/// Alertmanager 0.25's defaults of a `slack_config` (`config/notifiers.go`
/// `DefaultSlackConfig`) the slack plugin has a key for: written where the
/// YAML does not set the key, so the plugin renders Alertmanager's
/// `default.tmpl` definitions, not its own defaults. (`icon_emoji`,
/// `icon_url`, `callback_id` default to definitions that render "".)
const SLACK_DEFAULTS: &[UpstreamDefault] = &[
    UpstreamDefault::same("username", r#"{{ template "slack.default.username" . }}"#),
    UpstreamDefault::same(
        "color",
        r#"{{ if eq .Status "firing" }}danger{{ else }}good{{ end }}"#,
    ),
    UpstreamDefault::same("title", r#"{{ template "slack.default.title" . }}"#),
    UpstreamDefault::same(
        "title_link",
        r#"{{ template "slack.default.titlelink" . }}"#,
    ),
    UpstreamDefault::same("pretext", r#"{{ template "slack.default.pretext" . }}"#),
    UpstreamDefault::same("text", r#"{{ template "slack.default.text" . }}"#),
    UpstreamDefault::same("fallback", r#"{{ template "slack.default.fallback" . }}"#),
    UpstreamDefault::same("footer", r#"{{ template "slack.default.footer" . }}"#),
];

/// `DefaultPagerdutyConfig`'s texts, under the pagerduty plugin's keys
/// (`description` is the plugin's `summary`). Its default `details` are
/// the plugin's own (firing, resolved, num_firing, num_resolved).
const PAGERDUTY_DEFAULTS: &[UpstreamDefault] = &[
    UpstreamDefault {
        yaml: "description",
        plugin: "summary",
        text: r#"{{ template "pagerduty.default.description" .}}"#,
    },
    UpstreamDefault::same("client", r#"{{ template "pagerduty.default.client" . }}"#),
    UpstreamDefault::same(
        "client_url",
        r#"{{ template "pagerduty.default.clientURL" . }}"#,
    ),
];

/// `DefaultEmailConfig`: the HTML body and no text part.
const EMAIL_DEFAULTS: &[UpstreamDefault] = &[
    UpstreamDefault::same("html", r#"{{ template "email.default.html" . }}"#),
    UpstreamDefault::same("text", ""),
];

/// An upstream default: its YAML key, the plugin's key for it, the text.
struct UpstreamDefault {
    yaml: &'static str,
    plugin: &'static str,
    text: &'static str,
}

impl UpstreamDefault {
    /// A default whose key the plugin spells as Alertmanager does.
    const fn same(key: &'static str, text: &'static str) -> UpstreamDefault {
        UpstreamDefault {
            yaml: key,
            plugin: key,
            text,
        }
    }
}

/// `DefaultEmailConfig`'s Subject header.
const EMAIL_SUBJECT: &str = r#"{{ template "email.default.subject" . }}"#;

fn literal(s: &str) -> String {
    s.replace("${", "$${")
}

/// `host` or `host:port` as `allow_hosts` takes it.
fn host_of(u: &reqwest::Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

/// An http(s) URL with a host (Alertmanager's `parseURL`).
pub(super) fn url(v: &Node, path: &str, ctx: &Ctx) -> Result<reqwest::Url, ImportError> {
    let s = string(v, path, ctx)?;
    let u =
        reqwest::Url::parse(&s).map_err(|e| ctx.error(v, format!("{path}: parse {s:?}: {e}")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(ctx.error(v, format!("unsupported scheme {:?} for URL", u.scheme())));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(ctx.error(v, "missing host for URL"));
    }
    Ok(u)
}

/// A `host:port` (Alertmanager's `HostPort`).
pub(super) fn host_port(v: &Node, s: &str, path: &str, ctx: &Ctx) -> Result<(), ImportError> {
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(ctx.error(v, format!("{path}: address {s}: missing port in address")));
    };
    let _ = host;
    if port.is_empty() {
        return Err(ctx.error(v, format!("address {s:?}: port cannot be empty")));
    }
    Ok(())
}

/// An `http_config` block: Prometheus' HTTP client keys, carried as they
/// are, file paths kept right from the output's directory. Its checks are
/// wasmon's own (`http_config` on the instance), made when the TOML loads.
pub(super) fn http_config(v: &Node, path: &str, ctx: &mut Ctx) -> Result<toml::Table, ImportError> {
    let Some(toml::Value::Table(mut t)) = to_toml(v) else {
        if v.is_null() {
            return Ok(toml::Table::new());
        }
        return Err(ctx.error(v, format!("{path}: expected a map, got {}", v.kind())));
    };
    rewrite_paths(&mut t, ctx);
    Ok(t)
}

fn rewrite_paths(t: &mut toml::Table, ctx: &Ctx) {
    for (k, v) in t.iter_mut() {
        match v {
            toml::Value::String(s) if k.ends_with("_file") => *s = ctx.path(s),
            toml::Value::Table(inner) => rewrite_paths(inner, ctx),
            _ => {}
        }
    }
}

fn entries(n: &Node) -> impl Iterator<Item = (&str, &Entry)> {
    n.map_entries()
        .iter()
        .map(|e| (e.key.as_str().unwrap_or(""), e))
}

fn webhook(
    n: &Node,
    path: &str,
    global: &Global,
    ctx: &mut Ctx,
) -> Result<Option<Instance>, ImportError> {
    let mut c = Common::new(n, path, true, global, ctx)?;
    let (mut has_url, mut has_file) = (false, false);
    for (key, e) in entries(n) {
        let v = &e.value;
        let here = format!("{path}.{key}");
        match key {
            "send_resolved" => {}
            "http_config" => c.http_config(v, &here, ctx)?,
            "url" if !v.is_null() => {
                let s = string(v, &here, ctx)?;
                if !s.starts_with("http://") && !s.starts_with("https://") {
                    return Err(ctx.error(v, "scheme required for webhook url"));
                }
                c.url("url", v, &here, ctx)?;
                has_url = true;
            }
            "url" => {}
            "url_file" => {
                c.file("url", v, &here, true, ctx)?;
                has_file = true;
            }
            "max_alerts" => {
                let m = v
                    .as_i64()
                    .filter(|m| *m >= 0)
                    .ok_or_else(|| ctx.error(v, format!("{here}: expected a count")))?;
                if m > 0 {
                    c.config.insert("max_alerts".into(), m.into());
                }
            }
            _ => return Err(unknown_field(ctx, &e.key, "config.plain")),
        }
    }
    if has_url && has_file {
        return Err(ctx.error(n, "at most one of url & url_file must be configured"));
    }
    if !has_url && !has_file {
        return Err(ctx.error(n, "missing URL in webhook config"));
    }
    Ok(c.finish())
}

fn slack(
    n: &Node,
    path: &str,
    global: &Global,
    ctx: &mut Ctx,
) -> Result<Option<Instance>, ImportError> {
    let mut c = Common::new(n, path, false, global, ctx)?;
    let (mut has_url, mut has_file) = (false, false);
    for (key, e) in entries(n) {
        let v = &e.value;
        let here = format!("{path}.{key}");
        match key {
            "send_resolved" => {}
            "http_config" => c.http_config(v, &here, ctx)?,
            "api_url" if !v.is_null() => {
                c.url("url", v, &here, ctx)?;
                has_url = true;
            }
            "api_url" => {}
            "api_url_file" => {
                if !string(v, &here, ctx)?.is_empty() {
                    c.file("url", v, &here, true, ctx)?;
                    has_file = true;
                }
            }
            "channel" | "username" | "color" | "title" | "title_link" | "pretext" | "text"
            | "footer" | "fallback" | "icon_emoji" | "icon_url" => c.text(key, v, &here, ctx)?,
            "link_names" => {
                if boolean(v, &here, ctx)? {
                    c.config.insert(key.into(), true.into());
                }
            }
            "fields" | "short_fields" | "callback_id" | "image_url" | "thumb_url" | "mrkdwn_in"
            | "actions" => {
                let empty = v.is_null()
                    || v.as_bool() == Some(false)
                    || v.as_str() == Some("")
                    || matches!(&v.value, Value::Seq(s) if s.is_empty());
                if !empty {
                    ctx.unsupported(
                        v,
                        here,
                        "the slack plugin does not send this attachment key",
                    );
                }
            }
            _ => return Err(unknown_field(ctx, &e.key, "config.plain")),
        }
    }
    if has_url && has_file {
        return Err(ctx.error(
            n,
            "at most one of api_url & api_url_file must be configured",
        ));
    }
    c.defaults(n, SLACK_DEFAULTS);
    if !has_url && !has_file {
        match (&global.slack_api_url, &global.slack_api_url_file) {
            (Some(u), _) => c.url("url", u, "global.slack_api_url", ctx)?,
            (None, Some(f)) => c.file("url", f, "global.slack_api_url_file", true, ctx)?,
            (None, None) => {
                return Err(ctx.error(n, "no global Slack API URL set either inline or in a file"))
            }
        }
    }
    Ok(c.finish())
}

fn pagerduty(
    n: &Node,
    path: &str,
    global: &Global,
    ctx: &mut Ctx,
) -> Result<Option<Instance>, ImportError> {
    let mut c = Common::new(n, path, true, global, ctx)?;
    let set = |k: &str| {
        n.get(k)
            .and_then(Node::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !set("routing_key")
        && !set("service_key")
        && !set("routing_key_file")
        && !set("service_key_file")
    {
        return Err(ctx.error(n, "missing service or routing key in PagerDuty config"));
    }
    for (a, b) in [
        ("routing_key", "routing_key_file"),
        ("service_key", "service_key_file"),
    ] {
        if set(a) && set(b) {
            return Err(ctx.error(n, format!("at most one of {a} & {b} must be configured")));
        }
    }
    let mut v1 = None;
    let mut has_url = false;
    for (key, e) in entries(n) {
        let v = &e.value;
        let here = format!("{path}.{key}");
        match key {
            "send_resolved" => {}
            "http_config" => c.http_config(v, &here, ctx)?,
            "routing_key" => c.text("routing_key", v, &here, ctx)?,
            "routing_key_file" => {
                if set(key) {
                    c.file("routing_key", v, &here, false, ctx)?;
                }
            }
            "service_key" | "service_key_file" => {
                if set(key) {
                    v1 = Some((v, here));
                }
            }
            "url" if !v.is_null() => {
                c.url("url", v, &here, ctx)?;
                has_url = true;
            }
            "url" => {}
            "client" | "client_url" | "source" | "severity" | "class" | "component" | "group" => {
                c.text(key, v, &here, ctx)?
            }
            "description" => c.text("summary", v, &here, ctx)?,
            "details" => {
                let d = string_map(v, &here, ctx)?;
                if !d.is_empty() {
                    let d: toml::Table = d
                        .into_iter()
                        .map(|(k, v)| (k, literal(v.as_str().unwrap_or_default()).into()))
                        .collect();
                    c.config.insert("details".into(), d.into());
                }
            }
            "images" | "links" => {
                if !seq(v, &here, ctx)?.is_empty() {
                    ctx.unsupported(
                        v,
                        here,
                        "the pagerduty plugin does not send images or links",
                    );
                }
            }
            _ => return Err(unknown_field(ctx, &e.key, "config.plain")),
        }
    }
    if let Some((v, here)) = v1 {
        if !set("routing_key") && !set("routing_key_file") {
            ctx.unsupported(
                v,
                here,
                "PagerDuty's Events API v1 (service_key) is not spoken by the pagerduty plugin (v2, routing_key): not notified",
            );
            return Ok(None);
        }
        ctx.unsupported(
            v,
            here,
            "service_key is ignored: routing_key (Events API v2) is used",
        );
    }
    c.defaults(n, PAGERDUTY_DEFAULTS);
    if !has_url {
        match &global.pagerduty_url {
            Some(u) => c.url("url", u, "global.pagerduty_url", ctx)?,
            None => {
                let u = reqwest::Url::parse(PAGERDUTY_URL).expect("a valid URL");
                c.hosts.push(host_of(&u));
            }
        }
    }
    Ok(c.finish())
}

fn email(
    n: &Node,
    path: &str,
    global: &Global,
    ctx: &mut Ctx,
) -> Result<Option<Instance>, ImportError> {
    let mut c = Common::new(n, path, false, global, ctx)?;
    // Email has no http_config: global's does not apply.
    c.inst.remove("http_config");
    let set = |k: &str| {
        n.get(k)
            .and_then(Node::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    if !set("to") {
        return Err(ctx.error(n, "missing to address in email config"));
    }
    for (key, e) in entries(n) {
        let v = &e.value;
        let here = format!("{path}.{key}");
        match key {
            "send_resolved" => {}
            "to" | "from" | "hello" | "auth_username" | "auth_password" | "auth_identity"
            | "text" => c.text(key, v, &here, ctx)?,
            "smarthost" => {
                let s = string(v, &here, ctx)?;
                if !s.is_empty() {
                    host_port(v, &s, &here, ctx)?;
                    c.hosts.push(s.clone());
                    c.config.insert(key.into(), s.into());
                }
            }
            "auth_password_file" => {
                if set(key) {
                    c.file("auth_password", v, &here, false, ctx)?;
                }
            }
            "auth_secret" => {
                if set(key) {
                    ctx.unsupported(
                        v,
                        here,
                        "CRAM-MD5 is not offered by the email plugin (PLAIN and LOGIN are)",
                    );
                }
            }
            "require_tls" => {
                if !v.is_null() {
                    c.config.insert(key.into(), boolean(v, &here, ctx)?.into());
                }
            }
            "headers" => {
                let h = string_map(v, &here, ctx)?;
                let mut seen = BTreeSet::new();
                for k in h.keys() {
                    let canon = canonical_header(k);
                    if !seen.insert(canon.clone()) {
                        return Err(
                            ctx.error(v, format!("duplicate header {canon:?} in email config"))
                        );
                    }
                }
                if !h.is_empty() {
                    let h: toml::Table = h
                        .into_iter()
                        .map(|(k, v)| {
                            (
                                canonical_header(&k),
                                literal(v.as_str().unwrap_or_default()).into(),
                            )
                        })
                        .collect();
                    c.config.insert(key.into(), h.into());
                }
            }
            "html" => c.text(key, v, &here, ctx)?,
            "tls_config" => email_tls(v, &here, &mut c, ctx)?,
            _ => return Err(unknown_field(ctx, &e.key, "config.plain")),
        }
    }
    // Global SMTP defaults, where the integration has none.
    for (k, (node, value)) in &global.smtp {
        let missing = match *k {
            "auth_password" => !set("auth_password") && !set("auth_password_file"),
            k => !c.config.contains_key(k),
        };
        if !missing {
            continue;
        }
        if *k == "smarthost" {
            c.hosts.push(value.as_str().unwrap_or_default().to_string());
        }
        let _ = node;
        let value = match value {
            toml::Value::String(s) => literal(s).into(),
            v => v.clone(),
        };
        c.config.insert((*k).to_string(), value);
    }
    if !set("auth_password")
        && !set("auth_password_file")
        && !global.smtp.contains_key("auth_password")
    {
        if let Some(f) = &global.smtp_password_file {
            c.file(
                "auth_password",
                f,
                "global.smtp_auth_password_file",
                false,
                ctx,
            )?;
        }
    }
    if !c.config.contains_key("smarthost") {
        return Err(ctx.error(n, "no global SMTP smarthost set"));
    }
    if !c.config.contains_key("from") {
        return Err(ctx.error(n, "no global SMTP from set"));
    }
    // Alertmanager's body is the HTML default and no text part unless
    // the config says otherwise; its subject is a header default.
    c.defaults(n, EMAIL_DEFAULTS);
    let has_subject = n
        .get("headers")
        .is_some_and(|h| h.entries().any(|(k, _)| canonical_header(k) == "Subject"));
    if !has_subject {
        c.config
            .insert("subject".into(), EMAIL_SUBJECT.to_string().into());
    }
    Ok(c.finish())
}

/// `tls_config` of an email config: the plugin takes the CA as PEM text
/// and the server name.
fn email_tls(v: &Node, path: &str, c: &mut Common, ctx: &mut Ctx) -> Result<(), ImportError> {
    let mut tls = toml::Table::new();
    for e in map(v, path, ctx)? {
        let key = e.key.as_str().unwrap_or("");
        let here = format!("{path}.{key}");
        let val = &e.value;
        match key {
            "server_name" => {
                let s = string(val, &here, ctx)?;
                if !s.is_empty() {
                    tls.insert("server_name".into(), s.into());
                }
            }
            "ca" => {
                let s = string(val, &here, ctx)?;
                if !s.is_empty() {
                    tls.insert("ca".into(), literal(&s).into());
                }
            }
            "ca_file" => {
                let p = ctx.path(&string(val, &here, ctx)?);
                if p.contains('}') {
                    return Err(ctx.error(
                        val,
                        format!("{here}: a file path with `}}` cannot be referenced"),
                    ));
                }
                tls.insert("ca".into(), format!("${{file:{}}}", literal(&p)).into());
            }
            "insecure_skip_verify" if val.as_bool() == Some(false) => {}
            _ => {
                if !val.is_null() {
                    ctx.unsupported(
                        val,
                        here,
                        "the email plugin verifies the server against `ca` and `server_name` only",
                    );
                }
            }
        }
    }
    if !tls.is_empty() {
        c.config.insert("tls_config".into(), tls.into());
    }
    Ok(())
}

/// Go's `textproto.CanonicalMIMEHeaderKey` for the usual header names.
fn canonical_header(k: &str) -> String {
    k.split('-')
        .map(|w| {
            let mut cs = w.chars();
            match cs.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &cs.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// What Alertmanager 0.25 checks of the integrations wasmon reports as
/// unsupported: the global defaults they need, their required keys.
fn check_no_plugin(kind: &str, c: &Node, global: &Global, ctx: &Ctx) -> Result<(), ImportError> {
    let set = |k: &str| {
        c.get(k)
            .and_then(Node::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let g = |k: &str| global.other.contains(k);
    let message = match kind {
        "opsgenie_configs"
            if !set("api_key")
                && !set("api_key_file")
                && !g("opsgenie_api_key")
                && !g("opsgenie_api_key_file") =>
        {
            "no global OpsGenie API Key set either inline or in a file"
        }
        "victorops_configs"
            if !set("api_key")
                && !set("api_key_file")
                && !g("victorops_api_key")
                && !g("victorops_api_key_file") =>
        {
            "no global VictorOps API Key set"
        }
        "wechat_configs" if !set("api_secret") && !g("wechat_api_secret") => {
            "no global Wechat ApiSecret set"
        }
        "wechat_configs" if !set("corp_id") && !g("wechat_api_corp_id") => {
            "no global Wechat CorpID set"
        }
        "telegram_configs" if !set("bot_token") => "missing bot_token on telegram_config",
        "sns_configs" if !set("target_arn") && !set("topic_arn") && !set("phone_number") => {
            "must provide either a Target ARN, Topic ARN, or Phone Number for SNS config"
        }
        "discord_configs" if !set("webhook_url") => "no discord webhook URL provided",
        _ => return Ok(()),
    };
    Err(ctx.error(c, message))
}
