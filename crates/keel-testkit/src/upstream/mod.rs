//! A mock upstream generic over a provider's wire format: one HTTP server that records every
//! request, lets the format check it (path, headers, auth, body, transcript) and refuse it in the
//! provider's error shape, and answers from a queue of scripted replies and shared `Fault`s.
//! A provider's mock is a `Wire` implementation (`wire.rs`); this file does everything they
//! have in common.

mod wire;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

pub use wire::{Refusal, Wire};
pub(crate) use wire::{bad_request, named_event, refuse, require_header, unknown_key};

use crate::Fault;
use crate::reply::MockReply;
use crate::server::{
    ConnectionControl, MockServer, RecordedRequest, StreamEnd, stall, streamed_body,
};

enum Scripted {
    Reply(MockReply),
    Fault(Fault),
}

struct UpstreamState<W> {
    wire: W,
    queue: Mutex<VecDeque<Scripted>>,
    requests: Mutex<Vec<RecordedRequest>>,
    served: Mutex<u64>,
    /// `GET`s answered (model lists), which `requests` leaves out.
    listed: Mutex<u64>,
}

/// A running mock of one provider; dropping it shuts the server down.
pub struct MockUpstream<W: Wire> {
    server: MockServer,
    state: Arc<UpstreamState<W>>,
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<W: Wire> MockUpstream<W> {
    /// Starts serving `wire` on 127.0.0.1 (each provider's mock has its own `start_…`).
    pub async fn serve(wire: W) -> std::io::Result<MockUpstream<W>> {
        let state = Arc::new(UpstreamState {
            wire,
            queue: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            served: Mutex::new(0),
            listed: Mutex::new(0),
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

    /// The wire format served, for settings a mock changes while running.
    pub fn wire(&self) -> &W {
        &self.state.wire
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

    /// Every request received so far, valid or not, in order (`GET`s of a listing aside).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    /// How many `GET`s (model lists) were asked, answered or not.
    pub fn listings(&self) -> u64 {
        *lock(&self.state.listed)
    }
}

fn error_response<W: Wire>(wire: &W, refusal: &Refusal) -> Response {
    let code = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (code, axum::Json(wire.refusal_body(refusal))).into_response();
    for (name, value) in wire.error_headers(refusal.status) {
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
    let wire = &state.wire;
    let refused = |status, message: &str| error_response(wire, &refuse(status, message));
    if method == Method::GET {
        *lock(&state.listed) += 1;
        return match wire.listing(uri.path()) {
            Some(list) => axum::Json(list).into_response(),
            None => refused(404, &format!("Invalid URL (GET {})", uri.path())),
        };
    }
    let request = RecordedRequest::new(method.as_str(), uri.path(), &headers, &body);
    lock(&state.requests).push(request.clone());
    if method != Method::POST {
        return refused(405, &format!("{method} is not allowed here; use POST"));
    }
    if !request
        .header("content-type")
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return refused(400, "Content-Type must be application/json");
    }
    if let Some(answer) = wire.embeddings(&request, uri.query().unwrap_or("")) {
        return match answer {
            Err(refusal) => error_response(wire, &refusal),
            Ok(body) => match take_status_fault(&state) {
                Some(fault) => fault_response(wire, fault),
                None => axum::Json(body).into_response(),
            },
        };
    }
    if let Err(refusal) = wire.check(&request, uri.query().unwrap_or("")) {
        return error_response(wire, &refusal);
    }
    let Some(next) = lock(&state.queue).pop_front() else {
        return refused(
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
    // Faults that come before any reply, streamed or not.
    match fault {
        Some(fault @ Fault::Status { .. }) => return fault_response(wire, fault),
        Some(Fault::ResetConnection) => return hang_up(&connection, true).await,
        Some(Fault::CloseConnection) => return hang_up(&connection, false).await,
        Some(Fault::StallBeforeResponse) => {
            stall().await;
            return refused(504, "the mock stalled past its limit");
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
    if let Some(body) = wire.whole_reply(&reply, &request, serial) {
        return whole_response(wire, body, fault, &connection).await;
    }
    let mut events = wire.stream_events(&reply, &request, serial);
    let end = match fault {
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
        // None, or a fault answered above.
        _ => StreamEnd::Complete,
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

/// The queued fault, when the next one is an HTTP status (the only kind embeddings take).
fn take_status_fault<W: Wire>(state: &UpstreamState<W>) -> Option<Fault> {
    let mut queue = lock(&state.queue);
    match queue.front() {
        Some(Scripted::Fault(Fault::Status { .. })) => match queue.pop_front() {
            Some(Scripted::Fault(fault)) => Some(fault),
            _ => None,
        },
        _ => None,
    }
}

/// The error response of a `Fault::Status`, with its `Retry-After` headers.
fn fault_response<W: Wire>(wire: &W, fault: Fault) -> Response {
    let Fault::Status {
        status,
        retry_after,
        retry_after_ms,
    } = fault
    else {
        return error_response(wire, &refuse(500, "not a status fault"));
    };
    let mut response = error_response(
        wire,
        &refuse(status, format!("Injected fault: HTTP {status}.")),
    );
    if let Some(value) = retry_after.and_then(|v| v.parse().ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    if let Some(ms) = retry_after_ms {
        response.headers_mut().insert("retry-after-ms", ms.into());
    }
    response
}

/// A non-streamed answer; stream faults become their closest whole-body equivalent.
async fn whole_response<W: Wire>(
    wire: &W,
    body: String,
    fault: Option<Fault>,
    connection: &ConnectionControl,
) -> Response {
    match fault {
        None => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Some(Fault::CutStream { .. }) => hang_up(connection, false).await,
        Some(Fault::StallStream { .. }) => {
            stall().await;
            error_response(wire, &refuse(504, "the mock stalled past its limit"))
        }
        Some(Fault::ErrorInStream { status, .. }) => error_response(
            wire,
            &refuse(status, format!("Injected fault: HTTP {status}.")),
        ),
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
