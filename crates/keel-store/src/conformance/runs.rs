//! Cases on the run queue: claims (oldest first, one run per session), leases that expire and
//! are taken over, heartbeats, finishing, cancel requests and releasing a node's leases.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use keel_core::RunStatus;

use super::Subject;
use super::fixtures::*;
use crate::{AppendBatch, RunFinish, RunOutcome, Store, StoreError};

pub async fn claims_never_hold_two_runs_of_one_session(store: Arc<dyn Store>) {
    let tenant = tenant();
    let (a, b) = (
        new_session(&store, &tenant).await,
        new_session(&store, &tenant).await,
    );
    let (a1, a2, b1) = (
        queued_run(&tenant, &a, 100),
        queued_run(&tenant, &a, 101),
        queued_run(&tenant, &b, 102),
    );
    for run in [&a1, &a2, &b1] {
        store.enqueue_run(run).await.unwrap();
    }
    assert_eq!(
        store.get_run(&tenant, &a1.id).await.unwrap(),
        Some(a1.clone())
    );

    let claimed = store
        .claim_runs("node-a", at(10_000), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        [&a1.id, &b1.id],
        "oldest first, one per session"
    );
    for run in &claimed {
        assert_eq!(run.status, RunStatus::Running);
        assert_eq!(run.lease_owner.as_deref(), Some("node-a"));
        assert_eq!(run.lease_until, Some(at(70_000)));
    }
    assert_eq!(
        store
            .claim_runs("node-b", at(10_001), 60_000, 10)
            .await
            .unwrap(),
        [],
        "a session with a live lease"
    );

    store
        .finish_run(
            &a1.id,
            RunStatus::Completed,
            RunOutcome {
                output: Some("done".into()),
                error: None,
            },
        )
        .await
        .unwrap();
    let next = store
        .claim_runs("node-b", at(10_002), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&next), [&a2.id]);

    let finished = store.get_run(&tenant, &a1.id).await.unwrap().unwrap();
    assert_eq!(
        (finished.status, finished.output.as_deref()),
        (RunStatus::Completed, Some("done"))
    );
    assert_eq!((finished.lease_owner, finished.lease_until), (None, None));

    let mut more = Vec::new();
    for created_at in [300, 200, 400] {
        let session = new_session(&store, &tenant).await;
        let run = queued_run(&tenant, &session, created_at);
        store.enqueue_run(&run).await.unwrap();
        more.push(run);
    }
    let limited = store
        .claim_runs("node-c", at(10_003), 60_000, 2)
        .await
        .unwrap();
    assert_eq!(
        ids(&limited),
        [&more[1].id, &more[0].id],
        "at most `limit`, oldest first"
    );
    assert_eq!(
        store
            .claim_runs("node-c", at(10_003), 60_000, 0)
            .await
            .unwrap(),
        []
    );
}

pub async fn expired_lease_is_taken_over_by_another_node(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let run = queued_run(&tenant, &session, 1);
    store.enqueue_run(&run).await.unwrap();

    assert_eq!(
        ids(&store
            .claim_runs("node-a", at(1_000), 1_000, 10)
            .await
            .unwrap()),
        [&run.id]
    );
    assert!(
        store
            .heartbeat(&run.id, "node-a", at(1_500), 1_000)
            .await
            .unwrap()
    );
    assert!(
        !store
            .heartbeat(&run.id, "node-b", at(1_500), 1_000)
            .await
            .unwrap(),
        "a node that holds no lease"
    );
    assert_eq!(
        store
            .claim_runs("node-b", at(2_200), 1_000, 10)
            .await
            .unwrap(),
        [],
        "the heartbeat extended the lease"
    );

    let taken = store
        .claim_runs("node-b", at(2_600), 1_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&taken), [&run.id]);
    assert_eq!(
        (taken[0].lease_owner.as_deref(), taken[0].lease_until),
        (Some("node-b"), Some(at(3_600)))
    );
    assert!(
        !store
            .heartbeat(&run.id, "node-a", at(2_700), 1_000)
            .await
            .unwrap(),
        "the old holder lost its lease"
    );
    assert!(
        store
            .heartbeat(&run.id, "node-b", at(2_700), 1_000)
            .await
            .unwrap()
    );
    let stored = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.lease_owner.as_deref(), stored.lease_until),
        (Some("node-b"), Some(at(3_700)))
    );
    assert!(
        !store
            .heartbeat(&run_id(), "node-b", at(2_700), 1_000)
            .await
            .unwrap(),
        "an unknown run"
    );
}

