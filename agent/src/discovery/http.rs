//! HTTP-based discovery (`http_sd_configs`, Prometheus' `discovery/http`):
//! GET a URL every `refresh_interval` with the job's HTTP client keys; the
//! answer is a JSON list of `{targets, labels}` groups. Each group gets
//! source `url:index` and the label `__meta_url`.
//!
//! A failed look (a refused connection, a non-200 status, another content
//! type, a body too large or not parsable, a bad target) keeps the last
//! good groups and says why in the [`Status`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::watch;

use super::{publish, Groups, Provider, Status, TargetGroup};
use crate::config::discovery::HttpSdConfig;
use crate::config::http_client::{Credentials, HttpClientError};
use crate::config::scrape::StaticConfig;

/// The label every group gets: the URL it came from.
pub const URL_LABEL: &str = "__meta_url";

/// Largest answer read. Prometheus sets none; a list of 100k targets with
/// labels is a few MB, so this only stops a runaway or hostile endpoint
/// from filling the agent's memory.
pub const MAX_BODY: usize = 16 << 20;

/// Prometheus' `matchContentType`: JSON, optionally with a UTF-8 charset.
static JSON_CONTENT_TYPE: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"^(?i:application/json(;\s*charset=("utf-8"|utf-8))?)$"#)
        .expect("a valid regex")
});

