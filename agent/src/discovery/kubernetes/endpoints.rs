//! The `endpoints` role (Prometheus' `discovery/kubernetes/endpoints.go`):
//! one target per address and port of a core/v1 Endpoints, ready and
//! not-ready addresses alike, with the labels of the service of the same
//! name, of the pod an address points at, and one more target for each
//! port of that pod's containers no endpoint port covered.

use std::collections::{HashMap, HashSet};

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, Endpoints, ObjectReference, Pod};

use super::meta::{self, join_host_port, NAMESPACE_LABEL, PREFIX};
use super::{service, Lookup};
use crate::config::discovery::AttachMetadata;
use crate::discovery::{LabelSet, TargetGroup};

/// `endpoints/<namespace>/<name>`: the source of an Endpoints' group.
pub fn source(namespace: &str, name: &str) -> String {
    format!("endpoints/{namespace}/{name}")
}

pub fn group(eps: &Endpoints, lookup: &dyn Lookup, attach: &AttachMetadata) -> TargetGroup {
    let namespace = eps.metadata.namespace.as_deref().unwrap_or_default();
    let name = eps.metadata.name.as_deref().unwrap_or_default();

    let mut labels = LabelSet::new();
    labels.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    if let Some(svc) = lookup.service(namespace, name) {
        labels.extend(service::labels(svc));
    }
    meta::add_object_meta(&mut labels, &eps.metadata, "endpoints");
    if attach.namespace {
        meta::add_namespace_meta(&mut labels, lookup, namespace);
    }

    let mut targets = Vec::new();
    let mut seen = SeenPods::default();
    for subset in eps.subsets.iter().flatten() {
        for port in subset.ports.iter().flatten() {
            // A not-ready address seen ready too is a second target, as in
            // Prometheus: its ready label is what tells them apart.
            let ready = subset.addresses.iter().flatten().map(|a| (a, "true"));
            let not_ready = subset
                .not_ready_addresses
                .iter()
                .flatten()
                .map(|a| (a, "false"));
            for (addr, ready) in ready.chain(not_ready) {
                let mut t = address_target(addr, port, ready, lookup, attach);
                if let Some(pod) = resolve_pod(addr.target_ref.as_ref(), lookup) {
                    seen.attach(
                        &mut t,
                        pod,
                        Some(port.port),
                        ProtocolFrom::EndpointPort(port.protocol.as_deref()),
                    );
                }
                targets.push(t);
            }
        }
    }
    targets.extend(seen.uncovered_container_ports());
    TargetGroup {
        source: source(namespace, name),
        targets,
        labels,
    }
}

/// The `__meta_kubernetes_endpoint_*` labels of one address and port, and
/// its node's if `attach_metadata.node`.
fn address_target(
    addr: &EndpointAddress,
    port: &EndpointPort,
    ready: &str,
    lookup: &dyn Lookup,
    attach: &AttachMetadata,
) -> LabelSet {
    let mut t = LabelSet::new();
    t.insert(
        "__address__".to_string(),
        join_host_port(&addr.ip, port.port),
    );
    for (label, value) in [
        ("endpoint_port_name", port.name.as_deref()),
        ("endpoint_port_protocol", port.protocol.as_deref()),
        ("endpoint_ready", Some(ready)),
    ] {
        t.insert(
            format!("{PREFIX}{label}"),
            value.unwrap_or_default().to_string(),
        );
    }
    if let Some(r) = &addr.target_ref {
        let kind = r.kind.clone().unwrap_or_default();
        let name = r.name.clone().unwrap_or_default();
        t.insert(format!("{PREFIX}endpoint_address_target_kind"), kind);
        t.insert(format!("{PREFIX}endpoint_address_target_name"), name);
    }
    if let Some(node) = &addr.node_name {
        t.insert(format!("{PREFIX}endpoint_node_name"), node.clone());
    }
    if let Some(host) = addr.hostname.as_deref().filter(|h| !h.is_empty()) {
        t.insert(format!("{PREFIX}endpoint_hostname"), host.to_string());
    }
    if attach.node {
        let node = addr
            .node_name
            .as_deref()
            .or_else(|| node_ref(addr.target_ref.as_ref()));
        if let Some(node) = node {
            meta::add_node_meta(&mut t, lookup, node);
        }
    }
    t
}

