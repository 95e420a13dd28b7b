//! Session rows: creating a session with its first events, reading, listing with filters and a
//! cursor, and deleting (which cascades to its events, snapshot, scratchpad and runs).

use keel_core::{SessionId, TenantId, Timestamp};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};

use super::{error, log, sql_limit, stored_id};
use crate::unreadable;
use crate::{ExportMark, NewEvent, SessionFilter, SessionRecord, StoreError};

pub(crate) const COLUMNS: &str =
    "id, tenant, agent_id, agent_name, agent_version, created_at, metadata, last_seq";

pub(crate) fn create(
    conn: &Connection,
    session: &SessionRecord,
    first_events: &[NewEvent],
) -> Result<(), StoreError> {
    let metadata = crate::encode::json(&session.metadata, || {
        format!("the metadata of session {}", session.id)
    })?;
    conn.prepare_cached(
        "INSERT INTO sessions (id, tenant, agent_id, agent_name, agent_version, created_at, metadata, last_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
    )?
    .execute(params![
        session.id.as_str(),
        session.tenant.as_str(),
        session.agent_id.as_str(),
        session.agent_name,
        session.agent_version,
        session.created_at.millis(),
        metadata,
    ])
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("session {}", session.id)),
        false => e.into(),
    })?;
    log::insert_events(conn, &session.id, 0, first_events)?;
    super::blocks::follow_events(conn, &session.id, first_events)?;
    Ok(())
}

pub(crate) fn get(
    conn: &Connection,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sessions WHERE id = ?1 AND tenant = ?2"
    ))?;
    let mut rows = stmt.query(params![id.as_str(), tenant.as_str()])?;
    rows.next()?.map(from_row).transpose()
}

/// Newest first (ids sort by creation time), after the cursor, matching every filter.
pub(crate) fn list(
    conn: &Connection,
    tenant: &TenantId,
    filter: &SessionFilter,
) -> Result<Vec<SessionRecord>, StoreError> {
    let mut args = Vec::new();
    let mut bind = |value: Value| {
        args.push(value);
        format!("?{}", args.len())
    };
    let mut sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE tenant = {}",
        bind(Value::Text(tenant.to_string()))
    );
    if let Some(name) = &filter.agent_name {
        sql += &format!(" AND agent_name = {}", bind(Value::Text(name.clone())));
    }
    if let Some(before) = &filter.before {
        sql += &format!(" AND id < {}", bind(Value::Text(before.to_string())));
    }
    if let Some(busy) = filter.busy {
        sql += if busy {
            " AND EXISTS"
        } else {
            " AND NOT EXISTS"
        };
        sql += " (SELECT 1 FROM runs WHERE runs.session = sessions.id AND runs.status IN ('queued', 'running', 'waiting'))";
    }
    for (key, value) in &filter.metadata {
        // Same key, same JSON type, same value: `1` matches neither `true` nor `"1"`.
        let (key, value) = (
            bind(Value::Text(key.clone())),
            bind(Value::Text(value.to_string())),
        );
        sql += &format!(
            " AND EXISTS (SELECT 1 FROM json_each(sessions.metadata) AS m \
              WHERE m.key = {key} AND m.type = json_type({value}) AND m.value IS json_extract({value}, '$'))"
        );
    }
    let limit = if filter.limit == 0 {
        -1
    } else {
        sql_limit(filter.limit)
    };
    sql += &format!(" ORDER BY id DESC LIMIT {}", bind(Value::Integer(limit)));
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut sessions = Vec::new();
    while let Some(row) = rows.next()? {
        match from_row(row) {
            Ok(session) => sessions.push(session),
            Err(e) => unreadable::isolated("session", &unreadable::row_id(row, 0), &e),
        }
    }
    Ok(sessions)
}

pub(crate) fn delete(
    conn: &Connection,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM sessions WHERE id = ?1 AND tenant = ?2")?
        .execute(params![id.as_str(), tenant.as_str()])?;
    Ok(deleted > 0)
}

pub(crate) fn update_metadata(
    conn: &Connection,
    tenant: &TenantId,
    id: &SessionId,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<bool, StoreError> {
    let json = crate::encode::json(metadata, || format!("the metadata of session {id}"))?;
    let updated = conn
        .prepare_cached("UPDATE sessions SET metadata = ?3 WHERE id = ?1 AND tenant = ?2")?
        .execute(params![id.as_str(), tenant.as_str(), json])?;
    Ok(updated > 0)
}

/// Marks the session moved out unless one of its runs is running (`Store::mark_exported`); a
/// session marked before keeps its first mark.
pub(crate) fn mark_exported(
    conn: &Connection,
    tenant: &TenantId,
    id: &SessionId,
    mark: &ExportMark,
) -> Result<ExportMark, StoreError> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT tenant FROM sessions WHERE id = ?1")?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    if owner.as_deref() != Some(tenant.as_str()) {
        return Err(crate::stored::session_not_found(id));
    }
    if let Some(held) = export_mark(conn, id)? {
        return Ok(held);
    }
    let running: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM runs WHERE session = ?1 AND status = 'running' ORDER BY created_at, id LIMIT 1",
        )?
        .query_row([id.as_str()], |r| r.get(0))
        .optional()?;
    if let Some(run) = running {
        return Err(StoreError::Busy {
            session: id.clone(),
            run: stored_id(run)?,
        });
    }
    conn.prepare_cached("UPDATE sessions SET exported_at = ?2, exported_to = ?3 WHERE id = ?1")?
        .execute(params![id.as_str(), mark.at.millis(), mark.to])?;
    Ok(mark.clone())
}

/// The session's mark if it was moved out (any tenant's: callers have checked the owner).
pub(crate) fn export_mark(
    conn: &Connection,
    id: &SessionId,
) -> Result<Option<ExportMark>, StoreError> {
    let row: Option<(Option<i64>, Option<String>)> = conn
        .prepare_cached("SELECT exported_at, exported_to FROM sessions WHERE id = ?1")?
        .query_row([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(at, to)| {
        at.map(|at| ExportMark {
            at: Timestamp::from_millis(at),
            to,
        })
    }))
}

/// `Exported` when the session was moved out: what would change it stops here.
pub(crate) fn refuse_if_exported(conn: &Connection, id: &SessionId) -> Result<(), StoreError> {
    match export_mark(conn, id)? {
        Some(mark) => Err(StoreError::Exported {
            session: id.clone(),
            mark,
        }),
        None => Ok(()),
    }
}

pub(crate) fn from_row(row: &Row<'_>) -> Result<SessionRecord, StoreError> {
    let id: String = row.get(0)?;
    let metadata: String = row.get(6)?;
    let metadata = serde_json::from_str(&metadata)
        .map_err(|e| crate::stored::corrupt_json("metadata", &id, e))?;
    Ok(SessionRecord {
        tenant: stored_id(row.get(1)?)?,
        agent_id: stored_id(row.get(2)?)?,
        agent_name: row.get(3)?,
        agent_version: row.get(4)?,
        created_at: Timestamp::from_millis(row.get(5)?),
        metadata,
        last_seq: row.get(7)?,
        id: stored_id(id)?,
    })
}
