//! Prometheus HTTP API v1: the shapes Grafana's Prometheus data source and
//! promtool expect (the envelope of [`super::response`]).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

pub use super::response::{success, ApiError};
use super::work::DEFAULT_TIMEOUT;
use super::Api;
use crate::model::{Labels, TimestampMs};
use crate::storage::{MatchOp, Matcher};

/// Request parameters from the query string and, for POST, a form body —
/// Prometheus accepts both and so does Grafana's "POST" method setting.
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_request(query: Option<String>, headers: &HeaderMap, body: &Bytes) -> Params {
        let mut v: Vec<(String, String)> = query
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        let is_form = headers
            .get("content-type")
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            v.extend(form_urlencoded::parse(body).into_owned());
        }
        Params(v)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter: Unix seconds (float) or RFC 3339; `default` when absent.
    pub fn time(&self, name: &str, default: TimestampMs) -> Result<TimestampMs, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(default),
            Some(s) => parse_time(s)
                .map_err(|e| ApiError::bad_data(format!("invalid parameter \"{name}\": {e}"))),
        }
    }
}

/// A time or duration parameter that does not read, in Prometheus' words
/// (the caller adds `invalid parameter "NAME": `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("cannot parse {0:?} to a valid timestamp")]
    Timestamp(String),
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
    /// Past what Prometheus holds in int64 nanoseconds.
    #[error("cannot parse {0:?} to a valid duration. It overflows int64")]
    DurationOverflow(String),
}

/// Prometheus' time formats.
pub fn parse_time(s: &str) -> Result<TimestampMs, ParamError> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(ParamError::Timestamp(s.to_string()));
        }
        return Ok((f * 1000.0).round() as i64);
    }
    humantime::parse_rfc3339_weak(s)
        .map(crate::clock::system_time_ms)
        .map_err(|_| ParamError::Timestamp(s.to_string()))
}

/// Prometheus' defaults for an open time range.
pub const MIN_TIME: TimestampMs = i64::MIN / 2;
pub const MAX_TIME: TimestampMs = i64::MAX / 2;

/// Parses a series selector (`up{job="x"}`) into store matchers; errors
/// are `bad_data`.
pub fn parse_selector(s: &str) -> Result<Vec<Matcher>, ApiError> {
    let expr = crate::promql::parse_query(s).map_err(ApiError::bad_data)?;
    let promql_parser::parser::Expr::VectorSelector(vs) = expr else {
        return Err(ApiError::bad_data(format!(
            "{s:?} is not a series selector"
        )));
    };
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(
            Matcher::new(MatchOp::Equal, crate::model::METRIC_NAME, name.clone())
                .map_err(ApiError::bad_data)?,
        );
    }
    for m in &vs.matchers.matchers {
        let op = match &m.op {
            promql_parser::label::MatchOp::Equal => MatchOp::Equal,
            promql_parser::label::MatchOp::NotEqual => MatchOp::NotEqual,
            promql_parser::label::MatchOp::Re(_) => MatchOp::Regex,
            promql_parser::label::MatchOp::NotRe(_) => MatchOp::NotRegex,
        };
        out.push(Matcher::new(op, m.name.clone(), m.value.clone()).map_err(ApiError::bad_data)?);
    }
    if out.iter().all(|m| m.matches("")) {
        return Err(ApiError::bad_data(
            "match[] must contain at least one non-empty matcher",
        ));
    }
    Ok(out)
}

fn labels_json(l: &Labels) -> serde_json::Value {
    let m: BTreeMap<&str, &str> = l
        .iter()
        .map(|l| (l.name.as_str(), l.value.as_str()))
        .collect();
    json!(m)
}

fn selectors(p: &Params) -> Result<Vec<Vec<Matcher>>, ApiError> {
    p.all("match[]").into_iter().map(parse_selector).collect()
}

/// GET/POST /api/v1/series
pub async fn series(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &headers, &body);
    let sels = selectors(&p)?;
    if sels.is_empty() {
        return Err(ApiError::bad_data("no match[] parameter provided"));
    }
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let db = api.store.clone();
    let data = api
        .work
        .run(DEFAULT_TIMEOUT, move |w| {
            let mut set: std::collections::BTreeSet<Labels> = Default::default();
            for m in sels {
                w.check()?;
                set.extend(db.series_labels(&m, start, end));
            }
            let mut out = Vec::with_capacity(set.len());
            for l in &set {
                w.check()?;
                out.push(labels_json(l));
            }
            Ok(serde_json::Value::Array(out))
        })
        .await?;
    Ok(success(data))
}

