//! Kubernetes discovery alone at 1k, 5k and 20k pods (~110 pods a node, a
//! kubelet's default maximum), role `pod` in two setups: a node agent
//! (field selector `spec.nodeName=node-0`, ~110 pods) and cluster-wide (no
//! selector, every pod). Per case: the memory discovery holds (jemalloc
//! `allocated` and RSS deltas), the CPU time and wall time from start to
//! the first complete publish, and under churn (pods created and deleted
//! every second for 10 s) the CPU per second and the lag from an API change
//! to the publish that has it. Then the scrape manager's sync on the
//! published groups of the largest cluster-wide case, with ~1% of the
//! targets kept by a relabel `keep`.
//!
//! The fake API server (`fixtures::kube_api`) runs in a child process (this
//! binary re-run with `--serve`), so its CPU and memory are not counted:
//! `getrusage(RUSAGE_SELF)` and the allocator figures are this process's.
//! Prints figures; asserts nothing about speed.
//!
//! `cargo bench -p wasmon --bench discovery` (`--quick` after `--`, or
//! `WASMON_BENCH_QUICK=1`: 1k pods only).

#[path = "../tests/integration/fixtures/mod.rs"]
#[allow(unused_imports)]
mod fixtures;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use wasmon::config::discovery::KubernetesSdConfig;
use wasmon::config::Config;
use wasmon::discovery::kubernetes::{self, client::InCluster, watch::Tuning};
use wasmon::discovery::{Groups, Status};
use wasmon::model::labels::Labels;
use wasmon::scrape::manager::DetachedPool;
use wasmon::scrape::target::Job;
use wasmon::selfmetrics::{allocator_stats, resident_memory_bytes};

// The agent's allocator and settings (agent/src/main.rs), so that the
// memory figures are the agent's.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:250,muzzy_decay_ms:0\0";

/// Pods a node holds (a kubelet's default `maxPods`).
const PODS_PER_NODE: usize = 110;
/// Churn: pods created (and as many deleted) each second, and for how long.
const CHURN_PER_SEC: usize = 10;
const CHURN_SECS: u64 = 10;
/// The node the node-agent setup watches.
const NODE: &str = "node-0";

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

// ---- realistic pod objects -------------------------------------------------

/// Whether pod `i` is one the relabel `keep` scrapes (~1%).
fn scraped(i: usize) -> bool {
    i % 100 == 7
}

fn node_of(i: usize) -> String {
    format!("node-{}", i / PODS_PER_NODE)
}

