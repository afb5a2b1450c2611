//! The `endpointslice` role (Prometheus' `discovery/kubernetes/
//! endpointslice.go`): one target per endpoint address and port of a
//! discovery.k8s.io/v1 EndpointSlice, with its conditions, hostname, node,
//! zone and topology, the labels of the service named by its
//! `kubernetes.io/service-name` label, and the pod handling of the
//! `endpoints` role.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointPort, EndpointSlice};

use super::endpoints::{node_ref, resolve_pod, ProtocolFrom, SeenPods};
use super::meta::{self, join_host_port, sanitize_label_name, NAMESPACE_LABEL, PREFIX, PRESENT};
use super::{service, Lookup};
use crate::config::discovery::AttachMetadata;
use crate::discovery::{LabelSet, TargetGroup};

/// The label naming the service an EndpointSlice belongs to.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// `endpointslice/<namespace>/<name>`: the source of a slice's group.
pub fn source(namespace: &str, name: &str) -> String {
    format!("endpointslice/{namespace}/{name}")
}

pub fn group(eps: &EndpointSlice, lookup: &dyn Lookup, attach: &AttachMetadata) -> TargetGroup {
    let namespace = eps.metadata.namespace.as_deref().unwrap_or_default();
    let name = eps.metadata.name.as_deref().unwrap_or_default();

    let mut labels = LabelSet::new();
    labels.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    labels.insert(
        format!("{PREFIX}endpointslice_address_type"),
        eps.address_type.clone(),
    );
    meta::add_object_meta(&mut labels, &eps.metadata, "endpointslice");
    let svc = eps
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(SERVICE_NAME_LABEL))
        .and_then(|svc| lookup.service(namespace, svc));
    if let Some(svc) = svc {
        labels.extend(service::labels(svc));
    }
    if attach.namespace {
        meta::add_namespace_meta(&mut labels, lookup, namespace);
    }
    let mut group = TargetGroup {
        source: source(namespace, name),
        targets: Vec::new(),
        labels,
    };
    if non_primary_ip_family_slice(svc, eps) {
        return group;
    }

    let mut seen = SeenPods::default();
    for ep in &eps.endpoints {
        for port in eps.ports.iter().flatten() {
            for addr in &ep.addresses {
                let mut t = endpoint_target(addr, ep, port, lookup, attach);
                if let Some(pod) = resolve_pod(ep.target_ref.as_ref(), lookup) {
                    seen.attach(&mut t, pod, port.port, ProtocolFrom::ContainerPort);
                }
                group.targets.push(t);
            }
        }
    }
    group.targets.extend(seen.uncovered_container_ports());
    group
}

