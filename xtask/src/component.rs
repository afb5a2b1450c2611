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

impl Contract {
    /// Parses the WIT directory.
    pub fn load(dir: &Path) -> Result<Contract> {
        let mut resolve = Resolve::default();
        let (package, _) = resolve
            .push_dir(dir)
            .with_context(|| format!("parsing {}", dir.display()))?;
        Ok(Contract { resolve, package })
    }

    /// Validates `component` and checks it against the world it exports.
    pub fn check(&self, component: &[u8]) -> Result<Report> {
        wasmparser::Validator::new()
            .validate_all(component)
            .context("invalid component")?;
        let (decoded, root) = match wit_component::decode(component)? {
            DecodedWasm::Component(resolve, world) => (resolve, world),
            DecodedWasm::WitPackage(..) => bail!("a WIT package, not a component"),
        };
        let imports = names(&decoded, decoded.worlds[root].imports.iter());
        let exports = names(&decoded, decoded.worlds[root].exports.iter());
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
            [] => bail!(
                "exports {exports:?}, which is not every export of any world of {}",
                self.package_name()
            ),
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
    fn only_a_component_of_one_world_passes() {
        let empty_module = b"\0asm\x01\0\0\0";
        assert!(contract().check(empty_module).is_err(), "a core module");
        let empty_component = encode(empty_module).unwrap();
        let err = contract().check(&empty_component).unwrap_err();
        assert!(err.to_string().contains("not every export"), "{err:#}");
    }
}
