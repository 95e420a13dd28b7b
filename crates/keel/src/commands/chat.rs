//! `keel chat`: an interactive REPL over a durable session. Replies stream as they come; the
//! session outlives the process (`keel chat --session ses_…` continues it).

use anyhow::Context;
use clap::Args;
use keel_core::{RunStatus, SessionId};
use keel_store::SessionFilter;
use rustyline::error::ReadlineError;

use super::render_message;
use super::send::{new_session, stream_turn};
use crate::config::Config;
use crate::runtime::{DEFAULT_AGENT, Runtime};

#[derive(Args)]
pub struct ChatArgs {
    /// The agent to chat with in a new session.
    #[arg(long, default_value = DEFAULT_AGENT)]
    pub agent: String,
    /// Continue this session.
    #[arg(long)]
    pub session: Option<SessionId>,
}

const HELP: &str = "commands: /new (start a new session), /sessions (list sessions), /history (this session's messages), /exit";

pub async fn run(config: &Config, args: ChatArgs) -> anyhow::Result<()> {
    let rt = Runtime::start(config).await?;
    let mut session = match args.session {
        Some(id) => {
            rt.engine
                .store()
                .get_session(&rt.tenant, &id)
                .await?
                .with_context(|| {
                    format!("session {id} not found; `keel sessions list` shows the sessions")
                })?;
            id
        }
        None => new_session(&rt, &args.agent).await?,
    };
    eprintln!("keel chat: session {session} ({HELP})");
    let mut editor = rustyline::DefaultEditor::new().context("cannot open the terminal")?;
    loop {
        let line = match editor.readline("> ") {
            Ok(line) => line,
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("cannot read input"),
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(line);
        match line {
            "/exit" | "/quit" => break,
            "/new" => {
                session = new_session(&rt, &args.agent).await?;
                eprintln!("new session {session}");
            }
            "/sessions" => {
                let filter = SessionFilter {
                    limit: 20,
                    ..SessionFilter::default()
                };
                for s in rt.engine.store().list_sessions(&rt.tenant, &filter).await? {
                    let mark = if s.id == session { "*" } else { " " };
                    eprintln!(
                        "{mark} {}  {}  {}  events={}",
                        s.id, s.created_at, s.agent_name, s.last_seq
                    );
                }
            }
            "/history" => {
                for (_, message) in rt.engine.history(&session, 0, 100_000).await? {
                    eprintln!("{}", render_message(&message));
                }
            }
            "/help" => eprintln!("{HELP}"),
            cmd if cmd.starts_with('/') => eprintln!("unknown command {cmd}; {HELP}"),
            text => {
                let run = stream_turn(&rt.engine, &rt, &session, text, true).await?;
                if run.status != RunStatus::Completed {
                    eprintln!(
                        "[run {} {}: {}]",
                        run.id,
                        run.status.as_str(),
                        run.error.unwrap_or_default()
                    );
                }
            }
        }
    }
    rt.engine.shutdown().await;
    Ok(())
}
