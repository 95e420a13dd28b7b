//! Store benchmarks, printed as markdown tables: durable appends per second with 1, 16 and 256
//! sessions appending at once (one event per append, fsync at every commit), group commit on
//! and off; the time to load a 10,000-event session with and without a snapshot; and what the
//! always-synchronous security writes (API keys, revocations) cost, alone and beside appends.
//!
//! Then the same append case on PostgreSQL (`KEEL_BENCH_PG_URL`, default the local server's
//! `test` database; each case in a schema of its own, dropped after; skipped, and said so,
//! where no server answers), with `PgOptions`' defaults (16 connections).
//!
//! `cargo bench -p keel-store`. `KEEL_BENCH_SECS` sets each append case's length (default 3);
//! `KEEL_BENCH_DURABILITY=normal` measures `Durability::Normal` (no fsync per commit) instead;
//! `KEEL_BENCH_DIR` the directory for the database files (default: the target directory, on
//! the same disk keel's data would be; a tmpfs would make fsync free and the numbers lie).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_core::{
    AgentDef, AgentId, EventBody, Limits, Message, RunId, SessionId, SessionState, TenantId,
    Timestamp,
};
use keel_store::{
    ApiKeyRecord, AppendBatch, Durability, KeyScope, NewEvent, PgOptions, PgStore, SessionRecord,
    Snapshot, SqliteOptions, SqliteStore, Store, TenantRecord,
};

const SESSION_COUNTS: [usize; 3] = [1, 16, 256];
const LOG_LENGTH: u64 = 10_000;
/// Where the snapshot sits in the long log: the engine snapshots every so many events, so a
/// real load reads a short tail after it.
const SNAPSHOT_TAIL: u64 = 100;

