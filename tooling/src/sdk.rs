//! The Rust SDK (`sdk/` in the repository), shipped inside the binary so
//! that a crate made by `wasmon plugin new --lang rust` can use
//! `wasmon_sdk` (its `http`, `alertmanager`, `config`...) without this
//! repository.
//!
//! `plugin new` and every `plugin build` write it into the plugin directory
//! at [`DIR`] (generated like `wit/plugin.wit`, and ignored by the plugin's
//! `.gitignore`), and the plugin's `Cargo.toml` depends on it by path with
//! an exact version:
//!
//! ```toml
//! wasmon-sdk = { path = ".wasmon/sdk", version = "=0.1.0", features = ["receiver"] }
//! ```
//!
//! The version pins it: a wasmon that ships another SDK version refuses to
//! build the plugin and says how to move it, so an SDK update is always an
//! edit of the plugin's `Cargo.toml`. Inside the plugin directory the path
//! is the same for every plugin, so the shared target dir
//! ([`crate::cache::RustTarget`]) compiles the SDK once per machine and
//! world; the written copy's version carries a hash of its content
//! (`0.1.0+<hash>`), so two wasmon builds with different SDK sources never
//! share artifacts.
//!
//! The SDK's own path dependencies, the template engine (`template/`) and
//! Go's number spellings (`gofmt/`), travel inside it, at [`DEPS_DIR`]
//! below the SDK, so the plugin still depends on one directory.
//!
//! The first-party plugins keep building from `sdk/` in the repository.

use std::path::Path;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use toml::{Table, Value};

use crate::cache::write_if_changed;

/// The SDK's version: the workspace's, as the SDK is released with wasmon.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a plugin directory gets the SDK, relative to it.
pub const DIR: &str = ".wasmon/sdk";

/// The SDK's sources, by path inside the crate. A test checks that this
/// lists every file of `sdk/src`.
const SOURCES: &[(&str, &str)] = &[
    (
        "src/alertmanager.rs",
        include_str!("../../sdk/src/alertmanager.rs"),
    ),
    (
        "src/default.tmpl",
        include_str!("../../sdk/src/default.tmpl"),
    ),
    ("src/email.tmpl", include_str!("../../sdk/src/email.tmpl")),
    ("src/http.rs", include_str!("../../sdk/src/http.rs")),
    ("src/k8s.rs", include_str!("../../sdk/src/k8s.rs")),
    ("src/lib.rs", include_str!("../../sdk/src/lib.rs")),
    ("src/log.rs", include_str!("../../sdk/src/log.rs")),
    ("src/mail.rs", include_str!("../../sdk/src/mail.rs")),
    ("src/query.rs", include_str!("../../sdk/src/query.rs")),
    ("src/sha256.rs", include_str!("../../sdk/src/sha256.rs")),
    ("src/template.rs", include_str!("../../sdk/src/template.rs")),
];

/// Where the SDK's path dependencies go, relative to the SDK.
pub const DEPS_DIR: &str = "deps";

/// A crate of the workspace the SDK depends on by path: its package name,
/// the directory it is written to below [`DEPS_DIR`], its manifest and its
/// sources by path inside the crate. A test checks that these list every
/// file of their `src`.
struct Dep {
    name: &'static str,
    dir: &'static str,
    manifest: &'static str,
    sources: &'static [(&'static str, &'static str)],
}

const DEPS: &[Dep] = &[
    Dep {
        name: "wasmon-template",
        dir: "template",
        manifest: include_str!("../../template/Cargo.toml"),
        sources: &[
            ("src/exec.rs", include_str!("../../template/src/exec.rs")),
            ("src/funcs.rs", include_str!("../../template/src/funcs.rs")),
            ("src/lex.rs", include_str!("../../template/src/lex.rs")),
            ("src/lib.rs", include_str!("../../template/src/lib.rs")),
            ("src/parse.rs", include_str!("../../template/src/parse.rs")),
        ],
    },
    Dep {
        name: "wasmon-gofmt",
        dir: "gofmt",
        manifest: include_str!("../../gofmt/Cargo.toml"),
        sources: &[
            ("src/lib.rs", include_str!("../../gofmt/src/lib.rs")),
            ("src/time.rs", include_str!("../../gofmt/src/time.rs")),
        ],
    },
];

const SDK_MANIFEST: &str = include_str!("../../sdk/Cargo.toml");
const WORKSPACE_MANIFEST: &str = include_str!("../../Cargo.toml");

