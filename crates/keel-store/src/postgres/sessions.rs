//! Session rows: creating a session with its first events, reading, listing with filters and a
//! cursor, and deleting (which cascades to its events, snapshot, scratchpad and runs).

use deadpool_postgres::{Client, GenericClient};
use keel_core::{SessionId, TenantId, Timestamp};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{error, log, statements};
use crate::stored::{self, sql_bound, sql_limit};
use crate::{ExportMark, NewEvent, SessionFilter, SessionRecord, StoreError, encode, unreadable};

pub(crate) const COLUMNS: &str =
    "id, tenant, agent_id, agent_name, agent_version, created_at, metadata, last_seq";

/// Rows a metadata-filtered listing reads at a time (the filter runs here, on decoded JSON).
const FILTERED_PAGE: usize = 256;

pub(crate) async fn create(
    client: &mut Client,
    session: &SessionRecord,
    first_events: &[NewEvent],
) -> Result<(), StoreError> {
    let tx = client.transaction().await?;
    insert(&tx, session, first_events).await?;
    tx.commit().await?;
    Ok(())
}

/// Writes the session's row and first events inside the caller's transaction (`create`, an
/// agent's timer firing).
pub(crate) async fn insert(
    client: &impl GenericClient,
    session: &SessionRecord,
    first_events: &[NewEvent],
) -> Result<(), StoreError> {
    let metadata = encode::json(&session.metadata, || {
        format!("the metadata of session {}", session.id)
    })?;
    let rows = log::EventRows::new(&session.id, 0, None, first_events)?;
    statements::execute(
        client,
        "INSERT INTO sessions (id, tenant, agent_id, agent_name, agent_version, created_at, metadata, last_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &session.id.as_str(),
            &session.tenant.as_str(),
            &session.agent_id.as_str(),
            &session.agent_name,
            &i64::from(session.agent_version),
            &session.created_at.millis(),
            &metadata,
            &sql_bound(first_events.len() as u64),
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("session {}", session.id)),
        false => e.into(),
    })?;
    log::insert_events(client, &session.id, &rows).await?;
    super::blocks::follow_events(client, &session.id, first_events).await?;
    Ok(())
}

pub(crate) async fn get(
    client: &Client,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    statements::query_opt(
        client,
        &format!("SELECT {COLUMNS} FROM sessions WHERE id = $1 AND tenant = $2"),
        &[&id.as_str(), &tenant.as_str()],
    )
    .await?
    .map(|row| from_row(&row))
    .transpose()
}

/// Newest first (ids sort by creation time), after the cursor, matching every filter. The
/// metadata filter compares decoded JSON — same key, same type, same value, as in SQLite —
/// so metadata stays the exact text keel wrote; pages are read until the limit is met.
pub(crate) async fn list(
    client: &Client,
    tenant: &TenantId,
    filter: &SessionFilter,
) -> Result<Vec<SessionRecord>, StoreError> {
    let limit = match filter.limit {
        0 => usize::MAX,
        n => n,
    };
    let page = match filter.metadata.is_empty() {
        true => limit,
        false => FILTERED_PAGE,
    };
    let mut sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE tenant = $1 AND ($2::text IS NULL OR id < $2)"
    );
    let mut args: Vec<Box<dyn ToSql + Sync + Send>> = vec![
        Box::new(tenant.to_string()),
        Box::new(None::<String>),
        Box::new(sql_limit(page)),
    ];
    if let Some(name) = &filter.agent_name {
        args.push(Box::new(name.clone()));
        sql += &format!(" AND agent_name = ${}", args.len());
    }
    if let Some(busy) = filter.busy {
        sql += if busy {
            " AND EXISTS"
        } else {
            " AND NOT EXISTS"
        };
        sql += " (SELECT 1 FROM runs WHERE runs.session = sessions.id AND runs.status IN ('queued', 'running', 'waiting'))";
    }
    sql += " ORDER BY id DESC LIMIT $3";
    let mut cursor = filter.before.as_ref().map(SessionId::to_string);
    let mut sessions = Vec::new();
    loop {
        args[1] = Box::new(cursor.clone());
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as _).collect();
        let rows = statements::query(client, &sql, &params).await?;
        for row in &rows {
            let id: String = row.try_get(0)?;
            match from_row(row) {
                Ok(session) if matches_metadata(&session, filter) => sessions.push(session),
                Ok(_) => {}
                Err(e) => unreadable::isolated("session", &id, &e),
            }
            cursor = Some(id);
            if sessions.len() == limit {
                return Ok(sessions);
            }
        }
        if rows.len() < page {
            return Ok(sessions);
        }
    }
}

/// Same key, same JSON type, same value: `1` matches neither `true`, `"1"` nor `1.0`.
fn matches_metadata(session: &SessionRecord, filter: &SessionFilter) -> bool {
    filter
        .metadata
        .iter()
        .all(|(key, value)| session.metadata.get(key) == Some(value))
}

