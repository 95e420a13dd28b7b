//! Human approval, the engine's side: what a waiting run waits on, and a person's decisions,
//! logged (who decided what, when) in the same append that queues the run again once nothing
//! is left undecided. The driver parks the run (`Action::Wait`); this is the one way back.

use std::sync::Arc;

use keel_core::{
    ASK_HUMAN, Approval, ApprovalRequest, Decision, Event, EventBody, RunId, RunStatus, TenantId,
};
use keel_store::{AppendBatch, NewEvent, RunFinish, RunOutcome, RunRecord};
use serde::Deserialize;

use crate::{Engine, EngineError, RunUpdate, clock};

/// A person's decision on one waiting call, as `POST /v1/runs/{id}/resume` takes it:
/// `{"call_id": "…", "decision": "approve" | "reject" | "answer", …}`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct CallDecision {
    pub call_id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

impl Engine {
    /// The calls run `run` waits on (empty unless it is `waiting`); `NotFound` for another
    /// tenant's run.
    pub async fn pending_approvals(
        &self,
        tenant: &TenantId,
        run: &RunId,
    ) -> Result<Vec<ApprovalRequest>, EngineError> {
        let record = self.get_run(tenant, run).await?;
        if record.status != RunStatus::Waiting {
            return Ok(Vec::new());
        }
        let slot = self.inner.slot(&record.session);
        let mut live = slot.live.lock().await;
        let live = self.inner.live(&record.session, &mut live).await?;
        Ok(waiting_calls(&live.state, run))
    }

    /// Logs `decisions` on waiting run `run`'s calls (`by`: who decided, e.g. a key's prefix)
    /// and, once none is left undecided, queues the run again to go on. `NotFound` for another
    /// tenant's run; `Invalid` naming what is wrong (a run that does not wait, a call it does
    /// not wait on, a decision that does not fit the call).
    pub async fn resume_run(
        &self,
        tenant: &TenantId,
        run: &RunId,
        decisions: Vec<CallDecision>,
        by: Option<String>,
    ) -> Result<RunRecord, EngineError> {
        let record = self.get_run(tenant, run).await?;
        if record.status != RunStatus::Waiting {
            return Err(EngineError::Invalid(format!(
                "run {run} is {}, not waiting for a decision",
                record.status.as_str()
            )));
        }
        if decisions.is_empty() {
            return Err(EngineError::Invalid(
                "`decisions` is empty: decide on at least one waiting call".into(),
            ));
        }
        let session = &record.session;
        let slot = self.inner.slot(session);
        let _submitting = slot.submit.lock().await;
        let mut live = slot.live.lock().await;
        let live = self.inner.live(session, &mut live).await?;
        let waiting = waiting_calls(&live.state, run);
        let mut state = live.state.clone();
        let mut events = Vec::new();
        for CallDecision { call_id, decision } in decisions {
            let Some(call) = waiting.iter().find(|c| c.call_id == call_id) else {
                let ids: Vec<&str> = waiting.iter().map(|c| c.call_id.as_str()).collect();
                return Err(EngineError::Invalid(format!(
                    "run {run} does not wait on call {call_id:?} (it waits on {ids:?}); each call is decided once"
                )));
            };
            check_fits(call, &decision)?;
            let event = Event {
                seq: state.last_seq + 1,
                at: clock::now(),
                body: EventBody::ApprovalDecided {
                    run_id: run.clone(),
                    call_id,
                    decision,
                    by: by.clone(),
                },
            };
            state
                .apply(&event)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
            events.push(event);
        }
        let undecided = !waiting_calls(&state, run).is_empty();
        let batch = AppendBatch {
            events: events
                .iter()
                .map(|e| NewEvent {
                    at: e.at,
                    body: e.body.clone(),
                })
                .collect(),
            finish_run: (!undecided).then(|| RunFinish {
                run: run.clone(),
                status: RunStatus::Queued,
                outcome: RunOutcome::default(),
            }),
            ..AppendBatch::default()
        };
        self.inner
            .store
            .append(session, live.state.last_seq, batch)
            .await?;
        live.state = state;
        live.extend_transcript(&events);
        for event in events {
            let _ = slot.updates.send(RunUpdate::Event(Arc::new(event)));
        }
        if !undecided {
            self.inner.wake.notify_one();
        }
        self.get_run(tenant, run).await
    }
}

/// The calls of `run` that wait for a decision in `state`.
fn waiting_calls(state: &keel_core::SessionState, run: &RunId) -> Vec<ApprovalRequest> {
    state
        .active
        .iter()
        .filter(|active| &active.run_id == run)
        .flat_map(|active| &active.tools)
        .filter(|c| c.approval == Some(Approval::Requested))
        .map(|c| ApprovalRequest {
            call_id: c.call_id.clone(),
            name: c.name.clone(),
            arguments: c.arguments.clone(),
        })
        .collect()
}

/// A question is answered (or rejected); any other call is approved (or rejected).
fn check_fits(call: &ApprovalRequest, decision: &Decision) -> Result<(), EngineError> {
    let asks = call.name == ASK_HUMAN;
    match decision {
        Decision::Answer { .. } if !asks => Err(EngineError::Invalid(format!(
            "call {:?} ({}) is approved or rejected, not answered",
            call.call_id, call.name
        ))),
        Decision::Approve { .. } if asks => Err(EngineError::Invalid(format!(
            "call {:?} asks a question: answer it (\"decision\": \"answer\", \"answer\": \"…\") or reject it",
            call.call_id
        ))),
        Decision::Approve {
            arguments: Some(arguments),
        } if !arguments.is_object() => Err(EngineError::Invalid(format!(
            "the edited arguments of call {:?} must be a JSON object",
            call.call_id
        ))),
        _ => Ok(()),
    }
}
