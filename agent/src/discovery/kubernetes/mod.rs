//! Kubernetes discovery (`kubernetes_sd_configs`), as Prometheus'
//! `discovery/kubernetes`: one group per object of the role, every
//! `__meta_kubernetes_*` label named and valued as Prometheus does, so the
//! relabel rules people already have work unchanged.
//!
//! Roles are pure functions from an object (and the [`Lookup`] of the other
//! objects it refers to) to its target group, one file each; the watches
//! that keep the objects current are in their own files.

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};

pub mod meta;

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
