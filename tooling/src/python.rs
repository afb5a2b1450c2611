//! Python plugins: `componentize-py componentize app` against the build
//! world (the plugin's world plus `wasi:http`), with the `wasmon` package
//! (`guest/python/wasmon/`: `wasmon.http` over `wasi:http`) on the module
//! path. The standard library's `http.client` and `urllib.request` cannot
//! work in a component (no `ssl`, no socket the interpreter knows how to
//! open), so `wasmon.http` is the route out.
//!
//! componentize-py names a binding module after its interface and qualifies
//! it when two share a name; `wasi:http/types` and `wasmon:plugin/types`
//! would both be `types`, so they are named explicitly: the contract keeps
//! `wit_world.imports.types` (what every plugin imports), HTTP's is
//! `http_types` (what the SDK imports).
//!
//! componentize-py's app is `wasmon_entry` (`guest/python/entry.py`): app.py's
//! `WitWorld` with the world's function wrapped so that an uncaught
//! exception becomes a retryable failure with its message, where the
//! interpreter would otherwise trap with nothing but `unreachable`.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::build::tool;
use crate::contract::Contract;
use crate::guest;

/// `guest/python/wasmon/`: (path under the module dir, text).
const SDK: [(&str, &str); 3] = [
    (
        "wasmon/__init__.py",
        include_str!("../guest/python/wasmon/__init__.py"),
    ),
    (
        "wasmon/http.py",
        include_str!("../guest/python/wasmon/http.py"),
    ),
    (
        "wasmon/alertmanager.py",
        include_str!("../guest/python/wasmon/alertmanager.py"),
    ),
];

const ENTRY: &str = include_str!("../guest/python/entry.py");

/// Builds `DIR/app.py` for `world`.
pub fn build(dir: &Path, scratch: &Path, world: &str) -> Result<Vec<u8>> {
    let cpy = tool(
        "WASMON_COMPONENTIZE_PY",
        &["componentize-py".into()],
        "componentize-py",
        "pip install componentize-py==0.25.*",
    )?;
    let wit = guest::write_build_wit(scratch, world, guest::WASI_VERSION)?;
    let sdk = scratch.join("sdk");
    if sdk.exists() {
        fs::remove_dir_all(&sdk).with_context(|| format!("clearing {}", sdk.display()))?;
    }
    if !dir.join("app.py").is_file() {
        anyhow::bail!("no app.py in {}", dir.display());
    }
    let export = Contract::embedded()?.export_function(world)?;
    let entry = ENTRY
        .replace("{{EXPORT}}", &export)
        .replace("{{WORLD}}", world);
    let files = SDK
        .iter()
        .map(|&(rel, text)| (rel, text.to_string()))
        .chain([("wasmon_entry.py", entry)]);
    for (rel, text) in files {
        let path = sdk.join(rel);
        fs::create_dir_all(path.parent().expect("a file in a dir"))
            .with_context(|| format!("creating {}", sdk.display()))?;
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let contract_types = Contract::embedded()?.qualified("types");
    let http_types = format!("wasi:http/types@{}", guest::WASI_VERSION);
    let out = scratch.join("component.wasm");
    crate::run(
        Command::new(cpy)
            .arg("-d")
            .arg(&wit)
            .args(["-w", world, "--import-interface-name"])
            .arg(format!("{contract_types}=types"))
            .arg("--import-interface-name")
            .arg(format!("{http_types}=http_types"))
            .args(["componentize", "wasmon_entry", "-p"])
            .arg(dir)
            .arg("-p")
            .arg(&sdk)
            .arg("-o")
            .arg(&out),
    )?;
    fs::read(&out).with_context(|| format!("reading {}", out.display()))
}
