//! `cargo xtask`: the project's automation, in Rust so it runs wherever cargo
//! does (the alias lives in `.cargo/config.toml`).
//!
//! - `cargo xtask plugins [--out DIR]` builds every guest crate (`plugins/*`,
//!   `tests/guests/*`) into a component at `DIR/<crate-dir>.wasm` (default
//!   `target/plugins`), and checks each against `wit/plugin.wit`.
//! - `cargo xtask test [ARGS...]` builds the plugins, runs the SDK's unit
//!   tests, then `cargo test -p wasmon -p xtask ARGS...` with
//!   `WASMON_PLUGIN_DIR` pointing at the components.
//! - `cargo xtask ci` is what CI runs: `cargo fmt --check`, clippy on the
//!   host crates and (for the host target) on the guest crates, then `test`,
//!   then the slow `#[ignore]` tests of [`SLOW_TESTS`].
//!
//! Guests are built by a different compiler setup than the host (see
//! `toolchain.rs`), in their own target dir `target/wasm`, one cargo
//! invocation per crate; the host's `target/debug` is never touched by them.

mod guests;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;
use std::{env, fs};

use anyhow::{bail, Context, Result};
use wasmon_plugin_tools::{build, contract, rust};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  plugins [--out DIR]  build every guest crate into DIR/<crate-dir>.wasm
                       (default: target/plugins) and check it against wit/
  test [ARGS...]       plugins, SDK unit tests, then cargo test -p wasmon -p xtask
                       -p wasmon-plugin-tools ARGS... (WASMON_PLUGIN_DIR set)
  ci                   cargo fmt --check, clippy -D warnings, test, then the
                       slow #[ignore] tests (JS/Python/Rust plugin builds)";

fn main() -> ExitCode {
    match run(env::args_os().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<OsString>) -> Result<()> {
    let mut args = args.into_iter();
    let command = args.next().map(|a| a.to_string_lossy().into_owned());
    let rest: Vec<OsString> = args.collect();
    let root = workspace_root();
    match command.as_deref() {
        Some("plugins") => {
            let out = parse_plugins_args(&rest)?.unwrap_or_else(|| default_out(&root));
            plugins(&root, &out)
        }
        Some("test") => test(&root, &rest),
        Some("ci") => {
            if !rest.is_empty() {
                bail!("`ci` takes no arguments\n\n{USAGE}");
            }
            ci(&root)
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
        None => bail!("no command\n\n{USAGE}"),
    }
}

/// `plugins`' only option: `--out DIR` (or `--out=DIR`), relative to the
/// current directory like any path on a command line.
fn parse_plugins_args(args: &[OsString]) -> Result<Option<PathBuf>> {
    let mut out = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg.to_string_lossy();
        if arg == "--out" {
            let dir = args.next().context("--out needs a directory")?;
            out = Some(PathBuf::from(dir));
        } else if let Some(dir) = arg.strip_prefix("--out=") {
            out = Some(PathBuf::from(dir));
        } else {
            bail!("unknown argument {arg:?} for `plugins`\n\n{USAGE}");
        }
    }
    Ok(out.map(|dir| {
        env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_default()
    }))
}

/// The workspace root: xtask lives one level below it.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask is inside the workspace")
        .to_path_buf()
}

/// The cargo profile for guests (root `Cargo.toml`): size-optimized,
/// `panic = "abort"`, LTO.
const PROFILE: &str = "plugin";

fn default_out(root: &Path) -> PathBuf {
    root.join("target").join("plugins")
}

