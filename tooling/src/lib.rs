//! Plugin author tooling, shared by the `wasmon plugin` commands and by
//! `cargo xtask plugins`, so that a plugin built by hand, by the CLI or by CI
//! is checked by the same code:
//!
//! - [`contract`]: `wit/plugin.wit` (embedded in the binary), the check of a
//!   component against its world, and [`contract::Contract::inspect`]
//!   (world, imports, exports, capabilities) without any external tool;
//! - [`format`]: why a file is not a plugin (empty, not Wasm, a core module,
//!   another encoding, world or contract version), shared with the agent's
//!   loader so both say the same;
//! - [`rust`]: the two routes that build Rust guests on these machines;
//! - [`build`]: `wasmon plugin build` — per-language routes (Rust, C with
//!   zig + `wit-bindgen c`, JavaScript in [`js`], Python in [`python`]);
//! - [`guest`]: what JavaScript and Python builds add so plugins reach the
//!   network (the build world with `wasi:http`, the WASI WIT);
//! - [`scaffold`]: `wasmon plugin new` — buildable templates per language
//!   and world;
//! - [`sdk`]: the Rust SDK shipped inside the binary for plugins made by
//!   `plugin new`; [`c`]: the C route with its HTTP helpers;
//! - [`cache`]: the per-machine build cache every plugin directory shares
//!   (std for wasm, the SDK's dependencies, zig's libc).

pub mod build;
pub mod c;
pub mod cache;
pub mod contract;
pub mod format;
pub mod guest;
pub mod js;
pub mod python;
pub mod rust;
pub mod scaffold;
pub mod sdk;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The plugin contract's WIT text, as the agent that embeds this crate
/// implements it.
pub const PLUGIN_WIT: &str = include_str!("../../wit/plugin.wit");

/// The worlds of the contract, in the order the docs list them.
pub const WORLDS: [&str; 4] = [
    "receiver",
    "health-check",
    "rollback-action",
    "metric-check",
];

/// Runs a command, echoing it to stderr, and fails (naming the command) if
/// it cannot start or exits non-zero.
pub fn run(command: &mut Command) -> Result<()> {
    execute(command, false)
}

/// Like [`run`], but the command's output is kept and shown only if it
/// fails: for tools whose normal output is noise to a plugin author.
pub fn run_quiet(command: &mut Command) -> Result<()> {
    execute(command, true)
}

fn execute(command: &mut Command, quiet: bool) -> Result<()> {
    let shown = show(command);
    eprintln!("$ {shown}");
    let (status, output) = if quiet {
        let out = command
            .output()
            .with_context(|| format!("running {shown}"))?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status, text)
    } else {
        let status = command
            .status()
            .with_context(|| format!("running {shown}"))?;
        (status, String::new())
    };
    if !status.success() {
        bail!("{shown} failed ({status})\n{output}");
    }
    Ok(())
}

/// Like [`run`], for steps that can be silent for minutes (zig building
/// its libc): while the command runs, a line every 15 s says what is still
/// running and for how long, so a cold build does not look hung.
pub fn run_with_progress(command: &mut Command, what: &str) -> Result<()> {
    const EVERY: Duration = Duration::from_secs(15);
    let shown = show(command);
    eprintln!("$ {shown}");
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("running {shown}"))?;
    let mut next = EVERY;
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("waiting for {shown}"))?
        {
            break status;
        }
        if started.elapsed() >= next {
            eprintln!("  {what}: still running ({}s)", next.as_secs());
            next += EVERY;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

/// A command as one would type it, with the environment it was given.
pub fn show(command: &Command) -> String {
    let mut parts: Vec<String> = command
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let program = Path::new(command.get_program());
    parts.push(
        program
            .file_name()
            .unwrap_or(program.as_os_str())
            .to_string_lossy()
            .into_owned(),
    );
    parts.extend(command.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}
