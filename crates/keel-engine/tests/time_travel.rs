//! Time travel over a session's log: the context shown at a seq is the request the model
//! received there; a fork copies a prefix that ends between runs and goes on from it; a
//! prefix that ends inside a run, or a seq outside the log, is refused saying which seqs work.

use std::sync::Arc;

use common::Recording;
use keel_core::{EventBody, Message, RunOptions, RunStatus, SessionId, TenantId};
use keel_engine::{BusyPolicy, Engine, EngineConfig, EngineError};

mod common;

async fn engine(dir: &tempfile::TempDir) -> (common::TestEngine, Arc<Recording>) {
    let recording = Arc::new(Recording::default());
    let models = recording.registry();
    let tools = keel_engine::tools::builtin_tools();
    let test = common::engine(dir, models, EngineConfig::default(), tools, true).await;
    (test, recording)
}

async fn turn(
    engine: &Engine,
    tenant: &TenantId,
    session: &SessionId,
    text: &str,
    options: RunOptions,
) {
    let run = engine
        .submit_with(
            tenant,
            session,
            Message::user(text),
            options,
            BusyPolicy::Reject,
        )
        .await
        .unwrap();
    let run = engine.wait_run(tenant, &run.id).await.unwrap();
    assert_eq!(run.status, RunStatus::Completed, "{:?}", run.error);
}

/// A new session with two finished turns.
async fn two_turns(engine: &Engine, tenant: &TenantId) -> SessionId {
    let session = common::session(engine, tenant).await;
    for text in ["first", "second"] {
        turn(engine, tenant, &session, text, RunOptions::default()).await;
    }
    session
}

/// The seqs of the session's `model_called` events, and of each run's end.
async fn seqs(engine: &Engine, session: &SessionId) -> (Vec<u64>, Vec<u64>) {
    let events = engine.store().read_events(session, 0, 1000).await.unwrap();
    let of = |pick: fn(&EventBody) -> bool| {
        events
            .iter()
            .filter(|e| pick(&e.body))
            .map(|e| e.seq)
            .collect()
    };
    (
        of(|b| matches!(b, EventBody::ModelCalled { .. })),
        of(|b| matches!(b, EventBody::RunCompleted { .. })),
    )
}

#[tokio::test]
async fn the_context_at_each_model_call_is_the_request_the_model_received() {
    let dir = tempfile::tempdir().unwrap();
    let (test, recording) = engine(&dir).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    let session = common::session(engine, tenant).await;
    turn(
        engine,
        tenant,
        &session,
        "hello there",
        RunOptions::default(),
    )
    .await;
    // A run with options of its own, and a tool call: two model calls in one run.
    let options = RunOptions {
        instructions: Some("answer briefly".into()),
        temperature: Some(0.5),
        ..RunOptions::default()
    };
    turn(
        engine,
        tenant,
        &session,
        r#"/call scratchpad_set {"key": "k", "value": "v"}"#,
        options,
    )
    .await;
    turn(engine, tenant, &session, "and again", RunOptions::default()).await;

    let (calls, _) = seqs(engine, &session).await;
    let received = recording.received.lock().unwrap().clone();
    assert_eq!(calls.len(), 4);
    assert_eq!(received.len(), calls.len());
    for (seq, request) in calls.iter().zip(&received) {
        let context = engine
            .session_context(tenant, &session, Some(*seq))
            .await
            .unwrap();
        assert_eq!(&context.request, request, "the context at seq {seq}");
        assert!(context.run_id.is_some());
        assert_eq!(context.served_by, "scripted/echo");
    }
    assert_eq!(received[1].system.as_deref(), Some("answer briefly"));
    assert_eq!(received[2].system.as_deref(), Some("answer briefly"));
    // Now: between runs, the whole transcript with the agent's own settings and no run.
    let now = engine
        .session_context(tenant, &session, None)
        .await
        .unwrap();
    assert_eq!(
        now.at_seq,
        engine
            .store()
            .read_events(&session, 0, 1000)
            .await
            .unwrap()
            .len() as u64
    );
    assert!(now.run_id.is_none());
    assert_eq!(now.request.system, None);
    assert_eq!(now.request.messages.len(), received[3].messages.len() + 1);
}

