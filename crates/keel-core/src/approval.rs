//! Human approval: a tool call that needs a person (a tool with `require_approval`, or the
//! built-in `ask_human`) makes its run wait. The wait and each decision are events, so a
//! waiting run survives restarts for as long as it takes, and every decision names its call
//! by id (parallel pending calls never get mixed up).

use serde::{Deserialize, Serialize};

/// The built-in tool through which a model asks a person a question; the answer is its result.
pub const ASK_HUMAN: &str = "ask_human";

/// Where a call that needs a person stands (`PendingToolCall::approval`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Approval {
    /// Needed, not asked for yet (`ApprovalRequested` is not logged).
    Required,
    /// Asked for: the run waits for a decision.
    Requested,
    /// A person decided.
    Decided { decision: Decision },
}

/// A person's decision on one waiting call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Decision {
    /// Perform the call, with these arguments instead of the model's when set.
    Approve {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        arguments: Option<serde_json::Value>,
    },
    /// Do not perform it; the model gets the reason as the call's error result.
    Reject {
        #[serde(default)]
        reason: String,
    },
    /// The answer to an `ask_human` question: the call's result.
    Answer { answer: String },
}

/// One call the run waits on, as `ApprovalRequested` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    pub call_id: String,
    pub name: String,
    pub arguments: serde_json::Value,
}

impl Decision {
    /// The result the model sees for a call decided without being performed, if any:
    /// `(content, is_error)`. An approval has none (the call is performed).
    pub fn result(&self) -> Option<(String, bool)> {
        match self {
            Decision::Approve { .. } => None,
            Decision::Reject { reason } if reason.is_empty() => {
                Some(("a person rejected this call".into(), true))
            }
            Decision::Reject { reason } => {
                Some((format!("a person rejected this call: {reason}"), true))
            }
            Decision::Answer { answer } => Some((answer.clone(), false)),
        }
    }
}
