//! HTTP benchmarks of the native API, printed as markdown: turns per second through
//! `POST /v1/sessions/{id}/messages` (mode `wait`, scripted model, API key checked on every
//! request) with 64 and 256 sessions sending at once, with p50/p99 latency; then the process's
//! RSS with many sessions stored and 1,000 of them active.
//!
//! `cargo bench -p keel-server --bench http`. `KEEL_BENCH_SECS` sets each throughput case's
//! length (default 5); `KEEL_BENCH_DURABILITY=normal` skips the fsync per commit;
//! `KEEL_BENCH_STORED` the sessions stored for the RSS case (default 100,000).

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_core::{AgentDef, EventBody, Limits, TenantId};
use keel_engine::{Engine, EngineConfig, ModelRegistry};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_store::{Durability, NewEvent, SessionRecord, SqliteOptions, SqliteStore, Store};
use serde_json::json;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Bench {
    /// The engine's store, for storing the RSS case's sessions directly (setup, not measured).
    store: Arc<dyn Store>,
    base: String,
    key: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn start() -> Bench {
    let base_dir = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base_dir).unwrap();
    let dir = tempfile::Builder::new()
        .prefix("keel-server-bench-")
        .tempdir_in(&base_dir)
        .unwrap();
    let mut options = SqliteOptions::new(dir.path().join("keel.db"));
    if std::env::var("KEEL_BENCH_DURABILITY").as_deref() == Ok("normal") {
        options.durability = Durability::Normal;
    }
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(options).unwrap());
    let models = ModelRegistry::new().with(
        "scripted".to_string(),
        Arc::new(ScriptedClient::new(ScriptedConfig::default())),
    );
    let engine = Engine::new(store.clone(), models, EngineConfig::default());
    let tenant = TenantId::default_tenant();
    engine
        .put_agent(
            &tenant,
            AgentDef {
                id: keel_engine::clock::new_agent_id(),
                name: "default".into(),
                version: 0,
                instructions: "You are a benchmark.".into(),
                model: "scripted/echo".into(),
                tools: Vec::new(),
                limits: Limits::default(),
                memory_blocks: Vec::new(),
                compaction: Default::default(),
                memory: Default::default(),
            },
        )
        .await
        .unwrap();
    engine.start().await.unwrap();
    let key = keel_server::bootstrap(&engine, dir.path())
        .await
        .unwrap()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(keel_server::serve(
        listener,
        engine.clone(),
        keel_server::ServerConfig::default(),
        std::future::pending(),
    ));
    Bench {
        store,
        base,
        key,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .unwrap(),
        _dir: dir,
    }
}

impl Bench {
    async fn new_session(&self) -> String {
        let resp: serde_json::Value = self
            .client
            .post(format!("{}/v1/sessions", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"agent": "default"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        resp["id"].as_str().unwrap().to_string()
    }

    /// One turn in `wait` mode; its latency.
    async fn turn(&self, session: &str) -> Duration {
        let started = Instant::now();
        let resp = self
            .client
            .post(format!("{}/v1/sessions/{session}/messages", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"content": "hello bench"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        let run: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(run["status"], "completed", "{run}");
        started.elapsed()
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn throughput(bench: &Arc<Bench>, sessions: usize, length: Duration) {
    let mut ids = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        ids.push(bench.new_session().await);
    }
    let started = Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let bench = bench.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while started.elapsed() < length {
                    latencies.push(bench.turn(&id).await);
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let took = started.elapsed();
    all.sort();
    println!(
        "| {sessions} | {} | {:.0} | {:.1} ms | {:.1} ms |",
        all.len(),
        all.len() as f64 / took.as_secs_f64(),
        percentile(&all, 0.5).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3
    );
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn memory(bench: &Arc<Bench>, stored: usize) {
    let store = bench.store.clone();
    let tenant = TenantId::default_tenant();
    let agent = store
        .get_agent(&tenant, "default", None)
        .await
        .unwrap()
        .unwrap();
    let started = Instant::now();
    // Stored directly (in parallel batches through the group commit): setup, not measured.
    for chunk in (0..stored).collect::<Vec<_>>().chunks(512) {
        let creates = chunk.iter().map(|_| {
            let store = store.clone();
            let agent = agent.clone();
            let tenant = tenant.clone();
            async move {
                let now = keel_engine::clock::now();
                let record = SessionRecord {
                    id: keel_engine::clock::new_session_id(),
                    tenant: tenant.clone(),
                    agent_id: agent.id.clone(),
                    agent_name: agent.name.clone(),
                    agent_version: agent.version,
                    created_at: now,
                    metadata: Default::default(),
                    last_seq: 1,
                };
                let first = NewEvent {
                    at: now,
                    body: EventBody::SessionStarted {
                        tenant,
                        agent,
                        metadata: Default::default(),
                    },
                };
                store.create_session(&record, vec![first]).await.unwrap();
            }
        });
        futures::future::join_all(creates).await;
    }
    let stored_in = started.elapsed();
    let before = rss_mb();
    let active = 1_000;
    let mut ids = Vec::with_capacity(active);
    for _ in 0..active {
        ids.push(bench.new_session().await);
    }
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let bench = bench.clone();
            tokio::spawn(async move {
                for _ in 0..3 {
                    bench.turn(&id).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "\n{stored} sessions stored (in {:.1} s), then 1,000 active sessions of 3 turns each over HTTP: RSS {before:.0} MB before the active ones, {:.0} MB after (server, engine, SQLite and the benchmark's client in one process)",
        stored_in.as_secs_f64(),
        rss_mb()
    );
}

fn main() {
    let length = Duration::from_secs_f64(env_or("KEEL_BENCH_SECS", 5.0));
    let stored = env_or("KEEL_BENCH_STORED", 100_000usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bench = Arc::new(start().await);
        println!("keel serve over 127.0.0.1, scripted model, mode `wait`, {length:?} per case\n");
        println!("| sessions sending at once | turns | turns/s | p50 | p99 |");
        println!("| ---: | ---: | ---: | ---: | ---: |");
        for sessions in [64, 256] {
            throughput(&bench, sessions, length).await;
        }
        memory(&bench, stored).await;
    });
}
