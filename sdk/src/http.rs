//! Outbound HTTP through `wasi:http`, the only network a plugin has.
//!
//! The host forwards each request only if its host is on the plugin
//! instance's allow-list in the agent config; otherwise the request fails
//! with the `wasi:http` error code `HTTP-request-denied`, which ends up in
//! the [`Failure`] message. Calls block: a plugin call is synchronous from
//! the guest's point of view, and the host bounds it with its own deadline.
//!
//! Errors follow the Alertmanager rules, so that receivers behave like the
//! notifiers their users know:
//! - the request never got an answer (DNS, connect, TLS, timeout, denied):
//!   [`Failure::Retryable`], with the `wasi:http` error code in the message;
//! - the request itself cannot be built (bad URL, bad header, unserializable
//!   body): [`Failure::Permanent`];
//! - an answer: [`Response`], and [`classify`] (or [`Response::classify`])
//!   turns its status into `Ok` (2xx), retryable (429, 5xx) or permanent
//!   (any other status).

use serde::Serialize;
use wasi::http::outgoing_handler;
use wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, OutgoingBody,
    OutgoingRequest, Scheme,
};
use wasi::io::streams::StreamError;

use crate::types::Failure;

pub use wasi::http::types::Method;

/// The largest write `blocking-write-and-flush` accepts at once.
const WRITE_CHUNK: usize = 4096;

/// How much of a response body a failure message quotes.
const QUOTED_BODY: usize = 512;

/// An HTTP response: its status and its whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, read to its end.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON. A body that does not parse is permanent:
    /// the same server would send the same body again.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Failure> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Failure::Permanent(format!(
                "HTTP {}: response is not the expected JSON: {e}",
                self.status
            ))
        })
    }

    /// Like [`classify`], with the start of the body in the failure message
    /// (services say why they refuse a request there).
    pub fn classify(&self) -> Result<(), Failure> {
        classify(self.status).map_err(|failure| {
            let body = self.text();
            let body = body.trim();
            if body.is_empty() {
                return failure;
            }
            let quoted = truncate_at_char(body, QUOTED_BODY);
            let message = format!("{}: {quoted}", failure.message());
            match failure {
                Failure::Retryable(_) => Failure::Retryable(message),
                Failure::Permanent(_) => Failure::Permanent(message),
            }
        })
    }
}

/// The Alertmanager rule for a response status: 2xx is delivered; 429 and
/// 5xx are worth retrying; every other status (4xx, and 1xx/3xx which a
/// webhook should never answer) is permanent.
pub fn classify(status: u16) -> Result<(), Failure> {
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(Failure::Retryable(format!("HTTP {status}"))),
        _ => Err(Failure::Permanent(format!("HTTP {status}"))),
    }
}

/// POSTs `body` serialized as JSON to `url`, with `headers` (name, value).
///
/// Sets `Content-Type: application/json` and a `User-Agent` unless `headers`
/// has them. Returns the response whatever its status: pass it to
/// [`Response::classify`] to apply the Alertmanager rule.
pub fn post_json<B: Serialize + ?Sized>(
    url: &str,
    body: &B,
    headers: &[(&str, &str)],
) -> Result<Response, Failure> {
    let body = serde_json::to_vec(body)
        .map_err(|e| Failure::Permanent(format!("POST {url}: cannot serialize the body: {e}")))?;
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !has("content-type") {
        all.push(("content-type", "application/json"));
    }
    if !has("user-agent") {
        all.push(("user-agent", USER_AGENT));
    }
    send(Method::Post, url, &all, &body)
}

/// The `User-Agent` of requests that do not set their own.
pub const USER_AGENT: &str = concat!("wasmon-sdk/", env!("CARGO_PKG_VERSION"));

