//! Timers: stored within a session of their tenant, listed soonest first, found when due
//! across tenants, deleted with their session; and fired once per due time, the run queued in
//! the same write — also when two handles (nodes) race to fire the same one.

use std::sync::Arc;

use keel_core::{RunStatus, TenantId, TimerId};

use super::Subject;
use super::fixtures::{assert_not_found, at, new_session, note, queued_run, tenant, tick};
use crate::{
    AppendBatch, Schedule, Store, StoreError, TimerOwner, TimerRecord, TimerStart, TimerWrite,
};

fn timer(tenant: &TenantId, session: &keel_core::SessionId, next_at: i64) -> TimerRecord {
    TimerRecord {
        id: TimerId::generate(tick(), 7),
        tenant: tenant.clone(),
        owner: TimerOwner::Session(session.clone()),
        schedule: Schedule::Cron {
            expr: "*/5 * * * *".into(),
            timezone: "Europe/Paris".into(),
        },
        note: format!("wake up at {next_at}"),
        next_at: Some(at(next_at)),
        created_at: at(1_000),
        fired: 0,
        last_fired_at: None,
    }
}

/// Which of the session's timers are due at `now`.
async fn due(store: &Arc<dyn Store>, session: &keel_core::SessionId, now: i64) -> Vec<TimerId> {
    let due = store.due_timers(at(now), 100).await.unwrap();
    due.into_iter()
        .filter(|t| t.owner.session() == Some(session))
        .map(|t| t.id)
        .collect()
}

