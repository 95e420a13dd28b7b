//! `GET /v1/sessions/{id}/events`: a page of the session's log, or — with `follow=true` or
//! `Accept: text/event-stream` — the log as server-sent events (`id` = seq) that go on live.
//! A follower resumes from `Last-Event-ID`; it reads the store first, then the live
//! broadcast, de-duplicating by seq and re-reading the store on any gap or lag, so no event
//! is missed or repeated.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use keel_core::{Event, SessionId};
use keel_engine::{Engine, RunUpdate};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, parse_id};
use crate::routes::messages::{receiver_stream, sse};
use crate::state::AppState;
use crate::wire::EventPage;

/// Events read from the store per query while catching up.
const PAGE: usize = 500;

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
        return Ok(follow(state, session, after).into_response());
    }
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "invalid_limit",
            format!("limit must be between 1 and 1000, got {limit}"),
        ));
    }
    let data = state
        .engine
        .store()
        .read_events(&session, after, limit)
        .await?;
    let next_after = data.last().map_or(after, |e| e.seq);
    Ok(Json(EventPage { data, next_after }).into_response())
}

fn follow(
    state: Arc<AppState>,
    session: SessionId,
    after: u64,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let (tx, rx) = mpsc::channel(64);
    let mut shutdown = state.shutdown.clone();
    let follower = Follower {
        engine: state.engine.clone(),
        session,
        last: after,
        tx,
    };
    tokio::spawn(async move {
        tokio::select! {
            _ = follower.run() => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    });
    Sse::new(receiver_stream(rx)).keep_alive(KeepAlive::default())
}

struct Follower {
    engine: Engine,
    session: SessionId,
    /// The last seq sent.
    last: u64,
    tx: mpsc::Sender<SseEvent>,
}

/// Why following stopped.
enum Stop {
    ClientGone,
    Failed(ApiError),
}

impl Follower {
    async fn run(mut self) {
        if let Err(Stop::Failed(e)) = self.follow().await {
            let error = serde_json::json!({"error": {"code": e.code, "message": e.message}});
            let _ = self.tx.send(sse("error", &error)).await;
        }
    }

    async fn follow(&mut self) -> Result<(), Stop> {
        // Subscribed before reading the store: nothing logged in between is missed.
        let mut updates = self.engine.subscribe(&self.session);
        self.catch_up().await?;
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Ok(RunUpdate::Event(event)) => {
                        if event.seq == self.last + 1 {
                            self.send(&event).await?;
                        } else if event.seq > self.last {
                            self.catch_up().await?;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.catch_up().await?,
                    Err(RecvError::Closed) => {
                        updates = self.engine.subscribe(&self.session);
                        self.catch_up().await?;
                    }
                },
                // Covers events logged by another node, which this broadcast never sees.
                _ = poll.tick() => self.catch_up().await?,
                _ = self.tx.closed() => return Err(Stop::ClientGone),
            }
        }
    }

    /// Sends every stored event after the last one sent.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        loop {
            let events = self
                .engine
                .store()
                .read_events(&self.session, self.last, PAGE)
                .await
                .map_err(|e| Stop::Failed(e.into()))?;
            for event in &events {
                self.send(event).await?;
            }
            if events.len() < PAGE {
                return Ok(());
            }
        }
    }

    async fn send(&mut self, event: &Event) -> Result<(), Stop> {
        let sse_event = sse(event.body.type_name(), event).id(event.seq.to_string());
        self.tx
            .send(sse_event)
            .await
            .map_err(|_| Stop::ClientGone)?;
        self.last = event.seq;
        Ok(())
    }
}
