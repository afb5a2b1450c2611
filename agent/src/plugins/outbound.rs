//! An instance's outbound `wasi:http` requests sent as its `http_config`
//! says (Alertmanager's receiver `http_config`: TLS, client certificate,
//! basic auth / authorization / bearer token, proxy, redirects).
//!
//! The client is the one `config::http_client` builds for scrapes and
//! discovery; only its redirect policy is replaced, so that a redirect is
//! followed only to a host the instance's `allow_hosts` allows. The first
//! destination is checked by [`super::policy::OutboundPolicy`] before a
//! request gets here, proxied or not.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use wasmtime_wasi_http::{RequestOptions, WasiBody};

use super::policy::check_uri;
use crate::config::hosts::HostPattern;
use crate::config::http_client::{Credentials, HttpClientConfig, HttpClientError};

/// Go's `http.Client` stops after 10 redirects; so do Prometheus' clients.
const MAX_REDIRECTS: usize = 10;

/// Largest request body sent through `http_config`: a notification is a
/// few hundred kB at most.
const MAX_REQUEST_BODY: usize = 16 << 20;

/// How one instance's requests leave the host when it has `http_config`.
#[derive(Clone)]
pub struct OutboundHttp {
    client: reqwest::Client,
    /// The `Authorization` header added when the plugin set none; files
    /// are read on every request, so a rotated token is used at once.
    credentials: Credentials,
}

impl std::fmt::Debug for OutboundHttp {
    // Never the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundHttp { .. }")
    }
}

/// A redirect to a host outside `allow_hosts`, refused.
#[derive(Debug, thiserror::Error)]
#[error("redirect to {target} denied: host not in the instance's allow_hosts")]
struct RedirectDenied {
    target: String,
}

impl OutboundHttp {
    /// Checks the keys and reads their files (CA, certificate, key,
    /// credentials) once, so a bad `http_config` is refused at load.
    /// `resolve` makes relative paths absolute (the config's directory).
    pub fn new(
        keys: &HttpClientConfig,
        allow: Arc<[HostPattern]>,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<OutboundHttp, HttpClientError> {
        let follow = keys.follow_redirects;
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            if !follow {
                return attempt.stop();
            }
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"));
            }
            let (target, allowed) = match attempt.url().as_str().parse::<http::Uri>() {
                Ok(uri) => check_uri(&allow, &uri),
                Err(_) => (attempt.url().to_string(), false),
            };
            if allowed {
                attempt.follow()
            } else {
                attempt.error(RedirectDenied { target })
            }
        });
        let client = keys
            .builder(resolve)?
            .redirect(policy)
            .build()
            .map_err(HttpClientError::Build)?;
        let credentials = keys.credentials().resolved(resolve);
        credentials.check()?;
        Ok(OutboundHttp {
            client,
            credentials,
        })
    }

    /// Sends one request the guest made (already allowed by the policy).
    /// `denied` is called with the target of a redirect the allow-list
    /// refused.
    pub async fn send<B>(
        &self,
        request: http::Request<B>,
        options: Option<RequestOptions>,
        denied: impl FnOnce(&str),
    ) -> wasmtime_wasi_http::Result<http::Response<WasiBody>>
    where
        B: hyper::body::Body<Data = bytes::Bytes, Error = wasmtime_wasi_http::Error>
            + Send
            + 'static,
    {
        let (parts, body) = request.into_parts();
        let url = reqwest::Url::parse(&parts.uri.to_string())
            .map_err(|_| wasmtime_wasi_http::Error::HttpRequestUriInvalid)?;
        let mut headers = parts.headers;
        if !headers.contains_key(http::header::AUTHORIZATION) {
            let value = self.credentials.header_value().await.map_err(|e| {
                // The error names the key and file, never the secret.
                wasmtime_wasi_http::Error::InternalError(Some(format!("http_config: {e}")))
            })?;
            if let Some(v) = value {
                headers.insert(http::header::AUTHORIZATION, v);
            }
        }
        // Read whole, so a 307/308 redirect can send it again as Go's
        // client does (Alertmanager's requests can be replayed); bounded,
        // as a guest's memory is.
        let body = http_body_util::Limited::new(body, MAX_REQUEST_BODY)
            .collect()
            .await
            .map_err(|e| match e.downcast::<wasmtime_wasi_http::Error>() {
                Ok(e) => *e,
                Err(_) => {
                    wasmtime_wasi_http::Error::HttpRequestBodySize(Some(MAX_REQUEST_BODY as u64))
                }
            })?
            .to_bytes();
        let request = self
            .client
            .request(parts.method, url)
            .headers(headers)
            .body(body);
        // The response's headers within the guest's first-byte timeout (the
        // call's own deadline bounds the rest).
        let wait = options
            .and_then(|o| o.first_byte_timeout)
            .unwrap_or(Duration::from_secs(600));
        let response = match tokio::time::timeout(wait, request.send()).await {
            Err(_) => return Err(wasmtime_wasi_http::Error::ConnectionReadTimeout),
            Ok(Err(e)) => return Err(wasi_error(&e, denied)),
            Ok(Ok(r)) => r,
        };
        let response: http::Response<reqwest::Body> = response.into();
        Ok(response.map(|b| {
            b.map_err(|e| wasmtime_wasi_http::Error::InternalError(Some(error_chain(&e))))
                .boxed_unsync()
        }))
    }
}

/// The `wasi:http` error code a failed send shows the guest.
fn wasi_error(e: &reqwest::Error, denied: impl FnOnce(&str)) -> wasmtime_wasi_http::Error {
    use wasmtime_wasi_http::Error;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(d) = s.downcast_ref::<RedirectDenied>() {
            denied(&d.target);
            return Error::HttpRequestDenied;
        }
        if let Some(tls) = s.downcast_ref::<tokio_rustls::rustls::Error>() {
            use tokio_rustls::rustls::Error as R;
            return match tls {
                R::InvalidCertificate(_) | R::NoCertificatesPresented => Error::TlsCertificateError,
                R::AlertReceived(alert) => Error::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => Error::TlsProtocolError,
            };
        }
        source = s.source();
    }
    if e.is_timeout() {
        Error::ConnectionTimeout
    } else {
        Error::InternalError(Some(error_chain(e)))
    }
}

/// An error with its causes, as one line.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
