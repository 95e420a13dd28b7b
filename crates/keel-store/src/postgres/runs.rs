//! The run queue's rows: the conditional enqueue, reading runs, finishing them, cancel
//! requests and deleting finished ones. Claims and leases are `claims`.
//!
//! A conditional enqueue locks its session's row (`FOR NO KEY UPDATE`) before it looks at the
//! session's runs, as a claim does: enqueues and claims of one session take turns across every
//! node, so `reject` lets exactly one run through and a session is never driven twice.

use deadpool_postgres::{Client, GenericClient};
use keel_core::{RunId, RunStatus, SessionId, TenantId, Timestamp};
use tokio_postgres::Row;

use super::{error, log, signals, statements};
use crate::stored::{self, StoredRun, count};
use crate::{Enqueue, Enqueued, RunOutcome, RunRecord, StoreError, encode, unreadable};

/// What readers select: the row, then the seq of its `run_started` and that event's body, for
/// a run whose input the log holds (`run_input`).
pub(crate) const COLUMNS: &str = "id, tenant, session, input, status, created_at, output, error, \
    cancel_requested, lease_owner, lease_until, options, input_seq, \
    (SELECT body FROM events WHERE events.session = runs.session AND events.seq = runs.input_seq)";

/// Queues `run` as `how` says; the look at the session's runs and the insert are one transaction.
pub(crate) async fn enqueue(
    client: &mut Client,
    run: &RunRecord,
    how: &Enqueue,
) -> Result<Enqueued, StoreError> {
    let conditional = how.refuse_if_busy || how.claim_if_idle.is_some();
    let tx = client.transaction().await?;
    let owner = statements::query_opt(
        &tx,
        match conditional {
            true => "SELECT tenant, exported_at, exported_to FROM sessions WHERE id = $1 FOR NO KEY UPDATE",
            // Shared with other plain enqueues; waits for a move out holding the row.
            false => "SELECT tenant, exported_at, exported_to FROM sessions WHERE id = $1 FOR SHARE",
        },
        &[&run.session.as_str()],
    )
    .await?;
    let Some(owner) =
        owner.filter(|row| row.try_get::<_, &str>(0).ok() == Some(run.tenant.as_str()))
    else {
        return Err(stored::session_not_found(&run.session));
    };
    if let Some(mark) = super::sessions::read_mark(&owner, 1)? {
        return Err(StoreError::Exported {
            session: run.session.clone(),
            mark,
        });
    }
    let busy_with = match conditional {
        true => oldest_pending(&tx, &run.session).await?,
        false => None,
    };
    if how.refuse_if_busy
        && let Some(holder) = busy_with
    {
        return Ok(Enqueued::Busy(holder));
    }
    let lease = how.claim_if_idle.as_ref().filter(|_| busy_with.is_none());
    let (status, lease_owner, lease_until) = match lease {
        Some(lease) => (
            RunStatus::Running,
            Some(lease.node.as_str()),
            Some(lease.until),
        ),
        None => (run.status, run.lease_owner.as_deref(), run.lease_until),
    };
    insert(&tx, run, status, lease_owner, lease_until).await?;
    if lease.is_none() && busy_with.is_none() {
        // Claimable now, by any node: they hear so when this commits (`signals`).
        signals::notify_claimable(&tx).await?;
    }
    tx.commit().await?;
    Ok(match lease {
        Some(_) => Enqueued::Claimed,
        None => Enqueued::Queued,
    })
}

/// Inserts `run`'s row with `status` and lease (in the caller's transaction).
pub(crate) async fn insert(
    client: &impl GenericClient,
    run: &RunRecord,
    status: RunStatus,
    lease_owner: Option<&str>,
    lease_until: Option<Timestamp>,
) -> Result<(), StoreError> {
    let (input, options) = encode::run_input(run)?;
    statements::execute(
        client,
        "INSERT INTO runs (id, tenant, session, input, status, created_at, output, error,
             cancel_requested, lease_owner, lease_until, options)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        &[
            &run.id.as_str(),
            &run.tenant.as_str(),
            &run.session.as_str(),
            &input,
            &status.as_str(),
            &run.created_at.millis(),
            &run.output.as_deref().map(str::as_bytes),
            &run.error.as_deref().map(str::as_bytes),
            &run.cancel_requested,
            &lease_owner,
            &lease_until.map(Timestamp::millis),
            &options,
        ],
    )
    .await
    .map_err(|e| match error::is_duplicate(&e) {
        true => StoreError::AlreadyExists(format!("run {}", run.id)),
        false => e.into(),
    })?;
    Ok(())
}

