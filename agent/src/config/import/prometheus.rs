//! prometheus.yml -> wasmon TOML: `global`, `scrape_configs` (every service
//! discovery wasmon has, relabel and metric_relabel, auth, TLS, limits),
//! `rule_files`, `alerting.alertmanagers`, `remote_write`.
//!
//! Every key of Prometheus' `config/config.go` (2.42 and 3.x) is in one of
//! the key tables below: carried (with its wasmon type), or reported as
//! unsupported with why. A key in no table is refused, as yaml.v2's
//! `UnmarshalStrict` refuses it. Prometheus' own checks run here, at the
//! line of the key they are about, with Prometheus' texts; what wasmon's
//! config check covers as well (relabel rules, Kubernetes SD, DNS SD, HTTP
//! client keys) is checked through the same wasmon code, on the part
//! being converted, so the error names the YAML line.

mod checks;
mod keys;

use std::collections::BTreeMap;
use std::time::Duration;

use toml::{Table, Value};

use super::yaml::{Node, Value as Y};
use super::{Ctx, ImportError};
use keys::{Spec, K};

/// Converts a prometheus.yml document into `out`.
pub fn convert(doc: &Node, ctx: &mut Ctx, out: &mut Table) -> Result<(), ImportError> {
    let root = map(ctx, doc, "", &[keys::ROOT], "config.plain")?;
    let null = Node {
        line: doc.line,
        value: Y::Null,
    };
    let global_node = doc.get("global").unwrap_or(&null);
    let _ = root;
    let global = global(ctx, global_node)?;
    if !global.table.is_empty() {
        merge_into(out, "global", global.table.clone());
    }

    // rule_files: kept as they are (paths made right from the output).
    if let Some(files) = doc.get("rule_files") {
        let mut list = Vec::new();
        for f in files.items() {
            let s = scalar(ctx, f, "string")?;
            if !checks::rule_path_ok(&s) {
                return Err(ctx.error(f, format!("invalid rule file path {s:?}")));
            }
            list.push(Value::String(ctx.path(&s)));
        }
        if !list.is_empty() {
            out.insert("rule_files".into(), Value::Array(list));
        }
    }

    let mut jobs = Vec::new();
    // Job name -> the file it was first found in.
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    if let Some(list) = doc.get("scrape_configs") {
        for (i, node) in list.items().iter().enumerate() {
            let job = scrape_config(ctx, node, i, &global)?;
            let name = job_name(&job);
            if names.insert(name.clone(), ctx.file.clone()).is_some() {
                return Err(ctx.error(
                    node,
                    format!("found multiple scrape configs with job name {name:?}"),
                ));
            }
            jobs.push(Value::Table(job));
        }
    }
    if let Some(files) = doc.get("scrape_config_files") {
        for f in files.items() {
            let s = scalar(ctx, f, "string")?;
            if !checks::rule_path_ok(&s) {
                return Err(ctx.error(f, format!("invalid scrape config file path {s:?}")));
            }
            for path in included(ctx, f, &s)? {
                scrape_config_file(ctx, &path, &global, &mut names, &mut jobs)?;
            }
        }
    }
    if !jobs.is_empty() {
        out.insert("scrape_configs".into(), Value::Array(jobs));
    }

    if let Some(alerting) = doc.get("alerting") {
        let ams = alertmanagers(ctx, alerting)?;
        if !ams.is_empty() {
            out.insert("alertmanagers".into(), Value::Array(ams));
        }
    }

    if let Some(list) = doc.get("remote_write") {
        let rws = remote_write(ctx, list)?;
        if !rws.is_empty() {
            out.insert("remote_write".into(), Value::Array(rws));
        }
    }
    if let Some(list) = doc.get("remote_read") {
        remote_read(ctx, list)?;
    }
    if let Some(storage) = doc.get("storage") {
        if let Some(s) = self::storage(ctx, storage)? {
            merge_into(out, "storage", s);
        }
    }
    if let Some(tracing) = doc.get("tracing") {
        checks::tracing(ctx, tracing)?;
        if !tracing.is_null() {
            ctx.unsupported(
                tracing,
                "tracing",
                "wasmon does not export OpenTelemetry traces",
            );
        }
    }
    if let Some(otlp) = doc.get("otlp") {
        checks::otlp(ctx, otlp, global.utf8_disabled)?;
        if !otlp.map_entries().is_empty() {
            ctx.unsupported(otlp, "otlp", "wasmon has no OTLP receiver");
        }
    }
    Ok(())
}

