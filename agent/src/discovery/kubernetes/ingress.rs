//! The `ingress` role (Prometheus' `discovery/kubernetes/ingress.go`): one
//! target per rule and path, addressed by the rule's host, with `https` as
//! the scheme when a TLS entry's host (or wildcard) matches.

use k8s_openapi::api::networking::v1::{Ingress, IngressRule};

use super::meta::{self, NAMESPACE_LABEL, PREFIX};
use super::Lookup;
use crate::config::discovery::AttachMetadata;
use crate::discovery::{LabelSet, TargetGroup};

/// `ingress/<namespace>/<name>`: the source of an ingress' group.
pub fn source(namespace: &str, name: &str) -> String {
    format!("ingress/{namespace}/{name}")
}

pub fn group(ingress: &Ingress, lookup: &dyn Lookup, attach: &AttachMetadata) -> TargetGroup {
    let namespace = ingress.metadata.namespace.as_deref().unwrap_or_default();
    let name = ingress.metadata.name.as_deref().unwrap_or_default();
    let spec = ingress.spec.clone().unwrap_or_default();

    let mut labels = LabelSet::new();
    labels.insert(NAMESPACE_LABEL.to_string(), namespace.to_string());
    if let Some(class) = &spec.ingress_class_name {
        labels.insert(format!("{PREFIX}ingress_class_name"), class.clone());
    }
    meta::add_object_meta(&mut labels, &ingress.metadata, "ingress");
    if attach.namespace {
        meta::add_namespace_meta(&mut labels, lookup, namespace);
    }

    let tls_hosts: Vec<&str> = spec
        .tls
        .iter()
        .flatten()
        .flat_map(|t| t.hosts.iter().flatten())
        .map(String::as_str)
        .collect();
    let mut targets = Vec::new();
    for rule in spec.rules.iter().flatten() {
        let host = rule.host.as_deref().unwrap_or_default();
        let scheme = if tls_hosts
            .iter()
            .any(|pattern| matches_hostname_pattern(pattern, host))
        {
            "https"
        } else {
            "http"
        };
        for path in rule_paths(rule) {
            let mut t = LabelSet::new();
            t.insert("__address__".to_string(), host.to_string());
            t.insert(format!("{PREFIX}ingress_scheme"), scheme.to_string());
            t.insert(format!("{PREFIX}ingress_host"), host.to_string());
            t.insert(format!("{PREFIX}ingress_path"), path.to_string());
            targets.push(t);
        }
    }
    TargetGroup {
        source: source(namespace, name),
        targets,
        labels,
    }
}

