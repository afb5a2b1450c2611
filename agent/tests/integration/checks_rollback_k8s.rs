//! The Kubernetes rollback actions against a local fake API server that
//! serves real object shapes (Deployment, ReplicaSetList, Service) and
//! applies the patches the way the API server does (JSON patch, strategic
//! merge patch of a map).

use crate::fixtures;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use wasmon::config::hosts::HostPattern;
use wasmon::config::PluginsConfig;
use wasmon::plugins::bindings::types::RollbackRequest;
use wasmon::plugins::{CallError, Instance, PluginRuntime};
use wasmon::selfmetrics::Metrics;

#[derive(Default)]
struct Api {
    deployment: Value,
    replicasets: Vec<Value>,
    service: Value,
    /// (method, path?query, content-type, authorization, body)
    log: Vec<(String, String, String, String, String)>,
}

type Shared = Arc<Mutex<Api>>;

fn template(version: &str, hash: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "checkout", "version": version, "pod-template-hash": hash}},
        "spec": {"containers": [{"name": "app", "image": format!("shop/checkout:{version}"),
                                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}
    })
}

fn replicaset(rev: u32, version: &str, hash: &str, owner_uid: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {
            "name": format!("checkout-{hash}"), "namespace": "shop",
            "labels": {"app": "checkout", "pod-template-hash": hash},
            "annotations": {
                "deployment.kubernetes.io/revision": rev.to_string(),
                "deployment.kubernetes.io/desired-replicas": "3",
                "deployment.kubernetes.io/max-replicas": "4",
                "kubernetes.io/change-cause": format!("deploy {version}")
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout",
                                 "uid": owner_uid, "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "checkout", "pod-template-hash": hash}},
                 "template": template(version, hash)}
    })
}

fn fixtures(paused: bool) -> Api {
    let mut current = template("v3", "c3");
    current["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("pod-template-hash");
    Api {
        deployment: json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {
                "name": "checkout", "namespace": "shop", "uid": "uid-checkout", "generation": 3,
                "labels": {"app": "checkout"},
                "annotations": {
                    "deployment.kubernetes.io/revision": "3",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
                    "kubernetes.io/change-cause": "deploy v3"
                }
            },
            "spec": {"replicas": 3, "paused": paused, "selector": {"matchLabels": {"app": "checkout"}},
                     "strategy": {"type": "RollingUpdate"}, "template": current},
            "status": {"observedGeneration": 3, "replicas": 3}
        }),
        replicasets: vec![
            replicaset(1, "v1", "a1", "uid-checkout"),
            replicaset(3, "v3", "c3", "uid-checkout"),
            replicaset(2, "v2", "b2", "uid-checkout"),
            // Matches the selector but belongs to another Deployment.
            replicaset(7, "v9", "z9", "uid-other"),
        ],
        service: json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "checkout", "namespace": "shop"},
            "spec": {"type": "ClusterIP", "selector": {"app": "checkout", "version": "green"},
                     "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }),
        log: vec![],
    }
}

