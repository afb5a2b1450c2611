//! Prometheus' own checks of what it reads (`UnmarshalYAML`/`Validate` in
//! `config/config.go` and the SD packages), with its texts, at the line of
//! the key they are about. Values are never quoted when they may be
//! credentials.

use super::super::yaml::Node;
use super::super::{Ctx, ImportError};
use super::scalar;

/// `patRulePath`: a wildcard only in the last path element.
pub fn rule_path_ok(p: &str) -> bool {
    match p.find('*') {
        None => true,
        Some(i) => !p[i..].contains('/'),
    }
}

const PROTOCOLS: [&str; 5] = [
    "OpenMetricsText0.0.1",
    "OpenMetricsText1.0.0",
    "PrometheusProto",
    "PrometheusText0.0.4",
    "PrometheusText1.0.0",
];

pub fn protocol(s: &str) -> Result<(), String> {
    if PROTOCOLS.contains(&s) {
        Ok(())
    } else {
        Err(format!(
            "unknown scrape protocol {s}, supported: [{}]",
            PROTOCOLS.join(" ")
        ))
    }
}

/// `scrape_protocols`: known, unique, not empty.
pub fn protocols(ctx: &Ctx, node: Option<&Node>) -> Result<(), ImportError> {
    let Some(node) = node else { return Ok(()) };
    if node.is_null() {
        return Ok(());
    }
    let mut seen = Vec::new();
    for p in node.items() {
        let s = scalar(ctx, p, "config.ScrapeProtocol")?;
        protocol(&s).map_err(|e| ctx.error(p, format!("scrape_protocols: {e}")))?;
        if seen.contains(&s) {
            let all: Vec<&str> = node.items().iter().filter_map(Node::as_str).collect();
            return Err(ctx.error(
                p,
                format!(
                    "duplicated protocol in scrape_protocols, got [{}]",
                    all.join(" ")
                ),
            ));
        }
        seen.push(s);
    }
    if seen.is_empty() {
        return Err(ctx.error(node, "scrape_protocols cannot be empty"));
    }
    Ok(())
}

/// `metric_name_validation_scheme` / `metric_name_escaping_scheme`, of the
/// global section (`job` None) or a job. Returns whether names are legacy.
pub fn name_schemes(ctx: &Ctx, node: &Node, job: Option<&str>) -> Result<bool, ImportError> {
    let mut legacy = false;
    if let Some(v) = node.get("metric_name_validation_scheme") {
        let s = scalar(ctx, v, "string")?;
        match s.as_str() {
            "" | "utf8" => {}
            "legacy" => legacy = true,
            _ => {
                let what = if job.is_some() {
                    "scrape config"
                } else {
                    "global"
                };
                return Err(ctx.error(
                    v,
                    format!("unknown {what} name validation method specified, must be either '', 'legacy' or 'utf8', got {s}"),
                ));
            }
        }
    }
    if let Some(v) = node.get("metric_name_escaping_scheme") {
        let s = scalar(ctx, v, "string")?;
        match s.as_str() {
            "" | "underscores" | "dots" | "values" => {}
            "allow-utf-8" if legacy => {
                return Err(ctx.error(
                    v,
                    "utf8 metric names requested but validation scheme is not set to UTF8",
                ))
            }
            "allow-utf-8" => {}
            _ => {
                let what = if job.is_some() {
                    "scrape config"
                } else {
                    "global"
                };
                return Err(ctx.error(
                    v,
                    format!("unknown {what} name escaping method specified, must be one of 'allow-utf-8', 'underscores', 'dots', or 'values', got {s:?}"),
                ));
            }
        }
    }
    Ok(legacy)
}

