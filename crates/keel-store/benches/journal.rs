//! What the tamper-evident journal (`chain.rs`) costs an append, before and after, in one run:
//! each backend's append transaction as it ran before the chain and as it runs with it (the
//! previous event's record read, the SHA-256 record made, the row written with it), timed in
//! alternating rounds on the same database so that a busy machine's noise falls on both alike.
//! The SQL is the backends' own, issued directly, so that both variants run side by side.
//! PostgreSQL's previous record is read back (a round trip), or remembered from the handle's
//! last append (`ChainTips`, what a node driving a session does), each against the same before.
//!
//! `cargo bench -p keel-store --bench journal`. SQLite under `synchronous=FULL` (fsync per
//! commit, keel's default) and `NORMAL`; PostgreSQL at `KEEL_BENCH_PG_URL` (default the local
//! server's `test` database; skipped, and said so, where none answers). `KEEL_BENCH_SECS` sets
//! each round's length (default 1; 5 rounds per variant).

#[path = "support/cpu.rs"]
mod cpu;

use cpu::cpu_time;
use std::time::{Duration, Instant};

use keel_core::{AgentId, EventBody, Message, RunId, SessionId, TenantId, Timestamp};
use keel_store::chain::event_hash;
use keel_store::{PgOptions, PgStore, SessionRecord, SqliteOptions, SqliteStore, Store};
use rusqlite::{OptionalExtension, params};
use tokio_postgres::types::ToSql;

const ROUNDS: usize = 5;

