//! `Store` for PostgreSQL: each method takes a pooled connection (or the store's transaction
//! helpers) and runs the query of its concern's module.

use super::*;

#[async_trait]
impl Store for PgStore {
    async fn put_agent(&self, tenant: &TenantId, def: AgentDef) -> Result<AgentDef, StoreError> {
        agents::put(&mut self.client().await?, tenant, def).await
    }

    async fn get_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentDef>, StoreError> {
        agents::get(&self.client().await?, tenant, name, version).await
    }

    async fn archive_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        at: Timestamp,
    ) -> Result<bool, StoreError> {
        agents::archive(&mut self.client().await?, tenant, name, at).await
    }

    async fn list_agents(&self, tenant: &TenantId) -> Result<Vec<AgentDef>, StoreError> {
        agents::list(&self.client().await?, tenant).await
    }

    async fn create_session(
        &self,
        session: &SessionRecord,
        first_events: Vec<NewEvent>,
    ) -> Result<(), StoreError> {
        sessions::create(&mut self.client().await?, session, &first_events).await
    }

    async fn get_session(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sessions::get(&self.client().await?, tenant, id).await
    }

    async fn list_sessions(
        &self,
        tenant: &TenantId,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        sessions::list(&self.client().await?, tenant, filter).await
    }

    async fn tenant_counts(&self, tenant: &TenantId) -> Result<TenantCounts, StoreError> {
        tenants::counts(&self.client().await?, tenant).await
    }

    async fn delete_session(&self, tenant: &TenantId, id: &SessionId) -> Result<bool, StoreError> {
        self.tips.forget(id);
        sessions::delete(&self.client().await?, tenant, id).await
    }

    async fn update_session_metadata(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        metadata: serde_json::Map<String, serde_json::Value>,
    ) -> Result<bool, StoreError> {
        sessions::update_metadata(&self.client().await?, tenant, id, &metadata).await
    }

    async fn mark_exported(
        &self,
        tenant: &TenantId,
        id: &SessionId,
        mark: &crate::ExportMark,
    ) -> Result<crate::ExportMark, StoreError> {
        sessions::mark_exported(&mut self.client().await?, tenant, id, mark).await
    }

    async fn export_mark(
        &self,
        tenant: &TenantId,
        id: &SessionId,
    ) -> Result<Option<crate::ExportMark>, StoreError> {
        sessions::export_mark(&self.client().await?, Some(tenant), id).await
    }

    async fn append(
        &self,
        session: &SessionId,
        expected_last_seq: u64,
        batch: AppendBatch,
    ) -> Result<u64, StoreError> {
        let last = log::append(
            &mut self.client().await?,
            session,
            expected_last_seq,
            &batch,
            &self.tips,
        )
        .await?;
        self.notifier.hint(crate::StoreSignal::Appended {
            session: session.clone(),
            last_seq: last,
        });
        Ok(last)
    }

    async fn read_events(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        log::read_after(&self.client().await?, session, after, limit).await
    }

    async fn read_journal(
        &self,
        session: &SessionId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::JournalEntry>, StoreError> {
        log::read_journal(&self.client().await?, session, after, limit).await
    }

    async fn read_events_before(
        &self,
        session: &SessionId,
        before: u64,
        limit: usize,
    ) -> Result<Vec<Event>, StoreError> {
        log::read_before(&self.client().await?, session, before, limit).await
    }

    async fn load(&self, session: &SessionId) -> Result<LoadedSession, StoreError> {
        log::load(&self.client().await?, session).await
    }

    async fn put_snapshot(
        &self,
        session: &SessionId,
        snapshot: Snapshot,
    ) -> Result<(), StoreError> {
        log::put_snapshot(&self.client().await?, session, &snapshot).await
    }

    async fn session_blocks(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<crate::MemoryBlock>, StoreError> {
        blocks::session_blocks(&self.client().await?, tenant, session).await
    }

    async fn shared_blocks(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<crate::MemoryBlock>, StoreError> {
        blocks::list(&self.client().await?, tenant, crate::blocks::SHARED).await
    }

    async fn put_shared_block(
        &self,
        tenant: &TenantId,
        write: &crate::SharedBlockWrite,
    ) -> Result<crate::MemoryBlock, StoreError> {
        blocks::put_shared_alone(&mut self.client().await?, tenant, write).await
    }

    async fn delete_shared_block(
        &self,
        tenant: &TenantId,
        label: &str,
    ) -> Result<bool, StoreError> {
        blocks::delete_shared(&mut self.client().await?, tenant, label).await
    }

    async fn shared_block_history(
        &self,
        tenant: &TenantId,
        label: &str,
        limit: usize,
    ) -> Result<Vec<crate::BlockEdit>, StoreError> {
        blocks::history(&self.client().await?, tenant, label, limit).await
    }

    async fn scratchpad_get(
        &self,
        session: &SessionId,
        key: &str,
    ) -> Result<Option<String>, StoreError> {
        log::scratchpad_get(&self.client().await?, session, key).await
    }

    async fn enqueue_run_with(
        &self,
        run: &RunRecord,
        how: &Enqueue,
    ) -> Result<Enqueued, StoreError> {
        runs::enqueue(&mut self.client().await?, run, how).await
    }

    async fn get_run(
        &self,
        tenant: &TenantId,
        id: &RunId,
    ) -> Result<Option<RunRecord>, StoreError> {
        runs::get(&self.client().await?, tenant, id).await
    }

    async fn pending_runs(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<RunRecord>, StoreError> {
        runs::pending(&self.client().await?, tenant, session).await
    }

    async fn runs_with_status(
        &self,
        tenant: &TenantId,
        status: RunStatus,
        before: Option<&RunId>,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        runs::with_status(&self.client().await?, tenant, status, before, limit).await
    }

    async fn claim_runs(
        &self,
        node: &str,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        claims::claim(&mut self.client().await?, node, now, lease_ms, limit).await
    }

    async fn heartbeat(
        &self,
        run: &RunId,
        node: &str,
        now: Timestamp,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        claims::heartbeat(&self.client().await?, run, node, now, lease_ms).await
    }

    async fn finish_run(
        &self,
        run: &RunId,
        status: RunStatus,
        outcome: RunOutcome,
    ) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        runs::finish(&tx, run, status, &outcome).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn request_cancel(&self, tenant: &TenantId, run: &RunId) -> Result<bool, StoreError> {
        runs::request_cancel(&self.client().await?, tenant, run).await
    }

    async fn delete_run(&self, tenant: &TenantId, run: &RunId) -> Result<bool, StoreError> {
        runs::delete(&self.client().await?, tenant, run).await
    }

    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>, StoreError> {
        runs::count_by_status(&self.client().await?).await
    }

    async fn release_leases(&self, node: &str) -> Result<u64, StoreError> {
        claims::release(&self.client().await?, node).await
    }

    async fn put_memory(&self, record: &crate::MemoryRecord) -> Result<(), StoreError> {
        memory::put(&self.client().await?, record).await
    }

    async fn get_memory(
        &self,
        tenant: &TenantId,
        id: &str,
    ) -> Result<Option<crate::MemoryRecord>, StoreError> {
        memory::get(&self.client().await?, tenant, id).await
    }

    async fn delete_memory(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        memory::delete(&self.client().await?, tenant, id).await
    }

    async fn list_memory(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: &str,
        limit: usize,
    ) -> Result<Vec<crate::MemoryRecord>, StoreError> {
        memory::list(&self.client().await?, tenant, namespace, after, limit).await
    }

    async fn search_memory(
        &self,
        tenant: &TenantId,
        query: &crate::MemoryQuery,
    ) -> Result<Vec<crate::MemoryHit>, StoreError> {
        memory::search(&self.client().await?, tenant, query).await
    }

    async fn put_timer(&self, timer: &TimerRecord) -> Result<(), StoreError> {
        timers::put_one(&mut self.client().await?, timer).await
    }

    async fn list_timers(
        &self,
        tenant: &TenantId,
        session: &SessionId,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        timers::list(&self.client().await?, tenant, session).await
    }

    async fn list_agent_timers(
        &self,
        tenant: &TenantId,
        agent: &str,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        timers::list_of_agent(&self.client().await?, tenant, agent).await
    }

    async fn delete_timer(&self, tenant: &TenantId, id: &TimerId) -> Result<bool, StoreError> {
        timers::delete(&self.client().await?, tenant, id).await
    }

    async fn due_timers(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<TimerRecord>, StoreError> {
        timers::due(&self.client().await?, now, limit).await
    }

    async fn fire_timer(
        &self,
        id: &TimerId,
        due: Timestamp,
        next: Option<Timestamp>,
        start: &crate::TimerStart,
    ) -> Result<bool, StoreError> {
        timers::fire(&mut self.client().await?, id, due, next, start).await
    }

    async fn put_webhook(&self, webhook: &WebhookRecord) -> Result<(), StoreError> {
        webhooks::put(&self.client().await?, webhook).await
    }

    async fn list_webhooks(&self, tenant: &TenantId) -> Result<Vec<WebhookRecord>, StoreError> {
        webhooks::list(&self.client().await?, tenant).await
    }

    async fn delete_webhook(&self, tenant: &TenantId, id: &WebhookId) -> Result<bool, StoreError> {
        webhooks::delete(&self.client().await?, tenant, id).await
    }

    async fn inbound_webhook(
        &self,
        token_hash: &[u8],
    ) -> Result<Option<WebhookRecord>, StoreError> {
        webhooks::inbound(&self.client().await?, token_hash).await
    }

    async fn remember_signature(
        &self,
        webhook: &WebhookId,
        signature: &str,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let client = self.client().await?;
        webhooks::remember_signature(&client, webhook, signature, now, expires_at).await
    }

    async fn forget_signature(
        &self,
        webhook: &WebhookId,
        signature: &str,
    ) -> Result<(), StoreError> {
        webhooks::forget_signature(&self.client().await?, webhook, signature).await
    }

    async fn list_deliveries(
        &self,
        tenant: &TenantId,
        webhook: &WebhookId,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        webhooks::deliveries(&self.client().await?, tenant, webhook, limit).await
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedDelivery>, StoreError> {
        webhooks::claim(&self.client().await?, now, lease_ms, limit).await
    }

    async fn settle_delivery(
        &self,
        id: &str,
        attempt: u32,
        now: Timestamp,
        outcome: &DeliveryOutcome,
    ) -> Result<bool, StoreError> {
        webhooks::settle(&self.client().await?, id, attempt, now, outcome).await
    }

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
        tenants::create(&self.client().await?, tenant).await
    }

    async fn get_tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        tenants::get(&self.client().await?, id).await
    }

    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        tenants::create_key(&self.client().await?, key).await
    }

    async fn get_api_key(&self, prefix: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        tenants::get_key(&self.client().await?, prefix).await
    }

    async fn revoke_api_key(&self, prefix: &str, at: Timestamp) -> Result<bool, StoreError> {
        tenants::revoke_key(&self.client().await?, prefix, at).await
    }

    async fn add_usage(&self, increments: &[UsageTotals]) -> Result<(), StoreError> {
        usage::add(&mut self.client().await?, increments).await
    }

    async fn usage(
        &self,
        tenant: &TenantId,
        query: &UsageQuery,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        usage::list(&self.client().await?, tenant, query).await
    }

    async fn export_page(
        &self,
        after: &ExportCursor,
        limit: usize,
    ) -> Result<ExportPage, StoreError> {
        export::export_page(&self.client().await?, after, limit).await
    }

    async fn import(&self, records: Vec<StoredRecord>) -> Result<(), StoreError> {
        export::import(&mut self.client().await?, &records).await
    }

    async fn unreadable_records(&self, limit: usize) -> Result<Vec<UnreadableRecord>, StoreError> {
        check::unreadable(&self.client().await?, limit).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        statements::query_one(&self.client().await?, "SELECT 1", &[]).await?;
        Ok(())
    }

    /// Reads answer, and the server takes writes (not a standby, not read-only).
    async fn health(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = statements::query_one(
            &client,
            "SELECT current_setting('transaction_read_only')",
            &[],
        )
        .await?;
        match row.try_get::<_, String>(0)?.as_str() {
            "off" => Ok(()),
            _ => Err(StoreError::Unavailable(format!(
                "the PostgreSQL database {} takes no writes (a standby, or read-only): \
                 point keel at the primary",
                self.server
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("PostgreSQL {}, schema {}", self.server, self.schema)
    }

    fn signals(&self) -> Option<tokio::sync::broadcast::Receiver<crate::StoreSignal>> {
        Some(self.listener.subscribe())
    }
}