#[tokio::test]
async fn a_fork_copies_the_log_up_to_a_point_between_runs_and_goes_on_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let (test, _) = engine(&dir).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    let session = two_turns(engine, tenant).await;
    let (_, ends) = seqs(engine, &session).await;
    let source = engine.store().read_events(&session, 0, 1000).await.unwrap();

    for at in [Some(1), Some(ends[0]), None] {
        let mut metadata = serde_json::Map::new();
        metadata.insert("branch".into(), format!("{at:?}").into());
        let fork = engine
            .fork_session(tenant, &session, at, metadata.clone())
            .await
            .unwrap();
        let upto = at.unwrap_or(source.len() as u64);
        assert_eq!(fork.last_seq, upto);
        assert_eq!(fork.metadata, metadata);
        let copied = engine.store().read_events(&fork.id, 0, 1000).await.unwrap();
        assert_eq!(copied.len() as u64, upto);
        for (copy, original) in copied.iter().zip(&source).skip(1) {
            assert_eq!((copy.seq, &copy.body), (original.seq, &original.body));
        }
        // The branch goes on by itself; the source is left as it was.
        turn(
            engine,
            tenant,
            &fork.id,
            "on the branch",
            RunOptions::default(),
        )
        .await;
        let texts: Vec<String> = engine
            .history(&fork.id, upto, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, m)| m.text_content())
            .collect();
        assert_eq!(texts[0], "on the branch");
    }
    let after = engine.store().read_events(&session, 0, 1000).await.unwrap();
    assert_eq!(after.len(), source.len());
}

#[tokio::test]
async fn a_fork_inside_a_run_or_outside_the_log_is_refused_naming_the_seqs_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let (test, _) = engine(&dir).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    let session = two_turns(engine, tenant).await;
    let (calls, ends) = seqs(engine, &session).await;

    let refusal = |e: EngineError| match e {
        EngineError::Invalid(message) => message,
        other => panic!("expected Invalid, got {other:?}"),
    };
    let inside = engine
        .fork_session(tenant, &session, Some(calls[1]), Default::default())
        .await
        .unwrap_err();
    let message = refusal(inside);
    assert!(
        message.contains(&format!("fork at seq {} or {}", ends[0], ends[1])),
        "{message}"
    );
    for bad in [0, ends[1] + 1] {
        let message = refusal(
            engine
                .fork_session(tenant, &session, Some(bad), Default::default())
                .await
                .unwrap_err(),
        );
        assert!(message.contains(&ends[1].to_string()), "{message}");
        let message = refusal(
            engine
                .session_context(tenant, &session, Some(bad))
                .await
                .unwrap_err(),
        );
        assert!(message.contains(&ends[1].to_string()), "{message}");
    }
}

#[tokio::test]
async fn the_context_matches_what_was_sent_when_the_window_is_compacted_and_a_run_failed() {
    let dir = tempfile::tempdir().unwrap();
    let (test, recording) = engine(&dir).await;
    let (engine, tenant) = (&test.engine, &test.tenant);
    // A window of three messages, and no second attempt at a failed call.
    let agent = keel_core::AgentDef {
        id: keel_core::AgentId::generate(2, 2),
        name: "small".into(),
        version: 0,
        instructions: "be brief".into(),
        model: "scripted/echo".into(),
        tools: Vec::new(),
        limits: keel_core::Limits {
            context_messages: 3,
            max_model_attempts: 1,
            ..keel_core::Limits::default()
        },
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    };
    engine.put_agent(tenant, agent).await.unwrap();
    let session = engine
        .create_session(tenant, "small", Default::default())
        .await
        .unwrap()
        .id;
    for text in ["one", "two", "/fail on purpose", "three", "four"] {
        let run = engine
            .submit(tenant, &session, Message::user(text))
            .await
            .unwrap();
        engine.wait_run(tenant, &run.id).await.unwrap();
    }
    let (calls, _) = seqs(engine, &session).await;
    // The model's steps, without the requests that summarised the context.
    let received = recording.steps();
    assert_eq!(received.len(), calls.len());
    // The window was full: it was compacted, and the last call saw at most three messages of
    // the nine logged after the summary, none failed.
    let last = &received[received.len() - 1];
    assert!(last.messages.len() <= 3, "{:?}", last.messages);
    assert!(
        last.system
            .as_deref()
            .unwrap()
            .contains("<conversation_summary")
    );
    assert!(
        last.messages
            .iter()
            .all(|m| !m.text_content().contains("/fail"))
    );
    for (seq, request) in calls.iter().zip(&received) {
        let context = engine
            .session_context(tenant, &session, Some(*seq))
            .await
            .unwrap();
        assert_eq!(&context.request, request, "the context at seq {seq}");
    }
}
