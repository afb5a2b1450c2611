//! `wasmon plugin call`: one call of a plugin file, without an agent, in
//! the agent's sandbox — the same [`PluginRuntime`] loads the file and
//! makes the call (compile in a child process, world type-check, memory
//! cap, deadline, `allow_hosts`, `${VAR}` expansion of the config, the
//! plugin's `log` lines on stderr) — and the result printed as JSON. The
//! plugin author's local loop.
//!
//! `--input` is the world's request as JSON: an Alertmanager webhook v4
//! message for a receiver (the agent's own conversion), or the WIT record
//! (`check-request`, `rollback-request`, `metric-check-request`) with its
//! WIT field names. `--query-fixture` gives a metric check's `query`
//! import series to evaluate real PromQL on: promqltest's `load` blocks
//! (see [`load_fixture`](crate::promql::promqltest::load_fixture)).
//!
//! Exit codes: 0 the call succeeded (a check that reports "down" is a
//! successful call), 1 no call could be made (file, world, input, config),
//! 2 usage, 3 retryable failure or timeout, 4 permanent failure, 5 trap,
//! memory cap or host error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::alerting::message::WebhookMessage;
use crate::config::hosts::HostPattern;
use crate::config::{InstanceConfig, PluginsConfig};
use crate::plugins::bindings::types as wit;
use crate::plugins::host::{PromqlQueries, QueryApi, QueryError};
use crate::plugins::{CallError, CallInfo, Instance, PluginKind, PluginRuntime, Policy};
use crate::selfmetrics::Metrics;

/// Exit code: the call failed in a way worth retrying (or timed out).
pub const EXIT_RETRYABLE: u8 = 3;
/// Exit code: the plugin refused the request for good.
pub const EXIT_PERMANENT: u8 = 4;
/// Exit code: the plugin trapped, hit its memory cap, or the host failed.
pub const EXIT_TRAP: u8 = 5;

/// The most samples a query fixture may hold.
const MAX_FIXTURE_SAMPLES: usize = 1_000_000;

/// `wasmon plugin call`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CallArgs {
    /// The component (.wasm).
    pub file: PathBuf,
    /// The world the plugin must be (default: whichever it is).
    #[arg(long)]
    pub world: Option<String>,
    /// The request as JSON, or @FILE to read it from a file: a webhook v4
    /// message (receiver), a check-request, rollback-request or
    /// metric-check-request (WIT field names, e.g. `timeout-ms`).
    #[arg(long)]
    pub input: String,
    /// The instance's config as a JSON object (what `config.get()` returns;
    /// `${VAR}` is expanded as the agent does), or @FILE.
    #[arg(long, default_value = "{}")]
    pub config: String,
    /// A host the plugin may reach (`host`, `host:port`, `*.domain`, `*`);
    /// repeat for more. Nothing else is reachable, as in the agent.
    #[arg(long = "allow-host")]
    pub allow_hosts: Vec<String>,
    /// Series for a metric check's `query` import, in promqltest's `load`
    /// format (`load 1m` then `metric{labels} 0+1x10` lines).
    #[arg(long)]
    pub query_fixture: Option<PathBuf>,
    /// The call's deadline (default: the agent's `plugins.call_timeout`).
    #[arg(long)]
    pub timeout: Option<String>,
    /// The call's memory cap (default: the agent's `plugins.memory_limit`).
    #[arg(long)]
    pub memory_limit: Option<String>,
    /// Where compiled components are cached, so that a JavaScript or
    /// Python plugin compiles once per version (default:
    /// $XDG_CACHE_HOME/wasmon/plugin-cache or ~/.cache/wasmon/plugin-cache).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Compile without a cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// Runs `wasmon plugin call`; the exit code says how the call went.
pub async fn run(args: CallArgs) -> Result<ExitCode> {
    let prepared = match prepare(&args).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: plugin call: {e:#}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let (out, code) = prepared.call().await;
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::from(code))
}

/// Everything ready for the call.
struct Prepared {
    rt: Arc<PluginRuntime>,
    inst: Instance,
    kind: PluginKind,
    version: String,
    request: Request,
}

enum Request {
    Notify(Box<wit::Notification>),
    Check(wit::CheckRequest),
    Rollback(wit::RollbackRequest),
    Evaluate(wit::MetricCheckRequest),
}

/// Text given inline or as `@FILE`.
fn text_arg(what: &str, arg: &str) -> Result<String> {
    match arg.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("{what}: reading {path}"))
        }
        None => Ok(arg.to_string()),
    }
}

fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("wasmon").join("plugin-cache"))
}

