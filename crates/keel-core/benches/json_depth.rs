//! What the ingress checks cost a gateway request: the body's shape (an object) and its
//! nesting depth (`limits::first_too_deep`), run on every JSON body before it is parsed. Each
//! body is parsed into a chat-completion-shaped struct with the checks off and on, in
//! alternating rounds of the same run, and the medians are printed as markdown.
//!
//! `cargo bench -p keel-core --bench json_depth`. `KEEL_BENCH_ROUNDS` sets the rounds
//! (default 21).

use std::hint::black_box;
use std::time::{Duration, Instant};

use keel_core::limits::{MAX_JSON_DEPTH, first_too_deep};
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of `POST /v1/chat/completions` a gateway call reads, typed as keel types them.
#[allow(dead_code)]
#[derive(Deserialize)]
struct ChatLike {
    model: String,
    messages: Vec<MessageLike>,
    #[serde(default)]
    tools: Vec<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    temperature: Option<f32>,
}

#[allow(dead_code)]
#[derive(Deserialize)]
struct MessageLike {
    role: String,
    content: String,
}

/// A chat completion body with `turns` earlier messages and `tools` function tools.
fn body(turns: usize, tools: usize) -> Vec<u8> {
    let messages: Vec<_> = (0..turns)
        .map(|i| {
            json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                   "content": format!("message {i}: the quick brown fox jumps over the lazy dog, and a few more words to make a turn")})
        })
        .collect();
    let tools: Vec<_> = (0..tools)
        .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}"), "description": "looks something up",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}, "filters": {"type": "object",
                "properties": {"from": {"type": "string", "format": "date"}, "tags": {"type": "array", "items": {"type": "string"}}}}},
                "required": ["query"]}}}))
        .collect();
    serde_json::to_vec(
        &json!({"model": "mock/gpt", "messages": messages, "tools": tools, "stream": true,
        "stream_options": {"include_usage": true}, "temperature": 0.2}),
    )
    .unwrap()
}

/// What `ApiJson` checks before parsing: an object, nested no deeper than the limit.
fn checks(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
        && first_too_deep(body, MAX_JSON_DEPTH).is_none()
}

fn per_request(body: &[u8], checked: bool, iterations: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        if checked {
            assert!(checks(black_box(body)));
        }
        let request: ChatLike = serde_json::from_slice(black_box(body)).unwrap();
        black_box(request);
    }
    started.elapsed() / iterations
}

fn median(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e6
}

fn main() {
    let rounds: usize = std::env::var("KEEL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    println!("| body | bytes | parse only | checks + parse | checks cost | checks alone |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, turns, tools) in [
        ("one message", 1, 0),
        ("10 turns, 2 tools", 10, 2),
        ("100 turns, 8 tools", 100, 8),
    ] {
        let body = body(turns, tools);
        let iterations = (4_000_000 / body.len()).max(100) as u32;
        let (mut off, mut on, mut alone) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            off.push(per_request(&body, false, iterations));
            on.push(per_request(&body, true, iterations));
            let started = Instant::now();
            for _ in 0..iterations {
                assert!(checks(black_box(&body)));
            }
            alone.push(started.elapsed() / iterations);
        }
        let (off, on, alone) = (median(off), median(on), median(alone));
        println!(
            "| {name} | {} | {off:.2} µs | {on:.2} µs | {:+.2} µs ({:+.1}%) | {alone:.2} µs |",
            body.len(),
            on - off,
            (on / off - 1.0) * 100.0,
        );
    }
}
