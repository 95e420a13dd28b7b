//! How the values of a stored row become records, whichever backend read them: both backends
//! store the same encodings (`encode.rs`), so they decode them here, and say the same things
//! about a row that does not decode and about a request they refuse.

use std::str::FromStr;

use keel_core::{
    EventBody, IdError, Message, RunId, RunOptions, RunStatus, SessionId, SessionState, Timestamp,
};
use serde::de::DeserializeOwned;

use crate::{RunRecord, Snapshot, StoreError};

/// Parses an id read back from the database.
pub(crate) fn id<T: FromStr<Err = IdError>>(value: String) -> Result<T, StoreError> {
    value.parse().map_err(|e: IdError| {
        StoreError::Corrupt(format!(
            "a stored id is invalid ({e}): restore the database from a backup"
        ))
    })
}

/// Decodes the stored JSON `text`: the `what` (e.g. "metadata") of `owner` (e.g. a session id).
pub(crate) fn json<T: DeserializeOwned>(
    text: &str,
    what: &str,
    owner: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt_json(what, owner, e))
}

/// A stored JSON column that no longer decodes: the database was edited or damaged.
pub(crate) fn corrupt_json(what: &str, owner: &str, e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(format!(
        "the stored {what} of {owner} is not valid ({e}): restore the database from a backup"
    ))
}

/// A seq or cursor as SQL's signed integer; past `i64::MAX` means "beyond every seq".
pub(crate) fn sql_bound(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A row limit as SQL's signed integer.
pub(crate) fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A stored count or seq, which is never negative.
pub(crate) fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn session_not_found(session: &SessionId) -> StoreError {
    StoreError::NotFound {
        kind: "session",
        id: session.to_string(),
    }
}

pub(crate) fn agent_not_found(agent: &str) -> StoreError {
    StoreError::NotFound {
        kind: "agent",
        id: agent.to_string(),
    }
}

/// Runs are listed by status only while unfinished (queued, running, waiting): those are few,
/// where the finished ones of a tenant grow without bound.
pub(crate) fn unfinished(status: keel_core::RunStatus) -> Result<(), StoreError> {
    use keel_core::RunStatus::{Queued, Running, Waiting};
    match status {
        Queued | Running | Waiting => Ok(()),
        other => Err(StoreError::Invalid(format!(
            "runs are listed by status only while unfinished (queued, running, waiting), not {}",
            other.as_str()
        ))),
    }
}

/// A timer an append sets must be the appending session's own.
pub(crate) fn timer_of(session: &SessionId, timer: &crate::TimerRecord) -> Result<(), StoreError> {
    match timer.owner.session() == Some(session) {
        true => Ok(()),
        false => Err(StoreError::Invalid(format!(
            "timer {} belongs to {}, not to session {session}, which this append writes",
            timer.id, timer.owner
        ))),
    }
}

/// What a timer's firing writes must fit the timer: a run on its own session, or a new
/// session of its own agent (and tenant) whose first run it is.
pub(crate) fn start_of(
    timer: &crate::TimerRecord,
    start: &crate::TimerStart,
) -> Result<(), StoreError> {
    let fits = match (&timer.owner, start) {
        (crate::TimerOwner::Session(session), crate::TimerStart::Run(run)) => {
            &run.session == session && run.tenant == timer.tenant
        }
        (crate::TimerOwner::Agent(agent), crate::TimerStart::Session { session, run, .. }) => {
            &session.agent_name == agent
                && session.tenant == timer.tenant
                && run.session == session.id
                && run.tenant == timer.tenant
        }
        (_, crate::TimerStart::Nothing) => true,
        _ => false,
    };
    match fits {
        true => Ok(()),
        false => Err(StoreError::Invalid(format!(
            "what timer {} of {} starts must be a run on its session, or a new session of its agent with its run",
            timer.id, timer.owner
        ))),
    }
}

pub(crate) fn snapshot_past_end(session: &SessionId, seq: u64, last: u64) -> StoreError {
    StoreError::Invalid(format!(
        "a snapshot of session {session} at seq {seq} is past the end of its log (last seq {last}): \
         snapshot only state whose events are logged"
    ))
}

/// `Invalid` unless `status` is one a run's holder settles it in, letting go of its lease: an
/// end, `waiting` (for a person; nothing claims it) or `queued` (a waiting run resumed).
pub(crate) fn check_settles(run: &RunId, status: RunStatus) -> Result<(), StoreError> {
    match status.is_terminal() || matches!(status, RunStatus::Waiting | RunStatus::Queued) {
        true => Ok(()),
        false => Err(StoreError::Invalid(format!(
            "run {run} cannot finish as {:?}: use completed, failed, cancelled, waiting or queued",
            status.as_str()
        ))),
    }
}

pub(crate) fn run_not_found(run: &RunId) -> StoreError {
    StoreError::NotFound {
        kind: "run",
        id: run.to_string(),
    }
}

/// Why a queued or running run cannot be deleted.
pub(crate) fn still_pending(run: &RunId, status: &str) -> StoreError {
    StoreError::Invalid(format!(
        "run {run} is still {status}: cancel it or wait for it to finish before deleting it"
    ))
}

/// What an unreadable run is failed with when a claim meets it.
pub(crate) fn unreadable_run_error(id: &str, e: &StoreError) -> String {
    format!("run {id} cannot be read, so it cannot run: {e}; it was failed so the queue goes on")
}

/// A snapshot is derived data: one that no longer decodes (written by another keel version)
/// is skipped, and the session loads from its full log instead.
pub(crate) fn snapshot(session: &SessionId, seq: u64, state: &str) -> Option<Snapshot> {
    match serde_json::from_str::<SessionState>(state) {
        Ok(state) => Some(Snapshot { seq, state }),
        Err(error) => {
            tracing::warn!(%session, seq, %error, "ignoring a snapshot that does not decode; loading the full log");
            None
        }
    }
}

/// A run's row as stored, with the body of the `run_started` that holds its input once it
/// started (`input_seq`; see `sqlite/run_input.rs`).
pub(crate) struct StoredRun {
    pub id: String,
    pub tenant: String,
    pub session: String,
    pub input: Option<String>,
    pub status: String,
    pub created_at: i64,
    pub output: Option<String>,
    pub error: Option<String>,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub options: Option<String>,
    pub input_seq: Option<i64>,
    /// The body of the event at `input_seq`, when there is one.
    pub logged: Option<String>,
}

impl StoredRun {
    /// The run's input (`None` when its row lost it) and options.
    pub(crate) fn payload(&self) -> Result<(Option<Message>, RunOptions), StoreError> {
        let options = match &self.options {
            None => RunOptions::default(),
            Some(text) => json(text, "options", &self.id)?,
        };
        Ok((self.input()?, options))
    }

    /// The input from the row or from the log; `None` when neither holds it (a hand edit).
    fn input(&self) -> Result<Option<Message>, StoreError> {
        let Some(seq) = self.input_seq else {
            return self
                .input
                .as_deref()
                .map(|text| json(text, "input", &self.id))
                .transpose();
        };
        let lost = |why: String| {
            StoreError::Corrupt(format!(
                "the input of run {} is kept in event {seq} of its session, which {why}: restore the database from a backup",
                self.id
            ))
        };
        let body = self
            .logged
            .as_deref()
            .ok_or_else(|| lost("is missing".into()))?;
        match EventBody::decode(body) {
            Ok(EventBody::RunStarted { run_id, input, .. }) if run_id.as_str() == self.id => {
                Ok(Some(input))
            }
            Ok(other) => Err(lost(format!(
                "is a {} event, not its run_started",
                other.type_name()
            ))),
            Err(e) => Err(lost(format!("cannot be read ({e})"))),
        }
    }

    /// Decodes the run. The input and options of a finished run are no longer needed: when
    /// they do not decode, the record is read without them (an empty input, no options), so a
    /// run failed for being unreadable can still be looked up. A run whose row lost its input
    /// reads with an empty one, which the engine refuses to start.
    pub(crate) fn into_record(self) -> Result<RunRecord, StoreError> {
        let status = RunStatus::parse(&self.status).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "run {} has status {:?}, unknown to this keel: upgrade keel, or restore the database from a backup",
                self.id, self.status
            ))
        })?;
        let no_input = || Message {
            role: keel_core::Role::User,
            parts: Vec::new(),
        };
        let (input, options) = match self.payload() {
            Ok((input, options)) => (input.unwrap_or_else(no_input), options),
            Err(_) if status.is_terminal() => (no_input(), RunOptions::default()),
            Err(e) => return Err(e),
        };
        Ok(RunRecord {
            options,
            input,
            status,
            tenant: id(self.tenant)?,
            session: id(self.session)?,
            created_at: Timestamp::from_millis(self.created_at),
            output: self.output,
            error: self.error,
            cancel_requested: self.cancel_requested,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until.map(Timestamp::from_millis),
            id: id(self.id)?,
        })
    }

    /// Whether the run reads back whole, input and all, as `Store::unreadable_records` asks.
    pub(crate) fn check_whole(self) -> Result<(), StoreError> {
        let (input, _) = self.payload()?;
        if input.is_none() {
            return Err(StoreError::Corrupt(format!(
                "run {} has no stored input",
                self.id
            )));
        }
        self.into_record().map(drop)
    }
}

