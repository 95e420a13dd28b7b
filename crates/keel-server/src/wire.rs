//! The API's request and response bodies: the JSON shapes clients see, with their OpenAPI
//! schemas. Core types (messages, tools, events) appear as open JSON objects so their own
//! serde shapes stay the single definition.

use keel_core::{AgentDef, Limits, Message, SessionState, ToolDef, Usage};
use keel_store::{ExportMark, RunRecord, SessionRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

type JsonObject = serde_json::Map<String, serde_json::Value>;

/// A new agent (`POST /v1/agents`) or a new version of one (`PUT /v1/agents/{name}`, where
/// the name comes from the path).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentBody {
    /// Unique in the tenant; required by `POST`, ignored by `PUT`.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub instructions: String,
    /// A route name or `provider/model`, e.g. `openai/gpt-4o-mini`.
    pub model: String,
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ToolDef>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub limits: Option<Limits>,
}

#[derive(Serialize, ToSchema)]
pub struct AgentView {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub instructions: String,
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub tools: Vec<ToolDef>,
    #[schema(value_type = Object)]
    pub limits: Limits,
}

impl From<AgentDef> for AgentView {
    fn from(a: AgentDef) -> Self {
        AgentView {
            id: a.id.to_string(),
            name: a.name,
            version: a.version,
            instructions: a.instructions,
            model: a.model,
            tools: a.tools,
            limits: a.limits,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct AgentList {
    pub data: Vec<AgentView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// The agent's name; the session pins its latest version.
    pub agent: String,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
}

/// The body of `POST /v1/sessions/{id}/fork`.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ForkSession {
    /// Copy the log up to and including this seq (it must end between runs); default: all.
    pub at_seq: Option<u64>,
    /// The new session's metadata (the source's is not copied).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
}

/// What the model received at a seq (`GET /v1/sessions/{id}/context`).
#[derive(Serialize, ToSchema)]
pub struct ContextView {
    pub session: String,
    pub at_seq: u64,
    /// The run in progress at that seq; `null` between runs.
    pub run_id: Option<String>,
    /// The configured provider (or route) and model that would serve it.
    pub served_by: String,
    /// The normalized model request: `model`, `system`, `messages`, `tools`, `params`.
    #[schema(value_type = Object)]
    pub request: serde_json::Value,
}

impl From<keel_engine::SessionContext> for ContextView {
    fn from(c: keel_engine::SessionContext) -> Self {
        ContextView {
            session: c.session.to_string(),
            at_seq: c.at_seq,
            run_id: c.run_id.map(|r| r.to_string()),
            served_by: c.served_by,
            request: serde_json::to_value(&c.request).unwrap_or_default(),
        }
    }
}

/// What walking a session's hash chain found (`GET /v1/sessions/{id}/verify`).
#[derive(Serialize, ToSchema)]
pub struct ChainView {
    pub session: String,
    /// How each event's hash record is made: `sha256` over the previous record, the seq, the
    /// time, the type and the body as stored (docs: the README's "Tamper-evident journal").
    pub algorithm: String,
    /// Events read.
    pub events: u64,
    /// Events at the start stored before keel hashed its journal (no record to check).
    pub unhashed: u64,
    pub intact: bool,
    /// The first event whose record does not match: where the stored log was changed.
    pub first_bad_seq: Option<u64>,
    pub problem: Option<String>,
    /// The record of the last event that checked out (`sha256:…`): the chain's tip when
    /// intact. Kept elsewhere, it shows a later rewrite of the whole chain too.
    pub last_record: Option<String>,
}

impl From<keel_store::ChainReport> for ChainView {
    fn from(r: keel_store::ChainReport) -> Self {
        ChainView {
            session: r.session.to_string(),
            algorithm: r.algorithm.to_string(),
            events: r.events,
            unhashed: r.unhashed,
            intact: r.intact,
            first_bad_seq: r.first_bad_seq,
            problem: r.problem,
            last_record: r.last_record,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionView {
    pub id: String,
    pub agent: String,
    pub agent_version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    #[schema(value_type = Object)]
    pub metadata: JsonObject,
    pub last_seq: u64,
    /// The first user message, shortened; `null` before the first.
    pub title: Option<String>,
}

impl From<SessionRecord> for SessionView {
    fn from(s: SessionRecord) -> Self {
        SessionView {
            id: s.id.to_string(),
            agent: s.agent_name,
            agent_version: s.agent_version,
            created_at: s.created_at.to_string(),
            metadata: s.metadata,
            last_seq: s.last_seq,
            title: None,
        }
    }
}

#[derive(Serialize, ToSchema, Default, Clone, Copy)]
pub struct UsageView {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl From<Usage> for UsageView {
    fn from(u: Usage) -> Self {
        UsageView {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
        }
    }
}

/// A session's state, folded from its log.
#[derive(Serialize, ToSchema)]
pub struct SessionSummary {
    #[serde(flatten)]
    pub session: SessionView,
    /// `idle` or `running`.
    pub status: String,
    pub message_count: u64,
    pub runs_finished: u64,
    pub usage: UsageView,
    /// The run in progress, if any.
    pub active_run: Option<String>,
    /// When the session was moved out of this keel, and where to if the mover said; `null`
    /// for a session that is here. A moved session takes no new input here.
    pub moved: Option<MovedView>,
}

#[derive(Serialize, ToSchema)]
pub struct MovedView {
    /// RFC 3339, UTC.
    pub at: String,
    pub to: Option<String>,
}

impl From<ExportMark> for MovedView {
    fn from(mark: ExportMark) -> Self {
        MovedView {
            at: mark.at.to_string(),
            to: mark.to,
        }
    }
}

impl SessionSummary {
    pub fn new(record: SessionRecord, state: SessionState) -> Self {
        let status = match state.active {
            Some(_) => "running",
            None => "idle",
        };
        let mut session = SessionView::from(record);
        session.last_seq = state.last_seq;
        SessionSummary {
            session,
            status: status.into(),
            message_count: state.message_count,
            runs_finished: state.runs_finished,
            usage: state.usage.into(),
            active_run: state.active.map(|r| r.run_id.to_string()),
            moved: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub data: Vec<SessionView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum SendMode {
    /// Answer with the finished run.
    #[default]
    Wait,
    /// Answer with a server-sent event stream of the run.
    Stream,
    /// Answer 202 with the queued run at once.
    Background,
}

#[derive(Deserialize, ToSchema, Clone, Copy, Default, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum OnBusy {
    /// Run after the session's pending runs.
    #[default]
    Enqueue,
    /// Answer 409 when the session has a pending run.
    Reject,
    /// Cancel the pending runs (the active one at its next step boundary), then run this.
    Interrupt,
}

impl From<OnBusy> for keel_engine::BusyPolicy {
    fn from(b: OnBusy) -> Self {
        match b {
            OnBusy::Enqueue => keel_engine::BusyPolicy::Enqueue,
            OnBusy::Reject => keel_engine::BusyPolicy::Reject,
            OnBusy::Interrupt => keel_engine::BusyPolicy::Interrupt,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The user's text.
    pub content: String,
    #[serde(default)]
    pub mode: SendMode,
    #[serde(default)]
    pub on_busy: OnBusy,
}

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

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub created_at: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// `tenant` (the default) or `admin`.
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyView {
    pub prefix: String,
    pub tenant_id: String,
    pub scope: String,
    pub created_at: String,
    pub revoked: bool,
    /// The whole key, shown only when it is created.
    pub key: Option<String>,
}

/// A stored record keel cannot decode (damaged, or written by a newer keel); it is isolated.
#[derive(Serialize, ToSchema)]
pub struct UnreadableView {
    /// `agent`, `session`, `run`, `event` (id `ses_…#seq`) or `snapshot`.
    pub kind: String,
    pub id: String,
    pub tenant_id: Option<String>,
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct UnreadableList {
    pub data: Vec<UnreadableView>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
}
