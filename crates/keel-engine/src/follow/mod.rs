//! Following a run or a session's log: the one way the wait and stream modes, the events SSE,
//! Responses streaming and the CLI watch what the engine does. The live broadcast is fast but
//! lossy (a slow follower lags, a run driven by another node is not on it) and the store is
//! complete but slow, so a follower reads the store first, then the broadcast, de-duplicated
//! by seq, and goes back to the store whenever the broadcast cannot be trusted (a lag, a gap,
//! every poll period): it never misses an event and never hangs on a lost update.
//!
//! `Engine::follow_run` yields `RunProgress` items: `Text` as the model streams (every step's
//! `Text` adds up to its logged reply, even when live deltas were lost: the rest of the reply
//! comes as one more `Text` before its `model_replied` event), each of the run's logged
//! `Event`s once in seq order, `Halted` / `NotStarted` when the run cannot go on now (it stays
//! in the queue; a caller that promised a bounded answer stops there, others follow on), and
//! `Ended` with the run's final record, always last. `Engine::submit_followed` queues a run
//! and returns its follower subscribed before the run was queued (a stream's first text is
//! live even when the run is driven at once). `Engine::follow_run_end` is the same
//! follower for a caller that wants the end alone (wait mode, `wait_run`): it yields only
//! `Halted`, `NotStarted` and `Ended` and never reads the log, so a wait costs two record
//! reads, not the decoding of every event of the run. `Engine::follow_log` yields every event
//! of a session after a seq, in order, and follows on until dropped.

mod tail;
mod text;

use std::collections::VecDeque;
use std::sync::Arc;

use keel_core::{Event, EventBody, Message, RunId, RunOptions, RunStatus, SessionId, TenantId};
use keel_store::RunRecord;

use crate::{BusyPolicy, Engine, EngineError, RunUpdate};
pub use tail::LogFollower;
use tail::{LogTail, Tail};
use text::StreamedText;

/// What happened next in a followed run.
#[derive(Clone, Debug)]
pub enum RunProgress {
    /// A piece of the reply of `step`, as the model streams it (not logged).
    Text {
        step: u32,
        attempt: u32,
        text: String,
    },
    /// The model call of `step` failed over mid-reply: discard its text so far.
    TextReset { step: u32 },
    /// One of the run's logged events; each once, in seq order.
    Event(Arc<Event>),
    /// Driving stopped on a store failure (a full disk); the run resumes when its lease
    /// expires or at the next start.
    Halted { error: String },
    /// The run is still queued and cannot start: the store cannot commit (a claim is a
    /// write). It stays queued and starts when the store recovers. Told once.
    NotStarted { error: String },
    /// The run ended: its final record. The last item.
    Ended(Box<RunRecord>),
}

impl Engine {
    /// Follows a run from its first event to its end (see the module's header). Subscribes
    /// as it is called: call it right after `submit`.
    pub async fn follow_run(
        &self,
        tenant: &TenantId,
        run: &RunId,
    ) -> Result<RunFollower, EngineError> {
        let record = self.get_run(tenant, run).await?;
        let mut tail = LogTail::new(self.inner.clone(), record.session.clone());
        // The log's end, read before the run's status. While a run is queued or in progress
        // nothing else is logged to its session, so unless the end is one of its own events,
        // it has logged nothing yet; else its events are found by reading back from the end.
        let end = self
            .inner
            .store
            .read_events_before(&record.session, u64::MAX, 1)
            .await?
            .pop();
        let last = end.as_ref().map_or(0, |e| e.seq);
        let record = self.get_run(tenant, run).await?;
        let logged_nothing = record.status == RunStatus::Queued
            || (!record.status.is_terminal() && end.is_none_or(|e| e.body.run_id() != Some(run)));
        tail.last = if logged_nothing {
            last
        } else {
            self.run_events(&record)
                .await?
                .first()
                .map_or(last, |e| e.seq - 1)
        };
        let mut follower = RunFollower::new(
            self,
            tenant,
            run.clone(),
            tail,
            true,
            record.status != RunStatus::Queued,
        );
        follower.catch_up(record).await?;
        Ok(follower)
    }

