//! Memory blocks: a session's (`/v1/sessions/{id}/memory/blocks[/{label}]`: the blocks its
//! agent declares, each as the session holds it; `PUT` rewrites one between runs, logged in
//! the session like the agent's own edits) and the tenant's shared ones
//! (`/v1/memory/blocks[/{label}[/history]]`). Another tenant's session or block is a 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::SessionId;
use keel_engine::SharedBlockSettings;

use crate::auth::Caller;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::{BlockEditList, BlockList, BlockView, EditBlock, PutSharedBlock};

/// The session's memory blocks, in its agent's declared order.
#[utoipa::path(get, path = "/v1/sessions/{id}/memory/blocks", tag = "memory",
    params(("id" = String, Path, description = "`ses_…`")),
    responses((status = 200, body = BlockList), (status = 404, body = ErrorEnvelope)))]
pub async fn list_for_session(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<BlockList>> {
    let id: SessionId = parse_id("session", &id)?;
    let blocks = state
        .engine
        .session_memory_blocks(&caller.tenant, &id)
        .await?;
    Ok(Json(BlockList {
        data: blocks.into_iter().map(Into::into).collect(),
    }))
}

/// One of the session's memory blocks; 404 for a label its agent does not declare.
#[utoipa::path(get, path = "/v1/sessions/{id}/memory/blocks/{label}", tag = "memory",
    params(("id" = String, Path, description = "`ses_…`"), ("label" = String, Path)),
    responses((status = 200, body = BlockView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_for_session(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((id, label)): ApiPath<(String, String)>,
) -> ApiResult<Json<BlockView>> {
    let id: SessionId = parse_id("session", &id)?;
    let block = state
        .engine
        .session_memory_block(&caller.tenant, &id, &label)
        .await?;
    Ok(Json(block.into()))
}

/// Rewrite one of the session's memory blocks (between runs: 409 while one is queued or
/// running). Logged in the session as a `memory_block_edited` event `by` "api", which the
/// model is told of in order; a shared block is written for the tenant in the same commit.
#[utoipa::path(put, path = "/v1/sessions/{id}/memory/blocks/{label}", tag = "memory",
    request_body = EditBlock,
    params(("id" = String, Path, description = "`ses_…`"), ("label" = String, Path)),
    responses((status = 200, body = BlockView),
        (status = 400, body = ErrorEnvelope, description = "over the block's limit"),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn edit_for_session(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((id, label)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<EditBlock>,
) -> ApiResult<Json<BlockView>> {
    let id: SessionId = parse_id("session", &id)?;
    let block = state
        .engine
        .edit_session_memory_block(&caller.tenant, &id, &label, body.value)
        .await?;
    Ok(Json(block.into()))
}

/// The tenant's shared memory blocks, by label.
#[utoipa::path(get, path = "/v1/memory/blocks", tag = "memory",
    responses((status = 200, body = BlockList)))]
pub async fn list_shared(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<BlockList>> {
    let blocks = state.engine.shared_memory_blocks(&caller.tenant).await?;
    Ok(Json(BlockList {
        data: blocks.into_iter().map(Into::into).collect(),
    }))
}

/// One shared memory block.
#[utoipa::path(get, path = "/v1/memory/blocks/{label}", tag = "memory",
    params(("label" = String, Path)),
    responses((status = 200, body = BlockView), (status = 404, body = ErrorEnvelope)))]
pub async fn get_shared(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(label): ApiPath<String>,
) -> ApiResult<Json<BlockView>> {
    let block = state
        .engine
        .shared_memory_block(&caller.tenant, &label)
        .await?;
    Ok(Json(block.into()))
}

/// Write a shared memory block, making it when new; each write keeps a history row.
#[utoipa::path(put, path = "/v1/memory/blocks/{label}", tag = "memory",
    request_body = PutSharedBlock, params(("label" = String, Path)),
    responses((status = 200, body = BlockView),
        (status = 400, body = ErrorEnvelope, description = "a bad label or limit, or over the limit"),
        (status = 409, body = ErrorEnvelope, description = "other writers kept changing it")))]
pub async fn put_shared(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(label): ApiPath<String>,
    ApiJson(body): ApiJson<PutSharedBlock>,
) -> ApiResult<Json<BlockView>> {
    let settings = SharedBlockSettings {
        limit: body.limit,
        description: body.description,
    };
    let block = state
        .engine
        .put_shared_memory_block(&caller.tenant, &label, body.value, settings)
        .await?;
    Ok(Json(block.into()))
}

/// How much of a shared block's history to read.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// 1 to 100 writes, newest first (default 20).
    #[serde(default = "default_history")]
    pub limit: usize,
}

fn default_history() -> usize {
    20
}

/// A shared memory block's writes, newest first: what it held before and after each, and who
/// wrote it (the API, or an agent's run).
#[utoipa::path(get, path = "/v1/memory/blocks/{label}/history", tag = "memory",
    params(("label" = String, Path), HistoryQuery),
    responses((status = 200, body = BlockEditList), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope)))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(label): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> ApiResult<Json<BlockEditList>> {
    let edits = state
        .engine
        .shared_memory_block_history(&caller.tenant, &label, query.limit)
        .await?;
    Ok(Json(BlockEditList {
        data: edits.into_iter().map(Into::into).collect(),
    }))
}

/// Forget a shared memory block and its history; sessions declaring it see its declared
/// value again.
#[utoipa::path(delete, path = "/v1/memory/blocks/{label}", tag = "memory",
    params(("label" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_shared(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(label): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state
        .engine
        .delete_shared_memory_block(&caller.tenant, &label)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
