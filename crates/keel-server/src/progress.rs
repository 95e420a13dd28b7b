//! Follows one run through its session's live updates, for the `wait` and `stream` modes. The
//! broadcast is best-effort (it may lag, and a run driven by another node is not on it), so
//! the run's record is also polled: the end of a run is never missed.

use std::time::Duration;

use std::sync::Arc;

use keel_core::{Event, EventBody, RunId, SessionId, TenantId, Usage};
use keel_engine::{Engine, RunUpdate};
use keel_store::RunRecord;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::error::ApiError;

/// What happened next in the run.
pub enum Progress {
    Started,
    Text {
        step: u32,
        attempt: u32,
        text: String,
    },
    /// A model call's intent was logged at `seq` (its reply, if any, will be `seq + 1`).
    ModelCalled {
        seq: u64,
    },
    /// A model reply was logged.
    Replied(Arc<Event>),
    ToolCall {
        call_id: String,
        name: String,
        arguments: serde_json::Value,
    },
    ToolResult {
        call_id: String,
        content: String,
        is_error: bool,
    },
    /// The run ended; `usage` is known when its completion was seen live.
    Ended {
        run: Box<RunRecord>,
        usage: Option<Usage>,
    },
    /// Driving stopped on a store failure; the run resumes later.
    Halted {
        error: String,
    },
}

pub struct RunProgress {
    engine: Engine,
    tenant: TenantId,
    run: RunId,
    updates: broadcast::Receiver<RunUpdate>,
    usage: Option<Usage>,
    poll: tokio::time::Interval,
    /// The run's end, found by the poll, to report once the queued updates are through.
    over: Option<Progress>,
}

impl RunProgress {
    /// Subscribe before submitting the run, so nothing of it is missed.
    pub fn subscribe(engine: &Engine, session: &SessionId) -> broadcast::Receiver<RunUpdate> {
        engine.subscribe(session)
    }

    pub fn new(
        engine: Engine,
        tenant: TenantId,
        run: RunId,
        updates: broadcast::Receiver<RunUpdate>,
    ) -> Self {
        // The first poll comes after a period, not at once: a run just submitted is on the
        // broadcast.
        let period = Duration::from_millis(500);
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        RunProgress {
            engine,
            tenant,
            run,
            updates,
            usage: None,
            poll,
            over: None,
        }
    }

    pub async fn next(&mut self) -> Result<Progress, ApiError> {
        loop {
            // Once the poll found the run over, what its updates still hold comes first: the
            // run may have ended while the poll read the store, its updates already queued.
            if self.over.is_some() {
                match self.updates.try_recv() {
                    Ok(update) => {
                        if let Some(progress) = self.progress(update) {
                            return Ok(progress);
                        }
                        continue;
                    }
                    Err(_) => return Ok(self.over.take().expect("checked above")),
                }
            }
            // Updates first: when the run ended while its updates wait in the channel, they
            // are seen before the poll finds the end.
            let update = tokio::select! {
                biased;
                update = self.updates.recv() => update,
                _ = self.poll.tick() => {
                    self.over = self.ended().await?;
                    continue;
                }
            };
            match update {
                Ok(update) => {
                    if let Some(progress) = self.progress(update) {
                        return Ok(progress);
                    }
                }
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => {
                    if let Some(ended) = self.ended().await? {
                        return Ok(ended);
                    }
                    if matches!(update, Err(RecvError::Closed)) {
                        self.updates = self.engine.subscribe(&self.session().await?);
                    }
                }
            }
        }
    }

    async fn session(&self) -> Result<SessionId, ApiError> {
        Ok(self.engine.get_run(&self.tenant, &self.run).await?.session)
    }

    async fn ended(&self) -> Result<Option<Progress>, ApiError> {
        let record = self.engine.get_run(&self.tenant, &self.run).await?;
        Ok(record.status.is_terminal().then(|| Progress::Ended {
            run: Box::new(record),
            usage: self.usage,
        }))
    }

    fn progress(&mut self, update: RunUpdate) -> Option<Progress> {
        match update {
            RunUpdate::TextDelta {
                run_id,
                step,
                attempt,
                text,
            } if run_id == self.run => Some(Progress::Text {
                step,
                attempt,
                text,
            }),
            RunUpdate::Event(event) if event.body.run_id() == Some(&self.run) => {
                match &event.body {
                    EventBody::RunStarted { .. } => Some(Progress::Started),
                    EventBody::ModelCalled { .. } => Some(Progress::ModelCalled { seq: event.seq }),
                    EventBody::ModelReplied { .. } => Some(Progress::Replied(event.clone())),
                    EventBody::ToolCalled {
                        call_id,
                        name,
                        arguments,
                        ..
                    } => Some(Progress::ToolCall {
                        call_id: call_id.clone(),
                        name: name.clone(),
                        arguments: arguments.clone(),
                    }),
                    EventBody::ToolReturned {
                        call_id,
                        content,
                        is_error,
                        ..
                    } => Some(Progress::ToolResult {
                        call_id: call_id.clone(),
                        content: content.clone(),
                        is_error: *is_error,
                    }),
                    EventBody::RunCompleted { usage, .. } => {
                        self.usage = Some(*usage);
                        None
                    }
                    _ => None,
                }
            }
            RunUpdate::Finished(run) if run.id == self.run => Some(Progress::Ended {
                run,
                usage: self.usage,
            }),
            RunUpdate::Halted { run_id, error } if run_id == self.run => {
                Some(Progress::Halted { error })
            }
            _ => None,
        }
    }
}
