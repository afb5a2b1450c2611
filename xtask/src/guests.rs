//! The guest crates: every crate directory under `plugins/` and
//! `tests/guests/`. A new plugin needs no registration anywhere: create the
//! crate and `cargo xtask plugins` builds it.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Where guest crates live, relative to the workspace root.
pub const GUEST_DIRS: [&str; 2] = ["plugins", "tests/guests"];

/// One guest crate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    /// The crate's directory name: the component is `<dir_name>.wasm`.
    pub dir_name: String,
    /// The cargo package name (for `-p`).
    pub package: String,
    /// The library's name, which names the `.wasm` cargo writes.
    pub lib_name: String,
}

/// All guest crates, in a stable order (by directory).
pub fn discover(root: &Path) -> Result<Vec<Guest>> {
    let mut guests = Vec::new();
    for parent in GUEST_DIRS {
        let parent = root.join(parent);
        let Ok(entries) = fs::read_dir(&parent) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("Cargo.toml").is_file())
            .collect();
        dirs.sort();
        for dir in dirs {
            let manifest = dir.join("Cargo.toml");
            let text = fs::read_to_string(&manifest)
                .with_context(|| format!("reading {}", manifest.display()))?;
            let (package, lib_name) = names(&text)
                .with_context(|| format!("no [package] name in {}", manifest.display()))?;
            guests.push(Guest {
                dir_name: dir
                    .file_name()
                    .expect("a crate dir has a name")
                    .to_string_lossy()
                    .into_owned(),
                package,
                lib_name,
            });
        }
    }
    Ok(guests)
}

/// The package name and the library name from a manifest. A line scan is
/// enough for our own manifests and keeps xtask free of a TOML parser.
fn names(manifest: &str) -> Option<(String, String)> {
    let mut section = "";
    let mut package = None;
    let mut lib = None;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "name" {
            continue;
        }
        let value = value.trim().trim_matches('"').to_string();
        match section {
            "[package]" => package = Some(value),
            "[lib]" => lib = Some(value),
            _ => {}
        }
    }
    let package = package?;
    let lib = lib.unwrap_or_else(|| package.replace('-', "_"));
    Some((package, lib))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_manifest() {
        let m = "[package]\nname = \"wasmon-plugin-x\"\nversion.workspace = true\n\n[lib]\ncrate-type = [\"cdylib\"]\n";
        assert_eq!(
            names(m),
            Some(("wasmon-plugin-x".into(), "wasmon_plugin_x".into()))
        );
        let m = "[lib]\nname = \"y\"\n[package]\nname = \"x\"\n[dependencies]\nname = \"z\"\n";
        assert_eq!(names(m), Some(("x".into(), "y".into())));
        assert_eq!(names("[dependencies]\n"), None);
    }

    #[test]
    fn finds_this_workspace_guests() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let guests = discover(root).unwrap();
        let dirs: Vec<&str> = guests.iter().map(|g| g.dir_name.as_str()).collect();
        for expected in ["webhook", "noop", "misbehave"] {
            assert!(dirs.contains(&expected), "{dirs:?}");
        }
    }
}
