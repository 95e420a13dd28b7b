//! Records the store keeps besides events, and its one error type.

use keel_core::{
    AgentId, Event, EventBody, Message, RunId, RunOptions, RunStatus, SessionId, SessionState,
    TenantId, TimerId, Timestamp,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: SessionId,
    pub tenant: TenantId,
    pub agent_id: AgentId,
    pub agent_name: String,
    pub agent_version: u32,
    pub created_at: Timestamp,
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The log's last seq as of the read (0 for an empty log).
    #[serde(default)]
    pub last_seq: u64,
}

/// A session moved out of this deployment (`Store::mark_exported`): when, and where to, when
/// the mover said. From then on the store takes no new events, runs or timers of it, and no
/// claim or timer firing touches it; it can still be read, exported again and deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExportMark {
    pub at: Timestamp,
    /// Where it went (a URL or a name), as the mover gave it.
    #[serde(default)]
    pub to: Option<String>,
}

impl std::fmt::Display for ExportMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}", self.at)?;
        match &self.to {
            Some(to) => write!(f, " to {to}"),
            None => Ok(()),
        }
    }
}

/// A stored record that cannot be decoded, as `Store::unreadable_records` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnreadableRecord {
    /// `agent`, `session`, `event`, `snapshot` or `run`.
    pub kind: String,
    /// The record's id as stored (`ses_…#12` for an event: session and seq).
    pub id: String,
    /// The owning tenant, when the row names one that can be read.
    pub tenant: Option<String>,
    /// Why it cannot be read.
    pub reason: String,
}

/// What a tenant holds, as `Store::tenant_counts` counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TenantCounts {
    pub sessions: u64,
    /// Agents by name (all versions of one name count once), archived ones included.
    pub agents: u64,
}

#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    pub agent_name: Option<String>,
    /// Exact matches on metadata keys.
    pub metadata: Vec<(String, serde_json::Value)>,
    /// Cursor: only sessions whose id sorts before this one.
    pub before: Option<SessionId>,
    /// The most sessions to return; 0 means no limit.
    pub limit: usize,
    /// `Some(true)`: only sessions with a queued or running run; `Some(false)`: only those without.
    pub busy: Option<bool>,
}

/// A tenant: the isolation boundary that owns keys, agents and sessions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub created_at: Timestamp,
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// Everything, including tenants and keys.
    Admin,
    /// Everything inside its own tenant.
    Tenant,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Admin => "admin",
            KeyScope::Tenant => "tenant",
        }
    }

    pub fn parse(s: &str) -> Option<KeyScope> {
        [KeyScope::Admin, KeyScope::Tenant]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// An API key as stored: its public prefix and a hash of its secret, never the secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The public part of the key, unique; it names the key in logs and admin calls.
    pub prefix: String,
    pub tenant: TenantId,
    pub scope: KeyScope,
    /// SHA-256 of the secret part (high-entropy random keys need no slow hash).
    pub secret_hash: Vec<u8>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub revoked_at: Option<Timestamp>,
}

/// An event to append: the store assigns its seq.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub at: Timestamp,
    pub body: EventBody,
}

