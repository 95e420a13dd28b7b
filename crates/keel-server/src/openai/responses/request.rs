//! A `POST /v1/responses` body as OpenAI sends it, and its reading into what keel runs: the
//! model, the `RunOptions`, the input message, and where the response goes (conversation,
//! previous response, storage). Every field is checked here; nothing reaches the engine unread.

use keel_core::{CallerIds, Message, RunOptions, ToolDef, ToolKind};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::Failure;
use crate::openai::controls::{self, Endpoint::Responses};
use crate::openai::fields::{self, FieldError};
use crate::openai::items;
use crate::state::AppState;

/// `POST /v1/responses`: every field OpenAI's request has (an unknown one is refused); what
/// keel does with each is `super::fields::RESPONSES`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateResponse {
    /// A route name or `provider/model`.
    pub model: Option<String>,
    /// A string, or a list of `message`, `function_call` and `function_call_output` items.
    #[schema(value_type = Object)]
    pub input: Option<Value>,
    /// System instructions for this response only (not carried to the next one).
    pub instructions: Option<String>,
    /// Continue from this response (its session, or a branch of it).
    pub previous_response_id: Option<String>,
    /// A conversation id (`conv_…`), or `{"id": …}`: the response joins it.
    #[schema(value_type = Option<Object>)]
    pub conversation: Option<Value>,
    /// Keep the response and its session (default true).
    pub store: Option<bool>,
    #[serde(default, deserialize_with = "null_as_false")]
    pub stream: bool,
    /// Queue the response and answer at once; poll `GET /v1/responses/{id}`.
    #[serde(default, deserialize_with = "null_as_false")]
    pub background: bool,
    /// Function tools (`{"type": "function", "name", "description", "parameters", "strict"}`),
    /// which the caller performs.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<Value>,
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub max_output_tokens: Option<u32>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", …}}`.
    #[schema(value_type = Option<Object>)]
    pub text: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// `true` (the default) only.
    pub parallel_tool_calls: Option<bool>,
    /// `auto` drops the oldest turns to fit the model's context window; `disabled` (default).
    pub truncation: Option<String>,
    /// `[{"type": "compaction", "compact_threshold": N}]`: compacts the context past N tokens.
    #[schema(value_type = Option<Vec<Object>>)]
    pub context_management: Option<Value>,
    /// Refused when not empty (values checked).
    #[schema(value_type = Option<Vec<String>>)]
    pub include: Option<Value>,
    /// Nothing to cap: keel runs no hosted tools here.
    pub max_tool_calls: Option<u32>,
    #[schema(value_type = Option<Object>)]
    pub moderation: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub prompt: Option<Value>,
    /// Forwarded to OpenAI-wire targets (a session already sticks to its route target).
    pub prompt_cache_key: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub prompt_cache_options: Option<Value>,
    pub prompt_cache_retention: Option<String>,
    /// Refused when set (values checked).
    #[schema(value_type = Option<Object>)]
    pub reasoning: Option<Value>,
    /// Forwarded to OpenAI-wire targets, as `user` and each function tool's `strict`.
    pub safety_identifier: Option<String>,
    /// `auto` or `default` only.
    pub service_tier: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<Value>,
    pub top_logprobs: Option<u32>,
    pub user: Option<String>,
}

pub(super) fn refuse(param: &str, message: impl Into<String>) -> FieldError {
    FieldError::invalid(param, message)
}

/// `null` read as the field's default (`false`), as OpenAI reads it.
fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// A request read: what to run, and where.
pub(super) struct Request {
    pub options: RunOptions,
    /// The input's last message: the turn itself (the ones before it go in `options.context`).
    pub input: Message,
    pub store: bool,
    /// The conversation id (`conv_…`) the response joins.
    pub conversation: Option<String>,
    pub previous_response_id: Option<String>,
    pub stream: bool,
    pub background: bool,
}

