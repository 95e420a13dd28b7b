//! The conformance suite on the SQLite backend: every case on a fresh database file in its own
//! temporary directory, with full durability and group commit, as keel runs by default.

use std::sync::Arc;

use keel_store::conformance::Subject;
use keel_store::{SqliteOptions, SqliteStore};

async fn sqlite_subject() -> Subject {
    let dir = tempfile::tempdir().expect("a temporary directory");
    on_file(
        SqliteOptions::new(dir.path().join("data").join("keel.db")),
        dir,
    )
}

/// A subject on the file `options` name, whose second handle is another store on that file
/// (as a second process would open it).
fn on_file(options: SqliteOptions, dir: tempfile::TempDir) -> Subject {
    let store = SqliteStore::open(options.clone()).expect("open the store");
    Subject::keeping(Arc::new(store), dir).with_second_handle(move || {
        Arc::new(SqliteStore::open(options.clone()).expect("open a second store on the file"))
    })
}

keel_store::conformance_tests!(sqlite_subject());

/// The same suite with one transaction per write, the path group commit takes for a lone request.
mod without_group_commit {
    use super::*;

    async fn subject() -> Subject {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = SqliteOptions {
            group_commit: false,
            ..SqliteOptions::new(dir.path().join("keel.db"))
        };
        on_file(options, dir)
    }

    keel_store::conformance_tests!(subject());
}

/// One byte of a stored event edited in the file, behind the store's back, is found.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_byte_in_the_file_is_found_at_its_seq() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("keel.db");
    let store = Arc::new(SqliteStore::open(SqliteOptions::new(&path)).expect("open the store"));
    keel_store::conformance::an_edited_byte_of_a_stored_event_is_found_at_its_seq(store, |sql| {
        let conn = rusqlite::Connection::open(&path).expect("open the file");
        conn.execute_batch(sql).expect("edit the file");
    })
    .await;
}

/// A timer edited in the file into one that does not decode is skipped; the others fire.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_timer_damaged_in_the_file_never_stops_the_others() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("keel.db");
    let store = Arc::new(SqliteStore::open(SqliteOptions::new(&path)).expect("open the store"));
    keel_store::conformance::a_timer_that_cannot_be_decoded_never_stops_the_others(store, |sql| {
        let conn = rusqlite::Connection::open(&path).expect("open the file");
        conn.execute_batch(sql).expect("edit the file");
    })
    .await;
}

/// A body made a blob of bytes that are not UTF-8 is found at its seq, not a failed read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_edited_into_bytes_that_are_not_text_is_found_at_its_seq() {
    use keel_core::{AgentId, EventBody, Message, RunId, SessionId, TenantId, Timestamp};
    use keel_store::Store;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("keel.db");
    let store = SqliteStore::open(SqliteOptions::new(&path)).expect("open the store");
    let record = keel_store::SessionRecord {
        id: SessionId::generate(1, 1),
        tenant: TenantId::default_tenant(),
        agent_id: AgentId::generate(1, 1),
        agent_name: "a".into(),
        agent_version: 1,
        created_at: Timestamp::from_millis(1),
        metadata: Default::default(),
        last_seq: 0,
    };
    let note = |text: &str| keel_store::NewEvent {
        at: Timestamp::from_millis(2),
        body: EventBody::RunStarted {
            run_id: RunId::generate(1, 1),
            input: Message::user(text),
            options: Default::default(),
        },
    };
    store
        .create_session(&record, vec![note("one"), note("two"), note("three")])
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).expect("open the file");
    conn.execute("UPDATE events SET body = X'FF00' WHERE seq = 2", [])
        .unwrap();
    let report = keel_store::chain::verify(&store, &record.id).await.unwrap();
    assert_eq!(report.first_bad_seq, Some(2), "{report:?}");
}
