//! A session's log: appending events under optimistic concurrency, reading them back in
//! pages, snapshots (only the latest is kept), and the scratchpad that commits with its events.

use keel_core::{Event, EventBody, SessionId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Statement, params};

use super::{sql_bound, sql_limit};
use crate::chain::{self, JournalEntry};
use crate::{AppendBatch, LoadedSession, NewEvent, ScratchpadWrite, Snapshot, StoreError};

/// Appends `batch` after `expected` or fails with `Conflict`; returns the new last seq.
pub(crate) fn append(
    conn: &Connection,
    session: &SessionId,
    expected: u64,
    batch: &AppendBatch,
) -> Result<u64, StoreError> {
    let actual = last_seq(conn, session)?;
    super::sessions::refuse_if_exported(conn, session)?;
    if actual != expected {
        return Err(StoreError::Conflict {
            session: session.clone(),
            expected,
            actual,
        });
    }
    let last = insert_events(conn, session, actual, &batch.events)?;
    super::run_input::move_to_log(conn, session, actual, &batch.events)?;
    write_scratchpad(conn, session, &batch.scratchpad)?;
    super::memory::put_for_session(conn, session, &batch.memory)?;
    super::timers::write(conn, session, &batch.timers)?;
    super::blocks::follow_events(conn, session, &batch.events)?;
    super::blocks::write_shared(conn, session, &batch.shared_blocks)?;
    if let Some(finish) = &batch.finish_run {
        super::runs::finish(conn, &finish.run, finish.status, &finish.outcome)?;
    }
    Ok(last)
}

/// The session's last seq, or `NotFound`.
pub(crate) fn last_seq(conn: &Connection, session: &SessionId) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT last_seq FROM sessions WHERE id = ?1")?
        .query_row([session.as_str()], |r| r.get::<_, u64>(0))
        .optional()?
        .ok_or_else(|| session_not_found(session))
}

/// Inserts `events` as seqs `after + 1 ..`, each with its hash record chained to the one
/// before (`chain.rs`), moves the session's last seq, and returns it.
pub(crate) fn insert_events(
    conn: &Connection,
    session: &SessionId,
    after: u64,
    events: &[NewEvent],
) -> Result<u64, StoreError> {
    if events.is_empty() {
        return Ok(after);
    }
    let mut previous = match after {
        0 => None,
        _ => conn
            .prepare_cached("SELECT hash FROM events WHERE session = ?1 AND seq = ?2")?
            .query_row(params![session.as_str(), sql_bound(after)], |r| {
                r.get::<_, Option<String>>(0)
            })
            .optional()?
            .flatten(),
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO events (session, seq, type, at, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut seq = after;
    for event in events {
        seq += 1;
        let body = crate::encode::readable(event.body.encode(), || {
            format!("event {seq} of session {session}")
        })?;
        let kind = event.body.type_name();
        let hash = chain::event_hash(previous.as_deref(), seq, event.at, kind, &body);
        insert.execute(params![
            session.as_str(),
            sql_bound(seq),
            kind,
            event.at.millis(),
            body,
            hash
        ])?;
        previous = Some(hash);
    }
    conn.prepare_cached("UPDATE sessions SET last_seq = ?2 WHERE id = ?1")?
        .execute(params![session.as_str(), sql_bound(seq)])?;
    Ok(seq)
}

fn write_scratchpad(
    conn: &Connection,
    session: &SessionId,
    writes: &[ScratchpadWrite],
) -> Result<(), StoreError> {
    for write in writes {
        match &write.value {
            Some(value) => conn
                .prepare_cached(
                    "INSERT INTO scratchpad (session, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (session, key) DO UPDATE SET value = excluded.value",
                )?
                .execute(params![session.as_str(), write.key, value])?,
            None => conn
                .prepare_cached("DELETE FROM scratchpad WHERE session = ?1 AND key = ?2")?
                .execute(params![session.as_str(), write.key])?,
        };
    }
    Ok(())
}

pub(crate) fn scratchpad_get(
    conn: &Connection,
    session: &SessionId,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let value = conn
        .prepare_cached("SELECT value FROM scratchpad WHERE session = ?1 AND key = ?2")?
        .query_row(params![session.as_str(), key], |r| r.get(0))
        .optional()?;
    if value.is_none() {
        last_seq(conn, session)?;
    }
    Ok(value)
}

/// Events with `seq > after`, ascending, at most `limit`.
pub(crate) fn read_after(
    conn: &Connection,
    session: &SessionId,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, body FROM events WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let events = decode_events(&mut stmt, session, after, limit)?;
    if events.is_empty() {
        last_seq(conn, session)?;
    }
    Ok(events)
}

/// The last `limit` events with `seq < before`, ascending.
pub(crate) fn read_before(
    conn: &Connection,
    session: &SessionId,
    before: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, at, body FROM events WHERE session = ?1 AND seq < ?2 ORDER BY seq DESC LIMIT ?3")?;
    let mut events = decode_events(&mut stmt, session, before, limit)?;
    if events.is_empty() {
        last_seq(conn, session)?;
    }
    events.reverse();
    Ok(events)
}

/// Events with `seq > after` as stored, with their hash records, ascending, at most `limit`.
pub(crate) fn read_journal(
    conn: &Connection,
    session: &SessionId,
    after: u64,
    limit: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, at, type, body, hash FROM events WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let entries = stmt
        .query_map(
            params![session.as_str(), sql_bound(after), sql_limit(limit)],
            |r| {
                Ok(JournalEntry {
                    seq: r.get(0)?,
                    at: Timestamp::from_millis(r.get(1).unwrap_or(i64::MIN)),
                    kind: as_stored(r.get_ref(2)?),
                    body: as_stored(r.get_ref(3)?),
                    hash: match r.get_ref(4)? {
                        rusqlite::types::ValueRef::Null => None,
                        stored => Some(as_stored(stored)),
                    },
                })
            },
        )?
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        last_seq(conn, session)?;
    }
    Ok(entries)
}

/// A column's value as the text it holds, whatever a hand edit made of it (a blob, a number,
/// bytes that are not UTF-8), so that checking the chain names the event instead of failing.
fn as_stored(value: rusqlite::types::ValueRef<'_>) -> String {
    use rusqlite::types::ValueRef;
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => {
            String::from_utf8_lossy(bytes).into_owned()
        }
        ValueRef::Integer(n) => n.to_string(),
        ValueRef::Real(x) => x.to_string(),
        ValueRef::Null => String::new(),
    }
}