async fn prepare(args: &CallArgs) -> Result<Prepared> {
    let mut cfg = PluginsConfig::default();
    if let Some(t) = &args.timeout {
        cfg.call_timeout =
            humantime::parse_duration(t).with_context(|| format!("--timeout {t:?}"))?;
        if cfg.call_timeout.is_zero() {
            bail!("--timeout must be greater than 0");
        }
    }
    if let Some(m) = &args.memory_limit {
        cfg.memory_limit = m
            .parse()
            .map_err(|e| anyhow::anyhow!("--memory-limit {m:?}: {e}"))?;
    }
    let want = args
        .world
        .as_deref()
        .map(|w| {
            PluginKind::ALL
                .into_iter()
                .find(|k| k.world() == w)
                .with_context(|| {
                    format!(
                        "--world {w:?}: not a world; one of {}",
                        PluginKind::ALL.map(PluginKind::world).join(", ")
                    )
                })
        })
        .transpose()?;
    let allow = args
        .allow_hosts
        .iter()
        .map(|h| HostPattern::parse(h).with_context(|| format!("--allow-host {h:?}")))
        .collect::<Result<Vec<_>>>()?;
    let config_text = text_arg("--config", &args.config)?;
    let config_json: Value = serde_json::from_str(&config_text).context("--config is not JSON")?;
    let config: toml::Table = match toml::Value::try_from(&config_json) {
        Ok(toml::Value::Table(t)) => t,
        Ok(_) => bail!("--config must be a JSON object (the instance's `config` table)"),
        Err(e) => bail!("--config cannot be an agent config table: {e}"),
    };
    let input_text = text_arg("--input", &args.input)?;
    let input: Value = serde_json::from_str(&input_text).context("--input is not JSON")?;

    let name = args
        .file
        .file_stem()
        .and_then(|s| s.to_str())
        .filter(|s| !s.is_empty())
        .unwrap_or("plugin")
        .to_string();
    let cache = match &args.cache_dir {
        _ if args.no_cache => None,
        Some(d) => Some(d.clone()),
        None => default_cache_dir(),
    };
    let dir = args
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let rt = PluginRuntime::new(&cfg, dir, cache, Arc::new(Metrics::new()))?;
    let plugin = rt
        .load_file(&name, &args.file)
        .await
        .with_context(|| format!("{} does not load", args.file.display()))?;
    if let Some(want) = want {
        if plugin.kind != want {
            bail!(
                "{} is a {} plugin, not a {want}",
                args.file.display(),
                plugin.kind
            );
        }
    }
    if args.query_fixture.is_some() && plugin.kind != PluginKind::MetricCheck {
        bail!(
            "--query-fixture is for metric-check plugins; {} is a {}",
            args.file.display(),
            plugin.kind
        );
    }
    // The instance as the agent prepares one from its config.
    let instance_config = InstanceConfig {
        name: toml::Spanned::new(0..0, name.clone()),
        plugin: name.clone(),
        config,
        allow_hosts: Vec::new(),
        timeout: None,
        memory_limit: None,
        send_resolved: None,
        http_config: None,
        receiver: None,
    };
    let mut inst = Instance::prepare(&instance_config, &cfg)?;
    inst.allow = allow.into();

    let request = match plugin.kind {
        PluginKind::Receiver => {
            let msg: WebhookMessage = serde_json::from_value(input)
                .context("--input is not an Alertmanager webhook v4 message")?;
            Request::Notify(Box::new(
                crate::plugins::notifier::wit_notification(&msg)
                    .map_err(|e| anyhow::anyhow!("--input: {e}"))?,
            ))
        }
        PluginKind::HealthCheck => {
            let r: CheckInput =
                serde_json::from_value(input).context("--input is not a check-request")?;
            Request::Check(wit::CheckRequest {
                check: r.check.unwrap_or_else(|| name.clone()),
                target: r.target,
                timeout_ms: r
                    .timeout_ms
                    .unwrap_or(cfg.call_timeout.as_millis().min(u32::MAX as u128) as u32),
            })
        }
        PluginKind::RollbackAction => {
            let r: RollbackInput =
                serde_json::from_value(input).context("--input is not a rollback-request")?;
            Request::Rollback(wit::RollbackRequest {
                rollout: r.rollout.unwrap_or_else(|| name.clone()),
                target: r.target,
                failed_version: r.failed_version,
                stable_version: r.stable_version,
                reason: r.reason,
            })
        }
        PluginKind::MetricCheck => {
            let r: MetricCheckInput =
                serde_json::from_value(input).context("--input is not a metric-check-request")?;
            let (queries, latest): (Arc<dyn QueryApi>, Option<i64>) = match &args.query_fixture {
                None => (Arc::new(NoFixture), None),
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("--query-fixture: reading {}", path.display()))?;
                    let (store, latest) =
                        crate::promql::promqltest::load_fixture(&text, MAX_FIXTURE_SAMPLES)
                            .map_err(|e| {
                                anyhow::anyhow!("--query-fixture {}: {e}", path.display())
                            })?;
                    let q = PromqlQueries {
                        store: Arc::new(store),
                        engine: crate::promql::SharedEngine::default(),
                    };
                    (Arc::new(q), Some(latest))
                }
            };
            rt.set_query_api(queries);
            Request::Evaluate(wit::MetricCheckRequest {
                check: r.check.unwrap_or_else(|| name.clone()),
                // By default the fixture's last sample: where its series
                // have data (a `rate(x[5m])` needs the minutes before).
                time_ms: r.time_ms.or(latest).unwrap_or_else(crate::clock::now_ms),
            })
        }
    };
    Ok(Prepared {
        rt,
        version: plugin.hash.clone(),
        kind: plugin.kind,
        inst,
        request,
    })
}

