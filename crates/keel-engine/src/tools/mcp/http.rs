//! The streamable-HTTP transport's HTTP side, over keel's own reqwest client rather than the
//! SDK's: so an MCP server is reached through the SSRF guard like any HTTP tool (its resolver,
//! and each URL's literal address checked), with the server's secret header on every request,
//! and with no second HTTP stack in the build. JSON answers and each server-sent event are read
//! no further than a cap.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::{Sse, SseStream};

use crate::tools::net_guard::AddressPolicy;

const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
const EVENT_STREAM: &str = "text/event-stream";
const JSON: &str = "application/json";

type Failure = StreamableHttpError<reqwest::Error>;

/// A guarded client and the headers every request to the server carries (its secret).
#[derive(Clone)]
pub(super) struct GuardedHttp {
    pub client: reqwest::Client,
    pub policy: Arc<AddressPolicy>,
    pub headers: HeaderMap,
}

impl GuardedHttp {
    /// A request to `uri`, refused before it leaves when the URL's literal address is one the
    /// server's policy does not allow (names are checked by the client's resolver).
    fn request(
        &self,
        method: reqwest::Method,
        uri: &str,
        session_id: Option<&str>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        let url = reqwest::Url::parse(uri).map_err(|e| {
            StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
                "the MCP server's URL {uri:?} is not valid: {e}"
            )))
        })?;
        self.policy
            .check_url(&url)
            .map_err(|refused| StreamableHttpError::Io(std::io::Error::other(refused)))?;
        let mut request = self
            .client
            .request(method, url)
            .headers(self.headers.clone());
        for (name, value) in custom_headers {
            request = request.header(name, value);
        }
        if let Some(session_id) = session_id {
            request = request.header(SESSION_ID, session_id);
        }
        if let Some(token) = auth_token {
            request = request.bearer_auth(token);
        }
        Ok(request)
    }
}

fn media_type_is(value: Option<&HeaderValue>, expected: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case(expected))
}

/// The body, failing once it passes `limit` bytes.
async fn read_capped(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        body.extend_from_slice(&chunk.map_err(StreamableHttpError::Client)?);
        if body.len() > limit {
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: limit });
        }
    }
    Ok(body)
}

/// The answer's server-sent events, failing once one event passes `limit` bytes (so an endless
/// event cannot fill memory). An event's end split across two chunks is missed, which only
/// counts a little too much.
fn events(response: reqwest::Response, limit: usize) -> BoxStream<'static, Result<Sse, SseError>> {
    let mut pending = 0usize;
    let bytes = response.bytes_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        let end = |boundary: &[u8]| {
            chunk
                .windows(boundary.len())
                .rposition(|w| w == boundary)
                .map(|at| at + boundary.len())
        };
        pending = match end(b"\n\n").max(end(b"\r\n\r\n")) {
            Some(after) => chunk.len() - after,
            None => pending + chunk.len(),
        };
        if pending > limit {
            return Err(std::io::Error::other(format!(
                "an event from the MCP server passed {limit} bytes"
            )));
        }
        Ok(chunk)
    });
    SseStream::from_bytes_stream(bytes).boxed()
}

fn unexpected(text: String) -> Failure {
    StreamableHttpError::UnexpectedServerResponse(Cow::Owned(text))
}