/// A scratchpad write made in the same transaction as the events it goes with.
#[derive(Clone, Debug, PartialEq)]
pub struct ScratchpadWrite {
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppendBatch {
    pub events: Vec<NewEvent>,
    pub scratchpad: Vec<ScratchpadWrite>,
    /// Long-term memory records the agent saved with this step (`memory_save`), each of the
    /// appending session's tenant: committed with the tool's result, so a step performed again
    /// after a crash never saves one twice.
    pub memory: Vec<crate::MemoryRecord>,
    /// Marks a run finished in the same transaction: the log's end of a run and the queue's
    /// never disagree, and a turn costs one commit less. Also parks a run that waits for a
    /// person (`Waiting`) and queues it again when one decides (`Queued`), with the events
    /// that say so.
    pub finish_run: Option<RunFinish>,
    /// Timers the agent set or cancelled with this step (`schedule_wakeup`, `cancel_wakeup`):
    /// committed with the tool's result, so a step performed again after a crash never sets
    /// one twice.
    pub timers: Vec<TimerWrite>,
    /// Shared memory blocks the agent edited with this step, committed with the events that
    /// log the edits (a session's own blocks follow its `memory_block_edited` events).
    pub shared_blocks: Vec<crate::SharedBlockWrite>,
}

/// A change to the session's timers that commits with an append.
#[derive(Clone, Debug, PartialEq)]
pub enum TimerWrite {
    /// A new timer of the appending session (its `session` must be that session).
    Put(TimerRecord),
    /// Forgets the appending session's timer (nothing when it holds no such timer).
    Delete(TimerId),
}

/// A run's terminal status (or `Waiting` / `Queued`, see `AppendBatch::finish_run`) and
/// outcome, as `Store::finish_run` takes them.
#[derive(Clone, Debug, PartialEq)]
pub struct RunFinish {
    pub run: RunId,
    pub status: RunStatus,
    pub outcome: RunOutcome,
}

impl AppendBatch {
    pub fn events(events: Vec<NewEvent>) -> Self {
        AppendBatch {
            events,
            ..AppendBatch::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub seq: u64,
    pub state: SessionState,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LoadedSession {
    pub snapshot: Option<Snapshot>,
    /// Events after the snapshot (or from seq 1), ascending.
    pub tail: Vec<Event>,
}

/// When a timer fires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Once, at `at`.
    Once { at: Timestamp },
    /// At every slot of a 5-field cron expression, read in an IANA time zone.
    Cron { expr: String, timezone: String },
}

/// Whom a timer belongs to, which says what each of its firings starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerOwner {
    /// A run on this session (deleted with it, carried by its export).
    Session(SessionId),
    /// A new session of the tenant's agent of this name, at its version of the time, with one
    /// run (deleted when the agent is archived).
    Agent(String),
}

impl TimerOwner {
    /// The session, for a session's timer.
    pub fn session(&self) -> Option<&SessionId> {
        match self {
            TimerOwner::Session(session) => Some(session),
            TimerOwner::Agent(_) => None,
        }
    }

    /// The agent's name, for an agent's timer.
    pub fn agent(&self) -> Option<&str> {
        match self {
            TimerOwner::Session(_) => None,
            TimerOwner::Agent(name) => Some(name),
        }
    }
}

impl std::fmt::Display for TimerOwner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimerOwner::Session(session) => write!(f, "session {session}"),
            TimerOwner::Agent(name) => write!(f, "agent {name}"),
        }
    }
}

/// A timer of a session or an agent (`TimerOwner`): each time it fires, a run starts (on the
/// session, or on a new session of the agent) with `note` as its input. Fired by whichever
/// node sees it due first, exactly once per due time (`Store::fire_timer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub id: TimerId,
    pub tenant: TenantId,
    pub owner: TimerOwner,
    pub schedule: Schedule,
    /// What the run it starts is told (its input, with the time it was due).
    pub note: String,
    /// When it fires next; `None` once it has fired for the last time.
    pub next_at: Option<Timestamp>,
    pub created_at: Timestamp,
    /// How many times it fired, and when last.
    pub fired: u64,
    pub last_fired_at: Option<Timestamp>,
}

/// What firing a timer starts, written in the transaction that moves the timer on
/// (`Store::fire_timer`), so it is started once per due time.
#[derive(Clone, Debug, PartialEq)]
pub enum TimerStart {
    /// A run on the timer's session.
    Run(RunRecord),
    /// A new session (an agent's timer), as `Store::create_session` takes it, and its first
    /// run.
    Session {
        session: SessionRecord,
        first_events: Vec<NewEvent>,
        run: RunRecord,
    },
    /// Nothing: the due time passes without a start (the engine logs why, e.g. the tenant
    /// holds the most sessions it may) and is not counted as fired.
    Nothing,
}

