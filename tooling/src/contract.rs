//! Making components of core modules, and checking them against `wit/`.
//!
//! The check runs at build time so that a plugin that cannot load fails
//! `cargo xtask plugins`, not a host test later: the component must validate,
//! export the functions of exactly one world of `wasmon:plugin`, import from
//! `wasmon:plugin` only what that world offers and otherwise only `wasi:*`,
//! and its types must match the world's (checked structurally by
//! [`wit_component::targets`], the way a host's linker would).

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use wit_component::{ComponentEncoder, DecodedWasm};
use wit_parser::{PackageId, Resolve, WorldId, WorldItem};

use crate::format;

/// The package every plugin world belongs to.
const PACKAGE_PREFIX: &str = "wasmon:plugin/";

/// Wraps a core module (with the `component-type` sections wit-bindgen
/// embeds) into a component. It imports nothing from WASI: a
/// `wasm32-unknown-unknown` std has no system interface to import.
pub fn encode(core: &[u8]) -> Result<Vec<u8>> {
    ComponentEncoder::default()
        .validate(true)
        .module(core)?
        .encode()
}

/// The plugin contract, `wit/plugin.wit`, loaded.
pub struct Contract {
    resolve: Resolve,
    package: PackageId,
}

/// What a component turned out to be.
#[derive(Debug)]
pub struct Report {
    /// The world it targets (`receiver`, ...).
    pub world: String,
    /// Its imports: interfaces by their full name (`wasmon:plugin/log@0.1.0`).
    pub imports: Vec<String>,
    /// Its exports: functions by name, interfaces by full name.
    pub exports: Vec<String>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "    world   wasmon:plugin/{}", self.world)?;
        writeln!(f, "    exports {}", self.exports.join(", "))?;
        writeln!(f, "    imports {}", self.imports.join(", "))
    }
}

/// What [`Contract::inspect`] found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Inspection {
    /// The contract's package (`wasmon:plugin@0.1.0`).
    pub package: String,
    /// Bytes.
    pub size: u64,
    /// The world of `wasmon:plugin` it matches, if it matches one.
    pub world: Option<String>,
    /// Why it matches none (the loader would refuse it with this).
    pub world_error: Option<String>,
    /// Imports: interfaces by full name with version.
    pub imports: Vec<String>,
    /// Exports: functions by name, interfaces by full name.
    pub exports: Vec<String>,
    /// What the imports let it do, and what the host makes of that.
    pub capabilities: Vec<Capability>,
}

/// One thing a plugin asks to be able to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Capability {
    /// A short name: `outbound-http`, `network`, `filesystem`...
    pub name: &'static str,
    /// What the wasmon host does about it.
    pub host: &'static str,
    /// The imports that ask for it.
    pub imports: Vec<String>,
}

/// Capabilities by interface (name without version), most specific first.
/// `wasi:io`, `wasi:http/types` and friends carry no capability of their
/// own: they are the plumbing of the interfaces that do.
const CAPABILITIES: &[(&str, &str, &str)] = &[
    (
        "wasmon:plugin/log",
        "log",
        "writes to the agent's log, tagged with the instance",
    ),
    (
        "wasmon:plugin/config",
        "config",
        "reads its instance's config table from the agent config",
    ),
    ("wasmon:plugin/clock", "clock", "reads the agent's clock"),
    (
        "wasmon:plugin/query",
        "query",
        "runs PromQL instant queries on the agent's store",
    ),
    (
        "wasi:http/outgoing-handler",
        "outbound-http",
        "HTTP requests, only to the instance's allow_hosts",
    ),
    (
        "wasi:sockets/ip-name-lookup",
        "dns",
        "name lookups, for connections to allow_hosts",
    ),
    (
        "wasi:sockets/",
        "network",
        "raw TCP sockets, only to allow_hosts addresses (UDP denied)",
    ),
    (
        "wasi:filesystem/",
        "filesystem",
        "denied: the host gives no directories",
    ),
    (
        "wasi:cli/environment",
        "environment",
        "empty: the host passes no variables or arguments",
    ),
    (
        "wasi:cli/std",
        "stdio",
        "stdin is empty, stdout/stderr are discarded",
    ),
    (
        "wasi:cli/terminal",
        "stdio",
        "stdin is empty, stdout/stderr are discarded",
    ),
    ("wasi:cli/exit", "exit", "exit ends the call with an error"),
    ("wasi:random/", "random", "random bytes from the host"),
    ("wasi:clocks/", "wasi-clocks", "wall and monotonic clocks"),
];

