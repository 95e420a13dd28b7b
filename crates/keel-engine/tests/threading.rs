//! Threads of turns (`Engine::continue_thread`): a turn after the session's latest run goes on
//! in that session; after an earlier run, or while another turn chained onto the same run is
//! still going, in a branch forked at the run's end; an unstored turn leaves no session behind.

use std::sync::Arc;
use std::time::Duration;

use keel_core::{Message, RunOptions, RunStatus, SessionId, TenantId};
use keel_engine::{Engine, EngineConfig, EngineError, Thread, ThreadError};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_store::RunRecord;

mod common;

async fn engine(dir: &tempfile::TempDir) -> (Engine, TenantId) {
    // `slow` holds a turn running long enough to find its session busy.
    let slow = ScriptedConfig {
        first_token_latency: Duration::from_secs(30),
        ..ScriptedConfig::default()
    };
    let models = common::scripted(ScriptedConfig::default())
        .with("slow", Arc::new(ScriptedClient::new(slow)));
    let config = EngineConfig {
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let test = common::engine(dir, models, config, vec![], true).await;
    (test.engine, test.tenant)
}

fn new_thread() -> Thread {
    Thread::New { agent: "a".into() }
}

/// Queues a turn and waits for it to end.
async fn turn(engine: &Engine, tenant: &TenantId, thread: Thread, text: &str) -> RunRecord {
    let queued = engine
        .continue_thread(
            tenant,
            thread,
            Message::user(text),
            RunOptions::default(),
            true,
        )
        .await
        .unwrap();
    assert!(queued.discard.is_none());
    let run = engine.wait_run(tenant, &queued.run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed);
    run
}

/// The user messages of a session's log, oldest first.
async fn user_texts(engine: &Engine, session: &SessionId) -> Vec<String> {
    engine
        .history(session, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, m)| m.role == keel_core::Role::User)
        .map(|(_, m)| m.text_content())
        .collect()
}

async fn sessions(engine: &Engine, tenant: &TenantId) -> u64 {
    engine.store().tenant_counts(tenant).await.unwrap().sessions
}

#[tokio::test]
async fn a_turn_after_the_latest_run_goes_on_in_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant) = engine(&dir).await;
    let first = turn(&engine, &tenant, new_thread(), "one").await;
    let second = turn(&engine, &tenant, Thread::After(first.id.clone()), "two").await;
    assert_eq!(second.session, first.session);
    assert_eq!(user_texts(&engine, &first.session).await, ["one", "two"]);
    assert_eq!(sessions(&engine, &tenant).await, 1);
}

#[tokio::test]
async fn a_turn_after_an_earlier_run_branches_at_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant) = engine(&dir).await;
    let first = turn(&engine, &tenant, new_thread(), "one").await;
    turn(&engine, &tenant, Thread::After(first.id.clone()), "two").await;
    let branched = turn(
        &engine,
        &tenant,
        Thread::After(first.id.clone()),
        "other two",
    )
    .await;
    assert_ne!(branched.session, first.session);
    assert_eq!(
        user_texts(&engine, &branched.session).await,
        ["one", "other two"]
    );
    // The original thread is as it was.
    assert_eq!(user_texts(&engine, &first.session).await, ["one", "two"]);
}

#[tokio::test]
async fn a_turn_chained_onto_a_run_another_turn_is_continuing_goes_to_a_branch() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant) = engine(&dir).await;
    let first = turn(&engine, &tenant, new_thread(), "one").await;
    // No more runs start: the next turn stays queued, so the session stays busy with it.
    engine.shutdown().await;
    let queue = |text: &str| {
        engine.continue_thread(
            &tenant,
            Thread::After(first.id.clone()),
            Message::user(text),
            RunOptions::default(),
            true,
        )
    };
    let two = queue("two").await.unwrap();
    assert_eq!(two.run.session, first.session);
    // "one" is still the session's latest run, but "two" holds the session: a branch.
    let beside = queue("also two").await.unwrap();
    assert_ne!(beside.run.session, first.session);
    assert_eq!(beside.run.input.text_content(), "also two");
    assert_eq!(user_texts(&engine, &beside.run.session).await, ["one"]);
    let pending = engine
        .store()
        .pending_runs(&tenant, &first.session)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, two.run.id);
}

#[tokio::test]
async fn a_turn_after_an_unfinished_run_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant) = engine(&dir).await;
    let slow = RunOptions {
        model: Some("slow/echo".into()),
        ..RunOptions::default()
    };
    let running = engine
        .continue_thread(&tenant, new_thread(), Message::user("one"), slow, true)
        .await
        .unwrap();
    let refused = engine
        .continue_thread(
            &tenant,
            Thread::After(running.run.id.clone()),
            Message::user("two"),
            RunOptions::default(),
            true,
        )
        .await;
    assert!(
        matches!(refused, Err(ThreadError::Unfinished { ref run, .. }) if *run == running.run.id),
        "{:?}",
        refused.err()
    );
    engine.cancel_run(&tenant, &running.run.id).await.unwrap();
}

#[tokio::test]
async fn unstored_turns_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant) = engine(&dir).await;
    let first = turn(&engine, &tenant, new_thread(), "one").await;
    let before = engine
        .store()
        .get_session(&tenant, &first.session)
        .await
        .unwrap()
        .unwrap();

    for thread in [new_thread(), Thread::After(first.id.clone())] {
        let queued = engine
            .continue_thread(
                &tenant,
                thread,
                Message::user("forget me"),
                RunOptions::default(),
                false,
            )
            .await
            .unwrap();
        let discard = queued
            .discard
            .expect("an unstored turn's session is thrown away");
        assert_ne!(discard, first.session);
        assert_eq!(queued.run.session, discard);
        let run = engine.wait_run(&tenant, &queued.run.id).await.unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        engine.discard(&tenant, &discard).await;
        assert!(matches!(
            engine.session_state(&tenant, &discard).await,
            Err(EngineError::NotFound { .. })
        ));
    }
    // A refused unstored turn leaves no throwaway session either.
    let refused = engine
        .continue_thread(
            &tenant,
            new_thread(),
            Message {
                role: keel_core::Role::User,
                parts: vec![],
            },
            RunOptions::default(),
            false,
        )
        .await;
    assert!(matches!(refused, Err(ThreadError::Input(_))));
    assert_eq!(sessions(&engine, &tenant).await, 1);
    // The thread the unstored turn continued is as it was.
    let after = engine
        .store()
        .get_session(&tenant, &first.session)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.last_seq, before.last_seq);
    assert_eq!(user_texts(&engine, &first.session).await, ["one"]);
}

#[tokio::test]
async fn unknown_runs_and_conversations_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant) = engine(&dir).await;
    let first = turn(&engine, &tenant, new_thread(), "one").await;
    let other = TenantId::generate(2, 2);
    for (tenant, thread) in [
        (&other, Thread::After(first.id.clone())),
        (&other, Thread::Conversation(first.session.clone())),
        (&tenant, Thread::After(keel_core::RunId::generate(1, 2))),
    ] {
        let refused = engine
            .continue_thread(
                tenant,
                thread,
                Message::user("x"),
                RunOptions::default(),
                true,
            )
            .await;
        assert!(
            matches!(refused, Err(ThreadError::NotFound { .. })),
            "{:?}",
            refused.err()
        );
    }
}
