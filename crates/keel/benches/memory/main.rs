//! keel's resident memory as sessions are touched and as sessions grow, for this build and an
//! earlier one in the same run; and what a turn costs on a session evicted from memory against
//! one kept warm. Everything through the real `keel serve` over loopback HTTP, conversations on
//! `/v1/responses` with the scripted model (no upstream: what is measured is keel alone),
//! default engine settings, `[store] durability = "normal"` (memory does not depend on fsync).
//!
//! `cargo bench -p keel --bench memory`. Settings: `KEEL_BENCH_BASELINE` (a keel binary built
//! from an earlier commit: its columns sit beside this build's), `KEEL_BENCH_SESSIONS` (the
//! checkpoints of sessions touched, default `0,2000,10000,20000,100000`), `KEEL_BENCH_LENGTHS`
//! (turns per session, default `10,200,1000`, over `KEEL_BENCH_LONG` sessions, default 20),
//! `KEEL_BENCH_ENGINE` (lines of an `[engine]` table for this build's servers, e.g.
//! `session_cache_mb = 0`; default none: the defaults). Prints markdown.

#[allow(dead_code)]
#[path = "../../tests/support/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../gateway/procs.rs"]
mod procs;

use std::path::{Path, PathBuf};
use std::time::Instant;

use load::{Load, rss_bytes};
use procs::Process;

/// Clients sending at once while sessions are touched.
const CLIENTS: usize = 16;

fn list(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|_| panic!("{var}: {n:?}")))
        .collect()
}

/// A `keel serve` of `binary` on a fresh data directory, `engine` its `[engine]` table.
struct Server {
    keel: Process,
    load: Load,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(binary: &Path, engine: &str) -> Server {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("cannot create the bench's directory");
        let dir = tempfile::Builder::new()
            .prefix("keel-memory-bench-")
            .tempdir_in(&base)
            .expect("cannot create the bench's directory");
        // No `[engine]` table unless set: an earlier build may not know it.
        let engine = if engine.is_empty() {
            String::new()
        } else {
            format!("[engine]\n{engine}\n\n")
        };
        let config = format!(
            "data_dir = {:?}\n\n[store]\ndurability = \"normal\"\n\n{engine}\
             [providers.scripted]\nkind = \"scripted\"\n",
            dir.path().join("data").display().to_string()
        );
        let path = dir.path().join("keel.toml");
        std::fs::write(&path, config).expect("cannot write keel.toml");
        let (keel, url) = procs::start_keel_binary(binary, &path, false, None);
        Server {
            keel,
            load: Load::new(&url, None),
            _dir: dir,
        }
    }

    fn rss_mib(&self) -> f64 {
        rss_bytes(self.keel.pid()) as f64 / (1 << 20) as f64
    }
}

/// RSS (MiB) after each checkpoint of sessions touched, and the touches per second overall.
async fn rss_by_sessions(binary: &Path, engine: &str, checkpoints: &[usize]) -> (Vec<f64>, f64) {
    let server = Server::start(binary, engine);
    let (mut touched, mut rss) = (0, Vec::new());
    let started = Instant::now();
    for &at in checkpoints {
        server.load.touch(at.saturating_sub(touched), CLIENTS).await;
        touched = touched.max(at);
        rss.push(server.rss_mib());
    }
    let rate = touched as f64 / started.elapsed().as_secs_f64();
    (rss, rate)
}

/// RSS (MiB) after each length of `sessions` conversations.
async fn rss_by_length(
    binary: &Path,
    engine: &str,
    lengths: &[usize],
    sessions: usize,
) -> Vec<f64> {
    let server = Server::start(binary, engine);
    let mut threads = vec![None; sessions];
    let (mut turns, mut rss) = (0, Vec::new());
    for &length in lengths {
        server
            .load
            .grow(&mut threads, length.saturating_sub(turns))
            .await;
        turns = turns.max(length);
        rss.push(server.rss_mib());
    }
    rss
}

