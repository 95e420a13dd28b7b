//! Long-term memory on PostgreSQL: records in `memory_records`, their text matched through
//! an expression GIN index on `to_tsvector('english', text)` and ranked by `ts_rank`, vectors
//! as little-endian f32 `BYTEA` ranked by brute force in keel (`memory`), as on SQLite.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{SessionId, TenantId};
use tokio_postgres::Row;

use super::statements;
use crate::memory::{self, MemoryHit, MemoryQuery, MemoryRecord, StoredMemory};
use crate::{StoreError, encode};

const COLUMNS: &str = "id, tenant, namespace, text, metadata, embedding, created_at, updated_at";

/// Stores the records an append carries (`AppendBatch::memory`), each of `session`'s tenant,
/// in the append's transaction.
pub(crate) async fn put_for_session(
    client: &impl GenericClient,
    session: &SessionId,
    records: &[MemoryRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let row = statements::query_one(
        client,
        "SELECT tenant FROM sessions WHERE id = $1",
        &[&session.as_str()],
    )
    .await?;
    memory::check_of_session(records, row.get(0), session)?;
    for record in records {
        put(client, record).await?;
    }
    Ok(())
}

pub(crate) async fn put(
    client: &impl GenericClient,
    record: &MemoryRecord,
) -> Result<(), StoreError> {
    record.check()?;
    let metadata = encode::json(&record.metadata, || {
        format!("the metadata of memory {}", record.id)
    })?;
    statements::execute(
        client,
        &format!(
            "INSERT INTO memory_records ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (tenant, id) DO UPDATE SET namespace = excluded.namespace,
                 text = excluded.text, metadata = excluded.metadata,
                 embedding = excluded.embedding, updated_at = excluded.updated_at"
        ),
        &[
            &record.id,
            &record.tenant.as_str(),
            &record.namespace,
            &record.text,
            &metadata,
            &memory::vector_bytes(&record.embedding),
            &record.created_at.millis(),
            &record.updated_at.millis(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn get(
    client: &Client,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<MemoryRecord>, StoreError> {
    let row = statements::query_opt(
        client,
        &format!("SELECT {COLUMNS} FROM memory_records WHERE tenant = $1 AND id = $2"),
        &[&tenant.as_str(), &id],
    )
    .await?;
    row.map(|row| read(&row).into_record(tenant)).transpose()
}

/// The tenant's records in `namespace` after id `after`, by id.
pub(crate) async fn list(
    client: &Client,
    tenant: &TenantId,
    namespace: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<MemoryRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {COLUMNS} FROM memory_records WHERE tenant = $1 AND namespace = $2 AND id > $3
             ORDER BY id LIMIT $4"
        ),
        &[
            &tenant.as_str(),
            &namespace,
            &after,
            &crate::stored::sql_limit(limit),
        ],
    )
    .await?;
    rows.iter()
        .map(|row| read(row).into_record(tenant))
        .collect()
}

pub(crate) async fn delete(
    client: &Client,
    tenant: &TenantId,
    id: &str,
) -> Result<bool, StoreError> {
    let deleted = statements::execute(
        client,
        "DELETE FROM memory_records WHERE tenant = $1 AND id = $2",
        &[&tenant.as_str(), &id],
    )
    .await?;
    Ok(deleted > 0)
}

/// Keyword ranking (`ts_rank` over any of the query's terms) fused with the vector ranking.
pub(crate) async fn search(
    client: &Client,
    tenant: &TenantId,
    query: &MemoryQuery,
) -> Result<Vec<MemoryHit>, StoreError> {
    memory::check_namespace(&query.namespace)?;
    let held = statements::query_opt(
        client,
        "SELECT 1 FROM memory_records WHERE tenant = $1 AND namespace = $2 LIMIT 1",
        &[&tenant.as_str(), &query.namespace],
    )
    .await?;
    if held.is_none() {
        return Err(memory::unknown_namespace(&query.namespace));
    }
    let mut keyword = Vec::new();
    // Terms are letters and digits only: `|` between them is the only syntax to_tsquery sees.
    if let Some(expression) = memory::any_of(query, false, " | ") {
        let rows = statements::query(
            client,
            "SELECT id, metadata FROM memory_records, to_tsquery('english', $3) AS q
             WHERE tenant = $1 AND namespace = $2 AND to_tsvector('english', text) @@ q
             ORDER BY ts_rank(to_tsvector('english', text), q) DESC, id LIMIT $4",
            &[
                &tenant.as_str(),
                &query.namespace,
                &expression,
                &memory::keyword_limit(query),
            ],
        )
        .await?;
        keyword = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    }
    // Read per search: another node may have written since (SQLite, one process, keeps them).
    let mut vectors = Vec::new();
    if query.embedding.is_some() {
        let rows = statements::query(
            client,
            "SELECT id, metadata, embedding FROM memory_records WHERE tenant = $1 AND namespace = $2",
            &[&tenant.as_str(), &query.namespace],
        )
        .await?;
        vectors = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
    }
    let mut hits = Vec::new();
    for (id, score, keyword_rank, vector_rank) in
        memory::rank(query, keyword, memory::nearest_rows(query, vectors))
    {
        if let Some(record) = get(client, tenant, &id).await? {
            hits.push(MemoryHit {
                record,
                score,
                keyword_rank,
                vector_rank,
            });
        }
    }
    Ok(hits)
}

fn read(row: &Row) -> StoredMemory {
    StoredMemory {
        id: row.get(0),
        namespace: row.get(2),
        text: row.get(3),
        metadata: row.get(4),
        embedding: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}
