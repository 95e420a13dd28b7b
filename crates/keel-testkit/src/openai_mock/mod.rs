//! A mock of OpenAI's Chat Completions endpoint (`POST /v1/chat/completions`), streaming and not.
//! It checks what it receives as OpenAI would (bearer key, body shape, tool message pairing) and
//! answers 400 in OpenAI's error shape when it is wrong, records every request, and replies from a
//! queue of scripted replies and injected faults. vLLM, Ollama and llama.cpp speak the same format.

pub(crate) mod render;
pub(crate) mod validate;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;

use crate::Fault;
use crate::server::{
    ConnectionControl, MockServer, RecordedRequest, StreamEnd, stall, streamed_body,
};

/// One tool call in a scripted reply; `arguments` is sent as the JSON string OpenAI uses.
#[derive(Clone, Debug, PartialEq)]
pub struct MockToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// Token counts reported in a reply's `usage`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MockUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
}

/// A scripted assistant reply.
#[derive(Clone, Debug, PartialEq)]
pub struct MockReply {
    pub text: String,
    pub tool_calls: Vec<MockToolCall>,
    /// `finish_reason` to send; by default `tool_calls` when there are calls, else `stop`.
    pub finish_reason: Option<String>,
    pub usage: MockUsage,
}

impl MockReply {
    /// A text reply; usage counts its words as completion tokens.
    pub fn text(text: impl Into<String>) -> MockReply {
        let text = text.into();
        let completion_tokens = render::word_pieces(&text).len() as u64;
        MockReply {
            text,
            tool_calls: Vec::new(),
            finish_reason: None,
            usage: MockUsage {
                prompt_tokens: 10,
                completion_tokens,
                cached_tokens: 0,
            },
        }
    }

    /// A reply with no text and no calls yet; add calls with `tool_call`.
    pub fn tool_calls() -> MockReply {
        MockReply::text("")
    }

    /// Adds a tool call with these JSON arguments.
    pub fn tool_call(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        arguments: Value,
    ) -> MockReply {
        self.tool_calls.push(MockToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.to_string(),
        });
        self.usage.completion_tokens += 5;
        self
    }

    pub fn finish_reason(&self) -> &str {
        match &self.finish_reason {
            Some(reason) => reason,
            None if !self.tool_calls.is_empty() => "tool_calls",
            None => "stop",
        }
    }

    pub fn with_finish_reason(mut self, reason: impl Into<String>) -> MockReply {
        self.finish_reason = Some(reason.into());
        self
    }

    pub fn with_usage(
        mut self,
        prompt_tokens: u64,
        completion_tokens: u64,
        cached_tokens: u64,
    ) -> MockReply {
        self.usage = MockUsage {
            prompt_tokens,
            completion_tokens,
            cached_tokens,
        };
        self
    }
}

enum Scripted {
    Reply(MockReply),
    Fault(Fault),
}

struct MockState {
    api_key: Option<String>,
    /// Words a request's messages may hold in all; more is refused as OpenAI refuses an input
    /// longer than the context window (400 `context_length_exceeded`), without using a reply.
    context_window: Mutex<Option<usize>>,
    queue: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<RecordedRequest>>,
    next_id: AtomicU64,
}

/// The running mock; dropping it shuts the server down.
pub struct MockOpenAi {
    server: MockServer,
    state: Arc<MockState>,
}

impl MockOpenAi {
    /// Starts a mock that accepts any (or no) API key.
    pub async fn start() -> std::io::Result<MockOpenAi> {
        MockOpenAi::start_inner(None).await
    }

    /// Starts a mock that refuses requests without `Authorization: Bearer <api_key>` (401).
    pub async fn start_with_api_key(api_key: impl Into<String>) -> std::io::Result<MockOpenAi> {
        MockOpenAi::start_inner(Some(api_key.into())).await
    }