/// Reads and checks a request (the model must resolve to a route).
pub(super) fn parse(state: &AppState, body: CreateResponse) -> Result<Request, Failure> {
    let engine = &state.engine;
    let Some(model) = body.model.clone().filter(|m| !m.is_empty()) else {
        return Err(refuse(
            "model",
            "model is required: a route name or `provider/model` (GET /v1/models lists them)",
        )
        .into());
    };
    let resolved = crate::openai::chat::resolve(state, &model)
        .map_err(|e| Failure::Api(e, Some("model".into())))?;
    fields::check_response(&body)?;
    let truncation = fields::truncation(body.truncation.as_deref())?;
    let compact_threshold = fields::compact_threshold(body.context_management.as_ref())?;
    if let (Some(max), Some(info)) = (
        body.max_output_tokens,
        engine
            .models()
            .catalog()
            .get(&resolved.provider, &resolved.model),
    ) && max > info.max_output_tokens
    {
        return Err(refuse(
            "max_output_tokens",
            format!(
                "max_output_tokens is {max}, but {model} writes at most {} tokens (keel's model catalog): send less, or leave it out for the model's own limit",
                info.max_output_tokens
            ),
        )
        .into());
    }
    let store = body.store.unwrap_or(true);
    if body.background && !store {
        return Err(refuse(
            "background",
            "background responses must be stored: drop `store: false`",
        )
        .into());
    }
    let conversation = match &body.conversation {
        None => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(o)) => o.get("id").and_then(Value::as_str).map(str::to_string),
        Some(_) => None,
    };
    if body.conversation.is_some() && conversation.is_none() {
        return Err(refuse(
            "conversation",
            "conversation must be a conversation id or {\"id\": …}",
        )
        .into());
    }
    if conversation.is_some() && body.previous_response_id.is_some() {
        return Err(refuse("previous_response_id", "previous_response_id cannot be combined with conversation: a conversation already carries its history").into());
    }
    if conversation.is_some() && !store {
        return Err(refuse(
            "store",
            "a response in a conversation is stored in it: drop `store: false`",
        )
        .into());
    }
    let input = body.input.as_ref().ok_or_else(|| {
        refuse(
            "input",
            "input is required: a string or a list of input items",
        )
    })?;
    let parsed = items::parse_input(input, "input").map_err(FieldError::from)?;
    let mut messages = parsed.messages;
    let Some(last) = messages.pop() else {
        return Err(refuse("input", "input holds no user, assistant or tool message").into());
    };
    let mut instructions: Vec<String> = body.instructions.iter().cloned().collect();
    instructions.extend(parsed.instructions);
    let tools = function_tools(&body.tools)?;
    let offered: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let tool_choice = controls::tool_choice(body.tool_choice.as_ref(), &offered, Responses)?;
    let format = body.text.as_ref().and_then(|text| text.get("format"));
    let response_format = controls::response_format(format, Responses)?;
    let options = RunOptions {
        model: Some(model.clone()),
        instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
        tools,
        temperature: body.temperature,
        top_p: body.top_p,
        max_output_tokens: body.max_output_tokens,
        truncation,
        compact_threshold,
        tool_choice,
        response_format,
        caller_ids: CallerIds {
            user: body.user.clone(),
            safety_identifier: body.safety_identifier.clone(),
            prompt_cache_key: body.prompt_cache_key.clone(),
        },
        context: messages,
        annotations: annotations(&body, store, conversation.as_deref()),
    };
    Ok(Request {
        options,
        input: last,
        store,
        conversation,
        previous_response_id: body.previous_response_id,
        stream: body.stream,
        background: body.background,
    })
}

fn function_tools(tools: &[Value]) -> Result<Vec<ToolDef>, FieldError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            let kind = tool.get("type").and_then(Value::as_str).unwrap_or("");
            if kind != "function" {
                return Err(FieldError::unsupported(format!("tools[{i}].type"), format!("keel does not support tools of type {kind:?}: send function tools (the caller performs them)")));
            }
            let name = tool.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
            let Some(name) = name else {
                return Err(refuse(&format!("tools[{i}].name"), "a function tool needs a name"));
            };
            let strict = match tool.get("strict") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(strict)) => Some(*strict),
                Some(_) => return Err(refuse(&format!("tools[{i}].strict"), "strict must be a boolean")),
            };
            Ok(ToolDef {
                name: name.into(),
                description: tool.get("description").and_then(Value::as_str).unwrap_or("").into(),
                parameters: tool
                    .get("parameters")
                    .filter(|p| p.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                strict,
                require_approval: Default::default(),
                kind: ToolKind::Client,
            })
        })
        .collect()
}

/// What the response object echoes back later, kept with the run.
fn annotations(
    body: &CreateResponse,
    store: bool,
    conversation: Option<&str>,
) -> Map<String, Value> {
    let mut a = Map::new();
    a.insert("api".into(), json!("responses"));
    a.insert("store".into(), json!(store));
    a.insert("background".into(), json!(body.background));
    a.insert("instructions".into(), json!(body.instructions));
    a.insert(
        "previous_response_id".into(),
        json!(body.previous_response_id),
    );
    a.insert("conversation".into(), json!(conversation));
    a.insert(
        "metadata".into(),
        json!(body.metadata.clone().unwrap_or_default()),
    );
    a.insert("tools".into(), json!(body.tools));
    a.insert(
        "tool_choice".into(),
        body.tool_choice.clone().unwrap_or(json!("auto")),
    );
    a.insert(
        "text".into(),
        body.text
            .clone()
            .unwrap_or(json!({"format": {"type": "text"}})),
    );
    a.insert(
        "parallel_tool_calls".into(),
        json!(body.parallel_tool_calls.unwrap_or(true)),
    );
    a
}
