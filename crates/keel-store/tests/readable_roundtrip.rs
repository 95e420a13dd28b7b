//! What keel accepts, keel can read back: JSON values nested up to the ingress limit
//! (`keel_core::limits::MAX_JSON_DEPTH`), placed in every stored field that carries caller or
//! model JSON — tool schemas, session metadata, run options, tool-call arguments — come back
//! equal through every reader: the agent and session rows, the event log, the snapshot, the
//! run queue's claim, and the JSON the API renders from them. And nothing is reported
//! unreadable afterwards.

use keel_core::limits::{MAX_JSON_DEPTH, check_value};
use keel_core::{
    AgentDef, AgentId, Event, EventBody, FinishReason, Limits, Message, Part, ResponseFormat, Role,
    RunId, RunOptions, RunStatus, SessionId, SessionState, TenantId, Timestamp, ToolDef, ToolKind,
    Usage,
};
use keel_store::{
    AppendBatch, NewEvent, RunRecord, SessionFilter, SessionRecord, Snapshot, SqliteOptions,
    SqliteStore, Store,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use serde_json::Value;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::from),
        // Brackets, quotes and escapes inside strings must not count as nesting.
        "[\\[\\]{}\"\\\\]{0,6}".prop_map(Value::from),
    ]
}

/// Any small JSON value, wrapped in up to `MAX_JSON_DEPTH - 4` levels of arrays and objects,
/// so the whole reaches the limit.
fn deep_value() -> impl Strategy<Value = Value> {
    let small = leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("\\PC{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    (small, vec(any::<bool>(), 0..=MAX_JSON_DEPTH - 4)).prop_map(|(mut value, wraps)| {
        for as_array in wraps {
            value = match as_array {
                true => Value::Array(vec![value]),
                false => serde_json::json!({ "k": value }),
            };
        }
        value
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Through JSON text and back, as the API renders a record and a client reads it.
fn rendered<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    serde_json::from_str(&serde_json::to_string(value).unwrap()).unwrap()
}

async fn round_trip(value: Value) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(SqliteOptions::new(dir.path().join("keel.db"))).unwrap();
    let tenant = TenantId::generate(1, 1);
    let at = Timestamp::from_millis(1_000);
    let mut metadata = serde_json::Map::new();
    metadata.insert("k".into(), value.clone());

    // An agent whose tool schema is the value.
    let agent = store
        .put_agent(
            &tenant,
            AgentDef {
                id: AgentId::generate(1, 2),
                name: "deep".into(),
                version: 0,
                instructions: String::new(),
                model: "scripted/echo".into(),
                tools: vec![ToolDef {
                    name: "f".into(),
                    description: String::new(),
                    parameters: value.clone(),
                    strict: None,
                    require_approval: Default::default(),
                    kind: ToolKind::Client,
                }],
                limits: Limits::default(),
                memory_blocks: Vec::new(),
                compaction: Default::default(),
                memory: Default::default(),
            },
        )
        .await
        .unwrap();
    let read = store
        .get_agent(&tenant, "deep", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, agent);
    assert_eq!(rendered(&read), agent);

    // A session with the value in its metadata and its first event.
    let session = SessionId::generate(1, 3);
    let record = SessionRecord {
        id: session.clone(),
        tenant: tenant.clone(),
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        agent_version: agent.version,
        created_at: at,
        metadata: metadata.clone(),
        last_seq: 1,
    };
    let started = EventBody::SessionStarted {
        tenant: tenant.clone(),
        agent: agent.clone(),
        metadata: metadata.clone(),
    };
    store
        .create_session(
            &record,
            vec![NewEvent {
                at,
                body: started.clone(),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        store.get_session(&tenant, &session).await.unwrap(),
        Some(record.clone())
    );
    let listed = store
        .list_sessions(&tenant, &SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(listed, vec![record.clone()]);

    // A run whose options carry the value, a reply calling a tool with it as arguments.
    let run_id = RunId::generate(1, 4);
    let options = RunOptions {
        response_format: Some(ResponseFormat::JsonSchema {
            name: "deep".into(),
            description: None,
            schema: value.clone(),
            strict: false,
        }),
        annotations: metadata.clone(),
        ..RunOptions::default()
    };
    let call = Part::ToolCall {
        id: "c1".into(),
        name: "f".into(),
        arguments: value.clone(),
    };
    let bodies = vec![
        EventBody::RunStarted {
            run_id: run_id.clone(),
            input: Message::user("go"),
            options: Box::new(options.clone()),
        },
        EventBody::ModelCalled {
            run_id: run_id.clone(),
            step: 1,
            attempt: 1,
        },
        EventBody::ModelReplied {
            run_id: run_id.clone(),
            step: 1,
            message: Message {
                role: Role::Assistant,
                parts: vec![call],
            },
            usage: Usage::default(),
            finish: FinishReason::ToolCalls,
            model: "scripted/echo".into(),
            provider_kind: None,
            latency_ms: 0,
            queue_ms: 0,
            target: None,
            attempts: 1,
            cost_usd: None,
        },
    ];
    let batch = AppendBatch::events(
        bodies
            .iter()
            .map(|body| NewEvent {
                at,
                body: body.clone(),
            })
            .collect(),
    );
    store.append(&session, 1, batch).await.unwrap();
    let events = store.read_events(&session, 0, 100).await.unwrap();
    let read: Vec<EventBody> = events.iter().map(|e| e.body.clone()).collect();
    let mut want = vec![started];
    want.extend(bodies);
    assert_eq!(read, want);
    assert_eq!(rendered::<Vec<Event>>(&events), events);

    // The state folded from them, as a snapshot.
    let state = SessionState::default().fold(&events).unwrap();
    store
        .put_snapshot(
            &session,
            Snapshot {
                seq: state.last_seq,
                state: state.clone(),
            },
        )
        .await
        .unwrap();
    let loaded = store.load(&session).await.unwrap();
    assert_eq!(loaded.snapshot.map(|s| s.state), Some(state));

    // The queue hands the run out with its options.
    let run = RunRecord {
        id: RunId::generate(2, 5),
        tenant: tenant.clone(),
        session: session.clone(),
        input: Message::user("next"),
        options,
        status: RunStatus::Queued,
        created_at: at,
        output: None,
        error: None,
        cancel_requested: false,
        lease_owner: None,
        lease_until: None,
    };
    store.enqueue_run(&run).await.unwrap();
    let claimed = store.claim_runs("node", at, 30_000, 8).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].options, run.options);
    assert_eq!(claimed[0].input, run.input);

    assert_eq!(store.unreadable_records(10).await.unwrap(), Vec::new());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn values_up_to_the_ingress_limit_read_back_equal_through_every_reader(value in deep_value()) {
        prop_assume!(check_value(&value, MAX_JSON_DEPTH, "").is_ok());
        runtime().block_on(round_trip(value));
    }
}

#[test]
fn the_deepest_accepted_value_reads_back() {
    let mut value = Value::from("bottom");
    for _ in 0..MAX_JSON_DEPTH {
        value = Value::Array(vec![value]);
    }
    assert!(check_value(&value, MAX_JSON_DEPTH, "").is_ok());
    runtime().block_on(round_trip(value));
}
