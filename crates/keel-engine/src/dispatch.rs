//! Claiming runs from the store's queue and keeping their leases alive. The store
//! guarantees that one session's runs are never claimed twice at once, so each claimed run
//! is driven with the session to itself. Both loops are supervised: a panic in one is logged
//! and the loop started again, never a node that silently stops claiming or renewing; a panic
//! while driving a run lets go of it, so its lease lapses and it is driven again.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;

use keel_core::RunStatus;
use keel_store::RunRecord;
use tokio::sync::watch;

use crate::{HeldRun, Inner, Stop, clock, driver};

/// How long a background loop that panicked waits before it starts again (a loop that always
/// panics must not spin).
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs the loop `start` makes until it returns; a panic in it is logged and a new one started.
async fn supervised<F, Fut>(name: &'static str, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while AssertUnwindSafe(start()).catch_unwind().await.is_err() {
        tracing::error!(task = name, "a background task panicked; starting it again");
        tokio::time::sleep(RESTART_PAUSE).await;
    }
}

pub(crate) async fn run_loop(inner: Arc<Inner>) {
    supervised("claiming runs", || claim_loop(inner.clone())).await;
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
                        let Ok(permit) = inner.run_permits.clone().try_acquire_owned() else {
                            break;
                        };
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
                            drive_claimed(&inner, run, stop_rx).await;
                            drop(permit);
                            inner.wake.notify_one();
                        });
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
/// other nodes. A run whose lease was lost is told to stop: another node has it now.
pub(crate) async fn heartbeat_loop(inner: Arc<Inner>) {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_background_loop_that_panics_is_started_again() {
        let starts = AtomicU32::new(0);
        supervised("test", || {
            let n = starts.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    panic!("a bug in a background loop");
                }
            }
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 2);
    }
}
