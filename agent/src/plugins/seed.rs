//! Seeding a plugins directory from another one (`wasmon plugins seed`).

use anyhow::{Context, Result};
use std::path::Path;

/// Copies every `*.wasm` file of `from` into `to` (created if missing) unless
/// `to` already has a file of that name: a user's own version of a plugin
/// wins over the packaged one. Returns the names copied, sorted.
///
/// Each file is written under a temporary name and renamed, so the agent's
/// directory watcher never loads a half-copied component.
pub fn seed_dir(from: &Path, to: &Path) -> Result<Vec<String>> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let entries = std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".wasm") || !entry.file_type()?.is_file() {
            continue;
        }
        names.push(name);
    }
    names.sort();
    let mut copied = Vec::new();
    for name in names {
        let dest = to.join(&name);
        if dest.exists() {
            continue;
        }
        let tmp = to.join(format!(".{name}.seed-tmp"));
        std::fs::copy(from.join(&name), &tmp).with_context(|| {
            format!(
                "copying {} to {}",
                from.join(&name).display(),
                tmp.display()
            )
        })?;
        std::fs::rename(&tmp, &dest)
            .with_context(|| format!("renaming {} to {}", tmp.display(), dest.display()))?;
        copied.push(name);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_missing_components_and_keeps_existing_ones() {
        let src = tempfile::tempdir().unwrap();
        let dst = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a.wasm"), b"packaged a").unwrap();
        std::fs::write(src.path().join("b.wasm"), b"packaged b").unwrap();
        std::fs::write(src.path().join("notes.txt"), b"not a plugin").unwrap();
        std::fs::write(dst.path().join("b.wasm"), b"user b").unwrap();

        let copied = seed_dir(src.path(), dst.path()).unwrap();
        assert_eq!(copied, vec!["a.wasm".to_string()]);
        assert_eq!(
            std::fs::read(dst.path().join("a.wasm")).unwrap(),
            b"packaged a"
        );
        assert_eq!(std::fs::read(dst.path().join("b.wasm")).unwrap(), b"user b");
        assert!(!dst.path().join("notes.txt").exists());
        // Nothing left half-written, and a second run is a no-op.
        assert_eq!(std::fs::read_dir(dst.path()).unwrap().count(), 2);
        assert!(seed_dir(src.path(), dst.path()).unwrap().is_empty());
    }

    #[test]
    fn missing_source_names_the_directory() {
        let dst = tempfile::tempdir().unwrap();
        let err = seed_dir(Path::new("/nonexistent/plugins"), dst.path()).unwrap_err();
        assert!(
            format!("{err:#}").contains("/nonexistent/plugins"),
            "{err:#}"
        );
    }
}
