//! What the ingress checks cost a gateway request: the body's shape (an object) and its
//! nesting depth (`keel_core::limits`), checked before `POST /v1/chat/completions`'s body is
//! parsed into its `ChatRequest`. Each body is parsed with the checks on and off in alternating
//! rounds of the same run, and the difference per request is printed as markdown.
//!
//! `cargo bench -p keel-server --bench ingress`. `KEEL_BENCH_ROUNDS` sets the rounds
//! (default 20).

use std::hint::black_box;
use std::time::{Duration, Instant};

use keel_server::error::check_json_shape;
use keel_server::openai::wire::ChatRequest;
use serde_json::json;

/// A chat completion body with `turns` earlier messages and `tools` function tools.
fn body(turns: usize, tools: usize) -> Vec<u8> {
    let messages: Vec<_> = (0..turns)
        .map(|i| {
            json!({"role": if i % 2 == 0 { "user" } else { "assistant" },
                   "content": format!("message {i}: the quick brown fox jumps over the lazy dog, and then some more words to make it a realistic turn")})
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

fn time_per_request(body: &[u8], checked: bool, iterations: u32) -> Duration {
    let started = Instant::now();
    for _ in 0..iterations {
        if checked {
            check_json_shape(black_box(body)).unwrap();
        }
        let request: ChatRequest = serde_json::from_slice(black_box(body)).unwrap();
        black_box(request);
    }
    started.elapsed() / iterations
}

fn main() {
    let rounds: usize = std::env::var("KEEL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    println!("| body | bytes | parse only | checks + parse | checks cost | checks alone |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, turns, tools) in [
        ("one message", 1, 0),
        ("10 turns, 2 tools", 10, 2),
        ("100 turns, 8 tools", 100, 8),
    ] {
        let body = body(turns, tools);
        let iterations = (2_000_000 / body.len()).max(50) as u32;
        let (mut off, mut on) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            off.push(time_per_request(&body, false, iterations));
            on.push(time_per_request(&body, true, iterations));
        }
        off.sort();
        on.sort();
        let (off, on) = (off[rounds / 2], on[rounds / 2]);
        let started = Instant::now();
        for _ in 0..iterations {
            check_json_shape(black_box(&body)).unwrap();
        }
        let alone = started.elapsed() / iterations;
        println!(
            "| {name} | {} | {:.2} µs | {:.2} µs | {:+.2} µs ({:+.1}%) | {:.2} µs |",
            body.len(),
            off.as_secs_f64() * 1e6,
            on.as_secs_f64() * 1e6,
            (on.as_secs_f64() - off.as_secs_f64()) * 1e6,
            (on.as_secs_f64() / off.as_secs_f64() - 1.0) * 100.0,
            alone.as_secs_f64() * 1e6,
        );
    }
}
