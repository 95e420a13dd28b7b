//! Timers through the engine, on a clock the test moves (`keel_engine::clock::advance`): a
//! cron timer fires each slot once as minutes pass; slots missed while no engine ran fire
//! once, late, saying so; two engines on one store (two nodes) fire each due time once; bad
//! schedules are refused naming what is wrong; an agent sets and cancels its own wakeups; an
//! agent's cron schedule starts one new session of the agent per slot, on two engines too; a
//! due agent timer whose agent is gone is deleted, and one due while the tenant may hold no
//! more sessions passes, both starting nothing.

mod common;

use std::time::{Duration, Instant};

use keel_core::{EventBody, Message, RunStatus, ToolDef, ToolKind};
use keel_engine::{Engine, EngineConfig, EngineError, When, clock};
use keel_models::providers::scripted::ScriptedConfig;
use keel_store::{SessionFilter, SessionRecord, Store, TimerOwner};

/// A session's timers' owner.
fn of(session: &keel_core::SessionId) -> TimerOwner {
    TimerOwner::Session(session.clone())
}

fn config(node: &str) -> EngineConfig {
    EngineConfig {
        node_id: node.into(),
        poll_interval: Duration::from_millis(20),
        ..EngineConfig::default()
    }
}

/// The inputs of the session's runs a timer started, once `count` of them completed (bounded).
async fn timer_inputs(
    store: &dyn Store,
    session: &keel_core::SessionId,
    count: usize,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = store.read_events(session, 0, 10_000).await.unwrap();
        let inputs: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::RunStarted { input, .. } => Some(input.text_content()),
                _ => None,
            })
            .filter(|input| input.contains("(timer tmr_"))
            .collect();
        let completed = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::RunCompleted { .. }))
            .count();
        if inputs.len() >= count && completed >= count {
            return inputs;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} timer runs: {inputs:?}",
            inputs.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_timer_fires_each_slot_once_and_slots_missed_while_down_once_late() {
    let dir = tempfile::tempdir().unwrap();
    let models = || common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models(), config("a"), Vec::new(), true).await;
    let session = common::session(&a.engine, &a.tenant).await;
    let every_minute = When::Cron {
        expr: "* * * * *".into(),
        timezone: "UTC".into(),
    };
    let timer = a
        .engine
        .add_timer(&a.tenant, &of(&session), every_minute, "look around".into())
        .await
        .unwrap();

    // Three minutes pass, one at a time: three runs, one per slot.
    for minute in 1..=3 {
        clock::advance(Duration::from_secs(60));
        let inputs = timer_inputs(a.store.as_ref(), &session, minute).await;
        assert_eq!(inputs.len(), minute, "{inputs:?}");
    }
    // No engine runs for ten minutes: the slots missed fire once, late, when one starts again.
    a.engine.shutdown().await;
    drop(a.engine);
    clock::advance(Duration::from_secs(600));
    let b = Engine::new(a.store.clone(), models(), config("a"));
    b.start().await.unwrap();
    let inputs = timer_inputs(a.store.as_ref(), &session, 4).await;
    assert!(
        inputs[3].contains("late by 9m") || inputs[3].contains("late by 10m"),
        "{inputs:?}"
    );
    // Then on time again.
    clock::advance(Duration::from_secs(60));
    let inputs = timer_inputs(a.store.as_ref(), &session, 5).await;
    assert_eq!(inputs.len(), 5, "{inputs:?}");
    assert!(!inputs[4].contains("late"), "{inputs:?}");
    // Every input names the timer and a distinct due time.
    let mut dues: Vec<&str> = inputs
        .iter()
        .map(|i| i.rsplit("due at ").next().unwrap())
        .collect();
    dues.dedup();
    assert_eq!(dues.len(), 5, "{inputs:?}");
    assert!(
        inputs
            .iter()
            .all(|i| i.starts_with("look around") && i.contains(timer.id.as_str()))
    );
    let listed = b.list_timers(&a.tenant, &of(&session)).await.unwrap();
    assert_eq!(listed[0].fired, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_store_fire_each_due_time_once() {
    let dir = tempfile::tempdir().unwrap();
    let models = || common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models(), config("a"), Vec::new(), true).await;
    let b = Engine::new(a.store.clone(), models(), config("b"));
    b.start().await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..20 {
        let session = common::session(&a.engine, &a.tenant).await;
        a.engine
            .add_timer(
                &a.tenant,
                &of(&session),
                When::After(Duration::from_secs(30)),
                "once".into(),
            )
            .await
            .unwrap();
        sessions.push(session);
    }
    clock::advance(Duration::from_secs(31));
    for session in &sessions {
        let inputs = timer_inputs(a.store.as_ref(), session, 1).await;
        assert_eq!(inputs.len(), 1, "{inputs:?}");
    }
    // Each one-off timer is done: it cannot fire again.
    for session in &sessions {
        let runs = a.store.pending_runs(&a.tenant, session).await.unwrap();
        assert!(
            runs.iter().all(|r| r.status != RunStatus::Queued),
            "{runs:?}"
        );
        let timers = a.engine.list_timers(&a.tenant, &of(session)).await.unwrap();
        assert_eq!((timers[0].fired, timers[0].next_at), (1, None));
    }
}

