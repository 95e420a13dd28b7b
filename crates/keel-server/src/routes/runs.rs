//! `/v1/runs/{id}`: poll a run, cancel it (it stops at its next step boundary), and resume one
//! that waits for a person with a decision per call; `/v1/runs?status=waiting` lists what waits. A run is shown with the usage of its
//! steps, the model that served each, read from its log, and the calls it waits on.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use keel_core::{RunId, RunStatus};
use serde::Deserialize;
use utoipa::IntoParams;

use super::paging;
use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::{ResumeRun, RunList, RunView};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// `waiting`, `queued` or `running`: runs are listed by status while unfinished.
    status: String,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
    /// Page size, 1..=100 (default 20).
    limit: Option<usize>,
}

/// The tenant's unfinished runs of one status, newest first, each as `GET /v1/runs/{id}`
/// shows it: a waiting run with the calls it waits on (`pending_approvals`).
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery),
    responses((status = 200, body = RunList), (status = 400, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> ApiResult<Json<RunList>> {
    let status = match query.status.as_str() {
        "waiting" => RunStatus::Waiting,
        "queued" => RunStatus::Queued,
        "running" => RunStatus::Running,
        other => {
            return Err(ApiError::invalid(
                "invalid_status",
                format!("status must be `waiting`, `queued` or `running`, got {other:?}"),
            ));
        }
    };
    let limit = paging::limit(query.limit, 20, 100)?;
    let before = paging::cursor(query.cursor.as_deref(), RunId::parse)?;
    let mut runs = state
        .engine
        .store()
        .runs_with_status(&caller.tenant, status, before.as_ref(), limit + 1)
        .await?;
    let next_cursor = match runs.len() > limit {
        true => {
            runs.truncate(limit);
            runs.last().map(|r| r.id.to_string())
        }
        false => None,
    };
    let mut data = Vec::with_capacity(runs.len());
    for run in runs {
        data.push(view(&state, run).await);
    }
    Ok(Json(RunList { data, next_cursor }))
}

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

/// Decide on calls a waiting run waits on (`pending_approvals`): `approve` (with edited
/// `arguments` if given), `reject` (the `reason` is the error result the model sees), or
/// `answer` an `ask_human` question. The run goes on once no call is left undecided.
#[utoipa::path(post, path = "/v1/runs/{id}/resume", tag = "runs", request_body = ResumeRun,
    params(("id" = String, Path, description = "the run id (`run_…`)")),
    responses((status = 200, body = RunView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn resume(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<ResumeRun>,
) -> ApiResult<Json<RunView>> {
    let id: RunId = parse_id("run", &id)?;
    let run = state
        .engine
        .resume_run(&caller.tenant, &id, body.decisions, caller.key_prefix)
        .await?;
    Ok(Json(view(&state, run).await))
}

/// The run with what its log says of its steps; a log that cannot be read leaves the record
/// as it is (the log is isolated, and the run's own status tells what became of it).
pub(crate) async fn view(state: &AppState, run: keel_store::RunRecord) -> RunView {
    let waiting = run.status == keel_core::RunStatus::Waiting;
    let (tenant, id) = (run.tenant.clone(), run.id.clone());
    let mut view = match state.engine.run_events(&run).await {
        Ok(events) => RunView::from_log(run, &events),
        Err(error) => {
            tracing::warn!(run = %run.id, %error, "the run's log cannot be read: shown without its steps");
            RunView::new(run, None)
        }
    };
    if waiting {
        match state.engine.pending_approvals(&tenant, &id).await {
            Ok(calls) => view.pending_approvals = calls,
            Err(error) => {
                tracing::warn!(run = %id, %error, "the calls a run waits on cannot be read")
            }
        }
    }
    view
}
