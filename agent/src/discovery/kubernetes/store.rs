//! The objects the watches keep, slimmed to what roles read, and the
//! [`Lookup`] over them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Lookup;

/// `(namespace, name)`; cluster-scoped objects have an empty namespace.
pub type Key = (String, String);

/// The current objects of every watched kind.
#[derive(Debug, Default)]
pub struct Store {
    pub pods: BTreeMap<Key, Pod>,
    pub services: BTreeMap<Key, Service>,
    pub endpoints: BTreeMap<Key, Endpoints>,
    pub endpointslices: BTreeMap<Key, EndpointSlice>,
    pub ingresses: BTreeMap<Key, Ingress>,
    pub nodes: BTreeMap<Key, Node>,
    pub namespaces: BTreeMap<Key, Namespace>,
}

/// The key of an object.
pub fn key(meta: &ObjectMeta) -> Key {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

fn get<'a, T>(map: &'a BTreeMap<Key, T>, namespace: &str, name: &str) -> Option<&'a T> {
    map.get(&(namespace.to_string(), name.to_string()))
}

impl Lookup for Store {
    fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        get(&self.pods, namespace, name)
    }
    fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        get(&self.services, namespace, name)
    }
    fn node(&self, name: &str) -> Option<&Node> {
        get(&self.nodes, "", name)
    }
    fn namespace(&self, name: &str) -> Option<&Namespace> {
        get(&self.namespaces, "", name)
    }
}

/// A kind the watches keep: where it lives in the [`Store`] and what of
/// it is dropped on arrival.
pub trait Stored:
    kube::Resource<DynamicType = ()>
    + serde::de::DeserializeOwned
    + Clone
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn map(store: &mut Store) -> &mut BTreeMap<Key, Self>;

    /// Drops what no role reads: `managedFields` always (often the largest
    /// part of an object), and per kind what is large and unused.
    fn slim(&mut self) {
        self.meta_mut().managed_fields = None;
    }
}

impl Stored for Pod {
    fn map(store: &mut Store) -> &mut BTreeMap<Key, Self> {
        &mut store.pods
    }
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(spec) = &mut self.spec {
            spec.volumes = None;
            spec.affinity = None;
            spec.tolerations = None;
            let inits = spec.init_containers.iter_mut().flatten();
            for c in spec.containers.iter_mut().chain(inits) {
                c.env = None;
                c.env_from = None;
                c.volume_mounts = None;
                c.command = None;
                c.args = None;
                c.resources = None;
                c.liveness_probe = None;
                c.readiness_probe = None;
                c.startup_probe = None;
                c.lifecycle = None;
                c.security_context = None;
            }
            spec.ephemeral_containers = None;
        }
        if let Some(status) = &mut self.status {
            let inits = status.init_container_statuses.iter_mut().flatten();
            for s in status.container_statuses.iter_mut().flatten().chain(inits) {
                s.state = None;
                s.last_state = None;
                s.volume_mounts = None;
            }
        }
    }
}

macro_rules! stored {
    ($t:ty, $field:ident) => {
        impl Stored for $t {
            fn map(store: &mut Store) -> &mut BTreeMap<Key, Self> {
                &mut store.$field
            }
        }
    };
}
stored!(Service, services);
stored!(Endpoints, endpoints);
stored!(EndpointSlice, endpointslices);
stored!(Ingress, ingresses);
stored!(Namespace, namespaces);

impl Stored for Node {
    fn map(store: &mut Store) -> &mut BTreeMap<Key, Self> {
        &mut store.nodes
    }
    fn slim(&mut self) {
        self.metadata.managed_fields = None;
        if let Some(s) = &mut self.status {
            // Image lists run to hundreds of entries per node.
            s.images = None;
            s.volumes_attached = None;
            s.volumes_in_use = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stored_pods_keep_what_roles_read_and_drop_the_rest() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "a", "namespace": "n", "annotations": {"k": "v"},
                "managedFields": [{"manager": "kubelet", "operation": "Update"}]},
            "spec": {"nodeName": "node-a", "volumes": [{"name": "v"}], "containers": [{
                "name": "app", "image": "app:1", "env": [{"name": "E", "value": "x"}],
                "ports": [{"containerPort": 9100}]}]},
            "status": {"podIP": "10.0.0.1"}
        }))
        .unwrap();
        let before = super::super::pod::group(&pod, &Store::default(), &Default::default());
        pod.slim();
        assert_eq!(pod.metadata.managed_fields, None);
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.volumes, None);
        assert_eq!(spec.containers[0].env, None);
        let after = super::super::pod::group(&pod, &Store::default(), &Default::default());
        assert_eq!(before, after, "slimming changes no label");
    }
}
