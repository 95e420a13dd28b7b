//! What a route costs on top of its provider: per-call latency and time to first token of the
//! Anthropic provider called directly vs. through a one-target `Router`, against the same mock
//! upstream on 127.0.0.1, at concurrency 1 and 200. Direct and routed rounds alternate so both
//! see the same machine load; the report is the median and p99 of each and their difference.
//!
//! `cargo bench -p keel-models --bench router` (set `KEEL_BENCH_CALLS` to change calls per round)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use keel_core::Message;
use keel_models::providers::HttpTimeouts;
use keel_models::providers::anthropic::{AnthropicClient, AnthropicConfig};
use keel_models::router::{Route, Router, Target};
use keel_models::{ModelClient, ModelRequest, StreamEvent};
use keel_testkit::openai_mock::MockReply;
use keel_testkit::upstream::MockUpstream;

const ROUNDS: usize = 5;

fn request() -> ModelRequest {
    let mut request = ModelRequest {
        model: "claude-haiku-4-5".into(),
        system: Some("You are terse.".into()),
        messages: vec![Message::user("Say something short.")],
        tools: vec![],
        params: Default::default(),
    };
    request.params.affinity = Some("bench-session".into());
    request
}

/// (time to first text, whole call) of one call.
async fn timed_call(client: &dyn ModelClient) -> (Duration, Duration) {
    let start = Instant::now();
    let mut stream = client.stream(request()).await.expect("the call starts");
    let mut first = None;
    while let Some(event) = stream.next().await {
        if let StreamEvent::TextDelta(_) = event.expect("no stream error") {
            first.get_or_insert_with(Instant::now);
        }
    }
    let end = Instant::now();
    (first.unwrap_or(end) - start, end - start)
}

/// `calls` calls, `concurrency` at a time; their (ttft, latency) samples.
async fn round(
    client: Arc<dyn ModelClient>,
    calls: usize,
    concurrency: usize,
) -> Vec<(Duration, Duration)> {
    futures::stream::iter(0..calls)
        .map(|_| {
            let client = client.clone();
            async move { timed_call(client.as_ref()).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let calls: usize = std::env::var("KEEL_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let mock = MockUpstream::start_anthropic("bench-key")
        .await
        .expect("mock starts");
    let config = AnthropicConfig {
        base_url: mock.base_url(),
        api_key: Some("bench-key".into()),
        timeouts: HttpTimeouts::default(),
        ..AnthropicConfig::default()
    };
    let direct: Arc<dyn ModelClient> =
        Arc::new(AnthropicClient::new(config).expect("valid config"));
    let providers: HashMap<String, Arc<dyn ModelClient>> =
        [("anthropic".to_string(), direct.clone())].into();
    let route = Route {
        name: "bench".into(),
        targets: vec![Target {
            provider: "anthropic".into(),
            model: "claude-haiku-4-5".into(),
            weight: 1,
        }],
        policy: Default::default(),
        retry: Default::default(),
        breaker: Default::default(),
        timeouts: Default::default(),
        sticky: true,
    };
    let routed: Arc<dyn ModelClient> =
        Arc::new(Router::new(route, &providers).expect("valid route"));
    let reply = MockReply::text("A short reply of about ten words, streamed word by word.");

    println!(
        "router overhead vs the provider called directly (Anthropic mock on 127.0.0.1), {calls} calls x {ROUNDS} rounds each"
    );
    println!(
        "{:>11} {:>8} {:>12} {:>12} {:>12} {:>12}",
        "concurrency", "path", "ttft p50 us", "ttft p99 us", "call p50 us", "call p99 us"
    );
    for concurrency in [1, 200] {
        let mut samples: [Vec<(Duration, Duration)>; 2] = [Vec::new(), Vec::new()];
        // Warm-up: connections, allocator.
        for _ in 0..calls.min(400) * 2 {
            mock.push_reply(reply.clone());
        }
        round(direct.clone(), calls.min(400), concurrency).await;
        round(routed.clone(), calls.min(400), concurrency).await;
        for _ in 0..ROUNDS {
            for (path, client) in [&direct, &routed].into_iter().enumerate() {
                for _ in 0..calls {
                    mock.push_reply(reply.clone());
                }
                samples[path].extend(round(client.clone(), calls, concurrency).await);
            }
        }
        let mut medians = [[0.0; 2]; 2];
        for (path, name) in ["direct", "router"].into_iter().enumerate() {
            let mut ttft: Vec<Duration> = samples[path].iter().map(|s| s.0).collect();
            let mut call: Vec<Duration> = samples[path].iter().map(|s| s.1).collect();
            let (t50, t99) = (percentile(&mut ttft, 0.5), percentile(&mut ttft, 0.99));
            let (c50, c99) = (percentile(&mut call, 0.5), percentile(&mut call, 0.99));
            medians[path] = [micros(t50), micros(c50)];
            println!(
                "{concurrency:>11} {name:>8} {:>12.1} {:>12.1} {:>12.1} {:>12.1}",
                micros(t50),
                micros(t99),
                micros(c50),
                micros(c99)
            );
        }
        println!(
            "{concurrency:>11} {:>8} {:>12.1} {:>12} {:>12.1}   (router median minus direct median)",
            "added",
            medians[1][0] - medians[0][0],
            "",
            medians[1][1] - medians[0][1]
        );
    }
}
