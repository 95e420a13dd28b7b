//! What the engine keeps in memory for a session it drives: the folded state and a bounded
//! window of the transcript. A hot session therefore costs no store read per turn, and a
//! cold one is loaded from the latest snapshot plus the events after it (O(tail)), with the
//! transcript window read from the end of the log (O(window)), never the whole history.
//!
//! A run that failed leaves its messages (its input, any replies and tool results) in the log
//! but not in the transcript sent to the model: the model never answered it, and sending it
//! again would fail the next turn the same way (an input too long for the context window).

use std::collections::VecDeque;

use keel_core::{Event, EventBody, Message, Part, Role, SessionId, SessionState};
use keel_store::{Store, StoreError};

pub struct LiveSession {
    pub state: SessionState,
    transcript: Transcript,
    /// Seq of the latest stored snapshot (0: none).
    pub snapshot_seq: u64,
    /// The session's memory blocks as rendered at the front of its context: rendered again
    /// only after a compaction (or a load), so an edit never changes the prompt's prefix;
    /// edits in between reach the model in order, as tool results and events in the history.
    pub blocks: Option<String>,
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
        let cap = transcript_cap(&state);
        // From the tail already read, back through the log until the events hold everything
        // after the last compaction (its summary included), or the log begins, or (a session
        // never compacted) a whole window of messages, so that the transcript is the one a
        // session kept in memory all along holds: the same context, the same prefix bytes for
        // the provider's cache. Each message sits among intent events: read two events per
        // message missing (a chat turn's share), more if that falls short.
        let mut recent = loaded.tail;
        let mut before = recent.first().map_or(state.last_seq + 1, |e| e.seq);
        let transcript = loop {
            let mut probe = Transcript::for_state(&state);
            probe.push(&recent);
            let read_enough = if state.compacted_through > 0 {
                before <= state.compacted_through + 1
            } else {
                probe.messages.len() >= cap
            };
            if before <= 1 || read_enough {
                break probe;
            }
            let missing = cap.saturating_sub(probe.messages.len()).max(8);
            let page = missing * 2 + 8;
            let mut older = store.read_events_before(session, before, page).await?;
            before = match older.first() {
                Some(first) if older.len() == page => first.seq,
                _ => 1,
            };
            older.append(&mut recent);
            recent = older;
        };
        let mut live = LiveSession {
            state,
            transcript,
            snapshot_seq,
            blocks: None,
        };
        live.transcript.trim(cap);
        Ok(live)
    }

    /// The session as it stood after `events`, a prefix of its log from seq 1: its state and
    /// the window a session loaded at that point holds (time travel; O(prefix)).
    pub fn from_log(session: &SessionId, events: &[Event]) -> Result<LiveSession, LoadError> {
        let state =
            SessionState::default()
                .fold(events)
                .map_err(|source| LoadError::Inconsistent {
                    session: session.clone(),
                    source,
                })?;
        let mut transcript = Transcript::for_state(&state);
        transcript.push(events);
        transcript.trim(transcript_cap(&state));
        Ok(LiveSession {
            state,
            transcript,
            snapshot_seq: 0,
            blocks: None,
        })
    }

    /// Adds the messages of newly logged events to the window and trims it; a failed run's
    /// messages leave it.
    pub fn extend_transcript(&mut self, events: &[Event]) {
        self.transcript.push(events);
        self.transcript.trim(transcript_cap(&self.state));
        if events
            .iter()
            .any(|e| matches!(e.body, EventBody::ContextCompacted { .. }))
        {
            self.blocks = None;
        }
    }

    /// The messages sent to the model after the front (the summary), oldest first.
    pub fn messages(&self) -> &VecDeque<Message> {
        &self.transcript.messages
    }

    /// The messages with the seq of the event each came from.
    pub fn messages_with_seqs(&self) -> impl Iterator<Item = (u64, &Message)> {
        self.transcript
            .seqs
            .iter()
            .copied()
            .zip(&self.transcript.messages)
    }

    /// What goes before the messages: the memory blocks and the summary.
    pub(crate) fn front(&self) -> crate::request::Front<'_> {
        crate::request::Front {
            blocks: self.blocks.as_deref(),
            summary: self.summary(),
        }
    }

    /// What stands in for the transcript before the last compaction, if one happened.
    pub fn summary(&self) -> Option<&Summary> {
        self.transcript.summary.as_ref()
    }

    /// An estimate of the bytes this state holds, for the warm cache's bound: the structures
    /// and the text they own (JSON length stands in for a tool call's arguments and the state).
    pub fn approx_bytes(&self) -> usize {
        size_of::<Self>()
            + json_len(&self.state)
            + self.messages().iter().map(message_bytes).sum::<usize>()
    }
}

/// The window of the transcript kept for the model.
#[derive(Default)]
pub struct Transcript {
    /// The most bytes of a tool result sent (`limits.tool_result_context_bytes`; 0: no limit).
    result_limit: usize,
    messages: VecDeque<Message>,
    /// The seq of the event each message came from.
    seqs: VecDeque<u64>,
    /// How many messages at the end the run in progress added (dropped if it fails).
    run_tail: usize,
    summary: Option<Summary>,
}

