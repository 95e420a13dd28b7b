//! What the HTTP providers share after the request is built: one HTTP call that streams
//! Server-Sent Events through a provider's event decoder under first-byte and total deadlines
//! (`SseCall`), and the helpers their wire formats use. A provider supplies only its format.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::BoxStream;
use reqwest::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use crate::http::{retry_after, timeout_error, transport_error};
use crate::sse::{SseDecoder, SseEvent};
use crate::{ModelError, ModelErrorKind, ModelStream, StreamEvent};

/// Connection and reply deadlines of one provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTimeouts {
    pub connect_ms: u64,
    /// From sending the request until the first byte of the reply body.
    pub first_byte_ms: u64,
    /// The whole call, including reading the stream to its end.
    pub total_ms: u64,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            connect_ms: 10_000,
            first_byte_ms: 120_000,
            total_ms: 600_000,
        }
    }
}

/// A provider's reply format: SSE events in, normalized events out.
pub(crate) trait EventDecoder: Send + 'static {
    /// The normalized events one SSE event carries; an error ends the reply.
    fn decode(&mut self, event: &SseEvent) -> Result<Vec<StreamEvent>, ModelError>;
    /// Whether the reply announced its own end (later bytes are ignored).
    fn is_complete(&self) -> bool;
    /// Whether the body may end here without an end marker (e.g. Gemini after a finishReason).
    fn may_end(&self) -> bool {
        self.is_complete()
    }
    /// The closing events (usage if held back, the finish reason).
    fn finish(&mut self) -> Vec<StreamEvent>;
}

pub(crate) fn config_error(provider: &str, message: String) -> ModelError {
    ModelError::new(ModelErrorKind::BadRequest, provider, message)
}

/// What a provider's error body says: its human message (or the body itself) and its error
/// code or type, when it has one.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ErrorBody {
    pub message: String,
    pub code: Option<String>,
}

/// One streamed HTTP call.
pub(crate) struct SseCall<'a> {
    pub provider: &'static str,
    pub url: &'a str,
    pub timeouts: &'a HttpTimeouts,
    /// Reads the provider's error body.
    pub error_message: fn(&str) -> ErrorBody,
}

impl SseCall<'_> {
    /// Sends `request` and waits for the response's head: an error status becomes the
    /// provider's error (its message, `Retry-After`), within the first-byte deadline.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        started: Instant,
    ) -> Result<reqwest::Response, ModelError> {
        let provider = self.provider;
        let total = Duration::from_millis(self.timeouts.total_ms);
        let first_byte = Duration::from_millis(self.timeouts.first_byte_ms);
        let deadline = started + total;
        let first_byte_deadline = deadline.min(started + first_byte);
        let response = match timeout_at(first_byte_deadline, request.send()).await {
            Err(_) => {
                return Err(timeout_error(
                    provider,
                    "no first byte from the server",
                    first_byte,
                ));
            }
            Ok(Err(error)) => return Err(transport_error(provider, self.url, &error)),
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            let wait = retry_after(response.headers(), SystemTime::now());
            let text = match timeout_at(deadline, response.text()).await {
                Ok(Ok(text)) => text,
                _ => String::new(),
            };
            let body = (self.error_message)(&text);
            return Err(ModelError::from_status(
                provider,
                status.as_u16(),
                &body.message,
                body.code.as_deref(),
                wait,
            ));
        }
        Ok(response)
    }

    /// Sends a non-streamed `request` and returns its whole body, read within the total
    /// deadline (a plain call costs one body to parse instead of a chunk per token).
    pub(crate) async fn whole(
        self,
        request: reqwest::RequestBuilder,
    ) -> Result<String, ModelError> {
        let started = Instant::now();
        let total = Duration::from_millis(self.timeouts.total_ms);
        let response = self.send(request, started).await?;
        match timeout_at(started + total, response.text()).await {
            Err(_) => Err(timeout_error(self.provider, "the whole reply", total)),
            Ok(Err(error)) => Err(transport_error(self.provider, self.url, &error)),
            Ok(Ok(body)) => Ok(body),
        }
    }

    /// Sends `request` and returns the normalized stream. Failures up to the first byte of the
    /// body are returned here, so a router can still fail over cleanly.
    pub(crate) async fn run(
        self,
        request: reqwest::RequestBuilder,
        decoder: impl EventDecoder,
    ) -> Result<ModelStream, ModelError> {
        let provider = self.provider;
        let started = Instant::now();
        let total = Duration::from_millis(self.timeouts.total_ms);
        let first_byte = Duration::from_millis(self.timeouts.first_byte_ms);
        let deadline = started + total;
        let first_byte_deadline = deadline.min(started + first_byte);
        let no_first_byte = || timeout_error(provider, "no first byte from the server", first_byte);
        let response = self.send(request, started).await?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type
            .to_ascii_lowercase()
            .starts_with("text/event-stream")
        {
            return Err(ModelError::new(
                ModelErrorKind::Protocol,
                provider,
                format!(
                    "{} answered with content type `{content_type}`, not text/event-stream; check base_url (a proxy or \
                     login page may be in the way)",
                    self.url
                ),
            ));
        }
        let mut reply = Reply {
            provider,
            body: response.bytes_stream().boxed(),
            sse: SseDecoder::new(),
            decoder,
            pending: VecDeque::new(),
            read_deadline: first_byte_deadline,
            total,
            url: self.url.to_string(),
            over: false,
        };
        reply.read_more().await;
        if matches!(reply.pending.front(), Some(Err(_)))
            && let Some(Err(error)) = reply.pending.pop_front()
        {
            return Err(if error.kind == ModelErrorKind::Timeout {
                no_first_byte()
            } else {
                error
            });
        }
        reply.read_deadline = deadline;
        Ok(futures::stream::unfold(reply, |mut reply| async move {
            reply.next_event().await.map(|e| (e, reply))
        })
        .boxed())
    }
}

