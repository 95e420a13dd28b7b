//! The one error envelope of the API, `{"error": {"type", "code", "message"}}`, and the
//! extractors whose rejections (bad JSON, wrong types, bad query strings) answer with it, so
//! no request — however malformed — gets a bare text body or a 500.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_engine::EngineError;
use keel_store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::ToSchema;

/// An error as the API reports it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The request field at fault, when one is (OpenAI's shape reports it as `param`).
    pub param: Option<String>,
    /// Seconds to wait before trying again (`Retry-After`), when known; 503 always has one.
    pub retry_after: Option<u64>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The class of error: `invalid_request`, `authentication`, `permission`, `not_found`,
    /// `conflict`, `rate_limit`, `unavailable` or `internal`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A stable machine-readable code, e.g. `session_not_found`.
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The same error, naming the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The same error, telling the caller how many seconds to wait (`Retry-After`).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The `Retry-After` this error answers with: its own, or 1 s for a 503.
    pub fn retry_after_header(&self) -> Option<HeaderValue> {
        let seconds = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE).then_some(1))?;
        Some(HeaderValue::from(seconds))
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(kind: &str, id: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            not_found_code(kind),
            format!("no {kind} {id:?} here: check the id (and that your key's tenant owns it)"),
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    fn kind(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "authentication",
            StatusCode::FORBIDDEN => "permission",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit",
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => "unavailable",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            s if s.is_server_error() => "internal",
            _ => "invalid_request",
        }
    }
}

fn not_found_code(kind: &str) -> &'static str {
    match kind {
        "agent" => "agent_not_found",
        "session" => "session_not_found",
        "run" => "run_not_found",
        "tenant" => "tenant_not_found",
        "API key" => "api_key_not_found",
        "memory block" => "memory_block_not_found",
        _ => "not_found",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let retry_after = self.retry_after_header();
        // Kept on the response so a path with another error shape (OpenAI's) can re-render it.
        let kept = self.clone();
        let body = ErrorEnvelope {
            error: ErrorBody {
                kind: self.kind(),
                code: self.code,
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(kept);
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::NotFound { kind, id } => ApiError::not_found(kind, &id),
            EngineError::Busy { .. } => {
                ApiError::new(StatusCode::CONFLICT, "session_busy", e.to_string())
            }
            EngineError::Invalid(message) => ApiError::invalid("invalid_request", message),
            EngineError::LimitReached(message) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "limit_reached", message)
            }
            EngineError::Store(e) => e.into(),
            EngineError::Load(e) if e.is_unreadable() => unreadable(e.to_string()),
            EngineError::Load(e) => ApiError::internal(e.to_string()),
            EngineError::Model(e) if e.kind == keel_models::ModelErrorKind::BadRequest => {
                ApiError::invalid("invalid_request", e.to_string())
            }
            EngineError::Model(e) => {
                ApiError::new(StatusCode::BAD_GATEWAY, "model_failed", e.to_string())
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { kind, ref id } => ApiError::not_found(kind, id),
            StoreError::Exported { .. } => {
                ApiError::new(StatusCode::CONFLICT, "session_exported", e.to_string())
            }
            StoreError::Busy { .. } => {
                ApiError::new(StatusCode::CONFLICT, "session_busy", e.to_string())
            }
            StoreError::AlreadyExists(_) | StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "already_exists", e.to_string())
            }
            StoreError::Invalid(_) => ApiError::invalid("invalid_request", e.to_string()),
            StoreError::Stale(_) => ApiError::new(StatusCode::CONFLICT, "changed", e.to_string()),
            ref e if e.is_unreadable() => unreadable(e.to_string()),
            StoreError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                e.to_string(),
            ),
            _ => ApiError::internal(e.to_string()),
        }
    }
}

/// A stored record this keel cannot decode: keel's fault, not the caller's, and confined to
/// the record named.
fn unreadable(message: String) -> ApiError {
    ApiError::internal(format!(
        "{message} (an admin can list unreadable records with `keel store check` or GET /v1/admin/unreadable)"
    ))
    .with_code("record_unreadable")
}

/// Maps an axum rejection (which knows its status and text) into the envelope.
fn rejected(status: StatusCode, text: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::REQUEST_TIMEOUT => "body_timeout",
        _ => "malformed_request",
    };
    // The body's fields are always checked: a wrong type is as much a 400 as bad syntax.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    let hint = match code {
        "body_too_large" => " (shorten the request, or raise the server's body limit)",
        "unsupported_media_type" => " (send `Content-Type: application/json`)",
        _ => "",
    };
    ApiError::new(status, code, format!("{text}{hint}"))
}

/// A JSON object body whose rejections answer with the envelope. The body must be declared
/// `application/json`, be an object, and nest no deeper than `limits::MAX_JSON_DEPTH`, so that
/// everything stored from it can be read back.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, bytes) = read_body(req).await?;
        json_object(parts, bytes, state).await.map(ApiJson)
    }
}

/// Like `ApiJson`, for endpoints whose body may be left out: an empty body is `None`.
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let (parts, bytes) = read_body(req).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalApiJson(None));
        }
        json_object(parts, bytes, state)
            .await
            .map(|v| OptionalApiJson(Some(v)))
    }
}

async fn read_body(req: Request) -> Result<(Parts, axum::body::Bytes), ApiError> {
    let (parts, body) = req.into_parts();
    // The body layer has already bounded the body's size and the time to read it.
    let bytes = axum::body::to_bytes(body, usize::MAX).await.map_err(|e| {
        rejected(
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )
    })?;
    Ok((parts, bytes))
}

