//! A lean OpenAI Chat Completions upstream for the gateway benchmark, run as its own process
//! (the bench binary re-executed with `mock-upstream`) so its CPU is not keel's or the load
//! tool's. Every reply is rendered once at start; a request costs a body read, a byte search
//! for `"stream": true`, an optional sleep and a copy of prepared bytes. No recording, no
//! validation: keel-testkit's `MockOpenAi` is the faithful one, this one must not be the
//! bottleneck.
//!
//! `POST /v1/chat/completions` answers at once; `POST /delay/{ms}/v1/chat/completions` after
//! `ms` milliseconds, so one process serves every delay (keel gets one provider per delay).

use std::convert::Infallible;
use std::io::Write;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use axum::routing::post;
use axum::serve::ListenerExt;
use serde_json::{Value, json};

/// The reply every request gets: ten words, streamed one per chunk.
const TEXT: &str = "Hello! This is a fast mock upstream answering your benchmark request.";
const CREATED: u64 = 1_700_000_000;

/// The prepared answers.
#[derive(Clone)]
struct Replies {
    plain: Bytes,
    events: Vec<Bytes>,
}

/// Serves until killed. Prints `listening <addr>` on stdout once it accepts connections.
pub fn run(threads: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("mock upstream: cannot start a tokio runtime");
    runtime.block_on(async {
        let replies = Replies::render();
        let at_once = {
            let replies = replies.clone();
            move |body: Bytes| answer(replies, 0, body)
        };
        let delayed = move |Path(ms): Path<u64>, body: Bytes| answer(replies, ms, body);
        let app = Router::new()
            .route("/v1/chat/completions", post(at_once))
            .route("/delay/{ms}/v1/chat/completions", post(delayed));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("mock upstream: cannot bind 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("mock upstream: no local address");
        let listener = listener.tap_io(|tcp| {
            // Streamed replies are many small writes: no Nagle delay.
            let _ = tcp.set_nodelay(true);
        });
        println!("listening {addr}");
        std::io::stdout().flush().ok();
        axum::serve(listener, app)
            .await
            .expect("mock upstream: the server failed");
    });
}

async fn answer(replies: Replies, delay_ms: u64, body: Bytes) -> Response {
    if delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let (content_type, body) = if wants_stream(&body) {
        let frames = futures::stream::iter(replies.events.into_iter().map(Ok::<_, Infallible>));
        ("text/event-stream", Body::from_stream(frames))
    } else {
        ("application/json", Body::from(replies.plain))
    };
    Response::builder()
        .header(CONTENT_TYPE, content_type)
        .body(body)
        .expect("static response parts are valid")
}

/// `"stream": true` anywhere in the body (with or without the space) — enough for a benchmark
/// whose bodies are known.
fn wants_stream(body: &[u8]) -> bool {
    [&b"\"stream\":true"[..], &b"\"stream\": true"[..]]
        .iter()
        .any(|needle| body.windows(needle.len()).any(|w| w == *needle))
}

impl Replies {
    /// The documented shapes: a `chat.completion`, and the `chat.completion.chunk` stream (role
    /// chunk, one chunk per word, finish chunk, usage chunk, `[DONE]`).
    fn render() -> Replies {
        let usage = json!({"prompt_tokens": 24, "completion_tokens": 10, "total_tokens": 34});
        let plain = json!({
            "id": "chatcmpl-mock", "object": "chat.completion", "created": CREATED,
            "model": "gpt-mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT, "refusal": null},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": usage,
        });
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED,
                "model": "gpt-mock",
                "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
            })
        };
        let mut events = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        let mut rest = TEXT;
        while !rest.is_empty() {
            // Each word with the space before it, so the pieces concatenate back to TEXT.
            let end = rest[1..].find(' ').map_or(rest.len(), |i| i + 1);
            events.push(chunk(json!({"content": &rest[..end]}), Value::Null));
            rest = &rest[end..];
        }
        events.push(chunk(json!({}), json!("stop")));
        events.push(json!({
            "id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": CREATED,
            "model": "gpt-mock", "choices": [], "usage": usage,
        }));
        let mut events: Vec<Bytes> = events
            .iter()
            .map(|e| Bytes::from(format!("data: {e}\n\n")))
            .collect();
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        Replies {
            plain: Bytes::from(plain.to_string()),
            events,
        }
    }
}
