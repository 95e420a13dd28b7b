//! `/v1/conversations`: OpenAI's Conversations API. A conversation is a keel session (`conv_X`
//! is `ses_X`): its items are the session's transcript read from the log, items added here are
//! logged as `messages_added`, and responses created with `conversation` are runs of the same
//! session, so the native API and this one see one state.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_core::SessionId;
use keel_store::SessionRecord;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::items::{self, ItemPos, list_page};
use super::pagination::{ListQuery, page};
use super::responses::RESPONSES_AGENT;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, OptionalApiJson};
use crate::state::AppState;

/// Items a request may add at once (OpenAI's limit).
const MAX_NEW_ITEMS: usize = 20;

#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct CreateConversation {
    /// Up to 16 string pairs, as OpenAI allows.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// Initial items (messages, function calls and their outputs).
    #[schema(value_type = Option<Vec<Object>>)]
    pub items: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateConversation {
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct AddItems {
    #[schema(value_type = Vec<Object>)]
    pub items: Value,
}

fn conversation_object(record: &SessionRecord) -> Value {
    json!({
        "id": items::conversation_id(&record.id),
        "object": "conversation",
        "created_at": record.created_at.millis() / 1000,
        "metadata": record.metadata,
    })
}

fn check_metadata(metadata: &Map<String, Value>) -> Result<(), ApiError> {
    if metadata.len() > 16 {
        return Err(ApiError::invalid(
            "invalid_metadata",
            "metadata holds at most 16 pairs",
        ));
    }
    match metadata
        .iter()
        .find(|(k, v)| k.len() > 64 || v.as_str().is_none_or(|s| s.len() > 512))
    {
        Some((key, _)) => Err(ApiError::invalid(
            "invalid_metadata",
            format!(
                "metadata {key:?}: keys are strings of up to 64 characters, values strings of up to 512"
            ),
        )),
        None => Ok(()),
    }
}

/// The items of `raw` (a list) as messages to log.
fn new_messages(raw: &Value, param: &str) -> Result<Vec<keel_core::Message>, ApiError> {
    if raw.as_array().is_some_and(|a| a.len() > MAX_NEW_ITEMS) {
        return Err(ApiError::invalid(
            "too_many_items",
            format!("{param} holds at most {MAX_NEW_ITEMS} items per request"),
        ));
    }
    if !raw.is_array() {
        return Err(ApiError::invalid(
            "invalid_items",
            format!("{param} must be a list of items"),
        ));
    }
    let parsed = items::parse_input(raw, param)
        .map_err(|e| ApiError::invalid("invalid_items", e.message))?;
    if !parsed.instructions.is_empty() {
        return Err(ApiError::invalid(
            "invalid_items",
            format!(
                "{param}: system and developer messages are not kept in a conversation; send them as a response's instructions"
            ),
        ));
    }
    Ok(parsed.messages)
}

async fn find(state: &AppState, caller: &Caller, id: &str) -> Result<SessionRecord, ApiError> {
    let not_found = || ApiError::not_found("conversation", id);
    let session = items::parse_conversation_id(id).ok_or_else(not_found)?;
    let (record, _) = state
        .engine
        .session_state(&caller.tenant, &session)
        .await
        .map_err(|e| match e {
            keel_engine::EngineError::NotFound { .. } => not_found(),
            other => other.into(),
        })?;
    Ok(record)
}

/// Creates a conversation (a keel session of the tenant's `openai-responses` agent).
#[utoipa::path(post, path = "/v1/conversations", tag = "openai",
    request_body = CreateConversation,
    responses((status = 200, body = Object, description = "the `conversation` object"),
        (status = 400, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    // The body is optional: an empty one creates an empty conversation.
    OptionalApiJson(body): OptionalApiJson<CreateConversation>,
) -> Result<Json<Value>, ApiError> {
    let body = body.unwrap_or_default();
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let messages = match &body.items {
        Some(raw) => new_messages(raw, "items")?,
        None => Vec::new(),
    };
    let agent = conversation_agent(&state, &caller).await?;
    let record = state
        .engine
        .create_session(&caller.tenant, &agent, metadata)
        .await?;
    if !messages.is_empty() {
        state
            .engine
            .add_messages(&caller.tenant, &record.id, messages)
            .await?;
    }
    Ok(Json(conversation_object(&record)))
}

/// The agent new conversations pin: the tenant's responses agent, else its `default` agent.
async fn conversation_agent(state: &AppState, caller: &Caller) -> Result<String, ApiError> {
    let store = state.engine.store();
    for name in [RESPONSES_AGENT, "default"] {
        if store.get_agent(&caller.tenant, name, None).await?.is_some() {
            return Ok(name.into());
        }
    }
    // A tenant with neither: the server's default model serves the native API's turns;
    // responses name their own model.
    let default = store
        .get_agent(&keel_core::TenantId::default_tenant(), "default", None)
        .await?
        .ok_or_else(|| ApiError::invalid("no_default_model", "this tenant has no agent to pin a conversation to: create a response first, or an agent named \"default\""))?;
    let agent = super::responses::responses_agent(state, &caller.tenant, &default.model).await?;
    Ok(agent.name)
}

/// Retrieves a conversation.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "openai",
    params(("id" = String, Path, description = "a conversation id (`conv_…`)")),
    responses((status = 200, body = Object), (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(conversation_object(
        &find(&state, &caller, &id).await?,
    )))
}

/// Replaces a conversation's metadata.
#[utoipa::path(post, path = "/v1/conversations/{id}", tag = "openai",
    params(("id" = String, Path, description = "a conversation id (`conv_…`)")),
    request_body = UpdateConversation,
    responses((status = 200, body = Object), (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateConversation>,
) -> Result<Json<Value>, ApiError> {
    check_metadata(&body.metadata)?;
    let mut record = find(&state, &caller, &id).await?;
    state
        .engine
        .set_session_metadata(&caller.tenant, &record.id, body.metadata.clone())
        .await?;
    record.metadata = body.metadata;
    Ok(Json(conversation_object(&record)))
}

/// Deletes a conversation (the session, its log and its runs).
#[utoipa::path(delete, path = "/v1/conversations/{id}", tag = "openai",
    params(("id" = String, Path, description = "a conversation id (`conv_…`)")),
    responses((status = 200, body = Object, description = "`{\"id\", \"object\": \"conversation.deleted\", \"deleted\": true}`"),
        (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let record = find(&state, &caller, &id).await?;
    state
        .engine
        .delete_session(&caller.tenant, &record.id)
        .await?;
    Ok(Json(
        json!({"id": items::conversation_id(&record.id), "object": "conversation.deleted", "deleted": true}),
    ))
}

/// Every item of the session's transcript, oldest first.
async fn all_items(
    state: &AppState,
    session: &SessionId,
) -> Result<Vec<(ItemPos, Value)>, ApiError> {
    const PAGE: usize = 1000;
    let keep_all = |_: &str| true;
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let events = state
            .engine
            .store()
            .read_events(session, after, PAGE)
            .await?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        let full = events.len() == PAGE;
        items.extend(
            events
                .iter()
                .flat_map(|e| items::event_items(session, e, &keep_all)),
        );
        if !full {
            break;
        }
    }
    Ok(items)
}

/// Lists a conversation's items (`order` defaults to `desc`, as OpenAI's).
#[utoipa::path(get, path = "/v1/conversations/{id}/items", tag = "openai",
    params(("id" = String, Path, description = "a conversation id (`conv_…`)"),
        ("limit" = Option<usize>, Query, description = "1 to 100 (default 20)"),
        ("order" = Option<String>, Query, description = "`desc` (default) or `asc`"),
        ("after" = Option<String>, Query, description = "an item id: list after it")),
    responses((status = 200, body = Object, description = "a list of items"), (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn list_items(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let record = find(&state, &caller, &id).await?;
    let items = all_items(&state, &record.id).await?;
    Ok(Json(page(items, &record.id, &query)?))
}

/// Adds items to a conversation without creating a response.
#[utoipa::path(post, path = "/v1/conversations/{id}/items", tag = "openai",
    params(("id" = String, Path, description = "a conversation id (`conv_…`)")),
    request_body = AddItems,
    responses((status = 200, body = Object, description = "a list of the added items"),
        (status = 404, body = super::wire::OpenAiErrorEnvelope),
        (status = 409, body = super::wire::OpenAiErrorEnvelope, description = "a response is in progress in the conversation")))]
pub async fn add_items(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<AddItems>,
) -> Result<Json<Value>, ApiError> {
    let record = find(&state, &caller, &id).await?;
    let messages = new_messages(&body.items, "items")?;
    if messages.is_empty() {
        return Err(ApiError::invalid("invalid_items", "items holds no message"));
    }
    let seq = state
        .engine
        .add_messages(&caller.tenant, &record.id, messages)
        .await?;
    let logged = state
        .engine
        .store()
        .read_events(&record.id, seq.saturating_sub(1), 1)
        .await?;
    let keep_all = |_: &str| true;
    let added = logged
        .iter()
        .flat_map(|e| items::event_items(&record.id, e, &keep_all))
        .map(|(_, item)| item)
        .collect();
    Ok(Json(list_page(added, false)))
}

/// Retrieves one item of a conversation.
#[utoipa::path(get, path = "/v1/conversations/{id}/items/{item_id}", tag = "openai",
    params(("id" = String, Path, description = "a conversation id (`conv_…`)"), ("item_id" = String, Path, description = "an item id")),
    responses((status = 200, body = Object, description = "the item"), (status = 404, body = super::wire::OpenAiErrorEnvelope)))]
pub async fn get_item(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((id, item_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let record = find(&state, &caller, &id).await?;
    let not_found = || ApiError::not_found("item", &item_id);
    let pos = items::parse_item_id(&record.id, &item_id).ok_or_else(not_found)?;
    let events = state
        .engine
        .store()
        .read_events(&record.id, pos.seq.saturating_sub(1), 1)
        .await?;
    let keep_all = |_: &str| true;
    events
        .iter()
        .flat_map(|e| items::event_items(&record.id, e, &keep_all))
        .find(|(p, _)| *p == pos)
        .map(|(_, item)| Json(item))
        .ok_or_else(not_found)
}
