//! `GET /v1/models`: what `model` may name on the OpenAI-compatible API — keel's routes, and
//! the catalog's models of each configured provider as `provider/model`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;

use super::chat::now_secs;
use super::wire::{ModelEntry, ModelList, OpenAiErrorEnvelope};
use crate::auth::Caller;
use crate::state::AppState;

/// Lists the routes and configured providers' catalog models (OpenAI-compatible).
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = OpenAiErrorEnvelope)))]
pub async fn list(State(state): State<Arc<AppState>>, _caller: Caller) -> Json<ModelList> {
    let models = state.engine.models();
    let created = now_secs();
    let entry = |id: String, owned_by: &str| ModelEntry {
        id,
        object: "model",
        created,
        owned_by: owned_by.to_string(),
    };
    let mut routes: Vec<ModelEntry> = models
        .routes()
        .keys()
        .map(|name| entry(name.clone(), "keel"))
        .collect();
    let mut provided: Vec<ModelEntry> = models
        .catalog()
        .names()
        .filter_map(|key| {
            let (provider, _) = key.split_once('/')?;
            models
                .providers()
                .contains_key(provider)
                .then(|| entry(key.to_string(), provider))
        })
        .collect();
    routes.sort_by(|a, b| a.id.cmp(&b.id));
    provided.sort_by(|a, b| a.id.cmp(&b.id));
    routes.extend(provided);
    Json(ModelList {
        object: "list",
        data: routes,
    })
}
