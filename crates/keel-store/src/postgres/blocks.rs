//! Memory blocks on PostgreSQL (`crate::blocks`), as on SQLite: one table for a session's own
//! blocks and the tenant's shared ones, and the history of the shared ones' writes. A shared
//! write holds the block's row (`FOR UPDATE`) from its version check to its commit.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{SessionId, TenantId, Timestamp};
use tokio_postgres::Row;

use super::{error, statements};
use crate::blocks::{self, BlockEdit, MemoryBlock, SHARED, SharedBlockWrite};
use crate::stored::{self, count, sql_bound, sql_limit};
use crate::{NewEvent, StoreError};

const COLUMNS: &str = "label, value, char_limit, description, version, updated_at";

/// Whether `events` edit a session's block, which `follow_events` then writes.
pub(crate) fn edits_a_block(events: &[NewEvent]) -> bool {
    blocks::session_edits(events).next().is_some()
}

/// Sets the session's blocks that `events` (being appended to it) edit.
pub(crate) async fn follow_events(
    client: &impl GenericClient,
    session: &SessionId,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for (label, value, at) in blocks::session_edits(events) {
        statements::execute(
            client,
            "INSERT INTO memory_blocks (tenant, scope, label, session, value, version, updated_at)
             SELECT tenant, $2, $3, id, $4, 1, $5 FROM sessions WHERE id = $1
             ON CONFLICT (tenant, scope, label) DO UPDATE SET value = excluded.value,
                 version = memory_blocks.version + 1, updated_at = excluded.updated_at",
            &[
                &session.as_str(),
                &blocks::session_scope(session),
                &label,
                &value,
                &at.millis(),
            ],
        )
        .await?;
    }
    Ok(())
}

pub(crate) async fn list(
    client: &Client,
    tenant: &TenantId,
    scope: &str,
) -> Result<Vec<MemoryBlock>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {COLUMNS} FROM memory_blocks WHERE tenant = $1 AND scope = $2 ORDER BY label"
        ),
        &[&tenant.as_str(), &scope],
    )
    .await?;
    rows.iter().map(block).collect()
}

pub(crate) async fn session_blocks(
    client: &Client,
    tenant: &TenantId,
    session: &SessionId,
) -> Result<Vec<MemoryBlock>, StoreError> {
    list(client, tenant, &blocks::session_scope(session)).await
}

fn block(row: &Row) -> Result<MemoryBlock, StoreError> {
    Ok(MemoryBlock {
        label: row.try_get(0)?,
        value: row.try_get(1)?,
        limit: row
            .try_get::<_, Option<i64>>(2)?
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
        description: row.try_get(3)?,
        version: count(row.try_get(4)?),
        updated_at: Timestamp::from_millis(row.try_get(5)?),
    })
}

/// `put_shared` in a transaction of its own.
pub(crate) async fn put_shared_alone(
    client: &mut Client,
    tenant: &TenantId,
    write: &SharedBlockWrite,
) -> Result<MemoryBlock, StoreError> {
    let tx = client.transaction().await?;
    let block = put_shared(&tx, tenant, write).await?;
    tx.commit().await?;
    Ok(block)
}

