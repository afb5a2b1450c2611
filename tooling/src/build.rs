//! `wasmon plugin build [DIR]`: one route per language, each ending in a
//! component that is checked against the contract like `plugin inspect`.
//!
//! A plugin directory has a `wasmon-plugin.json` (`{"name", "world",
//! "lang"}`, written by `plugin new`); without one, the language is detected
//! from the files (`Cargo.toml`, `app.js`, `app.py`, `*.c`) and the world
//! must be given. The build writes the contract into `DIR/wit/plugin.wit`
//! first, so every route compiles against the WIT the agent implements, and
//! its scratch files into `DIR/build/`. Routes (see
//! `../shared/WASM-TOOLCHAIN.md`):
//!
//! - Rust: [`crate::rust::Toolchain`] (`wasm32-wasip2`, else Debian's
//!   rustc-web with `-Zbuild-std`), wrapped by wit-component if needed, in
//!   the machine's shared target dir ([`crate::cache::RustTarget`]), with
//!   the shipped SDK written into the plugin when it uses it
//!   ([`crate::sdk`]);
//! - C: [`crate::c`]: `wit-bindgen c` for the bindings (with `wasi:http`),
//!   the HTTP helpers, zig's clang (PyPI `ziglang`, or `zig` on PATH) to a
//!   reactor core module, wit-component to a component;
//! - JavaScript: [`crate::js`] — QuickJS (componentize-qjs, the default)
//!   or StarlingMonkey (`jco componentize`, pinned 1.34.0), per the
//!   manifest's `engine`;
//! - Python: [`crate::python`] — `componentize-py componentize` with the
//!   `wasmon` package (HTTP over `wasi:http`).

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::RustTarget;
use crate::contract::{self, Contract, Inspection};
use crate::WORLDS;

/// The manifest `plugin new` writes.
pub const MANIFEST: &str = "wasmon-plugin.json";

/// A plugin's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Rust,
    C,
    Js,
    Python,
}

impl Lang {
    pub fn parse(s: &str) -> Result<Lang> {
        Ok(match s {
            "rust" => Lang::Rust,
            "c" => Lang::C,
            "js" | "javascript" => Lang::Js,
            "python" | "py" => Lang::Python,
            _ => bail!("unknown language {s:?}: expected rust, c, js or python"),
        })
    }
}

impl fmt::Display for Lang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lang::Rust => "rust",
            Lang::C => "c",
            Lang::Js => "js",
            Lang::Python => "python",
        })
    }
}

/// `wasmon-plugin.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name: the component is `<name>.wasm`.
    pub name: String,
    /// The world it targets (`receiver`, `health-check`, ...).
    pub world: String,
    pub lang: Lang,
    /// JavaScript only: `quickjs` (default) or `starlingmonkey`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<crate::js::Engine>,
}

impl Manifest {
    /// Reads `DIR/wasmon-plugin.json`, or detects what it would say.
    pub fn for_dir(dir: &Path, world: Option<&str>) -> Result<Manifest> {
        let path = dir.join(MANIFEST);
        let mut manifest = if path.is_file() {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
        } else {
            let lang = detect(dir)?;
            let Some(world) = world else {
                bail!(
                    "{} has no {MANIFEST}: give the world with --world ({})",
                    dir.display(),
                    WORLDS.join(", ")
                );
            };
            let name = fs::canonicalize(dir)
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "plugin".into());
            Manifest {
                name,
                world: world.into(),
                lang,
                engine: None,
            }
        };
        if let Some(w) = world {
            manifest.world = w.into();
        }
        if manifest.engine.is_some() && manifest.lang != Lang::Js {
            bail!(
                "{}: \"engine\" applies to JavaScript plugins only (lang is {})",
                path.display(),
                manifest.lang
            );
        }
        if !WORLDS.contains(&manifest.world.as_str()) {
            bail!(
                "{}: unknown world {:?}: expected one of {}",
                path.display(),
                manifest.world,
                WORLDS.join(", ")
            );
        }
        Ok(manifest)
    }
}

/// The language of the plugin in `dir`, from its files.
pub fn detect(dir: &Path) -> Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(Lang::Rust);
    }
    if dir.join("app.js").is_file() || dir.join("package.json").is_file() {
        return Ok(Lang::Js);
    }
    if dir.join("app.py").is_file() {
        return Ok(Lang::Python);
    }
    let has_c = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .flatten()
        .any(|e| e.path().extension().is_some_and(|x| x == "c"));
    if has_c {
        return Ok(Lang::C);
    }
    bail!(
        "cannot tell the language of {}: no {MANIFEST}, Cargo.toml, app.js, app.py or *.c",
        dir.display()
    )
}

/// What a build produced.
pub struct Built {
    pub path: PathBuf,
    pub lang: Lang,
    pub seconds: f64,
    pub inspection: Inspection,
}

