//! The outbound network policy of one plugin instance: which hosts its
//! `wasi:http` requests may reach. Everything not allowed is denied inside the
//! plugin (the guest sees `HTTP-request-denied`) and logged on the host.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::hosts::HostPattern;

/// Checks a URI's authority against an allow-list. Returns the `host:port`
/// that was checked (for logs) and the verdict.
pub fn check_uri(allow: &[HostPattern], uri: &http::Uri) -> (String, bool) {
    let Some(host) = uri.host() else {
        return ("<no host>".to_string(), false);
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("http") => 80,
        _ => 443,
    });
    let verdict = allow.iter().any(|p| p.matches(&host, port));
    (format!("{host}:{port}"), verdict)
}

/// The `wasi:sockets` check for an allow-list: outgoing TCP connections to
/// an allowed `host:port` (hostnames are resolved by the host at check time)
/// or IP; the implicit wildcard bind a connect performs; nothing else (no
/// listening, no UDP). `*.domain` entries cannot be checked against a bare
/// IP and so apply to wasi:http only; `*` allows any address.
pub fn socket_check(
    allow: Arc<[HostPattern]>,
    plugin: Arc<str>,
    instance: Arc<str>,
) -> impl Fn(
    std::net::SocketAddr,
    wasmtime_wasi::sockets::SocketAddrUse,
) -> std::pin::Pin<Box<dyn Future<Output = bool> + Send + Sync>>
       + Send
       + Sync
       + 'static {
    use wasmtime_wasi::sockets::SocketAddrUse;
    move |addr, use_| {
        let allow = allow.clone();
        let (plugin, instance) = (plugin.clone(), instance.clone());
        Box::pin(async move {
            let ok = match use_ {
                SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                SocketAddrUse::TcpConnect => {
                    let allow2 = allow.clone();
                    tokio::task::spawn_blocking(move || addr_allowed(&allow2, addr))
                        .await
                        .unwrap_or(false)
                }
                _ => false,
            };
            if !ok {
                tracing::warn!(plugin = %plugin, instance = %instance, address = %addr, use_ = ?use_, "denied socket use: address not in the instance's allow_hosts");
            }
            ok
        })
    }
}

fn addr_allowed(allow: &[HostPattern], addr: std::net::SocketAddr) -> bool {
    use std::net::ToSocketAddrs;
    allow.iter().any(|p| match p {
        HostPattern::Any => true,
        HostPattern::Suffix(_) => false,
        HostPattern::Exact { host, port } => {
            if port.is_some_and(|p| p != addr.port()) {
                return false;
            }
            match host.parse::<std::net::IpAddr>() {
                Ok(ip) => ip == addr.ip(),
                Err(_) => (host.as_str(), addr.port())
                    .to_socket_addrs()
                    .map(|mut it| it.any(|a| a.ip() == addr.ip()))
                    .unwrap_or(false),
            }
        }
    })
}

/// Counts of what an instance's policy did during one call.
#[derive(Debug, Default)]
pub struct PolicyCounters {
    pub allowed: AtomicU64,
    pub denied: AtomicU64,
}

