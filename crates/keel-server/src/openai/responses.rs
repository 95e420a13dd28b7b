//! `/v1/responses`: OpenAI's stateful Responses API over keel sessions. A response is a keel
//! run; its input and output are the session's log, so `previous_response_id` continues the
//! same session (whichever provider served the last turn), a conversation is a session, and
//! the native API sees the same state. `background` runs go through keel's queue like any
//! run; `store: false` runs in a throwaway session deleted once answered.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_core::{
    AgentDef, AgentId, Event, EventBody, FinishReason, Limits, RunOptions, RunStatus, SessionId,
    TenantId, ToolDef, ToolKind, Usage,
};
use keel_engine::{BusyPolicy, EngineError};
use keel_models::{ResponseFormat, ToolChoice};
use keel_store::RunRecord;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::error::{ModelFailure, failure_error, openai_error};
use super::fields::{self, FieldError};
use super::items::{self, list_page};
use super::response_events;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;

/// The agent that sessions started through this API pin. Each response names its own model
/// and tools, so the agent only supplies limits (and a model for native-API turns).
pub const RESPONSES_AGENT: &str = "openai-responses";

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
    /// Function tools (`{"type": "function", "name", "description", "parameters"}`), which
    /// the caller performs.
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
    /// Refused: keel has no server-side compaction (`truncation: "auto"` instead).
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
    /// Accepted; a session already sticks to its route target.
    pub prompt_cache_key: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub prompt_cache_options: Option<Value>,
    pub prompt_cache_retention: Option<String>,
    /// Refused when set (values checked).
    #[schema(value_type = Option<Object>)]
    pub reasoning: Option<Value>,
    pub safety_identifier: Option<String>,
    /// `auto` or `default` only.
    pub service_tier: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub stream_options: Option<Value>,
    pub top_logprobs: Option<u32>,
    pub user: Option<String>,
}

fn refuse(param: &str, message: impl Into<String>) -> FieldError {
    FieldError::invalid(param, message)
}

/// `null` read as the field's default (`false`), as OpenAI reads it.
fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

/// Creates a model response (OpenAI-compatible, stateful).
#[utoipa::path(post, path = "/v1/responses", tag = "openai",
    request_body = CreateResponse,
    responses((status = 200, body = Object, description = "a `response` object; with `stream` an SSE stream of Responses events"),
        (status = 400, body = super::wire::OpenAiErrorEnvelope), (status = 401, body = super::wire::OpenAiErrorEnvelope),
        (status = 404, body = super::wire::OpenAiErrorEnvelope, description = "unknown model, previous response or conversation"),
        (status = 409, body = super::wire::OpenAiErrorEnvelope, description = "the conversation has a response in progress")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateResponse>,
) -> Response {
    match start(&state, &caller.tenant, body).await {
        Ok(started) => answer(state, caller.tenant, started).await,
        Err(Failure::Param(refused)) => openai_error(refused.into(), None),
        Err(Failure::Api(error, param)) => openai_error(error, param.as_deref()),
    }
}

enum Failure {
    Param(FieldError),
    Api(ApiError, Option<String>),
}

impl From<ApiError> for Failure {
    fn from(e: ApiError) -> Self {
        Failure::Api(e, None)
    }
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        Failure::Api(e.into(), None)
    }
}

impl From<FieldError> for Failure {
    fn from(r: FieldError) -> Self {
        Failure::Param(r)
    }
}

/// A queued response and how to answer for it.
struct Started {
    run: RunRecord,
    updates: tokio::sync::broadcast::Receiver<keel_engine::RunUpdate>,
    stream: bool,
    background: bool,
    /// The session to delete once answered (`store: false`).
    discard: Option<SessionId>,
}

