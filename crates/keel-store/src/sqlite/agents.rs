//! Agent definitions, one row per version. Storing a definition under a known name makes the
//! next version and keeps the agent's id; nothing is ever updated in place.

use keel_core::{AgentDef, AgentId, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::stored_id;
use crate::StoreError;
use crate::unreadable;

pub(crate) fn put(
    conn: &Connection,
    tenant: &TenantId,
    mut def: AgentDef,
) -> Result<AgentDef, StoreError> {
    if def.name.trim().is_empty() {
        return Err(StoreError::Invalid(
            "an agent needs a name; got an empty one".into(),
        ));
    }
    let latest: Option<(u32, String)> = conn
        .prepare_cached("SELECT version, id FROM agents WHERE tenant = ?1 AND name = ?2 ORDER BY version DESC LIMIT 1")?
        .query_row(params![tenant.as_str(), def.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((version, id)) = latest {
        def.version = version.checked_add(1).ok_or_else(|| {
            StoreError::Invalid(format!(
                "agent {:?} has reached the last version number ({version})",
                def.name
            ))
        })?;
        def.id = stored_id::<AgentId>(id)?;
    } else {
        def.version = 1;
    }
    let json = crate::encode::json(&def, || format!("agent {:?}", def.name))?;
    conn.prepare_cached("DELETE FROM archived_agents WHERE tenant = ?1 AND name = ?2")?
        .execute(params![tenant.as_str(), def.name])?;
    conn.prepare_cached(
        "INSERT INTO agents (tenant, name, version, id, def) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        tenant.as_str(),
        def.name,
        def.version,
        def.id.as_str(),
        json
    ])?;
    Ok(def)
}

/// The given version, or the latest when `version` is `None`.
pub(crate) fn get(
    conn: &Connection,
    tenant: &TenantId,
    name: &str,
    version: Option<u32>,
) -> Result<Option<AgentDef>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, def FROM agents WHERE tenant = ?1 AND name = ?2 AND (?3 IS NULL OR version = ?3)
         ORDER BY version DESC LIMIT 1",
    )?;
    let mut rows = stmt.query(params![tenant.as_str(), name, version])?;
    rows.next()?.map(from_row).transpose()
}

/// Hides the agent from `list` until a new version is stored and deletes its timers; `false`
/// for an unknown agent.
pub(crate) fn archive(
    conn: &Connection,
    tenant: &TenantId,
    name: &str,
    at: Timestamp,
) -> Result<bool, StoreError> {
    if get(conn, tenant, name, None)?.is_none() {
        return Ok(false);
    }
    conn.prepare_cached(
        "INSERT OR IGNORE INTO archived_agents (tenant, name, archived_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![tenant.as_str(), name, at.millis()])?;
    conn.prepare_cached("DELETE FROM timers WHERE tenant = ?1 AND agent = ?2")?
        .execute(params![tenant.as_str(), name])?;
    Ok(true)
}

/// The latest version of every agent not archived, by name.
pub(crate) fn list(conn: &Connection, tenant: &TenantId) -> Result<Vec<AgentDef>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, def FROM agents AS a WHERE tenant = ?1
         AND version = (SELECT MAX(version) FROM agents AS b WHERE b.tenant = a.tenant AND b.name = a.name)
         AND NOT EXISTS (SELECT 1 FROM archived_agents AS x WHERE x.tenant = a.tenant AND x.name = a.name)
         ORDER BY name",
    )?;
    let mut rows = stmt.query([tenant.as_str()])?;
    let mut agents = Vec::new();
    while let Some(row) = rows.next()? {
        match from_row(row) {
            Ok(agent) => agents.push(agent),
            Err(e) => unreadable::isolated("agent", &unreadable::row_id(row, 0), &e),
        }
    }
    Ok(agents)
}

pub(crate) fn from_row(row: &Row<'_>) -> Result<AgentDef, StoreError> {
    let name: String = row.get(0)?;
    let def: String = row.get(1)?;
    serde_json::from_str(&def)
        .map_err(|e| crate::stored::corrupt_json("definition", &format!("agent {name:?}"), e))
}
