//! Cases on a session's log: appends and their optimistic concurrency, reading in pages,
//! snapshots, and the scratchpad that commits with its events.

use std::collections::BTreeSet;
use std::sync::Arc;

use keel_core::{EventBody, Message, SessionId, SessionState};

use super::fixtures::*;
use crate::{AppendBatch, NewEvent, ScratchpadWrite, SessionRecord, Snapshot, Store, StoreError};

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
                options: Default::default(),
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
        ..AppendBatch::default()
    };
    assert_eq!(store.append(&session, 1, batch).await.unwrap(), 2);
    assert_eq!(get("plan").await.as_deref(), Some("v1"));

    let losing = AppendBatch {
        events: vec![note("stale")],
        scratchpad: vec![set("plan", Some("v2")), set("extra", Some("x"))],
        ..AppendBatch::default()
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
        ..AppendBatch::default()
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
