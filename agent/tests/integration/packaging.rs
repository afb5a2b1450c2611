//! The deployment files under deploy/ and the Dockerfile are checked against
//! the agent itself: every embedded config and rule file must load, and the
//! manifests must wire what the agent needs (the config path it is started
//! with, writable storage and plugin dirs, the port its config listens on,
//! the health endpoints it serves). No cluster is needed: the manifests are
//! parsed as YAML and cross-checked.

use serde_norway::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use wasmon::config::discovery::{KubernetesRole, KubernetesSdConfig};
use wasmon::config::Config;
use wasmon::rules::rulefmt;

use crate::fixtures;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_norway::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d)
                .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", path.display()))
        })
        .collect()
}

fn s<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    get(v, path).and_then(Value::as_str)
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn seq<'a>(v: &'a Value, path: &[&str]) -> Vec<&'a Value> {
    get(v, path)
        .and_then(Value::as_sequence)
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit(':').next().unwrap().parse().unwrap()
}

/// Which mount (of which volume) a path inside the container falls under.
fn mount_for<'a>(container: &'a Value, path: &str) -> Option<&'a Value> {
    seq(container, &["volumeMounts"])
        .into_iter()
        .filter(|m| {
            let mp = s(m, &["mountPath"]).unwrap();
            path == mp || path.starts_with(&format!("{}/", mp.trim_end_matches('/')))
        })
        .max_by_key(|m| s(m, &["mountPath"]).unwrap().len())
}

