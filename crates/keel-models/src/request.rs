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
    /// A routing hint, not a sampling parameter: calls with the same key (the engine passes the
    /// session id) stay on the route target that served the last one while it is healthy, so
    /// provider-side prompt caches keep hitting. Providers ignore it.
    #[serde(default)]
    pub affinity: Option<String>,
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
    ToolCallDelta {
        index: usize,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    Usage(Usage),
    Finish(FinishReason),
    /// Sent by a router when an attempt failed after streaming part of its reply and the call
    /// goes on with another attempt (`target`, as `provider/model`): discard everything this
    /// call streamed so far. The abandoned output is never part of the reply.
    Restart {
        target: String,
    },
    /// Sent last by a router: which target served the call and how.
    Served(Served),
    /// The call waited this long for capacity (a local model's decode slot) before it started.
    Queued {
        waited: std::time::Duration,
    },
}

/// Which route target served a call, after how many attempts and how long.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Served {
    pub route: String,
    /// Position of the target in the route's list.
    pub target: usize,
    pub provider: String,
    pub model: String,
    /// Attempts made in all (1 when the first one succeeded).
    pub attempts: u32,
    /// From the start of the call to its first event.
    pub first_event: std::time::Duration,
    /// From the start of the call to its end, retries and backoff included.
    pub latency: std::time::Duration,
}
