//! `kubectl rollout undo` as a rollback action, through the Kubernetes API.
//!
//! Like kubectl (`polymorphichelpers.DeploymentRollbacker`): GET the
//! Deployment, list its ReplicaSets by the Deployment's selector, keep those
//! it controls (owner reference), pick the previous revision (annotation
//! `deployment.kubernetes.io/revision`; or `to_revision`), and PATCH the
//! Deployment with a JSON patch that replaces `/spec/template` with that
//! ReplicaSet's pod template (minus its `pod-template-hash` label) and
//! `/metadata/annotations` with the annotations kubectl would restore.
//!
//! Config:
//!
//! ```toml
//! config = { api_url = "https://kubernetes.default.svc", namespace = "shop",
//!            deployment = "checkout", token = "${K8S_TOKEN}" }
//! ```
//!
//! `deployment` defaults to the rollout's `target` (`checkout` or
//! `deployment/checkout`); `to_revision` (default 0: the previous one);
//! `version_label` (default `version`) names the pod label reported as the
//! version now serving (else the first container's image). The API host must
//! be on the instance's `allow_hosts`. RBAC: get/patch deployments, list
//! replicasets.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};
use wasmon_sdk::http::Method;
use wasmon_sdk::rollback_action::{Failure, Guest, RollbackOutcome, RollbackRequest};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH_LABEL: &str = "pod-template-hash";
/// Annotations kubectl keeps from the Deployment rather than the ReplicaSet.
const SKIP: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    api_url: String,
    namespace: String,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    to_revision: i64,
    #[serde(default = "version_label")]
    version_label: String,
}

fn version_label() -> String {
    "version".to_string()
}

struct Client {
    base: String,
    token: Option<String>,
}

impl Client {
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> Result<Value, Failure> {
        wasmon_sdk::k8s::request(&self.base, self.token.as_deref(), method, path, body)
    }
}

/// A label selector as the API's `labelSelector` parameter.
fn selector_string(sel: &Value) -> Result<String, Failure> {
    let mut parts = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    if let Some(exprs) = sel["matchExpressions"].as_array() {
        for e in exprs {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            parts.push(match e["operator"].as_str().unwrap_or_default() {
                "In" => format!("{key} in ({})", values.join(",")),
                "NotIn" => format!("{key} notin ({})", values.join(",")),
                "Exists" => key.to_string(),
                "DoesNotExist" => format!("!{key}"),
                op => return Err(Failure::permanent(format!("selector operator {op:?}"))),
            });
        }
    }
    if parts.is_empty() {
        return Err(Failure::permanent("the Deployment has an empty selector"));
    }
    Ok(parts.join(","))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn revision(obj: &Value) -> Option<i64> {
    obj["metadata"]["annotations"][REVISION]
        .as_str()?
        .parse()
        .ok()
}

/// kubectl's `deploymentRevision`: the ReplicaSet of `to_revision`, or with
/// 0 the one with the second-highest revision.
fn pick<'a>(sets: &'a [Value], to_revision: i64, name: &str) -> Result<&'a Value, Failure> {
    let mut latest: Option<(i64, &Value)> = None;
    let mut previous: Option<(i64, &Value)> = None;
    for rs in sets {
        let Some(v) = revision(rs) else { continue };
        if to_revision > 0 {
            if v == to_revision {
                return Ok(rs);
            }
            continue;
        }
        match latest {
            None => latest = Some((v, rs)),
            Some((lv, _)) if v > lv => {
                previous = latest;
                latest = Some((v, rs));
            }
            _ => {
                if previous.is_none_or(|(pv, _)| v > pv) {
                    previous = Some((v, rs));
                }
            }
        }
    }
    if to_revision > 0 {
        return Err(Failure::permanent(format!(
            "unable to find specified revision {to_revision} in history"
        )));
    }
    previous.map(|(_, rs)| rs).ok_or_else(|| {
        Failure::permanent(format!("no rollout history found for deployment {name:?}"))
    })
}

fn without_hash(mut template: Value) -> Value {
    if let Some(labels) = template["metadata"]["labels"].as_object_mut() {
        labels.remove(HASH_LABEL);
    }
    template
}

struct Undo;

impl Guest for Undo {
    fn rollback(request: RollbackRequest) -> Result<RollbackOutcome, Failure> {
        let cfg: Config = wasmon_sdk::config()?;
        let name = cfg
            .deployment
            .clone()
            .unwrap_or_else(|| request.target.clone());
        let name = name
            .strip_prefix("deployment/")
            .unwrap_or(&name)
            .to_string();
        let name = name
            .strip_prefix("deployments/")
            .unwrap_or(&name)
            .to_string();
        if name.is_empty() {
            return Err(Failure::permanent(
                "no deployment: set `deployment` or the rollout's `target`",
            ));
        }
        let ns = &cfg.namespace;
        let client = Client {
            base: cfg.api_url.clone(),
            token: cfg.token.clone().filter(|t| !t.is_empty()),
        };
        let dpath = format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}");
        let deployment = client.call(Method::Get, &dpath, None)?;
        if deployment["spec"]["paused"].as_bool() == Some(true) {
            return Err(Failure::permanent(format!(
                "you cannot rollback a paused deployment; resume it first with 'kubectl rollout resume deployment/{name}' and try again"
            )));
        }
        let uid = deployment["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let selector = selector_string(&deployment["spec"]["selector"])?;
        let list = client.call(
            Method::Get,
            &format!(
                "/apis/apps/v1/namespaces/{ns}/replicasets?labelSelector={}",
                percent_encode(&selector)
            ),
            None,
        )?;
        let owned: Vec<Value> = list["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|rs| {
                rs["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| {
                        refs.iter().any(|r| {
                            r["controller"].as_bool() == Some(true)
                                && (uid.is_empty() || r["uid"].as_str() == Some(uid.as_str()))
                        })
                    })
            })
            .collect();
        let rs = pick(&owned, cfg.to_revision, &name)?;
        let rev = revision(rs).unwrap_or_default();
        let template = without_hash(rs["spec"]["template"].clone());
        let served = template["metadata"]["labels"][&cfg.version_label]
            .as_str()
            .or_else(|| template["spec"]["containers"][0]["image"].as_str())
            .map(str::to_string);
        if without_hash(deployment["spec"]["template"].clone()) == template {
            return Ok(RollbackOutcome {
                message: format!("deployment.apps/{name} skipped rollback (current template already matches revision {rev})"),
                current_version: served,
            });
        }
        let mut annotations = BTreeMap::new();
        if let Some(m) = deployment["metadata"]["annotations"].as_object() {
            for k in SKIP {
                if let Some(v) = m.get(k) {
                    annotations.insert(k.to_string(), v.clone());
                }
            }
        }
        if let Some(m) = rs["metadata"]["annotations"].as_object() {
            for (k, v) in m {
                if !SKIP.contains(&k.as_str()) {
                    annotations.insert(k.clone(), v.clone());
                }
            }
        }
        let patch = json!([
            {"op": "replace", "path": "/spec/template", "value": template},
            {"op": "replace", "path": "/metadata/annotations", "value": annotations},
        ]);
        client.call(
            Method::Patch,
            &dpath,
            Some(("application/json-patch+json", patch)),
        )?;
        let message = format!(
            "deployment.apps/{name} rolled back to revision {rev} (failed version {})",
            request.failed_version
        );
        wasmon_sdk::log::info(&message);
        Ok(RollbackOutcome {
            message,
            current_version: served,
        })
    }
}

wasmon_sdk::export_rollback_action!(Undo);
