//! Cases on the tamper-evident journal (`chain.rs`): every append, by any handle and in any
//! batch, extends one hash chain per session; a new session's copied events start a chain of
//! their own; and an edit of one byte of one stored event is found, naming its seq (run by
//! each backend's own tests, which know how to edit their storage behind the store's back).

use std::sync::Arc;

use super::Subject;
use super::fixtures::*;
use crate::chain::{self, ALGORITHM};
use crate::{ScratchpadWrite, Store, StoreError};

/// A session with seq 1 and `notes` notes after it, appended in batches of one, two and three.
async fn session_with_notes(store: &Arc<dyn Store>, notes_count: u64) -> keel_core::SessionId {
    let session = new_session(store, &tenant()).await;
    let mut last = 1;
    let mut size = 1;
    while last < notes_count + 1 {
        let n = size.min(notes_count + 1 - last);
        let batch = notes((0..n).map(|i| format!("note {}", last + i)));
        last = store.append(&session, last, batch).await.unwrap();
        size = size % 3 + 1;
    }
    session
}

pub async fn the_log_is_one_hash_chain_across_batches_and_handles(subject: &Subject) {
    let store = &subject.store;
    let session = session_with_notes(store, 6).await;
    // Another handle (node) goes on from the same chain, with a batch that is a transaction.
    let other = subject.second_handle();
    let mut batch = notes(["from the other handle".to_string()]);
    batch.scratchpad.push(ScratchpadWrite {
        key: "k".into(),
        value: Some("v".into()),
    });
    other.append(&session, 7, batch).await.unwrap();
    // And the first handle after it: its own last record is no longer the tip.
    store
        .append(&session, 8, notes(["back here".to_string()]))
        .await
        .unwrap();

    let report = chain::verify(store.as_ref(), &session).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!((report.events, report.unhashed), (9, 0));
    assert_eq!(report.algorithm, ALGORITHM);
    let journal = store.read_journal(&session, 0, 100).await.unwrap();
    let mut previous: Option<String> = None;
    for entry in &journal {
        let record = entry.hash.clone().expect("every event has its record");
        assert!(record.starts_with("sha256:"), "{record}");
        let expected = chain::event_hash(
            previous.as_deref(),
            entry.seq,
            entry.at,
            &entry.kind,
            &entry.body,
        );
        assert_eq!(record, expected, "seq {}", entry.seq);
        previous = Some(record);
    }
    assert_eq!(
        report.last_record, previous,
        "the report ends at the chain's tip"
    );
    // Pages go on after a seq, and the events read back are the journal's.
    let page = store.read_journal(&session, 5, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7]);
    let events = store.read_events(&session, 5, 2).await.unwrap();
    assert_eq!(page[0].kind, events[0].body.type_name());
}

pub async fn a_new_sessions_copied_events_are_a_chain_of_their_own(store: Arc<dyn Store>) {
    let source = session_with_notes(&store, 3).await;
    let copied = store.read_events(&source, 0, 100).await.unwrap();
    let record = session_record(&tenant(), "helper", serde_json::json!({"fork": true}));
    let events = copied
        .into_iter()
        .map(|e| crate::NewEvent {
            at: e.at,
            body: e.body,
        })
        .collect();
    store.create_session(&record, events).await.unwrap();
    store
        .append(&record.id, 4, notes(["after the fork".to_string()]))
        .await
        .unwrap();
    let report = chain::verify(store.as_ref(), &record.id).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!(report.events, 5);
    let unknown = session_record(&tenant(), "helper", serde_json::json!({})).id;
    assert!(matches!(
        store.read_journal(&unknown, 0, 10).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        chain::verify(store.as_ref(), &unknown).await,
        Err(StoreError::NotFound { .. })
    ));
}

/// Edits one byte of one stored event with `run_sql` (SQL on the backend's own tables, as
/// someone with the database in hand would), and checks that verifying names that seq; then
/// a forged hash record, and events stored before the journal was hashed.
pub async fn an_edited_byte_of_a_stored_event_is_found_at_its_seq(
    store: Arc<dyn Store>,
    run_sql: impl Fn(&str),
) {
    let session = session_with_notes(&store, 5).await;
    let intact = chain::verify(store.as_ref(), &session).await.unwrap();
    assert!(intact.intact, "{intact:?}");

    // "note 3" is event 4's input: one byte of its body, n → m.
    run_sql(&format!(
        "UPDATE events SET body = replace(body, 'note 3', 'mote 3') WHERE session = '{session}' AND seq = 4"
    ));
    let report = chain::verify(store.as_ref(), &session).await.unwrap();
    assert!(!report.intact);
    assert_eq!(report.first_bad_seq, Some(4), "{report:?}");
    assert!(report.problem.unwrap().contains("event 4"));

    // Undone, but a record forged for an edit of event 2 still breaks the chain at event 3:
    // the next record covers the one before.
    run_sql(&format!(
        "UPDATE events SET body = replace(body, 'mote 3', 'note 3') WHERE session = '{session}' AND seq = 4"
    ));
    assert!(
        chain::verify(store.as_ref(), &session)
            .await
            .unwrap()
            .intact
    );
    let second = store.read_journal(&session, 1, 1).await.unwrap().remove(0);
    let forged_body = second.body.replace("note 1", "note X");
    let forged = chain::event_hash(
        store.read_journal(&session, 0, 1).await.unwrap()[0]
            .hash
            .as_deref(),
        2,
        second.at,
        &second.kind,
        &forged_body,
    );
    run_sql(&format!(
        "UPDATE events SET body = '{}', hash = '{forged}' WHERE session = '{session}' AND seq = 2",
        forged_body.replace('\'', "''")
    ));
    let report = chain::verify(store.as_ref(), &session).await.unwrap();
    assert_eq!(report.first_bad_seq, Some(3), "{report:?}");

    // A log from before the journal was hashed (written by an older keel: no handle appended
    // it): the chain starts at the first hashed event, which an append after it makes.
    let old = new_session(&store, &tenant()).await;
    run_sql(&format!(
        "UPDATE events SET hash = NULL WHERE session = '{old}'"
    ));
    let batch = notes(["after the upgrade".to_string(), "and on".to_string()]);
    store.append(&old, 1, batch).await.unwrap();
    let report = chain::verify(store.as_ref(), &old).await.unwrap();
    assert!(report.intact, "{report:?}");
    assert_eq!((report.events, report.unhashed), (3, 1));
}
