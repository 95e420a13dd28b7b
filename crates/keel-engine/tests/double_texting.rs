//! Several inputs to one session at once: with `reject`, exactly one is accepted however the
//! submits interleave; with `enqueue`, all are, in order.

use keel_core::{Message, TenantId};
use keel_engine::{BusyPolicy, Engine, EngineConfig, EngineError, ModelRegistry};

mod common;

async fn engine(dir: &tempfile::TempDir) -> (Engine, TenantId, keel_core::SessionId) {
    // Not started: queued runs stay queued, so "busy" does not depend on timing.
    let test = common::engine(
        dir,
        ModelRegistry::new(),
        EngineConfig::default(),
        vec![],
        false,
    )
    .await;
    let session = common::session(&test.engine, &test.tenant).await;
    (test.engine, test.tenant, session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_rejects_let_exactly_one_input_through() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant, session) = engine(&dir).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (engine, tenant, session) = (engine.clone(), tenant.clone(), session.clone());
        tasks.push(tokio::spawn(async move {
            engine
                .submit_with(
                    &tenant,
                    &session,
                    Message::user(format!("m{i}")),
                    Default::default(),
                    BusyPolicy::Reject,
                )
                .await
        }));
    }
    let (mut accepted, mut busy) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => accepted += 1,
            Err(EngineError::Busy { .. }) => busy += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((accepted, busy), (1, 15));
}

#[tokio::test]
async fn enqueue_accepts_every_input() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, tenant, session) = engine(&dir).await;
    for i in 0..3 {
        engine
            .submit_with(
                &tenant,
                &session,
                Message::user(format!("m{i}")),
                Default::default(),
                BusyPolicy::Enqueue,
            )
            .await
            .unwrap();
    }
    let pending = engine
        .store()
        .pending_runs(&tenant, &session)
        .await
        .unwrap();
    assert_eq!(pending.len(), 3);
}
