//! Blue-green rollback: patch a Service's selector back to the stable
//! version, as `kubectl patch service NAME -p '{"spec":{"selector":{...}}}'`
//! does (a strategic merge patch).
//!
//! Config:
//!
//! ```toml
//! config = { api_url = "https://kubernetes.default.svc", namespace = "shop",
//!            service = "checkout", label = "version", token = "${K8S_TOKEN}" }
//! ```
//!
//! `service` defaults to the rollout's `target` (`checkout` or
//! `service/checkout`); `label` (default `version`) is the selector key
//! switched; `version` fixes the value to switch to, else the request's
//! stable version is used. RBAC: get/patch services.

use serde::Deserialize;
use serde_json::{json, Value};
use wasmon_sdk::http::Method;
use wasmon_sdk::rollback_action::{Failure, Guest, RollbackOutcome, RollbackRequest};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    api_url: String,
    namespace: String,
    #[serde(default)]
    service: Option<String>,
    #[serde(default = "label")]
    label: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

fn label() -> String {
    "version".to_string()
}

fn call(
    cfg: &Config,
    method: Method,
    path: &str,
    body: Option<(&str, Value)>,
) -> Result<Value, Failure> {
    wasmon_sdk::k8s::request(&cfg.api_url, cfg.token.as_deref(), method, path, body)
}

struct Switch;

impl Guest for Switch {
    fn rollback(request: RollbackRequest) -> Result<RollbackOutcome, Failure> {
        let cfg: Config = wasmon_sdk::config()?;
        let name = cfg
            .service
            .clone()
            .unwrap_or_else(|| request.target.clone());
        let name = name.strip_prefix("service/").unwrap_or(&name).to_string();
        if name.is_empty() {
            return Err(Failure::permanent(
                "no service: set `service` or the rollout's `target`",
            ));
        }
        let version = cfg
            .version
            .clone()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| request.stable_version.clone());
        if version.is_empty() {
            return Err(Failure::permanent(
                "no version to switch to: the rollout has no stable version and `version` is not set",
            ));
        }
        let path = format!("/api/v1/namespaces/{}/services/{name}", cfg.namespace);
        let svc = call(&cfg, Method::Get, &path, None)?;
        let before = svc["spec"]["selector"][&cfg.label]
            .as_str()
            .map(str::to_string);
        if before.as_deref() == Some(version.as_str()) {
            return Ok(RollbackOutcome {
                message: format!("service/{name} already selects {}={version}", cfg.label),
                current_version: Some(version),
            });
        }
        let patch = json!({"spec": {"selector": {cfg.label.clone(): version.clone()}}});
        let after = call(
            &cfg,
            Method::Patch,
            &path,
            Some(("application/strategic-merge-patch+json", patch)),
        )?;
        let now = after["spec"]["selector"][&cfg.label]
            .as_str()
            .unwrap_or(&version)
            .to_string();
        let message = format!(
            "service/{name} patched: selector {}={} -> {now}",
            cfg.label,
            before.as_deref().unwrap_or("(none)")
        );
        wasmon_sdk::log::info(&message);
        Ok(RollbackOutcome {
            message,
            current_version: Some(now),
        })
    }
}

wasmon_sdk::export_rollback_action!(Switch);