async fn start(
    state: &AppState,
    tenant: &TenantId,
    body: CreateResponse,
) -> Result<Started, Failure> {
    let engine = &state.engine;
    let Some(model) = body.model.clone().filter(|m| !m.is_empty()) else {
        return Err(refuse(
            "model",
            "model is required: a route name or `provider/model` (GET /v1/models lists them)",
        )
        .into());
    };
    let (client, served_model) =
        super::chat::resolve(state, &model).map_err(|e| Failure::Api(e, Some("model".into())))?;
    fields::check_response(&body)?;
    let truncation = fields::truncation(body.truncation.as_deref())?;
    if let (Some(max), Some(info)) = (
        body.max_output_tokens,
        engine
            .models()
            .catalog()
            .get(client.provider(), &served_model),
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
    let options = RunOptions {
        model: Some(model.clone()),
        instructions: (!instructions.is_empty()).then(|| instructions.join("\n\n")),
        tools: function_tools(&body.tools)?,
        temperature: body.temperature,
        top_p: body.top_p,
        max_output_tokens: body.max_output_tokens,
        truncation,
        tool_choice: tool_choice(body.tool_choice.as_ref())?,
        response_format: response_format(body.text.as_ref())?,
        context: messages,
        annotations: annotations(&body, store, conversation.as_deref()),
    };

    // Where the response goes: a conversation, the session of the previous response (or a
    // branch of it), or a new session.
    let (session, policy, fork_from) = if let Some(conv) = &conversation {
        let not_found = || {
            let message = format!("Conversation with id '{conv}' not found.");
            let error = ApiError::new(StatusCode::NOT_FOUND, "conversation_not_found", message);
            Failure::Api(error, Some("conversation".into()))
        };
        let session = items::parse_conversation_id(conv).ok_or_else(not_found)?;
        let store = engine.store();
        if store
            .get_session(tenant, &session)
            .await
            .map_err(ApiError::from)?
            .is_none()
        {
            return Err(not_found());
        }
        (session, BusyPolicy::Enqueue, None)
    } else if let Some(previous) = &body.previous_response_id {
        let (session, upto) = previous_point(state, tenant, previous).await?;
        (session, BusyPolicy::Reject, Some(upto))
    } else {
        let agent = responses_agent(state, tenant, &model).await?;
        let record = engine
            .create_session(tenant, &agent.name, Map::new())
            .await?;
        (record.id, BusyPolicy::Enqueue, None)
    };
    let mut session = session;
    let mut discard = None;
    if !store {
        if let Some(upto) = fork_from {
            // The stored conversation stays as it was: answer in a throwaway branch.
            session = engine
                .fork_session(tenant, &session, upto.seq, Map::new())
                .await?
                .id;
        }
        discard = Some(session.clone());
    } else if let Some(upto) = fork_from
        && !upto.is_last
    {
        // The previous response is not its session's last: branch at it.
        session = engine
            .fork_session(tenant, &session, upto.seq, Map::new())
            .await?
            .id;
    }
    let mut updates = engine.subscribe(&session);
    let submitted = engine
        .submit_with(tenant, &session, last.clone(), options.clone(), policy)
        .await;
    let run = match (submitted, fork_from) {
        (Ok(run), _) => run,
        // Another response was chained onto the same one meanwhile: branch instead.
        (Err(EngineError::Busy { .. }), Some(upto)) => {
            let branch = engine
                .fork_session(tenant, &session, upto.seq, Map::new())
                .await?
                .id;
            updates = engine.subscribe(&branch);
            engine
                .submit_with(tenant, &branch, last, options, BusyPolicy::Enqueue)
                .await
                .map_err(input_failure)?
        }
        (Err(e), _) => return Err(input_failure(e)),
    };
    Ok(Started {
        run,
        updates,
        stream: body.stream,
        background: body.background,
        discard,
    })
}

/// Engine refusals of an input (unanswered tool calls) are about `input`.
fn input_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Invalid(message) => Failure::Param(FieldError::invalid("input", message)),
        other => other.into(),
    }
}

/// Where a previous response left its session.
#[derive(Clone, Copy)]
struct Point {
    /// The seq of the event that ended the response's run.
    seq: u64,
    /// Whether nothing was logged after it.
    is_last: bool,
}

