//! `keel sessions list | show | events | verify | fork | blocks | context | export | import`:
//! the subcommands and their printers. The reads are asked of wherever the sessions live
//! (`sessions_at.rs`: the local store or a running `keel serve`, `--server URL`), so both print
//! alike. `fork`, `blocks`, `context`, `export` and `import` need the engine (a write; the model routes),
//! so they go through the chat's `Client`: the embedded engine over the data directory, or the
//! server holding it.

use clap::{Args, Subcommand};
use keel_core::{EventBody, SessionId};
use keel_engine::StoreReader;
use keel_models::ModelRequest;
use serde_json::Value;

use super::client::{self, Client, ServerArgs};
use super::remote::Remote;
use super::sessions_at::{SessionsAt, not_found_on_server};
use crate::config::Config;
use crate::runtime::open_store;

#[derive(Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: SessionsCommand,
}

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Sessions, newest first, each with its title (its first message, shortened).
    List {
        /// Only sessions of this agent.
        #[arg(long)]
        agent: Option<String>,
        /// At most this many sessions (a server answers 200 at most).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print the sessions as one JSON array instead of one line each.
        #[arg(long)]
        json: bool,
    },
    /// A session's summary: agent, status, last seq, messages, usage, title.
    Show {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// Print the summary as a JSON object instead of `key: value` lines.
        #[arg(long)]
        json: bool,
    },
    /// A session's event log: one line per event with its seq, time and type, what was said
    /// (`you:` / `agent:`) and who served each model step.
    Events {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// Only events after this seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// At most this many events (a server answers 1000 at most).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Print each event as it is stored, one JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Check the session's tamper-evident journal (each event's hash covers its
    /// predecessor's): prints `intact`, or the first seq where the stored log was changed and
    /// exits with status 1.
    Verify {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// Print the report as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Start a new session whose log is a copy of this one's up to a seq between runs: a
    /// branch of the conversation at that point. Prints the new session's id.
    Fork {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// Copy the log up to and including this seq (default: all of it).
        #[arg(long)]
        at: Option<u64>,
        /// Print the new session as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Write the session in the portable `keel.session/1` format (docs/session-format.md) to
    /// standard output: `keel sessions export ses_… > s.jsonl`. A copy, for backups; with
    /// `--move` the session leaves this keel: it is marked exported and never driven here again
    /// (refused while one of its runs is running).
    Export {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// Move the session out instead of copying it: import the file where it goes on.
        #[arg(long = "move")]
        move_out: bool,
        /// With `--move`: where it goes (a URL or a name), told to whoever sends to it here.
        #[arg(long, requires = "move_out")]
        to: Option<String>,
    },
    /// Create the session an export holds (same id, its log, scratchpad, schedules and
    /// unfinished runs), after checking the whole file. Prints the session's id.
    Import {
        /// The export (`-` for standard input).
        file: std::path::PathBuf,
        /// What the file is: `keel.session` (an export), `openai-items` (an OpenAI
        /// conversation's items as the SDK lists them: a new session of `--agent`) or
        /// `letta-af` (a Letta agent file: a new agent version on the model of `--agent`).
        #[arg(long, default_value = "keel.session", value_parser = ["keel.session", "openai-items", "letta-af"])]
        format: String,
        /// For `openai-items`: the order they were listed in, `desc` (the SDK's default) or `asc`.
        #[arg(long, value_parser = ["desc", "asc"])]
        order: Option<String>,
        /// For `openai-items`: the agent the new session pins; for `letta-af`: the agent whose
        /// model, tools and limits the imported one gets (default `default`).
        #[arg(long)]
        agent: Option<String>,
        /// Print the new session as a JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The session's memory blocks, one line each (label, writes, size against its limit,
    /// value); with a LABEL, that block's value; with `--set`, its new value (between runs,
    /// logged in the session as an edit by the API).
    Blocks {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// One block, by its label (`user`, `persona`, …).
        label: Option<String>,
        /// Rewrite the block to this value.
        #[arg(long, requires = "label")]
        set: Option<String>,
        /// Print the block(s) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What the model received at a seq of the session's log (default: what it would receive
    /// now): the system instructions, the transcript window, the tools.
    Context {
        /// The session's id (`ses_…`, as `keel sessions list` shows it).
        id: SessionId,
        /// The seq to look at (as `keel sessions events` numbers them).
        #[arg(long)]
        at: Option<u64>,
        /// Print the context as a JSON object (the normalized model request under `request`).
        #[arg(long)]
        json: bool,
    },
}

/// `keel sessions …`: on the server of `--server`, else on the local store (fork and
/// context: the local engine, else the `keel serve` holding the data directory). `false` when
/// the answer is a failure to report by the exit status (`verify` found a broken chain).
pub async fn run(config: &Config, args: SessionsArgs) -> anyhow::Result<bool> {
    if let SessionsCommand::Fork { .. }
    | SessionsCommand::Blocks { .. }
    | SessionsCommand::Context { .. }
    | SessionsCommand::Export { .. }
    | SessionsCommand::Import { .. } = &args.command
    {
        let client = client::connect(config, args.server).await?;
        let printed = print_travel(client.as_ref(), args.command).await;
        client.close().await;
        return printed.map(|()| true);
    }
    if let Some(url) = &args.server.server {
        let remote = Remote::new(config, url, args.server.api_key.clone())?;
        return print(SessionsAt::Remote(&remote), args.command).await;
    }
    let store = StoreReader::new(open_store(config).await?);
    print(SessionsAt::Local(store), args.command).await
}

/// Answers `command` from the sessions `at`, for people or (`--json`) for programs; `false`
/// when `verify` found a broken chain.
pub async fn print(at: SessionsAt<'_>, command: SessionsCommand) -> anyhow::Result<bool> {
    match command {
        SessionsCommand::List { agent, limit, json } => {
            let sessions = at.list(agent, limit).await?;
            if json {
                let objects: Vec<&Value> = sessions.iter().map(|s| &s.json).collect();
                println!("{}", serde_json::to_string_pretty(&objects)?);
            } else {
                for s in sessions {
                    println!("{}", s.line);
                }
            }
        }
        SessionsCommand::Show { id, json } => {
            let summary = at.summary(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                for (k, v) in summary.as_object().into_iter().flatten() {
                    println!("{k}: {v}");
                }
            }
        }
        SessionsCommand::Events {
            id,
            after,
            limit,
            json,
        } => {
            for e in at.events(&id, after, limit).await? {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    let mut text = e
                        .body
                        .messages()
                        .iter()
                        .map(super::render_message)
                        .collect::<Vec<_>>()
                        .join(" | ");
                    if let Some(served) = served_by(&e.body) {
                        text += &served;
                    }
                    println!(
                        "{:>6}  {}  {:<14} {}",
                        e.seq,
                        e.at,
                        e.body.type_name(),
                        text
                    );
                }
            }
        }
        SessionsCommand::Verify { id, json } => {
            let report = at.chain(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{}", chain_line(&report));
            }
            return Ok(report["intact"] == Value::Bool(true));
        }
        SessionsCommand::Fork { .. }
        | SessionsCommand::Blocks { .. }
        | SessionsCommand::Context { .. }
        | SessionsCommand::Export { .. }
        | SessionsCommand::Import { .. } => {
            unreachable!("`run` answers fork, blocks, context, export and import through a client")
        }
    }
    Ok(true)
}

/// A memory block for people: `user  v2  12/60  Ada, likes tea` (`shared` after the label of
/// a shared one; the value's lines joined by ` / `).
fn block_line(block: &Value) -> String {
    let value = block["value"].as_str().unwrap_or_default();
    let shared = if block["shared"] == Value::Bool(true) {
        " (shared)"
    } else {
        ""
    };
    format!(
        "{}{shared}  v{}  {}/{}  {}",
        block["label"].as_str().unwrap_or_default(),
        block["version"],
        value.chars().count(),
        block["limit"],
        value.lines().collect::<Vec<_>>().join(" / ")
    )
}

/// A chain's report for people: `intact: 12 events (sha256)`, or where it broke.
fn chain_line(report: &Value) -> String {
    let events = &report["events"];
    let algorithm = report["algorithm"].as_str().unwrap_or_default();
    let unhashed = match report["unhashed"].as_u64() {
        Some(0) | None => String::new(),
        Some(n) => format!(", the first {n} stored before keel hashed its journal"),
    };
    match report["first_bad_seq"].as_u64() {
        None => format!("intact: {events} events ({algorithm}{unhashed})"),
        Some(seq) => format!(
            "broken at seq {seq}: {}",
            report["problem"].as_str().unwrap_or_default()
        ),
    }
}

/// Answers `fork`, `context`, `export` and `import` through the engine of `client`.
async fn print_travel(client: &dyn Client, command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::Fork { id, at, json } => {
            let fork = client
                .fork(&id, at)
                .await
                .map_err(|e| not_found_on_server(&id, e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&fork)?);
            } else {
                println!("{}", fork["id"].as_str().unwrap_or_default());
            }
        }
        SessionsCommand::Blocks {
            id,
            label,
            set,
            json,
        } => {
            // The server's 404 names what is missing: the session or the block.
            let answer = client.memory_blocks(&id, label.as_deref(), set).await?;
            match (json, answer["data"].as_array()) {
                (true, _) => println!("{}", serde_json::to_string_pretty(&answer)?),
                (false, Some(blocks)) => blocks.iter().for_each(|b| println!("{}", block_line(b))),
                (false, None) => println!("{}", answer["value"].as_str().unwrap_or_default()),
            }
        }
        SessionsCommand::Context { id, at, json } => {
            let context = client
                .context(&id, at)
                .await
                .map_err(|e| not_found_on_server(&id, e))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&context)?);
            } else {
                print_context(&context)?;
            }
        }
        SessionsCommand::Export { id, move_out, to } => {
            let export = match move_out {
                true => client.move_session_out(&id, to).await,
                false => client.export_session(&id).await,
            }
            .map_err(|e| not_found_on_server(&id, e))?;
            let mut out = std::io::stdout().lock();
            std::io::Write::write_all(&mut out, export.as_bytes())?;
            std::io::Write::flush(&mut out)?;
        }
        SessionsCommand::Import {
            file,
            format,
            order,
            agent,
            json,
        } => {
            let export = match file.as_os_str() == "-" {
                true => std::io::read_to_string(std::io::stdin())?,
                false => std::fs::read_to_string(&file).map_err(|e| {
                    anyhow::anyhow!("cannot read the export {}: {e}", file.display())
                })?,
            };
            let session = match format.as_str() {
                "openai-items" => {
                    let agent = agent.as_deref().unwrap_or("default");
                    client
                        .import_conversation(export, order.as_deref(), agent)
                        .await?
                }
                "letta-af" if order.is_some() => {
                    anyhow::bail!("--order is for --format openai-items")
                }
                "letta-af" => {
                    let base = agent.as_deref().unwrap_or("default");
                    client.import_letta_agent(export, base).await?
                }
                _ if order.is_some() || agent.is_some() => {
                    anyhow::bail!("--order and --agent are for --format openai-items or letta-af")
                }
                _ => client.import_session(export).await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&session)?);
            } else {
                println!("{}", session["id"].as_str().unwrap_or_default());
            }
        }
        _ => unreachable!("only fork, blocks, context, export and import go through a client"),
    }
    Ok(())
}

/// A context for people: where and who, the instructions, each message, the tools.
fn print_context(context: &Value) -> anyhow::Result<()> {
    let request: ModelRequest = serde_json::from_value(context["request"].clone())?;
    let run = context["run_id"].as_str().unwrap_or("none (between runs)");
    println!(
        "at seq {}  run {run}  served by {}",
        context["at_seq"],
        context["served_by"].as_str().unwrap_or_default()
    );
    if let Some(system) = &request.system {
        println!("system: {system}");
    }
    for message in &request.messages {
        println!("{}", super::render_message(message));
    }
    let tools: Vec<&str> = request.tools.iter().map(|t| t.name.as_str()).collect();
    println!(
        "tools: {}",
        if tools.is_empty() {
            "none".into()
        } else {
            tools.join(", ")
        }
    );
    Ok(())
}

/// Who served a model step, as configured (`[providers.NAME]`) and of which kind:
/// `  [upa/mock-model, openai]`.
fn served_by(body: &EventBody) -> Option<String> {
    let EventBody::ModelReplied {
        model,
        provider_kind,
        ..
    } = body
    else {
        return None;
    };
    Some(match provider_kind {
        Some(kind) => format!("  [{model}, {kind}]"),
        None => format!("  [{model}]"),
    })
}
