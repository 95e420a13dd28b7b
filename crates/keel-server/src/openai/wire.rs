//! The bodies of OpenAI's Chat Completions and Models APIs, as far as keel serves them: what
//! clients send and what they get back. A request names every field OpenAI's has (an unknown
//! one is refused); what keel does with each is `super::fields::CHAT_COMPLETIONS`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::fields::Sent;

/// `POST /v1/chat/completions`. The fields keel reads only to refuse are `Sent` (nothing of
/// them is kept, so a valid body costs no allocation for them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatRequest {
    /// A route name from keel.toml, or `provider/model`.
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ChatTool>,
    /// `"auto"` (default), `"none"`, `"required"`, or
    /// `{"type": "function", "function": {"name": …}}` to force one tool.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// `{"type": "text"}`, `{"type": "json_object"}` or
    /// `{"type": "json_schema", "json_schema": {"name", "schema", "strict", "description"}}`;
    /// passed to the target, which refuses (400) a format it cannot honour.
    #[schema(value_type = Option<Object>)]
    pub response_format: Option<Value>,
    /// Keeps calls with the same key on the same route target (for provider prompt caches);
    /// forwarded to OpenAI-wire targets.
    pub prompt_cache_key: Option<String>,
    /// An end-user id; used like `prompt_cache_key` when that is absent; forwarded.
    pub user: Option<String>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<u32>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    #[schema(value_type = Option<Object>)]
    pub stop: Option<Stop>,
    pub seed: Option<u64>,
    /// Only 1 is supported.
    pub n: Option<u32>,
    /// Used like `prompt_cache_key` when that is absent (before `user`); forwarded.
    pub safety_identifier: Option<String>,
    /// `true` (the default) only.
    pub parallel_tool_calls: Option<bool>,
    /// `false` only: keel does not store chat completions.
    pub store: Option<bool>,
    /// `auto` or `default` only.
    pub service_tier: Option<String>,
    /// `["text"]` only.
    pub modalities: Option<Vec<String>>,
    pub reasoning_effort: Option<String>,
    pub verbosity: Option<String>,
    pub prompt_cache_retention: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub audio: Sent,
    #[serde(default)]
    #[schema(value_type = Option<f32>)]
    pub frequency_penalty: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub function_call: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub functions: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub logit_bias: Sent,
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub logprobs: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub moderation: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub prediction: Sent,
    #[serde(default)]
    #[schema(value_type = Option<f32>)]
    pub presence_penalty: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub prompt_cache_options: Sent,
    #[serde(default)]
    #[schema(value_type = Option<u32>)]
    pub top_logprobs: Sent,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub web_search_options: Sent,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
    /// `false` only: keel adds no obfuscation field.
    pub include_obfuscation: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "snake_case")]
pub enum ChatMessage {
    System {
        content: Content,
    },
    Developer {
        content: Content,
    },
    User {
        content: Content,
    },
    Assistant {
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        content: Content,
        tool_call_id: String,
    },
}

/// A message's content: a string or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
}

#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    pub url: String,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".into()
}

#[derive(Debug, Deserialize, Serialize)]
pub struct FunctionCall {
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct ChatTool {
    #[serde(rename = "type")]
    pub kind: String,
    /// Present for `function` tools, the only kind keel serves.
    #[serde(default)]
    pub function: Option<FunctionSpec>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub parameters: Option<Value>,
    /// Forwarded to targets that take it (OpenAI-wire ones).
    pub strict: Option<bool>,
}

/// A whole (non-streamed) completion.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub choices: Vec<Choice>,
    pub usage: ChatUsage,
}

#[derive(Serialize)]
pub struct Choice {
    pub index: u32,
    pub message: AssistantMessage,
    pub finish_reason: &'static str,
    pub logprobs: Option<()>,
}

#[derive(Serialize)]
pub struct AssistantMessage {
    pub role: &'static str,
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
}

#[derive(Clone, Copy, Serialize, ToSchema)]
pub struct ChatUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    pub prompt_tokens_details: CachedTokens,
}

#[derive(Clone, Copy, Serialize, ToSchema)]
pub struct CachedTokens {
    pub cached_tokens: u64,
}

impl From<keel_core::Usage> for ChatUsage {
    fn from(u: keel_core::Usage) -> Self {
        ChatUsage {
            prompt_tokens: u.input_tokens,
            completion_tokens: u.output_tokens,
            total_tokens: u.input_tokens + u.output_tokens,
            prompt_tokens_details: CachedTokens {
                cached_tokens: u.cached_input_tokens,
            },
        }
    }
}

/// `GET /v1/models`.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Vec<ModelEntry>,
}

#[derive(Serialize, ToSchema)]
pub struct ModelEntry {
    /// What to pass as `model`.
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    /// `keel` for a route, else the provider's name.
    pub owned_by: String,
}

/// OpenAI's error body.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorEnvelope {
    pub error: OpenAiErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub message: String,
    /// e.g. `invalid_request_error`, `authentication_error`, `not_found_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: String,
}
