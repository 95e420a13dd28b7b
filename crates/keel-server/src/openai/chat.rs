//! `POST /v1/chat/completions`: a stateless gateway. The request becomes keel's normalized
//! `ModelRequest`, is served by the route or provider that `model` names, and the reply goes
//! back as a `chat.completion` or as `chat.completion.chunk` server-sent events. No session.
//! Each call that reached its target is accounted to the caller's tenant and key
//! (`accounting`), with the usage it reported, streamed or not.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_core::{CallerIds, FinishReason, Message, Part, Role, Usage};
use keel_engine::Resolved;
use keel_models::{ModelReply, ModelRequest, Params, Served, ToolSpec};
use serde_json::{Value, json};

use super::chat_stream;
use super::controls::{self, Endpoint::ChatCompletions};
use super::error::{model_error, openai_error};
use super::fields::{self, FieldError};
use super::wire::*;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;

/// Creates a chat completion (OpenAI-compatible), streamed when `stream` is true.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatRequest,
    responses((status = 200, body = ChatCompletion, description = "a completion; with `stream` an SSE stream of `chat.completion.chunk` ending with `data: [DONE]`"),
        (status = 400, body = OpenAiErrorEnvelope), (status = 401, body = OpenAiErrorEnvelope),
        (status = 404, body = OpenAiErrorEnvelope, description = "unknown model"),
        (status = 502, body = OpenAiErrorEnvelope, description = "the upstream provider failed")))]
pub async fn completions(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<ChatRequest>,
) -> Response {
    let Resolved { client, model, .. } = match resolve(&state, &body.model) {
        Ok(found) => found,
        Err(e) => return openai_error(e, Some("model")),
    };
    // Scoped by tenant, so one tenant's keys never steer another's calls.
    let affinity = body
        .prompt_cache_key
        .as_deref()
        .or(body.safety_identifier.as_deref())
        .or(body.user.as_deref())
        .filter(|key| !key.is_empty())
        .map(|key| format!("{}:{key}", caller.tenant));
    let request = match model_request(&body, model, affinity) {
        Ok(request) => request,
        Err(refused) => return openai_error(refused.into(), None),
    };
    let meta = Meta {
        id: format!("chatcmpl-{}", keel_engine::clock::new_hex_id()),
        created: now_secs(),
        model: body.model.clone(),
    };
    let bill = Bill {
        state,
        caller,
        target: body.model,
    };
    if body.stream {
        let upstream = match client.stream(request).await {
            Ok(upstream) => upstream,
            Err(e) => return openai_error(model_error(&e, "messages"), None),
        };
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        let on_end =
            Box::new(move |served: Option<&Served>, usage: &Usage| bill.record(served, usage));
        chat_stream::respond(upstream, &meta, include_usage, on_end)
    } else {
        // A provider may fetch a plain call whole rather than as a stream (cheaper).
        match client.complete(request).await {
            Ok(reply) => complete(reply, meta, bill),
            Err(e) => openai_error(model_error(&e, "messages"), None),
        }
    }
}

/// Answers a whole reply as one `chat.completion`.
fn complete(reply: ModelReply, meta: Meta, bill: Bill) -> Response {
    bill.record(reply.served.as_ref(), &reply.usage);
    let completion = ChatCompletion {
        id: meta.id,
        object: "chat.completion",
        created: meta.created,
        model: meta.model,
        choices: vec![Choice {
            index: 0,
            message: assistant_message(&reply.message),
            finish_reason: finish_reason(reply.finish),
            logprobs: None,
        }],
        usage: reply.usage.into(),
    };
    (StatusCode::OK, axum::Json(completion)).into_response()
}

/// Whom a call is accounted to, and what it named (a route, or `provider/model`).
pub(super) struct Bill {
    state: Arc<AppState>,
    caller: Caller,
    target: String,
}

impl Bill {
    pub(super) fn new(state: Arc<AppState>, caller: Caller, target: String) -> Self {
        Bill {
            state,
            caller,
            target,
        }
    }

    /// Counts the call against the caller's tenant and key, under the `provider/model` that
    /// served it (a router says which; a direct call is its own target; a route that failed
    /// before saying is counted under its name), priced by the catalog.
    pub(super) fn record(&self, served: Option<&Served>, usage: &Usage) {
        let target = match served {
            Some(served) => Some((served.provider.as_str(), served.model.as_str())),
            None => self.target.split_once('/'),
        };
        let (label, cost) = match target {
            Some((provider, model)) => (
                format!("{provider}/{model}"),
                self.state
                    .engine
                    .models()
                    .catalog()
                    .cost(provider, model, usage),
            ),
            None => (self.target.clone(), None),
        };
        self.state.metrics.usage.record(
            &self.caller.tenant,
            self.caller.key_prefix.as_deref(),
            &label,
            usage,
            cost.unwrap_or(0.0),
            keel_engine::clock::now(),
        );
    }
}

/// The client for `model`: a route's name or `provider/model` with a configured provider.
/// Unlike agents, the gateway does not guess a provider for a bare name.
pub(super) fn resolve(state: &AppState, model: &str) -> Result<Resolved, ApiError> {
    let models = state.engine.models();
    let known = models.routes().contains_key(model)
        || model
            .split_once('/')
            .is_some_and(|(p, name)| !name.is_empty() && models.providers().contains_key(p));
    if !known {
        let mut routes: Vec<&str> = models.routes().keys().map(String::as_str).collect();
        let mut providers: Vec<&str> = models.providers().keys().map(String::as_str).collect();
        routes.sort();
        providers.sort();
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "the model {model:?} does not exist here: name a route ({}) or `provider/model` with a configured provider ({}); GET /v1/models lists them",
                list_or_none(&routes),
                list_or_none(&providers)
            ),
        ));
    }
    models
        .resolve(model)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "model_not_found", e.to_string()))
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none configured".into()
    } else {
        names.join(", ")
    }
}

