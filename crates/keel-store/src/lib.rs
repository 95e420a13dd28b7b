//! keel's durable store. `Store` is the one contract every backend keeps (SQLite, embedded;
//! PostgreSQL, for several nodes); `conformance` is the one test suite every backend must pass.
//!
//! The log is append-only with optimistic concurrency: `append` names the seq it expects
//! to follow and fails with `StoreError::Conflict` if someone else appended first, so a
//! session's seqs never have a gap or a duplicate.

pub mod blocks;
pub mod chain;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod encode;
pub mod export;
pub mod memory;
pub mod portable;
pub mod postgres;
mod signals;
pub mod sqlite;
mod stored;
mod types;
mod unreadable;
pub mod webhooks;

pub use blocks::{BlockEdit, MemoryBlock, SharedBlockWrite};
pub use chain::{ChainReport, JournalEntry};
pub use memory::{Fusion, MemoryHit, MemoryQuery, MemoryRecord};
pub use postgres::{PgOptions, PgStore};
pub use signals::StoreSignal;
pub use sqlite::{Durability, SqliteOptions, SqliteStore};
pub use types::*;
pub use unreadable::{isolated as note_unreadable, unreadable_records_seen};
pub use webhooks::{
    ClaimedDelivery, DeliveryOutcome, DeliveryRecord, WebhookDirection, WebhookEvent, WebhookRecord,
};

use async_trait::async_trait;
use keel_core::{
    AgentDef, Event, RunId, RunStatus, SessionId, TenantId, TimerId, Timestamp, WebhookId,
};

