//! Export: one session of a tenant read into `keel.session/1` lines, events as stored (their
//! JSON and hash records untouched), then its scratchpad, timers, unfinished runs and the
//! records of its memory namespace.

use keel_core::{SessionId, TenantId, Timestamp};

use super::{FORMAT, Header, Line, SessionHead, VERSION, session_namespace};
use crate::export::{ExportCursor, TABLES, Value};
use crate::{Store, StoreError};

/// Events read from the journal per store read.
const PAGE: usize = 1_000;

/// The session's export, one JSON text per line (no newlines), header first and the end line
/// last; `NotFound` when the tenant has no such session.
pub async fn export_session(
    store: &dyn Store,
    tenant: &TenantId,
    id: &SessionId,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let session = store
        .get_session(tenant, id)
        .await?
        .ok_or_else(|| crate::stored::session_not_found(id))?;
    let agent = store
        .get_agent(tenant, &session.agent_name, Some(session.agent_version))
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "agent",
            id: format!("{}@{}", session.agent_name, session.agent_version),
        })?;
    let header = Header {
        format: FORMAT.into(),
        version: VERSION,
        exported_at: now,
        session: SessionHead {
            id: id.clone(),
            agent,
            metadata: session.metadata,
            created_at: session.created_at,
        },
    };
    let mut lines = vec![to_line(&header)?];
    let mut events = 0;
    loop {
        let page = store.read_journal(id, events, PAGE).await?;
        for entry in &page {
            let body = serde_json::from_str(&entry.body).map_err(|e| {
                StoreError::Corrupt(format!(
                    "event {id}#{} does not read as JSON: {e}",
                    entry.seq
                ))
            })?;
            lines.push(to_line(&Line::Event {
                seq: entry.seq,
                at: entry.at,
                kind: entry.kind.clone(),
                body,
                hash: entry.hash.clone(),
            })?);
            events = entry.seq;
        }
        if page.len() < PAGE {
            break;
        }
    }
    for (key, value) in scratchpad(store, id).await? {
        lines.push(to_line(&Line::Scratchpad { key, value })?);
    }
    for timer in store.list_timers(tenant, id).await? {
        lines.push(to_line(&Line::Timer {
            id: timer.id,
            schedule: timer.schedule,
            note: timer.note,
            next_at: timer.next_at,
            created_at: timer.created_at,
            fired: timer.fired,
            last_fired_at: timer.last_fired_at,
        })?);
    }
    for run in store.pending_runs(tenant, id).await? {
        lines.push(to_line(&Line::Run {
            id: run.id,
            input: Box::new(run.input),
            options: Box::new(run.options),
            status: run.status,
            created_at: run.created_at,
            cancel_requested: run.cancel_requested,
        })?);
    }
    let namespace = session_namespace(id);
    let mut after = String::new();
    loop {
        let page = store.list_memory(tenant, &namespace, &after, PAGE).await?;
        for record in &page {
            lines.push(to_line(&Line::Memory {
                id: record.id.clone(),
                namespace: record.namespace.clone(),
                text: record.text.clone(),
                metadata: record.metadata.clone(),
                created_at: record.created_at,
                updated_at: record.updated_at,
            })?);
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = last.id.clone(),
            _ => break,
        }
    }
    lines.push(to_line(&Line::End { events })?);
    Ok(lines)
}

/// The session's scratchpad values, by key: its rows of the scratchpad table, read as
/// `export_page` walks them from the session's first key.
async fn scratchpad(
    store: &dyn Store,
    id: &SessionId,
) -> Result<Vec<(String, String)>, StoreError> {
    let table = TABLES
        .iter()
        .position(|t| t.name == "scratchpad")
        .expect("the scratchpad table is listed");
    let mut values: Vec<(String, String)> = Vec::new();
    if let Some(value) = store.scratchpad_get(id, "").await? {
        values.push((String::new(), value));
    }
    let mut cursor = ExportCursor {
        table,
        after: Some(vec![
            Value::Text(id.to_string()),
            Value::Text(String::new()),
        ]),
    };
    loop {
        let page = store.export_page(&cursor, PAGE).await?;
        let mut more = page.records.len() >= PAGE;
        for record in page.records {
            match (
                record.get("session"),
                record.get("key"),
                record.get("value"),
            ) {
                (Value::Text(session), Value::Text(key), Value::Text(value))
                    if session == id.as_str() =>
                {
                    values.push((key.clone(), value.clone()))
                }
                _ => more = false,
            }
        }
        let ours = format!("{id}/");
        if let Some(bad) = page.unreadable.iter().find(|b| b.id.starts_with(&ours)) {
            return Err(StoreError::Corrupt(format!(
                "scratchpad value {} cannot be read: {}",
                bad.id, bad.reason
            )));
        }
        match (more, page.next) {
            (true, Some(next)) if next.table == table => cursor = next,
            _ => return Ok(values),
        }
    }
}

fn to_line(value: &impl serde::Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("a line of the export cannot be written: {e}")))
}