async fn previous_point(
    state: &AppState,
    tenant: &TenantId,
    previous: &str,
) -> Result<(SessionId, Point), Failure> {
    let not_found = || {
        Failure::Api(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "previous_response_not_found",
                format!("Previous response with id '{previous}' not found."),
            ),
            Some("previous_response_id".into()),
        )
    };
    let run_id = items::parse_response_id(previous).ok_or_else(not_found)?;
    let run = match state.engine.get_run(tenant, &run_id).await {
        Ok(run) => run,
        Err(EngineError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if !run.status.is_terminal() {
        return Err(refuse("previous_response_id", format!("response {previous} is still {}: wait for it to finish (or cancel it) before continuing from it", status_name(run.status, false))).into());
    }
    let events = state.engine.run_events(&run).await?;
    let Some(end) = events.last().filter(|e| is_run_end(&e.body)) else {
        return Err(not_found());
    };
    let (record, _) = state.engine.session_state(tenant, &run.session).await?;
    Ok((
        run.session,
        Point {
            seq: end.seq,
            is_last: record.last_seq == end.seq,
        },
    ))
}

fn is_run_end(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::RunCompleted { .. }
            | EventBody::RunFailed { .. }
            | EventBody::RunCancelled { .. }
    )
}

/// The output cap older keels gave the agent below (every response without
/// `max_output_tokens` was cut there).
const LEGACY_OUTPUT_CAP: u32 = 4096;

/// The tenant's agent for sessions this API starts, created on first use.
pub async fn responses_agent(
    state: &AppState,
    tenant: &TenantId,
    model: &str,
) -> Result<AgentDef, ApiError> {
    let store = state.engine.store();
    if let Some(agent) = store.get_agent(tenant, RESPONSES_AGENT, None).await? {
        if agent.limits.max_output_tokens == Some(LEGACY_OUTPUT_CAP) {
            // Written by a keel that capped every response; OpenAI sends no cap. Sessions
            // started from here on pin the new version.
            let mut uncapped = agent;
            uncapped.limits.max_output_tokens = None;
            return Ok(state.engine.put_agent(tenant, uncapped).await?);
        }
        return Ok(agent);
    }
    let agent = AgentDef {
        id: AgentId::generate(
            keel_engine::clock::now().millis().max(0) as u64,
            rand::random(),
        ),
        name: RESPONSES_AGENT.into(),
        version: 0,
        instructions: String::new(),
        model: model.into(),
        tools: Vec::new(),
        // No output cap: a response asks for one with `max_output_tokens`.
        limits: Limits::default(),
    };
    Ok(state.engine.put_agent(tenant, agent).await?)
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
            Ok(ToolDef {
                name: name.into(),
                description: tool.get("description").and_then(Value::as_str).unwrap_or("").into(),
                parameters: tool
                    .get("parameters")
                    .filter(|p| p.is_object())
                    .cloned()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
                kind: ToolKind::Client,
            })
        })
        .collect()
}

/// `tool_choice` (`"auto"`, `"none"`, `"required"` or `{"type": "function", "name": …}`) in
/// the stored form of keel's `ToolChoice`.
fn tool_choice(choice: Option<&Value>) -> Result<Option<Value>, FieldError> {
    let choice = match choice {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) if s == "auto" => ToolChoice::Auto,
        Some(Value::String(s)) if s == "none" => ToolChoice::None,
        Some(Value::String(s)) if s == "required" => ToolChoice::Required,
        Some(Value::Object(o))
            if o.get("type").and_then(Value::as_str) == Some("function")
                && o.get("name").and_then(Value::as_str).is_some() =>
        {
            ToolChoice::Tool {
                name: o["name"].as_str().unwrap_or_default().into(),
            }
        }
        Some(Value::Object(o))
            if o.get("type")
                .and_then(Value::as_str)
                .is_some_and(fields::hosted_tool_choice) =>
        {
            return Err(FieldError::unsupported(
                "tool_choice",
                format!(
                    "keel does not support tool_choice of type {}: it runs no hosted tools here; send \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"name\": …}}",
                    o["type"]
                ),
            ));
        }
        Some(other) => {
            return Err(refuse(
                "tool_choice",
                format!(
                    "tool_choice {other} is not valid: send \"auto\", \"none\", \"required\" or {{\"type\": \"function\", \"name\": …}}"
                ),
            ));
        }
    };
    Ok(Some(serde_json::to_value(choice).expect("serializes")))
}

