//! Agent definitions: what a session runs. A definition is immutable once stored; editing an
//! agent stores a new version, and a session pins the version it started with (the whole
//! definition is copied into its first event, so the log alone can replay it).

use serde::{Deserialize, Serialize};

use crate::id::AgentId;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDef {
    pub id: AgentId,
    /// Unique per tenant; what `keel chat --agent NAME` refers to.
    pub name: String,
    pub version: u32,
    #[serde(default)]
    pub instructions: String,
    /// A route name or `provider/model` (e.g. `openai/gpt-4o-mini`, `scripted/echo`).
    pub model: String,
    #[serde(default)]
    pub tools: Vec<ToolDef>,
    #[serde(default)]
    pub limits: Limits,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// JSON Schema of the arguments.
    #[serde(default = "empty_object_schema")]
    pub parameters: serde_json::Value,
    #[serde(flatten)]
    pub kind: ToolKind,
}

fn empty_object_schema() -> serde_json::Value {
    serde_json::json!({"type": "object", "properties": {}})
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolKind {
    /// Implemented inside keel (`clock_now`, `scratchpad_set`, `scratchpad_get`).
    Builtin,
    /// An HTTP endpoint: keel POSTs the arguments as JSON with an `Idempotency-Key` header
    /// and takes the response body as the result.
    Http { url: String },
    /// Performed by the caller, not by keel: the run ends with the call pending and the
    /// caller's next input carries its result (OpenAI's function tools).
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Model calls per run before the run fails with `max_steps`.
    pub max_steps: u32,
    /// Attempts per model call (the first included) before the run fails.
    pub max_model_attempts: u32,
    /// Output tokens per model call.
    pub max_output_tokens: u32,
    /// The most recent messages sent to the model; older ones stay in the log.
    pub context_messages: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_steps: 16,
            max_model_attempts: 3,
            max_output_tokens: 1024,
            context_messages: 64,
        }
    }
}