    /// Queues `input` like `submit_with` and follows the run from before it was queued: the
    /// session's broadcast is subscribed first, so even a run driven the instant it is queued
    /// (leased at enqueue) streams its first text live instead of reading it back from the log.
    pub async fn submit_followed(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        input: Message,
        options: RunOptions,
        policy: BusyPolicy,
    ) -> Result<(RunRecord, RunFollower), EngineError> {
        let mut tail = LogTail::new(self.inner.clone(), session.clone());
        // Subscribed before the session's record is read: what is logged after that read is
        // on the broadcast, so the follower starts at the seq the read gave (no read of its own).
        let (run, log_end) = self.queue(tenant, session, input, options, policy).await?;
        tail.last = log_end;
        let follower = RunFollower::new(self, tenant, run.id.clone(), tail, true, false);
        Ok((run, follower))
    }

    /// Follows a run for its end alone: `Halted` / `NotStarted` while it cannot go on now, then
    /// `Ended` (see the module's header). Subscribes as it is called: call it right after
    /// `submit`.
    pub async fn follow_run_end(
        &self,
        tenant: &TenantId,
        run: &RunId,
    ) -> Result<RunFollower, EngineError> {
        let record = self.get_run(tenant, run).await?;
        let tail = LogTail::new(self.inner.clone(), record.session.clone());
        // Read again once subscribed: an end between the two reads is in the second.
        let record = if record.status.is_resting() {
            record
        } else {
            self.get_run(tenant, run).await?
        };
        let mut follower = RunFollower::new(
            self,
            tenant,
            run.clone(),
            tail,
            false,
            record.status != RunStatus::Queued,
        );
        follower.check(record).await;
        Ok(follower)
    }

    /// Follows a session's log: every event after seq `after`, in order, then live.
    pub async fn follow_log(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        after: u64,
    ) -> Result<LogFollower, EngineError> {
        self.require_session(tenant, session).await?;
        let mut tail = LogTail::new(self.inner.clone(), session.clone());
        tail.last = after;
        Ok(LogFollower::new(tail))
    }

    /// Waits until the run has ended and returns its record.
    pub async fn wait_run(&self, tenant: &TenantId, run: &RunId) -> Result<RunRecord, EngineError> {
        self.follow_run_end(tenant, run).await?.end().await
    }
}

/// A followed run (`Engine::follow_run`).
pub struct RunFollower {
    engine: Engine,
    tenant: TenantId,
    run: RunId,
    tail: LogTail,
    text: StreamedText,
    /// Whether the run's events (and text) are followed, or its end alone (`follow_run_end`).
    events: bool,
    /// Whether the run left the queue (so it cannot be "not started").
    started: bool,
    told_not_started: bool,
    /// Whether the run's last event was seen (its record may lag a moment behind).
    ended_in_log: bool,
    ready: VecDeque<RunProgress>,
    done: bool,
}

impl RunFollower {
    fn new(
        engine: &Engine,
        tenant: &TenantId,
        run: RunId,
        tail: LogTail,
        events: bool,
        started: bool,
    ) -> RunFollower {
        RunFollower {
            engine: engine.clone(),
            tenant: tenant.clone(),
            run,
            tail,
            text: StreamedText::default(),
            events,
            started,
            told_not_started: false,
            ended_in_log: false,
            ready: VecDeque::new(),
            done: false,
        }
    }

    /// The run followed.
    pub fn run(&self) -> &RunId {
        &self.run
    }

