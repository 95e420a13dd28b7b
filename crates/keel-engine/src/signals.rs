//! What this node hears of other nodes' changes (`Store::signals`: PostgreSQL's NOTIFY), put
//! to use at once: followers here of a session another node logs to look at the store, a
//! cancel requested on another node stops the run driven here, and a run that became
//! claimable is claimed without waiting for the next poll. Each is only a hint: the polls
//! (`poll_interval`, the lease heartbeat) still find everything, only later.

use std::sync::Arc;

use keel_store::StoreSignal;
use tokio::sync::broadcast::error::RecvError;

use crate::{Inner, Stop, supervised};

/// Starts acting on the store's hints, when it gives any.
pub(crate) fn start(inner: &Arc<Inner>) {
    if inner.store.signals().is_none() {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        supervised("hearing other nodes", || hear(inner.clone())).await;
    });
}

async fn hear(inner: Arc<Inner>) {
    let Some(mut signals) = inner.store.signals() else {
        return;
    };
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        let signal = tokio::select! {
            signal = signals.recv() => signal,
            _ = shutdown.changed() => return,
        };
        match signal {
            Ok(signal) => act_on(&inner, signal),
            Err(RecvError::Lagged(_)) => act_on(&inner, StoreSignal::Missed),
            Err(RecvError::Closed) => return,
        }
    }
}

fn act_on(inner: &Inner, signal: StoreSignal) {
    match signal {
        StoreSignal::Appended { session, last_seq } => inner.slots.heard_append(&session, last_seq),
        StoreSignal::CancelRequested { run } => {
            if let Some(held) = inner.held.lock().unwrap().get(&run) {
                held.stop.send_replace(Stop::Cancel);
            }
        }
        StoreSignal::RunClaimable => inner.wake.notify_one(),
        StoreSignal::Missed => {
            inner.slots.heard_nothing_for_a_while();
            inner.wake.notify_one();
        }
    }
}
