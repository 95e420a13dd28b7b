//! `GET /v1/models` and `GET /v1/models/{id}`: what `model` may name on the OpenAI-compatible
//! API — every model this node will serve (`Engine::list_models`: routes, configured, catalog,
//! reported by the provider, already in use). Ids hold a `/` (`provider/model`), so the
//! retrieve route takes the rest of the path.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_engine::ListedModel;

use super::chat::now_secs;
use super::wire::{ModelEntry, ModelList, OpenAiErrorEnvelope};
use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiResult};
use crate::state::AppState;

/// The models `caller` may name, with the gateway calls counted since the last flush stored
/// first (as `/v1/usage` does), so a model just used is listed at once.
async fn served(state: &AppState, caller: &Caller) -> ApiResult<Vec<ListedModel>> {
    state.metrics.usage.flush(&state.engine).await;
    Ok(state.engine.list_models(&caller.tenant).await?)
}

fn entry(model: ListedModel, created: u64) -> ModelEntry {
    ModelEntry {
        id: model.id,
        object: "model",
        created,
        owned_by: model.owned_by,
    }
}

/// Lists the models this node serves (OpenAI-compatible): routes first, then `provider/model`.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = OpenAiErrorEnvelope)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<ModelList>> {
    let created = now_secs();
    let models = served(&state, &caller).await?;
    Ok(Json(ModelList {
        object: "list",
        data: models.into_iter().map(|m| entry(m, created)).collect(),
    }))
}

/// One model this node serves (OpenAI-compatible `models.retrieve`); `id` may hold a `/`.
#[utoipa::path(get, path = "/v1/models/{id}", tag = "openai",
    params(("id" = String, Path, description = "a route's name or `provider/model`")),
    responses((status = 200, body = ModelEntry), (status = 401, body = OpenAiErrorEnvelope),
        (status = 404, body = OpenAiErrorEnvelope, description = "no such model here")))]
pub async fn retrieve(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ModelEntry>> {
    let models = served(&state, &caller).await?;
    match models.into_iter().find(|m| m.id == id) {
        Some(model) => Ok(Json(entry(model, now_secs()))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!(
                "The model `{id}` does not exist or you do not have access to it: GET /v1/models lists the models keel serves here"
            ),
        )),
    }
}
