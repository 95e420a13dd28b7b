//! A session's schedules: `GET`/`POST /v1/sessions/{id}/schedules` and `DELETE
//! /v1/sessions/{id}/schedules/{schedule_id}`. Each fire starts a run on the session with the
//! schedule's note as input (the engine's timers, fired once per due time across nodes).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::{SessionId, TimerId};
use keel_engine::When;
use keel_store::{Schedule, TimerRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;

/// The body of `POST /v1/sessions/{id}/schedules`: exactly one of `at`, `after_secs`, `cron`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchedule {
    /// Once, at this RFC 3339 instant (any offset).
    pub at: Option<String>,
    /// Once, this many seconds from now.
    pub after_secs: Option<u64>,
    /// At every slot of this 5-field cron pattern (minute hour day-of-month month
    /// day-of-week).
    pub cron: Option<String>,
    /// The IANA time zone `cron` is read in (default `UTC`).
    pub timezone: Option<String>,
    /// What the run it starts is told.
    pub note: String,
}

/// A schedule of a session.
#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    pub id: String,
    pub session: String,
    /// `{"kind": "once", "at": …}` or `{"kind": "cron", "expr": …, "timezone": …}`.
    #[schema(value_type = Object)]
    pub schedule: Schedule,
    pub note: String,
    /// When it fires next; `null` once done.
    pub next_at: Option<String>,
    pub created_at: String,
    /// How many times it fired, and when last.
    pub fired: u64,
    pub last_fired_at: Option<String>,
}

impl From<TimerRecord> for ScheduleView {
    fn from(t: TimerRecord) -> Self {
        ScheduleView {
            id: t.id.to_string(),
            session: t.session.to_string(),
            schedule: t.schedule,
            note: t.note,
            next_at: t.next_at.map(|at| at.to_string()),
            created_at: t.created_at.to_string(),
            fired: t.fired,
            last_fired_at: t.last_fired_at.map(|at| at.to_string()),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub data: Vec<ScheduleView>,
}

/// Add a schedule to a session: once at an instant or after a delay, or on a cron pattern in
/// a time zone. Slots missed while no keel node ran fire once, late, saying so in the input.
#[utoipa::path(post, path = "/v1/sessions/{id}/schedules", tag = "sessions", request_body = CreateSchedule,
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 201, body = ScheduleView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope, description = "the session holds the most schedules it may")))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let id: SessionId = parse_id("session", &id)?;
    let when = match (body.at, body.after_secs, body.cron) {
        (Some(at), None, None) => When::At(keel_engine::parse_instant(&at)?),
        (None, Some(secs), None) => When::After(Duration::from_secs(secs)),
        (None, None, Some(expr)) => When::Cron {
            expr,
            timezone: body.timezone.unwrap_or_else(|| "UTC".into()),
        },
        _ => {
            return Err(ApiError::invalid(
                "invalid_schedule",
                "give exactly one of `at` (an RFC 3339 instant), `after_secs` or `cron`",
            ));
        }
    };
    let timer = state
        .engine
        .add_timer(&caller.tenant, &id, when, body.note)
        .await?;
    Ok((StatusCode::CREATED, Json(timer.into())))
}

/// A session's schedules, those still to fire first (soonest first), then those done.
#[utoipa::path(get, path = "/v1/sessions/{id}/schedules", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)")),
    responses((status = 200, body = ScheduleList), (status = 404, body = ErrorEnvelope)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult<Json<ScheduleList>> {
    let id: SessionId = parse_id("session", &id)?;
    let timers = state.engine.list_timers(&caller.tenant, &id).await?;
    Ok(Json(ScheduleList {
        data: timers.into_iter().map(Into::into).collect(),
    }))
}

/// Delete a schedule of a session.
#[utoipa::path(delete, path = "/v1/sessions/{id}/schedules/{schedule_id}", tag = "sessions",
    params(("id" = String, Path, description = "the session id (`ses_…`)"),
        ("schedule_id" = String, Path, description = "the schedule id (`tmr_…`)")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((id, schedule)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    let id: SessionId = parse_id("session", &id)?;
    let schedule: TimerId = parse_id("schedule", &schedule)?;
    state
        .engine
        .delete_timer(&caller.tenant, &id, &schedule)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