/// The capabilities that `imports` ask for, each once, in the table's order.
pub fn capabilities(imports: &[String]) -> Vec<Capability> {
    let mut found: Vec<Capability> = Vec::new();
    for import in imports {
        let unversioned = import.split('@').next().unwrap_or(import);
        let Some(&(_, name, host)) = CAPABILITIES
            .iter()
            .find(|(prefix, _, _)| unversioned.starts_with(prefix))
        else {
            continue;
        };
        match found.iter_mut().find(|c| c.name == name) {
            Some(c) => c.imports.push(import.clone()),
            None => found.push(Capability {
                name,
                host,
                imports: vec![import.clone()],
            }),
        }
    }
    let order = |c: &Capability| CAPABILITIES.iter().position(|(_, n, _)| *n == c.name);
    found.sort_by_key(order);
    found
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "size          {} bytes ({:.1} KiB)",
            self.size,
            self.size as f64 / 1024.0
        )?;
        match (&self.world, &self.world_error) {
            (Some(world), _) => writeln!(f, "world         {world} ({})", self.package)?,
            (None, Some(why)) => writeln!(f, "world         none: {why}")?,
            (None, None) => writeln!(f, "world         none")?,
        }
        writeln!(f, "exports")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "imports")?;
        for i in &self.imports {
            writeln!(f, "  {i}")?;
        }
        writeln!(f, "capabilities")?;
        for c in &self.capabilities {
            writeln!(f, "  {:<14}{}", c.name, c.host)?;
        }
        Ok(())
    }
}

