//! Durable turns through 1, 2 and 3 `keel serve` nodes sharing one PostgreSQL store, beside one
//! node on SQLite, in the same run and with the same workload: S sessions (spread over the
//! nodes in turn) each sending turns back to back (`mode: wait`) with the scripted model, for
//! T seconds a case. Per case: turns/s, turn latency p50/p99 and keel's CPU per turn (all its
//! nodes together). Then a takeover: two nodes, runs driven on one, that one SIGKILLed, and
//! the time until the other has finished them all. Prints markdown for BENCHMARKS.md.
//!
//! `cargo bench -p keel --bench nodes`. Needs PostgreSQL (`KEEL_TEST_PG_URL`, else
//! 127.0.0.1:5432 database `test`); each case has a schema of its own, dropped after.
//! Settings: `KEEL_BENCH_SESSIONS` (default 32), `KEEL_BENCH_SECS` (default 10).

#[allow(dead_code)]
#[path = "../gateway/procs.rs"]
mod procs;

use std::sync::Arc;
use std::time::{Duration, Instant};

use procs::Process;
use serde_json::{Value, json};

fn pg_url() -> String {
    std::env::var("KEEL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the nodes keep their state.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL schema for one case, dropped when it ends.
struct Schema {
    client: tokio_postgres::Client,
    name: String,
}

impl Schema {
    async fn create(case: &str) -> Schema {
        let (client, connection) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("the nodes bench needs PostgreSQL at {}: {e}", pg_url()));
        tokio::spawn(connection);
        let name = format!("keel_bench_{case}_{}", std::process::id());
        client
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"
            ))
            .await
            .unwrap();
        Schema { client, name }
    }

    async fn drop_now(self) {
        let _ = self
            .client
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
}

/// Nodes of one case: their processes, URLs and the admin key.
struct Nodes {
    processes: Vec<Process>,
    urls: Vec<String>,
    key: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Nodes {
    /// Starts `count` nodes (one after another: the first makes the admin key) with `engine`
    /// settings and a scripted model answering after `token_ms` per token.
    fn start(
        backend: Backend,
        schema: Option<&str>,
        count: usize,
        engine: &str,
        token_ms: u64,
    ) -> Nodes {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("cannot create the bench's temporary directory");
        let dir = tempfile::Builder::new()
            .prefix("keel-nodes-bench-")
            .tempdir_in(&base)
            .expect("cannot create the bench's temporary directory");
        let (mut processes, mut urls) = (Vec::new(), Vec::new());
        let mut key = None;
        for n in 0..count {
            let data_dir = dir.path().join(format!("node{n}"));
            let store = match backend {
                Backend::Sqlite => "[store]\ndurability = \"full\"\n".to_string(),
                Backend::Postgres => format!(
                    "[store]\nurl = {:?}\nschema = {:?}\n",
                    pg_url(),
                    schema.expect("a schema for PostgreSQL")
                ),
            };
            let config = format!(
                "data_dir = {:?}\n\n{store}\n[engine]\n{engine}\n\n[providers.scripted]\nkind = \"scripted\"\ntoken_latency_ms = {token_ms}\n\n[[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n",
                data_dir.display().to_string()
            );
            let config_path = dir.path().join(format!("node{n}.toml"));
            std::fs::write(&config_path, config).expect("cannot write keel.toml");
            let (process, url) = procs::start_keel(&config_path, true, None);
            if key.is_none() {
                key = Some(
                    std::fs::read_to_string(data_dir.join("admin.key"))
                        .expect("the first node writes the admin key")
                        .trim()
                        .to_string(),
                );
            }
            processes.push(process);
            urls.push(url);
        }
        Nodes {
            processes,
            urls,
            key: key.unwrap(),
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    async fn call(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.urls[node]))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path} failed: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "{path} answered {status}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    async fn new_session(&self, node: usize) -> String {
        let session = self
            .call(
                node,
                reqwest::Method::POST,
                "/v1/sessions",
                Some(json!({"agent": "default"})),
            )
            .await;
        session["id"].as_str().unwrap().to_string()
    }

    fn cpu(&self) -> Duration {
        self.processes.iter().map(procs::cpu_clock).sum()
    }
}

/// One throughput case's figures.
struct Figures {
    turns: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    cpu_per_turn: Duration,
}

