//! Every answer of the HTTP API takes one of these shapes; handlers build
//! them here and nowhere else.
//!
//! - The Prometheus API envelope (`/api/v1/...`, Prometheus'
//!   `web/api/v1/api.go`): `{"status": "success", "data": ...}` with
//!   optional `warnings`/`infos` ([`success`], [`success_with`]), or
//!   `{"status": "error", "errorType": ..., "error": ...}` with the HTTP
//!   status of the error ([`ApiError`]). wasmon's own v1 endpoints
//!   (checks, rollouts, receivers, plugins) answer the same way.
//! - wasmon's acks and incidents API answers its objects bare ([`bare`]:
//!   the ack, the list, the incident, as its clients and tests read them)
//!   and its errors in the v1 envelope (whose `error` field is what it
//!   answered before).
//! - The Alertmanager API v2 (`/api/v2/...`) answers plain bodies as its
//!   OpenAPI spec says: the object or list itself ([`bare`]), errors as a
//!   JSON string ([`AmError`]), and before a handler runs the generated
//!   layer's `{"code": ..., "message": ...}` ([`SpecError`]).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Map, Value};

use super::work::Stopped;
use crate::promql::EvalError;

/// Prometheus' `errorType` values (and wasmon's `not_found` and `plugin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
    /// A plugin call failed (a receiver test).
    Plugin,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
            ErrorType::Plugin => "plugin",
        }
    }
}

/// An error of the v1 API: its HTTP status, type and message (and, for a
/// few endpoints, fields beside them).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    extra: Map<String, Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorType, message: impl std::fmt::Display) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.to_string(),
            extra: Map::new(),
        }
    }

    /// A request the API refuses (400).
    pub fn bad_data(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorType::BadData, message)
    }

    /// What the request names does not exist (404).
    pub fn not_found(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorType::NotFound, message)
    }

    /// The agent cannot serve it now (503), e.g. alerting without a route.
    pub fn unavailable(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Unavailable,
            message,
        )
    }

    /// A failure inside the agent (500).
    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::Internal,
            message,
        )
    }

    /// A field beside `error` (a failed receiver test's `result`, `retryable`).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> ApiError {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The error envelope (for code that hands bodies to a handler, like
    /// the rules' listings).
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("status".into(), "error".into());
        body.insert("errorType".into(), self.kind.as_str().into());
        body.insert("error".into(), self.message.clone().into());
        body.extend(self.extra.clone());
        Value::Object(body)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

impl From<Stopped> for ApiError {
    fn from(s: Stopped) -> ApiError {
        let kind = match s {
            Stopped::Deadline(_) => ErrorType::Timeout,
            Stopped::ClientGone => ErrorType::Canceled,
            Stopped::ShuttingDown => ErrorType::Unavailable,
            Stopped::Internal => ErrorType::Internal,
        };
        ApiError::new(s.status(), kind, s)
    }
}

/// PromQL errors with Prometheus' types and statuses.
impl From<EvalError> for ApiError {
    fn from(e: EvalError) -> ApiError {
        let (status, kind) = match &e {
            EvalError::Parse(_) => (StatusCode::BAD_REQUEST, ErrorType::BadData),
            EvalError::Timeout(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorType::Timeout),
            EvalError::Cancelled(_) => (Stopped::ClientGone.status(), ErrorType::Canceled),
            EvalError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorType::Internal),
            _ => (StatusCode::UNPROCESSABLE_ENTITY, ErrorType::Execution),
        };
        ApiError::new(status, kind, e)
    }
}

/// `{"status": "success", "data": data}`.
pub fn success(data: impl Serialize) -> Response {
    Json(success_body(data)).into_response()
}

/// The body of [`success`] (for code that hands bodies to a handler).
pub fn success_body(data: impl Serialize) -> Value {
    json!({"status": "success", "data": data})
}

/// [`success`] with a query's warnings and infos (left out when empty).
pub fn success_with(data: impl Serialize, warnings: &[String], infos: &[String]) -> Response {
    let mut body = success_body(data);
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    if !infos.is_empty() {
        body["infos"] = json!(infos);
    }
    Json(body).into_response()
}

/// A body as it is, without an envelope (Alertmanager v2, acks and incidents).
pub fn bare(body: impl Serialize) -> Response {
    Json(body).into_response()
}

/// An Alertmanager v2 error: the message as a JSON string.
#[derive(Debug)]
pub struct AmError(pub StatusCode, pub String);

impl IntoResponse for AmError {
    fn into_response(self) -> Response {
        (self.0, Json(Value::String(self.1))).into_response()
    }
}

impl From<Stopped> for AmError {
    fn from(s: Stopped) -> AmError {
        AmError(s.status(), s.to_string())
    }
}

/// The errors Alertmanager's generated API layer answers before a handler
/// runs: a body that does not parse (400, code 400) or that misses a
/// field the spec requires (422, code 602; 612 for an empty list).
#[derive(Debug)]
pub struct SpecError {
    status: StatusCode,
    code: u16,
    message: String,
}

impl SpecError {
    pub fn parse(what: &str, e: impl std::fmt::Display) -> SpecError {
        SpecError {
            status: StatusCode::BAD_REQUEST,
            code: 400,
            message: format!("parsing {what} body from \"\" failed, because {e}"),
        }
    }

    /// A list the spec wants at least `n` items in (code 612).
    pub fn min_items(field: &str, n: usize) -> SpecError {
        SpecError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 612,
            message: format!("{field} in body should have at least {n} items"),
        }
    }

    pub fn required(field: &str) -> SpecError {
        SpecError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: 602,
            message: format!("{field} in body is required"),
        }
    }
}

impl IntoResponse for SpecError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"code": self.code, "message": self.message})),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, Value) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn the_envelopes() {
        let (s, v) = body(success(json!([1]))).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v, json!({"status": "success", "data": [1]}));
        let (_, v) = body(success_with(1, &["w".into()], &[])).await;
        assert_eq!(
            v,
            json!({"status": "success", "data": 1, "warnings": ["w"]})
        );
        let e = ApiError::bad_data("no").with("retryable", false);
        let (s, v) = body(e.into_response()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            v,
            json!({"status": "error", "errorType": "bad_data", "error": "no", "retryable": false})
        );
        let (s, v) = body(ApiError::from(Stopped::ShuttingDown).into_response()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(v["errorType"], "unavailable");
        let (s, v) = body(AmError(StatusCode::NOT_FOUND, "gone".into()).into_response()).await;
        assert_eq!((s, v), (StatusCode::NOT_FOUND, json!("gone")));
    }
}