#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- agents -------------------------------------------------------------------------

    /// Stores `def` as the next version of the agent named `def.name` and returns it with its
    /// version number (1 for a new name; `def.version` is ignored). A new name gets `def.id`.
    async fn put_agent(&self, tenant: &TenantId, def: AgentDef) -> Result<AgentDef, StoreError>;
    /// The given version, or the latest one when `version` is `None`.
    async fn get_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentDef>, StoreError>;
    /// Hides the agent (every version) from `list_agents` until a new version is stored;
    /// versions stay readable for the sessions that pin them. Its timers are deleted in the
    /// same transaction: an archived agent starts no more sessions. `false` for an unknown
    /// agent.
    async fn archive_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// The latest version of every agent not archived, by name.
    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<AgentDef>, StoreError>;

    // --- sessions and their logs ----------------------------------------------------------

    /// Creates the session row and appends its first events (seq 1.. ) atomically.
    async fn create_session(
        &self,
        session: &SessionRecord,
        first_events: Vec<NewEvent>,
    ) -> Result<(), StoreError>;
    async fn get_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// Sessions newest first, after `filter.before` (a cursor: the last id of the previous page).
    async fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError>;
    /// How many sessions and agents (by name) the tenant holds, for its limits.
    async fn tenant_counts(&self, tenant: &TenantId) -> Result<TenantCounts, StoreError>;
    /// Deletes the session, its events, snapshots, scratchpad and runs.
    async fn delete_session(&self, tenant: &TenantId, id: &SessionId) -> Result<bool, StoreError>;
    /// Replaces the session's metadata; `false` for an unknown session (or another tenant's).
    async fn update_session_metadata(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, StoreError>;

    /// Marks the tenant's session moved out to another deployment, in one transaction that
    /// first finds none of its runs running (else `Busy`, nothing written): from then on
    /// `append`, `enqueue_run_with` and `put_timer` refuse it with `Exported`, and `claim_runs`,
    /// `due_timers` and `fire_timer` pass it by, so what an export read after this holds is
    /// all that happened here. Marking a moved session again keeps and returns its first mark.
    /// `NotFound` for another tenant's session.
    async fn mark_exported(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        mark: &ExportMark,
    ) -> Result<ExportMark, StoreError>;
    /// The session's mark when it was moved out, `None` while it lives here (or for a session
    /// the tenant does not have).
    async fn export_mark(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<ExportMark>, StoreError>;

    /// Appends `batch.events` as seqs `expected_last_seq + 1 ..` and applies its scratchpad
    /// writes, all in one transaction. Returns the new last seq. A `run_started` of one of the
    /// session's runs becomes where that run's input is kept: the queue stops holding a copy
    /// (`get_run` and the other readers read it from the log from then on). Fails with `Conflict` when
    /// the session's last seq is not `expected_last_seq`, and with `NotFound` for an unknown
    /// session. Durable when it returns (subject to `Durability`).
    async fn append(
        &self,
        session: &SessionId,
        expected_last_seq: u64,
        batch: AppendBatch,
    ) -> Result<u64, StoreError>;
    /// Events with `seq > after`, ascending, at most `limit`. `NotFound` for an unknown session.
    async fn read_events(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
    /// The last `limit` events with `seq < before` (ascending order), for reading a recent window.
    async fn read_events_before(
        &self,
        session: &SessionId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError>;
    /// Events with `seq > after` as stored — type, time, body text and hash record —,
    /// ascending, at most `limit`: what checking the session's hash chain reads
    /// (`chain::verify`). `NotFound` for an unknown session.
    async fn read_journal(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StoreError>;
    /// The latest snapshot plus every event after it: all that loading a session needs.
    async fn load(&self, session: &SessionId) -> Result<LoadedSession, StoreError>;
    /// Stores a snapshot of the state at `snapshot.seq` (which must already be logged, else
    /// `Invalid`). Only the latest snapshot is kept; an older one than stored is ignored.
    async fn put_snapshot(&self, session: &SessionId, snapshot: Snapshot)
    -> Result<(), StoreError>;

    /// A session's scratchpad value (written only through `AppendBatch::scratchpad`).
    async fn scratchpad_get(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<String>, StoreError>;

    // --- memory blocks (`blocks`) ---------------------------------------------------------

    /// The session's blocks edited so far, by label (one never edited has no row: it holds its
    /// agent's declared value). Empty for another tenant's session.
    async fn session_blocks(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<MemoryBlock>, StoreError>;
    /// The tenant's shared blocks, by label.
    async fn shared_blocks(&self, tenant: &TenantId) -> Result<Vec<MemoryBlock>, StoreError>;
    /// Writes a shared block and its history row in one transaction, and returns it; `Stale`,
    /// nothing written, when the block is not at `write.expected_version`.
    async fn put_shared_block(
        &self,
        tenant: &TenantId,
        write: &SharedBlockWrite,
    ) -> Result<MemoryBlock, StoreError>;
    /// Forgets a shared block and its history; `false` when the tenant has no such block.
    async fn delete_shared_block(&self, tenant: &TenantId, label: &str)
    -> Result<bool, StoreError>;
    /// A shared block's writes, newest first, at most `limit`.
    async fn shared_block_history(
        &self,
        tenant: &TenantId,
        label: &str,
        limit: usize,
    ) -> Result<Vec<BlockEdit>, StoreError>;

    // --- the run queue ----------------------------------------------------------------------

    /// Queues a run; it is claimable at once.
    async fn enqueue_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.enqueue_run_with(run, &Enqueue::default())
            .await
            .map(drop)
    }
    /// Queues a run as `how` says, in one transaction with the look at the session's queued
    /// and running runs: refused when the session is busy and `how.refuse_if_busy`, leased at
    /// once to `how.claim_if_idle` when it is idle. Exact across every handle on the storage
    /// (processes, nodes): of racing `refuse_if_busy` enqueues on an idle session, one gets in.
    async fn enqueue_run_with(
        &self,
        run: &RunRecord,
        how: &Enqueue,
    ) -> Result<Enqueued, StoreError>;
    async fn get_run(&self, tenant: &TenantId, id: &RunId)
    -> Result<Option<RunRecord>, StoreError>;
    /// The session's queued and running runs, oldest first (empty for another tenant's session).
    async fn pending_runs(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<RunRecord>, StoreError>;
    /// The tenant's runs of `status` (queued, running or waiting: the unfinished ones, few by
    /// nature), newest first, those older than `before` when given, at most `limit`.
    async fn runs_with_status(
        &self,
        tenant: &TenantId,
        status: RunStatus,
        before: Option<&RunId>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;
    /// Claims up to `limit` runs for `node` until `now + lease_ms`: queued runs, and runs whose
    /// lease has expired, oldest first, **never two of one session**, and none of a session
    /// that already has a live lease. Claimed runs become `Running`.
    async fn claim_runs(
        &self,
        node: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError>;
    /// Extends the lease; `false` when `node` no longer holds it (it expired and was taken).
    async fn heartbeat(
        &self,
        run: &RunId,
        node: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Marks the run finished with `status` and `output`/`error`, releasing its lease: a
    /// terminal status, or `Waiting` (parked for a person) / `Queued` (a waiting run resumed);
    /// `Invalid` for `Running`. `NotFound` for an unknown run.
    async fn finish_run(
        &self,
        run: &RunId,
        status: RunStatus,
        outcome: RunOutcome,
    ) -> Result<(), StoreError>;
    /// Asks for a run to be cancelled; its holder sees it at the next step boundary. `false`
    /// when the tenant has no such run; a finished run is left as it is (and gives `true`).
    async fn request_cancel(&self, tenant: &TenantId, run: &RunId) -> Result<bool, StoreError>;
    /// Forgets a finished run's record (its events stay in the session's log); `false` when
    /// the tenant has no such run, `Invalid` while it is queued or running.
    async fn delete_run(&self, tenant: &TenantId, run: &RunId) -> Result<bool, StoreError>;
    /// How many runs the queue holds in each status (all tenants), for metrics.
    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>, StoreError>;
    /// Makes every lease held by `node` claimable now: a restarted node takes back its runs.
    async fn release_leases(&self, node: &str) -> Result<u64, StoreError>;

    // --- timers ------------------------------------------------------------------------------

    /// Stores a new timer of an existing session, or of an agent not archived, of its tenant
    /// (`NotFound` otherwise; `AlreadyExists` for a used id).
    async fn put_timer(&self, timer: &TimerRecord) -> Result<(), StoreError>;
    /// The session's timers, those still to fire first (soonest first), then those done.
    /// Empty for another tenant's session.
    async fn list_timers(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<TimerRecord>, StoreError>;
    /// The agent's timers (`TimerOwner::Agent`), in `list_timers`' order. Empty for another
    /// tenant's agent. Archiving the agent deletes them (`archive_agent`).
    async fn list_agent_timers(
        &self,
        tenant: &TenantId,
        agent: &str,
    ) -> Result<Vec<TimerRecord>, StoreError>;
    /// Forgets a timer; `false` when the tenant has no such timer.
    async fn delete_timer(&self, tenant: &TenantId, id: &TimerId) -> Result<bool, StoreError>;
    /// Up to `limit` timers due at `now` (any tenant), the longest due first.
    async fn due_timers(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<TimerRecord>, StoreError>;
    /// Fires the timer for the time it was `due`, in one transaction: its next time becomes
    /// `next` (`None`: it is done), its count goes up and `start` is written (a run queued on
    /// its session; for an agent's timer, a new session created and its run queued). `false`,
    /// and nothing written, when it is not due at `due` any more — another node fired it, or
    /// it was deleted —: so a due time fires once, and starts once, across every handle on
    /// the storage.
    async fn fire_timer(
        &self,
        id: &TimerId,
        due: Timestamp,
        next: Option<Timestamp>,
        start: &TimerStart,
    ) -> Result<bool, StoreError>;

    // --- webhooks (`webhooks`) -------------------------------------------------------------

    /// Stores a new webhook (`AlreadyExists` for a used id or token; `NotFound` when it names
    /// a session its tenant does not hold). Settling a run (`finish_run`, an append's
    /// `finish_run`) writes a delivery for each outbound webhook of the run's tenant and scope
    /// whose events name the new status, in the same transaction.
    async fn put_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError>;
    /// The tenant's webhooks, by id.
    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError>;
    /// Forgets a webhook and its deliveries; `false` when the tenant has no such webhook.
    async fn delete_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<bool, StoreError>;
    /// The inbound webhook whose path token has this SHA-256, any tenant's.
    async fn inbound_webhook(&self, token_hash: &[u8])
    -> Result<Option<WebhookRecord>, StoreError>;
    /// Records an inbound call's signature as used until `expires_at` (and forgets those
    /// expired at `now`); `false` when it was recorded already: the call is a replay. Exact
    /// across every handle on the storage.
    async fn remember_signature(
        &self,
        webhook: &WebhookId,
        signature: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;
    /// Forgets a signature `remember_signature` recorded, when the call it admitted started
    /// nothing: its sender may send it again.
    async fn forget_signature(
        &self,
        webhook: &WebhookId,
        signature: &str,
    ) -> Result<(), StoreError>;
    /// The webhook's deliveries, newest first, at most `limit`; empty for another tenant's.
    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: &WebhookId,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError>;
    /// Claims up to `limit` deliveries due at `now` (any tenant) for one attempt each: each
    /// comes back with its attempt counted, and is not due again before `now + lease_ms`
    /// unless settled; of handles racing for a delivery, one gets it.
    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError>;
    /// Records how attempt `attempt` of a delivery ended; `false`, and nothing written, when
    /// the delivery is settled already or another attempt has started since.
    async fn settle_delivery(
        &self,
        id: &str,
        attempt: u32,
        now: Timestamp,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError>;

    // --- tenants and API keys ----------------------------------------------------------------

    /// `AlreadyExists` when the id is taken.
    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError>;
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError>;
    /// Stores a key of an existing tenant (`NotFound` otherwise); `AlreadyExists` for a used prefix.
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    /// The key with this public prefix, revoked or not.
    async fn get_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Revokes the key from `at` on; `false` for an unknown prefix.
    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> Result<bool, StoreError>;

    // --- usage accounting ---------------------------------------------------------------------

    /// Adds each increment to the stored totals of its tenant, key, model and day, in one
    /// transaction.
    async fn add_usage(&self, increments: &[UsageTotals]) -> Result<(), StoreError>;
    /// The tenant's totals, by day, key and model (oldest day first).
    async fn usage(
        &self,
        tenant: &TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError>;

    // --- moving a whole store (`export`, for `keel migrate`) -----------------------------------

    /// Up to `limit` rows of the table `after` is at (`export::TABLES`), in key order after
    /// its key, as stored: nothing decoded, so an unreadable record moves as it is; a row whose
    /// columns cannot be read is listed in the page instead. A full walk: not for request paths.
    async fn export_page(
        &self,
        after: &export::ExportCursor,
        limit: usize,
    ) -> Result<export::ExportPage, StoreError>;
    /// Writes rows as `export_page` gave them, as they are, in one transaction: for filling an
    /// empty store (`export::copy_store`), whose invariants are then the source's.
    async fn import(&self, records: Vec<export::StoredRecord>) -> Result<(), StoreError>;

    // --- records that cannot be read ----------------------------------------------------------

    /// Stores a long-term memory record, replacing the tenant's record with its id (its
    /// `created_at` kept); the text is indexed for search in the same write.
    async fn put_memory(&self, record: &MemoryRecord) -> Result<(), StoreError>;

    async fn get_memory(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<MemoryRecord>, StoreError>;

    async fn delete_memory(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Up to `limit` of the tenant's records in `namespace` whose id sorts after `after`, by
    /// id: a namespace read whole, page by page (a session's records, for its export).
    async fn list_memory(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<MemoryRecord>, StoreError>;

    /// Hybrid search of one namespace of the tenant: full-text matches of any of the query's
    /// terms and, with an embedding, the nearest vectors (brute force), fused by reciprocal
    /// rank (`memory`); at most `query.limit` hits, best first. `NotFound` for a namespace
    /// that holds none of the tenant's records.
    async fn search_memory(
        &self,
        tenant: &TenantId,
        query: &MemoryQuery,
    ) -> Result<Vec<MemoryHit>, StoreError>;

    /// Up to `limit` stored records (any tenant) that do not decode — damaged, edited by hand,
    /// or written by a newer keel. Readers that walk many rows skip such records and the run
    /// queue fails such runs; this lists them all. A full scan: for admins, not request paths.
    async fn unreadable_records(&self, limit: usize) -> Result<Vec<UnreadableRecord>, StoreError>;

    /// Whether the store answers (a read).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Whether the store can serve: reads answer and a write can commit now (SQLite: the
    /// outcome of the last write when it is under a second old, else of a probe write), with
    /// the reason when not. For readiness, and for requests that wait on the store.
    async fn health(&self) -> Result<(), StoreError> {
        self.ping().await
    }

    /// Which backend and storage this is, without credentials, for an operator: `SQLite
    /// <file>`, `PostgreSQL <user@host:port/database>, schema <name>`.
    fn describe(&self) -> String;

    /// Hints of what other handles on the storage (other nodes) change, for a node to look
    /// again at once instead of at its next poll; `None` when the backend has none to give
    /// (SQLite: one process drives a data directory, and it knows its own changes).
    fn signals(&self) -> Option<tokio::sync::broadcast::Receiver<StoreSignal>> {
        None
    }
}
