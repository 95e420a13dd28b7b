//! What the PostgreSQL backend keeps beyond the conformance suite, against the real server
//! (`pg_server`): versioned migrations that nodes starting at once apply once, a schema from a
//! newer keel refused, rows that cannot be decoded isolated (never stopping anyone else's
//! work), and strings PostgreSQL's text type cannot hold stored anyway.

mod pg_server;

use keel_core::{
    AgentDef, AgentId, EventBody, Limits, Message, RunId, RunStatus, SessionId, SessionState,
    TenantId, Timestamp,
};
use keel_store::{
    AppendBatch, PgOptions, PgStore, RunOutcome, RunRecord, ScratchpadWrite, SessionFilter,
    SessionRecord, Snapshot, Store, StoreError,
};
use pg_server::Schema;

fn session_record(tenant: &TenantId, n: u64) -> SessionRecord {
    SessionRecord {
        id: SessionId::generate(1_000 + n, u128::from(n)),
        tenant: tenant.clone(),
        agent_id: AgentId::generate(1, 2),
        agent_name: "helper".into(),
        agent_version: 1,
        created_at: Timestamp::from_millis(1_000),
        metadata: serde_json::Map::new(),
        last_seq: 0,
    }
}

fn queued_run(tenant: &TenantId, session: &SessionId, n: u64) -> RunRecord {
    RunRecord {
        id: RunId::generate(2_000 + n, u128::from(n)),
        tenant: tenant.clone(),
        session: session.clone(),
        input: Message::user(format!("run {n}")),
        options: Default::default(),
        status: RunStatus::Queued,
        created_at: Timestamp::from_millis(n as i64),
        output: None,
        error: None,
        cancel_requested: false,
        lease_owner: None,
        lease_until: None,
    }
}

fn agent(name: &str) -> AgentDef {
    AgentDef {
        id: AgentId::generate(3, 3),
        name: name.into(),
        version: 0,
        instructions: String::new(),
        model: "scripted/echo".into(),
        tools: Vec::new(),
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    }
}

