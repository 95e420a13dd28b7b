//! `POST /v1/sessions/{id}/messages`: queue the user's input as a run and answer by `mode` —
//! `wait` for the finished run, `stream` it as server-sent events, or `background` (202). Both
//! follow the run through `Engine::follow_run`; a run that cannot start because the store
//! cannot commit is answered 503 `run_not_started` (an `error` event when streaming) within a
//! poll period, the run left queued (`progress.rs`).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use keel_core::{EventBody, Message, SessionId, Usage};
use keel_engine::{RunFollower, RunProgress};
use keel_store::RunRecord;
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::progress::{self, stalled};
use crate::sse::{self, Batches, event};
use crate::state::AppState;
use crate::wire::{RunView, SendMessage, SendMode};

/// Send a message. `mode`: `wait` (200 with the finished run), `stream` (SSE: `run.created`,
/// `run.started`, `text.delta` (`text.reset`: discard the step's text so far), `tool.call`, `tool.result`, `model.failed` (a model call failed; retried when it can be), `approval.requested` (calls a person must decide on), then `run.completed`, `run.failed`,
/// `run.cancelled` with usage, or `run.waiting` (resume it with `POST /v1/runs/{id}/resume`)) or `background` (202). `on_busy`: `enqueue`, `reject` (409)
/// or `interrupt`.
#[utoipa::path(post, path = "/v1/sessions/{id}/messages", tag = "runs", request_body = SendMessage,
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses(
        (status = 200, body = RunView, description = "mode `wait`: the run, finished (or still running past the wait limit)"),
        (status = 202, body = RunView, description = "mode `background`: the queued run"),
        (status = 201, content_type = "text/event-stream", body = String, description = "mode `stream`: the run's events"),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope, description = "the store cannot commit: the input was not stored, or (mode `wait`) its run cannot start yet and stays queued; mode `stream` ends with an `error` event instead")))]
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
    let input = Message::user(body.content);
    let policy = body.on_busy.into();
    if body.mode == SendMode::Stream {
        // Subscribed before queueing: a run driven at once still streams its text live.
        let (run, follower) = engine
            .submit_followed(&caller.tenant, &session, input, Default::default(), policy)
            .await?;
        let stream = RunStream {
            created: Some(run),
            follower,
            usage: None,
            over: false,
        };
        return Ok(sse::respond(&state, sse::batches(stream)).into_response());
    }
    let run = engine
        .submit_with(&caller.tenant, &session, input, Default::default(), policy)
        .await?;
    if body.mode == SendMode::Background {
        return Ok((StatusCode::ACCEPTED, Json(RunView::new(run, None))).into_response());
    }
    let run = progress::wait(&state, &caller.tenant, &run.id).await?;
    if run.status.is_resting() {
        Ok(Json(super::runs::view(&state, run).await).into_response())
    } else {
        Ok(Json(RunView::new(run, None)).into_response())
    }
}

/// A run as the native stream mode's events.
struct RunStream {
    /// The queued run, announced first.
    created: Option<RunRecord>,
    follower: RunFollower,
    /// The run's usage, from its `run_completed` event.
    usage: Option<Usage>,
    over: bool,
}

impl Batches for RunStream {
    async fn next_batch(&mut self) -> Option<Vec<SseEvent>> {
        if let Some(run) = self.created.take() {
            return Some(vec![event("run.created", &RunView::new(run, None))]);
        }
        if self.over {
            return None;
        }
        let run = self.follower.run().clone();
        let progress = match self.follower.next().await? {
            Ok(progress) => progress,
            Err(e) => {
                self.over = true;
                return Some(vec![error_event(&e.into())]);
            }
        };
        if let Some(error) = stalled(&run, &progress) {
            self.over = true;
            return Some(vec![match progress {
                RunProgress::Halted { error } => {
                    event("run.halted", &json!({"run_id": run, "error": error}))
                }
                _ => error_event(&error),
            }]);
        }
        Some(match progress {
            RunProgress::Text {
                step,
                attempt,
                text,
            } => vec![event(
                "text.delta",
                &json!({"run_id": run, "step": step, "attempt": attempt, "text": text}),
            )],
            RunProgress::TextReset { step } => {
                vec![event("text.reset", &json!({"run_id": run, "step": step}))]
            }
            RunProgress::Event(logged) => match &logged.body {
                EventBody::RunStarted { .. } => {
                    vec![event("run.started", &json!({"run_id": run}))]
                }
                EventBody::ToolCalled {
                    call_id,
                    name,
                    arguments,
                    ..
                } => vec![event(
                    "tool.call",
                    &json!({"run_id": run, "call_id": call_id, "name": name, "arguments": arguments}),
                )],
                EventBody::ToolReturned {
                    call_id,
                    content,
                    is_error,
                    ..
                } => vec![event(
                    "tool.result",
                    &json!({"run_id": run, "call_id": call_id, "content": content, "is_error": is_error}),
                )],
                EventBody::ModelFailed {
                    step,
                    attempt,
                    error,
                    retryable,
                    ..
                } => vec![event(
                    "model.failed",
                    &json!({"run_id": run, "step": step, "attempt": attempt, "error": error, "retryable": retryable}),
                )],
                EventBody::ApprovalRequested { calls, .. } => vec![event(
                    "approval.requested",
                    &json!({"run_id": run, "calls": calls}),
                )],
                EventBody::RunCompleted { usage, .. } => {
                    self.usage = Some(*usage);
                    vec![]
                }
                _ => vec![],
            },
            RunProgress::Ended(record) => {
                self.over = true;
                let name = format!("run.{}", record.status.as_str());
                vec![event(
                    &name,
                    &RunView::new(*record, self.usage.map(Into::into)),
                )]
            }
            RunProgress::Halted { .. } | RunProgress::NotStarted { .. } => vec![],
        })
    }
}

/// The `error` event a native stream ends with.
pub(crate) fn error_event(error: &ApiError) -> SseEvent {
    event(
        "error",
        &json!({"error": {"code": error.code, "message": error.message}}),
    )
}
