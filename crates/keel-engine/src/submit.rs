//! Submitting input to a session: the checks a new run must pass (the session, its limits,
//! tool calls left to the caller, the busy policy), then one conditional enqueue in the store,
//! which refuses a busy session for `reject` in the same transaction and, when this node can
//! drive the run now, leases it here at once instead of leaving it to a separate claim.

use keel_core::{Message, RunOptions, RunStatus, SessionId, TenantId};
use keel_store::{Enqueue, Enqueued, Lease, RunRecord, StoreError};

use crate::{BusyPolicy, Engine, EngineError, Quotas, clock, dispatch};

impl Engine {
    /// Queues `input` as a new run of the session. Runs of one session execute one after
    /// another in the order they were submitted.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        input: Message,
    ) -> Result<RunRecord, EngineError> {
        self.submit_with(
            tenant,
            session,
            input,
            RunOptions::default(),
            BusyPolicy::Enqueue,
        )
        .await
    }

    /// `submit` with per-run `options`, deciding by `policy` what happens when the session is
    /// busy. An idle session whose last run handed tool calls to the caller takes only an
    /// input that carries their results.
    pub async fn submit_with(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        input: Message,
        options: RunOptions,
        policy: BusyPolicy,
    ) -> Result<RunRecord, EngineError> {
        let (run, _) = self.queue(tenant, session, input, options, policy).await?;
        Ok(run)
    }

    /// `submit_with`, also giving the session's last seq as read before the run was queued
    /// (`submit_followed` starts following there).
    pub(crate) async fn queue(
        &self,
        tenant: &TenantId,
        session: &SessionId,
        input: Message,
        options: RunOptions,
        policy: BusyPolicy,
    ) -> Result<(RunRecord, u64), EngineError> {
        if input.parts.is_empty() {
            return Err(EngineError::Invalid(
                "the input message has no parts".into(),
            ));
        }
        if let Some(model) = &options.model {
            self.inner
                .models
                .resolve(model)
                .map_err(|e| EngineError::Invalid(e.to_string()))?;
        }
        let record = self.require_session(tenant, session).await?;
        self.refuse_if_moved(tenant, session).await?;
        let quotas = &self.inner.config.quotas;
        Quotas::check(
            "the session's log",
            "events_per_session",
            record.last_seq,
            1,
            quotas.events_per_session,
        )?;
        // Submits to one session on this node go one at a time (the checks below read what the
        // last one queued); across nodes, the store's conditional enqueue keeps `reject` exact.
        let slot = self.inner.slot(session);
        let _submitting = slot.submit.lock().await;
        let pending = self.inner.store.pending_runs(tenant, session).await?;
        if policy == BusyPolicy::Enqueue {
            Quotas::check(
                "the session's queued runs",
                "queued_runs_per_session",
                pending.len() as u64,
                1,
                quotas.queued_runs_per_session as u64,
            )?;
        }
        if pending.is_empty() {
            self.check_answers(session, &input, &options).await?;
        }
        if policy == BusyPolicy::Reject
            && let Some(busy) = pending.first()
        {
            return Err(EngineError::Busy {
                session: session.clone(),
                run: busy.id.clone(),
            });
        }
        if policy == BusyPolicy::Interrupt {
            // Newest first: the queued runs are flagged before the active one stops and frees
            // the session for the next claim.
            for run in pending.iter().rev() {
                self.cancel_run(tenant, &run.id).await?;
            }
        }
        let run = RunRecord {
            id: clock::new_run_id(),
            tenant: tenant.clone(),
            session: session.clone(),
            input,
            options,
            status: RunStatus::Queued,
            created_at: clock::now(),
            output: None,
            error: None,
            cancel_requested: false,
            lease_owner: None,
            lease_until: None,
        };
        let run = self.enqueue(run, policy == BusyPolicy::Reject).await?;
        Ok((run, record.last_seq))
    }

    /// Queues `run` in one store transaction with the busy check (`refuse_if_busy`: the
    /// `reject` policy, exact across nodes sharing the store). When this node can drive the
    /// run now, an idle session's run is enqueued already leased here and driven at once: no
    /// claim commit, no wait for the dispatcher. The enqueue runs on a task of its own, so a
    /// caller that stops waiting (a client gone) cannot leave a run leased here and undriven.
    async fn enqueue(
        &self,
        run: RunRecord,
        refuse_if_busy: bool,
    ) -> Result<RunRecord, EngineError> {
        let slot = dispatch::free_slot(&self.inner);
        let lease = slot.as_ref().map(|_| Lease {
            node: self.inner.config.node_id.clone(),
            until: dispatch::lease_until(&self.inner, run.created_at),
        });
        let how = Enqueue {
            refuse_if_busy,
            claim_if_idle: lease.clone(),
        };
        let claimed = |run: RunRecord, lease: Option<Lease>| RunRecord {
            status: RunStatus::Running,
            lease_owner: lease.as_ref().map(|l| l.node.clone()),
            lease_until: lease.map(|l| l.until),
            ..run
        };
        let (inner, queued, leased) = (self.inner.clone(), run.clone(), lease.clone());
        let enqueued = tokio::spawn(async move {
            let enqueued = inner.store.enqueue_run_with(&queued, &how).await?;
            match (&enqueued, slot) {
                (Enqueued::Claimed, Some(slot)) => {
                    dispatch::drive(&inner, claimed(queued, leased), Some(slot));
                }
                (Enqueued::Queued, _) => inner.wake.notify_one(),
                _ => {}
            }
            Ok::<_, EngineError>(enqueued)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("queueing the run failed: {e}")))??;
        match enqueued {
            Enqueued::Busy(holder) => Err(EngineError::Busy {
                session: run.session,
                run: holder,
            }),
            Enqueued::Claimed => Ok(claimed(run, lease)),
            Enqueued::Queued => Ok(run),
        }
    }

    /// Refuses an input that leaves tool calls handed to the caller without a result (the
    /// model could not go on: providers reject such a transcript).
    async fn check_answers(
        &self,
        session: &SessionId,
        input: &Message,
        options: &RunOptions,
    ) -> Result<(), EngineError> {
        let awaiting = self
            .with_idle_state(session, |s| s.awaiting.clone())
            .await?;
        let answered: Vec<&str> = options
            .context
            .iter()
            .chain([input])
            .flat_map(Message::tool_results)
            .collect();
        match awaiting
            .iter()
            .find(|c| !answered.contains(&c.call_id.as_str()))
        {
            Some(call) => Err(EngineError::Invalid(format!(
                "no tool output found for function call {}: the last run asked the caller to perform {:?}; send its result (a function_call_output item, or a tool result part) with the next input",
                call.call_id, call.name
            ))),
            None => Ok(()),
        }
    }
}
