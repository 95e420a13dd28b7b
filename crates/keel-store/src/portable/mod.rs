//! The portable session format, `keel.session/1` (`docs/session-format.md`): one session as
//! JSON lines — a header with the session and its pinned agent, its events as stored with
//! their hash records, its scratchpad, timers, unfinished runs and session-scoped memory
//! records, and an end line. Its own memory blocks come with its log: an import sets them
//! from the `memory_block_edited` events it carries.
//!
//! `write` reads a session into those lines; `read` parses and checks a file (shape, seqs, the
//! hash chain) into the rows `Store::import` writes in one transaction.

mod read;
mod write;

pub use read::{ImportPlan, parse};
pub use write::export_session;

use keel_core::{AgentDef, Message, RunId, RunOptions, RunStatus, SessionId, TimerId, Timestamp};
use serde::{Deserialize, Serialize};

use crate::Schedule;

/// What the header's `format` says.
pub const FORMAT: &str = "keel.session";
/// The version this keel writes and reads.
pub const VERSION: u64 = 1;

/// The memory namespace that belongs to one session, carried with it.
pub fn session_namespace(id: &SessionId) -> String {
    format!("session:{id}")
}

/// Line 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub version: u64,
    pub exported_at: Timestamp,
    pub session: SessionHead,
}

/// The session itself, as the header carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionHead {
    pub id: SessionId,
    /// The agent definition the session pins (its name, version and id at the source).
    pub agent: AgentDef,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: Timestamp,
}

/// Every line after the header, told apart by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    /// One event as stored: `body` is its JSON, `hash` its record (`chain.rs`), `null` for an
    /// event stored before keel hashed its journal.
    Event {
        seq: u64,
        at: Timestamp,
        #[serde(rename = "type")]
        kind: String,
        body: serde_json::Value,
        hash: Option<String>,
    },
    Scratchpad {
        key: String,
        value: String,
    },
    Timer {
        id: TimerId,
        schedule: Schedule,
        note: String,
        next_at: Option<Timestamp>,
        created_at: Timestamp,
        fired: u64,
        last_fired_at: Option<Timestamp>,
    },
    /// A run not finished: queued, running (it arrives claimable) or waiting for a person.
    Run {
        id: RunId,
        input: Box<Message>,
        #[serde(default)]
        options: Box<RunOptions>,
        status: RunStatus,
        created_at: Timestamp,
        #[serde(default)]
        cancel_requested: bool,
    },
    /// A long-term memory record of the session's own namespace, `session:<id>` (the tenant's
    /// other namespaces are shared by its sessions, so none of them is carried): its text and
    /// metadata, not its vector, which the importing keel makes with its own embedding model.
    Memory {
        id: String,
        namespace: String,
        text: String,
        metadata: serde_json::Value,
        created_at: Timestamp,
        updated_at: Timestamp,
    },
    /// The last line: how many events came, so a truncated file is told from a whole one.
    End {
        events: u64,
    },
}
