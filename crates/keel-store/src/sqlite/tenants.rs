//! Tenants and their API keys. A key row holds only the public prefix and a hash of the
//! secret; checking a presented secret against it is the caller's job (in constant time).

use keel_core::{TenantId, Timestamp};
use rusqlite::{Connection, Row, params};

use super::{error, stored_id};
use crate::{ApiKeyRecord, KeyScope, StoreError, TenantCounts, TenantRecord};

pub(crate) fn create(conn: &Connection, tenant: &TenantRecord) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![
            tenant.id.as_str(),
            tenant.name,
            tenant.created_at.millis()
        ])
        .map_err(|e| match error::is_duplicate(&e) {
            true => StoreError::AlreadyExists(format!("tenant {}", tenant.id)),
            false => e.into(),
        })?;
    Ok(())
}

pub(crate) fn get(conn: &Connection, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name, created_at FROM tenants WHERE id = ?1")?;
    let mut rows = stmt.query([id.as_str()])?;
    match rows.next()? {
        Some(row) => Ok(Some(TenantRecord {
            id: stored_id(row.get(0)?)?,
            name: row.get(1)?,
            created_at: Timestamp::from_millis(row.get(2)?),
        })),
        None => Ok(None),
    }
}

pub(crate) fn create_key(conn: &Connection, key: &ApiKeyRecord) -> Result<(), StoreError> {
    if get(conn, &key.tenant)?.is_none() {
        return Err(StoreError::NotFound {
            kind: "tenant",
            id: key.tenant.to_string(),
        });
    }
    conn.prepare_cached(
        "INSERT INTO api_keys (prefix, tenant, scope, secret_hash, created_at, revoked_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        key.prefix,
        key.tenant.as_str(),
        key.scope.as_str(),
        key.secret_hash,
        key.created_at.millis(),
        key.revoked_at.map(Timestamp::millis),
    ])
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("API key {}", key.prefix)),
        false => e.into(),
    })?;
    Ok(())
}

pub(crate) fn get_key(conn: &Connection, prefix: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT prefix, tenant, scope, secret_hash, created_at, revoked_at FROM api_keys WHERE prefix = ?1",
    )?;
    let mut rows = stmt.query([prefix])?;
    rows.next()?.map(key_from_row).transpose()
}

/// Marks the key revoked (keeping the first revocation time); `false` for an unknown key.
pub(crate) fn revoke_key(
    conn: &Connection,
    prefix: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE prefix = ?1",
        )?
        .execute(params![prefix, at.millis()])?;
    Ok(changed > 0)
}

fn key_from_row(row: &Row<'_>) -> Result<ApiKeyRecord, StoreError> {
    let prefix: String = row.get(0)?;
    let scope: String = row.get(2)?;
    Ok(ApiKeyRecord {
        tenant: stored_id(row.get(1)?)?,
        scope: KeyScope::parse(&scope).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "API key {prefix} has scope {scope:?}, unknown to this keel: upgrade keel, or restore the database from a backup"
            ))
        })?,
        secret_hash: row.get(3)?,
        created_at: Timestamp::from_millis(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
        prefix,
    })
}

/// Sessions and agent names the tenant holds.
pub(crate) fn counts(conn: &Connection, tenant: &TenantId) -> Result<TenantCounts, StoreError> {
    let count = |sql: &str| -> Result<u64, StoreError> {
        Ok(conn
            .prepare_cached(sql)?
            .query_row([tenant.as_str()], |r| r.get::<_, u64>(0))?)
    };
    Ok(TenantCounts {
        sessions: count("SELECT COUNT(*) FROM sessions WHERE tenant = ?1")?,
        agents: count("SELECT COUNT(DISTINCT name) FROM agents WHERE tenant = ?1")?,
    })
}
