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
