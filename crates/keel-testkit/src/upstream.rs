//! A mock upstream generic over a provider's wire format: one HTTP server that records every
//! request, lets the format check it (path, headers, auth, body, transcript) and refuse it in the
//! provider's error shape, and answers from a queue of scripted replies and shared `Fault`s.
//! A provider's mock is a `Wire` implementation; this file does everything they have in common.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::Fault;
use crate::openai_mock::MockReply;
use crate::server::{
    ConnectionControl, MockServer, RecordedRequest, StreamEnd, stall, streamed_body,
};

/// Why the mock refuses a request: the HTTP status and the provider's message.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
}

pub(crate) fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// One provider's wire format, as its mock speaks it (streaming only: keel always streams).
pub trait Wire: Send + Sync + 'static {
    /// Checks a request as the provider would: path and query, headers and auth, body schema,
    /// and that the transcript is complete and well-formed.
    fn check(&self, request: &RecordedRequest, query: &str) -> Result<(), Refusal>;
    /// The provider's error body for a status.
    fn error_body(&self, status: u16, message: &str) -> Value;
    /// The events of a streamed reply, in order, each one whole event as sent on the wire
    /// (an SSE `event:`/`data:` block, or a binary frame).
    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Vec<Bytes>;
    /// The provider's in-stream error event for a status.
    fn stream_error(&self, status: u16, message: &str) -> Bytes;
    /// An event whose payload is not valid JSON.
    fn malformed_event(&self) -> Bytes {
        Bytes::from_static(
            b"data: {\"type\": \"broken\", \"candidates\": [{

",
        )
    }
    /// The content type of a streamed reply.
    fn stream_content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }
    /// Headers of an error response (besides `Retry-After`), e.g. AWS's `x-amzn-errortype`.
    fn error_headers(&self, _status: u16) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// SSE events as body chunks.
pub(crate) fn sse(events: Vec<String>) -> Vec<Bytes> {
    events.into_iter().map(Bytes::from).collect()
}

enum Scripted {
    Reply(MockReply),
    Fault(Fault),
}

struct UpstreamState<W> {
    wire: W,
    queue: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<RecordedRequest>>,
    served: Mutex<u64>,
}

/// A running mock of one provider; dropping it shuts the server down.
pub struct MockUpstream<W: Wire> {
    server: MockServer,
    state: Arc<UpstreamState<W>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<W: Wire> MockUpstream<W> {
    pub async fn start(wire: W) -> std::io::Result<MockUpstream<W>> {
        let state = Arc::new(UpstreamState {
            wire,
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            served: Mutex::new(0),
        });
        let router = Router::new()
            .fallback(handle::<W>)
            .with_state(state.clone());
        Ok(MockUpstream {
            server: MockServer::start(router).await?,
            state,
        })
    }

    /// `http://127.0.0.1:PORT`, without a path.
    pub fn origin(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// Queues a reply (first in, first out, shared with faults).
    pub fn push_reply(&self, reply: MockReply) -> &Self {
        lock(&self.state.queue).push_back(Scripted::Reply(reply));
        self
    }

    /// Queues a fault to be injected in place of a reply.
    pub fn push_fault(&self, fault: Fault) -> &Self {
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

fn error_response<W: Wire>(wire: &W, status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, axum::Json(wire.error_body(status, message))).into_response();
    for (name, value) in wire.error_headers(status) {
        if let Ok(value) = value.parse() {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

async fn handle<W: Wire>(
    State(state): State<Arc<UpstreamState<W>>>,
    Extension(connection): Extension<ConnectionControl>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let request = RecordedRequest::new(method.as_str(), uri.path(), &headers, &body);
    lock(&state.requests).push(request.clone());
    let wire = &state.wire;
    if method != Method::POST {
        return error_response(
            wire,
            405,
            &format!("{method} is not allowed here; use POST"),
        );
    }
    if !request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return error_response(wire, 400, "Content-Type must be application/json");
    }
    if let Err(refusal) = wire.check(&request, uri.query().unwrap_or("")) {
        return error_response(wire, refusal.status, &refusal.message);
    }
    let Some(next) = lock(&state.queue).pop_front() else {
        return error_response(
            wire,
            500,
            "the mock has no reply queued: call push_reply or push_fault first",
        );
    };
    let serial = {
        let mut served = lock(&state.served);
        *served += 1;
        *served
    };
    let (reply, fault) = match next {
        Scripted::Reply(reply) => (reply, None),
        Scripted::Fault(fault) => (
            MockReply::text("This reply is cut short by an injected fault."),
            Some(fault),
        ),
    };
    let mut events = wire.stream_events(&reply, &request, serial);
    let end = match fault {
        None => StreamEnd::Complete,
        Some(Fault::Status {
            status,
            retry_after,
            retry_after_ms,
        }) => {
            let mut response =
                error_response(wire, status, &format!("Injected fault: HTTP {status}."));
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
            return error_response(wire, 504, "the mock stalled past its limit");
        }
        Some(Fault::WrongContentType) => {
            return (
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body>Welcome to the proxy</body></html>",
            )
                .into_response();
        }
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
            events.push(wire.malformed_event());
            StreamEnd::Complete
        }
        Some(Fault::ErrorInStream {
            after_chunks,
            status,
        }) => {
            events.truncate(after_chunks);
            events
                .push(wire.stream_error(status, &format!("Injected in-stream error ({status}).")));
            StreamEnd::Complete
        }
    };
    let body = streamed_body(events, end, connection);
    (
        [
            (header::CONTENT_TYPE, wire.stream_content_type()),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Ends the connection without a response; the returned response is never sent.
async fn hang_up(connection: &ConnectionControl, reset: bool) -> Response {
    if reset {
        connection.reset();
    } else {
        connection.close();
    }
    futures::future::pending::<()>().await;
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

/// `event: <name>` plus the JSON data, as one SSE event.
pub(crate) fn named_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The reply's finish in OpenAI's vocabulary (`stop`, `length`, `tool_calls`, `content_filter`).
pub(crate) fn finish_of(reply: &MockReply) -> &str {
    reply.finish_reason()
}

/// Splits JSON arguments into up to three pieces at char boundaries, as providers stream them.
pub(crate) fn pieces(text: &str) -> Vec<String> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    if bounds.len() < 3 {
        return if text.is_empty() {
            Vec::new()
        } else {
            vec![text.to_string()]
        };
    }
    let (a, b) = (bounds[bounds.len() / 3], bounds[2 * bounds.len() / 3]);
    vec![
        text[..a].to_string(),
        text[a..b].to_string(),
        text[b..].to_string(),
    ]
}

/// The header must be present and equal `expected`, else 401 with `hint`.
pub(crate) fn require_header(
    request: &RecordedRequest,
    name: &str,
    expected: &str,
    hint: &str,
) -> Result<(), Refusal> {
    match request.header(name) {
        Some(given) if given == expected => Ok(()),
        Some(_) => Err(refuse(401, format!("invalid credentials in `{name}`"))),
        None => Err(refuse(401, format!("missing `{name}` header; {hint}"))),
    }
}

/// Keys of a JSON object outside `known`, for "unknown field" refusals.
pub(crate) fn unknown_key<'a>(
    object: &'a serde_json::Map<String, Value>,
    known: &[&str],
) -> Option<&'a String> {
    object.keys().find(|k| !known.contains(&k.as_str()))
}
