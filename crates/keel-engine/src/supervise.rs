//! Background loops that outlive a bug: a panic in one is logged and the loop started again,
//! never a process that stays up while it silently stopped claiming runs, renewing leases or
//! storing usage. The engine's loops and the server's use it.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;

/// How long a background loop that panicked waits before it starts again (a loop that always
/// panics must not spin).
const RESTART_PAUSE: Duration = Duration::from_secs(1);

/// Runs the loop `start` makes until it returns; a panic in it is logged and a new one started.
pub async fn supervised<F, Fut>(name: &'static str, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    while AssertUnwindSafe(start()).catch_unwind().await.is_err() {
        tracing::error!(task = name, "a background task panicked; starting it again");
        tokio::time::sleep(RESTART_PAUSE).await;
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