/// The session's oldest queued, running or waiting run: the one a busy session is busy with.
async fn oldest_pending(
    client: &impl GenericClient,
    session: &SessionId,
) -> Result<Option<RunId>, StoreError> {
    statements::query_opt(
        client,
        "SELECT id FROM runs WHERE session = $1 AND status IN ('queued', 'running', 'waiting')
         ORDER BY created_at, id LIMIT 1",
        &[&session.as_str()],
    )
    .await?
    .map(|row| stored::id(row.try_get(0)?))
    .transpose()
}

pub(crate) async fn get(
    client: &Client,
    tenant: &TenantId,
    id: &RunId,
) -> Result<Option<RunRecord>, StoreError> {
    statements::query_opt(
        client,
        &format!("SELECT {COLUMNS} FROM runs WHERE id = $1 AND tenant = $2"),
        &[&id.as_str(), &tenant.as_str()],
    )
    .await?
    .map(|row| stored_run(&row)?.into_record())
    .transpose()
}

/// The session's queued and running runs, oldest first; one that cannot be read is skipped.
pub(crate) async fn with_status(
    client: &Client,
    tenant: &TenantId,
    status: RunStatus,
    before: Option<&RunId>,
    limit: usize,
) -> Result<Vec<RunRecord>, StoreError> {
    stored::unfinished(status)?;
    let rows = statements::query(
        client,
        &format!(
            "SELECT {COLUMNS} FROM runs WHERE status = $1 AND tenant = $2
             AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ),
        &[
            &status.as_str(),
            &tenant.as_str(),
            &before.map(RunId::as_str),
            &stored::sql_limit(limit),
        ],
    )
    .await?;
    let mut runs = Vec::new();
    for row in &rows {
        match stored_run(row).and_then(StoredRun::into_record) {
            Ok(run) => runs.push(run),
            Err(e) => unreadable::isolated("run", &super::row_id(row, 0), &e),
        }
    }
    Ok(runs)
}

pub(crate) async fn pending(
    client: &Client,
    tenant: &TenantId,
    session: &SessionId,
) -> Result<Vec<RunRecord>, StoreError> {
    let rows = statements::query(
        client,
        &format!(
            "SELECT {COLUMNS} FROM runs WHERE session = $1 AND tenant = $2
             AND status IN ('queued', 'running', 'waiting') ORDER BY created_at, id"
        ),
        &[&session.as_str(), &tenant.as_str()],
    )
    .await?;
    let mut runs = Vec::new();
    for row in &rows {
        match stored_run(row).and_then(StoredRun::into_record) {
            Ok(run) => runs.push(run),
            Err(e) => unreadable::isolated("run", &super::row_id(row, 0), &e),
        }
    }
    Ok(runs)
}

pub(crate) async fn count_by_status(client: &Client) -> Result<Vec<(RunStatus, u64)>, StoreError> {
    let rows = statements::query(
        client,
        "SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status",
        &[],
    )
    .await?;
    let mut counts = Vec::new();
    for row in rows {
        if let Some(status) = RunStatus::parse(row.try_get(0)?) {
            counts.push((status, count(row.try_get(1)?)));
        }
    }
    Ok(counts)
}

