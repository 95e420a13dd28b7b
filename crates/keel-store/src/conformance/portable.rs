//! The case on carrying one session to another store in the `keel.session/1` format: exported
//! with its log, scratchpad, a timer, an unfinished run and the records of its own memory
//! namespace (not the tenant's others), imported under another tenant of a second store in one
//! `import`, it exports the same lines there, its records are found there, and its chain
//! verifies; a second import of it is `AlreadyExists` and writes nothing.

use keel_core::{EventBody, Message, RunStatus, TimerId};

use super::Subject;
use super::fixtures::*;
use crate::portable::{export_session, parse, session_namespace};
use crate::{
    Enqueue, Fusion, MemoryQuery, MemoryRecord, NewEvent, Schedule, ScratchpadWrite, SessionRecord,
    StoreError, TimerRecord, chain,
};

pub async fn an_exported_session_imports_into_another_store_as_it_was(
    source: &Subject,
    target: &Subject,
) {
    let (source, target) = (&source.store, &target.store);
    let (tenant, elsewhere) = (tenant(), tenant());
    let def = source.put_agent(&tenant, agent("helper")).await.unwrap();
    let record = SessionRecord {
        agent_id: def.id.clone(),
        agent_version: def.version,
        ..session_record(&tenant, "helper", serde_json::json!({"team": "blue"}))
    };
    let id = record.id.clone();
    let first = NewEvent {
        at: record.created_at,
        body: EventBody::SessionStarted {
            tenant: tenant.clone(),
            agent: def.clone(),
            metadata: record.metadata.clone(),
        },
    };
    source.create_session(&record, vec![first]).await.unwrap();
    let mut batch = notes(["one".into(), "two \u{1f980} \"quoted\"".into()]);
    batch.scratchpad = vec![ScratchpadWrite {
        key: "colour".into(),
        value: Some("blue\nand green".into()),
    }];
    source.append(&id, 1, batch).await.unwrap();
    let timer = TimerRecord {
        id: TimerId::generate(tick(), 7),
        tenant: tenant.clone(),
        owner: crate::TimerOwner::Session(id.clone()),
        schedule: Schedule::Cron {
            expr: "0 9 * * 1".into(),
            timezone: "Europe/Paris".into(),
        },
        note: "weekly".into(),
        next_at: Some(at(9_000)),
        created_at: at(3_000),
        fired: 2,
        last_fired_at: Some(at(4_000)),
    };
    source.put_timer(&timer).await.unwrap();
    let mut run = queued_run(&tenant, &id, 5_000);
    run.input = Message::user("carry on");
    source
        .enqueue_run_with(&run, &Enqueue::default())
        .await
        .unwrap();
    let done = queued_run(&tenant, &id, 5_001);
    source.enqueue_run(&done).await.unwrap();
    let outcome = crate::RunOutcome {
        output: Some("ok".into()),
        error: None,
    };
    source
        .finish_run(&done.id, RunStatus::Completed, outcome)
        .await
        .unwrap();

    let memory = |id: &str, namespace: String, text: &str| MemoryRecord {
        id: id.into(),
        tenant: tenant.clone(),
        namespace,
        text: text.into(),
        metadata: serde_json::json!({"source": "chat"}),
        embedding: vec![0.5, -0.25],
        created_at: at(5_500),
        updated_at: at(5_600),
    };
    let own = memory("mem_own", session_namespace(&id), "Ann prefers mornings");
    source.put_memory(&own).await.unwrap();
    let shared = memory("mem_shared", "user:ann".into(), "shared by every session");
    source.put_memory(&shared).await.unwrap();

    let exported = export_session(source.as_ref(), &tenant, &id, at(6_000))
        .await
        .unwrap();
    assert_eq!(exported.len(), 1 + 3 + 1 + 1 + 1 + 1 + 1, "{exported:#?}");
    let plan = parse(&exported.join("\n")).unwrap();
    assert_eq!(plan.memory_texts(), ["Ann prefers mornings"]);
    let records = plan
        .records(&elsewhere, &def, true, &[vec![1.0, 0.0]])
        .unwrap();
    target.import(records.clone()).await.unwrap();

    let again = export_session(target.as_ref(), &elsewhere, &id, at(6_000))
        .await
        .unwrap();
    assert_eq!(again, exported, "the same lines from the other store");
    let report = chain::verify(target.as_ref(), &id).await.unwrap();
    assert!(report.intact && report.events == 3, "{report:?}");
    assert_eq!(
        target
            .scratchpad_get(&id, "colour")
            .await
            .unwrap()
            .as_deref(),
        Some("blue\nand green")
    );
    let carried = target.pending_runs(&elsewhere, &id).await.unwrap();
    assert_eq!(ids(&carried), vec![&run.id]);
    assert_eq!(carried[0].input, run.input);
    let timers = target.list_timers(&elsewhere, &id).await.unwrap();
    assert_eq!(
        timers,
        vec![TimerRecord {
            tenant: elsewhere.clone(),
            ..timer
        }]
    );
    assert_eq!(target.get_session(&tenant, &id).await.unwrap(), None);
    let carried = target.get_memory(&elsewhere, "mem_own").await.unwrap();
    assert_eq!(
        carried,
        Some(MemoryRecord {
            tenant: elsewhere.clone(),
            embedding: vec![1.0, 0.0],
            ..own
        }),
        "its text as it was, its vector the importer's"
    );
    assert_eq!(
        target.get_memory(&elsewhere, "mem_shared").await.unwrap(),
        None
    );
    let found = target
        .search_memory(
            &elsewhere,
            &MemoryQuery {
                namespace: session_namespace(&id),
                text: "mornings".into(),
                embedding: None,
                filter: Vec::new(),
                limit: 5,
                fusion: Fusion::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1, "found by its words there");

    // A second import, by any tenant: refused whole.
    for by in [&elsewhere, &tenant] {
        let records = plan.records(by, &def, false, &[]).unwrap();
        match target.import(records).await {
            Err(StoreError::AlreadyExists(_)) => {}
            other => panic!("a second import: {other:?}"),
        }
    }
    let after = target.read_events(&id, 0, 100).await.unwrap();
    assert_eq!(seqs(&after), vec![1, 2, 3]);
    assert_eq!(target.pending_runs(&elsewhere, &id).await.unwrap().len(), 1);
}