/// GET/POST /api/v1/labels
pub async fn labels(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &headers, &body);
    let db = api.store.clone();
    let names =
        union_over_selectors(&api, &p, move |m, start, end| db.label_names(m, start, end)).await?;
    Ok(success(json!(names)))
}

/// The union of `f` over every `match[]` selector in the time range (or over
/// all series when there is none), as Prometheus' label endpoints answer;
/// heavy work, checked between selectors.
async fn union_over_selectors(
    api: &Api,
    p: &Params,
    f: impl Fn(&[Matcher], TimestampMs, TimestampMs) -> Vec<String> + Send + 'static,
) -> Result<std::collections::BTreeSet<String>, ApiError> {
    let (start, end) = (p.time("start", MIN_TIME)?, p.time("end", MAX_TIME)?);
    let sels = selectors(p)?;
    let out = api
        .work
        .run(DEFAULT_TIMEOUT, move |w| {
            let mut out = std::collections::BTreeSet::new();
            if sels.is_empty() {
                out.extend(f(&[], start, end));
            }
            for m in sels {
                w.check()?;
                out.extend(f(&m, start, end));
            }
            Ok(out)
        })
        .await?;
    Ok(out)
}

/// GET /api/v1/label/NAME/values
pub async fn label_values(
    State(api): State<Api>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &headers, &body);
    let db = api.store.clone();
    let values = union_over_selectors(&api, &p, move |m, start, end| {
        db.label_values(&name, m, start, end)
    })
    .await?;
    Ok(success(json!(values)))
}

/// GET /api/v1/targets: a walk over every target (thousands with file
/// SD), so heavy work, checked between pools and dropped targets.
pub async fn targets(State(api): State<Api>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let state = p.get("state").unwrap_or("any").to_string();
    let views = api.targets.pool_views().await;
    let data = api
        .work
        .run(DEFAULT_TIMEOUT, move |w| {
            let (mut active, mut dropped) = (Vec::new(), Vec::new());
            for v in &views {
                w.check()?;
                v.targets(&mut active, &mut dropped);
            }
            crate::scrape::manager::sort_targets(&mut active);
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for (job, _) in &dropped {
                *counts.entry(job.clone()).or_default() += 1;
            }
            let active = if state == "dropped" { vec![] } else { active };
            let mut shown = Vec::new();
            if state != "active" {
                for (job, l) in &dropped {
                    w.check()?;
                    shown.push(json!({"discoveredLabels": labels_json(l), "scrapePool": job}));
                }
            }
            Ok(json!({
                "activeTargets": active,
                "droppedTargets": shown,
                "droppedTargetCounts": counts,
                "discoveryStatus": discovery_status(&views),
            }))
        })
        .await?;
    Ok(success(data))
}

/// `discoveryStatus` (a wasmon addition to `/api/v1/targets`): one row per
/// discovery mechanism config of each job, saying how its last look went.
/// `health` is `down` while the last look failed (its targets are then the
/// last good ones), `up` otherwise.
fn discovery_status(views: &[crate::scrape::manager::PoolView]) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    for v in views {
        for s in v.discovery() {
            let st = s.get();
            rows.push(json!({
                "scrapePool": v.name(),
                "config": s.name(),
                "mechanism": s.mechanism,
                "health": if st.last_error.is_some() { "down" } else { "up" },
                "lastError": st.last_error.unwrap_or_default(),
                "lastSuccess": st
                    .last_success
                    .map(|t| humantime::format_rfc3339_millis(t).to_string()),
                "targets": st.targets,
            }));
        }
    }
    rows
}

/// The Prometheus release whose query API wasmon implements. Grafana reads
/// `version` from buildinfo to decide which API features it may use (label
/// matchers on /api/v1/labels, etc.); a non-Prometheus version number would
/// make it fall back to older, slower requests. VictoriaMetrics answers the
/// same way for the same reason. wasmon's own version is in `wasmonVersion`.
pub const PROMETHEUS_API_VERSION: &str = "2.42.0";

/// GET /api/v1/status/buildinfo
pub async fn buildinfo() -> Response {
    success(json!({
        "version": PROMETHEUS_API_VERSION,
        "wasmonVersion": env!("CARGO_PKG_VERSION"),
        "revision": "",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }))
}

