//! A session's log: appending under optimistic concurrency, reading back in pages, snapshots
//! (only the latest is kept), and the scratchpad that commits with its events.
//!
//! An append moves the session's `last_seq` with `UPDATE … WHERE last_seq = expected`: of two
//! nodes racing, the second waits on the row, re-reads it and matches nothing, so it fails
//! with `Conflict` and writes nothing; the `(session, seq)` key stands behind that.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{Event, EventBody, SessionId, Timestamp};
use tokio_postgres::Row;

use super::{error, run_input, runs, statements};
use crate::chain::{self, ChainTips, JournalEntry};
use crate::stored::{self, count, session_not_found, sql_bound, sql_limit};
use crate::{AppendBatch, LoadedSession, NewEvent, ScratchpadWrite, Snapshot, StoreError, encode};

/// Appends `batch` after `expected`, or fails with `Conflict`; returns the new last seq. The
/// chain's previous record comes from `tips` when this handle made it, else from the log.
/// Events alone (most appends) take one statement, committed on its own: one round trip.
/// Anything else in the batch joins them in one transaction.
pub(crate) async fn append(
    client: &mut Client,
    session: &SessionId,
    expected: u64,
    batch: &AppendBatch,
    tips: &ChainTips,
) -> Result<u64, StoreError> {
    let previous = match tips.get(session, expected) {
        Some(record) => Some(record),
        None => previous_hash(&*client, session, expected).await?,
    };
    let rows = EventRows::new(session, expected, previous, &batch.events)?;
    let last = expected.saturating_add(batch.events.len() as u64);
    let alone = batch.scratchpad.is_empty()
        && batch.timers.is_empty()
        && batch.memory.is_empty()
        && batch.finish_run.is_none()
        && batch.shared_blocks.is_empty()
        && !super::blocks::edits_a_block(&batch.events)
        && !run_input::starts_a_run(&batch.events);
    if alone {
        return match advance(&*client, session, expected, last, &rows).await? {
            true => Ok(rows.appended(tips, session, last)),
            false => Err(conflict(&*client, session, expected).await),
        };
    }
    let tx = client.transaction().await?;
    if !advance(&tx, session, expected, last, &rows).await? {
        // Outside the transaction, which a taken seq has aborted.
        tx.rollback().await?;
        return Err(conflict(&*client, session, expected).await);
    }
    run_input::move_to_log(&tx, session, expected, &batch.events).await?;
    write_scratchpad(&tx, session, &batch.scratchpad).await?;
    super::memory::put_for_session(&tx, session, &batch.memory).await?;
    super::timers::write(&tx, session, &batch.timers).await?;
    super::blocks::follow_events(&tx, session, &batch.events).await?;
    super::blocks::write_shared(&tx, session, &batch.shared_blocks).await?;
    if let Some(finish) = &batch.finish_run {
        runs::finish(&tx, &finish.run, finish.status, &finish.outcome).await?;
    }
    tx.commit().await?;
    Ok(rows.appended(tips, session, last))
}

