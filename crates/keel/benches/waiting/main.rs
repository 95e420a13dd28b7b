//! What runs waiting for a person cost: N sessions whose run waits on an `ask_human` call
//! against N sessions whose run completed (the baseline: the same sessions and turns, nothing
//! waiting), each on its own `keel serve` of this build, side by side in one run. Measured:
//! resident memory once all N are in, the time a restarted server takes to listen over that
//! store and its memory then, and the time to answer every waiting call (each run then goes
//! on and completes). Scripted model, loopback HTTP, `[store] durability = "normal"`.
//!
//! `cargo bench -p keel --bench waiting`. `KEEL_BENCH_RUNS` (default 10000). Prints markdown.

#[allow(dead_code)]
#[path = "../../tests/support/load.rs"]
mod load;
#[allow(dead_code)]
#[path = "../gateway/procs.rs"]
mod procs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use load::rss_bytes;
use procs::Process;
use serde_json::{Value, json};

const CLIENTS: usize = 16;

/// A `keel serve` over a data directory that outlives it (for the restart).
struct Server {
    config: PathBuf,
    keel: Option<Process>,
    url: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Server {
    fn new() -> Server {
        let base = option_env!("CARGO_TARGET_TMPDIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).expect("cannot create the bench's directory");
        let dir = tempfile::Builder::new()
            .prefix("keel-waiting-bench-")
            .tempdir_in(&base)
            .expect("cannot create the bench's directory");
        let config = format!(
            "data_dir = {:?}\n\n[store]\ndurability = \"normal\"\n\n\
             [providers.scripted]\nkind = \"scripted\"\n\n\
             [[agents]]\nname = \"default\"\nmodel = \"scripted/echo\"\n\
             tools = [{{ name = \"ask_human\", kind = \"builtin\" }}]\n",
            dir.path().join("data").display().to_string()
        );
        let path = dir.path().join("keel.toml");
        std::fs::write(&path, config).expect("cannot write keel.toml");
        let mut server = Server {
            config: path,
            keel: None,
            url: String::new(),
            http: reqwest::Client::new(),
            _dir: dir,
        };
        server.start();
        server
    }

    /// Starts keel over the data directory; the seconds until it listens.
    fn start(&mut self) -> f64 {
        let binary = PathBuf::from(env!("CARGO_BIN_EXE_keel"));
        let at = Instant::now();
        let (keel, url) = procs::start_keel_binary(Path::new(&binary), &self.config, false, None);
        let took = at.elapsed().as_secs_f64();
        (self.keel, self.url) = (Some(keel), url);
        took
    }

    fn stop(&mut self) {
        self.keel = None;
    }

    fn rss_mib(&self) -> f64 {
        let pid = self.keel.as_ref().expect("running").pid();
        rss_bytes(pid) as f64 / (1 << 20) as f64
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .timeout(Duration::from_secs(120))
            .send()
            .await
            .expect("POST");
        let status = response.status();
        let value: Value = response.json().await.expect("a JSON answer");
        assert!(status.is_success(), "{path}: {status} {value}");
        value
    }

    /// One session and one turn sending `content`; the run's (id, first waiting call).
    async fn turn(&self, content: &str, expect: &str) -> (String, Option<String>) {
        let session = self.post("/v1/sessions", json!({"agent": "default"})).await;
        let id = session["id"].as_str().expect("a session id");
        let run = self
            .post(
                &format!("/v1/sessions/{id}/messages"),
                json!({"content": content, "mode": "wait"}),
            )
            .await;
        assert_eq!(run["status"], expect, "{run}");
        let call = run["pending_approvals"][0]["call_id"]
            .as_str()
            .map(str::to_string);
        (run["id"].as_str().expect("a run id").to_string(), call)
    }
}

/// Runs `work(i)` for i in 0..count, `CLIENTS` at a time; the results in order.
async fn fan_out<T, F, Fut>(count: usize, work: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = T> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let work = Arc::new(work);
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, work) = (next.clone(), work.clone());
            tokio::spawn(async move {
                let mut done = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return done;
                    }
                    done.push((i, work(i).await));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("a client panicked"));
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, t)| t).collect()
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let waiting = Arc::new(Server::new());
    let done = Arc::new(Server::new());
    let (rss_empty_w, rss_empty_d) = (waiting.rss_mib(), done.rss_mib());

    let at = Instant::now();
    let server = waiting.clone();
    let calls = fan_out(runs, move |i| {
        let server = server.clone();
        async move {
            let ask = format!("/call ask_human {{\"question\": \"may I go on with {i}?\"}}");
            server.turn(&ask, "waiting").await
        }
    })
    .await;
    let fill_waiting = at.elapsed().as_secs_f64();
    let at = Instant::now();
    let server = done.clone();
    fan_out(runs, move |i| {
        let server = server.clone();
        async move { server.turn(&format!("hello {i}"), "completed").await }
    })
    .await;
    let fill_done = at.elapsed().as_secs_f64();
    let (rss_full_w, rss_full_d) = (waiting.rss_mib(), done.rss_mib());

    let (mut waiting, mut done) = (
        Arc::try_unwrap(waiting).ok().expect("no client holds it"),
        Arc::try_unwrap(done).ok().expect("no client holds it"),
    );
    waiting.stop();
    done.stop();
    let (start_w, start_d) = (waiting.start(), done.start());
    let (rss_restart_w, rss_restart_d) = (waiting.rss_mib(), done.rss_mib());

    let waiting = Arc::new(waiting);
    let calls = Arc::new(calls);
    let at = Instant::now();
    let server = waiting.clone();
    fan_out(runs, move |i| {
        let (server, calls) = (server.clone(), calls.clone());
        async move {
            let (run, call) = &calls[i];
            let call = call.as_deref().expect("a waiting call");
            let decisions =
                json!({"decisions": [{"call_id": call, "decision": "answer", "answer": "yes"}]});
            let resumed = server
                .post(&format!("/v1/runs/{run}/resume"), decisions)
                .await;
            assert_ne!(resumed["status"], "waiting", "{resumed}");
        }
    })
    .await;
    let answer_all = at.elapsed().as_secs_f64();

    println!("{runs} sessions, each one turn; {CLIENTS} clients\n");
    println!("| | {runs} runs waiting (`ask_human`) | {runs} runs completed (baseline) | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    let row = |what: &str, w: f64, d: f64, unit: &str| {
        println!("| {what} | {w:.1} {unit} | {d:.1} {unit} | {:.2} |", w / d);
    };
    row("RSS, empty server", rss_empty_w, rss_empty_d, "MiB");
    row("time to create them", fill_waiting, fill_done, "s");
    row("RSS once all are in", rss_full_w, rss_full_d, "MiB");
    row(
        "RSS they add, per 1,000 runs",
        (rss_full_w - rss_empty_w) * 1000.0 / runs as f64,
        (rss_full_d - rss_empty_d) * 1000.0 / runs as f64,
        "MiB",
    );
    row(
        "restart: spawn to listening",
        start_w * 1e3,
        start_d * 1e3,
        "ms",
    );
    row("RSS after the restart", rss_restart_w, rss_restart_d, "MiB");
    println!(
        "\nAnswering all {runs} waiting calls after the restart (each answer logged and its run queued to go on): {answer_all:.1} s, {:.0} resumes/s",
        runs as f64 / answer_all
    );
}