/// Per-turn latency and keel CPU of conversations on a server keeping them warm and on one
/// keeping none (every turn reloads its session from the store), turns alternating.
async fn cold_and_warm(binary: &Path) {
    let warm = Server::start(binary, "");
    let cold = Server::start(binary, "session_cache_mb = 0");
    let (conversations, history, measured) = (10, 40, 50);
    let mut threads = [vec![None; conversations], vec![None; conversations]];
    for (server, threads) in [&warm, &cold].into_iter().zip(threads.iter_mut()) {
        server.load.grow(threads, history).await;
    }
    // Milliseconds per turn, [warm, cold]: the client's latency and keel's CPU.
    let (mut latency, mut cpu): ([Vec<f64>; 2], [Vec<f64>; 2]) = Default::default();
    let [warm_threads, cold_threads] = &mut threads;
    for turn in 0..measured {
        for (w, c) in warm_threads.iter_mut().zip(cold_threads.iter_mut()) {
            for (i, (server, thread)) in [(&warm, w), (&cold, c)].into_iter().enumerate() {
                let (cpu_before, at) = (procs::cpu_clock(&server.keel), Instant::now());
                let id = server
                    .load
                    .turn(&format!("measured turn {turn}"), thread.as_deref())
                    .await;
                let used = procs::cpu_clock(&server.keel) - cpu_before;
                latency[i].push(at.elapsed().as_secs_f64() * 1e3);
                cpu[i].push(used.as_secs_f64() * 1e3);
                *thread = Some(id);
            }
        }
    }
    println!(
        "\n## A turn on a cold (evicted) session vs a warm one\n\n{conversations} conversations \
         of {history} turns (past the 64-message window), then {measured} more turns each on \
         two servers of this build, turns alternating: one keeps sessions warm (defaults), one \
         keeps none (`session_cache_mb = 0`: each turn loads its session's snapshot, tail and \
         window from the store).\n"
    );
    println!("| | warm | cold | cold − warm |\n|---|---:|---:|---:|");
    for (stat, of) in [("median", median as fn(&[f64]) -> f64), ("mean", mean)] {
        for (what, samples) in [("latency", &latency), ("keel CPU", &cpu)] {
            let (w, c) = (of(&samples[0]), of(&samples[1]));
            println!("| {what}, {stat} ms | {w:.3} | {c:.3} | {:+.3} |", c - w);
        }
    }
}

fn median(ms: &[f64]) -> f64 {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn mean(ms: &[f64]) -> f64 {
    ms.iter().sum::<f64>() / ms.len() as f64
}

fn main() {
    let current = PathBuf::from(env!("CARGO_BIN_EXE_keel"));
    let engine = std::env::var("KEEL_BENCH_ENGINE").unwrap_or_default();
    let builds: Vec<(&str, PathBuf, &str)> = std::env::var("KEEL_BENCH_BASELINE")
        .ok()
        .map(|b| ("before", PathBuf::from(b), ""))
        .into_iter()
        .chain([("this build", current.clone(), engine.as_str())])
        .collect();
    let checkpoints = list("KEEL_BENCH_SESSIONS", "0,2000,10000,20000,100000");
    let lengths = list("KEEL_BENCH_LENGTHS", "10,200,1000");
    let long = list("KEEL_BENCH_LONG", "20")[0];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("cannot start a tokio runtime");
    runtime.block_on(async {
        println!("# keel's memory as sessions are touched and grow\n");
        println!(
            "## RSS against sessions touched\n\nEach session one `/v1/responses` turn, \
             {CLIENTS} clients; RSS (MiB) of `keel serve` after each count.\n"
        );
        let mut by_sessions = Vec::new();
        for (name, binary, engine) in &builds {
            by_sessions.push((name, rss_by_sessions(binary, engine, &checkpoints).await));
        }
        print!("| sessions touched |");
        for (name, _) in &by_sessions {
            print!(" {name} |");
        }
        println!("\n|---:|{}", "---:|".repeat(by_sessions.len()));
        for (i, at) in checkpoints.iter().enumerate() {
            print!("| {at} |");
            for (_, (rss, _)) in &by_sessions {
                print!(" {:.0} |", rss[i]);
            }
            println!();
        }
        print!("| sessions touched / s |");
        for (_, (_, rate)) in &by_sessions {
            print!(" {rate:.0} |");
        }
        println!(
            "\n\n## RSS against turns per session\n\n{long} conversations grown together; RSS \
             (MiB) after each length.\n"
        );
        let mut by_length = Vec::new();
        for (name, binary, engine) in &builds {
            by_length.push((name, rss_by_length(binary, engine, &lengths, long).await));
        }
        print!("| turns per session |");
        for (name, _) in &by_length {
            print!(" {name} |");
        }
        println!("\n|---:|{}", "---:|".repeat(by_length.len()));
        for (i, length) in lengths.iter().enumerate() {
            print!("| {length} |");
            for (_, rss) in &by_length {
                print!(" {:.0} |", rss[i]);
            }
            println!();
        }
        cold_and_warm(&current).await;
    });
}
