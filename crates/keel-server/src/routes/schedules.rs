//! Schedules of a session (`GET`/`POST /v1/sessions/{id}/schedules`, `DELETE
//! /v1/sessions/{id}/schedules/{schedule_id}`) and of an agent (the same under
//! `/v1/agents/{name}/schedules`). Each fire of a session's starts a run on the session, each
//! fire of an agent's a new session of the agent, with the schedule's note as input (the
//! engine's timers, fired once per due time across nodes).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use keel_core::{SessionId, TimerId};
use keel_engine::When;
use keel_store::{Schedule, TimerOwner, TimerRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath, ApiResult, ErrorEnvelope, parse_id};
use crate::state::AppState;

/// The body of `POST /v1/sessions/{id}/schedules` and `POST /v1/agents/{name}/schedules`:
/// exactly one of `at`, `after_secs`, `cron`.
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

impl CreateSchedule {
    /// When it fires, as the engine takes it; 400 unless exactly one of the three is given.
    fn when(self) -> Result<(When, String), ApiError> {
        let when = match (self.at, self.after_secs, self.cron) {
            (Some(at), None, None) => When::At(keel_engine::parse_instant(&at)?),
            (None, Some(secs), None) => When::After(Duration::from_secs(secs)),
            (None, None, Some(expr)) => When::Cron {
                expr,
                timezone: self.timezone.unwrap_or_else(|| "UTC".into()),
            },
            _ => {
                return Err(ApiError::invalid(
                    "invalid_schedule",
                    "give exactly one of `at` (an RFC 3339 instant), `after_secs` or `cron`",
                ));
            }
        };
        Ok((when, self.note))
    }
}

/// A schedule of a session or of an agent.
#[derive(Serialize, ToSchema)]
pub struct ScheduleView {
    pub id: String,
    /// The session it starts runs on (`null` for an agent's schedule).
    pub session: Option<String>,
    /// The agent it starts new sessions of (`null` for a session's schedule).
    pub agent: Option<String>,
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
            session: t.owner.session().map(ToString::to_string),
            agent: t.owner.agent().map(str::to_string),
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
    add(&state, &caller, session(&id)?, body).await
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
    listed(&state, &caller, session(&id)?).await
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
    deleted(&state, &caller, session(&id)?, &schedule).await
}

/// Add a schedule to an agent: each time it fires, a new session of the agent (its latest
/// version then) starts with one run, the note as its input. Once at an instant or after a
/// delay, or on a cron pattern in a time zone; slots missed while no keel node ran fire once,
/// late, saying so. Archiving the agent deletes its schedules.
#[utoipa::path(post, path = "/v1/agents/{name}/schedules", tag = "agents", request_body = CreateSchedule,
    params(("name" = String, Path, description = "the agent's name")),
    responses((status = 201, body = ScheduleView), (status = 400, body = ErrorEnvelope), (status = 404, body = ErrorEnvelope),
        (status = 429, body = ErrorEnvelope, description = "the agent holds the most schedules it may")))]
pub async fn create_for_agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    add(&state, &caller, TimerOwner::Agent(name), body).await
}

/// An agent's schedules, those still to fire first (soonest first), then those done.
#[utoipa::path(get, path = "/v1/agents/{name}/schedules", tag = "agents",
    params(("name" = String, Path, description = "the agent's name")),
    responses((status = 200, body = ScheduleList), (status = 404, body = ErrorEnvelope)))]
pub async fn list_for_agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult<Json<ScheduleList>> {
    listed(&state, &caller, TimerOwner::Agent(name)).await
}

/// Delete a schedule of an agent.
#[utoipa::path(delete, path = "/v1/agents/{name}/schedules/{schedule_id}", tag = "agents",
    params(("name" = String, Path, description = "the agent's name"),
        ("schedule_id" = String, Path, description = "the schedule id (`tmr_…`)")),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_for_agent(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath((name, schedule)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    deleted(&state, &caller, TimerOwner::Agent(name), &schedule).await
}

/// The owner a session path names; 400 for an id that is not a session's.
fn session(id: &str) -> Result<TimerOwner, ApiError> {
    Ok(TimerOwner::Session(parse_id::<SessionId>("session", id)?))
}

async fn add(
    state: &AppState,
    caller: &Caller,
    owner: TimerOwner,
    body: CreateSchedule,
) -> ApiResult<(StatusCode, Json<ScheduleView>)> {
    let (when, note) = body.when()?;
    let timer = state
        .engine
        .add_timer(&caller.tenant, &owner, when, note)
        .await?;
    Ok((StatusCode::CREATED, Json(timer.into())))
}

async fn listed(
    state: &AppState,
    caller: &Caller,
    owner: TimerOwner,
) -> ApiResult<Json<ScheduleList>> {
    let timers = state.engine.list_timers(&caller.tenant, &owner).await?;
    Ok(Json(ScheduleList {
        data: timers.into_iter().map(Into::into).collect(),
    }))
}

async fn deleted(
    state: &AppState,
    caller: &Caller,
    owner: TimerOwner,
    schedule: &str,
) -> ApiResult<StatusCode> {
    let schedule: TimerId = parse_id("schedule", schedule)?;
    state
        .engine
        .delete_timer(&caller.tenant, &owner, &schedule)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
