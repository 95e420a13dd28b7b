//! The session state machine. `SessionState::apply` folds one event into the state and
//! rejects any event that would break the log's invariants (a gap in `seq`, a second result
//! for one tool call, a run that ends twice); `decide` reads the state and names the next
//! action. Both are pure and total: same events in, same state and action out.
//!
//! The state keeps only what deciding needs (the active run, counters, the pinned agent), so
//! a snapshot stays small however long the session grows; the transcript is read from the
//! log itself.

use serde::{Deserialize, Serialize};

use crate::agent::AgentDef;
use crate::approval::{Approval, ApprovalRequest, Decision};
use crate::event::{Event, EventBody};
use crate::id::{RunId, TenantId};
use crate::message::{Message, Usage};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Seq 1 has not been applied yet.
    New,
    Idle,
    Running,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    /// Waiting for a person's decision on a tool call: no lease, no slot, until resumed.
    Waiting,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// Ended, or waiting for a person: nothing happens to it until someone acts, so a caller
    /// following it has what there is to have.
    pub fn is_resting(self) -> bool {
        self.is_terminal() || self == RunStatus::Waiting
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<RunStatus> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Waiting,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// A tool call the model asked for whose result is not logged yet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingToolCall {
    pub call_id: String,
    pub name: String,
    pub arguments: serde_json::Value,
    /// Set once the intent (`ToolCalled`) is logged: its idempotency key.
    pub idempotency_key: Option<String>,
    /// Set when a person must decide on the call before it is performed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
}

impl PendingToolCall {
    /// Whether keel may perform it now (no person is needed, or one approved).
    fn may_run(&self) -> bool {
        matches!(
            self.approval,
            None | Some(Approval::Decided {
                decision: Decision::Approve { .. }
            })
        )
    }

    /// The result a person's decision gives without performing the call, if any.
    fn decided_result(&self) -> Option<(String, bool)> {
        match &self.approval {
            Some(Approval::Decided { decision }) => decision.result(),
            _ => None,
        }
    }
}

/// The run in progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: RunId,
    /// The step in progress or last finished (1-based; 0 before the first model call).
    pub step: u32,
    /// Attempts made at the current step's model call.
    pub attempt: u32,
    /// A `ModelCalled` intent is logged without its result.
    pub model_pending: bool,
    /// The current step's model reply is logged.
    pub replied: bool,
    /// That reply asked for tools, so the model is called again once they return.
    pub reply_had_tools: bool,
    pub tools: Vec<PendingToolCall>,
    /// The text of the last model reply: the run's output when it finishes.
    pub last_text: String,
    pub usage: Usage,
    /// Set when the last model call failed for good.
    pub failure: Option<String>,
    /// Tools of this run that the caller performs (`ToolKind::Client`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_tools: Vec<String>,
    /// What the run's model steps have cost (the catalog's prices; unpriced steps count 0), for
    /// `require_approval = { run_cost_usd_over }`.
    #[serde(default, skip_serializing_if = "is_free")]
    pub cost_usd: f64,
    /// A compaction's intent is logged without its result: the transcript through this seq is
    /// being summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacting: Option<u64>,
}