pub(crate) async fn delete(
    client: &Client,
    tenant: &TenantId,
    id: &SessionId,
) -> Result<bool, StoreError> {
    let deleted = statements::execute(
        client,
        "DELETE FROM sessions WHERE id = $1 AND tenant = $2",
        &[&id.as_str(), &tenant.as_str()],
    )
    .await?;
    Ok(deleted > 0)
}

pub(crate) async fn update_metadata(
    client: &Client,
    tenant: &TenantId,
    id: &SessionId,
    metadata: &serde_json::Map<String, serde_json::Value>,
) -> Result<bool, StoreError> {
    let json = encode::json(metadata, || format!("the metadata of session {id}"))?;
    let updated = statements::execute(
        client,
        "UPDATE sessions SET metadata = $3 WHERE id = $1 AND tenant = $2",
        &[&id.as_str(), &tenant.as_str(), &json],
    )
    .await?;
    Ok(updated > 0)
}

/// Marks the session moved out unless one of its runs is running (`Store::mark_exported`), in
/// one transaction holding the session's row: claims, enqueues, appends and timer firings of
/// the session take that row's lock too, so each comes wholly before the mark or sees it.
pub(crate) async fn mark_exported(
    client: &mut Client,
    tenant: &TenantId,
    id: &SessionId,
    mark: &ExportMark,
) -> Result<ExportMark, StoreError> {
    let tx = client.transaction().await?;
    let row = statements::query_opt(
        &tx,
        "SELECT tenant, exported_at, exported_to FROM sessions WHERE id = $1 FOR NO KEY UPDATE",
        &[&id.as_str()],
    )
    .await?;
    let Some(row) = row.filter(|row| row.try_get::<_, &str>(0).ok() == Some(tenant.as_str()))
    else {
        return Err(stored::session_not_found(id));
    };
    if let Some(held) = read_mark(&row, 1)? {
        return Ok(held);
    }
    let running = statements::query_opt(
        &tx,
        "SELECT id FROM runs WHERE session = $1 AND status = 'running' ORDER BY created_at, id LIMIT 1",
        &[&id.as_str()],
    )
    .await?;
    if let Some(run) = running {
        return Err(StoreError::Busy {
            session: id.clone(),
            run: stored::id(run.try_get(0)?)?,
        });
    }
    statements::execute(
        &tx,
        "UPDATE sessions SET exported_at = $2, exported_to = $3 WHERE id = $1",
        &[&id.as_str(), &mark.at.millis(), &mark.to],
    )
    .await?;
    tx.commit().await?;
    Ok(mark.clone())
}

/// The session's mark if it was moved out; `tenant` `None` for any tenant's.
pub(crate) async fn export_mark(
    client: &impl deadpool_postgres::GenericClient,
    tenant: Option<&TenantId>,
    id: &SessionId,
) -> Result<Option<ExportMark>, StoreError> {
    let row = statements::query_opt(
        client,
        "SELECT tenant, exported_at, exported_to FROM sessions WHERE id = $1",
        &[&id.as_str()],
    )
    .await?;
    match row {
        Some(row) if tenant.is_none_or(|t| row.try_get::<_, &str>(0).ok() == Some(t.as_str())) => {
            read_mark(&row, 1)
        }
        _ => Ok(None),
    }
}

/// `Exported` when the session was moved out: what would change it stops here.
pub(crate) async fn refuse_if_exported(
    client: &impl deadpool_postgres::GenericClient,
    id: &SessionId,
) -> Result<(), StoreError> {
    match export_mark(client, None, id).await? {
        Some(mark) => Err(StoreError::Exported {
            session: id.clone(),
            mark,
        }),
        None => Ok(()),
    }
}

/// The mark in columns `at` (exported_at) and `at + 1` (exported_to) of `row`.
pub(crate) fn read_mark(row: &Row, at: usize) -> Result<Option<ExportMark>, StoreError> {
    let when: Option<i64> = row.try_get(at)?;
    Ok(match when {
        Some(when) => Some(ExportMark {
            at: Timestamp::from_millis(when),
            to: row.try_get(at + 1)?,
        }),
        None => None,
    })
}

/// Decodes a session read with `COLUMNS`.
pub(crate) fn from_row(row: &Row) -> Result<SessionRecord, StoreError> {
    let id: String = row.try_get(0)?;
    let version: i64 = row.try_get(4)?;
    Ok(SessionRecord {
        tenant: stored::id(row.try_get(1)?)?,
        agent_id: stored::id(row.try_get(2)?)?,
        agent_name: row.try_get(3)?,
        agent_version: u32::try_from(version).map_err(|_| {
            StoreError::Corrupt(format!(
                "session {id} pins agent version {version}, which is out of range: restore the database from a backup"
            ))
        })?,
        created_at: Timestamp::from_millis(row.try_get(5)?),
        metadata: stored::json(row.try_get(6)?, "metadata", &id)?,
        last_seq: stored::count(row.try_get(7)?),
        id: stored::id(id)?,
    })
}
