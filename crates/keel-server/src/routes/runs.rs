//! `/v1/runs/{id}`: poll a run, and cancel it (it stops at its next step boundary).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_core::RunId;

use crate::auth::Caller;
use crate::error::{ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::RunView;

/// A run's status and outcome.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "the run id (`run_…`)")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorEnvelope)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RunView>> {
    let id: RunId = parse_id("run", &id)?;
    let run = state.engine.get_run(&caller.tenant, &id).await?;
    Ok(Json(RunView::new(run, None)))
}

/// Ask a run to stop at its next step boundary; a finished run is left as it is.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "the run id (`run_…`)")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<RunView>> {
    let id: RunId = parse_id("run", &id)?;
    let run = state.engine.cancel_run(&caller.tenant, &id).await?;
    Ok(Json(RunView::new(run, None)))
}
