//! Claiming runs from the store's queue and keeping their leases alive. The store
//! guarantees that one session's runs are never claimed twice at once, so each claimed run
//! is driven with the session to itself. A run submitted on this node may come leased already
//! (`free_slot`, then `drive`): it is driven and renewed like a claimed one. Both loops are
//! `supervised`: a panic in one is logged and the loop started again, never a node that
//! silently stops claiming or renewing; a panic while driving a run lets go of it, so its
//! lease lapses and it is driven again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::FutureExt;

use keel_core::{RunStatus, Timestamp};
use keel_store::RunRecord;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::{HeldRun, Inner, Stop, clock, driver, supervised};

/// Starts claiming runs and renewing leases. Call it once this node's leases from before a
/// restart are released: from then on, a run submitted here may be leased here at once.
pub(crate) fn start(inner: &Arc<Inner>) {
    inner.dispatching.store(true, Ordering::Release);
    tokio::spawn(run_loop(inner.clone()));
    tokio::spawn(heartbeat_loop(inner.clone()));
}

async fn run_loop(inner: Arc<Inner>) {
    supervised("claiming runs", || claim_loop(inner.clone())).await;
}

/// A slot to drive a run submitted on this node right away: only while this node dispatches
/// (started, not shutting down) and has a run slot free.
pub(crate) fn free_slot(inner: &Arc<Inner>) -> Option<OwnedSemaphorePermit> {
    if !inner.dispatching.load(Ordering::Acquire) || *inner.shutdown.borrow() {
        return None;
    }
    inner.run_permits.clone().try_acquire_owned().ok()
}

/// When a lease taken at `now` runs out unless renewed.
pub(crate) fn lease_until(inner: &Inner, now: Timestamp) -> Timestamp {
    let lease_ms = inner.config.lease.as_millis() as i64;
    Timestamp::from_millis(now.millis().saturating_add(lease_ms))
}

/// Drives `run`, whose lease this node holds, on a task of its own under `slot` (or under the
/// next slot that frees, when a submit here took the last one since the claim); its lease is
/// renewed from now until it ends.
pub(crate) fn drive(inner: &Arc<Inner>, run: RunRecord, slot: Option<OwnedSemaphorePermit>) {
    let initial = if run.cancel_requested {
        Stop::Cancel
    } else {
        Stop::Continue
    };
    let (stop, stop_rx) = watch::channel(initial);
    inner.held.lock().unwrap().insert(
        run.id.clone(),
        HeldRun {
            tenant: run.tenant.clone(),
            stop,
        },
    );
    let inner = inner.clone();
    tokio::spawn(async move {
        let slot = match slot {
            Some(slot) => Ok(slot),
            None => inner.run_permits.clone().acquire_owned().await,
        };
        if let Ok(slot) = slot {
            drive_claimed(&inner, run, stop_rx).await;
            drop(slot);
        } else {
            inner.held.lock().unwrap().remove(&run.id);
        }
        inner.wake.notify_one();
    });
}

async fn claim_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let free = inner.run_permits.available_permits();
        if free > 0 {
            let lease_ms = inner.config.lease.as_millis() as i64;
            match inner
                .store
                .claim_runs(&inner.config.node_id, clock::now(), lease_ms, free)
                .await
            {
                Ok(runs) => {
                    let idle = runs.is_empty() && inner.held.lock().unwrap().is_empty();
                    for run in runs {
                        // A submit here may have taken a slot since: then the run waits for
                        // the next one, its lease renewed meanwhile.
                        let slot = inner.run_permits.clone().try_acquire_owned().ok();
                        drive(&inner, run, slot);
                    }
                    inner.idle.send_replace(idle);
                }
                Err(e) => tracing::error!(error = %e, "claiming runs failed; retrying"),
            }
        }
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep(inner.config.poll_interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn drive_claimed(inner: &Arc<Inner>, run: RunRecord, stop_rx: watch::Receiver<Stop>) {
    let span = tracing::info_span!("run", run = %run.id, session = %run.session);
    let driving = tracing::Instrument::instrument(driver::drive(inner, &run, stop_rx), span);
    if AssertUnwindSafe(driving).catch_unwind().await.is_err() {
        tracing::error!(run = %run.id, "driving the run panicked; it resumes when its lease expires");
    }
    inner.held.lock().unwrap().remove(&run.id);
}

/// Extends the leases of the runs this node drives and picks up cancel requests made on
/// other nodes. A run whose lease was lost is told to stop: another node has it now. Each
/// beat also lets idle sessions past their grace leave the warm cache.
async fn heartbeat_loop(inner: Arc<Inner>) {
    supervised("renewing leases", || renew_loop(inner.clone())).await;
}

async fn renew_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    let every = inner.config.lease / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        inner.slots.warm().tidy();
        let held: Vec<_> = inner
            .held
            .lock()
            .unwrap()
            .iter()
            .map(|(id, h)| (id.clone(), h.tenant.clone()))
            .collect();
        let lease_ms = inner.config.lease.as_millis() as i64;
        for (run, tenant) in held {
            let still_ours = inner
                .store
                .heartbeat(&run, &inner.config.node_id, clock::now(), lease_ms)
                .await;
            let stop = match still_ours {
                Ok(false) => Stop::LeaseLost,
                Ok(true) => match inner.store.get_run(&tenant, &run).await {
                    Ok(Some(r)) if r.cancel_requested => Stop::Cancel,
                    Ok(Some(r)) if r.status != RunStatus::Running => Stop::LeaseLost,
                    _ => Stop::Continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, %run, "lease heartbeat failed");
                    Stop::Continue
                }
            };
            if stop != Stop::Continue
                && let Some(held) = inner.held.lock().unwrap().get(&run)
            {
                held.stop.send_replace(stop);
            }
        }
    }
}