impl RunState {
    fn is_client_tool(&self, name: &str) -> bool {
        self.client_tools.iter().any(|t| t == name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    pub tenant: Option<TenantId>,
    pub agent: Option<AgentDef>,
    pub last_seq: u64,
    pub status: SessionStatus,
    pub active: Option<RunState>,
    pub message_count: u64,
    pub runs_finished: u64,
    pub usage: Usage,
    pub last_run: Option<(RunId, RunStatus)>,
    /// Tool calls handed to the caller by the last run: the next input should carry their
    /// results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub awaiting: Vec<PendingToolCall>,
    /// The last seq the latest compaction covers (0: none): the context starts after it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub compacted_through: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_free(cost: &f64) -> bool {
    *cost == 0.0
}

impl Default for SessionState {
    fn default() -> Self {
        SessionState {
            tenant: None,
            agent: None,
            last_seq: 0,
            status: SessionStatus::New,
            active: None,
            message_count: 0,
            runs_finished: 0,
            usage: Usage::default(),
            last_run: None,
            awaiting: Vec::new(),
            compacted_through: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event seq {seq} ({event_type}) cannot follow the session's state: {reason}")]
pub struct ApplyError {
    pub seq: u64,
    pub event_type: &'static str,
    pub reason: String,
}

/// What the driver should do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// No run is active: wait for input.
    Idle,
    /// Call the model for `step`. Log `ModelCalled` first unless `intent_logged`.
    CallModel {
        run_id: RunId,
        step: u32,
        attempt: u32,
        intent_logged: bool,
    },
    /// Perform a tool call. Log `ToolCalled` first unless `call.idempotency_key` is set.
    CallTool {
        run_id: RunId,
        call: PendingToolCall,
    },
    /// Log `ApprovalRequested` for these calls: a person must decide on them.
    RequestApproval {
        run_id: RunId,
        calls: Vec<ApprovalRequest>,
    },
    /// Log `ToolReturned` with this result, which a person's decision gave (a rejection, an
    /// answer): nothing is performed.
    ReturnDecided {
        run_id: RunId,
        call_id: String,
        content: String,
        is_error: bool,
    },
    /// Summarise the transcript through `through_seq` and log `ContextCompacted` (its intent,
    /// `CompactionStarted`, is logged).
    Compact { run_id: RunId, through_seq: u64 },
    /// Nothing can be done until a person decides: the run waits (no lease, no slot).
    Wait { run_id: RunId },
    /// Log `RunCompleted` with this output.
    Finish { run_id: RunId, output: String },
    /// Log `RunFailed`.
    Fail {
        run_id: RunId,
        code: &'static str,
        error: String,
    },
}

impl SessionState {
    /// Folds events into a fresh (or snapshot) state.
    pub fn fold<'a>(
        mut self,
        events: impl IntoIterator<Item = &'a Event>,
    ) -> Result<Self, ApplyError> {
        for e in events {
            self.apply(e)?;
        }
        Ok(self)
    }

    /// Applies one event, or says why it cannot follow. On error the state is unchanged.
    pub fn apply(&mut self, event: &Event) -> Result<(), ApplyError> {
        let fail = |reason: String| ApplyError {
            seq: event.seq,
            event_type: event.body.type_name(),
            reason,
        };
        // `checked_add`: a damaged snapshot may claim the last possible seq.
        match self.last_seq.checked_add(1) {
            Some(next) if event.seq == next => {}
            Some(next) => return Err(fail(format!("expected seq {next}"))),
            None => return Err(fail("the log already holds the last possible seq".into())),
        }
        if self.status == SessionStatus::New
            && !matches!(event.body, EventBody::SessionStarted { .. })
        {
            return Err(fail(
                "a session's first event must be session_started".into(),
            ));
        }
        if let Some(run_id) = event.body.run_id() {
            let started = matches!(event.body, EventBody::RunStarted { .. });
            match &self.active {
                Some(run) if started => {
                    return Err(fail(format!("run {} is still active", run.run_id)));
                }
                Some(run) if &run.run_id != run_id => {
                    return Err(fail(format!(
                        "the active run is {}, not {run_id}",
                        run.run_id
                    )));
                }
                None if !started => return Err(fail(format!("run {run_id} is not active"))),
                _ => {}
            }
        }
        match &event.body {
            EventBody::SessionStarted { tenant, agent, .. } => {
                if self.status != SessionStatus::New {
                    return Err(fail("the session has already started".into()));
                }
                self.tenant = Some(tenant.clone());
                self.agent = Some(agent.clone());
                self.status = SessionStatus::Idle;
            }
            EventBody::AgentUpgraded { agent } => {
                if self.active.is_some() {
                    return Err(fail(
                        "an agent is upgraded between runs, not during one".into(),
                    ));
                }
                self.agent = Some(agent.clone());
            }
            EventBody::RunStarted {
                run_id, options, ..
            } => {
                // The engine checks that the input answers them; past that, they are settled.
                self.awaiting.clear();
                self.active = Some(RunState {
                    run_id: run_id.clone(),
                    step: 0,
                    attempt: 0,
                    model_pending: false,
                    replied: false,
                    reply_had_tools: false,
                    tools: Vec::new(),
                    last_text: String::new(),
                    usage: Usage::default(),
                    failure: None,
                    compacting: None,
                    cost_usd: 0.0,
                    client_tools: options
                        .client_tools()
                        .chain(self.agent.iter().flat_map(|a| {
                            a.tools
                                .iter()
                                .filter(|t| t.kind == crate::agent::ToolKind::Client)
                                .map(|t| t.name.as_str())
                        }))
                        .map(str::to_string)
                        .collect(),
                });
                self.status = SessionStatus::Running;
                self.message_count = self.message_count.saturating_add(1);
            }
            EventBody::MessagesAdded { messages } => {
                if self.active.is_some() {
                    return Err(fail(
                        "messages are added between runs, not during one".into(),
                    ));
                }
                let answered: Vec<&str> = messages.iter().flat_map(Message::tool_results).collect();
                self.awaiting
                    .retain(|c| !answered.contains(&c.call_id.as_str()));
                self.message_count = self.message_count.saturating_add(messages.len() as u64);
            }
            EventBody::ModelCalled { step, attempt, .. } => {
                let run = self.active.as_mut().expect("checked above");
                if run.model_pending {
                    return Err(fail("a model call is already in flight".into()));
                }
                if !run.tools.is_empty() {
                    return Err(fail(
                        "tool calls of the last reply have no result yet".into(),
                    ));
                }
                let expected = if run.attempt > 0 && !run.replied {
                    (run.step, run.attempt.saturating_add(1))
                } else {
                    (run.step.saturating_add(1), 1)
                };
                if (*step, *attempt) != expected {
                    return Err(fail(format!(
                        "expected step {} attempt {}",
                        expected.0, expected.1
                    )));
                }
                run.step = *step;
                run.attempt = *attempt;
                run.model_pending = true;
                run.replied = false;
            }
            EventBody::ModelReplied {
                step,
                message,
                usage,
                cost_usd,
                ..
            } => {
                let run = self.active.as_mut().expect("checked above");
                if !run.model_pending || run.step != *step {
                    return Err(fail(format!("no model call of step {step} is in flight")));
                }
                run.cost_usd += cost_usd
                    .filter(|c| c.is_finite() && *c > 0.0)
                    .unwrap_or(0.0);
                let spent = run.cost_usd;
                run.model_pending = false;
                run.replied = true;
                run.last_text = message.text_content();
                let agent = self.agent.as_ref();
                run.tools = message
                    .tool_calls()
                    .map(|(id, name, args)| PendingToolCall {
                        call_id: id.to_string(),
                        name: name.to_string(),
                        arguments: args.clone(),
                        idempotency_key: None,
                        approval: agent
                            .and_then(|a| a.tool_for_call(name))
                            .is_some_and(|t| t.waits_for_a_person(args, spent))
                            .then_some(Approval::Required),
                    })
                    .collect();
                run.reply_had_tools = !run.tools.is_empty();
                run.usage.add(usage);
                self.usage.add(usage);
                self.message_count = self.message_count.saturating_add(1);
            }
            EventBody::ModelFailed {
                step,
                attempt,
                error,
                retryable,
                ..
            } => {
                let run = self.active.as_mut().expect("checked above");
                if !run.model_pending || run.step != *step || run.attempt != *attempt {
                    return Err(fail(format!(
                        "no model call of step {step} attempt {attempt} is in flight"
                    )));
                }
                run.model_pending = false;
                let limit = self
                    .agent
                    .as_ref()
                    .map_or(1, |a| a.limits.max_model_attempts);
                if !*retryable || *attempt >= limit {
                    run.failure = Some(error.clone());
                }
            }
            EventBody::ToolCalled {
                call_id,
                idempotency_key,
                ..
            } => {
                let run = self.active.as_mut().expect("checked above");
                let Some(call) = run.tools.iter_mut().find(|c| &c.call_id == call_id) else {
                    return Err(fail(format!("tool call {call_id:?} was not asked for")));
                };
                if call.idempotency_key.is_some() {
                    return Err(fail(format!("tool call {call_id:?} is already logged")));
                }
                if !call.may_run() {
                    return Err(fail(format!(
                        "tool call {call_id:?} waits for a person's approval"
                    )));
                }
                call.idempotency_key = Some(idempotency_key.clone());
            }
            EventBody::ApprovalRequested { calls, .. } => {
                let run = self.active.as_mut().expect("checked above");
                if calls.is_empty() {
                    return Err(fail("an approval request lists no calls".into()));
                }
                for asked in calls {
                    let Some(call) = run.tools.iter().find(|c| c.call_id == asked.call_id) else {
                        return Err(fail(format!(
                            "tool call {:?} is not pending",
                            asked.call_id
                        )));
                    };
                    if call.approval != Some(Approval::Required) {
                        return Err(fail(format!(
                            "tool call {:?} does not wait to be asked about",
                            asked.call_id
                        )));
                    }
                }
                for call in run.tools.iter_mut() {
                    if calls.iter().any(|a| a.call_id == call.call_id) {
                        call.approval = Some(Approval::Requested);
                    }
                }
            }
            EventBody::ApprovalDecided {
                call_id, decision, ..
            } => {
                let run = self.active.as_mut().expect("checked above");
                let Some(call) = run.tools.iter_mut().find(|c| &c.call_id == call_id) else {
                    return Err(fail(format!("tool call {call_id:?} is not pending")));
                };
                if call.approval != Some(Approval::Requested) {
                    return Err(fail(format!(
                        "tool call {call_id:?} does not wait for a decision"
                    )));
                }
                if let Decision::Approve {
                    arguments: Some(edited),
                } = decision
                {
                    call.arguments = edited.clone();
                }
                call.approval = Some(Approval::Decided {
                    decision: decision.clone(),
                });
            }
            EventBody::CompactionStarted { through_seq, .. } => {
                let run = self.active.as_mut().expect("checked above");
                if run.model_pending || run.compacting.is_some() || !run.tools.is_empty() {
                    return Err(fail(
                        "a compaction starts between steps, when no call is in flight".into(),
                    ));
                }
                if *through_seq >= event.seq {
                    return Err(fail(format!(
                        "a compaction covers logged events, not seq {through_seq}"
                    )));
                }
                run.compacting = Some(*through_seq);
            }
            EventBody::ContextCompacted {
                through_seq,
                from_seq,
                usage,
                ..
            } => {
                let run = self.active.as_mut().expect("checked above");
                if run.compacting != Some(*through_seq) || from_seq > through_seq {
                    return Err(fail(format!(
                        "no compaction through seq {through_seq} is in flight"
                    )));
                }
                run.compacting = None;
                run.usage.add(usage);
                self.usage.add(usage);
                self.compacted_through = *through_seq;
            }
            EventBody::ToolReturned { call_id, .. } => {
                let run = self.active.as_mut().expect("checked above");
                let Some(pos) = run.tools.iter().position(|c| &c.call_id == call_id) else {
                    return Err(fail(format!("tool call {call_id:?} is not pending")));
                };
                run.tools.remove(pos);
                self.message_count = self.message_count.saturating_add(1);
            }
            EventBody::RunCompleted { run_id, .. } => {
                let run = self.active.as_ref().expect("checked above");
                if let Some(call) = run.tools.iter().find(|c| !run.is_client_tool(&c.name)) {
                    return Err(fail(format!(
                        "tool call {:?} must get a result before the run ends",
                        call.call_id
                    )));
                }
                // What is left is for the caller to perform.
                self.awaiting = run.tools.clone();
                self.end_run(run_id, RunStatus::Completed)
            }
            EventBody::RunFailed { run_id, .. } => self.end_run(run_id, RunStatus::Failed),
            EventBody::RunCancelled { run_id, .. } => {
                if self.active.as_ref().is_some_and(|r| !r.tools.is_empty()) {
                    return Err(fail(
                        "pending tool calls must get a result before the run ends".into(),
                    ));
                }
                self.end_run(run_id, RunStatus::Cancelled)
            }
            EventBody::MemoryBlockEdited { run_id, .. } => {
                // One with a run is checked above to be of the active run.
                if run_id.is_none() {
                    if let Some(run) = &self.active {
                        return Err(fail(format!(
                            "a memory block is edited from outside between runs, not during run {}",
                            run.run_id
                        )));
                    }
                    // Its note joins the transcript (`EventBody::messages`).
                    self.message_count = self.message_count.saturating_add(1);
                }
            }
        }
        self.last_seq = event.seq;
        Ok(())
    }

    fn end_run(&mut self, run_id: &RunId, status: RunStatus) {
        self.active = None;
        self.status = SessionStatus::Idle;
        self.runs_finished = self.runs_finished.saturating_add(1);
        self.last_run = Some((run_id.clone(), status));
    }
}

/// Names the next action for a session. Never asks to repeat a step whose result is logged.
pub fn decide(state: &SessionState) -> Action {
    let Some(run) = &state.active else {
        return Action::Idle;
    };
    let limits = state.agent.as_ref().map(|a| a.limits).unwrap_or_default();
    let run_id = run.run_id.clone();
    if let Some(error) = &run.failure {
        return Action::Fail {
            run_id,
            code: "model_error",
            error: error.clone(),
        };
    }
    if run.model_pending {
        return Action::CallModel {
            run_id,
            step: run.step,
            attempt: run.attempt,
            intent_logged: true,
        };
    }
    if let Some(through_seq) = run.compacting {
        return Action::Compact {
            run_id,
            through_seq,
        };
    }
    // Calls for a person: ask about them first, so the person hears at once.
    let required: Vec<ApprovalRequest> = run
        .tools
        .iter()
        .filter(|c| c.approval == Some(Approval::Required))
        .map(|c| ApprovalRequest {
            call_id: c.call_id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        })
        .collect();
    if !required.is_empty() {
        return Action::RequestApproval {
            run_id,
            calls: required,
        };
    }
    if let Some((call, (content, is_error))) = run
        .tools
        .iter()
        .find_map(|c| c.decided_result().map(|result| (c, result)))
    {
        return Action::ReturnDecided {
            run_id,
            call_id: call.call_id.clone(),
            content,
            is_error,
        };
    }
    if let Some(call) = run
        .tools
        .iter()
        .find(|c| !run.is_client_tool(&c.name) && c.may_run())
    {
        return Action::CallTool {
            run_id,
            call: call.clone(),
        };
    }
    if run
        .tools
        .iter()
        .any(|c| c.approval == Some(Approval::Requested))
    {
        return Action::Wait { run_id };
    }
    if !run.tools.is_empty() {
        // Only calls the caller performs are left: the run ends, handing them over.
        return Action::Finish {
            run_id,
            output: run.last_text.clone(),
        };
    }
    if !run.replied && run.attempt > 0 {
        // The last attempt failed but may be retried.
        return Action::CallModel {
            run_id,
            step: run.step,
            attempt: run.attempt.saturating_add(1),
            intent_logged: false,
        };
    }
    if run.replied && !run.reply_had_tools {
        return Action::Finish {
            run_id,
            output: run.last_text.clone(),
        };
    }
    if run.step >= limits.max_steps {
        return Action::Fail {
            run_id,
            code: "max_steps",
            error: format!(
                "the run reached its limit of {} model calls (limits.max_steps)",
                limits.max_steps
            ),
        };
    }
    Action::CallModel {
        run_id,
        step: run.step.saturating_add(1),
        attempt: 1,
        intent_logged: false,
    }
}