fn record(
    api: &mut Api,
    method: &Method,
    path: &str,
    q: &Option<String>,
    h: &HeaderMap,
    body: &Bytes,
) {
    let hv = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let full = match q {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    api.log.push((
        method.to_string(),
        full,
        hv("content-type"),
        hv("authorization"),
        String::from_utf8_lossy(body).into_owned(),
    ));
}

async fn deployment(
    State(api): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    q: RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let mut api = api.lock().unwrap();
    record(
        &mut api,
        &method,
        &format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
        &q.0,
        &h,
        &body,
    );
    if ns != "shop" || name != "checkout" {
        return (StatusCode::NOT_FOUND, Json(json!({"kind": "Status", "status": "Failure",
            "message": format!("deployments.apps \"{name}\" not found"), "reason": "NotFound", "code": 404}))).into_response();
    }
    if method == Method::PATCH {
        assert_eq!(h["content-type"], "application/json-patch+json");
        let ops: Vec<Value> = serde_json::from_slice(&body).unwrap();
        for op in ops {
            assert_eq!(op["op"], "replace");
            let ptr = op["path"].as_str().unwrap();
            *api.deployment.pointer_mut(ptr).expect("path exists") = op["value"].clone();
        }
        // What the controller does next: a new revision.
        api.deployment["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("4");
    }
    Json(api.deployment.clone()).into_response()
}

async fn replicasets(
    State(api): State<Shared>,
    Path(ns): Path<String>,
    q: RawQuery,
    h: HeaderMap,
) -> Json<Value> {
    let mut api = api.lock().unwrap();
    record(
        &mut api,
        &Method::GET,
        &format!("/apis/apps/v1/namespaces/{ns}/replicasets"),
        &q.0,
        &h,
        &Bytes::new(),
    );
    assert_eq!(q.0.as_deref(), Some("labelSelector=app%3Dcheckout"));
    Json(json!({"apiVersion": "apps/v1", "kind": "ReplicaSetList",
                "metadata": {"resourceVersion": "1234"}, "items": api.replicasets}))
}

async fn service(
    State(api): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    method: Method,
    h: HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let mut api = api.lock().unwrap();
    record(
        &mut api,
        &method,
        &format!("/api/v1/namespaces/{ns}/services/{name}"),
        &None,
        &h,
        &body,
    );
    if method == Method::PATCH {
        assert_eq!(h["content-type"], "application/strategic-merge-patch+json");
        let patch: Value = serde_json::from_slice(&body).unwrap();
        for (k, v) in patch["spec"]["selector"].as_object().unwrap() {
            api.service["spec"]["selector"][k] = v.clone();
        }
    }
    Json(api.service.clone())
}

async fn fake_api(api: Shared) -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(deployment).patch(deployment),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/replicasets",
            get(replicasets),
        )
        .route(
            "/api/v1/namespaces/{ns}/services/{name}",
            get(service).patch(service),
        )
        .with_state(api);
    fixtures::serve(app).await
}

async fn runtime() -> (tempfile::TempDir, Arc<PluginRuntime>) {
    let dir = tempfile::tempdir().unwrap();
    fixtures::copy_components(dir.path(), &["k8s-rollout-undo", "k8s-service-switch"]);
    let rt = PluginRuntime::new(
        &PluginsConfig::default(),
        dir.path().to_path_buf(),
        None,
        Arc::new(Metrics::new()),
    )
    .unwrap();
    assert_eq!(rt.load_all().await, (2, 0), "{:#?}", rt.list());
    (dir, rt)
}

fn instance(plugin: &str, config: Value, allow: &str) -> Instance {
    Instance {
        name: "undo".into(),
        plugin: plugin.into(),
        config_json: config.to_string().into(),
        allow: vec![HostPattern::parse(allow).unwrap()].into(),
        timeout: Duration::from_secs(10),
        memory_limit: 32 << 20,
        http: None,
    }
}

