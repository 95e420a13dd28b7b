//! `Store` for SQLite: each method goes to the writer (writes, group-committed) or to a
//! reader (reads, in parallel under WAL) with the query of its concern's module.

use super::*;

#[async_trait]
impl Store for SqliteStore {
    async fn put_agent(&self, tenant: &TenantId, def: AgentDef) -> Result<AgentDef, StoreError> {
        let tenant = tenant.clone();
        self.writer
            .write(move |conn| agents::put(conn, &tenant, def))
            .await
    }

    async fn get_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentDef>, StoreError> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.readers
            .read(move |conn| agents::get(conn, &tenant, &name, version))
            .await
    }

    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<AgentDef>, StoreError> {
        let tenant = tenant.clone();
        self.readers
            .read(move |conn| agents::list(conn, &tenant))
            .await
    }

    async fn archive_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.writer
            .write_synchronously(move |conn| agents::archive(conn, &tenant, &name, at))
            .await
    }

    async fn create_session(
        &self,
        session: &SessionRecord,
        first_events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        let session = session.clone();
        self.writer
            .write(move |conn| sessions::create(conn, &session, &first_events))
            .await
    }

    async fn get_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.readers
            .read(move |conn| sessions::get(conn, &tenant, &id))
            .await
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let (tenant, filter) = (tenant.clone(), filter.clone());
        self.readers
            .read(move |conn| sessions::list(conn, &tenant, &filter))
            .await
    }

    async fn tenant_counts(&self, tenant: &TenantId) -> Result<TenantCounts, StoreError> {
        let tenant = tenant.clone();
        self.readers
            .read(move |conn| tenants::counts(conn, &tenant))
            .await
    }

    async fn delete_session(&self, tenant: &TenantId, id: &SessionId) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .write_synchronously(move |conn| sessions::delete(conn, &tenant, &id))
            .await
    }

    async fn update_session_metadata(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .write(move |conn| sessions::update_metadata(conn, &tenant, &id, &metadata))
            .await
    }

    async fn mark_exported(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        mark: &crate::ExportMark,
    ) -> Result<crate::ExportMark, StoreError> {
        let (tenant, id, mark) = (tenant.clone(), id.clone(), mark.clone());
        self.writer
            .write_synchronously(move |conn| sessions::mark_exported(conn, &tenant, &id, &mark))
            .await
    }

    async fn export_mark(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<crate::ExportMark>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.readers
            .read(move |conn| match sessions::get(conn, &tenant, &id)? {
                Some(_) => sessions::export_mark(conn, &id),
                None => Ok(None),
            })
            .await
    }

    async fn append(
        &self,
        session: &SessionId,
        expected_last_seq: u64,
        batch: AppendBatch,
    ) -> Result<u64, StoreError> {
        let session = session.clone();
        let saves_memory = batch.memory.first().map(|r| r.tenant.clone());
        let appended = self
            .writer
            .write(move |conn| log::append(conn, &session, expected_last_seq, &batch))
            .await;
        if let Some(tenant) = saves_memory {
            self.vectors.forget_tenant(&tenant);
        }
        appended
    }

    async fn read_events(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let session = session.clone();
        self.readers
            .read(move |conn| log::read_after(conn, &session, after, limit))
            .await
    }

    async fn read_events_before(
        &self,
        session: &SessionId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        let session = session.clone();
        self.readers
            .read(move |conn| log::read_before(conn, &session, before, limit))
            .await
    }

    async fn read_journal(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::JournalEntry>, StoreError> {
        let session = session.clone();
        self.readers
            .read(move |conn| log::read_journal(conn, &session, after, limit))
            .await
    }

    async fn load(&self, session: &SessionId) -> Result<LoadedSession, StoreError> {
        let session = session.clone();
        self.readers
            .read(move |conn| log::load(conn, &session))
            .await
    }

    async fn put_snapshot(
        &self,
        session: &SessionId,
        snapshot: Snapshot,
    ) -> Result<(), StoreError> {
        let session = session.clone();
        self.writer
            .write(move |conn| log::put_snapshot(conn, &session, &snapshot))
            .await
    }

    async fn session_blocks(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<crate::MemoryBlock>, StoreError> {
        let (tenant, session) = (tenant.clone(), session.clone());
        self.readers
            .read(move |conn| blocks::session_blocks(conn, &tenant, &session))
            .await
    }

    async fn shared_blocks(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::MemoryBlock>, StoreError> {
        let tenant = tenant.clone();
        self.readers
            .read(move |conn| blocks::list(conn, &tenant, crate::blocks::SHARED))
            .await
    }

    async fn put_shared_block(
        &self,
        tenant: &TenantId,
        write: &crate::SharedBlockWrite,
    ) -> Result<crate::MemoryBlock, StoreError> {
        let (tenant, write) = (tenant.clone(), write.clone());
        self.writer
            .write(move |conn| blocks::put_shared(conn, &tenant, &write))
            .await
    }

    async fn delete_shared_block(
        &self,
        tenant: &TenantId,
        label: &str,
    ) -> Result<bool, StoreError> {
        let (tenant, label) = (tenant.clone(), label.to_string());
        self.writer
            .write(move |conn| blocks::delete_shared(conn, &tenant, &label))
            .await
    }

    async fn shared_block_history(
        &self,
        tenant: &TenantId,
        label: &str,
        limit: usize,
    ) -> Result<Vec<crate::BlockEdit>, StoreError> {
        let (tenant, label) = (tenant.clone(), label.to_string());
        self.readers
            .read(move |conn| blocks::history(conn, &tenant, &label, limit))
            .await
    }

    async fn scratchpad_get(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        let (session, key) = (session.clone(), key.to_string());
        self.readers
            .read(move |conn| log::scratchpad_get(conn, &session, &key))
            .await
    }

    async fn enqueue_run_with(
        &self,
        run: &RunRecord,
        how: &Enqueue,
    ) -> Result<Enqueued, StoreError> {
        let (run, how) = (run.clone(), how.clone());
        self.writer
            .write(move |conn| runs::enqueue(conn, &run, &how))
            .await
    }

    async fn get_run(
        &self,
        tenant: &TenantId,
        id: &RunId,
    ) -> Result<Option<RunRecord>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.readers
            .read(move |conn| runs::get(conn, &tenant, &id))
            .await
    }

    async fn pending_runs(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let (tenant, session) = (tenant.clone(), session.clone());
        self.readers
            .read(move |conn| runs::pending(conn, &tenant, &session))
            .await
    }

    async fn runs_with_status(
        &self,
        tenant: &TenantId,
        status: RunStatus,
        before: Option<&RunId>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let (tenant, before) = (tenant.clone(), before.cloned());
        self.readers
            .read(move |conn| runs::with_status(conn, &tenant, status, before.as_ref(), limit))
            .await
    }

    async fn claim_runs(
        &self,
        node: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let node = node.to_string();
        self.writer
            .write(move |conn| runs::claim(conn, &node, now, lease_ms, limit))
            .await
    }

    async fn heartbeat(
        &self,
        run: &RunId,
        node: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        let (run, node) = (run.clone(), node.to_string());
        self.writer
            .write(move |conn| runs::heartbeat(conn, &run, &node, now, lease_ms))
            .await
    }

    async fn finish_run(
        &self,
        run: &RunId,
        status: RunStatus,
        outcome: RunOutcome,
    ) -> Result<(), StoreError> {
        let run = run.clone();
        self.writer
            .write(move |conn| runs::finish(conn, &run, status, &outcome))
            .await
    }

    async fn request_cancel(&self, tenant: &TenantId, run: &RunId) -> Result<bool, StoreError> {
        let (tenant, run) = (tenant.clone(), run.clone());
        self.writer
            .write(move |conn| runs::request_cancel(conn, &tenant, &run))
            .await
    }

    async fn delete_run(&self, tenant: &TenantId, run: &RunId) -> Result<bool, StoreError> {
        let (tenant, run) = (tenant.clone(), run.clone());
        self.writer
            .write_synchronously(move |conn| runs::delete(conn, &tenant, &run))
            .await
    }

    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        self.readers.read(runs::count_by_status).await
    }

    async fn release_leases(&self, node: &str) -> Result<u64, StoreError> {
        let node = node.to_string();
        self.writer
            .write(move |conn| runs::release_leases(conn, &node))
            .await
    }

    async fn put_memory(&self, record: &crate::MemoryRecord) -> Result<(), StoreError> {
        let stored = record.clone();
        let outcome = self
            .writer
            .write(move |conn| memory::put(conn, &stored))
            .await;
        self.vectors.forget_tenant(&record.tenant);
        outcome
    }

    async fn get_memory(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<crate::MemoryRecord>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.to_string());
        self.readers
            .read(move |conn| memory::get(conn, &tenant, &id))
            .await
    }

    async fn list_memory(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<crate::MemoryRecord>, StoreError> {
        let (tenant, namespace, after) = (tenant.clone(), namespace.to_string(), after.to_string());
        self.readers
            .read(move |conn| memory::list(conn, &tenant, &namespace, &after, limit))
            .await
    }

    async fn delete_memory(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let (owner, id) = (tenant.clone(), id.to_string());
        let outcome = self
            .writer
            .write(move |conn| memory::delete(conn, &owner, &id))
            .await;
        self.vectors.forget_tenant(tenant);
        outcome
    }

    async fn search_memory(
        &self,
        tenant: &TenantId,
        query: &crate::MemoryQuery,
    ) -> Result<Vec<crate::MemoryHit>, StoreError> {
        let (tenant, query, vectors) = (tenant.clone(), query.clone(), self.vectors.clone());
        self.readers
            .read(move |conn| memory::search(conn, &vectors, &tenant, &query))
            .await
    }

    async fn put_timer(&self, timer: &TimerRecord) -> Result<(), StoreError> {
        let timer = timer.clone();
        self.writer
            .write(move |conn| timers::put(conn, &timer))
            .await
    }

    async fn list_timers(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        let (tenant, session) = (tenant.clone(), session.clone());
        self.readers
            .read(move |conn| timers::list(conn, &tenant, &session))
            .await
    }

    async fn list_agent_timers(
        &self,
        tenant: &TenantId,
        agent: &str,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        let (tenant, agent) = (tenant.clone(), agent.to_string());
        self.readers
            .read(move |conn| timers::list_of_agent(conn, &tenant, &agent))
            .await
    }

    async fn delete_timer(&self, tenant: &TenantId, id: &TimerId) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .write(move |conn| timers::delete(conn, &tenant, &id))
            .await
    }

    async fn due_timers(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        self.readers
            .read(move |conn| timers::due(conn, now, limit))
            .await
    }

    async fn fire_timer(
        &self,
        id: &TimerId,
        due: Timestamp,
        next: Option<Timestamp>,
        start: &crate::TimerStart,
    ) -> Result<bool, StoreError> {
        let (id, start) = (id.clone(), start.clone());
        self.writer
            .write(move |conn| timers::fire(conn, &id, due, next, &start))
            .await
    }

    async fn put_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        let webhook = webhook.clone();
        self.writer
            .write(move |conn| webhooks::put(conn, &webhook))
            .await
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        let tenant = tenant.clone();
        self.readers
            .read(move |conn| webhooks::list(conn, &tenant))
            .await
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.writer
            .write(move |conn| webhooks::delete(conn, &tenant, &id))
            .await
    }

    async fn inbound_webhook(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<WebhookRecord>, StoreError> {
        let token_hash = token_hash.to_vec();
        self.readers
            .read(move |conn| webhooks::inbound(conn, &token_hash))
            .await
    }

    async fn remember_signature(
        &self,
        webhook: &WebhookId,
        signature: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (webhook, signature) = (webhook.clone(), signature.to_string());
        self.writer
            .write(move |conn| {
                webhooks::remember_signature(conn, &webhook, &signature, now, expires_at)
            })
            .await
    }

    async fn forget_signature(
        &self,
        webhook: &WebhookId,
        signature: &str,
    ) -> Result<(), StoreError> {
        let (webhook, signature) = (webhook.clone(), signature.to_string());
        self.writer
            .write(move |conn| webhooks::forget_signature(conn, &webhook, &signature))
            .await
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: &WebhookId,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let (tenant, webhook) = (tenant.clone(), webhook.clone());
        self.readers
            .read(move |conn| webhooks::deliveries(conn, &tenant, &webhook, limit))
            .await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        let due = self
            .readers
            .read(move |conn| webhooks::any_due(conn, now))
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        self.writer
            .write(move |conn| webhooks::claim(conn, now, lease_ms, limit))
            .await
    }

    async fn settle_delivery(
        &self,
        id: &str,
        attempt: u32,
        now: Timestamp,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        let (id, outcome) = (id.to_string(), outcome.clone());
        self.writer
            .write(move |conn| webhooks::settle(conn, &id, attempt, now, &outcome))
            .await
    }

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
        let tenant = tenant.clone();
        self.writer
            .write_synchronously(move |conn| tenants::create(conn, &tenant))
            .await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        let id = id.clone();
        self.readers.read(move |conn| tenants::get(conn, &id)).await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.writer
            .write_synchronously(move |conn| tenants::create_key(conn, &key))
            .await
    }

    async fn get_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let prefix = prefix.to_string();
        self.readers
            .read(move |conn| tenants::get_key(conn, &prefix))
            .await
    }

    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> Result<bool, StoreError> {
        let prefix = prefix.to_string();
        self.writer
            .write_synchronously(move |conn| tenants::revoke_key(conn, &prefix, at))
            .await
    }

    async fn add_usage(&self, increments: &[UsageTotals]) -> Result<(), StoreError> {
        let increments = increments.to_vec();
        self.writer
            .write(move |conn| usage::add(conn, &increments))
            .await
    }

    async fn usage(
        &self,
        tenant: &TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.readers
            .read(move |conn| usage::list(conn, &tenant, &query))
            .await
    }

    async fn export_page(
        &self,
        after: &ExportCursor,
        limit: usize,
    ) -> Result<ExportPage, StoreError> {
        let after = after.clone();
        self.readers
            .read(move |conn| export::export_page(conn, &after, limit))
            .await
    }

    async fn import(&self, records: Vec<StoredRecord>) -> Result<(), StoreError> {
        // Memory records written here reach searches at once: their tenants' cached vectors go.
        let tenants: Vec<TenantId> = records
            .iter()
            .filter(|r| r.def().name == "memory_records")
            .filter_map(|r| match r.get("tenant") {
                crate::export::Value::Text(t) => t.parse().ok(),
                _ => None,
            })
            .collect();
        let outcome = self
            .writer
            .write_synchronously(move |conn| export::import(conn, &records))
            .await;
        for tenant in &tenants {
            self.vectors.forget_tenant(tenant);
        }
        outcome
    }

    async fn unreadable_records(&self, limit: usize) -> Result<Vec<UnreadableRecord>, StoreError> {
        self.readers
            .read(move |conn| check::unreadable(conn, limit))
            .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.readers
            .read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.ping().await?;
        self.writer.health().await
    }

    fn describe(&self) -> String {
        format!("SQLite {}", self.path.display())
    }
}
