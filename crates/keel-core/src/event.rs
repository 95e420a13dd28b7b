//! The event log's records. A session's truth is its ordered list of events, numbered by
//! `seq` from 1 with no gaps. Events are immutable; new kinds may be added in later versions,
//! and an older keel that meets one refuses to guess (`EventDecodeError::UnknownType`).

use serde::{Deserialize, Serialize};

use crate::agent::AgentDef;
use crate::approval::{ApprovalRequest, Decision};
use crate::id::{RunId, TenantId};
use crate::message::{Message, Part, Role, Usage};
use crate::run::RunOptions;
use crate::time::Timestamp;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at: Timestamp,
    #[serde(flatten)]
    pub body: EventBody,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Cancelled,
    Error,
}

/// What happened. Intents (`ModelCalled`, `ToolCalled`) are logged before the side effect,
/// results after it; recovery replays from the log and never repeats a logged result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventBody {
    /// Always seq 1: who owns the session and the agent definition it pins.
    SessionStarted {
        tenant: TenantId,
        agent: AgentDef,
        #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
        metadata: serde_json::Map<String, serde_json::Value>,
    },
    /// The session moves to another version of its agent (between runs).
    AgentUpgraded {
        agent: AgentDef,
    },
    /// A run takes its input; the input becomes part of the transcript. `options` override
    /// the agent for this run (logged so a replay drives the run as it was asked for).
    RunStarted {
        run_id: RunId,
        input: Message,
        #[serde(default, skip_serializing_if = "RunOptions::is_default")]
        options: Box<RunOptions>,
    },
    /// Messages added to the transcript outside a model call (conversation items, or a run's
    /// earlier input items); only between runs.
    MessagesAdded {
        messages: Vec<Message>,
    },
    /// Intent: step `step` asks the model (attempt counts retries of the same step).
    ModelCalled {
        run_id: RunId,
        step: u32,
        attempt: u32,
    },
    /// Result of the model call of `step`.
    ModelReplied {
        run_id: RunId,
        step: u32,
        message: Message,
        usage: Usage,
        finish: FinishReason,
        /// `provider/model` that served it, the provider as configured (`[providers.NAME]`), so
        /// two providers of one kind are told apart (logs written before `provider_kind` existed
        /// name the kind here).
        #[serde(default)]
        model: String,
        /// The serving provider's kind (`openai`, `anthropic`, `local`, …); absent in older logs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_kind: Option<String>,
        #[serde(default)]
        latency_ms: u64,
        /// Time spent waiting for model capacity (a local decode slot) within `latency_ms`.
        #[serde(default, skip_serializing_if = "is_zero")]
        queue_ms: u64,
        /// The route and target index that served it, when a route did (`route#index`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        target: Option<String>,
        /// Attempts the call took (retries and failovers included).
        #[serde(default = "one")]
        attempts: u32,
        /// The step's price in US dollars from the model catalog, when the model is listed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost_usd: Option<f64>,
    },
    /// The model call of `step` failed; `retryable` says whether another attempt may help.
    /// `kind` is keel's class of the failure (`keel_models::ModelErrorKind` by name:
    /// `context_overflow`, `rate_limited`, …); `status` and `code` are what the provider
    /// answered, when it did. Events logged by older versions have none of the three.
    ModelFailed {
        run_id: RunId,
        step: u32,
        attempt: u32,
        error: String,
        retryable: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// The wait the provider asked for (`Retry-After`), in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
    },
    /// Intent: perform tool call `call_id`. External tools receive `idempotency_key`.
    ToolCalled {
        run_id: RunId,
        call_id: String,
        name: String,
        arguments: serde_json::Value,
        idempotency_key: String,
    },
    /// Result of tool call `call_id`.
    ToolReturned {
        run_id: RunId,
        call_id: String,
        content: String,
        #[serde(default)]
        is_error: bool,
    },
    /// The run waits for a person to decide on these calls (`require_approval`, `ask_human`);
    /// its queue entry is `waiting` and holds no lease until a decision resumes it.
    ApprovalRequested {
        run_id: RunId,
        calls: Vec<ApprovalRequest>,
    },
    /// A person's decision on waiting call `call_id`; `by` names who (an API key's prefix).
    ApprovalDecided {
        run_id: RunId,
        call_id: String,
        decision: Decision,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Intent: the run's context passed its budget, so the transcript up to `through_seq` is
    /// to be summarised (`ContextCompacted` is the result). Logged before the summarising call,
    /// so a crash in between performs it again for the same range.
    CompactionStarted {
        run_id: RunId,
        through_seq: u64,
    },
    /// Result of a compaction: what the model is sent from now on starts with `summary` in place
    /// of the transcript through `through_seq` (a running summary: it covers the earlier
    /// summary too; `from_seq` is the first event it newly covers). The events themselves stay
    /// in the log. `summary: None` is the fallback when summarising failed (`error` says why):
    /// the range is left out of the context, and a marker says so.
    ContextCompacted {
        run_id: RunId,
        from_seq: u64,
        through_seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// `provider/model` that wrote the summary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        model: Option<String>,
        #[serde(default)]
        usage: Usage,
    },
    RunCompleted {
        run_id: RunId,
        output: String,
        usage: Usage,
    },
    RunFailed {
        run_id: RunId,
        code: String,
        error: String,
    },
    RunCancelled {
        run_id: RunId,
        reason: String,
    },
    /// A memory block (`agent::BlockDef`) was edited: by the agent's tool call in run `run_id`
    /// (logged with the call's result), or through the API between runs (`run_id: None`).
    /// `shared` says whether it is the tenant's shared block or this session's own; `before`
    /// is what it held (its declared value before a first edit).
    MemoryBlockEdited {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_id: Option<RunId>,
        label: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        shared: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        after: String,
        /// `agent` or `api`.
        by: String,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn one() -> u32 {
    1
}

/// The `type` names this version knows, for telling "newer keel" apart from "corrupt".
pub const EVENT_TYPES: &[&str] = &[
    "session_started",
    "agent_upgraded",
    "run_started",
    "messages_added",
    "model_called",
    "model_replied",
    "model_failed",
    "tool_called",
    "tool_returned",
    "approval_requested",
    "approval_decided",
    "compaction_started",
    "context_compacted",
    "run_completed",
    "run_failed",
    "run_cancelled",
    "memory_block_edited",
];

#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error(
        "event type {type_name:?} is not known to this keel version ({version}); it was written by a newer keel: upgrade keel to read this session"
    )]
    UnknownType {
        type_name: String,
        version: &'static str,
    },
    #[error("malformed event: {0}")]
    Malformed(String),
}