fn request(target: &str) -> RollbackRequest {
    RollbackRequest {
        rollout: "checkout".into(),
        target: target.into(),
        failed_version: "v3".into(),
        stable_version: "blue".into(),
        reason: "failed checks: error-rate=0.3".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_restores_the_previous_replicaset_template() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let api: Shared = Arc::new(Mutex::new(fixtures(false)));
    let addr = fake_api(api.clone()).await;
    let inst = instance(
        "k8s-rollout-undo",
        json!({"api_url": format!("http://{addr}"), "namespace": "shop", "token": "s3cret"}),
        &addr.to_string(),
    );
    let (out, _) = rt
        .rollback(&inst, &request("deployment/checkout"))
        .await
        .unwrap();
    assert_eq!(
        out.message,
        "deployment.apps/checkout rolled back to revision 2 (failed version v3)"
    );
    assert_eq!(out.current_version.as_deref(), Some("v2"));

    let api = api.lock().unwrap();
    let calls: Vec<(&str, &str)> = api
        .log
        .iter()
        .map(|c| (c.0.as_str(), c.1.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET", "/apis/apps/v1/namespaces/shop/deployments/checkout"),
            (
                "GET",
                "/apis/apps/v1/namespaces/shop/replicasets?labelSelector=app%3Dcheckout"
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/shop/deployments/checkout"
            ),
        ]
    );
    assert!(api.log.iter().all(|c| c.3 == "Bearer s3cret"));
    // The revision-2 template, without its pod-template-hash label.
    let t = &api.deployment["spec"]["template"];
    assert_eq!(
        t["metadata"]["labels"],
        json!({"app": "checkout", "version": "v2"})
    );
    assert_eq!(t["spec"]["containers"][0]["image"], "shop/checkout:v2");
    // Annotations as kubectl restores them: the Deployment's own bookkeeping
    // ones kept, the rest from the ReplicaSet.
    assert_eq!(
        api.deployment["metadata"]["annotations"],
        json!({
            "deployment.kubernetes.io/revision": "4",
            "kubectl.kubernetes.io/last-applied-configuration": "{\"kind\":\"Deployment\"}",
            "kubernetes.io/change-cause": "deploy v2"
        })
    );
    assert_eq!(
        api.deployment["spec"]["replicas"], 3,
        "nothing else touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_refuses_a_paused_deployment_and_unknown_revisions() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let api: Shared = Arc::new(Mutex::new(fixtures(true)));
    let addr = fake_api(api.clone()).await;
    let base = json!({"api_url": format!("http://{addr}"), "namespace": "shop"});
    let inst = instance("k8s-rollout-undo", base.clone(), &addr.to_string());
    let err = rt.rollback(&inst, &request("checkout")).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Permanent(m) if m.contains("cannot rollback a paused deployment")),
        "{err}"
    );
    api.lock().unwrap().deployment["spec"]["paused"] = json!(false);
    let mut cfg = base.clone();
    cfg["to_revision"] = json!(7); // belongs to another Deployment
    let inst = instance("k8s-rollout-undo", cfg, &addr.to_string());
    let err = rt.rollback(&inst, &request("checkout")).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Permanent(m) if m.contains("unable to find specified revision 7")),
        "{err}"
    );
    let mut cfg = base.clone();
    cfg["deployment"] = json!("cart");
    let inst = instance("k8s-rollout-undo", cfg, &addr.to_string());
    let err = rt.rollback(&inst, &request("")).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Permanent(m) if m.contains("HTTP 404") && m.contains("deployments.apps \"cart\" not found")),
        "{err}"
    );
    // Outside allow_hosts: denied by the sandbox, retryable.
    let inst = instance("k8s-rollout-undo", base, "kubernetes.default.svc");
    let err = rt.rollback(&inst, &request("checkout")).await.unwrap_err();
    assert!(err.to_string().contains("HTTP-request-denied"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_switch_patches_the_selector_to_the_stable_version() {
    let _heavy = fixtures::heavy();
    let (_dir, rt) = runtime().await;
    let api: Shared = Arc::new(Mutex::new(fixtures(false)));
    let addr = fake_api(api.clone()).await;
    let inst = instance(
        "k8s-service-switch",
        json!({"api_url": format!("http://{addr}"), "namespace": "shop", "token": "t0k"}),
        &addr.to_string(),
    );
    let (out, _) = rt
        .rollback(&inst, &request("service/checkout"))
        .await
        .unwrap();
    assert_eq!(
        out.message,
        "service/checkout patched: selector version=green -> blue"
    );
    assert_eq!(out.current_version.as_deref(), Some("blue"));
    {
        let api = api.lock().unwrap();
        assert_eq!(
            api.service["spec"]["selector"],
            json!({"app": "checkout", "version": "blue"})
        );
        let patch = &api.log[1];
        assert_eq!(patch.0, "PATCH");
        assert_eq!(
            serde_json::from_str::<Value>(&patch.4).unwrap(),
            json!({"spec": {"selector": {"version": "blue"}}})
        );
        assert_eq!(patch.3, "Bearer t0k");
    }
    // Idempotent: a second call changes nothing.
    let (out, _) = rt.rollback(&inst, &request("checkout")).await.unwrap();
    assert_eq!(out.message, "service/checkout already selects version=blue");
    assert_eq!(api.lock().unwrap().log.len(), 3);
}
