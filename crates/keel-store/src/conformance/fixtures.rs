//! Builders the cases share: fresh tenants and ids that only grow, agents, session records,
//! events that carry a text to tell them apart, queued runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_core::{
    AgentDef, AgentId, Event, EventBody, Limits, Message, RunId, RunStatus, SessionId, TenantId,
    Timestamp,
};

use crate::{AppendBatch, NewEvent, RunRecord, SessionRecord, Store, StoreError};

/// Ids and times that only grow, so sessions created later sort later.
pub(super) fn tick() -> u64 {
    static CLOCK: AtomicU64 = AtomicU64::new(1_750_000_000_000);
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

pub(super) fn tenant() -> TenantId {
    TenantId::generate(tick(), 7)
}

pub(super) fn run_id() -> RunId {
    RunId::generate(tick(), 7)
}

pub(super) fn agent(name: &str) -> AgentDef {
    AgentDef {
        id: AgentId::generate(tick(), 7),
        name: name.to_string(),
        version: 0,
        instructions: format!("You are {name}."),
        model: "scripted/echo".into(),
        tools: Vec::new(),
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    }
}

pub(super) fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

/// An event carrying `text`, so tests can tell events apart.
pub(super) fn note(text: &str) -> NewEvent {
    NewEvent {
        at: at(1_000),
        body: EventBody::RunStarted {
            run_id: RunId::generate(1, 1),
            input: Message::user(text),
            options: Default::default(),
        },
    }
}

pub(super) fn notes(texts: impl IntoIterator<Item = String>) -> AppendBatch {
    AppendBatch::events(texts.into_iter().map(|t| note(&t)).collect())
}

pub(super) fn text_of(event: &Event) -> String {
    match &event.body {
        EventBody::RunStarted { input, .. } => input.text_content(),
        other => other.type_name().to_string(),
    }
}

pub(super) fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

pub(super) fn session_record(
    tenant: &TenantId,
    agent_name: &str,
    metadata: serde_json::Value,
) -> SessionRecord {
    let serde_json::Value::Object(metadata) = metadata else {
        panic!("session metadata must be a JSON object")
    };
    SessionRecord {
        id: SessionId::generate(tick(), 7),
        tenant: tenant.clone(),
        agent_id: AgentId::generate(1, 1),
        agent_name: agent_name.to_string(),
        agent_version: 1,
        created_at: at(2_000),
        metadata,
        last_seq: 0,
    }
}

pub(super) fn session_started(record: &SessionRecord) -> NewEvent {
    let mut def = agent(&record.agent_name);
    def.version = record.agent_version;
    NewEvent {
        at: record.created_at,
        body: EventBody::SessionStarted {
            tenant: record.tenant.clone(),
            agent: def,
            metadata: record.metadata.clone(),
        },
    }
}

/// A session whose log holds its `session_started` event (seq 1).
pub(super) async fn new_session(store: &Arc<dyn Store>, tenant: &TenantId) -> SessionId {
    let record = session_record(tenant, "helper", serde_json::json!({}));
    store
        .create_session(&record, vec![session_started(&record)])
        .await
        .expect("create_session");
    record.id
}

pub(super) fn queued_run(tenant: &TenantId, session: &SessionId, created_at: i64) -> RunRecord {
    RunRecord {
        id: run_id(),
        tenant: tenant.clone(),
        session: session.clone(),
        input: Message::user("go"),
        options: Default::default(),
        status: RunStatus::Queued,
        created_at: at(created_at),
        output: None,
        error: None,
        cancel_requested: false,
        lease_owner: None,
        lease_until: None,
    }
}

pub(super) fn ids(runs: &[RunRecord]) -> Vec<&RunId> {
    runs.iter().map(|r| &r.id).collect()
}

pub(super) fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}