/// The `__meta_kubernetes_endpointslice_*` labels of one address and
/// port, and its node's if `attach_metadata.node`. A port without a number
/// leaves the address as it is.
fn endpoint_target(
    addr: &str,
    ep: &Endpoint,
    port: &EndpointPort,
    lookup: &dyn Lookup,
    attach: &AttachMetadata,
) -> LabelSet {
    let mut t = LabelSet::new();
    let address = match port.port {
        Some(p) => join_host_port(addr, p),
        None => addr.to_string(),
    };
    t.insert("__address__".to_string(), address);
    let conditions = ep.conditions.as_ref();
    let flag = |b: Option<bool>| b.map(|b| b.to_string());
    for (label, value) in [
        ("endpointslice_port_name", port.name.clone()),
        ("endpointslice_port_protocol", port.protocol.clone()),
        ("endpointslice_port", port.port.map(|p| p.to_string())),
        ("endpointslice_port_app_protocol", port.app_protocol.clone()),
        (
            "endpointslice_endpoint_conditions_ready",
            flag(conditions.and_then(|c| c.ready)),
        ),
        (
            "endpointslice_endpoint_conditions_serving",
            flag(conditions.and_then(|c| c.serving)),
        ),
        (
            "endpointslice_endpoint_conditions_terminating",
            flag(conditions.and_then(|c| c.terminating)),
        ),
        ("endpointslice_endpoint_hostname", ep.hostname.clone()),
        (
            "endpointslice_address_target_kind",
            ep.target_ref
                .as_ref()
                .map(|r| r.kind.clone().unwrap_or_default()),
        ),
        (
            "endpointslice_address_target_name",
            ep.target_ref
                .as_ref()
                .map(|r| r.name.clone().unwrap_or_default()),
        ),
        ("endpointslice_endpoint_node_name", ep.node_name.clone()),
        ("endpointslice_endpoint_zone", ep.zone.clone()),
    ] {
        if let Some(value) = value {
            t.insert(format!("{PREFIX}{label}"), value);
        }
    }
    for (k, v) in ep.deprecated_topology.iter().flatten() {
        let k = sanitize_label_name(k);
        t.insert(
            format!("{PREFIX}endpointslice_endpoint_topology_{k}"),
            v.clone(),
        );
        t.insert(
            format!("{PREFIX}endpointslice_endpoint_topology_present_{k}"),
            PRESENT.to_string(),
        );
    }
    if attach.node {
        let node = node_ref(ep.target_ref.as_ref()).or(ep.node_name.as_deref());
        if let Some(node) = node {
            meta::add_node_meta(&mut t, lookup, node);
        }
    }
    t
}

/// Whether `eps` is the secondary slice of a dual-stack service (its
/// address type is not the service's first IP family): its targets would
/// repeat those of the primary slice, so it gets none.
fn non_primary_ip_family_slice(svc: Option<&Service>, eps: &EndpointSlice) -> bool {
    let Some(spec) = svc.and_then(|s| s.spec.as_ref()) else {
        return false;
    };
    let dual = matches!(
        spec.ip_family_policy.as_deref(),
        Some("PreferDualStack" | "RequireDualStack")
    );
    match spec.ip_families.as_deref() {
        Some([primary, ..]) if dual => *primary != eps.address_type,
        _ => false,
    }
}

