//! A session's log as a follower reads it: the live broadcast, checked against the last seq
//! seen, and the store whenever the broadcast cannot be trusted; and `LogFollower`, which is
//! just that.

use std::collections::VecDeque;
use std::sync::Arc;

use keel_core::{Event, SessionId};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use crate::slots::SessionSlot;
use crate::{EngineError, Inner, RunUpdate};

/// Events read from the store per query while catching up.
const PAGE: usize = 500;

/// A followed session log (`Engine::follow_log`).
pub struct LogFollower {
    tail: LogTail,
    ready: VecDeque<Arc<Event>>,
    /// Whether the store may hold events not read yet (read a page at a time).
    behind: bool,
}

impl LogFollower {
    pub(super) fn new(tail: LogTail) -> LogFollower {
        LogFollower {
            tail,
            ready: VecDeque::new(),
            behind: true,
        }
    }

    /// The next event of the log; waits for it.
    pub async fn next(&mut self) -> Result<Arc<Event>, EngineError> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Ok(event);
            }
            if self.behind {
                let (page, more) = self.tail.read_page().await?;
                self.ready.extend(page);
                self.behind = more;
                continue;
            }
            match self.tail.next().await {
                Tail::Event(event) => return Ok(event),
                Tail::Live(_) => {}
                Tail::Behind { .. } => self.behind = true,
            }
        }
    }

    /// The events as a stream; it ends after the first error.
    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Arc<Event>, EngineError>> {
        futures::stream::unfold(Some(self), |f| async move {
            let mut f = f?;
            match f.next().await {
                Ok(event) => Some((Ok(event), Some(f))),
                Err(e) => Some((Err(e), None)),
            }
        })
    }
}

/// A session's log as both sources tell it: the live broadcast, checked against the last seq
/// seen, and the store, read again when the broadcast cannot be trusted.
pub(super) struct LogTail {
    inner: Arc<Inner>,
    session: SessionId,
    /// Held while following: the session's channel (and live state) live as long as it does.
    slot: Arc<SessionSlot>,
    updates: broadcast::Receiver<RunUpdate>,
    /// The last seq seen.
    pub(super) last: u64,
    /// The last seq other nodes are heard to have logged (`signals.rs`).
    heard: watch::Receiver<u64>,
    /// Covers events logged by another node, which this node's broadcast never carries, when
    /// no hint of them is heard.
    poll: Interval,
}

/// What the log's tail says next.
pub(super) enum Tail {
    /// The event after the last one seen.
    Event(Arc<Event>),
    /// A live update other than an event.
    Live(RunUpdate),
    /// The store may hold events not seen: read it (`LogTail::read_page`). `lost`: live
    /// updates were dropped (a lag), not only events.
    Behind { lost: bool },
}

impl LogTail {
    /// Subscribes at once, so that nothing logged after this call is missed.
    pub(super) fn new(inner: Arc<Inner>, session: SessionId) -> LogTail {
        let slot = inner.slot(&session);
        let updates = slot.updates.subscribe();
        let heard = slot.heard.subscribe();
        let period = inner.config.poll_interval;
        let mut poll = tokio::time::interval_at(Instant::now() + period, period);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        LogTail {
            inner,
            session,
            slot,
            updates,
            last: 0,
            heard,
            poll,
        }
    }

    pub(super) async fn next(&mut self) -> Tail {
        loop {
            match self.recv().await {
                Err(behind) => return behind,
                Ok(RunUpdate::Event(event)) if event.seq <= self.last => {}
                Ok(RunUpdate::Event(event)) if event.seq == self.last + 1 => {
                    self.last = event.seq;
                    return Tail::Event(event);
                }
                // A gap: events logged elsewhere, or while this tail was read from the store.
                Ok(RunUpdate::Event(_)) => return Tail::Behind { lost: false },
                Ok(update) => return Tail::Live(update),
            }
        }
    }

    /// The next live update that is not an event, for a follower that does not read the log;
    /// `Behind` says that updates may have been missed (a lag, a dropped slot, each poll).
    pub(super) async fn next_update(&mut self) -> Tail {
        loop {
            match self.recv().await {
                Err(behind) => return behind,
                Ok(RunUpdate::Event(_)) => {}
                Ok(update) => return Tail::Live(update),
            }
        }
    }

    /// The broadcast's next update, or `Behind` when it cannot be trusted.
    async fn recv(&mut self) -> Result<RunUpdate, Tail> {
        // Updates first: what is already queued is seen before the poll re-reads.
        let update = loop {
            tokio::select! {
                biased;
                update = self.updates.recv() => break update,
                _ = self.poll.tick() => return Err(Tail::Behind { lost: false }),
                Ok(()) = self.heard.changed() => {
                    // Another node logged past what this tail has seen.
                    if *self.heard.borrow_and_update() > self.last {
                        return Err(Tail::Behind { lost: false });
                    }
                }
            }
        };
        match update {
            Ok(update) => Ok(update),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(session = %self.session, missed, "a follower lagged; reading the store");
                Err(Tail::Behind { lost: true })
            }
            Err(RecvError::Closed) => {
                // Cannot happen while this tail holds the slot; listen afresh all the same.
                self.slot = self.inner.slot(&self.session);
                self.updates = self.slot.updates.subscribe();
                self.heard = self.slot.heard.subscribe();
                Err(Tail::Behind { lost: true })
            }
        }
    }

    /// A page of the stored events after the last one seen, and whether more may follow.
    pub(super) async fn read_page(&mut self) -> Result<(Vec<Arc<Event>>, bool), EngineError> {
        let page = self
            .inner
            .store
            .read_events(&self.session, self.last, PAGE)
            .await?;
        if let Some(last) = page.last() {
            self.last = last.seq;
        }
        let more = page.len() == PAGE;
        Ok((page.into_iter().map(Arc::new).collect(), more))
    }
}
