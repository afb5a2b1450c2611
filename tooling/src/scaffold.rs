//! `wasmon plugin new KIND NAME [--lang rust|js|python|c]`: a directory
//! with a buildable plugin of one world, its `wasmon-plugin.json`, the
//! contract in `wit/plugin.wit` and a README saying how to build, inspect
//! and run it. The templates are compiled into the binary (`include_str!`),
//! so scaffolding works with nothing but `wasmon`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::build::{Lang, Manifest, MANIFEST};
use crate::WORLDS;

/// The source template of `lang` for `world`: (file name, text).
fn source(lang: Lang, world: &str) -> (&'static str, &'static str) {
    macro_rules! per_world {
        ($dir:literal, $ext:literal, $file:literal) => {
            match world {
                "receiver" => (
                    $file,
                    include_str!(concat!("../templates/", $dir, "/receiver.", $ext)),
                ),
                "health-check" => (
                    $file,
                    include_str!(concat!("../templates/", $dir, "/health-check.", $ext)),
                ),
                "rollback-action" => (
                    $file,
                    include_str!(concat!("../templates/", $dir, "/rollback-action.", $ext)),
                ),
                _ => (
                    $file,
                    include_str!(concat!("../templates/", $dir, "/metric-check.", $ext)),
                ),
            }
        };
    }
    match lang {
        Lang::Rust => per_world!("rust", "rs", "src/lib.rs"),
        Lang::C => per_world!("c", "c", "plugin.c"),
        Lang::Js => per_world!("js", "js", "app.js"),
        Lang::Python => per_world!("python", "py", "app.py"),
    }
}

const README: &str = include_str!("../templates/README.md.tmpl");
const RUST_MANIFEST: &str = include_str!("../templates/rust/Cargo.toml.tmpl");
const GITIGNORE: &str = "/build/\n/target/\n/*.wasm\n/.wasmon/\n/node_modules/wasmon/\n";
/// For C editors (clangd): where `plugin build` generates the headers.
const C_COMPILE_FLAGS: &str = "--target=wasm32-wasi\n-Ibuild/gen\n";

/// A plugin name: it names the component file and (for Rust) the crate.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "invalid plugin name {name:?}: use lowercase letters, digits and '-', \
             starting with a letter (it names the .wasm file and the crate)"
        );
    }
    Ok(())
}

/// Writes a new plugin into `parent/NAME` and returns its directory.
pub fn new_plugin(parent: &Path, world: &str, name: &str, lang: Lang) -> Result<PathBuf> {
    if !WORLDS.contains(&world) {
        bail!(
            "unknown plugin kind {world:?}: expected one of {}",
            WORLDS.join(", ")
        );
    }
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists: not overwriting it", dir.display());
    }
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{world}}", world)
            .replace("{{lang}}", &lang.to_string())
            .replace("{{sdk_version}}", crate::sdk::VERSION)
    };
    let (file, text) = source(lang, world);
    let mut files: Vec<(&str, String)> = vec![
        (file, fill(text)),
        ("README.md", fill(README)),
        (".gitignore", GITIGNORE.to_string()),
        ("wit/plugin.wit", crate::PLUGIN_WIT.to_string()),
    ];
    match lang {
        Lang::Rust => files.push(("Cargo.toml", fill(RUST_MANIFEST))),
        Lang::C => files.push(("compile_flags.txt", C_COMPILE_FLAGS.to_string())),
        Lang::Js | Lang::Python => {}
    }
    let manifest = Manifest {
        name: name.into(),
        world: world.into(),
        lang,
        engine: None,
    };
    files.push((MANIFEST, serde_json::to_string_pretty(&manifest)? + "\n"));
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
        }
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if lang == Lang::Rust {
        // Now, not only at the first build: editors and `cargo check` find
        // the SDK right away.
        crate::sdk::write(&dir)?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_a_template_per_world() {
        for lang in [Lang::Rust, Lang::C, Lang::Js, Lang::Python] {
            for world in WORLDS {
                let (_, text) = source(lang, world);
                let export = match world {
                    "receiver" => "notify",
                    "health-check" => "check",
                    "rollback-action" => "rollback",
                    _ => "evaluate",
                };
                assert!(text.contains(export), "{lang} {world} has no {export}");
            }
        }
    }

    #[test]
    fn new_writes_a_plugin_and_refuses_bad_input() {
        let parent = tempfile::tempdir().unwrap();
        let dir = new_plugin(parent.path(), "receiver", "my-hook", Lang::Rust).unwrap();
        let cargo = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-hook\""), "{cargo}");
        // The shipped SDK, pinned to this version, for the plugin's world.
        assert!(
            cargo.contains(&format!(
                "wasmon-sdk = {{ path = \".wasmon/sdk\", version = \"={}\", features = [\"receiver\"] }}",
                crate::sdk::VERSION
            )),
            "{cargo}"
        );
        assert!(dir.join(".wasmon/sdk/src/http.rs").is_file());
        assert!(fs::read_to_string(dir.join("src/lib.rs"))
            .unwrap()
            .contains("fn notify"));
        assert_eq!(
            fs::read_to_string(dir.join("wit/plugin.wit")).unwrap(),
            crate::PLUGIN_WIT
        );
        let m = Manifest::for_dir(&dir, None).unwrap();
        assert_eq!(
            (m.name.as_str(), m.world.as_str(), m.lang),
            ("my-hook", "receiver", Lang::Rust)
        );

        let err = new_plugin(parent.path(), "receiver", "my-hook", Lang::C).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        let err = new_plugin(parent.path(), "sender", "x", Lang::C).unwrap_err();
        assert!(
            err.to_string().contains("unknown plugin kind \"sender\""),
            "{err}"
        );
        let err = new_plugin(parent.path(), "receiver", "My Hook", Lang::C).unwrap_err();
        assert!(err.to_string().contains("invalid plugin name"), "{err}");
    }
}
