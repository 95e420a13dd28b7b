//! Threads of turns: where the next turn of a conversation runs when the caller names what it
//! continues (OpenAI's Responses API chains turns by `previous_response_id` or by a conversation).
//! The rules live here, not in an API handler, so every API threads turns the same way: after a
//! finished run, in its session when nothing was logged after it, else in a branch forked at its
//! end; a conversation's turn queues behind a run in progress; an unstored turn runs in a
//! throwaway session that leaves nothing behind once answered.

use keel_core::{Event, EventBody, Message, RunId, RunOptions, RunStatus, SessionId, TenantId};
use keel_store::RunRecord;

use crate::{BusyPolicy, Engine, EngineError, RunFollower};

/// What a turn continues.
#[derive(Clone, Debug)]
pub enum Thread {
    /// Nothing: a new session of this agent.
    New { agent: String },
    /// A conversation: its session, the turn queued behind any run in progress there.
    Conversation(SessionId),
    /// A finished run: its session when the run is the session's latest, else a branch at it.
    After(RunId),
}

/// A queued turn.
pub struct ThreadedTurn {
    pub run: RunRecord,
    /// The run's follower, subscribed before it was queued (`Engine::submit_followed`): a
    /// stream's first text is live even when the run is driven at once. Drop it if unused.
    pub follower: RunFollower,
    /// The throwaway session of an unstored turn: `Engine::discard` it once answered.
    pub discard: Option<SessionId>,
}

#[derive(Debug, thiserror::Error)]
pub enum ThreadError {
    /// The previous run, or the conversation, is not the tenant's.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The previous run has not ended.
    #[error(
        "run {run} is still {status:?}: wait for it to finish (or cancel it) before continuing from it"
    )]
    Unfinished { run: RunId, status: RunStatus },
    /// The engine refused the turn's input (say, tool calls left without results).
    #[error(transparent)]
    Input(EngineError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Where a finished run left its session.
#[derive(Clone, Copy, Debug)]
struct RunEnd {
    /// The seq of the event that ended the run.
    seq: u64,
    /// Whether nothing was logged after it.
    is_latest: bool,
}

impl Engine {
    /// Queues `input` as the next turn of `thread`. `stored: false` runs it in a throwaway
    /// session (a branch when it continues a run), so the thread stays as it was.
    pub async fn continue_thread(
        &self,
        tenant: &TenantId,
        thread: Thread,
        input: Message,
        options: RunOptions,
        stored: bool,
    ) -> Result<ThreadedTurn, ThreadError> {
        let (session, policy, after) = match thread {
            Thread::New { agent } => {
                let record = self
                    .create_session(tenant, &agent, serde_json::Map::new())
                    .await?;
                (record.id, BusyPolicy::Enqueue, None)
            }
            Thread::Conversation(session) => {
                self.require_session(tenant, &session)
                    .await
                    .map_err(|e| not_found(e, "conversation"))?;
                (session, BusyPolicy::Enqueue, None)
            }
            Thread::After(run) => {
                let (session, end) = self.run_end(tenant, &run).await?;
                (session, BusyPolicy::Reject, Some(end))
            }
        };
        let session = match after {
            // A branch for a turn the thread does not keep, or after a run that is no longer
            // the session's latest.
            Some(end) if !stored || !end.is_latest => self.branch(tenant, &session, end).await?,
            _ => session,
        };
        let discard = (!stored).then(|| session.clone());
        let queued = self
            .queue_turn(tenant, &session, input, options, policy, after)
            .await;
        if queued.is_err()
            && let Some(session) = &discard
        {
            self.discard(tenant, session).await;
        }
        let (run, follower) = queued?;
        Ok(ThreadedTurn {
            run,
            follower,
            discard,
        })
    }

    /// Queues the turn in `session`; a turn that continues a run finds the session busy when
    /// another turn was chained onto the same run meanwhile, and goes to a branch instead.
    async fn queue_turn(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        input: Message,
        options: RunOptions,
        policy: BusyPolicy,
        after: Option<RunEnd>,
    ) -> Result<(RunRecord, RunFollower), ThreadError> {
        let submitted = self
            .submit_followed(tenant, session, input.clone(), options.clone(), policy)
            .await;
        match (submitted, after) {
            (Ok(run), _) => Ok(run),
            (Err(EngineError::Busy { .. }), Some(end)) => {
                let branch = self.branch(tenant, session, end).await?;
                self.submit_followed(tenant, &branch, input, options, BusyPolicy::Enqueue)
                    .await
                    .map_err(ThreadError::Input)
            }
            (Err(e), _) => Err(ThreadError::Input(e)),
        }
    }

    async fn branch(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        end: RunEnd,
    ) -> Result<SessionId, EngineError> {
        let record = self
            .fork_session(tenant, session, Some(end.seq), serde_json::Map::new())
            .await?;
        Ok(record.id)
    }

    /// Deletes an unstored turn's throwaway session once it is answered (a failure is logged:
    /// the answer is already given).
    pub async fn discard(&self, tenant: &TenantId, session: &SessionId) {
        if let Err(e) = self.delete_session(tenant, session).await {
            tracing::warn!(%session, error = %e, "an unstored turn's session could not be deleted");
        }
    }

    /// Where `run` ended in its session. A chain of turns continues its session's latest run,
    /// whose end is the log's last event: one read, whatever the length of the history. Only
    /// a run followed by others is looked for further back.
    async fn run_end(
        &self,
        tenant: &TenantId,
        run: &RunId,
    ) -> Result<(SessionId, RunEnd), ThreadError> {
        let run = self
            .get_run(tenant, run)
            .await
            .map_err(|e| not_found(e, "run"))?;
        if !run.status.is_terminal() {
            return Err(ThreadError::Unfinished {
                run: run.id,
                status: run.status,
            });
        }
        let last = self
            .inner
            .store
            .read_events_before(&run.session, u64::MAX, 1)
            .await
            .map_err(EngineError::from)?;
        if let Some(end) = last.first().filter(|e| ends(e, &run.id)) {
            let end = RunEnd {
                seq: end.seq,
                is_latest: true,
            };
            return Ok((run.session, end));
        }
        let events = self.run_events(&run).await?;
        match events.last().filter(|e| ends(e, &run.id)) {
            Some(end) => {
                let end = RunEnd {
                    seq: end.seq,
                    is_latest: false,
                };
                Ok((run.session, end))
            }
            // Its events are gone (a run record outliving its log): nothing to continue.
            None => Err(ThreadError::NotFound {
                kind: "run",
                id: run.id.to_string(),
            }),
        }
    }
}

/// Whether `event` ended `run`.
fn ends(event: &Event, run: &RunId) -> bool {
    event.body.run_id() == Some(run)
        && matches!(
            event.body,
            EventBody::RunCompleted { .. }
                | EventBody::RunFailed { .. }
                | EventBody::RunCancelled { .. }
        )
}

fn not_found(e: EngineError, kind: &'static str) -> ThreadError {
    match e {
        EngineError::NotFound { id, .. } => ThreadError::NotFound { kind, id },
        other => other.into(),
    }
}
