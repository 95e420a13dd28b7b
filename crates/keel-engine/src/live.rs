//! What the engine keeps in memory for a session it drives: the folded state and a bounded
//! window of the transcript. A hot session therefore costs no store read per turn, and a
//! cold one is loaded from the latest snapshot plus the events after it (O(tail)), with the
//! transcript window read from the end of the log (O(window)), never the whole history.
//!
//! A run that failed leaves its messages (its input, any replies and tool results) in the log
//! but not in the transcript sent to the model: the model never answered it, and sending it
//! again would fail the next turn the same way (an input too long for the context window).

use std::collections::VecDeque;

use keel_core::{Event, EventBody, Message, Role, SessionId, SessionState};
use keel_store::{Store, StoreError};

pub struct LiveSession {
    pub state: SessionState,
    pub transcript: VecDeque<Message>,
    /// Seq of the latest stored snapshot (0: none).
    pub snapshot_seq: u64,
    /// How many messages at the transcript's end the run in progress added (dropped if it fails).
    run_tail: usize,
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
            run_tail: 0,
        };
        live.extend_transcript(&recent);
        Ok(live)
    }

    /// Adds the messages of newly logged events to the window and trims it; a failed run's
    /// messages leave it.
    pub fn extend_transcript(&mut self, events: &[Event]) {
        for event in events {
            match &event.body {
                EventBody::RunStarted { .. } => self.run_tail = 0,
                EventBody::RunFailed { .. } => {
                    let keep = self.transcript.len().saturating_sub(self.run_tail);
                    self.transcript.truncate(keep);
                    self.run_tail = 0;
                    continue;
                }
                EventBody::RunCompleted { .. } | EventBody::RunCancelled { .. } => {
                    self.run_tail = 0;
                    continue;
                }
                _ => {}
            }
            let messages = event.body.messages();
            if event.body.run_id().is_some() {
                self.run_tail += messages.len();
            } else {
                self.run_tail = 0;
            }
            self.transcript.extend(messages);
        }
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
        self.run_tail = self.run_tail.min(self.transcript.len());
    }
}

fn context_window(state: &SessionState) -> usize {
    state
        .agent
        .as_ref()
        .map_or(64, |a| a.limits.context_messages.max(1) as usize)
}

#[cfg(test)]
mod tests {
    use keel_core::{RunId, RunOptions, Timestamp};

    use super::*;

    fn event(seq: u64, body: EventBody) -> Event {
        Event {
            seq,
            at: Timestamp::from_millis(0),
            body,
        }
    }

    fn started(run: &RunId, text: &str) -> EventBody {
        EventBody::RunStarted {
            run_id: run.clone(),
            input: Message::user(text),
            options: Box::new(RunOptions::default()),
        }
    }

    fn texts(live: &LiveSession) -> Vec<String> {
        live.transcript.iter().map(Message::text_content).collect()
    }

    #[test]
    fn a_failed_runs_messages_leave_the_transcript_and_others_stay() {
        let mut live = LiveSession {
            state: SessionState::default(),
            transcript: VecDeque::new(),
            snapshot_seq: 0,
            run_tail: 0,
        };
        let (first, second, third) = (
            RunId::generate(1, 1),
            RunId::generate(2, 2),
            RunId::generate(3, 3),
        );
        live.extend_transcript(&[
            event(1, started(&first, "first")),
            event(
                2,
                EventBody::RunCompleted {
                    run_id: first.clone(),
                    output: String::new(),
                    usage: Default::default(),
                },
            ),
            event(
                3,
                EventBody::MessagesAdded {
                    messages: vec![Message::user("added")],
                },
            ),
            event(4, started(&second, "too long")),
        ]);
        assert_eq!(texts(&live), ["first", "added", "too long"]);
        // The failure arrives in a later batch, as the driver flushes it.
        live.extend_transcript(&[event(
            5,
            EventBody::RunFailed {
                run_id: second,
                code: "model_error".into(),
                error: "too long".into(),
            },
        )]);
        assert_eq!(texts(&live), ["first", "added"]);
        live.extend_transcript(&[event(6, started(&third, "short"))]);
        assert_eq!(texts(&live), ["first", "added", "short"]);
    }
}
