//! The run queue with leases. A node claims runs for a while and heartbeats to keep them; a
//! lease that runs out (a dead node) makes the run claimable by another. Never are two runs of
//! one session held at once, so a session's log has one driver at a time.

use std::collections::HashSet;

use keel_core::{RunId, RunStatus, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{error, log, stored_id};
use crate::stored::{self, StoredRun};
use crate::{Enqueue, Enqueued, RunOutcome, RunRecord, StoreError, encode, unreadable};

/// What a run's row holds, as written.
macro_rules! stored_columns {
    () => {
        "id, tenant, session, input, status, created_at, output, error, cancel_requested, lease_owner, lease_until, options"
    };
}
const STORED: &str = stored_columns!();

/// What readers select: the row, then the seq of its `run_started` and that event's body, for
/// a run whose input the log holds (`run_input`).
pub(crate) const COLUMNS: &str = concat!(
    stored_columns!(),
    ", input_seq, (SELECT body FROM events WHERE events.session = runs.session AND events.seq = runs.input_seq)"
);

/// Queues `run` as `how` says; the look at the session's runs and the insert are one write.
pub(crate) fn enqueue(
    conn: &Connection,
    run: &RunRecord,
    how: &Enqueue,
) -> Result<Enqueued, StoreError> {
    let owner: Option<String> = conn
        .prepare_cached("SELECT tenant FROM sessions WHERE id = ?1")?
        .query_row([run.session.as_str()], |r| r.get(0))
        .optional()?;
    if owner.as_deref() != Some(run.tenant.as_str()) {
        return Err(log::session_not_found(&run.session));
    }
    super::sessions::refuse_if_exported(conn, &run.session)?;
    let busy_with = match how.refuse_if_busy || how.claim_if_idle.is_some() {
        true => oldest_pending(conn, &run.session)?,
        false => None,
    };
    if how.refuse_if_busy
        && let Some(holder) = busy_with
    {
        return Ok(Enqueued::Busy(holder));
    }
    let lease = how.claim_if_idle.as_ref().filter(|_| busy_with.is_none());
    let (input, options) = encode::run_input(run)?;
    let (status, lease_owner, lease_until) = match lease {
        Some(lease) => (
            RunStatus::Running,
            Some(lease.node.as_str()),
            Some(lease.until),
        ),
        None => (run.status, run.lease_owner.as_deref(), run.lease_until),
    };
    conn.prepare_cached(&format!(
        "INSERT INTO runs ({STORED}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    ))?
    .execute(params![
        run.id.as_str(),
        run.tenant.as_str(),
        run.session.as_str(),
        input,
        status.as_str(),
        run.created_at.millis(),
        run.output,
        run.error,
        run.cancel_requested,
        lease_owner,
        lease_until.map(Timestamp::millis),
        options,
    ])
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("run {}", run.id)),
        false => e.into(),
    })?;
    Ok(match lease {
        Some(_) => Enqueued::Claimed,
        None => Enqueued::Queued,
    })
}

/// The session's oldest queued, running or waiting run: the one a busy session is busy with.
fn oldest_pending(
    conn: &Connection,
    session: &keel_core::SessionId,
) -> Result<Option<RunId>, StoreError> {
    conn.prepare_cached(
        "SELECT id FROM runs WHERE session = ?1 AND status IN ('queued', 'running', 'waiting')
         ORDER BY created_at, id LIMIT 1",
    )?
    .query_row([session.as_str()], |r| r.get::<_, String>(0))
    .optional()?
    .map(stored_id)
    .transpose()
}

pub(crate) fn get(
    conn: &Connection,
    tenant: &TenantId,
    id: &RunId,
) -> Result<Option<RunRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runs WHERE id = ?1 AND tenant = ?2"
    ))?;
    let mut rows = stmt.query(params![id.as_str(), tenant.as_str()])?;
    rows.next()?.map(from_row).transpose()
}

