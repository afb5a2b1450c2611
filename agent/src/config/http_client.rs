//! Prometheus' HTTP client keys (`prometheus/common` `config.HTTPClientConfig`),
//! shared by scrape jobs and the discovery mechanisms that talk HTTP
//! (`http_sd_configs`, `kubernetes_sd_configs`).
//!
//! Prometheus writes these keys inline, next to the job's own keys. serde's
//! `flatten` would do that but loses the line of a bad value and, with
//! `deny_unknown_fields`, the name of the key, so the keys are added to each
//! config struct by [`with_http_client_config!`] and read back as one
//! [`HttpClientConfig`] by the `http_client()` method it adds.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::scrape::BasicAuth;
use super::Secret;

/// The HTTP client settings of a scrape job or a discovery mechanism.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    pub authorization: Option<Authorization>,
    /// Legacy form of `authorization: {credentials}` (Prometheus 2).
    pub bearer_token: Option<Secret>,
    /// Legacy form of `authorization: {credentials_file}` (Prometheus 2).
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: Option<TlsConfig>,
    pub proxy_url: Option<String>,
    /// Comma-separated hosts, domains (`.example.com`) and CIDRs not proxied.
    pub no_proxy: Option<String>,
    /// Take the proxy from `HTTP(S)_PROXY` / `NO_PROXY`.
    pub proxy_from_environment: bool,
    pub follow_redirects: bool,
    pub enable_http2: bool,
}

/// `authorization`: a header `Authorization: <type> <credentials>`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    #[serde(default = "default_authorization_type", rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub credentials: Option<Secret>,
    /// Re-read on every request, so a rotated token is used at once.
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
}

fn default_authorization_type() -> String {
    "Bearer".into()
}

/// `tls_config`, as Prometheus' `config.TLSConfig`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM text of the CA certificate(s), instead of `ca_file`.
    #[serde(default)]
    pub ca: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<Secret>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// `TLS10` .. `TLS13`, as Prometheus spells them.
    #[serde(default)]
    pub min_version: Option<String>,
    #[serde(default)]
    pub max_version: Option<String>,
}

pub(crate) fn default_true() -> bool {
    true
}

/// Declares a config struct with Prometheus' HTTP client keys added to its
/// own, and `fn http_client(&self) -> HttpClientConfig` to read them.
macro_rules! with_http_client_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $($body:tt)*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $($body)*
            #[serde(default)]
            pub basic_auth: Option<$crate::config::scrape::BasicAuth>,
            #[serde(default)]
            pub authorization: Option<$crate::config::http_client::Authorization>,
            #[serde(default)]
            pub bearer_token: Option<$crate::config::Secret>,
            #[serde(default)]
            pub bearer_token_file: Option<std::path::PathBuf>,
            #[serde(default)]
            pub tls_config: Option<$crate::config::http_client::TlsConfig>,
            #[serde(default)]
            pub proxy_url: Option<String>,
            #[serde(default)]
            pub no_proxy: Option<String>,
            #[serde(default)]
            pub proxy_from_environment: bool,
            #[serde(default = "crate::config::http_client::default_true")]
            pub follow_redirects: bool,
            #[serde(default = "crate::config::http_client::default_true")]
            pub enable_http2: bool,
        }

        impl $name {
            /// This config's HTTP client keys.
            pub fn http_client(&self) -> $crate::config::http_client::HttpClientConfig {
                $crate::config::http_client::HttpClientConfig {
                    basic_auth: self.basic_auth.clone(),
                    authorization: self.authorization.clone(),
                    bearer_token: self.bearer_token.clone(),
                    bearer_token_file: self.bearer_token_file.clone(),
                    tls_config: self.tls_config.clone(),
                    proxy_url: self.proxy_url.clone(),
                    no_proxy: self.no_proxy.clone(),
                    proxy_from_environment: self.proxy_from_environment,
                    follow_redirects: self.follow_redirects,
                    enable_http2: self.enable_http2,
                }
            }
        }
    };
}
pub(crate) use with_http_client_config;

with_http_client_config! {
    /// The HTTP client keys in a section of their own, as Alertmanager's
    /// receivers write them (`http_config:`).
    #[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct HttpConfigSection {}
}

