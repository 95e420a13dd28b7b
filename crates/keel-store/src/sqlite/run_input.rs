//! Where a run's input is kept: once. In the run's row while it waits; from its `run_started`
//! on, in the session's log, the row keeping only that event's seq (`input_seq`). A turn thus
//! stores its input once, however long it is. Rows written before keep their copy and read as
//! they always did. Reading the input back, from either place, is `stored::StoredRun`'s.

use keel_core::{EventBody, SessionId};
use rusqlite::{Connection, params};

use super::sql_bound;
use crate::{NewEvent, StoreError};

/// Points each run whose `run_started` is among `events` (appended as seqs `after + 1 ..` of
/// `session`) at that event, and drops the row's copy of its input. A run started before
/// keeps the first: a log never starts one run twice.
pub(crate) fn move_to_log(
    conn: &Connection,
    session: &SessionId,
    after: u64,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for (seq, event) in (after + 1..).zip(events) {
        if let EventBody::RunStarted { run_id, .. } = &event.body {
            conn.prepare_cached(
                "UPDATE runs SET input = NULL, input_seq = ?3
                 WHERE id = ?1 AND session = ?2 AND input_seq IS NULL",
            )?
            .execute(params![run_id.as_str(), session.as_str(), sql_bound(seq)])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use keel_core::{Message, RunId, RunStatus, TenantId, Timestamp};
    use rusqlite::OptionalExtension;

    use super::*;
    use crate::{AppendBatch, RunRecord, SessionRecord, SqliteOptions, SqliteStore, Store};

    #[tokio::test]
    async fn a_started_runs_input_is_kept_once_in_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keel.db");
        let store = SqliteStore::open(SqliteOptions::new(&path)).unwrap();
        let tenant = TenantId::generate(1, 1);
        let session = SessionRecord {
            id: SessionId::generate(1, 2),
            tenant: tenant.clone(),
            agent_id: keel_core::AgentId::generate(1, 3),
            agent_name: "a".into(),
            agent_version: 1,
            created_at: Timestamp::from_millis(1),
            metadata: Default::default(),
            last_seq: 0,
        };
        store.create_session(&session, Vec::new()).await.unwrap();
        let input = Message::user("x".repeat(10_000));
        let run = RunRecord {
            id: RunId::generate(2, 4),
            tenant: tenant.clone(),
            session: session.id.clone(),
            input: input.clone(),
            options: Default::default(),
            status: RunStatus::Queued,
            created_at: Timestamp::from_millis(2),
            output: None,
            error: None,
            cancel_requested: false,
            lease_owner: None,
            lease_until: None,
        };
        store.enqueue_run(&run).await.unwrap();
        let started = NewEvent {
            at: Timestamp::from_millis(3),
            body: EventBody::RunStarted {
                run_id: run.id.clone(),
                input: input.clone(),
                options: Box::default(),
            },
        };
        store
            .append(&session.id, 0, AppendBatch::events(vec![started]))
            .await
            .unwrap();

        let conn = rusqlite::Connection::open(&path).unwrap();
        let (kept, seq): (Option<String>, Option<i64>) = conn
            .query_row("SELECT input, input_seq FROM runs", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
            .unwrap()
            .unwrap();
        assert_eq!((kept, seq), (None, Some(1)), "the row keeps only the seq");
        assert_eq!(
            store
                .get_run(&tenant, &run.id)
                .await
                .unwrap()
                .unwrap()
                .input,
            input
        );
    }
}
