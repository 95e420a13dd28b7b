//! Human approval through real runs: calls of a tool that requires approval (and `ask_human`)
//! make the run wait with no lease; the wait survives the engine going away; each decision
//! reaches its own call (approved, approved with edited arguments, rejected, answered), the
//! run goes on and finishes; another tenant cannot see or resume it.

use keel_core::{Decision, EventBody, Message, RunStatus, SessionId, TenantId, ToolDef, ToolKind};
use keel_engine::{CallDecision, EngineConfig, EngineError};
use keel_models::providers::scripted::ScriptedConfig;
use keel_store::{RunRecord, Store};

mod common;

fn tool(name: &str, require_approval: bool) -> ToolDef {
    ToolDef {
        name: name.into(),
        description: String::new(),
        parameters: serde_json::Value::Null,
        strict: None,
        require_approval: keel_core::ApprovalRule::Every(require_approval),
        kind: ToolKind::Builtin,
    }
}

fn approve(call_id: &str, arguments: Option<serde_json::Value>) -> CallDecision {
    CallDecision {
        call_id: call_id.into(),
        decision: Decision::Approve { arguments },
    }
}

/// A new session of agent `a` and its run on `input`, once it waits for a person.
async fn waiting_run(test: &common::TestEngine, input: &str) -> (SessionId, RunRecord) {
    let session = common::session(&test.engine, &test.tenant).await;
    let run = test
        .engine
        .submit(&test.tenant, &session, Message::user(input))
        .await
        .unwrap();
    let waiting = test.engine.wait_run(&test.tenant, &run.id).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting, "{waiting:?}");
    (session, waiting)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_approvals_wait_across_a_restart_and_each_reaches_its_own_call() {
    let dir = tempfile::tempdir().unwrap();
    // `scratchpad_set` needs approval: each call's stored key shows which arguments ran.
    let tools = vec![tool("scratchpad_set", true), tool("ask_human", false)];
    let first = common::engine(
        &dir,
        common::scripted(ScriptedConfig::default()),
        EngineConfig::default(),
        tools.clone(),
        true,
    )
    .await;
    let (session, waiting) = waiting_run(
        &first,
        "/call scratchpad_set {\"key\": \"a\", \"value\": \"1\"}\n\
         /call scratchpad_set {\"key\": \"b\", \"value\": \"2\"}\n\
         /call scratchpad_set {\"key\": \"c\", \"value\": \"3\"}\n\
         /call ask_human {\"question\": \"which colour?\"}",
    )
    .await;
    let run = waiting.clone();
    assert_eq!((waiting.lease_owner, waiting.lease_until), (None, None));
    let pending = first
        .engine
        .pending_approvals(&first.tenant, &run.id)
        .await
        .unwrap();
    let ids: Vec<String> = pending.iter().map(|c| c.call_id.clone()).collect();
    assert_eq!(pending.len(), 4, "{pending:?}");
    assert_eq!(pending[3].name, "ask_human");

    // Another tenant sees nothing to resume.
    let other = TenantId::generate(5, 5);
    let refused = first
        .engine
        .resume_run(&other, &run.id, vec![approve(&ids[0], None)], None)
        .await;
    assert!(
        matches!(refused, Err(EngineError::NotFound { .. })),
        "{refused:?}"
    );

    // The engine goes away while the run waits; a new one over the same file finds it waiting.
    first.engine.shutdown().await;
    drop(first);
    let second = common::engine(
        &dir,
        common::scripted(ScriptedConfig::default()),
        EngineConfig::default(),
        tools,
        true,
    )
    .await;
    let engine = &second.engine;
    let tenant = &second.tenant;
    assert_eq!(
        engine.get_run(tenant, &run.id).await.unwrap().status,
        RunStatus::Waiting
    );

    // A decision that does not fit its call is refused, naming it; nothing is logged.
    let wrong = engine
        .resume_run(tenant, &run.id, vec![approve(&ids[3], None)], None)
        .await;
    assert!(
        matches!(&wrong, Err(EngineError::Invalid(m)) if m.contains("answer")),
        "{wrong:?}"
    );
    let unknown = engine
        .resume_run(tenant, &run.id, vec![approve("call_nope", None)], None)
        .await;
    assert!(
        matches!(&unknown, Err(EngineError::Invalid(m)) if m.contains("call_nope")),
        "{unknown:?}"
    );

    // Decided in two goes, out of order: the run waits until the last decision.
    let partly = engine
        .resume_run(
            tenant,
            &run.id,
            vec![
                approve(
                    &ids[1],
                    Some(serde_json::json!({"key": "b-edited", "value": "22"})),
                ),
                CallDecision {
                    call_id: ids[2].clone(),
                    decision: Decision::Reject {
                        reason: "not c".into(),
                    },
                },
            ],
            Some("key_test".into()),
        )
        .await
        .unwrap();
    assert_eq!(partly.status, RunStatus::Waiting);
    let resumed = engine
        .resume_run(
            tenant,
            &run.id,
            vec![
                CallDecision {
                    call_id: ids[3].clone(),
                    decision: Decision::Answer {
                        answer: "blue".into(),
                    },
                },
                approve(&ids[0], None),
            ],
            Some("key_test".into()),
        )
        .await
        .unwrap();
    // Queued again, and perhaps already claimed by the time the answer is read.
    assert!(
        matches!(resumed.status, RunStatus::Queued | RunStatus::Running),
        "{resumed:?}"
    );
    let ended = engine.wait_run(tenant, &run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed, "{ended:?}");

    let events = engine.run_events(&ended).await.unwrap();
    let result = |id: &str| {
        events
            .iter()
            .find_map(|e| match &e.body {
                EventBody::ToolReturned {
                    call_id,
                    content,
                    is_error,
                    ..
                } if call_id == id => Some((content.clone(), *is_error)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(result(&ids[0]), ("stored a".to_string(), false));
    assert_eq!(result(&ids[1]), ("stored b-edited".to_string(), false));
    assert_eq!(
        result(&ids[2]),
        ("a person rejected this call: not c".to_string(), true)
    );
    assert_eq!(result(&ids[3]), ("blue".to_string(), false));
    // Who decided is in the journal, and the rejected call was never performed.
    let decided_by: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::ApprovalDecided { by, .. } => by.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(decided_by, vec!["key_test"; 4]);
    let performed = events
        .iter()
        .filter(|e| matches!(e.body, EventBody::ToolCalled { .. }))
        .count();
    assert_eq!(performed, 2);
    let get = |key: &'static str| {
        let store = second.store.clone();
        let session = session.clone();
        async move { store.scratchpad_get(&session, key).await.unwrap() }
    };
    assert_eq!(get("b-edited").await.as_deref(), Some("22"));
    assert_eq!(get("b").await, None);
    assert_eq!(get("c").await, None);

    // A run that no longer waits is not resumed again.
    let again = engine
        .resume_run(tenant, &run.id, vec![approve(&ids[0], None)], None)
        .await;
    assert!(
        matches!(&again, Err(EngineError::Invalid(m)) if m.contains("completed")),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_run_is_cancelled_with_its_calls_answered_as_errors() {
    let dir = tempfile::tempdir().unwrap();
    let test = common::engine(
        &dir,
        common::scripted(ScriptedConfig::default()),
        EngineConfig::default(),
        vec![tool("clock_now", true)],
        true,
    )
    .await;
    let (session, run) = waiting_run(&test, "/call clock_now").await;
    test.engine.cancel_run(&test.tenant, &run.id).await.unwrap();
    let ended = test.engine.wait_run(&test.tenant, &run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Cancelled, "{ended:?}");
    // The session takes the next turn.
    let next = test
        .engine
        .submit(&test.tenant, &session, Message::user("hello"))
        .await
        .unwrap();
    let next = test.engine.wait_run(&test.tenant, &next.id).await.unwrap();
    assert_eq!(next.status, RunStatus::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_on_an_argument_makes_only_matching_calls_wait() {
    let dir = tempfile::tempdir().unwrap();
    let mut gated = tool("scratchpad_set", false);
    gated.require_approval = keel_core::ApprovalRule::Matching(keel_core::ArgumentPattern {
        argument: "key".into(),
        matches: "secret*".into(),
    });
    let test = common::engine(
        &dir,
        common::scripted(ScriptedConfig::default()),
        EngineConfig::default(),
        vec![gated],
        true,
    )
    .await;
    let (session, run) = waiting_run(
        &test,
        "/call scratchpad_set {\"key\": \"plain\", \"value\": \"1\"}\n\
         /call scratchpad_set {\"key\": \"secret_pin\", \"value\": \"2\"}",
    )
    .await;
    let pending = test
        .engine
        .pending_approvals(&test.tenant, &run.id)
        .await
        .unwrap();
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0].arguments["key"], "secret_pin");
    // The call the rule let through was performed before the run stopped to wait.
    assert_eq!(
        test.store
            .scratchpad_get(&session, "plain")
            .await
            .unwrap()
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        test.store
            .scratchpad_get(&session, "secret_pin")
            .await
            .unwrap(),
        None
    );
}
