//! Memory blocks (`keel_core::BlockDef`): what a session's blocks hold now, for its context
//! and the API, and their edits through the API. A session's own block edit is a
//! `memory_block_edited` event in its log (the store keeps the block from it, in the same
//! transaction); a shared block's edit is a write with a history row, and, made through a
//! session, an event in that session too. The agent's own edits are its tools' (`tools/blocks.rs`).

use std::sync::Arc;

use keel_core::agent::{DEFAULT_BLOCK_LIMIT, MAX_BLOCK_LIMIT, block_value_problem, is_block_label};
use keel_core::{AgentDef, BlockDef, EventBody, SessionId, SessionState, TenantId, Timestamp};
use keel_store::{BlockEdit, MemoryBlock, SharedBlockWrite, Store, StoreError};
use serde::Serialize;

use crate::{Engine, EngineError, clock};

/// How many times an API write of a shared block is tried again when another writer changed
/// the block between its read and its write.
const SHARED_WRITE_TRIES: usize = 3;

/// The most writes of a shared block one read of its history gives.
pub const MAX_HISTORY: usize = 100;

/// A block as the model sees it and the API lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RenderedBlock {
    pub label: String,
    pub value: String,
    /// The most characters it may hold.
    pub limit: u32,
    pub shared: bool,
    pub description: String,
    /// Writes so far (0: it holds its declared value).
    pub version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Timestamp>,
}

impl RenderedBlock {
    /// The block as declared, before any write.
    fn declared(def: &BlockDef) -> Self {
        RenderedBlock {
            label: def.label.clone(),
            value: def.value.clone(),
            limit: def.limit,
            shared: def.shared,
            description: def.description.clone(),
            version: 0,
            updated_at: None,
        }
    }

    /// `stored`'s value over the declaration (a shared block keeps its own limit and
    /// description once written).
    fn from_stored(def: Option<&BlockDef>, stored: &MemoryBlock) -> Self {
        RenderedBlock {
            label: stored.label.clone(),
            value: stored.value.clone(),
            limit: stored
                .limit
                .or(def.map(|d| d.limit))
                .unwrap_or(DEFAULT_BLOCK_LIMIT),
            shared: def.is_none_or(|d| d.shared),
            description: stored
                .description
                .clone()
                .or(def.map(|d| d.description.clone()))
                .unwrap_or_default(),
            version: stored.version,
            updated_at: Some(stored.updated_at),
        }
    }

    /// The write of a shared block from this version to `value`.
    pub(crate) fn shared_write(&self, value: String, by: &str, at: Timestamp) -> SharedBlockWrite {
        SharedBlockWrite {
            label: self.label.clone(),
            value,
            limit: self.limit,
            description: (!self.description.is_empty()).then(|| self.description.clone()),
            expected_version: self.version,
            before: Some(self.value.clone()),
            by: by.into(),
            session: None,
            run: None,
            at,
        }
    }
}

/// The blocks `agent` declares, as `session` (of `tenant`) holds them now, in declared order.
pub(crate) async fn session_blocks(
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    agent: &AgentDef,
) -> Result<Vec<RenderedBlock>, StoreError> {
    if agent.memory_blocks.is_empty() {
        return Ok(Vec::new());
    }
    let own = store.session_blocks(tenant, session).await?;
    let shared = match agent.memory_blocks.iter().any(|b| b.shared) {
        true => store.shared_blocks(tenant).await?,
        false => Vec::new(),
    };
    Ok(agent
        .memory_blocks
        .iter()
        .map(|def| {
            let held = if def.shared { &shared } else { &own };
            match held.iter().find(|b| b.label == def.label) {
                Some(stored) => RenderedBlock::from_stored(Some(def), stored),
                None => RenderedBlock::declared(def),
            }
        })
        .collect())
}

/// The one block `label` of the session's agent, or `NotFound` naming the blocks it has.
pub(crate) async fn session_block(
    store: &dyn Store,
    tenant: &TenantId,
    session: &SessionId,
    agent: &AgentDef,
    label: &str,
) -> Result<RenderedBlock, EngineError> {
    let blocks = session_blocks(store, tenant, session, agent).await?;
    let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
    let missing = EngineError::NotFound {
        kind: "memory block",
        id: format!("{label} (this session's blocks: {})", list_or_none(&labels)),
    };
    blocks
        .iter()
        .find(|b| b.label == label)
        .cloned()
        .ok_or(missing)
}