/// Marks the run finished and releases its lease, and writes the deliveries its outbound
/// webhooks get (`webhooks::enqueue`): call it in a transaction.
pub(crate) async fn finish(
    client: &impl GenericClient,
    run: &RunId,
    status: RunStatus,
    outcome: &RunOutcome,
) -> Result<(), StoreError> {
    stored::check_settles(run, status)?;
    // A run queued behind this one may be claimed now: other nodes hear so (`signals`).
    let finished = statements::query_one(
        client,
        "WITH done AS (UPDATE runs SET status = $2, output = $3, error = $4, lease_owner = NULL,
                           lease_until = NULL
                       WHERE id = $1 RETURNING session),
              next AS (SELECT 1 FROM runs, done
                       WHERE runs.session = done.session AND runs.status = 'queued' LIMIT 1)
         SELECT (SELECT COUNT(*) FROM done),
                (SELECT COUNT(*) FROM (SELECT pg_notify(current_setting('keel.channel'), 'q')
                                       FROM next) AS notified)",
        &[
            &run.as_str(),
            &status.as_str(),
            &outcome.output.as_deref().map(str::as_bytes),
            &outcome.error.as_deref().map(str::as_bytes),
        ],
    )
    .await?
    .try_get::<_, i64>(0)?;
    match finished {
        0 => Err(stored::run_not_found(run)),
        _ => super::webhooks::enqueue(client, run, status, outcome).await,
    }
}

pub(crate) async fn request_cancel(
    client: &Client,
    tenant: &TenantId,
    run: &RunId,
) -> Result<bool, StoreError> {
    // The node that drives the run hears of it at once (`signals`), not at its next heartbeat;
    // a waiting run is queued again, so that a node drives it to its cancellation.
    let flagged = statements::query_one(
        client,
        "WITH flagged AS (UPDATE runs SET cancel_requested = TRUE,
                              status = CASE status WHEN 'waiting' THEN 'queued' ELSE status END
                          WHERE id = $1 AND tenant = $2 AND status IN ('queued', 'running', 'waiting')
                          RETURNING id)
         SELECT COUNT(*) FROM (SELECT pg_notify(current_setting('keel.channel'), 'c ' || id)
                               FROM flagged) AS notified",
        &[&run.as_str(), &tenant.as_str()],
    )
    .await?
    .try_get::<_, i64>(0)?;
    if flagged > 0 {
        return Ok(true);
    }
    let exists = statements::query_opt(
        client,
        "SELECT 1 FROM runs WHERE id = $1 AND tenant = $2",
        &[&run.as_str(), &tenant.as_str()],
    )
    .await?;
    Ok(exists.is_some())
}

/// Deletes a finished run; `Invalid` while it is queued, running or waiting.
pub(crate) async fn delete(
    client: &Client,
    tenant: &TenantId,
    run: &RunId,
) -> Result<bool, StoreError> {
    let deleted = statements::execute(
        client,
        "DELETE FROM runs WHERE id = $1 AND tenant = $2 AND status NOT IN ('queued', 'running', 'waiting')",
        &[&run.as_str(), &tenant.as_str()],
    )
    .await?;
    if deleted > 0 {
        return Ok(true);
    }
    let status = statements::query_opt(
        client,
        "SELECT status FROM runs WHERE id = $1 AND tenant = $2",
        &[&run.as_str(), &tenant.as_str()],
    )
    .await?;
    match status {
        None => Ok(false),
        Some(row) => Err(stored::still_pending(run, row.try_get(0)?)),
    }
}

/// A run's row read with `COLUMNS`, as stored.
pub(crate) fn stored_run(row: &Row) -> Result<StoredRun, StoreError> {
    let id: String = row.try_get(0)?;
    let bytes = |index: usize, what: &str| -> Result<Option<String>, StoreError> {
        row.try_get::<_, Option<Vec<u8>>>(index)?
            .map(|bytes| log::text(bytes, || format!("{what} of run {id}")))
            .transpose()
    };
    Ok(StoredRun {
        output: bytes(6, "output")?,
        error: bytes(7, "error")?,
        tenant: row.try_get(1)?,
        session: row.try_get(2)?,
        input: row.try_get(3)?,
        status: row.try_get(4)?,
        created_at: row.try_get(5)?,
        cancel_requested: row.try_get(8)?,
        lease_owner: row.try_get(9)?,
        lease_until: row.try_get(10)?,
        options: row.try_get(11)?,
        input_seq: row.try_get(12)?,
        logged: row.try_get(13)?,
        id,
    })
}