pub async fn runs_finish_and_take_cancel_requests(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let session = new_session(&store, &tenant).await;
    let run = queued_run(&tenant, &session, 1);
    store.enqueue_run(&run).await.unwrap();
    assert!(matches!(
        store.enqueue_run(&run).await,
        Err(StoreError::AlreadyExists(_))
    ));
    assert_not_found(
        store.enqueue_run(&queued_run(&other, &session, 2)).await,
        "a run in another tenant's session",
    );
    assert_eq!(store.get_run(&other, &run.id).await.unwrap(), None);

    assert!(
        !store.request_cancel(&other, &run.id).await.unwrap(),
        "another tenant cancelled a run"
    );
    assert!(
        !store
            .get_run(&tenant, &run.id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    assert!(store.request_cancel(&tenant, &run.id).await.unwrap());
    let asked = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (asked.status, asked.cancel_requested),
        (RunStatus::Queued, true)
    );
    let claimed = store.claim_runs("node-a", at(10), 1_000, 10).await.unwrap();
    assert!(
        claimed.len() == 1 && claimed[0].cancel_requested,
        "the holder sees the cancel request"
    );

    match store
        .finish_run(&run.id, RunStatus::Running, RunOutcome::default())
        .await
    {
        Err(StoreError::Invalid(message)) => assert!(message.contains("running"), "{message}"),
        other => panic!("finishing as running: expected Invalid, got {other:?}"),
    }
    let outcome = RunOutcome {
        output: None,
        error: Some("cancelled by the user".into()),
    };
    store
        .finish_run(&run.id, RunStatus::Cancelled, outcome)
        .await
        .unwrap();
    let done = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.error.as_deref()),
        (RunStatus::Cancelled, Some("cancelled by the user"))
    );
    assert_eq!((done.lease_owner, done.lease_until), (None, None));
    assert!(
        !store
            .heartbeat(&run.id, "node-a", at(20), 1_000)
            .await
            .unwrap(),
        "a finished run has no lease to extend"
    );
    assert!(
        store.request_cancel(&tenant, &run.id).await.unwrap(),
        "a finished run still exists"
    );
    assert_eq!(
        store
            .get_run(&tenant, &run.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        RunStatus::Cancelled
    );
    assert_eq!(
        store
            .claim_runs("node-a", at(5_000), 1_000, 10)
            .await
            .unwrap(),
        [],
        "a finished run is not claimed"
    );

    assert!(!store.request_cancel(&tenant, &run_id()).await.unwrap());
    assert_not_found(
        store
            .finish_run(&run_id(), RunStatus::Failed, RunOutcome::default())
            .await,
        "finish_run",
    );
}

pub async fn release_leases_makes_a_nodes_runs_claimable_now(store: Arc<dyn Store>) {
    let tenant = tenant();
    let mut runs = Vec::new();
    for created_at in [1, 2, 3] {
        let session = new_session(&store, &tenant).await;
        let run = queued_run(&tenant, &session, created_at);
        store.enqueue_run(&run).await.unwrap();
        runs.push(run.id);
    }
    assert_eq!(
        ids(&store
            .claim_runs("node-a", at(100), 60_000, 2)
            .await
            .unwrap()),
        [&runs[0], &runs[1]]
    );
    assert_eq!(
        ids(&store
            .claim_runs("node-b", at(100), 60_000, 2)
            .await
            .unwrap()),
        [&runs[2]]
    );

    assert_eq!(store.release_leases("node-a").await.unwrap(), 2);
    assert_eq!(store.release_leases("node-a").await.unwrap(), 0);
    assert_eq!(store.release_leases("node-z").await.unwrap(), 0);
    let retaken = store
        .claim_runs("node-c", at(101), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&retaken),
        [&runs[0], &runs[1]],
        "released runs are claimable before their leases would expire"
    );
    assert!(
        retaken
            .iter()
            .all(|r| r.status == RunStatus::Running && r.lease_owner.as_deref() == Some("node-c"))
    );
    assert!(
        !store
            .heartbeat(&runs[0], "node-a", at(102), 60_000)
            .await
            .unwrap()
    );
}

pub async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