impl Contract {
    /// Parses the WIT directory.
    pub fn load(dir: &Path) -> Result<Contract> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(dir)
            .with_context(|| format!("parsing {}", dir.display()))?;
        Ok(Contract { resolve, package })
    }

    /// The contract this build of wasmon implements ([`crate::PLUGIN_WIT`]).
    pub fn embedded() -> Result<Contract> {
        let mut resolve = Resolve::default();
        let package = resolve
            .push_str("wit/plugin.wit", crate::PLUGIN_WIT)
            .context("parsing the embedded wit/plugin.wit")?;
        Ok(Contract { resolve, package })
    }

    /// Everything a plugin author wants to know about a file: what it is,
    /// what it imports and exports, the world it matches (or why none), and
    /// the capabilities its imports ask for. Fails only when the bytes are
    /// not a component at all.
    pub fn inspect(&self, bytes: &[u8]) -> Result<Inspection> {
        format::check_bytes(bytes)?;
        let (decoded, root) =
            match wit_component::decode(bytes).context("decoding the component")? {
                DecodedWasm::Component(resolve, world) => (resolve, world),
                DecodedWasm::WitPackage(..) => bail!("a WIT package, not a component"),
            };
        let imports = names(&decoded, decoded.worlds[root].imports.iter());
        let exports = names(&decoded, decoded.worlds[root].exports.iter());
        let (world, world_error) = match self.check(bytes) {
            Ok(report) => (Some(report.world), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        };
        let capabilities = capabilities(&imports);
        Ok(Inspection {
            package: self.package_name(),
            size: bytes.len() as u64,
            world,
            world_error,
            imports,
            exports,
            capabilities,
        })
    }

    /// Validates `component` and checks it against the world it exports.
    pub fn check(&self, component: &[u8]) -> Result<Report> {
        format::check_bytes(component)?;
        wasmparser::Validator::new()
            .validate_all(component)
            .context("invalid component")?;
        wasmparser::Validator::new_with_features(host_features())
            .validate_all(component)
            .context(
                "the wasmon agent cannot run it: it uses a WebAssembly feature the agent's \
                 wasmtime does not enable (no component-model async, threads or GC)",
            )?;
        let (decoded, root) = match wit_component::decode(component)? {
            DecodedWasm::Component(resolve, world) => (resolve, world),
            DecodedWasm::WitPackage(..) => bail!("a WIT package, not a component"),
        };
        let imports = names(&decoded, decoded.worlds[root].imports.iter());
        let exports = names(&decoded, decoded.worlds[root].exports.iter());
        format::check_contract_version(imports.iter().map(String::as_str))?;
        let exported: BTreeSet<&str> = exports.iter().map(String::as_str).collect();

        // The world is the one whose exports the component has.
        let worlds: Vec<WorldId> = self.resolve.packages[self.package]
            .worlds
            .values()
            .copied()
            .filter(|&w| {
                let own = names(&self.resolve, self.resolve.worlds[w].exports.iter());
                own.iter().all(|e| exported.contains(e.as_str()))
            })
            .collect();
        let world = match worlds.as_slice() {
            [one] => *one,
            [] => bail!(format::NotAPlugin::OtherWorld { exports }),
            _ => bail!("exports {exports:?}, which fits several worlds"),
        };
        let world_name = self.resolve.worlds[world].name.clone();
        let offered = names(&self.resolve, self.resolve.worlds[world].imports.iter());
        for import in &imports {
            if import.starts_with(PACKAGE_PREFIX) {
                if !offered.contains(import) {
                    bail!("imports {import}, which world {world_name} does not offer");
                }
            } else if !import.starts_with("wasi:") {
                bail!("imports {import}: a plugin may import only wasmon:plugin and wasi:*");
            } else if !host_provides(import) {
                bail!(
                    "imports {import}, which the wasmon agent does not provide (it links \
                     WASI 0.2: io, clocks, random, cli, filesystem, sockets, and \
                     http/types and http/outgoing-handler)"
                );
            }
        }

        self.check_types(world, decoded, root, component)
            .with_context(|| format!("does not type-check against world {world_name}"))?;
        Ok(Report {
            world: world_name,
            imports,
            exports,
        })
    }

    /// The structural check: the world, plus whatever `wasi:*` the component
    /// imports (the host links WASI and filters it), must accept the
    /// component. The component's own view of `wasmon:plugin` is merged into
    /// the contract first, so each interface is one and the same on both
    /// sides.
    fn check_types(
        &self,
        world: WorldId,
        decoded: Resolve,
        root: WorldId,
        component: &[u8],
    ) -> Result<()> {
        let mut resolve = self.resolve.clone();
        let remap = resolve.merge(decoded)?;
        let root = remap.worlds[root.index()].context("component world lost in merge")?;
        let wasi: Vec<_> = resolve.worlds[root]
            .imports
            .iter()
            .filter(|(key, item)| {
                matches!(item, WorldItem::Interface { .. })
                    && !resolve.name_world_key(key).starts_with(PACKAGE_PREFIX)
            })
            .map(|(key, item)| (key.clone(), item.clone()))
            .collect();
        // `resolve` is our own copy: widen the world in place.
        resolve.worlds[world].imports.extend(wasi);
        wit_component::targets(&resolve, world, component, false)
    }

    fn package_name(&self) -> String {
        self.resolve.packages[self.package].name.to_string()
    }

    /// How WIT outside the contract names one of its worlds or interfaces:
    /// `wasmon:plugin/receiver@0.1.0`.
    pub fn qualified(&self, item: &str) -> String {
        let name = &self.resolve.packages[self.package].name;
        match &name.version {
            Some(v) => format!("{}:{}/{item}@{v}", name.namespace, name.name),
            None => format!("{}:{}/{item}", name.namespace, name.name),
        }
    }

    /// The function a world exports (`notify` for `receiver`).
    pub fn export_function(&self, world: &str) -> Result<String> {
        let Some(&id) = self.resolve.packages[self.package].worlds.get(world) else {
            bail!("no world {world} in {}", self.package_name());
        };
        let funcs: Vec<String> = self.resolve.worlds[id]
            .exports
            .values()
            .filter_map(|item| match item {
                WorldItem::Function(f) => Some(f.name.clone()),
                _ => None,
            })
            .collect();
        match funcs.as_slice() {
            [one] => Ok(one.clone()),
            _ => bail!("world {world} exports {funcs:?}, not one function"),
        }
    }
}

