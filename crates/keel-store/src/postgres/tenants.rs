//! Tenants and their API keys. A key row holds only the public prefix and a hash of the
//! secret; checking a presented secret against it is the caller's job (in constant time).

use deadpool_postgres::Client;
use keel_core::{TenantId, Timestamp};
use tokio_postgres::Row;

use super::{error, statements};
use crate::stored::{self, count};
use crate::{ApiKeyRecord, KeyScope, StoreError, TenantCounts, TenantRecord};

pub(crate) async fn create(client: &Client, tenant: &TenantRecord) -> Result<(), StoreError> {
    statements::execute(
        client,
        "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
        &[
            &tenant.id.as_str(),
            &tenant.name,
            &tenant.created_at.millis(),
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("tenant {}", tenant.id)),
        false => e.into(),
    })?;
    Ok(())
}

pub(crate) async fn get(
    client: &Client,
    id: &TenantId,
) -> Result<Option<TenantRecord>, StoreError> {
    let row = statements::query_opt(
        client,
        "SELECT id, name, created_at FROM tenants WHERE id = $1",
        &[&id.as_str()],
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(TenantRecord {
        id: stored::id(row.try_get(0)?)?,
        name: row.try_get(1)?,
        created_at: Timestamp::from_millis(row.try_get(2)?),
    }))
}

/// Stores a key of an existing tenant: the key's reference to its tenant checks that.
pub(crate) async fn create_key(client: &Client, key: &ApiKeyRecord) -> Result<(), StoreError> {
    statements::execute(
        client,
        "INSERT INTO api_keys (prefix, tenant, scope, secret_hash, created_at, revoked_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &key.prefix,
            &key.tenant.as_str(),
            &key.scope.as_str(),
            &key.secret_hash,
            &key.created_at.millis(),
            &key.revoked_at.map(Timestamp::millis),
        ],
    )
    .await
    .map_err(|e| {
        if error::is_duplicate(&e) {
            StoreError::AlreadyExists(format!("API key {}", key.prefix))
        } else if error::is_missing_reference(&e) {
            StoreError::NotFound {
                kind: "tenant",
                id: key.tenant.to_string(),
            }
        } else {
            e.into()
        }
    })?;
    Ok(())
}

pub(crate) async fn get_key(
    client: &Client,
    prefix: &str,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    statements::query_opt(
        client,
        "SELECT prefix, tenant, scope, secret_hash, created_at, revoked_at FROM api_keys WHERE prefix = $1",
        &[&prefix],
    )
    .await?
    .map(|row| key_from_row(&row))
    .transpose()
}

/// Marks the key revoked (keeping the first revocation time); `false` for an unknown key.
pub(crate) async fn revoke_key(
    client: &Client,
    prefix: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let changed = statements::execute(
        client,
        "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE prefix = $1",
        &[&prefix, &at.millis()],
    )
    .await?;
    Ok(changed > 0)
}

fn key_from_row(row: &Row) -> Result<ApiKeyRecord, StoreError> {
    let prefix: String = row.try_get(0)?;
    let scope: &str = row.try_get(2)?;
    Ok(ApiKeyRecord {
        tenant: stored::id(row.try_get(1)?)?,
        scope: KeyScope::parse(scope).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "API key {prefix} has scope {scope:?}, unknown to this keel: upgrade keel, or restore the database from a backup"
            ))
        })?,
        secret_hash: row.try_get(3)?,
        created_at: Timestamp::from_millis(row.try_get(4)?),
        revoked_at: row.try_get::<_, Option<i64>>(5)?.map(Timestamp::from_millis),
        prefix,
    })
}

/// Sessions and agent names the tenant holds, read in one statement.
pub(crate) async fn counts(client: &Client, tenant: &TenantId) -> Result<TenantCounts, StoreError> {
    let row = statements::query_one(
        client,
        "SELECT (SELECT COUNT(*) FROM sessions WHERE tenant = $1),
                (SELECT COUNT(DISTINCT name) FROM agents WHERE tenant = $1)",
        &[&tenant.as_str()],
    )
    .await?;
    Ok(TenantCounts {
        sessions: count(row.try_get(0)?),
        agents: count(row.try_get(1)?),
    })
}