/// A timer's row as either backend reads it (`timer` decodes it).
pub(crate) struct StoredTimer {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) session: Option<String>,
    pub(crate) schedule: String,
    pub(crate) note: String,
    pub(crate) next_at: Option<i64>,
    pub(crate) created_at: i64,
    pub(crate) fired: i64,
    pub(crate) last_fired_at: Option<i64>,
    pub(crate) agent: Option<String>,
}

/// What a timer's row columns are, in the order `StoredTimer` reads them.
pub(crate) const TIMER_COLUMNS: &str =
    "id, tenant, session, schedule, note, next_at, created_at, fired, last_fired_at, agent";

/// The timers of `rows` that decode; one that does not is logged once and skipped
/// (`unreadable`), so it never stops the others from firing or being listed.
pub(crate) fn readable_timers(rows: Vec<StoredTimer>) -> Vec<crate::TimerRecord> {
    rows.into_iter()
        .filter_map(|row| {
            let id = row.id.clone();
            timer(row)
                .map_err(|e| crate::unreadable::isolated("timer", &id, &e))
                .ok()
        })
        .collect()
}

pub(crate) fn timer(row: StoredTimer) -> Result<crate::TimerRecord, StoreError> {
    let owner = match (row.session, row.agent) {
        (Some(session), None) => crate::TimerOwner::Session(id(session)?),
        (None, Some(agent)) => crate::TimerOwner::Agent(agent),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "timer {} must belong to one session or one agent: restore the database from a backup",
                row.id
            )));
        }
    };
    Ok(crate::TimerRecord {
        schedule: json(&row.schedule, "schedule", &row.id)?,
        id: id(row.id)?,
        tenant: id(row.tenant)?,
        owner,
        note: row.note,
        next_at: row.next_at.map(Timestamp::from_millis),
        created_at: Timestamp::from_millis(row.created_at),
        fired: count(row.fired),
        last_fired_at: row.last_fired_at.map(Timestamp::from_millis),
    })
}
