//! Sessions as the engine changes them outside runs: started, given messages between runs,
//! deleted with their runs; and read back (state, history). Forks are in `travel.rs`.

use std::sync::Arc;

use keel_core::{
    AgentDef, Event, EventBody, Message, SessionId, SessionState, TenantId, Timestamp,
};
use keel_store::{NewEvent, SessionRecord, SharedBlockWrite, StoreError};

use crate::slots::SessionSlot;
use crate::{Engine, EngineError, Inner, Quotas, RunUpdate, clock, live};

/// What `Engine::log_between_runs` logs: an event, and the shared memory block writes that
/// commit with it.
pub(crate) type BetweenRuns =
    futures::future::BoxFuture<'static, Result<(EventBody, Vec<SharedBlockWrite>), EngineError>>;

impl Engine {
    /// Starts a session of the latest version of `agent_name`.
    pub async fn create_session(
        &self,
        tenant: &TenantId,
        agent_name: &str,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SessionRecord, EngineError> {
        let agent = self.require_agent(tenant, agent_name).await?;
        self.check_room_for_a_session(tenant).await?;
        let (record, first_events) = new_session(tenant, agent, metadata, clock::now());
        self.inner
            .store
            .create_session(&record, first_events)
            .await?;
        Ok(record)
    }

    pub(crate) async fn check_room_for_a_session(
        &self,
        tenant: &TenantId,
    ) -> Result<(), EngineError> {
        room_for_a_session(&self.inner, tenant).await
    }

    /// Reads the session's state: the in-memory one (loaded and kept if missing) when no run
    /// holds it, else the store's.
    pub(crate) async fn with_idle_state<T>(
        &self,
        session: &SessionId,
        f: impl FnOnce(&SessionState) -> T,
    ) -> Result<T, EngineError> {
        let slot = self.inner.slot(session);
        if let Ok(mut live) = slot.live.try_lock() {
            return Ok(f(&self.inner.live(session, &mut live).await?.state));
        }
        let live = live::LiveSession::load(self.inner.store.as_ref(), session).await?;
        Ok(f(&live.state))
    }

    /// Adds messages to an idle session's transcript without running the model (conversation
    /// items). `Busy` while a run is queued or in progress.
    pub async fn add_messages(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        messages: Vec<Message>,
    ) -> Result<u64, EngineError> {
        if messages.iter().any(|m| m.parts.is_empty()) {
            return Err(EngineError::Invalid("a message has no parts".into()));
        }
        let quotas = &self.inner.config.quotas;
        let event = self
            .log_between_runs(tenant, session, |state: &SessionState| {
                let room = Quotas::check(
                    "the conversation's items",
                    "items_per_conversation",
                    state.message_count,
                    messages.len() as u64,
                    quotas.items_per_conversation,
                );
                let messages = messages.clone();
                let logged = room.map(|()| (EventBody::MessagesAdded { messages }, Vec::new()));
                Box::pin(std::future::ready(logged))
            })
            .await?;
        Ok(event.seq)
    }

    /// Logs the event `make` gives (a future: it may read the store) for the session's state (with the shared memory block
    /// writes that commit with it) while no run is queued or in progress (`Busy` otherwise),
    /// and tells the session's followers. `make` is asked again if another node logged to the
    /// session since this one cached it.
    pub(crate) async fn log_between_runs(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        make: impl Fn(&SessionState) -> BetweenRuns,
    ) -> Result<Event, EngineError> {
        self.require_session(tenant, session).await?;
        self.refuse_if_moved(tenant, session).await?;
        let slot = self.inner.slot(session);
        let _submitting = slot.submit.lock().await;
        if let Some(busy) = self
            .inner
            .store
            .pending_runs(tenant, session)
            .await?
            .first()
        {
            return Err(EngineError::Busy {
                session: session.clone(),
                run: busy.id.clone(),
            });
        }
        let mut held = slot.live.lock().await;
        // Another node may have logged to the session since this one cached it: the append
        // then fails as a conflict, and the session is read again once.
        match self.log_on_live(session, &slot, &mut held, &make).await {
            Err(EngineError::Store(StoreError::Conflict { .. })) => {
                *held = None;
                self.log_on_live(session, &slot, &mut held, &make).await
            }
            done => done,
        }
    }

    /// `log_between_runs` on the session's live state in `held` (loaded if need be).
    async fn log_on_live(
        &self,
        session: &SessionId,
        slot: &SessionSlot,
        held: &mut Option<live::LiveSession>,
        make: &impl Fn(&SessionState) -> BetweenRuns,
    ) -> Result<Event, EngineError> {
        let live = self.inner.live(session, held).await?;
        // A run waiting for a person is not in the queue's pending runs, but still open.
        if let Some(run) = &live.state.active {
            return Err(EngineError::Busy {
                session: session.clone(),
                run: run.run_id.clone(),
            });
        }
        Quotas::check(
            "the session's log",
            "events_per_session",
            live.state.last_seq,
            1,
            self.inner.config.quotas.events_per_session,
        )?;
        let (body, shared_blocks) = make(&live.state).await?;
        let event = Event {
            seq: live.state.last_seq + 1,
            at: clock::now(),
            body,
        };
        let mut state = live.state.clone();
        state
            .apply(&event)
            .map_err(|e| EngineError::Invalid(e.to_string()))?;
        let batch = keel_store::AppendBatch {
            shared_blocks,
            ..keel_store::AppendBatch::events(vec![NewEvent {
                at: event.at,
                body: event.body.clone(),
            }])
        };
        self.inner
            .store
            .append(session, live.state.last_seq, batch)
            .await?;
        live.state = state;
        live.extend_transcript(std::slice::from_ref(&event));
        let _ = slot.updates.send(RunUpdate::Event(Arc::new(event.clone())));
        Ok(event)
    }

    /// The tenant's session record, or `NotFound`.
    pub(crate) async fn require_session(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<SessionRecord, EngineError> {
        self.inner
            .store
            .get_session(tenant, session)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                kind: "session",
                id: session.to_string(),
            })
    }