/// The session's queued, running and waiting runs, oldest first.
pub(crate) fn pending(
    conn: &Connection,
    tenant: &TenantId,
    session: &keel_core::SessionId,
) -> Result<Vec<RunRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runs WHERE session = ?1 AND tenant = ?2 AND status IN ('queued', 'running', 'waiting')
         ORDER BY created_at, id"
    ))?;
    let mut rows = stmt.query(params![session.as_str(), tenant.as_str()])?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next()? {
        match from_row(row) {
            Ok(run) => runs.push(run),
            Err(e) => unreadable::isolated("run", &unreadable::row_id(row, 0), &e),
        }
    }
    Ok(runs)
}

pub(crate) fn with_status(
    conn: &Connection,
    tenant: &TenantId,
    status: RunStatus,
    before: Option<&RunId>,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    stored::unfinished(status)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM runs WHERE status = ?1 AND tenant = ?2 AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let before = before.map(RunId::as_str);
    let mut rows = stmt.query(params![
        status.as_str(),
        tenant.as_str(),
        before,
        stored::sql_limit(limit)
    ])?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next()? {
        match from_row(row) {
            Ok(run) => runs.push(run),
            Err(e) => unreadable::isolated("run", &unreadable::row_id(row, 0), &e),
        }
    }
    Ok(runs)
}

pub(crate) fn count_by_status(conn: &Connection) -> Result<Vec<(RunStatus, u64)>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")?;
    let mut rows = stmt.query([])?;
    let mut counts = Vec::new();
    while let Some(row) = rows.next()? {
        let status: String = row.get(0)?;
        if let Some(status) = RunStatus::parse(&status) {
            counts.push((status, row.get(1)?));
        }
    }
    Ok(counts)
}

/// Oldest claimable runs first, at most one per session, none of a session with a live lease.
pub(crate) fn claim(
    conn: &Connection,
    node: &str,
    now: Timestamp,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut candidates = conn.prepare_cached(
        "SELECT id, session FROM runs AS r
         WHERE (status = 'queued' OR (status = 'running' AND (lease_until IS NULL OR lease_until <= ?1)))
           AND NOT EXISTS (SELECT 1 FROM runs AS live
                           WHERE live.session = r.session
                             AND (live.status = 'waiting' OR (live.status = 'running' AND live.lease_until > ?1)))
           AND NOT EXISTS (SELECT 1 FROM sessions AS moved
                           WHERE moved.id = r.session AND moved.exported_at IS NOT NULL)
         ORDER BY created_at, id",
    )?;
    let mut rows = candidates.query([now.millis()])?;
    let mut sessions = HashSet::new();
    let mut chosen = Vec::new();
    while chosen.len() < limit
        && let Some(row) = rows.next()?
    {
        let (id, session): (String, String) = (row.get(0)?, row.get(1)?);
        if sessions.insert(session) {
            chosen.push(id);
        }
    }
    drop(rows);
    let mut take = conn.prepare_cached(&format!(
        "UPDATE runs SET status = 'running', lease_owner = ?2, lease_until = ?3 WHERE id = ?1 RETURNING {COLUMNS}"
    ))?;
    let until = now.millis().saturating_add(lease_ms);
    let mut claimed = Vec::with_capacity(chosen.len());
    let mut unreadable = Vec::new();
    for id in chosen {
        let mut rows = take.query(params![id, node, until])?;
        if let Some(row) = rows.next()? {
            match from_row(row) {
                Ok(run) => claimed.push(run),
                Err(e) => unreadable.push((id, e)),
            }
        }
    }
    drop(take);
    for (id, e) in unreadable {
        fail_unreadable(conn, &id, &e)?;
    }
    Ok(claimed)
}

/// Fails a claimed run whose record cannot be decoded, naming it and why, instead of handing
/// it out: it would fail every claim after this one, and every other run would wait for ever.
fn fail_unreadable(conn: &Connection, id: &str, e: &StoreError) -> Result<(), StoreError> {
    unreadable::isolated("run", id, e);
    let error = stored::unreadable_run_error(id, e);
    conn.prepare_cached(
        "UPDATE runs SET status = 'failed', error = ?2, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
    )?
    .execute(params![id, error])?;
    Ok(())
}

