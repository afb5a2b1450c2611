//! `kubernetes_sd_configs` against the fake API server
//! ([`crate::fixtures::kube_api`]): pods appear, change and disappear; a
//! node-scoped watch; 410 Gone; 401/403/outage keeping the last good set;
//! token rotation; config errors naming the job.

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use wasmon::config::discovery::KubernetesSdConfig;
use wasmon::config::Config;
use wasmon::discovery::kubernetes::{self, client::InCluster, watch::Tuning};
use wasmon::discovery::{Provider, Status, StatusState};

use crate::fixtures::kube_api::{node, pod, KubeApi, Mode};

fn tuning() -> Tuning {
    Tuning {
        debounce: Duration::from_millis(50),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        watch_timeout: Duration::from_secs(30),
        page_size: 500,
        request_timeout: Duration::from_millis(500),
    }
}

/// The `kubernetes_sd_configs[0]` of a job whose TOML entry is `toml`.
fn sd_config(toml: &str) -> KubernetesSdConfig {
    let text = format!(
        "[[scrape_configs]]\njob_name = \"pods\"\n[[scrape_configs.kubernetes_sd_configs]]\n{toml}"
    );
    Config::parse(&text, "t.toml").unwrap().scrape_configs[0].kubernetes_sd_configs[0].clone()
}

fn start(sd: KubernetesSdConfig, base: &Path) -> Provider {
    let no_cluster = InCluster {
        host: None,
        port: None,
        dir: base.join("no-serviceaccount"),
    };
    kubernetes::start(
        "pods",
        sd,
        base.to_path_buf(),
        Status::new("kubernetes", 0),
        no_cluster,
        tuning(),
    )
}

/// The `__address__` of every published target, sorted.
fn addresses(p: &Provider) -> Vec<String> {
    let mut a: Vec<String> = p
        .groups
        .borrow()
        .iter()
        .flat_map(|g| g.label_sets())
        .map(|l| l["__address__"].clone())
        .collect();
    a.sort();
    a
}

/// Waits (bounded) until the published addresses are `want`.
async fn wait_addresses(p: &mut Provider, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if addresses(p) == want {
            return;
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, p.groups.changed())
            .await
            .is_err()
        {
            panic!(
                "addresses {:?}, want {want:?}; status {:?}",
                addresses(p),
                p.status.get()
            );
        }
    }
}

