//! Role `pod` (Prometheus' `discovery/kubernetes/pod.go`): one group per
//! pod, one target per container port and one per container without ports
//! (the pod IP alone: the user's relabeling adds a port).

use k8s_openapi::api::core::v1::{Container, ContainerStatus, Pod};

use super::meta::{
    add_namespace_meta, add_node_meta, add_pod_meta, join_host_port, pod_containers,
    NAMESPACE_LABEL, PREFIX,
};
use super::Lookup;
use crate::config::discovery::AttachMetadata;
use crate::discovery::{LabelSet, TargetGroup};

/// `pod/<namespace>/<name>`, as Prometheus' `podSource`.
pub fn source(namespace: &str, name: &str) -> String {
    format!("pod/{namespace}/{name}")
}

/// The pod's group. A pod without an IP (starting, evicted) has an empty
/// group; so has one on a node not known when `attach_metadata.node` is set
/// (Prometheus: the node selector filtered that node out).
pub fn group(pod: &Pod, lookup: &dyn Lookup, attach: &AttachMetadata) -> TargetGroup {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut tg = TargetGroup {
        source: source(namespace, name),
        ..Default::default()
    };
    let Some(pod_ip) = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
    else {
        return tg;
    };
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default();
    if attach.node && lookup.node(node_name).is_none() {
        return tg;
    }

    let l = &mut tg.labels;
    add_pod_meta(l, pod);
    l.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    if attach.node {
        add_node_meta(l, lookup, node_name);
    }
    if attach.namespace {
        add_namespace_meta(l, lookup, namespace);
    }

    let status = pod.status.as_ref();
    for (c, init) in pod_containers(pod) {
        let statuses = status.and_then(|s| {
            if init {
                s.init_container_statuses.as_ref()
            } else {
                s.container_statuses.as_ref()
            }
        });
        tg.targets
            .extend(container_targets(c, init, pod_ip, statuses));
    }
    tg
}