/// A note event carrying `text`.
fn note(text: &str) -> keel_store::NewEvent {
    keel_store::NewEvent {
        at: Timestamp::from_millis(1_000),
        body: EventBody::RunStarted {
            run_id: RunId::generate(1, 1),
            input: Message::user(text),
            options: Default::default(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_opening_a_fresh_schema_at_once_migrate_it_once() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let options = schema.options();
        opening.spawn(async move { PgStore::open(options).await });
    }
    while let Some(opened) = opening.join_next().await {
        opened.unwrap().expect("every node opens the schema");
    }
    let store = schema.open().await;
    store.ping().await.unwrap();
    let versions = versions(&schema).await;
    let every: Vec<i32> = (1..=keel_store::postgres::SCHEMA_VERSION).collect();
    assert_eq!(versions, every, "each migration applied once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_keel_is_refused_with_its_version() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    drop(schema.open().await);
    schema
        .execute("INSERT INTO schema_version (version) VALUES (99)")
        .await;
    match PgStore::open(schema.options()).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("version 99"), "{message}");
            assert!(message.contains(&schema.name), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_options_and_an_unreachable_server_are_told_apart() {
    let bad_schema = PgOptions {
        schema: Some("Robert'); DROP TABLE students;--".into()),
        ..PgOptions::new("postgres://postgres@127.0.0.1:5432/test")
    };
    assert!(matches!(
        PgStore::open(bad_schema).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        PgStore::open(PgOptions::new("postgres://keel@host:notaport/db")).await,
        Err(StoreError::Invalid(_))
    ));
    let described = format!(
        "{:?}",
        PgOptions::new("postgres://keel:secret@db.local/keel")
    );
    assert!(described.contains("keel@db.local:5432/keel"), "{described}");
    assert!(!described.contains("secret"), "{described}");
    // Nothing listens on port 1: unavailable, naming the server but never a password.
    let nowhere = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::new("postgres://keel:secret@127.0.0.1:1/nowhere")
    };
    match PgStore::open(nowhere).await {
        Err(StoreError::Unavailable(message)) => {
            assert!(message.contains("127.0.0.1:1/nowhere"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_in_scratchpad_values_and_run_outputs_round_trip() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let store = schema.open().await;
    let tenant = TenantId::generate(1, 1);
    let session = session_record(&tenant, 1);
    store.create_session(&session, Vec::new()).await.unwrap();
    let run = queued_run(&tenant, &session.id, 1);
    store.enqueue_run(&run).await.unwrap();
    let batch = AppendBatch {
        events: vec![note("a\0b")],
        scratchpad: vec![ScratchpadWrite {
            key: "plan".into(),
            value: Some("x\0y".into()),
        }],
        finish_run: Some(keel_store::RunFinish {
            run: run.id.clone(),
            status: RunStatus::Completed,
            outcome: RunOutcome {
                output: Some("out\0put".into()),
                error: None,
            },
        }),
        timers: Vec::new(),
        ..AppendBatch::default()
    };
    store.append(&session.id, 0, batch).await.unwrap();
    assert_eq!(
        store
            .scratchpad_get(&session.id, "plan")
            .await
            .unwrap()
            .as_deref(),
        Some("x\0y")
    );
    let done = store.get_run(&tenant, &run.id).await.unwrap().unwrap();
    assert_eq!(done.output.as_deref(), Some("out\0put"));
    let events = store.read_events(&session.id, 0, 10).await.unwrap();
    assert_eq!(events[0].body, note("a\0b").body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_storing_versions_of_one_agent_at_once_get_distinct_versions() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let stores = [
        std::sync::Arc::new(schema.open().await),
        std::sync::Arc::new(schema.open().await),
    ];
    let tenant = TenantId::generate(1, 1);
    let mut putting = tokio::task::JoinSet::new();
    for n in 0..8 {
        let (store, tenant) = (stores[n % 2].clone(), tenant.clone());
        putting.spawn(async move { store.put_agent(&tenant, agent("helper")).await });
    }
    let mut versions = Vec::new();
    while let Some(put) = putting.join_next().await {
        versions.push(put.unwrap().expect("every version is stored").version);
    }
    versions.sort();
    assert_eq!(versions, (1..=8).collect::<Vec<u32>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seq_key_stands_behind_the_last_seq() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let store = schema.open().await;
    let session = session_record(&TenantId::generate(1, 1), 1);
    store
        .create_session(&session, vec![note("first")])
        .await
        .unwrap();
    // A hand edit makes the session's last seq disagree with its log.
    schema.execute("UPDATE sessions SET last_seq = 0").await;
    match store
        .append(&session.id, 0, AppendBatch::events(vec![note("again")]))
        .await
    {
        Err(StoreError::Conflict { .. }) => {}
        other => panic!("appending onto a taken seq: expected Conflict, got {other:?}"),
    }
    let events = store.read_events(&session.id, 0, 10).await.unwrap();
    assert_eq!(events.len(), 1, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_that_cannot_be_decoded_are_isolated_and_listed() {
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let store = schema.open().await;
    let tenant = TenantId::generate(1, 1);
    let (good, bad) = (session_record(&tenant, 1), session_record(&tenant, 2));
    for session in [&good, &bad] {
        store
            .create_session(session, vec![note("first")])
            .await
            .unwrap();
    }
    let (damaged_run, fine_run) = (
        queued_run(&tenant, &good.id, 1),
        queued_run(&tenant, &bad.id, 2),
    );
    for run in [&damaged_run, &fine_run] {
        store.enqueue_run(run).await.unwrap();
    }
    store.put_agent(&tenant, agent("fine")).await.unwrap();
    store.put_agent(&tenant, agent("broken")).await.unwrap();
    store
        .put_snapshot(
            &good.id,
            Snapshot {
                seq: 1,
                state: SessionState::default(),
            },
        )
        .await
        .unwrap();
    schema
        .execute(&format!(
            "UPDATE runs SET input = 'not json' WHERE id = '{}';
             UPDATE sessions SET metadata = '{{' WHERE id = '{}';
             UPDATE agents SET def = 'x' WHERE name = 'broken';
             UPDATE snapshots SET state = '[]' WHERE session = '{}';",
            damaged_run.id, bad.id, good.id
        ))
        .await;

    // The claim fails the damaged run, naming it, and hands out the other.
    let claimed = store
        .claim_runs("node-a", Timestamp::from_millis(10), 60_000, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|r| &r.id).collect::<Vec<_>>(),
        [&fine_run.id]
    );
    let failed = store
        .get_run(&tenant, &damaged_run.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let error = failed.error.unwrap_or_default();
    assert!(error.contains(damaged_run.id.as_str()), "{error}");

    // Lists skip what they cannot read; a bad snapshot loads from the full log.
    let listed = store
        .list_sessions(&tenant, &SessionFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|s| &s.id).collect::<Vec<_>>(), [&good.id]);
    let agents = store.list_agents(&tenant).await.unwrap();
    assert_eq!(
        agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["fine"]
    );
    let loaded = store.load(&good.id).await.unwrap();
    assert_eq!((loaded.snapshot, loaded.tail.len()), (None, 1));

    let mut found: Vec<(String, String)> = store
        .unreadable_records(100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.kind, r.id))
        .collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("agent".to_string(), "broken v1".to_string()),
            ("run".into(), damaged_run.id.to_string()),
            ("session".into(), bad.id.to_string()),
            ("snapshot".into(), format!("{}@1", good.id)),
        ]
    );
}

/// The versions recorded in the schema's `schema_version` table.
async fn versions(schema: &Schema) -> Vec<i32> {
    let (client, connection) = tokio_postgres::connect(&schema.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            &format!(
                "SELECT version FROM {}.schema_version ORDER BY version",
                schema.name
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Waits (bounded) for a signal that `wanted` accepts, skipping others.
async fn hear(
    signals: &mut tokio::sync::broadcast::Receiver<keel_store::StoreSignal>,
    wanted: impl Fn(&keel_store::StoreSignal) -> bool,
) -> keel_store::StoreSignal {
    let deadline = std::time::Duration::from_secs(10);
    tokio::time::timeout(deadline, async {
        loop {
            let signal = signals.recv().await.expect("the listener goes on");
            if wanted(&signal) {
                return signal;
            }
        }
    })
    .await
    .expect("the signal was heard")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_node_hears_appends_cancels_and_claimable_runs_once_committed() {
    use keel_store::StoreSignal;
    let Some(schema) = Schema::fresh().await else {
        return;
    };
    let (a, b) = (schema.open().await, schema.open().await);
    let mut heard = b.signals().expect("PostgreSQL gives signals");
    let tenant = TenantId::default_tenant();
    let session = session_record(&tenant, 1);
    a.create_session(&session, Vec::new()).await.unwrap();

    // An append is heard with the seq it ends at; one refused as a conflict is not.
    a.append(&session.id, 0, AppendBatch::events(vec![note("one")]))
        .await
        .unwrap();
    let stale = a
        .append(&session.id, 0, AppendBatch::events(vec![note("lost")]))
        .await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));
    a.append(
        &session.id,
        1,
        AppendBatch::events(vec![note("two"), note("three")]),
    )
    .await
    .unwrap();
    let appended = |last_seq| StoreSignal::Appended {
        session: session.id.clone(),
        last_seq,
    };
    assert_eq!(
        hear(&mut heard, |s| matches!(s, StoreSignal::Appended { .. })).await,
        appended(1)
    );
    assert_eq!(
        hear(&mut heard, |s| matches!(s, StoreSignal::Appended { .. })).await,
        appended(3)
    );

    // A queued run is claimable; a cancel request names its run.
    let run = queued_run(&tenant, &session.id, 1);
    a.enqueue_run(&run).await.unwrap();
    hear(&mut heard, |s| *s == StoreSignal::RunClaimable).await;
    assert!(a.request_cancel(&tenant, &run.id).await.unwrap());
    let cancel = StoreSignal::CancelRequested {
        run: run.id.clone(),
    };
    hear(&mut heard, |s| *s == cancel).await;

    // The listening connection cut: B says hints were missed, then hears again.
    let cut = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '{}_listener'",
        b.channel()
    );
    schema.execute(&cut).await;
    hear(&mut heard, |s| *s == StoreSignal::Missed).await;
    a.append(&session.id, 3, AppendBatch::events(vec![note("four")]))
        .await
        .unwrap();
    assert_eq!(
        hear(&mut heard, |s| matches!(s, StoreSignal::Appended { .. })).await,
        appended(4)
    );
}
