//! A run submitted on the node that will drive it is queued already leased to that node: an
//! idle session's turn costs three commits (enqueue-and-claim, the intent, the reply with the
//! run's end), not four; a busy session's run still waits in the queue for its turn, and
//! `reject` names the run that holds the session.

use std::sync::Arc;
use std::time::Duration;

use keel_core::{Message, RunStatus, TenantId};
use keel_engine::{BusyPolicy, Engine, EngineConfig, EngineError};
use keel_models::providers::scripted::ScriptedConfig;
use keel_store::SqliteStore;

const NODE: &str = "node-a";

mod common;

async fn started_engine(
    dir: &tempfile::TempDir,
    first_token_latency: Duration,
) -> (Engine, Arc<SqliteStore>, TenantId, keel_core::SessionId) {
    let (engine, store, tenant) = node(dir, NODE, first_token_latency, LEASE).await;
    let session = common::session(&engine, &tenant).await;
    (engine, store, tenant, session)
}

/// Long enough that no heartbeat commits during a turn.
const LEASE: Duration = Duration::from_secs(600);

/// A started engine named `node_id` on the database in `dir`, with agent `a`.
async fn node(
    dir: &tempfile::TempDir,
    node_id: &str,
    first_token_latency: Duration,
    lease: Duration,
) -> (Engine, Arc<SqliteStore>, TenantId) {
    let models = common::scripted(ScriptedConfig {
        first_token_latency,
        ..ScriptedConfig::default()
    });
    let config = EngineConfig {
        node_id: node_id.into(),
        lease,
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let test = common::engine(dir, models, config, vec![], true).await;
    (test.engine, test.store, test.tenant)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sessions_turn_is_leased_at_enqueue_and_costs_three_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, store, tenant, session) = started_engine(&dir, Duration::ZERO).await;
    engine.wait_idle().await;
    for turn in 0..3 {
        let before = store.commits();
        let run = engine
            .submit(&tenant, &session, Message::user(format!("turn {turn}")))
            .await
            .unwrap();
        assert_eq!(run.status, RunStatus::Running, "leased when queued");
        assert_eq!(run.lease_owner.as_deref(), Some(NODE));
        let done = engine.wait_run(&tenant, &run.id).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
        assert_eq!(done.input.text_content(), format!("turn {turn}"));
        engine.wait_idle().await;
        assert_eq!(store.commits() - before, 3, "commits of turn {turn}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_sessions_run_waits_its_turn_and_reject_names_the_run_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    // A slow model keeps the first run going while the others arrive.
    let (engine, _store, tenant, session) = started_engine(&dir, Duration::from_millis(300)).await;
    let first = engine
        .submit(&tenant, &session, Message::user("first"))
        .await
        .unwrap();
    let second = engine
        .submit(&tenant, &session, Message::user("second"))
        .await
        .unwrap();
    assert_eq!(first.status, RunStatus::Running);
    assert_eq!(second.status, RunStatus::Queued, "behind the first");
    let refused = engine
        .submit_with(
            &tenant,
            &session,
            Message::user("third"),
            Default::default(),
            BusyPolicy::Reject,
        )
        .await;
    match refused {
        Err(EngineError::Busy { run, .. }) => assert_eq!(run, first.id),
        other => panic!("expected Busy, got {other:?}"),
    }
    for run in [&first, &second] {
        let done = engine.wait_run(&tenant, &run.id).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
    }
}

#[test]
fn a_run_leased_at_enqueue_by_a_node_that_dies_is_taken_over_when_its_lease_expires() {
    let dir = tempfile::tempdir().unwrap();
    // Node A leases the run at enqueue and is stuck in the model call when it dies: its
    // runtime, with every task of it (driver, heartbeats), is dropped.
    let node_a = tokio::runtime::Runtime::new().unwrap();
    let (tenant, session, run) = node_a.block_on(async {
        let (engine, _store, tenant) = node(
            &dir,
            "node-a",
            Duration::from_secs(3_600),
            Duration::from_secs(1),
        )
        .await;
        let session = engine
            .create_session(&tenant, "a", Default::default())
            .await
            .unwrap()
            .id;
        let run = engine
            .submit(&tenant, &session, Message::user("survive me"))
            .await
            .unwrap();
        assert_eq!(run.lease_owner.as_deref(), Some("node-a"));
        (tenant, session, run)
    });
    drop(node_a);
    // Node B on the same file takes it over once the lease has run out, and finishes it.
    let node_b = tokio::runtime::Runtime::new().unwrap();
    node_b.block_on(async {
        let (engine, _store, _) = node(&dir, "node-b", Duration::ZERO, LEASE).await;
        let done = engine.wait_run(&tenant, &run.id).await.unwrap();
        assert_eq!(done.status, RunStatus::Completed, "{:?}", done.error);
        assert_eq!(done.session, session);
        assert_eq!(done.input.text_content(), "survive me");
    });
}
