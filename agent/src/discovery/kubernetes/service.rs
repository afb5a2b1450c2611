//! The `service` role (Prometheus' `discovery/kubernetes/service.go`): one
//! target per service port, addressed by the service's DNS name.

use k8s_openapi::api::core::v1::Service;

use super::meta::{self, join_host_port, NAMESPACE_LABEL, PREFIX};
use super::Lookup;
use crate::config::discovery::AttachMetadata;
use crate::discovery::{LabelSet, TargetGroup};

/// `svc/<namespace>/<name>`: the source of a service's group.
pub fn source(namespace: &str, name: &str) -> String {
    format!("svc/{namespace}/{name}")
}

/// The labels a service gives its group, and the groups of the endpoints
/// and endpoint slices that belong to it (Prometheus' `serviceLabels`).
pub fn labels(svc: &Service) -> LabelSet {
    let mut set = LabelSet::new();
    set.insert(
        NAMESPACE_LABEL.to_string(),
        svc.metadata.namespace.clone().unwrap_or_default(),
    );
    meta::add_object_meta(&mut set, &svc.metadata, "service");
    set
}

pub fn group(svc: &Service, lookup: &dyn Lookup, attach: &AttachMetadata) -> TargetGroup {
    let namespace = svc.metadata.namespace.as_deref().unwrap_or_default();
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let mut labels = labels(svc);
    if attach.namespace {
        meta::add_namespace_meta(&mut labels, lookup, namespace);
    }
    let spec = svc.spec.clone().unwrap_or_default();
    let kind = spec.type_.clone().unwrap_or_default();
    let targets = spec
        .ports
        .iter()
        .flatten()
        .map(|port| {
            let mut t = LabelSet::new();
            t.insert(
                "__address__".to_string(),
                join_host_port(&format!("{name}.{namespace}.svc"), port.port),
            );
            for (label, value) in [
                ("service_port_name", port.name.clone().unwrap_or_default()),
                ("service_port_number", port.port.to_string()),
                (
                    "service_port_protocol",
                    port.protocol.clone().unwrap_or_default(),
                ),
                ("service_type", kind.clone()),
            ] {
                t.insert(format!("{PREFIX}{label}"), value);
            }
            if kind == "ExternalName" {
                t.insert(
                    format!("{PREFIX}service_external_name"),
                    spec.external_name.clone().unwrap_or_default(),
                );
            } else {
                t.insert(
                    format!("{PREFIX}service_cluster_ip"),
                    spec.cluster_ip.clone().unwrap_or_default(),
                );
            }
            if kind == "LoadBalancer" {
                t.insert(
                    format!("{PREFIX}service_loadbalancer_ip"),
                    load_balancer_ips(svc),
                );
            }
            t
        })
        .collect();
    TargetGroup {
        source: source(namespace, name),
        targets,
        labels,
    }
}

/// The load balancer's ingress IPs joined with commas, or the deprecated
/// `spec.loadBalancerIP` when it has none.
fn load_balancer_ips(svc: &Service) -> String {
    let ips: Vec<&str> = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref().filter(|ip| !ip.is_empty()))
        .collect();
    if ips.is_empty() {
        svc.spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.clone())
            .unwrap_or_default()
    } else {
        ips.join(",")
    }
}

/// Ports of Prometheus' `service_test.go`: each case's service in, its
/// group out, compared whole. The Delete case (a group with only a source)
/// is the watch's, not this mapping's.
#[cfg(test)]
pub(crate) mod tests {
    use serde_json::json;

    use super::*;
    use crate::discovery::kubernetes::testutil::{labels, namespace, obj, FakeLookup};

    fn make_multi_port_service() -> Service {
        obj(json!({
            "metadata": {"name": "testservice", "namespace": "default",
                "labels": {"test-label": "testvalue"},
                "annotations": {"test-annotation": "testannotationvalue"}},
            "spec": {"ports": [
                {"name": "testport0", "protocol": "TCP", "port": 30900},
                {"name": "testport1", "protocol": "UDP", "port": 30901}],
                "type": "ClusterIP", "clusterIP": "10.0.0.1"}
        }))
    }