/// Builds every guest crate into a checked component in `out`.
fn plugins(root: &Path, out: &Path) -> Result<()> {
    let guests = guests::discover(root)?;
    if guests.is_empty() {
        bail!("no guest crates under plugins/ or tests/guests/");
    }
    let toolchain = rust::Toolchain::detect()?;
    let contract = contract::Contract::load(&root.join("wit"))?;
    let target_dir = root.join("target").join("wasm");
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    println!("guest toolchain: {toolchain}");

    let all = Instant::now();
    for guest in &guests {
        let started = Instant::now();
        let built = toolchain
            .build(
                cargo(root),
                &["-p".as_ref(), guest.package.as_ref()],
                &target_dir,
                PROFILE,
                &guest.lib_name,
            )
            .with_context(|| format!("building {}", guest.package))?;
        let bytes = fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
        let component = if toolchain.emits_components() {
            bytes
        } else {
            contract::encode(&bytes)
                .with_context(|| format!("making a component of {}", built.display()))?
        };
        let report = contract
            .check(&component)
            .with_context(|| format!("checking the component built from {}", guest.package))?;
        let dest = out.join(format!("{}.wasm", guest.dir_name));
        fs::write(&dest, &component).with_context(|| format!("writing {}", dest.display()))?;
        println!(
            "{}  {} bytes ({:.1} KiB)  {:.1}s",
            dest.display(),
            component.len(),
            component.len() as f64 / 1024.0,
            started.elapsed().as_secs_f64()
        );
        print!("{report}");
    }
    println!(
        "{} components in {:.1}s",
        guests.len(),
        all.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds the plugins, then runs the tests that use them.
fn test(root: &Path, args: &[OsString]) -> Result<()> {
    let out = default_out(root);
    plugins(root, &out)?;
    // The SDK's helpers are plain Rust: their unit tests run on the host
    // (wit-bindgen's imports compile to stubs off wasm, and no test calls them).
    cargo(root)
        .args(["test", "-q", "-p", "wasmon-sdk", "--features", "receiver"])
        .status_ok()?;
    warm_c(root);
    cargo(root)
        .args([
            "test",
            "-p",
            "wasmon",
            "-p",
            "xtask",
            "-p",
            "wasmon-plugin-tools",
        ])
        .args(args)
        .env("WASMON_PLUGIN_DIR", &out)
        .status_ok()
}

/// Builds the C example once before the tests: the first C build on a
/// machine waits a minute or two for zig to build its wasm libc (cached per
/// machine afterwards), and the C tests in the fast path would all wait on
/// it at once. Not fatal: without zig or wit-bindgen the C tests say what
/// is missing.
fn warm_c(root: &Path) {
    let started = Instant::now();
    let example = root.join("examples/plugins/c-receiver");
    let out = root.join("target").join("c-warm.wasm");
    match build::build(&example, Some(&out), None) {
        Ok(_) => println!(
            "C toolchain cache warm ({:.1}s)",
            started.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("warning: could not build {}: {e:#}", example.display()),
    }
}

/// The slow tests CI runs on top of `test`: the JavaScript and Python
/// receivers (a minute to build each, seconds to compile in wasmtime) and
/// the Rust templates of `plugin new` (std for wasm is built once per
/// machine into the shared cache, minutes cold; about 20-60 s per plugin
/// warm). Each is a test binary and a filter: the module of the tests in
/// it (the e2e binary has other `#[ignore]`d tests, long runs that CI does
/// not run).
const SLOW_TESTS: &[(&str, &str)] = &[("e2e", "plugin_langs::")];

/// Everything CI checks, in the order that fails fastest.
fn ci(root: &Path) -> Result<()> {
    cargo(root).args(["fmt", "--all", "--check"]).status_ok()?;
    cargo(root)
        .args(["clippy", "--all-targets", "--", "-D", "warnings"])
        .status_ok()?;
    // Guest crates are not default members; lint them for the host target,
    // one world at a time (each plugin enables exactly one SDK feature).
    for features in [
        "",
        "receiver",
        "health-check",
        "rollback-action",
        "metric-check",
    ] {
        cargo(root)
            .args(["clippy", "-q", "-p", "wasmon-sdk", "--all-targets"])
            .args(["--features", features, "--", "-D", "warnings"])
            .status_ok()?;
    }
    for guest in guests::discover(root)? {
        cargo(root)
            .args(["clippy", "-q", "-p", &guest.package, "--all-targets"])
            .args(["--", "-D", "warnings"])
            .status_ok()?;
    }
    test(root, &[])?;
    for (binary, filter) in SLOW_TESTS {
        cargo(root)
            .args(["test", "-p", "wasmon", "--test", binary, "--", "--ignored"])
            .arg(filter)
            .env("WASMON_PLUGIN_DIR", default_out(root))
            .status_ok()?;
    }
    Ok(())
}

/// A cargo command in the workspace, with the cargo that runs xtask.
fn cargo(root: &Path) -> Command {
    let mut command = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(root);
    command
}

/// Runs a command, echoing it, and fails if it does.
trait StatusOk {
    fn status_ok(&mut self) -> Result<()>;
}

impl StatusOk for Command {
    fn status_ok(&mut self) -> Result<()> {
        let shown = wasmon_plugin_tools::show(self);
        eprintln!("$ {shown}");
        let status = self.status().with_context(|| format!("running {shown}"))?;
        if !status.success() {
            bail!("{shown} failed ({status})");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_dir_is_relative_to_cwd() {
        let cwd = env::current_dir().unwrap();
        assert_eq!(
            parse_plugins_args(&["--out".into(), "x".into()]).unwrap(),
            Some(cwd.join("x"))
        );
        assert_eq!(
            parse_plugins_args(&["--out=/abs".into()]).unwrap(),
            Some(PathBuf::from("/abs"))
        );
        assert_eq!(parse_plugins_args(&[]).unwrap(), None);
        assert!(parse_plugins_args(&["--out".into()]).is_err());
        assert!(parse_plugins_args(&["--bogus".into()]).is_err());
    }

    /// The components `cargo xtask test` built pass the same check again,
    /// and the ones the host's tests rely on are there.
    #[test]
    fn built_components_match_the_contract() {
        let Some(dir) = env::var_os("WASMON_PLUGIN_DIR") else {
            eprintln!("WASMON_PLUGIN_DIR not set (run through `cargo xtask test`): skipped");
            return;
        };
        let dir = PathBuf::from(dir);
        let contract = contract::Contract::load(&workspace_root().join("wit")).unwrap();
        for name in ["webhook", "noop", "misbehave"] {
            let path = dir.join(format!("{name}.wasm"));
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let report = contract.check(&bytes).unwrap();
            assert_eq!(report.world, "receiver", "{name}");
            assert!(report.exports.iter().any(|e| e == "notify"), "{name}");
        }
    }
}
