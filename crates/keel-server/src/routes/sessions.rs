//! `/v1/sessions`: create (pinning the agent's latest version), read a state summary, list
//! with filters and a cursor, delete.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::SessionId;
use keel_store::SessionFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use super::paging;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::{CreateSession, SessionList, SessionSummary, SessionView};

/// Create a session of an agent's latest version.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = CreateSession,
    responses((status = 201, body = SessionView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateSession>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let record = state
        .engine
        .create_session(&caller.tenant, &body.agent, body.metadata)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// A session's state: status, last seq, message count, usage, title.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 200, body = SessionSummary), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<SessionSummary>> {
    let id: SessionId = parse_id("session", &id)?;
    let (record, folded) = state.engine.session_state(&caller.tenant, &id).await?;
    let mut summary = SessionSummary::new(record, folded);
    let store = state.engine.store();
    summary.session.title = store.session_title(&id).await;
    summary.moved = store
        .export_mark(&caller.tenant, &id)
        .await?
        .map(Into::into);
    Ok(Json(summary))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only sessions of this agent.
    agent: Option<String>,
    /// `idle` or `busy` (a run queued or running).
    status: Option<String>,
    /// Exact metadata matches, `key=value` (the value is JSON if it parses, else a string);
    /// several separated by commas.
    metadata: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1..=200 (default 50).
    limit: Option<usize>,
}

/// Sessions, newest first.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions", params(ListQuery),
    responses((status = 200, body = SessionList), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<SessionList>> {
    let limit = paging::limit(query.limit, 50, 200)?;
    let busy = match query.status.as_deref() {
        None => None,
        Some("busy") => Some(true),
        Some("idle") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_status",
                format!("status must be `idle` or `busy`, got {other:?}"),
            ));
        }
    };
    let before = paging::cursor(query.cursor.as_deref(), SessionId::parse)?;
    let filter = SessionFilter {
        agent_name: query.agent,
        metadata: metadata_filter(query.metadata.as_deref())?,
        before,
        limit: limit + 1,
        busy,
    };
    let reader = state.engine.store();
    let mut sessions = reader.list_sessions(&caller.tenant, &filter).await?;
    let next_cursor = if sessions.len() > limit {
        sessions.truncate(limit);
        sessions.last().map(|s| s.id.to_string())
    } else {
        None
    };
    let mut data = Vec::with_capacity(sessions.len());
    for record in sessions {
        let title = reader.session_title(&record.id).await;
        data.push(SessionView {
            title,
            ..record.into()
        });
    }
    Ok(Json(SessionList { data, next_cursor }))
}

fn metadata_filter(raw: Option<&str>) -> Result<Vec<(String, serde_json::Value)>, ApiError> {
    let Some(raw) = raw.filter(|r| !r.is_empty()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or_else(|| {
                ApiError::invalid(
                    "invalid_metadata_filter",
                    format!("metadata filter {pair:?} is not `key=value`"),
                )
            })?;
            let value = serde_json::from_str(value)
                .unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
            Ok((key.to_string(), value))
        })
        .collect()
}

/// Delete a session, its log and its runs (pending runs are cancelled first).
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<StatusCode> {
    let id: SessionId = parse_id("session", &id)?;
    state.engine.delete_session(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
