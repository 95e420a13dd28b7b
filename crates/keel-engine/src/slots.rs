//! The sessions this node works on now. A session that a run drives, a submit queues to or a
//! client follows has one `SessionSlot`: its live state (locked while a run drives it), its
//! submit lock and its update channel. The table holds slots weakly: when the last user lets
//! go, the slot is dropped with its channel, and its live state is parked in the `WarmCache`
//! (bounded in bytes, dropped after an idle grace). So an idle session holds no memory but
//! what the cache chooses to keep, whatever the number of sessions touched.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use keel_core::SessionId;
use tokio::sync::{broadcast, watch};

use crate::live::{LiveSession, LoadError};
use crate::warm::{SessionCacheStats, WarmCache};
use crate::{Inner, RunUpdate};

pub(crate) struct SessionSlot {
    session: SessionId,
    pub(crate) live: tokio::sync::Mutex<Option<LiveSession>>,
    /// Serialises submits to the session (the busy check and the enqueue are one step).
    pub(crate) submit: tokio::sync::Mutex<()>,
    pub(crate) updates: broadcast::Sender<RunUpdate>,
    /// The last seq other nodes are heard to have logged (`signals.rs`), for followers here,
    /// whose updates carry only this node's events.
    pub(crate) heard: watch::Sender<u64>,
    table: Arc<SlotTable>,
}

pub(crate) struct SlotTable {
    in_use: Mutex<HashMap<SessionId, Weak<SessionSlot>>>,
    warm: WarmCache,
    /// Live updates a slot's channel keeps for its slowest follower.
    updates_capacity: usize,
}

impl SlotTable {
    pub(crate) fn new(warm: WarmCache, updates_capacity: usize) -> Arc<SlotTable> {
        Arc::new(SlotTable {
            in_use: Mutex::new(HashMap::new()),
            warm,
            updates_capacity: updates_capacity.max(1),
        })
    }

    /// The session's slot: the one in use, else a new one holding its warm state if any.
    pub(crate) fn get(self: &Arc<Self>, session: &SessionId) -> Arc<SessionSlot> {
        let mut in_use = loop {
            let in_use = self.in_use.lock().unwrap();
            match in_use.get(session).map(Weak::upgrade) {
                Some(Some(slot)) => return slot,
                // Its last user let go and its `drop` is parking its live state (it needs
                // this lock): let it finish, then take the state warm.
                Some(None) => {
                    drop(in_use);
                    std::thread::yield_now();
                }
                None => break in_use,
            }
        };
        let slot = Arc::new(SessionSlot {
            session: session.clone(),
            live: tokio::sync::Mutex::new(self.warm.take(session)),
            submit: tokio::sync::Mutex::new(()),
            updates: broadcast::channel(self.updates_capacity).0,
            heard: watch::channel(0).0,
            table: self.clone(),
        });
        in_use.insert(session.clone(), Arc::downgrade(&slot));
        slot
    }

    /// Another node logged the session up to `last_seq`: its followers here look at the
    /// store, and its warm state, if older, is dropped (the next use loads it afresh).
    pub(crate) fn heard_append(&self, session: &SessionId, last_seq: u64) {
        let slot = self
            .in_use
            .lock()
            .unwrap()
            .get(session)
            .and_then(Weak::upgrade);
        match slot {
            Some(slot) => {
                slot.heard.send_if_modified(|heard| {
                    let newer = last_seq > *heard;
                    *heard = (*heard).max(last_seq);
                    newer
                });
            }
            None => self.warm.forget_if_before(session, last_seq),
        }
    }

    /// Hints from other nodes may have been lost: no warm state is trusted (followers find
    /// what they missed at their next poll).
    pub(crate) fn heard_nothing_for_a_while(&self) {
        self.warm.forget_all();
    }

    /// Forgets a deleted session: its slot (if in use) no longer parks its state.
    pub(crate) fn forget(&self, session: &SessionId) {
        self.in_use.lock().unwrap().remove(session);
        self.warm.forget(session);
    }

    pub(crate) fn warm(&self) -> &WarmCache {
        &self.warm
    }

    pub(crate) fn stats(&self) -> SessionCacheStats {
        let in_use = self.in_use.lock().unwrap().len() as u64;
        self.warm.stats(in_use)
    }
}

impl Drop for SessionSlot {
    /// The last user let go: the slot leaves the table and its live state goes to the cache,
    /// both under the table's lock, so the session's next slot finds it there. Unless the
    /// session was deleted (forgotten; a slot made since is another's).
    fn drop(&mut self) {
        let mut in_use = self.table.in_use.lock().unwrap_or_else(|p| p.into_inner());
        match in_use.get(&self.session) {
            Some(entry) if entry.strong_count() == 0 => {
                in_use.remove(&self.session);
            }
            _ => return,
        }
        if let Some(live) = self.live.get_mut().take() {
            self.table.warm.park(self.session.clone(), live);
        }
    }
}

impl Inner {
    pub(crate) fn slot(&self, session: &SessionId) -> Arc<SessionSlot> {
        self.slots.get(session)
    }

    /// The session's live state in `live` (a slot's), loaded from the store when the session
    /// was not warm.
    pub(crate) async fn live<'a>(
        &self,
        session: &SessionId,
        live: &'a mut Option<LiveSession>,
    ) -> Result<&'a mut LiveSession, LoadError> {
        if live.is_none() {
            self.slots.warm().count_load();
            *live = Some(LiveSession::load(self.store.as_ref(), session).await?);
        }
        Ok(live.as_mut().expect("loaded above"))
    }
}