/// GET /api/v1/metadata: TYPE/HELP/UNIT per metric family over the active
/// targets' last pages, distinct entries per metric, like Prometheus.
/// Parameters: `metric`, `limit` (metrics), `limit_per_metric`. A walk over
/// every family of every target: heavy work, checked per target.
pub async fn metadata(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    let limit = |name: &str| -> Result<Option<usize>, ApiError> {
        match p.get(name) {
            None | Some("") => Ok(None),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n <= 0 => Ok(None),
                Ok(n) => Ok(Some(n as usize)),
                Err(_) => Err(ApiError::bad_data(format!(
                    "invalid parameter \"{name}\": {v:?} is not a number"
                ))),
            },
        }
    };
    let (limit, per_metric) = match (limit("limit"), limit("limit_per_metric")) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return e.into_response(),
    };
    let metric = p
        .get("metric")
        .filter(|m| !m.is_empty())
        .map(str::to_string);
    let views = api.targets.pool_views().await;
    let result = api
        .work
        .run(DEFAULT_TIMEOUT, move |w| {
            let mut pages = Vec::new();
            for v in &views {
                w.check()?;
                v.metadata(&mut pages);
            }
            let mut out: BTreeMap<String, Vec<serde_json::Value>> = BTreeMap::new();
            for (_, families) in pages {
                w.check()?;
                for m in families.iter() {
                    if metric.as_ref().is_some_and(|want| *want != m.family) {
                        continue;
                    }
                    if limit.is_some_and(|l| out.len() >= l && !out.contains_key(&m.family)) {
                        continue;
                    }
                    let entry = json!({"type": m.kind.as_str(), "help": m.help, "unit": m.unit});
                    let list = out.entry(m.family.clone()).or_default();
                    if !list.contains(&entry) && per_metric.is_none_or(|l| list.len() < l) {
                        list.push(entry);
                    }
                }
            }
            Ok(json!(out))
        })
        .await;
    match result {
        Ok(v) => success(v),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// GET|POST /api/v1/query_exemplars: wasmon does not store exemplars, so
/// every valid query has none (Grafana asks whenever exemplars are toggled
/// on); an invalid query is still rejected like Prometheus does.
pub async fn query_exemplars(RawQuery(q): RawQuery, headers: HeaderMap, body: Bytes) -> Response {
    let p = Params::from_request(q, &headers, &body);
    let Some(query) = p.get("query").filter(|q| !q.is_empty()) else {
        return ApiError::bad_data("invalid parameter \"query\": query is empty").into_response();
    };
    if let Err(e) = crate::promql::parse_query(query) {
        return ApiError::bad_data(format!("invalid parameter \"query\": {e}")).into_response();
    }
    success(json!([]))
}

/// GET /api/v1/rules
pub async fn rules(State(api): State<Api>, RawQuery(q): RawQuery) -> Response {
    let p = Params::from_request(q, &HeaderMap::new(), &Bytes::new());
    if let Some(t) = p.get("type").filter(|t| !matches!(*t, "alert" | "record")) {
        // The rules' own answer to it is an error in a 200: Prometheus
        // answers 400.
        return ApiError::bad_data(format!("unsupported type {t:?}")).into_response();
    }
    let f = super::rules::RulesFilter {
        rule_type: p.get("type").map(str::to_string),
        rule_names: p
            .all("rule_name[]")
            .into_iter()
            .map(str::to_string)
            .collect(),
        group_names: p
            .all("rule_group[]")
            .into_iter()
            .map(str::to_string)
            .collect(),
        files: p.all("file[]").into_iter().map(str::to_string).collect(),
        exclude_alerts: p.get("exclude_alerts") == Some("true"),
    };
    let rules = api.rules.clone();
    whole(&api, move || rules.rules_api(&f)).await
}

/// GET /api/v1/alerts
pub async fn alerts(State(api): State<Api>) -> Response {
    let rules = api.rules.clone();
    whole(&api, move || rules.alerts_api()).await
}

/// Work over every rule or alert that cannot stop halfway: still off the
/// async workers, bounded in number and deadlined like other heavy work.
async fn whole(api: &Api, f: impl FnOnce() -> serde_json::Value + Send + 'static) -> Response {
    match api
        .work
        .run(DEFAULT_TIMEOUT, move |w| {
            w.check()?;
            Ok(f())
        })
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
