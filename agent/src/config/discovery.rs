//! Service discovery configs of a scrape job, with Prometheus' keys:
//! `kubernetes_sd_configs`, `http_sd_configs`, `dns_sd_configs` (file SD is
//! in [`super::scrape::FileSdConfig`]). What they do is in `crate::discovery`.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::http_client::with_http_client_config;

/// A Kubernetes object kind discovered as targets.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum KubernetesRole {
    Pod,
    Service,
    Endpoints,
    #[serde(rename = "endpointslice")]
    EndpointSlice,
    Node,
    Ingress,
}

impl KubernetesRole {
    /// As written in the config and in `__meta_kubernetes_*` docs.
    pub fn as_str(self) -> &'static str {
        match self {
            KubernetesRole::Pod => "pod",
            KubernetesRole::Service => "service",
            KubernetesRole::Endpoints => "endpoints",
            KubernetesRole::EndpointSlice => "endpointslice",
            KubernetesRole::Node => "node",
            KubernetesRole::Ingress => "ingress",
        }
    }
}

with_http_client_config! {
    /// One `kubernetes_sd_configs` entry. The HTTP client keys apply to the
    /// API server when `api_server` is given.
    #[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct KubernetesSdConfig {
        pub role: KubernetesRole,
        /// The API server's URL; without it (and without `kubeconfig_file`)
        /// the in-cluster config is used.
        #[serde(default)]
        pub api_server: Option<String>,
        #[serde(default)]
        pub kubeconfig_file: Option<PathBuf>,
        #[serde(default)]
        pub namespaces: NamespaceDiscovery,
        #[serde(default)]
        pub selectors: Vec<SelectorConfig>,
        #[serde(default)]
        pub attach_metadata: AttachMetadata,
    }
}

impl KubernetesRole {
    /// The roles whose selectors a config of this role may carry: the
    /// kinds its watches list (Prometheus' `allowedSelectors`).
    pub fn allowed_selectors(self) -> &'static [KubernetesRole] {
        use KubernetesRole as R;
        match self {
            R::Pod => &[R::Pod, R::Node],
            R::Service => &[R::Service],
            R::EndpointSlice => &[R::Pod, R::Service, R::EndpointSlice],
            R::Endpoints => &[R::Pod, R::Service, R::Endpoints],
            R::Node => &[R::Node],
            R::Ingress => &[R::Ingress],
        }
    }
}

