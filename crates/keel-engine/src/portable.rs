//! A session carried between deployments in the `keel.session/1` format (keel-store's
//! `portable`): `StoreReader::export_session` (reader.rs) reads a copy out; `move_session_out`
//! marks the session moved, so this deployment stops driving it, and reads it out;
//! `Engine::import_session` checks a file whole and creates the session under the caller's
//! tenant in one store write.

use keel_core::{AgentDef, BlockDef, Event, EventBody, Message, SessionId, SessionState, TenantId};
use keel_store::portable::{self, ImportPlan};
use keel_store::{ExportMark, NewEvent, SessionRecord, StoreError};

use crate::{Engine, EngineError, clock};

/// The longest `to` (where a moved session went) kept with its mark.
const MAX_MOVED_TO: usize = 2_048;

/// `Invalid` when a tool result answers no tool call before it: no provider takes such a
/// transcript, so the session could not go on.
fn answers_follow_calls(messages: &[Message]) -> Result<(), EngineError> {
    let mut calls = std::collections::HashSet::new();
    for part in messages.iter().flat_map(|m| &m.parts) {
        match part {
            keel_core::Part::ToolCall { id, .. } => {
                calls.insert(id.as_str());
            }
            keel_core::Part::ToolResult { call_id, .. } if !calls.contains(call_id.as_str()) => {
                return Err(EngineError::Invalid(format!(
                    "not imported: the output for call {call_id:?} answers no call before it"
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

impl Engine {
    /// Moves the tenant's session out: marks it exported (`to`: where it goes, as the caller
    /// names it), after which this deployment takes no new input, runs or schedules for it and
    /// never drives, fires or resumes it, then reads its export. Nothing can change the session
    /// between the mark and the read, so the file holds all that happened here. Refused (the
    /// store's `Busy`, nothing marked) while one of its runs is running: move it once the run
    /// waits for a person or has ended. Moving a moved session again gives the same file.
    pub async fn move_session_out(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        to: Option<String>,
    ) -> Result<Vec<String>, EngineError> {
        if let Some(to) = &to
            && (to.len() > MAX_MOVED_TO || to.chars().any(char::is_control))
        {
            return Err(EngineError::Invalid(format!(
                "`to` names where the session goes in at most {MAX_MOVED_TO} bytes without control characters"
            )));
        }
        let mark = ExportMark {
            at: clock::now(),
            to,
        };
        let store = self.inner.store.as_ref();
        store.mark_exported(tenant, session, &mark).await?;
        Ok(portable::export_session(store, tenant, session, clock::now()).await?)
    }

    /// Creates a session of the tenant's agent `agent_name` whose transcript starts with
    /// `messages` (a conversation kept by another system, converted by the caller), in one
    /// store write: its `session_started` and one `messages_added`, checked by folding them
    /// first, so a transcript keel cannot go on from is refused (`Invalid`) with nothing written.
    pub async fn import_conversation(
        &self,
        tenant: &TenantId,
        agent_name: &str,
        metadata: serde_json::Map<String, serde_json::Value>,
        messages: Vec<Message>,
    ) -> Result<SessionRecord, EngineError> {
        let agent = self.require_agent(tenant, agent_name).await?;
        answers_follow_calls(&messages)?;
        self.check_room_for_a_session(tenant).await?;
        let now = clock::now();
        let (record, mut first) = crate::sessions::new_session(tenant, agent, metadata, now);
        if !messages.is_empty() {
            first.push(NewEvent {
                at: now,
                body: EventBody::MessagesAdded { messages },
            });
        }
        let mut state = SessionState::default();
        for (i, event) in first.iter().enumerate() {
            let event = Event {
                seq: i as u64 + 1,
                at: event.at,
                body: event.body.clone(),
            };
            state
                .apply(&event)
                .map_err(|e| EngineError::Invalid(format!("not imported: {e}")))?;
        }
        self.inner.store.create_session(&record, first).await?;
        self.require_session(tenant, &record.id).await
    }

    /// `import_conversation` for an agent another system kept (a Letta agent file): a new
    /// version of the tenant's agent `name` — the definition of its agent `base` (the model,
    /// tools and limits this deployment serves it with) with `instructions` and its
    /// `memory_blocks` (and, having some, the `memory_block_*` tools to edit them) — pins the
    /// new session. The transcript is checked before the agent version is stored.
    pub async fn import_agent_conversation(
        &self,
        tenant: &TenantId,
        base: &str,
        name: &str,
        instructions: String,
        memory_blocks: Vec<BlockDef>,
        messages: Vec<Message>,
    ) -> Result<SessionRecord, EngineError> {
        let base = self.require_agent(tenant, base).await?;
        answers_follow_calls(&messages)?;
        self.check_room_for_a_session(tenant).await?;
        let mut def = AgentDef {
            id: clock::new_agent_id(),
            name: name.to_string(),
            version: 0,
            instructions,
            memory_blocks,
            ..base
        };
        if !def.memory_blocks.is_empty() {
            // Its blocks are for editing, as they were where it came from.
            let missing: Vec<_> = crate::tools::memory_block_tools()
                .into_iter()
                .filter(|tool| !def.tools.iter().any(|t| t.name == tool.name))
                .collect();
            def.tools.extend(missing);
        }
        let agent = self.put_agent(tenant, def).await?;
        self.import_conversation(tenant, &agent.name, Default::default(), messages)
            .await
    }

    /// `Exported` when the tenant's session was moved out (`move_session_out`): input that
    /// would go on with it here stops before anything is written, with where it went.
    pub(crate) async fn refuse_if_moved(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<(), EngineError> {
        match self.inner.store.export_mark(tenant, session).await? {
            Some(mark) => Err(StoreError::Exported {
                session: session.clone(),
                mark,
            }
            .into()),
            None => Ok(()),
        }
    }

    /// Creates the session an export holds under `tenant`, with the same id, its log (hash
    /// records as they were), scratchpad, timers and unfinished runs, all in one store write,
    /// after checking the whole file (`Invalid` naming the line or seq at fault, nothing
    /// written). A session of that id already here is `AlreadyExists`. The pinned agent is
    /// the tenant's version of the same definition, else a new version of its name.
    pub async fn import_session(
        &self,
        tenant: &TenantId,
        text: &str,
    ) -> Result<SessionRecord, EngineError> {
        let plan = portable::parse(text).map_err(|e| match e {
            StoreError::Invalid(why) => EngineError::Invalid(format!("not imported: {why}")),
            other => other.into(),
        })?;
        self.check_room_for_a_session(tenant).await?;
        let (agent, new_version) = self.agent_for_import(tenant, &plan).await?;
        // The memory records' vectors are this deployment's: made by its embedding model.
        let mut embeddings = Vec::new();
        for text in plan.memory_texts() {
            embeddings.push(self.embed_for_memory(text).await?.unwrap_or_default());
        }
        let records = plan.records(tenant, &agent, new_version, &embeddings)?;
        let id = plan.session_id();
        self.inner
            .store
            .import(records)
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists(_) => StoreError::AlreadyExists(format!(
                    "session {id} (or a run, timer or memory record of it), here,"
                )),
                other => other,
            })?;
        self.store()
            .get_session(tenant, plan.session_id())
            .await?
            .ok_or_else(|| EngineError::NotFound {
                kind: "session",
                id: plan.session_id().to_string(),
            })
    }

    /// The agent version the imported session pins here: the tenant's version of the name
    /// that the export pinned, or its latest, when it holds the same definition; else a new
    /// version (`true`: its row goes in with the session).
    async fn agent_for_import(
        &self,
        tenant: &TenantId,
        plan: &ImportPlan,
    ) -> Result<(AgentDef, bool), EngineError> {
        let wanted = &plan.header.session.agent;
        let store = &self.inner.store;
        let latest = store.get_agent(tenant, &wanted.name, None).await?;
        let Some(latest) = latest else {
            let mut def = wanted.clone();
            def.version = 1;
            return Ok((def, true));
        };
        let same = |held: &AgentDef| {
            AgentDef {
                id: wanted.id.clone(),
                version: wanted.version,
                ..held.clone()
            } == *wanted
        };
        if let Some(held) = store
            .get_agent(tenant, &wanted.name, Some(wanted.version))
            .await?
            .filter(|held| same(held))
        {
            return Ok((held, false));
        }
        if same(&latest) {
            return Ok((latest, false));
        }
        let version = latest.version.checked_add(1).ok_or_else(|| {
            EngineError::Invalid(format!(
                "agent {:?} has reached the last version number",
                wanted.name
            ))
        })?;
        let def = AgentDef {
            id: latest.id,
            version,
            ..wanted.clone()
        };
        Ok((def, true))
    }
}
