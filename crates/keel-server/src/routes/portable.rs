//! A session carried between deployments in the `keel.session/1` format
//! (`docs/session-format.md`): `GET /v1/sessions/{id}/export` writes a copy as JSON lines (no
//! side effect: for backups), `POST /v1/sessions/{id}/export` moves the session out (marked
//! exported, never driven here again) and writes it, `POST /v1/sessions/import` creates the
//! session a file holds under the caller's tenant (a `keel.session` file, or another system's:
//! `openai::items_file`). One engine call each.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use keel_core::SessionId;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Caller;
use crate::error::{
    ApiError, ApiPath, ApiQuery, ApiResult, ErrorEnvelope, OptionalApiJson, parse_id,
};
use crate::letta_file;
use crate::openai::items_file;
use crate::state::AppState;
use crate::wire::SessionView;

/// The media type of an export.
const NDJSON: &str = "application/x-ndjson";

/// Export a copy of a session: a header line (the session and its pinned agent), its events as
/// stored with their hash records, its scratchpad, timers and unfinished runs, and an end line.
/// Read-only: the session goes on here (`POST` to the same path moves it instead).
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
    ndjson(lines)
}

/// Where a moved session goes, as the mover names it (a URL or a name), kept with the mark.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveSession {
    /// Shown to whoever sends to the session here afterwards (at most 2,048 bytes).
    pub to: Option<String>,
}

/// Move a session out: mark it exported and answer its export, as `GET` would. From then on
/// this keel takes no new input, runs or schedules for it (409 `session_exported`, naming
/// where it went), never fires its timers, claims, resumes or cancels its runs; reading,
/// exporting again and deleting it still work. Refused with 409 `session_busy` while one of its
/// runs is running: move it once the run waits for a person or has ended. Moving a moved
/// session again answers the same file.
#[utoipa::path(post, path = "/v1/sessions/{id}/export", tag = "sessions",
    request_body(content = MoveSession, description = "optional"),
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 200, body = String, content_type = "application/x-ndjson"),
        (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope)))]
pub async fn move_out(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalApiJson(body): OptionalApiJson<MoveSession>,
) -> ApiResult<Response> {
    let id: SessionId = parse_id("session", &id)?;
    let to = body.unwrap_or_default().to;
    let lines = state
        .engine
        .move_session_out(&caller.tenant, &id, to)
        .await?;
    ndjson(lines)
}

/// The lines of an export as one `application/x-ndjson` body.
fn ndjson(lines: Vec<String>) -> ApiResult<Response> {
    let chunks = lines.into_iter().map(|mut line| {
        line.push('\n');
        Ok::<_, std::convert::Infallible>(line)
    });
    Response::builder()
        .header(header::CONTENT_TYPE, NDJSON)
        .body(Body::from_stream(futures::stream::iter(chunks)))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// What a file to import is, and how to read it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// `keel.session` (default); `openai-items`: an OpenAI conversation's items as the official
    /// SDK lists them (a page object or its `data` array); `letta-af`: a Letta agent file.
    format: Option<String>,
    /// For `openai-items`: the order they were listed in, `desc` (the SDK's default) or `asc`.
    order: Option<String>,
    /// For `openai-items`: the agent the new session pins (default `default`); for `letta-af`:
    /// the agent whose model, tools and limits the imported agent gets (default `default`).
    agent: Option<String>,
}

/// Import a session. A `keel.session` export: the whole file is checked first (format version,
/// every line, seqs, the hash chain, the end line), then the session is created with the same
/// id, its log, scratchpad, timers, unfinished runs and memory records in one write; 409 when
/// it exists. `format=openai-items`: a new session of `agent` whose transcript is the items'
/// messages, tool calls and their outputs, in one write.
#[utoipa::path(post, path = "/v1/sessions/import", tag = "sessions", params(ImportQuery),
    request_body(content = String, content_type = "application/x-ndjson"),
    responses((status = 201, body = SessionView), (status = 400, body = ErrorEnvelope),
        (status = 404, body = ErrorEnvelope), (status = 409, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope)))]
pub async fn import(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ImportQuery>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<SessionView>)> {
    match query.format.as_deref().unwrap_or("keel.session") {
        "keel.session" | "letta-af" if query.order.is_some() => {
            return Err(ApiError::invalid(
                "invalid_request",
                "`order` is for format=openai-items",
            ));
        }
        "keel.session" if query.agent.is_some() => {
            return Err(ApiError::invalid(
                "invalid_request",
                "`order` and `agent` are for format=openai-items: a keel.session file names its own",
            ));
        }
        "keel.session" => {}
        "openai-items" => {
            let messages = items_file::messages(&body, query.order.as_deref())?;
            let agent = query.agent.as_deref().unwrap_or("default");
            let record = state
                .engine
                .import_conversation(&caller.tenant, agent, Default::default(), messages)
                .await?;
            return Ok((StatusCode::CREATED, Json(record.into())));
        }
        "letta-af" => {
            let agent = letta_file::read(&body)?;
            let base = query.agent.as_deref().unwrap_or("default");
            let record = state
                .engine
                .import_agent_conversation(
                    &caller.tenant,
                    base,
                    &agent.name,
                    agent.instructions,
                    agent.blocks,
                    agent.messages,
                )
                .await?;
            return Ok((StatusCode::CREATED, Json(record.into())));
        }
        other => {
            return Err(ApiError::invalid(
                "invalid_request",
                format!(
                    "format {other:?} is not one keel imports: keel.session, openai-items or letta-af"
                ),
            ));
        }
    }
    let text = std::str::from_utf8(&body).map_err(|e| {
        ApiError::invalid(
            "invalid_request",
            format!("the export is not UTF-8 text: {e}"),
        )
    })?;
    let record = state.engine.import_session(&caller.tenant, text).await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}