fn container_targets(
    c: &Container,
    init: bool,
    pod_ip: &str,
    statuses: Option<&Vec<ContainerStatus>>,
) -> Vec<LabelSet> {
    let id = statuses
        .into_iter()
        .flatten()
        .find(|s| s.name == c.name)
        .and_then(|s| s.container_id.clone())
        .unwrap_or_default();
    let mut base = LabelSet::new();
    base.insert(format!("{PREFIX}pod_container_name"), c.name.clone());
    base.insert(format!("{PREFIX}pod_container_id"), id);
    base.insert(
        format!("{PREFIX}pod_container_image"),
        c.image.clone().unwrap_or_default(),
    );
    base.insert(format!("{PREFIX}pod_container_init"), init.to_string());
    let ports = c.ports.as_deref().unwrap_or_default();
    if ports.is_empty() {
        base.insert("__address__".into(), pod_ip.to_string());
        return vec![base];
    }
    ports
        .iter()
        .map(|p| {
            let mut t = base.clone();
            let number = p.container_port.to_string();
            t.insert("__address__".into(), join_host_port(pod_ip, &number));
            t.insert(format!("{PREFIX}pod_container_port_number"), number);
            t.insert(
                format!("{PREFIX}pod_container_port_name"),
                p.name.clone().unwrap_or_default(),
            );
            t.insert(
                format!("{PREFIX}pod_container_port_protocol"),
                p.protocol.clone().unwrap_or_default(),
            );
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! Prometheus' pod_test.go cases: object in, groups out, label by label.
    use super::*;
    use crate::discovery::kubernetes::meta::test_label_set as labels;
    use crate::discovery::kubernetes::store::{Store, Stored as _};
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn multi_port_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "testpod", "namespace": "default", "uid": "abc123",
                "labels": {"test/label": "testvalue"},
                "annotations": {"test/annotation": "testannotationvalue"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "testcontrollerkind",
                    "name": "testcontrollername", "uid": "u", "controller": true}]
            },
            "spec": {"nodeName": "testnode", "containers": [
                {"name": "testcontainer0", "image": "testcontainer0:latest", "ports": [
                    {"name": "testport0", "protocol": "TCP", "containerPort": 9000},
                    {"name": "testport1", "protocol": "UDP", "containerPort": 9001}]},
                {"name": "testcontainer1", "image": "testcontainer1:latest"}
            ]},
            "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [
                    {"name": "testcontainer0", "containerID": "docker://a1b2c3d4e5f6",
                     "image": "", "imageID": "", "ready": true, "restartCount": 0},
                    {"name": "testcontainer1", "containerID": "containerd://6f5e4d3c2b1a",
                     "image": "", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    fn simple_pod(namespace: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "testpod", "namespace": namespace, "uid": "abc123"},
            "spec": {"nodeName": "testnode", "containers": [
                {"name": "testcontainer", "image": "testcontainer:latest", "ports": [
                    {"name": "testport", "protocol": "TCP", "containerPort": 9000}]}]},
            "status": {"podIP": "1.2.3.4", "hostIP": "2.3.4.5", "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True"}],
                "containerStatuses": [{"name": "testcontainer", "containerID": "docker://a1b2c3d4e5f6",
                    "image": "", "imageID": "", "ready": true, "restartCount": 0}]}
        }))
        .unwrap()
    }

    fn simple_target() -> LabelSet {
        labels(&[
            ("__address__", "1.2.3.4:9000"),
            ("__meta_kubernetes_pod_container_name", "testcontainer"),
            (
                "__meta_kubernetes_pod_container_image",
                "testcontainer:latest",
            ),
            ("__meta_kubernetes_pod_container_port_name", "testport"),
            ("__meta_kubernetes_pod_container_port_number", "9000"),
            ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
            ("__meta_kubernetes_pod_container_init", "false"),
            (
                "__meta_kubernetes_pod_container_id",
                "docker://a1b2c3d4e5f6",
            ),
        ])
    }

    fn simple_labels(ns: &str) -> LabelSet {
        labels(&[
            ("__meta_kubernetes_pod_name", "testpod"),
            ("__meta_kubernetes_namespace", ns),
            ("__meta_kubernetes_pod_node_name", "testnode"),
            ("__meta_kubernetes_pod_ip", "1.2.3.4"),
            ("__meta_kubernetes_pod_host_ip", "2.3.4.5"),
            ("__meta_kubernetes_pod_ready", "true"),
            ("__meta_kubernetes_pod_phase", "Running"),
            ("__meta_kubernetes_pod_uid", "abc123"),
        ])
    }

    #[test]
    fn multi_port_pod_has_a_target_per_port_and_per_portless_container() {
        let tg = group(
            &multi_port_pod(),
            &Store::default(),
            &AttachMetadata::default(),
        );
        assert_eq!(tg.source, "pod/default/testpod");
        let want_targets = vec![
            labels(&[
                ("__address__", "1.2.3.4:9000"),
                ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                (
                    "__meta_kubernetes_pod_container_image",
                    "testcontainer0:latest",
                ),
                ("__meta_kubernetes_pod_container_port_name", "testport0"),
                ("__meta_kubernetes_pod_container_port_number", "9000"),
                ("__meta_kubernetes_pod_container_port_protocol", "TCP"),
                ("__meta_kubernetes_pod_container_init", "false"),
                (
                    "__meta_kubernetes_pod_container_id",
                    "docker://a1b2c3d4e5f6",
                ),
            ]),
            labels(&[
                ("__address__", "1.2.3.4:9001"),
                ("__meta_kubernetes_pod_container_name", "testcontainer0"),
                (
                    "__meta_kubernetes_pod_container_image",
                    "testcontainer0:latest",
                ),
                ("__meta_kubernetes_pod_container_port_name", "testport1"),
                ("__meta_kubernetes_pod_container_port_number", "9001"),
                ("__meta_kubernetes_pod_container_port_protocol", "UDP"),
                ("__meta_kubernetes_pod_container_init", "false"),
                (
                    "__meta_kubernetes_pod_container_id",
                    "docker://a1b2c3d4e5f6",
                ),
            ]),
            labels(&[
                ("__address__", "1.2.3.4"),
                ("__meta_kubernetes_pod_container_name", "testcontainer1"),
                (
                    "__meta_kubernetes_pod_container_image",
                    "testcontainer1:latest",
                ),
                ("__meta_kubernetes_pod_container_init", "false"),
                (
                    "__meta_kubernetes_pod_container_id",
                    "containerd://6f5e4d3c2b1a",
                ),
            ]),
        ];
        assert_eq!(tg.targets, want_targets);
        let mut want = simple_labels("default");
        want.extend(labels(&[
            ("__meta_kubernetes_pod_label_test_label", "testvalue"),
            ("__meta_kubernetes_pod_labelpresent_test_label", "true"),
            (
                "__meta_kubernetes_pod_annotation_test_annotation",
                "testannotationvalue",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_test_annotation",
                "true",
            ),
            (
                "__meta_kubernetes_pod_controller_kind",
                "testcontrollerkind",
            ),
            (
                "__meta_kubernetes_pod_controller_name",
                "testcontrollername",
            ),
        ]));
        assert_eq!(tg.labels, want);
    }

    #[test]
    fn init_containers_are_targets_flagged_init() {
        let mut pod = simple_pod("default");
        let extra: Pod = serde_json::from_value(json!({
            "spec": {"containers": [], "initContainers": [{"name": "initcontainer", "image": "initcontainer:latest"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}],
                "initContainerStatuses": [{"name": "initcontainer", "containerID": "containerd://6f5e4d3c2b1a",
                    "image": "", "imageID": "", "ready": false, "restartCount": 0}]}
        }))
        .unwrap();
        let spec = pod.spec.as_mut().unwrap();
        spec.init_containers = extra.spec.unwrap().init_containers;
        let (status, e) = (pod.status.as_mut().unwrap(), extra.status.unwrap());
        status.phase = e.phase;
        status.conditions = e.conditions;
        status.init_container_statuses = e.init_container_statuses;

        let tg = group(&pod, &Store::default(), &AttachMetadata::default());
        let init = labels(&[
            ("__address__", "1.2.3.4"),
            ("__meta_kubernetes_pod_container_name", "initcontainer"),
            (
                "__meta_kubernetes_pod_container_image",
                "initcontainer:latest",
            ),
            ("__meta_kubernetes_pod_container_init", "true"),
            (
                "__meta_kubernetes_pod_container_id",
                "containerd://6f5e4d3c2b1a",
            ),
        ]);
        assert_eq!(tg.targets, vec![simple_target(), init]);
        let mut want = simple_labels("default");
        want.insert("__meta_kubernetes_pod_phase".into(), "Pending".into());
        want.insert("__meta_kubernetes_pod_ready".into(), "false".into());
        assert_eq!(tg.labels, want);
    }

    #[test]
    fn pod_without_ip_has_an_empty_group() {
        let mut pod = simple_pod("default");
        pod.status.as_mut().unwrap().pod_ip = None;
        let tg = group(&pod, &Store::default(), &AttachMetadata::default());
        assert_eq!(tg.source, "pod/default/testpod");
        assert!(tg.targets.is_empty() && tg.labels.is_empty());
    }

    #[test]
    fn ready_is_unknown_without_a_ready_condition() {
        let mut pod = simple_pod("ns1");
        pod.status.as_mut().unwrap().conditions = None;
        let tg = group(&pod, &Store::default(), &AttachMetadata::default());
        assert_eq!(tg.labels["__meta_kubernetes_pod_ready"], "unknown");
        assert_eq!(tg.labels["__meta_kubernetes_namespace"], "ns1");
    }

    fn node(labels: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "testnode", "labels": labels}})).unwrap()
    }

    #[test]
    fn attach_metadata_node_adds_the_nodes_labels_and_drops_pods_of_unknown_nodes() {
        let attach = AttachMetadata {
            node: true,
            namespace: false,
        };
        let pod = simple_pod("default");
        let tg = group(&pod, &Store::default(), &attach);
        assert!(tg.targets.is_empty(), "node not in the store: no targets");

        let mut store = Store::default();
        let mut n = node(json!({"l1": "v1"}));
        n.slim();
        store.nodes.insert((String::new(), "testnode".into()), n);
        let tg = group(&pod, &store, &attach);
        let mut want = simple_labels("default");
        want.extend(labels(&[
            ("__meta_kubernetes_node_name", "testnode"),
            ("__meta_kubernetes_node_label_l1", "v1"),
            ("__meta_kubernetes_node_labelpresent_l1", "true"),
        ]));
        assert_eq!(tg.labels, want);
        assert_eq!(tg.targets, vec![simple_target()]);
    }

    #[test]
    fn attach_metadata_namespace_adds_the_namespaces_labels() {
        let mut store = Store::default();
        let ns = serde_json::from_value(json!({"metadata": {"name": "ns1",
            "labels": {"app.kubernetes.io/name": "testapp"},
            "annotations": {"test/annotation": "testannotationvalue"}}}))
        .unwrap();
        store.namespaces.insert((String::new(), "ns1".into()), ns);
        let attach = AttachMetadata {
            node: false,
            namespace: true,
        };
        let tg = group(&simple_pod("ns1"), &store, &attach);
        let mut want = simple_labels("ns1");
        want.extend(labels(&[
            (
                "__meta_kubernetes_namespace_label_app_kubernetes_io_name",
                "testapp",
            ),
            (
                "__meta_kubernetes_namespace_labelpresent_app_kubernetes_io_name",
                "true",
            ),
            (
                "__meta_kubernetes_namespace_annotation_test_annotation",
                "testannotationvalue",
            ),
            (
                "__meta_kubernetes_namespace_annotationpresent_test_annotation",
                "true",
            ),
        ]));
        assert_eq!(tg.labels, want);
    }

    #[test]
    fn ipv6_pod_addresses_are_bracketed() {
        let mut pod = simple_pod("default");
        pod.status.as_mut().unwrap().pod_ip = Some("fd00::1".into());
        let tg = group(&pod, &Store::default(), &AttachMetadata::default());
        assert_eq!(tg.targets[0]["__address__"], "[fd00::1]:9000");
    }
}