/// Ports of Prometheus' `endpointslice_test.go`: the slice (and the
/// objects it refers to) in, its group out, compared whole. Cases about
/// updates check the group built from the objects as they are after the
/// update. Skipped: Delete (a group with only a source is the watch's),
/// EmptyPodStatus (it checks that an unwatched namespace yields nothing)
/// and InfIndexersCount (informer indexers).
#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::discovery::kubernetes::testutil::{
        endpoints_service, labels, mainport_pod, namespace, node, obj, sidecar_pod, testpod_labels,
        two_container_pod, with, FakeLookup,
    };

    fn make_endpoint_slice_v1(ns: &str) -> EndpointSlice {
        obj(json!({
            "metadata": {"name": "testendpoints", "namespace": ns,
                "labels": {"kubernetes.io/service-name": "testendpoints"},
                "annotations": {"test.annotation": "test"}},
            "addressType": "IPv4",
            "ports": [{"name": "testport", "port": 9000, "protocol": "TCP", "appProtocol": "http"}],
            "endpoints": [
                {"addresses": ["1.2.3.4"],
                 "conditions": {"ready": true, "serving": true, "terminating": false},
                 "hostname": "testendpoint1", "targetRef": {}, "nodeName": "foobar",
                 "deprecatedTopology": {"topology": "value"}, "zone": "us-east-1a"},
                {"addresses": ["2.3.4.5"],
                 "conditions": {"ready": true, "serving": true, "terminating": false},
                 "zone": "us-east-1b"},
                {"addresses": ["3.4.5.6"],
                 "conditions": {"ready": false, "serving": true, "terminating": true},
                 "zone": "us-east-1c"},
                {"addresses": ["4.5.6.7"],
                 "conditions": {"ready": true, "serving": true, "terminating": false},
                 "targetRef": {"kind": "Node", "name": "barbaz"}, "zone": "us-east-1a"}
            ]
        }))
    }

    /// The targets of `make_endpoint_slice_v1`.
    fn slice_v1_targets() -> Vec<LabelSet> {
        let port = labels! {
            "__meta_kubernetes_endpointslice_port" => "9000",
            "__meta_kubernetes_endpointslice_port_app_protocol" => "http",
            "__meta_kubernetes_endpointslice_port_name" => "testport",
            "__meta_kubernetes_endpointslice_port_protocol" => "TCP",
        };
        let targets = vec![
            labels! {
                "__address__" => "1.2.3.4:9000",
                "__meta_kubernetes_endpointslice_address_target_kind" => "",
                "__meta_kubernetes_endpointslice_address_target_name" => "",
                "__meta_kubernetes_endpointslice_endpoint_conditions_ready" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_serving" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_terminating" => "false",
                "__meta_kubernetes_endpointslice_endpoint_hostname" => "testendpoint1",
                "__meta_kubernetes_endpointslice_endpoint_node_name" => "foobar",
                "__meta_kubernetes_endpointslice_endpoint_topology_present_topology" => "true",
                "__meta_kubernetes_endpointslice_endpoint_topology_topology" => "value",
                "__meta_kubernetes_endpointslice_endpoint_zone" => "us-east-1a",
            },
            labels! {
                "__address__" => "2.3.4.5:9000",
                "__meta_kubernetes_endpointslice_endpoint_conditions_ready" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_serving" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_terminating" => "false",
                "__meta_kubernetes_endpointslice_endpoint_zone" => "us-east-1b",
            },
            labels! {
                "__address__" => "3.4.5.6:9000",
                "__meta_kubernetes_endpointslice_endpoint_conditions_ready" => "false",
                "__meta_kubernetes_endpointslice_endpoint_conditions_serving" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_terminating" => "true",
                "__meta_kubernetes_endpointslice_endpoint_zone" => "us-east-1c",
            },
            labels! {
                "__address__" => "4.5.6.7:9000",
                "__meta_kubernetes_endpointslice_address_target_kind" => "Node",
                "__meta_kubernetes_endpointslice_address_target_name" => "barbaz",
                "__meta_kubernetes_endpointslice_endpoint_conditions_ready" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_serving" => "true",
                "__meta_kubernetes_endpointslice_endpoint_conditions_terminating" => "false",
                "__meta_kubernetes_endpointslice_endpoint_zone" => "us-east-1a",
            },
        ];
        targets.into_iter().map(|t| with(t, port.clone())).collect()
    }

    /// The group of `make_endpoint_slice_v1(ns)` with nothing attached.
    fn slice_v1_group(ns: &str) -> TargetGroup {
        TargetGroup {
            source: format!("endpointslice/{ns}/testendpoints"),
            targets: slice_v1_targets(),
            labels: labels! {
                "__meta_kubernetes_endpointslice_address_type" => "IPv4",
                "__meta_kubernetes_namespace" => ns,
                "__meta_kubernetes_endpointslice_name" => "testendpoints",
                "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name" => "testendpoints",
                "__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name" => "true",
                "__meta_kubernetes_endpointslice_annotation_test_annotation" => "test",
                "__meta_kubernetes_endpointslice_annotationpresent_test_annotation" => "true",
            },
        }
    }

    fn none() -> AttachMetadata {
        AttachMetadata::default()
    }

    /// A slice `testendpoints` in `ns` with one endpoint at 4.3.2.1
    /// pointing at pod `testpod`, `conditions`, and `ports`.
    fn pod_slice(ns: &str, conditions: Value, ports: Value) -> EndpointSlice {
        obj(json!({
            "metadata": {"name": "testendpoints", "namespace": ns},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [{"addresses": ["4.3.2.1"], "conditions": conditions,
                "targetRef": {"kind": "Pod", "name": "testpod", "namespace": ns}}]
        }))
    }

    fn pod_slice_labels(ns: &str) -> LabelSet {
        labels! {
            "__meta_kubernetes_endpointslice_address_type" => "IPv4",
            "__meta_kubernetes_endpointslice_name" => "testendpoints",
            "__meta_kubernetes_namespace" => ns,
        }
    }

    #[test]
    fn test_endpoint_slice_discovery_before_run() {
        let got = group(
            &make_endpoint_slice_v1("default"),
            &FakeLookup::default(),
            &none(),
        );
        assert_eq!(got, slice_v1_group("default"));
    }

    #[test]
    fn test_endpoint_slice_discovery_add() {
        let pod = two_container_pod();
        let eps = pod_slice(
            "default",
            json!({"ready": false}),
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"}]),
        );
        let want = TargetGroup {
            source: "endpointslice/default/testendpoints".into(),
            targets: vec![
                with(
                    testpod_labels("1.2.3.4"),
                    labels! {
                        "__address__" => "4.3.2.1:9000",
                        "__meta_kubernetes_endpointslice_address_target_kind" => "Pod",
                        "__meta_kubernetes_endpointslice_address_target_name" => "testpod",
                        "__meta_kubernetes_endpointslice_endpoint_conditions_ready" => "false",
                        "__meta_kubernetes_endpointslice_port" => "9000",
                        "__meta_kubernetes_endpointslice_port_name" => "testport",
                        "__meta_kubernetes_endpointslice_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_name" => "c1",
                        "__meta_kubernetes_pod_container_image" => "c1:latest",
                        "__meta_kubernetes_pod_container_port_name" => "mainport",
                        "__meta_kubernetes_pod_container_port_number" => "9000",
                        "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_init" => "false",
                    },
                ),
                with(
                    testpod_labels("1.2.3.4"),
                    labels! {
                        "__address__" => "1.2.3.4:9001",
                        "__meta_kubernetes_pod_container_name" => "c2",
                        "__meta_kubernetes_pod_container_image" => "c2:latest",
                        "__meta_kubernetes_pod_container_port_name" => "sideport",
                        "__meta_kubernetes_pod_container_port_number" => "9001",
                        "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_init" => "false",
                    },
                ),
            ],
            labels: pod_slice_labels("default"),
        };
        let got = group(&eps, &FakeLookup::default().with_pod(pod), &none());
        assert_eq!(got, want);
    }

    #[test]
    fn test_endpoint_slice_discovery_update() {
        let mut eps = make_endpoint_slice_v1("default");
        eps.metadata.labels = None;
        eps.metadata.annotations = None;
        eps.endpoints.truncate(2);
        let want = TargetGroup {
            source: "endpointslice/default/testendpoints".into(),
            targets: slice_v1_targets()[0..2].to_vec(),
            labels: pod_slice_labels("default"),
        };
        assert_eq!(group(&eps, &FakeLookup::default(), &none()), want);
    }

    #[test]
    fn test_endpoint_slice_discovery_empty_endpoints() {
        let mut eps = make_endpoint_slice_v1("default");
        eps.endpoints.clear();
        let mut want = slice_v1_group("default");
        want.targets.clear();
        assert_eq!(group(&eps, &FakeLookup::default(), &none()), want);
    }

    #[test]
    fn test_endpoint_slice_discovery_with_service() {
        let lookup = FakeLookup::default()
            .with_service(endpoints_service("default", json!({"app/name": "test"})));
        let mut want = slice_v1_group("default");
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app_name" => "test",
            "__meta_kubernetes_service_labelpresent_app_name" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        assert_eq!(
            group(&make_endpoint_slice_v1("default"), &lookup, &none()),
            want
        );
    }

    #[test]
    fn test_endpoint_slice_discovery_with_service_update() {
        let lookup = FakeLookup::default().with_service(endpoints_service(
            "default",
            json!({"app/name": "svc", "component": "testing"}),
        ));
        let mut want = slice_v1_group("default");
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app_name" => "svc",
            "__meta_kubernetes_service_label_component" => "testing",
            "__meta_kubernetes_service_labelpresent_app_name" => "true",
            "__meta_kubernetes_service_labelpresent_component" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        assert_eq!(
            group(&make_endpoint_slice_v1("default"), &lookup, &none()),
            want
        );
    }

    fn with_node_metadata() -> (TargetGroup, TargetGroup) {
        let lookup = FakeLookup::default()
            .with_node(node("foobar", json!({"az": "us-east1"})))
            .with_node(node("barbaz", json!({"az": "us-west2"})))
            .with_service(endpoints_service("default", json!({"app/name": "test"})));
        let attach = AttachMetadata {
            node: true,
            ..Default::default()
        };
        let got = group(&make_endpoint_slice_v1("default"), &lookup, &attach);
        let mut want = slice_v1_group("default");
        want.targets[0].extend(labels! {
            "__meta_kubernetes_node_label_az" => "us-east1",
            "__meta_kubernetes_node_labelpresent_az" => "true",
            "__meta_kubernetes_node_name" => "foobar",
        });
        want.targets[3].extend(labels! {
            "__meta_kubernetes_node_label_az" => "us-west2",
            "__meta_kubernetes_node_labelpresent_az" => "true",
            "__meta_kubernetes_node_name" => "barbaz",
        });
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app_name" => "test",
            "__meta_kubernetes_service_labelpresent_app_name" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        (got, want)
    }

    #[test]
    fn test_endpoints_slices_discovery_with_node_metadata() {
        let (got, want) = with_node_metadata();
        assert_eq!(got, want);
    }

    /// Prometheus expects the node labels as before the node's update (it
    /// does not rebuild the group on a node change); the mapping of the
    /// objects it holds is the case above.
    #[test]
    fn test_endpoints_slices_discovery_with_updated_node_metadata() {
        let (got, want) = with_node_metadata();
        assert_eq!(got, want);
    }

    /// The status of the Namespaces and OwnNamespace cases' pods.
    fn status() -> Value {
        json!({"hostIP": "2.3.4.5", "podIP": "4.3.2.1"})
    }

    #[test]
    fn test_endpoint_slice_discovery_namespaces() {
        let mut ep_one = make_endpoint_slice_v1("default");
        ep_one.metadata.namespace = Some("ns1".into());
        let lookup = FakeLookup::default()
            .with_service(endpoints_service("ns1", json!({"app": "app1"})))
            .with_pod(mainport_pod("ns2", "c1", status()));
        let mut want = slice_v1_group("ns1");
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app" => "app1",
            "__meta_kubernetes_service_labelpresent_app" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        assert_eq!(group(&ep_one, &lookup, &none()), want);

        let ep_two = pod_slice(
            "ns2",
            json!({}),
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"}]),
        );
        let want = TargetGroup {
            source: "endpointslice/ns2/testendpoints".into(),
            targets: vec![with(
                testpod_labels("4.3.2.1"),
                labels! {
                    "__address__" => "4.3.2.1:9000",
                    "__meta_kubernetes_endpointslice_address_target_kind" => "Pod",
                    "__meta_kubernetes_endpointslice_address_target_name" => "testpod",
                    "__meta_kubernetes_endpointslice_port" => "9000",
                    "__meta_kubernetes_endpointslice_port_name" => "testport",
                    "__meta_kubernetes_endpointslice_port_protocol" => "TCP",
                    "__meta_kubernetes_pod_container_name" => "c1",
                    "__meta_kubernetes_pod_container_image" => "c1:latest",
                    "__meta_kubernetes_pod_container_port_name" => "mainport",
                    "__meta_kubernetes_pod_container_port_number" => "9000",
                    "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                    "__meta_kubernetes_pod_container_init" => "false",
                },
            )],
            labels: pod_slice_labels("ns2"),
        };
        assert_eq!(group(&ep_two, &lookup, &none()), want);
    }

    /// The own namespace's slice; it points at no pod, so the pods in the
    /// case change nothing.
    #[test]
    fn test_endpoint_slice_discovery_own_namespace() {
        let mut ep_one = make_endpoint_slice_v1("default");
        ep_one.metadata.namespace = Some("own-ns".into());
        let lookup = FakeLookup::default()
            .with_pod(mainport_pod("own-ns", "p1", status()))
            .with_pod(mainport_pod("non-own-ns", "p1", status()));
        assert_eq!(group(&ep_one, &lookup, &none()), slice_v1_group("own-ns"));
    }

    #[test]
    fn test_endpoint_slice_discovery_sidecar_container() {
        let mut eps = pod_slice(
            "default",
            json!({}),
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"},
                   {"name": "initport", "port": 9111, "protocol": "TCP"}]),
        );
        eps.metadata.name = Some("testsidecar".into());
        let pod = sidecar_pod();
        let want = TargetGroup {
            source: "endpointslice/default/testsidecar".into(),
            targets: vec![
                with(
                    testpod_labels("4.3.2.1"),
                    labels! {
                        "__address__" => "4.3.2.1:9000",
                        "__meta_kubernetes_endpointslice_address_target_kind" => "Pod",
                        "__meta_kubernetes_endpointslice_address_target_name" => "testpod",
                        "__meta_kubernetes_endpointslice_port" => "9000",
                        "__meta_kubernetes_endpointslice_port_name" => "testport",
                        "__meta_kubernetes_endpointslice_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_image" => "c1:latest",
                        "__meta_kubernetes_pod_container_name" => "c1",
                        "__meta_kubernetes_pod_container_port_name" => "mainport",
                        "__meta_kubernetes_pod_container_port_number" => "9000",
                        "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_init" => "false",
                    },
                ),
                with(
                    testpod_labels("4.3.2.1"),
                    labels! {
                        "__address__" => "4.3.2.1:9111",
                        "__meta_kubernetes_endpointslice_address_target_kind" => "Pod",
                        "__meta_kubernetes_endpointslice_address_target_name" => "testpod",
                        "__meta_kubernetes_endpointslice_port" => "9111",
                        "__meta_kubernetes_endpointslice_port_name" => "initport",
                        "__meta_kubernetes_endpointslice_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_image" => "ic2:latest",
                        "__meta_kubernetes_pod_container_name" => "ic2",
                        "__meta_kubernetes_pod_container_port_name" => "initport",
                        "__meta_kubernetes_pod_container_port_number" => "9111",
                        "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_init" => "true",
                    },
                ),
                with(
                    testpod_labels("4.3.2.1"),
                    labels! {
                        "__address__" => "4.3.2.1:1111",
                        "__meta_kubernetes_pod_container_image" => "ic1:latest",
                        "__meta_kubernetes_pod_container_name" => "ic1",
                        "__meta_kubernetes_pod_container_port_name" => "initport",
                        "__meta_kubernetes_pod_container_port_number" => "1111",
                        "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                        "__meta_kubernetes_pod_container_init" => "true",
                    },
                ),
            ],
            labels: labels! {
                "__meta_kubernetes_endpointslice_address_type" => "IPv4",
                "__meta_kubernetes_endpointslice_name" => "testsidecar",
                "__meta_kubernetes_namespace" => "default",
            },
        };
        let got = group(&eps, &FakeLookup::default().with_pod(pod), &none());
        assert_eq!(got, want);
    }

    fn with_namespace_metadata(ns: k8s_openapi::api::core::v1::Namespace) -> TargetGroup {
        let attach = AttachMetadata {
            namespace: true,
            ..Default::default()
        };
        let lookup = FakeLookup::default()
            .with_namespace(ns)
            .with_service(endpoints_service("test-ns", json!({"app/name": "test"})));
        group(&make_endpoint_slice_v1("test-ns"), &lookup, &attach)
    }

    fn with_service_labels(mut want: TargetGroup) -> TargetGroup {
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app_name" => "test",
            "__meta_kubernetes_service_labelpresent_app_name" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        want
    }

    #[test]
    fn test_endpoints_slices_discovery_with_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"service": "web", "layer": "frontend"}),
            json!({"contact": "platform", "release": "v5.6.7"}),
        );
        let mut want = with_service_labels(slice_v1_group("test-ns"));
        want.labels.extend(labels! {
            "__meta_kubernetes_namespace_annotation_contact" => "platform",
            "__meta_kubernetes_namespace_annotationpresent_contact" => "true",
            "__meta_kubernetes_namespace_annotation_release" => "v5.6.7",
            "__meta_kubernetes_namespace_annotationpresent_release" => "true",
            "__meta_kubernetes_namespace_label_service" => "web",
            "__meta_kubernetes_namespace_labelpresent_service" => "true",
            "__meta_kubernetes_namespace_label_layer" => "frontend",
            "__meta_kubernetes_namespace_labelpresent_layer" => "true",
        });
        assert_eq!(with_namespace_metadata(ns), want);
    }

    /// The namespace as it is after the case's update.
    #[test]
    fn test_endpoints_slices_discovery_with_updated_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"component": "cache", "layer": "backend", "region": "us-central"}),
            json!({"contact": "sre", "release": "v6.7.8", "monitoring": "enabled"}),
        );
        let mut want = with_service_labels(slice_v1_group("test-ns"));
        want.labels.extend(labels! {
            "__meta_kubernetes_namespace_annotation_contact" => "sre",
            "__meta_kubernetes_namespace_annotationpresent_contact" => "true",
            "__meta_kubernetes_namespace_annotation_release" => "v6.7.8",
            "__meta_kubernetes_namespace_annotationpresent_release" => "true",
            "__meta_kubernetes_namespace_annotation_monitoring" => "enabled",
            "__meta_kubernetes_namespace_annotationpresent_monitoring" => "true",
            "__meta_kubernetes_namespace_label_component" => "cache",
            "__meta_kubernetes_namespace_labelpresent_component" => "true",
            "__meta_kubernetes_namespace_label_layer" => "backend",
            "__meta_kubernetes_namespace_labelpresent_layer" => "true",
            "__meta_kubernetes_namespace_label_region" => "us-central",
            "__meta_kubernetes_namespace_labelpresent_region" => "true",
        });
        assert_eq!(with_namespace_metadata(ns), want);
    }

    fn make_dual_stack_service(policy: &str, families: Value) -> Service {
        obj(json!({
            "metadata": {"name": "testsvc", "namespace": "default"},
            "spec": {"ipFamilyPolicy": policy, "ipFamilies": families}
        }))
    }

    fn make_dual_stack_endpoint_slice(name: &str, addr_type: &str, addr: &str) -> EndpointSlice {
        obj(json!({
            "metadata": {"name": name, "namespace": "default",
                "labels": {"kubernetes.io/service-name": "testsvc"}},
            "addressType": addr_type,
            "ports": [{"name": "http", "port": 9000, "protocol": "TCP"}],
            "endpoints": [{"addresses": [addr], "conditions": {"ready": true}}]
        }))
    }

    /// The group of a dual-stack case's slice: `target` its one target's
    /// address, None for a secondary slice (no targets).
    fn dual_stack_group(name: &str, addr_type: &str, target: Option<&str>) -> TargetGroup {
        TargetGroup {
            source: format!("endpointslice/default/{name}"),
            targets: target
                .map(|addr| {
                    labels! {
                        "__address__" => addr,
                        "__meta_kubernetes_endpointslice_endpoint_conditions_ready" => "true",
                        "__meta_kubernetes_endpointslice_port" => "9000",
                        "__meta_kubernetes_endpointslice_port_name" => "http",
                        "__meta_kubernetes_endpointslice_port_protocol" => "TCP",
                    }
                })
                .into_iter()
                .collect(),
            labels: labels! {
                "__meta_kubernetes_namespace" => "default",
                "__meta_kubernetes_endpointslice_address_type" => addr_type,
                "__meta_kubernetes_endpointslice_name" => name,
                "__meta_kubernetes_endpointslice_label_kubernetes_io_service_name" => "testsvc",
                "__meta_kubernetes_endpointslice_labelpresent_kubernetes_io_service_name" => "true",
                "__meta_kubernetes_service_name" => "testsvc",
            },
        }
    }

    fn build_dual_stack(svc: Service, name: &str, addr_type: &str, addr: &str) -> TargetGroup {
        let lookup = FakeLookup::default().with_service(svc);
        let eps = make_dual_stack_endpoint_slice(name, addr_type, addr);
        group(&eps, &lookup, &none())
    }

    fn secondary_slice_skipped(policy: &str) {
        let svc = || make_dual_stack_service(policy, json!(["IPv4", "IPv6"]));
        assert_eq!(
            build_dual_stack(svc(), "testsvc-ipv4", "IPv4", "1.2.3.4"),
            dual_stack_group("testsvc-ipv4", "IPv4", Some("1.2.3.4:9000"))
        );
        assert_eq!(
            build_dual_stack(svc(), "testsvc-ipv6", "IPv6", "fd00::1"),
            dual_stack_group("testsvc-ipv6", "IPv6", None)
        );
    }

    #[test]
    fn test_endpoint_slice_discovery_dual_stack_preferred_skips_secondary_slice() {
        secondary_slice_skipped("PreferDualStack");
    }

    #[test]
    fn test_endpoint_slice_discovery_dual_stack_required_skips_secondary_slice() {
        secondary_slice_skipped("RequireDualStack");
    }

    #[test]
    fn test_endpoint_slice_discovery_single_stack_ipv4_unaffected() {
        let svc = make_dual_stack_service("SingleStack", json!(["IPv4"]));
        assert_eq!(
            build_dual_stack(svc, "testsvc-ipv4", "IPv4", "1.2.3.4"),
            dual_stack_group("testsvc-ipv4", "IPv4", Some("1.2.3.4:9000"))
        );
    }

    #[test]
    fn test_endpoint_slice_discovery_single_stack_ipv6_unaffected() {
        let svc = make_dual_stack_service("SingleStack", json!(["IPv6"]));
        assert_eq!(
            build_dual_stack(svc, "testsvc-ipv6", "IPv6", "fd00::1"),
            dual_stack_group("testsvc-ipv6", "IPv6", Some("[fd00::1]:9000"))
        );
    }

    #[test]
    fn test_endpoint_slice_discovery_dual_stack_preferred_ipv6_primary() {
        let svc = || make_dual_stack_service("PreferDualStack", json!(["IPv6", "IPv4"]));
        assert_eq!(
            build_dual_stack(svc(), "testsvc-ipv6", "IPv6", "fd00::1"),
            dual_stack_group("testsvc-ipv6", "IPv6", Some("[fd00::1]:9000"))
        );
        assert_eq!(
            build_dual_stack(svc(), "testsvc-ipv4", "IPv4", "1.2.3.4"),
            dual_stack_group("testsvc-ipv4", "IPv4", None)
        );
    }

    #[test]
    fn an_empty_slice_maps_to_an_empty_group() {
        let want = TargetGroup {
            source: "endpointslice//".into(),
            targets: vec![],
            labels: labels! {
                "__meta_kubernetes_namespace" => "",
                "__meta_kubernetes_endpointslice_address_type" => "",
                "__meta_kubernetes_endpointslice_name" => "",
            },
        };
        let all = AttachMetadata {
            node: true,
            namespace: true,
        };
        let got = group(&EndpointSlice::default(), &FakeLookup::default(), &all);
        assert_eq!(got, want);
    }
}
