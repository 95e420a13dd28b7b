//! Timers: schedules of a session or of an agent that start runs. `add_timer` checks a
//! schedule and stores it with its first time; a loop on every node looks for due timers each
//! poll (and at the due time of any timer due before the next poll, so none fires a poll late)
//! and fires each through `Store::fire_timer`, which writes what it starts (a run on the
//! session; for an agent's timer, a new session of the agent at its current version, and its
//! run) and moves the timer on in one transaction, so a due time fires once however many nodes
//! see it. A cron timer's next time is the first slot after now: slots missed while no node
//! ran fire once, late, with the lateness in the run's input. An agent's timers are deleted
//! when it is archived; one whose agent cannot be found when due is deleted, saying so in the
//! log.

use std::sync::Arc;
use std::time::Duration;

use keel_core::{Message, RunStatus, SessionId, TenantId, TimerId, Timestamp};
use keel_store::{RunRecord, Schedule, Store, TimerOwner, TimerRecord, TimerStart};

use crate::{Engine, EngineError, Inner, clock, sessions, supervised};

/// The most timers one session may hold.
pub const MAX_TIMERS_PER_SESSION: usize = 1_000;
/// The most timers one agent may hold.
pub const MAX_TIMERS_PER_AGENT: usize = 1_000;
/// The longest note a timer may carry (it becomes a run's input).
pub const MAX_NOTE_BYTES: usize = 16 * 1024;
/// How far ahead a timer may be set: what can be stored and read back as an instant, with a
/// margin (a century).
pub const MAX_AHEAD: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
/// Due timers fired per look.
const FIRE_BATCH: usize = 64;
/// Lateness under this is not worth telling the agent.
const ON_TIME: i64 = 60_000;

/// When a new timer fires, as its maker says.
#[derive(Clone, Debug)]
pub enum When {
    /// Once, at an instant.
    At(Timestamp),
    /// Once, this long from now.
    After(Duration),
    /// At every slot of a 5-field cron pattern read in an IANA time zone.
    Cron { expr: String, timezone: String },
}

impl Engine {
    /// Adds a timer to the tenant's session or agent; `Invalid` for a pattern, zone or note
    /// keel cannot use (the message says which and why), `NotFound` for an unknown session or
    /// agent (or an archived one).
    pub async fn add_timer(
        &self,
        tenant: &TenantId,
        owner: &TimerOwner,
        when: When,
        note: String,
    ) -> Result<TimerRecord, EngineError> {
        self.require_owner(tenant, owner).await?;
        let store = self.inner.store.as_ref();
        room_for_one(store, tenant, owner).await?;
        let timer = new_timer(tenant, owner, when, note, clock::now())?;
        store.put_timer(&timer).await?;
        Ok(timer)
    }

    /// The session's or agent's timers, those still to fire first.
    pub async fn list_timers(
        &self,
        tenant: &TenantId,
        owner: &TimerOwner,
    ) -> Result<Vec<TimerRecord>, EngineError> {
        self.require_owner(tenant, owner).await?;
        Ok(held(self.inner.store.as_ref(), tenant, owner).await?)
    }

    /// Deletes one of the session's or agent's timers; `NotFound` for one it does not hold.
    pub async fn delete_timer(
        &self,
        tenant: &TenantId,
        owner: &TimerOwner,
        id: &TimerId,
    ) -> Result<(), EngineError> {
        let held = self.list_timers(tenant, owner).await?;
        let not_found = || EngineError::NotFound {
            kind: "timer",
            id: id.to_string(),
        };
        if !held.iter().any(|t| &t.id == id) {
            return Err(not_found());
        }
        match self.inner.store.delete_timer(tenant, id).await? {
            true => Ok(()),
            false => Err(not_found()),
        }
    }

    /// `NotFound` unless the tenant holds the session, or has defined the agent.
    async fn require_owner(
        &self,
        tenant: &TenantId,
        owner: &TimerOwner,
    ) -> Result<(), EngineError> {
        match owner {
            TimerOwner::Session(session) => self.require_session(tenant, session).await.map(drop),
            TimerOwner::Agent(name) => self.require_agent(tenant, name).await.map(drop),
        }
    }
}

/// The owner's timers as the store lists them.
async fn held(
    store: &dyn Store,
    tenant: &TenantId,
    owner: &TimerOwner,
) -> Result<Vec<TimerRecord>, keel_store::StoreError> {
    match owner {
        TimerOwner::Session(session) => store.list_timers(tenant, session).await,
        TimerOwner::Agent(name) => store.list_agent_timers(tenant, name).await,
    }
}

