//! Decode slots: at most `slots` requests compute at once, each on one thread, so concurrent
//! requests queue instead of oversubscribing the cores (spinning or competing decode threads
//! collapse throughput on a small machine). How long each request waited is measured.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub(crate) struct DecodeSlots {
    slots: Arc<Semaphore>,
}

/// The right to run one decode; the slot frees itself when this is dropped.
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
    pub waited: Duration,
}

impl DecodeSlots {
    pub fn new(slots: usize) -> Self {
        DecodeSlots {
            slots: Arc::new(Semaphore::new(slots)),
        }
    }

    /// Waits for a free slot, or gives up (`None`) if `abandoned` completes first: the caller
    /// dropped the stream while it was still queued.
    pub async fn acquire(&self, abandoned: impl Future<Output = ()>) -> Option<Slot> {
        let start = Instant::now();
        tokio::select! {
            // A caller that has gone away never takes a slot, even one that is free.
            biased;
            () = abandoned => None,
            permit = self.slots.clone().acquire_owned() => {
                permit.ok().map(|p| Slot { _permit: p, waited: start.elapsed() })
            }
        }
    }
}