fn decode_events(
    stmt: &mut Statement<'_>,
    session: &SessionId,
    bound: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let mut rows = stmt.query(params![
        session.as_str(),
        sql_bound(bound),
        sql_limit(limit)
    ])?;
    let mut events = Vec::new();
    while let Some(row) = rows.next()? {
        let seq: u64 = row.get(0)?;
        let body = EventBody::decode(row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?)
            .map_err(|source| StoreError::Event {
                session: session.clone(),
                seq,
                source,
            })?;
        events.push(Event {
            seq,
            at: Timestamp::from_millis(row.get(1)?),
            body,
        });
    }
    Ok(events)
}

/// The latest snapshot and the events after it, read in one transaction so they agree.
pub(crate) fn load(conn: &Connection, session: &SessionId) -> Result<LoadedSession, StoreError> {
    let tx = conn.unchecked_transaction()?;
    let snapshot = latest_snapshot(&tx, session)?;
    let tail = read_after(
        &tx,
        session,
        snapshot.as_ref().map_or(0, |s| s.seq),
        usize::MAX,
    )?;
    Ok(LoadedSession { snapshot, tail })
}

/// The session's snapshot, unless it no longer decodes (`stored::snapshot`).
fn latest_snapshot(conn: &Connection, session: &SessionId) -> Result<Option<Snapshot>, StoreError> {
    let stored: Option<(u64, String)> = conn
        .prepare_cached("SELECT seq, state FROM snapshots WHERE session = ?1")?
        .query_row([session.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((seq, state)) = stored else {
        return Ok(None);
    };
    Ok(crate::stored::snapshot(session, seq, &state))
}

pub(crate) fn put_snapshot(
    conn: &Connection,
    session: &SessionId,
    snapshot: &Snapshot,
) -> Result<(), StoreError> {
    let last = last_seq(conn, session)?;
    if snapshot.seq > last {
        return Err(crate::stored::snapshot_past_end(
            session,
            snapshot.seq,
            last,
        ));
    }
    let state = crate::encode::json(&snapshot.state, || {
        format!("the snapshot of session {session}")
    })?;
    conn.prepare_cached(
        "INSERT INTO snapshots (session, seq, state) VALUES (?1, ?2, ?3)
         ON CONFLICT (session) DO UPDATE SET seq = excluded.seq, state = excluded.state WHERE excluded.seq >= snapshots.seq",
    )?
    .execute(params![session.as_str(), sql_bound(snapshot.seq), state])?;
    Ok(())
}

pub(crate) use crate::stored::session_not_found;
