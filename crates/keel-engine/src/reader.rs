//! The store as the engine lets others see it: lookups and listings, never a write. Every
//! state change is an `Engine` method, so the rules that guard writes (quotas, the busy check,
//! ids and time from `clock`) cannot be stepped around; the compiler keeps it so, because
//! `StoreReader` has no write method and no way back to the `Store` it wraps.

use std::sync::Arc;

use keel_core::{AgentDef, Event, RunId, RunStatus, SessionId, TenantId};
use keel_store::{
    ApiKeyRecord, ChainReport, ExportMark, LoadedSession, RunRecord, SessionFilter, SessionRecord,
    Store, StoreError, TenantCounts, TenantRecord, UnreadableRecord, UsageQuery, UsageTotals,
};

/// Read-only access to a store (see the module's doc). Cheap to clone. It offers no write and
/// no way to the store it wraps:
///
/// ```compile_fail
/// # async fn write(reader: keel_engine::StoreReader, run: keel_store::RunRecord) {
/// reader.enqueue_run(&run).await.unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct StoreReader(Arc<dyn Store>);

impl StoreReader {
    /// A read-only view of `store`, for commands that only look (e.g. `keel sessions`).
    pub fn new(store: Arc<dyn Store>) -> Self {
        StoreReader(store)
    }

    /// The given version of an agent, or its latest when `version` is `None`.
    pub async fn get_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentDef>, StoreError> {
        self.0.get_agent(tenant, name, version).await
    }

    /// The latest version of every agent not archived, by name.
    pub async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<AgentDef>, StoreError> {
        self.0.list_agents(tenant).await
    }

    /// The session's `keel.session/1` export (keel-store's `portable`), one JSON text per line;
    /// `NotFound` for an unknown session or another tenant's.
    pub async fn export_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Vec<String>, StoreError> {
        keel_store::portable::export_session(self.0.as_ref(), tenant, id, crate::clock::now()).await
    }

    pub async fn get_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        self.0.get_session(tenant, id).await
    }

    /// Sessions newest first, after `filter.before`.
    pub async fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.0.list_sessions(tenant, filter).await
    }

    /// How many sessions and agents the tenant holds.
    pub async fn tenant_counts(&self, tenant: &TenantId) -> Result<TenantCounts, StoreError> {
        self.0.tenant_counts(tenant).await
    }

    /// Events with `seq > after`, ascending, at most `limit`.
    pub async fn read_events(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.0.read_events(session, after, limit).await
    }

    /// Walks the session's hash chain (`keel_store::chain`): intact, or the first seq where
    /// its log was changed. `NotFound` for an unknown session.
    pub async fn verify_chain(&self, session: &SessionId) -> Result<ChainReport, StoreError> {
        keel_store::chain::verify(self.0.as_ref(), session).await
    }

    /// The last `limit` events with `seq < before`, ascending.
    pub async fn read_events_before(
        &self,
        session: &SessionId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        self.0.read_events_before(session, before, limit).await
    }

    /// The latest snapshot plus every event after it.
    pub async fn load(&self, session: &SessionId) -> Result<LoadedSession, StoreError> {
        self.0.load(session).await
    }

    /// Whether and where the tenant's session was moved out (`Engine::move_session_out`).
    pub async fn export_mark(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Option<ExportMark>, StoreError> {
        self.0.export_mark(tenant, session).await
    }

    pub async fn get_run(
        &self,
        tenant: &TenantId,
        id: &RunId,
    ) -> Result<Option<RunRecord>, StoreError> {
        self.0.get_run(tenant, id).await
    }

    /// The tenant's unfinished runs of `status`, newest first (`Store::runs_with_status`).
    pub async fn runs_with_status(
        &self,
        tenant: &TenantId,
        status: RunStatus,
        before: Option<&RunId>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.0.runs_with_status(tenant, status, before, limit).await
    }

    /// The session's queued and running runs, oldest first.
    pub async fn pending_runs(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<RunRecord>, StoreError> {
        self.0.pending_runs(tenant, session).await
    }

    /// How many runs the queue holds in each status (all tenants).
    pub async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        self.0.count_runs().await
    }

    pub async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        self.0.get_tenant(id).await
    }

    /// The key with this public prefix, revoked or not.
    pub async fn get_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        self.0.get_api_key(prefix).await
    }

    /// The tenant's usage totals, by day, key and model.
    pub async fn usage(
        &self,
        tenant: &TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        self.0.usage(tenant, query).await
    }

    /// Stored records (any tenant) that cannot be decoded; a full scan, for admins.
    pub async fn unreadable_records(
        &self,
        limit: usize,
    ) -> Result<Vec<UnreadableRecord>, StoreError> {
        self.0.unreadable_records(limit).await
    }

    /// Whether the store can serve: reads answer and a write can commit now.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.0.health().await
    }
}
