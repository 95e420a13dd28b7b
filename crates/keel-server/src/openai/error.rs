//! Errors on the OpenAI-compatible paths in OpenAI's shape, `{"error": {"message", "type",
//! "param", "code"}}`: a layer around the whole stack rewrites every `ApiError` answered on
//! those paths — by a handler, auth, the body limit and deadlines, the concurrency limit, a
//! caught panic, or the unknown-path and wrong-method fallbacks — and upstream model failures
//! map onto the statuses and codes OpenAI would answer (`model_error`, `failure_error`): a
//! context overflow is `400 context_length_exceeded`, a rate limit `429` with `Retry-After`, a
//! provider's own refusal `400 invalid_request_error` with its message; the provider failing
//! is `502`/`504` (`upstream_error`), and only keel's own faults are `server_error`. Every
//! other path keeps keel's own envelope.

use axum::Json;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_models::{ModelError, ModelErrorKind};

use super::wire::{OpenAiErrorBody, OpenAiErrorEnvelope};
use crate::error::ApiError;

/// OpenAI's API roots: these paths and everything under them answer in OpenAI's shape.
const OPENAI_ROOTS: &[&str] = &[
    "/v1/chat",
    "/v1/completions",
    "/v1/models",
    "/v1/responses",
    "/v1/conversations",
    "/v1/embeddings",
];

/// Whether `path` belongs to the OpenAI-compatible API.
pub fn is_openai_path(path: &str) -> bool {
    OPENAI_ROOTS.iter().any(|root| {
        path.strip_prefix(root)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The middleware: on an OpenAI path, answers any `ApiError` from inside in OpenAI's shape,
/// keeping the response's other headers (`x-request-id`, `retry-after`).
pub async fn reshape(req: Request, next: Next) -> Response {
    if !is_openai_path(req.uri().path()) {
        return next.run(req).await;
    }
    let response = next.run(req).await;
    let Some(error) = response.extensions().get::<ApiError>() else {
        return response;
    };
    let param = error.param.clone();
    let mut reshaped = openai_error(error.clone(), param.as_deref());
    for (name, value) in response.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            reshaped
                .headers_mut()
                .entry(name)
                .or_insert_with(|| value.clone());
        }
    }
    reshaped
}

/// OpenAI's error `type` for a status: the upstream failing (502, 504) is `upstream_error`,
/// keel's own faults (other 5xx) are `server_error`.
pub fn error_type(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        StatusCode::REQUEST_TIMEOUT => "timeout_error",
        StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => "upstream_error",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request_error",
    }
}

/// `error` as OpenAI's body; `param` names the offending request field when known (else the
/// error's own `param`).
pub fn openai_error(error: ApiError, param: Option<&str>) -> Response {
    let retry_after = error.retry_after_header();
    let body = OpenAiErrorEnvelope {
        error: OpenAiErrorBody {
            message: error.message,
            kind: error_type(error.status),
            param: param.map(str::to_string).or(error.param),
            code: error.code.to_string(),
        },
    };
    let mut response = (error.status, Json(body)).into_response();
    if let Some(value) = retry_after {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    response
}

/// A request field keel cannot serve.
pub fn bad_param(param: &str, message: impl Into<String>) -> Response {
    openai_error(ApiError::invalid("invalid_value", message), Some(param))
}

/// A model call's failure, as a `ModelError` (the gateway) or a stored `model_failed` event
/// (a response) holds it.
#[derive(Debug, Clone, Copy)]
pub struct ModelFailure<'a> {
    /// `None` for a failure logged by a keel that did not classify it.
    pub kind: Option<ModelErrorKind>,
    pub provider: &'a str,
    pub status: Option<u16>,
    pub code: Option<&'a str>,
    /// The provider's words (or keel's, for a failure keel found itself).
    pub message: &'a str,
    pub retry_after: Option<std::time::Duration>,
}

impl<'a> From<&'a ModelError> for ModelFailure<'a> {
    fn from(e: &'a ModelError) -> Self {
        ModelFailure {
            kind: Some(e.kind),
            provider: &e.provider,
            status: e.status,
            code: e.code.as_deref(),
            message: &e.message,
            retry_after: e.retry_after,
        }
    }
}

/// How an upstream model failure reaches the client; `input` names the request field that
/// holds the transcript (`messages`, `input`), blamed for a context overflow.
pub fn model_error(error: &ModelError, input: &str) -> ApiError {
    failure_error(&ModelFailure::from(error), input)
}

/// Codes OpenAI uses for a refused request, passed on when a provider gives one of them (and
/// the codes keel gives failures it finds itself).
const KNOWN_CODES: &[&str] = &[
    "invalid_value",
    "invalid_type",
    "unsupported_parameter",
    "unsupported_value",
    "unknown_parameter",
    "missing_required_parameter",
    "model_not_found",
    "string_above_max_length",
    "array_above_max_length",
    "invalid_prompt",
    "invalid_image",
    "content_filter",
    "content_policy_violation",
    "insufficient_quota",
    "reply_too_large",
];