fn check_manifest(file: &str) -> usize {
    let path = repo().join("deploy/kubernetes").join(file);
    let docs = docs(&path);
    assert!(!docs.is_empty(), "{file}: no documents");
    let mut config_maps: BTreeMap<String, &Value> = BTreeMap::new();
    for d in &docs {
        for key in ["apiVersion", "kind"] {
            assert!(s(d, &[key]).is_some(), "{file}: a document lacks {key}");
        }
        assert!(
            s(d, &["metadata", "name"]).is_some(),
            "{file}: {:?} lacks metadata.name",
            s(d, &["kind"])
        );
        if s(d, &["kind"]) == Some("ConfigMap") {
            config_maps.insert(s(d, &["metadata", "name"]).unwrap().to_string(), d);
        }
    }
    let mut workloads = 0;
    for d in docs
        .iter()
        .filter(|d| matches!(s(d, &["kind"]), Some("Deployment" | "DaemonSet")))
    {
        workloads += 1;
        let name = s(d, &["metadata", "name"]).unwrap();
        let ctx = format!("{file}: {name}");
        let selector = get(d, &["spec", "selector", "matchLabels"])
            .and_then(Value::as_mapping)
            .unwrap();
        let labels = get(d, &["spec", "template", "metadata", "labels"])
            .and_then(Value::as_mapping)
            .unwrap();
        for (k, v) in selector {
            assert_eq!(
                labels.get(k),
                Some(v),
                "{ctx}: selector {k:?} not in the pod labels"
            );
        }
        let pod = get(d, &["spec", "template", "spec"]).unwrap();
        let volumes: BTreeMap<&str, &Value> = seq(pod, &["volumes"])
            .into_iter()
            .map(|v| (s(v, &["name"]).unwrap(), v))
            .collect();
        let all: Vec<&Value> = seq(pod, &["containers"])
            .into_iter()
            .chain(seq(pod, &["initContainers"]))
            .collect();
        for c in &all {
            for m in seq(c, &["volumeMounts"]) {
                let v = s(m, &["name"]).unwrap();
                assert!(
                    volumes.contains_key(v),
                    "{ctx}: mount of undefined volume {v}"
                );
            }
        }
        let wasmon = seq(pod, &["containers"])
            .into_iter()
            .find(|c| s(c, &["name"]) == Some("wasmon"))
            .unwrap_or_else(|| panic!("{ctx}: no wasmon container"));
        // The config file the agent is started with comes from a ConfigMap key.
        let args: Vec<&str> = seq(wasmon, &["args"])
            .into_iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args.first(), Some(&"run"), "{ctx}: {args:?}");
        let config_path = args
            .iter()
            .skip_while(|a| **a != "--config")
            .nth(1)
            .expect("--config");
        let mount = mount_for(wasmon, config_path)
            .unwrap_or_else(|| panic!("{ctx}: {config_path} is not mounted"));
        let cm_name = s(
            volumes[s(mount, &["name"]).unwrap()],
            &["configMap", "name"],
        )
        .unwrap_or_else(|| panic!("{ctx}: {config_path} is not on a ConfigMap volume"));
        let cm = config_maps
            .get(cm_name)
            .unwrap_or_else(|| panic!("{ctx}: ConfigMap {cm_name} not in {file}"));
        let key = Path::new(config_path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let text = s(cm, &["data", key])
            .unwrap_or_else(|| panic!("{ctx}: ConfigMap {cm_name} has no key {key}"));
        // Every `${VAR}` the config names is set in the container (the
        // node agent's NODE_NAME from the downward API); the test gives
        // them values here rather than in its own process environment.
        let env: BTreeSet<&str> = seq(wasmon, &["env"])
            .into_iter()
            .map(|e| s(e, &["name"]).unwrap())
            .collect();
        let text = fill_env(text, &env, &ctx);
        let config = Config::parse(&text, &format!("{file}:{cm_name}/{key}"))
            .unwrap_or_else(|e| panic!("{ctx}: embedded config does not load: {e:#}"));
        check_rbac(&docs, pod, &config, &ctx);
        // Every rule file it names is in the same ConfigMap and loads.
        assert!(
            !config.rule_files.is_empty(),
            "{ctx}: the example config should carry rules"
        );
        for rf in &config.rule_files {
            let m = mount_for(wasmon, rf)
                .unwrap_or_else(|| panic!("{ctx}: rule file {rf} not mounted"));
            assert_eq!(s(m, &["name"]), s(mount, &["name"]), "{ctx}: {rf}");
            let key = Path::new(rf).file_name().unwrap().to_str().unwrap();
            let rules =
                s(cm, &["data", key]).unwrap_or_else(|| panic!("{ctx}: no key {key} for {rf}"));
            rulefmt::parse(rules, rf, &rulefmt::ParseOpts::default())
                .unwrap_or_else(|e| panic!("{ctx}: {rf} does not load: {e:?}"));
        }
        // Storage and plugins live on writable volumes.
        for dir in [
            &config.storage.path,
            &config.plugins.dir,
            &config.plugins.cache_dir,
        ] {
            let dir = dir.to_str().unwrap();
            let m = mount_for(wasmon, dir).unwrap_or_else(|| {
                panic!("{ctx}: {dir} is not on a volume (lost on restart, or read-only root)")
            });
            assert_ne!(
                get(m, &["readOnly"]).and_then(Value::as_bool),
                Some(true),
                "{ctx}: {dir} read-only"
            );
        }
        // The container port is the one the config listens on, and the
        // probes hit the agent's health endpoints through it.
        let port = port_of(&config.web.listen_address);
        let ports = seq(wasmon, &["ports"]);
        let p = ports
            .iter()
            .find(|p| get(p, &["containerPort"]).and_then(Value::as_u64) == Some(port))
            .unwrap_or_else(|| panic!("{ctx}: no containerPort {port}"));
        let port_name = s(p, &["name"]).unwrap();
        for (probe, path) in [
            ("readinessProbe", "/-/ready"),
            ("livenessProbe", "/-/healthy"),
        ] {
            assert_eq!(
                s(wasmon, &[probe, "httpGet", "path"]),
                Some(path),
                "{ctx}: {probe}"
            );
            assert_eq!(
                s(wasmon, &[probe, "httpGet", "port"]),
                Some(port_name),
                "{ctx}: {probe} port"
            );
        }
        // The init container seeds the very plugins dir the agent loads,
        // through the same volume.
        let plugins_dir = config.plugins.dir.to_str().unwrap();
        let agent_vol = s(mount_for(wasmon, plugins_dir).unwrap(), &["name"]);
        let seeders: Vec<&&Value> = all
            .iter()
            .filter(|c| {
                seq(c, &["command"])
                    .iter()
                    .any(|a| a.as_str() == Some("seed"))
            })
            .collect();
        assert_eq!(seeders.len(), 1, "{ctx}: one plugin-seeding init container");
        let cmd: Vec<&str> = seq(seeders[0], &["command"])
            .into_iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(
            &cmd[..3],
            &["/usr/local/bin/wasmon", "plugins", "seed"],
            "{ctx}"
        );
        assert_eq!(
            cmd[4], plugins_dir,
            "{ctx}: seeds another dir than plugins.dir"
        );
        assert_eq!(
            s(mount_for(seeders[0], plugins_dir).unwrap(), &["name"]),
            agent_vol,
            "{ctx}"
        );
    }
    workloads
}

