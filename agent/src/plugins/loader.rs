//! Turning a `.wasm` file into a [`LoadedPlugin`]: compile (or fetch from the
//! cache), find which world it targets by its export, and type-check its
//! imports and exports against that world's linker — all before it can serve.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use wasmon_plugin_tools::format;
use wasmtime::component::{types::ComponentItem, HasSelf, Linker};
use wasmtime::Engine;

use super::bindings::{health_check, metric_check, receiver, rollback_action};
use super::engine::{Cancel, CompileCache, LoadError};
use super::host::HostState;

/// The four plugin worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Receiver,
    HealthCheck,
    RollbackAction,
    MetricCheck,
}

impl PluginKind {
    pub const ALL: [PluginKind; 4] = [
        PluginKind::Receiver,
        PluginKind::HealthCheck,
        PluginKind::RollbackAction,
        PluginKind::MetricCheck,
    ];

    /// The WIT world name.
    pub fn world(self) -> &'static str {
        format::WORLD_EXPORTS[self as usize].0
    }

    /// The function that world exports; it tells the worlds apart.
    pub fn export(self) -> &'static str {
        format::WORLD_EXPORTS[self as usize].1
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// One linker per world: a world's linker holds exactly the imports that
/// world may use (WASI p2 and wasi:http for all; `query` only for
/// metric checks), so a component asking for more fails to load.
pub struct Linkers {
    receiver: Linker<HostState>,
    health_check: Linker<HostState>,
    rollback_action: Linker<HostState>,
    metric_check: Linker<HostState>,
}

impl Linkers {
    pub fn new(engine: &Engine) -> Result<Linkers> {
        fn base(engine: &Engine) -> Result<Linker<HostState>> {
            let mut l = Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
            Ok(l)
        }
        let mut r = base(engine)?;
        receiver::Receiver::add_to_linker::<_, HasSelf<HostState>>(&mut r, |s| s)?;
        let mut h = base(engine)?;
        health_check::HealthCheck::add_to_linker::<_, HasSelf<HostState>>(&mut h, |s| s)?;
        let mut rb = base(engine)?;
        rollback_action::RollbackAction::add_to_linker::<_, HasSelf<HostState>>(&mut rb, |s| s)?;
        let mut m = base(engine)?;
        metric_check::MetricCheck::add_to_linker::<_, HasSelf<HostState>>(&mut m, |s| s)?;
        Ok(Linkers {
            receiver: r,
            health_check: h,
            rollback_action: rb,
            metric_check: m,
        })
    }
}

/// A type-checked, ready-to-instantiate component for its world.
pub enum Pre {
    Receiver(receiver::ReceiverPre<HostState>),
    HealthCheck(health_check::HealthCheckPre<HostState>),
    RollbackAction(rollback_action::RollbackActionPre<HostState>),
    MetricCheck(metric_check::MetricCheckPre<HostState>),
}

/// A plugin that passed loading: what serves calls until it is replaced.
pub struct LoadedPlugin {
    pub name: String,
    pub path: PathBuf,
    pub kind: PluginKind,
    /// SHA-256 of the file: the plugin's version.
    pub hash: String,
    pub size: u64,
    pub imports: Vec<String>,
    pub loaded_at: SystemTime,
    pub load_duration: Duration,
    pub from_cache: bool,
    pub(crate) pre: Pre,
}

impl fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("hash", &self.hash)
            .finish()
    }
}

/// Compiles and type-checks one component. Blocking (compilation can take
/// seconds): call it from a blocking thread. When `cancel` is set meanwhile
/// the error is [`engine::LoadError::Cancelled`](super::engine::LoadError).
pub fn load_component(
    engine: &Engine,
    linkers: &Linkers,
    cache: &CompileCache,
    name: &str,
    path: PathBuf,
    bytes: &[u8],
    cancel: &Cancel,
) -> Result<LoadedPlugin> {
    let start = Instant::now();
    let hash = CompileCache::content_hash(bytes);
    // Before wasmtime sees it: its `wat` feature would answer anything
    // that is not binary WebAssembly with a text parser's error.
    format::check_bytes(bytes)?;
    let (component, from_cache) = match cache.load_cancellable(engine, bytes, &hash, cancel) {
        Ok(c) => c,
        Err(LoadError::Cancelled) => return Err(LoadError::Cancelled.into()),
        Err(LoadError::Failed(e)) => return Err(e.context("compiling")),
    };
    let ty = component.component_type();
    let imports: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    format::check_contract_version(imports.iter().map(String::as_str))?;
    let kinds: Vec<PluginKind> = PluginKind::ALL
        .into_iter()
        .filter(|k| matches!(ty.get_export(engine, k.export()), Some(e) if matches!(e.ty, ComponentItem::ComponentFunc(_))))
        .collect();
    let kind = match kinds.as_slice() {
        [k] => *k,
        [] => bail!(format::NotAPlugin::OtherWorld {
            exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
        }),
        many => bail!(
            "exports the functions of several worlds ({many:?}); a plugin targets exactly one"
        ),
    };
    let what = || format!("type-checking against world wasmon:plugin/{kind}@0.1.0");
    let pre = match kind {
        PluginKind::Receiver => Pre::Receiver(
            receiver::ReceiverPre::new(
                linkers
                    .receiver
                    .instantiate_pre(&component)
                    .map_err(anyhow::Error::from)
                    .with_context(what)?,
            )
            .map_err(anyhow::Error::from)
            .with_context(what)?,
        ),
        PluginKind::HealthCheck => Pre::HealthCheck(
            health_check::HealthCheckPre::new(
                linkers
                    .health_check
                    .instantiate_pre(&component)
                    .map_err(anyhow::Error::from)
                    .with_context(what)?,
            )
            .map_err(anyhow::Error::from)
            .with_context(what)?,
        ),
        PluginKind::RollbackAction => Pre::RollbackAction(
            rollback_action::RollbackActionPre::new(
                linkers
                    .rollback_action
                    .instantiate_pre(&component)
                    .map_err(anyhow::Error::from)
                    .with_context(what)?,
            )
            .map_err(anyhow::Error::from)
            .with_context(what)?,
        ),
        PluginKind::MetricCheck => Pre::MetricCheck(
            metric_check::MetricCheckPre::new(
                linkers
                    .metric_check
                    .instantiate_pre(&component)
                    .map_err(anyhow::Error::from)
                    .with_context(what)?,
            )
            .map_err(anyhow::Error::from)
            .with_context(what)?,
        ),
    };
    Ok(LoadedPlugin {
        name: name.to_string(),
        path,
        kind,
        hash,
        size: bytes.len() as u64,
        imports,
        loaded_at: SystemTime::now(),
        load_duration: start.elapsed(),
        from_cache,
        pre,
    })
}

/// The plugin name of a path in the plugins dir: the stem of a `*.wasm` file.
pub fn plugin_name(path: &std::path::Path) -> Option<String> {
    if path.extension()? != "wasm" {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    // Editors and copy tools write hidden temp files next to the real one.
    if stem.starts_with('.') || stem.is_empty() {
        return None;
    }
    Some(stem.to_string())
}

pub type SharedPlugin = Arc<LoadedPlugin>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_the_worlds_of_the_contract() {
        for k in PluginKind::ALL {
            // The serialized name (API, `plugins list`) is the world's.
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("{:?}", k.world())
            );
        }
        assert_eq!(
            PluginKind::ALL.map(PluginKind::world),
            wasmon_plugin_tools::WORLDS
        );
    }
}
