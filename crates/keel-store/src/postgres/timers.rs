//! Timers: stored with their session (deleted with it), read by session or by due time, and
//! fired by a conditional update of their next time that queues the run in the same
//! transaction, so of nodes racing to fire one due time, one does.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{RunStatus, SessionId, TenantId, TimerId, Timestamp};
use tokio_postgres::Row;

use super::{error, runs, signals, statements};
use crate::stored::{self, StoredTimer, TIMER_COLUMNS, sql_bound, sql_limit};
use crate::{RunRecord, StoreError, TimerRecord, TimerWrite, encode};

pub(crate) async fn put(
    client: &impl GenericClient,
    timer: &TimerRecord,
) -> Result<(), StoreError> {
    let schedule = encode::json(&timer.schedule, || {
        format!("the schedule of timer {}", timer.id)
    })?;
    // Inserted only for a session of its tenant: nothing is inserted otherwise.
    let inserted = statements::execute(
        client,
        "INSERT INTO timers (id, tenant, session, schedule, note, next_at, created_at, fired,
             last_fired_at)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 FROM sessions
         WHERE id = $3 AND tenant = $2 AND exported_at IS NULL FOR SHARE",
        &[
            &timer.id.as_str(),
            &timer.tenant.as_str(),
            &timer.session.as_str(),
            &schedule,
            &timer.note,
            &timer.next_at.map(Timestamp::millis),
            &timer.created_at.millis(),
            &sql_bound(timer.fired),
            &timer.last_fired_at.map(Timestamp::millis),
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("timer {}", timer.id)),
        false => e.into(),
    })?;
    if inserted == 0 {
        super::sessions::refuse_if_exported(client, &timer.session).await?;
    }
    match inserted {
        0 => Err(stored::session_not_found(&timer.session)),
        _ => Ok(()),
    }
}

/// Applies an append's timer writes, all of its own session (`AppendBatch::timers`).
pub(crate) async fn write(
    client: &impl GenericClient,
    session: &SessionId,
    writes: &[TimerWrite],
) -> Result<(), StoreError> {
    for write in writes {
        match write {
            TimerWrite::Put(timer) => {
                stored::timer_of(session, timer)?;
                put(client, timer).await?;
            }
            TimerWrite::Delete(id) => {
                statements::execute(
                    client,
                    "DELETE FROM timers WHERE id = $1 AND session = $2",
                    &[&id.as_str(), &session.as_str()],
                )
                .await?;
            }
        }
    }
    Ok(())
}

pub(crate) async fn list(
    client: &Client,
    tenant: &TenantId,
    session: &SessionId,
) -> Result<Vec<TimerRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {TIMER_COLUMNS} FROM timers WHERE session = $1 AND tenant = $2
             ORDER BY next_at IS NULL, next_at, id"
        ),
        &[&session.as_str(), &tenant.as_str()],
    )
    .await?;
    let rows = rows.iter().map(read).collect::<Result<_, _>>()?;
    Ok(stored::readable_timers(rows))
}

pub(crate) async fn delete(
    client: &Client,
    tenant: &TenantId,
    id: &TimerId,
) -> Result<bool, StoreError> {
    let deleted = statements::execute(
        client,
        "DELETE FROM timers WHERE id = $1 AND tenant = $2",
        &[&id.as_str(), &tenant.as_str()],
    )
    .await?;
    Ok(deleted > 0)
}

pub(crate) async fn due(
    client: &Client,
    now: Timestamp,
    limit: usize,
) -> Result<Vec<TimerRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {TIMER_COLUMNS} FROM timers WHERE next_at <= $1
               AND NOT EXISTS (SELECT 1 FROM sessions AS moved
                               WHERE moved.id = timers.session AND moved.exported_at IS NOT NULL)
             ORDER BY next_at, id LIMIT $2"
        ),
        &[&now.millis(), &sql_limit(limit)],
    )
    .await?;
    let rows = rows.iter().map(read).collect::<Result<_, _>>()?;
    Ok(stored::readable_timers(rows))
}

/// Moves the timer from `due` to `next` and queues `run`, or does nothing (`false`) when it is
/// no longer due at `due` or its session was moved out.
pub(crate) async fn fire(
    client: &mut Client,
    id: &TimerId,
    due: Timestamp,
    next: Option<Timestamp>,
    run: &RunRecord,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    // The run's session's row, shared: a move out holding it goes first, and is then seen.
    let moved_out = statements::query_opt(
        &tx,
        "SELECT exported_at FROM sessions WHERE id = $1 FOR SHARE",
        &[&run.session.as_str()],
    )
    .await?
    .map(|row| row.try_get::<_, Option<i64>>(0))
    .transpose()?
    .flatten();
    if moved_out.is_some() {
        tx.rollback().await?;
        return Ok(false);
    }
    let moved = statements::execute(
        &tx,
        "UPDATE timers SET next_at = $3, fired = fired + 1, last_fired_at = $4
         WHERE id = $1 AND next_at = $2",
        &[
            &id.as_str(),
            &due.millis(),
            &next.map(Timestamp::millis),
            &run.created_at.millis(),
        ],
    )
    .await?;
    if moved == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    runs::insert(&tx, run, RunStatus::Queued, None, None).await?;
    signals::notify_claimable(&tx).await?;
    tx.commit().await?;
    Ok(true)
}

pub(crate) fn read(row: &Row) -> Result<StoredTimer, StoreError> {
    Ok(StoredTimer {
        id: row.try_get(0)?,
        tenant: row.try_get(1)?,
        session: row.try_get(2)?,
        schedule: row.try_get(3)?,
        note: row.try_get(4)?,
        next_at: row.try_get(5)?,
        created_at: row.try_get(6)?,
        fired: row.try_get(7)?,
        last_fired_at: row.try_get(8)?,
    })
}
