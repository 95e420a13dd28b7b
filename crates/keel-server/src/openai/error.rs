//! Errors on the OpenAI-compatible paths in OpenAI's shape, `{"error": {"message", "type",
//! "param", "code"}}`: a layer around the whole stack rewrites every `ApiError` answered on
//! those paths — by a handler, auth, the body limit and deadlines, the concurrency limit, a
//! caught panic, or the unknown-path and wrong-method fallbacks — and upstream model failures
//! map onto fitting statuses. Every other path keeps keel's own envelope.

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

/// `error` as OpenAI's body; `param` names the offending request field when known.
pub fn openai_error(error: ApiError, param: Option<&str>) -> Response {
    let kind = match error.status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
        StatusCode::REQUEST_TIMEOUT => "timeout_error",
        s if s.is_server_error() => "server_error",
        _ => "invalid_request_error",
    };
    let body = OpenAiErrorEnvelope {
        error: OpenAiErrorBody {
            message: error.message,
            kind,
            param: param.map(str::to_string),
            code: error.code.to_string(),
        },
    };
    let mut response = (error.status, Json(body)).into_response();
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, "1".parse().unwrap());
    }
    response
}

/// A request field keel cannot serve.
pub fn bad_param(param: &str, message: impl Into<String>) -> Response {
    openai_error(ApiError::invalid("invalid_value", message), Some(param))
}

/// How an upstream model failure reaches the client.
pub fn model_error(error: &ModelError) -> ApiError {
    let (status, code) = match error.kind {
        ModelErrorKind::RateLimited => (StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"),
        ModelErrorKind::Timeout => (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"),
        ModelErrorKind::BadRequest => (StatusCode::BAD_REQUEST, "upstream_rejected_request"),
        ModelErrorKind::Auth => (StatusCode::BAD_GATEWAY, "upstream_auth_failed"),
        ModelErrorKind::Cancelled => (StatusCode::SERVICE_UNAVAILABLE, "upstream_cancelled"),
        ModelErrorKind::Unavailable | ModelErrorKind::Protocol => {
            (StatusCode::BAD_GATEWAY, "upstream_unavailable")
        }
    };
    ApiError::new(status, code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::is_openai_path;

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
