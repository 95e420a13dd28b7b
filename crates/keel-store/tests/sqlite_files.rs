//! What only the SQLite backend has to get right: its file survives a close and a reopen, and
//! a file that is damaged, foreign, too new, unwritable or full gives a clear `StoreError`
//! naming the path, never a panic, and never costs what was stored before.

mod common;

use common::{agent, note, session};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use keel_core::{EventDecodeError, Message, RunId, RunStatus, SessionId, TenantId, Timestamp};
use keel_store::{
    AppendBatch, Durability, RunRecord, Snapshot, SqliteOptions, SqliteStore, Store, StoreError,
};

fn open(path: &Path) -> Result<SqliteStore, StoreError> {
    SqliteStore::open(SqliteOptions::new(path))
}

/// A database holding one session with `events` events, closed again.
async fn database_with_events(path: &Path, events: u64) -> SessionId {
    let store = open(path).unwrap();
    let id = session(&store, 1).await;
    for chunk in 0..events.div_ceil(100) {
        let batch = (0..100.min(events - chunk * 100))
            .map(|i| note(&format!("event {} {}", chunk * 100 + i, "x".repeat(200))));
        store
            .append(&id, chunk * 100, AppendBatch::events(batch.collect()))
            .await
            .unwrap();
    }
    id
}

fn integrity(path: &Path) -> String {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn expect_error(result: Result<SqliteStore, StoreError>) -> StoreError {
    match result {
        Ok(_) => panic!("the store opened; expected an error"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn reopening_after_a_drop_keeps_everything() {
    for durability in [Durability::Full, Durability::Normal] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("keel.db");
        let options = SqliteOptions {
            durability,
            readers: 2,
            ..SqliteOptions::new(&path)
        };
        let tenant = TenantId::default_tenant();
        let (id, run) = {
            let store = SqliteStore::open(options.clone()).unwrap();
            store.put_agent(&tenant, agent("helper")).await.unwrap();
            let id = session(&store, 1).await;
            store
                .append(&id, 0, AppendBatch::events(vec![note("one"), note("two")]))
                .await
                .unwrap();
            store
                .put_snapshot(
                    &id,
                    Snapshot {
                        seq: 1,
                        state: Default::default(),
                    },
                )
                .await
                .unwrap();
            let run = RunRecord {
                id: RunId::generate(5, 5),
                tenant: tenant.clone(),
                session: id.clone(),
                input: Message::user("go"),
                options: Default::default(),
                status: RunStatus::Queued,
                created_at: Timestamp::from_millis(5),
                output: None,
                error: None,
                cancel_requested: false,
                lease_owner: None,
                lease_until: None,
            };
            store.enqueue_run(&run).await.unwrap();
            (id, run)
        };
        assert!(
            !dir.path().join("nested").join("keel.db-wal").exists(),
            "closing checkpoints and removes the WAL"
        );

        let store = SqliteStore::open(options).unwrap();
        assert_eq!(
            store
                .get_agent(&tenant, "helper", None)
                .await
                .unwrap()
                .map(|a| a.version),
            Some(1)
        );
        let loaded = store.load(&id).await.unwrap();
        assert_eq!(loaded.snapshot.map(|s| s.seq), Some(1));
        assert_eq!(loaded.tail.len(), 1);
        assert_eq!(store.get_run(&tenant, &run.id).await.unwrap(), Some(run));
        assert_eq!(
            store
                .append(&id, 2, AppendBatch::events(vec![note("three")]))
                .await
                .unwrap(),
            3,
            "{durability:?}"
        );
    }
}

#[tokio::test]
async fn two_stores_on_one_file_see_each_others_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let (a, b) = (open(&path).unwrap(), open(&path).unwrap());
    let id = session(&a, 1).await;
    assert_eq!(
        a.append(&id, 0, AppendBatch::events(vec![note("from a")]))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.read_events(&id, 0, 10).await.unwrap().len(),
        1,
        "b read a stale copy"
    );
    match b
        .append(&id, 0, AppendBatch::events(vec![note("stale")]))
        .await
    {
        Err(StoreError::Conflict {
            expected: 0,
            actual: 1,
            ..
        }) => {}
        other => panic!("expected a conflict across stores, got {other:?}"),
    }
    assert_eq!(
        b.append(&id, 1, AppendBatch::events(vec![note("from b")]))
            .await
            .unwrap(),
        2
    );
    assert_eq!(a.read_events(&id, 0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("not a keel database"),
        "{message}"
    );
}

#[tokio::test]
async fn a_directory_in_place_of_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let error = expect_error(open(dir.path()));
    assert!(error.to_string().contains("is a directory"), "{error}");
}

#[tokio::test]
async fn a_truncated_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    database_with_events(&path, 2_000).await;
    let length = std::fs::metadata(&path).unwrap().len();
    assert!(
        length > 100_000,
        "the database should span many pages, it has {length} bytes"
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
}

#[tokio::test]
async fn a_damaged_page_is_reported_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    database_with_events(&path, 2_000).await;
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 8192].fill(0xA5);
    std::fs::write(&path, bytes).unwrap();
    let error = expect_error(open(&path));
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("backup"),
        "{message}"
    );
}