fn job_name(job: &Table) -> String {
    job.get("job_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The files a `scrape_config_files` pattern names, in order.
fn included(ctx: &Ctx, node: &Node, pattern: &str) -> Result<Vec<std::path::PathBuf>, ImportError> {
    let full = ctx.source_path(pattern);
    let paths = glob::glob(&full.to_string_lossy()).map_err(|e| {
        ctx.error(
            node,
            format!("error retrieving scrape config files for {pattern:?}: {e}"),
        )
    })?;
    let mut out: Vec<_> = paths.filter_map(Result::ok).collect();
    out.sort();
    Ok(out)
}

/// One `scrape_config_files` file: its jobs join the main file's, with the
/// same global defaults; findings and errors name that file.
fn scrape_config_file(
    ctx: &mut Ctx,
    path: &std::path::Path,
    global: &Global,
    names: &mut BTreeMap<String, String>,
    jobs: &mut Vec<Value>,
) -> Result<(), ImportError> {
    let out_dir = ctx.out_dir();
    let mut sub = Ctx::new(path, Some(&out_dir));
    let text = std::fs::read_to_string(path).map_err(|e| ImportError {
        file: sub.file.clone(),
        line: 0,
        message: format!("reading: {e}"),
    })?;
    let doc = super::yaml::parse(&text).map_err(|e| ImportError {
        file: sub.file.clone(),
        line: e.line,
        message: e.message,
    })?;
    map(
        &mut sub,
        &doc,
        "",
        &[&[("scrape_configs", K::Checked)]],
        "config.ScrapeConfigs",
    )?;
    let list = doc
        .get("scrape_configs")
        .map(Node::items)
        .unwrap_or_default();
    for (i, node) in list.iter().enumerate() {
        let job = scrape_config(&mut sub, node, i, global)?;
        let name = job_name(&job);
        if let Some(first) = names.get(&name) {
            return Err(sub.error(
                node,
                format!(
                    "found multiple scrape configs with job name {name:?}, first found in {first}"
                ),
            ));
        }
        names.insert(name, sub.file.clone());
        jobs.push(Value::Table(job));
    }
    ctx.findings.append(&mut sub.findings);
    Ok(())
}

fn merge_into(out: &mut Table, key: &str, t: Table) {
    match out.get_mut(key) {
        Some(Value::Table(existing)) => existing.extend(t),
        _ => {
            out.insert(key.into(), Value::Table(t));
        }
    }
}

/// What `global` gives the jobs (Prometheus applies it in `SetDirectory`/
/// `UnmarshalYAML`: intervals, limits, protocols).
struct Global {
    /// wasmon's `[global]`.
    table: Table,
    scrape_interval: Duration,
    scrape_timeout: Duration,
    /// Limits a job without its own takes (`body_size_limit`, `sample_limit`, ...).
    job_defaults: Table,
    /// `metric_name_validation_scheme: legacy`.
    utf8_disabled: bool,
}

fn global(ctx: &mut Ctx, node: &Node) -> Result<Global, ImportError> {
    let mut t = map(ctx, node, "global", &[keys::GLOBAL], "config.GlobalConfig")?;
    let interval_set = t.contains_key("scrape_interval");
    let interval = duration_of(&t, "scrape_interval").unwrap_or(Duration::from_secs(60));
    let timeout = match duration_of(&t, "scrape_timeout") {
        Some(d) => {
            if d > interval {
                let at = node.get("scrape_timeout").unwrap_or(node);
                return Err(ctx.error(at, "global scrape timeout greater than scrape interval"));
            }
            d
        }
        // Prometheus: the default 10s, or the interval when that is shorter.
        None => Duration::from_secs(10).min(interval),
    };
    if interval_set && timeout < Duration::from_secs(10) {
        t.insert("scrape_timeout".into(), human(timeout));
    }
    let mut job_defaults = Table::new();
    for k in keys::JOB_LIMITS {
        if let Some(v) = t.remove(*k) {
            job_defaults.insert((*k).into(), v);
        }
    }
    checks::protocols(ctx, node.get("scrape_protocols"))?;
    let utf8_disabled = checks::name_schemes(ctx, node, None)?;
    Ok(Global {
        table: t,
        scrape_interval: interval,
        scrape_timeout: timeout,
        job_defaults,
        utf8_disabled,
    })
}

fn duration_of(t: &Table, key: &str) -> Option<Duration> {
    t.get(key)
        .and_then(Value::as_str)
        .and_then(|s| humantime::parse_duration(s).ok())
}

fn scrape_config(
    ctx: &mut Ctx,
    node: &Node,
    i: usize,
    global: &Global,
) -> Result<Table, ImportError> {
    if node.is_null() {
        return Err(ctx.error(node, "empty or null scrape config section"));
    }
    let path = format!("scrape_configs[{i}]");
    let mut job = map(
        ctx,
        node,
        &path,
        &[keys::JOB, keys::HTTP_CLIENT, keys::OTHER_SD],
        "config.ScrapeConfig",
    )?;
    let name = job
        .get("job_name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    // Prometheus reads the SD configs before it checks the job's name.
    checks::other_sds(ctx, node)?;
    if name.is_empty() {
        let at = node.get("job_name").unwrap_or(node);
        return Err(ctx.error(at, "job_name is empty"));
    }
    // Intervals as Prometheus sets them: the global's, the timeout capped
    // at the job's interval.
    let interval = duration_of(&job, "scrape_interval").unwrap_or(global.scrape_interval);
    match duration_of(&job, "scrape_timeout") {
        Some(t) if t > interval => {
            let at = node.get("scrape_timeout").unwrap_or(node);
            return Err(ctx.error(
                at,
                format!("scrape timeout greater than scrape interval for scrape config with job name {name:?}"),
            ));
        }
        Some(_) => {}
        None if global.scrape_timeout > interval => {
            job.insert("scrape_timeout".into(), human(interval));
        }
        None => {}
    }
    for (k, v) in &global.job_defaults {
        job.entry(k.clone()).or_insert_with(|| v.clone());
    }
    checks::protocols(ctx, node.get("scrape_protocols"))?;
    if let Some(f) = node.get("fallback_scrape_protocol") {
        let s = scalar(ctx, f, "config.ScrapeProtocol")?;
        checks::protocol(&s).map_err(|e| {
            ctx.error(
                f,
                format!("invalid fallback_scrape_protocol for scrape config with job name {name:?}: {e}"),
            )
        })?;
    }
    checks::name_schemes(ctx, node, Some(&name))?;
    if let Some(sc) = node.get("static_configs") {
        for item in sc.items() {
            if item.is_null() {
                return Err(ctx.error(item, "empty or null section in static_configs"));
            }
            for t in item.get("targets").map(Node::items).unwrap_or_default() {
                let s = t.as_str().unwrap_or_default();
                if s.is_empty() || s.contains('/') {
                    return Err(ctx.error(t, format!("{s:?} is not a valid hostname")));
                }
            }
        }
    }
    // What wasmon's config check would refuse, refused here at its line.
    // Through TOML text: `job_name` is `Spanned`, which only the text
    // deserializer gives.
    let text = toml::to_string(&job).map_err(|e| ctx.error(node, format!("job {name:?}: {e}")))?;
    let parsed: crate::config::ScrapeConfig = toml::from_str(&text)
        .map_err(|e: toml::de::Error| ctx.error(node, format!("job {name:?}: {}", e.message())))?;
    parsed
        .http_client()
        .validate()
        .map_err(|e| ctx.error(node, format!("job {name:?}: {e}")))?;
    if parsed.scheme != "http" && parsed.scheme != "https" {
        let at = node.get("scheme").unwrap_or(node);
        return Err(ctx.error(
            at,
            format!("scheme must be http or https, not {:?}", parsed.scheme),
        ));
    }
    checks::discovery(ctx, node, &parsed)?;
    Ok(job)
}

/// `alerting.alertmanagers` -> wasmon's `alertmanagers` URLs.
fn alertmanagers(ctx: &mut Ctx, alerting: &Node) -> Result<Vec<Value>, ImportError> {
    let _ = map(
        ctx,
        alerting,
        "alerting",
        &[keys::ALERTING],
        "config.AlertingConfig",
    )?;
    if let Some(rules) = alerting.get("alert_relabel_configs") {
        relabels(ctx, rules, "empty or null alert relabeling rule")?;
        if !rules.items().is_empty() {
            ctx.unsupported(
                rules,
                "alerting.alert_relabel_configs",
                "alerts are sent to external Alertmanagers unrelabeled",
            );
        }
    }
    let mut out = Vec::new();
    let Some(list) = alerting.get("alertmanagers") else {
        return Ok(out);
    };
    for (i, am) in list.items().iter().enumerate() {
        let path = format!("alerting.alertmanagers[{i}]");
        let t = map(
            ctx,
            am,
            &path,
            &[keys::ALERTMANAGER, keys::HTTP_CLIENT, keys::OTHER_SD],
            "config.AlertmanagerConfig",
        )?;
        if let Some(v) = am.get("api_version") {
            let s = scalar(ctx, v, "config.AlertmanagerAPIVersion")?;
            if s != "v2" {
                return Err(ctx.error(
                    v,
                    format!("expected Alertmanager api version to be one of [v2] but got {s}"),
                ));
            }
        }
        for (key, msg) in [
            (
                "relabel_configs",
                "empty or null Alertmanager target relabeling rule",
            ),
            (
                "alert_relabel_configs",
                "empty or null Alertmanager alert relabeling rule",
            ),
        ] {
            if let Some(rules) = am.get(key) {
                relabels(ctx, rules, msg)?;
                if !rules.items().is_empty() {
                    ctx.unsupported(
                        rules,
                        format!("{path}.{key}"),
                        "wasmon sends to each listed Alertmanager as it is, without relabeling",
                    );
                }
            }
        }
        // The HTTP client keys: checked as Prometheus does, not carried
        // (wasmon's forwarder has no per-Alertmanager client settings).
        let http = http_client_of(ctx, am, &t)?;
        http.validate().map_err(|e| ctx.error(am, e.to_string()))?;
        for e in am.map_entries() {
            let k = e.key.as_str().unwrap_or_default();
            if keys::is_http_client_key(k) && !e.value.is_null() {
                ctx.unsupported(
                    &e.key,
                    format!("{path}.{k}"),
                    "wasmon's Alertmanager forwarder has no per-Alertmanager HTTP client settings",
                );
            }
        }
        checks::other_sds(ctx, am)?;
        let scheme = t.get("scheme").and_then(Value::as_str).unwrap_or("http");
        let prefix = t.get("path_prefix").and_then(Value::as_str).unwrap_or("");
        let prefix = prefix.trim_end_matches('/');
        let prefix = if prefix.is_empty() || prefix.starts_with('/') {
            prefix.to_string()
        } else {
            format!("/{prefix}")
        };
        let timeout = t.get("timeout").cloned();
        let statics = am
            .get("static_configs")
            .map(Node::items)
            .unwrap_or_default();
        for sc in statics {
            if sc.is_null() {
                return Err(ctx.error(sc, "empty or null section in static_configs"));
            }
            let _ = map(
                ctx,
                sc,
                &format!("{path}.static_configs"),
                &[keys::STATIC],
                "targetgroup.Group",
            )?;
            if let Some(l) = sc.get("labels") {
                if !l.map_entries().is_empty() {
                    ctx.unsupported(
                        l,
                        format!("{path}.static_configs.labels"),
                        "labels of Alertmanager targets only feed relabel_configs, which wasmon does not apply",
                    );
                }
            }
            for target in sc.get("targets").map(Node::items).unwrap_or_default() {
                let host = scalar(ctx, target, "string")?;
                if host.is_empty() || host.contains('/') {
                    return Err(ctx.error(target, format!("{host:?} is not a valid hostname")));
                }
                let mut am_t = Table::new();
                am_t.insert(
                    "url".into(),
                    Value::String(format!("{scheme}://{host}{prefix}")),
                );
                if let Some(to) = &timeout {
                    am_t.insert("timeout".into(), to.clone());
                }
                out.push(Value::Table(am_t));
            }
        }
    }
    Ok(out)
}

fn relabels(ctx: &mut Ctx, list: &Node, empty_msg: &str) -> Result<Vec<Value>, ImportError> {
    if !list.is_null() && !matches!(list.value, Y::Seq(_)) {
        return Err(ctx.error(
            list,
            format!("cannot unmarshal {} into []*relabel.Config", list.kind()),
        ));
    }
    let mut out = Vec::new();
    for rule in list.items() {
        if rule.is_null() {
            return Err(ctx.error(rule, empty_msg));
        }
        let t = map(
            ctx,
            rule,
            "relabel_configs",
            &[keys::RELABEL],
            "relabel.Config",
        )?;
        if let Some(a) = rule.get("action") {
            if a.is_null() {
                return Err(ctx.error(a, "relabel action cannot be empty"));
            }
        }
        let cfg: crate::model::relabel::RelabelConfig = Value::Table(t.clone())
            .try_into()
            .map_err(|e: toml::de::Error| ctx.error(rule, e.message().to_string()))?;
        crate::model::relabel::Relabeler::new(cfg).map_err(|e| ctx.error(rule, e.to_string()))?;
        out.push(Value::Table(t));
    }
    Ok(out)
}

fn remote_write(ctx: &mut Ctx, list: &Node) -> Result<Vec<Value>, ImportError> {
    let mut out = Vec::new();
    let mut names = BTreeMap::new();
    for (i, rw) in list.items().iter().enumerate() {
        let path = format!("remote_write[{i}]");
        let mut t = remote_common(ctx, rw, &path, "write", &mut names)?;
        if let Some(m) = rw.get("protobuf_message") {
            let s = scalar(ctx, m, "string")?;
            match s.as_str() {
                "prometheus.WriteRequest" => {}
                "io.prometheus.write.v2.Request" => ctx.unsupported(
                    m,
                    format!("{path}.protobuf_message"),
                    "wasmon sends remote write 1.0 (prometheus.WriteRequest) only",
                ),
                _ => {
                    return Err(ctx.error(
                        m,
                        format!("invalid protobuf_message value: unknown remote write protobuf message {s}, supported: prometheus.WriteRequest, io.prometheus.write.v2.Request"),
                    ))
                }
            }
        }
        if let Some(q) = rw.get("queue_config") {
            checks::queue(ctx, q)?;
        }
        // Auth: wasmon's remote write has basic_auth and bearer_token; a
        // Bearer `authorization` is the same header.
        let http = http_client_of(ctx, rw, &t)?;
        http.validate().map_err(|e| {
            ctx.error(
                rw,
                e.to_string().replace(
                    "basic_auth, authorization, bearer_token and bearer_token_file",
                    "basic_auth, authorization, oauth2, sigv4, azuread or google_iam",
                ),
            )
        })?;
        if let Some(Value::Table(auth)) = t.remove("authorization") {
            let kind = auth.get("type").and_then(Value::as_str).unwrap_or("Bearer");
            match (kind, auth.get("credentials")) {
                ("Bearer", Some(c)) => {
                    t.insert("bearer_token".into(), c.clone());
                }
                _ => ctx.unsupported(
                    rw.get("authorization").unwrap_or(rw),
                    format!("{path}.authorization"),
                    "wasmon's remote write takes basic_auth or a literal bearer token (credentials), not this form",
                ),
            }
        }
        let mut dropped = Vec::new();
        for k in t.keys() {
            if keys::is_http_client_key(k) && k != "basic_auth" && k != "bearer_token" {
                dropped.push(k.clone());
            }
        }
        for k in dropped {
            t.remove(&k);
            let at = rw.get(&k).unwrap_or(rw);
            ctx.unsupported(
                at,
                format!("{path}.{k}"),
                "wasmon's remote write has no TLS, proxy or file-credential settings",
            );
        }
        if let Some(Value::Table(bt)) = t.get("basic_auth") {
            if bt.contains_key("password_file") {
                ctx.unsupported(
                    rw.get("basic_auth").unwrap_or(rw),
                    format!("{path}.basic_auth.password_file"),
                    "wasmon's remote write reads basic_auth.password_file as given",
                );
            }
        }
        out.push(Value::Table(t));
    }
    Ok(out)
}

/// What remote write and read share: a section, a URL, a unique name, no
/// reserved header.
fn remote_common(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    what: &str,
    names: &mut BTreeMap<String, ()>,
) -> Result<Table, ImportError> {
    if node.is_null() {
        return Err(ctx.error(node, format!("empty or null remote {what} config section")));
    }
    let (spec, ty) = if what == "write" {
        (keys::REMOTE_WRITE, "config.RemoteWriteConfig")
    } else {
        (keys::REMOTE_READ, "config.RemoteReadConfig")
    };
    let t = map(ctx, node, path, &[spec, keys::HTTP_CLIENT], ty)?;
    let url = t.get("url").and_then(Value::as_str).unwrap_or_default();
    if url.is_empty() {
        let at = node.get("url").unwrap_or(node);
        return Err(ctx.error(at, format!("url for remote_{what} is empty")));
    }
    if let Some(name) = t.get("name").and_then(Value::as_str) {
        if names.insert(name.to_string(), ()).is_some() {
            return Err(ctx.error(
                node.get("name").unwrap_or(node),
                format!("found multiple remote {what} configs with job name {name:?}"),
            ));
        }
    }
    checks::headers(ctx, node.get("headers"), false)?;
    Ok(t)
}

/// The HTTP client keys of a converted section, checked as Prometheus
/// checks them.
fn http_client_of(
    ctx: &Ctx,
    node: &Node,
    t: &Table,
) -> Result<crate::config::http_client::HttpClientConfig, ImportError> {
    let section: crate::config::http_client::HttpConfigSection = Value::Table(
        t.iter()
            .filter(|(k, _)| keys::is_http_client_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
    .try_into()
    .map_err(|e: toml::de::Error| ctx.error(node, e.message().to_string()))?;
    Ok(section.http_client())
}

fn remote_read(ctx: &mut Ctx, list: &Node) -> Result<(), ImportError> {
    let mut names = BTreeMap::new();
    for (i, rr) in list.items().iter().enumerate() {
        let path = format!("remote_read[{i}]");
        remote_common(ctx, rr, &path, "read", &mut names)?;
        ctx.unsupported(rr, path, "wasmon does not read from remote storage");
    }
    Ok(())
}

/// `storage.tsdb.retention` (3.x) is wasmon's `[storage]` retention; the rest
/// is reported.
fn storage(ctx: &mut Ctx, node: &Node) -> Result<Option<Table>, ImportError> {
    let t = map(
        ctx,
        node,
        "storage",
        &[keys::STORAGE],
        "config.StorageConfig",
    )?;
    let mut out = Table::new();
    let Some(Value::Table(tsdb)) = t.get("tsdb") else {
        return Ok(None);
    };
    let tsdb_node = node.get("tsdb").unwrap_or(node);
    if let Some(enc) = tsdb_node
        .get("chunk_encoding")
        .and_then(|c| c.get("floats"))
    {
        let s = scalar(ctx, enc, "string")?;
        if s != "xor" && s != "xor2" {
            return Err(ctx.error(enc, format!("'storage.tsdb.chunk_encoding.floats' must be 'xor' or 'xor2', or the field must be omitted entirely, got {s:?}")));
        }
    }
    if let Some(Value::Table(r)) = tsdb.get("retention") {
        let rn = tsdb_node.get("retention").unwrap_or(tsdb_node);
        if let Some(p) = rn.get("percentage") {
            let v = p.as_f64().unwrap_or(-1.0);
            if !(0.0..=100.0).contains(&v) {
                return Err(ctx.error(
                    p,
                    format!(
                        "'storage.tsdb.retention.percentage' must be in the range [0, 100], got {}",
                        p.as_str().unwrap_or("?")
                    ),
                ));
            }
        }
        if let Some(v) = r.get("time") {
            out.insert("retention_time".into(), v.clone());
        }
        if let Some(v) = r.get("size") {
            out.insert("retention_size".into(), v.clone());
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

fn human(d: Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

/// A scalar as text, or yaml.v2's error for another kind.
fn scalar(ctx: &Ctx, node: &Node, ty: &str) -> Result<String, ImportError> {
    match &node.value {
        Y::Scalar { text, .. } => Ok(text.clone()),
        Y::Null => Ok(String::new()),
        _ => Err(ctx.error(node, format!("cannot unmarshal {} into {ty}", node.kind()))),
    }
}

/// A map section read through its key tables: carried keys converted to
/// wasmon's TOML, unsupported ones reported, unknown ones refused.
fn map(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    specs: &[Spec],
    ty: &str,
) -> Result<Table, ImportError> {
    let mut out = Table::new();
    match &node.value {
        Y::Null => return Ok(out),
        Y::Map(_) => {}
        _ => return Err(ctx.error(node, format!("cannot unmarshal {} into {ty}", node.kind()))),
    }
    for e in node.map_entries() {
        let key = e.key.as_str().unwrap_or_default();
        let Some(kind) = specs
            .iter()
            .find_map(|s| s.iter().find(|(k, _)| *k == key).map(|(_, kind)| kind))
        else {
            return Err(ctx.error(&e.key, format!("field {key} not found in type {ty}")));
        };
        let full = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        };
        match kind {
            K::Unsupported(why) => {
                if !is_default(&e.value) {
                    ctx.unsupported(&e.key, full, *why);
                }
                continue;
            }
            K::UnsupportedUnless(same, why) => {
                let v = e.value.as_str().unwrap_or_default();
                if !is_default(&e.value) && v != *same {
                    ctx.unsupported(&e.key, full, *why);
                }
                continue;
            }
            _ => {}
        }
        if e.value.is_null() {
            continue;
        }
        if let Some(v) = value(ctx, &e.value, &full, kind)? {
            out.insert(key.to_string(), v);
        }
    }
    Ok(out)
}

/// `false`, `0`, `""`, `[]`, `{}`: what yaml.v2 reads as the zero value,
/// which for every unsupported key is the behaviour wasmon has anyway.
fn is_default(node: &Node) -> bool {
    match &node.value {
        Y::Null => true,
        Y::Scalar { text, quoted } => {
            text.is_empty() || (!quoted && (node.as_bool() == Some(false) || text == "0"))
        }
        Y::Seq(s) => s.is_empty(),
        Y::Map(m) => m.is_empty(),
    }
}

fn value(ctx: &mut Ctx, node: &Node, path: &str, kind: &K) -> Result<Option<Value>, ImportError> {
    Ok(Some(match kind {
        K::Str => Value::String(scalar(ctx, node, "string")?),
        // wasmon expands `${VAR}` in credentials; Prometheus does not.
        K::Secret => Value::String(scalar(ctx, node, "config.Secret")?.replace("${", "$${")),
        K::Expanded => Value::String(scalar(ctx, node, "string")?.replace("${", "$${")),
        K::Path => Value::String(ctx.path(&scalar(ctx, node, "string")?)),
        K::Bool => Value::Boolean(node.as_bool().ok_or_else(|| {
            ctx.error(node, format!("cannot unmarshal {} into bool", shown(node)))
        })?),
        K::Uint => {
            let v = node.as_i64().filter(|v| *v >= 0).ok_or_else(|| {
                ctx.error(node, format!("cannot unmarshal {} into uint", shown(node)))
            })?;
            Value::Integer(v)
        }
        K::Dur | K::PromDur => {
            let s = scalar(ctx, node, "model.Duration")?;
            let d =
                crate::model::duration::parse(&s).map_err(|e| ctx.error(node, format!("{e}")))?;
            match kind {
                K::Dur => human(d),
                _ => Value::String(crate::model::duration::format(d)),
            }
        }
        K::Bytes => {
            let s = scalar(ctx, node, "units.Base2Bytes")?;
            let n = checks::base2_bytes(&s).map_err(|e| ctx.error(node, e))?;
            Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
        }
        K::StrList => {
            if !matches!(node.value, Y::Seq(_)) {
                return Err(ctx.error(
                    node,
                    format!("cannot unmarshal {} into []string", shown(node)),
                ));
            }
            let mut a = Vec::new();
            for i in node.items() {
                a.push(Value::String(scalar(ctx, i, "string")?));
            }
            Value::Array(a)
        }
        K::PathList => {
            let Some(Value::Array(a)) = value(ctx, node, path, &K::StrList)? else {
                return Ok(None);
            };
            let paths = a
                .iter()
                .map(|v| Value::String(ctx.path(v.as_str().unwrap_or_default())))
                .collect();
            Value::Array(paths)
        }
        K::LabelMap => {
            let mut t = Table::new();
            for e in node.map_entries() {
                let k = scalar(ctx, &e.key, "model.LabelName")?;
                if !crate::model::is_legacy_label_name(&k) {
                    return Err(ctx.error(&e.key, format!("{k:?} is not a valid label name")));
                }
                let v = scalar(ctx, &e.value, "model.LabelValue")?;
                if v.contains('\u{FFFD}') {
                    return Err(ctx.error(&e.value, format!("{v:?} is not a valid label value")));
                }
                t.insert(k, Value::String(v));
            }
            if !matches!(node.value, Y::Map(_)) {
                return Err(ctx.error(
                    node,
                    format!("cannot unmarshal {} into model.LabelSet", node.kind()),
                ));
            }
            Value::Table(t)
        }
        K::StrMap(secret) => {
            if !matches!(node.value, Y::Map(_)) {
                return Err(ctx.error(
                    node,
                    format!("cannot unmarshal {} into map[string]string", node.kind()),
                ));
            }
            let mut t = Table::new();
            for e in node.map_entries() {
                let k = scalar(ctx, &e.key, "string")?;
                let v = scalar(ctx, &e.value, "string")?;
                let v = if *secret { v.replace("${", "$${") } else { v };
                t.insert(k, Value::String(v));
            }
            Value::Table(t)
        }
        K::Params => {
            let mut t = Table::new();
            for e in node.map_entries() {
                let k = scalar(ctx, &e.key, "string")?;
                let Some(Value::Array(a)) = value(ctx, &e.value, path, &K::StrList)? else {
                    continue;
                };
                t.insert(k, Value::Array(a));
            }
            Value::Table(t)
        }
        K::Relabels(empty) => Value::Array(relabels(ctx, node, empty)?),
        K::Table(specs, ty) => Value::Table(map(ctx, node, path, specs, ty)?),
        K::Tables(specs, ty, empty) => {
            if !matches!(node.value, Y::Seq(_)) {
                return Err(ctx.error(
                    node,
                    format!("cannot unmarshal {} into []*{ty}", node.kind()),
                ));
            }
            let mut a = Vec::new();
            for (i, item) in node.items().iter().enumerate() {
                if item.is_null() {
                    return Err(ctx.error(item, *empty));
                }
                a.push(Value::Table(map(
                    ctx,
                    item,
                    &format!("{path}[{i}]"),
                    specs,
                    ty,
                )?));
            }
            Value::Array(a)
        }
        K::TlsVersion => {
            let v = scalar(ctx, node, "config.TLSVersion")?;
            match v.as_str() {
                "TLS12" | "TLS13" => Value::String(v),
                "TLS10" | "TLS11" => {
                    ctx.unsupported(
                        node,
                        path,
                        format!("wasmon speaks TLS 1.2 and 1.3 only: {v} is not offered, the minimum is TLS12"),
                    );
                    return Ok(None);
                }
                _ => return Err(ctx.error(node, format!("unknown TLS version: {v}"))),
            }
        }
        K::Checked => return Ok(None),
        K::Unsupported(_) | K::UnsupportedUnless(..) => return Ok(None),
    }))
}

/// A value as yaml.v2 quotes it in an unmarshal error (`!!str \`abc\``).
fn shown(node: &Node) -> String {
    match &node.value {
        Y::Scalar { text, .. } => format!("!!str `{text}`"),
        _ => node.kind().to_string(),
    }
}