/// A JSON body that parses is taken straight from its bytes; anything else goes through
/// axum's extractor, whose rejection names the offending field's path (tracking that path
/// nearly doubles the cost of parsing, so it is paid only when there is an error to word).
async fn json_object<T: DeserializeOwned, S: Send + Sync>(
    parts: Parts,
    bytes: axum::body::Bytes,
    state: &S,
) -> Result<T, ApiError> {
    if !declares_json(&parts.headers) {
        return Err(rejected(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the request body must be declared as JSON".into(),
        ));
    }
    check_json_shape(&bytes)?;
    if let Ok(value) = serde_json::from_slice(&bytes) {
        return Ok(value);
    }
    let req = Request::from_parts(parts, axum::body::Body::from(bytes));
    match Json::<T>::from_request(req, state).await {
        Ok(Json(value)) => Ok(value),
        Err(rejection) => Err(json_rejection(rejection)),
    }
}

/// Whether `Content-Type` is exactly `application/json`, parameters (`; charset=utf-8`) aside.
pub fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// The body is an object (serde would also read a struct from an array) nested no deeper
/// than keel accepts.
pub fn check_json_shape(bytes: &[u8]) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first.is_some_and(|b| *b != b'{') {
        return Err(ApiError::invalid(
            "body_not_object",
            "the request body must be a JSON object (`{…}`)",
        ));
    }
    keel_core::limits::check_text(bytes, keel_core::limits::MAX_JSON_DEPTH, "").map_err(|e| {
        let param = e.path.clone();
        ApiError::invalid("json_too_deep", e.to_string()).with_param(param)
    })
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    // A body read that failed because of the body limit or a timeout carries the real cause.
    if let JsonRejection::BytesRejection(inner) = &rejection {
        let text = inner.body_text();
        if text.contains("length limit") {
            return rejected(StatusCode::PAYLOAD_TOO_LARGE, text);
        }
        if status.is_server_error() {
            return rejected(StatusCode::BAD_REQUEST, text);
        }
    }
    let text = rejection.body_text();
    match field_at_fault(&text) {
        Some((param, true)) => ApiError::invalid(
            "unknown_parameter",
            format!("unknown parameter `{param}`: it is not a field of this request ({text})"),
        )
        .with_param(param),
        Some((param, false)) => rejected(status, text).with_param(param),
        None => rejected(status, text),
    }
}

/// The request field a body's deserialization failed at, from the extractor's text
/// (`…: messages[0].role: unknown variant …`; an unknown field's path ends with its name), and
/// whether the field is unknown.
fn field_at_fault(text: &str) -> Option<(String, bool)> {
    let detail = text
        .strip_prefix("Failed to deserialize the JSON body into the target type: ")
        .unwrap_or(text);
    let (path, message) = match detail.split_once(": ") {
        Some((path, message)) if !path.contains(' ') && !path.is_empty() => (Some(path), message),
        _ => (None, detail),
    };
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name);
    match (path.filter(|p| *p != "."), unknown) {
        (Some(path), unknown) => Some((path.to_string(), unknown.is_some())),
        (None, Some(name)) => Some((name.to_string(), true)),
        (None, None) => None,
    }
}

/// A query string whose rejections answer with the envelope.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(ApiQuery(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::invalid("invalid_query", rejection.body_text())
}

/// Turns a panic caught by the catch-panic layer into the envelope (and logs it).
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::internal("the server hit a bug handling this request; it has been logged")
        .into_response()
}

/// The answer to a path no route serves.
pub async fn no_route() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such endpoint: see /openapi.json for the API",
    )
}

/// The answer to a known path with an unsupported method.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method: see /openapi.json",
    )
}

pub type ApiResult<T> = Result<T, ApiError>;

/// A path parameter whose rejections (e.g. bad percent-encoding) answer with the envelope.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(rejection) => Err(ApiError::invalid("invalid_path", rejection.body_text())),
        }
    }
}

/// Parses an id from a path; a malformed one names nothing here, so it is a 404 like an
/// unknown one.
pub fn parse_id<T: std::str::FromStr>(kind: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(kind, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    async fn refusal(body: &str) -> ApiError {
        let request = Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap();
        match ApiJson::<Body>::from_request(request, &()).await {
            Ok(_) => panic!("{body} was accepted"),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_fit_names_the_field_at_fault() {
        let unknown = refusal(r#"{"name": "x", "colour": "red"}"#).await;
        assert_eq!(unknown.code, "unknown_parameter");
        assert_eq!(
            unknown.param.as_deref(),
            Some("colour"),
            "{}",
            unknown.message
        );
        let nested = refusal(r#"{"name": "x", "inner": {"count": 1, "extra": 2}}"#).await;
        assert_eq!(
            nested.param.as_deref(),
            Some("inner.extra"),
            "{}",
            nested.message
        );
        let wrong_type = refusal(r#"{"name": 42}"#).await;
        assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            wrong_type.param.as_deref(),
            Some("name"),
            "{}",
            wrong_type.message
        );
        let deep = refusal(r#"{"name": "x", "inner": {"count": -1}}"#).await;
        assert_eq!(
            deep.param.as_deref(),
            Some("inner.count"),
            "{}",
            deep.message
        );
        let missing = refusal(r#"{}"#).await;
        assert_eq!(missing.param, None, "{}", missing.message);
    }
}
