//! Operational endpoints: liveness, readiness (the store reads and can commit a write) and the
//! OpenAPI document, open to anyone; Prometheus metrics, which need an admin key on the API's
//! listener (the counters cover every tenant) and need none on the separate listener an
//! operator may give them (`keel serve --metrics-listen`, `metrics_only`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keel_store::KeyScope;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorEnvelope, no_route};
use crate::state::AppState;
use crate::wire::Health;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()),
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Ready: the store answers reads and can commit a write (a full disk, a failing disk or a
/// lock held elsewhere makes it 503 `not_ready`, saying why, until a write commits again).
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses((status = 200, body = Health), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz(State(state): State<Arc<AppState>>) -> ApiResult<Json<Health>> {
    state.engine.store().health().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("not ready: {e}"),
        )
    })?;
    Ok(Json(Health {
        status: "ready".into(),
    }))
}

/// Prometheus metrics (text exposition format). Needs an admin key: the counters cover every
/// tenant. `keel serve --metrics-listen ADDR` also serves them without a key on ADDR, alone.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(("bearer" = [])),
    responses(
        (status = 200, content_type = "text/plain", body = String),
        (status = 401, body = ErrorEnvelope, description = "no key, or not a valid one"),
        (status = 403, body = ErrorEnvelope, description = "a tenant's key: metrics need an admin key"),
    ))]
pub async fn metrics(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    if !matches!(caller.scope, KeyScope::Admin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_scope_required",
            "/metrics needs an admin key: its counters cover every tenant (an operator can serve them without a key on a private address with `keel serve --metrics-listen`)",
        ));
    }
    exposition(&state).await
}

/// The metrics listener's whole route table: `/metrics` without a key, and 404 for the rest.
pub fn metrics_only(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(open_metrics))
        .fallback(no_route)
        .with_state(state)
}

async fn open_metrics(State(state): State<Arc<AppState>>) -> ApiResult<Response> {
    exposition(&state).await
}

async fn exposition(state: &AppState) -> ApiResult<Response> {
    let runs = state.engine.store().count_runs().await?;
    let runs: Vec<(String, u64)> = runs
        .into_iter()
        .map(|(status, n)| (status.as_str().to_string(), n))
        .collect();
    let text = state.metrics.render(
        &runs,
        &state.engine.stats(),
        state.config.metrics_tenant_labels,
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// This API's OpenAPI document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", security(()),
    responses((status = 200, content_type = "application/json", body = Object)))]
pub async fn openapi() -> impl IntoResponse {
    Json(crate::openapi::document())
}