/// `text.format` in the stored form of keel's `ResponseFormat`.
fn response_format(text: Option<&Value>) -> Result<Option<Value>, FieldError> {
    let Some(format) = text.and_then(|t| t.get("format")) else {
        return Ok(None);
    };
    let format = match format.get("type").and_then(Value::as_str) {
        Some("text") => return Ok(None),
        Some("json_object") => ResponseFormat::JsonObject,
        Some("json_schema") => {
            let Some(schema) = format.get("schema").filter(|s| s.is_object()) else {
                return Err(refuse(
                    "text.format.schema",
                    "a json_schema format needs a schema object",
                ));
            };
            ResponseFormat::JsonSchema {
                name: format
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("response")
                    .into(),
                description: format
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                schema: schema.clone(),
                strict: format
                    .get("strict")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            }
        }
        _ => {
            return Err(refuse(
                "text.format.type",
                "text.format.type must be text, json_object or json_schema",
            ));
        }
    };
    Ok(Some(serde_json::to_value(format).expect("serializes")))
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

async fn answer(state: Arc<AppState>, tenant: TenantId, started: Started) -> Response {
    if started.background {
        return Json(response_object(&started.run, &[])).into_response();
    }
    if started.stream {
        return response_events::response_events(
            state,
            tenant,
            started.run,
            started.updates,
            started.discard,
        )
        .into_response();
    }
    let finished = tokio::time::timeout(
        state.config.wait_timeout,
        state.engine.wait_run(&tenant, &started.run.id),
    )
    .await;
    let run = match finished {
        Ok(Ok(run)) => run,
        Ok(Err(e)) => return openai_error(e.into(), None),
        // Still running: the client may poll for it.
        Err(_) => started.run,
    };
    let events = match state.engine.run_events(&run).await {
        Ok(events) => events,
        Err(e) => return openai_error(e.into(), None),
    };
    if let Some(session) = started.discard {
        discard(&state, &tenant, &session).await;
    }
    // As OpenAI answers a request it could not serve: the error's status, not a 200 holding a
    // failed response (which stays retrievable by its id).
    if run.status == RunStatus::Failed {
        let failure = events.iter().rev().find_map(|e| match &e.body {
            EventBody::RunFailed { code, error, .. } => Some((code.clone(), error.clone())),
            _ => None,
        });
        let model_failure = events
            .iter()
            .rev()
            .find(|e| matches!(e.body, EventBody::ModelFailed { .. }));
        if let Some(error) = failed_with(&run, failure.as_ref(), model_failure) {
            return openai_error(error, None);
        }
    }
    Json(response_object(&run, &events)).into_response()
}

/// Deletes a `store: false` response's session once it is answered.
pub(super) async fn discard(state: &AppState, tenant: &TenantId, session: &SessionId) {
    if let Err(e) = state.engine.delete_session(tenant, session).await {
        tracing::warn!(%session, error = %e, "an unstored response's session could not be deleted");
    }
}

/// The `response` object for a run and the events it logged so far.
pub fn response_object(run: &RunRecord, events: &[Event]) -> Value {
    let a = &run.options.annotations;
    let note = |key: &str| a.get(key).cloned().unwrap_or(Value::Null);
    let client: Vec<&str> = run.options.client_tools().collect();
    let keep_call = |name: &str| client.contains(&name);
    let mut output = Vec::new();
    let mut usage = Usage::default();
    let mut last_finish = None;
    let mut failure = None;
    let mut model_failure = None;
    let mut served = None;
    for event in events {
        match &event.body {
            EventBody::ModelReplied {
                usage: u,
                finish,
                model,
                ..
            } => {
                usage.add(u);
                last_finish = Some(*finish);
                served = Some(model.clone());
                output.extend(
                    items::event_items(&run.session, event, &keep_call)
                        .into_iter()
                        .map(|(_, item)| item),
                );
            }
            EventBody::ModelFailed { .. } => model_failure = Some(event),
            EventBody::RunFailed { code, error, .. } => {
                failure = Some((code.clone(), error.clone()))
            }
            _ => {}
        }
    }
    let incomplete =
        run.status == RunStatus::Completed && last_finish == Some(FinishReason::Length);
    let error = match failed_with(run, failure.as_ref(), model_failure) {
        Some(error) => json!({"code": error.code, "message": error.message}),
        None => Value::Null,
    };
    json!({
        "id": items::response_id(&run.id),
        "object": "response",
        "created_at": run.created_at.millis() / 1000,
        "status": status_name(run.status, incomplete),
        "background": note("background"),
        "error": error,
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": note("instructions"),
        "max_output_tokens": run.options.max_output_tokens,
        "metadata": a.get("metadata").cloned().unwrap_or(json!({})),
        // The model asked for, or (for a native run) the one that served it.
        "model": run.options.model.clone().or(served),
        "output": output,
        "parallel_tool_calls": a.get("parallel_tool_calls").cloned().unwrap_or(json!(true)),
        "previous_response_id": note("previous_response_id"),
        "conversation": note("conversation").as_str().map(|id| json!({"id": id})),
        "reasoning": {"effort": null, "summary": null},
        "store": a.get("store").cloned().unwrap_or(json!(true)),
        "temperature": run.options.temperature.unwrap_or(1.0),
        "top_p": run.options.top_p.unwrap_or(1.0),
        "text": a.get("text").cloned().unwrap_or(json!({"format": {"type": "text"}})),
        "tool_choice": a.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": a.get("tools").cloned().unwrap_or(json!([])),
        "truncation": run.options.truncation.as_str(),
        "usage": usage_object(&usage),
        "user": null,
    })
}

/// Why a failed run failed, as the API reports it: a model failure by what the provider said
/// (its status and code, kept in the `model_failed` event), anything else as keel's own.
fn failed_with(
    run: &RunRecord,
    failure: Option<&(String, String)>,
    model_failure: Option<&Event>,
) -> Option<ApiError> {
    if run.status != RunStatus::Failed {
        return None;
    }
    match (failure, model_failure.map(|e| &e.body)) {
        (
            Some((code, _)),
            Some(EventBody::ModelFailed {
                error,
                kind,
                status,
                code: provider_code,
                retry_after_ms,
                ..
            }),
        ) if code == "model_error" => {
            let kind = kind.as_deref().and_then(keel_models::ModelErrorKind::parse);
            let (provider, message) = match (kind, error.split_once(": ")) {
                // Events written before kinds were kept hold only the text.
                (Some(_), Some((provider, rest))) => {
                    (provider, detail(rest, provider_code.as_deref()))
                }
                _ => ("keel", error.as_str()),
            };
            let failure = ModelFailure {
                kind,
                provider,
                status: *status,
                code: provider_code.as_deref(),
                message,
                retry_after: retry_after_ms.map(std::time::Duration::from_millis),
            };
            Some(failure_error(&failure, "input"))
        }
        (Some((code, message)), _) => Some(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("{message} ({code})"),
        )),
        (None, _) => Some(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            run.error.clone().unwrap_or_default(),
        )),
    }
}

