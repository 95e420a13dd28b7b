//! The world's inputs to the core, as values: wall-clock time and fresh ids. Kept behind one
//! small type so tests and benchmarks can see exactly where nondeterminism enters.

use keel_core::{RunId, SessionId, Timestamp};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms)
}

fn fresh<T>(make: fn(u64, u128) -> T) -> T {
    make(now().millis() as u64, rand::random::<u128>())
}

pub fn new_session_id() -> SessionId {
    fresh(SessionId::generate)
}

pub fn new_run_id() -> RunId {
    fresh(RunId::generate)
}

pub fn new_agent_id() -> keel_core::AgentId {
    fresh(keel_core::AgentId::generate)
}