fn main() {
    let case_length = Duration::from_secs_f64(
        std::env::var("KEEL_BENCH_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3.0),
    );
    let base = std::env::var_os("KEEL_BENCH_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_TMPDIR").map(PathBuf::from))
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("create the benchmark directory");
    let dir = tempfile::Builder::new()
        .prefix("keel-store-bench-")
        .tempdir_in(&base)
        .expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let durability = match std::env::var("KEEL_BENCH_DURABILITY").as_deref() {
        Ok("normal") => Durability::Normal,
        _ => Durability::Full,
    };

    println!(
        "SQLite store, durability {durability:?} (WAL), files under {}\n",
        base.display()
    );
    println!(
        "| sessions appending at once | group commit | appended events/s | p50 append | p99 append |"
    );
    println!("| ---: | :---: | ---: | ---: | ---: |");
    for group_commit in [true, false] {
        for sessions in SESSION_COUNTS {
            let path = dir
                .path()
                .join(format!("append-{sessions}-{group_commit}.db"));
            let result = runtime.block_on(sqlite_appends(
                path,
                durability,
                sessions,
                group_commit,
                case_length,
                None,
            ));
            println!(
                "| {sessions} | {} | {:.0} | {} | {} |",
                if group_commit { "on" } else { "off" },
                result.events_per_second,
                millis(result.p50),
                millis(result.p99)
            );
        }
    }

    println!("\n| load of a {LOG_LENGTH}-event session | events read | mean | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let loads = runtime.block_on(loads(dir.path().join("load.db")));
    for (case, events_read, times) in loads {
        println!(
            "| {case} | {events_read} | {} | {} | {} |",
            millis(mean(&times)),
            millis(pct(&times, 50)),
            millis(pct(&times, 99))
        );
    }

    println!(
        "\n| durability | one append p50 / p99 | create a key p50 / p99 | revoke a key p50 / p99 |"
    );
    println!("| --- | ---: | ---: | ---: |");
    for durability in [Durability::Full, Durability::Normal] {
        let path = dir.path().join(format!("security-{durability:?}.db"));
        let [append, create, revoke] = runtime.block_on(security_latencies(path, durability));
        println!(
            "| {durability:?} | {} | {} | {} |",
            p50_p99(&append),
            p50_p99(&create),
            p50_p99(&revoke)
        );
    }
    println!(
        "\n| durability | 16 sessions' appends/s alone | with a key created and revoked every {} ms | ratio |",
        REVOCATION_EVERY.as_millis()
    );
    println!("| --- | ---: | ---: | ---: |");
    for durability in [Durability::Full, Durability::Normal] {
        // Alternating rounds, medians: a busy machine's noise falls on both cases alike.
        let mut rates: [Vec<f64>; 2] = Default::default();
        for round in 0..BESIDE_ROUNDS {
            for (rate, revocations) in rates.iter_mut().zip([None, Some(REVOCATION_EVERY)]) {
                let path = dir.path().join(format!(
                    "beside-{durability:?}-{round}-{}.db",
                    revocations.is_some()
                ));
                rate.push(
                    runtime
                        .block_on(sqlite_appends(
                            path,
                            durability,
                            16,
                            true,
                            case_length,
                            revocations,
                        ))
                        .events_per_second,
                );
            }
        }
        let [alone, beside] = rates.map(|mut r| {
            r.sort_by(f64::total_cmp);
            r[r.len() / 2]
        });
        println!(
            "| {durability:?} | {alone:.0} | {beside:.0} | {:.2} |",
            beside / alone
        );
    }
    runtime.block_on(postgres_appends(case_length));
}

/// The append case on PostgreSQL: one transaction per append, no group commit.
async fn postgres_appends(length: Duration) {
    let url = std::env::var("KEEL_BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    println!("\nPostgreSQL store, `PgOptions` defaults\n");
    let admin = match tokio_postgres::connect(&url, tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => {
            println!("(skipped: no PostgreSQL server answers: {e}; set KEEL_BENCH_PG_URL)");
            return;
        }
    };
    println!("| sessions appending at once | appended events/s | p50 append | p99 append |");
    println!("| ---: | ---: | ---: | ---: |");
    for sessions in SESSION_COUNTS {
        let schema = format!("keel_bench_{}_{sessions}", std::process::id());
        let options = PgOptions {
            schema: Some(schema.clone()),
            ..PgOptions::new(&url)
        };
        let store = PgStore::open(options).await.expect("open the store");
        let result = appends(Arc::new(store), sessions, length, None).await;
        println!(
            "| {sessions} | {:.0} | {} | {} |",
            result.events_per_second,
            millis(result.p50),
            millis(result.p99)
        );
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .await
            .expect("drop the benchmark's schema");
    }
}

/// How often the "beside appends" case creates and revokes a key: far more often than any real
/// deployment (keys change when people are onboarded or leave, a few times a day).
const REVOCATION_EVERY: Duration = Duration::from_millis(10);
/// Rounds of the "beside appends" case, alternating with and without revocations.
const BESIDE_ROUNDS: usize = 3;
/// Writes timed one after another in the latency case.
const SECURITY_SAMPLES: u64 = 300;

struct AppendResult {
    events_per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// The append case on a SQLite file at `path`.
async fn sqlite_appends(
    path: PathBuf,
    durability: Durability,
    sessions: usize,
    group_commit: bool,
    length: Duration,
    revoke_every: Option<Duration>,
) -> AppendResult {
    let options = SqliteOptions {
        durability,
        group_commit,
        ..SqliteOptions::new(path)
    };
    let store = Arc::new(SqliteStore::open(options).expect("open the store"));
    appends(store, sessions, length, revoke_every).await
}

/// `sessions` tasks, each appending one event at a time to its own session until the deadline.
async fn appends(
    store: Arc<dyn Store>,
    sessions: usize,
    length: Duration,
    revoke_every: Option<Duration>,
) -> AppendResult {
    let mut ids = Vec::new();
    for n in 0..sessions {
        ids.push(create_session(store.as_ref(), n as u64).await);
    }
    let started = Instant::now();
    let deadline = started + length;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(every) = revoke_every {
        create_tenant(store.as_ref()).await;
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                create_and_revoke(store.as_ref(), n).await;
                n += 1;
                tokio::time::sleep(every).await;
            }
        });
    }
    for id in ids {
        let store = store.clone();
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut last = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                last = store
                    .append(&id, last, AppendBatch::events(vec![event(last)]))
                    .await
                    .expect("append");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = tasks.join_next().await {
        latencies.extend(done.expect("an appending task panicked"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    AppendResult {
        events_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(&latencies, 50),
        p99: pct(&latencies, 99),
    }
}

/// Ordinary appends, key creations and key revocations, one at a time, each timed.
async fn security_latencies(path: PathBuf, durability: Durability) -> [Vec<Duration>; 3] {
    let options = SqliteOptions {
        durability,
        ..SqliteOptions::new(path)
    };
    let store = SqliteStore::open(options).expect("open the store");
    let id = create_session(&store, 0).await;
    create_tenant(&store).await;
    let mut timed: [Vec<Duration>; 3] = Default::default();
    // Interleaved, so that a busy machine slows all three alike.
    for n in 0..SECURITY_SAMPLES {
        let started = Instant::now();
        store
            .append(&id, n, AppendBatch::events(vec![event(n)]))
            .await
            .expect("append");
        timed[0].push(started.elapsed());
        let key = key(n);
        let started = Instant::now();
        store.create_api_key(&key).await.expect("create a key");
        timed[1].push(started.elapsed());
        let started = Instant::now();
        store
            .revoke_api_key(&key.prefix, Timestamp::from_millis(2_000))
            .await
            .expect("revoke a key");
        timed[2].push(started.elapsed());
    }
    for times in &mut timed {
        times.sort();
    }
    timed
}

async fn create_and_revoke(store: &dyn Store, n: u64) {
    let key = key(1_000_000 + n);
    store.create_api_key(&key).await.expect("create a key");
    store
        .revoke_api_key(&key.prefix, Timestamp::from_millis(2_000))
        .await
        .expect("revoke a key");
}

/// The tenant the benchmark's keys belong to.
async fn create_tenant(store: &dyn Store) {
    let tenant = TenantRecord {
        id: TenantId::default_tenant(),
        name: "bench".into(),
        created_at: Timestamp::from_millis(1_000),
    };
    store
        .create_tenant(&tenant)
        .await
        .expect("create the tenant");
}

fn key(n: u64) -> ApiKeyRecord {
    ApiKeyRecord {
        prefix: format!("kk_bench{n:08}"),
        tenant: TenantId::default_tenant(),
        scope: KeyScope::Tenant,
        secret_hash: vec![0; 32],
        created_at: Timestamp::from_millis(1_000),
        revoked_at: None,
    }
}

/// Loads one long session repeatedly, first from its log alone, then from a snapshot.
async fn loads(path: PathBuf) -> Vec<(String, usize, Vec<Duration>)> {
    let store = SqliteStore::open(SqliteOptions::new(path)).expect("open the store");
    let id = create_session(&store, 0).await;
    let mut last = 0;
    while last < LOG_LENGTH {
        let batch = (last..(last + 500).min(LOG_LENGTH)).map(event).collect();
        last = store
            .append(&id, last, AppendBatch::events(batch))
            .await
            .expect("append");
    }
    let mut results = vec![("log only".to_string(), time_loads(&store, &id).await)];
    let state = SessionState {
        last_seq: LOG_LENGTH - SNAPSHOT_TAIL,
        agent: Some(agent()),
        ..SessionState::default()
    };
    store
        .put_snapshot(
            &id,
            Snapshot {
                seq: state.last_seq,
                state,
            },
        )
        .await
        .expect("put a snapshot");
    results.push((
        format!("snapshot + {SNAPSHOT_TAIL}-event tail"),
        time_loads(&store, &id).await,
    ));
    results
        .into_iter()
        .map(|(case, (read, times))| (case, read, times))
        .collect()
}

/// Up to 200 loads or 3 seconds, whichever ends first; returns events read and sorted times.
async fn time_loads(store: &SqliteStore, id: &SessionId) -> (usize, Vec<Duration>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut times = Vec::new();
    let mut read = 0;
    while times.len() < 200 && Instant::now() < deadline {
        let started = Instant::now();
        let loaded = store.load(id).await.expect("load");
        times.push(started.elapsed());
        read = loaded.tail.len();
    }
    times.sort();
    (read, times)
}

async fn create_session(store: &dyn Store, n: u64) -> SessionId {
    let record = SessionRecord {
        id: SessionId::generate(1_000 + n, u128::from(n)),
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

/// A user message of about 250 bytes, the size of a short chat turn.
fn event(n: u64) -> NewEvent {
    let text = format!(
        "message {n}: {}",
        "the quick brown fox jumps over the lazy dog ".repeat(5)
    );
    NewEvent {
        at: Timestamp::from_millis(1_000),
        body: EventBody::RunStarted {
            run_id: RunId::generate(n, 1),
            input: Message::user(text),
            options: Default::default(),
        },
    }
}

fn agent() -> AgentDef {
    AgentDef {
        id: AgentId::generate(1, 1),
        name: "bench".into(),
        version: 1,
        instructions: "You are a benchmark.".into(),
        model: "scripted/echo".into(),
        tools: Vec::new(),
        limits: Limits::default(),
        memory_blocks: Vec::new(),
        compaction: Default::default(),
        memory: Default::default(),
    }
}

/// The `p`th percentile of sorted durations.
fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn mean(times: &[Duration]) -> Duration {
    times.iter().sum::<Duration>() / u32::try_from(times.len().max(1)).unwrap_or(u32::MAX)
}

fn p50_p99(sorted: &[Duration]) -> String {
    format!("{} / {}", millis(pct(sorted, 50)), millis(pct(sorted, 99)))
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1_000.0)
}
