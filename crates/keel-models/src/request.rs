//! The normalized request and stream event types.

use keel_core::{FinishReason, Message, Usage};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Params {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    #[serde(default)]
    pub stop: Vec<String>,
    pub seed: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRequest {
    /// The provider's model name (without the `provider/` prefix).
    pub model: String,
    /// System instructions, kept apart because providers place them differently.
    pub system: Option<String>,
    pub messages: Vec<Message>,
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub params: Params,
}

/// One piece of a streamed reply.
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    TextDelta(String),
    /// A piece of tool call number `index`: `id` and `name` arrive once, `arguments` in pieces
    /// of JSON text that concatenate to the whole arguments object.
    ToolCallDelta { index: usize, id: Option<String>, name: Option<String>, arguments: String },
    Usage(Usage),
    Finish(FinishReason),
}
