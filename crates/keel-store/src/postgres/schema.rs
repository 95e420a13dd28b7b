//! The schema and its migrations, versioned in the `schema_version` table: migration N takes
//! the schema from version N-1 to N, all pending ones in one transaction. Nodes starting at
//! once take turns (a transaction-scoped advisory lock per schema, the one advisory lock keel
//! uses); a schema written by a newer keel is refused rather than guessed at.
//!
//! Every hot table leads with the session or the tenant, the key a sharded PostgreSQL would
//! distribute by. Keys compare bytewise (`COLLATE "C"`), so ids and names sort as they do in
//! SQLite whatever the database's locale. Times are milliseconds since the Unix epoch (as in
//! SQLite), seqs `BIGINT`;
//! JSON columns hold the same text the SQLite backend stores (`encode.rs`), as `TEXT` (JSONB
//! would refuse `\u0000`, which JSON text can carry). Strings keel does not encode itself —
//! scratchpad values, a run's output and error — are `BYTEA`: PostgreSQL's text cannot hold
//! NUL, and a model's answer or a tool's value may.

use deadpool_postgres::Client;

use super::statements;
use crate::StoreError;

const V1: &str = r#"
CREATE TABLE tenants (
    id         TEXT COLLATE "C" PRIMARY KEY,
    name       TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    prefix      TEXT COLLATE "C" PRIMARY KEY,
    tenant      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    scope       TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE agents (
    tenant  TEXT COLLATE "C" NOT NULL,
    name    TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    id      TEXT COLLATE "C" NOT NULL,
    def     TEXT NOT NULL,
    PRIMARY KEY (tenant, name, version)
);

CREATE TABLE archived_agents (
    tenant      TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    archived_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);

CREATE TABLE sessions (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant        TEXT COLLATE "C" NOT NULL,
    agent_id      TEXT NOT NULL,
    agent_name    TEXT NOT NULL,
    agent_version BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    metadata      TEXT NOT NULL,
    last_seq      BIGINT NOT NULL
);
CREATE INDEX sessions_by_tenant ON sessions (tenant, id);

CREATE TABLE events (
    session TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    type    TEXT NOT NULL,
    at      BIGINT NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (session, seq)
);

CREATE TABLE snapshots (
    session TEXT COLLATE "C" PRIMARY KEY REFERENCES sessions (id) ON DELETE CASCADE,
    seq     BIGINT NOT NULL,
    state   TEXT NOT NULL
);

CREATE TABLE scratchpad (
    session TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    key     TEXT COLLATE "C" NOT NULL,
    value   BYTEA NOT NULL,
    PRIMARY KEY (session, key)
);

CREATE TABLE runs (
    id               TEXT COLLATE "C" PRIMARY KEY,
    tenant           TEXT COLLATE "C" NOT NULL,
    session          TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    input            TEXT,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    output           BYTEA,
    error            BYTEA,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    lease_owner      TEXT,
    lease_until      BIGINT,
    options          TEXT,
    input_seq        BIGINT
);
CREATE INDEX runs_pending ON runs (created_at, id) WHERE status IN ('queued', 'running');
CREATE INDEX runs_by_session ON runs (session, status);
CREATE INDEX runs_by_owner ON runs (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE usage_totals (
    tenant              TEXT COLLATE "C" NOT NULL,
    key_prefix          TEXT COLLATE "C" NOT NULL,
    model               TEXT COLLATE "C" NOT NULL,
    day                 TEXT COLLATE "C" NOT NULL,
    requests            BIGINT NOT NULL,
    input_tokens        BIGINT NOT NULL,
    output_tokens       BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cost_usd            DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, day, key_prefix, model)
);
"#;

/// The tamper-evident journal (`chain.rs`): each event's hash record, chained to its
/// predecessor's. Events stored before it have none; the chain starts after them.
const V2: &str = "ALTER TABLE events ADD COLUMN hash TEXT;";

/// Timers (`timers.rs`): due ones are found by `next_at`, a session's by `session`.
const V3: &str = r#"
CREATE TABLE timers (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant        TEXT COLLATE "C" NOT NULL,
    session       TEXT COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    schedule      TEXT NOT NULL,
    note          TEXT NOT NULL,
    next_at       BIGINT,
    created_at    BIGINT NOT NULL,
    fired         BIGINT NOT NULL,
    last_fired_at BIGINT
);
CREATE INDEX timers_due ON timers (next_at) WHERE next_at IS NOT NULL;
CREATE INDEX timers_by_session ON timers (session, next_at);
"#;

/// Long-term memory (`memory.rs`): records of a tenant's namespaces, their text searched
/// through an expression GIN index (no derived column: both backends keep the same columns),
/// vectors as f32 `BYTEA`.
const V4: &str = r#"
CREATE TABLE memory_records (
    tenant     TEXT COLLATE "C" NOT NULL,
    id         TEXT COLLATE "C" NOT NULL,
    namespace  TEXT NOT NULL,
    text       TEXT NOT NULL,
    metadata   TEXT NOT NULL,
    embedding  BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX memory_by_namespace ON memory_records (tenant, namespace);
CREATE INDEX memory_text_search ON memory_records USING GIN (to_tsvector('english', text));
"#;

/// Webhooks (`webhooks.rs`): tenants' inbound triggers (found by the hash of their path token)
/// and outbound subscriptions; the outbox of deliveries, written in the transaction that
/// settles a run and found by `next_attempt_at` while due; and the signatures inbound
/// deliveries already used, kept until their replay window is over.
const V5: &str = r#"
CREATE TABLE webhooks (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant        TEXT COLLATE "C" NOT NULL,
    direction     TEXT NOT NULL,
    session       TEXT COLLATE "C" REFERENCES sessions (id) ON DELETE CASCADE,
    agent         TEXT COLLATE "C",
    token_hash    BYTEA UNIQUE,
    url           TEXT,
    events        TEXT NOT NULL,
    secret        TEXT NOT NULL,
    signed        BOOLEAN NOT NULL,
    allow_private BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks (tenant, direction, id);
CREATE INDEX webhooks_by_session ON webhooks (session) WHERE session IS NOT NULL;

CREATE TABLE webhook_deliveries (
    id              TEXT COLLATE "C" PRIMARY KEY,
    tenant          TEXT COLLATE "C" NOT NULL,
    webhook         TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT,
    delivered_at    BIGINT,
    failed_at       BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook, id);

CREATE TABLE webhook_replays (
    webhook    TEXT COLLATE "C" NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    signature  TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (webhook, signature)
);
CREATE INDEX webhook_replays_expiry ON webhook_replays (expires_at);
"#;

/// A session moved out to another deployment (`sessions.rs`, `mark_exported`): when, and
/// where to. Claims and timer firings pass such a session by; writes to it are refused.
const V6: &str = "
ALTER TABLE sessions ADD COLUMN exported_at BIGINT, ADD COLUMN exported_to TEXT;
";

/// A timer belongs to a session or to an agent (`timers.rs`): an agent's timer starts a new
/// session of the agent each time it fires.
const V7: &str = r#"
ALTER TABLE timers ALTER COLUMN session DROP NOT NULL,
    ADD COLUMN agent TEXT COLLATE "C",
    ADD CONSTRAINT timers_one_owner CHECK ((session IS NULL) <> (agent IS NULL));
CREATE INDEX timers_by_agent ON timers (tenant, agent, next_at) WHERE agent IS NOT NULL;
"#;

/// Memory blocks (`blocks.rs`): a session's own (scope `session:<id>`, deleted with it,
/// following its `memory_block_edited` events) and the tenant's shared ones (scope `shared`,
/// their limit and description their own), with the history of the shared ones' writes.
const V8: &str = r#"
CREATE TABLE memory_blocks (
    tenant      TEXT COLLATE "C" NOT NULL,
    scope       TEXT COLLATE "C" NOT NULL,
    label       TEXT COLLATE "C" NOT NULL,
    session     TEXT COLLATE "C" REFERENCES sessions (id) ON DELETE CASCADE,
    value       TEXT NOT NULL,
    char_limit  BIGINT,
    description TEXT,
    version     BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, scope, label),
    CHECK ((session IS NULL) = (scope = 'shared'))
);
CREATE INDEX memory_blocks_by_session ON memory_blocks (session) WHERE session IS NOT NULL;

CREATE TABLE memory_block_history (
    tenant  TEXT COLLATE "C" NOT NULL,
    label   TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    before  TEXT,
    after   TEXT NOT NULL,
    by      TEXT NOT NULL,
    session TEXT COLLATE "C",
    run     TEXT COLLATE "C",
    at      BIGINT NOT NULL,
    PRIMARY KEY (tenant, label, version)
);
"#;

const MIGRATIONS: &[&str] = &[V1, V2, V3, V4, V5, V6, V7, V8];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// Creates `schema` when named and missing, and brings it up to `SCHEMA_VERSION`, or refuses
/// a newer one. `server` names the database in messages.
pub(crate) async fn migrate(
    client: &mut Client,
    schema: Option<&str>,
    server: &str,
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    statements::query(
        &tx,
        "SELECT pg_advisory_xact_lock(hashtext('keel schema ' || COALESCE($1::text, current_schema(), '')))",
        &[&schema],
    )
    .await?;
    if let Some(schema) = schema {
        // Created only when missing: `CREATE SCHEMA IF NOT EXISTS` asks for the right to
        // create schemas even when it exists, which a role given only its schema lacks.
        let exists = statements::query_opt(
            &tx,
            "SELECT 1 FROM pg_namespace WHERE nspname = $1",
            &[&schema],
        )
        .await?
        .is_some();
        if !exists {
            // A plain identifier (`options::check_schema_name`): nothing to quote.
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                .await?;
        }
    }
    tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .await?;
    let found: i32 = statements::query_one(
        &tx,
        "SELECT COALESCE(MAX(version), 0) FROM schema_version",
        &[],
    )
    .await?
    .try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the PostgreSQL schema {} on {server} has version {found}, but this keel understands only up to \
             {SCHEMA_VERSION}: it was written by a newer keel; upgrade keel to use it",
            schema.unwrap_or("(default)")
        )));
    }
    for (applied, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        let version = applied as i32 + 1;
        tx.batch_execute(sql).await?;
        statements::execute(
            &tx,
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await?;
        tracing::info!(server, schema, version, "migrated the PostgreSQL schema");
    }
    tx.commit().await?;
    Ok(())
}
