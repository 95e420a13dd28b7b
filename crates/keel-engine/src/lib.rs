//! keel's driver. It runs sessions through the sans-IO core: load the session, ask
//! `decide` what to do, log the intent, do it, log the result, repeat. Runs come from the
//! store's run queue under a lease, so a crashed node's runs are resumed (here at the next
//! start, or by another node when the lease expires), and never two at once per session.
//!
//! Modules: `driver` (one run's loop), `dispatch` (claiming runs, leases, recovery),
//! `live` (in-memory session state), `request` (a step's model request), `travel` (forks and
//! the context at a seq), `slots` (the sessions in use), `warm` (idle ones kept,
//! bounded in bytes), `follow` (following a run or a log), `tools`, `models`
//! (provider lookup), `listing` (the models one may name), `fault` (crash-test hooks), `clock`
//! (time and ids). Every write to the store is an `Engine` method (`sessions`, `agents`,
//! `tenants`, `records` hold those outside runs; `submit` queues runs, `runs` reads and cancels
//! them); others get a `StoreReader`.
//! This file holds the engine itself: its configuration, errors, shared state and lifecycle.

mod agents;
mod approvals;
mod blocks;
mod compaction;
pub use compaction::Summarised;
pub mod clock;
mod context;
mod dispatch;
mod driver;
mod extraction;
pub mod fault;
mod follow;
mod listing;
mod live;
mod memory;
pub mod models;
mod portable;
mod quotas;
mod reader;
mod records;
mod request;
mod runs;
mod sessions;
mod signals;
mod slots;
mod submit;
mod supervise;
mod tenants;
mod threading;
mod timers;
mod titles;
pub mod tools;
mod travel;
mod warm;
pub mod webhooks;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_core::{Event, EventBody, RunId, SessionId, TenantId};
use keel_store::{RunRecord, Store, StoreError};
use tokio::sync::{Notify, Semaphore, watch};

pub use approvals::CallDecision;
pub use blocks::{RenderedBlock, SharedBlockSettings};
pub use follow::{LogFollower, RunFollower, RunProgress};
pub use listing::ListedModel;
pub use live::LoadError;
pub use memory::{MAX_RECALL, SearchMode};
pub use models::{ModelRegistry, ResolveError, Resolved};
pub use quotas::Quotas;
pub use reader::StoreReader;
pub use supervise::supervised;
pub use threading::{Thread, ThreadError, ThreadedTurn};
pub use timers::{
    MAX_NOTE_BYTES, MAX_TIMERS_PER_AGENT, MAX_TIMERS_PER_SESSION, When, next_slot, parse_instant,
};
pub use travel::SessionContext;
pub use warm::SessionCacheStats;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// This node's name in run leases. Stable across restarts, so a restarted node takes
    /// back its own runs at once instead of waiting for their leases to expire.
    pub node_id: String,
    pub lease: Duration,
    /// Store a snapshot when this many events were logged since the last one.
    pub snapshot_every: u64,
    /// Runs this node drives at once.
    pub max_concurrent_runs: usize,
    pub tool_timeout: Duration,
    /// How often to look for runs queued by others or whose leases expired.
    pub poll_interval: Duration,
    /// The estimated bytes of idle sessions' live state kept warm (`warm`); 0 keeps none.
    pub session_cache_bytes: u64,
    /// How long an idle session stays warm unless the byte bound evicts it sooner.
    pub session_idle: Duration,
    /// How much one tenant or session may hold or queue.
    pub quotas: Quotas,
    /// Live updates a session's channel keeps for its slowest follower; one further behind
    /// reads the store instead (`follow/`). Allocated while the session is driven or
    /// followed, so small. Tests make it tiny to make followers lag.
    pub updates_capacity: usize,
    /// The `run_python` tool's interpreter (with the `sandbox` feature); `None`: not installed.
    pub code_interpreter: Option<tools::CodeInterpreterFiles>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            node_id: "local".into(),
            lease: Duration::from_secs(30),
            snapshot_every: 100,
            max_concurrent_runs: 256,
            tool_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            session_cache_bytes: 64 << 20,
            session_idle: Duration::from_secs(60),
            quotas: Quotas::default(),
            updates_capacity: 128,
            code_interpreter: None,
        }
    }
}

