//! Kubernetes discovery (`kubernetes_sd_configs`), as Prometheus'
//! `discovery/kubernetes`: one group per object of the role, every
//! `__meta_kubernetes_*` label named and valued as Prometheus does, so the
//! relabel rules people already have work unchanged.
//!
//! Roles are pure functions from an object (and the [`Lookup`] of the other
//! objects it refers to) to its target group, one file each; the watches
//! that keep the objects current are in their own files.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};

use super::{Groups, Provider, Status};
use crate::config::discovery::KubernetesSdConfig;

pub mod client;
pub mod meta;
pub mod node;
pub mod pod;
pub mod store;
pub mod watch;

// The roles of services, ingresses, endpoints and endpoint slices.
pub mod endpoints;
pub mod endpointslice;
pub mod ingress;
pub mod service;
#[cfg(test)]
pub(crate) mod testutil;

/// The objects a role's group may refer to beyond its own: an endpoint's
/// pod and service, a pod's node, an object's namespace. Answered from the
/// watches' current state; `None` when not watched or not (yet) seen.
pub trait Lookup {
    fn pod(&self, namespace: &str, name: &str) -> Option<&Pod>;
    fn service(&self, namespace: &str, name: &str) -> Option<&Service>;
    fn node(&self, name: &str) -> Option<&Node>;
    fn namespace(&self, name: &str) -> Option<&Namespace>;
}

/// Starts one `kubernetes_sd_configs` entry of job `job`: connects (in a
/// task: a bad kubeconfig or an unreachable API is the Status' error, not
/// the agent's), then watches and publishes.
pub fn start(
    job: &str,
    sd: KubernetesSdConfig,
    base: PathBuf,
    status: Arc<Status>,
    incluster: client::InCluster,
    tuning: watch::Tuning,
) -> Provider {
    let (tx, rx) = tokio::sync::watch::channel(Groups::default());
    let what = format!("job {job:?}: {}", status.name());
    let st = status.clone();
    tokio::spawn(async move {
        let api = match client::connect(&sd, &base, &incluster).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = format!("{e:#}"), "{what}");
                st.failed(format!("{what}: {e:#}"));
                return;
            }
        };
        let mut namespaces = sd.namespaces.names.clone();
        if sd.namespaces.own_namespace && !namespaces.contains(&api.own_namespace) {
            namespaces.push(api.own_namespace.clone());
        }
        let plan = watch::Plan {
            role: sd.role,
            namespaces,
            selectors: sd.selectors.clone(),
            attach: sd.attach_metadata.clone(),
        };
        watch::spawn(api.client, plan, tuning, tx, st);
    });
    Provider { groups: rx, status }
}
