//! `wasmon plugin new|build|inspect|call`: the plugin author's workflow;
//! `wasmon relabel test` ([`relabel`]): a job's relabel rules, step by step.
//! `call` ([`call`]) runs a plugin file in the agent's sandbox; the rest
//! is done by the `wasmon-plugin-tools` crate, which `cargo xtask plugins`
//! shares, so the CLI and CI check components the same way.

pub mod call;
pub mod relabel;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use wasmon_plugin_tools::build::{self, Lang};
use wasmon_plugin_tools::contract::Contract;
use wasmon_plugin_tools::scaffold;

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Create a buildable plugin: KIND is receiver, health-check, rollback-action or metric-check.
    New {
        kind: String,
        name: String,
        /// rust, c, js or python.
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to create the NAME directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build the plugin in DIR (language from wasmon-plugin.json or its files) and check it.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Output file, or a directory for NAME.wasm (default: DIR/NAME.wasm).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// The world, when DIR has no wasmon-plugin.json.
        #[arg(long)]
        world: Option<String>,
    },
    /// Show a component's world, imports, exports, size and the capabilities it asks for.
    Inspect {
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run one call of a component in the agent's sandbox and print the
    /// result as JSON (exit 0 ok, 3 retryable, 4 permanent, 5 trap, 1 no call).
    Call(call::CallArgs),
}

/// Runs one `wasmon plugin` command. Exit code 1 when the component
/// matches no world (inspect) or the build fails.
pub fn run(command: PluginCommand) -> Result<ExitCode> {
    match command {
        PluginCommand::New {
            kind,
            name,
            lang,
            dir,
        } => {
            let lang = Lang::parse(&lang)?;
            let created = scaffold::new_plugin(&dir, &kind, &name, lang)?;
            println!(
                "created {} ({kind}, {lang}); build it with `wasmon plugin build {}`",
                created.display(),
                created.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Build { dir, out, world } => {
            let built = build::build(&dir, out.as_deref(), world.as_deref())
                .with_context(|| format!("building the plugin in {}", dir.display()))?;
            println!(
                "built {} ({}) in {:.1}s",
                built.path.display(),
                built.lang,
                built.seconds
            );
            print!("{}", built.inspection);
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Inspect { file, json } => {
            // Header first, as the agent's loader reads: a file that is not
            // a component is refused in the loader's words, unread.
            let bytes = crate::plugins::file::read(&file, u64::MAX)
                .with_context(|| format!("{}", file.display()))?;
            let inspection = Contract::embedded()?
                .inspect(&bytes)
                .with_context(|| format!("{}", file.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&inspection)?);
            } else {
                println!("file          {}", file.display());
                print!("{inspection}");
            }
            Ok(if inspection.world.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        // Async (it runs the plugin): the binary's `main` runs it.
        PluginCommand::Call(_) => {
            anyhow::bail!("plugin call runs on the async runtime: use author::call::run")
        }
    }
}