/// What a session's broadcast carries as a run progresses: lossy (a slow receiver lags), so
/// only `follow/` reads it, and gives everyone else `follow_run` / `follow_log`.
#[derive(Clone, Debug)]
pub(crate) enum RunUpdate {
    /// A piece of the model's reply as it streams. Not logged: the whole reply is logged as
    /// an event when it ends. `attempt` tells a retried step's text from the abandoned one.
    TextDelta {
        run_id: RunId,
        step: u32,
        attempt: u32,
        text: String,
    },
    /// The model call of this step failed over to another target after streaming part of its
    /// reply: discard the text streamed so far for this step; the reply starts again.
    TextReset { run_id: RunId, step: u32 },
    /// An event was durably logged.
    Event(Arc<Event>),
    /// The run ended and the queue knows it.
    Finished(Box<RunRecord>),
    /// Driving the run stopped on a store failure (e.g. a full disk). The run is not lost:
    /// it resumes when its lease expires or at the next start.
    Halted { run_id: RunId, error: String },
}

/// What `submit_with` does when the session already has a queued or running run
/// ("double-texting").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BusyPolicy {
    /// Queue the new input after the runs already there.
    #[default]
    Enqueue,
    /// Refuse the new input with `EngineError::Busy`.
    Reject,
    /// Cancel the pending runs (the active one stops at its next step boundary), then queue
    /// the new input.
    Interrupt,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "session {session} is busy with run {run}: wait for it, cancel it, or send with the `enqueue` or `interrupt` policy"
    )]
    Busy { session: SessionId, run: RunId },
    #[error("{kind} {id:?} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0}")]
    Invalid(String),
    /// An abuse limit (`Quotas`) would be passed; the message names it and its setting.
    #[error("{0}")]
    LimitReached(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A model call the engine made for the caller (an embedding) failed.
    #[error("{0}")]
    Model(keel_models::ModelError),
}

/// What this node's engine has done since it started, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Model calls that got a reply (`model_replied` events logged).
    pub steps: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The same, by the configured provider that served them and its kind (bounded by the
    /// configuration: a reply names one of its providers).
    pub by_provider: BTreeMap<ServedBy, StepTotals>,
    pub runs_completed: u64,
    pub runs_failed: u64,
    pub runs_cancelled: u64,
    /// Sessions in memory now, and what the warm cache did.
    pub sessions: SessionCacheStats,
}

/// A configured provider's name (`[providers.NAME]`) and its kind (`openai`, …; empty when
/// an older log did not say).
pub type ServedBy = (String, String);

/// Model steps and their tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepTotals {
    pub steps: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The counters behind `EngineStats`, bumped by the driver as it logs events.
#[derive(Default)]
struct Counters {
    steps: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    by_provider: Mutex<BTreeMap<ServedBy, StepTotals>>,
    runs_completed: AtomicU64,
    runs_failed: AtomicU64,
    runs_cancelled: AtomicU64,
}

impl Counters {
    /// Counts what a logged event says happened.
    fn count(&self, body: &EventBody) {
        let bump = |c: &AtomicU64, n: u64| c.fetch_add(n, Ordering::Relaxed);
        match body {
            EventBody::ModelReplied {
                usage,
                model,
                provider_kind,
                ..
            } => {
                bump(&self.steps, 1);
                bump(&self.input_tokens, usage.input_tokens);
                bump(&self.output_tokens, usage.output_tokens);
                let provider = model.split_once('/').map_or(model.as_str(), |(p, _)| p);
                let key = (
                    provider.to_string(),
                    provider_kind.clone().unwrap_or_default(),
                );
                let mut by_provider = self.by_provider.lock().unwrap();
                let totals = by_provider.entry(key).or_default();
                totals.steps += 1;
                totals.input_tokens += usage.input_tokens;
                totals.output_tokens += usage.output_tokens;
            }
            EventBody::RunCompleted { .. } => {
                bump(&self.runs_completed, 1);
            }
            EventBody::RunFailed { .. } => {
                bump(&self.runs_failed, 1);
            }
            EventBody::RunCancelled { .. } => {
                bump(&self.runs_cancelled, 1);
            }
            _ => {}
        }
    }

