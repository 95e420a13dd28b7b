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
#[allow(dead_code)]
#[path = "../support/server.rs"]
mod server;

use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use server::{CLIENTS, Server, fan_out};

/// One session and one turn sending `content`; the run's (id, first waiting call).
async fn turn(server: &Server, content: &str, expect: &str) -> (String, Option<String>) {
    let session = server.session().await;
    let run = server.turn(&session, content).await;
    assert_eq!(run["status"], expect, "{run}");
    let call = run["pending_approvals"][0]["call_id"]
        .as_str()
        .map(str::to_string);
    (run["id"].as_str().expect("a run id").to_string(), call)
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("KEEL_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ask_human = r#"{ name = "ask_human", kind = "builtin" }"#;
    let waiting = Arc::new(Server::new(ask_human, ""));
    let done = Arc::new(Server::new(ask_human, ""));
    let (rss_empty_w, rss_empty_d) = (waiting.rss_mib(), done.rss_mib());

    let at = Instant::now();
    let server = waiting.clone();
    let calls = fan_out(runs, move |i| {
        let server = server.clone();
        async move {
            let ask = format!("/call ask_human {{\"question\": \"may I go on with {i}?\"}}");
            turn(&server, &ask, "waiting").await
        }
    })
    .await;
    let fill_waiting = at.elapsed().as_secs_f64();
    let at = Instant::now();
    let server = done.clone();
    fan_out(runs, move |i| {
        let server = server.clone();
        async move { turn(&server, &format!("hello {i}"), "completed").await }
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
