//! Queues a read request as the next turn of its thread (`Engine::continue_thread` owns the
//! rules: conversation, previous response or new session, branches, throwaway sessions) and
//! words the engine's refusals as OpenAI does, each about the parameter it concerns.

use axum::http::StatusCode;
use keel_core::{SessionId, TenantId};
use keel_engine::{EngineError, RunFollower, Thread, ThreadError};
use keel_store::RunRecord;

use super::Failure;
use super::agent::responses_agent;
use super::object::status_name;
use super::request::{Request, refuse};
use crate::error::ApiError;
use crate::openai::fields::FieldError;
use crate::openai::items;
use crate::state::AppState;

/// A queued response and how to answer for it.
pub(super) struct Started {
    pub run: RunRecord,
    /// The run's follower, subscribed before it was queued.
    pub follower: RunFollower,
    pub stream: bool,
    pub background: bool,
    /// The session to delete once answered (`store: false`).
    pub discard: Option<SessionId>,
}

/// Queues the response where its thread goes on.
pub(super) async fn start(
    state: &AppState,
    tenant: &TenantId,
    request: Request,
) -> Result<Started, Failure> {
    let thread = if let Some(conversation) = &request.conversation {
        let session = items::parse_conversation_id(conversation)
            .ok_or_else(|| conversation_not_found(conversation))?;
        Thread::Conversation(session)
    } else if let Some(previous) = &request.previous_response_id {
        let run = items::parse_response_id(previous).ok_or_else(|| previous_not_found(previous))?;
        Thread::After(run)
    } else {
        let model = request.options.model.as_deref().unwrap_or_default();
        let agent = responses_agent(state, tenant, model).await?;
        Thread::New { agent: agent.name }
    };
    let turn = state
        .engine
        .continue_thread(
            tenant,
            thread,
            request.input,
            request.options,
            request.store,
        )
        .await
        .map_err(|e| refusal(e, &request.conversation, &request.previous_response_id))?;
    Ok(Started {
        run: turn.run,
        follower: turn.follower,
        stream: request.stream,
        background: request.background,
        discard: turn.discard,
    })
}

/// An engine refusal as OpenAI words it.
fn refusal(e: ThreadError, conversation: &Option<String>, previous: &Option<String>) -> Failure {
    let previous = previous.as_deref().unwrap_or_default();
    match e {
        ThreadError::NotFound { .. } => match conversation {
            Some(conversation) => conversation_not_found(conversation),
            None => previous_not_found(previous),
        },
        ThreadError::Unfinished { status, .. } => refuse(
            "previous_response_id",
            format!(
                "response {previous} is still {}: wait for it to finish (or cancel it) before continuing from it",
                status_name(status, false)
            ),
        )
        .into(),
        // Engine refusals of an input (unanswered tool calls) are about `input`.
        ThreadError::Input(EngineError::Invalid(message)) => {
            Failure::Param(FieldError::invalid("input", message))
        }
        ThreadError::Input(e) | ThreadError::Engine(e) => e.into(),
    }
}

fn conversation_not_found(id: &str) -> Failure {
    let message = format!("Conversation with id '{id}' not found.");
    let error = ApiError::new(StatusCode::NOT_FOUND, "conversation_not_found", message);
    Failure::Api(error, Some("conversation".into()))
}

fn previous_not_found(id: &str) -> Failure {
    let message = format!("Previous response with id '{id}' not found.");
    let error = ApiError::new(
        StatusCode::NOT_FOUND,
        "previous_response_not_found",
        message,
    );
    Failure::Api(error, Some("previous_response_id".into()))
}