/// `Ok` while the owner holds fewer timers than it may (`MAX_TIMERS_PER_SESSION`,
/// `MAX_TIMERS_PER_AGENT`).
pub(crate) async fn room_for_one(
    store: &dyn Store,
    tenant: &TenantId,
    owner: &TimerOwner,
) -> Result<(), EngineError> {
    let most = match owner {
        TimerOwner::Session(_) => MAX_TIMERS_PER_SESSION,
        TimerOwner::Agent(_) => MAX_TIMERS_PER_AGENT,
    };
    match held(store, tenant, owner).await?.len() < most {
        true => Ok(()),
        false => Err(EngineError::LimitReached(format!(
            "{owner} holds {most} timers, the most it may: delete one first"
        ))),
    }
}

/// A new timer of the session or agent, due first at the first time `when` names after
/// `now`; `Invalid` for a schedule or note keel cannot use (the message says which and why).
pub(crate) fn new_timer(
    tenant: &TenantId,
    owner: &TimerOwner,
    when: When,
    note: String,
    now: Timestamp,
) -> Result<TimerRecord, EngineError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(EngineError::Invalid(format!(
            "a timer's note is at most {MAX_NOTE_BYTES} bytes, not {}",
            note.len()
        )));
    }
    let (schedule, first) = match when {
        When::At(at) => (Schedule::Once { at }, within_reach(at, now)?),
        When::After(after) => {
            if after > MAX_AHEAD {
                return Err(EngineError::Invalid(format!(
                    "a timer may be set at most {} seconds ahead, not {}",
                    MAX_AHEAD.as_secs(),
                    after.as_secs()
                )));
            }
            let at = Timestamp::from_millis(now.millis() + after.as_millis() as i64);
            (Schedule::Once { at }, at)
        }
        When::Cron { expr, timezone } => {
            let schedule = Schedule::Cron { expr, timezone };
            let first = next_slot(&schedule, now)?.ok_or_else(|| {
                EngineError::Invalid("the cron pattern never matches a time to come".into())
            })?;
            (schedule, first)
        }
    };
    Ok(TimerRecord {
        id: clock::new_timer_id(),
        tenant: tenant.clone(),
        owner: owner.clone(),
        schedule,
        note,
        next_at: Some(first),
        created_at: now,
        fired: 0,
        last_fired_at: None,
    })
}

/// `at` itself when a timer may be set then: not before 1970, at most `MAX_AHEAD` from now.
fn within_reach(at: Timestamp, now: Timestamp) -> Result<Timestamp, EngineError> {
    let latest = now.millis() + MAX_AHEAD.as_millis() as i64;
    match (0..=latest).contains(&at.millis()) {
        true => Ok(at),
        false => Err(EngineError::Invalid(format!(
            "a timer's instant must lie between 1970 and a century from now, not {at}"
        ))),
    }
}

/// An RFC 3339 instant with any offset (`2026-12-01T09:00:00+01:00`, `…Z`); `Invalid` naming it.
pub fn parse_instant(text: &str) -> Result<Timestamp, EngineError> {
    let instant: jiff::Timestamp = text.parse().map_err(|e| {
        EngineError::Invalid(format!(
            "{text:?} is not an RFC 3339 instant ({e}): write it as 2026-12-01T09:00:00Z or with an offset, +01:00"
        ))
    })?;
    Ok(Timestamp::from_millis(instant.as_millisecond()))
}

/// The first time after `after` that `schedule` fires; `None` for a one-off (it fires once).
/// `Invalid` for a pattern or zone keel cannot read.
pub fn next_slot(schedule: &Schedule, after: Timestamp) -> Result<Option<Timestamp>, EngineError> {
    let Schedule::Cron { expr, timezone } = schedule else {
        return Ok(None);
    };
    if expr.split_whitespace().count() != 5 {
        return Err(EngineError::Invalid(format!(
            "the cron pattern {expr:?} must have 5 fields: minute hour day-of-month month day-of-week"
        )));
    }
    let cron: croner::Cron = expr.parse().map_err(|e| {
        EngineError::Invalid(format!("the cron pattern {expr:?} is not valid: {e}"))
    })?;
    let zone = jiff::tz::TimeZone::get(timezone).map_err(|_| {
        EngineError::Invalid(format!(
            "{timezone:?} is not a time zone keel knows: give an IANA name such as \"Europe/Paris\" or \"UTC\""
        ))
    })?;
    let from = jiff::Timestamp::from_millisecond(after.millis())
        .map_err(|e| EngineError::Invalid(format!("{after:?} is out of range: {e}")))?
        .to_zoned(zone);
    match cron.find_next_occurrence(&from, false) {
        Ok(next) => Ok(Some(Timestamp::from_millis(
            next.timestamp().as_millisecond(),
        ))),
        Err(e) => Err(EngineError::Invalid(format!(
            "the cron pattern {expr:?} has no time to come: {e}"
        ))),
    }
}

