//! The PostgreSQL backend: for more than one keel node on one database. PostgreSQL itself
//! keeps the invariants between nodes — row locks and `SKIP LOCKED` for the run queue, a
//! conditional `UPDATE` of the session's last seq for appends — so nothing is cached across
//! calls, and any number of `PgStore`s (processes, nodes) can share one schema.
//!
//! Connections come from a `deadpool-postgres` pool: a small, maintained pool made for
//! `tokio-postgres` that drops a connection the server closed instead of handing it out again,
//! and keeps each connection's prepared statements (`statements`), so a hot statement costs
//! one round trip. A pool of our own would have to re-do both. Each write that touches more
//! than one row is one transaction; the queries live by concern, as in the SQLite backend
//! (`agents`, `sessions`, `log`, `runs`, `claims`, `tenants`, `usage`, `check`).

mod agents;
mod blocks;
mod check;
mod claims;
mod error;
mod export;
mod log;
mod memory;
mod options;
mod run_input;
mod runs;
mod schema;
mod sessions;
mod signals;
mod statements;
mod store;
mod tenants;
mod timers;
mod tls;
mod usage;
mod webhooks;

use async_trait::async_trait;
use deadpool_postgres::{Client, Pool};
use keel_core::{AgentDef, Event, RunId, RunStatus, SessionId, TenantId, TimerId, Timestamp};

pub use options::PgOptions;
pub use schema::SCHEMA_VERSION;

use crate::export::{ExportCursor, ExportPage, StoredRecord};
use crate::webhooks::{ClaimedDelivery, DeliveryOutcome, DeliveryRecord, WebhookRecord};
use crate::{
    ApiKeyRecord, AppendBatch, Enqueue, Enqueued, LoadedSession, NewEvent, RunOutcome, RunRecord,
    SessionFilter, SessionRecord, Snapshot, Store, StoreError, TenantCounts, TenantRecord,
    TimerRecord, UnreadableRecord, UsageQuery, UsageTotals,
};
use keel_core::WebhookId;

/// A store on a PostgreSQL database, shared with any number of other keel nodes.
pub struct PgStore {
    pool: Pool,
    /// The server and database, without credentials, for messages.
    server: String,
    /// The schema that holds keel's tables (`default` for the server's `search_path`).
    schema: String,
    /// Hears what other nodes change, and tells them of appends (`signals`).
    listener: signals::Listener,
    notifier: signals::Notifier,
    /// The chain records this handle last appended, by session (`chain::ChainTips`).
    tips: crate::chain::ChainTips,
}

impl PgStore {
    /// Connects, creates the schema when `options.schema` names one that is missing, and
    /// migrates it to `SCHEMA_VERSION` (or refuses a newer one).
    pub async fn open(options: PgOptions) -> Result<PgStore, StoreError> {
        let (pool, connect, server) = options.pool()?;
        let mut client = pool
            .get()
            .await
            .map_err(|e| error::no_connection(&server, e))?;
        schema::migrate(&mut client, options.schema.as_deref(), &server).await?;
        drop(client);
        let channel = signals::channel(options.schema.as_deref());
        let listener =
            signals::Listener::start(connect, channel, server.clone(), options.connect_timeout)
                .await;
        tracing::debug!(%server, schema = ?options.schema, "opened the PostgreSQL store");
        let notifier = signals::Notifier::start(pool.clone());
        Ok(PgStore {
            notifier,
            pool,
            server,
            schema: options.schema.unwrap_or_else(|| "default".into()),
            listener,
            tips: Default::default(),
        })
    }

    /// The server and database this store uses, without credentials (for logs and `/readyz`).
    pub fn server(&self) -> &str {
        &self.server
    }

    async fn client(&self) -> Result<Client, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| error::no_connection(&self.server, e))
    }

    /// The name of the channel other nodes' changes are heard on (`signals`).
    pub fn channel(&self) -> &str {
        self.listener.channel()
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// The text of column `index` as an id for messages, whatever the row holds there.
fn row_id(row: &tokio_postgres::Row, index: usize) -> String {
    row.try_get::<_, String>(index)
        .or_else(|_| row.try_get::<_, i64>(index).map(|n| n.to_string()))
        .unwrap_or_else(|_| "?".into())
}