/// Writes a shared block from `write.expected_version`, with its history row, inside the
/// caller's transaction.
pub(crate) async fn put_shared(
    client: &impl GenericClient,
    tenant: &TenantId,
    write: &SharedBlockWrite,
) -> Result<MemoryBlock, StoreError> {
    let current = statements::query_opt(
        client,
        "SELECT value, version FROM memory_blocks
         WHERE tenant = $1 AND scope = $2 AND label = $3 FOR UPDATE",
        &[&tenant.as_str(), &SHARED, &write.label],
    )
    .await?;
    let (before, version) = match current {
        Some(row) => (Some(row.try_get::<_, String>(0)?), count(row.try_get(1)?)),
        None => (write.before.clone(), 0),
    };
    if version != write.expected_version {
        return Err(blocks::stale(&write.label, write.expected_version, version));
    }
    let next = sql_bound(version + 1);
    let limit = i64::from(write.limit);
    let written = statements::execute(
        client,
        "INSERT INTO memory_blocks (tenant, scope, label, session, value, char_limit, description,
                                    version, updated_at)
         VALUES ($1, $2, $3, NULL, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant, scope, label) DO UPDATE SET value = excluded.value,
             char_limit = excluded.char_limit, description = excluded.description,
             version = excluded.version, updated_at = excluded.updated_at
         WHERE memory_blocks.version = $7 - 1",
        &[
            &tenant.as_str(),
            &SHARED,
            &write.label,
            &write.value,
            &limit,
            &write.description,
            &next,
            &write.at.millis(),
        ],
    )
    .await?;
    if written == 0 {
        // Made by another writer between the look and the insert.
        return Err(blocks::stale(
            &write.label,
            write.expected_version,
            version + 1,
        ));
    }
    statements::execute(
        client,
        "INSERT INTO memory_block_history (tenant, label, version, before, after, by, session, run, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            &tenant.as_str(),
            &write.label,
            &next,
            &before,
            &write.value,
            &write.by,
            &write.session.as_ref().map(|s| s.as_str()),
            &write.run.as_ref().map(|r| r.as_str()),
            &write.at.millis(),
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => blocks::stale(&write.label, write.expected_version, version + 1),
        false => e.into(),
    })?;
    Ok(MemoryBlock {
        label: write.label.clone(),
        value: write.value.clone(),
        limit: Some(write.limit),
        description: write.description.clone(),
        version: version + 1,
        updated_at: write.at,
    })
}

/// Applies an append's shared writes, for the appending session's tenant, inside its
/// transaction.
pub(crate) async fn write_shared(
    client: &impl GenericClient,
    session: &SessionId,
    writes: &[SharedBlockWrite],
) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let row = statements::query_opt(
        client,
        "SELECT tenant FROM sessions WHERE id = $1",
        &[&session.as_str()],
    )
    .await?
    .ok_or_else(|| stored::session_not_found(session))?;
    let tenant: TenantId = stored::id(row.try_get(0)?)?;
    for write in writes {
        put_shared(client, &tenant, write).await?;
    }
    Ok(())
}

pub(crate) async fn delete_shared(
    client: &mut Client,
    tenant: &TenantId,
    label: &str,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    statements::execute(
        &tx,
        "DELETE FROM memory_block_history WHERE tenant = $1 AND label = $2",
        &[&tenant.as_str(), &label],
    )
    .await?;
    let deleted = statements::execute(
        &tx,
        "DELETE FROM memory_blocks WHERE tenant = $1 AND scope = $2 AND label = $3",
        &[&tenant.as_str(), &SHARED, &label],
    )
    .await?;
    tx.commit().await?;
    Ok(deleted > 0)
}

pub(crate) async fn history(
    client: &Client,
    tenant: &TenantId,
    label: &str,
    limit: usize,
) -> Result<Vec<BlockEdit>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT label, version, before, after, by, session, run, at FROM memory_block_history
         WHERE tenant = $1 AND label = $2 ORDER BY version DESC LIMIT $3",
        &[&tenant.as_str(), &label, &sql_limit(limit)],
    )
    .await?;
    rows.iter()
        .map(|row| {
            Ok(BlockEdit {
                label: row.try_get(0)?,
                version: count(row.try_get(1)?),
                before: row.try_get(2)?,
                after: row.try_get(3)?,
                by: row.try_get(4)?,
                session: row
                    .try_get::<_, Option<String>>(5)?
                    .map(stored::id)
                    .transpose()?,
                run: row
                    .try_get::<_, Option<String>>(6)?
                    .map(stored::id)
                    .transpose()?,
                at: Timestamp::from_millis(row.try_get(7)?),
            })
        })
        .collect()
}
