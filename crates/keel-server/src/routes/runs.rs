//! `/v1/runs/{id}`: poll a run, and cancel it (it stops at its next step boundary). A run is
//! shown with the usage of its steps and the model that served each, read from its log.

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
    Ok(Json(view(&state, run).await))
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
    Ok(Json(view(&state, run).await))
}

/// The run with what its log says of its steps; a log that cannot be read leaves the record
/// as it is (the log is isolated, and the run's own status tells what became of it).
pub(crate) async fn view(state: &AppState, run: keel_store::RunRecord) -> RunView {
    match state.engine.run_events(&run).await {
        Ok(events) => RunView::from_log(run, &events),
        Err(error) => {
            tracing::warn!(run = %run.id, %error, "the run's log cannot be read: shown without its steps");
            RunView::new(run, None)
        }
    }
}
