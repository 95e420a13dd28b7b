//! What the engine keeps in memory for a session it drives: the folded state and a bounded
//! window of the transcript. A hot session therefore costs no store read per turn, and a
//! cold one is loaded from the latest snapshot plus the events after it (O(tail)), with the
//! transcript window read from the end of the log (O(window)), never the whole history.

use std::collections::VecDeque;

use keel_core::{Event, Message, Role, SessionId, SessionState};
use keel_store::{Store, StoreError};

pub struct LiveSession {
    pub state: SessionState,
    pub transcript: VecDeque<Message>,
    /// Seq of the latest stored snapshot (0: none).
    pub snapshot_seq: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("session {session}'s log is inconsistent: {source}")]
    Inconsistent {
        session: SessionId,
        source: keel_core::session::ApplyError,
    },
}

impl LoadError {
    /// Whether the session's stored log cannot be decoded or folded: no retry can help.
    pub fn is_unreadable(&self) -> bool {
        match self {
            LoadError::Store(e) => e.is_unreadable(),
            LoadError::Inconsistent { .. } => true,
        }
    }
}

impl LiveSession {
    pub async fn load(store: &dyn Store, session: &SessionId) -> Result<LiveSession, LoadError> {
        let loaded = store.load(session).await?;
        let snapshot_seq = loaded.snapshot.as_ref().map_or(0, |s| s.seq);
        let base = loaded.snapshot.map(|s| s.state).unwrap_or_default();
        let state = base
            .fold(&loaded.tail)
            .map_err(|source| LoadError::Inconsistent {
                session: session.clone(),
                source,
            })?;
        let window = context_window(&state);
        // Each message-bearing event sits among intent events: read a few per message.
        let recent = store
            .read_events_before(session, state.last_seq + 1, window * 3)
            .await?;
        let mut live = LiveSession {
            state,
            transcript: VecDeque::new(),
            snapshot_seq,
        };
        live.extend_transcript(&recent);
        Ok(live)
    }

    /// Adds the messages of newly logged events to the window and trims it.
    pub fn extend_transcript(&mut self, events: &[Event]) {
        self.transcript
            .extend(events.iter().flat_map(|e| e.body.messages()));
        let window = context_window(&self.state);
        while self.transcript.len() > window {
            self.transcript.pop_front();
        }
        // A window must not open with a tool result (or the reply that asked for it) cut from
        // its context: start at a user message when the window has one.
        if let Some(first_user) = self.transcript.iter().position(|m| m.role == Role::User) {
            self.transcript.drain(..first_user);
        } else {
            while self
                .transcript
                .front()
                .is_some_and(|m| m.role == Role::Tool)
            {
                self.transcript.pop_front();
            }
        }
    }
}

fn context_window(state: &SessionState) -> usize {
    state
        .agent
        .as_ref()
        .map_or(64, |a| a.limits.context_messages.max(1) as usize)
}
