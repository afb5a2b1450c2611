//! The `__meta_kubernetes_*` labels every role shares: an object's name,
//! labels and annotations (each with its `*present_*` twin), and the
//! namespace and node metadata `attach_metadata` adds.

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

/// `host:port`, an IPv6 host in brackets (Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: &str) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

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
}