/// Translates the body into keel's normalized request; on failure, the offending parameter and
/// what was wrong with it.
/// `affinity` keys the route target stickiness (the caller's `prompt_cache_key` or `user`).
/// Public only for the fuzz targets (`fuzz/`).
#[doc(hidden)]
pub fn model_request(
    body: &ChatRequest,
    model: String,
    affinity: Option<String>,
) -> Result<ModelRequest, FieldError> {
    fields::check_chat(body)?;
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, message) in body.messages.iter().enumerate() {
        match message {
            ChatMessage::System { content } | ChatMessage::Developer { content } => {
                system.push(text_of(content));
            }
            ChatMessage::User { content } => messages.push(Message {
                role: Role::User,
                parts: parts_of(content),
            }),
            ChatMessage::Assistant {
                content,
                tool_calls,
            } => {
                let mut parts = content.as_ref().map(parts_of).unwrap_or_default();
                for call in tool_calls {
                    let arguments = if call.function.arguments.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&call.function.arguments).map_err(|e| {
                            FieldError::invalid(format!("messages[{i}].tool_calls"), format!(
                                "messages[{i}].tool_calls[{:?}].function.arguments is not JSON text ({e}): send the arguments object serialized as a string",
                                call.id
                            ))
                        })?
                    };
                    parts.push(Part::ToolCall {
                        id: call.id.clone(),
                        name: call.function.name.clone(),
                        arguments,
                    });
                }
                messages.push(Message {
                    role: Role::Assistant,
                    parts,
                });
            }
            ChatMessage::Tool {
                content,
                tool_call_id,
            } => messages.push(Message {
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    call_id: tool_call_id.clone(),
                    content: text_of(content),
                    is_error: false,
                }],
            }),
        }
    }
    if messages.is_empty() {
        return Err(FieldError::invalid(
            "messages",
            "messages has no user, assistant or tool message: send at least one",
        ));
    }
    let mut tools = Vec::new();
    for (i, tool) in body.tools.iter().enumerate() {
        let function = match &tool.function {
            Some(function) if tool.kind == "function" => function,
            None if tool.kind == "function" => {
                return Err(FieldError::invalid(
                    format!("tools[{i}].function"),
                    "a function tool needs `function` ({\"name\", \"parameters\", …})",
                ));
            }
            _ => {
                return Err(FieldError::unsupported(
                    format!("tools[{i}].type"),
                    format!(
                        "keel does not support tools of type {:?}: send \"function\" tools",
                        tool.kind
                    ),
                ));
            }
        };
        tools.push(ToolSpec {
            name: function.name.clone(),
            description: function.description.clone(),
            parameters: function
                .parameters
                .clone()
                .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            strict: function.strict,
        });
    }
    let offered: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    let tool_choice = controls::tool_choice(body.tool_choice.as_ref(), &offered, ChatCompletions)?;
    let response_format =
        controls::response_format(body.response_format.as_ref(), ChatCompletions)?;
    let stop = match &body.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    Ok(ModelRequest {
        model,
        system: (!system.is_empty()).then(|| system.join("\n\n")),
        messages,
        tools,
        params: Params {
            max_tokens: body.max_completion_tokens.or(body.max_tokens),
            temperature: body.temperature,
            top_p: body.top_p,
            stop,
            seed: body.seed,
            affinity,
            tool_choice,
            response_format,
            caller_ids: CallerIds {
                user: body.user.clone(),
                safety_identifier: body.safety_identifier.clone(),
                prompt_cache_key: body.prompt_cache_key.clone(),
            },
        },
    })
}

fn text_of(content: &Content) -> String {
    match content {
        Content::Text(text) => text.clone(),
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.as_str()),
                ContentPart::ImageUrl { .. } => None,
            })
            .collect::<Vec<_>>()
            .join(""),
    }
}

fn parts_of(content: &Content) -> Vec<Part> {
    match content {
        Content::Text(text) if text.is_empty() => Vec::new(),
        Content::Text(text) => vec![Part::Text { text: text.clone() }],
        Content::Parts(parts) => parts
            .iter()
            .map(|p| match p {
                ContentPart::Text { text } => Part::Text { text: text.clone() },
                ContentPart::ImageUrl { image_url } => Part::Image {
                    url: image_url.url.clone(),
                },
            })
            .collect(),
    }
}

fn assistant_message(message: &Message) -> AssistantMessage {
    let text = message.text_content();
    let tool_calls: Vec<ToolCall> = message
        .parts
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => Some(ToolCall {
                id: id.clone(),
                kind: "function".into(),
                function: FunctionCall {
                    name: name.clone(),
                    arguments: arguments_text(arguments),
                },
            }),
            _ => None,
        })
        .collect();
    AssistantMessage {
        role: "assistant",
        content: (!text.is_empty() || tool_calls.is_empty()).then_some(text),
        tool_calls,
    }
}

/// Arguments as JSON text; arguments the model got wrong were kept as a string, sent as is.
fn arguments_text(arguments: &Value) -> String {
    match arguments {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

pub(super) fn finish_reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Length => "length",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::Stop | FinishReason::Cancelled | FinishReason::Error => "stop",
    }
}

/// What every chunk of one completion repeats.
pub(super) struct Meta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

pub(super) fn now_secs() -> u64 {
    keel_engine::clock::unix_seconds()
}