/// The node an endpoint's target reference names, if it names a node.
pub(super) fn node_ref(r: Option<&ObjectReference>) -> Option<&str> {
    r.filter(|r| r.kind.as_deref() == Some("Node"))
        .and_then(|r| r.name.as_deref())
}

/// The pod an endpoint's target reference names, if it names a known pod.
pub(super) fn resolve_pod<'a>(
    r: Option<&ObjectReference>,
    lookup: &'a dyn Lookup,
) -> Option<&'a Pod> {
    let r = r.filter(|r| r.kind.as_deref() == Some("Pod"))?;
    lookup.pod(
        r.namespace.as_deref().unwrap_or_default(),
        r.name.as_deref().unwrap_or_default(),
    )
}

/// Where a matched container port's protocol label comes from. Prometheus
/// takes the endpoint port's in the endpoints role and the container
/// port's in the endpointslice role; both are kept as it does.
pub(super) enum ProtocolFrom<'p> {
    EndpointPort(Option<&'p str>),
    ContainerPort,
}

/// The pods an object's endpoints pointed at, in the order first seen,
/// each with the endpoint ports they were given a target for. Indexed by
/// namespace and name, so an Endpoints of a thousand pods stays linear.
#[derive(Default)]
pub(super) struct SeenPods<'a> {
    pods: Vec<(&'a Pod, HashSet<i32>)>,
    index: HashMap<(&'a str, &'a str), usize>,
}

impl<'a> SeenPods<'a> {
    /// Adds `pod`'s labels to an endpoint's target, and the labels of the
    /// container port that is the endpoint's `port` if there is one (the
    /// last such container wins, as in Prometheus), and records the port
    /// as covered.
    pub(super) fn attach(
        &mut self,
        target: &mut LabelSet,
        pod: &'a Pod,
        port: Option<i32>,
        protocol: ProtocolFrom<'_>,
    ) {
        meta::add_pod_meta(target, pod);
        if let Some(port) = port {
            for (c, init) in meta::pod_containers(pod) {
                let matched = c.ports.iter().flatten().find(|p| p.container_port == port);
                if let Some(cport) = matched {
                    let protocol = match protocol {
                        ProtocolFrom::EndpointPort(p) => p,
                        ProtocolFrom::ContainerPort => cport.protocol.as_deref(),
                    };
                    meta::add_container_port_meta(
                        target,
                        c,
                        init,
                        cport.name.as_deref(),
                        port,
                        protocol,
                    );
                }
            }
        }
        let key = (
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.name.as_deref().unwrap_or_default(),
        );
        let pods = &mut self.pods;
        let i = *self.index.entry(key).or_insert_with(|| {
            pods.push((pod, HashSet::new()));
            pods.len() - 1
        });
        self.pods[i].1.extend(port);
    }

    /// One target per container port of a seen pod that no endpoint port
    /// covered, at the pod's IP (none for a pod without one yet).
    pub(super) fn uncovered_container_ports(self) -> Vec<LabelSet> {
        let mut targets = Vec::new();
        for (pod, covered) in self.pods {
            let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .filter(|ip| !ip.is_empty())
            else {
                continue;
            };
            for (c, init) in meta::pod_containers(pod) {
                for cport in c.ports.iter().flatten() {
                    if covered.contains(&cport.container_port) {
                        continue;
                    }
                    let mut t = LabelSet::new();
                    t.insert(
                        "__address__".to_string(),
                        join_host_port(ip, cport.container_port),
                    );
                    meta::add_container_port_meta(
                        &mut t,
                        c,
                        init,
                        cport.name.as_deref(),
                        cport.container_port,
                        cport.protocol.as_deref(),
                    );
                    meta::add_pod_meta(&mut t, pod);
                    targets.push(t);
                }
            }
        }
        targets
    }
}

