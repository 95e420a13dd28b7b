//! `/v1/responses`: OpenAI's stateful Responses API over keel sessions. A response is a keel
//! run; its input and output are the session's log, so `previous_response_id` continues the
//! same session (whichever provider served the last turn), a conversation is a session, and
//! the native API sees the same state. `background` runs go through keel's queue like any
//! run; `store: false` runs in a throwaway session deleted once answered.

mod agent;
mod object;
mod request;
mod start;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_core::{Event, EventBody, RunStatus, SessionId, TenantId};
use keel_engine::EngineError;
use keel_store::RunRecord;
use serde_json::{Value, json};

pub use agent::{RESPONSES_AGENT, responses_agent};
pub use object::{response_object, status_name, usage_object};
pub use request::CreateResponse;

use super::error::openai_error;
use super::fields::FieldError;
use super::items::{self, list_page};
use super::pagination::{ListQuery, page};
use super::response_events;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::AppState;
use object::failed_with;
use start::Started;

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
    let started = match request::parse(&state, body) {
        Ok(request) => start::start(&state, &caller.tenant, request).await,
        Err(failure) => Err(failure),
    };
    match started {
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

async fn answer(state: Arc<AppState>, tenant: TenantId, started: Started) -> Response {
    if started.background {
        return Json(response_object(&started.run, &[])).into_response();
    }
    if started.stream {
        return response_events::response_events(
            state,
            tenant,
            started.run,
            started.follower,
            started.discard,
        )
        .into_response();
    }
    // Finished, or still running past the wait limit (the client may poll for it); 503 when
    // it cannot start.
    let run = match crate::progress::wait(&state, &tenant, &started.run.id).await {
        Ok(run) => run,
        Err(e) => return openai_error(e, None),
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
    state.engine.discard(tenant, session).await;
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

/// `POST /v1/responses/compact`'s body.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompactRequest {
    /// The model that writes the summary: a route name or `provider/model`.
    pub model: Option<String>,
    /// A string or input items (as `/v1/responses` takes them) to compact, after the previous
    /// response's conversation when one is named.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    pub previous_response_id: Option<String>,
    /// Kept out of the summary (instructions are not conversation); accepted as OpenAI does.
    pub instructions: Option<String>,
}

/// Compacts a conversation into one `compaction` item, writing nothing: the output lists the
/// input's user messages, then the item, which a later `/v1/responses` call takes as input in
/// place of what it summarises. The summary is readable text any provider continues from.
#[utoipa::path(post, path = "/v1/responses/compact", tag = "openai",
    request_body = CompactRequest,
    responses((status = 200, body = Object, description = "a `response.compaction` object"),
        (status = 400, body = super::wire::OpenAiErrorEnvelope),
        (status = 404, body = super::wire::OpenAiErrorEnvelope, description = "unknown model or previous response"),
        (status = 502, body = super::wire::OpenAiErrorEnvelope, description = "the model failed to summarise")))]
pub async fn compact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CompactRequest>,
) -> Response {
    match compacted(&state, &caller.tenant, body).await {
        Ok(object) => Json(object).into_response(),
        Err(Failure::Param(refused)) => openai_error(refused.into(), None),
        Err(Failure::Api(error, param)) => openai_error(error, param.as_deref()),
    }
}

async fn compacted(
    state: &AppState,
    tenant: &TenantId,
    body: CompactRequest,
) -> Result<Value, Failure> {
    let Some(model) = body.model.filter(|m| !m.is_empty()) else {
        return Err(request::refuse(
            "model",
            "model is required: a route name or `provider/model`",
        )
        .into());
    };
    crate::openai::chat::resolve(state, &model)
        .map_err(|e| Failure::Api(e, Some("model".into())))?;
    let messages = match &body.input {
        Some(input) => {
            items::parse_input(input, "input")
                .map_err(|e| request::refuse(&e.param, e.message))?
                .messages
        }
        None => Vec::new(),
    };
    let session = match &body.previous_response_id {
        Some(id) => Some(
            find(state, tenant, id)
                .await
                .map_err(|e| Failure::Api(e, Some("previous_response_id".into())))?
                .session,
        ),
        None => None,
    };
    let summarised = state
        .engine
        .summarise(tenant, &model, session.as_ref(), messages.clone())
        .await
        .map_err(|e| Failure::Api(e.into(), None))?;
    let mut output: Vec<Value> = messages
        .iter()
        .filter(|m| m.role == keel_core::Role::User)
        .map(|m| {
            json!({"type": "message", "role": "user", "status": "completed",
            "content": [{"type": "input_text", "text": m.text_content()}]})
        })
        .collect();
    // Nothing is stored: the ids only tell this answer apart.
    let id = keel_engine::clock::new_run_id();
    output.push(json!({
        "id": format!("cmp_{}", keel_engine::clock::new_hex_id()),
        "type": "compaction",
        "encrypted_content": summarised.summary,
        "summary": summarised.summary,
    }));
    Ok(json!({
        "id": items::response_id(&id),
        "object": "response.compaction",
        "created_at": keel_engine::clock::now().millis() / 1000,
        "model": summarised.served_by,
        "output": output,
        "usage": usage_object(&summarised.usage),
    }))
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
    state.engine.delete_run(&caller.tenant, &run.id).await?;
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
