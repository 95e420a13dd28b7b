//! Cases on agents and sessions: versioning, listing with filters and a cursor, deleting,
//! and tenant scoping (another tenant sees nothing).

use std::sync::Arc;

use keel_core::SessionState;

use super::fixtures::*;
use crate::{
    AppendBatch, ScratchpadWrite, SessionFilter, SessionRecord, Snapshot, Store, StoreError,
};

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
                ..AppendBatch::default()
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

pub async fn session_metadata_is_replaced_within_its_tenant(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    let mut metadata = serde_json::Map::new();
    metadata.insert("topic".into(), serde_json::json!("billing"));
    assert!(
        store
            .update_session_metadata(&tenant, &session, metadata.clone())
            .await
            .unwrap()
    );
    let record = store.get_session(&tenant, &session).await.unwrap().unwrap();
    assert_eq!(record.metadata, metadata);
    assert!(
        !store
            .update_session_metadata(&super::fixtures::tenant(), &session, serde_json::Map::new())
            .await
            .unwrap(),
        "another tenant's session"
    );
    let record = store.get_session(&tenant, &session).await.unwrap().unwrap();
    assert_eq!(record.metadata, metadata, "untouched by the other tenant");
}
