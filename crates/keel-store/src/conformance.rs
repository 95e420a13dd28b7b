//! The conformance suite: written once against `Arc<dyn Store>`, run against every backend.
//! `conformance_tests!(subject_future)` expands into one `#[tokio::test]` per case, so each
//! backend's test file is a line long and the test runner lists every case by name.
//!
//! Each case takes a fresh, empty store: the run queue is shared by all tenants, so cases
//! sharing one database would claim each other's runs.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use keel_core::{
    AgentDef, AgentId, Event, EventBody, Limits, Message, RunId, RunStatus, SessionId,
    SessionState, TenantId, Timestamp,
};

use crate::{
    AppendBatch, NewEvent, RunOutcome, RunRecord, ScratchpadWrite, SessionFilter, SessionRecord,
    Snapshot, Store, StoreError,
};

/// A store under test, and whatever must outlive it (a temporary directory, a database).
pub struct Subject {
    pub store: Arc<dyn Store>,
    _keep_alive: Box<dyn Any + Send>,
}

impl Subject {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Subject {
            store,
            _keep_alive: Box::new(()),
        }
    }

    /// A store that needs `guard` to live as long as it does.
    pub fn keeping(store: Arc<dyn Store>, guard: impl Any + Send) -> Self {
        Subject {
            store,
            _keep_alive: Box::new(guard),
        }
    }
}

/// Expands into one `#[tokio::test]` per conformance case. `$subject` is a future giving a
/// `Subject` holding a fresh, empty store; it is awaited once per case. The calling crate
/// needs `tokio` (with `macros` and `rt-multi-thread`) among its dev-dependencies.
#[macro_export]
macro_rules! conformance_tests {
    ($subject:expr) => {
        $crate::conformance_tests!(@cases $subject;
            append_and_read_round_trip,
            seqs_are_contiguous_from_one,
            stale_expected_seq_is_a_conflict_and_writes_nothing,
            unknown_session_is_not_found,
            concurrent_appends_lose_and_duplicate_nothing,
            load_is_latest_snapshot_plus_tail,
            read_events_pages_forward_and_backward,
            scratchpad_commits_with_its_events_and_rolls_back_with_a_conflict,
            agents_are_versioned_per_tenant,
            sessions_list_filters_pages_and_stays_in_its_tenant,
            delete_session_removes_its_log_and_runs,
            creating_a_session_twice_is_already_exists,
            claims_never_hold_two_runs_of_one_session,
            expired_lease_is_taken_over_by_another_node,
            runs_finish_and_take_cancel_requests,
            release_leases_makes_a_nodes_runs_claimable_now,
            ping_answers,
        );
    };
    (@cases $subject:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let subject: $crate::conformance::Subject = $subject.await;
                $crate::conformance::$case(::std::sync::Arc::clone(&subject.store)).await;
            }
        )+
    };
}

// --- fixtures ---------------------------------------------------------------------------------

/// Ids and times that only grow, so sessions created later sort later.
fn tick() -> u64 {
    static CLOCK: AtomicU64 = AtomicU64::new(1_750_000_000_000);
    CLOCK.fetch_add(1, Ordering::Relaxed)
}

fn tenant() -> TenantId {
    TenantId::generate(tick(), 7)
}

fn run_id() -> RunId {
    RunId::generate(tick(), 7)
}

fn agent(name: &str) -> AgentDef {
    AgentDef {
        id: AgentId::generate(tick(), 7),
        name: name.to_string(),
        version: 0,
        instructions: format!("You are {name}."),
        model: "scripted/echo".into(),
        tools: Vec::new(),
        limits: Limits::default(),
    }
}

fn at(millis: i64) -> Timestamp {
    Timestamp::from_millis(millis)
}

/// An event carrying `text`, so tests can tell events apart.
fn note(text: &str) -> NewEvent {
    NewEvent {
        at: at(1_000),
        body: EventBody::RunStarted {
            run_id: RunId::generate(1, 1),
            input: Message::user(text),
        },
    }
}

fn notes(texts: impl IntoIterator<Item = String>) -> AppendBatch {
    AppendBatch::events(texts.into_iter().map(|t| note(&t)).collect())
}

