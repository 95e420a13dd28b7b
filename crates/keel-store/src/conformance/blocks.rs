//! Memory blocks: a session's follow its `memory_block_edited` events in the append's
//! transaction (and come with the events copied into a new session), shared ones are written
//! from the version they were read at, each write with its history row.

use std::sync::Arc;

use keel_core::{EventBody, RunId};

use super::Subject;
use super::fixtures::*;
use crate::{AppendBatch, MemoryBlock, NewEvent, SharedBlockWrite, Store, StoreError};

fn edit(label: &str, after: &str, shared: bool, millis: i64) -> NewEvent {
    NewEvent {
        at: at(millis),
        body: EventBody::MemoryBlockEdited {
            run_id: None,
            label: label.into(),
            shared,
            before: None,
            after: after.into(),
            by: "api".into(),
        },
    }
}

fn shared_write(label: &str, value: &str, expected_version: u64) -> SharedBlockWrite {
    SharedBlockWrite {
        label: label.into(),
        value: value.into(),
        limit: 100,
        description: Some("what the team works on".into()),
        expected_version,
        before: None,
        by: "api".into(),
        session: None,
        run: None,
        at: at(5_000 + expected_version as i64),
    }
}

fn values(blocks: &[MemoryBlock]) -> Vec<(&str, &str, u64)> {
    blocks
        .iter()
        .map(|b| (b.label.as_str(), b.value.as_str(), b.version))
        .collect()
}

pub async fn a_sessions_blocks_follow_its_edit_events_within_its_tenant(store: Arc<dyn Store>) {
    let tenant = tenant();
    let session = new_session(&store, &tenant).await;
    assert!(
        store
            .session_blocks(&tenant, &session)
            .await
            .unwrap()
            .is_empty()
    );
    let batch = AppendBatch::events(vec![
        edit("user", "likes tea", false, 3_000),
        edit("persona", "terse", false, 3_001),
        edit("user", "likes tea and cake", false, 3_002),
        // A shared block's edit event leaves the session's blocks alone.
        edit("project", "keel", true, 3_003),
    ]);
    store.append(&session, 1, batch).await.unwrap();
    let blocks = store.session_blocks(&tenant, &session).await.unwrap();
    assert_eq!(
        values(&blocks),
        [("persona", "terse", 1), ("user", "likes tea and cake", 2)]
    );
    assert_eq!(blocks[1].updated_at, at(3_002));
    assert_eq!(
        (blocks[1].limit, blocks[1].description.as_deref()),
        (None, None)
    );
    assert!(store.shared_blocks(&tenant).await.unwrap().is_empty());

    // A stale append writes neither its events nor its blocks.
    let stale = AppendBatch::events(vec![edit("user", "lost", false, 3_010)]);
    assert!(matches!(
        store.append(&session, 1, stale).await,
        Err(StoreError::Conflict { .. })
    ));
    let blocks = store.session_blocks(&tenant, &session).await.unwrap();
    assert_eq!(values(&blocks)[1], ("user", "likes tea and cake", 2));

    // Another tenant sees none of them.
    assert!(
        store
            .session_blocks(&super::fixtures::tenant(), &session)
            .await
            .unwrap()
            .is_empty()
    );

    // A new session made of a copy of the log (a fork) has the blocks as its copy says, its own.
    let events = store.read_events(&session, 0, 100).await.unwrap();
    let record = session_record(&tenant, "helper", serde_json::json!({}));
    let copy: Vec<NewEvent> = events
        .into_iter()
        .map(|e| NewEvent {
            at: e.at,
            body: e.body,
        })
        .collect();
    store.create_session(&record, copy).await.unwrap();
    let fork = record.id;
    store
        .append(
            &fork,
            5,
            AppendBatch::events(vec![edit("user", "fork's own", false, 4_000)]),
        )
        .await
        .unwrap();
    let forked = store.session_blocks(&tenant, &fork).await.unwrap();
    assert_eq!(values(&forked)[1], ("user", "fork's own", 3));
    let parent = store.session_blocks(&tenant, &session).await.unwrap();
    assert_eq!(values(&parent)[1], ("user", "likes tea and cake", 2));

    // Deleting a session deletes its blocks.
    assert!(store.delete_session(&tenant, &session).await.unwrap());
    assert!(
        store
            .session_blocks(&tenant, &session)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.session_blocks(&tenant, &fork).await.unwrap().len(), 2);
}