    async fn start_inner(api_key: Option<String>) -> std::io::Result<MockOpenAi> {
        let state = Arc::new(MockState {
            api_key,
            context_window: Mutex::new(None),
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .fallback(unknown_path)
            .with_state(state.clone());
        Ok(MockOpenAi {
            server: MockServer::start(router).await?,
            state,
        })
    }

    /// The base URL a client is configured with: `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    /// Queues a reply for a later request (first in, first out, shared with faults).
    pub fn push_reply(&self, reply: MockReply) -> &MockOpenAi {
        lock(&self.state.queue).push_back(Scripted::Reply(reply));
        self
    }

    /// Refuses requests whose messages hold more than `words` words (a word counts as a token)
    /// with OpenAI's 400 `context_length_exceeded`, as a model with that context window does.
    pub fn set_context_window(&self, words: usize) -> &MockOpenAi {
        *lock(&self.state.context_window) = Some(words);
        self
    }

    /// Queues a fault to be injected in place of a reply.
    pub fn push_fault(&self, fault: Fault) -> &MockOpenAi {
        lock(&self.state.queue).push_back(Scripted::Fault(fault));
        self
    }

    /// How many queued replies and faults are still unused.
    pub fn pending(&self) -> usize {
        lock(&self.state.queue).len()
    }

    /// Every request received so far, valid or not, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn error_response(status: u16, message: &str, param: Option<&str>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(render::error_body(status, message, param))).into_response()
}

async fn unknown_path(method: Method, uri: Uri) -> Response {
    error_response(404, &format!("Invalid URL ({method} {})", uri.path()), None)
}

async fn chat_completions(
    State(state): State<Arc<MockState>>,
    Extension(connection): Extension<ConnectionControl>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest::new(method.as_str(), uri.path(), &headers, &body);
    lock(&state.requests).push(request.clone());

    if let Some(expected) = &state.api_key {
        match request.header("authorization") {
            None => {
                return error_response(
                    401,
                    "You didn't provide an API key. Send 'Authorization: Bearer KEY'.",
                    None,
                );
            }
            Some(given) if given != format!("Bearer {expected}") => {
                return error_response(401, "Incorrect API key provided.", None);
            }
            Some(_) => {}
        }
    }
    let json_content = request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_content {
        return error_response(400, "Content-Type must be application/json.", None);
    }
    if let Err(invalid) = validate::check_chat_request(&request.body) {
        return error_response(400, &invalid.message, invalid.param.as_deref());
    }
    let window = *lock(&state.context_window);
    if let Some(window) = window {
        let used = prompt_words(&request.body);
        if used > window {
            let message = format!(
                "This model's maximum context length is {window} tokens. However, your messages resulted in {used} tokens. Please reduce the length of the messages."
            );
            let mut body = render::error_body(400, &message, Some("messages"));
            body["error"]["code"] = Value::from("context_length_exceeded");
            return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
        }
    }

    let Some(next) = lock(&state.queue).pop_front() else {
        return error_response(
            500,
            "MockOpenAi has no reply queued: call push_reply or push_fault first.",
            None,
        );
    };
    let (reply, fault) = match next {
        Scripted::Reply(reply) => (reply, None),
        Scripted::Fault(fault) => (
            MockReply::text("This reply is cut short by an injected fault."),
            Some(fault),
        ),
    };
    let id = format!(
        "chatcmpl-mock{}",
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let model = request.body["model"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    match fault {
        Some(Fault::Status {
            status,
            retry_after,
            retry_after_ms,
        }) => {
            let mut response =
                error_response(status, &format!("Injected fault: HTTP {status}."), None);
            if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            if let Some(ms) = retry_after_ms {
                response.headers_mut().insert("retry-after-ms", ms.into());
            }
            return response;
        }
        Some(Fault::ResetConnection) => return hang_up(&connection, true).await,
        Some(Fault::CloseConnection) => return hang_up(&connection, false).await,
        Some(Fault::StallBeforeResponse) => {
            stall().await;
            return error_response(504, "MockOpenAi stalled past its limit.", None);
        }
        Some(Fault::WrongContentType) => {
            return (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Welcome to the proxy</body></html>",
            )
                .into_response();
        }
        _ => {}
    }

    if request.body["stream"] != Value::Bool(true) {
        return whole_reply(&reply, &id, &model, fault, &connection).await;
    }
    let include_usage = request.body["stream_options"]["include_usage"] == Value::Bool(true);
    let mut events = render::stream_events(&reply, &id, &model, include_usage);
    let end = match fault {
        None => StreamEnd::Complete,
        Some(Fault::CutStream { after_chunks }) => {
            events.truncate(after_chunks);
            StreamEnd::Drop
        }
        Some(Fault::TruncateStream { after_chunks }) => {
            events.truncate(after_chunks);
            StreamEnd::Complete
        }
        Some(Fault::StallStream { after_chunks }) => {
            events.truncate(after_chunks);
            StreamEnd::Stall
        }
        Some(Fault::MalformedChunk { after_chunks }) => {
            events.truncate(after_chunks);
            events.push(format!("data: {{\"id\": \"{id}\", \"object\": \"chat.completion.chunk\", \"choices\": [{{\n\n"));
            StreamEnd::Complete
        }
        Some(Fault::ErrorInStream {
            after_chunks,
            status,
        }) => {
            events.truncate(after_chunks);
            events.push(render::sse_data(&render::error_body(
                status,
                &format!("Injected in-stream error ({status})."),
                None,
            )));
            StreamEnd::Complete
        }
        // Answered before any streaming started.
        Some(
            Fault::Status { .. }
            | Fault::ResetConnection
            | Fault::CloseConnection
            | Fault::StallBeforeResponse
            | Fault::WrongContentType,
        ) => StreamEnd::Complete,
    };
    let body = streamed_body(events, end, connection);
    (
        [
            (header::CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The words of a request's messages (text content and text parts), as the mock counts tokens.
fn prompt_words(body: &Value) -> usize {
    let words = |text: &str| text.split_whitespace().count();
    body["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|m| match &m["content"] {
                    Value::String(text) => words(text),
                    Value::Array(parts) => parts
                        .iter()
                        .filter_map(|p| p["text"].as_str())
                        .map(words)
                        .sum(),
                    _ => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Ends the connection without a response. The returned response is never sent.
async fn hang_up(connection: &ConnectionControl, reset: bool) -> Response {
    if reset {
        connection.reset();
    } else {
        connection.close();
    }
    futures::future::pending::<()>().await;
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// A non-streamed answer; stream faults become their closest whole-body equivalent.
async fn whole_reply(
    reply: &MockReply,
    id: &str,
    model: &str,
    fault: Option<Fault>,
    connection: &ConnectionControl,
) -> Response {
    let body = render::completion(reply, id, model).to_string();
    match fault {
        None => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Some(Fault::CutStream { .. }) => hang_up(connection, false).await,
        Some(Fault::StallStream { .. }) => {
            stall().await;
            error_response(504, "MockOpenAi stalled past its limit.", None)
        }
        Some(Fault::ErrorInStream { status, .. }) => {
            error_response(status, &format!("Injected fault: HTTP {status}."), None)
        }
        Some(_) => {
            let half = body.len() / 2;
            (
                [(header::CONTENT_TYPE, "application/json")],
                Body::from(body[..half].to_string()),
            )
                .into_response()
        }
    }
}
