//! The `response` object: a run and the events it logged, rendered as OpenAI's Responses API
//! shows them (output items, usage, status, the failure as the provider reported it).

use axum::http::StatusCode;
use keel_core::{Event, EventBody, FinishReason, RunStatus, Usage};
use keel_store::RunRecord;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::openai::error::{ModelFailure, failure_error};
use crate::openai::items;

/// The `response` object for a run and the events it logged so far.
pub fn response_object(run: &RunRecord, events: &[Event]) -> Value {
    let a = &run.options.annotations;
    let note = |key: &str| a.get(key).cloned().unwrap_or(Value::Null);
    let client: Vec<&str> = run.options.client_tools().collect();
    let keep_call = |name: &str| client.contains(&name);
    let mut output = Vec::new();
    let mut usage = Usage::default();
    let mut last_finish = None;
    let mut failure = None;
    let mut model_failure = None;
    let mut served = None;
    for event in events {
        match &event.body {
            EventBody::ModelReplied {
                usage: u,
                finish,
                model,
                ..
            } => {
                usage.add(u);
                last_finish = Some(*finish);
                served = Some(model.clone());
                output.extend(
                    items::event_items(&run.session, event, &keep_call)
                        .into_iter()
                        .map(|(_, item)| item),
                );
            }
            EventBody::ContextCompacted { usage: u, .. } => {
                usage.add(u);
                output.extend(items::compaction_item(&run.session, event));
            }
            EventBody::ModelFailed { .. } => model_failure = Some(event),
            EventBody::RunFailed { code, error, .. } => {
                failure = Some((code.clone(), error.clone()))
            }
            _ => {}
        }
    }
    let incomplete =
        run.status == RunStatus::Completed && last_finish == Some(FinishReason::Length);
    let error = match failed_with(run, failure.as_ref(), model_failure) {
        Some(error) => json!({"code": error.code, "message": error.message}),
        None => Value::Null,
    };
    json!({
        "id": items::response_id(&run.id),
        "object": "response",
        "created_at": run.created_at.millis() / 1000,
        "status": status_name(run.status, incomplete),
        "background": note("background"),
        "error": error,
        "incomplete_details": if incomplete { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        "instructions": note("instructions"),
        "max_output_tokens": run.options.max_output_tokens,
        "metadata": a.get("metadata").cloned().unwrap_or(json!({})),
        // The model asked for, or (for a native run) the one that served it.
        "model": run.options.model.clone().or(served),
        "output": output,
        "parallel_tool_calls": a.get("parallel_tool_calls").cloned().unwrap_or(json!(true)),
        "previous_response_id": note("previous_response_id"),
        "conversation": note("conversation").as_str().map(|id| json!({"id": id})),
        "reasoning": {"effort": null, "summary": null},
        "store": a.get("store").cloned().unwrap_or(json!(true)),
        "temperature": run.options.temperature.unwrap_or(1.0),
        "top_p": run.options.top_p.unwrap_or(1.0),
        "text": a.get("text").cloned().unwrap_or(json!({"format": {"type": "text"}})),
        "tool_choice": a.get("tool_choice").cloned().unwrap_or(json!("auto")),
        "tools": a.get("tools").cloned().unwrap_or(json!([])),
        "truncation": run.options.truncation.as_str(),
        "usage": usage_object(&usage),
        "user": null,
    })
}

/// Why a failed run failed, as the API reports it: a model failure by what the provider said
/// (its status and code, kept in the `model_failed` event), anything else as keel's own.
pub(super) fn failed_with(
    run: &RunRecord,
    failure: Option<&(String, String)>,
    model_failure: Option<&Event>,
) -> Option<ApiError> {
    if run.status != RunStatus::Failed {
        return None;
    }
    match (failure, model_failure.map(|e| &e.body)) {
        (
            Some((code, _)),
            Some(EventBody::ModelFailed {
                error,
                kind,
                status,
                code: provider_code,
                retry_after_ms,
                ..
            }),
        ) if code == "model_error" => {
            let kind = kind.as_deref().and_then(keel_models::ModelErrorKind::parse);
            let (provider, message) = match (kind, error.split_once(": ")) {
                // Events written before kinds were kept hold only the text.
                (Some(_), Some((provider, rest))) => {
                    (provider, detail(rest, provider_code.as_deref()))
                }
                _ => ("keel", error.as_str()),
            };
            let failure = ModelFailure {
                kind,
                provider,
                status: *status,
                code: provider_code.as_deref(),
                message,
                retry_after: retry_after_ms.map(std::time::Duration::from_millis),
            };
            Some(failure_error(&failure, "input"))
        }
        (Some((code, message)), _) => Some(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            format!("{message} ({code})"),
        )),
        (None, _) => Some(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            run.error.clone().unwrap_or_default(),
        )),
    }
}

/// The provider's words in a stored failure text (`HTTP 400: … (code)` → `…`), as
/// `ModelError`'s `Display` wrote it.
fn detail<'a>(text: &'a str, code: Option<&str>) -> &'a str {
    let text = match text.strip_prefix("HTTP ") {
        Some(rest) => rest.split_once(": ").map_or(text, |(_, words)| words),
        None => text,
    };
    match code {
        Some(code) => text.strip_suffix(&format!(" ({code})")).unwrap_or(text),
        None => text,
    }
}

pub fn usage_object(usage: &Usage) -> Value {
    json!({
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total(),
    })
}

pub fn status_name(status: RunStatus, incomplete: bool) -> &'static str {
    match status {
        RunStatus::Queued => "queued",
        // Waiting for a person's decision is not done yet.
        RunStatus::Running | RunStatus::Waiting => "in_progress",
        RunStatus::Completed if incomplete => "incomplete",
        RunStatus::Completed => "completed",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    }
}
