//! The per-machine build cache that every plugin directory shares.
//!
//! Building std for wasm (the Debian `-Zbuild-std` route), the SDK's
//! dependencies and zig's wasm libc takes minutes; none of it depends on
//! the plugin. So `plugin build` keeps them under one cache root,
//! `$WASMON_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmon`, else
//! `~/.cache/wasmon`:
//!
//! - `build/rust-<toolchain key>/`: one `CARGO_TARGET_DIR` for every Rust
//!   plugin built with that toolchain (see [`RustTarget`]);
//! - `build/zig/`: zig's global cache (`ZIG_GLOBAL_CACHE_DIR`), where it
//!   keeps its libc and the objects it compiled.
//!
//! Deleting the root is always safe: the next build fills it again.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

/// The cache root, or `None` when neither `WASMON_CACHE_DIR`,
/// `XDG_CACHE_HOME` nor `HOME` says where it is. Always absolute: cargo
/// runs in the plugin's directory, and a relative root would mean another
/// directory to it than to the lock.
pub fn root() -> Option<PathBuf> {
    let nonempty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let dir = if let Some(dir) = nonempty("WASMON_CACHE_DIR") {
        PathBuf::from(dir)
    } else if let Some(dir) = nonempty("XDG_CACHE_HOME").filter(|d| Path::new(d).is_absolute()) {
        // The XDG spec ignores a relative XDG_CACHE_HOME.
        PathBuf::from(dir).join("wasmon")
    } else {
        PathBuf::from(nonempty("HOME")?).join(".cache/wasmon")
    };
    std::path::absolute(&dir).ok()
}

/// A cache directory under the root (created), or `fallback` when there is
/// no root: then nothing is shared, and the build says so.
pub fn dir(rel: &str, fallback: &Path) -> Result<PathBuf> {
    let dir = match root() {
        Some(root) => root.join(rel),
        None => {
            eprintln!(
                "no cache directory (set WASMON_CACHE_DIR, XDG_CACHE_HOME or HOME): \
                 building in {} without sharing anything between plugins",
                fallback.display()
            );
            fallback.to_path_buf()
        }
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Writes `bytes` to `path` unless it already holds exactly them. Builds
/// rewrite generated files (the WIT, the SDK) every time; leaving an
/// unchanged file alone keeps its mtime, so cargo and zig see nothing new
/// and a warm rebuild stays a no-op.
pub fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// An exclusive lock on a file, held until dropped (the OS releases it if
/// the process dies).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Takes the lock on `path`, saying so when another build holds it.
    pub fn acquire(path: &Path) -> Result<Lock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("opening the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let waited = Instant::now();
                eprintln!(
                    "waiting for another plugin build that shares {} ...",
                    path.parent().unwrap_or(path).display()
                );
                file.lock()
                    .with_context(|| format!("locking {}", path.display()))?;
                eprintln!("... got it after {:.1}s", waited.elapsed().as_secs_f64());
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        Ok(Lock { _file: file })
    }
}

/// The shared `CARGO_TARGET_DIR` of one guest toolchain.
///
/// Cargo names a path package's artifacts by its path *relative to the
/// workspace root*, so the crate of every plugin directory (`src/lib.rs`
/// at the root) gets the same artifact name and fingerprint whatever the
/// directory: two plugins with the same package name would take each
/// other's build for fresh. [`RustTarget::claim`] notes which directory
/// built each package last and makes cargo rebuild a package that another
/// directory built. Everything else (std, registry crates, the SDK, whose
/// files are the same in every plugin dir) is shared as intended.
#[derive(Debug)]
pub struct RustTarget {
    pub dir: PathBuf,
}

impl RustTarget {
    /// `build/rust-<key>` under the cache root (or `fallback`).
    pub fn new(key: &str, fallback: &Path) -> Result<RustTarget> {
        Ok(RustTarget {
            dir: dir(&format!("build/rust-{key}"), fallback)?,
        })
    }

    /// Serializes builds in this target dir from [`Self::claim`] until the
    /// built file is read, so that a concurrent build of a plugin with the
    /// same name cannot overwrite it in between.
    pub fn lock(&self) -> Result<Lock> {
        Lock::acquire(&self.dir.join("wasmon-build.lock"))
    }

    /// Makes `package` of `plugin_dir` the one cargo builds next: when
    /// another directory built a package of that name last, its
    /// fingerprints go, so cargo compiles this directory's sources instead
    /// of trusting the other's artifacts. Call it holding [`Self::lock`].
    pub fn claim(
        &self,
        target: &str,
        profile: &str,
        package: &str,
        plugin_dir: &Path,
    ) -> Result<()> {
        let owners = self.dir.join("wasmon-owners");
        fs::create_dir_all(&owners).with_context(|| format!("creating {}", owners.display()))?;
        let owner = owners.join(package);
        let me = plugin_dir.to_string_lossy();
        if fs::read_to_string(&owner).is_ok_and(|o| o == me) {
            return Ok(());
        }
        let fingerprints = self.dir.join(target).join(profile).join(".fingerprint");
        if let Ok(entries) = fs::read_dir(&fingerprints) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if is_fingerprint_of(&name.to_string_lossy(), package) {
                    fs::remove_dir_all(entry.path())
                        .with_context(|| format!("removing {}", entry.path().display()))?;
                }
            }
        }
        fs::write(&owner, me.as_bytes()).with_context(|| format!("writing {}", owner.display()))
    }

    /// Whether a build already succeeded here (the first one builds std
    /// and the dependencies, which the progress message warns about).
    pub fn is_warm(&self) -> bool {
        self.dir.join("wasmon-warm").exists()
    }

    /// Records that a build succeeded here.
    pub fn mark_warm(&self) {
        // Only the first-build message depends on it: not worth failing for.
        let _ = fs::write(self.dir.join("wasmon-warm"), b"");
    }
}