/// Starts firing due timers on this node.
pub(crate) fn start(inner: &Arc<Inner>) {
    let inner = inner.clone();
    tokio::spawn(async move {
        supervised("firing timers", || fire_loop(inner.clone())).await;
    });
}

async fn fire_loop(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        if *shutdown.borrow() {
            return;
        }
        let pause = match fire_due(&inner).await {
            Ok(fired) => {
                if fired > 0 {
                    inner.wake.notify_one();
                }
                until_next(&inner, fired > 0).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "firing timers failed; retrying");
                inner.config.poll_interval
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// How long to wait before looking again: until the soonest timer due before the next poll,
/// so that it fires on time rather than up to a poll late; the poll at most. One due already
/// (it fell due while the last ones fired) is looked at again at once, but only after a look
/// that fired some: a timer this node cannot fire leaves it waiting a poll, not spinning.
async fn until_next(inner: &Inner, progressed: bool) -> Duration {
    let poll = inner.config.poll_interval;
    let now = clock::now();
    let horizon = Timestamp::from_millis(now.millis().saturating_add(poll.as_millis() as i64));
    match inner.store.due_timers(horizon, 1).await {
        Ok(soonest) => match soonest.first().and_then(|t| t.next_at) {
            Some(at) if at > now => Duration::from_millis((at.millis() - now.millis()) as u64),
            Some(_) if progressed => Duration::ZERO,
            _ => poll,
        },
        Err(_) => poll,
    }
}

/// Fires every timer due now; returns how many this node fired.
async fn fire_due(inner: &Inner) -> Result<usize, EngineError> {
    let mut fired = 0;
    loop {
        let now = clock::now();
        let due = inner.store.due_timers(now, FIRE_BATCH).await?;
        let full = due.len() == FIRE_BATCH;
        // Side by side: each firing is a write, and writes waiting together commit together
        // (SQLite's group commit, PostgreSQL's pool), so a burst of due timers is not fired
        // one commit after another.
        let firings = due.iter().map(|timer| fire(inner, timer, now));
        for result in futures::future::join_all(firings).await {
            if result? {
                fired += 1;
            }
        }
        if !full {
            return Ok(fired);
        }
    }
}

/// Fires `timer` for the time it is due; `false` when another node did first (or, for an
/// agent's timer, when nothing could be started: the log says why).
async fn fire(inner: &Inner, timer: &TimerRecord, now: Timestamp) -> Result<bool, EngineError> {
    let Some(due) = timer.next_at else {
        return Ok(false);
    };
    // A pattern that cannot be read any more (stored by a newer keel, say) stops the timer
    // rather than failing every look.
    let next = next_slot(&timer.schedule, now).unwrap_or_else(|e| {
        tracing::warn!(timer = %timer.id, error = %e, "a timer's schedule cannot be read; it fires no more");
        None
    });
    let input = Message::user(input(timer, due, now));
    let start = match &timer.owner {
        TimerOwner::Session(session) => TimerStart::Run(queued_run(timer, session, input, now)),
        TimerOwner::Agent(name) => match agent_start(inner, timer, name, input, now).await? {
            Some(start) => start,
            None => return Ok(false),
        },
    };
    let fired = inner.store.fire_timer(&timer.id, due, next, &start).await?;
    match (fired, start.run()) {
        (true, Some(run)) => {
            tracing::info!(timer = %timer.id, owner = %timer.owner, session = %run.session, run = %run.id, "a timer fired")
        }
        (true, None) => {
            tracing::warn!(timer = %timer.id, owner = %timer.owner, due = %due, "a timer's due time passed with nothing started")
        }
        (false, _) => {}
    }
    Ok(fired && start.run().is_some())
}

/// What an agent's timer starts: a new session of the agent's current version (its metadata
/// `schedule` naming the timer) and its run;
/// `Nothing` when the tenant holds the most sessions it may (the due time passes, logged).
/// `None` when the agent cannot be found: the timer is deleted, saying so, rather than tried
/// at every look.
async fn agent_start(
    inner: &Inner,
    timer: &TimerRecord,
    name: &str,
    input: Message,
    now: Timestamp,
) -> Result<Option<TimerStart>, EngineError> {
    let Some(agent) = inner.store.get_agent(&timer.tenant, name, None).await? else {
        tracing::warn!(timer = %timer.id, agent = name, tenant = %timer.tenant,
            "an agent's timer is due but its agent no longer exists: the timer is deleted");
        inner.store.delete_timer(&timer.tenant, &timer.id).await?;
        return Ok(None);
    };
    if let Err(e) = sessions::room_for_a_session(inner, &timer.tenant).await {
        tracing::warn!(timer = %timer.id, agent = name, error = %e,
            "an agent's timer is due but no session can be started; this due time passes");
        return Ok(Some(TimerStart::Nothing));
    }
    // The session says which schedule made it, as a webhook's names the webhook.
    let mut metadata = serde_json::Map::new();
    metadata.insert("schedule".into(), timer.id.to_string().into());
    let (session, first_events) = sessions::new_session(&timer.tenant, agent, metadata, now);
    let run = queued_run(timer, &session.id, input, now);
    Ok(Some(TimerStart::Session {
        session,
        first_events,
        run,
    }))
}

/// The run a firing queues on `session`.
fn queued_run(
    timer: &TimerRecord,
    session: &SessionId,
    input: Message,
    now: Timestamp,
) -> RunRecord {
    RunRecord {
        id: clock::new_run_id(),
        tenant: timer.tenant.clone(),
        session: session.clone(),
        input,
        options: Default::default(),
        status: RunStatus::Queued,
        created_at: now,
        output: None,
        error: None,
        cancel_requested: false,
        lease_owner: None,
        lease_until: None,
    }
}

/// What the run a timer starts is told: its note, which timer and when it was due, and how
/// late it fires when no node ran at the time.
fn input(timer: &TimerRecord, due: Timestamp, now: Timestamp) -> String {
    let late_ms = now.millis().saturating_sub(due.millis());
    let late = match late_ms >= ON_TIME {
        true => format!(", late by {}", lateness(late_ms)),
        false => String::new(),
    };
    format!("{}\n\n(timer {} due at {due}{late})", timer.note, timer.id)
}

/// `1h 2m 3s`.
fn lateness(ms: i64) -> String {
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc3339: &str) -> Timestamp {
        let t: jiff::Timestamp = rfc3339.parse().unwrap();
        Timestamp::from_millis(t.as_millisecond())
    }

    fn cron(expr: &str, timezone: &str) -> Schedule {
        Schedule::Cron {
            expr: expr.into(),
            timezone: timezone.into(),
        }
    }

    #[test]
    fn cron_slots_follow_the_pattern_in_its_zone() {
        let every_minute = cron("* * * * *", "UTC");
        let next = next_slot(&every_minute, at("2026-12-01T10:00:30Z")).unwrap();
        assert_eq!(next, Some(at("2026-12-01T10:01:00Z")));
        // From a slot itself: the next one, never the same again.
        let next = next_slot(&every_minute, at("2026-12-01T10:01:00Z")).unwrap();
        assert_eq!(next, Some(at("2026-12-01T10:02:00Z")));
        // 9:00 in Paris is 8:00 UTC in winter.
        let nine_in_paris = cron("0 9 * * *", "Europe/Paris");
        let next = next_slot(&nine_in_paris, at("2026-12-01T10:00:00Z")).unwrap();
        assert_eq!(next, Some(at("2026-12-02T08:00:00Z")));
        assert_eq!(
            next_slot(
                &Schedule::Once {
                    at: at("2026-12-01T10:00:00Z")
                },
                at("2026-12-01T09:00:00Z")
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn unreadable_patterns_and_zones_are_refused_naming_them() {
        let now = at("2026-12-01T10:00:00Z");
        for (expr, zone, says) in [
            ("* * * *", "UTC", "5 fields"),
            ("* * * * * *", "UTC", "5 fields"),
            ("61 * * * *", "UTC", "not valid"),
            ("* * * * *", "Mars/Olympus", "Mars/Olympus"),
        ] {
            match next_slot(&cron(expr, zone), now) {
                Err(EngineError::Invalid(message)) => assert!(message.contains(says), "{message}"),
                other => panic!("{expr} {zone}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_input_says_when_it_was_due_and_how_late() {
        let timer = TimerRecord {
            id: TimerId::generate(1, 1),
            tenant: TenantId::default_tenant(),
            owner: TimerOwner::Session(SessionId::generate(1, 1)),
            schedule: Schedule::Once {
                at: at("2026-12-01T10:00:00Z"),
            },
            note: "water the plants".into(),
            next_at: None,
            created_at: at("2026-12-01T09:00:00Z"),
            fired: 0,
            last_fired_at: None,
        };
        let due = at("2026-12-01T10:00:00Z");
        let on_time = input(&timer, due, at("2026-12-01T10:00:01Z"));
        assert!(
            on_time.starts_with("water the plants\n\n(timer tmr_"),
            "{on_time}"
        );
        assert!(!on_time.contains("late"), "{on_time}");
        let late = input(&timer, due, at("2026-12-01T11:02:03Z"));
        assert!(late.contains("late by 1h 2m 3s"), "{late}");
    }
}
