//! Errors on the OpenAI-compatible paths in OpenAI's shape, `{"error": {"message", "type",
//! "param", "code"}}`: a layer rewrites every `ApiError` answered under it (auth and body
//! rejections included), and upstream model failures map onto fitting statuses.

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use keel_models::{ModelError, ModelErrorKind};

use super::wire::{OpenAiErrorBody, OpenAiErrorEnvelope};
use crate::error::ApiError;

/// The middleware: answers any `ApiError` from the handler or inner layers in OpenAI's shape.
pub async fn reshape(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    match response.extensions().get::<ApiError>() {
        Some(error) => openai_error(error.clone(), None),
        None => response,
    }
}

/// `error` as OpenAI's body; `param` names the offending request field when known.
pub fn openai_error(error: ApiError, param: Option<&str>) -> Response {
    let kind = match error.status {
        StatusCode::UNAUTHORIZED => "authentication_error",
        StatusCode::FORBIDDEN => "permission_error",
        StatusCode::NOT_FOUND => "not_found_error",
        StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
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