    fn snapshot(&self) -> EngineStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EngineStats {
            steps: get(&self.steps),
            input_tokens: get(&self.input_tokens),
            output_tokens: get(&self.output_tokens),
            by_provider: self.by_provider.lock().unwrap().clone(),
            runs_completed: get(&self.runs_completed),
            runs_failed: get(&self.runs_failed),
            runs_cancelled: get(&self.runs_cancelled),
            sessions: SessionCacheStats::default(),
        }
    }
}

/// Why a run being driven must stop at its next chance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Continue,
    /// Cancelled by a user: log `RunCancelled`.
    Cancel,
    /// Another node took the lease over: stop without logging anything more.
    LeaseLost,
}

struct HeldRun {
    tenant: TenantId,
    stop: watch::Sender<Stop>,
}

struct Inner {
    store: Arc<dyn Store>,
    models: ModelRegistry,
    tools: tools::ToolRunner,
    config: EngineConfig,
    /// The sessions worked on now, and the idle ones kept warm.
    slots: Arc<slots::SlotTable>,
    /// The runs this node drives, with the signal that stops them.
    held: Mutex<HashMap<RunId, HeldRun>>,
    run_permits: Arc<Semaphore>,
    wake: Notify,
    shutdown: watch::Sender<bool>,
    /// Published after every claim: true when nothing was claimable and nothing is driven.
    idle: watch::Sender<bool>,
    /// Set once this node's dispatcher runs: runs submitted here may then be driven at once.
    dispatching: std::sync::atomic::AtomicBool,
    counters: Counters,
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, models: ModelRegistry, config: EngineConfig) -> Self {
        let tools = tools::ToolRunner::new(
            config.tool_timeout,
            config.quotas.tool_result_bytes,
            models.clone(),
            config.code_interpreter.clone(),
        );
        let inner = Inner {
            store,
            models,
            tools,
            run_permits: Arc::new(Semaphore::new(config.max_concurrent_runs)),
            slots: slots::SlotTable::new(
                warm::WarmCache::new(config.session_cache_bytes, config.session_idle),
                config.updates_capacity,
            ),
            config,
            held: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            shutdown: watch::channel(false).0,
            idle: watch::channel(false).0,
            dispatching: Default::default(),
            counters: Counters::default(),
        };
        Engine {
            inner: Arc::new(inner),
        }
    }

    /// The store, read-only: every write is an `Engine` method.
    pub fn store(&self) -> StoreReader {
        StoreReader::new(self.inner.store.clone())
    }

    /// Stored records (any tenant) that cannot be decoded; a full scan, for admins.
    pub async fn unreadable_records(
        &self,
        limit: usize,
    ) -> Result<Vec<keel_store::UnreadableRecord>, EngineError> {
        Ok(self.inner.store.unreadable_records(limit).await?)
    }

    /// Steps, tokens and finished runs of this node since it started, and the sessions it
    /// holds in memory.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            sessions: self.inner.slots.stats(),
            ..self.inner.counters.snapshot()
        }
    }

    pub fn models(&self) -> &ModelRegistry {
        &self.inner.models
    }

    /// Takes back this node's runs from before a restart and starts driving queued runs.
    pub async fn start(&self) -> Result<u64, EngineError> {
        let recovered = self
            .inner
            .store
            .release_leases(&self.inner.config.node_id)
            .await?;
        if recovered > 0 {
            tracing::info!(
                recovered,
                "resuming runs left unfinished by the last process"
            );
        }
        signals::start(&self.inner);
        timers::start(&self.inner);
        webhooks::start(&self.inner);
        dispatch::start(&self.inner);
        Ok(recovered)
    }

    /// Stops claiming runs and lets the steps in flight log their results, then stops the MCP
    /// servers keel started; unfinished runs resume at the next start.
    pub async fn shutdown(&self) {
        self.inner.shutdown.send_replace(true);
        let all = self.inner.config.max_concurrent_runs as u32;
        let _ = self.inner.run_permits.acquire_many(all).await;
        // No run is left to call a tool: stop the MCP servers.
        self.inner.tools.shutdown().await;
    }

    /// Waits until this node has no run to drive: none queued or left unfinished, none in
    /// progress. (Runs leased by another live node are theirs to finish.)
    pub async fn wait_idle(&self) {
        let mut idle = self.inner.idle.subscribe();
        loop {
            self.inner.wake.notify_one();
            if idle.changed().await.is_err() {
                return;
            }
            if *idle.borrow_and_update() {
                return;
            }
        }
    }
}