pub async fn an_append_can_finish_its_run_in_the_same_transaction(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let run = queued_run(&tenant, &session, 1);
    store.enqueue_run(&run).await.unwrap();
    store.claim_runs("node-a", at(10), 1_000, 1).await.unwrap();
    let finish = RunFinish {
        run: run.id.clone(),
        status: RunStatus::Completed,
        outcome: RunOutcome {
            output: Some("done".into()),
            error: None,
        },
    };
    let stale = AppendBatch {
        events: vec![note("stale")],
        finish_run: Some(finish.clone()),
        ..AppendBatch::default()
    };
    assert!(matches!(
        store.append(&session, 0, stale).await,
        Err(StoreError::Conflict { .. })
    ));
    let still = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        still.status,
        RunStatus::Running,
        "a conflicting append must not finish the run"
    );
    let batch = AppendBatch {
        events: vec![note("the end")],
        finish_run: Some(finish),
        ..AppendBatch::default()
    };
    assert_eq!(store.append(&session, 1, batch).await.unwrap(), 2);
    let done = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.output.as_deref(), done.lease_owner),
        (RunStatus::Completed, Some("done"), None)
    );
}

pub async fn run_options_round_trip_and_finished_runs_can_be_deleted(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let mut run = queued_run(&tenant, &session, 100);
    run.options = keel_core::RunOptions {
        model: Some("openai/gpt-4o-mini".into()),
        instructions: Some("Answer in French.".into()),
        max_output_tokens: Some(64),
        tool_choice: Some(keel_core::ToolChoice::Required),
        context: vec![keel_core::Message::user("earlier")],
        ..Default::default()
    };
    store.enqueue_run(&run).await.unwrap();
    assert_eq!(
        store.get_run(&tenant, &run.id).await.unwrap(),
        Some(run.clone())
    );
    let claimed = store.claim_runs("n", at(1_000), 60_000, 10).await.unwrap();
    assert_eq!(
        claimed[0].options, run.options,
        "a claim carries the options"
    );

    let err = store.delete_run(&tenant, &run.id).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");
    assert!(
        !store
            .delete_run(&super::fixtures::tenant(), &run.id)
            .await
            .unwrap(),
        "another tenant's"
    );
    store
        .finish_run(&run.id, RunStatus::Completed, RunOutcome::default())
        .await
        .unwrap();
    assert!(store.delete_run(&tenant, &run.id).await.unwrap());
    assert_eq!(store.get_run(&tenant, &run.id).await.unwrap(), None);
    assert!(
        !store.delete_run(&tenant, &run.id).await.unwrap(),
        "already gone"
    );
    assert!(
        store
            .get_session(&tenant, &session)
            .await
            .unwrap()
            .is_some(),
        "the session stays"
    );
}

/// Nodes claiming at once from two handles on one storage: each session's oldest run is handed
/// out exactly once, and never with another run of its session.
pub async fn racing_claims_on_two_handles_hand_out_each_session_once(subject: &Subject) {
    const SESSIONS: usize = 12;
    const RUNS_PER_SESSION: i64 = 3;
    const CLAIMERS: usize = 8;
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    let mut oldest = HashMap::new();
    for s in 0..SESSIONS {
        let session = new_session(&handles[0], &tenant).await;
        for r in 0..RUNS_PER_SESSION {
            let run = queued_run(&tenant, &session, 100 * r + s as i64);
            handles[0].enqueue_run(&run).await.unwrap();
            oldest.entry(session.clone()).or_insert(run.id);
        }
    }
    let mut claimers = tokio::task::JoinSet::new();
    for c in 0..CLAIMERS {
        let store = handles[c % 2].clone();
        claimers.spawn(async move {
            store
                .claim_runs(&format!("node-{c}"), at(10_000), 60_000, 4)
                .await
                .expect("a claim")
        });
    }
    let mut claimed = Vec::new();
    while let Some(done) = claimers.join_next().await {
        claimed.extend(done.expect("a claimer finishes"));
    }
    // What the racers left (a session locked by another claimer is skipped, not waited for).
    claimed.extend(
        handles[0]
            .claim_runs("node-last", at(10_000), 60_000, SESSIONS)
            .await
            .unwrap(),
    );
    let mut sessions = HashSet::new();
    for run in &claimed {
        assert!(
            sessions.insert(run.session.clone()),
            "session {} was handed out twice: {:?}",
            run.session,
            ids(&claimed)
        );
        assert_eq!(
            Some(&run.id),
            oldest.get(&run.session),
            "the session's oldest run first"
        );
    }
    assert_eq!(sessions.len(), SESSIONS, "every session's oldest run, once");
}
