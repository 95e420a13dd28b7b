//! The normalized request and stream event types.

/// The model controls live in the core (a run logs them); providers name them from here.
pub use keel_core::{CallerIds, ResponseFormat, ToolChoice};
use keel_core::{FinishReason, Message, Usage};
use serde::{Deserialize, Serialize};

use crate::{ModelError, ModelErrorKind};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
    /// Whether the arguments must follow the schema exactly, for providers that take it
    /// (OpenAI's `strict`); `None` leaves it to the provider's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
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
    /// Whether the model may, must or must not call the offered tools; `None` leaves it to the
    /// provider's default (auto). A provider that cannot honour a choice refuses the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// The shape the reply's text must take; `None` is free text. A provider that cannot
    /// honour a format refuses the call rather than answer in another shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// The end user and prompt-cache ids the caller gave, sent by providers whose wire has
    /// such fields (OpenAI's); the others leave them out.
    #[serde(default, skip_serializing_if = "CallerIds::is_empty")]
    pub caller_ids: CallerIds,
}

#[cfg(test)]
impl ModelRequest {
    /// "hi" to `model`, offering one function `tool` (any object as arguments): the start of
    /// the providers' tests of how tool choice and structured output are encoded.
    pub(crate) fn hi_offering(model: &str, tool: &str) -> ModelRequest {
        ModelRequest {
            model: model.into(),
            system: None,
            messages: vec![Message::user("hi")],
            tools: vec![ToolSpec {
                name: tool.into(),
                description: String::new(),
                parameters: serde_json::json!({"type": "object"}),
                strict: None,
            }],
            params: Params::default(),
        }
    }
}

impl ModelRequest {
    /// The tool choice to send, checked against the offered tools: `None` when there is
    /// nothing to say (no choice, or auto/none with no tools offered). A choice that forces a
    /// call needs tools, and a named tool must be one of them (else a `BadRequest` from
    /// `provider`).
    pub fn tool_choice(&self, provider: &str) -> Result<Option<&ToolChoice>, ModelError> {
        let refuse =
            |message: String| ModelError::new(ModelErrorKind::BadRequest, provider, message);
        let Some(choice) = &self.params.tool_choice else {
            return Ok(None);
        };
        match choice {
            ToolChoice::Auto | ToolChoice::None if self.tools.is_empty() => Ok(None),
            ToolChoice::Required if self.tools.is_empty() => Err(refuse(
                "tool_choice \"required\" needs tools, but the request offers none".into(),
            )),
            ToolChoice::Tool { name } if !self.tools.iter().any(|t| &t.name == name) => {
                let offered: Vec<&str> = self.tools.iter().map(|t| t.name.as_str()).collect();
                Err(refuse(format!(
                    "tool_choice names the tool {name:?}, which the request does not offer (offered: {})",
                    if offered.is_empty() {
                        "none".to_string()
                    } else {
                        offered.join(", ")
                    }
                )))
            }
            _ => Ok(Some(choice)),
        }
    }

    /// The response format to send: `None` for free text (`Text` is the default everywhere).
    pub fn response_format(&self) -> Option<&ResponseFormat> {
        self.params
            .response_format
            .as_ref()
            .filter(|f| **f != ResponseFormat::Text)
    }
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
    /// The provider as configured (`[providers.NAME]`).
    pub provider: String,
    /// That provider's kind (`ModelClient::provider`: `openai`, `anthropic`, …).
    pub provider_kind: String,
    pub model: String,
    /// Attempts made in all (1 when the first one succeeded).
    pub attempts: u32,
    /// From the start of the call to its first event.
    pub first_event: std::time::Duration,
    /// From the start of the call to its end, retries and backoff included.
    pub latency: std::time::Duration,
}
