//! Time travel over a session's log: `POST /v1/sessions/{id}/fork` starts a branch from a
//! point between runs, and `GET /v1/sessions/{id}/context` shows what the model received at
//! any seq (read-only). Both are one engine call each.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::SessionId;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::{ContextView, ForkSession, SessionView};

/// Fork a session: a new session whose log is a copy of this one's first `at_seq` events
/// (the whole log without it). The point must lie between runs; a point inside a run is
/// refused with the nearest seqs that are not. The scratchpad is not copied.
#[utoipa::path(post, path = "/v1/sessions/{id}/fork", tag = "sessions", request_body = ForkSession,
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 201, body = SessionView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn fork(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ForkSession>,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let id: SessionId = parse_id("session", &id)?;
    let record = state
        .engine
        .fork_session(&caller.tenant, &id, body.at_seq, body.metadata)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ContextQuery {
    /// The seq to look at (1 to the log's last; default: the last).
    at_seq: Option<u64>,
}

/// What the model received (or would receive) at a seq of the session's log: the system
/// instructions, the transcript window, the tools and parameters, built by the code that
/// calls the model. Inside a run, with that run's options; between runs, before the next input.
#[utoipa::path(get, path = "/v1/sessions/{id}/context", tag = "sessions", params(
        ("id" = String, Path, description = "the session id (`ses_…`)"), ContextQuery),
    responses((status = 200, body = ContextView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn context(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ContextQuery>,
) -> ApiResult<Json<ContextView>> {
    let id: SessionId = parse_id("session", &id)?;
    let context = state
        .engine
        .session_context(&caller.tenant, &id, query.at_seq)
        .await?;
    Ok(Json(context.into()))
}