async fn throughput(nodes: Arc<Nodes>, sessions: usize, secs: u64) -> Figures {
    let mut ids = Vec::new();
    for s in 0..sessions {
        let node = s % nodes.urls.len();
        ids.push((node, nodes.new_session(node).await));
    }
    let cpu_before = nodes.cpu();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (node, session) in ids {
        let nodes = nodes.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let turn = Instant::now();
                let run = nodes
                    .call(
                        node,
                        reqwest::Method::POST,
                        &format!("/v1/sessions/{session}/messages"),
                        Some(json!({"content": "hello, how are you today?", "mode": "wait"})),
                    )
                    .await;
                assert_eq!(run["status"], "completed", "{run}");
                latencies.push(turn.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed();
    let cpu = nodes.cpu().saturating_sub(cpu_before);
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Figures {
        turns: all.len(),
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: pct(0.5),
        p99: pct(0.99),
        cpu_per_turn: cpu / all.len().max(1) as u32,
    }
}

/// Two nodes; `runs` runs of a few seconds each started on the first, which is SIGKILLed
/// once they all run; returns how long after the kill the second had finished them all.
async fn takeover(runs: usize, lease_secs: u64) -> Duration {
    let schema = Schema::create("takeover").await;
    let engine = format!("lease_secs = {lease_secs}\npoll_ms = 500");
    let mut nodes = Nodes::start(Backend::Postgres, Some(&schema.name), 2, &engine, 20);
    let words = vec!["word"; 200].join(" ");
    let mut started = Vec::new();
    for _ in 0..runs {
        let session = nodes.new_session(0).await;
        let run = nodes
            .call(
                0,
                reqwest::Method::POST,
                &format!("/v1/sessions/{session}/messages"),
                Some(json!({"content": words, "mode": "background"})),
            )
            .await;
        started.push(run["id"].as_str().unwrap().to_string());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    let _ = nodes.processes[0].child.kill();
    let _ = nodes.processes[0].child.wait();
    for run in &started {
        loop {
            let record = nodes
                .call(1, reqwest::Method::GET, &format!("/v1/runs/{run}"), None)
                .await;
            match record["status"].as_str() {
                Some("completed") => break,
                Some("queued" | "running") => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("run {run} ended {other:?}: {record}"),
            }
            assert!(
                killed.elapsed() < Duration::from_secs(300),
                "no takeover of {run}"
            );
        }
    }
    let took = killed.elapsed();
    drop(nodes);
    schema.drop_now().await;
    took
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sessions = setting("KEEL_BENCH_SESSIONS", 32) as usize;
    let secs = setting("KEEL_BENCH_SECS", 10);
    println!("## Durable turns: nodes on PostgreSQL vs one node on SQLite\n");
    println!(
        "{sessions} sessions, turns back to back for {secs} s a case, scripted model (no latency), `mode: wait` over HTTP; every process (load, keel nodes, PostgreSQL) shares this machine's CPUs.\n"
    );
    println!("| store | nodes | turns | turns/s | vs SQLite | p50 | p99 | keel CPU/turn |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let cases = [
        (Backend::Sqlite, 1),
        (Backend::Postgres, 1),
        (Backend::Postgres, 2),
        (Backend::Postgres, 3),
    ];
    let mut sqlite_rate = None;
    for (backend, count) in cases {
        let schema = match backend {
            Backend::Postgres => Some(Schema::create(&format!("n{count}")).await),
            Backend::Sqlite => None,
        };
        let nodes = Arc::new(Nodes::start(
            backend,
            schema.as_ref().map(|s| s.name.as_str()),
            count,
            "",
            0,
        ));
        let figures = throughput(nodes.clone(), sessions, secs).await;
        drop(nodes);
        if let Some(schema) = schema {
            schema.drop_now().await;
        }
        let rate = *sqlite_rate.get_or_insert(figures.per_second);
        println!(
            "| {} | {count} | {} | {:.0} | {:.2}x | {} | {} | {} |",
            match backend {
                Backend::Sqlite => "SQLite (full)",
                Backend::Postgres => "PostgreSQL",
            },
            figures.turns,
            figures.per_second,
            figures.per_second / rate,
            ms(figures.p50),
            ms(figures.p99),
            ms(figures.cpu_per_turn),
        );
    }
    let lease = 5;
    let runs = setting("KEEL_BENCH_TAKEOVER_RUNS", 50) as usize;
    let took = takeover(runs, lease).await;
    println!(
        "\nTakeover: {runs} runs driven on node A (each streaming ~4 s), A SIGKILLed; node B had finished them all {:.2} s after the kill (lease {lease} s, poll 0.5 s).",
        took.as_secs_f64()
    );
}