/// `units.ParseBase2Bytes`: a number and a unit (`B`, `KB`/`KiB` = 1024 ...).
pub fn base2_bytes(s: &str) -> Result<u64, String> {
    let bad = || format!("units: invalid Base2Bytes {s:?}: a number and a unit such as 100MB");
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Err(bad());
    }
    let n: u64 = s[..digits].parse().map_err(|_| bad())?;
    let mult: u64 = match &s[digits..] {
        "B" => 1,
        "KB" | "KiB" => 1 << 10,
        "MB" | "MiB" => 1 << 20,
        "GB" | "GiB" => 1 << 30,
        "TB" | "TiB" => 1 << 40,
        "PB" | "PiB" => 1 << 50,
        "EB" | "EiB" => 1 << 60,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Remote write/read `headers`: no `Authorization`, no reserved header.
pub fn headers(ctx: &Ctx, node: Option<&Node>, tracing: bool) -> Result<(), ImportError> {
    const RESERVED: &[&str] = &[
        "host",
        "content-encoding",
        "content-length",
        "content-type",
        "user-agent",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "www-authenticate",
        "accept-encoding",
        "x-prometheus-remote-write-version",
        "x-prometheus-remote-read-version",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
    ];
    let Some(node) = node else { return Ok(()) };
    for e in node.map_entries() {
        let h = e.key.as_str().unwrap_or_default();
        let lower = h.to_ascii_lowercase();
        if lower == "authorization" {
            return Err(ctx.error(
                &e.key,
                if tracing {
                    "custom authorization header configuration is not yet supported"
                } else {
                    "authorization header must be changed via the basic_auth, authorization, oauth2, sigv4, azuread or google_iam parameter"
                },
            ));
        }
        if RESERVED.contains(&lower.as_str()) {
            return Err(ctx.error(
                &e.key,
                format!("{h} is a reserved header. It must not be changed"),
            ));
        }
    }
    Ok(())
}

/// `queue_config`'s checks (`QueueConfig.UnmarshalYAML`), on the values
/// given (an absent key has Prometheus' default, which is valid).
pub fn queue(ctx: &Ctx, q: &Node) -> Result<(), ImportError> {
    let int = |k: &str| q.get(k).map(|n| (n, n.as_i64().unwrap_or(0)));
    let dur = |k: &str| {
        q.get(k)
            .and_then(Node::as_str)
            .and_then(|s| crate::model::duration::parse(s).ok())
    };
    if let Some((n, v)) = int("max_shards") {
        if v <= 0 {
            return Err(ctx.error(n, "remote write queue max_shards must be positive"));
        }
    }
    if let Some((n, v)) = int("min_shards") {
        if v <= 0 {
            return Err(ctx.error(n, "remote write queue min_shards must be positive"));
        }
        // 2.42's default (and wasmon's); 3.x lowered it to 50.
        let max = int("max_shards").map(|(_, v)| v).unwrap_or(200);
        if v > max {
            return Err(ctx.error(
                n,
                "remote write queue min_shards must not be greater than max_shards",
            ));
        }
    }
    if let Some((n, v)) = int("max_samples_per_send") {
        if v <= 0 {
            return Err(ctx.error(
                n,
                "remote write queue max_samples_per_send must be positive",
            ));
        }
    }
    if let Some((n, v)) = int("capacity") {
        if v <= 0 {
            return Err(ctx.error(n, "remote write queue capacity must be positive"));
        }
    }
    let min = dur("min_backoff").unwrap_or(std::time::Duration::from_millis(30));
    let max = dur("max_backoff").unwrap_or(std::time::Duration::from_secs(5));
    if max < min {
        let at = q.get("max_backoff").or(q.get("min_backoff")).unwrap_or(q);
        return Err(ctx.error(
            at,
            "remote write queue max_backoff must not be less than min_backoff",
        ));
    }
    Ok(())
}

/// `tracing`'s checks (it is not carried).
pub fn tracing(ctx: &Ctx, node: &Node) -> Result<(), ImportError> {
    const KEYS: &[&str] = &[
        "client_type",
        "endpoint",
        "sampling_fraction",
        "insecure",
        "tls_config",
        "headers",
        "compression",
        "timeout",
    ];
    unknown_keys(ctx, node, KEYS, "config.TracingConfig")?;
    if node.is_null() {
        return Ok(());
    }
    if let Some(c) = node.get("client_type") {
        let s = scalar(ctx, c, "string")?;
        if s != "grpc" && s != "http" {
            return Err(ctx.error(
                c,
                format!("expected tracing client type to be to be grpc or http, but got {s}"),
            ));
        }
    }
    let endpoint = node.get("endpoint").and_then(Node::as_str).unwrap_or("");
    if endpoint.is_empty() {
        return Err(ctx.error(node, "tracing endpoint must be set"));
    }
    if let Some(c) = node.get("compression") {
        let s = scalar(ctx, c, "string")?;
        if !s.is_empty() && s != "gzip" {
            return Err(ctx.error(
                c,
                format!("invalid compression type {s} provided, valid options: gzip"),
            ));
        }
    }
    headers(ctx, node.get("headers"), true)
}

/// `otlp`'s checks (it is not carried).
pub fn otlp(ctx: &Ctx, node: &Node, utf8_disabled: bool) -> Result<(), ImportError> {
    const KEYS: &[&str] = &[
        "promote_all_resource_attributes",
        "promote_resource_attributes",
        "ignore_resource_attributes",
        "translation_strategy",
        "keep_identifying_resource_attributes",
        "convert_histograms_to_nhcb",
        "promote_scope_metadata",
        "label_name_underscore_sanitization",
        "label_name_preserve_multiple_underscores",
    ];
    unknown_keys(ctx, node, KEYS, "config.OTLPConfig")?;
    let all = node
        .get("promote_all_resource_attributes")
        .and_then(Node::as_bool)
        .unwrap_or(false);
    let attrs = |k: &str| -> Result<(), ImportError> {
        let Some(list) = node.get(k) else {
            return Ok(());
        };
        let adjective = if k == "promote_resource_attributes" {
            "promoted"
        } else {
            "ignored"
        };
        let mut seen = Vec::new();
        for a in list.items() {
            let s = a.as_str().unwrap_or_default().trim().to_string();
            if s.is_empty() {
                return Err(ctx.error(
                    a,
                    format!("invalid '{k}': empty {adjective} OTel resource attribute"),
                ));
            }
            if seen.contains(&s) {
                return Err(ctx.error(
                    a,
                    format!("invalid '{k}': duplicated {adjective} OTel resource attribute {s:?}"),
                ));
            }
            seen.push(s);
        }
        Ok(())
    };
    if let Some(p) = node.get("promote_resource_attributes") {
        if all && !p.items().is_empty() {
            return Err(ctx.error(p, "'promote_all_resource_attributes' and 'promote_resource_attributes' cannot be configured simultaneously"));
        }
    }
    attrs("ignore_resource_attributes")?;
    if let Some(i) = node.get("ignore_resource_attributes") {
        if !all && !i.items().is_empty() {
            return Err(ctx.error(i, "'ignore_resource_attributes' cannot be configured unless 'promote_all_resource_attributes' is true"));
        }
    }
    attrs("promote_resource_attributes")?;
    if let Some(t) = node.get("translation_strategy") {
        let s = scalar(ctx, t, "string")?;
        let known = [
            "UnderscoreEscapingWithSuffixes",
            "UnderscoreEscapingWithoutSuffixes",
            "NoUTF8EscapingWithSuffixes",
            "NoTranslation",
        ];
        if !known.contains(&s.as_str()) {
            return Err(ctx.error(t, format!("unsupported OTLP translation strategy {s:?}")));
        }
        if utf8_disabled && (s.starts_with("NoUTF8") || s == "NoTranslation") {
            return Err(ctx.error(
                t,
                format!("OTLP translation strategy {s:?} is not allowed when UTF8 is disabled"),
            ));
        }
    }
    Ok(())
}

fn unknown_keys(ctx: &Ctx, node: &Node, keys: &[&str], ty: &str) -> Result<(), ImportError> {
    if !node.is_null() && node.map_entries().is_empty() && !matches!(node.value, super::Y::Map(_)) {
        return Err(ctx.error(node, format!("cannot unmarshal {} into {ty}", node.kind())));
    }
    for e in node.map_entries() {
        let k = e.key.as_str().unwrap_or_default();
        if !keys.contains(&k) {
            return Err(ctx.error(&e.key, format!("field {k} not found in type {ty}")));
        }
    }
    Ok(())
}

/// The job's SD configs wasmon has, checked by wasmon's own code (the same
/// checks as Prometheus'), at each entry's line.
pub fn discovery(
    ctx: &Ctx,
    job: &Node,
    parsed: &crate::config::ScrapeConfig,
) -> Result<(), ImportError> {
    let items = |k: &str| job.get(k).map(Node::items).unwrap_or_default();
    for (sd, node) in parsed
        .kubernetes_sd_configs
        .iter()
        .zip(items("kubernetes_sd_configs"))
    {
        sd.validate().map_err(|e| ctx.error(node, e.to_string()))?;
        sd.http_client()
            .validate()
            .map_err(|e| ctx.error(node, e.to_string()))?;
    }
    for (sd, node) in parsed.dns_sd_configs.iter().zip(items("dns_sd_configs")) {
        sd.validate()
            .map_err(|e| ctx.error(node, format!("{e:#}")))?;
    }
    for (sd, node) in parsed.http_sd_configs.iter().zip(items("http_sd_configs")) {
        sd.http_client()
            .validate()
            .map_err(|e| ctx.error(node, e.to_string()))?;
        url_check(ctx, node.get("url").unwrap_or(node), &sd.url)?;
    }
    for (sd, node) in parsed.file_sd_configs.iter().zip(items("file_sd_configs")) {
        for f in &sd.files {
            let ok = [".json", ".yml", ".yaml"].iter().any(|e| f.ends_with(e));
            if !ok {
                return Err(ctx.error(
                    node,
                    format!("invalid file extension for file SD config {f:?}: must be .json, .yml or .yaml"),
                ));
            }
        }
    }
    Ok(())
}

/// An SD's URL: http(s) with a host (`http.SDConfig.UnmarshalYAML`).
fn url_check(ctx: &Ctx, node: &Node, url: &str) -> Result<(), ImportError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if scheme != "http" && scheme != "https" {
        return Err(ctx.error(node, "URL scheme must be 'http' or 'https'"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() {
        return Err(ctx.error(node, "host is missing in URL"));
    }
    Ok(())
}

/// What Prometheus refuses in the service discoveries wasmon does not
/// have (they are reported, not carried; a file Prometheus would not load
/// must not import either): required keys, enumerated values, URLs, and
/// the HTTP client's one-credential rule.
pub fn other_sds(ctx: &Ctx, job: &Node) -> Result<(), ImportError> {
    for e in job.map_entries() {
        let key = e.key.as_str().unwrap_or_default();
        let Some(sd) = key.strip_suffix("_sd_configs") else {
            continue;
        };
        if matches!(sd, "file" | "http" | "dns" | "kubernetes") {
            continue;
        }
        for item in e.value.items() {
            if item.is_null() {
                return Err(ctx.error(item, format!("empty or null section in {key}")));
            }
            other_sd(ctx, sd, item)?;
        }
    }
    Ok(())
}

fn other_sd(ctx: &Ctx, sd: &str, n: &Node) -> Result<(), ImportError> {
    let s = |k: &str| n.get(k).and_then(Node::as_str).unwrap_or("").to_string();
    let set = |k: &str| {
        n.get(k)
            .is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
    };
    let at = |k: &str| n.get(k).unwrap_or(n);
    // The HTTP client's credential rules, for every SD that has one.
    let auths = [
        "basic_auth",
        "authorization",
        "bearer_token",
        "bearer_token_file",
        "oauth2",
    ];
    let n_auth = auths.iter().filter(|k| set(k)).count();
    if set("bearer_token") && set("bearer_token_file") {
        return Err(ctx.error(
            n,
            "at most one of bearer_token & bearer_token_file must be configured",
        ));
    }
    if n_auth > 1 {
        return Err(ctx.error(n, "at most one of basic_auth, oauth2, bearer_token & bearer_token_file must be configured"));
    }
    let one_of = |k: &str, allowed: &[&str]| -> Result<(), ImportError> {
        let v = s(k);
        if !allowed.contains(&v.as_str()) {
            return Err(ctx.error(
                at(k),
                format!(
                    "unknown {sd} SD {k} {v:?}, must be one of {}",
                    allowed.join(", ")
                ),
            ));
        }
        Ok(())
    };
    let required = |k: &str| -> Result<(), ImportError> {
        if !set(k) {
            return Err(ctx.error(at(k), format!("{sd} SD configuration requires {k}")));
        }
        Ok(())
    };
    let url = |k: &str| -> Result<(), ImportError> {
        let v = s(k);
        let (scheme, rest) = v.split_once("://").unwrap_or(("", ""));
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        if scheme.is_empty() || host.is_empty() {
            return Err(ctx.error(at(k), format!("{sd} SD {k} {v:?} is not a valid URL")));
        }
        if scheme != "http" && scheme != "https" {
            return Err(ctx.error(at(k), "URL scheme must be 'http' or 'https'"));
        }
        Ok(())
    };
    match sd {
        "azure" => {
            let method = s("authentication_method");
            one_of(
                "authentication_method",
                &["", "OAuth", "ManagedIdentity", "SDK"],
            )?;
            required("subscription_id")?;
            if method.is_empty() || method == "OAuth" {
                required("tenant_id")?;
                required("client_id")?;
                required("client_secret")?;
            }
        }
        "ec2" => {
            for f in n.get("filters").map(Node::items).unwrap_or_default() {
                if f.get("values")
                    .map(Node::items)
                    .unwrap_or_default()
                    .is_empty()
                {
                    return Err(ctx.error(f, "EC2 SD configuration filter values cannot be empty"));
                }
            }
        }
        "eureka" => {
            required("server")?;
            url("server")?;
        }
        "hetzner" => one_of("role", &["robot", "hcloud"])?,
        "ionos" => required("datacenter_id")?,
        "kuma" => required("server")?,
        "marathon" => {
            if n.get("servers")
                .map(Node::items)
                .unwrap_or_default()
                .is_empty()
            {
                return Err(ctx.error(
                    at("servers"),
                    "marathon_sd: must contain at least one Marathon server",
                ));
            }
            if set("auth_token") && set("auth_token_file") {
                return Err(ctx.error(
                    n,
                    "marathon_sd: at most one of auth_token & auth_token_file must be configured",
                ));
            }
            if (set("auth_token") || set("auth_token_file")) && n_auth > 0 {
                return Err(ctx.error(n, "marathon_sd: at most one of bearer_token, bearer_token_file, auth_token, auth_token_file, basic_auth & authorization must be configured"));
            }
        }
        "oci" => one_of(
            "auth",
            &["", "user", "instance_principal", "workload_identity"],
        )?,
        "openstack" => {
            one_of("role", &["hypervisor", "instance", "loadbalancer"])?;
            one_of("availability", &["", "public", "admin", "internal"])?;
        }
        "outscale" => {
            required("region")?;
            required("access_key")?;
            if set("secret_key") == set("secret_key_file") {
                return Err(ctx.error(n, "outscale SD configuration requires exactly one of secret_key and secret_key_file"));
            }
        }
        "ovhcloud" => {
            one_of("service", &["vps", "dedicated_server"])?;
            for k in [
                "endpoint",
                "application_key",
                "application_secret",
                "consumer_key",
            ] {
                required(k)?;
            }
        }
        "puppetdb" => {
            required("url")?;
            url("url")?;
            required("query")?;
        }
        "scaleway" => {
            one_of("role", &["instance", "baremetal"])?;
            required("project_id")?;
            required("access_key")?;
            if set("secret_key") == set("secret_key_file") {
                return Err(ctx.error(
                    n,
                    "exactly one of secret_key or secret_key_file must be configured",
                ));
            }
        }
        "stackit" => {
            let e = s("endpoint");
            if !e.is_empty() {
                url("endpoint")?;
            }
        }
        "uyuni" => {
            required("server")?;
        }
        _ => {}
    }
    Ok(())
}
