//! A tenant's long-term memory: `POST /v1/memory/{namespace}/records` (remember),
//! `GET`/`DELETE /v1/memory/{namespace}/records/{id}` (`*`: in any namespace), and
//! `POST /v1/memory/{namespace}/search` (hybrid: keywords and, with an embedding model,
//! vectors; or either alone). Handlers parse, call the engine
//! once and render; another tenant's record is a 404 like a missing one.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_engine::SearchMode;
use keel_store::{MemoryHit, MemoryRecord};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorEnvelope};
use crate::state::AppState;

/// The body of `POST /v1/memory/{namespace}/records`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemory {
    /// What to remember (1 byte to 32 KiB).
    pub text: String,
    /// Any JSON object, returned with the record and usable as a search filter.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: Map<String, Value>,
}

/// The body of `POST /v1/memory/{namespace}/search`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchMemory {
    /// The text to search for, as a person or a model writes it.
    pub query: String,
    /// Top-level metadata keys the records must have with these values.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub filter: Map<String, Value>,
    /// At most this many hits (1 to 100, default 10).
    #[serde(default = "default_limit")]
    pub limit: usize,
    /// `hybrid` (default): keywords and vectors fused; `keyword` or `vector` alone.
    #[serde(default)]
    #[schema(value_type = String)]
    pub mode: SearchMode,
}

fn default_limit() -> usize {
    10
}

/// A memory record.
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemoryView {
    pub id: String,
    pub namespace: String,
    pub text: String,
    #[schema(value_type = Object)]
    pub metadata: Value,
    /// The length of its embedding (0: found by keywords only).
    pub dimensions: usize,
    pub created_at: String,
    pub updated_at: String,
}

impl From<MemoryRecord> for MemoryView {
    fn from(r: MemoryRecord) -> Self {
        MemoryView {
            id: r.id,
            namespace: r.namespace,
            text: r.text,
            metadata: r.metadata,
            dimensions: r.embedding.len(),
            created_at: r.created_at.to_string(),
            updated_at: r.updated_at.to_string(),
        }
    }
}

/// A record found, with its fused score and its rank in each list (from 1; null: absent).
#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemoryHitView {
    pub record: MemoryView,
    pub score: f64,
    pub keyword_rank: Option<usize>,
    pub vector_rank: Option<usize>,
}

impl From<MemoryHit> for MemoryHitView {
    fn from(h: MemoryHit) -> Self {
        MemoryHitView {
            record: h.record.into(),
            score: h.score,
            keyword_rank: h.keyword_rank,
            vector_rank: h.vector_rank,
        }
    }
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct MemoryHitList {
    pub data: Vec<MemoryHitView>,
}

/// Remember a text in a namespace of the caller's tenant (embedded when keel has an
/// embedding model: the route `embeddings`, else the local provider's all-MiniLM-L6-v2).
#[utoipa::path(post, path = "/v1/memory/{namespace}/records", tag = "memory", request_body = CreateMemory,
    params(("namespace" = String, Path, description = "e.g. `user:ada`, `agent:support`")),
    responses((status = 201, body = MemoryView), (status = 400, body = ErrorEnvelope),
        (status = 502, body = ErrorEnvelope, description = "the embedding model failed")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
    ApiJson(body): ApiJson<CreateMemory>,
) -> ApiResult<(StatusCode, Json<MemoryView>)> {
    let record = state
        .engine
        .remember(
            &caller.tenant,
            &namespace,
            body.text,
            Value::Object(body.metadata),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// One record of a namespace.
#[utoipa::path(get, path = "/v1/memory/{namespace}/records/{id}", tag = "memory",
    params(("namespace" = String, Path, description = "the record's, or `*` for any"), ("id" = String, Path, description = "`mem_…`")),
    responses((status = 200, body = MemoryView), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((namespace, id)): ApiPath<(String, String)>,
) -> ApiResult<Json<MemoryView>> {
    let record = state.engine.memory_record(&caller.tenant, &id).await?;
    in_namespace(&record, &namespace)?;
    Ok(Json(record.into()))
}

/// Forget a record.
#[utoipa::path(delete, path = "/v1/memory/{namespace}/records/{id}", tag = "memory",
    params(("namespace" = String, Path, description = "the record's, or `*` for any"), ("id" = String, Path, description = "`mem_…`")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((namespace, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let record = state.engine.memory_record(&caller.tenant, &id).await?;
    in_namespace(&record, &namespace)?;
    state.engine.forget(&caller.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A record is read and forgotten in its own namespace, or through `*` (any namespace); in
/// another it is not found.
fn in_namespace(record: &MemoryRecord, namespace: &str) -> Result<(), ApiError> {
    match namespace == ANY_NAMESPACE || record.namespace == namespace {
        true => Ok(()),
        false => Err(ApiError::not_found("memory record", &record.id)),
    }
}

/// The path's namespace that stands for any: `GET /v1/memory/*/records/{id}`.
const ANY_NAMESPACE: &str = "*";

/// Search a namespace: full text for any of the query's words, fused with vector similarity
/// by reciprocal rank; best first. A namespace with none of the caller's records is a 404.
#[utoipa::path(post, path = "/v1/memory/{namespace}/search", tag = "memory", request_body = SearchMemory,
    params(("namespace" = String, Path)),
    responses((status = 200, body = MemoryHitList), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope, description = "the namespace holds none of the caller's records")))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
    ApiJson(body): ApiJson<SearchMemory>,
) -> ApiResult<Json<MemoryHitList>> {
    let filter = body.filter.into_iter().collect();
    let hits = state
        .engine
        .recall(
            &caller.tenant,
            &namespace,
            &body.query,
            filter,
            body.limit,
            body.mode,
        )
        .await?;
    Ok(Json(MemoryHitList {
        data: hits.into_iter().map(Into::into).collect(),
    }))
}
