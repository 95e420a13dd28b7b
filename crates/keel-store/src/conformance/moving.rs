//! The case on moving a session out (`Store::mark_exported`): refused while one of its runs is
//! running; once marked, appends, enqueues and new timers are `Exported`, claims and timer
//! firings pass it by (other sessions go on), a second mark keeps the first, reads still
//! answer and the session can still be deleted.

use std::sync::Arc;

use keel_core::{RunStatus, TimerId};

use super::fixtures::*;
use crate::{
    AppendBatch, ExportMark, RunFinish, RunOutcome, Schedule, Store, StoreError, TimerRecord,
};

pub async fn a_moved_session_takes_nothing_more_and_is_passed_by(store: Arc<dyn Store>) {
    let (tenant, stranger) = (tenant(), tenant());
    let id = new_session(&store, &tenant).await;
    let timer = |n: i64| TimerRecord {
        id: TimerId::generate(tick(), 7),
        tenant: tenant.clone(),
        owner: crate::TimerOwner::Session(id.clone()),
        schedule: Schedule::Once { at: at(n) },
        note: "wake up".into(),
        next_at: Some(at(n)),
        created_at: at(1),
        fired: 0,
        last_fired_at: None,
    };
    let due = timer(5_000);
    store.put_timer(&due).await.unwrap();
    let run = queued_run(&tenant, &id, 10);
    store.enqueue_run(&run).await.unwrap();
    let claimed = store
        .claim_runs("node-a", at(20), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), [&run.id]);
    let mark = ExportMark {
        at: at(30),
        to: Some("https://keel-b.example".into()),
    };

    match store.mark_exported(&tenant, &id, &mark).await {
        Err(StoreError::Busy { run: busy, .. }) => assert_eq!(busy, run.id),
        other => panic!("a move while a run is running: {other:?}"),
    }
    assert_eq!(store.export_mark(&tenant, &id).await.unwrap(), None);
    let park = AppendBatch {
        events: vec![note("asks a person")],
        finish_run: Some(RunFinish {
            run: run.id.clone(),
            status: RunStatus::Waiting,
            outcome: RunOutcome::default(),
        }),
        ..AppendBatch::default()
    };
    store.append(&id, 1, park).await.unwrap();
    assert_not_found(
        store.mark_exported(&stranger, &id, &mark).await,
        "another tenant's move",
    );
    assert_eq!(
        store.mark_exported(&tenant, &id, &mark).await.unwrap(),
        mark
    );
    assert_eq!(
        store.export_mark(&tenant, &id).await.unwrap(),
        Some(mark.clone())
    );
    assert_eq!(store.export_mark(&stranger, &id).await.unwrap(), None);
    let later = ExportMark {
        at: at(40),
        to: None,
    };
    assert_eq!(
        store.mark_exported(&tenant, &id, &later).await.unwrap(),
        mark,
        "a second move keeps the first mark"
    );

    let exported = |result: Result<_, StoreError>, what: &str| match result {
        Err(StoreError::Exported {
            session,
            mark: held,
        }) => {
            assert_eq!((&session, &held), (&id, &mark), "{what}")
        }
        other => panic!("{what}: expected Exported, got {other:?}"),
    };
    exported(
        store.append(&id, 2, notes(["late".into()])).await.map(drop),
        "an append",
    );
    exported(
        store.enqueue_run(&queued_run(&tenant, &id, 50)).await,
        "an enqueue",
    );
    exported(store.put_timer(&timer(9_000)).await, "a new timer");

    // Nothing of it is claimed or fired, however late; another session goes on.
    let other = new_session(&store, &tenant).await;
    let theirs = queued_run(&tenant, &other, 60);
    store.enqueue_run(&theirs).await.unwrap();
    assert!(store.request_cancel(&tenant, &run.id).await.unwrap());
    let claimed = store
        .claim_runs("node-b", at(10_000_000), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), [&theirs.id], "only the other session's run");
    assert_eq!(store.due_timers(at(10_000_000), 10).await.unwrap(), []);
    let fired = store
        .fire_timer(
            &due.id,
            at(5_000),
            None,
            &crate::TimerStart::Run(queued_run(&tenant, &id, 70)),
        )
        .await
        .unwrap();
    assert!(!fired, "a moved session's timer does not fire");
    let timers = store.list_timers(&tenant, &id).await.unwrap();
    assert_eq!(timers, [due.clone()], "the timer is as it was");
    let pending = store.pending_runs(&tenant, &id).await.unwrap();
    assert_eq!(ids(&pending), [&run.id], "no run was added");

    // Reads answer; the session can still be deleted, its mark with it.
    assert_eq!(store.read_events(&id, 0, 10).await.unwrap().len(), 2);
    assert!(store.delete_session(&tenant, &id).await.unwrap());
    assert_eq!(store.export_mark(&tenant, &id).await.unwrap(), None);
}
