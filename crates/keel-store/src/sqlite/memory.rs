//! Long-term memory on SQLite: records in `memory_records`, their text indexed by the FTS5
//! table `memory_fts` (external content, kept in step by triggers, so a record and its index
//! entry change in one write), vectors as little-endian f32 BLOBs ranked by brute force over
//! a namespace's vectors held in memory (`memory::VectorCache`).

use keel_core::{SessionId, TenantId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::memory::{self, MemoryHit, MemoryQuery, MemoryRecord, StoredMemory, VectorCache};
use crate::{StoreError, encode};

const COLUMNS: &str = "id, tenant, namespace, text, metadata, embedding, created_at, updated_at";

/// Inserts the record, or replaces the tenant's record with its id (keeping `created_at`).
pub(crate) fn put(conn: &Connection, record: &MemoryRecord) -> Result<(), StoreError> {
    record.check()?;
    let metadata = encode::json(&record.metadata, || {
        format!("the metadata of memory {}", record.id)
    })?;
    conn.prepare_cached(&format!(
        "INSERT INTO memory_records ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, id) DO UPDATE SET namespace = excluded.namespace,
             text = excluded.text, metadata = excluded.metadata,
             embedding = excluded.embedding, updated_at = excluded.updated_at"
    ))?
    .execute(params![
        record.id,
        record.tenant.as_str(),
        record.namespace,
        record.text,
        metadata,
        memory::vector_bytes(&record.embedding),
        record.created_at.millis(),
        record.updated_at.millis(),
    ])?;
    Ok(())
}

/// Stores the records an append carries (`AppendBatch::memory`), each of `session`'s tenant.
pub(crate) fn put_for_session(
    conn: &Connection,
    session: &SessionId,
    records: &[MemoryRecord],
) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let tenant: String = conn
        .prepare_cached("SELECT tenant FROM sessions WHERE id = ?1")?
        .query_row([session.as_str()], |r| r.get(0))?;
    memory::check_of_session(records, &tenant, session)?;
    records.iter().try_for_each(|record| put(conn, record))
}

pub(crate) fn get(
    conn: &Connection,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<MemoryRecord>, StoreError> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memory_records WHERE tenant = ?1 AND id = ?2"
    ))?
    .query_row([tenant.as_str(), id], read)
    .optional()?
    .map(|stored| stored.into_record(tenant))
    .transpose()
}

/// The tenant's records in `namespace` after id `after`, by id.
pub(crate) fn list(
    conn: &Connection,
    tenant: &TenantId,
    namespace: &str,
    after: &str,
    limit: usize,
) -> Result<Vec<MemoryRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memory_records WHERE tenant = ?1 AND namespace = ?2 AND id > ?3
         ORDER BY id LIMIT ?4"
    ))?;
    let rows = statement.query_map(
        params![
            tenant.as_str(),
            namespace,
            after,
            crate::stored::sql_limit(limit)
        ],
        read,
    )?;
    rows.map(|row| row?.into_record(tenant)).collect()
}

pub(crate) fn delete(conn: &Connection, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM memory_records WHERE tenant = ?1 AND id = ?2")?
        .execute([tenant.as_str(), id])?;
    Ok(deleted > 0)
}

/// Keyword ranking (FTS5 BM25 over any of the query's terms) fused with the vector ranking.
/// The vectors come from `cache`, loaded by a namespace's first search: this process makes every
/// write to the database, and drops the tenant's cached vectors after each.
pub(crate) fn search(
    conn: &Connection,
    cache: &VectorCache,
    tenant: &TenantId,
    query: &MemoryQuery,
) -> Result<Vec<MemoryHit>, StoreError> {
    memory::check_namespace(&query.namespace)?;
    let scope = params![tenant.as_str(), query.namespace];
    let held: Option<i64> = conn
        .prepare_cached(
            "SELECT 1 FROM memory_records WHERE tenant = ?1 AND namespace = ?2 LIMIT 1",
        )?
        .query_row(scope, |r| r.get(0))
        .optional()?;
    if held.is_none() {
        return Err(memory::unknown_namespace(&query.namespace));
    }
    // The namespace's vectors (read from the rows once, then held), scanned on a thread of
    // their own while FTS5 ranks the keywords on this one: a hybrid search takes about as long
    // as the slower half, not both.
    let vectors = match query.embedding {
        None => None,
        Some(_) => Some(cache.get_or_load(tenant, &query.namespace, || {
            let mut statement = conn.prepare_cached(
                "SELECT id, metadata, embedding FROM memory_records WHERE tenant = ?1 AND namespace = ?2",
            )?;
            let rows = statement.query_map(scope, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.map(|row| row.map_err(StoreError::from)).collect()
        })?),
    };
    let (keyword, vector) = std::thread::scope(|threads| {
        let vector = vectors
            .as_ref()
            .map(|space| threads.spawn(|| space.nearest(query)));
        let keyword = keyword_ranking(conn, tenant, query);
        let vector = vector.map_or(Ok(Vec::new()), |scan| {
            scan.join()
                .map_err(|_| StoreError::Backend("the vector scan panicked".into()))
        });
        (keyword, vector)
    });
    let (keyword, vector) = (keyword?, vector?);
    let mut hits = Vec::new();
    for (id, score, keyword_rank, vector_rank) in memory::rank(query, keyword, vector) {
        if let Some(record) = get(conn, tenant, &id)? {
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

/// The namespace's records that hold any of the query's terms, best first by BM25 (FTS5's
/// `rank`, which sorts inside the index: cheaper than ordering by `bm25()` outside it).
fn keyword_ranking(
    conn: &Connection,
    tenant: &TenantId,
    query: &MemoryQuery,
) -> Result<Vec<(String, String)>, StoreError> {
    let Some(expression) = memory::any_of(query, true, " OR ") else {
        return Ok(Vec::new());
    };
    let mut statement = conn.prepare_cached(
        "SELECT m.id, m.metadata FROM memory_fts JOIN memory_records m ON m.rowid = memory_fts.rowid
         WHERE memory_fts MATCH ?3 AND m.tenant = ?1 AND m.namespace = ?2
         ORDER BY rank LIMIT ?4",
    )?;
    let rows = statement.query_map(
        params![
            tenant.as_str(),
            query.namespace,
            expression,
            memory::keyword_limit(query).unwrap_or(-1)
        ],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.map(|row| row.map_err(StoreError::from)).collect()
}

fn read(row: &Row<'_>) -> rusqlite::Result<StoredMemory> {
    Ok(StoredMemory {
        id: row.get(0)?,
        namespace: row.get(2)?,
        text: row.get(3)?,
        metadata: row.get(4)?,
        embedding: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}
