//! Test helpers for the roles: an in-memory [`Lookup`], objects built from
//! `serde_json::json!` as the API server would send them, and `labels!`
//! for expected label sets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Lookup;
use crate::discovery::LabelSet;

/// An object from its JSON form (what the API server sends); panics on a
/// typo in the test's JSON.
pub fn obj<T: DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).expect("test object JSON")
}

/// The objects a role may look up, keyed as the watches key them.
#[derive(Default)]
pub struct FakeLookup {
    pub pods: BTreeMap<(String, String), Pod>,
    pub services: BTreeMap<(String, String), Service>,
    pub nodes: BTreeMap<String, Node>,
    pub namespaces: BTreeMap<String, Namespace>,
}

fn key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

impl FakeLookup {
    pub fn with_pod(mut self, pod: Pod) -> Self {
        self.pods.insert(key(&pod.metadata), pod);
        self
    }
    pub fn with_service(mut self, svc: Service) -> Self {
        self.services.insert(key(&svc.metadata), svc);
        self
    }
    pub fn with_node(mut self, node: Node) -> Self {
        self.nodes
            .insert(node.metadata.name.clone().unwrap_or_default(), node);
        self
    }
    pub fn with_namespace(mut self, ns: Namespace) -> Self {
        self.namespaces
            .insert(ns.metadata.name.clone().unwrap_or_default(), ns);
        self
    }
}

impl Lookup for FakeLookup {
    fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods.get(&(namespace.to_string(), name.to_string()))
    }
    fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .get(&(namespace.to_string(), name.to_string()))
    }
    fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.get(name)
    }
    fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name)
    }
}

/// Prometheus' `makeNamespace`.
pub fn namespace(
    name: &str,
    labels: serde_json::Value,
    annotations: serde_json::Value,
) -> Namespace {
    obj(serde_json::json!({
        "metadata": {"name": name, "labels": labels, "annotations": annotations}
    }))
}

/// A label set from `"name" => "value"` pairs.
macro_rules! labels {
    ($($k:expr => $v:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut set = $crate::discovery::LabelSet::new();
        $(set.insert(String::from($k), String::from($v));)*
        set
    }};
}
pub(crate) use labels;

/// Prometheus' `makeNode` as the endpoint tests use it: a name and labels.
pub fn node(name: &str, labels: serde_json::Value) -> Node {
    obj(serde_json::json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"addresses": [{"type": "InternalIP", "address": ""}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}
    }))
}

/// A pod named `testpod` in `ns` with UID `deadbeef` on node `testnode`, its
/// `containers` and `status` as given: the pod of the endpoint tests.
pub fn testpod(ns: &str, spec: serde_json::Value, status: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = "testnode".into();
    obj(serde_json::json!({
        "metadata": {"name": "testpod", "namespace": ns, "uid": "deadbeef"},
        "spec": spec,
        "status": status,
    }))
}

/// `set` with `more` added.
pub fn with(mut set: LabelSet, more: LabelSet) -> LabelSet {
    set.extend(more);
    set
}

/// The pod labels of `testpod` with no phase nor conditions.
pub fn testpod_labels(pod_ip: &str) -> LabelSet {
    labels! {
        "__meta_kubernetes_pod_name" => "testpod",
        "__meta_kubernetes_pod_ip" => pod_ip,
        "__meta_kubernetes_pod_ready" => "unknown",
        "__meta_kubernetes_pod_phase" => "",
        "__meta_kubernetes_pod_node_name" => "testnode",
        "__meta_kubernetes_pod_host_ip" => "2.3.4.5",
        "__meta_kubernetes_pod_uid" => "deadbeef",
    }
}

/// The service `testendpoints` of the endpoint tests, with `labels`.
pub fn endpoints_service(ns: &str, labels: serde_json::Value) -> Service {
    obj(json!({"metadata": {"name": "testendpoints", "namespace": ns, "labels": labels}}))
}

/// `testpod` with one container serving `mainport` 9000.
pub fn mainport_pod(ns: &str, container: &str, status: serde_json::Value) -> Pod {
    testpod(
        ns,
        json!({"containers": [{"name": container, "image": format!("{container}:latest"),
            "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]}]}),
        status,
    )
}

/// `testpod` at 1.2.3.4 with containers c1 (mainport 9000) and c2
/// (sideport 9001): the pod of the endpoint tests' Add cases.
pub fn two_container_pod() -> Pod {
    testpod(
        "default",
        json!({"containers": [
            {"name": "c1", "image": "c1:latest",
             "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]},
            {"name": "c2", "image": "c2:latest",
             "ports": [{"name": "sideport", "containerPort": 9001, "protocol": "TCP"}]}
        ]}),
        json!({"hostIP": "2.3.4.5", "podIP": "1.2.3.4"}),
    )
}

/// `testpod` at 4.3.2.1 with init containers ic1 (1111) and ic2 (9111)
/// and container c1 (9000): the pod of the SidecarContainer cases.
pub fn sidecar_pod() -> Pod {
    testpod(
        "default",
        json!({
            "initContainers": [
                {"name": "ic1", "image": "ic1:latest",
                 "ports": [{"name": "initport", "containerPort": 1111, "protocol": "TCP"}]},
                {"name": "ic2", "image": "ic2:latest",
                 "ports": [{"name": "initport", "containerPort": 9111, "protocol": "TCP"}]}
            ],
            "containers": [
                {"name": "c1", "image": "c1:latest",
                 "ports": [{"name": "mainport", "containerPort": 9000, "protocol": "TCP"}]}
            ]
        }),
        json!({"hostIP": "2.3.4.5", "podIP": "4.3.2.1"}),
    )
}