/// `wasi:http` hooks enforcing one instance's allow-list.
pub struct OutboundPolicy {
    pub allow: Arc<[HostPattern]>,
    pub plugin: Arc<str>,
    pub instance: Arc<str>,
    pub counters: Arc<PolicyCounters>,
    /// The instance's `http_config` client; None: wasmtime's own sender.
    pub http: Option<Arc<super::outbound::OutboundHttp>>,
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        drop(fut);
        let (target, allowed) = check_uri(&self.allow, request.uri());
        if !allowed {
            self.counters.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                plugin = %self.plugin,
                instance = %self.instance,
                target = %target,
                method = %request.method(),
                "denied outbound HTTP request: host not in the instance's allow_hosts"
            );
            discard(request.into_body());
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        self.counters.allowed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(plugin = %self.plugin, instance = %self.instance, target = %target, "outbound HTTP request");
        let request = request.map(|body| DrainOnDrop(Some(body)));
        if let Some(http) = self.http.clone() {
            let (plugin, instance) = (self.plugin.clone(), self.instance.clone());
            let counters = self.counters.clone();
            return Box::new(async move {
                let res = http
                    .send(request, options, |target| {
                        counters.denied.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            plugin = %plugin,
                            instance = %instance,
                            target = %target,
                            "denied outbound HTTP redirect: host not in the instance's allow_hosts"
                        );
                    })
                    .await?;
                Ok((
                    res,
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        Box::new(async move {
            let (res, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                res.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// A request body that keeps being read after the host is done with it.
///
/// A guest may write its body after `outgoing-handler.handle` returns
/// (StarlingMonkey's `fetch` does, and so does any streaming writer). When
/// the host fails the request first — denied above, or refused by the
/// network before the body was read — the body's reader is gone, the
/// guest's next write fails, and StarlingMonkey treats that as fatal: an
/// uncatchable `unreachable` trap instead of a rejected `fetch` carrying the
/// request's error. Dropped before its end, this body (and a denied
/// request's) is read to the end and discarded, so the guest's writes
/// succeed and its response future reports what really happened.
struct DrainOnDrop(Option<WasiBody>);

impl Body for DrainOnDrop {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut().0.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.0.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl Drop for DrainOnDrop {
    fn drop(&mut self) {
        if let Some(body) = self.0.take() {
            discard(body);
        }
    }
}

/// Reads `body` to its end in the background, throwing the bytes away. The
/// task ends when the guest finishes the body or its store (the sender)
/// goes away, so it never outlives the call; without a runtime (not the
/// case in the agent) the body is just dropped.
fn discard(mut body: WasiBody) {
    if body.is_end_stream() {
        return;
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(patterns: &[&str], uri: &str) -> bool {
        let p: Vec<_> = patterns
            .iter()
            .map(|s| HostPattern::parse(s).unwrap())
            .collect();
        check_uri(&p, &uri.parse().unwrap()).1
    }

    #[test]
    fn patterns() {
        assert!(allowed(&["127.0.0.1:8080"], "http://127.0.0.1:8080/x"));
        assert!(!allowed(&["127.0.0.1:8080"], "http://127.0.0.1:8081/x"));
        assert!(allowed(
            &["hooks.slack.com"],
            "https://hooks.slack.com/services/x"
        ));
        assert!(allowed(
            &["Hooks.Slack.com:443"],
            "https://hooks.slack.com/x"
        ));
        assert!(!allowed(
            &["hooks.slack.com:443"],
            "http://hooks.slack.com/x"
        ));
        assert!(allowed(
            &["*.pagerduty.com"],
            "https://events.pagerduty.com/v2/enqueue"
        ));
        assert!(!allowed(&["*.pagerduty.com"], "https://pagerduty.com/"));
        assert!(!allowed(&["*.pagerduty.com"], "https://evilpagerduty.com/"));
        assert!(allowed(&["[::1]:9000"], "http://[::1]:9000/"));
        assert!(allowed(&["*"], "http://anything.example/"));
        assert!(!allowed(&[], "http://127.0.0.1/"));
    }

    #[test]
    fn socket_addresses() {
        let p: Vec<_> = ["127.0.0.1:2525", "localhost:25", "*.example.com"]
            .iter()
            .map(|s| HostPattern::parse(s).unwrap())
            .collect();
        assert!(addr_allowed(&p, "127.0.0.1:2525".parse().unwrap()));
        assert!(!addr_allowed(&p, "127.0.0.1:2526".parse().unwrap()));
        assert!(
            addr_allowed(&p, "127.0.0.1:25".parse().unwrap()),
            "localhost resolves to 127.0.0.1"
        );
        assert!(!addr_allowed(&p, "127.0.0.2:25".parse().unwrap()));
    }
}