impl EventBody {
    /// Decodes the stored JSON form of an event body.
    pub fn decode(json: &str) -> Result<EventBody, EventDecodeError> {
        match serde_json::from_str::<EventBody>(json) {
            Ok(body) => Ok(body),
            Err(e) => {
                #[derive(Deserialize)]
                struct Tag {
                    #[serde(rename = "type")]
                    type_name: String,
                }
                match serde_json::from_str::<Tag>(json) {
                    Ok(Tag { type_name }) if !EVENT_TYPES.contains(&type_name.as_str()) => {
                        Err(EventDecodeError::UnknownType {
                            type_name,
                            version: env!("CARGO_PKG_VERSION"),
                        })
                    }
                    _ => Err(EventDecodeError::Malformed(e.to_string())),
                }
            }
        }
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("event bodies always serialize")
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            EventBody::SessionStarted { .. } => "session_started",
            EventBody::AgentUpgraded { .. } => "agent_upgraded",
            EventBody::RunStarted { .. } => "run_started",
            EventBody::MessagesAdded { .. } => "messages_added",
            EventBody::ModelCalled { .. } => "model_called",
            EventBody::ModelReplied { .. } => "model_replied",
            EventBody::ModelFailed { .. } => "model_failed",
            EventBody::ToolCalled { .. } => "tool_called",
            EventBody::ToolReturned { .. } => "tool_returned",
            EventBody::ApprovalRequested { .. } => "approval_requested",
            EventBody::ApprovalDecided { .. } => "approval_decided",
            EventBody::CompactionStarted { .. } => "compaction_started",
            EventBody::ContextCompacted { .. } => "context_compacted",
            EventBody::RunCompleted { .. } => "run_completed",
            EventBody::RunFailed { .. } => "run_failed",
            EventBody::RunCancelled { .. } => "run_cancelled",
            EventBody::MemoryBlockEdited { .. } => "memory_block_edited",
        }
    }

    /// The run this event belongs to, if any.
    pub fn run_id(&self) -> Option<&RunId> {
        match self {
            EventBody::SessionStarted { .. }
            | EventBody::AgentUpgraded { .. }
            | EventBody::MessagesAdded { .. } => None,
            EventBody::RunStarted { run_id, .. }
            | EventBody::ModelCalled { run_id, .. }
            | EventBody::ModelReplied { run_id, .. }
            | EventBody::ModelFailed { run_id, .. }
            | EventBody::ToolCalled { run_id, .. }
            | EventBody::ToolReturned { run_id, .. }
            | EventBody::ApprovalRequested { run_id, .. }
            | EventBody::ApprovalDecided { run_id, .. }
            | EventBody::CompactionStarted { run_id, .. }
            | EventBody::ContextCompacted { run_id, .. }
            | EventBody::RunCompleted { run_id, .. }
            | EventBody::RunFailed { run_id, .. }
            | EventBody::RunCancelled { run_id, .. } => Some(run_id),
            EventBody::MemoryBlockEdited { run_id, .. } => run_id.as_ref(),
        }
    }

    /// The transcript messages this event contributes, oldest first: the user's input, the
    /// model's reply, a tool's result, or added messages.
    pub fn messages(&self) -> Vec<Message> {
        match self {
            EventBody::RunStarted { input, .. } => vec![input.clone()],
            EventBody::MessagesAdded { messages } => messages.clone(),
            EventBody::ModelReplied { message, .. } => vec![message.clone()],
            EventBody::ToolReturned {
                call_id,
                content,
                is_error,
                ..
            } => vec![Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: call_id.clone(),
                    content: content.clone(),
                    is_error: *is_error,
                }],
            }],
            // The agent's own edit is told by its tool's result; an edit through the API is
            // news to the model, told in order as a note.
            EventBody::MemoryBlockEdited {
                run_id: None,
                label,
                after,
                ..
            } => vec![Message {
                role: Role::User,
                parts: vec![Part::Text {
                    text: format!("[memory block {label:?} was edited; it now reads: {after}]"),
                }],
            }],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_event_type_is_told_apart_from_malformed() {
        let newer = EventBody::decode(r#"{"type":"memory_recalled","run_id":"x"}"#).unwrap_err();
        assert!(
            matches!(newer, EventDecodeError::UnknownType { ref type_name, .. } if type_name == "memory_recalled")
        );
        assert!(newer.to_string().contains("newer keel"));
        let broken = EventBody::decode(r#"{"type":"run_started"}"#).unwrap_err();
        assert!(matches!(broken, EventDecodeError::Malformed(_)));
        assert!(matches!(
            EventBody::decode("{not json"),
            Err(EventDecodeError::Malformed(_))
        ));
    }

    #[test]
    fn a_model_failure_keeps_what_the_provider_said_and_older_ones_still_read() {
        let old = r#"{"type":"model_failed","run_id":"run_01JZZZZZZZZZZZZZZZZZZZZZZZ","step":1,"attempt":1,"error":"openai: HTTP 500: down","retryable":true}"#;
        let EventBody::ModelFailed {
            kind, status, code, ..
        } = EventBody::decode(old).unwrap()
        else {
            panic!("not a model failure");
        };
        assert_eq!((kind, status, code), (None, None, None));
        let new = EventBody::ModelFailed {
            run_id: RunId::generate(1, 1),
            step: 1,
            attempt: 2,
            error: "openai: HTTP 400: too long (context_length_exceeded)".into(),
            retryable: false,
            kind: Some("context_overflow".into()),
            status: Some(400),
            code: Some("context_length_exceeded".into()),
            retry_after_ms: None,
        };
        let json = new.encode();
        assert!(json.contains(r#""status":400"#), "{json}");
        assert!(!json.contains("retry_after_ms"), "{json}");
        assert_eq!(EventBody::decode(&json).unwrap(), new);
    }

    #[test]
    fn a_reply_names_its_provider_and_kind_and_older_ones_still_read() {
        let old = r#"{"type":"model_replied","run_id":"run_01JZZZZZZZZZZZZZZZZZZZZZZZ","step":1,"message":{"role":"assistant","parts":[]},"usage":{"input_tokens":1,"output_tokens":1},"finish":"stop","model":"openai/gpt-4o-mini","latency_ms":3}"#;
        let EventBody::ModelReplied {
            model,
            provider_kind,
            ..
        } = EventBody::decode(old).unwrap()
        else {
            panic!("not a model reply");
        };
        assert_eq!(
            (model.as_str(), provider_kind),
            ("openai/gpt-4o-mini", None)
        );
        let mut new = EventBody::decode(old).unwrap();
        if let EventBody::ModelReplied {
            model,
            provider_kind,
            ..
        } = &mut new
        {
            *model = "upa/mock-model".into();
            *provider_kind = Some("openai".into());
        }
        let json = new.encode();
        assert!(json.contains(r#""provider_kind":"openai""#), "{json}");
        assert_eq!(EventBody::decode(&json).unwrap(), new);
    }

    #[test]
    fn every_known_type_name_is_listed() {
        let run_id = RunId::generate(1, 1);
        let body = EventBody::RunCancelled {
            run_id,
            reason: "x".into(),
        };
        assert!(EVENT_TYPES.contains(&body.type_name()));
        assert_eq!(EventBody::decode(&body.encode()).unwrap(), body);
    }
}