/// Why a look at the URL failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpSdError {
    #[error("{0}")]
    Credentials(#[from] HttpClientError),
    #[error("{0}")]
    Request(String),
    #[error("server returned HTTP status {0}")]
    Status(String),
    #[error("unsupported content type {0:?}")]
    ContentType(String),
    #[error("the answer is larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error("invalid JSON target groups: {0}")]
    Json(#[from] serde_json::Error),
    #[error("group {group}: target {target:?} must be host:port")]
    Target { group: usize, target: String },
    #[error("url {url:?}: {why}")]
    Url { url: String, why: &'static str },
}

/// Prometheus' checks of `url` at config load: http or https, with a host.
pub fn check_url(url: &str) -> Result<(), HttpSdError> {
    let bad = |why| HttpSdError::Url {
        url: url.to_string(),
        why,
    };
    let parsed = reqwest::Url::parse(url).map_err(|_| bad("not a URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(())
}

/// True if `content_type` is one Prometheus accepts.
pub fn is_json_content_type(content_type: &str) -> bool {
    JSON_CONTENT_TYPE.is_match(content_type.trim())
}

/// One look at `sd.url`: the groups it serves now.
pub async fn refresh(
    client: &reqwest::Client,
    credentials: &Credentials,
    sd: &HttpSdConfig,
) -> Result<Vec<TargetGroup>, HttpSdError> {
    let request_error =
        |e: reqwest::Error| HttpSdError::Request(format!("{:#}", anyhow::Error::from(e)));
    let mut req = client
        .get(&sd.url)
        // As Prometheus: the client's timeout is the refresh interval.
        .timeout(sd.refresh_interval)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            wasmon_gofmt::format_float(sd.refresh_interval.as_secs_f64(), 'f', -1),
        );
    if let Some(auth) = credentials.header_value().await? {
        req = req.header(reqwest::header::AUTHORIZATION, auth);
    }
    let resp = req.send().await.map_err(request_error)?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(HttpSdError::Status(resp.status().to_string()));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if !is_json_content_type(&content_type) {
        return Err(HttpSdError::ContentType(content_type));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(HttpSdError::TooLarge);
    }
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(request_error)?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpSdError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    parse(&sd.url, &body)
}

/// The groups of an answer from `url`, checked as Prometheus checks them
/// (unknown keys refused, label names valid) and a target never a URL.
pub fn parse(url: &str, body: &[u8]) -> Result<Vec<TargetGroup>, HttpSdError> {
    let groups: Vec<StaticConfig> = serde_json::from_slice(body)?;
    groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| {
            let mut labels = g.labels;
            labels.insert(URL_LABEL.into(), url.into());
            let targets = g
                .targets
                .into_iter()
                .map(|t| {
                    if t.is_empty() || t.contains('/') {
                        return Err(HttpSdError::Target {
                            group: i,
                            target: t,
                        });
                    }
                    Ok(BTreeMap::from([("__address__".to_string(), t)]))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(TargetGroup {
                source: format!("{url}:{i}"),
                targets,
                labels,
            })
        })
        .collect()
}

/// Polls one `http_sd_configs` entry. `base` resolves credential and
/// certificate files. The task ends when the receiver is dropped.
pub fn start(base: PathBuf, sd: HttpSdConfig, status: Arc<Status>) -> Provider {
    let (tx, rx) = watch::channel::<Groups>(Arc::default());
    let provider = Provider {
        groups: rx,
        status: status.clone(),
    };
    let resolve = |p: &Path| base.join(p);
    let keys = sd.http_client();
    let client = match keys.build(&resolve) {
        Ok(c) => c,
        Err(e) => {
            // Checked at config load; a file gone since is reported here.
            tracing::error!(url = %sd.url, error = %e, "http_sd: cannot build the client");
            status.failed(e);
            return provider;
        }
    };
    let credentials = keys.credentials().resolved(&resolve);
    tokio::spawn(async move {
        // Prometheus refuses intervals under 1s nowhere; a busy loop is
        // still no use.
        let mut tick = tokio::time::interval(sd.refresh_interval.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = tx.closed() => return,
            }
            let look = tokio::select! {
                r = refresh(&client, &credentials, &sd) => r,
                _ = tx.closed() => return,
            };
            match look {
                Ok(groups) => {
                    status.succeeded(groups.iter().map(|g| g.targets.len()).sum());
                    publish(&tx, groups);
                }
                Err(e) => {
                    tracing::warn!(url = %sd.url, error = %e, "http_sd: keeping the last good targets");
                    status.failed(e);
                }
            }
        }
    });
    provider
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Prometheus' TestContentTypeRegex cases.
    #[test]
    fn content_types_as_prometheus_accepts_them() {
        let cases = [
            ("application/json;charset=utf-8", true),
            ("application/json;charset=UTF-8", true),
            ("Application/JSON;Charset=\"utf-8\"", true),
            ("application/json; charset=\"utf-8\"", true),
            ("application/json", true),
            ("application/jsonl; charset=\"utf-8\"", false),
            ("application/json;charset=UTF-9", false),
            ("application /json;charset=UTF-8", false),
            ("application/ json;charset=UTF-8", false),
            ("application/json;", false),
            ("charset=UTF-8", false),
        ];
        for (header, want) in cases {
            assert_eq!(is_json_content_type(header), want, "{header}");
        }
    }

    #[test]
    fn groups_get_their_source_and_url_and_bad_ones_are_refused() {
        let url = "http://127.0.0.1:1/sd";
        let body = br#"[{"labels": {"__meta_datacenter": "bru1"}, "targets": ["127.0.0.1:9090"]}]"#;
        let g = parse(url, body).unwrap();
        assert_eq!(
            g,
            [TargetGroup {
                source: format!("{url}:0"),
                targets: vec![BTreeMap::from([(
                    "__address__".into(),
                    "127.0.0.1:9090".into()
                )])],
                labels: BTreeMap::from([
                    ("__meta_datacenter".into(), "bru1".into()),
                    ("__meta_url".into(), url.into()),
                ]),
            }]
        );
        // Prometheus' TestHTTPInvalidFormat body, and others it refuses.
        for bad in [
            &b"{}"[..],
            br#"[null]"#,
            br#"[{"targets": ["a:1"], "extra": 1}]"#,
            br#"[{"targets": ["a:1"], "labels": {"0bad": "x"}}]"#,
        ] {
            assert!(
                matches!(parse(url, bad), Err(HttpSdError::Json(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let err = parse(
            url,
            br#"[{"targets": ["a:1"]}, {"targets": ["http://b:2/metrics"]}]"#,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "group 1: target \"http://b:2/metrics\" must be host:port"
        );
    }
}