fn text_of(event: &Event) -> String {
    match &event.body {
        EventBody::RunStarted { input, .. } => input.text_content(),
        other => other.type_name().to_string(),
    }
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn session_record(
    tenant: &TenantId,
    agent_name: &str,
    metadata: serde_json::Value,
) -> SessionRecord {
    let serde_json::Value::Object(metadata) = metadata else {
        panic!("session metadata must be a JSON object")
    };
    SessionRecord {
        id: SessionId::generate(tick(), 7),
        tenant: tenant.clone(),
        agent_id: AgentId::generate(1, 1),
        agent_name: agent_name.to_string(),
        agent_version: 1,
        created_at: at(2_000),
        metadata,
        last_seq: 0,
    }
}

fn session_started(record: &SessionRecord) -> NewEvent {
    let mut def = agent(&record.agent_name);
    def.version = record.agent_version;
    NewEvent {
        at: record.created_at,
        body: EventBody::SessionStarted {
            tenant: record.tenant.clone(),
            agent: def,
            metadata: record.metadata.clone(),
        },
    }
}

/// A session whose log holds its `session_started` event (seq 1).
async fn new_session(store: &Arc<dyn Store>, tenant: &TenantId) -> SessionId {
    let record = session_record(tenant, "helper", serde_json::json!({}));
    store
        .create_session(&record, vec![session_started(&record)])
        .await
        .expect("create_session");
    record.id
}

fn queued_run(tenant: &TenantId, session: &SessionId, created_at: i64) -> RunRecord {
    RunRecord {
        id: run_id(),
        tenant: tenant.clone(),
        session: session.clone(),
        input: Message::user("go"),
        status: RunStatus::Queued,
        created_at: at(created_at),
        output: None,
        error: None,
        cancel_requested: false,
        lease_owner: None,
        lease_until: None,
    }
}

fn ids(runs: &[RunRecord]) -> Vec<&RunId> {
    runs.iter().map(|r| &r.id).collect()
}

fn assert_not_found<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

// --- the log ----------------------------------------------------------------------------------

pub async fn append_and_read_round_trip(store: Arc<dyn Store>) {
    let tenant = tenant();
    let record = session_record(&tenant, "helper", serde_json::json!({"team": "red"}));
    let first = session_started(&record);
    store
        .create_session(&record, vec![first.clone()])
        .await
        .unwrap();
    let run = run_id();
    let batch = vec![
        NewEvent {
            at: at(5_000),
            body: EventBody::RunStarted {
                run_id: run.clone(),
                input: Message::user("hello"),
            },
        },
        NewEvent {
            at: at(5_001),
            body: EventBody::ModelCalled {
                run_id: run.clone(),
                step: 1,
                attempt: 1,
            },
        },
        NewEvent {
            at: at(5_002),
            body: EventBody::ToolCalled {
                run_id: run.clone(),
                call_id: "call_1".into(),
                name: "clock_now".into(),
                arguments: serde_json::json!({"zone": "UTC", "nested": [1, 2.5, null, "ü"]}),
                idempotency_key: "ses_x:3".into(),
            },
        },
    ];
    assert_eq!(
        store
            .append(&record.id, 1, AppendBatch::events(batch.clone()))
            .await
            .unwrap(),
        4
    );

    let events = store.read_events(&record.id, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), [1, 2, 3, 4]);
    let written: Vec<_> = std::iter::once(first).chain(batch).collect();
    for (event, new) in events.iter().zip(&written) {
        assert_eq!(
            (event.at, &event.body),
            (new.at, &new.body),
            "event {} changed on its way through the store",
            event.seq
        );
    }
    let stored = store
        .get_session(&tenant, &record.id)
        .await
        .unwrap()
        .expect("the session exists");
    assert_eq!(
        stored,
        SessionRecord {
            last_seq: 4,
            ..record
        }
    );
}

