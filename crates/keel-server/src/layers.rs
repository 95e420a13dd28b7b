//! The tower layers every request passes: request ids, tracing spans, panics caught into the
//! error envelope (OpenAI's on the OpenAI paths, `openai::error::reshape`), metrics, admission
//! (header fields over their limit: 431; a global concurrency limit: 503 + `Retry-After`), and
//! a body read under a size limit and a deadline (a client trickling its body byte by byte is
//! cut off, not waited for). What hyper refuses before the stack sees it is `listen`'s part.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::error::{ApiError, panic_response};
use crate::listen::MAX_HEADER_BYTES;
use crate::openai;
use crate::state::AppState;

/// Wraps the routes in the layers, outermost first. Each layer costs every request something
/// (`Router::layer` boxes the service and its future again), so a new check joins the layer
/// whose concern it shares rather than adding one.
pub fn wrap(routes: Router, state: Arc<AppState>) -> Router {
    let permits = Arc::new(Semaphore::new(state.config.max_concurrent_requests.max(1)));
    routes
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::from_fn_with_state(permits, admit))
        .layer(middleware::from_fn_with_state(state, record_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
                .layer(
                    TraceLayer::new_for_http().make_span_with(|req: &Request| {
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("");
                        tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = id)
                    }),
                )
                .layer(PropagateRequestIdLayer::x_request_id())
                // Outside everything that can answer an error, inside the request id.
                .layer(middleware::from_fn(openai::error::reshape))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
}

/// The layers of the unauthenticated metrics listener (`keel serve --metrics-listen`): panics
/// into the envelope. Its scrapes are not counted in the metrics, and its only limits on a
/// request's head are hyper's (`listen`).
pub fn wrap_metrics_only(routes: Router) -> Router {
    routes.layer(CatchPanicLayer::custom(panic_response))
}

/// Request ids (128 random bits in hex) from the thread's generator: a v4 UUID from tower-http
/// asks the OS for randomness, a system call on every request.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        let id = keel_engine::clock::new_hex_id();
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// The method as a metrics label: any other than the standard ones is `other`, so a client
/// cannot grow the label set by sending made-up methods.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Where each answered request is logged: one line at info with its method, path, status and
/// duration. `keel serve` shows this target by default and `--quiet` hides it.
pub const REQUEST_LOG_TARGET: &str = "keel::requests";

/// Counts the request and its latency by method, route template and status, and logs it.
async fn record_metrics(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    // The path is copied only when the line will be written (`--quiet` serves without).
    let logged = tracing::enabled!(target: REQUEST_LOG_TARGET, tracing::Level::INFO)
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let response = next.run(req).await;
    let status = response.status().as_u16();
    let took = started.elapsed();
    state.metrics.observe_request(method, &route, status, took);
    if let Some((method, path)) = logged {
        tracing::info!(
            target: REQUEST_LOG_TARGET,
            "{method} {path} {status} {:.1}ms",
            took.as_secs_f64() * 1000.0
        );
    }
    response
}

/// Admission: answers 431 to a request whose header fields (names and values) total more than
/// `MAX_HEADER_BYTES`, and 503 with `Retry-After` instead of queueing when every permit is
/// taken. One pass over the headers, nothing allocated, for a request admitted.
async fn admit(State(permits): State<Arc<Semaphore>>, req: Request, next: Next) -> Response {
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the request's header fields total {header_bytes} bytes, over the limit of {MAX_HEADER_BYTES}: send fewer and smaller headers"
            ),
        )
        .into_response();
    }
    match permits.try_acquire_owned() {
        Ok(_permit) => next.run(req).await,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is at its concurrency limit: retry after the delay in Retry-After",
        )
        .into_response(),
    }
}

/// Reads the whole body within the size limit (a session file's own, larger, for an import)
/// and the request deadline before the handler runs, then gives the handler the same deadline.
async fn read_body(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let (limit, setting) = match req.uri().path() == crate::routes::IMPORT_PATH {
        true => (
            state.config.import_limit,
            "[server] import_limit_mb in keel.toml",
        ),
        false => (state.config.body_limit, "keel serve --body-limit"),
    };
    let (parts, body) = req.into_parts();
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is over the limit of {limit} bytes ({setting}): send less"),
        )
        .into_response()
    };
    let declared = parts
        .headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large();
    }
    let read = tokio::time::timeout(
        state.config.request_timeout,
        Limited::new(body, limit).collect(),
    )
    .await;
    let bytes = match read {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => return too_large(),
        Ok(Err(e)) => {
            return ApiError::invalid(
                "body_unreadable",
                format!("the request body could not be read: {e}"),
            )
            .into_response();
        }
        Err(_) => {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {:?}: send it at once",
                    state.config.request_timeout
                ),
            )
            .into_response();
        }
    };
    // Handlers answer within the same deadline, except sends, whose `wait` mode has its own
    // (longer) limit. Streams count only until their headers go out.
    let waits = parts.uri.path().ends_with("/messages");
    let handled = next.run(Request::from_parts(parts, Body::from(bytes)));
    if waits {
        return handled.await;
    }
    match tokio::time::timeout(state.config.request_timeout, handled).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!(
                "the server could not answer within {:?}: retry later",
                state.config.request_timeout
            ),
        )
        .into_response(),
    }
}