fn list_or_none(labels: &[&str]) -> String {
    match labels.is_empty() {
        true => "none".into(),
        false => labels.join(", "),
    }
}

/// The event logging an edit of `block` to `after`.
pub(crate) fn edit_event(
    block: &RenderedBlock,
    run_id: Option<keel_core::RunId>,
    after: String,
    by: &str,
) -> EventBody {
    EventBody::MemoryBlockEdited {
        run_id,
        label: block.label.clone(),
        shared: block.shared,
        before: Some(block.value.clone()),
        after,
        by: by.into(),
    }
}

fn check_value(block: &RenderedBlock, value: &str) -> Result<(), EngineError> {
    match block_value_problem(&block.label, value, block.limit) {
        Some(problem) => Err(EngineError::Invalid(problem)),
        None => Ok(()),
    }
}

/// A new shared block's settings, as an API write gives them.
#[derive(Clone, Debug, Default)]
pub struct SharedBlockSettings {
    pub limit: Option<u32>,
    pub description: Option<String>,
}

impl Engine {
    /// The session's memory blocks, in its agent's declared order. `NotFound` for another
    /// tenant's session.
    pub async fn session_memory_blocks(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<RenderedBlock>, EngineError> {
        let agent = self.session_agent(tenant, session).await?;
        let store = self.inner.store.as_ref();
        Ok(session_blocks(store, tenant, session, &agent).await?)
    }

    /// One of the session's blocks; `NotFound` for a label its agent does not declare.
    pub async fn session_memory_block(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        label: &str,
    ) -> Result<RenderedBlock, EngineError> {
        let agent = self.session_agent(tenant, session).await?;
        session_block(self.inner.store.as_ref(), tenant, session, &agent, label).await
    }

    /// Rewrites one of the session's blocks between runs (`Busy` during one), logged in its
    /// log as an edit `by` "api", which the model is told of in order. A shared block is
    /// written for the tenant in the same transaction.
    pub async fn edit_session_memory_block(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        label: &str,
        value: String,
    ) -> Result<RenderedBlock, EngineError> {
        let event = self
            .log_between_runs(tenant, session, |state: &SessionState| {
                let (store, tenant, session) = (
                    Arc::clone(&self.inner.store),
                    tenant.clone(),
                    session.clone(),
                );
                let agent = state_agent(state, &session).cloned();
                let (label, value) = (label.to_string(), value.clone());
                Box::pin(async move {
                    let agent = agent?;
                    let block =
                        session_block(store.as_ref(), &tenant, &session, &agent, &label).await?;
                    check_value(&block, &value)?;
                    let writes = match block.shared {
                        true => {
                            let mut write = block.shared_write(value.clone(), "api", clock::now());
                            write.session = Some(session.clone());
                            vec![write]
                        }
                        false => Vec::new(),
                    };
                    Ok((edit_event(&block, None, value, "api"), writes))
                })
            })
            .await?;
        let store = self.inner.store.as_ref();
        let agent = self.session_agent(tenant, session).await?;
        let block = session_block(store, tenant, session, &agent, label).await?;
        tracing::debug!(session = %session, seq = event.seq, label, "memory block edited");
        Ok(block)
    }

    /// The tenant's shared blocks, by label.
    pub async fn shared_memory_blocks(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<RenderedBlock>, EngineError> {
        let stored = self.inner.store.shared_blocks(tenant).await?;
        Ok(stored
            .iter()
            .map(|b| RenderedBlock::from_stored(None, b))
            .collect())
    }

    /// One shared block; `NotFound` when the tenant has none of that label.
    pub async fn shared_memory_block(
        &self,
        tenant: &TenantId,
        label: &str,
    ) -> Result<RenderedBlock, EngineError> {
        let blocks = self.shared_memory_blocks(tenant).await?;
        let labels: Vec<&str> = blocks.iter().map(|b| b.label.as_str()).collect();
        let missing = EngineError::NotFound {
            kind: "memory block",
            id: format!("{label} (the shared blocks: {})", list_or_none(&labels)),
        };
        blocks
            .iter()
            .find(|b| b.label == label)
            .cloned()
            .ok_or(missing)
    }

    /// Writes a shared block (making it when new: `settings` or the defaults), with a history
    /// row saying it was the API. Another writer's change in between is read again and written
    /// over, a few times, then `Store(Stale)`.
    pub async fn put_shared_memory_block(
        &self,
        tenant: &TenantId,
        label: &str,
        value: String,
        settings: SharedBlockSettings,
    ) -> Result<RenderedBlock, EngineError> {
        if !is_block_label(label) {
            return Err(EngineError::Invalid(format!(
                "memory block label {label:?} is not valid: use a lowercase letter, then up to 63 \
                 lowercase letters, digits, `_` or `-`"
            )));
        }
        if let Some(limit) = settings.limit
            && (limit == 0 || limit > MAX_BLOCK_LIMIT)
        {
            return Err(EngineError::Invalid(format!(
                "memory block {label:?}: limit must be 1 to {MAX_BLOCK_LIMIT} characters, not {limit}"
            )));
        }
        let store = &self.inner.store;
        let mut tries = 0;
        loop {
            let current = store.shared_blocks(tenant).await?;
            let existing = current.iter().find(|b| b.label == label);
            let mut block = match existing {
                Some(stored) => RenderedBlock::from_stored(None, stored),
                None => RenderedBlock {
                    limit: DEFAULT_BLOCK_LIMIT,
                    ..RenderedBlock::declared(&BlockDef {
                        label: label.into(),
                        description: String::new(),
                        value: String::new(),
                        limit: DEFAULT_BLOCK_LIMIT,
                        shared: true,
                    })
                },
            };
            if let Some(limit) = settings.limit {
                block.limit = limit;
            }
            if let Some(description) = &settings.description {
                block.description = description.clone();
            }
            check_value(&block, &value)?;
            let write = SharedBlockWrite {
                // Made here: it held nothing before.
                before: existing.map(|b| b.value.clone()),
                ..block.shared_write(value.clone(), "api", clock::now())
            };
            match store.put_shared_block(tenant, &write).await {
                Ok(stored) => return Ok(RenderedBlock::from_stored(None, &stored)),
                Err(StoreError::Stale(_)) if tries + 1 < SHARED_WRITE_TRIES => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A shared block's writes, newest first (at most `limit`, 1 to 100), each with what it
    /// held before and after and who wrote it; `NotFound` when the tenant has no such block.
    pub async fn shared_memory_block_history(
        &self,
        tenant: &TenantId,
        label: &str,
        limit: usize,
    ) -> Result<Vec<BlockEdit>, EngineError> {
        if !(1..=MAX_HISTORY).contains(&limit) {
            return Err(EngineError::Invalid(format!(
                "limit must be 1 to {MAX_HISTORY}, not {limit}"
            )));
        }
        self.shared_memory_block(tenant, label).await?;
        let store = &self.inner.store;
        Ok(store.shared_block_history(tenant, label, limit).await?)
    }

    /// Forgets a shared block and its history; `NotFound` when the tenant has none of that
    /// label. Sessions whose agents declare it see its declared value again.
    pub async fn delete_shared_memory_block(
        &self,
        tenant: &TenantId,
        label: &str,
    ) -> Result<(), EngineError> {
        if !self.inner.store.delete_shared_block(tenant, label).await? {
            return Err(EngineError::NotFound {
                kind: "memory block",
                id: label.into(),
            });
        }
        Ok(())
    }

    /// The agent the session runs now (its pinned version, or the one it was upgraded to).
    async fn session_agent(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<AgentDef, EngineError> {
        self.require_session(tenant, session).await?;
        let agent = self
            .with_idle_state(session, |state| state.agent.clone())
            .await?;
        agent.ok_or_else(|| {
            EngineError::Invalid(format!("session {session}'s log has no session_started"))
        })
    }
}

fn state_agent<'a>(
    state: &'a SessionState,
    session: &SessionId,
) -> Result<&'a AgentDef, EngineError> {
    state.agent.as_ref().ok_or_else(|| {
        EngineError::Invalid(format!("session {session}'s log has no session_started"))
    })
}
