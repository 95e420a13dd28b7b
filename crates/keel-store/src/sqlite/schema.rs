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

/// A run's input is kept once: in its row while it waits, then in the log, at the seq of its
/// `run_started` (`input_seq`), and the row's copy is dropped. SQLite cannot drop a NOT NULL
/// in place, so the table is rebuilt; rows written before keep their input and read as they did.
const V4: &str = "
CREATE TABLE runs_v4 (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    session          TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    input            TEXT,
    status           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    output           TEXT,
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_until      INTEGER,
    options          TEXT,
    input_seq        INTEGER
);
INSERT INTO runs_v4 (id, tenant, session, input, status, created_at, output, error,
                     cancel_requested, lease_owner, lease_until, options)
    SELECT id, tenant, session, input, status, created_at, output, error,
           cancel_requested, lease_owner, lease_until, options FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v4 RENAME TO runs;
CREATE INDEX runs_by_status ON runs (status, created_at);
CREATE INDEX runs_by_session ON runs (session, status);
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;
";

/// The tamper-evident journal (`chain.rs`): each event's hash record, chained to its
/// predecessor's. Events stored before it have none; the chain starts after them.
const V5: &str = "
ALTER TABLE events ADD COLUMN hash TEXT;
";

/// Timers (`timers.rs`): due ones are found by `next_at`, a session's by `session`.
const V6: &str = "
CREATE TABLE timers (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    session       TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    schedule      TEXT NOT NULL,
    note          TEXT NOT NULL,
    next_at       INTEGER,
    created_at    INTEGER NOT NULL,
    fired         INTEGER NOT NULL,
    last_fired_at INTEGER
);
CREATE INDEX timers_due ON timers (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX timers_by_session ON timers (session, next_at);
";

/// Long-term memory (`memory.rs`): records of a tenant's namespaces, their text in the FTS5
/// index `memory_fts` (external content: triggers keep it in step with each write), vectors
/// as f32 BLOBs.
const V7: &str = "
CREATE TABLE memory_records (
    id         TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    namespace  TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    embedding  BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (tenant, id)
);
CREATE INDEX memory_by_namespace ON memory_records (tenant, namespace);
CREATE VIRTUAL TABLE memory_fts USING fts5(
    text, content = 'memory_records', content_rowid = 'rowid', tokenize = 'porter unicode61'
);
CREATE TRIGGER memory_fts_insert AFTER INSERT ON memory_records BEGIN
    INSERT INTO memory_fts (rowid, text) VALUES (new.rowid, new.text);
END;
CREATE TRIGGER memory_fts_delete AFTER DELETE ON memory_records BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
END;
CREATE TRIGGER memory_fts_update AFTER UPDATE OF text ON memory_records BEGIN
    INSERT INTO memory_fts (memory_fts, rowid, text) VALUES ('delete', old.rowid, old.text);
    INSERT INTO memory_fts (rowid, text) VALUES (new.rowid, new.text);
END;
";

/// Webhooks (`webhooks.rs`): tenants' inbound triggers (found by the hash of their path token)
/// and outbound subscriptions; the outbox of deliveries, written in the transaction that
/// settles a run and found by `next_attempt_at` while due; and the signatures inbound
/// deliveries already used, kept until their replay window is over.
const V8: &str = "
CREATE TABLE webhooks (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    direction     TEXT NOT NULL,
    session       TEXT REFERENCES sessions (id) ON DELETE CASCADE,
    agent         TEXT,
    token_hash    BLOB UNIQUE,
    url           TEXT,
    events        TEXT NOT NULL,
    secret        TEXT NOT NULL,
    signed        INTEGER NOT NULL,
    allow_private INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant, direction, id);
CREATE INDEX webhooks_by_session ON webhooks (session) WHERE session IS NOT NULL;

CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    tenant          TEXT NOT NULL,
    webhook         TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER,
    delivered_at    INTEGER,
    failed_at       INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook, id);

CREATE TABLE webhook_replays (
    webhook    TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    signature  TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (webhook, signature)
) WITHOUT ROWID;
CREATE INDEX webhook_replays_expiry ON webhook_replays (expires_at);
";

