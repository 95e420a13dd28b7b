//! The streamed form of a chat completion: `chat.completion.chunk` server-sent events written
//! straight from the upstream's normalized events.
//!
//! This is the gateway's hot path, so a frame is the completion's fixed head (id, object,
//! created, model; rendered once) followed by the one part that changes, serialized from
//! borrowed structs: no JSON tree per chunk. And no task or channel sits between upstream and
//! client: the response body pulls the upstream stream itself, so a chunk costs one wakeup, a
//! client that goes away drops the upstream call with the body, and the call is accounted
//! when the body ends or is dropped, whichever comes first.

use std::convert::Infallible;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{FutureExt, StreamExt};
use keel_core::{FinishReason, Usage};
use keel_models::{ModelError, ModelStream, Served, StreamEvent};
use serde::Serialize;
use tokio::time::{Instant, Sleep};

use super::chat::{Bill, Meta, finish_reason};
use super::error::model_error;
use super::wire::ChatUsage;

/// A comment goes out after this long without a frame, so proxies keep the connection open
/// while a model thinks.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Chunks already waiting are sent together up to about this many bytes.
const BATCH: usize = 16 * 1024;

/// Scheduler turns to wait for the next chunk of a burst before writing what is there: the
/// upstream connection's task hands over one chunk per turn or two, and a turn costs far less
/// than a write per token (and the client's read of it).
const MAX_TURNS: usize = 2;

