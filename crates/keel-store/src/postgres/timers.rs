//! Timers: stored with their session (deleted with it) or their agent (deleted when it is
//! archived), read by owner or by due time, and fired by a conditional update of their next
//! time that writes what the firing starts (a run; an agent's new session and its run) in the
//! same transaction, so of nodes racing to fire one due time, one does.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{RunStatus, SessionId, TenantId, TimerId, Timestamp};
use tokio_postgres::Row;

use super::{error, runs, sessions, signals, statements};
use crate::stored::{self, StoredTimer, TIMER_COLUMNS, sql_bound, sql_limit};
use crate::{StoreError, TimerOwner, TimerRecord, TimerStart, TimerWrite, encode};

/// `put` on its own (`Store::put_timer`): an agent's timer in a transaction that first holds
/// the agent's rows shared, so an archive of the agent (which holds them exclusively, then
/// deletes its timers) is either seen or sees this one.
pub(crate) async fn put_one(client: &mut Client, timer: &TimerRecord) -> Result<(), StoreError> {
    let TimerOwner::Agent(agent) = &timer.owner else {
        return put(&*client, timer).await;
    };
    let tx = client.transaction().await?;
    statements::query(
        &tx,
        "SELECT 1 FROM agents WHERE tenant = $1 AND name = $2 FOR SHARE",
        &[&timer.tenant.as_str(), &agent.as_str()],
    )
    .await?;
    put(&tx, timer).await?;
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn put(
    client: &impl GenericClient,
    timer: &TimerRecord,
) -> Result<(), StoreError> {
    let schedule = encode::json(&timer.schedule, || {
        format!("the schedule of timer {}", timer.id)
    })?;
    // Inserted only for a session of its tenant still here, or an agent of its tenant not
    // archived: nothing is inserted otherwise.
    let owned_by = match &timer.owner {
        TimerOwner::Session(_) => {
            "FROM sessions WHERE id = $3 AND tenant = $2 AND exported_at IS NULL FOR SHARE"
        }
        TimerOwner::Agent(_) => {
            "FROM (SELECT 1 FROM agents WHERE tenant = $2 AND name = $10
                     AND NOT EXISTS (SELECT 1 FROM archived_agents
                                     WHERE tenant = $2 AND name = $10)
                   LIMIT 1) AS known"
        }
    };
    let inserted = statements::execute(
        client,
        &format!(
            "INSERT INTO timers ({TIMER_COLUMNS})
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 {owned_by}"
        ),
        &[
            &timer.id.as_str(),
            &timer.tenant.as_str(),
            &timer.owner.session().map(SessionId::as_str),
            &schedule,
            &timer.note,
            &timer.next_at.map(Timestamp::millis),
            &timer.created_at.millis(),
            &sql_bound(timer.fired),
            &timer.last_fired_at.map(Timestamp::millis),
            &timer.owner.agent(),
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("timer {}", timer.id)),
        false => e.into(),
    })?;
    if inserted > 0 {
        return Ok(());
    }
    match &timer.owner {
        TimerOwner::Session(session) => {
            sessions::refuse_if_exported(client, session).await?;
            Err(stored::session_not_found(session))
        }
        TimerOwner::Agent(agent) => Err(stored::agent_not_found(agent)),
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

pub(crate) async fn list_of_agent(
    client: &Client,
    tenant: &TenantId,
    agent: &str,
) -> Result<Vec<TimerRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {TIMER_COLUMNS} FROM timers WHERE tenant = $1 AND agent = $2
             ORDER BY next_at IS NULL, next_at, id"
        ),
        &[&tenant.as_str(), &agent],
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

/// Moves the timer from `due` to `next` and writes `start`, or does nothing (`false`) when it
/// is no longer due at `due` or its session was moved out.
pub(crate) async fn fire(
    client: &mut Client,
    id: &TimerId,
    due: Timestamp,
    next: Option<Timestamp>,
    start: &TimerStart,
) -> Result<bool, StoreError> {
    let tx = client.transaction().await?;
    let row = statements::query_opt(
        &tx,
        &format!("SELECT {TIMER_COLUMNS} FROM timers WHERE id = $1"),
        &[&id.as_str()],
    )
    .await?;
    let Some(row) = row else {
        tx.rollback().await?;
        return Ok(false);
    };
    let timer = stored::timer(read(&row)?)?;
    stored::start_of(&timer, start)?;
    if let TimerOwner::Session(session) = &timer.owner {
        // The session's row, shared: a move out holding it goes first, and is then seen.
        let here = statements::query_opt(
            &tx,
            "SELECT 1 FROM sessions WHERE id = $1 AND exported_at IS NULL FOR SHARE",
            &[&session.as_str()],
        )
        .await?;
        if here.is_none() {
            tx.rollback().await?;
            return Ok(false);
        }
    }
    let run = start.run();
    let moved = statements::execute(
        &tx,
        "UPDATE timers SET next_at = $3, fired = fired + $5,
             last_fired_at = COALESCE($4, last_fired_at)
         WHERE id = $1 AND next_at = $2",
        &[
            &id.as_str(),
            &due.millis(),
            &next.map(Timestamp::millis),
            &run.map(|run| run.created_at.millis()),
            &i64::from(run.is_some()),
        ],
    )
    .await?;
    if moved == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    if let TimerStart::Session {
        session,
        first_events,
        ..
    } = start
    {
        sessions::insert(&tx, session, first_events).await?;
    }
    if let Some(run) = run {
        runs::insert(&tx, run, RunStatus::Queued, None, None).await?;
        signals::notify_claimable(&tx).await?;
    }
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
        agent: row.try_get(9)?,
    })
}
