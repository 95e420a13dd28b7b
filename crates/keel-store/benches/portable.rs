//! What moving a session costs: a 10,000-event session exported as `keel.session/1` lines
//! (`portable::export_session`: the journal read in pages, each event's line written) and
//! imported into another store (`portable::parse`: every line read, every body decoded and
//! encoded again, the hash chain recomputed; then `ImportPlan::records` and one `Store::import`
//! transaction). Wall time and this process's CPU time per event, and the file's size.
//!
//! `cargo bench -p keel-store --bench portable`: SQLite stores (keel's default durability,
//! `synchronous=FULL`); `KEEL_BENCH_ROUNDS` rounds each (default 5), the median and mean shown.

#[path = "support/cpu.rs"]
mod cpu;

use cpu::cpu_time;
use std::time::{Duration, Instant};

use keel_core::{
    AgentDef, AgentId, EventBody, Limits, Message, RunId, SessionId, TenantId, Timestamp,
};
use keel_store::portable::{export_session, parse};
use keel_store::{AppendBatch, NewEvent, SessionRecord, SqliteOptions, SqliteStore, Store};

/// Events in the session, `session_started` included.
const EVENTS: u64 = 10_000;
/// Events appended per batch while the session is built.
const BATCH: u64 = 100;

fn main() {
    let rounds: usize = std::env::var("KEEL_BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let base = option_env!("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).expect("create the benchmark directory");
    let dir = tempfile::tempdir_in(&base).expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let source = SqliteStore::open(SqliteOptions::new(dir.path().join("source.db")))
            .expect("open the source store");
        let (tenant, id, agent) = build_session(&source).await;
        let now = Timestamp::from_millis(1_800_000_000_000);

        let mut exports = Vec::new();
        let mut text = String::new();
        for _ in 0..rounds {
            let (took, cpu, lines) = timed(export_session(&source, &tenant, &id, now)).await;
            text = lines.expect("export").join("\n");
            exports.push((took, cpu));
        }
        let mut parses = Vec::new();
        let mut imports = Vec::new();
        for round in 0..rounds {
            let target = SqliteStore::open(SqliteOptions::new(
                dir.path().join(format!("target-{round}.db")),
            ))
            .expect("open a target store");
            let elsewhere = TenantId::generate(2, round as u128);
            let (took, cpu, plan) = timed(async { parse(&text) }).await;
            let plan = plan.expect("a whole file");
            parses.push((took, cpu));
            let (took, cpu, written) = timed(async {
                let records = plan.records(&elsewhere, &agent, true, &[])?;
                target.import(records).await
            })
            .await;
            written.expect("import");
            imports.push((took, cpu));
        }
        println!(
            "A session of {EVENTS} events: {} bytes exported ({} bytes an event), {rounds} rounds\n",
            text.len(),
            text.len() as u64 / EVENTS
        );
        println!("| step | wall p50 / mean | CPU per event (mean) | events/s (mean) |");
        println!("| --- | ---: | ---: | ---: |");
        row("export (read + write lines)", &exports);
        row("import: parse and check (chain)", &parses);
        row("import: one store transaction", &imports);
        let whole: Vec<(Duration, Duration)> = parses
            .iter()
            .zip(&imports)
            .map(|(p, i)| (p.0 + i.0, p.1 + i.1))
            .collect();
        row("import, whole", &whole);
    });
}

/// A session of `EVENTS` events as a run of turns makes them: a user message and an assistant
/// answer of a few hundred bytes each.
async fn build_session(store: &SqliteStore) -> (TenantId, SessionId, AgentDef) {
    let tenant = TenantId::generate(1, 1);
    let agent = store
        .put_agent(
            &tenant,
            AgentDef {
                id: AgentId::generate(1, 2),
                name: "bench".into(),
                version: 0,
                instructions: "You answer briefly.".into(),
                model: "scripted/echo".into(),
                tools: Vec::new(),
                limits: Limits::default(),
                memory_blocks: Vec::new(),
                compaction: Default::default(),
                memory: Default::default(),
            },
        )
        .await
        .expect("an agent");
    let at = Timestamp::from_millis(1_750_000_000_000);
    let record = SessionRecord {
        id: SessionId::generate(1, 3),
        tenant: tenant.clone(),
        agent_id: agent.id.clone(),
        agent_name: agent.name.clone(),
        agent_version: agent.version,
        created_at: at,
        metadata: Default::default(),
        last_seq: 0,
    };
    let started = NewEvent {
        at,
        body: EventBody::SessionStarted {
            tenant: tenant.clone(),
            agent: agent.clone(),
            metadata: Default::default(),
        },
    };
    store
        .create_session(&record, vec![started])
        .await
        .expect("a session");
    let mut last = 1;
    while last < EVENTS {
        let events = (last + 1..=(last + BATCH).min(EVENTS))
            .map(|seq| NewEvent {
                at: Timestamp::from_millis(at.millis() + seq as i64),
                body: match seq % 2 {
                    0 => EventBody::RunStarted {
                        run_id: RunId::generate(seq, 4),
                        input: Message::user(format!(
                            "message {seq}: {}",
                            "what does the ledger say about the quarter's numbers? ".repeat(4)
                        )),
                        options: Box::default(),
                    },
                    _ => EventBody::MessagesAdded {
                        messages: vec![Message::assistant(format!(
                            "answer {seq}: {}",
                            "the quarter closed above plan, with costs flat. ".repeat(5)
                        ))],
                    },
                },
            })
            .collect::<Vec<_>>();
        let count = events.len() as u64;
        store
            .append(&record.id, last, AppendBatch::events(events))
            .await
            .expect("append");
        last += count;
    }
    (tenant, record.id, agent)
}

/// Runs `work`, giving its wall time, this process's CPU time over it, and its output.
async fn timed<T>(work: impl std::future::Future<Output = T>) -> (Duration, Duration, T) {
    let (started, cpu) = (Instant::now(), cpu_time());
    let out = work.await;
    (started.elapsed(), cpu_time().saturating_sub(cpu), out)
}

fn row(step: &str, samples: &[(Duration, Duration)]) {
    let mut walls: Vec<Duration> = samples.iter().map(|s| s.0).collect();
    walls.sort();
    let n = samples.len() as u32;
    let mean = walls.iter().sum::<Duration>() / n;
    let cpu = samples.iter().map(|s| s.1).sum::<Duration>() / n;
    println!(
        "| {step} | {:.1} ms / {:.1} ms | {:.2} µs | {:.0} |",
        walls[walls.len() / 2].as_secs_f64() * 1e3,
        mean.as_secs_f64() * 1e3,
        cpu.as_secs_f64() * 1e6 / EVENTS as f64,
        EVENTS as f64 / mean.as_secs_f64()
    );
}