/// `text` with each `${VAR}` replaced by a stand-in value, after checking
/// that the container sets VAR.
fn fill_env(text: &str, env: &BTreeSet<&str>, ctx: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find('}')
            .unwrap_or_else(|| panic!("{ctx}: unterminated ${{"));
        let var = &rest[i + 2..i + end];
        // Relabel replacements use `${1}`: a group, not the environment.
        if var.chars().all(|c| c.is_ascii_digit()) {
            out.push_str(&rest[i..=i + end]);
        } else {
            assert!(
                env.contains(var),
                "{ctx}: the config uses ${{{var}}} but the container does not set {var}"
            );
            out.push_str("stand-in-value");
        }
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    out
}

/// What a `kubernetes_sd_configs` role lists and watches: (API group,
/// resource). As Prometheus' discovery/kubernetes watches them.
fn role_resources(sd: &KubernetesSdConfig) -> Vec<(&'static str, &'static str)> {
    let mut r = match sd.role {
        KubernetesRole::Pod => vec![("", "pods")],
        KubernetesRole::Node => vec![("", "nodes")],
        KubernetesRole::Service => vec![("", "services")],
        KubernetesRole::Endpoints => vec![("", "endpoints"), ("", "services"), ("", "pods")],
        KubernetesRole::EndpointSlice => vec![
            ("discovery.k8s.io", "endpointslices"),
            ("", "services"),
            ("", "pods"),
        ],
        KubernetesRole::Ingress => vec![("networking.k8s.io", "ingresses")],
    };
    if sd.attach_metadata.node {
        r.push(("", "nodes"));
    }
    if sd.attach_metadata.namespace {
        r.push(("", "namespaces"));
    }
    r
}

/// The workload's service account may get, list and watch everything its
/// config's Kubernetes discovery reads, through a ClusterRole bound to it
/// in the same file (a missing grant is a 403 on the node, not here).
fn check_rbac(docs: &[Value], pod: &Value, config: &Config, ctx: &str) {
    let needed: BTreeSet<(&str, &str)> = config
        .scrape_configs
        .iter()
        .flat_map(|j| &j.kubernetes_sd_configs)
        .flat_map(role_resources)
        .collect();
    if needed.is_empty() {
        return;
    }
    let sa = s(pod, &["serviceAccountName"]).unwrap_or("default");
    assert!(
        docs.iter()
            .any(|d| s(d, &["kind"]) == Some("ServiceAccount")
                && s(d, &["metadata", "name"]) == Some(sa)),
        "{ctx}: ServiceAccount {sa} not in the file"
    );
    let roles: BTreeSet<&str> = docs
        .iter()
        .filter(|d| s(d, &["kind"]) == Some("ClusterRoleBinding"))
        .filter(|d| {
            seq(d, &["subjects"])
                .iter()
                .any(|x| s(x, &["kind"]) == Some("ServiceAccount") && s(x, &["name"]) == Some(sa))
        })
        .filter_map(|d| s(d, &["roleRef", "name"]))
        .collect();
    let rules: Vec<&Value> = docs
        .iter()
        .filter(|d| {
            s(d, &["kind"]) == Some("ClusterRole")
                && s(d, &["metadata", "name"]).is_some_and(|n| roles.contains(n))
        })
        .flat_map(|d| seq(d, &["rules"]))
        .collect();
    let has = |rule: &Value, key: &str, want: &str| {
        seq(rule, &[key])
            .iter()
            .any(|v| v.as_str() == Some(want) || v.as_str() == Some("*"))
    };
    for (group, resource) in needed {
        for verb in ["get", "list", "watch"] {
            assert!(
                rules.iter().any(|r| has(r, "apiGroups", group)
                    && has(r, "resources", resource)
                    && has(r, "verbs", verb)),
                "{ctx}: service account {sa} may not {verb} {resource} (API group {group:?}), which kubernetes_sd_configs reads"
            );
        }
    }
}

