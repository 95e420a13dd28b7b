//! One run's loop: `decide` → log the intent → act → log the result → repeat.
//!
//! Events are gathered into a batch and flushed (one atomic append) before every side
//! effect, so an intent is always durable before its action starts, while pure steps (a
//! result followed by the run's end, or by the next intent) cost one write, not several.
//! Scratchpad writes travel in the same batch as the tool result that made them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_core::{Action, Event, EventBody, FinishReason, RunStatus, SessionState, Truncation};
use keel_models::{ModelError, ReplyAccumulator, ToolSpec};
use keel_store::{AppendBatch, NewEvent, RunFinish, RunOutcome, RunRecord, Snapshot, StoreError};
use tokio::sync::watch;

use crate::fault::{self, FaultPoint};
use crate::live::{LiveSession, LoadError};
use crate::slots::SessionSlot;
use crate::tools::ToolWrites;
use crate::{Inner, Resolved, RunUpdate, Stop, clock, context, extraction, request};

mod context_upkeep;

/// Why a drive stopped before the run ended.
#[derive(Debug)]
enum Halt {
    /// The log moved under us (another writer): reload and go on.
    Conflict,
    /// A shared memory block a tool edited changed since the tool read it (another session
    /// wrote it): reload and perform the call again, from the block as it is now.
    Stale,
    /// Lease lost or shutting down: leave the run to whoever drives it next.
    Yield,
    /// The store failed: the lease will expire and the run is retried.
    Failed(String),
    /// The store cannot be reached now (a lost connection, a restarting server): reload and
    /// go on after a pause. A write whose acknowledgement was lost may have committed; the
    /// reload finds out, and replay never does a logged step twice.
    Unavailable(String),
    /// The session was deleted (its runs with it): there is nothing left to drive.
    Gone,
    /// The session's log or snapshot cannot be decoded: no retry can help, so the run fails.
    Unreadable(String),
}

impl From<StoreError> for Halt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Halt::Conflict,
            StoreError::Stale(_) => Halt::Stale,
            // The session (and its runs with it) was deleted while the run went on.
            StoreError::NotFound { .. } => Halt::Gone,
            StoreError::Unavailable(reason) => Halt::Unavailable(reason),
            other => Halt::Failed(other.to_string()),
        }
    }
}

pub(crate) async fn drive(inner: &Arc<Inner>, run: &RunRecord, stop: watch::Receiver<Stop>) {
    let slot = inner.slot(&run.session);
    let mut live = slot.live.lock().await;
    let mut conflicts = 0;
    let mut stale = 0;
    let mut outage = OutageBackoff::default();
    loop {
        let mut driver = Driver {
            inner,
            slot: &slot,
            run,
            stop: stop.clone(),
            pending: Vec::new(),
            writes: ToolWrites::default(),
            finish: None,
        };
        match driver.drive(&mut live).await {
            Ok(()) => return,
            Err(Halt::Conflict) if conflicts < 5 => {
                tracing::info!("session log moved under this run; reloading");
                conflicts += 1;
                *live = None;
            }
            // Each time, another session's edit of the block got in first: it is progress, so
            // many tries are allowed, each a little later, before the lease decides.
            Err(Halt::Stale) if stale < STALE_TRIES => {
                stale += 1;
                *live = None;
                tokio::time::sleep(Duration::from_millis(stale)).await;
            }
            Err(Halt::Conflict | Halt::Stale) => {
                tracing::error!(
                    "run gave up after repeated append conflicts; it resumes when its lease expires"
                );
                *live = None;
                return;
            }
            Err(Halt::Unavailable(error)) if !outage.spent() => {
                tracing::warn!(%error, "the store is out of reach; retrying the run's step");
                *live = None;
                if !outage.wait(&mut stop.clone()).await {
                    return;
                }
            }
            Err(Halt::Yield) => return,
            Err(Halt::Gone) => {
                tracing::info!("the run's session was deleted; the run ends with it");
                return;
            }
            Err(Halt::Unreadable(error)) => {
                fail_unreadable(inner, &slot, run, error).await;
                return;
            }
            Err(Halt::Failed(error) | Halt::Unavailable(error)) => {
                tracing::error!(%error, "run halted; it resumes when its lease expires");
                *live = None;
                let _ = slot.updates.send(RunUpdate::Halted {
                    run_id: run.id.clone(),
                    error,
                });
                return;
            }
        }
    }
}