    /// The session's record and its state folded from the log (status, last seq, message
    /// count, usage).
    pub async fn session_state(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<(SessionRecord, SessionState), EngineError> {
        let record = self.require_session(tenant, session).await?;
        let live = live::LiveSession::load(self.inner.store.as_ref(), session).await?;
        Ok((record, live.state))
    }

    /// Cancels the session's pending runs and deletes it with its log and runs. `NotFound`
    /// for an unknown session (or another tenant's).
    pub async fn delete_session(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<(), EngineError> {
        // A moved session's runs are driven nowhere here: they go with it, uncancelled.
        let moved = self.inner.store.export_mark(tenant, session).await?;
        let pending = match moved {
            Some(_) => Vec::new(),
            None => self.inner.store.pending_runs(tenant, session).await?,
        };
        for run in pending.iter().rev() {
            self.cancel_run(tenant, &run.id).await?;
        }
        if !self.inner.store.delete_session(tenant, session).await? {
            return Err(EngineError::NotFound {
                kind: "session",
                id: session.to_string(),
            });
        }
        self.inner.slots.forget(session);
        Ok(())
    }

    /// The session's messages, oldest first, from the log (`after`: a seq cursor).
    pub async fn history(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Message)>, EngineError> {
        let events = self.inner.store.read_events(session, after, limit).await?;
        Ok(events
            .iter()
            .flat_map(|e| e.body.messages().into_iter().map(move |m| (e.seq, m)))
            .collect())
    }
}

/// `Ok` while the tenant may hold one more session (`Quotas::sessions_per_tenant`).
pub(crate) async fn room_for_a_session(
    inner: &Inner,
    tenant: &TenantId,
) -> Result<(), EngineError> {
    let held = inner.store.tenant_counts(tenant).await?.sessions;
    let limit = inner.config.quotas.sessions_per_tenant;
    Quotas::check(
        "the tenant's sessions",
        "sessions_per_tenant",
        held,
        1,
        limit,
    )
}

/// A new session of `agent` (the version given): its record and its first event,
/// `session_started`. The one way a session is made, by `Engine::create_session` and by an
/// agent's timer firing (which creates it in the firing's transaction).
pub(crate) fn new_session(
    tenant: &TenantId,
    agent: AgentDef,
    metadata: serde_json::Map<String, serde_json::Value>,
    now: Timestamp,
) -> (SessionRecord, Vec<NewEvent>) {
    let record = SessionRecord {
        id: clock::new_session_id(),
        tenant: tenant.clone(),
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        agent_version: agent.version,
        created_at: now,
        metadata: metadata.clone(),
        last_seq: 1,
    };
    let first = NewEvent {
        at: now,
        body: EventBody::SessionStarted {
            tenant: tenant.clone(),
            agent,
            metadata,
        },
    };
    (record, vec![first])
}
