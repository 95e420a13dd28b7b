//! The SQLite backend: keel's embedded default, one file under the data directory.
//!
//! A single writer thread group-commits every write (`writer`; security-relevant writes are
//! fsynced whatever the `Durability`, and it knows whether writes can commit, for `health`), a
//! pool of read-only connections reads in parallel under WAL (`readers`), and the queries live
//! by concern (`agents`, `sessions`, `log`, `runs`, `tenants`, `usage`). Nothing is cached
//! across calls that another process sharing the file could make stale.

mod agents;
mod blocks;
mod check;
mod connection;
mod error;
mod export;
mod log;
mod memory;
mod readers;
mod run_input;
mod runs;
mod schema;
mod sessions;
mod store;
mod tenants;
mod timers;
mod usage;
mod webhooks;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use keel_core::{AgentDef, Event, RunId, RunStatus, SessionId, TenantId, TimerId, Timestamp};

use crate::export::{ExportCursor, ExportPage, StoredRecord};
use crate::stored::{id as stored_id, sql_bound, sql_limit};
use crate::webhooks::{ClaimedDelivery, DeliveryOutcome, DeliveryRecord, WebhookRecord};
use crate::{
    ApiKeyRecord, AppendBatch, Enqueue, Enqueued, LoadedSession, NewEvent, RunOutcome, RunRecord,
    SessionFilter, SessionRecord, Snapshot, Store, StoreError, TenantCounts, TenantRecord,
    TimerRecord, UnreadableRecord, UsageQuery, UsageTotals,
};
use keel_core::WebhookId;
use readers::ReaderPool;
pub use schema::SCHEMA_VERSION;
use writer::Writer;

/// What "durable" means when a write returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL with `synchronous=FULL`: every commit is fsynced before it is acknowledged.
    #[default]
    Full,
    /// WAL with `synchronous=NORMAL`: a power loss may drop the last commits (those since the
    /// last fsync: a checkpoint, or a synchronous write), but never corrupts the file. A process
    /// crash loses nothing. Writes that must never come undone — tenants, API keys and their
    /// revocation, deleting a session or a run, archiving an agent — are fsynced anyway.
    Normal,
}

impl Durability {
    fn synchronous_pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        }
    }
}

#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file (keel uses `<data_dir>/keel.db`); missing parent directories are created.
    pub path: PathBuf,
    pub durability: Durability,
    /// Commit all writes queued at once in one transaction (one fsync for many).
    pub group_commit: bool,
    /// Read-only connections for parallel reads.
    pub readers: usize,
    /// Caps the database's size; writes past it fail with a "full" error and store nothing.
    pub max_size_bytes: Option<u64>,
}

impl SqliteOptions {
    /// The defaults (full durability, group commit, 4 readers, no size cap) for `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        SqliteOptions {
            path: path.into(),
            durability: Durability::Full,
            group_commit: true,
            readers: 4,
            max_size_bytes: None,
        }
    }
}

pub struct SqliteStore {
    path: PathBuf,
    // Field order matters on drop: readers close first, then the writer, whose connection,
    // the last one open, checkpoints the WAL into the database file.
    readers: ReaderPool,
    writer: Writer,
    /// Long-term memory's vectors by namespace (`memory::VectorCache`).
    vectors: Arc<crate::memory::VectorCache>,
}

impl SqliteStore {
    /// Opens (or creates) the database, checks it and migrates it to `SCHEMA_VERSION`.
    /// Blocks while it does; call it before serving, or from `spawn_blocking`.
    pub fn open(options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        let conn = connection::open_writer(&options)?;
        let writer = Writer::start(conn, options.group_commit, options.durability)?;
        let readers = ReaderPool::open(options.path.clone(), options.readers)?;
        tracing::debug!(path = %options.path.display(), durability = ?options.durability, "opened the SQLite store");
        Ok(SqliteStore {
            path: options.path,
            readers,
            writer,
            vectors: Arc::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write transactions that changed rows, committed since the store opened: one fsync each
    /// under `Durability::Full`, however many writes group commit put in them (`keel bench`
    /// reports them per turn).
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