/// Streams the upstream reply as `chat.completion.chunk` events, ending with `data: [DONE]`.
pub(super) fn respond(
    upstream: ModelStream,
    meta: &Meta,
    include_usage: bool,
    bill: Bill,
) -> Response {
    let frames = Frames {
        upstream,
        head: head(meta),
        include_usage,
        state: State::Opening,
        tokens: 0,
        finish: None,
        called_tools: false,
        usage: Usage::default(),
        served: None,
        bill,
        keep_alive: Box::pin(tokio::time::sleep(KEEP_ALIVE)),
    };
    let body = futures::stream::unfold(frames, |mut frames| async move {
        let frame = frames.next_frame().await?;
        Some((Ok::<_, Infallible>(frame), frames))
    });
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `data: {"id":…,"object":"chat.completion.chunk","created":…,"model":…,"choices":` — what
/// every chunk of one completion repeats.
fn head(meta: &Meta) -> Vec<u8> {
    let mut head = Vec::with_capacity(128 + meta.model.len());
    head.extend_from_slice(b"data: {\"id\":");
    write_json(&mut head, &meta.id);
    head.extend_from_slice(b",\"object\":\"chat.completion.chunk\",\"created\":");
    head.extend_from_slice(meta.created.to_string().as_bytes());
    head.extend_from_slice(b",\"model\":");
    write_json(&mut head, &meta.model);
    head.extend_from_slice(b",\"choices\":");
    head
}

fn write_json(out: &mut Vec<u8>, value: &impl Serialize) {
    // Writing these plain structs and strings into memory cannot fail.
    serde_json::to_writer(out, value).expect("serializing a chunk into memory");
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// The role chunk is still to be sent.
    Opening,
    Streaming,
    Over,
}

/// The stream's state: the upstream, what it reported (for the last chunks and accounting),
/// and the rendered head.
struct Frames {
    upstream: ModelStream,
    head: Vec<u8>,
    include_usage: bool,
    state: State,
    /// Text and tool call chunks so far.
    tokens: usize,
    finish: Option<FinishReason>,
    called_tools: bool,
    usage: Usage,
    served: Option<Served>,
    bill: Bill,
    keep_alive: Pin<Box<Sleep>>,
}

impl Frames {
    /// The next bytes for the client; `None` once `[DONE]` (or an error) went out. Waits for
    /// something to send, then takes along what the upstream has ready (up to `BATCH` bytes,
    /// `MAX_TURNS` idle turns), so a burst costs one write instead of one per token. The first
    /// token never waits for a turn.
    async fn next_frame(&mut self) -> Option<Bytes> {
        let mut frames = Vec::new();
        if self.state == State::Opening {
            self.state = State::Streaming;
            self.chunk_into(&mut frames, &Delta::opening(), None);
        }
        // The first token goes out without waiting for company.
        let may_wait = self.tokens > 0;
        let mut turns = 0;
        while self.state == State::Streaming && frames.len() < BATCH {
            if let Some(event) = self.upstream.next().now_or_never() {
                self.take(event, &mut frames);
                turns = 0;
            } else if frames.is_empty() {
                tokio::select! {
                    biased;
                    event = self.upstream.next() => self.take(event, &mut frames),
                    () = &mut self.keep_alive => {
                        self.reset_keep_alive();
                        return Some(Bytes::from_static(b": keep-alive\n\n"));
                    }
                }
            } else if may_wait && turns < MAX_TURNS {
                tokio::task::yield_now().await;
                turns += 1;
            } else {
                break;
            }
        }
        if frames.is_empty() {
            return None;
        }
        self.reset_keep_alive();
        Some(Bytes::from(frames))
    }

    /// Appends what one upstream item (`None`: its end) becomes for the client.
    fn take(&mut self, event: Option<Result<StreamEvent, ModelError>>, frames: &mut Vec<u8>) {
        match event {
            None => {
                self.state = State::Over;
                self.closing(frames);
            }
            Some(Err(e)) => {
                self.state = State::Over;
                error_frame(&e, frames);
            }
            Some(Ok(event)) => self.frame_of(event, frames),
        }
    }

    fn reset_keep_alive(&mut self) {
        self.keep_alive.as_mut().reset(Instant::now() + KEEP_ALIVE);
    }

    /// Appends the chunk an upstream event becomes, if any; the rest is noted for the closing
    /// chunks.
    fn frame_of(&mut self, event: StreamEvent, frames: &mut Vec<u8>) {
        if matches!(
            event,
            StreamEvent::TextDelta(_) | StreamEvent::ToolCallDelta { .. }
        ) {
            self.tokens += 1;
        }
        match event {
            StreamEvent::TextDelta(text) => self.chunk_into(
                frames,
                &Delta {
                    content: Some(&text),
                    ..Delta::default()
                },
                None,
            ),
            StreamEvent::ToolCallDelta {
                index,
                id,
                name,
                arguments,
            } => {
                self.called_tools = true;
                let call = CallDelta {
                    index,
                    kind: id.as_ref().map(|_| "function"),
                    id: id.as_deref(),
                    function: FunctionDelta {
                        name: name.as_deref(),
                        arguments: &arguments,
                    },
                };
                self.chunk_into(
                    frames,
                    &Delta {
                        tool_calls: Some([call]),
                        ..Delta::default()
                    },
                    None,
                );
            }
            StreamEvent::Usage(usage) => self.usage = usage,
            StreamEvent::Finish(finish) => self.finish = Some(finish),
            StreamEvent::Restart { target } => {
                // Chunks already sent cannot be taken back in this protocol.
                tracing::warn!(%target, "a streamed completion failed over mid-reply; the client saw the abandoned attempt's chunks");
            }
            StreamEvent::Served(served) => self.served = Some(served),
            StreamEvent::Queued { .. } => {}
        }
    }

    /// Appends `head` + `[{"index":0,"delta":…,"finish_reason":…,"logprobs":null}]}`.
    fn chunk_into(&self, frames: &mut Vec<u8>, delta: &Delta, finish: Option<&str>) {
        frames.extend_from_slice(&self.head);
        frames.extend_from_slice(b"[{\"index\":0,\"delta\":");
        write_json(frames, delta);
        frames.extend_from_slice(b",\"finish_reason\":");
        write_json(frames, &finish);
        frames.extend_from_slice(b",\"logprobs\":null}]}\n\n");
    }

    /// The finish chunk, the usage chunk when asked for, and `[DONE]`.
    fn closing(&self, frames: &mut Vec<u8>) {
        let finish = self.finish.unwrap_or(if self.called_tools {
            FinishReason::ToolCalls
        } else {
            FinishReason::Stop
        });
        self.chunk_into(frames, &Delta::default(), Some(finish_reason(finish)));
        if self.include_usage {
            frames.extend_from_slice(&self.head);
            frames.extend_from_slice(b"[],\"usage\":");
            write_json(frames, &ChatUsage::from(self.usage));
            frames.extend_from_slice(b"}\n\n");
        }
        frames.extend_from_slice(b"data: [DONE]\n\n");
    }
}

impl Drop for Frames {
    /// Accounts the call once, with the usage seen, whether it ended or the client left.
    fn drop(&mut self) {
        self.bill.record(self.served.as_ref(), &self.usage);
    }
}

/// An upstream failure mid-stream, in OpenAI's error shape (the status went out already).
fn error_frame(error: &ModelError, frames: &mut Vec<u8>) {
    let error = model_error(error);
    frames.extend_from_slice(b"data: ");
    write_json(
        frames,
        &serde_json::json!({"error": {
            "message": error.message, "type": "server_error", "param": null, "code": error.code,
        }}),
    );
    frames.extend_from_slice(b"\n\n");
}

/// `choices[0].delta` of one chunk.
#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[CallDelta<'a>; 1]>,
}

impl Delta<'_> {
    /// The first chunk: who speaks, and no text yet.
    fn opening() -> Self {
        Delta {
            role: Some("assistant"),
            content: Some(""),
            tool_calls: None,
        }
    }
}

/// A piece of a tool call: `id` and `type` come with its first piece only.
#[derive(Serialize)]
struct CallDelta<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}
