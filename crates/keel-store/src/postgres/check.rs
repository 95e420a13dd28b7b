//! `Store::unreadable_records` for PostgreSQL: every stored record decoded the way its reader
//! decodes it, and those that fail listed with the reason. A full scan, streamed row by row,
//! for `keel store check` and the admin endpoint, never on a request's path.

use deadpool_postgres::Client;
use futures::TryStreamExt;
use keel_core::{EventBody, SessionState};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{agents, row_id, runs, sessions, timers};
use crate::stored::TIMER_COLUMNS;
use crate::{StoreError, UnreadableRecord};

/// One table's walk: which records, how each is named, and how its reader decodes it.
struct Scan {
    kind: &'static str,
    /// Puts the owning tenant last.
    sql: String,
    id: fn(&Row) -> String,
    decode: fn(&Row) -> Result<(), StoreError>,
}

/// Up to `limit` unreadable records: agents, sessions, runs, events, snapshots, timers, in that
/// order.
pub(crate) async fn unreadable(
    client: &Client,
    limit: usize,
) -> Result<Vec<UnreadableRecord>, StoreError> {
    let scans = [
        Scan {
            kind: "agent",
            sql: "SELECT name, def, version, tenant FROM agents ORDER BY tenant, name, version"
                .into(),
            id: |row| format!("{} v{}", row_id(row, 0), row_id(row, 2)),
            decode: |row| agents::from_row(row).map(drop),
        },
        Scan {
            kind: "session",
            sql: format!(
                "SELECT {}, tenant FROM sessions ORDER BY id",
                sessions::COLUMNS
            ),
            id: |row| row_id(row, 0),
            decode: |row| sessions::from_row(row).map(drop),
        },
        Scan {
            kind: "run",
            sql: format!("SELECT {}, tenant FROM runs ORDER BY id", runs::COLUMNS),
            id: |row| row_id(row, 0),
            decode: |row| runs::stored_run(row)?.check_whole(),
        },
        Scan {
            kind: "event",
            sql: "SELECT e.session, e.seq, e.body, s.tenant FROM events AS e
                  JOIN sessions AS s ON s.id = e.session ORDER BY e.session, e.seq"
                .into(),
            id: |row| format!("{}#{}", row_id(row, 0), row_id(row, 1)),
            decode: |row| {
                EventBody::decode(row.try_get(2)?)
                    .map(drop)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))
            },
        },
        Scan {
            kind: "snapshot",
            sql: "SELECT n.session, n.seq, n.state, s.tenant FROM snapshots AS n
                  JOIN sessions AS s ON s.id = n.session ORDER BY n.session"
                .into(),
            id: |row| format!("{}@{}", row_id(row, 0), row_id(row, 1)),
            decode: |row| {
                serde_json::from_str::<SessionState>(row.try_get(2)?)
                    .map(drop)
                    .map_err(|e| {
                        StoreError::Corrupt(format!(
                            "{e} (ignored: the session loads from its full log instead)"
                        ))
                    })
            },
        },
        Scan {
            kind: "timer",
            sql: format!("SELECT {TIMER_COLUMNS}, tenant FROM timers ORDER BY id"),
            id: |row| row_id(row, 0),
            decode: |row| {
                crate::stored::timer(timers::read(row)?)
                    .map(drop)
                    .map_err(|e| StoreError::Corrupt(format!("{e} (skipped: it never fires)")))
            },
        },
    ];
    let mut found = Vec::new();
    for scan in scans {
        let statement = client.prepare(&scan.sql).await?;
        let rows = client
            .query_raw(&statement, std::iter::empty::<&(dyn ToSql + Sync)>())
            .await?;
        let mut rows = std::pin::pin!(rows);
        while found.len() < limit
            && let Some(row) = rows.try_next().await?
        {
            if let Err(e) = (scan.decode)(&row) {
                found.push(UnreadableRecord {
                    kind: scan.kind.to_string(),
                    id: (scan.id)(&row),
                    tenant: row.try_get::<_, String>(row.len() - 1).ok(),
                    reason: e.to_string(),
                });
            }
        }
    }
    Ok(found)
}
