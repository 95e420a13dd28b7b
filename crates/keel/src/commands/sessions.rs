//! `keel sessions list | show | events`: read-only views of the store (no lock needed, so
//! they work while another keel process is running).

use clap::Subcommand;
use keel_core::{SessionId, SessionState, TenantId};
use keel_store::SessionFilter;

use crate::config::Config;
use crate::runtime::open_store;

#[derive(Subcommand)]
pub enum SessionsCommand {
    /// Sessions, newest first.
    List {
        /// Only sessions of this agent.
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// A session's summary: agent, status, last seq, messages, usage.
    Show {
        id: SessionId,
        #[arg(long)]
        json: bool,
    },
    /// A session's event log.
    Events {
        id: SessionId,
        /// Only events after this seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: SessionsCommand) -> anyhow::Result<()> {
    let store = open_store(config)?;
    let tenant = TenantId::default_tenant();
    match command {
        SessionsCommand::List { agent, limit, json } => {
            let filter = SessionFilter {
                agent_name: agent,
                limit,
                ..SessionFilter::default()
            };
            let sessions = store.list_sessions(&tenant, &filter).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&sessions)?);
            } else {
                for s in sessions {
                    println!(
                        "{}  {}  agent={} v{}  events={}",
                        s.id, s.created_at, s.agent_name, s.agent_version, s.last_seq
                    );
                }
            }
        }
        SessionsCommand::Show { id, json } => {
            let record = store.get_session(&tenant, &id).await?.ok_or_else(|| {
                anyhow::anyhow!("session {id} not found; `keel sessions list` shows the sessions")
            })?;
            let loaded = store.load(&id).await?;
            let state = loaded
                .snapshot
                .map(|s| s.state)
                .unwrap_or_default()
                .fold(&loaded.tail)?;
            let summary = summary(&record, &state);
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                for (k, v) in summary.as_object().expect("an object") {
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
            if store.get_session(&tenant, &id).await?.is_none() {
                anyhow::bail!("session {id} not found; `keel sessions list` shows the sessions");
            }
            let events = store.read_events(&id, after, limit).await?;
            for e in events {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    let text = e
                        .body
                        .messages()
                        .iter()
                        .map(super::render_message)
                        .collect::<Vec<_>>()
                        .join(" | ");
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
    }
    Ok(())
}

fn summary(record: &keel_store::SessionRecord, state: &SessionState) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "agent": record.agent_name,
        "agent_version": record.agent_version,
        "created_at": record.created_at,
        "status": state.status,
        "active_run": state.active.as_ref().map(|r| r.run_id.to_string()),
        "last_seq": state.last_seq,
        "messages": state.message_count,
        "runs_finished": state.runs_finished,
        "usage": state.usage,
        "metadata": record.metadata,
    })
}
