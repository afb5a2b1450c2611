//! `/api/v1/query` and `/api/v1/query_range`: PromQL over the embedded store
//! with Prometheus' parameters, JSON shapes, error types and status codes.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{json, Value as Json_};

use super::api::{ParamError, Params};
use super::response::{success_with, ApiError};
use super::Api;
use crate::model::{Labels, TimestampMs};
use crate::promql::{self, error::EvalError, value::Value};

/// Prometheus refuses range queries with more points than this per series.
const MAX_POINTS: i64 = 11_000;

/// Prometheus renders sample values as strings, with these spellings.
pub fn format_value(v: f64) -> String {
    // Go's strconv 'f', -1: shortest round-trip, no exponent.
    wasmon_gofmt::format_float(v, 'f', -1)
}

fn ts(t: TimestampMs) -> Json_ {
    json!(t as f64 / 1000.0)
}

fn metric(l: &Labels) -> Json_ {
    let m: serde_json::Map<String, Json_> =
        l.iter().map(|l| (l.name.clone(), json!(l.value))).collect();
    Json_::Object(m)
}

/// The `data` object of a query response.
pub fn value_json(v: &Value) -> Json_ {
    match v {
        Value::Scalar { t, v } => {
            json!({"resultType": "scalar", "result": [ts(*t), format_value(*v)]})
        }
        Value::String { t, s } => json!({"resultType": "string", "result": [ts(*t), s]}),
        Value::Vector(samples) => json!({
            "resultType": "vector",
            "result": samples.iter().map(|s| json!({"metric": metric(&s.labels), "value": [ts(s.t), format_value(s.v)]})).collect::<Vec<_>>(),
        }),
        Value::Matrix(series) => json!({
            "resultType": "matrix",
            "result": series.iter().map(|s| json!({
                "metric": metric(&s.labels),
                "values": s.points.iter().map(|(t, v)| json!([ts(*t), format_value(*v)])).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
    }
}

/// A duration parameter as Prometheus' API reads one: float seconds, else
/// `model.ParseDuration` (`15s`, `1m30s`). Zero and negative values are
/// returned (NaN as zero, as Go converts it): each caller says what it
/// accepts.
fn parse_duration_ms(s: &str) -> Result<i64, ParamError> {
    if let Ok(secs) = s.parse::<f64>() {
        // Prometheus holds it in int64 nanoseconds.
        if secs.abs() * 1e9 >= i64::MAX as f64 {
            return Err(ParamError::DurationOverflow(s.to_string()));
        }
        return Ok(if secs.is_nan() {
            0
        } else {
            (secs * 1000.0).round() as i64
        });
    }
    crate::model::duration::parse(s)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| ParamError::Duration(s.to_string()))
}

/// The `query` parameter parsed; errors in Prometheus' words.
fn parse_query_param(query: &str) -> Result<promql_parser::parser::Expr, ApiError> {
    promql::engine::parse(query)
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"query\": {e}")))
}

fn engine(api: &Api, p: &Params) -> Result<promql::Engine, ApiError> {
    let mut e = promql::Engine::clone(&api.engine.get());
    if let Some(t) = p.get("timeout") {
        let ms = parse_duration_ms(t)
            .map_err(|e| ApiError::bad_data(format!("invalid parameter \"timeout\": {e}")))?;
        if ms <= 0 {
            return Err(ApiError::bad_data(
                "invalid parameter \"timeout\": zero or negative timeouts are not accepted",
            ));
        }
        // A client may shorten the configured timeout, never extend it.
        e.opts.timeout = e
            .opts
            .timeout
            .min(std::time::Duration::from_millis(ms as u64));
    }
    Ok(e)
}

/// The engine stopping with the request (client gone, agent shutting
/// down); its own timeout is the request's deadline.
fn cancellable(mut engine: promql::Engine, w: &super::work::Work) -> promql::Engine {
    engine.opts.cancel = Some(w.token().clone());
    engine
}

fn respond(result: Result<promql::value::QueryResult, EvalError>) -> Result<Response, ApiError> {
    let r = result?;
    Ok(success_with(
        value_json(&r.value),
        &r.annotations.warnings,
        &r.annotations.infos,
    ))
}

/// GET/POST /api/v1/query
pub async fn instant(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &headers, &body);
    let query = p.get("query").unwrap_or("").to_string();
    let t = p.time("time", crate::clock::now_ms())?;
    let engine = engine(&api, &p)?;
    let expr = parse_query_param(&query)?;
    let db = api.store.clone();
    let result = api
        .work
        .run(engine.opts.timeout, move |w| {
            Ok(cancellable(engine, w).instant(&*db, &expr, t))
        })
        .await?;
    respond(result)
}

/// GET/POST /api/v1/query_range
pub async fn range(
    State(api): State<Api>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = Params::from_request(q, &headers, &body);
    let query = p.get("query").unwrap_or("").to_string();
    let start = p
        .get("start")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"start\": missing"))
        .and_then(|_| p.time("start", 0))?;
    let end = p
        .get("end")
        .ok_or_else(|| ApiError::bad_data("invalid parameter \"end\": missing"))
        .and_then(|_| p.time("end", 0))?;
    if end < start {
        return Err(ApiError::bad_data(
            "end timestamp must not be before start time",
        ));
    }
    let step = parse_duration_ms(p.get("step").unwrap_or(""))
        .map_err(|e| ApiError::bad_data(format!("invalid parameter \"step\": {e}")))?;
    if step <= 0 {
        return Err(ApiError::bad_data(
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::bad_data(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ));
    }
    let engine = engine(&api, &p)?;
    let expr = parse_query_param(&query)?;
    let db = api.store.clone();
    let result = api
        .work
        .run(engine.opts.timeout, move |w| {
            Ok(cancellable(engine, w).range(&*db, &expr, start, end, step))
        })
        .await?;
    respond(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_formatted_like_prometheus() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.1), "0.1");
        assert_eq!(format_value(1e21), "1000000000000000000000");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("15"), Ok(15_000));
        assert_eq!(parse_duration_ms("0.5"), Ok(500));
        assert_eq!(parse_duration_ms("1m30s"), Ok(90_000));
        assert!(parse_duration_ms("x").is_err());
    }

    /// Prometheus' texts: a zero step is refused by the caller as "zero or
    /// negative", not as an overflow; only a value past int64 nanoseconds
    /// overflows.
    #[test]
    fn duration_parameters_like_prometheus() {
        assert_eq!(parse_duration_ms("0"), Ok(0));
        assert_eq!(parse_duration_ms("0s"), Ok(0));
        assert_eq!(parse_duration_ms("-1"), Ok(-1000));
        assert_eq!(parse_duration_ms("NaN"), Ok(0));
        assert_eq!(parse_duration_ms("1w"), Ok(7 * 86_400_000));
        for s in ["1e30", "Inf", "-1e30"] {
            let e = parse_duration_ms(s).unwrap_err().to_string();
            assert!(e.ends_with("It overflows int64"), "{s}: {e}");
        }
        assert_eq!(
            parse_duration_ms("99999999999999y")
                .unwrap_err()
                .to_string(),
            "cannot parse \"99999999999999y\" to a valid duration"
        );
    }
}