impl StreamableHttpClient for GuardedHttp {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_token,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let body = serde_json::to_vec(&message)?;
        let response = self
            .request(
                reqwest::Method::POST,
                &uri,
                session_id.as_deref(),
                auth_token,
                custom_headers,
            )?
            .header(ACCEPT, format!("{JSON}, {EVENT_STREAM}"))
            .header(CONTENT_TYPE, JSON)
            .body(body)
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && session_id.is_some() {
            return Err(StreamableHttpError::SessionExpired);
        }
        let new_session = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let awaits_no_response = !matches!(message, JsonRpcMessage::Request(_));
        let content_type = response.headers().get(CONTENT_TYPE).cloned();
        if !status.is_success() {
            let limit = limits.max_error_response_size;
            let body = match read_capped(response, limits.max_json_response_size).await {
                Ok(body) => body,
                Err(_) => b"<the body could not be read>".to_vec(),
            };
            if let Ok(error @ JsonRpcMessage::Error(_)) =
                serde_json::from_slice::<ServerJsonRpcMessage>(&body)
            {
                return Ok(StreamableHttpPostResponse::Json(error, new_session));
            }
            let text = String::from_utf8_lossy(&body[..body.len().min(limit)]).into_owned();
            return Err(unexpected(format!("HTTP {status}: {text}")));
        }
        if media_type_is(content_type.as_ref(), EVENT_STREAM) {
            let events = events(response, limits.max_sse_event_size);
            return Ok(StreamableHttpPostResponse::Sse(events, new_session));
        }
        if media_type_is(content_type.as_ref(), JSON) {
            let body = read_capped(response, limits.max_json_response_size).await?;
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, new_session)),
                Err(_) if awaits_no_response => Ok(StreamableHttpPostResponse::Accepted),
                Err(e) => Err(unexpected(format!("an answer that is not JSON-RPC: {e}"))),
            };
        }
        if awaits_no_response {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(
            content_type.map(|ct| String::from_utf8_lossy(ct.as_bytes()).into_owned()),
        ))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failure> {
        let response = self
            .request(
                reqwest::Method::DELETE,
                &uri,
                Some(&session_id),
                auth_token,
                custom_headers,
            )?
            .send()
            .await
            .map_err(StreamableHttpError::Client)?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED || response.status().is_success() {
            return Ok(());
        }
        Err(unexpected(format!(
            "HTTP {} to the session's DELETE",
            response.status()
        )))
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let limit = StreamableHttpResponseLimits::default().max_sse_event_size;
        self.get_stream_with_max_sse_event_size(
            uri,
            session_id,
            last_event_id,
            auth_token,
            custom_headers,
            limit,
        )
        .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_token: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let mut request = self
            .request(
                reqwest::Method::GET,
                &uri,
                session_id.as_deref(),
                auth_token,
                custom_headers,
            )?
            .header(ACCEPT, EVENT_STREAM);
        if let Some(last) = last_event_id {
            request = request.header(LAST_EVENT_ID, last);
        }
        let response = request.send().await.map_err(StreamableHttpError::Client)?;
        let status = response.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if !status.is_success() {
            return Err(unexpected(format!(
                "HTTP {status} to the event stream's GET"
            )));
        }
        if !media_type_is(response.headers().get(CONTENT_TYPE), EVENT_STREAM) {
            return Err(StreamableHttpError::UnexpectedContentType(
                response
                    .headers()
                    .get(CONTENT_TYPE)
                    .map(|ct| String::from_utf8_lossy(ct.as_bytes()).into_owned()),
            ));
        }
        Ok(events(response, max_sse_event_size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_match_by_essence_whatever_their_parameters_and_case() {
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert!(media_type_is(Some(&v("application/json")), JSON));
        assert!(media_type_is(
            Some(&v("Application/JSON; charset=utf-8")),
            JSON
        ));
        assert!(media_type_is(Some(&v("text/event-stream")), EVENT_STREAM));
        assert!(!media_type_is(Some(&v("application/jsonx")), JSON));
        assert!(!media_type_is(None, JSON));
    }

    #[tokio::test]
    async fn an_event_past_the_cap_ends_the_stream_with_an_error() {
        let answer = |body: String| reqwest::Response::from(http::Response::new(body));
        let small = "data: {\"a\": 1}\n\ndata: {\"b\": 2}\n\n".to_string();
        let read: Vec<_> = events(answer(small), 64).collect().await;
        assert_eq!(read.len(), 2);
        assert!(read.iter().all(Result::is_ok));
        let endless = format!("data: {}", "x".repeat(1000));
        let read: Vec<_> = events(answer(endless), 64).collect().await;
        assert!(read.iter().any(Result::is_err), "{read:?}");
    }
}