/// Whether `dir_name` is a fingerprint directory of `package`: cargo names
/// them `<package>-<16 hex digits>` (so `my-hook-extra-…` is not
/// `my-hook`'s).
fn is_fingerprint_of(dir_name: &str, package: &str) -> bool {
    dir_name
        .strip_prefix(package)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hash| hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_matched_by_exact_package_name() {
        assert!(is_fingerprint_of("my-hook-0123456789abcdef", "my-hook"));
        assert!(!is_fingerprint_of(
            "my-hook-extra-0123456789abcdef",
            "my-hook"
        ));
        assert!(!is_fingerprint_of("my-hook-0123", "my-hook"));
        assert!(!is_fingerprint_of("other-0123456789abcdef", "my-hook"));
    }

    #[test]
    fn claim_forgets_another_dirs_build_of_the_same_package() {
        let tmp = tempfile::tempdir().unwrap();
        let target = RustTarget {
            dir: tmp.path().to_path_buf(),
        };
        let fp = tmp
            .path()
            .join("wasm32-unknown-unknown/release/.fingerprint");
        let mine = fp.join("my-hook-0123456789abcdef");
        let other = fp.join("my-hook-extra-0123456789abcdef");
        let reset = || {
            fs::create_dir_all(&mine).unwrap();
            fs::create_dir_all(&other).unwrap();
        };
        let claim = |dir: &str| {
            target
                .claim(
                    "wasm32-unknown-unknown",
                    "release",
                    "my-hook",
                    Path::new(dir),
                )
                .unwrap()
        };
        reset();
        claim("/a/my-hook");
        assert!(!mine.exists(), "first claim: no owner known");
        reset();
        claim("/a/my-hook");
        assert!(mine.exists(), "same directory again: cargo decides");
        claim("/b/my-hook");
        assert!(!mine.exists(), "another directory: rebuilt");
        assert!(other.exists(), "another package untouched");
    }

    #[test]
    fn unchanged_files_keep_their_mtime() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b.txt");
        write_if_changed(&path, b"x").unwrap();
        let first = fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_if_changed(&path, b"x").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), first);
        write_if_changed(&path, b"y").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"y");
    }
}