/// A session moved out to another deployment (`sessions.rs`, `mark_exported`): when, and
/// where to. Claims and timer firings pass such a session by; writes to it are refused.
const V9: &str = "
ALTER TABLE sessions ADD COLUMN exported_at INTEGER;
ALTER TABLE sessions ADD COLUMN exported_to TEXT;
";

/// A timer belongs to a session or to an agent (`timers.rs`): an agent's timer starts a new
/// session of the agent each time it fires. `session` becomes nullable, which SQLite cannot do
/// in place, so the table is rebuilt; its rows keep their session.
const V10: &str = "
CREATE TABLE timers_v10 (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    session       TEXT REFERENCES sessions (id) ON DELETE CASCADE,
    schedule      TEXT NOT NULL,
    note          TEXT NOT NULL,
    next_at       INTEGER,
    created_at    INTEGER NOT NULL,
    fired         INTEGER NOT NULL,
    last_fired_at INTEGER,
    agent         TEXT,
    CHECK ((session IS NULL) <> (agent IS NULL))
);
INSERT INTO timers_v10 (id, tenant, session, schedule, note, next_at, created_at, fired,
                        last_fired_at)
    SELECT id, tenant, session, schedule, note, next_at, created_at, fired, last_fired_at
    FROM timers;
DROP TABLE timers;
ALTER TABLE timers_v10 RENAME TO timers;
CREATE INDEX timers_due ON timers (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX timers_by_session ON timers (session, next_at) WHERE session IS NOT NULL;
CREATE INDEX timers_by_agent ON timers (tenant, agent, next_at) WHERE agent IS NOT NULL;
";

/// Memory blocks (`blocks.rs`): a session's own (scope `session:<id>`, deleted with it,
/// following its `memory_block_edited` events) and the tenant's shared ones (scope `shared`,
/// their limit and description their own), with the history of the shared ones' writes.
const V11: &str = "
CREATE TABLE memory_blocks (
    tenant      TEXT NOT NULL,
    scope       TEXT NOT NULL,
    label       TEXT NOT NULL,
    session     TEXT REFERENCES sessions (id) ON DELETE CASCADE,
    value       TEXT NOT NULL,
    char_limit  INTEGER,
    description TEXT,
    version     INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant, scope, label),
    CHECK ((session IS NULL) = (scope = 'shared'))
) WITHOUT ROWID;
CREATE INDEX memory_blocks_by_session ON memory_blocks (session) WHERE session IS NOT NULL;

CREATE TABLE memory_block_history (
    tenant  TEXT NOT NULL,
    label   TEXT NOT NULL,
    version INTEGER NOT NULL,
    before  TEXT,
    after   TEXT NOT NULL,
    by      TEXT NOT NULL,
    session TEXT,
    run     TEXT,
    at      INTEGER NOT NULL,
    PRIMARY KEY (tenant, label, version)
) WITHOUT ROWID;
";

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11];

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

#[cfg(test)]
mod tests {
    use keel_core::{EventBody, Message, RunId, RunStatus, SessionId, TenantId, Timestamp};
    use rusqlite::{Connection, params};

    use super::*;
    use crate::{SqliteOptions, SqliteStore, Store};

    /// A database as keel wrote it at schema version 3: a finished run and a queued one, each
    /// with its input in its row (the finished one's also in its `run_started`).
    fn version_3_database(path: &Path, tenant: &TenantId, session: &SessionId, runs: [&RunId; 2]) {
        let conn = Connection::open(path).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        conn.execute(
            "INSERT INTO sessions VALUES (?1, ?2, 'agt_01J00000000000000000000000', 'a', 1, 0, '{}', 1)",
            params![session.as_str(), tenant.as_str()],
        )
        .unwrap();
        let started = EventBody::RunStarted {
            run_id: runs[0].clone(),
            input: Message::user("finished before the upgrade"),
            options: Box::default(),
        };
        conn.execute(
            "INSERT INTO events VALUES (?1, 1, 'run_started', 0, ?2)",
            params![session.as_str(), started.encode()],
        )
        .unwrap();
        for (run, status, text) in [
            (runs[0], "completed", "finished before the upgrade"),
            (runs[1], "queued", "queued before the upgrade"),
        ] {
            conn.execute(
                "INSERT INTO runs (id, tenant, session, input, status, created_at, cancel_requested)
                 VALUES (?1, ?2, ?3, ?4, ?5, 0, 0)",
                params![
                    run.as_str(),
                    tenant.as_str(),
                    session.as_str(),
                    serde_json::to_string(&Message::user(text)).unwrap(),
                    status
                ],
            )
            .unwrap();
        }
    }