/// Moves the session's last seq from `expected` to `last` and inserts `rows`, in one
/// statement; `false` (nothing written) when the last seq is not `expected` or a seq is taken.
/// Other nodes hear of it from `PgStore::append` once it committed (`signals::Notifier`).
async fn advance(
    client: &impl GenericClient,
    session: &SessionId,
    expected: u64,
    last: u64,
    rows: &EventRows,
) -> Result<bool, StoreError> {
    let row = statements::query_one(
        client,
        "WITH moved AS (UPDATE sessions SET last_seq = $3
                         WHERE id = $1 AND last_seq = $2 AND exported_at IS NULL RETURNING id),
              inserted AS (INSERT INTO events (session, seq, type, at, body, hash)
                           SELECT moved.id, e.* FROM moved,
                               unnest($4::bigint[], $5::text[], $6::bigint[], $7::text[], $8::text[]) AS e)
         SELECT COUNT(*) FROM moved",
        &[
            &session.as_str(),
            &sql_bound(expected),
            &sql_bound(last),
            &rows.seqs,
            &rows.types,
            &rows.ats,
            &rows.bodies,
            &rows.hashes,
        ],
    )
    .await;
    match row {
        Ok(row) => Ok(row.try_get::<_, i64>(0)? == 1),
        // A seq already taken: only a log whose last seq disagrees with its events (a hand
        // edit) gets here, as the key stands behind the last seq.
        Err(e) if error::is_duplicate(&e) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The `Conflict` (or `NotFound`, or `Exported`) for an append after `expected` that moved
/// nothing.
async fn conflict(client: &impl GenericClient, session: &SessionId, expected: u64) -> StoreError {
    if let Err(moved) = super::sessions::refuse_if_exported(client, session).await {
        return moved;
    }
    match last_seq(client, session).await {
        Ok(actual) => StoreError::Conflict {
            session: session.clone(),
            expected,
            actual,
        },
        Err(e) => e,
    }
}

/// The session's last seq, or `NotFound`.
pub(crate) async fn last_seq(
    client: &impl GenericClient,
    session: &SessionId,
) -> Result<u64, StoreError> {
    let row = statements::query_opt(
        client,
        "SELECT last_seq FROM sessions WHERE id = $1",
        &[&session.as_str()],
    )
    .await?;
    match row {
        Some(row) => Ok(count(row.try_get(0)?)),
        None => Err(session_not_found(session)),
    }
}

/// The hash record of the session's event `seq` (`None` for seq 0, or an event stored before
/// keel hashed its journal), which the next event's chains to. Read before the append's own
/// statement: an event never changes once stored, and a racing append fails that statement.
async fn previous_hash(
    client: &impl GenericClient,
    session: &SessionId,
    seq: u64,
) -> Result<Option<String>, StoreError> {
    if seq == 0 {
        return Ok(None);
    }
    let row = statements::query_opt(
        client,
        "SELECT hash FROM events WHERE session = $1 AND seq = $2",
        &[&session.as_str(), &sql_bound(seq)],
    )
    .await?;
    Ok(match row {
        Some(row) => row.try_get(0)?,
        None => None,
    })
}

/// Events as the columns of their rows, for one `unnest` insert.
pub(crate) struct EventRows {
    seqs: Vec<i64>,
    types: Vec<&'static str>,
    ats: Vec<i64>,
    bodies: Vec<String>,
    hashes: Vec<String>,
}

impl EventRows {
    /// `events` as seqs `after + 1 ..`, their hash records chained from `previous` (the
    /// record of seq `after`); `Invalid` before anything is written when one is nested too
    /// deep to read back.
    pub(crate) fn new(
        session: &SessionId,
        after: u64,
        mut previous: Option<String>,
        events: &[NewEvent],
    ) -> Result<EventRows, StoreError> {
        let mut rows = EventRows {
            seqs: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            ats: Vec::with_capacity(events.len()),
            bodies: Vec::with_capacity(events.len()),
            hashes: Vec::with_capacity(events.len()),
        };
        for (n, event) in (1..).zip(events) {
            // A stale `after` may be anything: saturate, the append will not match anyway.
            let seq = after.saturating_add(n);
            let body = encode::readable(event.body.encode(), || {
                format!("event {seq} of session {session}")
            })?;
            let kind = event.body.type_name();
            let hash = chain::event_hash(previous.as_deref(), seq, event.at, kind, &body);
            rows.bodies.push(body);
            rows.seqs.push(sql_bound(seq));
            rows.types.push(kind);
            rows.ats.push(event.at.millis());
            rows.hashes.push(hash.clone());
            previous = Some(hash);
        }
        Ok(rows)
    }

    /// Notes the last of these rows as the session's chain tip, once committed at `last`.
    fn appended(&self, tips: &ChainTips, session: &SessionId, last: u64) -> u64 {
        if let Some(record) = self.hashes.last() {
            tips.set(session, last, record.clone());
        }
        last
    }
}

/// Inserts a new session's first events; `append` inserts the others as it moves the last seq.
pub(crate) async fn insert_events(
    client: &impl GenericClient,
    session: &SessionId,
    rows: &EventRows,
) -> Result<(), StoreError> {
    if rows.seqs.is_empty() {
        return Ok(());
    }
    statements::execute(
        client,
        "INSERT INTO events (session, seq, type, at, body, hash)
         SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::text[], $6::text[])",
        &[
            &session.as_str(),
            &rows.seqs,
            &rows.types,
            &rows.ats,
            &rows.bodies,
            &rows.hashes,
        ],
    )
    .await?;
    Ok(())
}

async fn write_scratchpad(
    client: &impl GenericClient,
    session: &SessionId,
    writes: &[ScratchpadWrite],
) -> Result<(), StoreError> {
    for write in writes {
        match &write.value {
            Some(value) => {
                statements::execute(
                    client,
                    "INSERT INTO scratchpad (session, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (session, key) DO UPDATE SET value = excluded.value",
                    &[&session.as_str(), &write.key, &value.as_bytes()],
                )
                .await?
            }
            None => {
                statements::execute(
                    client,
                    "DELETE FROM scratchpad WHERE session = $1 AND key = $2",
                    &[&session.as_str(), &write.key],
                )
                .await?
            }
        };
    }
    Ok(())
}

pub(crate) async fn scratchpad_get(
    client: &Client,
    session: &SessionId,
    key: &str,
) -> Result<Option<String>, StoreError> {
    let row = statements::query_opt(
        client,
        "SELECT value FROM scratchpad WHERE session = $1 AND key = $2",
        &[&session.as_str(), &key],
    )
    .await?;
    let Some(row) = row else {
        last_seq(client, session).await?;
        return Ok(None);
    };
    text(row.try_get(0)?, || {
        format!("scratchpad key {key:?} of session {session}")
    })
    .map(Some)
}

/// Bytes this backend stored from a `String`, as that string again.
pub(crate) fn text(bytes: Vec<u8>, owner: impl FnOnce() -> String) -> Result<String, StoreError> {
    String::from_utf8(bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "the stored {} is not UTF-8 ({e}): restore the database from a backup",
            owner()
        ))
    })
}

