//! What `plugin build` adds to a JavaScript or Python plugin so that it can
//! reach the network: a build world that is the plugin's world plus
//! `wasi:http/outgoing-handler`, the WASI WIT that world needs, and (for
//! QuickJS) the rewrite of import versions after the build.
//!
//! The files ship inside the binary (`guest/`), so a plugin directory made by
//! `plugin new` builds anywhere `wasmon` runs.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The WASI release of `guest/wasi/` (what wasmtime-wasi-http 48 implements).
pub const WASI_VERSION: &str = "0.2.12";

/// `guest/wasi/`: the interfaces `wasi:http/types` uses, worlds removed.
const WASI: [(&str, &str); 3] = [
    ("http.wit", include_str!("../guest/wasi/http.wit")),
    ("io.wit", include_str!("../guest/wasi/io.wit")),
    ("clocks.wit", include_str!("../guest/wasi/clocks.wit")),
];

/// Writes `scratch/wit/`: `world.wit`, package `wasmon:build`, with a world
/// named `world` that includes the contract's and imports
/// `wasi:http/outgoing-handler`; `deps/` holds the contract and the WASI
/// packages, labelled `@wasi_version` (the real [`WASI_VERSION`], or a
/// placeholder that [`rename_import_versions`] replaces after the build).
/// Returns the directory.
pub fn write_build_wit(scratch: &Path, world: &str, wasi_version: &str) -> Result<PathBuf> {
    let wit = scratch.join("wit");
    let deps = wit.join("deps");
    if wit.exists() {
        fs::remove_dir_all(&wit).with_context(|| format!("clearing {}", wit.display()))?;
    }
    fs::create_dir_all(&deps).with_context(|| format!("creating {}", deps.display()))?;
    let label = |text: &str| text.replace(&format!("@{WASI_VERSION}"), &format!("@{wasi_version}"));
    let world_wit = format!(
        "// Written by `wasmon plugin build`: the plugin's world plus outbound HTTP.\n\
         package wasmon:build;\n\n\
         world {world} {{\n    include {contract};\n    \
         import wasi:http/outgoing-handler@{wasi_version};\n}}\n",
        contract = crate::contract::Contract::embedded()?.qualified(world),
    );
    let mut files = vec![
        (wit.join("world.wit"), world_wit),
        (deps.join("plugin.wit"), crate::PLUGIN_WIT.to_string()),
    ];
    files.extend(
        WASI.iter()
            .map(|(name, text)| (deps.join(name), label(text))),
    );
    for (path, text) in files {
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(wit)
}

/// Rewrites the version of every top-level import whose name contains
/// `@from` to `@to` (`wasi:io/poll@0.2.12-wasmon` → `wasi:io/poll@0.2.11`),
/// leaving every other byte of the component as it was. Fails if the
/// renamed imports would collide with imports the component already has.
pub fn rename_import_versions(component: &[u8], from: &str, to: &str) -> Result<Vec<u8>> {
    use wasm_encoder::{ComponentExternName, ComponentImportSection, Encode};

    let (from, to) = (format!("@{from}"), format!("@{to}"));
    let mut out = component
        .get(..8)
        .context("not a component: too short")?
        .to_vec();
    let mut names = Vec::new();
    let mut renamed = 0;
    for section in top_level_sections(component)? {
        let (id, body) = section?;
        if id != COMPONENT_IMPORT_SECTION {
            out.push(id);
            body.len().encode(&mut out);
            out.extend_from_slice(body);
            continue;
        }
        let reader =
            wasmparser::ComponentImportSectionReader::new(wasmparser::BinaryReader::new(body, 0))
                .context("reading the component's imports")?;
        let mut imports = ComponentImportSection::new();
        for import in reader {
            let import = import.context("reading the component's imports")?;
            let mut name = ComponentExternName::from(import.name);
            let full = import.name.full_name();
            if import.name.implements.is_none() && full.contains(&from) {
                name.name = full.replace(&from, &to).into();
                name.version_suffix = None;
                renamed += 1;
            }
            names.push(name.name.to_string());
            imports.import(name, import.ty.into());
        }
        // `encode` writes the section's size and contents; the id is ours.
        out.push(id);
        imports.encode(&mut out);
    }
    names.sort();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "renaming imports {from} to {to} would import {} twice",
            w[0]
        );
    }
    if renamed == 0 {
        bail!("the component imports nothing labelled {from}");
    }
    Ok(out)
}

