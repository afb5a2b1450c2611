//! How guest crates get compiled to wasm on this machine.
//!
//! Two routes, tried in order:
//!
//! 1. `wasm32-wasip2` is installed for the current toolchain (`rustup target
//!    add wasm32-wasip2`): cargo builds for it and rustc's linker already
//!    writes a component.
//! 2. Debian's `rustc-web` and `rust-web-src` are installed: `/usr/bin/rustc`
//!    (newer than rustup's stable) builds std itself for
//!    `wasm32-unknown-unknown` with `-Zbuild-std` (`RUSTC_BOOTSTRAP=1`), and
//!    links with rustup's `rust-lld` (Debian's `/usr/bin/rust-lld` is a
//!    dangling link). The result is a core module that `component.rs` wraps.
//!    This is the route for machines where rustup cannot download targets.
//!
//! Every guest is built in its own cargo invocation: cargo unifies features
//! across the packages of one build, and a plugin that got a second SDK world
//! that way would not componentize. The route's environment (`RUSTC`, ...)
//! is set on the child cargo process only, never on xtask itself, so the host
//! builds that `cargo xtask test` runs afterwards see none of it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::run;

/// Where Debian's `rustc-web` installs its compiler.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// A way to build guests.
#[derive(Debug)]
pub enum Toolchain {
    /// `cargo build --target wasm32-wasip2`: outputs components.
    Wasip2,
    /// `-Zbuild-std` for `wasm32-unknown-unknown`: outputs core modules.
    BuildStd {
        /// The compiler that has the std sources (Debian's).
        rustc: PathBuf,
        /// A `rust-lld` that works (rustup's).
        linker: PathBuf,
    },
}

impl Toolchain {
    /// Picks the first route this machine supports.
    pub fn detect() -> Result<Toolchain> {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        if let Ok(sysroot) = sysroot(Command::new(&rustc)) {
            if sysroot.join("lib/rustlib/wasm32-wasip2").is_dir() {
                return Ok(Toolchain::Wasip2);
            }
        }

        let debian = Path::new(DEBIAN_RUSTC);
        let std_src = debian
            .is_file()
            .then(|| sysroot(Command::new(debian)).ok())
            .flatten()
            .map(|s| s.join("lib/rustlib/src/rust/library/std"));
        if std_src.is_some_and(|s| s.is_dir()) {
            if let Some(linker) = find_rust_lld() {
                return Ok(Toolchain::BuildStd {
                    rustc: debian.to_path_buf(),
                    linker,
                });
            }
            bail!(
                "{DEBIAN_RUSTC} can build std for wasm, but no rust-lld was found \
                 (looked in the sysroots of `rustc +stable` and `rustc`); \
                 install a rustup toolchain, or `rustup target add wasm32-wasip2`"
            );
        }
        bail!(
            "no way to build wasm guests on this machine: either \
             `rustup target add wasm32-wasip2`, or (where rustup cannot download) \
             `apt-get install -y rustc-web rust-web-src`"
        )
    }

    /// Whether [`Toolchain::build`] outputs components (else core modules).
    pub fn emits_components(&self) -> bool {
        matches!(self, Toolchain::Wasip2)
    }

    /// The target triple cargo builds for.
    pub fn target(&self) -> &'static str {
        match self {
            Toolchain::Wasip2 => "wasm32-wasip2",
            Toolchain::BuildStd { .. } => "wasm32-unknown-unknown",
        }
    }

    /// Names this toolchain's shared target dir (`build-std-1.96.0-<hash>`):
    /// the route, the compiler's release and a hash of `rustc -vV` and the
    /// linker, so another compiler builds into a directory of its own
    /// instead of rebuilding (and evicting) this one's std.
    pub fn cache_key(&self) -> Result<String> {
        let (route, rustc, linker) = match self {
            Toolchain::Wasip2 => (
                "wasip2",
                std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()),
                None,
            ),
            Toolchain::BuildStd { rustc, linker } => {
                ("build-std", rustc.clone().into_os_string(), Some(linker))
            }
        };
        let out = Command::new(&rustc)
            .arg("-vV")
            .output()
            .with_context(|| format!("running {} -vV", rustc.to_string_lossy()))?;
        if !out.status.success() {
            bail!("{} -vV failed ({})", rustc.to_string_lossy(), out.status);
        }
        let verbose = String::from_utf8_lossy(&out.stdout);
        let release = verbose
            .lines()
            .find_map(|l| l.strip_prefix("release: "))
            .unwrap_or("unknown")
            .trim();
        let mut hash = Sha256::new();
        hash.update(route);
        hash.update(verbose.as_bytes());
        if let Some(linker) = linker {
            hash.update(linker.as_os_str().as_encoded_bytes());
        }
        let digest = hash.finalize();
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let release: String = release
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        Ok(format!("{route}-{release}-{short}"))
    }

    /// Builds one guest crate and returns the `.wasm` cargo wrote.
    ///
    /// `cargo` is a bare cargo command in the right directory; `select`
    /// says which crate (`-p NAME` or `--manifest-path PATH`, or nothing
    /// for the crate in the directory); `profile` must be
    /// size-optimized with `panic = "abort"` (which `-Zbuild-std=panic_abort`
    /// needs); `lib_name` names the `.wasm` cargo writes.
    pub fn build(
        &self,
        mut cargo: Command,
        select: &[&std::ffi::OsStr],
        target_dir: &Path,
        profile: &str,
        lib_name: &str,
    ) -> Result<PathBuf> {
        let target = self.target();
        cargo.args(["build", "--profile", profile, "--target", target]);
        cargo.args(select);
        cargo.arg("--target-dir").arg(target_dir);
        if let Toolchain::BuildStd { rustc, linker } = self {
            cargo
                .env("RUSTC", rustc)
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                .arg("-Zbuild-std=std,panic_abort");
        }
        run(&mut cargo)?;
        let wasm = target_dir
            .join(target)
            .join(profile)
            .join(format!("{lib_name}.wasm"));
        if !wasm.is_file() {
            bail!(
                "cargo succeeded but wrote no {} (is the crate a cdylib?)",
                wasm.display()
            );
        }
        Ok(wasm)
    }
}

impl fmt::Display for Toolchain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Toolchain::Wasip2 => write!(f, "wasm32-wasip2 (rustup target)"),
            Toolchain::BuildStd { rustc, linker } => write!(
                f,
                "wasm32-unknown-unknown with -Zbuild-std ({} + {}), wrapped by wit-component",
                rustc.display(),
                linker.display()
            ),
        }
    }
}

/// `rustc --print sysroot` for the given rustc command.
fn sysroot(mut rustc: Command) -> Result<PathBuf> {
    let out = rustc
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc")?;
    if !out.status.success() {
        bail!("rustc --print sysroot failed");
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// rustup's `rust-lld`: from the stable toolchain if rustup has one (that
/// is the one measured to link Debian's wasm std), else from whatever
/// `rustc` is.
fn find_rust_lld() -> Option<PathBuf> {
    let candidates = [
        {
            let mut c = Command::new("rustc");
            c.arg("+stable");
            c
        },
        Command::new("rustc"),
    ];
    for rustc in candidates {
        let Ok(sysroot) = sysroot(rustc) else {
            continue;
        };
        let Ok(hosts) = sysroot.join("lib/rustlib").read_dir() else {
            continue;
        };
        for host in hosts.flatten() {
            let lld = host.path().join("bin/rust-lld");
            if lld.is_file() {
                return Some(lld);
            }
        }
    }
    None
}