/// Waits (bounded) until the status satisfies `ok`.
async fn wait_status(p: &Provider, what: &str, ok: impl Fn(&StatusState) -> bool) -> StatusState {
    for _ in 0..200 {
        let s = p.status.get();
        if ok(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("status never {what}: {:?}", p.status.get());
}

/// A fake API with pod `default/a` at 10.1.0.1:9100, and a role `pod`
/// provider that has published it.
async fn watching_one_pod() -> (KubeApi, tempfile::TempDir, Provider) {
    let api = KubeApi::start(None).await;
    api.apply("pods", pod("default", "a", "node-a", "10.1.0.1", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(
        sd_config(&format!("role = \"pod\"\napi_server = \"{}\"\n", api.url())),
        dir.path(),
    );
    wait_addresses(&mut p, &["10.1.0.1:9100"]).await;
    (api, dir, p)
}

#[tokio::test]
async fn pods_appear_change_and_disappear_with_their_labels() {
    let api = KubeApi::start(None).await;
    api.apply(
        "pods",
        pod(
            "default",
            "a",
            "node-a",
            "10.1.0.1",
            json!({"prometheus.io/scrape": "true"}),
        ),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(
        sd_config(&format!("role = \"pod\"\napi_server = \"{}\"\n", api.url())),
        dir.path(),
    );
    wait_addresses(&mut p, &["10.1.0.1:9100"]).await;
    let s = wait_status(&p, "succeeded", |s| {
        s.last_error.is_none() && s.last_success.is_some()
    })
    .await;
    assert_eq!(s.targets, 1);
    {
        let groups = p.groups.borrow();
        assert_eq!(groups[0].source, "pod/default/a");
        let l = groups[0].label_sets().next().unwrap();
        for (k, v) in [
            ("__meta_kubernetes_namespace", "default"),
            ("__meta_kubernetes_pod_name", "a"),
            ("__meta_kubernetes_pod_node_name", "node-a"),
            (
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
                "true",
            ),
            (
                "__meta_kubernetes_pod_annotationpresent_prometheus_io_scrape",
                "true",
            ),
            ("__meta_kubernetes_pod_container_port_name", "metrics"),
            ("__meta_kubernetes_pod_ready", "true"),
            ("__meta_kubernetes_pod_phase", "Running"),
        ] {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "{k}");
        }
    }

    api.apply("pods", pod("default", "b", "node-b", "10.1.0.2", json!({})));
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.2:9100"]).await;
    // A changed pod IP moves its target.
    api.apply("pods", pod("default", "a", "node-a", "10.1.0.9", json!({})));
    wait_addresses(&mut p, &["10.1.0.2:9100", "10.1.0.9:9100"]).await;
    assert!(api.delete("pods", "default", "b"));
    wait_addresses(&mut p, &["10.1.0.9:9100"]).await;
    // Bookmarks move the resourceVersion and change nothing.
    api.bookmark();
    api.apply("pods", pod("other", "c", "node-a", "10.1.0.3", json!({})));
    wait_addresses(&mut p, &["10.1.0.3:9100", "10.1.0.9:9100"]).await;
}

#[tokio::test]
async fn a_node_scoped_watch_never_sees_other_nodes_pods() {
    let api = KubeApi::start(None).await;
    api.apply("pods", pod("default", "a", "node-a", "10.1.0.1", json!({})));
    api.apply("pods", pod("default", "b", "node-b", "10.1.0.2", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let sd = sd_config(&format!(
        "role = \"pod\"\napi_server = \"{}\"\n[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"pod\"\nfield = \"spec.nodeName=node-a\"\n",
        api.url()
    ));
    let mut p = start(sd, dir.path());
    wait_addresses(&mut p, &["10.1.0.1:9100"]).await;
    api.apply("pods", pod("default", "c", "node-b", "10.1.0.3", json!({})));
    api.apply("pods", pod("default", "d", "node-a", "10.1.0.4", json!({})));
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.4:9100"]).await;
    // The selector is on the requests: the server never sent node-b's pods.
    let reqs = api.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert!(r.contains("fieldSelector=spec.nodeName%3Dnode-a"), "{r}");
    }
}

#[tokio::test]
async fn gone_410_relists_and_loses_nothing() {
    let api = KubeApi::start(None).await;
    api.apply("pods", pod("default", "a", "node-a", "10.1.0.1", json!({})));
    api.apply("pods", pod("default", "b", "node-a", "10.1.0.2", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(
        sd_config(&format!("role = \"pod\"\napi_server = \"{}\"\n", api.url())),
        dir.path(),
    );
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.2:9100"]).await;
    let lists_before = api
        .requests()
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count();
    // Changes no watch sees, then a compacted history: only a re-list has them.
    api.compact_with(
        vec![("pods", pod("default", "c", "node-a", "10.1.0.3", json!({})))],
        vec![("pods", "default", "a")],
    );
    wait_addresses(&mut p, &["10.1.0.2:9100", "10.1.0.3:9100"]).await;
    let lists_after = api
        .requests()
        .iter()
        .filter(|r| !r.contains("watch=true"))
        .count();
    assert!(lists_after > lists_before, "a re-list after 410");
    assert_eq!(p.status.get().last_error, None, "410 is not an error");
    // And the watch goes on from the re-list.
    api.apply("pods", pod("default", "d", "node-a", "10.1.0.4", json!({})));
    wait_addresses(&mut p, &["10.1.0.2:9100", "10.1.0.3:9100", "10.1.0.4:9100"]).await;
}

#[tokio::test]
async fn forbidden_unauthorized_and_outage_keep_the_last_good_set_and_say_why() {
    let (api, _dir, mut p) = watching_one_pod().await;

    api.set_mode(Mode::Fail {
        code: 403,
        message: "pods is forbidden: User \"system:serviceaccount:monitoring:wasmon\" cannot list resource \"pods\" in API group \"\" at the cluster scope".into(),
    });
    let s = wait_status(&p, "forbidden", |s| s.last_error.is_some()).await;
    let why = s.last_error.unwrap();
    assert!(why.contains("403"), "{why}");
    assert!(why.contains("cannot list resource \"pods\""), "{why}");
    assert!(
        why.contains("give the ServiceAccount get/list/watch on pods"),
        "{why}"
    );
    assert_eq!(addresses(&p), ["10.1.0.1:9100"], "last good set kept");

    api.set_mode(Mode::Fail {
        code: 401,
        message: "Unauthorized".into(),
    });
    let s = wait_status(&p, "unauthorized", |s| {
        s.last_error.as_deref().is_some_and(|e| e.contains("401"))
    })
    .await;
    assert!(s.last_error.unwrap().contains("check the token"));
    assert_eq!(addresses(&p), ["10.1.0.1:9100"]);

    api.outage(true);
    let s = wait_status(&p, "outage", |s| {
        s.last_error.as_deref().is_some_and(|e| e.contains("503"))
    })
    .await;
    assert!(s.last_error.unwrap().contains("list pods"));
    assert_eq!(addresses(&p), ["10.1.0.1:9100"]);
    // Changes made during the outage arrive once it ends.
    api.apply("pods", pod("default", "b", "node-a", "10.1.0.2", json!({})));
    api.outage(false);
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.2:9100"]).await;
    wait_status(&p, "recovered", |s| s.last_error.is_none()).await;
}

#[tokio::test]
async fn a_rotated_token_file_is_used_by_the_next_request() {
    let api = KubeApi::start(Some("token-1")).await;
    api.apply("pods", pod("default", "a", "node-a", "10.1.0.1", json!({})));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-1\n").unwrap();
    let sd = sd_config(&format!(
        "role = \"pod\"\napi_server = \"{}\"\nbearer_token_file = \"token\"\n",
        api.url()
    ));
    let mut p = start(sd, dir.path());
    wait_addresses(&mut p, &["10.1.0.1:9100"]).await;

    std::fs::write(&token, "token-2\n").unwrap();
    api.set_token("token-2");
    let before = api.seen_auth().len();
    api.close_watches();
    api.apply("pods", pod("default", "b", "node-a", "10.1.0.2", json!({})));
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.2:9100"]).await;
    let after = api.seen_auth();
    assert_eq!(
        after[before], "Bearer token-2",
        "the request after rotation"
    );
    assert_eq!(p.status.get().last_error, None);
}

#[tokio::test]
async fn a_kubeconfig_that_does_not_parse_is_the_jobs_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kc.yaml"), "clusters: [this is: not: yaml").unwrap();
    let p = start(
        sd_config("role = \"pod\"\nkubeconfig_file = \"kc.yaml\"\n"),
        dir.path(),
    );
    let s = wait_status(&p, "failed", |s| s.last_error.is_some()).await;
    let why = s.last_error.unwrap();
    assert!(
        why.starts_with("job \"pods\": kubernetes_sd_configs[0]: kubeconfig_file "),
        "{why}"
    );
    assert!(why.contains("kc.yaml"), "{why}");
}

/// The same file fails the config at load (`wasmon check config`, a
/// reload), naming the job, before any discovery starts.
#[test]
fn a_kubeconfig_that_does_not_parse_fails_the_config_at_load() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kc.yaml"), "clusters: [this is: not: yaml").unwrap();
    let path = dir.path().join("wasmon.toml");
    std::fs::write(
        &path,
        "[[scrape_configs]]\njob_name = \"pods\"\n[[scrape_configs.kubernetes_sd_configs]]\nrole = \"pod\"\nkubeconfig_file = \"kc.yaml\"\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let err = wasmon::scrape::Job::from_config(&config.scrape_configs[0], &config).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.starts_with("job \"pods\": kubernetes_sd_configs[0]: kubeconfig_file ")
            && msg.contains("kc.yaml"),
        "{msg}"
    );
    std::fs::write(
        dir.path().join("kc.yaml"),
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .unwrap();
    wasmon::scrape::Job::from_config(&config.scrape_configs[0], &config).unwrap();
}

#[tokio::test]
async fn no_api_server_and_not_in_a_cluster_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(sd_config("role = \"node\"\n"), dir.path());
    let s = wait_status(&p, "failed", |s| s.last_error.is_some()).await;
    let why = s.last_error.unwrap();
    assert!(
        why.contains("job \"pods\"") && why.contains("KUBERNETES_SERVICE_HOST"),
        "{why}"
    );
}

#[test]
fn config_errors_name_the_job_and_what_to_fix() {
    let parse = |sd: &str| {
        let text = format!("[[scrape_configs]]\njob_name = \"pods\"\n[[scrape_configs.kubernetes_sd_configs]]\n{sd}");
        Config::parse(&text, "t.toml")
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let e = parse("role = \"pods\"\n");
    assert!(
        e.contains("unknown variant `pods`") && e.contains("endpointslice"),
        "{e}"
    );

    let e = format!("{:#}", Config::parse("[[scrape_configs]]\njob_name = \"pods\"\n[[scrape_configs.kubernetes_sd_configs]]\nrole = \"node\"\n[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"pod\"\nfield = \"spec.nodeName=x\"\n", "t.toml").unwrap_err());
    assert!(e.contains("job \"pods\": kubernetes_sd_configs[0]: selectors[0]: node role supports only node selectors, not pod"), "{e}");

    let e = parse("role = \"pod\"\napi_server = \"http://127.0.0.1:1\"\nkubeconfig_file = \"k\"\n");
    assert!(
        e.contains("cannot use 'kubeconfig_file' and 'api_server' simultaneously"),
        "{e}"
    );
    let e = parse("role = \"pod\"\nbearer_token = \"x\"\n");
    assert!(e.contains("provide the 'api_server' URL"), "{e}");
    let e = parse("role = \"pod\"\napi_server = \"http://127.0.0.1:1\"\n[scrape_configs.kubernetes_sd_configs.namespaces]\nown_namespace = true\n");
    assert!(
        e.contains("'api_server' and 'namespaces.own_namespace'"),
        "{e}"
    );
    let e = parse("role = \"pod\"\n[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"pod\"\nfield = \"=x\"\n");
    assert!(e.contains("selectors[0]: field \"=x\""), "{e}");
    let e = parse("role = \"endpoints\"\n[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"pod\"\n[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"pod\"\n");
    assert!(e.contains("duplicated selector role: pod"), "{e}");
    // What Prometheus allows stays allowed.
    let ok = "[[scrape_configs]]\njob_name = \"pods\"\n[[scrape_configs.kubernetes_sd_configs]]\nrole = \"pod\"\n[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"node\"\nlabel = \"a=b\"\n";
    Config::parse(ok, "t.toml").unwrap();
}

#[tokio::test]
async fn node_role_discovers_kubelets() {
    let api = KubeApi::start(None).await;
    api.apply("nodes", node("node-a", "10.0.0.1"));
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(
        sd_config(&format!(
            "role = \"node\"\napi_server = \"{}\"\n",
            api.url()
        )),
        dir.path(),
    );
    wait_addresses(&mut p, &["10.0.0.1:10250"]).await;
    api.apply("nodes", node("node-b", "10.0.0.2"));
    wait_addresses(&mut p, &["10.0.0.1:10250", "10.0.0.2:10250"]).await;
    let l = p
        .groups
        .borrow()
        .iter()
        .find(|g| g.source == "node/node-b")
        .unwrap()
        .label_sets()
        .next()
        .unwrap();
    assert_eq!(l["instance"], "node-b");
    assert_eq!(l["__meta_kubernetes_node_condition_ready"], "true");
}

/// A role `pod` provider with `own_namespace`, in a "cluster" whose API
/// is `api` and whose service account is `dir/serviceaccount`.
fn start_in_cluster(api: &KubeApi, dir: &Path) -> Provider {
    let incluster = InCluster {
        host: Some("127.0.0.1".into()),
        port: Some(api.addr.port().to_string()),
        dir: dir.join("serviceaccount"),
    };
    let sd = sd_config(
        "role = \"pod\"\n[scrape_configs.kubernetes_sd_configs.namespaces]\nown_namespace = true\n",
    );
    let base = dir.to_path_buf();
    kubernetes::start(
        "pods",
        sd,
        base,
        Status::new("kubernetes", 0),
        incluster,
        tuning(),
    )
}

#[tokio::test]
async fn in_cluster_uses_the_ca_the_rotated_token_and_own_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir(&sa).unwrap();
    let api = KubeApi::start_tls(Some("sa-1"), &sa).await;
    std::fs::write(sa.join("token"), "sa-1").unwrap();
    std::fs::write(sa.join("namespace"), "monitoring\n").unwrap();
    api.apply(
        "pods",
        pod("monitoring", "a", "node-a", "10.1.0.1", json!({})),
    );
    api.apply("pods", pod("default", "b", "node-a", "10.1.0.2", json!({})));
    let mut p = start_in_cluster(&api, dir.path());
    wait_addresses(&mut p, &["10.1.0.1:9100"]).await;
    assert!(
        api.requests()
            .iter()
            .all(|r| r.starts_with("/api/v1/namespaces/monitoring/pods")),
        "{:?}",
        api.requests()
    );

    // The kubelet rotates the projected token: the next request carries it.
    std::fs::write(sa.join("token"), "sa-2").unwrap();
    api.set_token("sa-2");
    let before = api.seen_auth().len();
    api.close_watches();
    api.apply(
        "pods",
        pod("monitoring", "c", "node-a", "10.1.0.3", json!({})),
    );
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.3:9100"]).await;
    assert_eq!(api.seen_auth()[before], "Bearer sa-2");
    assert_eq!(p.status.get().last_error, None);
}

#[tokio::test]
async fn a_hung_api_server_is_a_failure_not_a_hang() {
    let (api, _dir, mut p) = watching_one_pod().await;
    api.set_mode(Mode::Hang);
    let s = wait_status(&p, "timed out", |s| s.last_error.is_some()).await;
    assert!(s
        .last_error
        .unwrap()
        .contains("pods: no answer from the API server within 500ms"));
    assert_eq!(addresses(&p), ["10.1.0.1:9100"]);
    api.set_mode(Mode::Ok);
    api.apply("pods", pod("default", "b", "node-a", "10.1.0.2", json!({})));
    wait_addresses(&mut p, &["10.1.0.1:9100", "10.1.0.2:9100"]).await;
}

#[tokio::test]
async fn own_namespace_without_the_namespace_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sa = dir.path().join("serviceaccount");
    std::fs::create_dir(&sa).unwrap();
    let api = KubeApi::start_tls(None, &sa).await;
    std::fs::write(sa.join("token"), "t").unwrap();
    let p = start_in_cluster(&api, dir.path());
    let s = wait_status(&p, "failed", |s| s.last_error.is_some()).await;
    let why = s.last_error.unwrap();
    assert!(
        why.starts_with(
            "job \"pods\": kubernetes_sd_configs[0]: namespaces.own_namespace: reading "
        ),
        "{why}"
    );
    assert!(
        api.requests().is_empty(),
        "no namespace guessed: {:?}",
        api.requests()
    );
}

#[tokio::test]
async fn service_and_endpoints_roles_are_watched_and_published() {
    let api = KubeApi::start(None).await;
    api.apply(
        "services",
        json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10",
                "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
    );
    api.apply(
        "pods",
        pod("default", "web-1", "node-a", "10.1.0.1", json!({})),
    );
    api.apply(
        "endpoints",
        json!({"metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.1.0.1", "nodeName": "node-a",
                "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "default"}}],
                "ports": [{"name": "http", "port": 9100, "protocol": "TCP"}]}]}),
    );
    let dir = tempfile::tempdir().unwrap();
    let url = api.url();
    let mut svc = start(
        sd_config(&format!("role = \"service\"\napi_server = \"{url}\"\n")),
        dir.path(),
    );
    wait_addresses(&mut svc, &["web.default.svc:80"]).await;
    let mut eps = start(
        sd_config(&format!("role = \"endpoints\"\napi_server = \"{url}\"\n")),
        dir.path(),
    );
    wait_addresses(&mut eps, &["10.1.0.1:9100"]).await;
    let l = eps.groups.borrow()[0].label_sets().next().unwrap();
    // The endpoint's pod and service come from the other watches.
    assert_eq!(l["__meta_kubernetes_pod_name"], "web-1");
    assert_eq!(l["__meta_kubernetes_service_name"], "web");
}

/// Prometheus' own example Kubernetes config (prometheus-kubernetes.yml,
/// as wasmon TOML in examples/kubernetes/), pointed at the fake API: every
/// job loads and discovers the targets Prometheus would scrape, with the
/// labels its relabel rules make.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_example_config_discovers_every_job() {
    use std::collections::BTreeMap;
    use wasmon::model::labels::Labels;
    use wasmon::scrape::{Job, Target};

    let api = KubeApi::start(None).await;
    api.apply("nodes", node("n1", "10.0.0.1"));
    api.apply(
        "services",
        json!({"metadata": {"name": "kubernetes", "namespace": "default",
                "labels": {"component": "apiserver"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.1",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}),
    );
    api.apply(
        "endpoints",
        json!({"metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "10.0.0.9"}],
                "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}]}),
    );
    api.apply(
        "services",
        json!({"metadata": {"name": "cart", "namespace": "shop", "labels": {"tier": "backend"}},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20",
                "ports": [{"name": "metrics", "port": 8080, "protocol": "TCP"}]}}),
    );
    api.apply("pods", pod("shop", "cart-1", "n1", "10.1.0.5", json!({})));
    api.apply(
        "endpoints",
        json!({"metadata": {"name": "cart", "namespace": "shop"},
            "subsets": [{"addresses": [{"ip": "10.1.0.5", "nodeName": "n1",
                "targetRef": {"kind": "Pod", "name": "cart-1", "namespace": "shop"}}],
                "ports": [{"name": "metrics", "port": 9100, "protocol": "TCP"}]}]}),
    );
    api.apply(
        "ingresses",
        json!({"metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"rules": [{"host": "example.com", "http": {"paths": [{"path": "/",
                "pathType": "Prefix", "backend": {"service": {"name": "cart",
                "port": {"number": 8080}}}}]}}]}}),
    );

    // The service account's files, where the example expects them.
    let sa = tempfile::tempdir().unwrap();
    let pki = crate::fixtures::tls::Pki::new("cluster");
    std::fs::copy(&pki.ca_file, sa.path().join("ca.crt")).unwrap();
    std::fs::write(sa.path().join("token"), "t").unwrap();
    let example = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/kubernetes/prometheus-kubernetes.toml");
    let text = std::fs::read_to_string(&example)
        .unwrap()
        .replace(
            "role = \"",
            &format!("api_server = \"{}\"\nrole = \"", api.url()),
        )
        .replace(
            "/var/run/secrets/kubernetes.io/serviceaccount/",
            &format!("{}/", sa.path().display()),
        );
    let config = Config::parse(&text, &example.display().to_string()).unwrap();

    let mut got: BTreeMap<String, Vec<(String, Labels)>> = BTreeMap::new();
    for sc in &config.scrape_configs {
        let job = Job::from_config(sc, &config).unwrap();
        let providers = wasmon::discovery::start(sc, sa.path());
        assert_eq!(providers.len(), 1, "{}", job.name);
        let p = &providers[0];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while p.status.get().last_success.is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{}: {:?}",
                job.name,
                p.status.get()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut targets: Vec<(String, Labels)> = p
            .groups
            .borrow()
            .iter()
            .flat_map(|g| g.label_sets())
            .filter_map(|set| Target::populate(&job, Labels::from_pairs(set)).unwrap())
            .map(|t| (t.url, t.labels))
            .collect();
        targets.sort_by(|a, b| a.0.cmp(&b.0));
        got.insert(job.name.clone(), targets);
    }
    let urls = |job: &str| -> Vec<&str> { got[job].iter().map(|(u, _)| u.as_str()).collect() };
    let labels = |job: &str, i: usize| got[job][i].1.clone();

    assert_eq!(
        urls("kubernetes-apiservers"),
        ["https://10.0.0.9:6443/metrics"]
    );
    assert_eq!(urls("kubernetes-nodes"), ["https://10.0.0.1:10250/metrics"]);
    assert_eq!(
        labels("kubernetes-nodes", 0),
        Labels::from_pairs([
            ("instance", "n1"),
            ("job", "kubernetes-nodes"),
            ("kubernetes_io_hostname", "n1"),
        ])
    );
    assert_eq!(
        urls("kubernetes-cadvisor"),
        ["https://10.0.0.1:10250/metrics/cadvisor"]
    );
    assert_eq!(
        urls("kubernetes-service-endpoints"),
        [
            "http://10.0.0.9:6443/metrics",
            "http://10.1.0.5:9100/metrics"
        ]
    );
    assert_eq!(
        labels("kubernetes-service-endpoints", 1),
        Labels::from_pairs([
            ("instance", "10.1.0.5:9100"),
            ("job", "kubernetes-service-endpoints"),
            ("namespace", "shop"),
            ("service", "cart"),
            ("tier", "backend"),
        ])
    );
    assert_eq!(
        urls("kubernetes-services"),
        [
            "http://blackbox-exporter.example.com:9115/probe?module=http_2xx&target=cart.shop.svc%3A8080",
            "http://blackbox-exporter.example.com:9115/probe?module=http_2xx&target=kubernetes.default.svc%3A443",
        ]
    );
    assert_eq!(
        labels("kubernetes-services", 0),
        Labels::from_pairs([
            ("instance", "cart.shop.svc:8080"),
            ("job", "kubernetes-services"),
            ("namespace", "shop"),
            ("service", "cart"),
            ("tier", "backend"),
        ])
    );
    assert_eq!(
        urls("kubernetes-ingresses"),
        ["http://blackbox-exporter.example.com:9115/probe?module=http_2xx&target=http%3A%2F%2Fexample.com%2F"]
    );
    assert_eq!(
        labels("kubernetes-ingresses", 0),
        Labels::from_pairs([
            ("app", "web"),
            ("ingress", "web"),
            ("instance", "http://example.com/"),
            ("job", "kubernetes-ingresses"),
            ("namespace", "shop"),
        ])
    );
    assert_eq!(urls("kubernetes-pods"), ["http://10.1.0.5:9100/metrics"]);
    assert_eq!(
        labels("kubernetes-pods", 0),
        Labels::from_pairs([
            ("app", "cart-1"),
            ("instance", "10.1.0.5:9100"),
            ("job", "kubernetes-pods"),
            ("namespace", "shop"),
            ("pod", "cart-1"),
        ])
    );
}
