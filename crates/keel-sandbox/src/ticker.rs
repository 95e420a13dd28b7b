//! The epoch ticker: one thread per interpreter that advances the engine's epoch every `TICK`
//! while a program runs, so a deadline costs a counter check at loop heads and calls, not
//! the per-instruction metering fuel would. It sleeps while nothing runs.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use wasmtime::Engine;

/// How much wall-clock time one epoch is.
pub(crate) const TICK: Duration = Duration::from_millis(10);

pub(crate) struct Ticker {
    running: Mutex<usize>,
    wake: Condvar,
}

impl Ticker {
    pub(crate) fn start(engine: &Engine) -> Arc<Self> {
        let ticker = Arc::new(Ticker {
            running: Mutex::new(0),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&ticker);
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("keel-sandbox-epoch".into())
            .spawn(move || {
                loop {
                    let Some(ticker) = weak.upgrade() else { return };
                    let Some(engine) = engine.upgrade() else {
                        return;
                    };
                    {
                        let running = ticker.running.lock().unwrap_or_else(|e| e.into_inner());
                        if *running == 0 {
                            // Woken by the next program, or after a while to notice a drop.
                            let _ = ticker.wake.wait_timeout(running, Duration::from_secs(1));
                            continue;
                        }
                    }
                    drop(ticker);
                    std::thread::sleep(TICK);
                    engine.increment_epoch();
                }
            })
            .expect("the epoch ticker thread starts");
        ticker
    }

    /// Ticks for as long as the returned guard lives.
    pub(crate) fn hold(self: &Arc<Self>) -> Running {
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.wake.notify_all();
        Running(self.clone())
    }
}

pub(crate) struct Running(Arc<Ticker>);

impl Drop for Running {
    fn drop(&mut self) {
        *self.0.running.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
    }
}
