//! Claims and leases across nodes. A node claims runs for a while and heartbeats to keep
//! them; a lease that runs out (a dead node) makes the run claimable by another.
//!
//! A claim picks each claimable session's oldest claimable run and locks those sessions'
//! rows with `SKIP LOCKED` — a session another node is claiming, enqueueing to or appending
//! to right now is left for the next claim rather than waited for — then, in a statement that
//! sees every commit made before it held the locks, takes the runs that are still claimable.
//! Since every claim and conditional enqueue holds its session's lock, two nodes never hold
//! runs of one session at once.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{RunId, Timestamp};

use super::runs::{COLUMNS, stored_run};
use super::{signals, statements};
use crate::stored::{self, sql_limit};
use crate::{RunRecord, StoreError, unreadable};

/// A run is claimable when queued, or running under a lease that has run out (`$1`: now).
const CLAIMABLE: &str = "(runs.status = 'queued'
     OR (runs.status = 'running' AND (runs.lease_until IS NULL OR runs.lease_until <= $1)))
    AND NOT EXISTS (SELECT 1 FROM runs AS live
                    WHERE live.session = runs.session
                      AND (live.status = 'waiting' OR (live.status = 'running' AND live.lease_until > $1)))";

/// Oldest claimable runs first, at most one per session, none of a session with a live lease
/// or a run waiting for a person.
pub(crate) async fn claim(
    client: &mut Client,
    node: &str,
    now: Timestamp,
    lease_ms: i64,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let tx = client.transaction().await?;
    let chosen = statements::query(
        &tx,
        &format!(
            "WITH candidates AS (
                 SELECT DISTINCT ON (session) id, session, created_at FROM runs
                 WHERE {CLAIMABLE}
                 ORDER BY session, created_at, id)
             SELECT c.id FROM candidates AS c JOIN sessions AS s ON s.id = c.session
             WHERE s.exported_at IS NULL
             ORDER BY c.created_at, c.id LIMIT $2
             FOR NO KEY UPDATE OF s SKIP LOCKED"
        ),
        &[&now.millis(), &sql_limit(limit)],
    )
    .await?
    .iter()
    .map(|row| row.try_get::<_, String>(0))
    .collect::<Result<Vec<_>, _>>()?;
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let taken = statements::query(
        &tx,
        &format!(
            "UPDATE runs SET status = 'running', lease_owner = $3, lease_until = $4
             WHERE runs.id = ANY($2) AND {CLAIMABLE}
             RETURNING {COLUMNS}"
        ),
        &[
            &now.millis(),
            &chosen,
            &node,
            &now.millis().saturating_add(lease_ms),
        ],
    )
    .await?;
    let mut taken = taken
        .iter()
        .map(|row| Ok((super::row_id(row, 0), stored_run(row))))
        .collect::<Result<Vec<_>, StoreError>>()?;
    // In the order they were chosen: oldest first.
    taken.sort_by_key(|(id, _)| chosen.iter().position(|c| c == id));
    let mut claimed = Vec::with_capacity(taken.len());
    for (id, run) in taken {
        match run.and_then(stored::StoredRun::into_record) {
            Ok(run) => claimed.push(run),
            Err(e) => fail_unreadable(&tx, &id, &e).await?,
        }
    }
    tx.commit().await?;
    Ok(claimed)
}

/// Fails a claimed run whose record cannot be decoded, naming it and why, instead of handing
/// it out: it would fail every claim after this one, and every other run would wait for ever.
async fn fail_unreadable(
    client: &impl GenericClient,
    id: &str,
    e: &StoreError,
) -> Result<(), StoreError> {
    unreadable::isolated("run", id, e);
    let error = stored::unreadable_run_error(id, e);
    statements::execute(
        client,
        "UPDATE runs SET status = 'failed', error = $2, lease_owner = NULL, lease_until = NULL
         WHERE id = $1",
        &[&id, &error.as_bytes()],
    )
    .await?;
    Ok(())
}

/// Extends the lease; `false` when `node` no longer holds it.
pub(crate) async fn heartbeat(
    client: &Client,
    run: &RunId,
    node: &str,
    now: Timestamp,
    lease_ms: i64,
) -> Result<bool, StoreError> {
    let extended = statements::execute(
        client,
        "UPDATE runs SET lease_until = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        &[&run.as_str(), &node, &now.millis().saturating_add(lease_ms)],
    )
    .await?;
    Ok(extended > 0)
}

/// Clears `node`'s leases: its runs stay `running` and become claimable at once.
pub(crate) async fn release(client: &Client, node: &str) -> Result<u64, StoreError> {
    let released = statements::execute(
        client,
        "UPDATE runs SET lease_owner = NULL, lease_until = NULL
         WHERE lease_owner = $1 AND status = 'running'",
        &[&node],
    )
    .await?;
    if released > 0 {
        signals::notify_claimable(client).await?;
    }
    Ok(released)
}