#[test]
fn the_rbac_check_fails_on_a_missing_grant() {
    let manifest = "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: w}\n---\n\
        apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: w}\n\
        rules: [{apiGroups: [''], resources: [pods], verbs: [get, list]}]\n---\n\
        apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: w}\n\
        roleRef: {kind: ClusterRole, name: w}\nsubjects: [{kind: ServiceAccount, name: w}]\n";
    let docs: Vec<Value> = serde_norway::Deserializer::from_str(manifest)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let pod: Value = serde_norway::from_str("serviceAccountName: w").unwrap();
    let config = Config::parse(
        "[[scrape_configs]]\njob_name = \"p\"\n[[scrape_configs.kubernetes_sd_configs]]\nrole = \"pod\"\n",
        "t.toml",
    )
    .unwrap();
    let err = std::panic::catch_unwind(|| check_rbac(&docs, &pod, &config, "t"))
        .expect_err("watch on pods is not granted");
    let msg = err.downcast_ref::<String>().unwrap();
    assert!(msg.contains("may not watch pods"), "{msg}");
}

#[test]
fn kubernetes_sidecar_manifest_is_consistent_with_the_agent() {
    assert_eq!(check_manifest("sidecar.yaml"), 1);
}

#[test]
fn kubernetes_daemonset_manifest_is_consistent_with_the_agent() {
    assert_eq!(check_manifest("daemonset.yaml"), 1);
}

/// The node agent's pod job keeps the pods annotated
/// `prometheus.io/scrape: "true"` and honours `prometheus.io/port`, `path`
/// and `scheme`, as the Prometheus convention has it.
#[test]
fn the_daemonset_pod_job_follows_the_prometheus_io_annotations() {
    use wasmon::model::labels::Labels;
    use wasmon::scrape::{Job, Target};
    let docs = docs(&repo().join("deploy/kubernetes/daemonset.yaml"));
    let cm = docs
        .iter()
        .find(|d| s(d, &["metadata", "name"]) == Some("wasmon-node-config"))
        .unwrap();
    let text = fill_env(
        s(cm, &["data", "wasmon.toml"]).unwrap(),
        &BTreeSet::from(["NODE_NAME"]),
        "daemonset",
    );
    let config = Config::parse(&text, "daemonset.yaml").unwrap();
    let sc = config
        .scrape_configs
        .iter()
        .find(|j| j.job_name.get_ref() == "kubernetes-pods")
        .unwrap();
    let job = Job::from_config(sc, &config).unwrap();
    let pod = |extra: &[(&str, &str)]| {
        let mut l = vec![
            ("__address__", "10.1.2.3:8080"),
            ("__meta_kubernetes_namespace", "shop"),
            ("__meta_kubernetes_pod_name", "cart-7d9"),
            ("__meta_kubernetes_pod_phase", "Running"),
            ("__meta_kubernetes_pod_label_app", "cart"),
        ];
        l.extend_from_slice(extra);
        Target::populate(&job, Labels::from_pairs(l)).unwrap()
    };
    assert!(
        pod(&[]).is_none(),
        "a pod without the annotation is scraped"
    );
    assert!(pod(&[(
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
        "false"
    )])
    .is_none());
    let t = pod(&[
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_port",
            "9102",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_path",
            "/stats/prometheus",
        ),
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scheme",
            "https",
        ),
    ])
    .unwrap();
    assert_eq!(t.url, "https://10.1.2.3:9102/stats/prometheus");
    assert_eq!(
        t.labels,
        Labels::from_pairs([
            ("app", "cart"),
            ("instance", "10.1.2.3:9102"),
            ("job", "kubernetes-pods"),
            ("namespace", "shop"),
            ("pod", "cart-7d9"),
        ])
    );
    let t = pod(&[(
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
        "true",
    )])
    .unwrap();
    assert_eq!(t.url, "http://10.1.2.3:8080/metrics");
    assert!(pod(&[
        (
            "__meta_kubernetes_pod_annotation_prometheus_io_scrape",
            "true"
        ),
        ("__meta_kubernetes_pod_phase", "Succeeded"),
    ])
    .is_none());
}

