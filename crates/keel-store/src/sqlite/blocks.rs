//! Memory blocks on SQLite (`crate::blocks`): one table for a session's own blocks (scope
//! `session:<id>`, deleted with the session) and the tenant's shared ones (scope `shared`),
//! and the history of shared blocks' writes.

use keel_core::{SessionId, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::sql_limit;
use crate::blocks::{self, BlockEdit, MemoryBlock, SHARED, SharedBlockWrite};
use crate::stored::{self, count};
use crate::{NewEvent, StoreError};

const COLUMNS: &str = "label, value, char_limit, description, version, updated_at";

/// Sets the session's blocks that `events` (being appended to it) edit.
pub(crate) fn follow_events(
    conn: &Connection,
    session: &SessionId,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for (label, value, at) in blocks::session_edits(events) {
        conn.prepare_cached(
            "INSERT INTO memory_blocks (tenant, scope, label, session, value, version, updated_at)
             SELECT tenant, ?2, ?3, id, ?4, 1, ?5 FROM sessions WHERE id = ?1
             ON CONFLICT (tenant, scope, label) DO UPDATE SET value = excluded.value,
                 version = memory_blocks.version + 1, updated_at = excluded.updated_at",
        )?
        .execute(params![
            session.as_str(),
            blocks::session_scope(session),
            label,
            value,
            at.millis()
        ])?;
    }
    Ok(())
}

pub(crate) fn session_blocks(
    conn: &Connection,
    tenant: &TenantId,
    session: &SessionId,
) -> Result<Vec<MemoryBlock>, StoreError> {
    list(conn, tenant, &blocks::session_scope(session))
}

pub(crate) fn list(
    conn: &Connection,
    tenant: &TenantId,
    scope: &str,
) -> Result<Vec<MemoryBlock>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM memory_blocks WHERE tenant = ?1 AND scope = ?2 ORDER BY label"
    ))?;
    let rows = stmt.query_map(params![tenant.as_str(), scope], block)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn block(row: &Row) -> rusqlite::Result<MemoryBlock> {
    Ok(MemoryBlock {
        label: row.get(0)?,
        value: row.get(1)?,
        limit: row.get(2)?,
        description: row.get(3)?,
        version: count(row.get(4)?),
        updated_at: Timestamp::from_millis(row.get(5)?),
    })
}

/// Writes a shared block from `write.expected_version`, with its history row.
pub(crate) fn put_shared(
    conn: &Connection,
    tenant: &TenantId,
    write: &SharedBlockWrite,
) -> Result<MemoryBlock, StoreError> {
    let current: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT value, version FROM memory_blocks WHERE tenant = ?1 AND scope = ?2 AND label = ?3",
        )?
        .query_row(params![tenant.as_str(), SHARED, write.label], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    let version = current.as_ref().map_or(0, |(_, v)| count(*v));
    if version != write.expected_version {
        return Err(blocks::stale(&write.label, write.expected_version, version));
    }
    let next = stored::sql_bound(version + 1);
    conn.prepare_cached(
        "INSERT INTO memory_blocks (tenant, scope, label, session, value, char_limit, description,
                                    version, updated_at)
         VALUES (?1, ?2, ?3, NULL, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (tenant, scope, label) DO UPDATE SET value = excluded.value,
             char_limit = excluded.char_limit, description = excluded.description,
             version = excluded.version, updated_at = excluded.updated_at",
    )?
    .execute(params![
        tenant.as_str(),
        SHARED,
        write.label,
        write.value,
        write.limit,
        write.description,
        next,
        write.at.millis()
    ])?;
    conn.prepare_cached(
        "INSERT INTO memory_block_history (tenant, label, version, before, after, by, session, run, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        tenant.as_str(),
        write.label,
        next,
        current.map(|(value, _)| value).or(write.before.clone()),
        write.value,
        write.by,
        write.session.as_ref().map(|s| s.as_str()),
        write.run.as_ref().map(|r| r.as_str()),
        write.at.millis()
    ])?;
    Ok(MemoryBlock {
        label: write.label.clone(),
        value: write.value.clone(),
        limit: Some(write.limit),
        description: write.description.clone(),
        version: version + 1,
        updated_at: write.at,
    })
}

/// Applies an append's shared writes, for the appending session's tenant.
pub(crate) fn write_shared(
    conn: &Connection,
    session: &SessionId,
    writes: &[SharedBlockWrite],
) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let tenant: String = conn
        .prepare_cached("SELECT tenant FROM sessions WHERE id = ?1")?
        .query_row([session.as_str()], |r| r.get(0))
        .optional()?
        .ok_or_else(|| stored::session_not_found(session))?;
    let tenant: TenantId = stored::id(tenant)?;
    for write in writes {
        put_shared(conn, &tenant, write)?;
    }
    Ok(())
}

pub(crate) fn delete_shared(
    conn: &Connection,
    tenant: &TenantId,
    label: &str,
) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM memory_block_history WHERE tenant = ?1 AND label = ?2")?
        .execute(params![tenant.as_str(), label])?;
    let deleted = conn
        .prepare_cached(
            "DELETE FROM memory_blocks WHERE tenant = ?1 AND scope = ?2 AND label = ?3",
        )?
        .execute(params![tenant.as_str(), SHARED, label])?;
    Ok(deleted > 0)
}

pub(crate) fn history(
    conn: &Connection,
    tenant: &TenantId,
    label: &str,
    limit: usize,
) -> Result<Vec<BlockEdit>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT label, version, before, after, by, session, run, at FROM memory_block_history
         WHERE tenant = ?1 AND label = ?2 ORDER BY version DESC LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![tenant.as_str(), label, sql_limit(limit)], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, Option<String>>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<String>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, i64>(7)?,
        ))
    })?;
    let mut edits = Vec::new();
    for row in rows {
        let (label, version, before, after, by, session, run, at) = row?;
        edits.push(BlockEdit {
            label,
            version: count(version),
            before,
            after,
            by,
            session: session.map(stored::id).transpose()?,
            run: run.map(stored::id).transpose()?,
            at: Timestamp::from_millis(at),
        });
    }
    Ok(edits)
}
