//! The schema and its migrations, versioned by `PRAGMA user_version`: migration N takes a
//! database from version N-1 to N inside one transaction. A database written by a newer keel
//! (a version this build does not know) is refused rather than guessed at.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::error;
use crate::StoreError;

/// Times are milliseconds since the Unix epoch; JSON columns hold serde_json text.
const V1: &str = "
CREATE TABLE agents (
    tenant  TEXT NOT NULL,
    name    TEXT NOT NULL,
    version INTEGER NOT NULL,
    id      TEXT NOT NULL,
    def     TEXT NOT NULL,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;

CREATE TABLE sessions (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    agent_name    TEXT NOT NULL,
    agent_version INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    metadata      TEXT NOT NULL,
    last_seq      INTEGER NOT NULL
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, id);

CREATE TABLE events (
    session TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    type    TEXT NOT NULL,
    at      INTEGER NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (session, seq)
) WITHOUT ROWID;

CREATE TABLE snapshots (
    session TEXT PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    state   TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE scratchpad (
    session TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key     TEXT NOT NULL,
    value   TEXT NOT NULL,
    PRIMARY KEY (session, key)
) WITHOUT ROWID;

CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    session          TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    input            TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    output           TEXT,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      INTEGER
);
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_session ON runs (session, status);
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;
";

/// Tenants, their API keys (hashed) and archived agents.
const V2: &str = "
CREATE TABLE tenants (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE api_keys (
    prefix      TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL REFERENCES tenants (id),
    scope       TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) WITHOUT ROWID;

CREATE TABLE archived_agents (
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    archived_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
";

/// Per-run options (model, instructions, the caller's tools) and gateway usage totals.
const V3: &str = "
ALTER TABLE runs ADD COLUMN options TEXT;

CREATE TABLE usage_totals (
    tenant              TEXT NOT NULL,
    key_prefix          TEXT NOT NULL,
    model               TEXT NOT NULL,
    day                 TEXT NOT NULL,
    requests            INTEGER NOT NULL,
    input_tokens        INTEGER NOT NULL,
    output_tokens       INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    cost_usd            REAL NOT NULL,
    PRIMARY KEY (tenant, day, key_prefix, model)
) WITHOUT ROWID;
";

const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database at `path` up to `SCHEMA_VERSION`, or refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| error::open_failed(path, e))?;
    let found: i64 = tx
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| error::open_failed(path, e))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database {} has schema version {found}, but this keel understands only up to {SCHEMA_VERSION}: \
             it was written by a newer keel; upgrade keel to open it",
            path.display()
        )));
    }
    for (applied, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let version = applied as i64 + 1;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .map_err(|e| error::open_failed(path, e))?;
        tracing::info!(path = %path.display(), version, "migrated the database schema");
    }
    tx.commit().map_err(|e| error::open_failed(path, e))
}