/// See `model_error`.
pub fn failure_error(failure: &ModelFailure, input: &str) -> ApiError {
    let known = failure
        .code
        .and_then(|c| KNOWN_CODES.iter().copied().find(|k| *k == c));
    let message = failure.message.to_string();
    let keel = failure.provider == "keel";
    let error = match failure.kind {
        Some(ModelErrorKind::ContextOverflow) => {
            ApiError::invalid("context_length_exceeded", message).with_param(input)
        }
        Some(ModelErrorKind::RateLimited) => {
            let error = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                known.unwrap_or("rate_limit_exceeded"),
                message,
            );
            match failure.retry_after {
                // Whole seconds, rounded up: never sooner than the provider asked.
                Some(wait) => error.with_retry_after(wait.as_millis().div_ceil(1000) as u64),
                None => error,
            }
        }
        Some(ModelErrorKind::BadRequest) if known == Some("model_not_found") => {
            ApiError::new(StatusCode::NOT_FOUND, "model_not_found", message).with_param("model")
        }
        Some(ModelErrorKind::BadRequest) => {
            let status = if failure.status == Some(404) {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            ApiError::new(status, known.unwrap_or("invalid_request_error"), message)
        }
        Some(ModelErrorKind::Auth) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_auth_failed",
            format!(
                "the provider {} refused keel's credentials for it; an operator must fix that provider's api_key in keel.toml ({message})",
                failure.provider
            ),
        ),
        Some(ModelErrorKind::Timeout) => {
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", message)
        }
        Some(ModelErrorKind::Cancelled) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cancelled", message)
        }
        Some(ModelErrorKind::Protocol) if keel => ApiError::internal(message),
        Some(ModelErrorKind::Unavailable | ModelErrorKind::Protocol) => {
            ApiError::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", message)
        }
        None => ApiError::new(StatusCode::BAD_GATEWAY, "upstream_error", message),
    };
    if error.status.is_server_error() && !keel {
        // The caller cannot see the provider's log: say which provider failed, and how.
        let status = failure
            .status
            .map(|s| format!(" (HTTP {s})"))
            .unwrap_or_default();
        let message = format!("{}{status}: {}", failure.provider, error.message);
        return ApiError { message, ..error };
    }
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_failures_map_to_openai_statuses_and_codes() {
        let error = |kind, status, code: Option<&str>, message: &str| {
            let mut e = ModelError::new(kind, "openai", message);
            e.status = status;
            e.code = code.map(str::to_string);
            model_error(&e, "input")
        };
        let overflow = error(
            ModelErrorKind::ContextOverflow,
            Some(400),
            Some("context_length_exceeded"),
            "too long",
        );
        assert_eq!(
            (overflow.status, overflow.code, overflow.param.as_deref()),
            (
                StatusCode::BAD_REQUEST,
                "context_length_exceeded",
                Some("input")
            )
        );
        assert_eq!(overflow.message, "too long");
        let mut limited = ModelError::new(ModelErrorKind::RateLimited, "openai", "slow down");
        limited.retry_after = Some(std::time::Duration::from_millis(1500));
        let limited = model_error(&limited, "input");
        assert_eq!(
            (limited.status, limited.code, limited.retry_after),
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                Some(2)
            )
        );
        let refused = error(
            ModelErrorKind::BadRequest,
            Some(400),
            Some("invalid_value"),
            "bad temperature",
        );
        assert_eq!(
            (refused.status, refused.code),
            (StatusCode::BAD_REQUEST, "invalid_value")
        );
        assert_eq!(error_type(refused.status), "invalid_request_error");
        let other = error(
            ModelErrorKind::BadRequest,
            Some(422),
            Some("weird_thing"),
            "no",
        );
        assert_eq!(
            (other.status, other.code),
            (StatusCode::BAD_REQUEST, "invalid_request_error")
        );
        let auth = error(
            ModelErrorKind::Auth,
            Some(401),
            None,
            "Incorrect API key provided.",
        );
        assert_eq!(
            (auth.status, auth.code),
            (StatusCode::BAD_GATEWAY, "upstream_auth_failed")
        );
        assert_eq!(error_type(auth.status), "upstream_error");
        let down = error(ModelErrorKind::Unavailable, Some(500), None, "boom");
        assert_eq!(down.message, "openai (HTTP 500): boom");
        assert_eq!(error_type(down.status), "upstream_error");
        let ours = ModelError::new(ModelErrorKind::Protocol, "keel", "cannot read options");
        let ours = model_error(&ours, "input");
        assert_eq!(error_type(ours.status), "server_error");
    }

    #[test]
    fn openai_paths_are_the_roots_and_what_lies_under_them() {
        for path in [
            "/v1/chat/completions",
            "/v1/chat/",
            "/v1/chat",
            "/v1/models",
            "/v1/models/scripted/echo",
            "/v1/responses/resp_1/input_items",
            "/v1/conversations",
            "/v1/embeddings",
            "/v1/completions",
        ] {
            assert!(is_openai_path(path), "{path}");
        }
        for path in [
            "/v1/sessions",
            "/v1/chats",
            "/v1/modelsx",
            "/healthz",
            "/",
            "/v1",
        ] {
            assert!(!is_openai_path(path), "{path}");
        }
    }
}
