//! Cases on runs that wait for a person: parked by the append that logs the wait, they hold
//! their session (busy, nothing behind them claimed) without a lease, are claimed by no node,
//! cannot be deleted, and are queued again by the append that logs a decision or by a cancel.

use std::sync::Arc;

use keel_core::{RunStatus, SessionId, TenantId};

use super::fixtures::*;
use crate::{AppendBatch, RunFinish, RunOutcome, RunRecord, Store, StoreError};

fn settle(run: &keel_core::RunId, status: RunStatus, text: &str) -> AppendBatch {
    AppendBatch {
        events: vec![note(text)],
        finish_run: Some(RunFinish {
            run: run.clone(),
            status,
            outcome: RunOutcome::default(),
        }),
        ..AppendBatch::default()
    }
}

/// A run of a new session, claimed by node-a and parked by an append at seq 1.
async fn parked_run(store: &Arc<dyn Store>) -> (TenantId, SessionId, RunRecord) {
    let tenant = tenant();
    let session = new_session(store, &tenant).await;
    let run = queued_run(&tenant, &session, 1);
    store.enqueue_run(&run).await.unwrap();
    store.claim_runs("node-a", at(10), 1_000, 1).await.unwrap();
    let park = settle(&run.id, RunStatus::Waiting, "asks a person");
    store.append(&session, 1, park).await.unwrap();
    (tenant, session, run)
}

pub async fn a_waiting_run_holds_its_session_without_a_lease_until_queued_again(
    store: Arc<dyn Store>,
) {
    let (tenant, session, run) = parked_run(&store).await;
    let behind = queued_run(&tenant, &session, 2);
    store.enqueue_run(&behind).await.unwrap();
    let waiting = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (waiting.status, waiting.lease_owner, waiting.lease_until),
        (RunStatus::Waiting, None, None)
    );
    // Long after any lease would have run out, nothing of the session is handed out.
    let claimed = store
        .claim_runs("node-b", at(10_000_000), 1_000, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed,
        [],
        "a waiting run and what queues behind it stay put"
    );
    let pending = store.pending_runs(&tenant, &session).await.unwrap();
    assert_eq!(ids(&pending), [&run.id, &behind.id], "the session is busy");
    match store.delete_run(&tenant, &run.id).await {
        Err(StoreError::Invalid(message)) => assert!(message.contains("waiting"), "{message}"),
        other => panic!("deleting a waiting run: expected Invalid, got {other:?}"),
    }

    // A decision queues it again: claimable first, as the oldest run of its session.
    store
        .append(
            &session,
            2,
            settle(&run.id, RunStatus::Queued, "a person decided"),
        )
        .await
        .unwrap();
    let claimed = store
        .claim_runs("node-b", at(20_000_000), 1_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), [&run.id]);
    assert_eq!(claimed[0].lease_owner.as_deref(), Some("node-b"));
}

pub async fn cancelling_a_waiting_run_queues_it_to_be_driven_to_its_end(store: Arc<dyn Store>) {
    let (tenant, _, run) = parked_run(&store).await;
    assert!(store.request_cancel(&tenant, &run.id).await.unwrap());
    let asked = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (asked.status, asked.cancel_requested),
        (RunStatus::Queued, true)
    );
    let claimed = store.claim_runs("node-a", at(20), 1_000, 1).await.unwrap();
    assert!(claimed.len() == 1 && claimed[0].cancel_requested);
}

/// What `GET /v1/runs?status=waiting` lists: a tenant's unfinished runs of one status, newest
/// first, paged by id, never another tenant's; finished statuses are not listed this way.
pub async fn unfinished_runs_are_listed_by_status_newest_first_within_their_tenant(
    store: Arc<dyn Store>,
) {
    let tenant = tenant();
    let mut waiting = Vec::new();
    for i in 0..3 {
        let session = new_session(&store, &tenant).await;
        let run = queued_run(&tenant, &session, 1 + i);
        store.enqueue_run(&run).await.unwrap();
        store.claim_runs("node-a", at(10), 1_000, 10).await.unwrap();
        let park = settle(&run.id, RunStatus::Waiting, "asks a person");
        store.append(&session, 1, park).await.unwrap();
        waiting.push(run.id);
    }
    let session = new_session(&store, &tenant).await;
    let queued = queued_run(&tenant, &session, 9);
    store.enqueue_run(&queued).await.unwrap();
    waiting.reverse();

    let list = |status, before: Option<keel_core::RunId>, limit| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move {
            let runs = store
                .runs_with_status(&tenant, status, before.as_ref(), limit)
                .await
                .unwrap();
            runs.into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(RunStatus::Waiting, None, 10).await, waiting);
    let page = list(RunStatus::Waiting, None, 2).await;
    assert_eq!(page, waiting[..2]);
    let rest = list(RunStatus::Waiting, Some(page[1].clone()), 2).await;
    assert_eq!(rest, waiting[2..]);
    assert_eq!(list(RunStatus::Queued, None, 10).await, [queued.id]);
    let elsewhere = store
        .runs_with_status(&super::fixtures::tenant(), RunStatus::Waiting, None, 10)
        .await
        .unwrap();
    assert!(elsewhere.is_empty(), "{elsewhere:?}");
    match store
        .runs_with_status(&tenant, RunStatus::Completed, None, 10)
        .await
    {
        Err(StoreError::Invalid(message)) => assert!(message.contains("unfinished"), "{message}"),
        other => panic!("listing completed runs: expected Invalid, got {other:?}"),
    }
}
