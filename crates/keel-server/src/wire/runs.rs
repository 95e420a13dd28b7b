//! Runs: one shown with its steps and the calls it waits on, a list of them, the decisions
//! that resume a waiting one, and a page of a session's events.

use keel_core::{Message, Usage};
use keel_store::RunRecord;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::UsageView;

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub data: Vec<RunView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub session_id: String,
    /// `queued`, `running`, `waiting` (for a person: see `pending_approvals`), `completed`,
    /// `failed` or `cancelled`.
    pub status: String,
    #[schema(value_type = Object)]
    pub input: Message,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub created_at: String,
    /// Token usage: the sum of the steps the run logged (null before any was read).
    pub usage: Option<UsageView>,
    /// The configured `provider/model` that served the run's last step (null before one did).
    pub model: Option<String>,
    /// Each model call that replied, in order: who served it and what it used.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepView>,
    /// While `waiting`: the calls a person must decide on, each `{call_id, name, arguments}`
    /// (`POST /v1/runs/{id}/resume`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub pending_approvals: Vec<keel_core::ApprovalRequest>,
}

/// `POST /v1/runs/{id}/resume`: a decision per waiting call, e.g.
/// `{"call_id": "call_1", "decision": "approve", "arguments": {…}}`,
/// `{"call_id": "call_2", "decision": "reject", "reason": "…"}` or
/// `{"call_id": "call_3", "decision": "answer", "answer": "…"}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRun {
    #[schema(value_type = Vec<Object>)]
    pub decisions: Vec<keel_engine::CallDecision>,
}

/// One model call of a run, from its `model_replied` event.
#[derive(Serialize, ToSchema)]
pub struct StepView {
    pub step: u32,
    /// The configured `provider/model` that served it.
    pub model: String,
    /// That provider's kind (`openai`, `anthropic`, `local`, …); absent for older steps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_kind: Option<String>,
    /// The route and target index that served it, when a route did (`route#index`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub usage: UsageView,
    /// Its price in US dollars from the model catalog, when the model is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

impl RunView {
    pub fn new(r: RunRecord, usage: Option<UsageView>) -> Self {
        RunView {
            id: r.id.to_string(),
            session_id: r.session.to_string(),
            status: r.status.as_str().into(),
            input: r.input,
            output: r.output,
            error: r.error,
            cancel_requested: r.cancel_requested,
            created_at: r.created_at.to_string(),
            usage,
            model: None,
            steps: Vec::new(),
            pending_approvals: Vec::new(),
        }
    }

    /// The run with the usage and the serving model of each step it logged (`events`: the
    /// run's events, as `Engine::run_events` reads them).
    pub fn from_log(r: RunRecord, events: &[keel_core::Event]) -> Self {
        let mut total = Usage::default();
        let steps: Vec<StepView> = events
            .iter()
            .filter_map(|e| match &e.body {
                keel_core::EventBody::ModelReplied {
                    step,
                    usage,
                    model,
                    provider_kind,
                    target,
                    cost_usd,
                    ..
                } => {
                    total.add(usage);
                    Some(StepView {
                        step: *step,
                        model: model.clone(),
                        provider_kind: provider_kind.clone(),
                        target: target.clone(),
                        usage: (*usage).into(),
                        cost_usd: *cost_usd,
                    })
                }
                _ => None,
            })
            .collect();
        RunView {
            model: steps.last().map(|s| s.model.clone()),
            steps,
            ..RunView::new(r, Some(total.into()))
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct EventPage {
    /// Events in seq order, each `{seq, at, type, ...}`.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<keel_core::Event>,
    /// The last seq returned (or the `after` asked for): pass it as `after` for the next page.
    pub next_after: u64,
}
