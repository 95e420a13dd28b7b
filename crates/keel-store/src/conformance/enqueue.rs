//! Cases on conditional enqueues and on where a run's input is kept: `reject` is exact at the
//! store, even between two handles on one storage (two processes, two nodes); a run enqueued
//! already claimed is leased like a claimed one, and taken over when its node dies; a started
//! run's input reads back from the log.

use std::sync::Arc;

use keel_core::{EventBody, Message, RunStatus};

use super::Subject;
use super::fixtures::*;
use crate::{AppendBatch, Enqueue, Enqueued, Lease, NewEvent, RunRecord, Store};

const RACERS: usize = 24;

fn rejecting() -> Enqueue {
    Enqueue {
        refuse_if_busy: true,
        claim_if_idle: None,
    }
}

fn claiming(node: &str, until: i64) -> Enqueue {
    Enqueue {
        refuse_if_busy: false,
        claim_if_idle: Some(Lease {
            node: node.into(),
            until: at(until),
        }),
    }
}

pub async fn racing_rejecting_enqueues_on_two_handles_let_exactly_one_through(subject: &Subject) {
    let handles = [subject.store.clone(), subject.second_handle()];
    let tenant = tenant();
    let session = new_session(&handles[0], &tenant).await;
    let mut racers = Vec::new();
    for i in 0..RACERS {
        let store = handles[i % 2].clone();
        let run = queued_run(&tenant, &session, 1_000 + i as i64);
        racers.push(tokio::spawn(async move {
            let outcome = store.enqueue_run_with(&run, &rejecting()).await;
            (run.id, outcome.expect("a conditional enqueue"))
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for racer in racers {
        match racer.await.expect("the racer finishes") {
            (id, Enqueued::Queued) => accepted.push(id),
            (_, Enqueued::Busy(holder)) => refused.push(holder),
            (id, Enqueued::Claimed) => panic!("run {id} was claimed, but no lease was asked for"),
        }
    }
    assert_eq!(accepted.len(), 1, "exactly one gets through: {accepted:?}");
    assert!(
        refused.iter().all(|holder| holder == &accepted[0]),
        "every refusal names the run that got through: {refused:?}"
    );
    for store in &handles {
        let pending = store.pending_runs(&tenant, &session).await.unwrap();
        assert_eq!(ids(&pending), [&accepted[0]], "both handles see one run");
    }
}

pub async fn a_rejecting_enqueue_on_a_busy_session_names_its_run_and_writes_nothing(
    store: Arc<dyn Store>,
) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let first = queued_run(&tenant, &session, 1);
    let second = queued_run(&tenant, &session, 2);
    assert_eq!(
        store.enqueue_run_with(&first, &rejecting()).await.unwrap(),
        Enqueued::Queued
    );
    assert_eq!(
        store.enqueue_run_with(&second, &rejecting()).await.unwrap(),
        Enqueued::Busy(first.id.clone())
    );
    assert_eq!(store.get_run(&tenant, &second.id).await.unwrap(), None);
    // Busy while running too; idle again once it finished.
    store.claim_runs("node-a", at(10), 1_000, 10).await.unwrap();
    assert_eq!(
        store.enqueue_run_with(&second, &rejecting()).await.unwrap(),
        Enqueued::Busy(first.id.clone())
    );
    store
        .finish_run(&first.id, RunStatus::Completed, Default::default())
        .await
        .unwrap();
    assert_eq!(
        store.enqueue_run_with(&second, &rejecting()).await.unwrap(),
        Enqueued::Queued
    );
}

pub async fn a_run_enqueued_claimed_is_leased_and_taken_over_when_its_node_dies(
    store: Arc<dyn Store>,
) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let first = queued_run(&tenant, &session, 1);
    assert_eq!(
        store
            .enqueue_run_with(&first, &claiming("node-a", 2_000))
            .await
            .unwrap(),
        Enqueued::Claimed
    );
    let held = store.get_run(&tenant, &first.id).await.unwrap().unwrap();
    assert_eq!(
        (held.status, held.lease_owner.as_deref(), held.lease_until),
        (RunStatus::Running, Some("node-a"), Some(at(2_000)))
    );
    // The session is busy now: the next run is queued behind it, not leased.
    let second = queued_run(&tenant, &session, 2);
    assert_eq!(
        store
            .enqueue_run_with(&second, &claiming("node-a", 2_000))
            .await
            .unwrap(),
        Enqueued::Queued
    );
    assert_eq!(
        store
            .claim_runs("node-b", at(1_500), 1_000, 10)
            .await
            .unwrap(),
        [],
        "a live lease holds the session"
    );
    assert!(
        store
            .heartbeat(&first.id, "node-a", at(1_600), 1_000)
            .await
            .unwrap()
    );
    // node-a dies: once its lease runs out, node-b takes the run over, input and all.
    let taken = store
        .claim_runs("node-b", at(2_700), 1_000, 10)
        .await
        .unwrap();
    assert_eq!(ids(&taken), [&first.id]);
    assert_eq!(taken[0].input, first.input);
    assert_eq!(taken[0].lease_owner.as_deref(), Some("node-b"));
    assert!(
        !store
            .heartbeat(&first.id, "node-a", at(2_800), 1_000)
            .await
            .unwrap()
    );
}

/// A `run_started` for `run`, as the engine logs it.
fn run_started(run: &RunRecord) -> NewEvent {
    NewEvent {
        at: at(3_000),
        body: EventBody::RunStarted {
            run_id: run.id.clone(),
            input: run.input.clone(),
            options: Box::default(),
        },
    }
}

pub async fn a_started_runs_input_reads_back_from_the_log(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let mut run = queued_run(&tenant, &session, 1);
    run.input = Message::user("a long question, kept once");
    store
        .enqueue_run_with(&run, &claiming("node-a", 2_000))
        .await
        .unwrap();
    store
        .append(&session, 1, AppendBatch::events(vec![run_started(&run)]))
        .await
        .unwrap();
    let read = |store: Arc<dyn Store>| {
        let (tenant, session, id) = (tenant.clone(), session.clone(), run.id.clone());
        async move {
            (
                store.get_run(&tenant, &id).await.unwrap().unwrap().input,
                store.pending_runs(&tenant, &session).await.unwrap()[0]
                    .input
                    .clone(),
            )
        }
    };
    assert_eq!(
        read(store.clone()).await,
        (run.input.clone(), run.input.clone())
    );
    // Resumed by another node after its lease ran out, and once finished.
    let taken = store
        .claim_runs("node-b", at(2_500), 1_000, 10)
        .await
        .unwrap();
    assert_eq!(taken[0].input, run.input);
    store
        .finish_run(&run.id, RunStatus::Completed, Default::default())
        .await
        .unwrap();
    let done = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(done.input, run.input);
    // A later run_started of another run leaves this one's input where it is.
    let other = queued_run(&tenant, &session, 2);
    store.enqueue_run(&other).await.unwrap();
    store
        .append(&session, 2, AppendBatch::events(vec![run_started(&other)]))
        .await
        .unwrap();
    let both = [&run, &other].map(|r| r.id.clone());
    for (id, want) in both.iter().zip([&run.input, &other.input]) {
        let got = store.get_run(&tenant, id).await.unwrap().unwrap();
        assert_eq!(&got.input, want, "run {id}");
    }
}
