//! What a provider's mock says about its wire format (`Wire`): how it checks a request, how it
//! writes an error, a whole reply and a streamed one; and the small helpers the formats share.

use axum::body::Bytes;
use serde_json::Value;

use crate::reply::MockReply;
use crate::server::RecordedRequest;

/// Why the mock refuses a request: the HTTP status, the provider's message, and where the
/// provider's error shape has them, the offending parameter and an error code.
#[derive(Debug)]
pub struct Refusal {
    pub status: u16,
    pub message: String,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

pub(crate) fn refuse(status: u16, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
        param: None,
        code: None,
    }
}

/// A 400 refusal: the request is malformed.
pub(crate) fn bad_request(message: impl Into<String>) -> Refusal {
    refuse(400, message)
}

/// One provider's wire format, as its mock speaks it.
pub trait Wire: Send + Sync + 'static {
    /// One event of a streamed reply as sent: an SSE block (`String`) or a binary frame.
    type Event: Into<Bytes> + From<&'static str> + Send + 'static;

    /// Checks a request as the provider would: path and query, headers and auth, body schema,
    /// and that the transcript is complete and well-formed.
    fn check(&self, request: &RecordedRequest, query: &str) -> Result<(), Refusal>;
    /// The provider's error body for a status.
    fn error_body(&self, status: u16, message: &str) -> Value;
    /// The error body for a refusal; formats that name the parameter or a code say so here.
    fn refusal_body(&self, refusal: &Refusal) -> Value {
        self.error_body(refusal.status, &refusal.message)
    }
    /// The events of a streamed reply, in order, each one whole event as sent on the wire.
    fn stream_events(
        &self,
        reply: &MockReply,
        request: &RecordedRequest,
        serial: u64,
    ) -> Vec<Self::Event>;
    /// The provider's in-stream error event for a status.
    fn stream_error(&self, status: u16, message: &str) -> Self::Event;
    /// An event whose payload is not valid JSON.
    fn malformed_event(&self) -> Self::Event {
        Self::Event::from("data: {\"type\": \"broken\", \"candidates\": [{\n\n")
    }
    /// The whole JSON body of the reply when the request asks for it unstreamed; `None` (the
    /// default) when the request streams, as keel's requests to every provider but OpenAI do.
    fn whole_reply(
        &self,
        _reply: &MockReply,
        _request: &RecordedRequest,
        _serial: u64,
    ) -> Option<String> {
        None
    }
    /// The content type of a streamed reply.
    fn stream_content_type(&self) -> &'static str {
        "text/event-stream; charset=utf-8"
    }
    /// The body answering a `GET` of `path` (a provider's model list), or `None` where the
    /// format has no such endpoint (the mock answers 404). Listings are not model calls: they
    /// are not queued replies and `requests()` does not record them.
    fn listing(&self, _path: &str) -> Option<Value> {
        None
    }
    /// The answer to a request on the format's embeddings endpoint, checked and computed from
    /// the request alone (`crate::embedding`), or `None` when `request` is not on it. Embeddings
    /// use no queued reply; a queued `Fault::Status` still answers in their place.
    fn embeddings(
        &self,
        _request: &RecordedRequest,
        _query: &str,
    ) -> Option<Result<Value, Refusal>> {
        None
    }
    /// Headers of an error response (besides `Retry-After`), e.g. AWS's `x-amzn-errortype`.
    fn error_headers(&self, _status: u16) -> Vec<(&'static str, String)> {
        Vec::new()
    }
}

/// `event: <name>` plus the JSON data, as one SSE event.
pub(crate) fn named_event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
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
