//! `keel bench`: end-to-end durable turns through the real engine and SQLite store with the
//! scripted model, so the numbers in BENCHMARKS.md come from a command anyone can rerun.
//! A turn is: queue the input (leased to this node at once when its session is idle), load/
//! decide, log the intent, call the model, log the reply and the run's end (fsync'd), and tell
//! the waiter. Besides time, each case reports the store's commits and bytes on disk per turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use keel_core::{AgentDef, Limits, Message, RunStatus, TenantId};
use keel_engine::{Engine, EngineConfig, ModelRegistry};
use keel_models::providers::scripted::{ScriptedClient, ScriptedConfig};
use keel_store::{Durability, SqliteOptions, SqliteStore};

#[derive(Args)]
pub struct BenchArgs {
    /// Seconds per throughput case.
    #[arg(long, default_value_t = 5)]
    pub secs: u64,
    /// Turns of the one long session used for per-turn cost and bytes per turn.
    #[arg(long, default_value_t = 1000)]
    pub long_turns: usize,
    /// `full` (fsync per commit) or `normal`.
    #[arg(long, default_value = "full")]
    pub durability: String,
}

struct Bench {
    engine: Engine,
    store: Arc<SqliteStore>,
    tenant: TenantId,
    dir: tempfile::TempDir,
}

async fn setup(durability: &str) -> anyhow::Result<Bench> {
    let dir = tempfile::Builder::new()
        .prefix("keel-bench")
        .tempdir_in(std::env::current_dir()?)?;
    let mut options = SqliteOptions::new(dir.path().join("keel.db"));
    options.durability = if durability == "normal" {
        Durability::Normal
    } else {
        Durability::Full
    };
    let store = Arc::new(SqliteStore::open(options)?);
    let scripted = ScriptedClient::new(ScriptedConfig {
        first_token_latency: Duration::ZERO,
        token_latency: Duration::ZERO,
        reply_tokens: None,
    });
    let models = ModelRegistry::new().with("scripted", Arc::new(scripted));
    let config = EngineConfig {
        poll_interval: Duration::from_millis(50),
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), models, config);
    let tenant = TenantId::default_tenant();
    engine
        .put_agent(
            &tenant,
            AgentDef {
                id: keel_engine::clock::new_agent_id(),
                name: "bench".into(),
                version: 0,
                instructions: "You are a benchmark.".into(),
                model: "scripted/echo".into(),
                tools: vec![],
                limits: Limits {
                    context_messages: 16,
                    ..Limits::default()
                },
                memory_blocks: Vec::new(),
                compaction: Default::default(),
                memory: Default::default(),
            },
        )
        .await?;
    engine.start().await?;
    Ok(Bench {
        engine,
        store,
        tenant,
        dir,
    })
}

impl Bench {
    async fn turn(&self, session: &keel_core::SessionId, text: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let run = self
            .engine
            .submit(&self.tenant, session, Message::user(text))
            .await?;
        let done = self.engine.wait_run(&self.tenant, &run.id).await?;
        anyhow::ensure!(
            done.status == RunStatus::Completed,
            "turn failed: {:?}",
            done.error
        );
        Ok(started.elapsed())
    }

    /// Bytes of the database's used pages as a reader sees them (WAL included, free pages
    /// not): what the data takes on disk once checkpointed.
    fn db_bytes(&self) -> anyhow::Result<u64> {
        let conn = rusqlite::Connection::open_with_flags(
            self.dir.path().join("keel.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )?;
        let pragma =
            |name: &str| conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, u64>(0));
        Ok((pragma("page_count")? - pragma("freelist_count")?) * pragma("page_size")?)
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    println!(
        "## keel bench (durability={}, scripted model, SQLite)\n",
        args.durability
    );
    println!(
        "| concurrent sessions | turns | turns/s | p50 | p99 | commits/turn | bytes/turn |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    for sessions in [1usize, 64] {
        let bench = setup(&args.durability).await?;
        let bench = Arc::new(bench);
        let (commits_before, bytes_before) = (bench.store.commits(), bench.db_bytes()?);
        let deadline = Instant::now() + Duration::from_secs(args.secs);
        let mut tasks = Vec::new();
        for _ in 0..sessions {
            let bench = bench.clone();
            tasks.push(tokio::spawn(async move {
                let session = bench
                    .engine
                    .create_session(&bench.tenant, "bench", Default::default())
                    .await?
                    .id;
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    latencies.push(bench.turn(&session, "hello, how are you today?").await?);
                }
                anyhow::Ok(latencies)
            }));
        }
        let started = Instant::now();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = started.elapsed();
        // Sessions are created inside the timed tasks: their commits and bytes are left in,
        // one session's worth over thousands of turns.
        let turns = all.len() as f64;
        let commits = (bench.store.commits() - commits_before) as f64 / turns;
        let bytes = bench.db_bytes()?.saturating_sub(bytes_before) as f64 / turns;
        all.sort();
        let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
        println!(
            "| {sessions} | {} | {:.0} | {:.2} ms | {:.2} ms | {commits:.2} | {bytes:.0} |",
            all.len(),
            turns / elapsed.as_secs_f64(),
            pct(0.5).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
        bench.engine.shutdown().await;
    }

    println!("\n### One long session: per-turn time and bytes on disk per turn\n");
    println!(
        "| message size | median turn 1-10 | median turn 91-110 | median turn {}-{} | bytes/turn (first half) | bytes/turn (second half) |",
        args.long_turns.saturating_sub(19),
        args.long_turns
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for size in [100usize, 10_000] {
        let bench = setup(&args.durability).await?;
        let session = bench
            .engine
            .create_session(&bench.tenant, "bench", Default::default())
            .await?
            .id;
        let text = "x".repeat(size);
        let mut times = Vec::with_capacity(args.long_turns);
        let mut half_bytes = 0;
        let start_bytes = bench.db_bytes()?;
        for i in 0..args.long_turns {
            times.push(bench.turn(&session, &text).await?);
            if i + 1 == args.long_turns / 2 {
                half_bytes = bench.db_bytes()?;
            }
        }
        let end_bytes = bench.db_bytes()?;
        // Medians: one fsync stall must not pass for a cost that grows with history.
        let median = |r: std::ops::Range<usize>| {
            let mut window: Vec<Duration> =
                times[r.start.min(times.len())..r.end.min(times.len())].to_vec();
            window.sort();
            window
                .get(window.len() / 2)
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        let n = args.long_turns;
        let half = (n / 2) as f64;
        println!(
            "| {size} B | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.0} |",
            median(0..10),
            median(90..110),
            median(n.saturating_sub(20)..n),
            (half_bytes.saturating_sub(start_bytes)) as f64 / half,
            (end_bytes.saturating_sub(half_bytes)) as f64 / (n as f64 - half),
        );
        bench.engine.shutdown().await;
    }
    Ok(())
}