/// How many times a run performs again a tool call whose shared memory block edit another
/// session's got ahead of (`Halt::Stale`).
const STALE_TRIES: u64 = 64;

/// Pauses between attempts while the store is out of reach: 100 ms, doubling up to 2 s, for
/// about ten seconds in all (a third of the default lease) before the run halts and waits for
/// its lease to lapse.
#[derive(Default)]
struct OutageBackoff {
    tries: u32,
}

impl OutageBackoff {
    const TRIES: u32 = 9;

    fn spent(&self) -> bool {
        self.tries >= Self::TRIES
    }

    /// Waits out the next pause; `false` when the run's lease was lost meanwhile (a cancel
    /// ends the wait early, for the next attempt to log it).
    async fn wait(&mut self, stop: &mut watch::Receiver<Stop>) -> bool {
        let delay = Duration::from_millis(100 << self.tries.min(4)).min(Duration::from_secs(2));
        self.tries += 1;
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            _ = stop.changed() => *stop.borrow() != Stop::LeaseLost,
        }
    }
}

/// Fails a run whose session cannot be read, in the queue only (its log cannot take more),
/// and tells whoever follows it.
async fn fail_unreadable(inner: &Arc<Inner>, slot: &SessionSlot, run: &RunRecord, error: String) {
    keel_store::note_unreadable("session", run.session.as_str(), &error);
    let outcome = RunOutcome {
        output: None,
        error: Some(format!(
            "session {} cannot be read, so run {} cannot go on: {error}",
            run.session, run.id
        )),
    };
    let finished = inner
        .store
        .finish_run(&run.id, RunStatus::Failed, outcome)
        .await;
    match finished {
        Ok(()) => {
            if let Ok(Some(record)) = inner.store.get_run(&run.tenant, &run.id).await {
                let _ = slot.updates.send(RunUpdate::Finished(Box::new(record)));
            }
        }
        Err(e) => tracing::error!(error = %e, "failing the unreadable run failed; it is retried"),
    }
}

struct Driver<'a> {
    inner: &'a Arc<Inner>,
    slot: &'a SessionSlot,
    run: &'a RunRecord,
    stop: watch::Receiver<Stop>,
    /// Events decided but not yet appended.
    pending: Vec<NewEvent>,
    /// What built-in tools wrote, committed with the events that log their results.
    writes: ToolWrites,
    /// Set when the pending batch ends the run.
    finish: Option<RunFinish>,
}

