//! The `keel` binary: `keel chat`, `keel send`, `keel resume`, `keel sessions …`, `keel agents …`.

mod commands;
mod config;
mod providers;
mod runtime;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than the system allocator: serving is mostly short-lived buffers.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// keel: a stateful runtime for AI agents.
#[derive(Parser)]
#[command(name = "keel", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file (default: ./keel.toml when present).
    #[arg(long, global = true, env = "KEEL_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (default: ./keel-data); overrides KEEL_DATA_DIR and keel.toml.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The store: `postgres://…` to share one PostgreSQL database between nodes (default:
    /// SQLite in the data directory); overrides keel.toml's `[store] url`.
    #[arg(long, global = true, value_name = "URL")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with an agent in a session that survives restarts.
    Chat(commands::chat::ChatArgs),
    /// Send one message to a session, wait for the reply and print it.
    Send(commands::send::SendArgs),
    /// Resume every unfinished run (after a crash) and wait for them to end.
    Resume(commands::send::ResumeArgs),
    /// List and inspect sessions.
    Sessions(commands::sessions::SessionsArgs),
    /// Look at a run and decide on the calls it waits on (human approval).
    Runs(commands::runs::RunsArgs),
    /// A session's schedules: list, add, rm.
    Schedules(commands::schedules::SchedulesArgs),
    /// The tenant's webhooks (inbound triggers, outbound run events): list, add, rm.
    Webhooks(commands::webhooks::WebhooksArgs),
    /// Long-term memory: add, search, get, rm.
    Memory(commands::memory::MemoryArgs),
    /// List and inspect agents.
    #[command(subcommand)]
    Agents(commands::agents::AgentsCommand),
    /// Manage local model files.
    #[command(subcommand)]
    Model(commands::model::ModelCommand),
    /// Try an MCP server (a URL, or a command after --): its tools as the model would see
    /// them, or a call of one.
    #[command(subcommand)]
    Mcp(commands::mcp::McpCommand),
    /// Serve the HTTP API (sessions, runs, SSE streams) with API keys.
    Serve(commands::serve::ServeArgs),
    /// Check the store: list records that cannot be read.
    #[command(subcommand)]
    Store(commands::store::StoreCommand),
    /// Copy every record of one store into another, empty one (SQLite to PostgreSQL and back),
    /// and verify the copy.
    Migrate(commands::migrate::MigrateArgs),
    /// Check the configuration without starting keel and print it as keel would use it.
    #[command(subcommand)]
    Config(commands::config::ConfigCommand),
    /// Measure durable turns/s, per-turn cost over a long session and bytes per turn.
    Bench(commands::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet = matches!(&cli.command, Command::Serve(args) if args.quiet);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
                .unwrap_or_else(|_| default_log_filter(quiet).into()),
        )
        .with_writer(|| StderrLog)
        // Colours for a person at a terminal, plain text for a file or a pipe.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .init();
    config::warn_unknown_variables();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        // Input keel refuses, like clap's usage errors.
        Err(e) if e.is::<commands::memory::BadInput>() => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter without `KEEL_LOG`: warnings, and `keel serve`'s line per request unless
/// `--quiet`.
fn default_log_filter(quiet: bool) -> String {
    if quiet {
        "warn".into()
    } else {
        format!("warn,{}=info", keel_server::REQUEST_LOG_TARGET)
    }
}

/// keel's log writer: stderr, where a line that cannot be written (the log's disk is full, its
/// pipe closed) is dropped and counted (`keel_log_lines_dropped_total` in `/metrics`) instead
/// of failing. tracing-subscriber reports a failing writer with `eprintln!`, which panics when
/// stderr fails too (tokio-rs/tracing#3271): in a request, or in the store's writer thread.
struct StderrLog;

impl std::io::Write for StderrLog {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        if std::io::stderr().write_all(line).is_err() {
            keel_server::metrics::log_line_dropped();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// `Ok(false)`: the command ran and found something wrong (e.g. `keel store check`).
async fn run(cli: Cli) -> anyhow::Result<bool> {
    if let Command::Config(cmd) = cli.command {
        return commands::config::run(cli.config.as_deref(), cli.data_dir, cmd);
    }
    if let Command::Mcp(cmd) = cli.command {
        return commands::mcp::run(cmd).await;
    }
    let mut config = config::Config::load(cli.config.as_deref())?;
    if let Some(dir) = cli.data_dir {
        config.data_dir = Some(dir);
    }
    if let Some(url) = cli.store {
        config.store.url = Some(url);
    }
    match cli.command {
        Command::Chat(args) => commands::chat::run(&config, args).await,
        Command::Send(args) => commands::send::send(&config, args).await,
        Command::Resume(args) => commands::send::resume(&config, args).await,
        Command::Sessions(args) => return commands::sessions::run(&config, args).await,
        Command::Runs(args) => commands::runs::run(&config, args).await,
        Command::Schedules(args) => commands::schedules::run(&config, args).await,
        Command::Webhooks(args) => commands::webhooks::run(&config, args).await,
        Command::Memory(args) => commands::memory::run(&config, args).await,
        Command::Agents(cmd) => commands::agents::run(&config, cmd).await,
        Command::Model(cmd) => commands::model::run(&config, cmd),
        Command::Serve(args) => commands::serve::run(&config, args).await,
        Command::Bench(args) => commands::bench::run(args).await,
        Command::Store(cmd) => return commands::store::run(&config, cmd).await,
        Command::Migrate(args) => return commands::migrate::run(config, args).await,
        Command::Config(_) | Command::Mcp(_) => {
            unreachable!("handled before the configuration is loaded")
        }
    }
    .map(|()| true)
}
