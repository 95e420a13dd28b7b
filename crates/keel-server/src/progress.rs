//! The server's side of following a run (`Engine::follow_run`): the one rule for a run that
//! cannot go on now — a waiting request or a stream is answered 503 `run_not_started` (the
//! store cannot commit, so the run cannot leave the queue) or `run_halted` within a poll
//! period, the run kept — and `wait`, the follow of every request that waits for a run.

use axum::http::StatusCode;
use keel_core::{RunId, TenantId};
use keel_engine::RunProgress;
use keel_store::RunRecord;

use crate::error::ApiError;
use crate::state::AppState;

/// The answer to a request that followed `run` and got `progress`, when it says the run cannot
/// go on now.
pub fn stalled(run: &RunId, progress: &RunProgress) -> Option<ApiError> {
    match progress {
        RunProgress::NotStarted { error } => Some(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "run_not_started",
            format!(
                "run {run} cannot start while the store cannot commit ({error}); it stays \
                 queued and starts when the store recovers: follow it with GET /v1/runs/{run}"
            ),
        )),
        RunProgress::Halted { error } => Some(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "run_halted",
            format!("run {run} stopped on a store failure and will resume later: {error}"),
        )),
        _ => None,
    }
}

/// Waits for the run's end (`Engine::follow_run_end`), at most the server's `wait_timeout`: its final record, or its
/// record as it is when the time is up; 503 (`stalled`) when it cannot go on now.
pub async fn wait(state: &AppState, tenant: &TenantId, run: &RunId) -> Result<RunRecord, ApiError> {
    let follow = async {
        let mut follower = state.engine.follow_run_end(tenant, run).await?;
        while let Some(progress) = follower.next().await {
            let progress = progress?;
            if let RunProgress::Ended(record) = progress {
                return Ok(*record);
            }
            if let Some(error) = stalled(run, &progress) {
                return Err(error);
            }
        }
        Ok(state.engine.get_run(tenant, run).await?)
    };
    match tokio::time::timeout(state.config.wait_timeout, follow).await {
        Ok(answer) => answer,
        Err(_) => Ok(state.engine.get_run(tenant, run).await?),
    }
}
