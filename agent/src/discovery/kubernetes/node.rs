//! Role `node` (Prometheus' `discovery/kubernetes/node.go`): one target
//! per node, at its preferred address and the kubelet's port.

use k8s_openapi::api::core::v1::Node;

use super::meta::{add_object_meta, join_host_port, sanitize_label_name, PREFIX};
use super::Lookup;
use crate::config::discovery::AttachMetadata;
use crate::discovery::{LabelSet, TargetGroup};

/// `node/<name>`, as Prometheus' `nodeSource`.
pub fn source(name: &str) -> String {
    format!("node/{name}")
}

/// Address types in the order the node's address is chosen from
/// (Kubernetes' `pkg/util/node`, as Prometheus' `nodeAddress`).
const ADDRESS_PRIORITY: [&str; 6] = [
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
];

/// The node's group; without any known address it has no target
/// (Prometheus drops the node with a warning).
pub fn group(node: &Node, _lookup: &dyn Lookup, _attach: &AttachMetadata) -> TargetGroup {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut tg = TargetGroup {
        source: source(&name),
        ..Default::default()
    };
    let l = &mut tg.labels;
    l.insert(
        format!("{PREFIX}node_provider_id"),
        node.spec
            .as_ref()
            .and_then(|s| s.provider_id.clone())
            .unwrap_or_default(),
    );
    let status = node.status.clone().unwrap_or_default();
    for c in status.conditions.iter().flatten() {
        let kind = sanitize_label_name(&c.type_.to_lowercase());
        l.insert(
            format!("{PREFIX}node_condition_{kind}"),
            c.status.to_lowercase(),
        );
    }
    add_object_meta(l, &node.metadata, "node");

    // The first address of each type: Prometheus' `addrMap[type][0]`.
    let mut first: Vec<(&str, &str)> = Vec::new();
    for a in status.addresses.iter().flatten() {
        if !first.iter().any(|(t, _)| *t == a.type_) {
            first.push((&a.type_, &a.address));
        }
    }
    let Some(addr) = ADDRESS_PRIORITY
        .iter()
        .find_map(|p| first.iter().find(|(t, _)| t == p).map(|(_, a)| *a))
    else {
        tracing::warn!(node = %name, "kubernetes_sd: node has no address, no target");
        return tg;
    };
    let port = status
        .daemon_endpoints
        .as_ref()
        .and_then(|d| d.kubelet_endpoint.as_ref())
        .map_or(0, |k| k.port);
    let mut t = LabelSet::new();
    t.insert("__address__".into(), join_host_port(addr, port));
    t.insert("instance".into(), name.clone());
    for (kind, a) in first {
        t.insert(
            sanitize_label_name(&format!("{PREFIX}node_address_{kind}")),
            a.to_string(),
        );
    }
    tg.targets.push(t);
    tg
}

#[cfg(test)]
mod tests {
    //! Prometheus' node_test.go cases.
    use super::*;
    use crate::discovery::kubernetes::meta::test_label_set as labels;
    use crate::discovery::kubernetes::store::Store;
    use serde_json::json;

    fn make_node(
        name: &str,
        address: &str,
        provider: &str,
        meta_labels: serde_json::Value,
        annotations: serde_json::Value,
        conditions: serde_json::Value,
    ) -> Node {
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": meta_labels, "annotations": annotations},
            "spec": {"providerID": provider},
            "status": {"addresses": [{"type": "InternalIP", "address": address}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "conditions": conditions}
        }))
        .unwrap()
    }

    fn build(n: &Node) -> TargetGroup {
        group(n, &Store::default(), &AttachMetadata::default())
    }

    #[test]
    fn node_with_labels_and_annotations() {
        let n = make_node(
            "test",
            "1.2.3.4",
            "aws:///nl-north-7b/i-03149834983492827",
            json!({"test-label": "testvalue"}),
            json!({"test-annotation": "testannotationvalue"}),
            json!(null),
        );
        let tg = build(&n);
        assert_eq!(tg.source, "node/test");
        assert_eq!(
            tg.targets,
            vec![labels(&[
                ("__address__", "1.2.3.4:10250"),
                ("instance", "test"),
                ("__meta_kubernetes_node_address_InternalIP", "1.2.3.4"),
            ])]
        );
        assert_eq!(
            tg.labels,
            labels(&[
                ("__meta_kubernetes_node_name", "test"),
                (
                    "__meta_kubernetes_node_provider_id",
                    "aws:///nl-north-7b/i-03149834983492827"
                ),
                ("__meta_kubernetes_node_label_test_label", "testvalue"),
                ("__meta_kubernetes_node_labelpresent_test_label", "true"),
                (
                    "__meta_kubernetes_node_annotation_test_annotation",
                    "testannotationvalue"
                ),
                (
                    "__meta_kubernetes_node_annotationpresent_test_annotation",
                    "true"
                ),
            ])
        );
    }

    #[test]
    fn node_conditions_are_lowercased_labels() {
        let cases = [
            (
                json!([{"type": "Ready", "status": "True"}]),
                vec![("ready", "true")],
            ),
            (
                json!([{"type": "Ready", "status": "False"}]),
                vec![("ready", "false")],
            ),
            (
                json!([{"type": "Ready", "status": "Unknown"}]),
                vec![("ready", "unknown")],
            ),
            (json!(null), vec![]),
            (
                json!([{"type": "MemoryPressure", "status": "False"},
                       {"type": "Ready", "status": "True"},
                       {"type": "DiskPressure", "status": "False"}]),
                vec![
                    ("memorypressure", "false"),
                    ("ready", "true"),
                    ("diskpressure", "false"),
                ],
            ),
        ];
        for (conditions, want) in cases {
            let n = make_node(
                "test",
                "1.2.3.4",
                "aws:///test-zone/i-test",
                json!({}),
                json!({}),
                conditions.clone(),
            );
            let mut expected = labels(&[
                ("__meta_kubernetes_node_name", "test"),
                (
                    "__meta_kubernetes_node_provider_id",
                    "aws:///test-zone/i-test",
                ),
            ]);
            for (c, v) in want {
                expected.insert(format!("__meta_kubernetes_node_condition_{c}"), v.into());
            }
            assert_eq!(build(&n).labels, expected, "conditions {conditions}");
        }
    }

    #[test]
    fn address_priority_and_first_of_each_type() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "n"},
            "status": {"addresses": [
                {"type": "Hostname", "address": "host-a"},
                {"type": "ExternalIP", "address": "5.6.7.8"},
                {"type": "ExternalIP", "address": "5.6.7.9"}],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
        }))
        .unwrap();
        let t = &build(&n).targets[0];
        assert_eq!(t["__address__"], "5.6.7.8:10250");
        assert_eq!(t["__meta_kubernetes_node_address_ExternalIP"], "5.6.7.8");
        assert_eq!(t["__meta_kubernetes_node_address_Hostname"], "host-a");
    }

    #[test]
    fn node_without_address_has_no_target() {
        let n: Node = serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap();
        assert!(build(&n).targets.is_empty());
    }
}