/// `ComponentImportSection`'s id in the component binary format.
const COMPONENT_IMPORT_SECTION: u8 = 10;

/// The top-level sections of a component: (id, contents). Nested modules
/// and components are sections too and are not entered.
fn top_level_sections(bytes: &[u8]) -> Result<impl Iterator<Item = Result<(u8, &[u8])>> + '_> {
    if !wasmparser::Parser::is_component(bytes) {
        bail!("not a WebAssembly component");
    }
    let mut reader = wasmparser::BinaryReader::new(&bytes[8..], 8);
    Ok(std::iter::from_fn(move || {
        if reader.eof() {
            return None;
        }
        let section = (|| {
            let id = reader.read_u8()?;
            let len = reader.read_var_u32()? as usize;
            let body = reader.read_bytes(len)?;
            Ok::<_, wasmparser::BinaryReaderError>((id, body))
        })();
        Some(section.context("reading a section of the component"))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_world_parses_and_adds_http_to_every_world() {
        let dir = tempfile::tempdir().unwrap();
        for world in crate::WORLDS {
            for version in [WASI_VERSION, "0.2.12-wasmon"] {
                let wit = write_build_wit(dir.path(), world, version).unwrap();
                let mut resolve = wit_parser::Resolve::default();
                let (pkg, _) = resolve.push_dir(&wit).unwrap();
                let id = resolve.select_world(&[pkg], Some(world)).unwrap();
                let imports: Vec<String> = resolve.worlds[id]
                    .imports
                    .keys()
                    .map(|k| resolve.name_world_key(k))
                    .collect();
                assert!(
                    imports.contains(&format!("wasi:http/outgoing-handler@{version}")),
                    "{world}: {imports:?}"
                );
                assert!(
                    imports.contains(&"wasmon:plugin/log@0.1.0".to_string()),
                    "{world}: {imports:?}"
                );
            }
        }
    }

    /// A component importing `a:b/c@0.2.12-x` and `a:b/d@1.0.0`.
    fn component(first: &str) -> Vec<u8> {
        use wasm_encoder::{
            Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
        };
        let mut types = ComponentTypeSection::new();
        types.instance(&InstanceType::new());
        types.instance(&InstanceType::new());
        let mut imports = ComponentImportSection::new();
        imports.import(first, ComponentTypeRef::Instance(0));
        imports.import("a:b/d@1.0.0", ComponentTypeRef::Instance(1));
        let mut c = Component::new();
        c.section(&types);
        c.section(&imports);
        c.finish()
    }

    fn import_names(bytes: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            if let wasmparser::Payload::ComponentImportSection(r) = payload.unwrap() {
                for i in r {
                    names.push(i.unwrap().name.full_name().into_owned());
                }
            }
        }
        names
    }

    #[test]
    fn renames_only_the_labelled_imports() {
        let renamed =
            rename_import_versions(&component("a:b/c@0.2.12-x"), "0.2.12-x", "0.2.11").unwrap();
        wasmparser::Validator::new().validate_all(&renamed).unwrap();
        assert_eq!(import_names(&renamed), ["a:b/c@0.2.11", "a:b/d@1.0.0"]);

        let err =
            rename_import_versions(&component("a:b/c@0.2.12"), "0.2.12-x", "0.2.11").unwrap_err();
        assert!(err.to_string().contains("nothing labelled"), "{err}");
        let err = rename_import_versions(&component("a:b/d@9-x"), "9-x", "1.0.0").unwrap_err();
        assert!(err.to_string().contains("a:b/d@1.0.0 twice"), "{err}");
        assert!(rename_import_versions(b"\0asm\x01\0\0\0", "a", "b").is_err());
    }
}
