//! Where a response goes: a conversation, the session of the previous response (or a branch
//! of it when it is not the session's latest, or when another response is chained onto it
//! meanwhile), or a new session; `store: false` answers in a throwaway session.

use axum::http::StatusCode;
use keel_core::{EventBody, SessionId, TenantId};
use keel_engine::{BusyPolicy, EngineError};
use keel_store::RunRecord;
use serde_json::Map;

use super::Failure;
use super::agent::responses_agent;
use super::object::status_name;
use super::request::Request;
use super::request::refuse;
use crate::error::ApiError;
use crate::openai::fields::FieldError;
use crate::openai::items;
use crate::state::AppState;

/// A queued response and how to answer for it.
pub(super) struct Started {
    pub run: RunRecord,
    pub stream: bool,
    pub background: bool,
    /// The session to delete once answered (`store: false`).
    pub discard: Option<SessionId>,
}

/// Queues the response where it goes.
pub(super) async fn start(
    state: &AppState,
    tenant: &TenantId,
    request: Request,
) -> Result<Started, Failure> {
    let engine = &state.engine;
    let Request {
        options,
        input: last,
        store,
        conversation,
        previous_response_id,
        stream,
        background,
    } = request;
    let model = options.model.clone().unwrap_or_default();
    // Where the response goes: a conversation, the session of the previous response (or a
    // branch of it), or a new session.
    let (session, policy, fork_from) = if let Some(conv) = &conversation {
        let not_found = || {
            let message = format!("Conversation with id '{conv}' not found.");
            let error = ApiError::new(StatusCode::NOT_FOUND, "conversation_not_found", message);
            Failure::Api(error, Some("conversation".into()))
        };
        let session = items::parse_conversation_id(conv).ok_or_else(not_found)?;
        let store = engine.store();
        if store
            .get_session(tenant, &session)
            .await
            .map_err(ApiError::from)?
            .is_none()
        {
            return Err(not_found());
        }
        (session, BusyPolicy::Enqueue, None)
    } else if let Some(previous) = &previous_response_id {
        let (session, upto) = previous_point(state, tenant, previous).await?;
        (session, BusyPolicy::Reject, Some(upto))
    } else {
        let agent = responses_agent(state, tenant, &model).await?;
        let record = engine
            .create_session(tenant, &agent.name, Map::new())
            .await?;
        (record.id, BusyPolicy::Enqueue, None)
    };
    let mut session = session;
    let mut discard = None;
    if !store {
        if let Some(upto) = fork_from {
            // The stored conversation stays as it was: answer in a throwaway branch.
            session = engine
                .fork_session(tenant, &session, upto.seq, Map::new())
                .await?
                .id;
        }
        discard = Some(session.clone());
    } else if let Some(upto) = fork_from
        && !upto.is_last
    {
        // The previous response is not its session's last: branch at it.
        session = engine
            .fork_session(tenant, &session, upto.seq, Map::new())
            .await?
            .id;
    }
    let submitted = engine
        .submit_with(tenant, &session, last.clone(), options.clone(), policy)
        .await;
    let run = match (submitted, fork_from) {
        (Ok(run), _) => run,
        // Another response was chained onto the same one meanwhile: branch instead.
        (Err(EngineError::Busy { .. }), Some(upto)) => {
            let branch = engine
                .fork_session(tenant, &session, upto.seq, Map::new())
                .await?
                .id;
            engine
                .submit_with(tenant, &branch, last, options, BusyPolicy::Enqueue)
                .await
                .map_err(input_failure)?
        }
        (Err(e), _) => return Err(input_failure(e)),
    };
    Ok(Started {
        run,
        stream,
        background,
        discard,
    })
}

/// Engine refusals of an input (unanswered tool calls) are about `input`.
fn input_failure(e: EngineError) -> Failure {
    match e {
        EngineError::Invalid(message) => Failure::Param(FieldError::invalid("input", message)),
        other => other.into(),
    }
}

/// Where a previous response left its session.
#[derive(Clone, Copy)]
struct Point {
    /// The seq of the event that ended the response's run.
    seq: u64,
    /// Whether nothing was logged after it.
    is_last: bool,
}

async fn previous_point(
    state: &AppState,
    tenant: &TenantId,
    previous: &str,
) -> Result<(SessionId, Point), Failure> {
    let not_found = || {
        Failure::Api(
            ApiError::new(
                StatusCode::NOT_FOUND,
                "previous_response_not_found",
                format!("Previous response with id '{previous}' not found."),
            ),
            Some("previous_response_id".into()),
        )
    };
    let run_id = items::parse_response_id(previous).ok_or_else(not_found)?;
    let run = match state.engine.get_run(tenant, &run_id).await {
        Ok(run) => run,
        Err(EngineError::NotFound { .. }) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    if !run.status.is_terminal() {
        return Err(refuse("previous_response_id", format!("response {previous} is still {}: wait for it to finish (or cancel it) before continuing from it", status_name(run.status, false))).into());
    }
    let events = state.engine.run_events(&run).await?;
    let Some(end) = events.last().filter(|e| is_run_end(&e.body)) else {
        return Err(not_found());
    };
    let (record, _) = state.engine.session_state(tenant, &run.session).await?;
    Ok((
        run.session,
        Point {
            seq: end.seq,
            is_last: record.last_seq == end.seq,
        },
    ))
}

fn is_run_end(body: &EventBody) -> bool {
    matches!(
        body,
        EventBody::RunCompleted { .. }
            | EventBody::RunFailed { .. }
            | EventBody::RunCancelled { .. }
    )
}
