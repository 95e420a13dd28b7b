//! Timers: stored with their session (deleted with it) or their agent (deleted when it is
//! archived), read by owner or by due time, and fired by a conditional update of their next
//! time that writes what the firing starts (a run; an agent's new session and its run) in the
//! same write.

use keel_core::{SessionId, TenantId, TimerId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{error, runs, sessions};
use crate::stored::{self, StoredTimer, TIMER_COLUMNS, sql_limit};
use crate::{Enqueue, StoreError, TimerOwner, TimerRecord, TimerStart, TimerWrite, encode};

pub(crate) fn put(conn: &Connection, timer: &TimerRecord) -> Result<(), StoreError> {
    match &timer.owner {
        TimerOwner::Session(session) => {
            let owner: Option<String> = conn
                .prepare_cached("SELECT tenant FROM sessions WHERE id = ?1")?
                .query_row([session.as_str()], |r| r.get(0))
                .optional()?;
            if owner.as_deref() != Some(timer.tenant.as_str()) {
                return Err(stored::session_not_found(session));
            }
            sessions::refuse_if_exported(conn, session)?;
        }
        TimerOwner::Agent(agent) => {
            let known = conn
                .prepare_cached(
                    "SELECT 1 FROM agents WHERE tenant = ?1 AND name = ?2
                       AND NOT EXISTS (SELECT 1 FROM archived_agents
                                       WHERE tenant = ?1 AND name = ?2)
                     LIMIT 1",
                )?
                .query_row([timer.tenant.as_str(), agent.as_str()], |_| Ok(()))
                .optional()?;
            if known.is_none() {
                return Err(stored::agent_not_found(agent));
            }
        }
    }
    let schedule = encode::json(&timer.schedule, || {
        format!("the schedule of timer {}", timer.id)
    })?;
    conn.prepare_cached(&format!(
        "INSERT INTO timers ({TIMER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
    ))?
    .execute(params![
        timer.id.as_str(),
        timer.tenant.as_str(),
        timer.owner.session().map(SessionId::as_str),
        schedule,
        timer.note,
        timer.next_at.map(Timestamp::millis),
        timer.created_at.millis(),
        stored::sql_bound(timer.fired),
        timer.last_fired_at.map(Timestamp::millis),
        timer.owner.agent(),
    ])
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("timer {}", timer.id)),
        false => e.into(),
    })?;
    Ok(())
}

/// Applies an append's timer writes, all of its own session (`AppendBatch::timers`).
pub(crate) fn write(
    conn: &Connection,
    session: &SessionId,
    writes: &[TimerWrite],
) -> Result<(), StoreError> {
    for write in writes {
        match write {
            TimerWrite::Put(timer) => {
                stored::timer_of(session, timer)?;
                put(conn, timer)?;
            }
            TimerWrite::Delete(id) => {
                conn.prepare_cached("DELETE FROM timers WHERE id = ?1 AND session = ?2")?
                    .execute([id.as_str(), session.as_str()])?;
            }
        }
    }
    Ok(())
}

pub(crate) fn list(
    conn: &Connection,
    tenant: &TenantId,
    session: &SessionId,
) -> Result<Vec<TimerRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {TIMER_COLUMNS} FROM timers WHERE session = ?1 AND tenant = ?2
         ORDER BY next_at IS NULL, next_at, id"
    ))?;
    let rows = statement.query_map([session.as_str(), tenant.as_str()], read)?;
    Ok(stored::readable_timers(rows.collect::<Result<_, _>>()?))
}

pub(crate) fn list_of_agent(
    conn: &Connection,
    tenant: &TenantId,
    agent: &str,
) -> Result<Vec<TimerRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {TIMER_COLUMNS} FROM timers WHERE tenant = ?1 AND agent = ?2
         ORDER BY next_at IS NULL, next_at, id"
    ))?;
    let rows = statement.query_map([tenant.as_str(), agent], read)?;
    Ok(stored::readable_timers(rows.collect::<Result<_, _>>()?))
}

pub(crate) fn delete(
    conn: &Connection,
    tenant: &TenantId,
    id: &TimerId,
) -> Result<bool, StoreError> {
    let deleted = conn
        .prepare_cached("DELETE FROM timers WHERE id = ?1 AND tenant = ?2")?
        .execute([id.as_str(), tenant.as_str()])?;
    Ok(deleted > 0)
}

pub(crate) fn due(
    conn: &Connection,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<TimerRecord>, StoreError> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {TIMER_COLUMNS} FROM timers WHERE next_at <= ?1
           AND NOT EXISTS (SELECT 1 FROM sessions AS moved
                           WHERE moved.id = timers.session AND moved.exported_at IS NOT NULL)
         ORDER BY next_at, id LIMIT ?2"
    ))?;
    let rows = statement.query_map(params![now.millis(), sql_limit(limit)], read)?;
    Ok(stored::readable_timers(rows.collect::<Result<_, _>>()?))
}

/// Moves the timer from `due` to `next` and writes `start`, or does nothing (`false`) when it
/// is no longer due at `due` or its session was moved out.
pub(crate) fn fire(
    conn: &Connection,
    id: &TimerId,
    due: Timestamp,
    next: Option<Timestamp>,
    start: &TimerStart,
) -> Result<bool, StoreError> {
    let row = conn
        .prepare_cached(&format!("SELECT {TIMER_COLUMNS} FROM timers WHERE id = ?1"))?
        .query_row([id.as_str()], read)
        .optional()?;
    let Some(row) = row else {
        return Ok(false);
    };
    stored::start_of(&stored::timer(row)?, start)?;
    let run = start.run();
    let moved = conn
        .prepare_cached(
            "UPDATE timers SET next_at = ?3, fired = fired + ?5,
                 last_fired_at = COALESCE(?4, last_fired_at)
             WHERE id = ?1 AND next_at = ?2
               AND NOT EXISTS (SELECT 1 FROM sessions AS moved
                               WHERE moved.id = timers.session AND moved.exported_at IS NOT NULL)",
        )?
        .execute(params![
            id.as_str(),
            due.millis(),
            next.map(Timestamp::millis),
            run.map(|run| run.created_at.millis()),
            i64::from(run.is_some()),
        ])?;
    if moved == 0 {
        return Ok(false);
    }
    if let TimerStart::Session {
        session,
        first_events,
        ..
    } = start
    {
        sessions::create(conn, session, first_events)?;
    }
    if let Some(run) = run {
        runs::enqueue(conn, run, &Enqueue::default())?;
    }
    Ok(true)
}

pub(crate) fn read(row: &Row) -> rusqlite::Result<StoredTimer> {
    Ok(StoredTimer {
        id: row.get(0)?,
        tenant: row.get(1)?,
        session: row.get(2)?,
        schedule: row.get(3)?,
        note: row.get(4)?,
        next_at: row.get(5)?,
        created_at: row.get(6)?,
        fired: row.get(7)?,
        last_fired_at: row.get(8)?,
        agent: row.get(9)?,
    })
}