/// The provider's words in a stored failure text (`HTTP 400: … (code)` → `…`), as
/// `ModelError`'s `Display` wrote it.
fn detail<'a>(text: &'a str, code: Option<&str>) -> &'a str {
    let text = match text.strip_prefix("HTTP ") {
        Some(rest) => rest.split_once(": ").map_or(text, |(_, words)| words),
        None => text,
    };
    match code {
        Some(code) => text.strip_suffix(&format!(" ({code})")).unwrap_or(text),
        None => text,
    }
}

pub fn usage_object(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total(),
    })
}

pub fn status_name(status: RunStatus, incomplete: bool) -> &'static str {
    match status {
        RunStatus::Queued => "queued",
        RunStatus::Running => "in_progress",
        RunStatus::Completed if incomplete => "incomplete",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}

/// The run a response id names, or OpenAI's 404.
async fn find(state: &AppState, tenant: &TenantId, id: &str) -> Result<RunRecord, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "response_not_found",
            format!("Response with id '{id}' not found."),
        )
    };
    let run_id = items::parse_response_id(id).ok_or_else(not_found)?;
    match state.engine.get_run(tenant, &run_id).await {
        // Runs started through the native API are responses too: one state, two APIs.
        Ok(run) => Ok(run),
        Err(EngineError::NotFound { .. }) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

/// Retrieves a response.
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai",
    params(("id" = String, Path, description = "a response id (`resp_…`)")),
    responses((status = 200, body = Object, description = "the `response` object"),
        (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = find(&state, &caller.tenant, &id).await?;
    let events = state.engine.run_events(&run).await?;
    Ok(Json(response_object(&run, &events)))
}

/// Deletes a response (its record; the session's log keeps what happened).
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "openai",
    params(("id" = String, Path, description = "a response id (`resp_…`)")),
    responses((status = 200, body = Object, description = "`{\"id\", \"object\": \"response.deleted\", \"deleted\": true}`"),
        (status = 404, body = super::wire::OpenAiErrorEnvelope),
        (status = 409, body = super::wire::OpenAiErrorEnvelope, description = "the response is still in progress")))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = find(&state, &caller.tenant, &id).await?;
    if !run.status.is_terminal() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "response_in_progress",
            format!(
                "response {id} is still {}: cancel it first",
                status_name(run.status, false)
            ),
        ));
    }
    state
        .engine
        .store()
        .delete_run(&caller.tenant, &run.id)
        .await?;
    Ok(Json(
        json!({"id": id, "object": "response.deleted", "deleted": true}),
    ))
}

