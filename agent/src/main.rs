//! The `wasmon` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use wasmon::app::Agent;
use wasmon::config::Config;
use wasmon::plugins::PluginRuntime;
use wasmon::selfmetrics::Metrics;

#[derive(Parser)]
#[command(
    name = "wasmon",
    version,
    about = "A monitoring agent whose extensions are WebAssembly components"
)]
struct Cli {
    /// Log level (trace, debug, info, warn, error) or a tracing filter.
    #[arg(
        long = "log.level",
        global = true,
        default_value = "info",
        env = "WASMON_LOG"
    )]
    log_level: String,
    /// Log format.
    #[arg(long = "log.format", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (on the built-in default config when --config is not given).
    Run {
        /// A TOML config; or a prometheus.yml and/or an alertmanager.yml
        /// (repeat the flag for both), imported as `config import` does.
        #[arg(long, short)]
        config: Vec<PathBuf>,
        /// Listen here instead of the config's `web.listen_address`
        /// (Prometheus' flag, for a prometheus.yml, which has no such key).
        #[arg(long = "web.listen-address")]
        listen_address: Option<String>,
        /// Keep the store here instead of the config's `storage.path`
        /// (Prometheus' `--storage.tsdb.path`).
        #[arg(long = "storage.tsdb.path")]
        storage_path: Option<PathBuf>,
    },
    /// Work with config files (import a prometheus.yml / alertmanager.yml).
    Config {
        #[command(subcommand)]
        what: ConfigWhat,
    },
    /// Check files for errors without running anything.
    Check {
        #[command(subcommand)]
        what: CheckWhat,
    },
    /// Write, build and inspect plugins (the plugin author's workflow).
    Plugin {
        #[command(subcommand)]
        what: wasmon::author::PluginCommand,
    },
    /// Inspect plugins.
    Plugins {
        #[command(subcommand)]
        what: PluginsWhat,
    },
    /// Run tests (promtool's rule unit-test format).
    Test {
        #[command(subcommand)]
        what: TestWhat,
    },
    /// Show the rollouts of a running agent (phase, versions, failures, last decision).
    Rollouts {
        /// The agent's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9930")]
        url: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Work with a scrape job's relabel rules.
    Relabel {
        #[command(subcommand)]
        what: RelabelWhat,
    },
    /// Work with the alert route tree (like `amtool config routes`).
    Routes {
        #[command(subcommand)]
        what: RoutesWhat,
    },
    /// Acknowledge a firing alert group: no repeats, no escalation until it resolves.
    Ack {
        /// The group key (`groupKey` in /api/v2/alerts/groups).
        group_key: String,
        /// Who acknowledges.
        #[arg(long)]
        by: String,
        #[arg(long, default_value = "")]
        comment: String,
        /// The ack lapses after this long (Prometheus duration, e.g. 30m).
        #[arg(long)]
        expires_in: Option<String>,
        /// The agent's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9930")]
        url: String,
    },
    /// Work with the health checks of a running agent.
    Checks {
        #[command(subcommand)]
        what: ChecksWhat,
    },
    /// Remove an ack by its id: escalation resumes.
    Unack {
        id: String,
        #[arg(long, default_value = "http://127.0.0.1:9930")]
        url: String,
    },
    /// (Internal) Compile the component on stdin to FILE for a parent agent
    /// whose engine settings are `--engine-config` (see plugins/engine.rs).
    #[command(name = "__compile-plugin", hide = true)]
    CompilePlugin {
        #[arg(long)]
        engine_config: String,
        out: PathBuf,
    },
    /// Inspect the store's on-disk blocks (like `promtool tsdb`).
    Tsdb {
        #[command(subcommand)]
        what: TsdbWhat,
    },
    /// List incidents, show one's timeline, or print its post-incident report.
    Incidents {
        id: Option<String>,
        /// Print the Markdown post-incident report (needs ID).
        #[arg(long)]
        report: bool,
        #[arg(long, default_value = "http://127.0.0.1:9930")]
        url: String,
    },
}