/// A tool result longer than `limit` bytes as the model sees it: its start and a note saying
/// where the whole of it is. Fixed from the moment it is logged, so every later request holds
/// the same bytes (the prompt's prefix), and the result is stored once, in its event.
pub(crate) fn result_preview(content: &str, seq: u64, limit: usize) -> String {
    let mut end = limit.min(content.len());
    while !content.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[… the result goes on: {end} of its {} bytes are shown. The whole result is event {seq} \
         of this session; `tool_result_read` with {{\"seq\": {seq}, \"offset\": {end}}} reads \
         on from here.]",
        &content[..end],
        content.len()
    )
}

/// The front of a compacted context: the summary of the transcript through `through_seq`, or
/// (`text: None`) a marker that it was left out because summarising failed.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub through_seq: u64,
    pub text: Option<String>,
}

impl Transcript {
    fn for_state(state: &SessionState) -> Transcript {
        Transcript {
            result_limit: state
                .agent
                .as_ref()
                .map_or(0, |a| a.limits.tool_result_context_bytes as usize),
            ..Transcript::default()
        }
    }

    /// Adds the messages of logged events; a failed run's messages leave.
    fn push(&mut self, events: &[Event]) {
        for event in events {
            match &event.body {
                EventBody::RunStarted { .. } => self.run_tail = 0,
                EventBody::RunFailed { .. } => {
                    let keep = self.messages.len().saturating_sub(self.run_tail);
                    self.messages.truncate(keep);
                    self.seqs.truncate(keep);
                    self.run_tail = 0;
                    continue;
                }
                EventBody::ContextCompacted {
                    through_seq,
                    summary,
                    ..
                } => {
                    let covered = self.seqs.iter().take_while(|s| **s <= *through_seq).count();
                    self.messages.drain(..covered);
                    self.seqs.drain(..covered);
                    // What the summary took from the run in progress cannot leave it again.
                    self.run_tail = self.run_tail.min(self.messages.len());
                    self.summary = Some(Summary {
                        through_seq: *through_seq,
                        text: summary.clone(),
                    });
                    continue;
                }
                EventBody::RunCompleted { .. } | EventBody::RunCancelled { .. } => {
                    self.run_tail = 0;
                    continue;
                }
                _ => {}
            }
            let mut messages = event.body.messages();
            if self.result_limit > 0 {
                for part in messages.iter_mut().flat_map(|m| m.parts.iter_mut()) {
                    if let Part::ToolResult { content, .. } = part
                        && content.len() > self.result_limit
                    {
                        *content = result_preview(content, event.seq, self.result_limit);
                    }
                }
            }
            if event.body.run_id().is_some() {
                self.run_tail += messages.len();
            } else {
                self.run_tail = 0;
            }
            self.seqs
                .extend(std::iter::repeat_n(event.seq, messages.len()));
            self.messages.extend(messages);
        }
    }

    /// Keeps at most `cap` messages, opening at a user message where there is one. Compaction
    /// keeps the context well under the cap; this only bounds what a session that is never
    /// compacted (messages added without runs) holds in memory.
    fn trim(&mut self, cap: usize) {
        if self.messages.len() <= cap {
            return;
        }
        let mut drop = self.messages.len() - cap;
        // The window must not open with a tool result (or the reply that asked for it) cut from
        // its context: start at a user message when the window has one.
        if let Some(first_user) = self
            .messages
            .iter()
            .skip(drop)
            .position(|m| m.role == Role::User)
        {
            drop += first_user;
        } else {
            while self
                .messages
                .get(drop)
                .is_some_and(|m| m.role == Role::Tool)
            {
                drop += 1;
            }
        }
        self.messages.drain(..drop);
        self.seqs.drain(..drop);
        self.run_tail = self.run_tail.min(self.messages.len());
    }
}

fn message_bytes(message: &Message) -> usize {
    let owned: usize = message
        .parts
        .iter()
        .map(|part| match part {
            Part::Text { text } => text.len(),
            Part::Image { url } => url.len(),
            Part::ToolCall {
                id,
                name,
                arguments,
            } => id.len() + name.len() + json_len(arguments),
            Part::ToolResult {
                call_id, content, ..
            } => call_id.len() + content.len(),
        })
        .sum();
    size_of::<Message>() + message.parts.capacity() * size_of::<Part>() + owned
}

/// The length of `value` as JSON, counted without building it.
fn json_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The most messages a session's transcript holds in memory: twice the context's message
/// limit, past which compaction starts.
fn transcript_cap(state: &SessionState) -> usize {
    2 * state
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
        live.messages().iter().map(Message::text_content).collect()
    }

    #[test]
    fn a_failed_runs_messages_leave_the_transcript_and_others_stay() {
        let mut live = LiveSession {
            state: SessionState::default(),
            transcript: Transcript::default(),
            snapshot_seq: 0,
            blocks: None,
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
