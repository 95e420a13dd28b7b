//! The world's inputs to the core, as values: wall-clock time and fresh ids. Every clock read
//! and every random id of keel (engine, server and binary) comes from here, so tests and
//! benchmarks can see exactly where nondeterminism enters.

use keel_core::{AgentId, RunId, SessionId, TenantId, TimerId, Timestamp, WebhookId};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn now() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Timestamp(ms.saturating_add(AHEAD_MS.load(Ordering::Relaxed)))
}

/// How far this process's clock was moved ahead (`advance`).
static AHEAD_MS: AtomicI64 = AtomicI64::new(0);

/// Moves this process's clock forward by `by`, for tests of what happens over minutes or days
/// (timers, leases) without waiting for them. Never called outside tests.
pub fn advance(by: std::time::Duration) {
    let by = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    AHEAD_MS.fetch_add(by, Ordering::Relaxed);
}

/// Whole seconds since the Unix epoch: how OpenAI's objects give their `created` time.
pub fn unix_seconds() -> u64 {
    (now().millis().max(0) / 1000) as u64
}

fn fresh<T>(make: fn(u64, u128) -> T) -> T {
    make(now().millis().max(0) as u64, rand::random::<u128>())
}

pub fn new_session_id() -> SessionId {
    fresh(SessionId::generate)
}

pub fn new_run_id() -> RunId {
    fresh(RunId::generate)
}

pub fn new_agent_id() -> AgentId {
    fresh(AgentId::generate)
}

pub fn new_tenant_id() -> TenantId {
    fresh(TenantId::generate)
}

pub fn new_timer_id() -> TimerId {
    fresh(TimerId::generate)
}

pub fn new_webhook_id() -> WebhookId {
    fresh(WebhookId::generate)
}

/// A fresh random 128-bit id as 32 hex digits, for ids nothing sorts by: request ids, chat
/// completion ids.
pub fn new_hex_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `N` fresh unguessable bytes (rand's thread-local CSPRNG, seeded from the OS): an API key's
/// prefix and secret.
pub fn new_secret<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::fill(&mut bytes[..]);
    bytes
}