#[derive(Subcommand)]
enum ChecksWhat {
    /// Run a check now (POST /api/v1/checks/NAME/run): its result is
    /// printed and stored as a scheduled run's is. Exit 1 when it fails.
    Run {
        name: String,
        /// The agent's base URL.
        #[arg(long, default_value = "http://127.0.0.1:9930")]
        url: String,
        /// Print JSON instead of a line.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TestWhat {
    /// Run rule unit tests, as `promtool test rules` does (exit 1 on failure).
    Rules {
        files: Vec<PathBuf>,
        /// Run only tests whose group name matches this regex (promtool's --run).
        #[arg(long)]
        run: Option<String>,
    },
}

#[derive(Subcommand)]
enum RelabelWhat {
    /// Show what a job's relabel_configs do to one discovered label set,
    /// rule by rule: labels before and after, kept or dropped and by which
    /// rule, the target's labels and URL (the agent's own relabeling).
    Test(wasmon::author::relabel::TestArgs),
}

#[derive(Subcommand)]
enum RoutesWhat {
    /// Print the receivers a label set is routed to, like `amtool config routes test`.
    Test {
        #[arg(long, short)]
        config: PathBuf,
        /// Expected receivers, comma-separated: exit 1 when they differ.
        #[arg(long = "verify.receivers")]
        verify_receivers: Option<String>,
        /// Labels as `name=value` (also `{name="value", ...}` matcher syntax).
        labels: Vec<String>,
    },
    /// Print the route tree.
    Show {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum TsdbWhat {
    /// Where each block's bytes go: chunks, index, and per metric name the
    /// chunk bytes per sample and the bits of the timestamp and value streams.
    /// Reads the files only (safe next to a running agent).
    Analyze {
        /// Block directories, or data directories (every block in them).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ConfigWhat {
    /// Turn a prometheus.yml and/or an alertmanager.yml into one wasmon
    /// TOML config. What cannot be carried is printed with file:line and
    /// why; the written TOML is checked as `check config` checks it.
    Import {
        #[arg(long)]
        prometheus: Option<PathBuf>,
        #[arg(long)]
        alertmanager: Option<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum CheckWhat {
    /// Check config files with everything `run` checks before it starts: the
    /// config, its rule files, credential and certificate files, and plugin
    /// instances against the plugins dir when it exists.
    Config { files: Vec<PathBuf> },
    /// Lint a page in the Prometheus text format, as `promtool check
    /// metrics` does: read strictly (prometheus/common's expfmt), then
    /// client_golang's promlint rules. Prints `metric problem` lines on
    /// stderr; exits 3 on problems and 1 when the page cannot be read, as
    /// promtool does.
    Metrics {
        /// The page (default: stdin).
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum PluginsWhat {
    /// Load every component in the plugins directory and list it with its
    /// world, version and errors; with --url, a running agent's plugins
    /// with each instance's circuit (failure policy).
    List {
        /// Config whose plugins.dir to list (default: the built-in config).
        #[arg(long, short, conflicts_with = "url")]
        config: Option<PathBuf>,
        /// List this directory instead.
        #[arg(long, conflicts_with = "url")]
        dir: Option<PathBuf>,
        /// Ask the agent at this base URL instead (e.g. http://127.0.0.1:9930).
        #[arg(long)]
        url: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Copy the *.wasm components of FROM into TO unless TO already has a file
    /// of that name (an init container seeding a plugins volume with the
    /// image's first-party plugins without overwriting the user's; the
    /// image has no shell to do it with cp).
    Seed { from: PathBuf, to: PathBuf },
}

// jemalloc returns freed memory to the OS and fragments less than glibc's
// malloc under the scrape loop's allocate-parse-free cycle, which keeps RSS
// per active series down (measured in bench/rss_per_series.sh).
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc settings, chosen by measuring the agent at 25k-100k series
/// (`/debug/allocator`): freed pages go back to the OS after 250 ms (a
/// background thread purges even when the process is idle) instead of
/// jemalloc's default 10 s, so RSS tracks what is live; and two arenas
/// instead of four per CPU, since every arena keeps its own partly used
/// pages and metadata (at 25k series: resident 24.1 -> 15.5 MB for the
/// same 12.7 MB of live objects). The agent's few threads allocate mostly
/// through their caches. On a large node with heavy ingestion, more
/// arenas can be asked for with `_RJEM_MALLOC_CONF=narenas:N`.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] =
    b"background_thread:true,narenas:2,dirty_decay_ms:250,muzzy_decay_ms:0\0";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CompilePlugin { engine_config, out } = &cli.command {
        // A child of an agent: no runtime, no logging, exit code by outcome.
        return match wasmon::plugins::engine::compile_worker(engine_config, out) {
            Ok(()) => ExitCode::SUCCESS,
            Err((code, msg)) => {
                eprintln!("{msg}");
                ExitCode::from(code as u8)
            }
        };
    }
    init_logging(&cli.log_level, cli.log_format);
    // Past a file size limit (`ulimit -f`, systemd's LimitFSIZE=) a write
    // must fail with EFBIG, which the store reports and recovers from, not
    // kill the agent (SIGXFSZ's default action dumps core).
    // SAFETY: only sets a disposition, to SIG_IGN; no handler runs.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    match std::env::current_exe() {
        Ok(exe) => wasmon::plugins::engine::compile_in_child_process(exe),
        Err(e) => {
            tracing::warn!(error = %e, "cannot find this executable; plugins compile in-process")
        }
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match rt.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // Dropping the runtime would wait for every blocking task without
    // bound; the agent's state is flushed by now, so a task still running
    // (work that missed its cancellation, a stuck compile) must not hold
    // the exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}

fn init_logging(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    // Colors only for a person at a terminal, never in files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

async fn run(cmd: Command) -> Result<ExitCode> {
    match cmd {
        Command::Run {
            config,
            listen_address,
            storage_path,
        } => {
            let config = if config.is_empty() {
                tracing::info!("no --config given: running on the built-in default config");
                Config::builtin()
            } else {
                Config::load_files(&config)?
            };
            let storage_path = storage_path.map(|p| std::path::absolute(&p).unwrap_or(p));
            let config = config.with_overrides(wasmon::config::Overrides {
                listen_address,
                storage_path,
            });
            run_agent(config).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            what:
                ConfigWhat::Import {
                    prometheus,
                    alertmanager,
                    out,
                },
        } => {
            let sources = wasmon::config::import::Sources {
                prometheus,
                alertmanager,
                out_dir: out
                    .as_ref()
                    .map(|o| o.parent().map(PathBuf::from).unwrap_or_default()),
            };
            let imported = wasmon::config::import::import(&sources)?;
            for f in &imported.findings {
                eprintln!("{f}");
            }
            let origin = out
                .as_ref()
                .map(|o| o.display().to_string())
                .unwrap_or_else(|| "imported config".into());
            imported
                .config(&origin)
                .context("the imported config does not check (a bug in the importer)")?;
            let text = format!("{}{}", imported.header(), imported.toml);
            match out {
                Some(o) => wasmon::fsutil::write_atomic(&o, text.as_bytes())
                    .with_context(|| format!("writing {}", o.display()))?,
                None => print!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Check {
            what: CheckWhat::Metrics { file },
        } => {
            let body = match &file {
                Some(f) => tokio::fs::read(f)
                    .await
                    .with_context(|| format!("reading {}", f.display()))?,
                None => {
                    let mut b = Vec::new();
                    tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut b)
                        .await
                        .context("reading the page from stdin")?;
                    b
                }
            };
            match wasmon::textparse::lint::lint(&body) {
                Err(e) => {
                    eprintln!(
                        "error while linting: text format parsing error in line {}: {}",
                        e.line, e.message
                    );
                    Ok(ExitCode::FAILURE)
                }
                Ok(problems) if problems.is_empty() => Ok(ExitCode::SUCCESS),
                Ok(problems) => {
                    for p in &problems {
                        eprintln!("{p}");
                    }
                    // promtool's lintErrExitCode.
                    Ok(ExitCode::from(3))
                }
            }
        }
        Command::Check {
            what: CheckWhat::Config { files },
        } => {
            if files.is_empty() {
                anyhow::bail!("check config: give at least one file");
            }
            let mut failed = false;
            for f in files {
                // Everything `run` checks short of opening the store and
                // binding ports (rule files, plugins, credentials files).
                match wasmon::app::Prepared::check_file(&f).await {
                    Ok(p) => {
                        for w in &p.warnings {
                            println!("WARNING: {w}");
                        }
                        println!(
                            "SUCCESS: {} is valid ({} receivers, {} rule files, {} rules)",
                            f.display(),
                            p.loaded.config.receivers.len(),
                            p.rules.len(),
                            p.rule_count()
                        )
                    }
                    Err(e) => {
                        failed = true;
                        println!("FAILED: {e:#}");
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Test {
            what: TestWhat::Rules { files, run },
        } => {
            if files.is_empty() {
                anyhow::bail!("test rules: give at least one test file");
            }
            let run = run
                .map(|r| regex::Regex::new(&r).with_context(|| format!("--run {r:?}")))
                .transpose()?;
            let opts = wasmon::rules::unittest::TestOpts {
                run,
                ..Default::default()
            };
            let ok = wasmon::rules::unittest::run_test_files_with(
                &files,
                &opts,
                &mut std::io::stdout(),
            )?;
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Routes { what } => routes(what),
        Command::Relabel {
            what: RelabelWhat::Test(args),
        } => wasmon::author::relabel::test(args),
        Command::Tsdb {
            what: TsdbWhat::Analyze { dirs, json },
        } => {
            let mut reports = Vec::new();
            for d in &dirs {
                let found = wasmon::tsdb::analyze::analyze(d)
                    .with_context(|| format!("analyzing {}", d.display()))?;
                // As promtool: nothing to analyze is an error, not an empty report.
                if found.is_empty() {
                    anyhow::bail!(
                        "analyzing {}: no blocks (neither a block directory with meta.json nor a data directory holding some)",
                        d.display()
                    );
                }
                reports.extend(found);
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                print!("{}", wasmon::tsdb::analyze::render(&reports));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Ack {
            group_key,
            by,
            comment,
            expires_in,
            url,
        } => {
            wasmon::client::incidents::ack(&url, &group_key, &by, &comment, expires_in.as_deref())
                .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Checks {
            what: ChecksWhat::Run { name, url, json },
        } => Ok(if wasmon::client::checks::run(&url, &name, json).await? {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }),
        Command::Unack { id, url } => {
            wasmon::client::incidents::unack(&url, &id).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CompilePlugin { .. } => {
            anyhow::bail!("__compile-plugin is handled before the runtime starts")
        }
        Command::Incidents { id, report, url } => {
            wasmon::client::incidents::incidents(&url, id.as_deref(), report).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugin {
            what: wasmon::author::PluginCommand::Call(args),
        } => wasmon::author::call::run(args).await,
        Command::Plugin { what } => wasmon::author::run(what),
        Command::Rollouts { url, json } => {
            wasmon::client::rollouts::status(&url, json).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins {
            what: PluginsWhat::Seed { from, to },
        } => {
            let copied = wasmon::plugins::seed_dir(&from, &to)?;
            for name in &copied {
                println!("seeded {}", to.join(name).display());
            }
            println!("{} plugin(s) seeded into {}", copied.len(), to.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Plugins {
            what:
                PluginsWhat::List {
                    url: Some(url),
                    json,
                    ..
                },
        } => {
            let list = wasmon::client::plugins::list(&url).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!("{}", wasmon::plugins::list::render(&list));
                if list.is_empty() {
                    println!("(no plugins in the agent at {url})");
                }
            }
            let failed = list.iter().any(|p| !p["error"].is_null());
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Plugins {
            what: PluginsWhat::List {
                config, dir, json, ..
            },
        } => {
            let config = match config {
                Some(p) => Config::load(&p)?,
                // Listing a bare directory should leave no cache behind.
                None => {
                    let mut c = Config::builtin();
                    c.plugins.cache_dir = PathBuf::new();
                    c
                }
            };
            let dir = dir.unwrap_or_else(|| config.resolve(&config.plugins.dir));
            // An empty listing of a directory that is not there would look
            // like "no plugins installed".
            std::fs::read_dir(&dir)
                .with_context(|| format!("plugins list: reading directory {}", dir.display()))?;
            let cache = (!config.plugins.cache_dir.as_os_str().is_empty())
                .then(|| config.resolve(&config.plugins.cache_dir));
            let rt =
                PluginRuntime::new(&config.plugins, dir.clone(), cache, Metrics::new().into())?;
            let (_, failed) = rt.load_all().await;
            let list = rt.list();
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print!(
                    "{}",
                    wasmon::plugins::list::render(
                        &serde_json::to_value(&list)?
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                    )
                );
                if list.is_empty() {
                    println!("(no plugins in {})", dir.display());
                }
            }
            Ok(if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn routes(what: RoutesWhat) -> Result<ExitCode> {
    let (config, tree) = match &what {
        RoutesWhat::Test { config, .. } | RoutesWhat::Show { config } => {
            let c = Config::load(config)?;
            let route = c
                .route
                .clone()
                .with_context(|| format!("{}: no [route] configured", config.display()))?;
            let tree = wasmon::alerting::route::Route::new(&route).map_err(anyhow::Error::msg)?;
            (c, tree)
        }
    };
    let _ = config;
    match what {
        RoutesWhat::Show { .. } => {
            let mut out = String::new();
            print_route(&tree, 0, &mut out);
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        RoutesWhat::Test {
            verify_receivers,
            labels,
            ..
        } => {
            let mut pairs = Vec::new();
            for l in &labels {
                if l.starts_with('{') {
                    for m in
                        wasmon::alerting::matcher::parse_matchers(l).map_err(anyhow::Error::msg)?
                    {
                        pairs.push((m.name.clone(), m.value.clone()));
                    }
                } else {
                    let (n, v) = l
                        .split_once('=')
                        .with_context(|| format!("label {l:?} is not name=value"))?;
                    pairs.push((n.to_string(), v.trim_matches('"').to_string()));
                }
            }
            let ls = wasmon::model::Labels::from_pairs(pairs);
            let receivers: Vec<String> = tree
                .match_labels(&ls)
                .iter()
                .map(|r| r.opts.receiver.clone())
                .collect();
            println!("{}", receivers.join(","));
            if let Some(want) = verify_receivers {
                if want != receivers.join(",") {
                    println!("WARNING: Expected receivers did not match resolved receivers.");
                    return Ok(ExitCode::FAILURE);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_route(r: &wasmon::alerting::route::Route, depth: usize, out: &mut String) {
    use std::fmt::Write;
    let indent = "  ".repeat(depth);
    let _ = writeln!(
        out,
        "{indent}{}  receiver: {}  group_by: [{}]  continue: {}",
        if depth == 0 {
            "Routing tree:".to_string()
        } else {
            r.matchers.to_string()
        },
        r.opts.receiver,
        r.opts
            .group_by
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
        r.continue_matching
    );
    for c in &r.routes {
        print_route(c, depth + 1, out);
    }
}

async fn run_agent(config: Config) -> Result<()> {
    let agent = Agent::start(config).await.context("starting the agent")?;
    // SIGHUP reloads the config, as for Prometheus and Alertmanager.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let a = agent.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let _ = a.reload_config().await;
        }
    });
    let shutdown = async {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    };
    agent.serve(None, shutdown).await
}