/// The WebAssembly features the agent's wasmtime validates components
/// with: wasmtime 48's defaults (`WASM3` and the component model) less what
/// the agent's build leaves out — the `gc` and `threads` cargo features and
/// component-model async (no `concurrency_support`). A component that needs
/// more (QuickJS's default async runtime uses `task.cancel`) compiles
/// nowhere in the agent, so the build says so instead of the loader.
fn host_features() -> wasmparser::WasmFeatures {
    use wasmparser::WasmFeatures as F;
    (F::WASM3 | F::COMPONENT_MODEL)
        - (F::GC
            | F::GC_TYPES
            | F::EXCEPTIONS
            | F::LEGACY_EXCEPTIONS
            | F::THREADS
            | F::SHARED_EVERYTHING_THREADS
            | F::STACK_SWITCHING
            | F::CM_ASYNC
            | F::CM_ASYNC_STACKFUL
            | F::CM_MORE_ASYNC_BUILTINS
            | F::CM_THREADING
            | F::CM_ERROR_CONTEXT)
}

/// The WASI interfaces the agent's linker defines (`wasmtime_wasi::p2` and
/// `wasmtime_wasi_http::p2::add_only_http_to_linker_async`), matched like
/// wasmtime matches them: any 0.2.x version.
const HOST_WASI: &[&str] = &[
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
    "wasi:http/types",
    "wasi:http/outgoing-handler",
];

fn host_provides(import: &str) -> bool {
    let Some((interface, version)) = import.split_once('@') else {
        return false;
    };
    let minor_02 = version
        .strip_prefix("0.2.")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()));
    minor_02 && HOST_WASI.contains(&interface)
}

/// Import or export names: interfaces by full name, functions by name.
fn names<'a>(
    resolve: &Resolve,
    items: impl Iterator<Item = (&'a wit_parser::WorldKey, &'a WorldItem)>,
) -> Vec<String> {
    items
        .filter(|(_, item)| !matches!(item, WorldItem::Type { .. }))
        .map(|(key, _)| resolve.name_world_key(key))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contract() -> Contract {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        Contract::load(&root.join("wit")).unwrap()
    }

    #[test]
    fn contract_has_the_four_worlds() {
        let c = contract();
        let mut worlds: Vec<&str> = c.resolve.packages[c.package]
            .worlds
            .keys()
            .map(String::as_str)
            .collect();
        worlds.sort();
        assert_eq!(
            worlds,
            [
                "health-check",
                "metric-check",
                "receiver",
                "rollback-action"
            ]
        );
    }

    #[test]
    fn host_wasi_is_any_0_2_release_of_a_linked_interface() {
        assert!(host_provides("wasi:http/types@0.2.12"));
        assert!(host_provides("wasi:io/poll@0.2.0"));
        assert!(!host_provides("wasi:io/poll"), "unversioned");
        assert!(!host_provides("wasi:http/types@0.3.0"), "WASI 0.3");
        assert!(
            !host_provides("wasi:io/poll@0.2.12-wasmon"),
            "a pre-release"
        );
        assert!(!host_provides("wasi:keyvalue/store@0.2.0"), "not linked");
        assert!(
            !host_provides("wasi:http/incoming-handler@0.2.0"),
            "an export"
        );
    }

    #[test]
    fn worlds_export_one_function_each() {
        let c = Contract::embedded().unwrap();
        assert_eq!(c.export_function("receiver").unwrap(), "notify");
        assert_eq!(c.export_function("rollback-action").unwrap(), "rollback");
        assert!(c.export_function("nope").is_err());
        assert_eq!(c.qualified("receiver"), "wasmon:plugin/receiver@0.1.0");
    }

    #[test]
    fn only_a_component_of_one_world_passes() {
        let empty_module = b"\0asm\x01\0\0\0";
        assert!(contract().check(empty_module).is_err(), "a core module");
        let empty_component = encode(empty_module).unwrap();
        let err = contract().check(&empty_component).unwrap_err();
        assert!(
            matches!(
                err.downcast_ref::<format::NotAPlugin>(),
                Some(format::NotAPlugin::OtherWorld { exports }) if exports.is_empty()
            ),
            "{err:#}"
        );
    }
}
