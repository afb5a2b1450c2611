//! The `__meta_kubernetes_*` labels every role shares: an object's name,
//! labels and annotations (each with its `*present_*` twin), and the
//! namespace and node metadata `attach_metadata` adds.

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Lookup;
use crate::discovery::LabelSet;

pub const PREFIX: &str = "__meta_kubernetes_";
pub const NAMESPACE_LABEL: &str = "__meta_kubernetes_namespace";
/// The value of every `*present_*` label.
pub const PRESENT: &str = "true";

/// A Kubernetes label or annotation key as a Prometheus label name
/// (Prometheus' `strutil.SanitizeLabelName`): every byte that is not
/// `[a-zA-Z0-9_]` becomes `_` (a leading digit is kept, as Prometheus does).
pub fn sanitize_label_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `__meta_kubernetes_<resource>_label_<k>`, `..._labelpresent_<k>`,
/// `..._annotation_<k>` and `..._annotationpresent_<k>` of `meta`.
pub fn add_labels_and_annotations(set: &mut LabelSet, meta: &ObjectMeta, resource: &str) {
    for (kind, present, map) in [
        ("label", "labelpresent", &meta.labels),
        ("annotation", "annotationpresent", &meta.annotations),
    ] {
        for (k, v) in map.iter().flatten() {
            let name = sanitize_label_name(k);
            set.insert(format!("{PREFIX}{resource}_{kind}_{name}"), v.clone());
            set.insert(
                format!("{PREFIX}{resource}_{present}_{name}"),
                PRESENT.to_string(),
            );
        }
    }
}

/// `__meta_kubernetes_<role>_name` and the object's labels and annotations
/// (Prometheus' `addObjectMetaLabels`).
pub fn add_object_meta(set: &mut LabelSet, meta: &ObjectMeta, role: &str) {
    set.insert(
        format!("{PREFIX}{role}_name"),
        meta.name.clone().unwrap_or_default(),
    );
    add_labels_and_annotations(set, meta, role);
}

/// The pod labels an endpoint (or the pod role) carries (Prometheus'
/// `podLabels`): IP, readiness, phase, node, host IP, UID, the pod's name,
/// labels and annotations, and its controller's kind and name if it has one.
pub fn add_pod_meta(set: &mut LabelSet, pod: &Pod) {
    let status = pod.status.as_ref();
    let spec = pod.spec.as_ref();
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map_or("unknown".to_string(), |c| c.status.to_lowercase());
    for (name, value) in [
        ("pod_ip", status.and_then(|s| s.pod_ip.clone())),
        ("pod_ready", Some(ready)),
        ("pod_phase", status.and_then(|s| s.phase.clone())),
        ("pod_node_name", spec.and_then(|s| s.node_name.clone())),
        ("pod_host_ip", status.and_then(|s| s.host_ip.clone())),
        ("pod_uid", pod.metadata.uid.clone()),
    ] {
        set.insert(format!("{PREFIX}{name}"), value.unwrap_or_default());
    }
    add_object_meta(set, &pod.metadata, "pod");
    let controller = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true));
    if let Some(c) = controller {
        if !c.kind.is_empty() {
            set.insert(format!("{PREFIX}pod_controller_kind"), c.kind.clone());
        }
        if !c.name.is_empty() {
            set.insert(format!("{PREFIX}pod_controller_name"), c.name.clone());
        }
    }
}

/// A pod's containers then its init containers, each with whether it is an
/// init container: the order Prometheus looks for a container port in.
pub fn pod_containers(pod: &Pod) -> impl Iterator<Item = (&Container, bool)> {
    let spec = pod.spec.as_ref();
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or_default();
    let inits = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default();
    containers
        .iter()
        .map(|c| (c, false))
        .chain(inits.iter().map(|c| (c, true)))
}

/// `__meta_kubernetes_pod_container_{name,image,port_name,port_number,
/// port_protocol,init}` of container `c`'s port `port` (named `port_name`).
pub fn add_container_port_meta(
    set: &mut LabelSet,
    c: &Container,
    init: bool,
    port_name: Option<&str>,
    port: i32,
    protocol: Option<&str>,
) {
    for (name, value) in [
        ("pod_container_name", c.name.as_str()),
        (
            "pod_container_image",
            c.image.as_deref().unwrap_or_default(),
        ),
        ("pod_container_port_name", port_name.unwrap_or_default()),
        ("pod_container_port_protocol", protocol.unwrap_or_default()),
        ("pod_container_init", if init { "true" } else { "false" }),
    ] {
        set.insert(format!("{PREFIX}{name}"), value.to_string());
    }
    set.insert(
        format!("{PREFIX}pod_container_port_number"),
        port.to_string(),
    );
}

/// `attach_metadata.namespace`: the labels and annotations of the
/// object's namespace, if it is known (`__meta_kubernetes_namespace_label_*`).
pub fn add_namespace_meta(set: &mut LabelSet, lookup: &dyn Lookup, namespace: &str) {
    if let Some(ns) = lookup.namespace(namespace) {
        add_labels_and_annotations(set, &ns.metadata, "namespace");
    }
}

/// `attach_metadata.node`: `__meta_kubernetes_node_name` and the node's
/// labels and annotations, if the node is known.
pub fn add_node_meta(set: &mut LabelSet, lookup: &dyn Lookup, node: &str) {
    if let Some(n) = lookup.node(node) {
        add_object_meta(set, &n.metadata, "node");
    }
}

pub use crate::discovery::join_host_port;

/// A label set from pairs, for the roles' tests.
#[cfg(test)]
pub fn test_label_set(pairs: &[(&str, &str)]) -> LabelSet {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_are_sanitized_like_prometheus() {
        assert_eq!(
            sanitize_label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(
            sanitize_label_name("prometheus.io/scrape"),
            "prometheus_io_scrape"
        );
        assert_eq!(sanitize_label_name("a-b_c9"), "a_b_c9");
        assert_eq!(sanitize_label_name("é"), "_");
    }

    #[test]
    fn ipv6_hosts_are_bracketed_like_go_join_host_port() {
        assert_eq!(join_host_port("1.2.3.4", "80"), "1.2.3.4:80");
        assert_eq!(join_host_port("2001:db8::1", "80"), "[2001:db8::1]:80");
        assert_eq!(join_host_port("svc.ns.svc", "9090"), "svc.ns.svc:9090");
    }
}
