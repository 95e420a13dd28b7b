//! What keel's MCP client adds to a tool call: `KEEL_BENCH_CALLS` sequential `echo` calls to
//! one `server-everything` over stdio through keel's MCP client (the connection pool, the
//! cached tool list, the model-name mapping, the timeout, the idempotency key in `_meta`, the
//! result rendering), against the same number through the same SDK (`rmcp`) calling another
//! instance of the same server directly, side by side in one run, in alternating rounds. Wall
//! time per call (median and p99) and this process's CPU per call (user + system, from
//! `/proc/self/stat`, 10 ms ticks; the servers are other processes).
//!
//! `cargo bench -p keel-engine --bench mcp`. `KEEL_BENCH_CALLS` (default 2000). Needs `node`
//! and the npm registry (the server is installed under the target directory). Prints markdown.

#[allow(dead_code)]
#[path = "../../keel/tests/support/mcp.rs"]
mod mcp;

use std::time::{Duration, Instant};

use keel_core::McpServer;
use keel_engine::tools::mcp::McpProbe;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::json;

/// This process's CPU time so far (user + system).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks: u64 = fields.iter().sum();
    Duration::from_millis(ticks * 10)
}

#[derive(Default)]
struct Measured {
    per_call: Vec<Duration>,
    cpu: Duration,
}

impl Measured {
    fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.per_call.clone();
        sorted.sort();
        sorted[((sorted.len() - 1) as f64 * q) as usize]
    }

    fn cpu_per_call(&self) -> Duration {
        self.cpu / self.per_call.len() as u32
    }
}

/// Times `calls` calls of `call` (numbered from `first`) into `into`.
async fn time_calls<F, Fut>(into: &mut Measured, first: usize, calls: usize, mut call: F)
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let cpu_before = cpu();
    for i in first..first + calls {
        let started = Instant::now();
        call(i).await;
        into.per_call.push(started.elapsed());
    }
    into.cpu += cpu() - cpu_before;
}

/// Rounds each path's calls are split into, the paths taking turns (which goes first
/// alternating), so a change in the machine's load falls on both.
const ROUNDS: usize = 10;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let calls: usize = std::env::var("KEEL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let index = mcp::everything_server().expect("server-everything could not be installed");

    // Through keel's MCP client, as a run's tool step calls it (`McpProbe` holds the same
    // `McpTools` the tool runner does).
    let server = McpServer::stdio("node", &[&index.display().to_string(), "stdio"]);
    let probe = McpProbe::new("everything", server, Duration::from_secs(30)).unwrap();
    let via_keel = |i: usize| {
        let probe = &probe;
        async move {
            let arguments = json!({"message": format!("call {i}")});
            let outcome = probe.call("echo", &arguments, &format!("bench:{i}")).await;
            assert!(!outcome.is_error, "{}", outcome.content);
        }
    };
    // The same SDK calling another instance of the same server directly.
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&index)
        .arg("stdio")
        .stderr(std::process::Stdio::null());
    let client = ().serve(TokioChildProcess::new(command).unwrap()).await.unwrap();
    let direct_call = |i: usize| {
        let client = &client;
        async move {
            let arguments = json!({"message": format!("call {i}")});
            let params = CallToolRequestParams::new("echo")
                .with_arguments(arguments.as_object().unwrap().clone());
            let result = client.call_tool(params).await.unwrap();
            assert_ne!(result.is_error, Some(true));
        }
    };

    // Warm up both: the servers started, the tool list fetched, node's JIT warm.
    let (mut keel, mut direct) = (Measured::default(), Measured::default());
    time_calls(&mut keel, 0, 100, via_keel).await;
    time_calls(&mut direct, 0, 100, direct_call).await;
    let (mut keel, mut direct) = (Measured::default(), Measured::default());
    let per_round = calls / ROUNDS;
    for round in 0..ROUNDS {
        let first = round * per_round;
        if round % 2 == 0 {
            time_calls(&mut keel, first, per_round, via_keel).await;
            time_calls(&mut direct, first, per_round, direct_call).await;
        } else {
            time_calls(&mut direct, first, per_round, direct_call).await;
            time_calls(&mut keel, first, per_round, via_keel).await;
        }
    }
    probe.close().await;
    let _ = client.cancel().await;

    let calls = per_round * ROUNDS;
    println!("| path | calls | median | p99 | CPU per call (this process) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (name, m) in [("rmcp directly", &direct), ("keel's MCP client", &keel)] {
        println!(
            "| {name} | {calls} | {:.0} µs | {:.0} µs | {:.0} µs |",
            m.quantile(0.5).as_secs_f64() * 1e6,
            m.quantile(0.99).as_secs_f64() * 1e6,
            m.cpu_per_call().as_secs_f64() * 1e6,
        );
    }
    println!(
        "\nkeel / direct: median {:.2}x, CPU {:.2}x",
        keel.quantile(0.5).as_secs_f64() / direct.quantile(0.5).as_secs_f64(),
        keel.cpu.as_secs_f64() / direct.cpu.as_secs_f64().max(1e-9),
    );
}
