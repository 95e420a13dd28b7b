//! Runs read back and stopped: a run's own events, its record, a cancel request.

use keel_core::{Event, EventBody, RunId, TenantId};
use keel_store::RunRecord;

use crate::{Engine, EngineError, Stop};

impl Engine {
    /// The events a run logged (from its `run_started` to its end, or the latest so far),
    /// found by reading the session's log backwards from its end in growing pages: the latest
    /// run of a long session costs a read of its own few events, not of the history before it.
    pub async fn run_events(&self, run: &RunRecord) -> Result<Vec<Event>, EngineError> {
        let mut page_size: usize = 8;
        let mut before = u64::MAX;
        let mut found: Vec<Event> = Vec::new();
        loop {
            let page = self
                .inner
                .store
                .read_events_before(&run.session, before, page_size)
                .await?;
            let Some(first) = page.first() else {
                return Ok(Vec::new());
            };
            before = first.seq;
            let full = page.len() == page_size;
            page_size = (page_size * 4).min(256);
            for event in page.into_iter().rev() {
                if event.body.run_id() != Some(&run.id) {
                    if found.is_empty() {
                        continue;
                    }
                    // Events of one run are contiguous: the run's start was passed.
                    found.reverse();
                    return Ok(found);
                }
                let started = matches!(event.body, EventBody::RunStarted { .. });
                found.push(event);
                if started {
                    found.reverse();
                    return Ok(found);
                }
            }
            if !full {
                found.reverse();
                return Ok(found);
            }
        }
    }

    pub async fn get_run(&self, tenant: &TenantId, run: &RunId) -> Result<RunRecord, EngineError> {
        self.inner
            .store
            .get_run(tenant, run)
            .await?
            .ok_or_else(|| EngineError::NotFound {
                kind: "run",
                id: run.to_string(),
            })
    }

    /// Asks a run to stop at its next step boundary (or at once, if it is streaming here).
    pub async fn cancel_run(
        &self,
        tenant: &TenantId,
        run: &RunId,
    ) -> Result<RunRecord, EngineError> {
        if let Some(record) = self.inner.store.get_run(tenant, run).await? {
            self.refuse_if_moved(tenant, &record.session).await?;
        }
        if !self.inner.store.request_cancel(tenant, run).await? {
            return Err(EngineError::NotFound {
                kind: "run",
                id: run.to_string(),
            });
        }
        if let Some(held) = self.inner.held.lock().unwrap().get(run) {
            held.stop.send_replace(Stop::Cancel);
        }
        self.inner.wake.notify_one();
        self.get_run(tenant, run).await
    }
}