    /// The next item; `None` after `Ended` or an error.
    pub async fn next(&mut self) -> Option<Result<RunProgress, EngineError>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                self.done |= matches!(item, RunProgress::Ended(_));
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.advance().await {
                self.done = true;
                return Some(Err(e));
            }
        }
    }

    /// Follows to the end and returns the run's final record.
    pub async fn end(mut self) -> Result<RunRecord, EngineError> {
        while let Some(item) = self.next().await {
            if let RunProgress::Ended(record) = item? {
                return Ok(*record);
            }
        }
        Err(EngineError::Invalid(format!(
            "following run {} stopped before its end",
            self.run
        )))
    }

    /// The items as a stream.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<RunProgress, EngineError>> {
        futures::stream::unfold(self, |mut f| async move { f.next().await.map(|i| (i, f)) })
    }

    async fn advance(&mut self) -> Result<(), EngineError> {
        let next = if self.events {
            self.tail.next().await
        } else {
            self.tail.next_update().await
        };
        match next {
            Tail::Event(event) => self.take(event),
            Tail::Live(update) => self.live(update).await?,
            Tail::Behind { lost } => {
                let record = self.engine.get_run(&self.tenant, &self.run).await?;
                self.catch_up(record).await?;
                if lost {
                    self.text.lost();
                }
            }
        }
        Ok(())
    }

    /// Reads the log after the last event seen (when events are followed); `record`, read
    /// before, tells whether the run has ended (then everything it logged is in what was read)
    /// or cannot start.
    async fn catch_up(&mut self, record: RunRecord) -> Result<(), EngineError> {
        while self.events {
            let (page, more) = self.tail.read_page().await?;
            for event in page {
                self.take(event);
            }
            if !more {
                break;
            }
        }
        self.check(record).await;
        Ok(())
    }

    /// What the run's record says: ended, or still queued while the store cannot commit.
    async fn check(&mut self, record: RunRecord) {
        self.started |= record.status != RunStatus::Queued;
        if record.status.is_resting() {
            self.ready.push_back(RunProgress::Ended(Box::new(record)));
        } else if !self.started
            && !self.told_not_started
            && let Err(e) = self.engine.inner.store.health().await
        {
            self.told_not_started = true;
            self.ready.push_back(RunProgress::NotStarted {
                error: e.to_string(),
            });
        }
    }

    async fn live(&mut self, update: RunUpdate) -> Result<(), EngineError> {
        match update {
            RunUpdate::TextDelta {
                run_id,
                step,
                attempt,
                text,
            } if self.events && run_id == self.run && self.text.streamed(step, attempt, &text) => {
                self.ready.push_back(RunProgress::Text {
                    step,
                    attempt,
                    text,
                });
            }
            RunUpdate::TextReset { run_id, step }
                if self.events && run_id == self.run && self.text.reset(step) =>
            {
                self.ready.push_back(RunProgress::TextReset { step });
            }
            RunUpdate::Finished(record) if record.id == self.run => {
                if self.ended_in_log || !self.events {
                    self.ready.push_back(RunProgress::Ended(record));
                } else {
                    // Its last events went by on another node's broadcast: read them.
                    self.catch_up(*record).await?;
                }
            }
            RunUpdate::Halted { run_id, error } if run_id == self.run => {
                self.ready.push_back(RunProgress::Halted { error });
            }
            _ => {}
        }
        Ok(())
    }

    /// An event of the session, the next after the last one seen.
    fn take(&mut self, event: Arc<Event>) {
        if event.body.run_id() != Some(&self.run) {
            return;
        }
        match &event.body {
            EventBody::RunStarted { .. } => self.started = true,
            EventBody::ModelCalled { step, attempt, .. } => self.text.called(*step, *attempt),
            EventBody::ModelReplied { step, message, .. } => {
                let (reset, rest) = self.text.replied(*step, &message.text_content());
                if reset {
                    self.ready.push_back(RunProgress::TextReset { step: *step });
                }
                if !rest.is_empty() {
                    self.ready.push_back(RunProgress::Text {
                        step: *step,
                        attempt: self.text.attempt,
                        text: rest,
                    });
                }
            }
            EventBody::RunCompleted { .. }
            | EventBody::RunFailed { .. }
            | EventBody::RunCancelled { .. } => self.ended_in_log = true,
            _ => {}
        }
        self.ready.push_back(RunProgress::Event(event));
    }
}
