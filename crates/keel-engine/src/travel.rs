//! Time travel over a session's log: a fork (a new session whose log is a copy of a prefix
//! that ends between runs) and the model context at any seq (the request the model received,
//! or would receive, there; read-only), both from the log alone.

use keel_core::{Event, EventBody, RunId, RunOptions, SessionId, SessionState, TenantId};
use keel_models::ModelRequest;
use keel_store::{NewEvent, SessionRecord};

use crate::live::LiveSession;
use crate::{Engine, EngineError, clock, request};

/// What the model received, or would receive, at one seq of a session's log.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionContext {
    pub session: SessionId,
    pub at_seq: u64,
    /// The run in progress at that seq (its options shape the request); none between runs.
    pub run_id: Option<RunId>,
    /// Who would serve it: the configured provider (or route) and the model there.
    pub served_by: String,
    pub request: ModelRequest,
}

impl Engine {
    /// A new session whose log is a copy of `source`'s first `upto_seq` events (its whole log
    /// when `None`), which must end between runs, with its own metadata: a branch of the
    /// conversation at that point. A prefix that ends inside a run is refused naming the
    /// nearest seqs a fork may take. The scratchpad is not copied: its values are kept only as
    /// of now, not as of each seq, so the branch starts with an empty one.
    pub async fn fork_session(
        &self,
        tenant: &TenantId,
        source: &SessionId,
        upto_seq: Option<u64>,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<SessionRecord, EngineError> {
        let original = self.require_session(tenant, source).await?;
        let upto_seq = seq_in_log(&original, upto_seq)?;
        self.check_room_for_a_session(tenant).await?;
        let events = self.log_prefix(source, upto_seq).await?;
        let (state, between_runs) = fold_noting_run_ends(&events)?;
        if let Some(run) = state.active.as_ref().map(|r| r.run_id.clone()) {
            let after = self.next_run_end(source, state, upto_seq).await?;
            let nearest = match after {
                Some(after) => format!("{between_runs} or {after}"),
                None => format!("{between_runs} (the run has not ended yet)"),
            };
            return Err(EngineError::Invalid(format!(
                "session {source} cannot be forked at seq {upto_seq}: run {run} is in progress there, \
                 and a fork starts between runs; fork at seq {nearest}"
            )));
        }
        let mut events: Vec<NewEvent> = events
            .into_iter()
            .map(|e| NewEvent {
                at: e.at,
                body: e.body,
            })
            .collect();
        if let Some(EventBody::SessionStarted { metadata: m, .. }) =
            events.first_mut().map(|e| &mut e.body)
        {
            *m = metadata.clone();
        }
        let record = SessionRecord {
            id: clock::new_session_id(),
            created_at: clock::now(),
            metadata,
            last_seq: upto_seq,
            ..original
        };
        self.inner.store.create_session(&record, events).await?;
        Ok(record)
    }

    /// What the model received at `at_seq` of the session's log (now when `None`): the
    /// request built from the state and transcript window the log gives there, and the run in
    /// progress's options, by the same code the driver calls the model with. Between runs,
    /// the request the next run would open with, before its input. The tools of the agent's MCP
    /// servers are those the servers list now.
    pub async fn session_context(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        at_seq: Option<u64>,
    ) -> Result<SessionContext, EngineError> {
        let record = self.require_session(tenant, session).await?;
        let at_seq = seq_in_log(&record, at_seq)?;
        let events = self.log_prefix(session, at_seq).await?;
        let mut live = LiveSession::from_log(session, &events)?;
        let agent = live.state.agent.clone().ok_or_else(|| {
            EngineError::Invalid(format!("session {session}'s log has no session_started"))
        })?;
        let agent = &agent;
        // The blocks as they are now: the log holds their edits, not each step's rendering.
        let blocks =
            crate::blocks::session_blocks(self.inner.store.as_ref(), tenant, session, agent)
                .await?;
        live.blocks = Some(request::render_blocks(&blocks));
        let run_id = live.state.active.as_ref().map(|r| r.run_id.clone());
        let options = run_id
            .as_ref()
            .and_then(|run| run_options(&events, run))
            .unwrap_or_default();
        // As the driver lists them: the tools the agent's MCP servers list now.
        let step = request::StepInput {
            front: live.front(),
            messages: live.messages().iter().cloned().collect(),
            listed_tools: self.inner.tools.mcp_specs(tenant, agent).await,
        };
        let (resolved, request) = request::model_request(
            &self.inner.models,
            session,
            agent,
            &options,
            step,
        )
        .map_err(|e| {
            EngineError::Invalid(format!(
                "the model of session {session} at seq {at_seq} cannot be resolved here: {}",
                e.message
            ))
        })?;
        Ok(SessionContext {
            session: session.clone(),
            at_seq,
            run_id,
            served_by: format!("{}/{}", resolved.provider, resolved.model),
            request,
        })
    }

    /// The session's events 1..=`upto_seq`.
    async fn log_prefix(
        &self,
        session: &SessionId,
        upto_seq: u64,
    ) -> Result<Vec<Event>, EngineError> {
        let limit = usize::try_from(upto_seq).unwrap_or(usize::MAX);
        Ok(self.inner.store.read_events(session, 0, limit).await?)
    }

    /// The first seq after `after` where the run in progress in `state` has ended, reading
    /// the log on from there; `None` while it has not.
    async fn next_run_end(
        &self,
        session: &SessionId,
        mut state: SessionState,
        mut after: u64,
    ) -> Result<Option<u64>, EngineError> {
        const PAGE: usize = 1000;
        loop {
            let page = self.inner.store.read_events(session, after, PAGE).await?;
            for event in &page {
                apply(&mut state, event)?;
                if state.active.is_none() {
                    return Ok(Some(event.seq));
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => after = last.seq,
                _ => return Ok(None),
            }
        }
    }
}

/// `at` checked against the session's log (its last seq when `None`): seq 1 is its start.
fn seq_in_log(record: &SessionRecord, at: Option<u64>) -> Result<u64, EngineError> {
    let last = record.last_seq;
    match at {
        None => Ok(last),
        Some(0) => Err(EngineError::Invalid(format!(
            "at_seq must be between 1 and {last} (session {}'s last seq), got 0",
            record.id
        ))),
        Some(seq) if seq > last => Err(EngineError::Invalid(format!(
            "at_seq {seq} is beyond session {}'s log, which ends at seq {last}",
            record.id
        ))),
        Some(seq) => Ok(seq),
    }
}

/// Folds `events` and returns the state with the last seq at which no run was in progress.
fn fold_noting_run_ends(events: &[Event]) -> Result<(SessionState, u64), EngineError> {
    let mut state = SessionState::default();
    let mut between_runs = 0;
    for event in events {
        apply(&mut state, event)?;
        if state.active.is_none() {
            between_runs = event.seq;
        }
    }
    Ok((state, between_runs))
}

fn apply(state: &mut SessionState, event: &Event) -> Result<(), EngineError> {
    state
        .apply(event)
        .map_err(|e| EngineError::Invalid(e.to_string()))
}

/// The options `run` started with, from its `run_started` in `events`.
fn run_options(events: &[Event], run: &RunId) -> Option<RunOptions> {
    events.iter().rev().find_map(|e| match &e.body {
        EventBody::RunStarted {
            run_id, options, ..
        } if run_id == run => Some(options.as_ref().clone()),
        _ => None,
    })
}
