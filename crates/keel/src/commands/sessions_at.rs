//! Where the sessions live and what each place answers about them: the local store (read
//! without the data directory's lock, so it works while another keel process runs, the default
//! tenant's sessions) or a running `keel serve` (the API key's tenant). Both answer the same
//! questions — lists, summaries, events, messages, chains — in the same shapes, so one printer
//! (`sessions.rs`) and chat's `/sessions`, `/history` and recap serve either alike.

use keel_core::{Event, Message, SessionId, SessionState, TenantId};
use keel_engine::StoreReader;
use keel_store::{SessionFilter, SessionRecord};
use serde::Deserialize;
use serde_json::Value;

use super::remote::{self, Remote};

/// Where the sessions live.
pub enum SessionsAt<'a> {
    /// The local store, read-only (the default tenant's sessions).
    Local(StoreReader),
    /// A running server, over its HTTP API (the API key's tenant).
    Remote(&'a Remote),
}

/// What a session's line in `keel sessions list` (and chat's `/sessions`) shows.
#[derive(Deserialize)]
pub struct SessionLine {
    pub id: String,
    created_at: String,
    agent: String,
    agent_version: u32,
    last_seq: u64,
    title: Option<String>,
}

impl std::fmt::Display for SessionLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}  {}  agent={} v{}  events={}",
            self.id, self.created_at, self.agent, self.agent_version, self.last_seq
        )?;
        match &self.title {
            Some(title) => write!(f, "  {title}"),
            None => Ok(()),
        }
    }
}

/// A listed session: its line, and the object `--json` prints (the stored record and its
/// title, or the server's view).
pub struct Listed {
    pub line: SessionLine,
    pub json: Value,
}

fn not_found(id: &SessionId) -> anyhow::Error {
    anyhow::anyhow!("session {id} not found; `keel sessions list` shows the sessions")
}

/// The server's 404 for a session said as the local store says it.
pub(super) fn not_found_on_server(id: &SessionId, error: anyhow::Error) -> anyhow::Error {
    if remote::is_not_found(&error) {
        not_found(id)
    } else {
        error
    }
}

/// How many events one read of a log asks for (the most a server answers at once).
const EVENTS_PAGE: usize = 1000;

impl SessionsAt<'_> {
    pub async fn list(&self, agent: Option<String>, limit: usize) -> anyhow::Result<Vec<Listed>> {
        match self {
            SessionsAt::Local(store) => {
                let filter = SessionFilter {
                    agent_name: agent,
                    limit,
                    ..SessionFilter::default()
                };
                let sessions = store
                    .list_sessions(&TenantId::default_tenant(), &filter)
                    .await?;
                let mut listed = Vec::with_capacity(sessions.len());
                for record in sessions {
                    let title = store.session_title(&record.id).await;
                    listed.push(stored(record, title)?);
                }
                Ok(listed)
            }
            SessionsAt::Remote(remote) => {
                let mut path = format!("/v1/sessions?limit={}", limit.clamp(1, 200));
                if let Some(agent) = agent {
                    path += &format!("&agent={agent}");
                }
                let page = remote.get(&path).await?;
                let data = page["data"].as_array().cloned().unwrap_or_default();
                data.into_iter()
                    .map(|json| {
                        let line = SessionLine::deserialize(&json)?;
                        Ok(Listed { line, json })
                    })
                    .collect()
            }
        }
    }

    /// A session's summary: agent, status, last seq, messages, usage, title.
    pub async fn summary(&self, id: &SessionId) -> anyhow::Result<Value> {
        match self {
            SessionsAt::Local(store) => {
                let tenant = TenantId::default_tenant();
                let record = store
                    .get_session(&tenant, id)
                    .await?
                    .ok_or_else(|| not_found(id))?;
                let loaded = store.load(id).await?;
                let state = loaded
                    .snapshot
                    .map(|s| s.state)
                    .unwrap_or_default()
                    .fold(&loaded.tail)?;
                let title = store.session_title(id).await;
                Ok(summary(&record, &state, title))
            }
            SessionsAt::Remote(remote) => remote
                .get(&format!("/v1/sessions/{id}"))
                .await
                .map_err(|e| not_found_on_server(id, e)),
        }
    }

    /// The session's events with `seq > after`, at most `limit`.
    pub async fn events(
        &self,
        id: &SessionId,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Event>> {
        match self {
            SessionsAt::Local(store) => {
                let tenant = TenantId::default_tenant();
                if store.get_session(&tenant, id).await?.is_none() {
                    return Err(not_found(id));
                }
                Ok(store.read_events(id, after, limit).await?)
            }
            SessionsAt::Remote(remote) => {
                let limit = limit.clamp(1, EVENTS_PAGE);
                let path = format!("/v1/sessions/{id}/events?after={after}&limit={limit}");
                let mut page = remote
                    .get(&path)
                    .await
                    .map_err(|e| not_found_on_server(id, e))?;
                Ok(serde_json::from_value(page["data"].take())?)
            }
        }
    }

    /// What walking the session's hash chain found, as `GET /v1/sessions/{id}/verify` says it.
    pub async fn chain(&self, id: &SessionId) -> anyhow::Result<Value> {
        match self {
            SessionsAt::Local(store) => {
                let tenant = TenantId::default_tenant();
                if store.get_session(&tenant, id).await?.is_none() {
                    return Err(not_found(id));
                }
                let report = store.verify_chain(id).await?;
                Ok(serde_json::to_value(keel_server::wire::ChainView::from(
                    report,
                ))?)
            }
            SessionsAt::Remote(remote) => remote
                .get(&format!("/v1/sessions/{id}/verify"))
                .await
                .map_err(|e| not_found_on_server(id, e)),
        }
    }

    /// The session's messages in the events with `seq > after`, oldest first.
    pub async fn messages(&self, id: &SessionId, mut after: u64) -> anyhow::Result<Vec<Message>> {
        let mut messages = Vec::new();
        loop {
            let events = self.events(id, after, EVENTS_PAGE).await?;
            let Some(last) = events.last() else {
                return Ok(messages);
            };
            after = last.seq;
            messages.extend(events.iter().flat_map(|e| e.body.messages()));
        }
    }
}

/// A session of the local store as listed: its line, and its record with the title as JSON.
fn stored(record: SessionRecord, title: Option<String>) -> anyhow::Result<Listed> {
    let mut json = serde_json::to_value(&record)?;
    json["title"] = title.clone().into();
    let line = SessionLine {
        id: record.id.to_string(),
        created_at: record.created_at.to_string(),
        agent: record.agent_name,
        agent_version: record.agent_version,
        last_seq: record.last_seq,
        title,
    };
    Ok(Listed { line, json })
}

/// A local session's summary, in the shape `GET /v1/sessions/{id}` answers it.
fn summary(record: &SessionRecord, state: &SessionState, title: Option<String>) -> Value {
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
        "title": title,
    })
}