/// Events with `seq > after` as stored, with their hash records, ascending, at most `limit`.
pub(crate) async fn read_journal(
    client: &Client,
    session: &SessionId,
    after: u64,
    limit: usize,
) -> Result<Vec<JournalEntry>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT seq, at, type, body, hash FROM events WHERE session = $1 AND seq > $2
         ORDER BY seq LIMIT $3",
        &[&session.as_str(), &sql_bound(after), &sql_limit(limit)],
    )
    .await?;
    if rows.is_empty() {
        last_seq(client, session).await?;
    }
    rows.iter()
        .map(|row| {
            Ok(JournalEntry {
                seq: count(row.try_get(0)?),
                at: Timestamp::from_millis(row.try_get(1)?),
                kind: row.try_get(2)?,
                body: row.try_get(3)?,
                hash: row.try_get(4)?,
            })
        })
        .collect()
}

/// Events with `seq > after`, ascending, at most `limit`.
pub(crate) async fn read_after(
    client: &Client,
    session: &SessionId,
    after: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let events = read_range(client, session, after, u64::MAX, limit).await?;
    if events.is_empty() {
        last_seq(client, session).await?;
    }
    Ok(events)
}

/// Events with `after < seq <= upto`, ascending, at most `limit`.
async fn read_range(
    client: &Client,
    session: &SessionId,
    after: u64,
    upto: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT seq, at, body FROM events WHERE session = $1 AND seq > $2 AND seq <= $3
         ORDER BY seq LIMIT $4",
        &[
            &session.as_str(),
            &sql_bound(after),
            &sql_bound(upto),
            &sql_limit(limit),
        ],
    )
    .await?;
    rows.iter().map(|row| decode_event(row, session)).collect()
}

/// The last `limit` events with `seq < before`, ascending.
pub(crate) async fn read_before(
    client: &Client,
    session: &SessionId,
    before: u64,
    limit: usize,
) -> Result<Vec<Event>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT seq, at, body FROM events WHERE session = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        &[&session.as_str(), &sql_bound(before), &sql_limit(limit)],
    )
    .await?;
    let mut events = rows
        .iter()
        .map(|row| decode_event(row, session))
        .collect::<Result<Vec<_>, _>>()?;
    if events.is_empty() {
        last_seq(client, session).await?;
    }
    events.reverse();
    Ok(events)
}

fn decode_event(row: &Row, session: &SessionId) -> Result<Event, StoreError> {
    let seq = count(row.try_get(0)?);
    let body = EventBody::decode(row.try_get(2)?).map_err(|source| StoreError::Event {
        session: session.clone(),
        seq,
        source,
    })?;
    Ok(Event {
        seq,
        at: Timestamp::from_millis(row.try_get(1)?),
        body,
    })
}

/// The latest snapshot and the events after it up to the last seq read with it: events up
/// to that seq never change, so the two agree without a transaction.
pub(crate) async fn load(
    client: &Client,
    session: &SessionId,
) -> Result<LoadedSession, StoreError> {
    let row = statements::query_opt(
        client,
        "SELECT s.last_seq, n.seq, n.state FROM sessions AS s
         LEFT JOIN snapshots AS n ON n.session = s.id WHERE s.id = $1",
        &[&session.as_str()],
    )
    .await?
    .ok_or_else(|| session_not_found(session))?;
    let last = count(row.try_get(0)?);
    let snapshot = match (
        row.try_get::<_, Option<i64>>(1)?,
        row.try_get::<_, Option<&str>>(2)?,
    ) {
        (Some(seq), Some(state)) => stored::snapshot(session, count(seq), state),
        _ => None,
    };
    let after = snapshot.as_ref().map_or(0, |s| s.seq);
    let tail = read_range(client, session, after, last, usize::MAX).await?;
    Ok(LoadedSession { snapshot, tail })
}

/// Stores the snapshot unless a newer one is there; `Invalid` past the log's end.
pub(crate) async fn put_snapshot(
    client: &Client,
    session: &SessionId,
    snapshot: &Snapshot,
) -> Result<(), StoreError> {
    let state = encode::json(&snapshot.state, || {
        format!("the snapshot of session {session}")
    })?;
    let written = statements::execute(
        client,
        "INSERT INTO snapshots (session, seq, state)
         SELECT id, $2, $3 FROM sessions WHERE id = $1 AND last_seq >= $2
         ON CONFLICT (session) DO UPDATE SET seq = excluded.seq, state = excluded.state
         WHERE excluded.seq >= snapshots.seq",
        &[&session.as_str(), &sql_bound(snapshot.seq), &state],
    )
    .await?;
    if written == 0 {
        // Not stored: an unknown session, past the log's end, or older than the one kept.
        let last = last_seq(client, session).await?;
        if snapshot.seq > last {
            return Err(stored::snapshot_past_end(session, snapshot.seq, last));
        }
    }
    Ok(())
}