pub async fn seqs_are_contiguous_from_one(store: Arc<dyn Store>) {
    let tenant = tenant();
    let record = session_record(&tenant, "helper", serde_json::json!({}));
    store.create_session(&record, Vec::new()).await.unwrap();
    assert_eq!(
        store
            .get_session(&tenant, &record.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        0
    );
    let mut last = 0;
    for size in [1, 3, 0, 2, 5] {
        let next = store
            .append(
                &record.id,
                last,
                notes((0..size).map(|i| format!("{last}+{i}"))),
            )
            .await
            .unwrap();
        assert_eq!(
            next,
            last + size,
            "appending {size} events after seq {last}"
        );
        last = next;
    }
    let events = store.read_events(&record.id, 0, 100).await.unwrap();
    assert_eq!(seqs(&events), (1..=11).collect::<Vec<_>>());
    assert_eq!(
        store
            .get_session(&tenant, &record.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        11
    );
}

pub async fn stale_expected_seq_is_a_conflict_and_writes_nothing(store: Arc<dyn Store>) {
    let session = new_session(&store, &tenant()).await;
    store
        .append(&session, 1, notes(["a".into(), "b".into()]))
        .await
        .unwrap();
    for stale in [0, 1, 2, 4, u64::MAX] {
        match store.append(&session, stale, notes(["lost".into()])).await {
            Err(StoreError::Conflict {
                session: s,
                expected,
                actual,
            }) => {
                assert_eq!((s, expected, actual), (session.clone(), stale, 3));
            }
            other => panic!("append after stale seq {stale}: expected Conflict, got {other:?}"),
        }
    }
    let events = store.read_events(&session, 0, 100).await.unwrap();
    assert_eq!(
        events.iter().map(text_of).collect::<Vec<_>>(),
        ["session_started", "a", "b"]
    );
}

pub async fn unknown_session_is_not_found(store: Arc<dyn Store>) {
    let tenant = tenant();
    let unknown = SessionId::generate(tick(), 9);
    assert_not_found(
        store.append(&unknown, 0, notes(["x".into()])).await,
        "append",
    );
    assert_not_found(store.read_events(&unknown, 0, 10).await, "read_events");
    assert_not_found(
        store.read_events_before(&unknown, 10, 10).await,
        "read_events_before",
    );
    assert_not_found(store.load(&unknown).await, "load");
    assert_not_found(
        store
            .put_snapshot(
                &unknown,
                Snapshot {
                    seq: 0,
                    state: SessionState::default(),
                },
            )
            .await,
        "put_snapshot",
    );
    assert_not_found(store.scratchpad_get(&unknown, "k").await, "scratchpad_get");
    assert_not_found(
        store.enqueue_run(&queued_run(&tenant, &unknown, 1)).await,
        "enqueue_run",
    );
    assert_eq!(store.get_session(&tenant, &unknown).await.unwrap(), None);
    assert!(!store.delete_session(&tenant, &unknown).await.unwrap());
}

/// Many tasks append to many sessions at once, two writers per session racing with retries:
/// every event lands exactly once, and every session's seqs stay contiguous.
pub async fn concurrent_appends_lose_and_duplicate_nothing(store: Arc<dyn Store>) {
    const SESSIONS: usize = 64;
    const APPENDS: usize = 50;
    const WRITERS: usize = 2;
    let tenant = tenant();
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(new_session(&store, &tenant).await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (s, session) in sessions.iter().enumerate() {
        for w in 0..WRITERS {
            let (store, session) = (store.clone(), session.clone());
            tasks.spawn(async move {
                let mut last = 1;
                for i in 0..APPENDS / WRITERS {
                    let marker = format!("{s}/{w}/{i}");
                    // Each conflict means the other writer appended, so this one can lose at
                    // most as many races as the other has appends.
                    let mut attempts = 0;
                    loop {
                        attempts += 1;
                        assert!(
                            attempts <= APPENDS + 1,
                            "session {s} writer {w}: conflicts without progress"
                        );
                        match store.append(&session, last, notes([marker.clone()])).await {
                            Ok(seq) => {
                                assert!(seq > last, "append returned seq {seq}, not after {last}");
                                last = seq;
                                break;
                            }
                            Err(StoreError::Conflict { actual, .. }) => last = actual,
                            Err(e) => panic!("append to session {s} failed: {e}"),
                        }
                    }
                }
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("an appending task panicked");
    }
    for (s, session) in sessions.iter().enumerate() {
        let events = store.read_events(session, 0, 10 * APPENDS).await.unwrap();
        assert_eq!(
            seqs(&events),
            (1..=1 + APPENDS as u64).collect::<Vec<_>>(),
            "session {s}"
        );
        let markers: BTreeSet<String> = events[1..].iter().map(text_of).collect();
        let expected: BTreeSet<String> = (0..WRITERS)
            .flat_map(|w| (0..APPENDS / WRITERS).map(move |i| format!("{s}/{w}/{i}")))
            .collect();
        assert_eq!(markers, expected, "session {s}: events lost or duplicated");
        assert_eq!(
            store
                .get_session(&tenant, session)
                .await
                .unwrap()
                .unwrap()
                .last_seq,
            1 + APPENDS as u64
        );
    }
}

pub async fn load_is_latest_snapshot_plus_tail(store: Arc<dyn Store>) {
    let session = new_session(&store, &tenant()).await;
    store
        .append(&session, 1, notes((2..=10).map(|i| format!("e{i}"))))
        .await
        .unwrap();
    let state_at = |seq: u64| SessionState {
        last_seq: seq,
        message_count: seq * 10,
        ..SessionState::default()
    };

    let loaded = store.load(&session).await.unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(seqs(&loaded.tail), (1..=10).collect::<Vec<_>>());

    store
        .put_snapshot(
            &session,
            Snapshot {
                seq: 4,
                state: state_at(4),
            },
        )
        .await
        .unwrap();
    store
        .put_snapshot(
            &session,
            Snapshot {
                seq: 7,
                state: state_at(7),
            },
        )
        .await
        .unwrap();
    // An older snapshot arriving late does not replace a newer one.
    store
        .put_snapshot(
            &session,
            Snapshot {
                seq: 5,
                state: state_at(5),
            },
        )
        .await
        .unwrap();
    let loaded = store.load(&session).await.unwrap();
    assert_eq!(
        loaded.snapshot,
        Some(Snapshot {
            seq: 7,
            state: state_at(7)
        })
    );
    assert_eq!(seqs(&loaded.tail), [8, 9, 10]);
    assert_eq!(
        loaded.tail.iter().map(text_of).collect::<Vec<_>>(),
        ["e8", "e9", "e10"]
    );

    match store
        .put_snapshot(
            &session,
            Snapshot {
                seq: 11,
                state: state_at(11),
            },
        )
        .await
    {
        Err(StoreError::Invalid(message)) => assert!(message.contains("seq 11"), "{message}"),
        other => panic!("a snapshot past the log's end: expected Invalid, got {other:?}"),
    }
    store
        .put_snapshot(
            &session,
            Snapshot {
                seq: 10,
                state: state_at(10),
            },
        )
        .await
        .unwrap();
    let loaded = store.load(&session).await.unwrap();
    assert_eq!(loaded.snapshot.map(|s| s.seq), Some(10));
    assert!(loaded.tail.is_empty());
}

pub async fn read_events_pages_forward_and_backward(store: Arc<dyn Store>) {
    let session = new_session(&store, &tenant()).await;
    store
        .append(&session, 1, notes((2..=25).map(|i| format!("e{i}"))))
        .await
        .unwrap();
    let page = |after: u64, limit: usize| {
        let store = store.clone();
        let session = session.clone();
        async move { seqs(&store.read_events(&session, after, limit).await.unwrap()) }
    };
    assert_eq!(page(0, 10).await, (1..=10).collect::<Vec<_>>());
    assert_eq!(page(10, 10).await, (11..=20).collect::<Vec<_>>());
    assert_eq!(page(20, 10).await, (21..=25).collect::<Vec<_>>());
    assert_eq!(page(25, 10).await, Vec::<u64>::new());
    assert_eq!(page(0, 0).await, Vec::<u64>::new());
    assert_eq!(page(u64::MAX, 10).await, Vec::<u64>::new());

    let before = |before: u64, limit: usize| {
        let store = store.clone();
        let session = session.clone();
        async move {
            seqs(
                &store
                    .read_events_before(&session, before, limit)
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(before(26, 5).await, (21..=25).collect::<Vec<_>>());
    assert_eq!(before(21, 5).await, (16..=20).collect::<Vec<_>>());
    assert_eq!(before(3, 10).await, [1, 2]);
    assert_eq!(before(1, 10).await, Vec::<u64>::new());
    assert_eq!(before(u64::MAX, 3).await, [23, 24, 25]);
}

pub async fn scratchpad_commits_with_its_events_and_rolls_back_with_a_conflict(
    store: Arc<dyn Store>,
) {
    let session = new_session(&store, &tenant()).await;
    let set = |key: &str, value: Option<&str>| ScratchpadWrite {
        key: key.into(),
        value: value.map(String::from),
    };
    let get = |key: &'static str| {
        let (store, session) = (store.clone(), session.clone());
        async move { store.scratchpad_get(&session, key).await.unwrap() }
    };
    assert_eq!(get("plan").await, None);

    let batch = AppendBatch {
        events: vec![note("wrote plan")],
        scratchpad: vec![set("plan", Some("v1")), set("todo", Some("3"))],
    };
    assert_eq!(store.append(&session, 1, batch).await.unwrap(), 2);
    assert_eq!(get("plan").await.as_deref(), Some("v1"));

    let losing = AppendBatch {
        events: vec![note("stale")],
        scratchpad: vec![set("plan", Some("v2")), set("extra", Some("x"))],
    };
    assert!(matches!(
        store.append(&session, 1, losing).await,
        Err(StoreError::Conflict { actual: 2, .. })
    ));
    assert_eq!(
        get("plan").await.as_deref(),
        Some("v1"),
        "a conflicting append's scratchpad write survived"
    );
    assert_eq!(get("extra").await, None);

    // Scratchpad writes without events: the seq stays, the writes land; `None` deletes.
    let only_writes = AppendBatch {
        events: Vec::new(),
        scratchpad: vec![set("plan", None), set("todo", Some("2"))],
    };
    assert_eq!(store.append(&session, 2, only_writes).await.unwrap(), 2);
    assert_eq!(get("plan").await, None);
    assert_eq!(get("todo").await.as_deref(), Some("2"));
    assert_eq!(
        seqs(&store.read_events(&session, 0, 10).await.unwrap()),
        [1, 2]
    );
}

// --- agents and sessions ----------------------------------------------------------------------

pub async fn agents_are_versioned_per_tenant(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let first = store.put_agent(&tenant, agent("helper")).await.unwrap();
    assert_eq!(first.version, 1);
    let mut edited = agent("helper");
    edited.instructions = "Be brief.".into();
    let second = store.put_agent(&tenant, edited).await.unwrap();
    assert_eq!(
        (second.version, &second.id, second.instructions.as_str()),
        (2, &first.id, "Be brief.")
    );
    let critic = store.put_agent(&tenant, agent("critic")).await.unwrap();
    assert_eq!(critic.version, 1);

    assert_eq!(
        store.get_agent(&tenant, "helper", None).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(
        store.get_agent(&tenant, "helper", Some(1)).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        store.get_agent(&tenant, "helper", Some(3)).await.unwrap(),
        None
    );
    assert_eq!(
        store.get_agent(&tenant, "nobody", None).await.unwrap(),
        None
    );
    assert_eq!(store.list_agents(&tenant).await.unwrap(), [critic, second]);

    assert_eq!(store.list_agents(&other).await.unwrap(), []);
    assert_eq!(store.get_agent(&other, "helper", None).await.unwrap(), None);
    assert_eq!(
        store
            .put_agent(&other, agent("helper"))
            .await
            .unwrap()
            .version,
        1,
        "versions are counted per tenant"
    );

    assert!(matches!(
        store.put_agent(&tenant, agent("")).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn sessions_list_filters_pages_and_stays_in_its_tenant(store: Arc<dyn Store>) {
    let (tenant, other) = (tenant(), tenant());
    let mut created = Vec::new();
    for i in 0..5u64 {
        let name = if i % 2 == 0 { "alpha" } else { "beta" };
        let team = if i < 3 { "red" } else { "blue" };
        let record = session_record(
            &tenant,
            name,
            serde_json::json!({"team": team, "n": i, "vip": i == 2}),
        );
        store
            .create_session(&record, vec![session_started(&record)])
            .await
            .unwrap();
        created.push(SessionRecord {
            last_seq: 1,
            ..record
        });
    }
    let list = |filter: SessionFilter| {
        let (store, tenant) = (store.clone(), tenant.clone());
        async move { store.list_sessions(&tenant, &filter).await.unwrap() }
    };
    let picks = |indexes: &[usize]| {
        indexes
            .iter()
            .map(|&i| created[i].clone())
            .collect::<Vec<_>>()
    };
    let meta = |key: &str, value: serde_json::Value| SessionFilter {
        metadata: vec![(key.into(), value)],
        ..SessionFilter::default()
    };

    assert_eq!(
        list(SessionFilter::default()).await,
        picks(&[4, 3, 2, 1, 0]),
        "all, newest first"
    );
    let alpha = SessionFilter {
        agent_name: Some("alpha".into()),
        ..SessionFilter::default()
    };
    assert_eq!(list(alpha).await, picks(&[4, 2, 0]));
    assert_eq!(list(meta("team", "red".into())).await, picks(&[2, 1, 0]));
    assert_eq!(list(meta("n", 2.into())).await, picks(&[2]));
    assert_eq!(
        list(meta("n", "2".into())).await,
        [],
        "a string does not match a number"
    );
    assert_eq!(list(meta("vip", true.into())).await, picks(&[2]));
    assert_eq!(
        list(meta("vip", 1.into())).await,
        [],
        "a number does not match a boolean"
    );
    assert_eq!(list(meta("missing", serde_json::Value::Null)).await, []);
    let both = SessionFilter {
        agent_name: Some("beta".into()),
        metadata: vec![("team".into(), "blue".into())],
        ..SessionFilter::default()
    };
    assert_eq!(list(both).await, picks(&[3]));

    let page = |before: Option<usize>| SessionFilter {
        before: before.map(|i| created[i].id.clone()),
        limit: 2,
        ..SessionFilter::default()
    };
    assert_eq!(list(page(None)).await, picks(&[4, 3]));
    assert_eq!(list(page(Some(3))).await, picks(&[2, 1]));
    assert_eq!(list(page(Some(1))).await, picks(&[0]));
    assert_eq!(list(page(Some(0))).await, []);

    assert_eq!(
        store.get_session(&tenant, &created[2].id).await.unwrap(),
        Some(created[2].clone())
    );
    assert_eq!(
        store
            .list_sessions(&other, &SessionFilter::default())
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        store.get_session(&other, &created[2].id).await.unwrap(),
        None
    );
    assert!(
        !store.delete_session(&other, &created[2].id).await.unwrap(),
        "another tenant deleted a session"
    );
    assert!(
        store
            .get_session(&tenant, &created[2].id)
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn delete_session_removes_its_log_and_runs(store: Arc<dyn Store>) {
    let tenant = tenant();
    let (doomed, kept) = (
        new_session(&store, &tenant).await,
        new_session(&store, &tenant).await,
    );
    let write = ScratchpadWrite {
        key: "k".into(),
        value: Some("v".into()),
    };
    store
        .append(
            &doomed,
            1,
            AppendBatch {
                events: vec![note("x")],
                scratchpad: vec![write],
            },
        )
        .await
        .unwrap();
    store
        .put_snapshot(
            &doomed,
            Snapshot {
                seq: 2,
                state: SessionState::default(),
            },
        )
        .await
        .unwrap();
    let run = queued_run(&tenant, &doomed, 1);
    store.enqueue_run(&run).await.unwrap();
    store
        .append(&kept, 1, notes(["stays".into()]))
        .await
        .unwrap();

    assert!(store.delete_session(&tenant, &doomed).await.unwrap());
    assert_eq!(store.get_session(&tenant, &doomed).await.unwrap(), None);
    assert_not_found(
        store.read_events(&doomed, 0, 10).await,
        "read_events after delete",
    );
    assert_not_found(store.load(&doomed).await, "load after delete");
    assert_not_found(
        store.scratchpad_get(&doomed, "k").await,
        "scratchpad_get after delete",
    );
    assert_eq!(store.get_run(&tenant, &run.id).await.unwrap(), None);
    assert_eq!(
        store.claim_runs("node-a", at(10), 1_000, 10).await.unwrap(),
        []
    );
    assert!(!store.delete_session(&tenant, &doomed).await.unwrap());
    assert_eq!(
        seqs(&store.read_events(&kept, 0, 10).await.unwrap()),
        [1, 2]
    );
}

pub async fn creating_a_session_twice_is_already_exists(store: Arc<dyn Store>) {
    let tenant = tenant();
    let record = session_record(&tenant, "helper", serde_json::json!({}));
    store
        .create_session(&record, vec![session_started(&record)])
        .await
        .unwrap();
    let again = store
        .create_session(&record, vec![session_started(&record), note("extra")])
        .await;
    assert!(
        matches!(again, Err(StoreError::AlreadyExists(_))),
        "got {again:?}"
    );
    assert_eq!(
        seqs(&store.read_events(&record.id, 0, 10).await.unwrap()),
        [1],
        "the failed create wrote events"
    );
}

// --- the run queue ------------------------------------------------------------------------------

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
