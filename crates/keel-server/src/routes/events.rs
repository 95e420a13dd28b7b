//! `GET /v1/sessions/{id}/events`: a page of the session's log, or — with `follow=true` or
//! `Accept: text/event-stream` — the log as server-sent events (`id` = seq) that go on live.
//! A follower resumes from `Last-Event-ID`; it follows through `Engine::follow_log`, so no
//! event is missed or repeated.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use keel_core::{SessionId, TenantId};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::routes::messages::error_event;
use crate::sse;
use crate::state::AppState;
use crate::wire::EventPage;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Only events with a greater seq (default 0: from the start).
    after: Option<u64>,
    /// Page size, 1..=1000 (default 100); ignored when following.
    limit: Option<usize>,
    /// Stream the log as server-sent events and keep following it.
    follow: Option<bool>,
}

/// A page of the session's event log, or (`follow=true`) a live SSE stream of it that resumes
/// from `Last-Event-ID`.
#[utoipa::path(get, path = "/v1/sessions/{id}/events", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)"), EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "resume a follow stream after this seq")),
    responses((status = 200, body = EventPage, description = "a page; with `follow` an SSE stream (`text/event-stream`)"),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let session: SessionId = parse_id("session", &id)?;
    state
        .engine
        .store()
        .get_session(&caller.tenant, &session)
        .await?
        .ok_or_else(|| ApiError::not_found("session", &id))?;
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let mut after = query.after.unwrap_or(0);
    if query.follow.unwrap_or(false) || wants_stream {
        if let Some(resume) = headers.get("last-event-id") {
            after = resume
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_last_event_id",
                        format!("Last-Event-ID {resume:?} is not an event seq this stream sent"),
                    )
                })?;
        }
        return follow(state, &caller.tenant, session, after).await;
    }
    let limit = super::paging::limit(query.limit, 100, 1000)?;
    let data = state
        .engine
        .store()
        .read_events(&session, after, limit)
        .await?;
    let next_after = data.last().map_or(after, |e| e.seq);
    Ok(Json(EventPage { data, next_after }).into_response())
}

/// The log from `after` on, as events named by type with `id` = seq.
async fn follow(
    state: Arc<AppState>,
    tenant: &TenantId,
    session: SessionId,
    after: u64,
) -> ApiResult<Response> {
    let follower = state.engine.follow_log(tenant, &session, after).await?;
    let events = follower.into_stream().scan(false, |failed, next| {
        if *failed {
            return futures::future::ready(None);
        }
        let event = match next {
            Ok(logged) => sse::event(logged.body.type_name(), &*logged).id(logged.seq.to_string()),
            Err(e) => {
                *failed = true;
                error_event(&e.into())
            }
        };
        futures::future::ready(Some(event))
    });
    Ok(sse::respond(&state, events).into_response())
}
