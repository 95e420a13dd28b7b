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

use super::chat::{Meta, finish_reason};
use super::error::{error_type, model_error};
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

/// What is told, once, how the call went: who served it and the usage it reported.
pub(super) type OnEnd = Box<dyn FnOnce(Option<&Served>, &Usage) + Send>;

/// Streams the upstream reply as `chat.completion.chunk` events, ending with `data: [DONE]`;
/// `on_end` learns the usage when the body ends or is dropped.
pub(super) fn respond(
    upstream: ModelStream,
    meta: &Meta,
    include_usage: bool,
    on_end: OnEnd,
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
        on_end: Some(on_end),
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
    on_end: Option<OnEnd>,
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
    /// Reports the call once, with the usage seen, whether it ended or the client left.
    fn drop(&mut self) {
        if let Some(on_end) = self.on_end.take() {
            on_end(self.served.as_ref(), &self.usage);
        }
    }
}

/// An upstream failure mid-stream, in OpenAI's error shape (the status went out already).
fn error_frame(error: &ModelError, frames: &mut Vec<u8>) {
    let error = model_error(error, "messages");
    frames.extend_from_slice(b"data: ");
    write_json(
        frames,
        &serde_json::json!({"error": {
            "message": error.message, "type": error_type(error.status), "param": error.param,
            "code": error.code,
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::BodyDataStream;
    use keel_models::ModelErrorKind;
    use serde_json::Value;

    use super::*;

    /// What `on_end` was told, and how many times.
    type Ended = Arc<Mutex<Vec<(Option<String>, Usage)>>>;

    fn stream_of(
        events: Vec<Result<StreamEvent, ModelError>>,
        then_wait: bool,
    ) -> (BodyDataStream, Ended) {
        let upstream = futures::stream::iter(events);
        body_of(if then_wait {
            upstream.chain(futures::stream::pending()).boxed()
        } else {
            upstream.boxed()
        })
    }

    fn body_of(upstream: ModelStream) -> (BodyDataStream, Ended) {
        let ended: Ended = Arc::default();
        let seen = ended.clone();
        let meta = Meta {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "a \"quoted\" model".into(),
        };
        let on_end: OnEnd = Box::new(move |served: Option<&Served>, usage: &Usage| {
            let target = served.map(|s| format!("{}/{}", s.provider, s.model));
            seen.lock().unwrap().push((target, *usage));
        });
        let response = respond(upstream, &meta, true, on_end);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/event-stream");
        (response.into_body().into_data_stream(), ended)
    }

    /// The `data:` payloads in `bytes`, JSON-decoded (`[DONE]` as a string).
    fn payloads(bytes: &[u8]) -> Vec<Value> {
        let text = std::str::from_utf8(bytes).unwrap();
        assert!(
            text.ends_with("\n\n"),
            "frames end with a blank line: {text:?}"
        );
        text.split("\n\n")
            .filter_map(|event| event.strip_prefix("data: "))
            .map(|data| serde_json::from_str(data).unwrap_or_else(|_| Value::from(data)))
            .collect()
    }

    /// Every payload of the body, and how many frames (writes) carried them.
    async fn all(mut body: BodyDataStream) -> (Vec<Value>, usize) {
        let (mut bytes, mut frames) = (Vec::new(), 0);
        while let Some(frame) = body.next().await {
            bytes.extend_from_slice(&frame.unwrap());
            frames += 1;
        }
        (payloads(&bytes), frames)
    }

    fn usage(input: u64, output: u64) -> Usage {
        Usage {
            input_tokens: input,
            output_tokens: output,
            cached_input_tokens: 0,
        }
    }

    #[tokio::test]
    async fn a_reply_becomes_chunks_then_finish_usage_and_done() {
        let (body, ended) = stream_of(
            vec![
                Ok(StreamEvent::TextDelta("Hel".into())),
                Ok(StreamEvent::ToolCallDelta {
                    index: 0,
                    id: Some("call_1".into()),
                    name: Some("lookup".into()),
                    arguments: "{\"q\":".into(),
                }),
                Ok(StreamEvent::ToolCallDelta {
                    index: 0,
                    id: None,
                    name: None,
                    arguments: "1}".into(),
                }),
                Ok(StreamEvent::Usage(usage(5, 3))),
                Ok(StreamEvent::Finish(FinishReason::ToolCalls)),
            ],
            false,
        );
        let (chunks, frames) = all(body).await;
        assert_eq!(frames, 1, "a reply that is all there goes out in one write");
        assert_eq!(chunks.len(), 7, "{chunks:#?}");
        for chunk in &chunks[..6] {
            assert_eq!(chunk["id"], "chatcmpl-1");
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["created"], 7);
            assert_eq!(chunk["model"], "a \"quoted\" model");
        }
        let delta = |i: usize| &chunks[i]["choices"][0]["delta"];
        assert_eq!(delta(0)["role"], "assistant");
        assert_eq!(delta(1)["content"], "Hel");
        let first = &delta(2)["tool_calls"][0];
        assert_eq!(
            (&first["id"], &first["type"], &first["function"]["name"]),
            (&"call_1".into(), &"function".into(), &"lookup".into())
        );
        let second = &delta(3)["tool_calls"][0];
        assert!(second.get("id").is_none() && second["function"].get("name").is_none());
        assert_eq!(second["function"]["arguments"], "1}");
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], Value::Null);
        assert_eq!(chunks[5]["choices"], serde_json::json!([]));
        assert_eq!(chunks[5]["usage"]["prompt_tokens"], 5);
        assert_eq!(chunks[5]["usage"]["total_tokens"], 8);
        assert_eq!(chunks[6], "[DONE]");
        assert_eq!(*ended.lock().unwrap(), vec![(None, usage(5, 3))]);
    }

    #[tokio::test]
    async fn a_failure_mid_stream_ends_it_with_an_openai_error() {
        let (body, ended) = stream_of(
            vec![
                Ok(StreamEvent::TextDelta("partial".into())),
                Err(ModelError::new(
                    ModelErrorKind::Unavailable,
                    "openai",
                    "connection reset",
                )),
                Ok(StreamEvent::TextDelta("never sent".into())),
            ],
            false,
        );
        let (chunks, _) = all(body).await;
        let last = chunks.last().unwrap();
        assert_eq!(last["error"]["code"], "upstream_unavailable");
        assert_eq!(last["error"]["type"], "upstream_error");
        assert!(
            last["error"]["message"]
                .as_str()
                .unwrap()
                .contains("connection reset")
        );
        assert!(
            !chunks
                .iter()
                .any(|c| c == "[DONE]" || c.to_string().contains("never sent"))
        );
        assert_eq!(ended.lock().unwrap().len(), 1);
    }

    /// The text of each content chunk in one frame.
    fn tokens(frame: &[u8]) -> Vec<String> {
        payloads(frame)
            .iter()
            .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str())
            .filter(|text| !text.is_empty())
            .map(str::to_string)
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_that_come_apart_go_out_apart_and_at_once() {
        // Batching takes only what is ready: a token is never held back for the next one.
        let gap = Duration::from_millis(40);
        let upstream = futures::stream::iter(["one", "two", "three"])
            .then(move |word| async move {
                tokio::time::sleep(gap).await;
                Ok(StreamEvent::TextDelta(word.into()))
            })
            .boxed();
        let (mut body, _) = body_of(upstream);
        let started = Instant::now();
        let opening = body.next().await.unwrap().unwrap();
        assert!(tokens(&opening).is_empty() && started.elapsed() < gap);
        for (i, word) in ["one", "two", "three"].into_iter().enumerate() {
            let frame = body.next().await.unwrap().unwrap();
            assert_eq!(tokens(&frame), [word]);
            let due = gap * (i as u32 + 1);
            let at = started.elapsed();
            assert!(
                at >= due && at < due + Duration::from_millis(1),
                "{word} at {at:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_upstream_gets_keep_alive_comments_and_a_client_leaving_is_accounted() {
        let served = Served {
            route: "fast".into(),
            target: 0,
            provider: "openai".into(),
            provider_kind: "openai".into(),
            model: "gpt-x".into(),
            attempts: 1,
            first_event: Duration::ZERO,
            latency: Duration::ZERO,
        };
        let (mut body, ended) = stream_of(
            vec![
                Ok(StreamEvent::TextDelta("thinking".into())),
                Ok(StreamEvent::Usage(usage(9, 1))),
                Ok(StreamEvent::Served(served)),
            ],
            true,
        );
        loop {
            let frame = body.next().await.unwrap().unwrap();
            if std::str::from_utf8(&frame)
                .unwrap()
                .contains("\"thinking\"")
            {
                break;
            }
        }
        let started = Instant::now();
        let comment = body.next().await.unwrap().unwrap();
        assert_eq!(&comment[..], b": keep-alive\n\n");
        assert!(started.elapsed() >= KEEP_ALIVE, "{:?}", started.elapsed());
        assert!(ended.lock().unwrap().is_empty(), "the call is not over yet");
        drop(body);
        assert_eq!(
            *ended.lock().unwrap(),
            vec![(Some("openai/gpt-x".into()), usage(9, 1))]
        );
    }
}