/// Sends one request and reads the whole response.
///
/// `url` is `http://` or `https://`, host[:port], then path and query; a
/// fragment is dropped, and credentials in the URL are refused (put them in
/// an `Authorization` header, from the config). The body is sent as is, with
/// the headers given and a `Content-Length` (see [`request_headers`]).
pub fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Response, Failure> {
    let what = format!("{} {url}", method_name(&method));
    let target = Target::parse(url).map_err(|e| Failure::Permanent(format!("{what}: {e}")))?;

    let fields = request_headers(&method, headers, body.len());
    let fields = Fields::from_list(&fields)
        .map_err(|e| Failure::Permanent(format!("{what}: invalid header: {e:?}")))?;
    let request = OutgoingRequest::new(fields);
    let invalid = |part: &str| Failure::Permanent(format!("{what}: invalid {part}"));
    request
        .set_method(&method)
        .map_err(|()| invalid("method"))?;
    request
        .set_scheme(Some(&target.scheme))
        .map_err(|()| invalid("scheme"))?;
    request
        .set_authority(Some(&target.authority))
        .map_err(|()| invalid("host"))?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| invalid("path"))?;
    let outgoing = request
        .body()
        .map_err(|()| Failure::Permanent(format!("{what}: request body already taken")))?;

    // Hand the request over before writing its body: the host may only
    // start draining the body once the request is under way, and a body
    // bigger than its buffer would block forever otherwise.
    let future = outgoing_handler::handle(request, None).map_err(|code| transport(&what, &code))?;
    if let Err(message) = write_body(outgoing, body) {
        // A body that cannot be written usually means the request failed;
        // the response future says why, more precisely than the stream.
        return match wait(&future) {
            Err(code) => Err(transport(&what, &code)),
            Ok(_) => Err(Failure::Retryable(format!("{what}: {message}"))),
        };
    }
    let response = wait(&future).map_err(|code| transport(&what, &code))?;
    let status = response.status();
    let body = read_body(&response).map_err(|e| Failure::Retryable(format!("{what}: {e}")))?;
    Ok(Response { status, body })
}

/// The header fields of a request: `headers` (names lowercased) and the
/// body's `Content-Length`, which replaces any the caller gave. Without it
/// the host streams the body chunked, and simple receivers (and some
/// proxies) read an empty body; Alertmanager always sends the length. A
/// method that carries a body says `0` for an empty one, as curl and Go do;
/// GET and the like say nothing then.
fn request_headers(
    method: &Method,
    headers: &[(&str, &str)],
    len: usize,
) -> Vec<(String, Vec<u8>)> {
    let mut fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec()))
        .collect();
    let carries_body = matches!(method, Method::Post | Method::Put | Method::Patch);
    if len > 0 || carries_body {
        fields.push(("content-length".to_string(), len.to_string().into_bytes()));
    }
    fields
}

/// Writes the whole body and finishes it.
fn write_body(outgoing: OutgoingBody, body: &[u8]) -> Result<(), String> {
    {
        // The stream is a child of the body: it must be gone before `finish`.
        let stream = outgoing
            .write()
            .map_err(|()| "request body stream already taken".to_string())?;
        for chunk in body.chunks(WRITE_CHUNK) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|e| format!("writing the request body: {}", stream_error(e)))?;
        }
    }
    OutgoingBody::finish(outgoing, None)
        .map_err(|code| format!("finishing the request body: {}", error_code_name(&code)))
}

/// Blocks until the response head arrives, or the request fails.
fn wait(future: &FutureIncomingResponse) -> Result<IncomingResponse, ErrorCode> {
    loop {
        match future.get() {
            Some(Ok(result)) => return result,
            Some(Err(())) => {
                return Err(ErrorCode::InternalError(Some(
                    "response already taken".to_string(),
                )))
            }
            None => future.subscribe().block(),
        }
    }
}

/// Reads a response body to its end.
fn read_body(response: &IncomingResponse) -> Result<Vec<u8>, String> {
    let incoming = response
        .consume()
        .map_err(|()| "response body already taken".to_string())?;
    let mut body = Vec::new();
    {
        let stream = incoming
            .stream()
            .map_err(|()| "response body stream already taken".to_string())?;
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(e) => return Err(format!("reading the response body: {}", stream_error(e))),
            }
        }
    }
    drop(IncomingBody::finish(incoming));
    Ok(body)
}