pub(crate) fn heartbeat(
    conn: &Connection,
    run: &RunId,
    node: &str,
    now: Timestamp,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let extended = conn
        .prepare_cached("UPDATE runs SET lease_until = ?3 WHERE id = ?1 AND lease_owner = ?2 AND status = 'running'")?
        .execute(params![run.as_str(), node, now.millis().saturating_add(lease_ms)])?;
    Ok(extended > 0)
}

pub(crate) fn finish(
    conn: &Connection,
    run: &RunId,
    status: RunStatus,
    outcome: &RunOutcome,
) -> Result<(), StoreError> {
    stored::check_settles(run, status)?;
    let finished = conn
        .prepare_cached(
            "UPDATE runs SET status = ?2, output = ?3, error = ?4, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
        )?
        .execute(params![run.as_str(), status.as_str(), outcome.output, outcome.error])?;
    if finished == 0 {
        return Err(stored::run_not_found(run));
    }
    super::webhooks::enqueue(conn, run, status, outcome)
}

pub(crate) fn request_cancel(
    conn: &Connection,
    tenant: &TenantId,
    run: &RunId,
) -> Result<bool, StoreError> {
    let flagged = conn
        .prepare_cached(
            // A waiting run is queued again, so that a node drives it to its cancellation.
            "UPDATE runs SET cancel_requested = 1, status = CASE status WHEN 'waiting' THEN 'queued' ELSE status END
             WHERE id = ?1 AND tenant = ?2 AND status IN ('queued', 'running', 'waiting')",
        )?
        .execute(params![run.as_str(), tenant.as_str()])?;
    if flagged > 0 {
        return Ok(true);
    }
    let exists = conn
        .prepare_cached("SELECT 1 FROM runs WHERE id = ?1 AND tenant = ?2")?
        .exists(params![run.as_str(), tenant.as_str()])?;
    Ok(exists)
}

pub(crate) fn delete(
    conn: &Connection,
    tenant: &TenantId,
    run: &RunId,
) -> Result<bool, StoreError> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?1 AND tenant = ?2")?
        .query_row(params![run.as_str(), tenant.as_str()], |r| r.get(0))
        .optional()?;
    match status.as_deref() {
        None => Ok(false),
        Some(pending @ ("queued" | "running" | "waiting")) => {
            Err(stored::still_pending(run, pending))
        }
        Some(_) => {
            conn.prepare_cached("DELETE FROM runs WHERE id = ?1")?
                .execute([run.as_str()])?;
            Ok(true)
        }
    }
}

/// Clears `node`'s leases: its runs stay `running` and become claimable at once.
pub(crate) fn release_leases(conn: &Connection, node: &str) -> Result<u64, StoreError> {
    let released = conn
        .prepare_cached(
            "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = ?1 AND status = 'running'",
        )?
        .execute([node])?;
    Ok(released as u64)
}

/// A run's row read with `COLUMNS`, as stored.
pub(crate) fn stored(row: &Row<'_>) -> Result<StoredRun, StoreError> {
    Ok(StoredRun {
        id: row.get(0)?,
        tenant: row.get(1)?,
        session: row.get(2)?,
        input: row.get(3)?,
        status: row.get(4)?,
        created_at: row.get(5)?,
        output: row.get(6)?,
        error: row.get(7)?,
        cancel_requested: row.get(8)?,
        lease_owner: row.get(9)?,
        lease_until: row.get(10)?,
        options: row.get(11)?,
        input_seq: row.get(12)?,
        logged: row.get(13)?,
    })
}

/// Decodes a run (`StoredRun::into_record`).
pub(crate) fn from_row(row: &Row<'_>) -> Result<RunRecord, StoreError> {
    stored(row)?.into_record()
}