    #[tokio::test]
    async fn runs_written_at_version_3_read_back_after_the_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let (tenant, session) = (TenantId::generate(1, 1), SessionId::generate(1, 2));
        let runs = [RunId::generate(1, 3), RunId::generate(2, 4)];
        version_3_database(&path, &tenant, &session, [&runs[0], &runs[1]]);

        let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
        let finished = store.get_run(&tenant, &runs[0]).await.unwrap().unwrap();
        assert_eq!(finished.status, RunStatus::Completed);
        assert_eq!(finished.input.text_content(), "finished before the upgrade");
        let claimed = store
            .claim_runs("node", Timestamp::from_millis(10), 1_000, 10)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].input.text_content(), "queued before the upgrade");
        assert!(store.unreadable_records(10).await.unwrap().is_empty());
        drop(store);
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    /// A session's timer stored at schema version 9 (before timers could belong to an agent)
    /// is still listed and due after the table is rebuilt, and the rebuilt table takes an
    /// agent's timer.
    #[tokio::test]
    async fn timers_written_at_version_9_survive_the_rebuild() {
        use crate::{Schedule, TimerOwner, TimerRecord};
        use keel_core::{AgentDef, AgentId, Limits, TimerId};

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let (tenant, session) = (TenantId::generate(1, 1), SessionId::generate(1, 2));
        let timer = TimerId::generate(1, 3);
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..9] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 9).unwrap();
            conn.execute(
                "INSERT INTO sessions VALUES (?1, ?2, 'agt_01J00000000000000000000000', 'a', 1, 0, '{}', 0, NULL, NULL)",
                params![session.as_str(), tenant.as_str()],
            )
            .unwrap();
            let once = Schedule::Once {
                at: Timestamp::from_millis(5_000),
            };
            conn.execute(
                "INSERT INTO timers VALUES (?1, ?2, ?3, ?4, 'wake', 5000, 1000, 0, NULL)",
                params![
                    timer.as_str(),
                    tenant.as_str(),
                    session.as_str(),
                    serde_json::to_string(&once).unwrap()
                ],
            )
            .unwrap();
        }
        let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
        let listed = store.list_timers(&tenant, &session).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            (&listed[0].id, &listed[0].owner, listed[0].next_at),
            (
                &timer,
                &TimerOwner::Session(session.clone()),
                Some(Timestamp::from_millis(5_000))
            )
        );
        let due = store
            .due_timers(Timestamp::from_millis(6_000), 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        let agent = AgentDef {
            id: AgentId::generate(1, 4),
            name: "reporter".into(),
            version: 0,
            instructions: String::new(),
            model: "scripted/echo".into(),
            tools: Vec::new(),
            limits: Limits::default(),
            memory_blocks: Vec::new(),
            compaction: Default::default(),
            memory: Default::default(),
        };
        store.put_agent(&tenant, agent).await.unwrap();
        let of_agent = TimerRecord {
            id: TimerId::generate(1, 5),
            owner: TimerOwner::Agent("reporter".into()),
            schedule: Schedule::Once {
                at: Timestamp::from_millis(9_000),
            },
            ..listed[0].clone()
        };
        store.put_timer(&of_agent).await.unwrap();
        assert_eq!(
            store.list_agent_timers(&tenant, "reporter").await.unwrap(),
            [of_agent]
        );
    }
}
