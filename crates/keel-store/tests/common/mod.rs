//! Fixtures the SQLite backend's own tests share: an event that carries a text, an agent, and
//! a session record (or a stored session) with a distinct id per `n`.

#![allow(dead_code)]

use keel_core::{
    AgentDef, AgentId, EventBody, Limits, Message, RunId, SessionId, TenantId, Timestamp,
};
use keel_store::{NewEvent, SessionRecord, Store};

/// An event carrying `text`, so tests can tell events apart.
pub fn note(text: &str) -> NewEvent {
    NewEvent {
        at: Timestamp::from_millis(1_000),
        body: EventBody::RunStarted {
            run_id: RunId::generate(1, 1),
            input: Message::user(text),
            options: Default::default(),
        },
    }
}

pub fn agent(name: &str) -> AgentDef {
    AgentDef {
        id: AgentId::generate(1, 2),
        name: name.into(),
        version: 0,
        instructions: String::new(),
        model: "scripted/echo".into(),
        tools: Vec::new(),
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    }
}

/// A session record of the default tenant (no events yet), with a distinct id per `n`.
pub fn session_record(n: u64) -> SessionRecord {
    SessionRecord {
        id: SessionId::generate(1_000 + n, u128::from(n)),
        tenant: TenantId::default_tenant(),
        agent_id: AgentId::generate(1, 2),
        agent_name: "helper".into(),
        agent_version: 1,
        created_at: Timestamp::from_millis(1_000),
        metadata: serde_json::Map::new(),
        last_seq: 0,
    }
}

/// Creates `session_record(n)` in `store` and returns its id.
pub async fn session(store: &dyn Store, n: u64) -> SessionId {
    let record = session_record(n);
    store.create_session(&record, Vec::new()).await.unwrap();
    record.id
}
