//! `keel chat`: an interactive REPL over a durable session, the same whether the session lives
//! in the local data directory or on a running server (one REPL over `client::Client`).
//! Replies stream as they come; the session outlives the process (`keel chat --session ses_…`
//! continues it, its last turns recapped).

use anyhow::Context;
use clap::Args;
use keel_core::{Message, Role, SessionId};
use rustyline::error::ReadlineError;
use serde_json::{Value, json};

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

const HELP: &str = "commands: /new (start a new session), /sessions (list sessions), /history (this session's messages), /exit; //… sends a message starting with /";

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
            cmd if cmd.starts_with('/') && !cmd.starts_with("//") => {
                eprintln!("unknown command {cmd}; {HELP}")
            }
            text => {
                // `//…` sends a message that starts with `/`.
                let text = text
                    .strip_prefix('/')
                    .filter(|t| t.starts_with('/'))
                    .unwrap_or(text);
                // A turn that fails is said and the chat goes on: the session is still there.
                let mut stdout = std::io::stdout();
                match client.turn(&session, text, Some(&mut stdout)).await {
                    Ok(turn) if turn.status == "waiting" => {
                        if let Err(e) = ask_inline(client, &mut editor, &turn.run).await {
                            eprintln!("error: {e:#}");
                        }
                    }
                    Ok(turn) if !turn.completed() => eprintln!("[{}]", turn.failure()),
                    Ok(_) => {}
                    Err(e) => eprintln!("error: {e:#}"),
                }
            }
        }
    }
    Ok(())
}

/// A run that waits for a person: asks about each call it waits on (answer an `ask_human`
/// question; approve, reject or edit any other call), resumes it with the decisions, and goes on
/// until it no longer waits; then shows its reply. An empty answer leaves the run waiting
/// (`keel runs` decides later).
async fn ask_inline(
    client: &dyn Client,
    editor: &mut rustyline::DefaultEditor,
    run: &str,
) -> anyhow::Result<()> {
    let mut view = client.run_view(run).await?;
    while view["status"] == "waiting" {
        let mut decisions = Vec::new();
        for call in view["pending_approvals"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let (id, name, arguments) = (&call["call_id"], &call["name"], &call["arguments"]);
            let reply = if name == keel_core::ASK_HUMAN {
                eprintln!(
                    "the agent asks: {}",
                    arguments["question"].as_str().unwrap_or("?")
                );
                editor.readline("answer> ")?
            } else {
                eprintln!("the agent wants to call {name} with {arguments}");
                editor.readline("approve? y / n [reason] / {edited arguments}> ")?
            };
            let reply = reply.trim();
            let decision = match reply {
                "" => continue,
                _ if name == keel_core::ASK_HUMAN => {
                    json!({"call_id": id, "decision": "answer", "answer": reply})
                }
                "y" | "yes" => json!({"call_id": id, "decision": "approve"}),
                _ if reply.starts_with('{') => {
                    let edited: Value =
                        serde_json::from_str(reply).context("the edited arguments are not JSON")?;
                    json!({"call_id": id, "decision": "approve", "arguments": edited})
                }
                // `n`, `no`, `n REASON`, `no REASON`; any other text is the reason itself.
                _ => {
                    let reason = ["no", "n"]
                        .iter()
                        .find_map(|no| {
                            reply
                                .strip_prefix(no)
                                .filter(|rest| rest.is_empty() || rest.starts_with(' '))
                        })
                        .unwrap_or(reply)
                        .trim();
                    json!({"call_id": id, "decision": "reject", "reason": reason})
                }
            };
            decisions.push(decision);
        }
        if decisions.is_empty() {
            eprintln!("[run {run} still waits: `keel runs pending {run}`]");
            return Ok(());
        }
        client.resume(run, json!(decisions)).await?;
        view = settled(client, run).await?;
    }
    match view["status"].as_str() {
        Some("completed") => println!("{}", view["output"].as_str().unwrap_or_default()),
        other => eprintln!("[run {run} {}]", other.unwrap_or("?")),
    }
    Ok(())
}

/// The run once it has ended or waits again (a server drives it after a resume).
async fn settled(client: &dyn Client, run: &str) -> anyhow::Result<Value> {
    loop {
        let view = client.run_view(run).await?;
        if !matches!(view["status"].as_str(), Some("queued" | "running")) {
            return Ok(view);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
