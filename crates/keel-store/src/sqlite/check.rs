//! `Store::unreadable_records` for SQLite: every stored record decoded the way its reader
//! decodes it, and those that fail listed with the reason. A full scan, for `keel store check`
//! and the admin endpoint, never on a request's path.

use keel_core::{EventBody, SessionState};
use rusqlite::{Connection, Row};

use super::{agents, runs, sessions, timers};
use crate::stored::TIMER_COLUMNS;
use crate::{StoreError, UnreadableRecord};

/// Up to `limit` unreadable records: agents, sessions, runs, events, snapshots, timers, in that
/// order.
pub(crate) fn unreadable(
    conn: &Connection,
    limit: usize,
) -> Result<Vec<UnreadableRecord>, StoreError> {
    let mut found = Vec::new();
    let mut scan = |kind: &str,
                    sql: &str,
                    id: &dyn Fn(&Row<'_>) -> String,
                    decode: &dyn Fn(&Row<'_>) -> Result<(), StoreError>|
     -> Result<(), StoreError> {
        let mut stmt = conn.prepare(sql)?;
        let mut rows = stmt.query([])?;
        while found.len() < limit
            && let Some(row) = rows.next()?
        {
            if let Err(e) = decode(row) {
                found.push(UnreadableRecord {
                    kind: kind.to_string(),
                    id: id(row),
                    // Every query puts the owning tenant last.
                    tenant: row.get::<_, String>(row.as_ref().column_count() - 1).ok(),
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    };
    scan(
        "agent",
        "SELECT name, def, version, tenant FROM agents ORDER BY tenant, name, version",
        &|row| format!("{} v{}", text(row, 0), text(row, 2)),
        &|row| agents::from_row(row).map(drop),
    )?;
    scan(
        "session",
        &format!(
            "SELECT {}, tenant FROM sessions ORDER BY id",
            sessions::COLUMNS
        ),
        &|row| text(row, 0),
        &|row| sessions::from_row(row).map(drop),
    )?;
    scan(
        "run",
        &format!("SELECT {}, tenant FROM runs ORDER BY id", runs::COLUMNS),
        &|row| text(row, 0),
        &|row| runs::stored(row)?.check_whole(),
    )?;
    scan(
        "event",
        "SELECT e.session, e.seq, e.body, s.tenant FROM events AS e JOIN sessions AS s ON s.id = e.session
         ORDER BY e.session, e.seq",
        &|row| format!("{}#{}", text(row, 0), text(row, 1)),
        &|row| {
            let body = row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
            EventBody::decode(body)
                .map(drop)
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        },
    )?;
    scan(
        "snapshot",
        "SELECT n.session, n.seq, n.state, s.tenant FROM snapshots AS n JOIN sessions AS s ON s.id = n.session
         ORDER BY n.session",
        &|row| format!("{}@{}", text(row, 0), text(row, 1)),
        &|row| {
            let state: String = row.get(2)?;
            serde_json::from_str::<SessionState>(&state)
                .map(drop)
                .map_err(|e| {
                    StoreError::Corrupt(format!(
                        "{e} (ignored: the session loads from its full log instead)"
                    ))
                })
        },
    )?;
    scan(
        "timer",
        &format!("SELECT {TIMER_COLUMNS}, tenant FROM timers ORDER BY id"),
        &|row| text(row, 0),
        &|row| {
            crate::stored::timer(timers::read(row)?)
                .map(drop)
                .map_err(|e| StoreError::Corrupt(format!("{e} (skipped: it never fires)")))
        },
    )?;
    Ok(found)
}

fn text(row: &Row<'_>, index: usize) -> String {
    crate::unreadable::row_id(row, index)
}