impl TimerStart {
    /// The run it queues, if any.
    pub fn run(&self) -> Option<&RunRecord> {
        match self {
            TimerStart::Run(run) | TimerStart::Session { run, .. } => Some(run),
            TimerStart::Nothing => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub tenant: TenantId,
    pub session: SessionId,
    pub input: Message,
    /// Per-run overrides of the session's agent (model, instructions, caller's tools, ...).
    #[serde(default, skip_serializing_if = "RunOptions::is_default")]
    pub options: RunOptions,
    pub status: RunStatus,
    pub created_at: Timestamp,
    #[serde(default)]
    pub output: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cancel_requested: bool,
    /// The node holding the lease while `Running`.
    #[serde(default)]
    pub lease_owner: Option<String>,
    #[serde(default)]
    pub lease_until: Option<Timestamp>,
}

/// How `Store::enqueue_run_with` queues a run, decided in the same transaction as the insert.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Enqueue {
    /// Refuse the run when its session already has a queued or running one (the `reject` busy
    /// policy): exact across every handle on the storage, not only within one process.
    pub refuse_if_busy: bool,
    /// When the session has no queued or running run, hand the new run at once to this lease
    /// (the node that enqueues it drives it): `Running`, as `claim_runs` would leave it, with no
    /// claim commit of its own. A busy session's run is queued as usual.
    pub claim_if_idle: Option<Lease>,
}

/// A lease on a run: who drives it, and until when unless renewed.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub node: String,
    pub until: Timestamp,
}

/// What `Store::enqueue_run_with` did with a run.
#[derive(Clone, Debug, PartialEq)]
pub enum Enqueued {
    /// Queued: claimable at once.
    Queued,
    /// Queued and leased to `Enqueue::claim_if_idle`'s node: it is `Running` now.
    Claimed,
    /// Refused (`Enqueue::refuse_if_busy`): the session is busy with this run, its oldest
    /// queued or running one. Nothing was written.
    Busy(RunId),
}

/// Model usage totals of one tenant, API key and model over one UTC day. `Store::add_usage`
/// takes them as increments and adds them to what is stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UsageTotals {
    pub tenant: TenantId,
    /// The API key's public prefix (empty for calls made without a key).
    pub key_prefix: String,
    /// `provider/model` that served the calls.
    pub model: String,
    /// `YYYY-MM-DD` in UTC.
    pub day: String,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    /// From the model catalog's prices; calls of unlisted models add 0.
    pub cost_usd: f64,
}

/// Which usage totals `Store::usage` returns.
#[derive(Clone, Debug, Default)]
pub struct UsageQuery {
    /// Only days on or after this one (`YYYY-MM-DD`).
    pub since_day: Option<String>,
    /// Only this API key's.
    pub key_prefix: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunOutcome {
    pub output: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "append conflict on session {session}: expected last seq {expected}, but it is {actual}"
    )]
    Conflict {
        session: SessionId,
        expected: u64,
        actual: u64,
    },
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The session was moved out (`Store::mark_exported`): what would change it is refused.
    #[error(
        "session {session} was moved out of this keel ({mark}): it takes no new input, runs or \
         schedules here; go on with it where it was imported"
    )]
    Exported {
        session: SessionId,
        mark: ExportMark,
    },
    /// A move out was asked for while one of the session's runs is running.
    #[error(
        "session {session} is running run {run}: move it once the run waits for a person or \
         has ended (or cancel the run first)"
    )]
    Busy { session: SessionId, run: RunId },
    /// A write made from a version of a record that is not its version any more (a shared
    /// memory block another writer changed): read it again and redo the write.
    #[error("{0}")]
    Stale(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("event at seq {seq} of session {session} cannot be read: {source}")]
    Event {
        session: SessionId,
        seq: u64,
        source: keel_core::EventDecodeError,
    },
    /// The caller asked for something the store cannot do (a snapshot past the log's end, a
    /// non-terminal status to finish a run with): says which value and why.
    #[error("invalid store request: {0}")]
    Invalid(String),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Backend(String),
}

impl StoreError {
    /// Whether a stored record failed to decode (damaged, or written by a newer keel): trying
    /// again cannot help, unlike an unavailable or busy store.
    pub fn is_unreadable(&self) -> bool {
        matches!(self, StoreError::Corrupt(_) | StoreError::Event { .. })
    }
}