pub async fn timers_are_kept_per_session_and_found_when_due(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let session = new_session(&store, &tenant).await;
    let later = timer(&tenant, &session, 9_000);
    let sooner = timer(&tenant, &session, 5_000);
    for t in [&later, &sooner] {
        store.put_timer(t).await.unwrap();
    }
    assert!(matches!(
        store.put_timer(&sooner).await,
        Err(StoreError::AlreadyExists(_))
    ));
    // Only a session of the timer's own tenant takes it.
    let elsewhere = TimerRecord {
        tenant: other.clone(),
        ..timer(&other, &session, 1)
    };
    assert_not_found(
        store.put_timer(&elsewhere).await,
        "another tenant's session",
    );

    let listed = store.list_timers(&tenant, &session).await.unwrap();
    assert_eq!(
        listed,
        vec![sooner.clone(), later.clone()],
        "soonest first, as stored"
    );
    assert!(
        store
            .list_timers(&other, &session)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(due(&store, &session, 4_999).await.is_empty());
    assert_eq!(due(&store, &session, 5_000).await, vec![sooner.id.clone()]);
    assert_eq!(
        due(&store, &session, 10_000).await,
        vec![sooner.id.clone(), later.id.clone()]
    );

    assert!(
        !store.delete_timer(&other, &later.id).await.unwrap(),
        "another tenant's"
    );
    assert!(store.delete_timer(&tenant, &later.id).await.unwrap());
    assert_eq!(due(&store, &session, 10_000).await, vec![sooner.id.clone()]);
    // A deleted session takes its timers with it.
    assert!(store.delete_session(&tenant, &session).await.unwrap());
    assert!(due(&store, &session, 10_000).await.is_empty());
}

/// What an agent's `schedule_wakeup` / `cancel_wakeup` write: timers that commit with the
/// append that logs the tool's result, and roll back with it.
pub async fn an_append_sets_and_cancels_timers_with_its_events(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let first = timer(&tenant, &session, 5_000);
    let second = timer(&tenant, &session, 6_000);
    let with = |timers: Vec<TimerWrite>| AppendBatch {
        events: vec![note("tool result")],
        timers,
        ..AppendBatch::default()
    };
    let puts = vec![
        TimerWrite::Put(first.clone()),
        TimerWrite::Put(second.clone()),
    ];
    // A conflicting append writes no timer.
    assert!(matches!(
        store.append(&session, 0, with(puts.clone())).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(
        store
            .list_timers(&tenant, &session)
            .await
            .unwrap()
            .is_empty()
    );
    store.append(&session, 1, with(puts)).await.unwrap();
    let listed = store.list_timers(&tenant, &session).await.unwrap();
    assert_eq!(listed, [first.clone(), second.clone()]);
    // A deletion of the session's own timer, and of one it does not hold (nothing).
    let unknown = TimerId::generate(tick(), 8);
    let deletes = vec![
        TimerWrite::Delete(first.id.clone()),
        TimerWrite::Delete(unknown),
    ];
    store.append(&session, 2, with(deletes)).await.unwrap();
    let listed = store.list_timers(&tenant, &session).await.unwrap();
    assert_eq!(listed, [second.clone()]);
    // Another session's timer cannot ride on this session's append, nor delete one of its.
    let other = new_session(&store, &tenant).await;
    let foreign = timer(&tenant, &other, 7_000);
    assert!(matches!(
        store
            .append(&session, 3, with(vec![TimerWrite::Put(foreign)]))
            .await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.read_events(&session, 0, 10).await.unwrap().len(), 3);
    store
        .append(&other, 1, with(vec![TimerWrite::Delete(second.id.clone())]))
        .await
        .unwrap();
    assert_eq!(
        store.list_timers(&tenant, &session).await.unwrap(),
        [second]
    );
}

pub async fn firing_a_timer_queues_its_run_once_per_due_time(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let once = timer(&tenant, &session, 5_000);
    store.put_timer(&once).await.unwrap();

    let run = queued_run(&tenant, &session, 5_001);
    assert!(
        store
            .fire_timer(
                &once.id,
                at(5_000),
                Some(at(8_000)),
                &TimerStart::Run(run.clone())
            )
            .await
            .unwrap()
    );
    // The same due time again (another node, late): nothing happens.
    let again = queued_run(&tenant, &session, 5_002);
    assert!(
        !store
            .fire_timer(
                &once.id,
                at(5_000),
                Some(at(8_000)),
                &TimerStart::Run(again.clone())
            )
            .await
            .unwrap()
    );
    assert!(store.get_run(&tenant, &again.id).await.unwrap().is_none());

    let queued = store
        .get_run(&tenant, &run.id)
        .await
        .unwrap()
        .expect("the run was queued");
    assert_eq!(queued.status, RunStatus::Queued);
    let fired = &store.list_timers(&tenant, &session).await.unwrap()[0];
    assert_eq!((fired.next_at, fired.fired), (Some(at(8_000)), 1));
    assert_eq!(fired.last_fired_at, Some(run.created_at));

    // Its last time: done, no longer due, still listed.
    let last = queued_run(&tenant, &session, 8_001);
    assert!(
        store
            .fire_timer(&once.id, at(8_000), None, &TimerStart::Run(last.clone()))
            .await
            .unwrap()
    );
    let done = &store.list_timers(&tenant, &session).await.unwrap()[0];
    assert_eq!((done.next_at, done.fired), (None, 2));
    assert!(
        !store
            .due_timers(at(i64::MAX), 100)
            .await
            .unwrap()
            .iter()
            .any(|t| t.id == once.id)
    );
}

pub async fn nodes_racing_to_fire_a_due_timer_fire_it_once(subject: &Subject) {
    const ROUNDS: i64 = 10;
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    let session = new_session(&handles[0], &tenant).await;
    let racing = timer(&tenant, &session, 1_000);
    handles[0].put_timer(&racing).await.unwrap();
    for round in 0..ROUNDS {
        let due = at(1_000 + round);
        let fires = (0..4).map(|n| {
            let store = handles[n % 2].clone();
            let (id, run) = (racing.id.clone(), queued_run(&tenant, &session, 10 * round));
            tokio::spawn(async move {
                store
                    .fire_timer(
                        &id,
                        due,
                        Some(at(1_001 + round)),
                        &TimerStart::Run(run.clone()),
                    )
                    .await
            })
        });
        let mut fired = 0;
        for fire in fires.collect::<Vec<_>>() {
            fired += usize::from(fire.await.unwrap().unwrap());
        }
        assert_eq!(fired, 1, "round {round}: one of four fired");
    }
    let runs = handles[1].pending_runs(&tenant, &session).await.unwrap();
    assert_eq!(runs.len(), ROUNDS as usize, "one run per due time");
    assert_eq!(
        handles[1].list_timers(&tenant, &session).await.unwrap()[0].fired,
        ROUNDS as u64
    );
}

/// A timer whose stored schedule no longer decodes (edited with `run_sql`, behind the store's
/// back) is skipped by every reader of timers, so the others are still listed and fired, and
/// `unreadable_records` lists it.
pub async fn a_timer_that_cannot_be_decoded_never_stops_the_others(
    store: Arc<dyn Store>,
    run_sql: impl Fn(&str),
) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let (broken, fine) = (
        timer(&tenant, &session, 1_000),
        timer(&tenant, &session, 2_000),
    );
    for t in [&broken, &fine] {
        store.put_timer(t).await.unwrap();
    }
    run_sql(&format!(
        "UPDATE timers SET schedule = '{{\"kind\": \"sundial\"}}' WHERE id = '{}'",
        broken.id
    ));
    assert_eq!(due(&store, &session, 5_000).await, vec![fine.id.clone()]);
    let listed = store.list_timers(&tenant, &session).await.unwrap();
    assert_eq!(listed, vec![fine.clone()]);
    let run = queued_run(&tenant, &session, 2_001);
    assert!(
        store
            .fire_timer(&fine.id, at(2_000), None, &TimerStart::Run(run.clone()))
            .await
            .unwrap()
    );
    // An admin finds it listed, with its tenant.
    let listed = store.unreadable_records(100).await.unwrap();
    let found = listed
        .iter()
        .find(|r| r.kind == "timer" && r.id == broken.id.as_str())
        .unwrap_or_else(|| panic!("the damaged timer is listed: {listed:?}"));
    assert_eq!(found.tenant.as_deref(), Some(tenant.as_str()));
}
