//! `keel chat`: an interactive REPL over a durable session, the same whether the session lives
//! in the local data directory or on a running server (one REPL over `client::Client`).
//! Replies stream as they come; the session outlives the process (`keel chat --session ses_…`
//! continues it, its last turns recapped).

use anyhow::Context;
use clap::Args;
use keel_core::{Message, Role, SessionId};
use rustyline::error::ReadlineError;

use super::client::{Client, ServerArgs, connect};
use super::render_message;
use crate::config::Config;
use crate::runtime::DEFAULT_AGENT;

#[derive(Args)]
pub struct ChatArgs {
    /// The agent to chat with in a new session.
    #[arg(long, default_value = DEFAULT_AGENT)]
    pub agent: String,
    /// Continue this session (its last turns are shown first).
    #[arg(long)]
    pub session: Option<SessionId>,
    #[command(flatten)]
    pub server: ServerArgs,
}

const HELP: &str = "commands: /new (start a new session), /sessions (list sessions), /history (this session's messages), /exit";

/// How many turns (a message of yours and what answered it) a resumed session recaps.
const RECAP_TURNS: usize = 3;

/// How many events from a log's end a recap reads: a few turns' worth, tool calls included.
const RECAP_EVENTS: u64 = 64;

/// Sessions `/sessions` lists.
const SESSIONS_LISTED: usize = 20;

pub async fn run(config: &Config, args: ChatArgs) -> anyhow::Result<()> {
    let client = connect(config, args.server.clone()).await?;
    let chatted = repl(client.as_ref(), &args).await;
    client.close().await;
    chatted
}

async fn repl(client: &dyn Client, args: &ChatArgs) -> anyhow::Result<()> {
    let mut session = match &args.session {
        Some(id) => {
            recap(client, id).await?;
            id.clone()
        }
        None => client.new_session(&args.agent).await?,
    };
    eprintln!(
        "keel chat: session {session} on {} ({HELP})",
        client.place()
    );
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
                session = client.new_session(&args.agent).await?;
                eprintln!("new session {session}");
            }
            "/sessions" => {
                for listed in client.sessions().list(None, SESSIONS_LISTED).await? {
                    let mark = if listed.line.id == session.as_str() {
                        "*"
                    } else {
                        " "
                    };
                    eprintln!("{mark} {}", listed.line);
                }
            }
            "/history" => {
                for message in client.sessions().messages(&session, 0).await? {
                    eprintln!("{}", render_message(&message));
                }
            }
            "/help" => eprintln!("{HELP}"),
            cmd if cmd.starts_with('/') => eprintln!("unknown command {cmd}; {HELP}"),
            text => {
                // A turn that fails is said and the chat goes on: the session is still there.
                let mut stdout = std::io::stdout();
                match client.turn(&session, text, Some(&mut stdout)).await {
                    Ok(turn) if !turn.completed() => eprintln!("[{}]", turn.failure()),
                    Ok(_) => {}
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
        }
    }
    Ok(())
}

/// Shows the last turns of the session being resumed (failing when there is no such session).
async fn recap(client: &dyn Client, session: &SessionId) -> anyhow::Result<()> {
    let at = client.sessions();
    let summary = at.summary(session).await?;
    let last_seq = summary["last_seq"].as_u64().unwrap_or_default();
    let messages = at
        .messages(session, last_seq.saturating_sub(RECAP_EVENTS))
        .await?;
    let shown = last_turns(&messages, RECAP_TURNS);
    if shown.is_empty() {
        return Ok(());
    }
    eprintln!("last turns of {session} (/history shows all):");
    for message in shown {
        eprintln!("  {}", render_message(message));
    }
    Ok(())
}

/// The messages from the `turns`-th last message of the user on.
fn last_turns(messages: &[Message], turns: usize) -> &[Message] {
    let starts: Vec<usize> = messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.role == Role::User)
        .map(|(i, _)| i)
        .collect();
    let from = match starts.len().checked_sub(turns) {
        Some(i) => starts[i],
        None => starts.first().copied().unwrap_or(0),
    };
    &messages[from..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recap_starts_at_a_message_of_the_user() {
        let said = |role, text: &str| Message {
            role,
            parts: vec![keel_core::Part::Text { text: text.into() }],
        };
        let messages = vec![
            said(Role::Assistant, "tail of an older turn"),
            said(Role::User, "one"),
            said(Role::Assistant, "1"),
            said(Role::User, "two"),
            said(Role::Assistant, "2"),
        ];
        assert_eq!(last_turns(&messages, 1), &messages[3..]);
        assert_eq!(last_turns(&messages, 3), &messages[1..]);
        assert!(last_turns(&[], 3).is_empty());
    }
}