/// In the repository the SDK reads the contract from `../wit`; the shipped
/// copy carries it inside the crate, so that cargo tracks the file relative
/// to the package (an absolute path into another plugin's directory would
/// make every plugin rebuild the SDK).
const REPO_WIT_PATH: &str = r#"path: "../wit""#;
const SHIPPED_WIT_PATH: &str = r#"path: "wit""#;

/// The SDK crate as written into a plugin directory: (path inside the
/// crate, content).
pub fn files() -> Result<Vec<(String, String)>> {
    let mut files: Vec<(String, String)> = Vec::new();
    for (path, text) in SOURCES {
        let text = if *path == "src/lib.rs" {
            if !text.contains(REPO_WIT_PATH) {
                bail!("sdk/src/lib.rs no longer reads {REPO_WIT_PATH}: update tooling/src/sdk.rs");
            }
            text.replace(REPO_WIT_PATH, SHIPPED_WIT_PATH)
        } else {
            text.to_string()
        };
        files.push((path.to_string(), text));
    }
    files.push(("wit/plugin.wit".into(), crate::PLUGIN_WIT.into()));
    for dep in DEPS {
        for (path, text) in dep.sources {
            files.push((format!("{DEPS_DIR}/{}/{path}", dep.dir), text.to_string()));
        }
    }

    // Every manifest, unversioned, is hashed with the sources; each gets
    // the hash in its version.
    let manifests = |hash: Option<&str>| -> Result<Vec<(String, String)>> {
        let mut out = vec![("Cargo.toml".to_string(), manifest(SDK_MANIFEST, "", hash)?)];
        for dep in DEPS {
            let at = format!("{DEPS_DIR}/{}", dep.dir);
            out.push((
                format!("{at}/Cargo.toml"),
                manifest(dep.manifest, &at, hash)?,
            ));
        }
        Ok(out)
    };
    let mut hash = Sha256::new();
    for (path, text) in files.iter().chain(&manifests(None)?) {
        hash.update((path.len() as u64).to_le_bytes());
        hash.update(path);
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text);
    }
    let digest = hash.finalize();
    let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    files.extend(manifests(Some(&short))?);
    Ok(files)
}

/// A manifest of the SDK or of one of its [`DEPS`] (written at `at`
/// below the SDK, "" for the SDK) made standalone: the `workspace = true`
/// entries resolved from the workspace's manifest, so the dependency
/// versions have one home, and the path dependencies pointed at the copies
/// in [`DEPS_DIR`]. With `hash`, the version gets it as build metadata.
fn manifest(text: &str, at: &str, hash: Option<&str>) -> Result<String> {
    let sdk: Table = text.parse().context("parsing the SDK's manifests")?;
    let workspace: Table = WORKSPACE_MANIFEST
        .parse()
        .context("parsing the workspace Cargo.toml")?;
    let inherited = |section: &str| -> Table {
        workspace
            .get("workspace")
            .and_then(|w| w.get(section))
            .and_then(Value::as_table)
            .cloned()
            .unwrap_or_default()
    };
    let (ws_package, ws_deps) = (inherited("package"), inherited("dependencies"));

    let mut out = Table::new();
    for (key, value) in sdk {
        match key.as_str() {
            "package" => {
                let mut package = value.as_table().cloned().unwrap_or_default();
                for (field, v) in package.iter_mut() {
                    if is_inherited(v) {
                        *v = ws_package
                            .get(field)
                            .cloned()
                            .with_context(|| format!("workspace.package.{field} is missing"))?;
                    }
                }
                if let Some(hash) = hash {
                    package.insert("version".into(), Value::String(format!("{VERSION}+{hash}")));
                }
                package.insert("publish".into(), Value::Boolean(false));
                out.insert(key, Value::Table(package));
            }
            "dependencies" | "build-dependencies" => {
                let mut deps = Table::new();
                for (name, dep) in value.as_table().cloned().unwrap_or_default() {
                    deps.insert(name.clone(), resolve_dependency(&name, dep, &ws_deps, at)?);
                }
                out.insert(key, Value::Table(deps));
            }
            // Tests are not shipped; lints are the workspace's business.
            "dev-dependencies" | "lints" => {}
            _ => {
                out.insert(key, value);
            }
        }
    }
    let header = format!(
        "# The wasmon Rust SDK {VERSION}, written by `wasmon plugin build` from the copy\n\
         # inside the wasmon binary. Generated: edits are overwritten.\n\n"
    );
    Ok(header + &toml::to_string(&out).context("writing the SDK manifest")?)
}