/// A Deployment's running pod as an API server returns it: labels,
/// annotations, an owner, managedFields of two managers, two containers
/// with ports, env, probes and mounts, four volumes, full status.
fn real_pod(i: usize, name: &str, node: &str) -> Value {
    let app = format!("service-{}", i % 40);
    let ns = format!("team-{}", i % 12);
    let hash = "7d9f8b6c5";
    let uid = format!("{:08x}-1b2c-4d3e-8f90-{:012x}", i, i * 7919);
    // ~1% are scraped: those have loopback IPs (the bench's targets never
    // leave 127.0.0.1), the rest pod-network ones.
    let ip = if scraped(i) {
        "127.0.0.1".to_string()
    } else {
        format!("10.244.{}.{}", i / 250 % 250, i % 250 + 2)
    };
    let ts = "2026-11-30T08:14:22Z";
    let mut annotations = json!({
        "kubectl.kubernetes.io/restartedAt": "2026-11-30T08:14:00Z",
        "checksum/config": format!("{:064x}", i as u128 * 0x9e3779b97f4a7c15),
        "prometheus.io/port": "9100",
        "prometheus.io/path": "/metrics",
    });
    if scraped(i) {
        annotations["prometheus.io/scrape"] = json!("true");
    }
    json!({
        "metadata": {
            "name": name, "generateName": format!("{app}-{hash}-"), "namespace": ns,
            "uid": uid, "creationTimestamp": ts,
            "labels": {"app": app, "pod-template-hash": hash,
                "app.kubernetes.io/name": app, "app.kubernetes.io/instance": format!("{app}-prod"),
                "app.kubernetes.io/version": "1.24.3", "team": ns},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "name": format!("{app}-{hash}"), "uid": "0c7e1f8a-5b2d-4c61-9e0f-3a4b5c6d7e8f",
                "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                 "time": ts, "fieldsType": "FieldsV1", "fieldsV1": {
                    "f:metadata": {"f:annotations": {".": {}, "f:checksum/config": {},
                        "f:kubectl.kubernetes.io/restartedAt": {}, "f:prometheus.io/port": {}},
                        "f:generateName": {}, "f:labels": {".": {}, "f:app": {},
                        "f:pod-template-hash": {}, "f:team": {}},
                        "f:ownerReferences": {".": {}, "k:{\"uid\":\"0c7e1f8a-5b2d-4c61-9e0f-3a4b5c6d7e8f\"}": {}}},
                    "f:spec": {"f:containers": {
                        "k:{\"name\":\"app\"}": {".": {}, "f:env": {".": {}, "k:{\"name\":\"POD_NAME\"}": {".": {}, "f:name": {}, "f:valueFrom": {}}},
                            "f:image": {}, "f:imagePullPolicy": {}, "f:livenessProbe": {}, "f:name": {},
                            "f:ports": {".": {}, "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}": {}, "k:{\"containerPort\":9100,\"protocol\":\"TCP\"}": {}},
                            "f:readinessProbe": {}, "f:resources": {}, "f:volumeMounts": {}},
                        "k:{\"name\":\"proxy\"}": {".": {}, "f:image": {}, "f:name": {}, "f:ports": {}}},
                        "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                        "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
                        "f:volumes": {".": {}, "k:{\"name\":\"config\"}": {}, "k:{\"name\":\"tls\"}": {}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": ts,
                 "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {
                    "f:status": {"f:conditions": {"k:{\"type\":\"ContainersReady\"}": {".": {}, "f:status": {}, "f:type": {}},
                        "k:{\"type\":\"Initialized\"}": {".": {}, "f:status": {}, "f:type": {}},
                        "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}},
                        "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
                        "f:podIPs": {".": {}, "k:{\"ip\":\"10.244.0.2\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}}}}
            ]
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": format!("{app}-config"), "defaultMode": 420}},
                {"name": "tls", "secret": {"secretName": format!("{app}-tls"), "defaultMode": 420}},
                {"name": "podinfo", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.labels"}}], "defaultMode": 420}},
                {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
            ],
            "containers": [
                {"name": "app", "image": format!("registry.example.com/{ns}/{app}:1.24.3"),
                 "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"},
                           {"name": "metrics", "containerPort": 9100, "protocol": "TCP"}],
                 "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}},
                         {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                         {"name": "LOG_LEVEL", "value": "info"},
                         {"name": "GOMAXPROCS", "value": "2"},
                         {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": format!("{app}-db"), "key": "url"}}}],
                 "resources": {"limits": {"cpu": "1", "memory": "512Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}},
                 "volumeMounts": [{"name": "config", "mountPath": "/etc/app"},
                                  {"name": "tls", "mountPath": "/etc/tls", "readOnly": true},
                                  {"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                 "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 10, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
                 "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 5, "successThreshold": 1, "failureThreshold": 3},
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"},
                {"name": "proxy", "image": "registry.example.com/mesh/proxy:1.21.0",
                 "args": ["proxy", "sidecar", "--concurrency", "2"],
                 "ports": [{"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}],
                 "env": [{"name": "ISTIO_META_WORKLOAD_NAME", "value": app},
                         {"name": "PROXY_CONFIG", "value": "{\"holdApplicationUntilProxyStarts\":true}"}],
                 "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "10m", "memory": "40Mi"}},
                 "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                 "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}
            ],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": app, "serviceAccount": app, "nodeName": node,
            "securityContext": {"runAsNonRoot": true, "fsGroup": 2000}, "schedulerName": "default-scheduler",
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true, "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "Initialized", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts},
                {"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts},
                {"type": "ContainersReady", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts},
                {"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": ts}
            ],
            "hostIP": format!("10.0.{}.{}", i / PODS_PER_NODE / 250, i / PODS_PER_NODE % 250 + 1),
            "podIP": ip, "podIPs": [{"ip": ip}], "startTime": ts,
            "containerStatuses": [
                {"name": "app", "state": {"running": {"startedAt": ts}}, "lastState": {}, "ready": true,
                 "restartCount": 0, "image": format!("registry.example.com/{ns}/{app}:1.24.3"),
                 "imageID": format!("registry.example.com/{ns}/{app}@sha256:{:064x}", i % 40),
                 "containerID": format!("containerd://{:064x}", i as u128 * 31 + 1), "started": true},
                {"name": "proxy", "state": {"running": {"startedAt": ts}}, "lastState": {}, "ready": true,
                 "restartCount": 0, "image": "registry.example.com/mesh/proxy:1.21.0",
                 "imageID": format!("registry.example.com/mesh/proxy@sha256:{:064x}", 7),
                 "containerID": format!("containerd://{:064x}", i as u128 * 31 + 2), "started": true}
            ],
            "qosClass": "Burstable"
        }
    })
}

fn pod_name(i: usize) -> String {
    format!("service-{}-7d9f8b6c5-{:05x}", i % 40, i * 7919 % 0xfffff)
}

// ---- the child: the fake API server ---------------------------------------

/// `--serve`: the fake API server. Prints `addr <host:port>`, then answers
/// stdin commands: `populate N` (prints `ok <bytes per pod>`) and
/// `churn` (prints `ev <unix ns> add|del <source> <node>` per change, then
/// `done`).
fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let api = fixtures::kube_api::KubeApi::start(None).await;
        let mut out = std::io::stdout().lock();
        writeln!(out, "addr {}", api.addr).unwrap();
        out.flush().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut next = 0usize;
        let mut populated = 1usize;
        // Original pods deleted so far (each churn deletes new ones).
        let mut orig = 0usize;
        while let Some(cmd) = rx.recv().await {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            match words.as_slice() {
                ["populate", n] => {
                    let n: usize = n.parse().unwrap();
                    let mut bytes = 0;
                    for i in 0..n {
                        let p = real_pod(i, &pod_name(i), &node_of(i));
                        bytes += p.to_string().len();
                        api.apply("pods", p);
                    }
                    next = n;
                    populated = n.max(1);
                    writeln!(out, "ok {}", bytes / n.max(1)).unwrap();
                }
                ["churn"] => {
                    // Each second: CHURN_PER_SEC new pods (half on the
                    // watched node), and as many deleted: the ones made
                    // three seconds before (longer than the debounce), or
                    // original pods in the first three seconds.
                    let mut batches: std::collections::VecDeque<Vec<(String, String, String)>> =
                        Default::default();
                    let mut tick = tokio::time::interval(Duration::from_secs(1));
                    let change = |add: bool, p: Value, out: &mut std::io::StdoutLock| {
                        let ns = p["metadata"]["namespace"].as_str().unwrap().to_string();
                        let name = p["metadata"]["name"].as_str().unwrap().to_string();
                        let node = p["spec"]["nodeName"].as_str().unwrap().to_string();
                        let at = unix_nanos();
                        let done = if add {
                            api.apply("pods", p);
                            true
                        } else {
                            api.delete("pods", &ns, &name)
                        };
                        if done {
                            let what = if add { "add" } else { "del" };
                            writeln!(out, "ev {at} {what} pod/{ns}/{name} {node}").unwrap();
                        }
                        (ns, name, node)
                    };
                    for _ in 0..CHURN_SECS {
                        tick.tick().await;
                        let mut created = Vec::new();
                        for k in 0..CHURN_PER_SEC {
                            let i = next;
                            next += 1;
                            let node = if k.is_multiple_of(2) {
                                NODE.to_string()
                            } else {
                                node_of(i * 7919 % populated)
                            };
                            let p = real_pod(i, &format!("churn-{i:06}"), &node);
                            created.push(change(true, p, &mut out));
                        }
                        batches.push_back(created);
                        if batches.len() > 3 {
                            for (ns, name, node) in batches.pop_front().unwrap() {
                                let p = json!({"metadata": {"namespace": ns, "name": name},
                                    "spec": {"nodeName": node}});
                                change(false, p, &mut out);
                            }
                        } else {
                            for _ in 0..CHURN_PER_SEC {
                                orig += 1;
                                // Original pods, every fifth on the watched node.
                                let i = if orig.is_multiple_of(5) {
                                    orig / 5
                                } else {
                                    orig * 53 % populated
                                };
                                change(false, real_pod(i, &pod_name(i), &node_of(i)), &mut out);
                            }
                        }
                        out.flush().unwrap();
                    }
                    // Deletes the rest of the churn pods (after the last
                    // batch has been published: a pod gone within the
                    // debounce never is): the cluster is as large as
                    // before, less the original pods deleted.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    for (ns, name, node) in batches.into_iter().flatten() {
                        let p = json!({"metadata": {"namespace": ns, "name": name},
                            "spec": {"nodeName": node}});
                        change(false, p, &mut out);
                    }
                    writeln!(out, "done").unwrap();
                }
                _ => writeln!(out, "error unknown command {cmd:?}").unwrap(),
            }
            out.flush().unwrap();
        }
    });
}

/// The fake API server in a child process.
struct Server {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    addr: String,
    /// Pods in the cluster, and on [`NODE`], as the churn left them.
    pods: usize,
    on_node: usize,
}

impl Server {
    fn start() -> Server {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines() {
                let Ok(l) = l else { return };
                if tx.send(l).is_err() {
                    return;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(30)).unwrap();
        let addr = first.strip_prefix("addr ").unwrap().to_string();
        Server {
            child,
            stdin,
            lines,
            addr,
            pods: 0,
            on_node: 0,
        }
    }

    fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&self) -> String {
        self.lines.recv_timeout(Duration::from_secs(120)).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- measuring -------------------------------------------------------------

/// User + system CPU time of this process (every thread).
fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the rusage it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Bytes held by live objects, and the RSS, after letting jemalloc's
/// background thread return freed pages (250 ms decay).
fn memory() -> (u64, u64) {
    std::thread::sleep(Duration::from_millis(1000));
    let alloc = allocator_stats().map(|s| s.allocated).unwrap_or(0);
    (alloc, resident_memory_bytes().unwrap_or(0))
}

fn sd_config(api: &str, node: Option<&str>) -> KubernetesSdConfig {
    let mut toml = format!(
        "[[scrape_configs]]\njob_name = \"pods\"\n[[scrape_configs.kubernetes_sd_configs]]\nrole = \"pod\"\napi_server = \"http://{api}\"\n"
    );
    if let Some(n) = node {
        toml.push_str(&format!(
            "[[scrape_configs.kubernetes_sd_configs.selectors]]\nrole = \"pod\"\nfield = \"spec.nodeName={n}\"\n"
        ));
    }
    Config::parse(&toml, "bench.toml").unwrap().scrape_configs[0].kubernetes_sd_configs[0].clone()
}

struct CaseResult {
    groups: usize,
    targets: usize,
    alloc_delta: i64,
    rss_delta: i64,
    first_cpu: Duration,
    first_wall: Duration,
    churn_cpu_per_sec: Duration,
    lag_p50: Option<Duration>,
    lag_max: Option<Duration>,
    changes: usize,
    missed: usize,
    publishes: usize,
    last: Groups,
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[i])
}

fn run_case(server: &mut Server, node: Option<&str>) -> CaseResult {
    let expected = match node {
        Some(_) => server.on_node,
        None => server.pods,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (alloc0, rss0) = memory();
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let sd = sd_config(&server.addr, node);
    let mut provider = rt.block_on(async {
        kubernetes::start(
            "pods",
            sd,
            dir.path().to_path_buf(),
            Status::new("kubernetes", 0),
            InCluster {
                host: None,
                port: None,
                dir: dir.path().join("no-serviceaccount"),
            },
            Tuning::default(),
        )
    });
    // The first publish that holds every pod.
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while provider.groups.borrow_and_update().len() != expected {
            tokio::time::timeout_at(deadline, provider.groups.changed())
                .await
                .expect("the first publish within 120 s")
                .unwrap();
        }
    });
    let (first_wall, first_cpu) = (t0.elapsed(), cpu_time() - cpu0);
    let (alloc1, rss1) = memory();
    let first: Groups = provider.groups.borrow().clone();
    let targets = first.iter().map(|g| g.targets.len()).sum();

    // Churn: every publish is kept (an Arc) with when it was seen.
    server.send("churn");
    let cpu_c0 = cpu_time();
    let tc0 = Instant::now();
    let mut seen: Vec<(u128, Groups)> = Vec::new();
    let mut events: Vec<(u128, bool, String, String)> = Vec::new();
    rt.block_on(async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(CHURN_SECS + 30);
        let mut done_at: Option<tokio::time::Instant> = None;
        loop {
            while let Ok(l) = server.lines.try_recv() {
                if l == "done" {
                    // Waits for the last changes' publish (debounce 1 s).
                    done_at = Some(tokio::time::Instant::now() + Duration::from_secs(3));
                } else if let Some(rest) = l.strip_prefix("ev ") {
                    let w: Vec<&str> = rest.split(' ').collect();
                    events.push((
                        w[0].parse().unwrap(),
                        w[1] == "add",
                        w[2].into(),
                        w[3].into(),
                    ));
                }
            }
            let until = done_at.unwrap_or(deadline).min(deadline);
            let tick = (tokio::time::Instant::now() + Duration::from_millis(50)).min(until);
            match tokio::time::timeout_at(tick, provider.groups.changed()).await {
                Ok(r) => {
                    r.unwrap();
                    let g = provider.groups.borrow_and_update().clone();
                    seen.push((unix_nanos(), g));
                }
                Err(_) if tokio::time::Instant::now() >= until => break,
                Err(_) => {}
            }
        }
    });
    let churn_wall = tc0.elapsed();
    for (_, add, _, n) in &events {
        let d = |c: &mut usize| if *add { *c += 1 } else { *c -= 1 };
        d(&mut server.pods);
        if n == NODE {
            d(&mut server.on_node);
        }
    }
    let churn_cpu = cpu_time() - cpu_c0;
    let last = provider.groups.borrow().clone();
    drop(provider);
    rt.shutdown_timeout(Duration::from_secs(5));

    // Lag: from each change the watch sees to the first publish having it.
    let sets: Vec<(u128, HashSet<&str>)> = seen
        .iter()
        .map(|(t, g)| (*t, g.iter().map(|x| x.source.as_str()).collect()))
        .collect();
    let mut lags = Vec::new();
    let mut missed = 0;
    let relevant = events
        .iter()
        .filter(|(_, _, _, n)| node.is_none_or(|want| n == want));
    let mut changes = 0;
    for (at, add, source, _) in relevant {
        changes += 1;
        match sets
            .iter()
            .find(|(t, s)| t >= at && s.contains(source.as_str()) == *add)
        {
            Some((t, _)) => lags.push(Duration::from_nanos((t - at) as u64)),
            None => missed += 1,
        }
    }
    lags.sort();
    CaseResult {
        groups: first.len(),
        targets,
        alloc_delta: alloc1 as i64 - alloc0 as i64,
        rss_delta: rss1 as i64 - rss0 as i64,
        first_cpu,
        first_wall,
        churn_cpu_per_sec: churn_cpu.div_f64(churn_wall.as_secs_f64()),
        lag_p50: percentile(&lags, 0.5),
        lag_max: lags.last().copied(),
        changes,
        missed,
        publishes: seen.len(),
        last,
    }
}

/// The scrape manager's sync on `groups` (the job keeps pods annotated
/// `prometheus.io/scrape: "true"`): the first sync (loops started) and a
/// re-sync of the same set (what each churn publish costs).
fn bench_sync(groups: &Groups) {
    let text = "[[scrape_configs]]\njob_name = \"pods\"\nscrape_interval = \"1h\"\n\
        [[scrape_configs.relabel_configs]]\n\
        source_labels = [\"__meta_kubernetes_pod_annotation_prometheus_io_scrape\"]\n\
        regex = \"true\"\naction = \"keep\"\n";
    let config = Config::parse(text, "bench.toml").unwrap();
    let job = Arc::new(Job::from_config(&config.scrape_configs[0], &config).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let pool = DetachedPool::new(job, Arc::new(wasmon::storage::memory::MemStorage::new()));
    // As the pool's sync task does on every publish: groups to label sets.
    let discovered = |g: &Groups| -> Vec<Labels> {
        g.iter()
            .flat_map(|g| g.label_sets().map(Labels::from_pairs))
            .collect()
    };
    let n: usize = groups.iter().map(|g| g.targets.len()).sum();
    let t = Instant::now();
    let kept = pool.sync(discovered(groups));
    let first = t.elapsed();
    let runs = 5;
    let t = Instant::now();
    for _ in 0..runs {
        pool.sync(discovered(groups));
    }
    let resync = t.elapsed() / runs;
    // Only the sync itself, with the label sets already built.
    let sets: Vec<Vec<Labels>> = (0..runs).map(|_| discovered(groups)).collect();
    let t = Instant::now();
    for s in sets {
        pool.sync(s);
    }
    let sync_only = t.elapsed() / runs;
    pool.stop();
    println!(
        "scrape sync on {n} discovered targets ({kept} kept by the relabel keep): \
         first {:.1} ms, re-sync {:.1} ms (of which label-set building {:.1} ms, sync {:.1} ms); \
         {:.2} us per target",
        ms(first),
        ms(resync),
        ms(resync.saturating_sub(sync_only)),
        ms(sync_only),
        resync.as_secs_f64() * 1e6 / n.max(1) as f64,
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(b: i64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        serve();
        return;
    }
    let quick = args.iter().any(|a| a == "--quick")
        || std::env::var("WASMON_BENCH_QUICK").is_ok_and(|v| v == "1");
    let sizes: &[usize] = if quick { &[1000] } else { &[1000, 5000, 20000] };
    println!(
        "Kubernetes pod discovery (role pod, default tuning: 1 s debounce, 500-object pages); \
         fake API server in a child process; churn: {CHURN_PER_SEC} pods created and \
         {CHURN_PER_SEC} deleted a second for {CHURN_SECS} s (half on {NODE})"
    );
    println!(
        "| pods | setup | groups / targets | allocated Δ | per pod held | RSS Δ | first publish CPU / wall | churn CPU/s | lag p50 / max (changes, publishes) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut largest: Option<Groups> = None;
    for &pods in sizes {
        let mut server = Server::start();
        server.send(&format!("populate {pods}"));
        let ok = server.recv();
        let bytes: usize = ok.strip_prefix("ok ").unwrap().parse().unwrap();
        server.pods = pods;
        server.on_node = (0..pods).filter(|&i| node_of(i) == NODE).count();
        let mut node_agent: Option<(i64, usize)> = None;
        for node in [Some(NODE), None] {
            let r = run_case(&mut server, node);
            let setup = if node.is_some() {
                "node agent"
            } else {
                "cluster-wide"
            };
            let lag =
                |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.0} ms", ms(d)));
            println!(
                "| {pods} | {setup} | {} / {} | {:.2} MiB | {} B | {:.2} MiB | {:.0} ms / {:.0} ms | {:.1} ms | {} / {} ({}{}, {}) |",
                r.groups,
                r.targets,
                mib(r.alloc_delta),
                r.alloc_delta / r.groups.max(1) as i64,
                mib(r.rss_delta),
                ms(r.first_cpu),
                ms(r.first_wall),
                ms(r.churn_cpu_per_sec),
                lag(r.lag_p50),
                lag(r.lag_max),
                r.changes,
                if r.missed > 0 { format!(", {} never published", r.missed) } else { String::new() },
                r.publishes,
            );
            match (node, node_agent) {
                (Some(_), _) => node_agent = Some((r.alloc_delta, r.groups)),
                (None, Some((a, g))) => {
                    println!(
                        "| {pods} | per pod, cluster-wide less node agent (fixed costs cancel) | | | {} B | | | | |",
                        (r.alloc_delta - a) / (r.groups as i64 - g as i64).max(1)
                    );
                    largest = Some(r.last);
                }
                (None, None) => largest = Some(r.last),
            }
        }
        println!("(pod JSON as the API server sends it: {bytes} B a pod)");
    }
    if let Some(groups) = largest {
        bench_sync(&groups);
    }
}
