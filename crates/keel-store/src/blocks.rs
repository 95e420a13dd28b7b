//! Memory blocks as stored: a session's own blocks, kept by the store from the session's
//! `memory_block_edited` events (in the transaction that appends them, so a block and its log
//! never disagree, and a fork or an import that copies the events gets the blocks with them),
//! and the tenant's shared blocks, each write with a history row.

use keel_core::{EventBody, RunId, SessionId, Timestamp};

use crate::NewEvent;

/// A block's stored value. A session's block has a row only once edited (before that it holds
/// its agent's declared value); its limit and description are its agent's declaration's, so
/// `limit` and `description` are a shared block's own.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryBlock {
    pub label: String,
    pub value: String,
    pub limit: Option<u32>,
    pub description: Option<String>,
    /// 1 for the first write, one more for each after it.
    pub version: u64,
    pub updated_at: Timestamp,
}

/// A write of a tenant's shared block (`Store::put_shared_block`, `AppendBatch::shared_blocks`).
#[derive(Clone, Debug, PartialEq)]
pub struct SharedBlockWrite {
    pub label: String,
    pub value: String,
    pub limit: u32,
    pub description: Option<String>,
    /// The version the write was made from (0: the block does not exist yet); a block at
    /// another version refuses it with `StoreError::Stale`, nothing written.
    pub expected_version: u64,
    /// What the writer saw the block hold: its history's `before` when the block has no row
    /// yet (a shared block's declared value; `None` for one the write makes); once it has a
    /// row, the row's value (the same, at the version the write was made from).
    pub before: Option<String>,
    /// `agent` or `api`.
    pub by: String,
    /// The session and run of an agent's edit.
    pub session: Option<SessionId>,
    pub run: Option<RunId>,
    pub at: Timestamp,
}

/// One write of a shared block, as its history keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockEdit {
    pub label: String,
    pub version: u64,
    pub before: Option<String>,
    pub after: String,
    pub by: String,
    pub session: Option<SessionId>,
    pub run: Option<RunId>,
    pub at: Timestamp,
}

/// The `scope` column of a session's block.
pub(crate) fn session_scope(session: &SessionId) -> String {
    format!("session:{session}")
}

/// The scope column of the tenant's shared blocks.
pub(crate) const SHARED: &str = "shared";

/// The session-block edits among `events`: (label, value, at), in log order.
pub(crate) fn session_edits(events: &[NewEvent]) -> impl Iterator<Item = (&str, &str, Timestamp)> {
    events.iter().filter_map(|e| match &e.body {
        EventBody::MemoryBlockEdited {
            label,
            after,
            shared: false,
            ..
        } => Some((label.as_str(), after.as_str(), e.at)),
        _ => None,
    })
}

/// A session's blocks as the `memory_block_edited` events of its log (bodies as stored, with
/// their times) leave them: (label, value, edits, last edit), by label. What an import writes
/// for the blocks of a session whose log it carries.
pub(crate) fn from_log<'a>(
    events: impl IntoIterator<Item = (&'a str, Timestamp)>,
) -> Vec<(String, String, u64, Timestamp)> {
    let mut blocks: std::collections::BTreeMap<String, (String, u64, Timestamp)> =
        Default::default();
    for (body, at) in events {
        if let Ok(EventBody::MemoryBlockEdited {
            label,
            after,
            shared: false,
            ..
        }) = EventBody::decode(body)
        {
            let held = blocks.entry(label).or_insert((String::new(), 0, at));
            *held = (after, held.1 + 1, at);
        }
    }
    blocks
        .into_iter()
        .map(|(label, (value, edits, at))| (label, value, edits, at))
        .collect()
}

/// The `Stale` error of a write made from `expected` when the block is at `actual`.
pub(crate) fn stale(label: &str, expected: u64, actual: u64) -> crate::StoreError {
    crate::StoreError::Stale(format!(
        "shared memory block {label:?} is at version {actual}, not {expected}: it changed since \
         it was read; read it again and redo the edit"
    ))
}
