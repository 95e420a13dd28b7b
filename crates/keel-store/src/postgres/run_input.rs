//! Where a run's input is kept: once (as in `sqlite/run_input.rs`). In the run's row while it
//! waits; from its `run_started` on, in the session's log, the row keeping only that event's
//! seq. Reading it back, from either place, is `stored::StoredRun`'s.

use deadpool_postgres::GenericClient;
use keel_core::{EventBody, SessionId};

use super::statements;
use crate::stored::sql_bound;
use crate::{NewEvent, StoreError};

/// Whether `events` start a run, whose input `move_to_log` then moves.
pub(crate) fn starts_a_run(events: &[NewEvent]) -> bool {
    events
        .iter()
        .any(|e| matches!(e.body, EventBody::RunStarted { .. }))
}

/// Points each run whose `run_started` is among `events` (appended as seqs `after + 1 ..` of
/// `session`) at that event, and drops the row's copy of its input. A run started before
/// keeps the first: a log never starts one run twice.
pub(crate) async fn move_to_log(
    client: &impl GenericClient,
    session: &SessionId,
    after: u64,
    events: &[NewEvent],
) -> Result<(), StoreError> {
    for (seq, event) in (after + 1..).zip(events) {
        if let EventBody::RunStarted { run_id, .. } = &event.body {
            statements::execute(
                client,
                "UPDATE runs SET input = NULL, input_seq = $3
                 WHERE id = $1 AND session = $2 AND input_seq IS NULL",
                &[&run_id.as_str(), &session.as_str(), &sql_bound(seq)],
            )
            .await?;
        }
    }
    Ok(())
}
