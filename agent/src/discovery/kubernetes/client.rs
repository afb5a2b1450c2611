//! The API client of one `kubernetes_sd_configs` entry: `api_server` with
//! the HTTP client keys, a `kubeconfig_file`, or the in-cluster config when
//! neither is given.
//!
//! Credentials are added to each request by [`AuthLayer`], not by kube:
//! kube caches a token file for a minute, and a rotated service-account
//! token (or `credentials_file`) must be used by the next request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use http::Request;
use kube::client::{Body, ClientBuilder};

use crate::config::discovery::KubernetesSdConfig;
use crate::config::http_client::{Credentials, HttpClientConfig};

/// Where the in-cluster config comes from: the service's env and the
/// service-account directory. Injectable so tests need no real pod.
#[derive(Debug, Clone)]
pub struct InCluster {
    pub host: Option<String>,
    pub port: Option<String>,
    /// Holds `token`, `ca.crt` and `namespace`.
    pub dir: PathBuf,
}

impl InCluster {
    pub const SERVICE_ACCOUNT_DIR: &'static str = "/var/run/secrets/kubernetes.io/serviceaccount";

    /// The process' own: `KUBERNETES_SERVICE_HOST/PORT` and the mounted
    /// service account.
    pub fn from_env() -> InCluster {
        InCluster {
            host: std::env::var("KUBERNETES_SERVICE_HOST").ok(),
            port: std::env::var("KUBERNETES_SERVICE_PORT").ok(),
            dir: PathBuf::from(Self::SERVICE_ACCOUNT_DIR),
        }
    }

    /// The namespace the agent runs in (`namespaces.own_namespace`).
    pub fn namespace(&self) -> Result<String> {
        let f = self.dir.join("namespace");
        let ns = std::fs::read_to_string(&f).with_context(|| {
            format!(
                "namespaces.own_namespace: reading {} (not running in a pod?)",
                f.display()
            )
        })?;
        Ok(ns.trim().to_string())
    }
}

/// A connected client and the namespace `own_namespace` means.
pub struct ApiClient {
    pub client: kube::Client,
    /// The in-cluster namespace, the kubeconfig context's, or `default`.
    pub own_namespace: String,
}

/// Reads and parses a kubeconfig file, for the check at config load (a
/// file that does not parse fails `wasmon check config` and a reload);
/// discovery reads it again each time it connects.
pub fn check_kubeconfig(path: &Path) -> Result<()> {
    kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("kubeconfig_file {}", path.display()))?;
    Ok(())
}

/// Builds the client of `sd`. `base` resolves relative paths (the config
/// file's directory). Errors say what to fix; the caller adds the job.
pub async fn connect(
    sd: &KubernetesSdConfig,
    base: &Path,
    incluster: &InCluster,
) -> Result<ApiClient> {
    let http = sd.http_client();
    let (mut config, auth, own_namespace) = match (&sd.api_server, &sd.kubeconfig_file) {
        (Some(_), Some(_)) => bail!("api_server and kubeconfig_file are mutually exclusive"),
        (None, Some(file)) => {
            let path = base.join(file);
            let kc = kube::config::Kubeconfig::read_from(&path)
                .with_context(|| format!("kubeconfig_file {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .with_context(|| format!("kubeconfig_file {}", path.display()))?;
            let ns = config.default_namespace.clone();
            // kube authenticates from the kubeconfig itself.
            (config, Credentials::default(), ns)
        }
        (Some(url), None) => {
            let uri: http::Uri = url
                .parse()
                .with_context(|| format!("api_server {url:?} is not a URL"))?;
            let mut config = kube::Config::new(uri);
            apply_http_client(&mut config, &http, base)?;
            http.validate()?;
            let credentials = http.credentials().resolved(&|p| base.join(p));
            (config, credentials, "default".to_string())
        }
        (None, None) => {
            let (Some(host), Some(port)) = (&incluster.host, &incluster.port) else {
                bail!("neither api_server nor kubeconfig_file given and not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)");
            };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let uri: http::Uri = format!("https://{host}:{port}")
                .parse()
                .with_context(|| format!("KUBERNETES_SERVICE_HOST/PORT {host}:{port}"))?;
            let mut config = kube::Config::new(uri);
            let ca = incluster.dir.join("ca.crt");
            config.root_cert = Some(read_certs(&ca)?);
            // kube re-reads this file, so a rotated cluster CA is picked up.
            config.root_cert_file = Some(ca);
            let token = incluster.dir.join("token");
            std::fs::metadata(&token)
                .with_context(|| format!("in-cluster service-account token {}", token.display()))?;
            // Asked for, the namespace file must be there; otherwise it only
            // names the default.
            let ns = if sd.namespaces.own_namespace {
                incluster.namespace()?
            } else {
                incluster.namespace().unwrap_or_else(|_| "default".into())
            };
            (
                config,
                Credentials::bearer_file("in-cluster service-account token", token),
                ns,
            )
        }
    };
    // A watch is long-lived: no read timeout (kube's default too).
    config.read_timeout = None;
    // The streams retry with their own bounded backoff and record each
    // failure in the Status; kube's retries of 503s would hide an outage.
    config.default_retry = false;
    // Credentials go on each request here, read anew each time (kube's own
    // token file handling caches a token for a minute).
    let auth = Arc::new(auth);
    let layer = tower::util::MapRequestLayer::new(move |mut req: Request<Body>| {
        match auth.header_value_now() {
            Ok(Some(v)) => {
                req.headers_mut().insert(http::header::AUTHORIZATION, v);
            }
            Ok(None) => {}
            // Sent without: the API's 401 then says the rest.
            Err(e) => tracing::warn!(error = %e, "kubernetes_sd: credentials"),
        }
        req
    });
    let client = ClientBuilder::try_from(config)
        .context("building the API client")?
        .with_layer(&layer)
        .build();
    Ok(ApiClient {
        client,
        own_namespace,
    })
}

fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject as _;
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading CA certificates {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs.into_iter().map(|c| c.to_vec()).collect())
}

/// `tls_config` and `proxy_url` onto kube's config (auth is the layer's).
fn apply_http_client(config: &mut kube::Config, h: &HttpClientConfig, base: &Path) -> Result<()> {
    if let Some(p) = &h.proxy_url {
        config.proxy_url = Some(
            p.parse()
                .with_context(|| format!("proxy_url {p:?} is not a URL"))?,
        );
    }
    let Some(tls) = &h.tls_config else {
        return Ok(());
    };
    config.accept_invalid_certs = tls.insecure_skip_verify;
    config.tls_server_name = tls.server_name.clone();
    if let Some(f) = &tls.ca_file {
        let path = base.join(f);
        config.root_cert = Some(read_certs(&path).context("tls_config.ca_file")?);
        config.root_cert_file = Some(path);
    } else if let Some(pem) = &tls.ca {
        use rustls_pki_types::pem::PemObject as _;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("tls_config.ca")?;
        config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
    }
    let a = &mut config.auth_info;
    a.client_certificate = tls
        .cert_file
        .as_ref()
        .map(|f| base.join(f).display().to_string());
    a.client_key = tls
        .key_file
        .as_ref()
        .map(|f| base.join(f).display().to_string());
    a.client_certificate_data = tls.cert.as_ref().map(|c| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(c)
    });
    a.client_key_data = tls.key.as_ref().map(|k| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(k.expose())
            .into()
    });
    Ok(())
}