fn is_inherited(v: &Value) -> bool {
    v.get("workspace").and_then(Value::as_bool) == Some(true)
}

/// A dependency with `workspace = true` replaced by the workspace's entry
/// (its own `features` and `optional` kept); one of [`DEPS`] becomes a path
/// to its copy, relative to `at` (where the depending manifest is written).
fn resolve_dependency(name: &str, dep: Value, workspace: &Table, at: &str) -> Result<Value> {
    if !is_inherited(&dep) {
        return Ok(dep);
    }
    if let Some(shipped) = DEPS.iter().find(|d| d.name == name) {
        let up = "../".repeat(at.split('/').filter(|c| !c.is_empty()).count());
        let mut t = Table::new();
        t.insert(
            "path".into(),
            Value::String(format!("{up}{DEPS_DIR}/{}", shipped.dir)),
        );
        // The SDK turns on the template crate's `regex` feature.
        if let Some(features) = dep.get("features") {
            t.insert("features".into(), features.clone());
        }
        return Ok(Value::Table(t));
    }
    let base = workspace
        .get(name)
        .with_context(|| format!("workspace.dependencies.{name} is missing"))?;
    let mut resolved = match base {
        Value::String(version) => {
            let mut t = Table::new();
            t.insert("version".into(), Value::String(version.clone()));
            t
        }
        Value::Table(t) => t.clone(),
        _ => bail!("workspace.dependencies.{name} is neither a version nor a table"),
    };
    if resolved.contains_key("path") || resolved.contains_key("git") {
        bail!("the SDK depends on {name} by path or git, which a plugin cannot reach");
    }
    let own = dep.as_table().cloned().unwrap_or_default();
    for (key, value) in own {
        match key.as_str() {
            "workspace" => {}
            "features" => {
                let mut features = resolved
                    .get("features")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for f in value.as_array().cloned().unwrap_or_default() {
                    if !features.contains(&f) {
                        features.push(f);
                    }
                }
                resolved.insert(key, Value::Array(features));
            }
            _ => {
                resolved.insert(key, value);
            }
        }
    }
    Ok(Value::Table(resolved))
}

/// Writes the SDK into `plugin_dir/.wasmon/sdk` (only the files that
/// changed, so that cargo sees an unchanged SDK as fresh).
pub fn write(plugin_dir: &Path) -> Result<()> {
    let root = plugin_dir.join(DIR);
    for (path, text) in files()? {
        write_if_changed(&root.join(path), text.as_bytes())?;
    }
    Ok(())
}

/// For `plugin build`: when the plugin's manifest depends on the shipped
/// SDK (a dependency with `path = ".wasmon/sdk"`), checks the version it
/// pins against the one this binary ships and writes the SDK. A plugin
/// that does not use it is left alone.
pub fn prepare(plugin_dir: &Path, manifest: &Table) -> Result<()> {
    let Some(deps) = manifest.get("dependencies").and_then(Value::as_table) else {
        return Ok(());
    };
    let uses_sdk = |dep: &Value| {
        dep.get("path")
            .and_then(Value::as_str)
            .is_some_and(|p| p.trim_start_matches("./").trim_end_matches('/') == DIR)
    };
    let Some((name, dep)) = deps.iter().find(|(_, dep)| uses_sdk(dep)) else {
        return Ok(());
    };
    if let Some(req) = dep.get("version").and_then(Value::as_str) {
        check_pin(name, req)?;
    }
    write(plugin_dir)
}

