//! A session carried between deployments in the `keel.session/1` format
//! (`docs/session-format.md`): `GET /v1/sessions/{id}/export` writes it as JSON lines, `POST
//! /v1/sessions/import` creates the session it holds under the caller's tenant. One call each.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use keel_core::SessionId;

use crate::auth::Caller;
use crate::error::{ApiError, ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;
use crate::wire::SessionView;

/// The media type of an export.
const NDJSON: &str = "application/x-ndjson";

/// Export a session: a header line (the session and its pinned agent), its events as stored
/// with their hash records, its scratchpad, timers and unfinished runs, and an end line.
#[utoipa::path(get, path = "/v1/sessions/{id}/export", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 200, body = String, content_type = "application/x-ndjson"),
        (status = 404, body = ErrorEnvelope)))]
pub async fn export(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Response> {
    let id: SessionId = parse_id("session", &id)?;
    let lines = state
        .engine
        .store()
        .export_session(&caller.tenant, &id)
        .await?;
    let chunks = lines.into_iter().map(|mut line| {
        line.push('\n');
        Ok::<_, std::convert::Infallible>(line)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, NDJSON)
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// Import a session from an export: the whole file is checked first (format version, every
/// line, seqs, the hash chain, the end line), then the session is created with the same id,
/// its log, scratchpad, timers and unfinished runs in one write. 409 when it exists.
#[utoipa::path(post, path = "/v1/sessions/import", tag = "sessions",
    request_body(content = String, content_type = "application/x-ndjson"),
    responses((status = 201, body = SessionView), (status = 400, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::invalid(
            "invalid_request",
            format!("the export is not UTF-8 text: {e}"),
        )
    })?;
    let record = state.engine.import_session(&caller.tenant, text).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}
