//! What pending timers cost, and how late timers fire under load. `KEEL_BENCH_TIMERS` pending
//! timers (1,000 a session, the most one may hold; each a yearly cron, so none fires here) on one
//! `keel serve`, against the same sessions without timers on another of this build (the
//! baseline), side by side in one run: resident memory once all are in, a restart's time to
//! listen and its memory then. Then, on each server at once, `KEEL_BENCH_DUE` one-off timers on
//! sessions of their own, due 2 to 6 s after they are set, while `CLIENTS` clients keep taking
//! turns on other sessions: how late each fired (its `last_fired_at` against its instant), p50,
//! p99 and the worst. Scripted model, loopback HTTP, `[store] durability = "normal"`.
//!
//! `cargo bench -p keel --bench timers`. `KEEL_BENCH_TIMERS` (default 100000), `KEEL_BENCH_DUE`
//! (default 1000). Prints markdown.

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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use server::{CLIENTS, Server, fan_out};

/// Timers a session may hold (`keel_engine::MAX_TIMERS_PER_SESSION`).
const PER_SESSION: usize = keel_engine::MAX_TIMERS_PER_SESSION;

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `count` sessions on `server`; their ids.
async fn sessions(server: &Arc<Server>, count: usize) -> Arc<Vec<String>> {
    let server = server.clone();
    Arc::new(
        fan_out(count, move |_| {
            let server = server.clone();
            async move { server.session().await }
        })
        .await,
    )
}

/// Sets `count` one-off timers, each on a session of its own, due 2 to 6 s after it is set;
/// returns their sessions.
async fn due_soon(server: &Arc<Server>, count: usize) -> Arc<Vec<String>> {
    let sessions = sessions(server, count).await;
    let (server, held) = (server.clone(), sessions.clone());
    fan_out(count, move |i| {
        let (server, held) = (server.clone(), held.clone());
        async move {
            let body = json!({"after_secs": 2 + (i % 5), "note": format!("due {i}")});
            server
                .post(&format!("/v1/sessions/{}/schedules", held[i]), body)
                .await;
        }
    })
    .await;
    sessions
}

/// How late each session's one timer fired, in ms, once all have fired (sorted).
async fn lateness(server: &Arc<Server>, sessions: &Arc<Vec<String>>) -> Vec<f64> {
    let (server, held) = (server.clone(), sessions.clone());
    let mut late = fan_out(sessions.len(), move |i| {
        let (server, held) = (server.clone(), held.clone());
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let listed = server
                    .get(&format!("/v1/sessions/{}/schedules", held[i]))
                    .await;
                let timer = &listed["data"][0];
                if let Some(fired) = timer["last_fired_at"].as_str() {
                    let at = instant(&timer["schedule"]["at"]);
                    return (instant(&json!(fired)) - at) as f64;
                }
                assert!(Instant::now() < deadline, "a timer never fired: {listed}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    })
    .await;
    late.sort_by(f64::total_cmp);
    late
}

fn instant(value: &Value) -> i64 {
    let text = value.as_str().expect("an RFC 3339 instant");
    keel_engine::parse_instant(text)
        .expect("an RFC 3339 instant")
        .millis()
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Turns on sessions of their own from `CLIENTS` clients until `stop`; how many.
fn keep_busy(server: &Arc<Server>, stop: &Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    let (server, stop) = (server.clone(), stop.clone());
    tokio::spawn(async move {
        let busy = sessions(&server, CLIENTS).await;
        let turns = fan_out(CLIENTS, move |i| {
            let (server, stop, busy) = (server.clone(), stop.clone(), busy.clone());
            async move {
                let mut turns = 0;
                while !stop.load(Ordering::Relaxed) {
                    server.turn(&busy[i], "busy").await;
                    turns += 1;
                }
                turns
            }
        })
        .await;
        turns.into_iter().sum()
    })
}

#[tokio::main]
async fn main() {
    let timers = env_count("KEEL_BENCH_TIMERS", 100_000);
    let due = env_count("KEEL_BENCH_DUE", 1_000);
    let held_sessions = timers.div_ceil(PER_SESSION);
    let with = Arc::new(Server::new("", ""));
    let without = Arc::new(Server::new("", ""));
    let rss_empty = (with.rss_mib(), without.rss_mib());

    let at = Instant::now();
    let held = sessions(&with, held_sessions).await;
    let server = with.clone();
    fan_out(timers, move |i| {
        let (server, held) = (server.clone(), held.clone());
        async move {
            let body = json!({"cron": "0 0 1 1 *", "note": format!("new year {i}")});
            let session = &held[i / PER_SESSION];
            server
                .post(&format!("/v1/sessions/{session}/schedules"), body)
                .await;
        }
    })
    .await;
    let fill = at.elapsed().as_secs_f64();
    sessions(&without, held_sessions).await;
    let rss_full = (with.rss_mib(), without.rss_mib());

    let (mut with, mut without) = (
        Arc::try_unwrap(with).ok().expect("no client holds it"),
        Arc::try_unwrap(without).ok().expect("no client holds it"),
    );
    with.stop();
    without.stop();
    let start = (with.start(), without.start());
    let rss_restart = (with.rss_mib(), without.rss_mib());
    let (with, without) = (Arc::new(with), Arc::new(without));

    // Timers due soon on both, under the same load on both.
    let stop = Arc::new(AtomicBool::new(false));
    let busy = (keep_busy(&with, &stop), keep_busy(&without, &stop));
    let soon = (due_soon(&with, due).await, due_soon(&without, due).await);
    let late = (
        lateness(&with, &soon.0).await,
        lateness(&without, &soon.1).await,
    );
    stop.store(true, Ordering::Relaxed);
    let turns = (busy.0.await.unwrap(), busy.1.await.unwrap());

    println!(
        "{timers} pending timers on {held_sessions} sessions vs the same sessions without; then {due} timers due under load ({CLIENTS} clients taking turns)\n"
    );
    println!("| | {timers} timers pending | none pending (baseline) | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    let row = |what: &str, (w, b): (f64, f64), unit: &str| {
        println!("| {what} | {w:.1} {unit} | {b:.1} {unit} | {:.2} |", w / b);
    };
    row("RSS, empty server", rss_empty, "MiB");
    row("RSS once all are in", rss_full, "MiB");
    row(
        "restart: spawn to listening",
        (start.0 * 1e3, start.1 * 1e3),
        "ms",
    );
    row("RSS after the restart", rss_restart, "MiB");
    row(
        "firing lateness p50",
        (quantile(&late.0, 0.5), quantile(&late.1, 0.5)),
        "ms",
    );
    row(
        "firing lateness p99",
        (quantile(&late.0, 0.99), quantile(&late.1, 0.99)),
        "ms",
    );
    row(
        "firing lateness, worst",
        (quantile(&late.0, 1.0), quantile(&late.1, 1.0)),
        "ms",
    );
    row(
        "turns taken meanwhile",
        (turns.0 as f64, turns.1 as f64),
        "",
    );
    println!(
        "\nSetting the {timers} timers: {fill:.1} s, {:.0} timers/s",
        timers as f64 / fill
    );
}