pub async fn shared_blocks_are_written_from_their_version_with_their_history(
    store: Arc<dyn Store>,
) {
    let tenant = tenant();
    let first = store
        .put_shared_block(&tenant, &shared_write("project", "keel", 0))
        .await
        .unwrap();
    assert_eq!((first.version, first.limit), (1, Some(100)));
    // Written from a version it is not at: refused, nothing written.
    for stale in [0, 2] {
        match store
            .put_shared_block(&tenant, &shared_write("project", "lost", stale))
            .await
        {
            Err(StoreError::Stale(message)) => assert!(message.contains("version 1"), "{message}"),
            other => panic!("a write from version {stale}: {other:?}"),
        }
    }
    let second = store
        .put_shared_block(&tenant, &shared_write("project", "keel, a runtime", 1))
        .await
        .unwrap();
    assert_eq!(second.version, 2);
    let listed = store.shared_blocks(&tenant).await.unwrap();
    assert_eq!(values(&listed), [("project", "keel, a runtime", 2)]);
    assert_eq!(
        listed[0].description.as_deref(),
        Some("what the team works on")
    );
    let history = store
        .shared_block_history(&tenant, "project", 10)
        .await
        .unwrap();
    let edits: Vec<(u64, Option<&str>, &str)> = history
        .iter()
        .map(|h| (h.version, h.before.as_deref(), h.after.as_str()))
        .collect();
    assert_eq!(
        edits,
        [(2, Some("keel"), "keel, a runtime"), (1, None, "keel")]
    );
    assert_eq!(
        store
            .shared_block_history(&tenant, "project", 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // Another tenant has none of it.
    let other = super::fixtures::tenant();
    assert!(store.shared_blocks(&other).await.unwrap().is_empty());
    assert!(
        store
            .shared_block_history(&other, "project", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!store.delete_shared_block(&other, "project").await.unwrap());

    // An agent's edit commits with its events; a stale one takes its events down with it.
    let session = new_session(&store, &tenant).await;
    let run = RunId::generate(tick(), 7);
    let agent_write = |value: &str, version| SharedBlockWrite {
        by: "agent".into(),
        session: Some(session.clone()),
        run: Some(run.clone()),
        ..shared_write("project", value, version)
    };
    let stale = AppendBatch {
        shared_blocks: vec![agent_write("lost", 1)],
        ..AppendBatch::events(vec![edit("project", "lost", true, 6_000)])
    };
    assert!(matches!(
        store.append(&session, 1, stale).await,
        Err(StoreError::Stale(_))
    ));
    assert_eq!(store.read_events(&session, 0, 10).await.unwrap().len(), 1);
    let fresh = AppendBatch {
        shared_blocks: vec![agent_write("keel, by the agent", 2)],
        ..AppendBatch::events(vec![edit("project", "keel, by the agent", true, 6_001)])
    };
    assert_eq!(store.append(&session, 1, fresh).await.unwrap(), 2);
    let latest = &store
        .shared_block_history(&tenant, "project", 1)
        .await
        .unwrap()[0];
    assert_eq!(
        (
            latest.version,
            latest.by.as_str(),
            latest.session.as_ref(),
            latest.run.as_ref()
        ),
        (3, "agent", Some(&session), Some(&run))
    );

    assert!(store.delete_shared_block(&tenant, "project").await.unwrap());
    assert!(!store.delete_shared_block(&tenant, "project").await.unwrap());
    assert!(store.shared_blocks(&tenant).await.unwrap().is_empty());
    assert!(
        store
            .shared_block_history(&tenant, "project", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Made again, it starts over.
    let again = store
        .put_shared_block(&tenant, &shared_write("project", "new", 0))
        .await
        .unwrap();
    assert_eq!(again.version, 1);
}

/// A session carried in the `keel.session/1` format holds, where it is imported, the blocks
/// its log's edits leave (a shared block's edit stays the source tenant's).
pub async fn an_imported_session_has_the_blocks_its_log_edits(source: &Subject, target: &Subject) {
    let (source, target) = (&source.store, &target.store);
    let (tenant, elsewhere) = (tenant(), tenant());
    let def = source.put_agent(&tenant, agent("helper")).await.unwrap();
    let record = crate::SessionRecord {
        agent_id: def.id.clone(),
        agent_version: def.version,
        ..session_record(&tenant, "helper", serde_json::json!({}))
    };
    let id = record.id.clone();
    let mut first = session_started(&record);
    if let EventBody::SessionStarted { agent, .. } = &mut first.body {
        *agent = def.clone();
    }
    source.create_session(&record, vec![first]).await.unwrap();
    let edits = AppendBatch::events(vec![
        edit("user", "Ann", false, 3_000),
        edit("project", "keel", true, 3_001),
        edit("user", "Ann, mornings", false, 3_002),
    ]);
    source.append(&id, 1, edits).await.unwrap();
    let exported = crate::portable::export_session(source.as_ref(), &tenant, &id, at(6_000))
        .await
        .unwrap();
    let plan = crate::portable::parse(&exported.join("\n")).unwrap();
    let records = plan.records(&elsewhere, &def, true, &[]).unwrap();
    target.import(records).await.unwrap();
    let carried = target.session_blocks(&elsewhere, &id).await.unwrap();
    assert_eq!(values(&carried), [("user", "Ann, mornings", 2)]);
    assert_eq!(
        carried,
        source.session_blocks(&tenant, &id).await.unwrap(),
        "the same blocks as at the source"
    );
    assert!(target.shared_blocks(&elsewhere).await.unwrap().is_empty());
}

/// Two handles writing a shared block from one version: one write gets in.
pub async fn handles_racing_to_write_a_shared_block_from_one_version_write_it_once(
    subject: &Subject,
) {
    let tenant = tenant();
    let (one, two) = (Arc::clone(&subject.store), subject.second_handle());
    for round in 0..10u64 {
        let label = format!("race-{round}");
        let writes = [(&one, "one"), (&two, "two")].map(|(store, who)| {
            let (store, tenant, label) = (Arc::clone(store), tenant.clone(), label.clone());
            tokio::spawn(async move {
                store
                    .put_shared_block(&tenant, &shared_write(&label, who, 0))
                    .await
            })
        });
        let mut won = Vec::new();
        for write in writes {
            match write.await.unwrap() {
                Ok(block) => won.push(block.value),
                Err(StoreError::Stale(_)) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        let history = one.shared_block_history(&tenant, &label, 10).await.unwrap();
        assert_eq!(history.len(), 1, "round {round}");
        assert_eq!(history[0].after, won[0]);
    }
}
