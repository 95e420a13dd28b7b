//! Memory stays flat as sessions grow: `keel serve` touched by 20,000 conversations stays under
//! a stated resident-memory bound (idle sessions leave memory, or stay warm in a cache bounded
//! in bytes), and a conversation dropped from that cache after its idle grace goes on with the
//! same context as one that never left it.

mod support;

use std::time::Duration;

use support::load::{Load, rss_bytes};
use support::{KeelHome, KeelServer, http};

/// Conversations touched.
const SESSIONS: usize = 20_000;
/// The resident memory keel may reach with them (its code included; 2 MiB of warm sessions,
/// so that the byte bound is reached; `cargo bench -p keel --bench memory` measures the defaults).
const RSS_BOUND: u64 = 150 << 20;
/// How long an idle session stays warm here.
const GRACE: Duration = Duration::from_secs(3);

/// A counter of `/metrics` (`name` with its labels, as exposed).
async fn metric(load: &Load, name: &str) -> u64 {
    let text = load
        .http
        .get(format!("{}/metrics", load.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// The input tokens the scripted model counted for a turn: the words of the whole context.
async fn context_words(load: &Load, response: &str) -> u64 {
    let value: serde_json::Value = load
        .http
        .get(format!("{}/v1/responses/{response}", load.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    value["usage"]["input_tokens"].as_u64().expect("usage")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_sessions_stay_under_the_bound_and_one_dropped_from_memory_goes_on() {
    let config = format!(
        "{}\n[store]\ndurability = \"normal\"\n\n[engine]\nsession_cache_mb = 2\nsession_idle_secs = {}\n",
        http::config(0),
        GRACE.as_secs()
    );
    let home = KeelHome::new(&config);
    let server = KeelServer::start(&home, &["--no-auth"]);
    let load = Load::new(&server.base, None);
    let pid = server.child.id();

    // Two conversations with the same three turns; the second takes its fourth turn now,
    // while warm, the first after 20,000 others and its grace (it is then out of memory).
    let mut twins = [None, None];
    load.grow(&mut twins, 3).await;
    let [Some(evicted), Some(warm)] = twins else {
        unreachable!()
    };
    let warm_turn = load.turn("and one more", Some(&warm)).await;
    let idle_since = std::time::Instant::now();

    let started = rss_bytes(pid);
    load.touch(SESSIONS, 8).await;
    let touched = rss_bytes(pid);
    eprintln!(
        "RSS: {} MiB at start, {} MiB after {SESSIONS} sessions",
        started >> 20,
        touched >> 20
    );
    assert!(
        touched < RSS_BOUND,
        "keel holds {} MiB after {SESSIONS} sessions (bound {} MiB)",
        touched >> 20,
        RSS_BOUND >> 20
    );
    // Within its bound (whether the bound or the grace let sessions go first depends on the
    // machine's speed; keel-engine's warm_cache test reaches the bound for certain).
    assert!(metric(&load, "keel_session_cache_bytes").await <= 2 << 20);
    // Nobody drives or follows a session now: none is held but the warm ones (the last
    // driver lets go just after answering).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while metric(&load, "keel_sessions_in_memory{state=\"in_use\"}").await > 0 {
        assert!(std::time::Instant::now() < deadline, "sessions stay in use");
        tokio::task::yield_now().await;
    }

    // The cache keeps often-used sessions over one-turn ones, so the twin leaves by its grace.
    tokio::time::sleep((GRACE + Duration::from_secs(1)).saturating_sub(idle_since.elapsed())).await;
    let loads = metric(&load, "keel_session_cache_total{event=\"load\"}").await;
    let cold_turn = load.turn("and one more", Some(&evicted)).await;
    assert_eq!(
        metric(&load, "keel_session_cache_total{event=\"load\"}").await,
        loads + 1,
        "the idle conversation was reloaded from the store"
    );
    assert!(metric(&load, "keel_session_cache_total{event=\"expiration\"}").await > 0);
    assert_eq!(
        context_words(&load, &cold_turn).await,
        context_words(&load, &warm_turn).await,
        "the reloaded conversation sent the model the same context"
    );
}