fn main() {
    let round = Duration::from_secs_f64(
        std::env::var("KEEL_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1.0),
    );
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("create the benchmark directory");
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");

    let body = event_body();
    let hashing = time_per_op(100_000, || {
        std::hint::black_box(event_hash(
            Some(HASH),
            7,
            Timestamp::from_millis(1),
            "run_started",
            &body,
        ));
    });
    println!(
        "One SHA-256 record over a {}-byte event: {:.2} µs\n",
        body.len(),
        hashing.as_secs_f64() * 1e6
    );
    println!(
        "| backend | append before (p50 / mean) | with the chain (p50 / mean) | ratio of means | client CPU per append before / with |"
    );
    println!("| --- | ---: | ---: | ---: | ---: |");
    for synchronous in ["FULL", "NORMAL"] {
        let path = dir.path().join(format!("journal-{synchronous}.db"));
        let session = runtime.block_on(async {
            let store = SqliteStore::open(SqliteOptions::new(&path)).expect("open the store");
            new_session(&store).await
        });
        let conn = rusqlite::Connection::open(&path).expect("open the file");
        conn.pragma_update(None, "synchronous", synchronous)
            .unwrap();
        let mut last = 0u64;
        let [before, after] = alternate(round, |chained| {
            last = sqlite_append(&conn, &session, last, &body, chained);
        });
        print_row(
            &format!("SQLite, synchronous={synchronous}"),
            &before,
            &after,
        );
    }
    runtime.block_on(postgres(round, &body));
}

/// One append as the SQLite backend's writer makes it (`sqlite/log.rs`): the last seq checked,
/// the event inserted, the last seq moved; `chained` adds the chain's work.
fn sqlite_append(
    conn: &rusqlite::Connection,
    session: &SessionId,
    last: u64,
    body: &str,
    chained: bool,
) -> u64 {
    let tx = conn.unchecked_transaction().unwrap();
    let actual: u64 = tx
        .prepare_cached("SELECT last_seq FROM sessions WHERE id = ?1")
        .unwrap()
        .query_row([session.as_str()], |r| r.get(0))
        .unwrap();
    assert_eq!(actual, last);
    let seq = last + 1;
    let at = Timestamp::from_millis(1_000);
    if chained {
        let previous: Option<String> = tx
            .prepare_cached("SELECT hash FROM events WHERE session = ?1 AND seq = ?2")
            .unwrap()
            .query_row(params![session.as_str(), last], |r| r.get(0))
            .optional()
            .unwrap()
            .flatten();
        let hash = event_hash(previous.as_deref(), seq, at, "run_started", body);
        tx.prepare_cached("INSERT INTO events (session, seq, type, at, body, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .unwrap()
            .execute(params![session.as_str(), seq, "run_started", at.millis(), body, hash])
            .unwrap();
    } else {
        tx.prepare_cached(
            "INSERT INTO events (session, seq, type, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .unwrap()
        .execute(params![
            session.as_str(),
            seq,
            "run_started",
            at.millis(),
            body
        ])
        .unwrap();
    }
    tx.prepare_cached("UPDATE sessions SET last_seq = ?2 WHERE id = ?1")
        .unwrap()
        .execute(params![session.as_str(), seq])
        .unwrap();
    tx.commit().unwrap();
    seq
}

/// The same on PostgreSQL (`postgres/log.rs`): the append's one statement, and with the chain
/// the previous record read before it.
async fn postgres(round: Duration, body: &str) {
    let url = std::env::var("KEEL_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let (client, connection) = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok(c) => c,
        Err(e) => {
            println!(
                "| PostgreSQL | (skipped: no server answers: {e}; set KEEL_BENCH_PG_URL) | | | |"
            );
            return;
        }
    };
    tokio::spawn(connection);
    let schema = format!("keel_bench_journal_{}", std::process::id());
    let store = PgStore::open(PgOptions {
        schema: Some(schema.clone()),
        ..PgOptions::new(&url)
    })
    .await
    .expect("open the store");
    let session = new_session(&store).await;
    client
        .batch_execute(&format!("SET search_path TO {schema}"))
        .await
        .unwrap();
    let statement = |hash: &str| {
        format!(
            "WITH moved AS (UPDATE sessions SET last_seq = $3 WHERE id = $1 AND last_seq = $2 RETURNING id)
             INSERT INTO events (session, seq, type, at, body{hash})
             SELECT moved.id, $3, 'run_started', $4, $5{} FROM moved",
            if hash.is_empty() { "" } else { ", $6" }
        )
    };
    let plain = client.prepare(&statement("")).await.unwrap();
    let with_hash = client.prepare(&statement(", hash")).await.unwrap();
    let previous = client
        .prepare("SELECT hash FROM events WHERE session = $1 AND seq = $2")
        .await
        .unwrap();
    let mut last = 0i64;
    let mut tip: Option<String> = None;
    let mut samples: [Vec<(Duration, Duration)>; 3] = Default::default();
    let at = Timestamp::from_millis(1_000).millis();
    for _ in 0..ROUNDS {
        // Before; with the chain, the previous record read; with it remembered (`ChainTips`).
        for variant in 0..3 {
            let deadline = Instant::now() + round;
            let cpu = cpu_time();
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let seq = last + 1;
                if variant == 0 {
                    let params: [&(dyn ToSql + Sync); 5] =
                        [&session.as_str(), &last, &seq, &at, &body];
                    client.execute(&plain, &params).await.unwrap();
                    tip = None;
                } else {
                    let prev = match (variant, tip.take()) {
                        (2, Some(record)) => Some(record),
                        _ => client
                            .query_opt(&previous, &[&session.as_str(), &last])
                            .await
                            .unwrap()
                            .and_then(|r| r.get(0)),
                    };
                    let when = Timestamp::from_millis(at);
                    let hash = event_hash(prev.as_deref(), seq as u64, when, "run_started", body);
                    let params: [&(dyn ToSql + Sync); 6] =
                        [&session.as_str(), &last, &seq, &at, &body, &hash];
                    client.execute(&with_hash, &params).await.unwrap();
                    tip = Some(hash);
                }
                last = seq;
                times.push(sent.elapsed());
            }
            let per = (cpu_time() - cpu) / times.len() as u32;
            samples[variant].extend(times.into_iter().map(|t| (t, per)));
        }
    }
    let [before, read, remembered] = samples;
    print_row("PostgreSQL, previous record read", &before, &read);
    print_row(
        "PostgreSQL, previous record remembered",
        &before,
        &remembered,
    );
    drop(store);
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// Runs `append(chained)` in alternating rounds, before then with the chain; each sample is
/// (the append's latency, the round's process CPU time per append).
fn alternate(round: Duration, mut append: impl FnMut(bool)) -> [Vec<(Duration, Duration)>; 2] {
    let mut samples: [Vec<(Duration, Duration)>; 2] = Default::default();
    for _ in 0..ROUNDS {
        for chained in [false, true] {
            let deadline = Instant::now() + round;
            let cpu = cpu_time();
            let mut times = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                append(chained);
                times.push(sent.elapsed());
            }
            let per = (cpu_time() - cpu) / times.len() as u32;
            samples[usize::from(chained)].extend(times.into_iter().map(|t| (t, per)));
        }
    }
    samples
}

fn print_row(backend: &str, before: &[(Duration, Duration)], after: &[(Duration, Duration)]) {
    let summary = |s: &[(Duration, Duration)]| {
        let mut times: Vec<Duration> = s.iter().map(|(t, _)| *t).collect();
        times.sort();
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        let cpu = s.iter().map(|(_, c)| *c).sum::<Duration>() / s.len() as u32;
        (times[times.len() / 2], mean, cpu)
    };
    let (b50, bmean, bcpu) = summary(before);
    let (a50, amean, acpu) = summary(after);
    println!(
        "| {backend} | {} / {} | {} / {} | {:.3} | {} / {} |",
        micros(b50),
        micros(bmean),
        micros(a50),
        micros(amean),
        amean.as_secs_f64() / bmean.as_secs_f64(),
        micros(bcpu),
        micros(acpu)
    );
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn time_per_op(n: u32, mut op: impl FnMut()) -> Duration {
    let started = Instant::now();
    for _ in 0..n {
        op();
    }
    started.elapsed() / n
}

/// A record as the chain stores it, for hashing after it.
const HASH: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// The benchmarks' event (a user message of about 250 bytes) as the store encodes it.
fn event_body() -> String {
    EventBody::RunStarted {
        run_id: RunId::generate(1, 1),
        input: Message::user(format!(
            "message 1: {}",
            "the quick brown fox jumps over the lazy dog ".repeat(5)
        )),
        options: Default::default(),
    }
    .encode()
}

async fn new_session(store: &dyn Store) -> SessionId {
    let record = SessionRecord {
        id: SessionId::generate(1_000, 1),
        tenant: TenantId::default_tenant(),
        agent_id: AgentId::generate(1, 1),
        agent_name: "bench".into(),
        agent_version: 1,
        created_at: Timestamp::from_millis(1_000),
        metadata: serde_json::Map::new(),
        last_seq: 0,
    };
    store
        .create_session(&record, Vec::new())
        .await
        .expect("create a session");
    record.id
}