/// One reply being read: body bytes → SSE events → normalized events.
struct Reply<D> {
    provider: &'static str,
    body: BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    sse: SseDecoder,
    decoder: D,
    pending: VecDeque<Result<StreamEvent, ModelError>>,
    read_deadline: Instant,
    total: Duration,
    url: String,
    over: bool,
}

impl<D: EventDecoder> Reply<D> {
    async fn next_event(&mut self) -> Option<Result<StreamEvent, ModelError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            if self.over {
                return None;
            }
            self.read_more().await;
        }
    }

    async fn read_more(&mut self) {
        match timeout_at(self.read_deadline, self.body.next()).await {
            Err(_) => self.fail(timeout_error(
                self.provider,
                "the reply did not finish",
                self.total,
            )),
            Ok(Some(Err(error))) => self.fail(transport_error(self.provider, &self.url, &error)),
            Ok(Some(Ok(bytes))) => {
                for event in self.sse.push(&bytes) {
                    match self.decoder.decode(&event) {
                        Ok(events) => self.pending.extend(events.into_iter().map(Ok)),
                        Err(error) => return self.fail(error),
                    }
                    if self.decoder.is_complete() {
                        return self.finish();
                    }
                }
            }
            Ok(None) if self.decoder.may_end() && !self.sse.has_partial_event() => self.finish(),
            Ok(None) => self.fail(ModelError::new(
                ModelErrorKind::Unavailable,
                self.provider,
                format!(
                    "{}: the stream ended before the reply was finished",
                    self.url
                ),
            )),
        }
    }

    fn finish(&mut self) {
        let events = self.decoder.finish();
        self.pending.extend(events.into_iter().map(Ok));
        self.over = true;
    }

    fn fail(&mut self, error: ModelError) {
        self.pending.push_back(Err(error));
        self.over = true;
    }
}

/// Reads a reply body that arrives in `chunks` through the SSE decoder and `decoder`, exactly
/// as a call reads it (the same `Reply` loop) but without HTTP: every event it yields, ending
/// with the closing events or the error. The fuzz targets' way in (`reply_bytes`).
pub(crate) async fn read_body(
    provider: &'static str,
    decoder: impl EventDecoder,
    chunks: Vec<bytes::Bytes>,
) -> Vec<Result<StreamEvent, ModelError>> {
    let mut reply = Reply {
        provider,
        body: futures::stream::iter(chunks.into_iter().map(Ok)).boxed(),
        sse: SseDecoder::new(),
        decoder,
        pending: VecDeque::new(),
        read_deadline: Instant::now() + Duration::from_secs(3600),
        total: Duration::from_secs(3600),
        url: "reply body".into(),
        over: false,
    };
    let mut events = Vec::new();
    while let Some(event) = reply.next_event().await {
        events.push(event);
    }
    events
}

/// Parses one SSE payload as JSON, or says which provider sent what.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    provider: &str,
    data: &str,
) -> Result<T, ModelError> {
    serde_json::from_str(data).map_err(|e| {
        let start: String = data.chars().take(200).collect();
        ModelError::new(
            ModelErrorKind::Protocol,
            provider,
            format!("malformed stream event ({e}): {start}"),
        )
    })
}

/// Tool-call arguments as JSON text: a string holds text the model produced that was not JSON.
pub(crate) fn arguments_text(arguments: &serde_json::Value) -> String {
    match arguments {
        serde_json::Value::String(raw) => raw.clone(),
        other => other.to_string(),
    }
}

/// Tool-call arguments as a JSON object, for formats that carry objects (Anthropic, Gemini).
pub(crate) fn arguments_object(arguments: &serde_json::Value) -> serde_json::Value {
    match arguments {
        serde_json::Value::Object(_) => arguments.clone(),
        serde_json::Value::String(raw) => match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(value @ serde_json::Value::Object(_)) => value,
            _ => serde_json::json!({"_raw": raw}),
        },
        other => serde_json::json!({"value": other}),
    }
}
