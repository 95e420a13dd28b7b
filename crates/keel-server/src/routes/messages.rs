//! `POST /v1/sessions/{id}/messages`: queue the user's input as a run and answer by `mode` —
//! `wait` for the finished run, `stream` it as server-sent events, or `background` (202). A
//! `wait` whose run cannot start because the store cannot commit answers 503 within about a
//! second, the run left queued.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keel_core::{Message, RunStatus, SessionId};
use serde_json::json;
use tokio::time::Instant;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::progress::{Progress, RunProgress};
use crate::state::AppState;
use crate::wire::{RunView, SendMessage, SendMode};

/// Send a message. `mode`: `wait` (200 with the finished run), `stream` (SSE: `run.created`,
/// `run.started`, `text.delta`, `tool.call`, `tool.result`, then `run.completed`, `run.failed`
/// or `run.cancelled` with usage) or `background` (202). `on_busy`: `enqueue`, `reject` (409)
/// or `interrupt`.
#[utoipa::path(post, path = "/v1/sessions/{id}/messages", tag = "runs", request_body = SendMessage,
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses(
        (status = 200, body = RunView, description = "mode `wait`: the run, finished (or still running past the wait limit)"),
        (status = 202, body = RunView, description = "mode `background`: the queued run"),
        (status = 201, content_type = "text/event-stream", body = String, description = "mode `stream`: the run's events"),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope, description = "the store cannot commit: the input was not stored, or (mode `wait`) its run cannot start yet and stays queued")))]
pub async fn send(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SendMessage>,
) -> ApiResult<Response> {
    let session: SessionId = parse_id("session", &id)?;
    if body.content.is_empty() {
        return Err(ApiError::invalid(
            "empty_message",
            "`content` is empty: send some text",
        ));
    }
    let engine = &state.engine;
    // Subscribe first, so no update of the new run is missed.
    let updates = RunProgress::subscribe(engine, &session);
    let run = engine
        .submit_with(
            &caller.tenant,
            &session,
            Message::user(body.content),
            Default::default(),
            body.on_busy.into(),
        )
        .await?;
    let progress = RunProgress::new(engine.clone(), caller.tenant, run.id.clone(), updates);
    match body.mode {
        SendMode::Background => {
            Ok((StatusCode::ACCEPTED, Json(RunView::new(run, None))).into_response())
        }
        SendMode::Wait => wait(&state, progress, run).await,
        SendMode::Stream => Ok(stream(state, progress, run).into_response()),
    }
}

/// How often a `wait` whose run has not started asks whether the store can commit: a run
/// cannot start while it cannot, and the caller is told so (503) instead of waiting on.
const START_CHECK: Duration = Duration::from_secs(1);

async fn wait(
    state: &AppState,
    mut progress: RunProgress,
    run: keel_store::RunRecord,
) -> ApiResult<Response> {
    let deadline = tokio::time::sleep(state.config.wait_timeout);
    tokio::pin!(deadline);
    let mut start_check = tokio::time::interval_at(Instant::now() + START_CHECK, START_CHECK);
    let mut started = false;
    loop {
        tokio::select! {
            next = progress.next() => match next? {
                Progress::Started => started = true,
                Progress::Ended { run, .. } => {
                    return Ok(Json(super::runs::view(state, *run).await).into_response());
                }
                Progress::Halted { error } => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "run_halted",
                        format!("run {} stopped on a store failure and will resume later: {error}", run.id),
                    ));
                }
                _ => {}
            },
            _ = start_check.tick(), if !started => {
                if let Err(error) = state.engine.store().health().await {
                    let current = state.engine.get_run(&run.tenant, &run.id).await?;
                    if current.status == RunStatus::Queued {
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "run_not_started",
                            format!(
                                "run {id} cannot start while the store cannot commit ({error}); \
                                 it stays queued and starts when the store recovers: follow it \
                                 with GET /v1/runs/{id}",
                                id = run.id
                            ),
                        ));
                    }
                    started = current.status != RunStatus::Queued;
                }
            },
            _ = &mut deadline => {
                let current = state.engine.get_run(&run.tenant, &run.id).await?;
                return Ok(Json(RunView::new(current, None)).into_response());
            }
        }
    }
}

fn stream(
    state: Arc<AppState>,
    mut progress: RunProgress,
    run: keel_store::RunRecord,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(64);
    let mut shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let created = sse("run.created", &RunView::new(run.clone(), None));
        if tx.send(created).await.is_err() {
            return;
        }
        loop {
            let next = tokio::select! {
                next = progress.next() => next,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let (event, last) = match next {
                Err(e) => (
                    sse(
                        "error",
                        &json!({"error": {"code": e.code, "message": e.message}}),
                    ),
                    true,
                ),
                Ok(Progress::Started) => (sse("run.started", &json!({"run_id": run.id})), false),
                Ok(Progress::ModelCalled { .. } | Progress::Replied(_)) => continue,
                Ok(Progress::Text {
                    step,
                    attempt,
                    text,
                }) => (
                    sse(
                        "text.delta",
                        &json!({"run_id": run.id, "step": step, "attempt": attempt, "text": text}),
                    ),
                    false,
                ),
                Ok(Progress::ToolCall {
                    call_id,
                    name,
                    arguments,
                }) => (
                    sse(
                        "tool.call",
                        &json!({"run_id": run.id, "call_id": call_id, "name": name, "arguments": arguments}),
                    ),
                    false,
                ),
                Ok(Progress::ToolResult {
                    call_id,
                    content,
                    is_error,
                }) => (
                    sse(
                        "tool.result",
                        &json!({"run_id": run.id, "call_id": call_id, "content": content, "is_error": is_error}),
                    ),
                    false,
                ),
                Ok(Progress::Ended { run, usage }) => {
                    let name = format!("run.{}", run.status.as_str());
                    (sse(&name, &RunView::new(*run, usage.map(Into::into))), true)
                }
                Ok(Progress::Halted { error }) => (
                    sse("run.halted", &json!({"run_id": run.id, "error": error})),
                    true,
                ),
            };
            if tx.send(event).await.is_err() || last {
                return;
            }
        }
    });
    Sse::new(receiver_stream(rx)).keep_alive(KeepAlive::default())
}

/// An SSE event named `name` carrying `data` as JSON.
pub(crate) fn sse(name: &str, data: &impl serde::Serialize) -> SseEvent {
    SseEvent::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| SseEvent::default().event("error").data(e.to_string()))
}

pub(crate) fn receiver_stream(
    rx: tokio::sync::mpsc::Receiver<SseEvent>,
) -> impl futures::Stream<Item = Result<SseEvent, Infallible>> {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|event| (Ok(event), rx))
    })
}