/// A request that got no answer: worth retrying, and the message keeps the
/// `wasi:http` error code so the agent's log says what happened (a host that
/// refuses the destination answers `HTTP-request-denied`).
fn transport(what: &str, code: &ErrorCode) -> Failure {
    Failure::Retryable(format!("{what}: {}", error_code_name(code)))
}

fn stream_error(e: StreamError) -> String {
    match e {
        StreamError::Closed => "stream closed".to_string(),
        StreamError::LastOperationFailed(err) => match wasi::http::types::http_error_code(&err) {
            Some(code) => error_code_name(&code),
            None => err.to_debug_string(),
        },
    }
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

/// The error code as WIT spells it (`HTTP-request-denied`), with its payload
/// when it has one: the text operators and tests look for.
pub fn error_code_name(code: &ErrorCode) -> String {
    use ErrorCode as E;
    let name = match code {
        E::DnsTimeout => "DNS-timeout",
        E::DnsError(p) => return format!("DNS-error ({p:?})"),
        E::DestinationNotFound => "destination-not-found",
        E::DestinationUnavailable => "destination-unavailable",
        E::DestinationIpProhibited => "destination-IP-prohibited",
        E::DestinationIpUnroutable => "destination-IP-unroutable",
        E::ConnectionRefused => "connection-refused",
        E::ConnectionTerminated => "connection-terminated",
        E::ConnectionTimeout => "connection-timeout",
        E::ConnectionReadTimeout => "connection-read-timeout",
        E::ConnectionWriteTimeout => "connection-write-timeout",
        E::ConnectionLimitReached => "connection-limit-reached",
        E::TlsProtocolError => "TLS-protocol-error",
        E::TlsCertificateError => "TLS-certificate-error",
        E::TlsAlertReceived(p) => return format!("TLS-alert-received ({p:?})"),
        E::HttpRequestDenied => "HTTP-request-denied",
        E::HttpRequestLengthRequired => "HTTP-request-length-required",
        E::HttpRequestBodySize(p) => return format!("HTTP-request-body-size ({p:?})"),
        E::HttpRequestMethodInvalid => "HTTP-request-method-invalid",
        E::HttpRequestUriInvalid => "HTTP-request-URI-invalid",
        E::HttpRequestUriTooLong => "HTTP-request-URI-too-long",
        E::HttpRequestHeaderSectionSize(p) => {
            return format!("HTTP-request-header-section-size ({p:?})")
        }
        E::HttpRequestHeaderSize(p) => return format!("HTTP-request-header-size ({p:?})"),
        E::HttpRequestTrailerSectionSize(p) => {
            return format!("HTTP-request-trailer-section-size ({p:?})")
        }
        E::HttpRequestTrailerSize(p) => return format!("HTTP-request-trailer-size ({p:?})"),
        E::HttpResponseIncomplete => "HTTP-response-incomplete",
        E::HttpResponseHeaderSectionSize(p) => {
            return format!("HTTP-response-header-section-size ({p:?})")
        }
        E::HttpResponseHeaderSize(p) => return format!("HTTP-response-header-size ({p:?})"),
        E::HttpResponseBodySize(p) => return format!("HTTP-response-body-size ({p:?})"),
        E::HttpResponseTrailerSectionSize(p) => {
            return format!("HTTP-response-trailer-section-size ({p:?})")
        }
        E::HttpResponseTrailerSize(p) => return format!("HTTP-response-trailer-size ({p:?})"),
        E::HttpResponseTransferCoding(p) => {
            return format!("HTTP-response-transfer-coding ({p:?})")
        }
        E::HttpResponseContentCoding(p) => return format!("HTTP-response-content-coding ({p:?})"),
        E::HttpResponseTimeout => "HTTP-response-timeout",
        E::HttpUpgradeFailed => "HTTP-upgrade-failed",
        E::HttpProtocolError => "HTTP-protocol-error",
        E::LoopDetected => "loop-detected",
        E::ConfigurationError => "configuration-error",
        E::InternalError(Some(detail)) => return format!("internal-error ({detail})"),
        E::InternalError(None) => "internal-error",
    };
    name.to_string()
}

/// A URL split the way `wasi:http` wants it.
#[derive(Debug)]
struct Target {
    scheme: Scheme,
    authority: String,
    path_with_query: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| "not an absolute URL (expected http:// or https://)".to_string())?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.is_empty() {
            return Err("no host in URL".to_string());
        }
        if authority.contains('@') {
            return Err("credentials in the URL are not supported; send a header".to_string());
        }
        let path_with_query = match path {
            "" => "/".to_string(),
            p if p.starts_with('?') => format!("/{p}"),
            p => p.to_string(),
        };
        Ok(Target {
            scheme,
            authority: authority.to_string(),
            path_with_query,
        })
    }
}

