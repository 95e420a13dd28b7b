//! `/v1/agents`: versioned agent definitions. `PUT` stores a new version; archiving hides an
//! agent from the list while the sessions pinning its versions go on.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::AgentDef;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorEnvelope};
use crate::state::AppState;
use crate::wire::{AgentBody, AgentList, AgentView};

fn definition(name: String, body: AgentBody) -> AgentDef {
    AgentDef {
        id: keel_engine::clock::new_agent_id(),
        name,
        version: 0,
        instructions: body.instructions,
        model: body.model,
        tools: body.tools,
        limits: body.limits.unwrap_or_default(),
        memory_blocks: body.memory_blocks,
        compaction: body.compaction,
        memory: body.memory,
    }
}

/// Create an agent (version 1); 409 when the name is taken.
#[utoipa::path(post, path = "/v1/agents", tag = "agents", request_body = AgentBody,
    responses((status = 201, body = AgentView), (status = 400, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<AgentBody>,
) -> ApiResult<(StatusCode, Json<AgentView>)> {
    let Some(name) = body.name.clone() else {
        return Err(ApiError::invalid(
            "missing_name",
            "an agent needs a `name`; use PUT /v1/agents/{name} for a new version",
        ));
    };
    if state
        .engine
        .store()
        .get_agent(&caller.tenant, &name, None)
        .await?
        .is_some()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "agent_exists",
            format!("agent {name:?} exists: PUT /v1/agents/{name} stores a new version"),
        ));
    }
    let stored = state
        .engine
        .put_agent(&caller.tenant, definition(name, body))
        .await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// List the latest version of every agent that is not archived.
#[utoipa::path(get, path = "/v1/agents", tag = "agents", responses((status = 200, body = AgentList)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<AgentList>> {
    let agents = state.engine.store().list_agents(&caller.tenant).await?;
    Ok(Json(AgentList {
        data: agents.into_iter().map(AgentView::from).collect(),
    }))
}

/// The latest version of an agent.
#[utoipa::path(get, path = "/v1/agents/{name}", tag = "agents",
    params(("name" = String, Path, description = "the agent's name")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<AgentView>> {
    let agent = state
        .engine
        .store()
        .get_agent(&caller.tenant, &name, None)
        .await?
        .ok_or_else(|| ApiError::not_found("agent", &name))?;
    Ok(Json(agent.into()))
}

/// Store a new version of an agent (version 1 for a new name). Sessions keep the version they pinned.
#[utoipa::path(put, path = "/v1/agents/{name}", tag = "agents", request_body = AgentBody,
    params(("name" = String, Path, description = "the agent's name")),
    responses((status = 200, body = AgentView), (status = 400, body = ErrorEnvelope)))]
pub async fn put(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<AgentBody>,
) -> ApiResult<Json<AgentView>> {
    if let Some(other) = body.name.as_deref().filter(|n| *n != name) {
        return Err(ApiError::invalid(
            "name_mismatch",
            format!(
                "the body names agent {other:?} but the path names {name:?}: drop `name` from the body"
            ),
        ));
    }
    let stored = state
        .engine
        .put_agent(&caller.tenant, definition(name, body))
        .await?;
    Ok(Json(stored.into()))
}

/// Archive an agent: it leaves the list until a new version is stored.
#[utoipa::path(post, path = "/v1/agents/{name}/archive", tag = "agents",
    params(("name" = String, Path, description = "the agent's name")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn archive(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<StatusCode> {
    state.engine.archive_agent(&caller.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