#[tokio::test]
async fn bad_schedules_and_unknown_sessions_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::engine(
        &dir,
        common::scripted(ScriptedConfig::default()),
        config("a"),
        Vec::new(),
        false,
    )
    .await;
    let session = common::session(&a.engine, &a.tenant).await;
    let cron = |expr: &str, zone: &str| When::Cron {
        expr: expr.into(),
        timezone: zone.into(),
    };
    for (when, says) in [
        (cron("every day", "UTC"), "5 fields"),
        (cron("0 25 * * *", "UTC"), "not valid"),
        (cron("0 9 * * *", "Nowhere/Else"), "Nowhere/Else"),
    ] {
        match a
            .engine
            .add_timer(&a.tenant, &of(&session), when, "x".into())
            .await
        {
            Err(EngineError::Invalid(message)) => assert!(message.contains(says), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    let long = "x".repeat(keel_engine::MAX_NOTE_BYTES + 1);
    assert!(matches!(
        a.engine
            .add_timer(&a.tenant, &of(&session), When::After(Duration::ZERO), long)
            .await,
        Err(EngineError::Invalid(_))
    ));
    let other = keel_core::TenantId::generate(9, 9);
    assert!(matches!(
        a.engine
            .add_timer(
                &other,
                &of(&session),
                When::After(Duration::ZERO),
                "x".into()
            )
            .await,
        Err(EngineError::NotFound { .. })
    ));
    assert!(
        a.engine
            .list_timers(&a.tenant, &of(&session))
            .await
            .unwrap()
            .is_empty()
    );
}

/// The results of the tools one turn of `text` called (`/call` lines for the scripted model),
/// in call order, each with whether it is an error; the run must complete.
async fn tool_results(
    test: &common::TestEngine,
    session: &keel_core::SessionId,
    text: &str,
) -> Vec<(String, bool)> {
    let run = test
        .engine
        .submit(&test.tenant, session, Message::user(text))
        .await
        .unwrap();
    let ended = test.engine.wait_run(&test.tenant, &run.id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed, "{ended:?}");
    let events = test.engine.run_events(&ended).await.unwrap();
    events
        .into_iter()
        .filter_map(|e| match e.body {
            EventBody::ToolReturned {
                content, is_error, ..
            } => Some((content, is_error)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_sets_and_cancels_its_own_wakeups_and_the_one_left_wakes_it() {
    let dir = tempfile::tempdir().unwrap();
    let builtin = |name: &str| ToolDef {
        name: name.into(),
        description: String::new(),
        parameters: serde_json::json!({}),
        strict: None,
        require_approval: Default::default(),
        kind: ToolKind::Builtin,
    };
    let tools = vec![builtin("schedule_wakeup"), builtin("cancel_wakeup")];
    let models = common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models, config("a"), tools, true).await;
    let session = common::session(&a.engine, &a.tenant).await;

    let set = tool_results(
        &a,
        &session,
        "/call schedule_wakeup {\"after_secs\": 60, \"note\": \"check the oven\"}\n\
         /call schedule_wakeup {\"at\": \"2030-01-01T00:00:00Z\", \"note\": \"new year\"}\n\
         /call schedule_wakeup {\"after_secs\": 0, \"note\": \"too soon\"}",
    )
    .await;
    assert!(!set[0].1 && !set[1].1 && set[2].1, "{set:?}");
    assert!(set[2].0.contains("at least 1"), "{set:?}");
    // Each result names the timer it set, committed with it.
    let timers = a
        .engine
        .list_timers(&a.tenant, &of(&session))
        .await
        .unwrap();
    assert_eq!(timers.len(), 2, "{timers:?}");
    for (timer, (result, _)) in timers.iter().zip(&set) {
        assert!(
            result.starts_with(&format!("wakeup {} set for", timer.id)),
            "{result}"
        );
    }
    let new_year = &timers[1];
    assert_eq!(new_year.note, "new year");

    let cancelled = tool_results(
        &a,
        &session,
        &format!(
            "/call cancel_wakeup {{\"id\": \"{}\"}}\n/call cancel_wakeup {{\"id\": \"tmr_unknown\"}}",
            new_year.id
        ),
    )
    .await;
    assert!(!cancelled[0].1 && cancelled[1].1, "{cancelled:?}");
    assert!(cancelled[1].0.contains("no wakeup"), "{cancelled:?}");
    let timers = a
        .engine
        .list_timers(&a.tenant, &of(&session))
        .await
        .unwrap();
    assert_eq!(timers.len(), 1, "{timers:?}");

    // A minute later the session wakes with its note, once.
    clock::advance(Duration::from_secs(61));
    let inputs = timer_inputs(a.store.as_ref(), &session, 1).await;
    assert_eq!(inputs.len(), 1, "{inputs:?}");
    assert!(inputs[0].starts_with("check the oven"), "{inputs:?}");
    let timers = a
        .engine
        .list_timers(&a.tenant, &of(&session))
        .await
        .unwrap();
    assert_eq!((timers[0].fired, timers[0].next_at), (1, None));
}

/// The tenant's sessions once `count` exist (bounded), oldest first.
async fn sessions_made(
    store: &dyn Store,
    tenant: &keel_core::TenantId,
    count: usize,
) -> Vec<SessionRecord> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut sessions = store
            .list_sessions(tenant, &SessionFilter::default())
            .await
            .unwrap();
        if sessions.len() >= count {
            sessions.reverse();
            return sessions;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {count} sessions",
            sessions.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_cron_schedule_starts_one_new_session_per_slot_on_two_engines() {
    let dir = tempfile::tempdir().unwrap();
    let models = || common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models(), config("a"), Vec::new(), true).await;
    let b = Engine::new(a.store.clone(), models(), config("b"));
    b.start().await.unwrap();
    let agent = TimerOwner::Agent("a".into());
    let every_minute = When::Cron {
        expr: "* * * * *".into(),
        timezone: "UTC".into(),
    };
    let timer = a
        .engine
        .add_timer(&a.tenant, &agent, every_minute, "write the report".into())
        .await
        .unwrap();
    assert_eq!(
        b.list_timers(&a.tenant, &agent).await.unwrap(),
        std::slice::from_ref(&timer)
    );

    // Three minutes pass, one at a time; the agent gets a new version after the first: each
    // slot starts one new session of the agent's version of the time, with one run.
    for minute in 1..=3 {
        clock::advance(Duration::from_secs(60));
        let sessions = sessions_made(a.store.as_ref(), &a.tenant, minute).await;
        let newest = &sessions[minute - 1];
        let inputs = timer_inputs(a.store.as_ref(), &newest.id, 1).await;
        assert_eq!(inputs.len(), 1, "{inputs:?}");
        assert!(
            inputs[0].starts_with("write the report\n\n(timer ")
                && inputs[0].contains(timer.id.as_str()),
            "{inputs:?}"
        );
        let expected_version = if minute == 1 { 1 } else { 2 };
        assert_eq!(newest.agent_version, expected_version, "{newest:?}");
        assert_eq!(newest.metadata["schedule"], timer.id.as_str(), "{newest:?}");
        if minute == 1 {
            let mut edited = a
                .store
                .get_agent(&a.tenant, "a", None)
                .await
                .unwrap()
                .unwrap();
            edited.instructions = "Be brief.".into();
            a.engine.put_agent(&a.tenant, edited).await.unwrap();
        }
    }
    let sessions = sessions_made(a.store.as_ref(), &a.tenant, 3).await;
    assert_eq!(
        sessions.len(),
        3,
        "one session per slot, not one per engine"
    );
    let mut dues = Vec::new();
    for session in &sessions {
        let runs = a.store.read_events(&session.id, 0, 1_000).await.unwrap();
        let started: Vec<String> = runs
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::RunStarted { input, .. } => Some(input.text_content()),
                _ => None,
            })
            .collect();
        assert_eq!(started.len(), 1, "one run per session: {started:?}");
        dues.push(started[0].rsplit("due at ").next().unwrap().to_string());
    }
    dues.dedup();
    assert_eq!(dues.len(), 3, "{dues:?}");
    let listed = a.engine.list_timers(&a.tenant, &agent).await.unwrap();
    assert_eq!(listed[0].fired, 3);

    // Archiving the agent deletes its schedules: no node finds them due any more.
    a.engine.archive_agent(&a.tenant, "a").await.unwrap();
    assert!(
        a.engine
            .list_timers(&a.tenant, &agent)
            .await
            .unwrap()
            .is_empty()
    );
    let due = a
        .store
        .due_timers(keel_core::Timestamp::from_millis(i64::MAX), 100);
    assert!(due.await.unwrap().iter().all(|t| t.id != timer.id));
}

#[tokio::test]
async fn an_unknown_agent_or_another_tenants_takes_no_schedule() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models, config("a"), Vec::new(), false).await;
    let after = || When::After(Duration::from_secs(60));
    let nobody = TimerOwner::Agent("nobody".into());
    for result in [
        a.engine
            .add_timer(&a.tenant, &nobody, after(), "x".into())
            .await,
        a.engine
            .add_timer(
                &keel_core::TenantId::generate(9, 9),
                &TimerOwner::Agent("a".into()),
                after(),
                "x".into(),
            )
            .await,
    ] {
        assert!(
            matches!(result, Err(EngineError::NotFound { kind: "agent", .. })),
            "{result:?}"
        );
    }
    assert!(matches!(
        a.engine.list_timers(&a.tenant, &nobody).await,
        Err(EngineError::NotFound { kind: "agent", .. })
    ));
}

/// A timer row of an agent the tenant does not have (as a damaged or hand-copied database
/// could hold: the store takes none through `put_timer`), written as `keel migrate` writes
/// rows.
async fn orphan_agent_timer(store: &dyn Store, tenant: &keel_core::TenantId) -> keel_core::TimerId {
    use keel_store::export::{StoredRecord, TABLES, Value};
    let id = keel_core::TimerId::generate(1, 77);
    let due = clock::now().millis() - 1_000;
    let table = TABLES.iter().position(|t| t.name == "timers").unwrap();
    let values = TABLES[table]
        .columns
        .iter()
        .map(|(column, _)| match *column {
            "id" => Value::Text(id.to_string()),
            "tenant" => Value::Text(tenant.to_string()),
            "agent" => Value::Text("ghost".into()),
            "schedule" => {
                Value::Text(r#"{"kind":"cron","expr":"* * * * *","timezone":"UTC"}"#.into())
            }
            "note" => Value::Text("haunt".into()),
            "next_at" | "created_at" => Value::Int(due),
            "fired" => Value::Int(0),
            _ => Value::Null,
        })
        .collect();
    store
        .import(vec![StoredRecord { table, values }])
        .await
        .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_timer_whose_agent_is_gone_is_deleted_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    let a = common::engine(&dir, models, config("a"), Vec::new(), false).await;
    let id = orphan_agent_timer(a.store.as_ref(), &a.tenant).await;
    let far = keel_core::Timestamp::from_millis(i64::MAX);
    assert!(
        a.store
            .due_timers(far, 100)
            .await
            .unwrap()
            .iter()
            .any(|t| t.id == id)
    );
    a.engine.start().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while a
        .store
        .due_timers(far, 100)
        .await
        .unwrap()
        .iter()
        .any(|t| t.id == id)
    {
        assert!(Instant::now() < deadline, "the orphan timer is still there");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sessions = a
        .store
        .list_sessions(&a.tenant, &SessionFilter::default())
        .await
        .unwrap();
    assert!(sessions.is_empty(), "{sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_due_time_passes_when_the_tenant_may_hold_no_more_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let models = common::scripted(ScriptedConfig::default());
    let mut full = config("a");
    full.quotas.sessions_per_tenant = 0;
    let a = common::engine(&dir, models, full, Vec::new(), true).await;
    let agent = TimerOwner::Agent("a".into());
    let every_minute = When::Cron {
        expr: "* * * * *".into(),
        timezone: "UTC".into(),
    };
    let timer = a
        .engine
        .add_timer(&a.tenant, &agent, every_minute, "report".into())
        .await
        .unwrap();
    clock::advance(Duration::from_secs(60));
    // The due time passes: the timer moves on to the next slot, not counted as fired, and no
    // session is made.
    let deadline = Instant::now() + Duration::from_secs(20);
    let moved = loop {
        let listed = a.engine.list_timers(&a.tenant, &agent).await.unwrap();
        if listed[0].next_at != timer.next_at {
            break listed[0].clone();
        }
        assert!(Instant::now() < deadline, "the due time never passed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((moved.fired, moved.last_fired_at), (0, None));
    let sessions = a
        .store
        .list_sessions(&a.tenant, &SessionFilter::default())
        .await
        .unwrap();
    assert!(sessions.is_empty(), "{sessions:?}");
}