impl Driver<'_> {
    async fn drive(&mut self, slot_live: &mut Option<LiveSession>) -> Result<(), Halt> {
        let live = self
            .inner
            .live(&self.run.session, slot_live)
            .await
            .map_err(|e| match e {
                LoadError::Store(e) if !e.is_unreadable() => e.into(),
                e if e.is_unreadable() => Halt::Unreadable(e.to_string()),
                e => Halt::Failed(e.to_string()),
            })?;
        // The state including pending (decided, not yet logged) events.
        let mut state = live.state.clone();
        self.begin(live, &mut state).await?;
        loop {
            let stop = *self.stop.borrow();
            match stop {
                Stop::Continue => {}
                Stop::Cancel => return self.cancel(live, &mut state).await,
                Stop::LeaseLost => return Err(Halt::Yield),
            }
            if *self.inner.shutdown.borrow() {
                self.flush(live).await?;
                return Err(Halt::Yield);
            }
            match keel_core::decide(&state) {
                Action::Idle => {
                    unreachable!("a run that has begun is the session's active run until it ends")
                }
                Action::Finish { run_id, output } => {
                    let usage = state.active.as_ref().map(|r| r.usage).unwrap_or_default();
                    self.push(
                        &mut state,
                        EventBody::RunCompleted {
                            run_id,
                            output: output.clone(),
                            usage,
                        },
                    );
                    self.end(
                        live,
                        RunStatus::Completed,
                        RunOutcome {
                            output: Some(output.clone()),
                            error: None,
                        },
                    )
                    .await?;
                    if let Some(agent) = state.agent.as_ref() {
                        let (run, input) = (self.run, &self.run.input);
                        extraction::after_completed_run(
                            self.inner,
                            &run.tenant,
                            &run.session,
                            &run.id,
                            agent,
                            input,
                            &output,
                        );
                    }
                    return Ok(());
                }
                Action::Fail {
                    run_id,
                    code,
                    error,
                } => {
                    self.push(
                        &mut state,
                        EventBody::RunFailed {
                            run_id,
                            code: code.into(),
                            error: error.clone(),
                        },
                    );
                    return self
                        .end(
                            live,
                            RunStatus::Failed,
                            RunOutcome {
                                output: None,
                                error: Some(error),
                            },
                        )
                        .await;
                }
                Action::CallModel {
                    run_id,
                    step,
                    attempt,
                    intent_logged,
                } => {
                    if live.blocks.is_none() {
                        // The blocks at the front, as they are now: after a load or a compaction.
                        live.blocks = Some(self.render_blocks(&state).await?);
                    }
                    // The agent's MCP servers list their own tools (each started on first use).
                    let listed = match state.agent.as_ref() {
                        Some(agent) => self.inner.tools.mcp_specs(&self.run.tenant, agent).await,
                        None => Vec::new(),
                    };
                    if !intent_logged
                        && let Some(through_seq) = self.compaction_due(live, &state, &listed)
                    {
                        self.push(
                            &mut state,
                            EventBody::CompactionStarted {
                                run_id,
                                through_seq,
                            },
                        );
                        self.flush(live).await?;
                        fault::point(FaultPoint::CompactionIntentLogged).await;
                        continue;
                    }
                    if !intent_logged {
                        self.push(
                            &mut state,
                            EventBody::ModelCalled {
                                run_id,
                                step,
                                attempt,
                            },
                        );
                    }
                    self.flush(live).await?;
                    fault::point(FaultPoint::ModelIntentLogged).await;
                    let (result, retry_after) =
                        self.call_model(live, &state, step, attempt, listed).await?;
                    self.push(&mut state, result);
                    if *self.stop.borrow() == Stop::Continue
                        && let Some(delay) = retry_delay(&state, retry_after)
                    {
                        self.flush(live).await?;
                        self.pause(delay).await;
                    }
                }
                Action::Compact {
                    run_id,
                    through_seq,
                } => {
                    self.flush(live).await?;
                    if let Some(compacted) = self.compact(live, &state, run_id, through_seq).await?
                    {
                        self.push(&mut state, compacted);
                        // The next step's request is built from the compacted transcript.
                        self.flush(live).await?;
                    }
                }
                Action::RequestApproval { run_id, calls } => {
                    self.push(&mut state, EventBody::ApprovalRequested { run_id, calls });
                }
                Action::ReturnDecided {
                    run_id,
                    call_id,
                    content,
                    is_error,
                } => {
                    self.push(
                        &mut state,
                        EventBody::ToolReturned {
                            run_id,
                            call_id,
                            content,
                            is_error,
                        },
                    );
                }
                // Parked in the same append as its last events: no lease, no slot, until a
                // person's decision (`Engine::resume_run`) queues it again.
                Action::Wait { .. } => {
                    return self
                        .end(live, RunStatus::Waiting, RunOutcome::default())
                        .await;
                }
                Action::CallTool { run_id, call } => {
                    let key = match &call.idempotency_key {
                        Some(key) => key.clone(),
                        None => {
                            let key = format!("{}:{}", self.run.session, state.last_seq + 1);
                            self.push(
                                &mut state,
                                EventBody::ToolCalled {
                                    run_id: run_id.clone(),
                                    call_id: call.call_id.clone(),
                                    name: call.name.clone(),
                                    arguments: call.arguments.clone(),
                                    idempotency_key: key.clone(),
                                },
                            );
                            key
                        }
                    };
                    self.flush(live).await?;
                    fault::point(FaultPoint::ToolIntentLogged).await;
                    let agent = state
                        .agent
                        .as_ref()
                        .expect("a started session has an agent");
                    let outcome = self
                        .inner
                        .tools
                        .call(
                            self.inner.store.as_ref(),
                            &self.run.tenant,
                            &self.run.session,
                            agent,
                            &call.name,
                            &call.arguments,
                            &key,
                        )
                        .await;
                    fault::point(FaultPoint::ToolPerformed).await;
                    for change in &outcome.writes.blocks {
                        self.push(&mut state, change.event(&run_id));
                    }
                    self.writes.extend(outcome.writes);
                    self.push(
                        &mut state,
                        EventBody::ToolReturned {
                            run_id,
                            call_id: call.call_id,
                            content: outcome.content,
                            is_error: outcome.is_error,
                        },
                    );
                }
            }
        }
    }

    /// Logs `RunStarted` unless this run is already the session's active one (a resume).
    async fn begin(
        &mut self,
        live: &mut LiveSession,
        state: &mut SessionState,
    ) -> Result<(), Halt> {
        let run_id = &self.run.id;
        if live
            .state
            .last_run
            .as_ref()
            .is_some_and(|(id, _)| id == run_id)
        {
            // Its end is logged; only the queue missed it (a crash in between).
            let (_, status) = live.state.last_run.clone().expect("checked");
            let outcome = RunOutcome::default();
            self.inner.store.finish_run(run_id, status, outcome).await?;
            self.publish_finished().await;
            return Err(Halt::Yield);
        }
        match live.state.active.clone() {
            Some(active) if &active.run_id == run_id => return Ok(()),
            Some(active) => {
                // A run whose queue entry is gone (deleted or finished elsewhere) left the log open.
                let stale = active.run_id.clone();
                for call in active.tools {
                    self.push(
                        state,
                        EventBody::ToolReturned {
                            run_id: stale.clone(),
                            call_id: call.call_id,
                            content: "abandoned".into(),
                            is_error: true,
                        },
                    );
                }
                self.push(
                    state,
                    EventBody::RunFailed {
                        run_id: stale,
                        code: "abandoned".into(),
                        error: "the run's queue entry was lost".into(),
                    },
                );
            }
            None => {}
        }
        if self.run.input.parts.is_empty() {
            // Its queue entry lost the input it keeps until the run starts (a hand edit).
            return Err(Halt::Unreadable(format!(
                "run {run_id} has no stored input to start with"
            )));
        }
        // Earlier input items go first, as transcript; the options keep the rest.
        let mut options = self.run.options.clone();
        let context = std::mem::take(&mut options.context);
        if !context.is_empty() {
            self.push(state, EventBody::MessagesAdded { messages: context });
        }
        self.push(
            state,
            EventBody::RunStarted {
                run_id: run_id.clone(),
                input: self.run.input.clone(),
                options: Box::new(options),
            },
        );
        Ok(())
    }

    /// Adds an event to the batch, applying it to `state` so `decide` sees it.
    fn push(&mut self, state: &mut SessionState, body: EventBody) {
        let event = Event {
            seq: state.last_seq + 1,
            at: clock::now(),
            body,
        };
        if let Err(e) = state.apply(&event) {
            // The driver only produces what decide asked for; this is a bug, not bad input.
            panic!("driver produced an event the state machine rejects: {e}");
        }
        self.pending.push(NewEvent {
            at: event.at,
            body: event.body,
        });
    }

    /// Appends the batch atomically, then updates the live session and tells subscribers.
    async fn flush(&mut self, live: &mut LiveSession) -> Result<(), Halt> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.pending);
        let batch = AppendBatch {
            events: events.clone(),
            scratchpad: std::mem::take(&mut self.writes.scratchpad),
            memory: std::mem::take(&mut self.writes.memory),
            timers: std::mem::take(&mut self.writes.timers),
            shared_blocks: self
                .writes
                .take_shared_blocks(&self.run.session, &self.run.id),
            finish_run: self.finish.take(),
            ..AppendBatch::default()
        };
        let base = live.state.last_seq;
        self.inner
            .store
            .append(&self.run.session, base, batch)
            .await?;
        let logged: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Event {
                seq: base + 1 + i as u64,
                at: e.at,
                body: e.body,
            })
            .collect();
        for event in &logged {
            live.state.apply(event).expect("validated when pushed");
        }
        live.extend_transcript(&logged);
        let returned_tool = logged
            .iter()
            .any(|e| matches!(e.body, EventBody::ToolReturned { .. }));
        for event in logged {
            self.inner.counters.count(&event.body);
            let _ = self.slot.updates.send(RunUpdate::Event(Arc::new(event)));
        }
        if live.state.last_seq - live.snapshot_seq >= self.inner.config.snapshot_every {
            let snapshot = Snapshot {
                seq: live.state.last_seq,
                state: live.state.clone(),
            };
            self.inner
                .store
                .put_snapshot(&self.run.session, snapshot)
                .await?;
            live.snapshot_seq = live.state.last_seq;
        }
        if returned_tool {
            fault::point(FaultPoint::ToolResultLogged).await;
        }
        Ok(())
    }

    /// Logs the run's last events and marks it finished in the queue, in one transaction.
    async fn end(
        &mut self,
        live: &mut LiveSession,
        status: RunStatus,
        outcome: RunOutcome,
    ) -> Result<(), Halt> {
        self.finish = Some(RunFinish {
            run: self.run.id.clone(),
            status,
            outcome,
        });
        self.flush(live).await?;
        self.publish_finished().await;
        Ok(())
    }

    async fn publish_finished(&self) {
        if let Ok(Some(record)) = self
            .inner
            .store
            .get_run(&self.run.tenant, &self.run.id)
            .await
        {
            let _ = self
                .slot
                .updates
                .send(RunUpdate::Finished(Box::new(record)));
        }
    }

    async fn cancel(
        &mut self,
        live: &mut LiveSession,
        state: &mut SessionState,
    ) -> Result<(), Halt> {
        let run_id = self.run.id.clone();
        if let Some(active) = state.active.clone() {
            for call in active.tools {
                self.push(
                    state,
                    EventBody::ToolReturned {
                        run_id: run_id.clone(),
                        call_id: call.call_id,
                        content: "cancelled before it ran".into(),
                        is_error: true,
                    },
                );
            }
            self.push(
                state,
                EventBody::RunCancelled {
                    run_id,
                    reason: "cancelled on request".into(),
                },
            );
        }
        self.end(
            live,
            RunStatus::Cancelled,
            RunOutcome {
                output: None,
                error: Some("cancelled".into()),
            },
        )
        .await
    }

    /// Calls the model and returns the result event (`ModelReplied` or `ModelFailed`) and,
    /// for a failure, how long the provider asked us to wait.
    async fn call_model(
        &mut self,
        live: &LiveSession,
        state: &SessionState,
        step: u32,
        attempt: u32,
        listed_tools: Vec<ToolSpec>,
    ) -> Result<(EventBody, Option<Duration>), Halt> {
        let agent = state
            .agent
            .as_ref()
            .expect("a started session has an agent");
        let run_id = self.run.id.clone();
        let failed = |error: ModelError| {
            let body = EventBody::ModelFailed {
                run_id: run_id.clone(),
                step,
                attempt,
                retryable: error.is_retryable(),
                error: error.to_string(),
                kind: Some(error.kind.as_str().to_string()),
                status: error.status,
                code: error.code.clone(),
                retry_after_ms: error.retry_after.map(|d| d.as_millis() as u64),
            };
            (body, error.retry_after)
        };
        let options = &self.run.options;
        let step_input = request::StepInput {
            front: live.front(),
            messages: live.messages().iter().cloned().collect(),
            listed_tools,
        };
        let (
            Resolved {
                client,
                provider,
                model,
            },
            mut request,
        ) = match request::model_request(
            &self.inner.models,
            &self.run.session,
            agent,
            options,
            step_input,
        ) {
            Ok(built) => built,
            Err(error) => return Ok(failed(error)),
        };
        let served_by = format!("{provider}/{model}");
        let started = Instant::now();
        let stream = if options.truncation == Truncation::Auto {
            loop {
                match client.stream(request.clone()).await {
                    Ok(s) => break Ok(s),
                    // The provider counted too many tokens: send fewer turns.
                    Err(e)
                        if e.kind == keel_models::ModelErrorKind::ContextOverflow
                            && context::drop_older_turns(&mut request.messages) =>
                    {
                        tracing::info!(
                            messages = request.messages.len(),
                            "the transcript did not fit the model's context window; trying again without the older half of it"
                        );
                    }
                    Err(e) => break Err(e),
                }
            }
        } else {
            client.stream(request).await
        };
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => return Ok(failed(e)),
        };
        let mut reply = ReplyAccumulator::default();
        let reply_limit = self.inner.config.quotas.model_reply_bytes;
        let mut reply_bytes = 0usize;
        let mut first = true;
        let mut queued = Duration::ZERO;
        loop {
            let next = tokio::select! {
                next = stream.next() => next,
                _ = self.stop.changed() => match *self.stop.borrow() {
                    Stop::LeaseLost => return Err(Halt::Yield),
                    _ => {
                        let error = ModelError::new(keel_models::ModelErrorKind::Cancelled, client.provider(), "cancelled");
                        return Ok(failed(error));
                    }
                },
            };
            match next {
                None => break,
                Some(Err(e)) => return Ok(failed(e)),
                Some(Ok(event)) => {
                    reply_bytes = match &event {
                        keel_models::StreamEvent::TextDelta(text) => reply_bytes + text.len(),
                        keel_models::StreamEvent::ToolCallDelta { arguments, .. } => {
                            reply_bytes + arguments.len()
                        }
                        keel_models::StreamEvent::Restart { .. } => 0,
                        _ => reply_bytes,
                    };
                    if reply_bytes > reply_limit {
                        let error = ModelError::new(
                            keel_models::ModelErrorKind::BadRequest,
                            "keel",
                            format!(
                                "the model's reply passed the limit of {reply_limit} bytes \
                                 (`model_reply_bytes` in keel.toml's [limits]); lower max_output_tokens"
                            ),
                        )
                        .with_code("reply_too_large");
                        return Ok(failed(error));
                    }
                    match &event {
                        keel_models::StreamEvent::TextDelta(text) => {
                            let _ = self.slot.updates.send(RunUpdate::TextDelta {
                                run_id: run_id.clone(),
                                step,
                                attempt,
                                text: text.clone(),
                            });
                        }
                        keel_models::StreamEvent::Queued { waited } => queued += *waited,
                        keel_models::StreamEvent::Restart { .. } => {
                            let _ = self.slot.updates.send(RunUpdate::TextReset {
                                run_id: run_id.clone(),
                                step,
                            });
                        }
                        _ => {}
                    }
                    reply.push(event);
                    if first {
                        first = false;
                        fault::point(FaultPoint::ModelStreaming).await;
                    }
                }
            }
        }
        // A route says which target served the call; a provider called directly is the target.
        let (served_by, provider_kind, target, attempts) = match reply.served() {
            Some(s) => (
                format!("{}/{}", s.provider, s.model),
                s.provider_kind.clone(),
                Some(format!("{}#{}", s.route, s.target)),
                s.attempts,
            ),
            None => (served_by, client.provider().to_string(), None, 1),
        };
        let reply = reply.finish();
        let (provider, served_model) = served_by.split_once('/').unwrap_or((&served_by, ""));
        let cost_usd = self
            .inner
            .models
            .catalog()
            .cost(provider, served_model, &reply.usage);
        let replied = EventBody::ModelReplied {
            run_id,
            step,
            message: reply.message,
            usage: reply.usage,
            finish: if reply.finish == FinishReason::Cancelled {
                FinishReason::Stop
            } else {
                reply.finish
            },
            model: served_by,
            provider_kind: Some(provider_kind),
            latency_ms: started.elapsed().as_millis() as u64,
            queue_ms: queued.as_millis() as u64,
            target,
            attempts,
            cost_usd,
        };
        Ok((replied, None))
    }

    /// Waits out a retry delay, waking early when the run is stopped.
    async fn pause(&mut self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.stop.changed() => {}
        }
    }
}

/// After a retryable model failure that will be retried: how long to wait first. Jittered
/// exponential backoff, or the provider's `Retry-After` when that is longer (capped at 60 s).
fn retry_delay(state: &SessionState, retry_after: Option<Duration>) -> Option<Duration> {
    let run = state.active.as_ref()?;
    if run.replied || run.model_pending || run.failure.is_some() || run.attempt == 0 {
        return None;
    }
    let base = 100u64 << run.attempt.min(7);
    let jitter = rand::random::<f64>() + 0.5;
    let backoff =
        Duration::from_millis(((base as f64) * jitter) as u64).min(Duration::from_secs(10));
    Some(backoff.max(retry_after.unwrap_or_default().min(Duration::from_secs(60))))
}
