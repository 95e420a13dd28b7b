//! Sessions: making, forking and showing them, their context and hash chain, and sending
//! a message to one.

use keel_core::{SessionState, Usage};
use keel_store::{ExportMark, SessionRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::JsonObject;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The agent's name; the session pins its latest version.
    pub agent: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
}

/// The body of `POST /v1/sessions/{id}/fork`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ForkSession {
    /// Copy the log up to and including this seq (it must end between runs); default: all.
    pub at_seq: Option<u64>,
    /// The new session's metadata (the source's is not copied).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
}

/// What the model received at a seq (`GET /v1/sessions/{id}/context`).
#[derive(Serialize, ToSchema)]
pub struct ContextView {
    pub session: String,
    pub at_seq: u64,
    /// The run in progress at that seq; `null` between runs.
    pub run_id: Option<String>,
    /// The configured provider (or route) and model that would serve it.
    pub served_by: String,
    /// The normalized model request: `model`, `system`, `messages`, `tools`, `params`.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

impl From<keel_engine::SessionContext> for ContextView {
    fn from(c: keel_engine::SessionContext) -> Self {
        ContextView {
            session: c.session.to_string(),
            at_seq: c.at_seq,
            run_id: c.run_id.map(|r| r.to_string()),
            served_by: c.served_by,
            request: serde_json::to_value(&c.request).unwrap_or_default(),
        }
    }
}

/// What walking a session's hash chain found (`GET /v1/sessions/{id}/verify`).
#[derive(Serialize, ToSchema)]
pub struct ChainView {
    pub session: String,
    /// How each event's hash record is made: `sha256` over the previous record, the seq, the
    /// time, the type and the body as stored (docs: the README's "Tamper-evident journal").
    pub algorithm: String,
    /// Events read.
    pub events: u64,
    /// Events at the start stored before keel hashed its journal (no record to check).
    pub unhashed: u64,
    pub intact: bool,
    /// The first event whose record does not match: where the stored log was changed.
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    /// The record of the last event that checked out (`sha256:…`): the chain's tip when
    /// intact. Kept elsewhere, it shows a later rewrite of the whole chain too.
    pub last_record: Option<String>,
}

impl From<keel_store::ChainReport> for ChainView {
    fn from(r: keel_store::ChainReport) -> Self {
        ChainView {
            session: r.session.to_string(),
            algorithm: r.algorithm.to_string(),
            events: r.events,
            unhashed: r.unhashed,
            intact: r.intact,
            first_bad_seq: r.first_bad_seq,
            problem: r.problem,
            last_record: r.last_record,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub agent: String,
    pub agent_version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
    pub last_seq: u64,
    /// The first user message, shortened; `null` before the first.
    pub title: Option<String>,
}

impl From<SessionRecord> for SessionView {
    fn from(s: SessionRecord) -> Self {
        SessionView {
            id: s.id.to_string(),
            agent: s.agent_name,
            agent_version: s.agent_version,
            created_at: s.created_at.to_string(),
            metadata: s.metadata,
            last_seq: s.last_seq,
            title: None,
        }
    }
}

#[derive(Serialize, ToSchema, Default, Clone, Copy)]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// A session's state, folded from its log.
#[derive(Serialize, ToSchema)]
pub struct SessionSummary {
    #[serde(flatten)]
    pub session: SessionView,
    /// `idle` or `running`.
    pub status: String,
    pub message_count: u64,
    pub runs_finished: u64,
    pub usage: UsageView,
    /// The run in progress, if any.
    pub active_run: Option<String>,
    /// When the session was moved out of this keel, and where to if the mover said; `null`
    /// for a session that is here. A moved session takes no new input here.
    pub moved: Option<MovedView>,
}

#[derive(Serialize, ToSchema)]
pub struct MovedView {
    /// RFC 3339, UTC.
    pub at: String,
    pub to: Option<String>,
}

impl From<ExportMark> for MovedView {
    fn from(mark: ExportMark) -> Self {
        MovedView {
            at: mark.at.to_string(),
            to: mark.to,
        }
    }
}

impl SessionSummary {
    pub fn new(record: SessionRecord, state: SessionState) -> Self {
        let status = match state.active {
            Some(_) => "running",
            None => "idle",
        };
        let mut session = SessionView::from(record);
        session.last_seq = state.last_seq;
        SessionSummary {
            session,
            status: status.into(),
            message_count: state.message_count,
            runs_finished: state.runs_finished,
            usage: state.usage.into(),
            active_run: state.active.map(|r| r.run_id.to_string()),
            moved: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub data: Vec<SessionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Answer with the finished run.
    #[default]
    Wait,
    /// Answer with a server-sent event stream of the run.
    Stream,
    /// Answer 202 with the queued run at once.
    Background,
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum OnBusy {
    /// Run after the session's pending runs.
    #[default]
    Enqueue,
    /// Answer 409 when the session has a pending run.
    Reject,
    /// Cancel the pending runs (the active one at its next step boundary), then run this.
    Interrupt,
}

impl From<OnBusy> for keel_engine::BusyPolicy {
    fn from(b: OnBusy) -> Self {
        match b {
            OnBusy::Enqueue => keel_engine::BusyPolicy::Enqueue,
            OnBusy::Reject => keel_engine::BusyPolicy::Reject,
            OnBusy::Interrupt => keel_engine::BusyPolicy::Interrupt,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The user's text.
    pub content: String,
    #[serde(default)]
    pub mode: SendMode,
    #[serde(default)]
    pub on_busy: OnBusy,
}