/// Builds the plugin in `dir` into `out` (default `DIR/<name>.wasm`) and
/// checks it against its world.
pub fn build(dir: &Path, out: Option<&Path>, world: Option<&str>) -> Result<Built> {
    let started = Instant::now();
    let manifest = Manifest::for_dir(dir, world)?;
    let dir = fs::canonicalize(dir).with_context(|| format!("{}", dir.display()))?;
    let wit = dir.join("wit");
    // Unchanged, the file keeps its mtime: a crate that reads it from a
    // `generate!` is not recompiled for nothing.
    crate::cache::write_if_changed(&wit.join("plugin.wit"), crate::PLUGIN_WIT.as_bytes())?;
    let scratch = dir.join("build");
    fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;

    let component = match manifest.lang {
        Lang::Rust => build_rust(&dir, &scratch)?,
        Lang::C => crate::c::build(&dir, &scratch, &manifest.world)?,
        Lang::Js => crate::js::build(
            &dir,
            &scratch,
            &manifest.world,
            manifest.engine.unwrap_or_default(),
        )?,
        Lang::Python => crate::python::build(&dir, &scratch, &manifest.world)?,
    };
    let contract = Contract::embedded()?;
    let inspection = contract.inspect(&component)?;
    match (&inspection.world, &inspection.world_error) {
        (Some(w), _) if *w == manifest.world => {}
        (Some(w), _) => bail!(
            "built a component of world {w}, but {} says {}",
            MANIFEST,
            manifest.world
        ),
        (None, why) => bail!(
            "the component does not fit world {}: {}",
            manifest.world,
            why.as_deref().unwrap_or("no world matches")
        ),
    }
    let path = match out {
        Some(p) if p.is_dir() => p.join(format!("{}.wasm", manifest.name)),
        Some(p) => p.to_path_buf(),
        None => dir.join(format!("{}.wasm", manifest.name)),
    };
    fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
    Ok(Built {
        path,
        lang: manifest.lang,
        seconds: started.elapsed().as_secs_f64(),
        inspection,
    })
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Rust: the crate in `dir` (its own workspace), in the machine's shared
/// target dir for the toolchain (`DIR/build/target` without a cache dir).
fn build_rust(dir: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let toolchain = crate::rust::Toolchain::detect()?;
    eprintln!("guest toolchain: {toolchain}");
    let path = dir.join("Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", path.display()))?;
    let (package, lib_name) =
        names(&manifest).with_context(|| format!("no [package] name in {}", path.display()))?;
    crate::sdk::prepare(dir, &manifest).with_context(|| format!("{}", path.display()))?;

    let target = RustTarget::new(&toolchain.cache_key()?, &scratch.join("target"))?;
    let lock = target.lock()?;
    target.claim(toolchain.target(), "release", &package, dir)?;
    let cold = !target.is_warm();
    if cold {
        eprintln!(
            "first Rust plugin build with this toolchain on this machine: {} and the \
             dependencies are built once into {} (2-5 min on 2 cores); later builds of \
             any plugin reuse them",
            if toolchain.emits_components() {
                "the SDK"
            } else {
                "std for wasm"
            },
            target.dir.display()
        );
    }
    let started = Instant::now();
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo.current_dir(dir);
    let wasm = toolchain.build(cargo, &[], &target.dir, "release", &lib_name)?;
    // Read before unlocking: a plugin of the same name built next overwrites it.
    let bytes = read(&wasm)?;
    drop(lock);
    target.mark_warm();
    if cold {
        eprintln!(
            "first build done in {:.0}s; the shared parts are cached",
            started.elapsed().as_secs_f64()
        );
    }
    if toolchain.emits_components() {
        Ok(bytes)
    } else {
        contract::encode(&bytes).context("making a component of the core module")
    }
}

/// The package name and the library name (`[lib] name`, else the package
/// name with `_`).
fn names(manifest: &toml::Table) -> Option<(String, String)> {
    let name = |section: &str| {
        manifest
            .get(section)?
            .get("name")?
            .as_str()
            .map(String::from)
    };
    let package = name("package")?;
    let lib = name("lib").unwrap_or_else(|| package.replace('-', "_"));
    Some((package, lib))
}

/// A tool: `$ENV` if set, else the first of `candidates` that exists (a
/// path) or is on PATH (a bare name).
pub(crate) fn tool(
    env: &str,
    candidates: &[PathBuf],
    what: &str,
    install: &str,
) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    for c in candidates {
        if c.components().count() > 1 {
            if c.is_file() {
                return Ok(c.clone());
            }
        } else if let Some(found) = on_path(c) {
            return Ok(found);
        }
    }
    bail!("{what} not found (set {env}, or install it: {install})")
}

pub(crate) fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

pub(crate) fn home_bin(rel: &str) -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_manifest() {
        let names = |text: &str| names(&text.parse().unwrap());
        assert_eq!(
            names("[package]\nname = \"my-plugin\"\n[lib]\ncrate-type = [\"cdylib\"]\n"),
            Some(("my-plugin".into(), "my_plugin".into()))
        );
        assert_eq!(
            names("[lib]\nname = \"y\"\n[package]\nname = \"x\"\n"),
            Some(("x".into(), "y".into()))
        );
        assert_eq!(names("[lib]\nname = \"y\"\n"), None);
    }

    #[test]
    fn language_detection_and_manifest_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = detect(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot tell the language"), "{err}");
        fs::write(dir.path().join("plugin.c"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Lang::C);
        let err = Manifest::for_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("--world"), "{err}");
        assert_eq!(
            Manifest::for_dir(dir.path(), Some("receiver"))
                .unwrap()
                .lang,
            Lang::C
        );
        fs::write(
            dir.path().join(MANIFEST),
            r#"{"name":"x","world":"nope","lang":"c"}"#,
        )
        .unwrap();
        let err = Manifest::for_dir(dir.path(), None).unwrap_err().to_string();
        assert!(err.contains("unknown world \"nope\""), "{err}");
        fs::write(
            dir.path().join(MANIFEST),
            r#"{"name":"x","world":"receiver","lang":"cobol"}"#,
        )
        .unwrap();
        let err = format!("{:#}", Manifest::for_dir(dir.path(), None).unwrap_err());
        assert!(err.contains("cobol"), "{err}");
    }
}
