//! A writer process killed with SIGKILL in the middle of group commits loses no append it had
//! acknowledged, and leaves a database that opens, passes `integrity_check` and takes appends.
//! The child process is this test binary itself, running the ignored `appending_child` test.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use keel_core::{AgentId, EventBody, Message, RunId, SessionId, TenantId, Timestamp};
use keel_store::{AppendBatch, NewEvent, SessionRecord, SqliteOptions, SqliteStore, Store};

const CHILD_DB: &str = "KEEL_STORE_CRASH_TEST_DB";
const SESSIONS: u64 = 8;
/// Acknowledged appends the parent waits for before it kills the child.
const ACKS_BEFORE_KILL: usize = 300;

fn session_id(n: u64) -> SessionId {
    SessionId::generate(1_000 + n, u128::from(n))
}

fn note(seq: u64) -> NewEvent {
    NewEvent {
        at: Timestamp::from_millis(1_000),
        body: EventBody::RunStarted {
            run_id: RunId::generate(seq, 1),
            input: Message::user(format!("event {seq}")),
            options: Default::default(),
        },
    }
}

#[test]
fn a_killed_writer_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keel.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "appending_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, &path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child process");
    let mut acked = [0u64; SESSIONS as usize];
    let mut acks = 0;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let Some(ack) = line.strip_prefix("ack ") else {
            continue;
        };
        let (session, seq) = ack
            .split_once(' ')
            .expect("ack lines read `ack SESSION SEQ`");
        let (session, seq): (usize, u64) = (session.parse().unwrap(), seq.parse().unwrap());
        acked[session] = acked[session].max(seq);
        acks += 1;
        if acks == ACKS_BEFORE_KILL {
            child.kill().expect("SIGKILL the child");
            break;
        }
    }
    child.wait().unwrap();
    assert_eq!(
        acks, ACKS_BEFORE_KILL,
        "the child stopped before it was killed"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let store =
            SqliteStore::open(SqliteOptions::new(&path)).expect("the database opens after a crash");
        for (n, &acked) in acked.iter().enumerate() {
            let id = session_id(n as u64);
            let events = store.read_events(&id, 0, 1_000_000).await.unwrap();
            let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(
                seqs,
                (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "session {n} has a gap"
            );
            assert!(
                seqs.len() as u64 >= acked,
                "session {n}: acknowledged seq {acked}, but only {} stored",
                seqs.len()
            );
            let last = seqs.len() as u64;
            assert_eq!(
                store
                    .append(&id, last, AppendBatch::events(vec![note(last + 1)]))
                    .await
                    .unwrap(),
                last + 1
            );
        }
    });
    let check: String = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}

/// The child: appends to every session at once and prints each acknowledged seq, until killed.
#[test]
#[ignore = "the child process of a_killed_writer_loses_no_acknowledged_append"]
fn appending_child() {
    let Some(path) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(append_until_killed(Path::new(&path)));
}

async fn append_until_killed(path: &Path) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(SqliteOptions::new(path)).unwrap());
    let mut writers = tokio::task::JoinSet::new();
    for n in 0..SESSIONS {
        let record = SessionRecord {
            id: session_id(n),
            tenant: TenantId::default_tenant(),
            agent_id: AgentId::generate(1, 1),
            agent_name: "crash".into(),
            agent_version: 1,
            created_at: Timestamp::from_millis(1_000),
            metadata: serde_json::Map::new(),
            last_seq: 0,
        };
        store.create_session(&record, Vec::new()).await.unwrap();
        let store = store.clone();
        writers.spawn(async move {
            // Bounded: the parent kills this process long before the last append.
            for seq in 1..=100_000 {
                store
                    .append(&record.id, seq - 1, AppendBatch::events(vec![note(seq)]))
                    .await
                    .unwrap();
                println!("ack {n} {seq}");
            }
        });
    }
    while writers.join_next().await.is_some() {}
}