#[tokio::test]
async fn a_schema_from_a_newer_keel_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    drop(open(&path).unwrap());
    let newer = keel_store::sqlite::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let message = expect_error(open(&path)).to_string();
    assert!(
        message.contains(&format!("schema version {newer}")) && message.contains("upgrade keel"),
        "{message}"
    );
}

#[tokio::test]
async fn a_path_below_a_regular_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("data");
    std::fs::write(&blocker, "a file where the data directory should be").unwrap();
    let error = expect_error(open(&blocker.join("keel.db")));
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&blocker.display().to_string())
            && message.contains("choose a data directory"),
        "{message}"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn a_directory_without_write_permission_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let restore = |locked: &PathBuf| {
        std::fs::set_permissions(locked, std::fs::Permissions::from_mode(0o755)).unwrap()
    };
    if std::fs::write(locked.join("probe"), "").is_ok() {
        // Root (or CAP_DAC_OVERRIDE) writes anywhere: there is nothing to refuse here.
        eprintln!(
            "skipped: this user may write to a 0555 directory, so permissions cannot be tested"
        );
        restore(&locked);
        return;
    }
    let path = locked.join("keel.db");
    let result = open(&path);
    restore(&locked);
    let error = expect_error(result);
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(&path.display().to_string()) && message.contains("writable"),
        "{message}"
    );
}

/// A size cap makes the database "full" the way a full disk does (SQLITE_FULL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_database_fails_appends_cleanly_and_keeps_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let capped = SqliteOptions {
        max_size_bytes: Some(512 * 1024),
        ..SqliteOptions::new(&path)
    };
    let store = Arc::new(SqliteStore::open(capped).unwrap());
    let mut sessions = Vec::new();
    for n in 0..8 {
        sessions.push(session(store.as_ref(), n).await);
    }
    // Eight writers at once, so the failures land inside group commits too.
    let mut writers = tokio::task::JoinSet::new();
    for id in sessions.clone() {
        let store = store.clone();
        writers.spawn(async move {
            let mut last = 0;
            for i in 0..10_000 {
                match store
                    .append(
                        &id,
                        last,
                        AppendBatch::events(vec![note(&format!("{i} {}", "y".repeat(2_000)))]),
                    )
                    .await
                {
                    Ok(seq) => last = seq,
                    Err(error) => return (id, last, error),
                }
            }
            panic!("10000 appends of 2 kB fitted in a 512 kB database");
        });
    }
    let mut stored = Vec::new();
    while let Some(done) = writers.join_next().await {
        let (id, last, error) = done.unwrap();
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        assert!(error.to_string().contains("full"), "{error}");
        stored.push((id, last));
    }
    assert!(
        stored.iter().any(|&(_, last)| last > 0),
        "nothing was stored before the database filled up"
    );
    for (id, last) in &stored {
        let events = store.read_events(id, 0, 100_000).await.unwrap();
        assert_eq!(
            events.len() as u64,
            *last,
            "session {id}: acknowledged events lost, or failed ones kept"
        );
    }
    drop(store);
    assert_eq!(integrity(&path), "ok");

    let store = open(&path).unwrap();
    for (id, last) in &stored {
        assert_eq!(
            store
                .append(id, *last, AppendBatch::events(vec![note("room again")]))
                .await
                .unwrap(),
            last + 1
        );
    }
}

#[tokio::test]
async fn an_event_from_a_newer_keel_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = open(&path).unwrap();
    let id = session(&store, 1).await;
    store
        .append(&id, 0, AppendBatch::events(vec![note("known")]))
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO events (session, seq, type, at, body) VALUES (?1, 2, 'memory_recalled', 0, '{\"type\":\"memory_recalled\"}')",
        [id.as_str()],
    )
    .unwrap();
    conn.execute(
        "UPDATE sessions SET last_seq = 2 WHERE id = ?1",
        [id.as_str()],
    )
    .unwrap();

    assert_eq!(
        store.read_events(&id, 0, 1).await.unwrap().len(),
        1,
        "events before the unknown one still read"
    );
    match store.load(&id).await {
        Err(StoreError::Event {
            seq: 2,
            source: EventDecodeError::UnknownType { type_name, .. },
            ..
        }) => {
            assert_eq!(type_name, "memory_recalled");
        }
        other => panic!("expected an Event error, got {other:?}"),
    }
    let message = store.read_events(&id, 0, 10).await.unwrap_err().to_string();
    assert!(
        message.contains("seq 2") && message.contains("upgrade keel"),
        "{message}"
    );
}

#[tokio::test]
async fn a_snapshot_that_no_longer_decodes_is_skipped_for_the_full_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let store = open(&path).unwrap();
    let id = session(&store, 1).await;
    store
        .append(
            &id,
            0,
            AppendBatch::events(vec![note("a"), note("b"), note("c")]),
        )
        .await
        .unwrap();
    store
        .put_snapshot(
            &id,
            Snapshot {
                seq: 2,
                state: Default::default(),
            },
        )
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE snapshots SET state = '{\"from\":\"a newer keel\"}' WHERE session = ?1",
        [id.as_str()],
    )
    .unwrap();
    let loaded = store.load(&id).await.unwrap();
    assert_eq!(loaded.snapshot, None);
    assert_eq!(
        loaded.tail.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
}