/// `check-request` as JSON: WIT names, with snake_case and camelCase
/// spellings accepted.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckInput {
    #[serde(default)]
    check: Option<String>,
    #[serde(default)]
    target: String,
    #[serde(
        default,
        rename = "timeout-ms",
        alias = "timeout_ms",
        alias = "timeoutMs"
    )]
    timeout_ms: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackInput {
    #[serde(default)]
    rollout: Option<String>,
    #[serde(default)]
    target: String,
    #[serde(
        default,
        rename = "failed-version",
        alias = "failed_version",
        alias = "failedVersion"
    )]
    failed_version: String,
    #[serde(
        default,
        rename = "stable-version",
        alias = "stable_version",
        alias = "stableVersion"
    )]
    stable_version: String,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricCheckInput {
    #[serde(default)]
    check: Option<String>,
    #[serde(default, rename = "time-ms", alias = "time_ms", alias = "timeMs")]
    time_ms: Option<i64>,
}

/// The `query` import without `--query-fixture`.
struct NoFixture;

impl QueryApi for NoFixture {
    fn instant(
        &self,
        expr: String,
        _time_ms: i64,
    ) -> futures::future::BoxFuture<'static, Result<Vec<wit::Sample>, QueryError>> {
        Box::pin(async move { Err(QueryError::NoFixture(expr)) })
    }
}

fn samples_json(samples: &[wit::Sample]) -> Value {
    samples
        .iter()
        .map(|s| {
            let labels: serde_json::Map<String, Value> = s
                .labels
                .iter()
                .map(|l| (l.name.clone(), Value::String(l.value.clone())))
                .collect();
            json!({"labels": labels, "value": s.value, "timestampMs": s.timestamp_ms})
        })
        .collect()
}

fn check_json(r: &wit::CheckResult) -> Value {
    json!({
        "ok": r.ok,
        "message": r.message,
        "value": r.value,
        "samples": samples_json(&r.samples),
    })
}

impl Prepared {
    /// Makes the call: (what to print, exit code).
    async fn call(&self) -> (Value, u8) {
        let (rt, inst) = (&self.rt, &self.inst);
        // One call by hand: the failure policy has nothing to remember.
        let result: Result<(Value, CallInfo), CallError> = match &self.request {
            Request::Notify(n) => rt
                .notify_with(inst, n, Policy::Manual)
                .await
                .map(|info| (Value::Null, info)),
            Request::Check(r) => rt
                .check_with(inst, r, Policy::Manual)
                .await
                .map(|(v, info)| (check_json(&v), info)),
            Request::Rollback(r) => rt.rollback(inst, r).await.map(|(v, info)| {
                (
                    json!({"message": v.message, "currentVersion": v.current_version}),
                    info,
                )
            }),
            Request::Evaluate(r) => rt
                .evaluate_with(inst, r, Policy::Manual)
                .await
                .map(|(v, info)| (check_json(&v), info)),
        };
        let mut out = json!({
            "plugin": inst.plugin,
            "world": self.kind.world(),
            "version": self.version,
        });
        match result {
            Ok((output, info)) => {
                out["result"] = json!("ok");
                out["durationSeconds"] = json!(info.duration.as_secs_f64());
                out["output"] = output;
                (out, 0)
            }
            Err(e) => {
                out["result"] = json!(e.label());
                out["retryable"] = json!(e.is_retryable());
                out["error"] = json!(e.to_string());
                (out, exit_code(&e))
            }
        }
    }
}

/// The exit code of a failed call.
fn exit_code(e: &CallError) -> u8 {
    match e {
        CallError::Permanent(_) | CallError::FailedBefore(_) => EXIT_PERMANENT,
        e if e.is_retryable() => EXIT_RETRYABLE,
        CallError::NotLoaded(_) | CallError::WrongKind { .. } => 1,
        _ => EXIT_TRAP,
    }
}