/// Refuses a plugin that pins an SDK version this binary does not ship.
fn check_pin(dependency: &str, req: &str) -> Result<()> {
    let parsed = semver::VersionReq::parse(req)
        .with_context(|| format!("Cargo.toml: dependency {dependency}: version {req:?}"))?;
    let shipped = semver::Version::parse(VERSION).context("the SDK's own version")?;
    if !parsed.matches(&shipped) {
        bail!(
            "Cargo.toml pins {dependency} to {req:?}, but this wasmon ships the SDK {VERSION}. \
             To move the plugin to SDK {VERSION}, set `version = \"={VERSION}\"` on that \
             dependency in Cargo.toml (see what changed in docs/plugin-guide.md); \
             to keep it, build it with a wasmon that ships the version it pins."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_source_is_shipped() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/src");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
            .collect();
        on_disk.sort();
        let shipped: Vec<String> = SOURCES.iter().map(|(p, _)| p.to_string()).collect();
        assert_eq!(shipped, on_disk, "update SOURCES in tooling/src/sdk.rs");
        for dep in DEPS {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(dep.dir)
                .join("src");
            let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| format!("src/{}", e.unwrap().file_name().to_string_lossy()))
                .collect();
            on_disk.sort();
            let shipped: Vec<String> = dep.sources.iter().map(|(p, _)| p.to_string()).collect();
            assert_eq!(shipped, on_disk, "update DEPS in tooling/src/sdk.rs");
        }
    }

    #[test]
    fn shipped_manifest_stands_alone() {
        let files = files().unwrap();
        let manifest = &files.iter().find(|(p, _)| p == "Cargo.toml").unwrap().1;
        let m: Table = manifest.parse().unwrap();
        assert!(!manifest.contains("workspace"), "{manifest}");
        let version = m["package"]["version"].as_str().unwrap();
        assert!(version.starts_with(&format!("{VERSION}+")), "{version}");
        assert_eq!(m["package"]["name"].as_str(), Some("wasmon-sdk"));
        // The dependency versions are the workspace's (one home).
        let ws: Table = WORKSPACE_MANIFEST.parse().unwrap();
        let ws_deps = &ws["workspace"]["dependencies"];
        assert_eq!(
            m["dependencies"]["wit-bindgen"]["version"],
            ws_deps["wit-bindgen"]["version"]
        );
        assert_eq!(
            m["dependencies"]["wasi"]["version"].as_str(),
            ws_deps["wasi"].as_str()
        );
        for world in [
            "receiver",
            "health-check",
            "rollback-action",
            "metric-check",
        ] {
            assert!(m["features"].get(world).is_some(), "{manifest}");
        }
        let lib = &files.iter().find(|(p, _)| p == "src/lib.rs").unwrap().1;
        assert!(!lib.contains(REPO_WIT_PATH) && lib.contains(SHIPPED_WIT_PATH));
        // The path dependencies point at the copies inside the SDK, with the
        // same content hash in their versions.
        assert_eq!(
            m["dependencies"]["wasmon-template"]["path"].as_str(),
            Some("deps/template")
        );
        // A path dependency keeps the features the SDK asks of it.
        assert_eq!(
            m["dependencies"]["wasmon-template"]["features"],
            Value::Array(vec![Value::String("regex".into())])
        );
        let get = |path: &str| -> Table {
            let text = &files.iter().find(|(p, _)| p == path).unwrap().1;
            assert!(!text.contains("workspace"), "{text}");
            text.parse().unwrap()
        };
        let template = get("deps/template/Cargo.toml");
        assert_eq!(
            template["dependencies"]["wasmon-gofmt"]["path"].as_str(),
            Some("../../deps/gofmt")
        );
        assert_eq!(template["package"]["version"].as_str(), Some(version));
        assert_eq!(
            get("deps/gofmt/Cargo.toml")["package"]["name"].as_str(),
            Some("wasmon-gofmt")
        );
    }

    #[test]
    fn written_sdk_is_stable_and_pins_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = |req: &str| -> Table {
            format!(
                "[dependencies]\nwasmon-sdk = {{ path = \".wasmon/sdk\", version = \"{req}\", features = [\"receiver\"] }}\n"
            )
            .parse()
            .unwrap()
        };
        prepare(tmp.path(), &manifest(&format!("={VERSION}"))).unwrap();
        let lib = tmp.path().join(DIR).join("src/lib.rs");
        let cargo = tmp.path().join(DIR).join("Cargo.toml");
        let version = |p: &Path| std::fs::read_to_string(p).unwrap();
        let first = version(&cargo);
        prepare(tmp.path(), &manifest(&format!("={VERSION}"))).unwrap();
        assert_eq!(version(&cargo), first, "same content, same version hash");
        assert!(lib.is_file());
        assert!(tmp.path().join(DIR).join("wit/plugin.wit").is_file());

        let err = prepare(tmp.path(), &manifest("=0.0.1"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("pins wasmon-sdk to \"=0.0.1\""), "{err}");
        assert!(err.contains(&format!("version = \"={VERSION}\"")), "{err}");

        // A plugin without the shipped SDK is left alone.
        let other = tempfile::tempdir().unwrap();
        prepare(
            other.path(),
            &"[dependencies]\nserde = \"1\"\n".parse().unwrap(),
        )
        .unwrap();
        assert!(!other.path().join(DIR).exists());
    }
}