#[test]
fn every_manifest_file_is_checked() {
    let files: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let checked: BTreeSet<String> = ["daemonset.yaml", "sidecar.yaml"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(files, checked, "a new manifest needs a test");
}

#[test]
fn dockerfile_matches_the_image_config() {
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    let config = Config::load(&repo().join("deploy/wasmon.toml")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let expose: Vec<u64> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .map(|p| p.trim().parse().unwrap())
        .collect();
    assert_eq!(expose, vec![port_of(&config.web.listen_address)]);
    assert!(
        config.web.listen_address.starts_with("0.0.0.0:"),
        "a container must listen beyond loopback"
    );
    // The config the image starts with is the file copied into it.
    let copy = lines
        .iter()
        .find(|l| l.starts_with("COPY deploy/"))
        .expect("COPY of the config");
    let parts: Vec<&str> = copy.split_whitespace().collect();
    assert!(repo().join(parts[1]).is_file(), "{copy}: source missing");
    let cmd = lines.iter().find(|l| l.starts_with("CMD ")).unwrap();
    assert!(
        cmd.contains(&format!("\"--config\", \"{}\"", parts[2])),
        "{cmd} vs {copy}"
    );
    // Plugins are copied both to where the config loads them and to where
    // the Kubernetes init containers seed them from.
    let plugins_dir = format!("{}/", config.plugins.dir.display());
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("COPY --from=build") && l.ends_with(&plugins_dir)),
        "{plugins_dir}"
    );
    assert!(lines
        .iter()
        .any(|l| l.ends_with(" /usr/lib/wasmon/plugins/")));
    for dir in [&config.storage.path, &config.plugins.dir] {
        assert!(
            dir.starts_with("/var/lib/wasmon"),
            "{}: outside the image's VOLUME",
            dir.display()
        );
    }
}

#[test]
fn systemd_unit_starts_the_agent_on_the_documented_config() {
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/wasmon.service")).unwrap();
    let mut section = "";
    let mut keys: BTreeMap<(String, String), String> = BTreeMap::new();
    for (n, line) in unit.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("wasmon.service:{}: not key=value", n + 1));
        keys.insert((section.to_string(), k.to_string()), v.to_string());
    }
    let exec = &keys[&("[Service]".into(), "ExecStart".into())];
    assert_eq!(
        exec,
        "/usr/local/bin/wasmon run --config /etc/wasmon/wasmon.toml"
    );
    assert_eq!(
        keys[&("[Service]".into(), "ExecReload".into())],
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(
        keys[&("[Service]".into(), "StateDirectory".into())],
        "wasmon"
    );
    assert_eq!(
        keys[&("[Install]".into(), "WantedBy".into())],
        "multi-user.target"
    );
    // The documented config keeps its state in the unit's StateDirectory.
    let config = Config::load(&repo().join("deploy/wasmon.toml")).unwrap();
    assert!(config.storage.path.starts_with("/var/lib/wasmon"));
    if Path::new("/usr/bin/systemd-analyze").exists() {
        // `verify` wants the ExecStart binary to exist: point it at one that does.
        let dir = tempfile::tempdir().unwrap();
        let unit_path = dir.path().join("wasmon.service");
        std::fs::write(
            &unit_path,
            unit.replace("/usr/local/bin/wasmon", env!("CARGO_BIN_EXE_wasmon")),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit_path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Lines about the host's own units are not ours to judge.
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|l| l.contains("wasmon.service"))
            .collect();
        assert!(
            out.status.success() && ours.is_empty(),
            "systemd-analyze verify: {stderr}"
        );
    }
}

#[test]
fn plugins_seed_fills_a_plugins_dir_the_agent_then_lists() {
    let _heavy = fixtures::heavy();
    let src = fixtures::component("webhook");
    let src_dir = src.parent().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["plugins", "seed"])
        .arg(src_dir)
        .arg(dst.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dst.path().join("webhook.wasm").is_file());
    let out = Command::new(env!("CARGO_BIN_EXE_wasmon"))
        .args(["plugins", "list", "--json", "--dir"])
        .arg(dst.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let webhook = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "webhook")
        .unwrap_or_else(|| panic!("webhook not listed: {list}"));
    assert_eq!(webhook["kind"], "receiver", "{webhook}");
}