/// Ports of Prometheus' `endpoints_test.go`: the Endpoints (and the
/// objects it refers to) in, its group out, compared whole. Cases about
/// updates check the group built from the objects as they are after the
/// update. Skipped: Delete (a group with only a source is the watch's) and
/// EmptyPodStatus (it checks that an unwatched namespace yields nothing).
#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::discovery::kubernetes::testutil::{
        endpoints_service, labels, mainport_pod, namespace, node, obj, sidecar_pod, testpod_labels,
        two_container_pod, with, FakeLookup,
    };

    fn make_endpoints(ns: &str) -> Endpoints {
        obj(json!({
            "metadata": {"name": "testendpoints", "namespace": ns,
                "annotations": {"test.annotation": "test"}},
            "subsets": [
                {"addresses": [{"ip": "1.2.3.4", "hostname": "testendpoint1", "nodeName": "foobar"}],
                 "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}]},
                {"addresses": [{"ip": "2.3.4.5"}],
                 "notReadyAddresses": [{"ip": "2.3.4.5"}],
                 "ports": [{"name": "testport", "port": 9001, "protocol": "TCP"}]},
                {"addresses": [{"ip": "6.7.8.9", "targetRef": {"kind": "Node", "name": "barbaz"}}],
                 "ports": [{"name": "testport", "port": 9002, "protocol": "TCP"}]}
            ]
        }))
    }

    /// The group of `make_endpoints(ns)` with nothing attached.
    fn make_endpoints_group(ns: &str) -> TargetGroup {
        TargetGroup {
            source: format!("endpoints/{ns}/testendpoints"),
            targets: vec![
                labels! {
                    "__address__" => "1.2.3.4:9000",
                    "__meta_kubernetes_endpoint_hostname" => "testendpoint1",
                    "__meta_kubernetes_endpoint_node_name" => "foobar",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                },
                labels! {
                    "__address__" => "2.3.4.5:9001",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                },
                labels! {
                    "__address__" => "2.3.4.5:9001",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "false",
                },
                labels! {
                    "__address__" => "6.7.8.9:9002",
                    "__meta_kubernetes_endpoint_address_target_kind" => "Node",
                    "__meta_kubernetes_endpoint_address_target_name" => "barbaz",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                },
            ],
            labels: labels! {
                "__meta_kubernetes_namespace" => ns,
                "__meta_kubernetes_endpoints_name" => "testendpoints",
                "__meta_kubernetes_endpoints_annotation_test_annotation" => "test",
                "__meta_kubernetes_endpoints_annotationpresent_test_annotation" => "true",
            },
        }
    }

    /// An Endpoints `testendpoints` in `ns` with one ready address
    /// pointing at pod `testpod`, and `ports`.
    fn pod_endpoints(ns: &str, ports: Value) -> Endpoints {
        obj(json!({
            "metadata": {"name": "testendpoints", "namespace": ns},
            "subsets": [{
                "addresses": [{"ip": "4.3.2.1",
                    "targetRef": {"kind": "Pod", "name": "testpod", "namespace": ns}}],
                "ports": ports
            }]
        }))
    }

    fn none() -> AttachMetadata {
        AttachMetadata::default()
    }

    #[test]
    fn test_endpoints_discovery_before_run() {
        let got = group(&make_endpoints("default"), &FakeLookup::default(), &none());
        assert_eq!(got, make_endpoints_group("default"));
    }

    #[test]
    fn test_endpoints_discovery_add() {
        let pod = two_container_pod();
        let eps = pod_endpoints(
            "default",
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"}]),
        );
        let got = group(&eps, &FakeLookup::default().with_pod(pod), &none());
        let want = TargetGroup {
            source: "endpoints/default/testendpoints".into(),
            targets: vec![
                with(
                    testpod_labels("1.2.3.4"),
                    labels! {
                        "__address__" => "4.3.2.1:9000",
                        "__meta_kubernetes_endpoint_port_name" => "testport",
                        "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                        "__meta_kubernetes_endpoint_ready" => "true",
                        "__meta_kubernetes_endpoint_address_target_kind" => "Pod",
                        "__meta_kubernetes_endpoint_address_target_name" => "testpod",
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
            labels: labels! {
                "__meta_kubernetes_endpoints_name" => "testendpoints",
                "__meta_kubernetes_namespace" => "default",
            },
        };
        assert_eq!(got, want);
    }

    #[test]
    fn test_endpoints_discovery_update() {
        let eps: Endpoints = obj(json!({
            "metadata": {"name": "testendpoints", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "1.2.3.4"}],
                 "ports": [{"name": "testport", "port": 9000, "protocol": "TCP"}]},
                {"addresses": [{"ip": "2.3.4.5"}],
                 "ports": [{"name": "testport", "port": 9001, "protocol": "TCP"}]}
            ]
        }));
        let want = TargetGroup {
            source: "endpoints/default/testendpoints".into(),
            targets: vec![
                labels! {
                    "__address__" => "1.2.3.4:9000",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                },
                labels! {
                    "__address__" => "2.3.4.5:9001",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                },
            ],
            labels: labels! {
                "__meta_kubernetes_namespace" => "default",
                "__meta_kubernetes_endpoints_name" => "testendpoints",
            },
        };
        assert_eq!(group(&eps, &FakeLookup::default(), &none()), want);
    }

    #[test]
    fn test_endpoints_discovery_empty_subsets() {
        let eps: Endpoints = obj(json!({
            "metadata": {"name": "testendpoints", "namespace": "default"},
            "subsets": []
        }));
        let want = TargetGroup {
            source: "endpoints/default/testendpoints".into(),
            targets: vec![],
            labels: labels! {
                "__meta_kubernetes_namespace" => "default",
                "__meta_kubernetes_endpoints_name" => "testendpoints",
            },
        };
        assert_eq!(group(&eps, &FakeLookup::default(), &none()), want);
    }

    #[test]
    fn test_endpoints_discovery_with_service() {
        let lookup = FakeLookup::default()
            .with_service(endpoints_service("default", json!({"app/name": "test"})));
        let mut want = make_endpoints_group("default");
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app_name" => "test",
            "__meta_kubernetes_service_labelpresent_app_name" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        assert_eq!(group(&make_endpoints("default"), &lookup, &none()), want);
    }

    #[test]
    fn test_endpoints_discovery_with_service_update() {
        let lookup = FakeLookup::default().with_service(endpoints_service(
            "default",
            json!({"app/name": "svc", "component": "testing"}),
        ));
        let mut want = make_endpoints_group("default");
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app_name" => "svc",
            "__meta_kubernetes_service_labelpresent_app_name" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
            "__meta_kubernetes_service_label_component" => "testing",
            "__meta_kubernetes_service_labelpresent_component" => "true",
        });
        assert_eq!(group(&make_endpoints("default"), &lookup, &none()), want);
    }

    /// The group with `attach_metadata.node` and nodes foobar (az
    /// us-east1) and barbaz (az us-west2).
    fn with_node_metadata() -> (TargetGroup, TargetGroup) {
        let lookup = FakeLookup::default()
            .with_node(node("foobar", json!({"az": "us-east1"})))
            .with_node(node("barbaz", json!({"az": "us-west2"})))
            .with_service(endpoints_service("default", json!({"app/name": "test"})));
        let attach = AttachMetadata {
            node: true,
            ..Default::default()
        };
        let got = group(&make_endpoints("default"), &lookup, &attach);
        let mut want = make_endpoints_group("default");
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
    fn test_endpoints_discovery_with_node_metadata() {
        let (got, want) = with_node_metadata();
        assert_eq!(got, want);
    }

    /// Prometheus expects the node labels as they were before the node's
    /// update (it does not rebuild the group on a node change); the
    /// mapping of the objects it holds is the same as the case above.
    #[test]
    fn test_endpoints_discovery_with_updated_node_metadata() {
        let (got, want) = with_node_metadata();
        assert_eq!(got, want);
    }

    #[test]
    fn test_endpoints_discovery_namespaces() {
        let mut ep_one = make_endpoints("default");
        ep_one.metadata.namespace = Some("ns1".into());
        let lookup = FakeLookup::default()
            .with_service(endpoints_service("ns1", json!({"app": "app1"})))
            .with_pod(mainport_pod(
                "ns2",
                "c1",
                json!({"hostIP": "2.3.4.5", "podIP": "4.3.2.1"}),
            ));
        let mut want = make_endpoints_group("ns1");
        want.labels.extend(labels! {
            "__meta_kubernetes_service_label_app" => "app1",
            "__meta_kubernetes_service_labelpresent_app" => "true",
            "__meta_kubernetes_service_name" => "testendpoints",
        });
        assert_eq!(group(&ep_one, &lookup, &none()), want);

        let ep_two = pod_endpoints(
            "ns2",
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"}]),
        );
        let want = TargetGroup {
            source: "endpoints/ns2/testendpoints".into(),
            targets: vec![with(
                testpod_labels("4.3.2.1"),
                labels! {
                    "__address__" => "4.3.2.1:9000",
                    "__meta_kubernetes_endpoint_port_name" => "testport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                    "__meta_kubernetes_endpoint_address_target_kind" => "Pod",
                    "__meta_kubernetes_endpoint_address_target_name" => "testpod",
                    "__meta_kubernetes_pod_container_name" => "c1",
                    "__meta_kubernetes_pod_container_image" => "c1:latest",
                    "__meta_kubernetes_pod_container_port_name" => "mainport",
                    "__meta_kubernetes_pod_container_port_number" => "9000",
                    "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                    "__meta_kubernetes_pod_container_init" => "false",
                },
            )],
            labels: labels! {
                "__meta_kubernetes_namespace" => "ns2",
                "__meta_kubernetes_endpoints_name" => "testendpoints",
            },
        };
        assert_eq!(group(&ep_two, &lookup, &none()), want);
    }

    /// The own namespace's Endpoints; its addresses point at no pod, so the
    /// pods in the case change nothing.
    #[test]
    fn test_endpoints_discovery_own_namespace() {
        let mut ep_one = make_endpoints("default");
        ep_one.metadata.namespace = Some("own-ns".into());
        let status = json!({"hostIP": "2.3.4.5", "podIP": "4.3.2.1"});
        let lookup = FakeLookup::default()
            .with_pod(mainport_pod("own-ns", "p1", status.clone()))
            .with_pod(mainport_pod("non-own-ns", "p1", status));
        assert_eq!(
            group(&ep_one, &lookup, &none()),
            make_endpoints_group("own-ns")
        );
    }

    /// The pod as it is after it became ready.
    #[test]
    fn test_endpoints_discovery_update_pod() {
        let pod = mainport_pod(
            "default",
            "c1",
            json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                "hostIP": "2.3.4.5", "podIP": "4.3.2.1"}),
        );
        let eps = pod_endpoints(
            "default",
            json!([{"name": "mainport", "port": 9000, "protocol": "TCP"}]),
        );
        let mut pod_labels = testpod_labels("4.3.2.1");
        pod_labels.extend(labels! {
            "__meta_kubernetes_pod_ready" => "true",
            "__meta_kubernetes_pod_phase" => "Running",
        });
        let want = TargetGroup {
            source: "endpoints/default/testendpoints".into(),
            targets: vec![with(
                pod_labels,
                labels! {
                    "__address__" => "4.3.2.1:9000",
                    "__meta_kubernetes_endpoint_port_name" => "mainport",
                    "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                    "__meta_kubernetes_endpoint_ready" => "true",
                    "__meta_kubernetes_endpoint_address_target_kind" => "Pod",
                    "__meta_kubernetes_endpoint_address_target_name" => "testpod",
                    "__meta_kubernetes_pod_container_name" => "c1",
                    "__meta_kubernetes_pod_container_image" => "c1:latest",
                    "__meta_kubernetes_pod_container_port_name" => "mainport",
                    "__meta_kubernetes_pod_container_port_number" => "9000",
                    "__meta_kubernetes_pod_container_port_protocol" => "TCP",
                    "__meta_kubernetes_pod_container_init" => "false",
                },
            )],
            labels: labels! {
                "__meta_kubernetes_namespace" => "default",
                "__meta_kubernetes_endpoints_name" => "testendpoints",
            },
        };
        let got = group(&eps, &FakeLookup::default().with_pod(pod), &none());
        assert_eq!(got, want);
    }

    #[test]
    fn test_endpoints_discovery_sidecar_container() {
        let mut eps = pod_endpoints(
            "default",
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"},
                   {"name": "initport", "port": 9111, "protocol": "TCP"}]),
        );
        eps.metadata.name = Some("testsidecar".into());
        let pod = sidecar_pod();
        let want = TargetGroup {
            source: "endpoints/default/testsidecar".into(),
            targets: vec![
                with(
                    testpod_labels("4.3.2.1"),
                    labels! {
                        "__address__" => "4.3.2.1:9000",
                        "__meta_kubernetes_endpoint_address_target_kind" => "Pod",
                        "__meta_kubernetes_endpoint_address_target_name" => "testpod",
                        "__meta_kubernetes_endpoint_port_name" => "testport",
                        "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                        "__meta_kubernetes_endpoint_ready" => "true",
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
                        "__meta_kubernetes_endpoint_address_target_kind" => "Pod",
                        "__meta_kubernetes_endpoint_address_target_name" => "testpod",
                        "__meta_kubernetes_endpoint_port_name" => "initport",
                        "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                        "__meta_kubernetes_endpoint_ready" => "true",
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
                "__meta_kubernetes_endpoints_name" => "testsidecar",
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
        let lookup = FakeLookup::default().with_namespace(ns);
        group(&make_endpoints("test-ns"), &lookup, &attach)
    }

    #[test]
    fn test_endpoints_discovery_with_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"environment": "production", "team": "backend"}),
            json!({"owner": "platform", "version": "v1.2.3"}),
        );
        let mut want = make_endpoints_group("test-ns");
        want.labels.extend(labels! {
            "__meta_kubernetes_namespace_annotation_owner" => "platform",
            "__meta_kubernetes_namespace_annotationpresent_owner" => "true",
            "__meta_kubernetes_namespace_annotation_version" => "v1.2.3",
            "__meta_kubernetes_namespace_annotationpresent_version" => "true",
            "__meta_kubernetes_namespace_label_environment" => "production",
            "__meta_kubernetes_namespace_labelpresent_environment" => "true",
            "__meta_kubernetes_namespace_label_team" => "backend",
            "__meta_kubernetes_namespace_labelpresent_team" => "true",
        });
        assert_eq!(with_namespace_metadata(ns), want);
    }

    /// The namespace as it is after the case's update.
    #[test]
    fn test_endpoints_discovery_with_updated_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"environment": "staging", "team": "frontend", "region": "us-west"}),
            json!({"owner": "sre", "version": "v2.1.0", "cost-center": "engineering"}),
        );
        let mut want = make_endpoints_group("test-ns");
        want.labels.extend(labels! {
            "__meta_kubernetes_namespace_annotation_owner" => "sre",
            "__meta_kubernetes_namespace_annotationpresent_owner" => "true",
            "__meta_kubernetes_namespace_annotation_version" => "v2.1.0",
            "__meta_kubernetes_namespace_annotationpresent_version" => "true",
            "__meta_kubernetes_namespace_annotation_cost_center" => "engineering",
            "__meta_kubernetes_namespace_annotationpresent_cost_center" => "true",
            "__meta_kubernetes_namespace_label_environment" => "staging",
            "__meta_kubernetes_namespace_labelpresent_environment" => "true",
            "__meta_kubernetes_namespace_label_team" => "frontend",
            "__meta_kubernetes_namespace_labelpresent_team" => "true",
            "__meta_kubernetes_namespace_label_region" => "us-west",
            "__meta_kubernetes_namespace_labelpresent_region" => "true",
        });
        assert_eq!(with_namespace_metadata(ns), want);
    }

    #[test]
    fn empty_endpoints_map_to_an_empty_group() {
        let want = TargetGroup {
            source: "endpoints//".into(),
            targets: vec![],
            labels: labels! {
                "__meta_kubernetes_namespace" => "",
                "__meta_kubernetes_endpoints_name" => "",
            },
        };
        let all = AttachMetadata {
            node: true,
            namespace: true,
        };
        let got = group(&Endpoints::default(), &FakeLookup::default(), &all);
        assert_eq!(got, want);
    }

    /// A pod not (yet) seen by the pod watch: the address is a target of
    /// its own, without pod labels, as in Prometheus.
    #[test]
    fn an_address_of_an_unknown_pod_has_no_pod_labels() {
        let eps = pod_endpoints(
            "default",
            json!([{"name": "testport", "port": 9000, "protocol": "TCP"}]),
        );
        let want = TargetGroup {
            source: "endpoints/default/testendpoints".into(),
            targets: vec![labels! {
                "__address__" => "4.3.2.1:9000",
                "__meta_kubernetes_endpoint_port_name" => "testport",
                "__meta_kubernetes_endpoint_port_protocol" => "TCP",
                "__meta_kubernetes_endpoint_ready" => "true",
                "__meta_kubernetes_endpoint_address_target_kind" => "Pod",
                "__meta_kubernetes_endpoint_address_target_name" => "testpod",
            }],
            labels: labels! {
                "__meta_kubernetes_namespace" => "default",
                "__meta_kubernetes_endpoints_name" => "testendpoints",
            },
        };
        assert_eq!(group(&eps, &FakeLookup::default(), &none()), want);
    }
}