/// Cancels a response in progress (it stops at its next step boundary).
#[utoipa::path(post, path = "/v1/responses/{id}/cancel", tag = "openai",
    params(("id" = String, Path, description = "a response id (`resp_…`)")),
    responses((status = 200, body = Object, description = "the `response` object"),
        (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let run = find(&state, &caller.tenant, &id).await?;
    state.engine.cancel_run(&caller.tenant, &run.id).await?;
    // A run stops at its next step boundary, or at once while streaming here: give it a moment
    // so the answer usually says `cancelled`.
    let run = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        state.engine.wait_run(&caller.tenant, &run.id),
    )
    .await
    .unwrap_or(Ok(run))?;
    let events = state.engine.run_events(&run).await?;
    Ok(Json(response_object(&run, &events)))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub order: Option<String>,
    pub after: Option<String>,
}

/// The input items of a response.
#[utoipa::path(get, path = "/v1/responses/{id}/input_items", tag = "openai",
    params(("id" = String, Path, description = "a response id (`resp_…`)"),
        ("limit" = Option<usize>, Query, description = "1 to 100 (default 20)"),
        ("order" = Option<String>, Query, description = "`desc` (default) or `asc`"),
        ("after" = Option<String>, Query, description = "an item id: list after it")),
    responses((status = 200, body = Object, description = "a list of input items"),
        (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn input_items(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let run = find(&state, &caller.tenant, &id).await?;
    let events = state.engine.run_events(&run).await?;
    // The run's input items: the messages added with it, then its input.
    let Some(start) = events.first() else {
        return Ok(Json(list_page(Vec::new(), false)));
    };
    let mut logged: Vec<Event> = Vec::new();
    if !run.options.context.is_empty() && start.seq > 1 {
        logged.extend(
            state
                .engine
                .store()
                .read_events_before(&run.session, start.seq, 1)
                .await?
                .into_iter()
                .filter(|e| matches!(e.body, EventBody::MessagesAdded { .. })),
        );
    }
    logged.push(start.clone());
    let all = |_: &str| true;
    let items: Vec<(items::ItemPos, Value)> = logged
        .iter()
        .flat_map(|e| items::event_items(&run.session, e, &all))
        .collect();
    Ok(Json(page(items, &run.session, &query)?))
}

/// One page of items by OpenAI's list parameters (`order` defaults to `desc`).
pub fn page(
    mut items: Vec<(items::ItemPos, Value)>,
    session: &SessionId,
    query: &ListQuery,
) -> Result<Value, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_limit",
            "limit must be between 1 and 100",
        ));
    }
    let descending = match query.order.as_deref() {
        None | Some("desc") => true,
        Some("asc") => false,
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_order",
                format!("order {other:?} must be asc or desc"),
            ));
        }
    };
    if descending {
        items.reverse();
    }
    if let Some(after) = &query.after {
        let pos = items::parse_item_id(session, after).ok_or_else(|| {
            ApiError::invalid(
                "invalid_after",
                format!("after {after:?} is not an item of this list"),
            )
        })?;
        items.retain(|(p, _)| if descending { *p < pos } else { *p > pos });
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(list_page(
        items.into_iter().map(|(_, item)| item).collect(),
        has_more,
    ))
}