/// A rule's paths, an empty one as `/`. A rule without `http` is one
/// target at `/`; one with `http` but no paths is none (as Prometheus).
fn rule_paths(rule: &IngressRule) -> Vec<&str> {
    match &rule.http {
        None => vec!["/"],
        Some(http) => http
            .paths
            .iter()
            .map(|p| p.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/"))
            .collect(),
    }
}

/// Whether a TLS host `pattern` covers `host`: equal, or `*.rest` with
/// the same number of labels and every label after the first equal.
fn matches_hostname_pattern(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let pattern: Vec<&str> = pattern.split('.').collect();
    let host: Vec<&str> = host.split('.').collect();
    pattern[0] == "*" && pattern.len() == host.len() && pattern[1..] == host[1..]
}

/// Ports of Prometheus' `ingress_test.go`: the ingress in, its group out,
/// compared whole. Which namespaces are watched (Namespaces, OwnNamespace)
/// is the watch's; those cases check each watched namespace's group here.
#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::discovery::kubernetes::testutil::{labels, namespace, obj, FakeLookup};

    #[derive(Clone, Copy)]
    enum Tls {
        No,
        Yes,
        Mixed,
        Wildcard,
    }

    fn make_ingress(ns: &str, tls: Tls) -> Ingress {
        let tls = match tls {
            Tls::No => json!(null),
            Tls::Yes => json!([{"hosts": ["example.com", "test.example.com"]}]),
            Tls::Mixed => json!([{"hosts": ["example.com"]}]),
            Tls::Wildcard => json!([{"hosts": ["*.example.com"]}]),
        };
        obj(json!({
            "metadata": {"name": "testingress", "namespace": ns,
                "labels": {"test/label": "testvalue"},
                "annotations": {"test/annotation": "testannotationvalue"}},
            "spec": {
                "ingressClassName": "testclass",
                "tls": tls,
                "rules": [
                    {"host": "example.com", "http": {"paths": [{"path": "/"}, {"path": "/foo"}]}},
                    // No backend config, ignored.
                    {"host": "nobackend.example.com", "http": {}},
                    {"host": "test.example.com", "http": {"paths": [{}]}}
                ]
            }
        }))
    }

    fn expected_target_group(ns: &str, tls: Tls) -> TargetGroup {
        let (scheme1, scheme2) = match tls {
            Tls::No => ("http", "http"),
            Tls::Yes => ("https", "https"),
            Tls::Mixed => ("https", "http"),
            Tls::Wildcard => ("http", "https"),
        };
        TargetGroup {
            source: format!("ingress/{ns}/testingress"),
            targets: vec![
                labels! {
                    "__meta_kubernetes_ingress_scheme" => scheme1,
                    "__meta_kubernetes_ingress_host" => "example.com",
                    "__meta_kubernetes_ingress_path" => "/",
                    "__address__" => "example.com",
                },
                labels! {
                    "__meta_kubernetes_ingress_scheme" => scheme1,
                    "__meta_kubernetes_ingress_host" => "example.com",
                    "__meta_kubernetes_ingress_path" => "/foo",
                    "__address__" => "example.com",
                },
                labels! {
                    "__meta_kubernetes_ingress_scheme" => scheme2,
                    "__meta_kubernetes_ingress_host" => "test.example.com",
                    "__address__" => "test.example.com",
                    "__meta_kubernetes_ingress_path" => "/",
                },
            ],
            labels: labels! {
                "__meta_kubernetes_ingress_name" => "testingress",
                "__meta_kubernetes_namespace" => ns,
                "__meta_kubernetes_ingress_label_test_label" => "testvalue",
                "__meta_kubernetes_ingress_labelpresent_test_label" => "true",
                "__meta_kubernetes_ingress_annotation_test_annotation" => "testannotationvalue",
                "__meta_kubernetes_ingress_annotationpresent_test_annotation" => "true",
                "__meta_kubernetes_ingress_class_name" => "testclass",
            },
        }
    }

    fn build(ns: &str, tls: Tls) -> TargetGroup {
        group(
            &make_ingress(ns, tls),
            &FakeLookup::default(),
            &AttachMetadata::default(),
        )
    }

    #[test]
    fn test_ingress_discovery_add() {
        assert_eq!(
            build("default", Tls::No),
            expected_target_group("default", Tls::No)
        );
    }

    #[test]
    fn test_ingress_discovery_add_tls() {
        assert_eq!(
            build("default", Tls::Yes),
            expected_target_group("default", Tls::Yes)
        );
    }

    #[test]
    fn test_ingress_discovery_add_mixed() {
        assert_eq!(
            build("default", Tls::Mixed),
            expected_target_group("default", Tls::Mixed)
        );
    }

    /// Prometheus' `TLSWildcard` mode, which its expectations cover but no
    /// Go test calls: `*.example.com` covers test.example.com only.
    #[test]
    fn test_ingress_discovery_add_wildcard() {
        assert_eq!(
            build("default", Tls::Wildcard),
            expected_target_group("default", Tls::Wildcard)
        );
    }

    #[test]
    fn test_ingress_discovery_namespaces() {
        for ns in ["ns1", "ns2"] {
            assert_eq!(build(ns, Tls::No), expected_target_group(ns, Tls::No));
        }
    }

    #[test]
    fn test_ingress_discovery_own_namespace() {
        assert_eq!(
            build("own-ns", Tls::No),
            expected_target_group("own-ns", Tls::No)
        );
    }

    fn with_namespace(ns: k8s_openapi::api::core::v1::Namespace) -> TargetGroup {
        let attach = AttachMetadata {
            namespace: true,
            ..Default::default()
        };
        let lookup = FakeLookup::default().with_namespace(ns);
        group(&make_ingress("test-ns", Tls::No), &lookup, &attach)
    }

    #[test]
    fn test_ingress_discovery_with_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"service": "web", "layer": "frontend"}),
            json!({"contact": "platform", "release": "v5.6.7"}),
        );
        let mut want = expected_target_group("test-ns", Tls::No);
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
        assert_eq!(with_namespace(ns), want);
    }

    /// The namespace as it is after the case's update.
    #[test]
    fn test_ingress_discovery_with_updated_namespace_metadata() {
        let ns = namespace(
            "test-ns",
            json!({"component": "cache", "layer": "backend", "region": "us-central"}),
            json!({"contact": "sre", "release": "v6.7.8", "monitoring": "enabled"}),
        );
        let mut want = expected_target_group("test-ns", Tls::No);
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
        assert_eq!(with_namespace(ns), want);
    }

    #[test]
    fn hostname_patterns_match_like_prometheus() {
        assert!(matches_hostname_pattern("example.com", "example.com"));
        assert!(matches_hostname_pattern("*.example.com", "a.example.com"));
        assert!(!matches_hostname_pattern("*.example.com", "example.com"));
        assert!(!matches_hostname_pattern(
            "*.example.com",
            "a.b.example.com"
        ));
        assert!(!matches_hostname_pattern("a.*.com", "a.b.com"));
        assert!(!matches_hostname_pattern("", "example.com"));
    }

    #[test]
    fn an_empty_ingress_maps_to_an_empty_group() {
        let want = TargetGroup {
            source: "ingress//".into(),
            targets: vec![],
            labels: labels! {
                "__meta_kubernetes_namespace" => "",
                "__meta_kubernetes_ingress_name" => "",
            },
        };
        let got = group(
            &Ingress::default(),
            &FakeLookup::default(),
            &AttachMetadata::default(),
        );
        assert_eq!(got, want);
    }
}