    pub fn make_service(ns: &str) -> Service {
        obj(json!({
            "metadata": {"name": "testservice", "namespace": ns},
            "spec": {"ports": [{"name": "testport", "protocol": "TCP", "port": 30900}],
                "type": "ClusterIP", "clusterIP": "10.0.0.1"}
        }))
    }

    fn make_external_service() -> Service {
        obj(json!({
            "metadata": {"name": "testservice-external", "namespace": "default"},
            "spec": {"ports": [{"name": "testport", "protocol": "TCP", "port": 31900}],
                "type": "ExternalName", "externalName": "FooExternalName"}
        }))
    }

    fn make_load_balancer_service() -> Service {
        obj(json!({
            "metadata": {"name": "testservice-loadbalancer", "namespace": "default"},
            "spec": {"ports": [{"name": "testport", "protocol": "TCP", "port": 31900}],
                "type": "LoadBalancer", "loadBalancerIP": "127.0.0.1", "clusterIP": "10.0.0.1"}
        }))
    }

    fn make_load_balancer_service_from_ingress() -> Service {
        obj(json!({
            "metadata": {"name": "testservice-lb-ingress", "namespace": "default"},
            "spec": {"ports": [{"name": "testport", "protocol": "TCP", "port": 31900}],
                "type": "LoadBalancer", "clusterIP": "10.0.0.1"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.168.1.15"}, {"ip": "2001:db8::1"}]}}
        }))
    }

    fn build(svc: &Service) -> TargetGroup {
        group(svc, &FakeLookup::default(), &AttachMetadata::default())
    }

    /// The one-port group of `make_service(ns)`.
    fn single_port_group(ns: &str) -> TargetGroup {
        TargetGroup {
            source: format!("svc/{ns}/testservice"),
            targets: vec![labels! {
                "__meta_kubernetes_service_port_protocol" => "TCP",
                "__address__" => format!("testservice.{ns}.svc:30900"),
                "__meta_kubernetes_service_type" => "ClusterIP",
                "__meta_kubernetes_service_cluster_ip" => "10.0.0.1",
                "__meta_kubernetes_service_port_name" => "testport",
                "__meta_kubernetes_service_port_number" => "30900",
            }],
            labels: labels! {
                "__meta_kubernetes_service_name" => "testservice",
                "__meta_kubernetes_namespace" => ns,
            },
        }
    }

    #[test]
    fn test_service_discovery_add() {
        assert_eq!(
            build(&make_service("default")),
            single_port_group("default")
        );
        assert_eq!(
            build(&make_external_service()),
            TargetGroup {
                source: "svc/default/testservice-external".into(),
                targets: vec![labels! {
                    "__meta_kubernetes_service_port_protocol" => "TCP",
                    "__address__" => "testservice-external.default.svc:31900",
                    "__meta_kubernetes_service_type" => "ExternalName",
                    "__meta_kubernetes_service_port_name" => "testport",
                    "__meta_kubernetes_service_port_number" => "31900",
                    "__meta_kubernetes_service_external_name" => "FooExternalName",
                }],
                labels: labels! {
                    "__meta_kubernetes_service_name" => "testservice-external",
                    "__meta_kubernetes_namespace" => "default",
                },
            }
        );
        assert_eq!(
            build(&make_load_balancer_service()),
            TargetGroup {
                source: "svc/default/testservice-loadbalancer".into(),
                targets: vec![labels! {
                    "__meta_kubernetes_service_port_protocol" => "TCP",
                    "__address__" => "testservice-loadbalancer.default.svc:31900",
                    "__meta_kubernetes_service_type" => "LoadBalancer",
                    "__meta_kubernetes_service_port_name" => "testport",
                    "__meta_kubernetes_service_port_number" => "31900",
                    "__meta_kubernetes_service_cluster_ip" => "10.0.0.1",
                    "__meta_kubernetes_service_loadbalancer_ip" => "127.0.0.1",
                }],
                labels: labels! {
                    "__meta_kubernetes_service_name" => "testservice-loadbalancer",
                    "__meta_kubernetes_namespace" => "default",
                },
            }
        );
        assert_eq!(
            build(&make_load_balancer_service_from_ingress()),
            TargetGroup {
                source: "svc/default/testservice-lb-ingress".into(),
                targets: vec![labels! {
                    "__meta_kubernetes_service_port_protocol" => "TCP",
                    "__address__" => "testservice-lb-ingress.default.svc:31900",
                    "__meta_kubernetes_service_type" => "LoadBalancer",
                    "__meta_kubernetes_service_port_name" => "testport",
                    "__meta_kubernetes_service_port_number" => "31900",
                    "__meta_kubernetes_service_cluster_ip" => "10.0.0.1",
                    "__meta_kubernetes_service_loadbalancer_ip" => "192.168.1.15,2001:db8::1",
                }],
                labels: labels! {
                    "__meta_kubernetes_service_name" => "testservice-lb-ingress",
                    "__meta_kubernetes_namespace" => "default",
                },
            }
        );
    }

    #[test]
    fn test_service_discovery_update() {
        assert_eq!(
            build(&make_multi_port_service()),
            TargetGroup {
                source: "svc/default/testservice".into(),
                targets: vec![
                    labels! {
                        "__meta_kubernetes_service_port_protocol" => "TCP",
                        "__address__" => "testservice.default.svc:30900",
                        "__meta_kubernetes_service_type" => "ClusterIP",
                        "__meta_kubernetes_service_cluster_ip" => "10.0.0.1",
                        "__meta_kubernetes_service_port_name" => "testport0",
                        "__meta_kubernetes_service_port_number" => "30900",
                    },
                    labels! {
                        "__meta_kubernetes_service_port_protocol" => "UDP",
                        "__address__" => "testservice.default.svc:30901",
                        "__meta_kubernetes_service_type" => "ClusterIP",
                        "__meta_kubernetes_service_cluster_ip" => "10.0.0.1",
                        "__meta_kubernetes_service_port_name" => "testport1",
                        "__meta_kubernetes_service_port_number" => "30901",
                    },
                ],
                labels: labels! {
                    "__meta_kubernetes_service_name" => "testservice",
                    "__meta_kubernetes_namespace" => "default",
                    "__meta_kubernetes_service_label_test_label" => "testvalue",
                    "__meta_kubernetes_service_labelpresent_test_label" => "true",
                    "__meta_kubernetes_service_annotation_test_annotation" => "testannotationvalue",
                    "__meta_kubernetes_service_annotationpresent_test_annotation" => "true",
                },
            }
        );
    }

    /// The Namespaces, OwnNamespace and AllNamespaces cases: which
    /// namespaces are watched is the watch's; each service's group is this.
    #[test]
    fn test_service_discovery_namespaces() {
        for ns in ["ns1", "ns2"] {
            assert_eq!(build(&make_service(ns)), single_port_group(ns));
        }
    }

    #[test]
    fn test_service_discovery_own_namespace() {
        assert_eq!(build(&make_service("own-ns")), single_port_group("own-ns"));
    }

    #[test]
    fn test_service_discovery_all_namespaces() {
        for ns in ["own-ns", "non-own-ns"] {
            assert_eq!(build(&make_service(ns)), single_port_group(ns));
        }
    }

    fn with_namespace_metadata(ns_obj: k8s_openapi::api::core::v1::Namespace) -> TargetGroup {
        let lookup = FakeLookup::default().with_namespace(ns_obj);
        let attach = AttachMetadata {
            namespace: true,
            ..Default::default()
        };
        group(&make_service("test-ns"), &lookup, &attach)
    }

    #[test]
    fn test_service_discovery_with_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"environment": "production", "team": "backend"}),
            json!({"owner": "platform", "version": "v1.2.3"}),
        );
        let mut want = single_port_group("test-ns");
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
    fn test_service_discovery_with_updated_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"environment": "staging", "team": "frontend", "region": "us-west"}),
            json!({"owner": "sre", "version": "v2.1.0", "cost-center": "engineering"}),
        );
        let mut want = single_port_group("test-ns");
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
    fn an_empty_service_maps_to_an_empty_group() {
        let want = TargetGroup {
            source: "svc//".into(),
            targets: vec![],
            labels: labels! {
                "__meta_kubernetes_namespace" => "",
                "__meta_kubernetes_service_name" => "",
            },
        };
        assert_eq!(build(&Service::default()), want);
    }
}