// ---------------------------------------------------------------------------
// Making the keys work: the one place an `HttpClientConfig` becomes a
// `reqwest::Client` and an `Authorization` header. Scrape jobs and the
// discovery mechanisms that talk HTTP both build their clients here.

use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls;

/// Largest credentials / password file read: a token is a few KB; a path
/// pointing at a huge or endless file must not fill memory.
pub const MAX_CREDENTIALS_FILE: u64 = 64 * 1024;

/// Why a job's HTTP client keys cannot be used. Each names the key.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error(
        "at most one of basic_auth, authorization, bearer_token and bearer_token_file may be set"
    )]
    ConflictingAuth,
    #[error("authorization.type {0:?} is not allowed: use basic_auth instead")]
    BasicAuthorizationType(String),
    #[error("at most one of {0} and {1} may be set")]
    Both(&'static str, &'static str),
    #[error("{0} is set without {1}")]
    Without(&'static str, &'static str),
    #[error("reading {key} {path}: {source}")]
    ReadFile {
        key: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{key} {path} is larger than {MAX_CREDENTIALS_FILE} bytes")]
    FileTooLarge { key: &'static str, path: PathBuf },
    #[error("{key}: {why}")]
    Invalid { key: &'static str, why: String },
    #[error("tls_config.{key} {value:?}: only TLS12 and TLS13 are supported (rustls has no TLS 1.0/1.1)")]
    TlsVersion { key: &'static str, value: String },
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

impl HttpClientConfig {
    /// Prometheus' checks (`HTTPClientConfig.Validate`, `TLSConfig.Validate`)
    /// that need no file: at most one auth, no `Basic` authorization type,
    /// a value or a file but not both, a certificate with its key, no
    /// `no_proxy` without `proxy_url`.
    pub fn validate(&self) -> Result<(), HttpClientError> {
        use HttpClientError::*;
        let auths = [
            self.basic_auth.is_some(),
            self.authorization.is_some(),
            self.bearer_token.is_some(),
            self.bearer_token_file.is_some(),
        ];
        if auths.iter().filter(|x| **x).count() > 1 {
            return Err(ConflictingAuth);
        }
        if let Some(a) = &self.authorization {
            if a.kind.eq_ignore_ascii_case("basic") {
                return Err(BasicAuthorizationType(a.kind.clone()));
            }
            if a.credentials.is_some() && a.credentials_file.is_some() {
                return Err(Both(
                    "authorization.credentials",
                    "authorization.credentials_file",
                ));
            }
        }
        if let Some(b) = &self.basic_auth {
            if !b.password.expose().is_empty() && b.password_file.is_some() {
                return Err(Both("basic_auth.password", "basic_auth.password_file"));
            }
        }
        if self.no_proxy.is_some() && self.proxy_url.is_none() {
            return Err(Without("no_proxy", "proxy_url"));
        }
        if self.proxy_from_environment && self.proxy_url.is_some() {
            return Err(Both("proxy_from_environment", "proxy_url"));
        }
        if let Some(t) = &self.tls_config {
            if t.ca.is_some() && t.ca_file.is_some() {
                return Err(Both("tls_config.ca", "tls_config.ca_file"));
            }
            if t.cert.is_some() && t.cert_file.is_some() {
                return Err(Both("tls_config.cert", "tls_config.cert_file"));
            }
            if t.key.is_some() && t.key_file.is_some() {
                return Err(Both("tls_config.key", "tls_config.key_file"));
            }
            let has_cert = t.cert.is_some() || t.cert_file.is_some();
            let has_key = t.key.is_some() || t.key_file.is_some();
            if has_cert && !has_key {
                return Err(Without("tls_config.cert_file", "tls_config.key_file"));
            }
            if has_key && !has_cert {
                return Err(Without("tls_config.key_file", "tls_config.cert_file"));
            }
            let min = t
                .min_version
                .as_deref()
                .map(|v| tls_version("min_version", v))
                .transpose()?;
            let max = t
                .max_version
                .as_deref()
                .map(|v| tls_version("max_version", v))
                .transpose()?;
            if let (Some(min), Some(max)) = (min, max) {
                if min > max {
                    return Err(Invalid {
                        key: "tls_config.max_version",
                        why: "is lower than min_version".into(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Validates the keys and builds the client: TLS (CA, client
    /// certificate, server name, versions), proxy, redirects, HTTP/2.
    /// `resolve` makes a relative file path absolute (the config's dir).
    /// The files are read now; credentials files are read per request by
    /// [`Credentials`].
    pub fn build(
        &self,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<reqwest::Client, HttpClientError> {
        self.builder(resolve)?
            .build()
            .map_err(HttpClientError::Build)
    }

    /// [`HttpClientConfig::build`] before its last step, for a caller that
    /// adds to it (plugins replace the redirect policy with one that also
    /// checks the instance's `allow_hosts`).
    pub fn builder(
        &self,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<reqwest::ClientBuilder, HttpClientError> {
        self.validate()?;
        let tls = self.rustls_config(resolve)?;
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("wasmon/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls(tls)
            .redirect(if self.follow_redirects {
                // Go's http.Client stops after 10 redirects.
                reqwest::redirect::Policy::limited(10)
            } else {
                reqwest::redirect::Policy::none()
            });
        if !self.enable_http2 {
            b = b.http1_only();
        }
        if let Some(url) = &self.proxy_url {
            let invalid = |e: reqwest::Error| HttpClientError::Invalid {
                key: "proxy_url",
                why: e.to_string(),
            };
            let parsed = reqwest::Url::parse(url).map_err(|e| HttpClientError::Invalid {
                key: "proxy_url",
                why: e.to_string(),
            })?;
            if !matches!(parsed.scheme(), "http" | "https" | "socks5" | "socks5h") {
                return Err(HttpClientError::Invalid {
                    key: "proxy_url",
                    why: format!("unsupported scheme {:?}", parsed.scheme()),
                });
            }
            let proxy = reqwest::Proxy::all(url.as_str())
                .map_err(invalid)?
                .no_proxy(
                    self.no_proxy
                        .as_deref()
                        .and_then(reqwest::NoProxy::from_string),
                );
            b = b.proxy(proxy);
        } else if !self.proxy_from_environment {
            // Prometheus uses HTTP(S)_PROXY only when told to.
            b = b.no_proxy();
        }
        Ok(b)
    }

    fn rustls_config(
        &self,
        resolve: &dyn Fn(&Path) -> PathBuf,
    ) -> Result<rustls::ClientConfig, HttpClientError> {
        let default = TlsConfig::default();
        let t = self.tls_config.as_ref().unwrap_or(&default);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let min = t
            .min_version
            .as_deref()
            .map(|v| tls_version("min_version", v))
            .transpose()?
            .unwrap_or(12);
        let max = t
            .max_version
            .as_deref()
            .map(|v| tls_version("max_version", v))
            .transpose()?
            .unwrap_or(13);
        let versions: Vec<&'static rustls::SupportedProtocolVersion> =
            [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
                .into_iter()
                .filter(|(v, _)| (min..=max).contains(v))
                .map(|(_, p)| p)
                .collect();

        let mut roots = rustls::RootCertStore::empty();
        let ca = match (&t.ca, &t.ca_file) {
            (Some(pem), _) => Some(("tls_config.ca", pem.as_bytes().to_vec())),
            (None, Some(f)) => Some((
                "tls_config.ca_file",
                read_file("tls_config.ca_file", &resolve(f))?,
            )),
            (None, None) => None,
        };
        match ca {
            // A CA given replaces the built-in roots, as Go's RootCAs does.
            Some((key, pem)) => {
                for cert in parse_certs(key, &pem)? {
                    roots.add(cert).map_err(|e| HttpClientError::Invalid {
                        key,
                        why: e.to_string(),
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .map_err(|e| HttpClientError::Invalid {
            key: "tls_config.ca",
            why: e.to_string(),
        })?;
        let server_name = t
            .server_name
            .as_deref()
            .map(|n| {
                ServerName::try_from(n.to_string()).map_err(|e| HttpClientError::Invalid {
                    key: "tls_config.server_name",
                    why: e.to_string(),
                })
            })
            .transpose()?;
        let verifier = Arc::new(Verifier {
            webpki,
            server_name,
            skip: t.insecure_skip_verify,
            provider: provider.clone(),
        });
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&versions)
            .map_err(|e| HttpClientError::Invalid {
                key: "tls_config.min_version",
                why: e.to_string(),
            })?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let cert = match (&t.cert, &t.cert_file) {
            (Some(pem), _) => Some(("tls_config.cert", pem.as_bytes().to_vec())),
            (None, Some(f)) => Some((
                "tls_config.cert_file",
                read_file("tls_config.cert_file", &resolve(f))?,
            )),
            (None, None) => None,
        };
        let mut config = match cert {
            Some((key_name, pem)) => {
                let certs = parse_certs(key_name, &pem)?;
                let (kkey, kpem) = match (&t.key, &t.key_file) {
                    (Some(k), _) => ("tls_config.key", k.expose().as_bytes().to_vec()),
                    (None, Some(f)) => (
                        "tls_config.key_file",
                        read_file("tls_config.key_file", &resolve(f))?,
                    ),
                    // validate() refuses a certificate without a key.
                    (None, None) => {
                        return Err(HttpClientError::Without(
                            "tls_config.cert_file",
                            "tls_config.key_file",
                        ))
                    }
                };
                let key =
                    PrivateKeyDer::from_pem_slice(&kpem).map_err(|e| HttpClientError::Invalid {
                        key: kkey,
                        why: format!("no PEM private key: {e}"),
                    })?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| HttpClientError::Invalid {
                        key: key_name,
                        why: e.to_string(),
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = if self.enable_http2 {
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        } else {
            vec![b"http/1.1".to_vec()]
        };
        Ok(config)
    }

    /// Where the `Authorization` header of each request comes from.
    pub fn credentials(&self) -> Credentials {
        let source = if let Some(b) = &self.basic_auth {
            match &b.password_file {
                Some(f) => Source::BasicFile {
                    username: b.username.clone(),
                    path: f.clone(),
                },
                None => Source::Inline(basic(&b.username, b.password.expose())),
            }
        } else if let Some(a) = &self.authorization {
            match (&a.credentials_file, &a.credentials) {
                (Some(f), _) => Source::File {
                    kind: a.kind.clone(),
                    key: "authorization.credentials_file",
                    path: f.clone(),
                },
                (None, Some(c)) => Source::Inline(format!("{} {}", a.kind, c.expose())),
                (None, None) => Source::Inline(a.kind.clone()),
            }
        } else if let Some(t) = &self.bearer_token {
            Source::Inline(format!("Bearer {}", t.expose()))
        } else if let Some(f) = &self.bearer_token_file {
            Source::File {
                kind: "Bearer".into(),
                key: "bearer_token_file",
                path: f.clone(),
            }
        } else {
            Source::None
        };
        Credentials { source }
    }
}

/// `TLS12` -> 12. TLS 1.0 and 1.1 are refused by name.
fn tls_version(key: &'static str, v: &str) -> Result<u8, HttpClientError> {
    match v {
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        _ => Err(HttpClientError::TlsVersion {
            key,
            value: v.to_string(),
        }),
    }
}

/// A PEM file (CA, certificate, key): bundles can be larger than tokens.
fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, HttpClientError> {
    read_bounded(key, path, 16 * MAX_CREDENTIALS_FILE)
}

/// Reads at most `limit` bytes of `path`; a larger file is an error.
fn read_bounded(key: &'static str, path: &Path, limit: u64) -> Result<Vec<u8>, HttpClientError> {
    use std::io::Read as _;
    let io = |source| HttpClientError::ReadFile {
        key,
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(limit + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > limit {
        return Err(HttpClientError::FileTooLarge {
            key,
            path: path.to_path_buf(),
        });
    }
    Ok(buf)
}

fn parse_certs(
    key: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, HttpClientError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| HttpClientError::Invalid {
            key,
            why: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(HttpClientError::Invalid {
            key,
            why: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn basic(username: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

/// Checks the server's certificate against `tls_config.server_name` when
/// set (instead of the URL's host), or not at all with
/// `insecure_skip_verify`; signatures are always checked.
#[derive(Debug)]
struct Verifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    server_name: Option<ServerName<'static>>,
    skip: bool,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if self.skip {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        let name = self.server_name.as_ref().unwrap_or(server_name);
        self.webpki
            .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The `Authorization` header of a client's requests. Files
/// (`authorization.credentials_file`, `bearer_token_file`,
/// `basic_auth.password_file`) are read on every request, as Prometheus
/// does, so a rotated service-account token is used at once.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Credentials {
    source: Source,
}

#[derive(Debug, Clone, PartialEq, Default)]
enum Source {
    #[default]
    None,
    /// The whole header value.
    Inline(String),
    File {
        kind: String,
        key: &'static str,
        path: PathBuf,
    },
    BasicFile {
        username: String,
        path: PathBuf,
    },
}

impl Credentials {
    /// Resolves relative file paths against the config file's directory.
    pub fn resolved(mut self, resolve: &dyn Fn(&Path) -> PathBuf) -> Credentials {
        match &mut self.source {
            Source::File { path, .. } | Source::BasicFile { path, .. } => *path = resolve(path),
            Source::None | Source::Inline(_) => {}
        }
        self
    }

    /// Reads the files once, for the checks at config load.
    pub fn check(&self) -> Result<(), HttpClientError> {
        match &self.source {
            Source::File { key, path, .. } => read_credentials(key, path).map(drop),
            Source::BasicFile { path, .. } => {
                read_credentials("basic_auth.password_file", path).map(drop)
            }
            Source::None | Source::Inline(_) => Ok(()),
        }
    }

    /// A bearer token read from `path` on every request: the in-cluster
    /// service account's, which the kubelet rotates. `key` names it in
    /// errors.
    pub fn bearer_file(key: &'static str, path: PathBuf) -> Credentials {
        Credentials {
            source: Source::File {
                kind: "Bearer".into(),
                key,
                path,
            },
        }
    }

    /// The header value for the next request (None: no header). Reads
    /// the credentials file on the blocking pool, bounded in size.
    pub async fn header_value(
        &self,
    ) -> Result<Option<reqwest::header::HeaderValue>, HttpClientError> {
        match &self.source {
            Source::None | Source::Inline(_) => self.header_value_now(),
            Source::File { .. } | Source::BasicFile { .. } => {
                let me = self.clone();
                tokio::task::spawn_blocking(move || me.header_value_now())
                    .await
                    .map_err(|e| HttpClientError::Invalid {
                        key: "credentials",
                        why: e.to_string(),
                    })?
            }
        }
    }

    /// [`Credentials::header_value`] read on the calling thread, for a
    /// caller that cannot await (the Kubernetes client's request layer);
    /// a credentials file is small and read with a bound.
    pub fn header_value_now(
        &self,
    ) -> Result<Option<reqwest::header::HeaderValue>, HttpClientError> {
        if self.source == Source::None {
            return Ok(None);
        }
        let text = self.read_now()?;
        let mut v = reqwest::header::HeaderValue::from_str(&text).map_err(|_| {
            HttpClientError::Invalid {
                key: "credentials",
                why: "not a valid HTTP header value (a control character?)".into(),
            }
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    fn read_now(&self) -> Result<String, HttpClientError> {
        match &self.source {
            Source::File { kind, key, path } => {
                Ok(format!("{kind} {}", read_credentials(key, path)?))
            }
            Source::BasicFile { username, path } => Ok(basic(
                username,
                &read_credentials("basic_auth.password_file", path)?,
            )),
            Source::None => Ok(String::new()),
            Source::Inline(v) => Ok(v.clone()),
        }
    }
}

/// A credentials file's text without its trailing newline.
fn read_credentials(key: &'static str, path: &Path) -> Result<String, HttpClientError> {
    let buf = read_bounded(key, path, MAX_CREDENTIALS_FILE)?;
    let text = String::from_utf8(buf).map_err(|_| HttpClientError::Invalid {
        key,
        why: format!("{} is not UTF-8 text", path.display()),
    })?;
    Ok(text.trim_end().to_string())
}
