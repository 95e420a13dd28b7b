//! Idle sessions kept warm: the live state of a session nobody drives or follows, parked so
//! that its next turn need not reload it from the store. An LRU bounded by an estimate of its
//! bytes (`EngineConfig::session_cache_bytes`), each entry dropped after an idle grace
//! (`EngineConfig::session_idle`): whatever the number of sessions, what they cost in memory
//! here is bounded, and a session idle for long costs nothing.
//!
//! `moka` does the bookkeeping: a maintained concurrent cache with a weigher (a byte bound,
//! not a count), time-to-idle expiry and an eviction listener for the metrics; `quick_cache`
//! weighs but has no expiry, and a hand-made LRU would be one more thing to get right.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::SessionId;
use moka::notification::RemovalCause;

use crate::live::LiveSession;

/// A parked live state. Taken out (not cloned) when its session is used again: the `Option`
/// makes the taker its only owner even while the cache still holds the entry's handle.
struct Parked {
    bytes: u32,
    /// The seq its state ends at: older than another node's append means stale.
    last_seq: u64,
    live: Mutex<Option<LiveSession>>,
}

/// What the warm cache did since start and holds now, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionCacheStats {
    /// Sessions taken warm from the cache.
    pub hits: u64,
    /// Sessions loaded from the store (snapshot and tail) because they were not warm.
    pub loads: u64,
    /// Sessions dropped to keep the cache under its byte bound.
    pub evictions: u64,
    /// Sessions dropped after their idle grace.
    pub expirations: u64,
    /// Sessions parked now, and the estimate of their bytes.
    pub entries: u64,
    pub bytes: u64,
    /// Sessions driven, submitted to or followed now (not in the cache: in use).
    pub in_use: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    loads: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

pub(crate) struct WarmCache {
    /// `None` when the bound is 0: nothing is kept.
    cache: Option<moka::sync::Cache<SessionId, Arc<Parked>>>,
    counters: Arc<Counters>,
}

impl WarmCache {
    pub(crate) fn new(max_bytes: u64, idle: Duration) -> WarmCache {
        let counters = Arc::new(Counters::default());
        let evicted = counters.clone();
        let cache = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_: &SessionId, parked: &Arc<Parked>| parked.bytes)
                .time_to_idle(idle)
                .eviction_listener(move |_, _, cause| match cause {
                    RemovalCause::Size => bump(&evicted.evictions),
                    RemovalCause::Expired => bump(&evicted.expirations),
                    RemovalCause::Explicit | RemovalCause::Replaced => {}
                })
                .build()
        });
        WarmCache { cache, counters }
    }

    /// The session's parked live state, if it is warm; it leaves the cache.
    pub(crate) fn take(&self, session: &SessionId) -> Option<LiveSession> {
        let parked = self.cache.as_ref()?.remove(session)?;
        let live = parked.live.lock().unwrap().take();
        if live.is_some() {
            bump(&self.counters.hits);
        }
        live
    }

    /// Keeps an idle session's live state warm (or drops it at once when it alone is over
    /// the bound).
    pub(crate) fn park(&self, session: SessionId, live: LiveSession) {
        let Some(cache) = &self.cache else { return };
        let bytes = u32::try_from(live.approx_bytes()).unwrap_or(u32::MAX);
        let parked = Parked {
            bytes,
            last_seq: live.state.last_seq,
            live: Mutex::new(Some(live)),
        };
        cache.insert(session, Arc::new(parked));
    }

    pub(crate) fn forget(&self, session: &SessionId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(session);
        }
    }

    /// Forgets the session's state if it ends before `last_seq`: another node logged more.
    pub(crate) fn forget_if_before(&self, session: &SessionId, last_seq: u64) {
        let Some(cache) = &self.cache else { return };
        if cache
            .get(session)
            .is_some_and(|parked| parked.last_seq < last_seq)
        {
            cache.invalidate(session);
        }
    }

    pub(crate) fn forget_all(&self) {
        if let Some(cache) = &self.cache {
            cache.invalidate_all();
        }
    }

    /// Counts a session loaded from the store because it was not warm.
    pub(crate) fn count_load(&self) {
        bump(&self.counters.loads);
    }

    /// Applies pending evictions and expiries: the cache otherwise does so only as it is used,
    /// and an idle node should still let idle sessions go.
    pub(crate) fn tidy(&self) {
        if let Some(cache) = &self.cache {
            cache.run_pending_tasks();
        }
    }

    pub(crate) fn stats(&self, in_use: u64) -> SessionCacheStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        // Pending evictions applied first: the figures are exact, not lagging behind.
        self.tidy();
        let (entries, bytes) = self
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.entry_count(), c.weighted_size()));
        SessionCacheStats {
            hits: get(&self.counters.hits),
            loads: get(&self.counters.loads),
            evictions: get(&self.counters.evictions),
            expirations: get(&self.counters.expirations),
            entries,
            bytes,
            in_use,
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
