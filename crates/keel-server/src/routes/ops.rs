//! Unauthenticated operational endpoints: liveness, readiness (the store answers), Prometheus
//! metrics and the OpenAPI document.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::{ApiResult, ErrorEnvelope};
use crate::state::AppState;
use crate::wire::Health;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// The store answers.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Json<Health>> {
    state.engine.store().ping().await?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> ApiResult<impl IntoResponse> {
    let runs = state.engine.store().count_runs().await?;
    let runs: Vec<(String, u64)> = runs
        .into_iter()
        .map(|(status, n)| (status.as_str().to_string(), n))
        .collect();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&runs, &state.engine.stats()),
    ))
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