fn truncate_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_follows_alertmanager() {
        assert!(classify(200).is_ok());
        assert!(classify(204).is_ok());
        assert!(classify(429).unwrap_err().is_retryable());
        assert!(classify(500).unwrap_err().is_retryable());
        assert!(classify(503).unwrap_err().is_retryable());
        assert!(!classify(400).unwrap_err().is_retryable());
        assert!(!classify(404).unwrap_err().is_retryable());
        assert!(!classify(301).unwrap_err().is_retryable());
    }

    #[test]
    fn classify_quotes_the_body() {
        let r = Response {
            status: 400,
            body: b" invalid_payload \n".to_vec(),
        };
        assert_eq!(
            r.classify().unwrap_err(),
            Failure::Permanent("HTTP 400: invalid_payload".into())
        );
    }

    #[test]
    fn urls_split_for_wasi_http() {
        let t = Target::parse("https://hooks.example.com:8443/a/b?x=1#frag").unwrap();
        assert!(matches!(t.scheme, Scheme::Https));
        assert_eq!(t.authority, "hooks.example.com:8443");
        assert_eq!(t.path_with_query, "/a/b?x=1");
        let t = Target::parse("HTTP://localhost").unwrap();
        assert!(matches!(t.scheme, Scheme::Http));
        assert_eq!(t.path_with_query, "/");
        assert_eq!(Target::parse("http://h?q").unwrap().path_with_query, "/?q");
        assert!(Target::parse("ftp://h/").is_err());
        assert!(Target::parse("h/path").is_err());
        assert!(Target::parse("http:///path").is_err());
        assert!(Target::parse("http://user:pw@h/").is_err());
    }

    #[test]
    fn every_body_carries_its_length() {
        let get = |h: &[(String, Vec<u8>)], name: &str| {
            h.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        let h = request_headers(&Method::Post, &[("Content-Type", "application/json")], 1234);
        assert_eq!(get(&h, "content-length"), ["1234"]);
        assert_eq!(get(&h, "content-type"), ["application/json"]);
        // A caller's wrong length does not reach the wire.
        let h = request_headers(&Method::Put, &[("Content-Length", "7")], 3);
        assert_eq!(get(&h, "content-length"), ["3"]);
        assert_eq!(
            get(&request_headers(&Method::Post, &[], 0), "content-length"),
            ["0"]
        );
        assert!(get(&request_headers(&Method::Get, &[], 0), "content-length").is_empty());
        assert_eq!(
            get(&request_headers(&Method::Delete, &[], 2), "content-length"),
            ["2"]
        );
    }

    #[test]
    fn error_codes_read_like_wit() {
        assert_eq!(
            error_code_name(&ErrorCode::HttpRequestDenied),
            "HTTP-request-denied"
        );
        assert_eq!(
            error_code_name(&ErrorCode::InternalError(Some("x".into()))),
            "internal-error (x)"
        );
    }
}