impl KubernetesSdConfig {
    /// Prometheus' checks of an `SDConfig` (kubernetes.go `UnmarshalYAML`);
    /// the error says what to change, the caller says where.
    pub fn validate(&self) -> anyhow::Result<()> {
        use anyhow::bail;
        let custom_http = self.http_client()
            != super::http_client::HttpClientConfig {
                follow_redirects: true,
                enable_http2: true,
                ..Default::default()
            };
        match (&self.api_server, &self.kubeconfig_file) {
            (Some(_), Some(_)) => {
                bail!("cannot use 'kubeconfig_file' and 'api_server' simultaneously")
            }
            (None, Some(_)) if custom_http => bail!(
                "cannot use a custom HTTP client configuration together with 'kubeconfig_file'"
            ),
            (None, None) if custom_http => bail!(
                "to use custom HTTP client configuration please provide the 'api_server' URL explicitly"
            ),
            (Some(url), None) => {
                let ok = url
                    .parse::<http::Uri>()
                    .is_ok_and(|u| u.scheme().is_some() && u.host().is_some());
                if !ok {
                    bail!("api_server {url:?} must be a URL such as https://host:6443");
                }
                if self.namespaces.own_namespace {
                    bail!("cannot use 'api_server' and 'namespaces.own_namespace' simultaneously");
                }
            }
            (None, Some(_)) if self.namespaces.own_namespace => bail!(
                "cannot use 'kubeconfig_file' and 'namespaces.own_namespace' simultaneously"
            ),
            _ => {}
        }
        let allowed = self.role.allowed_selectors();
        let mut seen = Vec::new();
        for (i, sel) in self.selectors.iter().enumerate() {
            if seen.contains(&sel.role) {
                bail!(
                    "selectors[{i}]: duplicated selector role: {}",
                    sel.role.as_str()
                );
            }
            seen.push(sel.role);
            if !allowed.contains(&sel.role) {
                let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                bail!(
                    "selectors[{i}]: {} role supports only {} selectors, not {}",
                    self.role.as_str(),
                    names.join(", "),
                    sel.role.as_str()
                );
            }
            if let Some(f) = &sel.field {
                check_field_selector(f)
                    .map_err(|e| anyhow::anyhow!("selectors[{i}]: field {f:?}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// A field selector is comma-separated `key=value`, `key==value` or
/// `key!=value` terms (Kubernetes' `fields.ParseSelector`).
fn check_field_selector(s: &str) -> Result<(), &'static str> {
    for term in s.split(',').filter(|t| !t.trim().is_empty()) {
        let key = term
            .split_once("!=")
            .or_else(|| term.split_once("=="))
            .or_else(|| term.split_once('='))
            .map(|(k, _)| k.trim());
        match key {
            Some(k) if !k.is_empty() => {}
            _ => return Err("each term must be key=value, key==value or key!=value"),
        }
    }
    Ok(())
}

/// `namespaces`: none named and not `own_namespace` means all namespaces.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NamespaceDiscovery {
    #[serde(default)]
    pub own_namespace: bool,
    #[serde(default)]
    pub names: Vec<String>,
}

/// One `selectors` entry: label and field selectors for the watches of
/// one role (the `endpoints` role also watches pods and services).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SelectorConfig {
    pub role: KubernetesRole,
    /// `${VAR}` is expanded (a node agent's `spec.nodeName=${NODE_NAME}`).
    #[serde(default, deserialize_with = "super::env::deserialize_expanded_opt")]
    pub label: Option<String>,
    #[serde(default, deserialize_with = "super::env::deserialize_expanded_opt")]
    pub field: Option<String>,
}

/// `attach_metadata`: add the labels of the target's node (roles pod,
/// endpoints, endpointslice) or namespace (every namespaced role).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AttachMetadata {
    #[serde(default)]
    pub node: bool,
    #[serde(default)]
    pub namespace: bool,
}

with_http_client_config! {
    /// One `http_sd_configs` entry: a URL serving a JSON list of target
    /// groups (Prometheus' HTTP SD).
    #[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    pub struct HttpSdConfig {
        pub url: String,
        #[serde(default = "default_http_refresh", with = "crate::model::duration::serde_std")]
        pub refresh_interval: Duration,
    }
}

fn default_http_refresh() -> Duration {
    Duration::from_secs(60)
}

/// A DNS record type `dns_sd_configs` looks up.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum DnsRecordType {
    #[default]
    Srv,
    A,
    Aaaa,
    Mx,
    Ns,
}

impl DnsRecordType {
    /// As written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsRecordType::Srv => "SRV",
            DnsRecordType::A => "A",
            DnsRecordType::Aaaa => "AAAA",
            DnsRecordType::Mx => "MX",
            DnsRecordType::Ns => "NS",
        }
    }
}

/// One `dns_sd_configs` entry.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsSdConfig {
    pub names: Vec<String>,
    #[serde(default, rename = "type")]
    pub record_type: DnsRecordType,
    /// Required for every type but SRV, whose records carry a port.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(
        default = "default_dns_refresh",
        with = "crate::model::duration::serde_std"
    )]
    pub refresh_interval: Duration,
}

impl DnsSdConfig {
    /// What Prometheus refuses at load: no names, or no port for a type
    /// whose records carry none.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.names.is_empty() {
            anyhow::bail!("names must list at least one DNS name");
        }
        if let Some(n) = self.names.iter().find(|n| n.trim().is_empty()) {
            anyhow::bail!("names: {n:?} is not a DNS name");
        }
        if self.record_type != DnsRecordType::Srv && self.port.unwrap_or(0) == 0 {
            anyhow::bail!(
                "port is required for type {} (only SRV records carry a port)",
                self.record_type.as_str()
            );
        }
        Ok(())
    }
}

fn default_dns_refresh() -> Duration {
    Duration::from_secs(30)
}
